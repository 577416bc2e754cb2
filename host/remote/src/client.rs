//! One OpenAI-compatible endpoint.

use std::sync::{Arc, RwLock};
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;

/// The environment variable an API key is read from (`Authorization: Bearer KEY`).
pub const API_KEY_VAR: &str = "EVA_API_KEY";

/// What went wrong with an endpoint; every variant names it.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{endpoint} cannot be reached after {attempts} attempts: {reason}")]
    Unreachable { endpoint: String, attempts: u32, reason: String },
    #[error("{endpoint} refused {what} (HTTP {status}): {message}")]
    Refused { endpoint: String, what: String, status: u16, message: String },
    #[error("{endpoint} answered {what} with something eva cannot read: {reason}")]
    BadAnswer { endpoint: String, what: String, reason: String },
    #[error("`{0}` is not an http:// or https:// URL")]
    NotAUrl(String),
    #[error("{path}")]
    Io { path: std::path::PathBuf, source: std::io::Error },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// How often and how patiently a request is retried.
#[derive(Debug, Clone)]
pub struct Retry {
    /// Attempts after the first.
    pub retries: u32,
    /// The wait before the first retry; it doubles after each.
    pub backoff: Duration,
    /// The longest a request may take (a long generation included).
    pub timeout: Duration,
}

impl Default for Retry {
    fn default() -> Self {
        Retry { retries: 5, backoff: Duration::from_millis(500), timeout: Duration::from_secs(600) }
    }
}

/// One server: `http(s)://HOST:PORT`, with or without the `/v1` of its OpenAI routes.
#[derive(Debug, Clone)]
pub struct Client {
    base: String,
    agent: ureq::Agent,
    key: Option<String>,
    retry: Retry,
    /// Held for writing by a request that must have the server to itself
    /// ([`Client::post_alone`]), for reading by every other.
    alone: Arc<RwLock<()>>,
}

impl Client {
    pub fn new(url: &str, retry: Retry) -> Result<Client> {
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            return Err(Error::NotAUrl(url.into()));
        }
        let base = url.trim_end_matches('/').trim_end_matches("/v1").to_owned();
        let agent = ureq::Agent::config_builder()
            .timeout_global(Some(retry.timeout))
            // A refusal's body says why: read it instead of a bare status error.
            .http_status_as_error(false)
            .build()
            .into();
        let key = std::env::var(API_KEY_VAR).ok().filter(|k| !k.is_empty());
        Ok(Client { base, agent, key, retry, alone: Default::default() })
    }

    /// The same endpoint with another API key (`None`: none), in place of the
    /// environment's.
    pub fn with_key(mut self, key: Option<String>) -> Client {
        self.key = key;
        self
    }

    /// The endpoint as errors and logs name it.
    pub fn endpoint(&self) -> &str {
        &self.base
    }

    /// POST `body` as JSON to `path` (from the server's root, e.g. `/v1/chat/completions`)
    /// and read the answer as JSON; `what` says what the request is for, in errors.
    pub fn post<B: Serialize, R: DeserializeOwned>(&self, path: &str, body: &B, what: &str) -> Result<R> {
        let _shared = self.alone.read().unwrap_or_else(|e| e.into_inner());
        self.json(self.call(path, Some(serde_json::to_vec(body).expect("requests serialize")), what)?, what)
    }

    /// [`Client::post`] with no other request of this client in flight: vLLM 0.32's CPU
    /// build with `--enable-lora` dies when a `prompt_logprobs` request shares an engine
    /// step with any other request (docs/engines-notes.md), so eva sends those alone.
    pub fn post_alone<B: Serialize, R: DeserializeOwned>(&self, path: &str, body: &B, what: &str) -> Result<R> {
        let _alone = self.alone.write().unwrap_or_else(|e| e.into_inner());
        self.json(self.call(path, Some(serde_json::to_vec(body).expect("requests serialize")), what)?, what)
    }

    fn json<R: DeserializeOwned>(&self, text: String, what: &str) -> Result<R> {
        serde_json::from_str(&text).map_err(|e| Error::BadAnswer {
            endpoint: self.base.clone(),
            what: what.into(),
            reason: format!("{e} in {}", clip(&text)),
        })
    }

    /// [`Client::post`] for routes that answer in plain text.
    pub fn post_text<B: Serialize>(&self, path: &str, body: &B, what: &str) -> Result<String> {
        let _shared = self.alone.read().unwrap_or_else(|e| e.into_inner());
        self.call(path, Some(serde_json::to_vec(body).expect("requests serialize")), what)
    }

    /// The names of the models the server serves (`GET /v1/models`).
    pub fn models(&self) -> Result<Vec<String>> {
        let what = "the list of its models";
        let text = self.call("/v1/models", None, what)?;
        let bad = |reason: String| Error::BadAnswer { endpoint: self.base.clone(), what: what.into(), reason };
        let list: serde_json::Value =
            serde_json::from_str(&text).map_err(|e| bad(format!("{e} in {}", clip(&text))))?;
        let data = list["data"].as_array().ok_or_else(|| bad(format!("no `data` list in {}", clip(&text))))?;
        Ok(data.iter().filter_map(|m| m["id"].as_str().map(str::to_owned)).collect())
    }

    /// The one model the server serves, or an error naming them all.
    pub fn only_model(&self) -> Result<String> {
        match self.models()?.as_slice() {
            [one] => Ok(one.clone()),
            many => Err(Error::BadAnswer {
                endpoint: self.base.clone(),
                what: "the list of its models".into(),
                reason: format!("it serves {many:?}: name the model to use"),
            }),
        }
    }

    /// GET (`body: None`) or POST a request, with retries.
    fn call(&self, path: &str, body: Option<Vec<u8>>, what: &str) -> Result<String> {
        let url = format!("{}{path}", self.base);
        let auth = self.key.as_ref().map(|key| format!("Bearer {key}"));
        let mut wait = self.retry.backoff;
        let mut last = String::new();
        for attempt in 0..=self.retry.retries {
            if attempt > 0 {
                tracing::warn!(endpoint = self.base, attempt, "{what}: {last}; retrying in {wait:?}");
                std::thread::sleep(wait);
                wait *= 2;
            }
            let sent = match &body {
                Some(bytes) => {
                    let mut request = self.agent.post(&url).header("content-type", "application/json");
                    if let Some(auth) = &auth {
                        request = request.header("authorization", auth);
                    }
                    request.send(&bytes[..])
                }
                None => {
                    let mut request = self.agent.get(&url);
                    if let Some(auth) = &auth {
                        request = request.header("authorization", auth);
                    }
                    request.call()
                }
            };
            let mut response = match sent {
                Ok(r) => r,
                Err(e) => {
                    last = e.to_string();
                    continue;
                }
            };
            let status = response.status().as_u16();
            let text = match response.body_mut().read_to_string() {
                Ok(t) => t,
                Err(e) => {
                    last = format!("reading the answer: {e}");
                    continue;
                }
            };
            if status >= 500 {
                last = format!("HTTP {status}: {}", message_of(&text));
                continue;
            }
            if status >= 400 {
                return Err(Error::Refused {
                    endpoint: self.base.clone(),
                    what: what.into(),
                    status,
                    message: message_of(&text),
                });
            }
            return Ok(text);
        }
        Err(Error::Unreachable { endpoint: self.base.clone(), attempts: self.retry.retries + 1, reason: last })
    }
}

/// The `error.message` of an OpenAI-style error body, else the body itself (clipped).
fn message_of(body: &str) -> String {
    let parsed: Option<serde_json::Value> = serde_json::from_str(body).ok();
    let message = parsed.as_ref().and_then(|v| {
        v["error"]["message"].as_str().or(v["error"].as_str()).or(v["message"].as_str()).or(v["detail"].as_str())
    });
    clip(message.unwrap_or(body))
}

fn clip(text: &str) -> String {
    const MAX: usize = 500;
    let text = text.trim();
    match text.char_indices().nth(MAX) {
        Some((i, _)) => format!("{}...", &text[..i]),
        None => text.to_owned(),
    }
}
