//! Resource limits every plugin call runs under.

use std::time::Duration;

use serde::Deserialize;

/// Per-plugin limits. The defaults suit small policy plugins written in Rust or C;
/// heavy runtimes (Python, JavaScript) may need more memory and time. Every limit is a
/// key of a `[NAME.limits]` table (`--plugin-config-file`); `docs/plugin-guide.md` lists
/// them with their defaults.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct Limits {
    /// CPU time the plugin's own code may spend in one call. Time spent inside host
    /// imports (the evolver's `generate`) does not count.
    #[serde(with = "secs")]
    pub timeout: Duration,
    /// Real time one call may take, host imports included: the bound on what a plugin
    /// can make the host spend (generations, WASI calls). Checked while the plugin runs
    /// and before each `generate` request batch starts.
    #[serde(with = "secs")]
    pub wall_timeout: Duration,
    /// The most linear memory one instance may grow to, in bytes.
    pub memory_bytes: usize,
    /// How many `generate` requests an evolver may make per input prompt of one call.
    pub generate_per_input: u32,
    /// The most tokens one `generate` request may ask for; larger requests are clamped.
    pub generate_max_tokens: u32,
    /// The largest `generate` request, in bytes of its messages' roles and text; larger
    /// ones are refused before anything is tokenized.
    pub generate_max_request_bytes: usize,
    /// The most messages one `generate` request may hold.
    pub generate_max_messages: usize,
    /// The largest evolved prompt accepted, in bytes of message text.
    pub max_prompt_bytes: usize,
    /// The most messages an evolved prompt may hold.
    pub max_prompt_messages: usize,
    /// The most prompts an evolver may make from one input prompt in one call.
    pub max_evolved_per_input: usize,
    /// The most prompts an evolver may return from one call.
    pub max_evolved_per_call: usize,
    /// The most log records one call may write; the rest are dropped with a warning.
    pub max_log_records: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            timeout: Duration::from_secs(5),
            wall_timeout: Duration::from_secs(600),
            memory_bytes: 256 << 20,
            generate_per_input: 8,
            generate_max_tokens: 1024,
            generate_max_request_bytes: 64 << 10,
            generate_max_messages: 64,
            max_prompt_bytes: 16 << 10,
            max_prompt_messages: 64,
            max_evolved_per_input: 32,
            max_evolved_per_call: 1024,
            max_log_records: 1000,
        }
    }
}

mod secs {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer};

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let secs = f64::deserialize(d)?;
        Duration::try_from_secs_f64(secs).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_partial_tables_and_rejects_unknown_keys() {
        let l: Limits = toml::from_str("timeout = 0.5\nmemory-bytes = 1024").unwrap();
        assert_eq!(l.timeout, Duration::from_millis(500));
        assert_eq!(l.memory_bytes, 1024);
        assert_eq!(l.generate_per_input, Limits::default().generate_per_input);
        assert!(toml::from_str::<Limits>("memory = 1").is_err());
        assert!(toml::from_str::<Limits>("timeout = -1.0").is_err());
    }
}
