//! Small file-system helpers for atomic state changes.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use crate::BackupError;

/// The directory holding `path` (`.` for a bare name).
pub(crate) fn parent_dir(path: &Path) -> PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// fsyncs a directory so that renames inside it are durable.
pub(crate) fn sync_dir(dir: &Path) -> Result<(), BackupError> {
    host_util::fs::fsync_dir(dir).map_err(BackupError::io("fsync directory", dir))
}

/// A name for a temporary sibling of `path` that no other process picks: hidden, with the pid and
/// a time-derived suffix.
pub(crate) fn temp_sibling(path: &Path, tag: &str) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    parent_dir(path).join(format!(".{name}.{tag}-{}-{nanos:09}", std::process::id()))
}

/// Creates a new file exclusively (never following a symlink), mode 0600.
pub(crate) fn create_new(path: &Path) -> Result<File, BackupError> {
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32)
        .open(path)
        .map_err(BackupError::io("create", path))
}

/// Writes `bytes` to `path` atomically, mode 0600 ([`host_util::fs::write_atomic`]).
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), BackupError> {
    host_util::fs::write_atomic(path, bytes, 0o600).map_err(BackupError::io("write", path))
}
