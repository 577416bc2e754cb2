//! `eva-host`: the eva command line.

mod eval_cmd;
mod flags;
mod jsonl;
mod logging;
mod model_cmd;
mod models;
mod plugin_args;
mod plugin_cmd;
mod plugin_io;
mod plugin_new;
mod plugin_source;
mod plugin_test;
mod progress;
mod replay_cmd;
mod report_cmd;
mod reward_args;
mod run_cmd;
mod run_config;
mod run_plugins;
mod score_cmd;
mod solving;
mod stats;
mod summary;
mod train_cmd;

use std::path::PathBuf;

use anyhow::Result;
use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};

/// eva: open-ended preference fine-tuning by asymmetric self-play.
#[derive(Parser)]
#[command(name = "eva-host", version, about)]
pub(crate) struct Cli {
    /// Log filter (tracing's env-filter syntax), e.g. `info` or `eva_plugin_runtime=debug`
    /// [default: warn; for `plugin call` and `plugin test`, warn and every record the
    /// plugin logs].
    #[arg(long, global = true, env = "EVA_LOG")]
    log: Option<String>,
    /// Where models run and train: cpu, or cuda / cuda:N (an NVIDIA GPU; needs an
    /// eva-host built with `--features cuda`). `--weights q8_0|native` are CPU formats.
    #[arg(long, global = true, env = "EVA_DEVICE", default_value = "cpu")]
    device: eva_engine::Placement,

    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Work with plugins: new, build, inspect, publish, pull; the contract for other
    /// languages.
    #[command(subcommand)]
    Plugin(plugin_cmd::PluginCommand),
    /// Work with models: fetch the embedded default, generate answers.
    #[command(subcommand)]
    Model(model_cmd::ModelCommand),
    /// Train a model on preference pairs (DPO, IPO, SimPO, ORPO, hinge; LoRA or full),
    /// with checkpoints and `--resume`.
    Train(Box<train_cmd::TrainArgs>),
    /// Run the eva loop: creator (info, sample, evolve) and solver (pairs, training) for
    /// each iteration, resumable after any phase.
    Run(Box<run_cmd::RunArgs>),
    /// Score prompt/answer rows with a reward backend (judge, classifier or plugin) and
    /// write them back with their rewards.
    Score(Box<score_cmd::ScoreArgs>),
    /// Compare a model with a baseline on held-out prompts: mean rewards, win rate and
    /// their confidence intervals.
    Eval(Box<eval_cmd::EvalArgs>),
    /// Write a self-contained HTML report of a run: plots per iteration, prompt drift,
    /// lineages of evolved prompts, the evaluation.
    Report(report_cmd::ReportArgs),
    /// Run the creator's phases (info, select, evolve, mix) of a finished run again with
    /// other plugins, over its recorded answers and rewards, without a model: seconds.
    Replay(Box<replay_cmd::ReplayArgs>),
}

/// Where eva keeps what it can rebuild or download again: `$EVA_CACHE_DIR`, else
/// `$XDG_CACHE_HOME/eva`, else `~/.cache/eva`, else `.eva-cache`.
pub fn cache_root() -> PathBuf {
    let var = |k| std::env::var_os(k).filter(|v| !v.is_empty()).map(PathBuf::from);
    var("EVA_CACHE_DIR")
        .or_else(|| var("XDG_CACHE_HOME").map(|d| d.join("eva")))
        .or_else(|| var("HOME").map(|d| d.join(".cache").join("eva")))
        .unwrap_or_else(|| PathBuf::from(".eva-cache"))
}

/// The plugin engine, with compiled components cached under [`cache_root`].
pub fn plugin_engine() -> Result<eva_plugin_runtime::PluginEngine> {
    let cache = eva_plugin_runtime::ComponentCache::new(Some(cache_root().join("components")));
    Ok(eva_plugin_runtime::PluginEngine::new(cache)?)
}

fn main() -> std::process::ExitCode {
    eva_engine::alloc::keep_freed_memory();
    let matches = flags::with_defaults(Cli::command()).get_matches();
    let cli = Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    let plugin_on_trial = matches!(cli.command, Command::Plugin(ref p) if p.shows_plugin_logs());
    let default_log = if plugin_on_trial { logging::PLUGIN_RECORDS } else { "warn" };
    logging::init(cli.log.as_deref().unwrap_or(default_log));
    match run(cli, &matches) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(target: logging::FAILURE_TARGET, "{e:#}");
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli, matches: &clap::ArgMatches) -> Result<()> {
    eva_engine::device::set_default(cli.device);
    // The settings' commands tell the flags given from the defaults by their matches.
    let sub = matches.subcommand().expect("a subcommand is required").1;
    match cli.command {
        Command::Plugin(cmd) => plugin_cmd::run(cmd),
        Command::Model(cmd) => model_cmd::run(cmd),
        Command::Train(args) => train_cmd::run(*args, sub),
        Command::Score(args) => score_cmd::run(*args, sub),
        Command::Eval(args) => eval_cmd::run(*args, sub),
        Command::Report(args) => report_cmd::run(args),
        Command::Run(args) => run_cmd::run(*args, sub),
        Command::Replay(args) => replay_cmd::run(*args),
    }
}
