//! Reward normalisation across the answers of one prompt.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

/// How raw rewards are rescaled before they are used.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Normalization {
    /// Raw rewards.
    #[default]
    None,
    /// Per prompt: (r − mean) / std over that prompt's answers (population std). A
    /// prompt whose answers all score the same (or that has one answer) gets 0s.
    PromptZ,
}

impl std::str::FromStr for Normalization {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "none" => Ok(Self::None),
            "prompt-z" => Ok(Self::PromptZ),
            other => Err(format!("unknown normalisation `{other}` (none, prompt-z)")),
        }
    }
}

/// Normalise `rewards` in place; `groups[i]` says which prompt reward `i` belongs to.
pub fn normalize<K: std::hash::Hash + Eq>(method: Normalization, rewards: &mut [f64], groups: &[K]) {
    assert_eq!(rewards.len(), groups.len(), "one group per reward");
    if method == Normalization::None {
        return;
    }
    let mut members: HashMap<&K, Vec<usize>> = HashMap::new();
    for (i, g) in groups.iter().enumerate() {
        members.entry(g).or_default().push(i);
    }
    for idx in members.values() {
        let n = idx.len() as f64;
        let mean = idx.iter().map(|&i| rewards[i]).sum::<f64>() / n;
        let std = (idx.iter().map(|&i| (rewards[i] - mean).powi(2)).sum::<f64>() / n).sqrt();
        for &i in idx {
            rewards[i] = if std > 1e-12 { (rewards[i] - mean) / std } else { 0.0 };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prompt_z_scores_each_prompt_on_its_own() {
        let mut r = [1.0, 3.0, 10.0, 10.0, 7.0];
        normalize(Normalization::PromptZ, &mut r, &["a", "a", "b", "b", "c"]);
        // a: mean 2, std 1; b: constant; c: a single answer.
        assert_eq!(r, [-1.0, 1.0, 0.0, 0.0, 0.0]);
        let mut r = [1.0, 3.0];
        normalize(Normalization::None, &mut r, &[0, 0]);
        assert_eq!(r, [1.0, 3.0]);
    }
}
