//! Finding a toolchain that can build WebAssembly guests on this machine.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::{BuildError, GuestTarget};

/// Which recipe builds the guests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ToolchainKind {
    /// The active rustup (or other stock) toolchain, which has the wasm target installed.
    Rustup,
    /// Debian's `rustc-web` with `-Zbuild-std` and LLVM's `wasm-ld`.
    Debian,
}

/// A toolchain able to build guests for one target.
#[derive(Debug, Clone)]
pub struct Toolchain {
    pub kind: ToolchainKind,
    cargo: PathBuf,
    rustc: PathBuf,
    linker: Option<PathBuf>,
}

const DEBIAN_RUSTC: &str = "/usr/bin/rustc";
const DEBIAN_CARGO: &str = "/usr/bin/cargo";
/// Where Debian's `wasi-libc` puts the wasm32-wasi C library.
const DEBIAN_WASI_LIBC: &str = "/usr/lib/wasm32-wasi";

fn sysroot(rustc: &Path) -> Option<PathBuf> {
    let out = Command::new(rustc).args(["--print", "sysroot"]).output().ok()?;
    out.status.success().then(|| PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()))
}

/// The newest `wasm-ld` of Debian's versioned LLVM packages, else one on `PATH`.
fn find_wasm_ld() -> Option<PathBuf> {
    let mut versioned: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            let version = name.strip_prefix("llvm-")?.parse().ok()?;
            let ld = e.path().join("bin/wasm-ld");
            ld.exists().then_some((version, ld))
        })
        .collect();
    versioned.sort();
    versioned.pop().map(|(_, ld)| ld).or_else(|| {
        std::env::var_os("PATH")
            .and_then(|paths| std::env::split_paths(&paths).map(|p| p.join("wasm-ld")).find(|p| p.exists()))
    })
}

impl Toolchain {
    /// The first toolchain that can build `target`; `EVA_WASM_TOOLCHAIN=rustup|debian`
    /// forces one.
    pub fn detect(target: GuestTarget) -> Result<Toolchain, BuildError> {
        let forced = std::env::var("EVA_WASM_TOOLCHAIN").ok();
        let mut tried = Vec::new();
        if forced.as_deref() != Some("debian") {
            match Self::rustup(target) {
                Ok(t) => return Ok(t),
                Err(why) => tried.push(why),
            }
        }
        if forced.as_deref() != Some("rustup") {
            match Self::debian(target) {
                Ok(t) => return Ok(t),
                Err(why) => tried.push(why),
            }
        }
        Err(BuildError::NoToolchain { target: target.triple(), detail: tried.join("; ") })
    }

    fn rustup(target: GuestTarget) -> Result<Toolchain, String> {
        // Under `cargo`, CARGO names the cargo that is running; it is the stock one.
        let cargo = std::env::var_os("CARGO").map_or_else(|| PathBuf::from("cargo"), PathBuf::from);
        let rustc = PathBuf::from("rustc");
        let root = sysroot(&rustc).ok_or("no `rustc` on PATH")?;
        let lib = root.join("lib/rustlib").join(target.triple());
        if !lib.exists() {
            return Err(format!("the toolchain at {} has no {} standard library", root.display(), target.triple()));
        }
        Ok(Toolchain { kind: ToolchainKind::Rustup, cargo, rustc, linker: None })
    }

    fn debian(target: GuestTarget) -> Result<Toolchain, String> {
        let (rustc, cargo) = (PathBuf::from(DEBIAN_RUSTC), PathBuf::from(DEBIAN_CARGO));
        if !rustc.exists() || !cargo.exists() {
            return Err("Debian's rustc-web and cargo-web are not installed".into());
        }
        let root = sysroot(&rustc).ok_or("/usr/bin/rustc does not run")?;
        if !root.join("lib/rustlib/src/rust/library").exists() {
            return Err("Debian's rust-web-src (the standard library's source) is not installed".into());
        }
        let linker = find_wasm_ld().ok_or("no wasm-ld (Debian's lld-19) is installed")?;
        if target == GuestTarget::Wasip1 && !Path::new(DEBIAN_WASI_LIBC).exists() {
            return Err("Debian's wasi-libc is not installed".into());
        }
        Ok(Toolchain { kind: ToolchainKind::Debian, cargo, rustc, linker: Some(linker) })
    }

    /// `cargo rustc --lib --crate-type cdylib --release --target ...` with this
    /// toolchain's environment.
    pub(crate) fn cargo_rustc_cdylib(&self, target: GuestTarget) -> Command {
        let triple = target.triple();
        let mut cmd = Command::new(&self.cargo);
        cmd.args(["rustc", "--lib", "--crate-type", "cdylib", "--release", "--target", triple]);
        // The caller's flags are for the host build, not for the guests.
        for var in ["RUSTFLAGS", "CARGO_ENCODED_RUSTFLAGS", "CARGO_BUILD_RUSTFLAGS", "CARGO_BUILD_TARGET", "RUSTC"] {
            cmd.env_remove(var);
        }
        cmd.env("RUSTC", &self.rustc)
            .env("CARGO_PROFILE_RELEASE_PANIC", "abort")
            .env("CARGO_PROFILE_RELEASE_DEBUG", "false")
            .env("CARGO_PROFILE_RELEASE_STRIP", "debuginfo");
        if self.kind == ToolchainKind::Debian {
            // Debian ships no prebuilt wasm standard library: build it from rust-web-src.
            cmd.env("RUSTC_BOOTSTRAP", "1").arg("-Zbuild-std=std,panic_abort");
            let var = format!("CARGO_TARGET_{}_LINKER", triple.replace('-', "_").to_uppercase());
            cmd.env(var, self.linker.as_ref().expect("Debian toolchains have a linker"));
            if target == GuestTarget::Wasip1 {
                let flags = format!("-Clink-self-contained=no\x1f-Lnative={DEBIAN_WASI_LIBC}");
                cmd.env("CARGO_ENCODED_RUSTFLAGS", flags);
            }
        }
        cmd
    }
}
