//! The deploy pipeline: phases, strategies, automatic rollback, recovery, retention and the
//! read-only views (`status`, `releases`, `plan`).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use process_control::{ProcessManager, ServiceSpec};
use serde::Serialize;

use crate::DeployError;
use crate::audit::{self, AuditRecord, PhaseRecord};
use crate::env::{CommandRequest, Environment, Target};
use crate::journal::{Interrupted, Journal, JournalEntry, Operation};
use crate::layout::{DeployState, ReleaseLayout, ReleaseRecord, release_id};
use crate::lock::{DeployLock, LockOwner, hostname, user_name};
use crate::manifest::{DeployManifest, StrategyKind};
use crate::phase::{Phase, Slot};
use process_control::template;

/// How an operation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Outcome {
    /// The new release is live and validated (exit 0).
    Deployed,
    /// It failed before changing anything; the previous release still serves (exit 2).
    Aborted,
    /// It failed and was rolled back; the previous release serves and is healthy (exit 2).
    RolledBack,
    /// It failed and so did the rollback; a person must look (exit 4).
    RollbackFailed,
}

impl Outcome {
    /// The spelling in reports and the audit log.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Deployed => "deployed",
            Outcome::Aborted => "aborted",
            Outcome::RolledBack => "rolled-back",
            Outcome::RollbackFailed => "rollback-failed",
        }
    }

    /// cutover-deploy's exit code: 0, 2 or 4.
    pub fn exit_code(self) -> i32 {
        match self {
            Outcome::Deployed => 0,
            Outcome::Aborted | Outcome::RolledBack => 2,
            Outcome::RollbackFailed => 4,
        }
    }
}

/// What a deploy or rollback did.
#[derive(Debug, Clone, Serialize)]
pub struct DeployReport {
    /// `deploy` or `rollback`.
    pub operation: String,
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
}

/// One release as `releases` lists it.
#[derive(Debug, Clone, Serialize)]
pub struct ReleaseInfo {
    /// The id.
    pub id: String,
    /// `current`, `good`, `failed`, `staged` or `incomplete`.
    pub state: String,
    /// Whether `current` names it.
    pub current: bool,
    /// The commit it was built from.
    pub commit: Option<String>,
    /// When it was staged.
    pub created: Option<String>,
}

/// `status`.
#[derive(Debug, Clone, Serialize)]
pub struct StatusReport {
    /// The service name (what `service` held before it became the live process).
    pub service_name: String,
    /// The layout root.
    pub root: PathBuf,
    /// The strategy.
    pub strategy: StrategyKind,
    /// The current release.
    pub current: Option<String>,
    /// Its slot.
    pub slot: Option<Slot>,
    /// The live release id (the same as `current`).
    pub release: Option<String>,
    /// Where users reach it: the proxy's public URL (https when TLS is on), else the slot's
    /// own address. (Before this field's meaning changed it was the slot's address: that is
    /// `slot_url` now.)
    pub url: Option<String>,
    /// The live slot's own address, where the pipeline probes the release as itself.
    pub slot_url: Option<String>,
    /// The live slot's process: `{name, state, pid}` (the name is the service's, as
    /// `service` held alone before).
    pub service: ServiceProcess,
    /// Whether it answers ready as itself.
    pub healthy: bool,
    /// Why not, when it does not.
    pub health_reason: Option<String>,
    /// The proxy's upstream (blue-green).
    pub upstream: Option<SocketAddr>,
    /// The default rollback target.
    pub rollback_target: Option<String>,
    /// The warm standby (blue-green with `keep_standby`): the release kept running in the
    /// idle slot, which a rollback to it switches to without starting anything.
    pub standby: Option<StandbyInfo>,
    /// Each slot's process state.
    pub services: BTreeMap<String, String>,
    /// An interrupted operation awaiting `recover`.
    pub interrupted: Option<Interrupted>,
    /// Who holds the deploy lock, when someone does.
    pub lock_holder: Option<String>,
    /// The last audited operation's outcome.
    pub last_outcome: Option<String>,
}

/// The live slot's process as `status` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct ServiceProcess {
    /// The service name.
    pub name: String,
    /// The live slot's process-manager service (`<name>-blue`, …), when a release is live.
    pub unit: Option<String>,
    /// The process manager's state (`running`, `stopped`, …; `unknown` when it cannot say).
    pub state: String,
    /// The main process.
    pub pid: Option<u32>,
}

/// The warm standby as `status` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct StandbyInfo {
    /// The release.
    pub release: String,
    /// Its slot.
    pub slot: Slot,
    /// The process manager's word on it (`running (pid N, port P)`, `stopped`, ...).
    pub process: String,
    /// Its resident memory, the standby's cost, when the manager reports it.
    pub rss_bytes: Option<u64>,
}

/// One phase of a plan.
#[derive(Debug, Clone, Serialize)]
pub struct PlannedPhase {
    /// The phase.
    pub phase: Phase,
    /// What it would do.
    pub action: String,
    /// Hooks around it.
    pub hooks: Vec<String>,
}

/// `plan`: what a deploy would do now (secrets named, never resolved or shown).
#[derive(Debug, Clone, Serialize)]
pub struct Plan {
    /// The service.
    pub service: String,
    /// The layout root.
    pub root: PathBuf,
    /// The strategy.
    pub strategy: StrategyKind,
    /// The id the new release would get.
    pub release: String,
    /// The commit it would be built from.
    pub commit: Option<String>,
    /// The release live now.
    pub previous: Option<String>,
    /// The slot the new release would run in and its port.
    pub slot: Slot,
    /// Its port.
    pub port: u16,
    /// The start argv, placeholders filled.
    pub start: Vec<String>,
    /// Plain environment variable names.
    pub env: Vec<String>,
    /// Secret variable names (values are never resolved by `plan`).
    pub secrets: Vec<String>,
    /// The phases.
    pub phases: Vec<PlannedPhase>,
    /// Releases the commit would prune.
    pub prune: Vec<String>,
    /// An interrupted operation the deploy would first recover.
    pub interrupted: Option<Interrupted>,
}

/// The pipeline for one manifest.
#[allow(missing_debug_implementations)]
pub struct Deployer {
    manifest: DeployManifest,
    /// `--set-env` extras for the release a deploy stages.
    set_env: BTreeMap<String, String>,
    layout: ReleaseLayout,
    journal: Journal,
    env: Environment,
}

struct Run {
    phases: Vec<PhaseRecord>,
    backup: Option<PathBuf>,
    /// The commit the release is built from, passed down (never parsed back out of the id).
    commit: Option<String>,
}

impl Deployer {
    /// A pipeline for `manifest` reaching the OS through `env`.
    pub fn new(manifest: DeployManifest, env: Environment) -> Self {
        let layout = ReleaseLayout::new(manifest.root());
        let journal = Journal::new(layout.journal_file());
        Self {
            manifest,
            set_env: BTreeMap::new(),
            layout,
            journal,
            env,
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

    /// The layout.
    pub fn layout(&self) -> &ReleaseLayout {
        &self.layout
    }

    /// The manifest.
    pub fn manifest(&self) -> &DeployManifest {
        &self.manifest
    }

    fn strategy(&self) -> StrategyKind {
        self.manifest.strategy()
    }

    fn port(&self, slot: Slot) -> u16 {
        match slot {
            Slot::Green => self
                .manifest
                .service
                .standby_port
                .unwrap_or(self.manifest.service.port),
            Slot::Single | Slot::Blue => self.manifest.service.port,
        }
    }

    fn addr(&self, slot: Slot) -> SocketAddr {
        SocketAddr::new(self.manifest.service.host, self.port(slot))
    }

    fn target(&self, release: &str, slot: Slot) -> Target {
        Target {
            base_url: format!("http://{}", self.addr(slot)),
            release: release.to_owned(),
        }
    }

    fn now(&self) -> String {
        self.env.clock.now().to_string()
    }

    fn journal(&self, entry: JournalEntry) -> Result<(), DeployError> {
        self.journal.append(&entry)
    }

    /// The current release, when `current` names a complete one.
    fn current(&self) -> Option<String> {
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
        let commit = self.source_commit();
        let id = self.new_release_id(commit.as_deref());
        self.run_operation(Operation::Deploy, &id, commit, recovered)
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
        self.run_operation(Operation::Rollback, &target, record.commit, recovered)
    }

    fn run_operation(
        &self,
        op: Operation,
        id: &str,
        commit: Option<String>,
        recovered: Option<String>,
    ) -> Result<DeployReport, DeployError> {
        let started = Instant::now();
        let at = self.now();
        let state = self.layout.load_state()?;
        let previous = self.current();
        let from_slot = previous.as_ref().map(|_| {
            state.slot.unwrap_or(match self.strategy() {
                StrategyKind::Restart => Slot::Single,
                StrategyKind::BlueGreen => Slot::Blue,
            })
        });
        let to_slot = match self.strategy() {
            StrategyKind::Restart => Slot::Single,
            StrategyKind::BlueGreen => from_slot.map_or(Slot::Blue, Slot::other),
        };
        self.journal.begin(&JournalEntry::Begin {
            at: at.clone(),
            op,
            release: id.to_owned(),
            previous: previous.clone(),
            from_slot,
            to_slot,
        })?;
        tracing::info!(release = id, ?previous, slot = %to_slot, "{} starts", op.as_str());
        let mut run = Run {
            phases: Vec::new(),
            backup: None,
            commit: commit.clone(),
        };
        let mut phases = Vec::new();
        if op == Operation::Deploy {
            phases.extend([Phase::Preflight, Phase::Backup, Phase::Build]);
        }
        phases.extend([Phase::Switch, Phase::Validate]);
        if self.manifest.deploy.perf_gate && op == Operation::Deploy {
            phases.push(Phase::Perf);
        }
        phases.push(Phase::Commit);

        let mut failure: Option<(Phase, String)> = None;
        for phase in phases {
            let result =
                self.run_phase(&mut run, phase, id, previous.as_deref(), to_slot, from_slot);
            if let Err(reason) = result {
                failure = Some((phase, reason));
                break;
            }
        }
        let (outcome, reason, live) = match failure {
            None => {
                self.journal(JournalEntry::End {
                    at: self.now(),
                    outcome: Outcome::Deployed.as_str().to_owned(),
                })?;
                (
                    Outcome::Deployed,
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
                        outcome: Outcome::Aborted.as_str().to_owned(),
                    })?;
                    if op == Operation::Deploy {
                        let _ = self.layout.remove_release(id);
                    }
                    (Outcome::Aborted, Some(reason), self.describe_live())
                } else {
                    self.journal(JournalEntry::RollbackStarted { at: self.now() })?;
                    let t = Instant::now();
                    let rolled = self.roll_back(
                        op,
                        id,
                        previous.as_deref(),
                        from_slot,
                        to_slot,
                        run.backup.as_deref(),
                    );
                    let (outcome, detail) = match &rolled {
                        Ok(detail) => (Outcome::RolledBack, detail.clone()),
                        Err(e) => (Outcome::RollbackFailed, e.clone()),
                    };
                    run.phases.push(PhaseRecord {
                        phase: "rollback".to_owned(),
                        outcome: if rolled.is_ok() { "ok" } else { "failed" }.to_owned(),
                        duration_ms: millis(t.elapsed()),
                        detail: Some(detail.clone()),
                    });
                    self.journal(JournalEntry::End {
                        at: self.now(),
                        outcome: outcome.as_str().to_owned(),
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
            operation: op.as_str().to_owned(),
            outcome,
            release: id.to_owned(),
            previous: previous.clone(),
            strategy: self.strategy(),
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

    fn audit(
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
                operation: report.operation.clone(),
                service: self.manifest.service.name.clone(),
                release: Some(report.release.clone()),
                previous: report.previous.clone(),
                commit,
                strategy: report.strategy.as_str().to_owned(),
                phases: report.phases.clone(),
                outcome: report.outcome.as_str().to_owned(),
                reason: report.reason.clone(),
                duration_ms: report.duration_ms,
            },
        )
    }

    fn run_phase(
        &self,
        run: &mut Run,
        phase: Phase,
        id: &str,
        previous: Option<&str>,
        to_slot: Slot,
        from_slot: Option<Slot>,
    ) -> Result<(), String> {
        let t = Instant::now();
        let journal_err = |e: DeployError| e.to_string();
        self.journal(JournalEntry::PhaseStarted {
            at: self.now(),
            phase,
        })
        .map_err(journal_err)?;
        let result = self
            .run_hook(phase, true, id, previous)
            .and_then(|()| self.phase_body(run, phase, id, to_slot, from_slot, previous))
            .and_then(|detail| self.run_hook(phase, false, id, previous).map(|()| detail));
        let duration_ms = millis(t.elapsed());
        match result {
            Ok(detail) => {
                tracing::info!(%phase, duration_ms, detail = detail.as_deref().unwrap_or(""), "phase done");
                run.phases.push(PhaseRecord {
                    phase: phase.as_str().to_owned(),
                    outcome: if detail.as_deref() == Some("skipped") {
                        "skipped"
                    } else {
                        "ok"
                    }
                    .to_owned(),
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
                    phase: phase.as_str().to_owned(),
                    outcome: "failed".to_owned(),
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

    fn phase_body(
        &self,
        run: &mut Run,
        phase: Phase,
        id: &str,
        to_slot: Slot,
        from_slot: Option<Slot>,
        previous: Option<&str>,
    ) -> Result<Option<String>, String> {
        match phase {
            Phase::Preflight => self.preflight(),
            Phase::Backup => {
                let made = self.backup(id)?;
                if let Some(archive) = &made {
                    self.journal(JournalEntry::BackupMade {
                        at: self.now(),
                        archive: archive.clone(),
                    })
                    .map_err(|e| e.to_string())?;
                }
                let detail = made.as_ref().map(|p| p.display().to_string());
                run.backup = made;
                Ok(detail.or(Some("skipped".to_owned())))
            }
            Phase::Build => self.build_and_stage(id, run.commit.as_deref()).map(Some),
            Phase::Switch => self.switch_to(id, to_slot, from_slot).map(Some),
            Phase::Validate => self
                .env
                .health
                .validate(
                    &self.target(id, to_slot),
                    self.manifest.deploy.validate_timeout,
                )
                .map(|()| None),
            Phase::Perf => self.env.perf.check(&self.target(id, to_slot)).map(Some),
            Phase::Commit => self
                .commit(id, to_slot, from_slot, previous)
                .map(Some)
                .map_err(|e| e.to_string()),
        }
    }

    fn preflight(&self) -> Result<Option<String>, String> {
        let Some(config) = self
            .manifest
            .preflight
            .as_ref()
            .filter(|_| self.manifest.deploy.preflight)
        else {
            return Ok(Some("skipped".to_owned()));
        };
        let ctx = preflight_checks::BuildContext {
            base_dir: self.manifest.dir.clone(),
            secrets: self
                .manifest
                .service
                .secrets
                .iter()
                .map(|(k, v)| (k.clone(), v.to_string()))
                .collect(),
        };
        let checks = config.build(&ctx).map_err(|e| e.to_string())?;
        let report = preflight_checks::Runner::new()
            .with_checks(checks)
            .with_ignore(config.ignore_list())
            .run();
        let failed: Vec<String> = report
            .checks
            .iter()
            .filter(|c| c.status == preflight_checks::CheckStatus::Fail)
            .map(|c| format!("{}: {}", c.id, c.message))
            .collect();
        if failed.is_empty() {
            Ok(Some(format!(
                "{} checks, {}",
                report.checks.len(),
                report.status.as_str()
            )))
        } else {
            Err(failed.join("; "))
        }
    }

    /// What the backup phase archives and where to: `[backup] paths` (else `<root>/shared`)
    /// to `[backup] dest` (else `<root>/backups`), relative paths against the manifest. The
    /// same rule `cutover-backup` applies through live-deployment, and `plan` shows.
    fn backup_target(&self) -> (Vec<PathBuf>, PathBuf) {
        let b = self.manifest.backup.as_ref();
        let paths = b.map(|b| b.paths.clone()).unwrap_or_default();
        let dest = b.and_then(|b| b.dest.clone());
        (
            live_deployment::backup_sources(&self.manifest.dir, &self.layout, &paths),
            live_deployment::backup_dest(&self.manifest.dir, &self.layout, dest.as_deref()),
        )
    }

    fn backup(&self, id: &str) -> Result<Option<PathBuf>, String> {
        if !self.manifest.deploy.backup {
            return Ok(None);
        }
        let config = self.manifest.backup.as_ref();
        let (sources, dest) = self.backup_target();
        let sources: Vec<PathBuf> = sources
            .into_iter()
            .filter(|p: &PathBuf| p.exists())
            .collect();
        if sources.is_empty() {
            return Ok(None);
        }
        let mut opts = backup_archive::CreateOptions::new(sources, dest.clone());
        // A release id can come back (a failed release is removed, and the next deploy in the
        // same second gets its id again), so the backup id is made unique here.
        let mut backup_id = format!("pre-{id}");
        let mut n = 2;
        while backup_archive::archive_path(&dest, &backup_id).exists() {
            backup_id = format!("pre-{id}.{n}");
            n += 1;
        }
        opts.id = Some(backup_id);
        opts.service = Some(self.manifest.service.name.clone());
        opts.release = self.current();
        if let Some(config) = config {
            opts.include = config.include.clone();
            opts.exclude = config.exclude.clone();
            opts.level = config.level;
        }
        let made = backup_archive::create(&opts, &backup_archive::NoProgress)
            .map_err(|e| e.to_string())?;
        if let Some(config) = config {
            let policy = config.retention();
            if policy != backup_archive::RetentionPolicy::default()
                && let Err(e) = backup_archive::prune(&dest, &policy, false)
            {
                tracing::warn!(%e, "pruning backups failed");
            }
        }
        Ok(Some(made.archive))
    }

    fn build_and_stage(&self, id: &str, commit: Option<&str>) -> Result<String, String> {
        let dir = self.layout.release_dir(id);
        std::fs::create_dir_all(&dir)
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        let service = &self.manifest.service;
        let mut detail = Vec::new();
        if !service.build.is_empty() {
            let argv = template::fill_all(&service.build, &self.placeholders(id, None))
                .map_err(|e| format!("[service] build: {e}"))?;
            let env = self.hook_env("build", "build", id, None);
            let result = self.env.runner.run(&CommandRequest {
                argv: &argv,
                cwd: &service.source,
                env: &env,
                timeout: self.manifest.deploy.build_timeout,
            })?;
            if !result.success() {
                return Err(format!(
                    "build command {:?} {}: {}",
                    argv,
                    describe_exit(&result),
                    tail(&result.stderr, 400)
                ));
            }
            detail.push(format!(
                "built with {:?}",
                argv.first().cloned().unwrap_or_default()
            ));
        }
        let mut artifact = None;
        if let Some(spec) = &service.artifact {
            let from = service.source.join(&spec.path);
            let to = dir.join(&spec.path);
            if !from.exists() {
                return Err(format!(
                    "artifact {} does not exist after the build",
                    from.display()
                ));
            }
            copy_tree(&from, &to)
                .map_err(|e| format!("cannot copy {} to {}: {e}", from.display(), to.display()))?;
            let meta = std::fs::metadata(&to).map_err(|e| format!("{}: {e}", to.display()))?;
            let bytes = if meta.is_dir() {
                dir_size(&to)
            } else {
                meta.len()
            };
            if spec.min_bytes.is_some_and(|min| bytes < min) {
                return Err(format!(
                    "artifact {} is {bytes} bytes, below min_bytes {}",
                    spec.path.display(),
                    spec.min_bytes.unwrap_or_default()
                ));
            }
            if spec.max_bytes.is_some_and(|max| bytes > max) {
                return Err(format!(
                    "artifact {} is {bytes} bytes, above max_bytes {}",
                    spec.path.display(),
                    spec.max_bytes.unwrap_or_default()
                ));
            }
            if spec.executable {
                use std::os::unix::fs::PermissionsExt;
                if !meta.is_file() || meta.permissions().mode() & 0o111 == 0 {
                    return Err(format!(
                        "artifact {} is not an executable file",
                        spec.path.display()
                    ));
                }
            }
            detail.push(format!("artifact {} ({bytes} bytes)", spec.path.display()));
            artifact = Some((spec.path.clone(), bytes));
        }
        self.layout
            .link_shared(id, &self.manifest.layout.shared)
            .map_err(|e| e.to_string())?;
        self.layout
            .write_record(&ReleaseRecord {
                id: id.to_owned(),
                service: service.name.clone(),
                commit: commit.map(str::to_owned),
                created: self.now(),
                start: service.start.clone(),
                env: service.env.clone(),
                set_env: self.set_env.clone(),
                secrets: service.secrets.clone(),
                artifact,
            })
            .map_err(|e| e.to_string())?;
        detail.push(format!("staged {}", dir.display()));
        Ok(detail.join("; "))
    }

    /// The values of the placeholders for release `id` (in `slot`, which gives `{port}`).
    fn placeholders(&self, id: &str, slot: Option<Slot>) -> template::Placeholders {
        template::Placeholders {
            release: Some(self.layout.release_dir(id).to_string_lossy().into_owned()),
            release_id: Some(id.to_owned()),
            port: slot.map(|s| self.port(s)),
            host: Some(self.manifest.service.host.to_string()),
            root: Some(self.layout.root().to_string_lossy().into_owned()),
            shared: Some(self.layout.shared_dir().to_string_lossy().into_owned()),
        }
    }

    /// The service spec that runs `record` in `slot`: its start argv and environment (the
    /// recorded `env`, then its `--set-env` extras) with every placeholder filled.
    ///
    /// # Errors
    /// A placeholder the record uses that is unknown (a record written by an older cutover).
    pub fn spec_for(&self, record: &ReleaseRecord, slot: Slot) -> Result<ServiceSpec, String> {
        let values = self.placeholders(&record.id, Some(slot));
        let fill = |what: &str, a: &String| {
            template::fill(a, &values).map_err(|e| format!("release {} {what}: {e}", record.id))
        };
        let argv = record
            .start
            .iter()
            .map(|a| fill("start", a))
            .collect::<Result<Vec<_>, _>>()?;
        let mut spec = ServiceSpec::new(slot.service_name(&self.manifest.service.name), argv);
        for (k, v) in record.env.iter().chain(&record.set_env) {
            spec.environment.insert(k.clone(), fill(k, v)?);
        }
        let port = self.port(slot).to_string();
        spec.environment
            .insert("CUTOVER_RELEASE".into(), record.id.clone());
        spec.environment.insert("CUTOVER_PORT".into(), port);
        spec.secrets = record.secrets.clone();
        spec.working_directory = Some(self.layout.release_dir(&record.id));
        self.manifest.process.apply_to(&mut spec);
        Ok(spec)
    }

    /// Starts `id` in `slot` unless it already answers ready there as itself.
    fn ensure_running(&self, id: &str, slot: Slot, quick: bool) -> Result<(), String> {
        let target = self.target(id, slot);
        if quick
            && self
                .env
                .health
                .wait_ready(&target, Duration::from_millis(1500))
                .is_ok()
        {
            return Ok(());
        }
        let record = self.layout.read_record(id).map_err(|e| e.to_string())?;
        let spec = self.spec_for(&record, slot)?;
        self.env
            .procs
            .stop(&spec.name, None)
            .map_err(|e| format!("cannot stop {}: {e}", spec.name))?;
        self.env
            .procs
            .start(&spec)
            .map_err(|e| format!("cannot start {}: {e}", spec.name))?;
        self.wait_ready_watching(&spec.name, &target, self.manifest.deploy.ready_timeout)
            .map_err(|e| format!("{id} did not become ready on {}: {e}", target.base_url))
    }

    /// Waits for readiness in short slices and asks the process manager between them, so
    /// that a release which exits (cannot start, crashes) fails at once rather than after
    /// the whole `ready_timeout`. The loop is bounded by the number of slices, so a health
    /// check that answers early (a fake) cannot make it spin.
    fn wait_ready_watching(
        &self,
        service: &str,
        target: &Target,
        budget: Duration,
    ) -> Result<(), String> {
        let deadline = Instant::now() + budget;
        let slices = budget.as_millis().div_ceil(READY_SLICE.as_millis()).max(1);
        let mut last = String::from("not ready");
        for _ in 0..slices {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.env.health.wait_ready(target, left.min(READY_SLICE)) {
                Ok(()) => return Ok(()),
                Err(e) => last = e,
            }
            if let Ok(status) = self.env.procs.status(service) {
                use process_control::ServiceState as S;
                if matches!(status.state, S::Failed | S::Stopped | S::CrashLooping) {
                    // The manager's message often names the exit already.
                    let exit = status
                        .last_exit
                        .as_ref()
                        .filter(|x| {
                            !status
                                .message
                                .as_ref()
                                .is_some_and(|m| m.contains(&x.description))
                        })
                        .map(|x| format!(" ({})", x.description))
                        .unwrap_or_default();
                    let message = status
                        .message
                        .as_ref()
                        .map(|m| format!(": {m}"))
                        .unwrap_or_default();
                    return Err(format!(
                        "{service} is {} before it became ready{exit}{message} (last probe: {last})",
                        status.state
                    ));
                }
            }
            if Instant::now() >= deadline {
                break;
            }
        }
        Err(last)
    }

    fn switch_to(
        &self,
        id: &str,
        to_slot: Slot,
        from_slot: Option<Slot>,
    ) -> Result<String, String> {
        match self.strategy() {
            StrategyKind::Restart => {
                self.layout.set_current(id).map_err(|e| e.to_string())?;
                self.ensure_running(id, to_slot, false)?;
                Ok(format!(
                    "restarted {} on port {}",
                    to_slot.service_name(&self.manifest.service.name),
                    self.port(to_slot)
                ))
            }
            StrategyKind::BlueGreen => {
                let warm = self.warm_standby(id, to_slot);
                if !warm {
                    // Whatever waited in that slot is stopped now: forget it first, so that
                    // the state never names a standby that is not there.
                    self.clear_standby().map_err(|e| e.to_string())?;
                    self.ensure_running(id, to_slot, false)?;
                }
                let upstream = self.addr(to_slot);
                if self.env.traffic.is_running() {
                    self.env.traffic.switch(upstream, self.release_check(id))?;
                } else {
                    self.env.traffic.start(upstream)?;
                }
                self.layout.set_current(id).map_err(|e| e.to_string())?;
                Ok(format!(
                    "{id} {} in slot {to_slot}; traffic moved to {upstream}{}",
                    if warm {
                        "was the warm standby, healthy"
                    } else {
                        "ready"
                    },
                    from_slot
                        .map(|s| format!(" from slot {s}"))
                        .unwrap_or_default()
                ))
            }
        }
    }

    fn release_check<'a>(&self, id: &'a str) -> Option<&'a str> {
        self.manifest.deploy.verify_release.then_some(id)
    }

    fn keeps_standby(&self) -> bool {
        self.strategy() == StrategyKind::BlueGreen && self.manifest.deploy.keep_standby
    }

    /// Whether `id` already runs warm in `slot` as the recorded standby: the process manager
    /// says it runs and it answers ready as itself at once. Then a rollback needs no start.
    fn warm_standby(&self, id: &str, slot: Slot) -> bool {
        let Ok(state) = self.layout.load_state() else {
            return false;
        };
        if !self.keeps_standby()
            || state.standby.as_deref() != Some(id)
            || state.slot.map(Slot::other) != Some(slot)
        {
            return false;
        }
        let name = slot.service_name(&self.manifest.service.name);
        let running = self
            .env
            .procs
            .status(&name)
            .is_ok_and(|s| s.state == process_control::ServiceState::Running);
        let ready = running
            && self
                .env
                .health
                .wait_ready(&self.target(id, slot), STANDBY_PROBE_BUDGET)
                .is_ok();
        if !ready {
            tracing::info!(release = id, %slot, running, "the standby is not healthy: starting it cold");
        }
        ready
    }

    fn clear_standby(&self) -> Result<(), DeployError> {
        let mut state = self.layout.load_state()?;
        if state.standby.take().is_some() {
            self.layout.save_state(&state)?;
        }
        Ok(())
    }

    fn commit(
        &self,
        id: &str,
        to_slot: Slot,
        from_slot: Option<Slot>,
        previous: Option<&str>,
    ) -> Result<String, DeployError> {
        let mut state = self.layout.load_state()?;
        state.mark_good(id);
        state.slot = Some(to_slot);
        let old_slot = from_slot.filter(|s| *s != to_slot);
        // The previous release stays warm in its slot when it still runs there.
        state.standby = match (old_slot, previous) {
            (Some(old), Some(previous)) if self.keeps_standby() && previous != id => self
                .env
                .procs
                .status(&old.service_name(&self.manifest.service.name))
                .ok()
                .filter(|s| s.state == process_control::ServiceState::Running)
                .map(|_| previous.to_owned()),
            _ => None,
        };
        self.layout.save_state(&state)?;
        let mut detail = vec![format!("{id} recorded as good")];
        if let Some(standby) = &state.standby {
            detail.push(format!(
                "{standby} kept warm in slot {} as the standby",
                old_slot.map(|s| s.to_string()).unwrap_or_default()
            ));
        } else if let Some(old) = old_slot {
            std::thread::sleep(self.manifest.deploy.drain);
            let name = old.service_name(&self.manifest.service.name);
            match self.env.procs.stop(&name, None) {
                Ok(_) => detail.push(format!("stopped {name}")),
                Err(e) => {
                    tracing::warn!(%e, "stopping the old release failed");
                    detail.push(format!("could not stop {name}: {e}"));
                }
            }
        }
        let pruned = self.prune(&state, id)?;
        if !pruned.is_empty() {
            detail.push(format!("pruned {}", pruned.join(", ")));
        }
        Ok(detail.join("; "))
    }

    /// Releases a commit of `keep` would remove: oldest first beyond `keep_releases`, never
    /// the current, the last good or the one in flight; incomplete ones always.
    fn prune_candidates(
        &self,
        state: &DeployState,
        current: &str,
    ) -> Result<Vec<String>, DeployError> {
        let all = self.layout.list_releases()?;
        let last_good = state.last_good_before(Some(current)).map(str::to_owned);
        let keep_protected = |id: &String| {
            id == current || Some(id) == last_good.as_ref() || Some(id) == state.standby.as_ref()
        };
        let mut out: Vec<String> = all
            .iter()
            .filter(|id| !keep_protected(id) && !self.layout.is_complete(id))
            .cloned()
            .collect();
        let complete: Vec<&String> = all
            .iter()
            .filter(|id| self.layout.is_complete(id))
            .collect();
        let mut excess = complete
            .len()
            .saturating_sub(self.manifest.layout.keep_releases);
        for id in complete {
            if excess == 0 {
                break;
            }
            if !keep_protected(id) {
                out.push(id.clone());
                excess -= 1;
            }
        }
        Ok(out)
    }

    fn prune(&self, state: &DeployState, current: &str) -> Result<Vec<String>, DeployError> {
        let victims = self.prune_candidates(state, current)?;
        for id in &victims {
            self.layout.remove_release(id)?;
        }
        if !victims.is_empty() {
            let mut state = self.layout.load_state()?;
            state.good.retain(|g| !victims.contains(g));
            state.failed.retain(|g| !victims.contains(g));
            self.layout.save_state(&state)?;
        }
        Ok(victims)
    }

    /// Puts `previous` back live (idempotent, so that recovery can run it again), stops the
    /// failed release, and validates `previous`. Ok holds what was done; Err what failed.
    fn roll_back(
        &self,
        op: Operation,
        failed: &str,
        previous: Option<&str>,
        from_slot: Option<Slot>,
        to_slot: Slot,
        backup: Option<&Path>,
    ) -> Result<String, String> {
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
            return Ok(format!(
                "no earlier release: stopped {svc}, nothing is deployed"
            ));
        };
        if let (true, Some(archive)) = (self.manifest.deploy.restore_shared_on_rollback, backup) {
            self.restore_shared(archive)?;
            done.push(format!("restored shared data from {}", archive.display()));
        }
        let from = from_slot.unwrap_or(to_slot);
        match self.strategy() {
            StrategyKind::Restart => {
                self.layout
                    .set_current(previous)
                    .map_err(|e| e.to_string())?;
                self.ensure_running(previous, from, true)?;
                done.push(format!("{previous} running again"));
            }
            StrategyKind::BlueGreen => {
                self.ensure_running(previous, from, true)?;
                let upstream = self.addr(from);
                if self.env.traffic.is_running() {
                    if self.env.traffic.current()? != Some(upstream) {
                        self.env
                            .traffic
                            .switch(upstream, self.release_check(previous))?;
                        done.push(format!("traffic back on {upstream}"));
                    }
                } else {
                    self.env.traffic.start(upstream)?;
                    done.push(format!("proxy started on {upstream}"));
                }
                self.layout
                    .set_current(previous)
                    .map_err(|e| e.to_string())?;
                if to_slot != from {
                    let svc = to_slot.service_name(name);
                    self.clear_standby().map_err(|e| e.to_string())?;
                    self.env
                        .procs
                        .stop(&svc, None)
                        .map_err(|e| format!("cannot stop {svc}: {e}"))?;
                    done.push(format!("stopped {svc}"));
                }
            }
        }
        self.env
            .health
            .validate(
                &self.target(previous, from),
                self.manifest.deploy.validate_timeout,
            )
            .map_err(|e| format!("{previous} is back but fails validation: {e}"))?;
        let mut state = self.layout.load_state().map_err(|e| e.to_string())?;
        state.slot = Some(from);
        // The other slot was stopped above (or is the same slot): nothing waits there.
        state.standby = None;
        self.layout.save_state(&state).map_err(|e| e.to_string())?;
        self.forget_failed(op, failed)?;
        done.push(format!("{previous} validated"));
        Ok(done.join("; "))
    }

    fn forget_failed(&self, op: Operation, failed: &str) -> Result<(), String> {
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

    fn restore_shared(&self, archive: &Path) -> Result<(), String> {
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
                action: "nothing deployed".to_owned(),
                live: self.describe_live(),
                healthy: false,
            });
        };
        let slot = state.slot.unwrap_or(match self.strategy() {
            StrategyKind::Restart => Slot::Single,
            StrategyKind::BlueGreen => Slot::Blue,
        });
        let target = self.target(&current, slot);
        if self
            .env
            .health
            .wait_ready(&target, Duration::from_secs(2))
            .is_ok()
            && self.traffic_on(slot)
        {
            return Ok(RecoverReport {
                was_consistent: true,
                action: "consistent: nothing to do".to_owned(),
                live: self.describe_live(),
                healthy: true,
            });
        }
        let result = self.ensure_running(&current, slot, false).and_then(|()| {
            if self.strategy() == StrategyKind::BlueGreen {
                self.ensure_traffic(slot, &current)
            } else {
                Ok(())
            }
        });
        Ok(RecoverReport {
            was_consistent: false,
            action: match &result {
                Ok(()) => format!("restarted {current} in slot {slot}"),
                Err(e) => format!("could not bring {current} back: {e}"),
            },
            live: self.describe_live(),
            healthy: result.is_ok(),
        })
    }

    fn traffic_on(&self, slot: Slot) -> bool {
        self.strategy() == StrategyKind::Restart
            || (self.env.traffic.is_running()
                && self.env.traffic.current().ok().flatten() == Some(self.addr(slot)))
    }

    fn ensure_traffic(&self, slot: Slot, release: &str) -> Result<(), String> {
        let upstream = self.addr(slot);
        if !self.env.traffic.is_running() {
            self.env.traffic.start(upstream)
        } else if self.env.traffic.current()? != Some(upstream) {
            self.env
                .traffic
                .switch(upstream, self.release_check(release))
        } else {
            Ok(())
        }
    }

    fn recover_locked(&self) -> Result<Option<RecoverReport>, DeployError> {
        let Some(i) = self.journal.interrupted()? else {
            return Ok(None);
        };
        let started = Instant::now();
        let at = self.now();
        tracing::warn!(release = %i.release, op = i.op.as_str(), commit_started = i.commit_started, "recovering an interrupted operation");
        let result = if i.commit_started && self.layout.is_complete(&i.release) {
            self.ensure_running(&i.release, i.to_slot, true)
                .and_then(|()| {
                    if self.strategy() == StrategyKind::BlueGreen {
                        self.ensure_traffic(i.to_slot, &i.release)
                    } else {
                        Ok(())
                    }
                })
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
            self.roll_back(
                i.op,
                &i.release,
                i.previous.as_deref(),
                i.from_slot,
                i.to_slot,
                i.backup.as_deref(),
            )
            .map(|d| match &i.previous {
                Some(p) => format!("rolled back to {p} ({d})"),
                None => format!("undid the first deploy of {} ({d})", i.release),
            })
        };
        let healthy = result.is_ok();
        let action = result.unwrap_or_else(|e| format!("recovery of {} failed: {e}", i.release));
        self.journal(JournalEntry::End {
            at: self.now(),
            outcome: if healthy {
                "recovered"
            } else {
                "recovery-failed"
            }
            .to_owned(),
        })?;
        audit::append(
            &self.layout.audit_file(),
            &AuditRecord {
                at,
                user: user_name(),
                host: hostname(),
                operation: "recover".to_owned(),
                service: self.manifest.service.name.clone(),
                release: Some(i.release.clone()),
                previous: i.previous.clone(),
                commit: None,
                strategy: self.strategy().as_str().to_owned(),
                phases: vec![PhaseRecord {
                    phase: "recover".to_owned(),
                    outcome: if healthy { "ok" } else { "failed" }.to_owned(),
                    duration_ms: millis(started.elapsed()),
                    detail: Some(action.clone()),
                }],
                outcome: if healthy {
                    "recovered"
                } else {
                    "recovery-failed"
                }
                .to_owned(),
                reason: (!healthy).then(|| action.clone()),
                duration_ms: millis(started.elapsed()),
            },
        )?;
        Ok(Some(RecoverReport {
            was_consistent: false,
            action,
            live: self.describe_live(),
            healthy,
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

    /// One sentence on what is live: `current`, the proxy upstream and each slot's process.
    pub fn describe_live(&self) -> String {
        let current = self.layout.current().unwrap_or_else(|| "(none)".to_owned());
        let mut parts = vec![format!("current -> {current}")];
        if self.strategy() == StrategyKind::BlueGreen {
            parts.push(match self.env.traffic.current() {
                Ok(Some(a)) if self.env.traffic.is_running() => format!("proxy upstream {a}"),
                Ok(_) => "proxy not running".to_owned(),
                Err(e) => format!("proxy state unknown ({e})"),
            });
        }
        for (slot, state) in self.slot_states() {
            parts.push(format!("{slot}: {state}"));
        }
        parts.join("; ")
    }

    fn slots(&self) -> Vec<Slot> {
        match self.strategy() {
            StrategyKind::Restart => vec![Slot::Single],
            StrategyKind::BlueGreen => vec![Slot::Blue, Slot::Green],
        }
    }

    fn slot_states(&self) -> BTreeMap<String, String> {
        self.slots()
            .into_iter()
            .map(|slot| {
                let name = slot.service_name(&self.manifest.service.name);
                let state = match self.env.procs.status(&name) {
                    Ok(s) => match s.pid {
                        Some(pid) => format!("{} (pid {pid}, port {})", s.state, self.port(slot)),
                        None => s.state.to_string(),
                    },
                    Err(e) => format!("unknown ({e})"),
                };
                (name, state)
            })
            .collect()
    }

    /// The state of the deployment (no lock taken; nothing changed).
    ///
    /// # Errors
    /// [`DeployError::Corrupt`] when a state file cannot be read.
    pub fn status(&self) -> Result<StatusReport, DeployError> {
        let state = self.layout.load_state()?;
        let current = self.current();
        let slot = current.as_ref().and(state.slot);
        let (healthy, health_reason, slot_url) = match (&current, slot) {
            (Some(id), Some(slot)) => {
                let target = self.target(id, slot);
                let r = self.env.health.wait_ready(&target, Duration::from_secs(2));
                (r.is_ok(), r.err(), Some(target.base_url))
            }
            _ => (false, Some("nothing deployed".to_owned()), None),
        };
        let url = slot_url.as_ref().map(|slot_url| {
            self.manifest
                .deployment()
                .public_url()
                .unwrap_or_else(|| slot_url.clone())
        });
        let name = self.manifest.service.name.clone();
        let service = match slot.filter(|_| current.is_some()) {
            None => ServiceProcess {
                name,
                unit: None,
                state: "not-deployed".to_owned(),
                pid: None,
            },
            Some(slot) => {
                let unit = slot.service_name(&name);
                let (state, pid) = match self.env.procs.status(&unit) {
                    Ok(s) => (s.state.as_str().to_owned(), s.pid),
                    Err(_) => ("unknown".to_owned(), None),
                };
                ServiceProcess {
                    name,
                    unit: Some(unit),
                    state,
                    pid,
                }
            }
        };
        let lock = self.layout.lock_file();
        Ok(StatusReport {
            service_name: self.manifest.service.name.clone(),
            root: self.layout.root().to_path_buf(),
            strategy: self.strategy(),
            rollback_target: state
                .last_good_before(current.as_deref())
                .map(str::to_owned),
            standby: self.standby_info(&state),
            release: current.clone(),
            current,
            slot,
            url,
            slot_url,
            service,
            healthy,
            health_reason,
            upstream: self
                .env
                .traffic
                .current()
                .ok()
                .flatten()
                .filter(|_| self.env.traffic.is_running()),
            services: self.slot_states(),
            interrupted: self.journal.interrupted()?,
            lock_holder: DeployLock::is_held(&lock).then(|| {
                DeployLock::owner(&lock)
                    .map(|o| o.describe())
                    .unwrap_or_default()
            }),
            last_outcome: audit::read(&self.layout.audit_file())?.last().map(|r| {
                format!(
                    "{} {} {}",
                    r.operation,
                    r.release.clone().unwrap_or_default(),
                    r.outcome
                )
            }),
        })
    }

    fn standby_info(&self, state: &DeployState) -> Option<StandbyInfo> {
        let release = state.standby.clone()?;
        let slot = state.slot?.other();
        let name = slot.service_name(&self.manifest.service.name);
        let (process, rss_bytes) = match self.env.procs.status(&name) {
            Ok(s) => (
                match s.pid {
                    Some(pid) => format!("{} (pid {pid}, port {})", s.state, self.port(slot)),
                    None => s.state.to_string(),
                },
                s.rss_bytes,
            ),
            Err(e) => (format!("unknown ({e})"), None),
        };
        Some(StandbyInfo {
            release,
            slot,
            process,
            rss_bytes,
        })
    }

    /// Every release on disk, oldest first.
    ///
    /// # Errors
    /// [`DeployError::Io`] when the releases directory cannot be listed.
    pub fn releases(&self) -> Result<Vec<ReleaseInfo>, DeployError> {
        let state = self.layout.load_state()?;
        let current = self.layout.current();
        Ok(self
            .layout
            .list_releases()?
            .into_iter()
            .map(|id| {
                let record = self.layout.read_record(&id).ok();
                let is_current = current.as_deref() == Some(id.as_str());
                let state = if record.is_none() {
                    "incomplete"
                } else if is_current {
                    "current"
                } else if state.good.contains(&id) {
                    "good"
                } else if state.failed.contains(&id) {
                    "failed"
                } else {
                    "staged"
                };
                ReleaseInfo {
                    state: state.to_owned(),
                    current: is_current,
                    commit: record.as_ref().and_then(|r| r.commit.clone()),
                    created: record.map(|r| r.created),
                    id,
                }
            })
            .collect())
    }

    /// What a deploy would do now. Resolves no secret, takes no lock, changes nothing.
    ///
    /// # Errors
    /// As [`Self::status`].
    pub fn plan(&self) -> Result<Plan, DeployError> {
        let state = self.layout.load_state()?;
        let previous = self.current();
        let commit = self.source_commit();
        let id = self.new_release_id(commit.as_deref());
        let from_slot = previous.as_ref().map(|_| state.slot.unwrap_or(Slot::Blue));
        let slot = match self.strategy() {
            StrategyKind::Restart => Slot::Single,
            StrategyKind::BlueGreen => from_slot.map_or(Slot::Blue, Slot::other),
        };
        let s = &self.manifest.service;
        let record = ReleaseRecord {
            id: id.clone(),
            service: s.name.clone(),
            commit: commit.clone(),
            created: String::new(),
            start: s.start.clone(),
            env: s.env.clone(),
            secrets: s.secrets.clone(),
            artifact: None,
            set_env: self.set_env.clone(),
        };
        let spec = self
            .spec_for(&record, slot)
            .map_err(|reason| DeployError::Release {
                id: id.clone(),
                reason,
            })?;
        let d = &self.manifest.deploy;
        let mut phases = Vec::new();
        let mut add = |phase: Phase, action: String| {
            let hooks = [true, false]
                .into_iter()
                .filter_map(|before| {
                    self.manifest.hooks.for_phase(phase, before).map(|argv| {
                        format!("{} {:?}", if before { "before" } else { "after" }, argv)
                    })
                })
                .collect();
            phases.push(PlannedPhase {
                phase,
                action,
                hooks,
            });
        };
        add(
            Phase::Preflight,
            match (&self.manifest.preflight, d.preflight) {
                (Some(p), true) => format!(
                    "{} configured checks (the default set when none)",
                    p.check.len()
                ),
                _ => "skipped (no [preflight] table or deploy.preflight = false)".to_owned(),
            },
        );
        add(
            Phase::Backup,
            if d.backup {
                let (sources, dest) = self.backup_target();
                format!(
                    "archive {} to {}",
                    sources
                        .iter()
                        .map(|p| p.display().to_string())
                        .collect::<Vec<_>>()
                        .join(", "),
                    dest.display()
                )
            } else {
                "skipped (deploy.backup = false)".to_owned()
            },
        );
        add(
            Phase::Build,
            format!(
                "{} in {}; stage {}{}",
                if s.build.is_empty() {
                    "no build command".to_owned()
                } else {
                    format!("run {:?}", s.build)
                },
                s.source.display(),
                self.layout.release_dir(&id).display(),
                s.artifact
                    .as_ref()
                    .map(|a| format!("; check artifact {}", a.path.display()))
                    .unwrap_or_default()
            ),
        );
        add(
            Phase::Switch,
            match self.strategy() {
                StrategyKind::Restart => format!(
                    "stop {0}, point current at {id}, start {0} on port {1}, wait until ready",
                    spec.name,
                    self.port(slot)
                ),
                StrategyKind::BlueGreen => format!(
                    "start {} on port {}, wait until ready, {} nginx upstream to {}, point current at {id}",
                    spec.name,
                    self.port(slot),
                    if self.env.traffic.is_running() {
                        "switch"
                    } else {
                        "start nginx with"
                    },
                    self.addr(slot)
                ),
            },
        );
        add(
            Phase::Validate,
            format!(
                "suite {:?} against {}",
                d.validate_suite,
                self.target(&id, slot).base_url
            ),
        );
        if d.perf_gate {
            add(
                Phase::Perf,
                "load the new release and compare with the baseline".to_owned(),
            );
        }
        add(
            Phase::Commit,
            format!(
                "record {id} as good{}; keep {} releases",
                from_slot
                    .filter(|f| *f != slot)
                    .map(|f| if self.keeps_standby() {
                        format!(
                            ", keep {} running as the warm standby",
                            f.service_name(&s.name)
                        )
                    } else {
                        format!(", drain and stop {}", f.service_name(&s.name))
                    })
                    .unwrap_or_default(),
                self.manifest.layout.keep_releases
            ),
        );
        let mut prune = self.prune_candidates(&state, previous.as_deref().unwrap_or(""))?;
        let complete = self
            .layout
            .list_releases()?
            .into_iter()
            .filter(|r| self.layout.is_complete(r))
            .count();
        if complete < self.manifest.layout.keep_releases {
            prune.retain(|r| !self.layout.is_complete(r));
        }
        Ok(Plan {
            service: s.name.clone(),
            root: self.layout.root().to_path_buf(),
            strategy: self.strategy(),
            release: id,
            commit,
            previous,
            slot,
            port: self.port(slot),
            start: spec.argv.clone(),
            env: spec.environment.keys().cloned().collect(),
            secrets: s.secrets.keys().cloned().collect(),
            phases,
            prune,
            interrupted: self.journal.interrupted()?,
        })
    }

    fn source_commit(&self) -> Option<String> {
        let argv: Vec<String> = ["git", "rev-parse", "--short=7", "HEAD"]
            .map(String::from)
            .to_vec();
        let result = self
            .env
            .runner
            .run(&CommandRequest {
                argv: &argv,
                cwd: &self.manifest.service.source,
                env: &[],
                timeout: Duration::from_secs(10),
            })
            .ok()?;
        let commit = result.stdout.trim().to_owned();
        (result.success() && !commit.is_empty()).then_some(commit)
    }

    fn new_release_id(&self, commit: Option<&str>) -> String {
        let base = release_id(self.env.clock.now(), commit);
        let mut id = base.clone();
        let mut n = 2;
        while self.layout.release_dir(&id).exists() {
            id = format!("{base}-{n}");
            n += 1;
        }
        id
    }

    fn hook_env(
        &self,
        phase: &str,
        hook: &str,
        id: &str,
        previous: Option<&str>,
    ) -> Vec<(String, String)> {
        vec![
            ("CUTOVER_PHASE".into(), phase.to_owned()),
            ("CUTOVER_HOOK".into(), hook.to_owned()),
            ("CUTOVER_RELEASE".into(), id.to_owned()),
            (
                "CUTOVER_PREVIOUS_RELEASE".into(),
                previous.unwrap_or("").to_owned(),
            ),
            (
                "CUTOVER_RELEASE_DIR".into(),
                self.layout.release_dir(id).to_string_lossy().into_owned(),
            ),
            (
                "CUTOVER_ROOT".into(),
                self.layout.root().to_string_lossy().into_owned(),
            ),
            ("CUTOVER_SERVICE".into(), self.manifest.service.name.clone()),
            (
                "CUTOVER_STRATEGY".into(),
                self.strategy().as_str().to_owned(),
            ),
        ]
    }

    fn run_hook(
        &self,
        phase: Phase,
        before: bool,
        id: &str,
        previous: Option<&str>,
    ) -> Result<(), String> {
        let Some(argv) = self.manifest.hooks.for_phase(phase, before) else {
            return Ok(());
        };
        let which = if before { "before" } else { "after" };
        let env = self.hook_env(phase.as_str(), which, id, previous);
        let result = self.env.runner.run(&CommandRequest {
            argv,
            cwd: &self.manifest.dir,
            env: &env,
            timeout: self.manifest.hooks.timeout(),
        })?;
        if result.success() {
            Ok(())
        } else {
            Err(format!(
                "{which}_{phase} hook {:?} {}: {}",
                argv,
                describe_exit(&result),
                tail(&result.stderr, 400)
            ))
        }
    }

    fn run_hook_on_failure(&self, id: &str, previous: Option<&str>, reason: &str) {
        if self.manifest.hooks.on_failure.is_empty() {
            return;
        }
        let mut env = self.hook_env("failure", "failure", id, previous);
        env.push(("CUTOVER_ERROR".into(), reason.to_owned()));
        match self.env.runner.run(&CommandRequest {
            argv: &self.manifest.hooks.on_failure,
            cwd: &self.manifest.dir,
            env: &env,
            timeout: self.manifest.hooks.timeout(),
        }) {
            Ok(r) if r.success() => {}
            Ok(r) => tracing::warn!(exit = %describe_exit(&r), "on_failure hook failed"),
            Err(e) => tracing::warn!(%e, "on_failure hook could not run"),
        }
    }
}

/// The readiness wait's slice: how often the process manager is asked whether the starting
/// release still runs.
const READY_SLICE: Duration = Duration::from_millis(300);

/// How long a rollback waits for the standby to answer ready before it starts it cold.
const STANDBY_PROBE_BUDGET: Duration = Duration::from_secs(1);

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

fn describe_exit(r: &crate::env::CommandResult) -> String {
    match (r.code, r.timed_out) {
        (_, true) => "timed out".to_owned(),
        (Some(c), _) => format!("exited with {c}"),
        (None, _) => "was killed by a signal".to_owned(),
    }
}

fn tail(s: &str, n: usize) -> String {
    let s = s.trim();
    let start = s.len().saturating_sub(n);
    let start = (start..s.len())
        .find(|i| s.is_char_boundary(*i))
        .unwrap_or(s.len());
    s[start..].to_owned()
}

fn copy_tree(from: &Path, to: &Path) -> std::io::Result<()> {
    if let Some(parent) = to.parent() {
        std::fs::create_dir_all(parent)?;
    }
    let meta = std::fs::symlink_metadata(from)?;
    if meta.is_dir() {
        std::fs::create_dir_all(to)?;
        for entry in std::fs::read_dir(from)? {
            let entry = entry?;
            copy_tree(&entry.path(), &to.join(entry.file_name()))?;
        }
        Ok(())
    } else if meta.file_type().is_symlink() {
        std::os::unix::fs::symlink(std::fs::read_link(from)?, to)
    } else {
        std::fs::copy(from, to).map(drop)
    }
}

fn dir_size(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .map(|e| match e.metadata() {
                    Ok(m) if m.is_dir() => dir_size(&e.path()),
                    Ok(m) => m.len(),
                    Err(_) => 0,
                })
                .sum()
        })
        .unwrap_or(0)
}
