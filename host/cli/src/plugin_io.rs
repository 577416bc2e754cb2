//! One call of a plugin on known inputs, as `plugin call` and `plugin test` make it: the
//! input is one JSON object whose shape depends on the role, the output another, the same
//! for plugins in every language. Prompts are written as seed rows are
//! (`{"id": "p1", "prompt": "...", "labels": {...}}`, or `messages` for a conversation).
//!
//! | role | input | output |
//! |---|---|---|
//! | info-metric | `{"items": [{"prompt", "rewards", "token_counts"?, "responses"?}]}` | `{"scores": [..]}` |
//! | sampler | `{"scores": [..], "count": N}` | `{"indices": [..]}` |
//! | evolver | `{"prompts": [PROMPT, ..]}` | `{"evolved": [{"parent", "method", "messages", "labels"?}]}` |
//! | pairing | `{"items": [{"prompt", "responses": [{"text", "reward", "tokens"?}]}]}` | `{"pairs": [[{"chosen", "rejected"}]]}` |
//! | reward | `{"items": [{"prompt", "response"}]}` | `{"rewards": [..]}` |
//!
//! Token counts left out are the responses' word counts; responses left out of an
//! info-metric item are empty texts.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use anyhow::{Context, Result, bail};
use eva_plugin_runtime::{
    ChatMessage, Evolver, Exchange, GenerateRequest, Generator, InfoMetric, Pairing, Plugin, Prompt, PromptResponses,
    PromptRewards, RewardModel, Role, Sampler, ScoredResponse,
};
use serde::Deserialize;
use serde_json::{Map, Value, json};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct InfoItem {
    prompt: Map<String, Value>,
    rewards: Vec<f64>,
    #[serde(default)]
    token_counts: Option<Vec<u32>>,
    #[serde(default)]
    responses: Option<Vec<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SampleInput {
    scores: Vec<f64>,
    count: usize,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EvolveInput {
    prompts: Vec<Map<String, Value>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ResponseIn {
    text: String,
    reward: f64,
    #[serde(default)]
    tokens: Option<u32>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PairItem {
    prompt: Map<String, Value>,
    responses: Vec<ResponseIn>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RateItem {
    prompt: Map<String, Value>,
    response: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Items<T> {
    items: Vec<T>,
}

/// The input's shape for `role`, for messages.
pub fn input_shape(role: Role) -> &'static str {
    match role {
        Role::InfoMetric => r#"{"items": [{"prompt": {...}, "rewards": [...], "token_counts"?, "responses"?}]}"#,
        Role::Sampler => r#"{"scores": [...], "count": N}"#,
        Role::Evolver => r#"{"prompts": [{"id", "prompt", "labels"?}, ...]}"#,
        Role::Pairing => r#"{"items": [{"prompt": {...}, "responses": [{"text", "reward", "tokens"?}]}]}"#,
        Role::Reward => r#"{"items": [{"prompt": {...}, "response": "..."}]}"#,
    }
}

fn parse<T: for<'de> Deserialize<'de>>(input: &Value, role: Role) -> Result<T> {
    serde_json::from_value(input.clone()).with_context(|| format!("the input of the {role} is {}", input_shape(role)))
}

/// A prompt written as a seed row; `index` names it in errors and gives its default id.
fn prompt(row: &Map<String, Value>, index: usize) -> Result<Prompt> {
    let at = || format!("prompt {index}");
    let messages = crate::jsonl::prompt_messages(row).map_err(|e| anyhow::anyhow!("{}: {e}", at()))?;
    let labels = crate::jsonl::labels(row).map_err(|e| anyhow::anyhow!("{}: {e}", at()))?;
    let id = match row.get("id") {
        None => format!("p{index}"),
        Some(Value::String(id)) => id.clone(),
        Some(_) => bail!("{}: `id` must be a string", at()),
    };
    Ok(Prompt {
        id,
        messages: messages.into_iter().map(|m| ChatMessage { role: m.role, content: m.content }).collect(),
        labels: labels.as_ref().map(eva_loop::layout::labels_text),
    })
}

fn words(text: &str) -> u32 {
    text.split_whitespace().count() as u32
}

/// Labels as JSON, for the output: the object itself, not its text.
fn labels_value(labels: &Option<String>) -> Value {
    labels.as_deref().and_then(|l| serde_json::from_str(l).ok()).unwrap_or(Value::Null)
}

/// What makes the generator of an evolver's `generate`, when it is first asked.
pub type MakeGenerator = Box<dyn FnOnce() -> Result<Arc<dyn Generator>> + Send>;

/// A generator made on the first request: an evolver that never calls `generate` needs
/// neither a model loaded nor replies given.
struct Lazy {
    make: Mutex<Option<MakeGenerator>>,
    made: std::sync::OnceLock<std::result::Result<Arc<dyn Generator>, String>>,
}

impl Generator for Lazy {
    fn complete(&self, requests: &[GenerateRequest]) -> std::result::Result<Vec<String>, String> {
        let made = self.made.get_or_init(|| {
            let make = self.make.lock().unwrap_or_else(|e| e.into_inner()).take().expect("made once");
            make().map_err(|e| format!("{e:#}"))
        });
        made.as_ref().map_err(Clone::clone)?.complete(requests)
    }
}

/// Call `plugin` once on `input`; `generator` makes what answers an evolver's `generate`.
pub fn call(plugin: Plugin, input: &Value, generator: MakeGenerator) -> Result<Value> {
    let role = plugin.role();
    Ok(match role {
        Role::InfoMetric => {
            let items: Items<InfoItem> = parse(input, role)?;
            let items = items
                .items
                .into_iter()
                .enumerate()
                .map(|(i, item)| {
                    let responses = item.responses.unwrap_or_else(|| vec![String::new(); item.rewards.len()]);
                    let token_counts =
                        item.token_counts.unwrap_or_else(|| responses.iter().map(|r| words(r)).collect());
                    Ok(PromptRewards {
                        prompt: prompt(&item.prompt, i)?,
                        rewards: item.rewards,
                        token_counts,
                        responses,
                    })
                })
                .collect::<Result<Vec<_>>>()?;
            json!({ "scores": InfoMetric::new(plugin)?.score_batch(&items)? })
        }
        Role::Sampler => {
            let input: SampleInput = parse(input, role)?;
            json!({ "indices": Sampler::new(plugin)?.sample(&input.scores, input.count)? })
        }
        Role::Evolver => {
            let input: EvolveInput = parse(input, role)?;
            let prompts = input.prompts.iter().enumerate().map(|(i, p)| prompt(p, i)).collect::<Result<Vec<_>>>()?;
            let mut evolver = Evolver::new(plugin)?;
            let lazy = Lazy { make: Mutex::new(Some(generator)), made: std::sync::OnceLock::new() };
            let evolved = evolver.evolve(&prompts, Arc::new(lazy))?;
            let evolved: Vec<Value> = evolved
                .iter()
                .map(|e| {
                    json!({"parent": e.parent, "method": e.method, "messages": e.messages, "labels": labels_value(&e.labels)})
                })
                .collect();
            json!({ "evolved": evolved })
        }
        Role::Pairing => {
            let items: Items<PairItem> = parse(input, role)?;
            let items = items
                .items
                .into_iter()
                .enumerate()
                .map(|(i, item)| {
                    let responses = item
                        .responses
                        .into_iter()
                        .map(|r| ScoredResponse {
                            tokens: r.tokens.unwrap_or_else(|| words(&r.text)),
                            text: r.text,
                            reward: r.reward,
                        })
                        .collect();
                    Ok(PromptResponses { prompt: prompt(&item.prompt, i)?, responses })
                })
                .collect::<Result<Vec<_>>>()?;
            json!({ "pairs": Pairing::new(plugin)?.pair_batch(&items)? })
        }
        Role::Reward => {
            let items: Items<RateItem> = parse(input, role)?;
            let items = items
                .items
                .into_iter()
                .enumerate()
                .map(|(i, item)| Ok(Exchange { prompt: prompt(&item.prompt, i)?, response: item.response }))
                .collect::<Result<Vec<_>>>()?;
            json!({ "rewards": RewardModel::new(plugin)?.rate_batch(&items)? })
        }
    })
}

/// Canned answers to an evolver's `generate`, handed out in order; running out is an
/// error naming where they came from.
pub struct CannedReplies {
    replies: Mutex<VecDeque<String>>,
    origin: String,
}

impl CannedReplies {
    pub fn new(replies: Vec<String>, origin: impl Into<String>) -> Self {
        CannedReplies { replies: Mutex::new(replies.into()), origin: origin.into() }
    }

    /// Replies from a file: a JSON list of strings.
    pub fn read(path: &std::path::Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let replies: Vec<String> = serde_json::from_str(&text)
            .with_context(|| format!("{}: expected a JSON list of strings (the replies, in order)", path.display()))?;
        Ok(CannedReplies::new(replies, path.display().to_string()))
    }
}

impl Generator for CannedReplies {
    fn complete(&self, requests: &[GenerateRequest]) -> std::result::Result<Vec<String>, String> {
        let mut replies = self.replies.lock().unwrap_or_else(|e| e.into_inner());
        if replies.len() < requests.len() {
            return Err(format!(
                "{} requests, but {} holds only {} more replies",
                requests.len(),
                self.origin,
                replies.len()
            ));
        }
        Ok(replies.drain(..requests.len()).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canned_replies_run_out_with_a_clear_error() {
        let canned = CannedReplies::new(vec!["a".into(), "b".into()], "replies.json");
        let request = GenerateRequest { messages: vec![], max_tokens: 8, temperature: 0.0, top_p: 1.0 };
        assert_eq!(canned.complete(std::slice::from_ref(&request)).unwrap(), ["a"]);
        let err = canned.complete(&[request.clone(), request]).unwrap_err();
        assert_eq!(err, "2 requests, but replies.json holds only 1 more replies");
    }

    #[test]
    fn prompts_are_written_as_seed_rows() {
        let row = json!({"prompt": "2+2?", "answer": "4"});
        let p = prompt(row.as_object().unwrap(), 3).unwrap();
        assert_eq!((p.id.as_str(), p.labels.as_deref()), ("p3", Some(r#"{"answer":"4"}"#)));
        let err = prompt(json!({"id": "x"}).as_object().unwrap(), 0).unwrap_err();
        assert_eq!(err.to_string(), "prompt 0: has neither `prompt` nor `messages`");
    }
}
