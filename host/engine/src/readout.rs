//! The head's outputs at one position of many sequences, batched: the next-token
//! distribution a judge reads its score from, or a reward model's scores.

use candle_core::Tensor;

use crate::error::{Error, Result, TensorContext};
use crate::model::Transformer;

/// The outputs (`model.config.head`'s size) at `position` of each `(tokens, position)`,
/// in input order. Sequences are batched by length, right-padded, with at most
/// `batch_tokens` tokens (padding included) per forward pass.
pub fn outputs_at(model: &Transformer, seqs: &[(&[u32], usize)], batch_tokens: usize) -> Result<Vec<Vec<f32>>> {
    let config = &model.config;
    for (i, (tokens, position)) in seqs.iter().enumerate() {
        if *position >= tokens.len() {
            return Err(Error::Request(format!(
                "sequence {i}: position {position} is past its {} tokens",
                tokens.len()
            )));
        }
        if tokens.len() > config.max_position_embeddings {
            return Err(Error::Request(format!(
                "sequence {i} has {} tokens, more than the model's context of {}",
                tokens.len(),
                config.max_position_embeddings
            )));
        }
        if let Some(t) = tokens.iter().find(|&&t| t as usize >= config.vocab_size) {
            return Err(Error::Request(format!(
                "sequence {i} holds token id {t}, outside the vocabulary of {}",
                config.vocab_size
            )));
        }
    }
    // Longest first, so each batch's width is its first sequence's length.
    let mut order: Vec<usize> = (0..seqs.len()).collect();
    order.sort_by_key(|&i| std::cmp::Reverse(seqs[i].0.len()));
    let mut out = vec![Vec::new(); seqs.len()];
    let mut start = 0;
    while start < order.len() {
        let width = seqs[order[start]].0.len();
        let rows = (batch_tokens / width.max(1)).clamp(1, order.len() - start);
        let batch = &order[start..start + rows];
        let mut ids = Vec::with_capacity(rows * width);
        for &i in batch {
            let tokens = seqs[i].0;
            ids.extend(tokens.iter().copied().chain(std::iter::repeat_n(0, width - tokens.len())));
        }
        let ids = Tensor::from_vec(ids, (rows, width), model.device()).step("readout ids")?;
        let positions: Vec<usize> = batch.iter().map(|&i| seqs[i].1).collect();
        let outputs = model.forward_at(&ids, &positions)?.to_vec2::<f32>().step("reading outputs")?;
        for (&i, row) in batch.iter().zip(outputs) {
            out[i] = row;
        }
        start += rows;
    }
    Ok(out)
}
