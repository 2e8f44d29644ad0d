//! Every verdict the judge can give, on deterministic data, with the reasons a person reads.

#![allow(clippy::unwrap_used)] // test helpers outside #[test] functions

use std::time::Duration;

use canary_judge::{InconclusivePolicy, Judge, JudgeConfig, JudgeError, Slot, Verdict};

/// `requests` latencies spread evenly over 10..110 ms, times `scale`.
fn latencies(requests: u64, scale: f64) -> Vec<f64> {
    (0..requests)
        .map(|i| scale * (10.0 + (i * 37 % 100) as f64))
        .collect()
}

/// Feeds both slots `requests` requests with the given failures and latency scales.
fn feed(judge: &mut Judge, requests: u64, failures: (u64, u64), scale: (f64, f64)) {
    judge
        .observe_requests(Slot::Canary, requests, failures.0)
        .unwrap();
    judge
        .observe_requests(Slot::Baseline, requests, failures.1)
        .unwrap();
    judge
        .observe_latencies(Slot::Canary, &latencies(requests, scale.0))
        .unwrap();
    judge
        .observe_latencies(Slot::Baseline, &latencies(requests, scale.1))
        .unwrap();
}

const SOON: Duration = Duration::from_secs(10);

#[test]
fn little_data_continues_and_says_what_is_missing() {
    let mut judge = Judge::new(JudgeConfig::default()).unwrap();
    feed(&mut judge, 40, (0, 0), (1.0, 1.0));
    let decision = judge.decide(SOON);
    assert_eq!(decision.verdict, Verdict::Continue);
    assert!(
        decision
            .reason
            .starts_with("not enough evidence yet: the canary served 40 of the 100 requests"),
        "{}",
        decision.reason
    );
    assert_eq!(judge.verdict(SOON), Verdict::Continue);
}

/// Below `min_requests` even overwhelming evidence waits; at it the judge rolls back.
#[test]
fn min_requests_gates_every_decision() {
    let config = JudgeConfig {
        min_requests: 100,
        ..JudgeConfig::default()
    };
    let mut judge = Judge::new(config).unwrap();
    feed(&mut judge, 99, (60, 0), (1.0, 1.0));
    let decision = judge.decide(SOON);
    assert!(decision.evidence.failures.worse, "the evidence is there");
    assert_eq!(decision.verdict, Verdict::Continue);
    feed(&mut judge, 1, (1, 0), (1.0, 1.0));
    assert_eq!(judge.decide(SOON).verdict, Verdict::Rollback);
}

#[test]
fn a_failing_canary_is_rolled_back_with_the_numbers() {
    let mut judge = Judge::new(JudgeConfig::default()).unwrap();
    feed(&mut judge, 2000, (100, 10), (1.0, 1.0));
    let decision = judge.decide(SOON);
    assert_eq!(decision.verdict, Verdict::Rollback);
    assert!(decision.evidence.failures.worse);
    assert!(!decision.evidence.latency.worse);
    let reason = &decision.reason;
    assert!(
        reason.starts_with(
            "rollback in step 1: the canary's failure rate is more than 0.50 pp above the \
             baseline's: 5.00 % (100 of 2000) against 0.50 % (10 of 2000), e-value "
        ),
        "{reason}"
    );
    assert!(reason.ends_with("≥ 40.0"), "{reason}");
}

#[test]
fn a_slow_canary_is_rolled_back_with_the_numbers() {
    let mut judge = Judge::new(JudgeConfig::default()).unwrap();
    feed(&mut judge, 3000, (10, 10), (1.5, 1.0));
    let decision = judge.decide(SOON);
    assert_eq!(decision.verdict, Verdict::Rollback, "{}", decision.reason);
    let latency = &decision.evidence.latency;
    assert!(latency.worse && !decision.evidence.failures.worse);
    assert!(latency.ratio_lower > 1.1);
    let baseline_p95 = latency.baseline_ms.unwrap();
    assert!((baseline_p95 - 104.0).abs() < 1.0, "{baseline_p95}");
    assert!(
        decision
            .reason
            .contains("the canary's p95 latency is more than 10 % above the baseline's"),
        "{}",
        decision.reason
    );
}

/// A canary like the baseline is promoted; the next step gathers its own evidence while the
/// rollback evidence carries on.
#[test]
fn a_healthy_canary_is_promoted_step_by_step() {
    let mut judge = Judge::new(JudgeConfig::default()).unwrap();
    feed(&mut judge, 30_000, (300, 300), (1.0, 1.0));
    let decision = judge.decide(SOON);
    assert_eq!(
        decision.verdict,
        Verdict::PromoteStep,
        "{}",
        decision.reason
    );
    assert!(
        decision
            .reason
            .starts_with("the canary is not worse than the baseline within the tolerances"),
        "{}",
        decision.reason
    );
    judge.next_step();
    assert_eq!(judge.step(), 2);
    let decision = judge.decide(SOON);
    assert_eq!(decision.verdict, Verdict::Continue);
    assert_eq!(decision.evidence.failures.step_canary.requests, 0);
    assert_eq!(decision.evidence.failures.canary.requests, 30_000);
    assert_eq!(decision.evidence.latency.canary_samples, 30_000);
    assert_eq!(decision.evidence.latency.step_canary_samples, 0);
}

/// A bound on the difference of failure rates brackets the observed difference.
#[test]
fn difference_bounds_bracket_the_observed_difference() {
    let mut judge = Judge::new(JudgeConfig::default()).unwrap();
    feed(&mut judge, 10_000, (300, 100), (1.0, 1.0));
    let bounds = judge.failure_rate_difference_bounds();
    assert!(bounds.lower < 0.02 && 0.02 < bounds.upper, "{bounds:?}");
    assert!(
        bounds.lower > 0.005,
        "the canary is known to be worse: {bounds:?}"
    );
    assert!(bounds.upper < 0.04, "{bounds:?}");
}

#[test]
fn a_step_without_evidence_is_inconclusive_after_max_step_time() {
    let config = JudgeConfig {
        max_step_time: Duration::from_secs(600),
        ..JudgeConfig::default()
    };
    let mut judge = Judge::new(config).unwrap();
    feed(&mut judge, 500, (5, 5), (1.0, 1.0));
    assert_eq!(
        judge.decide(Duration::from_secs(599)).verdict,
        Verdict::Continue
    );
    let decision = judge.decide(Duration::from_secs(600));
    assert_eq!(decision.verdict, Verdict::Inconclusive);
    assert!(
        decision
            .reason
            .starts_with("no decision after 10m in step 1 (max_step_time): failure rate 1.00 %"),
        "{}",
        decision.reason
    );

    let rolled_back = decision.clone().resolve(InconclusivePolicy::Rollback);
    assert_eq!(rolled_back.verdict, Verdict::Rollback);
    assert!(
        rolled_back
            .reason
            .ends_with("; the inconclusive policy rolls back")
    );
    let promoted = decision.resolve(InconclusivePolicy::Promote);
    assert_eq!(promoted.verdict, Verdict::PromoteStep);
    assert!(
        promoted
            .reason
            .ends_with("; the inconclusive policy promotes the step")
    );
    // Other verdicts pass through the policy unchanged.
    let decision = judge.decide(SOON);
    assert_eq!(
        decision.clone().resolve(InconclusivePolicy::Rollback),
        decision
    );
}

#[test]
fn bad_config_and_bad_observations_are_refused() {
    let config = JudgeConfig {
        latency_quantile: 1.5,
        ..JudgeConfig::default()
    };
    let error = Judge::new(config).unwrap_err();
    assert_eq!(
        error.to_string(),
        "invalid canary setting `latency_quantile` = 1.5: a quantile strictly between 0 and 1, \
         such as 0.95"
    );

    let mut judge = Judge::new(JudgeConfig::default()).unwrap();
    let error = judge.observe_requests(Slot::Canary, 3, 4).unwrap_err();
    assert_eq!(
        error.to_string(),
        "canary reported 4 failures in 3 requests"
    );
    let error = judge
        .observe_latencies(Slot::Baseline, &[1.0, f64::NAN])
        .unwrap_err();
    assert!(matches!(
        error,
        JudgeError::InvalidLatency {
            slot: Slot::Baseline,
            ..
        }
    ));
    assert_eq!(
        judge
            .observe_latency(Slot::Canary, -1.0)
            .unwrap_err()
            .to_string(),
        "canary reported a latency of -1 ms, which is not a finite non-negative number"
    );
    // Nothing of a refused batch was recorded.
    assert_eq!(judge.decide(SOON).evidence.latency.baseline_samples, 0);
}

/// The decision serialises for the audit log, with infinite bounds as nulls.
#[test]
fn decisions_serialise_for_the_audit_log() {
    let judge = Judge::new(JudgeConfig::default()).unwrap();
    let json = serde_json::to_value(judge.decide(SOON)).unwrap();
    assert_eq!(json["verdict"], "continue");
    assert_eq!(json["evidence"]["step_elapsed"], "10s");
    assert!(json["evidence"]["latency"]["baseline_upper_ms"].is_null());
    assert_eq!(json["evidence"]["failures"]["log_e_worse"], 0.0);
}
