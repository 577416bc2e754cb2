//! The engine against llama.cpp on the embedded default model (SmolLM2-135M-Instruct,
//! Q4_1, byte-level BPE) and on Gemma 3 270M (Q4_K_M, SentencePiece, sliding-window
//! layers): token ids, greedy continuation and logits. Downloads the models and the
//! reference once; never skipped.

use candle_core::{Device, Tensor};
use eva_engine::{Adaptation, GenerationParams, LanguageModel, Message, Sampling, WeightFormat};
use eva_test_support::models::{default_model, gemma3_270m, gemma3_270m_f32, llama_cpp};
use serde_json::json;

/// Strings that trip tokenizers: unicode, digits, code, whitespace runs, chat markup.
const HARD: [&str; 16] = [
    "Hello, world!",
    "naïve café, Straße, 東京タワー, Привет мир, مرحبا, 🦀🚀 emoji👍🏽",
    "3.14159 1,000,000 2024-11-24 0x1F 12345678901234567890",
    "fn main() {\n    let v: Vec<u32> = (0..10).map(|x| x * x).collect();\n\tprintln!(\"{v:?}\");\n}",
    "def f(x):\n        return x**2  # comment\n\n\n",
    "   leading and trailing spaces   ",
    "a  b   c    d\t\te\n\n\nf \r\n g",
    "<|im_start|>system\nYou are helpful.<|im_end|>\n<|im_start|>user\nHi!<|im_end|>\n<|im_start|>assistant\n",
    "don't won't I'm you're they've we'll it'd",
    "URL: https://example.com/path?q=1&r=2#frag",
    "Ünïcödé ÀÉÎÕÜ ß ø å æ œ",
    "$\\frac{a}{b}$ and \\(x^2\\) in LaTeX",
    "",
    "<|endoftext|>text after a special token",
    "<start_of_turn>user\nWhat is 2+2?<end_of_turn>\n<start_of_turn>model\n",
    "tabs\t\t\tand newlines\n\n\n\n\nend \n \n\t x",
];

fn load(format: WeightFormat) -> LanguageModel {
    LanguageModel::load(&default_model(), format).expect("loading the default model")
}

#[test]
fn tokenizer_matches_llama_cpp_and_round_trips() {
    tokenizer_matches(&load(WeightFormat::F32), &default_model());
}

#[test]
fn gemma3_sentencepiece_tokenizer_matches_llama_cpp_and_round_trips() {
    let model = LanguageModel::load(&gemma3_270m(), WeightFormat::Native).expect("loading Gemma 3 270M");
    tokenizer_matches(&model, &gemma3_270m());
}

fn tokenizer_matches(model: &LanguageModel, path: &std::path::Path) {
    let reference = llama_cpp(json!({"model": path, "tokenize": HARD}));
    let mut mismatches = vec![];
    for (i, text) in HARD.iter().enumerate() {
        let ours = model.tokenizer.encode(text).unwrap();
        let theirs: Vec<u32> = serde_json::from_value(reference["tokenize"][i].clone()).unwrap();
        if ours != theirs {
            mismatches.push(format!("{text:?}\n  eva:       {ours:?}\n  llama.cpp: {theirs:?}"));
        }
        assert_eq!(model.tokenizer.decode(&ours, false).unwrap(), *text, "decode(encode(x)) == x");
    }
    assert!(mismatches.is_empty(), "token ids differ from llama.cpp:\n{}", mismatches.join("\n"));
}

fn story_prompt(model: &LanguageModel) -> Vec<u32> {
    model.chat_prompt(&[Message::new("user", "Write a short story about a robot who learns to paint.")]).unwrap()
}

/// Logits over the prompt + `tokens`, position by position, from a full forward.
fn teacher_forced(model: &eva_engine::Transformer, prompt: &[u32], tokens: &[u32]) -> Vec<Vec<f32>> {
    let all: Vec<u32> = prompt.iter().chain(tokens).copied().collect();
    let ids = Tensor::from_vec(all.clone(), (1, all.len()), &Device::Cpu).unwrap();
    let from = prompt.len() - 1;
    let logits = model.forward_logits_from(&ids, from).unwrap().squeeze(0).unwrap();
    logits.to_vec2::<f32>().unwrap()
}

struct Comparison {
    agree: usize,
    generated: usize,
    max_delta: f32,
    /// Where the continuations first differ: how far below llama.cpp's own choice
    /// llama.cpp ranks eva's token (infinite when it is not in llama.cpp's top 20).
    divergence_gap: Option<f32>,
}

/// Greedy `STEPS` tokens from eva and from llama.cpp on the same prompt, and eva's logits
/// (teacher-forced on llama.cpp's continuation) against llama.cpp's top-20 at every step.
fn compare(model: &LanguageModel, reference_model: &std::path::Path, prompt: Vec<u32>, f32_kv: bool) -> Comparison {
    const STEPS: usize = 64;
    let request =
        json!({"model": reference_model, "f32_kv": f32_kv, "greedy": {"prompt": prompt, "steps": STEPS, "top": 20}});
    let reference = llama_cpp(request);
    let theirs: Vec<u32> = serde_json::from_value(reference["greedy"]["tokens"].clone()).unwrap();
    let params = GenerationParams { sampling: Sampling::GREEDY, max_new_tokens: STEPS, n: 1, ..Default::default() };
    let ours = model.generate(std::slice::from_ref(&prompt), &params, &mut |_| {}).unwrap().remove(0).remove(0);
    let agree = ours.tokens.iter().zip(&theirs).take_while(|(a, b)| a == b).count();
    let logits = teacher_forced(&model.transformer, &prompt, &theirs);
    let mut max_delta = 0f32;
    for (step, entries) in reference["greedy"]["logits"].as_array().unwrap().iter().enumerate() {
        for e in entries.as_array().unwrap() {
            let (id, value) = (e[0].as_u64().unwrap() as usize, e[1].as_f64().unwrap() as f32);
            max_delta = max_delta.max((logits[step][id] - value).abs());
        }
    }
    let divergence_gap = ours.tokens.get(agree).filter(|_| agree < theirs.len()).map(|&ours| {
        let top = reference["greedy"]["logits"][agree].as_array().unwrap();
        let logit_of =
            |id: u32| top.iter().find(|e| e[0].as_u64() == Some(id as u64)).map(|e| e[1].as_f64().unwrap() as f32);
        logit_of(theirs[agree]).zip(logit_of(ours)).map_or(f32::INFINITY, |(t, o)| t - o)
    });
    println!("eva:       {:?}", ours.text);
    println!("llama.cpp: {:?}", model.tokenizer.decode(&theirs, true).unwrap());
    Comparison { agree, generated: ours.tokens.len(), max_delta, divergence_gap }
}

#[test]
fn f32_logits_and_greedy_continuation_match_llama_cpp() {
    // The same weights (the Q4_1 file dequantized) in f32 on both sides, f32 KV cache in
    // llama.cpp: the two implementations must compute the same function.
    let model = load(WeightFormat::F32);
    let c = compare(&model, &eva_test_support::models::default_model_f32(), story_prompt(&model), true);
    assert_same_function("f32", &c, 1e-2);
}

/// Both sides computed the same function: every greedy token agrees and the logits differ
/// by less than `max_delta` (f32 rounding, accumulated over the context).
fn assert_same_function(label: &str, c: &Comparison, max_delta: f32) {
    println!(
        "{label}: greedy agrees with llama.cpp on {}/{} tokens; max |Δlogit| over top-20 × 64 steps = {:.2e}",
        c.agree, c.generated, c.max_delta
    );
    assert_eq!(c.generated, 64, "the prompt yields 64 tokens without EOS");
    assert_eq!(c.agree, 64, "greedy continuation diverges from llama.cpp at token {}", c.agree);
    assert!(c.max_delta < max_delta, "logits differ from llama.cpp by up to {}", c.max_delta);
}

#[test]
fn quantized_inference_stays_within_quantization_noise_of_llama_cpp() {
    // On the Q4_1 file itself both sides quantize activations to 8 bits per block (and
    // llama.cpp keeps an f16 KV cache), so logits agree only to quantization noise:
    // measured ~0.85 at most, about 3% of the logits' magnitude.
    let model = load(WeightFormat::Native);
    let c = compare(&model, &default_model(), story_prompt(&model), false);
    println!(
        "native Q4_1: greedy agrees with llama.cpp on {}/{} tokens; max |Δlogit| over top-20 × 64 steps = {:.3}",
        c.agree, c.generated, c.max_delta
    );
    assert!(c.agree >= 16, "greedy continuation diverges early, at token {}", c.agree);
    assert!(c.max_delta < 1.5, "logits differ from llama.cpp by up to {}", c.max_delta);
}

#[test]
fn eight_bit_inference_stays_within_quantization_noise_of_llama_cpp() {
    // `--weights q8_0`: the file's weights requantized to 8 bits per 32-value block and
    // generated by the candle-free decoder, against llama.cpp computing the dequantized
    // weights in f32. Only 8-bit rounding of weights and activations separates them.
    let model = load(WeightFormat::Q8_0);
    assert!(model.decoder.is_some(), "q8_0 generation runs on the 8-bit decoder");
    println!("8-bit kernel: {}", eva_engine::int8::kernel().name());
    let c = compare(&model, &eva_test_support::models::default_model_f32(), story_prompt(&model), true);
    println!(
        "q8_0: greedy agrees with llama.cpp (f32) on {}/{} tokens (then a {:?} logit gap in llama.cpp); \
         max |Δlogit| over top-20 × 64 steps = {:.3}",
        c.agree, c.generated, c.divergence_gap, c.max_delta
    );
    assert!(c.agree >= 8, "greedy continuation diverges early, at token {}", c.agree);
    // Measured 0.80, as the native Q4_1 path against llama.cpp's own Q4_1 (0.85).
    assert!(c.max_delta < 1.5, "logits differ from llama.cpp by up to {}", c.max_delta);
    // A divergence is a near-tie that quantization noise may flip, not a wrong token.
    if let Some(gap) = c.divergence_gap {
        assert!(gap < 2.0 * c.max_delta, "eva's token at {} is {gap} below llama.cpp's choice", c.agree);
    }
}

#[test]
fn gemma3_f32_logits_and_greedy_continuation_match_llama_cpp() {
    // A base model: a plain-text prompt (with BOS), no chat template, longer than the
    // 512-token sliding window of five layers in six, so the window's mask is checked.
    let model = LanguageModel::load(&gemma3_270m_f32(), WeightFormat::F32).expect("loading Gemma 3 270M in f32");
    let text: String = (1..=40).map(|i| format!("Step {i}: the keeper climbed stair number {}. ", i * 7)).collect();
    let prompt = model.tokenizer.encode_prompt(&format!("{text}Then the old lighthouse keeper")).unwrap();
    assert_eq!(prompt[0], model.tokenizer.bos.unwrap(), "gemma prompts start with BOS");
    assert!(prompt.len() > 512 + 16, "the prompt ({} tokens) must outgrow the window", prompt.len());
    let prompt_len = prompt.len();
    let c = compare(&model, &gemma3_270m_f32(), prompt, true);
    assert_same_function(&format!("gemma3 f32, {}-token prompt", prompt_len), &c, 2e-2);
}

#[test]
fn trainable_path_agrees_with_the_inference_path() {
    let model = load(WeightFormat::F32);
    let prompt = story_prompt(&model);
    let tokens = model.tokenizer.encode("Once upon a time, in a quiet workshop, a robot named Pix").unwrap();
    let fused = teacher_forced(&model.transformer, &prompt, &tokens);
    let trainable = model.trainable(Adaptation::Full, 0).unwrap();
    let slow = teacher_forced(&trainable.model, &prompt, &tokens);
    let max_delta = fused.iter().flatten().zip(slow.iter().flatten()).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
    println!("fused vs differentiable forward: max |Δlogit| = {max_delta:.2e}");
    assert!(max_delta < 1e-3, "trainable forward differs from inference by {max_delta}");
}
