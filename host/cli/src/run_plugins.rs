//! The plugins of a run, by role: the user's, the first-party defaults (built from the
//! source tree when missing), `--replace ROLE=SOURCE` on resume, and the run's lock.

use std::collections::HashMap;
use std::path::Path;

use anyhow::{Context, Result, bail};
use eva_loop::layout::RunStore;
use eva_loop::run::Roles;
use eva_loop::settings::RewardKind;
use eva_plugin_registry::PluginLock;
use eva_plugin_runtime::{Evolver, InfoMetric, Pairing, Plugin, Role, Sampler};

use crate::plugin_source::{PluginLoader, PluginSource};
use crate::run_config::RunConfig;

/// Pin the plugins to a lock: a resumed run's own (but the roles `replace` names), else
/// `--plugin-lock`'s.
pub fn pin(
    loader: &mut PluginLoader,
    store: &RunStore,
    resume: bool,
    lock: Option<&Path>,
    replace: &[Replacement],
) -> Result<()> {
    let own = store.plugin_lock();
    let Some(file) = (if resume && own.is_file() { Some(own.as_path()) } else { lock }) else { return Ok(()) };
    match PluginLock::read(file) {
        Ok(mut lock) => {
            lock.plugins.retain(|p| !replace.iter().any(|r| r.role.world() == p.role));
            loader.pin(lock, file.to_owned());
            Ok(())
        }
        // Runs started by eva-host before 0.1 kept a JSON list there, without pins.
        Err(e) if resume && std::fs::read(file)?.starts_with(b"[") => {
            tracing::warn!("{e}; rewriting it");
            Ok(())
        }
        Err(e) => Err(e.into()),
    }
}

/// `--replace ROLE=SOURCE`.
#[derive(Debug, Clone)]
pub struct Replacement {
    pub role: Role,
    source: PluginSource,
}

impl Replacement {
    pub fn new(role: Role, source: PluginSource) -> Self {
        Replacement { role, source }
    }
}

impl std::str::FromStr for Replacement {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let (role, source) = s.split_once('=').ok_or("expected ROLE=FILE.wasm|oci://REF")?;
        let worlds: Vec<&str> = Role::ALL.iter().map(|r| r.world()).collect();
        let role = Role::ALL
            .into_iter()
            .find(|r| r.world() == role)
            .ok_or_else(|| format!("unknown role `{role}` (one of {})", worlds.join(", ")))?;
        Ok(Replacement { role, source: source.parse().map_err(|e| format!("{e}"))? })
    }
}

/// The first-party plugins, by role.
const DEFAULT_PLUGINS: [(Role, &str); 4] = [
    (Role::InfoMetric, "eva-plugin-regret"),
    (Role::Sampler, "eva-plugin-weighted-sampler"),
    (Role::Evolver, "eva-plugin-evol-instruct"),
    (Role::Pairing, "eva-plugin-max-min-pairing"),
];

/// The plugins of the run, by role: the user's (a `--replace` in place of the one of its
/// role), else the first-party ones (built from the source tree into the plugins
/// directory when missing). Every name is claimed before any plugin is configured.
/// `config` is updated to the sources in effect.
pub fn load_plugins(config: &mut RunConfig, replace: &[Replacement], loader: &PluginLoader) -> Result<Loaded> {
    let mut chosen: Vec<(Role, PluginSource, bool)> = vec![];
    let mut names: Vec<(String, String)> = vec![];
    let mut replaced = vec![];
    // `described` is what `loader.describe` said of `source`.
    let mut choose = |role: Role,
                      source: &PluginSource,
                      trusted: bool,
                      described: (Role, String),
                      chosen: &mut Vec<(Role, PluginSource, bool)>| {
        let (found, name) = described;
        if found != role {
            bail!("{source} is a {found} plugin, not the {role}");
        }
        if let Some((_, other, _)) = chosen.iter().find(|(r, _, _)| *r == role) {
            bail!("two plugins for the {role}: {other} and {source}");
        }
        names.push((name, source.to_string()));
        chosen.push((role, source.clone(), trusted));
        Ok(())
    };
    let mut retired = vec![];
    for source in &config.plugins {
        let described = loader.describe(source, false)?;
        let role = described.0;
        match replace.iter().find(|r| r.role == role) {
            Some(r) => {
                replaced.push(format!("{}: {source} -> {}", role.world(), r.source));
                retired.push(described.1);
            }
            None => choose(role, source, false, described, &mut chosen)?,
        }
    }
    for r in replace.iter().filter(|r| r.role != Role::Reward) {
        if !replaced.iter().any(|line| line.starts_with(&format!("{}:", r.role.world()))) {
            replaced.push(format!("{}: the first-party default -> {}", r.role.world(), r.source));
        }
        choose(r.role, &r.source, false, loader.describe(&r.source, false)?, &mut chosen)?;
    }
    config.plugins = chosen.iter().map(|(_, source, _)| source.clone()).collect();
    for (role, name) in DEFAULT_PLUGINS {
        if chosen.iter().any(|(r, _, _)| *r == role) {
            continue;
        }
        let path = config.plugins_dir.join(format!("{name}.wasm"));
        if !path.is_file() {
            build_first_party(&config.plugins_dir).with_context(|| format!("building the default {role} plugin"))?;
        }
        let source = PluginSource::File(path);
        choose(role, &source, true, loader.describe(&source, true)?, &mut chosen)?;
    }
    let reward = &mut config.settings.reward;
    if let Some(r) = replace.iter().find(|r| r.role == Role::Reward) {
        if reward.reward != RewardKind::Plugin {
            bail!("--replace reward=...: this run's reward is not a plugin (--reward plugin)");
        }
        let old = reward.reward_plugin.replace(r.source.to_string());
        replaced.push(format!("reward: {} -> {}", old.unwrap_or_else(|| "none".into()), r.source));
    }
    if let Some(source) = crate::reward_args::reward_plugin(reward)? {
        let (role, name) = loader.describe(&source, false)?;
        if role != Role::Reward {
            bail!("--reward-plugin {source} is a {role} plugin, not a reward plugin");
        }
        names.push((name, source.to_string()));
    }
    for (name, source) in &names {
        loader.claim(name, source)?;
    }
    // A replaced plugin's settings stay in the config, unused unless a plugin of that name
    // comes back (a fixed build of the same plugin keeps them).
    retired.retain(|n| !names.iter().any(|(m, _)| m == n));
    let mut by_role: HashMap<Role, Plugin> = HashMap::new();
    for (role, source, trusted) in chosen {
        by_role.insert(role, loader.load(&source, trusted)?);
    }
    let mut take = |role| by_role.remove(&role).expect("every role is chosen");
    let handles = Handles {
        info: InfoMetric::new(take(Role::InfoMetric))?,
        sampler: Sampler::new(take(Role::Sampler))?,
        evolver: Evolver::new(take(Role::Evolver))?,
        pairing: Pairing::new(take(Role::Pairing))?,
    };
    Ok(Loaded { handles, replaced, retired })
}

/// The plugins of a run, and what `--replace` changed.
pub struct Loaded {
    pub handles: Handles,
    /// `role: old -> new`, one per replacement.
    pub replaced: Vec<String>,
    /// The names of the plugins replaced (and not loaded again under the same name).
    pub retired: Vec<String>,
}

/// The creator's and solver's roles as Wasm plugins.
pub struct Handles {
    info: InfoMetric,
    sampler: Sampler,
    evolver: Evolver,
    pairing: Pairing,
}

impl Handles {
    pub fn roles(&mut self) -> Roles<'_> {
        Roles {
            info: &mut self.info,
            sampler: &mut self.sampler,
            evolver: &mut self.evolver,
            pairing: &mut self.pairing,
        }
    }
}

fn build_first_party(dir: &Path) -> Result<()> {
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let manifest_path = workspace.join("Cargo.toml");
    if !manifest_path.is_file() {
        bail!(
            "the first-party plugins are not in {} and eva's source tree is not at {}: pass --plugins-dir \
             or --plugin",
            dir.display(),
            workspace.display()
        );
    }
    eprintln!("building the first-party plugins into {} (once)", dir.display());
    eva_plugin_build::build(&eva_plugin_build::BuildRequest {
        manifest_path,
        packages: DEFAULT_PLUGINS.iter().map(|(_, n)| n.to_string()).collect(),
        target: eva_plugin_build::GuestTarget::Unknown,
        target_dir: Some(crate::cache_root().join("guest-target")),
        out_dir: dir.to_owned(),
    })?;
    Ok(())
}
