//! The engine's error type: every variant names the file or step that failed.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{path}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{path}: not a model: expected a .gguf file or a Hugging Face directory with config.json")]
    NotAModel { path: PathBuf },
    #[error("{path}: missing {what}")]
    Missing { path: PathBuf, what: String },
    #[error("{path}: unsupported architecture `{arch}` (supported: llama, qwen2, qwen3)")]
    UnsupportedArchitecture { path: PathBuf, arch: String },
    #[error("{path}: corrupt or unreadable model file: {reason}")]
    Corrupt { path: PathBuf, reason: String },
    #[error("{path}: {what}")]
    Invalid { path: PathBuf, what: String },
    #[error("tokenizer {path}: {reason}")]
    Tokenizer { path: PathBuf, reason: String },
    #[error("tokenizer {path} does not fit the model: {reason}")]
    TokenizerMismatch { path: PathBuf, reason: String },
    #[error("chat template of {path}: {reason}")]
    ChatTemplate { path: PathBuf, reason: String },
    #[error("{step} failed")]
    Tensor { step: &'static str, source: candle_core::Error },
    #[error("{0}")]
    Request(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Attach the step's name to a candle error.
pub(crate) trait TensorContext<T> {
    fn step(self, step: &'static str) -> Result<T>;
}

impl<T> TensorContext<T> for candle_core::Result<T> {
    fn step(self, step: &'static str) -> Result<T> {
        self.map_err(|source| Error::Tensor { step, source })
    }
}
