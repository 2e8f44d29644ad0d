//! The one error type of this crate.

use std::path::PathBuf;

/// What went wrong in a backup operation.
///
/// [`BackupError::is_integrity`] tells integrity failures (a damaged archive, a refused entry),
/// which a binary reports as "failed", apart from operational ones (a missing directory, a full
/// disk).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BackupError {
    /// An I/O operation on a named path failed.
    #[error("failed to {action} {}: {error}", crate::escape_path(path))]
    Io {
        /// What was being done ("read", "create", "rename", ...).
        action: &'static str,
        /// The path concerned.
        path: PathBuf,
        /// The underlying error.
        error: std::io::Error,
    },
    /// A source path given to `create` does not exist or cannot be archived.
    #[error("invalid source {path}: {reason}")]
    Source {
        /// The source path.
        path: PathBuf,
        /// Why it cannot be used.
        reason: String,
    },
    /// A file changed size while it was being archived.
    #[error("file {path} changed while it was being backed up (expected {expected} bytes)")]
    Changed {
        /// The file.
        path: PathBuf,
        /// The size recorded before reading.
        expected: u64,
    },
    /// An include or exclude glob does not parse.
    #[error("invalid glob `{glob}`: {error}")]
    Glob {
        /// The glob as written.
        glob: String,
        /// The parser's error.
        error: globset::Error,
    },
    /// A backup id contains characters that cannot be used in a file name.
    #[error("invalid backup id `{id}`: {reason}")]
    InvalidId {
        /// The id.
        id: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A backup with this id already exists.
    #[error("backup `{id}` already exists in {dir}")]
    AlreadyExists {
        /// The id.
        id: String,
        /// The destination directory.
        dir: PathBuf,
    },
    /// The archive is damaged: truncated, bit-flipped, or its content does not match its
    /// manifest or sidecar.
    #[error("archive {} is corrupt{}: {}", crate::escape_path(archive), entry_suffix(.entry), crate::escape_name(reason))]
    Corrupt {
        /// The archive.
        archive: PathBuf,
        /// The first entry found bad, when one can be named.
        entry: Option<String>,
        /// What was found.
        reason: String,
    },
    /// An entry is unsafe to restore (absolute path, `..`, link outside, device node, ...).
    #[error(
        "archive {}: refused entry `{}`: {}",
        crate::escape_path(archive),
        crate::escape_name(entry),
        crate::escape_name(reason)
    )]
    Refused {
        /// The archive.
        archive: PathBuf,
        /// The entry's path as written in the archive.
        entry: String,
        /// Why it was refused.
        reason: String,
    },
    /// A sidecar file (`<id>.json`) is missing or unreadable as a sidecar.
    #[error("sidecar {path} is invalid: {reason}")]
    Sidecar {
        /// The sidecar's path.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The restore target cannot be used.
    #[error("invalid restore target {path}: {reason}")]
    Target {
        /// The target.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The file system a restore writes to has less free space than the archive's content
    /// needs; found from the manifest before anything is extracted.
    #[error(
        "not enough free space to restore into {}: the archive's manifest declares {needed} bytes \
         (in file-system blocks), only {available} bytes are free there; nothing was extracted \
         (free some space, or restore onto another file system)",
        crate::escape_path(path)
    )]
    NoSpace {
        /// The directory the content would be written into (the staging directory's parent).
        path: PathBuf,
        /// The bytes the content needs, each file rounded up to whole blocks.
        needed: u64,
        /// The bytes free to an unprivileged writer there (`statvfs` `f_bavail × f_frsize`).
        available: u64,
    },
    /// A compression level outside the range of its compression.
    #[error(
        "compression level {level} is out of range for {compression}: use {}-{} (default {})",
        compression.levels().start(),
        compression.levels().end(),
        compression.default_level()
    )]
    InvalidLevel {
        /// The compression the level was given for.
        compression: crate::Compression,
        /// The level as given.
        level: u32,
    },
    /// A retention policy that would keep nothing.
    #[error(
        "retention policy keeps nothing: set at least one of keep_last, keep_daily, keep_weekly, keep_monthly"
    )]
    EmptyPolicy,
    /// A worker thread panicked (a bug, not an input problem).
    #[error("internal error: {0}")]
    Internal(String),
}

fn entry_suffix(entry: &Option<String>) -> String {
    match entry {
        Some(e) => format!(" at entry `{}`", crate::escape_name(e)),
        None => String::new(),
    }
}

impl BackupError {
    /// Whether this error is about the archive's integrity or safety (corruption, refused
    /// entry), as opposed to an operational failure.
    pub fn is_integrity(&self) -> bool {
        matches!(
            self,
            BackupError::Corrupt { .. } | BackupError::Refused { .. }
        )
    }

    pub(crate) fn io(
        action: &'static str,
        path: impl Into<PathBuf>,
    ) -> impl FnOnce(std::io::Error) -> Self {
        let path = path.into();
        move |source| BackupError::Io {
            action,
            path,
            error: source,
        }
    }
}
