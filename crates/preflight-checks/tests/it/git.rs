//! `git-clean` and `not-tracked` against temporary repositories made with the git CLI.

#![allow(clippy::unwrap_used)] // Helpers in test files unwrap too; a panic fails the test.

use std::path::Path;
use std::process::Command;

use preflight_checks::checks::{GitClean, NotTracked};
use preflight_checks::{Check, CheckResult, CheckStatus, Runner};

fn run(check: impl Check + 'static) -> CheckResult {
    Runner::new().with_check(check).run().checks.remove(0)
}

fn git(dir: &Path, args: &[&str]) {
    let out = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args([
            "-c",
            "user.name=t",
            "-c",
            "user.email=t@example.invalid",
            "-c",
            "commit.gpgsign=false",
        ])
        .args(args)
        .output()
        .expect("git is installed (Debian/Ubuntu: apt-get install git)");
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A repository with one committed file and a .gitignore covering `.env.production` and
/// `backups/`.
fn repo() -> tempfile::TempDir {
    let dir = cutover_tests::temp_dir();
    git(dir.path(), &["init", "-q", "-b", "main"]);
    std::fs::write(dir.path().join("app.js"), "console.log(1)\n").unwrap();
    std::fs::write(dir.path().join(".gitignore"), ".env.production\nbackups/\n").unwrap();
    git(dir.path(), &["add", "."]);
    git(dir.path(), &["commit", "-q", "-m", "initial"]);
    dir
}

#[test]
fn git_clean_passes_on_a_clean_tree() {
    let dir = repo();
    // Untracked files do not count by default.
    std::fs::write(dir.path().join("scratch.txt"), "x").unwrap();
    let r = run(GitClean::new("git-clean", dir.path()));
    assert_eq!(r.status, CheckStatus::Pass, "{}", r.message);
    assert!(r.message.ends_with("working tree clean"), "{}", r.message);
}

#[test]
fn git_clean_fails_naming_modified_staged_and_deleted_paths() {
    let dir = repo();
    std::fs::write(dir.path().join("app.js"), "console.log(2)\n").unwrap();
    std::fs::write(dir.path().join("new.js"), "x").unwrap();
    git(dir.path(), &["add", "new.js"]);
    let r = run(GitClean::new("git-clean", dir.path()));
    assert_eq!(r.status, CheckStatus::Fail);
    assert!(
        r.message
            .contains("2 uncommitted change(s): app.js, new.js"),
        "{}",
        r.message
    );
    assert_eq!(r.data["dirty"], 2);
}

#[test]
fn git_clean_names_at_most_ten_paths() {
    let dir = repo();
    for i in 0..12 {
        std::fs::write(dir.path().join(format!("f{i:02}.txt")), "x").unwrap();
    }
    let r = run(GitClean::new("git-clean", dir.path()).untracked(true));
    assert_eq!(r.status, CheckStatus::Fail);
    assert!(
        r.message.contains("12 uncommitted change(s)"),
        "{}",
        r.message
    );
    assert!(r.message.ends_with("f09.txt and 2 more"), "{}", r.message);
}

#[test]
fn git_clean_fails_outside_a_repository() {
    let dir = cutover_tests::temp_dir();
    let r = run(GitClean::new("git-clean", dir.path()));
    assert_eq!(r.status, CheckStatus::Fail);
    assert!(r.message.contains("not a git work tree"), "{}", r.message);
}

#[test]
fn not_tracked_passes_for_ignored_untracked_paths() {
    let dir = repo();
    std::fs::write(dir.path().join(".env.production"), "KEY=v").unwrap();
    std::fs::create_dir(dir.path().join("backups")).unwrap();
    let r = run(NotTracked::new(
        "not-tracked",
        dir.path(),
        vec![".env.production".into(), "backups/".into()],
    ));
    assert_eq!(r.status, CheckStatus::Pass, "{}", r.message);
}

#[test]
fn not_tracked_fails_for_a_tracked_path() {
    let dir = repo();
    std::fs::write(dir.path().join(".env.production"), "KEY=v").unwrap();
    git(dir.path(), &["add", "-f", ".env.production"]);
    git(dir.path(), &["commit", "-q", "-m", "oops"]);
    let r = run(NotTracked::new(
        "not-tracked",
        dir.path(),
        vec![".env.production".into()],
    ));
    assert_eq!(r.status, CheckStatus::Fail);
    assert!(
        r.message
            .contains("tracked by git but must not be: .env.production"),
        "{}",
        r.message
    );
    assert!(r.remedy.unwrap().contains("git rm --cached"));
}

#[test]
fn not_tracked_fails_for_a_path_no_ignore_rule_covers() {
    let dir = repo();
    let r = run(NotTracked::new(
        "not-tracked",
        dir.path(),
        vec!["secrets.env".into()],
    ));
    assert_eq!(r.status, CheckStatus::Fail);
    assert!(
        r.message.contains("not covered by .gitignore: secrets.env"),
        "{}",
        r.message
    );
}
