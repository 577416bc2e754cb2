//! A content-addressed store of pulled manifests and components. Entries are named by
//! their digest and checked against it on every read, so a corrupted or edited entry is
//! never used.

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::sha256_digest;

/// What a cache entry holds.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Kind {
    Manifest,
    Component,
}

/// The pulled-plugin cache under one directory (`manifests/` and `components/`).
#[derive(Debug, Clone)]
pub struct BlobCache {
    dir: PathBuf,
}

impl BlobCache {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        BlobCache { dir: dir.into() }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Where the entry for `digest` (`sha256:HEX`, already checked) lives.
    pub(crate) fn path(&self, kind: Kind, digest: &str) -> PathBuf {
        let hex = digest.strip_prefix("sha256:").unwrap_or(digest);
        match kind {
            Kind::Manifest => self.dir.join("manifests").join(format!("{hex}.json")),
            Kind::Component => self.dir.join("components").join(format!("{hex}.wasm")),
        }
    }

    /// The entry's bytes, if present and true to its digest. A damaged entry is removed
    /// (with a warning) so that it is fetched again.
    pub(crate) fn get(&self, kind: Kind, digest: &str) -> Result<Option<Vec<u8>>> {
        let path = self.path(kind, digest);
        let bytes = match std::fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => return Err(Error::Cache { path, source }),
        };
        let actual = sha256_digest(&bytes);
        if actual != digest {
            tracing::warn!(path = %path.display(), %actual, "cache entry does not match its digest; fetching it again");
            std::fs::remove_file(&path).map_err(|source| Error::Cache { path, source })?;
            return Ok(None);
        }
        Ok(Some(bytes))
    }

    /// Store bytes whose digest the caller has checked; returns the entry's path.
    pub(crate) fn put(&self, kind: Kind, digest: &str, bytes: &[u8]) -> Result<PathBuf> {
        debug_assert_eq!(sha256_digest(bytes), digest);
        let path = self.path(kind, digest);
        crate::write_atomically(&path, bytes).map_err(|source| Error::Cache { path: path.clone(), source })?;
        Ok(path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_are_checked_against_their_digest() {
        let dir = tempfile::tempdir().unwrap();
        let cache = BlobCache::new(dir.path());
        let digest = sha256_digest(b"component");
        assert_eq!(cache.get(Kind::Component, &digest).unwrap(), None);
        let path = cache.put(Kind::Component, &digest, b"component").unwrap();
        assert_eq!(cache.get(Kind::Component, &digest).unwrap().as_deref(), Some(&b"component"[..]));
        std::fs::write(&path, b"tampered").unwrap();
        assert_eq!(cache.get(Kind::Component, &digest).unwrap(), None, "a damaged entry is a miss");
        assert!(!path.exists(), "and is removed");
    }
}
