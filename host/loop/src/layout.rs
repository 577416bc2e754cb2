//! The run directory: the only code that knows its file names, reads and writes it. Every
//! file is written atomically, and a phase is done exactly when its file exists, so a
//! resumed run loads finished phases and recomputes nothing. The phase index
//! (`phases.json`) records each written file's row count and digest: a finished file that
//! was cut or edited later is refused by name instead of being used.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use eva_engine::Message;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// What can go wrong with a run directory; every variant names the file.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("reading {path}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("writing {path}")]
    Write { path: PathBuf, source: std::io::Error },
    #[error("{path}:{line} is damaged")]
    Damaged { path: PathBuf, line: usize, source: serde_json::Error },
    #[error("{path} is not UTF-8")]
    NotText { path: PathBuf },
    #[error("{path} is missing, though its iteration finished")]
    Missing { path: PathBuf },
    #[error(
        "{path} has {} rows (sha256 {}), but when it was written it had {} rows (sha256 {}), as {index} records: \
         the file was cut or changed since. Restore it, or delete it and the files of the phases after it to \
         compute them again",
        found.rows, &found.sha256[..12], recorded.rows, &recorded.sha256[..12]
    )]
    Changed { path: PathBuf, found: IndexEntry, recorded: IndexEntry, index: PathBuf },
    #[error(
        "{model} is missing or incomplete: iteration {iteration} trained it on {pairs} pairs, and what comes after \
         it starts from it. Restore it from a copy of the run; eva does not put another model in its place"
    )]
    MissingModel { model: PathBuf, iteration: usize, pairs: usize },
    #[error("phase `{phase}`")]
    Phase { phase: String, source: PhaseError },
}

/// Why a phase could not compute its rows: whatever its step reported.
pub type PhaseError = Box<dyn std::error::Error + Send + Sync>;

pub type Result<T, E = Error> = std::result::Result<T, E>;

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
    /// `None` (JSON `null`) when there was nothing to average, as with `--no-evolve`'s
    /// info scores.
    pub mean_reward: Option<f64>,
    pub info_mean: Option<f64>,
    pub info_max: Option<f64>,
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

/// What the phase index records of one file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IndexEntry {
    pub rows: usize,
    pub sha256: String,
}

/// The name of the phase index in a run directory.
pub const PHASE_INDEX: &str = "phases.json";

/// Prefixes of the temporary files and directories eva's atomic writers create beside
/// their targets; a killed process leaves them behind.
const TEMPORARY_PREFIXES: [&str; 3] = [".eva-write-", ".eva-save-", ".checkpoint-"];

pub struct RunStore {
    pub dir: PathBuf,
}

impl RunStore {
    pub fn iteration(&self, t: usize) -> PathBuf {
        self.dir.join(format!("iter-{t}"))
    }

    fn index_path(&self) -> PathBuf {
        self.dir.join(PHASE_INDEX)
    }

    /// The phase index: file (relative to the run directory, `/`-separated) to entry.
    pub fn index(&self) -> Result<BTreeMap<String, IndexEntry>> {
        let path = self.index_path();
        if !path.is_file() {
            return Ok(BTreeMap::new());
        }
        let text = std::fs::read_to_string(&path).map_err(|source| Error::Read { path: path.clone(), source })?;
        serde_json::from_str(&text).map_err(|source| Error::Damaged { path, line: 1, source })
    }

    fn index_key(&self, path: &Path) -> String {
        let relative = path.strip_prefix(&self.dir).unwrap_or(path);
        relative.components().map(|c| c.as_os_str().to_string_lossy()).collect::<Vec<_>>().join("/")
    }

    fn record(&self, path: &Path, entry: IndexEntry) -> Result<()> {
        let mut index = self.index()?;
        index.insert(self.index_key(path), entry);
        let text = serde_json::to_string_pretty(&index).expect("the index serializes") + "\n";
        let path = self.index_path();
        eva_engine::atomic::write_file(&path, text.as_bytes()).map_err(|source| Error::Write { path, source })
    }

    /// The bytes of `path`, checked against the index when it records the file.
    fn read_checked(&self, path: &Path) -> Result<(String, Option<IndexEntry>)> {
        let bytes = std::fs::read(path).map_err(|source| Error::Read { path: path.to_owned(), source })?;
        let found = entry_of(&bytes);
        let recorded = self.index()?.remove(&self.index_key(path));
        if let Some(want) = &recorded
            && *want != found
        {
            return Err(Error::Changed {
                path: path.to_owned(),
                found,
                recorded: want.clone(),
                index: self.index_path(),
            });
        }
        let text = String::from_utf8(bytes).map_err(|_| Error::NotText { path: path.to_owned() })?;
        Ok((text, recorded))
    }

    /// The rows of a JSONL file, `None` when it does not exist yet.
    pub fn read<T: DeserializeOwned>(&self, path: &Path) -> Result<Option<Vec<T>>> {
        if !path.is_file() {
            return Ok(None);
        }
        let (text, _) = self.read_checked(path)?;
        parse_rows(path, &text).map(Some)
    }

    /// Write a file that is written once (a phase's, the seeds), and index it.
    pub fn write<T: Serialize>(&self, path: &Path, rows: &[T]) -> Result<()> {
        let text = self.rewrite(path, rows)?;
        self.record(path, entry_of(text.as_bytes()))
    }

    /// Write a file that is written again as the run goes (the summaries), unindexed: a
    /// reader could find it between its write and the index's. Returns its text.
    pub fn rewrite<T: Serialize>(&self, path: &Path, rows: &[T]) -> Result<String> {
        let text: String = rows.iter().map(|r| serde_json::to_string(r).expect("json") + "\n").collect();
        let write = |source| Error::Write { path: path.to_owned(), source };
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(write)?;
        }
        eva_engine::atomic::write_file(path, text.as_bytes()).map_err(write)?;
        Ok(text)
    }

    /// A phase whose output is `path`: loaded when a previous run finished it, else
    /// computed and written.
    pub fn phase<T: Serialize + DeserializeOwned>(
        &self,
        name: &str,
        path: &Path,
        compute: impl FnOnce() -> Result<Vec<T>, PhaseError>,
    ) -> Result<Vec<T>> {
        if path.is_file() {
            let (text, recorded) = self.read_checked(path)?;
            let rows = parse_rows(path, &text)?;
            if recorded.is_none() {
                // Written atomically by a run killed before it could index the file, or by
                // eva before the index existed: from now on, its digest is checked.
                self.record(path, entry_of(text.as_bytes()))?;
            }
            tracing::info!(phase = name, "finished earlier; loaded {}", path.display());
            return Ok(rows);
        }
        let _span = tracing::info_span!("phase", name).entered();
        let rows = compute().map_err(|source| Error::Phase { phase: name.to_owned(), source })?;
        self.write(path, &rows)?;
        Ok(rows)
    }

    /// Remove what killed writers left behind (temporary files and directories of the
    /// atomic writers, some as large as a model); returns how many were removed.
    pub fn remove_leftovers(&self) -> Result<usize> {
        fn walk(dir: &Path, removed: &mut usize) -> std::io::Result<()> {
            for entry in std::fs::read_dir(dir)? {
                let entry = entry?;
                let name = entry.file_name();
                let is_dir = entry.file_type()?.is_dir();
                if TEMPORARY_PREFIXES.iter().any(|p| name.to_string_lossy().starts_with(p)) {
                    tracing::info!("removing {}, left by a killed run", entry.path().display());
                    if is_dir {
                        std::fs::remove_dir_all(entry.path())?
                    } else {
                        std::fs::remove_file(entry.path())?
                    }
                    *removed += 1;
                } else if is_dir {
                    walk(&entry.path(), removed)?;
                }
            }
            Ok(())
        }
        let mut removed = 0;
        walk(&self.dir, &mut removed).map_err(|source| Error::Write { path: self.dir.clone(), source })?;
        Ok(removed)
    }

    /// The model a finished iteration trained, `None` when it had no pairs to train on; an
    /// error naming the directory when it trained one that is gone: never another model in
    /// its place.
    pub fn trained_model(&self, m: &IterationSummary) -> Result<Option<PathBuf>> {
        let model = self.iteration(m.iteration).join("model");
        if m.pairs == 0 {
            return Ok(None);
        }
        if !model.join("config.json").is_file() {
            return Err(Error::MissingModel { model, iteration: m.iteration, pairs: m.pairs });
        }
        Ok(Some(model))
    }
}

fn entry_of(bytes: &[u8]) -> IndexEntry {
    IndexEntry { rows: bytes.iter().filter(|&&b| b == b'\n').count(), sha256: eva_plugin_runtime::digest(bytes) }
}

fn parse_rows<T: DeserializeOwned>(path: &Path, text: &str) -> Result<Vec<T>> {
    text.lines()
        .enumerate()
        .map(|(i, l)| {
            serde_json::from_str(l).map_err(|source| Error::Damaged { path: path.to_owned(), line: i + 1, source })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store() -> (tempfile::TempDir, RunStore) {
        let dir = tempfile::tempdir().unwrap();
        let store = RunStore { dir: dir.path().to_owned() };
        (dir, store)
    }

    #[test]
    fn a_cut_or_edited_phase_file_is_refused_by_name() {
        let (_dir, store) = store();
        let path = store.iteration(1).join("pairs.jsonl");
        store.write(&path, &[1, 2, 3, 4, 5]).unwrap();
        assert_eq!(store.read::<u32>(&path).unwrap().unwrap(), [1, 2, 3, 4, 5]);
        std::fs::write(&path, "1\n2\n3\n4\n").unwrap();
        let err = store.read::<u32>(&path).unwrap_err().to_string();
        assert!(err.contains("pairs.jsonl has 4 rows") && err.contains("it had 5 rows"), "{err}");
        let err = store.phase::<u32>("pair", &path, || panic!("not recomputed")).unwrap_err().to_string();
        assert!(err.contains("cut or changed"), "{err}");
        std::fs::write(&path, "1\n2\n3\n4\n6\n").unwrap();
        assert!(store.read::<u32>(&path).is_err(), "same row count, other bytes");
        assert_eq!(store.index().unwrap()["iter-1/pairs.jsonl"].rows, 5);
    }

    #[test]
    fn files_written_before_the_index_are_indexed_when_loaded() {
        let (_dir, store) = store();
        let path = store.iteration(1).join("info.jsonl");
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, "7\n8\n").unwrap();
        assert_eq!(store.read::<u32>(&path).unwrap().unwrap(), [7, 8], "no entry: read as is");
        assert!(store.index().unwrap().is_empty(), "reading indexes nothing");
        assert_eq!(store.phase::<u32>("info", &path, || panic!("finished")).unwrap(), [7, 8]);
        std::fs::write(&path, "7\n").unwrap();
        assert!(store.read::<u32>(&path).is_err(), "checked from then on");
    }

    #[test]
    fn leftovers_of_killed_writers_are_removed() {
        let (_dir, store) = store();
        let it = store.iteration(2);
        std::fs::create_dir_all(it.join(".eva-save-abc/inner")).unwrap();
        std::fs::write(it.join(".eva-save-abc/inner/model.safetensors"), "w").unwrap();
        std::fs::create_dir_all(it.join("train/.checkpoint-x")).unwrap();
        std::fs::write(store.dir.join(".eva-write-1"), "half").unwrap();
        std::fs::write(it.join("answers.jsonl"), "kept").unwrap();
        assert_eq!(store.remove_leftovers().unwrap(), 3);
        assert!(!it.join(".eva-save-abc").exists() && !it.join("train/.checkpoint-x").exists());
        assert!(!store.dir.join(".eva-write-1").exists());
        assert!(it.join("answers.jsonl").exists() && it.join("train").is_dir());
    }
}
