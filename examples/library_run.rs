//! The eva loop as a library: one iteration of eva on the embedded model, with a reward,
//! an info metric, a sampler and a pairing written in plain Rust beside a Wasm evolver,
//! and the in-process candle engine as policy and trainer.
//!
//! ```sh
//! eva-host plugin build plugins/evol-instruct --out plugins-out   # or any evolver component
//! cargo run --release -p eva-test-support --example library_run -- \
//!     plugins-out/eva-plugin-evol-instruct.wasm /tmp/eva-library-run
//! ```
//!
//! The policy answers four prompts twice each; a toy reward (answers near 25 words score
//! best) rates them; `Spread` scores each prompt by its reward gap; `TopTwo` keeps the two
//! most informative; the Wasm evolver rewrites them with the policy behind its `generate`;
//! X'_1 mixes the kept variants with old prompts; `BestWorst` pairs each prompt's best
//! and worst answers, and LoRA DPO trains θ_1 into θ_2. Everything lands in OUT as in an
//! `eva-host run` directory (run it again to see it resume). The tests build this program
//! (`cargo test` builds examples).

use std::error::Error;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use eva_engine::{Message, WeightFormat};
use eva_loop::candle::{CandleEngine, CandleTrainer};
use eva_loop::creator::{InfoMetric, RoleError, Sampler};
use eva_loop::layout::{Answer, Answers, IterationSummary, PromptRecord, RunStore};
use eva_loop::progress::Silent;
use eva_loop::run::{Draft, Observer, Parts, Reward, Roles};
use eva_loop::settings::{LoopSettings, SolverSettings};
use eva_loop::solver::Pairing;
use eva_plugin_runtime::{
    ComponentCache, Evolver, PluginEngine, PluginOptions, Preference, PromptResponses, PromptRewards,
};

/// A toy reward: 1 for an answer of 25 words, less the further it is from that.
struct TwentyFiveWords;

impl Reward for TwentyFiveWords {
    fn score(&mut self, prompts: &[PromptRecord], drafts: Vec<Vec<Draft>>) -> Result<Vec<Answers>, RoleError> {
        let reward = |text: &str| 1.0 / (1.0 + (text.split_whitespace().count() as f64 - 25.0).abs() / 10.0);
        Ok(prompts
            .iter()
            .zip(drafts)
            .map(|(p, ds)| Answers {
                id: p.id.clone(),
                answers: ds
                    .into_iter()
                    .map(|d| Answer { reward: reward(&d.text), tokens: d.tokens, text: d.text })
                    .collect(),
            })
            .collect())
    }
}

/// The reward gap of a prompt's answers: max - min.
struct Spread;

impl InfoMetric for Spread {
    fn reseed(&mut self, _: u64) {}
    fn score_batch(&mut self, items: &[PromptRewards]) -> Result<Vec<f64>, RoleError> {
        let gap = |r: &[f64]| r.iter().cloned().fold(f64::MIN, f64::max) - r.iter().cloned().fold(f64::MAX, f64::min);
        Ok(items.iter().map(|i| gap(&i.rewards)).collect())
    }
}

/// The `count` highest scores, ties to the earlier prompt.
struct TopTwo;

impl Sampler for TopTwo {
    fn reseed(&mut self, _: u64) {}
    fn sample(&mut self, scores: &[f64], count: usize) -> Result<Vec<usize>, RoleError> {
        let mut order: Vec<usize> = (0..scores.len()).collect();
        order.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]).then(a.cmp(&b)));
        Ok(order.into_iter().take(count.min(2)).collect())
    }
}

/// The best answer against the worst, when they differ.
struct BestWorst;

impl Pairing for BestWorst {
    fn reseed(&mut self, _: u64) {}
    fn pair_batch(&mut self, items: &[PromptResponses]) -> Result<Vec<Vec<Preference>>, RoleError> {
        let best_worst = |item: &PromptResponses| {
            let by_reward = |a: &usize, b: &usize| item.responses[*a].reward.total_cmp(&item.responses[*b].reward);
            let best = (0..item.responses.len()).max_by(by_reward)?;
            let worst = (0..item.responses.len()).min_by(by_reward)?;
            let differ = item.responses[best].reward > item.responses[worst].reward;
            differ.then_some(Preference { chosen: best as u32, rejected: worst as u32 })
        };
        Ok(items.iter().map(|item| best_worst(item).into_iter().collect()).collect())
    }
}

/// Prints each iteration's summary.
struct Print;

impl Observer for Print {
    fn iteration(&mut self, s: &IterationSummary) {
        println!(
            "iteration {}: {} prompts, {} evolved, {} kept, {} pairs, loss {:?} -> {:?}",
            s.iteration, s.prompts, s.evolved, s.kept, s.pairs, s.first_loss, s.last_loss
        );
    }
}

fn main() -> Result<(), Box<dyn Error + Send + Sync>> {
    let mut args = std::env::args().skip(1);
    let usage = "usage: library_run EVOLVER.wasm OUT_DIR";
    let evolver_path = PathBuf::from(args.next().ok_or(usage)?);
    let store = RunStore::new(args.next().ok_or(usage)?);
    let cache = std::env::var_os("EVA_CACHE_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| std::env::temp_dir().join("eva-example-cache"));
    let base = eva_engine::fetch(&eva_engine::DEFAULT_MODEL, &cache)?;

    let seeds: Vec<PromptRecord> = [
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
        labels: None,
    })
    .collect();

    // Settings are typed and checked; everything not set here keeps its default.
    let solver = SolverSettings { micro_batch: 1, lr: 1e-4, ..SolverSettings::default() };
    let settings = LoopSettings {
        iterations: 1,
        answers: 2,
        max_new_tokens: 32,
        evolve_max_tokens: 64,
        solver,
        ..Default::default()
    };
    settings.check()?;

    let plugins = PluginEngine::new(ComponentCache::new(Some(cache.join("components"))))?;
    let mut evolver = Evolver::new(plugins.load(Path::new(&evolver_path), PluginOptions::default())?)?;
    let progress = Arc::new(Silent);
    let parts = Parts {
        engine: &mut CandleEngine { weights: WeightFormat::F32, progress: progress.clone() },
        creator: None,
        reward: &mut TwentyFiveWords,
        trainer: &mut CandleTrainer { solver: settings.solver.clone(), progress, keep_update: false },
        roles: Roles { info: &mut Spread, sampler: &mut TopTwo, evolver: &mut evolver, pairing: &mut BestWorst },
        observer: &mut Print,
    };
    let last = eva_loop::run::run(&store, &settings.run_settings(), &seeds, base, parts)?;
    println!("θ_2: {}", last.display());
    Ok(())
}
