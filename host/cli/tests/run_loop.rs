//! `eva-host run` end to end on the real default model with the real first-party plugins:
//! one tiny iteration, the run directory's structure and lineage, a bad seed file, and a
//! kill during the solver followed by `--resume`.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use eva_plugin_registry::PluginLock;

fn seeds(dir: &Path, lines: &[&str]) -> PathBuf {
    let path = dir.join("seeds.jsonl");
    std::fs::write(&path, lines.join("\n") + "\n").unwrap();
    path
}

const SEEDS: [&str; 3] = [
    r#"{"id": "q1", "prompt": "Suggest a name for a friendly robot."}"#,
    r#"{"id": "q2", "prompt": "What are three easy ways to save water at home?"}"#,
    r#"{"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Why is the sky blue?"}]}"#,
];

/// A tiny but complete configuration: every phase runs, on few tokens.
const TINY: [&str; 16] = [
    "--iterations",
    "1",
    "--answers",
    "2",
    "--max-new-tokens",
    "12",
    "--evolve-max-tokens",
    "32",
    "--sample-fraction",
    "0.34",
    "--micro-batch",
    "1",
    "--lr",
    "1e-4",
    "--epochs",
    "2",
];

fn eva_run(seeds: &Path, out: &Path, extra: &[&str]) -> Command {
    eva_run_with(&TINY, seeds, out, extra)
}

fn eva_run_with(settings: &[&str], seeds: &Path, out: &Path, extra: &[&str]) -> Command {
    let plugins_dir = eva::component("eva-plugin-regret").parent().unwrap().to_owned();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_eva-host"));
    cmd.args(["run", "--threads", "1", "--checkpoint-every", "1"])
        .args(settings)
        .arg("--prompts")
        .arg(seeds)
        .arg("--out")
        .arg(out)
        .arg("--plugins-dir")
        .arg(plugins_dir)
        .args(extra)
        .env("EVA_CACHE_DIR", cache_dir());
    cmd
}

/// The eva cache holding the default model the tests fetched.
fn cache_dir() -> PathBuf {
    eva::models::default_model().parent().unwrap().parent().unwrap().to_owned()
}

/// `eva-host run --resume` on `out`.
fn resume(out: &Path) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_eva-host"))
        .args(["run", "--resume", "--threads", "1", "--out"])
        .arg(out)
        .env("EVA_CACHE_DIR", cache_dir())
        .output()
        .unwrap()
}

fn rows(path: &Path) -> Vec<serde_json::Value> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    text.lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

/// Files of the run directory, without the training checkpoint's internals.
fn layout(dir: &Path) -> Vec<String> {
    let mut out = vec![];
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let rel = e.path().strip_prefix(dir).unwrap().to_string_lossy().into_owned();
            if e.path().is_dir() {
                out.push(format!("{rel}/"));
                if !rel.ends_with("checkpoint") {
                    stack.push(e.path());
                }
            } else {
                out.push(rel);
            }
        }
    }
    out.sort();
    out
}

#[test]
fn one_iteration_writes_every_phase_with_traceable_lineage_and_resumes_after_a_kill() {
    let dir = tempfile::tempdir().unwrap();
    let seeds = seeds(dir.path(), &SEEDS);
    let full = dir.path().join("full");
    let out = eva_run(&seeds, &full, &[]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    insta::assert_snapshot!("run_layout", layout(&full).join("\n"));

    // Lineage: selected prompts come from X_1, evolved prompts name a selected parent,
    // X'_1 holds the kept evolved prompts and buffer prompts from X_1.
    let it = full.join("iter-1");
    let x1: Vec<String> = rows(&full.join("seed.jsonl")).iter().map(|p| p["id"].as_str().unwrap().into()).collect();
    assert_eq!(x1, ["q1", "q2", "seed-3"]);
    let selected: Vec<String> =
        rows(&it.join("selected.jsonl")).iter().map(|s| s["id"].as_str().unwrap().into()).collect();
    assert_eq!(selected.len(), 2, "34 % of 3 prompts, rounded up");
    assert!(selected.iter().all(|s| x1.contains(s)));
    let evolved = rows(&it.join("evolved.jsonl"));
    assert!(!evolved.is_empty(), "the evolver made no prompt");
    for e in &evolved {
        assert!(selected.contains(&e["parent"].as_str().unwrap().to_owned()), "{e}");
        assert!(!e["method"].as_str().unwrap().is_empty());
    }
    let next = rows(&it.join("prompts-next.jsonl"));
    for p in &next {
        match p["origin"].as_str().unwrap() {
            "evolved" => {
                assert!(evolved.iter().any(|e| e["id"] == p["id"] && e["kept"] == true && e["parent"] == p["parent"]))
            }
            "buffer" => assert!(x1.contains(&p["id"].as_str().unwrap().to_owned())),
            other => panic!("origin {other}"),
        }
    }
    let answers = rows(&it.join("answers.jsonl"));
    assert!(answers.iter().all(|a| a["answers"].as_array().unwrap().len() == 2));
    let pairs = rows(&it.join("pairs.jsonl"));
    for p in &pairs {
        assert!(next.iter().any(|n| n["id"] == p["id"]));
        assert!(p["chosen_reward"].as_f64().unwrap() > p["rejected_reward"].as_f64().unwrap());
    }
    let metrics = rows(&full.join("metrics.jsonl"));
    assert_eq!(metrics.len(), 1);
    assert_eq!(metrics[0]["pairs"].as_u64().unwrap() as usize, pairs.len());
    let steps = rows(&it.join("train/metrics.jsonl")).len();
    assert!(steps >= 2, "training ran {steps} steps");

    evaluate_and_report(&full, &seeds);

    // The same run, killed once the solver has written a checkpoint, then resumed.
    let killed = dir.path().join("killed");
    let mut child = eva_run(&seeds, &killed, &[]).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
    let checkpoint = killed.join("iter-1/train/checkpoint/state.json");
    while !checkpoint.exists() {
        assert!(child.try_wait().unwrap().is_none(), "the run ended before its first checkpoint");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(!killed.join("iter-1/model").exists(), "killed during the solver");
    let before = std::fs::read(killed.join("iter-1/pairs.jsonl")).unwrap();
    let resume = resume(&killed);
    assert!(resume.status.success(), "{}", String::from_utf8_lossy(&resume.stderr));
    assert_eq!(std::fs::read(killed.join("iter-1/pairs.jsonl")).unwrap(), before, "a finished phase was redone");
    for file in ["iter-1/pairs.jsonl", "iter-1/prompts-next.jsonl", "metrics.jsonl", "iter-1/model/model.safetensors"] {
        assert!(std::fs::read(full.join(file)).unwrap() == std::fs::read(killed.join(file)).unwrap(), "{file} differs");
    }
    assert_eq!(rows(&killed.join("iter-1/train/metrics.jsonl")).len(), steps, "each step logged once");
}

/// `eva-host eval` on the run directory (its model against the model it started from),
/// then `eva-host report`, rendered in headless Chromium: every plot must be drawn.
fn evaluate_and_report(run: &Path, prompts: &Path) {
    let eval = Command::new(env!("CARGO_BIN_EXE_eva-host"))
        .args(["eval", "--threads", "1", "--max-new-tokens", "8", "--model"])
        .arg(run)
        .arg("--prompts")
        .arg(prompts)
        .env("EVA_CACHE_DIR", cache_dir())
        .output()
        .unwrap();
    assert!(eval.status.success(), "{}", String::from_utf8_lossy(&eval.stderr));
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("eval/eval.json")).unwrap()).unwrap();
    assert_eq!(summary["model"].as_str().unwrap(), run.join("iter-1/model").to_str().unwrap());
    assert_eq!(summary["baseline"].as_str().unwrap(), eva::models::default_model().to_str().unwrap());
    assert_eq!(summary["prompts"], 3);

    let report = Command::new(env!("CARGO_BIN_EXE_eva-host")).arg("report").arg(run).output().unwrap();
    assert!(report.status.success(), "{}", String::from_utf8_lossy(&report.stderr));
    let page = run.join("report.html");
    let dom = eva::browser::dom(&page);
    assert!(dom.contains("id=\"evaluation\""), "the evaluation is in the report");
    let shot = eva::browser::screenshot(&page, 1300, 3000);
    let html = std::fs::read_to_string(&page).unwrap();
    for id in ["reward", "loss", "margin", "info", "prompt-length", "difficulty"] {
        let at = dom.find(&format!("<figure id=\"plot-{id}\"")).unwrap_or_else(|| panic!("no figure {id}"));
        let figure = &dom[at..at + dom[at..].find("</figure>").unwrap()];
        assert!(figure.contains("<svg"), "figure {id} holds no svg after parsing");
        let color = &figure[figure.find("data-color=\"").unwrap() + 12..][..7];
        // The color is this figure's own: no other figure of the page uses it.
        assert_eq!(html.matches(&format!("data-color=\"{color}\"")).count(), 1);
        let pixels = shot.count(color);
        assert!(pixels >= 12, "plot {id}: {pixels} pixels of {color} on screen");
    }
}

/// Two iterations, and the same run cut back to what a kill right after iteration 1's
/// evolve phase leaves, then resumed: iteration 2 must start from the same prompts, seen
/// set and policy, and every file must come out the same.
#[test]
fn a_run_cut_back_after_the_first_evolve_phase_resumes_into_the_same_second_iteration() {
    let dir = tempfile::tempdir().unwrap();
    let seeds = seeds(dir.path(), &SEEDS);
    let two = [
        "--iterations",
        "2",
        "--answers",
        "2",
        "--max-new-tokens",
        "8",
        "--evolve-max-tokens",
        "24",
        "--sample-fraction",
        "0.34",
        "--micro-batch",
        "2",
        "--epochs",
        "1",
    ];
    let variants = ["--plugin-config", "evol-instruct.variants=1"];
    let full = dir.path().join("full");
    let out = eva_run_with(&two, &seeds, &full, &variants).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(rows(&full.join("metrics.jsonl")).len(), 2);

    let cut = dir.path().join("cut");
    let kept = [
        "config.toml",
        "seed.jsonl",
        "plugins.lock",
        "iter-1/answers.jsonl",
        "iter-1/info.jsonl",
        "iter-1/selected.jsonl",
        "iter-1/evolved.jsonl",
    ];
    for file in kept {
        std::fs::create_dir_all(cut.join(file).parent().unwrap()).unwrap();
        std::fs::copy(full.join(file), cut.join(file)).unwrap();
    }
    let resumed = resume(&cut);
    assert!(resumed.status.success(), "{}", String::from_utf8_lossy(&resumed.stderr));
    let same = [
        "iter-1/prompts-next.jsonl",
        "iter-1/pairs.jsonl",
        "iter-1/model/model.safetensors",
        "iter-2/answers.jsonl",
        "iter-2/info.jsonl",
        "iter-2/selected.jsonl",
        "iter-2/evolved.jsonl",
        "iter-2/prompts-next.jsonl",
        "iter-2/pairs.jsonl",
        "iter-2/model/model.safetensors",
        "metrics.jsonl",
    ];
    for file in same {
        assert!(std::fs::read(full.join(file)).unwrap() == std::fs::read(cut.join(file)).unwrap(), "{file} differs");
    }

    // The lock names each role's plugin by the digest of the component that ran.
    let lock = PluginLock::read(&full.join("plugins.lock")).unwrap();
    let roles: Vec<&str> = lock.plugins.iter().map(|p| p.role.as_str()).collect();
    assert_eq!(roles, ["info-metric", "sampler", "evolver", "pairing"]);
    for p in &lock.plugins {
        assert_eq!(p.digest, eva_plugin_registry::sha256_digest(&std::fs::read(&p.pinned).unwrap()), "{}", p.name);
    }
    // A resume whose plugins are no longer the locked ones is refused before any work.
    let changed = dir.path().join("changed");
    std::fs::create_dir_all(&changed).unwrap();
    for file in ["config.toml", "seed.jsonl"] {
        std::fs::copy(full.join(file), changed.join(file)).unwrap();
    }
    let mut other = lock.clone();
    other.plugins[0].digest = eva_plugin_registry::sha256_digest(b"another metric");
    other.write(&changed.join("plugins.lock")).unwrap();
    let refused = resume(&changed);
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success() && err.contains("not sha256:") && err.contains("plugins.lock"), "{err}");
    assert!(!changed.join("iter-1").exists(), "nothing was run");
    // So is a new run told to use plugins it does not get (`--plugin-lock`).
    let fresh = dir.path().join("fresh");
    let lock = changed.join("plugins.lock");
    let out = eva_run_with(&two, &seeds, &fresh, &["--plugin-lock", lock.to_str().unwrap()]).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains(&lock.display().to_string()), "{err}");
    assert!(!fresh.join("iter-1").exists(), "nothing was run");
}

/// `--weights q8_0` samples answers and evolutions on the 8-bit decoder, and is saved with
/// the run like every loop setting.
#[test]
fn eight_bit_sampling_is_a_saved_loop_setting() {
    let dir = tempfile::tempdir().unwrap();
    let seeds = seeds(dir.path(), &SEEDS);
    let out_dir = dir.path().join("q8");
    let out = eva_run(&seeds, &out_dir, &["--weights", "q8_0"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let config = std::fs::read_to_string(out_dir.join("config.toml")).unwrap();
    assert!(config.contains("weights = \"q8_0\""), "{config}");
    let log = std::fs::read_to_string(out_dir.join("run.log")).unwrap();
    assert!(log.contains("generation runs on the 8-bit decoder"), "{log}");
    let answers = rows(&out_dir.join("iter-1/answers.jsonl"));
    assert!(answers.iter().all(|a| a["answers"].as_array().unwrap().len() == 2));
    assert_eq!(rows(&out_dir.join("metrics.jsonl")).len(), 1, "the iteration finished");
}

#[test]
fn a_bad_seed_file_is_reported_by_line_before_any_model_work() {
    let dir = tempfile::tempdir().unwrap();
    let cases: [(&[&str], &str); 4] = [
        (&[SEEDS[0], "{\"prompt\": \"broken"], "seeds.jsonl:2: not valid JSON"),
        (&[SEEDS[0], SEEDS[1], r#"{"prompt": "   "}"#], "seeds.jsonl:3: the prompt is empty"),
        (&[r#"{"question": "What is rust?"}"#], "seeds.jsonl:1: has neither `prompt` nor `messages`"),
        (&[SEEDS[0], SEEDS[0]], "seeds.jsonl:2: the id `q1` is used twice"),
    ];
    for (lines, want) in cases {
        let seeds = seeds(dir.path(), lines);
        let out = dir.path().join("run");
        // A model path that does not exist: the seeds must fail first.
        let result = eva_run(&seeds, &out, &["--model", "/no/such/model.gguf"]).output().unwrap();
        let err = String::from_utf8_lossy(&result.stderr);
        assert!(!result.status.success());
        assert!(err.contains(want), "{want}: {err}");
        assert!(!out.exists(), "nothing is written for a bad seed file");
    }
}
