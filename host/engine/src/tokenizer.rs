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
        let flag = |key: &str| meta.get(key).and_then(|v| v.to_bool().ok());
        let model = meta.get("tokenizer.ggml.model").and_then(|v| v.to_string().ok()).cloned().unwrap_or_default();
        let tokens = strings("tokenizer.ggml.tokens")?;
        let types: Vec<i32> = match meta.get("tokenizer.ggml.token_type") {
            Some(v) => v.to_vec().map_err(|e| err(e.to_string()))?.iter().map(|t| t.to_i32().unwrap_or(1)).collect(),
            None => vec![1; tokens.len()],
        };
        if types.len() != tokens.len() {
            return Err(err(format!("{} token types for {} tokens", types.len(), tokens.len())));
        }
        let vocab: serde_json::Map<String, serde_json::Value> =
            tokens.iter().enumerate().map(|(i, t)| (t.clone(), json!(i))).collect();
        let (normalizer, pre_tokenizer, decoder, bpe) = match model.as_str() {
            "gpt2" => {
                let merges = strings("tokenizer.ggml.merges")?;
                let pre =
                    meta.get("tokenizer.ggml.pre").and_then(|v| v.to_string().ok()).map_or("default", |s| s.as_str());
                let decoder =
                    json!({"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": true, "use_regex": true});
                (
                    json!(null),
                    byte_level_pre_tokenizer(pre).map_err(err)?,
                    decoder,
                    json!({"merges": merges, "byte_fallback": false}),
                )
            }
            "llama" => {
                let scores: Vec<f32> = match meta.get("tokenizer.ggml.scores") {
                    Some(v) => {
                        v.to_vec().map_err(|e| err(e.to_string()))?.iter().map(|s| s.to_f32().unwrap_or(0.0)).collect()
                    }
                    None => return Err(err("GGUF metadata has no `tokenizer.ggml.scores`".into())),
                };
                if scores.len() != tokens.len() {
                    return Err(err(format!("{} token scores for {} tokens", scores.len(), tokens.len())));
                }
                let prefix = flag("tokenizer.ggml.add_space_prefix").unwrap_or(true);
                let (normalizer, decoder) = spm_text_rules(prefix);
                let merges = spm_merges(&tokens, &scores, &types);
                (normalizer, json!(null), decoder, json!({"merges": merges, "byte_fallback": true}))
            }
            other => {
                return Err(err(format!(
                    "tokenizer model `{other}` is not supported from GGUF (byte-level BPE `gpt2` and \
                     SentencePiece `llama` are); pass a Hugging Face directory with tokenizer.json instead"
                )));
            }
        };
        // Like llama.cpp: control (3) and unknown (2) tokens are special, user-defined ones
        // (4, e.g. gemma's newline runs) are matched whole but decode as text.
        let added: Vec<_> = types
            .iter()
            .enumerate()
            .filter(|(_, t)| matches!(t, 2..=4))
            .map(|(i, t)| json!({"id": i, "content": tokens[i], "single_word": false, "lstrip": false, "rstrip": false, "normalized": false, "special": *t != 4}))
            .collect();
        let spec = json!({
            "version": "1.0",
            "truncation": null,
            "padding": null,
            "added_tokens": added,
            "normalizer": normalizer,
            "pre_tokenizer": pre_tokenizer,
            "post_processor": null,
            "decoder": decoder,
            "model": {"type": "BPE", "dropout": null, "unk_token": null, "continuing_subword_prefix": null,
                      "end_of_word_suffix": null, "fuse_unk": false, "byte_fallback": bpe["byte_fallback"], "ignore_merges": false,
                      "vocab": vocab, "merges": bpe["merges"]},
        });
        let inner = tokenizers::Tokenizer::from_str(&spec.to_string()).map_err(|e| err(e.to_string()))?;
        let eos = id("tokenizer.ggml.eos_token_id").into_iter().chain(id("tokenizer.ggml.eot_token_id")).collect();
        let add_bos = flag("tokenizer.ggml.add_bos_token").unwrap_or(false);
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

/// The pre-tokenizer of a byte-level BPE family, by llama.cpp's `tokenizer.ggml.pre` name.
fn byte_level_pre_tokenizer(pre: &str) -> std::result::Result<serde_json::Value, String> {
    let byte_level = |use_regex: bool| json!({"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": use_regex});
    let split =
        |regex: &str| json!({"type": "Split", "pattern": {"Regex": regex}, "behavior": "Isolated", "invert": false});
    Ok(match pre {
        "default" | "gpt-2" | "gpt2" => byte_level(true),
        "smollm" => {
            json!({"type": "Sequence", "pretokenizers": [{"type": "Digits", "individual_digits": true}, byte_level(true)]})
        }
        "llama-bpe" | "llama3" | "smaug-bpe" => {
            json!({"type": "Sequence", "pretokenizers": [split(LLAMA3_SPLIT), byte_level(false)]})
        }
        "qwen2" => json!({"type": "Sequence", "pretokenizers": [split(QWEN2_SPLIT), byte_level(false)]}),
        other => return Err(format!("pre-tokenizer `{other}` (tokenizer.ggml.pre) is not supported yet")),
    })
}

/// SentencePiece's text rules as llama.cpp applies them: spaces are `▁`, optionally one in
/// front of the text; decoding undoes both and turns `<0xNN>` byte tokens back into bytes.
fn spm_text_rules(add_space_prefix: bool) -> (serde_json::Value, serde_json::Value) {
    let replace = json!({"type": "Replace", "pattern": {"String": " "}, "content": "\u{2581}"});
    let normalizer = if add_space_prefix {
        json!({"type": "Sequence", "normalizers": [{"type": "Prepend", "prepend": "\u{2581}"}, replace]})
    } else {
        replace
    };
    let mut steps = vec![
        json!({"type": "Replace", "pattern": {"String": "\u{2581}"}, "content": " "}),
        json!({"type": "ByteFallback"}),
        json!({"type": "Fuse"}),
    ];
    if add_space_prefix {
        steps.push(json!({"type": "Strip", "content": " ", "start": 1, "stop": 0}));
    }
    (normalizer, json!({"type": "Sequence", "decoders": steps}))
}

/// BPE merges equivalent to llama.cpp's SentencePiece tokenizer, which repeatedly joins
/// the adjacent pair whose joined text is the highest-scoring token: every split of a
/// token into two tokens is a merge, ranked by the joined token's score.
fn spm_merges(tokens: &[String], scores: &[f32], types: &[i32]) -> Vec<(String, String)> {
    let known: std::collections::HashSet<&str> = tokens.iter().map(String::as_str).collect();
    let mut merges: Vec<(f32, usize, &str, &str)> = Vec::new();
    for (id, token) in tokens.iter().enumerate() {
        // Control and byte tokens are never built from pieces.
        if matches!(types[id], 3 | 6) {
            continue;
        }
        for (at, _) in token.char_indices().skip(1) {
            let (left, right) = token.split_at(at);
            if known.contains(left) && known.contains(right) {
                merges.push((scores[id], id, left, right));
            }
        }
    }
    merges.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
    merges.into_iter().map(|(_, _, l, r)| (l.to_owned(), r.to_owned())).collect()
}
