//! Reward backends: a pointwise reward r(x, y) for every answer y to a prompt x.
//!
//! One trait, [`Reward`], with three backends chosen in the run config:
//!
//! - [`Classifier`]: a Hugging Face `*ForSequenceClassification` reward model (llama,
//!   qwen2, qwen3) with a scalar `score` head, read at the last real token of the
//!   conversation rendered with the model's own chat template;
//! - [`Judge`]: an instruct model asked a rubric question; the reward is the expected
//!   score under its next-token probabilities over the score tokens (`1`..`5`), so it is
//!   deterministic and smooth;
//! - [`PluginReward`]: a Wasm component of the `reward` world (rule-based or verifiable
//!   rewards), sandboxed like every plugin.
//!
//! [`Scorer`] wraps a backend: it checks the input (no empty answer), scores each distinct
//! (prompt, answer) once per run (a cache keyed by their hash), batches the calls, and
//! refuses a non-finite reward naming the item. [`normalize`] applies the optional
//! per-prompt z-score.

mod cache;
mod classifier;
mod error;
mod judge;
mod normalize;
mod plugin;

use eva_engine::Message;
use serde::{Deserialize, Serialize};

pub use cache::Scorer;
pub use classifier::Classifier;
pub use error::{Error, Result};
pub use judge::{DEFAULT_RUBRIC, Judge, JudgeConfig, Rubric, expected_score};
pub use normalize::{Normalization, normalize};
pub use plugin::PluginReward;

/// One answer to score, with the conversation it answers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RewardItem {
    /// The prompt: one or more messages, the last one from the user.
    pub messages: Vec<Message>,
    /// The answer.
    pub response: String,
    /// The prompt's labels, a JSON object as text (what a verifiable reward checks the
    /// answer against), if it has any.
    pub labels: Option<String>,
}

impl RewardItem {
    pub fn new(messages: Vec<Message>, response: impl Into<String>) -> Self {
        Self { messages, response: response.into(), labels: None }
    }

    /// The same item with the prompt's labels.
    pub fn with_labels(self, labels: Option<String>) -> Self {
        Self { labels, ..self }
    }

    /// The conversation with the answer appended as the assistant's turn.
    pub fn conversation(&self) -> Vec<Message> {
        let mut all = self.messages.clone();
        all.push(Message::new("assistant", self.response.as_str()));
        all
    }
}

/// A reward backend. Implementations score a batch in input order; errors about one
/// item name its index in `items` ([`Error::Item`]).
pub trait Reward {
    /// What the backend is, for logs and reports (`judge SmolLM2-135M-Instruct.Q4_1.gguf`).
    fn describe(&self) -> String;

    /// One reward per item, same order.
    fn score(&mut self, items: &[RewardItem]) -> Result<Vec<f64>>;
}
