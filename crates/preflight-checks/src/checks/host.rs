//! Host facts: `disk-free`, `inodes-free`, `memory`, `cpu-count`, `open-files-limit`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::json;

use crate::units::{Level, Size};
use crate::{Check, CheckContext, DEFAULT_TIMEOUT, Outcome};

/// Compares `available` of `total` against warn/fail levels.
fn judge(
    available: u64,
    total: u64,
    warn: Option<Level>,
    fail: Option<Level>,
    bytes: bool,
    message: String,
    remedy: &str,
) -> Outcome {
    if let Some(level) = fail.filter(|l| l.is_below(available, total)) {
        return Outcome::fail(
            format!("{message}, below the fail level {}", level.describe(bytes)),
            remedy,
        );
    }
    if let Some(level) = warn.filter(|l| l.is_below(available, total)) {
        return Outcome::warn(
            format!("{message}, below the warn level {}", level.describe(bytes)),
            remedy,
        );
    }
    Outcome::pass(message)
}

fn percent(part: u64, total: u64) -> f64 {
    if total == 0 {
        0.0
    } else {
        part as f64 * 100.0 / total as f64
    }
}

/// The nearest existing ancestor of `path` (a deploy root may not exist yet; its filesystem is
/// the one that will hold it).
fn existing_ancestor(path: &Path) -> Option<&Path> {
    path.ancestors()
        .find(|p| !p.as_os_str().is_empty() && p.exists())
}

fn statvfs_of(path: &Path) -> Result<(PathBuf, rustix::fs::StatVfs), Outcome> {
    let Some(existing) = existing_ancestor(path) else {
        return Err(Outcome::fail(
            format!("{}: neither it nor any parent exists", path.display()),
            "check the path in [[preflight.check]]",
        ));
    };
    rustix::fs::statvfs(existing)
        .map(|s| (existing.to_path_buf(), s))
        .map_err(|e| {
            Outcome::fail(
                format!("cannot stat the filesystem of {}: {e}", existing.display()),
                "check that the path is readable",
            )
        })
}

fn on_note(path: &Path, existing: &Path) -> String {
    if path == existing {
        String::new()
    } else {
        format!(
            " (measured at {}, {} does not exist yet)",
            existing.display(),
            path.display()
        )
    }
}

macro_rules! common {
    () => {
        fn id(&self) -> &str {
            &self.id
        }
        fn timeout(&self) -> Duration {
            self.timeout
        }
    };
}

/// `disk-free`: free space on the filesystem holding a path.
#[derive(Debug, Clone)]
pub struct DiskFree {
    id: String,
    timeout: Duration,
    path: PathBuf,
    warn_below: Option<Level>,
    fail_below: Option<Level>,
}

impl DiskFree {
    /// Default levels: warn below 10 %, fail below 1 GB.
    pub fn new(id: impl Into<String>, path: impl Into<PathBuf>) -> Self {
        Self {
            id: id.into(),
            timeout: DEFAULT_TIMEOUT,
            path: path.into(),
            warn_below: Some(Level::Percent(10.0)),
            fail_below: Some(Level::Absolute(1_000_000_000)),
        }
    }
    /// Sets the warn level (`None` never warns).
    #[must_use]
    pub fn warn_below(mut self, level: Option<Level>) -> Self {
        self.warn_below = level;
        self
    }
    /// Sets the fail level (`None` never fails).
    #[must_use]
    pub fn fail_below(mut self, level: Option<Level>) -> Self {
        self.fail_below = level;
        self
    }
    /// Sets the timeout.
    #[must_use]
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }
}

impl Check for DiskFree {
    common!();
    fn kind(&self) -> &'static str {
        "disk-free"
    }
    fn description(&self) -> String {
        format!(
            "free space on the filesystem holding {}",
            self.path.display()
        )
    }
    fn run(&self, _ctx: &CheckContext) -> Outcome {
        let (existing, st) = match statvfs_of(&self.path) {
            Ok(v) => v,
            Err(outcome) => return outcome,
        };
        // f_bavail: blocks available to unprivileged users, which is what a service sees.
        let available = st.f_bavail.saturating_mul(st.f_frsize);
        let total = st.f_blocks.saturating_mul(st.f_frsize);
        let message = format!(
            "{} free of {} ({:.0}%) on {}{}",
            Size(available),
            Size(total),
            percent(available, total),
            self.path.display(),
            on_note(&self.path, &existing)
        );
        judge(
            available,
            total,
            self.warn_below,
            self.fail_below,
            true,
            message,
            "free space (old releases, backups, logs) or grow the filesystem",
        )
        .with_data(json!({"path": self.path, "available_bytes": available, "total_bytes": total}))
    }
}

/// `inodes-free`: free inodes on the filesystem holding a path (many small files, such as
/// `node_modules`, exhaust inodes before bytes).
#[derive(Debug, Clone)]
pub struct InodesFree {
    id: String,
    timeout: Duration,
    path: PathBuf,
    warn_below: Option<Level>,
    fail_below: Option<Level>,
}

impl InodesFree {
    /// Default levels: warn below 10 %, fail below 5 %.
    pub fn new(id: impl Into<String>, path: impl Into<PathBuf>) -> Self {
        Self {
            id: id.into(),
            timeout: DEFAULT_TIMEOUT,
            path: path.into(),
            warn_below: Some(Level::Percent(10.0)),
            fail_below: Some(Level::Percent(5.0)),
        }
    }
    /// Sets the warn level (a count or a percentage).
    #[must_use]
    pub fn warn_below(mut self, level: Option<Level>) -> Self {
        self.warn_below = level;
        self
    }
    /// Sets the fail level (a count or a percentage).
    #[must_use]
    pub fn fail_below(mut self, level: Option<Level>) -> Self {
        self.fail_below = level;
        self
    }
    /// Sets the timeout.
    #[must_use]
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }
}

impl Check for InodesFree {
    common!();
    fn kind(&self) -> &'static str {
        "inodes-free"
    }
    fn description(&self) -> String {
        format!(
            "free inodes on the filesystem holding {}",
            self.path.display()
        )
    }
    fn run(&self, _ctx: &CheckContext) -> Outcome {
        let (existing, st) = match statvfs_of(&self.path) {
            Ok(v) => v,
            Err(outcome) => return outcome,
        };
        if st.f_files == 0 {
            return Outcome::skip(format!(
                "the filesystem holding {} does not count inodes (btrfs and some others allocate them dynamically)",
                existing.display()
            ));
        }
        let message = format!(
            "{} inodes free of {} ({:.0}%) on {}{}",
            st.f_favail,
            st.f_files,
            percent(st.f_favail, st.f_files),
            self.path.display(),
            on_note(&self.path, &existing)
        );
        judge(
            st.f_favail,
            st.f_files,
            self.warn_below,
            self.fail_below,
            false,
            message,
            "remove many small files (old releases, caches, node_modules) or recreate the filesystem with more inodes",
        )
        .with_data(json!({"path": self.path, "free_inodes": st.f_favail, "total_inodes": st.f_files}))
    }
}

/// `memory`: available memory (`MemAvailable` in /proc/meminfo: free plus reclaimable).
#[derive(Debug, Clone)]
pub struct Memory {
    id: String,
    timeout: Duration,
    warn_below: Option<Level>,
    fail_below: Option<Level>,
    meminfo: PathBuf,
}

impl Memory {
    /// Default levels: warn below 2 GB, no fail level (the replaced tooling's rule).
    pub fn new(id: impl Into<String>) -> Self {
        Self {
            id: id.into(),
            timeout: DEFAULT_TIMEOUT,
            warn_below: Some(Level::Absolute(2_000_000_000)),
            fail_below: None,
            meminfo: PathBuf::from("/proc/meminfo"),
        }
    }
    /// Sets the warn level (bytes or a percentage of total memory).
    #[must_use]
    pub fn warn_below(mut self, level: Option<Level>) -> Self {
        self.warn_below = level;
        self
    }
    /// Sets the fail level.
    #[must_use]
    pub fn fail_below(mut self, level: Option<Level>) -> Self {
        self.fail_below = level;
        self
    }
    /// Sets the timeout.
    #[must_use]
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }
    /// Reads another file in /proc/meminfo's format (for tests of odd hosts).
    #[must_use]
    pub fn meminfo_path(mut self, path: impl Into<PathBuf>) -> Self {
        self.meminfo = path.into();
        self
    }
}

/// `(MemAvailable, MemTotal)` in bytes from /proc/meminfo text.
fn parse_meminfo(text: &str) -> Option<(u64, u64)> {
    let field = |name: &str| {
        text.lines().find_map(|line| {
            let rest = line.strip_prefix(name)?.strip_prefix(':')?;
            let kib: u64 = rest.trim().trim_end_matches("kB").trim().parse().ok()?;
            Some(kib.saturating_mul(1024))
        })
    };
    Some((field("MemAvailable")?, field("MemTotal")?))
}

impl Check for Memory {
    common!();
    fn kind(&self) -> &'static str {
        "memory"
    }
    fn description(&self) -> String {
        "available memory".to_owned()
    }
    fn run(&self, _ctx: &CheckContext) -> Outcome {
        let text = match std::fs::read_to_string(&self.meminfo) {
            Ok(t) => t,
            Err(e) => {
                return Outcome::fail(
                    format!("cannot read {}: {e}", self.meminfo.display()),
                    "run on Linux with /proc mounted",
                );
            }
        };
        let Some((available, total)) = parse_meminfo(&text) else {
            return Outcome::fail(
                format!(
                    "{} has no MemAvailable/MemTotal lines",
                    self.meminfo.display()
                ),
                "run on Linux 3.14 or later with /proc mounted",
            );
        };
        let message = format!(
            "{} available of {} ({:.0}%)",
            Size(available),
            Size(total),
            percent(available, total)
        );
        judge(
            available,
            total,
            self.warn_below,
            self.fail_below,
            true,
            message,
            "stop what else runs on the host or add memory",
        )
        .with_data(json!({"available_bytes": available, "total_bytes": total}))
    }
}

/// `cpu-count`: CPUs this process may use (affinity and cgroup quota included).
#[derive(Debug, Clone)]
pub struct CpuCount {
    id: String,
    timeout: Duration,
    warn_below: Option<u64>,
    fail_below: Option<u64>,
}

impl CpuCount {
    /// Default levels: warn below 2, no fail level.
    pub fn new(id: impl Into<String>) -> Self {
        Self {
            id: id.into(),
            timeout: DEFAULT_TIMEOUT,
            warn_below: Some(2),
            fail_below: None,
        }
    }
    /// Warn when fewer CPUs than this are usable.
    #[must_use]
    pub fn warn_below(mut self, n: u64) -> Self {
        self.warn_below = Some(n);
        self
    }
    /// Fail when fewer CPUs than this are usable.
    #[must_use]
    pub fn fail_below(mut self, n: u64) -> Self {
        self.fail_below = Some(n);
        self
    }
    /// Sets both levels at once (`None` disables one).
    #[must_use]
    pub fn levels(mut self, warn: Option<u64>, fail: Option<u64>) -> Self {
        self.warn_below = warn;
        self.fail_below = fail;
        self
    }
    /// Sets the timeout.
    #[must_use]
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }
}

impl Check for CpuCount {
    common!();
    fn kind(&self) -> &'static str {
        "cpu-count"
    }
    fn description(&self) -> String {
        "usable CPUs".to_owned()
    }
    fn run(&self, _ctx: &CheckContext) -> Outcome {
        let usable = match std::thread::available_parallelism() {
            Ok(n) => n.get() as u64,
            Err(e) => {
                return Outcome::fail(
                    format!("cannot tell how many CPUs are usable: {e}"),
                    "run on Linux with /proc and /sys mounted",
                );
            }
        };
        judge(
            usable,
            0,
            self.warn_below.map(Level::Absolute),
            self.fail_below.map(Level::Absolute),
            false,
            format!("{usable} CPUs usable"),
            "run on a bigger host, or widen the CPU affinity / cgroup quota",
        )
        .with_data(json!({"cpus": usable}))
    }
}

/// `open-files-limit`: the soft `RLIMIT_NOFILE` (each connection is a file descriptor).
#[derive(Debug, Clone)]
pub struct OpenFilesLimit {
    id: String,
    timeout: Duration,
    warn_below: Option<u64>,
    fail_below: Option<u64>,
}

impl OpenFilesLimit {
    /// Default levels: warn below 1024, fail below 256.
    pub fn new(id: impl Into<String>) -> Self {
        Self {
            id: id.into(),
            timeout: DEFAULT_TIMEOUT,
            warn_below: Some(1024),
            fail_below: Some(256),
        }
    }
    /// Sets both levels (`None` disables one).
    #[must_use]
    pub fn levels(mut self, warn: Option<u64>, fail: Option<u64>) -> Self {
        self.warn_below = warn;
        self.fail_below = fail;
        self
    }
    /// Sets the timeout.
    #[must_use]
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }
}

impl Check for OpenFilesLimit {
    common!();
    fn kind(&self) -> &'static str {
        "open-files-limit"
    }
    fn description(&self) -> String {
        "the open-files limit (RLIMIT_NOFILE)".to_owned()
    }
    fn run(&self, _ctx: &CheckContext) -> Outcome {
        let limit = rustix::process::getrlimit(rustix::process::Resource::Nofile);
        // `None` means unlimited.
        let soft = limit.current.unwrap_or(u64::MAX);
        let hard = limit.maximum.unwrap_or(u64::MAX);
        let show = |v: u64| {
            if v == u64::MAX {
                "unlimited".to_owned()
            } else {
                v.to_string()
            }
        };
        judge(
            soft,
            0,
            self.warn_below.map(Level::Absolute),
            self.fail_below.map(Level::Absolute),
            false,
            format!("soft limit {} (hard {})", show(soft), show(hard)),
            "raise it: `ulimit -n 65536` in the shell, LimitNOFILE= in the systemd unit, or nofile in /etc/security/limits.conf",
        )
        .with_data(json!({"soft": limit.current, "hard": limit.maximum}))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn meminfo_parses_available_and_total() {
        let text = "MemTotal:       16384 kB\nMemFree:  1 kB\nMemAvailable:    8192 kB\n";
        assert_eq!(parse_meminfo(text), Some((8192 * 1024, 16384 * 1024)));
        assert_eq!(parse_meminfo("MemTotal: 1 kB\n"), None);
    }

    #[test]
    fn judge_prefers_fail_over_warn() {
        let o = judge(
            5,
            100,
            Some(Level::Percent(50.0)),
            Some(Level::Absolute(10)),
            false,
            "m".into(),
            "r",
        );
        assert_eq!(o.status, crate::CheckStatus::Fail);
        let o = judge(
            20,
            100,
            Some(Level::Percent(50.0)),
            Some(Level::Absolute(10)),
            false,
            "m".into(),
            "r",
        );
        assert_eq!(o.status, crate::CheckStatus::Warn);
        let o = judge(
            60,
            100,
            Some(Level::Percent(50.0)),
            Some(Level::Absolute(10)),
            false,
            "m".into(),
            "r",
        );
        assert_eq!(o.status, crate::CheckStatus::Pass);
    }
}
