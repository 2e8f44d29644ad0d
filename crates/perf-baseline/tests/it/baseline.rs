//! Baseline files round-trip and are checked; `compare` flags a 20 % slowdown, passes an
//! unchanged run and reports an improvement.

// Test helpers fail the test loudly on any setup error, like the tests themselves.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use perf_baseline::{
    Baseline, Endpoint, EndpointReport, LoadPlan, Measurement, Movement, ResourceSummary,
    RunReport, Tolerances, Verdict, compare,
};

/// A synthetic run: latencies spread around `median_ms` (scaled by `scale`), `requests` answers
/// of which `errors` were 5xx, over 10 s.
fn report(scale: f64, requests: u64, errors: u64, rss: u64) -> RunReport {
    let mut m = Measurement::new(false);
    for i in 0..requests {
        // 20..80 ms with a tail, deterministic.
        let base = 20_000.0 + (i % 600) as f64 * 100.0 + if i % 100 == 0 { 150_000.0 } else { 0.0 };
        m.latency.record((base * scale) as u64).unwrap();
    }
    m.requests = requests;
    m.errors.status_5xx = errors;
    let plan = LoadPlan::closed(
        vec![Endpoint::get("http://127.0.0.1:7000/api/tools")],
        8,
        Duration::from_secs(10),
    );
    RunReport {
        plan,
        started_at: jiff::Timestamp::UNIX_EPOCH,
        elapsed_secs: 10.0 * scale,
        overall: m.clone(),
        endpoints: vec![EndpointReport {
            name: "tools".into(),
            method: "GET".into(),
            url: "http://127.0.0.1:7000/api/tools".into(),
            measurement: m,
        }],
        open: None,
        resources: Some(ResourceSummary {
            pid: 1,
            samples: 3,
            rss_peak_bytes: rss,
            ..Default::default()
        }),
    }
}

#[test]
fn a_twenty_percent_slowdown_regresses_with_reasons() {
    let base = report(1.0, 5000, 0, 100 << 20);
    let slow = report(1.2, 5000, 0, 100 << 20);
    let c = compare(&base, &slow, &Tolerances::default());
    assert_eq!(c.verdict, Verdict::Regressed);
    let regressed: Vec<&str> = c
        .reasons
        .iter()
        .filter(|r| r.movement == Movement::Regressed)
        .map(|r| r.metric.as_str())
        .collect();
    assert!(
        regressed.contains(&"p50_ms") && regressed.contains(&"p95_ms"),
        "{regressed:?}"
    );
    // Requests/s fell by 1/1.2 = -16.7 %, beyond the 15 % allowed.
    assert!(regressed.contains(&"requests_per_sec"), "{regressed:?}");
    assert!(
        c.reasons[0].message.contains("+20.0%") || c.reasons[0].message.contains("-16.7%"),
        "{:?}",
        c.reasons[0]
    );
    assert!(c.guidance.contains("repeat"));
}

#[test]
fn an_unchanged_run_passes() {
    let base = report(1.0, 5000, 10, 100 << 20);
    let same = report(1.0, 5000, 10, 100 << 20);
    let c = compare(&base, &same, &Tolerances::default());
    assert_eq!(c.verdict, Verdict::Pass, "{:#?}", c.reasons);
    assert!(c.reasons.iter().all(|r| r.movement == Movement::Within));
    assert_eq!(c.reasons.len(), 6);
}

#[test]
fn a_faster_run_is_an_improvement_and_memory_or_errors_alone_can_regress() {
    let base = report(1.0, 5000, 0, 100 << 20);
    let fast = report(0.7, 5000, 0, 100 << 20);
    assert_eq!(
        compare(&base, &fast, &Tolerances::default()).verdict,
        Verdict::Improved
    );

    let fat = report(1.0, 5000, 0, 120 << 20);
    let c = compare(&base, &fat, &Tolerances::default());
    assert_eq!(c.verdict, Verdict::Regressed);
    assert_eq!(c.reasons[0].metric, "rss_peak_bytes");

    let failing = report(1.0, 5000, 500, 100 << 20);
    let c = compare(&base, &failing, &Tolerances::default());
    assert_eq!(c.verdict, Verdict::Regressed);
    assert_eq!(c.reasons[0].metric, "error_rate");

    // A looser tolerance lets the same slowdown pass.
    let slow = report(1.2, 5000, 0, 100 << 20);
    let loose = Tolerances {
        p50: "30%".parse().unwrap(),
        p95: "30%".parse().unwrap(),
        p99: "30%".parse().unwrap(),
        throughput: "30%".parse().unwrap(),
        ..Tolerances::default()
    };
    assert_eq!(compare(&base, &slow, &loose).verdict, Verdict::Pass);
}

#[test]
fn baselines_round_trip_atomically_with_their_histograms() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("perf.json");
    let original = Baseline::new(report(1.0, 1000, 3, 42));
    original.save(&path).unwrap();
    let names: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names.len(), 1, "no temporary file left behind: {names:?}");
    let loaded = Baseline::load(&path).unwrap();
    assert_eq!(loaded.version, 1);
    assert_eq!(loaded.report.overall.latency.len(), 1000);
    assert_eq!(
        loaded.report.overall.latency.max(),
        original.report.overall.latency.max()
    );
    assert_eq!(loaded.summary.errors, 3);
    assert!(!loaded.environment.kernel.is_empty());
    assert_eq!(
        compare(&original.report, &loaded.report, &Tolerances::default()).verdict,
        Verdict::Pass
    );
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(text.contains("\"format\": \"cutover-perf-baseline\""));
    assert!(text.contains("\"latency_ms\""));
}

#[test]
fn wrong_files_are_rejected_with_the_path() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("perf.json");
    let mut value = serde_json::to_value(Baseline::new(report(1.0, 10, 0, 1))).unwrap();
    value["version"] = 99.into();
    std::fs::write(&path, value.to_string()).unwrap();
    let err = Baseline::load(&path).unwrap_err().to_string();
    assert!(
        err.contains("version") && err.contains("perf.json"),
        "{err}"
    );

    std::fs::write(&path, "{\"format\": \"k6\"}").unwrap();
    assert!(
        Baseline::load(&path)
            .unwrap_err()
            .to_string()
            .contains("not a cutover-perf-baseline")
    );
    assert!(Baseline::load(&dir.path().join("missing.json")).is_err());
}

#[test]
fn saving_into_a_missing_directory_fails_with_the_path() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("no/such/dir/perf.json");
    let err = Baseline::new(report(1.0, 10, 0, 1))
        .save(&path)
        .unwrap_err()
        .to_string();
    assert!(err.contains("no/such/dir/perf.json"), "{err}");
}
