//! cutover's task runner, wired as `cargo xtask` by `.cargo/config.toml`.
//!
//! It is a plain binary with no dependencies beyond std, so that it builds in seconds on a fresh
//! machine. It finds the workspace root from `CARGO_MANIFEST_DIR`, and with no arguments prints
//! the task list.

// The developer's task runner: it reports on the terminal and exits with the failing step's code.
#![allow(clippy::print_stdout, clippy::print_stderr, clippy::exit)]

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::Instant;

mod bench;
mod deploy;
mod packages;

const TASKS: &[(&str, &str)] = &[
    (
        "test",
        "install missing system packages (and cargo-machete, cargo-deny), then fmt --check, clippy -D warnings, unused dependencies, cargo deny (licenses, bans, sources) and every test",
    ),
    (
        "deploy",
        "deploy the bundled demo service locally through every phase (--demo-env KEY=VALUE: extra environment for this release)",
    ),
    (
        "rollback",
        "roll the local demo deployment back to the previous release",
    ),
    ("status", "show the local demo deployment"),
    ("down", "stop the local demo deployment and its proxy"),
    (
        "bench",
        "measure the performance goals side by side and write docs/benchmarks.md",
    ),
];

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(task) = args.first() else {
        print_tasks();
        return ExitCode::SUCCESS;
    };
    let root = workspace_root();
    let result = match task.as_str() {
        "test" => test(&root, &args[1..]),
        "bench" => packages::ensure_for_bench().and_then(|()| bench::bench(&root, &args[1..])),
        "deploy" => {
            packages::ensure_for_deploy().and_then(|()| deploy::run(&root, task, &args[1..]))
        }
        "rollback" | "status" | "down" => deploy::run(&root, task, &args[1..]),
        "help" | "--help" | "-h" => {
            print_tasks();
            Ok(())
        }
        other => {
            print_tasks();
            Err(format!("unknown task `{other}`"))
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("xtask: {message}");
            ExitCode::FAILURE
        }
    }
}

fn print_tasks() {
    println!("usage: cargo xtask <task>\n\ntasks:");
    for (name, about) in TASKS {
        println!("  {name:<10} {about}");
    }
}

fn workspace_root() -> PathBuf {
    let manifest_dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    manifest_dir
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or(manifest_dir)
}

/// `cargo xtask test`: the whole suite, as CI runs it.
fn test(root: &Path, extra: &[String]) -> Result<(), String> {
    let started = Instant::now();
    packages::ensure_installed()?;
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    run(
        root,
        &cargo,
        &["fmt", "--all", "--check"],
        "formatting (run `cargo fmt --all`)",
    )?;
    run(
        root,
        &cargo,
        &[
            "clippy",
            "--workspace",
            "--all-targets",
            "--locked",
            "--",
            "-D",
            "warnings",
        ],
        "clippy",
    )?;
    // Every dependency is used (cargo-machete), and licences, bans and sources are as
    // deny.toml says (the advisory database cannot be fetched offline, so it is not checked).
    ensure_cargo_tool(&cargo, "machete", "cargo-machete")?;
    // Called as its own program: under `cargo machete` it takes the subcommand's name for a
    // path when cargo's environment is set, as it is inside xtask.
    run(
        root,
        "cargo-machete",
        &["."],
        "unused dependencies (cargo machete)",
    )?;
    ensure_cargo_tool(&cargo, "deny", "cargo-deny")?;
    run(
        root,
        &cargo,
        &["deny", "--locked", "check", "licenses", "bans", "sources"],
        "cargo deny check licenses bans sources",
    )?;
    // End-to-end tests start the workspace's binaries, so they are built first.
    run(
        root,
        &cargo,
        &["build", "--workspace", "--bins", "--locked"],
        "build",
    )?;
    let nextest = Command::new(&cargo)
        .args(["nextest", "--version"])
        .output()
        .is_ok_and(|o| o.status.success());
    if nextest {
        // nextest does not run doctests; the crate docs' examples are tests too. They run
        // first so that nextest's summary line is the last word of the run.
        let doc = ["test", "--workspace", "--doc", "--locked"];
        run(root, &cargo, &doc, "doctests")?;
        // Compiling and linking the test binaries is its own step, so that its time shows
        // apart from the run's.
        let no_run = ["nextest", "run", "--workspace", "--locked", "--no-run"];
        run(root, &cargo, &no_run, "build tests")?;
        let mut args = vec![
            "nextest",
            "run",
            "--workspace",
            "--locked",
            "--no-fail-fast",
        ];
        args.extend(extra.iter().map(String::as_str));
        run(root, &cargo, &args, "tests")?;
    } else {
        let mut args = vec!["test", "--workspace", "--locked", "--no-fail-fast"];
        args.extend(extra.iter().map(String::as_str));
        run(root, &cargo, &args, "tests")?;
    }
    println!(
        "xtask test: formatting, clippy, build and all tests passed in {:.0} s",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// Installs the cargo subcommand `sub` from crates.io (`cargo install --locked krate`) when
/// `cargo-sub --version` does not answer, as the system packages are installed.
fn ensure_cargo_tool(cargo: &str, sub: &str, krate: &str) -> Result<(), String> {
    let present = Command::new(format!("cargo-{sub}"))
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if present {
        return Ok(());
    }
    eprintln!("xtask: $ {cargo} install --locked {krate}");
    let status = Command::new(cargo)
        .args(["install", "--locked", krate])
        .status()
        .map_err(|e| format!("cannot run {cargo} install: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!(
            "installing {krate} failed ({status}); run `cargo install --locked {krate}` and retry"
        ))
    }
}

fn run(root: &Path, program: &str, args: &[&str], what: &str) -> Result<(), String> {
    eprintln!("xtask: $ {program} {}", args.join(" "));
    let started = Instant::now();
    let status = Command::new(program)
        .args(args)
        .current_dir(root)
        .status()
        .map_err(|e| format!("cannot run {program}: {e}"))?;
    if status.success() {
        eprintln!(
            "xtask: {what}: done in {:.1} s",
            started.elapsed().as_secs_f64()
        );
        Ok(())
    } else {
        Err(format!("{what} failed ({status})"))
    }
}
