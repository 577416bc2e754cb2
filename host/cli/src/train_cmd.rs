//! `eva-host train`: the solver alone, on a preference JSONL file.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use clap::Args;

use crate::models::ModelArgs;
use crate::progress::Bars;
use crate::solving::SolverFlags;
use eva_loop::candle::train_pairs;
use eva_loop::settings::SolverSettings;

#[derive(Args)]
pub struct TrainArgs {
    #[command(flatten)]
    model: ModelArgs,
    /// Preference pairs, JSONL: {"prompt", "chosen", "rejected"}, each a string or a list
    /// of chat messages (TRL's format).
    #[arg(long)]
    pairs: PathBuf,
    /// Run directory: metrics.jsonl, reference.jsonl, checkpoint/, model/.
    #[arg(long)]
    out: PathBuf,
    /// Continue from OUT/checkpoint (same settings) instead of starting over.
    #[arg(long)]
    resume: bool,
    #[command(flatten)]
    solver: SolverFlags,
    /// Save OUT/model as a PEFT adapter instead of merged weights.
    #[arg(long)]
    save_adapter: bool,
}

pub fn run(args: TrainArgs, matches: &clap::ArgMatches) -> Result<()> {
    let solver = crate::flags::settings(&SolverSettings::default(), &args.solver, matches)?;
    solver.check()?;
    let model = args.model.load()?;
    let pairs = eva_solver::read_pairs(&args.pairs)?;
    if args.resume {
        if !args.out.join("checkpoint").exists() {
            tracing::warn!("no checkpoint in {}: starting from the beginning", args.out.display());
        }
    } else if args.out.join("checkpoint").exists() {
        bail!(
            "{} already holds a checkpoint: pass --resume to continue it, or choose another --out",
            args.out.display()
        );
    }
    let name = |i: usize| format!("{}: pair {}", args.pairs.display(), i + 1);
    let trainable = train_pairs(&model, &pairs, &name, &solver, &args.out, args.resume, &Bars)?;
    let out = args.out.join("model");
    trainable
        .save_hf(&out, Some(&model.tokenizer), model.chat_template.as_ref(), args.save_adapter)
        .with_context(|| format!("saving {}", out.display()))?;
    println!("{}", out.display());
    Ok(())
}
