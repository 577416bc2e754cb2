//! The shape of a decoder-only transformer, read from a Hugging Face `config.json` or from
//! GGUF metadata.

use std::path::Path;

use candle_core::quantized::gguf_file;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

mod rope;
pub use rope::RopeScaling;

/// The model families the engine runs. They share one forward pass and differ in a few
/// switches: biases on q/k/v (qwen2) and RMS norms on q and k (qwen3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Architecture {
    Llama,
    Qwen2,
    Qwen3,
}

impl Architecture {
    fn parse(name: &str, path: &Path) -> Result<Self> {
        match name {
            "llama" | "mistral" => Ok(Self::Llama),
            "qwen2" => Ok(Self::Qwen2),
            "qwen3" => Ok(Self::Qwen3),
            other => Err(Error::UnsupportedArchitecture { path: path.to_owned(), arch: other.to_owned() }),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Llama => "llama",
            Self::Qwen2 => "qwen2",
            Self::Qwen3 => "qwen3",
        }
    }

    pub fn qkv_bias(self) -> bool {
        self == Self::Qwen2
    }

    pub fn qk_norm(self) -> bool {
        self == Self::Qwen3
    }
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
}

/// The fields of a Hugging Face `config.json` the engine reads.
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
    #[serde(default = "default_rope_theta")]
    rope_theta: f64,
    #[serde(default = "default_max_positions")]
    max_position_embeddings: usize,
    #[serde(default)]
    tie_word_embeddings: bool,
    #[serde(default)]
    attention_bias: bool,
    #[serde(default)]
    rope_scaling: Option<serde_json::Value>,
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

fn default_rope_theta() -> f64 {
    10_000.0
}

fn default_max_positions() -> usize {
    4096
}

impl ModelConfig {
    /// Read a Hugging Face `config.json`.
    pub fn from_hf_json(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|source| Error::Io { path: path.to_owned(), source })?;
        let hf: HfConfig = serde_json::from_str(&text)
            .map_err(|e| Error::Invalid { path: path.to_owned(), what: format!("not a usable config.json: {e}") })?;
        let rope_scaling = RopeScaling::from_hf(
            hf.rope_scaling.as_ref().unwrap_or(&serde_json::Value::Null),
            hf.max_position_embeddings,
        )
        .map_err(|what| Error::Invalid { path: path.to_owned(), what })?;
        let architecture = Architecture::parse(&hf.model_type, path)?;
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
            rope_theta: hf.rope_theta,
            rope_scaling,
            max_position_embeddings: hf.max_position_embeddings,
            tie_word_embeddings: hf.tie_word_embeddings,
            attention_bias: hf.attention_bias || architecture.qkv_bias(),
            head: hf.head(),
        };
        config.check(path)?;
        Ok(config)
    }

    /// Read the shape from GGUF metadata (`{arch}.block_count` and friends).
    pub fn from_gguf(content: &gguf_file::Content, path: &Path, has_output: bool) -> Result<Self> {
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
        let unsupported = |what: String| Error::Invalid { path: path.to_owned(), what };
        // Llama 3.1's rescaling is baked into a frequency-factor tensor that HF configs
        // cannot express; using the file without it would be silently wrong.
        if content.tensor_infos.contains_key("rope_freqs.weight") {
            return Err(unsupported(
                "rope frequency factors (`rope_freqs.weight`, Llama 3.1 rope scaling) are not \
                                    supported yet; a Hugging Face directory of the model is"
                    .into(),
            ));
        }
        let scaling_type = get(&key("rope.scaling.type")).and_then(|v| v.to_string().ok()).map(String::as_str);
        let rope_scaling = match scaling_type {
            None | Some("none") => RopeScaling::Default,
            Some("linear") => RopeScaling::Linear {
                factor: float("rope.scaling.factor")
                    .filter(|f| *f > 0.0)
                    .ok_or_else(|| missing(&key("rope.scaling.factor")))?,
            },
            Some(other) => {
                return Err(unsupported(format!("GGUF rope scaling `{other}` is not supported (linear is)")));
            }
        };
        let config = Self {
            architecture,
            vocab_size,
            hidden_size,
            intermediate_size: int("feed_forward_length")?,
            num_layers: int("block_count")?,
            num_heads,
            num_kv_heads: int("attention.head_count_kv").unwrap_or(num_heads),
            head_dim: int("attention.key_length").unwrap_or(hidden_size / num_heads.max(1)),
            rms_norm_eps: float("attention.layer_norm_rms_epsilon")
                .ok_or_else(|| missing(&key("attention.layer_norm_rms_epsilon")))?,
            rope_theta: float("rope.freq_base").unwrap_or(10_000.0),
            rope_scaling,
            max_position_embeddings: int("context_length").unwrap_or(4096),
            tie_word_embeddings: !has_output,
            attention_bias: architecture.qkv_bias(),
            head: Head::LanguageModel,
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
        Ok(())
    }

    /// The Hugging Face `config.json` this shape is written as.
    pub fn to_hf_json(&self, bos: Option<u32>, eos: &[u32]) -> serde_json::Value {
        let (family, model_type) = match self.architecture {
            Architecture::Llama => ("Llama", "llama"),
            Architecture::Qwen2 => ("Qwen2", "qwen2"),
            Architecture::Qwen3 => ("Qwen3", "qwen3"),
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
            "hidden_act": "silu",
            "torch_dtype": "float32",
            "bos_token_id": bos,
            "eos_token_id": if eos.len() == 1 { serde_json::json!(eos[0]) } else { serde_json::json!(eos) },
        });
        if self.rope_scaling != RopeScaling::Default {
            json["rope_scaling"] = self.rope_scaling.to_hf();
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
        let plain = ModelConfig::from_gguf(&gguf(&[], &[]), path, false).unwrap();
        assert_eq!(plain.rope_scaling, RopeScaling::Default);
        let linear = [
            ("llama.rope.scaling.type", Value::String("linear".into())),
            ("llama.rope.scaling.factor", Value::F32(2.0)),
        ];
        let config = ModelConfig::from_gguf(&gguf(&linear, &[]), path, false).unwrap();
        assert_eq!(config.rope_scaling, RopeScaling::Linear { factor: 2.0 });
        let yarn = [("llama.rope.scaling.type", Value::String("yarn".into()))];
        let err = ModelConfig::from_gguf(&gguf(&yarn, &[]), path, false).unwrap_err().to_string();
        assert!(err.contains("m.gguf") && err.contains("`yarn` is not supported"), "{err}");
        let err = ModelConfig::from_gguf(&gguf(&[], &["rope_freqs.weight"]), path, false).unwrap_err().to_string();
        assert!(err.contains("m.gguf") && err.contains("rope_freqs.weight"), "{err}");
    }
}
