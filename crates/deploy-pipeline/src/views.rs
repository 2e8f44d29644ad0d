//! The read-only views: `status`, `releases`, `plan`, and what is live in one sentence.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use process_control::ProcessManager;
use serde::Serialize;

use crate::DeployError;
use crate::audit::{self};
use crate::journal::Interrupted;
use crate::journal::Operation;
use crate::layout::{DeployState, ReleaseRecord, release_id};
use crate::lock::DeployLock;
use crate::manifest::StrategyKind;
use crate::operation::Deployer;
use crate::phase::{Phase, Slot};
use crate::phases::{Course, steps};

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
    /// Canary: the running or last canary's step, weights and the judge's latest evidence.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub canary: Option<live_deployment::CanaryProgress>,
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
    /// Canary: the canary's share of traffic at each step, in percent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub canary_steps: Option<Vec<u8>>,
}

impl Deployer {
    /// One sentence on what is live: `current`, the proxy upstream and each slot's process.
    pub fn describe_live(&self) -> String {
        let current = self.layout.current().unwrap_or_else(|| "(none)".to_owned());
        let mut parts = vec![format!("current -> {current}")];
        if self.strategy().kind().uses_slots() {
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

    pub(crate) fn slots(&self) -> Vec<Slot> {
        self.strategy().slots().to_vec()
    }

    pub(crate) fn slot_states(&self) -> BTreeMap<String, String> {
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
                let r = self
                    .env
                    .health
                    .wait_ready(&target, Duration::from_secs(2))
                    .and_then(|()| self.users_reach(slot));
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
            strategy: self.strategy().kind(),
            rollback_target: state
                .last_good_before(current.as_deref())
                .map(str::to_owned),
            standby: self.standby_info(&state),
            canary: state.canary.clone(),
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

    /// Behind a proxy, the release answering as itself is not enough: users reach it only
    /// when nginx runs and routes to its slot.
    fn users_reach(&self, slot: Slot) -> Result<(), String> {
        if !self.strategy().kind().uses_slots() {
            return Ok(());
        }
        if !self.env.traffic.is_running() {
            return Err(
                "the proxy (nginx) is not running: users reach nothing; `cutover-deploy recover` starts it"
                    .to_owned(),
            );
        }
        // A canary's weighted split reaches both slots by design (status shows its section).
        if self.env.traffic.splitting() {
            return Ok(());
        }
        let live = self.addr(slot);
        let file = self.env.traffic.current().ok().flatten();
        // What nginx serves, asked of nginx; the include file only says what it was told.
        match self.env.traffic.serving() {
            Ok(Some(upstream)) if upstream == live => Ok(()),
            Ok(Some(upstream)) => Err(format!(
                "nginx serves {upstream}{}, but the live slot {slot} is {live}; `cutover-deploy recover` switches it",
                match file {
                    Some(f) if f != upstream =>
                        format!(" (its upstream file names {f}: a switch was interrupted)"),
                    _ => String::new(),
                }
            )),
            Ok(None) => Err("nginx answers without naming an upstream".to_owned()),
            Err(e) => Err(format!("users cannot be served: {e}")),
        }
    }

    pub(crate) fn standby_info(&self, state: &DeployState) -> Option<StandbyInfo> {
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
        let commit = self
            .resolve_source(self.commit_request.as_deref())?
            .short_commit()
            .map(str::to_owned);
        let id = self.new_release_id(commit.as_deref());
        let from_slot = previous.as_ref().map(|_| self.strategy().live_slot(&state));
        let slot = self.strategy().next_slot(from_slot);
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
        let course = Course {
            id: &id,
            previous: previous.as_deref(),
            to: slot,
            from: from_slot,
        };
        for step in steps(self, Operation::Deploy) {
            add(step.phase(), step.describe(self, &course));
        }
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
            strategy: self.strategy().kind(),
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
            canary_steps: (self.strategy().kind() == StrategyKind::Canary)
                .then(|| self.manifest.deploy.canary.steps.clone()),
        })
    }

    pub(crate) fn new_release_id(&self, commit: Option<&str>) -> String {
        let base = release_id(self.env.clock.now(), commit);
        let mut id = base.clone();
        let mut n = 2;
        while self.layout.release_dir(&id).exists() {
            id = format!("{base}-{n}");
            n += 1;
        }
        id
    }
}
