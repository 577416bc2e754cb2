//! What can go wrong between eva and a registry; every error names the reference, file
//! or key involved.

use std::path::PathBuf;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(
        "`{reference}` is not a plugin reference: {reason} (expected oci://HOST/REPOSITORY:TAG or oci://HOST/REPOSITORY@sha256:HEX)"
    )]
    Reference { reference: String, reason: String },

    #[error("{operation} {reference}")]
    Registry {
        operation: &'static str,
        reference: String,
        #[source]
        source: oci_client::errors::OciDistributionError,
    },

    #[error("{reference} is not an eva plugin artifact: {reason}")]
    NotAPlugin { reference: String, reason: String },

    #[error("{what} of {reference} does not match its digest: expected {expected}, got {actual}; refused")]
    DigestMismatch { reference: String, what: &'static str, expected: String, actual: String },

    #[error("plugin cache {}: {source}", path.display())]
    Cache {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("cannot start the registry client: {0}")]
    Client(String),

    #[error("key {}: {reason}", path.display())]
    Key { path: PathBuf, reason: String },

    #[error("{origin}: {reason}")]
    Signature { origin: String, reason: String },

    #[error("lock file {}: {reason}", path.display())]
    Lock { path: PathBuf, reason: String },
}
