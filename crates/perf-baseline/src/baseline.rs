//! Baseline files: a run saved as versioned JSON with the settings, the environment it ran in,
//! a readable summary and the serialized histograms, written atomically.

use std::path::Path;

use serde::{Deserialize, Serialize};
use tracing::instrument;

use crate::PerfError;
use crate::report::{RunReport, RunSummary};

/// The `format` field of every baseline file.
pub const BASELINE_FORMAT: &str = "cutover-perf-baseline";
/// The version this crate writes and reads.
pub const BASELINE_VERSION: u32 = 1;

/// Where a run happened, so that a comparison across machines is recognisable as such.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Environment {
    /// Host name.
    pub host: String,
    /// Operating system and version.
    pub os: String,
    /// Kernel version.
    pub kernel: String,
    /// Logical cores available to the load generator.
    pub cores: usize,
    /// The version of this crate that measured.
    pub perf_baseline_version: String,
}

impl Environment {
    /// Describes the current machine.
    pub fn current() -> Self {
        Self {
            host: sysinfo::System::host_name().unwrap_or_default(),
            os: sysinfo::System::long_os_version().unwrap_or_default(),
            kernel: sysinfo::System::kernel_version().unwrap_or_default(),
            cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
            perf_baseline_version: env!("CARGO_PKG_VERSION").to_owned(),
        }
    }
}

/// A saved run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Baseline {
    /// Always [`BASELINE_FORMAT`].
    pub format: String,
    /// The file format version ([`BASELINE_VERSION`]).
    pub version: u32,
    /// Where it ran.
    pub environment: Environment,
    /// The readable figures (what `show` prints); derived from `report`.
    pub summary: RunSummary,
    /// The full measurement, histograms included (base64 of the HdrHistogram V2 format).
    pub report: RunReport,
}

impl Baseline {
    /// Wraps a run with the current environment.
    pub fn new(report: RunReport) -> Self {
        Self {
            format: BASELINE_FORMAT.to_owned(),
            version: BASELINE_VERSION,
            environment: Environment::current(),
            summary: report.summary(),
            report,
        }
    }

    /// Reads and checks a baseline file.
    #[instrument(skip_all, fields(path = %path.display()))]
    pub fn load(path: &Path) -> Result<Self, PerfError> {
        let text = std::fs::read_to_string(path).map_err(|source| PerfError::ReadBaseline {
            path: path.to_path_buf(),
            error: source,
        })?;
        Self::from_json(path, &text)
    }

    /// Parses a baseline from text; `path` is used in errors.
    pub fn from_json(path: &Path, text: &str) -> Result<Self, PerfError> {
        let invalid = |reason: String| PerfError::InvalidBaseline {
            path: path.to_path_buf(),
            reason,
        };
        let header: serde_json::Value =
            serde_json::from_str(text).map_err(|e| invalid(format!("not JSON: {e}")))?;
        if header.get("format").and_then(|f| f.as_str()) != Some(BASELINE_FORMAT) {
            return Err(invalid(format!(
                "not a {BASELINE_FORMAT} file (no matching \"format\")"
            )));
        }
        match header.get("version").and_then(|v| v.as_u64()) {
            Some(v) if v == u64::from(BASELINE_VERSION) => {}
            other => {
                return Err(invalid(format!(
                    "version {other:?} is not supported; this build reads version {BASELINE_VERSION}"
                )));
            }
        }
        serde_json::from_value(header).map_err(|e| invalid(e.to_string()))
    }

    /// Writes the baseline atomically: a temporary file in the same directory, fsync, rename,
    /// fsync of the directory.
    #[instrument(skip_all, fields(path = %path.display()))]
    pub fn save(&self, path: &Path) -> Result<(), PerfError> {
        let write_err = |source: std::io::Error| PerfError::WriteBaseline {
            path: path.to_path_buf(),
            error: source,
        };
        let mut json =
            serde_json::to_vec_pretty(self).map_err(|e| write_err(std::io::Error::other(e)))?;
        json.push(b'\n');
        host_util::fs::write_atomic(path, &json, 0o644).map_err(write_err)
    }
}
