//! The audit log: one JSON line per operation in `state/audit.jsonl` (who, when, commit,
//! phases with durations, outcome), appended and fsynced.

use std::io::Write;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::DeployError;

/// One phase as the audit log records it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PhaseRecord {
    /// The phase (`preflight`, …, `commit`, or `rollback`).
    pub phase: String,
    /// `ok`, `skipped` or `failed`.
    pub outcome: String,
    /// Wall time in milliseconds.
    pub duration_ms: u64,
    /// What happened, in a few words.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// One operation in the audit log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditRecord {
    /// When it started (RFC 3339).
    pub at: String,
    /// The user who ran it.
    pub user: String,
    /// The host.
    pub host: String,
    /// `deploy`, `rollback` or `recover`.
    pub operation: String,
    /// The service.
    pub service: String,
    /// The release brought live (or attempted).
    pub release: Option<String>,
    /// The release live before.
    pub previous: Option<String>,
    /// The source commit.
    pub commit: Option<String>,
    /// `restart` or `blue-green`.
    pub strategy: String,
    /// The phases, in order.
    pub phases: Vec<PhaseRecord>,
    /// `deployed`, `rolled-back`, `rollback-failed`, `aborted`, `recovered`, `noop`.
    pub outcome: String,
    /// Why it failed, when it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Total wall time in milliseconds.
    pub duration_ms: u64,
}

/// Appends `record` to the audit log at `path` and fsyncs it.
///
/// # Errors
/// [`DeployError::Io`].
pub fn append(path: &Path, record: &AuditRecord) -> Result<(), DeployError> {
    let mut line = serde_json::to_vec(record).unwrap_or_default();
    line.push(b'\n');
    let mut file = std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .open(path)
        .map_err(|e| DeployError::io("open", path, e))?;
    file.write_all(&line)
        .and_then(|()| file.sync_data())
        .map_err(|e| DeployError::io("append to", path, e))
}

/// Every record in the audit log at `path`, oldest first (unparsable lines skipped).
///
/// # Errors
/// [`DeployError::Io`] when the file exists but cannot be read.
pub fn read(path: &Path) -> Result<Vec<AuditRecord>, DeployError> {
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(text
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(DeployError::io("read", path, e)),
    }
}
