//! [`LiveError`]: what reading a deployment's layout and state can fail with.

use std::path::PathBuf;

/// What went wrong reading or writing the layout, or reading the manifest.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LiveError {
    /// The manifest is invalid (exit 78).
    #[error(transparent)]
    Manifest(#[from] manifest_loader::ManifestError),
    /// A manifest value that parses but cannot work (exit 78).
    #[error("{path}: invalid configuration at `{key}`: {reason}")]
    Config {
        /// The manifest's path.
        path: PathBuf,
        /// The dotted key.
        key: String,
        /// What is wrong and what to do.
        reason: String,
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
}

impl LiveError {
    /// An I/O error while doing `action` to `path`.
    pub fn io(action: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io {
            action,
            path: path.into(),
            error: source,
        }
    }

    /// The exit code a binary should use: 78 for configuration, 2 otherwise.
    pub fn exit_code(&self) -> i32 {
        match self {
            Self::Manifest(_) | Self::Config { .. } => manifest_loader::EXIT_INVALID_CONFIG,
            _ => 2,
        }
    }
}
