//! The on-disk formats: the manifest stored as the first entry of every archive, and the sidecar
//! `<id>.json` written beside it.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::BackupError;

/// The name of the manifest entry, always the first entry of an archive.
pub const MANIFEST_ENTRY: &str = ".cutover-manifest.json";
/// The format version written into metadata.
pub const FORMAT_VERSION: u32 = 1;
/// The file extension of a gzip archive, the default compression (a zstd archive's is
/// `tar.zst`: [`crate::Compression::extension`]).
pub const ARCHIVE_EXT: &str = "tar.gz";
/// The largest manifest entry a reader accepts (a defence against hostile archives).
pub(crate) const MAX_MANIFEST_BYTES: u64 = 512 * 1024 * 1024;

/// Who made a backup, when and of what: stored in the archive's manifest and in the sidecar.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Metadata {
    /// The format version ([`FORMAT_VERSION`]).
    pub format: u32,
    /// The backup id (also the file stem).
    pub id: String,
    /// When the backup was created (UTC); `list` and `prune` order by this, never by mtime.
    pub created: jiff::Timestamp,
    /// The host name of the machine that made it.
    pub host: String,
    /// The service the backup belongs to, when known.
    pub service: Option<String>,
    /// The release that was live when the backup was made, when known.
    pub release: Option<String>,
    /// The source commit of that release, when known.
    pub commit: Option<String>,
    /// The version of cutover that wrote the archive.
    pub cutover_version: String,
    /// The source paths as given to `create`.
    pub sources: Vec<String>,
}

/// The kind of an archive entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EntryKind {
    /// A regular file.
    File,
    /// A directory.
    Dir,
    /// A symbolic link.
    Symlink,
    /// A hard link to an earlier entry.
    Hardlink,
}

/// One entry of the archive as recorded in its manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EntryRecord {
    /// The path inside the archive (`/`-separated, relative, no trailing slash).
    pub path: String,
    /// The entry's kind.
    pub kind: EntryKind,
    /// Content size in bytes (0 for everything but files).
    pub size: u64,
    /// Permission bits (`0o7777` at most; never setuid or setgid).
    pub mode: u32,
    /// Modification time, seconds since the Unix epoch.
    pub mtime: u64,
    /// Lower-case hex SHA-256 of the content (files only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    /// The link target (symlinks and hardlinks only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub link: Option<String>,
}

/// The manifest stored as the first entry of every archive.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ArchiveManifest {
    /// Who, when and what.
    pub metadata: Metadata,
    /// Every entry, in archive order.
    pub entries: Vec<EntryRecord>,
}

/// The outcome of the last verification, recorded in the sidecar.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VerifyRecord {
    /// When the verification ran.
    pub at: jiff::Timestamp,
    /// Whether it passed.
    pub ok: bool,
    /// What failed, when it failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub problem: Option<String>,
}

/// The sidecar `<id>.json` beside each archive. Its presence is what makes a backup complete:
/// it is renamed into place last.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Sidecar {
    /// The same metadata as inside the archive.
    pub metadata: Metadata,
    /// The archive's file name, relative to the sidecar's directory.
    pub archive: String,
    /// Lower-case hex SHA-256 of the whole archive file.
    pub archive_sha256: String,
    /// The archive's size in bytes.
    pub archive_bytes: u64,
    /// How many entries the archive holds (the manifest entry not counted).
    pub entry_count: u64,
    /// The total size of the archived file contents.
    pub content_bytes: u64,
    /// The last verification, when one was recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_verify: Option<VerifyRecord>,
}

impl Sidecar {
    /// Reads and parses a sidecar.
    pub fn read(path: &Path) -> Result<Self, BackupError> {
        let text = std::fs::read(path).map_err(BackupError::io("read sidecar", path))?;
        serde_json::from_slice(&text).map_err(|e| BackupError::Sidecar {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })
    }

    /// Writes the sidecar atomically (temp file, fsync, rename, directory fsync).
    pub fn write_atomic(&self, path: &Path) -> Result<(), BackupError> {
        let json = serde_json::to_vec_pretty(self)
            .map_err(|e| BackupError::Internal(format!("sidecar serialisation: {e}")))?;
        crate::fsutil::write_atomic(path, &json)
    }
}

/// A name from an archive or a directory as shown to a person: control characters (a newline,
/// a carriage return, an escape sequence) are escaped the way Rust's `escape_debug` does, so
/// that a hostile name cannot forge a line of a table or a log. Other characters, non-ASCII
/// letters included, are kept as they are.
///
/// ```
/// assert_eq!(backup_archive::escape_name("a\nOK b"), "a\\nOK b");
/// assert_eq!(backup_archive::escape_name("café"), "café");
/// ```
pub fn escape_name(name: &str) -> std::borrow::Cow<'_, str> {
    if !name.chars().any(char::is_control) {
        return std::borrow::Cow::Borrowed(name);
    }
    let mut out = String::with_capacity(name.len() + 8);
    for c in name.chars() {
        if c.is_control() {
            out.extend(c.escape_debug());
        } else {
            out.push(c);
        }
    }
    std::borrow::Cow::Owned(out)
}

/// [`escape_name`] for a path.
pub fn escape_path(path: &Path) -> String {
    escape_name(&path.to_string_lossy()).into_owned()
}

/// The sidecar path of an archive: `<dir>/<id>.json` for `<dir>/<id>.tar.gz` or
/// `<dir>/<id>.tar.zst`.
pub fn sidecar_path(archive: &Path) -> PathBuf {
    let name = archive
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let stem = [".tar.gz", ".tgz", ".tar.zst", ".tzst"]
        .iter()
        .find_map(|ext| name.strip_suffix(ext))
        .unwrap_or(&name);
    archive.with_file_name(format!("{stem}.json"))
}

/// Checks that a backup id is usable as a file stem: 1 to 128 characters from
/// `[A-Za-z0-9._-]`, not starting with a dot or dash.
pub fn validate_id(id: &str) -> Result<(), BackupError> {
    let err = |reason| {
        Err(BackupError::InvalidId {
            id: id.to_owned(),
            reason,
        })
    };
    if id.is_empty() || id.len() > 128 {
        return err("must be 1 to 128 characters long");
    }
    if id.starts_with('.') || id.starts_with('-') {
        return err("must not start with '.' or '-'");
    }
    if !id
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
    {
        return err("may only contain letters, digits, '.', '_' and '-'");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_checked() {
        for ok in ["20250101T000000Z", "a", "r-1.2_x"] {
            assert!(validate_id(ok).is_ok(), "{ok}");
        }
        for bad in ["", ".hidden", "-x", "a/b", "a b", "ü", &"x".repeat(129)] {
            assert!(validate_id(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn control_characters_in_names_are_escaped() {
        for (raw, shown) in [
            ("plain.txt", "plain.txt"),
            ("a\nb", "a\\nb"),
            ("x\r\t\u{1b}[2J", "x\\r\\t\\u{1b}[2J"),
            ("née ü", "née ü"),
            ("\u{85}next-line", "\\u{85}next-line"),
        ] {
            assert_eq!(escape_name(raw), shown, "{raw:?}");
            assert!(!escape_name(raw).contains('\n'));
        }
    }

    #[test]
    fn sidecar_sits_beside_the_archive() {
        assert_eq!(
            sidecar_path(Path::new("/b/x1.tar.gz")),
            Path::new("/b/x1.json")
        );
        assert_eq!(
            sidecar_path(Path::new("/b/x1.tar.zst")),
            Path::new("/b/x1.json")
        );
        assert_eq!(
            crate::archive_path(Path::new("/b"), "x1", crate::Compression::Gzip),
            Path::new("/b/x1.tar.gz")
        );
        assert_eq!(
            crate::archive_path(Path::new("/b"), "x1", crate::Compression::Zstd),
            Path::new("/b/x1.tar.zst")
        );
    }
}
