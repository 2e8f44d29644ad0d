//! End to end, issue 19: the `canary` strategy with the built cutover-deploy, copies of the
//! real demo hub, the supervised backend and a private nginx, under load from keep-alive
//! clients through nginx. A canary failing 5 % of its requests and one 40 % slower are rolled
//! back during the first steps; a healthy one is promoted step by step to 100 % and committed.
//! Needs nginx (`apt-get install nginx`) and `cargo build -p cutover-deploy -p
//! cutover-demo-hub` first.
//!
//! Test-sized settings (in the manifest, as a user would write them): steps 20 % and 60 %
//! before the full switch, at least 50 requests per slot, a poll every 250 ms, 40 s per step
//! at most, 2 pp failure-rate tolerance and 20 % on p95 latency (the edge logs latency in whole
//! milliseconds and both releases answer in about 50 ms here, so +40 % is 20 ms over a 10 ms
//! limit, well clear of the tail that a busy machine adds to both). Nothing in the tests is timed.

#![allow(clippy::print_stdout, clippy::print_stderr)]
// What a test measured or why it waits: shown by nextest.
// Test helpers panic on setup failures by design: a test that cannot set up must fail loudly.
#![allow(clippy::unwrap_used, clippy::expect_used)]
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use cutover_tests::{ChildGuard, free_port, http_get, temp_dir, wait_until, workspace_bin};
use serde_json::Value;

/// The latency both releases add to every `/api` answer, so that a 40 % regression is well
/// above the edge log's 1 ms resolution.
const BASE_LATENCY: &str = "50ms";

struct Demo {
    dir: tempfile::TempDir,
    http: SocketAddr,
    blue: u16,
    green: u16,
}

impl Demo {
    /// `canary` goes into `[deploy.canary]`; its keys win over the test-sized defaults.
    fn new(canary: &str) -> Self {
        let mut table = canary.to_owned();
        for (key, value) in [
            ("steps", "[20, 60, 100]"),
            ("min_requests", "50"),
            ("poll_interval", "\"250ms\""),
            ("max_step_time", "\"40s\""),
            ("failure_rate_tolerance", "0.02"),
            ("latency_tolerance", "0.20"),
        ] {
            if !canary.contains(key) {
                table.push_str(&format!("\n{key} = {value}"));
            }
        }
        let canary = table;
        assert!(
            Path::new("/usr/sbin/nginx").exists() || which("nginx"),
            "nginx is missing: apt-get install -y nginx"
        );
        let dir = temp_dir();
        std::fs::create_dir_all(dir.path().join("source")).unwrap();
        let demo = Self {
            http: format!("127.0.0.1:{}", free_port()).parse().unwrap(),
            blue: free_port(),
            green: free_port(),
            dir,
        };
        let hub = workspace_bin("cutover-demo-hub");
        let text = format!(
            r#"
[service]
name = "hub"
source = "source"
build = ["install", "-D", "{hub}", "bin/hub"]
artifact = {{ path = "bin/hub", min_bytes = 102400, executable = true }}
start = ["{{release}}/bin/hub", "--listen", "127.0.0.1:{{port}}", "--release-id", "{{release_id}}", "--grace", "2s"]
port = {blue}
standby_port = {green}
env = {{ CUTOVER_DEMO_LATENCY = "{BASE_LATENCY}" }}
[layout]
root = "root"
keep_releases = 3
[process]
stop_timeout = "5s"
[proxy]
kind = "nginx"
listen_http = ["{http}"]
control_listen = "127.0.0.1:{control}"
# No rate limit: the load must reach both releases, not nginx's 429s.
[[proxy.locations]]
path = "/"
[[probe]]
name = "ready"
suite = "ready"
url = "/api/health"
expect_json = ['/state == "ready"']
[deploy]
strategy = "canary"
backup = false
ready_timeout = "15s"
validate_timeout = "5s"
drain = "200ms"
stable_for = "1s"
[deploy.canary]
{canary}
"#,
            hub = hub.display(),
            blue = demo.blue,
            green = demo.green,
            http = demo.http,
            control = free_port(),
        );
        std::fs::write(demo.manifest(), text).unwrap();
        demo
    }

    fn root(&self) -> PathBuf {
        self.dir.path().join("root")
    }

    fn manifest(&self) -> PathBuf {
        self.dir.path().join("cutover.toml")
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(workspace_bin("cutover-deploy"));
        cmd.arg("--manifest")
            .arg(self.manifest())
            .args(args)
            .env("NO_COLOR", "1");
        cmd
    }

    fn run(&self, args: &[&str]) -> (i32, Value, Output) {
        let mut full = vec!["--json"];
        full.extend_from_slice(args);
        let out = self.command(&full).output().unwrap();
        let json = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
        (out.status.code().unwrap_or(-1), json, out)
    }

    fn deploy_ok(&self, args: &[&str]) -> (String, Value) {
        let mut full = vec!["deploy"];
        full.extend_from_slice(args);
        let (code, json, out) = self.run(&full);
        assert_eq!(
            code,
            0,
            "{json:#}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        (json["release"].as_str().unwrap().to_owned(), json)
    }

    /// The release answering through nginx.
    fn serving(&self) -> Option<String> {
        let r = http_get(self.http, "/api/health").ok()?;
        let v: Value = serde_json::from_str(&r.body).ok()?;
        v["version"].as_str().map(str::to_owned)
    }

    /// Every edge log line nginx wrote, as JSON.
    fn edge_lines(&self) -> Vec<Value> {
        let log = self.root().join("proxy/logs/access.json");
        std::fs::read_to_string(&log)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    /// (requests, 5xx) the edge log attributes to the slot on `port`.
    fn edge_counts(&self, port: u16) -> (u64, u64) {
        let addr = format!("127.0.0.1:{port}");
        let mut counts = (0, 0);
        for line in self.edge_lines() {
            if line["upstream_addr"]
                .as_str()
                .is_some_and(|a| a.ends_with(&addr))
            {
                counts.0 += 1;
                counts.1 += u64::from(line["status"].as_u64().unwrap_or(0) >= 500);
            }
        }
        counts
    }

    fn last_audit(&self) -> Value {
        let (code, audit, _) = self.run(&["audit"]);
        assert_eq!(code, 0, "{audit:#}");
        audit["entries"].as_array().unwrap().last().unwrap().clone()
    }
}

impl Drop for Demo {
    fn drop(&mut self) {
        let _ = self.command(&["down"]).output();
    }
}

fn which(program: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(program).exists()))
}

/// What the load saw.
#[derive(Debug, Default)]
struct Seen {
    ok: AtomicU64,
    status_5xx: AtomicU64,
    /// Requests that got no HTTP answer at all (connection refused, reset mid-answer, …).
    failed: AtomicU64,
    /// A reused keep-alive connection closed before any byte of the answer: retried once on
    /// a new connection, as HTTP clients do for an idempotent request (counted, never hidden).
    retried: AtomicU64,
}

/// Keep-alive GETs of `/api/tools` through nginx on `connections` connections until stopped
/// (at most 120 s and 200,000 requests per connection).
struct Load {
    stop: Arc<AtomicBool>,
    seen: Arc<Seen>,
    threads: Vec<std::thread::JoinHandle<Vec<String>>>,
}

impl Load {
    fn start(addr: SocketAddr, connections: usize) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let seen = Arc::new(Seen::default());
        let threads = (0..connections)
            .map(|_| {
                let (stop, seen) = (stop.clone(), seen.clone());
                std::thread::spawn(move || keep_alive_loop(addr, &stop, &seen))
            })
            .collect();
        Self {
            stop,
            seen,
            threads,
        }
    }

    fn ok(&self) -> u64 {
        self.seen.ok.load(Ordering::SeqCst)
    }

    fn finish(self) -> (Arc<Seen>, Vec<String>) {
        self.stop.store(true, Ordering::SeqCst);
        let mut errors = Vec::new();
        for t in self.threads {
            errors.extend(t.join().unwrap());
        }
        (self.seen, errors)
    }
}

fn keep_alive_loop(addr: SocketAddr, stop: &AtomicBool, seen: &Seen) -> Vec<String> {
    let mut errors = Vec::new();
    let end = Instant::now() + Duration::from_secs(120);
    let mut conn: Option<BufReader<TcpStream>> = None;
    for _ in 0..200_000 {
        if stop.load(Ordering::SeqCst) || Instant::now() >= end {
            break;
        }
        let reused = conn.is_some();
        let answer = match conn.take() {
            Some(c) => request(c),
            None => connect(addr).and_then(request),
        };
        let answer = match answer {
            Err(Failure::BeforeAnswer(_)) if reused => {
                seen.retried.fetch_add(1, Ordering::SeqCst);
                connect(addr).and_then(request)
            }
            other => other,
        };
        match answer {
            Ok((status, c)) => {
                if status >= 500 {
                    seen.status_5xx.fetch_add(1, Ordering::SeqCst);
                } else if status == 200 {
                    seen.ok.fetch_add(1, Ordering::SeqCst);
                } else if errors.len() < 5 {
                    errors.push(format!("status {status}"));
                }
                conn = c;
            }
            Err(Failure::BeforeAnswer(e) | Failure::Broken(e)) => {
                seen.failed.fetch_add(1, Ordering::SeqCst);
                if errors.len() < 5 {
                    errors.push(e);
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }
    errors
}

enum Failure {
    /// Nothing of the answer arrived.
    BeforeAnswer(String),
    /// The answer was cut.
    Broken(String),
}

fn connect(addr: SocketAddr) -> Result<BufReader<TcpStream>, Failure> {
    let stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5))
        .map_err(|e| Failure::Broken(format!("connect: {e}")))?;
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .map_err(|e| Failure::Broken(e.to_string()))?;
    let _ = stream.set_nodelay(true);
    Ok(BufReader::new(stream))
}

/// One GET on `conn`; the status and the connection when it may be reused.
#[allow(clippy::type_complexity)]
fn request(mut conn: BufReader<TcpStream>) -> Result<(u16, Option<BufReader<TcpStream>>), Failure> {
    conn.get_mut()
        .write_all(b"GET /api/tools HTTP/1.1\r\nHost: canary.test\r\n\r\n")
        .map_err(|e| Failure::BeforeAnswer(format!("write: {e}")))?;
    let mut status_line = String::new();
    match conn.read_line(&mut status_line) {
        Ok(0) => return Err(Failure::BeforeAnswer("closed before the answer".into())),
        Ok(_) => {}
        Err(e) => return Err(Failure::BeforeAnswer(format!("read: {e}"))),
    }
    let broken = |e: std::io::Error| Failure::Broken(format!("read: {e}"));
    let status: u16 = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| Failure::Broken(format!("bad status line {status_line:?}")))?;
    let (mut length, mut chunked, mut close) = (0usize, false, false);
    loop {
        let mut line = String::new();
        if conn.read_line(&mut line).map_err(broken)? == 0 {
            return Err(Failure::Broken("closed in the headers".into()));
        }
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        if let Some((k, v)) = line.split_once(':') {
            let (k, v) = (k.trim().to_ascii_lowercase(), v.trim().to_ascii_lowercase());
            match k.as_str() {
                "content-length" => length = v.parse().unwrap_or(0),
                "transfer-encoding" => chunked = v.contains("chunked"),
                "connection" => close = v.contains("close"),
                _ => {}
            }
        }
    }
    if chunked {
        loop {
            let mut size = String::new();
            conn.read_line(&mut size).map_err(broken)?;
            let n = usize::from_str_radix(size.trim(), 16)
                .map_err(|_| Failure::Broken(format!("bad chunk size {size:?}")))?;
            let mut chunk = vec![0; n + 2];
            conn.read_exact(&mut chunk).map_err(broken)?;
            if n == 0 {
                break;
            }
        }
    } else {
        let mut body = vec![0; length];
        conn.read_exact(&mut body).map_err(broken)?;
    }
    Ok((status, (!close).then_some(conn)))
}

/// Starts load and waits until it flows.
fn load_on(demo: &Demo) -> Load {
    let load = Load::start(demo.http, 12);
    assert!(
        wait_until(Duration::from_secs(15), || load.ok() > 50),
        "no load flows through nginx"
    );
    load
}

/// The judge's decisions in an audit record.
fn decisions(record: &Value) -> Vec<Value> {
    record["canary"].as_array().cloned().unwrap_or_default()
}

#[test]
fn a_healthy_canary_is_promoted_step_by_step_and_committed() {
    let demo = Demo::new("");
    let (r1, first) = demo.deploy_ok(&[]);
    assert!(
        first["phases"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["detail"]
                .as_str()
                .is_some_and(|d| d.contains("switched at once"))),
        "the first deploy has nothing to judge against: {first:#}"
    );
    let (code, plan, _) = demo.run(&["plan"]);
    assert_eq!(code, 0, "{plan:#}");
    assert_eq!(plan["canary_steps"], serde_json::json!([20, 60, 100]));
    let load = load_on(&demo);
    let (r2, json) = demo.deploy_ok(&[]);
    let (seen, errors) = load.finish();
    eprintln!(
        "healthy canary under keep-alive load: {} ok, {} 5xx, {} failed, {} retried on a fresh connection; {json:#}",
        seen.ok.load(Ordering::SeqCst),
        seen.status_5xx.load(Ordering::SeqCst),
        seen.failed.load(Ordering::SeqCst),
        seen.retried.load(Ordering::SeqCst),
    );
    assert_eq!(
        (
            seen.status_5xx.load(Ordering::SeqCst),
            seen.failed.load(Ordering::SeqCst)
        ),
        (0, 0),
        "{errors:?}"
    );
    assert_eq!(demo.serving().as_deref(), Some(r2.as_str()));
    let switch = json["phases"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["phase"] == "switch")
        .and_then(|p| p["detail"].as_str())
        .unwrap_or_default();
    assert!(
        switch.contains("step 1 (20 %) promoted") && switch.contains("step 2 (60 %) promoted"),
        "{json:#}"
    );

    let (code, status, _) = demo.run(&["status"]);
    assert_eq!(code, 0, "{status:#}");
    assert_eq!(status["current"], r2.as_str());
    let canary = &status["canary"];
    assert_eq!(canary["state"], "promoted", "{status:#}");
    assert_eq!(canary["canary_percent"], 100);
    assert_eq!(canary["baseline"], r1.as_str());
    assert_eq!(canary["steps"], serde_json::json!([20, 60, 100]));
    assert!(canary["evidence"]["failures"]["canary"]["requests"].as_u64() > Some(50));
    let text = demo.command(&["status"]).output().unwrap();
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(
        text.contains("canary    ") && text.contains("judge     promote-step"),
        "{text}"
    );

    let record = demo.last_audit();
    assert_eq!(record["outcome"], "deployed");
    let verdicts: Vec<(u64, String)> = decisions(&record)
        .iter()
        .map(|d| {
            (
                d["canary_percent"].as_u64().unwrap(),
                d["verdict"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        verdicts,
        [
            (20, "promote-step".to_owned()),
            (60, "promote-step".to_owned())
        ],
        "{record:#}"
    );
    // A rollback goes back to a good release: at once (the warm standby), not judged.
    let load = load_on(&demo);
    let (code, back, _) = demo.run(&["rollback"]);
    let (seen, errors) = load.finish();
    assert_eq!(code, 0, "{back:#}");
    assert_eq!(back["release"], r1.as_str());
    assert!(
        back["phases"][0]["detail"].as_str().is_some_and(|d| d
            .contains("not judged: switched at once")
            && d.contains("warm standby")),
        "{back:#}"
    );
    assert_eq!(seen.failed.load(Ordering::SeqCst), 0, "{errors:?}");
    assert_eq!(demo.serving().as_deref(), Some(r1.as_str()));
    for d in decisions(&record) {
        eprintln!("decision at {} %: {}", d["canary_percent"], d["reason"]);
        assert!(
            d["evidence"]["failures"]["log_e_not_worse"].is_number(),
            "{d:#}"
        );
        assert!(d["reason"].as_str().unwrap().contains("not worse"), "{d:#}");
    }
}

#[test]
fn a_canary_failing_five_percent_is_rolled_back_and_the_baseline_fails_nothing() {
    // The default steps: the first gives the canary 5 % of the traffic, so on a loaded machine
    // it sees few requests: a tolerance of 1 pp and a long step let the evidence decide (the
    // judge rolls back as soon as it is sure, so a quick machine is not slowed down).
    let demo = Demo::new(
        "steps = [5, 25, 50, 100]\nfailure_rate_tolerance = 0.01\nmax_step_time = \"90s\"",
    );
    let (r1, _) = demo.deploy_ok(&[]);
    let base_port = demo.blue;
    let load = load_on(&demo);
    let (code, json, out) = demo.run(&["deploy", "--set-env", "CUTOVER_DEMO_ERROR_RATE=0.05"]);
    // The switch back happens before deploy returns; a moment of load on the baseline after.
    std::thread::sleep(Duration::from_millis(500));
    let (seen, errors) = load.finish();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(code, 2, "{json:#}\n{stderr}");
    assert_eq!(json["outcome"], "rolled-back");
    let reason = json["reason"].as_str().unwrap();
    assert!(
        reason.starts_with("switch failed: canary rollback in step")
            && reason.contains("failure rate"),
        "{reason}"
    );
    eprintln!(
        "5 % failing canary: {reason}; load {} ok, {} 5xx, {} failed, {} retried",
        seen.ok.load(Ordering::SeqCst),
        seen.status_5xx.load(Ordering::SeqCst),
        seen.failed.load(Ordering::SeqCst),
        seen.retried.load(Ordering::SeqCst)
    );
    assert_eq!(seen.failed.load(Ordering::SeqCst), 0, "{errors:?}");
    assert_eq!(demo.serving().as_deref(), Some(r1.as_str()));
    // What users got from the baseline: not one failure; the canary's failures are its own.
    let (base_requests, base_5xx) = demo.edge_counts(base_port);
    let (canary_requests, canary_5xx) = demo.edge_counts(demo.green);
    eprintln!(
        "edge log: baseline {base_5xx} of {base_requests} failed, canary {canary_5xx} of {canary_requests}"
    );
    assert_eq!(base_5xx, 0);
    assert!(base_requests > 0 && canary_5xx > 0);
    assert_eq!(seen.status_5xx.load(Ordering::SeqCst), canary_5xx);

    let record = demo.last_audit();
    let decided = decisions(&record);
    let last = decided.last().expect("a rollback decision");
    assert_eq!(last["verdict"], "rollback", "{record:#}");
    assert!(last["canary_percent"].as_u64() <= Some(25), "{last:#}");
    assert_eq!(last["evidence"]["failures"]["worse"], true, "{last:#}");
    let (code, status, _) = demo.run(&["status"]);
    assert_eq!(code, 0, "{status:#}");
    assert_eq!(status["canary"]["state"], "rolled-back");
    assert_eq!(status["canary"]["canary_percent"], 0);
    assert_eq!(status["canary"]["verdict"], "rollback");
    // The canary slot is stopped.
    assert!(
        status["services"]["hub-green"]
            .as_str()
            .is_some_and(|s| !s.contains("running")),
        "{status:#}"
    );
}

#[test]
fn a_canary_forty_percent_slower_is_rolled_back() {
    let demo = Demo::new("");
    let (r1, _) = demo.deploy_ok(&[]);
    let load = load_on(&demo);
    let (code, json, out) = demo.run(&["deploy", "--set-env", "CUTOVER_DEMO_LATENCY=70ms"]);
    let (seen, errors) = load.finish();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(code, 2, "{json:#}\n{stderr}");
    let reason = json["reason"].as_str().unwrap();
    eprintln!("40 % slower canary: {reason}");
    assert!(reason.contains("latency is more than 20 %"), "{reason}");
    assert_eq!(
        (
            seen.failed.load(Ordering::SeqCst),
            seen.status_5xx.load(Ordering::SeqCst)
        ),
        (0, 0),
        "{errors:?}"
    );
    assert_eq!(demo.serving().as_deref(), Some(r1.as_str()));
    let record = demo.last_audit();
    let last = decisions(&record)
        .last()
        .cloned()
        .expect("a rollback decision");
    assert_eq!(last["verdict"], "rollback");
    assert_eq!(last["evidence"]["latency"]["worse"], true, "{last:#}");
    assert!(last["canary_percent"].as_u64() < Some(100), "{last:#}");
}

/// With `sticky_cookie`, a client's cookie keeps it on one release while the traffic is
/// split; a request without it is an independent draw.
#[test]
fn a_sticky_cookie_keeps_a_session_on_one_release_during_the_split() {
    let demo = Demo::new(
        r#"sticky_cookie = "session"
inconclusive = "rollback"
max_step_time = "8s""#,
    );
    let (r1, _) = demo.deploy_ok(&[]);
    // A canary that is never promoted nor rolled back on its own: no load, so the step stays
    // open until max_step_time while the test looks at the split.
    let mut cmd = demo.command(&["--json", "deploy"]);
    cmd.stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    let mut child = ChildGuard::spawn(cmd).unwrap();
    let state = demo.root().join("state/deploy-state.json");
    let splitting = wait_until(Duration::from_secs(30), || {
        std::fs::read_to_string(&state)
            .ok()
            .and_then(|t| serde_json::from_str::<Value>(&t).ok())
            .is_some_and(|v| v["canary"]["canary_percent"] == 20)
    });
    let mut by_cookie = Vec::new();
    if splitting {
        for n in 0..40 {
            let cookie = format!("session=client-{n}");
            let mut seen = Vec::new();
            for _ in 0..3 {
                let r = cutover_tests::http_request(
                    demo.http,
                    "GET",
                    "/api/health",
                    &[("Cookie", &cookie)],
                    None,
                )
                .unwrap();
                let v: Value = serde_json::from_str(&r.body).unwrap();
                seen.push(v["version"].as_str().unwrap_or_default().to_owned());
            }
            by_cookie.push(seen);
        }
    }
    let status = child
        .wait_timeout(Duration::from_secs(90))
        .and_then(|s| s.code());
    assert!(splitting, "the canary never reached its 20 % step");
    for seen in &by_cookie {
        assert!(seen.iter().all(|v| *v == seen[0]), "{seen:?}");
    }
    let on_canary = by_cookie.iter().filter(|s| s[0] != r1).count();
    eprintln!("sticky split at 20 %: {on_canary} of 40 sessions on the canary");
    assert!(on_canary < 40, "every session on the canary at 20 %");
    // Without load the step has no evidence: inconclusive after max_step_time, rolled back.
    assert_eq!(status, Some(2));
    let record = demo.last_audit();
    let last = decisions(&record).last().cloned().expect("a decision");
    assert!(
        last["reason"]
            .as_str()
            .unwrap()
            .contains("inconclusive policy rolls back"),
        "{last:#}"
    );
    assert_eq!(demo.serving().as_deref(), Some(r1.as_str()));
}

/// A deploy killed (SIGKILL) while its canary holds a share of the traffic: `recover` puts
/// every request back on the live release in one switch, stops the canary and says so, and the
/// next deploy works from there.
#[test]
fn a_canary_killed_mid_step_is_undone_by_recover() {
    let demo = Demo::new("");
    let (r1, _) = demo.deploy_ok(&[]);
    // No load: the step stays open (no evidence) while the deploy is killed.
    let mut child = ChildGuard::spawn(demo.command(&["deploy"])).unwrap();
    let state = demo.root().join("state/deploy-state.json");
    assert!(
        wait_until(Duration::from_secs(30), || {
            std::fs::read_to_string(&state)
                .ok()
                .and_then(|t| serde_json::from_str::<Value>(&t).ok())
                .is_some_and(|v| v["canary"]["canary_percent"] == 20)
        }),
        "the canary never reached its 20 % step"
    );
    child.signal(libc::SIGKILL);
    child.wait_timeout(Duration::from_secs(10)).expect("killed");
    let (code, json, out) = demo.run(&["recover"]);
    assert_eq!(
        code,
        0,
        "{json:#}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(json["was_consistent"], false, "{json:#}");
    let (_, status, _) = demo.run(&["status"]);
    assert_eq!(status["healthy"], true, "{status:#}");
    assert_eq!(status["current"], r1.as_str());
    assert_eq!(status["canary"]["state"], "rolled-back", "{status:#}");
    assert_eq!(status["canary"]["canary_percent"], 0);
    // Every request on the live release, none split to the stopped canary.
    for _ in 0..20 {
        assert_eq!(demo.serving().as_deref(), Some(r1.as_str()));
    }
    assert!(
        !std::fs::read_dir(demo.root().join("proxy/conf/route"))
            .unwrap()
            .flatten()
            .any(|e| e
                .file_name()
                .to_string_lossy()
                .starts_with("cutover_split_")),
        "a split marker is left"
    );
    let load = load_on(&demo);
    let (r3, _) = demo.deploy_ok(&[]);
    let (seen, errors) = load.finish();
    assert_eq!(seen.failed.load(Ordering::SeqCst), 0, "{errors:?}");
    assert_eq!(demo.serving().as_deref(), Some(r3.as_str()));
}
