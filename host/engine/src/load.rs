//! Opening a model: a GGUF file, or a Hugging Face directory.

use std::fs::File;
use std::io::BufReader;
use std::path::{Path, PathBuf};

use candle_core::Device;
use candle_core::quantized::gguf_file;

use crate::chat::ChatTemplate;
use crate::config::ModelConfig;
use crate::error::{Error, Result};
use crate::tokenizer::Tokenizer;
use crate::weights::Weights;

/// Everything read from a model's files: shape, f32 weights, tokenizer, chat template.
#[derive(Debug)]
pub struct ModelFiles {
    pub path: PathBuf,
    pub config: ModelConfig,
    pub weights: Weights,
    pub tokenizer: Tokenizer,
    /// `None` for base models that ship no template.
    pub chat_template: Option<ChatTemplate>,
}

impl ModelFiles {
    /// Open `path`: a `.gguf` file or a directory holding `config.json`.
    pub fn open(path: &Path, device: &Device) -> Result<Self> {
        let _span = tracing::info_span!("load model", path = %path.display()).entered();
        let meta = std::fs::metadata(path).map_err(|source| Error::Io { path: path.to_owned(), source })?;
        let files = if meta.is_dir() {
            if !path.join("config.json").is_file() {
                return Err(Error::NotAModel { path: path.to_owned() });
            }
            Self::open_hf_dir(path, device)?
        } else {
            Self::open_gguf(path, device)?
        };
        files.check_tokenizer()?;
        for (name, shape) in crate::weights::expected_shapes(&files.config) {
            files.weights.expect(&name, &shape)?;
        }
        tracing::info!(
            arch = files.config.architecture.name(),
            layers = files.config.num_layers,
            hidden = files.config.hidden_size,
            vocab = files.config.vocab_size,
            "model loaded"
        );
        Ok(files)
    }

    fn open_gguf(path: &Path, device: &Device) -> Result<Self> {
        let file = File::open(path).map_err(|source| Error::Io { path: path.to_owned(), source })?;
        let mut reader = BufReader::new(file);
        let content = gguf_file::Content::read(&mut reader).map_err(|e| {
            let reason = e.to_string();
            if reason.contains("magic") {
                Error::NotAModel { path: path.to_owned() }
            } else {
                Error::Corrupt { path: path.to_owned(), reason }
            }
        })?;
        let rope_freqs = match content.tensor_infos.contains_key("rope_freqs.weight") {
            true => Some(
                content
                    .tensor(&mut reader, "rope_freqs.weight", &Device::Cpu)
                    .and_then(|q| q.dequantize(&Device::Cpu)?.flatten_all()?.to_vec1::<f32>())
                    .map_err(|e| Error::Corrupt {
                        path: path.to_owned(),
                        reason: format!("`rope_freqs.weight`: {e}"),
                    })?,
            ),
            false => None,
        };
        let config = ModelConfig::from_gguf(&content, path, rope_freqs.as_deref())?;
        let tokenizer = Tokenizer::from_gguf(&content, path)?;
        let weights = Weights::from_gguf(&content, &mut reader, path, &config, device)?;
        let chat_template = match content.metadata.get("tokenizer.chat_template").and_then(|v| v.to_string().ok()) {
            Some(src) => Some(template(src, &tokenizer, path)?),
            None => None,
        };
        Ok(Self { path: path.to_owned(), config, weights, tokenizer, chat_template })
    }

    fn open_hf_dir(dir: &Path, device: &Device) -> Result<Self> {
        let config = ModelConfig::from_hf_json(&dir.join("config.json"))?;
        let tok_path = dir.join("tokenizer.json");
        if !tok_path.is_file() {
            return Err(Error::Missing { path: dir.to_owned(), what: "tokenizer.json".into() });
        }
        let inner = Tokenizer::from_file(&tok_path)?;
        let read_json = |name: &str| -> Result<Option<serde_json::Value>> {
            let p = dir.join(name);
            if !p.is_file() {
                return Ok(None);
            }
            let text = std::fs::read_to_string(&p).map_err(|source| Error::Io { path: p.clone(), source })?;
            serde_json::from_str(&text).map(Some).map_err(|e| Error::Invalid { path: p, what: e.to_string() })
        };
        let tok_config = read_json("tokenizer_config.json")?.unwrap_or_default();
        let model_config = read_json("config.json")?.unwrap_or_default();
        let generation = read_json("generation_config.json")?.unwrap_or_default();
        // Special tokens are written either as text or as {"content": text}.
        let token_text = |v: &serde_json::Value| v.as_str().or_else(|| v["content"].as_str()).map(str::to_owned);
        let id_of = |key: &str| tok_config.get(key).and_then(token_text).and_then(|t| inner.token_to_id(&t));
        let ids = |v: &serde_json::Value| -> Vec<u32> {
            match v {
                serde_json::Value::Number(n) => n.as_u64().map(|n| vec![n as u32]).unwrap_or_default(),
                serde_json::Value::Array(a) => a.iter().filter_map(|n| n.as_u64().map(|n| n as u32)).collect(),
                _ => vec![],
            }
        };
        let mut eos: Vec<u32> = ids(&generation["eos_token_id"]);
        eos.extend(ids(&model_config["eos_token_id"]));
        eos.extend(id_of("eos_token"));
        eos.sort_unstable();
        eos.dedup();
        let bos = id_of("bos_token").or_else(|| model_config["bos_token_id"].as_u64().map(|n| n as u32));
        let add_bos = tok_config["add_bos_token"].as_bool().unwrap_or(false);
        let tokenizer = Tokenizer::from_inner(inner, bos, eos, add_bos, tok_path);
        let weights = Weights::from_safetensors_dir(dir, device)?;
        let chat_template = match tok_config.get("chat_template") {
            Some(serde_json::Value::String(src)) => {
                Some(template(src, &tokenizer, &dir.join("tokenizer_config.json"))?)
            }
            // A list of named templates: take the default one.
            Some(serde_json::Value::Array(list)) => list
                .iter()
                .find(|t| t["name"] == "default")
                .and_then(|t| t["template"].as_str())
                .map(|src| template(src, &tokenizer, &dir.join("tokenizer_config.json")))
                .transpose()?,
            _ => None,
        };
        Ok(Self { path: dir.to_owned(), config, weights, tokenizer, chat_template })
    }

    /// A tokenizer whose ids overflow the embedding table would index out of bounds.
    fn check_tokenizer(&self) -> Result<()> {
        let n = self.tokenizer.vocab_size();
        if n > self.config.vocab_size {
            return Err(Error::TokenizerMismatch {
                path: self.tokenizer.source.clone(),
                reason: format!("it has {n} tokens, the model's embedding table {}", self.config.vocab_size),
            });
        }
        Ok(())
    }
}

fn template(src: &str, tokenizer: &Tokenizer, path: &Path) -> Result<ChatTemplate> {
    let text = |id: Option<u32>| id.and_then(|i| tokenizer.token_text(i)).unwrap_or_default();
    ChatTemplate::new(src, &text(tokenizer.bos), &text(tokenizer.eos.first().copied()), path)
}
