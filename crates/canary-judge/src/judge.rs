//! The judge: observations in, a verdict with its evidence out.

use std::fmt;
use std::time::Duration;

use serde::Serialize;

use crate::failures::{FailureTest, Null, Trials};
use crate::latency::{Bound, LatencyHistogram, RankBoundary};
use crate::mixture::TiltGrid;
use crate::{InconclusivePolicy, JudgeConfig, JudgeError};

/// Which release an observation is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Slot {
    /// The release that is live and trusted.
    Baseline,
    /// The release being judged.
    Canary,
}

impl fmt::Display for Slot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Baseline => "baseline",
            Self::Canary => "canary",
        })
    }
}

/// What the caller should do next.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Verdict {
    /// Keep the current weights and ask again later.
    Continue,
    /// The evidence says the canary is not worse within the tolerances: move to the next step.
    PromoteStep,
    /// The evidence says the canary is worse by more than a tolerance: roll back now.
    Rollback,
    /// The step ran for `max_step_time` without evidence either way; the caller applies the
    /// [`InconclusivePolicy`].
    Inconclusive,
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Continue => "continue",
            Self::PromoteStep => "promote-step",
            Self::Rollback => "rollback",
            Self::Inconclusive => "inconclusive",
        })
    }
}

impl InconclusivePolicy {
    /// The verdict this policy turns [`Verdict::Inconclusive`] into.
    pub fn verdict(self) -> Verdict {
        match self {
            Self::Rollback => Verdict::Rollback,
            Self::Promote => Verdict::PromoteStep,
        }
    }
}

/// A verdict, the numbers behind it and a sentence a person can act on.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Decision {
    /// What to do.
    pub verdict: Verdict,
    /// The numbers the verdict rests on.
    pub evidence: Evidence,
    /// Why, in one sentence with the deciding numbers.
    pub reason: String,
}

impl Decision {
    /// Applies the inconclusive policy: an [`Verdict::Inconclusive`] decision becomes a
    /// rollback or a promotion whose reason says so; any other decision is returned as it is.
    pub fn resolve(mut self, policy: InconclusivePolicy) -> Self {
        if self.verdict == Verdict::Inconclusive {
            self.verdict = policy.verdict();
            let action = match policy {
                InconclusivePolicy::Rollback => "rolls back",
                InconclusivePolicy::Promote => "promotes the step",
            };
            self.reason = format!("{}; the inconclusive policy {action}", self.reason);
        }
        self
    }
}

/// Requests and failures of one slot.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct SlotCounts {
    /// Requests served.
    pub requests: u64,
    /// Of those, failed.
    pub failures: u64,
}

impl SlotCounts {
    /// The observed failure rate (0 without requests).
    pub fn rate(&self) -> f64 {
        if self.requests == 0 {
            0.0
        } else {
            self.failures as f64 / self.requests as f64
        }
    }

    fn trials(self) -> Trials {
        Trials {
            requests: self.requests as f64,
            failures: self.failures as f64,
        }
    }
}

/// Everything the judge looked at. Rollback evidence covers the whole canary, promotion
/// evidence the current step (see the crate docs for why).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Evidence {
    /// The step number, from 1.
    pub step: u32,
    /// How long the current step has run, as the caller said.
    #[serde(with = "humantime_serde")]
    pub step_elapsed: Duration,
    /// The failure-rate test.
    pub failures: FailureEvidence,
    /// The latency-quantile test.
    pub latency: LatencyEvidence,
}

/// The failure-rate test's numbers. E-values are kept as natural logarithms, which stay finite
/// however strong the evidence.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FailureEvidence {
    /// The canary's requests over the whole canary.
    pub canary: SlotCounts,
    /// The baseline's requests over the whole canary.
    pub baseline: SlotCounts,
    /// The canary's requests in the current step.
    pub step_canary: SlotCounts,
    /// The baseline's requests in the current step.
    pub step_baseline: SlotCounts,
    /// The tolerated excess of the canary's failure rate (absolute).
    pub tolerance: f64,
    /// ln of the e-value against "the canary's rate exceeds the baseline's by at most the
    /// tolerance" (whole canary): large means worse.
    pub log_e_worse: f64,
    /// ln of the e-value a rollback needs: `ln(2/alpha)` (half of alpha is spent here, half on
    /// latency).
    pub log_rollback_threshold: f64,
    /// ln of the e-value against "the canary's rate exceeds the baseline's by at least the
    /// tolerance" (current step): large means not worse.
    pub log_e_not_worse: f64,
    /// ln of the e-value a promotion needs: `ln(1/alpha)`.
    pub log_promote_threshold: f64,
    /// Whether `log_e_worse` reached its threshold.
    pub worse: bool,
    /// Whether `log_e_not_worse` reached its threshold.
    pub not_worse: bool,
}

impl FailureEvidence {
    /// The e-value for "worse" (may be infinite when printed as a plain number).
    pub fn e_value_worse(&self) -> f64 {
        self.log_e_worse.exp()
    }

    /// The e-value for "not worse".
    pub fn e_value_not_worse(&self) -> f64 {
        self.log_e_not_worse.exp()
    }
}

/// The latency test's numbers, in milliseconds. A bound that the data cannot give yet is `0`
/// for a lower bound and `None` (unbounded) for an upper one.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LatencyEvidence {
    /// The quantile compared (0.95 for p95).
    pub quantile: f64,
    /// The tolerated relative excess of the canary's quantile.
    pub tolerance: f64,
    /// The canary's samples over the whole canary.
    pub canary_samples: u64,
    /// The baseline's samples over the whole canary.
    pub baseline_samples: u64,
    /// The canary's samples in the current step.
    pub step_canary_samples: u64,
    /// The baseline's samples in the current step.
    pub step_baseline_samples: u64,
    /// The canary's observed quantile over the whole canary.
    pub canary_ms: Option<f64>,
    /// The baseline's observed quantile over the whole canary.
    pub baseline_ms: Option<f64>,
    /// Time-uniform lower bound of the canary's quantile (whole canary, for rollback).
    pub canary_lower_ms: f64,
    /// Time-uniform upper bound of the baseline's quantile (whole canary, for rollback).
    pub baseline_upper_ms: Option<f64>,
    /// Time-uniform upper bound of the canary's quantile (current step, for promotion).
    pub step_canary_upper_ms: Option<f64>,
    /// Time-uniform lower bound of the baseline's quantile (current step, for promotion).
    pub step_baseline_lower_ms: f64,
    /// `canary_lower_ms / baseline_upper_ms`: a lower bound of the ratio of the quantiles.
    pub ratio_lower: f64,
    /// `step_canary_upper_ms / step_baseline_lower_ms`: an upper bound of the ratio.
    pub ratio_upper: Option<f64>,
    /// Whether `ratio_lower` exceeds `1 + tolerance`.
    pub worse: bool,
    /// Whether `ratio_upper` is below `1 + tolerance`.
    pub not_worse: bool,
}

/// Bounds on the difference of failure rates (canary minus baseline).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct DifferenceBounds {
    /// Lower bound over the whole canary, at the rollback level (`alpha/2`).
    pub lower: f64,
    /// Upper bound over the current step, at the promotion level (`alpha`).
    pub upper: f64,
}

/// One slot's observations over some span (the whole canary or one step).
#[derive(Debug, Clone)]
struct SlotData {
    counts: SlotCounts,
    latency: LatencyHistogram,
    boundary: RankBoundary,
}

impl SlotData {
    fn new(grid: &TiltGrid, quantile: f64, bound: Bound, level: f64) -> Self {
        Self {
            counts: SlotCounts::default(),
            latency: LatencyHistogram::new(),
            boundary: RankBoundary::new(grid, quantile, bound, level),
        }
    }

    fn bound_ms(&self) -> f64 {
        self.boundary.value(&self.latency)
    }
}

/// The sans-IO canary judge. Feed it each slot's requests, failures and latencies as they come
/// (in any interleaving and batch size), ask [`Judge::decide`] as often as you like, and call
/// [`Judge::next_step`] when the weights move on.
#[derive(Debug)]
pub struct Judge {
    config: JudgeConfig,
    grid: TiltGrid,
    failures: FailureTest,
    /// Whole canary: the canary keeps a lower latency bound, the baseline an upper one.
    canary: SlotData,
    baseline: SlotData,
    /// Current step: the canary keeps an upper latency bound, the baseline a lower one.
    step_canary: SlotData,
    step_baseline: SlotData,
    step: u32,
}

impl Judge {
    /// A judge with no observations, at step 1; refuses a configuration out of range.
    pub fn new(config: JudgeConfig) -> Result<Self, JudgeError> {
        config.validate()?;
        let grid = TiltGrid::new();
        let q = config.latency_quantile;
        // Rollback: half of alpha for latency, split between the two bounds. Promotion: alpha
        // for latency, split likewise.
        let rollback_level = config.alpha / 4.0;
        let promote_level = config.alpha / 2.0;
        Ok(Self {
            canary: SlotData::new(&grid, q, Bound::Lower, rollback_level),
            baseline: SlotData::new(&grid, q, Bound::Upper, rollback_level),
            step_canary: SlotData::new(&grid, q, Bound::Upper, promote_level),
            step_baseline: SlotData::new(&grid, q, Bound::Lower, promote_level),
            failures: FailureTest::new(),
            grid,
            config,
            step: 1,
        })
    }

    /// The configuration the judge was built with.
    pub fn config(&self) -> &JudgeConfig {
        &self.config
    }

    /// The current step number, from 1.
    pub fn step(&self) -> u32 {
        self.step
    }

    /// Records `requests` more requests of `slot`, `failures` of which failed.
    pub fn observe_requests(
        &mut self,
        slot: Slot,
        requests: u64,
        failures: u64,
    ) -> Result<(), JudgeError> {
        if failures > requests {
            return Err(JudgeError::FailuresExceedRequests {
                slot,
                requests,
                failures,
            });
        }
        let (whole, step) = self.slot_mut(slot);
        for data in [whole, step] {
            data.counts.requests += requests;
            data.counts.failures += failures;
        }
        Ok(())
    }

    /// Records one latency sample of `slot`, in milliseconds.
    pub fn observe_latency(&mut self, slot: Slot, ms: f64) -> Result<(), JudgeError> {
        self.observe_latencies(slot, &[ms])
    }

    /// Records a batch of latency samples of `slot`, in milliseconds; a batch with an invalid
    /// sample is refused whole.
    pub fn observe_latencies(&mut self, slot: Slot, samples_ms: &[f64]) -> Result<(), JudgeError> {
        if let Some(bad) = samples_ms.iter().find(|v| !(v.is_finite() && **v >= 0.0)) {
            return Err(JudgeError::InvalidLatency { slot, value: *bad });
        }
        let grid = &self.grid;
        let (whole, step) = match slot {
            Slot::Canary => (&mut self.canary, &mut self.step_canary),
            Slot::Baseline => (&mut self.baseline, &mut self.step_baseline),
        };
        for data in [whole, step] {
            for ms in samples_ms {
                data.latency.record(*ms);
            }
            data.boundary.update(grid, data.latency.len());
        }
        Ok(())
    }

    /// Starts the next step: the promotion evidence starts afresh, the rollback evidence keeps
    /// accumulating.
    pub fn next_step(&mut self) {
        let q = self.config.latency_quantile;
        let level = self.config.alpha / 2.0;
        self.step_canary = SlotData::new(&self.grid, q, Bound::Upper, level);
        self.step_baseline = SlotData::new(&self.grid, q, Bound::Lower, level);
        self.failures.forget_warm_starts();
        self.step = self.step.saturating_add(1);
    }

    fn slot_mut(&mut self, slot: Slot) -> (&mut SlotData, &mut SlotData) {
        match slot {
            Slot::Canary => (&mut self.canary, &mut self.step_canary),
            Slot::Baseline => (&mut self.baseline, &mut self.step_baseline),
        }
    }

    /// The verdict on the evidence so far; `step_elapsed` is how long the current step has run
    /// (the judge has no clock). A rollback takes precedence over a promotion, and both over
    /// an inconclusive step.
    pub fn decide(&self, step_elapsed: Duration) -> Decision {
        let (verdict, evidence) = self.assess(step_elapsed);
        let reason = match verdict {
            Verdict::Rollback => self.rollback_reason(&evidence),
            Verdict::PromoteStep => self.promote_reason(&evidence),
            Verdict::Inconclusive => format!(
                "no decision after {} in step {} (max_step_time): {}",
                humantime::format_duration(step_elapsed),
                self.step,
                self.missing(&evidence)
            ),
            Verdict::Continue => format!("not enough evidence yet: {}", self.missing(&evidence)),
        };
        Decision {
            verdict,
            evidence,
            reason,
        }
    }

    /// The verdict [`Judge::decide`] would give, without writing its reason: for callers that
    /// check after every request and only care when the answer changes.
    pub fn verdict(&self, step_elapsed: Duration) -> Verdict {
        self.assess(step_elapsed).0
    }

    fn assess(&self, step_elapsed: Duration) -> (Verdict, Evidence) {
        let evidence = Evidence {
            step: self.step,
            step_elapsed,
            failures: self.failure_evidence(),
            latency: self.latency_evidence(),
        };
        let min = self.config.min_requests;
        let rollback_ready =
            self.canary.counts.requests >= min && self.baseline.counts.requests >= min;
        let promote_ready =
            self.step_canary.counts.requests >= min && self.step_baseline.counts.requests >= min;
        let verdict = if rollback_ready && (evidence.failures.worse || evidence.latency.worse) {
            Verdict::Rollback
        } else if promote_ready && evidence.failures.not_worse && evidence.latency.not_worse {
            Verdict::PromoteStep
        } else if step_elapsed >= self.config.max_step_time {
            Verdict::Inconclusive
        } else {
            Verdict::Continue
        };
        (verdict, evidence)
    }

    fn failure_evidence(&self) -> FailureEvidence {
        let tolerance = self.config.failure_rate_tolerance;
        let alpha = self.config.alpha;
        let log_e_worse = self.failures.log_e_value(
            self.canary.counts.trials(),
            self.baseline.counts.trials(),
            tolerance,
            Null::WithinTolerance,
        );
        let log_e_not_worse = self.failures.log_e_value(
            self.step_canary.counts.trials(),
            self.step_baseline.counts.trials(),
            tolerance,
            Null::BeyondTolerance,
        );
        let log_rollback_threshold = (2.0 / alpha).ln();
        let log_promote_threshold = (1.0 / alpha).ln();
        FailureEvidence {
            canary: self.canary.counts,
            baseline: self.baseline.counts,
            step_canary: self.step_canary.counts,
            step_baseline: self.step_baseline.counts,
            tolerance,
            log_e_worse,
            log_rollback_threshold,
            log_e_not_worse,
            log_promote_threshold,
            worse: log_e_worse >= log_rollback_threshold,
            not_worse: log_e_not_worse >= log_promote_threshold,
        }
    }

    fn latency_evidence(&self) -> LatencyEvidence {
        let q = self.config.latency_quantile;
        let limit = 1.0 + self.config.latency_tolerance;
        let canary_lower_ms = self.canary.bound_ms();
        let baseline_upper_ms = self.baseline.bound_ms();
        let step_canary_upper_ms = self.step_canary.bound_ms();
        let step_baseline_lower_ms = self.step_baseline.bound_ms();
        let ratio_lower = if baseline_upper_ms.is_finite() && baseline_upper_ms > 0.0 {
            canary_lower_ms / baseline_upper_ms
        } else {
            0.0
        };
        let ratio_upper = if step_baseline_lower_ms > 0.0 {
            step_canary_upper_ms / step_baseline_lower_ms
        } else {
            f64::INFINITY
        };
        LatencyEvidence {
            quantile: q,
            tolerance: self.config.latency_tolerance,
            canary_samples: self.canary.latency.len(),
            baseline_samples: self.baseline.latency.len(),
            step_canary_samples: self.step_canary.latency.len(),
            step_baseline_samples: self.step_baseline.latency.len(),
            canary_ms: self.canary.latency.quantile(q),
            baseline_ms: self.baseline.latency.quantile(q),
            canary_lower_ms,
            baseline_upper_ms: finite(baseline_upper_ms),
            step_canary_upper_ms: finite(step_canary_upper_ms),
            step_baseline_lower_ms,
            ratio_lower,
            ratio_upper: finite(ratio_upper),
            worse: ratio_lower > limit,
            not_worse: ratio_upper < limit,
        }
    }

    /// Bounds on the difference of failure rates, canary minus baseline, from the same
    /// e-processes the verdicts use: every difference outside them has been refuted. More
    /// expensive than [`Judge::decide`] (a root search over minimisations), so meant for status
    /// displays rather than for every request.
    pub fn failure_rate_difference_bounds(&self) -> DifferenceBounds {
        let alpha = self.config.alpha;
        let whole = (self.canary.counts.trials(), self.baseline.counts.trials());
        let step = (
            self.step_canary.counts.trials(),
            self.step_baseline.counts.trials(),
        );
        // The e-value against "difference ≤ m" falls as m grows; the lower bound is where it
        // drops below the threshold. The one against "difference ≥ m" rises with m.
        let lower = bisect(-1.0, 1.0, |m| {
            let test = FailureTest::new();
            test.log_e_value(whole.0, whole.1, m, Null::WithinTolerance) >= (2.0 / alpha).ln()
        });
        let upper = bisect(-1.0, 1.0, |m| {
            let test = FailureTest::new();
            test.log_e_value(step.0, step.1, m, Null::BeyondTolerance) < (1.0 / alpha).ln()
        });
        DifferenceBounds { lower, upper }
    }

    fn rollback_reason(&self, evidence: &Evidence) -> String {
        let mut parts = Vec::new();
        let f = &evidence.failures;
        if f.worse {
            parts.push(format!(
                "the canary's failure rate is more than {} above the baseline's: {} against {}, \
                 e-value {} ≥ {}",
                points(f.tolerance),
                counts(f.canary),
                counts(f.baseline),
                e_value(f.log_e_worse),
                e_value(f.log_rollback_threshold),
            ));
        }
        let l = &evidence.latency;
        if l.worse {
            parts.push(format!(
                "the canary's {} latency is more than {} above the baseline's: at least {} \
                 against at most {} (ratio ≥ {:.2} > {:.2})",
                quantile_name(l.quantile),
                percent(l.tolerance),
                millis(l.canary_lower_ms),
                millis(l.baseline_upper_ms.unwrap_or(f64::INFINITY)),
                l.ratio_lower,
                1.0 + l.tolerance,
            ));
        }
        format!("rollback in step {}: {}", self.step, parts.join("; "))
    }

    fn promote_reason(&self, evidence: &Evidence) -> String {
        let f = &evidence.failures;
        let l = &evidence.latency;
        format!(
            "the canary is not worse than the baseline within the tolerances in step {}: \
             failure rate {} against {} (e-value against \"more than {} worse\" {} ≥ {}); {} at \
             most {} against at least {} (ratio ≤ {:.2} < {:.2})",
            self.step,
            counts(f.step_canary),
            counts(f.step_baseline),
            points(f.tolerance),
            e_value(f.log_e_not_worse),
            e_value(f.log_promote_threshold),
            quantile_name(l.quantile),
            millis(l.step_canary_upper_ms.unwrap_or(f64::INFINITY)),
            millis(l.step_baseline_lower_ms),
            l.ratio_upper.unwrap_or(f64::INFINITY),
            1.0 + l.tolerance,
        )
    }

    /// What a promotion still lacks.
    fn missing(&self, evidence: &Evidence) -> String {
        let mut parts = Vec::new();
        let min = self.config.min_requests;
        for (slot, counts) in [
            (Slot::Canary, evidence.failures.step_canary),
            (Slot::Baseline, evidence.failures.step_baseline),
        ] {
            if counts.requests < min {
                parts.push(format!(
                    "the {slot} served {} of the {min} requests needed",
                    counts.requests
                ));
            }
        }
        let f = &evidence.failures;
        if !f.not_worse {
            parts.push(format!(
                "failure rate {} against {}, e-value for \"not worse\" {} of {} needed",
                counts(f.step_canary),
                counts(f.step_baseline),
                e_value(f.log_e_not_worse),
                e_value(f.log_promote_threshold),
            ));
        }
        let l = &evidence.latency;
        if !l.not_worse {
            let name = quantile_name(l.quantile);
            parts.push(match l.ratio_upper {
                None => format!(
                    "{name} latency not yet bounded ({} canary and {} baseline samples)",
                    l.step_canary_samples, l.step_baseline_samples
                ),
                Some(ratio) => format!(
                    "{name} latency ratio at most {ratio:.2}, needs below {:.2}",
                    1.0 + l.tolerance
                ),
            });
        }
        parts.join("; ")
    }
}

/// The point in `[lo, hi]` where `holds` turns from true to false (it must be monotone).
fn bisect(mut lo: f64, mut hi: f64, holds: impl Fn(f64) -> bool) -> f64 {
    if !holds(lo) {
        return lo;
    }
    if holds(hi) {
        return hi;
    }
    for _ in 0..50 {
        let mid = 0.5 * (lo + hi);
        if holds(mid) {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    0.5 * (lo + hi)
}

fn finite(value: f64) -> Option<f64> {
    value.is_finite().then_some(value)
}

fn counts(c: SlotCounts) -> String {
    format!(
        "{:.2} % ({} of {})",
        c.rate() * 100.0,
        c.failures,
        c.requests
    )
}

fn points(tolerance: f64) -> String {
    format!("{:.2} pp", tolerance * 100.0)
}

fn percent(fraction: f64) -> String {
    format!("{:.0} %", fraction * 100.0)
}

fn millis(ms: f64) -> String {
    if ms.is_finite() {
        format!("{ms:.1} ms")
    } else {
        "unbounded".to_owned()
    }
}

fn e_value(log: f64) -> String {
    if log > 700.0 {
        format!("e^{log:.0}")
    } else {
        format!("{:.1}", log.exp())
    }
}

fn quantile_name(q: f64) -> String {
    format!("p{}", (q * 1000.0).round() / 10.0)
}
