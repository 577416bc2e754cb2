//! One OpenAI-compatible endpoint.

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
        Ok(Client { base, agent, key, retry })
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
        let text = self.post_text(path, body, what)?;
        serde_json::from_str(&text).map_err(|e| Error::BadAnswer {
            endpoint: self.base.clone(),
            what: what.into(),
            reason: format!("{e} in {}", clip(&text)),
        })
    }

    /// [`Client::post`] for routes that answer in plain text.
    pub fn post_text<B: Serialize>(&self, path: &str, body: &B, what: &str) -> Result<String> {
        let url = format!("{}{path}", self.base);
        let bytes = serde_json::to_vec(body).expect("requests serialize");
        let mut wait = self.retry.backoff;
        let mut last = String::new();
        for attempt in 0..=self.retry.retries {
            if attempt > 0 {
                tracing::warn!(endpoint = self.base, attempt, "{what}: {last}; retrying in {wait:?}");
                std::thread::sleep(wait);
                wait *= 2;
            }
            let mut request = self.agent.post(&url).header("content-type", "application/json");
            if let Some(key) = &self.key {
                request = request.header("authorization", format!("Bearer {key}"));
            }
            let mut response = match request.send(&bytes[..]) {
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
