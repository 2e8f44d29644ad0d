//! The rollout: batches, per-host remote deploys, the failure budget, fleet-wide rollback and
//! resume.
//!
//! How the release reaches a host: the fleet ships a *bundle* (a tar of the manifest, without
//! its `[fleet]` table, and of the `[service] source` directory at the same relative path)
//! into the host's `remote_dir`, next to the `cutover-deploy` binary (copied when its sha256
//! differs). The host's own pipeline then builds, stages and switches it exactly as a
//! single-host deploy would, with its own lock, journal and audit log.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::FleetError;
use crate::config::FleetConfig;
use crate::journal::{FleetEvent, FleetJournal, HostStep};
use crate::plan::plan_batches;
use crate::ssh::{CommandOutput, Ssh, run_with_timeout, sh_quote};

/// One host's outcome in a fleet report.
#[derive(Debug, Clone, Serialize)]
pub struct HostReport {
    /// The ssh destination.
    pub host: String,
    /// Its last step (`confirmed`, `failed`, `unreachable`, `unconfirmed`, `rolled-back`, …).
    pub outcome: String,
    /// The release it ran before.
    pub previous: Option<String>,
    /// The release its pipeline deployed, if any.
    pub deployed: Option<String>,
    /// Why, for failures.
    pub detail: Option<String>,
}

/// The result of a fleet deploy.
#[derive(Debug, Clone, Serialize)]
pub struct FleetReport {
    /// The fleet release label (also `CUTOVER_RELEASE` for hooks, `CUTOVER_FLEET_RELEASE` in
    /// each host's release environment).
    pub release: String,
    /// `deployed`, `rolled-back` or `rollback-failed`.
    pub outcome: String,
    /// The batches, in order.
    pub batches: Vec<Vec<String>>,
    /// Each host's outcome, in fleet order.
    pub hosts: Vec<HostReport>,
    /// Failed hosts (unreachable and unconfirmed included).
    pub failures: usize,
    /// Failures tolerated.
    pub max_fail: usize,
    /// Why the rollout stopped, when it did.
    pub reason: Option<String>,
    /// Wall time of the whole fleet deploy.
    pub duration_ms: u64,
    /// Wall time of the fleet-wide rollback, when there was one.
    pub rollback_ms: Option<u64>,
    /// Whether this run resumed an interrupted one.
    pub resumed: bool,
}

impl FleetReport {
    /// 0 deployed; 1 deployed with tolerated failures; 2 stopped and rolled back; 4 a rollback
    /// failed.
    pub fn exit_code(&self) -> i32 {
        match self.outcome.as_str() {
            "deployed" if self.failures == 0 => 0,
            "deployed" => 1,
            "rolled-back" => 2,
            _ => 4,
        }
    }
}

/// What `status --hosts` shows of one host.
#[derive(Debug, Clone, Serialize)]
pub struct HostStatus {
    /// The ssh destination.
    pub host: String,
    /// Whether it could be asked.
    pub reachable: bool,
    /// Its live release.
    pub current: Option<String>,
    /// Whether it answers its ready probes.
    pub healthy: bool,
    /// Why not, when it is not.
    pub detail: Option<String>,
}

/// A fleet rollout, ready to run.
#[derive(Debug)]
pub struct Fleet {
    cfg: FleetConfig,
    ssh: Ssh,
    hosts: Vec<String>,
    service: String,
    local_bin: PathBuf,
    bundle: Vec<u8>,
    bundle_sha: String,
    bin_sha: String,
    bin: Vec<u8>,
    state_dir: PathBuf,
}

struct HostState {
    step: HostStep,
    previous: Option<String>,
    deployed: Option<String>,
    token: Option<String>,
    detail: Option<String>,
}

fn sha256(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

impl Fleet {
    /// Prepares a rollout of the manifest to `hosts`, shipping `local_bin` (normally the
    /// running `cutover-deploy`), with the fleet lock and journal under `state_dir`.
    ///
    /// # Errors
    /// When the manifest's source cannot be bundled or the binary read.
    pub fn new(
        manifest: &manifest_loader::Manifest,
        cfg: FleetConfig,
        hosts: Vec<String>,
        service: &str,
        source: &Path,
        local_bin: PathBuf,
        state_dir: PathBuf,
    ) -> Result<Self, FleetError> {
        let bundle = bundle(manifest, source)?;
        let bin = std::fs::read(&local_bin)
            .map_err(|e| FleetError::Io(format!("cannot read {}: {e}", local_bin.display())))?;
        let ssh = Ssh::new(
            cfg.ssh_options.clone(),
            cfg.ssh_config.clone(),
            cfg.connect_timeout,
        );
        Ok(Self {
            bundle_sha: sha256(&bundle),
            bin_sha: sha256(&bin),
            bin,
            bundle,
            cfg,
            ssh,
            hosts,
            service: service.to_owned(),
            local_bin,
            state_dir,
        })
    }

    /// The fleet journal's path.
    pub fn journal_path(&self) -> PathBuf {
        self.state_dir.join("fleet-journal.jsonl")
    }

    fn dir(&self, host: &str) -> String {
        self.cfg
            .remote_dir
            .replace("{host}", host)
            .replace("{service}", &self.service)
    }

    fn remote_bin(&self, host: &str) -> String {
        format!("{}/bin/cutover-deploy", self.dir(host))
    }

    fn cli(&self, host: &str) -> String {
        format!(
            "{} --manifest {} --json",
            sh_quote(&self.remote_bin(host)),
            sh_quote(&format!("{}/cutover.toml", self.dir(host)))
        )
    }

    fn quick(&self) -> Duration {
        self.cfg.connect_timeout + Duration::from_secs(60)
    }

    /// Connects, copies the binary when its hash differs, ships the bundle.
    fn prepare(&self, host: &str) -> Result<(), (HostStep, String)> {
        self.ssh
            .connect(host)
            .map_err(|e| (HostStep::Unreachable, e))?;
        let dir = sh_quote(&self.dir(host));
        let bin = sh_quote(&self.remote_bin(host));
        let out = self
            .ssh
            .run(
                host,
                &format!("sha256sum {bin} 2>/dev/null || true"),
                None,
                self.quick(),
            )
            .map_err(|e| (HostStep::Unreachable, e))?;
        let remote = String::from_utf8_lossy(&out.stdout);
        if remote.split_whitespace().next() != Some(self.bin_sha.as_str()) {
            tracing::info!(host, "copying {}", self.local_bin.display());
            let script = format!(
                "set -e; mkdir -p {dir}/bin; cat > {bin}.new; chmod 755 {bin}.new; mv -f {bin}.new {bin}; sha256sum {bin}"
            );
            let out = self
                .ssh
                .run(host, &script, Some(&self.bin), self.cfg.command_timeout)
                .map_err(|e| (HostStep::Failed, e))?;
            let got = String::from_utf8_lossy(&out.stdout);
            if !out.success() || got.split_whitespace().next() != Some(self.bin_sha.as_str()) {
                return Err((
                    HostStep::Failed,
                    format!("copying cutover-deploy failed: {}", out.stderr_tail()),
                ));
            }
        }
        let script = format!(
            "set -e; mkdir -p {dir}; cd {dir}; rm -rf .incoming; mkdir .incoming; tar -xf - -C .incoming; \
             for e in .incoming/* ; do n=${{e#.incoming/}}; rm -rf \"$n\"; mv \"$e\" \"$n\"; done; rmdir .incoming"
        );
        let out = self
            .ssh
            .run(host, &script, Some(&self.bundle), self.cfg.command_timeout)
            .map_err(|e| (HostStep::Failed, e))?;
        if !out.success() {
            return Err((
                HostStep::Failed,
                format!("shipping the release bundle failed: {}", out.stderr_tail()),
            ));
        }
        Ok(())
    }

    fn remote_json(
        &self,
        host: &str,
        args: &str,
        timeout: Duration,
    ) -> Result<(CommandOutput, serde_json::Value), String> {
        let out = self
            .ssh
            .run(host, &format!("{} {args}", self.cli(host)), None, timeout)?;
        let json = serde_json::from_slice(&out.stdout).unwrap_or(serde_json::Value::Null);
        Ok((out, json))
    }

    /// One host's live release and health.
    pub fn host_status(&self, host: &str) -> HostStatus {
        let result = self
            .ssh
            .connect(host)
            .and_then(|()| self.remote_json(host, "status", self.quick()));
        match result {
            Ok((out, json)) if json.is_object() => HostStatus {
                host: host.to_owned(),
                reachable: true,
                current: json["current"].as_str().map(str::to_owned),
                healthy: json["healthy"].as_bool().unwrap_or(false),
                detail: json["health_reason"]
                    .as_str()
                    .or(json["error"].as_str())
                    .map(str::to_owned)
                    .or_else(|| {
                        (!out.success() && json["healthy"].is_null()).then(|| out.stderr_tail())
                    }),
            },
            Ok((out, _)) => HostStatus {
                host: host.to_owned(),
                reachable: true,
                current: None,
                healthy: false,
                detail: Some(format!("no status: {}", out.stderr_tail())),
            },
            Err(e) => HostStatus {
                host: host.to_owned(),
                reachable: false,
                current: None,
                healthy: false,
                detail: Some(e),
            },
        }
    }

    /// Every host's status, asked in parallel (bounded by `parallel`).
    pub fn statuses(&self) -> Vec<HostStatus> {
        let mut out = Vec::new();
        for chunk in self.hosts.chunks(self.cfg.parallel) {
            let got: Vec<HostStatus> = std::thread::scope(|s| {
                let handles: Vec<_> = chunk
                    .iter()
                    .map(|h| s.spawn(move || self.host_status(h)))
                    .collect();
                handles.into_iter().filter_map(|h| h.join().ok()).collect()
            });
            out.extend(got);
        }
        out
    }

    fn hook(&self, argv: &[String], host: &str, release: &str) -> Result<(), String> {
        let Some((program, args)) = argv.split_first() else {
            return Ok(());
        };
        let mut cmd = std::process::Command::new(program);
        cmd.args(args)
            .env("CUTOVER_HOST", host)
            .env("CUTOVER_RELEASE", release);
        let out = run_with_timeout(cmd, None, self.cfg.command_timeout)?;
        if out.success() {
            Ok(())
        } else {
            Err(format!(
                "hook {program} failed ({}): {}",
                out.code
                    .map_or("signal".to_owned(), |c| format!("exit {c}")),
                out.stderr_tail()
            ))
        }
    }

    fn marker(&self, host: &str, token: &str, ext: &str) -> String {
        sh_quote(&format!("{}/fleet/{token}.{ext}", self.dir(host)))
    }

    /// Confirms `token` on `host` over a fresh connection.
    fn confirm(&self, host: &str, token: &str) -> Result<(), String> {
        let out = self.ssh.run_fresh(
            host,
            &format!("touch {}", self.marker(host, token, "confirmed")),
            self.quick(),
        )?;
        if out.success() {
            Ok(())
        } else {
            Err(format!(
                "cannot confirm over a fresh connection: {}",
                out.stderr_tail()
            ))
        }
    }

    /// Deploys one host: prepare (connect, binary, bundle), before_host, arm the dead-man's
    /// switch, deploy, confirm over a fresh connection, health gate, after_host.
    fn deploy_host(
        &self,
        host: &str,
        release: &str,
        log: &Mutex<FleetJournal>,
        states: &Mutex<Vec<(String, HostState)>>,
    ) {
        let record = |step: HostStep,
                      previous: Option<String>,
                      deployed: Option<String>,
                      token: Option<String>,
                      detail: Option<String>| {
            let ev = FleetEvent::Host {
                host: host.to_owned(),
                step,
                previous: previous.clone(),
                deployed: deployed.clone(),
                token: token.clone(),
                detail: detail.clone(),
            };
            if let Ok(mut j) = log.lock()
                && let Err(e) = j.append(&ev)
            {
                tracing::error!("{e}");
            }
            if let Ok(mut s) = states.lock() {
                let st = HostState {
                    step,
                    previous,
                    deployed,
                    token,
                    detail,
                };
                match s.iter_mut().find(|(h, _)| h == host) {
                    Some((_, old)) => {
                        let previous = st.previous.or(old.previous.take());
                        let deployed = st.deployed.or(old.deployed.take());
                        *old = HostState {
                            previous,
                            deployed,
                            ..st
                        };
                    }
                    None => s.push((host.to_owned(), st)),
                }
            }
        };
        if let Err((step, e)) = self.prepare(host) {
            record(step, None, None, None, Some(e));
            return;
        }
        let status = self.host_status(host);
        if !status.reachable {
            record(HostStep::Unreachable, None, None, None, status.detail);
            return;
        }
        let previous = status.current;
        // Drained just before its deploy (what was shipped does not touch what serves).
        if let Err(e) = self.hook(&self.cfg.before_host, host, release) {
            record(
                HostStep::Failed,
                previous,
                None,
                None,
                Some(format!("before_host: {e}")),
            );
            return;
        }
        let token = format!("{}-{}", release, std::process::id());
        let dir = self.dir(host);
        let arm = format!(
            "mkdir -p {fleet} && setsid -f {bin} --manifest {m} fleet-watchdog --marker {marker} --switch-timeout {sw}s --confirm-timeout {ct}ms </dev/null >>{fleet}/watchdog.log 2>&1",
            fleet = sh_quote(&format!("{dir}/fleet")),
            bin = sh_quote(&self.remote_bin(host)),
            m = sh_quote(&format!("{dir}/cutover.toml")),
            marker = sh_quote(&format!("{dir}/fleet/{token}")),
            sw = self.cfg.command_timeout.as_secs() + 60,
            ct = self.cfg.confirm_timeout.as_millis(),
        );
        match self.ssh.run(host, &arm, None, self.quick()) {
            Ok(o) if o.success() => {}
            Ok(o) => {
                record(
                    HostStep::Failed,
                    previous,
                    None,
                    None,
                    Some(format!(
                        "cannot arm the dead-man's switch: {}",
                        o.stderr_tail()
                    )),
                );
                return;
            }
            Err(e) => {
                record(HostStep::Unreachable, previous, None, None, Some(e));
                return;
            }
        }
        record(
            HostStep::Started,
            previous.clone(),
            None,
            Some(token.clone()),
            None,
        );
        let deploy = format!(
            "{cli} --lock-wait {lw}s deploy --set-env CUTOVER_FLEET_RELEASE={rel}; rc=$?; if [ $rc -eq 0 ]; then touch {sw}; else touch {done}; fi; exit $rc",
            cli = self.cli(host),
            lw = self.cfg.command_timeout.as_secs(),
            rel = sh_quote(release),
            sw = self.marker(host, &token, "switched"),
            done = self.marker(host, &token, "done"),
        );
        let out = match self.ssh.run(
            host,
            &deploy,
            None,
            self.cfg.command_timeout + Duration::from_secs(30),
        ) {
            Ok(o) => o,
            Err(e) => {
                record(HostStep::Failed, previous, None, Some(token), Some(e));
                return;
            }
        };
        let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
        if !out.success() {
            let reason = json["reason"]
                .as_str()
                .or(json["error"].as_str())
                .map(str::to_owned)
                .unwrap_or_else(|| out.stderr_tail());
            record(
                HostStep::Failed,
                previous,
                None,
                Some(token),
                Some(format!("deploy exit {}: {reason}", out.code.unwrap_or(-1))),
            );
            return;
        }
        let deployed = json["release"].as_str().map(str::to_owned);
        record(
            HostStep::Switched,
            previous.clone(),
            deployed.clone(),
            Some(token.clone()),
            None,
        );
        if let Err(e) = self.confirm(host, &token) {
            record(
                HostStep::Unconfirmed,
                previous,
                deployed,
                Some(token),
                Some(format!("{e}; it rolls itself back after confirm_timeout")),
            );
            return;
        }
        let gate = self.host_status(host);
        if !gate.healthy {
            record(
                HostStep::Failed,
                previous,
                deployed,
                Some(token),
                Some(format!("health gate: {}", gate.detail.unwrap_or_default())),
            );
            return;
        }
        if let Err(e) = self.hook(&self.cfg.after_host, host, release) {
            record(
                HostStep::Failed,
                previous,
                deployed,
                Some(token),
                Some(format!("after_host: {e}")),
            );
            return;
        }
        record(HostStep::Confirmed, previous, deployed, Some(token), None);
    }

    /// Rolls one host back to `previous` (or stops it when there was none).
    fn rollback_host(&self, host: &str, previous: Option<&str>) -> Result<String, String> {
        let args = match previous {
            Some(p) => format!(
                "--lock-wait {}s rollback --to {}",
                self.cfg.command_timeout.as_secs(),
                sh_quote(p)
            ),
            None => format!("--lock-wait {}s down", self.cfg.command_timeout.as_secs()),
        };
        let _ = self.ssh.connect(host);
        let (out, json) = self.remote_json(
            host,
            &args,
            self.cfg.command_timeout + Duration::from_secs(30),
        )?;
        if out.success() {
            Ok(json["live"].as_str().unwrap_or("stopped").to_owned())
        } else {
            Err(json["reason"]
                .as_str()
                .or(json["error"].as_str())
                .map(str::to_owned)
                .unwrap_or_else(|| out.stderr_tail()))
        }
    }

    /// Runs the fleet deploy, or resumes the interrupted one when `resume`.
    ///
    /// # Errors
    /// The fleet lock is held, the journal cannot be written, or nothing can be resumed.
    pub fn run(&self, resume: bool, lock_wait: Duration) -> Result<FleetReport, FleetError> {
        let started = Instant::now();
        let owner = deploy_pipeline::LockOwner::current("fleet-deploy", None);
        let _lock = deploy_pipeline::DeployLock::acquire(
            &self.state_dir.join("fleet.lock"),
            lock_wait,
            &owner,
        )
        .map_err(FleetError::Locked)?;
        let path = self.journal_path();
        let states: Mutex<Vec<(String, HostState)>> = Mutex::new(Vec::new());
        let (release, batches, journal) = if resume {
            let events = FleetJournal::read(&path).map_err(FleetError::Io)?;
            let Some(FleetEvent::Begin {
                release,
                bundle,
                batches,
                ..
            }) = events.first().cloned()
            else {
                return Err(FleetError::Resume(format!(
                    "no fleet deploy in {}",
                    path.display()
                )));
            };
            if events.iter().any(|e| matches!(e, FleetEvent::End { .. })) {
                return Err(FleetError::Resume(format!(
                    "the fleet deploy of {release} finished"
                )));
            }
            if bundle != self.bundle_sha {
                return Err(FleetError::Resume(format!(
                    "the manifest or source changed since the fleet deploy of {release} began: deploy again without --resume"
                )));
            }
            if let Ok(mut s) = states.lock() {
                for e in events {
                    if let FleetEvent::Host {
                        host,
                        step,
                        previous,
                        deployed,
                        token,
                        detail,
                    } = e
                    {
                        let st = HostState {
                            step,
                            previous,
                            deployed,
                            token,
                            detail,
                        };
                        match s.iter_mut().find(|(h, _)| *h == host) {
                            Some((_, old)) => {
                                let previous = st.previous.or(old.previous.take());
                                let deployed = st.deployed.or(old.deployed.take());
                                *old = HostState {
                                    previous,
                                    deployed,
                                    ..st
                                };
                            }
                            None => s.push((host, st)),
                        }
                    }
                }
            }
            (
                release,
                batches,
                FleetJournal::append_to(&path).map_err(FleetError::Io)?,
            )
        } else {
            let stamp = jiff::Timestamp::now()
                .strftime("%Y%m%dT%H%M%SZ")
                .to_string();
            let release = format!("{stamp}-{}", &self.bundle_sha[..8]);
            let batches = plan_batches(&self.hosts, &self.cfg.batches);
            let mut j = FleetJournal::create(&path).map_err(FleetError::Io)?;
            j.append(&FleetEvent::Begin {
                release: release.clone(),
                bundle: self.bundle_sha.clone(),
                batches: batches.clone(),
                at: jiff::Timestamp::now().to_string(),
            })
            .map_err(FleetError::Io)?;
            (release, batches, j)
        };
        let all: Vec<String> = batches.iter().flatten().cloned().collect();
        let total = all.len();
        let allowed = self.cfg.max_fail.allowed(total);
        let log = Mutex::new(journal);
        let failed = |s: &Mutex<Vec<(String, HostState)>>| {
            s.lock()
                .map(|s| {
                    s.iter()
                        .filter(|(_, st)| {
                            matches!(
                                st.step,
                                HostStep::Failed | HostStep::Unreachable | HostStep::Unconfirmed
                            )
                        })
                        .count()
                })
                .unwrap_or(0)
        };
        let mut reason = None;
        'batches: for (i, batch) in batches.iter().enumerate() {
            // On resume: hosts that finished keep their outcome; interrupted ones are finished
            // or deployed again.
            let todo: Vec<&String> = batch
                .iter()
                .filter(|h| {
                    let st = states.lock().ok().and_then(|s| {
                        s.iter()
                            .find(|(x, _)| x == *h)
                            .map(|(_, st)| (st.step, st.token.clone()))
                    });
                    match st {
                        None => true,
                        Some((HostStep::Started | HostStep::Switched, token)) => {
                            // The killed run's watchdog must not revert what this run takes over.
                            if let Some(t) = token {
                                let _ = self.ssh.connect(h);
                                let _ = self.confirm(h, &t);
                            }
                            true
                        }
                        Some(_) => false,
                    }
                })
                .collect();
            if !todo.is_empty() {
                tracing::info!(batch = i + 1, hosts = ?todo, "deploying batch");
                std::thread::scope(|s| {
                    for h in &todo {
                        let (log, states, release) = (&log, &states, &release);
                        s.spawn(move || self.deploy_host(h, release, log, states));
                    }
                });
            }
            let failures = failed(&states);
            if self.cfg.max_fail.exceeded(failures, total) {
                reason = Some(format!(
                    "{failures} failed host(s) exceed max_fail ({allowed} of {total}) after batch {}",
                    i + 1
                ));
                break 'batches;
            }
            if i + 1 < batches.len() && !self.cfg.soak.is_zero() && !todo.is_empty() {
                std::thread::sleep(self.cfg.soak);
                for h in &todo {
                    let ok = states
                        .lock()
                        .ok()
                        .and_then(|s| {
                            s.iter()
                                .find(|(x, _)| x == *h)
                                .map(|(_, st)| st.step == HostStep::Confirmed)
                        })
                        .unwrap_or(false);
                    if ok {
                        let st = self.host_status(h);
                        if !st.healthy {
                            let ev = FleetEvent::Host {
                                host: (*h).clone(),
                                step: HostStep::Failed,
                                previous: None,
                                deployed: None,
                                token: None,
                                detail: Some(format!("soak: {}", st.detail.unwrap_or_default())),
                            };
                            if let Ok(mut j) = log.lock() {
                                let _ = j.append(&ev);
                            }
                            if let Ok(mut s) = states.lock()
                                && let Some((_, old)) = s.iter_mut().find(|(x, _)| x == *h)
                            {
                                old.step = HostStep::Failed;
                                old.detail = Some("unhealthy during soak".to_owned());
                            }
                        }
                    }
                }
                let failures = failed(&states);
                if self.cfg.max_fail.exceeded(failures, total) {
                    reason = Some(format!(
                        "{failures} failed host(s) exceed max_fail ({allowed} of {total}) after the soak of batch {}",
                        i + 1
                    ));
                    break 'batches;
                }
            }
        }
        let mut rollback_ms = None;
        let mut outcome = "deployed".to_owned();
        if let Some(r) = &reason {
            if let Ok(mut j) = log.lock() {
                let _ = j.append(&FleetEvent::Stop { reason: r.clone() });
            }
            let t = Instant::now();
            // Every host whose pipeline switched and that is not reverting itself.
            let targets: Vec<(String, Option<String>)> = states
                .lock()
                .map(|s| {
                    s.iter()
                        .filter(|(_, st)| {
                            st.deployed.is_some()
                                && matches!(
                                    st.step,
                                    HostStep::Confirmed | HostStep::Switched | HostStep::Failed
                                )
                        })
                        .map(|(h, st)| (h.clone(), st.previous.clone()))
                        .collect()
                })
                .unwrap_or_default();
            let mut any_failed = false;
            for chunk in targets.chunks(self.cfg.parallel) {
                let results: Vec<(String, Option<String>, Result<String, String>)> =
                    std::thread::scope(|s| {
                        let hs: Vec<_> = chunk
                            .iter()
                            .map(|(h, p)| {
                                s.spawn(move || {
                                    (h.clone(), p.clone(), self.rollback_host(h, p.as_deref()))
                                })
                            })
                            .collect();
                        hs.into_iter().filter_map(|h| h.join().ok()).collect()
                    });
                for (h, p, r) in results {
                    let (step, detail) = match r {
                        Ok(live) => (HostStep::RolledBack, Some(live)),
                        Err(e) => {
                            any_failed = true;
                            (HostStep::RollbackFailed, Some(e))
                        }
                    };
                    if let Ok(mut j) = log.lock() {
                        let _ = j.append(&FleetEvent::Host {
                            host: h.clone(),
                            step,
                            previous: p,
                            deployed: None,
                            token: None,
                            detail: detail.clone(),
                        });
                    }
                    if let Ok(mut s) = states.lock()
                        && let Some((_, old)) = s.iter_mut().find(|(x, _)| *x == h)
                    {
                        old.step = step;
                        old.detail = detail;
                    }
                }
            }
            rollback_ms = Some(u64::try_from(t.elapsed().as_millis()).unwrap_or(u64::MAX));
            outcome = if any_failed {
                "rollback-failed"
            } else {
                "rolled-back"
            }
            .to_owned();
        }
        if let Ok(mut j) = log.lock() {
            let _ = j.append(&FleetEvent::End {
                outcome: outcome.clone(),
            });
        }
        for h in &all {
            self.ssh.close(h);
        }
        let failures = failed(&states);
        let hosts = states
            .lock()
            .map(|s| {
                all.iter()
                    .map(|h| match s.iter().find(|(x, _)| x == h) {
                        Some((_, st)) => HostReport {
                            host: h.clone(),
                            outcome: st.step.as_str().to_owned(),
                            previous: st.previous.clone(),
                            deployed: st.deployed.clone(),
                            detail: st.detail.clone(),
                        },
                        None => HostReport {
                            host: h.clone(),
                            outcome: "not-started".to_owned(),
                            previous: None,
                            deployed: None,
                            detail: None,
                        },
                    })
                    .collect()
            })
            .unwrap_or_default();
        Ok(FleetReport {
            release,
            outcome,
            batches,
            hosts,
            failures,
            max_fail: allowed,
            reason,
            duration_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
            rollback_ms,
            resumed: resume,
        })
    }
}

/// The tar shipped to every host: `cutover.toml` (the manifest without `[fleet]`) and the
/// source directory at its path relative to the manifest.
fn bundle(manifest: &manifest_loader::Manifest, source: &Path) -> Result<Vec<u8>, FleetError> {
    let text = std::fs::read_to_string(manifest.path())
        .map_err(|e| FleetError::Io(format!("cannot read {}: {e}", manifest.path().display())))?;
    let mut table: toml::Table = toml::from_str(&text)
        .map_err(|e| FleetError::Io(format!("{}: {e}", manifest.path().display())))?;
    table.remove("fleet");
    let remote = toml::to_string(&table).map_err(|e| FleetError::Io(e.to_string()))?;
    let dir = manifest.dir();
    let dir = std::fs::canonicalize(&dir).unwrap_or(dir);
    let src = std::fs::canonicalize(source).unwrap_or_else(|_| source.to_path_buf());
    let rel = src.strip_prefix(&dir).map_err(|_| FleetError::Config {
        key: "service.source".to_owned(),
        reason: format!(
            "a fleet deploy ships the source at its path relative to the manifest: {} is not under {}",
            src.display(),
            dir.display()
        ),
    })?;
    let Some(first) = rel.components().next() else {
        return Err(FleetError::Config {
            key: "service.source".to_owned(),
            reason: "a fleet deploy needs the source in a subdirectory of the manifest's directory"
                .to_owned(),
        });
    };
    let _ = first;
    let mut builder = tar::Builder::new(Vec::new());
    builder.mode(tar::HeaderMode::Deterministic);
    let mut header = tar::Header::new_gnu();
    header.set_size(remote.len() as u64);
    header.set_mode(0o600);
    header.set_cksum();
    let io = |e: std::io::Error| FleetError::Io(format!("cannot bundle {}: {e}", src.display()));
    builder
        .append_data(&mut header, "cutover.toml", remote.as_bytes())
        .map_err(io)?;
    builder.follow_symlinks(false);
    builder.append_dir_all(rel, &src).map_err(io)?;
    builder.into_inner().map_err(io)
}
