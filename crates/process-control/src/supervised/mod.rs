//! The supervised backend: a detached supervisor process per service, no root and no systemd
//! needed. See [`SupervisedManager`], and the supervisor's theory of operation in
//! [`run_hidden_mode`](crate::run_hidden_mode).

mod logfile;
mod state;
pub(crate) mod supervisor;

use std::io::Write;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use secret_refs::Resolver;
use tracing::instrument;

pub use logfile::RotatingLog;
pub(crate) use state::atomic_write_mode;
pub use state::{RestartRecord, SupervisedState};

use self::state::{OpLock, Plan, SecretPayload, ServicePaths, StopRequest, now_ms};
use crate::identity::{ProcessGroup, clock_ticks_per_second};
use crate::{
    InstallOutcome, LogLocation, ProcError, ProcessManager, ServiceSpec, ServiceState,
    ServiceStatus, StartOutcome, StopOutcome,
};

/// Where the supervised backend keeps its files and which program it runs as the supervisor.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct SupervisedConfig {
    /// One directory per service below this (plan, state, lock, notify socket, credentials).
    pub state_dir: PathBuf,
    /// Logs go to `log_dir/NAME.log`.
    pub log_dir: PathBuf,
    /// The program run as `PROGRAM __supervise --state-dir DIR`. It must call
    /// [`run_hidden_mode`](crate::run_hidden_mode) first thing in `main` (`cutover-proc` does).
    /// Default: the current executable, which is right for binaries that do so; a library
    /// user whose binary does not should point this at `cutover-proc`.
    pub supervisor_program: Option<PathBuf>,
    /// Rotate the log when it would grow past this many bytes (default 10 MiB).
    pub log_max_bytes: u64,
    /// Rotated files kept (default 5).
    pub log_keep: u32,
    /// Variables passed from the caller's environment to the supervisor and the service
    /// (default: PATH, HOME, LANG, LC_ALL, TZ, RUST_LOG, USER, LOGNAME). Nothing else is
    /// inherited; the spec's `environment` and secrets are added on top.
    pub passthrough_env: Vec<String>,
    /// How long `start`/`stop` wait for another operation on the same service (default 30 s).
    pub lock_timeout: Duration,
}

impl SupervisedConfig {
    /// Files under the release layout's `ROOT/state/proc/NAME/` and `ROOT/logs/NAME.log`.
    pub fn for_root(root: &Path) -> Self {
        Self {
            state_dir: root.join("state").join("proc"),
            log_dir: root.join("logs"),
            supervisor_program: None,
            log_max_bytes: 10 << 20,
            log_keep: 5,
            passthrough_env: [
                "PATH", "HOME", "LANG", "LC_ALL", "TZ", "RUST_LOG", "USER", "LOGNAME",
            ]
            .map(String::from)
            .to_vec(),
            lock_timeout: Duration::from_secs(30),
        }
    }

    /// Sets the supervisor program.
    pub fn with_supervisor_program(mut self, program: impl Into<PathBuf>) -> Self {
        self.supervisor_program = Some(program.into());
        self
    }

    /// Sets the log rotation size and the number of rotated files kept.
    pub fn with_log_rotation(mut self, max_bytes: u64, keep: u32) -> Self {
        self.log_max_bytes = max_bytes;
        self.log_keep = keep;
        self
    }
}

/// The built-in backend: `start` launches a detached supervisor that runs the service in its
/// own process group, restarts it with backoff, logs its output and records pid + start time.
///
/// **A dead supervisor** (killed with SIGKILL, say) is noticed by `status`, which reports
/// [`ServiceState::Orphaned`] while the service still runs unsupervised (its output pipe is
/// gone and nothing would restart it) and `failed` once it is gone too. `start` then stops the
/// orphan (stop signal, grace, SIGKILL: identified by its recorded process group within the
/// dead supervisor's session, never by name) and starts the service again under a new
/// supervisor, reporting the old pid in [`StartOutcome::recovered_orphan`]. It never adopts
/// the orphan: a process that is not its child cannot be waited for, and its output could not
/// be logged. It never starts a second copy next to it either.
#[derive(Debug)]
pub struct SupervisedManager {
    config: SupervisedConfig,
    resolver: Resolver,
}

impl SupervisedManager {
    /// A manager with this configuration and the default secret [`Resolver`].
    pub fn new(config: SupervisedConfig) -> Self {
        Self {
            config,
            resolver: Resolver::new(),
        }
    }

    /// Uses `resolver` for secrets.
    pub fn with_resolver(mut self, resolver: Resolver) -> Self {
        self.resolver = resolver;
        self
    }

    /// The configuration.
    pub fn config(&self) -> &SupervisedConfig {
        &self.config
    }

    fn paths(&self, name: &str) -> ServicePaths {
        ServicePaths {
            dir: self.config.state_dir.join(name),
            log: self.config.log_dir.join(format!("{name}.log")),
        }
    }

    /// The state directory of a service.
    pub fn service_dir(&self, name: &str) -> PathBuf {
        self.paths(name).dir
    }

    /// The spec recorded by the last `install`, for `restart` without the spec in hand.
    ///
    /// # Errors
    /// [`ProcError::NotInstalled`]; [`ProcError::InvalidSpec`] when the spec had `literal:`
    /// secrets, which are never written to disk.
    pub fn installed_spec(&self, name: &str) -> Result<ServiceSpec, ProcError> {
        let paths = self.paths(name);
        let plan = Plan::load(&paths.plan())?.ok_or_else(|| ProcError::NotInstalled {
            name: name.to_owned(),
            path: paths.plan(),
        })?;
        if !plan.unpersisted_secrets.is_empty() {
            return Err(ProcError::InvalidSpec {
                name: name.to_owned(),
                reason: format!(
                    "literal secrets ({}) are not kept on disk; pass the spec again",
                    plan.unpersisted_secrets.join(", ")
                ),
            });
        }
        Ok(plan.spec)
    }

    /// The raw record the supervisor keeps (restart history included).
    ///
    /// # Errors
    /// An unreadable or corrupt state file.
    pub fn recorded_state(&self, name: &str) -> Result<Option<SupervisedState>, ProcError> {
        SupervisedState::load(&self.paths(name).state())
    }

    fn supervisor_program(&self, name: &str) -> Result<PathBuf, ProcError> {
        match &self.config.supervisor_program {
            Some(p) => Ok(p.clone()),
            None => std::env::current_exe().map_err(|source| ProcError::SupervisorSpawn {
                name: name.to_owned(),
                program: PathBuf::from("<current executable>"),
                error: source,
            }),
        }
    }

    fn create_dir(&self, paths: &ServicePaths) -> Result<(), ProcError> {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&paths.dir)
            .map_err(ProcError::io("create state directory", &paths.dir))
    }

    fn install_into(
        &self,
        spec: &ServiceSpec,
        paths: &ServicePaths,
    ) -> Result<InstallOutcome, ProcError> {
        let plan = Plan::new(
            spec,
            paths.log.clone(),
            self.config.log_max_bytes,
            self.config.log_keep,
        );
        plan.save(&paths.plan())?;
        Ok(InstallOutcome {
            files: vec![paths.plan()],
        })
    }

    fn resolve_secrets(&self, spec: &ServiceSpec) -> Result<SecretPayload, ProcError> {
        let mut payload = SecretPayload::new();
        for (secret, result) in self.resolver.resolve_each_blocking(&spec.secrets) {
            let value = result.map_err(|source| ProcError::Secret {
                name: spec.name.clone(),
                secret: secret.clone(),
                error: Box::new(source),
            })?;
            payload.insert(secret, value.expose_secret().to_owned());
        }
        Ok(payload)
    }

    fn spawn_supervisor(
        &self,
        spec: &ServiceSpec,
        paths: &ServicePaths,
        payload: SecretPayload,
    ) -> Result<u32, ProcError> {
        let program = self.supervisor_program(&spec.name)?;
        let spawn_error = |source| ProcError::SupervisorSpawn {
            name: spec.name.clone(),
            program: program.clone(),
            error: source,
        };
        let mut command = Command::new(&program);
        command
            .arg(supervisor::SUPERVISE_MODE)
            .arg("--state-dir")
            .arg(&paths.dir)
            .env_clear()
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .current_dir("/");
        for name in &self.config.passthrough_env {
            if let Some(value) = std::env::var_os(name) {
                command.env(name, value);
            }
        }
        // No process_group(): the supervisor must not be a group leader so that its own
        // setsid() succeeds and it leaves the caller's session and terminal.
        let mut child = command.spawn().map_err(spawn_error)?;
        let pid = child.id();
        let mut bytes = serde_json::to_vec(&payload).unwrap_or_default();
        drop(payload);
        let written = child
            .stdin
            .take()
            .map(|mut stdin| stdin.write_all(&bytes))
            .unwrap_or(Ok(()));
        bytes.fill(0);
        // Reap the supervisor whenever it exits, so a long-lived caller keeps no zombie; when
        // the caller exits first, the supervisor is reparented and reaped by init.
        std::thread::spawn(move || {
            let _ = child.wait();
        });
        written.map_err(spawn_error)?;
        Ok(pid)
    }

    fn wait_started(
        &self,
        spec: &ServiceSpec,
        paths: &ServicePaths,
        supervisor_pid: u32,
    ) -> Result<(), ProcError> {
        let timeout = spec.start_timeout + Duration::from_secs(10);
        let end = Instant::now() + timeout;
        loop {
            // Liveness first, state second: a supervisor that wrote `failed` and exited in
            // between is then reported with its own message.
            let supervisor_alive =
                crate::ProcessIdentity::of(supervisor_pid).is_some_and(|id| id.is_alive());
            let state = SupervisedState::load(&paths.state())?;
            let ours = state
                .as_ref()
                .filter(|s| s.supervisor.is_some_and(|id| id.pid == supervisor_pid));
            if let Some(s) = ours {
                match s.state {
                    ServiceState::Running | ServiceState::CrashLooping => return Ok(()),
                    ServiceState::Failed | ServiceState::Stopped => {
                        return Err(ProcError::StartFailed {
                            name: spec.name.clone(),
                            reason: s
                                .message
                                .clone()
                                .unwrap_or_else(|| s.state.as_str().to_owned()),
                        });
                    }
                    _ => {}
                }
            }
            if !supervisor_alive {
                return Err(ProcError::StartFailed {
                    name: spec.name.clone(),
                    reason: format!(
                        "the supervisor exited before the service started; see {}",
                        paths.log.display()
                    ),
                });
            }
            if Instant::now() >= end {
                return Err(ProcError::Timeout {
                    name: spec.name.clone(),
                    expected: "running",
                    timeout,
                });
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Stops a process group directly: `signal`, `grace`, SIGKILL. Returns whether SIGKILL
    /// was needed.
    fn stop_group(
        name: &str,
        group: ProcessGroup,
        signal: Signal,
        grace: Duration,
    ) -> Result<bool, ProcError> {
        group.signal(signal);
        if group.wait_gone(grace, || {}) {
            return Ok(false);
        }
        group.signal(Signal::SIGKILL);
        if group.wait_gone(Duration::from_secs(10), || {}) {
            Ok(true)
        } else {
            Err(ProcError::StopFailed {
                name: name.to_owned(),
                reason: format!(
                    "process group {} still has members {:?} after SIGKILL",
                    group.pgid,
                    group.members()
                ),
            })
        }
    }

    fn status_of(&self, name: &str, paths: &ServicePaths) -> Result<ServiceStatus, ProcError> {
        let plan = Plan::load(&paths.plan())?.ok_or_else(|| ProcError::NotInstalled {
            name: name.to_owned(),
            path: paths.plan(),
        })?;
        let logs = LogLocation::File {
            path: plan.log_path.clone(),
            keep: plan.log_keep,
        };
        let mut status = ServiceStatus {
            name: name.to_owned(),
            manager: "supervised".into(),
            state: ServiceState::Stopped,
            message: Some("installed, never started".into()),
            pid: None,
            pgid: None,
            supervisor_pid: None,
            supervisor_alive: None,
            uptime: None,
            restart_count: 0,
            last_exit: None,
            rss_bytes: None,
            cpu_time_ms: None,
            cpu_percent: None,
            logs,
        };
        let Some(record) = SupervisedState::load(&paths.state())? else {
            return Ok(status);
        };
        let supervisor_alive = record.supervisor.is_some_and(|s| s.is_alive());
        let service_alive = record.service.is_some_and(|s| s.is_alive());
        let group_alive = record.group.is_some_and(|g| g.is_alive());
        status.supervisor_pid = record.supervisor.map(|s| s.pid);
        status.supervisor_alive = record.supervisor.map(|_| supervisor_alive);
        status.restart_count = record.restart_count;
        status.last_exit = record.last_exit.clone();
        status.message = record.message.clone();
        status.state = match record.state {
            s @ (ServiceState::Stopped | ServiceState::Failed) => s,
            s if supervisor_alive => s,
            _ if service_alive || group_alive => {
                status.message = Some(format!(
                    "the supervisor (pid {}) is gone; the service runs unsupervised: `start` stops it and starts it again",
                    status.supervisor_pid.unwrap_or(0)
                ));
                ServiceState::Orphaned
            }
            _ => {
                status.message = Some(format!(
                    "the supervisor (pid {}) died and the service is not running",
                    status.supervisor_pid.unwrap_or(0)
                ));
                ServiceState::Failed
            }
        };
        if service_alive && status.state.is_active() {
            status.pid = record.service.map(|s| s.pid);
            status.pgid = record.group.map(|g| g.pgid);
            status.uptime = record
                .started_at_ms
                .map(|t| Duration::from_millis(now_ms().saturating_sub(t)))
                .or_else(|| record.service.and_then(|s| uptime_from_ticks(s.start_time)));
            let members = record.group.map(|g| g.members()).unwrap_or_default();
            if let Some((rss, cpu_ms)) = resource_usage(&members) {
                status.rss_bytes = Some(rss);
                status.cpu_time_ms = Some(cpu_ms);
                status.cpu_percent = status.uptime.filter(|u| !u.is_zero()).map(|u| {
                    let percent = cpu_ms as f64 / u.as_millis() as f64 * 100.0;
                    (percent * 10.0).round() / 10.0
                });
            }
        }
        Ok(status)
    }
}

fn uptime_from_ticks(start_ticks: u64) -> Option<Duration> {
    let uptime = std::fs::read_to_string("/proc/uptime").ok()?;
    let since_boot: f64 = uptime.split_whitespace().next()?.parse().ok()?;
    let started = start_ticks as f64 / clock_ticks_per_second() as f64;
    Some(Duration::from_secs_f64((since_boot - started).max(0.0)))
}

/// Resident memory (bytes) and CPU time (ms) summed over `pids`, read with sysinfo.
fn resource_usage(pids: &[u32]) -> Option<(u64, u64)> {
    use sysinfo::{Pid, ProcessRefreshKind, ProcessesToUpdate, System};
    if pids.is_empty() {
        return None;
    }
    let mut system = System::new().ok()?;
    let pids: Vec<Pid> = pids.iter().map(|p| Pid::from_u32(*p)).collect();
    system.refresh_processes_specifics(
        ProcessesToUpdate::Some(&pids),
        true,
        ProcessRefreshKind::nothing().with_memory().with_cpu(),
    );
    let (mut rss, mut cpu) = (0u64, 0u64);
    for pid in &pids {
        if let Some(p) = system.process(*pid) {
            rss += p.memory();
            cpu += p.accumulated_cpu_time();
        }
    }
    Some((rss, cpu))
}

impl ProcessManager for SupervisedManager {
    #[instrument(skip_all, fields(service = %spec.name, manager = "supervised"))]
    fn install(&self, spec: &ServiceSpec) -> Result<InstallOutcome, ProcError> {
        spec.validate()?;
        let paths = self.paths(&spec.name);
        self.create_dir(&paths)?;
        let _lock = OpLock::acquire(&paths.lock(), self.config.lock_timeout)?;
        self.install_into(spec, &paths)
    }

    #[instrument(skip_all, fields(service = %spec.name, manager = "supervised"))]
    fn start(&self, spec: &ServiceSpec) -> Result<StartOutcome, ProcError> {
        spec.validate()?;
        crate::limits::check_limits(spec, false)?;
        let paths = self.paths(&spec.name);
        self.create_dir(&paths)?;
        let _lock = OpLock::acquire(&paths.lock(), self.config.lock_timeout)?;
        let recorded = SupervisedState::load(&paths.state())?;
        let mut recovered_orphan = None;
        if let Some(record) = &recorded {
            if record.supervisor.is_some_and(|s| s.is_alive()) {
                tracing::info!("already running; not starting a second copy");
                return Ok(StartOutcome {
                    status: self.status_of(&spec.name, &paths)?,
                    already_running: true,
                    recovered_orphan: None,
                });
            }
            if let Some(group) = record.group.filter(|g| g.is_alive()) {
                let old = record.service.map_or(group.pgid, |s| s.pid);
                tracing::warn!(
                    pid = old,
                    "the supervisor is gone but the service runs: stopping it first"
                );
                Self::stop_group(
                    &spec.name,
                    group,
                    spec.stop.signal.signal(),
                    spec.stop.timeout,
                )?;
                recovered_orphan = Some(old);
            }
        }
        self.install_into(spec, &paths)?;
        let payload = self.resolve_secrets(spec)?;
        let _ = std::fs::remove_file(paths.stop_request());
        let mut fresh = SupervisedState::new(ServiceState::Starting);
        fresh.message = Some("launching the supervisor".into());
        fresh.save(&paths.state())?;
        let supervisor_pid = self.spawn_supervisor(spec, &paths, payload)?;
        tracing::debug!(supervisor_pid, "supervisor launched");
        self.wait_started(spec, &paths, supervisor_pid)?;
        Ok(StartOutcome {
            status: self.status_of(&spec.name, &paths)?,
            already_running: false,
            recovered_orphan,
        })
    }

    #[instrument(skip_all, fields(service = %name, manager = "supervised"))]
    fn stop(&self, name: &str, grace: Option<Duration>) -> Result<StopOutcome, ProcError> {
        let started = Instant::now();
        let paths = self.paths(name);
        let not_running = StopOutcome {
            was_running: false,
            killed: false,
            took: Duration::ZERO,
        };
        let Some(plan) = Plan::load(&paths.plan())? else {
            return Ok(not_running);
        };
        let _lock = OpLock::acquire(&paths.lock(), self.config.lock_timeout)?;
        let Some(mut record) = SupervisedState::load(&paths.state())? else {
            return Ok(not_running);
        };
        let grace = grace.unwrap_or(plan.spec.stop.timeout);
        let mut was_running = false;
        let mut killed = false;
        if let Some(supervisor) = record.supervisor.filter(|s| s.is_alive()) {
            was_running = true;
            // On a full disk the request cannot be written: the stop goes on without it (the
            // supervisor then uses the spec's stop timeout). Stopping must never need space.
            if let Err(e) = (StopRequest { grace }).save(&paths.stop_request()) {
                tracing::warn!(%e, "cannot write the stop request; stopping with the spec's grace");
            }
            supervisor.signal(Signal::SIGTERM);
            let limit = grace + Duration::from_secs(15);
            let end = Instant::now() + limit;
            while supervisor.is_alive() && Instant::now() < end {
                std::thread::sleep(Duration::from_millis(20));
            }
            if supervisor.is_alive() {
                tracing::warn!(
                    pid = supervisor.pid,
                    "the supervisor did not exit: killing it"
                );
                supervisor.signal(Signal::SIGKILL);
            }
            record = SupervisedState::load(&paths.state())?.unwrap_or(record);
            killed = record
                .message
                .as_deref()
                .is_some_and(|m| m.contains("SIGKILL"));
        }
        if let Some(group) = record.group.filter(|g| g.is_alive()) {
            was_running = true;
            // Either an orphan (no supervisor) or leftovers the supervisor could not end.
            let signal = if record.supervisor.is_some_and(|s| s.is_alive()) {
                Signal::SIGKILL
            } else {
                plan.spec.stop.signal.signal()
            };
            killed |= Self::stop_group(name, group, signal, grace)?;
            record.state = ServiceState::Stopped;
            record.message = Some(if killed {
                "stopped (SIGKILL after the grace period)".into()
            } else {
                "stopped".into()
            });
            record.service = None;
            save_after_stop(&mut record, &paths.state());
        } else if record.state.is_active() && record.state != ServiceState::Stopped {
            record.state = ServiceState::Stopped;
            record.service = None;
            record.message = Some("stopped".into());
            save_after_stop(&mut record, &paths.state());
        }
        Ok(StopOutcome {
            was_running,
            killed,
            took: started.elapsed(),
        })
    }

    #[instrument(skip_all, fields(service = %name, manager = "supervised"))]
    fn status(&self, name: &str) -> Result<ServiceStatus, ProcError> {
        self.status_of(name, &self.paths(name))
    }

    fn logs(&self, name: &str) -> LogLocation {
        LogLocation::File {
            path: self.paths(name).log,
            keep: self.config.log_keep,
        }
    }
}

/// Reads the last `lines` lines of a log (the rotated file before it when the current one is
/// short), for `cutover-proc logs`.
///
/// # Errors
/// An unreadable file (a missing one is empty).
pub fn tail_log(path: &Path, lines: usize) -> Result<Vec<String>, ProcError> {
    let read = |p: &Path| match std::fs::read(p) {
        Ok(bytes) => Ok(String::from_utf8_lossy(&bytes).into_owned()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(String::new()),
        Err(e) => Err(ProcError::io("read log", p)(e)),
    };
    let current = read(path)?;
    let mut all: Vec<String> = current.lines().map(str::to_owned).collect();
    if all.len() < lines {
        let previous = read(&RotatingLog::rotated_path(path, 1))?;
        let mut before: Vec<String> = previous.lines().map(str::to_owned).collect();
        before.append(&mut all);
        all = before;
    }
    let skip = all.len().saturating_sub(lines);
    Ok(all.split_off(skip))
}

/// Records a stop that happened. When the disk is full the record cannot be written, but the
/// service is stopped all the same: status reads the dead process identity as stopped.
fn save_after_stop(record: &mut SupervisedState, path: &std::path::Path) {
    if let Err(e) = record.save(path) {
        tracing::warn!(%e, "the service is stopped but its state could not be recorded");
    }
}
