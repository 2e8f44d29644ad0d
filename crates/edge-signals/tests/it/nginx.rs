//! The edge reader against a real nginx rendered by edge-proxy, in front of a test upstream
//! whose every answer (status, delay) is planned: the signals must match the truth, a
//! rotation in the middle of the traffic must lose and double no request, and promtool must
//! accept the Prometheus text.

#![allow(clippy::print_stdout, clippy::print_stderr)] // What a test measured or why it waits: shown by nextest.
use crate::common;

use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use common::{Running, config, nearest_rank, promtool, start_upstream};
use cutover_tests::{http_get, wait_until};
use edge_proxy::{Nginx, RotateWhen, rotate_access_logs};
use edge_signals::{EdgeReader, NO_UPSTREAM, SignalOptions, SlotMap, StartAt, render_prometheus};

/// Polls `reader` until it has read `want` lines (or the deadline passes); returns the count.
fn read_until(reader: &mut EdgeReader, counted: &mut u64, want: u64) -> u64 {
    wait_until(Duration::from_secs(30), || {
        *counted += reader.poll().expect("the edge log reads").follow.lines;
        *counted >= want
    });
    *counted
}

/// `count` requests spread over `threads` client threads, each on a fresh connection; returns
/// (target, status, client-measured milliseconds) for each.
fn drive(http: SocketAddr, targets: Vec<String>, threads: usize) -> Vec<(String, u16, f64)> {
    let chunks: Vec<Vec<String>> = (0..threads)
        .map(|t| targets.iter().skip(t).step_by(threads).cloned().collect())
        .collect();
    let handles: Vec<_> = chunks
        .into_iter()
        .map(|chunk| {
            std::thread::spawn(move || {
                chunk
                    .into_iter()
                    .map(|target| {
                        let started = Instant::now();
                        let response = http_get(http, &target)
                            .unwrap_or_else(|e| panic!("GET {target} through nginx: {e}"));
                        let ms = started.elapsed().as_secs_f64() * 1000.0;
                        (target, response.status, ms)
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    handles
        .into_iter()
        .flat_map(|h| h.join().expect("a client thread"))
        .collect()
}

#[tokio::test]
async fn success_rate_and_p95_at_the_edge_match_the_truth() {
    let upstream = start_upstream();
    let proxy = Running::start(config(), upstream).await;
    let http = proxy.http();

    // 400 planned requests to /api/: one in ten 503, one in 25 a 500, delays spread 5-104 ms.
    let planned: Vec<(u16, u64)> = (0..400u64)
        .map(|i| {
            let status = if i % 10 == 0 {
                503
            } else if i % 25 == 1 {
                500
            } else {
                200
            };
            (status, 5 + (i * 37) % 100)
        })
        .collect();
    let targets: Vec<String> = planned
        .iter()
        .map(|(s, d)| format!("/api/work?status={s}&delay={d}"))
        .collect();
    let results = drive(http, targets, 8);
    for (target, status, _) in &results {
        let (want, _) = common::plan_of(target);
        assert_eq!(*status, want, "{target} answered as planned");
    }
    // Twenty quick requests to a location limited to 1 r/s with no burst: mostly 429s.
    let limited: Vec<u16> = (0..20)
        .map(|_| http_get(http, "/limited/x").expect("GET /limited/x").status)
        .collect();
    let limited_429 = limited.iter().filter(|&&s| s == 429).count() as u64;
    assert!(
        limited_429 >= 15,
        "the rate limit answered 429: {limited:?}"
    );
    // A client that goes away before its slow answer: nginx logs 499.
    {
        let mut stream = TcpStream::connect(http).expect("connect");
        stream
            .write_all(b"GET /slow?delay=3000 HTTP/1.1\r\nHost: x\r\n\r\n")
            .expect("send");
        std::thread::sleep(Duration::from_millis(300));
    }

    let mut slots = SlotMap::new();
    slots.insert(upstream.to_string(), "blue", Some("r1".to_owned()));
    let mut reader = EdgeReader::new(
        proxy.layout().edge_log(),
        StartAt::Beginning,
        SignalOptions {
            window: Duration::from_secs(600),
            slots,
            ..SignalOptions::default()
        },
    );
    let mut counted = 0;
    let total = read_until(&mut reader, &mut counted, 421);
    assert_eq!(total, 421, "every request is one line");
    assert_eq!(reader.malformed(), 0);
    let window = reader.signals().window(jiff::Timestamp::now());

    let api = &window.locations["/api/"];
    let truth_failures = planned.iter().filter(|(s, _)| *s >= 500).count() as f64;
    let truth_success = 1.0 - truth_failures / planned.len() as f64;
    let edge_success = api.success_rate.expect("traffic in the window");
    assert!(
        (edge_success - truth_success).abs() <= 0.01,
        "success rate at the edge {edge_success} vs truth {truth_success}"
    );
    let mut client_ms: Vec<f64> = results.iter().map(|(_, _, ms)| *ms).collect();
    let truth_p95 = nearest_rank(&mut client_ms, 0.95);
    let edge_p95 = api.p95_ms.expect("traffic in the window");
    assert!(
        (edge_p95 - truth_p95).abs() / truth_p95 <= 0.05,
        "p95 at the edge {edge_p95} ms vs the client's {truth_p95} ms"
    );
    eprintln!(
        "accuracy: success rate edge {:.4} truth {truth_success:.4}; p95 edge {edge_p95} ms client {truth_p95:.1} ms",
        edge_success
    );

    let limited_signals = &window.locations["/limited/"];
    assert_eq!(limited_signals.status_429, limited_429);
    assert_eq!(
        limited_signals.success_rate,
        (limited_429 < 20).then_some(1.0),
        "429s are counted apart, not as failures"
    );
    assert_eq!(
        window.locations["/"].status_499, 1,
        "the client that went away"
    );
    assert_eq!(window.slots["blue"].release.as_deref(), Some("r1"));
    assert_eq!(
        window.slots["blue"].signals.requests,
        400 + 20 - limited_429 + 1
    );
    assert_eq!(window.slots[NO_UPSTREAM].signals.status_429, limited_429);

    // promtool accepts the Prometheus text.
    let text = render_prometheus(reader.signals());
    assert!(text.contains("cutover_edge_requests_total{location=\"/api/\",slot=\"blue\",release=\"r1\",status=\"503\"} 40"), "{text}");
    let mut check = std::process::Command::new(promtool())
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("promtool runs");
    check
        .stdin
        .take()
        .expect("stdin")
        .write_all(text.as_bytes())
        .expect("write to promtool");
    let out = check.wait_with_output().expect("promtool finishes");
    assert!(
        out.status.success(),
        "promtool check metrics: {}{}\n{text}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test]
async fn a_rotation_in_the_middle_of_the_traffic_loses_and_doubles_no_request() {
    let upstream = start_upstream();
    let proxy = Running::start(config(), upstream).await;
    let http = proxy.http();
    let layout = proxy.layout().clone();
    let nginx = Nginx::locate().expect("nginx");
    let mut reader = EdgeReader::new(
        layout.edge_log(),
        StartAt::Beginning,
        SignalOptions::default(),
    );

    // Too small to rotate: nothing happens.
    let report = rotate_access_logs(&nginx, &layout, RotateWhen::LargerThan(1 << 30))
        .await
        .expect("a size check");
    assert!(!report.rotated);

    let targets: Vec<String> = (0..600)
        .map(|i| format!("/api/r{i}?delay={}", i % 3))
        .collect();
    let clients = std::thread::spawn(move || drive(http, targets, 4));
    let mut counted = 0;
    read_until(&mut reader, &mut counted, 150);
    assert!(
        counted < 600,
        "the rotation happens while requests flow ({counted} read)"
    );
    let report = rotate_access_logs(&nginx, &layout, RotateWhen::LargerThan(1))
        .await
        .expect("the logs rotate");
    assert!(report.rotated, "{report:?}");
    assert!(
        report
            .reopened
            .as_deref()
            .is_some_and(|r| r.starts_with("usr1")),
        "{report:?}"
    );
    let results = clients.join().expect("the clients");
    assert!(results.iter().all(|(_, s, _)| *s == 200));

    let total = read_until(&mut reader, &mut counted, 600);
    // Let anything late arrive, then check nothing was read twice.
    std::thread::sleep(Duration::from_millis(300));
    counted += reader.poll().expect("poll").follow.lines;
    assert_eq!((total, counted), (600, 600), "every request exactly once");
    let old_lines = std::fs::read_to_string(layout.rotated_edge_log())
        .expect("access.json.1")
        .lines()
        .count();
    let new_lines = std::fs::read_to_string(layout.edge_log())
        .expect("access.json")
        .lines()
        .count();
    assert!(
        old_lines > 0 && new_lines > 0,
        "lines on both sides: {old_lines} + {new_lines}"
    );
    assert_eq!(old_lines + new_lines, 600);
    let window = reader.signals().window(jiff::Timestamp::now());
    assert_eq!(window.overall.requests, 600);
    assert_eq!(window.overall.success_rate, Some(1.0));

    // A second rotation finishes the first generation and drops it; a few more requests.
    rotate_access_logs(&nginx, &layout, RotateWhen::Now)
        .await
        .expect("rotates again");
    for i in 0..10 {
        assert_eq!(
            http_get(http, &format!("/api/after{i}"))
                .expect("GET")
                .status,
            200
        );
    }
    let total = read_until(&mut reader, &mut counted, 610);
    std::thread::sleep(Duration::from_millis(300));
    counted += reader.poll().expect("poll").follow.lines;
    assert_eq!((total, counted), (610, 610));
}
