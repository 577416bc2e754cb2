//! `eva-test-support` (not published): what eva's tests, benchmarks and examples share.
//! The crate holds the workspace's integration tests (one test binary,
//! `tests/integration/`, a module per subject), the benchmarks `plugin_calls` and
//! `reward`, and the examples in the workspace's `examples/`; host crates use it as a
//! dev-dependency (`eva-host`'s tests do).
//!
//! It builds the first-party plugins and the test fixtures into components, once per
//! process ([`component`]), loads them the way the tests do ([`harness`]), and provides
//! real models and the llama.cpp reference ([`models`]), a headless browser ([`browser`])
//! a real OCI registry on loopback ([`registry`]) and a real vLLM server ([`vllm`]). Data the tests read stays in the
//! workspace's `tests/` (`data`, `fixtures`, `reference`); [`workspace_root`] finds it.
//!
//! The components land in `TARGET/eva-plugins/NAME.wasm` (TARGET being the cargo
//! target directory the tests run from), and cargo's incremental builds keep later runs
//! fast. A missing wasm toolchain fails loudly with how to install one; nothing is
//! skipped.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use eva_plugin_build::{BuildRequest, GuestTarget};

pub mod browser;
pub mod harness;
pub mod models;
pub mod registry;
pub mod trl;
pub mod vllm;

/// The first-party plugins, by crate name.
pub const FIRST_PARTY: [&str; 7] = [
    "eva-plugin-regret",
    "eva-plugin-weighted-sampler",
    "eva-plugin-evol-instruct",
    "eva-plugin-max-min-pairing",
    "eva-plugin-rule-reward",
    "eva-plugin-constraint-check",
    "eva-plugin-constraint-evolver",
];

/// Fixtures built for `wasm32-unknown-unknown`.
pub const FIXTURES: [&str; 4] = [
    "eva-fixture-hostile-info",
    "eva-fixture-hostile-sampler",
    "eva-fixture-hostile-evolver",
    "eva-fixture-hostile-describe",
];

/// Fixtures that import WASI, built for `wasm32-wasip1`.
pub const WASI_FIXTURES: [&str; 2] = ["eva-fixture-fs-probe", "eva-fixture-impostor"];

/// The workspace root (this crate lives in its `testing/`): where `tests/fixtures`,
/// `tests/data`, `tests/reference`, `plugins/` and `examples/` are.
pub fn workspace_root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("testing/ has a parent: the workspace root")
}

/// The cargo target directory this test binary was built into (`TARGET/PROFILE/deps/x`).
pub fn target_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("the test binary has a path");
    exe.ancestors()
        .find(|p| p.file_name().is_some_and(|n| n == "deps"))
        .and_then(|deps| deps.parent()?.parent())
        .map(Path::to_path_buf)
        .unwrap_or_else(|| workspace_root().join("target"))
}

fn build(packages: &[&str], target: GuestTarget) -> Result<(), String> {
    let request = BuildRequest {
        manifest_path: workspace_root().join("Cargo.toml"),
        packages: packages.iter().map(|p| p.to_string()).collect(),
        target,
        // A directory of its own: the cargo running the tests holds its own's lock.
        target_dir: Some(target_dir().join("eva-guests")),
        out_dir: target_dir().join("eva-plugins"),
    };
    eva_plugin_build::build(&request).map(drop).map_err(|e| e.to_string())
}

/// Build every plugin and fixture (once per process) and return the component of
/// `crate_name`. Panics with the build error, so a broken toolchain fails the tests.
pub fn component(crate_name: &str) -> PathBuf {
    static BUILT: OnceLock<Result<(), String>> = OnceLock::new();
    let built = BUILT.get_or_init(|| {
        let unknown: Vec<&str> = FIRST_PARTY.iter().chain(&FIXTURES).copied().collect();
        build(&unknown, GuestTarget::Unknown)?;
        build(&WASI_FIXTURES, GuestTarget::Wasip1)
    });
    if let Err(e) = built {
        panic!("building the test plugins failed: {e}");
    }
    let path = target_dir().join("eva-plugins").join(format!("{crate_name}.wasm"));
    assert!(path.exists(), "{} was not built", path.display());
    path
}
