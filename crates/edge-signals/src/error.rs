//! The one error type of this crate.

use std::path::PathBuf;

/// What went wrong while reading an edge log.
///
/// Messages are lower-case fragments that read well after "failed to …".
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SignalsError {
    /// The log (or its rotated generation) could not be opened, inspected or read.
    #[error("{action} edge log {path}: {error}")]
    Io {
        /// What was being done ("open", "read", "stat").
        action: &'static str,
        /// The file.
        path: PathBuf,
        /// The I/O error.
        error: std::io::Error,
    },
    /// The log does not exist: nginx has not been started with the edge log format.
    #[error(
        "edge log {path} does not exist; start the proxy (`cutover-edge up`, or a deploy) so that nginx writes it"
    )]
    Missing {
        /// The file that was expected.
        path: PathBuf,
    },
}

impl SignalsError {
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
}
