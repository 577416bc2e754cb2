//! The DPO reference on servers: θ_t's log-probs of each pair's answers, asked of the
//! endpoints that serve θ_t (vLLM's `prompt_logprobs` over a prompt of token ids), on
//! exactly the tokens the trainer sees. A server that cannot give log-probs of a given
//! text (llama.cpp's `llama-server` ignores `echo`) is refused by name.

use std::path::Path;

use eva_solver::TokenizedPair;
use serde::{Deserialize, Serialize};

use crate::client::{Client, Error, Result};
use crate::policy::Served;

#[derive(Serialize)]
struct Request<'a> {
    model: &'a str,
    prompt: &'a [u32],
    max_tokens: usize,
    temperature: f32,
    /// vLLM: the log-prob of each prompt token, with 0 alternatives.
    prompt_logprobs: usize,
}

#[derive(Deserialize)]
struct Response {
    choices: Vec<Choice>,
}

#[derive(Deserialize)]
struct Choice {
    #[serde(default)]
    prompt_logprobs: Option<Vec<Option<serde_json::Map<String, serde_json::Value>>>>,
}

/// The sum of θ_t's log-probs of `answer` after `prompt`.
fn answer_logprob(client: &Client, model: &str, prompt: &[u32], answer: &[u32], what: &str) -> Result<f64> {
    let tokens: Vec<u32> = prompt.iter().chain(answer).copied().collect();
    let request = Request { model, prompt: &tokens, max_tokens: 1, temperature: 0.0, prompt_logprobs: 0 };
    let response: Response = client.post_alone("/v1/completions", &request, what)?;
    let bad = |reason: String| Error::BadAnswer { endpoint: client.endpoint().into(), what: what.into(), reason };
    let per_token = response.choices.into_iter().next().and_then(|c| c.prompt_logprobs).ok_or_else(|| {
        bad("no `prompt_logprobs`: this server cannot give log-probs of a given text (use the local reference)".into())
    })?;
    if per_token.len() != tokens.len() {
        return Err(bad(format!("{} prompt log-probs for {} tokens", per_token.len(), tokens.len())));
    }
    let mut sum = 0.0;
    for (position, id) in tokens.iter().enumerate().skip(prompt.len()) {
        let entry = per_token[position].as_ref().and_then(|m| m.get(&id.to_string()));
        let logprob = entry
            .and_then(|e| e["logprob"].as_f64())
            .ok_or_else(|| bad(format!("no log-prob for token {id} at position {position} of the given text")))?;
        sum += logprob;
    }
    Ok(sum)
}

/// Each pair's reference log-probs (chosen, rejected) from θ_t served as `model`, kept in
/// `cache` (the solver's `reference.jsonl`, whose rows are the pairs with their reference
/// values) so that a resumed run uses the same numbers.
pub fn reference(served: &Served, model: &str, pairs: &mut [TokenizedPair], cache: &Path) -> Result<()> {
    if let Ok(text) = std::fs::read_to_string(cache) {
        let saved: Vec<TokenizedPair> = text.lines().filter_map(|l| serde_json::from_str(l).ok()).collect();
        let same = saved.len() == pairs.len()
            && saved
                .iter()
                .zip(pairs.iter())
                .all(|(s, p)| (&s.prompt, &s.chosen, &s.rejected) == (&p.prompt, &p.chosen, &p.rejected));
        if same {
            pairs.clone_from_slice(&saved);
            return Ok(());
        }
    }
    let _span = tracing::info_span!("reference log-probs on servers", pairs = pairs.len()).entered();
    let work = |client: &Client, i: usize| {
        let (p, pair) = (&pairs[i / 2], i / 2 + 1);
        let (answer, which) = if i.is_multiple_of(2) { (&p.chosen, "chosen") } else { (&p.rejected, "rejected") };
        answer_logprob(
            client,
            model,
            &p.prompt,
            answer,
            &format!("the reference log-probs of pair {pair}'s {which} answer"),
        )
    };
    let sums = served.spread(2 * pairs.len(), &work, &mut |_, _| {})?;
    for (p, s) in pairs.iter_mut().zip(sums.chunks(2)) {
        (p.ref_chosen, p.ref_rejected) = (s[0], s[1]);
    }
    let text: String = pairs.iter().map(|p| serde_json::to_string(p).expect("json") + "\n").collect();
    eva_engine::atomic::write_file(cache, text.as_bytes()).map_err(|source| Error::Io { path: cache.into(), source })
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use serde_json::json;

    use super::*;
    use crate::client::Retry;
    use crate::fake::serve;

    fn served(url: &str) -> Served {
        let retry = Retry { retries: 0, backoff: Duration::from_millis(5), timeout: Duration::from_secs(10) };
        Served::new(vec![Client::new(url, retry).unwrap().with_key(None)], "theta", 2)
    }

    fn pair(prompt: &[u32], chosen: &[u32], rejected: &[u32]) -> TokenizedPair {
        TokenizedPair {
            prompt: prompt.into(),
            chosen: chosen.into(),
            rejected: rejected.into(),
            ref_chosen: 0.0,
            ref_rejected: 0.0,
        }
    }

    /// vLLM's `prompt_logprobs`: `null` first, then the given token's entry (log-prob
    /// -token/10 here) and an alternative.
    fn logprobs(r: &crate::fake::Seen) -> (u16, serde_json::Value) {
        let ids: Vec<u64> = r.body["prompt"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap()).collect();
        let mut per = vec![serde_json::Value::Null];
        for id in &ids[1..] {
            per.push(json!({ id.to_string(): {"logprob": -(*id as f64) / 10.0, "rank": 1}, "999": {"logprob": -9.0} }));
        }
        (200, json!({"choices": [{"text": "", "prompt_logprobs": per}]}))
    }

    #[test]
    fn the_reference_sums_the_answers_tokens_and_is_kept() {
        let server = serve(|_, r| logprobs(r));
        let dir = tempfile::tempdir().unwrap();
        let cache = dir.path().join("reference.jsonl");
        let mut pairs = vec![pair(&[1, 2], &[3, 4], &[5]), pair(&[7], &[8], &[9, 10])];
        reference(&served(&server.url), "theta", &mut pairs, &cache).unwrap();
        let got: Vec<(f64, f64)> = pairs.iter().map(|p| (p.ref_chosen, p.ref_rejected)).collect();
        assert_eq!(got, vec![(-0.7, -0.5), (-0.8, -1.9)]);
        let sent = server.seen.lock().unwrap()[0].body.clone();
        assert_eq!((sent["model"].as_str(), sent["prompt_logprobs"].as_u64()), (Some("theta"), Some(0)));
        let asked = server.seen.lock().unwrap().len();
        assert_eq!(asked, 4);
        let mut again = vec![pair(&[1, 2], &[3, 4], &[5]), pair(&[7], &[8], &[9, 10])];
        reference(&served(&server.url), "theta", &mut again, &cache).unwrap();
        assert_eq!(again, pairs, "read back from the cache");
        assert_eq!(server.seen.lock().unwrap().len(), asked, "no new request");
    }

    #[test]
    fn a_server_without_prompt_logprobs_is_refused_by_name() {
        let server = serve(|_, _| (200, json!({"choices": [{"text": "x"}]})));
        let dir = tempfile::tempdir().unwrap();
        let mut pairs = vec![pair(&[1], &[2], &[3])];
        let err = reference(&served(&server.url), "theta", &mut pairs, &dir.path().join("r.jsonl")).unwrap_err();
        let err = err.to_string();
        assert!(err.starts_with(&server.url) && err.contains("cannot give log-probs of a given text"), "{err}");
    }
}
