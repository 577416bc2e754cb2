//! The flags that choose and configure the reward backend, shared by every command that
//! scores answers.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use clap::{ArgMatches, Args};
use eva_engine::{LanguageModel, WeightFormat};
use eva_loop::settings::{RewardKind, RewardSettings};
use eva_plugin_runtime::RewardModel;
use eva_remote::client::Client;
use eva_remote::policy::Served;
use eva_remote::reward::{ServedClassifier, ServedJudge};
use eva_reward::{Classifier, Judge, JudgeConfig, Normalization, PluginReward, Reward, Scorer};

use crate::plugin_args::PluginArgs;
use crate::plugin_source::{PluginLoader, PluginSource};

/// Which reward backend scores answers, and how. Defaults:
/// `eva_loop::settings::RewardSettings`.
#[derive(Args, Debug, Clone, Default, serde::Serialize)]
pub struct RewardFlags {
    /// The reward backend: judge (an instruct model rates each answer 1-N; the reward is
    /// its expected rating), classifier (a Hugging Face *ForSequenceClassification reward
    /// model) or plugin (a Wasm component of the `reward` world: rule-based or
    /// verifiable rewards).
    #[arg(long)]
    reward: Option<String>,
    /// The judge's model (.gguf or Hugging Face directory; default: the embedded
    /// SmolLM2-135M-Instruct) or the classifier's Hugging Face directory (required).
    #[arg(long, value_name = "PATH")]
    reward_model: Option<PathBuf>,
    /// The reward plugin, with `--reward plugin`: a component file or `oci://` reference.
    #[arg(long, value_name = "FILE.wasm|oci://REF")]
    reward_plugin: Option<PluginSource>,
    /// Which output of a multi-label classifier head is the reward.
    #[arg(long, value_name = "INDEX")]
    reward_label: Option<usize>,
    /// A Jinja template file replacing the judge's rubric; it sees `question` and `answer`
    /// and should ask for a single digit.
    #[arg(long, value_name = "FILE")]
    judge_rubric: Option<PathBuf>,
    /// The judge's top score (2-9): the score tokens are the digits 1..=N.
    #[arg(long)]
    judge_max_score: Option<u32>,
    /// Reward normalisation: none, or prompt-z (z-score over each prompt's answers).
    #[arg(long)]
    normalize: Option<Normalization>,
    /// Answers sent to the backend per call.
    #[arg(long)]
    reward_batch: Option<usize>,
    /// An OpenAI-compatible server (vLLM) that serves the judge (an instruct model; the
    /// expected rating comes from its digits' log-probs) or the classifier (vLLM's pooling
    /// runner). `--reward-model` is then the model's name on the server (default: the one
    /// model it serves), and `--reward-batch` the requests in flight. An API key is read
    /// from EVA_API_KEY, never saved.
    #[arg(long, value_name = "URL")]
    reward_endpoint: Option<String>,
}

/// What a command that scores answers takes: the backend, the plugin settings it may
/// need, and the compute threads.
#[derive(Args)]
pub struct ScoringArgs {
    #[command(flatten)]
    pub reward: RewardFlags,
    #[command(flatten)]
    pub plugins: PluginArgs,
    /// Compute threads; default: the cores not already busy.
    #[arg(long, env = "EVA_THREADS")]
    pub threads: Option<usize>,
}

impl ScoringArgs {
    /// The reward settings: the defaults with the flags given over them, checked.
    pub fn settings(&self, matches: &ArgMatches) -> Result<RewardSettings> {
        let settings = crate::flags::settings(&RewardSettings::default(), &self.reward, matches)?;
        settings.check()?;
        Ok(settings)
    }

    /// The reward backend, with the plugin settings checked against what was loaded.
    pub fn scorer(&self, settings: &RewardSettings) -> Result<Scorer> {
        let loader = PluginLoader::from_args(&self.plugins)?;
        let scorer = scorer(settings, &loader)?;
        loader.check_names(&[])?;
        Ok(scorer)
    }
}

/// The reward plugin of `settings`, if its backend is a plugin.
pub fn reward_plugin(settings: &RewardSettings) -> Result<Option<PluginSource>> {
    match (&settings.reward, &settings.reward_plugin) {
        (RewardKind::Plugin, Some(source)) => {
            Ok(Some(source.parse().with_context(|| format!("--reward-plugin {source}"))?))
        }
        _ => Ok(None),
    }
}

/// Load the backend behind a caching [`Scorer`]; a reward plugin comes through `plugins`.
pub fn scorer(settings: &RewardSettings, plugins: &PluginLoader) -> Result<Scorer> {
    let s = settings;
    let judge = || -> Result<JudgeConfig> {
        let mut config = JudgeConfig { max_score: s.judge_max_score, ..JudgeConfig::default() };
        if let Some(file) = &s.judge_rubric {
            config.rubric = std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
        }
        Ok(config)
    };
    if let Some(url) = &s.reward_endpoint {
        let client = Client::new(url, Default::default())?;
        let name = match &s.reward_model {
            Some(name) => name.to_string_lossy().into_owned(),
            None => client.only_model()?,
        };
        // One request per answer: `--reward-batch` of them in flight.
        let served = Served::new(vec![client], name, s.reward_batch);
        let backend: Box<dyn Reward> = match s.reward {
            RewardKind::Judge => Box::new(ServedJudge::new(served, &judge()?)?),
            RewardKind::Classifier => Box::new(ServedClassifier::new(served, s.reward_label)),
            RewardKind::Plugin => bail!("--reward-endpoint serves a judge or a classifier, not a plugin"),
        };
        return Ok(Scorer::new(backend, s.reward_batch));
    }
    let backend: Box<dyn Reward> = match s.reward {
        RewardKind::Judge => {
            let path = match &s.reward_model {
                Some(p) => p.clone(),
                None => crate::models::fetch_default()?,
            };
            let model = LanguageModel::load(&path, WeightFormat::F32)
                .with_context(|| format!("loading the judge {}", path.display()))?;
            Box::new(Judge::new(model, judge()?)?)
        }
        RewardKind::Classifier => {
            let Some(path) = &s.reward_model else {
                bail!("--reward classifier needs --reward-model DIR (a *ForSequenceClassification model)");
            };
            Box::new(Classifier::load(path, s.reward_label)?)
        }
        RewardKind::Plugin => {
            let Some(source) = reward_plugin(s)? else {
                bail!("--reward plugin needs --reward-plugin FILE.wasm");
            };
            let plugin = plugins.load(&source, false)?;
            Box::new(PluginReward::new(RewardModel::new(plugin)?))
        }
    };
    Ok(Scorer::new(backend, s.reward_batch))
}

#[cfg(test)]
mod tests {
    use eva_loop::settings::Overlay;

    #[test]
    fn every_flag_is_a_setting() {
        let keys = eva_loop::settings::RewardSettings::default().keys();
        let flags = serde_json::to_value(super::RewardFlags::default()).unwrap();
        for id in flags.as_object().unwrap().keys() {
            assert!(keys.contains(id), "--{id} is no reward setting");
        }
    }
}
