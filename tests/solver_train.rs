//! The solver on the embedded default model: a few LoRA DPO steps on a handful of pairs
//! lower the loss and raise the chosen-minus-rejected margin on those pairs.

use eva::models::default_model;
use eva_engine::{Adaptation, LanguageModel, LoraConfig, WeightFormat};
use eva_solver::{Decay, PreferenceLoss, PreferencePair, SolverConfig, Text, Trainer, compute_reference, tokenize};

fn pair(prompt: &str, chosen: &str, rejected: &str) -> PreferencePair {
    PreferencePair {
        prompt: Text::Plain(prompt.into()),
        chosen: Text::Plain(chosen.into()),
        rejected: Text::Plain(rejected.into()),
    }
}

#[test]
fn lora_dpo_lowers_the_loss_and_widens_the_margin() {
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
    let trainable = model.trainable(Adaptation::Lora(LoraConfig::default()), 0).unwrap();
    let config = SolverConfig {
        loss: PreferenceLoss::Dpo { beta: 0.1 },
        lr: 2e-3,
        epochs: 4,
        micro_batch: 2,
        grad_accum: 2,
        warmup_ratio: 0.0,
        decay: Decay::Constant,
        checkpoint_every: 100,
        ..Default::default()
    };
    let out = tempfile::tempdir().unwrap();
    let mut trainer = Trainer::new(&trainable, config, tokenized, out.path()).unwrap();
    let mut steps = vec![];
    trainer.run(&mut |m| steps.push(m.clone())).unwrap();
    for m in &steps {
        println!(
            "step {}: loss {:.4} margin {:+.4} accuracy {:.2} grad norm {:.3}",
            m.step, m.loss, m.margin, m.accuracy, m.grad_norm
        );
    }
    assert_eq!(steps.len(), 4, "4 epochs of one step each");
    // Before any update the policy is the reference: loss ln 2, margin 0.
    assert!((steps[0].loss - std::f64::consts::LN_2).abs() < 1e-3, "{:?}", steps[0]);
    assert!(steps[0].margin.abs() < 1e-3);
    for w in steps.windows(2) {
        assert!(w[1].loss < w[0].loss, "loss falls every step: {:?}", steps.iter().map(|m| m.loss).collect::<Vec<_>>());
        assert!(w[1].margin > w[0].margin, "margin rises every step");
    }
    assert_eq!(steps[3].accuracy, 1.0);
    let lines = std::fs::read_to_string(out.path().join("metrics.jsonl")).unwrap();
    assert_eq!(lines.lines().count(), 4, "one metrics line per step");
    assert!(out.path().join("checkpoint/params.safetensors").is_file());
}
