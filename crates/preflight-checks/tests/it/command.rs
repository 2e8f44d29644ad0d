//! `command`, `build` and `runtime-version` with real child processes.

#![allow(clippy::unwrap_used)] // Helpers in test files unwrap too; a panic fails the test.

use std::time::{Duration, Instant};

use preflight_checks::checks::{CommandCheck, RuntimeVersion};
use preflight_checks::{Check, CheckResult, CheckStatus, Runner};

fn run(check: impl Check + 'static) -> CheckResult {
    Runner::new().with_check(check).run().checks.remove(0)
}

fn argv(args: &[&str]) -> Vec<String> {
    args.iter().map(|s| (*s).to_owned()).collect()
}

#[test]
fn command_passes_when_it_exits_zero() {
    let dir = cutover_tests::temp_dir();
    std::fs::write(dir.path().join("marker"), "").unwrap();
    let r = run(CommandCheck::new("tests", argv(&["ls", "marker"])).dir(dir.path()));
    assert_eq!(r.status, CheckStatus::Pass, "{}", r.message);
    assert!(
        r.message.starts_with("`ls marker` exited 0"),
        "{}",
        r.message
    );
}

#[test]
fn command_fails_with_the_tail_of_its_output() {
    let script = "for i in 1 2 3 4 5 6 7; do echo line$i; done; echo boom >&2; exit 3";
    let r = run(CommandCheck::new("tests", argv(&["sh", "-c", script])));
    assert_eq!(r.status, CheckStatus::Fail);
    assert!(r.message.contains("exit status: 3"), "{}", r.message);
    assert!(
        r.message.ends_with("line4 | line5 | line6 | line7 | boom"),
        "{}",
        r.message
    );
    assert_eq!(r.data["exit_code"], 3);
}

#[test]
fn command_is_killed_at_its_timeout_with_its_children() {
    let dir = cutover_tests::temp_dir();
    let pidfile = dir.path().join("child.pid");
    let script = format!(
        "sleep 30 & echo $! > {}; echo started; wait",
        pidfile.display()
    );
    let started = Instant::now();
    // 2 s: the shell must get to write the pid file and "started" first, even when busy.
    let r = run(CommandCheck::new("slow", argv(&["sh", "-c", &script]))
        .with_timeout(Duration::from_secs(2)));
    assert_eq!(r.status, CheckStatus::Fail);
    assert!(
        r.message.contains("killed after 2s (timeout)"),
        "{}",
        r.message
    );
    assert!(r.message.contains("started"), "{}", r.message);
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "bounded by the timeout, not by sleep 30"
    );
    // The grandchild went with the process group.
    let pid = std::fs::read_to_string(&pidfile).unwrap().trim().to_owned();
    let gone = cutover_tests::wait_until(Duration::from_secs(10), || {
        std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .map(|s| s.contains(") Z "))
            .unwrap_or(true)
    });
    assert!(gone, "the background child {pid} was killed");
}

#[test]
fn build_passes_and_fails_like_a_command_and_runs_exclusively() {
    let ok = CommandCheck::build("build", argv(&["true"]));
    assert!(ok.exclusive());
    assert_eq!(ok.kind(), "build");
    assert_eq!(run(ok).status, CheckStatus::Pass);
    let bad = run(CommandCheck::build(
        "build",
        argv(&["sh", "-c", "echo 'error: missing semicolon'; exit 1"]),
    ));
    assert_eq!(bad.status, CheckStatus::Fail);
    assert_eq!(bad.kind, "build");
    assert!(
        bad.message.ends_with("error: missing semicolon"),
        "{}",
        bad.message
    );
}

#[test]
fn a_missing_program_is_a_clear_failure() {
    let r = run(CommandCheck::new(
        "tests",
        argv(&["no-such-program-cutover"]),
    ));
    assert_eq!(r.status, CheckStatus::Fail);
    assert!(
        r.message
            .contains("program `no-such-program-cutover` not found"),
        "{}",
        r.message
    );
}

#[test]
fn runtime_version_passes_when_the_requirement_holds() {
    let r = run(
        RuntimeVersion::new("bun", argv(&["sh", "-c", "echo 1.1.38"]))
            .require(">=1.1, <2".parse().unwrap()),
    );
    assert_eq!(r.status, CheckStatus::Pass, "{}", r.message);
    assert_eq!(r.message, "1.1.38 satisfies >=1.1, <2");
    let any = run(RuntimeVersion::new("git", argv(&["git", "--version"])));
    assert_eq!(any.status, CheckStatus::Pass, "{}", any.message);
}

#[test]
fn runtime_version_fails_when_too_old_missing_or_unreadable() {
    let old = run(
        RuntimeVersion::new("bun", argv(&["sh", "-c", "echo v0.9.2"]))
            .require(">=1.1".parse().unwrap()),
    );
    assert_eq!(old.status, CheckStatus::Fail);
    assert!(
        old.message
            .contains("reports 0.9.2, which does not satisfy >=1.1"),
        "{}",
        old.message
    );
    let missing = run(RuntimeVersion::new(
        "bun",
        argv(&["no-such-bun-cutover", "--version"]),
    ));
    assert_eq!(missing.status, CheckStatus::Fail);
    assert!(missing.message.contains("not found"), "{}", missing.message);
    let garbage = run(RuntimeVersion::new(
        "bun",
        argv(&["sh", "-c", "echo hello"]),
    ));
    assert_eq!(garbage.status, CheckStatus::Fail);
    assert!(
        garbage.message.contains("printed no version number"),
        "{}",
        garbage.message
    );
    let failing = run(RuntimeVersion::new(
        "bun",
        argv(&["sh", "-c", "echo 1.2.3; exit 4"]),
    ));
    assert_eq!(failing.status, CheckStatus::Fail);
}
