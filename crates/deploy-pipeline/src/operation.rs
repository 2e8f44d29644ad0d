//! An operation (deploy or rollback) from the lock to the audit record: the [`Deployer`], its
//! phases run in order, the automatic rollback on failure, and the report.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use process_control::template;
use serde::Serialize;

use crate::DeployError;
use crate::audit::{self, AuditRecord, PhaseOutcome, PhaseRecord};
use crate::env::{Environment, Target};
use crate::journal::{Journal, JournalEntry, Operation};
use crate::layout::ReleaseLayout;
use crate::lock::{DeployLock, LockOwner, hostname, user_name};
use crate::manifest::{DeployManifest, StrategyKind};
use crate::phase::{Phase, Slot};
use crate::phases::{Course, Step, steps};
use crate::recovery::Undo;
use crate::source::Source;
use crate::strategy::Strategy;

/// How an operation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Outcome {
    /// The new release is live and validated (exit 0).
    Deployed,
    /// A rollback brought the requested earlier release back, live and validated (exit 0).
    Restored,
    /// It failed before changing anything; the previous release still serves (exit 2).
    Aborted,
    /// It failed and was rolled back; the previous release serves and is healthy (exit 2).
    RolledBack,
    /// It failed and so did the rollback; a person must look (exit 4).
    RollbackFailed,
    /// `recover` finished or undid an interrupted operation (exit 0).
    Recovered,
    /// `recover` could not bring a consistent release back (exit 4).
    RecoveryFailed,
}

impl std::fmt::Display for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Outcome {
    /// The spelling in reports and the audit log.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Deployed => "deployed",
            Outcome::Restored => "restored",
            Outcome::Recovered => "recovered",
            Outcome::RecoveryFailed => "recovery-failed",
            Outcome::Aborted => "aborted",
            Outcome::RolledBack => "rolled-back",
            Outcome::RollbackFailed => "rollback-failed",
        }
    }

    /// cutover-deploy's exit code: 0, 2 or 4.
    pub fn exit_code(self) -> i32 {
        match self {
            Outcome::Deployed | Outcome::Restored | Outcome::Recovered => 0,
            Outcome::Aborted | Outcome::RolledBack => 2,
            Outcome::RollbackFailed | Outcome::RecoveryFailed => 4,
        }
    }
}

/// What a deploy or rollback did.
#[derive(Debug, Clone, Serialize)]
pub struct DeployReport {
    /// `deploy` or `rollback`.
    pub operation: Operation,
    /// How it ended.
    pub outcome: Outcome,
    /// The release it brought live (or tried to).
    pub release: String,
    /// The release live before.
    pub previous: Option<String>,
    /// The strategy used.
    pub strategy: StrategyKind,
    /// The slot the release ran in.
    pub slot: Slot,
    /// Phases in order, with durations.
    pub phases: Vec<PhaseRecord>,
    /// Why it failed.
    pub reason: Option<String>,
    /// What is live now, in one sentence.
    pub live: String,
    /// What an interrupted earlier operation was turned into first, if there was one.
    pub recovered: Option<String>,
    /// Total wall time in milliseconds.
    pub duration_ms: u64,
}

/// The pipeline for one manifest.
#[allow(missing_debug_implementations)]
pub struct Deployer {
    pub(crate) manifest: DeployManifest,
    /// `--set-env` extras for the release a deploy stages.
    pub(crate) set_env: BTreeMap<String, String>,
    /// `--commit REV`: the commit a deploy builds (default the source's `HEAD`).
    pub(crate) commit_request: Option<String>,
    pub(crate) layout: ReleaseLayout,
    pub(crate) journal: Journal,
    pub(crate) env: Environment,
    /// Canary: the judge's decisions of the operation running, for its audit record.
    pub(crate) canary_decisions: std::sync::Mutex<Vec<crate::CanaryDecision>>,
    /// Whether the operation running is a deploy: only a deploy's switch is a judged canary
    /// (a rollback goes back to a release that was good, at once).
    pub(crate) deploying: std::sync::atomic::AtomicBool,
}

pub(crate) struct Run {
    pub(crate) phases: Vec<PhaseRecord>,
    pub(crate) backup: Option<PathBuf>,
    /// The commit the release is built from, passed down (never parsed back out of the id).
    pub(crate) commit: Option<String>,
    /// What a deploy builds from (a rollback builds nothing).
    pub(crate) source: Option<Source>,
}

impl Deployer {
    /// A pipeline for `manifest` reaching the OS through `env`.
    pub fn new(manifest: DeployManifest, env: Environment) -> Self {
        let layout = ReleaseLayout::new(manifest.root());
        let journal = Journal::new(layout.journal_file());
        Self {
            manifest,
            set_env: BTreeMap::new(),
            commit_request: None,
            layout,
            journal,
            env,
            canary_decisions: std::sync::Mutex::default(),
            deploying: std::sync::atomic::AtomicBool::new(false),
        }
    }

    /// Extra environment for the release the next deploy stages (`cutover-deploy deploy
    /// --set-env KEY=VALUE`), recorded in its release record so that a rollback to it runs it
    /// the same way. Values take the `[service] env` placeholders.
    ///
    /// # Errors
    /// [`DeployError::Config`] for a name listed in `[service] secrets` (secrets come from
    /// their references, never from the command line), a name that is not a valid variable
    /// name, or a value with an unknown placeholder.
    pub fn with_set_env(
        mut self,
        vars: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, DeployError> {
        for (name, value) in vars {
            let bad = |reason: String| DeployError::Config {
                path: self.manifest.path.clone(),
                key: format!("--set-env {name}"),
                reason,
            };
            if self.manifest.service.secrets.contains_key(&name) {
                return Err(bad(format!(
                    "{name} is listed in [service] secrets; a secret comes from its reference, never from the command line"
                )));
            }
            if name.is_empty()
                || name.starts_with(|c: char| c.is_ascii_digit())
                || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
            {
                return Err(bad(
                    "a variable name is letters, digits and '_', not starting with a digit"
                        .to_owned(),
                ));
            }
            template::check(&value).map_err(|e| bad(e.to_string()))?;
            self.set_env.insert(name, value);
        }
        Ok(self)
    }

    /// The commit the next deploy builds (`cutover-deploy deploy --commit REV`): a commit id,
    /// tag or branch of the source's git repository. Default: its `HEAD`. Checked when the
    /// deploy starts: [`DeployError::Usage`] (exit 64) when it names no commit or the source is
    /// not a git repository.
    pub fn with_commit(mut self, rev: impl Into<String>) -> Self {
        self.commit_request = Some(rev.into());
        self
    }

    /// The layout.
    pub fn layout(&self) -> &ReleaseLayout {
        &self.layout
    }

    /// The manifest.
    pub fn manifest(&self) -> &DeployManifest {
        &self.manifest
    }

    /// The strategy: slots, the next slot, switching and restoring.
    pub(crate) fn strategy(&self) -> &'static dyn Strategy {
        crate::strategy::for_kind(self.manifest.strategy())
    }

    pub(crate) fn port(&self, slot: Slot) -> u16 {
        match slot {
            Slot::Green => self
                .manifest
                .service
                .standby_port
                .unwrap_or(self.manifest.service.port),
            Slot::Single | Slot::Blue => self.manifest.service.port,
        }
    }

    pub(crate) fn addr(&self, slot: Slot) -> SocketAddr {
        SocketAddr::new(self.manifest.service.host, self.port(slot))
    }

    pub(crate) fn target(&self, release: &str, slot: Slot) -> Target {
        Target {
            base_url: format!("http://{}", self.addr(slot)),
            release: release.to_owned(),
        }
    }

    pub(crate) fn now(&self) -> String {
        self.env.clock.now().to_string()
    }

    pub(crate) fn journal(&self, entry: JournalEntry) -> Result<(), DeployError> {
        self.journal.append(&entry)
    }

    /// The current release, when `current` names a complete one.
    pub(crate) fn current(&self) -> Option<String> {
        self.layout
            .current()
            .filter(|id| self.layout.is_complete(id))
    }

    /// Deploys a new release from the manifest's source through every phase.
    ///
    /// # Errors
    /// [`DeployError::Locked`] when another operation holds the lock; other errors when state
    /// files cannot be written. Phase failures are not errors: they end in
    /// [`Outcome::RolledBack`] or [`Outcome::RollbackFailed`].
    #[tracing::instrument(skip_all, fields(service = %self.manifest.service.name))]
    pub fn deploy(&self, lock_wait: Duration) -> Result<DeployReport, DeployError> {
        self.layout.ensure_dirs()?;
        let _lock = DeployLock::acquire(
            &self.layout.lock_file(),
            lock_wait,
            &LockOwner::current("deploy", None),
        )?;
        let recovered = self.recover_locked()?.map(|r| r.action);
        if self.manifest.deploy.preflight {
            // Before the journal's first line: on a full disk nothing is written at all.
            self.check_room()
                .map_err(|reason| DeployError::step("preflight", reason))?;
        }
        let source = self.resolve_source(self.commit_request.as_deref())?;
        if let Some(warning) = source.dirty_warning() {
            tracing::warn!("{warning}");
        }
        let commit = source.short_commit().map(str::to_owned);
        let id = self.new_release_id(commit.as_deref());
        self.run_operation(Operation::Deploy, &id, commit, Some(source), recovered)
    }

    /// Brings an existing release back: `to`, else the last good release before the current.
    ///
    /// # Errors
    /// [`DeployError::Release`] when there is no such (complete) release, else as
    /// [`Self::deploy`].
    #[tracing::instrument(skip_all, fields(service = %self.manifest.service.name))]
    pub fn rollback(
        &self,
        to: Option<&str>,
        lock_wait: Duration,
    ) -> Result<DeployReport, DeployError> {
        self.layout.ensure_dirs()?;
        let _lock = DeployLock::acquire(
            &self.layout.lock_file(),
            lock_wait,
            &LockOwner::current("rollback", to.map(str::to_owned)),
        )?;
        let recovered = self.recover_locked()?.map(|r| r.action);
        let state = self.layout.load_state()?;
        let current = self.current();
        let target = match to {
            Some(id) => id.to_owned(),
            None => state
                .last_good_before(current.as_deref())
                .filter(|id| self.layout.is_complete(id))
                .map(str::to_owned)
                .ok_or_else(|| DeployError::Release {
                    id: "(last good)".to_owned(),
                    reason: "does not exist: no earlier good release to roll back to".to_owned(),
                })?,
        };
        let record = self.layout.read_record(&target)?;
        if current.as_deref() == Some(target.as_str()) {
            return Err(DeployError::Release {
                id: target,
                reason: "is already current".to_owned(),
            });
        }
        self.run_operation(Operation::Rollback, &target, record.commit, None, recovered)
    }

    pub(crate) fn run_operation(
        &self,
        op: Operation,
        id: &str,
        commit: Option<String>,
        source: Option<Source>,
        recovered: Option<String>,
    ) -> Result<DeployReport, DeployError> {
        let started = Instant::now();
        let at = self.now();
        self.deploying
            .store(op == Operation::Deploy, std::sync::atomic::Ordering::SeqCst);
        let state = self.layout.load_state()?;
        let previous = self.current();
        let from_slot = previous.as_ref().map(|_| self.strategy().live_slot(&state));
        let to_slot = self.strategy().next_slot(from_slot);
        self.journal.begin(&JournalEntry::Begin {
            at: at.clone(),
            op,
            release: id.to_owned(),
            previous: previous.clone(),
            from_slot,
            to_slot,
            standby: state.standby.clone(),
        })?;
        tracing::info!(release = id, ?previous, slot = %to_slot, "{} starts", op.as_str());
        let mut run = Run {
            phases: Vec::new(),
            backup: None,
            commit: commit.clone(),
            source,
        };
        let course = Course {
            id,
            previous: previous.as_deref(),
            to: to_slot,
            from: from_slot,
        };
        let mut failure: Option<(Phase, String)> = None;
        for step in steps(self, op) {
            if let Err(reason) = self.run_phase(&mut run, step, &course) {
                failure = Some((step.phase(), reason));
                break;
            }
        }
        let (outcome, reason, live) = match failure {
            None => {
                let done = match op {
                    Operation::Rollback => Outcome::Restored,
                    _ => Outcome::Deployed,
                };
                self.journal(JournalEntry::End {
                    at: self.now(),
                    outcome: done,
                })?;
                (
                    done,
                    None,
                    format!("{id} serving at {}", self.target(id, to_slot).base_url),
                )
            }
            Some((phase, reason)) => {
                let reason = format!("{phase} failed: {reason}");
                self.run_hook_on_failure(id, previous.as_deref(), &reason);
                if matches!(phase, Phase::Preflight | Phase::Backup) {
                    self.journal(JournalEntry::End {
                        at: self.now(),
                        outcome: Outcome::Aborted,
                    })?;
                    if op == Operation::Deploy {
                        let _ = self.layout.remove_release(id);
                    }
                    (Outcome::Aborted, Some(reason), self.describe_live())
                } else {
                    self.journal(JournalEntry::RollbackStarted { at: self.now() })?;
                    let t = Instant::now();
                    let rolled = self.roll_back(&Undo {
                        op,
                        failed: id,
                        previous: previous.as_deref(),
                        from_slot,
                        to_slot,
                        backup: run.backup.as_deref(),
                        standby_before: state.standby.as_deref(),
                    });
                    let (outcome, detail) = match &rolled {
                        Ok(detail) => (Outcome::RolledBack, detail.clone()),
                        Err(e) => (Outcome::RollbackFailed, e.clone()),
                    };
                    run.phases.push(PhaseRecord {
                        phase: audit::Step::Rollback,
                        outcome: PhaseOutcome::of(rolled.is_ok()),
                        duration_ms: millis(t.elapsed()),
                        detail: Some(detail.clone()),
                    });
                    self.journal(JournalEntry::End {
                        at: self.now(),
                        outcome,
                    })?;
                    let live = match outcome {
                        Outcome::RollbackFailed => format!(
                            "rollback failed ({detail}); live now: {}",
                            self.describe_live()
                        ),
                        _ => self.describe_live(),
                    };
                    (outcome, Some(reason), live)
                }
            }
        };
        let report = DeployReport {
            operation: op,
            outcome,
            release: id.to_owned(),
            previous: previous.clone(),
            strategy: self.strategy().kind(),
            slot: to_slot,
            phases: run.phases,
            reason,
            live,
            recovered,
            duration_ms: millis(started.elapsed()),
        };
        self.audit(&at, &report, commit)?;
        Ok(report)
    }

    pub(crate) fn audit(
        &self,
        at: &str,
        report: &DeployReport,
        commit: Option<String>,
    ) -> Result<(), DeployError> {
        audit::append(
            &self.layout.audit_file(),
            &AuditRecord {
                at: at.to_owned(),
                user: user_name(),
                host: hostname(),
                operation: report.operation,
                service: self.manifest.service.name.clone(),
                release: Some(report.release.clone()),
                previous: report.previous.clone(),
                commit,
                strategy: report.strategy,
                phases: report.phases.clone(),
                outcome: report.outcome,
                reason: report.reason.clone(),
                duration_ms: report.duration_ms,
                canary: self.take_canary_decisions(),
            },
        )
    }

    pub(crate) fn run_phase(
        &self,
        run: &mut Run,
        step: &dyn Step,
        course: &Course<'_>,
    ) -> Result<(), String> {
        let (phase, id, previous) = (step.phase(), course.id, course.previous);
        let t = Instant::now();
        let journal_err = |e: DeployError| e.to_string();
        self.journal(JournalEntry::PhaseStarted {
            at: self.now(),
            phase,
        })
        .map_err(journal_err)?;
        let result = self
            .run_hook(phase, true, id, previous)
            .and_then(|()| step.run(self, course, run))
            .and_then(|detail| self.run_hook(phase, false, id, previous).map(|()| detail));
        let duration_ms = millis(t.elapsed());
        match result {
            Ok(detail) => {
                tracing::info!(%phase, duration_ms, detail = detail.as_deref().unwrap_or(""), "phase done");
                run.phases.push(PhaseRecord {
                    phase: phase.into(),
                    outcome: if detail.as_deref() == Some("skipped") {
                        PhaseOutcome::Skipped
                    } else {
                        PhaseOutcome::Ok
                    },
                    duration_ms,
                    detail,
                });
                self.journal(JournalEntry::PhaseDone {
                    at: self.now(),
                    phase,
                })
                .map_err(journal_err)
            }
            Err(reason) => {
                tracing::warn!(%phase, %reason, "phase failed");
                run.phases.push(PhaseRecord {
                    phase: phase.into(),
                    outcome: PhaseOutcome::Failed,
                    duration_ms,
                    detail: Some(reason.clone()),
                });
                self.journal(JournalEntry::PhaseFailed {
                    at: self.now(),
                    phase,
                    reason: reason.clone(),
                })
                .map_err(journal_err)?;
                Err(reason)
            }
        }
    }
}

pub(crate) fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

pub(crate) fn describe_exit(r: &crate::env::CommandResult) -> String {
    match (r.code, r.timed_out) {
        (_, true) => "timed out".to_owned(),
        (Some(c), _) => format!("exited with {c}"),
        (None, _) => "was killed by a signal".to_owned(),
    }
}

pub(crate) fn tail(s: &str, n: usize) -> String {
    let s = s.trim();
    let start = s.len().saturating_sub(n);
    let start = (start..s.len())
        .find(|i| s.is_char_boundary(*i))
        .unwrap_or(s.len());
    s[start..].to_owned()
}
