//! Atomic file replacement.

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

/// The directory holding `path` (`.` for a bare name).
pub fn parent_dir(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// fsyncs a directory so that renames inside it are durable.
///
/// # Errors
/// The error of opening or syncing `dir`.
pub fn fsync_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::File::open(dir).and_then(|d| d.sync_all())
}

/// Writes `bytes` to `path` atomically with exactly `mode` (the umask does not apply): a
/// hidden temp file in the same directory, created with `mode` so that a secret is never
/// readable by others, not even briefly; write, fsync, rename over `path`, fsync the directory.
///
/// Readers see the old contents or the new, never a mix. The temp file has a random name and
/// is removed on every error path (a full disk leaves nothing behind).
///
/// # Errors
/// The first I/O error; the message says which step failed.
pub fn write_atomic(path: &Path, bytes: &[u8], mode: u32) -> std::io::Result<()> {
    let dir = parent_dir(path);
    let step = |what: &'static str| {
        move |e: std::io::Error| std::io::Error::new(e.kind(), format!("{what}: {e}"))
    };
    let mut temp = tempfile::Builder::new()
        .prefix(".cutover-tmp-")
        .permissions(std::fs::Permissions::from_mode(mode))
        .tempfile_in(dir)
        .map_err(step("cannot create a temporary file"))?;
    // The umask may have cleared bits; set exactly the mode asked for.
    temp.as_file()
        .set_permissions(std::fs::Permissions::from_mode(mode))
        .map_err(step("cannot set the mode of the temporary file"))?;
    temp.write_all(bytes)
        .and_then(|()| temp.as_file().sync_all())
        .map_err(step("cannot write the temporary file"))?;
    // On error, `persist` hands the temp file back; dropping it removes it.
    temp.persist(path)
        .map_err(|e| step("cannot rename the temporary file into place")(e.error))?;
    fsync_dir(dir).map_err(step("cannot fsync the directory"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode(p: &Path) -> u32 {
        std::fs::metadata(p).unwrap().permissions().mode() & 0o7777
    }

    #[test]
    fn replaces_with_exactly_the_mode_and_leaves_no_temp_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        write_atomic(&path, b"one", 0o644).unwrap();
        assert_eq!(mode(&path), 0o644);
        write_atomic(&path, b"two", 0o600).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"two");
        assert_eq!(mode(&path), 0o600);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn a_failed_rename_removes_the_temp_file() {
        let dir = tempfile::tempdir().unwrap();
        // A non-empty directory cannot be replaced by a file.
        let path = dir.path().join("taken");
        std::fs::create_dir(&path).unwrap();
        std::fs::write(path.join("inside"), b"x").unwrap();
        let err = write_atomic(&path, b"new", 0o600).unwrap_err();
        assert!(err.to_string().contains("rename"), "{err}");
        let left: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(left, vec![std::ffi::OsString::from("taken")]);
    }

    #[test]
    fn a_missing_directory_is_an_error() {
        let err = write_atomic(Path::new("/nonexistent-dir/x/f"), b"", 0o600).unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::NotFound, "{err}");
    }

    #[test]
    fn a_bare_name_lives_in_the_current_directory() {
        assert_eq!(parent_dir(Path::new("f")), Path::new("."));
        assert_eq!(parent_dir(Path::new("/a/f")), Path::new("/a"));
    }
}
