//! Preference pairs in the common JSONL format (TRL, OpenRLHF exports): `prompt`,
//! `chosen`, `rejected`, each a string or a list of chat messages.

use std::path::{Path, PathBuf};

use eva_engine::{ChatTemplate, Message, Tokenizer};
use serde::{Deserialize, Serialize};

#[derive(Debug, thiserror::Error)]
pub enum PairsError {
    #[error("{path}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{path}:{line}: {reason}")]
    Line { path: PathBuf, line: usize, reason: String },
    #[error("{path}: no pairs")]
    Empty { path: PathBuf },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Text {
    Plain(String),
    Chat(Vec<Message>),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PreferencePair {
    pub prompt: Text,
    pub chosen: Text,
    pub rejected: Text,
}

/// A pair as token ids, with the reference model's summed log-probs once known.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TokenizedPair {
    pub prompt: Vec<u32>,
    pub chosen: Vec<u32>,
    pub rejected: Vec<u32>,
    #[serde(default)]
    pub ref_chosen: f64,
    #[serde(default)]
    pub ref_rejected: f64,
}

impl TokenizedPair {
    pub fn tokens(&self) -> usize {
        2 * self.prompt.len() + self.chosen.len() + self.rejected.len()
    }
}

/// Read every pair of a JSONL file; a bad line is an error naming file and line.
pub fn read_pairs(path: &Path) -> Result<Vec<PreferencePair>, PairsError> {
    let text = std::fs::read_to_string(path).map_err(|source| PairsError::Io { path: path.to_owned(), source })?;
    let mut pairs = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let pair: PreferencePair = serde_json::from_str(line).map_err(|e| PairsError::Line {
            path: path.to_owned(),
            line: i + 1,
            reason: format!("not a preference pair ({{\"prompt\", \"chosen\", \"rejected\"}}): {e}"),
        })?;
        pairs.push(pair);
    }
    if pairs.is_empty() {
        return Err(PairsError::Empty { path: path.to_owned() });
    }
    Ok(pairs)
}

/// Turn a pair into token ids: through the chat template when the model has one (the
/// completion is what the template adds after the generation prompt, end-of-turn token
/// included), else plain text with EOS after each completion.
pub fn tokenize(
    pair: &PreferencePair,
    tokenizer: &Tokenizer,
    template: Option<&ChatTemplate>,
) -> Result<TokenizedPair, String> {
    let prompt_msgs = match &pair.prompt {
        Text::Plain(s) => vec![Message::new("user", s)],
        Text::Chat(m) => m.clone(),
    };
    let completion_msgs = |t: &Text| -> Vec<Message> {
        match t {
            Text::Plain(s) => vec![Message::new("assistant", s)],
            // The "implicit prompt" form repeats the prompt in front of the answer.
            Text::Chat(m) if m.starts_with(&prompt_msgs) => m[prompt_msgs.len()..].to_vec(),
            Text::Chat(m) => m.clone(),
        }
    };
    let err = |e: eva_engine::Error| e.to_string();
    let (prompt, chosen, rejected) = match template {
        Some(t) => {
            let prompt_text = t.render(&prompt_msgs, true).map_err(err)?;
            let completion = |c: &Text| -> Result<Vec<u32>, String> {
                let mut all = prompt_msgs.clone();
                all.extend(completion_msgs(c));
                let full = t.render(&all, false).map_err(err)?;
                let rest = full
                    .strip_prefix(&prompt_text)
                    .ok_or("the chat template does not extend the prompt with the answer")?;
                tokenizer.encode(rest).map_err(err)
            };
            (
                tokenizer.encode_prompt(&prompt_text).map_err(err)?,
                completion(&pair.chosen)?,
                completion(&pair.rejected)?,
            )
        }
        None => {
            let plain = |t: &Text| match t {
                Text::Plain(s) => s.clone(),
                Text::Chat(m) => m.iter().map(|m| m.content.as_str()).collect::<Vec<_>>().join("\n"),
            };
            let eos = tokenizer.eos.first().copied();
            let completion = |c: &Text| -> Result<Vec<u32>, String> {
                let mut ids = tokenizer.encode(&plain(c)).map_err(err)?;
                ids.extend(eos);
                Ok(ids)
            };
            (
                tokenizer.encode_prompt(&plain(&pair.prompt)).map_err(err)?,
                completion(&pair.chosen)?,
                completion(&pair.rejected)?,
            )
        }
    };
    if prompt.is_empty() || chosen.is_empty() || rejected.is_empty() {
        return Err("prompt, chosen and rejected must each have at least one token".into());
    }
    Ok(TokenizedPair { prompt, chosen, rejected, ref_chosen: 0.0, ref_rejected: 0.0 })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_strings_and_messages_and_names_bad_lines() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pairs.jsonl");
        std::fs::write(
            &path,
            "{\"prompt\": \"Hi\", \"chosen\": \"Hello!\", \"rejected\": \"Go away.\"}\n\n\
             {\"prompt\": [{\"role\": \"user\", \"content\": \"2+2?\"}], \"chosen\": [{\"role\": \"assistant\", \"content\": \"4\"}], \"rejected\": \"5\"}\n",
        )
        .unwrap();
        let pairs = read_pairs(&path).unwrap();
        assert_eq!(pairs.len(), 2);
        assert_eq!(pairs[1].chosen, Text::Chat(vec![Message::new("assistant", "4")]));
        std::fs::write(&path, "{\"prompt\": \"Hi\", \"chosen\": \"a\", \"rejected\": \"b\"}\n{\"prompt\": \"x\"}\n")
            .unwrap();
        let e = read_pairs(&path).unwrap_err().to_string();
        assert!(e.contains("pairs.jsonl:2:") && e.contains("missing field `chosen`"), "{e}");
    }
}
