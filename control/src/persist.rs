//! Writing an applied config back to its file, atomically, so a change made through the API
//! survives a restart and is not undone by the file watcher.

use std::io::Write;
use std::path::{Path, PathBuf};

/// Replace `path`'s content with `text`: write a temporary file in the same directory, fsync
/// it, rename it over the target, fsync the directory. A symlinked config file is written
/// through to its target, so the link stays.
pub fn write_atomically(path: &Path, text: &str) -> Result<(), String> {
    let target = resolve(path);
    let dir = target
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or_else(|| Path::new("."));
    let name = target
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "config".to_string());
    let tmp = dir.join(format!(".{name}.switchyard-{}.tmp", std::process::id()));
    let result = (|| -> std::io::Result<()> {
        let mut f = std::fs::File::create(&tmp)?;
        if let Ok(meta) = std::fs::metadata(&target) {
            // Keep the file's mode; a failure here only loses the mode, not the content.
            let _ = std::fs::set_permissions(&tmp, meta.permissions());
        }
        f.write_all(text.as_bytes())?;
        f.sync_all()?;
        std::fs::rename(&tmp, &target)?;
        if let Ok(d) = std::fs::File::open(dir) {
            let _ = d.sync_all();
        }
        Ok(())
    })();
    result.map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        format!("cannot write config file {}: {e}", target.display())
    })
}

/// Follow symlinks to the real file; if that fails, the path itself.
fn resolve(path: &Path) -> PathBuf {
    std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_content_and_keeps_symlink() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let real = dir.path().join("real.toml");
        std::fs::write(&real, "old")?;
        let link = dir.path().join("link.toml");
        std::os::unix::fs::symlink(&real, &link)?;
        write_atomically(&link, "new")?;
        assert_eq!(std::fs::read_to_string(&real)?, "new");
        assert!(std::fs::symlink_metadata(&link)?.file_type().is_symlink());
        Ok(())
    }

    #[test]
    fn unwritable_directory_is_a_clear_error() {
        let err = write_atomically(Path::new("/proc/switchyard-nope/x.toml"), "x")
            .err()
            .unwrap_or_default();
        assert!(err.contains("cannot write config file"), "{err}");
    }
}
