//! Where plugins come from, and what was loaded: a plugin is a component file or an
//! `oci://` reference pulled (and verified) from a registry. The [`PluginLoader`] of a
//! command loads every plugin through the same path, checks signatures when the user
//! requires them, and records each plugin's digest for the run's `plugins.lock`.

use std::cell::{OnceCell, RefCell};
use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use eva_plugin_registry::signature::{PublicKey, TrustedKeys};
use eva_plugin_registry::{ClientOptions, LockedPlugin, PluginLock, PluginRef, Pulled, RegistryClient};
use eva_plugin_runtime::{Plugin, PluginEngine, PluginOptions, Role};

use crate::plugin_args::{PluginArgs, PluginSettings};

/// A component file, or a plugin in a registry.
#[derive(Debug, Clone, PartialEq)]
pub enum PluginSource {
    File(PathBuf),
    Oci(PluginRef),
}

impl std::str::FromStr for PluginSource {
    type Err = eva_plugin_registry::Error;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.starts_with("oci://") {
            PluginRef::parse(s).map(PluginSource::Oci)
        } else {
            Ok(PluginSource::File(s.into()))
        }
    }
}

impl fmt::Display for PluginSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PluginSource::File(path) => write!(f, "{}", path.display()),
            PluginSource::Oci(r) => write!(f, "{r}"),
        }
    }
}

impl serde::Serialize for PluginSource {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for PluginSource {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// The registry client for a command, from the environment: the cache under eva's cache
/// root, `EVA_REGISTRY_USERNAME` / `EVA_REGISTRY_PASSWORD` for registries that need them.
pub fn registry_client(insecure: &[String]) -> Result<RegistryClient> {
    let var = |k| std::env::var(k).ok().filter(|v| !v.is_empty());
    let basic_auth = var("EVA_REGISTRY_USERNAME").map(|u| (u, var("EVA_REGISTRY_PASSWORD").unwrap_or_default()));
    let options = ClientOptions { cache_dir: crate::cache_root().join("oci"), insecure: insecure.to_vec(), basic_auth };
    Ok(RegistryClient::new(options)?)
}

/// Loads a command's plugins with their settings and remembers what it loaded.
pub struct PluginLoader {
    settings: PluginSettings,
    engine: PluginEngine,
    registry: OnceCell<RegistryClient>,
    insecure: Vec<String>,
    trusted: TrustedKeys,
    /// A lock to reproduce (`--plugin-lock`, or the run's own on `--resume`), and its file.
    pins: Option<(PluginLock, PathBuf)>,
    loaded: RefCell<Vec<LockedPlugin>>,
    /// Plugin names and the source that declared each: settings and grants are given by
    /// name, so a name belongs to one plugin.
    claims: RefCell<BTreeMap<String, String>>,
}

/// A plugin's bytes, from a file or a registry, and where they came from.
struct Fetched {
    bytes: Vec<u8>,
    origin: PathBuf,
    pinned_at: String,
    signed_by: Option<String>,
}

impl PluginLoader {
    /// The loader of a command's plugins: its settings, registries and trusted keys.
    pub fn from_args(args: &PluginArgs) -> Result<Self> {
        let keys = args.registry.require_signed.iter().map(|p| PublicKey::read(p)).collect::<Result<Vec<_>, _>>()?;
        PluginLoader::new(args.settings()?, args.registry.insecure_registries.clone(), TrustedKeys::new(keys))
    }

    pub fn new(settings: PluginSettings, insecure: Vec<String>, trusted: TrustedKeys) -> Result<Self> {
        Ok(PluginLoader {
            settings,
            engine: crate::plugin_engine()?,
            registry: OnceCell::new(),
            insecure,
            trusted,
            pins: None,
            loaded: RefCell::new(vec![]),
            claims: RefCell::new(BTreeMap::new()),
        })
    }

    /// Load plugins as `lock` (read from `file`) records them: registry plugins from the
    /// manifest the lock pins, and every plugin of a role in the lock with its digest.
    pub fn pin(&mut self, lock: PluginLock, file: PathBuf) {
        self.pins = Some((lock, file));
    }

    fn registry(&self) -> Result<&RegistryClient> {
        if self.registry.get().is_none() {
            let _ = self.registry.set(registry_client(&self.insecure)?);
        }
        Ok(self.registry.get().expect("set above"))
    }

    /// Pull a plugin, and check its signature when signatures are required: the plugin
    /// and the trusted key that signed it.
    pub fn pull(&self, reference: &PluginRef) -> Result<(Pulled, Option<String>)> {
        let pulled = self.registry()?.pull(reference)?;
        if self.trusted.is_empty() {
            return Ok((pulled, None));
        }
        let key = self.trusted.verify(&reference.to_string(), &pulled.component_digest, &pulled.annotations)?;
        let key = key.to_string();
        Ok((pulled, Some(key)))
    }

    /// The lock's entry for `source`, when loading to a lock.
    fn pinned(&self, source: &str) -> Option<&LockedPlugin> {
        self.pins.as_ref().and_then(|(lock, _)| lock.plugins.iter().find(|p| p.source == source))
    }

    /// The bytes of a plugin; `trusted_source` exempts eva's own first-party plugins
    /// (built from its source tree) from `--require-signed`.
    fn fetch(&self, source: &PluginSource, trusted_source: bool) -> Result<Fetched> {
        let text = source.to_string();
        let from = match self.pinned(&text) {
            Some(p) => p.pinned.parse().with_context(|| format!("the lock's entry for {text}"))?,
            None => source.clone(),
        };
        match &from {
            PluginSource::File(path) => {
                if !self.trusted.is_empty() && !trusted_source {
                    bail!(
                        "{}: a local file carries no signature, and --require-signed is given: publish it \
                         (`eva-host plugin publish --sign`) and load it by its oci:// reference",
                        path.display()
                    );
                }
                let bytes =
                    std::fs::read(path).with_context(|| format!("cannot read plugin file {}", path.display()))?;
                let at = std::path::absolute(path).unwrap_or_else(|_| path.clone());
                Ok(Fetched { bytes, origin: path.clone(), pinned_at: at.display().to_string(), signed_by: None })
            }
            PluginSource::Oci(reference) => {
                let (pulled, signed_by) = self.pull(reference)?;
                Ok(Fetched {
                    bytes: pulled.component,
                    origin: PathBuf::from(&text),
                    pinned_at: pulled.pinned.to_string(),
                    signed_by,
                })
            }
        }
    }

    /// The role and declared name of a plugin, from `describe` alone: nothing of the
    /// user's settings or grants reaches it.
    pub fn describe(&self, source: &PluginSource, trusted_source: bool) -> Result<(Role, String)> {
        let fetched = self.fetch(source, trusted_source)?;
        let (role, metadata) = self.engine.describe(&fetched.bytes, &fetched.origin)?;
        Ok((role, metadata.name))
    }

    /// Claim `name` for `source` before any plugin is configured: a plugin that declares a
    /// name another source declares is refused, so it never receives that plugin's
    /// settings, limits or directory.
    pub fn claim(&self, name: &str, source: &str) -> Result<()> {
        let mut claims = self.claims.borrow_mut();
        match claims.get(name) {
            Some(other) if other != source => bail!(
                "two plugins declare the name `{name}`: {other} and {source}. Names must be unique: settings \
                 and grants (--plugin-config, --plugin-allow-read, [NAME.limits]) are given by name"
            ),
            Some(_) => Ok(()),
            None => {
                claims.insert(name.to_owned(), source.to_owned());
                Ok(())
            }
        }
    }

    /// Load one plugin given by the user; `trusted_source` exempts eva's own first-party
    /// plugins (built from its source tree) from `--require-signed`.
    pub fn load(&self, source: &PluginSource, trusted_source: bool) -> Result<Plugin> {
        let text = source.to_string();
        let fetched = self.fetch(source, trusted_source)?;
        // A name claimed by another source gets nothing of that plugin's: no settings,
        // no limits, no grant.
        let taken = |name: &str| self.claims.borrow().get(name).is_some_and(|s| *s != text);
        let options = |name: &str| if taken(name) { PluginOptions::default() } else { self.settings.options(name) };
        let plugin = self.engine.load_bytes_with(&fetched.bytes, &fetched.origin, options)?;
        self.claim(plugin.name(), &text)?;
        let entry = LockedPlugin {
            role: plugin.role().world().to_owned(),
            name: plugin.name().to_owned(),
            version: plugin.metadata().version.clone(),
            source: text,
            pinned: fetched.pinned_at,
            digest: format!("sha256:{}", plugin.digest()),
            signed_by: fetched.signed_by,
        };
        if let Some(p) = self.pinned(&entry.source)
            && p.digest != entry.digest
        {
            bail!(
                "{}: its component is {}, not {} as the lock {} records (a first-party plugin changes with eva's \
                 own source). To go on with this component deliberately, resume with `--replace {}={}`",
                entry.source,
                entry.digest,
                p.digest,
                self.pins.as_ref().expect("pinned").1.display(),
                entry.role,
                entry.source
            );
        }
        self.loaded.borrow_mut().push(entry);
        Ok(plugin)
    }

    /// Everything loaded so far, as a lock; with pins, also a check that every plugin the
    /// lock records was loaded with the same bytes.
    pub fn lock(&self) -> Result<PluginLock> {
        let lock = PluginLock { plugins: self.loaded.borrow().clone() };
        if let Some((pins, file)) = &self.pins {
            for want in &pins.plugins {
                match lock.by_role(&want.role) {
                    Some(got) if got.digest == want.digest => {}
                    Some(got) => bail!(
                        "the {} plugin is {} {} ({}), but {} records {} {} ({}): the run would not use the same \
                         plugins",
                        want.role,
                        got.name,
                        got.digest,
                        got.source,
                        file.display(),
                        want.name,
                        want.digest,
                        want.source
                    ),
                    None => bail!("{} records a {} plugin, but none was loaded", file.display(), want.role),
                }
            }
        }
        Ok(lock)
    }

    /// Fail on settings that name no loaded plugin (most likely a typo), but those of
    /// `retired` plugins.
    pub fn check_names(&self, retired: &[String]) -> Result<()> {
        let loaded = self.loaded.borrow();
        self.settings.check_names(loaded.iter().map(|p| p.name.as_str()), retired)
    }
}
