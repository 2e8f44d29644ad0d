//! `--help` is part of the CLI contract (scripts and people read it): a snapshot makes every
//! change to it deliberate, as cargo-dist does.

use std::process::Command;

fn help(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_cutover-probe"))
        .args(args)
        .env("NO_COLOR", "1")
        .env("COLUMNS", "100")
        .output()
        .expect("cutover-probe runs");
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("help is UTF-8")
}

#[test]
fn help_is_stable() {
    insta::assert_snapshot!(help(&["--help"]));
}
