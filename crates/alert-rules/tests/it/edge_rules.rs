//! The `edge` source and the default rules that use it, on edge logs written the way nginx
//! writes them (`log_format cutover_edge`), timed now: each edge rule passes on healthy
//! traffic and fires on bad traffic; an empty window is no data, never 0 % or 100 %.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;
use std::time::Duration;

use alert_rules::{
    AlertRuleConfig, AlertState, Engine, Sample, Severity, SignalsFrom, default_rules_from,
    sample_all,
};

/// Writes `count` lines ending within the last second: every `fail_every`-th a 503 (0: none),
/// latencies `ms`.
fn write_log(path: &Path, count: u64, fail_every: u64, ms: u64, location: &str) {
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .expect("open the log");
    let now = jiff::Timestamp::now().as_millisecond() - 500;
    for i in 0..count {
        let status = if fail_every > 0 && i % fail_every == 0 {
            503
        } else {
            200
        };
        let t = now - i64::try_from(i).expect("small");
        writeln!(
            f,
            r#"{{"time":{}.{:03},"status":{status},"request_time":{}.{:03},"upstream_response_time":"0.001","upstream_addr":"127.0.0.1:7001","upstream_status":"{status}","method":"GET","location":"{location}","bytes_sent":100,"request_length":80,"connection":1}}"#,
            t / 1000,
            t % 1000,
            ms / 1000,
            ms % 1000
        )
        .expect("write");
    }
}

/// The three edge rules of the defaults, pointed at the proxy under `proxy_dir`.
fn edge_defaults(proxy_dir: &Path) -> Vec<AlertRuleConfig> {
    let mut rules: Vec<AlertRuleConfig> =
        default_rules_from("http://127.0.0.1:9", SignalsFrom::Edge)
            .expect("the defaults parse")
            .into_iter()
            .filter(|r| matches!(r.source, alert_rules::Source::Edge(_)))
            .collect();
    for r in &mut rules {
        r.source.resolve_edge_log(proxy_dir);
    }
    assert_eq!(rules.len(), 3);
    rules
}

type States = BTreeMap<String, (AlertState, Option<Severity>)>;

/// Samples twice, the second time past every rule's `for`.
async fn evaluate(rules: &[AlertRuleConfig]) -> States {
    let mut engine = Engine::new(
        rules.iter().map(|r| r.rule.clone()).collect(),
        Default::default(),
    );
    let t0 = jiff::Timestamp::UNIX_EPOCH;
    engine.evaluate(t0, &sample_all(rules).await);
    let ev = engine.evaluate(t0 + Duration::from_secs(120), &sample_all(rules).await);
    ev.statuses
        .iter()
        .map(|s| (s.name.clone(), (s.state, s.severity)))
        .collect()
}

fn proxy_dir() -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = cutover_tests::temp_dir();
    let logs = dir.path().join("proxy/logs");
    std::fs::create_dir_all(&logs).expect("logs dir");
    (dir, logs.parent().expect("proxy").to_path_buf())
}

#[tokio::test]
async fn healthy_traffic_passes_every_edge_rule() {
    let (_dir, proxy) = proxy_dir();
    write_log(&proxy.join("logs/access.json"), 500, 100, 40, "/api/");
    let states = evaluate(&edge_defaults(&proxy)).await;
    for (name, state) in &states {
        assert_eq!(*state, (AlertState::Inactive, None), "{name}: {states:?}");
    }
}

#[tokio::test]
async fn failures_and_slow_answers_fire_each_edge_rule() {
    let (_dir, proxy) = proxy_dir();
    // One in five fails (80 %: below the critical 90), every answer takes 9 s (p95 and p99
    // above their critical thresholds).
    write_log(&proxy.join("logs/access.json"), 500, 5, 9_000, "/api/");
    let states = evaluate(&edge_defaults(&proxy)).await;
    for name in ["success-rate", "latency-p95", "latency-p99"] {
        assert_eq!(
            states[name],
            (AlertState::Firing, Some(Severity::Critical)),
            "{name}: {states:?}"
        );
    }
    // Warnings: 93 % success, p95 at 2.5 s; p99 at 2.5 s is under its warning (3 s).
    let (_dir2, proxy2) = proxy_dir();
    write_log(&proxy2.join("logs/access.json"), 100, 15, 2_500, "/api/");
    let states = evaluate(&edge_defaults(&proxy2)).await;
    assert_eq!(
        states["success-rate"],
        (AlertState::Firing, Some(Severity::Warning)),
        "{states:?}"
    );
    assert_eq!(
        states["latency-p95"],
        (AlertState::Firing, Some(Severity::Warning)),
        "{states:?}"
    );
    assert_eq!(
        states["latency-p99"],
        (AlertState::Inactive, None),
        "{states:?}"
    );
}

#[tokio::test]
async fn an_empty_window_is_no_data_and_a_missing_log_an_error() {
    let (_dir, proxy) = proxy_dir();
    let log = proxy.join("logs/access.json");
    std::fs::File::create(&log).expect("an empty log");
    let entry: AlertRuleConfig = toml::from_str(
        r#"
name = "api-success"
source = { edge = { window = "60s", location = "/api/", metric = "success_rate" } }
warn = "< 95"
"#,
    )
    .expect("the issue's example parses");
    let mut source = entry.source.clone();
    assert!(source.needs_edge_log());
    source.resolve_edge_log(&proxy);
    let sample = |s: alert_rules::Source| async move {
        use alert_rules::MetricSource;
        s.sample().await
    };
    assert!(
        matches!(sample(source.clone()).await, Sample::NoData(_)),
        "empty log"
    );
    // Traffic to another location is still no data for /api/; requests/s counts it all.
    write_log(&log, 10, 0, 5, "/");
    assert!(matches!(sample(source.clone()).await, Sample::NoData(_)));
    let rps: AlertRuleConfig = toml::from_str(
        "name = \"rps\"\nsource = { edge = { metric = \"requests_per_sec\" } }\nwarn = \"< 1\"\n",
    )
    .expect("parses");
    let mut rps_source = rps.source;
    rps_source.resolve_edge_log(&proxy);
    assert_eq!(sample(rps_source).await, Sample::number(10.0 / 60.0));
    write_log(&log, 19, 0, 5, "/api/");
    assert_eq!(sample(source.clone()).await, Sample::number(100.0));

    std::fs::remove_file(&log).expect("remove");
    match sample(source).await {
        Sample::Error(e) => assert!(
            e.contains("access.json") && e.contains("cutover-edge up"),
            "{e}"
        ),
        other => panic!("a missing log is an error, got {other:?}"),
    }
}

#[test]
fn edge_source_mistakes_are_reported() {
    for (source, want) in [
        ("{ edge = { window = \"60s\" } }", "needs `metric`"),
        ("{ edge = { metric = \"p42\" } }", "p42"),
        (
            "{ edge = { metric = \"p95_ms\", location = \"api\" } }",
            "/api/",
        ),
        (
            "{ edge = { metric = \"p95_ms\", windw = \"1m\" } }",
            "windw",
        ),
        (
            "{ edge = { metric = \"p95_ms\" }, pointer = \"/x\" }",
            "`pointer` does not apply",
        ),
    ] {
        let err = toml::from_str::<AlertRuleConfig>(&format!(
            "name = \"x\"\nsource = {source}\nwarn = \"> 1\"\n"
        ))
        .unwrap_err()
        .to_string();
        assert!(err.contains(want), "{source}: {err}");
    }
}
