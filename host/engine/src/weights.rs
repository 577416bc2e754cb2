//! Reading model tensors into f32, under Hugging Face names, from GGUF or safetensors.
//!
//! Every tensor is dequantized once at load: the same f32 weights feed inference (or its
//! requantized fast path) and training, so the two paths compute the same function.

use std::collections::HashMap;
use std::fs::File;
use std::io::BufReader;
use std::path::{Path, PathBuf};

use std::sync::Arc;

use candle_core::quantized::{GgmlDType, QStorage, QTensor, gguf_file};
use candle_core::{DType, Device, Tensor};

use crate::config::{Architecture, ModelConfig};
use crate::error::{Error, Result};

/// Named f32 tensors in Hugging Face layout (`model.layers.0.self_attn.q_proj.weight`).
#[derive(Debug, Clone)]
pub struct Weights {
    pub tensors: HashMap<String, Tensor>,
    /// The file's own quantized matrices (GGUF only, same names and row order as
    /// `tensors`), for inference that computes exactly as llama.cpp does.
    pub quantized: HashMap<String, Arc<QTensor>>,
    /// Where they came from, for error messages.
    pub source: PathBuf,
}

impl Weights {
    /// Plain f32 tensors (no quantized originals).
    pub fn from_tensors(tensors: HashMap<String, Tensor>, source: impl Into<PathBuf>) -> Self {
        Self { tensors, quantized: HashMap::new(), source: source.into() }
    }

    pub fn get(&self, name: &str) -> Result<&Tensor> {
        self.tensors
            .get(name)
            .ok_or_else(|| Error::Missing { path: self.source.clone(), what: format!("tensor `{name}`") })
    }

    /// These weights on `device` in `dtype`. The file's quantized originals stay behind
    /// unless the copy is an f32 one on the CPU: only the CPU computes with them.
    pub fn to(&self, device: &Device, dtype: DType) -> Result<Self> {
        let tensors = self
            .tensors
            .iter()
            .map(|(name, t)| Ok((name.clone(), t.to_device(device)?.to_dtype(dtype)?)))
            .collect::<candle_core::Result<_>>()
            .map_err(|e| {
                let (path, device) = (self.source.display(), crate::device::name(device));
                Error::Request(format!("moving {path} to {device} as {dtype:?}: {e}"))
            })?;
        let keep = device.is_cpu() && dtype == DType::F32;
        let quantized = if keep { self.quantized.clone() } else { HashMap::new() };
        Ok(Self { tensors, quantized, source: self.source.clone() })
    }

    /// The tensor, checked to have `shape`.
    pub fn expect(&self, name: &str, shape: &[usize]) -> Result<&Tensor> {
        let t = self.get(name)?;
        if t.dims() != shape {
            return Err(Error::Invalid {
                path: self.source.clone(),
                what: format!("tensor `{name}` has shape {:?}, the config asks for {shape:?}", t.dims()),
            });
        }
        Ok(t)
    }

    /// Read every tensor of a GGUF file, dequantized, renamed and (for llama) with q/k rows
    /// put back in Hugging Face order.
    pub fn from_gguf(
        content: &gguf_file::Content,
        reader: &mut BufReader<File>,
        path: &Path,
        config: &ModelConfig,
        device: &Device,
    ) -> Result<Self> {
        let corrupt = |reason: String| Error::Corrupt { path: path.to_owned(), reason };
        let mut tensors = HashMap::new();
        let mut quantized = HashMap::new();
        for name in content.tensor_infos.keys() {
            let Some(hf) = hf_name(name, config.architecture) else {
                tracing::debug!(tensor = name, "ignoring GGUF tensor the engine does not use");
                continue;
            };
            let q = content.tensor(reader, name, device).map_err(|e| corrupt(format!("tensor `{name}`: {e}")))?;
            let mut t = q.dequantize(device).map_err(|e| corrupt(format!("dequantizing `{name}`: {e}")))?;
            // llama.cpp's converter permutes q/k rows for interleaved rope (llama only).
            let heads = match config.architecture {
                Architecture::Llama if hf.contains("q_proj") => Some(config.num_heads),
                Architecture::Llama if hf.contains("k_proj") => Some(config.num_kv_heads),
                _ => None,
            };
            // llama.cpp's converter adds gemma's `1 +` into the norm weights.
            if config.architecture.is_gemma() && hf.ends_with("norm.weight") {
                t = (t - 1.0).map_err(|e| corrupt(format!("`{name}`: {e}")))?;
            }
            let mut q = Some(q);
            if let Some(heads) = heads {
                t = unpermute(&t, heads).map_err(|e| corrupt(format!("`{name}`: {e}")))?;
                q = q
                    .map(|q| unpermute_rows(&q, heads, device))
                    .transpose()
                    .map_err(|e| corrupt(format!("`{name}`: {e}")))?;
            }
            if let Some(q) =
                q.filter(|q| q.rank() == 2 && !matches!(q.dtype(), GgmlDType::F32 | GgmlDType::F16 | GgmlDType::BF16))
            {
                quantized.insert(hf.clone(), Arc::new(q));
            }
            tensors.insert(hf, t);
        }
        Ok(Self { tensors, quantized, source: path.to_owned() })
    }

    /// Read every `*.safetensors` file of a Hugging Face directory (single or sharded).
    pub fn from_safetensors_dir(dir: &Path, device: &Device) -> Result<Self> {
        let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
            .map_err(|source| Error::Io { path: dir.to_owned(), source })?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|e| e == "safetensors"))
            .collect();
        files.sort();
        if files.is_empty() {
            return Err(Error::Missing { path: dir.to_owned(), what: "*.safetensors weights".into() });
        }
        let mut tensors = HashMap::new();
        for file in &files {
            let loaded = candle_core::safetensors::load(file, device)
                .map_err(|e| Error::Corrupt { path: file.clone(), reason: e.to_string() })?;
            for (name, t) in loaded {
                let t = t.to_dtype(DType::F32).map_err(|e| Error::Corrupt {
                    path: file.clone(),
                    reason: format!("tensor `{name}` cannot be read as f32: {e}"),
                })?;
                tensors.insert(name, t);
            }
        }
        Ok(Self::from_tensors(tensors, dir))
    }
}

impl Weights {
    /// Freshly initialised weights of `config` (normal, std 0.02; norms at 1): tiny models
    /// for tests and from-scratch experiments.
    pub fn random(config: &ModelConfig, seed: u64, device: &Device) -> Result<Self> {
        use rand::{SeedableRng, rngs::StdRng};
        let mut rng = StdRng::seed_from_u64(seed);
        let mut tensors = HashMap::new();
        for (name, shape) in expected_shapes(config) {
            // Norms start as the identity: w = 1, or w = 0 where they multiply by 1 + w.
            let t = if name.ends_with("norm.weight") {
                Tensor::ones(shape.as_slice(), DType::F32, device)
                    .and_then(|t| t * (1.0 - config.architecture.norm_offset()))
            } else if name.ends_with(".bias") {
                Tensor::zeros(shape.as_slice(), DType::F32, device)
            } else {
                let n: usize = shape.iter().product();
                Tensor::from_vec(normal(&mut rng, n, 0.02), shape.as_slice(), device)
            };
            tensors.insert(name, t.map_err(|source| Error::Tensor { step: "random weights", source })?);
        }
        Ok(Self::from_tensors(tensors, "<random>"))
    }
}

/// `n` draws of N(0, std²) (Box–Muller), reproducible from `rng`.
pub(crate) fn normal(rng: &mut rand::rngs::StdRng, n: usize, std: f32) -> Vec<f32> {
    use rand::RngExt;
    (0..n)
        .map(|_| {
            let u1: f32 = rng.random::<f32>().max(f32::MIN_POSITIVE);
            let u2: f32 = rng.random::<f32>();
            std * (-2.0f32 * u1.ln()).sqrt() * (2.0 * std::f32::consts::PI * u2).cos()
        })
        .collect()
}

/// Every tensor a model of `config` has, with its shape, in Hugging Face names.
pub fn expected_shapes(c: &ModelConfig) -> Vec<(String, Vec<usize>)> {
    let (h, q, kv, ff) = (c.hidden_size, c.num_heads * c.head_dim, c.num_kv_heads * c.head_dim, c.intermediate_size);
    let mut out = vec![
        ("model.embed_tokens.weight".to_owned(), vec![c.vocab_size, h]),
        ("model.norm.weight".to_owned(), vec![h]),
    ];
    let (head, outputs) = c.head.projection(c);
    if head != "model.embed_tokens" {
        out.push((format!("{head}.weight"), vec![outputs, h]));
    }
    for i in 0..c.num_layers {
        let p = format!("model.layers.{i}");
        let mut add = |n: &str, shape: Vec<usize>| out.push((format!("{p}.{n}"), shape));
        add("input_layernorm.weight", vec![h]);
        add("post_attention_layernorm.weight", vec![h]);
        if c.architecture.sandwich_norms() {
            add("pre_feedforward_layernorm.weight", vec![h]);
            add("post_feedforward_layernorm.weight", vec![h]);
        }
        add("self_attn.q_proj.weight", vec![q, h]);
        add("self_attn.k_proj.weight", vec![kv, h]);
        add("self_attn.v_proj.weight", vec![kv, h]);
        add("self_attn.o_proj.weight", vec![h, q]);
        add("mlp.gate_proj.weight", vec![ff, h]);
        add("mlp.up_proj.weight", vec![ff, h]);
        add("mlp.down_proj.weight", vec![h, ff]);
        if c.attention_bias {
            add("self_attn.q_proj.bias", vec![q]);
            add("self_attn.k_proj.bias", vec![kv]);
            add("self_attn.v_proj.bias", vec![kv]);
            if c.architecture == Architecture::Llama {
                add("self_attn.o_proj.bias", vec![h]);
            }
        }
        if c.architecture.qk_norm() {
            add("self_attn.q_norm.weight", vec![c.head_dim]);
            add("self_attn.k_norm.weight", vec![c.head_dim]);
        }
    }
    out
}

/// GGUF tensor name → Hugging Face name; `None` for tensors the engine does not use
/// (rope frequency tables and the like).
fn hf_name(gguf: &str, arch: Architecture) -> Option<String> {
    let fixed = match gguf {
        "token_embd.weight" => Some("model.embed_tokens.weight"),
        "output_norm.weight" => Some("model.norm.weight"),
        "output.weight" => Some("lm_head.weight"),
        _ => None,
    };
    if let Some(f) = fixed {
        return Some(f.to_owned());
    }
    let rest = gguf.strip_prefix("blk.")?;
    let (layer, rest) = rest.split_once('.')?;
    let layer: usize = layer.parse().ok()?;
    let (part, kind) = rest.rsplit_once('.')?;
    let hf = match part {
        "attn_norm" => "input_layernorm",
        // With sandwich norms, HF's `post_attention_layernorm` follows attention and the
        // MLP has its own pre-norm; otherwise `post_attention_layernorm` is the MLP's.
        "ffn_norm" if arch.sandwich_norms() => "pre_feedforward_layernorm",
        "ffn_norm" => "post_attention_layernorm",
        "post_attention_norm" => "post_attention_layernorm",
        "post_ffw_norm" => "post_feedforward_layernorm",
        "attn_q" => "self_attn.q_proj",
        "attn_k" => "self_attn.k_proj",
        "attn_v" => "self_attn.v_proj",
        "attn_output" => "self_attn.o_proj",
        "attn_q_norm" => "self_attn.q_norm",
        "attn_k_norm" => "self_attn.k_norm",
        "ffn_gate" => "mlp.gate_proj",
        "ffn_up" => "mlp.up_proj",
        "ffn_down" => "mlp.down_proj",
        _ => return None,
    };
    Some(format!("model.layers.{layer}.{hf}.{kind}"))
}

/// Undo llama.cpp's `permute`: rows (head, pair, 2) → (head, 2, pair).
fn unpermute(t: &Tensor, heads: usize) -> candle_core::Result<Tensor> {
    let dims = t.dims().to_vec();
    let rows = dims[0];
    let rest: usize = dims[1..].iter().product();
    let half = rows / heads / 2;
    t.reshape((heads, half, 2, rest))?.transpose(1, 2)?.contiguous()?.reshape(dims)
}

/// `unpermute` on a quantized matrix: whole rows move, and a row's blocks are untouched.
fn unpermute_rows(q: &QTensor, heads: usize, device: &Device) -> candle_core::Result<QTensor> {
    let (rows, _) = q.shape().dims2()?;
    let data = q.data()?;
    let row_bytes = data.len() / rows;
    let half = rows / heads / 2;
    let mut out = Vec::with_capacity(data.len());
    for h in 0..heads {
        for t in 0..2 {
            for j in 0..half {
                let src = h * 2 * half + j * 2 + t;
                out.extend_from_slice(&data[src * row_bytes..(src + 1) * row_bytes]);
            }
        }
    }
    QTensor::new(QStorage::from_data(std::borrow::Cow::Owned(out), device, q.dtype())?, q.shape().clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gguf_names_map_to_hugging_face_names() {
        let llama = |n| hf_name(n, Architecture::Llama);
        assert_eq!(llama("blk.3.attn_q.weight").as_deref(), Some("model.layers.3.self_attn.q_proj.weight"));
        assert_eq!(llama("blk.12.ffn_down.weight").as_deref(), Some("model.layers.12.mlp.down_proj.weight"));
        assert_eq!(llama("blk.0.attn_k.bias").as_deref(), Some("model.layers.0.self_attn.k_proj.bias"));
        assert_eq!(llama("blk.0.ffn_norm.weight").as_deref(), Some("model.layers.0.post_attention_layernorm.weight"));
        assert_eq!(llama("output.weight").as_deref(), Some("lm_head.weight"));
        assert_eq!(llama("rope_freqs.weight"), None);
        let names = ["ffn_norm", "post_attention_norm", "post_ffw_norm"]
            .map(|n| hf_name(&format!("blk.1.{n}.weight"), Architecture::Gemma3));
        assert_eq!(
            names.map(|n| n.unwrap()),
            ["pre_feedforward_layernorm", "post_attention_layernorm", "post_feedforward_layernorm"]
                .map(|n| format!("model.layers.1.{n}.weight"))
        );
    }

    #[test]
    fn unpermute_inverts_llama_cpp_permute() -> candle_core::Result<()> {
        // llama.cpp: w.reshape(heads, 2, half, in).swapaxes(1, 2).reshape(out, in)
        let (heads, hd, cols) = (3, 4, 2);
        let hf = Tensor::arange(0f32, (heads * hd * cols) as f32, &Device::Cpu)?.reshape((heads * hd, cols))?;
        let permuted =
            hf.reshape((heads, 2, hd / 2, cols))?.transpose(1, 2)?.contiguous()?.reshape((heads * hd, cols))?;
        let back = unpermute(&permuted, heads)?;
        assert_eq!(back.to_vec2::<f32>()?, hf.to_vec2::<f32>()?);
        Ok(())
    }
}
