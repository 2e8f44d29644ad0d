//! Running a child process for a check: argv (never a shell string), its own process group,
//! stdout and stderr merged into one pipe whose tail is kept, killed with its group at the
//! deadline. Output passes through the secret redactor before it is kept.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::Path;
use std::process::{Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

/// How much of a command's output is kept (the end of it).
const KEEP_BYTES: usize = 64 * 1024;

/// What a finished (or killed) command left behind.
#[derive(Debug)]
pub(crate) struct Finished {
    /// The exit status; `None` when it was killed at the deadline.
    pub(crate) status: Option<ExitStatus>,
    /// The last bytes of stdout and stderr, merged, redacted, lossily decoded.
    pub(crate) output: String,
    pub(crate) elapsed: Duration,
}

impl Finished {
    /// The last `lines` non-empty lines of output, joined with " | " for a one-line message.
    pub(crate) fn tail(&self, lines: usize) -> String {
        let kept: Vec<&str> = self
            .output
            .lines()
            .map(str::trim_end)
            .filter(|l| !l.trim().is_empty())
            .collect();
        let start = kept.len().saturating_sub(lines);
        kept[start..].join(" | ")
    }
}

/// Why a command could not be run at all.
#[derive(Debug)]
pub(crate) enum SpawnError {
    /// The program is not on PATH (or the path does not exist).
    NotFound,
    /// Any other reason.
    Other(std::io::Error),
}

impl std::fmt::Display for SpawnError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SpawnError::NotFound => f.write_str("program not found"),
            SpawnError::Other(e) => write!(f, "{e}"),
        }
    }
}

/// Renders argv for messages (`cargo test --workspace`).
pub(crate) fn display_argv(argv: &[String]) -> String {
    argv.iter()
        .map(|a| {
            if a.is_empty() || a.contains(char::is_whitespace) {
                format!("'{a}'")
            } else {
                a.clone()
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// Runs `argv` in `dir` with `env` added, until it exits or `deadline` passes.
pub(crate) fn run(
    argv: &[String],
    dir: Option<&Path>,
    env: &BTreeMap<String, String>,
    deadline: Instant,
) -> Result<Finished, SpawnError> {
    let started = Instant::now();
    let (program, args) = argv
        .split_first()
        .ok_or_else(|| SpawnError::Other(std::io::Error::other("the command is empty")))?;
    let (reader, writer) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)
        .map_err(|e| SpawnError::Other(e.into()))?;
    let writer2 = writer.try_clone().map_err(SpawnError::Other)?;
    let mut command = Command::new(program);
    command
        .args(args)
        .envs(env)
        .stdin(Stdio::null())
        .stdout(Stdio::from(writer))
        .stderr(Stdio::from(writer2));
    std::os::unix::process::CommandExt::process_group(&mut command, 0);
    if let Some(dir) = dir {
        command.current_dir(dir);
    }
    let spawned = command.spawn();
    // The parent's copies of the pipe's write end live in `command`; drop them so that the
    // reader sees end-of-file when the child (and its children) are done.
    drop(command);
    let mut child = spawned.map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => SpawnError::NotFound,
        _ => SpawnError::Other(e),
    })?;
    let pid = child.id();

    let buffer = Arc::new(Mutex::new(Vec::<u8>::new()));
    let (done_tx, done_rx) = mpsc::channel::<()>();
    {
        let buffer = buffer.clone();
        let mut reader = std::fs::File::from(reader);
        let spawned = std::thread::Builder::new()
            .name("preflight-output".to_owned())
            .spawn(move || {
                let mut chunk = [0u8; 8192];
                while let Ok(n) = reader.read(&mut chunk) {
                    if n == 0 {
                        break;
                    }
                    if let Ok(mut kept) = buffer.lock() {
                        kept.extend_from_slice(&chunk[..n]);
                        if kept.len() > KEEP_BYTES * 2 {
                            let cut = kept.len() - KEEP_BYTES;
                            kept.drain(..cut);
                        }
                    }
                }
                let _ = done_tx.send(());
            });
        if let Err(e) = spawned {
            host_util::process::kill_group(pid);
            let _ = child.wait();
            return Err(SpawnError::Other(e));
        }
    }

    let (status_tx, status_rx) = mpsc::channel();
    let waiter = std::thread::Builder::new()
        .name("preflight-wait".to_owned())
        .spawn(move || {
            let _ = status_tx.send(child.wait());
        });
    if let Err(e) = waiter {
        host_util::process::kill_group(pid);
        return Err(SpawnError::Other(e));
    }
    let status = match status_rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
        Ok(Ok(status)) => Some(status),
        Ok(Err(e)) => return Err(SpawnError::Other(e)),
        Err(_) => {
            tracing::warn!(
                pid,
                "command still running at its deadline; killing its process group"
            );
            host_util::process::kill_group(pid);
            // Reap it (SIGKILL cannot be caught); bounded in case of an uninterruptible sleep.
            let _ = status_rx.recv_timeout(Duration::from_secs(5));
            None
        }
    };
    // Output still buffered in the pipe arrives quickly; a background grandchild that holds
    // the pipe open must not hold the check, so this wait is bounded.
    let _ = done_rx.recv_timeout(Duration::from_secs(1));
    let bytes = buffer.lock().map(|b| b.clone()).unwrap_or_default();
    let start = bytes.len().saturating_sub(KEEP_BYTES);
    let text = String::from_utf8_lossy(&bytes[start..]);
    let output = secret_refs::Redactor::global().redact(&text).into_owned();
    Ok(Finished {
        status,
        output,
        elapsed: started.elapsed(),
    })
}
