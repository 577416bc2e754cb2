//! Write eva policy plugins in Rust.
//!
//! An eva plugin is a WebAssembly component that plays one role of the eva loop: an
//! info metric, a sampler, an evolver, a pairing policy or a reward (the worlds of the
//! `eva:plugin` WIT package in `wit/`). This crate hides the bindings: implement
//! [`Plugin`] (metadata and configuration) and the trait of your role, then export it
//! with the role's macro.
//!
//! ```no_run
//! use eva_plugin_sdk::{Config, InfoMetric, Metadata, Plugin, PluginError, PromptRewards};
//!
//! struct Gap;
//!
//! impl Plugin for Gap {
//!     fn metadata() -> Metadata {
//!         eva_plugin_sdk::metadata!("gap", "max minus min reward", vec![])
//!     }
//!     fn from_config(_: &Config) -> Result<Self, PluginError> {
//!         Ok(Gap)
//!     }
//! }
//!
//! impl InfoMetric for Gap {
//!     fn score(&mut self, item: &PromptRewards) -> Result<f64, PluginError> {
//!         let max = item.rewards.iter().cloned().fold(f64::MIN, f64::max);
//!         let min = item.rewards.iter().cloned().fold(f64::MAX, f64::min);
//!         Ok(max - min)
//!     }
//! }
//!
//! eva_plugin_sdk::export_info_metric!(Gap);
//! ```
//!
//! Build it into a component with `eva-host plugin build PATH` and load it with
//! `eva-host --plugin FILE.wasm`; `docs/plugin-guide.md` walks through the whole path.
//!
//! Contract 0.2.0 gave a [`Prompt`] its `labels` (a JSON object as text, from the prompt
//! set: a verifiable reward checks answers against them), an [`Evolved`] prompt its own
//! `labels` (`None`: no labels; the parent's are not inherited), and a [`PromptRewards`]
//! the answers' texts (`responses`).
//!
//! Panics are reported to the host through the log import with their `file:line`, and
//! the host turns the trap that follows into an error naming the plugin.

extern crate self as eva_plugin_sdk;

#[doc(hidden)]
pub mod __private;
#[doc(hidden)]
pub mod bindings;
mod config;

pub use config::{Config, field};

pub use bindings::common::eva::plugin::types::{
    ConfigEntry, ConfigField, ConfigKind, ConfigValue, Message, Metadata, PluginError, Prompt,
};
pub use bindings::evolver::exports::eva::plugin::evolve::Evolved;
pub use bindings::info_metric::exports::eva::plugin::info::PromptRewards;
pub use bindings::pairing::exports::eva::plugin::pair::{Preference, PromptResponses, Response};
pub use bindings::reward::exports::eva::plugin::rate::Exchange;

/// Logging into the host's trace log, under the plugin's name.
pub mod log {
    use crate::bindings::common::eva::plugin::log::{Level, write};

    /// Write a record with key/value fields.
    pub fn record(level: Level, message: &str, fields: &[(&str, &str)]) {
        let fields: Vec<(String, String)> = fields.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        write(level, message, &fields);
    }

    pub fn debug(message: &str) {
        record(Level::Debug, message, &[]);
    }
    pub fn info(message: &str) {
        record(Level::Info, message, &[]);
    }
    pub fn warn(message: &str) {
        record(Level::Warn, message, &[]);
    }
    pub fn error(message: &str) {
        record(Level::Error, message, &[]);
    }

    pub use crate::bindings::common::eva::plugin::log::Level as LogLevel;
}

/// The host's seeded random source: take all randomness from here so runs reproduce.
pub mod random {
    use crate::bindings::common::eva::plugin::random::next_u64;

    /// 64 random bits.
    pub fn u64() -> u64 {
        next_u64()
    }

    /// A uniform float in [0, 1).
    pub fn f64() -> f64 {
        (next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// A uniform integer in [0, n); `n` must be positive.
    pub fn below(n: u64) -> u64 {
        assert!(n > 0, "random::below(0)");
        // Rejection sampling keeps the result unbiased.
        let zone = u64::MAX - u64::MAX % n;
        loop {
            let x = next_u64();
            if x < zone {
                return x % n;
            }
        }
    }
}

/// Text generation with the host's model; only evolvers may import it.
pub mod generate {
    pub use crate::bindings::common::eva::plugin::generate::{GenerateError, Request, budget_left};

    /// Answer each request with one assistant message, in order.
    pub fn complete(requests: &[Request]) -> Result<Vec<String>, GenerateError> {
        crate::bindings::common::eva::plugin::generate::complete(requests)
    }
}

/// Metadata and configuration, common to every role.
pub trait Plugin: Sized + 'static {
    /// Name, version, description and the configuration keys the plugin accepts.
    fn metadata() -> Metadata;

    /// Build the plugin from its configuration (defaults filled in for keys the user
    /// left out). Return `PluginError::InvalidConfig` for values out of range.
    fn from_config(config: &Config) -> Result<Self, PluginError>;
}

/// The creator's info step.
pub trait InfoMetric: Plugin {
    /// How informative one prompt is; finite, larger means more worth evolving.
    fn score(&mut self, item: &PromptRewards) -> Result<f64, PluginError>;

    /// Every prompt of a set; by default `score` for each.
    fn score_batch(&mut self, items: &[PromptRewards]) -> Result<Vec<f64>, PluginError> {
        items.iter().map(|item| self.score(item)).collect()
    }
}

/// The creator's sample step.
pub trait Sampler: Plugin {
    /// Exactly `count` distinct indices into `scores`.
    fn sample(&mut self, scores: &[f64], count: u32) -> Result<Vec<u32>, PluginError>;
}

/// The creator's evolve step.
pub trait Evolver: Plugin {
    /// New prompts made from `prompts`, with `parent` set to the input's index.
    fn evolve(&mut self, prompts: &[Prompt]) -> Result<Vec<Evolved>, PluginError>;
}

/// The solver's pair step.
pub trait Pairing: Plugin {
    /// The preference pairs of one prompt's responses.
    fn pair(&mut self, item: &PromptResponses) -> Result<Vec<Preference>, PluginError>;

    /// The pairs of many prompts; by default `pair` for each.
    fn pair_batch(&mut self, items: &[PromptResponses]) -> Result<Vec<Vec<Preference>>, PluginError> {
        items.iter().map(|item| self.pair(item)).collect()
    }
}

/// A reward backend: rule-based or verifiable rewards.
pub trait Reward: Plugin {
    /// The reward of one answer; finite, larger is better.
    fn rate(&mut self, item: &Exchange) -> Result<f64, PluginError>;

    /// Many answers; by default `rate` for each.
    fn rate_batch(&mut self, items: &[Exchange]) -> Result<Vec<f64>, PluginError> {
        items.iter().map(|item| self.rate(item)).collect()
    }
}

/// The `describe` and `configure` functions every role's interface begins with.
#[doc(hidden)]
#[macro_export]
macro_rules! __eva_plugin_functions {
    ($ty:ty) => {
        fn describe() -> $crate::Metadata {
            $crate::__private::metadata::<$ty>()
        }
        fn configure(config: ::std::vec::Vec<$crate::ConfigEntry>) -> ::std::result::Result<(), $crate::PluginError> {
            $crate::__private::configure::<$ty>(config)
        }
    };
}

/// Export a type implementing [`InfoMetric`] as this component's info metric.
#[macro_export]
macro_rules! export_info_metric {
    ($ty:ty) => {
        const _: () = {
            struct __EvaExport;
            impl $crate::bindings::info_metric::exports::eva::plugin::info::Guest for __EvaExport {
                $crate::__eva_plugin_functions!($ty);
                fn score(item: $crate::PromptRewards) -> ::std::result::Result<f64, $crate::PluginError> {
                    $crate::__private::with::<$ty, _>(|p| $crate::InfoMetric::score(p, &item))
                }
                fn score_batch(
                    items: ::std::vec::Vec<$crate::PromptRewards>,
                ) -> ::std::result::Result<::std::vec::Vec<f64>, $crate::PluginError> {
                    $crate::__private::with::<$ty, _>(|p| $crate::InfoMetric::score_batch(p, &items))
                }
            }
            $crate::bindings::info_metric::__eva_export_info_metric_world!(__EvaExport with_types_in $crate::bindings::info_metric);
        };
    };
}

/// Export a type implementing [`Sampler`] as this component's sampler.
#[macro_export]
macro_rules! export_sampler {
    ($ty:ty) => {
        const _: () = {
            struct __EvaExport;
            impl $crate::bindings::sampler::exports::eva::plugin::sample::Guest for __EvaExport {
                $crate::__eva_plugin_functions!($ty);
                fn sample(
                    scores: ::std::vec::Vec<f64>,
                    count: u32,
                ) -> ::std::result::Result<::std::vec::Vec<u32>, $crate::PluginError> {
                    $crate::__private::with::<$ty, _>(|p| $crate::Sampler::sample(p, &scores, count))
                }
            }
    $crate::bindings::sampler::__eva_export_sampler_world!(__EvaExport with_types_in $crate::bindings::sampler);
        };
    };
}

/// Export a type implementing [`Evolver`] as this component's evolver.
#[macro_export]
macro_rules! export_evolver {
    ($ty:ty) => {
        const _: () = {
            struct __EvaExport;
            impl $crate::bindings::evolver::exports::eva::plugin::evolve::Guest for __EvaExport {
                $crate::__eva_plugin_functions!($ty);
                fn evolve(
                    prompts: ::std::vec::Vec<$crate::Prompt>,
                ) -> ::std::result::Result<::std::vec::Vec<$crate::Evolved>, $crate::PluginError> {
                    $crate::__private::with::<$ty, _>(|p| $crate::Evolver::evolve(p, &prompts))
                }
            }
    $crate::bindings::evolver::__eva_export_evolver_world!(__EvaExport with_types_in $crate::bindings::evolver);
        };
    };
}

/// Export a type implementing [`Pairing`] as this component's pairing policy.
#[macro_export]
macro_rules! export_pairing {
    ($ty:ty) => {
        const _: () = {
            struct __EvaExport;
            impl $crate::bindings::pairing::exports::eva::plugin::pair::Guest for __EvaExport {
                $crate::__eva_plugin_functions!($ty);
                fn pair(
                    item: $crate::PromptResponses,
                ) -> ::std::result::Result<::std::vec::Vec<$crate::Preference>, $crate::PluginError> {
                    $crate::__private::with::<$ty, _>(|p| $crate::Pairing::pair(p, &item))
                }
                fn pair_batch(
                    items: ::std::vec::Vec<$crate::PromptResponses>,
                ) -> ::std::result::Result<::std::vec::Vec<::std::vec::Vec<$crate::Preference>>, $crate::PluginError>
                {
                    $crate::__private::with::<$ty, _>(|p| $crate::Pairing::pair_batch(p, &items))
                }
            }
    $crate::bindings::pairing::__eva_export_pairing_world!(__EvaExport with_types_in $crate::bindings::pairing);
        };
    };
}

/// Export a type implementing [`Reward`] as this component's reward.
#[macro_export]
macro_rules! export_reward {
    ($ty:ty) => {
        const _: () = {
            struct __EvaExport;
            impl $crate::bindings::reward::exports::eva::plugin::rate::Guest for __EvaExport {
                $crate::__eva_plugin_functions!($ty);
                fn rate(item: $crate::Exchange) -> ::std::result::Result<f64, $crate::PluginError> {
                    $crate::__private::with::<$ty, _>(|p| $crate::Reward::rate(p, &item))
                }
                fn rate_batch(
                    items: ::std::vec::Vec<$crate::Exchange>,
                ) -> ::std::result::Result<::std::vec::Vec<f64>, $crate::PluginError> {
                    $crate::__private::with::<$ty, _>(|p| $crate::Reward::rate_batch(p, &items))
                }
            }
    $crate::bindings::reward::__eva_export_reward_world!(__EvaExport with_types_in $crate::bindings::reward);
        };
    };
}
