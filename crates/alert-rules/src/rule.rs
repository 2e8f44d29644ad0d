//! A rule as the engine sees it: conditions, timings and policies, with no source attached.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::condition::Condition;
use crate::error::AlertError;

/// How bad an active alert is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// The `warn` condition holds.
    Warning,
    /// The `crit` condition holds.
    Critical,
}

impl Severity {
    /// `"warning"` or `"critical"`, as in Prometheus' conventional `severity` label.
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Warning => "warning",
            Severity::Critical => "critical",
        }
    }
}

impl std::fmt::Display for Severity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a rule does when its sample is "no data" or an error (Grafana's choices, plus the
/// Nagios-style `unknown`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Policy {
    /// Treat it as if every configured condition held (the alert goes pending, then fires).
    Alerting,
    /// Treat it as if no condition held (a firing alert resolves).
    Ok,
    /// Keep the previous state: nothing is promoted or resolved (a pending alert's clock still
    /// counts from when its condition started holding).
    KeepLast,
    /// Report the rule as `unknown` (could not evaluate, exit 3) and keep its alert state.
    #[default]
    Unknown,
}

/// One alert rule, independent of where its samples come from.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Rule {
    /// A unique name (`latency-p95`).
    pub name: String,
    /// The warning condition.
    pub warn: Option<Condition>,
    /// The critical condition.
    pub crit: Option<Condition>,
    /// How long a condition must hold before the alert fires (Prometheus `for`).
    #[serde(with = "humantime_serde")]
    pub for_duration: Duration,
    /// How long a firing alert keeps firing after its condition stops holding.
    #[serde(with = "humantime_serde")]
    pub keep_firing_for: Duration,
    /// What "no data" means for this rule.
    pub no_data: Policy,
    /// What an unreadable source means for this rule.
    pub error: Policy,
    /// When set, conditions judge the change of the value over this window (PromQL `delta`)
    /// instead of the value itself: memory growth, counters.
    #[serde(with = "humantime_serde")]
    pub delta: Option<Duration>,
    /// While firing, repeat the notification this often (none: notify on transitions only).
    #[serde(with = "humantime_serde")]
    pub repeat_interval: Option<Duration>,
    /// Extra labels carried into notifications and the Prometheus export.
    pub labels: BTreeMap<String, String>,
    /// A description template; `{{ $value }}` and `{{ $labels.NAME }}` are filled in.
    pub description: Option<String>,
}

impl Rule {
    /// A rule with this name and no conditions yet: `for` 0, no keep-firing, `unknown` policies.
    pub fn new(name: impl Into<String>) -> Self {
        Rule {
            name: name.into(),
            warn: None,
            crit: None,
            for_duration: Duration::ZERO,
            keep_firing_for: Duration::ZERO,
            no_data: Policy::default(),
            error: Policy::default(),
            delta: None,
            repeat_interval: None,
            labels: BTreeMap::new(),
            description: None,
        }
    }

    /// Sets the warning condition (builder style, for tests and embedding).
    pub fn warn(mut self, condition: &str) -> Result<Self, AlertError> {
        self.warn = Some(condition.parse()?);
        Ok(self)
    }

    /// Sets the critical condition.
    pub fn crit(mut self, condition: &str) -> Result<Self, AlertError> {
        self.crit = Some(condition.parse()?);
        Ok(self)
    }

    /// Sets `for`.
    pub fn for_duration(mut self, d: Duration) -> Self {
        self.for_duration = d;
        self
    }

    /// Sets `keep_firing_for`.
    pub fn keep_firing_for(mut self, d: Duration) -> Self {
        self.keep_firing_for = d;
        self
    }

    /// Sets the no-data and error policies.
    pub fn policies(mut self, no_data: Policy, error: Policy) -> Self {
        self.no_data = no_data;
        self.error = error;
        self
    }

    /// The configured conditions, critical first.
    pub fn conditions(&self) -> impl Iterator<Item = (Severity, &Condition)> {
        self.crit
            .iter()
            .map(|c| (Severity::Critical, c))
            .chain(self.warn.iter().map(|c| (Severity::Warning, c)))
    }

    /// Checks what the type system cannot: a name, at least one condition, sane labels.
    pub fn validate(&self) -> Result<(), AlertError> {
        let bad = |message: String| AlertError::InvalidRule {
            rule: self.name.clone(),
            message,
        };
        if self.name.trim().is_empty() {
            return Err(bad("the name is empty".into()));
        }
        if self.warn.is_none() && self.crit.is_none() {
            return Err(bad(
                "set `warn`, `crit` or both (for example crit = \"> 0\")".into(),
            ));
        }
        if self.delta.is_some() && self.conditions().any(|(_, c)| c.is_text()) {
            return Err(bad(
                "`delta` needs numeric conditions, not string states".into()
            ));
        }
        if self.delta.is_some_and(|d| d.is_zero()) {
            return Err(bad(
                "`delta` must be a positive window such as \"10m\"".into()
            ));
        }
        for key in self.labels.keys() {
            let valid = key.chars().enumerate().all(|(i, ch)| {
                ch == '_' || ch.is_ascii_alphabetic() || (i > 0 && ch.is_ascii_digit())
            });
            if !valid || key.is_empty() || key.starts_with("__") {
                return Err(bad(format!(
                    "label name `{key}` is not a valid Prometheus label name"
                )));
            }
            if key == "severity" || key == "alertname" {
                return Err(bad(format!("label `{key}` is set by the rule itself")));
            }
        }
        Ok(())
    }

    /// Fills the description template for a value and severity.
    pub fn render_description(
        &self,
        value: Option<&crate::sample::Value>,
        severity: Option<Severity>,
    ) -> Option<String> {
        let template = self.description.as_deref()?;
        Some(render_template(template, |key| match key {
            "$value" => Some(value.map_or_else(|| "no value".to_owned(), ToString::to_string)),
            "$labels.alertname" => Some(self.name.clone()),
            "$labels.severity" => severity.map(|s| s.as_str().to_owned()),
            other => other
                .strip_prefix("$labels.")
                .and_then(|k| self.labels.get(k).cloned()),
        }))
    }
}

/// Replaces each `{{ KEY }}` for which `lookup` has a value; leaves the others as written.
pub(crate) fn render_template(template: &str, lookup: impl Fn(&str) -> Option<String>) -> String {
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        match after.find("}}") {
            Some(end) => {
                let key = after[..end].trim();
                match lookup(key) {
                    Some(v) => out.push_str(&v),
                    None => out.push_str(&rest[start..start + 2 + end + 2]),
                }
                rest = &after[end + 2..];
            }
            None => {
                out.push_str(&rest[start..]);
                rest = "";
            }
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sample::Value;

    #[test]
    fn description_fills_value_and_labels() {
        let mut rule = Rule::new("latency-p95").warn("> 2000").unwrap();
        rule.labels.insert("team".into(), "hub".into());
        rule.description = Some(
            "p95 is {{ $value }} ms ({{$labels.severity}}, {{ $labels.team }}, {{ $other }})"
                .into(),
        );
        let text = rule
            .render_description(Some(&Value::Number(2500.0)), Some(Severity::Warning))
            .unwrap();
        assert_eq!(text, "p95 is 2500 ms (warning, hub, {{ $other }})");
    }

    #[test]
    fn validation_needs_a_condition_and_good_labels() {
        assert!(Rule::new("x").validate().is_err());
        assert!(Rule::new("x").crit("> 0").unwrap().validate().is_ok());
        let mut rule = Rule::new("x").crit("> 0").unwrap();
        rule.labels.insert("bad-name".into(), "v".into());
        assert!(rule.validate().is_err());
        let mut rule = Rule::new("x").crit("== \"open\"").unwrap();
        rule.delta = Some(Duration::from_secs(60));
        assert!(rule.validate().is_err());
    }
}
