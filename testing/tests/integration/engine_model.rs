//! The engine on the embedded default model: sampling semantics, log-probs, saving and
//! reloading, and the errors a user meets with wrong files.

use std::path::Path;
use std::sync::OnceLock;

use eva_engine::{
    Adaptation, FinishReason, GenerationParams, LanguageModel, LoraConfig, Message, ModelFiles, Sampling, Scored,
    WeightFormat,
};
use eva_test_support::models::default_model;

fn model() -> &'static LanguageModel {
    static MODEL: OnceLock<LanguageModel> = OnceLock::new();
    MODEL.get_or_init(|| LanguageModel::load(&default_model(), WeightFormat::F32).expect("loading the default model"))
}

fn prompts(m: &LanguageModel) -> Vec<Vec<u32>> {
    ["What is the capital of France?", "Name three colours.", "Write a haiku about autumn leaves falling."]
        .iter()
        .map(|q| m.chat_prompt(&[Message::new("user", *q)]).unwrap())
        .collect()
}

#[test]
fn sampling_is_seeded_and_independent_of_batching() {
    let m = model();
    let p = prompts(m);
    let params = GenerationParams { n: 3, max_new_tokens: 24, seed: 11, prompts_per_batch: 3, ..Default::default() };
    let a = m.generate(&p, &params, &mut |_| {}).unwrap();
    let b = m.generate(&p, &params, &mut |_| {}).unwrap();
    assert_eq!(a, b, "same seed, same samples");
    assert_eq!(a.len(), 3);
    assert!(a.iter().all(|s| s.len() == 3), "n samples per prompt");
    let distinct: std::collections::HashSet<&str> = a[2].iter().map(|c| c.text.as_str()).collect();
    assert!(distinct.len() > 1, "samples of one prompt differ: {:?}", a[2]);
    // One prompt at a time: each sample keeps its own random stream.
    let alone = m.generate(&p, &GenerationParams { prompts_per_batch: 1, ..params.clone() }, &mut |_| {}).unwrap();
    assert_eq!(a, alone, "samples do not depend on which prompts share their batch");
    let other = m.generate(&p, &GenerationParams { seed: 12, ..params }, &mut |_| {}).unwrap();
    assert_ne!(a, other, "another seed, other samples");
}

/// `--weights native` (the file's own Q4_1, activations rounded to 8 bits per block): a
/// prompt's logits and greedy answer are the same alone and in a batch of prompts of other
/// lengths, bit for bit. Rounding to 8 bits turns any last-bit difference into a visibly
/// different number, so a row must be computed exactly as it is alone: no shifted rope
/// positions from left padding, no sums reordered by the rest of the batch.
#[test]
fn native_weights_compute_a_row_the_same_in_any_batch() {
    let m = LanguageModel::load(&default_model(), WeightFormat::Native).expect("loading the default model (native)");
    let p: Vec<Vec<u32>> = [
        "Write a haiku about autumn leaves falling.",
        "Hi",
        "Explain in three sentences why the sky is blue, then give one everyday example of the same effect.",
        "Name three colours.",
    ]
    .iter()
    .map(|q| m.chat_prompt(&[Message::new("user", *q)]).unwrap())
    .collect();
    let lengths: std::collections::HashSet<usize> = p.iter().map(Vec::len).collect();
    assert_eq!(lengths.len(), 4, "four prompts of different lengths");
    let params =
        GenerationParams { sampling: Sampling::GREEDY, max_new_tokens: 32, prompts_per_batch: 4, ..Default::default() };
    let together = m.generate(&p, &params, &mut |_| {}).unwrap();
    for (i, prompt) in p.iter().enumerate() {
        let alone = m.generate(std::slice::from_ref(prompt), &params, &mut |_| {}).unwrap();
        assert_eq!(alone[0], together[i], "prompt {i}: its greedy answer depends on the rest of its batch");
        let beside_one = m.generate(&[prompt.clone(), p[(i + 1) % 4].clone()], &params, &mut |_| {}).unwrap();
        assert_eq!(beside_one[0], together[i], "prompt {i}: its greedy answer depends on the rest of its batch");
    }
    // The logits themselves, bit for bit: prefill, then decode steps of every row.
    let d = m.decoder.as_ref().expect("native generation runs on the quantized decoder");
    let mut batch = eva_engine::decode::DecodeCache::new(d, 4);
    let mut alone = eva_engine::decode::DecodeCache::new(d, 1);
    let refs: Vec<&[u32]> = p.iter().map(Vec::as_slice).collect();
    let mut logits = d.step(&mut batch, &refs).unwrap();
    let mut own = d.step(&mut alone, &refs[2..3]).unwrap();
    for step in 0..4 {
        assert!(logits[2] == own[0], "step {step}: the row's logits depend on the rest of its batch");
        let argmax = |l: &Vec<f32>| (0..l.len()).max_by(|&a, &b| l[a].total_cmp(&l[b])).unwrap() as u32;
        let next: Vec<u32> = logits.iter().map(argmax).collect();
        let next_refs: Vec<&[u32]> = next.iter().map(std::slice::from_ref).collect();
        logits = d.step(&mut batch, &next_refs).unwrap();
        own = d.step(&mut alone, &next_refs[2..3]).unwrap();
    }
}

#[test]
fn greedy_answers_are_coherent_and_stop_at_eos() {
    let m = model();
    let params = GenerationParams { sampling: Sampling::GREEDY, max_new_tokens: 48, ..Default::default() };
    let out = m.generate(&prompts(m)[..1], &params, &mut |_| {}).unwrap();
    let answer = &out[0][0];
    assert!(answer.text.contains("Paris"), "{answer:?}");
    assert_eq!(answer.finish, FinishReason::Eos, "{answer:?}");
}

#[test]
fn stop_strings_and_token_limits_end_generation() {
    let m = model();
    let p = m.chat_prompt(&[Message::new("user", "Count from 1 to 20.")]).unwrap();
    let base = GenerationParams { sampling: Sampling::GREEDY, max_new_tokens: 80, ..Default::default() };
    let full = m.generate(std::slice::from_ref(&p), &base, &mut |_| {}).unwrap().remove(0).remove(0);
    // "4. 4" spans four tokens ("4", ".", " ", "4").
    let stop = "4. 4";
    assert!(full.text.contains(stop), "{full:?}");
    let stopped = m
        .generate(std::slice::from_ref(&p), &GenerationParams { stop: vec![stop.into()], ..base.clone() }, &mut |_| {})
        .unwrap();
    let stopped = &stopped[0][0];
    assert_eq!(stopped.finish, FinishReason::Stop);
    assert_eq!(stopped.text, full.text[..full.text.find(stop).unwrap()], "text ends before the stop string");
    let short = m.generate(&[p], &GenerationParams { max_new_tokens: 5, ..base }, &mut |_| {}).unwrap();
    assert_eq!(short[0][0].finish, FinishReason::Length);
    assert_eq!(short[0][0].tokens.len(), 5);
    assert_eq!(short[0][0].tokens, full.tokens[..5], "greedy is a prefix of the longer run");
}

#[test]
fn batched_log_probs_match_one_at_a_time_and_mask_the_prompt() {
    let m = model();
    let p = prompts(m);
    let answers: Vec<Vec<u32>> = ["Paris is the capital.", "Red, green and blue.", "Crimson leaves drift down"]
        .iter()
        .map(|a| m.tokenizer.encode(a).unwrap())
        .collect();
    let seqs: Vec<Scored<'_>> = p.iter().zip(&answers).map(|(p, a)| Scored { prompt: p, completion: a }).collect();
    let together = m.logprobs(&seqs).unwrap();
    for (i, s) in seqs.iter().enumerate() {
        let alone = m.logprobs(&[*s]).unwrap().remove(0);
        assert_eq!(alone.per_token.len(), answers[i].len(), "one log-prob per completion token");
        assert!((alone.sum - together[i].sum).abs() < 1e-3, "sequence {i}: {} vs {}", alone.sum, together[i].sum);
        let summed: f32 = alone.per_token.iter().sum();
        assert!((summed - alone.sum).abs() < 1e-3);
        assert!(alone.per_token.iter().all(|&l| l <= 0.0 && l.is_finite()));
    }
    // The right answer to its own question is likelier than to another's.
    let swapped = m.logprobs(&[Scored { prompt: &p[1], completion: &answers[0] }]).unwrap();
    assert!(together[0].sum > swapped[0].sum, "{} vs {}", together[0].sum, swapped[0].sum);
}

#[test]
fn a_saved_model_loads_again_and_computes_the_same() {
    let m = model();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("full");
    let trainable = m.trainable(Adaptation::Full, 0).unwrap();
    trainable.save_hf(&out, Some(&m.tokenizer), m.chat_template.as_ref(), false).unwrap();
    for f in ["config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json", "generation_config.json"] {
        assert!(out.join(f).is_file(), "{f} written");
    }
    let again = LanguageModel::load(&out, WeightFormat::F32).unwrap();
    let conversation = [Message::new("user", "Hi"), Message::new("assistant", "Hello!"), Message::new("user", "2+2?")];
    assert_eq!(
        again.chat_prompt(&conversation).unwrap(),
        m.chat_prompt(&conversation).unwrap(),
        "same template and tokenizer"
    );
    assert_eq!(again.tokenizer.eos, m.tokenizer.eos);
    let p = prompts(m);
    let answer = m.tokenizer.encode("Paris is the capital of France.").unwrap();
    let seq = [Scored { prompt: &p[0], completion: &answer }];
    let (a, b) = (m.logprobs(&seq).unwrap(), again.logprobs(&seq).unwrap());
    assert!((a[0].sum - b[0].sum).abs() < 1e-4, "{} vs {}", a[0].sum, b[0].sum);

    // LoRA: merged into a full directory, or as a PEFT adapter.
    let lora = m.trainable(Adaptation::Lora(LoraConfig::default()), 3).unwrap();
    lora.save_hf(&dir.path().join("adapter"), Some(&m.tokenizer), None, true).unwrap();
    let cfg: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("adapter/adapter_config.json")).unwrap())
            .unwrap();
    assert_eq!(cfg["r"], 8);
    assert_eq!(cfg["target_modules"], serde_json::json!(["q_proj", "v_proj"]));
    let tensors =
        candle_core::safetensors::load(dir.path().join("adapter/adapter_model.safetensors"), &candle_core::Device::Cpu)
            .unwrap();
    assert_eq!(tensors.len(), 2 * 2 * 30, "A and B for q and v in 30 layers");
    assert!(tensors.contains_key("base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight"));
}

fn err_of(path: &Path) -> String {
    match ModelFiles::open(path, &candle_core::Device::Cpu) {
        Ok(_) => panic!("{} loaded", path.display()),
        Err(e) => e.to_string(),
    }
}

#[test]
fn wrong_files_get_errors_that_name_them() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nope.gguf");
    assert!(err_of(&missing).contains("nope.gguf"), "{}", err_of(&missing));

    let text = dir.path().join("notes.gguf");
    std::fs::write(&text, "just some text, not a model").unwrap();
    let e = err_of(&text);
    assert!(e.contains("notes.gguf") && e.contains("not a model"), "{e}");

    let truncated = dir.path().join("truncated.gguf");
    let bytes = std::fs::read(default_model()).unwrap();
    std::fs::write(&truncated, &bytes[..bytes.len() / 2]).unwrap();
    let e = err_of(&truncated);
    assert!(e.contains("truncated.gguf") && e.contains("corrupt"), "{e}");

    let empty_dir = dir.path().join("empty");
    std::fs::create_dir(&empty_dir).unwrap();
    assert!(err_of(&empty_dir).contains("config.json"), "{}", err_of(&empty_dir));

    // A saved directory, then broken in different ways.
    let m = model();
    let good = dir.path().join("good");
    m.trainable(Adaptation::Lora(LoraConfig::default()), 0)
        .unwrap()
        .save_hf(&good, Some(&m.tokenizer), None, false)
        .unwrap();
    let variant = |name: &str, edit: &dyn Fn(&Path)| {
        let d = dir.path().join(name);
        std::fs::create_dir(&d).unwrap();
        for f in std::fs::read_dir(&good).unwrap() {
            let f = f.unwrap().path();
            std::fs::copy(&f, d.join(f.file_name().unwrap())).unwrap();
        }
        edit(&d);
        err_of(&d)
    };
    let set_config = |d: &Path, key: &str, value: serde_json::Value| {
        let p = d.join("config.json");
        let mut c: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap();
        c[key] = value;
        std::fs::write(p, c.to_string()).unwrap();
    };
    let e = variant("gpt2", &|d| set_config(d, "model_type", "gpt2".into()));
    assert!(e.contains("unsupported architecture `gpt2`") && e.contains("gpt2/config.json"), "{e}");
    let e = variant("notok", &|d| std::fs::remove_file(d.join("tokenizer.json")).unwrap());
    assert!(e.contains("missing tokenizer.json"), "{e}");
    let e = variant("small-vocab", &|d| set_config(d, "vocab_size", 1000.into()));
    assert!(e.contains("does not fit the model") && e.contains("49152"), "{e}");
    let e = variant("wide", &|d| set_config(d, "intermediate_size", 2000.into()));
    assert!(e.contains("mlp.gate_proj.weight") && e.contains("[1536, 576]"), "{e}");
}
