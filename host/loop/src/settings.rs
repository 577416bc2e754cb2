//! A run's settings, typed and checked, with one default each ([`Default`] is the only
//! table of defaults: `eva-host` shows it in `--help`). Settings come as key/value maps
//! (a `--config` file, the flags given, a run's `config.toml`) laid over a base with
//! [`Overlay`]: an unknown key or a value of the wrong type is refused by name, and
//! [`LoopSettings::check`] refuses out-of-range values, before any model or plugin loads.
//! Keys are snake_case here; files may spell them kebab-case, as the flags are.

use std::path::PathBuf;

use eva_engine::{Adaptation, LoraConfig, Precision, WeightFormat};
use eva_reward::Normalization;
use eva_solver::{AdamWConfig, Decay, PreferenceLoss, SolverConfig};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// A setting that cannot be used; the message names it as the command line does.
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    #[error("{origin}: unknown setting `{key}` (see eva-host run --help)")]
    UnknownKey { origin: String, key: String },
    #[error("{origin}: {key}: {source}")]
    WrongType { origin: String, key: String, source: serde_json::Error },
    #[error("{0}")]
    OutOfRange(String),
}

pub type Result<T, E = SettingsError> = std::result::Result<T, E>;

/// The loop's settings: iterations, sampling, the creator's fractions, and the solver's
/// and the reward's settings (flattened: one namespace of keys).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct LoopSettings {
    /// eva iterations (creator + solver each).
    pub iterations: usize,
    /// Answers sampled per prompt (n), at least 2.
    pub answers: usize,
    /// Longest answer, in tokens.
    pub max_new_tokens: usize,
    /// Sampling temperature of the answers.
    pub temperature: f32,
    /// How the policy's weights are stored for sampling (training uses `precision`).
    pub weights: WeightFormat,
    /// Nucleus mass of the answers' sampling, in (0, 1].
    pub top_p: f32,
    /// Fraction of X_t the sampler picks for evolution, in [0, 1].
    pub sample_fraction: f64,
    /// The most tokens one of the evolver's generate requests may produce.
    pub evolve_max_tokens: u32,
    /// Share of X'_t drawn from the old prompts, in [0, 1).
    pub buffer_fraction: f64,
    /// Jaccard similarity of word 3-shingles at which an evolved prompt is a
    /// near-duplicate, in [0, 1].
    pub dedup_threshold: f64,
    /// The fixed-prompt baseline: no info, sample or evolve; X'_t = X_t.
    pub no_evolve: bool,
    /// Prompts answered and scored per commit of an answer phase (a kill loses at most
    /// one chunk's work).
    pub phase_chunk: usize,
    /// Who trains θ_t into θ_{t+1}: eva's own trainer on this machine, or an external
    /// command (`trainer_command`).
    pub trainer: TrainerKind,
    /// The external trainer's command, run by `sh -c` with the pairs, θ_t and where to
    /// write θ_{t+1} in `EVA_*` variables (docs/external-trainer.md).
    pub trainer_command: Option<String>,
    #[serde(flatten)]
    pub solver: SolverSettings,
    #[serde(flatten)]
    pub reward: RewardSettings,
}

impl Default for LoopSettings {
    fn default() -> Self {
        LoopSettings {
            iterations: 2,
            answers: 4,
            max_new_tokens: 128,
            temperature: 0.7,
            weights: WeightFormat::F32,
            top_p: 0.9,
            sample_fraction: 0.25,
            evolve_max_tokens: 256,
            buffer_fraction: 0.2,
            dedup_threshold: 0.8,
            no_evolve: false,
            phase_chunk: 256,
            trainer: TrainerKind::Local,
            trainer_command: None,
            solver: SolverSettings::default(),
            reward: RewardSettings::default(),
        }
    }
}

/// A preference loss, by name (its coefficients are `beta`, `gamma`, `lambda`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LossName {
    Dpo,
    Ipo,
    Simpo,
    Orpo,
    Hinge,
}

/// How the solver trains: loss, optimizer, schedule, LoRA.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct SolverSettings {
    pub loss: LossName,
    /// β of DPO/IPO/SimPO/hinge (`None`: the loss's own, 0.1; SimPO 2.0).
    pub beta: Option<f64>,
    /// SimPO's target margin γ (`None`: 1.0).
    pub gamma: Option<f64>,
    /// ORPO's weight λ of the odds-ratio term (`None`: 0.1).
    pub lambda: Option<f64>,
    /// Peak learning rate.
    pub lr: f64,
    pub epochs: usize,
    /// Pairs per forward/backward pass.
    pub micro_batch: usize,
    /// Micro-batches per optimizer step.
    pub grad_accum: usize,
    pub warmup_ratio: f64,
    pub decay: Decay,
    /// Clip of the global gradient norm (0: off).
    pub max_grad_norm: f64,
    pub weight_decay: f64,
    /// Seed of the data order, LoRA's initialisation and the loop's sampling.
    pub seed: u64,
    /// Checkpoint every N optimizer steps (and at the end).
    pub checkpoint_every: u64,
    /// Train every weight instead of LoRA adapters.
    pub full: bool,
    pub lora_rank: usize,
    pub lora_alpha: f64,
    /// Comma-separated projections that get adapters.
    pub lora_targets: String,
    /// Precision of the trainable copy.
    pub precision: Precision,
}

/// Who trains.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TrainerKind {
    /// eva's candle trainer, in this process.
    Local,
    /// A command the user gives (TRL, OpenRLHF, ... under accelerate or DeepSpeed).
    External,
}

impl std::str::FromStr for TrainerKind {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        serde_json::from_value(Value::String(s.into())).map_err(|_| format!("`{s}`: local or external"))
    }
}

impl Default for SolverSettings {
    fn default() -> Self {
        SolverSettings {
            loss: LossName::Dpo,
            beta: None,
            gamma: None,
            lambda: None,
            lr: 5e-5,
            epochs: 1,
            micro_batch: 2,
            grad_accum: 1,
            warmup_ratio: 0.1,
            decay: Decay::Cosine,
            max_grad_norm: 1.0,
            weight_decay: 0.0,
            seed: 0,
            checkpoint_every: 10,
            full: false,
            lora_rank: 8,
            lora_alpha: 16.0,
            lora_targets: "q_proj,v_proj".into(),
            precision: Precision::F32,
        }
    }
}

impl SolverSettings {
    pub fn loss(&self) -> PreferenceLoss {
        let name = serde_json::to_value(self.loss).expect("a name");
        let mut loss = PreferenceLoss::by_name(name.as_str().expect("a string")).expect("every LossName is a loss");
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
        loss
    }

    pub fn solver_config(&self) -> SolverConfig {
        SolverConfig {
            loss: self.loss(),
            lr: self.lr,
            epochs: self.epochs,
            micro_batch: self.micro_batch,
            grad_accum: self.grad_accum,
            warmup_ratio: self.warmup_ratio,
            decay: self.decay,
            max_grad_norm: self.max_grad_norm,
            adamw: AdamWConfig { weight_decay: self.weight_decay, ..Default::default() },
            seed: self.seed,
            checkpoint_every: self.checkpoint_every,
        }
    }

    pub fn adaptation(&self) -> Adaptation {
        if self.full {
            return Adaptation::Full;
        }
        let targets = self.lora_targets.split(',').map(|t| t.trim().to_owned()).filter(|t| !t.is_empty()).collect();
        Adaptation::Lora(LoraConfig { rank: self.lora_rank, alpha: self.lora_alpha, targets })
    }

    /// Every solver setting in its range, with no model loaded.
    pub fn check(&self) -> Result<()> {
        self.solver_config().check().map_err(SettingsError::OutOfRange)?;
        if let Adaptation::Lora(lora) = self.adaptation() {
            lora.check().map_err(|e| SettingsError::OutOfRange(format!("--lora-*: {e}")))?;
        }
        Ok(())
    }
}

/// The reward backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RewardKind {
    /// An instruct model rates each answer 1-N; the reward is its expected rating.
    Judge,
    /// A Hugging Face *ForSequenceClassification reward model.
    Classifier,
    /// A Wasm component of the `reward` world.
    Plugin,
}

/// Which reward backend scores answers, and how.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct RewardSettings {
    pub reward: RewardKind,
    /// The judge's model (`None`: the embedded default) or the classifier's directory.
    pub reward_model: Option<PathBuf>,
    /// The reward plugin: a component file or an `oci://` reference.
    pub reward_plugin: Option<String>,
    /// Which output of a multi-label classifier head is the reward.
    pub reward_label: Option<usize>,
    /// A Jinja template file replacing the judge's rubric.
    pub judge_rubric: Option<PathBuf>,
    /// The judge's top score (2-9).
    pub judge_max_score: u32,
    pub normalize: Normalization,
    /// Answers sent to the backend per call.
    pub reward_batch: usize,
    /// An OpenAI-compatible server (vLLM) that serves the judge or the reward model;
    /// `reward_model` is then the model's name there (default: the one model it serves).
    pub reward_endpoint: Option<String>,
}

impl Default for RewardSettings {
    fn default() -> Self {
        RewardSettings {
            reward: RewardKind::Judge,
            reward_model: None,
            reward_plugin: None,
            reward_label: None,
            judge_rubric: None,
            judge_max_score: 5,
            normalize: Normalization::None,
            reward_batch: 16,
            reward_endpoint: None,
        }
    }
}

impl RewardSettings {
    /// The backend in a few words, for reports: `judge`, `classifier:PATH`, ...
    pub fn describe(&self) -> String {
        let kind = serde_json::to_value(self.reward).expect("a name").as_str().expect("a string").to_owned();
        let described = match (&self.reward_model, &self.reward_plugin) {
            (_, Some(p)) if self.reward == RewardKind::Plugin => format!("{kind}:{p}"),
            (Some(m), _) if self.reward != RewardKind::Plugin => format!("{kind}:{}", m.display()),
            _ => kind,
        };
        match &self.reward_endpoint {
            Some(url) => format!("{described}@{url}"),
            None => described,
        }
    }

    /// The settings that need no backend loaded.
    pub fn check(&self) -> Result<()> {
        let bad = |m: &str| Err(SettingsError::OutOfRange(m.into()));
        if !(2..=9).contains(&self.judge_max_score) {
            return bad("--judge-max-score must be in 2..=9 (the score tokens are the digits 1..=N)");
        }
        if self.reward_batch == 0 {
            return bad("--reward-batch must be at least 1");
        }
        match self.reward {
            RewardKind::Plugin if self.reward_endpoint.is_some() => {
                bad("--reward-endpoint serves a judge or a classifier, not a plugin")
            }
            RewardKind::Classifier if self.reward_model.is_none() && self.reward_endpoint.is_none() => {
                bad("--reward classifier needs --reward-model DIR (a *ForSequenceClassification model)")
            }
            RewardKind::Plugin if self.reward_plugin.is_none() => {
                bad("--reward plugin needs --reward-plugin FILE.wasm")
            }
            _ => Ok(()),
        }
    }
}

impl LoopSettings {
    /// Every setting in its range, the solver's and the reward's included, before any
    /// model or plugin loads and before anything is written.
    pub fn check(&self) -> Result<()> {
        let bad = |m: String| Err(SettingsError::OutOfRange(m));
        if self.iterations == 0 || self.phase_chunk == 0 {
            return bad("--iterations and --phase-chunk must be at least 1".into());
        }
        if self.answers < 2 {
            return bad("--answers must be at least 2: pairs need two answers to compare".into());
        }
        if !(0.0..1.0).contains(&self.buffer_fraction) || !(0.0..=1.0).contains(&self.sample_fraction) {
            return bad("--buffer-fraction must be in [0, 1) and --sample-fraction in [0, 1]".into());
        }
        if !(self.temperature.is_finite() && self.temperature >= 0.0) {
            return bad(format!("--temperature must be a number >= 0, not {}", self.temperature));
        }
        if !(self.top_p > 0.0 && self.top_p <= 1.0) {
            return bad(format!("--top-p must be in (0, 1], not {}", self.top_p));
        }
        if self.max_new_tokens == 0 || self.evolve_max_tokens == 0 {
            return bad("--max-new-tokens and --evolve-max-tokens must be at least 1".into());
        }
        if !(0.0..=1.0).contains(&self.dedup_threshold) {
            return bad(format!("--dedup-threshold must be in [0, 1], not {}", self.dedup_threshold));
        }
        match (self.trainer, &self.trainer_command) {
            (TrainerKind::External, None) => {
                return bad("--trainer external needs --trainer-command CMD (see docs/external-trainer.md)".into());
            }
            (TrainerKind::Local, Some(_)) => return bad("--trainer-command is for --trainer external".into()),
            _ => {}
        }
        self.solver.check()?;
        self.reward.check()
    }

    /// What [`crate::run::run`] reads of them.
    pub fn run_settings(&self) -> crate::run::Settings {
        crate::run::Settings {
            iterations: self.iterations,
            sampling: crate::run::Sampling {
                n: self.answers,
                temperature: self.temperature,
                top_p: self.top_p,
                max_new_tokens: self.max_new_tokens,
                seed: self.solver.seed,
            },
            sample_fraction: self.sample_fraction,
            evolve_max_tokens: self.evolve_max_tokens,
            buffer_fraction: self.buffer_fraction,
            dedup_threshold: self.dedup_threshold,
            no_evolve: self.no_evolve,
            chunk: self.phase_chunk,
        }
    }
}

/// Settings as a map of keys laid over a base: a file's keys, then the flags given.
pub trait Overlay: Serialize + DeserializeOwned {
    /// Its keys (snake_case), which are also the ids of its flags.
    fn keys(&self) -> Vec<String> {
        as_map(self).keys().cloned().collect()
    }

    /// `self` with `values` (keys snake_case or kebab-case) put over it; `origin` names
    /// where they come from in errors (a file, "the flags").
    fn overlay(&self, values: Map<String, Value>, origin: &str) -> Result<Self> {
        let base = as_map(self);
        let mut map = base.clone();
        for (key, value) in values {
            let id = key.replace('-', "_");
            if !map.contains_key(&id) {
                return Err(SettingsError::UnknownKey { origin: origin.into(), key });
            }
            // One key at a time, so that a value of the wrong type is named by its key
            // (serde's error over the whole map does not say which).
            let mut alone = base.clone();
            alone.insert(id.clone(), value.clone());
            if let Err(source) = serde_json::from_value::<Self>(Value::Object(alone)) {
                return Err(SettingsError::WrongType { origin: origin.into(), key, source });
            }
            map.insert(id, value);
        }
        Ok(serde_json::from_value(Value::Object(map)).expect("every key was checked alone"))
    }

    /// `key: old -> new` for every key whose value differs in `new`, keys kebab-case.
    fn differences(&self, new: &Self) -> Vec<String> {
        let (old, new) = (as_map(self), as_map(new));
        new.iter()
            .filter(|(k, v)| old.get(*k) != Some(v))
            .map(|(k, v)| format!("{}: {} -> {v}", k.replace('_', "-"), old.get(k).unwrap_or(&Value::Null)))
            .collect()
    }
}

impl Overlay for LoopSettings {}
impl Overlay for SolverSettings {}
impl Overlay for RewardSettings {}

fn as_map(value: &impl Serialize) -> Map<String, Value> {
    match serde_json::to_value(value).expect("settings serialize") {
        Value::Object(map) => map,
        _ => unreachable!("settings are structs"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(json: &str) -> Map<String, Value> {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn keys_are_laid_over_the_defaults_and_unknown_ones_are_refused() {
        let base = LoopSettings::default();
        let s = base.overlay(map(r#"{"iterations": 5, "lora-targets": "q_proj", "loss": "ipo"}"#), "f.toml").unwrap();
        assert_eq!((s.iterations, s.solver.lora_targets.as_str(), s.solver.loss), (5, "q_proj", LossName::Ipo));
        assert_eq!(s.answers, base.answers, "keys not given keep the base's values");
        let err = base.overlay(map(r#"{"iteration": 5}"#), "f.toml").unwrap_err().to_string();
        assert_eq!(err, "f.toml: unknown setting `iteration` (see eva-host run --help)");
        let err = base.overlay(map(r#"{"loss": "dpoo"}"#), "the flags").unwrap_err().to_string();
        assert!(err.starts_with("the flags: loss: unknown variant `dpoo`, expected one of `dpo`"), "{err}");
        let err = base.overlay(map(r#"{"answers": "four"}"#), "f.toml").unwrap_err().to_string();
        assert!(err.starts_with("f.toml: answers: invalid type: string \"four\""), "{err}");
        assert_eq!(
            base.differences(&s),
            ["iterations: 2 -> 5", "lora-targets: \"q_proj,v_proj\" -> \"q_proj\"", "loss: \"dpo\" -> \"ipo\""]
        );
    }

    #[test]
    fn out_of_range_values_are_refused_by_name() {
        let with = |json: &str| LoopSettings::default().overlay(map(json), "x").unwrap().check();
        assert!(with("{}").is_ok(), "the defaults are valid");
        for (json, said) in [
            (r#"{"answers": 1}"#, "--answers must be at least 2"),
            (r#"{"top_p": 0}"#, "--top-p must be in (0, 1]"),
            (r#"{"lora_targets": "qproj"}"#, "unknown LoRA target `qproj`"),
            (r#"{"lr": -1}"#, "--lr must be a positive number"),
            (r#"{"judge_max_score": 12}"#, "--judge-max-score must be in 2..=9"),
            (r#"{"reward": "classifier"}"#, "--reward classifier needs --reward-model"),
            (r#"{"iterations": 0}"#, "--iterations and --phase-chunk must be at least 1"),
            (r#"{"phase_chunk": 0}"#, "--iterations and --phase-chunk must be at least 1"),
        ] {
            let err = with(json).unwrap_err().to_string();
            assert!(err.contains(said), "{json}: {err}");
        }
        assert!(with(r#"{"full": true, "lora_targets": "qproj"}"#).is_ok(), "full training has no LoRA targets");
    }

    #[test]
    fn losses_take_their_coefficients() {
        let s = SolverSettings { loss: LossName::Simpo, gamma: Some(0.5), ..Default::default() };
        assert_eq!(s.loss(), PreferenceLoss::Simpo { beta: 2.0, gamma: 0.5 });
        let s = SolverSettings { loss: LossName::Dpo, beta: Some(0.3), ..Default::default() };
        assert_eq!(s.loss(), PreferenceLoss::Dpo { beta: 0.3 });
        assert_eq!(SolverSettings::default().solver_config().lr, eva_solver::SolverConfig::default().lr);
    }
}
