//! One forward pass for the llama, qwen2, qwen3 and gemma families.
//!
//! The same code serves inference and training. `Kernels::Fused` uses candle's fast
//! rope/rms-norm/softmax kernels, which have **no backward** (candle silently drops their
//! gradients); `Kernels::Differentiable` composes them from basic ops so that every weight
//! gets its gradient. Tests check that both agree.

pub mod linear;

use candle_core::{D, DType, Device, Tensor};
use candle_nn::{ops, rotary_emb};

use crate::config::{Activation, Architecture, LayerAttention, ModelConfig};
use crate::error::{Result, TensorContext};
pub use linear::{InferenceWeights, Linear, Lora};

/// Decides what each projection becomes: `(name, weight, bias) -> Linear`.
pub type MakeLinear<'a> = dyn FnMut(&str, &Tensor, Option<&Tensor>) -> Result<Linear> + 'a;

/// Which implementation of rope, rms-norm and softmax the forward pass uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kernels {
    Fused,
    Differentiable,
}

#[derive(Debug, Clone)]
pub struct Attention {
    pub q: Linear,
    pub k: Linear,
    pub v: Linear,
    pub o: Linear,
    /// qwen3's and gemma3's per-head RMS norms on queries and keys.
    pub q_norm: Option<Tensor>,
    pub k_norm: Option<Tensor>,
}

#[derive(Debug, Clone)]
pub struct Mlp {
    pub gate: Linear,
    pub up: Linear,
    pub down: Linear,
}

#[derive(Debug, Clone)]
pub struct Layer {
    pub input_norm: Tensor,
    pub attn: Attention,
    /// gemma2/3: normalises attention's output before the residual add.
    pub attn_out_norm: Option<Tensor>,
    /// Before the MLP: `post_attention_layernorm`, or gemma2/3's `pre_feedforward_layernorm`.
    pub mlp_norm: Tensor,
    pub mlp: Mlp,
    /// gemma2/3: normalises the MLP's output before the residual add.
    pub mlp_out_norm: Option<Tensor>,
    /// Attends only to the last `sliding_window` positions, with the local rope.
    pub sliding: bool,
}

/// cos and sin of every position's rotary angles, `[positions, head_dim / 2]`.
#[derive(Debug, Clone)]
struct RopeTables {
    cos: Tensor,
    sin: Tensor,
}

#[derive(Debug, Clone)]
pub struct Transformer {
    pub config: ModelConfig,
    pub embed: Tensor,
    pub layers: Vec<Layer>,
    pub norm: Tensor,
    /// The output projection: next-token logits, or a classifier's scores.
    pub head: Linear,
    pub kernels: Kernels,
    rope: RopeTables,
    /// Sliding-window layers' rope where it differs (gemma3).
    local_rope: Option<RopeTables>,
}

/// The key/value cache of a batch: preallocated, written in place as tokens arrive.
pub struct KvCache {
    layers: Vec<(Tensor, Tensor)>,
    /// Tokens held per row (the same for every row: prompts are left-padded).
    len: usize,
    capacity: usize,
    /// Per row, how many leading positions are padding and must never be attended to.
    pub pad: Vec<usize>,
}

impl KvCache {
    /// An f32 cache.
    pub fn new(config: &ModelConfig, batch: usize, capacity: usize, pad: Vec<usize>, device: &Device) -> Result<Self> {
        Self::with_dtype(config, batch, capacity, pad, DType::F32, device)
    }

    /// A cache whose keys and values are kept in `dtype`, the model's own.
    pub fn with_dtype(
        config: &ModelConfig,
        batch: usize,
        capacity: usize,
        pad: Vec<usize>,
        dtype: DType,
        device: &Device,
    ) -> Result<Self> {
        let shape = (batch, config.num_kv_heads, capacity, config.head_dim);
        let layers = (0..config.num_layers)
            .map(|_| Ok((Tensor::zeros(shape, dtype, device)?, Tensor::zeros(shape, dtype, device)?)))
            .collect::<candle_core::Result<Vec<_>>>()
            .step("allocating the KV cache")?;
        Ok(Self { layers, len: 0, capacity, pad })
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn batch(&self) -> usize {
        self.pad.len()
    }

    /// Keep (and reorder, or repeat) rows: `rows[i]` is the old row that becomes row `i`.
    /// Used to share one prompt's prefill among its samples and to drop finished rows.
    pub fn select_rows(&mut self, rows: &[usize]) -> Result<()> {
        let device = self.layers[0].0.device().clone();
        let idx = Tensor::from_iter(rows.iter().map(|&r| r as u32), &device).step("cache rows")?;
        for (k, v) in &mut self.layers {
            *k = k.index_select(&idx, 0).step("selecting cache rows")?;
            *v = v.index_select(&idx, 0).step("selecting cache rows")?;
        }
        self.pad = rows.iter().map(|&r| self.pad[r]).collect();
        Ok(())
    }
}

/// Which positions' outputs a cache-less forward computes.
#[derive(Clone, Copy)]
enum Readout<'a> {
    /// Every position from this one on.
    From(usize),
    /// One position per row.
    At(&'a [usize]),
    /// These positions of a single packed row.
    Rows(&'a [usize]),
}

/// Several sequences packed into one row: each token has its own rope position and
/// segment, and sees the earlier tokens of its own segment and of the segment it
/// continues. A prompt shared by several completions is computed once this way.
#[derive(Debug, Clone, PartialEq)]
pub struct Packing {
    /// The rope position of every token (a completion's restart after its prompt's).
    pub positions: Vec<u32>,
    /// Per token, its segment; `parent[segment]` is the segment it continues, if any.
    pub segments: Vec<usize>,
    pub parent: Vec<Option<usize>>,
}

impl Packing {
    /// `prompt` once, then each completion after it.
    pub fn shared_prompt(prompt_len: usize, completion_lens: &[usize]) -> Self {
        let mut positions: Vec<u32> = (0..prompt_len as u32).collect();
        let mut segments = vec![0; prompt_len];
        for (i, &n) in completion_lens.iter().enumerate() {
            positions.extend((prompt_len..prompt_len + n).map(|p| p as u32));
            segments.extend(std::iter::repeat_n(i + 1, n));
        }
        let parent = std::iter::once(None).chain(completion_lens.iter().map(|_| Some(0))).collect();
        Self { positions, segments, parent }
    }

    /// May token `i` attend to token `j`?
    fn sees(&self, i: usize, j: usize, window: usize) -> bool {
        let (si, sj) = (self.segments[i], self.segments[j]);
        let related = if si == sj { j <= i } else { self.parent[si] == Some(sj) };
        related && self.positions[i].saturating_sub(self.positions[j]) < window as u32
    }
}

impl Transformer {
    /// Assemble a model from its parts; `make_linear(name, weight, bias)` decides what kind
    /// of linear layer each projection becomes (dense, frozen, quantized, with LoRA...).
    pub fn build(
        config: &ModelConfig,
        weights: &crate::weights::Weights,
        kernels: Kernels,
        make_linear: &mut MakeLinear<'_>,
    ) -> Result<Self> {
        let c = config;
        let (h, q_out, kv_out) = (c.hidden_size, c.num_heads * c.head_dim, c.num_kv_heads * c.head_dim);
        let mut linear = |name: String, shape: &[usize], bias: bool| -> Result<Linear> {
            let w = weights.expect(&format!("{name}.weight"), shape)?;
            let b = if bias { Some(weights.expect(&format!("{name}.bias"), &shape[..1])?) } else { None };
            make_linear(&name, w, b)
        };
        let mut layers = Vec::with_capacity(c.num_layers);
        for i in 0..c.num_layers {
            let p = format!("model.layers.{i}");
            let qkv_bias = c.attention_bias;
            let o_bias = c.attention_bias && c.architecture == Architecture::Llama;
            let norm = |n: &str, size| weights.expect(&format!("{p}.{n}.weight"), &[size]).cloned();
            let sandwich = c.architecture.sandwich_norms();
            let attn = Attention {
                q: linear(format!("{p}.self_attn.q_proj"), &[q_out, h], qkv_bias)?,
                k: linear(format!("{p}.self_attn.k_proj"), &[kv_out, h], qkv_bias)?,
                v: linear(format!("{p}.self_attn.v_proj"), &[kv_out, h], qkv_bias)?,
                o: linear(format!("{p}.self_attn.o_proj"), &[h, q_out], o_bias)?,
                q_norm: c.architecture.qk_norm().then(|| norm("self_attn.q_norm", c.head_dim)).transpose()?,
                k_norm: c.architecture.qk_norm().then(|| norm("self_attn.k_norm", c.head_dim)).transpose()?,
            };
            let mlp = Mlp {
                gate: linear(format!("{p}.mlp.gate_proj"), &[c.intermediate_size, h], false)?,
                up: linear(format!("{p}.mlp.up_proj"), &[c.intermediate_size, h], false)?,
                down: linear(format!("{p}.mlp.down_proj"), &[h, c.intermediate_size], false)?,
            };
            let (attn_out_norm, mlp_norm, mlp_out_norm) = if sandwich {
                (
                    Some(norm("post_attention_layernorm", h)?),
                    norm("pre_feedforward_layernorm", h)?,
                    Some(norm("post_feedforward_layernorm", h)?),
                )
            } else {
                (None, norm("post_attention_layernorm", h)?, None)
            };
            layers.push(Layer {
                input_norm: norm("input_layernorm", h)?,
                attn,
                attn_out_norm,
                mlp_norm,
                mlp,
                mlp_out_norm,
                sliding: c.layer_types.get(i) == Some(&LayerAttention::Sliding),
            });
        }
        let embed = weights.expect("model.embed_tokens.weight", &[c.vocab_size, h])?.clone();
        let (head_name, outputs) = c.head.projection(c);
        let head = linear(head_name.to_owned(), &[outputs, h], false)?;
        let norm = weights.expect("model.norm.weight", &[h])?.clone();
        let (dtype, device) = (embed.dtype(), embed.device());
        let rope = RopeTables::new(c, c.rope_theta, &c.rope_scaling, dtype, device).step("rope tables")?;
        let local_rope = c
            .rope_local_theta
            .map(|theta| RopeTables::new(c, theta, &crate::config::RopeScaling::Default, dtype, device))
            .transpose()
            .step("rope tables")?;
        Ok(Self { config: c.clone(), embed, layers, norm, head, kernels, rope, local_rope })
    }

    pub fn device(&self) -> &Device {
        self.embed.device()
    }

    /// The dtype the weights and activations are in.
    pub fn dtype(&self) -> DType {
        self.embed.dtype()
    }

    /// Logits for `ids: [batch, seq]`.
    ///
    /// With a cache, the new tokens follow the `cache.len()` cached ones and only the
    /// last position's logits are computed (`[batch, vocab]`); without one, the sequences
    /// start at position 0, are right-padded (padding needs no mask: causality hides it)
    /// and every position's logits are returned (`[batch, seq, vocab]`).
    pub fn forward(&self, ids: &Tensor, cache: Option<&mut KvCache>) -> Result<Tensor> {
        self.forward_layout(ids, cache, None, Readout::From(0)).step("model forward")
    }

    /// Like `forward` without a cache, but computes logits only for positions `from..`
    /// (`[batch, seq - from, vocab]`): scoring a completion needs no logits over its prompt,
    /// and the output projection is the largest matmul of a small model.
    pub fn forward_logits_from(&self, ids: &Tensor, from: usize) -> Result<Tensor> {
        self.forward_layout(ids, None, None, Readout::From(from)).step("model forward")
    }

    /// The head's outputs at one position of each right-padded row of `ids`
    /// (`[batch, outputs]`): next-token logits after a prompt, or a classifier's scores.
    pub fn forward_at(&self, ids: &Tensor, positions: &[usize]) -> Result<Tensor> {
        self.forward_layout(ids, None, None, Readout::At(positions)).step("model forward")
    }

    /// The head's outputs at `rows` of one packed row `ids: [1, t]` (`[rows, outputs]`).
    pub fn forward_packed(&self, ids: &Tensor, packing: &Packing, rows: &[usize]) -> Result<Tensor> {
        self.forward_layout(ids, None, Some(packing), Readout::Rows(rows)).step("model forward")
    }

    fn forward_layout(
        &self,
        ids: &Tensor,
        mut cache: Option<&mut KvCache>,
        packing: Option<&Packing>,
        readout: Readout,
    ) -> candle_core::Result<Tensor> {
        let (b, t) = ids.dims2()?;
        let offset = cache.as_ref().map_or(0, |c| c.len);
        let positions = self.rope.cos.dim(0)?;
        let last = packing.map_or(offset + t, |p| p.positions.iter().max().map_or(0, |&m| m as usize + 1));
        if last > positions {
            candle_core::bail!("{last} positions exceed the model's {positions}");
        }
        if let Some(p) = packing
            && (b != 1 || p.positions.len() != t || p.segments.len() != t)
        {
            candle_core::bail!("a packing of {} tokens does not fit a [{b}, {t}] batch", p.positions.len());
        }
        if let Some(c) = &cache
            && offset + t > c.capacity
        {
            candle_core::bail!("KV cache of {} positions is full", c.capacity);
        }
        let pad = cache.as_ref().map(|c| c.pad.as_slice());
        let mask_of = |window| match packing {
            Some(p) => self.packed_mask(p, window).map(Some),
            None => self.mask(b, t, offset, pad, window),
        };
        let mask = mask_of(None)?;
        let sliding_mask = match self.config.sliding_window {
            Some(window) if self.layers.iter().any(|l| l.sliding) => mask_of(Some(window))?,
            _ => None,
        };
        // Each token's rotary angles, for full and (where they differ) sliding layers.
        let angles = |rope: &RopeTables| -> candle_core::Result<(Tensor, Tensor)> {
            match packing {
                Some(p) => {
                    let idx = Tensor::new(p.positions.as_slice(), ids.device())?;
                    Ok((rope.cos.index_select(&idx, 0)?, rope.sin.index_select(&idx, 0)?))
                }
                None => Ok((rope.cos.narrow(0, offset, t)?, rope.sin.narrow(0, offset, t)?)),
            }
        };
        let global = angles(&self.rope)?;
        let local = self.local_rope.as_ref().map(angles).transpose()?;
        let mut x = self.embed.index_select(&ids.flatten_all()?, 0)?.reshape((b, t, ()))?;
        if self.config.architecture.is_gemma() {
            // Rounded to the weights' dtype first, as transformers does.
            let scale = (self.config.hidden_size as f64).sqrt() as f32;
            x = (x * f64::from(scale))?;
        }
        for (i, layer) in self.layers.iter().enumerate() {
            let residual = &x;
            let h = self.rms_norm(&x, &layer.input_norm)?;
            let (mask, angles) = match layer.sliding {
                true => (&sliding_mask, local.as_ref().unwrap_or(&global)),
                false => (&mask, &global),
            };
            let h =
                self.attention(&layer.attn, &h, offset, mask, angles, cache.as_deref_mut().map(|c| &mut c.layers[i]))?;
            let h = self.maybe_norm(h, &layer.attn_out_norm)?;
            let x1 = (residual + h)?;
            let h = self.rms_norm(&x1, &layer.mlp_norm)?;
            let gate = layer.mlp.gate.forward(&h)?;
            let up = layer.mlp.up.forward(&h)?;
            let gate = match self.config.hidden_act {
                Activation::Silu => ops::silu(&gate)?,
                Activation::GeluTanh => gate.gelu()?,
                Activation::Gelu => gate.gelu_erf()?,
            };
            let h = layer.mlp.down.forward(&(gate * up)?)?;
            let h = self.maybe_norm(h, &layer.mlp_out_norm)?;
            x = (x1 + h)?;
        }
        if let Some(c) = cache {
            c.len = offset + t;
            x = x.narrow(1, t - 1, 1)?.squeeze(1)?;
        } else {
            match readout {
                Readout::From(0) => {}
                Readout::From(from) => x = x.narrow(1, from, t - from)?,
                Readout::At(positions) => {
                    if positions.len() != b || positions.iter().any(|&p| p >= t) {
                        candle_core::bail!("readout positions {positions:?} do not fit a [{b}, {t}] batch");
                    }
                    let rows: Vec<u32> = positions.iter().enumerate().map(|(r, &p)| (r * t + p) as u32).collect();
                    let rows = Tensor::from_vec(rows, b, x.device())?;
                    x = x.reshape((b * t, ()))?.index_select(&rows, 0)?;
                }
                Readout::Rows(rows) => {
                    if b != 1 || rows.iter().any(|&r| r >= t) {
                        candle_core::bail!("readout rows {rows:?} do not fit a [{b}, {t}] batch");
                    }
                    let rows = Tensor::from_iter(rows.iter().map(|&r| r as u32), x.device())?;
                    x = x.squeeze(0)?.index_select(&rows, 0)?;
                }
            }
        }
        let x = self.rms_norm(&x, &self.norm)?;
        soft_cap(self.head.forward(&x)?, self.config.final_logit_softcapping)
    }

    fn attention(
        &self,
        attn: &Attention,
        x: &Tensor,
        offset: usize,
        mask: &Option<Tensor>,
        (cos, sin): &(Tensor, Tensor),
        cache: Option<&mut (Tensor, Tensor)>,
    ) -> candle_core::Result<Tensor> {
        let c = &self.config;
        let (b, t, _) = x.dims3()?;
        let (hd, nh, nkv) = (c.head_dim, c.num_heads, c.num_kv_heads);
        let heads = |y: Tensor, n: usize| y.reshape((b, t, n, hd))?.transpose(1, 2)?.contiguous();
        let mut q = heads(attn.q.forward(x)?, nh)?;
        let mut k = heads(attn.k.forward(x)?, nkv)?;
        let v = heads(attn.v.forward(x)?, nkv)?;
        if let (Some(qn), Some(kn)) = (&attn.q_norm, &attn.k_norm) {
            q = self.rms_norm(&q, qn)?;
            k = self.rms_norm(&k, kn)?;
        }
        let (q, k) = match self.kernels {
            Kernels::Fused => (rotary_emb::rope(&q, cos, sin)?, rotary_emb::rope(&k, cos, sin)?),
            Kernels::Differentiable => (rotary_emb::rope_slow(&q, cos, sin)?, rotary_emb::rope_slow(&k, cos, sin)?),
        };
        let (k, v) = match cache {
            Some((ck, cv)) => {
                ck.slice_set(&k, 2, offset)?;
                cv.slice_set(&v, 2, offset)?;
                (ck.narrow(2, 0, offset + t)?, cv.narrow(2, 0, offset + t)?)
            }
            None => (k, v),
        };
        let total = offset + t;
        // Grouped-query attention without copying keys: the query heads that share a kv
        // head are stacked along the sequence axis.
        let rep = nh / nkv;
        let q = q.reshape((b, nkv, rep * t, hd))?;
        let scale = 1.0 / c.query_pre_attn_scalar.unwrap_or(hd as f64).sqrt();
        let scores = soft_cap((q.matmul(&k.t()?)? * scale)?, c.attn_logit_softcapping)?;
        let scores = match mask {
            Some(m) => scores.reshape((b, nkv, rep, t, total))?.broadcast_add(m)?.reshape((b, nkv, rep * t, total))?,
            None => scores,
        };
        let probs = match self.kernels {
            Kernels::Fused => ops::softmax_last_dim(&scores)?,
            // In f32 for half-precision copies, as transformers' eager attention does.
            Kernels::Differentiable => {
                ops::softmax(&crate::device::widen(&scores)?, D::Minus1)?.to_dtype(scores.dtype())?
            }
        };
        let y = probs.matmul(&v)?.reshape((b, nh, t, hd))?.transpose(1, 2)?.reshape((b, t, nh * hd))?;
        attn.o.forward(&y)
    }

    /// `[b, 1, 1, t, offset + t]` additive mask: causal, hiding left padding and, with a
    /// `window`, keys `window` or more positions back. A position may always see itself,
    /// so padding rows stay finite.
    fn mask(
        &self,
        b: usize,
        t: usize,
        offset: usize,
        pad: Option<&[usize]>,
        window: Option<usize>,
    ) -> candle_core::Result<Option<Tensor>> {
        let pad_any = pad.is_some_and(|p| p.iter().any(|&n| n > 0));
        let total = offset + t;
        let window_cuts = window.is_some_and(|w| total > w);
        if t == 1 && !pad_any && !window_cuts {
            return Ok(None);
        }
        let rows = if pad_any { b } else { 1 };
        let window = window.unwrap_or(usize::MAX);
        let mut data = vec![0f32; rows * t * total];
        for r in 0..rows {
            let pad = pad.map_or(0, |p| p[r]);
            for i in 0..t {
                let qpos = offset + i;
                for j in 0..total {
                    if j != qpos && (j > qpos || j < pad || qpos - j >= window) {
                        data[(r * t + i) * total + j] = f32::NEG_INFINITY;
                    }
                }
            }
        }
        Tensor::from_vec(data, (rows, 1, 1, t, total), self.device())?.to_dtype(self.embed.dtype()).map(Some)
    }

    /// `[1, 1, 1, t, t]` additive mask of a packed row.
    fn packed_mask(&self, packing: &Packing, window: Option<usize>) -> candle_core::Result<Tensor> {
        let t = packing.positions.len();
        let window = window.unwrap_or(usize::MAX);
        let mut data = vec![f32::NEG_INFINITY; t * t];
        for i in 0..t {
            for j in 0..=i {
                if packing.sees(i, j, window) {
                    data[i * t + j] = 0.0;
                }
            }
        }
        Tensor::from_vec(data, (1, 1, 1, t, t), self.device())?.to_dtype(self.embed.dtype())
    }

    fn rms_norm(&self, x: &Tensor, w: &Tensor) -> candle_core::Result<Tensor> {
        let eps = self.config.rms_norm_eps as f32;
        // Gemma multiplies by `1 + w`; added in the graph so a trained `w` gets its gradient.
        let offset = self.config.architecture.norm_offset();
        let w = if offset != 0.0 { &(w + offset)? } else { w };
        match self.kernels {
            Kernels::Fused => ops::rms_norm(&x.contiguous()?, w, eps),
            Kernels::Differentiable => ops::rms_norm_slow(x, w, eps),
        }
    }

    fn maybe_norm(&self, x: Tensor, w: &Option<Tensor>) -> candle_core::Result<Tensor> {
        match w {
            Some(w) => self.rms_norm(&x, w),
            None => Ok(x),
        }
    }
}

/// `cap * tanh(x / cap)`, or `x` without a cap.
fn soft_cap(x: Tensor, cap: Option<f64>) -> candle_core::Result<Tensor> {
    match cap {
        Some(cap) => (x / cap)?.tanh()? * cap,
        None => Ok(x),
    }
}

impl RopeTables {
    fn new(
        c: &ModelConfig,
        theta: f64,
        scaling: &crate::config::RopeScaling,
        dtype: DType,
        device: &Device,
    ) -> candle_core::Result<Self> {
        let half = c.head_dim / 2;
        let (inv, attention_factor) = scaling.frequencies(theta, c.head_dim);
        let inv = Tensor::from_vec(inv.into_iter().map(|f| f as f32).collect::<Vec<_>>(), (1, half), device)?;
        let pos =
            Tensor::arange(0u32, c.max_position_embeddings as u32, device)?.to_dtype(DType::F32)?.reshape(((), 1))?;
        let freqs = pos.broadcast_mul(&inv)?;
        // YaRN scales cos and sin (and so attention logits) by its attention factor.
        let cos = (freqs.cos()? * attention_factor)?.to_dtype(dtype)?;
        let sin = (freqs.sin()? * attention_factor)?.to_dtype(dtype)?;
        Ok(Self { cos, sin })
    }
}
