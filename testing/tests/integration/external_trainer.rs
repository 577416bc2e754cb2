//! The external trainer's contract with scripted commands on a tiny model: an adapter
//! written to `EVA_OUT` becomes θ_{t+1} merged (and kept for servers), full weights are
//! taken as they are, the variables say what the contract says, and a command that wrote
//! nothing or exited non-zero is refused by name.

use std::path::Path;
use std::sync::Arc;

use eva_engine::{Adaptation, LanguageModel, LoraConfig, Message, WeightFormat};
use eva_loop::external::ExternalTrainer;
use eva_loop::layout::PairRecord;
use eva_loop::progress::Silent;
use eva_loop::settings::SolverSettings;

fn pairs() -> Vec<PairRecord> {
    (0..3)
        .map(|i| PairRecord {
            id: format!("q{i}"),
            prompt: vec![Message::new("system", "Be brief."), Message::new("user", format!("Question {i}?"))],
            chosen: format!("Answer {i}."),
            rejected: "No.".into(),
            chosen_reward: 2.0,
            rejected_reward: 1.0,
            labels: None,
        })
        .collect()
}

fn trainer(command: String, keep_update: bool) -> ExternalTrainer {
    let solver = SolverSettings { micro_batch: 2, grad_accum: 3, ..Default::default() };
    ExternalTrainer { command, solver, progress: Arc::new(Silent), keep_update }
}

/// The largest absolute difference between two models' tensors.
fn distance(a: &LanguageModel, b: &LanguageModel) -> f32 {
    a.weights
        .tensors
        .iter()
        .map(|(n, t)| {
            (t - &b.weights.tensors[n]).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap()
        })
        .fold(0.0, f32::max)
}

#[test]
fn an_adapter_or_full_weights_from_the_command_become_the_next_policy() {
    let dir = tempfile::tempdir().unwrap();
    let theta_dir = eva_test_support::models::write_tiny_llama(dir.path(), 3);
    let theta = LanguageModel::load(&theta_dir, WeightFormat::F32).unwrap();

    // An update made by "another trainer": a LoRA whose B is not zero, saved as PEFT does.
    let lora = LoraConfig { rank: 2, alpha: 4.0, targets: vec!["q_proj".into(), "v_proj".into()] };
    let update = theta.trainable(Adaptation::Lora(lora), 9).unwrap();
    for (name, var) in &update.params {
        if name.ends_with("lora_B.weight") {
            var.set(&(var.as_tensor().ones_like().unwrap() * 0.05).unwrap()).unwrap();
        }
    }
    let made = dir.path().join("made-adapter");
    update.save_hf(&made, None, None, true).unwrap();
    let merged_by_hand = dir.path().join("merged");
    update.save_hf(&merged_by_hand, Some(&theta.tokenizer), theta.chat_template.as_ref(), false).unwrap();

    let out = dir.path().join("iter-1/train");
    let model_dir = dir.path().join("iter-1/model");
    // The command records its environment, and copies the adapter into place.
    let command = format!("env | grep ^EVA_ | sort > seen-env; cp -r '{}' \"$EVA_OUT\"", made.display());
    let adapter = trainer(command, true);
    let losses = adapter.train_from(&theta, Some(&theta_dir), &pairs(), None, &out, &model_dir).unwrap();
    assert!(losses.is_empty(), "the command logged no steps");
    let next = LanguageModel::load(&model_dir, WeightFormat::F32).unwrap();
    let want = LanguageModel::load(&merged_by_hand, WeightFormat::F32).unwrap();
    assert!(distance(&next, &want) < 1e-6, "θ_2 is θ_1 with the adapter merged");
    assert!(distance(&next, &theta) > 1e-3, "and not θ_1");
    assert!(out.join("adapter/adapter_config.json").is_file(), "the update is kept for servers");
    assert!(next.chat_template.is_some());

    let env = std::fs::read_to_string(out.join("seen-env")).unwrap();
    for want in [
        format!("EVA_MODEL={}", std::path::absolute(&theta_dir).unwrap().display()),
        format!("EVA_OUT={}", std::path::absolute(out.join("output")).unwrap().display()),
        "EVA_BATCH=6".into(),
        "EVA_LOSS=dpo".into(),
        "EVA_BETA=0.1".into(),
        "EVA_ADAPTATION=lora".into(),
        "EVA_LORA_TARGETS=q_proj,v_proj".into(),
    ] {
        assert!(env.lines().any(|l| l == want), "{want} in:\n{env}");
    }
    let rows: Vec<serde_json::Value> = std::fs::read_to_string(out.join("pairs.trl.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(rows.len(), 3);
    assert_eq!(rows[1]["prompt"][1]["content"], "Question 1?");
    assert_eq!(rows[1]["chosen"], serde_json::json!([{"role": "assistant", "content": "Answer 1."}]));
    assert!(rows[1].get("ref_chosen_logps").is_none(), "no reference given, none written");

    // Run again (a resume after the command finished): the command is not run again.
    std::fs::remove_dir_all(&model_dir).unwrap();
    std::fs::remove_file(out.join("seen-env")).unwrap();
    adapter.train_from(&theta, Some(&theta_dir), &pairs(), None, &out, &model_dir).unwrap();
    assert!(!out.join("seen-env").exists(), "trainer.done: not run twice");
    assert!(distance(&LanguageModel::load(&model_dir, WeightFormat::F32).unwrap(), &want) < 1e-6);

    // Full weights, with steps logged, and a reference handed over.
    let out = dir.path().join("iter-2/train");
    let model_dir = dir.path().join("iter-2/model");
    let command = format!(
        "echo '{{\"step\":1,\"loss\":0.69,\"margin\":0.0}}' >> \"$EVA_METRICS\"; \
         cp -r '{}' \"$EVA_OUT\"; rm \"$EVA_OUT/tokenizer.json\"",
        merged_by_hand.display()
    );
    let reference = [(-1.5, -2.5), (-3.0, -4.0), (-5.0, -6.0)];
    let losses =
        trainer(command, false).train_from(&theta, None, &pairs(), Some(&reference), &out, &model_dir).unwrap();
    assert_eq!(losses, vec![(0.69, 0.0)]);
    assert!(distance(&LanguageModel::load(&model_dir, WeightFormat::F32).unwrap(), &want) < 1e-6);
    assert!(model_dir.join("tokenizer.json").is_file(), "θ_t's tokenizer filled in");
    assert!(out.join("theta/config.json").is_file(), "θ_t written for the trainer when it has no directory");
    let first: serde_json::Value =
        serde_json::from_str(std::fs::read_to_string(out.join("pairs.trl.jsonl")).unwrap().lines().next().unwrap())
            .unwrap();
    assert_eq!((first["ref_chosen_logps"].as_f64(), first["ref_rejected_logps"].as_f64()), (Some(-1.5), Some(-2.5)));
}

#[test]
fn a_command_that_fails_or_writes_nothing_is_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let theta_dir = eva_test_support::models::write_tiny_llama(dir.path(), 3);
    let theta = LanguageModel::load(&theta_dir, WeightFormat::F32).unwrap();
    let run = |command: &str, out: &Path| {
        trainer(command.into(), false)
            .train_from(&theta, Some(&theta_dir), &pairs(), None, out, &dir.path().join("model"))
            .unwrap_err()
            .to_string()
    };
    let err = run("echo step 1; echo 'out of memory' >&2; exit 7", &dir.path().join("a"));
    assert!(
        err.starts_with("the external trainer `echo step 1; echo 'out of memory' >&2; exit 7` exited with status 7")
    );
    assert!(err.ends_with("step 1\nout of memory"), "the log's tail: {err}");
    let err = run("kill -9 $$", &dir.path().join("b"));
    assert!(err.contains("was killed"), "{err}");
    let err = run("mkdir \"$EVA_OUT\"", &dir.path().join("c"));
    assert!(err.contains("holds neither a PEFT adapter (adapter_config.json) nor a model (config.json)"), "{err}");
    assert!(!dir.path().join("c/trainer.done").exists(), "what it wrote is no training: a resume runs it again");
    assert!(!dir.path().join("model").exists(), "no θ_2 from a failed command");
}
