//! Ed25519 signatures over a plugin component's digest.
//!
//! The publisher signs `eva-plugin-signature-v1\n` followed by the component's
//! `sha256:HEX` digest; the signature and the signer's public key travel as manifest
//! annotations. A puller that requires signatures checks them against the public keys it
//! trusts. Since the manifest names the component by digest and the registry client
//! checks every blob against its digest, a changed component, a changed signature and a
//! signature by another key are all refused.
//!
//! Keys are PKCS#8 PEM files, the format of `openssl genpkey -algorithm ed25519` (private)
//! and `openssl pkey -pubout` (public).

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use ed25519_dalek::pkcs8::{DecodePrivateKey, DecodePublicKey, EncodePrivateKey, EncodePublicKey};
use ed25519_dalek::{Signer, Verifier};

use crate::error::{Error, Result};

/// The annotation holding the base64 signature.
pub const ANNOTATION_SIGNATURE: &str = "dev.eva.plugin.signature";
/// The annotation holding the signer's public key (base64 of its 32 bytes).
pub const ANNOTATION_SIGNING_KEY: &str = "dev.eva.plugin.signing-key";

const CONTEXT: &[u8] = b"eva-plugin-signature-v1\n";

fn message(component_digest: &str) -> Vec<u8> {
    [CONTEXT, component_digest.as_bytes()].concat()
}

fn key_error(path: &Path, reason: impl fmt::Display) -> Error {
    Error::Key { path: path.to_owned(), reason: reason.to_string() }
}

/// A private key that signs plugins.
pub struct SigningKey(ed25519_dalek::SigningKey);

impl SigningKey {
    /// A fresh key from the operating system's random source.
    pub fn generate() -> Result<Self> {
        let mut seed = [0u8; 32];
        getrandom::fill(&mut seed).map_err(|e| Error::Client(format!("no random source for a key: {e}")))?;
        Ok(SigningKey(ed25519_dalek::SigningKey::from_bytes(&seed)))
    }

    /// Read a PKCS#8 PEM private key.
    pub fn read(path: &Path) -> Result<Self> {
        let pem = std::fs::read_to_string(path).map_err(|e| key_error(path, e))?;
        let key = ed25519_dalek::SigningKey::from_pkcs8_pem(&pem)
            .map_err(|e| key_error(path, format!("not an Ed25519 private key in PKCS#8 PEM: {e}")))?;
        Ok(SigningKey(key))
    }

    /// Write the key as PKCS#8 PEM, readable by its owner only; an existing file is kept.
    pub fn write(&self, path: &Path) -> Result<()> {
        let pem = self.0.to_pkcs8_pem(Default::default()).map_err(|e| key_error(path, e))?;
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let mut file = options.open(path).map_err(|e| key_error(path, e))?;
        std::io::Write::write_all(&mut file, pem.as_bytes()).map_err(|e| key_error(path, e))
    }

    pub fn public(&self) -> PublicKey {
        PublicKey(self.0.verifying_key())
    }

    /// The annotations that sign a component with this digest.
    pub fn sign(&self, component_digest: &str) -> BTreeMap<String, String> {
        let signature = self.0.sign(&message(component_digest));
        BTreeMap::from([
            (ANNOTATION_SIGNATURE.to_owned(), BASE64.encode(signature.to_bytes())),
            (ANNOTATION_SIGNING_KEY.to_owned(), BASE64.encode(self.0.verifying_key().as_bytes())),
        ])
    }
}

/// A public key that plugins may be signed with.
#[derive(Clone, PartialEq, Eq)]
pub struct PublicKey(ed25519_dalek::VerifyingKey);

impl PublicKey {
    /// Read a public key in PEM (SubjectPublicKeyInfo), or the private key it belongs to.
    pub fn read(path: &Path) -> Result<Self> {
        let pem = std::fs::read_to_string(path).map_err(|e| key_error(path, e))?;
        if let Ok(key) = ed25519_dalek::VerifyingKey::from_public_key_pem(&pem) {
            return Ok(PublicKey(key));
        }
        ed25519_dalek::SigningKey::from_pkcs8_pem(&pem)
            .map(|k| PublicKey(k.verifying_key()))
            .map_err(|_| key_error(path, "not an Ed25519 public key in PEM"))
    }

    pub fn write(&self, path: &Path) -> Result<()> {
        let pem = self.0.to_public_key_pem(Default::default()).map_err(|e| key_error(path, e))?;
        crate::write_atomically(path, pem.as_bytes()).map_err(|e| key_error(path, e))
    }

    fn from_base64(text: &str) -> Option<Self> {
        let bytes: [u8; 32] = BASE64.decode(text).ok()?.try_into().ok()?;
        ed25519_dalek::VerifyingKey::from_bytes(&bytes).ok().map(PublicKey)
    }
}

/// `ed25519:` and the first 16 hex digits of the sha256 of the key: enough to tell keys apart.
impl fmt::Display for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let hash = crate::sha256_digest(self.0.as_bytes());
        write!(f, "ed25519:{}", &hash["sha256:".len()..][..16])
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// The keys a user trusts; a plugin must carry a valid signature by one of them.
#[derive(Debug, Clone, Default)]
pub struct TrustedKeys(Vec<PublicKey>);

impl TrustedKeys {
    pub fn new(keys: Vec<PublicKey>) -> Self {
        TrustedKeys(keys)
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The trusted key that signed the component with this digest (`origin` names the
    /// plugin in errors), from its annotations.
    pub fn verify(
        &self,
        origin: &str,
        component_digest: &str,
        annotations: &BTreeMap<String, String>,
    ) -> Result<&PublicKey> {
        let refuse = |reason: String| Error::Signature { origin: origin.to_owned(), reason };
        let Some(signature) = annotations.get(ANNOTATION_SIGNATURE) else {
            return Err(refuse("the plugin is not signed, and signatures are required (--require-signed)".into()));
        };
        let signature = BASE64
            .decode(signature)
            .ok()
            .and_then(|b| ed25519_dalek::Signature::from_slice(&b).ok())
            .ok_or_else(|| refuse("its signature annotation is not an Ed25519 signature".into()))?;
        let message = message(component_digest);
        if let Some(key) = self.0.iter().find(|k| k.0.verify(&message, &signature).is_ok()) {
            return Ok(key);
        }
        let claimed = annotations.get(ANNOTATION_SIGNING_KEY).and_then(|k| PublicKey::from_base64(k));
        Err(refuse(match claimed {
            Some(key) if self.0.contains(&key) => {
                format!(
                    "its signature by trusted key {key} does not verify: the component or the signature was altered"
                )
            }
            Some(key) => format!("it is signed by {key}, which is not among the trusted keys (--require-signed)"),
            None => "its signature does not verify with any trusted key".into(),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DIGEST: &str = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    #[test]
    fn a_signature_verifies_only_for_its_digest_and_a_trusted_key() {
        let key = SigningKey::generate().unwrap();
        let trusted = TrustedKeys::new(vec![key.public()]);
        let annotations = key.sign(DIGEST);
        assert_eq!(trusted.verify("p", DIGEST, &annotations).unwrap(), &key.public());

        let other = DIGEST.replace("0123", "3210");
        let err = trusted.verify("p", &other, &annotations).unwrap_err().to_string();
        assert!(err.contains("does not verify") && err.contains("altered"), "{err}");

        let stranger = SigningKey::generate().unwrap();
        let err = trusted.verify("p", DIGEST, &stranger.sign(DIGEST)).unwrap_err().to_string();
        assert!(err.contains(&format!("signed by {}", stranger.public())), "{err}");

        let err = trusted.verify("oci://h/p:1", DIGEST, &BTreeMap::new()).unwrap_err().to_string();
        assert!(err.starts_with("oci://h/p:1: the plugin is not signed"), "{err}");
    }

    #[test]
    fn keys_round_trip_through_pem_files() {
        let dir = tempfile::tempdir().unwrap();
        let key = SigningKey::generate().unwrap();
        key.write(&dir.path().join("k.pem")).unwrap();
        key.public().write(&dir.path().join("k.pub")).unwrap();
        let read = SigningKey::read(&dir.path().join("k.pem")).unwrap();
        assert_eq!(read.public(), key.public());
        assert_eq!(PublicKey::read(&dir.path().join("k.pub")).unwrap(), key.public());
        assert_eq!(PublicKey::read(&dir.path().join("k.pem")).unwrap(), key.public());
        assert!(key.write(&dir.path().join("k.pem")).is_err(), "an existing key is never overwritten");
        std::fs::write(dir.path().join("bad.pem"), "hello").unwrap();
        let err = SigningKey::read(&dir.path().join("bad.pem")).err().unwrap().to_string();
        assert!(err.contains("bad.pem") && err.contains("PKCS#8"), "{err}");
    }
}
