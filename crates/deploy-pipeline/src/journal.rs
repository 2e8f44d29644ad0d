//! The journal: every transition of the operation in progress, appended and fsynced before
//! the next step starts, so that a deploy killed at any instant can be finished or undone.
//!
//! `state/journal.jsonl` holds one operation: it is replaced (atomically) by the `begin` entry
//! of the next one. An operation whose last entry is not `end` was interrupted.

use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::DeployError;
use crate::layout::write_atomic;
use crate::phase::{Phase, Slot};

/// What kind of operation a journal records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Operation {
    /// A deploy of a new release.
    Deploy,
    /// A rollback to an existing release.
    Rollback,
    /// `recover` finishing or undoing an interrupted operation (audit log only).
    Recover,
}

impl Operation {
    /// The name used in messages.
    pub fn as_str(self) -> &'static str {
        match self {
            Operation::Deploy => "deploy",
            Operation::Rollback => "rollback",
            Operation::Recover => "recover",
        }
    }
}

impl std::fmt::Display for Operation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One journal line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "kebab-case")]
pub enum JournalEntry {
    /// An operation starts: what it moves from and to.
    Begin {
        /// When (RFC 3339).
        at: String,
        /// The operation.
        op: Operation,
        /// The release being brought live.
        release: String,
        /// The release live before (none on a first deploy).
        previous: Option<String>,
        /// The slot serving `previous`.
        from_slot: Option<Slot>,
        /// The slot `release` runs in.
        to_slot: Slot,
        /// The warm standby before the operation (blue-green), which a failed deploy puts
        /// back in its slot after the rollback.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        standby: Option<String>,
    },
    /// A phase starts.
    PhaseStarted {
        /// When.
        at: String,
        /// The phase.
        phase: Phase,
    },
    /// A phase finished well.
    PhaseDone {
        /// When.
        at: String,
        /// The phase.
        phase: Phase,
    },
    /// A phase failed.
    PhaseFailed {
        /// When.
        at: String,
        /// The phase.
        phase: Phase,
        /// Why.
        reason: String,
    },
    /// The backup phase made the pre-deploy archive: recorded so that a rollback after a crash
    /// (`recover`) can restore shared data from it too.
    BackupMade {
        /// When.
        at: String,
        /// The archive.
        archive: PathBuf,
    },
    /// Rolling back to `previous` starts.
    RollbackStarted {
        /// When.
        at: String,
    },
    /// The operation is over.
    End {
        /// When.
        at: String,
        /// `deployed`, `restored`, `rolled-back`, `rollback-failed`, `aborted`, `recovered`,
        /// `recovery-failed`.
        outcome: crate::Outcome,
    },
}

/// The journal file.
#[derive(Debug, Clone)]
pub struct Journal {
    path: PathBuf,
}

impl Journal {
    /// The journal at `path`.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self { path: path.into() }
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Starts a new operation: the file is replaced by its `begin` entry.
    ///
    /// # Errors
    /// [`DeployError::Io`].
    pub fn begin(&self, entry: &JournalEntry) -> Result<(), DeployError> {
        let mut line = serde_json::to_vec(entry).unwrap_or_default();
        line.push(b'\n');
        Ok(write_atomic(&self.path, &line)?)
    }

    /// Appends an entry and fsyncs it.
    ///
    /// # Errors
    /// [`DeployError::Io`].
    pub fn append(&self, entry: &JournalEntry) -> Result<(), DeployError> {
        let mut line = serde_json::to_vec(entry).unwrap_or_default();
        line.push(b'\n');
        let mut file = open_private_append(&self.path, true)?;
        // A line torn by a crash mid-write is closed first, so the new entry stays whole.
        if !ends_with_newline(&mut file) {
            line.insert(0, b'\n');
        }
        file.write_all(&line)
            .and_then(|()| file.sync_data())
            .map_err(|e| DeployError::io("append to", &self.path, e))
    }

    /// Every entry. A torn last line (a crash mid-write) is ignored.
    ///
    /// # Errors
    /// [`DeployError::Io`] when the file cannot be read.
    pub fn entries(&self) -> Result<Vec<JournalEntry>, DeployError> {
        let text = match std::fs::read_to_string(&self.path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(DeployError::io("read", &self.path, e)),
        };
        Ok(text
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect())
    }

    /// The interrupted operation, when the journal does not end with `end`.
    ///
    /// # Errors
    /// As [`Self::entries`].
    pub fn interrupted(&self) -> Result<Option<Interrupted>, DeployError> {
        let entries = self.entries()?;
        let Some(JournalEntry::Begin {
            op,
            release,
            previous,
            from_slot,
            to_slot,
            standby,
            ..
        }) = entries.first().cloned()
        else {
            return Ok(None);
        };
        // An operation whose rollback (or recovery) failed has ended, but its work is not
        // done: `recover` must finish the rollback, never promote the failed release.
        let unfinished = matches!(
            entries.last(),
            Some(JournalEntry::End {
                outcome: crate::Outcome::RollbackFailed | crate::Outcome::RecoveryFailed,
                ..
            })
        );
        if matches!(entries.last(), Some(JournalEntry::End { .. })) && !unfinished {
            return Ok(None);
        }
        let commit_started = entries.iter().any(|e| {
            matches!(
                e,
                JournalEntry::PhaseStarted {
                    phase: Phase::Commit,
                    ..
                }
            )
        });
        let rollback_started = entries
            .iter()
            .any(|e| matches!(e, JournalEntry::RollbackStarted { .. }));
        let last_phase = entries.iter().rev().find_map(|e| match e {
            JournalEntry::PhaseStarted { phase, .. }
            | JournalEntry::PhaseDone { phase, .. }
            | JournalEntry::PhaseFailed { phase, .. } => Some(*phase),
            _ => None,
        });
        let backup = entries.iter().rev().find_map(|e| match e {
            JournalEntry::BackupMade { archive, .. } => Some(archive.clone()),
            _ => None,
        });
        Ok(Some(Interrupted {
            backup,
            op,
            release,
            previous,
            from_slot,
            to_slot,
            commit_started: commit_started && !rollback_started && !unfinished,
            last_phase,
            standby,
            rollback_failed: unfinished,
        }))
    }
}

/// Opens a state file for appending (and reading, with `read`), creating it with mode 0600 and
/// tightening an existing one to 0600: the journal and the audit log say what failed and why,
/// which is nobody else's to read.
pub(crate) fn open_private_append(path: &Path, read: bool) -> Result<std::fs::File, DeployError> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    const PRIVATE: u32 = 0o600;
    let file = std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .read(read)
        .mode(PRIVATE)
        .open(path)
        .map_err(|e| DeployError::io("open", path, e))?;
    let mode = file
        .metadata()
        .map_err(|e| DeployError::io("inspect", path, e))?
        .permissions()
        .mode();
    if mode & 0o7777 != PRIVATE {
        file.set_permissions(std::fs::Permissions::from_mode(PRIVATE))
            .map_err(|e| DeployError::io("restrict the permissions of", path, e))?;
    }
    Ok(file)
}

fn ends_with_newline(file: &mut std::fs::File) -> bool {
    use std::io::{Read, Seek, SeekFrom};
    match file.seek(SeekFrom::End(-1)) {
        Ok(_) => {
            let mut last = [0u8; 1];
            file.read_exact(&mut last).is_err() || last[0] == b'\n'
        }
        // An empty file.
        Err(_) => true,
    }
}

/// An operation the journal shows was cut short.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Interrupted {
    /// The operation.
    pub op: Operation,
    /// The release it was bringing live.
    pub release: String,
    /// The release live before.
    pub previous: Option<String>,
    /// The slot of `previous`.
    pub from_slot: Option<Slot>,
    /// The slot of `release`.
    pub to_slot: Slot,
    /// Whether it had passed every gate (commit started): recovery rolls forward.
    pub commit_started: bool,
    /// The last phase it reached.
    pub last_phase: Option<Phase>,
    /// The pre-deploy backup it made, if it got that far.
    pub backup: Option<PathBuf>,
    /// The warm standby before the operation.
    pub standby: Option<String>,
    /// It ended, but its rollback failed (exit 4): the rollback is still to be finished.
    pub rollback_failed: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn begin() -> JournalEntry {
        JournalEntry::Begin {
            at: "t".into(),
            op: Operation::Deploy,
            release: "r2".into(),
            previous: Some("r1".into()),
            from_slot: Some(Slot::Blue),
            to_slot: Slot::Green,
            standby: None,
        }
    }

    #[test]
    fn an_operation_without_end_is_interrupted_and_commit_means_roll_forward() {
        let tmp = tempfile::tempdir().unwrap();
        let journal = Journal::new(tmp.path().join("journal.jsonl"));
        assert_eq!(journal.interrupted().unwrap(), None);
        journal.begin(&begin()).unwrap();
        let at = || "t".to_owned();
        journal
            .append(&JournalEntry::PhaseStarted {
                at: at(),
                phase: Phase::Switch,
            })
            .unwrap();
        let i = journal.interrupted().unwrap().unwrap();
        assert!(!i.commit_started);
        assert_eq!(i.last_phase, Some(Phase::Switch));
        journal
            .append(&JournalEntry::PhaseStarted {
                at: at(),
                phase: Phase::Commit,
            })
            .unwrap();
        assert!(journal.interrupted().unwrap().unwrap().commit_started);
        // A torn line is ignored.
        std::fs::OpenOptions::new()
            .append(true)
            .open(journal.path())
            .unwrap()
            .write_all(b"{\"event\":\"en")
            .unwrap();
        assert!(journal.interrupted().unwrap().is_some());
        journal
            .append(&JournalEntry::End {
                at: at(),
                outcome: crate::Outcome::Deployed,
            })
            .unwrap();
        assert_eq!(journal.interrupted().unwrap(), None);
        // A new operation replaces the old one.
        journal.begin(&begin()).unwrap();
        assert_eq!(journal.entries().unwrap().len(), 1);
    }

    #[test]
    fn the_journal_is_private_when_made_replaced_or_appended_to() {
        use std::os::unix::fs::PermissionsExt;
        let tmp = tempfile::tempdir().unwrap();
        let journal = Journal::new(tmp.path().join("journal.jsonl"));
        let mode = || {
            std::fs::metadata(journal.path())
                .unwrap()
                .permissions()
                .mode()
                & 0o7777
        };
        let phase = JournalEntry::PhaseStarted {
            at: "t".into(),
            phase: Phase::Build,
        };
        // Made by an append (no begin yet), by a begin, and an existing 0644 one appended to.
        journal.append(&phase).unwrap();
        assert_eq!(mode(), 0o600);
        journal.begin(&begin()).unwrap();
        assert_eq!(mode(), 0o600);
        std::fs::set_permissions(journal.path(), std::fs::Permissions::from_mode(0o644)).unwrap();
        journal.append(&phase).unwrap();
        assert_eq!(mode(), 0o600);
        assert_eq!(journal.entries().unwrap().len(), 2);
    }
}
