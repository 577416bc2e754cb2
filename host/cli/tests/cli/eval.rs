//! `eva-host eval`: a model against a baseline on held-out prompts. The statistics are
//! recomputed here from the answers it wrote, with textbook constants.

use std::path::Path;

use crate::rows;
use std::process::{Command, Output};

const PROMPTS: [&str; 4] = [
    r#"{"id": "h1", "prompt": "Name a fruit that is yellow."}"#,
    r#"{"id": "h2", "prompt": "What is the capital of France?"}"#,
    r#"{"id": "h3", "prompt": "Give one tip for sleeping well."}"#,
    r#"{"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "What is 2 + 2?"}]}"#,
];

fn write_prompts(dir: &Path, lines: &[&str]) {
    std::fs::write(dir.join("heldout.jsonl"), lines.join("\n") + "\n").unwrap();
}

/// `eva-host eval` in `dir`, judged by the rule-reward plugin (answers of at most five
/// words score 1, longer ones less).
fn eval(dir: &Path, model: &Path, baseline: &Path, extra: &[&str]) -> Output {
    let default = eva_test_support::models::default_model();
    let plugin = eva_test_support::component("eva-plugin-rule-reward");
    Command::new(env!("CARGO_BIN_EXE_eva-host"))
        .current_dir(dir)
        .args(["eval", "--threads", "1", "--prompts", "heldout.jsonl", "--out", "eval", "--max-new-tokens", "12"])
        .arg("--model")
        .arg(model)
        .arg("--baseline")
        .arg(baseline)
        .args(["--reward", "plugin", "--plugin-config", "rule-reward.max-words=5", "--reward-plugin"])
        .arg(plugin)
        .args(extra)
        .env("EVA_CACHE_DIR", default.parent().unwrap().parent().unwrap())
        .output()
        .unwrap()
}

fn json(path: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-9
}

#[test]
fn a_model_against_itself_ties_on_every_prompt_and_a_rerun_reuses_the_answers() {
    let dir = tempfile::tempdir().unwrap();
    write_prompts(dir.path(), &PROMPTS);
    let model = eva_test_support::models::default_model();
    let out = eval(dir.path(), &model, &model, &[]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let summary = json(&dir.path().join("eval/eval.json"));
    assert_eq!(summary["prompts"], 4);
    assert_eq!(summary["win_rate"]["ties"], 4);
    assert_eq!(summary["win_rate"]["rate"], 0.5);
    assert_eq!(summary["difference"]["mean"], 0.0);
    assert_eq!(summary["model_reward"], summary["baseline_reward"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("0 wins, 4 ties, 0 losses"), "{stdout}");

    // A rerun loads every phase and writes the same summary; other settings are refused.
    let again = eval(dir.path(), &model, &model, &[]);
    assert!(again.status.success());
    assert_eq!(again.stdout, out.stdout);
    let other = eval(dir.path(), &model, &model, &["--temperature", "0.7"]);
    assert!(!other.status.success());
    assert!(String::from_utf8_lossy(&other.stderr).contains("holds an evaluation with other settings"));
}

#[test]
fn the_statistics_follow_the_scored_answers() {
    let dir = tempfile::tempdir().unwrap();
    write_prompts(dir.path(), &PROMPTS);
    let tiny = eva_test_support::models::write_tiny_llama(dir.path(), 3);
    let out =
        eval(dir.path(), &eva_test_support::models::default_model(), &tiny, &["--answers", "2", "--temperature", "1"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let rows = rows(&dir.path().join("eval/answers.jsonl"));
    let summary = json(&dir.path().join("eval/eval.json"));
    let ids: Vec<&str> = rows.iter().map(|r| r["id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["h1", "h2", "h3", "seed-4"]);

    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
    let side = |key: &str| -> Vec<f64> {
        rows.iter()
            .map(|r| {
                let answers = r[key].as_array().unwrap();
                assert_eq!(answers.len(), 2);
                mean(&answers.iter().map(|a| a["reward"].as_f64().unwrap()).collect::<Vec<_>>())
            })
            .collect()
    };
    let (m, b) = (side("model"), side("baseline"));
    let d: Vec<f64> = m.iter().zip(&b).map(|(m, b)| m - b).collect();
    // Student's t interval, t(0.975, 3) = 3.182446.
    let check = |xs: &[f64], est: &serde_json::Value| {
        let mu = mean(xs);
        let sd = (xs.iter().map(|x| (x - mu).powi(2)).sum::<f64>() / 3.0).sqrt();
        let half = 3.182446 * sd / 2.0;
        assert!(close(est["mean"].as_f64().unwrap(), mu), "{est}");
        assert!((est["ci"][0].as_f64().unwrap() - (mu - half)).abs() < 1e-5, "{est}");
        assert!((est["ci"][1].as_f64().unwrap() - (mu + half)).abs() < 1e-5, "{est}");
    };
    check(&m, &summary["model_reward"]);
    check(&b, &summary["baseline_reward"]);
    check(&d, &summary["difference"]);
    let wins = d.iter().filter(|x| **x > 0.0).count();
    let ties = d.iter().filter(|x| **x == 0.0).count();
    let w = &summary["win_rate"];
    assert_eq!((w["wins"].as_u64().unwrap() as usize, w["ties"].as_u64().unwrap() as usize), (wins, ties));
    for (r, d) in rows.iter().zip(&d) {
        let want = if *d > 0.0 {
            "win"
        } else if *d < 0.0 {
            "loss"
        } else {
            "tie"
        };
        assert_eq!(r["outcome"], want);
    }
    // Wilson score interval, z = 1.959964.
    let (n, p, z) = (4.0, (wins as f64 + ties as f64 / 2.0) / 4.0, 1.959964f64);
    let center = (p + z * z / (2.0 * n)) / (1.0 + z * z / n);
    let half = z / (1.0 + z * z / n) * (p * (1.0 - p) / n + z * z / (4.0 * n * n)).sqrt();
    assert!(close(w["rate"].as_f64().unwrap(), p));
    assert!((w["ci"][0].as_f64().unwrap() - (center - half).max(0.0)).abs() < 1e-5, "{w}");
    assert!((w["ci"][1].as_f64().unwrap() - (center + half).min(1.0)).abs() < 1e-5, "{w}");
}

#[test]
fn a_bad_prompt_file_is_reported_by_line_before_any_model_loads() {
    let dir = tempfile::tempdir().unwrap();
    write_prompts(dir.path(), &[PROMPTS[0], r#"{"prompt": ""}"#]);
    let missing = Path::new("/no/such/model.gguf");
    let out = eval(dir.path(), missing, missing, &[]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("heldout.jsonl:2: the prompt has no visible character"), "{err}");
    assert!(!dir.path().join("eval").exists(), "nothing is written");
}

/// Prompts labelled with verifiable constraints are also scored by them: the numbers in
/// `eval.json` are recomputed here from the answers with `eva-constraints`; an unknown
/// constraint kind is refused by the prompt's id before any answer is made.
#[test]
fn labelled_prompts_get_constraint_scores() {
    let dir = tempfile::tempdir().unwrap();
    let labelled = [
        r#"{"id": "c1", "prompt": "Name a fruit. Answer in at most 5 words.", "labels": {"constraints": [{"kind": "max_words", "n": 5}]}}"#,
        r#"{"id": "c2", "prompt": "Say hello. Do not use any commas.", "labels": {"constraints": [{"kind": "no_commas"}, {"kind": "lowercase"}]}}"#,
        r#"{"id": "plain", "prompt": "What is 2 + 2?"}"#,
    ];
    write_prompts(dir.path(), &labelled);
    let model = eva_test_support::models::default_model();
    let out = eval(dir.path(), &model, &model, &["--answers", "2"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("constraints on 2 labelled prompts"));
    let summary = json(&dir.path().join("eval/eval.json"));
    let c = &summary["constraints"];
    assert_eq!(c["prompts"], 2);
    let rows = rows(&dir.path().join("eval/answers.jsonl"));
    let constraints: Vec<Vec<eva_constraints::Constraint>> = labelled[..2]
        .iter()
        .map(|l| {
            let row: serde_json::Value = serde_json::from_str(l).unwrap();
            serde_json::from_value(row["labels"]["constraints"].clone()).unwrap()
        })
        .collect();
    let all_held: Vec<f64> = rows[..2]
        .iter()
        .zip(&constraints)
        .map(|(r, cs)| {
            let answers = r["model"].as_array().unwrap();
            let held =
                answers.iter().filter(|a| cs.iter().all(|c| eva_constraints::check(c, a["text"].as_str().unwrap())));
            held.count() as f64 / answers.len() as f64
        })
        .collect();
    assert!(close(c["model"]["all_held"]["mean"].as_f64().unwrap(), (all_held[0] + all_held[1]) / 2.0), "{c}");
    assert_eq!(c["model"]["kinds"]["lowercase"][0], 1);
    assert_eq!(c["all_held_difference"]["mean"], 0.0, "the same model on both sides");

    let bad = tempfile::tempdir().unwrap();
    write_prompts(bad.path(), &[r#"{"id": "b1", "prompt": "x", "labels": {"constraints": [{"kind": "max_wordz"}]}}"#]);
    let out = eval(bad.path(), &model, &model, &[]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("prompt `b1`: labels.constraints: unknown variant `max_wordz`"),
        "{err}"
    );
    assert!(!bad.path().join("eval/model-answers.jsonl").exists(), "refused before answering");
}
