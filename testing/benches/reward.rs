//! Reward backends' throughput: answers scored per second by the judge (SmolLM2-135M-
//! Instruct), a classifier of the same size (SmolLM2's weights under a random scalar
//! `score` head: the compute of a real 135M reward model) and the rule-reward plugin.
//! Run with `cargo bench -p eva-test-support --bench reward` (`EVA_BENCH_THREADS`, default 1). Figures go to
//! BENCHMARKS.md; nothing is asserted.

use std::time::Instant;

use candle_core::{Device, Tensor};
use eva_engine::{Head, LanguageModel, Message, WeightFormat, Weights};
use eva_plugin_runtime::{PluginOptions, RewardModel};
use eva_reward::{Classifier, Judge, JudgeConfig, PluginReward, Reward, RewardItem, Scorer};

/// `n` distinct answers of about 60 tokens to 8 short questions.
fn items(n: usize) -> Vec<RewardItem> {
    let questions = [
        "What causes the seasons on Earth?",
        "How do I make a cup of green tea?",
        "Why is the sky blue?",
        "Give me three tips for learning a language.",
        "What is a prime number?",
        "How does a bicycle stay upright?",
        "What should I pack for a day hike?",
        "Explain what a database index is.",
    ];
    (0..n)
        .map(|i| {
            let answer = format!(
                "Answer {i}: this is a fairly ordinary answer of moderate length that explains the idea step by \
                 step, gives a short example, mentions one common mistake to avoid and ends with a one-line \
                 summary so that the reader can check their understanding quickly."
            );
            RewardItem::new(vec![Message::new("user", questions[i % questions.len()])], answer)
        })
        .collect()
}

fn sized_classifier(dir: &std::path::Path) -> std::path::PathBuf {
    let real = LanguageModel::load(&eva_test_support::models::default_model(), WeightFormat::F32).unwrap();
    let mut config = real.transformer.config.clone();
    config.head = Head::Score { labels: 1 };
    let mut tensors = real.weights.tensors.clone();
    let head = Tensor::randn(0f32, 0.02, (1, config.hidden_size), &Device::Cpu).unwrap();
    tensors.insert("score.weight".into(), head);
    let weights = Weights::from_tensors(tensors, real.weights.source.clone());
    let path = dir.join("smollm2-classifier");
    eva_test_support::models::save_with_tokenizer_of(&real, &config, &weights, &path);
    path
}

fn measure(name: &str, backend: Box<dyn Reward>, items: &[RewardItem]) {
    let mut scorer = Scorer::new(backend, 16);
    scorer.score(&items[..4], &mut |_| {}).unwrap(); // warm-up (first-call allocations)
    let start = Instant::now();
    scorer.score(&items[4..], &mut |_| {}).unwrap();
    let secs = start.elapsed().as_secs_f64();
    let n = items.len() - 4;
    println!("| {name} | {n} | {secs:.2} s | {:.1} |", n as f64 / secs);
}

fn main() {
    let threads = std::env::var("EVA_BENCH_THREADS").ok().and_then(|t| t.parse().ok()).unwrap_or(1);
    eva_engine::threads::set_threads(Some(threads));
    println!("threads: {threads}\n");
    println!("| backend | answers | time | answers/s |");
    println!("|---|---|---|---|");
    let model = eva_test_support::models::default_model();
    let judge = Judge::new(LanguageModel::load(&model, WeightFormat::F32).unwrap(), JudgeConfig::default()).unwrap();
    measure("judge (SmolLM2-135M-Instruct, f32)", Box::new(judge), &items(68));
    let dir = tempfile::tempdir().unwrap();
    let classifier = Classifier::load(&sized_classifier(dir.path()), None).unwrap();
    measure("classifier (135M, SmolLM2-shaped, f32)", Box::new(classifier), &items(68));
    let plugin = eva_test_support::harness::engine()
        .load(&eva_test_support::component("eva-plugin-rule-reward"), PluginOptions::default());
    let plugin = PluginReward::new(RewardModel::new(plugin.unwrap()).unwrap());
    measure("plugin (rule-reward, Wasm)", Box::new(plugin), &items(10_004));
}
