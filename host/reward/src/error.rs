use std::path::PathBuf;

/// What went wrong while scoring; each variant names the backend, file or item.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The model failed to load or run.
    #[error(transparent)]
    Engine(#[from] eva_engine::Error),
    /// The reward plugin failed or returned nonsense.
    #[error(transparent)]
    Plugin(#[from] eva_plugin_runtime::Error),
    /// A model that cannot serve as this backend.
    #[error("{path}: {reason}")]
    Unusable { path: PathBuf, reason: String },
    /// One item cannot be scored (empty answer, too long, non-finite reward...).
    #[error("item {index}: {reason}")]
    Item { index: usize, reason: String },
    /// A setting out of range (batch size, rubric template...).
    #[error("{0}")]
    Config(String),
    /// A backend elsewhere (a server) failed; the error names it.
    #[error(transparent)]
    Remote(Box<dyn std::error::Error + Send + Sync>),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// The same error with an item index mapped through `map` (from a sub-batch's
    /// positions to the caller's).
    pub(crate) fn rebase(self, map: impl Fn(usize) -> usize) -> Self {
        match self {
            Error::Item { index, reason } => Error::Item { index: map(index), reason },
            other => other,
        }
    }
}
