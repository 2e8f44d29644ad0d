//! Atomic file replacement: temp file in the same directory, fsync, rename, fsync the directory.

use std::path::Path;

use crate::EdgeError;

/// Writes `contents` to `path` atomically with permission `mode`.
pub(crate) fn write_atomic(path: &Path, contents: &[u8], mode: u32) -> Result<(), EdgeError> {
    host_util::fs::write_atomic(path, contents, mode).map_err(|e| EdgeError::io("write", path, e))
}

/// Reads a file to a string, naming the path on error.
pub(crate) fn read(path: &Path) -> Result<String, EdgeError> {
    std::fs::read_to_string(path).map_err(|e| EdgeError::io("read", path, e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn replaces_with_mode() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        write_atomic(&path, b"one", 0o644).unwrap();
        write_atomic(&path, b"two", 0o600).unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "two");
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert_eq!(
            std::fs::read_dir(dir.path()).unwrap().count(),
            1,
            "no temp file left"
        );
    }

    #[test]
    fn missing_directory_names_the_path() {
        let err = write_atomic(Path::new("/nonexistent-dir/x/f"), b"", 0o600).unwrap_err();
        assert!(err.to_string().contains("/nonexistent-dir/x"), "{err}");
    }
}
