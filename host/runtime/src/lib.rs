//! The plugin runtime of eva: loads the creator's and solver's policies, which are
//! WebAssembly components written against the `eva:plugin` WIT contract, and calls them
//! in a sandbox.
//!
//! - [`PluginEngine`] compiles components (cached on disk by content hash), detects
//!   each one's role from its exports and links only what that role's world grants.
//! - [`Plugin`] is a loaded, configured component; [`InfoMetric`], [`Sampler`],
//!   [`Evolver`], [`Pairing`] and [`RewardModel`] are typed handles over it, one per role.
//! - Every call runs in a fresh instance under [`Limits`]: a CPU deadline (epoch
//!   interruption, counting only the plugin's own time), a memory cap and a budget of
//!   `generate` requests. A loop, a runaway allocation, a panic or a trap becomes an
//!   [`Error`] naming the plugin and the call; the host keeps running.
//! - Outputs are validated (finite scores, distinct in-range indices, well-formed
//!   prompts and pairs) before the host uses them.
//! - Plugins that import WASI get a context that grants nothing: no files (unless
//!   [`PluginOptions::read_dir`] grants one directory, read-only, at `/data`), no
//!   network, no environment, and a fake clock.
//!
//! The runtime knows nothing of models: the evolver's `generate` import calls a
//! [`Generator`] the host hands it.

mod bindings;
mod cache;
mod config;
mod convert;
mod engine;
mod error;
mod guest;
mod handles;
mod inspect;
mod limits;
mod plugin;
mod role;
mod state;
mod text;
mod types;
pub mod validate;

pub use cache::{ComponentCache, digest};
pub use config::{ConfigField, ConfigKind, ConfigValue, Metadata, RawValue};
pub use engine::PluginEngine;
pub use error::{Error, ReportedError, Result, TrapKind};
pub use handles::{Evolver, InfoMetric, Pairing, RewardModel, Sampler};
pub use inspect::Inspection;
pub use limits::Limits;
pub use plugin::{Plugin, PluginOptions};
pub use role::{Contract, Role, SUPPORTED_VERSIONS, WIT_PACKAGE, WIT_VERSION};
pub use state::GUEST_DATA_DIR;
pub use types::{
    ChatMessage, Evolved, Exchange, GenerateRequest, Generator, Preference, Prompt, PromptResponses, PromptRewards,
    ScoredResponse,
};
