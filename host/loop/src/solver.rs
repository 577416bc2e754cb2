//! The solver's steps that need no model: from the scored answers of X'_t, the
//! preference pairs its pairing policy chooses ([`pair`]). The pairing policy is a trait
//! ([`Pairing`]), implemented by the runtime's Wasm handle and by plain Rust values.

use std::collections::HashMap;

use eva_plugin_runtime::{Preference, PromptResponses, ScoredResponse};

use crate::creator::{RoleError, phase_seed, plugin_prompt};
use crate::layout::{Answers, PairRecord, Producer, PromptRecord};

/// The pair step's policy: which of a prompt's answers form preference pairs.
pub trait Pairing {
    fn reseed(&mut self, seed: u64);
    /// Who the policy is, recorded with the file it writes.
    fn producer(&self) -> Producer {
        Producer::named(std::any::type_name::<Self>())
    }
    /// One list of pairs per item, in order.
    fn pair_batch(&mut self, items: &[PromptResponses]) -> Result<Vec<Vec<Preference>>, RoleError>;
}

impl Pairing for eva_plugin_runtime::Pairing {
    fn reseed(&mut self, seed: u64) {
        self.plugin_mut().reseed(seed);
    }
    fn producer(&self) -> Producer {
        Producer::plugin(self.plugin())
    }
    fn pair_batch(&mut self, items: &[PromptResponses]) -> Result<Vec<Vec<Preference>>, RoleError> {
        Ok(eva_plugin_runtime::Pairing::pair_batch(self, items)?)
    }
}

/// Pair: the preference pairs of every prompt of X'_t, in TRL's format with their
/// rewards; `answers` holds each prompt's scored answers by id.
pub fn pair(
    pairing: &mut dyn Pairing,
    prompts: &[PromptRecord],
    answers: &HashMap<&str, &Answers>,
    seed: u64,
) -> Result<Vec<PairRecord>, RoleError> {
    pairing.reseed(phase_seed(seed, "pair"));
    let items: Vec<PromptResponses> = prompts
        .iter()
        .map(|p| PromptResponses {
            prompt: plugin_prompt(p),
            responses: answers[p.id.as_str()]
                .answers
                .iter()
                .map(|a| ScoredResponse { text: a.text.clone(), reward: a.reward, tokens: a.tokens })
                .collect(),
        })
        .collect();
    let chosen = pairing.pair_batch(&items)?;
    Ok(prompts
        .iter()
        .zip(chosen)
        .flat_map(|(p, prefs)| {
            let a = &answers[p.id.as_str()].answers;
            prefs.into_iter().map(move |pr| PairRecord {
                id: p.id.clone(),
                prompt: p.messages.clone(),
                chosen: a[pr.chosen as usize].text.clone(),
                rejected: a[pr.rejected as usize].text.clone(),
                chosen_reward: a[pr.chosen as usize].reward,
                rejected_reward: a[pr.rejected as usize].reward,
                labels: p.labels.clone(),
            })
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layout::Answer;
    use eva_engine::Message;

    /// The best answer over the worst, when they differ: max-min pairing in plain Rust.
    struct MaxMin;

    impl Pairing for MaxMin {
        fn reseed(&mut self, _: u64) {}
        fn pair_batch(&mut self, items: &[PromptResponses]) -> Result<Vec<Vec<Preference>>, RoleError> {
            Ok(items
                .iter()
                .map(|item| {
                    let by_reward =
                        |a: &usize, b: &usize| item.responses[*a].reward.total_cmp(&item.responses[*b].reward);
                    let best = (0..item.responses.len()).max_by(by_reward).expect("answers");
                    let worst = (0..item.responses.len()).min_by(by_reward).expect("answers");
                    let differ = item.responses[best].reward > item.responses[worst].reward;
                    if differ { vec![Preference { chosen: best as u32, rejected: worst as u32 }] } else { vec![] }
                })
                .collect())
        }
    }

    #[test]
    fn pairs_carry_their_prompt_texts_rewards_and_labels() {
        let prompt = |id: &str| PromptRecord {
            id: id.into(),
            messages: vec![Message::new("user", id)],
            origin: "seed".into(),
            parent: None,
            method: None,
            labels: serde_json::from_value(serde_json::json!({"answer": id})).unwrap(),
        };
        let scored = |id: &str, rewards: &[f64]| Answers {
            id: id.into(),
            answers: rewards
                .iter()
                .enumerate()
                .map(|(i, &reward)| Answer { text: format!("{id}{i}"), tokens: 2, reward })
                .collect(),
        };
        let (a, b) = (scored("a", &[0.2, 0.9, 0.1]), scored("b", &[0.5, 0.5]));
        let answers = HashMap::from([("a", &a), ("b", &b)]);
        let pairs = pair(&mut MaxMin, &[prompt("a"), prompt("b")], &answers, 1).unwrap();
        assert_eq!(pairs.len(), 1, "b's answers tie: no pair");
        let p = &pairs[0];
        assert_eq!((p.id.as_str(), p.chosen.as_str(), p.rejected.as_str()), ("a", "a1", "a2"));
        assert_eq!((p.chosen_reward, p.rejected_reward), (0.9, 0.1));
        assert_eq!(p.prompt, [Message::new("user", "a")]);
        assert_eq!(serde_json::to_value(&p.labels).unwrap(), serde_json::json!({"answer": "a"}));
    }
}
