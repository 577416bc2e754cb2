//! An external trainer: θ_{t+1} made by a command the user gives (TRL's DPO trainer,
//! OpenRLHF's `train_dpo`, ... under accelerate or DeepSpeed), so that training can use a
//! cluster while eva stays the loop's only controller. The contract, in
//! `docs/external-trainer.md`: eva writes the pairs (TRL's conversational preference
//! rows, with reference log-probs when it has them) and θ_t as a Hugging Face directory,
//! runs the command with `sh -c` and `EVA_*` variables, and on exit status 0 reads back
//! the Hugging Face directory or PEFT adapter it wrote, which becomes θ_{t+1}.

use std::io::{BufRead, Seek};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use eva_engine::{Adaptation, LanguageModel, Message, WeightFormat};

use crate::candle::{CandlePolicy, read_losses};
use crate::creator::RoleError;
use crate::layout::{DELTA_ADAPTER, PairRecord};
use crate::progress::Progress;
use crate::run::Trainer;
use crate::settings::SolverSettings;

/// What can go wrong around the command; each variant names it, its log or its output.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{path}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("the external trainer `{command}` could not start")]
    Spawn { command: String, source: std::io::Error },
    #[error("the external trainer `{command}` {status}; the end of its log {log}:\n{tail}")]
    Failed { command: String, status: String, log: PathBuf, tail: String },
    #[error("the external trainer `{command}` exited 0 but its output {out} {reason}")]
    Output { command: String, out: PathBuf, reason: String },
    #[error("{0}")]
    Unsupported(String),
    #[error(transparent)]
    Engine(#[from] eva_engine::Error),
    #[error(transparent)]
    Read(#[from] crate::candle::Error),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Files of the trainer's directory (ITER/train).
const PAIRS: &str = "pairs.trl.jsonl";
const THETA: &str = "theta";
const OUTPUT: &str = "output";
const WORK: &str = "work";
const LOG: &str = "trainer.log";
const METRICS: &str = "metrics.jsonl";
/// Written once the command exited 0: its output is complete.
const DONE: &str = "trainer.done";

/// The command and what it is told.
pub struct ExternalTrainer {
    /// Run by `sh -c` in the trainer's directory.
    pub command: String,
    pub solver: SolverSettings,
    pub progress: Arc<dyn Progress>,
    /// Keep a LoRA update as `DELTA_ADAPTER` for servers that take adapters; a trainer
    /// that wrote full weights is then refused.
    pub keep_update: bool,
}

/// One row of the pairs file: TRL's conversational preference format.
#[derive(serde::Serialize)]
struct TrlRow<'a> {
    id: &'a str,
    prompt: &'a [Message],
    chosen: [Message; 1],
    rejected: [Message; 1],
    #[serde(skip_serializing_if = "Option::is_none")]
    ref_chosen_logps: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    ref_rejected_logps: Option<f64>,
}

impl ExternalTrainer {
    /// Train θ_t (`theta`, whose Hugging Face directory is `theta_dir` when it has one)
    /// on `pairs` in `out`, saving θ_{t+1} at `model_dir`. `reference` holds the
    /// reference log-probs (chosen, rejected) of each pair, when eva has them.
    pub fn train_from(
        &self,
        theta: &LanguageModel,
        theta_dir: Option<&Path>,
        pairs: &[PairRecord],
        reference: Option<&[(f64, f64)]>,
        out: &Path,
        model_dir: &Path,
    ) -> Result<Vec<(f64, f64)>> {
        let _span = tracing::info_span!("external trainer", pairs = pairs.len()).entered();
        let io = |path: &Path| {
            let path = path.to_owned();
            move |source| Error::Io { path: path.clone(), source }
        };
        std::fs::create_dir_all(out.join(WORK)).map_err(io(out))?;
        let theta_dir = match theta_dir {
            Some(dir) => dir.to_owned(),
            None => {
                // A GGUF policy (the embedded default): trainers read Hugging Face directories.
                let dir = out.join(THETA);
                if !dir.is_dir() {
                    let full = theta.trainable(Adaptation::Full, 0)?;
                    full.save_hf(&dir, Some(&theta.tokenizer), theta.chat_template.as_ref(), false)?;
                }
                dir
            }
        };
        let output = out.join(OUTPUT);
        let update = out.join(DELTA_ADAPTER);
        if !out.join(DONE).is_file() {
            self.write_pairs(pairs, reference, &out.join(PAIRS))?;
            if output.exists() {
                // Left by a command that did not finish: never taken for θ_{t+1}.
                std::fs::remove_dir_all(&output).map_err(io(&output))?;
            }
            self.run(&theta_dir, theta, pairs.len(), out)?;
            eva_engine::atomic::write_file(&out.join(DONE), self.command.as_bytes()).map_err(io(out))?;
        }
        let failed = |reason: String| {
            // Not a finished training after all: a resume runs the command again.
            let _ = std::fs::remove_file(out.join(DONE));
            Error::Output { command: self.command.clone(), out: output.clone(), reason }
        };
        // After a kill between the two steps below, the adapter has already moved.
        let written = if output.exists() { output.clone() } else { update.clone() };
        if written.join("adapter_config.json").is_file() {
            let model = theta.with_adapter(&written).map_err(|e| failed(format!("is not an adapter of θ_t: {e}")))?;
            if self.keep_update && written == output {
                if update.exists() {
                    std::fs::remove_dir_all(&update).map_err(io(&update))?;
                }
                std::fs::rename(&output, &update).map_err(io(&update))?;
            }
            model.save_hf(model_dir, Some(&theta.tokenizer), theta.chat_template.as_ref(), false)?;
        } else if written.join("config.json").is_file() {
            if self.keep_update {
                return Err(Error::Unsupported(format!(
                    "the external trainer wrote full weights ({}), but the servers take θ_(t+1) as a LoRA \
                     adapter: train LoRA (drop --full), or serve the policy in-process",
                    output.display()
                )));
            }
            for file in ["tokenizer.json", "tokenizer_config.json", "generation_config.json"] {
                if !output.join(file).exists() && theta_dir.join(file).exists() {
                    std::fs::copy(theta_dir.join(file), output.join(file)).map_err(io(&output.join(file)))?;
                }
            }
            LanguageModel::load(&output, WeightFormat::F32).map_err(|e| failed(format!("cannot be loaded: {e}")))?;
            std::fs::rename(&output, model_dir).map_err(io(model_dir))?;
        } else {
            return Err(failed("holds neither a PEFT adapter (adapter_config.json) nor a model (config.json)".into()));
        }
        Ok(read_losses(out)?)
    }

    fn write_pairs(&self, pairs: &[PairRecord], reference: Option<&[(f64, f64)]>, path: &Path) -> Result<()> {
        let mut text = String::new();
        for (i, p) in pairs.iter().enumerate() {
            let r = reference.map(|r| r[i]);
            let row = TrlRow {
                id: &p.id,
                prompt: &p.prompt,
                chosen: [Message::new("assistant", p.chosen.as_str())],
                rejected: [Message::new("assistant", p.rejected.as_str())],
                ref_chosen_logps: r.map(|r| r.0),
                ref_rejected_logps: r.map(|r| r.1),
            };
            text += &serde_json::to_string(&row).expect("json");
            text.push('\n');
        }
        eva_engine::atomic::write_file(path, text.as_bytes()).map_err(|source| Error::Io { path: path.into(), source })
    }

    /// Run the command to its end, its output appended to the log, its steps counted
    /// from the metrics it writes.
    fn run(&self, theta_dir: &Path, theta: &LanguageModel, pairs: usize, out: &Path) -> Result<()> {
        let s = &self.solver;
        let abs = |p: &Path| std::path::absolute(p).unwrap_or_else(|_| p.to_owned());
        let log_path = out.join(LOG);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .map_err(|source| Error::Io { path: log_path.clone(), source })?;
        let (loss, batch) = (s.loss(), s.micro_batch * s.grad_accum);
        let beta = match loss {
            eva_solver::PreferenceLoss::Dpo { beta }
            | eva_solver::PreferenceLoss::Ipo { beta }
            | eva_solver::PreferenceLoss::Hinge { beta }
            | eva_solver::PreferenceLoss::Simpo { beta, .. } => beta,
            eva_solver::PreferenceLoss::Orpo { lambda } => lambda,
        };
        let mut command = Command::new("sh");
        command
            .arg("-c")
            .arg(&self.command)
            .current_dir(out)
            .stdin(Stdio::null())
            .stdout(log.try_clone().map_err(|source| Error::Io { path: log_path.clone(), source })?)
            .stderr(log)
            .env("EVA_PAIRS", abs(&out.join(PAIRS)))
            .env("EVA_MODEL", abs(theta_dir))
            .env("EVA_OUT", abs(&out.join(OUTPUT)))
            .env("EVA_WORK", abs(&out.join(WORK)))
            .env("EVA_METRICS", abs(&out.join(METRICS)))
            .env("EVA_LOSS", serde_json::to_value(s.loss).expect("a name").as_str().expect("a string"))
            .env("EVA_BETA", beta.to_string())
            .env("EVA_LR", s.lr.to_string())
            .env("EVA_EPOCHS", s.epochs.to_string())
            .env("EVA_BATCH", batch.to_string())
            .env("EVA_SEED", s.seed.to_string())
            .env("EVA_ADAPTATION", if s.full { "full" } else { "lora" })
            .env("EVA_LORA_RANK", s.lora_rank.to_string())
            .env("EVA_LORA_ALPHA", s.lora_alpha.to_string())
            .env("EVA_LORA_TARGETS", &s.lora_targets)
            .env("EVA_MAX_LENGTH", theta.transformer.config.max_position_embeddings.to_string());
        stop_with_eva(&mut command);
        tracing::info!(command = self.command, log = %log_path.display(), "running the external trainer");
        let mut child = command.spawn().map_err(|source| Error::Spawn { command: self.command.clone(), source })?;
        let steps = (pairs.div_ceil(batch.max(1)) * s.epochs) as u64;
        let tracker = self.progress.start("training (external)", steps, "steps");
        let status = loop {
            if let Some(status) = child.try_wait().map_err(|source| Error::Io { path: log_path.clone(), source })? {
                break status;
            }
            tracker.set_done(count_lines(&out.join(METRICS)));
            std::thread::sleep(Duration::from_millis(500));
        };
        drop(tracker);
        if status.success() {
            return Ok(());
        }
        let status = match status.code() {
            Some(code) => format!("exited with status {code}"),
            None => format!("was killed ({status})"),
        };
        Err(Error::Failed { command: self.command.clone(), status, log: log_path.clone(), tail: tail(&log_path, 20) })
    }
}

/// The command is sent SIGTERM if eva dies (killed, even by SIGKILL), so that a resumed
/// run never races a trainer left over from the killed one. It reaches the shell, and the
/// trainer itself when the shell `exec`s it (a single command does).
#[cfg(target_os = "linux")]
fn stop_with_eva(command: &mut Command) {
    use std::os::unix::process::CommandExt;
    // SAFETY: prctl is async-signal-safe and touches only the child being started.
    unsafe {
        command.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

#[cfg(not(target_os = "linux"))]
fn stop_with_eva(_: &mut Command) {}

fn count_lines(path: &Path) -> u64 {
    std::fs::File::open(path).map(|f| std::io::BufReader::new(f).lines().count() as u64).unwrap_or(0)
}

/// The last `n` lines of a log (its last 64 KiB at most).
fn tail(path: &Path, n: usize) -> String {
    let Ok(mut file) = std::fs::File::open(path) else { return String::new() };
    let len = file.metadata().map(|m| m.len()).unwrap_or(0);
    let _ = file.seek(std::io::SeekFrom::Start(len.saturating_sub(64 * 1024)));
    let lines: Vec<String> = std::io::BufReader::new(file).lines().map_while(|l| l.ok()).collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

impl Trainer<CandlePolicy> for ExternalTrainer {
    fn train(
        &mut self,
        policy: &CandlePolicy,
        pairs: &[PairRecord],
        out: &Path,
        model_dir: &Path,
    ) -> Result<Vec<(f64, f64)>, RoleError> {
        let model = policy.model();
        let hf = model.path.join("config.json").is_file().then_some(model.path.as_path());
        Ok(self.train_from(model, hf, pairs, None, out, model_dir)?)
    }

    fn losses(&self, out: &Path) -> Result<Vec<(f64, f64)>, RoleError> {
        Ok(read_losses(out)?)
    }
}
