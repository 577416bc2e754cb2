//! Reward backends on servers, behind `eva_reward::Reward` like the local ones.
//!
//! - [`ServedJudge`]: an instruct model on an OpenAI-compatible server rates each answer;
//!   the reward is its expected rating under its first-token distribution renormalised
//!   over the score digits, as the local judge computes it. The digits' log-probs come
//!   from `top_logprobs`; a digit not among the 20 likeliest tokens is asked for exactly
//!   (the chat continued with the digit, and its `prompt_logprobs`);
//! - [`ServedClassifier`]: a sequence-classification reward model on vLLM's pooling
//!   runner; the reward is the raw score of the conversation rendered with the model's
//!   chat template (`/classify` with `messages` and `use_activation: false`), as the
//!   local classifier reads it.

use eva_engine::Message;
use eva_reward::{JudgeConfig, RewardItem, Rubric, expected_score};
use serde::{Deserialize, Serialize};

use crate::client::{Client, Error, Result};
use crate::policy::Served;

/// vLLM's default `--max-logprobs`: the most alternatives a request may ask for.
const TOP_LOGPROBS: usize = 20;

/// A judge on servers.
pub struct ServedJudge {
    served: Served,
    rubric: Rubric,
}

impl ServedJudge {
    pub fn new(served: Served, config: &JudgeConfig) -> eva_reward::Result<ServedJudge> {
        Ok(ServedJudge { served, rubric: Rubric::new(config)? })
    }

    fn rate(&self, client: &Client, item: &RewardItem, what: &str) -> Result<f64> {
        let question = self.rubric.question(item).map_err(|e| Error::BadAnswer {
            endpoint: client.endpoint().into(),
            what: what.into(),
            reason: e.to_string(),
        })?;
        let request = JudgeRequest {
            model: &self.served.model,
            messages: &[Message::new("user", question)],
            max_tokens: 1,
            temperature: 0.0,
            logprobs: true,
            top_logprobs: TOP_LOGPROBS,
        };
        let response: JudgeResponse = client.post("/v1/chat/completions", &request, what)?;
        let bad = |reason: &str| Error::BadAnswer {
            endpoint: client.endpoint().into(),
            what: what.into(),
            reason: reason.into(),
        };
        let first = response
            .choices
            .into_iter()
            .next()
            .and_then(|c| c.logprobs)
            .and_then(|l| l.content)
            .and_then(|c| c.into_iter().next())
            .ok_or_else(|| bad("no log-probs of the first token (does the server take `top_logprobs`?)"))?;
        let mut scored = vec![];
        for s in self.rubric.scores() {
            let digit = s.to_string();
            let logprob = match first.top_logprobs.iter().find(|t| t.token == digit) {
                Some(t) => t.logprob,
                // Not among the likeliest: its exact log-prob, as the answer's only token.
                None => self.digit_logprob(client, &request.messages[0], &digit, what)?,
            };
            scored.push((logprob, f64::from(s)));
        }
        Ok(expected_score(&scored))
    }

    /// The judge's log-prob of answering `digit`: the chat continued with it, and the
    /// log-prob of its last token.
    fn digit_logprob(&self, client: &Client, question: &Message, digit: &str, what: &str) -> Result<f64> {
        let request = DigitRequest {
            model: &self.served.model,
            messages: &[question.clone(), Message::new("assistant", digit)],
            add_generation_prompt: false,
            continue_final_message: true,
            prompt_logprobs: 0,
            max_tokens: 1,
            temperature: 0.0,
        };
        let response: DigitResponse = client.post_alone("/v1/chat/completions", &request, what)?;
        let bad = |reason: String| Error::BadAnswer { endpoint: client.endpoint().into(), what: what.into(), reason };
        let last = response
            .prompt_logprobs
            .and_then(|p| p.into_iter().last().flatten())
            .ok_or_else(|| bad("no `prompt_logprobs` for the digit (vLLM gives them; this server may not)".into()))?;
        let entry = match last.len() {
            1 => last.values().next(),
            _ => last.values().find(|e| e["decoded_token"].as_str() == Some(digit)),
        };
        entry
            .and_then(|e| e["logprob"].as_f64())
            .ok_or_else(|| bad(format!("no log-prob for the digit `{digit}` as the answer's last token")))
    }
}

#[derive(Serialize)]
struct DigitRequest<'a> {
    model: &'a str,
    messages: &'a [Message],
    add_generation_prompt: bool,
    continue_final_message: bool,
    prompt_logprobs: usize,
    max_tokens: usize,
    temperature: f32,
}

#[derive(Deserialize)]
struct DigitResponse {
    #[serde(default)]
    prompt_logprobs: Option<Vec<Option<serde_json::Map<String, serde_json::Value>>>>,
}

#[derive(Serialize)]
struct JudgeRequest<'a> {
    model: &'a str,
    messages: &'a [Message],
    max_tokens: usize,
    temperature: f32,
    logprobs: bool,
    top_logprobs: usize,
}

#[derive(Deserialize)]
struct JudgeResponse {
    choices: Vec<JudgeChoice>,
}

#[derive(Deserialize)]
struct JudgeChoice {
    #[serde(default)]
    logprobs: Option<JudgeLogprobs>,
}

#[derive(Deserialize)]
struct JudgeLogprobs {
    #[serde(default)]
    content: Option<Vec<TokenLogprobs>>,
}

#[derive(Deserialize)]
struct TokenLogprobs {
    #[serde(default)]
    top_logprobs: Vec<TopLogprob>,
}

#[derive(Deserialize)]
struct TopLogprob {
    token: String,
    logprob: f64,
}

impl eva_reward::Reward for ServedJudge {
    fn describe(&self) -> String {
        format!("judge `{}` at {}", self.served.model, self.served.endpoints[0].endpoint())
    }

    fn score(&mut self, items: &[RewardItem]) -> eva_reward::Result<Vec<f64>> {
        let work = |client: &Client, i: usize| {
            Ok(Ok(self.rate(client, &items[i], &format!("the judge's rating of item {i}"))?))
        };
        collect(self.served.spread(items.len(), &work, &mut |_, _| {}))
    }
}

/// A reward model on a server's pooling runner.
pub struct ServedClassifier {
    served: Served,
    /// The output of a multi-label head that is the reward.
    label: Option<usize>,
}

impl ServedClassifier {
    pub fn new(served: Served, label: Option<usize>) -> ServedClassifier {
        ServedClassifier { served, label }
    }

    fn reward(&self, client: &Client, item: &RewardItem, what: &str) -> Result<std::result::Result<f64, String>> {
        let conversation = item.conversation();
        let request = ClassifyRequest { model: &self.served.model, messages: &conversation, use_activation: false };
        let response: ClassifyResponse = client.post("/classify", &request, what)?;
        let bad = |reason: String| Error::BadAnswer { endpoint: client.endpoint().into(), what: what.into(), reason };
        let scores = response.data.into_iter().next().map(|d| d.probs).ok_or_else(|| bad("no `data`".into()))?;
        Ok(match (self.label, scores.as_slice()) {
            (None, [one]) => Ok(*one),
            (None, many) => Err(format!("the head has {} labels; choose one with --reward-label", many.len())),
            (Some(l), many) => {
                many.get(l).copied().ok_or_else(|| format!("label {l} asked for, the head has {}", many.len()))
            }
        })
    }
}

#[derive(Serialize)]
struct ClassifyRequest<'a> {
    model: &'a str,
    messages: &'a [Message],
    /// The raw score: no sigmoid or softmax over it.
    use_activation: bool,
}

#[derive(Deserialize)]
struct ClassifyResponse {
    data: Vec<ClassifyData>,
}

#[derive(Deserialize)]
struct ClassifyData {
    probs: Vec<f64>,
}

impl eva_reward::Reward for ServedClassifier {
    fn describe(&self) -> String {
        format!("classifier `{}` at {}", self.served.model, self.served.endpoints[0].endpoint())
    }

    fn score(&mut self, items: &[RewardItem]) -> eva_reward::Result<Vec<f64>> {
        let work = |client: &Client, i: usize| self.reward(client, &items[i], &format!("the reward of item {i}"));
        collect(self.served.spread(items.len(), &work, &mut |_, _| {}))
    }
}

/// Per-item results as the reward's: an endpoint's failure, or the first item refused.
fn collect(results: Result<Vec<std::result::Result<f64, String>>>) -> eva_reward::Result<Vec<f64>> {
    let results = results.map_err(|e| eva_reward::Error::Remote(e.into()))?;
    results
        .into_iter()
        .enumerate()
        .map(|(index, r)| r.map_err(|reason| eva_reward::Error::Item { index, reason }))
        .collect()
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use eva_reward::Reward;
    use serde_json::json;

    use super::*;
    use crate::client::Retry;
    use crate::fake::serve;

    fn served(url: &str) -> Served {
        let retry = Retry { retries: 1, backoff: Duration::from_millis(5), timeout: Duration::from_secs(10) };
        Served::new(vec![Client::new(url, retry).unwrap().with_key(None)], "m", 3)
    }

    fn items() -> Vec<RewardItem> {
        vec![
            RewardItem::new(vec![Message::new("user", "2+2?")], "4"),
            RewardItem::new(vec![Message::new("user", "Capital of France?")], "Rome"),
        ]
    }

    /// The first token's top log-probs; the digits' log-probs come from the answer.
    fn top(pairs: &[(&str, f64)]) -> serde_json::Value {
        let top: Vec<_> = pairs.iter().map(|(t, l)| json!({"token": t, "logprob": l})).collect();
        json!({"choices": [{"logprobs": {"content": [{"token": pairs[0].0, "logprob": pairs[0].1, "top_logprobs": top}]}}]})
    }

    #[test]
    fn the_judges_rating_is_its_expected_digit() {
        // The judge's distribution over the digits: 0.1, 0.2, 0.05, 0.6, 0.05; 2 and 4 are
        // among its top log-probs, the others are asked for one by one.
        const P: [f64; 5] = [0.1, 0.2, 0.05, 0.6, 0.05];
        let server = serve(|_, r| {
            let messages = r.body["messages"].as_array().unwrap();
            if r.body["continue_final_message"] == true {
                let digit: usize = messages[1]["content"].as_str().unwrap().parse().unwrap();
                let last = json!({ (32 + digit).to_string(): {"logprob": P[digit - 1].ln(), "rank": 30} });
                return (200, json!({"choices": [], "prompt_logprobs": [null, {"1": {"logprob": -1.0}}, last]}));
            }
            if messages[0]["content"].as_str().unwrap().contains("Rome") {
                return (404, json!({"error": {"message": "The model `m` does not exist."}}));
            }
            (200, top(&[("4", P[3].ln()), ("The", -1.0), ("2", P[1].ln())]))
        });
        let mut judge = ServedJudge::new(served(&server.url), &JudgeConfig::default()).unwrap();
        let one = judge.score(&items()[..1]).unwrap();
        let want: f64 = P.iter().enumerate().map(|(i, p)| (i + 1) as f64 * p).sum::<f64>() / P.iter().sum::<f64>();
        assert!((one[0] - want).abs() < 1e-12, "{one:?} vs {want}");
        let seen = server.seen.lock().unwrap().clone();
        assert_eq!(seen.len(), 4, "one rating, three digits asked for");
        let (rating, digit) = (&seen[0].body, &seen[1].body);
        assert_eq!((rating["max_tokens"].as_u64(), rating["top_logprobs"].as_u64()), (Some(1), Some(20)));
        assert!(rating["messages"][0]["content"].as_str().unwrap().contains("Answer: 4"), "the rubric: {rating}");
        assert_eq!(
            (digit["prompt_logprobs"].as_u64(), digit["add_generation_prompt"].as_bool()),
            (Some(0), Some(false))
        );
        let err = judge.score(&items()).unwrap_err().to_string();
        assert!(err.starts_with(&format!("{} refused the judge's rating of item 1 (HTTP 404)", server.url)), "{err}");
        assert!(judge.describe().contains(&server.url));
    }

    #[test]
    fn the_reward_model_scores_the_conversation_raw() {
        let server = serve(|_, r| {
            let answer = r.body["messages"][1]["content"].as_str().unwrap().len() as f64;
            (200, json!({"data": [{"index": 0, "label": "LABEL_0", "probs": [answer, -answer], "num_classes": 2}]}))
        });
        let mut two_labels = ServedClassifier::new(served(&server.url), None);
        let err = two_labels.score(&items()).unwrap_err().to_string();
        assert!(err.contains("the head has 2 labels; choose one with --reward-label"), "{err}");
        let mut second = ServedClassifier::new(served(&server.url), Some(1));
        assert_eq!(second.score(&items()).unwrap(), vec![-1.0, -4.0]);
        let sent = server.seen.lock().unwrap()[0].clone();
        assert_eq!(sent.path, "/classify");
        assert_eq!(sent.body["use_activation"], false);
        assert_eq!(sent.body["messages"][1]["role"], "assistant");
    }

    #[test]
    fn a_server_that_is_gone_is_named() {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let url = format!("http://127.0.0.1:{port}");
        let err = ServedClassifier::new(served(&url), None).score(&items()).unwrap_err().to_string();
        assert!(err.starts_with(&format!("{url} cannot be reached after 2 attempts")), "{err}");
    }
}
