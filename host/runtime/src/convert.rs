//! Conversions between the runtime's plain types and the generated WIT bindings.

use crate::bindings::{info, pair, rate, types};
use crate::config::{ConfigField, ConfigKind, ConfigValue, Metadata};
use crate::error::ReportedError;
use crate::text::{MAX_MESSAGE_BYTES, one_line, truncate};
use crate::types::{ChatMessage, Evolved, Exchange, Preference, Prompt, PromptResponses, PromptRewards};

pub(crate) fn message(m: &ChatMessage) -> types::Message {
    types::Message { role: m.role.clone(), content: m.content.clone() }
}

pub(crate) fn chat_message(m: types::Message) -> ChatMessage {
    ChatMessage { role: m.role, content: m.content }
}

pub(crate) fn prompt(p: &Prompt) -> types::Prompt {
    types::Prompt { id: p.id.clone(), messages: p.messages.iter().map(message).collect() }
}

pub(crate) fn prompt_rewards(p: &PromptRewards) -> info::PromptRewards {
    info::PromptRewards { prompt: prompt(&p.prompt), rewards: p.rewards.clone(), token_counts: p.token_counts.clone() }
}

pub(crate) fn prompt_responses(p: &PromptResponses) -> pair::PromptResponses {
    pair::PromptResponses {
        prompt: prompt(&p.prompt),
        responses: p
            .responses
            .iter()
            .map(|r| pair::Response { text: r.text.clone(), reward: r.reward, tokens: r.tokens })
            .collect(),
    }
}

pub(crate) fn exchange(e: &Exchange) -> rate::Exchange {
    rate::Exchange { prompt: prompt(&e.prompt), response: e.response.clone() }
}

pub(crate) fn preference(p: pair::Preference) -> Preference {
    Preference { chosen: p.chosen, rejected: p.rejected }
}

pub(crate) fn evolved(e: crate::bindings::evolve::Evolved) -> Evolved {
    Evolved { parent: e.parent, messages: e.messages.into_iter().map(chat_message).collect(), method: e.method }
}

pub(crate) fn metadata(m: types::Metadata) -> Metadata {
    Metadata {
        name: m.name,
        version: m.version,
        description: m.description,
        config: m
            .config
            .into_iter()
            .map(|f| ConfigField {
                name: f.name,
                kind: match f.kind {
                    types::ConfigKind::Boolean => ConfigKind::Boolean,
                    types::ConfigKind::Integer => ConfigKind::Integer,
                    types::ConfigKind::Float => ConfigKind::Float,
                    types::ConfigKind::Text => ConfigKind::Text,
                },
                default_value: f.default_value,
                description: f.description,
            })
            .collect(),
    }
}

pub(crate) fn config_entry((key, value): (String, ConfigValue)) -> types::ConfigEntry {
    let value = match value {
        ConfigValue::Boolean(b) => types::ConfigValue::Boolean(b),
        ConfigValue::Integer(i) => types::ConfigValue::Integer(i),
        ConfigValue::Float(f) => types::ConfigValue::Float(f),
        ConfigValue::Text(t) => types::ConfigValue::Text(t),
    };
    types::ConfigEntry { key, value }
}

pub(crate) fn config_pair(e: &types::ConfigEntry) -> (String, ConfigValue) {
    let value = match &e.value {
        types::ConfigValue::Boolean(b) => ConfigValue::Boolean(*b),
        types::ConfigValue::Integer(i) => ConfigValue::Integer(*i),
        types::ConfigValue::Float(f) => ConfigValue::Float(*f),
        types::ConfigValue::Text(t) => ConfigValue::Text(t.clone()),
    };
    (e.key.clone(), value)
}

/// A plugin's own error, its message cut to [`MAX_MESSAGE_BYTES`].
pub(crate) fn reported(e: types::PluginError) -> ReportedError {
    // One line, as a log record is: the error reaches the terminal and `run.log`.
    let cut = |m| one_line(&truncate(m, MAX_MESSAGE_BYTES));
    match e {
        types::PluginError::InvalidInput(m) => ReportedError::InvalidInput(cut(m)),
        types::PluginError::InvalidConfig(m) => ReportedError::InvalidConfig(cut(m)),
        types::PluginError::Internal(m) => ReportedError::Internal(cut(m)),
    }
}
