//! The probes against the real demo service (`cutover-demo-hub`, built first with
//! `cargo build -p cutover-demo-hub`): "ok" is not "ready", the waits honour their thresholds,
//! and the built-in suite passes on a healthy hub and fails on a broken one.

#![allow(clippy::unwrap_used)] // helpers outside #[test] functions unwrap too

use std::time::Duration;

use cutover_tests::DemoHub;
use health_probe::{
    DEMO_SUITE, HttpTarget, PrepareOptions, Probe, ProbeConfig, ProbeError, Resolver, SecretRef,
    SuiteProbe, WaitPolicy, demo_suite, prepare_all, run_suite, wait_ready,
};

fn health(hub: &DemoHub, assertion: &str) -> ProbeConfig {
    let mut target = HttpTarget::get(format!("{}/api/health", hub.base_url()));
    target.expect_json = vec![assertion.parse().unwrap()];
    ProbeConfig::http("health", target)
}

fn fast_policy(failure_threshold: u32) -> WaitPolicy {
    WaitPolicy {
        period: Duration::from_millis(100),
        failure_threshold,
        ..WaitPolicy::default()
    }
}

#[tokio::test]
async fn a_starting_hub_is_ok_but_not_ready_until_its_start_delay_passes() {
    // 5 s of "starting": the checks below must all run inside that window, even on a loaded
    // machine.
    let hub = DemoHub::start(&["--start-delay", "5s"]);
    let options = PrepareOptions::default();
    let status_ok = health(&hub, r#"/status == "ok""#)
        .prepare(&options)
        .await
        .unwrap();
    let ready = health(&hub, r#"/state == "ready""#)
        .prepare(&options)
        .await
        .unwrap();

    let listening = status_ok.check().await;
    assert!(
        listening.is_ok(),
        "the listener answers status ok while starting: {listening:?}"
    );
    let not_ready = ready.check().await;
    assert_eq!(
        not_ready.reason,
        r#"/state expected "ready", got "starting""#
    );

    // The built-in suite fails while starting: the stats route answers 404.
    let suite = prepare_all(&demo_suite(&hub.base_url(), None), &options)
        .await
        .unwrap();
    let early = run_suite(&suite).await;
    assert!(!early.is_ok());
    let stats = early
        .probes
        .iter()
        .find(|p| p.name == "filtering-stats")
        .unwrap();
    assert_eq!(stats.reason, "status 404 (expected 2xx)");

    // Waiting reports the attempts that saw "starting", then becomes ready.
    // Up to 300 attempts 100 ms apart (30 s and more): generous against the 5 s delay.
    let report = wait_ready(&ready, &fast_policy(300)).await.unwrap();
    assert!(report.attempts > 1, "{report:?}");
    let first = &report.history.first().unwrap().result;
    assert_eq!(first.reason, r#"/state expected "ready", got "starting""#);
    assert!(report.history.last().unwrap().result.is_ok());

    let late = run_suite(&suite).await;
    assert!(late.is_ok(), "{late:?}");
}

#[tokio::test]
async fn a_hub_that_never_gets_ready_makes_the_wait_give_up_with_its_history() {
    let hub = DemoHub::start(&["--health-state", "starting"]);
    let probe = health(&hub, r#"/state == "ready""#)
        .prepare(&PrepareOptions::default())
        .await
        .unwrap();
    let err = wait_ready(&probe, &fast_policy(4)).await.unwrap_err();
    let ProbeError::NotReady {
        attempts, history, ..
    } = &err
    else {
        panic!("{err}")
    };
    assert_eq!(*attempts, 4);
    assert_eq!(history.len(), 4);
    assert!(
        history
            .iter()
            .all(|a| a.result.reason == r#"/state expected "ready", got "starting""#)
    );
    assert!(
        err.to_string()
            .contains(r#"#4 fail: /state expected "ready", got "starting""#),
        "{err}"
    );
}

#[tokio::test]
async fn the_demo_suite_passes_on_a_healthy_hub_and_fails_on_500s() {
    let healthy = DemoHub::start(&[]);
    healthy.wait_ready();
    let probes = prepare_all(
        &demo_suite(&healthy.base_url(), None),
        &PrepareOptions::default(),
    )
    .await
    .unwrap();
    let report = run_suite(&probes).await;
    assert!(report.is_ok(), "{report:?}");
    assert_eq!(report.probes.len(), 4);

    let broken = DemoHub::start(&["--error-rate", "1"]);
    broken.wait_ready();
    let probes = prepare_all(
        &demo_suite(&broken.base_url(), None),
        &PrepareOptions::default(),
    )
    .await
    .unwrap();
    let report = run_suite(&probes).await;
    assert!(!report.is_ok());
    let failed: Vec<_> = report
        .probes
        .iter()
        .filter(|p| !p.is_ok())
        .map(|p| (p.name.as_str(), p.reason.as_str()))
        .collect();
    assert_eq!(
        failed,
        [
            ("filtering-stats", "status 500 (expected 2xx)"),
            ("tools", "status 500 (expected 2xx)"),
            ("servers", "status 500 (expected 2xx)")
        ]
    );
}

#[tokio::test]
async fn the_demo_suite_authenticates_with_a_secret_reference() {
    let hub = DemoHub::start(&["--token", "hub-s3cret"]);
    hub.wait_ready();
    let token = SecretRef::parse("env:PROBE_DEMO_TOKEN").unwrap();
    let with = PrepareOptions {
        resolver: Resolver::new().with_env("PROBE_DEMO_TOKEN", "hub-s3cret"),
        ..Default::default()
    };
    let suite = SuiteProbe::new(
        DEMO_SUITE,
        prepare_all(&demo_suite(&hub.base_url(), Some(token)), &with)
            .await
            .unwrap(),
    );
    let result = suite.check().await;
    assert!(result.is_ok(), "{result:?}");
    assert!(
        !serde_json::to_string(&suite.last_report())
            .unwrap()
            .contains("hub-s3cret")
    );

    let anonymous = SuiteProbe::new(
        DEMO_SUITE,
        prepare_all(
            &demo_suite(&hub.base_url(), None),
            &PrepareOptions::default(),
        )
        .await
        .unwrap(),
    );
    let result = anonymous.check().await;
    assert!(
        result
            .reason
            .starts_with("3 of 4 failed: filtering-stats: status 401"),
        "{}",
        result.reason
    );
}
