//! The creator as a library: one creator step of eva on the embedded model, with an info
//! metric and a sampler written in plain Rust beside a Wasm evolver.
//!
//! ```sh
//! eva-host plugin build plugins/evol-instruct --out plugins-out   # or any evolver component
//! cargo run --release --example library_creator -- plugins-out/eva-plugin-evol-instruct.wasm
//! ```
//!
//! The policy answers four prompts four times each; a toy reward (answers near 25 words
//! score best) rates them; `Spread`, a plain Rust info metric, scores each prompt by its
//! reward gap; `TopTwo`, a plain Rust sampler, keeps the two most informative; the Wasm
//! evolver rewrites them with the same model behind its `generate`; `mix` makes X'_t. The
//! `tests` build this program with the others (`cargo test` builds examples).

use std::collections::HashMap;
use std::error::Error;
use std::sync::Arc;

use eva_engine::{GenerationParams, LanguageModel, Message, Sampling, WeightFormat};
use eva_loop::creator::{self, Evolution, RoleError};
use eva_loop::dedup::Seen;
use eva_loop::generator::EngineGenerator;
use eva_loop::layout::{Answer, Answers, PromptRecord};
use eva_plugin_runtime::{ComponentCache, Evolver, PluginEngine, PluginOptions, PromptRewards};

/// The reward gap of a prompt's answers: max - min.
struct Spread;

impl creator::InfoMetric for Spread {
    fn reseed(&mut self, _: u64) {}
    fn score_batch(&mut self, items: &[PromptRewards]) -> Result<Vec<f64>, RoleError> {
        let gap = |r: &[f64]| r.iter().cloned().fold(f64::MIN, f64::max) - r.iter().cloned().fold(f64::MAX, f64::min);
        Ok(items.iter().map(|i| gap(&i.rewards)).collect())
    }
}

/// The `count` highest scores, ties to the earlier prompt.
struct TopTwo;

impl creator::Sampler for TopTwo {
    fn reseed(&mut self, _: u64) {}
    fn sample(&mut self, scores: &[f64], count: usize) -> Result<Vec<usize>, RoleError> {
        let mut order: Vec<usize> = (0..scores.len()).collect();
        order.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]).then(a.cmp(&b)));
        Ok(order.into_iter().take(count).collect())
    }
}

/// A toy reward: 1 for an answer of 25 words, less the further it is from that.
fn reward(answer: &str) -> f64 {
    let words = answer.split_whitespace().count() as f64;
    1.0 / (1.0 + (words - 25.0).abs() / 10.0)
}

fn main() -> Result<(), Box<dyn Error + Send + Sync>> {
    let evolver_path = std::env::args().nth(1).ok_or("usage: library_creator EVOLVER.wasm")?;
    let cache = std::env::var_os("EVA_CACHE_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| std::env::temp_dir().join("eva-example-cache"));
    let model_path = eva_engine::fetch(&eva_engine::DEFAULT_MODEL, &cache)?;
    let policy = Arc::new(LanguageModel::load(&model_path, WeightFormat::F32)?);

    let prompts: Vec<PromptRecord> = [
        "Suggest a name for a friendly robot.",
        "What are three easy ways to save water at home?",
        "Why is the sky blue?",
        "Describe a rainy day in one sentence.",
    ]
    .iter()
    .enumerate()
    .map(|(i, text)| PromptRecord {
        id: format!("seed-{}", i + 1),
        messages: vec![Message::new("user", *text)],
        origin: "seed".into(),
        parent: None,
        method: None,
    })
    .collect();

    // Respond and score: four sampled answers per prompt.
    let seed = 7;
    let chats = prompts.iter().map(|p| policy.chat_prompt(&p.messages)).collect::<Result<Vec<_>, _>>()?;
    let params = GenerationParams {
        sampling: Sampling { temperature: 0.8, top_p: 0.95 },
        max_new_tokens: 48,
        n: 4,
        seed,
        ..GenerationParams::default()
    };
    let completions = policy.generate(&chats, &params, &mut |_| {})?;
    let answers: Vec<Answers> = prompts
        .iter()
        .zip(completions)
        .map(|(p, cs)| Answers {
            id: p.id.clone(),
            answers: cs
                .into_iter()
                .map(|c| Answer { reward: reward(&c.text), tokens: c.tokens.len() as u32, text: c.text })
                .collect(),
        })
        .collect();

    // The creator: info and sample in plain Rust, evolve in Wasm, mix.
    let infos = creator::info(&mut Spread, &prompts, &answers, seed)?;
    let selected = creator::sample(&mut TopTwo, &infos, 0.5, seed)?;
    let engine = PluginEngine::new(ComponentCache::new(Some(cache.join("components"))))?;
    let mut evolver = Evolver::new(engine.load(std::path::Path::new(&evolver_path), PluginOptions::default())?)?;
    let mut seen = Seen::default();
    prompts.iter().for_each(|p| seen.insert(&p.messages[0].content));
    let fits = |_: &[Message]| -> Result<Option<String>, RoleError> { Ok(None) };
    let generator = Arc::new(EngineGenerator { model: policy.clone(), max_tokens: 96, seed });
    let step = Evolution { iteration: 1, seed, generator, seen: &seen, dedup_threshold: 0.8, unfit: &fits };
    let evolved = creator::evolve(&mut evolver, &prompts, &selected, step)?;
    let next = creator::mix(&prompts, &evolved, 0.2, seed);

    let info: HashMap<&str, f64> = infos.iter().map(|i| (i.id.as_str(), i.info)).collect();
    for p in &prompts {
        println!("X_1   {} (info {:.3}): {}", p.id, info[p.id.as_str()], p.messages[0].content);
    }
    for p in &next {
        let text = &p.messages.last().expect("a user message").content;
        println!(
            "X'_1  {} [{}{}]: {text}",
            p.id,
            p.origin,
            p.parent.as_ref().map_or(String::new(), |q| format!(" of {q}"))
        );
    }
    Ok(())
}
