//! `eva-host run`: the eva loop. Each iteration t runs the creator (respond, score,
//! info, select, evolve, mix) and the solver (respond, score, pair, train) as phases
//! whose outputs land atomically under `RUN_DIR/iter-t/`; `--resume` continues after the
//! last finished phase.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use clap::parser::ValueSource;
use clap::{ArgMatches, Args};
use eva_plugin_registry::PluginLock;
use eva_plugin_runtime::{Evolver, InfoMetric, Pairing, Plugin, Role, Sampler};
use serde::Serialize;

use crate::candle::{CandleEngine, CandlePolicy, CandleTrainer, OneScreen, ScorerReward};
use crate::jsonl::read_prompts;
use crate::plugin_args::PluginArgs;
use crate::plugin_source::{PluginLoader, PluginSource};
use crate::run_config::{ConfigChange, LoopSettings, RunConfig};
use eva_loop::layout::{IterationSummary, RunStore};
use eva_loop::run::{Parts, Roles, Settings};

#[derive(Args)]
pub struct RunArgs {
    /// Seed prompts, JSONL: `prompt` (a string) or `messages` (a chat ending with a user
    /// message), optional `id`. Required unless --resume.
    #[arg(long)]
    prompts: Option<PathBuf>,
    /// The run directory.
    #[arg(long)]
    out: PathBuf,
    /// Continue the run in OUT after its last finished phase, with its saved config.
    /// Other flags are refused, unless --reconfigure or --replace says they change the run.
    #[arg(long)]
    resume: bool,
    /// With --resume: the loop and plugin flags given (and the keys of --config) replace the
    /// saved ones for every phase not finished yet; the change is recorded in config.toml.
    #[arg(long, requires = "resume")]
    reconfigure: bool,
    /// With --resume: run the phases not finished yet with another plugin for ROLE
    /// (info-metric, sampler, evolver, pairing, reward), for example after a plugin failed;
    /// recorded in config.toml and plugins.lock (repeatable).
    #[arg(long, value_name = "ROLE=FILE.wasm|oci://REF", requires = "resume")]
    replace: Vec<Replacement>,
    /// A TOML file of loop settings (any flag below, by name); flags override it.
    #[arg(long = "config", value_name = "FILE")]
    settings_file: Option<PathBuf>,
    /// The policy: a .gguf file or a Hugging Face directory; default: the embedded
    /// SmolLM2-135M-Instruct.
    #[arg(long)]
    model: Option<PathBuf>,
    /// The creator model: the model behind the evolver's `generate` (a .gguf file or a
    /// Hugging Face directory with a chat template), for example a stronger model than the
    /// policy; it is not trained. Default: the policy of each iteration.
    #[arg(long, value_name = "PATH")]
    creator_model: Option<PathBuf>,
    /// Compute threads; default: the cores not already busy.
    #[arg(long, env = "EVA_THREADS")]
    threads: Option<usize>,
    /// A plugin (repeatable): a component file or `oci://HOST/REPO:TAG|@sha256:HEX`. Its
    /// role (info metric, sampler, evolver, pairing) is read from its exports and it
    /// replaces that role's first-party default.
    #[arg(long = "plugin", value_name = "FILE.wasm|oci://REF")]
    plugins: Vec<PluginSource>,
    /// Run with exactly the plugins a lock file records (a run's `plugins.lock`): registry
    /// plugins are pulled by the digest it pins, and any plugin whose bytes differ from
    /// the lock's is refused. Give the same `--plugin` flags as the locked run.
    #[arg(long = "plugin-lock", value_name = "FILE")]
    plugin_lock: Option<PathBuf>,
    /// Where the first-party plugins are looked up (NAME.wasm), and built into from the
    /// source tree when missing; default: the cache's `plugins/`.
    #[arg(long, value_name = "DIR")]
    plugins_dir: Option<PathBuf>,
    #[command(flatten)]
    plugin_args: PluginArgs,
    #[command(flatten)]
    settings: LoopSettings,
}

/// `--replace ROLE=SOURCE`.
#[derive(Debug, Clone)]
struct Replacement {
    role: Role,
    source: PluginSource,
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

/// `base` with the keys of `file` and then the flags given on the command line (taken
/// from `given`) put over it: a flag wins over the file, the file over `base`.
fn overlay(
    base: &LoopSettings,
    file: Option<&Path>,
    given: &LoopSettings,
    matches: &ArgMatches,
) -> Result<LoopSettings> {
    let mut json = serde_json::to_value(base).expect("settings serialize");
    let map = json.as_object_mut().expect("a map");
    if let Some(file) = file {
        let text = std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
        let table: toml::Table = toml::from_str(&text).with_context(|| format!("parsing {}", file.display()))?;
        for (key, value) in table {
            let id = key.replace('-', "_");
            if !map.contains_key(&id) {
                bail!("{}: unknown setting `{key}` (see eva-host run --help)", file.display());
            }
            map.insert(id, serde_json::to_value(value).expect("toml to json"));
        }
    }
    let given = serde_json::to_value(given).expect("settings serialize");
    for (id, value) in map.iter_mut() {
        if on_command_line(matches, id) {
            *value = given[id].clone();
        }
    }
    let where_ = file.map_or("the flags".to_owned(), |f| f.display().to_string());
    serde_json::from_value(json).with_context(|| format!("{where_}: a setting has the wrong type"))
}

fn on_command_line(matches: &ArgMatches, id: &str) -> bool {
    matches.value_source(id) == Some(ValueSource::CommandLine)
}

/// The keys of a flattened flag struct, which are its flags' ids.
fn keys_of(value: &impl Serialize) -> Vec<String> {
    serde_json::to_value(value).expect("flags serialize").as_object().expect("a map").keys().cloned().collect()
}

/// `key: old -> new` for every key whose value differs.
fn differences(old: &impl Serialize, new: &impl Serialize, prefix: &str) -> Vec<String> {
    let (old, new) = (serde_json::to_value(old).expect("serializes"), serde_json::to_value(new).expect("serializes"));
    let (old, new) = (old.as_object().expect("a map"), new.as_object().expect("a map"));
    new.iter()
        .filter(|(k, v)| old.get(*k) != Some(v))
        .map(|(k, v)| {
            format!("{prefix}{}: {} -> {v}", k.replace('_', "-"), old.get(k).unwrap_or(&serde_json::Value::Null))
        })
        .collect()
}

/// The saved configuration of a run being resumed, with what `--reconfigure` changes;
/// every other flag that the saved configuration fixes is refused, never ignored.
/// Returns the settings that changed.
fn resumed(saved: RunConfig, args: &RunArgs, matches: &ArgMatches) -> Result<(RunConfig, Vec<String>)> {
    let fixed = [
        ("prompts", "--prompts"),
        ("model", "--model"),
        ("creator_model", "--creator-model"),
        ("plugins", "--plugin"),
        ("plugin_lock", "--plugin-lock"),
        ("plugins_dir", "--plugins-dir"),
    ];
    if let Some((id, flag)) = fixed.iter().find(|(id, _)| on_command_line(matches, id)) {
        let hint = if *id == "plugins" { "; to run the rest with another plugin, use --replace ROLE=FILE" } else { "" };
        bail!("{flag} cannot change on --resume: the run's config.toml fixes it{hint}");
    }
    let settings_keys = keys_of(&saved.settings);
    let plugin_keys = keys_of(&saved.plugin_args);
    let given: Vec<&String> =
        settings_keys.iter().chain(&plugin_keys).filter(|id| on_command_line(matches, id)).collect();
    if !args.reconfigure {
        if let Some(id) = given.first() {
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
    let settings = overlay(&config.settings, args.settings_file.as_deref(), &args.settings, matches)?;
    let mut plugin_args = config.plugin_args.clone();
    let new = &args.plugin_args;
    let given = |id: &str| on_command_line(matches, id);
    // Lists add to what the run had (a later `--plugin-config` of a key wins); values replace it.
    if given("config") {
        plugin_args.config.extend(new.config.iter().cloned());
    }
    if given("allow_read") {
        plugin_args.allow_read.extend(new.allow_read.iter().cloned());
    }
    if given("require_signed") {
        plugin_args.require_signed.extend(new.require_signed.iter().cloned());
    }
    if given("insecure_registries") {
        plugin_args.insecure_registries.extend(new.insecure_registries.iter().cloned());
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
    let mut changed = differences(&config.settings, &settings, "");
    changed.extend(differences(&config.plugin_args, &plugin_args, "plugin "));
    (config.settings, config.plugin_args) = (settings, plugin_args);
    Ok((config, changed))
}

fn write_config(path: &Path, config: &RunConfig) -> Result<()> {
    let text = toml::to_string(config).context("writing the config")?;
    eva_engine::atomic::write_file(path, text.as_bytes()).with_context(|| format!("writing {}", path.display()))
}

/// The first phase a resumed run will compute, as `iter-T/PHASE`.
fn next_phase(store: &RunStore, s: &LoopSettings, summaries: &[IterationSummary]) -> String {
    let t = (1..).find(|t| !summaries.iter().any(|m| m.iteration == *t)).expect("a finite run");
    let dir = store.iteration(t);
    let phases = [
        ("respond+score", "answers.jsonl", true),
        ("info", "info.jsonl", !s.no_evolve),
        ("select", "selected.jsonl", !s.no_evolve),
        ("evolve", "evolved.jsonl", !s.no_evolve),
        ("mix", "prompts-next.jsonl", true),
        ("solve respond+score", "solve-answers.jsonl", true),
        ("pair", "pairs.jsonl", true),
        ("train", "model", true),
    ];
    let phase = phases.iter().find(|(_, file, runs)| *runs && !dir.join(file).exists()).map_or("train", |p| p.0);
    format!("iter-{t}/{phase}")
}

/// The plugins of the run, by role: the user's (a `--replace` in place of the one of its
/// role), else the first-party ones (built from the source tree into the plugins
/// directory when missing). Every name is claimed before any plugin is configured.
/// `config` is updated to the sources in effect.
fn load_plugins(config: &mut RunConfig, replace: &[Replacement], loader: &PluginLoader) -> Result<Loaded> {
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
        if reward.reward != crate::reward_args::RewardKind::Plugin {
            bail!("--replace reward=...: this run's reward is not a plugin (--reward plugin)");
        }
        let old = reward.reward_plugin.replace(r.source.clone());
        replaced.push(format!("reward: {} -> {}", old.map_or("none".into(), |o| o.to_string()), r.source));
    }
    if reward.reward == crate::reward_args::RewardKind::Plugin
        && let Some(source) = &reward.reward_plugin
    {
        let (role, name) = loader.describe(source, false)?;
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
    let mut by_role = HashMap::new();
    for (role, source, trusted) in chosen {
        by_role.insert(role, loader.load(&source, trusted)?);
    }
    Ok(Loaded { by_role, replaced, retired })
}

/// The plugins of a run, and what `--replace` changed.
struct Loaded {
    by_role: HashMap<Role, Plugin>,
    /// `role: old -> new`, one per replacement.
    replaced: Vec<String>,
    /// The names of the plugins replaced (and not loaded again under the same name).
    retired: Vec<String>,
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

pub fn run(args: RunArgs, matches: &ArgMatches) -> Result<()> {
    let store = RunStore { dir: args.out.clone() };
    let config_path = args.out.join("config.toml");
    let (mut config, settings_changed) = if args.resume {
        let text = std::fs::read_to_string(&config_path)
            .with_context(|| format!("--resume: {} has no run to resume", args.out.display()))?;
        let saved =
            toml::from_str::<RunConfig>(&text).with_context(|| format!("{} is damaged", config_path.display()))?;
        resumed(saved, &args, matches)?
    } else {
        if config_path.exists() {
            bail!("{} already holds a run: pass --resume to continue it, or choose another --out", args.out.display());
        }
        let settings = overlay(&args.settings, args.settings_file.as_deref(), &args.settings, matches)?;
        let plugins_dir = args.plugins_dir.clone().unwrap_or_else(|| crate::cache_root().join("plugins"));
        if let Some(path) = args.creator_model.iter().find(|p| !p.exists()) {
            bail!("--creator-model {}: no such file or directory", path.display());
        }
        let config = RunConfig {
            model: args.model.clone(),
            creator_model: args.creator_model.clone(),
            plugins: args.plugins.clone(),
            plugins_dir,
            plugin_args: args.plugin_args.clone(),
            settings,
            changes: vec![],
        };
        (config, vec![])
    };
    let s = &config.settings;
    s.check()?;
    // Hours of generation come before the first training step: check the device first.
    let device = eva_engine::device::default_device()?;
    eva_engine::device::check_dtype(&device, s.solver.precision.dtype())?;
    s.weights.check_device(&device)?;
    // The seed prompts are checked before any model or plugin work.
    let seeds_path = args.out.join("seed.jsonl");
    let seeds = if args.resume {
        store.read(&seeds_path)?.context("the run's seed.jsonl is missing")?
    } else {
        let Some(prompts) = &args.prompts else { bail!("--prompts SEED.jsonl is required for a new run") };
        let seeds = read_prompts(prompts)?;
        std::fs::create_dir_all(&args.out).with_context(|| format!("creating {}", args.out.display()))?;
        store.write(&seeds_path, &seeds)?;
        write_config(&config_path, &config)?;
        seeds
    };

    let log = args.out.join("run.log");
    crate::logging::to_file(&log).with_context(|| format!("opening {}", log.display()))?;
    tracing::info!(resume = args.resume, "eva-host run {}", args.out.display());
    if args.resume {
        let removed = store.remove_leftovers()?;
        if removed > 0 {
            tracing::info!("removed {removed} temporary files and directories left by a killed run");
        }
    }
    eva_engine::threads::set_threads(args.threads);
    let mut loader = PluginLoader::from_args(&config.plugin_args)?;
    // A resumed run uses the plugins it started with (but those --replace names); a new
    // one those of --plugin-lock.
    let lock_path = args.out.join("plugins.lock");
    let pins = if args.resume && lock_path.is_file() { Some(lock_path.clone()) } else { args.plugin_lock.clone() };
    if let Some(file) = pins {
        match PluginLock::read(&file) {
            Ok(mut lock) => {
                lock.plugins.retain(|p| !args.replace.iter().any(|r| r.role.world() == p.role));
                loader.pin(lock, file)
            }
            // Runs started by eva-host before 0.1 kept a JSON list there, without pins.
            Err(e) if args.resume && std::fs::read(&file)?.starts_with(b"[") => tracing::warn!("{e}; rewriting it"),
            Err(e) => return Err(e.into()),
        }
    }
    let Loaded { by_role: mut plugins, replaced, retired } = load_plugins(&mut config, &args.replace, &loader)?;
    let scorer = config.settings.reward.scorer(&loader)?;
    let all_retired: Vec<String> =
        config.changes.iter().flat_map(|c| c.retired.iter()).chain(&retired).cloned().collect();
    loader.check_names(&all_retired)?;
    if !settings_changed.is_empty() || !replaced.is_empty() {
        let summaries: Vec<IterationSummary> = store.read(&args.out.join("metrics.jsonl"))?.unwrap_or_default();
        let change = ConfigChange {
            from: next_phase(&store, &config.settings, &summaries),
            settings: settings_changed,
            plugins: replaced,
            retired,
        };
        tracing::info!(from = change.from, settings = ?change.settings, plugins = ?change.plugins, "the run's configuration changes");
        config.changes.push(change);
        write_config(&config_path, &config)?;
    }
    loader.lock()?.write(&lock_path)?;
    let s = &config.settings;
    let mut take = |role| plugins.remove(&role).expect("every role is loaded");
    let mut info = InfoMetric::new(take(Role::InfoMetric))?;
    let mut sampler = Sampler::new(take(Role::Sampler))?;
    let mut evolver = Evolver::new(take(Role::Evolver))?;
    let mut pairing = Pairing::new(take(Role::Pairing))?;

    let base = match &config.model {
        Some(p) => p.clone(),
        None => crate::models::fetch_default()?,
    };
    let creator = config.creator_model.as_deref().map(|p| CandlePolicy::creator(p, s.weights)).transpose()?;
    let settings = Settings {
        iterations: s.iterations,
        sampling: eva_loop::run::Sampling {
            n: s.answers,
            temperature: s.temperature,
            top_p: s.top_p,
            max_new_tokens: s.max_new_tokens,
            seed: s.solver.seed,
        },
        sample_fraction: s.sample_fraction,
        evolve_max_tokens: s.evolve_max_tokens,
        buffer_fraction: s.buffer_fraction,
        dedup_threshold: s.dedup_threshold,
        no_evolve: s.no_evolve,
    };
    let parts = Parts {
        engine: &mut CandleEngine { weights: s.weights },
        creator: creator.as_ref(),
        reward: &mut ScorerReward { scorer, normalize: s.reward.normalize },
        trainer: &mut CandleTrainer { solver: s.solver.clone() },
        roles: Roles { info: &mut info, sampler: &mut sampler, evolver: &mut evolver, pairing: &mut pairing },
        observer: &mut OneScreen,
    };
    let last = eva_loop::run::run(&store, &settings, &seeds, base, parts)?;
    println!("{}", last.display());
    Ok(())
}
