//! The forward pass, KV cache, batching and gradients on tiny random models of every
//! supported family (no download).

use candle_core::{D, DType, Device, Tensor};
use eva_engine::decode::{DecodeCache, Int8Decoder};
use eva_engine::logprobs::{Scored, TokenBatch, shared_prompt_logprobs, token_logprobs};
use eva_engine::model::{Kernels, KvCache, Linear};
use eva_engine::{
    Adaptation, Architecture, Head, LoraConfig, ModelConfig, RopeScaling, TrainableModel, Transformer, Weights,
};

fn model(config: &ModelConfig, kernels: Kernels) -> Transformer {
    model_with(config, kernels, &mut |_, w, b| Ok(Linear::dense(w.clone(), b.cloned())))
}

fn model_with(config: &ModelConfig, kernels: Kernels, make: &mut eva_engine::model::MakeLinear<'_>) -> Transformer {
    let w = Weights::random(config, 7, &Device::Cpu).unwrap();
    // Random weights at std 0.02 make near-uniform logits; scale up so that attention and
    // the norms do something measurable.
    let scaled = w.tensors.into_iter().map(|(n, t)| {
        let t = if n.ends_with("norm.weight") { t } else { (t * 20.0).unwrap() };
        (n, t)
    });
    let w = Weights::from_tensors(scaled.collect(), w.source);
    Transformer::build(config, &w, kernels, make).unwrap()
}

fn max_diff(a: &Tensor, b: &Tensor) -> f32 {
    (a - b).unwrap().abs().unwrap().flatten_all().unwrap().max(0).unwrap().to_scalar::<f32>().unwrap()
}

fn ids(rows: &[&[u32]]) -> Tensor {
    let t = rows[0].len();
    Tensor::from_vec(rows.concat(), (rows.len(), t), &Device::Cpu).unwrap()
}

#[test]
fn fused_and_differentiable_kernels_agree() {
    for arch in Architecture::ALL {
        let c = ModelConfig::tiny(arch);
        let x = ids(&[&[1, 5, 9, 33, 2, 60, 7]]);
        let a = model(&c, Kernels::Fused).forward(&x, None).unwrap();
        let b = model(&c, Kernels::Differentiable).forward(&x, None).unwrap();
        let d = max_diff(&a, &b);
        assert!(d < 1e-4, "{arch:?}: fused and differentiable logits differ by {d}");
    }
}

#[test]
fn readout_at_chosen_positions_matches_full_forwards_in_any_batching() {
    for head in [Head::LanguageModel, Head::Score { labels: 3 }] {
        let c = ModelConfig { head, ..ModelConfig::tiny(Architecture::Qwen3) };
        let m = model(&c, Kernels::Fused);
        let seqs: [&[u32]; 4] = [&[3, 14, 15, 9, 26], &[5, 35], &[8, 9, 7, 9, 3, 2, 3], &[1]];
        let positions = [4, 0, 5, 0];
        let wanted: Vec<Tensor> = seqs
            .iter()
            .zip(positions)
            .map(|(s, p)| m.forward(&ids(&[s]), None).unwrap().squeeze(0).unwrap().get(p).unwrap())
            .collect();
        let input: Vec<(&[u32], usize)> = seqs.iter().copied().zip(positions).collect();
        // One row per batch, two, and all at once: padding never leaks into a row.
        for batch_tokens in [1, 14, 1000] {
            let got = eva_engine::readout::outputs_at(&m, &input, batch_tokens).unwrap();
            for (g, w) in got.iter().zip(&wanted) {
                assert_eq!(g.len(), w.dim(0).unwrap());
                let d = max_diff(&Tensor::new(g.as_slice(), &Device::Cpu).unwrap(), w);
                assert!(d < 1e-4, "{head:?}, batch of {batch_tokens} tokens: differs by {d}");
            }
        }
    }
    let m = model(&ModelConfig::tiny(Architecture::Llama), Kernels::Fused);
    let err = eva_engine::readout::outputs_at(&m, &[(&[1, 2], 2)], 100).unwrap_err();
    assert_eq!(err.to_string(), "sequence 0: position 2 is past its 2 tokens");
}

#[test]
fn cached_decoding_matches_a_full_forward() {
    for arch in Architecture::ALL {
        let c = ModelConfig::tiny(arch);
        let m = model(&c, Kernels::Fused);
        let seq: [u32; 8] = [3, 14, 15, 9, 26, 5, 35, 8];
        let full = m.forward(&ids(&[&seq]), None).unwrap().squeeze(0).unwrap();
        let mut cache = KvCache::new(&c, 1, 16, vec![0], &Device::Cpu).unwrap();
        // Prefill 5 tokens, then one at a time.
        let first = m.forward(&ids(&[&seq[..5]]), Some(&mut cache)).unwrap();
        assert!(max_diff(&first.squeeze(0).unwrap(), &full.get(4).unwrap()) < 1e-4);
        for (i, &tok) in seq.iter().enumerate().skip(5) {
            let step = m.forward(&ids(&[&[tok]]), Some(&mut cache)).unwrap().squeeze(0).unwrap();
            let d = max_diff(&step, &full.get(i).unwrap());
            assert!(d < 1e-4, "{arch:?}: position {i} differs by {d}");
        }
    }
}

/// The candle-free 8-bit decoder against the transformer with the same 8-bit weights:
/// prefill of rows of different lengths in one step, decode steps, rows repeated and
/// dropped, windows and soft caps crossed (every family).
#[test]
fn the_int8_decoder_matches_the_transformer_with_the_same_weights() {
    for arch in Architecture::ALL {
        let c = ModelConfig::tiny(arch);
        let m = model_with(&c, Kernels::Fused, &mut |_, w, b| {
            Linear::int8(w, b.cloned()).map_err(|source| eva_engine::Error::Tensor { step: "int8", source })
        });
        let d = Int8Decoder::from_transformer(&m).expect("every projection is 8-bit").unwrap();
        let mut rows: Vec<Vec<u32>> = vec![vec![1, 5, 9, 33, 2, 60, 7], vec![4, 8, 15, 16]];
        let mut cache = DecodeCache::new(&d, 2);
        let check = |rows: &[Vec<u32>], got: &[Vec<f32>], what: &str| {
            for (row, got) in rows.iter().zip(got) {
                let want = m.forward(&ids(&[row]), None).unwrap().squeeze(0).unwrap().get(row.len() - 1).unwrap();
                let got = Tensor::new(got.as_slice(), &Device::Cpu).unwrap();
                let d = max_diff(&want, &got);
                assert!(d < 1e-4, "{arch:?}, {what}, row of {} tokens: logits differ by {d}", row.len());
            }
        };
        let refs: Vec<&[u32]> = rows.iter().map(Vec::as_slice).collect();
        let logits = d.step(&mut cache, &refs).unwrap();
        check(&rows, &logits, "prefill");
        for (step, next) in [[3u32, 11], [40, 2], [9, 59]].iter().enumerate() {
            rows.iter_mut().zip(next).for_each(|(r, &t)| r.push(t));
            let logits = d.step(&mut cache, &[&[next[0]], &[next[1]]]).unwrap();
            check(&rows, &logits, &format!("decode step {step}"));
        }
        // Row 1 twice and row 0 once, then only the second copy of row 1.
        cache.select_rows(&[1, 0, 1]);
        let mut rows = vec![rows[1].clone(), rows[0].clone(), rows[1].clone()];
        let next = [6u32, 12, 50];
        rows.iter_mut().zip(next).for_each(|(r, t)| r.push(t));
        let logits = d.step(&mut cache, &[&[6], &[12], &[50]]).unwrap();
        check(&rows, &logits, "repeated rows");
        cache.select_rows(&[2]);
        rows.push(vec![]);
        let row = rows.swap_remove(2);
        let logits = d.step(&mut cache, &[&[0]]).unwrap();
        let mut row = row;
        row.push(0);
        check(&[row], &logits, "a dropped batch");
        assert!(d.step(&mut cache, &[&[61]]).is_err(), "a token outside the vocabulary is refused");
    }
}

/// The decoder over a GGUF file's own quantization (Q4_1 here, as the embedded model's;
/// `--weights native`): a row's logits are the same bits alone and in a batch of rows of
/// other lengths, at prefill and at every decode step, and they agree with the
/// transformer over the same weights (every family).
#[test]
fn the_decoder_with_native_q4_1_weights_computes_a_row_the_same_in_any_batch() {
    use candle_core::quantized::{GgmlDType, QTensor};
    for arch in Architecture::ALL {
        // Every matrix's rows hold a multiple of two 32-value Q4_1 blocks (candle's kernel
        // takes blocks in pairs).
        let c = ModelConfig { hidden_size: 64, intermediate_size: 128, head_dim: 16, ..ModelConfig::tiny(arch) };
        let m = model_with(&c, Kernels::Fused, &mut |_, w, b| {
            let tensor = |source| eva_engine::Error::Tensor { step: "q4_1", source };
            let q = QTensor::quantize(w, GgmlDType::Q4_1).map_err(tensor)?;
            Linear::from_qtensor(std::sync::Arc::new(q), b.cloned()).map_err(tensor)
        });
        let d = Int8Decoder::from_transformer(&m).expect("the projections are quantized").unwrap();
        let rows: [&[u32]; 4] = [&[1, 5, 9, 33, 2, 60, 7], &[4, 8, 15, 16], &[3], &[42, 17, 8, 9, 10]];
        let steps = [3u32, 11, 40];
        let alone: Vec<Vec<Vec<f32>>> = rows
            .iter()
            .map(|row| {
                let mut cache = DecodeCache::new(&d, 1);
                let mut out = d.step(&mut cache, &[*row]).unwrap();
                for t in steps {
                    out.extend(d.step(&mut cache, &[&[t]]).unwrap());
                }
                out
            })
            .collect();
        let mut cache = DecodeCache::new(&d, 4);
        let mut together = vec![d.step(&mut cache, &rows).unwrap()];
        for t in steps {
            let t: &[u32] = &[t];
            together.push(d.step(&mut cache, &[t; 4]).unwrap());
        }
        for (r, alone) in alone.iter().enumerate() {
            for (s, logits) in alone.iter().enumerate() {
                assert!(together[s][r] == *logits, "{arch:?}: row {r} at step {s} differs in a batch of four");
            }
        }
        for (row, alone) in rows.iter().zip(&alone) {
            let mut seq = row.to_vec();
            seq.extend(steps);
            let want = m.forward(&ids(&[&seq]), None).unwrap().squeeze(0).unwrap();
            for (s, got) in alone.iter().enumerate() {
                let want = want.get(row.len() - 1 + s).unwrap();
                let scale = want.abs().unwrap().max(0).unwrap().to_scalar::<f32>().unwrap();
                let diff = max_diff(&want, &Tensor::new(got.as_slice(), &Device::Cpu).unwrap());
                assert!(
                    diff <= 1e-4 * scale,
                    "{arch:?}: row of {} tokens, step {s}: logits differ by {diff} (of {scale})",
                    row.len()
                );
            }
        }
    }
}

#[test]
fn left_padded_rows_match_their_unpadded_runs() {
    for arch in Architecture::ALL {
        let c = ModelConfig::tiny(arch);
        let m = model(&c, Kernels::Fused);
        let short: [u32; 3] = [4, 8, 15];
        let long: [u32; 6] = [16, 23, 42, 4, 8, 15];
        let alone = |p: &[u32]| {
            let mut cache = KvCache::new(&c, 1, 8, vec![0], &Device::Cpu).unwrap();
            let a = m.forward(&ids(&[p]), Some(&mut cache)).unwrap();
            let b = m.forward(&ids(&[&[11]]), Some(&mut cache)).unwrap();
            (a, b)
        };
        let mut cache = KvCache::new(&c, 2, 8, vec![3, 0], &Device::Cpu).unwrap();
        let padded: [u32; 6] = [0, 0, 0, 4, 8, 15];
        let pre = m.forward(&ids(&[&padded, &long]), Some(&mut cache)).unwrap();
        let step = m.forward(&ids(&[&[11], &[11]]), Some(&mut cache)).unwrap();
        for (row, p) in [(0, &short[..]), (1, &long[..])] {
            let (a, b) = alone(p);
            let d1 = max_diff(&pre.get(row).unwrap(), &a.squeeze(0).unwrap());
            let d2 = max_diff(&step.get(row).unwrap(), &b.squeeze(0).unwrap());
            assert!(d1 < 1e-4 && d2 < 1e-4, "{arch:?} row {row}: prefill differs by {d1}, decode by {d2}");
        }
    }
}

fn loss(m: &Transformer, seqs: &[Scored<'_>]) -> Tensor {
    let batch = TokenBatch::new(seqs, m.config.vocab_size, &Device::Cpu).unwrap();
    token_logprobs(m, &batch).unwrap().sum_all().unwrap().neg().unwrap()
}

const PAIRS: [(&[u32], &[u32]); 2] = [(&[1, 2, 3], &[4, 5, 6, 7]), (&[9, 8], &[7, 6, 5])];

fn seqs() -> Vec<Scored<'static>> {
    PAIRS.iter().map(|(p, c)| Scored { prompt: p, completion: c }).collect()
}

/// In f32 and in half precision (f16 here: the CPU has no bf16 matmul; a GPU trains in
/// bf16 through the same graph).
#[test]
fn every_trainable_tensor_gets_a_gradient() {
    for (arch, dtype) in Architecture::ALL.into_iter().flat_map(|a| [(a, DType::F32), (a, DType::F16)]) {
        let c = ModelConfig::tiny(arch);
        let w = Weights::random(&c, 3, &Device::Cpu).unwrap().to(&Device::Cpu, dtype).unwrap();
        let tm = TrainableModel::new(&c, &w, Adaptation::Full, 0).unwrap();
        let expected = eva_engine::expected_shapes(&c).len();
        assert_eq!(tm.params.len(), expected, "{arch:?}: every tensor is trainable");
        let loss = loss(&tm.model, &seqs());
        assert_eq!(loss.dtype(), DType::F32, "{arch:?} {dtype:?}: log-probs are summed in f32");
        let grads = loss.backward().unwrap();
        for (name, var) in &tm.params {
            let g = grads.get(var).unwrap_or_else(|| panic!("{arch:?} {dtype:?}: {name} got no gradient"));
            assert_eq!(g.dtype(), dtype);
            let norm = g.to_dtype(DType::F32).unwrap().sqr().unwrap().sum_all().unwrap().to_scalar::<f32>().unwrap();
            assert!(norm > 0.0 && norm.is_finite(), "{arch:?} {dtype:?}: {name} has gradient norm² {norm}");
        }
    }
}

#[test]
fn a_shared_prompt_scores_and_trains_like_separate_sequences() {
    // Prompt longer than gemma2/3's window of 3, completions of different lengths.
    let prompt: [u32; 5] = [2, 7, 1, 8, 28];
    let (chosen, rejected): ([u32; 4], [u32; 6]) = ([18, 28, 45, 9], [4, 5, 23, 53, 6, 0]);
    for arch in Architecture::ALL {
        let c = ModelConfig::tiny(arch);
        let w = Weights::random(&c, 13, &Device::Cpu).unwrap();
        // f64, so that any difference beyond rounding shows.
        let f64s = w.tensors.into_iter().map(|(n, t)| (n, (t * 10.0).unwrap().to_dtype(DType::F64).unwrap()));
        let w = Weights::from_tensors(f64s.collect(), w.source);
        let tm = TrainableModel::new(&c, &w, Adaptation::Full, 0).unwrap();
        let seqs = [Scored { prompt: &prompt, completion: &chosen }, Scored { prompt: &prompt, completion: &rejected }];
        let batch = TokenBatch::new(&seqs, c.vocab_size, &Device::Cpu).unwrap();
        let batch = TokenBatch { mask: batch.mask.to_dtype(DType::F64).unwrap(), ..batch };
        let separate = token_logprobs(&tm.model, &batch).unwrap().sum(1).unwrap();
        let shared = shared_prompt_logprobs(&tm.model, &prompt, &[&chosen, &rejected]).unwrap();
        let d = (&separate - &shared).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f64>().unwrap();
        assert!(d < 1e-9, "{arch:?}: log-probs differ by {d}");
        // A DPO-like weighting of the two, so that the gradients do not merely add up.
        let weights = Tensor::new(&[1.0f64, -0.5], &Device::Cpu).unwrap();
        let (gs, gp) = (
            (separate * &weights).unwrap().sum_all().unwrap().backward().unwrap(),
            (shared * &weights).unwrap().sum_all().unwrap().backward().unwrap(),
        );
        for (name, var) in &tm.params {
            let (a, b) = (gs.get(var).unwrap(), gp.get(var).unwrap());
            let max = |t: &Tensor| t.abs().unwrap().max_all().unwrap().to_scalar::<f64>().unwrap();
            let d = max(&(a - b).unwrap()) / max(a).max(1e-12);
            assert!(d < 1e-9, "{arch:?}: gradient of {name} differs by {d} of its largest entry");
        }
    }
}

#[test]
fn lora_trains_only_adapters_and_starts_at_the_base() {
    let c = ModelConfig::tiny(Architecture::Llama);
    let w = Weights::random(&c, 3, &Device::Cpu).unwrap();
    let lora = LoraConfig { rank: 2, alpha: 4.0, targets: vec!["q_proj".into(), "v_proj".into(), "down_proj".into()] };
    let tm = TrainableModel::new(&c, &w, Adaptation::Lora(lora), 1).unwrap();
    assert_eq!(tm.params.len(), 2 * 3 * c.num_layers, "A and B per target per layer");
    let base = TrainableModel::new(&c, &w, Adaptation::Full, 0).unwrap();
    let (l0, l1) = (loss(&base.model, &seqs()), loss(&tm.model, &seqs()));
    assert!(max_diff(&l0, &l1) < 1e-5, "B = 0: the adapted model is the base");
    // B starts at zero, so only B has a gradient at first; after a step on B, A has one too.
    let grads = l1.backward().unwrap();
    for (name, var) in &tm.params {
        let g = grads.get(var).unwrap_or_else(|| panic!("{name} got no gradient"));
        let norm = g.sqr().unwrap().sum_all().unwrap().to_scalar::<f32>().unwrap();
        if name.ends_with("lora_B.weight") {
            assert!(norm > 0.0, "{name} has no gradient");
            var.set(&(var.as_tensor() - (g * 0.5).unwrap()).unwrap()).unwrap();
        }
    }
    let grads = loss(&tm.model, &seqs()).backward().unwrap();
    for (name, var) in tm.params.iter().filter(|(n, _)| n.ends_with("lora_A.weight")) {
        let norm = grads.get(var).unwrap().sqr().unwrap().sum_all().unwrap().to_scalar::<f32>().unwrap();
        assert!(norm > 0.0, "{name} has no gradient after B moved");
    }
    // Merging puts the adapters into the base weights: same function.
    let merged = Weights::from_tensors(tm.merged_weights().unwrap(), "merged");
    let m = TrainableModel::new(&c, &merged, Adaptation::Full, 0).unwrap();
    let d = max_diff(&loss(&m.model, &seqs()), &loss(&tm.model, &seqs()));
    assert!(d < 1e-3, "merged model differs by {d}");
}

#[test]
fn gradients_match_finite_differences() {
    // f64 end to end so that the central difference is exact to ~1e-8.
    for arch in Architecture::ALL {
        let c = ModelConfig::tiny(arch);
        let w = Weights::random(&c, 5, &Device::Cpu).unwrap();
        let f64s = w.tensors.into_iter().map(|(n, t)| (n, (t * 10.0).unwrap().to_dtype(DType::F64).unwrap()));
        let w = Weights::from_tensors(f64s.collect(), w.source);
        let tm = TrainableModel::new(&c, &w, Adaptation::Full, 0).unwrap();
        let f = |m: &Transformer| -> f64 {
            let batch = TokenBatch::new(&seqs(), c.vocab_size, &Device::Cpu).unwrap();
            let mask = batch.mask.to_dtype(DType::F64).unwrap();
            let batch = TokenBatch { mask, ..batch };
            token_logprobs(m, &batch).unwrap().sum_all().unwrap().to_scalar::<f64>().unwrap()
        };
        let batch = TokenBatch::new(&seqs(), c.vocab_size, &Device::Cpu).unwrap();
        let batch = TokenBatch { mask: batch.mask.to_dtype(DType::F64).unwrap(), ..batch };
        let grads = token_logprobs(&tm.model, &batch).unwrap().sum_all().unwrap().backward().unwrap();
        let mut checked = 0;
        for (name, var) in
            tm.params.iter().filter(|(n, _)| n.contains("layers.0") || n.contains("norm") || n.contains("embed"))
        {
            let g = grads.get(var).unwrap().flatten_all().unwrap().to_vec1::<f64>().unwrap();
            let orig = var.as_tensor().copy().unwrap();
            // The element with the largest gradient, so that the check is not vacuous.
            let k = (0..g.len()).max_by(|&a, &b| g[a].abs().total_cmp(&g[b].abs())).unwrap();
            let h = 1e-5;
            let bump = |delta: f64| {
                let mut v = orig.flatten_all().unwrap().to_vec1::<f64>().unwrap();
                v[k] += delta;
                var.set(&Tensor::from_vec(v, orig.shape(), &Device::Cpu).unwrap()).unwrap();
                f(&tm.model)
            };
            let numeric = (bump(h) - bump(-h)) / (2.0 * h);
            var.set(&orig).unwrap();
            let rel = (numeric - g[k]).abs() / g[k].abs().max(1e-6);
            assert!(rel < 1e-4, "{arch:?} {name}[{k}]: backward {} vs finite difference {numeric}", g[k]);
            checked += 1;
        }
        assert!(checked >= 10, "{arch:?}: checked {checked} tensors");
    }
}

#[test]
fn log_softmax_rows_are_normalised() {
    let c = ModelConfig::tiny(Architecture::Qwen3);
    let m = model(&c, Kernels::Fused);
    let logits = m.forward(&ids(&[&[1, 2, 3]]), None).unwrap();
    let lse = candle_nn::ops::log_softmax(&logits, D::Minus1).unwrap().exp().unwrap().sum(D::Minus1).unwrap();
    let total = lse.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    assert!(total.iter().all(|s| (s - 1.0).abs() < 1e-5), "{total:?}");
}

#[test]
fn rope_scaling_reaches_the_forward_pass_and_survives_config_json() {
    let plain = ModelConfig::tiny(Architecture::Llama);
    let scaling = serde_json::json!({"rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": 16});
    let yarn = ModelConfig { rope_scaling: RopeScaling::from_hf(&scaling, 64).unwrap(), ..plain.clone() };
    let x = ids(&[&[1, 5, 9, 33, 2, 60, 7, 11, 40]]);
    let a = model(&plain, Kernels::Fused).forward(&x, None).unwrap();
    let b = model(&yarn, Kernels::Fused).forward(&x, None).unwrap();
    assert!(max_diff(&a, &b) > 1e-3, "the scaled model computes something else");
    let c = model(&yarn, Kernels::Differentiable).forward(&x, None).unwrap();
    assert!(max_diff(&b, &c) < 1e-4, "fused and differentiable kernels agree under scaling");

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.json");
    std::fs::write(&path, yarn.to_hf_json(None, &[0]).to_string()).unwrap();
    assert_eq!(ModelConfig::from_hf_json(&path).unwrap(), yarn);
    let mut json = plain.to_hf_json(None, &[0]);
    assert!(json.get("rope_scaling").is_none(), "plain rope writes no rope_scaling");
    json["rope_scaling"] = serde_json::json!({"rope_type": "longrope", "factor": 2.0});
    std::fs::write(&path, json.to_string()).unwrap();
    let err = ModelConfig::from_hf_json(&path).unwrap_err().to_string();
    assert!(err.contains("config.json") && err.contains("`longrope` is not supported"), "{err}");
}
