//! Pushing and pulling plugins, over `oci-client`, behind a blocking API: the host is
//! synchronous, so each client owns a small single-threaded async runtime.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::pin::Pin;
use std::task::{Context, Poll};

use oci_client::client::{ClientConfig, ClientProtocol};
use oci_client::secrets::RegistryAuth;

use crate::artifact::{Artifact, MANIFEST_MEDIA_TYPE, PluginInfo, PluginManifest};
use crate::cache::{BlobCache, Kind};
use crate::error::{Error, Result};
use crate::reference::PluginRef;
use crate::sha256_digest;

/// How to reach registries.
#[derive(Debug, Clone, Default)]
pub struct ClientOptions {
    /// Where pulled manifests and components are kept.
    pub cache_dir: PathBuf,
    /// Registries (`HOST[:PORT]`) spoken to over plain HTTP; loopback ones always are.
    pub insecure: Vec<String>,
    /// User name and password for registries that require them; anonymous otherwise.
    pub basic_auth: Option<(String, String)>,
}

/// What a push wrote.
#[derive(Debug, Clone)]
pub struct Pushed {
    /// The reference pinned to the new manifest's digest.
    pub pinned: PluginRef,
    pub manifest_digest: String,
    pub component_digest: String,
}

/// A pulled plugin, checked against its digests.
#[derive(Debug, Clone)]
pub struct Pulled {
    /// The reference pinned to the manifest that was pulled.
    pub pinned: PluginRef,
    pub component: Vec<u8>,
    /// `sha256:HEX` of `component`.
    pub component_digest: String,
    pub manifest_digest: String,
    /// The manifest's annotations: metadata, and a signature if the publisher signed.
    pub annotations: BTreeMap<String, String>,
    /// Where the component is cached.
    pub path: PathBuf,
    /// Whether nothing had to be fetched.
    pub from_cache: bool,
}

/// Talks to OCI registries and keeps what it pulls in a [`BlobCache`].
pub struct RegistryClient {
    runtime: tokio::runtime::Runtime,
    options: ClientOptions,
    cache: BlobCache,
}

impl RegistryClient {
    pub fn new(options: ClientOptions) -> Result<Self> {
        // reqwest is built without a TLS provider of its own; ring is ours. Another part
        // of the process may have installed one first, which is as good.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| Error::Client(e.to_string()))?;
        Ok(RegistryClient { runtime, cache: BlobCache::new(&options.cache_dir), options })
    }

    pub fn cache(&self) -> &BlobCache {
        &self.cache
    }

    fn auth(&self) -> RegistryAuth {
        match &self.options.basic_auth {
            Some((user, password)) => RegistryAuth::Basic(user.clone(), password.clone()),
            None => RegistryAuth::Anonymous,
        }
    }

    fn client_for(&self, reference: &PluginRef) -> oci_client::Client {
        let registry = reference.registry();
        let plain = is_loopback(registry) || self.options.insecure.iter().any(|h| h == registry);
        let protocol = if plain { ClientProtocol::Http } else { ClientProtocol::Https };
        oci_client::Client::new(ClientConfig { protocol, ..ClientConfig::default() })
    }

    /// Push `component` to `reference` (which must name a tag) as a plugin artifact with
    /// `info` and `extra` annotations (a signature).
    pub fn push(
        &self,
        reference: &PluginRef,
        component: &[u8],
        info: &PluginInfo,
        extra: BTreeMap<String, String>,
    ) -> Result<Pushed> {
        if reference.digest().is_some() {
            return Err(Error::Reference {
                reference: reference.to_string(),
                reason: "a plugin is published under a tag; its digest is computed".into(),
            });
        }
        let _span = tracing::info_span!("publish", reference = %reference).entered();
        let artifact = Artifact::new(component, info, extra);
        let client = self.client_for(reference);
        let (image, auth) = (reference.oci(), self.auth());
        let failed = |source| Error::Registry { operation: "publishing to", reference: reference.to_string(), source };
        self.runtime.block_on(async {
            client.store_auth_if_needed(image.resolve_registry(), &auth).await;
            client.push_blob(image, component.to_vec(), &artifact.layer_digest).await.map_err(failed)?;
            let config_digest = sha256_digest(&artifact.config);
            client.push_blob(image, artifact.config.clone(), &config_digest).await.map_err(failed)?;
            let content_type = MANIFEST_MEDIA_TYPE.parse().expect("a valid header value");
            client.push_manifest_raw(image, artifact.manifest.clone(), content_type).await.map_err(failed)?;
            Ok::<_, Error>(())
        })?;
        // Keep what was published, so that pulling it back by digest needs no network.
        self.cache.put(Kind::Manifest, &artifact.manifest_digest, &artifact.manifest)?;
        self.cache.put(Kind::Component, &artifact.layer_digest, component)?;
        Ok(Pushed {
            pinned: reference.pinned(&artifact.manifest_digest),
            manifest_digest: artifact.manifest_digest,
            component_digest: artifact.layer_digest,
        })
    }

    /// Pull the plugin at `reference`. A reference by digest is served from the cache
    /// when it holds it; a tag is always resolved by the registry (tags move).
    pub fn pull(&self, reference: &PluginRef) -> Result<Pulled> {
        let _span = tracing::info_span!("pull", reference = %reference).entered();
        let name = reference.to_string();
        let failed = |source| Error::Registry { operation: "pulling", reference: name.clone(), source };
        let client = self.client_for(reference);
        let (image, auth) = (reference.oci(), self.auth());
        let mut from_cache = true;

        let cached = match reference.digest() {
            Some(digest) => self.cache.get(Kind::Manifest, digest)?.map(|m| (m, digest.to_owned())),
            None => None,
        };
        let (manifest, manifest_digest) = match cached {
            Some(hit) => hit,
            None => {
                from_cache = false;
                let (bytes, _) = self
                    .runtime
                    .block_on(client.pull_manifest_raw(image, &auth, &[MANIFEST_MEDIA_TYPE]))
                    .map_err(failed)?;
                // oci-client checks the digest a registry reports; the bytes are what count.
                let actual = sha256_digest(&bytes);
                if let Some(expected) = reference.digest()
                    && expected != actual
                {
                    return Err(Error::DigestMismatch {
                        reference: name,
                        what: "the manifest",
                        expected: expected.to_owned(),
                        actual,
                    });
                }
                self.cache.put(Kind::Manifest, &actual, &bytes)?;
                (bytes.to_vec(), actual)
            }
        };
        let manifest =
            PluginManifest::parse(&manifest).map_err(|reason| Error::NotAPlugin { reference: name.clone(), reason })?;

        let layer_digest = manifest.layer.digest.clone();
        let component = match self.cache.get(Kind::Component, &layer_digest)? {
            Some(bytes) => bytes,
            None => {
                from_cache = false;
                let mut sink = Bounded { bytes: Vec::new(), limit: manifest.layer.size as usize };
                let pulled = self.runtime.block_on(client.pull_blob(image, &manifest.layer, &mut sink));
                let bytes = sink.bytes;
                pulled.map_err(|e| match e {
                    oci_client::errors::OciDistributionError::DigestError(_) => Error::DigestMismatch {
                        reference: name.clone(),
                        what: "the component",
                        expected: layer_digest.clone(),
                        actual: sha256_digest(&bytes),
                    },
                    e => failed(e),
                })?;
                let actual = sha256_digest(&bytes);
                if actual != layer_digest {
                    return Err(Error::DigestMismatch {
                        reference: name,
                        what: "the component",
                        expected: layer_digest,
                        actual,
                    });
                }
                self.cache.put(Kind::Component, &layer_digest, &bytes)?;
                bytes
            }
        };
        tracing::info!(digest = %layer_digest, from_cache, "pulled");
        Ok(Pulled {
            pinned: reference.pinned(&manifest_digest),
            path: self.cache.path(Kind::Component, &layer_digest),
            component,
            component_digest: layer_digest,
            manifest_digest,
            annotations: manifest.annotations,
            from_cache,
        })
    }
}

/// A blob's bytes, refusing more than its manifest declared (checked in range when the
/// manifest was parsed): a registry cannot make eva buffer without end.
struct Bounded {
    bytes: Vec<u8>,
    limit: usize,
}

impl tokio::io::AsyncWrite for Bounded {
    fn poll_write(self: Pin<&mut Self>, _: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        if this.bytes.len() + buf.len() > this.limit {
            return Poll::Ready(Err(std::io::Error::other("the registry sent more bytes than the manifest declares")));
        }
        this.bytes.extend_from_slice(buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

/// `localhost`, `127.x.y.z` or `[::1]`, with or without a port.
fn is_loopback(registry: &str) -> bool {
    let host = match registry.strip_prefix('[') {
        Some(rest) => rest.split(']').next().unwrap_or(""),
        None => registry.rsplit_once(':').map_or(registry, |(h, _)| h),
    };
    host == "localhost" || host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_blob_longer_than_declared_is_refused() {
        let mut sink = Bounded { bytes: vec![], limit: 5 };
        let mut cx = Context::from_waker(std::task::Waker::noop());
        let mut write = |buf: &[u8]| match tokio::io::AsyncWrite::poll_write(Pin::new(&mut sink), &mut cx, buf) {
            Poll::Ready(r) => r.map_err(|e| e.to_string()),
            Poll::Pending => unreachable!("never pending"),
        };
        assert_eq!(write(b"abc"), Ok(3));
        assert!(write(b"def").unwrap_err().contains("more bytes than the manifest declares"));
        assert_eq!(write(b"de"), Ok(2));
    }

    #[test]
    fn only_loopback_registries_are_plain_http_by_default() {
        for host in ["localhost:5000", "127.0.0.1:5000", "127.3.2.1", "[::1]:5000", "localhost"] {
            assert!(is_loopback(host), "{host}");
        }
        for host in ["ghcr.io", "10.0.0.1:5000", "localhost.example.com", "[::2]:80"] {
            assert!(!is_loopback(host), "{host}");
        }
    }
}
