//! Waiting for readiness with Kubernetes probe semantics: an initial delay, then one attempt per
//! period (each bounded by the probe's own timeout), ready after `success_threshold` successes in
//! a row; the wait gives up after `failure_threshold` failed attempts or when the overall budget
//! runs out, and says why with the history of the last attempts.
//!
//! Failures are counted over the whole wait (as a start-up probe does before its first success),
//! not only in a row, so that a flapping target cannot keep a wait alive forever.

use std::collections::VecDeque;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use crate::error::ProbeError;
use crate::probe::Probe;
use crate::result::{Attempt, ProbeResult, millis};

/// How many attempts a report keeps.
pub const HISTORY_LEN: usize = 10;

/// When to probe and when to stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WaitPolicy {
    /// Time before the first attempt (default 0).
    pub initial_delay: Duration,
    /// Time from the start of one attempt to the start of the next (default 1 s).
    pub period: Duration,
    /// Successes in a row needed to be ready (default 1).
    pub success_threshold: u32,
    /// Failed attempts after which the wait gives up (default 30).
    pub failure_threshold: u32,
    /// An overall limit on the wait, initial delay included (default none: the failure
    /// threshold bounds it).
    pub budget: Option<Duration>,
}

impl Default for WaitPolicy {
    fn default() -> Self {
        WaitPolicy {
            initial_delay: Duration::ZERO,
            period: Duration::from_secs(1),
            success_threshold: 1,
            failure_threshold: 30,
            budget: None,
        }
    }
}

/// A wait that ended with the target ready.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WaitReport {
    /// The probe's name.
    pub probe: String,
    /// Attempts made.
    pub attempts: u32,
    /// Time from the start of the wait to readiness, in milliseconds.
    pub elapsed_ms: f64,
    /// The last attempts (at most [`HISTORY_LEN`]), oldest first.
    pub history: Vec<Attempt>,
}

/// Probes until ready or until the policy gives up.
///
/// # Errors
/// [`ProbeError::InvalidConfig`] for a policy with a zero period or threshold, and
/// [`ProbeError::NotReady`], holding the last attempts, when the wait gives up.
#[tracing::instrument(skip_all, fields(probe = %probe.name()))]
pub async fn wait_ready<P: Probe>(
    probe: &P,
    policy: &WaitPolicy,
) -> Result<WaitReport, ProbeError> {
    let name = probe.name().to_owned();
    if policy.period.is_zero() || policy.success_threshold == 0 || policy.failure_threshold == 0 {
        return Err(ProbeError::InvalidConfig {
            probe: name,
            message: "the wait needs a period above 0s and thresholds of at least 1".to_owned(),
        });
    }
    let start = Instant::now();
    let deadline = policy.budget.map(|b| start + b);
    let mut history: VecDeque<Attempt> = VecDeque::with_capacity(HISTORY_LEN);
    let (mut attempts, mut failures, mut successes) = (0u32, 0u32, 0u32);
    let give_up = |attempts: u32, history: VecDeque<Attempt>| ProbeError::NotReady {
        probe: probe.name().to_owned(),
        attempts,
        elapsed: start.elapsed(),
        history: history.into(),
    };

    let first = start + policy.initial_delay;
    if deadline.is_some_and(|d| first > d) {
        return Err(give_up(0, history));
    }
    tokio::time::sleep_until(first).await;
    loop {
        let began = Instant::now();
        attempts += 1;
        let result = match deadline {
            Some(d) => match tokio::time::timeout_at(d, probe.check()).await {
                Ok(result) => result,
                Err(_) => budget_exhausted(&name, policy, began),
            },
            None => probe.check().await,
        };
        let ok = result.is_ok();
        tracing::debug!(attempt = attempts, ok, reason = %result.reason, "readiness attempt");
        if history.len() == HISTORY_LEN {
            history.pop_front();
        }
        history.push_back(Attempt {
            number: attempts,
            at_ms: millis(began - start),
            result,
        });
        if ok {
            successes += 1;
            if successes >= policy.success_threshold {
                return Ok(WaitReport {
                    probe: name,
                    attempts,
                    elapsed_ms: millis(start.elapsed()),
                    history: history.into(),
                });
            }
        } else {
            successes = 0;
            failures += 1;
            if failures >= policy.failure_threshold {
                return Err(give_up(attempts, history));
            }
        }
        let next = began + policy.period;
        if deadline.is_some_and(|d| next > d) {
            return Err(give_up(attempts, history));
        }
        tokio::time::sleep_until(next).await;
    }
}

fn budget_exhausted(name: &str, policy: &WaitPolicy, began: Instant) -> ProbeResult {
    let budget = policy.budget.unwrap_or_default();
    ProbeResult {
        name: name.to_owned(),
        status: crate::result::Outcome::Fail,
        reason: format!(
            "the wait's overall budget of {} ran out during the attempt",
            humantime::format_duration(budget)
        ),
        status_code: None,
        timings_ms: crate::result::Timings {
            total_ms: millis(began.elapsed()),
            ..Default::default()
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::result::{Outcome, Timings};
    use std::sync::Mutex;

    /// A probe that answers from a script (true = ok), then repeats the last answer.
    struct Scripted {
        script: Mutex<VecDeque<bool>>,
        last: Mutex<bool>,
        calls: Mutex<Vec<Instant>>,
    }

    impl Scripted {
        fn new(script: &[bool]) -> Self {
            Scripted {
                script: Mutex::new(script.iter().copied().collect()),
                last: Mutex::new(false),
                calls: Mutex::new(Vec::new()),
            }
        }
    }

    impl Probe for Scripted {
        fn name(&self) -> &str {
            "scripted"
        }

        async fn check(&self) -> ProbeResult {
            self.calls.lock().unwrap().push(Instant::now());
            let ok = {
                let next = self.script.lock().unwrap().pop_front();
                let mut last = self.last.lock().unwrap();
                if let Some(n) = next {
                    *last = n;
                }
                *last
            };
            let n = self.calls.lock().unwrap().len();
            ProbeResult {
                name: "scripted".into(),
                status: if ok { Outcome::Ok } else { Outcome::Fail },
                reason: if ok {
                    format!("fine #{n}")
                } else {
                    format!("state starting #{n}")
                },
                status_code: None,
                timings_ms: Timings::default(),
            }
        }
    }

    fn policy(success: u32, failure: u32) -> WaitPolicy {
        WaitPolicy {
            period: Duration::from_secs(1),
            success_threshold: success,
            failure_threshold: failure,
            ..WaitPolicy::default()
        }
    }

    #[tokio::test(start_paused = true)]
    async fn ready_after_the_success_threshold_in_a_row() {
        let probe = Scripted::new(&[false, true, false, true, true, true]);
        let report = wait_ready(&probe, &policy(2, 10)).await.unwrap();
        assert_eq!(
            report.attempts, 5,
            "a failure between successes resets the run"
        );
        assert_eq!(report.history.len(), 5);
        assert!(report.history.last().unwrap().result.is_ok());
        assert_eq!(report.history[4].at_ms, 4000.0, "one attempt per period");
    }

    #[tokio::test(start_paused = true)]
    async fn gives_up_at_the_failure_threshold_with_the_history() {
        let probe = Scripted::new(&[false]);
        let err = wait_ready(&probe, &policy(1, 12)).await.unwrap_err();
        let ProbeError::NotReady {
            attempts,
            history,
            elapsed,
            ..
        } = &err
        else {
            panic!("{err}")
        };
        assert_eq!(*attempts, 12);
        assert_eq!(history.len(), HISTORY_LEN);
        assert_eq!(history.first().unwrap().number, 3);
        assert_eq!(*elapsed, Duration::from_secs(11));
        let text = err.to_string();
        assert!(
            text.contains("not ready after 12 attempts in 11s"),
            "{text}"
        );
        assert!(text.contains("#12 fail: state starting #12"), "{text}");
    }

    #[tokio::test(start_paused = true)]
    async fn failures_count_over_the_whole_wait() {
        // A flapping target: ok, fail, ok, fail… with two successes needed, it never gets ready.
        let probe = Scripted::new(&[true, false, true, false, true, false, true, false]);
        let err = wait_ready(&probe, &policy(2, 4)).await.unwrap_err();
        assert!(
            matches!(err, ProbeError::NotReady { attempts: 8, .. }),
            "{err}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn initial_delay_and_budget_are_honoured() {
        let probe = Scripted::new(&[false]);
        let started = Instant::now();
        let p = WaitPolicy {
            initial_delay: Duration::from_secs(5),
            budget: Some(Duration::from_millis(8500)),
            ..policy(1, 100)
        };
        let err = wait_ready(&probe, &p).await.unwrap_err();
        let calls = probe.calls.lock().unwrap().clone();
        assert_eq!(calls[0] - started, Duration::from_secs(5));
        assert_eq!(calls.len(), 4, "attempts at 5, 6, 7 and 8 s fit in 8.5 s");
        assert!(matches!(err, ProbeError::NotReady { attempts: 4, .. }));
    }

    #[tokio::test(start_paused = true)]
    async fn a_zero_threshold_is_rejected() {
        let probe = Scripted::new(&[true]);
        assert!(
            wait_ready(&probe, &policy(0, 1))
                .await
                .unwrap_err()
                .is_config()
        );
    }
}
