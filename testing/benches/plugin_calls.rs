//! Per-call cost of each plugin role at realistic sizes, next to a native Rust call of
//! the same logic. Run with `cargo bench -p eva-test-support --bench plugin_calls`; the figures go to
//! BENCHMARKS.md. Not a test: nothing here asserts a time.

use std::hint::black_box;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use eva_plugin_runtime::{
    ChatMessage, ComponentCache, Evolver, GenerateRequest, Generator, InfoMetric, Pairing, PluginEngine, PluginOptions,
    Prompt, PromptResponses, PromptRewards, Sampler, ScoredResponse,
};
use eva_plugin_sdk::{Config, Plugin};

const PROMPTS: usize = 1000;
const ANSWERS: usize = 8;
const TEXT_BYTES: usize = 500;

/// Median wall time of `runs` calls of `f`, after one warm-up call.
fn median(runs: usize, mut f: impl FnMut()) -> Duration {
    f();
    let mut times: Vec<Duration> = (0..runs)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed()
        })
        .collect();
    times.sort();
    times[runs / 2]
}

fn report(what: &str, wasm: Duration, native: Duration) {
    let ratio = wasm.as_secs_f64() / native.as_secs_f64().max(1e-12);
    println!("| {what} | {:.1} µs | {:.1} µs | {ratio:.1}x |", wasm.as_secs_f64() * 1e6, native.as_secs_f64() * 1e6);
}

fn text(i: usize) -> String {
    let base = format!("Prompt {i}: explain, with examples, how the following idea works in practice. ");
    base.repeat(TEXT_BYTES / base.len() + 1)[..TEXT_BYTES].to_owned()
}

fn prompt(i: usize) -> Prompt {
    Prompt::new(format!("p{i}"), vec![ChatMessage::user(text(i))])
}

fn reward(i: usize, j: usize) -> f64 {
    ((i * 31 + j * 17) % 101) as f64 / 100.0
}

struct Instant0;

impl Generator for Instant0 {
    fn complete(&self, requests: &[GenerateRequest]) -> Result<Vec<String>, String> {
        Ok((0..requests.len())
            .map(|i| format!("A new and harder prompt, number {i}, about the same subject."))
            .collect())
    }
}

fn main() {
    let cache = std::env::temp_dir().join("eva-bench-cache");
    let engine = PluginEngine::new(ComponentCache::new(Some(cache))).unwrap();
    let load = |name: &str| -> eva_plugin_runtime::Plugin {
        let path: PathBuf = eva_test_support::component(name);
        engine.load(&path, PluginOptions::default()).unwrap()
    };
    println!("| call (sizes) | Wasm plugin via host | native Rust | ratio |");
    println!("|---|---|---|---|");

    // info: 1,000 prompts x 8 rewards.
    let items: Vec<PromptRewards> = (0..PROMPTS)
        .map(|i| PromptRewards {
            prompt: prompt(i),
            rewards: (0..ANSWERS).map(|j| reward(i, j)).collect(),
            token_counts: vec![128; ANSWERS],
            // Contract 0.2 sends the answers' texts too: about as long as the prompts.
            responses: vec![text(i); ANSWERS],
        })
        .collect();
    let mut info = InfoMetric::new(load("eva-plugin-regret")).unwrap();
    let regret_native = {
        use eva_plugin_regret::Regret;
        Regret::from_config(&Config::new(&Regret::metadata(), vec![]).unwrap()).unwrap()
    };
    let wasm = median(50, || {
        black_box(info.score_batch(&items).unwrap());
    });
    let native = median(50, || {
        black_box(items.iter().map(|it| regret_native.compute(&it.rewards)).collect::<Vec<_>>());
    });
    report("info `score-batch` (1,000 prompts of 500 B x 8 rewards)", wasm, native);

    // The fixed cost of a call: a fresh instance, `configure`, and an empty `sample`.
    let mut sampler = Sampler::new(load("eva-plugin-weighted-sampler")).unwrap();
    let wasm = median(200, || {
        black_box(sampler.sample(&[], 0).unwrap());
    });
    report("fixed cost: fresh instance + `configure` + empty `sample`", wasm, Duration::from_nanos(1));

    // sample: 250 of 1,000 scores.
    let scores: Vec<f64> = (0..PROMPTS).map(|i| reward(i, 3)).collect();
    let wasm = median(50, || {
        black_box(sampler.sample(&scores, PROMPTS / 4).unwrap());
    });
    let mut state = 1u64;
    let mut uniform = move || {
        state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (state >> 11) as f64 / (1u64 << 53) as f64
    };
    let native = median(50, || {
        let w = eva_plugin_weighted_sampler::normalised_weights(&scores);
        black_box(eva_plugin_weighted_sampler::weighted(&w, PROMPTS / 4, &mut uniform));
    });
    report("sample `sample` (250 of 1,000 scores, weighted)", wasm, native);

    // pair: 1,000 prompts of 500 B x 8 responses of 500 B.
    let pair_items: Vec<PromptResponses> = (0..PROMPTS)
        .map(|i| PromptResponses {
            prompt: prompt(i),
            responses: (0..ANSWERS)
                .map(|j| ScoredResponse { text: text(j), reward: reward(i, j), tokens: 128 })
                .collect(),
        })
        .collect();
    let mut pairing = Pairing::new(load("eva-plugin-max-min-pairing")).unwrap();
    let wasm = median(20, || {
        black_box(pairing.pair_batch(&pair_items).unwrap());
    });
    let native = median(20, || {
        black_box(
            pair_items
                .iter()
                .map(|it| {
                    let r: Vec<f64> = it.responses.iter().map(|r| r.reward).collect();
                    eva_plugin_max_min_pairing::max_min(&r, 0.0)
                })
                .collect::<Vec<_>>(),
        );
    });
    report("pair `pair-batch` (1,000 prompts x 8 responses of 500 B)", wasm, native);

    // evolve: 250 prompts of 500 B, 4 variants each, with an instant generator.
    let selected: Vec<Prompt> = (0..PROMPTS / 4).map(prompt).collect();
    let mut evolver = Evolver::new(load("eva-plugin-evol-instruct")).unwrap();
    let generator: Arc<dyn Generator> = Arc::new(Instant0);
    let wasm = median(20, || {
        black_box(evolver.evolve(&selected, generator.clone()).unwrap());
    });
    let native = median(20, || {
        let methods = &eva_plugin_evol_instruct::METHODS;
        let mut out = Vec::new();
        for p in &selected {
            for m in methods.iter().take(4) {
                let meta = eva_plugin_evol_instruct::meta_prompt(&p.messages[0].content, m);
                let reply = generator.complete(&[]).map(|_| format!("A new prompt from {} bytes", meta.len())).unwrap();
                out.push(eva_plugin_evol_instruct::clean(&reply, &p.messages[0].content));
            }
        }
        black_box(out);
    });
    report("evolve `evolve` (250 prompts of 500 B x 4 variants, instant model)", wasm, native);
}
