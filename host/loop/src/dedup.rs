//! Deduplication of evolved prompts against everything the run has seen: exact (after
//! normalising case, punctuation and whitespace) and near-duplicate (Jaccard similarity of
//! word 3-shingles at or above a threshold).

use std::collections::HashSet;

fn words(text: &str) -> Vec<String> {
    text.split(|c: char| !c.is_alphanumeric()).filter(|w| !w.is_empty()).map(str::to_lowercase).collect()
}

fn shingles(words: &[String]) -> HashSet<String> {
    if words.len() < 3 {
        return std::iter::once(words.join(" ")).collect();
    }
    words.windows(3).map(|w| w.join(" ")).collect()
}

/// The prompts seen so far.
#[derive(Default)]
pub struct Seen {
    exact: HashSet<String>,
    shingled: Vec<HashSet<String>>,
}

impl Seen {
    pub fn insert(&mut self, text: &str) {
        let w = words(text);
        self.exact.insert(w.join(" "));
        self.shingled.push(shingles(&w));
    }

    /// Why `text` duplicates a seen prompt, if it does.
    pub fn duplicate(&self, text: &str, threshold: f64) -> Option<String> {
        let w = words(text);
        if self.exact.contains(&w.join(" ")) {
            return Some("exact duplicate".into());
        }
        let s = shingles(&w);
        self.shingled.iter().find_map(|other| {
            let inter = s.intersection(other).count() as f64;
            let jaccard = inter / (s.len() as f64 + other.len() as f64 - inter);
            (jaccard >= threshold).then(|| format!("near duplicate (Jaccard {jaccard:.2})"))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_and_near_duplicates() {
        let mut seen = Seen::default();
        seen.insert("Write a poem about the sea, with three stanzas and a rhyme scheme.");
        assert_eq!(
            seen.duplicate("write a POEM about the sea with three stanzas and a rhyme scheme", 0.8).as_deref(),
            Some("exact duplicate")
        );
        assert!(
            seen.duplicate("Write a poem about the sea, with three stanzas and a rhyme scheme, please.", 0.8)
                .unwrap()
                .starts_with("near duplicate")
        );
        assert_eq!(seen.duplicate("Explain how tides work to a ten-year-old.", 0.8), None);
    }
}
