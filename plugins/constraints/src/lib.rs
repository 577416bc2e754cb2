//! Verifiable instruction-following constraints (IFEval-style), shared by the
//! `constraint-check` reward and the `constraint-evolver` evolver.
//!
//! A prompt carries its constraints as labels,
//! `{"constraints": [{"kind": "max_words", "n": 50}, {"kind": "no_commas"}]}`; the prompt
//! text ends with each constraint's [`describe`] sentence. [`check`] decides one
//! constraint on an answer, [`score`] is the fraction a set holds, [`conflict`] says when
//! a constraint contradicts a set, and [`tighten`] / [`random_compatible`] evolve sets
//! with the deterministic [`Rng`].
//!
//! Pure Rust with no threads, files, clock or system randomness, so it builds for
//! `wasm32-unknown-unknown` and `wasm32-wasip1` as well as natively.

mod conflict;
mod evolve;
mod rng;
pub mod text;

#[cfg(test)]
mod chain_tests;

use serde::{Deserialize, Deserializer, Serialize};

pub use conflict::conflict;
pub use evolve::{random_compatible, tighten};
pub use rng::Rng;

/// One verifiable constraint on an answer. In JSON it is an object tagged by `kind`
/// (`{"kind": "max_words", "n": 50}`); unknown kinds and unknown fields are refused, and so
/// are counts of 0, empty keyword lists and malformed keywords or phrases (see
/// [`Constraint::IncludeKeywords`] and [`Constraint::StartsWith`]).
///
/// Kinds without parameters are empty struct variants (`Json {}`) because serde ignores
/// unknown fields on unit variants of an internally tagged enum.
///
/// Rules common to every kind:
/// - an answer with no word (see [`text::words`]): empty, blank, only punctuation or
///   emoji, fails every constraint, so a reward never pays for saying nothing;
/// - "word", "sentence", "paragraph", keyword matching and the list items are defined
///   once in [`text`] and used by every kind alike.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Constraint {
    /// At most `n` words ([`text::word_count`]).
    MaxWords {
        #[serde(deserialize_with = "positive")]
        n: u32,
    },
    /// At least `n` words ([`text::word_count`]).
    MinWords {
        #[serde(deserialize_with = "positive")]
        n: u32,
    },
    /// At most `n` sentences ([`text::sentence_count`]: terminators `.` `!` `?` `…`
    /// before whitespace, and line ends).
    MaxSentences {
        #[serde(deserialize_with = "positive")]
        n: u32,
    },
    /// At least `n` sentences ([`text::sentence_count`]).
    MinSentences {
        #[serde(deserialize_with = "positive")]
        n: u32,
    },
    /// Exactly `n` paragraphs ([`text::paragraph_count`]: blocks separated by blank lines
    /// or markdown rules such as `***`).
    Paragraphs {
        #[serde(deserialize_with = "positive")]
        n: u32,
    },
    /// Each keyword at least once ([`text::keyword_count`]: case-insensitive, on word
    /// boundaries). A keyword is one or more words: non-empty, starting and ending with a
    /// letter or digit, on one line; the list is non-empty and without repeats (in any
    /// case).
    IncludeKeywords {
        #[serde(deserialize_with = "keyword_list")]
        keywords: Vec<String>,
    },
    /// `keyword` at least `n` times ([`text::keyword_count`]).
    KeywordFrequency {
        #[serde(deserialize_with = "keyword")]
        keyword: String,
        #[serde(deserialize_with = "positive")]
        n: u32,
    },
    /// None of the keywords ([`text::keyword_count`] is 0 for each).
    ExcludeKeywords {
        #[serde(deserialize_with = "keyword_list")]
        keywords: Vec<String>,
    },
    /// The answer, without leading whitespace, starts with `phrase`
    /// ([`text::starts_with_phrase`]: case-insensitive, on a word boundary). A phrase is
    /// non-empty, on one line, without surrounding whitespace, and holds a letter or digit.
    StartsWith {
        #[serde(deserialize_with = "phrase")]
        phrase: String,
    },
    /// The answer, without trailing whitespace, ends with `phrase`
    /// ([`text::ends_with_phrase`]).
    EndsWith {
        #[serde(deserialize_with = "phrase")]
        phrase: String,
    },
    /// At least `n` placeholders in square brackets such as `[address]`
    /// ([`text::placeholder_count`]; markdown links do not count).
    MinPlaceholders {
        #[serde(deserialize_with = "positive")]
        n: u32,
    },
    /// Exactly `n` markdown bullet items (`-`, `*` or `+` at the start of a line, see
    /// [`text::bullet_item`]), nested ones included; other lines are allowed.
    BulletList {
        #[serde(deserialize_with = "positive")]
        n: u32,
    },
    /// Exactly `n` numbered items (`1.` or `1)` at the start of a line, see
    /// [`text::numbered_item`]); other lines are allowed, the numbers are not checked.
    NumberedList {
        #[serde(deserialize_with = "positive")]
        n: u32,
    },
    /// The whole answer is a JSON object or array (bare strings and numbers are refused),
    /// optionally inside a "```json" fence ([`text::json_body`]).
    Json {},
    /// A title in double angle brackets such as `<<Tides>>`, anywhere
    /// ([`text::has_title`]).
    Title {},
    /// Exactly `n` sections: the section headers ("SECTION 1", any case, at the start
    /// of a line, see [`text::section_numbers`]) are numbered 1, 2, ..., `n` in order.
    Sections {
        #[serde(deserialize_with = "positive")]
        n: u32,
    },
    /// No character changes under Unicode lowercasing ([`text::is_lowercase`]).
    Lowercase {},
    /// No character changes under Unicode uppercasing ([`text::is_uppercase`]).
    Uppercase {},
    /// No comma: `,` `，` `、` or `،` ([`text::COMMAS`]).
    NoCommas {},
    /// The whole answer, without surrounding whitespace, is wrapped in double quotes:
    /// `"…"` or `“…”` ([`text::is_quoted`]).
    Quoted {},
}

impl Constraint {
    /// The `kind` tag, as in JSON.
    pub fn kind(&self) -> &'static str {
        match self {
            Constraint::MaxWords { .. } => "max_words",
            Constraint::MinWords { .. } => "min_words",
            Constraint::MaxSentences { .. } => "max_sentences",
            Constraint::MinSentences { .. } => "min_sentences",
            Constraint::Paragraphs { .. } => "paragraphs",
            Constraint::IncludeKeywords { .. } => "include_keywords",
            Constraint::KeywordFrequency { .. } => "keyword_frequency",
            Constraint::ExcludeKeywords { .. } => "exclude_keywords",
            Constraint::StartsWith { .. } => "starts_with",
            Constraint::EndsWith { .. } => "ends_with",
            Constraint::MinPlaceholders { .. } => "min_placeholders",
            Constraint::BulletList { .. } => "bullet_list",
            Constraint::NumberedList { .. } => "numbered_list",
            Constraint::Json {} => "json",
            Constraint::Title {} => "title",
            Constraint::Sections { .. } => "sections",
            Constraint::Lowercase {} => "lowercase",
            Constraint::Uppercase {} => "uppercase",
            Constraint::NoCommas {} => "no_commas",
            Constraint::Quoted {} => "quoted",
        }
    }
}

/// Whether `answer` satisfies `c` (see [`Constraint`] for each kind's rule).
pub fn check(c: &Constraint, answer: &str) -> bool {
    if text::word_count(answer) == 0 {
        return false;
    }
    // Counts are u32 and usize is at least 32 bits on every target this builds for.
    let n = |n: &u32| *n as usize;
    match c {
        Constraint::MaxWords { n: max } => text::word_count(answer) <= n(max),
        Constraint::MinWords { n: min } => text::word_count(answer) >= n(min),
        Constraint::MaxSentences { n: max } => text::sentence_count(answer) <= n(max),
        Constraint::MinSentences { n: min } => text::sentence_count(answer) >= n(min),
        Constraint::Paragraphs { n: exact } => text::paragraph_count(answer) == n(exact),
        Constraint::IncludeKeywords { keywords } => keywords.iter().all(|k| text::keyword_count(answer, k) > 0),
        Constraint::KeywordFrequency { keyword, n: min } => text::keyword_count(answer, keyword) >= n(min),
        Constraint::ExcludeKeywords { keywords } => keywords.iter().all(|k| text::keyword_count(answer, k) == 0),
        Constraint::StartsWith { phrase } => text::starts_with_phrase(answer, phrase),
        Constraint::EndsWith { phrase } => text::ends_with_phrase(answer, phrase),
        Constraint::MinPlaceholders { n: min } => text::placeholder_count(answer) >= n(min),
        Constraint::BulletList { n: exact } => answer.lines().filter_map(text::bullet_item).count() == n(exact),
        Constraint::NumberedList { n: exact } => answer.lines().filter_map(text::numbered_item).count() == n(exact),
        Constraint::Json {} => serde_json::from_str::<serde_json::Value>(text::json_body(answer))
            .is_ok_and(|v| v.is_object() || v.is_array()),
        Constraint::Title {} => text::has_title(answer),
        Constraint::Sections { n: exact } => text::section_numbers(answer).into_iter().eq(1..=u64::from(*exact)),
        Constraint::Lowercase {} => text::is_lowercase(answer),
        Constraint::Uppercase {} => text::is_uppercase(answer),
        Constraint::NoCommas {} => !answer.contains(text::COMMAS),
        Constraint::Quoted {} => text::is_quoted(answer),
    }
}

/// The key of a prompt's labels that holds its constraints.
pub const LABEL_KEY: &str = "constraints";

/// A prompt's labels (a JSON object as text) and the constraints under [`LABEL_KEY`]:
/// none when the key is absent; an error, saying which constraint is wrong and why, when
/// the labels are not a JSON object, the key is not a list or a constraint is malformed.
pub fn from_labels(labels: &str) -> Result<(serde_json::Map<String, serde_json::Value>, Vec<Constraint>), String> {
    let map = match serde_json::from_str(labels) {
        Ok(serde_json::Value::Object(map)) => map,
        Ok(_) => return Err("the labels are not a JSON object".into()),
        Err(e) => return Err(format!("the labels are not JSON: {e}")),
    };
    let constraints = match map.get(LABEL_KEY) {
        None => vec![],
        Some(serde_json::Value::Array(items)) => items
            .iter()
            .enumerate()
            .map(|(i, c)| serde_json::from_value(c.clone()).map_err(|e| format!("constraint {i} ({c}): {e}")))
            .collect::<Result<_, _>>()?,
        Some(_) => return Err(format!("`{LABEL_KEY}` is not a list")),
    };
    Ok((map, constraints))
}

/// The fraction of `cs` that `answer` satisfies; 1.0 for an empty list.
pub fn score(cs: &[Constraint], answer: &str) -> f64 {
    if cs.is_empty() {
        return 1.0;
    }
    cs.iter().filter(|c| check(c, answer)).count() as f64 / cs.len() as f64
}

/// The instruction appended to a prompt for `c`: one sentence, ending with a period,
/// the same for the same constraint.
pub fn describe(c: &Constraint) -> String {
    match c {
        Constraint::MaxWords { n } => format!("Answer in at most {}.", counted(*n, "word")),
        Constraint::MinWords { n } => format!("Answer in at least {}.", counted(*n, "word")),
        Constraint::MaxSentences { n } => format!("Answer in at most {}.", counted(*n, "sentence")),
        Constraint::MinSentences { n } => format!("Answer in at least {}.", counted(*n, "sentence")),
        Constraint::Paragraphs { n: 1 } => "Write a single paragraph with no blank lines.".to_owned(),
        Constraint::Paragraphs { n } => format!("Write exactly {n} paragraphs separated by blank lines."),
        Constraint::IncludeKeywords { keywords } => match keywords.as_slice() {
            [one] => format!("Include the keyword \"{one}\"."),
            many => format!("Include the keywords {}.", quoted_list(many, "and")),
        },
        Constraint::KeywordFrequency { keyword, n } => {
            let what = if text::word_count(keyword) > 1 { "phrase" } else { "word" };
            let times = match n {
                1 => "once".to_owned(),
                2 => "twice".to_owned(),
                n => format!("{n} times"),
            };
            format!("Use the {what} \"{keyword}\" at least {times}.")
        }
        Constraint::ExcludeKeywords { keywords } => match keywords.as_slice() {
            [one] => format!("Do not use the word \"{one}\"."),
            many => format!("Do not use the words {}.", quoted_list(many, "or")),
        },
        Constraint::StartsWith { phrase } => format!("Start your answer with \"{phrase}\"."),
        Constraint::EndsWith { phrase } => format!("End your answer with \"{phrase}\"."),
        Constraint::MinPlaceholders { n } => {
            format!("Include at least {} in square brackets such as [address].", counted(*n, "placeholder"))
        }
        Constraint::BulletList { n } => {
            format!("Include exactly {} using markdown such as \"- point\".", counted(*n, "bullet point"))
        }
        Constraint::NumberedList { n } => {
            format!("Include a numbered list of exactly {} such as \"1. item\".", counted(*n, "item"))
        }
        Constraint::Json {} => "Give your entire answer as a JSON object or array.".to_owned(),
        Constraint::Title {} => "Give your answer a title in double angle brackets such as <<my title>>.".to_owned(),
        Constraint::Sections { n } => format!(
            "Divide your answer into {} and begin each with \"SECTION X\" where X is its number.",
            counted(*n, "section")
        ),
        Constraint::Lowercase {} => "Write your entire answer in lowercase letters only.".to_owned(),
        Constraint::Uppercase {} => "Write your entire answer in capital letters only.".to_owned(),
        Constraint::NoCommas {} => "Do not use any commas.".to_owned(),
        Constraint::Quoted {} => "Wrap your entire answer in double quotation marks.".to_owned(),
    }
}

/// "1 word", "50 words".
fn counted(n: u32, noun: &str) -> String {
    if n == 1 { format!("1 {noun}") } else { format!("{n} {noun}s") }
}

/// `"a"`, `"a" and "b"`, `"a", "b" and "c"`.
fn quoted_list(items: &[String], last_joiner: &str) -> String {
    let quoted: Vec<String> = items.iter().map(|k| format!("\"{k}\"")).collect();
    match quoted.split_last() {
        Some((last, [])) => last.clone(),
        Some((last, rest)) => format!("{} {last_joiner} {last}", rest.join(", ")),
        None => String::new(),
    }
}

/// Why `k` is no valid keyword, if it is not (see [`Constraint::IncludeKeywords`]).
pub(crate) fn keyword_error(k: &str) -> Option<String> {
    let ends_ok = k.starts_with(char::is_alphanumeric) && k.ends_with(char::is_alphanumeric);
    (!ends_ok || k.contains('\n'))
        .then(|| format!("keyword {k:?} must start and end with a letter or digit and stay on one line"))
}

/// Why `p` is no valid phrase, if it is not (see [`Constraint::StartsWith`]).
fn phrase_error(p: &str) -> Option<String> {
    (p.trim() != p || p.contains('\n') || !text::has_alphanumeric(p)).then(|| {
        format!("phrase {p:?} must hold a letter or digit, stay on one line and have no surrounding whitespace")
    })
}

fn positive<'de, D: Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
    match u32::deserialize(d)? {
        0 => Err(serde::de::Error::custom("a count must be at least 1")),
        n => Ok(n),
    }
}

fn keyword<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    let k = String::deserialize(d)?;
    keyword_error(&k).map_or(Ok(k), |e| Err(serde::de::Error::custom(e)))
}

fn keyword_list<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    let keywords = Vec::<String>::deserialize(d)?;
    if keywords.is_empty() {
        return Err(serde::de::Error::custom("the keyword list must not be empty"));
    }
    for (i, k) in keywords.iter().enumerate() {
        if let Some(e) = keyword_error(k) {
            return Err(serde::de::Error::custom(e));
        }
        if keywords[..i].iter().any(|other| other.to_lowercase() == k.to_lowercase()) {
            return Err(serde::de::Error::custom(format!("keyword {k:?} is repeated")));
        }
    }
    Ok(keywords)
}

fn phrase<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    let p = String::deserialize(d)?;
    phrase_error(&p).map_or(Ok(p), |e| Err(serde::de::Error::custom(e)))
}

#[cfg(test)]
mod tests;
