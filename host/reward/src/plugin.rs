//! A reward plugin: a Wasm component of the `reward` world.

use eva_plugin_runtime::{ChatMessage, Exchange, Prompt, RewardModel};

use crate::error::Result;
use crate::{Reward, RewardItem};

/// Rewards from a sandboxed plugin (rule-based or verifiable rewards).
pub struct PluginReward {
    handle: RewardModel,
}

impl PluginReward {
    pub fn new(handle: RewardModel) -> Self {
        Self { handle }
    }
}

impl Reward for PluginReward {
    fn describe(&self) -> String {
        format!("plugin {}", self.handle.plugin().name())
    }

    fn score(&mut self, items: &[RewardItem]) -> Result<Vec<f64>> {
        let exchanges: Vec<Exchange> = items
            .iter()
            .enumerate()
            .map(|(i, item)| Exchange {
                prompt: Prompt {
                    id: format!("item-{i}"),
                    messages: item
                        .messages
                        .iter()
                        .map(|m| ChatMessage { role: m.role.clone(), content: m.content.clone() })
                        .collect(),
                    labels: item.labels.clone(),
                },
                response: item.response.clone(),
            })
            .collect();
        Ok(self.handle.rate_batch(&exchanges)?)
    }
}
