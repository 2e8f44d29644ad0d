//! What users get, measured at the edge: a signal of the proxy's JSON access log (read by
//! `edge-signals`) over a sliding window.
//!
//! ```toml
//! source = { edge = { window = "60s", location = "/api/", metric = "success_rate" } }
//! ```
//!
//! The log is the deployment's `<proxy dir>/logs/access.json` (joined by
//! [`Source::resolve_edge_log`]), or `log = "…"`. A window with no request is no data, never
//! 100 % or 0 %; a log that does not exist is an error (no proxy writes it).
//!
//! [`Source::resolve_edge_log`]: crate::Source::resolve_edge_log

use std::path::{Path, PathBuf};
use std::time::Duration;

use edge_signals::{SignalOptions, Signals, read_window};
use serde::{Deserialize, Serialize};

use crate::sample::Sample;

/// The window used when a rule names none.
pub const DEFAULT_EDGE_WINDOW: Duration = Duration::from_secs(60);

/// Which signal of the window.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EdgeMetric {
    /// Percent (0–100) of requests that were not 5xx, among all but 429s and 499s.
    SuccessRate,
    /// Median latency, ms.
    P50Ms,
    /// 95th percentile latency, ms.
    P95Ms,
    /// 99th percentile latency, ms.
    P99Ms,
    /// Requests per second over the window (0 is a value: no traffic).
    RequestsPerSec,
    /// 5xx answers in the window.
    Status5xx,
    /// 429 answers (rate limited) in the window.
    Status429,
}

impl EdgeMetric {
    /// The value of this metric in `signals`; `None` when the window cannot say (no request,
    /// or none judged for a success rate).
    pub fn of(self, signals: Option<&Signals>) -> Option<f64> {
        match (self, signals) {
            (Self::RequestsPerSec, None) => Some(0.0),
            (Self::Status5xx | Self::Status429, None) => Some(0.0),
            (_, None) => None,
            (Self::SuccessRate, Some(s)) => s.success_rate.map(|r| r * 100.0),
            (Self::P50Ms, Some(s)) => s.p50_ms,
            (Self::P95Ms, Some(s)) => s.p95_ms,
            (Self::P99Ms, Some(s)) => s.p99_ms,
            (Self::RequestsPerSec, Some(s)) => Some(s.requests_per_sec),
            (Self::Status5xx, Some(s)) => Some(s.status_5xx as f64),
            (Self::Status429, Some(s)) => Some(s.status_429 as f64),
        }
    }

    /// The spelling in the manifest.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::SuccessRate => "success_rate",
            Self::P50Ms => "p50_ms",
            Self::P95Ms => "p95_ms",
            Self::P99Ms => "p99_ms",
            Self::RequestsPerSec => "requests_per_sec",
            Self::Status5xx => "status_5xx",
            Self::Status429 => "status_429",
        }
    }
}

/// A source reading one signal of the edge log's last window.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EdgeSource {
    /// The JSON access log (`<proxy dir>/logs/access.json`); `None` until the deployment's
    /// proxy directory is known.
    pub log: Option<PathBuf>,
    /// The sliding window.
    #[serde(with = "humantime_serde")]
    pub window: Duration,
    /// Only requests to this location (`/api/`, as `[[proxy.locations]]` names it); all
    /// requests when unset.
    pub location: Option<String>,
    /// The signal.
    pub metric: EdgeMetric,
}

impl EdgeSource {
    /// Reads the window ending now (the rotated generation too, when it holds part of it).
    #[tracing::instrument(skip_all, fields(metric = self.metric.as_str()))]
    pub async fn sample(&self) -> Sample {
        let Some(log) = self.log.clone() else {
            return Sample::error(
                "the edge log is not known: give a manifest whose deployment has a [proxy] (or `log = \"…/logs/access.json\"`)",
            );
        };
        let options = SignalOptions {
            window: self.window,
            ..SignalOptions::default()
        };
        let now = jiff::Timestamp::now();
        let read = tokio::task::spawn_blocking(move || {
            let rotated = rotated_of(&log);
            read_window(&log, Some(&rotated), options, now)
        })
        .await;
        let signals = match read {
            Ok(Ok(signals)) => signals,
            Ok(Err(e)) => return Sample::error(e.to_string()),
            Err(e) => return Sample::error(format!("the edge log reader failed: {e}")),
        };
        let window = signals.window(now);
        match self
            .metric
            .of(window.for_location(self.location.as_deref()))
        {
            Some(v) => Sample::number(v),
            None => Sample::no_data(format!(
                "no {}request{} in the last {}",
                if self.metric == EdgeMetric::SuccessRate {
                    "judged (non-429, non-499) "
                } else {
                    ""
                },
                self.location
                    .as_deref()
                    .map_or_else(String::new, |l| format!(" to {l}")),
                humantime::format_duration(self.window)
            )),
        }
    }
}

/// `access.json` → `access.json.1`.
fn rotated_of(log: &Path) -> PathBuf {
    let mut name = log.as_os_str().to_owned();
    name.push(".1");
    PathBuf::from(name)
}
