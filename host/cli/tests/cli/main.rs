//! `eva-host` end to end, one test binary (one link step) for every command: each module
//! runs the built binary as a user would.

mod eval;
mod external_trainer;
mod guide;
mod model_generate;
mod other_languages;
mod plugin_call;
mod plugin_inspect;
mod plugin_new;
mod registry;
mod remote_run;
mod run_loop;
mod score;
mod train_resume;
mod verifiable;

/// The rows of a JSONL file.
fn rows(path: &std::path::Path) -> Vec<serde_json::Value> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    text.lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}
