//! Writing files and replacing directories so that a kill at any moment leaves either
//! the old or the new version, never a torn one.

use std::path::{Path, PathBuf};

/// Where the old directory waits during [`swap_dir`]: `DIR.old`. A process killed
/// between the two renames leaves the previous version there.
pub fn backup_of(dir: &Path) -> PathBuf {
    let mut name = dir.as_os_str().to_owned();
    name.push(".old");
    PathBuf::from(name)
}

/// Move the finished directory `new` to `dir`, replacing what was there: the old one is
/// renamed to [`backup_of`]`(dir)` first and removed last.
pub fn swap_dir(new: &Path, dir: &Path) -> std::io::Result<()> {
    let old = backup_of(dir);
    if dir.exists() {
        if old.exists() {
            std::fs::remove_dir_all(&old)?;
        }
        std::fs::rename(dir, &old)?;
    }
    std::fs::rename(new, dir)?;
    if old.exists() {
        std::fs::remove_dir_all(&old)?;
    }
    Ok(())
}

/// Write `bytes` to `path` through a temporary sibling that is synced and renamed over it.
pub fn write_file(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let parent = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let mut tmp = tempfile::Builder::new().prefix(".eva-write-").tempfile_in(parent)?;
    tmp.write_all(bytes)?;
    tmp.as_file().sync_all()?;
    tmp.persist(path).map_err(|e| e.error)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_and_cleans_up() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("model.v1");
        std::fs::create_dir(&dir).unwrap();
        std::fs::write(dir.join("a"), "old").unwrap();
        let new = root.path().join(".tmp");
        std::fs::create_dir(&new).unwrap();
        std::fs::write(new.join("a"), "new").unwrap();
        swap_dir(&new, &dir).unwrap();
        assert_eq!(std::fs::read_to_string(dir.join("a")).unwrap(), "new");
        assert_eq!(backup_of(&dir), root.path().join("model.v1.old"));
        assert!(!backup_of(&dir).exists() && !new.exists());
    }
}
