//! Simulated canaries with a seeded random source: the judge's false-rollback rate under
//! continuous checking against a fixed-sample test checked just as often, and the requests it
//! needs to catch a regression or to promote a healthy release, against the sample size a
//! fixed-sample test of the same power would need.
//!
//! Both slots get half the traffic, requests alternate between them, failures are Bernoulli and
//! latencies lognormal (median 50 ms, log-sd 0.5). The judge is checked with
//! [`Judge::verdict`], which is [`Judge::decide`] without formatting the reason. Figures are
//! printed to stderr; run with `cargo nextest run -p canary-judge --no-capture` to see them.

#![allow(clippy::print_stdout, clippy::print_stderr)] // What a test measured or why it waits: shown by nextest.
use std::time::Duration;

use canary_judge::{Judge, JudgeConfig, Slot, Verdict};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// One-sided 95 % and 80 % normal quantiles.
const Z_ALPHA: f64 = 1.644_853_626_951_472_2;
const Z_POWER: f64 = 0.841_621_233_572_914_3;
const MEDIAN_MS: f64 = 50.0;
const LOG_SD: f64 = 0.5;

/// A simulated release.
#[derive(Clone, Copy)]
struct Release {
    failure_rate: f64,
    latency_scale: f64,
}

const HEALTHY: Release = Release {
    failure_rate: 0.01,
    latency_scale: 1.0,
};

fn latency(rng: &mut StdRng, scale: f64) -> f64 {
    // Box-Muller; 1 - u keeps the logarithm finite.
    let u: f64 = 1.0 - rng.random::<f64>();
    let v: f64 = rng.random();
    let z = (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos();
    scale * MEDIAN_MS * (LOG_SD * z).exp()
}

/// Serves one request of `slot` from `release`; returns whether it failed.
fn serve(judge: &mut Judge, rng: &mut StdRng, slot: Slot, release: Release) -> bool {
    let failed = rng.random_bool(release.failure_rate);
    judge
        .observe_requests(slot, 1, u64::from(failed))
        .expect("valid counts");
    judge
        .observe_latency(slot, latency(rng, release.latency_scale))
        .expect("valid latency");
    failed
}

/// The one-sided two-proportion z-test at 95 % that a fixed-sample canary analysis would run:
/// "the canary fails more often than the baseline by more than `margin`", unpooled variance.
fn z_test_alarms(canary: (u64, u64), baseline: (u64, u64), margin: f64) -> bool {
    let (nc, fc) = (canary.0 as f64, canary.1 as f64);
    let (nb, fb) = (baseline.0 as f64, baseline.1 as f64);
    if nc == 0.0 || nb == 0.0 {
        return false;
    }
    let (pc, pb) = (fc / nc, fb / nb);
    let se = (pc * (1.0 - pc) / nc + pb * (1.0 - pb) / nb).sqrt();
    se > 0.0 && (pc - pb - margin) / se > Z_ALPHA
}

fn median(mut values: Vec<u64>) -> u64 {
    values.sort_unstable();
    // 0 for no runs at all, so that the message that follows says how many there were.
    values.get(values.len() / 2).copied().unwrap_or(0)
}

/// Runs a canary until the judge says `wanted` (stepping on when it promotes, if rollback is
/// wanted) or `cap` requests per slot; returns the canary requests at that point, or `None`.
fn requests_until(
    seed: u64,
    canary: Release,
    baseline: Release,
    wanted: Verdict,
    cap: u64,
) -> Option<u64> {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut judge = Judge::new(JudgeConfig::default()).expect("default config");
    for served in 1..=cap {
        serve(&mut judge, &mut rng, Slot::Baseline, baseline);
        serve(&mut judge, &mut rng, Slot::Canary, canary);
        match judge.verdict(Duration::ZERO) {
            verdict if verdict == wanted => return Some(served),
            Verdict::PromoteStep => judge.next_step(),
            Verdict::Rollback => return None,
            _ => {}
        }
    }
    None
}

/// The sample size per slot of a one-sided two-proportion test at alpha 0.05 with power 0.8
/// against "the canary exceeds the baseline by more than `margin`".
fn fixed_sample_failures(canary: f64, baseline: f64, margin: f64) -> f64 {
    let variance = canary * (1.0 - canary) + baseline * (1.0 - baseline);
    (Z_ALPHA + Z_POWER).powi(2) * variance / (canary - baseline - margin).powi(2)
}

/// The sample size per slot of a one-sided test of the log p95 at alpha 0.05 with power 0.8
/// (the sample quantile's asymptotic variance `q(1 − q) / (n f(Q)²)`, which for lognormal data
/// is `σ² q(1 − q) / (n φ(z_q)²)` on the log scale) against a relative tolerance.
fn fixed_sample_quantile(ratio: f64, tolerance: f64) -> f64 {
    let q: f64 = 0.95;
    let z_q = 1.644_853_626_951_472_2;
    let density = (-z_q * z_q / 2.0f64).exp() / std::f64::consts::TAU.sqrt();
    let variance = LOG_SD * LOG_SD * q * (1.0 - q) / (density * density);
    let effect = ratio.ln() - (1.0 + tolerance).ln();
    (Z_ALPHA + Z_POWER).powi(2) * 2.0 * variance / (effect * effect)
}

/// Identical releases, the judge asked after every request: it rolls back at most `alpha` of
/// the runs (within sampling error), while a fixed-sample z-test asked as often raises a false
/// alarm in far more.
#[test]
fn identical_releases_are_rarely_rolled_back_while_a_repeated_z_test_cries_wolf() {
    const RUNS: u64 = 1000;
    const HORIZON: u64 = 2500;
    let alpha = JudgeConfig::default().alpha;
    let tolerance = JudgeConfig::default().failure_rate_tolerance;
    let (mut judge_alarms, mut z_alarms, mut z_alarms_with_margin) = (0, 0, 0);
    // The same z-test looked at only every 100 requests per slot (25 looks, as a pipeline that
    // checks once per interval would), for comparison.
    let mut z_interval_alarms = 0;
    for seed in 0..RUNS {
        let mut rng = StdRng::seed_from_u64(seed);
        let mut judge = Judge::new(JudgeConfig::default()).expect("default config");
        let (mut canary, mut baseline) = ((0, 0), (0, 0));
        let (mut judge_alarm, mut z_alarm, mut z_margin_alarm) = (false, false, false);
        let mut z_interval_alarm = false;
        'run: for served in 1..=HORIZON {
            for slot in [Slot::Baseline, Slot::Canary] {
                let failed = u64::from(serve(&mut judge, &mut rng, slot, HEALTHY));
                let counts = if slot == Slot::Canary {
                    &mut canary
                } else {
                    &mut baseline
                };
                counts.0 += 1;
                counts.1 += failed;
                if !judge_alarm {
                    match judge.verdict(Duration::ZERO) {
                        Verdict::Rollback => judge_alarm = true,
                        Verdict::PromoteStep => judge.next_step(),
                        _ => {}
                    }
                }
                let alarm = z_test_alarms(canary, baseline, 0.0);
                z_alarm |= alarm;
                z_interval_alarm |= alarm && slot == Slot::Canary && served % 100 == 0;
                z_margin_alarm |= z_test_alarms(canary, baseline, tolerance);
                if judge_alarm && z_alarm && z_margin_alarm && z_interval_alarm {
                    break 'run;
                }
            }
        }
        judge_alarms += u32::from(judge_alarm);
        z_alarms += u32::from(z_alarm);
        z_alarms_with_margin += u32::from(z_margin_alarm);
        z_interval_alarms += u32::from(z_interval_alarm);
    }
    let rate = |alarms: u32| f64::from(alarms) / RUNS as f64;
    let allowance = alpha + 3.0 * (alpha * (1.0 - alpha) / RUNS as f64).sqrt();
    eprintln!(
        "A/A, {RUNS} runs of {HORIZON} requests per slot, checked after every request: judge \
         rolled back {:.1} %; a 95 % z-test raised a false alarm in {:.1} % (in {:.1} % when it \
         tests the same tolerance); checked every 100 requests per slot (25 looks) the z-test \
         alarmed in {:.1} %",
        100.0 * rate(judge_alarms),
        100.0 * rate(z_alarms),
        100.0 * rate(z_alarms_with_margin),
        100.0 * rate(z_interval_alarms),
    );
    assert!(
        rate(z_interval_alarms) > allowance,
        "the z-test checked at every interval was expected to exceed alpha: {}",
        rate(z_interval_alarms)
    );
    assert!(
        rate(judge_alarms) <= allowance,
        "judge: {} > {allowance}",
        rate(judge_alarms)
    );
    assert!(
        rate(z_alarms) > allowance,
        "the repeated z-test was expected to exceed alpha: {}",
        rate(z_alarms)
    );
}

/// A canary failing 2 % of requests against the baseline's 0.5 % is rolled back.
#[test]
fn a_canary_with_four_times_the_failures_is_rolled_back() {
    let canary = Release {
        failure_rate: 0.02,
        latency_scale: 1.0,
    };
    let baseline = Release {
        failure_rate: 0.005,
        latency_scale: 1.0,
    };
    let runs = 100;
    let detected: Vec<u64> = (0..runs)
        .filter_map(|seed| requests_until(seed, canary, baseline, Verdict::Rollback, 40_000))
        .collect();
    let fixed = fixed_sample_failures(0.02, 0.005, JudgeConfig::default().failure_rate_tolerance);
    let fixed_no_margin = fixed_sample_failures(0.02, 0.005, 0.0);
    eprintln!(
        "2 % vs 0.5 % failures: rolled back in {}/{runs} runs, median {} canary requests; a \
         fixed-sample test with power 0.8 needs {fixed:.0} per slot for the same hypothesis \
         ({fixed_no_margin:.0} without the tolerance)",
        detected.len(),
        median(detected.clone()),
    );
    assert_eq!(detected.len(), runs as usize, "every run rolled back");
}

/// A canary 30 % slower at every quantile (failures equal) is rolled back.
#[test]
fn a_canary_thirty_percent_slower_is_rolled_back() {
    let canary = Release {
        failure_rate: 0.01,
        latency_scale: 1.3,
    };
    let runs = 100;
    let detected: Vec<u64> = (0..runs)
        .filter_map(|seed| requests_until(seed, canary, HEALTHY, Verdict::Rollback, 40_000))
        .collect();
    let fixed = fixed_sample_quantile(1.3, JudgeConfig::default().latency_tolerance);
    let fixed_no_margin = fixed_sample_quantile(1.3, 0.0);
    eprintln!(
        "30 % slower: rolled back in {}/{runs} runs, median {} canary requests; a fixed-sample \
         test of p95 with power 0.8 needs {fixed:.0} per slot for the same hypothesis \
         ({fixed_no_margin:.0} without the tolerance)",
        detected.len(),
        median(detected.clone()),
    );
    assert_eq!(detected.len(), runs as usize, "every run rolled back");
}

/// A healthy canary is promoted: the evidence eventually says "not worse" on both metrics.
#[test]
fn a_healthy_canary_is_promoted() {
    let runs = 50;
    let promoted: Vec<u64> = (0..runs)
        .filter_map(|seed| requests_until(seed, HEALTHY, HEALTHY, Verdict::PromoteStep, 60_000))
        .collect();
    eprintln!(
        "healthy: promoted in {}/{runs} runs, median {} canary requests",
        promoted.len(),
        median(promoted.clone()),
    );
    assert!(
        promoted.len() >= runs as usize * 9 / 10,
        "{}",
        promoted.len()
    );
}

/// The hardest case for the guarantee: a canary exactly at both tolerances (failure rate
/// 0.5 pp above the baseline's, every latency 10 % higher) is still rolled back in at most
/// `alpha` of the runs, while the z-test of the same failure hypothesis, checked as often,
/// raises a false alarm in far more.
#[test]
fn a_canary_exactly_at_the_tolerances_is_rarely_rolled_back() {
    const RUNS: u64 = 300;
    const HORIZON: u64 = 2500;
    let config = JudgeConfig::default();
    let canary = Release {
        failure_rate: HEALTHY.failure_rate + config.failure_rate_tolerance,
        latency_scale: 1.0 + config.latency_tolerance,
    };
    let (mut judge_alarms, mut z_alarms) = (0u32, 0u32);
    for seed in 0..RUNS {
        let mut rng = StdRng::seed_from_u64(10_000 + seed);
        let mut judge = Judge::new(config.clone()).expect("default config");
        let (mut c, mut b) = ((0, 0), (0, 0));
        let (mut judge_alarm, mut z_alarm) = (false, false);
        for _ in 0..HORIZON {
            b.0 += 1;
            b.1 += u64::from(serve(&mut judge, &mut rng, Slot::Baseline, HEALTHY));
            c.0 += 1;
            c.1 += u64::from(serve(&mut judge, &mut rng, Slot::Canary, canary));
            if !judge_alarm {
                match judge.verdict(Duration::ZERO) {
                    Verdict::Rollback => judge_alarm = true,
                    Verdict::PromoteStep => judge.next_step(),
                    _ => {}
                }
            }
            z_alarm |= z_test_alarms(c, b, config.failure_rate_tolerance);
        }
        judge_alarms += u32::from(judge_alarm);
        z_alarms += u32::from(z_alarm);
    }
    let rate = |alarms: u32| f64::from(alarms) / RUNS as f64;
    let alpha = config.alpha;
    let allowance = alpha + 3.0 * (alpha * (1.0 - alpha) / RUNS as f64).sqrt();
    eprintln!(
        "at the tolerances, {RUNS} runs of {HORIZON} requests per slot, checked after every pair: \
         judge rolled back {:.1} %; the z-test of the same hypothesis alarmed in {:.1} %",
        100.0 * rate(judge_alarms),
        100.0 * rate(z_alarms),
    );
    assert!(rate(judge_alarms) <= allowance, "{}", rate(judge_alarms));
    assert!(rate(z_alarms) > allowance, "{}", rate(z_alarms));
}

/// The default first step sends the canary 5 % of the traffic: the baseline serves 19 requests
/// for each of the canary's. Identical releases are still promoted there (the baseline's many
/// requests must not drown the canary's evidence), and a canary failing 2 % against 0.5 % is
/// still rolled back.
#[test]
fn at_a_five_percent_step_a_healthy_canary_is_promoted_and_a_failing_one_rolled_back() {
    let runs = 20u64;
    let mut promoted = Vec::new();
    let mut rolled_back = Vec::new();
    let failing = Release {
        failure_rate: 0.02,
        latency_scale: 1.0,
    };
    let baseline_release = Release {
        failure_rate: 0.005,
        latency_scale: 1.0,
    };
    for (canary, baseline, wanted, out) in [
        (HEALTHY, HEALTHY, Verdict::PromoteStep, &mut promoted),
        (
            failing,
            baseline_release,
            Verdict::Rollback,
            &mut rolled_back,
        ),
    ] {
        for seed in 0..runs {
            let mut rng = StdRng::seed_from_u64(20_000 + seed);
            let mut judge = Judge::new(JudgeConfig::default()).expect("default config");
            for served in 1..=30_000u64 {
                for _ in 0..19 {
                    serve(&mut judge, &mut rng, Slot::Baseline, baseline);
                }
                serve(&mut judge, &mut rng, Slot::Canary, canary);
                let verdict = judge.verdict(Duration::ZERO);
                if verdict == wanted {
                    out.push(served);
                    break;
                }
                if verdict != Verdict::Continue {
                    break;
                }
            }
        }
    }
    eprintln!(
        "5 % step (19 baseline requests per canary request): healthy promoted in {}/{runs} runs, \
         median {} canary requests; 2 % vs 0.5 % rolled back in {}/{runs}, median {} canary \
         requests",
        promoted.len(),
        median(promoted.clone()),
        rolled_back.len(),
        median(rolled_back.clone()),
    );
    assert!(promoted.len() as u64 >= runs * 9 / 10, "{promoted:?}");
    assert_eq!(rolled_back.len() as u64, runs, "{rolled_back:?}");
}
