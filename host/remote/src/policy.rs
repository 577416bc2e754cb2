//! The policy on servers: `eva_loop::run::Policy` over OpenAI-compatible endpoints that
//! all serve the same model.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, mpsc};

use eva_engine::{Message, WeightFormat};
use eva_loop::candle::{CandleEngine, CandleTrainer};
use eva_loop::creator::RoleError;
use eva_loop::external::ExternalTrainer;
use eva_loop::layout::{PairRecord, PromptRecord, RunStore};
use eva_loop::progress::Progress;
use eva_loop::run::{Draft, Engine, Policy, Sampling, Trainer};
use eva_plugin_runtime::{GenerateRequest, Generator};
use serde::{Deserialize, Serialize};

use crate::client::{Client, Error, Result};

/// Endpoints that serve one model.
pub struct Served {
    pub endpoints: Vec<Client>,
    /// The model's name on the servers (`--served-model-name`, or the path they loaded).
    pub model: String,
    /// Requests in flight per endpoint.
    pub concurrency: usize,
    /// Set once an endpoint has said it cannot count a chat's tokens.
    no_tokenize: AtomicBool,
}

impl Served {
    pub fn new(endpoints: Vec<Client>, model: impl Into<String>, concurrency: usize) -> Served {
        Served { endpoints, model: model.into(), concurrency: concurrency.max(1), no_tokenize: AtomicBool::new(false) }
    }

    /// `work(endpoint, i)` for every i < `count`, spread over every endpoint with
    /// `concurrency` requests in flight on each; `done(i, &result)` is called on this
    /// thread as each finishes. The first error stops the rest (requests in flight finish).
    pub(crate) fn spread<T: Send>(
        &self,
        count: usize,
        work: &(dyn Fn(&Client, usize) -> Result<T> + Sync),
        done: &mut dyn FnMut(usize, &T),
    ) -> Result<Vec<T>> {
        let next = AtomicUsize::new(0);
        let stop = AtomicBool::new(false);
        let (send, receive) = mpsc::channel();
        let mut out: Vec<Option<T>> = (0..count).map(|_| None).collect();
        let mut failed = None;
        std::thread::scope(|scope| {
            for client in &self.endpoints {
                for _ in 0..self.concurrency.min(count) {
                    let (send, next, stop) = (send.clone(), &next, &stop);
                    scope.spawn(move || {
                        while !stop.load(Ordering::Relaxed) {
                            let i = next.fetch_add(1, Ordering::Relaxed);
                            if i >= count {
                                break;
                            }
                            let result = work(client, i);
                            if result.is_err() {
                                stop.store(true, Ordering::Relaxed);
                            }
                            if send.send((i, result)).is_err() {
                                break;
                            }
                        }
                    });
                }
            }
            drop(send);
            for (i, result) in receive {
                match result {
                    Ok(value) => {
                        done(i, &value);
                        out[i] = Some(value);
                    }
                    Err(e) => {
                        failed.get_or_insert(e);
                    }
                }
            }
        });
        if let Some(e) = failed {
            return Err(e);
        }
        Ok(out.into_iter().map(|v| v.expect("every item is done")).collect())
    }
}

/// The seed of one prompt's request: from the run's seed and the prompt's id only, so a
/// prompt gets the same answers whichever endpoint serves it and whatever else it is
/// served with. 63 bits: servers take a signed 64-bit seed.
pub fn prompt_seed(seed: u64, id: &str) -> u64 {
    // FNV-1a over the id, mixed with the seed.
    let hash = id.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ b as u64).wrapping_mul(0x0000_0100_0000_01b3));
    (hash ^ seed.wrapping_mul(0x9E37_79B9_7F4A_7C15)) & (i64::MAX as u64)
}

#[derive(Serialize)]
struct ChatRequest<'a> {
    model: &'a str,
    messages: &'a [Message],
    n: usize,
    temperature: f32,
    top_p: f32,
    max_tokens: usize,
    seed: u64,
    /// Asked only to count each answer's tokens (`usage` sums the choices).
    logprobs: bool,
}

#[derive(Deserialize)]
struct ChatResponse {
    choices: Vec<Choice>,
}

#[derive(Deserialize)]
struct Choice {
    #[serde(default)]
    index: usize,
    message: ChoiceMessage,
    #[serde(default)]
    logprobs: Option<ChoiceLogprobs>,
}

#[derive(Deserialize)]
struct ChoiceMessage {
    #[serde(default)]
    content: Option<String>,
}

#[derive(Deserialize)]
struct ChoiceLogprobs {
    #[serde(default)]
    content: Option<Vec<serde_json::Value>>,
}

/// One chat, `n` answers with their token counts, in the order of their `index`.
fn chat(client: &Client, model: &str, messages: &[Message], s: &Sampling, seed: u64, what: &str) -> Result<Vec<Draft>> {
    let request = ChatRequest {
        model,
        messages,
        n: s.n,
        temperature: s.temperature,
        top_p: s.top_p,
        max_tokens: s.max_new_tokens,
        seed,
        logprobs: true,
    };
    let response: ChatResponse = client.post("/v1/chat/completions", &request, what)?;
    let bad = |reason: String| Error::BadAnswer { endpoint: client.endpoint().into(), what: what.into(), reason };
    if response.choices.len() != s.n {
        return Err(bad(format!("{} answers where {} were asked for", response.choices.len(), s.n)));
    }
    let mut choices = response.choices;
    choices.sort_by_key(|c| c.index);
    choices
        .into_iter()
        .map(|c| {
            let tokens = c.logprobs.and_then(|l| l.content).map(|t| t.len());
            let tokens = tokens.ok_or_else(|| bad("no per-token log-probs to count an answer's tokens".into()))?;
            Ok(Draft { text: c.message.content.unwrap_or_default(), tokens: tokens as u32 })
        })
        .collect()
}

/// θ_t on servers: the base model they serve, or an adapter loaded into them.
pub struct RemotePolicy {
    served: Arc<Served>,
    /// The name requests give for θ_t.
    model: String,
    /// θ_t on this machine (a Hugging Face directory), for a local trainer.
    local: PathBuf,
    progress: Arc<dyn Progress>,
}

impl RemotePolicy {
    /// The base model the servers serve, which is `local` on this machine.
    pub fn new(served: Arc<Served>, local: PathBuf, progress: Arc<dyn Progress>) -> RemotePolicy {
        RemotePolicy { model: served.model.clone(), served, local, progress }
    }

    /// The name requests give for θ_t.
    pub fn model(&self) -> &str {
        &self.model
    }

    /// θ_t on this machine.
    pub fn local(&self) -> &Path {
        &self.local
    }
}

#[derive(Serialize)]
struct TokenizeRequest<'a> {
    model: &'a str,
    messages: &'a [Message],
    add_generation_prompt: bool,
}

#[derive(Deserialize)]
struct TokenizeResponse {
    count: usize,
    max_model_len: usize,
}

impl Policy for RemotePolicy {
    fn respond(&self, prompts: &[PromptRecord], s: &Sampling, what: &str) -> Result<Vec<Vec<Draft>>, RoleError> {
        let (served, model) = (&self.served, self.model.as_str());
        let tracker = self.progress.start(what, prompts.len() as u64, "prompts");
        let work = |client: &Client, i: usize| {
            let p = &prompts[i];
            chat(client, model, &p.messages, s, prompt_seed(s.seed, &p.id), &format!("prompt `{}`", p.id))
        };
        Ok(served.spread(prompts.len(), &work, &mut |_, _| tracker.advance(1))?)
    }

    fn unfit(&self, messages: &[Message], max_new_tokens: usize) -> Result<Option<String>, RoleError> {
        let served = &self.served;
        if served.no_tokenize.load(Ordering::Relaxed) {
            return Ok(None);
        }
        let client = &served.endpoints[0];
        let request = TokenizeRequest { model: &served.model, messages, add_generation_prompt: true };
        let counted: TokenizeResponse = match client.post("/tokenize", &request, "counting a prompt's tokens") {
            Ok(r) => r,
            // A server without vLLM's `/tokenize`: the prompt is sent as it is, and a server
            // that cannot fit it refuses it by name then.
            Err(Error::Refused { status: 404 | 405, .. }) | Err(Error::BadAnswer { .. }) => {
                tracing::warn!(endpoint = client.endpoint(), "cannot count a chat's tokens: prompts are not checked");
                served.no_tokenize.store(true, Ordering::Relaxed);
                return Ok(None);
            }
            Err(e) => return Err(e.into()),
        };
        let (tokens, context) = (counted.count, counted.max_model_len);
        Ok((tokens + max_new_tokens > context).then(|| {
            format!(
                "too long: {tokens} tokens under the served model's chat template, plus --max-new-tokens \
                 {max_new_tokens}, exceed its context of {context}"
            )
        }))
    }

    fn generator(&self, max_tokens: u32, seed: u64) -> Arc<dyn Generator> {
        Arc::new(RemoteGenerator { served: self.served.clone(), model: self.model.clone(), max_tokens, seed })
    }
}

/// The evolver's `generate` on the servers, one answer per request.
pub struct RemoteGenerator {
    served: Arc<Served>,
    model: String,
    max_tokens: u32,
    seed: u64,
}

impl Generator for RemoteGenerator {
    fn complete(&self, requests: &[GenerateRequest]) -> Result<Vec<String>, String> {
        let work = |client: &Client, i: usize| {
            let r = &requests[i];
            let messages: Vec<Message> =
                r.messages.iter().map(|m| Message::new(m.role.as_str(), m.content.as_str())).collect();
            let sampling = Sampling {
                n: 1,
                temperature: r.temperature,
                top_p: r.top_p,
                max_new_tokens: r.max_tokens.min(self.max_tokens) as usize,
                seed: self.seed,
            };
            let seed = self.seed.wrapping_add(i as u64) & (i64::MAX as u64);
            let drafts = chat(client, &self.model, &messages, &sampling, seed, "a generate request")?;
            Ok(drafts.into_iter().next().map(|d| d.text).unwrap_or_default())
        };
        self.served.spread(requests.len(), &work, &mut |_, _| {}).map_err(|e| e.to_string())
    }
}

/// Loads θ_t on the servers: the base they serve, or θ_{t+1} of a finished iteration as
/// one adapter (the updates of every iteration so far stacked, see [`crate::handoff`]),
/// loaded into every endpoint under a name of its own. Needs a trainer that kept each
/// update (`CandleTrainer::keep_update`).
pub struct RemoteEngine {
    pub served: Arc<Served>,
    /// The base model on this machine: the Hugging Face directory the servers loaded.
    pub base: PathBuf,
    pub store: RunStore,
    pub progress: Arc<dyn Progress>,
}

#[derive(Serialize)]
struct LoadAdapter<'a> {
    lora_name: &'a str,
    lora_path: &'a str,
    /// A server that kept the name from an earlier attempt takes the adapter again.
    load_inplace: bool,
}

impl RemoteEngine {
    /// θ_{t+1} of iteration `t` as one adapter over the base, written once.
    fn stacked(&self, t: usize) -> Result<PathBuf, RoleError> {
        let dir = self.store.iteration(t);
        let adapter = dir.adapter();
        if adapter.join("adapter_config.json").is_file() {
            return Ok(adapter);
        }
        let summaries = self.store.summaries()?;
        let mut updates = vec![];
        for k in 1..=t {
            let trained = summaries.iter().find(|m| m.iteration == k).is_none_or(|m| m.pairs > 0);
            let update = self.store.iteration(k).train_adapter();
            if trained && self.store.iteration(k).model().is_dir() {
                if !update.is_dir() {
                    return Err(format!(
                        "iteration {k} trained without keeping its update ({}): the servers cannot be given \
                         θ_{} (was it run without --policy-endpoint?)",
                        update.display(),
                        t + 1
                    )
                    .into());
                }
                updates.push(update);
            }
        }
        let rank = crate::handoff::stack(&updates, &adapter)?;
        tracing::info!(iteration = t, rank, "θ_{} as one adapter: {}", t + 1, adapter.display());
        Ok(adapter)
    }
}

impl Engine for RemoteEngine {
    type Policy = RemotePolicy;
    fn load(&mut self, path: &Path) -> Result<RemotePolicy, RoleError> {
        let mut policy = RemotePolicy::new(self.served.clone(), path.to_owned(), self.progress.clone());
        if path == self.base {
            return Ok(policy);
        }
        let t = (1..=self.store.summaries()?.len() + 1).find(|t| self.store.iteration(*t).model() == path).ok_or_else(
            || format!("{} is neither the served base {} nor a model of this run", path.display(), self.base.display()),
        )?;
        let adapter = std::path::absolute(self.stacked(t)?).map_err(|e| format!("{}: {e}", path.display()))?;
        let name = format!("eva-iter-{t}");
        let request = LoadAdapter { lora_name: &name, lora_path: &adapter.to_string_lossy(), load_inplace: true };
        for client in &self.served.endpoints {
            client.post_text(
                "/v1/load_lora_adapter",
                &request,
                &format!("loading θ_{} ({})", t + 1, adapter.display()),
            )?;
        }
        tracing::info!(endpoints = self.served.endpoints.len(), "θ_{} is served as `{name}`", t + 1);
        policy.model = name;
        Ok(policy)
    }
}

/// Who trains a policy on servers, on this machine.
pub enum Training {
    /// eva's candle trainer.
    Candle(CandleTrainer),
    /// A command of the user's.
    External(ExternalTrainer),
}

/// The trainer for a policy on servers: θ_t is loaded on this machine from the directory
/// the policy names and trained, and each update is kept for the servers. With
/// `served_reference`, the DPO reference log-probs come from the servers that serve θ_t.
pub struct LocalTrainer {
    pub training: Training,
    pub served_reference: bool,
}

impl Trainer<RemotePolicy> for LocalTrainer {
    fn train(
        &mut self,
        policy: &RemotePolicy,
        pairs: &[PairRecord],
        out: &Path,
        model_dir: &Path,
    ) -> Result<Vec<(f64, f64)>, RoleError> {
        let progress = match &self.training {
            Training::Candle(t) => t.progress.clone(),
            Training::External(t) => t.progress.clone(),
        };
        let local = CandleEngine { weights: WeightFormat::F32, progress }.load(&policy.local)?;
        let mut reference = None;
        if self.served_reference {
            let mut tokenized = eva_loop::candle::tokenize_pairs(local.model(), pairs)?;
            std::fs::create_dir_all(out).map_err(|source| Error::Io { path: out.into(), source })?;
            crate::reference::reference(&policy.served, &policy.model, &mut tokenized, &out.join(REFERENCE))?;
            reference = Some(tokenized.iter().map(|p| (p.ref_chosen, p.ref_rejected)).collect::<Vec<_>>());
        }
        match &mut self.training {
            // The candle trainer finds the reference in its cache.
            Training::Candle(t) => {
                t.keep_update = true;
                t.train(&local, pairs, out, model_dir)
            }
            Training::External(t) => {
                t.keep_update = true;
                Ok(t.train_from(local.model(), Some(&policy.local), pairs, reference.as_deref(), out, model_dir)?)
            }
        }
    }

    fn losses(&self, out: &Path) -> Result<Vec<(f64, f64)>, RoleError> {
        Ok(eva_loop::candle::read_losses(out)?)
    }
}

/// The solver's cache of reference log-probs in its directory.
const REFERENCE: &str = "reference.jsonl";

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use eva_loop::progress::Silent;

    use super::*;
    use crate::client::Retry;
    use crate::fake::{echo_chat, serve};

    fn quick() -> Retry {
        Retry { retries: 2, backoff: Duration::from_millis(5), timeout: Duration::from_secs(10) }
    }

    fn policy(urls: &[&str], concurrency: usize) -> RemotePolicy {
        let clients = urls.iter().map(|u| Client::new(u, quick()).unwrap().with_key(None)).collect();
        RemotePolicy::new(Arc::new(Served::new(clients, "m", concurrency)), PathBuf::from("m"), Arc::new(Silent))
    }

    fn prompts(n: usize) -> Vec<PromptRecord> {
        (0..n)
            .map(|i| PromptRecord {
                id: format!("q{i}"),
                messages: vec![Message::new("user", format!("prompt {i}"))],
                origin: "seed".into(),
                parent: None,
                method: None,
                labels: None,
            })
            .collect()
    }

    const SAMPLING: Sampling = Sampling { n: 3, temperature: 0.7, top_p: 0.9, max_new_tokens: 16, seed: 11 };

    #[test]
    fn answers_do_not_depend_on_how_prompts_are_spread() {
        let (a, b) = (serve(|_, r| echo_chat(r)), serve(|_, r| echo_chat(r)));
        let prompts = prompts(7);
        let one = policy(&[&a.url], 1).respond(&prompts, &SAMPLING, "x").unwrap();
        let two = policy(&[&a.url, &format!("{}/v1/", b.url)], 3).respond(&prompts, &SAMPLING, "x").unwrap();
        assert_eq!(one, two);
        assert_eq!(one.len(), 7);
        assert_eq!(one[2][1].text, format!("seed {} to \"prompt 2\" #1", prompt_seed(11, "q2")));
        assert_eq!(one[2][1].tokens, 6, "counted from the per-token log-probs");
        assert!(!b.seen.lock().unwrap().is_empty(), "the second endpoint served some prompts");
        let keyed = Client::new(&a.url, quick()).unwrap().with_key(Some("k-123".into()));
        let served = Arc::new(Served::new(vec![keyed], "m", 1));
        RemotePolicy::new(served, PathBuf::from("m"), Arc::new(Silent)).respond(&prompts[..1], &SAMPLING, "x").unwrap();
        assert_eq!(a.seen.lock().unwrap().last().unwrap().authorization.as_deref(), Some("Bearer k-123"));
        let sent = &a.seen.lock().unwrap()[0];
        assert_eq!(sent.authorization, None, "no key, no header");
        assert_eq!(sent.path, "/v1/chat/completions");
        let b = &sent.body;
        assert_eq!((b["model"].as_str(), b["n"].as_u64(), b["max_tokens"].as_u64()), (Some("m"), Some(3), Some(16)));
        assert_ne!(prompt_seed(11, "q1"), prompt_seed(11, "q2"));
        assert_ne!(prompt_seed(11, "q1"), prompt_seed(12, "q1"));
    }

    #[test]
    fn server_errors_are_retried_and_a_refusal_names_endpoint_and_prompt() {
        let flaky = serve(|n, r| if n < 2 { (503, serde_json::json!({"error": "busy"})) } else { echo_chat(r) });
        let answers = policy(&[&flaky.url], 1).respond(&prompts(1), &SAMPLING, "x").unwrap();
        assert_eq!(answers[0].len(), 3);
        assert_eq!(flaky.seen.lock().unwrap().len(), 3, "two 503s, then an answer");

        let refusing = serve(|_, r| {
            if r.body["messages"][0]["content"] == "prompt 1" {
                (400, serde_json::json!({"error": {"message": "maximum context length is 2048 tokens"}}))
            } else {
                echo_chat(r)
            }
        });
        let err = policy(&[&refusing.url], 1).respond(&prompts(3), &SAMPLING, "x").unwrap_err().to_string();
        let want = format!("{} refused prompt `q1` (HTTP 400): maximum context length is 2048 tokens", refusing.url);
        assert_eq!(err, want);
        assert!(refusing.seen.lock().unwrap().len() <= 3, "no retry of a refusal");
    }

    /// An answer phase committed in chunks on a server that dies after three requests:
    /// the error names it, the finished chunks stay, and a resume on a healthy server asks
    /// only for the rest and ends as an uninterrupted phase.
    #[test]
    fn a_server_lost_mid_phase_loses_only_the_chunk_under_way() {
        let dir = tempfile::tempdir().unwrap();
        let store = RunStore::new(dir.path());
        let prompts = prompts(7);
        let phase = |url: &str, path: &Path| {
            let policy = policy(&[url], 1);
            store.chunked_phase("respond", path, &prompts, 2, |_, chunk| policy.respond(chunk, &SAMPLING, "x"))
        };
        let healthy = serve(|_, r| echo_chat(r));
        let whole = phase(&healthy.url, &dir.path().join("whole.jsonl")).unwrap();

        let dying = serve(|n, r| if n < 3 { echo_chat(r) } else { (503, serde_json::json!({"error": "gone"})) });
        let path = store.iteration(1).answers();
        let err = format!("{:?}", phase(&dying.url, &path).unwrap_err());
        assert!(err.contains(&dying.url) && err.contains("Unreachable") && err.contains("attempts: 3"), "{err}");
        let fresh = serve(|_, r| echo_chat(r));
        assert_eq!(phase(&fresh.url, &path).unwrap(), whole);
        assert_eq!(fresh.seen.lock().unwrap().len(), 5, "prompts 0-1 were kept; 2-6 asked again");
    }

    #[test]
    fn a_dead_endpoint_is_named_after_its_retries() {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let url = format!("http://127.0.0.1:{port}");
        let err = policy(&[&url], 2).respond(&prompts(2), &SAMPLING, "x").unwrap_err().to_string();
        assert!(err.starts_with(&format!("{url} cannot be reached after 3 attempts")), "{err}");
        assert!(Client::new("localhost:8000", quick()).is_err(), "not a URL");
    }

    #[test]
    fn a_too_long_prompt_is_found_with_the_servers_tokenizer() {
        let server = serve(|_, r| match r.path.as_str() {
            "/tokenize" => (200, serde_json::json!({"count": 2000, "max_model_len": 2048, "tokens": []})),
            _ => echo_chat(r),
        });
        let policy = policy(&[&server.url], 1);
        let chat = [Message::new("user", "long")];
        assert!(policy.unfit(&chat, 48).unwrap().is_none());
        let why = policy.unfit(&chat, 49).unwrap().unwrap();
        assert!(why.contains("2000 tokens") && why.contains("context of 2048"), "{why}");
        let without = serve(|_, r| if r.path == "/tokenize" { (404, serde_json::json!({})) } else { echo_chat(r) });
        let policy = super::tests::policy(&[&without.url], 1);
        assert!(policy.unfit(&chat, 10_000).unwrap().is_none(), "unknown: not refused here");
        policy.unfit(&chat, 10_000).unwrap();
        assert_eq!(without.seen.lock().unwrap().len(), 1, "asked once");
    }

    #[test]
    fn the_evolvers_requests_are_answered_in_order() {
        let server = serve(|_, r| echo_chat(r));
        let generator = policy(&[&server.url], 4).generator(8, 5);
        let requests: Vec<GenerateRequest> = (0..5)
            .map(|i| GenerateRequest {
                messages: vec![eva_plugin_runtime::ChatMessage { role: "user".into(), content: format!("r{i}") }],
                max_tokens: 100,
                temperature: 0.5,
                top_p: 1.0,
            })
            .collect();
        let texts = generator.complete(&requests).unwrap();
        for (i, t) in texts.iter().enumerate() {
            assert!(t.ends_with(&format!("to \"r{i}\" #0")), "{t}");
        }
        assert!(server.seen.lock().unwrap().iter().all(|s| s.body["max_tokens"] == 8), "clamped");
    }
}
