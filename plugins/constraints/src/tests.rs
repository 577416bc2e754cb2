//! Every kind on answers that pass and answers that fail, descriptions and JSON.

use super::*;
use Constraint::*;

fn strings(ks: &[&str]) -> Vec<String> {
    ks.iter().map(|k| k.to_string()).collect()
}

#[track_caller]
fn passes(c: &Constraint, answers: &[&str]) {
    for a in answers {
        assert!(check(c, a), "{c:?} should hold on {a:?}");
    }
}

#[track_caller]
fn fails(c: &Constraint, answers: &[&str]) {
    for a in answers {
        assert!(!check(c, a), "{c:?} should fail on {a:?}");
    }
}

/// One of each kind, for the tests that go over all of them.
fn one_of_each() -> Vec<Constraint> {
    vec![
        MaxWords { n: 50 },
        MinWords { n: 5 },
        MaxSentences { n: 3 },
        MinSentences { n: 2 },
        Paragraphs { n: 2 },
        IncludeKeywords { keywords: strings(&["tide", "moon"]) },
        KeywordFrequency { keyword: "sea".into(), n: 2 },
        ExcludeKeywords { keywords: strings(&["very"]) },
        StartsWith { phrase: "In short".into() },
        EndsWith { phrase: "Any questions?".into() },
        MinPlaceholders { n: 2 },
        BulletList { n: 3 },
        NumberedList { n: 3 },
        Json {},
        Title {},
        Sections { n: 2 },
        Lowercase {},
        Uppercase {},
        NoCommas {},
        Quoted {},
    ]
}

#[test]
fn no_word_fails_everything() {
    for c in one_of_each() {
        fails(&c, &["", "   \n\t", "🙂 — ...", "***"]);
    }
}

#[test]
fn word_bounds() {
    passes(&MaxWords { n: 3 }, &["naïve café 🙂 !", "one two three\n\n", "- a\n- b"]);
    fails(&MaxWords { n: 3 }, &["one two three four", "e.g. 3.5 kg of flour"]);
    passes(&MinWords { n: 3 }, &["one — two — three", "1. a b"]);
    fails(&MinWords { n: 3 }, &["one 🙂 🙂 two", "- - - a"]);
}

#[test]
fn sentence_bounds() {
    passes(&MaxSentences { n: 2 }, &["Pi is 3.14 here. Done!", "One line\n", "Hi… there"]);
    fails(&MaxSentences { n: 2 }, &["A. B. C.", "Ask Dr. Who. Now", "- a\n- b\n- c"]);
    passes(&MinSentences { n: 2 }, &["One. Two", "# Head\nBody", "Wait... what?"]);
    fails(&MinSentences { n: 2 }, &["Only 3.5 here.", "v1.2 released!!!  "]);
}

#[test]
fn paragraphs() {
    let two = Paragraphs { n: 2 };
    passes(&two, &["First.\n\nSecond.", "A\nB\n\n\n\nC\n", "One\n***\nTwo", "\n\n  Lead\n   \nTail  \n"]);
    fails(&two, &["Just one.\nStill one.", "A\n\nB\n\nC", "A\n---\nB\n\n* * *\nC"]);
    passes(&Paragraphs { n: 1 }, &["# Title {}\n- a\n- b\nEnd."]);
}

#[test]
fn keywords() {
    let c = IncludeKeywords { keywords: strings(&["tide", "full moon"]) };
    passes(&c, &["The TIDE follows the Full Moon.", "(tide) full moon's pull"]);
    fails(&c, &["Tides follow the full moon.", "The tide and the fullmoon", "The tide, full\nmoon"]);
    let c = KeywordFrequency { keyword: "café".into(), n: 2 };
    passes(&c, &["Café or CAFÉ?", "café café café"]);
    fails(&c, &["café cafés", "cafe café"]);
    let c = ExcludeKeywords { keywords: strings(&["very", "thing"]) };
    passes(&c, &["Everything is everywhere.", "veryfine things"]);
    fails(&c, &["Very good.", "one THING"]);
}

#[test]
fn phrases() {
    let c = StartsWith { phrase: "In short".into() };
    passes(&c, &["In short, yes.", "\n  in SHORT: no"]);
    fails(&c, &["Well, in short, yes.", "In shortest terms", "\"In short\" yes"]);
    let c = EndsWith { phrase: "Any questions?".into() };
    passes(&c, &["That is all. Any questions?", "ANY QUESTIONS?  \n\n"]);
    fails(&c, &["Any questions? Ask.", "Many questions?", "Any questions"]);
}

#[test]
fn placeholders() {
    let c = MinPlaceholders { n: 2 };
    passes(&c, &["Dear [name], see you at [address].", "[a] [b] [c]"]);
    fails(&c, &["Dear [name], see [the site](http://x).", "[ ] and [name]", "[[name]"]);
}

#[test]
fn lists() {
    let c = BulletList { n: 3 };
    passes(&c, &["Tips:\n- water\n* light\n  + soil\nDone.", "- a\n- b\n- c\n\n**bold** line"]);
    fails(&c, &["- a\n- b", "- a\n- b\n- c\n- d", "-a\n-b\n-c", "• a\n• b\n• c", "- a\n- b\n- 🙂"]);
    let c = NumberedList { n: 3 };
    passes(&c, &["1. mix\n2. bake\n3) eat", "Steps:\n1. a\n1. b\n   1. c\nEnjoy."]);
    fails(&c, &["1. a\n2. b", "1.a\n2.b\n3.c", "It costs 1.5 kg\n2. a\n3. b", "- 1. a\n- 2. b\n- 3. c"]);
}

#[test]
fn json() {
    passes(&Json {}, &["{\"a\": 1}", "  [1, 2]\n", "```json\n{\"a\": [\"x\"]}\n```", "```\n[\"x\"]\n```\n\n"]);
    fails(
        &Json {},
        &[
            "\"just a string\"",
            "42",
            "{\"a\": 1} trailing",
            "Here: {\"a\": 1}",
            "```python\n{\"a\": 1}\n```",
            "{'a': 1}",
            "{}",
        ],
    );
}

#[test]
fn title_and_sections() {
    passes(&Title {}, &["<<Tides and the Moon>>\nText.", "Text <<naïve café>> more"]);
    fails(&Title {}, &["<Tides>", "<< >> text", "<<Two\nlines>>", "«Tides»"]);
    let c = Sections { n: 2 };
    passes(
        &c,
        &[
            "SECTION 1\nIntro.\nSECTION 2\nMore.",
            "Lead.\n## Section 1: a\nx\n\n**SECTION 2**\ny",
            "section 1 x\nsection 2 y",
        ],
    );
    fails(
        &c,
        &[
            "SECTION 1\nSECTION 3",
            "SECTION 2\nSECTION 1",
            "SECTION 1\nSECTION 2\nSECTION 3",
            "See SECTION 1 and SECTION 2",
        ],
    );
}

#[test]
fn case() {
    passes(&Lowercase {}, &["naïve café 🙂 3.5", "ß is fine"]);
    fails(&Lowercase {}, &["naïve Café", "ok I", "Ǆ"]);
    passes(&Uppercase {}, &["NAÏVE CAFÉ 🙂 3.5", "STRAẞE"]);
    fails(&Uppercase {}, &["NAÏVE CAFé", "STRAßE", "OK i"]);
}

#[test]
fn commas_and_quotes() {
    passes(&NoCommas {}, &["No commas here. Just 1.5 kg.", "semi; colons: fine"]);
    fails(&NoCommas {}, &["a, b", "中文，逗号", "列表、項目", "1,000"]);
    passes(&Quoted {}, &["\"All of it.\"", "  “Curly.”\n", "\"- a\n- b\""]);
    fails(&Quoted {}, &["\"Half.", "Said \"this\"", "'single'", "\"mixed”"]);
}

#[test]
fn score_is_the_fraction_held() {
    assert_eq!(score(&[], "anything"), 1.0);
    assert_eq!(score(&[], ""), 1.0);
    let cs = [MaxWords { n: 3 }, NoCommas {}, Lowercase {}, Title {}];
    assert_eq!(score(&cs, "one, two"), 0.5);
    assert_eq!(score(&cs, "<<a>> b c"), 1.0);
    assert_eq!(score(&cs, ""), 0.0);
}

#[test]
fn descriptions_are_one_sentence() {
    for c in one_of_each() {
        let d = describe(&c);
        assert!(d.ends_with('.'), "{d}");
        assert!(d.starts_with(char::is_uppercase), "{d}");
        assert_eq!(d, describe(&c.clone()));
    }
    assert_eq!(describe(&MaxWords { n: 50 }), "Answer in at most 50 words.");
    assert_eq!(describe(&MaxSentences { n: 1 }), "Answer in at most 1 sentence.");
    assert_eq!(describe(&Paragraphs { n: 1 }), "Write a single paragraph with no blank lines.");
    assert_eq!(
        describe(&IncludeKeywords { keywords: strings(&["a", "b", "c"]) }),
        "Include the keywords \"a\", \"b\" and \"c\"."
    );
    assert_eq!(
        describe(&ExcludeKeywords { keywords: strings(&["very", "just"]) }),
        "Do not use the words \"very\" or \"just\"."
    );
    assert_eq!(
        describe(&KeywordFrequency { keyword: "green tea".into(), n: 2 }),
        "Use the phrase \"green tea\" at least twice."
    );
    assert_eq!(describe(&KeywordFrequency { keyword: "tea".into(), n: 3 }), "Use the word \"tea\" at least 3 times.");
    assert_eq!(
        describe(&Sections { n: 3 }),
        "Divide your answer into 3 sections and begin each with \"SECTION X\" where X is its number."
    );
}

#[test]
fn json_round_trips() {
    for c in one_of_each() {
        let json = serde_json::to_string(&c).unwrap();
        assert!(json.starts_with(&format!("{{\"kind\":\"{}\"", c.kind())), "{json}");
        assert_eq!(serde_json::from_str::<Constraint>(&json).unwrap(), c);
    }
    let labels = r#"[{"kind": "max_words", "n": 50}, {"kind": "no_commas"}]"#;
    assert_eq!(serde_json::from_str::<Vec<Constraint>>(labels).unwrap(), [MaxWords { n: 50 }, NoCommas {}]);
}

#[test]
fn bad_json_is_refused_with_a_reason() {
    let refused = |json: &str| serde_json::from_str::<Constraint>(json).unwrap_err().to_string();
    assert!(refused(r#"{"kind": "max_letters", "n": 5}"#).contains("unknown variant `max_letters`"));
    assert!(refused(r#"{"kind": "max_words", "n": 5, "strict": true}"#).contains("unknown field `strict`"));
    assert!(refused(r#"{"kind": "no_commas", "n": 1}"#).contains("unknown field `n`"));
    assert!(refused(r#"{"n": 5}"#).contains("missing field `kind`"));
    assert!(refused(r#"{"kind": "max_words"}"#).contains("missing field `n`"));
    assert!(refused(r#"{"kind": "max_words", "n": 0}"#).contains("at least 1"));
    assert!(refused(r#"{"kind": "max_words", "n": -3}"#).contains("invalid value"));
    assert!(refused(r#"{"kind": "include_keywords", "keywords": []}"#).contains("must not be empty"));
    assert!(refused(r#"{"kind": "include_keywords", "keywords": ["Tide", "tide"]}"#).contains("repeated"));
    assert!(refused(r#"{"kind": "exclude_keywords", "keywords": [" very"]}"#).contains("letter or digit"));
    assert!(refused(r#"{"kind": "keyword_frequency", "keyword": "tea!", "n": 2}"#).contains("letter or digit"));
    assert!(refused(r#"{"kind": "starts_with", "phrase": " Sure"}"#).contains("surrounding whitespace"));
    assert!(refused(r#"{"kind": "ends_with", "phrase": "?!"}"#).contains("letter or digit"));
    assert!(refused(r#"{"kind": "ends_with", "phrase": "a\nb"}"#).contains("one line"));
}
