//! The fleet journal: one JSON line per step, fsynced before the next step starts.

use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// What one host went through, as the journal records it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum HostStep {
    /// Its deploy started (the dead-man's switch is armed with `token`).
    Started,
    /// Its pipeline switched it to the new release.
    Switched,
    /// Confirmed over a fresh connection and healthy: done.
    Confirmed,
    /// Its deploy failed (its own pipeline rolled it back) or a hook failed.
    Failed,
    /// It could not be reached.
    Unreachable,
    /// It switched but could not be confirmed: it rolls itself back.
    Unconfirmed,
    /// The fleet rolled it back after the rollout stopped.
    RolledBack,
    /// Its rollback failed: a person must look.
    RollbackFailed,
}

impl HostStep {
    /// The kebab-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            HostStep::Started => "started",
            HostStep::Switched => "switched",
            HostStep::Confirmed => "confirmed",
            HostStep::Failed => "failed",
            HostStep::Unreachable => "unreachable",
            HostStep::Unconfirmed => "unconfirmed",
            HostStep::RolledBack => "rolled-back",
            HostStep::RollbackFailed => "rollback-failed",
        }
    }
}

/// One line of the fleet journal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "kebab-case")]
pub enum FleetEvent {
    /// A fleet deploy began.
    Begin {
        /// The fleet release label.
        release: String,
        /// sha256 of the bundle shipped to every host (a resume ships the same one).
        bundle: String,
        /// The batches, in order.
        batches: Vec<Vec<String>>,
        /// When.
        at: String,
    },
    /// A host changed step.
    Host {
        /// The ssh destination.
        host: String,
        /// Its new step.
        step: HostStep,
        /// The release it ran before (rollback target).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        previous: Option<String>,
        /// The release id its pipeline deployed.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        deployed: Option<String>,
        /// The dead-man's switch token of this attempt.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        token: Option<String>,
        /// Why, for failures.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        detail: Option<String>,
    },
    /// The rollout stopped (failures exceeded the budget).
    Stop {
        /// Why.
        reason: String,
    },
    /// The fleet deploy ended.
    End {
        /// `deployed`, `rolled-back`, `rollback-failed`.
        outcome: String,
    },
}

/// The append-only journal file.
#[derive(Debug)]
pub struct FleetJournal {
    path: PathBuf,
    file: std::fs::File,
}

impl FleetJournal {
    /// Starts a new journal at `path` (replacing a finished one).
    ///
    /// # Errors
    /// I/O errors, naming the file.
    pub fn create(path: &Path) -> Result<Self, String> {
        Self::open(path, true)
    }

    /// Opens `path` to append to it.
    ///
    /// # Errors
    /// I/O errors, naming the file.
    pub fn append_to(path: &Path) -> Result<Self, String> {
        Self::open(path, false)
    }

    fn open(path: &Path, truncate: bool) -> Result<Self, String> {
        use std::os::unix::fs::OpenOptionsExt;
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        }
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(!truncate)
            .write(true)
            .truncate(truncate)
            .mode(0o600)
            .open(path)
            .map_err(|e| format!("cannot open {}: {e}", path.display()))?;
        if let Some(dir) = path.parent() {
            let _ = deploy_pipeline::fsync_dir(dir);
        }
        Ok(Self {
            path: path.to_path_buf(),
            file,
        })
    }

    /// Appends `event` and fsyncs it.
    ///
    /// # Errors
    /// I/O errors, naming the file.
    pub fn append(&mut self, event: &FleetEvent) -> Result<(), String> {
        let mut line = serde_json::to_string(event).map_err(|e| e.to_string())?;
        line.push('\n');
        self.file
            .write_all(line.as_bytes())
            .and_then(|()| self.file.sync_data())
            .map_err(|e| format!("cannot write {}: {e}", self.path.display()))
    }

    /// Reads every complete line of the journal at `path` (a torn last line is ignored).
    ///
    /// # Errors
    /// I/O errors, naming the file.
    pub fn read(path: &Path) -> Result<Vec<FleetEvent>, String> {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(format!("cannot read {}: {e}", path.display())),
        };
        Ok(text
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_torn_tail() {
        let dir = std::env::temp_dir().join(format!("fleet-journal-{}", std::process::id()));
        let path = dir.join("fleet-journal.jsonl");
        let mut j = FleetJournal::create(&path).ok();
        let e = FleetEvent::Host {
            host: "web1".into(),
            step: HostStep::Started,
            previous: Some("r1".into()),
            deployed: None,
            token: Some("t".into()),
            detail: None,
        };
        assert!(j.as_mut().is_some_and(|j| j.append(&e).is_ok()));
        let _ = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .and_then(|mut f| f.write_all(b"{\"event\":\"ho"));
        assert_eq!(FleetJournal::read(&path).ok(), Some(vec![e]));
        let _ = std::fs::remove_dir_all(dir);
    }
}
