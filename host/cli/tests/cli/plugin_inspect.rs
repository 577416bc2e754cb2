//! `eva-host plugin inspect`, snapshot-tested.

use std::process::Command;

fn eva_host(args: &[&str]) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_eva-host"))
        .args(args)
        .env("EVA_CACHE_DIR", eva_test_support::target_dir().join("eva-cli-test-cache"))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(if out.status.success() { &out.stdout } else { &out.stderr }).into_owned();
    (out.status.success(), text)
}

/// The digest line changes with every rebuild of the plugin; the rest must not.
fn without_digest(text: &str) -> String {
    text.lines().filter(|l| !l.starts_with("sha256:")).collect::<Vec<_>>().join("\n")
}

#[test]
fn inspect_first_party_plugins() {
    for name in eva_test_support::FIRST_PARTY {
        let path = eva_test_support::component(name);
        let (ok, text) = eva_host(&["plugin", "inspect", path.to_str().unwrap()]);
        assert!(ok, "{text}");
        let digest = eva_plugin_runtime::digest(&std::fs::read(&path).unwrap());
        assert!(text.contains(&format!("sha256:      {digest}")), "{text}");
        insta::assert_snapshot!(name, without_digest(&text));
    }
}

#[test]
fn inspect_a_wasi_guest_lists_its_wasi_imports() {
    let path = eva_test_support::component("eva-fixture-fs-probe");
    let (ok, text) = eva_host(&["plugin", "inspect", path.to_str().unwrap()]);
    assert!(ok, "{text}");
    assert!(text.contains("  wasi:filesystem/preopens@"), "{text}");
}

#[test]
fn inspect_reports_bad_config_and_unknown_plugin_names() {
    let path = eva_test_support::component("eva-plugin-regret");
    let path = path.to_str().unwrap();
    let (ok, text) = eva_host(&["plugin", "inspect", path, "--plugin-config", "regret.metric=nope"]);
    assert!(!ok);
    insta::assert_snapshot!("inspect_bad_metric", text);
    let (ok, text) = eva_host(&["plugin", "inspect", path, "--plugin-config", "regert.metric=gap"]);
    assert!(!ok);
    insta::assert_snapshot!("inspect_unknown_plugin_name", text);
    let (ok, text) = eva_host(&["plugin", "inspect", "/nonexistent.wasm"]);
    assert!(!ok);
    insta::assert_snapshot!("inspect_missing_file", text);
}
