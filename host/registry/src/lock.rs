//! `plugins.lock`: the exact plugins of a run.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// One plugin as a run used it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct LockedPlugin {
    /// The world it plays: `info-metric`, `sampler`, `evolver`, `pairing` or `reward`.
    pub role: String,
    pub name: String,
    pub version: String,
    /// Where it came from, as the user gave it (a file, or `oci://` with a tag).
    pub source: String,
    /// Where exactly the same bytes are: the file, or the `oci://…@sha256:` manifest.
    pub pinned: String,
    /// `sha256:HEX` of the component.
    pub digest: String,
    /// The trusted key that signed it, when signatures were required.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signed_by: Option<String>,
}

/// Every plugin of a run, by role.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PluginLock {
    #[serde(rename = "plugin", default)]
    pub plugins: Vec<LockedPlugin>,
}

const HEADER: &str = "# The plugins of this eva run, by digest (written by eva-host; do not edit).\n\
                      # `eva-host run --plugin-lock FILE` runs with exactly these plugins.\n\n";

impl PluginLock {
    pub fn read(path: &Path) -> Result<Self> {
        let bad = |reason: String| Error::Lock { path: path.to_owned(), reason };
        let text = std::fs::read_to_string(path).map_err(|e| bad(e.to_string()))?;
        let lock: PluginLock = toml::from_str(&text).map_err(|e| bad(e.to_string()))?;
        for p in &lock.plugins {
            crate::reference::check_digest(&p.digest).map_err(|r| bad(format!("plugin `{}`: {r}", p.name)))?;
        }
        Ok(lock)
    }

    pub fn write(&self, path: &Path) -> Result<()> {
        let text = toml::to_string(self).expect("a lock serialises");
        crate::write_atomically(path, format!("{HEADER}{text}").as_bytes())
            .map_err(|e| Error::Lock { path: path.to_owned(), reason: e.to_string() })
    }

    pub fn by_role(&self, role: &str) -> Option<&LockedPlugin> {
        self.plugins.iter().find(|p| p.role == role)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lock_round_trips_and_bad_digests_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("plugins.lock");
        let lock = PluginLock {
            plugins: vec![LockedPlugin {
                role: "sampler".into(),
                name: "top".into(),
                version: "0.1.0".into(),
                source: "oci://127.0.0.1:5000/eva/top:v1".into(),
                pinned: format!("oci://127.0.0.1:5000/eva/top@sha256:{}", "a".repeat(64)),
                digest: format!("sha256:{}", "b".repeat(64)),
                signed_by: Some("ed25519:0011223344556677".into()),
            }],
        };
        lock.write(&path).unwrap();
        assert_eq!(PluginLock::read(&path).unwrap(), lock);
        assert_eq!(lock.by_role("sampler").unwrap().name, "top");
        let text = std::fs::read_to_string(&path).unwrap().replace(&"b".repeat(64), "bb");
        std::fs::write(&path, text).unwrap();
        let err = PluginLock::read(&path).unwrap_err().to_string();
        assert!(err.contains("plugins.lock") && err.contains("plugin `top`"), "{err}");
    }
}
