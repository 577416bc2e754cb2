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

pub struct Judge {
    model: LanguageModel,
    rubric: Environment<'static>,
    /// (token id, score) of each score token.
    scores: Vec<(u32, f64)>,
    batch_tokens: usize,
}

impl Judge {
    pub fn new(model: LanguageModel, config: JudgeConfig) -> Result<Self> {
        if !(2..=9).contains(&config.max_score) {
            return Err(Error::Config(format!("the judge's top score must be 2 to 9, not {}", config.max_score)));
        }
        if model.chat_template.is_none() {
            return Err(Error::Unusable {
                path: model.path.clone(),
                reason: "a judge must be an instruct model with a chat template".into(),
            });
        }
        let mut rubric = Environment::new();
        rubric
            .add_template_owned("rubric", config.rubric)
            .map_err(|e| Error::Config(format!("judge rubric: {e:#}")))?;
        let scores = (1..=config.max_score)
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
        let question = match item.messages.as_slice() {
            [only] => only.content.clone(),
            turns => turns.iter().map(|m| format!("{}: {}", m.role, m.content)).collect::<Vec<_>>().join("\n"),
        };
        let text = self
            .rubric
            .get_template("rubric")
            .and_then(|t| t.render(context! { question => question, answer => item.response }))
            .map_err(|e| Error::Config(format!("judge rubric: {e:#}")))?;
        Ok(self.model.chat_prompt(&[Message::new("user", text)])?)
    }

    /// The expected score from next-token logits: softmax over the score tokens only.
    fn expected_score(&self, logits: &[f32]) -> f64 {
        let picked: Vec<f64> = self.scores.iter().map(|&(id, _)| f64::from(logits[id as usize])).collect();
        let max = picked.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
        let weights: Vec<f64> = picked.iter().map(|l| (l - max).exp()).collect();
        let total: f64 = weights.iter().sum();
        self.scores.iter().zip(&weights).map(|(&(_, s), w)| s * w / total).sum()
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
