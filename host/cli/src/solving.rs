//! The solver as the commands run it: its flags ([`SolverArgs`], shared by `train` and
//! `run`) and training a copy of a model on preference pairs, with progress and resume.

use std::path::Path;

use anyhow::{Context, Result, bail};
use clap::Args;
use eva_engine::{Adaptation, LanguageModel, LoraConfig, Precision, TrainableModel};
use eva_solver::{AdamWConfig, Decay, PreferenceLoss, PreferencePair, SolverConfig, Trainer};

/// How the solver trains: loss, optimizer, schedule, LoRA.
#[derive(Args, Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct SolverArgs {
    /// dpo, ipo, simpo, orpo or hinge.
    #[arg(long, default_value = "dpo")]
    loss: String,
    /// β of DPO/IPO/SimPO/hinge (default 0.1; SimPO 2.0).
    #[arg(long)]
    beta: Option<f64>,
    /// SimPO's target margin γ (default 1.0).
    #[arg(long)]
    gamma: Option<f64>,
    /// ORPO's weight λ of the odds-ratio term (default 0.1).
    #[arg(long)]
    lambda: Option<f64>,
    /// Peak learning rate.
    #[arg(long, default_value_t = 5e-5)]
    lr: f64,
    #[arg(long, default_value_t = 1)]
    epochs: usize,
    /// Pairs per forward/backward pass.
    #[arg(long, default_value_t = 2)]
    micro_batch: usize,
    /// Micro-batches per optimizer step.
    #[arg(long, default_value_t = 1)]
    grad_accum: usize,
    #[arg(long, default_value_t = 0.1)]
    warmup_ratio: f64,
    /// cosine, linear or constant decay after warm-up.
    #[arg(long, default_value = "cosine")]
    decay: String,
    /// Clip the global gradient norm (0: off).
    #[arg(long, default_value_t = 1.0)]
    max_grad_norm: f64,
    #[arg(long, default_value_t = 0.0)]
    weight_decay: f64,
    /// Seed of the data order and of LoRA's initialisation.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Checkpoint every N optimizer steps (and at the end).
    #[arg(long, default_value_t = 10)]
    checkpoint_every: u64,
    /// Train every weight instead of LoRA adapters.
    #[arg(long)]
    full: bool,
    #[arg(long, default_value_t = 8)]
    lora_rank: usize,
    #[arg(long, default_value_t = 16.0)]
    lora_alpha: f64,
    /// Comma-separated projections that get adapters.
    #[arg(long, default_value = "q_proj,v_proj")]
    lora_targets: String,
    /// Precision of the trainable copy: f32, or bf16 on a GPU (`--device cuda`; the
    /// optimizer keeps f32 master weights and moments, log-probs are summed in f32).
    #[arg(long, default_value = "f32")]
    #[serde(default)]
    pub precision: Precision,
}

impl SolverArgs {
    fn loss(&self) -> Result<PreferenceLoss> {
        let mut loss = PreferenceLoss::by_name(&self.loss)
            .with_context(|| format!("unknown loss `{}` (dpo, ipo, simpo, orpo, hinge)", self.loss))?;
        match &mut loss {
            PreferenceLoss::Dpo { beta } | PreferenceLoss::Ipo { beta } | PreferenceLoss::Hinge { beta } => {
                *beta = self.beta.unwrap_or(*beta)
            }
            PreferenceLoss::Simpo { beta, gamma } => {
                *beta = self.beta.unwrap_or(*beta);
                *gamma = self.gamma.unwrap_or(*gamma);
            }
            PreferenceLoss::Orpo { lambda } => *lambda = self.lambda.unwrap_or(*lambda),
        }
        Ok(loss)
    }

    pub fn solver_config(&self) -> Result<SolverConfig> {
        let decay = match self.decay.as_str() {
            "cosine" => Decay::Cosine,
            "linear" => Decay::Linear,
            "constant" => Decay::Constant,
            other => bail!("unknown decay `{other}` (cosine, linear, constant)"),
        };
        Ok(SolverConfig {
            loss: self.loss()?,
            lr: self.lr,
            epochs: self.epochs,
            micro_batch: self.micro_batch,
            grad_accum: self.grad_accum,
            warmup_ratio: self.warmup_ratio,
            decay,
            max_grad_norm: self.max_grad_norm,
            adamw: AdamWConfig { weight_decay: self.weight_decay, ..Default::default() },
            seed: self.seed,
            checkpoint_every: self.checkpoint_every,
        })
    }

    /// Every solver setting checked, with no model loaded: a wrong loss name, LoRA target
    /// or out-of-range value fails here, before a run's first phase.
    pub fn check(&self) -> Result<()> {
        self.solver_config()?.check().map_err(anyhow::Error::msg)?;
        if let Adaptation::Lora(lora) = self.adaptation() {
            lora.check()?;
        }
        Ok(())
    }

    pub fn adaptation(&self) -> Adaptation {
        if self.full {
            return Adaptation::Full;
        }
        let targets = self.lora_targets.split(',').map(|t| t.trim().to_owned()).filter(|t| !t.is_empty()).collect();
        Adaptation::Lora(LoraConfig { rank: self.lora_rank, alpha: self.lora_alpha, targets })
    }
}

/// Train a copy of `model` on `pairs` in `out` (metrics.jsonl, reference.jsonl,
/// checkpoint/), continuing its checkpoint when `resume`; `name(i)` names pair i in errors.
pub fn train_pairs(
    model: &LanguageModel,
    pairs: &[PreferencePair],
    name: &dyn Fn(usize) -> String,
    solver: &SolverArgs,
    out: &Path,
    resume: bool,
) -> Result<TrainableModel> {
    let config = solver.solver_config()?;
    let mut tokenized = pairs
        .iter()
        .enumerate()
        .map(|(i, p)| {
            eva_solver::tokenize(p, &model.tokenizer, model.chat_template.as_ref())
                .map_err(|e| anyhow::anyhow!("{}: {e}", name(i)))
        })
        .collect::<Result<Vec<_>>>()?;
    // Built first: a precision the device cannot train in is refused before any writing.
    let trainable = model
        .trainable_in(solver.adaptation(), solver.seed, solver.precision)
        .context("building the trainable model")?;
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    if config.loss.needs_reference() {
        // The reference is the policy before training in the f32 weights the solver
        // trains; a quantized inference copy would shift every log-ratio.
        let reference = model.exact_transformer().context("building the f32 reference model")?;
        eva_solver::cached_reference(&reference, &mut tokenized, &out.join("reference.jsonl"), resume)?;
    }
    let mut trainer = Trainer::new(&trainable, config, tokenized, out)?;
    if resume {
        trainer.resume()?;
    }
    let bar = crate::progress::bar(trainer.total_steps(), "training", "steps");
    bar.set_position(trainer.state.step);
    trainer.run(&mut |m| {
        bar.set_position(m.step);
        bar.set_message(format!("training: loss {:.4} margin {:+.3} acc {:.2}", m.loss, m.margin, m.accuracy));
    })?;
    bar.finish_and_clear();
    drop(trainer);
    Ok(trainable)
}
