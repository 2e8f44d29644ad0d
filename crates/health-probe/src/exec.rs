//! The exec probe: a command (argv, never a shell string) exits 0 within the timeout. It runs in
//! its own process group, and the whole group is killed when the timeout passes, so a hung check
//! cannot leave children behind.

use std::process::Stdio;
use std::time::{Duration, Instant};

use tokio::io::AsyncReadExt;
use tracing::Instrument;

use crate::result::{Outcome, ProbeResult, Timings, millis};

/// How much of the command's stderr is kept for the reason.
const STDERR_TAIL: usize = 200;

/// A prepared command probe.
#[derive(Debug, Clone)]
pub struct ExecProbe {
    pub(crate) name: String,
    pub(crate) command: Vec<String>,
    pub(crate) timeout: Duration,
    pub(crate) max_latency: Option<Duration>,
}

impl ExecProbe {
    /// Runs the command once.
    pub async fn check(&self) -> ProbeResult {
        let program = self.command.first().cloned().unwrap_or_default();
        let span = tracing::info_span!("exec_probe", probe = %self.name, program = %program);
        async {
            let start = Instant::now();
            let (status, reason) = match self.run(&program).await {
                Err(reason) => (Outcome::Fail, reason),
                Ok(()) => {
                    let elapsed = start.elapsed();
                    match self.max_latency {
                        Some(budget) if elapsed > budget => (
                            Outcome::Fail,
                            format!(
                                "over latency budget ({} ms > {} ms)",
                                elapsed.as_millis(),
                                budget.as_millis()
                            ),
                        ),
                        _ => (
                            Outcome::Ok,
                            format!("exited 0 in {:.1} ms", elapsed.as_secs_f64() * 1000.0),
                        ),
                    }
                }
            };
            let timings = Timings {
                total_ms: millis(start.elapsed()),
                ..Timings::default()
            };
            ProbeResult {
                name: self.name.clone(),
                status,
                reason,
                status_code: None,
                timings_ms: timings,
            }
        }
        .instrument(span)
        .await
    }

    async fn run(&self, program: &str) -> Result<(), String> {
        let mut command = tokio::process::Command::new(program);
        command
            .args(self.command.iter().skip(1))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .process_group(0)
            .kill_on_drop(true);
        let mut child = command
            .spawn()
            .map_err(|e| format!("cannot start `{program}`: {e}"))?;
        let pid = child.id();
        let mut stderr = child.stderr.take();
        let wait = async {
            let mut captured = Vec::new();
            if let Some(stderr) = stderr.as_mut() {
                // Reading to the end before waiting avoids a full pipe blocking the child.
                let _ = stderr.read_to_end(&mut captured).await;
            }
            (child.wait().await, captured)
        };
        match tokio::time::timeout(self.timeout, wait).await {
            Err(_) => {
                if let Some(pid) = pid.and_then(|p| i32::try_from(p).ok()) {
                    // The group id is the child's pid (process_group(0)); killing the group also
                    // ends anything it started. The child itself is reaped by kill_on_drop.
                    let _ = nix::sys::signal::killpg(
                        nix::unistd::Pid::from_raw(pid),
                        nix::sys::signal::Signal::SIGKILL,
                    );
                }
                Err(format!(
                    "timed out after {} (command killed)",
                    humantime::format_duration(self.timeout)
                ))
            }
            Ok((Err(e), _)) => Err(format!("waiting for `{program}` failed: {e}")),
            Ok((Ok(status), _)) if status.success() => Ok(()),
            Ok((Ok(status), captured)) => {
                let text = String::from_utf8_lossy(&captured);
                let last = text
                    .lines()
                    .rev()
                    .find(|l| !l.trim().is_empty())
                    .unwrap_or("")
                    .trim();
                let last: String = last.chars().take(STDERR_TAIL).collect();
                let how = match status.code() {
                    Some(code) => format!("`{program}` exited with status {code}"),
                    None => format!("`{program}` was killed by a signal ({status})"),
                };
                Err(if last.is_empty() {
                    how
                } else {
                    format!("{how}: {last}")
                })
            }
        }
    }
}
