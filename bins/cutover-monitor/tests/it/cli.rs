//! `cutover-monitor` as a process against a real demo hub: healthy is ok, failing is critical,
//! a dead address is unknown (never ok); manifests, pids, JSON lines and text output; a
//! deployment found from the manifest alone (made by hand here, without the pipeline), nothing
//! deployed, and a deploy to the other slot followed without a restart; a service exposing
//! nothing behind the proxy judged from the edge log; a closed stdout.

#![allow(clippy::print_stdout, clippy::print_stderr)] // What a test measured or why it waits: shown by nextest.
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

/// Asserts the verdict is ok (exit 0), allowing only the host's own `disk-free` rule to warn
/// or fail on a nearly full machine: it judges the host, not the service under test.
fn assert_ok(code: i32, doc: &Value) {
    let only_host_disk = cutover_tests::host_disk_may_warn()
        && doc["reasons"].as_array().is_some_and(|r| {
            r.iter()
                .all(|r| r.as_str().unwrap_or("").starts_with("disk-free"))
        });
    if only_host_disk && (code, doc["status"].as_str()) != (0, Some("ok")) {
        assert!(
            matches!(
                (code, doc["status"].as_str()),
                (1, Some("warn")) | (2, Some("fail"))
            ),
            "{code}: {}",
            reasons(doc)
        );
        return;
    }
    assert_eq!(doc["status"], "ok", "{}", reasons(doc));
    assert_eq!(code, 0);
}

/// `assert_ok` for a streamed evaluation, which has no exit code of its own.
fn assert_ok_status(doc: &Value) {
    let code = match doc["status"].as_str() {
        Some("ok") => 0,
        Some("warn") => 1,
        Some("fail") => 2,
        _ => 3,
    };
    assert_ok(code, doc);
}

/// The exit code of a plain-text run that `assert_ok` accepted with `json_code`.
fn assert_same_code(out: &Output, json_code: i32) {
    assert_eq!(out.status.code(), Some(json_code));
}

#[test]
fn a_healthy_hub_is_ok() {
    let hub = DemoHub::start(&["--release-id", "r-healthy"]);
    hub.wait_ready();
    let pid = hub.guard.pid().to_string();
    let (code, doc) = once_json(&["--target", &hub.base_url(), "--pid", &pid]);
    assert_ok(code, &doc);
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
name = "hub"
start = ["/bin/true"]
port = {port}
[layout]
root = "srv"

[[alert]]
name = "queue-depth-always"
source = {{ http = "{url}/api/stats", pointer = "/queue_depth" }}
warn = ">= 0"
"#,
            url = hub.base_url(),
            port = cutover_tests::free_port(),
        ),
    )
    .unwrap();
    let m = manifest.to_str().unwrap();
    let (code, doc) = once_json(&["--manifest", m, "--target", &hub.base_url()]);
    // An explicit --target wins; the deployment (nothing deployed) is shown, not judged.
    assert_eq!(doc["target"], hub.base_url());
    assert_eq!(doc["deployment"]["deployed"], false);
    assert_eq!(doc["alerts"].as_array().unwrap().len(), 1);
    assert_eq!(doc["alerts"][0]["name"], "queue-depth-always");
    assert_eq!(doc["alerts"][0]["state"], "firing");
    assert_eq!(doc["status"], "warn", "{}", reasons(&doc));
    assert_eq!(code, 1);

    // --defaults ignores them.
    let (code, doc) = once_json(&["--manifest", m, "--defaults", "--target", &hub.base_url()]);
    assert_ok(code, &doc);

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

/// Writes `cutover.toml` for a service on `port` (and `standby_port` under blue-green) with
/// its layout in `<dir>/srv`, and returns the manifest's path and its deployment.
fn hand_made(
    dir: &std::path::Path,
    port: u16,
    blue_green: Option<u16>,
) -> (String, live_deployment::Deployment) {
    let manifest = dir.join("cutover.toml");
    let extra = match blue_green {
        Some(standby) => format!("standby_port = {standby}\n[deploy]\nstrategy = \"blue-green\"\n"),
        None => String::new(),
    };
    std::fs::write(
        &manifest,
        format!(
            "[service]\nname = \"hub\"\nstart = [\"/bin/true\"]\nport = {port}\n{extra}[layout]\nroot = \"srv\"\n"
        ),
    )
    .expect("the manifest is written");
    let deployment =
        live_deployment::Deployment::load(&manifest).expect("the manifest describes a deployment");
    deployment
        .layout()
        .ensure_dirs()
        .expect("the layout's directories are made");
    let path = manifest
        .to_str()
        .expect("a UTF-8 temporary path")
        .to_owned();
    (path, deployment)
}

/// Stages release `id` and makes it live in `slot`, as the pipeline's commit does.
fn make_live(
    deployment: &live_deployment::Deployment,
    id: &str,
    slot: live_deployment::Slot,
    standby: Option<&str>,
) {
    let layout = deployment.layout();
    std::fs::create_dir_all(layout.release_dir(id)).expect("the release directory is made");
    layout
        .write_record(&live_deployment::ReleaseRecord {
            id: id.to_owned(),
            service: "hub".into(),
            commit: None,
            created: "2025-06-01T12:00:00Z".into(),
            start: vec!["/bin/true".into()],
            env: Default::default(),
            set_env: Default::default(),
            secrets: Default::default(),
            artifact: None,
        })
        .expect("release.json is written");
    layout.set_current(id).expect("current is switched");
    layout
        .save_state(&live_deployment::DeployState {
            slot: Some(slot),
            good: vec![id.to_owned()],
            standby: standby.map(str::to_owned),
            ..Default::default()
        })
        .expect("deploy-state.json is written");
}

#[test]
fn a_deployment_is_monitored_from_the_manifest_alone() {
    let hub = DemoHub::start(&["--release-id", "r-hand"]);
    hub.wait_ready();
    let dir = temp_dir();
    let (manifest, deployment) = hand_made(dir.path(), hub.addr.port(), None);
    make_live(&deployment, "r-hand", live_deployment::Slot::Single, None);
    let audit = deployment.layout().audit_file();
    std::fs::write(
        &audit,
        concat!(
            r#"{"at":"2025-06-01T11:00:00Z","user":"ci","host":"h","operation":"deploy","service":"hub","release":"r-old","previous":null,"commit":null,"strategy":"restart","phases":[],"outcome":"deployed","duration_ms":900}"#,
            "\n",
            r#"{"at":"2025-06-01T12:00:00Z","user":"ci","host":"h","operation":"deploy","service":"hub","release":"r-hand","previous":"r-old","commit":null,"strategy":"restart","phases":[{"phase":"commit","outcome":"ok","duration_ms":3}],"outcome":"deployed","duration_ms":1200}"#,
            "\n"
        ),
    )
    .unwrap();
    // The live slot's log, where its supervisor would write it.
    let live = deployment.live().unwrap();
    let log = live.process.as_ref().unwrap().log.clone().unwrap();
    std::fs::create_dir_all(log.parent().unwrap()).unwrap();
    let lines: String = (1..=12)
        .map(|i| match i {
            4 => "WARN retrying: error connecting to cache\n".to_owned(),
            11 => "{\"level\":\"ERROR\",\"msg\":\"upstream failed\"}\n".to_owned(),
            _ => format!("INFO request {i} served\n"),
        })
        .collect();
    std::fs::write(&log, lines).unwrap();

    let (code, doc) = once_json(&["--manifest", &manifest]);
    assert_ok(code, &doc);
    // The target is the live slot's own address, and the default rules read it.
    assert_eq!(doc["target"], hub.base_url());
    assert_eq!(doc["health"]["version"], "r-hand");
    let breaker = doc["alerts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["name"] == "circuit-breaker")
        .unwrap();
    assert_eq!(breaker["value"], "closed", "{breaker}");

    let d = &doc["deployment"];
    assert_eq!(d["deployed"], true);
    assert_eq!(d["release"], "r-hand");
    assert_eq!(d["slot"], "single");
    assert_eq!(d["slot_url"], hub.base_url());
    assert_eq!(d["url"], hub.base_url(), "no proxy: users reach the slot");
    assert!(
        d["description"]
            .as_str()
            .unwrap()
            .starts_with("r-hand is live in slot single")
    );
    // No supervisor runs it: no pid, so nothing to measure.
    assert_eq!(d["pid"], Value::Null);
    assert!(doc.get("process").is_none(), "{doc}");
    assert_eq!(d["last_operation"]["operation"], "deploy");
    assert_eq!(d["last_operation"]["release"], "r-hand");
    assert_eq!(d["last_operation"]["outcome"], "deployed");
    assert_eq!(d["last_operation"]["at"], "2025-06-01T12:00:00Z");
    assert_eq!(d["log"]["path"], log.to_str().unwrap());
    assert_eq!(d["log"]["window"], 12);
    assert_eq!(d["log"]["errors"], 2);
    let tail = d["log"]["tail"].as_array().unwrap();
    assert_eq!(tail.len(), 10);
    assert_eq!(tail[9], "INFO request 12 served");

    // As text: the deployment section.
    let out = monitor(&["--once", "--manifest", &manifest]);
    assert_same_code(&out, code);
    let text = String::from_utf8_lossy(&out.stdout);
    for expected in [
        "DEPLOYMENT  hub · restart",
        "r-hand in slot single",
        "deploy r-hand: deployed at 2025-06-01T12:00:00Z",
        "2 of the last 12 lines mention an error",
    ] {
        assert!(text.contains(expected), "{expected}:\n{text}");
    }
}

#[test]
fn nothing_deployed_is_unknown_and_says_so() {
    let dir = temp_dir();
    let (manifest, _) = hand_made(dir.path(), cutover_tests::free_port(), None);
    let (code, doc) = once_json(&["--manifest", &manifest]);
    assert_eq!(doc["status"], "unknown", "{}", reasons(&doc));
    assert_eq!(code, 3);
    let why = doc["reasons"][0].as_str().unwrap();
    assert!(why.starts_with("nothing is deployed under "), "{why}");
    assert!(why.ends_with("run `cutover-deploy deploy`"), "{why}");
    assert_eq!(
        doc["reasons"].as_array().unwrap().len(),
        1,
        "{}",
        reasons(&doc)
    );
    assert_eq!(doc["target"], Value::Null);
    assert_eq!(doc["health"]["reach"], "no_target");
    assert_eq!(doc["deployment"]["deployed"], false);
    assert_eq!(doc["deployment"]["description"], why);

    let out = monitor(&["--once", "--manifest", &manifest]);
    assert_eq!(out.status.code(), Some(3));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("UNKNOWN  nothing is deployed under"),
        "{text}"
    );
    assert!(
        !text.contains("unreachable") && !text.contains("refused"),
        "{text}"
    );
}

#[test]
fn a_deploy_to_the_other_slot_is_followed_without_a_restart() {
    let blue = DemoHub::start(&["--release-id", "r1"]);
    let green = DemoHub::start(&["--release-id", "r2"]);
    blue.wait_ready();
    green.wait_ready();
    let dir = temp_dir();
    let (manifest, deployment) = hand_made(dir.path(), blue.addr.port(), Some(green.addr.port()));
    make_live(&deployment, "r1", live_deployment::Slot::Blue, None);

    let mut command = Command::new(workspace_bin("cutover-monitor"));
    command
        .args(["--json", "--interval", "200ms", "--manifest", &manifest])
        .env("NO_COLOR", "1")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null());
    let mut guard = ChildGuard::spawn(command).unwrap();
    let stdout = guard.child().stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel::<Value>();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx
                .send(serde_json::from_str(&line).expect("a JSON line"))
                .is_err()
            {
                break;
            }
        }
    });
    let wait_for = |what: &str, pred: &dyn Fn(&Value) -> bool| -> Value {
        let end = std::time::Instant::now() + Duration::from_secs(30);
        let mut last = Value::Null;
        while std::time::Instant::now() < end {
            match rx.recv_timeout(Duration::from_millis(500)) {
                Ok(doc) if pred(&doc) => return doc,
                Ok(doc) => last = doc,
                Err(_) => {}
            }
        }
        panic!("no evaluation showed {what}; the last was {last}");
    };

    let before = wait_for("r1 live in blue", &|d| d["health"]["version"] == "r1");
    assert_eq!(before["target"], blue.base_url());
    assert_eq!(before["deployment"]["slot"], "blue");
    assert_ok_status(&before);

    // The pipeline's commit, by hand: r2 goes live in green, r1 stays as the standby.
    make_live(&deployment, "r2", live_deployment::Slot::Green, Some("r1"));
    let after = wait_for("r2 live in green", &|d| d["health"]["version"] == "r2");
    assert_eq!(after["target"], green.base_url());
    let d = &after["deployment"];
    assert_eq!(d["release"], "r2");
    assert_eq!(d["slot"], "green");
    assert_eq!(d["slot_url"], green.base_url());
    assert_eq!(d["standby"]["release"], "r1");
    assert_eq!(d["standby"]["slot"], "blue");
    assert_eq!(after["stats"]["reach"], "ok");
    assert_ok_status(&after);
    assert!(
        guard.child().try_wait().unwrap().is_none(),
        "still the same monitor"
    );
}

/// A service that serves nothing but its health: every other path is a 404 with HTML (as the
/// real MCP Hub answers routes it does not have). Runs on a thread of the test until the
/// process ends.
fn bare_service(version: &'static str) -> std::net::SocketAddr {
    use std::io::{BufRead, BufReader, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a loopback port");
    let addr = listener.local_addr().expect("its address");
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { continue };
            let mut reader = BufReader::new(stream);
            let mut request = String::new();
            if reader.read_line(&mut request).is_err() {
                continue;
            }
            // Skip the headers.
            let mut header = String::new();
            while reader.read_line(&mut header).is_ok_and(|n| n > 2) {
                header.clear();
            }
            let (status, kind, body) = if request.starts_with("GET /api/health ") {
                (
                    "200 OK",
                    "application/json",
                    format!(r#"{{"status":"ok","state":"ready","version":"{version}"}}"#),
                )
            } else {
                (
                    "404 Not Found",
                    "text/html",
                    "<html><body>not here</body></html>".to_owned(),
                )
            };
            let mut stream = reader.into_inner();
            let _ = write!(
                stream,
                "HTTP/1.1 {status}\r\ncontent-type: {kind}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    addr
}

/// An edge log line as the rendered nginx writes it, logged `ago_ms` before now.
fn edge_line(ago_ms: i64, status: u16, upstream: &str, request_ms: u32) -> String {
    let t = jiff::Timestamp::now().as_millisecond() - ago_ms;
    format!(
        "{{\"time\":{}.{:03},\"status\":{status},\"request_time\":{}.{:03},\"upstream_response_time\":\"0.001\",\"upstream_addr\":\"{upstream}\",\"method\":\"GET\",\"location\":\"/api/\",\"bytes_sent\":120,\"client_gone\":false}}\n",
        t / 1000,
        t % 1000,
        request_ms / 1000,
        request_ms % 1000
    )
}

#[test]
fn a_service_exposing_nothing_behind_the_proxy_is_judged_at_the_edge() {
    let service = bare_service("r-bare");
    let dir = temp_dir();
    let manifest = dir.path().join("cutover.toml");
    std::fs::write(
        &manifest,
        format!(
            "[service]\nname = \"hub\"\nstart = [\"/bin/true\"]\nport = {port}\nstandby_port = {standby}\n\
             [deploy]\nstrategy = \"blue-green\"\n[layout]\nroot = \"srv\"\n\
             [proxy]\nkind = \"nginx\"\nlisten_http = [\"127.0.0.1:{http}\"]\ncontrol_listen = \"127.0.0.1:{control}\"\ndir = \"proxy\"\n",
            port = service.port(),
            standby = cutover_tests::free_port(),
            http = cutover_tests::free_port(),
            control = cutover_tests::free_port(),
        ),
    )
    .unwrap();
    let deployment = live_deployment::Deployment::load(&manifest).unwrap();
    deployment.layout().ensure_dirs().unwrap();
    make_live(&deployment, "r-bare", live_deployment::Slot::Blue, None);
    let logs = deployment.proxy_dir().join("logs");
    std::fs::create_dir_all(&logs).unwrap();
    let upstream = service.to_string();
    let mut log: String = (0..50)
        .map(|i| edge_line(20_000 - i * 100, 200, &upstream, 12))
        .collect();
    log.push_str(&edge_line(2_000, 429, "-", 0));
    log.push_str(&edge_line(1_000, 429, "-", 0));
    // Outside the window: not counted.
    log.insert_str(0, &edge_line(600_000, 503, &upstream, 12));
    std::fs::write(logs.join("access.json"), &log).unwrap();
    let manifest = manifest.to_str().unwrap();

    let (code, doc) = once_json(&["--manifest", manifest]);
    // Nothing is unknown; the host's own disk may warn (disk-free), which is not the service.
    let findings: Vec<&Value> = doc["reasons"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| !r.as_str().unwrap().starts_with("disk-free"))
        .collect();
    assert!(findings.is_empty(), "{findings:?}");
    assert!(code == 0 || code == 1 && doc["status"] == "warn", "{code}");
    let edge = &doc["edge"];
    assert_eq!(edge["requests"], 52, "{edge}");
    assert_eq!(edge["status_429"], 2);
    assert_eq!(edge["success_rate"], 1.0, "the 429s are counted apart");
    assert_eq!(edge["p95_ms"], 12.0);
    let blue = edge["slots"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["slot"] == "blue")
        .unwrap_or_else(|| panic!("a blue slot: {edge}"));
    assert_eq!(
        (&blue["role"], &blue["release"], &blue["requests"]),
        (
            &Value::from("live"),
            &Value::from("r-bare"),
            &Value::from(50)
        )
    );
    let green = edge["slots"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["slot"] == "green")
        .unwrap();
    assert_eq!(green["success_rate"], Value::Null, "no traffic is no data");
    // Success rate and latency from the edge; what only the service knows is left out.
    let success = doc["alerts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["name"] == "success-rate")
        .unwrap();
    assert_eq!(success["value"], 100.0, "{success}");
    let not_served: Vec<&str> = doc["not_served"]
        .as_array()
        .unwrap_or_else(|| panic!("not_served: {doc}"))
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert!(
        not_served.contains(&"cache-hit-rate") && not_served.contains(&"circuit-breaker"),
        "{not_served:?}"
    );
    assert_eq!(doc["stats"]["reach"], "bad_answer");

    // The plain text has the EDGE panel.
    let out = monitor(&["--once", "--manifest", manifest]);
    assert_eq!(out.status.code(), Some(code));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("EDGE  last 60 s: 52 requests"), "{text}");
    assert!(text.contains("blue     live     r-bare"), "{text}");

    // A fifth of the requests fail: the edge's success rate goes critical.
    let failing: String = (0..13)
        .map(|i| edge_line(500 + i * 10, 503, &upstream, 40))
        .collect();
    let mut file = std::fs::OpenOptions::new()
        .append(true)
        .open(logs.join("access.json"))
        .unwrap();
    std::io::Write::write_all(&mut file, failing.as_bytes()).unwrap();
    let (code, doc) = once_json(&["--manifest", manifest]);
    assert_eq!(doc["status"], "fail", "{}", reasons(&doc));
    assert_eq!(code, 2);
    assert!(
        reasons(&doc).contains("success-rate critical"),
        "{}",
        reasons(&doc)
    );
    let rate = doc["edge"]["success_rate"].as_f64().unwrap();
    assert!((rate - 50.0 / 63.0).abs() < 1e-9, "{rate}");
}

#[test]
fn a_closed_stdout_ends_the_monitor_quietly() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    for json in [true, false] {
        let mut command = Command::new(workspace_bin("cutover-monitor"));
        command
            .args(["--interval", "100ms", "--timeout", "1s", "--target"])
            .arg(format!("http://{addr}"))
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        if json {
            command.arg("--json");
        }
        let mut guard = ChildGuard::spawn(command).unwrap();
        // `| head -1`: read one line, then close the pipe.
        let stdout = guard.child().stdout.take().unwrap();
        let mut first = String::new();
        std::io::BufRead::read_line(&mut std::io::BufReader::new(stdout), &mut first).unwrap();
        assert!(!first.is_empty());
        let status = guard
            .wait_timeout(Duration::from_secs(30))
            .expect("the monitor ends once its stdout is closed");
        let mut stderr = String::new();
        std::io::Read::read_to_string(&mut guard.child().stderr.take().unwrap(), &mut stderr)
            .unwrap();
        assert!(!stderr.contains("panicked"), "{stderr}");
        assert!(!stderr.contains("cannot write"), "quietly: {stderr}");
        assert_eq!(
            status.code(),
            Some(3),
            "the last verdict: unknown ({stderr})"
        );
    }
}
