//! Start, stop, restart and watch a service without ever losing the process.
//!
//! The replaced tooling started its service with `nohup`, looked for it again with a `pgrep`
//! pattern that never matched, orphaned its children and fought systemd's own restarts. This
//! crate identifies a process by **what started it** (pid plus start time, and the process
//! group inside the supervisor's session), signals **whole process groups**, and records every
//! state change **atomically**.
//!
//! # Parts
//! - [`ServiceSpec`]: argv (never a shell string), working directory, environment, secrets
//!   ([`secret_refs::SecretRef`], delivered by environment or credential files, never argv),
//!   user, [`RestartSpec`] (on-failure/always/never, exponential backoff, start limit),
//!   [`StopSpec`], [`Readiness`] (`notify`, an exec probe hook, or none), an optional
//!   [`ListenSocket`] to hand over, [`ResourceLimits`], [`NetworkAccess`].
//! - [`ProcessConfig`]: the manifest's `[process]` table (every key optional), applied onto a
//!   spec with [`ProcessConfig::apply_to`] so that a binary's flags can override it after.
//! - [`ProcessManager`]: install, start, stop(grace), restart, status, logs; implemented by
//!   - [`SupervisedManager`] (built in, no root): a detached supervisor per service. Its
//!     program is `cutover-proc`, this crate's `process-control-supervisor` binary, or any
//!     binary that calls [`run_hidden_mode`] first thing in `main` (see
//!     [`SupervisedConfig::supervisor_program`]).
//!   - [`SystemdManager`]: hardened units from [`render_units`], `systemctl` behind a
//!     [`CommandRunner`] ([`SystemCommandRunner`], or [`RecordingRunner`] in tests).
//! - [`ServiceStatus`]: running / starting / stopping / stopped / failed / crash-looping /
//!   orphaned with pid, uptime, restart count, last exit, RSS and CPU (sysinfo).
//! - [`ProcessIdentity`], [`ProcessGroup`]: `/proc`-based identity checks.
//!
//! # Theory of operation (supervised)
//! `start` takes a lock on the service, writes the plan (the spec, secrets as references
//! only), resolves the secrets and launches `PROGRAM __supervise --state-dir DIR` with a clean
//! environment, handing it the secret values on a pipe. The supervisor calls `setsid()`,
//! spawns the service in its own process group, copies its output into a size-rotated log,
//! waits for readiness, restarts it with backoff until the start limit, and writes
//! `state.json` (supervisor and service pid + start time, process group, state, restart count,
//! last exit) at each transition. `stop` asks the supervisor (SIGTERM plus a stop request
//! holding the grace period); the supervisor signals the group, waits, SIGKILLs what is left,
//! then sweeps what left the group (`setsid()`) but, the supervisor being a child subreaper,
//! still descends from it (SIGTERM, SIGKILL at the end of the grace), confirms nothing runs,
//! records `stopped` and exits. `start` on a running
//! service starts nothing; after a supervisor died, `start` stops the orphaned service first
//! (see [`SupervisedManager`]).
//!
//! # Example
//! ```
//! use process_control::{render_units, ServiceSpec, UnitOptions, Readiness};
//!
//! let mut spec = ServiceSpec::new("mcp-hub", ["/opt/mcp-hub/current/bin/hub", "--port", "7000"]);
//! spec.readiness = Readiness::Notify;
//! spec.secrets.insert("GEMINI_API_KEY".into(), "op://prod/mcp-hub/gemini".parse()?);
//! let mut options = UnitOptions::for_layout("/opt/mcp-hub".as_ref(), "mcp-hub");
//! options.exec_shim = Some("/usr/local/bin/cutover-proc".into());
//! let units = render_units(&spec, &options)?;
//! assert!(units.service.contains("Type=notify"));
//! assert!(units.service.contains("LoadCredential=GEMINI_API_KEY:/opt/mcp-hub/state/credentials/mcp-hub/GEMINI_API_KEY"));
//! assert!(units.service.contains("ReadWritePaths=/opt/mcp-hub/logs /opt/mcp-hub/shared"));
//! assert!(!units.service.contains("op://"), "references and values stay out of the unit");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! Running a service under the built-in supervisor (here with `cutover-proc` as the
//! supervisor program):
//! ```no_run
//! use std::time::Duration;
//! use process_control::{ProcessManager, ServiceSpec, SupervisedConfig, SupervisedManager};
//!
//! let config = SupervisedConfig::for_root("/opt/mcp-hub".as_ref())
//!     .with_supervisor_program("/usr/local/bin/cutover-proc");
//! let manager = SupervisedManager::new(config);
//! let spec = ServiceSpec::new("mcp-hub", ["/usr/local/bin/cutover-demo-hub", "--listen", "127.0.0.1:7000"]);
//! let started = manager.start(&spec)?;
//! println!("{} pid {:?}", started.status.state, started.status.pid);
//! manager.stop("mcp-hub", Some(Duration::from_secs(10)))?;
//! # Ok::<(), process_control::ProcError>(())
//! ```

mod config;
mod error;
mod identity;
mod limits;
mod manager;
mod spec;
mod supervised;
mod systemd;
pub mod template;

pub use config::{ManagerKind, ProcessConfig};
pub use error::ProcError;
pub use identity::{ProcStat, ProcessGroup, ProcessIdentity};
pub use limits::{check_limits, nofile_ceiling};
pub use manager::{
    ExitInfo, InstallOutcome, LogLocation, ProcessManager, ServiceState, ServiceStatus,
    StartOutcome, StopOutcome,
};
pub use spec::{
    ListenSocket, NetworkAccess, Readiness, ResourceLimits, RestartPolicy, RestartSpec,
    SecretDelivery, ServiceSpec, StopSignal, StopSpec,
};
pub use supervised::supervisor::{EXEC_SHIM_MODE, SUPERVISE_MODE, run_hidden_mode};
pub use supervised::{
    RestartRecord, RotatingLog, SupervisedConfig, SupervisedManager, SupervisedState, tail_log,
};
pub use systemd::{
    CommandOutput, CommandRunner, RecordingRunner, RenderedUnits, SHOW_PROPERTIES,
    SystemCommandRunner, SystemdConfig, SystemdManager, UnitOptions, parse_show, render_units,
    state_from_show,
};
