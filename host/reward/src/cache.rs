//! The scorer every caller goes through: input checks, a per-run cache, batching and
//! output checks around one backend.

use std::collections::HashMap;

use sha2::{Digest, Sha256};

use crate::error::{Error, Result};
use crate::{Reward, RewardItem};

/// A backend behind a cache keyed by the hash of (prompt, answer): within one scorer's
/// life, an answer is never scored twice.
pub struct Scorer {
    backend: Box<dyn Reward>,
    cache: HashMap<[u8; 32], f64>,
    batch: usize,
    /// Items actually sent to the backend so far.
    scored: usize,
}

fn key(item: &RewardItem) -> [u8; 32] {
    let mut h = Sha256::new();
    for m in &item.messages {
        // Lengths in front make the encoding unambiguous.
        for part in [m.role.as_bytes(), m.content.as_bytes()] {
            h.update((part.len() as u64).to_le_bytes());
            h.update(part);
        }
    }
    h.update(u64::MAX.to_le_bytes());
    h.update((item.response.len() as u64).to_le_bytes());
    h.update(item.response.as_bytes());
    // Labels change what a verifiable reward checks: the same answer may score otherwise.
    if let Some(labels) = &item.labels {
        h.update(labels.as_bytes());
    }
    h.finalize().into()
}

impl Scorer {
    /// `batch`: how many items go to the backend per call (progress is reported per call).
    pub fn new(backend: Box<dyn Reward>, batch: usize) -> Self {
        Self { backend, cache: HashMap::new(), batch: batch.max(1), scored: 0 }
    }

    pub fn describe(&self) -> String {
        self.backend.describe()
    }

    /// How many items the backend has scored (cache misses).
    pub fn backend_calls(&self) -> usize {
        self.scored
    }

    /// Seed the cache with rewards already known (from a resumed run's files).
    pub fn remember(&mut self, item: &RewardItem, reward: f64) {
        self.cache.insert(key(item), reward);
    }

    /// One finite reward per item, in order. `progress` is told how many items each
    /// backend call finished. An empty answer, a prompt without messages or a
    /// non-finite reward is an [`Error::Item`] naming the item's index in `items`.
    pub fn score(&mut self, items: &[RewardItem], progress: &mut dyn FnMut(usize)) -> Result<Vec<f64>> {
        for (index, item) in items.iter().enumerate() {
            if item.messages.is_empty() {
                return Err(Error::Item { index, reason: "the prompt has no messages".into() });
            }
            if item.response.trim().is_empty() {
                return Err(Error::Item { index, reason: "the answer is empty".into() });
            }
        }
        let keys: Vec<[u8; 32]> = items.iter().map(key).collect();
        // The first occurrence of each key not cached yet, and how often each occurs.
        let mut todo: Vec<usize> = Vec::new();
        let mut occurrences: HashMap<[u8; 32], usize> = HashMap::new();
        for (i, k) in keys.iter().enumerate() {
            if !self.cache.contains_key(k) {
                let n = occurrences.entry(*k).or_default();
                if *n == 0 {
                    todo.push(i);
                }
                *n += 1;
            }
        }
        progress(items.len() - occurrences.values().sum::<usize>());
        for chunk in todo.chunks(self.batch) {
            let batch: Vec<RewardItem> = chunk.iter().map(|&i| items[i].clone()).collect();
            let _span =
                tracing::debug_span!("reward call", backend = %self.backend.describe(), items = batch.len()).entered();
            let rewards = self.backend.score(&batch).map_err(|e| e.rebase(|j| chunk[j]))?;
            if rewards.len() != batch.len() {
                return Err(Error::Config(format!(
                    "{} returned {} rewards for {} answers",
                    self.backend.describe(),
                    rewards.len(),
                    batch.len()
                )));
            }
            for (&i, &r) in chunk.iter().zip(&rewards) {
                if let Err(why) = eva_plugin_runtime::validate::reward_value(r) {
                    return Err(Error::Item {
                        index: i,
                        reason: format!("{} gave the reward {r}, {why}", self.backend.describe()),
                    });
                }
            }
            for (&i, r) in chunk.iter().zip(rewards) {
                self.cache.insert(keys[i], r);
            }
            self.scored += chunk.len();
            progress(chunk.iter().map(|&i| occurrences[&keys[i]]).sum());
        }
        Ok(keys.iter().map(|k| self.cache[k]).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use eva_engine::Message;

    /// Rewards the answer's length; NaN for the answer `nan`, 1e300 for `huge`.
    struct Length(usize);

    impl Reward for Length {
        fn describe(&self) -> String {
            "length".into()
        }
        fn score(&mut self, items: &[RewardItem]) -> Result<Vec<f64>> {
            self.0 += items.len();
            let reward = |answer: &str| match answer {
                "nan" => f64::NAN,
                "huge" => 1e300,
                _ => answer.len() as f64,
            };
            Ok(items.iter().map(|i| reward(&i.response)).collect())
        }
    }

    fn item(prompt: &str, answer: &str) -> RewardItem {
        RewardItem::new(vec![Message::new("user", prompt)], answer)
    }

    #[test]
    fn each_distinct_answer_is_scored_once() {
        let mut s = Scorer::new(Box::new(Length(0)), 2);
        let items = [item("p", "aa"), item("p", "bbb"), item("p", "aa"), item("q", "aa")];
        let mut seen = 0;
        assert_eq!(s.score(&items, &mut |n| seen += n).unwrap(), [2.0, 3.0, 2.0, 2.0]);
        assert_eq!((s.backend_calls(), seen), (3, 4));
        assert_eq!(s.score(&items[..2], &mut |_| {}).unwrap(), [2.0, 3.0]);
        assert_eq!(s.backend_calls(), 3, "the second call hit the cache");
    }

    #[test]
    fn bad_items_and_non_finite_rewards_name_the_item() {
        let mut s = Scorer::new(Box::new(Length(0)), 1);
        let err = s.score(&[item("p", "ok"), item("p", "  ")], &mut |_| {}).unwrap_err();
        assert_eq!(err.to_string(), "item 1: the answer is empty");
        let err = s.score(&[item("p", "ok"), item("p", "ok"), item("p", "nan")], &mut |_| {}).unwrap_err();
        assert_eq!(err.to_string(), "item 2: length gave the reward NaN, not a finite number");
        let err = s.score(&[item("p", "huge")], &mut |_| {}).unwrap_err();
        assert!(err.to_string().ends_with("beyond the bound of ±1e100 on rewards"), "{err}");
    }

    #[test]
    fn the_key_separates_prompt_and_answer() {
        assert_ne!(key(&item("ab", "c")), key(&item("a", "bc")));
        assert_ne!(key(&item("a", "b")), key(&RewardItem::new(vec![Message::new("system", "a")], "b")));
        let labelled = |l: &str| item("a", "b").with_labels(Some(l.into()));
        assert_ne!(key(&item("a", "b")), key(&labelled("{}")));
        assert_ne!(key(&labelled(r#"{"n":1}"#)), key(&labelled(r#"{"n":2}"#)));
    }
}
