//! The phases of a deploy and the slots a release runs in.

use serde::{Deserialize, Serialize};

/// A deploy phase, in pipeline order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Phase {
    /// The `[preflight]` checks.
    Preflight,
    /// The pre-deploy backup.
    Backup,
    /// Build the release and stage it under `releases/<id>`.
    Build,
    /// Start the new release and move traffic (or restart in place); swap `current`.
    Switch,
    /// The validation suite against the new release.
    Validate,
    /// The perf gate (when enabled).
    Perf,
    /// The stability window: the release must stay ready and unrestarted for
    /// `[deploy] stable_for` before it is committed.
    Stable,
    /// Record the release as good, stop the old one, prune old releases.
    Commit,
}

impl Phase {
    /// Every phase, in order.
    pub const ALL: [Phase; 8] = [
        Phase::Preflight,
        Phase::Backup,
        Phase::Build,
        Phase::Switch,
        Phase::Validate,
        Phase::Perf,
        Phase::Stable,
        Phase::Commit,
    ];

    /// The name used in the journal, the audit log, hooks and `CUTOVER_PHASE`.
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Preflight => "preflight",
            Phase::Backup => "backup",
            Phase::Build => "build",
            Phase::Switch => "switch",
            Phase::Validate => "validate",
            Phase::Perf => "perf",
            Phase::Stable => "stable",
            Phase::Commit => "commit",
        }
    }
}

impl std::fmt::Display for Phase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

pub use live_deployment::Slot;
