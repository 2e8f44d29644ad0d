//! The system packages the tests use, and how they get onto a fresh machine.
//!
//! Each entry names a program the suite runs and the Debian package that provides it. Missing
//! programs are installed with apt-get when we are root on a Debian-like system (printing what
//! is installed); otherwise the task stops with the exact command to run. Tests never skip when
//! a program is missing: this step is what makes them runnable.

use std::path::Path;
use std::process::Command;

/// (program, Debian package, why the suite needs it)
const REQUIRED: &[(&str, &str, &str)] = &[
    (
        "nginx",
        "nginx",
        "edge-proxy tests run a private nginx instance",
    ),
    (
        "openssl",
        "openssl",
        "TLS tests make self-signed certificates",
    ),
    (
        "promtool",
        "prometheus",
        "exported alert rules are checked with promtool",
    ),
    (
        "prometheus-alertmanager",
        "prometheus-alertmanager",
        "the Alertmanager notifier is tested against a real Alertmanager",
    ),
    ("wrk", "wrk", "load-generator comparisons"),
    ("curl", "curl", "probe comparisons"),
    (
        "systemd-analyze",
        "systemd",
        "rendered units are checked with systemd-analyze",
    ),
    ("tar", "tar", "archives must stay readable by GNU tar"),
    ("gzip", "gzip", "archives must stay readable by gzip"),
    (
        "zstd",
        "zstd",
        "zstd archives must stay readable by `tar --zstd` (which runs zstd)",
    ),
    (
        "git",
        "git",
        "pre-flight checks run against temporary git repositories",
    ),
    (
        "sshd",
        "openssh-server",
        "fleet tests run a private sshd in each test network namespace",
    ),
    (
        "ssh",
        "openssh-client",
        "fleet rollouts drive hosts with the system ssh client",
    ),
    (
        "ip",
        "iproute2",
        "fleet tests create network namespaces and veth pairs",
    ),
];

/// Directories searched besides PATH (nginx lives in /usr/sbin, which PATH may lack).
const EXTRA_DIRS: &[&str] = &["/usr/sbin", "/sbin", "/usr/local/sbin"];

fn find(program: &str) -> bool {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(EXTRA_DIRS.iter().map(Into::into))
        .any(|dir| dir.join(program).is_file())
}

fn is_root() -> bool {
    // The effective uid is the fourth field of the "Uid:" line in /proc/self/status.
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(2).map(|uid| uid == "0"))
        })
        == Some(true)
}

/// What `cargo xtask deploy` needs on top of the Rust toolchain.
const FOR_DEPLOY: &[(&str, &str, &str)] =
    &[("nginx", "nginx", "the demo runs behind a private nginx")];

/// What `cargo xtask bench` needs on top of the tests' programs.
const FOR_BENCH: &[(&str, &str, &str)] = &[
    ("tmux", "tmux", "the monitor's CPU is measured under tmux"),
    (
        "pigz",
        "pigz",
        "backup create and restore are compared with tar | pigz",
    ),
    ("zstd", "zstd", "zstd backups are compared with tar | zstd"),
];

/// Makes sure every program the test suite runs is present, installing the missing ones.
pub(crate) fn ensure_installed() -> Result<(), String> {
    ensure(REQUIRED.iter())
}

/// Makes sure the programs the local demo deployment needs are present.
pub(crate) fn ensure_for_deploy() -> Result<(), String> {
    ensure(FOR_DEPLOY.iter())
}

/// Makes sure the programs the benchmarks need are present.
pub(crate) fn ensure_for_bench() -> Result<(), String> {
    ensure(REQUIRED.iter().chain(FOR_BENCH))
}

/// Installs the missing programs among `wanted` with apt-get when root, else names the command.
fn ensure<'a>(wanted: impl Iterator<Item = &'a (&'a str, &'a str, &'a str)>) -> Result<(), String> {
    let missing: Vec<&(&str, &str, &str)> = wanted.filter(|(prog, _, _)| !find(prog)).collect();
    if missing.is_empty() {
        return Ok(());
    }
    let mut packages: Vec<&str> = missing.iter().map(|(_, pkg, _)| *pkg).collect();
    packages.dedup();
    for (prog, pkg, why) in &missing {
        eprintln!("xtask: `{prog}` is missing (Debian package `{pkg}`): {why}");
    }
    let command = format!(
        "apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends {}",
        packages.join(" ")
    );
    if !is_root() || !Path::new("/usr/bin/apt-get").exists() {
        return Err(format!(
            "system packages are missing; install them with:\n    sudo sh -c '{command}'"
        ));
    }
    eprintln!("xtask: installing {}", packages.join(" "));
    let update = Command::new("apt-get").args(["update", "-q"]).status();
    if !update.is_ok_and(|s| s.success()) {
        return Err(format!(
            "`apt-get update` failed; run by hand:\n    {command}"
        ));
    }
    let status = Command::new("apt-get")
        .env("DEBIAN_FRONTEND", "noninteractive")
        .args(["install", "-y", "-q", "--no-install-recommends"])
        .args(&packages)
        .status()
        .map_err(|e| format!("cannot run apt-get: {e}"))?;
    if !status.success() {
        return Err(format!(
            "apt-get install failed ({status}); run by hand:\n    {command}"
        ));
    }
    let still: Vec<&str> = missing
        .iter()
        .filter(|(prog, _, _)| !find(prog))
        .map(|(prog, _, _)| *prog)
        .collect();
    if still.is_empty() {
        Ok(())
    } else {
        Err(format!("still missing after apt-get: {}", still.join(", ")))
    }
}
