//! A Hugging Face sequence-classification reward model.

use std::path::{Path, PathBuf};

use candle_core::Device;
use eva_engine::model::Linear;
use eva_engine::{ChatTemplate, Head, Kernels, ModelFiles, Tokenizer, Transformer};

use crate::error::{Error, Result};
use crate::{Reward, RewardItem};

/// A `*ForSequenceClassification` model (llama, qwen2, qwen3) whose `score` head gives
/// the reward. Like `transformers`, it reads the head at the last token that is not the
/// padding token, on the conversation rendered with the model's chat template (answer
/// included, no generation prompt, no special tokens added beyond the template's).
pub struct Classifier {
    path: PathBuf,
    transformer: Transformer,
    tokenizer: Tokenizer,
    template: Option<ChatTemplate>,
    pad: Option<u32>,
    label: usize,
    batch_tokens: usize,
}

impl Classifier {
    /// Load the model directory at `path`. `label` picks one output of a multi-label
    /// head; a single-label head needs none.
    pub fn load(path: &Path, label: Option<usize>) -> Result<Self> {
        let files = ModelFiles::open(path, &Device::Cpu)?;
        let unusable = |reason: String| Error::Unusable { path: path.to_owned(), reason };
        let Head::Score { labels } = files.config.head else {
            return Err(unusable(
                "not a sequence-classification model: config.json's `architectures` names no \
                 *ForSequenceClassification class (use the judge backend for instruct models)"
                    .into(),
            ));
        };
        let label = match (label, labels) {
            (Some(l), _) if l < labels => l,
            (Some(l), _) => return Err(unusable(format!("label {l} asked for, the head has {labels}"))),
            (None, 1) => 0,
            (None, _) => {
                return Err(unusable(format!("the head has {labels} labels; choose one with --reward-label")));
            }
        };
        let pad = read_pad_id(path)?;
        let transformer = Transformer::build(&files.config, &files.weights, Kernels::Fused, &mut |_, w, b| {
            Ok(Linear::dense(w.clone(), b.cloned()))
        })?;
        Ok(Self {
            path: path.to_owned(),
            transformer,
            tokenizer: files.tokenizer,
            template: files.chat_template,
            pad,
            label,
            batch_tokens: 4096,
        })
    }

    /// The token ids the model scores for `item`.
    pub fn tokens(&self, item: &RewardItem) -> Result<Vec<u32>> {
        Ok(match &self.template {
            Some(t) => self.tokenizer.encode(&t.render(&item.conversation(), false)?)?,
            // No template: the prompt's text, a blank line, the answer.
            None => {
                let prompt: Vec<&str> = item.messages.iter().map(|m| m.content.as_str()).collect();
                self.tokenizer.encode_prompt(&format!("{}\n\n{}", prompt.join("\n\n"), item.response))?
            }
        })
    }

    /// Where the head is read: the last token that is not padding.
    fn readout_position(&self, tokens: &[u32]) -> usize {
        tokens.iter().rposition(|&t| Some(t) != self.pad).unwrap_or(0)
    }
}

/// `pad_token_id` from config.json, as transformers reads it.
fn read_pad_id(dir: &Path) -> Result<Option<u32>> {
    let path = dir.join("config.json");
    let text =
        std::fs::read_to_string(&path).map_err(|e| Error::Unusable { path: path.clone(), reason: e.to_string() })?;
    let json: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| Error::Unusable { path: path.clone(), reason: e.to_string() })?;
    Ok(json["pad_token_id"].as_u64().map(|p| p as u32))
}

impl Reward for Classifier {
    fn describe(&self) -> String {
        format!("classifier {}", self.path.display())
    }

    fn score(&mut self, items: &[RewardItem]) -> Result<Vec<f64>> {
        let limit = self.transformer.config.max_position_embeddings;
        let mut seqs = Vec::with_capacity(items.len());
        for (index, item) in items.iter().enumerate() {
            let tokens = self.tokens(item)?;
            if tokens.len() > limit {
                return Err(Error::Item {
                    index,
                    reason: format!(
                        "prompt and answer are {} tokens, more than the reward model's context of {limit}",
                        tokens.len()
                    ),
                });
            }
            seqs.push(tokens);
        }
        let input: Vec<(&[u32], usize)> = seqs.iter().map(|s| (s.as_slice(), self.readout_position(s))).collect();
        let outputs = eva_engine::readout::outputs_at(&self.transformer, &input, self.batch_tokens)?;
        Ok(outputs.iter().map(|o| f64::from(o[self.label])).collect())
    }
}
