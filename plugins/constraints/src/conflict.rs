//! When a constraint contradicts a set. Two kinds of rule:
//!
//! - pairwise exclusions, for pairs that no answer can hold or that read as contradictory
//!   instructions;
//! - length budgets: each constraint needs a documented minimum of words and sentences
//!   from an answer written naturally, the needs add up, and the sum must fit the set's
//!   `max_words` / `max_sentences`.
//!
//! The budgets are deliberately generous (needs add up even where one sentence could
//! serve two constraints), so a set that passes can be answered by plain, unhurried
//! writing; the property test in this crate builds such an answer for every set the
//! evolver makes.

use crate::Constraint;
use crate::text::{COMMAS, keyword_count, sentence_breaks, word_count};

/// Words in a sentence (for `min_sentences`).
const WORDS_PER_SENTENCE: u64 = 5;
/// Words in a paragraph.
const WORDS_PER_PARAGRAPH: u64 = 10;
/// Words in a bullet item (the marker is not a word).
const WORDS_PER_BULLET: u64 = 3;
/// Words in a numbered item, its marker ("1.") included.
const WORDS_PER_NUMBERED: u64 = 4;
/// Words in a section: its header ("SECTION 1") and one short line.
const WORDS_PER_SECTION: u64 = 6;
/// Sentences in a section: its header line and one line of content.
const SENTENCES_PER_SECTION: u64 = 2;
/// The most words one sentence may be asked to hold (`min_words` against
/// `max_sentences`).
const MAX_WORDS_PER_SENTENCE: u64 = 40;

/// Why adding `new` to `existing` gives a contradictory set, or `None` when it does not.
/// `existing` is taken as it is; a reason may come from it alone when it already
/// contradicts itself. The rules, in the order they are tried:
///
/// 1. each kind at most once: a second `max_words` (or keyword list, ...) is refused,
///    the evolver tightens the first instead;
/// 2. pairs:
///    - `lowercase` and `uppercase`;
///    - `json` and any of `bullet_list`, `numbered_list`, `sections`, `quoted`,
///      `starts_with`, `ends_with`, and `paragraphs` above 1 (a JSON answer is one block
///      that starts with `{`, `[` or a fence);
///    - `bullet_list` and `numbered_list` (one list format per answer);
///    - `quoted` and `starts_with` or `ends_with` (a quoted answer starts and ends with
///      the quote mark);
///    - the texts an answer must contain (required keywords, the keyword of
///      `keyword_frequency`, `starts_with` and `ends_with` phrases, and "section 1" to
///      "section n" for `sections`) against: `exclude_keywords` when an excluded keyword
///      matches inside one ([`keyword_count`]), `no_commas` when one holds a comma, and
///      `uppercase` when one does not match after uppercasing (as "ß" does not);
/// 3. budgets: every answer needs 1 word and 1 sentence, plus per constraint
///
///    | kind                          | words                | sentences                   |
///    |-------------------------------|----------------------|-----------------------------|
///    | `min_sentences` n             | 5n                   | (n is a bound, below)       |
///    | `paragraphs` n                | 10n                  | n                           |
///    | `include_keywords`            | words of each        | sentence ends inside each   |
///    | `keyword_frequency` k, n      | n × words of k       | n × sentence ends inside k  |
///    | `starts_with`, `ends_with` p  | words of p           | sentence ends inside p      |
///    | `min_placeholders` n          | n                    | 0                           |
///    | `bullet_list` n               | 3n                   | n                           |
///    | `numbered_list` n             | 4n (markers count)   | n                           |
///    | `sections` n                  | 6n                   | 2n                          |
///    | `json`, `title`               | 1                    | 0                           |
///
///    The words needed are the larger of the sum and `min_words`, the sentences needed
///    the larger of the sum and `min_sentences`; they must not exceed `max_words` and
///    `max_sentences`, and `min_words` must not exceed 40 words per allowed sentence.
pub fn conflict(existing: &[Constraint], new: &Constraint) -> Option<String> {
    for old in existing {
        if old.kind() == new.kind() {
            return Some(format!("the set already has a `{}` constraint", new.kind()));
        }
        if let Some(why) = pair(old, new).or_else(|| pair(new, old)) {
            return Some(why);
        }
    }
    budget(existing.iter().chain([new]))
}

/// The rules of one ordered pair; [`conflict`] tries both orders.
fn pair(a: &Constraint, b: &Constraint) -> Option<String> {
    use Constraint::*;
    match (a, b) {
        (Lowercase {}, Uppercase {}) => Some("an answer cannot be all lowercase and all capitals".to_owned()),
        (
            Json {},
            BulletList { .. } | NumberedList { .. } | Sections { .. } | Quoted {} | StartsWith { .. } | EndsWith { .. },
        ) => Some(format!("a JSON answer cannot also satisfy `{}`", b.kind())),
        (Json {}, Paragraphs { n }) if *n > 1 => Some(format!("a JSON answer is one paragraph, not {n}")),
        (BulletList { .. }, NumberedList { .. }) => {
            Some("an answer has one list format: bullets or numbers".to_owned())
        }
        (Quoted {}, StartsWith { .. } | EndsWith { .. }) => {
            Some(format!("a quoted answer starts and ends with a quote mark, so `{}` cannot hold", b.kind()))
        }
        (ExcludeKeywords { keywords }, _) => required_texts(b).into_iter().find_map(|t| {
            let k = keywords.iter().find(|k| keyword_count(&t, k) > 0)?;
            Some(format!("`{}` needs \"{t}\", which holds the excluded keyword \"{k}\"", b.kind()))
        }),
        (NoCommas {}, _) => required_texts(b)
            .into_iter()
            .find(|t| t.contains(COMMAS))
            .map(|t| format!("`{}` needs \"{t}\", which holds a comma", b.kind())),
        (Uppercase {}, _) => required_texts(b)
            .into_iter()
            .find(|t| t.to_uppercase().to_lowercase() != t.to_lowercase())
            .map(|t| format!("`{}` needs \"{t}\", which does not survive capitals", b.kind())),
        _ => None,
    }
}

/// The texts every answer satisfying `c` contains (up to case).
fn required_texts(c: &Constraint) -> Vec<String> {
    match c {
        Constraint::IncludeKeywords { keywords } => keywords.clone(),
        Constraint::KeywordFrequency { keyword, .. } => vec![keyword.clone()],
        Constraint::StartsWith { phrase } | Constraint::EndsWith { phrase } => vec![phrase.clone()],
        Constraint::Sections { n } => (1..=*n).map(|i| format!("section {i}")).collect(),
        _ => Vec::new(),
    }
}

/// The (words, sentences) that `c` needs from an answer, beyond the one of each every
/// answer needs (see the table of [`conflict`]).
fn needs(c: &Constraint) -> (u64, u64) {
    let count = |n: usize| n as u64;
    let text = |t: &str| (count(word_count(t)), count(sentence_breaks(t)));
    match *c {
        Constraint::MinSentences { n } => (WORDS_PER_SENTENCE * u64::from(n), 0),
        Constraint::Paragraphs { n } => (WORDS_PER_PARAGRAPH * u64::from(n), u64::from(n)),
        Constraint::IncludeKeywords { ref keywords } => {
            keywords.iter().map(|k| text(k)).fold((0, 0), |(w, s), (kw, ks)| (w + kw, s + ks))
        }
        Constraint::KeywordFrequency { ref keyword, n } => {
            let (w, s) = text(keyword);
            (w * u64::from(n), s * u64::from(n))
        }
        Constraint::StartsWith { ref phrase } | Constraint::EndsWith { ref phrase } => text(phrase),
        Constraint::MinPlaceholders { n } => (u64::from(n), 0),
        Constraint::BulletList { n } => (WORDS_PER_BULLET * u64::from(n), u64::from(n)),
        Constraint::NumberedList { n } => (WORDS_PER_NUMBERED * u64::from(n), u64::from(n)),
        Constraint::Sections { n } => (WORDS_PER_SECTION * u64::from(n), SENTENCES_PER_SECTION * u64::from(n)),
        Constraint::Json {} | Constraint::Title {} => (1, 0),
        _ => (0, 0),
    }
}

fn budget<'a>(set: impl Iterator<Item = &'a Constraint>) -> Option<String> {
    let (mut words, mut sentences) = (1, 1);
    let (mut max_words, mut max_sentences, mut min_words, mut min_sentences) = (None, None, 0, 0);
    for c in set {
        let (w, s) = needs(c);
        (words, sentences) = (words + w, sentences + s);
        match *c {
            Constraint::MaxWords { n } => max_words = Some(u64::from(n)),
            Constraint::MaxSentences { n } => max_sentences = Some(u64::from(n)),
            Constraint::MinWords { n } => min_words = u64::from(n),
            Constraint::MinSentences { n } => min_sentences = u64::from(n),
            _ => {}
        }
    }
    let (words, sentences) = (words.max(min_words), sentences.max(min_sentences));
    if let Some(max) = max_words.filter(|&max| max < words) {
        return Some(format!("the set needs at least {words} words but allows at most {max}"));
    }
    if let Some(max) = max_sentences.filter(|&max| max < sentences) {
        return Some(format!("the set needs at least {sentences} sentences but allows at most {max}"));
    }
    max_sentences
        .filter(|&max| min_words > MAX_WORDS_PER_SENTENCE * max)
        .map(|max| format!("{min_words} words do not fit in {max} sentences of at most {MAX_WORDS_PER_SENTENCE} words"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use Constraint::*;

    fn keywords(ks: &[&str]) -> Vec<String> {
        ks.iter().map(|k| k.to_string()).collect()
    }

    #[track_caller]
    fn conflicts(existing: &[Constraint], new: Constraint) -> String {
        conflict(existing, &new).unwrap_or_else(|| panic!("{new:?} should conflict with {existing:?}"))
    }

    #[track_caller]
    fn fits(existing: &[Constraint], new: Constraint) {
        assert_eq!(conflict(existing, &new), None, "{new:?} with {existing:?}");
    }

    #[test]
    fn a_kind_appears_once() {
        assert!(conflicts(&[MaxWords { n: 50 }], MaxWords { n: 30 }).contains("already has a `max_words`"));
        conflicts(&[NoCommas {}, Title {}], Title {});
        fits(&[MaxWords { n: 50 }], MinWords { n: 30 });
    }

    #[test]
    fn pairwise_exclusions_hold_in_both_orders() {
        let pairs = [
            (Lowercase {}, Uppercase {}),
            (Json {}, BulletList { n: 3 }),
            (Json {}, NumberedList { n: 3 }),
            (Json {}, Sections { n: 2 }),
            (Json {}, Quoted {}),
            (Json {}, StartsWith { phrase: "Sure".into() }),
            (Json {}, EndsWith { phrase: "Bye.".into() }),
            (Json {}, Paragraphs { n: 2 }),
            (BulletList { n: 2 }, NumberedList { n: 2 }),
            (Quoted {}, StartsWith { phrase: "Sure".into() }),
            (Quoted {}, EndsWith { phrase: "Bye.".into() }),
            (NoCommas {}, StartsWith { phrase: "Sure, here".into() }),
            (NoCommas {}, IncludeKeywords { keywords: keywords(&["1,000"]) }),
            (ExcludeKeywords { keywords: keywords(&["salt"]) }, IncludeKeywords { keywords: keywords(&["sea salt"]) }),
            (ExcludeKeywords { keywords: keywords(&["Salt"]) }, KeywordFrequency { keyword: "salt".into(), n: 2 }),
            (ExcludeKeywords { keywords: keywords(&["is"]) }, EndsWith { phrase: "That is all.".into() }),
            (ExcludeKeywords { keywords: keywords(&["section"]) }, Sections { n: 2 }),
            (ExcludeKeywords { keywords: keywords(&["2"]) }, Sections { n: 2 }),
            (Uppercase {}, IncludeKeywords { keywords: keywords(&["straße"]) }),
            (Uppercase {}, StartsWith { phrase: "Straße one".into() }),
        ];
        for (a, b) in pairs {
            conflicts(std::slice::from_ref(&a), b.clone());
            conflicts(&[b], a);
        }
    }

    #[test]
    fn compatible_pairs() {
        fits(&[Json {}], Paragraphs { n: 1 });
        fits(&[Json {}], NoCommas {});
        fits(&[Json {}], Title {});
        fits(&[Json {}, Uppercase {}], IncludeKeywords { keywords: keywords(&["tide"]) });
        fits(&[Lowercase {}], Sections { n: 3 });
        fits(&[Uppercase {}], IncludeKeywords { keywords: keywords(&["naïve café"]) });
        fits(
            &[ExcludeKeywords { keywords: keywords(&["sea salt"]) }],
            IncludeKeywords { keywords: keywords(&["salt"]) },
        );
        fits(&[ExcludeKeywords { keywords: keywords(&["sections"]) }], Sections { n: 2 });
        fits(&[Quoted {}, BulletList { n: 3 }], Title {});
        fits(&[StartsWith { phrase: "Sure".into() }], EndsWith { phrase: "Bye.".into() });
        fits(&[NoCommas {}], StartsWith { phrase: "Sure thing".into() });
    }

    #[test]
    fn structures_need_words() {
        // The brief's examples: 20 words hold neither 3 paragraphs, nor 8 items, nor 5 sections.
        conflicts(&[MaxWords { n: 20 }], Paragraphs { n: 3 });
        conflicts(&[MaxWords { n: 20 }], BulletList { n: 8 });
        conflicts(&[MaxWords { n: 20 }], NumberedList { n: 8 });
        conflicts(&[MaxWords { n: 20 }], Sections { n: 5 });
        // 1 + 10 × 3 = 31 words.
        fits(&[MaxWords { n: 31 }], Paragraphs { n: 3 });
        conflicts(&[MaxWords { n: 30 }], Paragraphs { n: 3 });
        // 1 + 3 × 5 (bullets) + 2 × 3 (keyword) = 22.
        let set = [BulletList { n: 5 }, KeywordFrequency { keyword: "green tea".into(), n: 3 }];
        fits(&set, MaxWords { n: 22 });
        assert!(conflicts(&set, MaxWords { n: 21 }).contains("needs at least 22 words but allows at most 21"));
    }

    #[test]
    fn bounds_of_the_same_measure() {
        conflicts(&[MinWords { n: 60 }], MaxWords { n: 50 });
        fits(&[MinWords { n: 50 }], MaxWords { n: 50 });
        conflicts(&[MaxSentences { n: 3 }], MinSentences { n: 4 });
        fits(&[MaxSentences { n: 4 }], MinSentences { n: 4 });
        // min_sentences n needs 5n words.
        conflicts(&[MaxWords { n: 20 }], MinSentences { n: 4 });
    }

    #[test]
    fn structures_need_sentences() {
        // 1 + 4 bullets + 3 paragraphs = 8.
        let set = [BulletList { n: 4 }, Paragraphs { n: 3 }];
        fits(&set, MaxSentences { n: 8 });
        conflicts(&set, MaxSentences { n: 7 });
        // 1 + 2 × 3 sections.
        conflicts(&[MaxSentences { n: 6 }], Sections { n: 3 });
        // "Hope this helps!" ends a sentence inside the phrase: 1 + 1.
        conflicts(&[MaxSentences { n: 1 }], EndsWith { phrase: "Hope this helps!".into() });
        fits(&[MaxSentences { n: 1 }], EndsWith { phrase: "hope this helps".into() });
    }

    #[test]
    fn many_words_need_enough_sentences() {
        fits(&[MaxSentences { n: 2 }], MinWords { n: 80 });
        assert!(conflicts(&[MaxSentences { n: 2 }], MinWords { n: 81 }).contains("do not fit in 2 sentences"));
    }

    #[test]
    fn an_existing_contradiction_is_reported() {
        assert!(conflict(&[MinWords { n: 100 }, MaxWords { n: 10 }], &Title {}).is_some());
        assert_eq!(conflict(&[], &Title {}), None);
    }
}
