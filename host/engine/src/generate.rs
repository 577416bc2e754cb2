//! Batched sampling with a KV cache.
//!
//! Prompts are prefilled together once; each prompt's cache rows are then repeated for its
//! `n` samples, so samples share the prefill. Every decode step feeds one token per live
//! row; rows that finish (EOS, a stop string, the token limit) leave the batch so later
//! steps cost less. Two backends run the steps: the [`Transformer`] with a padded
//! [`KvCache`] (f32 weights), or the [`Int8Decoder`] (quantized weights: eva's 8-bit or
//! a GGUF file's own; unpadded rows, each computed as it would be alone).

use candle_core::Tensor;
use serde::{Deserialize, Serialize};

use crate::decode::{DecodeCache, Int8Decoder};
use crate::error::{Error, Result, TensorContext};
use crate::model::{KvCache, Transformer};
use crate::sampling::{Sampling, sample, sequence_rng};
use crate::tokenizer::Tokenizer;

/// What to generate for every prompt of a call.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GenerationParams {
    pub sampling: Sampling,
    pub max_new_tokens: usize,
    /// Samples per prompt.
    pub n: usize,
    /// Generation stops before any of these strings; they are not part of the text.
    pub stop: Vec<String>,
    pub seed: u64,
    /// Prompts prefilled together (rows in the batch = this × n).
    pub prompts_per_batch: usize,
}

impl Default for GenerationParams {
    fn default() -> Self {
        Self { sampling: Sampling::default(), max_new_tokens: 256, n: 1, stop: vec![], seed: 0, prompts_per_batch: 8 }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FinishReason {
    Eos,
    Stop,
    Length,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Completion {
    pub text: String,
    /// Generated ids, without the EOS token; for a stop string, up to and including the
    /// token where it began.
    pub tokens: Vec<u32>,
    pub finish: FinishReason,
}

struct Row {
    prompt: usize,
    sample: usize,
    rng: rand::rngs::StdRng,
    tokens: Vec<u32>,
}

/// Generate `params.n` completions for each prompt (token ids, already templated).
/// `on_tokens` is told how many tokens each step produced (for progress bars).
pub fn generate(
    model: &Transformer,
    decoder: Option<&Int8Decoder>,
    tokenizer: &Tokenizer,
    prompts: &[Vec<u32>],
    params: &GenerationParams,
    on_tokens: &mut dyn FnMut(usize),
) -> Result<Vec<Vec<Completion>>> {
    if params.n == 0 {
        return Err(Error::Request("n (samples per prompt) must be at least 1".into()));
    }
    if let Some(i) = prompts.iter().position(|p| p.is_empty()) {
        return Err(Error::Request(format!("prompt {i} has no tokens")));
    }
    let vocab = model.config.vocab_size as u32;
    if let Some((i, t)) = prompts.iter().enumerate().find_map(|(i, p)| p.iter().find(|&&t| t >= vocab).map(|t| (i, t)))
    {
        return Err(Error::Request(format!("prompt {i} holds token id {t}, outside the vocabulary of {vocab}")));
    }
    let longest = prompts.iter().map(Vec::len).max().unwrap_or(0);
    if longest + params.max_new_tokens > model.config.max_position_embeddings {
        return Err(Error::Request(format!(
            "a {longest}-token prompt plus {} new tokens exceeds the model's context of {}",
            params.max_new_tokens, model.config.max_position_embeddings
        )));
    }
    let mut out: Vec<Vec<Completion>> = Vec::with_capacity(prompts.len());
    for (chunk_idx, chunk) in prompts.chunks(params.prompts_per_batch.max(1)).enumerate() {
        let first = chunk_idx * params.prompts_per_batch.max(1);
        let mut steps: Box<dyn Steps + '_> = match decoder {
            Some(decoder) => Box::new(Int8Steps { decoder, cache: DecodeCache::default() }),
            None => Box::new(CandleSteps { model, cache: None }),
        };
        out.extend(generate_chunk(steps.as_mut(), tokenizer, chunk, first, params, on_tokens)?);
    }
    Ok(out)
}

/// The model calls of a generation: prefill, then one token per live row per step.
trait Steps {
    /// Prefill `prompts`; each one's next-token logits.
    fn prefill(&mut self, prompts: &[Vec<u32>], max_new_tokens: usize) -> Result<Vec<Vec<f32>>>;
    /// Keep (reorder, repeat) cache rows: `rows[i]` becomes row `i`.
    fn select_rows(&mut self, rows: &[usize]) -> Result<()>;
    /// Feed one token per row; each row's next-token logits.
    fn step(&mut self, next: &[u32]) -> Result<Vec<Vec<f32>>>;
}

/// Through candle: left-padded prompts, a preallocated [`KvCache`].
struct CandleSteps<'a> {
    model: &'a Transformer,
    cache: Option<KvCache>,
}

impl Steps for CandleSteps<'_> {
    fn prefill(&mut self, prompts: &[Vec<u32>], max_new_tokens: usize) -> Result<Vec<Vec<f32>>> {
        let device = self.model.device();
        let longest = prompts.iter().map(Vec::len).max().unwrap_or(0);
        let pad: Vec<usize> = prompts.iter().map(|p| longest - p.len()).collect();
        let ids: Vec<u32> =
            prompts.iter().flat_map(|p| std::iter::repeat_n(0, longest - p.len()).chain(p.iter().copied())).collect();
        let ids = Tensor::from_vec(ids, (prompts.len(), longest), device).step("prompt ids")?;
        let capacity = longest + max_new_tokens;
        let mut cache =
            KvCache::with_dtype(&self.model.config, prompts.len(), capacity, pad, self.model.dtype(), device)?;
        let logits = self.model.forward(&ids, Some(&mut cache))?;
        self.cache = Some(cache);
        read_logits(&logits)
    }

    fn select_rows(&mut self, rows: &[usize]) -> Result<()> {
        self.cache.as_mut().expect("prefilled").select_rows(rows)
    }

    fn step(&mut self, next: &[u32]) -> Result<Vec<Vec<f32>>> {
        let ids = Tensor::from_vec(next.to_vec(), (next.len(), 1), self.model.device()).step("next ids")?;
        read_logits(&self.model.forward(&ids, self.cache.as_mut())?)
    }
}

/// `[rows, vocab]` logits into host memory as f32, whatever the model's dtype and device.
fn read_logits(logits: &Tensor) -> Result<Vec<Vec<f32>>> {
    logits.to_dtype(candle_core::DType::F32).and_then(|l| l.to_vec2::<f32>()).step("reading logits")
}

/// Through the [`Int8Decoder`]: unpadded rows, each with its own cache.
struct Int8Steps<'a> {
    decoder: &'a Int8Decoder,
    cache: DecodeCache,
}

impl Steps for Int8Steps<'_> {
    fn prefill(&mut self, prompts: &[Vec<u32>], _max_new_tokens: usize) -> Result<Vec<Vec<f32>>> {
        self.cache = DecodeCache::new(self.decoder, prompts.len());
        let tokens: Vec<&[u32]> = prompts.iter().map(Vec::as_slice).collect();
        self.decoder.step(&mut self.cache, &tokens).step("prefill (quantized decoder)")
    }

    fn select_rows(&mut self, rows: &[usize]) -> Result<()> {
        self.cache.select_rows(rows);
        Ok(())
    }

    fn step(&mut self, next: &[u32]) -> Result<Vec<Vec<f32>>> {
        let tokens: Vec<&[u32]> = next.iter().map(std::slice::from_ref).collect();
        self.decoder.step(&mut self.cache, &tokens).step("decode step (quantized decoder)")
    }
}

fn generate_chunk(
    steps: &mut dyn Steps,
    tokenizer: &Tokenizer,
    prompts: &[Vec<u32>],
    first: usize,
    params: &GenerationParams,
    on_tokens: &mut dyn FnMut(usize),
) -> Result<Vec<Vec<Completion>>> {
    let _span = tracing::debug_span!("generate", prompts = prompts.len(), n = params.n).entered();
    let mut logits = steps.prefill(prompts, params.max_new_tokens)?;
    // Each prompt's prefill is shared by its samples.
    let rows_of: Vec<usize> = (0..prompts.len()).flat_map(|p| std::iter::repeat_n(p, params.n)).collect();
    steps.select_rows(&rows_of)?;
    let mut rows: Vec<Row> = rows_of
        .iter()
        .enumerate()
        .map(|(i, &p)| Row {
            prompt: p,
            sample: i % params.n,
            rng: sequence_rng(params.seed, first + p, i % params.n),
            tokens: vec![],
        })
        .collect();
    // Repeated rows read the logits of their prompt.
    let mut logit_row: Vec<usize> = rows_of.clone();
    let mut done: Vec<Vec<Option<Completion>>> = vec![vec![None; params.n]; prompts.len()];

    while !rows.is_empty() {
        let mut next = Vec::with_capacity(rows.len());
        let mut keep = Vec::with_capacity(rows.len());
        for (i, row) in rows.iter_mut().enumerate() {
            let tok = sample(&logits[logit_row[i]], params.sampling, &mut row.rng);
            let finish = if tokenizer.is_eos(tok) {
                Some(FinishReason::Eos)
            } else {
                row.tokens.push(tok);
                if hits_stop(tokenizer, &row.tokens, &params.stop)? {
                    Some(FinishReason::Stop)
                } else if row.tokens.len() >= params.max_new_tokens {
                    Some(FinishReason::Length)
                } else {
                    None
                }
            };
            match finish {
                Some(f) => done[row.prompt][row.sample] = Some(finish_row(tokenizer, row, f, &params.stop)?),
                None => {
                    keep.push(i);
                    next.push(tok);
                }
            }
        }
        on_tokens(rows.len());
        if keep.is_empty() {
            break;
        }
        if keep.len() < rows.len() {
            steps.select_rows(&keep)?;
            let mut kept = Vec::with_capacity(keep.len());
            for (i, row) in rows.into_iter().enumerate() {
                if keep.binary_search(&i).is_ok() {
                    kept.push(row);
                }
            }
            rows = kept;
        }
        logits = steps.step(&next)?;
        logit_row = (0..rows.len()).collect();
    }
    Ok(done.into_iter().map(|samples| samples.into_iter().map(|c| c.expect("every row finishes")).collect()).collect())
}

/// Whether the tail of the generated text contains a stop string. Only the last tokens
/// are decoded, so a step costs the same however long the answer is.
fn hits_stop(tokenizer: &Tokenizer, tokens: &[u32], stop: &[String]) -> Result<bool> {
    if stop.is_empty() {
        return Ok(false);
    }
    let longest = stop.iter().map(String::len).max().unwrap_or(0);
    let tail = &tokens[tokens.len().saturating_sub(longest + 4)..];
    let text = tokenizer.decode(tail, false)?;
    Ok(stop.iter().any(|s| !s.is_empty() && text.contains(s.as_str())))
}

fn finish_row(tokenizer: &Tokenizer, row: &Row, finish: FinishReason, stop: &[String]) -> Result<Completion> {
    let mut text = tokenizer.decode(&row.tokens, true)?;
    if finish == FinishReason::Stop
        && let Some(cut) = stop.iter().filter(|s| !s.is_empty()).filter_map(|s| text.find(s.as_str())).min()
    {
        text.truncate(cut);
    }
    Ok(Completion { text, tokens: row.tokens.clone(), finish })
}
