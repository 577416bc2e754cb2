//! `eva-host model generate` on the embedded default model.

use std::process::Command;

fn eva_host(args: &[&str]) -> (bool, String) {
    let model = eva_test_support::models::default_model();
    let out = Command::new(env!("CARGO_BIN_EXE_eva-host"))
        .args(args)
        .env("EVA_CACHE_DIR", model.parent().unwrap().parent().unwrap())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(if out.status.success() { &out.stdout } else { &out.stderr }).into_owned();
    (out.status.success(), text)
}

/// Two prompts, two samples each, fixed seed.
const SEEDED_RUN: [&str; 13] = [
    "model",
    "generate",
    "--threads",
    "1",
    "-n",
    "2",
    "--max-new-tokens",
    "16",
    "--seed",
    "5",
    "--json",
    "What is the capital of France?",
    "Name a colour.",
];

#[test]
fn generates_n_samples_per_prompt_as_json() {
    let (ok, text) = eva_host(&SEEDED_RUN);
    assert!(ok, "{text}");
    let lines: Vec<serde_json::Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), 2, "{text}");
    assert_eq!(lines[1]["prompt"], "Name a colour.");
    for line in &lines {
        let completions = line["completions"].as_array().unwrap();
        assert_eq!(completions.len(), 2);
        for c in completions {
            assert!(!c["text"].as_str().unwrap().is_empty());
            assert!(["eos", "stop", "length"].contains(&c["finish"].as_str().unwrap()));
            assert!(c["tokens"].as_array().unwrap().len() <= 16);
        }
    }
    // The same seed gives the same samples.
    let (_, again) = eva_host(&SEEDED_RUN);
    assert_eq!(text, again);
}

#[test]
fn a_missing_model_file_is_named() {
    let (ok, text) = eva_host(&["model", "generate", "--model", "/nonexistent/model.gguf", "hi"]);
    assert!(!ok);
    insta::assert_snapshot!(text.trim(), @"error: loading the model: /nonexistent/model.gguf: No such file or directory (os error 2)");
}

#[test]
fn an_unknown_weight_format_is_refused() {
    let (ok, text) = eva_host(&["model", "generate", "--weights", "int3", "hi"]);
    assert!(!ok);
    assert!(text.contains("unknown weight format `int3` (f32, q8_0, native)"), "{text}");
}

#[cfg(not(feature = "cuda"))]
#[test]
fn a_gpu_without_the_cuda_build_says_how_to_get_one() {
    let (ok, text) = eva_host(&["--device", "cuda:1", "model", "generate", "hi"]);
    assert!(!ok);
    insta::assert_snapshot!(text.trim(), @r#"error: loading the model: --device cuda:1: this eva-host was built without CUDA; rebuild it with `cargo build --release -p eva-host --features cuda` (see README, "GPUs")"#);
}

#[test]
fn an_unknown_device_is_refused() {
    let (ok, text) = eva_host(&["model", "generate", "--device", "tpu", "hi"]);
    assert!(!ok);
    assert!(text.contains("unknown device `tpu` (cpu, cuda or cuda:N)"), "{text}");
}
