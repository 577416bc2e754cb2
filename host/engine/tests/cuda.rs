//! The engine on an NVIDIA GPU gives the CPU's results. Built only with the `cuda`
//! feature (`scripts/check-cuda` type-checks it in every test run) and run where there is
//! a GPU:
//!
//! ```sh
//! cargo test --release -p eva-engine --features cuda --test cuda -- --nocapture
//! ```
//!
//! The `tiny_` tests need no download (random weights of every family); the others
//! fetch the embedded default model.
//!
//! The f32 bounds are float-reordering noise; the bf16 ones follow from bf16's 2^-8
//! relative rounding of every weight and activation (not yet measured on a GPU).
#![cfg(feature = "cuda")]

use std::path::PathBuf;

use candle_core::{DType, Device, Tensor};
use eva_engine::logprobs::{Scored, TokenBatch, shared_prompt_logprobs, token_logprobs};
use eva_engine::model::{Kernels, KvCache, Linear};
use eva_engine::{
    Adaptation, Architecture, DEFAULT_MODEL, GenerationParams, LanguageModel, LoraConfig, Message, ModelConfig,
    Precision, Sampling, TrainableModel, Transformer, WeightFormat, Weights, fetch,
};

/// Random weights of a tiny `arch`, scaled up so that attention and norms matter.
fn tiny_weights(c: &ModelConfig) -> Weights {
    let w = Weights::random(c, 7, &Device::Cpu).unwrap();
    let scaled =
        w.tensors.into_iter().map(|(n, t)| if n.ends_with("norm.weight") { (n, t) } else { (n, (t * 20.0).unwrap()) });
    Weights::from_tensors(scaled.collect(), w.source)
}

fn build(c: &ModelConfig, w: &Weights) -> Transformer {
    Transformer::build(c, w, Kernels::Fused, &mut |_, w, b| Ok(Linear::dense(w.clone(), b.cloned()))).unwrap()
}

#[test]
fn tiny_models_compute_the_cpus_logits_and_cache_on_the_gpu() {
    let gpu = gpu();
    for arch in Architecture::ALL {
        let c = ModelConfig::tiny(arch);
        let w = tiny_weights(&c);
        let (on_cpu, on_gpu) = (build(&c, &w), build(&c, &w.to(&gpu, DType::F32).unwrap()));
        let rows: Vec<u32> = vec![1, 5, 9, 2, 7, 3, 3, 8, 40, 11, 0, 6];
        let ids = |d: &Device| Tensor::from_vec(rows.clone(), (2, 6), d).unwrap();
        let (a, b) = (on_cpu.forward(&ids(&Device::Cpu), None).unwrap(), on_gpu.forward(&ids(&gpu), None).unwrap());
        let scale = a.abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
        let diff = max_diff(&a, &b);
        println!("{arch:?}: max |Δlogit| cpu vs cuda {diff:.2e} (largest logit {scale:.1})");
        assert!(diff <= 1e-4 * scale.max(1.0), "{arch:?}: {diff}");
        // Prefill four tokens into the GPU cache, then one more: the last full position's logits.
        let mut cache = KvCache::new(&c, 2, 8, vec![0, 0], &gpu).unwrap();
        on_gpu.forward(&ids(&gpu).narrow(1, 0, 4).unwrap(), Some(&mut cache)).unwrap();
        let step = on_gpu.forward(&ids(&gpu).narrow(1, 4, 1).unwrap(), Some(&mut cache)).unwrap();
        let full = a.narrow(1, 4, 1).unwrap().squeeze(1).unwrap();
        assert!(max_diff(&full, &step) <= 1e-4 * scale.max(1.0), "{arch:?}: cached decoding on the GPU");
    }
}

/// bf16 copies of every family on the GPU, full and LoRA (the frozen base's matmul runs
/// its CUDA forward): every trainable tensor gets a finite, non-zero gradient.
#[test]
fn tiny_bf16_copies_get_every_gradient_on_the_gpu() {
    let gpu = gpu();
    let seqs =
        [Scored { prompt: &[1, 2, 3], completion: &[4, 5, 6, 7] }, Scored { prompt: &[9, 8], completion: &[7, 6, 5] }];
    let lora = Adaptation::Lora(LoraConfig {
        rank: 4,
        alpha: 8.0,
        targets: eva_engine::LORA_TARGETS.map(String::from).to_vec(),
    });
    for arch in Architecture::ALL {
        let c = ModelConfig::tiny(arch);
        let w = Weights::random(&c, 3, &Device::Cpu).unwrap().to(&gpu, DType::BF16).unwrap();
        for adaptation in [Adaptation::Full, lora.clone()] {
            let tm = TrainableModel::new(&c, &w, adaptation.clone(), 0).unwrap();
            let batch = TokenBatch::new(&seqs, c.vocab_size, &gpu).unwrap();
            let loss = token_logprobs(&tm.model, &batch).unwrap().sum_all().unwrap().neg().unwrap();
            assert_eq!(loss.dtype(), DType::F32);
            let grads = loss.backward().unwrap();
            for (name, var) in &tm.params {
                let g = grads.get(var).unwrap_or_else(|| panic!("{arch:?} {adaptation:?}: {name} got no gradient"));
                let norm =
                    g.to_dtype(DType::F32).unwrap().sqr().unwrap().sum_all().unwrap().to_scalar::<f32>().unwrap();
                // LoRA's A is still multiplied by B = 0.
                let expect_zero = name.contains("lora_A");
                assert!(norm.is_finite() && (norm > 0.0) != expect_zero, "{arch:?}: {name} has gradient norm² {norm}");
            }
        }
    }
}

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
        let reference = cpu.trainable(adaptation.clone(), 0).unwrap();
        let half = gpu.trainable_in(adaptation.clone(), 0, Precision::Bf16).unwrap();
        assert!(half.params.iter().all(|(_, v)| v.dtype() == DType::BF16 && !v.device().is_cpu()));
        let sums =
            |m: &eva_engine::TrainableModel| shared_prompt_logprobs(&m.model, &prompt, &[&chosen, &rejected]).unwrap();
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
