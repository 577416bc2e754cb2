//! Generation on the CPU without candle's graph: the same forward pass as
//! [`Transformer`], for quantized weights (eva's 8-bit [`Int8Matrix`], or a GGUF file's
//! own quantization through candle's quantized kernels), written as plain loops over one
//! step's tokens.
//!
//! A decode step of a small model is hundreds of tiny operations; through candle each
//! allocates a tensor and dispatches a kernel, which cost more than the arithmetic
//! (measured: 10 ms of a 18 ms SmolLM2 step). Here a step is one pass over the layers
//! with a handful of buffers. Every row of the batch has its own cache and length, so
//! prompts need no padding, and prefill and decode are the same call: each row feeds
//! any number of tokens.
//!
//! A row computes the same numbers in any batch: its positions start at 0 whatever the
//! other rows' lengths, attention reads only its own cache, and every projection computes
//! a row from that row alone. This matters most for quantized weights: activations are
//! rounded to 8 bits per block, so the last-bit differences that batching makes in an
//! f32 computation (left padding shifting rope positions, sums reordered by a longer
//! padded row) flip roundings and grow into different greedy tokens.
//! `tests/tiny_model.rs` checks the logits against [`Transformer`] with the same weights,
//! for every family, and that a row's logits do not depend on the rest of its batch.

use std::sync::Arc;

use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::{CpuStorage, CustomOp1, Layout, Storage, Tensor};
use rayon::prelude::*;

use crate::config::{Activation, Head, ModelConfig, RopeScaling};
use crate::int8::Int8Matrix;
use crate::model::{InferenceWeights, Linear, Transformer};

/// A projection: its weights and an optional f32 bias.
#[derive(Debug, Clone)]
struct Projection {
    w: ProjectionWeights,
    bias: Option<Vec<f32>>,
}

/// What a projection computes with. Whatever the kind, a row's output depends on that row
/// alone, never on the other rows of the call: a row's logits must not depend on which
/// prompts share its batch.
#[derive(Debug, Clone)]
enum ProjectionWeights {
    /// eva's 8-bit weights ([`WeightFormat::Q8_0`](crate::WeightFormat::Q8_0)).
    Int8(Arc<Int8Matrix>),
    /// A GGUF file's own quantization ([`WeightFormat::Native`](crate::WeightFormat::Native)),
    /// computed by candle's CPU kernels.
    Quantized(Arc<QTensor>),
    /// f32 `[out, in]`, row-major: a matrix the file keeps unquantized.
    Dense { w: Vec<f32>, cols: usize },
}
#[derive(Debug, Clone)]
struct DecodeLayer {
    input_norm: Vec<f32>,
    q: Projection,
    k: Projection,
    v: Projection,
    o: Projection,
    q_norm: Option<Vec<f32>>,
    k_norm: Option<Vec<f32>>,
    attn_out_norm: Option<Vec<f32>>,
    mlp_norm: Vec<f32>,
    gate: Projection,
    up: Projection,
    down: Projection,
    mlp_out_norm: Option<Vec<f32>>,
    sliding: bool,
}

/// Rotary frequencies (inverse) and the factor cos and sin are multiplied by.
#[derive(Debug, Clone)]
struct Rope {
    inv: Vec<f32>,
    factor: f32,
}

/// A language model's forward pass over 8-bit weights, for generation.
#[derive(Debug, Clone)]
pub struct Int8Decoder {
    config: ModelConfig,
    /// The f32 embedding table (shared with the [`Transformer`]'s).
    embed: Tensor,
    layers: Vec<DecodeLayer>,
    norm: Vec<f32>,
    head: Projection,
    rope: Rope,
    local_rope: Option<Rope>,
}

/// Keys and values of every row, each with its own length.
#[derive(Debug, Clone, Default)]
pub struct DecodeCache {
    rows: Vec<RowCache>,
}

#[derive(Debug, Clone, Default)]
struct RowCache {
    len: usize,
    /// Per layer and key/value head (`layer × kv_heads + head`), `[position][head_dim]`:
    /// a head's keys are contiguous, as attention reads them.
    keys: Vec<Vec<f32>>,
    values: Vec<Vec<f32>>,
}

impl DecodeCache {
    /// `rows` empty rows for `decoder`.
    pub fn new(decoder: &Int8Decoder, rows: usize) -> Self {
        let layers = decoder.layers.len();
        let heads = layers * decoder.config.num_kv_heads;
        let row = RowCache { len: 0, keys: vec![vec![]; heads], values: vec![vec![]; heads] };
        Self { rows: vec![row; rows] }
    }

    pub fn rows(&self) -> usize {
        self.rows.len()
    }

    /// Keep (and reorder, or repeat) rows: `rows[i]` is the old row that becomes row `i`.
    pub fn select_rows(&mut self, rows: &[usize]) {
        let mut old: Vec<Option<RowCache>> = std::mem::take(&mut self.rows).into_iter().map(Some).collect();
        let mut uses = vec![0usize; old.len()];
        for &r in rows {
            uses[r] += 1;
        }
        // The last use of a row takes it; earlier ones copy it.
        self.rows = rows
            .iter()
            .map(|&r| {
                uses[r] -= 1;
                match uses[r] {
                    0 => old[r].take().expect("a row is taken once"),
                    _ => old[r].clone().expect("a row is copied before it is taken"),
                }
            })
            .collect();
    }
}

fn to_vec(t: &Tensor) -> candle_core::Result<Vec<f32>> {
    t.flatten_all()?.to_vec1::<f32>()
}

impl Projection {
    /// The projection of `linear`, when it is one the decoder computes: no adapter.
    fn of(linear: &Linear) -> Option<candle_core::Result<Self>> {
        let (w, bias) = linear.inference_weights()?;
        let w = match w {
            InferenceWeights::Int8(m) => Ok(ProjectionWeights::Int8(m.clone())),
            InferenceWeights::Quantized(q) => Ok(ProjectionWeights::Quantized(q.clone())),
            InferenceWeights::Dense(w) => w.dims2().and_then(|(_, cols)| {
                let w = w.to_dtype(candle_core::DType::F32).and_then(|w| to_vec(&w))?;
                Ok(ProjectionWeights::Dense { w, cols })
            }),
        };
        Some(w.and_then(|w| Ok(Self { w, bias: bias.map(to_vec).transpose()? })))
    }

    /// `x: [n, in]` → `[n, out]`.
    fn forward(&self, x: &[f32], n: usize) -> candle_core::Result<Vec<f32>> {
        let mut y = match &self.w {
            ProjectionWeights::Int8(w) => w.matmul(x, n),
            ProjectionWeights::Quantized(q) => quantized_matmul(q, x, n)?,
            ProjectionWeights::Dense { w, cols } => dense_matmul(w, *cols, x, n),
        };
        if let Some(b) = &self.bias {
            for row in y.chunks_mut(b.len()) {
                row.iter_mut().zip(b).for_each(|(y, b)| *y += b);
            }
        }
        Ok(y)
    }
}

/// `x W^T` with candle's CPU kernel for `q`'s quantization: activations quantized per row
/// to the kernel's 8-bit block type (Q8_1 for Q4_1, Q8_K for k-quants...), integer dot
/// products per block, as llama.cpp's CPU backend does.
///
/// candle 0.11 chooses some kernels by the number of rows of the call, and those compute
/// a row differently (`repack_x86::select`: Q6_K runs the compact per-block kernel for one
/// row and repacked 16-row tiles for more; Q4_K moves to AMX tiles from 32 rows; on
/// aarch64 the repacked kernels serve one row, or multiples of four with the rest as
/// single rows). Those types are called with a fixed number of rows, so that a row's
/// result never depends on how many rows share the call.
fn quantized_matmul(q: &QTensor, x: &[f32], n: usize) -> candle_core::Result<Vec<f32>> {
    let (out, cols) = q.shape().dims2()?;
    if x.len() != n * cols {
        candle_core::bail!("quantized matmul: {n} inputs of {cols} values expected, {} values given", x.len());
    }
    let per_call = rows_per_call(q.dtype()).min(n.max(1));
    let mut y = Vec::with_capacity(n * out);
    for chunk in x.chunks(per_call * cols) {
        let m = chunk.len() / cols;
        let layout = Layout::contiguous((m, cols));
        let (storage, _) = q.cpu_fwd(&CpuStorage::F32(chunk.to_vec()), &layout)?;
        match storage {
            CpuStorage::F32(v) => y.extend_from_slice(&v),
            _ => candle_core::bail!("quantized matmul: f32 inputs gave another dtype"),
        }
    }
    Ok(y)
}

/// How many rows one call of candle's kernel for `dtype` may take with every row computed
/// the same way (see [`quantized_matmul`]).
fn rows_per_call(dtype: GgmlDType) -> usize {
    if cfg!(target_arch = "x86_64") {
        match dtype {
            GgmlDType::Q6K => 1,
            GgmlDType::Q4K => 31,
            _ => usize::MAX,
        }
    } else if cfg!(target_arch = "aarch64") {
        match dtype {
            GgmlDType::Q4_0 | GgmlDType::Q4K | GgmlDType::Q5K | GgmlDType::Q6K | GgmlDType::Q8_0 => 1,
            _ => usize::MAX,
        }
    } else {
        usize::MAX
    }
}

/// `x W^T` in f32, one dot product per (input, output), so that a row's result is the
/// same in any batch.
fn dense_matmul(w: &[f32], cols: usize, x: &[f32], n: usize) -> Vec<f32> {
    const CHUNK: usize = 64;
    let rows = w.len() / cols;
    let mut y = vec![0f32; n * rows];
    let work = |i: usize, c: usize, y: &mut [f32]| {
        for (o, y) in y.iter_mut().enumerate() {
            *y = Scalar::dot(&x[i * cols..][..cols], &w[(c * CHUNK + o) * cols..][..cols]);
        }
    };
    if rayon::current_num_threads() > 1 && n * rows * cols >= 1 << 20 {
        y.par_chunks_mut(rows).enumerate().for_each(|(i, y)| {
            y.par_chunks_mut(CHUNK).enumerate().for_each(|(c, y)| work(i, c, y));
        });
    } else {
        for (i, y) in y.chunks_mut(rows).enumerate() {
            y.chunks_mut(CHUNK).enumerate().for_each(|(c, y)| work(i, c, y));
        }
    }
    y
}

impl Rope {
    fn new(config: &ModelConfig, theta: f64, scaling: &RopeScaling) -> Self {
        let (inv, factor) = scaling.frequencies(theta, config.head_dim);
        Self { inv: inv.into_iter().map(|f| f as f32).collect(), factor: factor as f32 }
    }

    /// Rotate each head of `x` (`[heads × head_dim]`) to `position`, halves split as
    /// transformers does (`rotate_half`).
    fn apply(&self, x: &mut [f32], head_dim: usize, position: usize) {
        let half = head_dim / 2;
        let angles: Vec<(f32, f32)> = self
            .inv
            .iter()
            .map(|&f| {
                let a = position as f32 * f;
                (a.cos() * self.factor, a.sin() * self.factor)
            })
            .collect();
        for head in x.chunks_mut(head_dim) {
            for (i, &(cos, sin)) in angles.iter().enumerate() {
                let (a, b) = (head[i], head[i + half]);
                head[i] = a * cos - b * sin;
                head[i + half] = b * cos + a * sin;
            }
        }
    }
}

impl Int8Decoder {
    /// The decoder of `model`, when its projections are quantized (eva's 8-bit weights, or
    /// a GGUF file's own quantization; any the file keeps in f32 or f16 are computed in
    /// f32), none has an adapter, it ends in next-token logits and its activation is one
    /// this decoder has. A model whose projections are all plain f32 has none: the
    /// [`Transformer`] computes it.
    pub fn from_transformer(model: &Transformer) -> Option<candle_core::Result<Self>> {
        let c = &model.config;
        if c.head != Head::LanguageModel || c.hidden_act == Activation::Gelu {
            return None;
        }
        let linears = model
            .layers
            .iter()
            .flat_map(|l| [&l.attn.q, &l.attn.k, &l.attn.v, &l.attn.o, &l.mlp.gate, &l.mlp.up, &l.mlp.down])
            .chain([&model.head]);
        let mut quantized = false;
        for linear in linears {
            match linear.inference_weights()? {
                (InferenceWeights::Dense(_), _) => {}
                _ => quantized = true,
            }
        }
        if !quantized {
            return None;
        }
        let offset = c.architecture.norm_offset() as f32;
        // Gemma's `1 + w` folded in once.
        let norm = |t: &Tensor| to_vec(t).map(|w| w.into_iter().map(|w| w + offset).collect::<Vec<f32>>());
        let opt_norm = |t: &Option<Tensor>| t.as_ref().map(norm).transpose();
        let mut layers = Vec::with_capacity(model.layers.len());
        for l in &model.layers {
            let projections =
                [&l.attn.q, &l.attn.k, &l.attn.v, &l.attn.o, &l.mlp.gate, &l.mlp.up, &l.mlp.down].map(Projection::of);
            if projections.iter().any(Option::is_none) {
                return None;
            }
            let build = || -> candle_core::Result<DecodeLayer> {
                let [q, k, v, o, gate, up, down] = projections.map(|p| p.expect("checked above"));
                Ok(DecodeLayer {
                    input_norm: norm(&l.input_norm)?,
                    q: q?,
                    k: k?,
                    v: v?,
                    o: o?,
                    q_norm: opt_norm(&l.attn.q_norm)?,
                    k_norm: opt_norm(&l.attn.k_norm)?,
                    attn_out_norm: opt_norm(&l.attn_out_norm)?,
                    mlp_norm: norm(&l.mlp_norm)?,
                    gate: gate?,
                    up: up?,
                    down: down?,
                    mlp_out_norm: opt_norm(&l.mlp_out_norm)?,
                    sliding: l.sliding,
                })
            };
            match build() {
                Ok(layer) => layers.push(layer),
                Err(e) => return Some(Err(e)),
            }
        }
        let head = Projection::of(&model.head)?;
        let build = || -> candle_core::Result<Self> {
            Ok(Self {
                config: c.clone(),
                embed: model.embed.clone(),
                layers,
                norm: norm(&model.norm)?,
                head: head?,
                rope: Rope::new(c, c.rope_theta, &c.rope_scaling),
                local_rope: c.rope_local_theta.map(|theta| Rope::new(c, theta, &RopeScaling::Default)),
            })
        };
        Some(build())
    }

    /// Feed `tokens[r]` to row `r` of the cache (a row may get none); returns, for each
    /// row fed, the logits after its last token.
    pub fn step(&self, cache: &mut DecodeCache, tokens: &[&[u32]]) -> candle_core::Result<Vec<Vec<f32>>> {
        let c = &self.config;
        if tokens.len() != cache.rows() {
            candle_core::bail!("{} token lists for a cache of {} rows", tokens.len(), cache.rows());
        }
        // Every token of the step: its row and position.
        let mut slots = Vec::new();
        for (r, toks) in tokens.iter().enumerate() {
            let start = cache.rows[r].len;
            if start + toks.len() > c.max_position_embeddings {
                candle_core::bail!("{} positions exceed the model's {}", start + toks.len(), c.max_position_embeddings);
            }
            slots.extend((0..toks.len()).map(|i| (r, start + i)));
        }
        let flat: Vec<u32> = tokens.iter().flat_map(|t| t.iter().copied()).collect();
        let n = flat.len();
        let h = c.hidden_size;
        let mut x = self.embed_rows(&flat)?;
        if c.architecture.is_gemma() {
            let scale = (h as f64).sqrt() as f32;
            x.iter_mut().for_each(|v| *v *= scale);
        }
        for (li, layer) in self.layers.iter().enumerate() {
            let normed = self.rms_norm_rows(&x, &layer.input_norm);
            let attn = self.attention(li, layer, &normed, n, &slots, cache)?;
            let mut y = layer.o.forward(&attn, n)?;
            if let Some(w) = &layer.attn_out_norm {
                y = self.rms_norm_rows(&y, w);
            }
            x.iter_mut().zip(&y).for_each(|(x, y)| *x += y);
            let normed = self.rms_norm_rows(&x, &layer.mlp_norm);
            let mut gate = layer.gate.forward(&normed, n)?;
            let up = layer.up.forward(&normed, n)?;
            for (g, u) in gate.iter_mut().zip(&up) {
                *g = activate(c.hidden_act, *g) * u;
            }
            let mut y = layer.down.forward(&gate, n)?;
            if let Some(w) = &layer.mlp_out_norm {
                y = self.rms_norm_rows(&y, w);
            }
            x.iter_mut().zip(&y).for_each(|(x, y)| *x += y);
        }
        for (r, toks) in tokens.iter().enumerate() {
            cache.rows[r].len += toks.len();
        }
        // The last token of every row fed.
        let mut last = Vec::new();
        let mut end = 0;
        for toks in tokens.iter().filter(|t| !t.is_empty()) {
            end += toks.len();
            last.extend_from_slice(&x[(end - 1) * h..end * h]);
        }
        let rows = last.len() / h;
        let normed = self.rms_norm_rows(&last, &self.norm);
        let mut logits = self.head.forward(&normed, rows)?;
        if let Some(cap) = c.final_logit_softcapping {
            let cap = cap as f32;
            logits.iter_mut().for_each(|v| *v = cap * (*v / cap).tanh());
        }
        Ok(logits.chunks(c.vocab_size).map(<[f32]>::to_vec).collect())
    }

    fn embed_rows(&self, ids: &[u32]) -> candle_core::Result<Vec<f32>> {
        let (h, vocab) = (self.config.hidden_size, self.config.vocab_size);
        if let Some(&bad) = ids.iter().find(|&&t| t as usize >= vocab) {
            candle_core::bail!("token id {bad} is outside the vocabulary of {vocab}");
        }
        let (storage, layout) = self.embed.storage_and_layout();
        let table = match (&*storage, layout.contiguous_offsets()) {
            (Storage::Cpu(cpu), Some((start, end))) => &cpu.as_slice::<f32>()?[start..end],
            _ => candle_core::bail!("the embedding table is not a contiguous f32 CPU tensor"),
        };
        Ok(ids.iter().flat_map(|&t| table[t as usize * h..(t as usize + 1) * h].iter().copied()).collect())
    }

    /// RMS-normalise each row of `x` (rows of `w.len()` values), as candle's fused kernel.
    fn rms_norm_rows(&self, x: &[f32], w: &[f32]) -> Vec<f32> {
        let eps = self.config.rms_norm_eps as f32;
        let mut out = x.to_vec();
        for row in out.chunks_mut(w.len()) {
            let sum2: f32 = row.iter().map(|v| v * v).sum();
            let m = (sum2 / w.len() as f32 + eps).sqrt();
            row.iter_mut().zip(w).for_each(|(v, w)| *v = *v / m * w);
        }
        out
    }

    /// Self-attention of layer `li` for every token of the step; writes the step's keys
    /// and values into the cache first (a token sees its own row's earlier tokens).
    fn attention(
        &self,
        li: usize,
        layer: &DecodeLayer,
        x: &[f32],
        n: usize,
        slots: &[(usize, usize)],
        cache: &mut DecodeCache,
    ) -> candle_core::Result<Vec<f32>> {
        let c = &self.config;
        let (hd, nh, nkv) = (c.head_dim, c.num_heads, c.num_kv_heads);
        let mut q = layer.q.forward(x, n)?;
        let mut k = layer.k.forward(x, n)?;
        let v = layer.v.forward(x, n)?;
        if let (Some(qn), Some(kn)) = (&layer.q_norm, &layer.k_norm) {
            q = self.rms_norm_rows(&q, qn);
            k = self.rms_norm_rows(&k, kn);
        }
        let rope = match layer.sliding {
            true => self.local_rope.as_ref().unwrap_or(&self.rope),
            false => &self.rope,
        };
        for (t, &(r, pos)) in slots.iter().enumerate() {
            rope.apply(&mut q[t * nh * hd..(t + 1) * nh * hd], hd, pos);
            rope.apply(&mut k[t * nkv * hd..(t + 1) * nkv * hd], hd, pos);
            let row = &mut cache.rows[r];
            for g in 0..nkv {
                row.keys[li * nkv + g].extend_from_slice(&k[(t * nkv + g) * hd..][..hd]);
                row.values[li * nkv + g].extend_from_slice(&v[(t * nkv + g) * hd..][..hd]);
            }
        }
        let window = match (layer.sliding, c.sliding_window) {
            (true, Some(w)) => w,
            _ => usize::MAX,
        };
        let shape = AttentionShape {
            head_dim: hd,
            heads: nh,
            kv_heads: nkv,
            window,
            scale: (1.0 / c.query_pre_attn_scalar.unwrap_or(hd as f64).sqrt()) as f32,
            cap: c.attn_logit_softcapping.map(|c| c as f32),
        };
        let mut out = vec![0f32; n * nh * hd];
        let one = |(t, out): (usize, &mut [f32])| {
            let (r, pos) = slots[t];
            let heads = li * nkv..(li + 1) * nkv;
            let kv = Kv { keys: &cache.rows[r].keys[heads.clone()], values: &cache.rows[r].values[heads] };
            attend(&shape, &q[t * nh * hd..][..nh * hd], kv, pos, out);
        };
        // Tokens are independent here; a single one is not worth a hand-off to the pool.
        if n > 1 && rayon::current_num_threads() > 1 {
            out.par_chunks_mut(nh * hd).enumerate().for_each(one);
        } else {
            out.chunks_mut(nh * hd).enumerate().for_each(one);
        }
        Ok(out)
    }
}

/// One layer's cached keys and values of a row, per key/value head.
#[derive(Clone, Copy)]
struct Kv<'a> {
    keys: &'a [Vec<f32>],
    values: &'a [Vec<f32>],
}

/// What one token's attention over its cached row needs to know.
struct AttentionShape {
    head_dim: usize,
    heads: usize,
    kv_heads: usize,
    window: usize,
    scale: f32,
    cap: Option<f32>,
}

/// One token's attention at `pos` over `keys`/`values` (per key/value head,
/// `[position][head_dim]`)
/// for every head of `q`, into `out`. With AVX-512 and heads of a multiple of 16 values
/// its two inner products are explicit vector code (the crate targets baseline x86-64).
fn attend(shape: &AttentionShape, q: &[f32], kv: Kv<'_>, pos: usize, out: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if shape.head_dim.is_multiple_of(16) && std::arch::is_x86_feature_detected!("avx512f") {
        // SAFETY: the CPU has the features the function is compiled for.
        return unsafe { avx512::attend(shape, q, kv, pos, out) };
    }
    attend_with::<Scalar>(shape, q, kv, pos, out)
}

/// The two inner products of attention.
trait Lanes {
    /// `Σ a_i b_i`.
    fn dot(a: &[f32], b: &[f32]) -> f32;
    /// `o += Σ_k p_k v_k` over four vectors.
    fn axpy4(o: &mut [f32], p: [f32; 4], v: [&[f32]; 4]);
}

struct Scalar;

impl Lanes for Scalar {
    /// Eight running sums, so that it vectorises.
    fn dot(a: &[f32], b: &[f32]) -> f32 {
        let mut acc = [0f32; 8];
        let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
        let tail: f32 = ca.remainder().iter().zip(cb.remainder()).map(|(x, y)| x * y).sum();
        for (x, y) in ca.zip(cb) {
            for i in 0..8 {
                acc[i] += x[i] * y[i];
            }
        }
        acc.iter().sum::<f32>() + tail
    }

    fn axpy4(o: &mut [f32], p: [f32; 4], v: [&[f32]; 4]) {
        for (d, o) in o.iter_mut().enumerate() {
            *o += p[0] * v[0][d] + p[1] * v[1][d] + p[2] * v[2][d] + p[3] * v[3][d];
        }
    }
}

/// Heads that share a key/value head are computed together, so that each cached key and
/// value is read from memory once per token rather than once per head.
#[inline(always)]
fn attend_with<L: Lanes>(shape: &AttentionShape, q: &[f32], kv: Kv<'_>, pos: usize, out: &mut [f32]) {
    let AttentionShape { head_dim: hd, heads, kv_heads, window, scale, cap } = *shape;
    let rep = heads / kv_heads;
    let first = (pos + 1).saturating_sub(window);
    let len = pos + 1 - first;
    // Per head of the group, its scores over the positions.
    let mut scores = vec![0f32; rep * len];
    for g in 0..kv_heads {
        let (keys, values) = (&kv.keys[g], &kv.values[g]);
        let at = |j: usize| j * hd;
        let heads_of_group = g * rep..(g + 1) * rep;
        for (t, j) in (first..=pos).enumerate() {
            let key = &keys[at(j)..][..hd];
            for (h, head) in heads_of_group.clone().enumerate() {
                let mut v = L::dot(&q[head * hd..][..hd], key) * scale;
                if let Some(cap) = cap {
                    v = cap * (v / cap).tanh();
                }
                scores[h * len + t] = v;
            }
        }
        for row in scores.chunks_mut(len) {
            let max = row.iter().fold(f32::NEG_INFINITY, |m, &s| m.max(s));
            let mut sum = 0f32;
            for s in row.iter_mut() {
                *s = (*s - max).exp();
                sum += *s;
            }
            for s in row.iter_mut() {
                *s /= sum;
            }
        }
        // Four positions per pass over each head's output; the tail padded with zero
        // weights.
        for t in (0..len).step_by(4) {
            let v = [0, 1, 2, 3].map(|k| &values[at(first + (t + k).min(len - 1))..][..hd]);
            for (h, head) in heads_of_group.clone().enumerate() {
                let p = [0, 1, 2, 3].map(|k| if t + k < len { scores[h * len + t + k] } else { 0.0 });
                L::axpy4(&mut out[head * hd..][..hd], p, v);
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod avx512 {
    use std::arch::x86_64::*;

    use super::{AttentionShape, Kv, Lanes, attend_with};

    struct Avx512;

    impl Lanes for Avx512 {
        #[inline(always)]
        fn dot(a: &[f32], b: &[f32]) -> f32 {
            let len = a.len();
            assert!(len == b.len() && len.is_multiple_of(16) && len > 0);
            // SAFETY: `attend` runs only with AVX-512 F; loads stay inside the slices.
            unsafe {
                let (a, b) = (a.as_ptr(), b.as_ptr());
                let mut acc = _mm512_mul_ps(_mm512_loadu_ps(a), _mm512_loadu_ps(b));
                for i in (16..len).step_by(16) {
                    acc = _mm512_fmadd_ps(_mm512_loadu_ps(a.add(i)), _mm512_loadu_ps(b.add(i)), acc);
                }
                _mm512_reduce_add_ps(acc)
            }
        }

        #[inline(always)]
        fn axpy4(o: &mut [f32], p: [f32; 4], v: [&[f32]; 4]) {
            assert!(o.len().is_multiple_of(16) && v.iter().all(|v| v.len() == o.len()));
            // SAFETY: as above.
            unsafe {
                let p = p.map(|p| _mm512_set1_ps(p));
                for i in (0..o.len()).step_by(16) {
                    let mut acc = _mm512_loadu_ps(o.as_ptr().add(i));
                    for k in 0..4 {
                        acc = _mm512_fmadd_ps(p[k], _mm512_loadu_ps(v[k].as_ptr().add(i)), acc);
                    }
                    _mm512_storeu_ps(o.as_mut_ptr().add(i), acc);
                }
            }
        }
    }

    /// # Safety
    /// The CPU has AVX-512 F; `shape.head_dim` is a multiple of 16.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn attend(shape: &AttentionShape, q: &[f32], kv: Kv<'_>, pos: usize, out: &mut [f32]) {
        attend_with::<Avx512>(shape, q, kv, pos, out)
    }
}

fn activate(act: Activation, x: f32) -> f32 {
    match act {
        Activation::Silu => x / (1.0 + (-x).exp()),
        // The tanh approximation, as candle's `gelu` and transformers' `gelu_pytorch_tanh`.
        Activation::GeluTanh => {
            0.5 * x * (1.0 + ((2.0 / std::f32::consts::PI).sqrt() * (x + 0.044715 * x * x * x)).tanh())
        }
        Activation::Gelu => unreachable!("the decoder is not built for exact GELU"),
    }
}
