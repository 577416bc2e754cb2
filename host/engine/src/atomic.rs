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

/// A builder whose files and directories get the modes that `File::create` and
/// `create_dir` give (0666 and 0777, less the umask) instead of tempfile's private 0600
/// files: what is renamed into place must read like any other file the user writes. The
/// mode goes to `open(O_CREAT)` / `mkdir`, where the kernel applies the umask, so no
/// window exists where the file has another mode and no `umask(2)` call is needed.
fn builder<'a>(prefix: &'a str, _mode: u32) -> tempfile::Builder<'a, 'static> {
    let mut b = tempfile::Builder::new();
    b.prefix(prefix);
    #[cfg(unix)]
    b.permissions(std::os::unix::fs::PermissionsExt::from_mode(_mode));
    b
}

/// A temporary file in `dir` that, persisted, has an ordinary file's mode (0666 less the
/// umask). Not for secrets: those want 0600 from the start.
pub fn temp_file_in(dir: &Path, prefix: &str) -> std::io::Result<tempfile::NamedTempFile> {
    builder(prefix, 0o666).tempfile_in(dir)
}

/// A temporary directory in `dir` that, kept, has an ordinary directory's mode (0777
/// less the umask).
pub fn temp_dir_in(dir: &Path, prefix: &str) -> std::io::Result<tempfile::TempDir> {
    builder(prefix, 0o777).tempdir_in(dir)
}

/// Give `path`, a file that a library wrote privately (safetensors writes through its own
/// tempfile, so 0600), the mode an ordinary new file in its directory gets: 0666 less the
/// umask, read off a probe file that the kernel creates there (no `umask(2)` call, which
/// cannot read without writing). Call it before the file becomes visible where it belongs.
pub fn make_ordinary(path: &Path) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
        let probe = temp_file_in(dir, ".eva-mode-")?;
        std::fs::set_permissions(path, probe.as_file().metadata()?.permissions())?;
    }
    #[cfg(not(unix))]
    let _ = path;
    Ok(())
}

/// Write `bytes` to `path` through a temporary sibling that is synced and renamed over it.
/// The file gets an ordinary file's mode (0666 less the umask), as `std::fs::write` would.
pub fn write_file(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let parent = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let mut tmp = temp_file_in(parent, ".eva-write-")?;
    tmp.write_all(bytes)?;
    tmp.as_file().sync_all()?;
    tmp.persist(path).map_err(|e| e.error)?;
    Ok(())
}

/// The process's umask, read without changing it (`umask(2)` can only read by
/// writing, which would race with the other test threads).
#[cfg(all(test, unix))]
pub(crate) fn current_umask() -> u32 {
    if let Some(mask) = std::fs::read_to_string("/proc/self/status").ok().and_then(|s| {
        let line = s.lines().find(|l| l.starts_with("Umask:"))?.to_owned();
        u32::from_str_radix(line["Umask:".len()..].trim(), 8).ok()
    }) {
        return mask;
    }
    // Without procfs: what an ordinary `open(O_CREAT, 0666)` gets tells it.
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let probe = dir.path().join("probe");
    std::fs::write(&probe, "").unwrap();
    0o666 & !std::fs::metadata(&probe).unwrap().permissions().mode() & 0o777
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

    #[cfg(unix)]
    fn mode(path: &Path) -> u32 {
        use std::os::unix::fs::PermissionsExt;
        std::fs::metadata(path).unwrap().permissions().mode() & 0o7777
    }

    #[cfg(unix)]
    #[test]
    fn written_files_and_temp_dirs_honour_the_umask() {
        let umask = current_umask();
        let root = tempfile::tempdir().unwrap();
        let path = root.path().join("report.html");
        write_file(&path, b"<html>").unwrap();
        assert_eq!(mode(&path), 0o666 & !umask, "umask {umask:03o}");
        write_file(&path, b"<html> again").unwrap();
        assert_eq!(mode(&path), 0o666 & !umask, "a replaced file too");
        let dir = temp_dir_in(root.path(), ".eva-save-").unwrap().keep();
        assert_eq!(mode(&dir), 0o777 & !umask);
        let file = temp_file_in(root.path(), ".x-").unwrap();
        assert_eq!(mode(file.path()), 0o666 & !umask);
        // A file some library made private gets the ordinary mode back, and no probe stays.
        let private = tempfile::Builder::new().tempfile_in(root.path()).unwrap().keep().unwrap().1;
        assert_eq!(mode(&private), 0o600);
        make_ordinary(&private).unwrap();
        assert_eq!(mode(&private), 0o666 & !umask);
        let left: Vec<_> = std::fs::read_dir(root.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert!(!left.iter().any(|n| n.to_string_lossy().starts_with(".eva-mode-")), "{left:?}");
    }

    /// The umask belongs to the process: the check under 022 runs in a child, this same
    /// test binary started through `sh -c 'umask 022; exec ...'`.
    #[cfg(unix)]
    #[test]
    fn under_umask_022_files_are_0644_and_dirs_0755() {
        const CHILD: &str = "EVA_ATOMIC_UMASK_CHILD_DIR";
        const NAME: &str = "atomic::tests::under_umask_022_files_are_0644_and_dirs_0755";
        if let Some(dir) = std::env::var_os(CHILD) {
            let dir = std::path::PathBuf::from(dir);
            assert_eq!(current_umask(), 0o022);
            let file = dir.join("eval.json");
            write_file(&file, b"{}").unwrap();
            let sub = temp_dir_in(&dir, ".eva-save-").unwrap().keep();
            let report = format!("{:o} {:o}", mode(&file), mode(&sub));
            std::fs::write(dir.join("done"), report).unwrap();
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let status = std::process::Command::new("sh")
            .args(["-c", "umask 022 && exec \"$0\" \"$@\""])
            .arg(std::env::current_exe().unwrap())
            .args(["--exact", NAME, "--test-threads=1", "--quiet"])
            .env(CHILD, dir.path())
            .stdout(std::process::Stdio::null())
            .status()
            .unwrap();
        assert!(status.success(), "the child failed: {status}");
        // The child ran the check (a filter that matched nothing would also succeed).
        let report = std::fs::read_to_string(dir.path().join("done")).expect("the child ran the check");
        assert_eq!(report, "644 755");
    }
}
