//! A plugin written in C (`examples/plugins/c-spread-pairing`), built from source with
//! `eva-host plugin bindgen c`, clang + wasi-libc and `eva-host plugin componentize`, then
//! run in the host through the pairing role.

use std::path::{Path, PathBuf};
use std::process::Command;

use eva::harness::{engine, prompt, with_config};
use eva_plugin_runtime::{Error, Pairing, Preference, PromptResponses, ReportedError, Role, ScoredResponse};

fn build(dir: &Path) -> PathBuf {
    let out = dir.join("spread-pairing.wasm");
    let script = eva::workspace_root().join("examples/plugins/c-spread-pairing/build.sh");
    let result = Command::new(&script).arg(&out).env("EVA_HOST", env!("CARGO_BIN_EXE_eva-host")).output().unwrap();
    assert!(
        result.status.success(),
        "{} failed (it needs clang-19, lld-19, wasi-libc and libclang-rt-19-dev-wasm32: scripts/install-test-tools): {}",
        script.display(),
        String::from_utf8_lossy(&result.stderr)
    );
    out
}

fn item(rewards: &[f64]) -> PromptResponses {
    PromptResponses {
        prompt: prompt("p", "q"),
        responses: rewards.iter().map(|&r| ScoredResponse { text: format!("r{r}"), reward: r, tokens: 3 }).collect(),
    }
}

fn pref(chosen: u32, rejected: u32) -> Preference {
    Preference { chosen, rejected }
}

#[test]
fn a_c_pairing_plugin_builds_from_source_and_pairs_by_its_rule() {
    let dir = tempfile::tempdir().unwrap();
    let path = build(dir.path());
    let plugin = engine().load(&path, with_config(&[("pairs", "2")])).unwrap();
    assert_eq!((plugin.role(), plugin.name()), (Role::Pairing, "spread-pairing"));
    let mut pairing = Pairing::new(plugin).unwrap();
    let items = [item(&[0.1, 0.8, 0.3]), item(&[0.5, 0.5]), item(&[0.9, 0.2, 0.9, 0.2])];
    let pairs = pairing.pair_batch(&items).unwrap();
    // Best with worst, then second best with second worst; equal rewards keep their order.
    assert_eq!(pairs, vec![vec![pref(1, 0)], vec![], vec![pref(0, 3), pref(2, 1)]]);
    assert_eq!(pairing.pair(&items[2]).unwrap(), pairs[2]);

    let gap = engine().load(&path, with_config(&[("pairs", "3"), ("min-gap", "0.5")])).unwrap();
    let pairs = Pairing::new(gap).unwrap().pair(&item(&[0.0, 1.0, 0.4, 0.6, 0.5])).unwrap();
    assert_eq!(pairs, vec![pref(1, 0)], "the second pair's gap (0.6 - 0.4) is below min-gap");

    for (key, value, want) in
        [("pairs", "0", "pairs must be in 1..=64, not 0"), ("min-gap", "-1", "min-gap must not be negative")]
    {
        let err = engine().load(&path, with_config(&[(key, value)])).err().expect("refused");
        assert!(
            matches!(&err, Error::Reported { call: "configure", error: ReportedError::InvalidConfig(m), .. } if m.contains(want)),
            "{err}"
        );
    }
}

#[test]
fn the_contract_written_by_eva_host_is_the_repository_s() {
    let dir = tempfile::tempdir().unwrap();
    let out =
        Command::new(env!("CARGO_BIN_EXE_eva-host")).args(["plugin", "wit", "--out"]).arg(dir.path()).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let repo = eva::workspace_root().join("wit");
    let mut names: Vec<String> =
        std::fs::read_dir(&repo).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    names.sort();
    assert_eq!(names.len(), 4);
    for name in names {
        assert_eq!(std::fs::read(dir.path().join(&name)).unwrap(), std::fs::read(repo.join(&name)).unwrap(), "{name}");
    }
}
