//! The runner: concurrency, timeouts, panics, the ignore list, `only`, result order.

#![allow(clippy::unwrap_used)] // Helpers in test files unwrap too; a panic fails the test.

use std::sync::{Arc, Barrier, Mutex};
use std::time::Duration;

use preflight_checks::{
    Check, CheckContext, CheckStatus, IgnoreList, Outcome, PreflightError, RunStatus, Runner,
};

/// A check whose behaviour the test chooses.
#[derive(Debug, Clone)]
struct Scripted {
    id: &'static str,
    timeout: Duration,
    exclusive: bool,
    behaviour: Behaviour,
}

#[derive(Debug, Clone)]
enum Behaviour {
    Return(CheckStatus),
    Panic,
    Sleep(Duration),
    /// Passes only when `n` checks reach the barrier together (so only when run concurrently).
    Meet(Arc<Barrier>),
    /// Records that it started and finished, to prove exclusive checks do not overlap.
    Log(Arc<Mutex<Vec<String>>>),
}

impl Scripted {
    fn new(id: &'static str, behaviour: Behaviour) -> Self {
        Self {
            id,
            timeout: Duration::from_secs(10),
            exclusive: false,
            behaviour,
        }
    }
}

impl Check for Scripted {
    fn id(&self) -> &str {
        self.id
    }
    fn kind(&self) -> &'static str {
        "scripted"
    }
    fn description(&self) -> String {
        "a scripted check".into()
    }
    fn timeout(&self) -> Duration {
        self.timeout
    }
    fn exclusive(&self) -> bool {
        self.exclusive
    }
    fn run(&self, _ctx: &CheckContext) -> Outcome {
        match &self.behaviour {
            Behaviour::Return(CheckStatus::Pass) => Outcome::pass("fine"),
            Behaviour::Return(CheckStatus::Warn) => Outcome::warn("meh", "look"),
            Behaviour::Return(CheckStatus::Fail) => Outcome::fail("broken", "fix it"),
            Behaviour::Return(CheckStatus::Skip) => Outcome::skip("n/a"),
            Behaviour::Panic => panic!("boom in {}", self.id),
            Behaviour::Sleep(d) => {
                std::thread::sleep(*d);
                Outcome::pass("woke up")
            }
            Behaviour::Meet(barrier) => {
                barrier.wait();
                Outcome::pass("met")
            }
            Behaviour::Log(log) => {
                log.lock().unwrap().push(format!("start {}", self.id));
                std::thread::sleep(Duration::from_millis(50));
                log.lock().unwrap().push(format!("end {}", self.id));
                Outcome::pass("logged")
            }
        }
    }
}

use Behaviour::*;

#[test]
fn checks_run_concurrently() {
    // Three checks that each wait for the other two: this finishes only if all run at once
    // (and would otherwise time out after the 15 s the checks are given).
    let barrier = Arc::new(Barrier::new(3));
    let mut runner = Runner::new();
    for id in ["a", "b", "c"] {
        let mut c = Scripted::new(id, Meet(barrier.clone()));
        c.timeout = Duration::from_secs(15);
        runner = runner.with_check(c);
    }
    let report = runner.run();
    assert_eq!(report.status, RunStatus::Ok, "{report:?}");
    let ids: Vec<&str> = report.checks.iter().map(|c| c.id.as_str()).collect();
    assert_eq!(
        ids,
        ["a", "b", "c"],
        "results keep the order checks were added in"
    );
}

#[test]
fn exclusive_checks_run_one_at_a_time() {
    let log = Arc::new(Mutex::new(Vec::new()));
    let mut runner = Runner::new();
    for id in ["build", "tests"] {
        let mut c = Scripted::new(id, Log(log.clone()));
        c.exclusive = true;
        runner = runner.with_check(c);
    }
    let report = runner.run();
    assert_eq!(report.status, RunStatus::Ok);
    assert_eq!(
        *log.lock().unwrap(),
        ["start build", "end build", "start tests", "end tests"]
    );
}

#[test]
fn a_panicking_check_is_a_failure_and_the_others_still_run() {
    let report = Runner::new()
        .with_check(Scripted::new("ok", Return(CheckStatus::Pass)))
        .with_check(Scripted::new("bad", Panic))
        .run();
    assert_eq!(report.status, RunStatus::Fail);
    assert_eq!(report.get("ok").unwrap().status, CheckStatus::Pass);
    let bad = report.get("bad").unwrap();
    assert_eq!(bad.status, CheckStatus::Fail);
    assert_eq!(bad.message, "the check panicked: boom in bad");
}

#[test]
fn a_check_past_its_timeout_is_a_failure() {
    let mut slow = Scripted::new("slow", Sleep(Duration::from_secs(30)));
    slow.timeout = Duration::from_millis(100);
    let report = Runner::new()
        .with_check(slow)
        .with_check(Scripted::new("quick", Return(CheckStatus::Pass)))
        .run();
    let r = report.get("slow").unwrap();
    assert_eq!(r.status, CheckStatus::Fail);
    assert_eq!(r.message, "timed out after 100ms without an answer");
    assert!(
        r.duration < Duration::from_secs(20),
        "the run does not wait for the sleeper"
    );
    assert_eq!(report.get("quick").unwrap().status, CheckStatus::Pass);
}

#[test]
fn ignored_failures_become_warnings_and_say_so() {
    let runner = Runner::new()
        .with_check(Scripted::new("memory", Return(CheckStatus::Fail)))
        .with_check(Scripted::new("disk", Return(CheckStatus::Fail)));
    let report = runner
        .clone()
        .with_ignore(IgnoreList::parse("memory"))
        .run();
    assert_eq!(report.status, RunStatus::Fail, "disk still fails");
    let memory = report.get("memory").unwrap();
    assert_eq!(memory.status, CheckStatus::Warn);
    assert!(memory.ignored);
    assert_eq!(
        memory.message,
        "broken (failure ignored by the ignore list)"
    );
    assert_eq!(report.ignored().collect::<Vec<_>>(), ["memory"]);

    let report = runner.with_ignore(IgnoreList::parse("all")).run();
    assert_eq!(report.status, RunStatus::Warn);
    assert!(
        report
            .checks
            .iter()
            .all(|c| c.ignored && c.status == CheckStatus::Warn)
    );
}

#[test]
fn ignoring_does_not_touch_passes_warnings_or_skips() {
    let report = Runner::new()
        .with_check(Scripted::new("p", Return(CheckStatus::Pass)))
        .with_check(Scripted::new("w", Return(CheckStatus::Warn)))
        .with_check(Scripted::new("s", Return(CheckStatus::Skip)))
        .with_ignore(IgnoreList::All)
        .run();
    assert_eq!(report.status, RunStatus::Warn);
    assert!(report.checks.iter().all(|c| !c.ignored));
    let only_skip = Runner::new()
        .with_check(Scripted::new("s", Return(CheckStatus::Skip)))
        .run();
    assert_eq!(only_skip.status, RunStatus::Ok, "a skip counts as a pass");
}

#[test]
fn only_keeps_the_named_checks_and_rejects_unknown_ids() {
    let runner = Runner::new()
        .with_check(Scripted::new("memory", Return(CheckStatus::Fail)))
        .with_check(Scripted::new("disk-free", Return(CheckStatus::Pass)));
    let report = runner.clone().only(&["disk-free"]).unwrap().run();
    assert_eq!(report.checks.len(), 1);
    assert_eq!(report.status, RunStatus::Ok);
    let err = runner.clone().only(&["disk-fre"]).unwrap_err();
    assert!(matches!(err, PreflightError::UnknownId { .. }));
    assert_eq!(
        err.to_string(),
        "--only: no check has the id `disk-fre`; did you mean `disk-free`?; ids in this run: memory, disk-free"
    );
    let err = runner
        .with_ignore(IgnoreList::parse("memroy"))
        .validate_ignore("--ignore")
        .unwrap_err();
    assert!(err.to_string().contains("did you mean `memory`?"), "{err}");
}

#[test]
fn the_report_serialises_to_the_documented_shape() {
    let report = Runner::new()
        .with_check(Scripted::new("x", Return(CheckStatus::Warn)))
        .run();
    let json = serde_json::to_value(&report).unwrap();
    assert_eq!(json["status"], "warn");
    let check = &json["checks"][0];
    for key in ["id", "status", "message", "remedy", "duration_ms"] {
        assert!(check.get(key).is_some(), "{key} in {check}");
    }
    assert_eq!(check["status"], "warn");
    assert_eq!(check["remedy"], "look");
    assert!(check["duration_ms"].is_number());
}
