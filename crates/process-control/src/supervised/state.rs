//! The files a supervised service keeps in its state directory: the plan (what to run), the
//! state (what runs), the stop request and the lock. Every write is atomic.

use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::identity::{ProcessGroup, ProcessIdentity};
use crate::{ExitInfo, ProcError, ServiceSpec, ServiceState};

/// Milliseconds since the Unix epoch.
pub(crate) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// Writes `bytes` to `path` with mode 0600.
pub(crate) fn atomic_write(path: &Path, bytes: &[u8]) -> Result<(), ProcError> {
    atomic_write_mode(path, bytes, 0o600)
}

/// Writes `bytes` to `path` with `mode` atomically ([`host_util::fs::write_atomic`]).
pub(crate) fn atomic_write_mode(path: &Path, bytes: &[u8], mode: u32) -> Result<(), ProcError> {
    host_util::fs::write_atomic(path, bytes, mode).map_err(ProcError::io("write", path))
}

fn read_json<T: for<'de> Deserialize<'de>>(path: &Path) -> Result<Option<T>, ProcError> {
    match std::fs::read(path) {
        Ok(bytes) => {
            serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|source| ProcError::Corrupt {
                    path: path.to_path_buf(),
                    error: source,
                })
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(ProcError::io("read", path)(e)),
    }
}

fn write_json<T: Serialize>(path: &Path, value: &T) -> Result<(), ProcError> {
    let mut bytes = serde_json::to_vec_pretty(value).map_err(|source| ProcError::Corrupt {
        path: path.to_path_buf(),
        error: source,
    })?;
    bytes.push(b'\n');
    atomic_write(path, &bytes)
}

/// The paths of one service's files.
#[derive(Debug, Clone)]
pub(crate) struct ServicePaths {
    pub(crate) dir: PathBuf,
    pub(crate) log: PathBuf,
}

impl ServicePaths {
    pub(crate) fn plan(&self) -> PathBuf {
        self.dir.join("plan.json")
    }
    pub(crate) fn state(&self) -> PathBuf {
        self.dir.join("state.json")
    }
    pub(crate) fn stop_request(&self) -> PathBuf {
        self.dir.join("stop-request.json")
    }
    pub(crate) fn lock(&self) -> PathBuf {
        self.dir.join("lock")
    }
    pub(crate) fn notify_socket(&self) -> PathBuf {
        self.dir.join("notify.sock")
    }
    pub(crate) fn credentials(&self) -> PathBuf {
        self.dir.join("credentials")
    }
}

/// What the supervisor runs, written by `install`. Secrets appear as references only, and
/// `literal:` references not at all (their value would land on disk): they are listed in
/// `unpersisted_secrets`, and such a plan can only be started with the spec in hand.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Plan {
    pub(crate) spec: ServiceSpec,
    pub(crate) log_path: PathBuf,
    pub(crate) log_max_bytes: u64,
    pub(crate) log_keep: u32,
    #[serde(default)]
    pub(crate) unpersisted_secrets: Vec<String>,
}

impl Plan {
    pub(crate) fn new(
        spec: &ServiceSpec,
        log_path: PathBuf,
        log_max_bytes: u64,
        log_keep: u32,
    ) -> Self {
        let mut spec = spec.clone();
        let literal: Vec<String> = spec
            .secrets
            .iter()
            .filter(|(_, r)| r.scheme() == "literal")
            .map(|(k, _)| k.clone())
            .collect();
        spec.secrets.retain(|k, _| !literal.contains(k));
        Self {
            spec,
            log_path,
            log_max_bytes,
            log_keep,
            unpersisted_secrets: literal,
        }
    }

    pub(crate) fn load(path: &Path) -> Result<Option<Self>, ProcError> {
        read_json(path)
    }

    pub(crate) fn save(&self, path: &Path) -> Result<(), ProcError> {
        write_json(path, self)
    }
}

/// One restart, for the record (the last 32 are kept).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RestartRecord {
    /// When the process exited (ms since the epoch).
    pub exited_at_ms: u64,
    /// The backoff chosen.
    pub delay_ms: u64,
    /// When the new process started (ms since the epoch), once it has.
    pub started_at_ms: Option<u64>,
}

/// The running state of a supervised service, written by its supervisor at every transition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SupervisedState {
    /// The state the supervisor last recorded.
    pub state: ServiceState,
    /// A sentence about it.
    pub message: Option<String>,
    /// The supervisor.
    pub supervisor: Option<ProcessIdentity>,
    /// The service's main process.
    pub service: Option<ProcessIdentity>,
    /// The service's process group.
    pub group: Option<ProcessGroup>,
    /// When the main process started (ms since the epoch).
    pub started_at_ms: Option<u64>,
    /// Restarts since the supervisor started.
    pub restart_count: u32,
    /// The last exit.
    pub last_exit: Option<ExitInfo>,
    /// Recent restarts.
    pub restarts: Vec<RestartRecord>,
    /// When the state was written.
    pub updated_at_ms: u64,
}

impl SupervisedState {
    pub(crate) fn new(state: ServiceState) -> Self {
        Self {
            state,
            message: None,
            supervisor: None,
            service: None,
            group: None,
            started_at_ms: None,
            restart_count: 0,
            last_exit: None,
            restarts: Vec::new(),
            updated_at_ms: now_ms(),
        }
    }

    pub(crate) fn load(path: &Path) -> Result<Option<Self>, ProcError> {
        read_json(path)
    }

    pub(crate) fn save(&mut self, path: &Path) -> Result<(), ProcError> {
        self.updated_at_ms = now_ms();
        write_json(path, self)
    }
}

/// Written by `stop` before it signals the supervisor: the grace period to use.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub(crate) struct StopRequest {
    #[serde(with = "humantime_serde")]
    pub(crate) grace: Duration,
}

impl StopRequest {
    pub(crate) fn load(path: &Path) -> Option<Self> {
        read_json(path).ok().flatten()
    }
    pub(crate) fn save(&self, path: &Path) -> Result<(), ProcError> {
        write_json(path, self)
    }
}

/// The secret values the caller hands the supervisor on its standard input.
pub(crate) type SecretPayload = BTreeMap<String, String>;

/// An exclusive `flock` on the service's lock file, so that two `start`/`stop` calls on one
/// service do not interleave. Released when dropped (or when the holder dies).
#[derive(Debug)]
pub(crate) struct OpLock {
    _file: File,
}

impl OpLock {
    pub(crate) fn acquire(path: &Path, timeout: Duration) -> Result<Self, ProcError> {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(path)
            .map_err(ProcError::io("open lock file", path))?;
        let end = std::time::Instant::now() + timeout;
        loop {
            match file.try_lock() {
                Ok(()) => return Ok(Self { _file: file }),
                Err(std::fs::TryLockError::WouldBlock) if std::time::Instant::now() < end => {
                    std::thread::sleep(Duration::from_millis(20));
                }
                Err(std::fs::TryLockError::WouldBlock) => {
                    return Err(ProcError::Locked {
                        path: path.to_path_buf(),
                        timeout,
                    });
                }
                Err(std::fs::TryLockError::Error(e)) => {
                    return Err(ProcError::io("lock", path)(e));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_round_trips_atomically_and_corruption_names_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        assert!(SupervisedState::load(&path).unwrap().is_none());
        let mut state = SupervisedState::new(ServiceState::Running);
        state.service = ProcessIdentity::of(std::process::id());
        state.save(&path).unwrap();
        assert_eq!(SupervisedState::load(&path).unwrap().unwrap(), state);
        let leftovers: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(leftovers.len(), 1, "no temporary files left: {leftovers:?}");
        std::fs::write(&path, "{not json").unwrap();
        let err = SupervisedState::load(&path).unwrap_err().to_string();
        assert!(err.contains("state.json"), "{err}");
    }

    #[test]
    fn plan_keeps_references_but_never_literal_values() {
        let mut spec = ServiceSpec::new("hub", ["/bin/true"]);
        spec.secrets
            .insert("A".into(), "literal:canary-literal-value".parse().unwrap());
        spec.secrets
            .insert("B".into(), "env:B_SOURCE".parse().unwrap());
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("plan.json");
        Plan::new(&spec, dir.path().join("log"), 10, 2)
            .save(&path)
            .unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(!text.contains("canary-literal-value"));
        let plan = Plan::load(&path).unwrap().unwrap();
        assert_eq!(plan.unpersisted_secrets, ["A"]);
        assert_eq!(plan.spec.secrets.len(), 1);
    }

    #[test]
    fn the_lock_is_exclusive_until_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("lock");
        let held = OpLock::acquire(&path, Duration::from_secs(1)).unwrap();
        let err = OpLock::acquire(&path, Duration::from_millis(100)).unwrap_err();
        assert!(matches!(err, ProcError::Locked { .. }), "{err}");
        drop(held);
        OpLock::acquire(&path, Duration::from_millis(100)).unwrap();
    }
}
