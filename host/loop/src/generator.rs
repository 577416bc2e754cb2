//! The creator model: the evolver's `generate` import answered by an in-process engine
//! model (the policy, or another one).

use std::sync::Arc;

use eva_engine::{GenerationParams, LanguageModel, Message, Sampling};
use eva_plugin_runtime::{GenerateRequest, Generator};

/// Answers the evolver's requests with the engine, batching those that share sampling
/// settings. Each request's tokens are clamped to `max_tokens`.
pub struct EngineGenerator {
    pub model: Arc<LanguageModel>,
    pub max_tokens: u32,
    pub seed: u64,
}

impl Generator for EngineGenerator {
    fn complete(&self, requests: &[GenerateRequest]) -> Result<Vec<String>, String> {
        let _span = tracing::debug_span!("generate for plugin", requests = requests.len()).entered();
        let mut out = vec![String::new(); requests.len()];
        let mut done = vec![false; requests.len()];
        for first in 0..requests.len() {
            if done[first] {
                continue;
            }
            let r = &requests[first];
            let same: Vec<usize> = (first..requests.len())
                .filter(|&i| {
                    let q = &requests[i];
                    !done[i] && q.temperature == r.temperature && q.top_p == r.top_p && q.max_tokens == r.max_tokens
                })
                .collect();
            let prompts = same
                .iter()
                .map(|&i| {
                    let messages: Vec<Message> = requests[i]
                        .messages
                        .iter()
                        .map(|m| Message::new(m.role.as_str(), m.content.as_str()))
                        .collect();
                    self.model.chat_prompt(&messages)
                })
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| e.to_string())?;
            let params = GenerationParams {
                sampling: Sampling { temperature: r.temperature, top_p: r.top_p },
                max_new_tokens: r.max_tokens.min(self.max_tokens) as usize,
                n: 1,
                seed: self.seed.wrapping_add(first as u64),
                ..GenerationParams::default()
            };
            let completions = self.model.generate(&prompts, &params, &mut |_| {}).map_err(|e| e.to_string())?;
            for (&i, c) in same.iter().zip(completions) {
                out[i] = c.into_iter().next().map(|c| c.text).unwrap_or_default();
                done[i] = true;
            }
        }
        Ok(out)
    }
}
