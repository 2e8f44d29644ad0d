//! Host facts against the real host: each check passes with a level the host meets and fails
//! (or warns) with one it cannot meet.

#![allow(clippy::unwrap_used)] // Helpers in test files unwrap too; a panic fails the test.

use preflight_checks::checks::{CpuCount, DiskFree, InodesFree, Memory, OpenFilesLimit};
use preflight_checks::units::Level;
use preflight_checks::{Check, CheckResult, CheckStatus, Runner};

fn run(check: impl Check + 'static) -> CheckResult {
    Runner::new().with_check(check).run().checks.remove(0)
}

const HUGE: Level = Level::Absolute(u64::MAX / 2);
const TINY: Level = Level::Absolute(1);

#[test]
fn disk_free_passes_when_space_is_above_the_levels() {
    let dir = cutover_tests::temp_dir();
    let r = run(DiskFree::new("disk", dir.path())
        .warn_below(Some(TINY))
        .fail_below(Some(TINY)));
    assert_eq!(r.status, CheckStatus::Pass, "{}", r.message);
    assert!(r.message.contains("free of"), "{}", r.message);
    assert!(r.data["available_bytes"].as_u64().unwrap() > 0);
}

#[test]
fn disk_free_fails_below_the_fail_level_and_warns_below_the_warn_level() {
    let dir = cutover_tests::temp_dir();
    let r = run(DiskFree::new("disk", dir.path()).fail_below(Some(HUGE)));
    assert_eq!(r.status, CheckStatus::Fail, "{}", r.message);
    assert!(r.message.contains("below the fail level"), "{}", r.message);
    assert!(r.remedy.is_some());
    let r = run(DiskFree::new("disk", dir.path())
        .warn_below(Some(Level::Percent(100.0)))
        .fail_below(Some(TINY)));
    assert_eq!(r.status, CheckStatus::Warn, "{}", r.message);
}

#[test]
fn disk_free_measures_the_nearest_existing_parent_of_a_future_path() {
    let dir = cutover_tests::temp_dir();
    let future = dir.path().join("not/yet/there");
    // Levels below anything a host has: the test is about the path, not this machine's disk.
    let r = run(DiskFree::new("disk", &future)
        .warn_below(Some(TINY))
        .fail_below(Some(TINY)));
    assert_eq!(r.status, CheckStatus::Pass, "{}", r.message);
    assert!(r.message.contains("does not exist yet"), "{}", r.message);
}

#[test]
fn inodes_free_passes_and_fails_by_count_and_percentage() {
    let dir = cutover_tests::temp_dir();
    let pass = run(InodesFree::new("inodes", dir.path())
        .warn_below(Some(TINY))
        .fail_below(Some(TINY)));
    assert_eq!(pass.status, CheckStatus::Pass, "{}", pass.message);
    let fail = run(InodesFree::new("inodes", dir.path()).fail_below(Some(HUGE)));
    assert_eq!(fail.status, CheckStatus::Fail, "{}", fail.message);
    let warn = run(InodesFree::new("inodes", dir.path())
        .warn_below(Some(Level::Percent(100.0)))
        .fail_below(None));
    assert_eq!(warn.status, CheckStatus::Warn, "{}", warn.message);
}

#[test]
fn memory_passes_and_fails_against_meminfo() {
    let pass = run(Memory::new("memory")
        .warn_below(Some(TINY))
        .fail_below(Some(TINY)));
    assert_eq!(pass.status, CheckStatus::Pass, "{}", pass.message);
    assert!(pass.message.contains("available of"), "{}", pass.message);
    let fail = run(Memory::new("memory").fail_below(Some(HUGE)));
    assert_eq!(fail.status, CheckStatus::Fail, "{}", fail.message);
    let warn = run(Memory::new("memory").warn_below(Some(Level::Percent(100.0))));
    assert_eq!(warn.status, CheckStatus::Warn, "{}", warn.message);
}

#[test]
fn memory_fails_clearly_when_meminfo_lacks_the_fields() {
    let dir = cutover_tests::temp_dir();
    let fake = dir.path().join("meminfo");
    std::fs::write(&fake, "MemTotal: 1000 kB\n").unwrap();
    let r = run(Memory::new("memory").meminfo_path(&fake));
    assert_eq!(r.status, CheckStatus::Fail);
    assert!(r.message.contains("MemAvailable"), "{}", r.message);
    // And a small host is judged from the same format.
    std::fs::write(&fake, "MemTotal: 1000000 kB\nMemAvailable: 500000 kB\n").unwrap();
    let r = run(Memory::new("memory").meminfo_path(&fake));
    assert_eq!(
        r.status,
        CheckStatus::Warn,
        "512 MB is below the 2 GB default: {}",
        r.message
    );
    assert!(r.message.contains("488.3 MiB available"), "{}", r.message);
}

#[test]
fn cpu_count_passes_and_fails() {
    let pass = run(CpuCount::new("cpus").levels(Some(1), Some(1)));
    assert_eq!(pass.status, CheckStatus::Pass, "{}", pass.message);
    let fail = run(CpuCount::new("cpus").fail_below(100_000));
    assert_eq!(fail.status, CheckStatus::Fail, "{}", fail.message);
    assert!(fail.message.contains("CPUs usable"), "{}", fail.message);
}

#[test]
fn open_files_limit_passes_and_fails() {
    let pass = run(OpenFilesLimit::new("nofile").levels(Some(8), Some(8)));
    assert_eq!(pass.status, CheckStatus::Pass, "{}", pass.message);
    let fail = run(OpenFilesLimit::new("nofile").levels(None, Some(u64::MAX)));
    assert_eq!(fail.status, CheckStatus::Fail, "{}", fail.message);
    assert!(fail.message.starts_with("soft limit"), "{}", fail.message);
    assert!(fail.remedy.unwrap().contains("LimitNOFILE"));
}
