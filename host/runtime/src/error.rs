//! The runtime's error type: every variant names the plugin (or file) and the call.

use std::path::PathBuf;
use std::time::Duration;

use crate::role::Role;

/// Everything that can go wrong loading, configuring or calling a plugin.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot read plugin file {path}")]
    Read { path: PathBuf, source: std::io::Error },

    #[error("{path} is not a valid WebAssembly component: {reason}")]
    NotAComponent { path: PathBuf, reason: String },

    #[error("{path} exports no eva plugin role (expected one of {expected}); it exports: {exports}")]
    NoRole { path: PathBuf, expected: String, exports: String },

    #[error("{path} exports several eva plugin roles ({roles}); a plugin must target exactly one world")]
    SeveralRoles { path: PathBuf, roles: String },

    #[error("{path} was built for eva:plugin@{found}, but this host supports eva:plugin {supported}")]
    UnsupportedVersion { path: PathBuf, found: String, supported: String },

    #[error("plugin `{plugin}` is a {found} plugin, but it was loaded as the {expected}")]
    WrongRole { plugin: String, expected: Role, found: Role },

    #[error("plugin {path} cannot be linked: it imports something this host does not provide: {reason}")]
    Link { path: PathBuf, reason: String },

    #[error("plugin `{plugin}`: configuration error: {reason}")]
    Config { plugin: String, reason: String },

    #[error("plugin `{plugin}`: cannot grant read access to {dir}: {reason}")]
    Grant { plugin: String, dir: PathBuf, reason: String },

    #[error("plugin `{plugin}` failed in `{call}`: {kind}")]
    Trap { plugin: String, call: &'static str, kind: TrapKind },

    #[error("plugin `{plugin}` reported an error in `{call}`: {error}")]
    Reported { plugin: String, call: &'static str, error: ReportedError },

    #[error("plugin `{plugin}` returned invalid output from `{call}`: {reason}")]
    InvalidOutput { plugin: String, call: &'static str, reason: String },

    #[error("invalid input for plugin `{plugin}` in `{call}`: {reason}")]
    InvalidInput { plugin: String, call: &'static str, reason: String },

    #[error("cannot write the component cache at {dir}")]
    Cache { dir: PathBuf, source: std::io::Error },

    #[error("wasmtime: {0}")]
    Engine(String),
}

/// How a plugin call ended abnormally.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum TrapKind {
    #[error("exceeded its CPU deadline of {limit:?} (raise it with the plugin's `timeout` limit)")]
    Timeout { limit: Duration },
    #[error(
        "exceeded its real-time limit of {limit:?}, host calls included (raise it with the plugin's `wall-timeout` \
         limit)"
    )]
    WallTimeout { limit: Duration },
    #[error("exceeded its memory limit of {limit} bytes (it asked for {requested} bytes)")]
    OutOfMemory { limit: usize, requested: usize },
    #[error("panicked: {message}")]
    Panic { message: String },
    #[error("trapped: {message}")]
    Other { message: String },
}

/// An error a plugin returned through its WIT `plugin-error` variant.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ReportedError {
    #[error("invalid input: {0}")]
    InvalidInput(String),
    #[error("invalid config: {0}")]
    InvalidConfig(String),
    #[error("internal error: {0}")]
    Internal(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
