//! Plain data the host exchanges with plugins, free of wasmtime types so that the model
//! engine and the eva loop can use them without knowing about WebAssembly.

use serde::{Deserialize, Serialize};

/// One chat message.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ChatMessage {
    /// `system`, `user` or `assistant`.
    pub role: String,
    pub content: String,
}

impl ChatMessage {
    pub fn user(content: impl Into<String>) -> Self {
        ChatMessage { role: "user".into(), content: content.into() }
    }
}

/// A prompt of the prompt set.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Prompt {
    pub id: String,
    pub messages: Vec<ChatMessage>,
    /// Its labels, a JSON object as text (`None`: no labels). Plugins built against 0.1
    /// never see them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub labels: Option<String>,
}

impl Prompt {
    /// A prompt without labels.
    pub fn new(id: impl Into<String>, messages: Vec<ChatMessage>) -> Self {
        Prompt { id: id.into(), messages, labels: None }
    }
}

/// Input of the info metric: a prompt and its sampled responses' rewards and lengths.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PromptRewards {
    pub prompt: Prompt,
    pub rewards: Vec<f64>,
    pub token_counts: Vec<u32>,
    /// The answers' texts, same order; plugins built against 0.1 never see them.
    pub responses: Vec<String>,
}

/// One scored response, as the pairing policy sees it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScoredResponse {
    pub text: String,
    pub reward: f64,
    pub tokens: u32,
}

/// Input of the pairing policy: a prompt and all of its scored responses.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PromptResponses {
    pub prompt: Prompt,
    pub responses: Vec<ScoredResponse>,
}

/// A preference pair: indices into a prompt's responses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Preference {
    pub chosen: u32,
    pub rejected: u32,
}

/// A prompt the evolver made from one of its inputs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Evolved {
    /// Index of the input prompt it was made from.
    pub parent: u32,
    pub messages: Vec<ChatMessage>,
    /// How it was made, for lineage (`in-depth/add-constraints`, ...).
    pub method: String,
    /// The new prompt's labels, a JSON object as text (checked by the host), or `None`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub labels: Option<String>,
}

/// Input of a reward plugin: one answer and the prompt it answers.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Exchange {
    pub prompt: Prompt,
    pub response: String,
}

/// One generation request of the evolver's `generate` import.
#[derive(Debug, Clone, PartialEq)]
pub struct GenerateRequest {
    pub messages: Vec<ChatMessage>,
    pub max_tokens: u32,
    pub temperature: f32,
    pub top_p: f32,
}

/// The text generator an evolver's `generate` import calls; the model engine implements
/// it. The runtime knows nothing of models.
pub trait Generator: Send + Sync {
    /// Answer each request with one assistant message, in order.
    fn complete(&self, requests: &[GenerateRequest]) -> Result<Vec<String>, String>;
}
