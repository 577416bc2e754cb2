//! The configuration a run starts with, or resumes with: flags over a `--config` file
//! over the defaults for a new run; a resumed run's saved configuration, changed only
//! where `--reconfigure` says so (every other flag it fixes is refused, never ignored).

use anyhow::{Result, bail};
use clap::ArgMatches;
use eva_loop::layout::RunStore;
use eva_loop::settings::Overlay;

use super::RunArgs;
use crate::flags::is_given;
use crate::plugin_args::PluginArgs;
use crate::run_config::{ConfigChange, RunConfig};

impl Overlay for PluginArgs {}

/// The configuration of a new run.
pub fn fresh(args: &RunArgs, matches: &ArgMatches) -> Result<RunConfig> {
    let settings = args.settings.over(&Default::default(), args.settings_file.as_deref(), matches)?;
    if let Some(path) = args.creator_model.iter().find(|p| !p.exists()) {
        bail!("--creator-model {}: no such file or directory", path.display());
    }
    if !args.servers.is_local() {
        match &args.model {
            Some(dir) if dir.is_dir() => {}
            _ => bail!("--policy-endpoint needs --model DIR: the Hugging Face directory the servers serve"),
        }
        if settings.solver.full {
            bail!("--policy-endpoint trains LoRA adapters (the servers take adapters): --full is not supported");
        }
        if args.creator_model.is_some() {
            bail!(
                "--creator-model with --policy-endpoint: serve the creator model too and give --creator-endpoint URL"
            );
        }
        for url in &args.servers.endpoints {
            eva_remote::client::Client::new(url, Default::default())?;
        }
    }
    if let Some(url) = &args.servers.creator_endpoint {
        eva_remote::client::Client::new(url, Default::default())?;
    }
    Ok(RunConfig {
        model: args.model.clone(),
        creator_model: args.creator_model.clone(),
        plugins: args.plugins.clone(),
        plugins_dir: args.plugins_dir.clone().unwrap_or_else(|| {
            crate::cache_root().join("plugins").join(format!("wit-{}", eva_plugin_runtime::WIT_VERSION))
        }),
        plugin_args: args.plugin_args.clone(),
        settings,
        servers: args.servers.clone(),
        changes: vec![],
    })
}

/// The saved configuration of a run being resumed, with what `--reconfigure` changes;
/// returns the settings that changed, `key: old -> new`.
pub fn resumed(saved: RunConfig, args: &RunArgs, matches: &ArgMatches) -> Result<(RunConfig, Vec<String>)> {
    let fixed = [
        ("prompts", "--prompts"),
        ("model", "--model"),
        ("creator_model", "--creator-model"),
        ("plugins", "--plugin"),
        ("plugin_lock", "--plugin-lock"),
        ("plugins_dir", "--plugins-dir"),
        ("endpoints", "--policy-endpoint"),
        ("served_model", "--served-model"),
        ("endpoint_concurrency", "--endpoint-concurrency"),
        ("served_reference", "--served-reference"),
        ("creator_endpoint", "--creator-endpoint"),
        ("creator_served_model", "--creator-served-model"),
    ];
    if let Some((id, flag)) = fixed.iter().find(|(id, _)| is_given(matches, id)) {
        let hint = if *id == "plugins" { "; to run the rest with another plugin, use --replace ROLE=FILE" } else { "" };
        bail!("{flag} cannot change on --resume: the run's config.toml fixes it{hint}");
    }
    if !args.reconfigure {
        let keys = saved.settings.keys().into_iter().chain(saved.plugin_args.keys());
        if let Some(id) = keys.into_iter().find(|id| is_given(matches, id)) {
            bail!(
                "--{} is given with --resume, which runs with the settings in config.toml: add --reconfigure to \
                 change them for the phases not finished yet",
                id.replace('_', "-")
            );
        }
        if args.settings_file.is_some() {
            bail!("--config is given with --resume: add --reconfigure to apply it to the phases not finished yet");
        }
        return Ok((saved, vec![]));
    }
    let mut config = saved;
    let settings = args.settings.over(&config.settings, args.settings_file.as_deref(), matches)?;
    let mut plugin_args = config.plugin_args.clone();
    let new = &args.plugin_args;
    let given = |id: &str| is_given(matches, id);
    // Lists add to what the run had (a later `--plugin-config` of a key wins); values replace it.
    if given("config") {
        plugin_args.config.extend(new.config.iter().cloned());
    }
    if given("allow_read") {
        plugin_args.allow_read.extend(new.allow_read.iter().cloned());
    }
    if given("require_signed") {
        plugin_args.registry.require_signed.extend(new.registry.require_signed.iter().cloned());
    }
    if given("insecure_registries") {
        plugin_args.registry.insecure_registries.extend(new.registry.insecure_registries.iter().cloned());
    }
    if given("config_file") {
        plugin_args.config_file = new.config_file.clone();
    }
    if given("timeout") {
        plugin_args.timeout = new.timeout;
    }
    if given("memory_mib") {
        plugin_args.memory_mib = new.memory_mib;
    }
    let mut changed = config.settings.differences(&settings);
    changed.extend(config.plugin_args.differences(&plugin_args).into_iter().map(|d| format!("plugin {d}")));
    (config.settings, config.plugin_args) = (settings, plugin_args);
    Ok((config, changed))
}

/// Record in `config.toml` what a resume changed (settings, plugins replaced), from the
/// first phase not finished yet; nothing when nothing changed.
pub fn record(
    config: &mut RunConfig,
    store: &RunStore,
    settings: Vec<String>,
    plugins: Vec<String>,
    retired: Vec<String>,
) -> Result<()> {
    if settings.is_empty() && plugins.is_empty() {
        return Ok(());
    }
    let change = ConfigChange { from: store.next_phase(config.settings.no_evolve)?, settings, plugins, retired };
    tracing::info!(from = change.from, settings = ?change.settings, plugins = ?change.plugins, "the run's configuration changes");
    config.changes.push(change);
    config.write(store)
}
