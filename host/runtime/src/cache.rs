//! An on-disk cache of compiled components, keyed by the component's content hash and
//! the engine's compatibility hash, so a second start does not recompile.

use std::hash::{Hash, Hasher};
use std::io::Write;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use wasmtime::Engine;
use wasmtime::component::Component;

use crate::error::{Error, Result};

/// The sha256 of a component's bytes, as lowercase hex: its identity in caches and locks.
pub fn digest(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Where compiled components are kept; `None` compiles every time.
#[derive(Debug, Clone)]
pub struct ComponentCache {
    dir: Option<PathBuf>,
}

impl ComponentCache {
    pub fn new(dir: Option<PathBuf>) -> Self {
        ComponentCache { dir }
    }

    pub fn dir(&self) -> Option<&Path> {
        self.dir.as_deref()
    }

    fn entry(&self, engine: &Engine, digest: &str) -> Option<PathBuf> {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut h);
        let engine_key = format!("{:016x}", h.finish());
        Some(self.dir.as_ref()?.join(format!("{digest}-{engine_key}.cwasm")))
    }

    /// The compiled component for `bytes`, from the cache when it holds a usable copy.
    pub fn load(&self, engine: &Engine, bytes: &[u8], digest: &str, path: &Path) -> Result<Component> {
        let entry = self.entry(engine, digest);
        if let Some(entry) = entry.as_deref().filter(|e| e.exists()) {
            // SAFETY: the file was written by `Component::serialize` of an engine with the
            // same compatibility hash into the user's own cache directory, which only the
            // user can write; anyone who can write there can already run code as the user.
            match unsafe { Component::deserialize_file(engine, entry) } {
                Ok(component) => {
                    tracing::debug!(entry = %entry.display(), "compiled component loaded from cache");
                    return Ok(component);
                }
                Err(e) => tracing::warn!(entry = %entry.display(), "unusable cache entry, recompiling: {e}"),
            }
        }
        let component = Component::new(engine, bytes)
            .map_err(|e| Error::NotAComponent { path: path.to_owned(), reason: format!("{e:#}") })?;
        if let Some(entry) = entry {
            // A cache that cannot be written only costs time: warn and go on.
            if let Err(e) = self.store(&component, &entry) {
                let cause = std::error::Error::source(&e).map(ToString::to_string).unwrap_or_default();
                tracing::warn!("{e}: {cause}");
            }
        }
        Ok(component)
    }

    fn store(&self, component: &Component, entry: &Path) -> Result<()> {
        let dir = entry.parent().expect("cache entries live in a directory");
        let io = |source| Error::Cache { dir: dir.to_owned(), source };
        let bytes = component.serialize().map_err(|e| Error::Engine(format!("{e:#}")))?;
        std::fs::create_dir_all(dir).map_err(io)?;
        // An ordinary file's mode (0666 less the umask, given to `open(O_CREAT)`), not
        // tempfile's private 0600, like every other file eva writes.
        let mut builder = tempfile::Builder::new();
        #[cfg(unix)]
        builder.permissions(std::os::unix::fs::PermissionsExt::from_mode(0o666));
        let mut tmp = builder.tempfile_in(dir).map_err(io)?;
        tmp.write_all(&bytes).map_err(io)?;
        tmp.persist(entry).map_err(|e| io(e.error))?;
        Ok(())
    }
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn mode(path: &Path) -> u32 {
        std::fs::metadata(path).unwrap().permissions().mode() & 0o7777
    }

    /// Cache entries are ordinary files (0666 less the umask), not tempfile's 0600.
    #[test]
    fn cache_entries_honour_the_umask() {
        // What the umask gives an ordinary new file here.
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("plain"), "").unwrap();
        let ordinary = mode(&dir.path().join("plain"));
        let engine = Engine::default();
        // The empty component: magic, version 0x0d, layer 1.
        let bytes = b"\0asm\x0d\0\x01\0";
        let cache = ComponentCache::new(Some(dir.path().join("cache")));
        cache.load(&engine, bytes, &digest(bytes), Path::new("empty.wasm")).unwrap();
        let entry = cache.entry(&engine, &digest(bytes)).unwrap();
        assert!(entry.is_file(), "the component was cached");
        assert_eq!(mode(&entry), ordinary);
    }
}
