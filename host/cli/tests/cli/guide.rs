//! The plugin guide's "first plugin in 10 minutes", run as written: every ```sh
//! first-plugin block of `docs/plugin-guide.md`, in order, in an empty directory, with the
//! eva-host under test first on the PATH.

use std::process::Command;

#[test]
fn the_guides_first_plugin_walk_through_runs_as_written() {
    let guide = std::fs::read_to_string(eva_test_support::workspace_root().join("docs/plugin-guide.md")).unwrap();
    let mut script = String::from("set -euxo pipefail\n");
    let mut blocks = 0;
    let mut inside = false;
    for line in guide.lines() {
        match (inside, line.trim_end()) {
            (false, "```sh first-plugin") => (inside, blocks) = (true, blocks + 1),
            (true, "```") => inside = false,
            (true, l) => script += &format!("{l}\n"),
            _ => {}
        }
    }
    assert!(blocks > 0 && script.contains("eva-host plugin new"), "the walk-through was not found");
    let dir = tempfile::tempdir().unwrap();
    let bin = std::path::Path::new(env!("CARGO_BIN_EXE_eva-host")).parent().unwrap().to_owned();
    let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap_or_default());
    let cache = eva_test_support::models::default_model().parent().unwrap().parent().unwrap().to_owned();
    let out = Command::new("bash")
        .arg("-c")
        .arg(&script)
        .current_dir(dir.path())
        .env("PATH", path)
        .env("EVA_CACHE_DIR", cache)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "the walk-through failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("\"scores\"") && stdout.contains("1 passed, 0 failed"), "{stdout}");
    assert!(dir.path().join("my-metric/runs/smoke/metrics.jsonl").is_file(), "the smoke run did not finish");
}
