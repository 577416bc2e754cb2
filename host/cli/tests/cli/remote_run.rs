//! `eva-host run --policy-endpoint` against a real vLLM (CPU build) serving the embedded
//! model: two iterations whose answers, evolutions, judge ratings and DPO reference
//! log-probs come from the server, θ_2 handed to it as one LoRA adapter, and the server's
//! numbers equal to the local engine's (the log-probs under that adapter on the merged
//! weights the trainer saved, the judge's ratings, the reference).

use std::path::Path;

use eva_engine::{LanguageModel, Message, Scored, WeightFormat};
use eva_reward::{Judge, JudgeConfig, Reward, RewardItem};

use crate::rows;
use crate::run_loop::{eva_run_with, resume_with};

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
    let base_arg = base.to_string_lossy();
    let result = eva_run_with(&[], &seeds, &out, &["--iterations", "2", "--answers", "2", "--max-new-tokens", "12"])
        .args(["--evolve-max-tokens", "32", "--sample-fraction", "0.34", "--micro-batch", "1", "--lr", "2e-3"])
        .args(["--epochs", "2", "--warmup-ratio", "0", "--model", &base_arg])
        .args(["--policy-endpoint", &server.url, "--served-model", "policy", "--endpoint-concurrency", "2"])
        .args(["--reward-endpoint", &server.url, "--reward-model", "policy", "--served-reference"])
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
    assert!(saved.contains("served_reference = true") && saved.contains("reward_endpoint = \"http"), "{saved}");

    // The judge on the server rates as the same judge here.
    let judged = &rows(&out.join("iter-1/answers.jsonl"))[0];
    let messages = vec![Message::new("user", rows(&seeds)[0]["prompt"].as_str().unwrap())];
    let answers = judged["answers"].as_array().unwrap();
    let answer = answers.iter().find(|a| !a["text"].as_str().unwrap().trim().is_empty()).expect("an answer");
    let mut judge = Judge::new(LanguageModel::load(&base, WeightFormat::F32).unwrap(), JudgeConfig::default()).unwrap();
    let here = judge.score(&[RewardItem::new(messages, answer["text"].as_str().unwrap())]).unwrap()[0];
    let served = answer["reward"].as_f64().unwrap();
    assert!((served - here).abs() < 1e-3, "judge: served {served} vs local {here}");

    // The reference of iteration t is θ_t's, on the trainer's tokens: the base's, then θ_2's.
    for (t, theta) in [(1, base.clone()), (2, out.join("iter-1/model"))] {
        let reference = rows(&out.join(format!("iter-{t}/train/reference.jsonl")));
        let first = &reference[0];
        let ids = |key: &str| -> Vec<u32> { serde_json::from_value(first[key].clone()).unwrap() };
        let here = local_logprob(&theta, &ids("prompt"), &ids("chosen"));
        let served = first["ref_chosen"].as_f64().unwrap();
        assert!((served - here).abs() < 2e-3 * ids("chosen").len() as f64, "iteration {t}: served {served} vs {here}");
    }

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

/// A run whose reward is a sequence-classification reward model on vLLM's pooling runner
/// (the embedded model with a random score head): every answer's reward is the score
/// eva's own classifier gives the same conversation.
#[test]
fn a_run_scored_by_a_reward_model_on_vllms_pooling_runner() {
    let classifier = eva_test_support::vllm::random_head_classifier();
    let server = eva_test_support::vllm::start_with(&classifier, "rm", &["--runner", "pooling"]);
    let dir = tempfile::tempdir().unwrap();
    let seeds = dir.path().join("seeds.jsonl");
    std::fs::write(&seeds, "{\"prompt\": \"Name a fruit.\"}\n{\"prompt\": \"Why do cats purr?\"}\n").unwrap();
    let out = dir.path().join("run");
    let result = eva_run_with(&[], &seeds, &out, &["--iterations", "1", "--answers", "3", "--max-new-tokens", "10"])
        .args(["--evolve-max-tokens", "24", "--micro-batch", "1"])
        .args(["--reward", "classifier", "--reward-endpoint", &server.url])
        .output()
        .unwrap();
    assert!(result.status.success(), "{}", String::from_utf8_lossy(&result.stderr));
    let saved = std::fs::read_to_string(out.join("config.toml")).unwrap();
    assert!(saved.contains(&format!("reward_endpoint = \"{}\"", server.url)), "{saved}");
    let prompts = rows(&seeds);
    let mut local = eva_reward::Classifier::load(&classifier, None).unwrap();
    let mut compared = 0;
    for (row, seed) in rows(&out.join("iter-1/answers.jsonl")).iter().zip(&prompts) {
        let messages = vec![Message::new("user", seed["prompt"].as_str().unwrap())];
        for answer in
            row["answers"].as_array().unwrap().iter().filter(|a| !a["text"].as_str().unwrap().trim().is_empty())
        {
            let here = local.score(&[RewardItem::new(messages.clone(), answer["text"].as_str().unwrap())]).unwrap()[0];
            let served = answer["reward"].as_f64().unwrap();
            assert!((served - here).abs() < 1e-4, "served {served} vs local {here}");
            compared += 1;
        }
    }
    assert!(compared >= 3, "{compared} answers compared");
    assert!(rows(&out.join("metrics.jsonl")).len() == 1);
}

/// A remote answer phase committed in chunks: eva killed in the middle resumes into the
/// same files as an uninterrupted run; the server stopped in the middle is named, the
/// finished chunks stay, and the run resumes once a server is back at the same address.
#[test]
fn a_remote_answer_phase_survives_a_kill_and_a_lost_server() {
    let base = eva_test_support::vllm::embedded_model_hf();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    // Without prefix caching a request is computed the same way on a warm server and on a
    // fresh one, so that resumed answers can be compared byte for byte.
    let no_cache = ["--no-enable-prefix-caching"];
    let server = eva_test_support::vllm::start_on(port, &base, "policy", &no_cache);
    let dir = tempfile::tempdir().unwrap();
    let seeds = dir.path().join("seeds.jsonl");
    let prompts =
        ["Name a colour.", "Say hi.", "Why is ice slippery?", "Name a river.", "Count to three.", "What is tea?"];
    let lines: String = prompts.iter().map(|p| format!("{{\"prompt\": \"{p}\"}}\n")).collect();
    std::fs::write(&seeds, lines).unwrap();
    let base_arg = base.to_string_lossy();
    let run = |out: &std::path::Path| {
        let settings = ["--iterations", "1", "--answers", "2", "--max-new-tokens", "16", "--no-evolve"];
        let mut cmd = eva_run_with(&settings, &seeds, out, &["--phase-chunk", "1", "--micro-batch", "1"]);
        cmd.args(["--endpoint-concurrency", "1", "--model", &base_arg])
            .args(["--policy-endpoint", &server.url, "--served-model", "policy"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped());
        cmd
    };
    let resume = |out: &std::path::Path| {
        let result = resume_with(out, &[]);
        assert!(result.status.success(), "{}", String::from_utf8_lossy(&result.stderr));
    };
    // The chunks of the first answer phase committed so far.
    let chunks = |out: &std::path::Path| {
        std::fs::read_dir(out.join("iter-1"))
            .into_iter()
            .flatten()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().starts_with("answers.jsonl.parts"))
            .map(|e| std::fs::read_dir(e.path()).map(|d| d.count()).unwrap_or(0))
            .sum::<usize>()
    };
    let wait_for_chunks = |out: &std::path::Path, child: &mut std::process::Child| {
        let start = std::time::Instant::now();
        while chunks(out) < 2 {
            assert!(child.try_wait().unwrap().is_none(), "the run ended before its second chunk");
            assert!(start.elapsed().as_secs() < 600, "no chunk in 10 minutes");
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
    };

    let whole = dir.path().join("whole");
    let result = run(&whole).output().unwrap();
    assert!(result.status.success(), "{}", String::from_utf8_lossy(&result.stderr));

    let killed = dir.path().join("killed");
    let mut child = run(&killed).spawn().unwrap();
    wait_for_chunks(&killed, &mut child);
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(!killed.join("iter-1/answers.jsonl").exists(), "killed inside the phase");
    resume(&killed);

    let lost = dir.path().join("lost");
    let mut child = run(&lost).spawn().unwrap();
    wait_for_chunks(&lost, &mut child);
    drop(server);
    let failed = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&failed.stderr);
    assert!(!failed.status.success());
    assert!(err.contains(&format!("http://127.0.0.1:{port} cannot be reached")), "{err}");
    assert!(chunks(&lost) >= 2, "the finished chunks stay");
    // The rows committed before the server was lost.
    let committed: Vec<String> = std::fs::read_dir(lost.join("iter-1"))
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("answers.jsonl.parts"))
        .flat_map(|d| std::fs::read_dir(d.path()).unwrap().flatten())
        .flat_map(|f| std::fs::read_to_string(f.path()).unwrap().lines().map(str::to_owned).collect::<Vec<_>>())
        .collect();
    let _back = eva_test_support::vllm::start_on(port, &base, "policy", &no_cache);
    resume(&lost);

    for file in ["iter-1/answers.jsonl", "iter-1/pairs.jsonl"] {
        let want = std::fs::read(whole.join(file)).unwrap();
        assert!(std::fs::read(killed.join(file)).unwrap() == want, "{file} after a kill");
    }
    // A new server process need not sample bit for bit as the old one did (its numerics
    // may differ), so after a lost server what is checked is that nothing finished was
    // redone: every committed row is in the phase's file as it was, and every prompt has
    // its answers.
    let answers = std::fs::read_to_string(lost.join("iter-1/answers.jsonl")).unwrap();
    assert!(committed.len() >= 2 && committed.iter().all(|row| answers.lines().any(|l| l == row)), "{answers}");
    assert_eq!(answers.lines().count(), prompts.len());
    assert!(lost.join("iter-1/pairs.jsonl").is_file());
}
