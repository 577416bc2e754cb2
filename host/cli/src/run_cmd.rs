//! `eva-host run`: the eva loop. Each iteration t runs the creator (respond, score,
//! info, select, evolve, mix) and the solver (respond, score, pair, train) as phases
//! whose outputs land atomically under `RUN_DIR/iter-t/`; `--resume` continues after the
//! last finished phase.

mod config;
mod engines;

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use clap::{ArgMatches, Args};
use eva_loop::layout::RunStore;

use crate::jsonl::read_prompts;
use crate::plugin_args::PluginArgs;
use crate::plugin_source::{PluginLoader, PluginSource};
use crate::run_config::{LoopFlags, RunConfig, ServerArgs};
use crate::run_plugins::{self as plugins, Loaded, Replacement};

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
    /// source tree when missing; default: the cache's `plugins/wit-VERSION/` (one per
    /// contract version, so an upgraded eva-host never runs stale builds).
    #[arg(long, value_name = "DIR")]
    plugins_dir: Option<PathBuf>,
    #[command(flatten)]
    servers: ServerArgs,
    #[command(flatten)]
    plugin_args: PluginArgs,
    #[command(flatten)]
    settings: LoopFlags,
}

pub fn run(args: RunArgs, matches: &ArgMatches) -> Result<()> {
    let store = RunStore::new(&args.out);
    let (mut config, settings_changed) = if args.resume {
        if !store.config().is_file() {
            bail!("--resume: {} has no run to resume (no config.toml)", args.out.display());
        }
        config::resumed(RunConfig::read(&store)?, &args, matches)?
    } else if store.config().exists() {
        bail!("{} already holds a run: pass --resume to continue it, or choose another --out", args.out.display());
    } else {
        (config::fresh(&args, matches)?, vec![])
    };
    let s = &config.settings;
    s.check()?;
    // Hours of generation come before the first training step: check the device first.
    let device = eva_engine::device::default_device()?;
    eva_engine::device::check_dtype(&device, s.solver.precision.dtype())?;
    s.weights.check_device(&device)?;
    // The seed prompts are checked before any model or plugin work.
    let seeds = if args.resume {
        store.read(&store.seeds())?.context("the run's seed.jsonl is missing")?
    } else {
        let Some(prompts) = &args.prompts else { bail!("--prompts SEED.jsonl is required for a new run") };
        let seeds = read_prompts(prompts)?;
        std::fs::create_dir_all(&args.out).with_context(|| format!("creating {}", args.out.display()))?;
        store.write(&store.seeds(), &seeds)?;
        config.write(&store)?;
        seeds
    };

    crate::logging::to_file(&store.log()).with_context(|| format!("opening {}", store.log().display()))?;
    tracing::info!(resume = args.resume, "eva-host run {}", args.out.display());
    if args.resume {
        let removed = store.remove_leftovers()?;
        if removed > 0 {
            tracing::info!("removed {removed} temporary files and directories left by a killed run");
        }
    }
    eva_engine::threads::set_threads(args.threads);
    let mut loader = PluginLoader::from_args(&config.plugin_args)?;
    plugins::pin(&mut loader, &store, args.resume, args.plugin_lock.as_deref(), &args.replace)?;
    let Loaded { mut handles, replaced, retired } = plugins::load_plugins(&mut config, &args.replace, &loader)?;
    let scorer = crate::reward_args::scorer(&config.settings.reward, &loader)?;
    let all_retired: Vec<String> =
        config.changes.iter().flat_map(|c| c.retired.clone()).chain(retired.clone()).collect();
    loader.check_names(&all_retired)?;
    config::record(&mut config, &store, settings_changed, replaced, retired)?;
    loader.lock()?.write(&store.plugin_lock())?;
    let base = match &config.model {
        Some(p) => p.clone(),
        None => crate::models::fetch_default()?,
    };
    let last = engines::drive(&store, &config, &seeds, base, scorer, &mut handles)?;
    println!("{}", last.display());
    Ok(())
}
