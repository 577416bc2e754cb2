//! The solver on the embedded default model: a few LoRA DPO steps on a handful of pairs
//! lower the loss and raise the chosen-minus-rejected margin on those pairs, in f32 and
//! in half precision.

use candle_core::{DType, Device};
use eva_engine::{Adaptation, LanguageModel, LoraConfig, TrainableModel, WeightFormat};
use eva_solver::{
    Decay, PreferenceLoss, PreferencePair, SolverConfig, StepMetrics, Text, TokenizedPair, Trainer, compute_reference,
    tokenize,
};
use eva_test_support::models::default_model;

fn pair(prompt: &str, chosen: &str, rejected: &str) -> PreferencePair {
    PreferencePair {
        prompt: Text::Plain(prompt.into()),
        chosen: Text::Plain(chosen.into()),
        rejected: Text::Plain(rejected.into()),
    }
}

/// The default model and four pairs with their f32 reference log-probs.
fn model_and_pairs() -> (LanguageModel, Vec<TokenizedPair>) {
    eva_engine::threads::set_threads(Some(2));
    let model = LanguageModel::load(&default_model(), WeightFormat::F32).unwrap();
    let pairs = [
        pair("What is the capital of France?", "The capital of France is Paris.", "I don't know, maybe London."),
        pair("What is 2+2?", "2+2 equals 4.", "2+2 equals 5."),
        pair("Name a primary colour.", "Red is a primary colour.", "Purple is a primary colour."),
        pair("Is the sun a star?", "Yes, the Sun is a star.", "No, the Sun is a planet."),
    ];
    let mut tokenized: Vec<_> =
        pairs.iter().map(|p| tokenize(p, &model.tokenizer, model.chat_template.as_ref()).unwrap()).collect();
    // The completion ends with the template's end-of-turn token.
    let im_end = model.tokenizer.token_id("<|im_end|>").unwrap();
    assert!(tokenized.iter().all(|p| p.chosen.contains(&im_end)));
    compute_reference(&model.transformer, &mut tokenized, 4096).unwrap();
    (model, tokenized)
}

/// Four epochs of one step each (two micro-batches of two pairs).
fn config() -> SolverConfig {
    SolverConfig {
        loss: PreferenceLoss::Dpo { beta: 0.1 },
        lr: 2e-3,
        epochs: 4,
        micro_batch: 2,
        grad_accum: 2,
        warmup_ratio: 0.0,
        decay: Decay::Constant,
        checkpoint_every: 100,
        ..Default::default()
    }
}

/// Train to the end, printing every step.
fn train(trainable: &TrainableModel, pairs: Vec<TokenizedPair>, label: &str) -> (Vec<StepMetrics>, tempfile::TempDir) {
    let out = tempfile::tempdir().unwrap();
    let mut trainer = Trainer::new(trainable, config(), pairs, out.path()).unwrap();
    let mut steps = vec![];
    trainer.run(&mut |m| steps.push(m.clone())).unwrap();
    for m in &steps {
        println!(
            "{label} step {}: loss {:.4} margin {:+.4} accuracy {:.2} grad norm {:.3}",
            m.step, m.loss, m.margin, m.accuracy, m.grad_norm
        );
    }
    (steps, out)
}

/// Loss falls and margin rises at every step, and every pair ends on the right side.
fn assert_learns(steps: &[StepMetrics]) {
    assert_eq!(steps.len(), 4, "4 epochs of one step each");
    for w in steps.windows(2) {
        assert!(w[1].loss < w[0].loss, "loss falls every step: {:?}", steps.iter().map(|m| m.loss).collect::<Vec<_>>());
        assert!(w[1].margin > w[0].margin, "margin rises every step");
    }
    assert_eq!(steps[3].accuracy, 1.0);
}

#[test]
fn lora_dpo_lowers_the_loss_and_widens_the_margin() {
    let (model, pairs) = model_and_pairs();
    let trainable = model.trainable(Adaptation::Lora(LoraConfig::default()), 0).unwrap();
    let (steps, out) = train(&trainable, pairs, "f32");
    // Before any update the policy is the reference: loss ln 2, margin 0.
    assert!((steps[0].loss - std::f64::consts::LN_2).abs() < 1e-3, "{:?}", steps[0]);
    assert!(steps[0].margin.abs() < 1e-3);
    assert_learns(&steps);
    let lines = std::fs::read_to_string(out.path().join("metrics.jsonl")).unwrap();
    assert_eq!(lines.lines().count(), 4, "one metrics line per step");
    assert!(out.path().join("checkpoint/params.safetensors").is_file());
}

/// The half-precision path that `--precision bf16` runs on a GPU, run here in f16:
/// candle's CPU matmul has no bf16, and the casts, the f32 log-softmax, the f32
/// gradients, master weights and moments, and the checkpoint are the same code for both
/// half types. It must learn as f32 does, from a start within half rounding of the
/// reference.
#[test]
fn half_precision_lora_dpo_follows_f32() {
    let (model, pairs) = model_and_pairs();
    let lora = || Adaptation::Lora(LoraConfig::default());
    let full = model.trainable(lora(), 0).unwrap();
    let half_weights = model.weights.to(&Device::Cpu, DType::F16).unwrap();
    let half = TrainableModel::new(&model.transformer.config, &half_weights, lora(), 0).unwrap();
    assert!(half.params.iter().all(|(_, v)| v.dtype() == DType::F16));
    let (steps32, _) = train(&full, pairs.clone(), "f32");
    let (steps16, out) = train(&half, pairs.clone(), "f16");

    // The f16 policy differs from its f32 reference only by rounding.
    assert!((steps16[0].loss - std::f64::consts::LN_2).abs() < 2e-3, "{:?}", steps16[0]);
    assert_learns(&steps16);
    for (a, b) in steps32.iter().zip(&steps16) {
        assert!((a.loss - b.loss).abs() < 5e-3, "step {}: f32 loss {:.4}, f16 {:.4}", a.step, a.loss, b.loss);
    }
    // Every adapter got gradients: B starts at zero and no longer is.
    for (name, var) in half.params.iter().filter(|(n, _)| n.contains("lora_B")) {
        let max = var.as_tensor().to_dtype(DType::F32).unwrap().abs().unwrap().max_all().unwrap();
        assert!(max.to_scalar::<f32>().unwrap() > 0.0, "{name} never moved");
    }
    // The checkpoint keeps the f32 masters, and a resume in another precision is refused.
    let state =
        candle_core::safetensors::load(out.path().join("checkpoint/optimizer.safetensors"), &Device::Cpu).unwrap();
    for (name, var) in &half.params {
        let master = &state[&format!("master.{name}")];
        assert_eq!(master.dtype(), DType::F32);
        let rounded = master.to_dtype(DType::F16).unwrap().to_dtype(DType::F32).unwrap();
        let held = var.as_tensor().to_dtype(DType::F32).unwrap();
        let diff = (rounded - held).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
        assert_eq!(diff, 0.0, "{name} is not its master's rounding");
    }
    let mut other = Trainer::new(&full, config(), pairs, out.path()).unwrap();
    let err = other.resume().unwrap_err().to_string();
    assert!(err.contains("resume with the same precision"), "{err}");
}
