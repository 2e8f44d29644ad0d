//! What one probe attempt found: ok or fail, a reason a person can act on, the status code and
//! the phase timings.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// The verdict of one probe attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    /// Every expectation held.
    Ok,
    /// At least one expectation did not hold, or the target could not be reached in time.
    Fail,
}

impl Outcome {
    /// `"ok"` or `"fail"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::Fail => "fail",
        }
    }
}

/// One attempt of a wait.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Attempt {
    /// 1 for the first attempt.
    pub number: u32,
    /// When it started, in milliseconds since the wait began.
    pub at_ms: f64,
    /// What it found.
    pub result: ProbeResult,
}

/// Phase timings in milliseconds, each measured from the start of the attempt (like curl's
/// `time_connect`, `time_appconnect`, `time_starttransfer` and `time_total`). A phase that was not
/// reached, or does not apply (TLS on plain HTTP), is `None`. With redirects followed, the
/// phases are those of the last hop and `total_ms` covers every hop.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct Timings {
    /// Name resolution and TCP connect finished.
    pub connect_ms: Option<f64>,
    /// TLS handshake finished.
    pub tls_ms: Option<f64>,
    /// The response head arrived.
    pub first_byte_ms: Option<f64>,
    /// The whole attempt, body included (or until it failed or timed out).
    pub total_ms: f64,
}

/// Milliseconds with microsecond resolution, for reports.
pub(crate) fn millis(d: Duration) -> f64 {
    (d.as_secs_f64() * 1_000_000.0).round() / 1000.0
}

/// The result of one probe attempt.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProbeResult {
    /// The probe's name.
    pub name: String,
    /// Ok or fail.
    pub status: Outcome,
    /// Why it failed (`connection refused`, `status 503`, `/state expected "ready", got
    /// "starting"`, …) or, when ok, a one-line summary (`status 200 in 3.2 ms`).
    pub reason: String,
    /// The HTTP status code of the (last) response, when there was one.
    pub status_code: Option<u16>,
    /// Phase timings.
    pub timings_ms: Timings,
}

impl ProbeResult {
    /// Whether the probe passed.
    pub fn is_ok(&self) -> bool {
        self.status == Outcome::Ok
    }
}
