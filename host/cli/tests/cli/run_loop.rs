//! `eva-host run` end to end on the real default model with the real first-party plugins:
//! one tiny iteration, the run directory's structure and lineage, a bad seed file, and a
//! kill during the solver followed by `--resume`.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use eva_plugin_registry::PluginLock;

use crate::rows;

pub(crate) fn seeds(dir: &Path, lines: &[&str]) -> PathBuf {
    let path = dir.join("seeds.jsonl");
    std::fs::write(&path, lines.join("\n") + "\n").unwrap();
    path
}

pub(crate) const SEEDS: [&str; 3] = [
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

pub(crate) fn eva_run(seeds: &Path, out: &Path, extra: &[&str]) -> Command {
    eva_run_with(&TINY, seeds, out, extra)
}

pub(crate) fn eva_run_with(settings: &[&str], seeds: &Path, out: &Path, extra: &[&str]) -> Command {
    let plugins_dir = eva_test_support::component("eva-plugin-regret").parent().unwrap().to_owned();
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
    eva_test_support::models::default_model().parent().unwrap().parent().unwrap().to_owned()
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
    assert_eq!(summary["baseline"].as_str().unwrap(), eva_test_support::models::default_model().to_str().unwrap());
    assert_eq!(summary["prompts"], 3);

    let report = Command::new(env!("CARGO_BIN_EXE_eva-host")).arg("report").arg(run).output().unwrap();
    assert!(report.status.success(), "{}", String::from_utf8_lossy(&report.stderr));
    let page = run.join("report.html");
    let dom = eva_test_support::browser::dom(&page);
    assert!(dom.contains("id=\"evaluation\""), "the evaluation is in the report");
    let shot = eva_test_support::browser::screenshot(&page, 1300, 3000);
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
    assert!(err.contains("resume with `--replace info-metric="), "the way on is named: {err}");
    assert!(!changed.join("iter-1").exists(), "nothing was run");
    // So is a new run told to use plugins it does not get (`--plugin-lock`).
    let fresh = dir.path().join("fresh");
    let lock = changed.join("plugins.lock");
    let out = eva_run_with(&two, &seeds, &fresh, &["--plugin-lock", lock.to_str().unwrap()]).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains(&lock.display().to_string()), "{err}");
    assert!(!fresh.join("iter-1").exists(), "nothing was run");
}

/// `--weights q8_0` samples answers and evolutions on the quantized decoder, and is saved with
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
    assert!(
        log.lines().any(|l| l.contains("generation runs on the quantized decoder") && l.contains("format=q8_0")),
        "{log}"
    );
    let answers = rows(&out_dir.join("iter-1/answers.jsonl"));
    assert!(answers.iter().all(|a| a["answers"].as_array().unwrap().len() == 2));
    assert_eq!(rows(&out_dir.join("metrics.jsonl")).len(), 1, "the iteration finished");
}

#[test]
fn a_bad_seed_file_is_reported_by_line_before_any_model_work() {
    let dir = tempfile::tempdir().unwrap();
    let cases: [(&[&str], &str); 5] = [
        (&[SEEDS[0], "{\"prompt\": \"broken"], "seeds.jsonl:2: not valid JSON"),
        (&[SEEDS[0], SEEDS[1], r#"{"prompt": "   "}"#], "seeds.jsonl:3: the prompt has no visible character"),
        (
            &[SEEDS[0], r#"{"prompt": "\u200b\u2060\ufeff\u0007"}"#],
            "seeds.jsonl:2: the prompt has no visible character",
        ),
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

/// `eva-host run --resume` on `out` with more flags.
pub(crate) fn resume_with(out: &Path, extra: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_eva-host"))
        .args(["run", "--resume", "--threads", "1", "--out"])
        .arg(out)
        .args(extra)
        .env("EVA_CACHE_DIR", cache_dir())
        .output()
        .unwrap()
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap().flatten() {
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

pub(crate) fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// `eva-host report RUN` within a minute (a plot that cannot place its axes must fail,
/// not spin).
fn report_within_a_minute(run: &Path) -> std::process::Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_eva-host"))
        .arg("report")
        .arg(run)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let started = std::time::Instant::now();
    while child.try_wait().unwrap().is_none() {
        if started.elapsed() > std::time::Duration::from_secs(60) {
            child.kill().unwrap();
            panic!("eva-host report {} ran for a minute", run.display());
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    child.wait_with_output().unwrap()
}

fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

/// A run whose plugins push the bounds (an info metric scoring 1e308 and logging forged
/// lines, an evolver whose only variant is longer than the model's context), then what
/// users and kills do to its directory: a cut phase file, a deleted model, leftovers of a
/// killed save, flags a resume would ignore, and a plugin replaced to run one more
/// iteration.
#[test]
fn a_run_survives_hostile_plugins_and_its_directory_is_checked_on_resume() {
    let dir = tempfile::tempdir().unwrap();
    let seeds = seeds(
        dir.path(),
        &[
            r#"{"id": "huge-1", "prompt": "Suggest a name for a friendly robot."}"#,
            r#"{"id": "huge-2", "prompt": "What are three easy ways to save water at home?"}"#,
            r#"{"id": "forge", "prompt": "Why is the sky blue?"}"#,
        ],
    );
    let settings = dir.path().join("plugins.toml");
    std::fs::write(
        &settings,
        "[hostile-evolver]\nmode = \"long\"\n[hostile-evolver.limits]\nmax-prompt-bytes = 200000\n",
    )
    .unwrap();
    let run = dir.path().join("run");
    let (info, evolver) = (
        eva_test_support::component("eva-fixture-hostile-info"),
        eva_test_support::component("eva-fixture-hostile-evolver"),
    );
    let creator = eva_test_support::models::default_model();
    let plugins = [
        "--creator-model",
        creator.to_str().unwrap(),
        "--plugin",
        info.to_str().unwrap(),
        "--plugin",
        evolver.to_str().unwrap(),
        "--plugin-config-file",
        settings.to_str().unwrap(),
    ];
    let out = eva_run(&seeds, &run, &plugins).output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));

    // The variant longer than the context is dropped in the evolve phase, by name.
    let evolved = rows(&run.join("iter-1/evolved.jsonl"));
    assert_eq!(evolved.len(), 1);
    assert_eq!(evolved[0]["kept"], false);
    let why = evolved[0]["dropped_because"].as_str().unwrap();
    assert!(why.starts_with("too long: ") && why.contains("exceed the model's context of 8192"), "{why}");
    let log = std::fs::read_to_string(run.join("run.log")).unwrap();
    assert!(
        log.lines().any(|l| l.contains("hostile-evolver") && l.contains("t1-e0") && l.contains("too long")),
        "{log}"
    );
    // The creator model is recorded and loaded.
    let config = std::fs::read_to_string(run.join("config.toml")).unwrap();
    assert!(config.contains(&format!("creator_model = {:?}", creator.display().to_string())), "{config}");
    assert!(log.contains("the evolver's generate is served by the creator model"), "{log}");
    // A plugin's log record stays one line of the log.
    let forged: Vec<&str> = log.lines().filter(|l| l.contains("forged line")).collect();
    assert!(!forged.is_empty() && forged.iter().all(|l| l.contains("fine\\n2026-12-01")), "{forged:?}");
    // Info scores of 1e308 give a finite mean, and the report draws them.
    let metrics = rows(&run.join("metrics.jsonl"));
    let info_mean = metrics[0]["info_mean"].as_f64().expect("a number, not null");
    assert!((info_mean - 1e308 / 3.0 * 2.0).abs() < 1e295, "{info_mean}");
    assert_eq!(metrics[0]["info_max"].as_f64(), Some(1e308));
    let report = report_within_a_minute(&run);
    assert!(report.status.success(), "{}", stderr(&report));
    // Files are written with the umask's mode, as a plain write would make them.
    let plain = dir.path().join("plain");
    std::fs::write(&plain, "x").unwrap();
    for file in ["config.toml", "metrics.jsonl", "phases.json", "report.html", "iter-1/pairs.jsonl"] {
        assert_eq!(mode(&run.join(file)), mode(&plain), "{file}");
    }

    // A finished phase file cut by a line is refused by name, by resume and report.
    let cut = dir.path().join("cut");
    copy_dir(&run, &cut);
    let pairs = std::fs::read_to_string(cut.join("iter-1/pairs.jsonl")).unwrap();
    assert!(pairs.lines().count() >= 2, "{pairs}");
    let shorter: String = pairs.lines().skip(1).map(|l| format!("{l}\n")).collect();
    std::fs::write(cut.join("iter-1/pairs.jsonl"), shorter).unwrap();
    std::fs::remove_dir_all(cut.join("iter-1/model")).unwrap();
    std::fs::remove_file(cut.join("metrics.jsonl")).unwrap();
    let refused = resume(&cut);
    assert!(!refused.status.success());
    assert!(
        stderr(&refused).contains("pairs.jsonl has") && stderr(&refused).contains("cut or changed"),
        "{}",
        stderr(&refused)
    );
    assert!(!cut.join("iter-1/model").exists(), "nothing was trained on the cut file");
    let answers = cut.join("iter-1/answers.jsonl");
    std::fs::write(&answers, std::fs::read_to_string(&answers).unwrap() + "\n").unwrap();
    let report = report_within_a_minute(&cut);
    assert!(!report.status.success() && stderr(&report).contains("answers.jsonl has"), "{}", stderr(&report));

    // A finished iteration's model that is gone is an error, never the base model.
    let lost = dir.path().join("lost");
    copy_dir(&run, &lost);
    std::fs::remove_dir_all(lost.join("iter-1/model")).unwrap();
    let refused = resume(&lost);
    let err = stderr(&refused);
    assert!(!refused.status.success() && err.contains("iter-1/model is missing"), "{err}");
    let eval = Command::new(env!("CARGO_BIN_EXE_eva-host"))
        .args(["eval", "--threads", "1", "--model"])
        .arg(&lost)
        .arg("--prompts")
        .arg(&seeds)
        .env("EVA_CACHE_DIR", cache_dir())
        .output()
        .unwrap();
    assert!(!eval.status.success() && stderr(&eval).contains("iter-1/model is missing"), "{}", stderr(&eval));

    // What a killed save or write leaves behind is removed on resume.
    let killed = dir.path().join("killed");
    copy_dir(&run, &killed);
    std::fs::create_dir_all(killed.join("iter-1/.eva-save-x1")).unwrap();
    std::fs::write(killed.join("iter-1/.eva-save-x1/model.safetensors"), vec![0u8; 1 << 20]).unwrap();
    std::fs::create_dir_all(killed.join("iter-1/train/.checkpoint-x2")).unwrap();
    std::fs::write(killed.join(".eva-write-x3"), "half a file").unwrap();
    let resumed = resume(&killed);
    assert!(resumed.status.success(), "{}", stderr(&resumed));
    for left in ["iter-1/.eva-save-x1", "iter-1/train/.checkpoint-x2", ".eva-write-x3"] {
        assert!(!killed.join(left).exists(), "{left} is still there");
    }

    // Flags a resume would ignore are refused; --reconfigure and --replace change the
    // rest of the run, and say so in config.toml and plugins.lock.
    let refused = resume_with(&killed, &["--iterations", "2"]);
    assert!(
        !refused.status.success() && stderr(&refused).contains("--iterations is given with --resume"),
        "{}",
        stderr(&refused)
    );
    let refused = resume_with(&killed, &["--plugin", evolver.to_str().unwrap()]);
    assert!(!refused.status.success() && stderr(&refused).contains("use --replace ROLE=FILE"), "{}", stderr(&refused));
    let evol_instruct = eva_test_support::component("eva-plugin-evol-instruct");
    let replace = format!("evolver={}", evol_instruct.display());
    let before = std::fs::read(killed.join("iter-1/pairs.jsonl")).unwrap();
    let extended = resume_with(
        &killed,
        &["--reconfigure", "--iterations", "2", "--replace", &replace, "--plugin-config", "evol-instruct.variants=1"],
    );
    assert!(extended.status.success(), "{}", stderr(&extended));
    assert_eq!(rows(&killed.join("metrics.jsonl")).len(), 2);
    assert_eq!(std::fs::read(killed.join("iter-1/pairs.jsonl")).unwrap(), before, "a finished phase was redone");
    let config: toml::Table = toml::from_str(&std::fs::read_to_string(killed.join("config.toml")).unwrap()).unwrap();
    let change = &config["changes"].as_array().unwrap()[0];
    assert_eq!(change["from"].as_str(), Some("iter-2/respond+score"));
    let settings = change["settings"].to_string();
    assert!(settings.contains("iterations: 1 -> 2") && settings.contains("evol-instruct.variants=1"), "{settings}");
    let plugins = change["plugins"].to_string();
    assert!(
        plugins.contains("hostile-evolver.wasm -> ") && plugins.contains("eva-plugin-evol-instruct.wasm"),
        "{plugins}"
    );
    assert_eq!(change["retired"].to_string(), r#"["hostile-evolver"]"#);
    let lock = PluginLock::read(&killed.join("plugins.lock")).unwrap();
    assert_eq!(lock.by_role("evolver").unwrap().name, "evol-instruct");
    assert!(!rows(&killed.join("iter-2/evolved.jsonl")).is_empty());
}

/// A plugin that declares another plugin's name is refused before it is configured: it
/// never sees that plugin's directory grant.
#[test]
fn a_plugin_cannot_take_another_plugins_name_and_grant() {
    let dir = tempfile::tempdir().unwrap();
    let seeds = seeds(dir.path(), &SEEDS);
    let data = dir.path().join("data");
    std::fs::create_dir(&data).unwrap();
    std::fs::write(data.join("secret.txt"), "s3cret-token").unwrap();
    let impostor = eva_test_support::component("eva-fixture-impostor");
    let grant = format!("regret={}", data.display());
    let out = dir.path().join("run");
    let result = eva_run(&seeds, &out, &["--plugin", impostor.to_str().unwrap(), "--plugin-allow-read", &grant])
        .output()
        .unwrap();
    let err = stderr(&result);
    assert!(!result.status.success());
    assert!(err.contains("two plugins declare the name `regret`"), "{err}");
    assert!(err.contains(&impostor.display().to_string()) && err.contains("eva-plugin-regret.wasm"), "{err}");
    let log = std::fs::read_to_string(out.join("run.log")).unwrap_or_default();
    assert!(!err.contains("s3cret") && !log.contains("s3cret"), "the impostor read the grant: {err}\n{log}");
    assert!(!out.join("iter-1").exists(), "nothing was run");
}

/// A wrong loss name, LoRA target or out-of-range setting is refused before any model or
/// plugin work (the model path does not exist), with nothing written.
#[test]
fn bad_settings_are_refused_before_the_first_phase() {
    let dir = tempfile::tempdir().unwrap();
    let seeds = seeds(dir.path(), &SEEDS);
    let file = dir.path().join("settings.toml");
    std::fs::write(&file, "iterations = 3\nlora-rank = 4\niteration = 2\n").unwrap();
    let file = file.to_str().unwrap();
    let cases: [(&[&str], &str); 12] = [
        (&["--loss", "dpoo"], "loss: unknown variant `dpoo`, expected one of `dpo`, `ipo`, `simpo`, `orpo`, `hinge`"),
        (&["--lora-targets", "qproj"], "unknown LoRA target `qproj`"),
        (&["--decay", "cosin"], "decay: unknown variant `cosin`, expected one of `cosine`, `linear`, `constant`"),
        (&["--lr", "0"], "--lr must be a positive number, not 0"),
        (&["--top-p", "1.5"], "--top-p must be in (0, 1], not 1.5"),
        (&["--micro-batch", "0"], "--micro-batch must be at least 1"),
        (&["--creator-model", "/no/such/creator.gguf"], "--creator-model /no/such/creator.gguf: no such file"),
        (&["--config", file], "settings.toml: unknown setting `iteration` (see eva-host run --help)"),
        (&["--judge-max-score", "12"], "--judge-max-score must be in 2..=9"),
        (&["--trainer", "external"], "--trainer external needs --trainer-command CMD"),
        (
            &["--reward", "plugin", "--reward-plugin", "x.wasm", "--reward-endpoint", "http://127.0.0.1:1"],
            "--reward-endpoint serves a judge or a classifier, not a plugin",
        ),
        (&["--creator-endpoint", "localhost:8000"], "`localhost:8000` is not an http:// or https:// URL"),
    ];
    for (flags, want) in cases {
        let out = dir.path().join("run");
        let extra = [&["--model", "/no/such/model.gguf"], flags].concat();
        let result = eva_run_with(&[], &seeds, &out, &extra).output().unwrap();
        let err = stderr(&result);
        assert!(!result.status.success() && err.contains(want), "{flags:?}: {err}");
        assert!(!out.exists(), "{flags:?}: nothing is written");
    }
}

/// A run directory written by the eva-host before the loop became a library (see
/// `tests/fixtures/runs/README.md`), killed while training iteration 1, resumes with
/// today's code: it trains iteration 1 on the old pairs, runs iteration 2, and leaves
/// every old file as it was.
#[test]
fn a_run_written_by_the_previous_eva_resumes_and_finishes() {
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/runs/killed-in-training");
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    copy_dir(&fixture, &out);
    // The plugins that run used: the first-party plugins as built then (contract 0.1.1,
    // kept as bytes; the lock pins their digests), called through the 0.1 adapter.
    let plugins_dir = dir.path().join("plugins");
    std::fs::create_dir_all(&plugins_dir).unwrap();
    let kept = eva_test_support::workspace_root().join("tests/fixtures/compat/wit-0.1.1");
    for name in ["regret", "weighted-sampler", "evol-instruct", "max-min-pairing"] {
        std::fs::copy(kept.join(format!("{name}.wasm")), plugins_dir.join(format!("eva-plugin-{name}.wasm"))).unwrap();
    }
    for file in ["config.toml", "plugins.lock"] {
        let text = std::fs::read_to_string(out.join(file)).unwrap();
        std::fs::write(out.join(file), text.replace("@PLUGINS_DIR@", plugins_dir.to_str().unwrap())).unwrap();
    }
    let result = resume(&out);
    assert!(result.status.success(), "{}", stderr(&result));
    let metrics = rows(&out.join("metrics.jsonl"));
    assert_eq!(metrics.len(), 2, "{metrics:?}");
    let pairs = rows(&fixture.join("iter-1/pairs.jsonl")).len();
    assert_eq!(metrics[0]["pairs"], pairs, "iteration 1 trained on the old run's pairs");
    assert!(metrics[0]["first_loss"].is_f64() && metrics[1]["next_prompts"].as_u64() > Some(0), "{metrics:?}");
    assert!(out.join("iter-1/model/config.json").is_file() && out.join("iter-2/prompts-next.jsonl").is_file());
    for entry in std::fs::read_dir(fixture.join("iter-1")).unwrap().flatten() {
        let name = entry.file_name();
        let old = std::fs::read(entry.path()).unwrap();
        assert!(std::fs::read(out.join("iter-1").join(&name)).unwrap() == old, "{name:?} changed");
    }
    let config = std::fs::read_to_string(out.join("config.toml")).unwrap();
    assert!(config.contains("lora_targets = \"q_proj,v_proj\"") && !config.contains("changes"), "{config}");
}

/// `--creator-endpoint`: the evolver's `generate` goes to that server, not to the policy.
/// Here nothing listens there, so the evolve phase fails naming it, after the answers.
#[test]
fn the_evolvers_generate_goes_to_the_creator_endpoint() {
    let dir = tempfile::tempdir().unwrap();
    let (seeds, out) = (seeds(dir.path(), &SEEDS), dir.path().join("run"));
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let url = format!("http://127.0.0.1:{port}");
    let result =
        eva_run(&seeds, &out, &["--creator-endpoint", &url, "--creator-served-model", "creator"]).output().unwrap();
    let err = stderr(&result);
    assert!(!result.status.success());
    assert!(err.contains("evolve") && err.contains(&format!("{url} cannot be reached")), "{err}");
    assert!(out.join("iter-1/selected.jsonl").is_file() && !out.join("iter-1/evolved.jsonl").exists());
    let saved = std::fs::read_to_string(out.join("config.toml")).unwrap();
    assert!(saved.contains(&format!("creator_endpoint = \"{url}\"")), "{saved}");
}
