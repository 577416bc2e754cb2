//! `eva-host score`: rows in, rows with rewards out, bad rows named by line.

use std::path::Path;
use std::process::Command;

/// Run `eva-host score` in `dir` (so that paths in messages are relative).
fn score(dir: &Path, args: &[&str]) -> (bool, String) {
    let model = eva_test_support::models::default_model();
    let out = Command::new(env!("CARGO_BIN_EXE_eva-host"))
        .current_dir(dir)
        .args(["score", "--threads", "1", "--input", "rows.jsonl", "--output", "scored.jsonl"])
        .args(args)
        .env("EVA_CACHE_DIR", model.parent().unwrap().parent().unwrap())
        .output()
        .unwrap();
    (out.status.success(), String::from_utf8_lossy(&out.stderr).into_owned())
}

fn rows(dir: &Path, lines: &[&str]) {
    std::fs::write(dir.join("rows.jsonl"), lines.join("\n") + "\n").unwrap();
}

fn scored(dir: &Path) -> Vec<serde_json::Value> {
    let text = std::fs::read_to_string(dir.join("scored.jsonl")).unwrap();
    text.lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

const ROWS: [&str; 3] = [
    r#"{"id": "a1", "prompt": "Where is the Louvre?", "response": "In Paris."}"#,
    r#"{"id": "a2", "prompt": "Where is the Louvre?", "response": "It is a museum in Paris, France, by the Seine."}"#,
    r#"{"id": "b1", "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Name a colour."}], "response": "Blue."}"#,
];

#[test]
fn a_reward_plugin_scores_rows_and_keeps_their_fields() {
    let dir = tempfile::tempdir().unwrap();
    rows(dir.path(), &ROWS);
    let plugin = eva_test_support::component("eva-plugin-rule-reward");
    let plugin = plugin.to_str().unwrap();
    let args = ["--reward", "plugin", "--reward-plugin", plugin, "--plugin-config", "rule-reward.max-words=4"];
    let (ok, err) = score(dir.path(), &args);
    assert!(ok, "{err}");
    let out = scored(dir.path());
    let rewards: Vec<f64> = out.iter().map(|r| r["reward"].as_f64().unwrap()).collect();
    assert_eq!(rewards, [1.0, 4.0 / 10.0, 1.0]);
    assert_eq!(out[2]["id"], "b1");
    assert_eq!(out[2]["messages"][0]["content"], "Be brief.");

    // Per-prompt z-scores: the Louvre answers become ±1, the single colour answer 0.
    let (ok, err) = score(dir.path(), &[&args[..], &["--normalize", "prompt-z"]].concat());
    assert!(ok, "{err}");
    let out = scored(dir.path());
    let z: Vec<f64> = out.iter().map(|r| r["reward"].as_f64().unwrap()).collect();
    for (got, want) in z.iter().zip([1.0, -1.0, 0.0]) {
        assert!((got - want).abs() < 1e-12, "{z:?}");
    }
    assert_eq!(out[1]["raw_reward"].as_f64(), Some(0.4));
}

#[test]
fn the_judge_scores_rows_with_the_default_model() {
    let dir = tempfile::tempdir().unwrap();
    rows(dir.path(), &ROWS);
    let (ok, err) = score(dir.path(), &[]);
    assert!(ok, "{err}");
    for row in scored(dir.path()) {
        let r = row["reward"].as_f64().unwrap();
        assert!((1.0..=5.0).contains(&r), "an expected 1-5 rating, not {r}");
    }
}

#[test]
fn bad_rows_are_named_by_line_before_any_model_work_and_nothing_is_overwritten() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("scored.jsonl"), "earlier results\n").unwrap();
    let cases: [(&[&str], &str); 5] = [
        (&[ROWS[0], "{\"prompt\": \"x\", \"response\": "], "rows.jsonl:2: not valid JSON"),
        (&[ROWS[0], "", r#"{"prompt": "x", "response": "  "}"#], "rows.jsonl:3: the response is empty"),
        (&[r#"{"prompt": "x", "answer": "y"}"#], "rows.jsonl:1: no `response`"),
        (&[r#"{"prompt": "", "response": "y"}"#], "rows.jsonl:1: the prompt has no visible character"),
        (&[r#"[1, 2]"#], "rows.jsonl:1: not a JSON object"),
    ];
    for (lines, want) in cases {
        rows(dir.path(), lines);
        // A classifier path that does not exist: the rows must fail first.
        let (ok, err) = score(dir.path(), &["--reward", "classifier", "--reward-model", "no-such-dir"]);
        assert!(!ok);
        assert!(err.contains(want), "{want}: {err}");
    }
    assert_eq!(std::fs::read_to_string(dir.path().join("scored.jsonl")).unwrap(), "earlier results\n");
    // A row the backend cannot score is named too.
    rows(dir.path(), &[ROWS[0], &format!(r#"{{"prompt": "x", "response": "{}"}}"#, "long ".repeat(9000))]);
    let (ok, err) = score(dir.path(), &[]);
    assert!(!ok);
    assert!(err.contains("rows.jsonl:2: the judge's prompt is"), "{err}");
    assert_eq!(std::fs::read_to_string(dir.path().join("scored.jsonl")).unwrap(), "earlier results\n");
}
