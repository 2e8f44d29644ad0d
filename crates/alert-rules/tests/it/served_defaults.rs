//! The default rules fit what the service serves: against the real demo hub in both shapes,
//! [`select_served`] keeps the rules whose routes answer and leaves out, with the reason,
//! those whose routes do not (MCP Hub serves no `/api/stats`), so nothing is unknown for ever;
//! a hit rate over no lookup is no data, so an idle hub does not warn; and the knobs whose
//! rules remain still fire them.
//!
//! The engine's clock is synthetic as in `demo_hub_defaults.rs`: two real samples, evaluated
//! six minutes apart. Needs `cargo build -p cutover-demo-hub` first.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers outside #[test] functions

use std::collections::BTreeMap;
use std::time::Duration;

use alert_rules::{
    AlertState, Engine, Selection, Severity, SignalsFrom, default_candidates, sample_all,
    select_served,
};
use cutover_tests::{DemoHub, http_get};

type States = BTreeMap<String, (AlertState, Option<Severity>)>;

fn start(args: &[&str]) -> DemoHub {
    let hub = DemoHub::start(args);
    hub.wait_ready();
    hub
}

async fn select(hub: &DemoHub) -> Selection {
    let candidates = default_candidates(&hub.base_url(), SignalsFrom::Service).unwrap();
    select_served(&candidates).await
}

/// Samples the selected rules, sends `n` requests to `/api/tools`, samples again, and
/// evaluates the two six minutes apart.
async fn evaluate(hub: &DemoHub, selection: &Selection, n: usize) -> States {
    let rules = &selection.rules;
    let mut engine = Engine::new(
        rules.iter().map(|r| r.rule.clone()).collect(),
        Default::default(),
    );
    let t0 = jiff::Timestamp::UNIX_EPOCH;
    engine.evaluate(t0, &sample_all(rules).await);
    let addr = hub.addr;
    tokio::task::spawn_blocking(move || {
        for _ in 0..n {
            drop(http_get(addr, "/api/tools?q=x"));
        }
    })
    .await
    .unwrap();
    let ev = engine.evaluate(t0 + Duration::from_secs(360), &sample_all(rules).await);
    ev.statuses
        .iter()
        .map(|s| (s.name.clone(), (s.state, s.severity)))
        .collect()
}

fn names(selection: &Selection) -> (Vec<&str>, Vec<&str>) {
    (
        selection
            .rules
            .iter()
            .map(|r| r.rule.name.as_str())
            .collect(),
        selection
            .not_served
            .iter()
            .map(|n| n.name.as_str())
            .collect(),
    )
}

fn assert_quiet(states: &States) {
    for (name, state) in states {
        // The host's own disk is not the service: it may warn on a nearly full machine.
        if name == "disk-free" && cutover_tests::host_disk_may_warn() {
            continue;
        }
        assert_eq!(*state, (AlertState::Inactive, None), "{name}: {states:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_the_demo_shape_every_default_is_served_from_api_stats() {
    let hub = start(&[]);
    let selection = select(&hub).await;
    let (kept, left_out) = names(&selection);
    assert_eq!(
        kept,
        [
            "success-rate",
            "latency-p95",
            "latency-p99",
            "cache-hit-rate",
            "queue-depth",
            "circuit-breaker",
            "memory-growth",
            "disk-free"
        ]
    );
    assert!(left_out.is_empty(), "{:?}", selection.not_served);
    let alert_rules::Source::Http(cache) = &selection.rules[3].source else {
        panic!("{:?}", selection.rules[3].source)
    };
    assert!(cache.url.ends_with("/api/stats"), "{}", cache.url);
    // Idle, then healthy traffic: quiet, nothing unknown.
    assert_quiet(&evaluate(&hub, &selection, 0).await);
    assert_quiet(&evaluate(&hub, &selection, 30).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_the_mcp_hub_shape_rules_on_absent_routes_are_left_out_and_an_idle_hub_is_quiet() {
    let hub = start(&["--shape", "mcp-hub"]);
    let selection = select(&hub).await;
    let (kept, left_out) = names(&selection);
    assert_eq!(kept, ["cache-hit-rate", "disk-free"]);
    assert_eq!(
        left_out,
        [
            "success-rate",
            "latency-p95",
            "latency-p99",
            "queue-depth",
            "circuit-breaker",
            "memory-growth"
        ]
    );
    for n in &selection.not_served {
        assert!(
            n.reason.contains("/api/stats answered 404"),
            "{}: {}",
            n.name,
            n.reason
        );
    }
    let alert_rules::Source::Http(cache) = &selection.rules[0].source else {
        panic!()
    };
    assert!(cache.url.ends_with("/api/filtering/stats"), "{}", cache.url);

    // Idle: `cacheHitRate` is 0 with no lookup; that is no data, not 0 %.
    let idle = evaluate(&hub, &selection, 0).await;
    assert_quiet(&idle);
    // Healthy traffic: one miss, then hits.
    assert_quiet(&evaluate(&hub, &selection, 30).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_the_mcp_hub_shape_a_cache_that_never_hits_trips_cache_hit_rate() {
    let hub = start(&["--shape", "mcp-hub", "--cache-capacity", "0"]);
    let selection = select(&hub).await;
    for _ in 0..10 {
        http_get(hub.addr, "/api/tools?q=x").unwrap();
    }
    let states = evaluate(&hub, &selection, 20).await;
    assert_eq!(
        states["cache-hit-rate"],
        (AlertState::Firing, Some(Severity::Critical)),
        "{states:?}"
    );
    if !cutover_tests::host_disk_may_warn() {
        assert_eq!(states["disk-free"].0, AlertState::Inactive, "{states:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_that_is_down_keeps_its_rules_which_say_so() {
    let port = cutover_tests::free_port();
    let candidates =
        default_candidates(&format!("http://127.0.0.1:{port}"), SignalsFrom::Service).unwrap();
    let selection = select_served(&candidates).await;
    assert!(
        selection.not_served.is_empty(),
        "{:?}",
        selection.not_served
    );
    assert_eq!(selection.rules.len(), 8);
    // Down is not "not served": the rules stay and are unknown (could not evaluate).
    let samples = sample_all(&selection.rules).await;
    assert!(
        matches!(samples["queue-depth"], alert_rules::Sample::Error(_)),
        "{samples:?}"
    );
}
