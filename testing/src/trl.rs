//! Hugging Face TRL for the external-trainer tests: `scripts/install-trl` installs it
//! (into the vLLM virtualenv when it can) and `scripts/trl-dpo` is the trainer command.

use std::path::PathBuf;
use std::process::Command;

/// The Python of the virtualenv that `scripts/install-trl` installs TRL into (installing
/// it when missing), for the external-trainer tests: `PYTHON scripts/trl-dpo`.
pub fn python() -> PathBuf {
    let script = crate::workspace_root().join("scripts/install-trl");
    let out = Command::new(&script).output().unwrap_or_else(|e| panic!("running {}: {e}", script.display()));
    assert!(out.status.success(), "{} failed:\n{}", script.display(), String::from_utf8_lossy(&out.stderr));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let venv = stdout.lines().last().expect("the venv's path").trim();
    PathBuf::from(venv).join("bin/python")
}
