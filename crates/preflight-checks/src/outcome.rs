//! What a check says: [`CheckStatus`], [`Outcome`] (from the check) and [`CheckResult`] (the
//! outcome as the runner reports it, with id, duration and whether the ignore list applied).

use std::time::Duration;

use serde::Serialize;

/// The verdict of one check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CheckStatus {
    /// The condition holds.
    Pass,
    /// The condition holds badly enough to deserve a look; the deploy may go on.
    Warn,
    /// The condition does not hold; the deploy must not go on.
    Fail,
    /// The check did not apply (nothing to check); counts as a pass.
    Skip,
}

impl CheckStatus {
    /// The lower-case name used in tables and JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            CheckStatus::Pass => "pass",
            CheckStatus::Warn => "warn",
            CheckStatus::Fail => "fail",
            CheckStatus::Skip => "skip",
        }
    }
}

impl std::fmt::Display for CheckStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a check returns: a status, a one-line message with the measured value, a remedy for
/// warn/fail, and structured data for JSON consumers.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Outcome {
    /// The verdict.
    pub status: CheckStatus,
    /// One line, naming what was measured (`"12.3 GiB free on /opt (41%)"`).
    pub message: String,
    /// What to do about a warning or failure.
    pub remedy: Option<String>,
    /// Measured values for machines (`{"available_bytes": 123}`); `null` when there are none.
    pub data: serde_json::Value,
}

impl Outcome {
    /// A pass with its message.
    pub fn pass(message: impl Into<String>) -> Self {
        Self::new(CheckStatus::Pass, message, None)
    }

    /// A warning with its message and remedy.
    pub fn warn(message: impl Into<String>, remedy: impl Into<String>) -> Self {
        Self::new(CheckStatus::Warn, message, Some(remedy.into()))
    }

    /// A failure with its message and remedy.
    pub fn fail(message: impl Into<String>, remedy: impl Into<String>) -> Self {
        Self::new(CheckStatus::Fail, message, Some(remedy.into()))
    }

    /// A skip: the check had nothing to look at.
    pub fn skip(message: impl Into<String>) -> Self {
        Self::new(CheckStatus::Skip, message, None)
    }

    fn new(status: CheckStatus, message: impl Into<String>, remedy: Option<String>) -> Self {
        Self {
            status,
            message: message.into(),
            remedy,
            data: serde_json::Value::Null,
        }
    }

    /// Attaches structured data.
    #[must_use]
    pub fn with_data(mut self, data: serde_json::Value) -> Self {
        self.data = data;
        self
    }
}

/// One check's outcome as the runner reports it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CheckResult {
    /// The check's id (kebab-case, unique in a run).
    pub id: String,
    /// The check's kind (`disk-free`, `port-free`, ...).
    pub kind: String,
    /// The verdict after the ignore list was applied.
    pub status: CheckStatus,
    /// The one-line message.
    pub message: String,
    /// What to do, for warn/fail.
    pub remedy: Option<String>,
    /// Wall time the check took.
    #[serde(rename = "duration_ms", serialize_with = "serialize_ms")]
    pub duration: Duration,
    /// True when the check failed but its id is on the ignore list, so it counts as a warning.
    pub ignored: bool,
    /// Structured data from the check.
    pub data: serde_json::Value,
}

pub(crate) fn serialize_ms<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    // Milliseconds with microsecond precision: fast checks would otherwise all read 0.
    s.serialize_f64((d.as_micros() as f64) / 1000.0)
}
