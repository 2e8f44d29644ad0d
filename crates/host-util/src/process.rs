//! Commands with a time limit: each runs in its own process group, and when it outlives its
//! timeout the **whole group** is killed (a shell's children die with it), then reaped.

use std::io::Read;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// How long a killed process may take to be reaped before the caller gives up on it (SIGKILL
/// cannot be caught, but a process in an uninterruptible sleep ends only when the sleep does).
const REAP_LIMIT: Duration = Duration::from_secs(5);

/// How a command run with a timeout ended and what it printed.
#[derive(Debug, Clone)]
pub struct Finished {
    /// Its exit status; `None` when it was killed at the timeout and could not be reaped.
    pub status: Option<ExitStatus>,
    /// Whether it outlived its timeout (its process group was killed).
    pub timed_out: bool,
    /// Standard output (the last `keep` bytes for [`run_with_timeout`], the first for
    /// [`run_async`]).
    pub stdout: Vec<u8>,
    /// Standard error, bounded the same way.
    pub stderr: Vec<u8>,
    /// How long it ran.
    pub elapsed: Duration,
}

impl Finished {
    /// Whether it exited with status 0 in time.
    pub fn success(&self) -> bool {
        !self.timed_out && self.status.is_some_and(|s| s.success())
    }
}

/// Sends SIGKILL to the process group `pgid` (a child started with `process_group(0)` leads
/// the group with its own pid). A group that is already gone is fine.
pub fn kill_group(pgid: u32) {
    if let Some(pid) = i32::try_from(pgid)
        .ok()
        .and_then(rustix::process::Pid::from_raw)
    {
        // ESRCH (already gone) is the common, harmless case.
        let _ = rustix::process::kill_process_group(pid, rustix::process::Signal::KILL);
    }
}

/// Waits for `child` (the leader of its own process group) until `deadline`; past it, kills
/// the whole group and reaps the child (bounded). `Ok(None)` means it timed out.
///
/// # Errors
/// The error of waiting for the child.
pub fn wait_or_kill(child: &mut Child, deadline: Instant) -> std::io::Result<Option<ExitStatus>> {
    let mut pause = Duration::from_millis(1);
    loop {
        if let Some(status) = child.try_wait()? {
            return Ok(Some(status));
        }
        let now = Instant::now();
        if now >= deadline {
            kill_group(child.id());
            let reap_by = Instant::now() + REAP_LIMIT;
            while Instant::now() < reap_by {
                if child.try_wait()?.is_some() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            return Ok(None);
        }
        std::thread::sleep(pause.min(deadline - now));
        pause = (pause * 2).min(Duration::from_millis(20));
    }
}

/// Spawns `command` in its own process group, retrying a few times on ETXTBSY (a script
/// written a moment ago can still be open for writing in a child that another thread is
/// forking; exec fails until that child has exec'd in turn).
///
/// # Errors
/// The error of spawning it.
pub fn spawn_in_group(command: &mut Command) -> std::io::Result<Child> {
    command.process_group(0);
    let busy = rustix::io::Errno::TXTBSY.raw_os_error();
    let mut attempts = 0;
    loop {
        match command.spawn() {
            Err(e) if e.raw_os_error() == Some(busy) && attempts < 10 => {
                attempts += 1;
                std::thread::sleep(Duration::from_millis(10));
            }
            other => return other,
        }
    }
}

/// Runs `command` (stdin as the caller set it, `/dev/null` by default) in its own process
/// group, capturing the last `keep` bytes of stdout and of stderr. At `timeout` the whole group
/// is killed; once the command exits, whatever it left in its group is killed too (it would
/// hold the pipes open).
///
/// # Errors
/// The error of spawning it (`ErrorKind::NotFound` for a missing program) or of waiting for it.
pub fn run_with_timeout(
    command: &mut Command,
    timeout: Duration,
    keep: usize,
) -> std::io::Result<Finished> {
    let started = Instant::now();
    command.stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = spawn_in_group(command)?;
    let pid = child.id();
    let out = tail_reader(child.stdout.take().map(|p| Box::new(p) as Box<_>), keep);
    let err = tail_reader(child.stderr.take().map(|p| Box::new(p) as Box<_>), keep);
    let status = wait_or_kill(&mut child, started + timeout);
    // Children left in the group would keep the pipes open; the group goes with its leader.
    kill_group(pid);
    let status = status?;
    Ok(Finished {
        timed_out: status.is_none(),
        status,
        stdout: out.join().unwrap_or_default(),
        stderr: err.join().unwrap_or_default(),
        elapsed: started.elapsed(),
    })
}

type Pipe = Box<dyn Read + Send>;

/// Reads `pipe` to its end on a thread, keeping the last `keep` bytes.
fn tail_reader(pipe: Option<Pipe>, keep: usize) -> std::thread::JoinHandle<Vec<u8>> {
    std::thread::spawn(move || {
        let mut buf = Vec::new();
        if let Some(pipe) = pipe {
            read_tail(pipe, keep, &mut buf);
        }
        buf
    })
}

/// Reads `reader` to its end into `buf`, keeping only the last `keep` bytes.
pub fn read_tail(mut reader: impl Read, keep: usize, buf: &mut Vec<u8>) {
    let mut chunk = [0u8; 8192];
    while let Ok(n) = reader.read(&mut chunk) {
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
        if buf.len() > keep.saturating_mul(2).max(chunk.len()) {
            let cut = buf.len() - keep;
            buf.drain(..cut);
        }
    }
    let cut = buf.len().saturating_sub(keep);
    buf.drain(..cut);
}

/// The last line of `bytes` that is not blank, trimmed (a failed command's last word, for an
/// error message).
pub fn last_line(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes)
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("")
        .trim()
        .to_owned()
}

/// Runs a tokio `command` in its own process group with `stdin` written to it (when given;
/// the command's stdin is `/dev/null` otherwise), capturing the first `keep` bytes of stdout
/// and stderr. At `timeout` the whole group is killed (and the child reaped by
/// `kill_on_drop`).
///
/// # Errors
/// The error of spawning it or of waiting for it.
#[cfg(feature = "tokio")]
pub async fn run_async(
    command: &mut tokio::process::Command,
    timeout: Duration,
    stdin: Option<&[u8]>,
    keep: usize,
) -> std::io::Result<Finished> {
    use tokio::io::AsyncWriteExt;
    let started = Instant::now();
    command
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    let mut child = command.spawn()?;
    let pid = child.id();
    let input = child.stdin.take();
    let (stdout, stderr) = (child.stdout.take(), child.stderr.take());
    let run = async {
        let feed = async {
            if let (Some(mut pipe), Some(bytes)) = (input, stdin) {
                // A command that ignores stdin may close it early; that is not a failure.
                let _ = pipe.write_all(bytes).await;
            }
        };
        let ((), out, err, status) = tokio::join!(
            feed,
            read_capped(stdout, keep),
            read_capped(stderr, keep),
            child.wait()
        );
        (status, out, err)
    };
    match tokio::time::timeout(timeout, run).await {
        Ok((status, stdout, stderr)) => Ok(Finished {
            status: Some(status?),
            timed_out: false,
            stdout,
            stderr,
            elapsed: started.elapsed(),
        }),
        Err(_) => {
            if let Some(pid) = pid {
                kill_group(pid);
            }
            Ok(Finished {
                status: None,
                timed_out: true,
                stdout: Vec::new(),
                stderr: Vec::new(),
                elapsed: started.elapsed(),
            })
        }
    }
}

/// Reads `pipe` to its end, keeping the first `limit` bytes (the rest is read and dropped, so
/// that a chatty command never blocks on a full pipe).
#[cfg(feature = "tokio")]
async fn read_capped<R: tokio::io::AsyncRead + Unpin>(pipe: Option<R>, limit: usize) -> Vec<u8> {
    use tokio::io::AsyncReadExt;
    let mut buf = Vec::new();
    if let Some(mut pipe) = pipe {
        let mut chunk = [0u8; 8192];
        while let Ok(n) = pipe.read(&mut chunk).await {
            if n == 0 {
                break;
            }
            let room = limit.saturating_sub(buf.len());
            buf.extend_from_slice(&chunk[..n.min(room)]);
        }
    }
    buf
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sh(script: &str) -> Command {
        let mut c = Command::new("sh");
        c.args(["-c", script]).stdin(Stdio::null());
        c
    }

    /// Whether `pid` still exists and is not a zombie, polled for up to 10 s until it is gone.
    fn gone_within_10s(pid: u32) -> bool {
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if !crate::ProcStat::read(pid).is_some_and(|s| s.is_running()) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }

    #[test]
    fn captures_output_and_status() {
        let done = run_with_timeout(
            &mut sh("echo out; echo err >&2; exit 3"),
            Duration::from_secs(30),
            1024,
        )
        .unwrap();
        assert!(!done.timed_out && !done.success());
        assert_eq!(done.status.unwrap().code(), Some(3));
        assert_eq!(done.stdout, b"out\n");
        assert_eq!(last_line(&done.stderr), "err");
    }

    #[test]
    fn keeps_only_the_tail() {
        let done = run_with_timeout(
            &mut sh("seq 1 100000; echo last"),
            Duration::from_secs(30),
            16,
        )
        .unwrap();
        assert!(done.success());
        assert_eq!(done.stdout.len(), 16);
        assert!(done.stdout.ends_with(b"100000\nlast\n"));
    }

    #[test]
    fn a_timeout_kills_the_whole_group() {
        let dir = tempfile::tempdir().unwrap();
        let pidfile = dir.path().join("pid");
        let script = format!("sleep 300 & echo $! > {}; wait", pidfile.to_str().unwrap());
        // A generous timeout for the shell to write its pid file on a loaded host.
        let done = run_with_timeout(&mut sh(&script), Duration::from_secs(3), 1024).unwrap();
        assert!(done.timed_out && !done.success());
        let grandchild: u32 = std::fs::read_to_string(&pidfile)
            .expect("the shell wrote its child's pid")
            .trim()
            .parse()
            .unwrap();
        assert!(
            gone_within_10s(grandchild),
            "pid {grandchild} outlived its group"
        );
    }

    #[test]
    fn a_missing_program_is_not_found() {
        let err = run_with_timeout(
            &mut Command::new("/nonexistent/program"),
            Duration::from_secs(5),
            16,
        )
        .unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::NotFound);
    }

    #[test]
    fn read_tail_keeps_the_end() {
        let mut buf = Vec::new();
        read_tail(&b"0123456789"[..], 4, &mut buf);
        assert_eq!(buf, b"6789");
        assert_eq!(last_line(b"a\nb\n  \n"), "b");
        assert_eq!(last_line(b""), "");
    }

    #[cfg(feature = "tokio")]
    #[tokio::test]
    async fn async_runs_feed_stdin_and_kill_the_group_at_the_timeout() {
        let mut cat = tokio::process::Command::new("cat");
        let done = run_async(&mut cat, Duration::from_secs(30), Some(b"hello"), 1024)
            .await
            .unwrap();
        assert!(done.success());
        assert_eq!(done.stdout, b"hello");

        let dir = tempfile::tempdir().unwrap();
        let pidfile = dir.path().join("pid");
        let mut slow = tokio::process::Command::new("sh");
        slow.args([
            "-c",
            &format!("sleep 300 & echo $! > {}; wait", pidfile.to_str().unwrap()),
        ]);
        let done = run_async(&mut slow, Duration::from_secs(3), None, 1024)
            .await
            .unwrap();
        assert!(done.timed_out);
        let grandchild: u32 = std::fs::read_to_string(&pidfile)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        assert!(gone_within_10s(grandchild));
    }
}
