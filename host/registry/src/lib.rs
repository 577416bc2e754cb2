//! Plugins in OCI registries: how eva publishes a plugin component, pulls it back and
//! proves it is the one that was published.
//!
//! - [`PluginRef`] names a plugin in a registry: `oci://HOST/REPO:TAG` or
//!   `oci://HOST/REPO@sha256:HEX`.
//! - [`RegistryClient`] pushes a component as a Wasm OCI artifact (the layout of the CNCF
//!   Wasm artifact guidance used by `wkg oci`: config `application/vnd.wasm.config.v0+json`,
//!   one `application/wasm` layer) with the plugin's metadata as manifest annotations, and
//!   pulls one into a content-addressed [`BlobCache`]. Every manifest and blob is checked
//!   against its digest, whether it comes from the network or the cache; a pull by digest
//!   needs no network once cached.
//! - [`signature`]: Ed25519 keys (PKCS#8 PEM, as `openssl genpkey -algorithm ed25519`
//!   writes them) that sign a component's digest; the signature travels as a manifest
//!   annotation and is checked against keys the user trusts.
//! - [`PluginLock`] records the exact plugins of a run (digest and a pinned reference), so
//!   the run can be resumed or repeated with the same bytes.
//!
//! The protocol itself (auth, uploads, digest headers) is `oci-client`'s; this crate adds
//! the artifact layout, the cache, signatures and errors that name the reference.

mod artifact;
mod cache;
mod client;
mod error;
mod lock;
mod reference;
pub mod signature;

pub use artifact::{ANNOTATION_ROLE, ANNOTATION_WIT, CONFIG_MEDIA_TYPE, LAYER_MEDIA_TYPE, PluginInfo};
pub use cache::BlobCache;
pub use client::{ClientOptions, Pulled, Pushed, RegistryClient};
pub use error::{Error, Result};
pub use lock::{LockedPlugin, PluginLock};
pub use reference::PluginRef;

/// `sha256:HEX` of some bytes, the form OCI digests take.
pub fn sha256_digest(bytes: &[u8]) -> String {
    use sha2::Digest;
    format!("sha256:{}", hex::encode(sha2::Sha256::digest(bytes)))
}

/// Write `bytes` to `path` so that a reader sees the old file or the new one, never a part.
fn write_atomically(path: &std::path::Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let dir = path.parent().unwrap_or(std::path::Path::new("."));
    std::fs::create_dir_all(dir)?;
    let mut tmp = tempfile::Builder::new().prefix(".eva-write-").tempfile_in(dir)?;
    tmp.write_all(bytes)?;
    tmp.as_file().sync_all()?;
    tmp.persist(path).map_err(|e| e.error)?;
    Ok(())
}
