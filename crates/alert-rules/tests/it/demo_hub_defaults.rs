//! The default rules against the real demo service: each fires under the fault knob that
//! should trip it and stays quiet without it.
//!
//! The engine's clock is synthetic (the point of a pure engine): the hub is sampled twice for
//! real, with traffic in between, and the two samples are evaluated six minutes apart so that
//! every default `for` (at most five minutes) has passed. Needs `cargo build -p
//! cutover-demo-hub` first; a missing binary fails loudly.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers outside #[test] functions

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use alert_rules::{AlertState, Engine, Severity, default_rules, sample_all};
use cutover_tests::{DemoHub, http_get};

/// `n` GET requests to `/api/tools` from `parallel` threads (the same query, so the cache hits).
fn traffic(hub: &DemoHub, n: usize, parallel: usize) {
    let addr = hub.addr;
    let per = n.div_ceil(parallel);
    let threads: Vec<_> = (0..parallel)
        .map(|_| {
            std::thread::spawn(move || {
                (0..per).for_each(|_| drop(http_get(addr, "/api/tools?q=x")))
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
}

type States = BTreeMap<String, (AlertState, Option<Severity>)>;

/// Samples the hub, runs `between`, samples again, and evaluates the two samples six minutes
/// apart on a synthetic clock.
async fn evaluate(hub: &DemoHub, between: impl FnOnce() + Send + 'static) -> States {
    let rules = default_rules(&hub.base_url()).unwrap();
    let mut engine = Engine::new(
        rules.iter().map(|r| r.rule.clone()).collect(),
        Default::default(),
    );
    let t0 = jiff::Timestamp::UNIX_EPOCH;
    let first = sample_all(&rules).await;
    engine.evaluate(t0, &first);
    tokio::task::spawn_blocking(between).await.unwrap();
    let second = sample_all(&rules).await;
    let ev = engine.evaluate(t0 + Duration::from_secs(360), &second);
    ev.statuses
        .iter()
        .map(|s| (s.name.clone(), (s.state, s.severity)))
        .collect()
}

fn start(args: &[&str]) -> Arc<DemoHub> {
    let hub = DemoHub::start(args);
    hub.wait_ready();
    Arc::new(hub)
}

/// Asserts `firing` fire with their severities and every other rule is inactive.
fn assert_only(states: &States, firing: &[(&str, Severity)]) {
    for (name, (state, severity)) in states {
        match firing.iter().find(|(n, _)| n == name) {
            Some((_, want)) => assert_eq!(
                (*state, *severity),
                (AlertState::Firing, Some(*want)),
                "{name}: {states:?}"
            ),
            // The host's own disk is not the service: it may warn on a nearly full machine.
            None if name == "disk-free" && cutover_tests::host_disk_may_warn() => {}
            None => assert_eq!(
                *state,
                AlertState::Inactive,
                "{name} should be quiet: {states:?}"
            ),
        }
    }
}

/// `disk-free` read the host's real `/`: quiet with room to spare, firing when nearly full.
fn assert_disk_free_follows_the_host(states: &States) {
    let state = states["disk-free"].0;
    if !cutover_tests::host_disk_may_warn() {
        assert_eq!(state, AlertState::Inactive, "disk-free: {states:?}");
    } else if cutover_tests::host_disk_free_percent() < 9.5 {
        assert_eq!(state, AlertState::Firing, "disk-free: {states:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disk_free_is_quiet_with_room_and_fires_when_nearly_full() {
    let rules = default_rules("http://127.0.0.1:1").unwrap();
    let disk = rules.iter().find(|r| r.rule.name == "disk-free").unwrap();
    // The real host, through the real source: what statvfs says decides.
    let mut engine = Engine::new(vec![disk.rule.clone()], Default::default());
    let t0 = jiff::Timestamp::UNIX_EPOCH;
    let sample = sample_all(std::slice::from_ref(disk)).await;
    assert!(
        matches!(sample["disk-free"], alert_rules::Sample::Value(_)),
        "{sample:?}"
    );
    engine.evaluate(t0, &sample);
    let ev = engine.evaluate(t0 + Duration::from_secs(360), &sample);
    let states: States = ev
        .statuses
        .iter()
        .map(|s| (s.name.clone(), (s.state, s.severity)))
        .collect();
    assert_disk_free_follows_the_host(&states);

    // The thresholds, on free-space figures either side of them.
    for (free, want) in [
        (50.0, (AlertState::Inactive, None)),
        (10.5, (AlertState::Inactive, None)),
        (7.0, (AlertState::Firing, Some(Severity::Warning))),
        (3.0, (AlertState::Firing, Some(Severity::Critical))),
    ] {
        let mut engine = Engine::new(vec![disk.rule.clone()], Default::default());
        let sample: BTreeMap<String, alert_rules::Sample> =
            [("disk-free".to_owned(), alert_rules::Sample::number(free))].into();
        engine.evaluate(t0, &sample);
        let ev = engine.evaluate(t0 + Duration::from_secs(360), &sample);
        let got = (ev.statuses[0].state, ev.statuses[0].severity);
        assert_eq!(got, want, "{free} % free");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn all_quiet_on_a_healthy_hub() {
    let hub = start(&[]);
    traffic(&hub, 40, 4);
    let h = hub.clone();
    let states = evaluate(&hub, move || traffic(&h, 100, 4)).await;
    assert_only(&states, &[]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn latency_knob_trips_p95_and_p99() {
    let hub = start(&["--latency", "3200ms"]);
    traffic(&hub, 20, 20);
    let h = hub.clone();
    let states = evaluate(&hub, move || traffic(&h, 20, 20)).await;
    assert_only(
        &states,
        &[
            ("latency-p95", Severity::Warning),
            ("latency-p99", Severity::Warning),
        ],
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn error_rate_knob_trips_success_rate() {
    let hub = start(&["--error-rate", "0.5"]);
    traffic(&hub, 60, 4);
    let h = hub.clone();
    let states = evaluate(&hub, move || traffic(&h, 60, 4)).await;
    assert_eq!(
        states["success-rate"],
        (AlertState::Firing, Some(Severity::Critical)),
        "{states:?}"
    );
    // Half the answers failing also trips the breaker at random; the rest must stay quiet.
    for name in ["latency-p95", "latency-p99", "queue-depth", "memory-growth"] {
        assert_eq!(states[name].0, AlertState::Inactive, "{name}: {states:?}");
    }
    assert_disk_free_follows_the_host(&states);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_every_request_opens_the_circuit_breaker() {
    let hub = start(&["--error-rate", "1"]);
    traffic(&hub, 10, 1);
    let h = hub.clone();
    let states = evaluate(&hub, move || traffic(&h, 10, 1)).await;
    assert_eq!(
        states["circuit-breaker"],
        (AlertState::Firing, Some(Severity::Critical)),
        "{states:?}"
    );
    assert_eq!(
        states["success-rate"],
        (AlertState::Firing, Some(Severity::Critical)),
        "{states:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leak_knob_trips_memory_growth() {
    let hub = start(&["--leak-per-request", "1MiB"]);
    traffic(&hub, 10, 2);
    let h = hub.clone();
    let states = evaluate(&hub, move || traffic(&h, 100, 4)).await;
    assert_only(&states, &[("memory-growth", Severity::Warning)]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cache_that_never_hits_trips_cache_hit_rate() {
    let hub = start(&["--cache-capacity", "0"]);
    traffic(&hub, 20, 2);
    let h = hub.clone();
    let states = evaluate(&hub, move || traffic(&h, 20, 2)).await;
    assert_only(&states, &[("cache-hit-rate", Severity::Critical)]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_piling_up_trip_queue_depth() {
    let hub = start(&["--latency", "1500ms"]);
    traffic(&hub, 10, 10);
    // Keep about 25 slow requests in flight while the hub is sampled. The threads start
    // staggered so that they do not all finish (and dip the count) at the same instant.
    let stop = Arc::new(AtomicBool::new(false));
    let addr = hub.addr;
    let deadline = Instant::now() + Duration::from_secs(60);
    let load: Vec<_> = (0..25u64)
        .map(|i| {
            let stop = stop.clone();
            std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(60 * i));
                while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
                    drop(http_get(addr, "/api/tools?q=x"));
                }
            })
        })
        .collect();
    let piled_up = cutover_tests::wait_until(Duration::from_secs(20), || {
        http_get(addr, "/api/stats")
            .ok()
            .and_then(|r| serde_json::from_str::<serde_json::Value>(&r.body).ok())
            .and_then(|v| v["queue_depth"].as_u64())
            .is_some_and(|depth| depth > 10)
    });
    assert!(
        piled_up,
        "the load never kept more than ten requests in flight"
    );
    let states = evaluate(&hub, || std::thread::sleep(Duration::from_millis(500))).await;
    stop.store(true, Ordering::Relaxed);
    for t in load {
        t.join().unwrap();
    }
    assert_eq!(
        states["queue-depth"],
        (AlertState::Firing, Some(Severity::Warning)),
        "{states:?}"
    );
}
