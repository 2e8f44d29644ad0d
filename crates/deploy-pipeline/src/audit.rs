//! The audit log: one JSON line per operation in `state/audit.jsonl` (who, when, commit,
//! phases with durations, outcome), appended and fsynced.

use std::io::Write;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::DeployError;
use crate::journal::Operation;
use crate::manifest::StrategyKind;
use crate::operation::Outcome;
use crate::phase::Phase;

/// What a [`PhaseRecord`] is about: a pipeline phase, the rollback after a failed one, or a
/// recovery. Serialised as the same strings as ever (`build`, `rollback`, `recover`, …).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Step {
    /// The `[preflight]` checks.
    Preflight,
    /// The pre-deploy backup.
    Backup,
    /// Build and stage.
    Build,
    /// Start the release and move traffic.
    Switch,
    /// The validation suite.
    Validate,
    /// The perf gate.
    Perf,
    /// The stability window.
    Stable,
    /// Record as good, retire the old release, prune.
    Commit,
    /// The automatic rollback after a failed phase.
    Rollback,
    /// `recover` finishing or undoing an interrupted operation.
    Recover,
}

impl From<Phase> for Step {
    fn from(phase: Phase) -> Self {
        match phase {
            Phase::Preflight => Self::Preflight,
            Phase::Backup => Self::Backup,
            Phase::Build => Self::Build,
            Phase::Switch => Self::Switch,
            Phase::Validate => Self::Validate,
            Phase::Perf => Self::Perf,
            Phase::Stable => Self::Stable,
            Phase::Commit => Self::Commit,
        }
    }
}

impl Step {
    /// The spelling in the audit log and reports.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Preflight => "preflight",
            Self::Backup => "backup",
            Self::Build => "build",
            Self::Switch => "switch",
            Self::Validate => "validate",
            Self::Perf => "perf",
            Self::Stable => "stable",
            Self::Commit => "commit",
            Self::Rollback => "rollback",
            Self::Recover => "recover",
        }
    }
}

impl std::fmt::Display for Step {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How one phase ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PhaseOutcome {
    /// It did its work.
    Ok,
    /// It had nothing to do (no `[preflight]`, backups off, …).
    Skipped,
    /// It failed.
    Failed,
}

impl PhaseOutcome {
    /// The spelling in the audit log and reports.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::Skipped => "skipped",
            Self::Failed => "failed",
        }
    }

    /// `Ok` or `Failed`.
    pub fn of(ok: bool) -> Self {
        if ok { Self::Ok } else { Self::Failed }
    }
}

impl std::fmt::Display for PhaseOutcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One phase as the audit log records it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PhaseRecord {
    /// The phase (`preflight`, …, `commit`, or `rollback`, `recover`).
    pub phase: Step,
    /// `ok`, `skipped` or `failed`.
    pub outcome: PhaseOutcome,
    /// Wall time in milliseconds.
    pub duration_ms: u64,
    /// What happened, in a few words.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// One operation in the audit log. `user` is the login name (from `USER`/`LOGNAME`, else the
/// password database for the uid) and `host` the node name, so `who` reads `alice@web1`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditRecord {
    /// When it started (RFC 3339).
    pub at: String,
    /// The user who ran it.
    pub user: String,
    /// The host.
    pub host: String,
    /// `deploy`, `rollback` or `recover`.
    pub operation: Operation,
    /// The service.
    pub service: String,
    /// The release brought live (or attempted).
    pub release: Option<String>,
    /// The release live before.
    pub previous: Option<String>,
    /// The source commit.
    pub commit: Option<String>,
    /// `restart` or `blue-green`.
    pub strategy: StrategyKind,
    /// The phases, in order.
    pub phases: Vec<PhaseRecord>,
    /// `deployed`, `restored`, `rolled-back`, `rollback-failed`, `aborted`, `recovered`,
    /// `recovery-failed`.
    pub outcome: Outcome,
    /// Why it failed, when it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Total wall time in milliseconds.
    pub duration_ms: u64,
    /// Canary: each decision of the judge (promoted steps, the rollback), with its numbers.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub canary: Vec<crate::CanaryDecision>,
}

/// Appends `record` to the audit log at `path` and fsyncs it. The file is created with mode
/// 0600, and an existing one is tightened to 0600.
///
/// # Errors
/// [`DeployError::Io`].
pub fn append(path: &Path, record: &AuditRecord) -> Result<(), DeployError> {
    let mut line = serde_json::to_vec(record).unwrap_or_default();
    line.push(b'\n');
    let mut file = crate::journal::open_private_append(path, false)?;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_audit_log_is_private_when_made_and_tightened_when_appended_to() {
        use std::os::unix::fs::PermissionsExt;
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("audit.jsonl");
        let record = AuditRecord {
            at: "t".into(),
            user: "alice".into(),
            host: "web1".into(),
            operation: Operation::Deploy,
            service: "hub".into(),
            release: Some("r1".into()),
            previous: None,
            commit: None,
            strategy: StrategyKind::Restart,
            phases: Vec::new(),
            outcome: Outcome::Aborted,
            reason: Some("preflight failed".into()),
            duration_ms: 1,
            canary: Vec::new(),
        };
        let mode = || std::fs::metadata(&path).unwrap().permissions().mode() & 0o7777;
        append(&path, &record).unwrap();
        assert_eq!(mode(), 0o600);
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        append(&path, &record).unwrap();
        assert_eq!(mode(), 0o600);
        assert_eq!(read(&path).unwrap(), [record.clone(), record]);
    }
}
