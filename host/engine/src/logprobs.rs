//! Log-probabilities of given completions: summed and per token, masked to the completion.

use candle_core::{D, DType, Device, Tensor};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result, TensorContext};
use crate::model::{Packing, Transformer};

/// A prompt and the completion to score after it.
#[derive(Debug, Clone, Copy)]
pub struct Scored<'a> {
    pub prompt: &'a [u32],
    pub completion: &'a [u32],
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SequenceLogProbs {
    /// log p(token | everything before it), one per completion token.
    pub per_token: Vec<f32>,
    pub sum: f32,
}

/// Right-padded sequences ready for one forward pass.
#[derive(Debug, Clone)]
pub struct TokenBatch {
    /// `[b, L]` prompt + completion, right-padded.
    pub ids: Tensor,
    /// First position whose next-token logits are needed (the shortest prompt − 1).
    pub from: usize,
    /// `[b, L - 1 - from]` the token each logit position must predict.
    pub targets: Tensor,
    /// `[b, L - 1 - from]` 1 on completion tokens, 0 on prompt and padding.
    pub mask: Tensor,
    pub completion_lens: Vec<usize>,
}

impl TokenBatch {
    pub fn new(seqs: &[Scored<'_>], vocab: usize, device: &Device) -> Result<Self> {
        if seqs.is_empty() {
            return Err(Error::Request("nothing to score".into()));
        }
        for (i, s) in seqs.iter().enumerate() {
            if s.prompt.is_empty() || s.completion.is_empty() {
                return Err(Error::Request(format!("sequence {i}: prompt and completion must both have tokens")));
            }
            if let Some(t) = s.prompt.iter().chain(s.completion).find(|&&t| t as usize >= vocab) {
                return Err(Error::Request(format!(
                    "sequence {i} holds token id {t}, outside the vocabulary of {vocab}"
                )));
            }
        }
        let len = seqs.iter().map(|s| s.prompt.len() + s.completion.len()).max().unwrap_or(0);
        let from = seqs.iter().map(|s| s.prompt.len() - 1).min().unwrap_or(0);
        let width = len - 1 - from;
        let (mut ids, mut targets, mut mask) = (Vec::new(), Vec::new(), Vec::new());
        for s in seqs {
            let full: Vec<u32> = s.prompt.iter().chain(s.completion).copied().collect();
            ids.extend(full.iter().copied().chain(std::iter::repeat_n(0, len - full.len())));
            for pos in from..len - 1 {
                // Position `pos` predicts token `pos + 1`.
                let target = full.get(pos + 1).copied();
                targets.push(target.unwrap_or(0));
                mask.push(if target.is_some() && pos + 1 >= s.prompt.len() { 1f32 } else { 0f32 });
            }
        }
        let b = seqs.len();
        Ok(Self {
            ids: Tensor::from_vec(ids, (b, len), device).step("batch ids")?,
            from,
            targets: Tensor::from_vec(targets, (b, width), device).step("batch targets")?,
            mask: Tensor::from_vec(mask, (b, width), device).step("batch mask")?,
            completion_lens: seqs.iter().map(|s| s.completion.len()).collect(),
        })
    }
}

/// Log-softmax over the vocabulary, in f32 at least.
fn log_softmax(logits: &Tensor) -> candle_core::Result<Tensor> {
    candle_nn::ops::log_softmax(&crate::device::widen(logits)?, D::Minus1)
}

/// `[b, width]` log-probs of the targets, zero outside the completions. Differentiable
/// when the model is.
pub fn token_logprobs(model: &Transformer, batch: &TokenBatch) -> Result<Tensor> {
    let logits = model.forward_logits_from(&batch.ids, batch.from)?;
    let width = batch.targets.dim(1).step("targets")?;
    (|| {
        let logp = log_softmax(&logits.narrow(1, 0, width)?)?;
        let picked = logp.gather(&batch.targets.unsqueeze(2)?, 2)?.squeeze(2)?;
        picked * &batch.mask
    })()
    .step("completion log-probs")
}

/// `[n]` summed log-probs of several completions of one prompt, the prompt computed once
/// (a DPO pair's chosen and rejected answers share it: a quarter less work at 128 + 128
/// tokens). Differentiable when the model is; the same values as `token_logprobs` summed.
pub fn shared_prompt_logprobs(model: &Transformer, prompt: &[u32], completions: &[&[u32]]) -> Result<Tensor> {
    let vocab = model.config.vocab_size;
    if prompt.is_empty() || completions.is_empty() || completions.iter().any(|c| c.is_empty()) {
        return Err(Error::Request("a prompt and non-empty completions are needed".into()));
    }
    if let Some(t) = prompt.iter().chain(completions.iter().copied().flatten()).find(|&&t| t as usize >= vocab) {
        return Err(Error::Request(format!("token id {t} is outside the vocabulary of {vocab}")));
    }
    let lens: Vec<usize> = completions.iter().map(|c| c.len()).collect();
    let packing = Packing::shared_prompt(prompt.len(), &lens);
    let ids: Vec<u32> = prompt.iter().chain(completions.iter().copied().flatten()).copied().collect();
    // Completion k's first token is predicted at the prompt's last position, each later
    // one at the position before it.
    let (mut rows, mut start) = (Vec::new(), prompt.len());
    for &n in &lens {
        rows.push(prompt.len() - 1);
        rows.extend(start..start + n - 1);
        start += n;
    }
    let device = model.device();
    let targets: Vec<u32> = completions.iter().copied().flatten().copied().collect();
    let logits =
        model.forward_packed(&Tensor::from_vec(ids, (1, start), device).step("packed ids")?, &packing, &rows)?;
    (|| {
        let logp = log_softmax(&logits)?;
        let picked = logp.gather(&Tensor::from_vec(targets, (rows.len(), 1), device)?, 1)?.squeeze(1)?;
        let mut at = 0;
        let sums = lens
            .iter()
            .map(|&n| {
                let sum = picked.narrow(0, at, n)?.sum(0);
                at += n;
                sum
            })
            .collect::<candle_core::Result<Vec<_>>>()?;
        Tensor::stack(&sums, 0)
    })()
    .step("completion log-probs")
}

/// Score many (prompt, completion) pairs without gradients, in batches of at most
/// `max_batch_tokens` padded tokens.
pub fn sequence_logprobs(
    model: &Transformer,
    seqs: &[Scored<'_>],
    max_batch_tokens: usize,
) -> Result<Vec<SequenceLogProbs>> {
    let _span = tracing::debug_span!("log-probs", sequences = seqs.len()).entered();
    // Similar lengths together waste less padding; results go back in input order.
    let mut order: Vec<usize> = (0..seqs.len()).collect();
    order.sort_by_key(|&i| seqs[i].prompt.len() + seqs[i].completion.len());
    let mut out = vec![None; seqs.len()];
    let mut start = 0;
    while start < order.len() {
        let mut end = start + 1;
        while end < order.len() {
            let longest = seqs[order[end]].prompt.len() + seqs[order[end]].completion.len();
            if longest * (end + 1 - start) > max_batch_tokens {
                break;
            }
            end += 1;
        }
        let group: Vec<Scored<'_>> = order[start..end].iter().map(|&i| seqs[i]).collect();
        let batch = TokenBatch::new(&group, model.config.vocab_size, model.device())?;
        let lp = token_logprobs(model, &batch)?.to_dtype(DType::F32).step("log-probs")?;
        let rows = lp.to_vec2::<f32>().step("reading log-probs")?;
        let mask = batch.mask.to_vec2::<f32>().step("reading mask")?;
        for (k, &i) in order[start..end].iter().enumerate() {
            let per_token: Vec<f32> =
                rows[k].iter().zip(&mask[k]).filter(|(_, m)| **m > 0.0).map(|(l, _)| *l).collect();
            let sum = per_token.iter().map(|&x| x as f64).sum::<f64>() as f32;
            out[i] = Some(SequenceLogProbs { per_token, sum });
        }
        start = end;
    }
    Ok(out.into_iter().map(|o| o.expect("every sequence scored")).collect())
}
