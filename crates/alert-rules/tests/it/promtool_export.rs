//! The export is checked by Prometheus' own tool: `promtool check rules` accepts it, and
//! `promtool test rules` on a synthetic series agrees, minute by minute, with this crate's
//! engine on the same series. promtool comes with Debian's `prometheus` package; a missing
//! promtool fails loudly, never skips.

#![allow(clippy::unwrap_used)] // test helpers outside #[test] functions

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use alert_rules::engine::Phase;
use alert_rules::{AlertRuleConfig, Engine, Sample, export_prometheus, write_export};

fn promtool(args: &[&str], dir: &Path) -> std::process::Output {
    match Command::new("promtool")
        .args(args)
        .current_dir(dir)
        .output()
    {
        Ok(out) => out,
        Err(e) => panic!(
            "promtool could not run ({e}); install it with \
             `DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends prometheus` \
             (Debian package `prometheus`)"
        ),
    }
}

fn rules(text: &str) -> Vec<AlertRuleConfig> {
    #[derive(serde::Deserialize)]
    struct Doc {
        alert: Vec<AlertRuleConfig>,
    }
    toml::from_str::<Doc>(text).unwrap().alert
}

const RULES: &str = r#"
[[alert]]
name = "latency-p95"
source = { prometheus = "http://127.0.0.1:7000/metrics", metric = "demo_hub_latency_ms", labels = { quantile = "0.95" } }
warn = "> 2000"
crit = "> 5000"
for = "2m"
keep_firing_for = "1m"
labels = { team = "hub \"core\"" }
description = "p95 is {{ $value }} ms"

[[alert]]
name = "server-errors"
source = { prometheus = "http://127.0.0.1:7000/metrics", metric = "demo_hub_requests_total", labels = { code = "500" }, aggregate = "sum" }
delta = "5m"
crit = "> 0"

[[alert]]
name = "success-rate"
source = { prometheus = "http://127.0.0.1:7000/metrics", metric = "demo_hub_success_ratio", scale = 100 }
warn = "< 95"
crit = "<= 90"
for = "90s"

[[alert]]
name = "disk-free"
source = { host = "disk_free_percent" }
warn = "< 10"
"#;

#[test]
fn exported_rules_pass_promtool_check_rules() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("rules.yml");
    let export = export_prometheus(&rules(RULES), "cutover");
    assert_eq!(
        export.exported,
        ["latency-p95", "server-errors", "success-rate"]
    );
    assert_eq!(export.skipped.len(), 1);
    write_export(&path, &export).unwrap();
    let out = promtool(&["check", "rules", "rules.yml"], dir.path());
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "promtool rejected the export:\n{report}\n{}",
        export.yaml
    );
    assert!(report.contains("SUCCESS: 5 rules found"), "{report}");
}

#[test]
fn promtool_rejects_a_broken_rules_file() {
    // The check above must be able to fail: a rule with an invalid expression is refused.
    let dir = tempfile::tempdir().unwrap();
    let export = export_prometheus(&rules(RULES), "cutover");
    let broken = export.yaml.replacen(
        "expr: \"demo_hub_latency_ms",
        "expr: \"demo_hub_latency_ms{{",
        1,
    );
    std::fs::write(dir.path().join("rules.yml"), broken).unwrap();
    let out = promtool(&["check", "rules", "rules.yml"], dir.path());
    assert!(!out.status.success());
}

#[test]
fn promtool_test_rules_agrees_with_the_engine() {
    let config = rules(RULES);
    let rule = config[0].rule.clone();
    let values = [
        1000.0, 2500.0, 2500.0, 2500.0, 6000.0, 6000.0, 6000.0, 1000.0, 1000.0, 1000.0, 2500.0,
    ];

    // The engine, minute by minute, recording which severities fire.
    let mut engine = Engine::new(vec![rule.clone()], Default::default());
    let t0 = jiff::Timestamp::UNIX_EPOCH;
    let mut tests = String::new();
    for (minute, v) in values.iter().enumerate() {
        let now = t0 + Duration::from_secs(60 * minute as u64);
        engine.evaluate(now, &[(rule.name.clone(), Sample::number(*v))].into());
        let state = &engine.state().rules[&rule.name];
        tests.push_str(&format!(
            "      - eval_time: {minute}m\n        alertname: latency-p95\n        exp_alerts:"
        ));
        let mut firing = Vec::new();
        for (severity, track) in [("warning", &state.warning), ("critical", &state.critical)] {
            if track.phase == Phase::Firing {
                firing.push(severity);
            }
        }
        if firing.is_empty() {
            tests.push_str(" []\n");
            continue;
        }
        tests.push('\n');
        // While keep_firing_for holds an alert, Prometheus reports the last value it saw.
        let shown = |sev: &str| {
            let threshold = if sev == "warning" { 2000.0 } else { 5000.0 };
            values[..=minute]
                .iter()
                .rev()
                .find(|x| **x > threshold)
                .copied()
                .unwrap_or(*v)
        };
        for severity in firing {
            let cond = if severity == "warning" {
                "> 2000"
            } else {
                "> 5000"
            };
            tests.push_str(&format!(
                "          - exp_labels: {{severity: {severity}, quantile: \"0.95\", team: 'hub \"core\"'}}\n            \
                 exp_annotations: {{summary: \"latency-p95 {cond}\", description: \"p95 is {} ms\"}}\n",
                shown(severity)
            ));
        }
    }
    // The timeline must exercise both severities, or agreement would prove little.
    assert!(
        tests.contains("severity: warning") && tests.contains("severity: critical"),
        "{tests}"
    );
    let series: Vec<String> = values.iter().map(|v| v.to_string()).collect();
    let test_file = format!(
        "rule_files: [rules.yml]\nevaluation_interval: 1m\ntests:\n  - interval: 1m\n    input_series:\n      \
         - series: 'demo_hub_latency_ms{{quantile=\"0.95\"}}'\n        values: '{}'\n    alert_rule_test:\n{tests}",
        series.join(" ")
    );
    let dir = tempfile::tempdir().unwrap();
    write_export(
        &dir.path().join("rules.yml"),
        &export_prometheus(&config[..1], "cutover"),
    )
    .unwrap();
    std::fs::write(dir.path().join("test.yml"), &test_file).unwrap();
    let out = promtool(&["test", "rules", "test.yml"], dir.path());
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "promtool and the engine disagree:\n{report}\n--- test.yml\n{test_file}"
    );
}
