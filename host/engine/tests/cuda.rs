//! The engine on an NVIDIA GPU gives the CPU's results. Built only with the `cuda`
//! feature (`scripts/check-cuda` type-checks it in every test run) and run where there is
//! a GPU:
//!
//! ```sh
//! cargo test --release -p eva-engine --features cuda --test cuda -- --nocapture
//! ```
//!
//! The f32 bounds are float-reordering noise; the bf16 ones follow from bf16's 2^-8
//! relative rounding of every weight and activation (not yet measured on a GPU).
#![cfg(feature = "cuda")]

use std::path::PathBuf;

use candle_core::{DType, Device, Tensor};
use eva_engine::logprobs::shared_prompt_logprobs;
use eva_engine::{
    Adaptation, DEFAULT_MODEL, GenerationParams, LanguageModel, LoraConfig, Message, Precision, Sampling,
    WeightFormat, fetch,
};

fn default_model() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let cache = exe.ancestors().nth(3).unwrap().join("eva-test-models");
    fetch(&DEFAULT_MODEL, &cache).expect("fetching the default model")
}

fn user(text: &str) -> Message {
    Message { role: "user".into(), content: text.into() }
}

fn gpu() -> Device {
    Device::new_cuda(0).expect("this test needs an NVIDIA GPU and its driver")
}

fn max_diff(a: &Tensor, b: &Tensor) -> f32 {
    let (a, b) = (a.to_dtype(DType::F32).unwrap(), b.to_device(a.device()).unwrap().to_dtype(DType::F32).unwrap());
    (a - b).unwrap().abs().unwrap().flatten_all().unwrap().max(0).unwrap().to_scalar::<f32>().unwrap()
}

fn models() -> (LanguageModel, LanguageModel) {
    let path = default_model();
    let cpu = LanguageModel::load_on(&path, WeightFormat::F32, &Device::Cpu).unwrap();
    let gpu = LanguageModel::load_on(&path, WeightFormat::F32, &gpu()).unwrap();
    (cpu, gpu)
}

#[test]
fn the_default_model_generates_and_scores_as_on_the_cpu() {
    let (cpu, gpu) = models();
    let prompt = cpu.chat_prompt(&[user("Write a short poem about the sea.")]).unwrap();
    let ids = |m: &LanguageModel| Tensor::new(prompt.as_slice(), m.transformer.device()).unwrap().unsqueeze(0).unwrap();
    let diff = max_diff(
        &cpu.transformer.forward(&ids(&cpu), None).unwrap(),
        &gpu.transformer.forward(&ids(&gpu), None).unwrap(),
    );
    println!("max |Δlogit| cpu vs cuda over {} positions: {diff:.2e}", prompt.len());
    assert!(diff < 1e-2, "{diff}");

    let params = GenerationParams {
        sampling: Sampling { temperature: 0.0, top_p: 1.0 },
        max_new_tokens: 32,
        n: 1,
        seed: 0,
        ..GenerationParams::default()
    };
    let on_cpu = cpu.generate(std::slice::from_ref(&prompt), &params, &mut |_| {}).unwrap();
    let on_gpu = gpu.generate(std::slice::from_ref(&prompt), &params, &mut |_| {}).unwrap();
    println!("cuda: {}", on_gpu[0][0].text);
    assert_eq!(on_cpu[0][0].tokens, on_gpu[0][0].tokens, "greedy tokens differ");
}

/// One shared-prompt forward/backward of a bf16 copy on the GPU against the f32 copy on
/// the CPU: close summed log-probs, and gradients pointing the same way.
#[test]
fn bf16_copies_train_on_the_gpu_like_f32_on_the_cpu() {
    let (cpu, gpu) = models();
    let prompt = cpu.chat_prompt(&[user("What is the capital of France?")]).unwrap();
    let chosen = cpu.tokenizer.encode_prompt("The capital of France is Paris.").unwrap();
    let rejected = cpu.tokenizer.encode_prompt("Maybe London, or Rome.").unwrap();
    let lora = Adaptation::Lora(LoraConfig { targets: vec!["q_proj".into(), "v_proj".into()], ..Default::default() });
    for adaptation in [lora, Adaptation::Full] {
        let reference = cpu.trainable(adaptation.clone(), 0, Precision::F32).unwrap();
        let half = gpu.trainable(adaptation.clone(), 0, Precision::Bf16).unwrap();
        assert!(half.params.iter().all(|(_, v)| v.dtype() == DType::BF16 && !v.device().is_cpu()));
        let sums = |m: &eva_engine::TrainableModel| {
            shared_prompt_logprobs(&m.model, &prompt, &[&chosen, &rejected]).unwrap()
        };
        let (s32, s16) = (sums(&reference), sums(&half));
        let d = max_diff(&s32, &s16);
        println!("{adaptation:?}: summed log-probs {s32} (f32, cpu) vs {s16} (bf16, cuda): max diff {d:.3}");
        assert_eq!(s16.dtype(), DType::F32, "log-probs are normalised in f32");
        assert!(d < 0.5, "{d}");
        let (g32, g16) = (s32.sum_all().unwrap().backward().unwrap(), s16.sum_all().unwrap().backward().unwrap());
        for ((name, v32), (_, v16)) in reference.params.iter().zip(&half.params) {
            let (Some(a), Some(b)) = (g32.get(v32), g16.get(v16)) else {
                panic!("{name}: no gradient on one side");
            };
            let a = a.flatten_all().unwrap();
            let b = b.to_device(&Device::Cpu).unwrap().to_dtype(DType::F32).unwrap().flatten_all().unwrap();
            let dot = (&a * &b).unwrap().sum_all().unwrap().to_scalar::<f32>().unwrap();
            let norm = |t: &Tensor| t.sqr().unwrap().sum_all().unwrap().to_scalar::<f32>().unwrap().sqrt();
            let (na, nb) = (norm(&a), norm(&b));
            if na == 0.0 {
                // LoRA's A gets no gradient while B is still zero, on both sides.
                assert_eq!(nb, 0.0, "{name}: only the bf16 copy has a gradient");
                continue;
            }
            let cosine = dot / (na * nb);
            assert!(cosine > 0.9, "{name}: gradients differ in direction (cosine {cosine:.3})");
        }
    }
}
