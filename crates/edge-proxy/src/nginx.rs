//! Running the nginx binary: `-t`, start, `-s reload`, `-s quit`, always with the instance's
//! own `-p PREFIX -c CONF -e ERROR_LOG` and a timeout.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use crate::EdgeError;
use crate::layout::Layout;

/// Where nginx is looked for when it is not on `PATH` (Debian installs it in /usr/sbin, which
/// an unprivileged user's `PATH` often lacks).
const FALLBACK_DIRS: [&str; 3] = ["/usr/sbin", "/usr/local/sbin", "/usr/local/nginx/sbin"];

/// The default limit on one nginx command.
pub const DEFAULT_COMMAND_TIMEOUT: Duration = Duration::from_secs(20);

/// The most of an nginx command's stdout and of its stderr kept for a message.
const OUTPUT_LIMIT: usize = 1 << 20;

/// The nginx binary and how long one command may take.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Nginx {
    binary: PathBuf,
    timeout: Duration,
}

impl Nginx {
    /// Finds nginx on `PATH`, then in /usr/sbin, /usr/local/sbin and /usr/local/nginx/sbin.
    ///
    /// # Errors
    /// [`EdgeError::NginxNotFound`] with the apt-get command that installs it.
    pub fn locate() -> Result<Self, EdgeError> {
        let path_dirs = std::env::var_os("PATH")
            .map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
            .unwrap_or_default();
        path_dirs
            .into_iter()
            .chain(FALLBACK_DIRS.iter().map(PathBuf::from))
            .map(|d| d.join("nginx"))
            .find(|p| is_executable(p))
            .map(Self::with_binary)
            .ok_or(EdgeError::NginxNotFound)
    }

    /// Uses the nginx binary at `binary`.
    pub fn with_binary(binary: impl Into<PathBuf>) -> Self {
        Self {
            binary: binary.into(),
            timeout: DEFAULT_COMMAND_TIMEOUT,
        }
    }

    /// Sets the limit on one command.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The binary in use.
    pub fn binary(&self) -> &Path {
        &self.binary
    }

    /// The command line for `layout` plus `extra`, for supervisors that run nginx in the
    /// foreground (render with `daemon: false`).
    pub fn command(&self, layout: &Layout, extra: &[&str]) -> std::process::Command {
        let mut command = std::process::Command::new(&self.binary);
        command
            .arg("-p")
            .arg(with_slash(layout.prefix()))
            .arg("-c")
            .arg(layout.conf_file())
            .arg("-e")
            .arg(layout.error_log())
            .args(extra);
        command
    }

    /// `nginx -t`: checks the configuration and every file it names.
    ///
    /// # Errors
    /// [`EdgeError::Nginx`] with nginx's own messages when the test fails.
    #[tracing::instrument(skip_all, fields(prefix = %layout.prefix().display()))]
    pub async fn test(&self, layout: &Layout) -> Result<String, EdgeError> {
        self.run(layout, &["-t", "-q"]).await
    }

    /// `nginx -s reload`: the master re-reads the configuration and replaces its workers
    /// gracefully (old workers finish in-flight requests).
    ///
    /// # Errors
    /// [`EdgeError::Nginx`] when the signal cannot be delivered (no master, bad pid file).
    #[tracing::instrument(skip_all, fields(prefix = %layout.prefix().display()))]
    pub async fn reload(&self, layout: &Layout) -> Result<(), EdgeError> {
        self.run(layout, &["-s", "reload"]).await.map(drop)
    }

    /// `nginx -s reopen`: the master reopens its log files (after they were renamed).
    ///
    /// # Errors
    /// [`EdgeError::Nginx`] when the signal cannot be delivered.
    pub async fn reopen(&self, layout: &Layout) -> Result<(), EdgeError> {
        self.run(layout, &["-s", "reopen"]).await.map(drop)
    }

    /// `nginx -s quit` (graceful) or `-s stop` (fast).
    ///
    /// # Errors
    /// [`EdgeError::Nginx`] when the signal cannot be delivered.
    pub async fn signal_stop(&self, layout: &Layout, graceful: bool) -> Result<(), EdgeError> {
        let signal = if graceful { "quit" } else { "stop" };
        self.run(layout, &["-s", signal]).await.map(drop)
    }

    /// Starts nginx for `layout`; with `daemon on` this returns once the master has forked.
    /// nginx's start-up messages go to `logs/startup.log`.
    ///
    /// # Errors
    /// [`EdgeError::Nginx`] when nginx exits non-zero (its messages included).
    #[tracing::instrument(skip_all, fields(prefix = %layout.prefix().display()))]
    pub async fn start_daemon(&self, layout: &Layout) -> Result<(), EdgeError> {
        let startup = layout.logs_dir().join("startup.log");
        let file =
            std::fs::File::create(&startup).map_err(|e| EdgeError::io("create", &startup, e))?;
        let mut command = tokio::process::Command::from(self.command(layout, &[]));
        command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(file)
            .kill_on_drop(true);
        let shown = self.shown(&[]);
        let mut child = command.spawn().map_err(|e| EdgeError::Nginx {
            command: shown.clone(),
            reason: e.to_string(),
        })?;
        let status = tokio::time::timeout(self.timeout, child.wait())
            .await
            .map_err(|_| EdgeError::Nginx {
                command: shown.clone(),
                reason: format!(
                    "still running after {:?} (is `daemon on` set?)",
                    self.timeout
                ),
            })?
            .map_err(|e| EdgeError::Nginx {
                command: shown.clone(),
                reason: e.to_string(),
            })?;
        if status.success() {
            return Ok(());
        }
        let messages = std::fs::read_to_string(&startup).unwrap_or_default();
        Err(EdgeError::Nginx {
            command: shown,
            reason: format!("{status}: {}", tail(&messages)),
        })
    }

    async fn run(&self, layout: &Layout, extra: &[&str]) -> Result<String, EdgeError> {
        let shown = format!(
            "{} -p {} -c {} {}",
            self.binary.display(),
            with_slash(layout.prefix()),
            layout.conf_file().display(),
            extra.join(" ")
        );
        let mut command = tokio::process::Command::from(self.command(layout, extra));
        let output = host_util::process::run_async(&mut command, self.timeout, None, OUTPUT_LIMIT)
            .await
            .map_err(|e| EdgeError::Nginx {
                command: shown.clone(),
                reason: e.to_string(),
            })?;
        let status = match output.status {
            Some(status) if !output.timed_out => status,
            _ => {
                return Err(EdgeError::Nginx {
                    command: shown,
                    reason: format!("no answer within {:?}", self.timeout),
                });
            }
        };
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        if status.success() {
            Ok(text)
        } else {
            Err(EdgeError::Nginx {
                command: shown,
                reason: format!("{status}: {}", tail(&text)),
            })
        }
    }

    fn shown(&self, extra: &[&str]) -> String {
        format!("{} {}", self.binary.display(), extra.join(" "))
            .trim_end()
            .to_owned()
    }
}

/// nginx treats `-p` as a directory only when it ends in `/`.
fn with_slash(path: &Path) -> String {
    let text = path.display().to_string();
    if text.ends_with('/') {
        text
    } else {
        format!("{text}/")
    }
}

/// The last few lines of nginx's output, enough to say why without flooding an error.
fn tail(text: &str) -> String {
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    let start = lines.len().saturating_sub(6);
    let joined = lines[start..].join(" | ");
    if joined.is_empty() {
        "no message".to_owned()
    } else {
        joined
    }
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// An nginx process's (master's or worker's) start time in clock ticks since boot, field 22
/// of `/proc/PID/stat`; `None` once it has exited.
pub(crate) fn process_start_time(pid: i32) -> Option<u64> {
    let stat = host_util::ProcStat::read(u32::try_from(pid).ok()?)?;
    // A zombie has exited.
    (stat.state != 'Z').then_some(stat.start_time)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tail_keeps_the_last_lines() {
        let text = (1..=10).map(|i| format!("l{i}\n")).collect::<String>();
        assert_eq!(tail(&text), "l5 | l6 | l7 | l8 | l9 | l10");
        assert_eq!(tail("\n"), "no message");
    }

    #[tokio::test]
    async fn a_binary_that_fails_is_reported_with_its_output() {
        let layout = Layout::new("/nonexistent-prefix");
        let err = Nginx::with_binary("/bin/false")
            .test(&layout)
            .await
            .unwrap_err();
        assert!(err.to_string().contains("/bin/false"), "{err}");
        let err = Nginx::with_binary("/nonexistent/nginx")
            .test(&layout)
            .await
            .unwrap_err();
        assert!(matches!(err, EdgeError::Nginx { .. }), "{err}");
    }

    #[test]
    fn own_start_time_is_read_and_a_dead_pid_has_none() {
        let me = i32::try_from(std::process::id()).unwrap();
        assert!(process_start_time(me).is_some());
        assert!(process_start_time(i32::MAX).is_none());
    }
}
