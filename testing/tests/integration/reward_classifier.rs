//! The classifier backend against Hugging Face `transformers` on a tiny random
//! `LlamaForSequenceClassification` (built here, scored there by
//! `tests/reference/transformers/classifier.py`; the hash below ties the two together).

use eva_engine::Message;
use eva_reward::{Classifier, Reward, RewardItem, Scorer};

fn reference() -> serde_json::Value {
    let path = eva_test_support::workspace_root().join("tests/reference/transformers/classifier.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn items(reference: &serde_json::Value) -> Vec<RewardItem> {
    reference["items"].as_array().unwrap().iter().map(|i| serde_json::from_value(i.clone()).unwrap()).collect()
}

#[test]
fn classifier_scores_equal_transformers() {
    let dir = tempfile::tempdir().unwrap();
    let model = eva_test_support::models::write_tiny_classifier(dir.path());
    let reference = reference();
    let bytes = std::fs::read(model.join("model.safetensors")).unwrap();
    assert_eq!(
        eva_plugin_runtime::digest(&bytes),
        reference["safetensors_sha256"].as_str().unwrap(),
        "the tiny model is not the one transformers scored; rerun classifier.py"
    );
    let mut classifier = Classifier::load(&model, None).unwrap();
    let items = items(&reference);
    for (item, want) in items.iter().zip(reference["items"].as_array().unwrap()) {
        assert_eq!(classifier.tokens(item).unwrap().len() as u64, want["tokens"].as_u64().unwrap(), "token count");
    }
    // All at once (one padded batch) and one by one.
    let batched = classifier.score(&items).unwrap();
    let mut worst = 0f64;
    for (i, (item, want)) in items.iter().zip(reference["items"].as_array().unwrap()).enumerate() {
        let want = want["score"].as_f64().unwrap();
        let alone = classifier.score(std::slice::from_ref(item)).unwrap()[0];
        for got in [batched[i], alone] {
            worst = worst.max((got - want).abs());
            assert!((got - want).abs() < 1e-4 * want.abs().max(1.0), "item {i}: eva {got}, transformers {want}");
        }
    }
    println!("max |eva - transformers| = {worst:.2e}");
}

#[test]
fn bad_inputs_get_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let model = eva_test_support::models::write_tiny_classifier(dir.path());
    let long = "word ".repeat(3000);
    let mut scorer = Scorer::new(Box::new(Classifier::load(&model, None).unwrap()), 8);
    let prompt = vec![Message::new("user", "Say something.")];
    let err = scorer
        .score(&[RewardItem::new(prompt.clone(), "fine"), RewardItem::new(prompt.clone(), long)], &mut |_| {})
        .unwrap_err();
    assert!(err.to_string().starts_with("item 1: prompt and answer are"), "{err}");
    assert!(err.to_string().ends_with("more than the reward model's context of 2048"), "{err}");
    let err = scorer.score(&[RewardItem::new(prompt, "")], &mut |_| {}).unwrap_err();
    assert_eq!(err.to_string(), "item 0: the answer is empty");

    // Asking for a label the head lacks, and an instruct model as classifier.
    let err = Classifier::load(&model, Some(3)).err().unwrap();
    assert!(err.to_string().ends_with("label 3 asked for, the head has 1"), "{err}");
    let err = Classifier::load(&eva_test_support::models::default_model(), None).err().unwrap();
    assert!(err.to_string().contains("not a sequence-classification model"), "{err}");
}
