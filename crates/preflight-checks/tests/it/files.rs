//! File checks against real files, directories and modes. Tests run as root, so "cannot write"
//! uses a path whose parent is a regular file (ENOTDIR), which root cannot bypass.

#![allow(clippy::unwrap_used)] // Helpers in test files unwrap too; a panic fails the test.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use preflight_checks::checks::{Artifact, DirWritable, FileModeCheck, FilesExist};
use preflight_checks::units::{FileMode, Size};
use preflight_checks::{Check, CheckResult, CheckStatus, Runner};

fn run(check: impl Check + 'static) -> CheckResult {
    Runner::new().with_check(check).run().checks.remove(0)
}

fn write(path: &Path, bytes: usize, mode: u32) {
    std::fs::write(path, vec![b'x'; bytes]).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

#[test]
fn artifact_passes_when_it_is_executable_and_within_bounds() {
    let dir = cutover_tests::temp_dir();
    let cli = dir.path().join("cli.js");
    write(&cli, 200_000, 0o755);
    let r = run(Artifact::new("artifact", &cli)
        .executable(true)
        .size_between(Some(Size(100_000)), Some(Size(10_000_000))));
    assert_eq!(r.status, CheckStatus::Pass, "{}", r.message);
    assert!(r.message.contains("195.3 KiB, executable"), "{}", r.message);
}

#[test]
fn artifact_fails_when_missing_small_large_or_not_executable() {
    let dir = cutover_tests::temp_dir();
    let cli = dir.path().join("cli.js");
    let missing = run(Artifact::new("artifact", &cli));
    assert_eq!(missing.status, CheckStatus::Fail);
    assert!(
        missing.message.contains("No such file"),
        "{}",
        missing.message
    );

    write(&cli, 10, 0o755);
    let small = run(Artifact::new("artifact", &cli).size_between(Some(Size(100_000)), None));
    assert_eq!(small.status, CheckStatus::Fail);
    assert!(
        small.message.contains("smaller than the minimum"),
        "{}",
        small.message
    );

    let large = run(Artifact::new("artifact", &cli).size_between(None, Some(Size(5))));
    assert_eq!(large.status, CheckStatus::Fail);
    assert!(
        large.message.contains("larger than the maximum"),
        "{}",
        large.message
    );

    write(&cli, 10, 0o644);
    let plain = run(Artifact::new("artifact", &cli).executable(true));
    assert_eq!(plain.status, CheckStatus::Fail);
    assert!(
        plain.message.contains("not executable (mode 0644)"),
        "{}",
        plain.message
    );

    let dir_artifact = run(Artifact::new("artifact", dir.path()));
    assert_eq!(dir_artifact.status, CheckStatus::Fail);
    assert!(
        dir_artifact.message.contains("not a regular file"),
        "{}",
        dir_artifact.message
    );
}

#[test]
fn files_exist_passes_with_all_of_and_one_of_any_of() {
    let dir = cutover_tests::temp_dir();
    let a = dir.path().join("a.json");
    let b = dir.path().join("b.json");
    std::fs::write(&a, "{}").unwrap();
    std::fs::write(&b, "{}").unwrap();
    let r = run(FilesExist::new(
        "files",
        vec![a.clone()],
        vec![dir.path().join("nope.json"), b.clone()],
    ));
    assert_eq!(r.status, CheckStatus::Pass, "{}", r.message);
    assert!(r.message.contains("found"), "{}", r.message);
}

#[test]
fn files_exist_fails_naming_what_is_missing() {
    let dir = cutover_tests::temp_dir();
    let a = dir.path().join("a.json");
    std::fs::write(&a, "{}").unwrap();
    let missing = dir.path().join("missing.json");
    let r = run(FilesExist::new(
        "files",
        vec![a.clone(), missing.clone()],
        vec![],
    ));
    assert_eq!(r.status, CheckStatus::Fail);
    assert!(r.message.contains("missing.json"), "{}", r.message);
    let r = run(FilesExist::new(
        "files",
        vec![],
        vec![missing, dir.path().join("other.json")],
    ));
    assert_eq!(r.status, CheckStatus::Fail);
    assert!(
        r.message.starts_with("none of these exists"),
        "{}",
        r.message
    );
}

#[test]
fn dir_writable_passes_and_creates_a_missing_directory() {
    let dir = cutover_tests::temp_dir();
    let backups = dir.path().join("opt/backups");
    let r = run(DirWritable::new("backups", &backups));
    assert_eq!(r.status, CheckStatus::Pass, "{}", r.message);
    assert!(
        r.message.ends_with("is writable (created)"),
        "{}",
        r.message
    );
    assert!(backups.is_dir());
    assert_eq!(
        std::fs::read_dir(&backups).unwrap().count(),
        0,
        "the probe file is removed"
    );
    let again = run(DirWritable::new("backups", &backups));
    assert_eq!(again.status, CheckStatus::Pass);
    assert!(!again.message.contains("created"));
}

#[test]
fn dir_writable_fails_when_the_parent_is_a_regular_file() {
    let dir = cutover_tests::temp_dir();
    let file = dir.path().join("plain-file");
    std::fs::write(&file, "not a directory").unwrap();
    let r = run(DirWritable::new("backups", file.join("backups")));
    assert_eq!(r.status, CheckStatus::Fail);
    assert!(r.message.contains("Not a directory"), "{}", r.message);
    let r = run(DirWritable::new("backups", &file));
    assert_eq!(r.status, CheckStatus::Fail);
    assert!(
        r.message.contains("exists but is not a directory"),
        "{}",
        r.message
    );
    let r = run(DirWritable::new("backups", dir.path().join("absent")).create(false));
    assert_eq!(r.status, CheckStatus::Fail);
    assert!(!dir.path().join("absent").exists());
}

#[test]
fn file_mode_passes_for_0600() {
    let dir = cutover_tests::temp_dir();
    let env = dir.path().join(".env.production");
    write(&env, 10, 0o600);
    let r = run(FileModeCheck::new("env-file", &env));
    assert_eq!(r.status, CheckStatus::Pass, "{}", r.message);
    assert!(r.message.ends_with("has mode 0600"), "{}", r.message);
    let r = run(FileModeCheck::new("env-file", dir.path().join("absent")).required(false));
    assert_eq!(r.status, CheckStatus::Skip, "{}", r.message);
}

#[test]
fn file_mode_fails_when_group_or_others_can_read() {
    let dir = cutover_tests::temp_dir();
    let env = dir.path().join(".env.production");
    write(&env, 10, 0o644);
    let r = run(FileModeCheck::new("env-file", &env));
    assert_eq!(r.status, CheckStatus::Fail);
    assert!(
        r.message
            .contains("mode 0644, more than 0600 allows (group and others"),
        "{}",
        r.message
    );
    assert_eq!(
        r.remedy.as_deref(),
        Some(format!("chmod 600 {}", env.display()).as_str())
    );
    write(&env, 10, 0o640);
    let r = run(FileModeCheck::new("env-file", &env).max_mode(FileMode(0o640)));
    assert_eq!(r.status, CheckStatus::Pass, "{}", r.message);
    let r = run(FileModeCheck::new("env-file", dir.path().join("absent")));
    assert_eq!(
        r.status,
        CheckStatus::Fail,
        "a required file that is missing fails"
    );
}
