//! The default rules judge right on both shapes of the demo hub, as a user gets them: the hub
//! deployed by `cutover-deploy deploy` from a temp manifest behind a private nginx, traffic
//! through nginx, then `cutover-alerts check --manifest` alone. Success rate and latency come
//! from the edge; the service's routes only where it serves them, the others left out with
//! the reason; nothing is unknown. `for` (1 minute for success rate) is passed on a synthetic
//! clock: the state file the first check wrote is moved two minutes into the past before the
//! second check, as if that check had run then.
//!
//! Needs nginx (`apt-get install -y nginx`) and `cargo build -p cutover-deploy -p
//! cutover-demo-hub -p cutover-alerts` first.

#![allow(clippy::unwrap_used, clippy::expect_used)] // helpers outside #[test] functions unwrap too

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use cutover_tests::{free_port, http_get, temp_dir, workspace_bin};
use serde_json::Value;

/// A deployment of the demo hub (blue-green behind nginx) in a temp dir; taken down on drop.
struct Deployed {
    dir: tempfile::TempDir,
    http: SocketAddr,
}

impl Deployed {
    /// Deploys the hub with `env` in `[service] env` (the `CUTOVER_DEMO_*` knobs).
    fn new(env: &str) -> Self {
        assert!(
            Path::new("/usr/sbin/nginx").exists() || Path::new("/usr/bin/nginx").exists(),
            "nginx is missing: apt-get install -y nginx"
        );
        let dir = temp_dir();
        std::fs::create_dir_all(dir.path().join("source")).unwrap();
        let http: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let hub = workspace_bin("cutover-demo-hub");
        let manifest = format!(
            r#"
[service]
name = "hub"
source = "source"
build = ["install", "-D", "{hub}", "bin/hub"]
artifact = {{ path = "bin/hub", executable = true }}
start = ["{{release}}/bin/hub", "--listen", "127.0.0.1:{{port}}", "--release-id", "{{release_id}}", "--grace", "2s"]
port = {blue}
standby_port = {green}
env = {{ {env} }}
[layout]
root = "root"
[process]
stop_timeout = "5s"
[proxy]
kind = "nginx"
listen_http = ["{http}"]
control_listen = "127.0.0.1:{control}"
# No rate limit: the test's traffic comes faster than the defaults' 10 r/s.
[[proxy.locations]]
path = "/api/"
[[probe]]
name = "ready"
suite = "ready"
url = "/api/health"
expect_json = ['/state == "ready"']
[deploy]
strategy = "blue-green"
ready_timeout = "15s"
drain = "200ms"
stable_for = "1s"
"#,
            hub = hub.display(),
            blue = free_port(),
            green = free_port(),
            control = free_port(),
        );
        std::fs::write(dir.path().join("cutover.toml"), manifest).unwrap();
        let deployed = Self { dir, http };
        let out = deployed.run("cutover-deploy", &["deploy"]);
        assert_eq!(
            out.status.code(),
            Some(0),
            "deploy: {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        deployed
    }

    fn manifest(&self) -> PathBuf {
        self.dir.path().join("cutover.toml")
    }

    fn run(&self, bin: &str, args: &[&str]) -> Output {
        Command::new(workspace_bin(bin))
            .arg("--manifest")
            .arg(self.manifest())
            .args(args)
            .current_dir(self.dir.path())
            .env_remove("CUTOVER_ALERTS_STATE")
            .env("NO_COLOR", "1")
            .env("RUST_LOG", "warn")
            .output()
            .unwrap()
    }

    /// `cutover-monitor --once --json` against the deployment, from the manifest alone.
    fn monitor_once(&self) -> (i32, Value) {
        let out = self.run("cutover-monitor", &["--once", "--json"]);
        let doc: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!(
                "cutover-monitor --json gave no document ({e}): {}",
                String::from_utf8_lossy(&out.stderr)
            )
        });
        (out.status.code().expect("an exit code"), doc)
    }

    /// `cutover-alerts check --json`: the exit code and the document.
    fn check(&self) -> (i32, Value) {
        let out = self.run("cutover-alerts", &["--json", "check"]);
        let doc = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!(
                "not JSON ({e}): {}\n{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            )
        });
        (out.status.code().unwrap_or(-1), doc)
    }

    /// `n` requests to `/api/tools` through nginx; returns how many failed.
    fn traffic(&self, n: usize) -> usize {
        (0..n)
            .filter(|_| http_get(self.http, "/api/tools?q=x").map_or(true, |r| r.status >= 500))
            .count()
    }

    /// Moves every time in the alert state two minutes into the past, as if the last check
    /// had run then.
    fn age_state(&self) {
        let path = self.dir.path().join("root/state/alerts.json");
        let mut state: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap())
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        fn shift(v: &mut Value) {
            match v {
                Value::String(s) => {
                    if let Ok(t) = s.parse::<jiff::Timestamp>() {
                        *s = (t - Duration::from_secs(120)).to_string();
                    }
                }
                Value::Array(a) => a.iter_mut().for_each(shift),
                Value::Object(o) => o.values_mut().for_each(shift),
                _ => {}
            }
        }
        shift(&mut state);
        std::fs::write(&path, serde_json::to_vec_pretty(&state).unwrap()).unwrap();
    }
}

impl Drop for Deployed {
    fn drop(&mut self) {
        let _ = self.run("cutover-deploy", &["down"]);
    }
}

/// Rule name → state, and the names left out.
fn states(doc: &Value) -> (Vec<(String, String)>, Vec<String>) {
    let alerts = doc["alerts"]
        .as_array()
        .unwrap_or_else(|| panic!("{doc:#}"))
        .iter()
        .map(|a| {
            (
                a["name"].as_str().unwrap().to_owned(),
                a["state"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let left_out = doc["not_served"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|n| n["name"].as_str().unwrap().to_owned())
                .collect()
        })
        .unwrap_or_default();
    (alerts, left_out)
}

fn state_of<'a>(alerts: &'a [(String, String)], name: &str) -> &'a str {
    alerts
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, s)| s.as_str())
        .unwrap_or_else(|| panic!("no rule {name}: {alerts:?}"))
}

fn assert_nothing_unknown(doc: &Value) {
    let (alerts, _) = states(doc);
    assert!(
        alerts.iter().all(|(_, s)| s != "unknown"),
        "nothing is unknown: {doc:#}"
    );
}

/// Asserts the check is ok (exit 0), allowing only `disk-free` to fire on a nearly full host:
/// that rule judges the machine, not the service.
fn assert_ok(code: i32, doc: &Value) {
    if code != 0 && cutover_tests::host_disk_may_warn() {
        let (alerts, _) = states(doc);
        let loud: Vec<&(String, String)> = alerts
            .iter()
            .filter(|(n, s)| n != "disk-free" && s != "inactive" && s != "pending")
            .collect();
        assert!(loud.is_empty() && (code == 1 || code == 2), "{doc:#}");
        return;
    }
    assert_eq!(code, 0, "{doc:#}");
}

#[test]
fn an_idle_then_healthy_mcp_hub_behind_nginx_is_ok_with_absent_routes_left_out() {
    let d = Deployed::new(r#"CUTOVER_DEMO_SHAPE = "mcp-hub""#);
    // Idle: the hub has looked nothing up, so its cacheHitRate of 0 is no data, not 0 %.
    for round in 0..2 {
        let (code, doc) = d.check();
        assert_ok(code, &doc);
        assert_nothing_unknown(&doc);
        let (alerts, left_out) = states(&doc);
        let names: Vec<&str> = alerts.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            names,
            [
                "success-rate",
                "latency-p95",
                "latency-p99",
                "cache-hit-rate",
                "disk-free"
            ],
            "{doc:#}"
        );
        assert_eq!(
            left_out,
            ["queue-depth", "circuit-breaker", "memory-growth"],
            "{doc:#}"
        );
        assert!(
            doc["not_served"][0]["reason"]
                .as_str()
                .unwrap()
                .contains("/api/stats answered 404"),
            "{doc:#}"
        );
        assert!(
            alerts
                .iter()
                .all(|(n, s)| s == "inactive"
                    || n == "disk-free" && cutover_tests::host_disk_may_warn()),
            "{doc:#}"
        );
        if round == 0 {
            d.age_state();
        }
    }
    // Healthy traffic through nginx: still ok, across `for`.
    assert_eq!(d.traffic(100), 0);
    let (code, doc) = d.check();
    assert_ok(code, &doc);
    d.age_state();
    let (code, doc2) = d.check();
    assert_ok(code, &doc2);
    assert_nothing_unknown(&doc2);

    // The monitor, from the manifest alone, says the same: ok, judged at the edge.
    let (code, doc) = d.monitor_once();
    let findings: Vec<&Value> = doc["reasons"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| !r.as_str().unwrap().starts_with("disk-free"))
        .collect();
    assert!(findings.is_empty(), "{doc:#}");
    assert!(
        code == 0 || code == 1 && cutover_tests::host_disk_may_warn(),
        "{code}: {doc:#}"
    );
    assert!(doc["edge"]["requests"].as_u64().unwrap() >= 100, "{doc:#}");
    assert_eq!(doc["edge"]["success_rate"], 1.0, "{doc:#}");

    // The table says what was left out and why.
    let out = d.run("cutover-alerts", &["check"]);
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(
        table
            .lines()
            .any(|l| l.starts_with("queue-depth") && l.contains("n/a") && l.contains("404")),
        "{table}"
    );
}

#[test]
fn an_mcp_hub_failing_one_request_in_five_fires_success_rate_from_the_edge() {
    let d = Deployed::new(r#"CUTOVER_DEMO_SHAPE = "mcp-hub", CUTOVER_DEMO_ERROR_RATE = "0.2""#);
    let failed = d.traffic(300);
    assert!(
        (20..=120).contains(&failed),
        "0.2 of 300 requests failing gave {failed}"
    );
    let (code, doc) = d.check();
    assert_eq!(code, 0, "pending is not yet an alert: {doc:#}");
    let (alerts, _) = states(&doc);
    assert_eq!(state_of(&alerts, "success-rate"), "pending", "{doc:#}");
    assert_nothing_unknown(&doc);

    d.age_state();
    let (code, doc) = d.check();
    let (alerts, _) = states(&doc);
    assert_eq!(state_of(&alerts, "success-rate"), "firing", "{doc:#}");
    assert_eq!(code, 2, "about 80 % is under the critical 90 %: {doc:#}");
    assert_nothing_unknown(&doc);
    let t = doc["transitions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["rule"] == "success-rate" && t["kind"] == "firing")
        .unwrap_or_else(|| panic!("{doc:#}"));
    assert_eq!(t["labels"]["service"], "hub", "{t:#}");
    assert!(t["labels"]["release"].is_string(), "{t:#}");
    // The stats route is not failed by the knob: the cache rule still reads it.
    assert_ne!(state_of(&alerts, "cache-hit-rate"), "unknown");

    // The monitor judges the same hub failing at the edge.
    let (code, doc) = d.monitor_once();
    assert_eq!(code, 2, "{doc:#}");
    assert_eq!(doc["status"], "fail", "{doc:#}");
    let rate = doc["edge"]["success_rate"]
        .as_f64()
        .expect("edge success rate");
    assert!((0.6..=0.93).contains(&rate), "{rate}: {doc:#}");
    assert!(
        doc["reasons"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r.as_str().unwrap().starts_with("success-rate")),
        "{doc:#}"
    );
}

#[test]
fn on_the_demo_shape_behind_nginx_every_default_applies_and_a_healthy_hub_is_ok() {
    let d = Deployed::new("");
    assert_eq!(d.traffic(100), 0);
    let (code, doc) = d.check();
    assert_ok(code, &doc);
    let (alerts, left_out) = states(&doc);
    assert_eq!(alerts.len(), 8, "{doc:#}");
    assert!(left_out.is_empty(), "{doc:#}");
    assert_nothing_unknown(&doc);
    d.age_state();
    let (code, doc) = d.check();
    assert_ok(code, &doc);
    assert_nothing_unknown(&doc);
}
