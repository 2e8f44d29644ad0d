//! The exec probe: a command (argv, never a shell string) exits 0 within the timeout. It runs in
//! its own process group, and the whole group is killed when the timeout passes, so a hung check
//! cannot leave children behind.

use std::time::{Duration, Instant};

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
        command.args(self.command.iter().skip(1));
        let done = host_util::process::run_async(&mut command, self.timeout, None, 64 * 1024)
            .await
            .map_err(|e| format!("cannot start `{program}`: {e}"))?;
        match done.status {
            _ if done.timed_out => Err(format!(
                "timed out after {} (command killed)",
                humantime::format_duration(self.timeout)
            )),
            None => Err(format!("waiting for `{program}` failed")),
            Some(status) if status.success() => Ok(()),
            Some(status) => {
                let last = host_util::process::last_line(&done.stderr);
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
