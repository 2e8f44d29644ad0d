//! The [`Check`] trait and what a check gets when it runs ([`CheckContext`]).

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::Outcome;

/// How long a check may take unless it says otherwise.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a command or build check may take unless configured otherwise.
pub const DEFAULT_COMMAND_TIMEOUT: Duration = Duration::from_secs(30 * 60);

/// One pre-flight check.
///
/// A check is plain blocking code (it reads `/proc`, calls `statvfs`, runs `git`): the
/// [`Runner`](crate::Runner) gives each one its own thread, so checks overlap without an async
/// runtime, and a check that hangs or panics is reported as a failure instead of stopping the run.
///
/// `run` must not panic on any input and should stop by [`CheckContext::deadline`]; a check that
/// starts a child process kills it then.
pub trait Check: Send + Sync + fmt::Debug {
    /// A stable kebab-case id, unique in a run (the ignore list and `--only` name it).
    fn id(&self) -> &str;

    /// The kind, as written in `kind = "..."` (`"disk-free"`).
    fn kind(&self) -> &'static str;

    /// One line saying what is checked, with the configured target (`"free space on /opt"`).
    fn description(&self) -> String;

    /// How long the check may take before the runner reports it as failed.
    fn timeout(&self) -> Duration {
        DEFAULT_TIMEOUT
    }

    /// Whether the check must not overlap other exclusive checks (builds and test suites, which
    /// compete for the same CPU and build directory). Exclusive checks run one after another,
    /// alongside the others.
    fn exclusive(&self) -> bool {
        false
    }

    /// Runs the check.
    fn run(&self, ctx: &CheckContext) -> Outcome;
}

impl<T: Check + ?Sized> Check for Box<T> {
    fn id(&self) -> &str {
        (**self).id()
    }
    fn kind(&self) -> &'static str {
        (**self).kind()
    }
    fn description(&self) -> String {
        (**self).description()
    }
    fn timeout(&self) -> Duration {
        (**self).timeout()
    }
    fn exclusive(&self) -> bool {
        (**self).exclusive()
    }
    fn run(&self, ctx: &CheckContext) -> Outcome {
        (**self).run(ctx)
    }
}

impl<T: Check + ?Sized> Check for Arc<T> {
    fn id(&self) -> &str {
        (**self).id()
    }
    fn kind(&self) -> &'static str {
        (**self).kind()
    }
    fn description(&self) -> String {
        (**self).description()
    }
    fn timeout(&self) -> Duration {
        (**self).timeout()
    }
    fn exclusive(&self) -> bool {
        (**self).exclusive()
    }
    fn run(&self, ctx: &CheckContext) -> Outcome {
        (**self).run(ctx)
    }
}

/// What the runner hands a check.
#[derive(Debug, Clone)]
pub struct CheckContext {
    deadline: Instant,
}

impl CheckContext {
    /// A context whose deadline is `timeout` from now.
    pub fn with_timeout(timeout: Duration) -> Self {
        Self {
            deadline: Instant::now() + timeout,
        }
    }

    /// When the check must have finished; child processes are killed then.
    pub fn deadline(&self) -> Instant {
        self.deadline
    }

    /// Time left until the deadline (zero once it has passed).
    pub fn remaining(&self) -> Duration {
        self.deadline.saturating_duration_since(Instant::now())
    }
}
