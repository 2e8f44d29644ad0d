//! `verify`: re-read an archive, check every entry against the manifest and the whole file
//! against its sidecar, and name the first bad entry.

use std::path::{Path, PathBuf};

use serde::Serialize;
use tracing::instrument;

use crate::format::{Sidecar, VerifyRecord, sidecar_path};
use crate::read::{Limits, NullSink, open_archive, scan};
use crate::{BackupError, Progress};

/// How to verify.
#[derive(Debug, Clone, Copy, Default)]
pub struct VerifyOptions {
    /// Write the outcome into the sidecar's `last_verify` (what `list` shows and `prune` uses).
    pub record: bool,
    /// Caps on entry count and size.
    pub limits: Limits,
}

/// The first problem found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Problem {
    /// The first bad entry, when one can be named.
    pub entry: Option<String>,
    /// What is wrong.
    pub reason: String,
    /// `corrupt` or `refused`.
    pub kind: &'static str,
}

impl Problem {
    /// The problem an integrity error describes; `None` for operational errors.
    pub fn from_error(e: &BackupError) -> Option<Self> {
        match e {
            BackupError::Corrupt { entry, reason, .. } => Some(Self {
                entry: entry.clone(),
                reason: reason.clone(),
                kind: "corrupt",
            }),
            BackupError::Refused { entry, reason, .. } => Some(Self {
                entry: Some(entry.clone()),
                reason: reason.clone(),
                kind: "refused",
            }),
            _ => None,
        }
    }
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.entry {
            Some(e) => write!(
                f,
                "{}: entry `{}`: {}",
                self.kind,
                crate::escape_name(e),
                crate::escape_name(&self.reason)
            ),
            None => write!(f, "{}: {}", self.kind, crate::escape_name(&self.reason)),
        }
    }
}

/// The outcome of `verify`.
#[derive(Debug, Clone, Serialize)]
pub struct VerifyReport {
    /// The archive.
    pub archive: PathBuf,
    /// The backup id from the sidecar, when there is one.
    pub id: Option<String>,
    /// Whether every check passed.
    pub ok: bool,
    /// Entries checked (all of them when `ok`).
    pub entries: u64,
    /// Content bytes checked.
    pub content_bytes: u64,
    /// The archive's SHA-256, when it could be read to its end.
    pub archive_sha256: Option<String>,
    /// The first problem, when not `ok`.
    pub problem: Option<Problem>,
}

/// Verifies an archive and, with `opts.record`, records the outcome in its sidecar. Damage is
/// reported in the returned report (`ok: false`); `Err` means the check could not run (the
/// archive cannot be opened).
#[instrument(skip_all, fields(archive = %archive.display()))]
pub fn verify(
    archive: &Path,
    opts: &VerifyOptions,
    progress: &dyn Progress,
) -> Result<VerifyReport, BackupError> {
    let (file, label) = open_archive(archive)?;
    let total = file.metadata().map(|m| m.len()).unwrap_or(0);
    let side_path = sidecar_path(archive);
    // An unreadable sidecar is damage to report, not a reason to skip the check.
    let (sidecar, sidecar_error) = match Sidecar::read(&side_path) {
        Ok(s) => (Some(s), None),
        Err(BackupError::Io { error: source, .. })
            if source.kind() == std::io::ErrorKind::NotFound =>
        {
            (None, None)
        }
        Err(BackupError::Sidecar { reason, .. }) => (None, Some(reason)),
        Err(e) => return Err(e),
    };
    progress.start(total);
    let scanned = scan(file, &label, &opts.limits, &mut NullSink, progress);
    progress.finish();
    let mut report = VerifyReport {
        archive: archive.to_path_buf(),
        id: sidecar.as_ref().map(|s| s.metadata.id.clone()),
        ok: false,
        entries: 0,
        content_bytes: 0,
        archive_sha256: None,
        problem: None,
    };
    match scanned {
        Ok(s) => {
            report.entries = s.manifest.entries.len() as u64;
            report.content_bytes = s.manifest.entries.iter().map(|e| e.size).sum();
            report.problem = sidecar_problem(
                sidecar.as_ref(),
                &s.manifest.metadata,
                &s.archive_sha256,
                s.archive_bytes,
            );
            if let Some(reason) = sidecar_error {
                let reason = format!("sidecar {} is unreadable: {reason}", side_path.display());
                report.problem = Some(Problem {
                    entry: None,
                    reason,
                    kind: "corrupt",
                });
            }
            report.archive_sha256 = Some(s.archive_sha256);
            report.ok = report.problem.is_none();
        }
        Err(e) => match Problem::from_error(&e) {
            Some(p) => report.problem = Some(p),
            None => return Err(e),
        },
    }
    if let Some(mut side) = sidecar.filter(|_| opts.record) {
        side.last_verify = Some(VerifyRecord {
            at: jiff::Timestamp::now(),
            ok: report.ok,
            problem: report.problem.as_ref().map(ToString::to_string),
        });
        side.write_atomic(&side_path)?;
    }
    tracing::info!(ok = report.ok, entries = report.entries, "verified");
    Ok(report)
}

/// Compares what was read with the sidecar; `None` when they agree.
pub(crate) fn sidecar_problem(
    sidecar: Option<&Sidecar>,
    metadata: &crate::Metadata,
    sha256: &str,
    bytes: u64,
) -> Option<Problem> {
    let problem = |reason: String| {
        Some(Problem {
            entry: None,
            reason,
            kind: "corrupt",
        })
    };
    let Some(side) = sidecar else {
        return problem(
            "sidecar is missing: the backup never completed or was tampered with".into(),
        );
    };
    if side.archive_sha256 != sha256 || side.archive_bytes != bytes {
        return problem(format!(
            "archive sha256 {sha256} ({bytes} bytes) differs from the sidecar's {} ({} bytes)",
            side.archive_sha256, side.archive_bytes
        ));
    }
    if &side.metadata != metadata {
        return problem("sidecar metadata differs from the archive's manifest".into());
    }
    None
}
