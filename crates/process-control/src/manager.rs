//! The [`ProcessManager`] trait and the status it reports.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::{ProcError, ServiceSpec};

/// What a service manager does for one service: the same operations for the built-in
/// supervisor and for systemd, so the deploy pipeline does not care which one runs.
pub trait ProcessManager {
    /// Records the service (writes the supervisor's plan, or the systemd unit and reloads).
    ///
    /// # Errors
    /// An invalid spec, files that cannot be written, a failing `systemctl`.
    fn install(&self, spec: &ServiceSpec) -> Result<InstallOutcome, ProcError>;

    /// Installs (if needed) and starts the service, resolving its secrets now. Starting a
    /// service that already runs starts no second copy and reports `already_running`.
    ///
    /// # Errors
    /// As [`install`](Self::install), secrets that cannot be resolved, a start that fails.
    fn start(&self, spec: &ServiceSpec) -> Result<StartOutcome, ProcError>;

    /// Stops the service: its stop signal to the whole process group, `grace` (default: the
    /// spec's stop timeout), SIGKILL to what is left, and a check that nothing is left.
    ///
    /// # Errors
    /// When something in the group survives SIGKILL, or the manager cannot be reached.
    fn stop(&self, name: &str, grace: Option<Duration>) -> Result<StopOutcome, ProcError>;

    /// Stops, then starts.
    ///
    /// # Errors
    /// As [`stop`](Self::stop) and [`start`](Self::start).
    fn restart(
        &self,
        spec: &ServiceSpec,
        grace: Option<Duration>,
    ) -> Result<StartOutcome, ProcError> {
        self.stop(&spec.name, grace)?;
        self.start(spec)
    }

    /// The service's state, pid, uptime, restarts, last exit and resource use.
    ///
    /// # Errors
    /// Unreadable state; a service that is merely not running is `Ok` with state `stopped`.
    fn status(&self, name: &str) -> Result<ServiceStatus, ProcError>;

    /// Where the service's output goes.
    fn logs(&self, name: &str) -> LogLocation;
}

impl<T: ProcessManager + ?Sized> ProcessManager for &T {
    fn install(&self, spec: &ServiceSpec) -> Result<InstallOutcome, ProcError> {
        (**self).install(spec)
    }
    fn start(&self, spec: &ServiceSpec) -> Result<StartOutcome, ProcError> {
        (**self).start(spec)
    }
    fn stop(&self, name: &str, grace: Option<Duration>) -> Result<StopOutcome, ProcError> {
        (**self).stop(name, grace)
    }
    fn restart(
        &self,
        spec: &ServiceSpec,
        grace: Option<Duration>,
    ) -> Result<StartOutcome, ProcError> {
        (**self).restart(spec, grace)
    }
    fn status(&self, name: &str) -> Result<ServiceStatus, ProcError> {
        (**self).status(name)
    }
    fn logs(&self, name: &str) -> LogLocation {
        (**self).logs(name)
    }
}

impl<T: ProcessManager + ?Sized> ProcessManager for Box<T> {
    fn install(&self, spec: &ServiceSpec) -> Result<InstallOutcome, ProcError> {
        (**self).install(spec)
    }
    fn start(&self, spec: &ServiceSpec) -> Result<StartOutcome, ProcError> {
        (**self).start(spec)
    }
    fn stop(&self, name: &str, grace: Option<Duration>) -> Result<StopOutcome, ProcError> {
        (**self).stop(name, grace)
    }
    fn restart(
        &self,
        spec: &ServiceSpec,
        grace: Option<Duration>,
    ) -> Result<StartOutcome, ProcError> {
        (**self).restart(spec, grace)
    }
    fn status(&self, name: &str) -> Result<ServiceStatus, ProcError> {
        (**self).status(name)
    }
    fn logs(&self, name: &str) -> LogLocation {
        (**self).logs(name)
    }
}

/// The state of a service, as `status` reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ServiceState {
    /// Running (and ready, when readiness is checked).
    Running,
    /// Started, not ready yet.
    Starting,
    /// Being stopped.
    Stopping,
    /// Not running, by request or after a clean exit.
    Stopped,
    /// Not running after failures (start limit hit, or a failed exit with no restart).
    Failed,
    /// Exited and waiting to be restarted (backoff).
    CrashLooping,
    /// The supervisor died and the service runs unsupervised: nothing restarts it and its
    /// output goes nowhere. `start` stops it and starts it again under a new supervisor.
    Orphaned,
    /// Cannot be told (the manager did not answer or answered something unknown).
    Unknown,
}

impl ServiceState {
    /// The kebab-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Running => "running",
            Self::Starting => "starting",
            Self::Stopping => "stopping",
            Self::Stopped => "stopped",
            Self::Failed => "failed",
            Self::CrashLooping => "crash-looping",
            Self::Orphaned => "orphaned",
            Self::Unknown => "unknown",
        }
    }

    /// The exit code `status` uses: 0 running; 1 starting or stopping; 2 stopped, failed or
    /// crash-looping; 3 orphaned or unknown (nothing vouches for the process).
    pub fn exit_code(self) -> i32 {
        match self {
            Self::Running => 0,
            Self::Starting | Self::Stopping => 1,
            Self::Stopped | Self::Failed | Self::CrashLooping => 2,
            Self::Orphaned | Self::Unknown => 3,
        }
    }

    /// Whether a process of the service may be running.
    pub fn is_active(self) -> bool {
        matches!(
            self,
            Self::Running | Self::Starting | Self::Stopping | Self::CrashLooping | Self::Orphaned
        )
    }
}

impl std::fmt::Display for ServiceState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How a service's process ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExitInfo {
    /// The exit code, when it exited.
    pub code: Option<i32>,
    /// The signal number, when a signal ended it.
    pub signal: Option<i32>,
    /// A description such as `exited with code 1`, `killed by SIGABRT`, `readiness timeout`.
    pub description: String,
    /// When (milliseconds since the Unix epoch).
    pub at_ms: u64,
}

impl ExitInfo {
    /// Whether this exit counts as a success (code 0, or the stop signal the service was
    /// asked to stop with).
    pub fn success(&self) -> bool {
        self.code == Some(0)
    }
}

/// A service's status.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ServiceStatus {
    /// The service.
    pub name: String,
    /// `supervised` or `systemd`.
    pub manager: String,
    /// The state.
    pub state: ServiceState,
    /// A sentence explaining the state, when there is more to say.
    pub message: Option<String>,
    /// The main process.
    pub pid: Option<u32>,
    /// Its process group.
    pub pgid: Option<u32>,
    /// The supervisor's pid (supervised backend).
    pub supervisor_pid: Option<u32>,
    /// Whether that supervisor still runs.
    pub supervisor_alive: Option<bool>,
    /// Time since the main process started.
    #[serde(with = "humantime_serde")]
    pub uptime: Option<Duration>,
    /// Restarts since the last `start`.
    pub restart_count: u32,
    /// The last exit of the main process.
    pub last_exit: Option<ExitInfo>,
    /// Resident memory of the process group, in bytes.
    pub rss_bytes: Option<u64>,
    /// CPU time used by the process group, in milliseconds.
    pub cpu_time_ms: Option<u64>,
    /// Average CPU use since start, in percent of one core.
    pub cpu_percent: Option<f64>,
    /// Where the output goes.
    pub logs: LogLocation,
}

/// Where a service's output is kept.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum LogLocation {
    /// A file rotated by size: `path`, then `path.1` (newest) … `path.N`.
    File {
        /// The current file.
        path: PathBuf,
        /// How many rotated files are kept.
        keep: u32,
    },
    /// The systemd journal (`journalctl -u UNIT`).
    Journal {
        /// The unit.
        unit: String,
    },
}

/// What `install` did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstallOutcome {
    /// Files written.
    pub files: Vec<PathBuf>,
}

/// What `start` did.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StartOutcome {
    /// The status after starting.
    pub status: ServiceStatus,
    /// The service was already running; nothing was started.
    pub already_running: bool,
    /// An unsupervised process left by a dead supervisor was stopped first.
    pub recovered_orphan: Option<u32>,
}

/// What `stop` did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StopOutcome {
    /// Something was running and has been stopped.
    pub was_running: bool,
    /// SIGKILL was needed after the grace period.
    pub killed: bool,
    /// How long stopping took.
    #[serde(with = "humantime_serde")]
    pub took: Duration,
}
