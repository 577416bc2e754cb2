//! Tokenizers: from `tokenizer.json`, or rebuilt from GGUF metadata so that the ids match
//! llama.cpp's.

use std::path::{Path, PathBuf};
use std::str::FromStr;

use candle_core::quantized::gguf_file;
use serde_json::json;

use crate::error::{Error, Result};

/// Text ⇄ token ids, plus the ids generation stops at.
#[derive(Clone)]
pub struct Tokenizer {
    inner: tokenizers::Tokenizer,
    pub bos: Option<u32>,
    pub eos: Vec<u32>,
    /// Prepend `bos` when encoding a whole prompt (llama 2 style models).
    pub add_bos: bool,
    pub source: PathBuf,
}

impl std::fmt::Debug for Tokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tokenizer")
            .field("bos", &self.bos)
            .field("eos", &self.eos)
            .field("source", &self.source)
            .finish()
    }
}

// Pre-tokenizer regexes of the byte-level BPE families llama.cpp names in `tokenizer.ggml.pre`.
const LLAMA3_SPLIT: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
const QWEN2_SPLIT: &str =
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

impl Tokenizer {
    pub fn from_inner(
        inner: tokenizers::Tokenizer,
        bos: Option<u32>,
        eos: Vec<u32>,
        add_bos: bool,
        source: PathBuf,
    ) -> Self {
        Self { inner, bos, eos, add_bos, source }
    }

    /// Load a Hugging Face `tokenizer.json`.
    pub fn from_file(path: &Path) -> Result<tokenizers::Tokenizer> {
        tokenizers::Tokenizer::from_file(path)
            .map_err(|e| Error::Tokenizer { path: path.to_owned(), reason: e.to_string() })
    }

    /// Rebuild the tokenizer stored in GGUF metadata (`tokenizer.ggml.*`).
    pub fn from_gguf(content: &gguf_file::Content, path: &Path) -> Result<Self> {
        let meta = &content.metadata;
        let err = |reason: String| Error::Tokenizer { path: path.to_owned(), reason };
        let strings = |key: &str| -> Result<Vec<String>> {
            let v = meta.get(key).ok_or_else(|| err(format!("GGUF metadata has no `{key}`")))?;
            let list = v.to_vec().map_err(|e| err(format!("`{key}`: {e}")))?;
            list.iter().map(|s| s.to_string().cloned().map_err(|e| err(format!("`{key}`: {e}")))).collect()
        };
        let id = |key: &str| meta.get(key).and_then(|v| v.to_u32().ok());
        let model = meta.get("tokenizer.ggml.model").and_then(|v| v.to_string().ok()).cloned().unwrap_or_default();
        if model != "gpt2" {
            return Err(err(format!(
                "tokenizer model `{model}` is not supported from GGUF yet (byte-level BPE `gpt2` is); \
                 pass a Hugging Face directory with tokenizer.json instead"
            )));
        }
        let tokens = strings("tokenizer.ggml.tokens")?;
        let merges = strings("tokenizer.ggml.merges")?;
        let types: Vec<i32> = match meta.get("tokenizer.ggml.token_type") {
            Some(v) => v.to_vec().map_err(|e| err(e.to_string()))?.iter().map(|t| t.to_i32().unwrap_or(1)).collect(),
            None => vec![1; tokens.len()],
        };
        let pre = meta.get("tokenizer.ggml.pre").and_then(|v| v.to_string().ok()).map_or("default", |s| s.as_str());
        let byte_level = |use_regex: bool| json!({"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": use_regex});
        let split = |regex: &str| json!({"type": "Split", "pattern": {"Regex": regex}, "behavior": "Isolated", "invert": false});
        let pre_tokenizer = match pre {
            "default" | "gpt-2" | "gpt2" => byte_level(true),
            "smollm" => {
                json!({"type": "Sequence", "pretokenizers": [{"type": "Digits", "individual_digits": true}, byte_level(true)]})
            }
            "llama-bpe" | "llama3" | "smaug-bpe" => {
                json!({"type": "Sequence", "pretokenizers": [split(LLAMA3_SPLIT), byte_level(false)]})
            }
            "qwen2" => json!({"type": "Sequence", "pretokenizers": [split(QWEN2_SPLIT), byte_level(false)]}),
            other => return Err(err(format!("pre-tokenizer `{other}` (tokenizer.ggml.pre) is not supported yet"))),
        };
        // Token types 3 (control) and 4 (user-defined) are matched whole, never split.
        let added: Vec<_> = types
            .iter()
            .enumerate()
            .filter(|(_, t)| matches!(t, 3 | 4))
            .map(|(i, _)| json!({"id": i, "content": tokens[i], "single_word": false, "lstrip": false, "rstrip": false, "normalized": false, "special": true}))
            .collect();
        let vocab: serde_json::Map<String, serde_json::Value> =
            tokens.iter().enumerate().map(|(i, t)| (t.clone(), json!(i))).collect();
        let spec = json!({
            "version": "1.0",
            "truncation": null,
            "padding": null,
            "added_tokens": added,
            "normalizer": null,
            "pre_tokenizer": pre_tokenizer,
            "post_processor": null,
            "decoder": {"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": true, "use_regex": true},
            "model": {"type": "BPE", "dropout": null, "unk_token": null, "continuing_subword_prefix": null,
                      "end_of_word_suffix": null, "fuse_unk": false, "byte_fallback": false, "ignore_merges": false,
                      "vocab": vocab, "merges": merges},
        });
        let inner = tokenizers::Tokenizer::from_str(&spec.to_string()).map_err(|e| err(e.to_string()))?;
        let eos = id("tokenizer.ggml.eos_token_id").into_iter().chain(id("tokenizer.ggml.eot_token_id")).collect();
        let add_bos = meta.get("tokenizer.ggml.add_bos_token").and_then(|v| v.to_bool().ok()).unwrap_or(false);
        Ok(Self::from_inner(inner, id("tokenizer.ggml.bos_token_id"), eos, add_bos, path.to_owned()))
    }

    pub fn vocab_size(&self) -> usize {
        self.inner.get_vocab_size(true)
    }

    pub fn token_id(&self, token: &str) -> Option<u32> {
        self.inner.token_to_id(token)
    }

    /// Token ids of `text`. Special tokens written in the text (`<|im_start|>`) become
    /// their ids, as in a rendered chat template.
    pub fn encode(&self, text: &str) -> Result<Vec<u32>> {
        let enc = self
            .inner
            .encode_fast(text, false)
            .map_err(|e| Error::Tokenizer { path: self.source.clone(), reason: e.to_string() })?;
        Ok(enc.get_ids().to_vec())
    }

    /// Token ids of a whole prompt: `encode`, with BOS in front where the model wants it.
    pub fn encode_prompt(&self, text: &str) -> Result<Vec<u32>> {
        let mut ids = self.encode(text)?;
        if let (true, Some(bos)) = (self.add_bos, self.bos)
            && ids.first() != Some(&bos)
        {
            ids.insert(0, bos);
        }
        Ok(ids)
    }

    pub fn decode(&self, ids: &[u32], skip_special: bool) -> Result<String> {
        self.inner
            .decode(ids, skip_special)
            .map_err(|e| Error::Tokenizer { path: self.source.clone(), reason: e.to_string() })
    }

    pub fn is_eos(&self, id: u32) -> bool {
        self.eos.contains(&id)
    }

    /// Write as a Hugging Face `tokenizer.json`.
    pub fn save(&self, path: &Path) -> Result<()> {
        self.inner.save(path, false).map_err(|e| Error::Tokenizer { path: path.to_owned(), reason: e.to_string() })
    }

    /// The token's text, for `tokenizer_config.json`.
    pub fn token_text(&self, id: u32) -> Option<String> {
        self.inner.id_to_token(id)
    }
}
