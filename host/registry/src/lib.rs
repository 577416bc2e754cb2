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
/// The file gets an ordinary file's mode (0666 less the umask, given to `open(O_CREAT)`),
/// not tempfile's private 0600: lock files, public keys and cached plugins are not
/// secrets. Secret keys do not come here: [`signature::SigningKey::write`] makes them 0600.
fn write_atomically(path: &std::path::Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(std::path::Path::new("."));
    std::fs::create_dir_all(dir)?;
    let mut builder = tempfile::Builder::new();
    builder.prefix(".eva-write-");
    #[cfg(unix)]
    builder.permissions(std::os::unix::fs::PermissionsExt::from_mode(0o666));
    let mut tmp = builder.tempfile_in(dir)?;
    tmp.write_all(bytes)?;
    tmp.as_file().sync_all()?;
    tmp.persist(path).map_err(|e| e.error)?;
    Ok(())
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn mode(path: &std::path::Path) -> u32 {
        std::fs::metadata(path).unwrap().permissions().mode() & 0o7777
    }

    #[test]
    fn written_files_honour_the_umask_and_only_secret_keys_are_private() {
        // What the umask gives an ordinary new file here.
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("plain"), "").unwrap();
        let ordinary = mode(&dir.path().join("plain"));
        let lock = dir.path().join("plugins.lock");
        write_atomically(&lock, b"# lock").unwrap();
        assert_eq!(mode(&lock), ordinary);
        write_atomically(&lock, b"# lock again").unwrap();
        assert_eq!(mode(&lock), ordinary, "a replaced file too");

        let key = signature::SigningKey::generate().unwrap();
        key.write(&dir.path().join("k.pem")).unwrap();
        key.public().write(&dir.path().join("k.pub")).unwrap();
        assert_eq!(mode(&dir.path().join("k.pem")), ordinary & 0o600, "the secret key stays private");
        assert_eq!(mode(&dir.path().join("k.pub")), ordinary, "the public key is an ordinary file");
    }
}
