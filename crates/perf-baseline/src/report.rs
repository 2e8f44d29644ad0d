//! What a run reports: the full measurement (with histograms, for baselines) and a summary in
//! the shape `cutover-perf run --json` prints.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::engine::{LATE_SEND_THRESHOLD, LoadModel, LoadPlan};
use crate::resources::ResourceSummary;
use crate::stats::{ErrorCounts, LatencySummary, Measurement};

/// One endpoint's share of a run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EndpointReport {
    /// The endpoint's report name.
    pub name: String,
    /// Its method.
    pub method: String,
    /// Its URL.
    pub url: String,
    /// What was measured for it.
    pub measurement: Measurement,
}

/// Open-model figures: how well the schedule was kept.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct OpenModelStats {
    /// The requested rate, requests per second.
    pub requested_rate: f64,
    /// The rate actually sent, requests per second.
    pub achieved_rate: f64,
    /// Sends later than `late_threshold_ms` after their intended time.
    pub late_sends: u64,
    /// The lateness counted as late, in milliseconds.
    pub late_threshold_ms: f64,
}

/// Everything one run measured.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunReport {
    /// The plan that was run.
    pub plan: LoadPlan,
    /// When the run started.
    pub started_at: jiff::Timestamp,
    /// The measured window (warm-up excluded), in seconds.
    pub elapsed_secs: f64,
    /// All endpoints together.
    pub overall: Measurement,
    /// Each endpoint.
    pub endpoints: Vec<EndpointReport>,
    /// Open model only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub open: Option<OpenModelStats>,
    /// The target process, when one was sampled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceSummary>,
}

impl RunReport {
    pub(crate) fn assemble(
        plan: LoadPlan,
        started_at: jiff::Timestamp,
        window: Duration,
        per_endpoint: Vec<Measurement>,
        resources: Option<ResourceSummary>,
    ) -> Self {
        let open_model = matches!(plan.model, LoadModel::Open { .. });
        let mut overall = Measurement::new(open_model);
        for m in &per_endpoint {
            overall.merge(m);
        }
        let elapsed_secs = window.as_secs_f64();
        let open = match plan.model {
            LoadModel::Open { rate, .. } => Some(OpenModelStats {
                requested_rate: rate,
                achieved_rate: per_sec(overall.requests, elapsed_secs),
                late_sends: overall.late_sends,
                late_threshold_ms: LATE_SEND_THRESHOLD.as_secs_f64() * 1000.0,
            }),
            LoadModel::Closed { .. } => None,
        };
        let endpoints = plan
            .endpoints
            .iter()
            .zip(per_endpoint)
            .map(|(e, measurement)| EndpointReport {
                name: e.display_name(),
                method: e.method.clone(),
                url: e.url.clone(),
                measurement,
            })
            .collect();
        Self {
            plan,
            started_at,
            elapsed_secs,
            overall,
            endpoints,
            open,
            resources,
        }
    }

    /// Completed requests (answered, any status) per second over the measured window; timeouts
    /// and I/O or protocol failures are reported beside it as errors, never counted in it.
    pub fn requests_per_sec(&self) -> f64 {
        per_sec(self.overall.completed(), self.elapsed_secs)
    }

    /// The summary printed by `cutover-perf run --json` (without its `status`).
    pub fn summary(&self) -> RunSummary {
        let m = &self.overall;
        RunSummary {
            requests: m.requests,
            errors: m.errors.total(),
            errors_by_kind: m.errors,
            error_rate: m.error_rate(),
            requests_per_sec: self.requests_per_sec(),
            bytes: m.bytes,
            duration_s: self.elapsed_secs,
            model: self.plan.model,
            latency_ms: LatencySummary::of(&m.latency),
            uncorrected_latency_ms: m.uncorrected.as_ref().map(LatencySummary::of),
            open: self.open,
            resources: self.resources.clone(),
            endpoints: self
                .endpoints
                .iter()
                .map(|e| EndpointSummary {
                    name: e.name.clone(),
                    method: e.method.clone(),
                    url: e.url.clone(),
                    requests: e.measurement.requests,
                    errors: e.measurement.errors.total(),
                    errors_by_kind: e.measurement.errors,
                    requests_per_sec: per_sec(e.measurement.completed(), self.elapsed_secs),
                    latency_ms: LatencySummary::of(&e.measurement.latency),
                    uncorrected_latency_ms: e
                        .measurement
                        .uncorrected
                        .as_ref()
                        .map(LatencySummary::of),
                })
                .collect(),
        }
    }
}

fn per_sec(n: u64, secs: f64) -> f64 {
    if secs > 0.0 { n as f64 / secs } else { 0.0 }
}

/// The readable figures of a run (`cutover-perf run --json`, and the `summary` of a baseline).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunSummary {
    /// Measured requests (answers of any status plus failures after sending).
    pub requests: u64,
    /// All errors.
    pub errors: u64,
    /// Errors by kind.
    pub errors_by_kind: ErrorCounts,
    /// Errors over attempts.
    pub error_rate: f64,
    /// Requests per second over the measured window.
    pub requests_per_sec: f64,
    /// Response bytes received.
    pub bytes: u64,
    /// The measured window, in seconds.
    pub duration_s: f64,
    /// The load model.
    pub model: LoadModel,
    /// Latency percentiles (open model: from the intended send time).
    pub latency_ms: LatencySummary,
    /// Open model only: latency from the actual write.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uncorrected_latency_ms: Option<LatencySummary>,
    /// Open model only: requested vs achieved rate and late sends.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub open: Option<OpenModelStats>,
    /// The target process's memory and CPU, when sampled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceSummary>,
    /// The same figures per endpoint.
    pub endpoints: Vec<EndpointSummary>,
}

/// One endpoint's readable figures.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EndpointSummary {
    /// Report name.
    pub name: String,
    /// Method.
    pub method: String,
    /// URL.
    pub url: String,
    /// Measured requests.
    pub requests: u64,
    /// All errors.
    pub errors: u64,
    /// Errors by kind.
    pub errors_by_kind: ErrorCounts,
    /// Requests per second.
    pub requests_per_sec: f64,
    /// Latency percentiles.
    pub latency_ms: LatencySummary,
    /// Open model only: latency from the actual write.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uncorrected_latency_ms: Option<LatencySummary>,
}
