//! The narrow traits the pipeline reaches the OS through, so that its logic is tested with
//! fakes (`crate::fakes`, feature `test-util`) and the real implementations
//! (`real_environment`) end to end.
//!
//! The process manager is process-control's own [`process_control::ProcessManager`] trait.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use process_control::ProcessManager;

/// The time of day, for release ids and records (durations use the monotonic clock).
pub trait Clock: Send + Sync {
    /// Now.
    fn now(&self) -> jiff::Timestamp;

    /// Monotonic time since an arbitrary origin, for measuring waits.
    fn monotonic(&self) -> Duration {
        static ORIGIN: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
        ORIGIN.get_or_init(std::time::Instant::now).elapsed()
    }

    /// Sleeps for `duration` (a fake moves its time on instead).
    fn sleep(&self, duration: Duration) {
        std::thread::sleep(duration);
    }
}

/// A command to run: argv (never a shell string), directory, extra environment and a limit.
#[derive(Debug, Clone)]
pub struct CommandRequest<'a> {
    /// Program and arguments.
    pub argv: &'a [String],
    /// Working directory.
    pub cwd: &'a Path,
    /// Variables added to the inherited environment.
    pub env: &'a [(String, String)],
    /// After this the command's process group is killed.
    pub timeout: Duration,
}

/// What a command did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandResult {
    /// The exit code (`None`: killed by a signal or by the timeout).
    pub code: Option<i32>,
    /// Whether the timeout killed it.
    pub timed_out: bool,
    /// Its standard output (at most the last 64 KiB).
    pub stdout: String,
    /// Its standard error (at most the last 64 KiB).
    pub stderr: String,
}

impl CommandResult {
    /// Exit code 0.
    pub fn success(&self) -> bool {
        self.code == Some(0)
    }
}

/// Runs build commands, hooks and `git`.
pub trait CommandRunner: Send + Sync {
    /// Runs `request` to completion or to its timeout.
    ///
    /// # Errors
    /// A message when the command cannot be started at all.
    fn run(&self, request: &CommandRequest<'_>) -> Result<CommandResult, String>;
}

/// Moves traffic between the blue-green slots (nginx in real life).
pub trait Traffic: Send + Sync {
    /// Whether the proxy runs.
    fn is_running(&self) -> bool;
    /// The upstream traffic goes to now.
    ///
    /// # Errors
    /// A message when it cannot be read.
    fn current(&self) -> Result<Option<SocketAddr>, String>;
    /// The upstream the running proxy itself serves (nginx's control listener), which a
    /// killed switch can leave different from [`Self::current`]'s file. Default: `current`.
    ///
    /// # Errors
    /// A message when the proxy does not answer.
    fn serving(&self) -> Result<Option<SocketAddr>, String> {
        self.current()
    }
    /// Starts the proxy serving `upstream`.
    ///
    /// # Errors
    /// A message when it does not start.
    fn start(&self, upstream: SocketAddr) -> Result<(), String>;
    /// Moves traffic to `upstream`, confirmed serving `release` when given; on failure traffic
    /// stays where it was.
    ///
    /// # Errors
    /// A message naming why the switch was refused or failed.
    fn switch(&self, upstream: SocketAddr, release: Option<&str>) -> Result<(), String>;
    /// As [`Self::switch`], with `backup` listed as nginx's `backup` server: the warm
    /// standby, which serves while the live upstream fails. The default ignores `backup`.
    ///
    /// # Errors
    /// As [`Self::switch`].
    fn switch_with_backup(
        &self,
        upstream: SocketAddr,
        backup: Option<SocketAddr>,
        release: Option<&str>,
    ) -> Result<(), String> {
        let _ = backup;
        self.switch(upstream, release)
    }
    /// Stops the proxy.
    ///
    /// # Errors
    /// A message when it survives.
    fn stop(&self) -> Result<(), String>;
    /// Canary: splits traffic by weight, `canary_percent` of it to `canary` (confirmed
    /// serving `release` when given) and the rest to `baseline`. The default cannot.
    ///
    /// # Errors
    /// A message naming why the split was refused or failed; traffic then stays as it was.
    fn split(
        &self,
        baseline: SocketAddr,
        canary: SocketAddr,
        canary_percent: u8,
        release: Option<&str>,
    ) -> Result<(), String> {
        let _ = (baseline, canary, canary_percent, release);
        Err("this traffic switch cannot split traffic by weight".to_owned())
    }
    /// Whether a weighted split is routed now (a canary in progress or interrupted).
    fn splitting(&self) -> bool {
        false
    }
    /// The JSON-lines access log the proxy writes (the edge signals), when it keeps one.
    fn edge_log(&self) -> Option<PathBuf> {
        None
    }
}

/// Where a release answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// `http://127.0.0.1:PORT`.
    pub base_url: String,
    /// The release id the service should report.
    pub release: String,
}

/// Readiness and validation of a release.
pub trait Health: Send + Sync {
    /// Waits until `target` is ready (and names its release, when the manifest asks) or
    /// `budget` runs out.
    ///
    /// # Errors
    /// Why it is not ready, from the last attempt.
    fn wait_ready(&self, target: &Target, budget: Duration) -> Result<(), String>;
    /// One attempt of the readiness suite against `target`, cut at `limit` (each probe keeps
    /// its own timeout within it). The pipeline's readiness wait repeats it every period for
    /// the whole `ready_timeout`, asking the process manager between attempts.
    ///
    /// # Errors
    /// Why it is not ready.
    fn check_ready(&self, target: &Target, limit: Duration) -> Result<(), String> {
        self.wait_ready(target, limit)
    }
    /// Runs the validation suite against `target`, retried until it passes or `budget` ends.
    ///
    /// # Errors
    /// The failing probes and why.
    fn validate(&self, target: &Target, budget: Duration) -> Result<(), String>;
}

/// The perf gate.
pub trait PerfGate: Send + Sync {
    /// Loads `target` and judges it against the saved baseline.
    ///
    /// # Errors
    /// Why it regressed or could not run.
    fn check(&self, target: &Target) -> Result<String, String>;
}

/// Everything the pipeline reaches the OS through.
#[allow(missing_debug_implementations)]
pub struct Environment {
    /// The service manager.
    pub procs: Box<dyn ProcessManager + Send + Sync>,
    /// The traffic switch.
    pub traffic: Box<dyn Traffic>,
    /// Readiness and validation.
    pub health: Box<dyn Health>,
    /// The perf gate.
    pub perf: Box<dyn PerfGate>,
    /// Commands (build, hooks, git).
    pub runner: Box<dyn CommandRunner>,
    /// The clock.
    pub clock: Box<dyn Clock>,
}

/// A traffic switch for the restart strategy: there is no proxy.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoTraffic;

impl Traffic for NoTraffic {
    fn is_running(&self) -> bool {
        false
    }
    fn current(&self) -> Result<Option<SocketAddr>, String> {
        Ok(None)
    }
    fn start(&self, _upstream: SocketAddr) -> Result<(), String> {
        Err("no proxy is configured".to_owned())
    }
    fn switch(&self, _upstream: SocketAddr, _release: Option<&str>) -> Result<(), String> {
        Err("no proxy is configured".to_owned())
    }
    fn stop(&self) -> Result<(), String> {
        Ok(())
    }
}

/// A perf gate that always passes (the gate is off).
#[derive(Debug, Default, Clone, Copy)]
pub struct NoPerfGate;

impl PerfGate for NoPerfGate {
    fn check(&self, _target: &Target) -> Result<String, String> {
        Ok("perf gate off".to_owned())
    }
}
