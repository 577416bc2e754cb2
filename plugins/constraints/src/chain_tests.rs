//! Chains of evolution steps ([`random_compatible`], [`tighten`]) over 10,000 seeds: every
//! set they build is free of conflicts in any order, survives JSON, and is answerable:
//! [`witness`] writes an answer that satisfies all of it. The witness follows the budgets
//! of [`conflict`] (each structure takes no more words and sentences than its need), so
//! this also tests that the budgets are enough.

use crate::text::{keyword_count, word_count};
use crate::{Constraint, Rng, check, conflict, random_compatible, tighten};

const TOPIC: [&str; 5] = ["tide", "moon", "ocean waves", "Coast", "not a keyword!"];
/// Words the witness writes; none is a built-in keyword of the evolver.
const FILLER: [&str; 8] = ["note", "plan", "step", "idea", "point", "part", "detail", "fact"];
/// Mirrors the cap of `conflict` on words per sentence.
const WORDS_PER_LINE: usize = 40;

/// Up to six constraints: each step adds a compatible one or, one time in three,
/// tightens a member when the result still fits the others.
fn chain(seed: u64) -> Vec<Constraint> {
    let mut rng = Rng::new(seed);
    let target = 1 + rng.below(6) as usize;
    let mut set = Vec::new();
    for _ in 0..2 * target {
        if set.len() == target {
            break;
        }
        if !set.is_empty() && rng.below(3) == 0 {
            let i = rng.below(set.len() as u64) as usize;
            if let Some(tighter) = tighten(&set[i], &mut rng)
                && conflict(&without(&set, i), &tighter).is_none()
            {
                set[i] = tighter;
            }
        } else if let Some(c) = random_compatible(&set, &mut rng, &TOPIC) {
            set.push(c);
        }
    }
    set
}

fn without(set: &[Constraint], i: usize) -> Vec<Constraint> {
    set.iter().enumerate().filter(|&(j, _)| j != i).map(|(_, c)| c.clone()).collect()
}

enum Case {
    Keep,
    Lower,
    Upper,
}

/// An answer satisfying a conflict-free `set`: a lead line (start phrase, title,
/// keywords, placeholders, a word), then bullet or numbered items, then sections (header
/// and a line each) in their own blocks; blocks merged or added to reach `paragraphs`,
/// one-word lines added to reach `min_sentences`, words added (at most 40 a line) to
/// reach `min_words`, the end phrase last. Every line is one sentence. A JSON answer puts
/// the lines, as sentences, in the one string value of an object.
fn witness(set: &[Constraint]) -> String {
    let (mut min_words, mut min_sentences, mut paragraphs) = (0, 0, None);
    let (mut payload, mut excluded, mut start, mut end) = (Vec::new(), Vec::new(), None, None);
    let (mut placeholders, mut bullets, mut numbered, mut sections) = (0, 0, 0, 0);
    let (mut json, mut title, mut quoted, mut case) = (false, false, false, Case::Keep);
    for c in set {
        match c {
            Constraint::MinWords { n } => min_words = *n as usize,
            Constraint::MinSentences { n } => min_sentences = *n as usize,
            Constraint::Paragraphs { n } => paragraphs = Some(*n as usize),
            Constraint::IncludeKeywords { keywords } => payload.extend(keywords.iter().cloned()),
            Constraint::KeywordFrequency { keyword, n } => payload.extend((0..*n).map(|_| keyword.clone())),
            Constraint::ExcludeKeywords { keywords } => excluded.clone_from(keywords),
            Constraint::StartsWith { phrase } => start = Some(phrase.clone()),
            Constraint::EndsWith { phrase } => end = Some(phrase.clone()),
            Constraint::MinPlaceholders { n } => placeholders = *n,
            Constraint::BulletList { n } => bullets = *n,
            Constraint::NumberedList { n } => numbered = *n,
            Constraint::Sections { n } => sections = *n,
            Constraint::Json {} => json = true,
            Constraint::Title {} => title = true,
            Constraint::Quoted {} => quoted = true,
            Constraint::Lowercase {} => case = Case::Lower,
            Constraint::Uppercase {} => case = Case::Upper,
            Constraint::MaxWords { .. } | Constraint::MaxSentences { .. } | Constraint::NoCommas {} => {}
        }
    }
    let filler: Vec<&str> = FILLER.into_iter().filter(|f| excluded.iter().all(|e| keyword_count(f, e) == 0)).collect();
    let mut fill = filler.iter().cycle();
    let mut word = move || fill.next().expect("some filler is not excluded").to_string();

    let mut lead: Vec<String> = start.into_iter().collect();
    lead.extend(title.then(|| format!("<<{}>>", word())));
    lead.append(&mut payload);
    lead.extend((0..placeholders).map(|_| format!("[{}]", word())));
    lead.push(word());
    let mut first = vec![lead];
    first.extend((0..bullets).map(|_| vec!["-".to_owned(), word(), word(), word()]));
    first.extend((1..=numbered).map(|i| vec![format!("{i}."), word(), word(), word()]));
    let mut blocks = vec![first];
    for i in 1..=sections {
        blocks.push(vec![vec!["SECTION".to_owned(), i.to_string()], vec![word(), word(), word(), word()]]);
    }
    if let Some(p) = paragraphs {
        while blocks.len() > p {
            let last = blocks.pop().expect("more than one block");
            blocks.last_mut().expect("a block").extend(last);
        }
        while blocks.len() < p {
            blocks.push(vec![vec![word()]]);
        }
    }
    let lines = |blocks: &Vec<Vec<Vec<String>>>| blocks.iter().map(Vec::len).sum::<usize>();
    while lines(&blocks) < min_sentences {
        blocks.last_mut().expect("a block").push(vec![word()]);
    }
    let words = |line: &[String]| word_count(&line.join(" "));
    let end_words = end.as_deref().map_or(0, word_count);
    while blocks.iter().flatten().map(|l| words(l)).sum::<usize>() + end_words < min_words {
        let roomy = blocks.iter_mut().flatten().find(|l| words(l) < WORDS_PER_LINE);
        match roomy {
            Some(line) => line.push(word()),
            None => blocks.last_mut().expect("a block").push(vec![word()]),
        }
    }
    if let Some(end) = end {
        blocks.last_mut().and_then(|b| b.last_mut()).expect("a line").push(end);
    }

    let cased = |s: String| match case {
        Case::Keep => s,
        Case::Lower => s.to_lowercase(),
        Case::Upper => s.to_uppercase(),
    };
    let line = |tokens: &Vec<String>| cased(tokens.join(" "));
    if json {
        let body: Vec<String> = blocks.iter().flatten().map(line).collect();
        let object = serde_json::Map::from_iter([(cased(word()), body.join(". ").into())]);
        return serde_json::Value::Object(object).to_string();
    }
    let text =
        blocks.iter().map(|b| b.iter().map(line).collect::<Vec<_>>().join("\n")).collect::<Vec<_>>().join("\n\n");
    if quoted { format!("\"{text}\"") } else { text }
}

#[test]
fn chains_stay_compatible_and_answerable() {
    let mut sizes = [0usize; 7];
    let mut kinds = std::collections::BTreeSet::new();
    for seed in 0..10_000 {
        let set = chain(seed);
        sizes[set.len()] += 1;
        for (i, c) in set.iter().enumerate() {
            kinds.insert(c.kind());
            assert_eq!(conflict(&without(&set, i), c), None, "seed {seed}: {set:?}");
            let json = serde_json::to_string(c).expect("serialises");
            assert_eq!(&serde_json::from_str::<Constraint>(&json).expect("valid constraints parse back"), c);
        }
        let answer = witness(&set);
        for c in &set {
            assert!(check(c, &answer), "seed {seed}: {c:?} fails on the witness {answer:?} of {set:?}");
        }
    }
    assert_eq!(kinds.len(), 20, "every kind appears: {kinds:?}");
    assert!(sizes[1..].iter().all(|&n| n > 100), "sets of every size up to 6: {sizes:?}");
}

#[test]
fn the_same_seed_gives_the_same_chain() {
    for seed in [0, 1, 42, u64::MAX] {
        assert_eq!(chain(seed), chain(seed));
    }
    let distinct: std::collections::BTreeSet<String> = (0..50).map(|s| format!("{:?}", chain(s))).collect();
    assert!(distinct.len() > 45, "{} distinct chains of 50", distinct.len());
}
