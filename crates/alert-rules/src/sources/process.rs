//! A process's resource use read from `/proc`: resident memory, CPU, threads, open files.
//!
//! The process is named by a pid file or a pid. A pid file may hold `PID START_TIME` (start
//! time in clock ticks since boot, field 22 of `/proc/PID/stat`); when it does, a different
//! process that happens to have the same pid is reported as an error, not measured.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::sample::Sample;

/// Which process.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProcessTarget {
    /// A file holding the pid (and optionally its start time).
    pub pid_file: Option<PathBuf>,
    /// A pid, for one-off use.
    pub pid: Option<u32>,
}

/// What to measure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProcessField {
    /// Resident set size in bytes (`VmRSS`).
    RssBytes,
    /// CPU use in percent of one core, measured over a short window.
    CpuPercent,
    /// Number of threads.
    Threads,
    /// Number of open file descriptors.
    OpenFds,
}

/// A source measuring one process.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ProcessSource {
    /// The process.
    pub target: ProcessTarget,
    /// The measurement.
    pub field: ProcessField,
    /// How long CPU use is measured over.
    #[serde(with = "humantime_serde")]
    pub cpu_window: Duration,
}

impl ProcessSource {
    /// Measures the process; a missing pid file or a process that is gone is an error.
    #[tracing::instrument(skip_all, fields(field = ?self.field))]
    pub async fn sample(&self) -> Sample {
        let pid = match self.pid().await {
            Ok(pid) => pid,
            Err(e) => return Sample::error(e),
        };
        let result = match self.field {
            ProcessField::RssBytes => rss_bytes(pid).await,
            ProcessField::Threads => status_field(pid, "Threads:").await,
            ProcessField::OpenFds => open_fds(pid).await,
            ProcessField::CpuPercent => cpu_percent(pid, self.cpu_window).await,
        };
        match result {
            Ok(v) => Sample::number(v),
            Err(e) => Sample::error(e),
        }
    }

    async fn pid(&self) -> Result<u32, String> {
        match (&self.target.pid, &self.target.pid_file) {
            (Some(pid), _) => Ok(*pid),
            (None, Some(file)) => {
                let text = tokio::fs::read_to_string(file)
                    .await
                    .map_err(|e| format!("cannot read pid file {}: {e}", file.display()))?;
                let mut words = text.split_whitespace();
                let pid: u32 = words.next().and_then(|w| w.parse().ok()).ok_or_else(|| {
                    format!("pid file {} does not start with a pid", file.display())
                })?;
                if let Some(expected) = words.next().and_then(|w| w.parse::<u64>().ok()) {
                    let actual = start_time(pid).await?;
                    if actual != expected {
                        return Err(format!(
                            "pid {pid} from {} now belongs to another process",
                            file.display()
                        ));
                    }
                }
                Ok(pid)
            }
            (None, None) => Err("the process source names neither pid nor pid_file".to_owned()),
        }
    }
}

async fn read_proc(pid: u32, file: &str) -> Result<String, String> {
    tokio::fs::read_to_string(format!("/proc/{pid}/{file}"))
        .await
        .map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                format!("process {pid} is not running")
            } else {
                format!("cannot read /proc/{pid}/{file}: {e}")
            }
        })
}

async fn status_field(pid: u32, key: &str) -> Result<f64, String> {
    let status = read_proc(pid, "status").await?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse::<f64>().ok())
        .ok_or_else(|| format!("/proc/{pid}/status has no {key} (a kernel thread or a zombie?)"))
}

async fn rss_bytes(pid: u32) -> Result<f64, String> {
    // VmRSS is in kB (KiB) in /proc/PID/status.
    status_field(pid, "VmRSS:").await.map(|kib| kib * 1024.0)
}

async fn open_fds(pid: u32) -> Result<f64, String> {
    let mut dir = tokio::fs::read_dir(format!("/proc/{pid}/fd"))
        .await
        .map_err(|e| format!("cannot list /proc/{pid}/fd: {e}"))?;
    let mut count = 0u32;
    while let Ok(Some(_)) = dir.next_entry().await {
        count += 1;
    }
    Ok(f64::from(count))
}

/// `/proc/PID/stat`, parsed ([`host_util::ProcStat`]).
async fn stat(pid: u32) -> Result<host_util::ProcStat, String> {
    let text = read_proc(pid, "stat").await?;
    host_util::ProcStat::parse(pid, &text).ok_or_else(|| format!("/proc/{pid}/stat is malformed"))
}

/// The process's start time in clock ticks since boot (field 22).
pub(crate) async fn start_time(pid: u32) -> Result<u64, String> {
    stat(pid).await.map(|s| s.start_time)
}

async fn cpu_ticks(pid: u32) -> Result<u64, String> {
    stat(pid).await.map(|s| s.utime + s.stime)
}

async fn cpu_percent(pid: u32, window: Duration) -> Result<f64, String> {
    let start = tokio::time::Instant::now();
    let before = cpu_ticks(pid).await?;
    tokio::time::sleep(window).await;
    let after = cpu_ticks(pid).await?;
    let seconds = start.elapsed().as_secs_f64();
    let hz = f64::from(rustix::param::clock_ticks_per_second() as u32);
    if seconds <= 0.0 || hz <= 0.0 {
        return Err("cannot measure CPU over an empty window".to_owned());
    }
    Ok((after.saturating_sub(before)) as f64 / hz / seconds * 100.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn source(target: ProcessTarget, field: ProcessField) -> ProcessSource {
        ProcessSource {
            target,
            field,
            cpu_window: Duration::from_millis(200),
        }
    }

    fn me() -> ProcessTarget {
        ProcessTarget {
            pid: Some(std::process::id()),
            pid_file: None,
        }
    }

    #[tokio::test]
    async fn measures_this_process() {
        let Sample::Value(v) = source(me(), ProcessField::RssBytes).sample().await else {
            panic!()
        };
        assert!(v.as_f64().unwrap() > 1024.0 * 1024.0, "{v}");
        let Sample::Value(v) = source(me(), ProcessField::Threads).sample().await else {
            panic!()
        };
        assert!(v.as_f64().unwrap() >= 1.0);
        let Sample::Value(v) = source(me(), ProcessField::OpenFds).sample().await else {
            panic!()
        };
        assert!(v.as_f64().unwrap() >= 3.0);
        let Sample::Value(v) = source(me(), ProcessField::CpuPercent).sample().await else {
            panic!()
        };
        assert!(v.as_f64().unwrap() >= 0.0);
    }

    #[tokio::test]
    async fn a_busy_child_shows_cpu_use() {
        let mut child = std::process::Command::new("sh")
            .arg("-c")
            .arg("while :; do :; done")
            .spawn()
            .unwrap();
        let target = ProcessTarget {
            pid: Some(child.id()),
            pid_file: None,
        };
        let sample = source(target, ProcessField::CpuPercent).sample().await;
        child.kill().unwrap();
        child.wait().unwrap();
        let Sample::Value(v) = sample else {
            panic!("{sample:?}")
        };
        // A spinning shell uses most of a core; the machine is shared, so the bar is low.
        assert!(v.as_f64().unwrap() > 10.0, "{v}");
    }

    #[tokio::test]
    async fn pid_files_are_checked_against_the_start_time() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("svc.pid");
        let pid = std::process::id();
        let start = start_time(pid).await.unwrap();
        let target = ProcessTarget {
            pid_file: Some(file.clone()),
            pid: None,
        };

        std::fs::write(&file, format!("{pid} {start}\n")).unwrap();
        assert!(matches!(
            source(target.clone(), ProcessField::Threads).sample().await,
            Sample::Value(_)
        ));
        std::fs::write(&file, format!("{pid} {}\n", start + 1)).unwrap();
        let Sample::Error(e) = source(target.clone(), ProcessField::Threads).sample().await else {
            panic!()
        };
        assert!(e.contains("another process"), "{e}");
        std::fs::remove_file(&file).unwrap();
        let Sample::Error(e) = source(target, ProcessField::Threads).sample().await else {
            panic!()
        };
        assert!(e.contains("pid file"), "{e}");
    }

    #[tokio::test]
    async fn a_gone_process_is_an_error() {
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id();
        child.wait().unwrap();
        let Sample::Error(e) = source(
            ProcessTarget {
                pid: Some(pid),
                pid_file: None,
            },
            ProcessField::RssBytes,
        )
        .sample()
        .await
        else {
            panic!()
        };
        assert!(e.contains("not running"), "{e}");
    }
}
