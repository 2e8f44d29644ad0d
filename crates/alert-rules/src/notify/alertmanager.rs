//! Alertmanager as a notifier: alerts POSTed to its v2 API (`POST /api/v2/alerts`, a JSON
//! array of `{labels, annotations, startsAt, endsAt, generatorURL}`), so that teams get its
//! grouping, silences, inhibition and routing.
//!
//! Alertmanager identifies an alert by its label set: `alertname` (the rule), `severity`,
//! the rule's own labels and what the caller adds (`cutover-alerts` adds `service` and
//! `release`). It resolves an alert whose `endsAt` has passed, so, as Prometheus does, a
//! firing alert is sent with `endsAt` a margin ahead ([`AlertmanagerNotifier::resend_margin`])
//! and sent again at every evaluation while it fires ([`crate::deliver_evaluation`]); a
//! resolved one is sent with `endsAt` = now. When a firing alert changes severity, the old
//! severity's alert is resolved and the new one fires: they are two alerts to Alertmanager.

use std::collections::BTreeMap;
use std::time::Duration;

use jiff::Timestamp;
use serde::Serialize;

use crate::engine::{Transition, TransitionKind};
use crate::error::AlertError;
use crate::rule::Severity;

use super::{Notifier, SecretUrl, post_json};

/// How far ahead of now a firing alert's `endsAt` is set by default: longer than the usual
/// interval between evaluations (a `check` from cron every minute or five), so an alert
/// that is re-sent in time never flaps.
pub const DEFAULT_RESEND_MARGIN: Duration = Duration::from_secs(15 * 60);

/// POSTs firing and resolved alerts to an Alertmanager, retrying on connection failures, 429
/// and 5xx answers like [`super::WebhookNotifier`].
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AlertmanagerNotifier {
    /// Alertmanager's base URL (`http://127.0.0.1:9093`, or with its `--web.route-prefix`);
    /// alerts go to `<url>/api/v2/alerts`.
    pub url: SecretUrl,
    /// The timeout of each attempt.
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    /// Retries after the first attempt.
    pub retries: u32,
    /// The pause before the first retry; it doubles for each further one.
    #[serde(with = "humantime_serde")]
    pub backoff: Duration,
    /// A firing alert's `endsAt` is now plus this; it must exceed the time between
    /// evaluations, or Alertmanager resolves the alert between two of them.
    #[serde(with = "humantime_serde")]
    pub resend_margin: Duration,
    /// The `generatorURL` of every alert (where to look at it), when set.
    pub generator_url: Option<String>,
}

/// One alert as Alertmanager's v2 API takes it.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AmAlert {
    /// The identity: `alertname`, `severity`, the rule's and the caller's labels.
    pub labels: BTreeMap<String, String>,
    /// `description` and `value`, when there are.
    pub annotations: BTreeMap<String, String>,
    /// When it started firing (left out: Alertmanager takes `endsAt`, or now).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub starts_at: Option<Timestamp>,
    /// When it stops: ahead of now while firing, now when resolved.
    pub ends_at: Timestamp,
    /// Where to look at it.
    #[serde(rename = "generatorURL", skip_serializing_if = "Option::is_none")]
    pub generator_url: Option<String>,
}

impl AlertmanagerNotifier {
    /// An Alertmanager at `url` with a 5 s timeout, 3 retries, a 500 ms backoff and a
    /// [`DEFAULT_RESEND_MARGIN`].
    pub fn new(url: impl Into<String>) -> Self {
        AlertmanagerNotifier {
            url: SecretUrl::new(url),
            timeout: Duration::from_secs(5),
            retries: 3,
            backoff: Duration::from_millis(500),
            resend_margin: DEFAULT_RESEND_MARGIN,
            generator_url: None,
        }
    }

    /// The alert of `rule` at `severity`, firing at `now` (since `since` when known) or
    /// resolved at `now`.
    #[allow(clippy::too_many_arguments)]
    pub fn alert(
        &self,
        rule: &str,
        severity: Option<Severity>,
        labels: &BTreeMap<String, String>,
        description: Option<&str>,
        value: Option<String>,
        since: Option<Timestamp>,
        now: Timestamp,
        firing: bool,
    ) -> AmAlert {
        let mut all = labels.clone();
        all.insert("alertname".into(), rule.to_owned());
        match severity {
            Some(s) => {
                all.insert("severity".into(), s.as_str().into());
            }
            None => {
                all.remove("severity");
            }
        }
        let mut annotations = BTreeMap::new();
        if let Some(d) = description {
            annotations.insert("description".into(), d.to_owned());
        }
        if let Some(v) = value {
            annotations.insert("value".into(), v);
        }
        let ends_at = if firing {
            let margin = jiff::SignedDuration::try_from(self.resend_margin)
                .unwrap_or(jiff::SignedDuration::from_secs(15 * 60));
            now.checked_add(margin).unwrap_or(now)
        } else {
            now
        };
        AmAlert {
            labels: all,
            annotations,
            starts_at: since.filter(|s| *s <= ends_at),
            ends_at,
            generator_url: self.generator_url.clone(),
        }
    }

    /// What a transition means to Alertmanager: a firing alert (firing, repeat), a resolved
    /// one, or both on a change of severity; nothing for the others (pending, cleared,
    /// unknown, known: the next evaluation's re-send says what fires).
    pub fn alerts_for(&self, t: &Transition) -> Vec<AmAlert> {
        let value = t.value.as_ref().map(ToString::to_string);
        let one = |severity: Option<Severity>, firing: bool| {
            let mut labels = t.labels.clone();
            labels.remove("severity");
            self.alert(
                &t.rule,
                severity,
                &labels,
                t.description.as_deref(),
                value.clone(),
                firing.then_some(t.at),
                t.at,
                firing,
            )
        };
        match t.kind {
            TransitionKind::Firing | TransitionKind::Repeat => vec![one(t.severity, true)],
            TransitionKind::Resolved => vec![one(t.severity, false)],
            TransitionKind::Escalated | TransitionKind::DeEscalated => {
                let mut out = vec![one(t.severity, true)];
                if t.previous_severity != t.severity {
                    out.push(one(t.previous_severity, false));
                }
                out
            }
            TransitionKind::Pending
            | TransitionKind::Cleared
            | TransitionKind::Unknown
            | TransitionKind::Known => Vec::new(),
        }
    }

    /// POSTs `alerts` in one request (nothing when empty).
    #[tracing::instrument(skip_all, fields(target = %self.url.shown(), alerts = alerts.len()))]
    pub async fn post(&self, alerts: &[AmAlert]) -> Result<(), AlertError> {
        if alerts.is_empty() {
            return Ok(());
        }
        let fail = |message: String| AlertError::NotifyFailed {
            notifier: self.describe(),
            attempts: 0,
            message,
        };
        let base = self.url.resolve().await.map_err(fail)?;
        let url = format!("{}/api/v2/alerts", base.trim_end_matches('/'));
        let body = serde_json::to_vec(alerts).map_err(|e| fail(e.to_string()))?;
        post_json(
            &self.describe(),
            &url,
            body,
            self.timeout,
            self.retries,
            self.backoff,
        )
        .await
    }
}

impl Notifier for AlertmanagerNotifier {
    fn describe(&self) -> String {
        format!("alertmanager {}", self.url.shown())
    }

    async fn notify(&self, transition: &Transition) -> Result<(), AlertError> {
        self.post(&self.alerts_for(transition)).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sample::Value;

    fn transition(
        kind: TransitionKind,
        severity: Severity,
        previous: Option<Severity>,
    ) -> Transition {
        Transition {
            rule: "latency-p95".into(),
            kind,
            severity: Some(severity),
            previous_severity: previous,
            value: Some(Value::Number(2500.0)),
            reason: None,
            at: "2025-01-01T00:00:00Z".parse().unwrap(),
            labels: [
                ("severity".to_owned(), severity.as_str().to_owned()),
                ("service".to_owned(), "hub".to_owned()),
            ]
            .into(),
            description: Some("p95 latency is 2500 ms".into()),
        }
    }

    #[test]
    fn firing_ends_a_margin_ahead_and_resolved_ends_now() {
        let am = AlertmanagerNotifier::new("http://127.0.0.1:9093/");
        let fire = am.alerts_for(&transition(TransitionKind::Firing, Severity::Warning, None));
        let json = serde_json::to_value(&fire).unwrap();
        assert_eq!(
            json,
            serde_json::json!([{
                "labels": {"alertname": "latency-p95", "severity": "warning", "service": "hub"},
                "annotations": {"description": "p95 latency is 2500 ms", "value": "2500"},
                "startsAt": "2025-01-01T00:00:00Z",
                "endsAt": "2025-01-01T00:15:00Z",
            }])
        );
        let resolved = am.alerts_for(&transition(
            TransitionKind::Resolved,
            Severity::Warning,
            None,
        ));
        assert_eq!(resolved.len(), 1);
        assert_eq!(resolved[0].ends_at.to_string(), "2025-01-01T00:00:00Z");
        assert_eq!(resolved[0].starts_at, None);
    }

    #[test]
    fn a_change_of_severity_resolves_the_old_alert_and_fires_the_new() {
        let am = AlertmanagerNotifier::new("http://127.0.0.1:9093");
        let out = am.alerts_for(&transition(
            TransitionKind::Escalated,
            Severity::Critical,
            Some(Severity::Warning),
        ));
        let shown: Vec<(&str, bool)> = out
            .iter()
            .map(|a| (a.labels["severity"].as_str(), a.starts_at.is_some()))
            .collect();
        assert_eq!(shown, [("critical", true), ("warning", false)]);
        for kind in [
            TransitionKind::Pending,
            TransitionKind::Unknown,
            TransitionKind::Cleared,
        ] {
            assert!(
                am.alerts_for(&transition(kind, Severity::Warning, None))
                    .is_empty()
            );
        }
    }
}
