//! Rules whose source is a Prometheus metric, written as a Prometheus alerting-rules file, so
//! that a team that outgrows one host hands them to Prometheus and Alertmanager unchanged.
//!
//! Each severity becomes its own alert with the rule's name and a `severity` label, which is
//! how the engine models escalation too. Every string is written as a double-quoted YAML
//! scalar (JSON string escaping is a subset of YAML's), so no value can break the file.

use std::path::Path;
use std::time::Duration;

use crate::condition::{Condition, Threshold};
use crate::config::AlertRuleConfig;
use crate::error::AlertError;
use crate::rule::Rule;
use crate::sources::Source;
use crate::sources::prometheus::{PrometheusSource, selector};

/// The result of an export: the YAML text and what was left out and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Export {
    /// The rules file.
    pub yaml: String,
    /// Names of the rules written.
    pub exported: Vec<String>,
    /// Rules left out, with the reason (their source is not a Prometheus metric).
    pub skipped: Vec<(String, String)>,
}

/// Renders the rules file with one group named `group`.
pub fn export_prometheus(rules: &[AlertRuleConfig], group: &str) -> Export {
    let mut yaml = format!("groups:\n  - name: {}\n    rules:\n", quote(group));
    let mut exported = Vec::new();
    let mut skipped = Vec::new();
    for entry in rules {
        let Source::Prometheus(source) = &entry.source else {
            skipped.push((
                entry.rule.name.clone(),
                "its source is not a Prometheus metric".to_owned(),
            ));
            continue;
        };
        for (severity, condition) in entry.rule.conditions() {
            yaml.push_str(&format!("      - alert: {}\n", quote(&entry.rule.name)));
            yaml.push_str(&format!(
                "        expr: {}\n",
                quote(&expression(source, &entry.rule, condition))
            ));
            if !entry.rule.for_duration.is_zero() {
                yaml.push_str(&format!(
                    "        for: {}\n",
                    prometheus_duration(entry.rule.for_duration)
                ));
            }
            if !entry.rule.keep_firing_for.is_zero() {
                yaml.push_str(&format!(
                    "        keep_firing_for: {}\n",
                    prometheus_duration(entry.rule.keep_firing_for)
                ));
            }
            yaml.push_str("        labels:\n");
            yaml.push_str(&format!(
                "          severity: {}\n",
                quote(severity.as_str())
            ));
            for (k, v) in &entry.rule.labels {
                yaml.push_str(&format!("          {k}: {}\n", quote(v)));
            }
            yaml.push_str("        annotations:\n");
            yaml.push_str(&format!(
                "          summary: {}\n",
                quote(&format!("{} {condition}", entry.rule.name))
            ));
            if let Some(d) = &entry.rule.description {
                yaml.push_str(&format!("          description: {}\n", quote(d)));
            }
        }
        exported.push(entry.rule.name.clone());
    }
    if exported.is_empty() {
        // An empty list keeps the file valid for promtool.
        yaml = format!("groups:\n  - name: {}\n    rules: []\n", quote(group));
    }
    Export {
        yaml,
        exported,
        skipped,
    }
}

/// Writes the export atomically to `path`.
pub fn write_export(path: &Path, export: &Export) -> Result<(), AlertError> {
    crate::state::write_atomic(path, export.yaml.as_bytes()).map_err(|e| AlertError::Export {
        path: path.to_path_buf(),
        message: e.to_string(),
    })
}

/// The PromQL expression for one condition of a Prometheus-sourced rule.
pub fn expression(source: &PrometheusSource, rule: &Rule, condition: &Condition) -> String {
    let mut expr = selector(&source.metric, &source.labels);
    if let Some(window) = rule.delta {
        expr = format!("delta({expr}[{}])", prometheus_duration(window));
    }
    if let Some(a) = source.aggregate {
        expr = format!("{}({expr})", a.as_str());
    }
    if let Some(scale) = source.scale {
        expr = format!("({expr}) * {}", number(scale));
    }
    match &condition.threshold {
        Threshold::Number(n) => format!("{expr} {} {}", condition.op.as_str(), number(*n)),
        // Validation refuses string conditions on numeric sources; this keeps the function total.
        Threshold::Text(s) => format!("{expr} {} {}", condition.op.as_str(), quote(s)),
    }
}

fn number(n: f64) -> String {
    if n.is_infinite() {
        if n > 0.0 {
            "+Inf".into()
        } else {
            "-Inf".into()
        }
    } else {
        format!("{n}")
    }
}

/// A Prometheus duration (`1h30m`, `90s`, `250ms`).
pub fn prometheus_duration(d: Duration) -> String {
    let mut ms = d.as_millis();
    if ms == 0 {
        return "0s".to_owned();
    }
    let mut out = String::new();
    for (unit, size) in [("h", 3_600_000u128), ("m", 60_000), ("s", 1000), ("ms", 1)] {
        if ms >= size {
            out.push_str(&format!("{}{unit}", ms / size));
            ms %= size;
        }
    }
    out
}

fn quote(s: &str) -> String {
    serde_json::Value::String(s.to_owned()).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_use_prometheus_units() {
        assert_eq!(prometheus_duration(Duration::from_secs(90)), "1m30s");
        assert_eq!(prometheus_duration(Duration::from_secs(7200)), "2h");
        assert_eq!(prometheus_duration(Duration::from_millis(1500)), "1s500ms");
        assert_eq!(prometheus_duration(Duration::ZERO), "0s");
    }

    #[test]
    fn expressions_compose_delta_aggregate_and_scale() {
        let entry: AlertRuleConfig = toml::from_str(
            r#"
name = "x"
source = { prometheus = "http://h/metrics", metric = "m", labels = { code = "5\"00" }, aggregate = "sum", scale = 100 }
delta = "10m"
crit = "> 0.5"
"#,
        )
        .unwrap();
        let Source::Prometheus(p) = &entry.source else {
            panic!()
        };
        let c = entry.rule.crit.as_ref().unwrap();
        assert_eq!(
            expression(p, &entry.rule, c),
            r#"(sum(delta(m{code="5\"00"}[10m]))) * 100 > 0.5"#
        );
    }

    #[test]
    fn non_prometheus_rules_are_skipped_with_a_reason() {
        let entry: AlertRuleConfig = toml::from_str(
            "name = \"d\"\nsource = { host = \"disk_free_percent\" }\nwarn = \"< 10\"\n",
        )
        .unwrap();
        let export = export_prometheus(&[entry], "cutover");
        assert!(export.exported.is_empty());
        assert_eq!(export.skipped[0].0, "d");
        assert!(export.yaml.contains("rules: []"));
    }
}
