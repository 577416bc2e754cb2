//! Plugins written in other languages, built from source and run in the host.

use std::path::PathBuf;
use std::process::Command;

use eva_plugin_runtime::{Error, InfoMetric, PromptRewards, ReportedError};
use eva_test_support::harness::*;

/// Build `examples/plugins/python-length-regret` with componentize-py.
fn python_length_regret() -> PathBuf {
    let out = eva_test_support::target_dir().join("eva-plugins").join("python-length-regret.wasm");
    let script = eva_test_support::workspace_root().join("examples/plugins/python-length-regret/build.sh");
    let status = Command::new(&script).arg(&out).status().expect("run build.sh");
    assert!(status.success(), "{} failed (it needs python3 with pip)", script.display());
    out
}

#[test]
fn python_info_metric_matches_its_formula() {
    let path = python_length_regret();
    let load = |penalty: &str| engine().load(&path, with_config(&[("penalty", penalty)]));
    let mut info = InfoMetric::new(load("0.01").unwrap()).unwrap();
    assert_eq!(info.plugin().name(), "length-regret");
    assert!(info.plugin().imports().iter().any(|i| i.starts_with("wasi:")), "componentize-py imports WASI");

    let item = |rewards: &[f64], tokens: &[u32]| PromptRewards {
        prompt: prompt("p", "q"),
        rewards: rewards.to_vec(),
        token_counts: tokens.to_vec(),
        responses: vec!["a".into(); rewards.len()],
    };
    // gap 0.6; the best answer (index 1) has 40 more tokens than the shortest.
    let items = [item(&[0.2, 0.8, 0.5], &[60, 100, 80]), item(&[0.1, 0.1], &[5, 5])];
    let scores = info.score_batch(&items).unwrap();
    let expected = [0.6 - 0.01 * 40.0, 0.0];
    for (s, e) in scores.iter().zip(expected) {
        assert!((s - e).abs() < 1e-12, "{scores:?} != {expected:?}");
    }

    let err = load("-1").err().expect("a negative penalty is refused");
    assert!(
        matches!(&err, Error::Reported { call: "configure", error: ReportedError::InvalidConfig(m), .. } if m.contains("-1")),
        "{err}"
    );
    let err = info.score(&item(&[], &[])).unwrap_err();
    assert!(err.to_string().contains("prompt 0 (`p`) has no rewards"), "the host checks input first: {err}");
}
