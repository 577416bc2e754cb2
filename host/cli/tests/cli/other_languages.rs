//! Plugins written in C (`examples/plugins/c-spread-pairing`: `eva-host plugin bindgen c`,
//! clang + wasi-libc, `eva-host plugin componentize`) and JavaScript
//! (`examples/plugins/js-stratified-sampler`: componentize-js against `eva-host plugin
//! wit`), built from source by their own build scripts and run in the host through their
//! roles. (The Python example is tested in `testing/tests/integration/other_languages.rs`.)

use std::path::PathBuf;
use std::process::Command;

use eva_plugin_runtime::{Error, Pairing, Preference, PromptResponses, ReportedError, Role, Sampler, ScoredResponse};
use eva_test_support::harness::{engine, prompt, run_build_script, with_config};

/// Run `examples/plugins/EXAMPLE/build.sh OUT` with this eva-host.
fn build(example: &str, out: PathBuf, needs: &str) -> PathBuf {
    let script = eva_test_support::workspace_root().join("examples/plugins").join(example).join("build.sh");
    run_build_script(&script, &out, env!("CARGO_BIN_EXE_eva-host"), needs);
    out
}

fn refused_config(err: &Error, want: &str) -> bool {
    matches!(err, Error::Reported { call: "configure", error: ReportedError::InvalidConfig(m), .. } if m.contains(want))
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
    let needs = "clang-19, lld-19, wasi-libc and libclang-rt-19-dev-wasm32";
    let path = build("c-spread-pairing", dir.path().join("spread-pairing.wasm"), needs);
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
        assert!(refused_config(&err, want), "{err}");
    }
}

#[test]
fn a_javascript_sampler_builds_from_source_and_draws_across_quantile_bins() {
    let dir = tempfile::tempdir().unwrap();
    let path = build("js-stratified-sampler", dir.path().join("stratified-sampler.wasm"), "Node.js 20 and npm");
    let load = |bins: &str| Sampler::new(engine().load(&path, with_config(&[("bins", bins)])).unwrap()).unwrap();
    let mut sampler = load("4");
    assert_eq!((sampler.plugin().role(), sampler.plugin().name()), (Role::Sampler, "stratified-sampler"));
    assert!(sampler.plugin().imports().iter().all(|i| !i.starts_with("wasi:")), "built without WASI");

    // Eight prompts, bins of two by score: {7, 6}, {5, 4}, {3, 2}, {1, 0} (index = rank).
    let scores = [0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7];
    let bin = |i: usize| 3 - i / 2;
    let picks = sampler.sample(&scores, 4).unwrap();
    let mut bins: Vec<usize> = picks.iter().map(|&i| bin(i)).collect();
    assert_eq!(bins, [0, 1, 2, 3], "one per bin, most informative first: {picks:?}");
    // Six: the turn comes back to the top two bins.
    let picks = sampler.sample(&scores, 6).unwrap();
    bins = picks.iter().map(|&i| bin(i)).collect();
    assert_eq!(bins, [0, 1, 2, 3, 0, 1], "{picks:?}");
    let mut all = sampler.sample(&scores, 8).unwrap();
    all.sort();
    assert_eq!(all, (0..8).collect::<Vec<_>>(), "distinct indices");
    // One bin is a uniform draw; the host's seeded random makes it repeatable.
    let mut one = load("1");
    let a = one.sample(&scores, 3).unwrap();
    assert_eq!(a, load("1").sample(&scores, 3).unwrap());

    let err = engine().load(&path, with_config(&[("bins", "0")])).err().expect("refused");
    assert!(refused_config(&err, "bins must be in 1..=100, not 0"), "{err}");
}

#[test]
fn the_contract_written_by_eva_host_is_the_repository_s() {
    let dir = tempfile::tempdir().unwrap();
    let out =
        Command::new(env!("CARGO_BIN_EXE_eva-host")).args(["plugin", "wit", "--out"]).arg(dir.path()).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let repo = eva_test_support::workspace_root().join("wit");
    let mut names: Vec<String> =
        std::fs::read_dir(&repo).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    names.sort();
    assert_eq!(names.len(), 4);
    for name in names {
        assert_eq!(std::fs::read(dir.path().join(&name)).unwrap(), std::fs::read(repo.join(&name)).unwrap(), "{name}");
    }
}
