//! The in-process candle engine behind the run's seams: the policy and the creator model
//! ([`CandlePolicy`], loaded by [`CandleEngine`]), the reward backends behind their cache
//! ([`ScorerReward`]) and the LoRA/full trainer ([`CandleTrainer`]). Long work reports to
//! a [`Progress`].

use std::path::{Path, PathBuf};
use std::sync::Arc;

use eva_engine::{GenerationParams, LanguageModel, Message, TrainableModel, WeightFormat};
use eva_plugin_runtime::Generator;
use eva_reward::{Normalization, RewardItem, Scorer};
use eva_solver::{PreferencePair, Text, TokenizedPair, Trainer as SolverLoop};

use crate::creator::RoleError;
use crate::generator::EngineGenerator;
use crate::layout::{Answer, Answers, PairRecord, PromptRecord};
use crate::progress::Progress;
use crate::run::{Draft, Engine, Policy, Reward, Sampling, Trainer};
use crate::settings::SolverSettings;

/// What can go wrong in the engine's seams; each variant names the model, file or pair.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("loading the {what} {path}")]
    Load { what: &'static str, path: PathBuf, source: Box<eva_engine::Error> },
    #[error("the creator model {path} has no chat template: the evolver's requests are chats")]
    NoChatTemplate { path: PathBuf },
    #[error(transparent)]
    Engine(#[from] eva_engine::Error),
    #[error(transparent)]
    Reward(#[from] eva_reward::Error),
    #[error(transparent)]
    Solver(#[from] eva_solver::SolverError),
    #[error("{name}: {reason}")]
    Pair { name: String, reason: String },
    #[error("{path}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{path}:{line} is damaged")]
    Damaged { path: PathBuf, line: usize, source: serde_json::Error },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    fn load(what: &'static str, path: &Path, source: eva_engine::Error) -> Self {
        Error::Load { what, path: path.to_owned(), source: Box::new(source) }
    }
}

/// A model of the engine as the policy (or the creator model).
pub struct CandlePolicy {
    model: Arc<LanguageModel>,
    progress: Arc<dyn Progress>,
}

impl CandlePolicy {
    /// A creator model (not trained), which must read chats: the evolver's requests are.
    pub fn creator(path: &Path, weights: WeightFormat, progress: Arc<dyn Progress>) -> Result<Self> {
        let model = LanguageModel::load(path, weights).map_err(|e| Error::load("creator model", path, e))?;
        if model.chat_template.is_none() {
            return Err(Error::NoChatTemplate { path: path.to_owned() });
        }
        tracing::info!("the evolver's generate is served by the creator model {}", path.display());
        Ok(CandlePolicy { model: Arc::new(model), progress })
    }

    pub fn model(&self) -> &LanguageModel {
        &self.model
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
        Ok(respond(&self.model, prompts, &params, what, self.progress.as_ref())?)
    }

    fn unfit(&self, messages: &[Message], max_new_tokens: usize) -> Result<Option<String>, RoleError> {
        let tokens = self.model.chat_prompt(messages).map_err(Error::Engine)?.len();
        let context = self.model.transformer.config.max_position_embeddings;
        Ok((tokens + max_new_tokens > context).then(|| {
            format!(
                "too long: {tokens} tokens under the policy's chat template, plus --max-new-tokens \
                 {max_new_tokens}, exceed the model's context of {context}"
            )
        }))
    }

    fn generator(&self, max_tokens: u32, seed: u64) -> Arc<dyn Generator> {
        Arc::new(EngineGenerator { model: self.model.clone(), max_tokens, seed })
    }
}

/// Loads each iteration's policy, with its weights stored as `weights` for sampling.
pub struct CandleEngine {
    pub weights: WeightFormat,
    pub progress: Arc<dyn Progress>,
}

impl Engine for CandleEngine {
    type Policy = CandlePolicy;
    fn load(&mut self, path: &Path) -> Result<CandlePolicy, RoleError> {
        let model = LanguageModel::load(path, self.weights).map_err(|e| Error::load("policy", path, e))?;
        Ok(CandlePolicy { model: Arc::new(model), progress: self.progress.clone() })
    }
}

/// The reward backends (judge, classifier, plugin) behind their cache.
pub struct ScorerReward {
    pub scorer: Scorer,
    pub normalize: Normalization,
    pub progress: Arc<dyn Progress>,
}

impl Reward for ScorerReward {
    fn score(&mut self, prompts: &[PromptRecord], drafts: Vec<Vec<Draft>>) -> Result<Vec<Answers>, RoleError> {
        Ok(score(&mut self.scorer, prompts, drafts, self.normalize, self.progress.as_ref())?)
    }
}

/// The candle solver: LoRA by default, or full fine-tuning; θ_{t+1} is saved merged, and
/// with `keep_update` the LoRA update alone too (`layout::DELTA_ADAPTER` in the trainer's
/// directory), for servers that take adapters.
pub struct CandleTrainer {
    pub solver: SolverSettings,
    pub progress: Arc<dyn Progress>,
    pub keep_update: bool,
}

impl Trainer<CandlePolicy> for CandleTrainer {
    fn train(
        &mut self,
        policy: &CandlePolicy,
        pairs: &[PairRecord],
        out: &Path,
        model_dir: &Path,
    ) -> Result<Vec<(f64, f64)>, RoleError> {
        let _span = tracing::info_span!("solver", pairs = pairs.len()).entered();
        let name = pair_name(pairs);
        let model = &policy.model;
        let pairs = preference_pairs(pairs);
        let trainable = train_pairs(model, &pairs, &name, &self.solver, out, true, self.progress.as_ref())?;
        if self.keep_update {
            let update = out.join(crate::layout::DELTA_ADAPTER);
            trainable.save_hf(&update, None, None, true).map_err(|e| Error::load("saved update", &update, e))?;
        }
        trainable
            .save_hf(model_dir, Some(&model.tokenizer), model.chat_template.as_ref(), false)
            .map_err(|e| Error::load("saved model", model_dir, e))?;
        self.losses(out)
    }

    fn losses(&self, out: &Path) -> Result<Vec<(f64, f64)>, RoleError> {
        Ok(read_losses(out)?)
    }
}

/// The (loss, margin) of each step a trainer logged in `out/metrics.jsonl` (none when
/// it logged nothing).
pub fn read_losses(out: &Path) -> Result<Vec<(f64, f64)>> {
    let path = out.join("metrics.jsonl");
    if !path.is_file() {
        return Ok(vec![]);
    }
    let text = std::fs::read_to_string(&path).map_err(|source| Error::Io { path: path.clone(), source })?;
    let rows = text.lines().enumerate().map(|(i, l)| {
        let r: serde_json::Value =
            serde_json::from_str(l).map_err(|source| Error::Damaged { path: path.clone(), line: i + 1, source })?;
        Ok((r["loss"].as_f64().unwrap_or(f64::NAN), r["margin"].as_f64().unwrap_or(f64::NAN)))
    });
    rows.collect()
}

/// The run's pairs as the solver's: a chat prompt, plain answers.
pub fn preference_pairs(pairs: &[PairRecord]) -> Vec<PreferencePair> {
    pairs
        .iter()
        .map(|p| PreferencePair {
            prompt: Text::Chat(p.prompt.clone()),
            chosen: Text::Plain(p.chosen.clone()),
            rejected: Text::Plain(p.rejected.clone()),
        })
        .collect()
}

/// Names pair i in errors: `pair 3 (prompt `q7`)`.
fn pair_name(pairs: &[PairRecord]) -> impl Fn(usize) -> String + '_ {
    |i| format!("pair {} (prompt `{}`)", i + 1, pairs[i].id)
}

/// The run's pairs in the solver's tokens under `model`'s chat template: what the
/// trainer and its reference log-probs see.
pub fn tokenize_pairs(model: &LanguageModel, pairs: &[PairRecord]) -> Result<Vec<TokenizedPair>> {
    tokenize(model, &preference_pairs(pairs), &pair_name(pairs))
}

fn tokenize(
    model: &LanguageModel,
    pairs: &[PreferencePair],
    name: &dyn Fn(usize) -> String,
) -> Result<Vec<TokenizedPair>> {
    pairs
        .iter()
        .enumerate()
        .map(|(i, p)| {
            eva_solver::tokenize(p, &model.tokenizer, model.chat_template.as_ref())
                .map_err(|reason| Error::Pair { name: name(i), reason })
        })
        .collect()
}

/// `params.n` sampled answers per prompt, through the policy's chat template.
pub fn respond(
    policy: &LanguageModel,
    records: &[PromptRecord],
    params: &GenerationParams,
    what: &str,
    progress: &dyn Progress,
) -> Result<Vec<Vec<Draft>>> {
    if records.is_empty() {
        return Ok(vec![]);
    }
    let prompts = records.iter().map(|p| policy.chat_prompt(&p.messages)).collect::<Result<Vec<_>, _>>()?;
    let total = (records.len() * params.n * params.max_new_tokens) as u64;
    let tracker = progress.start(what, total, "tokens (at most)");
    let completions = policy.generate(&prompts, params, &mut |n| tracker.advance(n as u64))?;
    Ok(completions
        .into_iter()
        .map(|cs| cs.into_iter().map(|c| Draft { tokens: c.tokens.len() as u32, text: c.text }).collect())
        .collect())
}

/// The drafts' rewards, normalised per prompt as asked. An empty answer (EOS at once)
/// cannot be scored: it gets the lowest reward of the batch.
pub fn score(
    scorer: &mut Scorer,
    records: &[PromptRecord],
    drafts: Vec<Vec<Draft>>,
    normalize: Normalization,
    progress: &dyn Progress,
) -> Result<Vec<Answers>> {
    let (items, groups): (Vec<RewardItem>, Vec<usize>) = records
        .iter()
        .zip(&drafts)
        .enumerate()
        .flat_map(|(i, (p, ds))| {
            ds.iter()
                .filter(|d| !d.text.trim().is_empty())
                .map(move |d| (RewardItem::new(p.messages.clone(), d.text.as_str()).with_labels(p.labels_json()), i))
        })
        .unzip();
    let tracker = progress.start("scoring", items.len() as u64, "answers");
    let mut rewards = scorer.score(&items, &mut |n| tracker.advance(n as u64))?;
    drop(tracker);
    eva_reward::normalize(normalize, &mut rewards, &groups);
    let floor = rewards.iter().cloned().fold(f64::INFINITY, f64::min);
    let floor = if floor.is_finite() { floor } else { 0.0 };
    let mut next = rewards.into_iter();
    Ok(records
        .iter()
        .zip(drafts)
        .map(|(p, ds)| Answers {
            id: p.id.clone(),
            answers: ds
                .into_iter()
                .map(|d| {
                    let reward = if d.text.trim().is_empty() { floor } else { next.next().expect("one per item") };
                    Answer { tokens: d.tokens, text: d.text, reward }
                })
                .collect(),
        })
        .collect())
}

/// Train a copy of `model` on `pairs` in `out` (metrics.jsonl, reference.jsonl,
/// checkpoint/), continuing its checkpoint when `resume`; `name(i)` names pair i in errors.
pub fn train_pairs(
    model: &LanguageModel,
    pairs: &[PreferencePair],
    name: &dyn Fn(usize) -> String,
    solver: &SolverSettings,
    out: &Path,
    resume: bool,
    progress: &dyn Progress,
) -> Result<TrainableModel> {
    let config = solver.solver_config();
    let mut tokenized = tokenize(model, pairs, name)?;
    // Built first: a precision the device cannot train in is refused before any writing.
    let trainable = model.trainable_in(solver.adaptation(), solver.seed, solver.precision)?;
    std::fs::create_dir_all(out).map_err(|source| Error::Io { path: out.to_owned(), source })?;
    if config.loss.needs_reference() {
        // The reference is the policy before training in the f32 weights the solver
        // trains; a quantized inference copy would shift every log-ratio.
        let reference = model.exact_transformer()?;
        eva_solver::cached_reference(&reference, &mut tokenized, &out.join("reference.jsonl"), resume)?;
    }
    let mut trainer = SolverLoop::new(&trainable, config, tokenized, out)?;
    if resume {
        trainer.resume()?;
    }
    let tracker = progress.start("training", trainer.total_steps(), "steps");
    tracker.set_done(trainer.state.step);
    trainer.run(&mut |m| {
        tracker.set_done(m.step);
        tracker.say(format!("training: loss {:.4} margin {:+.3} acc {:.2}", m.loss, m.margin, m.accuracy));
    })?;
    drop(tracker);
    drop(trainer);
    Ok(trainable)
}
