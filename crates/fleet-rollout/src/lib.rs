//! Fleet rollouts over the system OpenSSH client.
//!
//! The same release goes to several hosts in batches ([`plan::batch_sizes`]); on each host the
//! single-host pipeline runs remotely (the local `cutover-deploy` binary copied there when its
//! sha256 differs), with its own lock, journal and audit log. Locally, a fleet lock and a fleet
//! journal (fsynced per step) make a killed fleet deploy resumable. When failures exceed
//! `max_fail` ([`plan::FailBudget`]) the rollout stops and every host already switched rolls
//! back to its own previous release, in parallel and bounded. Each switched host arms a
//! dead-man's switch before its switch ([`watchdog`]): unless confirmed over a fresh SSH
//! connection within `confirm_timeout`, it rolls itself back.
//!
//! The planner and the failure budget are pure and tested alone; the transport
//! ([`ssh::Ssh`]) is the system `ssh`, tested against a real sshd in the `fleet` e2e tests.

pub mod config;
pub mod journal;
pub mod plan;
pub mod rollout;
pub mod ssh;
pub mod watchdog;

pub use config::FleetConfig;
pub use journal::{FleetEvent, FleetJournal, HostStep};
pub use plan::{BatchSize, FailBudget, batch_sizes, plan_batches};
pub use rollout::{Fleet, FleetReport, HostReport, HostStatus};

/// What can go wrong before or around a rollout (a host's own failure is in the report).
#[derive(Debug, thiserror::Error)]
pub enum FleetError {
    /// The manifest could not be read.
    #[error(transparent)]
    Manifest(#[from] manifest_loader::ManifestError),
    /// A `[fleet]` key is invalid.
    #[error("invalid configuration: {key}: {reason}")]
    Config {
        /// The key.
        key: String,
        /// What is wrong and what to do.
        reason: String,
    },
    /// Another fleet deploy holds the fleet lock.
    #[error(transparent)]
    Locked(deploy_pipeline::DeployError),
    /// A local file could not be read or written.
    #[error("{0}")]
    Io(String),
    /// `--resume` without an unfinished fleet deploy, or with a changed bundle.
    #[error("cannot resume: {0}")]
    Resume(String),
}

impl FleetError {
    /// The exit code: 78 configuration, 75 locked, 2 otherwise.
    pub fn exit_code(&self) -> i32 {
        match self {
            FleetError::Manifest(e) => e.exit_code(),
            FleetError::Config { .. } => 78,
            FleetError::Locked(e) => e.exit_code(),
            FleetError::Io(_) | FleetError::Resume(_) => 3,
        }
    }
}
