//! `cutover-alerts` as a whole process: exit codes, `--json`, `for` across one-shot runs with
//! `--state`, `watch --count`, `list`, `export`, webhooks, and the demo service.
//! Needs `cargo build -p cutover-alerts -p cutover-demo-hub` first (missing binaries fail loudly).

#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers outside #[test] functions

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use cutover_tests::{DemoHub, http_get, temp_dir, wait_until, workspace_bin};

fn alerts(dir: &Path, args: &[&str]) -> Output {
    let out = Command::new(workspace_bin("cutover-alerts"))
        .args(args)
        .current_dir(dir)
        .env_remove("CUTOVER_ALERTS_STATE")
        .env("RUST_LOG", "warn")
        .output()
        .expect("cutover-alerts runs");
    // Every run is bounded by the sources' own timeouts; this keeps failures readable.
    out
}

fn json(out: &Output) -> serde_json::Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "stdout is not one JSON document ({e}):\n{}\nstderr:\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

/// A manifest with one rule reading a number from `value` via `cat`.
fn manifest(dir: &Path, rule_extra: &str) -> PathBuf {
    let value = dir.join("value");
    let text = format!(
        "[[alert]]\nname = \"queue\"\nsource = {{ command = [\"cat\", \"{}\"] }}\nwarn = \"> 10\"\ncrit = \"> 50\"\n{rule_extra}\n",
        value.display()
    );
    let path = dir.join("cutover.toml");
    std::fs::write(&path, text).unwrap();
    path
}

fn set_value(dir: &Path, v: &str) {
    std::fs::write(dir.join("value"), v).unwrap();
}

#[test]
fn check_exit_codes_follow_the_worst_rule() {
    let dir = temp_dir();
    manifest(dir.path(), "");
    for (value, code, status) in [("5", 0, "ok"), ("20", 1, "warn"), ("80", 2, "fail")] {
        set_value(dir.path(), value);
        let out = alerts(dir.path(), &["check", "--json"]);
        assert_eq!(
            out.status.code(),
            Some(code),
            "value {value}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let doc = json(&out);
        assert_eq!(doc["status"], status);
        assert_eq!(doc["alerts"][0]["name"], "queue");
        assert_eq!(doc["alerts"][0]["value"], value.parse::<f64>().unwrap());
    }
    // The file is gone: the command fails, the rule cannot be evaluated.
    std::fs::remove_file(dir.path().join("value")).unwrap();
    let out = alerts(dir.path(), &["check", "--json"]);
    assert_eq!(out.status.code(), Some(3));
    let doc = json(&out);
    assert_eq!(doc["status"], "unknown");
    assert_eq!(doc["alerts"][0]["state"], "unknown");
    assert!(
        doc["alerts"][0]["reason"].as_str().unwrap().contains("cat"),
        "{doc}"
    );
}

#[test]
fn for_holds_across_one_shot_runs_with_a_state_file() {
    let dir = temp_dir();
    let m = manifest(dir.path(), "for = \"1s\"");
    let state = dir.path().join("state").join("alerts.json");
    std::fs::create_dir(dir.path().join("state")).unwrap();
    let args = [
        "--manifest",
        m.to_str().unwrap(),
        "check",
        "--json",
        "--state",
        state.to_str().unwrap(),
    ];
    set_value(dir.path(), "80");
    let started = Instant::now();
    let first = alerts(dir.path(), &args);
    assert_eq!(first.status.code(), Some(0), "pending is not yet an alert");
    assert_eq!(json(&first)["alerts"][0]["state"], "pending");
    let mut fired_after = None;
    let fired = wait_until(Duration::from_secs(20), || {
        let out = alerts(dir.path(), &args);
        if out.status.code() == Some(2) {
            fired_after = Some(started.elapsed());
            assert_eq!(json(&out)["alerts"][0]["state"], "firing");
            true
        } else {
            false
        }
    });
    assert!(fired, "the rule never fired across runs");
    assert!(
        fired_after.unwrap() >= Duration::from_secs(1),
        "fired before `for` had passed"
    );

    // Without the state file every run starts afresh and stays pending.
    let fresh = alerts(
        dir.path(),
        &["--manifest", m.to_str().unwrap(), "check", "--json"],
    );
    assert_eq!(json(&fresh)["alerts"][0]["state"], "pending");

    set_value(dir.path(), "1");
    let out = alerts(dir.path(), &args);
    assert_eq!(out.status.code(), Some(0));
    let doc = json(&out);
    assert_eq!(doc["alerts"][0]["state"], "resolved");
    assert_eq!(doc["transitions"][0]["kind"], "resolved");
}

#[test]
fn an_unreadable_state_file_is_unknown_but_critical_still_wins() {
    let dir = temp_dir();
    manifest(dir.path(), "");
    std::fs::write(dir.path().join("bad.json"), "{garbage").unwrap();
    set_value(dir.path(), "5");
    let out = alerts(dir.path(), &["check", "--state", "bad.json"]);
    assert_eq!(out.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&out.stderr).contains("bad.json"));
    // The run replaced the garbage with a good state; spoil it again.
    std::fs::write(dir.path().join("bad.json"), "{garbage").unwrap();
    set_value(dir.path(), "80");
    assert_eq!(
        alerts(dir.path(), &["check", "--state", "bad.json"])
            .status
            .code(),
        Some(2)
    );
}

#[test]
fn bad_configuration_exits_78_naming_file_line_and_key() {
    let dir = temp_dir();
    std::fs::write(
        dir.path().join("cutover.toml"),
        "[[alert]]\nname = \"x\"\nsource = { command = [\"true\"] }\nwarn = \"> 1\"\nkeep_firing = \"1m\"\n",
    )
    .unwrap();
    let out = alerts(dir.path(), &["check"]);
    assert_eq!(out.status.code(), Some(78));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("cutover.toml:") && err.contains("keep_firing_for"),
        "{err}"
    );

    std::fs::write(
        dir.path().join("cutover.toml"),
        "[[alert]]\nname = \"x\"\nsource = { http = \"http://127.0.0.1:1/\" }\nwarn = \"> 1\"\n",
    )
    .unwrap();
    let out = alerts(dir.path(), &["list"]);
    assert_eq!(out.status.code(), Some(78));
    assert!(String::from_utf8_lossy(&out.stderr).contains("pointer"));

    let out = alerts(dir.path(), &["check", "--bogus"]);
    assert_eq!(out.status.code(), Some(64));
}

#[test]
fn watch_is_bounded_by_count_and_prints_json_lines() {
    let dir = temp_dir();
    manifest(dir.path(), "");
    set_value(dir.path(), "80");
    let out = alerts(
        dir.path(),
        &["watch", "--interval", "100ms", "--count", "3", "--json"],
    );
    assert_eq!(out.status.code(), Some(2));
    let lines: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 3);
    assert_eq!(lines[0]["transitions"][0]["kind"], "firing");
    assert_eq!(
        lines[2]["transitions"].as_array().unwrap().len(),
        0,
        "firing is announced once"
    );

    let out = alerts(
        dir.path(),
        &["watch", "--interval", "100ms", "--count", "2"],
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(text.lines().count(), 1, "{text}");
    assert!(
        text.contains("FIRING queue severity=critical value=80"),
        "{text}"
    );
}

#[test]
fn list_and_export() {
    let dir = temp_dir();
    std::fs::write(
        dir.path().join("cutover.toml"),
        r#"
[service]
name = "ignored-by-this-binary"

[[alert]]
name = "server-errors"
source = { prometheus = "http://127.0.0.1:7000/metrics", metric = "demo_hub_requests_total", labels = { code = "500" } }
delta = "5m"
crit = "> 0"

[[alert]]
name = "p95"
source = { http = "http://127.0.0.1:7000/api/stats?token=sEcReT", pointer = "/latency_ms/p95", header = "Authorization: Bearer sEcReT" }
warn = "> 2000"
"#,
    )
    .unwrap();
    let out = alerts(dir.path(), &["list", "--json"]);
    assert_eq!(out.status.code(), Some(0));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(!text.contains("sEcReT"), "{text}");
    assert_eq!(json(&out)["rules"].as_array().unwrap().len(), 2);
    let table = alerts(dir.path(), &["list"]);
    assert!(!String::from_utf8_lossy(&table.stdout).contains("sEcReT"));

    let out = alerts(
        dir.path(),
        &["export", "--prometheus", "rules.yml", "--json"],
    );
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let doc = json(&out);
    assert_eq!(doc["exported"], serde_json::json!(["server-errors"]));
    assert_eq!(doc["skipped"][0]["name"], "p95");
    let yaml = std::fs::read_to_string(dir.path().join("rules.yml")).unwrap();
    assert!(
        yaml.contains(r#"delta(demo_hub_requests_total{code=\"500\"}[5m]) > 0"#),
        "{yaml}"
    );
    let check = Command::new("promtool")
        .args(["check", "rules", "rules.yml"])
        .current_dir(dir.path())
        .output();
    let check = check.unwrap_or_else(|e| {
        panic!("promtool could not run ({e}); install the Debian package `prometheus`")
    });
    assert!(
        check.status.success(),
        "{}",
        String::from_utf8_lossy(&check.stdout)
    );
}

#[test]
fn the_dollar_var_form_still_loads_and_warns_with_the_reference_to_write() {
    let dir = temp_dir();
    let write = |text: &str| std::fs::write(dir.path().join("cutover.toml"), text).unwrap();
    write(
        r#"
[[alert]]
name = "p95"
source = { http = "http://127.0.0.1:7000/api/stats", pointer = "/latency_ms/p95", header = "Authorization: Bearer ${HUB_TOKEN}" }
warn = "> 2000"
notify = [{ webhook = "https://hooks.slack.com/services/${SLACK_PATH}" }]
"#,
    );
    let out = alerts(dir.path(), &["list", "--json"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert_eq!(json(&out)["rules"].as_array().unwrap().len(), 1);
    for needle in [
        "`header` fills ${HUB_TOKEN}",
        "deprecated",
        r#"headers = { Authorization = { secret = "env:HUB_TOKEN""#,
        "`webhook` fills ${SLACK_PATH}",
        r#"webhook = { secret = "env:SLACK_PATH""#,
    ] {
        assert!(stderr.contains(needle), "{needle:?} not in:\n{stderr}");
    }

    // Written as secret references, the same rule loads without a word.
    write(
        r#"
[[alert]]
name = "p95"
source = { http = "http://127.0.0.1:7000/api/stats", pointer = "/latency_ms/p95", headers = { Authorization = { secret = "env:HUB_TOKEN", prefix = "Bearer " } } }
warn = "> 2000"
notify = [{ webhook = { secret = "env:SLACK_WEBHOOK_URL" } }]
"#,
    );
    let out = alerts(dir.path(), &["list", "--json"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(!stderr.contains("deprecated"), "{stderr}");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("env:HUB_TOKEN"),
        "the reference is shown: {text}"
    );

    // A notifier table that is neither a URL nor a reference is refused at load (exit 78),
    // saying what is expected.
    write(
        r#"
[[alert]]
name = "p95"
source = { command = ["true"] }
warn = "> 2000"
notify = [{ webhook = { url = "https://x/" } }]
"#,
    );
    let out = alerts(dir.path(), &["list", "--json"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(78), "{stderr}");
    assert!(stderr.contains("secret = \"env:NAME\""), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhook_flag_receives_transitions() {
    use axum::routing::post;
    let received = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let r = received.clone();
    let app = axum::Router::new().route(
        "/hook/{token}",
        post(move |body: String| async move {
            r.lock().unwrap().push(body);
            "ok"
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook/sEcReT", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    let dir = temp_dir();
    manifest(dir.path(), "");
    set_value(dir.path(), "20");
    let d = dir.path().to_path_buf();
    let out =
        tokio::task::spawn_blocking(move || alerts(&d, &["check", "--webhook", &url, "--slack"]))
            .await
            .unwrap();
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let bodies = received.lock().unwrap().clone();
    assert_eq!(bodies.len(), 1);
    let body: serde_json::Value = serde_json::from_str(&bodies[0]).unwrap();
    assert!(
        body["text"]
            .as_str()
            .unwrap()
            .contains("FIRING queue severity=warning value=20"),
        "{body}"
    );
}

/// Sends `n` requests to `/api/tools` from four threads.
fn traffic(hub: &DemoHub, n: usize) {
    let addr = hub.addr;
    let threads: Vec<_> = (0..4)
        .map(|_| {
            std::thread::spawn(move || (0..n / 4).for_each(|_| drop(http_get(addr, "/api/tools"))))
        })
        .collect();
    threads.into_iter().for_each(|t| t.join().unwrap());
}

#[test]
fn success_rate_rule_against_the_demo_hub_across_runs() {
    let rule = |base: &str| {
        format!(
            "[[alert]]\nname = \"success-rate\"\nsource = {{ http = \"{base}/api/stats\", pointer = \"/success_rate\", scale = 100 }}\n\
             warn = \"< 95\"\ncrit = \"< 90\"\nfor = \"1s\"\n"
        )
    };
    for (args, want_fire) in [(&["--error-rate", "0.5"][..], true), (&[][..], false)] {
        let hub = DemoHub::start(args);
        hub.wait_ready();
        traffic(&hub, 80);
        let dir = temp_dir();
        std::fs::write(dir.path().join("cutover.toml"), rule(&hub.base_url())).unwrap();
        let check = || alerts(dir.path(), &["check", "--json", "--state", "alerts.json"]);
        let first = check();
        assert_eq!(first.status.code(), Some(0));
        let state = json(&first)["alerts"][0]["state"].clone();
        assert_eq!(
            state,
            if want_fire { "pending" } else { "inactive" },
            "{args:?}"
        );
        if want_fire {
            assert!(
                wait_until(Duration::from_secs(20), || check().status.code() == Some(2)),
                "never fired"
            );
        } else {
            std::thread::sleep(Duration::from_millis(1100));
            let out = check();
            assert_eq!(out.status.code(), Some(0));
            assert_eq!(json(&out)["alerts"][0]["state"], "inactive");
        }
    }
}

#[test]
fn default_rules_against_a_hub_by_url() {
    let hub = DemoHub::start(&[]);
    hub.wait_ready();
    traffic(&hub, 40);
    let dir = temp_dir();
    let out = alerts(
        dir.path(),
        &["check", "--json", "--target", &hub.base_url()],
    );
    let doc = json(&out);
    assert_eq!(doc["alerts"].as_array().unwrap().len(), 8);
    // The host's own disk (`disk-free`) is not the service: it may warn on a nearly full host.
    let host_may_warn = cutover_tests::host_disk_may_warn();
    assert!(
        doc["alerts"]
            .as_array()
            .unwrap()
            .iter()
            .all(|a| a["state"] == "inactive" || host_may_warn && a["name"] == "disk-free"),
        "{doc}"
    );
    let code = out.status.code();
    assert!(
        code == Some(0) || host_may_warn && matches!(code, Some(1 | 2)),
        "{code:?}: {doc}"
    );

    drop(hub);
    let out = alerts(
        dir.path(),
        &["check", "--json", "--target", "http://127.0.0.1:1"],
    );
    assert_eq!(
        out.status.code(),
        Some(3),
        "a service that cannot be read is unknown"
    );
}

/// An HTTPS server on 127.0.0.1:0 with a fresh self-signed certificate for `localhost`;
/// returns the port, the certificate's PEM and the bodies it receives.
async fn tls_server() -> (u16, String, std::sync::Arc<std::sync::Mutex<Vec<String>>>) {
    use std::sync::Arc;
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let pem = cert.cert.pem();
    let key = rustls::pki_types::PrivateKeyDer::Pkcs8(cert.signing_key.serialize_der().into());
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(vec![cert.cert.der().clone()], key)
    .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let received = Arc::new(std::sync::Mutex::new(Vec::new()));
    let r = received.clone();
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |body: String| async move {
            r.lock().unwrap().push(body);
            "ok"
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let (acceptor, app) = (acceptor.clone(), app.clone());
            tokio::spawn(async move {
                // Handshakes that fail (the client refusing the certificate) end here.
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let service = hyper_util::service::TowerToHyperService::new(app);
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(tls), service)
                    .await;
            });
        }
    });
    (port, pem, received)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_webhook_trusts_ssl_cert_file_and_refuses_unknown_certificates() {
    let (port, pem, received) = tls_server().await;
    let dir = temp_dir();
    manifest(dir.path(), "");
    set_value(dir.path(), "80");
    std::fs::write(dir.path().join("ca.pem"), pem).unwrap();
    let url = format!("https://localhost:{port}/hook");
    let run = |trust: bool| {
        let (d, url) = (dir.path().to_path_buf(), url.clone());
        tokio::task::spawn_blocking(move || {
            let mut command = Command::new(workspace_bin("cutover-alerts"));
            command
                .args(["check", "--json", "--webhook", &url])
                .current_dir(&d)
                .env_remove("SSL_CERT_FILE");
            if trust {
                command.env("SSL_CERT_FILE", d.join("ca.pem"));
            }
            command.output().unwrap()
        })
    };
    let refused = run(false).await.unwrap();
    assert_eq!(
        refused.status.code(),
        Some(2),
        "a failed notification does not change the verdict"
    );
    let doc = json(&refused);
    assert!(doc["errors"][0].as_str().unwrap().contains("TLS"), "{doc}");
    assert!(received.lock().unwrap().is_empty());

    let trusted = run(true).await.unwrap();
    assert_eq!(trusted.status.code(), Some(2));
    assert!(
        json(&trusted).get("errors").is_none(),
        "{}",
        String::from_utf8_lossy(&trusted.stdout)
    );
    let bodies = received.lock().unwrap().clone();
    assert_eq!(bodies.len(), 1);
    assert!(bodies[0].contains("\"kind\":\"firing\""), "{}", bodies[0]);
}
