//! `cutover-perf` as a built binary against the demo hub: the latency knob shows in p50, the
//! error-rate knob's count matches the hub's own, baselines compare with the documented exit
//! codes, and the JSON shapes are the contract scripts rely on.

#![allow(clippy::print_stdout, clippy::print_stderr)]
// What a test measured or why it waits: shown by nextest.
// Test helpers fail the test loudly on any setup error, like the tests themselves.
#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::process::{Command, Output};

use cutover_tests::{DemoHub, http_get, temp_dir, workspace_bin};
use serde_json::Value;

fn perf(args: &[&str], dir: &Path) -> Output {
    Command::new(workspace_bin("cutover-perf"))
        .args(args)
        .current_dir(dir)
        .output()
        .expect("cutover-perf runs")
}

fn json(out: &Output) -> Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "stdout is not one JSON document ({e}):\n{}\nstderr:\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

fn hub(args: &[&str]) -> DemoHub {
    let hub = DemoHub::start(args);
    hub.wait_ready();
    hub
}

fn assert_latency_shape(v: &Value) {
    for key in ["p50", "p90", "p95", "p99", "p999", "max"] {
        assert!(v[key].is_number(), "latency_ms.{key} missing in {v}");
    }
}

/// The criterion: p50 within 5 % of the injected latency. The hub sleeps 250 ms per
/// request, so 5 % is 12.5 ms: room for a loaded CI machine (4 test threads on 2 cores, and
/// builds alongside) to delay a wake-up or a scheduling slice without failing the test, where
/// 50 ms left about 2.5 ms. 4 connections x 10 rounds keeps the run near 2.5 s.
#[test]
fn p50_is_within_five_percent_of_the_injected_latency() {
    const INJECTED_MS: f64 = 250.0;
    const REQUESTS: u64 = 40;
    let hub = hub(&["--latency", "250ms"]);
    let dir = temp_dir();
    let url = format!("{}/api/tools", hub.base_url());
    let pid = hub.guard.pid().to_string();
    let requests = REQUESTS.to_string();
    let out = perf(
        &[
            "run", "--url", &url, "-c", "4", "-n", &requests, "--pid", &pid, "--json",
        ],
        dir.path(),
    );
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v = json(&out);
    assert_eq!(v["status"], "ok");
    assert_eq!(v["requests"], REQUESTS);
    assert_eq!(v["errors"], 0);
    assert!(v["requests_per_sec"].as_f64().unwrap() > 0.0);
    assert_latency_shape(&v["latency_ms"]);
    let p50 = v["latency_ms"]["p50"].as_f64().unwrap();
    eprintln!("p50 {p50} ms (injected {INJECTED_MS} ms)");
    assert!(
        (p50 - INJECTED_MS).abs() / INJECTED_MS <= 0.05,
        "p50 {p50} ms is not within 5% of {INJECTED_MS} ms"
    );
    let endpoint = &v["endpoints"][0];
    assert_eq!(endpoint["requests"], REQUESTS);
    assert_eq!(endpoint["errors"], 0);
    assert!(endpoint["requests_per_sec"].is_number());
    assert_latency_shape(&endpoint["latency_ms"]);
    assert!(
        v["resources"]["rss_peak_bytes"].as_u64().unwrap() > 0,
        "{}",
        v["resources"]
    );
}

fn hub_count(hub: &DemoHub, code: &str) -> u64 {
    let metrics = http_get(hub.addr, "/metrics")
        .expect("/metrics answers")
        .body;
    let wanted = format!("demo_hub_requests_total{{code=\"{code}\"}} ");
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(&wanted))
        .map_or(0, |n| n.trim().parse().expect("a counter value"))
}

#[test]
fn the_error_count_matches_the_hubs_own_count() {
    let hub = hub(&["--error-rate", "0.3"]);
    let dir = temp_dir();
    let url = format!("{}/api/tools", hub.base_url());
    let out = perf(
        &["run", "--url", &url, "-c", "4", "-n", "400", "--json"],
        dir.path(),
    );
    // Some answers failed: a warning, not a failure of the run.
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v = json(&out);
    assert_eq!(v["status"], "warn");
    assert_eq!(v["requests"], 400);
    let errors = v["errors"].as_u64().unwrap();
    assert_eq!(v["errors_by_kind"]["status_5xx"].as_u64().unwrap(), errors);
    assert_eq!(
        errors,
        hub_count(&hub, "500"),
        "our count vs the hub's /metrics"
    );
    assert!(
        (60..=180).contains(&errors),
        "30% of 400 should be near 120, got {errors}"
    );
}

#[test]
fn baselines_compare_with_exit_codes_svg_and_show() {
    let fast = hub(&["--latency", "20ms"]);
    let slow = hub(&["--latency", "40ms"]);
    let dir = temp_dir();
    let d = dir.path();
    for (name, hub) in [("fast.json", &fast), ("slow.json", &slow)] {
        let url = format!("{}/api/health", hub.base_url());
        let out = perf(
            &["run", "--url", &url, "-c", "2", "-n", "40", "--save", name],
            d,
        );
        assert_eq!(
            out.status.code(),
            Some(0),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.contains("p99.9") && text.contains("saved"), "{text}");
    }
    let out = perf(
        &[
            "compare",
            "fast.json",
            "slow.json",
            "--json",
            "--svg",
            "cmp.svg",
        ],
        d,
    );
    assert_eq!(out.status.code(), Some(2));
    let v = json(&out);
    assert_eq!(
        (v["status"].as_str(), v["verdict"].as_str()),
        (Some("fail"), Some("regressed"))
    );
    assert_eq!(v["reasons"][0]["movement"], "regressed");
    let svg = std::fs::read_to_string(d.join("cmp.svg")).unwrap();
    assert!(svg.contains("<svg") && svg.contains("baseline") && svg.contains("current"));

    let out = perf(&["compare", "fast.json", "fast.json", "--json"], d);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(json(&out)["verdict"], "pass");

    let out = perf(&["compare", "slow.json", "fast.json"], d);
    assert_eq!(out.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&out.stdout).contains("verdict: improved"));

    // A generous tolerance lets the slowdown pass.
    let loose = [
        "compare",
        "fast.json",
        "slow.json",
        "--tolerance-p50",
        "200%",
        "--tolerance-p95",
        "200%",
        "--tolerance-p99",
        "200%",
        "--tolerance-throughput",
        "90%",
        "--json",
    ];
    assert_eq!(json(&perf(&loose, d))["verdict"], "pass");

    let out = perf(&["show", "slow.json", "--json"], d);
    assert_eq!(out.status.code(), Some(0));
    let v = json(&out);
    assert_eq!(
        (v["format"].as_str(), v["version"].as_u64()),
        (Some("cutover-perf-baseline"), Some(1))
    );
    assert_eq!(v["summary"]["requests"], 40);

    let out = perf(&["compare", "fast.json", "missing.json"], d);
    assert_eq!(out.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&out.stderr).contains("missing.json"));
}

#[test]
fn the_manifest_perf_table_drives_a_run_and_bad_input_has_the_right_exit_code() {
    let hub = hub(&[]);
    let dir = temp_dir();
    let d = dir.path();
    let toml = format!(
        "[perf]\nconnections = 2\nrequests = 30\n\n[[perf.endpoint]]\nurl = \"{0}/api/health\"\nweight = 2\n\n[[perf.endpoint]]\nname = \"tools\"\nurl = \"{0}/api/tools\"\n",
        hub.base_url()
    );
    std::fs::write(d.join("cutover.toml"), toml).unwrap();
    let out = perf(&["run", "--json", "--svg", "run.svg"], d);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v = json(&out);
    assert_eq!(v["requests"], 30);
    // Weight 2:1 over connections racing for the last requests: close to 20:10, not exact.
    let health = v["endpoints"][0]["requests"].as_u64().unwrap();
    assert!((16..=24).contains(&health), "{health} of 30 for weight 2:1");
    assert_eq!(v["endpoints"][1]["name"], "tools");
    assert!(d.join("run.svg").is_file());

    // Open model from flags, overriding the table.
    let out = perf(&["run", "--rate", "200", "-d", "500ms", "--json"], d);
    let v = json(&out);
    assert!(
        v["open"]["achieved_rate"].as_f64().unwrap() > 100.0,
        "{}",
        v["open"]
    );
    assert!(v["open"]["late_sends"].is_number());
    assert_latency_shape(&v["uncorrected_latency_ms"]);

    std::fs::write(d.join("bad.toml"), "[perf]\nconections = 2\n").unwrap();
    let out = perf(&["--manifest", "bad.toml", "run"], d);
    assert_eq!(out.status.code(), Some(78));
    assert!(String::from_utf8_lossy(&out.stderr).contains("conections"));

    let empty = temp_dir();
    let out = perf(&["run", "-n", "1"], empty.path());
    assert_eq!(out.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no endpoint"));
    let out = perf(
        &["run", "--url", "https://127.0.0.1:1/", "-n", "1", "--json"],
        empty.path(),
    );
    assert_eq!(out.status.code(), Some(64));
    assert_eq!(json(&out)["status"], "unknown");
    assert_eq!(
        perf(&["run", "--bogus"], empty.path()).status.code(),
        Some(64)
    );
}
