//! `eva-host run --trainer external`: a command that fails is named with its log's tail
//! and loses nothing; the run resumed with TRL's real DPO trainer (`scripts/trl-dpo`, on
//! the CPU) takes the adapter it wrote as θ_2.

use eva_engine::{LanguageModel, Scored, WeightFormat};

use crate::rows;
use crate::run_loop::{SEEDS, eva_run, resume_with, seeds, stderr};

#[test]
fn an_external_trainer_fails_by_name_then_trl_trains_the_resumed_run() {
    let dir = tempfile::tempdir().unwrap();
    let (seeds, out) = (seeds(dir.path(), &SEEDS), dir.path().join("run"));
    let failing = "echo 'CUDA out of memory' >&2; exit 3";
    let first = eva_run(&seeds, &out, &["--trainer", "external", "--trainer-command", failing]).output().unwrap();
    let err = stderr(&first);
    assert!(!first.status.success());
    assert!(err.contains(&format!("the external trainer `{failing}` exited with status 3")), "{err}");
    assert!(err.contains("CUDA out of memory"), "the log's tail: {err}");
    let iteration = out.join("iter-1");
    assert!(iteration.join("pairs.jsonl").is_file() && !iteration.join("model").exists(), "nothing lost");
    let trl_rows = rows(&iteration.join("train/pairs.trl.jsonl"));
    assert_eq!(trl_rows.len(), rows(&iteration.join("pairs.jsonl")).len());
    assert_eq!(trl_rows[0]["chosen"][0]["role"], "assistant");
    assert!(trl_rows[0]["prompt"].as_array().is_some_and(|p| !p.is_empty()));

    let python = eva_test_support::trl::python();
    let script = eva_test_support::workspace_root().join("scripts/trl-dpo");
    let trl = format!("'{}' '{}'", python.display(), script.display());
    let resumed = resume_with(&out, &["--reconfigure", "--trainer-command", &trl]);
    assert!(resumed.status.success(), "{}", stderr(&resumed));
    let saved = std::fs::read_to_string(out.join("config.toml")).unwrap();
    assert!(saved.contains("trainer = \"external\"") && saved.contains("scripts/trl-dpo"), "{saved}");

    // TRL's steps, logged through EVA_METRICS: DPO starts at ln 2 (LoRA's B is zero).
    let steps = rows(&iteration.join("train/metrics.jsonl"));
    assert!(steps.len() >= 2, "{steps:?}");
    let first_loss = steps[0]["loss"].as_f64().unwrap();
    assert!((first_loss - std::f64::consts::LN_2).abs() < 1e-3, "{first_loss}");
    let summary = &rows(&out.join("metrics.jsonl"))[0];
    assert_eq!(summary["first_loss"].as_f64(), Some(first_loss));

    // θ_2 is θ_1 (exported for the trainer) with TRL's adapter merged: the chosen answer's
    // log-prob moved.
    let theta = iteration.join("train/theta");
    let pair = &rows(&iteration.join("pairs.jsonl"))[0];
    let before = LanguageModel::load(&theta, WeightFormat::F32).unwrap();
    let after = LanguageModel::load(&iteration.join("model"), WeightFormat::F32).unwrap();
    let messages: Vec<eva_engine::Message> = serde_json::from_value(pair["prompt"].clone()).unwrap();
    let prompt = before.chat_prompt(&messages).unwrap();
    let chosen = before.tokenizer.encode(pair["chosen"].as_str().unwrap()).unwrap();
    let logprob = |m: &LanguageModel| m.logprobs(&[Scored { prompt: &prompt, completion: &chosen }]).unwrap()[0].sum;
    let (b, a) = (logprob(&before), logprob(&after));
    assert!((a - b).abs() > 1e-3, "TRL's update changed θ: {b} -> {a}");
    assert!(after.chat_template.is_some(), "θ_2 keeps its chat template");
}

/// eva killed (SIGKILL) while its external trainer runs takes the trainer down with it,
/// so that a resumed run never races a leftover trainer writing the same files.
#[test]
fn a_killed_run_stops_its_external_trainer() {
    let dir = tempfile::tempdir().unwrap();
    let (seeds, out) = (seeds(dir.path(), &SEEDS), dir.path().join("run"));
    let command = "echo $$ > trainer.pid; exec sleep 600";
    let mut eva = eva_run(&seeds, &out, &["--trainer", "external", "--trainer-command", command])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let pid_file = out.join("iter-1/train/trainer.pid");
    let start = std::time::Instant::now();
    let pid = loop {
        if let Some(pid) = std::fs::read_to_string(&pid_file).ok().and_then(|p| p.trim().parse::<u32>().ok()) {
            break pid;
        }
        assert!(eva.try_wait().unwrap().is_none(), "the run ended before training");
        assert!(start.elapsed().as_secs() < 600, "no training after 10 minutes");
        std::thread::sleep(std::time::Duration::from_millis(100));
    };
    let alive = |pid: u32| {
        std::path::Path::new(&format!("/proc/{pid}")).exists()
            && !std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default().contains(") Z ")
    };
    assert!(alive(pid), "the trainer runs");
    eva.kill().unwrap();
    eva.wait().unwrap();
    let start = std::time::Instant::now();
    while alive(pid) && start.elapsed().as_secs() < 10 {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert!(!alive(pid), "the trainer outlived eva");
}
