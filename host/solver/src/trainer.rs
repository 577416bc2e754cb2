//! The training loop: micro-batches, gradient accumulation, AdamW, metrics, checkpoints
//! and exact resume.
//!
//! Everything a resumed run needs is in `OUT/checkpoint/`: the trainable tensors, the
//! optimizer moments and `state.json` (step, epoch, pairs consumed in the epoch). The data
//! order of an epoch is a pure function of (seed, epoch), so a resumed run replays exactly
//! the batches an uninterrupted one would have seen.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use candle_core::{DType, Device, Tensor};
use eva_engine::TrainableModel;
use eva_engine::logprobs::{Scored, shared_prompt_logprobs};
use rand::{RngExt, SeedableRng, rngs::StdRng};
use serde::{Deserialize, Serialize};

use crate::loss::{PairLogProbs, PreferenceLoss};
use crate::optim::{AdamW, AdamWConfig, Decay, clip_global_norm, learning_rate, master_dtype};
use crate::pairs::TokenizedPair;

#[derive(Debug, thiserror::Error)]
pub enum SolverError {
    #[error("{path}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{step} failed")]
    Tensor { step: &'static str, source: candle_core::Error },
    #[error("checkpoint {path}: {reason}")]
    Checkpoint { path: PathBuf, reason: String },
    #[error(transparent)]
    Engine(#[from] eva_engine::Error),
    #[error("{0}")]
    Config(String),
}

type Result<T> = std::result::Result<T, SolverError>;

trait Step<T> {
    fn step(self, step: &'static str) -> Result<T>;
}

impl<T> Step<T> for candle_core::Result<T> {
    fn step(self, step: &'static str) -> Result<T> {
        self.map_err(|source| SolverError::Tensor { step, source })
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SolverConfig {
    pub loss: PreferenceLoss,
    pub lr: f64,
    pub epochs: usize,
    /// Pairs per forward/backward pass.
    pub micro_batch: usize,
    /// Micro-batches per optimizer step.
    pub grad_accum: usize,
    /// Fraction of all steps spent warming the learning rate up.
    pub warmup_ratio: f64,
    pub decay: Decay,
    /// Clip the global gradient norm to this (0: no clipping).
    pub max_grad_norm: f64,
    pub adamw: AdamWConfig,
    pub seed: u64,
    /// Write a checkpoint every this many optimizer steps (and at the end).
    pub checkpoint_every: u64,
}

impl SolverConfig {
    /// Every value in its range, checked before any model loads: the message names the
    /// setting as the command line does.
    pub fn check(&self) -> std::result::Result<(), String> {
        let positive = |name: &str, v: f64| {
            if v.is_finite() && v > 0.0 { Ok(()) } else { Err(format!("--{name} must be a positive number, not {v}")) }
        };
        let at_least_one =
            |name: &str, v: u64| if v >= 1 { Ok(()) } else { Err(format!("--{name} must be at least 1")) };
        match self.loss {
            PreferenceLoss::Dpo { beta } | PreferenceLoss::Ipo { beta } | PreferenceLoss::Hinge { beta } => {
                positive("beta", beta)?
            }
            PreferenceLoss::Simpo { beta, gamma } => {
                positive("beta", beta)?;
                if !gamma.is_finite() {
                    return Err(format!("--gamma must be a finite number, not {gamma}"));
                }
            }
            PreferenceLoss::Orpo { lambda } => positive("lambda", lambda)?,
        }
        positive("lr", self.lr)?;
        at_least_one("epochs", self.epochs as u64)?;
        at_least_one("micro-batch", self.micro_batch as u64)?;
        at_least_one("grad-accum", self.grad_accum as u64)?;
        at_least_one("checkpoint-every", self.checkpoint_every)?;
        if !(0.0..1.0).contains(&self.warmup_ratio) {
            return Err(format!("--warmup-ratio must be in [0, 1), not {}", self.warmup_ratio));
        }
        for (name, v) in [("max-grad-norm", self.max_grad_norm), ("weight-decay", self.adamw.weight_decay)] {
            if !(v.is_finite() && v >= 0.0) {
                return Err(format!("--{name} must be a number >= 0, not {v}"));
            }
        }
        Ok(())
    }
}

impl Default for SolverConfig {
    /// eva's reference DPO settings, scaled for small models: β 0.1, learning rate 5e-5
    /// (what `eva-host train` and `run` default to), cosine, warm-up 0.1.
    fn default() -> Self {
        Self {
            loss: PreferenceLoss::Dpo { beta: 0.1 },
            lr: 5e-5,
            epochs: 1,
            micro_batch: 2,
            grad_accum: 1,
            warmup_ratio: 0.1,
            decay: Decay::Cosine,
            max_grad_norm: 1.0,
            adamw: AdamWConfig::default(),
            seed: 0,
            checkpoint_every: 10,
        }
    }
}

/// Where training stands; with the checkpointed tensors, all a resume needs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrainState {
    pub step: u64,
    pub epoch: usize,
    /// Pairs of the current epoch's order already trained on.
    pub position: usize,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepMetrics {
    pub step: u64,
    pub epoch: usize,
    pub loss: f64,
    /// Mean chosen − rejected implicit reward.
    pub margin: f64,
    pub chosen_reward: f64,
    pub rejected_reward: f64,
    /// Fraction of pairs with a positive margin.
    pub accuracy: f64,
    pub grad_norm: f64,
    pub lr: f64,
    pub tokens_per_s: f64,
}

/// Fill in each pair's reference log-probs with `model` (no gradients), batched.
pub fn compute_reference(
    model: &eva_engine::Transformer,
    pairs: &mut [TokenizedPair],
    max_batch_tokens: usize,
) -> Result<()> {
    let _span = tracing::info_span!("reference log-probs", pairs = pairs.len()).entered();
    let seqs: Vec<Scored<'_>> = pairs
        .iter()
        .flat_map(|p| {
            [Scored { prompt: &p.prompt, completion: &p.chosen }, Scored { prompt: &p.prompt, completion: &p.rejected }]
        })
        .collect();
    let lp = eva_engine::logprobs::sequence_logprobs(model, &seqs, max_batch_tokens)?;
    let sums: Vec<f64> = lp.iter().map(|s| s.per_token.iter().map(|&x| x as f64).sum()).collect();
    for (i, p) in pairs.iter_mut().enumerate() {
        p.ref_chosen = sums[2 * i];
        p.ref_rejected = sums[2 * i + 1];
    }
    Ok(())
}

/// [`compute_reference`], kept in `path` (JSONL): computed once per pair set, so that a
/// resumed run (`resume`) uses exactly the same reference log-probs. Cached values made
/// for other pairs are an error, never used.
pub fn cached_reference(
    model: &eva_engine::Transformer,
    pairs: &mut [TokenizedPair],
    path: &Path,
    resume: bool,
) -> Result<()> {
    let io = |source| SolverError::Io { path: path.to_owned(), source };
    if resume && path.is_file() {
        let text = std::fs::read_to_string(path).map_err(io)?;
        let saved: Vec<TokenizedPair> =
            text.lines()
                .map(serde_json::from_str)
                .collect::<std::result::Result<_, _>>()
                .map_err(|e| SolverError::Config(format!("{} is damaged: {e}", path.display())))?;
        let same = |s: &TokenizedPair, p: &TokenizedPair| {
            s.prompt == p.prompt && s.chosen == p.chosen && s.rejected == p.rejected
        };
        if saved.len() != pairs.len() || !saved.iter().zip(pairs.iter()).all(|(s, p)| same(s, p)) {
            return Err(SolverError::Config(format!(
                "{} was computed for other pairs: use another output directory",
                path.display()
            )));
        }
        pairs.clone_from_slice(&saved);
        return Ok(());
    }
    compute_reference(model, pairs, 4096)?;
    let text: String = pairs.iter().map(|p| serde_json::to_string(p).expect("json") + "\n").collect();
    eva_engine::atomic::write_file(path, text.as_bytes()).map_err(io)
}

/// The order of an epoch's pairs: a pure function of (seed, epoch).
pub fn epoch_order(seed: u64, epoch: usize, n: usize) -> Vec<usize> {
    let mut rng = StdRng::seed_from_u64(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ (epoch as u64 + 1));
    let mut order: Vec<usize> = (0..n).collect();
    for i in (1..n).rev() {
        let j = rng.random_range(0..=i);
        order.swap(i, j);
    }
    order
}

pub struct Trainer<'m> {
    model: &'m TrainableModel,
    pub config: SolverConfig,
    pairs: Vec<TokenizedPair>,
    out: PathBuf,
    optimizer: AdamW,
    pub state: TrainState,
}

impl<'m> Trainer<'m> {
    pub fn new(model: &'m TrainableModel, config: SolverConfig, pairs: Vec<TokenizedPair>, out: &Path) -> Result<Self> {
        if pairs.is_empty() {
            return Err(SolverError::Config("no pairs to train on".into()));
        }
        if config.micro_batch == 0 || config.grad_accum == 0 || config.epochs == 0 {
            return Err(SolverError::Config("micro-batch, gradient accumulation and epochs must be at least 1".into()));
        }
        std::fs::create_dir_all(out).map_err(|source| SolverError::Io { path: out.to_owned(), source })?;
        let optimizer = AdamW::new(&model.params, config.adamw).step("optimizer state")?;
        Ok(Self { model, config, pairs, out: out.to_owned(), optimizer, state: TrainState::default() })
    }

    pub fn pairs_per_step(&self) -> usize {
        self.config.micro_batch * self.config.grad_accum
    }

    pub fn steps_per_epoch(&self) -> u64 {
        self.pairs.len().div_ceil(self.pairs_per_step()) as u64
    }

    pub fn total_steps(&self) -> u64 {
        self.steps_per_epoch() * self.config.epochs as u64
    }

    pub fn checkpoint_dir(&self) -> PathBuf {
        self.out.join("checkpoint")
    }

    pub fn metrics_path(&self) -> PathBuf {
        self.out.join("metrics.jsonl")
    }

    /// Run to the end, calling `on_step` after every optimizer step.
    pub fn run(&mut self, on_step: &mut dyn FnMut(&StepMetrics)) -> Result<()> {
        let _span = tracing::info_span!("solver", pairs = self.pairs.len(), steps = self.total_steps()).entered();
        let total = self.total_steps();
        let warmup = (self.config.warmup_ratio * total as f64).ceil() as u64;
        if self.state.step == 0 {
            // A run from the start owns no earlier metrics (say, of a run killed before
            // its first checkpoint).
            let path = self.metrics_path();
            if path.exists() {
                std::fs::remove_file(&path).map_err(|source| SolverError::Io { path, source })?;
            }
        }
        while self.state.epoch < self.config.epochs {
            let order = epoch_order(self.config.seed, self.state.epoch, self.pairs.len());
            while self.state.position < order.len() {
                let end = (self.state.position + self.pairs_per_step()).min(order.len());
                let mut group: Vec<usize> = order[self.state.position..end].to_vec();
                // Similar lengths share a micro-batch: less padding.
                group.sort_by_key(|&i| (self.pairs[i].tokens(), i));
                let lr = learning_rate(self.config.lr, self.state.step, warmup, total, self.config.decay);
                let mut metrics = self.train_step(&group, lr)?;
                self.state.position = end;
                self.state.step += 1;
                metrics.step = self.state.step;
                self.log(&metrics)?;
                on_step(&metrics);
                if self.state.step.is_multiple_of(self.config.checkpoint_every.max(1)) {
                    self.save_checkpoint()?;
                }
            }
            self.state.epoch += 1;
            self.state.position = 0;
        }
        self.save_checkpoint()
    }

    fn train_step(&mut self, group: &[usize], lr: f64) -> Result<StepMetrics> {
        let started = Instant::now();
        let params = &self.model.params;
        let mut acc: Vec<Option<Tensor>> = vec![None; params.len()];
        let micro: Vec<&[usize]> = group.chunks(self.config.micro_batch).collect();
        let (mut loss_sum, mut margins, mut cw_sum, mut cl_sum, mut tokens) = (0f64, Vec::new(), 0f64, 0f64, 0usize);
        for batch in &micro {
            let out = self.micro_step(batch)?;
            // Each micro-batch's mean loss weighs by its share of the step's pairs.
            let weight = batch.len() as f64 / group.len() as f64;
            let grads = (&out.loss * weight).step("scaling the loss")?.backward().step("backward")?;
            for (i, (_, var)) in params.iter().enumerate() {
                if let Some(g) = grads.get(var) {
                    let g = g.to_dtype(master_dtype(var.dtype())).step("accumulating gradients")?;
                    acc[i] = Some(match acc[i].take() {
                        Some(a) => (a + g).step("accumulating gradients")?,
                        None => g,
                    });
                }
            }
            loss_sum += out.loss.to_dtype(DType::F64).step("loss")?.to_scalar::<f64>().step("loss")? * weight;
            let cw = out.chosen.to_dtype(DType::F64).step("rewards")?.to_vec1::<f64>().step("rewards")?;
            let cl = out.rejected.to_dtype(DType::F64).step("rewards")?.to_vec1::<f64>().step("rewards")?;
            cw_sum += cw.iter().sum::<f64>();
            cl_sum += cl.iter().sum::<f64>();
            margins.extend(cw.iter().zip(&cl).map(|(w, l)| w - l));
            tokens += batch.iter().map(|&i| self.pairs[i].tokens()).sum::<usize>();
        }
        let mut grads: Vec<Tensor> = acc
            .into_iter()
            .zip(params)
            .map(|(g, (_, v))| g.map_or_else(|| Tensor::zeros(v.shape(), master_dtype(v.dtype()), v.device()), Ok))
            .collect::<candle_core::Result<_>>()
            .step("gradients")?;
        let grad_norm = clip_global_norm(&mut grads, self.config.max_grad_norm).step("clipping")?;
        if !grad_norm.is_finite() {
            return Err(SolverError::Config(format!(
                "gradient norm is {grad_norm} at step {}: stopping before the weights are damaged",
                self.state.step + 1
            )));
        }
        self.optimizer.step(params, &grads, lr).step("optimizer step")?;
        let n = group.len() as f64;
        Ok(StepMetrics {
            step: 0,
            epoch: self.state.epoch,
            loss: loss_sum,
            margin: margins.iter().sum::<f64>() / n,
            chosen_reward: cw_sum / n,
            rejected_reward: cl_sum / n,
            accuracy: margins.iter().filter(|&&m| m > 0.0).count() as f64 / n,
            grad_norm,
            lr,
            tokens_per_s: tokens as f64 / started.elapsed().as_secs_f64(),
        })
    }

    fn micro_step(&self, batch: &[usize]) -> Result<MicroOut> {
        let pairs: Vec<&TokenizedPair> = batch.iter().map(|&i| &self.pairs[i]).collect();
        let model = &self.model.model;
        // Each pair's prompt is computed once for both of its answers.
        let sums = pairs
            .iter()
            .map(|p| shared_prompt_logprobs(model, &p.prompt, &[&p.chosen, &p.rejected]))
            .collect::<std::result::Result<Vec<_>, _>>()?;
        let sums = Tensor::stack(&sums, 0).step("stacking log-probs")?;
        let dtype = sums.dtype();
        let dev = sums.device();
        let col = |v: Vec<f64>| Tensor::new(v, dev).and_then(|t| t.to_dtype(dtype));
        let (lw, ll) = (sums.get_on_dim(1, 0).step("chosen")?, sums.get_on_dim(1, 1).step("rejected")?);
        let rw = col(pairs.iter().map(|p| p.ref_chosen).collect()).step("reference")?;
        let rl = col(pairs.iter().map(|p| p.ref_rejected).collect()).step("reference")?;
        let len_w = col(pairs.iter().map(|p| p.chosen.len() as f64).collect()).step("lengths")?;
        let len_l = col(pairs.iter().map(|p| p.rejected.len() as f64).collect()).step("lengths")?;
        let out = self
            .config
            .loss
            .compute(&PairLogProbs { lw: &lw, ll: &ll, rw: &rw, rl: &rl, len_w: &len_w, len_l: &len_l })
            .step("loss")?;
        Ok(MicroOut { loss: out.loss, chosen: out.chosen_rewards, rejected: out.rejected_rewards })
    }

    fn log(&self, m: &StepMetrics) -> Result<()> {
        let path = self.metrics_path();
        let io = |source| SolverError::Io { path: path.clone(), source };
        let mut f = std::fs::OpenOptions::new().create(true).append(true).open(&path).map_err(io)?;
        writeln!(f, "{}", serde_json::to_string(m).expect("metrics serialise")).map_err(io)?;
        tracing::info!(
            step = m.step,
            loss = m.loss,
            margin = m.margin,
            accuracy = m.accuracy,
            lr = m.lr,
            "solver step"
        );
        Ok(())
    }

    /// Write `OUT/checkpoint` atomically: into a fresh sibling, then swapped in.
    pub fn save_checkpoint(&self) -> Result<()> {
        let _span = tracing::debug_span!("checkpoint", step = self.state.step).entered();
        let dir = self.checkpoint_dir();
        let io = |path: &Path| {
            let path = path.to_owned();
            move |source| SolverError::Io { path: path.clone(), source }
        };
        let tmp = eva_engine::atomic::temp_dir_in(&self.out, ".checkpoint-").map_err(io(&self.out))?;
        let params: HashMap<String, Tensor> =
            self.model.params.iter().map(|(n, v)| (n.clone(), v.as_tensor().clone())).collect();
        save(&params, &tmp.path().join("params.safetensors"))?;
        save(&self.optimizer.state(&self.model.params), &tmp.path().join("optimizer.safetensors"))?;
        let state = serde_json::json!({"state": self.state, "optimizer_t": self.optimizer.t, "config": self.config});
        let state_path = tmp.path().join("state.json");
        std::fs::write(&state_path, serde_json::to_string_pretty(&state).expect("json")).map_err(io(&state_path))?;
        let kept = tmp.keep();
        eva_engine::atomic::swap_dir(&kept, &dir).map_err(io(&dir))
    }

    /// Continue from `OUT/checkpoint` if there is one; returns whether it did. Metrics
    /// lines past the checkpoint (written before a kill) are dropped.
    pub fn resume(&mut self) -> Result<bool> {
        let mut dir = self.checkpoint_dir();
        if !dir.join("state.json").is_file() {
            // Killed between the two renames of a checkpoint swap.
            dir = eva_engine::atomic::backup_of(&dir);
            if !dir.join("state.json").is_file() {
                return Ok(false);
            }
        }
        let bad = |reason: String| SolverError::Checkpoint { path: dir.clone(), reason };
        let text = std::fs::read_to_string(dir.join("state.json")).map_err(|e| bad(e.to_string()))?;
        let json: serde_json::Value = serde_json::from_str(&text).map_err(|e| bad(e.to_string()))?;
        let state: TrainState = serde_json::from_value(json["state"].clone()).map_err(|e| bad(e.to_string()))?;
        let saved: SolverConfig = serde_json::from_value(json["config"].clone()).map_err(|e| bad(e.to_string()))?;
        if saved != self.config {
            return Err(bad("it was written with other solver settings; resume with the same ones".into()));
        }
        let device = self.model.device().clone();
        let params = load(&dir.join("params.safetensors"), &device).map_err(|e| bad(e.to_string()))?;
        for (name, var) in &self.model.params {
            let t = params.get(name).ok_or_else(|| bad(format!("lacks `{name}`")))?;
            if t.dtype() != var.dtype() {
                return Err(bad(format!(
                    "`{name}` was trained in {:?}, this model is {:?}: resume with the same precision",
                    t.dtype(),
                    var.dtype()
                )));
            }
            var.set(t).map_err(|e| bad(format!("`{name}`: {e}")))?;
        }
        let opt = load(&dir.join("optimizer.safetensors"), &device).map_err(|e| bad(e.to_string()))?;
        self.optimizer
            .load_state(&self.model.params, &opt, json["optimizer_t"].as_u64().unwrap_or(state.step))
            .map_err(bad)?;
        self.state = state;
        self.truncate_metrics()?;
        tracing::info!(step = state.step, epoch = state.epoch, "resumed");
        Ok(true)
    }

    fn truncate_metrics(&self) -> Result<()> {
        let path = self.metrics_path();
        let Ok(text) = std::fs::read_to_string(&path) else { return Ok(()) };
        let kept: String = text
            .lines()
            .filter(|l| serde_json::from_str::<StepMetrics>(l).is_ok_and(|m| m.step <= self.state.step))
            .map(|l| format!("{l}\n"))
            .collect();
        let tmp = path.with_extension("jsonl.tmp");
        std::fs::write(&tmp, kept)
            .and_then(|_| std::fs::rename(&tmp, &path))
            .map_err(|source| SolverError::Io { path, source })
    }
}

struct MicroOut {
    loss: Tensor,
    chosen: Tensor,
    rejected: Tensor,
}

fn save(tensors: &HashMap<String, Tensor>, path: &Path) -> Result<()> {
    candle_core::safetensors::save(tensors, path)
        .map_err(|e| SolverError::Checkpoint { path: path.to_owned(), reason: e.to_string() })?;
    // safetensors writes through a tempfile (0600): a checkpoint is not a secret.
    eva_engine::atomic::make_ordinary(path).map_err(|source| SolverError::Io { path: path.to_owned(), source })
}

fn load(path: &Path, device: &Device) -> candle_core::Result<HashMap<String, Tensor>> {
    candle_core::safetensors::load(path, device)
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;
    use eva_engine::{Adaptation, Architecture, ModelConfig, Weights};
    use std::os::unix::fs::PermissionsExt;

    fn mode(path: &Path) -> u32 {
        std::fs::metadata(path).unwrap().permissions().mode() & 0o7777
    }

    #[test]
    fn a_checkpoint_directory_honours_the_umask() {
        let config = ModelConfig::tiny(Architecture::Llama);
        let weights = Weights::random(&config, 1, &Device::Cpu).unwrap();
        let model = TrainableModel::new(&config, &weights, Adaptation::Full, 0).unwrap();
        let pair = TokenizedPair {
            prompt: vec![1, 2],
            chosen: vec![3],
            rejected: vec![4],
            ref_chosen: 0.0,
            ref_rejected: 0.0,
        };
        let out = tempfile::tempdir().unwrap();
        // What the umask gives an ordinary new file and directory here.
        std::fs::write(out.path().join("plain"), "").unwrap();
        std::fs::create_dir(out.path().join("plain-dir")).unwrap();
        let (file, folder) = (mode(&out.path().join("plain")), mode(&out.path().join("plain-dir")));
        let trainer = Trainer::new(&model, SolverConfig::default(), vec![pair], out.path()).unwrap();
        trainer.save_checkpoint().unwrap();
        let dir = trainer.checkpoint_dir();
        assert_eq!(mode(&dir), folder);
        for name in ["params.safetensors", "optimizer.safetensors", "state.json"] {
            assert_eq!(mode(&dir.join(name)), file, "{name}");
        }
    }

    #[test]
    fn settings_out_of_range_are_named() {
        assert_eq!(SolverConfig::default().check(), Ok(()));
        let bad = |edit: &dyn Fn(&mut SolverConfig)| {
            let mut c = SolverConfig::default();
            edit(&mut c);
            c.check().unwrap_err()
        };
        assert_eq!(bad(&|c| c.lr = 0.0), "--lr must be a positive number, not 0");
        assert_eq!(bad(&|c| c.lr = f64::NAN), "--lr must be a positive number, not NaN");
        assert_eq!(bad(&|c| c.micro_batch = 0), "--micro-batch must be at least 1");
        assert_eq!(bad(&|c| c.warmup_ratio = 1.0), "--warmup-ratio must be in [0, 1), not 1");
        assert_eq!(bad(&|c| c.loss = PreferenceLoss::Dpo { beta: -0.1 }), "--beta must be a positive number, not -0.1");
        assert_eq!(bad(&|c| c.adamw.weight_decay = -1.0), "--weight-decay must be a number >= 0, not -1");
    }
}
