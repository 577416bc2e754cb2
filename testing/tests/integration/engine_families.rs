//! Every supported family (llama, qwen2, qwen3, gemma, gemma2, gemma3) against
//! Hugging Face transformers: a tiny random model of each, written by eva as a Hugging
//! Face directory, was run by transformers 5.24 (`tests/reference/transformers/
//! families.py` wrote `families.json`). The test rebuilds the same bytes, loads them
//! back, and compares logits at every position, with the fused (inference) and the
//! differentiable (training) kernels. It also reads the config.json that transformers
//! itself writes for each model (`rope_parameters`, `layer_types`) into the same shape.

use candle_core::{Device, Tensor};
use eva_engine::model::Linear;
use eva_engine::{Kernels, ModelConfig, Transformer, Weights};
use eva_test_support::models::{FAMILIES, write_tiny_family};
use sha2::{Digest, Sha256};

fn reference() -> serde_json::Value {
    let path = eva_test_support::workspace_root().join("tests/reference/transformers/families.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn load(dir: &std::path::Path, kernels: Kernels) -> Transformer {
    let config = ModelConfig::from_hf_json(&dir.join("config.json")).unwrap();
    let weights = Weights::from_safetensors_dir(dir, &Device::Cpu).unwrap();
    Transformer::build(&config, &weights, kernels, &mut |_, w, b| Ok(Linear::dense(w.clone(), b.cloned()))).unwrap()
}

#[test]
fn every_family_matches_transformers() {
    let reference = reference();
    let tmp = tempfile::tempdir().unwrap();
    let sequences: Vec<Vec<u32>> = serde_json::from_value(reference["sequences"].clone()).unwrap();
    for (arch, expected) in FAMILIES.iter().zip(reference["models"].as_array().unwrap()) {
        let dir = write_tiny_family(tmp.path(), *arch);
        let digest = hex::encode(Sha256::digest(std::fs::read(dir.join("model.safetensors")).unwrap()));
        assert_eq!(
            digest,
            expected["safetensors_sha256"].as_str().unwrap(),
            "{arch:?}: not the model transformers ran"
        );
        for kernels in [Kernels::Fused, Kernels::Differentiable] {
            let model = load(&dir, kernels);
            let mut max_delta = 0f32;
            for (seq, logits) in sequences.iter().zip(expected["logits"].as_array().unwrap()) {
                let ids = Tensor::from_vec(seq.clone(), (1, seq.len()), &Device::Cpu).unwrap();
                let ours = model.forward(&ids, None).unwrap().squeeze(0).unwrap().to_vec2::<f32>().unwrap();
                let theirs: Vec<Vec<f32>> = serde_json::from_value(logits.clone()).unwrap();
                for (a, b) in ours.iter().flatten().zip(theirs.iter().flatten()) {
                    max_delta = max_delta.max((a - b).abs());
                }
            }
            println!("{:<7} {kernels:?}: max |Δlogit| vs transformers = {max_delta:.2e}", arch.name());
            assert!(max_delta < 1e-4, "{arch:?} {kernels:?}: logits differ from transformers by {max_delta}");
        }
        // transformers' own config.json for the same model reads into the same shape.
        let theirs = tmp.path().join(format!("{}-transformers.json", arch.name()));
        std::fs::write(&theirs, expected["transformers_config"].to_string()).unwrap();
        let ours = ModelConfig::from_hf_json(&dir.join("config.json")).unwrap();
        assert_eq!(ModelConfig::from_hf_json(&theirs).unwrap(), ours, "{arch:?}: transformers' config.json");
    }
}

#[test]
fn a_wrong_layer_pattern_is_refused_naming_the_file() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = write_tiny_family(tmp.path(), eva_engine::Architecture::Gemma2);
    let path = dir.join("config.json");
    let mut json: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    json["layer_types"] = serde_json::json!(["sliding_attention", "full_attention"]);
    std::fs::write(&path, json.to_string()).unwrap();
    let err = ModelConfig::from_hf_json(&path).unwrap_err().to_string();
    assert!(err.contains(&path.display().to_string()) && err.contains("names 2 layers"), "{err}");
    json["layer_types"] = serde_json::json!(["sliding_attention", "full_attention", "chunked_attention"]);
    std::fs::write(&path, json.to_string()).unwrap();
    let err = ModelConfig::from_hf_json(&path).unwrap_err().to_string();
    assert!(err.contains("chunked_attention"), "{err}");
}
