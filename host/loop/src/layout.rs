//! The run directory: the only code that knows its file names, reads and writes it. Every
//! file is written atomically, and a phase is done exactly when its file exists, so a
//! resumed run loads finished phases and recomputes nothing. The phase index
//! (`phases.json`) records each written file's row count and digest: a finished file that
//! was cut or edited later is refused by name instead of being used.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use eva_engine::Message;
use serde::de::DeserializeOwned;

pub use crate::cost::Cost;
use crate::cost::Meter;
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
    /// What a verifiable reward checks the answers against (a ground-truth answer, the
    /// constraints the answer must satisfy, ...), from the seed row; kept with the prompt
    /// in every phase file and pair.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub labels: Option<Labels>,
}

/// A prompt's labels: any JSON object.
pub type Labels = serde_json::Map<String, serde_json::Value>;

/// Labels as plugins and rewards receive them: a JSON object as text.
pub fn labels_text(labels: &Labels) -> String {
    // A map serializes as its JSON object; writing it cannot fail.
    serde_json::to_string(labels).expect("a JSON map serializes")
}

impl PromptRecord {
    /// The prompt's labels as plugins and rewards receive them ([`labels_text`]).
    pub fn labels_json(&self) -> Option<String> {
        self.labels.as_ref().map(labels_text)
    }
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
    /// The labels the evolver gave the new prompt (contract 0.2 evolvers only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub labels: Option<Labels>,
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
    /// The prompt's labels.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub labels: Option<Labels>,
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
    /// The policy that wrote it, for a creator or pair phase.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub producer: Option<Producer>,
    /// What computing it cost (absent for files loaded, not computed, by this eva).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cost: Option<Cost>,
}

impl IndexEntry {
    /// Whether two entries describe the same bytes (whoever wrote them).
    fn same_bytes(&self, other: &IndexEntry) -> bool {
        (self.rows, &self.sha256) == (other.rows, &other.sha256)
    }
}

/// The policy that wrote a phase's file: a plugin's declared name and version, the
/// sha256 of its component and the settings it ran with; a policy in plain Rust gives
/// its type's name.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Producer {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digest: Option<String>,
    #[serde(default, skip_serializing_if = "serde_json::Map::is_empty")]
    pub config: serde_json::Map<String, serde_json::Value>,
}

impl Producer {
    /// A producer known by name only.
    pub fn named(name: impl Into<String>) -> Self {
        Producer { name: name.into(), version: None, digest: None, config: Default::default() }
    }

    /// A loaded plugin: its name, version, component digest and settings.
    pub fn plugin(plugin: &eva_plugin_runtime::Plugin) -> Self {
        use eva_plugin_runtime::ConfigValue;
        let config = plugin
            .config()
            .into_iter()
            .map(|(key, value)| {
                let value = match value {
                    ConfigValue::Boolean(b) => serde_json::Value::from(b),
                    ConfigValue::Integer(i) => serde_json::Value::from(i),
                    ConfigValue::Float(f) => serde_json::Value::from(f),
                    ConfigValue::Text(t) => serde_json::Value::from(t),
                };
                (key, value)
            })
            .collect();
        Producer {
            name: plugin.name().to_owned(),
            version: Some(plugin.metadata().version.clone()),
            digest: Some(format!("sha256:{}", plugin.digest())),
            config,
        }
    }
}

/// Where in its output directory a trainer keeps the iteration's LoRA update alone.
pub const DELTA_ADAPTER: &str = "adapter";

/// The name of the phase index in a run directory.
pub const PHASE_INDEX: &str = "phases.json";

/// Prefixes of the temporary files and directories eva's atomic writers create beside
/// their targets; a killed process leaves them behind.
const TEMPORARY_PREFIXES: [&str; 3] = [".eva-write-", ".eva-save-", ".checkpoint-"];

/// A run directory. Its files, by accessor: `config.toml` ([`RunStore::config`], the
/// run's settings, written by whoever drives the run), `seed.jsonl` ([`PromptRecord`]),
/// `plugins.lock`, `run.log`, `metrics.jsonl` ([`IterationSummary`]), `phases.json`
/// ([`IndexEntry`]), `eval/` ([`EvalDir`]), `report.html`, and one [`IterationDir`] per
/// iteration.
pub struct RunStore {
    pub dir: PathBuf,
}

/// The phases of an iteration, in order (their declaration order, which `Ord` follows),
/// each done when its file (or directory) exists.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Phase {
    /// The creator answers X_t and scores the answers.
    RespondScore,
    Info,
    Select,
    Evolve,
    /// X'_t: kept variants and a buffer of old prompts.
    Mix,
    /// The solver answers the prompts of X'_t that have no answers yet.
    SolveRespondScore,
    Pair,
    Train,
}

impl Phase {
    pub const ALL: [Phase; 8] = [
        Phase::RespondScore,
        Phase::Info,
        Phase::Select,
        Phase::Evolve,
        Phase::Mix,
        Phase::SolveRespondScore,
        Phase::Pair,
        Phase::Train,
    ];

    /// Its name in logs, errors and `config.toml`'s record of changes.
    pub fn name(self) -> &'static str {
        match self {
            Phase::RespondScore => "respond+score",
            Phase::Info => "info",
            Phase::Select => "select",
            Phase::Evolve => "evolve",
            Phase::Mix => "mix",
            Phase::SolveRespondScore => "solve respond+score",
            Phase::Pair => "pair",
            Phase::Train => "train",
        }
    }

    /// Whether the fixed-prompt baseline (`no_evolve`) skips it.
    pub fn evolves(self) -> bool {
        matches!(self, Phase::Info | Phase::Select | Phase::Evolve)
    }
}

/// `iter-T/` of a run directory.
pub struct IterationDir(PathBuf);

impl IterationDir {
    pub fn path(&self) -> &Path {
        &self.0
    }
    /// The file (or, for training, the directory) whose existence marks `phase` done.
    pub fn output(&self, phase: Phase) -> PathBuf {
        self.0.join(match phase {
            Phase::RespondScore => "answers.jsonl",
            Phase::Info => "info.jsonl",
            Phase::Select => "selected.jsonl",
            Phase::Evolve => "evolved.jsonl",
            Phase::Mix => "prompts-next.jsonl",
            Phase::SolveRespondScore => "solve-answers.jsonl",
            Phase::Pair => "pairs.jsonl",
            Phase::Train => "model",
        })
    }
    /// [`Answers`] of X_t.
    pub fn answers(&self) -> PathBuf {
        self.output(Phase::RespondScore)
    }
    /// [`Info`] per prompt of X_t.
    pub fn info(&self) -> PathBuf {
        self.output(Phase::Info)
    }
    /// [`Info`] of the prompts picked for evolution.
    pub fn selected(&self) -> PathBuf {
        self.output(Phase::Select)
    }
    /// [`EvolvedRecord`]s, kept or not.
    pub fn evolved(&self) -> PathBuf {
        self.output(Phase::Evolve)
    }
    /// [`PromptRecord`]s of X'_t.
    pub fn next_prompts(&self) -> PathBuf {
        self.output(Phase::Mix)
    }
    /// [`Answers`] of the new prompts of X'_t.
    pub fn solve_answers(&self) -> PathBuf {
        self.output(Phase::SolveRespondScore)
    }
    /// [`PairRecord`]s.
    pub fn pairs(&self) -> PathBuf {
        self.output(Phase::Pair)
    }
    /// The trainer's directory: checkpoints, `metrics.jsonl` of its steps.
    pub fn train(&self) -> PathBuf {
        self.0.join("train")
    }
    /// The trainer's per-step metrics.
    pub fn train_metrics(&self) -> PathBuf {
        self.train().join("metrics.jsonl")
    }
    /// θ_{t+1}, a Hugging Face directory.
    pub fn model(&self) -> PathBuf {
        self.output(Phase::Train)
    }
    /// This iteration's LoRA update alone (a PEFT adapter over θ_t), when the trainer
    /// was asked to keep it.
    pub fn train_adapter(&self) -> PathBuf {
        self.train().join(DELTA_ADAPTER)
    }
    /// θ_{t+1} as one PEFT adapter over the run's base model: the iterations' updates
    /// stacked, what servers that take adapters load.
    pub fn adapter(&self) -> PathBuf {
        self.0.join("adapter")
    }
}

/// An evaluation's directory (`RUN_DIR/eval/` by default).
pub struct EvalDir(pub PathBuf);

impl EvalDir {
    /// One side's unscored answers (`model`, `baseline`).
    pub fn side_answers(&self, side: &str) -> PathBuf {
        self.0.join(format!("{side}-answers.jsonl"))
    }
    /// The scored answers of both sides.
    pub fn answers(&self) -> PathBuf {
        self.0.join("answers.jsonl")
    }
    /// The evaluation's results.
    pub fn results(&self) -> PathBuf {
        self.0.join("eval.json")
    }
    /// What the evaluation was run with.
    pub fn config(&self) -> PathBuf {
        self.0.join("eval-config.json")
    }
}

impl RunStore {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        RunStore { dir: dir.into() }
    }
    pub fn iteration(&self, t: usize) -> IterationDir {
        IterationDir(self.dir.join(format!("iter-{t}")))
    }
    /// The run's settings (TOML); a run directory is one exactly when it has this file.
    pub fn config(&self) -> PathBuf {
        self.dir.join("config.toml")
    }
    /// [`PromptRecord`]s of X_1.
    pub fn seeds(&self) -> PathBuf {
        self.dir.join("seed.jsonl")
    }
    /// The plugins' sources and digests.
    pub fn plugin_lock(&self) -> PathBuf {
        self.dir.join("plugins.lock")
    }
    pub fn log(&self) -> PathBuf {
        self.dir.join("run.log")
    }
    /// [`IterationSummary`] per finished iteration.
    pub fn metrics(&self) -> PathBuf {
        self.dir.join("metrics.jsonl")
    }
    pub fn eval(&self) -> EvalDir {
        EvalDir(self.dir.join("eval"))
    }
    pub fn report(&self) -> PathBuf {
        self.dir.join("report.html")
    }

    /// The summaries of the finished iterations.
    pub fn summaries(&self) -> Result<Vec<IterationSummary>> {
        Ok(self.read(&self.metrics())?.unwrap_or_default())
    }

    /// The first phase a resumed run will compute, as `iter-T/PHASE`.
    pub fn next_phase(&self, no_evolve: bool) -> Result<String> {
        let summaries = self.summaries()?;
        let t = (1..).find(|t| !summaries.iter().any(|m| m.iteration == *t)).expect("a finite run");
        let dir = self.iteration(t);
        let phase = Phase::ALL
            .into_iter()
            .find(|p| !(dir.output(*p).exists() || no_evolve && p.evolves()))
            .unwrap_or(Phase::Train);
        Ok(format!("iter-{t}/{}", phase.name()))
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
            && !want.same_bytes(&found)
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

    /// [`RunStore::write`], the index naming who wrote the file and what it cost.
    fn write_by<T: Serialize>(&self, path: &Path, rows: &[T], producer: Option<Producer>, cost: Cost) -> Result<()> {
        let text = self.rewrite(path, rows)?;
        self.record(path, IndexEntry { producer, cost: Some(cost), ..entry_of(text.as_bytes()) })
    }

    /// Index a file written by other code (the trainer's `metrics.jsonl`) with what
    /// producing it cost. Costs live in the index only: `metrics.jsonl` and the phase files
    /// stay byte-identical between a run and its resumed copy.
    pub fn record_cost(&self, path: &Path, cost: Cost) -> Result<()> {
        let bytes = std::fs::read(path).map_err(|source| Error::Read { path: path.to_owned(), source })?;
        self.record(path, IndexEntry { cost: Some(cost), ..entry_of(&bytes) })
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
        self.phase_by(name, path, None, compute)
    }

    /// [`RunStore::phase`] of a policy's phase: the index records `producer` with the file.
    pub fn phase_by<T: Serialize + DeserializeOwned>(
        &self,
        name: &str,
        path: &Path,
        producer: impl Into<Option<Producer>>,
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
        let meter = Meter::start();
        let rows = compute().map_err(|source| Error::Phase { phase: name.to_owned(), source })?;
        self.write_by(path, &rows, producer.into(), meter.stop())?;
        Ok(rows)
    }

    /// A phase over `items` computed `chunk` items at a time, `compute(k, items)` for chunk
    /// k: each chunk's rows are written to a file of their own as soon as they exist, so a
    /// kill or a failure loses at most the chunk under way, and a resumed phase computes only
    /// the chunks still missing. The chunks' files (beside `path`, named by the chunk size)
    /// become `path` when all are done. `compute` must give one row per item.
    pub fn chunked_phase<I, T: Serialize + DeserializeOwned>(
        &self,
        name: &str,
        path: &Path,
        items: &[I],
        chunk: usize,
        mut compute: impl FnMut(usize, &[I]) -> Result<Vec<T>, PhaseError>,
    ) -> Result<Vec<T>> {
        let chunk = chunk.max(1);
        let parts = parts_dir(path, chunk);
        self.phase(name, path, || {
            let mut rows = Vec::with_capacity(items.len());
            for (k, group) in items.chunks(chunk).enumerate() {
                let part = parts.join(format!("{k:06}.jsonl"));
                let done: Option<Vec<T>> = if part.is_file() { self.read(&part)? } else { None };
                let computed = match done {
                    Some(done) if done.len() == group.len() => {
                        tracing::info!(phase = name, chunk = k, "chunk finished earlier; loaded");
                        done
                    }
                    _ => {
                        let done = compute(k, group)?;
                        if done.len() != group.len() {
                            return Err(format!("chunk {k} has {} rows for {} items", done.len(), group.len()).into());
                        }
                        self.rewrite(&part, &done)?;
                        done
                    }
                };
                rows.extend(computed);
            }
            Ok(rows)
        })
        .inspect(|_| {
            // Written into the phase's file: the chunks are spent.
            let _ = std::fs::remove_dir_all(&parts);
        })
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
        let model = self.iteration(m.iteration).model();
        if m.pairs == 0 {
            return Ok(None);
        }
        if !model.join("config.json").is_file() {
            return Err(Error::MissingModel { model, iteration: m.iteration, pairs: m.pairs });
        }
        Ok(Some(model))
    }
}

/// Where the chunks of the phase whose file is `path` go, for chunks of `chunk` items.
fn parts_dir(path: &Path, chunk: usize) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(format!(".parts-{chunk}"));
    path.with_file_name(name)
}

fn entry_of(bytes: &[u8]) -> IndexEntry {
    IndexEntry {
        rows: bytes.iter().filter(|&&b| b == b'\n').count(),
        sha256: eva_plugin_runtime::digest(bytes),
        producer: None,
        cost: None,
    }
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
        let path = store.iteration(1).pairs();
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
        let path = store.iteration(1).info();
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
        let it = store.iteration(2).path().to_owned();
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

    #[test]
    fn a_chunked_phase_keeps_finished_chunks_and_resumes_with_the_rest() {
        let (_dir, store) = store();
        let path = store.iteration(1).answers();
        let items: Vec<u32> = (0..7).collect();
        let square = |k: usize, group: &[u32]| -> Result<Vec<u32>, PhaseError> {
            Ok(group.iter().map(|i| i * i + k as u32 * 1000).collect())
        };
        let whole = store.chunked_phase("x", &store.dir.join("whole.jsonl"), &items, 3, square).unwrap();
        assert_eq!(whole, [0, 1, 4, 1009, 1016, 1025, 2036]);

        let mut asked = vec![];
        let failing = store.chunked_phase::<u32, u32>("x", &path, &items, 3, |k, group| {
            asked.push(k);
            if k == 1 { Err("the server went away".into()) } else { square(k, group) }
        });
        assert!(format!("{:?}", failing.unwrap_err()).contains("the server went away"));
        assert_eq!(asked, [0, 1]);
        assert!(!path.exists() && path.with_file_name("answers.jsonl.parts-3/000000.jsonl").is_file());

        let mut asked = vec![];
        let resumed = store
            .chunked_phase("x", &path, &items, 3, |k, group| {
                asked.push(k);
                square(k, group)
            })
            .unwrap();
        assert_eq!((resumed, asked), (whole, vec![1, 2]), "chunk 0 is not computed again");
        assert!(path.is_file() && !path.with_file_name("answers.jsonl.parts-3").exists(), "the chunks are spent");

        let short = store.chunked_phase::<u32, u32>("x", &store.dir.join("short.jsonl"), &items, 3, |_, _| Ok(vec![1]));
        assert!(format!("{:?}", short.unwrap_err()).contains("chunk 0 has 1 rows for 3 items"));
    }

    #[test]
    fn the_next_phase_is_the_first_without_its_file() {
        let (_dir, store) = store();
        assert_eq!(store.next_phase(false).unwrap(), "iter-1/respond+score");
        let it = store.iteration(1);
        store.write(&it.answers(), &[1]).unwrap();
        assert_eq!(store.next_phase(false).unwrap(), "iter-1/info");
        assert_eq!(store.next_phase(true).unwrap(), "iter-1/mix", "the baseline has no info, select, evolve");
        for p in [it.info(), it.selected(), it.evolved(), it.next_prompts(), it.solve_answers(), it.pairs()] {
            store.write(&p, &[1]).unwrap();
        }
        assert_eq!(store.next_phase(false).unwrap(), "iter-1/train");
        let summary: IterationSummary = serde_json::from_str(
            r#"{"iteration":1,"prompts":1,"mean_reward":null,"info_mean":null,"info_max":null,"selected":0,
            "evolved":0,"kept":0,"next_prompts":1,"pairs":0,"mean_prompt_words":1.0,"first_loss":null,
            "last_loss":null,"last_margin":null}"#,
        )
        .unwrap();
        store.rewrite(&store.metrics(), &[summary]).unwrap();
        assert_eq!(store.next_phase(false).unwrap(), "iter-2/respond+score");
    }
}
