//! The `[perf]` table of `cutover.toml`, owned by this crate.
//!
//! ```toml
//! [perf]
//! connections = 16          # closed model; or `rate = 500` for the open model
//! duration = "30s"          # or `requests = 10000`
//! warmup = "2s"
//! timeout = "10s"
//! baseline = "state/baselines/perf.json"
//!
//! [[perf.endpoint]]
//! url = "http://127.0.0.1:7000/api/health"
//! weight = 3
//!
//! [[perf.endpoint]]
//! url = "http://127.0.0.1:7000/api/tools"
//!
//! [perf.tolerances]
//! p95 = "10%"
//! throughput = "15%"
//! ```

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::PerfError;
use crate::compare::Tolerances;
use crate::endpoint::Endpoint;
use crate::engine::{LoadModel, LoadPlan, StopAfter};

/// The default number of connections.
pub const DEFAULT_CONNECTIONS: usize = 16;
/// The default measured duration.
pub const DEFAULT_DURATION: Duration = Duration::from_secs(10);
/// The default request timeout.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// `[perf]`: what to load, how hard, for how long, and how much a figure may move.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PerfConfig {
    /// The endpoints (`[[perf.endpoint]]`).
    #[serde(default, rename = "endpoint")]
    pub endpoints: Vec<Endpoint>,
    /// Connections (default 16).
    #[serde(default)]
    pub connections: Option<usize>,
    /// Requests per second: selects the open model.
    #[serde(default)]
    pub rate: Option<f64>,
    /// Measured duration (default 10 s), unless `requests` is set.
    #[serde(default, with = "humantime_serde")]
    #[schemars(with = "Option<String>")]
    pub duration: Option<Duration>,
    /// Measured requests instead of a duration.
    #[serde(default)]
    pub requests: Option<u64>,
    /// Uncounted warm-up (default none).
    #[serde(default, with = "humantime_serde")]
    #[schemars(with = "Option<String>")]
    pub warmup: Option<Duration>,
    /// Request timeout (default 10 s).
    #[serde(default, with = "humantime_serde")]
    #[schemars(with = "Option<String>")]
    pub timeout: Option<Duration>,
    /// Where the baseline lives, relative to the manifest.
    #[serde(default)]
    pub baseline: Option<PathBuf>,
    /// Regression tolerances.
    #[serde(default)]
    pub tolerances: Tolerances,
}

impl PerfConfig {
    /// The plan this table describes (with the defaults filled in).
    pub fn to_plan(&self) -> Result<LoadPlan, PerfError> {
        let connections = self.connections.unwrap_or(DEFAULT_CONNECTIONS);
        let model = match self.rate {
            Some(rate) => LoadModel::Open { rate, connections },
            None => LoadModel::Closed { connections },
        };
        let stop = match (self.requests, self.duration) {
            (Some(_), Some(_)) => {
                return Err(PerfError::InvalidPlan {
                    reason: "give either a duration or a number of requests, not both".to_owned(),
                });
            }
            (Some(n), None) => StopAfter::Requests(n),
            (None, d) => StopAfter::Duration(d.unwrap_or(DEFAULT_DURATION)),
        };
        let mut plan = LoadPlan::closed(self.endpoints.clone(), connections, DEFAULT_DURATION);
        plan.model = model;
        plan.stop = stop;
        plan.warmup = self.warmup.unwrap_or_default();
        plan.timeout = self.timeout.unwrap_or(DEFAULT_TIMEOUT);
        Ok(plan)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compare::Percent;

    #[test]
    fn the_documented_table_loads_through_the_manifest_loader() {
        let text = r#"
[service]
name = "hub"
[perf]
rate = 200
connections = 4
duration = "30s"
warmup = "2s"
baseline = "state/perf.json"
[[perf.endpoint]]
url = "http://127.0.0.1:7000/api/health"
weight = 3
[[perf.endpoint]]
name = "tools"
method = "POST"
url = "http://127.0.0.1:7000/api/tools"
headers = { Authorization = "Bearer x" }
body = "{}"
[perf.tolerances]
p95 = "12%"
"#;
        let manifest = manifest_loader::Manifest::from_str("cutover.toml", text).unwrap();
        let perf: PerfConfig = manifest.table("perf").unwrap().unwrap();
        assert_eq!(perf.endpoints.len(), 2);
        assert_eq!(perf.endpoints[0].weight, 3);
        assert_eq!(perf.endpoints[1].method, "POST");
        assert_eq!(perf.tolerances.p95, Percent(0.12));
        assert_eq!(perf.tolerances.p99, Tolerances::default().p99);
        let plan = perf.to_plan().unwrap();
        assert_eq!(
            plan.model,
            LoadModel::Open {
                rate: 200.0,
                connections: 4
            }
        );
        assert_eq!(plan.stop, StopAfter::Duration(Duration::from_secs(30)));
        assert_eq!(plan.warmup, Duration::from_secs(2));
    }

    #[test]
    fn unknown_keys_and_conflicts_are_errors() {
        let manifest =
            manifest_loader::Manifest::from_str("cutover.toml", "[perf]\nconections = 4\n")
                .unwrap();
        let err = manifest
            .table::<PerfConfig>("perf")
            .unwrap_err()
            .to_string();
        assert!(err.contains("conections"), "{err}");
        let manifest = manifest_loader::Manifest::from_str(
            "cutover.toml",
            "[perf]\nrequests = 4\nduration = \"1s\"\n",
        )
        .unwrap();
        let perf: PerfConfig = manifest.table("perf").unwrap().unwrap();
        assert!(perf.to_plan().is_err());
    }
}
