//! Naming a plugin in a registry.

use std::fmt;

use oci_client::Reference;

use crate::error::{Error, Result};

/// The scheme that marks a plugin source as a registry reference.
pub const SCHEME: &str = "oci://";

/// `oci://HOST[:PORT]/REPOSITORY(:TAG|@sha256:HEX)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PluginRef {
    inner: Reference,
}

impl PluginRef {
    /// Parse a reference, with or without the `oci://` scheme. The registry host must be
    /// written out: a bare `name:tag` would quietly mean Docker Hub.
    pub fn parse(text: &str) -> Result<Self> {
        let bad = |reason: &str| Error::Reference { reference: text.to_owned(), reason: reason.to_owned() };
        let bare = text.strip_prefix(SCHEME).unwrap_or(text);
        let host = bare.split_once('/').map(|(h, _)| h).unwrap_or("");
        if !(host.contains('.') || host.contains(':') || host == "localhost") {
            return Err(bad("it names no registry host"));
        }
        let inner: Reference = bare.parse().map_err(|e: oci_client::ParseError| bad(&e.to_string()))?;
        if let Some(digest) = inner.digest() {
            check_digest(digest).map_err(|r| bad(&r))?;
        }
        Ok(PluginRef { inner })
    }

    /// The digest this reference pins, if it pins one.
    pub fn digest(&self) -> Option<&str> {
        self.inner.digest()
    }

    /// `HOST[:PORT]`.
    pub fn registry(&self) -> &str {
        self.inner.resolve_registry()
    }

    pub fn repository(&self) -> &str {
        self.inner.repository()
    }

    /// The same repository, pinned to a manifest digest.
    pub fn pinned(&self, digest: &str) -> PluginRef {
        let inner =
            Reference::with_digest(self.inner.registry().to_owned(), self.repository().to_owned(), digest.to_owned());
        PluginRef { inner }
    }

    pub(crate) fn oci(&self) -> &Reference {
        &self.inner
    }
}

impl fmt::Display for PluginRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{SCHEME}{}", self.inner.whole())
    }
}

impl std::str::FromStr for PluginRef {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        PluginRef::parse(s)
    }
}

/// A digest eva can check: `sha256:` and 64 lowercase hex digits.
pub(crate) fn check_digest(digest: &str) -> std::result::Result<(), String> {
    match digest.strip_prefix("sha256:") {
        Some(hex) if hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) => Ok(()),
        _ => Err(format!("digest `{digest}` is not sha256: followed by 64 lowercase hex digits")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: &str = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    #[test]
    fn parses_tags_and_digests_with_or_without_the_scheme() {
        let r = PluginRef::parse("oci://127.0.0.1:5000/eva/regret:v1").unwrap();
        assert_eq!((r.registry(), r.repository(), r.digest()), ("127.0.0.1:5000", "eva/regret", None));
        assert_eq!(r.to_string(), "oci://127.0.0.1:5000/eva/regret:v1");
        let pinned = r.pinned(D);
        assert_eq!(pinned.to_string(), format!("oci://127.0.0.1:5000/eva/regret@{D}"));
        assert_eq!(PluginRef::parse(&pinned.to_string()).unwrap(), pinned);
        assert_eq!(PluginRef::parse("ghcr.io/me/sampler:1.0").unwrap().registry(), "ghcr.io");
    }

    #[test]
    fn refuses_references_without_a_host_or_with_a_bad_digest() {
        for bad in ["oci://regret:v1", "regret", "oci://127.0.0.1:5000/eva/regret@sha256:abc", "oci://localhost/UP"] {
            let err = PluginRef::parse(bad).unwrap_err().to_string();
            assert!(err.contains(bad) && err.contains("expected oci://"), "{err}");
        }
    }
}
