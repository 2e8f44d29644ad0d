//! `cutover-monitor` as a process against a real demo hub: healthy is ok, failing is critical,
//! a dead address is unknown (never ok); manifests, pids, JSON lines and text output.

use std::process::{Command, Output};
use std::time::Duration;

use cutover_tests::{ChildGuard, DemoHub, http_get, temp_dir, wait_until, workspace_bin};
use serde_json::Value;

fn monitor(args: &[&str]) -> Output {
    let out = Command::new(workspace_bin("cutover-monitor"))
        .args(args)
        .env("NO_COLOR", "1")
        .output()
        .expect("cutover-monitor runs");
    // Give the details on failure.
    eprintln!(
        "stdout:\n{}\nstderr:\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn once_json(args: &[&str]) -> (i32, Value) {
    let mut all = vec!["--once", "--json"];
    all.extend_from_slice(args);
    let out = monitor(&all);
    let doc: Value = serde_json::from_slice(&out.stdout).expect("one JSON document on stdout");
    (out.status.code().expect("an exit code"), doc)
}

fn reasons(doc: &Value) -> String {
    doc["reasons"].to_string()
}

#[test]
fn a_healthy_hub_is_ok() {
    let hub = DemoHub::start(&["--release-id", "r-healthy"]);
    hub.wait_ready();
    let pid = hub.guard.pid().to_string();
    let (code, doc) = once_json(&["--target", &hub.base_url(), "--pid", &pid]);
    assert_eq!(doc["status"], "ok", "{}", reasons(&doc));
    assert_eq!(code, 0);
    assert_eq!(doc["health"]["state"], "ready");
    assert_eq!(doc["health"]["version"], "r-healthy");
    assert_eq!(doc["stats"]["reach"], "ok");
    assert_eq!(doc["stats"]["circuit_breaker"], "closed");
    assert_eq!(
        doc["process"]["pid"].as_u64(),
        Some(u64::from(hub.guard.pid()))
    );
    assert!(doc["process"]["rss_bytes"].as_u64().unwrap() > 1024 * 1024);
    assert!(doc["process"]["cpu_percent"].as_f64().is_some());
    let names: Vec<&str> = doc["alerts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["name"].as_str().unwrap())
        .collect();
    assert!(names.contains(&"success-rate") && names.contains(&"circuit-breaker"));
}

#[test]
fn a_failing_hub_is_critical() {
    let hub = DemoHub::start(&["--error-rate", "1"]);
    hub.wait_ready();
    // Traffic, all of it failing: the success rate falls to 0 and the breaker opens.
    for _ in 0..10 {
        let r = http_get(hub.addr, "/api/tools").expect("the hub answers");
        assert_eq!(r.status, 500);
    }
    let (code, doc) = once_json(&["--target", &hub.base_url()]);
    assert_eq!(doc["status"], "fail", "{}", reasons(&doc));
    assert_eq!(code, 2);
    // Health reads count as traffic and never fail, so the rate is near 0, not exactly 0.
    assert!(doc["stats"]["success_rate"].as_f64().unwrap() < 0.5);
    let text = reasons(&doc);
    assert!(text.contains("success-rate critical"), "{text}");
    assert!(text.contains("circuit-breaker critical"), "{text}");
}

#[test]
fn a_dead_address_is_unknown_never_ok() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let (code, doc) = once_json(&["--target", &format!("http://{addr}"), "--timeout", "2s"]);
    assert_eq!(doc["status"], "unknown", "{}", reasons(&doc));
    assert_eq!(code, 3);
    assert_eq!(doc["health"]["reach"], "unreachable");
    assert_eq!(doc["stats"]["reach"], "unreachable");
    assert_eq!(doc["stats"]["success_rate"], Value::Null);
    for alert in doc["alerts"].as_array().unwrap() {
        if alert["name"] != "disk-free" {
            assert_eq!(alert["state"], "unknown", "{alert}");
        }
    }

    // As text, too: the view says unreachable and the verdict is UNKNOWN.
    let out = monitor(&[
        "--once",
        "--target",
        &format!("http://{addr}"),
        "--timeout",
        "2s",
    ]);
    assert_eq!(out.status.code(), Some(3));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("UNKNOWN") && text.contains("unreachable"),
        "{text}"
    );
}

#[test]
fn a_starting_hub_warns() {
    let hub = DemoHub::start(&["--start-delay", "60s"]);
    let (code, doc) = once_json(&["--target", &hub.base_url()]);
    assert_eq!(doc["health"]["state"], "starting");
    assert_eq!(doc["status"], "warn", "{}", reasons(&doc));
    assert_eq!(code, 1);
}

#[test]
fn manifest_rules_replace_the_defaults_and_bad_ones_are_config_errors() {
    let hub = DemoHub::start(&[]);
    hub.wait_ready();
    let dir = temp_dir();
    let manifest = dir.path().join("cutover.toml");
    std::fs::write(
        &manifest,
        format!(
            r#"
[service]
name = "ignored-by-the-monitor"

[[alert]]
name = "queue-depth-always"
source = {{ http = "{url}/api/stats", pointer = "/queue_depth" }}
warn = ">= 0"
"#,
            url = hub.base_url()
        ),
    )
    .unwrap();
    let m = manifest.to_str().unwrap();
    let (code, doc) = once_json(&["--manifest", m, "--target", &hub.base_url()]);
    assert_eq!(doc["alerts"].as_array().unwrap().len(), 1);
    assert_eq!(doc["alerts"][0]["name"], "queue-depth-always");
    assert_eq!(doc["alerts"][0]["state"], "firing");
    assert_eq!(doc["status"], "warn", "{}", reasons(&doc));
    assert_eq!(code, 1);

    // --defaults ignores them.
    let (code, doc) = once_json(&["--manifest", m, "--defaults", "--target", &hub.base_url()]);
    assert_eq!(doc["status"], "ok", "{}", reasons(&doc));
    assert_eq!(code, 0);

    std::fs::write(
        &manifest,
        "[[alert]]\nname = \"x\"\nsource = { http = \"http://127.0.0.1:1/\", pointer = \"/a\" }\nwarn = \"> 1\"\nfro = \"1m\"\n",
    )
    .unwrap();
    let out = monitor(&["--once", "--json", "--manifest", m]);
    assert_eq!(out.status.code(), Some(78));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("cutover.toml") && err.contains("fro"), "{err}");
}

#[test]
fn json_lines_at_an_interval_and_a_gone_process_fails() {
    let hub = DemoHub::start(&[]);
    hub.wait_ready();
    let mut child = Command::new("true").spawn().unwrap();
    let gone = child.id().to_string();
    child.wait().unwrap();
    let out = monitor(&[
        "--json",
        "--count",
        "2",
        "--interval",
        "200ms",
        "--target",
        &hub.base_url(),
        "--pid",
        &gone,
    ]);
    assert_eq!(out.status.code(), Some(2));
    let text = String::from_utf8_lossy(&out.stdout);
    let docs: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect();
    assert_eq!(docs.len(), 2, "{text}");
    for doc in &docs {
        assert_eq!(doc["status"], "fail");
        assert!(
            doc["process"]["error"]
                .as_str()
                .unwrap()
                .contains("not running")
        );
    }
}

#[test]
fn usage_errors_exit_64() {
    let out = monitor(&["--interval", "1ms"]);
    assert_eq!(out.status.code(), Some(64));
    let out = monitor(&["--pid", "1", "--pid-file", "/x"]);
    assert_eq!(out.status.code(), Some(64));
}

#[test]
fn sigterm_stops_a_running_monitor() {
    let hub = DemoHub::start(&[]);
    let mut command = Command::new(workspace_bin("cutover-monitor"));
    command
        .args(["--json", "--interval", "200ms", "--target", &hub.base_url()])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null());
    let mut guard = ChildGuard::spawn(command).unwrap();
    // Let it evaluate at least once, then ask it to stop.
    let stdout = guard.child().stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        use std::io::BufRead;
        std::io::BufReader::new(stdout).lines().next().is_some()
    });
    assert!(wait_until(Duration::from_secs(20), || reader.is_finished()));
    assert!(reader.join().unwrap(), "a first JSON line");
    guard.signal(15);
    let status = guard.wait_timeout(Duration::from_secs(20));
    assert!(status.is_some(), "the monitor stopped on SIGTERM");
}
