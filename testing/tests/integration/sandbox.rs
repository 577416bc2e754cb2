//! The sandbox: a WASI guest reads nothing unless a directory is granted, and then only
//! that directory, read-only.

use eva_plugin_runtime::{Error, InfoMetric, PluginOptions, ReportedError};
use eva_test_support::harness::*;

fn probe(options: PluginOptions) -> InfoMetric {
    InfoMetric::new(load("eva-fixture-fs-probe", options)).unwrap()
}

fn read_error(info: &mut InfoMetric, path: &str) -> String {
    match info.score(&rewards(path, &[1.0])) {
        Err(Error::Reported { error: ReportedError::Internal(m), .. }) => m,
        other => panic!("reading {path} should fail inside the plugin, got {other:?}"),
    }
}

#[test]
fn without_a_grant_no_file_can_be_read() {
    let mut info = probe(PluginOptions::default());
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("secret.txt");
    std::fs::write(&secret, "top secret").unwrap();
    for path in ["/etc/passwd", secret.to_str().unwrap(), "secret.txt", "/data/secret.txt"] {
        let msg = read_error(&mut info, path);
        assert!(msg.starts_with(&format!("cannot read {path}")), "{msg}");
    }
    assert!(info.plugin().imports().iter().any(|i| i.starts_with("wasi:filesystem/")));
}

#[test]
fn a_granted_directory_is_readable_but_not_writable_or_escapable() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("words.txt"), "twelve bytes").unwrap();
    let options = PluginOptions { read_dir: Some(dir.path().to_owned()), ..PluginOptions::default() };
    let mut info = probe(options);
    assert_eq!(info.score(&rewards("/data/words.txt", &[1.0])).unwrap(), 12.0);

    let msg = read_error(&mut info, "/data/../etc/passwd");
    assert!(msg.starts_with("cannot read /data/../etc/passwd"), "{msg}");
    let err = info.score(&rewards("write:/data/new.txt", &[1.0])).unwrap_err();
    assert!(err.to_string().contains("cannot write /data/new.txt"), "{err}");
    assert!(!dir.path().join("new.txt").exists());
}

#[test]
fn a_grant_of_a_missing_directory_is_an_error_naming_it() {
    let options = PluginOptions { read_dir: Some("/no/such/dir".into()), ..PluginOptions::default() };
    let err = engine().load(&eva_test_support::component("eva-fixture-fs-probe"), options).err().unwrap();
    assert!(err.to_string().contains("/no/such/dir"), "{err}");
}

/// WASI sleeps and clock waits move the plugin's own clock and return at once: a plugin
/// cannot make the host wait on real time.
#[test]
fn a_plugin_sleeping_an_hour_returns_at_once() {
    let mut info = probe(PluginOptions::default());
    let started = std::time::Instant::now();
    let slept = info.score(&rewards("sleep:3600", &[1.0])).unwrap();
    assert!((3600.0..3601.0).contains(&slept), "the plugin's clock moved {slept} s");
    assert!(started.elapsed() < std::time::Duration::from_secs(5), "the host waited {:?}", started.elapsed());
}

#[test]
fn a_plugin_sleeping_forever_meets_its_cpu_deadline() {
    let mut options = PluginOptions::default();
    options.limits.timeout = std::time::Duration::from_millis(300);
    let mut info = probe(options);
    let started = std::time::Instant::now();
    let err = info.score(&rewards("sleep-forever", &[1.0])).unwrap_err();
    assert!(matches!(err, Error::Trap { kind: eva_plugin_runtime::TrapKind::Timeout { .. }, .. }), "{err}");
    assert!(started.elapsed() < std::time::Duration::from_secs(10), "stopped after {:?}", started.elapsed());
}
