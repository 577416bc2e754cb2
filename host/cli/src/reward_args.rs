//! The flags that choose and configure the reward backend, shared by every command that
//! scores answers.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use clap::{Args, ValueEnum};
use eva_engine::{LanguageModel, WeightFormat};
use eva_plugin_runtime::RewardModel;
use eva_reward::{Classifier, Judge, JudgeConfig, Normalization, PluginReward, Reward, Scorer};

use crate::plugin_args::PluginArgs;
use crate::plugin_source::{PluginLoader, PluginSource};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RewardKind {
    /// An instruct model rates each answer 1-5; the reward is its expected rating.
    Judge,
    /// A Hugging Face *ForSequenceClassification reward model.
    Classifier,
    /// A Wasm component of the `reward` world (rule-based or verifiable rewards).
    Plugin,
}

/// Which reward backend scores answers, and how.
#[derive(Args, Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct RewardArgs {
    /// The reward backend.
    #[arg(long, value_enum, default_value = "judge")]
    pub reward: RewardKind,
    /// The judge's model (.gguf or Hugging Face directory; default: the embedded
    /// SmolLM2-135M-Instruct) or the classifier's Hugging Face directory (required).
    #[arg(long, value_name = "PATH")]
    pub reward_model: Option<PathBuf>,
    /// The reward plugin, with `--reward plugin`: a component file or `oci://` reference.
    #[arg(long, value_name = "FILE.wasm|oci://REF")]
    pub reward_plugin: Option<PluginSource>,
    /// Which output of a multi-label classifier head is the reward.
    #[arg(long, value_name = "INDEX")]
    pub reward_label: Option<usize>,
    /// A Jinja template file replacing the judge's rubric; it sees `question` and `answer`
    /// and should ask for a single digit.
    #[arg(long, value_name = "FILE")]
    pub judge_rubric: Option<PathBuf>,
    /// The judge's top score (2-9): the score tokens are the digits 1..=N.
    #[arg(long, default_value_t = 5)]
    pub judge_max_score: u32,
    /// Reward normalisation: none, or prompt-z (z-score over each prompt's answers).
    #[arg(long, default_value = "none")]
    pub normalize: Normalization,
    /// Answers sent to the backend per call.
    #[arg(long, default_value_t = 16)]
    pub reward_batch: usize,
}

/// What a command that scores answers takes: the backend, the plugin settings it may
/// need, and the compute threads.
#[derive(Args)]
pub struct ScoringArgs {
    #[command(flatten)]
    pub reward: RewardArgs,
    #[command(flatten)]
    pub plugins: PluginArgs,
    /// Compute threads; default: the cores not already busy.
    #[arg(long, env = "EVA_THREADS")]
    pub threads: Option<usize>,
}

impl ScoringArgs {
    /// The reward backend, with the plugin settings checked against what was loaded.
    pub fn scorer(&self) -> Result<Scorer> {
        let loader = PluginLoader::from_args(&self.plugins)?;
        let scorer = self.reward.scorer(&loader)?;
        loader.check_names(&[])?;
        Ok(scorer)
    }
}

impl RewardArgs {
    /// The backend in a few words, for reports: `judge`, `classifier:PATH`, ...
    pub fn describe(&self) -> String {
        let kind = format!("{:?}", self.reward).to_lowercase();
        match (&self.reward_model, &self.reward_plugin) {
            (_, Some(p)) if self.reward == RewardKind::Plugin => format!("{kind}:{p}"),
            (Some(m), _) if self.reward != RewardKind::Plugin => format!("{kind}:{}", m.display()),
            _ => kind,
        }
    }

    /// Load the backend behind a caching [`Scorer`]; a reward plugin comes through `plugins`.
    pub fn scorer(&self, plugins: &PluginLoader) -> Result<Scorer> {
        let backend: Box<dyn Reward> = match self.reward {
            RewardKind::Judge => {
                let path = match &self.reward_model {
                    Some(p) => p.clone(),
                    None => crate::models::fetch_default()?,
                };
                let model = LanguageModel::load(&path, WeightFormat::F32)
                    .with_context(|| format!("loading the judge {}", path.display()))?;
                let mut config = JudgeConfig { max_score: self.judge_max_score, ..JudgeConfig::default() };
                if let Some(file) = &self.judge_rubric {
                    config.rubric =
                        std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
                }
                Box::new(Judge::new(model, config)?)
            }
            RewardKind::Classifier => {
                let Some(path) = &self.reward_model else {
                    bail!("--reward classifier needs --reward-model DIR (a *ForSequenceClassification model)");
                };
                Box::new(Classifier::load(path, self.reward_label)?)
            }
            RewardKind::Plugin => {
                let Some(source) = &self.reward_plugin else {
                    bail!("--reward plugin needs --reward-plugin FILE.wasm");
                };
                let plugin = plugins.load(source, false)?;
                Box::new(PluginReward::new(RewardModel::new(plugin)?))
            }
        };
        Ok(Scorer::new(backend, self.reward_batch))
    }
}
