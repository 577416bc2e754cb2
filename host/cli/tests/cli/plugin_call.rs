//! `eva-host plugin call` and `plugin test` on first-party plugins: outputs as JSON, the
//! plugin's log lines on stderr, `generate` answered by canned replies or the model, and
//! failures that name the case and the difference.

use std::path::Path;
use std::process::{Command, Output};

fn eva_host(args: &[&str], dir: &Path) -> Output {
    let cache = eva_test_support::models::default_model().parent().unwrap().parent().unwrap().to_owned();
    Command::new(env!("CARGO_BIN_EXE_eva-host"))
        .args(args)
        .current_dir(dir)
        .env("EVA_CACHE_DIR", cache)
        .output()
        .unwrap()
}

fn component(name: &str) -> String {
    eva_test_support::component(name).display().to_string()
}

fn json(out: &Output) -> serde_json::Value {
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn an_evolver_is_called_with_canned_replies_or_the_model_and_its_logs_are_shown() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("in.json"), r#"{"prompts": [{"id": "p0", "prompt": "Write a haiku about rain."}]}"#)
        .unwrap();
    std::fs::write(dir.path().join("replies.json"), r#"["Write a haiku about rain.", "Explain how rain forms."]"#)
        .unwrap();
    let evol = component("eva-plugin-evol-instruct");
    let args = ["plugin", "call", &evol, "--input", "in.json", "--plugin-config", "evol-instruct.variants=2"];
    let out = eva_host(&[&args[..], &["--generate-replies", "replies.json"]].concat(), dir.path());
    let evolved = json(&out)["evolved"].as_array().unwrap().clone();
    assert_eq!(evolved.len(), 1, "the echo is rejected");
    assert_eq!(evolved[0]["messages"][0]["content"], "Explain how rain forms.");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("1 rewrites kept, 1 rejected") && stderr.contains("evol-instruct"), "{stderr}");
    assert!(stderr.contains("echoes the original"), "debug records are shown too: {stderr}");

    // Too few replies: the error says where they came from.
    std::fs::write(dir.path().join("one.json"), r#"["Explain how rain forms."]"#).unwrap();
    let out = eva_host(&[&args[..], &["--generate-replies", "one.json"]].concat(), dir.path());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && stderr.contains("one.json holds only 1 more replies"), "{stderr}");

    // Without replies, the embedded model answers.
    let out = eva_host(&[&args[..], &["--max-tokens", "24", "--seed", "3"]].concat(), dir.path());
    let first = json(&out);
    assert_eq!(json(&eva_host(&[&args[..], &["--max-tokens", "24", "--seed", "3"]].concat(), dir.path())), first);
}

#[test]
fn each_role_is_called_and_tested_on_json_cases() {
    let dir = tempfile::tempdir().unwrap();
    let cases: [(&str, &str, &str); 4] = [
        (
            "eva-plugin-regret",
            r#"{"items": [{"prompt": {"prompt": "q"}, "rewards": [0.2, 0.9, 0.4]}, {"prompt": {"prompt": "r"}, "rewards": [1.0]}]}"#,
            r#"{"scores": [0.7, 0.0]}"#,
        ),
        ("eva-plugin-weighted-sampler", r#"{"scores": [0.0, 5.0, 0.0], "count": 1}"#, r#"{"indices": [1]}"#),
        (
            "eva-plugin-max-min-pairing",
            r#"{"items": [{"prompt": {"prompt": "q"}, "responses": [{"text": "a", "reward": 0.2}, {"text": "b", "reward": 0.9}]}]}"#,
            r#"{"pairs": [[{"chosen": 1, "rejected": 0}]]}"#,
        ),
        (
            "eva-plugin-constraint-check",
            r#"{"items": [{"prompt": {"prompt": "Hi. Do not use any commas.", "labels": {"constraints": [{"kind": "no_commas"}]}}, "response": "Hello, you."}]}"#,
            r#"{"rewards": [0.0]}"#,
        ),
    ];
    for (name, input, expect) in cases {
        std::fs::write(dir.path().join("in.json"), input).unwrap();
        let out = eva_host(&["plugin", "call", &component(name), "--input", "in.json"], dir.path());
        let expect: serde_json::Value = serde_json::from_str(expect).unwrap();
        let got = json(&out);
        let key = expect.as_object().unwrap().keys().next().unwrap().clone();
        assert_eq!(got[&key].as_array().unwrap().len(), expect[&key].as_array().unwrap().len(), "{name}: {got}");
        let case = format!(r#"{{"name": "{name}", "input": {input}, "expect": {expect}, "tolerance": 1e-12}}"#);
        let bad = format!(
            r#"{{"name": "not on unlabelled prompts", "input": {{"items": [{{"prompt": {{"prompt": "q"}}, "response": "a"}}]}}, "expect_error": "has no constraints"}}"#
        );
        let lines =
            if name == "eva-plugin-constraint-check" { format!("{case}\n{bad}\n") } else { format!("{case}\n") };
        std::fs::write(dir.path().join("cases.jsonl"), lines).unwrap();
        let out = eva_host(&["plugin", "test", &component(name), "cases.jsonl"], dir.path());
        assert!(
            out.status.success(),
            "{name}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    // A wrong expectation and a wrong input: both fail, each named.
    let regret = component("eva-plugin-regret");
    let cases = concat!(
        r#"{"name": "gap", "input": {"items": [{"prompt": {"prompt": "q"}, "rewards": [0.2, 0.9]}]}, "expect": {"scores": [0.5]}}"#,
        "\n",
        r#"{"name": "shape", "input": {"prompts": []}, "expect": {"scores": []}}"#,
        "\n",
        r#"{"name": "variance", "config": {"metric": "variance"}, "input": {"items": [{"prompt": {"prompt": "q"}, "rewards": [0.0, 1.0]}]}, "expect": {"scores": [0.25]}}"#,
        "\n"
    );
    std::fs::write(dir.path().join("cases.jsonl"), cases).unwrap();
    let out = eva_host(&["plugin", "test", &regret, "cases.jsonl"], dir.path());
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "{stdout}");
    assert!(stdout.contains("FAIL  gap (cases.jsonl:1): output.scores[0]: expected 0.5, got 0.7"), "{stdout}");
    assert!(stdout.contains("FAIL  shape (cases.jsonl:2): the input of the info-metric role is"), "{stdout}");
    assert!(stdout.contains("ok    variance") && stdout.contains("1 passed, 2 failed"), "{stdout}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("2 of 3 cases failed: gap, shape"));
}
