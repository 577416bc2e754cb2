//! Conversions between the runtime's plain types and the generated WIT bindings of each
//! contract version. Most types are the same in every version and converted by one
//! macro; [`current`] and [`v0_1`] add the three that differ (a prompt's labels, an info
//! metric's answer texts, an evolved prompt's labels), and 0.1 simply has none of them.

use crate::error::ReportedError;
use crate::text::{MAX_MESSAGE_BYTES, one_line, truncate};

/// The conversions of the types every version shares, written once for module `$v` of
/// the bindings.
macro_rules! shared {
    ($v:ident) => {
        use crate::bindings::$v::{pair, rate, types};
        use crate::config::{ConfigField, ConfigKind, ConfigValue, Metadata};
        use crate::types::{ChatMessage, Exchange, Preference, PromptResponses};

        pub(crate) fn message(m: &ChatMessage) -> types::Message {
            types::Message { role: m.role.clone(), content: m.content.clone() }
        }

        pub(crate) fn chat_message(m: types::Message) -> ChatMessage {
            ChatMessage { role: m.role, content: m.content }
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

        pub(crate) fn config_entry((key, value): &(String, ConfigValue)) -> types::ConfigEntry {
            let value = match value {
                ConfigValue::Boolean(b) => types::ConfigValue::Boolean(*b),
                ConfigValue::Integer(i) => types::ConfigValue::Integer(*i),
                ConfigValue::Float(f) => types::ConfigValue::Float(*f),
                ConfigValue::Text(t) => types::ConfigValue::Text(t.clone()),
            };
            types::ConfigEntry { key: key.clone(), value }
        }

        /// A plugin's own error, its message cut to [`MAX_MESSAGE_BYTES`].
        pub(crate) fn reported(e: types::PluginError) -> super::ReportedError {
            match e {
                types::PluginError::InvalidInput(m) => super::ReportedError::InvalidInput(super::cut(m)),
                types::PluginError::InvalidConfig(m) => super::ReportedError::InvalidConfig(super::cut(m)),
                types::PluginError::Internal(m) => super::ReportedError::Internal(super::cut(m)),
            }
        }
    };
}

/// One line, as a log record is: a plugin's error reaches the terminal and `run.log`.
fn cut(m: String) -> String {
    one_line(&truncate(m, MAX_MESSAGE_BYTES))
}

/// The current contract (0.2).
pub(crate) mod current {
    shared!(current);
    use crate::bindings::current::{evolve, info};
    use crate::types::{Evolved, Prompt, PromptRewards};

    pub(crate) fn prompt(p: &Prompt) -> types::Prompt {
        types::Prompt { id: p.id.clone(), messages: p.messages.iter().map(message).collect(), labels: p.labels.clone() }
    }

    pub(crate) fn prompt_rewards(p: &PromptRewards) -> info::PromptRewards {
        info::PromptRewards {
            prompt: prompt(&p.prompt),
            rewards: p.rewards.clone(),
            token_counts: p.token_counts.clone(),
            responses: p.responses.clone(),
        }
    }

    pub(crate) fn evolved(e: evolve::Evolved) -> Evolved {
        Evolved {
            parent: e.parent,
            messages: e.messages.into_iter().map(chat_message).collect(),
            method: e.method,
            labels: e.labels,
        }
    }
}

/// Contract 0.1.x: labels and answer texts are left out, evolved prompts get no labels.
pub(crate) mod v0_1 {
    shared!(v0_1);
    use crate::bindings::v0_1::{evolve, info};
    use crate::types::{Evolved, Prompt, PromptRewards};

    pub(crate) fn prompt(p: &Prompt) -> types::Prompt {
        types::Prompt { id: p.id.clone(), messages: p.messages.iter().map(message).collect() }
    }

    pub(crate) fn prompt_rewards(p: &PromptRewards) -> info::PromptRewards {
        info::PromptRewards {
            prompt: prompt(&p.prompt),
            rewards: p.rewards.clone(),
            token_counts: p.token_counts.clone(),
        }
    }

    pub(crate) fn evolved(e: evolve::Evolved) -> Evolved {
        Evolved {
            parent: e.parent,
            messages: e.messages.into_iter().map(chat_message).collect(),
            method: e.method,
            labels: None,
        }
    }
}
