//! The crate's one error type. A probe that runs and finds the target unhealthy is not an error
//! (that is a [`ProbeResult`](crate::ProbeResult) with status `fail`); errors are what stops a
//! probe from being run at all (a bad URL, a missing CA file, an unresolvable secret) and a
//! readiness wait that gave up.

use std::path::PathBuf;
use std::time::Duration;

use crate::result::Attempt;

/// Why a probe could not be prepared, or a wait gave up.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProbeError {
    /// A JSON assertion expression does not parse.
    #[error("invalid JSON assertion `{expression}`: {message}")]
    InvalidAssertion {
        /// The expression as written.
        expression: String,
        /// What is wrong.
        message: String,
    },
    /// An expected-status pattern does not parse.
    #[error(
        "invalid expected status `{text}`: use a code (200), a class (2xx) or a range (200-299)"
    )]
    InvalidStatus {
        /// The pattern as written.
        text: String,
    },
    /// A probe's configuration is inconsistent (no target, two targets, an HTTP option on a TCP
    /// probe, a bad regex, …).
    #[error("probe `{probe}`: {message}")]
    InvalidConfig {
        /// The probe's name.
        probe: String,
        /// What is wrong.
        message: String,
    },
    /// The URL cannot be probed.
    #[error("probe `{probe}`: invalid URL `{url}`: {message}")]
    InvalidUrl {
        /// The probe's name.
        probe: String,
        /// The URL as given.
        url: String,
        /// What is wrong.
        message: String,
    },
    /// The extra CA file is missing, unreadable or holds no certificate.
    #[error("probe `{probe}`: CA file {}: {message}", path.display())]
    CaFile {
        /// The probe's name.
        probe: String,
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// A header value (its value is never shown) is not a valid HTTP header value.
    #[error("probe `{probe}`: header `{header}`: {message}")]
    InvalidHeader {
        /// The probe's name.
        probe: String,
        /// The header name.
        header: String,
        /// What is wrong (never the value).
        message: String,
    },
    /// A secret reference for a header could not be resolved.
    #[error(
        "probe `{probe}`: header `{header}`: secret reference could not be resolved: {message}"
    )]
    Secret {
        /// The probe's name.
        probe: String,
        /// The header the secret was for.
        header: String,
        /// The resolver's message (which names the reference, never the value).
        message: String,
    },
    /// No suite of this name exists.
    #[error("no probe suite named `{name}`; known suites: {known}")]
    UnknownSuite {
        /// The name asked for.
        name: String,
        /// The suites that exist, comma-separated.
        known: String,
    },
    /// A readiness wait gave up.
    #[error("probe `{probe}` not ready after {attempts} attempts in {}: {}", humantime::format_duration(round_ms(*elapsed)), history_summary(history))]
    NotReady {
        /// The probe's name.
        probe: String,
        /// How many attempts were made.
        attempts: u32,
        /// How long the wait took.
        elapsed: Duration,
        /// The last attempts, oldest first.
        history: Vec<Attempt>,
    },
}

fn round_ms(d: Duration) -> Duration {
    Duration::from_millis(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

fn history_summary(history: &[Attempt]) -> String {
    let last: Vec<String> = history
        .iter()
        .rev()
        .take(3)
        .rev()
        .map(|a| {
            format!(
                "#{} {}: {}",
                a.number,
                a.result.status.as_str(),
                a.result.reason
            )
        })
        .collect();
    if last.is_empty() {
        "no attempt was made".to_owned()
    } else {
        format!("last attempts: {}", last.join("; "))
    }
}

impl ProbeError {
    /// Whether the error is in the configuration itself (exit 78 for a binary), rather than in
    /// what the configuration points at (exit 3: missing CA file, unresolvable secret, bad URL).
    pub fn is_config(&self) -> bool {
        matches!(
            self,
            ProbeError::InvalidAssertion { .. }
                | ProbeError::InvalidStatus { .. }
                | ProbeError::InvalidConfig { .. }
                | ProbeError::UnknownSuite { .. }
        )
    }
}
