//! The one error type of this crate.

use std::net::SocketAddr;
use std::path::PathBuf;

/// What went wrong while rendering, checking or driving nginx.
///
/// Messages are lower-case fragments that read well after "failed to …"; none holds a secret
/// value (the admin token only ever appears as its reference).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EdgeError {
    /// A `[proxy]` value cannot be rendered safely.
    #[error("invalid configuration at {key}: {reason}")]
    InvalidConfig {
        /// The manifest key, such as `proxy.locations[0].path`.
        key: String,
        /// Why.
        reason: String,
    },
    /// A file or directory could not be read or written.
    #[error("{action} {path}: {error}")]
    Io {
        /// What was being done ("write", "read", "create directory").
        action: &'static str,
        /// The path.
        path: PathBuf,
        /// The I/O error.
        error: std::io::Error,
    },
    /// The nginx binary is not installed.
    #[error(
        "nginx not found on PATH or in /usr/sbin; install it: apt-get install -y --no-install-recommends nginx"
    )]
    NginxNotFound,
    /// An nginx command could not run, timed out or failed.
    #[error("`{command}` failed: {reason}")]
    Nginx {
        /// The command line (never holds a secret: secrets live in 0600 include files).
        command: String,
        /// Exit status and the last lines nginx printed.
        reason: String,
    },
    /// nginx did not start serving, or did not stop, in time.
    #[error("nginx under {prefix} {what}")]
    Instance {
        /// The instance's prefix directory.
        prefix: PathBuf,
        /// What did not happen.
        what: String,
    },
    /// The new upstream was refused before any traffic moved.
    #[error("upstream {upstream} refused, traffic unchanged: {reason}")]
    UpstreamUnhealthy {
        /// The upstream that was asked for.
        upstream: SocketAddr,
        /// Why it was refused.
        reason: String,
    },
    /// nginx did not confirm the new upstream; the previous one was put back.
    #[error("switch to {upstream} not confirmed through nginx ({reason}); {rollback}")]
    SwitchFailed {
        /// The upstream that was asked for.
        upstream: SocketAddr,
        /// Why the switch failed.
        reason: String,
        /// What happened to the previous upstream.
        rollback: String,
    },
    /// A secret could not be resolved or is not usable as a bearer token.
    #[error("admin token {reference}: {reason}")]
    Token {
        /// The secret reference (never the value).
        reference: String,
        /// Why.
        reason: String,
    },
    /// The self-signed certificate could not be generated.
    #[error("generate a self-signed certificate: {0}")]
    Certificate(String),
}

impl EdgeError {
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
