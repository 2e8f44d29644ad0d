//! The deploy pipeline: from a commit to a release that serves, is verified, and can be
//! taken back.
//!
//! The replaced tooling deployed in place with `git pull`, found its process by a name pattern
//! that never matched, rolled back behind an interactive prompt and reported success when its
//! own rollback failed. This crate composes the other cutover crates into a pipeline that is
//! safe to interrupt at any instant:
//!
//! * **The manifest** ([`DeployManifest`]): `cutover.toml`, each table typed by the crate that
//!   owns it, read through manifest-loader (unknown keys are errors with line and column).
//! * **The layout** ([`ReleaseLayout`]): `releases/<id>/` (ids sort by UTC time, then the short
//!   commit), `current` swapped atomically (a new link renamed over the old, directory
//!   fsynced), `shared/` linked into each release, `backups/`, `state/`, `logs/`.
//! * **The lock** ([`DeployLock`]): `flock(2)` on `state/deploy.lock` (the kernel frees it when
//!   the holder dies), owner details beside it, an optional wait.
//! * **The journal** ([`Journal`]): each phase transition appended and fsynced before the next
//!   starts; [`Deployer::recover`] (and every deploy, first) rolls an interrupted operation
//!   forward (it had passed every gate) or back.
//! * **Phases** ([`Phase`]): preflight → backup → build & stage → switch → validate → (perf
//!   gate) → commit, with hooks before and after each and on failure.
//! * **Strategies**: `restart` (stop old, start new in place) and `blue-green` (start the new
//!   release in the idle slot, wait until ready, switch the nginx upstream, then keep the old
//!   one running as a warm standby (`[deploy] keep_standby`, default true) or drain and stop
//!   it). A rollback to a healthy standby only switches the upstream back. Readiness waits
//!   watch the process manager, so a release whose process exits fails at once.
//! * **`canary`**: the new release starts in the idle slot, nginx splits traffic by weight
//!   across both slots (`[deploy.canary] steps`), and canary-judge's anytime-valid tests of
//!   the per-slot edge signals promote each step or roll the canary back (exit 2 with the
//!   judge's reason); at 100 % it commits like blue-green.
//! * **Automatic rollback** when build/stage, switch, validate or the perf gate fails:
//!   `current` back to the previous release, restarted or switched back, validated again;
//!   [`Outcome::RolledBack`] (exit 2), or [`Outcome::RollbackFailed`] (exit 4) naming what is
//!   live.
//! * **The audit log** ([`audit`]): one JSON line per operation.
//!
//! The OS sits behind narrow traits ([`env`](mod@env)): the process manager (process-control's
//! [`ProcessManager`](process_control::ProcessManager)), the traffic switch, health checks, the
//! perf gate, a command runner and the clock. [`real_environment`] wires the real ones;
//! `fakes` (feature `test-util`) has in-memory ones.
//!
//! # Example
//! ```
//! use deploy_pipeline::{DeployManifest, StrategyKind};
//!
//! let manifest = DeployManifest::from_str("/srv/hub/cutover.toml", r#"
//!     [service]
//!     name = "hub"
//!     start = ["{release}/bin/hub", "--listen", "127.0.0.1:{port}", "--release-id", "{release_id}"]
//!     port = 7000
//!     secrets = { API_KEY = "env:HUB_API_KEY" }
//!     [layout]
//!     root = "/srv/hub"
//!     keep_releases = 3
//! "#)?;
//! assert_eq!(manifest.strategy(), StrategyKind::Restart);
//! assert_eq!(manifest.root(), std::path::Path::new("/srv/hub"));
//!
//! let bad = DeployManifest::from_str("cutover.toml", "[service]\nname = \"hub\"\nstart = [\"x\"]\nport = 1\nprot = 2\n");
//! assert_eq!(bad.unwrap_err().exit_code(), 78);
//! # Ok::<(), deploy_pipeline::DeployError>(())
//! ```
//!
//! # Features
//! - `test-util`: `fakes`, an in-memory process manager, traffic switch, health checks,
//!   runner and clock for tests of code that drives the pipeline.

pub mod audit;
mod canary;
pub mod env;
mod error;
#[cfg(any(test, feature = "test-util"))]
pub mod fakes;
mod hooks;
mod journal;
mod layout;
mod lock;
mod manifest;
mod operation;
mod orphans;
mod phase;
mod phases;
mod real;
mod recovery;
mod running;
mod source;
mod strategy;
mod systemd;
mod views;

pub use canary::{CanaryConfig, CanaryDecision};
pub use env::{Environment, NoPerfGate, NoTraffic};
pub use error::DeployError;
pub use journal::{Interrupted, Journal, JournalEntry, Operation};
pub use layout::{
    DeployState, RELEASE_RECORD, ReleaseLayout, ReleaseRecord, fsync_dir, release_id, write_atomic,
};
pub use lock::{DeployLock, LockOwner};
pub use manifest::{
    ArtifactConfig, DEFAULT_HOOK_TIMEOUT, DeployConfig, DeployManifest, HooksConfig, LayoutConfig,
    ServiceConfig, StrategyKind, json_schema,
};
pub use operation::{DeployReport, Deployer, Outcome};
pub use phase::{Phase, Slot};
pub use real::{
    BaselineGate, NginxTraffic, ProbeHealth, SystemClock, SystemRunner, real_environment,
};
pub use recovery::RecoverReport;
pub use views::{Plan, PlannedPhase, ReleaseInfo, ServiceProcess, StandbyInfo, StatusReport};

#[cfg(test)]
mod tests;
