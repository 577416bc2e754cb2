//! The in-process candle engine behind the loop's seams (`eva_loop::run`): the policy
//! and the creator model ([`CandlePolicy`], loaded by [`CandleEngine`]), the reward
//! backends ([`ScorerReward`]), the LoRA/full trainer ([`CandleTrainer`]), and the
//! one-screen summary of each iteration ([`OneScreen`]).

use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use eva_engine::{GenerationParams, LanguageModel, Message, WeightFormat};
use eva_loop::creator::RoleError;
use eva_loop::generator::EngineGenerator;
use eva_loop::layout::{Answers, IterationSummary, PairRecord, PromptRecord};
use eva_loop::run::{Draft, Engine, Observer, Policy, Reward, Sampling, Trainer};
use eva_plugin_runtime::Generator;
use eva_reward::{Normalization, Scorer};

use crate::answering;
use crate::solving::{SolverArgs, train_pairs};

/// A model of the engine as the policy (or the creator model).
pub struct CandlePolicy(Arc<LanguageModel>);

impl CandlePolicy {
    /// The creator model of `--creator-model`, which must read chats: the evolver's
    /// requests are chats.
    pub fn creator(path: &Path, weights: WeightFormat) -> Result<Self> {
        let model = LanguageModel::load(path, weights)
            .with_context(|| format!("loading the creator model {}", path.display()))?;
        if model.chat_template.is_none() {
            bail!("--creator-model {} has no chat template: the evolver's requests are chats", path.display());
        }
        tracing::info!("the evolver's generate is served by the creator model {}", path.display());
        Ok(CandlePolicy(Arc::new(model)))
    }
}

impl Policy for CandlePolicy {
    fn respond(&self, prompts: &[PromptRecord], s: &Sampling, what: &str) -> Result<Vec<Vec<Draft>>, RoleError> {
        let params = GenerationParams {
            sampling: eva_engine::Sampling { temperature: s.temperature, top_p: s.top_p },
            max_new_tokens: s.max_new_tokens,
            n: s.n,
            seed: s.seed,
            ..GenerationParams::default()
        };
        Ok(answering::respond(&self.0, prompts, &params, what)?)
    }

    fn unfit(&self, messages: &[Message], max_new_tokens: usize) -> Result<Option<String>, RoleError> {
        Ok(too_long_for(&self.0, messages, max_new_tokens)?)
    }

    fn generator(&self, max_tokens: u32, seed: u64) -> Arc<dyn Generator> {
        Arc::new(EngineGenerator { model: self.0.clone(), max_tokens, seed })
    }
}

/// Loads each iteration's policy, with its weights stored as `weights` for sampling.
pub struct CandleEngine {
    pub weights: WeightFormat,
}

impl Engine for CandleEngine {
    type Policy = CandlePolicy;
    fn load(&mut self, path: &Path) -> Result<CandlePolicy, RoleError> {
        let model = LanguageModel::load(path, self.weights)
            .with_context(|| format!("loading the policy {}", path.display()))?;
        Ok(CandlePolicy(Arc::new(model)))
    }
}

/// The reward backends (judge, classifier, plugin) behind their cache.
pub struct ScorerReward {
    pub scorer: Scorer,
    pub normalize: Normalization,
}

impl Reward for ScorerReward {
    fn score(&mut self, prompts: &[PromptRecord], drafts: Vec<Vec<Draft>>) -> Result<Vec<Answers>, RoleError> {
        Ok(answering::score(&mut self.scorer, prompts, drafts, self.normalize)?)
    }
}

/// The candle solver: LoRA by default, or full fine-tuning.
pub struct CandleTrainer {
    pub solver: SolverArgs,
}

impl Trainer<CandlePolicy> for CandleTrainer {
    fn train(
        &mut self,
        policy: &CandlePolicy,
        pairs: &[PairRecord],
        out: &Path,
        model_dir: &Path,
    ) -> Result<Vec<(f64, f64)>, RoleError> {
        train(&policy.0, pairs, &self.solver, out, model_dir)?;
        self.losses(out)
    }

    fn losses(&self, out: &Path) -> Result<Vec<(f64, f64)>, RoleError> {
        let path = out.join("metrics.jsonl");
        if !path.is_file() {
            return Ok(vec![]);
        }
        let text = std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
        text.lines()
            .enumerate()
            .map(|(i, l)| {
                let r: serde_json::Value =
                    serde_json::from_str(l).with_context(|| format!("{}:{} is damaged", path.display(), i + 1))?;
                Ok((r["loss"].as_f64().unwrap_or(f64::NAN), r["margin"].as_f64().unwrap_or(f64::NAN)))
            })
            .collect()
    }
}

/// Prints each iteration's summary as one line, and logs it.
pub struct OneScreen;

impl Observer for OneScreen {
    fn iteration(&mut self, summary: &IterationSummary) {
        let line = one_screen(summary);
        tracing::info!("{line}");
        eprintln!("{line}");
    }
}

/// Why an evolved prompt cannot be answered by the policy: it and the longest answer
/// (`max_new_tokens`) do not fit the model's context under its chat template. Checked in
/// the evolve phase, so such a prompt is dropped there, by name, and never poisons the
/// phases after it.
fn too_long_for(policy: &LanguageModel, messages: &[Message], max_new_tokens: usize) -> Result<Option<String>> {
    let tokens = policy.chat_prompt(messages)?.len();
    let context = policy.transformer.config.max_position_embeddings;
    Ok((tokens + max_new_tokens > context).then(|| {
        format!(
            "too long: {tokens} tokens under the policy's chat template, plus --max-new-tokens {max_new_tokens}, \
             exceed the model's context of {context}"
        )
    }))
}

/// A number of the one-screen summary, `-` where there is none.
fn shown(v: Option<f64>) -> String {
    v.map_or("-".into(), |v| format!("{v:.3}"))
}

fn one_screen(m: &IterationSummary) -> String {
    let loss = match (m.first_loss, m.last_loss) {
        (Some(a), Some(b)) => format!("loss {a:.4} -> {b:.4}, margin {:+.3}", m.last_margin.unwrap_or(f64::NAN)),
        _ => "no training (no pairs)".into(),
    };
    format!(
        "iteration {}: {} prompts, mean reward {}, info mean {} max {}; {} selected, {} evolved, {} kept; \
         {} prompts next ({:.1} words on average); {} pairs; {loss}",
        m.iteration,
        m.prompts,
        shown(m.mean_reward),
        shown(m.info_mean),
        shown(m.info_max),
        m.selected,
        m.evolved,
        m.kept,
        m.next_prompts,
        m.mean_prompt_words,
        m.pairs
    )
}

/// Train on the pairs (LoRA by default, checkpoints in `out`, resumable) and save the
/// merged policy to `model_dir`.
fn train(
    policy: &LanguageModel,
    pairs: &[PairRecord],
    solver: &SolverArgs,
    out: &Path,
    model_dir: &Path,
) -> Result<()> {
    let _span = tracing::info_span!("solver", pairs = pairs.len()).entered();
    let ids: Vec<&str> = pairs.iter().map(|p| p.id.as_str()).collect();
    let pairs: Vec<eva_solver::PreferencePair> = pairs
        .iter()
        .map(|p| eva_solver::PreferencePair {
            prompt: eva_solver::Text::Chat(p.prompt.clone()),
            chosen: eva_solver::Text::Plain(p.chosen.clone()),
            rejected: eva_solver::Text::Plain(p.rejected.clone()),
        })
        .collect();
    let name = |i: usize| format!("pair {} (prompt `{}`)", i + 1, ids[i]);
    let trainable = train_pairs(policy, &pairs, &name, solver, out, true)?;
    trainable
        .save_hf(model_dir, Some(&policy.tokenizer), policy.chat_template.as_ref(), false)
        .with_context(|| format!("saving {}", model_dir.display()))
}
