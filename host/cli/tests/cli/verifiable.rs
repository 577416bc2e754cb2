//! The verifiable task end to end: two iterations on the embedded model with the
//! `constraint-check` reward and the `constraint-evolver` evolver. Labels must be in
//! every file that holds prompts, agree with the prompt texts, and be what the reward
//! checked: each answer's reward is recomputed here from its prompt's labels.

use std::collections::HashMap;
use std::path::Path;

use eva_constraints::{Constraint, from_labels, score};
use serde_json::Value;

use crate::rows;
use crate::run_loop::{eva_run_with, seeds, stderr};

const SEEDS: [&str; 4] = [
    r#"{"id": "v02", "prompt": "Suggest a quick breakfast for a busy morning. Answer in at most 50 words.", "labels": {"constraints": [{"kind": "max_words", "n": 50}]}}"#,
    r#"{"id": "v08", "prompt": "Describe why cats like to sleep in boxes. Write your entire answer in lowercase letters only.", "labels": {"constraints": [{"kind": "lowercase"}]}}"#,
    r#"{"id": "v10", "prompt": "Explain when to water tomato plants. Answer in at most 3 sentences.", "labels": {"constraints": [{"kind": "max_sentences", "n": 3}]}, "topic": "garden"}"#,
    r#"{"id": "v12", "prompt": "Explain why walking every day is healthy. Do not use the word \"very\".", "labels": {"constraints": [{"kind": "exclude_keywords", "keywords": ["very"]}]}}"#,
];

const SETTINGS: [&str; 18] = [
    "--iterations",
    "2",
    "--answers",
    "4",
    "--max-new-tokens",
    "16",
    "--sample-fraction",
    "0.5",
    "--micro-batch",
    "2",
    "--lr",
    "1e-4",
    "--epochs",
    "1",
    "--buffer-fraction",
    "0.5",
    "--plugin-config",
    "constraint-evolver.variants=2",
];

fn constraints(labels: &Value) -> Vec<Constraint> {
    from_labels(&labels.to_string()).unwrap_or_else(|e| panic!("{labels}: {e}")).1
}

fn last_text(row: &Value, key: &str) -> String {
    row[key].as_array().unwrap().last().unwrap()["content"].as_str().unwrap().to_owned()
}

/// Every row's labels hold constraints whose sentences end its text.
fn check_prompts(file: &Path, messages_key: &str) -> Vec<Value> {
    let rows = rows(file);
    for row in &rows {
        let cs = constraints(&row["labels"]);
        assert!(!cs.is_empty(), "{}: {row}", file.display());
        let text = last_text(row, messages_key);
        let sentences: Vec<String> = cs.iter().map(eva_constraints::describe).collect();
        assert!(text.ends_with(&sentences.join(" ")), "{}: {text} vs {sentences:?}", file.display());
    }
    rows
}

#[test]
fn a_labelled_run_carries_its_labels_through_every_phase_and_rewards_by_them() {
    let dir = tempfile::tempdir().unwrap();
    let (seeds, out) = (seeds(dir.path(), &SEEDS), dir.path().join("run"));
    let reward = eva_test_support::component("eva-plugin-constraint-check");
    let evolver = eva_test_support::component("eva-plugin-constraint-evolver");
    let mut cmd = eva_run_with(&SETTINGS, &seeds, &out, &["--reward", "plugin"]);
    cmd.arg("--reward-plugin").arg(&reward).arg("--plugin").arg(&evolver);
    let result = cmd.output().unwrap();
    assert!(result.status.success(), "{}", stderr(&result));

    let seed = check_prompts(&out.join("seed.jsonl"), "messages");
    assert_eq!(seed[2]["labels"]["topic"], "garden", "an extra key of the seed row is a label");
    let mut prompts: HashMap<String, Value> =
        seed.iter().map(|p| (p["id"].as_str().unwrap().to_owned(), p.clone())).collect();
    let (mut evolved_kept, mut pairs) = (0, 0);
    for it in ["iter-1", "iter-2"] {
        let it = out.join(it);
        // Rewards are the share of the prompt's constraints each answer holds.
        for a in rows(&it.join("answers.jsonl")) {
            let p = &prompts[a["id"].as_str().unwrap()];
            let cs = constraints(&p["labels"]);
            for answer in a["answers"].as_array().unwrap() {
                let text = answer["text"].as_str().unwrap();
                if text.trim().is_empty() {
                    continue;
                }
                assert_eq!(answer["reward"].as_f64().unwrap(), score(&cs, text), "{}: {text:?}", a["id"]);
            }
        }
        for e in check_prompts(&it.join("evolved.jsonl"), "messages") {
            let parent = &prompts[e["parent"].as_str().unwrap()];
            let (mine, theirs) = (constraints(&e["labels"]), constraints(&parent["labels"]));
            match e["method"].as_str().unwrap() {
                "in-depth/add-constraint" => assert_eq!(&mine[..theirs.len()], theirs, "{e}"),
                "in-depth/tighten" | "in-breadth/new-topic" => assert_eq!(mine.len(), theirs.len(), "{e}"),
                other => panic!("method {other}"),
            }
            if parent["labels"]["topic"] == "garden" {
                assert_eq!(e["labels"]["topic"], "garden", "other labels of the parent are kept");
            }
            evolved_kept += usize::from(e["kept"] == true);
        }
        let next = check_prompts(&it.join("prompts-next.jsonl"), "messages");
        for p in &next {
            prompts.insert(p["id"].as_str().unwrap().to_owned(), p.clone());
        }
        for pair in check_prompts(&it.join("pairs.jsonl"), "prompt") {
            assert_eq!(pair["labels"], prompts[pair["id"].as_str().unwrap()]["labels"], "{pair}");
            pairs += 1;
        }
    }
    // The run is seeded and single-threaded: these counts are the same on every rerun.
    assert!(evolved_kept > 0 && pairs > 0, "{evolved_kept} evolved prompts kept, {pairs} pairs");

    // Plugin records at info land in run.log with the plugin's name.
    let log = std::fs::read_to_string(out.join("run.log")).unwrap();
    assert!(log.lines().any(|l| l.contains("variants of") && l.contains(r#"plugin="constraint-evolver""#)), "{log}");

    // The index names the plugin behind each policy's file.
    let index: Value = serde_json::from_str(&std::fs::read_to_string(out.join("phases.json")).unwrap()).unwrap();
    let producer = &index["iter-1/evolved.jsonl"]["producer"];
    assert_eq!(producer["name"], "constraint-evolver");
    assert_eq!(producer["config"]["variants"], 2, "{producer}");
    assert!(producer["digest"].as_str().unwrap().starts_with("sha256:"), "{producer}");
    assert_eq!(index["iter-2/info.jsonl"]["producer"]["name"], "regret");
    assert!(index["iter-1/answers.jsonl"].get("producer").is_none());

    // A replay with the run's own plugins reproduces its creator files, without a model.
    let replay = dir.path().join("replay");
    let result = std::process::Command::new(env!("CARGO_BIN_EXE_eva-host"))
        .args(["replay", out.to_str().unwrap(), "--out", replay.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(result.status.success(), "{}", stderr(&result));
    for it in ["iter-1", "iter-2"] {
        for file in ["info.jsonl", "selected.jsonl", "evolved.jsonl", "prompts-next.jsonl"] {
            let (a, b) = (out.join(it).join(file), replay.join(it).join(file));
            assert!(std::fs::read(&a).unwrap() == std::fs::read(&b).unwrap(), "{it}/{file} differs in the replay");
        }
    }
    assert!(!replay.join("iter-1/answers.jsonl").exists(), "a replay answers nothing");
}
