//! `eva-host plugin new`: the template of every role in every language builds from
//! source with its own build path, loads in the host and behaves as its README says —
//! the same outputs whatever the language.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use eva_plugin_runtime::{
    ChatMessage, Evolved, Evolver, Exchange, GenerateRequest, Generator, InfoMetric, Pairing, Plugin, Preference,
    Prompt, PromptResponses, RewardModel, Role, Sampler, ScoredResponse,
};
use eva_test_support::harness::{engine, prompt, rewards, run_build_script};

const ROLES: [&str; 5] = ["info-metric", "sampler", "evolver", "pairing", "reward"];

fn eva_host(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_eva-host")).args(args).output().unwrap();
    assert!(out.status.success(), "eva-host {} failed: {}", args.join(" "), String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `eva-host plugin new` for `lang` and `role` into `root/NAME`; the project directory.
fn new_project(root: &Path, lang: &str, role: &str) -> (String, PathBuf) {
    let name = format!("my-{lang}-{role}");
    let dir = root.join(&name);
    let written = eva_host(&["plugin", "new", "--lang", lang, "--role", role, &name, "--dir", dir.to_str().unwrap()]);
    assert!(written.lines().any(|l| l.ends_with("README.md")), "{written}");
    (name, dir)
}

struct NoModel;

impl Generator for NoModel {
    fn complete(&self, _: &[GenerateRequest]) -> Result<Vec<String>, String> {
        Err("the template evolver does not generate".into())
    }
}

fn responses(rewards: &[f64]) -> PromptResponses {
    PromptResponses {
        prompt: prompt("p", "q"),
        responses: rewards.iter().map(|&r| ScoredResponse { text: format!("r{r}"), reward: r, tokens: 3 }).collect(),
    }
}

/// `eva-host plugin test` of a built template on its own `tests.jsonl` passes, and on a
/// case expecting another output fails, naming the difference.
fn plugin_test_passes_and_fails(component: &Path, dir: &Path) {
    let test = |cases: &Path| {
        Command::new(env!("CARGO_BIN_EXE_eva-host"))
            .args(["plugin", "test"])
            .arg(component)
            .arg(cases)
            .output()
            .unwrap()
    };
    let out = test(&dir.join("tests.jsonl"));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("1 passed, 0 failed"),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The same case with a changed expectation: every number moved by one.
    let mut case: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("tests.jsonl")).unwrap()).unwrap();
    fn bump(v: &mut serde_json::Value) {
        match v {
            serde_json::Value::Number(n) => *v = serde_json::json!(n.as_f64().unwrap() + 1.0),
            serde_json::Value::Array(items) => items.iter_mut().for_each(bump),
            serde_json::Value::Object(map) => map.values_mut().for_each(bump),
            _ => {}
        }
    }
    bump(&mut case["expect"]);
    let wrong = dir.join("wrong.jsonl");
    std::fs::write(&wrong, case.to_string()).unwrap();
    let out = test(&wrong);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        !out.status.success() && stdout.contains("FAIL  what the template does") && stdout.contains("expected"),
        "{stdout}"
    );
}

/// Load a built template and check it does what its README says.
fn check(component: &Path, name: &str, role: &str) {
    let plugin: Plugin =
        engine().load(component, Default::default()).unwrap_or_else(|e| panic!("loading {}: {e}", component.display()));
    assert_eq!((plugin.role().world(), plugin.name()), (role, name));
    assert!(!plugin.metadata().description.is_empty());
    match plugin.role() {
        Role::InfoMetric => {
            let scores =
                InfoMetric::new(plugin).unwrap().score_batch(&[rewards("a", &[0.1, 0.9, 0.4]), rewards("b", &[0.5])]);
            assert_eq!(scores.unwrap(), [0.9 - 0.1, 0.0], "{name}");
        }
        Role::Sampler => {
            let picks = Sampler::new(plugin).unwrap().sample(&[0.2, 0.9, 0.5, 0.9], 3).unwrap();
            assert_eq!(picks, [1, 3, 2], "{name}: best first, ties in order");
        }
        Role::Evolver => {
            let mut evolver = Evolver::new(plugin).unwrap();
            // Labels cross the contract both ways: the child keeps its parent's.
            let labels = r#"{"answer":"5"}"#.to_owned();
            let labelled = Prompt { labels: Some(labels.clone()), ..prompt("b", "Add 2 and 3.") };
            let two = [prompt("a", "Name a colour."), labelled];
            let children = evolver.evolve(&two, Arc::new(NoModel)).unwrap();
            let child = |parent, text: &str, labels| Evolved {
                parent,
                messages: vec![ChatMessage::user(format!("{text} Explain each step."))],
                method: "step-by-step".into(),
                labels,
            };
            assert_eq!(children, [child(0, "Name a colour.", None), child(1, "Add 2 and 3.", Some(labels))], "{name}");
        }
        Role::Pairing => {
            let items = [responses(&[0.1, 0.8, 0.3]), responses(&[0.5, 0.5]), responses(&[0.9, 0.2, 0.9, 0.2])];
            let pairs = Pairing::new(plugin).unwrap().pair_batch(&items).unwrap();
            let pair = |chosen, rejected| vec![Preference { chosen, rejected }];
            assert_eq!(pairs, [pair(1, 0), vec![], pair(0, 3)], "{name}: first best, last worst");
        }
        Role::Reward => {
            let exchange =
                |words: usize| Exchange { prompt: prompt("p", "q"), response: vec!["word"; words].join(" \n") };
            let rates = RewardModel::new(plugin).unwrap().rate_batch(&[exchange(50), exchange(1), exchange(100)]);
            assert_eq!(rates.unwrap(), [1.0, 1.0 / (1.0 + 49.0 / 50.0), 0.5], "{name}");
        }
    }
}

#[test]
fn rust_templates_build_with_the_sdk_and_run() {
    let root = tempfile::tempdir().unwrap();
    // One target directory for the five: the SDK and wit-bindgen compile once.
    let target = eva_test_support::target_dir().join("eva-template-guests");
    for role in ROLES {
        let (name, dir) = new_project(root.path(), "rust", role);
        let out = root.path().join("out");
        let built = eva_host(&[
            "plugin",
            "build",
            dir.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
            "--target-dir",
            target.to_str().unwrap(),
        ]);
        check(Path::new(built.trim()), &name, role);
        plugin_test_passes_and_fails(Path::new(built.trim()), &dir);
    }
}

#[test]
fn a_rust_template_copied_elsewhere_builds_with_its_own_sdk() {
    let root = tempfile::tempdir().unwrap();
    let (name, dir) = new_project(root.path(), "rust", "reward");
    let manifest = std::fs::read_to_string(dir.join("Cargo.toml")).unwrap();
    assert!(manifest.contains(r#"eva-plugin-sdk = { path = "eva-plugin-sdk" }"#), "{manifest}");
    // Another machine: the project alone, somewhere else.
    let moved = tempfile::tempdir().unwrap();
    let there = moved.path().join("elsewhere").join(&name);
    std::fs::create_dir_all(there.parent().unwrap()).unwrap();
    std::fs::rename(&dir, &there).unwrap();
    let target = eva_test_support::target_dir().join("eva-template-guests");
    let out = there.join("plugins-out");
    let (there, out, target) = (there.to_str().unwrap(), out.to_str().unwrap(), target.to_str().unwrap());
    let built = eva_host(&["plugin", "build", there, "--out", out, "--target-dir", target]);
    check(Path::new(built.trim()), &name, "reward");
}

/// Every role's template in `lang`, built by its `build.sh`, loaded and checked.
fn build_with_script(lang: &str, needs: &str) {
    let root = tempfile::tempdir().unwrap();
    for role in ROLES {
        let (name, dir) = new_project(root.path(), lang, role);
        let out = root.path().join(format!("{name}.wasm"));
        run_build_script(&dir.join("build.sh"), &out, env!("CARGO_BIN_EXE_eva-host"), needs);
        check(&out, &name, role);
        plugin_test_passes_and_fails(&out, &dir);
        if lang == "python" {
            assert!(dir.join("bindings/wit_world/__init__.py").is_file(), "no typed bindings for the editor");
        }
    }
}

#[test]
fn python_templates_build_with_componentize_py_and_run() {
    build_with_script("python", "python3 and pip");
}

#[test]
fn javascript_templates_build_with_componentize_js_and_run() {
    build_with_script("js", "Node.js 20 and npm");
}

#[test]
fn c_templates_build_with_clang_and_wasi_libc_and_run() {
    build_with_script("c", "clang-19, lld-19, wasi-libc and libclang-rt-19-dev-wasm32");
}

#[test]
fn bad_names_roles_and_occupied_directories_are_refused() {
    let root = tempfile::tempdir().unwrap();
    let new = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_eva-host"))
            .args(["plugin", "new"])
            .args(args)
            .current_dir(root.path())
            .output()
            .unwrap()
    };
    let out = new(&["--lang", "c", "--role", "ranker", "x"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("`ranker` is not a role (roles: info-metric, sampler"));
    let out = new(&["--lang", "c", "--role", "sampler", "My Plugin"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("plugin name `My Plugin`"));
    std::fs::create_dir_all(root.path().join("taken")).unwrap();
    std::fs::write(root.path().join("taken/keep.txt"), "mine").unwrap();
    let out = new(&["--lang", "js", "--role", "sampler", "taken"]);
    assert!(!out.status.success() && String::from_utf8_lossy(&out.stderr).contains("already holds files"));
    assert_eq!(std::fs::read_to_string(root.path().join("taken/keep.txt")).unwrap(), "mine");
}
