//! The [`Runner`]: runs checks concurrently, each bounded by its timeout, applies the ignore
//! list, and returns a [`Report`].
//!
//! # Theory of operation
//! Every check runs on a worker thread of its own, watched by a supervisor thread that waits for
//! the worker's outcome until the check's timeout (plus a short grace for checks that stop their
//! own children at the deadline). A worker that panics is caught (`catch_unwind`) and reported as
//! a `fail` naming the panic; a worker still running at the timeout is abandoned (threads cannot
//! be killed; a check that starts processes kills them itself at the deadline) and reported as a
//! `fail` saying it timed out. Exclusive checks (builds, test suites) share one supervisor that
//! runs them one after another while the other checks run alongside. Results keep the order in
//! which checks were added.

use std::collections::BTreeSet;
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::{Check, CheckContext, CheckResult, CheckStatus, Outcome, PreflightError};

/// Extra time the supervisor waits past a check's timeout, so that a check that honours its
/// deadline (killing its child process) can report what it saw rather than a bare "timed out".
const GRACE: Duration = Duration::from_secs(2);

/// Which failures count as warnings (kubeadm's `--ignore-preflight-errors`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum IgnoreList {
    /// Nothing is ignored.
    #[default]
    None,
    /// The failures of these ids become warnings.
    Ids(BTreeSet<String>),
    /// Every failure becomes a warning (`all`).
    All,
}

impl IgnoreList {
    /// Builds the list from ids; `all` anywhere ignores everything. Ids are trimmed and empty
    /// ones dropped, so `"a, b,"` split on commas works.
    pub fn from_ids<I, S>(ids: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let mut set = BTreeSet::new();
        for id in ids {
            let id = id.as_ref().trim();
            if id.eq_ignore_ascii_case("all") {
                return IgnoreList::All;
            }
            if !id.is_empty() {
                set.insert(id.to_owned());
            }
        }
        if set.is_empty() {
            IgnoreList::None
        } else {
            IgnoreList::Ids(set)
        }
    }

    /// Parses a comma-separated list (`"memory,port-free"` or `"all"`).
    pub fn parse(list: &str) -> Self {
        Self::from_ids(list.split(','))
    }

    /// Both lists together.
    #[must_use]
    pub fn union(self, other: IgnoreList) -> Self {
        match (self, other) {
            (IgnoreList::All, _) | (_, IgnoreList::All) => IgnoreList::All,
            (IgnoreList::None, x) | (x, IgnoreList::None) => x,
            (IgnoreList::Ids(mut a), IgnoreList::Ids(b)) => {
                a.extend(b);
                IgnoreList::Ids(a)
            }
        }
    }

    /// Whether failures of `id` are ignored.
    pub fn contains(&self, id: &str) -> bool {
        match self {
            IgnoreList::None => false,
            IgnoreList::Ids(ids) => ids.contains(id),
            IgnoreList::All => true,
        }
    }

    /// The named ids (empty for `None` and `All`).
    pub fn ids(&self) -> impl Iterator<Item = &str> {
        let set = match self {
            IgnoreList::Ids(ids) => Some(ids),
            _ => None,
        };
        set.into_iter().flatten().map(String::as_str)
    }
}

/// Runs checks; see the module docs for how.
///
/// ```
/// use preflight_checks::{CheckStatus, IgnoreList, Runner, checks::CpuCount};
///
/// let report = Runner::new()
///     .with_check(CpuCount::new("cpu-count").fail_below(1_000_000))
///     .with_ignore(IgnoreList::parse("cpu-count"))
///     .run();
/// assert_eq!(report.checks[0].status, CheckStatus::Warn);
/// assert!(report.checks[0].ignored);
/// ```
#[derive(Debug, Default, Clone)]
pub struct Runner {
    checks: Vec<Arc<dyn Check>>,
    ignore: IgnoreList,
}

impl Runner {
    /// A runner with no checks and nothing ignored.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a check.
    #[must_use]
    pub fn with_check(mut self, check: impl Check + 'static) -> Self {
        self.checks.push(Arc::new(check));
        self
    }

    /// Adds checks already shared.
    #[must_use]
    pub fn with_checks(mut self, checks: impl IntoIterator<Item = Arc<dyn Check>>) -> Self {
        self.checks.extend(checks);
        self
    }

    /// Sets the ignore list.
    #[must_use]
    pub fn with_ignore(mut self, ignore: IgnoreList) -> Self {
        self.ignore = ignore;
        self
    }

    /// The checks, in order.
    pub fn checks(&self) -> &[Arc<dyn Check>] {
        &self.checks
    }

    /// Fails when the ignore list names an id no check has (a typo would otherwise silently
    /// ignore nothing). `list` names where the ids came from, for the message.
    ///
    /// # Errors
    /// [`PreflightError::UnknownId`] for the first unknown id.
    pub fn validate_ignore(&self, list: &str) -> Result<(), PreflightError> {
        for id in self.ignore.ids() {
            self.require_id(list, id)?;
        }
        Ok(())
    }

    /// Keeps only the checks whose ids are given (`--only`).
    ///
    /// # Errors
    /// [`PreflightError::UnknownId`] when an id names no check.
    pub fn only<S: AsRef<str>>(mut self, ids: &[S]) -> Result<Self, PreflightError> {
        for id in ids {
            self.require_id("--only", id.as_ref())?;
        }
        self.checks
            .retain(|c| ids.iter().any(|id| id.as_ref() == c.id()));
        Ok(self)
    }

    fn require_id(&self, list: &str, id: &str) -> Result<(), PreflightError> {
        if self.checks.iter().any(|c| c.id() == id) {
            return Ok(());
        }
        let known: Vec<&str> = self.checks.iter().map(|c| c.id()).collect();
        let hint = crate::suggest(id, known.iter().copied())
            .map(|s| format!("; did you mean `{s}`?"))
            .unwrap_or_default();
        Err(PreflightError::UnknownId {
            list: list.to_owned(),
            id: id.to_owned(),
            hint,
            known: known.join(", "),
        })
    }

    /// Runs every check and returns the report. Never fails: a check that cannot evaluate,
    /// panics or times out is a `fail` in the report.
    #[tracing::instrument(name = "preflight", skip_all, fields(checks = self.checks.len()))]
    pub fn run(&self) -> Report {
        let started = Instant::now();
        let (tx, rx) = mpsc::channel::<(usize, CheckResult)>();
        let mut lane = Vec::new();
        for (index, check) in self.checks.iter().enumerate() {
            if check.exclusive() {
                lane.push((index, check.clone()));
                continue;
            }
            let (worker_tx, worker_check) = (tx.clone(), check.clone());
            let span = tracing::Span::current();
            let spawned = std::thread::Builder::new()
                .name(format!("preflight-{}", check.id()))
                .spawn(move || {
                    let _entered = span.enter();
                    let _ = worker_tx.send((index, supervise(&worker_check)));
                });
            if let Err(err) = spawned {
                let _ = tx.send((index, thread_failure(check, &err)));
            }
        }
        if !lane.is_empty() {
            let tx_lane = tx.clone();
            let span = tracing::Span::current();
            let spawned = std::thread::Builder::new()
                .name("preflight-exclusive".to_owned())
                .spawn(move || {
                    let _entered = span.enter();
                    for (index, check) in lane {
                        let _ = tx_lane.send((index, supervise(&check)));
                    }
                });
            if let Err(err) = spawned {
                for (index, check) in self.checks.iter().enumerate() {
                    if check.exclusive() {
                        let _ = tx.send((index, thread_failure(check, &err)));
                    }
                }
            }
        }
        drop(tx);

        // Every supervisor sends exactly once and each is bounded by its checks' timeouts, so
        // this loop ends when the last sender is gone.
        let mut slots: Vec<Option<CheckResult>> = vec![None; self.checks.len()];
        for (index, result) in rx {
            if let Some(slot) = slots.get_mut(index) {
                *slot = Some(result);
            }
        }
        let checks = slots
            .into_iter()
            .zip(&self.checks)
            .map(|(slot, check)| {
                let result = slot.unwrap_or_else(|| {
                    result_of(
                        check.as_ref(),
                        Outcome::fail(
                            "the check's supervisor stopped without a result",
                            "report this as a bug in cutover",
                        ),
                        Duration::ZERO,
                    )
                });
                self.apply_ignore(result)
            })
            .collect();
        Report::new(checks, started.elapsed())
    }

    fn apply_ignore(&self, mut result: CheckResult) -> CheckResult {
        if result.status == CheckStatus::Fail && self.ignore.contains(&result.id) {
            result.status = CheckStatus::Warn;
            result.ignored = true;
            result.message = format!("{} (failure ignored by the ignore list)", result.message);
        }
        result
    }
}

fn thread_failure(check: &Arc<dyn Check>, err: &std::io::Error) -> CheckResult {
    result_of(
        check.as_ref(),
        Outcome::fail(
            format!("could not start a thread for the check: {err}"),
            "the host is out of threads or memory; retry when it has recovered",
        ),
        Duration::ZERO,
    )
}

fn result_of(check: &dyn Check, outcome: Outcome, duration: Duration) -> CheckResult {
    CheckResult {
        id: check.id().to_owned(),
        kind: check.kind().to_owned(),
        status: outcome.status,
        message: outcome.message,
        remedy: outcome.remedy,
        duration,
        ignored: false,
        data: outcome.data,
    }
}

/// Runs one check on a worker thread and waits for it, bounded by its timeout.
fn supervise(check: &Arc<dyn Check>) -> CheckResult {
    let timeout = check.timeout();
    let span = tracing::info_span!("check", id = check.id(), kind = check.kind());
    let _entered = span.enter();
    let started = Instant::now();
    let (tx, rx) = mpsc::channel();
    let worker = check.clone();
    let worker_span = span.clone();
    let spawned = std::thread::Builder::new()
        .name(format!("check-{}", check.id()))
        .spawn(move || {
            let _entered = worker_span.enter();
            let ctx = CheckContext::with_timeout(timeout);
            let outcome = std::panic::catch_unwind(AssertUnwindSafe(|| worker.run(&ctx)));
            let _ = tx.send(outcome);
        });
    if let Err(err) = spawned {
        return thread_failure(check, &err);
    }
    let outcome = match rx.recv_timeout(timeout + GRACE) {
        Ok(Ok(outcome)) => outcome,
        Ok(Err(payload)) => {
            let what = payload
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "a non-text panic payload".to_owned());
            tracing::error!(panic = %what, "check panicked");
            Outcome::fail(
                format!("the check panicked: {what}"),
                "report this as a bug in the check; the other checks ran normally",
            )
        }
        Err(mpsc::RecvTimeoutError::Timeout) => {
            tracing::warn!(?timeout, "check timed out");
            Outcome::fail(
                format!(
                    "timed out after {} without an answer",
                    humantime::format_duration(timeout)
                ),
                "find out why it hangs, or raise its `timeout` in [[preflight.check]]",
            )
        }
        Err(mpsc::RecvTimeoutError::Disconnected) => Outcome::fail(
            "the check stopped without a result",
            "report this as a bug in the check",
        ),
    };
    let duration = started.elapsed();
    tracing::debug!(status = %outcome.status, ?duration, "check finished");
    result_of(check.as_ref(), outcome, duration)
}

/// The overall verdict of a run: `ok` (passes and skips only), `warn` or `fail`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RunStatus {
    /// Every check passed or was skipped.
    Ok,
    /// At least one warning (including ignored failures), no failure.
    Warn,
    /// At least one failure.
    Fail,
}

impl RunStatus {
    /// The lower-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Ok => "ok",
            RunStatus::Warn => "warn",
            RunStatus::Fail => "fail",
        }
    }
}

/// The result of a run: `{status, duration_ms, checks: [...]}` in JSON.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    /// The overall verdict.
    pub status: RunStatus,
    /// Wall time of the whole run.
    #[serde(
        rename = "duration_ms",
        serialize_with = "crate::outcome::serialize_ms"
    )]
    pub duration: Duration,
    /// One result per check, in the order the checks were added.
    pub checks: Vec<CheckResult>,
}

impl Report {
    /// Builds a report, computing the overall status.
    pub fn new(checks: Vec<CheckResult>, duration: Duration) -> Self {
        let status = if checks.iter().any(|c| c.status == CheckStatus::Fail) {
            RunStatus::Fail
        } else if checks.iter().any(|c| c.status == CheckStatus::Warn) {
            RunStatus::Warn
        } else {
            RunStatus::Ok
        };
        Self {
            status,
            duration,
            checks,
        }
    }

    /// The result of the check with this id.
    pub fn get(&self, id: &str) -> Option<&CheckResult> {
        self.checks.iter().find(|c| c.id == id)
    }

    /// Ids whose failures were turned into warnings.
    pub fn ignored(&self) -> impl Iterator<Item = &str> {
        self.checks
            .iter()
            .filter(|c| c.ignored)
            .map(|c| c.id.as_str())
    }
}
