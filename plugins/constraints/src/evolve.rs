//! Evolving constraint sets: [`random_compatible`] adds a constraint (in-depth evolution
//! by addition), [`tighten`] makes one harder (in-depth evolution by tightening).

use crate::{Constraint, Rng, conflict, keyword_error};

/// Keywords to require when the topic offers none: words any answer can work in.
const INCLUDE_WORDS: [&str; 12] = [
    "example", "because", "first", "finally", "reason", "tip", "result", "plan", "mistake", "benefit", "question",
    "today",
];
/// Keywords to forbid: fillers and hedges a model leans on.
const EXCLUDE_WORDS: [&str; 12] = [
    "very",
    "really",
    "basically",
    "actually",
    "thing",
    "stuff",
    "nice",
    "just",
    "amazing",
    "literally",
    "definitely",
    "obviously",
];
const START_PHRASES: [&str; 8] =
    ["Here is", "In short", "Great question", "To begin", "Sure", "Sure, here it is", "Let me explain", "Good news"];
const END_PHRASES: [&str; 6] = [
    "Is there anything else I can help with?",
    "Thanks for reading.",
    "Let me know if you have questions.",
    "Any other questions?",
    "Hope this helps!",
    "That is all.",
];
const MAX_WORDS: [u32; 10] = [30, 40, 50, 60, 80, 100, 120, 150, 200, 300];
const MIN_WORDS: [u32; 7] = [20, 30, 40, 50, 80, 100, 150];
/// Candidates drawn before [`random_compatible`] gives up.
const ATTEMPTS: usize = 64;
/// Ceilings [`tighten`] stops at, so evolved prompts stay answerable by a small model.
const MIN_WORDS_CEILING: u32 = 1000;
const MIN_SENTENCES_CEILING: u32 = 20;
const COUNT_CEILING: u32 = 10;
const BLOCKS_CEILING: u32 = 8;
/// `max_words` below this is not tightened further.
const MAX_WORDS_FLOOR: u32 = 10;

/// A constraint of a random kind (uniform over the kinds) with random parameters that
/// [`conflict`] accepts next to `existing`, or `None` when 64 candidates in a row all
/// conflicted. Required keywords come from `topic_words` (those that are valid keywords)
/// half of the time, otherwise from a built-in list of general words; forbidden ones from
/// a built-in list of fillers ("very", "basically", ...). Deterministic in `rng`.
pub fn random_compatible(existing: &[Constraint], rng: &mut Rng, topic_words: &[&str]) -> Option<Constraint> {
    let topic: Vec<&str> = topic_words.iter().copied().filter(|w| keyword_error(w).is_none()).collect();
    (0..ATTEMPTS).map(|_| random_constraint(rng, &topic)).find(|c| conflict(existing, c).is_none())
}

fn random_constraint(rng: &mut Rng, topic: &[&str]) -> Constraint {
    match between(rng, 0, 19) {
        0 => Constraint::MaxWords { n: *rng.pick(&MAX_WORDS).expect("non-empty") },
        1 => Constraint::MinWords { n: *rng.pick(&MIN_WORDS).expect("non-empty") },
        2 => Constraint::MaxSentences { n: between(rng, 2, 10) },
        3 => Constraint::MinSentences { n: between(rng, 2, 6) },
        4 => Constraint::Paragraphs { n: between(rng, 1, 5) },
        5 => {
            let count = between(rng, 1, 3) as usize;
            let pool = keyword_pool(rng, topic);
            Constraint::IncludeKeywords { keywords: draw_distinct(rng, &pool, count) }
        }
        6 => {
            let n = between(rng, 2, 4);
            let pool = keyword_pool(rng, topic);
            Constraint::KeywordFrequency { keyword: draw_distinct(rng, &pool, 1).remove(0), n }
        }
        7 => {
            let count = between(rng, 1, 2) as usize;
            Constraint::ExcludeKeywords { keywords: draw_distinct(rng, &EXCLUDE_WORDS, count) }
        }
        8 => Constraint::StartsWith { phrase: rng.pick(&START_PHRASES).expect("non-empty").to_string() },
        9 => Constraint::EndsWith { phrase: rng.pick(&END_PHRASES).expect("non-empty").to_string() },
        10 => Constraint::MinPlaceholders { n: between(rng, 1, 3) },
        11 => Constraint::BulletList { n: between(rng, 2, 6) },
        12 => Constraint::NumberedList { n: between(rng, 2, 6) },
        13 => Constraint::Json {},
        14 => Constraint::Title {},
        15 => Constraint::Sections { n: between(rng, 2, 4) },
        16 => Constraint::Lowercase {},
        17 => Constraint::Uppercase {},
        18 => Constraint::NoCommas {},
        _ => Constraint::Quoted {},
    }
}

/// A uniform number in `lo..=hi`.
fn between(rng: &mut Rng, lo: u32, hi: u32) -> u32 {
    lo + rng.below(u64::from(hi - lo + 1)) as u32
}

/// The topic's words or the built-in ones, by a coin flip (the built-in ones when the
/// topic has none).
fn keyword_pool<'a>(rng: &mut Rng, topic: &[&'a str]) -> Vec<&'a str> {
    if !topic.is_empty() && rng.below(2) == 0 { topic.to_vec() } else { INCLUDE_WORDS.to_vec() }
}

/// Up to `count` words of `pool`, distinct up to case, in drawing order; at least one when
/// `pool` is non-empty.
fn draw_distinct(rng: &mut Rng, pool: &[&str], count: usize) -> Vec<String> {
    let mut left: Vec<&str> = pool.to_vec();
    let mut drawn: Vec<String> = Vec::new();
    while drawn.len() < count && !left.is_empty() {
        let word = left.swap_remove(rng.below(left.len() as u64) as usize);
        if !drawn.iter().any(|d| d.to_lowercase() == word.to_lowercase()) {
            drawn.push(word.to_owned());
        }
    }
    drawn
}

/// A harder version of `c` of the same kind, or `None` when it has none (kinds without a
/// parameter, phrases) or is at its limit. Bounds get strictly stricter, so every answer
/// that satisfies the result satisfies `c`:
///
/// - `max_words` n → n − 1 to n − n/4 (not below 10 words); `min_words` n → n + 1 to
///   n + n/4 + 1 (at most 1000); `max_sentences` n → n − 1; `min_sentences` n → n + 1
///   (at most 20);
/// - `include_keywords` / `exclude_keywords` gain one built-in word;
///   `keyword_frequency` and `min_placeholders` n → n + 1 (at most 10).
///
/// Exact counts ask for one more: `paragraphs` and `sections` n → n + 1 (at most 8),
/// `bullet_list` and `numbered_list` n → n + 1 (at most 10): harder, though an answer for
/// the result no longer satisfies `c`. The result may conflict with the rest of its set;
/// the caller checks it with [`conflict`].
pub fn tighten(c: &Constraint, rng: &mut Rng) -> Option<Constraint> {
    let up = |n: u32, ceiling: u32| (n < ceiling).then_some(n + 1);
    match c {
        Constraint::MaxWords { n } => (*n > MAX_WORDS_FLOOR).then(|| {
            let cut = 1 + rng.below(u64::from(n / 4)) as u32;
            Constraint::MaxWords { n: (n - cut).max(MAX_WORDS_FLOOR) }
        }),
        Constraint::MinWords { n } => (*n < MIN_WORDS_CEILING).then(|| {
            let raise = 1 + rng.below(u64::from(n / 4 + 1)) as u32;
            Constraint::MinWords { n: (n + raise).min(MIN_WORDS_CEILING) }
        }),
        Constraint::MaxSentences { n } => (*n > 1).then(|| Constraint::MaxSentences { n: n - 1 }),
        Constraint::MinSentences { n } => up(*n, MIN_SENTENCES_CEILING).map(|n| Constraint::MinSentences { n }),
        Constraint::Paragraphs { n } => up(*n, BLOCKS_CEILING).map(|n| Constraint::Paragraphs { n }),
        Constraint::Sections { n } => up(*n, BLOCKS_CEILING).map(|n| Constraint::Sections { n }),
        Constraint::KeywordFrequency { keyword, n } => {
            up(*n, COUNT_CEILING).map(|n| Constraint::KeywordFrequency { keyword: keyword.clone(), n })
        }
        Constraint::MinPlaceholders { n } => up(*n, COUNT_CEILING).map(|n| Constraint::MinPlaceholders { n }),
        Constraint::BulletList { n } => up(*n, COUNT_CEILING).map(|n| Constraint::BulletList { n }),
        Constraint::NumberedList { n } => up(*n, COUNT_CEILING).map(|n| Constraint::NumberedList { n }),
        Constraint::IncludeKeywords { keywords } => {
            with_one_more(keywords, &INCLUDE_WORDS, rng).map(|keywords| Constraint::IncludeKeywords { keywords })
        }
        Constraint::ExcludeKeywords { keywords } => {
            with_one_more(keywords, &EXCLUDE_WORDS, rng).map(|keywords| Constraint::ExcludeKeywords { keywords })
        }
        Constraint::StartsWith { .. }
        | Constraint::EndsWith { .. }
        | Constraint::Json {}
        | Constraint::Title {}
        | Constraint::Lowercase {}
        | Constraint::Uppercase {}
        | Constraint::NoCommas {}
        | Constraint::Quoted {} => None,
    }
}

/// `keywords` and one word of `pool` that it lacks (up to case); `None` when it lacks none.
fn with_one_more(keywords: &[String], pool: &[&str], rng: &mut Rng) -> Option<Vec<String>> {
    let fresh: Vec<&str> =
        pool.iter().copied().filter(|w| !keywords.iter().any(|k| k.to_lowercase() == w.to_lowercase())).collect();
    let word = rng.pick(&fresh)?;
    Some(keywords.iter().cloned().chain([word.to_string()]).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds_get_strictly_stricter() {
        for seed in 0..200 {
            let mut rng = Rng::new(seed);
            let Some(Constraint::MaxWords { n }) = tighten(&Constraint::MaxWords { n: 100 }, &mut rng) else {
                panic!("max_words tightens")
            };
            assert!((75..100).contains(&n), "{n}");
            let Some(Constraint::MinWords { n }) = tighten(&Constraint::MinWords { n: 40 }, &mut rng) else {
                panic!("min_words tightens")
            };
            assert!((41..=51).contains(&n), "{n}");
        }
        let mut rng = Rng::new(1);
        assert_eq!(tighten(&Constraint::MaxWords { n: 11 }, &mut rng), Some(Constraint::MaxWords { n: 10 }));
        assert_eq!(tighten(&Constraint::MaxWords { n: 10 }, &mut rng), None);
        assert_eq!(tighten(&Constraint::MaxSentences { n: 1 }, &mut rng), None);
        assert_eq!(tighten(&Constraint::MinWords { n: 1000 }, &mut rng), None);
        assert_eq!(tighten(&Constraint::Sections { n: 3 }, &mut rng), Some(Constraint::Sections { n: 4 }));
        assert_eq!(tighten(&Constraint::BulletList { n: 10 }, &mut rng), None);
        assert_eq!(tighten(&Constraint::Quoted {}, &mut rng), None);
        assert_eq!(tighten(&Constraint::StartsWith { phrase: "Sure".into() }, &mut rng), None);
    }

    #[test]
    fn keyword_lists_gain_a_new_word() {
        let mut rng = Rng::new(5);
        let keywords = vec!["Example".to_string(), "tide".to_string()];
        let Some(Constraint::IncludeKeywords { keywords: more }) =
            tighten(&Constraint::IncludeKeywords { keywords: keywords.clone() }, &mut rng)
        else {
            panic!("include_keywords tightens")
        };
        assert_eq!(more[..2], keywords[..]);
        assert_eq!(more.len(), 3);
        assert_ne!(more[2], "example", "already there up to case");
        let all: Vec<String> = EXCLUDE_WORDS.iter().map(|w| w.to_string()).collect();
        assert_eq!(tighten(&Constraint::ExcludeKeywords { keywords: all }, &mut rng), None);
    }

    #[test]
    fn topic_words_are_used_when_valid() {
        let topic = ["tide", "moon", "  bad ", "-x-"];
        let mut from_topic = 0;
        for seed in 0..300 {
            let c = random_compatible(&[], &mut Rng::new(seed), &topic).expect("the empty set takes anything");
            if let Constraint::IncludeKeywords { keywords } = &c {
                assert!(keywords.iter().all(|k| keyword_error(k).is_none()), "{keywords:?}");
                from_topic += usize::from(keywords.iter().any(|k| k == "tide" || k == "moon"));
            }
        }
        assert!(from_topic > 0);
    }

    #[test]
    fn gives_up_when_nothing_fits() {
        // Twenty kinds, each already present: every candidate repeats a kind.
        let mut rng = Rng::new(9);
        let mut full = Vec::new();
        while full.len() < 20 {
            let c = random_constraint(&mut rng, &[]);
            if full.iter().all(|f: &Constraint| f.kind() != c.kind()) {
                full.push(c);
            }
        }
        assert_eq!(random_compatible(&full, &mut rng, &[]), None);
    }
}
