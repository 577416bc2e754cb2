//! The `rule-reward` plugin: a verifiable, rule-based reward. Each active rule scores an
//! answer in [0, 1] and the reward is their mean, so partial compliance is rewarded
//! partially:
//!
//! - length: 1 within `min-words..=max-words`, otherwise the ratio of the limit to the
//!   word count (or of the count to the minimum), so the reward falls smoothly;
//! - `required`: the fraction of the comma-separated keywords present (case-insensitive);
//! - `forbidden`: 1 when none of the comma-separated phrases occurs, 0 otherwise;
//! - `format`: `any` (no rule), `bullets` (every non-empty line starts with `-`, `*` or
//!   `•`), `numbered` (every non-empty line starts with `1.`, `2)`, ...), `one-line`.

use eva_plugin_sdk::{Config, ConfigKind, Exchange, Metadata, Plugin, PluginError, Reward, field};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Any,
    Bullets,
    Numbered,
    OneLine,
}

#[derive(Debug, Clone)]
pub struct RuleReward {
    min_words: usize,
    /// 0: no upper limit.
    max_words: usize,
    required: Vec<String>,
    forbidden: Vec<String>,
    format: Format,
}

fn list(text: &str) -> Vec<String> {
    text.split(',').map(|s| s.trim().to_lowercase()).filter(|s| !s.is_empty()).collect()
}

impl RuleReward {
    /// The reward of `answer`: the mean of the active rules' scores.
    pub fn reward(&self, answer: &str) -> f64 {
        let lower = answer.to_lowercase();
        let words = answer.split_whitespace().count();
        let mut scores = vec![self.length_score(words)];
        if !self.required.is_empty() {
            let found = self.required.iter().filter(|k| lower.contains(k.as_str())).count();
            scores.push(found as f64 / self.required.len() as f64);
        }
        if !self.forbidden.is_empty() {
            scores.push(if self.forbidden.iter().any(|k| lower.contains(k.as_str())) { 0.0 } else { 1.0 });
        }
        if self.format != Format::Any {
            scores.push(if format_holds(self.format, answer) { 1.0 } else { 0.0 });
        }
        scores.iter().sum::<f64>() / scores.len() as f64
    }

    fn length_score(&self, words: usize) -> f64 {
        if words < self.min_words {
            words as f64 / self.min_words as f64
        } else if self.max_words > 0 && words > self.max_words {
            self.max_words as f64 / words as f64
        } else {
            1.0
        }
    }
}

fn format_holds(format: Format, answer: &str) -> bool {
    let mut lines = answer.lines().map(str::trim).filter(|l| !l.is_empty()).peekable();
    if lines.peek().is_none() {
        return false;
    }
    match format {
        Format::Any => true,
        Format::OneLine => lines.count() == 1,
        Format::Bullets => lines.all(|l| l.starts_with("- ") || l.starts_with("* ") || l.starts_with('•')),
        Format::Numbered => lines.all(|l| {
            let digits = l.chars().take_while(char::is_ascii_digit).count();
            digits > 0 && matches!(l[digits..].chars().next(), Some('.' | ')'))
        }),
    }
}

impl Plugin for RuleReward {
    fn metadata() -> Metadata {
        eva_plugin_sdk::metadata!(
            "rule-reward",
            "A rule-based reward: word limits, required and forbidden keywords, and an answer format.",
            vec![
                field("min-words", ConfigKind::Integer, "1", "answers shorter than this many words lose reward"),
                field(
                    "max-words",
                    ConfigKind::Integer,
                    "0",
                    "answers longer than this many words lose reward (0: no limit)"
                ),
                field("required", ConfigKind::Text, "", "comma-separated keywords the answer should contain"),
                field("forbidden", ConfigKind::Text, "", "comma-separated phrases the answer must not contain"),
                field("format", ConfigKind::Text, "any", "any, bullets, numbered or one-line"),
            ]
        )
    }

    fn from_config(config: &Config) -> Result<Self, PluginError> {
        let count = |key: &str| -> Result<usize, PluginError> {
            let v = config.integer(key)?;
            usize::try_from(v).map_err(|_| PluginError::InvalidConfig(format!("{key} must not be negative, not {v}")))
        };
        let (min_words, max_words) = (count("min-words")?, count("max-words")?);
        if max_words > 0 && max_words < min_words {
            return Err(PluginError::InvalidConfig(format!(
                "max-words ({max_words}) is below min-words ({min_words})"
            )));
        }
        let format = match config.text("format")? {
            "any" => Format::Any,
            "bullets" => Format::Bullets,
            "numbered" => Format::Numbered,
            "one-line" => Format::OneLine,
            other => {
                return Err(PluginError::InvalidConfig(format!(
                    "format `{other}` is not one of any, bullets, numbered, one-line"
                )));
            }
        };
        Ok(RuleReward {
            min_words: min_words.max(1),
            max_words,
            required: list(config.text("required")?),
            forbidden: list(config.text("forbidden")?),
            format,
        })
    }
}

impl Reward for RuleReward {
    fn rate(&mut self, item: &Exchange) -> Result<f64, PluginError> {
        Ok(self.reward(&item.response))
    }
}

eva_plugin_sdk::export_reward!(RuleReward);

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(min: usize, max: usize, required: &str, forbidden: &str, format: Format) -> RuleReward {
        RuleReward { min_words: min, max_words: max, required: list(required), forbidden: list(forbidden), format }
    }

    #[test]
    fn length_limits_lower_the_reward_smoothly() {
        let r = rules(2, 4, "", "", Format::Any);
        assert_eq!(r.reward("one two three"), 1.0);
        assert_eq!(r.reward("one"), 0.5);
        assert_eq!(r.reward("a b c d e f g h"), 0.5);
    }

    #[test]
    fn keywords_and_format_each_count_as_one_rule() {
        let r = rules(1, 0, "Rust, wasm", "as an ai", Format::Bullets);
        // length 1, keywords 1/2, forbidden 1, format 1.
        assert_eq!(r.reward("- rust is fast\n- and safe"), (1.0 + 0.5 + 1.0 + 1.0) / 4.0);
        // forbidden phrase and a line that is no bullet.
        assert_eq!(r.reward("As an AI, I like Rust and WASM."), (1.0 + 1.0 + 0.0 + 0.0) / 4.0);
    }

    #[test]
    fn formats() {
        assert!(format_holds(Format::Numbered, "1. a\n2) b\n\n10. c"));
        assert!(!format_holds(Format::Numbered, "1. a\nb"));
        assert!(format_holds(Format::OneLine, "  just this  \n"));
        assert!(!format_holds(Format::OneLine, "a\nb"));
        assert!(!format_holds(Format::Bullets, "   "));
    }
}
