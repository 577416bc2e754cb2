//! `eva-host`: the eva command line.

mod plugin_args;
mod plugin_cmd;

use anyhow::Result;
use clap::{Parser, Subcommand};

/// eva: open-ended preference fine-tuning by asymmetric self-play.
#[derive(Parser)]
#[command(name = "eva-host", version, about)]
struct Cli {
    /// Log filter (tracing's env-filter syntax), e.g. `info` or `eva_plugin_runtime=debug`.
    #[arg(long, global = true, env = "EVA_LOG", default_value = "warn")]
    log: String,

    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Work with plugin components: inspect, build.
    #[command(subcommand)]
    Plugin(plugin_cmd::PluginCommand),
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_new(&cli.log).unwrap_or_else(|_| "warn".into()))
        .with_writer(std::io::stderr)
        .init();
    match run(cli) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Plugin(cmd) => plugin_cmd::run(cmd),
    }
}
