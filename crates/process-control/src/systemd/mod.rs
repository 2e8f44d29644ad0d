//! The systemd backend: renders hardened units from a [`ServiceSpec`], installs them, and
//! drives `systemctl` through a [`CommandRunner`], so tests can record the command sequence
//! with [`RecordingRunner`] instead of touching a real system manager.

mod render;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use secret_refs::{Resolver, Secret};
use tracing::instrument;

pub use render::{RenderedUnits, UnitOptions, render_units};

use crate::{
    ExitInfo, InstallOutcome, LogLocation, ProcError, ProcessManager, ServiceSpec, ServiceState,
    ServiceStatus, StartOutcome, StopOutcome,
};

/// What a command printed and how it ended.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CommandOutput {
    /// The exit code (`None` when a signal ended it).
    pub code: Option<i32>,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
}

impl CommandOutput {
    /// A successful run that printed `stdout`.
    pub fn ok(stdout: impl Into<String>) -> Self {
        Self {
            code: Some(0),
            stdout: stdout.into(),
            stderr: String::new(),
        }
    }
}

/// Runs an external command (here: `systemctl`). The one real implementation is
/// [`SystemCommandRunner`]; tests use [`RecordingRunner`].
pub trait CommandRunner {
    /// Runs `program args…` and returns its output, whatever its exit code.
    ///
    /// # Errors
    /// [`ProcError::Command`] when it cannot run or does not finish in time.
    fn run(&self, program: &str, args: &[String]) -> Result<CommandOutput, ProcError>;
}

impl<T: CommandRunner + ?Sized> CommandRunner for &T {
    fn run(&self, program: &str, args: &[String]) -> Result<CommandOutput, ProcError> {
        (**self).run(program, args)
    }
}

/// Runs commands for real, killing one that runs longer than `timeout` (default 60 s).
#[derive(Debug, Clone)]
pub struct SystemCommandRunner {
    /// The time limit per command.
    pub timeout: Duration,
}

impl Default for SystemCommandRunner {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(60),
        }
    }
}

impl CommandRunner for SystemCommandRunner {
    fn run(&self, program: &str, args: &[String]) -> Result<CommandOutput, ProcError> {
        let line = command_line(program, args);
        let fail = |detail: String| ProcError::Command {
            command: line.clone(),
            detail,
        };
        let mut command = Command::new(program);
        command.args(args).stdin(Stdio::null());
        // In its own process group: at the timeout the whole group goes, not only the child.
        let done = host_util::process::run_with_timeout(&mut command, self.timeout, OUTPUT_LIMIT)
            .map_err(|e| fail(e.to_string()))?;
        if done.timed_out {
            return Err(fail(format!(
                "still running after {:?}; killed",
                self.timeout
            )));
        }
        Ok(CommandOutput {
            code: done.status.and_then(|s| s.code()),
            stdout: String::from_utf8_lossy(&done.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&done.stderr).into_owned(),
        })
    }
}

/// The most of a command's stdout and stderr kept (each); `systemctl show` prints a few KiB.
const OUTPUT_LIMIT: usize = 4 << 20;

fn command_line(program: &str, args: &[String]) -> String {
    std::iter::once(program.to_owned())
        .chain(args.iter().cloned())
        .collect::<Vec<_>>()
        .join(" ")
}

type Responder = Box<dyn Fn(&[String]) -> CommandOutput + Send + Sync>;

/// A test double that records every command and answers from a closure (default: success
/// with no output). Public so that other crates' tests can use it too.
pub struct RecordingRunner {
    calls: Mutex<Vec<Vec<String>>>,
    responder: Responder,
}

impl std::fmt::Debug for RecordingRunner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecordingRunner")
            .field("calls", &self.calls())
            .finish_non_exhaustive()
    }
}

impl Default for RecordingRunner {
    fn default() -> Self {
        Self::new()
    }
}

impl RecordingRunner {
    /// Answers every command with success and no output.
    pub fn new() -> Self {
        Self::answering(|_| CommandOutput::ok(""))
    }

    /// Answers with `responder(argv)`, where argv starts with the program.
    pub fn answering(
        responder: impl Fn(&[String]) -> CommandOutput + Send + Sync + 'static,
    ) -> Self {
        Self {
            calls: Mutex::new(Vec::new()),
            responder: Box::new(responder),
        }
    }

    /// Every command so far, each as `program args…` joined by spaces.
    pub fn calls(&self) -> Vec<String> {
        self.calls
            .lock()
            .map(|c| c.iter().map(|a| a.join(" ")).collect())
            .unwrap_or_default()
    }

    /// Forgets the recorded commands.
    pub fn clear(&self) {
        if let Ok(mut c) = self.calls.lock() {
            c.clear();
        }
    }
}

impl CommandRunner for RecordingRunner {
    fn run(&self, program: &str, args: &[String]) -> Result<CommandOutput, ProcError> {
        let argv: Vec<String> = std::iter::once(program.to_owned())
            .chain(args.iter().cloned())
            .collect();
        let output = (self.responder)(&argv);
        if let Ok(mut c) = self.calls.lock() {
            c.push(argv);
        }
        Ok(output)
    }
}

/// Where the systemd backend writes units and which `systemctl` it runs.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct SystemdConfig {
    /// Where unit files go (default `/etc/systemd/system`).
    pub unit_dir: PathBuf,
    /// The `systemctl` program (default `systemctl`).
    pub systemctl: String,
    /// Rendering choices (writable paths, credentials directory, exec shim).
    pub unit: UnitOptions,
}

impl SystemdConfig {
    /// Units in `/etc/systemd/system`, the layout under `root` as in
    /// [`UnitOptions::for_layout`].
    pub fn for_root(root: &std::path::Path, name: &str) -> Self {
        Self {
            unit_dir: PathBuf::from("/etc/systemd/system"),
            systemctl: "systemctl".into(),
            unit: UnitOptions::for_layout(root, name),
        }
    }

    /// Writes units to `dir` instead.
    pub fn with_unit_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.unit_dir = dir.into();
        self
    }

    /// Runs this `systemctl` instead.
    pub fn with_systemctl(mut self, program: impl Into<String>) -> Self {
        self.systemctl = program.into();
        self
    }
}

/// The systemd backend. `install` writes the credential files and the unit(s), then runs
/// `daemon-reload` and `enable`; `start`/`stop` run `systemctl start`/`stop`; `status` parses
/// `systemctl show`. Stopping uses the unit's `TimeoutStopSec=` (the spec's stop timeout): an
/// explicit `grace` is not passed to systemd, which has no per-call grace.
#[derive(Debug)]
pub struct SystemdManager<R: CommandRunner> {
    config: SystemdConfig,
    runner: R,
    resolver: Resolver,
}

impl<R: CommandRunner> SystemdManager<R> {
    /// A manager running `systemctl` through `runner`.
    pub fn new(config: SystemdConfig, runner: R) -> Self {
        Self {
            config,
            runner,
            resolver: Resolver::new(),
        }
    }

    /// Uses `resolver` for secrets.
    pub fn with_resolver(mut self, resolver: Resolver) -> Self {
        self.resolver = resolver;
        self
    }

    /// The runner (to inspect a [`RecordingRunner`]).
    pub fn runner(&self) -> &R {
        &self.runner
    }

    fn systemctl(&self, args: &[&str]) -> Result<CommandOutput, ProcError> {
        let args: Vec<String> = args.iter().map(|s| (*s).to_owned()).collect();
        self.runner.run(&self.config.systemctl, &args)
    }

    fn systemctl_ok(&self, args: &[&str]) -> Result<CommandOutput, ProcError> {
        let out = self.systemctl(args)?;
        if out.code == Some(0) {
            Ok(out)
        } else {
            let args: Vec<String> = args.iter().map(|s| (*s).to_owned()).collect();
            Err(ProcError::Command {
                command: command_line(&self.config.systemctl, &args),
                detail: format!("exit {:?}: {}", out.code, out.stderr.trim()),
            })
        }
    }

    fn write_unit(&self, name: &str, text: &str) -> Result<PathBuf, ProcError> {
        std::fs::create_dir_all(&self.config.unit_dir).map_err(ProcError::io(
            "create unit directory",
            &self.config.unit_dir,
        ))?;
        let path = self.config.unit_dir.join(name);
        crate::supervised::atomic_write_mode(&path, text.as_bytes(), 0o644)?;
        Ok(path)
    }
}

/// Parses `systemctl show` output (`Key=Value` lines).
pub fn parse_show(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect()
}

/// The properties `status` asks `systemctl show` for.
pub const SHOW_PROPERTIES: &str = "ActiveState,SubState,Result,MainPID,NRestarts,ExecMainCode,ExecMainStatus,ExecMainStartTimestampMonotonic,MemoryCurrent,CPUUsageNSec,ControlGroup";

/// Maps `ActiveState`/`SubState` to a [`ServiceState`].
pub fn state_from_show(active: &str, sub: &str) -> ServiceState {
    match (active, sub) {
        ("active", "running") | ("active", "exited") => ServiceState::Running,
        ("active", _) | ("reloading", _) => ServiceState::Running,
        ("activating", "auto-restart") => ServiceState::CrashLooping,
        ("activating", _) => ServiceState::Starting,
        ("deactivating", _) => ServiceState::Stopping,
        ("inactive", _) => ServiceState::Stopped,
        ("failed", _) => ServiceState::Failed,
        _ => ServiceState::Unknown,
    }
}

impl<R: CommandRunner> ProcessManager for SystemdManager<R> {
    #[instrument(skip_all, fields(service = %spec.name, manager = "systemd"))]
    fn install(&self, spec: &ServiceSpec) -> Result<InstallOutcome, ProcError> {
        crate::limits::check_limits(spec, true)?;
        let units = render_units(spec, &self.config.unit)?;
        let mut files = Vec::new();
        if !spec.secrets.is_empty()
            && let Some(dir) = &self.config.unit.credentials_dir
        {
            let mut values: Vec<(String, Secret)> = Vec::new();
            for (secret, result) in self.resolver.resolve_each_blocking(&spec.secrets) {
                let value = result.map_err(|source| ProcError::Secret {
                    name: spec.name.clone(),
                    secret: secret.clone(),
                    error: Box::new(source),
                })?;
                values.push((secret, value));
            }
            let entries: Vec<(&str, &Secret)> =
                values.iter().map(|(k, v)| (k.as_str(), v)).collect();
            secret_refs::write_credentials_dir(dir, &entries).map_err(|source| {
                ProcError::Secret {
                    name: spec.name.clone(),
                    secret: "(credentials directory)".into(),
                    error: Box::new(source),
                }
            })?;
            files.extend(values.iter().map(|(k, _)| dir.join(k)));
        }
        files.push(self.write_unit(&units.service_name, &units.service)?);
        if let Some((name, text)) = &units.socket {
            files.push(self.write_unit(name, text)?);
        }
        self.systemctl_ok(&["daemon-reload"])?;
        match &units.socket {
            Some((socket, _)) => self.systemctl_ok(&["enable", socket, &units.service_name])?,
            None => self.systemctl_ok(&["enable", &units.service_name])?,
        };
        Ok(InstallOutcome { files })
    }

    #[instrument(skip_all, fields(service = %spec.name, manager = "systemd"))]
    fn start(&self, spec: &ServiceSpec) -> Result<StartOutcome, ProcError> {
        let unit = format!("{}.service", spec.name);
        let active = self.systemctl(&["is-active", "--quiet", &unit])?;
        if active.code == Some(0) {
            return Ok(StartOutcome {
                status: self.status(&spec.name)?,
                already_running: true,
                recovered_orphan: None,
            });
        }
        self.install(spec)?;
        if spec.socket.is_some() {
            self.systemctl_ok(&["start", &format!("{}.socket", spec.name)])?;
        }
        self.systemctl_ok(&["start", &unit])?;
        Ok(StartOutcome {
            status: self.status(&spec.name)?,
            already_running: false,
            recovered_orphan: None,
        })
    }

    #[instrument(skip_all, fields(service = %name, manager = "systemd"))]
    fn stop(&self, name: &str, grace: Option<Duration>) -> Result<StopOutcome, ProcError> {
        if let Some(grace) = grace {
            tracing::debug!(?grace, "systemd stops with the unit's TimeoutStopSec");
        }
        let started = Instant::now();
        let unit = format!("{name}.service");
        let was_running = self.systemctl(&["is-active", "--quiet", &unit])?.code == Some(0);
        // Stop the socket first, or a connection would start the service again.
        let socket = format!("{name}.socket");
        let _ = self.systemctl(&["stop", &socket]);
        self.systemctl_ok(&["stop", &unit])?;
        let show = parse_show(
            &self
                .systemctl_ok(&["show", &unit, "--property=Result"])?
                .stdout,
        );
        Ok(StopOutcome {
            was_running,
            killed: show.get("Result").is_some_and(|r| r == "timeout"),
            took: started.elapsed(),
        })
    }

    #[instrument(skip_all, fields(service = %name, manager = "systemd"))]
    fn status(&self, name: &str) -> Result<ServiceStatus, ProcError> {
        let unit = format!("{name}.service");
        let property = format!("--property={SHOW_PROPERTIES}");
        let out = self.systemctl_ok(&["show", &unit, &property])?;
        let show = parse_show(&out.stdout);
        let get = |k: &str| show.get(k).map(String::as_str).unwrap_or_default();
        let number = |k: &str| get(k).parse::<u64>().ok();
        let state = state_from_show(get("ActiveState"), get("SubState"));
        let pid = number("MainPID")
            .filter(|p| *p > 0)
            .and_then(|p| u32::try_from(p).ok());
        let last_exit = match (get("ExecMainCode"), number("ExecMainStatus")) {
            // ExecMainCode: 1 = exited, 2 = killed, 3 = dumped (CLD_* codes).
            ("1", Some(code)) => Some(ExitInfo {
                code: i32::try_from(code).ok(),
                signal: None,
                description: format!("exited with code {code}"),
                at_ms: 0,
            }),
            ("2" | "3", Some(sig)) => Some(ExitInfo {
                code: None,
                signal: i32::try_from(sig).ok(),
                description: format!("killed by signal {sig}"),
                at_ms: 0,
            }),
            _ => None,
        };
        let uptime = number("ExecMainStartTimestampMonotonic")
            .filter(|t| *t > 0 && pid.is_some())
            .and_then(|started_us| {
                let up = std::fs::read_to_string("/proc/uptime").ok()?;
                let now: f64 = up.split_whitespace().next()?.parse().ok()?;
                Some(Duration::from_secs_f64(
                    (now - started_us as f64 / 1e6).max(0.0),
                ))
            });
        let cpu_time_ms = number("CPUUsageNSec")
            .filter(|n| *n != u64::MAX)
            .map(|n| n / 1_000_000);
        Ok(ServiceStatus {
            name: name.to_owned(),
            manager: "systemd".into(),
            state,
            message: Some(format!(
                "{} ({}), result {}",
                get("ActiveState"),
                get("SubState"),
                get("Result")
            )),
            pid,
            pgid: pid,
            supervisor_pid: None,
            supervisor_alive: None,
            uptime,
            restart_count: number("NRestarts")
                .and_then(|n| u32::try_from(n).ok())
                .unwrap_or(0),
            last_exit,
            rss_bytes: number("MemoryCurrent").filter(|n| *n != u64::MAX),
            cpu_time_ms,
            cpu_percent: match (cpu_time_ms, uptime) {
                (Some(cpu), Some(up)) if !up.is_zero() => {
                    Some((cpu as f64 / up.as_millis() as f64 * 1000.0).round() / 10.0)
                }
                _ => None,
            },
            logs: self.logs(name),
        })
    }

    fn logs(&self, name: &str) -> LogLocation {
        LogLocation::Journal {
            unit: format!("{name}.service"),
        }
    }
}
