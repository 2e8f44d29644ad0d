//! `list`: the backups in a directory, ordered by the creation time recorded in their metadata
//! (never by file mtime), plus whatever looks like a backup but is not complete.

use std::path::{Path, PathBuf};

use serde::Serialize;
use tracing::instrument;

use crate::BackupError;
use crate::format::{Sidecar, VerifyRecord};

/// One complete backup: a sidecar whose archive exists.
#[derive(Debug, Clone, Serialize)]
pub struct BackupInfo {
    /// The backup id.
    pub id: String,
    /// Recorded creation time.
    pub created: jiff::Timestamp,
    /// The archive's path.
    pub archive: PathBuf,
    /// The sidecar's path.
    pub sidecar: PathBuf,
    /// The archive's size in bytes, from the sidecar.
    pub archive_bytes: u64,
    /// The archive's compression, from its first bytes (`None` when they are neither gzip's
    /// nor zstd's: `verify` will say what is wrong).
    pub compression: Option<crate::Compression>,
    /// Number of entries.
    pub entry_count: u64,
    /// Total content bytes.
    pub content_bytes: u64,
    /// The release recorded in metadata.
    pub release: Option<String>,
    /// The last recorded verification.
    pub last_verify: Option<VerifyRecord>,
}

impl BackupInfo {
    /// Whether the last recorded verification passed.
    pub fn verified(&self) -> bool {
        self.last_verify.as_ref().is_some_and(|v| v.ok)
    }
}

/// Something in the directory that is not a complete backup.
#[derive(Debug, Clone, Serialize)]
pub struct Incomplete {
    /// The file.
    pub path: PathBuf,
    /// Why it does not count.
    pub reason: String,
}

/// The content of a backup directory.
#[derive(Debug, Clone, Serialize)]
pub struct Listing {
    /// Complete backups, oldest first by recorded creation time.
    pub backups: Vec<BackupInfo>,
    /// Leftovers: archives without a sidecar, temp files of killed runs, unreadable sidecars.
    pub incomplete: Vec<Incomplete>,
}

/// Lists the backups in `dir`.
#[instrument(skip_all, fields(dir = %dir.display()))]
pub fn list(dir: &Path) -> Result<Listing, BackupError> {
    let mut backups = Vec::new();
    let mut incomplete = Vec::new();
    let mut archives = Vec::new();
    let read = std::fs::read_dir(dir).map_err(BackupError::io("read directory", dir))?;
    for item in read {
        let item = item.map_err(BackupError::io("read directory", dir))?;
        let name = item.file_name().to_string_lossy().into_owned();
        let path = item.path();
        if name.starts_with('.') {
            if name.contains(".partial-") || name.contains(".tmp-") {
                incomplete.push(Incomplete {
                    path,
                    reason: "temporary file of an unfinished run".into(),
                });
            }
            continue;
        }
        // Archives of either compression (`.tar.gz`, `.tar.zst`) are backups alike.
        if crate::Compression::from_file_name(&name).is_some() {
            archives.push(path);
        } else if name.ends_with(".json") {
            match Sidecar::read(&path) {
                Ok(s) => {
                    let archive = dir.join(&s.archive);
                    if s.archive.contains('/') || !archive.is_file() {
                        incomplete.push(Incomplete {
                            path,
                            reason: format!("its archive {} is missing", s.archive),
                        });
                        continue;
                    }
                    backups.push(BackupInfo {
                        compression: crate::Compression::of_file(&archive).ok(),
                        id: s.metadata.id,
                        created: s.metadata.created,
                        archive,
                        sidecar: path,
                        archive_bytes: s.archive_bytes,
                        entry_count: s.entry_count,
                        content_bytes: s.content_bytes,
                        release: s.metadata.release,
                        last_verify: s.last_verify,
                    });
                }
                Err(e) => incomplete.push(Incomplete {
                    path,
                    reason: e.to_string(),
                }),
            }
        }
    }
    for a in archives {
        if !backups.iter().any(|b| b.archive == a) {
            incomplete.push(Incomplete {
                path: a,
                reason: "archive without a sidecar (unfinished create?)".into(),
            });
        }
    }
    backups.sort_by(|a, b| a.created.cmp(&b.created).then_with(|| a.id.cmp(&b.id)));
    incomplete.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(Listing {
        backups,
        incomplete,
    })
}
