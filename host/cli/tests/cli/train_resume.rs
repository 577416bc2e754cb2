//! `eva-host train` killed mid-epoch and resumed ends with the same weights as a run that
//! was never killed (tiny model with the default model's tokenizer and template).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

fn pairs(dir: &Path) -> PathBuf {
    let path = dir.join("pairs.jsonl");
    let lines: String = (0..12)
        .map(|i| {
            let j = serde_json::json!({"prompt": format!("Question {i}: what is {i} + {i}?"), "chosen": format!("It is {}.", 2 * i), "rejected": format!("It is {}.", 2 * i + 1)});
            j.to_string() + "\n"
        })
        .collect();
    std::fs::write(&path, lines).unwrap();
    path
}

fn train(model: &Path, pairs: &Path, out: &Path, resume: bool) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_eva-host"));
    cmd.args([
        "train",
        "--threads",
        "1",
        "--full",
        "--lr",
        "1e-2",
        "--epochs",
        "3",
        "--micro-batch",
        "2",
        "--checkpoint-every",
        "1",
        "--seed",
        "9",
    ])
    .arg("--model")
    .arg(model)
    .arg("--pairs")
    .arg(pairs)
    .arg("--out")
    .arg(out);
    if resume {
        cmd.arg("--resume");
    }
    cmd
}

fn weights(out: &Path) -> Vec<(String, Vec<f32>)> {
    let t = candle_core::safetensors::load(out.join("model/model.safetensors"), &candle_core::Device::Cpu).unwrap();
    let mut v: Vec<(String, Vec<f32>)> =
        t.into_iter().map(|(n, t)| (n, t.flatten_all().unwrap().to_vec1::<f32>().unwrap())).collect();
    v.sort_by(|a, b| a.0.cmp(&b.0));
    v
}

#[test]
fn a_killed_run_resumes_to_the_same_weights() {
    let dir = tempfile::tempdir().unwrap();
    let model = eva_test_support::models::write_tiny_llama(dir.path(), 1);
    let pairs = pairs(dir.path());

    let straight = dir.path().join("straight");
    let out = train(&model, &pairs, &straight, false).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let steps = std::fs::read_to_string(straight.join("metrics.jsonl")).unwrap().lines().count();
    assert_eq!(steps, 18, "3 epochs x 6 steps");

    // Kill it mid-epoch (after step 8 of 18, in the second epoch).
    let killed = dir.path().join("killed");
    let mut child = train(&model, &pairs, &killed, false).stderr(std::process::Stdio::null()).spawn().unwrap();
    let started = Instant::now();
    loop {
        let done = std::fs::read_to_string(killed.join("metrics.jsonl")).map_or(0, |t| t.lines().count());
        if done >= 8 {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(120), "the run makes no progress");
        assert!(child.try_wait().unwrap().is_none(), "the run ended before it could be killed");
        std::thread::sleep(Duration::from_millis(5));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(!killed.join("model").exists(), "killed before the end");

    // Starting over on a run directory with a checkpoint is refused; --resume continues.
    let refused = train(&model, &pairs, &killed, false).output().unwrap();
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("pass --resume"));
    let out = train(&model, &pairs, &killed, true).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));

    let (a, b) = (weights(&straight), weights(&killed));
    assert_eq!(a.len(), b.len());
    for ((na, wa), (nb, wb)) in a.iter().zip(&b) {
        assert_eq!(na, nb);
        assert!(wa == wb, "{na} differs after resuming");
    }
    let metrics = std::fs::read_to_string(killed.join("metrics.jsonl")).unwrap();
    let steps: Vec<u64> = metrics
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["step"].as_u64().unwrap())
        .collect();
    assert_eq!(steps, (1..=18).collect::<Vec<_>>(), "each step logged once");
}

/// `--weights q8_0` quantizes only the inference copy: the reference log-probs come from
/// the f32 weights the solver trains, so before any update the policy is the reference,
/// as with `--weights f32`. (An 8-bit reference put the first margin at 7.7e-5 on this
/// tiny model.)
#[test]
fn quantized_inference_weights_leave_the_reference_in_f32() {
    let dir = tempfile::tempdir().unwrap();
    let model = eva_test_support::models::write_tiny_llama(dir.path(), 1);
    let pairs = pairs(dir.path());
    for weights in ["f32", "q8_0"] {
        let out_dir = dir.path().join(weights);
        let out = train(&model, &pairs, &out_dir, false).args(["--weights", weights]).output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let metrics = std::fs::read_to_string(out_dir.join("metrics.jsonl")).unwrap();
        let first: serde_json::Value = serde_json::from_str(metrics.lines().next().unwrap()).unwrap();
        let (loss, margin) = (first["loss"].as_f64().unwrap(), first["margin"].as_f64().unwrap());
        println!("first step with --weights {weights}: loss {loss:.6}, margin {margin:+.2e}");
        assert!(margin.abs() < 1e-5, "{weights}: the policy starts away from its reference: margin {margin}");
        assert!((loss - std::f64::consts::LN_2).abs() < 1e-5, "{weights}: first DPO loss {loss}, not ln 2");
    }
}

/// bf16 needs a GPU's matmul: on the CPU the run stops before it writes anything.
#[test]
fn bf16_training_on_the_cpu_is_refused_before_anything_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let model = eva_test_support::models::write_tiny_llama(dir.path(), 1);
    let pairs = pairs(dir.path());
    let out_dir = dir.path().join("bf16");
    let out = train(&model, &pairs, &out_dir, false).args(["--precision", "bf16"]).output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("bf16 training needs a GPU (`--device cuda`)"), "{err}");
    assert!(!out_dir.exists(), "nothing is written");
}
