//! The run directory: the only code that reads and writes it. Every file is written
//! atomically, and a phase is done exactly when its file exists, so `--resume` loads
//! finished phases and recomputes nothing.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use eva_engine::Message;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::jsonl::{prompt_messages, read_rows};

/// A prompt of some X_t, with its lineage.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PromptRecord {
    pub id: String,
    pub messages: Vec<Message>,
    /// `seed`, `evolved` or `buffer` (an old prompt mixed back in).
    pub origin: String,
    /// The prompt it was evolved from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<String>,
    /// How the evolver made it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
}

/// One sampled answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Answer {
    pub text: String,
    pub tokens: u32,
    pub reward: f64,
}

/// A prompt's n scored answers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Answers {
    pub id: String,
    pub answers: Vec<Answer>,
}

/// A prompt's informativeness.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Info {
    pub id: String,
    pub info: f64,
}

/// One evolved prompt and whether it survived deduplication.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvolvedRecord {
    pub id: String,
    pub parent: String,
    pub method: String,
    pub messages: Vec<Message>,
    pub kept: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dropped_because: Option<String>,
}

/// A preference pair, in TRL's format plus its provenance.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PairRecord {
    pub id: String,
    pub prompt: Vec<Message>,
    pub chosen: String,
    pub rejected: String,
    pub chosen_reward: f64,
    pub rejected_reward: f64,
}

/// One line of `metrics.jsonl`: an iteration's summary.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IterationSummary {
    pub iteration: usize,
    pub prompts: usize,
    pub mean_reward: f64,
    pub info_mean: f64,
    pub info_max: f64,
    pub selected: usize,
    pub evolved: usize,
    pub kept: usize,
    pub next_prompts: usize,
    pub pairs: usize,
    pub mean_prompt_words: f64,
    pub first_loss: Option<f64>,
    pub last_loss: Option<f64>,
    pub last_margin: Option<f64>,
}

/// The prompts of a JSONL file (`prompt` or `messages`, optional unique `id`, default
/// `seed-LINE`), every line checked; errors name `FILE:LINE`.
pub fn read_prompts(path: &Path) -> Result<Vec<PromptRecord>> {
    let rows = read_rows(path)?;
    let mut seen = std::collections::HashSet::new();
    rows.iter()
        .map(|row| {
            let at = format!("{}:{}", path.display(), row.line);
            let messages = prompt_messages(&row.fields).map_err(|e| anyhow::anyhow!("{at}: {e}"))?;
            let id = match row.fields.get("id") {
                None => format!("seed-{}", row.line),
                Some(serde_json::Value::String(s)) if !s.trim().is_empty() => s.clone(),
                Some(serde_json::Value::Number(n)) => n.to_string(),
                Some(_) => bail!("{at}: `id` must be a non-empty string or a number"),
            };
            if !seen.insert(id.clone()) {
                bail!("{at}: the id `{id}` is used twice");
            }
            Ok(PromptRecord { id, messages, origin: "seed".into(), parent: None, method: None })
        })
        .collect()
}

pub struct RunStore {
    pub dir: PathBuf,
}

impl RunStore {
    pub fn iteration(&self, t: usize) -> PathBuf {
        self.dir.join(format!("iter-{t}"))
    }

    /// The rows of a JSONL file, `None` when it does not exist yet.
    pub fn read<T: DeserializeOwned>(&self, path: &Path) -> Result<Option<Vec<T>>> {
        if !path.is_file() {
            return Ok(None);
        }
        let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        text.lines()
            .enumerate()
            .map(|(i, l)| serde_json::from_str(l).with_context(|| format!("{}:{} is damaged", path.display(), i + 1)))
            .collect::<Result<Vec<T>>>()
            .map(Some)
    }

    pub fn write<T: Serialize>(&self, path: &Path, rows: &[T]) -> Result<()> {
        let text: String = rows.iter().map(|r| serde_json::to_string(r).expect("json") + "\n").collect();
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
        }
        eva_engine::atomic::write_file(path, text.as_bytes()).with_context(|| format!("writing {}", path.display()))
    }

    /// A phase whose output is `path`: loaded when a previous run finished it, else
    /// computed and written.
    pub fn phase<T: Serialize + DeserializeOwned>(
        &self,
        name: &str,
        path: &Path,
        compute: impl FnOnce() -> Result<Vec<T>>,
    ) -> Result<Vec<T>> {
        if let Some(rows) = self.read(path)? {
            tracing::info!(phase = name, "finished earlier; loaded {}", path.display());
            return Ok(rows);
        }
        let _span = tracing::info_span!("phase", name).entered();
        let rows = compute().with_context(|| format!("phase `{name}`"))?;
        self.write(path, &rows)?;
        Ok(rows)
    }
}
