//! [`DeployError`]: everything the pipeline can fail with, with the path, key or command.

use std::path::PathBuf;

/// What went wrong outside a deploy's own phases (those end in a
/// [`Outcome`](crate::Outcome) instead).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DeployError {
    /// The manifest is invalid (exit 78).
    #[error(transparent)]
    Manifest(#[from] manifest_loader::ManifestError),
    /// A manifest value that parses but cannot work.
    #[error("{path}: invalid configuration at `{key}`: {reason}")]
    Config {
        /// The manifest's path.
        path: PathBuf,
        /// The dotted key.
        key: String,
        /// What is wrong and what to do.
        reason: String,
    },
    /// Another deploy holds the lock (exit 75).
    #[error("another deploy holds {path}: {owner}")]
    Locked {
        /// The lock file.
        path: PathBuf,
        /// Who holds it, as its owner file says.
        owner: String,
    },
    /// A file operation failed.
    #[error("failed to {action} {path}: {error}")]
    Io {
        /// What was being done ("write", "rename", …).
        action: &'static str,
        /// The path it was done to.
        path: PathBuf,
        /// The I/O error.
        error: std::io::Error,
    },
    /// A state file that cannot be read.
    #[error("{path} is damaged: {reason}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// Why it cannot be used.
        reason: String,
    },
    /// A release that does not exist or is incomplete.
    #[error("release {id} {reason}")]
    Release {
        /// The release id.
        id: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A command-line value that cannot work (exit 64), such as a `--commit` that names no
    /// commit.
    #[error("{reason}")]
    Usage {
        /// What is wrong and what to do.
        reason: String,
    },
    /// A step of the pipeline failed (used inside rollbacks and recovery).
    #[error("{step} failed: {reason}")]
    Step {
        /// The step.
        step: String,
        /// Why.
        reason: String,
    },
}

impl From<live_deployment::LiveError> for DeployError {
    fn from(e: live_deployment::LiveError) -> Self {
        use live_deployment::LiveError as L;
        match e {
            L::Manifest(e) => Self::Manifest(e),
            L::Config { path, key, reason } => Self::Config { path, key, reason },
            L::Io {
                action,
                path,
                error: source,
            } => Self::Io {
                action,
                path,
                error: source,
            },
            L::Corrupt { path, reason } => Self::Corrupt { path, reason },
            L::Release { id, reason } => Self::Release { id, reason },
            other => Self::Step {
                step: "read the deployment".to_owned(),
                reason: other.to_string(),
            },
        }
    }
}

impl DeployError {
    pub(crate) fn io(
        action: &'static str,
        path: impl Into<PathBuf>,
        source: std::io::Error,
    ) -> Self {
        Self::Io {
            action,
            path: path.into(),
            error: source,
        }
    }

    pub(crate) fn step(step: impl Into<String>, reason: impl ToString) -> Self {
        Self::Step {
            step: step.into(),
            reason: reason.to_string(),
        }
    }

    /// The exit code a binary should use: 78 for configuration, 75 for the lock, 64 for a bad
    /// command-line value, 2 otherwise.
    pub fn exit_code(&self) -> i32 {
        match self {
            Self::Manifest(e) => e.exit_code(),
            Self::Config { .. } => manifest_loader::EXIT_INVALID_CONFIG,
            Self::Locked { .. } => 75,
            Self::Usage { .. } => 64,
            _ => 2,
        }
    }
}
