//! A run's configuration: the loop's settings as flags of `eva-host run` (keys of its
//! `--config` file), `RUN_DIR/config.toml` (what a resume needs), and the models a run
//! trained, for the commands that read a run directory (`eval`).

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use clap::Args;
use eva_engine::WeightFormat;
use eva_loop::layout::RunStore;
use eva_loop::settings::{LoopSettings, Overlay};
use serde::{Deserialize, Serialize};

use crate::plugin_args::PluginArgs;
use crate::plugin_source::PluginSource;
use crate::reward_args::RewardFlags;
use crate::solving::SolverFlags;

impl LoopFlags {
    /// `base` with the keys of `file` and then the flags given on the command line put over
    /// it: a flag wins over the file, the file over `base`.
    pub fn over(&self, base: &LoopSettings, file: Option<&Path>, matches: &clap::ArgMatches) -> Result<LoopSettings> {
        let mut settings = base.clone();
        if let Some(file) = file {
            let text = std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
            let table: toml::Table = toml::from_str(&text).with_context(|| format!("parsing {}", file.display()))?;
            let keys = serde_json::to_value(table).expect("toml to json");
            let serde_json::Value::Object(keys) = keys else { unreachable!("a table") };
            settings = settings.overlay(keys, &file.display().to_string())?;
        }
        crate::flags::settings(&settings, self, matches)
    }
}

/// The loop's settings as flags: every key of `--config FILE` (TOML, kebab-case or
/// snake_case) is one of these flags, and a flag given on the command line wins over the
/// file. Defaults: `eva_loop::settings::LoopSettings`.
#[derive(Args, Debug, Clone, Default, Serialize)]
pub struct LoopFlags {
    /// eva iterations (creator + solver each).
    #[arg(long)]
    iterations: Option<usize>,
    /// Answers sampled per prompt (n), at least 2.
    #[arg(long)]
    answers: Option<usize>,
    /// Longest answer, in tokens.
    #[arg(long)]
    max_new_tokens: Option<usize>,
    /// Sampling temperature of the answers.
    #[arg(long)]
    temperature: Option<f32>,
    /// How the policy's weights are stored for sampling answers and evolutions: f32
    /// (exact: the weights the solver trains) or q8_0 (8 bits per weight, eva's own
    /// kernels: about 3x faster sampling on x86 CPUs with AVX-512 VNNI, a little faster
    /// with AVX2, from a policy rounded to 8 bits; CPU only). Training uses f32 (see
    /// `--precision`).
    #[arg(long)]
    weights: Option<WeightFormat>,
    /// Nucleus mass of the answers' sampling, in (0, 1].
    #[arg(long)]
    top_p: Option<f32>,
    /// Fraction of X_t the sampler picks for evolution.
    #[arg(long)]
    sample_fraction: Option<f64>,
    /// The most tokens one of the evolver's generate requests may produce.
    #[arg(long)]
    evolve_max_tokens: Option<u32>,
    /// Share of X'_t drawn uniformly from the old prompts (the buffer); the rest are
    /// evolved prompts.
    #[arg(long)]
    buffer_fraction: Option<f64>,
    /// Jaccard similarity of word 3-shingles at which an evolved prompt counts as a
    /// near-duplicate of one already seen (1 keeps all but exact duplicates).
    #[arg(long)]
    dedup_threshold: Option<f64>,
    /// The classic fixed-prompt baseline with the same budget: no info, sample or evolve;
    /// X'_t = X_t.
    #[arg(long)]
    no_evolve: bool,
    /// Prompts answered and scored per commit of an answer phase: a kill, or a server
    /// lost for good, loses at most one chunk's work, and `--resume` computes only the
    /// chunks still missing, with the same results.
    #[arg(long)]
    phase_chunk: Option<usize>,
    /// Who trains θ_t into θ_{t+1}: local (eva's trainer, in this process) or external
    /// (`--trainer-command`: TRL, OpenRLHF, ... under accelerate or DeepSpeed).
    #[arg(long)]
    trainer: Option<eva_loop::settings::TrainerKind>,
    /// The external trainer's command, run by `sh -c` in ITER/train with the pairs, θ_t
    /// and where to write θ_{t+1} in EVA_* variables; its exit status says whether it
    /// trained. The contract: docs/external-trainer.md.
    #[arg(long, value_name = "CMD")]
    trainer_command: Option<String>,
    #[command(flatten)]
    #[serde(flatten)]
    solver: SolverFlags,
    #[command(flatten)]
    #[serde(flatten)]
    reward: RewardFlags,
}

/// Where the policy is served: servers instead of the in-process engine. Fixed for a run.
#[derive(Args, Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ServerArgs {
    /// An OpenAI-compatible server (vLLM) that serves `--model` (a Hugging Face
    /// directory), for the answers and the evolver's generate (repeatable: the prompts are
    /// spread over all). Training stays on this machine, LoRA only; each iteration's update
    /// is kept and θ_{t+1} is loaded into the servers as one adapter
    /// (`/v1/load_lora_adapter`). An API key is read from EVA_API_KEY, never saved.
    #[arg(long = "policy-endpoint", value_name = "URL")]
    pub endpoints: Vec<String>,
    /// The name the servers give `--model` (vLLM's `--served-model-name`); default: the
    /// `--model` path as given, which is vLLM's own default.
    #[arg(long, value_name = "NAME", requires = "endpoints")]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub served_model: Option<String>,
    /// Requests in flight per endpoint.
    #[arg(long, default_value_t = 4)]
    pub endpoint_concurrency: usize,
    /// The DPO reference log-probs of θ_t from the policy's servers (vLLM's
    /// prompt_logprobs over eva's own tokens) instead of a forward pass on this machine;
    /// the servers should serve θ_t in the trainer's precision.
    #[arg(long, requires = "endpoints")]
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub served_reference: bool,
    /// An OpenAI-compatible server whose model serves the evolver's `generate` (the
    /// creator model, for example a stronger model than the policy); it is not trained.
    /// Default: the policy of each iteration.
    #[arg(long, value_name = "URL", conflicts_with = "creator_model")]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub creator_endpoint: Option<String>,
    /// The creator model's name on `--creator-endpoint` (default: the one model it serves).
    #[arg(long, value_name = "NAME", requires = "creator_endpoint")]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub creator_served_model: Option<String>,
}

impl ServerArgs {
    /// The policy runs in this process.
    pub fn is_local(&self) -> bool {
        self.endpoints.is_empty()
    }

    /// Nothing is served: no policy and no creator endpoint.
    pub fn is_none(&self) -> bool {
        self.is_local() && self.creator_endpoint.is_none()
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
    /// The servers of the policy (none: the in-process engine).
    #[serde(default, skip_serializing_if = "ServerArgs::is_none")]
    pub servers: ServerArgs,
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

impl RunConfig {
    /// The configuration of the run in `store`; unknown settings are refused by name.
    pub fn read(store: &RunStore) -> Result<RunConfig> {
        let path = store.config();
        let text = std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
        let damaged = || format!("{} is damaged", path.display());
        let mut table: toml::Table = toml::from_str(&text).with_context(damaged)?;
        let settings = table.remove("settings").unwrap_or_else(|| toml::Value::Table(Default::default()));
        let serde_json::Value::Object(keys) = serde_json::to_value(settings).expect("toml to json") else {
            anyhow::bail!("{}: `settings` must be a table", path.display())
        };
        let settings = LoopSettings::default().overlay(keys, &format!("{} [settings]", path.display()))?;
        table.insert("settings".into(), toml::Value::try_from(&settings).expect("settings are toml"));
        table.try_into().with_context(damaged)
    }

    /// Write it atomically.
    pub fn write(&self, store: &RunStore) -> Result<()> {
        let path = store.config();
        let text = toml::to_string(self).context("writing the config")?;
        eva_engine::atomic::write_file(&path, text.as_bytes()).with_context(|| format!("writing {}", path.display()))
    }
}

/// The models of the run in `dir`, or `None` when `dir` is not a run directory.
pub fn trained_models(dir: &Path) -> Result<Option<TrainedModels>> {
    let store = RunStore::new(dir);
    if !store.config().is_file() {
        return Ok(None);
    }
    let config = RunConfig::read(&store)?;
    let mut last = None;
    for m in &store.summaries()? {
        last = store.trained_model(m)?.or(last);
    }
    let last = last.with_context(|| format!("{}: no iteration has finished training yet", dir.display()))?;
    Ok(Some(TrainedModels { last, base: config.model }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_flag_is_a_setting() {
        let keys = LoopSettings::default().keys();
        let flags = serde_json::to_value(LoopFlags::default()).unwrap();
        for id in flags.as_object().unwrap().keys() {
            assert!(keys.contains(id), "--{id} is no loop setting");
        }
    }

    #[test]
    fn a_config_with_an_unknown_setting_is_refused_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let store = RunStore::new(dir.path());
        let config = "plugins = []\nplugins_dir = \"p\"\n[settings]\niterations = 3\nanswerz = 2\n";
        std::fs::write(store.config(), config).unwrap();
        let err = format!("{:#}", RunConfig::read(&store).unwrap_err());
        assert!(err.ends_with("config.toml [settings]: unknown setting `answerz` (see eva-host run --help)"), "{err}");
        std::fs::write(store.config(), config.replace("answerz", "answers")).unwrap();
        let read = RunConfig::read(&store).unwrap();
        assert_eq!((read.settings.iterations, read.settings.answers), (3, 2), "missing keys take their defaults");
    }
}
