//! Host facts: free disk, available memory, load average.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::sample::Sample;

/// Which fact.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HostFact {
    /// Free space available to unprivileged users on the file system holding `path`, in percent.
    DiskFreePercent,
    /// The same, in bytes.
    DiskFreeBytes,
    /// `MemAvailable` from /proc/meminfo, in bytes.
    MemoryAvailableBytes,
    /// `MemAvailable` as a percentage of `MemTotal`.
    MemoryAvailablePercent,
    /// The one-minute load average.
    Load1,
    /// The five-minute load average.
    Load5,
    /// The fifteen-minute load average.
    Load15,
}

/// A source reading one host fact.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HostSource {
    /// The fact.
    pub fact: HostFact,
    /// The path whose file system the disk facts describe (default `/`).
    pub path: PathBuf,
}

impl HostSource {
    /// Reads the fact.
    #[tracing::instrument(skip_all, fields(fact = ?self.fact))]
    pub async fn sample(&self) -> Sample {
        let result = match self.fact {
            HostFact::DiskFreePercent | HostFact::DiskFreeBytes => disk(&self.path, self.fact),
            HostFact::MemoryAvailableBytes | HostFact::MemoryAvailablePercent => {
                memory(self.fact).await
            }
            HostFact::Load1 | HostFact::Load5 | HostFact::Load15 => load(self.fact).await,
        };
        match result {
            Ok(v) => Sample::number(v),
            Err(e) => Sample::error(e),
        }
    }
}

fn disk(path: &std::path::Path, fact: HostFact) -> Result<f64, String> {
    let st = rustix::fs::statvfs(path).map_err(|e| format!("statvfs {}: {e}", path.display()))?;
    let block = st.f_frsize as f64;
    let total = st.f_blocks as f64 * block;
    let available = st.f_bavail as f64 * block;
    if fact == HostFact::DiskFreeBytes {
        return Ok(available);
    }
    if total <= 0.0 {
        return Err(format!(
            "the file system holding {} reports no size",
            path.display()
        ));
    }
    Ok(available / total * 100.0)
}

async fn memory(fact: HostFact) -> Result<f64, String> {
    let text = tokio::fs::read_to_string("/proc/meminfo")
        .await
        .map_err(|e| format!("/proc/meminfo: {e}"))?;
    let field = |key: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|r| r.split_whitespace().next())
            .and_then(|n| n.parse::<f64>().ok())
            .map(|kib| kib * 1024.0)
            .ok_or_else(|| format!("/proc/meminfo has no {key}"))
    };
    let available = field("MemAvailable:")?;
    if fact == HostFact::MemoryAvailableBytes {
        return Ok(available);
    }
    let total = field("MemTotal:")?;
    Ok(available / total * 100.0)
}

async fn load(fact: HostFact) -> Result<f64, String> {
    let text = tokio::fs::read_to_string("/proc/loadavg")
        .await
        .map_err(|e| format!("/proc/loadavg: {e}"))?;
    let index = match fact {
        HostFact::Load1 => 0,
        HostFact::Load5 => 1,
        _ => 2,
    };
    text.split_whitespace()
        .nth(index)
        .and_then(|n| n.parse().ok())
        .ok_or_else(|| "/proc/loadavg is malformed".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn read(fact: HostFact, path: &str) -> Sample {
        HostSource {
            fact,
            path: PathBuf::from(path),
        }
        .sample()
        .await
    }

    #[tokio::test]
    async fn reads_every_fact() {
        for fact in [
            HostFact::DiskFreePercent,
            HostFact::DiskFreeBytes,
            HostFact::MemoryAvailableBytes,
            HostFact::MemoryAvailablePercent,
            HostFact::Load1,
            HostFact::Load5,
            HostFact::Load15,
        ] {
            let Sample::Value(v) = read(fact, "/").await else {
                panic!("{fact:?}")
            };
            let n = v.as_f64().unwrap();
            assert!(n >= 0.0, "{fact:?} = {n}");
            if matches!(
                fact,
                HostFact::DiskFreePercent | HostFact::MemoryAvailablePercent
            ) {
                assert!(n <= 100.0, "{fact:?} = {n}");
            }
        }
    }

    #[tokio::test]
    async fn a_missing_path_is_an_error() {
        let Sample::Error(e) = read(HostFact::DiskFreePercent, "/nonexistent/path").await else {
            panic!()
        };
        assert!(e.contains("/nonexistent/path"), "{e}");
    }
}
