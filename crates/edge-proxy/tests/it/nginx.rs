//! The real thing: a private nginx in front of demo-service instances. TLS versions, rate
//! limits, security headers, admin auth, and switching under load with zero failed requests.
//!
//! Needs `cutover-demo-hub` built (`cargo build -p cutover-demo-hub`), nginx and openssl.

#![allow(clippy::print_stdout, clippy::print_stderr)]
// What a test measured or why it waits: shown by nextest.
// Helpers outside #[test] functions (the load loop) unwrap like the tests themselves.
#![allow(clippy::unwrap_used)]

use crate::common;

use std::net::SocketAddr;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{Running, free_addr, plain_config};
use cutover_tests::{DemoHub, http_get, http_request};
use edge_proxy::{
    EdgeError, LocationConfig, NginxSwitch, RateLimit, SwitchTarget, TlsConfig, TrafficSwitch,
};
use secret_refs::Secret;

fn hub(release: &str) -> DemoHub {
    let hub = DemoHub::start(&["--release-id", release]);
    hub.wait_ready();
    hub
}

fn version_via(addr: SocketAddr) -> Option<String> {
    let answer = http_get(addr, "/api/health").ok()?;
    let json: serde_json::Value = serde_json::from_str(&answer.body).ok()?;
    json["version"].as_str().map(str::to_owned)
}

fn openssl(args: &[&str]) -> (bool, String) {
    let output = Command::new("openssl")
        .args(args)
        .stdin(std::process::Stdio::null())
        .output()
        .expect("openssl is required: apt-get install -y --no-install-recommends openssl");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.success(), text)
}

const HEADERS: [&str; 4] = [
    "x-frame-options",
    "x-content-type-options",
    "referrer-policy",
    "content-security-policy",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_works_with_the_self_signed_cert_and_refuses_tls_1_0_and_1_1() {
    let blue = hub("blue");
    let mut config = plain_config();
    let https = free_addr();
    config.tls = Some(TlsConfig {
        listen: vec![https],
        cert: None,
        key: None,
        self_signed: true,
        trusted_certificate: None,
        hsts_max_age: Duration::from_secs(3600),
    });
    let proxy = Running::start(config, blue.addr, None).await;
    let cert = proxy.layout().conf_dir().join("tls/cert.pem");
    let connect = https.to_string();
    let cafile = cert.display().to_string();
    let base = [
        "s_client",
        "-connect",
        &connect,
        "-servername",
        "localhost",
        "-CAfile",
        &cafile,
    ];

    for version in ["-tls1_2", "-tls1_3"] {
        let args: Vec<&str> = base
            .iter()
            .copied()
            .chain([version, "-verify_return_error"])
            .collect();
        let (ok, out) = openssl(&args);
        assert!(
            ok && out.contains("Verify return code: 0 (ok)"),
            "{version} must work:\n{out}"
        );
    }
    // SECLEVEL=0 lets the client offer the old versions, so the refusal is the server's.
    for version in ["-tls1", "-tls1_1"] {
        let args: Vec<&str> = base
            .iter()
            .copied()
            .chain([version, "-cipher", "DEFAULT@SECLEVEL=0"])
            .collect();
        let (ok, out) = openssl(&args);
        assert!(!ok, "{version} must be refused:\n{out}");
        assert!(
            out.contains("alert protocol version"),
            "{version}: the server must refuse it:\n{out}"
        );
    }

    // A request over TLS reaches the service with HSTS and the security headers.
    let request = "GET /api/health HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n";
    let request_file = proxy.dir.path().join("request");
    std::fs::write(&request_file, request).unwrap();
    let output = Command::new("openssl")
        .args(base)
        .args(["-quiet", "-verify_return_error"])
        .stdin(std::fs::File::open(&request_file).unwrap())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&output.stdout).to_ascii_lowercase();
    assert!(text.starts_with("http/1.1 200"), "{text}");
    assert!(
        text.contains("strict-transport-security: max-age=3600"),
        "{text}"
    );
    assert!(text.contains("\"version\":\"blue\""), "{text}");

    // Plain HTTP redirects to HTTPS, except ACME challenges.
    let answer = http_get(proxy.http(), "/api/tools?x=1").unwrap();
    assert_eq!(answer.status, 301);
    let location = answer.header("location").unwrap();
    assert!(
        location.ends_with(&format!(":{}/api/tools?x=1", https.port())),
        "{location}"
    );
    let acme = proxy
        .layout()
        .prefix()
        .join("acme/.well-known/acme-challenge");
    std::fs::create_dir_all(&acme).unwrap();
    std::fs::write(acme.join("token123"), "proof").unwrap();
    let answer = http_get(proxy.http(), "/.well-known/acme-challenge/token123").unwrap();
    assert_eq!((answer.status, answer.body.as_str()), (200, "proof"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_beyond_the_rate_limit_gets_429_while_health_never_does() {
    let blue = hub("blue");
    let mut config = plain_config();
    config.locations = vec![LocationConfig {
        path: "/api/".to_owned(),
        rate_limit: Some(RateLimit {
            rate: "1r/s".to_owned(),
            burst: 2,
        }),
        streaming: false,
        read_timeout: None,
        sessions: false,
    }];
    let proxy = Running::start(config, blue.addr, None).await;
    let statuses: Vec<u16> = (0..12)
        .map(|_| http_get(proxy.http(), "/api/tools").unwrap().status)
        .collect();
    let limited = statuses.iter().filter(|s| **s == 429).count();
    assert!(
        statuses[0] == 200 && limited >= 6,
        "expected 429s after the burst: {statuses:?}"
    );
    let answer = http_get(proxy.http(), "/api/servers").unwrap();
    assert_eq!(answer.status, 429);
    for header in HEADERS {
        assert!(answer.header(header).is_some(), "429 lacks {header}");
    }
    for _ in 0..40 {
        let answer = http_get(proxy.http(), "/api/health").unwrap();
        assert_eq!(
            answer.status, 200,
            "the health location is never rate limited"
        );
    }
    let access_log = std::fs::read_to_string(proxy.layout().access_log()).unwrap();
    assert!(
        access_log.contains("/api/tools"),
        "normal requests are logged"
    );
    assert!(
        !access_log.contains("/api/health"),
        "health checks are not logged"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn security_headers_are_on_every_location_including_streaming_and_admin() {
    let blue = hub("blue");
    let mut config = plain_config();
    config.locations = edge_proxy::default_locations();
    config.locations.push(LocationConfig {
        path: "/mcp".to_owned(),
        rate_limit: None,
        streaming: true,
        read_timeout: None,
        sessions: false,
    });
    config.admin = Some(edge_proxy::AdminConfig {
        paths: vec!["/api/servers".to_owned()],
        token: Some("env:CUTOVER_TEST_TOKEN".parse().unwrap()),
        allow: vec![],
    });
    let token = Secret::new("test-admin-token-0123456789");
    let proxy = Running::start(config, blue.addr, Some(&token)).await;
    for path in [
        "/",
        "/api/health",
        "/api/tools",
        "/api/stats",
        "/mcp/none",
        "/mcp/stream",
        "/api/servers",
        "/.env",
        "/config.yaml",
        "/.well-known/acme-challenge/none",
    ] {
        let answer = http_get(proxy.http(), path).unwrap();
        for header in HEADERS {
            assert!(
                answer.header(header).is_some(),
                "{path} ({}) lacks {header}",
                answer.status
            );
        }
    }
    assert_eq!(http_get(proxy.http(), "/.env").unwrap().status, 403);
    assert_eq!(
        http_get(proxy.http(), "/api/tools.json").unwrap().status,
        403
    );

    // Admin paths: 401 without or with a wrong token, served with the right one.
    assert_eq!(http_get(proxy.http(), "/api/servers").unwrap().status, 401);
    let wrong = [("Authorization", "Bearer test-admin-token-0123456780")];
    assert_eq!(
        http_request(proxy.http(), "GET", "/api/servers", &wrong, None)
            .unwrap()
            .status,
        401
    );
    let upper = [("Authorization", "Bearer TEST-ADMIN-TOKEN-0123456789")];
    assert_eq!(
        http_request(proxy.http(), "GET", "/api/servers", &upper, None)
            .unwrap()
            .status,
        401,
        "the token is compared case-sensitively"
    );
    let right = [("Authorization", "bearer test-admin-token-0123456789")];
    let answer = http_request(proxy.http(), "GET", "/api/servers", &right, None).unwrap();
    assert_eq!(answer.status, 200, "{}", answer.body);
    let logs = std::fs::read_to_string(proxy.layout().access_log()).unwrap()
        + &std::fs::read_to_string(proxy.layout().error_log()).unwrap();
    assert!(
        !logs.contains("test-admin-token"),
        "the token never reaches a log"
    );
}

/// Closed-loop clients through nginx, one connection per request (so that a keep-alive
/// connection closed by a reloading worker cannot be miscounted; see PITFALLS.md).
struct Load {
    stop: Arc<AtomicBool>,
    ok: Arc<AtomicU64>,
    failures: Arc<Mutex<Vec<String>>>,
    versions: Arc<Mutex<std::collections::BTreeMap<String, u64>>>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Load {
    fn start(target: SocketAddr, clients: usize) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let ok = Arc::new(AtomicU64::new(0));
        let failures = Arc::new(Mutex::new(Vec::new()));
        let versions = Arc::new(Mutex::new(std::collections::BTreeMap::new()));
        let threads = (0..clients)
            .map(|i| {
                let (stop, ok, failures, versions) =
                    (stop.clone(), ok.clone(), failures.clone(), versions.clone());
                std::thread::spawn(move || {
                    // Bounded: at most this many requests per client even if never stopped.
                    for n in 0..20_000u32 {
                        if stop.load(Ordering::Relaxed) {
                            break;
                        }
                        let path = if (n as usize + i).is_multiple_of(2) {
                            "/api/health"
                        } else {
                            "/api/tools"
                        };
                        match http_get(target, path) {
                            Ok(r) if r.status == 200 => {
                                ok.fetch_add(1, Ordering::Relaxed);
                                if let Some(v) = serde_json::from_str::<serde_json::Value>(&r.body)
                                    .ok()
                                    .and_then(|j| j["version"].as_str().map(str::to_owned))
                                {
                                    *versions.lock().unwrap().entry(v).or_insert(0) += 1;
                                }
                            }
                            Ok(r) => failures
                                .lock()
                                .unwrap()
                                .push(format!("{path}: {}", r.status)),
                            Err(e) => failures.lock().unwrap().push(format!("{path}: {e}")),
                        }
                    }
                })
            })
            .collect();
        Self {
            stop,
            ok,
            failures,
            versions,
            threads,
        }
    }

    /// Waits (up to a generous deadline) until `more` further requests succeeded, so that each
    /// phase of a test sees real traffic however slow the machine is. A fixed sleep would
    /// either waste time or, on a loaded machine, let no request through.
    async fn wait_for_more(&self, more: u64) {
        let target = self.ok.load(Ordering::Relaxed) + more;
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.ok.load(Ordering::Relaxed) < target && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(
            self.ok.load(Ordering::Relaxed) >= target,
            "the load loop made no progress within 30 s"
        );
    }

    fn finish(self) -> (u64, Vec<String>, std::collections::BTreeMap<String, u64>) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads {
            t.join().unwrap();
        }
        let failures = self.failures.lock().unwrap().clone();
        let versions = self.versions.lock().unwrap().clone();
        (self.ok.load(Ordering::Relaxed), failures, versions)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn switching_under_load_fails_no_request_in_either_direction() {
    // Latency keeps requests in flight while workers are replaced.
    let blue = DemoHub::start(&["--release-id", "blue", "--latency", "20ms"]);
    let green = DemoHub::start(&["--release-id", "green", "--latency", "20ms"]);
    blue.wait_ready();
    green.wait_ready();
    let mut config = plain_config();
    // Several workers: confirmation must wait for every old one, not just one new one.
    config.worker_processes = Some(2);
    let proxy = Running::start(config, blue.addr, None).await;
    let switch = proxy.instance.switcher();
    let load = Load::start(proxy.http(), 4);
    let started = Instant::now();
    let mut elapsed = Vec::new();
    for round in 0..3 {
        for (hub, release) in [(&green, "green"), (&blue, "blue")] {
            load.wait_for_more(20).await;
            let target = SwitchTarget {
                upstream: hub.addr,
                expect_release: Some(release.into()),
                backup: None,
            };
            let report = switch
                .switch(&target)
                .await
                .unwrap_or_else(|e| panic!("round {round}: switch to {release}: {e}"));
            assert_eq!(report.to, hub.addr);
            assert_eq!(report.release.as_deref(), Some(release));
            for _ in 0..4 {
                assert_eq!(
                    version_via(proxy.http()).as_deref(),
                    Some(release),
                    "once confirmed, every connection reaches the new upstream"
                );
            }
            elapsed.push(report.elapsed.as_millis());
        }
    }
    load.wait_for_more(20).await;
    let (ok, failures, versions) = load.finish();
    eprintln!(
        "switch-under-load: {ok} requests ok, {} failed, by release {versions:?}, 6 switches in \
         {:?}, each (ms) {elapsed:?}; connection per request",
        failures.len(),
        started.elapsed()
    );
    assert!(
        failures.is_empty(),
        "failed requests during switches: {failures:?}"
    );
    assert!(ok > 100, "the load loop ran ({ok} requests)");
    assert!(
        versions.get("blue").is_some_and(|n| *n > 0)
            && versions.get("green").is_some_and(|n| *n > 0)
    );
    assert_eq!(switch.current().await.unwrap(), Some(blue.addr));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_switch_to_a_dead_or_wrong_upstream_is_refused_and_traffic_stays() {
    let blue = hub("blue");
    let green = hub("green");
    let proxy = Running::start(plain_config(), blue.addr, None).await;
    let switch = proxy.instance.switcher();
    let include_before = std::fs::read_to_string(proxy.layout().upstream_file()).unwrap();

    let dead = free_addr();
    let err = switch
        .switch(&SwitchTarget {
            upstream: dead,
            expect_release: None,
            backup: None,
        })
        .await
        .unwrap_err();
    assert!(matches!(err, EdgeError::UpstreamUnhealthy { .. }), "{err}");
    assert!(err.to_string().contains(&dead.to_string()), "{err}");

    let err = switch
        .switch(&SwitchTarget {
            upstream: green.addr,
            expect_release: Some("purple".into()),
            backup: None,
        })
        .await
        .unwrap_err();
    assert!(err.to_string().contains("purple"), "{err}");

    assert_eq!(switch.current().await.unwrap(), Some(blue.addr));
    assert_eq!(
        std::fs::read_to_string(proxy.layout().upstream_file()).unwrap(),
        include_before
    );
    assert_eq!(version_via(proxy.http()).as_deref(), Some("blue"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unconfirmed_switch_puts_the_previous_upstream_back() {
    let blue = hub("blue");
    let green = hub("green");
    let proxy = Running::start(plain_config(), blue.addr, None).await;
    // A switch that confirms through a control address nothing listens on can never be
    // confirmed, although the new upstream is healthy: the previous one must come back.
    let switch = NginxSwitch::new(
        common::nginx(),
        proxy.layout().clone(),
        free_addr(),
        "/api/health".to_owned(),
        "/version".to_owned(),
        Duration::from_millis(500),
    );
    let err = switch
        .switch(&SwitchTarget {
            upstream: green.addr,
            expect_release: None,
            backup: None,
        })
        .await
        .unwrap_err();
    assert!(matches!(err, EdgeError::SwitchFailed { .. }), "{err}");
    assert!(
        err.to_string().contains("put back and nginx reloaded"),
        "{err}"
    );
    assert_eq!(switch.current().await.unwrap(), Some(blue.addr));
    let back = cutover_tests::wait_until(Duration::from_secs(10), || {
        version_via(proxy.http()).as_deref() == Some("blue")
    });
    assert!(back, "traffic is back on blue");
}

/// The GET of `/api/health` through `addr` with `header`, answered by which release.
fn version_with(addr: SocketAddr, header: Option<(&str, &str)>) -> String {
    let headers: Vec<(&str, &str)> = header.into_iter().collect();
    let answer = http_request(addr, "GET", "/api/health", &headers, None).unwrap();
    let json: serde_json::Value = serde_json::from_str(&answer.body).unwrap();
    json["version"].as_str().unwrap_or_default().to_owned()
}

/// A canary's weighted split on a real nginx: a split nginx does not know is added with one
/// reload (the other steps with it), a known one is only a marker; requests without the sticky
/// header are split by weight, a header value always reaches the same release, raising the
/// weight moves sessions only towards the canary, and one switch puts everything back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_weighted_split_spreads_requests_keeps_sessions_sticky_and_switches_back() {
    use edge_proxy::{StickyKey, WeightedSplit};
    let blue = hub("blue");
    let green = hub("green");
    let proxy = Running::start(plain_config(), blue.addr, None).await;
    let switch = proxy.instance.switcher();
    let split = |canary_percent| WeightedSplit {
        baseline: blue.addr,
        canary: green.addr,
        canary_percent,
    };
    let sticky = StickyKey::Header("X-Session".into());
    switch
        .split(&split(30), &[split(70)], &sticky, Some("green"))
        .await
        .unwrap();
    assert_eq!(switch.current_split().unwrap(), Some(split(30)));
    let include = std::fs::read_to_string(proxy.layout().upstream_file()).unwrap();
    assert!(
        include.contains("map $http_x_session $cutover_sticky_key"),
        "{include}"
    );

    let on_green = (0..200)
        .filter(|_| version_with(proxy.http(), None) == "green")
        .count();
    eprintln!("weighted split at 30 %: {on_green} of 200 requests on the canary");
    assert!((20..=110).contains(&on_green), "{on_green} of 200");

    let sessions: Vec<String> = (0..30).map(|n| format!("session-{n}")).collect();
    let at_30: Vec<String> = sessions
        .iter()
        .map(|s| {
            let first = version_with(proxy.http(), Some(("X-Session", s)));
            for _ in 0..3 {
                assert_eq!(
                    version_with(proxy.http(), Some(("X-Session", s))),
                    first,
                    "{s}"
                );
            }
            first
        })
        .collect();

    // The next step is known: a marker, no rewrite of the include.
    switch
        .split(&split(70), &[split(30)], &sticky, Some("green"))
        .await
        .unwrap();
    assert_eq!(
        std::fs::read_to_string(proxy.layout().upstream_file()).unwrap(),
        include
    );
    for (s, before) in sessions.iter().zip(&at_30) {
        let now = version_with(proxy.http(), Some(("X-Session", s)));
        assert!(
            !(before == "green" && now == "blue"),
            "{s} moved back from the canary"
        );
    }

    // One switch: every request on the baseline again, the split's marker gone.
    switch
        .switch(&SwitchTarget {
            upstream: blue.addr,
            expect_release: Some("blue".into()),
            backup: None,
        })
        .await
        .unwrap();
    assert_eq!(switch.current_split().unwrap(), None);
    for s in &sessions {
        assert_eq!(version_with(proxy.http(), Some(("X-Session", s))), "blue");
    }
}
