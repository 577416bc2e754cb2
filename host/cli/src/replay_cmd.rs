//! `eva-host replay`: the creator's phases of a finished run again, with other plugins,
//! over the answers and rewards it recorded, into a directory of its own (see
//! `eva_loop::replay`). Plugins not replaced are the run's own, pinned by its lock.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use clap::Args;
use eva_loop::layout::{Phase, RunStore};
use eva_plugin_runtime::{GenerateRequest, Generator};

use crate::plugin_args::PluginArgs;
use crate::plugin_io::CannedReplies;
use crate::plugin_source::{PluginLoader, PluginSource};
use crate::run_config::RunConfig;
use crate::run_plugins::{self as plugins, Loaded, Replacement};

#[derive(Args)]
pub struct ReplayArgs {
    /// The run whose answers and rewards are replayed (its finished iterations).
    #[arg(value_name = "RUN_DIR")]
    run: PathBuf,
    /// Where the replay's files go: `iter-N/{info,selected,evolved,prompts-next}.jsonl`
    /// and `phases.json`, as in a run. A replay there already resumes.
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
    /// A plugin to replay in place of the run's plugin of its role (repeatable).
    #[arg(long = "plugin", value_name = "FILE.wasm|oci://REF")]
    plugins: Vec<PluginSource>,
    /// Answers to the evolver's `generate`, in order (a JSON list of strings). Without
    /// it, an evolver that calls `generate` fails: a replay loads no model.
    #[arg(long, value_name = "FILE")]
    generate_replies: Option<PathBuf>,
    /// The last phase to replay: info, select, or mix (info, select, evolve and mix).
    /// Stop at select to compare info metrics or samplers when the evolver needs a model.
    #[arg(long, default_value = "mix", value_parser = parse_until)]
    until: Phase,
    #[command(flatten)]
    plugin_args: PluginArgs,
}

fn parse_until(text: &str) -> Result<Phase, String> {
    [Phase::Info, Phase::Select, Phase::Mix]
        .into_iter()
        .find(|p| p.name() == text)
        .ok_or_else(|| format!("`{text}` is not one of info, select, mix"))
}

/// The evolver's `generate` when no replies were given.
struct NoModel;

impl Generator for NoModel {
    fn complete(&self, _: &[GenerateRequest]) -> Result<Vec<String>, String> {
        Err("a replay loads no model: give --generate-replies FILE to answer `generate`, or stop before the \
             evolve phase with --until select"
            .into())
    }
}

pub fn run(args: ReplayArgs) -> Result<()> {
    let source = RunStore::new(&args.run);
    if !source.config().is_file() {
        bail!("{} holds no run (no config.toml)", args.run.display());
    }
    if args.out.canonicalize().ok().is_some_and(|o| args.run.canonicalize().is_ok_and(|r| r == o)) {
        bail!("--out {}: the replay needs a directory of its own, not the run's", args.out.display());
    }
    let mut config = RunConfig::read(&source)?;
    // The run's plugin settings, then the ones given here.
    let given = args.plugin_args;
    let settings = &mut config.plugin_args;
    settings.config.extend(given.config);
    settings.allow_read.extend(given.allow_read);
    settings.registry.require_signed.extend(given.registry.require_signed);
    settings.registry.insecure_registries.extend(given.registry.insecure_registries);
    settings.config_file = given.config_file.or(settings.config_file.take());
    settings.timeout = given.timeout.or(settings.timeout);
    settings.memory_mib = given.memory_mib.or(settings.memory_mib);

    let mut loader = PluginLoader::from_args(&config.plugin_args)?;
    let replace = args
        .plugins
        .iter()
        .map(|p| Ok(Replacement::new(loader.describe(p, false)?.0, p.clone())))
        .collect::<Result<Vec<_>>>()?;
    plugins::pin(&mut loader, &source, true, None, &replace)?;
    let Loaded { mut handles, replaced, retired } = plugins::load_plugins(&mut config, &replace, &loader)?;
    loader.check_names(&retired)?;

    std::fs::create_dir_all(&args.out).with_context(|| format!("creating {}", args.out.display()))?;
    let out = RunStore::new(&args.out);
    crate::logging::to_file(&args.out.join("replay.log"))?;
    tracing::info!(run = %args.run.display(), replaced = ?replaced, "eva-host replay");
    let generator: Arc<dyn Generator> = match &args.generate_replies {
        Some(file) => Arc::new(CannedReplies::read(file)?),
        None => Arc::new(NoModel),
    };
    let settings = config.settings.run_settings();
    let n = eva_loop::replay::replay(&source, &out, &settings, handles.roles(), generator, args.until)?;
    eprintln!("replayed {n} iterations of {} into {}", args.run.display(), args.out.display());
    println!("{}", args.out.display());
    Ok(())
}
