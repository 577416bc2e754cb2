//! Engine speed on the embedded default model, side by side with llama.cpp on the same
//! GGUF and thread count. Run with `cargo bench -p eva-engine --bench engine`
//! (`EVA_BENCH_THREADS`, default 1). Figures go to BENCHMARKS.md; nothing is asserted.
//!
//! Training cases run in a child process each, so that their peak memory (VmHWM) is
//! their own. `-- kernels` times the 8-bit matrix kernels alone on SmolLM2's shapes.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use candle_core::Tensor;
use eva_engine::logprobs::shared_prompt_logprobs;
use eva_engine::{Adaptation, GenerationParams, LanguageModel, LoraConfig, Message, Sampling, WeightFormat};

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn model_path() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|| workspace().join("target"));
    eva_engine::fetch(&eva_engine::DEFAULT_MODEL, &target.join("eva-test-models")).expect("fetching the default model")
}

fn threads() -> usize {
    std::env::var("EVA_BENCH_THREADS").ok().and_then(|t| t.parse().ok()).unwrap_or(1)
}

fn peak_rss_gib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let kib: f64 = status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0);
    kib / (1024.0 * 1024.0)
}

/// A prompt of about `tokens` tokens.
fn long_prompt(m: &LanguageModel, tokens: usize) -> Vec<u32> {
    let sentence = "The quick brown fox jumps over the lazy dog while the committee debates the budget. ";
    let mut text = String::new();
    while m.tokenizer.encode(&text).unwrap().len() < tokens {
        text.push_str(sentence);
    }
    let mut ids = m.tokenizer.encode(&text).unwrap();
    ids.truncate(tokens);
    ids
}

/// Inference figures for `formats` (all three when empty).
fn inference(formats: &[WeightFormat]) {
    let path = model_path();
    let t = threads();
    println!("threads: {t}\n");
    println!("| figure | eva | llama.cpp (node-llama-cpp 3.22.1) |");
    println!("|---|---|---|");
    let reference = llama_cpp_bench(&path, t);
    let all = [WeightFormat::Native, WeightFormat::Q8_0, WeightFormat::F32];
    for &format in if formats.is_empty() { &all[..] } else { formats } {
        let m = LanguageModel::load(&path, format).unwrap();
        // Single-stream greedy decode: 128 tokens after a short chat prompt.
        let p = m.chat_prompt(&[Message::new("user", "Write a long story about a lighthouse keeper.")]).unwrap();
        let params = GenerationParams { sampling: Sampling::GREEDY, max_new_tokens: 129, ..Default::default() };
        let mut first = None;
        let mut count = 0;
        m.generate(std::slice::from_ref(&p), &params, &mut |n| {
            count += n;
            if first.is_none() {
                first = Some(Instant::now());
            }
        })
        .unwrap();
        // Time from the first sampled token on: decode steps only.
        let decode_s = first.unwrap().elapsed().as_secs_f64();
        let decode = (count - 1) as f64 / decode_s;
        // Prefill: a 480-token prompt, one forward.
        let long = long_prompt(&m, 480);
        let ids = Tensor::from_vec(long.clone(), (1, long.len()), &candle_core::Device::Cpu).unwrap();
        let mut cache =
            eva_engine::model::KvCache::new(&m.transformer.config, 1, 512, vec![0], &candle_core::Device::Cpu).unwrap();
        let s = Instant::now();
        m.transformer.forward(&ids, Some(&mut cache)).unwrap();
        let prefill = long.len() as f64 / s.elapsed().as_secs_f64();
        // Batched sampling: 8 prompts x 4 samples x 64 tokens, including prefill.
        let prompts: Vec<Vec<u32>> = (0..8)
            .map(|i| {
                m.chat_prompt(&[Message::new("user", format!("Give me idea number {i} for a weekend project."))])
                    .unwrap()
            })
            .collect();
        let params = GenerationParams {
            n: 4,
            max_new_tokens: 64,
            seed: 1,
            prompts_per_batch: 8,
            stop: vec![],
            sampling: Sampling::default(),
        };
        let s = Instant::now();
        let out = m.generate(&prompts, &params, &mut |_| {}).unwrap();
        let generated: usize =
            out.iter().flatten().map(|c| c.tokens.len() + usize::from(c.finish == eva_engine::FinishReason::Eos)).sum();
        let batched = generated as f64 / s.elapsed().as_secs_f64();
        let name = format!("{format:?}").to_lowercase();
        println!("| decode, 1 stream, 128 tok ({name}) | {decode:.1} tok/s | {:.1} tok/s (Q4_1) |", reference.0);
        println!("| prefill, 480 tok ({name}) | {prefill:.1} tok/s | {:.1} tok/s (Q4_1) |", reference.1);
        println!(
            "| 8 prompts x 4 samples x 64 tok, incl. prefill ({name}) | {batched:.1} tok/s ({generated} tok) | – |"
        );
    }
}

/// llama.cpp's single-stream decode and prefill tokens/s on the same file.
fn llama_cpp_bench(model: &Path, threads: usize) -> (f64, f64) {
    let dir = workspace().join("tests/reference/llama-cpp");
    if !dir.join("node_modules/node-llama-cpp").is_dir() {
        let ok = Command::new("npm")
            .args(["install", "--no-save", "--no-audit", "--no-fund", "--ignore-scripts"])
            .current_dir(&dir)
            .status();
        assert!(ok.is_ok_and(|s| s.success()), "npm install in {}", dir.display());
    }
    let m = LanguageModel::load(model, WeightFormat::Native).unwrap();
    let prompt = long_prompt(&m, 480);
    let req = serde_json::json!({"model": model, "threads": threads, "bench": {"prompt": prompt, "decode": 128}});
    let mut child = Command::new("node")
        .arg("reference.mjs")
        .current_dir(&dir)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("node");
    use std::io::Write;
    child.stdin.take().unwrap().write_all(req.to_string().as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("reference JSON");
    let b = &v["bench"];
    let decode = b["decode_tokens"].as_f64().unwrap() / b["decode_s"].as_f64().unwrap();
    let prefill = b["prefill_tokens"].as_f64().unwrap() / b["prefill_s"].as_f64().unwrap();
    (decode, prefill)
}

/// One DPO step's forward + backward on a 128 + 128-token pair (chosen and rejected),
/// reference log-probs precomputed.
fn train(adaptation: &str) {
    let m = LanguageModel::load(&model_path(), WeightFormat::F32).unwrap();
    let adapt = match adaptation {
        "full" => Adaptation::Full,
        _ => Adaptation::Lora(LoraConfig::default()),
    };
    let tm = m.trainable(adapt, 0).unwrap();
    let prompt = long_prompt(&m, 128);
    let chosen = long_prompt(&m, 129)[1..].to_vec();
    let rejected: Vec<u32> = chosen.iter().rev().copied().collect();
    let (ref_w, ref_l, beta) = (-300.0f64, -320.0f64, 0.1f64);
    let step = || {
        // As the solver does: the prompt computed once for both answers.
        let lp = shared_prompt_logprobs(&tm.model, &prompt, &[&chosen, &rejected]).unwrap();
        let (lw, ll) = (lp.get(0).unwrap(), lp.get(1).unwrap());
        let margin = (((lw - ref_w).unwrap() - (ll - ref_l).unwrap()).unwrap() * beta).unwrap();
        // -log σ(x) = log(1 + e^{-x})
        let loss = margin.neg().unwrap().exp().unwrap().affine(1.0, 1.0).unwrap().log().unwrap();
        let grads = loss.backward().unwrap();
        assert!(tm.params.iter().all(|(_, v)| grads.get(v).is_some()));
    };
    step();
    let runs = 3;
    let s = Instant::now();
    for _ in 0..runs {
        step();
    }
    let secs = s.elapsed().as_secs_f64() / runs as f64;
    println!(
        "| DPO forward+backward, 128+128 tok, {adaptation} ({} trainable) | {secs:.2} s/step | peak RSS {:.2} GiB |",
        tm.num_trainable(),
        peak_rss_gib()
    );
}

/// Every 8-bit kernel this CPU runs on SmolLM2-135M's matrix shapes, for 1, 4 and 32
/// inputs (`EVA_INT8_KERNEL` picks the kernel; each case runs in its own process).
fn kernels() {
    use eva_engine::int8::{Int8Matrix, Kernel, kernel};
    if std::env::var_os("EVA_INT8_KERNEL").is_none() {
        let exe = std::env::current_exe().unwrap();
        println!("| kernel | matrix | inputs | time | weight bytes/s | multiply-adds/s |");
        println!("|---|---|---|---|---|---|");
        for k in Kernel::available() {
            let status = Command::new(&exe).arg("kernels").env("EVA_INT8_KERNEL", k.name()).status().unwrap();
            assert!(status.success(), "kernel {}", k.name());
        }
        return;
    }
    for (rows, cols) in [(1536usize, 576usize), (576, 1536), (49152, 576)] {
        let w: Vec<f32> = (0..rows * cols).map(|i| ((i * 7919) % 1000) as f32 / 1000.0 - 0.5).collect();
        let m = Int8Matrix::quantize(&w, rows, cols);
        for n in [1usize, 4, 32] {
            let x: Vec<f32> = (0..n * cols).map(|i| ((i * 31) % 100) as f32 / 100.0 - 0.5).collect();
            let reps = (2_000_000_000 / (rows * cols * n)).clamp(3, 500);
            let s = Instant::now();
            for _ in 0..reps {
                std::hint::black_box(m.matmul(&x, n));
            }
            let t = s.elapsed().as_secs_f64() / reps as f64;
            println!(
                "| {} | {rows}x{cols} | {n} | {:.3} ms | {:.1} GB/s | {:.1} G/s |",
                kernel().name(),
                t * 1e3,
                m.bytes() as f64 / t / 1e9,
                (rows * cols * n) as f64 / t / 1e9
            );
        }
    }
}

fn main() {
    eva_engine::alloc::keep_freed_memory();
    let args: Vec<String> = std::env::args().skip(1).filter(|a| a != "--bench").collect();
    eva_engine::threads::set_threads(Some(threads()));
    match args.first().map(String::as_str) {
        Some("train") => train(args.get(1).map_or("lora", String::as_str)),
        Some("kernels") => kernels(),
        Some("inference") => {
            let formats: Vec<WeightFormat> = args[1..].iter().map(|f| f.parse().expect("a weight format")).collect();
            inference(&formats)
        }
        _ => {
            inference(&[]);
            println!();
            let exe = std::env::current_exe().unwrap();
            for case in ["full", "lora"] {
                let status = Command::new(&exe).args(["train", case]).status().unwrap();
                assert!(status.success(), "training case {case}");
            }
        }
    }
}
