//! An instruct model as judge: the reward is the expected rubric score under the model's
//! next-token distribution over the score tokens.

use eva_engine::{LanguageModel, Message};
use minijinja::{Environment, context};

use crate::error::{Error, Result};
use crate::{Reward, RewardItem};

/// The default rubric: a 1–5 rating of the answer. `{{ question }}` is the prompt (the
/// whole conversation when it has several turns) and `{{ answer }}` the answer. Of five
/// phrasings tried on `tests/data/judge-pairs.jsonl`, SmolLM2-135M-Instruct agreed with
/// the hand labels most often (9 of 12) with this short one.
pub const DEFAULT_RUBRIC: &str = "\
Question: {{ question }}
Answer: {{ answer }}

How good is this answer, from 1 (bad) to 5 (excellent)?";

/// How the judge asks.
#[derive(Debug, Clone)]
pub struct JudgeConfig {
    /// A Jinja template of the judge's user message, with `question` and `answer`.
    pub rubric: String,
    /// The top score; the scores are the digits 1..=`max_score` (at most 9), each of which
    /// must be a single token of the judge's tokenizer.
    pub max_score: u32,
    /// Tokens (padding included) per forward pass.
    pub batch_tokens: usize,
}

impl Default for JudgeConfig {
    fn default() -> Self {
        Self { rubric: DEFAULT_RUBRIC.to_owned(), max_score: 5, batch_tokens: 4096 }
    }
}

/// The judge's question for an item: the rubric rendered with its prompt and answer.
pub struct Rubric {
    template: Environment<'static>,
    max_score: u32,
}

impl Rubric {
    pub fn new(config: &JudgeConfig) -> Result<Self> {
        if !(2..=9).contains(&config.max_score) {
            return Err(Error::Config(format!("the judge's top score must be 2 to 9, not {}", config.max_score)));
        }
        let mut template = Environment::new();
        template
            .add_template_owned("rubric", config.rubric.clone())
            .map_err(|e| Error::Config(format!("judge rubric: {e:#}")))?;
        Ok(Self { template, max_score: config.max_score })
    }

    /// The scores 1..=N.
    pub fn scores(&self) -> impl Iterator<Item = u32> {
        1..=self.max_score
    }

    /// The judge's user message for one item.
    pub fn question(&self, item: &RewardItem) -> Result<String> {
        let question = match item.messages.as_slice() {
            [only] => only.content.clone(),
            turns => turns.iter().map(|m| format!("{}: {}", m.role, m.content)).collect::<Vec<_>>().join("\n"),
        };
        self.template
            .get_template("rubric")
            .and_then(|t| t.render(context! { question => question, answer => item.response }))
            .map_err(|e| Error::Config(format!("judge rubric: {e:#}")))
    }
}

/// The expected score under a softmax over the score tokens only, from each score's
/// logit (or log-prob: a constant shift changes nothing).
pub fn expected_score(scored: &[(f64, f64)]) -> f64 {
    let max = scored.iter().map(|s| s.0).fold(f64::NEG_INFINITY, f64::max);
    let weights: Vec<f64> = scored.iter().map(|(l, _)| (l - max).exp()).collect();
    let total: f64 = weights.iter().sum();
    scored.iter().zip(&weights).map(|((_, s), w)| s * w / total).sum()
}

pub struct Judge {
    model: LanguageModel,
    rubric: Rubric,
    /// (token id, score) of each score token.
    scores: Vec<(u32, f64)>,
    batch_tokens: usize,
}

impl Judge {
    pub fn new(model: LanguageModel, config: JudgeConfig) -> Result<Self> {
        let rubric = Rubric::new(&config)?;
        if model.chat_template.is_none() {
            return Err(Error::Unusable {
                path: model.path.clone(),
                reason: "a judge must be an instruct model with a chat template".into(),
            });
        }
        let scores = rubric
            .scores()
            .map(|s| match model.tokenizer.encode(&s.to_string())?.as_slice() {
                [id] => Ok((*id, f64::from(s))),
                ids => Err(Error::Unusable {
                    path: model.path.clone(),
                    reason: format!("the score `{s}` is {} tokens, not one", ids.len()),
                }),
            })
            .collect::<Result<_>>()?;
        Ok(Self { model, rubric, scores, batch_tokens: config.batch_tokens.max(1) })
    }

    /// The judge's prompt for one item, as token ids.
    pub fn prompt(&self, item: &RewardItem) -> Result<Vec<u32>> {
        let text = self.rubric.question(item)?;
        Ok(self.model.chat_prompt(&[Message::new("user", text)])?)
    }

    /// The expected score from next-token logits: softmax over the score tokens only.
    fn expected_score(&self, logits: &[f32]) -> f64 {
        let scored: Vec<(f64, f64)> = self.scores.iter().map(|&(id, s)| (f64::from(logits[id as usize]), s)).collect();
        expected_score(&scored)
    }
}

impl Reward for Judge {
    fn describe(&self) -> String {
        format!("judge {}", self.model.path.display())
    }

    fn score(&mut self, items: &[RewardItem]) -> Result<Vec<f64>> {
        let limit = self.model.transformer.config.max_position_embeddings;
        let mut prompts = Vec::with_capacity(items.len());
        for (index, item) in items.iter().enumerate() {
            let p = self.prompt(item)?;
            if p.len() > limit {
                return Err(Error::Item {
                    index,
                    reason: format!("the judge's prompt is {} tokens, more than its context of {limit}", p.len()),
                });
            }
            prompts.push(p);
        }
        let input: Vec<(&[u32], usize)> = prompts.iter().map(|p| (p.as_slice(), p.len() - 1)).collect();
        let logits = eva_engine::readout::outputs_at(&self.model.transformer, &input, self.batch_tokens)?;
        Ok(logits.iter().map(|l| self.expected_score(l)).collect())
    }
}
