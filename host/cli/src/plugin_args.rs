//! The flags that configure plugins, shared by every command that loads them.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::Args;
use eva_plugin_runtime::{Limits, PluginOptions, RawValue};

/// How plugins are configured and sandboxed. Plugins are named by the name they declare
/// (`eva-host plugin inspect` shows it).
#[derive(Args, Debug, Default, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct PluginArgs {
    /// Set a plugin's config key: `NAME.KEY=VALUE` (repeatable). Unknown keys are errors.
    #[arg(long = "plugin-config", value_name = "NAME.KEY=VALUE")]
    pub config: Vec<String>,

    /// A TOML file of plugin settings: a table per plugin, `[NAME]` for config keys and
    /// `[NAME.limits]` for limits (timeout, memory-bytes, generate-per-input, ...).
    #[arg(long = "plugin-config-file", value_name = "FILE")]
    pub config_file: Option<PathBuf>,

    /// Let a plugin read a directory, read-only, mounted at `/data`: `NAME=DIR`.
    #[arg(long = "plugin-allow-read", value_name = "NAME=DIR")]
    pub allow_read: Vec<String>,

    /// CPU seconds a plugin call may use (its own code only) [default: 5].
    #[arg(long = "plugin-timeout", value_name = "SECONDS")]
    pub timeout: Option<f64>,

    /// Memory cap of a plugin instance, in MiB [default: 256].
    #[arg(long = "plugin-memory", value_name = "MIB")]
    pub memory_mib: Option<usize>,

    #[command(flatten)]
    #[serde(flatten)]
    pub registry: RegistryArgs,
}

/// Where plugins may come from: the registry flags, also all that `plugin pull` takes.
#[derive(Args, Debug, Default, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct RegistryArgs {
    /// Refuse any plugin not pulled from a registry with a valid signature by this
    /// Ed25519 public key (PEM; repeatable: any of them). eva's first-party plugins,
    /// built from its own source, are exempt.
    #[arg(long = "require-signed", value_name = "KEY.pub")]
    pub require_signed: Vec<PathBuf>,

    /// Reach this registry (`HOST[:PORT]`) over plain HTTP (repeatable); loopback
    /// registries always are.
    #[arg(long = "insecure-registry", value_name = "HOST")]
    pub insecure_registries: Vec<String>,
}

/// Every plugin's settings, by plugin name.
#[derive(Debug, Default)]
pub struct PluginSettings {
    config: BTreeMap<String, BTreeMap<String, RawValue>>,
    limits: BTreeMap<String, Limits>,
    read_dirs: BTreeMap<String, PathBuf>,
    default_limits: Limits,
}

impl PluginArgs {
    pub fn settings(&self) -> Result<PluginSettings> {
        let mut s = PluginSettings::default();
        if let Some(t) = self.timeout {
            s.default_limits.timeout = Duration::try_from_secs_f64(t).context("--plugin-timeout")?;
        }
        if let Some(m) = self.memory_mib {
            s.default_limits.memory_bytes = m << 20;
        }
        if let Some(file) = &self.config_file {
            let text = std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
            let table: toml::Table = toml::from_str(&text).with_context(|| format!("parsing {}", file.display()))?;
            for (name, value) in table {
                let toml::Value::Table(mut keys) = value else {
                    bail!("{}: `{name}` must be a table of that plugin's settings", file.display());
                };
                if let Some(limits) = keys.remove("limits") {
                    let limits: Limits =
                        limits.try_into().with_context(|| format!("{}: [{name}.limits]", file.display()))?;
                    s.limits.insert(name.clone(), limits);
                }
                let config = s.config.entry(name).or_default();
                config.extend(keys.into_iter().map(|(k, v)| (k, RawValue::Toml(v))));
            }
        }
        for setting in &self.config {
            let (key, value) = setting
                .split_once('=')
                .with_context(|| format!("--plugin-config `{setting}`: expected NAME.KEY=VALUE"))?;
            let (name, key) =
                key.split_once('.').with_context(|| format!("--plugin-config `{setting}`: expected NAME.KEY=VALUE"))?;
            s.config.entry(name.to_owned()).or_default().insert(key.to_owned(), RawValue::Text(value.to_owned()));
        }
        for grant in &self.allow_read {
            let (name, dir) =
                grant.split_once('=').with_context(|| format!("--plugin-allow-read `{grant}`: expected NAME=DIR"))?;
            s.read_dirs.insert(name.to_owned(), PathBuf::from(dir));
        }
        Ok(s)
    }
}

impl PluginSettings {
    /// The options of the plugin called `name`.
    pub fn options(&self, name: &str) -> PluginOptions {
        PluginOptions {
            limits: self.limits.get(name).cloned().unwrap_or_else(|| self.default_limits.clone()),
            config: self.config.get(name).cloned().unwrap_or_default(),
            read_dir: self.read_dirs.get(name).cloned(),
        }
    }

    /// Fail on settings for plugins that were not loaded: most likely a typo. Settings of
    /// `retired` plugins (replaced in a resumed run) are let be.
    pub fn check_names<'a>(&self, loaded: impl IntoIterator<Item = &'a str> + Clone, retired: &[String]) -> Result<()> {
        let named = self.config.keys().chain(self.limits.keys()).chain(self.read_dirs.keys());
        for name in named.filter(|n| !retired.contains(n)) {
            if !loaded.clone().into_iter().any(|l| l == name) {
                let loaded: Vec<&str> = loaded.clone().into_iter().collect();
                bail!(
                    "settings name plugin `{name}`, but no loaded plugin is called that (loaded: {})",
                    loaded.join(", ")
                );
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_and_files_become_per_plugin_options() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("plugins.toml");
        std::fs::write(&file, "[regret]\nmetric = \"variance\"\n[regret.limits]\ntimeout = 0.5\n").unwrap();
        let args = PluginArgs {
            config: vec!["regret.reward-max=2".into()],
            config_file: Some(file),
            allow_read: vec!["evol-instruct=/tmp".into()],
            timeout: Some(9.0),
            ..PluginArgs::default()
        };
        let s = args.settings().unwrap();
        let regret = s.options("regret");
        assert_eq!(regret.limits.timeout, Duration::from_millis(500));
        assert_eq!(regret.config["metric"], RawValue::Toml(toml::Value::String("variance".into())));
        assert_eq!(regret.config["reward-max"], RawValue::Text("2".into()));
        assert_eq!(s.options("evol-instruct").read_dir, Some(PathBuf::from("/tmp")));
        assert_eq!(s.options("other").limits.timeout, Duration::from_secs(9));
        assert!(s.check_names(["regret", "evol-instruct"], &[]).is_ok());
        let err = s.check_names(["regret"], &[]).unwrap_err().to_string();
        assert!(err.contains("plugin `evol-instruct`"), "{err}");
        assert!(s.check_names(["regret"], &["evol-instruct".into()]).is_ok(), "a retired plugin's settings");
    }

    #[test]
    fn malformed_flags_are_errors() {
        let bad = PluginArgs { config: vec!["regret-metric=gap".into()], ..PluginArgs::default() };
        assert!(bad.settings().unwrap_err().to_string().contains("expected NAME.KEY=VALUE"));
        let bad = PluginArgs { allow_read: vec!["regret".into()], ..PluginArgs::default() };
        assert!(bad.settings().unwrap_err().to_string().contains("expected NAME=DIR"));
    }
}
