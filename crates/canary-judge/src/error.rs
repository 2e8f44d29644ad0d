//! The crate's one error type: a configuration the judge refuses, or an observation that cannot
//! be true. A canary that looks bad is not an error; that is a [`Verdict`](crate::Verdict).

use crate::Slot;

/// Why a judge could not be built or an observation was refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum JudgeError {
    /// A `[deploy.canary]` setting is out of range.
    #[error("invalid canary setting `{key}` = {value}: {expected}")]
    InvalidConfig {
        /// The setting's key.
        key: &'static str,
        /// The value as given.
        value: String,
        /// What would be accepted.
        expected: &'static str,
    },
    /// A slot reported more failures than requests.
    #[error("{slot} reported {failures} failures in {requests} requests")]
    FailuresExceedRequests {
        /// The slot.
        slot: Slot,
        /// The requests reported.
        requests: u64,
        /// The failures reported.
        failures: u64,
    },
    /// A latency sample is negative, infinite or not a number.
    #[error("{slot} reported a latency of {value} ms, which is not a finite non-negative number")]
    InvalidLatency {
        /// The slot.
        slot: Slot,
        /// The sample.
        value: f64,
    },
}
