//! Undoing and finishing: the automatic rollback, `recover` after an interruption, and `down`.

use std::path::Path;
use std::time::{Duration, Instant};

use process_control::ProcessManager;
use serde::Serialize;

use crate::DeployError;
use crate::audit::{self, AuditRecord, PhaseOutcome, PhaseRecord};
use crate::journal::{JournalEntry, Operation};
use crate::lock::{DeployLock, LockOwner, hostname, user_name};
use crate::operation::Outcome;
use crate::operation::{Deployer, millis};
use crate::phase::Slot;

/// What `recover` did.
#[derive(Debug, Clone, Serialize)]
pub struct RecoverReport {
    /// Whether the state was consistent already.
    pub was_consistent: bool,
    /// What was done, in one sentence.
    pub action: String,
    /// What is live now.
    pub live: String,
    /// Whether the live release answers ready.
    pub healthy: bool,
    /// Unfinished work (an interrupted operation, or a rollback that had failed) could not be
    /// finished: a person must look (`cutover-deploy recover` exits 4; `live` says what runs).
    pub rollback_failed: bool,
}

/// What a rollback undoes: the operation that failed and where things stood before it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Undo<'a> {
    /// The operation that failed.
    pub(crate) op: Operation,
    /// The release it tried to bring live.
    pub(crate) failed: &'a str,
    /// The release live before (none on a first deploy).
    pub(crate) previous: Option<&'a str>,
    /// The slot of `previous`.
    pub(crate) from_slot: Option<Slot>,
    /// The slot of `failed`.
    pub(crate) to_slot: Slot,
    /// The pre-deploy backup, for `restore_shared_on_rollback`.
    pub(crate) backup: Option<&'a Path>,
    /// The warm standby before the operation, put back in its slot afterwards.
    pub(crate) standby_before: Option<&'a str>,
}

impl Deployer {
    /// Puts `previous` back live (idempotent, so that recovery can run it again), stops the
    /// failed release, and validates `previous`. Ok holds what was done; Err what failed.
    pub(crate) fn roll_back(&self, undo: &Undo<'_>) -> Result<String, String> {
        let Undo {
            op,
            failed,
            previous,
            from_slot,
            to_slot,
            backup,
            standby_before,
        } = *undo;
        let name = &self.manifest.service.name;
        let mut done = Vec::new();
        let Some(previous) = previous else {
            let svc = to_slot.service_name(name);
            self.env
                .procs
                .stop(&svc, None)
                .map_err(|e| format!("cannot stop {svc}: {e}"))?;
            self.layout.clear_current().map_err(|e| e.to_string())?;
            self.forget_failed(op, failed)?;
            // No private nginx is left in front of nothing.
            let proxy = if self.env.traffic.is_running() {
                self.env
                    .traffic
                    .stop()
                    .map_err(|e| format!("cannot stop the proxy: {e}"))?;
                ", stopped the proxy"
            } else {
                ""
            };
            return Ok(format!(
                "no earlier release: stopped {svc}{proxy}, nothing is deployed"
            ));
        };
        if let (true, Some(archive)) = (self.manifest.deploy.restore_shared_on_rollback, backup) {
            self.restore_shared(archive)?;
            done.push(format!("restored shared data from {}", archive.display()));
        }
        let from = from_slot.unwrap_or(to_slot);
        done.extend(self.strategy().restore(self, previous, from, to_slot)?);
        self.env
            .health
            .validate(
                &self.target(previous, from),
                self.manifest.deploy.validate_timeout,
            )
            .map_err(|e| format!("{previous} is back but fails validation: {e}"))?;
        let mut state = self.layout.load_state().map_err(|e| e.to_string())?;
        state.slot = Some(from);
        // The other slot was stopped above (or is the same slot): nothing waits there ...
        state.standby = None;
        self.layout.save_state(&state).map_err(|e| e.to_string())?;
        // ... unless the failed deploy took the warm standby's slot: put the standby back,
        // so that the next rollback is still a switch, not a cold start.
        if let Some(standby) = standby_before.filter(|s| {
            self.keeps_standby()
                && to_slot != from
                && *s != previous
                && *s != failed
                && self.layout.is_complete(s)
        }) {
            let back = self.ensure_running(standby, to_slot, false).and_then(|()| {
                // Listed again as nginx's backup server behind the restored release.
                self.env.traffic.switch_with_backup(
                    self.addr(from),
                    Some(self.addr(to_slot)),
                    self.release_check(previous),
                )
            });
            match back {
                Ok(()) => {
                    state.standby = Some(standby.to_owned());
                    self.layout.save_state(&state).map_err(|e| e.to_string())?;
                    done.push(format!(
                        "{standby} warm again in slot {to_slot} as the standby"
                    ));
                }
                Err(e) => {
                    tracing::warn!(%e, "the standby could not be restarted");
                    done.push(format!("the standby {standby} could not be restarted: {e}"));
                }
            }
        }
        self.forget_failed(op, failed)?;
        done.push(format!("{previous} validated"));
        Ok(done.join("; "))
    }

    pub(crate) fn forget_failed(&self, op: Operation, failed: &str) -> Result<(), String> {
        if op == Operation::Rollback {
            // A rollback target that failed is an old good release: it stays, not marked.
            return Ok(());
        }
        if self.layout.is_complete(failed) {
            let mut state = self.layout.load_state().map_err(|e| e.to_string())?;
            state.mark_failed(failed);
            self.layout.save_state(&state).map_err(|e| e.to_string())
        } else {
            self.layout
                .remove_release(failed)
                .map_err(|e| e.to_string())
        }
    }

    pub(crate) fn restore_shared(&self, archive: &Path) -> Result<(), String> {
        let staging = self.layout.state_dir().join("restore");
        let _ = std::fs::remove_dir_all(&staging);
        let mut opts = backup_archive::RestoreOptions::new(&staging);
        if let Some(b) = &self.manifest.backup {
            opts.limits = b.limits();
        }
        backup_archive::restore(archive, &opts, &backup_archive::NoProgress)
            .map_err(|e| format!("restore of {} failed: {e}", archive.display()))?;
        let restored = staging.join("shared");
        if !restored.is_dir() {
            return Err(format!("{} holds no shared/ directory", archive.display()));
        }
        // One atomic exchange: the service never sees a half-restored directory.
        rustix::fs::renameat_with(
            rustix::fs::CWD,
            &restored,
            rustix::fs::CWD,
            self.layout.shared_dir(),
            rustix::fs::RenameFlags::EXCHANGE,
        )
        .map_err(|e| {
            format!(
                "cannot exchange {} with the restored copy: {e}",
                self.layout.shared_dir().display()
            )
        })?;
        let _ = std::fs::remove_dir_all(&staging);
        Ok(())
    }

    /// Finishes or undoes an interrupted operation. Takes the lock.
    ///
    /// # Errors
    /// [`DeployError::Locked`], or state files that cannot be written.
    #[tracing::instrument(skip_all)]
    pub fn recover(&self, lock_wait: Duration) -> Result<RecoverReport, DeployError> {
        self.layout.ensure_dirs()?;
        let _lock = DeployLock::acquire(
            &self.layout.lock_file(),
            lock_wait,
            &LockOwner::current("recover", None),
        )?;
        if let Some(report) = self.recover_locked()? {
            return Ok(report);
        }
        // Nothing interrupted: make sure the current release is the one answering.
        let state = self.layout.load_state()?;
        let Some(current) = self.current() else {
            return Ok(RecoverReport {
                was_consistent: true,
                rollback_failed: false,
                action: "nothing deployed".to_owned(),
                live: self.describe_live(),
                healthy: false,
            });
        };
        let slot = self.strategy().live_slot(&state);
        let target = self.target(&current, slot);
        if self
            .env
            .health
            .wait_ready(&target, Duration::from_secs(2))
            .is_ok()
            && self.strategy().traffic_on(self, slot)
        {
            return Ok(RecoverReport {
                was_consistent: true,
                rollback_failed: false,
                action: "consistent: nothing to do".to_owned(),
                live: self.describe_live(),
                healthy: true,
            });
        }
        let result = self
            .ensure_running(&current, slot, false)
            .and_then(|()| self.strategy().ensure_traffic(self, slot, &current));
        Ok(RecoverReport {
            was_consistent: false,
            rollback_failed: false,
            action: match &result {
                Ok(()) => format!("restarted {current} in slot {slot}"),
                Err(e) => format!("could not bring {current} back: {e}"),
            },
            live: self.describe_live(),
            healthy: result.is_ok(),
        })
    }

    pub(crate) fn recover_locked(&self) -> Result<Option<RecoverReport>, DeployError> {
        let Some(i) = self.journal.interrupted()? else {
            return Ok(None);
        };
        let started = Instant::now();
        let at = self.now();
        tracing::warn!(release = %i.release, op = i.op.as_str(), commit_started = i.commit_started, "recovering an interrupted operation");
        // Its build, hooks and checks die before anything they write is removed.
        let killed = crate::orphans::kill(self.layout.root(), Duration::from_secs(10));
        if !killed.is_empty() {
            tracing::warn!(
                count = killed.len(),
                "killed the interrupted operation's children"
            );
        }
        let _ = std::fs::remove_dir_all(self.layout.build_dir(&i.release));
        let result = if i.commit_started && self.layout.is_complete(&i.release) {
            self.ensure_running(&i.release, i.to_slot, true)
                .and_then(|()| self.strategy().ensure_traffic(self, i.to_slot, &i.release))
                .and_then(|()| {
                    self.layout
                        .set_current(&i.release)
                        .map_err(|e| e.to_string())
                })
                .and_then(|()| {
                    self.commit(&i.release, i.to_slot, i.from_slot, i.previous.as_deref())
                        .map_err(|e| e.to_string())
                })
                .map(|d| format!("rolled forward to {} ({d})", i.release))
        } else {
            self.roll_back(&Undo {
                op: i.op,
                failed: &i.release,
                previous: i.previous.as_deref(),
                from_slot: i.from_slot,
                to_slot: i.to_slot,
                backup: i.backup.as_deref(),
                standby_before: i.standby.as_deref(),
            })
            .map(|d| match &i.previous {
                Some(p) => format!("rolled back to {p} ({d})"),
                None => format!("undid the first deploy of {} ({d})", i.release),
            })
        };
        let healthy = result.is_ok();
        let action = result.unwrap_or_else(|e| format!("recovery of {} failed: {e}", i.release));
        let outcome = if healthy {
            Outcome::Recovered
        } else {
            Outcome::RecoveryFailed
        };
        self.journal(JournalEntry::End {
            at: self.now(),
            outcome,
        })?;
        audit::append(
            &self.layout.audit_file(),
            &AuditRecord {
                at,
                user: user_name(),
                host: hostname(),
                operation: Operation::Recover,
                service: self.manifest.service.name.clone(),
                release: Some(i.release.clone()),
                previous: i.previous.clone(),
                commit: None,
                strategy: self.strategy().kind(),
                phases: vec![PhaseRecord {
                    phase: audit::Step::Recover,
                    outcome: PhaseOutcome::of(healthy),
                    duration_ms: millis(started.elapsed()),
                    detail: Some(action.clone()),
                }],
                outcome,
                reason: (!healthy).then(|| action.clone()),
                duration_ms: millis(started.elapsed()),
                canary: self.take_canary_decisions(),
            },
        )?;
        Ok(Some(RecoverReport {
            was_consistent: false,
            action,
            live: self.describe_live(),
            healthy,
            rollback_failed: !healthy,
        }))
    }

    /// Stops every slot's service and the proxy (`current` and the releases stay; `recover`
    /// or the next deploy starts the service again). Takes the lock.
    ///
    /// # Errors
    /// [`DeployError::Locked`], or [`DeployError::Step`] naming what could not be stopped.
    #[tracing::instrument(skip_all)]
    pub fn down(&self, lock_wait: Duration) -> Result<String, DeployError> {
        self.layout.ensure_dirs()?;
        let _lock = DeployLock::acquire(
            &self.layout.lock_file(),
            lock_wait,
            &LockOwner::current("down", None),
        )?;
        let mut stopped = Vec::new();
        for slot in self.slots() {
            let name = slot.service_name(&self.manifest.service.name);
            let outcome = self
                .env
                .procs
                .stop(&name, None)
                .map_err(|e| DeployError::step(format!("stop {name}"), e))?;
            if outcome.was_running {
                stopped.push(name);
            }
        }
        self.clear_standby()?;
        if self.env.traffic.is_running() {
            self.env
                .traffic
                .stop()
                .map_err(|e| DeployError::step("stop the proxy", e))?;
            stopped.push("proxy".to_owned());
        }
        Ok(if stopped.is_empty() {
            "nothing was running".to_owned()
        } else {
            format!("stopped {}", stopped.join(", "))
        })
    }
}
