//! Running a provider CLI with a deadline, capturing its output without leaving copies around.
//!
//! Theory of operation: the child gets no stdin, the resolver's environment overlay and a process
//! group of its own. Its standard error goes to `/dev/null`: a CLI that fails can still print the
//! value (or a token, or part of one) on either stream, so its output is never kept for a message;
//! the error names the reference and the exit status instead. One thread waits for the child and
//! one drains standard output. If the deadline passes
//! first, the whole group is killed with SIGKILL (a shell script's `sleep` would otherwise keep
//! the pipes open), the waiter reaps the child, and the call fails with a timeout. Standard output
//! is read into a buffer that is zeroed on drop and grown by copying into a fresh zeroing buffer,
//! so that no reallocation leaves a copy of the value in freed memory.

use std::io::Read;
use std::process::{Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use zeroize::{Zeroize, Zeroizing};

use crate::{ResolveContext, Secret, SecretError, SecretRef};

/// The largest value a CLI may print.
pub(crate) const MAX_VALUE_BYTES: usize = 1 << 20;
/// How long to wait for pipes and reaping after the group was killed.
const AFTER_KILL_GRACE: Duration = Duration::from_secs(2);

struct Captured {
    bytes: Zeroizing<Vec<u8>>,
    too_large: bool,
}

/// Reads everything from `r`, keeping at most `limit` bytes in a zeroing buffer.
fn read_capped(mut r: impl Read, limit: usize) -> Captured {
    let mut bytes = Zeroizing::new(Vec::with_capacity(4096));
    let mut chunk = Zeroizing::new([0u8; 8192]);
    let mut too_large = false;
    loop {
        let n = match r.read(&mut chunk[..]) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(_) => break,
        };
        if too_large || bytes.len() + n > limit {
            // Keep draining so that the child is not blocked on a full pipe.
            too_large = true;
            continue;
        }
        if bytes.len() + n > bytes.capacity() {
            let mut grown = Zeroizing::new(Vec::with_capacity(
                (bytes.len() + n).max(2 * bytes.capacity()),
            ));
            grown.extend_from_slice(&bytes);
            bytes = grown;
        }
        bytes.extend_from_slice(&chunk[..n]);
    }
    Captured { bytes, too_large }
}

fn remaining(deadline: Instant) -> Duration {
    deadline.saturating_duration_since(Instant::now())
}

pub(crate) fn run(
    ctx: &ResolveContext<'_>,
    reference: &SecretRef,
    program: &str,
    args: &[&str],
) -> Result<Secret, SecretError> {
    let started = Instant::now();
    let mut cmd = Command::new(program);
    cmd.args(args)
        .envs(ctx.child_env())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    // In its own process group, so that a timeout kills whatever the CLI started too.
    let mut child =
        host_util::process::spawn_in_group(&mut cmd).map_err(|source| SecretError::Spawn {
            reference: reference.to_string(),
            program: program.to_owned(),
            error: source,
        })?;
    let pid = child.id();
    tracing::debug!(program, pid, "started provider CLI");

    let (out_tx, out_rx) = mpsc::channel();
    if let Some(stdout) = child.stdout.take() {
        std::thread::spawn(move || {
            let _ = out_tx.send(read_capped(stdout, MAX_VALUE_BYTES));
        });
    }
    let (wait_tx, wait_rx) = mpsc::channel::<std::io::Result<ExitStatus>>();
    std::thread::spawn(move || {
        let _ = wait_tx.send(child.wait());
    });

    let timeout_error = || SecretError::Timeout {
        reference: reference.to_string(),
        timeout: ctx.timeout(),
        what: format!(" (killed `{program}`)"),
    };

    // Everything (exit, and standard output closing) must happen before the deadline.
    let deadline = ctx.deadline();
    let status = wait_rx.recv_timeout(remaining(deadline));
    let stdout = match &status {
        Ok(_) => out_rx.recv_timeout(remaining(deadline)),
        Err(_) => Err(mpsc::RecvTimeoutError::Timeout),
    };
    let (status, stdout) = match (status, stdout) {
        (Ok(status), Ok(stdout)) => (status, stdout),
        _ => {
            host_util::process::kill_group(pid);
            // Give the waiter a moment to reap the child so that no zombie is left.
            let _ = wait_rx.recv_timeout(AFTER_KILL_GRACE);
            tracing::warn!(program, pid, elapsed = ?started.elapsed(), "provider CLI timed out; killed its process group");
            return Err(timeout_error());
        }
    };
    let status = status.map_err(|source| SecretError::Spawn {
        reference: reference.to_string(),
        program: program.to_owned(),
        error: source,
    })?;
    tracing::debug!(program, pid, %status, elapsed = ?started.elapsed(), "provider CLI finished");

    if !status.success() {
        // Whatever it printed on standard output (a partial value, a token) is dropped here,
        // zeroed, and never described.
        drop(stdout);
        return Err(SecretError::CommandFailed {
            reference: reference.to_string(),
            program: program.to_owned(),
            status: status.to_string(),
        });
    }
    if stdout.too_large {
        return Err(SecretError::TooLarge {
            reference: reference.to_string(),
            limit: MAX_VALUE_BYTES,
        });
    }
    bytes_to_secret(stdout.bytes, reference)
}

/// Turns captured output into a secret: one trailing `\n` (or `\r\n`) removed, UTF-8 checked,
/// with no copy left behind.
pub(crate) fn bytes_to_secret(
    mut bytes: Zeroizing<Vec<u8>>,
    reference: &SecretRef,
) -> Result<Secret, SecretError> {
    if bytes.last() == Some(&b'\n') {
        bytes.pop();
        if bytes.last() == Some(&b'\r') {
            bytes.pop();
        }
    }
    let vec = std::mem::take(&mut *bytes);
    match String::from_utf8(vec) {
        Ok(s) => Ok(Secret::new(s)),
        Err(e) => {
            e.into_bytes().zeroize();
            Err(SecretError::NotUtf8 {
                reference: reference.to_string(),
            })
        }
    }
}
