//! A command whose standard output is the value (a number, or a state such as `open`).

use std::time::Duration;

use serde::Serialize;

use crate::sample::{Sample, sample_from_text};

/// Output beyond this is ignored: a metric is one short line.
const MAX_OUTPUT: usize = 64 * 1024;

/// A source that runs `argv` (no shell) and reads its standard output.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CommandSource {
    /// The program and its arguments.
    pub argv: Vec<String>,
    /// A factor applied to numbers.
    pub scale: Option<f64>,
    /// How long the command may run before it and its process group are killed.
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
}

impl CommandSource {
    /// Runs the command: exit 0 with a number or word is a value, exit 0 with empty output is
    /// no data, anything else (cannot start, non-zero exit, timeout) is an error.
    #[tracing::instrument(skip_all, fields(program = self.argv.first().map(String::as_str).unwrap_or("")))]
    pub async fn sample(&self) -> Sample {
        let Some((program, args)) = self.argv.split_first() else {
            return Sample::error("the command is empty");
        };
        let mut command = tokio::process::Command::new(program);
        command.args(args);
        let done = match host_util::process::run_async(&mut command, self.timeout, None, MAX_OUTPUT)
            .await
        {
            Ok(done) => done,
            Err(e) => return Sample::error(format!("cannot start `{program}`: {e}")),
        };
        match done.status {
            _ if done.timed_out => Sample::error(format!(
                "`{program}` did not finish within {}",
                humantime::format_duration(self.timeout)
            )),
            Some(status) if status.success() => {
                sample_from_text(&String::from_utf8_lossy(&done.stdout)).scaled(self.scale)
            }
            Some(status) => {
                let last = host_util::process::last_line(&done.stderr);
                Sample::error(format!(
                    "`{program}` exited with {status}{}{last}",
                    if last.is_empty() { "" } else { ": " }
                ))
            }
            None => Sample::error(format!("waiting for `{program}` failed")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cmd(script: &str, timeout_ms: u64) -> CommandSource {
        CommandSource {
            argv: vec!["sh".into(), "-c".into(), script.into()],
            scale: None,
            timeout: Duration::from_millis(timeout_ms),
        }
    }

    #[tokio::test]
    async fn output_becomes_a_sample() {
        assert_eq!(cmd("echo 42", 5000).sample().await, Sample::number(42.0));
        assert_eq!(cmd("echo open", 5000).sample().await, Sample::text("open"));
        assert!(matches!(
            cmd("true", 5000).sample().await,
            Sample::NoData(_)
        ));
    }

    #[tokio::test]
    async fn failures_are_errors_with_the_reason() {
        let Sample::Error(e) = cmd("echo boom >&2; exit 3", 5000).sample().await else {
            panic!()
        };
        assert!(e.contains("boom") && e.contains('3'), "{e}");
        let missing = CommandSource {
            argv: vec!["/nonexistent/prog".into()],
            scale: None,
            timeout: Duration::from_secs(5),
        };
        assert!(matches!(missing.sample().await, Sample::Error(_)));
    }

    #[tokio::test]
    async fn a_hung_command_is_killed_with_its_children() {
        let dir = tempfile::tempdir().unwrap();
        let pid_file = dir.path().join("child.pid");
        let script = format!("sleep 30 & echo $! > {}; wait", pid_file.display());
        let Sample::Error(e) = cmd(&script, 500).sample().await else {
            panic!()
        };
        assert!(e.contains("did not finish"), "{e}");
        let child: i32 = std::fs::read_to_string(&pid_file)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        let gone = cutover_tests::wait_until(Duration::from_secs(10), || {
            // A killed child may linger as a zombie of the killed shell until init reaps it.
            std::fs::read_to_string(format!("/proc/{child}/stat")).map_or(true, |s| {
                s.rsplit(')')
                    .next()
                    .is_some_and(|r| r.trim_start().starts_with('Z'))
            })
        });
        assert!(gone, "the background child {child} survived the timeout");
    }
}
