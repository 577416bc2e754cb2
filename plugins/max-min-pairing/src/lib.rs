//! The `max-min-pairing` policy: for each prompt, the highest-reward response is chosen
//! and the lowest-reward one rejected, as in the eva paper. Ties go to the earlier
//! response for the maximum and the later one for the minimum, so the result never
//! depends on anything but the input; when every reward is equal there is no pair.

use eva_plugin_sdk::{Config, ConfigKind, Metadata, Pairing, Plugin, PluginError, Preference, PromptResponses, field};

pub struct MaxMinPairing {
    min_gap: f64,
}

/// The (chosen, rejected) indices of one prompt's rewards, or none when the best and
/// worst differ by no more than `min_gap`.
pub fn max_min(rewards: &[f64], min_gap: f64) -> Option<Preference> {
    let mut best = 0;
    let mut worst = 0;
    for (i, &r) in rewards.iter().enumerate() {
        if r > rewards[best] {
            best = i;
        }
        if r <= rewards[worst] {
            worst = i;
        }
    }
    (rewards.len() >= 2 && rewards[best] - rewards[worst] > min_gap)
        .then_some(Preference { chosen: best as u32, rejected: worst as u32 })
}

impl Plugin for MaxMinPairing {
    fn metadata() -> Metadata {
        eva_plugin_sdk::metadata!(
            "max-min-pairing",
            "Pairs the highest-reward response (chosen) with the lowest (rejected).",
            vec![field("min-gap", ConfigKind::Float, "0.0", "no pair unless max - min exceeds this")]
        )
    }

    fn from_config(config: &Config) -> Result<Self, PluginError> {
        let min_gap = config.float("min-gap")?;
        if min_gap < 0.0 {
            return Err(PluginError::InvalidConfig(format!("min-gap must not be negative, not {min_gap}")));
        }
        Ok(MaxMinPairing { min_gap })
    }
}

impl Pairing for MaxMinPairing {
    fn pair(&mut self, item: &PromptResponses) -> Result<Vec<Preference>, PluginError> {
        let rewards: Vec<f64> = item.responses.iter().map(|r| r.reward).collect();
        Ok(max_min(&rewards, self.min_gap).into_iter().collect())
    }
}

eva_plugin_sdk::export_pairing!(MaxMinPairing);

#[cfg(test)]
mod tests {
    use super::*;

    fn pair(c: u32, r: u32) -> Option<Preference> {
        Some(Preference { chosen: c, rejected: r })
    }

    #[test]
    fn pairs_best_with_worst() {
        assert_eq!(max_min(&[0.3, 0.9, 0.1, 0.5], 0.0), pair(1, 2));
    }

    #[test]
    fn ties_are_broken_deterministically() {
        // Best: the first of the maxima; worst: the last of the minima.
        assert_eq!(max_min(&[0.9, 0.1, 0.9, 0.1], 0.0), pair(0, 3));
    }

    #[test]
    fn no_pair_without_a_gap() {
        assert_eq!(max_min(&[0.4, 0.4, 0.4], 0.0), None);
        assert_eq!(max_min(&[0.4], 0.0), None);
        assert_eq!(max_min(&[], 0.0), None);
        assert_eq!(max_min(&[0.4, 0.5], 0.2), None);
    }
}
