//! The one error type of this crate.

use std::path::PathBuf;

/// What went wrong while configuring rules, reading or writing state, exporting or notifying.
///
/// Messages are lower-case fragments that read well after "failed to …" and name what a person
/// needs to find the problem: the rule, the path, the URL (scheme, host and port only: webhook
/// paths often carry a token), the command.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AlertError {
    /// A rule in the configuration is not usable.
    #[error("alert rule `{rule}`: {message}")]
    InvalidRule {
        /// The rule's name (or its position when it has no usable name).
        rule: String,
        /// What is wrong and what to do.
        message: String,
    },
    /// A condition such as `< 0.95` could not be parsed.
    #[error("invalid condition `{text}`: {message}")]
    InvalidCondition {
        /// The condition as written.
        text: String,
        /// What is wrong.
        message: String,
    },
    /// The state file could not be read or parsed.
    #[error("failed to read alert state {path}: {message}")]
    StateRead {
        /// The state file.
        path: PathBuf,
        /// Why.
        message: String,
    },
    /// The state file could not be written atomically.
    #[error("failed to write alert state {path}: {error}")]
    StateWrite {
        /// The state file.
        path: PathBuf,
        /// The I/O error.
        error: std::io::Error,
    },
    /// The Prometheus rules file could not be written.
    #[error("failed to export rules to {path}: {message}")]
    Export {
        /// The output file.
        path: PathBuf,
        /// Why.
        message: String,
    },
    /// An HTTP request (webhook or source) failed.
    #[error("request to {target} failed: {message}")]
    Http {
        /// `scheme://host:port` of the request; never the path or query.
        target: String,
        /// Why.
        message: String,
    },
    /// A notification command failed.
    #[error("notification command `{command}` failed: {message}")]
    Command {
        /// The program that was run (argv\[0\] only).
        command: String,
        /// Why.
        message: String,
    },
    /// A notifier gave up after its retries.
    #[error("notifier {notifier} gave up after {attempts} attempts: {message}")]
    NotifyFailed {
        /// Which notifier (`webhook http://host:port`, `command prog`).
        notifier: String,
        /// How many attempts were made.
        attempts: u32,
        /// The last failure.
        message: String,
    },
}
