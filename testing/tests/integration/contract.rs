//! The contract's edges: components of another WIT version, of no role or of several,
//! files that are no components, and the compiled-component cache.

use std::path::Path;

use eva_plugin_runtime::{ComponentCache, Error, PluginEngine, PluginOptions};
use eva_test_support::harness::*;

/// A component exporting one function named `score` from the interfaces given.
fn component_exporting(interfaces: &[&str]) -> Vec<u8> {
    let exports: String = interfaces
        .iter()
        .enumerate()
        .map(|(i, name)| {
            format!("(instance $i{i} (export \"score\" (func $f))) (export \"{name}\" (instance $i{i}))\n")
        })
        .collect();
    let wat = format!(
        r#"(component
            (core module $m (func (export "f") (result f64) f64.const 1))
            (core instance $c (instantiate $m))
            (func $f (result f64) (canon lift (core func $c "f")))
            {exports}
        )"#
    );
    wat::parse_str(wat).unwrap()
}

fn load_bytes(bytes: &[u8]) -> Error {
    engine().load_bytes(bytes, Path::new("test.wasm"), PluginOptions::default()).err().expect("load fails")
}

#[test]
fn another_minor_version_is_refused_naming_both() {
    let err = load_bytes(&component_exporting(&["eva:plugin/info@0.3.0"]));
    assert_eq!(
        err.to_string(),
        "test.wasm was built for eva:plugin@0.3.0, but this host supports eva:plugin 0.2.x and 0.1.x"
    );
}

#[test]
fn components_of_no_role_or_several_are_refused() {
    let err = load_bytes(&component_exporting(&["acme:other/thing@1.0.0"]));
    assert!(err.to_string().starts_with("test.wasm exports no eva plugin role"), "{err}");
    let err = load_bytes(&component_exporting(&["eva:plugin/info@0.1.0", "eva:plugin/sample@0.1.0"]));
    assert!(err.to_string().contains("several eva plugin roles (info-metric, sampler)"), "{err}");
}

#[test]
fn a_role_interface_missing_functions_is_a_link_error() {
    for version in ["0.2.0", "0.1.0"] {
        let err = load_bytes(&component_exporting(&[&format!("eva:plugin/info@{version}")]));
        assert!(matches!(err, Error::Link { .. }), "{err}");
    }
}

#[test]
fn garbage_and_core_modules_are_not_components() {
    assert!(matches!(load_bytes(b"hello"), Error::NotAComponent { .. }));
    let core = wat::parse_str("(module)").unwrap();
    assert!(matches!(load_bytes(&core), Error::NotAComponent { .. }));
    let err = engine().load(Path::new("/no/such/plugin.wasm"), PluginOptions::default()).err().unwrap();
    assert!(err.to_string().starts_with("cannot read plugin file /no/such/plugin.wasm"), "{err}");
}

#[test]
fn compiled_components_are_cached_by_content_hash() {
    let dir = tempfile::tempdir().unwrap();
    let engine = PluginEngine::new(ComponentCache::new(Some(dir.path().to_owned()))).unwrap();
    let path = eva_test_support::component("eva-plugin-regret");
    let first = engine.load(&path, PluginOptions::default()).unwrap();
    let entries: Vec<_> = std::fs::read_dir(dir.path()).unwrap().flatten().map(|e| e.file_name()).collect();
    assert_eq!(entries.len(), 1);
    let entry = entries[0].to_string_lossy().into_owned();
    assert!(entry.starts_with(first.digest()) && entry.ends_with(".cwasm"), "{entry}");

    // A corrupt entry is recompiled, not trusted.
    std::fs::write(dir.path().join(&entry), b"garbage").unwrap();
    let second = engine.load(&path, PluginOptions::default()).unwrap();
    assert_eq!(second.metadata(), first.metadata());
    assert!(std::fs::metadata(dir.path().join(&entry)).unwrap().len() > 1000, "the entry was rewritten");
}
