//! A run's configuration: the loop's settings (flags of `eva-host run`, keys of its
//! `--config` file) and `RUN_DIR/config.toml`, what a resume needs; and the models a run
//! trained, for the commands that read a run directory (`eval`).

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use clap::Args;
use eva_engine::WeightFormat;
use eva_loop::layout::{IterationSummary, RunStore};
use serde::{Deserialize, Serialize};

use crate::plugin_args::PluginArgs;
use crate::plugin_source::PluginSource;
use crate::reward_args::RewardArgs;
use crate::solving::SolverArgs;

/// The loop's settings: every key of `--config FILE` (TOML, kebab-case or snake_case) is
/// one of these flags, and a flag given on the command line wins over the file.
#[derive(Args, Debug, Clone, Serialize, Deserialize)]
pub struct LoopSettings {
    /// eva iterations (creator + solver each).
    #[arg(long, default_value_t = 2)]
    pub iterations: usize,
    /// Answers sampled per prompt (n).
    #[arg(long, default_value_t = 4)]
    pub answers: usize,
    /// Longest answer, in tokens.
    #[arg(long, default_value_t = 128)]
    pub max_new_tokens: usize,
    /// Sampling temperature of the answers.
    #[arg(long, default_value_t = 0.7)]
    pub temperature: f32,
    /// How the policy's weights are stored for sampling answers and evolutions: f32
    /// (exact: the weights the solver trains) or q8_0 (8 bits per weight, eva's own
    /// kernels: about 3x faster sampling on x86 CPUs with AVX-512 VNNI, a little faster
    /// with AVX2, from a policy rounded to 8 bits; CPU only). Training uses f32 (see
    /// `--precision`).
    #[arg(long, default_value = "f32")]
    #[serde(default)]
    pub weights: WeightFormat,
    /// Nucleus mass of the answers' sampling.
    #[arg(long, default_value_t = 0.9)]
    pub top_p: f32,
    /// Fraction of X_t the sampler picks for evolution.
    #[arg(long, default_value_t = 0.25)]
    pub sample_fraction: f64,
    /// The most tokens one of the evolver's generate requests may produce.
    #[arg(long, default_value_t = 256)]
    pub evolve_max_tokens: u32,
    /// Share of X'_t drawn uniformly from the old prompts (the buffer); the rest are
    /// evolved prompts.
    #[arg(long, default_value_t = 0.2)]
    pub buffer_fraction: f64,
    /// Jaccard similarity of word 3-shingles at which an evolved prompt counts as a
    /// near-duplicate of one already seen (1 keeps all but exact duplicates).
    #[arg(long, default_value_t = 0.8)]
    pub dedup_threshold: f64,
    /// The classic fixed-prompt baseline with the same budget: no info, sample or evolve;
    /// X'_t = X_t.
    #[arg(long)]
    pub no_evolve: bool,
    #[command(flatten)]
    #[serde(flatten)]
    pub solver: SolverArgs,
    #[command(flatten)]
    #[serde(flatten)]
    pub reward: RewardArgs,
}

impl LoopSettings {
    /// Every setting in its range, the solver's and the reward's included, before any
    /// model or plugin loads and before anything is written.
    pub fn check(&self) -> Result<()> {
        if self.answers < 2 {
            bail!("--answers must be at least 2: pairs need two answers to compare");
        }
        if !(0.0..1.0).contains(&self.buffer_fraction) || !(0.0..=1.0).contains(&self.sample_fraction) {
            bail!("--buffer-fraction must be in [0, 1) and --sample-fraction in [0, 1]");
        }
        if !(self.temperature.is_finite() && self.temperature >= 0.0) {
            bail!("--temperature must be a number >= 0, not {}", self.temperature);
        }
        if !(self.top_p > 0.0 && self.top_p <= 1.0) {
            bail!("--top-p must be in (0, 1], not {}", self.top_p);
        }
        if self.max_new_tokens == 0 || self.evolve_max_tokens == 0 {
            bail!("--max-new-tokens and --evolve-max-tokens must be at least 1");
        }
        if !(0.0..=1.0).contains(&self.dedup_threshold) {
            bail!("--dedup-threshold must be in [0, 1], not {}", self.dedup_threshold);
        }
        self.solver.check()
    }
}

/// What `RUN_DIR/config.toml` records: everything a resume needs.
#[derive(Debug, Serialize, Deserialize)]
pub struct RunConfig {
    pub model: Option<PathBuf>,
    /// `--creator-model`: the model behind the evolver's `generate`; the policy when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub creator_model: Option<PathBuf>,
    pub plugins: Vec<PluginSource>,
    pub plugins_dir: PathBuf,
    /// The plugins' settings (`--plugin-config`, limits, ...); a config file is kept by
    /// path.
    #[serde(default)]
    pub plugin_args: PluginArgs,
    pub settings: LoopSettings,
    /// What `--resume --reconfigure` and `--resume --replace` changed, oldest first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub changes: Vec<ConfigChange>,
}

/// One recorded change of a run's configuration.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ConfigChange {
    /// The first phase that ran with it (`iter-T/PHASE`).
    pub from: String,
    /// The settings whose values changed, `key: old -> new`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub settings: Vec<String>,
    /// The plugins replaced, `role: old -> new`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub plugins: Vec<String>,
    /// The names of the plugins replaced (and not loaded under the same name): settings
    /// that name them stay, unused.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub retired: Vec<String>,
}

/// The models of a finished or partly finished run.
pub struct TrainedModels {
    /// The newest θ_{t+1}.
    pub last: PathBuf,
    /// The policy the run started from (`None`: the embedded default).
    pub base: Option<PathBuf>,
}

/// The models of the run in `dir`, or `None` when `dir` is not a run directory.
pub fn trained_models(dir: &Path) -> Result<Option<TrainedModels>> {
    let config_path = dir.join("config.toml");
    if !config_path.is_file() {
        return Ok(None);
    }
    let text = std::fs::read_to_string(&config_path).with_context(|| format!("reading {}", config_path.display()))?;
    let config: RunConfig = toml::from_str(&text).with_context(|| format!("{} is damaged", config_path.display()))?;
    let store = RunStore { dir: dir.to_owned() };
    let summaries: Vec<IterationSummary> = store.read(&dir.join("metrics.jsonl"))?.unwrap_or_default();
    let mut last = None;
    for m in &summaries {
        last = store.trained_model(m)?.or(last);
    }
    let last = last.with_context(|| format!("{}: no iteration has finished training yet", dir.display()))?;
    Ok(Some(TrainedModels { last, base: config.model }))
}
