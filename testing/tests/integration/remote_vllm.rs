//! The policy on a real vLLM server (CPU build, `scripts/start-vllm`) serving the
//! embedded model: answers that do not depend on how prompts are spread over endpoints,
//! reproducible seeds, token counts, the server's own context check, the evolver's
//! `generate`, and a refusal that names the endpoint and the prompt.

use std::sync::Arc;

use eva_engine::Message;
use eva_loop::layout::PromptRecord;
use eva_loop::progress::Silent;
use eva_loop::run::{Policy, Sampling};
use eva_plugin_runtime::{ChatMessage, GenerateRequest};
use eva_remote::client::{Client, Retry};
use eva_remote::policy::{RemotePolicy, Served};

fn policy(url: &str, endpoints: usize, concurrency: usize) -> RemotePolicy {
    let clients = (0..endpoints).map(|_| Client::new(url, Retry::default()).unwrap().with_key(None)).collect();
    let base = eva_test_support::vllm::embedded_model_hf();
    RemotePolicy::new(Arc::new(Served::new(clients, "policy", concurrency)), base, Arc::new(Silent))
}

#[test]
fn the_policy_on_a_real_vllm_server() {
    let server = eva_test_support::vllm::start(&eva_test_support::vllm::embedded_model_hf(), "policy");
    let prompts: Vec<PromptRecord> = ["Name a colour.", "Why is the sky blue?", "Write a haiku about rain.", "Say hi."]
        .iter()
        .enumerate()
        .map(|(i, text)| PromptRecord {
            id: format!("p{i}"),
            messages: vec![Message::new("user", *text)],
            origin: "seed".into(),
            parent: None,
            method: None,
            labels: None,
        })
        .collect();
    let sampling = Sampling { n: 2, temperature: 0.8, top_p: 0.95, max_new_tokens: 16, seed: 3 };

    let one = policy(&server.url, 1, 1).respond(&prompts, &sampling, "x").unwrap();
    // The same server twice stands for two endpoints: what matters is that the prompts
    // are spread differently and concurrently.
    let two = policy(&format!("{}/v1", server.url), 2, 3).respond(&prompts, &sampling, "x").unwrap();
    assert_eq!(one, two, "answers do not depend on the spread");
    assert_eq!(one.len(), 4);
    for drafts in &one {
        assert_eq!(drafts.len(), 2);
        for d in drafts {
            assert!(d.tokens >= 1 && d.tokens <= 16 && !d.text.is_empty(), "{d:?}");
        }
    }
    let other_seed = Sampling { seed: 4, ..sampling.clone() };
    assert_ne!(policy(&server.url, 1, 2).respond(&prompts, &other_seed, "x").unwrap(), one, "the seed matters");

    let p = policy(&server.url, 1, 1);
    assert_eq!(p.unfit(&prompts[0].messages, 128).unwrap(), None);
    let why = p.unfit(&prompts[0].messages, 2040).unwrap().expect("2040 new tokens exceed a 2048 context");
    assert!(why.contains("exceed its context of 2048"), "{why}");

    let generator = p.generator(12, 9);
    let request = |text: &str| GenerateRequest {
        messages: vec![ChatMessage { role: "user".into(), content: text.into() }],
        max_tokens: 64,
        temperature: 0.7,
        top_p: 1.0,
    };
    let texts = generator.complete(&[request("Rewrite: name a colour."), request("Rewrite: say hi.")]).unwrap();
    assert_eq!(texts.len(), 2);
    assert!(texts.iter().all(|t| !t.is_empty()), "{texts:?}");

    let too_long = Sampling { max_new_tokens: 4096, ..sampling };
    let err = p.respond(&prompts[1..2], &too_long, "x").unwrap_err().to_string();
    assert!(err.starts_with(&format!("{} refused prompt `p1` (HTTP 400)", server.url)), "{err}");
}
