//! Builds Rust plugin crates into eva plugin components, with one call.
//!
//! Two toolchains are supported, tried in this order:
//! 1. the active rustup toolchain, when it has the wasm target installed
//!    (`rustup target add wasm32-unknown-unknown`): plain `cargo build --target ...`;
//! 2. Debian's `rustc-web`/`cargo-web` with `rust-web-src` and `lld` (for machines whose
//!    rustup cannot download targets): `/usr/bin/cargo` with `-Zbuild-std` and LLVM's
//!    `wasm-ld`. `scripts/install-wasm-toolchain` installs it.
//!
//! The core module cargo produces is then turned into a component with the
//! `wit-component` crate, in process; guests for `wasm32-wasip1` get the WASI preview 1
//! reactor adapter.
//!
//! For other languages, [`contract`] ships the WIT package and generates C bindings, and
//! [`componentize_file`] turns any core module carrying its world's type (as
//! wit-bindgen's `*_component_type.o` leaves it) into a component.

use std::path::{Path, PathBuf};
use std::process::Command;

pub mod contract;
mod toolchain;

pub use toolchain::{Toolchain, ToolchainKind};

/// The WebAssembly target a guest is compiled for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GuestTarget {
    /// No WASI at all: the plugin can only use what its eva world imports.
    Unknown,
    /// WASI preview 1 through the component adapter, for crates that need `std::fs` (a
    /// directory granted with `--plugin-allow-read`) or other WASI APIs.
    Wasip1,
}

impl GuestTarget {
    pub fn triple(self) -> &'static str {
        match self {
            GuestTarget::Unknown => "wasm32-unknown-unknown",
            GuestTarget::Wasip1 => "wasm32-wasip1",
        }
    }
}

/// Everything that can go wrong building a plugin.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error(
        "no toolchain can build {target} guests: install the target with `rustup target add {target}`, \
         or Debian's toolchain with `scripts/install-wasm-toolchain` ({detail})"
    )]
    NoToolchain { target: &'static str, detail: String },
    #[error("cannot run {program}")]
    Spawn { program: String, source: std::io::Error },
    #[error("cargo failed building {what} for {target} (exit status {status}); its errors are above")]
    Cargo { what: String, target: &'static str, status: std::process::ExitStatus },
    #[error("cargo built no WebAssembly module for {what}; does the crate have a library target?")]
    NoArtifact { what: String },
    #[error("cannot make a component of {module}: {reason}")]
    Componentize { module: PathBuf, reason: String },
    #[error("cannot write {path}")]
    Write { path: PathBuf, source: std::io::Error },
    #[error("cannot generate bindings for the world `{world}`: {reason}")]
    Bindings { world: String, reason: String },
}

/// What to build.
#[derive(Debug, Clone)]
pub struct BuildRequest {
    /// The `Cargo.toml` of the plugin crate or of the workspace holding it.
    pub manifest_path: PathBuf,
    /// Packages to build (`-p`); empty builds the manifest's own package.
    pub packages: Vec<String>,
    pub target: GuestTarget,
    /// Cargo's target directory; `None` uses cargo's default for the manifest.
    pub target_dir: Option<PathBuf>,
    /// Where the components go, one `NAME.wasm` per crate (NAME = crate name with `-`).
    pub out_dir: PathBuf,
}

/// A built component.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Built {
    /// The crate's name.
    pub name: String,
    pub component: PathBuf,
}

/// Compile the request's crates and turn each module into a component.
pub fn build(request: &BuildRequest) -> Result<Vec<Built>, BuildError> {
    let toolchain = Toolchain::detect(request.target)?;
    let what = if request.packages.is_empty() {
        request.manifest_path.display().to_string()
    } else {
        request.packages.join(", ")
    };
    let _span = tracing::info_span!("build_plugins", what = %what, toolchain = ?toolchain.kind).entered();
    // `cargo rustc` makes the cdylib without the crate declaring one, which would not
    // link natively (export names hold `:` and `@`); it takes one package at a time.
    let packages: Vec<Option<&str>> = if request.packages.is_empty() {
        vec![None]
    } else {
        request.packages.iter().map(|p| Some(p.as_str())).collect()
    };
    std::fs::create_dir_all(&request.out_dir)
        .map_err(|source| BuildError::Write { path: request.out_dir.clone(), source })?;
    let mut built = Vec::new();
    for package in packages {
        let what = package.map_or_else(|| what.clone(), str::to_owned);
        let mut cmd = toolchain.cargo_rustc_cdylib(request.target);
        cmd.arg("--manifest-path").arg(&request.manifest_path);
        if let Some(p) = package {
            cmd.args(["-p", p]);
        }
        if let Some(dir) = &request.target_dir {
            cmd.arg("--target-dir").arg(dir);
        }
        cmd.arg("--message-format=json-render-diagnostics");
        let output = run(cmd)?;
        if !output.status.success() {
            return Err(BuildError::Cargo { what, target: request.target.triple(), status: output.status });
        }
        let Some((name, module)) = wasm_artifacts(&output.stdout).pop() else {
            return Err(BuildError::NoArtifact { what });
        };
        let component = request.out_dir.join(format!("{}.wasm", name.replace('_', "-")));
        componentize_file(&module, &component, request.target)?;
        built.push(Built { name, component });
    }
    Ok(built)
}

fn run(mut cmd: Command) -> Result<std::process::Output, BuildError> {
    let program = cmd.get_program().to_string_lossy().into_owned();
    // Diagnostics go to the terminal; stdout carries cargo's JSON messages.
    cmd.stderr(std::process::Stdio::inherit());
    cmd.output().map_err(|source| BuildError::Spawn { program, source })
}

/// `(crate name, path)` of every `.wasm` file in cargo's JSON messages.
fn wasm_artifacts(stdout: &[u8]) -> Vec<(String, PathBuf)> {
    let mut found = Vec::new();
    for line in stdout.split(|b| *b == b'\n') {
        let Ok(msg) = serde_json::from_slice::<serde_json::Value>(line) else { continue };
        if msg["reason"] != "compiler-artifact" {
            continue;
        }
        let name = msg["target"]["name"].as_str().unwrap_or_default().to_owned();
        for file in msg["filenames"].as_array().into_iter().flatten() {
            if let Some(path) = file.as_str().filter(|f| f.ends_with(".wasm")) {
                found.push((name.clone(), PathBuf::from(path)));
            }
        }
    }
    found
}

/// Turn a core module into a component (in memory).
pub fn componentize(module: &[u8], target: GuestTarget) -> Result<Vec<u8>, String> {
    let mut encoder = wit_component::ComponentEncoder::default();
    encoder.module(module).map_err(|e| format!("{e:#}"))?.validate(true);
    if target == GuestTarget::Wasip1 {
        encoder
            .adapter(
                "wasi_snapshot_preview1",
                wasi_preview1_component_adapter_provider::WASI_SNAPSHOT_PREVIEW1_REACTOR_ADAPTER,
            )
            .map_err(|e| format!("{e:#}"))?;
    }
    encoder.encode().map_err(|e| format!("{e:#}"))
}

/// Componentize `module` into `out`, written atomically.
pub fn componentize_file(module: &Path, out: &Path, target: GuestTarget) -> Result<(), BuildError> {
    let err = |reason: String| BuildError::Componentize { module: module.to_owned(), reason };
    let bytes = std::fs::read(module).map_err(|e| err(e.to_string()))?;
    let component = componentize(&bytes, target).map_err(err)?;
    write_atomic(out, &component)
}

/// The target a core module was built for: WASI preview 1 when it imports
/// `wasi_snapshot_preview1` (it then needs the reactor adapter), else none.
pub fn guest_target_of(module: &[u8]) -> Result<GuestTarget, String> {
    for payload in wasmparser::Parser::new(0).parse_all(module) {
        if let wasmparser::Payload::ImportSection(imports) = payload.map_err(|e| e.to_string())? {
            for import in imports.into_imports() {
                if import.map_err(|e| e.to_string())?.module == "wasi_snapshot_preview1" {
                    return Ok(GuestTarget::Wasip1);
                }
            }
        }
    }
    Ok(GuestTarget::Unknown)
}

/// Write `bytes` to `path` through a renamed temporary sibling. The plugin gets an
/// ordinary file's mode (0666 less the umask, given to `open(O_CREAT)`), not tempfile's
/// private 0600: a built plugin is meant to be shared.
fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), BuildError> {
    use std::io::Write;
    let wrap = |source| BuildError::Write { path: path.to_owned(), source };
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let mut builder = tempfile::Builder::new();
    #[cfg(unix)]
    builder.permissions(std::os::unix::fs::PermissionsExt::from_mode(0o666));
    let mut tmp = builder.tempfile_in(dir).map_err(wrap)?;
    tmp.write_all(bytes).map_err(wrap)?;
    tmp.persist(path).map_err(|e| wrap(e.error))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_wasm_artifacts_in_cargo_messages() {
        let out = br#"{"reason":"compiler-artifact","target":{"name":"eva_plugin_regret"},"filenames":["/t/eva_plugin_regret.wasm","/t/libeva_plugin_regret.rlib"]}
{"reason":"compiler-artifact","target":{"name":"serde"},"filenames":["/t/libserde.rlib"]}
not json
{"reason":"build-finished","success":true}"#;
        assert_eq!(
            wasm_artifacts(out),
            vec![("eva_plugin_regret".to_owned(), PathBuf::from("/t/eva_plugin_regret.wasm"))]
        );
    }

    #[test]
    fn a_core_module_without_eva_exports_still_componentizes_and_garbage_does_not() {
        // The smallest valid core module: magic and version.
        let empty = b"\0asm\x01\0\0\0";
        assert!(componentize(empty, GuestTarget::Unknown).is_ok());
        assert!(componentize(b"not wasm", GuestTarget::Unknown).is_err());
    }

    /// A built plugin is an ordinary file (0666 less the umask), not tempfile's 0600.
    #[cfg(unix)]
    #[test]
    fn built_plugins_honour_the_umask() {
        use std::os::unix::fs::PermissionsExt;
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o7777;
        // What the umask gives an ordinary new file here.
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("plain"), "").unwrap();
        let ordinary = mode(&dir.path().join("plain"));
        let out = dir.path().join("plugin.wasm");
        write_atomic(&out, b"\0asm").unwrap();
        assert_eq!(mode(&out), ordinary);
        write_atomic(&out, b"\0asm\x01").unwrap();
        assert_eq!(mode(&out), ordinary, "a replaced plugin too");
    }
}
