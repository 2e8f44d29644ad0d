//! What one evaluation saw, as plain data: the deployment (what is live, where, its standby,
//! the last operation, the log), what users got at the edge (the proxy's access log), the
//! service's health, its statistics, its process, its alert rules, and the verdict over all
//! of them. Rendering (terminal view, text, JSON)
//! reads this and nothing else, so what the screen shows and what `--json` prints agree.

use alert_rules::{AlertState, RuleStatus, Severity, Value};
use cutover_cli::Status;
use serde::Serialize;

use crate::deployment::DeploymentView;
use crate::edge::EdgeView;

/// One evaluation.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub(crate) struct Snapshot {
    /// The verdict: the worst of health, process and alert markers.
    pub(crate) status: Status,
    /// The base URL read: `--target`, else the live slot's own address, else the default;
    /// `null` when nothing is deployed.
    pub(crate) target: Option<String>,
    /// When the evaluation started.
    pub(crate) at: jiff::Timestamp,
    /// How long the evaluation took, in milliseconds.
    pub(crate) took_ms: u64,
    /// What is live, when the manifest describes a deployment (a `[service]` table).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) deployment: Option<DeploymentView>,
    /// What users got through the proxy, when the deployment has one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) edge: Option<EdgeView>,
    /// `/api/health`.
    pub(crate) health: Health,
    /// `/api/stats`.
    pub(crate) stats: Stats,
    /// The service's process, when one was named (`--pid`, `--pid-file`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) process: Option<ProcessView>,
    /// Every alert rule's standing.
    pub(crate) alerts: Vec<AlertView>,
    /// Default rules not evaluated because the service does not serve the route they read
    /// (`/api/stats`); the edge measures success rate and latency instead.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub(crate) not_served: Vec<String>,
    /// Why the status is not ok, one line per finding.
    pub(crate) reasons: Vec<String>,
}

/// How a reading went: read, unreachable (no answer), a bad answer (status, not JSON), or not
/// attempted because there is no target (nothing is deployed).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Reach {
    /// Read.
    Ok,
    /// Nothing answered (refused, timed out, DNS).
    Unreachable,
    /// Something answered, but not with what was asked for.
    BadAnswer,
    /// Nothing to read: the deployment has no live release (or cannot be read).
    NoTarget,
}

/// The service's health endpoint.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub(crate) struct Health {
    /// How the reading went.
    pub(crate) reach: Reach,
    /// Why it could not be read.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) error: Option<String>,
    /// The `status` field (`"ok"` even before the service is ready).
    pub(crate) status: Option<String>,
    /// The `state` field: readiness is `state == "ready"`.
    pub(crate) state: Option<String>,
    /// The `version` field.
    pub(crate) version: Option<String>,
    /// The marker: ready is ok, starting or restarting warns, stopped or error fails,
    /// unreadable is unknown.
    pub(crate) marker: Status,
}

impl Health {
    /// Judges a health document.
    pub(crate) fn from_document(document: &serde_json::Value) -> Health {
        let text = |key: &str| {
            document
                .get(key)
                .and_then(serde_json::Value::as_str)
                .map(str::to_owned)
        };
        let status = text("status");
        let state = text("state");
        let marker = if status.as_deref() != Some("ok") {
            Status::Fail
        } else {
            match state.as_deref() {
                Some("ready") => Status::Ok,
                Some("starting" | "restarting" | "restarted") => Status::Warn,
                Some("stopping" | "stopped" | "error") => Status::Fail,
                _ => Status::Unknown,
            }
        };
        Health {
            reach: Reach::Ok,
            error: None,
            status,
            state,
            version: text("version"),
            marker,
        }
    }

    /// A health endpoint that could not be read.
    pub(crate) fn unread(reach: Reach, error: String) -> Health {
        Health {
            reach,
            error: Some(error),
            status: None,
            state: None,
            version: None,
            marker: Status::Unknown,
        }
    }
}

/// The service's statistics endpoint. `None` values are "no data" (the field is null or
/// missing: no traffic in the window), never zero.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub(crate) struct Stats {
    /// How the reading went.
    pub(crate) reach: Reach,
    /// Why it could not be read.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) error: Option<String>,
    /// Requests in the statistics window.
    pub(crate) window_requests: Option<f64>,
    /// The window's length in seconds.
    pub(crate) window_seconds: Option<f64>,
    /// Successful fraction of requests, 0..1.
    pub(crate) success_rate: Option<f64>,
    /// Median latency, ms.
    pub(crate) p50_ms: Option<f64>,
    /// 95th percentile latency, ms.
    pub(crate) p95_ms: Option<f64>,
    /// 99th percentile latency, ms.
    pub(crate) p99_ms: Option<f64>,
    /// Cache hit fraction, 0..1.
    pub(crate) cache_hit_rate: Option<f64>,
    /// Requests in flight.
    pub(crate) queue_depth: Option<f64>,
    /// `closed`, `half-open` or `open`.
    pub(crate) circuit_breaker: Option<String>,
}

impl Stats {
    /// Reads a statistics document.
    pub(crate) fn from_document(document: &serde_json::Value) -> Stats {
        let number = |pointer: &str| {
            document
                .pointer(pointer)
                .and_then(serde_json::Value::as_f64)
        };
        Stats {
            reach: Reach::Ok,
            error: None,
            window_requests: number("/window_requests"),
            window_seconds: number("/window_seconds"),
            success_rate: number("/success_rate"),
            p50_ms: number("/latency_ms/p50"),
            p95_ms: number("/latency_ms/p95"),
            p99_ms: number("/latency_ms/p99"),
            cache_hit_rate: number("/cache_hit_rate"),
            queue_depth: number("/queue_depth"),
            circuit_breaker: document
                .pointer("/circuit_breaker")
                .and_then(serde_json::Value::as_str)
                .map(str::to_owned),
        }
    }

    /// A statistics endpoint that could not be read.
    pub(crate) fn unread(reach: Reach, error: String) -> Stats {
        Stats {
            reach,
            error: Some(error),
            window_requests: None,
            window_seconds: None,
            success_rate: None,
            p50_ms: None,
            p95_ms: None,
            p99_ms: None,
            cache_hit_rate: None,
            queue_depth: None,
            circuit_breaker: None,
        }
    }
}

/// The service's process.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub(crate) struct ProcessView {
    /// Where the pid came from (`pid 1234`, `/run/svc.pid`).
    pub(crate) source: String,
    /// The pid, when known.
    pub(crate) pid: Option<u32>,
    /// Resident memory, bytes.
    pub(crate) rss_bytes: Option<u64>,
    /// CPU use since the previous evaluation, percent of one core.
    pub(crate) cpu_percent: Option<f64>,
    /// Why it could not be measured.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) error: Option<String>,
    /// The marker: measured is ok, gone fails, an unreadable pid file is unknown.
    pub(crate) marker: Status,
}

/// One alert rule's standing, with its marker.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub(crate) struct AlertView {
    /// The rule's name.
    pub(crate) name: String,
    /// Its alert state (pending waits out the rule's `for`).
    pub(crate) state: AlertState,
    /// The severity while pending, firing or just resolved.
    pub(crate) severity: Option<Severity>,
    /// The judged value.
    pub(crate) value: Option<Value>,
    /// Why there is no value (no data, unreadable source).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) reason: Option<String>,
    /// The marker: a crossed threshold marks its severity whether it is still pending or
    /// already firing; unknown is unknown.
    pub(crate) marker: Status,
    /// Whether the rule reads the edge (its marker goes on the EDGE panel).
    #[serde(skip)]
    pub(crate) from_edge: bool,
}

impl AlertView {
    /// The view of a rule status.
    pub(crate) fn from_status(status: &RuleStatus) -> AlertView {
        let marker = match (status.state, status.severity) {
            (AlertState::Firing | AlertState::Pending, Some(Severity::Critical)) => Status::Fail,
            (AlertState::Firing | AlertState::Pending, _) => Status::Warn,
            (AlertState::Unknown, _) => Status::Unknown,
            (AlertState::Inactive | AlertState::Resolved, _) => Status::Ok,
        };
        AlertView {
            name: status.name.clone(),
            state: status.state,
            severity: status.severity,
            value: status.value.clone(),
            reason: status.reason.clone(),
            marker,
            from_edge: false,
        }
    }
}

/// The verdict over everything seen, and the findings behind it.
///
/// With an edge in front (`edge` is `Some`), statistics the service does not serve (a bad
/// answer: 404, HTML) are not a finding: the edge measures what users get. An edge log that
/// cannot be read is one (unknown).
pub(crate) fn verdict(
    health: &Health,
    stats: &Stats,
    edge: Option<&EdgeView>,
    process: Option<&ProcessView>,
    alerts: &[AlertView],
) -> (Status, Vec<String>) {
    let mut status = Status::Ok;
    let mut reasons = Vec::new();
    match &health.error {
        // Nothing is deployed: the one sentence says so, once.
        Some(e) if health.reach == Reach::NoTarget => reasons.push(e.clone()),
        Some(e) => reasons.push(format!("health: {} ({e})", reach_word(&health.reach))),
        None if health.marker != Status::Ok => reasons.push(format!(
            "health: status {}, state {}",
            health.status.as_deref().unwrap_or("missing"),
            health.state.as_deref().unwrap_or("missing")
        )),
        None => {}
    }
    status = status.worst(health.marker);
    let optional = edge.is_some() && stats.reach == Reach::BadAnswer;
    if let Some(e) = stats.error.as_ref().filter(|_| !optional) {
        if stats.reach != Reach::NoTarget {
            reasons.push(format!("stats: {} ({e})", reach_word(&stats.reach)));
        }
        status = status.worst(Status::Unknown);
    }
    if let Some(e) = edge.and_then(|e| e.error.as_ref()) {
        reasons.push(format!("edge: {e}"));
        status = status.worst(Status::Unknown);
    }
    if let Some(p) = process {
        if let Some(e) = &p.error {
            reasons.push(format!("process: {e}"));
        }
        status = status.worst(p.marker);
    }
    for a in alerts {
        if a.marker == Status::Ok {
            continue;
        }
        let what = match (a.state, a.severity) {
            (AlertState::Unknown, _) => format!(
                "{} unknown ({})",
                a.name,
                a.reason.as_deref().unwrap_or("no value")
            ),
            (state, severity) => format!(
                "{} {} ({state}){}",
                a.name,
                severity.map_or("active", Severity::as_str),
                a.value
                    .as_ref()
                    .map(|v| format!(": {v}"))
                    .unwrap_or_default()
            ),
        };
        reasons.push(what);
        status = status.worst(a.marker);
    }
    (status, reasons)
}

/// `unreachable`, `bad answer` or `not deployed`.
pub(crate) fn reach_word(reach: &Reach) -> &'static str {
    match reach {
        Reach::Ok => "read",
        Reach::Unreachable => "unreachable",
        Reach::BadAnswer => "bad answer",
        Reach::NoTarget => "not deployed",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn readiness_is_the_state_not_the_status() {
        let h = Health::from_document(&json!({"status": "ok", "state": "starting"}));
        assert_eq!(h.marker, Status::Warn);
        let h = Health::from_document(&json!({"status": "ok", "state": "ready", "version": "r1"}));
        assert_eq!(h.marker, Status::Ok);
        assert_eq!(h.version.as_deref(), Some("r1"));
        let h = Health::from_document(&json!({"status": "ok", "state": "error"}));
        assert_eq!(h.marker, Status::Fail);
        let h = Health::from_document(&json!({"status": "down", "state": "ready"}));
        assert_eq!(h.marker, Status::Fail);
        let h = Health::from_document(&json!({"status": "ok"}));
        assert_eq!(h.marker, Status::Unknown);
    }

    #[test]
    fn missing_statistics_are_no_data_not_zero() {
        let s = Stats::from_document(&json!({
            "success_rate": null, "latency_ms": {"p50": null, "p95": null, "p99": null},
            "queue_depth": 0, "circuit_breaker": "closed"
        }));
        assert_eq!(s.success_rate, None);
        assert_eq!(s.p95_ms, None);
        assert_eq!(s.queue_depth, Some(0.0));
        assert_eq!(s.circuit_breaker.as_deref(), Some("closed"));
    }

    fn alert(state: AlertState, severity: Option<Severity>) -> AlertView {
        AlertView::from_status(&RuleStatus {
            name: "r".into(),
            state,
            severity,
            value: Some(Value::Number(1.0)),
            since: None,
            reason: None,
            description: None,
        })
    }

    #[test]
    fn markers_follow_the_crossed_threshold() {
        assert_eq!(alert(AlertState::Inactive, None).marker, Status::Ok);
        assert_eq!(
            alert(AlertState::Pending, Some(Severity::Critical)).marker,
            Status::Fail
        );
        assert_eq!(
            alert(AlertState::Firing, Some(Severity::Warning)).marker,
            Status::Warn
        );
        assert_eq!(alert(AlertState::Unknown, None).marker, Status::Unknown);
        assert_eq!(
            alert(AlertState::Resolved, Some(Severity::Critical)).marker,
            Status::Ok
        );
    }

    #[test]
    fn an_unreachable_service_is_never_ok() {
        let health = Health::unread(Reach::Unreachable, "connection refused".into());
        let stats = Stats::unread(Reach::Unreachable, "connection refused".into());
        let (status, reasons) = verdict(&health, &stats, None, None, &[]);
        assert_eq!(status, Status::Unknown);
        assert!(reasons[0].contains("unreachable"), "{reasons:?}");
    }

    #[test]
    fn a_critical_alert_beats_everything() {
        let health = Health::from_document(&json!({"status": "ok", "state": "ready"}));
        let stats = Stats::from_document(&json!({}));
        let alerts = [
            alert(AlertState::Unknown, None),
            alert(AlertState::Pending, Some(Severity::Critical)),
        ];
        let (status, reasons) = verdict(&health, &stats, None, None, &alerts);
        assert_eq!(status, Status::Fail);
        assert_eq!(reasons.len(), 2);
        let (status, _) = verdict(&health, &stats, None, None, &[]);
        assert_eq!(status, Status::Ok);
    }

    #[test]
    fn nothing_deployed_is_unknown_in_one_sentence_not_a_connection_error() {
        let why = "nothing is deployed under /srv/hub (/srv/hub/current names no complete release); run `cutover-deploy deploy`";
        let health = Health::unread(Reach::NoTarget, why.into());
        let stats = Stats::unread(Reach::NoTarget, why.into());
        let (status, reasons) = verdict(&health, &stats, None, None, &[]);
        assert_eq!(status, Status::Unknown);
        assert_eq!(reasons, [why]);
        assert_eq!(
            serde_json::to_value(&health.reach).unwrap(),
            json!("no_target")
        );
    }
}
