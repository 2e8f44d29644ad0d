//! The one error type of this crate.

use std::path::PathBuf;
use std::time::Duration;

/// Everything that can go wrong while controlling a service. Messages are lower-case fragments
/// that read well after "failed to …" and name the service, path or command involved. No
/// variant ever carries a secret value.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProcError {
    /// The [`ServiceSpec`](crate::ServiceSpec) cannot be used as it is.
    #[error("invalid service spec for `{name}`: {reason}")]
    InvalidSpec {
        /// The service.
        name: String,
        /// What is wrong.
        reason: String,
    },
    /// A file-system operation failed.
    #[error("{action} {}: {error}", path.display())]
    Io {
        /// What was being done, such as "write state file".
        action: &'static str,
        /// The path involved.
        path: PathBuf,
        /// The cause.
        error: std::io::Error,
    },
    /// An operating-system call about a process failed.
    #[error("{action} (service `{name}`): {error}")]
    Os {
        /// The service.
        name: String,
        /// What was being done, such as "signal process group 1234".
        action: String,
        /// The cause.
        error: std::io::Error,
    },
    /// A state or plan file could not be parsed.
    #[error("corrupt file {}: {error}", path.display())]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// The parse error.
        error: serde_json::Error,
    },
    /// The service was never installed with this manager.
    #[error("service `{name}` is not installed (no {})", path.display())]
    NotInstalled {
        /// The service.
        name: String,
        /// The plan file that is missing.
        path: PathBuf,
    },
    /// A secret could not be resolved or delivered (the error names the reference, never a value).
    #[error("secret `{secret}` of service `{name}`: {error}")]
    Secret {
        /// The service.
        name: String,
        /// The secret's name (the variable or credential name).
        secret: String,
        /// The cause (boxed: it is large and rare).
        error: Box<secret_refs::SecretError>,
    },
    /// The supervisor program could not be started.
    #[error("start supervisor {} for `{name}`: {error}", program.display())]
    SupervisorSpawn {
        /// The service.
        name: String,
        /// The program that was run in supervisor mode.
        program: PathBuf,
        /// The cause.
        error: std::io::Error,
    },
    /// The service did not start (start limit hit, readiness never came, the supervisor exited).
    #[error("start service `{name}`: {reason}")]
    StartFailed {
        /// The service.
        name: String,
        /// Why, in words.
        reason: String,
    },
    /// The service (or what is left of its process group) could not be stopped.
    #[error("stop service `{name}`: {reason}")]
    StopFailed {
        /// The service.
        name: String,
        /// Why, in words.
        reason: String,
    },
    /// Waiting for something took longer than allowed.
    #[error("wait for service `{name}` to be {expected}: still not after {timeout:?}")]
    Timeout {
        /// The service.
        name: String,
        /// What was awaited.
        expected: &'static str,
        /// How long we waited.
        timeout: Duration,
    },
    /// Another cutover-proc operation on the same service holds its lock.
    #[error("lock {}: another operation on this service is still running after {timeout:?}", path.display())]
    Locked {
        /// The lock file.
        path: PathBuf,
        /// How long we waited.
        timeout: Duration,
    },
    /// A unit could not be rendered from the spec.
    #[error("render systemd unit for `{name}`: {reason}")]
    Render {
        /// The service.
        name: String,
        /// Why.
        reason: String,
    },
    /// An external command (such as `systemctl`) failed or could not run.
    #[error("run `{command}`: {detail}")]
    Command {
        /// The command line (program and arguments; never secret).
        command: String,
        /// Exit status and standard error, or the spawn error.
        detail: String,
    },
}

impl ProcError {
    pub(crate) fn io(
        action: &'static str,
        path: impl Into<PathBuf>,
    ) -> impl FnOnce(std::io::Error) -> Self {
        let path = path.into();
        move |source| Self::Io {
            action,
            path,
            error: source,
        }
    }

    pub(crate) fn os(name: &str, action: impl Into<String>) -> impl FnOnce(std::io::Error) -> Self {
        let name = name.to_owned();
        let action = action.into();
        move |source| Self::Os {
            name,
            action,
            error: source,
        }
    }
}
