//! One typed handle per role. Each checks its input, calls the plugin in its sandbox,
//! and validates the output before anything else in the host sees it.

use std::sync::Arc;

use crate::error::Result;
use crate::plugin::Plugin;
use crate::role::Role;
use crate::types::{Evolved, Exchange, Generator, Preference, Prompt, PromptResponses, PromptRewards};
use crate::validate;

macro_rules! handle {
    ($(#[$doc:meta])* $name:ident, $role:expr) => {
        $(#[$doc])*
        pub struct $name {
            plugin: Plugin,
        }

        impl $name {
            /// Wrap a loaded plugin; an error if it plays another role.
            pub fn new(plugin: Plugin) -> Result<Self> {
                if plugin.role() != $role {
                    return Err(plugin.wrong_role($role));
                }
                Ok($name { plugin })
            }

            pub fn plugin(&self) -> &Plugin {
                &self.plugin
            }

            pub fn plugin_mut(&mut self) -> &mut Plugin {
                &mut self.plugin
            }
        }
    };
}

handle!(
    /// The creator's info step: scores how informative each prompt is.
    InfoMetric, Role::InfoMetric
);
handle!(
    /// The creator's sample step: picks the prompts to evolve.
    Sampler, Role::Sampler
);
handle!(
    /// The creator's evolve step: rewrites prompts with the host's model.
    Evolver, Role::Evolver
);
handle!(
    /// The solver's pair step: builds preference pairs from scored answers.
    Pairing, Role::Pairing
);
handle!(
    /// A reward backend: rates each answer to a prompt.
    RewardModel, Role::Reward
);

impl InfoMetric {
    /// The informativeness of one prompt.
    pub fn score(&mut self, item: &PromptRewards) -> Result<f64> {
        validate::prompt_rewards(std::slice::from_ref(item)).map_err(|r| self.plugin.invalid_input("score", r))?;
        let score = self
            .plugin
            .call_raw("score", None, true, |store, instance, exports| exports.score(store, instance, item))?;
        validate::scores(&[score], 1).map_err(|r| self.plugin.invalid_output("score", r))?;
        Ok(score)
    }

    /// One informativeness score per prompt, in one call across the boundary.
    pub fn score_batch(&mut self, items: &[PromptRewards]) -> Result<Vec<f64>> {
        validate::prompt_rewards(items).map_err(|r| self.plugin.invalid_input("score-batch", r))?;
        let scores = self.plugin.call_raw("score-batch", None, true, |store, instance, exports| {
            exports.score_batch(store, instance, items)
        })?;
        validate::scores(&scores, items.len()).map_err(|r| self.plugin.invalid_output("score-batch", r))?;
        Ok(scores)
    }
}

impl Sampler {
    /// `count` distinct indices into `scores`.
    pub fn sample(&mut self, scores: &[f64], count: usize) -> Result<Vec<usize>> {
        if count > scores.len() {
            return Err(self
                .plugin
                .invalid_input("sample", format!("{count} asked for, only {} prompts", scores.len())));
        }
        validate::scores(scores, scores.len()).map_err(|r| self.plugin.invalid_input("sample", r))?;
        let wire_count = u32::try_from(count)
            .map_err(|_| self.plugin.invalid_input("sample", format!("count {count} is too large")))?;
        let picked = self.plugin.call_raw("sample", None, true, |store, instance, exports| {
            exports.sample(store, instance, scores, wire_count)
        })?;
        validate::indices(&picked, scores.len(), count).map_err(|r| self.plugin.invalid_output("sample", r))?;
        Ok(picked.into_iter().map(|i| i as usize).collect())
    }
}

impl Evolver {
    /// New prompts made from `prompts`, with `generator` behind the `generate` import.
    /// The call may make at most `limits.generate_per_input` requests per input prompt.
    pub fn evolve(&mut self, prompts: &[Prompt], generator: Arc<dyn Generator>) -> Result<Vec<Evolved>> {
        validate::prompts(prompts).map_err(|r| self.plugin.invalid_input("evolve", r))?;
        let budget =
            u32::try_from(prompts.len()).unwrap_or(u32::MAX).saturating_mul(self.plugin.limits().generate_per_input);
        let evolved = self.plugin.call_raw("evolve", Some((generator, budget)), true, |store, instance, exports| {
            exports.evolve(store, instance, prompts)
        })?;
        validate::evolved(&evolved, prompts.len(), self.plugin.limits())
            .map_err(|r| self.plugin.invalid_output("evolve", r))?;
        Ok(evolved)
    }
}

impl Pairing {
    /// The preference pairs of one prompt.
    pub fn pair(&mut self, item: &PromptResponses) -> Result<Vec<Preference>> {
        validate::prompt_responses(std::slice::from_ref(item)).map_err(|r| self.plugin.invalid_input("pair", r))?;
        let pairs =
            self.plugin.call_raw("pair", None, true, |store, instance, exports| exports.pair(store, instance, item))?;
        validate::preferences(std::slice::from_ref(&pairs), std::slice::from_ref(item))
            .map_err(|r| self.plugin.invalid_output("pair", r))?;
        Ok(pairs)
    }

    /// The pairs of many prompts, in one call across the boundary.
    pub fn pair_batch(&mut self, items: &[PromptResponses]) -> Result<Vec<Vec<Preference>>> {
        validate::prompt_responses(items).map_err(|r| self.plugin.invalid_input("pair-batch", r))?;
        let pairs = self.plugin.call_raw("pair-batch", None, true, |store, instance, exports| {
            exports.pair_batch(store, instance, items)
        })?;
        validate::preferences(&pairs, items).map_err(|r| self.plugin.invalid_output("pair-batch", r))?;
        Ok(pairs)
    }
}

impl RewardModel {
    /// The reward of one answer.
    pub fn rate(&mut self, item: &Exchange) -> Result<f64> {
        validate::exchanges(std::slice::from_ref(item)).map_err(|r| self.plugin.invalid_input("rate", r))?;
        let reward =
            self.plugin.call_raw("rate", None, true, |store, instance, exports| exports.rate(store, instance, item))?;
        validate::rewards(&[reward], 1).map_err(|r| self.plugin.invalid_output("rate", r))?;
        Ok(reward)
    }

    /// The reward of each answer, in one call across the boundary.
    pub fn rate_batch(&mut self, items: &[Exchange]) -> Result<Vec<f64>> {
        validate::exchanges(items).map_err(|r| self.plugin.invalid_input("rate-batch", r))?;
        let rewards = self.plugin.call_raw("rate-batch", None, true, |store, instance, exports| {
            exports.rate_batch(store, instance, items)
        })?;
        validate::rewards(&rewards, items.len()).map_err(|r| self.plugin.invalid_output("rate-batch", r))?;
        Ok(rewards)
    }
}
