//! End-to-end tests of `cutover-demo-hub`: the API shapes, statistics that follow real traffic,
//! graceful shutdown, socket activation, readiness notification and every fault knob.

use std::os::unix::process::ExitStatusExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use cutover_tests::{
    ChildGuard, DEFAULT_DEADLINE, DemoHub, http_get, http_request, temp_dir, wait_until,
    workspace_bin,
};
use serde_json::Value;

fn json(hub: &DemoHub, path: &str) -> (u16, Value) {
    let r = http_get(hub.addr, path).unwrap_or_else(|e| panic!("GET {path}: {e}"));
    let v = serde_json::from_str(&r.body)
        .unwrap_or_else(|e| panic!("GET {path}: not JSON ({e}): {}", r.body));
    (r.status, v)
}

fn metric(hub: &DemoHub, line_prefix: &str) -> Option<f64> {
    let body = http_get(hub.addr, "/metrics").ok()?.body;
    body.lines()
        .find(|l| l.starts_with(line_prefix))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

#[test]
fn starts_then_becomes_ready_and_serves_every_shape() {
    let hub = DemoHub::start(&[
        "--start-delay",
        "1500ms",
        "--release-id",
        "20261125T000000Z-abc1234",
    ]);
    let (status, health) = json(&hub, "/api/health");
    assert_eq!(status, 200);
    assert_eq!(
        health["status"], "ok",
        "status is always ok, even while starting"
    );
    assert_eq!(health["state"], "starting");
    let (status, stats) = json(&hub, "/api/filtering/stats");
    assert_eq!(status, 404, "stats answer 404 while starting");
    assert!(stats["error"].is_string() && stats["timestamp"].is_string());

    hub.wait_ready();
    let (_, health) = json(&hub, "/api/health");
    assert_eq!(health["version"], "20261125T000000Z-abc1234");
    for key in [
        "server_id",
        "activeClients",
        "timestamp",
        "servers",
        "connections",
        "mcpEndpoint",
        "workspaces",
    ] {
        assert!(!health[key].is_null(), "health lacks {key}: {health}");
    }
    assert!(
        health["mcpEndpoint"]["registeredCapabilities"]["tools"]
            .as_u64()
            .unwrap()
            > 0
    );

    let (status, stats) = json(&hub, "/api/filtering/stats");
    assert_eq!(status, 200);
    assert_eq!(stats["enabled"], true);
    for key in [
        "mode",
        "totalTools",
        "filteredTools",
        "exposedTools",
        "filterRate",
        "serverFilterMode",
        "allowedServers",
        "allowedCategories",
        "categoryCacheSize",
        "cacheHitRate",
        "llmCacheSize",
        "llmCacheHitRate",
        "timestamp",
    ] {
        assert!(!stats[key].is_null(), "filtering stats lack {key}: {stats}");
    }
    let rate = stats["llmCacheHitRate"].as_f64().unwrap();
    assert!(
        (0.0..=1.0).contains(&rate),
        "rates are fractions, got {rate}"
    );

    let (status, tools) = json(&hub, "/api/tools");
    assert_eq!(status, 200);
    let tools = tools["tools"].as_array().unwrap();
    assert!(!tools.is_empty());
    for key in [
        "server",
        "serverDisplayName",
        "name",
        "description",
        "enabled",
        "categories",
    ] {
        assert!(!tools[0][key].is_null(), "tool lacks {key}");
    }
    let (_, servers) = json(&hub, "/api/servers");
    assert!(
        servers["servers"][0]["name"].is_string() && servers["servers"][0]["uptime"].is_number()
    );

    let (_, s) = json(&hub, "/api/stats");
    for key in [
        "success_rate",
        "latency_ms",
        "cache_hit_rate",
        "queue_depth",
        "circuit_breaker",
        "requests",
        "errors",
    ] {
        assert!(s.get(key).is_some(), "/api/stats lacks {key}: {s}");
    }
    assert_eq!(
        metric(
            &hub,
            "demo_hub_build_info{version=\"20261125T000000Z-abc1234\"}"
        ),
        Some(1.0)
    );
    assert_eq!(metric(&hub, "demo_hub_ready "), Some(1.0));
    assert_eq!(http_get(hub.addr, "/api/nope").unwrap().status, 404);
}

#[test]
fn stats_follow_real_traffic_with_injected_latency_and_errors() {
    let hub = DemoHub::start(&["--latency", "60ms", "--error-rate", "0.5"]);
    hub.wait_ready();
    let (_, before) = json(&hub, "/api/stats");
    let before_requests = before["requests"].as_u64().unwrap();
    let before_errors = before["errors"].as_u64().unwrap();
    let mut client_errors = 0;
    let n = 40;
    for _ in 0..n {
        let r = http_get(hub.addr, "/api/tools").unwrap();
        match r.status {
            200 => {}
            500 => client_errors += 1,
            other => panic!("unexpected status {other}"),
        }
    }
    assert!(
        client_errors > 0 && client_errors < n,
        "error rate 0.5 over {n} requests gave {client_errors}"
    );
    let (_, after) = json(&hub, "/api/stats");
    assert_eq!(after["requests"].as_u64().unwrap() - before_requests, n);
    assert_eq!(
        after["errors"].as_u64().unwrap() - before_errors,
        client_errors,
        "errors counted = 500s seen"
    );
    let window = after["window_requests"].as_u64().unwrap();
    let window_errors = client_errors; // health polls are never failed by the knob
    let expected_rate = (window - window_errors) as f64 / window as f64;
    assert!(
        (after["success_rate"].as_f64().unwrap() - expected_rate).abs() < 1e-9,
        "{after}"
    );
    let p50 = after["latency_ms"]["p50"].as_f64().unwrap();
    assert!(
        (60.0..1000.0).contains(&p50),
        "p50 {p50} ms should reflect the injected 60 ms"
    );
    assert!(after["latency_ms"]["p99"].as_f64().unwrap() >= p50);
    assert_eq!(
        metric(&hub, "demo_hub_requests_total{code=\"500\"}"),
        Some(client_errors as f64)
    );
}

#[test]
fn error_rate_one_fails_every_api_answer_but_health_and_opens_the_breaker() {
    let hub = DemoHub::start(&["--error-rate", "1"]);
    hub.wait_ready();
    assert_eq!(http_get(hub.addr, "/api/health").unwrap().status, 200);
    for _ in 0..6 {
        assert_eq!(http_get(hub.addr, "/api/tools").unwrap().status, 500);
    }
    let (_, s) = json(&hub, "/api/stats");
    assert_eq!(s["circuit_breaker"], "open", "{s}");
    assert_eq!(
        metric(&hub, "demo_hub_circuit_breaker_state{state=\"open\"}"),
        Some(1.0)
    );
}

#[test]
fn without_error_knob_no_request_fails_and_breaker_stays_closed() {
    let hub = DemoHub::start(&[]);
    hub.wait_ready();
    for _ in 0..10 {
        assert_eq!(http_get(hub.addr, "/api/tools").unwrap().status, 200);
    }
    let (_, s) = json(&hub, "/api/stats");
    assert_eq!(s["errors"], 0);
    assert_eq!(s["success_rate"], 1.0);
    assert_eq!(s["circuit_breaker"], "closed");
    assert!(
        s["cache_hit_rate"].as_f64().unwrap() > 0.8,
        "repeated lookups hit the cache: {s}"
    );
}

#[test]
fn cache_capacity_zero_makes_every_lookup_miss() {
    let hub = DemoHub::start(&["--cache-capacity", "0"]);
    hub.wait_ready();
    for _ in 0..5 {
        http_get(hub.addr, "/api/tools").unwrap();
    }
    let (_, s) = json(&hub, "/api/stats");
    assert_eq!(s["cache_hit_rate"], 0.0, "{s}");
}

#[test]
fn graceful_shutdown_finishes_the_in_flight_request_and_refuses_new_ones() {
    let mut hub = DemoHub::start(&["--latency", "3s"]);
    let addr = hub.addr;
    let slow = std::thread::spawn(move || http_get(addr, "/api/tools"));
    assert!(
        wait_until(DEFAULT_DEADLINE, || metric(&hub, "demo_hub_queue_depth ")
            == Some(1.0)),
        "the slow request never arrived"
    );
    hub.guard.signal(libc::SIGTERM);
    assert!(
        wait_until(DEFAULT_DEADLINE, || std::net::TcpStream::connect(addr)
            .is_err()),
        "new connections are still accepted after SIGTERM"
    );
    let response = slow
        .join()
        .unwrap()
        .expect("the in-flight request completes");
    assert_eq!(response.status, 200);
    let status = hub
        .guard
        .wait_timeout(DEFAULT_DEADLINE)
        .expect("the hub exits after draining");
    assert_eq!(status.code(), Some(0));
}

#[test]
fn grace_period_bounds_shutdown() {
    let mut hub = DemoHub::start(&["--latency", "30s", "--grace", "500ms"]);
    let addr = hub.addr;
    let _slow = std::thread::spawn(move || http_get(addr, "/api/tools"));
    assert!(wait_until(DEFAULT_DEADLINE, || metric(
        &hub,
        "demo_hub_queue_depth "
    ) == Some(1.0)));
    let sent = Instant::now();
    hub.guard.signal(libc::SIGTERM);
    let status = hub
        .guard
        .wait_timeout(DEFAULT_DEADLINE)
        .expect("the hub exits once the grace period is over");
    assert!(
        sent.elapsed() < Duration::from_secs(10),
        "took {:?} with a 500 ms grace",
        sent.elapsed()
    );
    assert_eq!(status.code(), Some(0));
}

#[test]
fn ignore_sigterm_keeps_serving_until_sigint() {
    let mut hub = DemoHub::start(&["--ignore-sigterm"]);
    hub.wait_ready();
    hub.guard.signal(libc::SIGTERM);
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        hub.guard.child().try_wait().unwrap().is_none(),
        "SIGTERM stopped a hub told to ignore it"
    );
    assert_eq!(http_get(hub.addr, "/api/health").unwrap().status, 200);
    hub.guard.signal(libc::SIGINT);
    assert!(
        hub.guard.wait_timeout(DEFAULT_DEADLINE).is_some(),
        "SIGINT still stops it"
    );
}

#[test]
fn sigterm_without_the_knob_stops_it() {
    let mut hub = DemoHub::start(&[]);
    hub.wait_ready();
    hub.guard.signal(libc::SIGTERM);
    let status = hub
        .guard
        .wait_timeout(DEFAULT_DEADLINE)
        .expect("SIGTERM stops the hub");
    assert_eq!(status.code(), Some(0));
}

#[test]
fn fail_start_exits_one_at_once_without_listening() {
    let dir = temp_dir();
    let addr_file = dir.path().join("addr");
    let out = Command::new(workspace_bin("cutover-demo-hub"))
        .args(["--listen", "127.0.0.1:0", "--fail-start", "--addr-file"])
        .arg(&addr_file)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(!addr_file.exists(), "a failing start must not listen");
}

#[test]
fn fail_start_can_come_from_the_environment() {
    let out = Command::new(workspace_bin("cutover-demo-hub"))
        .args(["--listen", "127.0.0.1:0"])
        .env("CUTOVER_DEMO_FAIL_START", "true")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
}

#[test]
fn crash_after_aborts_the_process() {
    let mut hub = DemoHub::start_with(&[], &[("CUTOVER_DEMO_CRASH_AFTER", "1s")]);
    hub.wait_ready();
    let status = hub
        .guard
        .wait_timeout(DEFAULT_DEADLINE)
        .expect("the hub crashes by itself");
    assert_eq!(status.signal(), Some(libc::SIGABRT), "{status:?}");
}

#[test]
fn health_state_starting_never_becomes_ready() {
    let hub = DemoHub::start(&["--health-state", "starting"]);
    let deadline = Instant::now() + Duration::from_millis(1500);
    while Instant::now() < deadline {
        let (_, h) = json(&hub, "/api/health");
        assert_eq!(
            (h["status"].as_str(), h["state"].as_str()),
            (Some("ok"), Some("starting"))
        );
        assert_eq!(
            http_get(hub.addr, "/api/filtering/stats").unwrap().status,
            404
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn health_state_error_reports_error() {
    let hub = DemoHub::start(&["--health-state", "error"]);
    std::thread::sleep(Duration::from_millis(300));
    let (_, h) = json(&hub, "/api/health");
    assert_eq!(h["state"], "error");
    assert_eq!(h["status"], "ok");
}

#[test]
fn leak_per_request_grows_resident_memory() {
    let hub = DemoHub::start(&["--leak-per-request", "1MiB"]);
    hub.wait_ready();
    let rss = |hub: &DemoHub| json(hub, "/api/stats").1["rss_bytes"].as_u64().unwrap();
    let before = rss(&hub);
    for _ in 0..32 {
        http_get(hub.addr, "/api/tools").unwrap();
    }
    let after = rss(&hub);
    let (_, s) = json(&hub, "/api/stats");
    assert!(s["leaked_bytes"].as_u64().unwrap() >= 32 << 20, "{s}");
    assert!(
        after >= before + (24 << 20),
        "RSS grew only from {before} to {after}"
    );
}

#[test]
fn without_leak_knob_memory_stays_flat() {
    let hub = DemoHub::start(&[]);
    hub.wait_ready();
    let rss = |hub: &DemoHub| json(hub, "/api/stats").1["rss_bytes"].as_u64().unwrap();
    for _ in 0..10 {
        http_get(hub.addr, "/api/tools").unwrap();
    }
    let before = rss(&hub);
    for _ in 0..32 {
        http_get(hub.addr, "/api/tools").unwrap();
    }
    assert!(rss(&hub) < before + (8 << 20));
}

#[test]
fn token_protects_api_but_not_health() {
    let hub = DemoHub::start_with(&[], &[("CUTOVER_DEMO_TOKEN", "s3cret-token")]);
    hub.wait_ready();
    assert_eq!(http_get(hub.addr, "/api/health").unwrap().status, 200);
    assert_eq!(http_get(hub.addr, "/api/tools").unwrap().status, 401);
    let wrong = http_request(
        hub.addr,
        "GET",
        "/api/tools",
        &[("Authorization", "Bearer nope")],
        None,
    )
    .unwrap();
    assert_eq!(wrong.status, 401);
    let right = http_request(
        hub.addr,
        "GET",
        "/api/tools",
        &[("Authorization", "Bearer s3cret-token")],
        None,
    )
    .unwrap();
    assert_eq!(right.status, 200);
}

#[test]
fn socket_activation_and_ready_notification() {
    use std::os::fd::AsRawFd;
    use std::os::unix::net::UnixDatagram;
    use std::os::unix::process::CommandExt;

    let dir = temp_dir();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let notify_path = dir.path().join("notify.sock");
    let notify = UnixDatagram::bind(&notify_path).unwrap();
    notify.set_read_timeout(Some(DEFAULT_DEADLINE)).unwrap();

    // LISTEN_PID must be the service's own pid, known only after fork: a shell sets it to $$
    // and execs the service, keeping the pid. The listener is moved to fd 3 before exec.
    let fd = listener.as_raw_fd();
    let mut command = Command::new("/bin/sh");
    command
        .arg("-c")
        .arg("LISTEN_PID=$$ LISTEN_FDS=1 exec \"$0\" --listen 127.0.0.1:1 --start-delay 300ms")
        .arg(workspace_bin("cutover-demo-hub"))
        .env("NOTIFY_SOCKET", &notify_path);
    #[allow(unsafe_code)]
    // SAFETY: only dup2 and fcntl, which are async-signal-safe, run between fork and exec.
    unsafe {
        command.pre_exec(move || {
            // dup2 onto itself keeps close-on-exec set, so an fd already at 3 is cleared instead.
            let rc = if fd == 3 {
                libc::fcntl(3, libc::F_SETFD, 0)
            } else {
                libc::dup2(fd, 3)
            };
            if rc < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let _guard = ChildGuard::spawn(command).unwrap();
    drop(listener);
    let mut buf = [0u8; 256];
    let n = notify
        .recv(&mut buf)
        .expect("READY=1 arrives on NOTIFY_SOCKET");
    let message = String::from_utf8_lossy(&buf[..n]);
    assert!(message.contains("READY=1"), "{message}");
    let health = http_get(addr, "/api/health").expect("the hub serves on the handed-over socket");
    assert!(
        health.body.contains("\"state\":\"ready\""),
        "READY=1 is sent only once ready: {}",
        health.body
    );
}

/// `--shape mcp-hub` serves only what MCP Hub 4.3.0 serves: no `/api/stats`, `/metrics` is the
/// web UI's HTML, and `/api/filtering/stats` has fractions with `cacheHitRate` 0 and
/// `totalTools` 0 until the first lookup, both moving with traffic to `/api/tools`.
#[test]
fn the_mcp_hub_shape_serves_only_what_the_real_hub_serves() {
    let hub = DemoHub::start_with(&[], &[("CUTOVER_DEMO_SHAPE", "mcp-hub")]);
    hub.wait_ready();
    let stats = http_get(hub.addr, "/api/stats").unwrap();
    assert_eq!(stats.status, 404, "{}", stats.body);
    let page = http_get(hub.addr, "/metrics").unwrap();
    assert_eq!(page.status, 200);
    assert!(
        page.header("content-type")
            .is_some_and(|c| c.starts_with("text/html")),
        "{:?}",
        page.headers
    );
    assert!(page.body.contains("<html"), "{}", page.body);
    assert!(serde_json::from_str::<Value>(&page.body).is_err());

    let (status, idle) = json(&hub, "/api/filtering/stats");
    assert_eq!(status, 200);
    assert_eq!(idle["enabled"], true);
    assert_eq!(idle["cacheHitRate"], 0.0, "0 before any lookup: {idle}");
    assert_eq!(idle["llmCacheHitRate"], 0.0, "{idle}");
    assert_eq!(idle["totalTools"], 0, "no tool checked yet: {idle}");
    assert!(idle["filterRate"].is_number(), "{idle}");
    // Reading the statistics is not traffic.
    let (_, again) = json(&hub, "/api/filtering/stats");
    assert_eq!(again["totalTools"], 0, "{again}");

    for _ in 0..4 {
        assert_eq!(http_get(hub.addr, "/api/tools?q=x").unwrap().status, 200);
    }
    let (_, busy) = json(&hub, "/api/filtering/stats");
    assert_eq!(busy["totalTools"], 4, "{busy}");
    for key in ["cacheHitRate", "llmCacheHitRate", "filterRate"] {
        let v = busy[key].as_f64().unwrap();
        assert!((0.0..=1.0).contains(&v), "{key} is a fraction: {busy}");
    }
    assert_eq!(busy["cacheHitRate"], 0.75, "one miss, three hits: {busy}");
}

/// The fault knobs work in the mcp-hub shape too, and its statistics route is never failed by
/// `--error-rate`, so a failing hub can still be measured.
#[test]
fn the_knobs_work_in_the_mcp_hub_shape() {
    let hub = DemoHub::start(&[
        "--shape",
        "mcp-hub",
        "--error-rate",
        "1",
        "--latency",
        "50ms",
        "--cache-capacity",
        "0",
    ]);
    hub.wait_ready();
    let started = Instant::now();
    assert_eq!(http_get(hub.addr, "/api/tools").unwrap().status, 500);
    assert!(started.elapsed() >= Duration::from_millis(50));
    for _ in 0..5 {
        let (status, stats) = json(&hub, "/api/filtering/stats");
        assert_eq!(status, 200, "{stats}");
    }
    assert_eq!(http_get(hub.addr, "/api/health").unwrap().status, 200);
    let hub = DemoHub::start(&["--shape", "mcp-hub", "--cache-capacity", "0"]);
    hub.wait_ready();
    for _ in 0..3 {
        http_get(hub.addr, "/api/tools?q=x").unwrap();
    }
    let (_, stats) = json(&hub, "/api/filtering/stats");
    assert_eq!(
        (stats["totalTools"].as_u64(), stats["cacheHitRate"].as_f64()),
        (Some(3), Some(0.0)),
        "{stats}"
    );
}

/// `--error-rate` fails only routes the service serves: a route it does not serve stays 404.
#[test]
fn error_rate_never_turns_an_absent_route_into_a_500() {
    let hub = DemoHub::start(&["--shape", "mcp-hub", "--error-rate", "1"]);
    hub.wait_ready();
    assert_eq!(http_get(hub.addr, "/api/tools").unwrap().status, 500);
    for _ in 0..5 {
        assert_eq!(http_get(hub.addr, "/api/stats").unwrap().status, 404);
        assert_eq!(http_get(hub.addr, "/api/nope").unwrap().status, 404);
    }
}
