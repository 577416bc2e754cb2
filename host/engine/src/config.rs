//! The shape of a decoder-only transformer, read from a Hugging Face `config.json` or from
//! GGUF metadata.

use std::path::Path;

use candle_core::quantized::gguf_file;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

mod rope;
pub use rope::RopeScaling;

/// The model families the engine runs. They share one forward pass and differ in a few
/// switches: biases on q/k/v (qwen2), RMS norms on q and k (qwen3, gemma3), and for the
/// gemma families a scaled embedding, norms that multiply by `1 + w`, GELU, norms around
/// attention and MLP outputs (gemma2, gemma3) and sliding-window layers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Architecture {
    Llama,
    Qwen2,
    Qwen3,
    Gemma,
    Gemma2,
    Gemma3,
}

impl Architecture {
    /// Every supported family.
    pub const ALL: [Self; 6] = [Self::Llama, Self::Qwen2, Self::Qwen3, Self::Gemma, Self::Gemma2, Self::Gemma3];

    fn parse(name: &str, path: &Path) -> Result<Self> {
        match name {
            "llama" | "mistral" => Ok(Self::Llama),
            "qwen2" => Ok(Self::Qwen2),
            "qwen3" => Ok(Self::Qwen3),
            "gemma" => Ok(Self::Gemma),
            "gemma2" => Ok(Self::Gemma2),
            "gemma3" | "gemma3_text" => Ok(Self::Gemma3),
            other => Err(Error::UnsupportedArchitecture { path: path.to_owned(), arch: other.to_owned() }),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Llama => "llama",
            Self::Qwen2 => "qwen2",
            Self::Qwen3 => "qwen3",
            Self::Gemma => "gemma",
            Self::Gemma2 => "gemma2",
            Self::Gemma3 => "gemma3",
        }
    }

    pub fn qkv_bias(self) -> bool {
        self == Self::Qwen2
    }

    pub fn qk_norm(self) -> bool {
        matches!(self, Self::Qwen3 | Self::Gemma3)
    }

    pub fn is_gemma(self) -> bool {
        matches!(self, Self::Gemma | Self::Gemma2 | Self::Gemma3)
    }

    /// Gemma's RMS norms multiply by `1 + w` (their weights are stored minus one).
    pub fn norm_offset(self) -> f64 {
        if self.is_gemma() { 1.0 } else { 0.0 }
    }

    /// gemma2 and gemma3 also normalise the outputs of attention and of the MLP.
    pub fn sandwich_norms(self) -> bool {
        matches!(self, Self::Gemma2 | Self::Gemma3)
    }
}

/// The MLP's gate activation.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Activation {
    #[default]
    Silu,
    /// GELU, tanh approximation (`gelu_pytorch_tanh`).
    GeluTanh,
    /// GELU with the exact erf.
    Gelu,
}

impl Activation {
    fn parse(name: &str) -> std::result::Result<Self, String> {
        match name {
            "silu" | "swish" => Ok(Self::Silu),
            "gelu_pytorch_tanh" | "gelu_tanh" | "gelu_new" | "gelu_fast" => Ok(Self::GeluTanh),
            "gelu" => Ok(Self::Gelu),
            other => Err(format!("activation `{other}` is not supported (silu, gelu and gelu_pytorch_tanh are)")),
        }
    }

    fn hf_name(self) -> &'static str {
        match self {
            Self::Silu => "silu",
            Self::GeluTanh => "gelu_pytorch_tanh",
            Self::Gelu => "gelu",
        }
    }
}

/// Which keys a layer's queries see.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum LayerAttention {
    /// Every earlier position (causal).
    #[serde(rename = "full_attention")]
    Full,
    /// Only the last `sliding_window` positions, itself included.
    #[serde(rename = "sliding_attention")]
    Sliding,
}

/// What the last hidden state is projected to.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Head {
    /// Next-token logits over the vocabulary (`lm_head`, or the tied embedding).
    #[default]
    LanguageModel,
    /// A `*ForSequenceClassification` model: `labels` scores from the `score` projection
    /// (no bias), of which a reward model reads the last real token's.
    Score { labels: usize },
}

impl Head {
    /// The projection's weight name (without `.weight`) and its output size.
    pub fn projection(self, config: &ModelConfig) -> (&'static str, usize) {
        match self {
            Head::LanguageModel if config.tie_word_embeddings => ("model.embed_tokens", config.vocab_size),
            Head::LanguageModel => ("lm_head", config.vocab_size),
            Head::Score { labels } => ("score", labels),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelConfig {
    pub architecture: Architecture,
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_layers: usize,
    pub num_heads: usize,
    pub num_kv_heads: usize,
    pub head_dim: usize,
    pub rms_norm_eps: f64,
    pub rope_theta: f64,
    /// Long-context rescaling of the rotary frequencies.
    #[serde(default)]
    pub rope_scaling: RopeScaling,
    pub max_position_embeddings: usize,
    pub tie_word_embeddings: bool,
    /// Llama models may carry biases on q/k/v/o (`attention_bias`); qwen2 always does on q/k/v.
    pub attention_bias: bool,
    #[serde(default)]
    pub head: Head,
    #[serde(default)]
    pub hidden_act: Activation,
    /// Per layer, full or sliding-window attention; empty means every layer is full.
    #[serde(default)]
    pub layer_types: Vec<LayerAttention>,
    #[serde(default)]
    pub sliding_window: Option<usize>,
    /// The rope base of sliding-window layers (gemma3's `rope_local_base_freq`, plain
    /// rope); `None`: the same rope as full layers.
    #[serde(default)]
    pub rope_local_theta: Option<f64>,
    /// Attention scores are scaled by `query_pre_attn_scalar^-1/2` (gemma) instead of
    /// `head_dim^-1/2`.
    #[serde(default)]
    pub query_pre_attn_scalar: Option<f64>,
    /// `cap * tanh(x / cap)` on attention scores and on the final logits (gemma2).
    #[serde(default)]
    pub attn_logit_softcapping: Option<f64>,
    #[serde(default)]
    pub final_logit_softcapping: Option<f64>,
}

/// The fields of a Hugging Face `config.json` the engine reads; the optional gemma and
/// rope fields are read from the raw JSON, where a missing key and `null` differ.
#[derive(Deserialize)]
struct HfConfig {
    model_type: String,
    vocab_size: usize,
    hidden_size: usize,
    intermediate_size: usize,
    num_hidden_layers: usize,
    num_attention_heads: usize,
    num_key_value_heads: Option<usize>,
    head_dim: Option<usize>,
    rms_norm_eps: f64,
    #[serde(default = "default_max_positions")]
    max_position_embeddings: usize,
    tie_word_embeddings: Option<bool>,
    #[serde(default)]
    attention_bias: bool,
    #[serde(default)]
    architectures: Vec<String>,
    num_labels: Option<usize>,
    id2label: Option<serde_json::Map<String, serde_json::Value>>,
}

impl HfConfig {
    fn head(&self) -> Head {
        if !self.architectures.iter().any(|a| a.ends_with("ForSequenceClassification")) {
            return Head::LanguageModel;
        }
        // transformers writes `id2label` and derives the label count from it; 2 is its
        // default when neither is given.
        let labels = self.id2label.as_ref().map(|m| m.len()).or(self.num_labels).unwrap_or(2);
        Head::Score { labels }
    }
}

fn default_max_positions() -> usize {
    4096
}

/// The rope of full and of sliding-window layers from a `config.json`: transformers 5's
/// `rope_parameters` (flat, or one entry per layer type), else the older `rope_theta`,
/// `rope_scaling` and `rope_local_base_freq`.
fn hf_rope(
    raw: &serde_json::Value,
    max_positions: usize,
    local_default: Option<f64>,
) -> std::result::Result<(f64, RopeScaling, Option<f64>), String> {
    let theta_of = |v: &serde_json::Value| v.get("rope_theta").and_then(|t| t.as_f64());
    if let Some(params) = raw.get("rope_parameters").filter(|p| !p.is_null()) {
        let (full, local) = match params.get("full_attention") {
            Some(full) => (full, params.get("sliding_attention")),
            None => (params, None),
        };
        let local_theta = match local {
            Some(l) if RopeScaling::from_hf(l, max_positions)? != RopeScaling::Default => {
                return Err("rope scaling on sliding-window layers is not supported".into());
            }
            Some(l) => theta_of(l).or(local_default),
            None => local_default,
        };
        return Ok((theta_of(full).unwrap_or(10_000.0), RopeScaling::from_hf(full, max_positions)?, local_theta));
    }
    let scaling = RopeScaling::from_hf(raw.get("rope_scaling").unwrap_or(&serde_json::Value::Null), max_positions)?;
    let local = raw.get("rope_local_base_freq").and_then(|t| t.as_f64()).or(local_default);
    Ok((theta_of(raw).unwrap_or(10_000.0), scaling, local))
}

/// Which layers use a sliding window, from `layer_types` or the family's fixed pattern.
fn hf_layer_types(
    raw: &serde_json::Value,
    arch: Architecture,
    model_type: &str,
    layers: usize,
) -> std::result::Result<Vec<LayerAttention>, String> {
    if let Some(types) = raw.get("layer_types").filter(|t| !t.is_null()) {
        let types: Vec<LayerAttention> =
            serde_json::from_value(types.clone()).map_err(|e| format!("`layer_types`: {e}"))?;
        if types.len() != layers {
            return Err(format!("`layer_types` names {} layers, the model has {layers}", types.len()));
        }
        // All full is the same model as no list; one spelling keeps configs comparable.
        return Ok(if types.contains(&LayerAttention::Sliding) { types } else { vec![] });
    }
    let sliding = |f: &dyn Fn(usize) -> bool| {
        (0..layers).map(|i| if f(i) { LayerAttention::Sliding } else { LayerAttention::Full }).collect()
    };
    let window = raw.get("sliding_window").is_some_and(|w| !w.is_null());
    let int = |k: &str| raw.get(k).and_then(|v| v.as_u64()).map(|v| v as usize);
    Ok(match arch {
        Architecture::Gemma2 => sliding(&|i| i % 2 == 0),
        Architecture::Gemma3 => {
            let pattern = int("sliding_window_pattern").or(int("_sliding_window_pattern")).unwrap_or(6).max(1);
            sliding(&|i| (i + 1) % pattern != 0)
        }
        _ if model_type == "mistral" && window => sliding(&|_| true),
        Architecture::Qwen2 | Architecture::Qwen3
            if window && raw.get("use_sliding_window").and_then(|v| v.as_bool()) == Some(true) =>
        {
            let from = int("max_window_layers").unwrap_or(0);
            sliding(&|i| i >= from)
        }
        _ => vec![],
    })
}

impl ModelConfig {
    /// A tiny config of `arch` (hidden 32, two layers, GQA 4/2, a vocabulary of 61) with
    /// every switch of its family sized to change the outputs of short inputs: for tests
    /// of the forward pass on random weights.
    pub fn tiny(arch: Architecture) -> Self {
        Self {
            architecture: arch,
            vocab_size: 61,
            hidden_size: 32,
            intermediate_size: 48,
            num_layers: 2,
            num_heads: 4,
            num_kv_heads: 2,
            head_dim: 8,
            rms_norm_eps: 1e-5,
            rope_theta: 10_000.0,
            rope_scaling: Default::default(),
            max_position_embeddings: 64,
            tie_word_embeddings: arch == Architecture::Llama || arch.is_gemma(),
            attention_bias: arch == Architecture::Qwen2,
            head: Head::LanguageModel,
            // gemma's: a window of 3, soft caps below the logits' range, a distinct local
            // rope base.
            hidden_act: if arch.is_gemma() { Activation::GeluTanh } else { Activation::Silu },
            layer_types: if arch.sandwich_norms() {
                vec![LayerAttention::Sliding, LayerAttention::Full]
            } else {
                vec![]
            },
            sliding_window: arch.sandwich_norms().then_some(3),
            rope_local_theta: (arch == Architecture::Gemma3).then_some(100.0),
            query_pre_attn_scalar: arch.sandwich_norms().then_some(12.0),
            attn_logit_softcapping: (arch == Architecture::Gemma2).then_some(2.0),
            final_logit_softcapping: (arch == Architecture::Gemma2).then_some(3.0),
        }
    }

    /// Read a Hugging Face `config.json`.
    pub fn from_hf_json(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|source| Error::Io { path: path.to_owned(), source })?;
        let invalid = |what: String| Error::Invalid { path: path.to_owned(), what };
        let raw: serde_json::Value =
            serde_json::from_str(&text).map_err(|e| invalid(format!("not a usable config.json: {e}")))?;
        let hf: HfConfig =
            serde_json::from_value(raw.clone()).map_err(|e| invalid(format!("not a usable config.json: {e}")))?;
        let architecture = Architecture::parse(&hf.model_type, path)?;
        let gemma = architecture.is_gemma();
        let local_default = (architecture == Architecture::Gemma3).then_some(10_000.0);
        let (rope_theta, rope_scaling, rope_local_theta) =
            hf_rope(&raw, hf.max_position_embeddings, local_default).map_err(invalid)?;
        let layer_types = hf_layer_types(&raw, architecture, &hf.model_type, hf.num_hidden_layers).map_err(invalid)?;
        // gemma names it `hidden_activation`; its configs may carry a misleading `hidden_act`.
        let act_key = if gemma { "hidden_activation" } else { "hidden_act" };
        let act_default = if gemma { "gelu_pytorch_tanh" } else { "silu" };
        let hidden_act =
            Activation::parse(raw.get(act_key).and_then(|v| v.as_str()).unwrap_or(act_default)).map_err(invalid)?;
        let float = |k: &str| raw.get(k).and_then(|v| v.as_f64());
        // A missing key takes transformers' default for the family; `null` turns it off.
        let float_or = |k: &str, default: Option<f64>| if raw.get(k).is_some() { float(k) } else { default };
        let gemma2 = architecture == Architecture::Gemma2;
        let config = Self {
            architecture,
            vocab_size: hf.vocab_size,
            hidden_size: hf.hidden_size,
            intermediate_size: hf.intermediate_size,
            num_layers: hf.num_hidden_layers,
            num_heads: hf.num_attention_heads,
            num_kv_heads: hf.num_key_value_heads.unwrap_or(hf.num_attention_heads),
            head_dim: hf.head_dim.unwrap_or(hf.hidden_size / hf.num_attention_heads.max(1)),
            rms_norm_eps: hf.rms_norm_eps,
            rope_theta,
            rope_scaling,
            max_position_embeddings: hf.max_position_embeddings,
            tie_word_embeddings: hf.tie_word_embeddings.unwrap_or(gemma),
            attention_bias: hf.attention_bias || architecture.qkv_bias(),
            head: hf.head(),
            hidden_act,
            sliding_window: raw.get("sliding_window").and_then(|v| v.as_u64()).map(|v| v as usize),
            layer_types,
            rope_local_theta,
            query_pre_attn_scalar: float_or("query_pre_attn_scalar", architecture.sandwich_norms().then_some(256.0)),
            attn_logit_softcapping: float_or("attn_logit_softcapping", gemma2.then_some(50.0)),
            final_logit_softcapping: float_or("final_logit_softcapping", gemma2.then_some(30.0)),
        };
        config.check(path)?;
        Ok(config)
    }

    /// Read the shape from GGUF metadata (`{arch}.block_count` and friends); `rope_freqs`
    /// is the file's `rope_freqs.weight` tensor, where it has one.
    pub fn from_gguf(content: &gguf_file::Content, path: &Path, rope_freqs: Option<&[f32]>) -> Result<Self> {
        let meta = &content.metadata;
        let get = |key: &str| meta.get(key);
        let missing = |key: &str| Error::Missing { path: path.to_owned(), what: format!("GGUF metadata `{key}`") };
        let arch_name = get("general.architecture")
            .and_then(|v| v.to_string().ok())
            .ok_or_else(|| missing("general.architecture"))?
            .clone();
        let architecture = Architecture::parse(&arch_name, path)?;
        let key = |k: &str| format!("{arch_name}.{k}");
        let int = |k: &str| -> Result<usize> {
            let full = key(k);
            get(&full).and_then(|v| v.to_u64().ok()).map(|v| v as usize).ok_or_else(|| missing(&full))
        };
        let float = |k: &str| get(&key(k)).and_then(|v| v.to_f32().ok()).map(f64::from);
        let embd = content.tensor_infos.get("token_embd.weight").ok_or_else(|| missing("tensor token_embd.weight"))?;
        // candle reports GGUF shapes outermost first: token_embd is [vocab, hidden].
        let vocab_size = *embd.shape.dims().first().unwrap_or(&0);
        let hidden_size = int("embedding_length")?;
        let num_heads = int("attention.head_count")?;
        let head_dim = int("attention.key_length").unwrap_or(hidden_size / num_heads.max(1));
        let rope_theta = float("rope.freq_base").unwrap_or(10_000.0);
        let unsupported = |what: String| Error::Invalid { path: path.to_owned(), what };
        let has_freqs = content.tensor_infos.contains_key("rope_freqs.weight");
        if has_freqs != rope_freqs.is_some() {
            return Err(unsupported("`rope_freqs.weight` was not passed along with the metadata".into()));
        }
        let scaling_type = get(&key("rope.scaling.type")).and_then(|v| v.to_string().ok()).map(String::as_str);
        let rope_scaling = match (scaling_type, rope_freqs) {
            // llama.cpp's converter bakes Llama 3's rope scaling into per-frequency factors;
            // they are read back as the `llama3` scaling they came from, which a config.json
            // can express, and refused otherwise rather than run without them.
            (None | Some("none"), Some(factors)) => RopeScaling::from_llama3_factors(factors, rope_theta, head_dim)
                .ok_or_else(|| {
                    unsupported(
                        "its rope frequency factors (`rope_freqs.weight`) are not Llama 3's rope scaling; \
                         other factors are not supported"
                            .into(),
                    )
                })?,
            (Some(other), Some(_)) => {
                return Err(unsupported(format!("rope frequency factors with `{other}` scaling are not supported")));
            }
            (None | Some("none"), None) => RopeScaling::Default,
            (Some("linear"), None) => RopeScaling::Linear {
                factor: float("rope.scaling.factor")
                    .filter(|f| *f > 0.0)
                    .ok_or_else(|| missing(&key("rope.scaling.factor")))?,
            },
            (Some(other), None) => {
                return Err(unsupported(format!("GGUF rope scaling `{other}` is not supported (linear is)")));
            }
        };
        let num_layers = int("block_count")?;
        let sliding_window = int("attention.sliding_window").ok();
        // llama.cpp fixes the families' layer patterns and local rope base in code.
        let pattern = match architecture {
            Architecture::Gemma2 => Some(2),
            Architecture::Gemma3 => Some(int("attention.sliding_window_pattern").unwrap_or(6).max(1)),
            _ => None,
        };
        let layer_types = match (pattern, sliding_window) {
            (Some(p), Some(_)) => (0..num_layers)
                .map(|i| if (i + 1) % p != 0 { LayerAttention::Sliding } else { LayerAttention::Full })
                .collect(),
            _ => vec![],
        };
        let rope_local_theta =
            (architecture == Architecture::Gemma3).then(|| float("rope.freq_base_swa").unwrap_or(10_000.0));
        // Gemma 2 27B (46 layers) and Gemma 3 27B (62) scale queries by hidden/heads, the
        // others by the head size, as llama.cpp does.
        let query_pre_attn_scalar = architecture.sandwich_norms().then(|| match (architecture, num_layers) {
            (Architecture::Gemma2, 46) | (Architecture::Gemma3, 62) => (hidden_size / num_heads.max(1)) as f64,
            _ => head_dim as f64,
        });
        let config = Self {
            architecture,
            vocab_size,
            hidden_size,
            intermediate_size: int("feed_forward_length")?,
            num_layers,
            num_heads,
            num_kv_heads: int("attention.head_count_kv").unwrap_or(num_heads),
            head_dim,
            rms_norm_eps: float("attention.layer_norm_rms_epsilon")
                .ok_or_else(|| missing(&key("attention.layer_norm_rms_epsilon")))?,
            rope_theta,
            rope_scaling,
            max_position_embeddings: int("context_length").unwrap_or(4096),
            tie_word_embeddings: !content.tensor_infos.contains_key("output.weight"),
            attention_bias: architecture.qkv_bias(),
            head: Head::LanguageModel,
            hidden_act: if architecture.is_gemma() { Activation::GeluTanh } else { Activation::Silu },
            layer_types,
            sliding_window,
            rope_local_theta,
            query_pre_attn_scalar,
            attn_logit_softcapping: float("attn_logit_softcapping"),
            final_logit_softcapping: float("final_logit_softcapping"),
        };
        config.check(path)?;
        Ok(config)
    }

    fn check(&self, path: &Path) -> Result<()> {
        let bad = |what: String| Err(Error::Invalid { path: path.to_owned(), what });
        if self.num_heads == 0 || self.num_kv_heads == 0 || !self.num_heads.is_multiple_of(self.num_kv_heads) {
            return bad(format!(
                "{} attention heads cannot share {} key/value heads",
                self.num_heads, self.num_kv_heads
            ));
        }
        if self.head_dim == 0 || !self.head_dim.is_multiple_of(2) {
            return bad(format!("head dimension {} must be even and positive", self.head_dim));
        }
        if self.vocab_size == 0 || self.hidden_size == 0 || self.num_layers == 0 || self.intermediate_size == 0 {
            return bad("vocabulary, hidden size, layers and feed-forward size must be positive".into());
        }
        if !self.layer_types.is_empty() && self.layer_types.len() != self.num_layers {
            return bad(format!("{} layer types for {} layers", self.layer_types.len(), self.num_layers));
        }
        if self.layer_types.contains(&LayerAttention::Sliding) && self.sliding_window.is_none_or(|w| w == 0) {
            return bad("sliding-window layers need a positive `sliding_window`".into());
        }
        let positive = |v: Option<f64>| v.is_none_or(|v| v.is_finite() && v > 0.0);
        if !positive(self.query_pre_attn_scalar)
            || !positive(self.attn_logit_softcapping)
            || !positive(self.final_logit_softcapping)
        {
            return bad("query_pre_attn_scalar and soft-capping values must be positive".into());
        }
        Ok(())
    }

    /// The Hugging Face `config.json` this shape is written as.
    pub fn to_hf_json(&self, bos: Option<u32>, eos: &[u32]) -> serde_json::Value {
        let (family, model_type) = match self.architecture {
            Architecture::Llama => ("Llama", "llama"),
            Architecture::Qwen2 => ("Qwen2", "qwen2"),
            Architecture::Qwen3 => ("Qwen3", "qwen3"),
            Architecture::Gemma => ("Gemma", "gemma"),
            Architecture::Gemma2 => ("Gemma2", "gemma2"),
            Architecture::Gemma3 => ("Gemma3", "gemma3_text"),
        };
        let (task, labels) = match self.head {
            Head::LanguageModel => ("CausalLM", None),
            Head::Score { labels } => ("SequenceClassification", Some(labels)),
        };
        let mut json = serde_json::json!({
            "architectures": [format!("{family}For{task}")],
            "model_type": model_type,
            "vocab_size": self.vocab_size,
            "hidden_size": self.hidden_size,
            "intermediate_size": self.intermediate_size,
            "num_hidden_layers": self.num_layers,
            "num_attention_heads": self.num_heads,
            "num_key_value_heads": self.num_kv_heads,
            "head_dim": self.head_dim,
            "rms_norm_eps": self.rms_norm_eps,
            "rope_theta": self.rope_theta,
            "max_position_embeddings": self.max_position_embeddings,
            "tie_word_embeddings": self.tie_word_embeddings,
            "attention_bias": self.attention_bias && self.architecture == Architecture::Llama,
            "hidden_act": self.hidden_act.hf_name(),
            "torch_dtype": "float32",
            "bos_token_id": bos,
            "eos_token_id": if eos.len() == 1 { serde_json::json!(eos[0]) } else { serde_json::json!(eos) },
        });
        if self.rope_scaling != RopeScaling::Default {
            json["rope_scaling"] = self.rope_scaling.to_hf();
        }
        if self.architecture.is_gemma() {
            json["hidden_activation"] = self.hidden_act.hf_name().into();
            // transformers 5 validates it as an integer, which it always is in practice.
            let scalar = self.query_pre_attn_scalar.unwrap_or(self.head_dim as f64);
            json["query_pre_attn_scalar"] =
                if scalar.fract() == 0.0 { serde_json::json!(scalar as u64) } else { serde_json::json!(scalar) };
            json["attn_logit_softcapping"] = self.attn_logit_softcapping.into();
            json["final_logit_softcapping"] = self.final_logit_softcapping.into();
        }
        if !self.layer_types.is_empty() {
            json["layer_types"] = serde_json::to_value(&self.layer_types).expect("layer types serialise");
        }
        if let Some(window) = self.sliding_window {
            json["sliding_window"] = window.into();
        }
        if let Some(theta) = self.rope_local_theta {
            json["rope_local_base_freq"] = theta.into();
        }
        if let Some(labels) = labels {
            json["num_labels"] = labels.into();
            json["id2label"] =
                (0..labels).map(|i| (i.to_string(), serde_json::Value::from(format!("LABEL_{i}")))).collect();
        }
        json
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::quantized::{GgmlDType, QTensor, gguf_file::Value};

    /// A tiny llama GGUF with these extra metadata entries and tensors, read back.
    fn gguf(extra: &[(&str, Value)], extra_tensors: &[&str]) -> gguf_file::Content {
        let zeros = |shape: &[usize]| {
            let t = candle_core::Tensor::zeros(shape, candle_core::DType::F32, &candle_core::Device::Cpu).unwrap();
            QTensor::quantize(&t, GgmlDType::F32).unwrap()
        };
        let mut metadata = vec![
            ("general.architecture", Value::String("llama".into())),
            ("llama.embedding_length", Value::U32(8)),
            ("llama.attention.head_count", Value::U32(2)),
            ("llama.feed_forward_length", Value::U32(16)),
            ("llama.block_count", Value::U32(1)),
            ("llama.attention.layer_norm_rms_epsilon", Value::F32(1e-5)),
        ];
        metadata.extend(extra.iter().map(|(k, v)| (*k, v.clone())));
        let mut tensors = vec![("token_embd.weight", zeros(&[5, 8]))];
        tensors.extend(extra_tensors.iter().map(|n| (*n, zeros(&[2]))));
        let meta: Vec<(&str, &Value)> = metadata.iter().map(|(k, v)| (*k, v)).collect();
        let refs: Vec<(&str, &QTensor)> = tensors.iter().map(|(n, t)| (*n, t)).collect();
        let mut bytes = std::io::Cursor::new(Vec::new());
        gguf_file::write(&mut bytes, &meta, &refs).unwrap();
        bytes.set_position(0);
        gguf_file::Content::read(&mut bytes).unwrap()
    }

    #[test]
    fn gguf_rope_scaling_is_read_or_refused_by_name() {
        let path = Path::new("m.gguf");
        let plain = ModelConfig::from_gguf(&gguf(&[], &[]), path, None).unwrap();
        assert_eq!(plain.rope_scaling, RopeScaling::Default);
        let linear = [
            ("llama.rope.scaling.type", Value::String("linear".into())),
            ("llama.rope.scaling.factor", Value::F32(2.0)),
        ];
        let config = ModelConfig::from_gguf(&gguf(&linear, &[]), path, None).unwrap();
        assert_eq!(config.rope_scaling, RopeScaling::Linear { factor: 2.0 });
        let yarn = [("llama.rope.scaling.type", Value::String("yarn".into()))];
        let err = ModelConfig::from_gguf(&gguf(&yarn, &[]), path, None).unwrap_err().to_string();
        assert!(err.contains("m.gguf") && err.contains("`yarn` is not supported"), "{err}");
        // Frequency factors (head of 4: two of them) are Llama 3's scaling or refused.
        let with_freqs = gguf(&[], &["rope_freqs.weight"]);
        let config = ModelConfig::from_gguf(&with_freqs, path, Some(&[1.0, 1.0])).unwrap();
        assert!(matches!(config.rope_scaling, RopeScaling::Llama3 { factor: 1.0, .. }), "{:?}", config.rope_scaling);
        let err = ModelConfig::from_gguf(&with_freqs, path, Some(&[1.0, 2.5])).unwrap_err().to_string();
        assert!(err.contains("m.gguf") && err.contains("not Llama 3's"), "{err}");
        let err = ModelConfig::from_gguf(&with_freqs, path, None).unwrap_err().to_string();
        assert!(err.contains("rope_freqs.weight"), "{err}");
    }
}
