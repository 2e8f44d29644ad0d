//! The SSH transport: the system OpenSSH client, one multiplexed connection per host.
//!
//! `connect` starts a ControlMaster in the background (`-f -N`, all of its stdio on
//! /dev/null, so that the persisting master never holds a pipe of ours open); every command
//! after it goes through that master (`ControlMaster=no` with the same `ControlPath`: it
//! reuses the socket when it is there and connects on its own when it is not, but never
//! becomes a master that would outlive the command holding its pipes). `BatchMode=yes`: never
//! a password prompt. Every command has a timeout, and its whole process group is killed when
//! the timeout passes. The user's `~/.ssh/config` (ProxyJump, agent, known_hosts, ports)
//! applies as with plain `ssh`, or the file named by `[fleet] ssh_config`.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The result of one command that ran to its end.
#[derive(Debug, Clone)]
pub struct CommandOutput {
    /// The exit code (`None` when killed by a signal).
    pub code: Option<i32>,
    /// What it printed on stdout.
    pub stdout: Vec<u8>,
    /// What it printed on stderr.
    pub stderr: Vec<u8>,
}

impl CommandOutput {
    /// Whether it exited with 0.
    pub fn success(&self) -> bool {
        self.code == Some(0)
    }
    /// The last line of stderr, for messages.
    pub fn stderr_tail(&self) -> String {
        let text = String::from_utf8_lossy(&self.stderr);
        text.lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .unwrap_or("")
            .trim()
            .to_owned()
    }
}

/// Runs `cmd` in its own process group with `stdin` fed to it, killing the group after
/// `timeout`.
///
/// # Errors
/// A message when it cannot start or does not finish in time.
pub fn run_with_timeout(
    mut cmd: Command,
    stdin: Option<&[u8]>,
    timeout: Duration,
) -> Result<CommandOutput, String> {
    use std::os::unix::process::CommandExt;
    let program = cmd.get_program().to_string_lossy().into_owned();
    cmd.process_group(0)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd
        .spawn()
        .map_err(|e| format!("cannot run {program}: {e}"))?;
    let pgid = nix::unistd::Pid::from_raw(i32::try_from(child.id()).unwrap_or(i32::MAX));
    let writer = match (stdin, child.stdin.take()) {
        (Some(data), Some(mut pipe)) => {
            let data = data.to_vec();
            Some(std::thread::spawn(move || {
                let _ = pipe.write_all(&data);
            }))
        }
        _ => None,
    };
    let read = |pipe: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            if let Some(mut p) = pipe {
                let _ = p.read_to_end(&mut buf);
            }
            buf
        })
    };
    let out = read(
        child
            .stdout
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let err = read(
        child
            .stderr
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let deadline = Instant::now() + timeout;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break Some(status),
            Ok(None) if Instant::now() >= deadline => break None,
            Ok(None) => std::thread::sleep(Duration::from_millis(20)),
            Err(e) => return Err(format!("cannot wait for {program}: {e}")),
        }
    };
    let Some(status) = status else {
        let _ = nix::sys::signal::killpg(pgid, nix::sys::signal::Signal::SIGKILL);
        let _ = child.wait();
        return Err(format!(
            "{program} did not finish within {} (killed)",
            humantime_secs(timeout)
        ));
    };
    // The group may hold our pipes after the leader exits: end it before reading to the end.
    let _ = nix::sys::signal::killpg(pgid, nix::sys::signal::Signal::SIGKILL);
    if let Some(w) = writer {
        let _ = w.join();
    }
    Ok(CommandOutput {
        code: status.code(),
        stdout: out.join().unwrap_or_default(),
        stderr: err.join().unwrap_or_default(),
    })
}

fn humantime_secs(d: Duration) -> String {
    format!("{:.1}s", d.as_secs_f64())
}

/// Quotes `s` for a POSIX shell.
pub fn sh_quote(s: &str) -> String {
    if !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./=:@%+,".contains(c))
    {
        return s.to_owned();
    }
    format!("'{}'", s.replace('\'', "'\\''"))
}

/// How to reach hosts: options, config file and the control sockets' directory.
#[derive(Debug, Clone)]
pub struct Ssh {
    /// Extra options for every command (before the destination).
    pub options: Vec<String>,
    /// `ssh -F FILE` when set.
    pub config: Option<PathBuf>,
    /// The directory of the ControlPath sockets (kept short: sockets have a path limit).
    pub control_dir: PathBuf,
    /// `ConnectTimeout`.
    pub connect_timeout: Duration,
    /// `ControlPersist` of the master.
    pub persist: Duration,
}

impl Ssh {
    /// A transport with its control sockets in a private directory under the temp dir.
    pub fn new(options: Vec<String>, config: Option<PathBuf>, connect_timeout: Duration) -> Self {
        let uid = nix::unistd::geteuid();
        let control_dir = std::env::temp_dir().join(format!("cutover-ssh-{uid}"));
        Self {
            options,
            config,
            control_dir,
            connect_timeout,
            persist: Duration::from_secs(120),
        }
    }

    fn command(&self, master: MasterUse) -> Command {
        let mut cmd = Command::new("ssh");
        if let Some(f) = &self.config {
            cmd.arg("-F").arg(f);
        }
        cmd.args(["-o", "BatchMode=yes"]);
        cmd.arg("-o").arg(format!(
            "ConnectTimeout={}",
            self.connect_timeout.as_secs().max(1)
        ));
        let path = self.control_dir.join("%C");
        match master {
            MasterUse::Start => {
                cmd.args(["-o", "ControlMaster=auto"]);
                cmd.arg("-o").arg(format!("ControlPath={}", path.display()));
                cmd.arg("-o")
                    .arg(format!("ControlPersist={}", self.persist.as_secs().max(1)));
            }
            MasterUse::Reuse => {
                cmd.args(["-o", "ControlMaster=no"]);
                cmd.arg("-o").arg(format!("ControlPath={}", path.display()));
            }
            MasterUse::Fresh => {
                cmd.args(["-o", "ControlMaster=no", "-o", "ControlPath=none"]);
            }
        }
        cmd.args(&self.options);
        cmd
    }

    /// Opens (or finds) the multiplexed connection to `host`.
    ///
    /// # Errors
    /// The reason when `host` cannot be reached.
    pub fn connect(&self, host: &str) -> Result<(), String> {
        ensure_private_dir(&self.control_dir)?;
        let mut cmd = self.command(MasterUse::Start);
        cmd.args(["-f", "-N", "--", host]);
        let out = run_with_timeout(cmd, None, self.connect_timeout + Duration::from_secs(5))?;
        if out.success() {
            Ok(())
        } else {
            Err(format!(
                "cannot connect to {host}: {}",
                non_empty(out.stderr_tail(), "ssh failed")
            ))
        }
    }

    /// Runs `script` (a shell command line) on `host` through its connection.
    ///
    /// # Errors
    /// When ssh cannot run or the command times out; a non-zero exit is in the output.
    pub fn run(
        &self,
        host: &str,
        script: &str,
        stdin: Option<&[u8]>,
        timeout: Duration,
    ) -> Result<CommandOutput, String> {
        let mut cmd = self.command(MasterUse::Reuse);
        cmd.args(["--", host, script]);
        run_with_timeout(cmd, stdin, timeout)
    }

    /// Runs `script` on `host` over a new connection (no multiplexing): proves that the host
    /// can still be reached from scratch.
    ///
    /// # Errors
    /// As [`Ssh::run`].
    pub fn run_fresh(
        &self,
        host: &str,
        script: &str,
        timeout: Duration,
    ) -> Result<CommandOutput, String> {
        let mut cmd = self.command(MasterUse::Fresh);
        cmd.args(["--", host, script]);
        run_with_timeout(cmd, None, timeout)
    }

    /// Asks the master of `host` to exit.
    pub fn close(&self, host: &str) {
        let mut cmd = self.command(MasterUse::Reuse);
        cmd.args(["-O", "exit", "--", host]);
        let _ = run_with_timeout(cmd, None, Duration::from_secs(5));
    }
}

#[derive(Debug, Clone, Copy)]
enum MasterUse {
    Start,
    Reuse,
    Fresh,
}

fn non_empty(s: String, default: &str) -> String {
    if s.is_empty() { default.to_owned() } else { s }
}

fn ensure_private_dir(dir: &Path) -> Result<(), String> {
    use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
    let _ = std::fs::DirBuilder::new().mode(0o700).create(dir);
    let meta = std::fs::metadata(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    if meta.uid() != nix::unistd::geteuid().as_raw() {
        return Err(format!(
            "{} belongs to another user: remove it, or set TMPDIR",
            dir.display()
        ));
    }
    if meta.permissions().mode() & 0o077 != 0 {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
            .map_err(|e| format!("{}: {e}", dir.display()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting() {
        assert_eq!(sh_quote("abc/d.e"), "abc/d.e");
        assert_eq!(sh_quote("a b"), "'a b'");
        assert_eq!(sh_quote("it's"), "'it'\\''s'");
        assert_eq!(sh_quote(""), "''");
    }

    #[test]
    fn a_command_past_its_timeout_is_killed_with_its_group() {
        let mut cmd = Command::new("sh");
        cmd.args(["-c", "sleep 30 & sleep 30"]);
        let t = Instant::now();
        let err = run_with_timeout(cmd, None, Duration::from_millis(300)).err();
        assert!(err.is_some_and(|e| e.contains("did not finish")));
        assert!(t.elapsed() < Duration::from_secs(10));
    }

    #[test]
    fn output_and_stdin() {
        let mut cmd = Command::new("sh");
        cmd.args(["-c", "cat; echo oops >&2; exit 3"]);
        let out = run_with_timeout(cmd, Some(b"hello"), Duration::from_secs(10));
        let out = out.ok();
        assert_eq!(out.as_ref().and_then(|o| o.code), Some(3));
        assert_eq!(
            out.as_ref().map(|o| o.stdout.clone()),
            Some(b"hello".to_vec())
        );
        assert_eq!(out.map(|o| o.stderr_tail()), Some("oops".to_owned()));
    }
}
