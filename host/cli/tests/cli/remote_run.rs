//! `eva-host run --policy-endpoint` against a real vLLM (CPU build) serving the embedded
//! model: two iterations whose answers and evolutions come from the server, θ_2 handed to
//! it as one LoRA adapter, and the server's log-probs under that adapter equal to the
//! local engine's on the merged weights the trainer saved.

use std::path::Path;
use std::process::Command;

use eva_engine::{LanguageModel, Message, Scored, WeightFormat};

use crate::rows;

/// Summed log-probs of `completion` after `prompt` (token ids) on the server's `model`.
fn served_logprob(url: &str, model: &str, prompt: &[u32], completion: &[u32]) -> f64 {
    let ids: Vec<u32> = prompt.iter().chain(completion).copied().collect();
    let body = serde_json::json!({"model": model, "prompt": ids, "max_tokens": 1, "prompt_logprobs": 0});
    let answer = http(
        ureq::post(&format!("{url}/v1/completions")).header("content-type", "application/json").send(body.to_string()),
    );
    let per_token = answer["choices"][0]["prompt_logprobs"].as_array().unwrap();
    (prompt.len()..ids.len()).map(|i| per_token[i][ids[i].to_string()]["logprob"].as_f64().unwrap()).sum()
}

/// A JSON answer.
fn http(response: Result<ureq::http::Response<ureq::Body>, ureq::Error>) -> serde_json::Value {
    serde_json::from_str(&response.unwrap().body_mut().read_to_string().unwrap()).unwrap()
}

/// The same on this machine's engine, in f32.
fn local_logprob(model: &Path, prompt: &[u32], completion: &[u32]) -> f64 {
    let model = LanguageModel::load(model, WeightFormat::F32).unwrap();
    model.logprobs(&[Scored { prompt, completion }]).unwrap()[0].sum as f64
}

#[test]
fn a_run_on_a_vllm_server_hands_each_trained_policy_to_it() {
    let base = eva_test_support::vllm::embedded_model_hf();
    let server = eva_test_support::vllm::start(&base, "policy");
    let dir = tempfile::tempdir().unwrap();
    let seeds = dir.path().join("seeds.jsonl");
    std::fs::write(
        &seeds,
        "{\"prompt\": \"Suggest a name for a friendly robot.\"}\n{\"prompt\": \"What are three easy ways to save water?\"}\n\
         {\"prompt\": \"Why is the sky blue?\"}\n",
    )
    .unwrap();
    let out = dir.path().join("run");
    let plugins_dir = eva_test_support::component("eva-plugin-regret").parent().unwrap().to_owned();
    let cache = eva_test_support::models::default_model().parent().unwrap().parent().unwrap().to_owned();
    let result = Command::new(env!("CARGO_BIN_EXE_eva-host"))
        .args(["run", "--threads", "1", "--iterations", "2", "--answers", "2", "--max-new-tokens", "12"])
        .args(["--evolve-max-tokens", "32", "--sample-fraction", "0.34", "--micro-batch", "1", "--lr", "2e-3"])
        .args(["--epochs", "2", "--warmup-ratio", "0"])
        .arg("--model")
        .arg(&base)
        .args(["--policy-endpoint", &server.url, "--served-model", "policy", "--endpoint-concurrency", "2"])
        .arg("--prompts")
        .arg(&seeds)
        .arg("--out")
        .arg(&out)
        .arg("--plugins-dir")
        .arg(plugins_dir)
        .env("EVA_CACHE_DIR", cache)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&result.stderr);
    assert!(result.status.success(), "{stderr}");
    let metrics = rows(&out.join("metrics.jsonl"));
    assert_eq!(metrics.len(), 2, "{metrics:?}");
    assert!(metrics[0]["pairs"].as_u64() > Some(0), "{metrics:?}");
    assert!(out.join("iter-1/train/adapter/adapter_config.json").is_file(), "the update is kept");
    let config: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("iter-1/adapter/adapter_config.json")).unwrap()).unwrap();
    assert_eq!(config["r"], 8, "θ_2 over the base: one update of rank 8");
    let models = http(ureq::get(&format!("{}/v1/models", server.url)).call());
    assert!(models["data"].as_array().unwrap().iter().any(|m| m["id"] == "eva-iter-1"), "{models}");
    let saved = std::fs::read_to_string(out.join("config.toml")).unwrap();
    assert!(saved.contains("endpoints = [") && saved.contains("served_model = \"policy\""), "{saved}");

    // The server's θ_2 is the trainer's θ_2: a chosen answer's log-prob moved on both alike.
    let pair = &rows(&out.join("iter-1/pairs.jsonl"))[0];
    let local = LanguageModel::load(&base, WeightFormat::F32).unwrap();
    let messages: Vec<Message> = serde_json::from_value(pair["prompt"].clone()).unwrap();
    let prompt = local.chat_prompt(&messages).unwrap();
    let chosen = local.tokenizer.encode(pair["chosen"].as_str().unwrap()).unwrap();
    let (before, after) =
        (local_logprob(&base, &prompt, &chosen), local_logprob(&out.join("iter-1/model"), &prompt, &chosen));
    let (served_before, served_after) = (
        served_logprob(&server.url, "policy", &prompt, &chosen),
        served_logprob(&server.url, "eva-iter-1", &prompt, &chosen),
    );
    let tolerance = 2e-3 * chosen.len() as f64;
    assert!((served_before - before).abs() < tolerance, "base: served {served_before} vs local {before}");
    assert!((served_after - after).abs() < tolerance, "θ_2: served {served_after} vs local {after}");
    assert!((after - before).abs() > 5.0 * tolerance, "training moved the chosen answer: {before} -> {after}");
}
