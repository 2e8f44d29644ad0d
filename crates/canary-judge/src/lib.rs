//! A sans-IO judge for canary releases: promote or roll back on evidence, not on a timer.
//!
//! During a canary both releases serve the same traffic at the same time, split by weight. The
//! pipeline feeds the [`Judge`] each slot's requests, failures and latency samples as the edge
//! reports them, and asks it — as often as it likes — for a [`Decision`]: [`Verdict::Continue`],
//! [`Verdict::PromoteStep`], [`Verdict::Rollback`] or, once a step has run for
//! `max_step_time`, [`Verdict::Inconclusive`], which the caller turns into a rollback or a
//! promotion with [`Decision::resolve`] and the configured [`InconclusivePolicy`]. Every decision
//! carries its [`Evidence`] (counts, rates, e-values, confidence bounds) and a one-line reason.
//! There is no clock and no I/O here: the caller says how long the step has run.
//!
//! # Theory of operation
//!
//! Tools that re-run a fixed-sample test at every interval (Kayenta's Mann-Whitney test at 98 %)
//! raise a false alarm far more often than their nominal rate, because every look is another
//! chance to cross the line by luck: in this crate's simulation of 1,000 identical-release runs
//! of 2,500 requests per slot, a 95 % one-sided z-test checked after every request raised a
//! false alarm in 28 % of them, and the judge in none. The judge uses
//! *anytime-valid* tests: nonnegative supermartingales under the null hypothesis, for which
//! Ville's inequality bounds the chance of *ever* reaching `1/a` by `a`. Looking after every
//! request, or stopping whenever it suits, costs nothing (Howard, Ramdas, McAuliffe & Sekhon
//! 2021, "Time-uniform, nonparametric, nonasymptotic confidence sequences"; Johari, Pekelis &
//! Walsh 2017, "Always valid inference: bringing sequential analysis to A/B testing"; Lindon,
//! Sanden & Shirikian 2022, "Rapid regression detection in software deployments through
//! sequential testing"; Lindon et al., Netflix Technology Blog 2024, "Sequential A/B testing
//! keeps the world streaming Netflix", parts 1 and 2). The implementation is this crate's own.
//!
//! * **Failure rate.** Each slot's requests are Bernoulli trials. A mixture of exponentially
//!   tilted likelihood ratios over a fixed grid ([`mixture`](crate#mixtures)) per slot, their
//!   product, and its infimum over the composite null "canary rate ≤ baseline rate +
//!   `failure_rate_tolerance`" make an e-process; when it reaches `2/alpha` the canary is worse
//!   and is rolled back. The mirror-image e-process against "canary rate ≥ baseline rate +
//!   tolerance" reaching `1/alpha` says *not worse*, and is the failure half of a promotion.
//!   Inverting both gives a confidence sequence for the difference of the rates
//!   ([`Judge::failure_rate_difference_bounds`]).
//! * **Latency.** For the configured quantile (p95 by default) each slot gets time-uniform
//!   confidence bounds from the same mixtures applied to the indicator "sample below the true
//!   quantile", which is Bernoulli(`q`) whatever the latency distribution (Howard & Ramdas 2022,
//!   "Sequential estimation of quantiles with applications to A/B-testing and best-arm
//!   identification"). The canary is worse when its lower bound exceeds `1 +
//!   latency_tolerance` times the baseline's upper bound, and not worse when its upper bound is
//!   below that multiple of the baseline's lower bound. This compares the quantile itself, which
//!   is what a latency objective states, without assuming a distribution; a rank test such as
//!   Mann-Whitney would answer a different question (is a random canary request slower than a
//!   random baseline one?).
//!
//! **Error budget.** A rollback is a union of two tests, so each gets half of `alpha` (and each
//! latency bound a quarter): identical releases are rolled back with probability at most
//! `alpha` over the whole canary, however many steps and checks. A promotion needs both
//! halves, so each gets all of `alpha`: a step of a release that is worse on either metric is
//! promoted with probability at most `alpha`.
//!
//! **Steps.** Rollback evidence accumulates over the whole canary (one test, so `alpha` is not
//! spent again at each step). Promotion evidence starts afresh at each [`Judge::next_step`], so
//! each step must show on its own traffic that the canary is not worse, and a regression that
//! only appears under more load still has a step to show up in.
//!
//! **Assumptions.** Within the canary each slot's failure probability and latency distribution
//! do not drift, and which slot serves a request does not depend on its outcome (nginx picks the
//! slot before the request runs). Latency bounds are quantised to buckets 0.5 % wide, rounded
//! outwards.
//!
//! # Mixtures
//!
//! For a point null "rate `p`", `exp(λ·S − n·ln(1 − p + p·e^λ))` is a martingale for every tilt
//! `λ`; the judge averages it over the tilts `±1/16, ±1/8, …, ±2` with equal weights, which
//! costs at most `ln 6` nats against the best single tilt in hindsight whatever the effect size
//! (`ln 7` in the failure test, whose mixtures also hold the tilt 0, so that a baseline serving
//! many times the canary's traffic cannot drown the canary's evidence),
//! where a beta mixture over `[0, 1]` costs about `½·ln n` per slot.
//!
//! # Example
//!
//! ```
//! use canary_judge::{Judge, JudgeConfig, Slot, Verdict};
//! use std::time::Duration;
//!
//! let mut judge = Judge::new(JudgeConfig::default())?;
//! // One second of edge signals: the canary fails 40 of 200 requests, the baseline 1 of 200.
//! judge.observe_requests(Slot::Canary, 200, 40)?;
//! judge.observe_requests(Slot::Baseline, 200, 1)?;
//! judge.observe_latencies(Slot::Canary, &[12.0, 15.5, 11.0])?;
//! judge.observe_latencies(Slot::Baseline, &[12.5, 14.0, 10.5])?;
//!
//! let decision = judge.decide(Duration::from_secs(1));
//! assert_eq!(decision.verdict, Verdict::Rollback);
//! assert!(decision.reason.contains("failure rate"), "{}", decision.reason);
//! assert!(decision.evidence.failures.worse);
//! # Ok::<(), canary_judge::JudgeError>(())
//! ```

mod config;
mod error;
mod failures;
mod judge;
mod latency;
mod mixture;

pub use config::{InconclusivePolicy, JudgeConfig};
pub use error::JudgeError;
pub use judge::{
    Decision, DifferenceBounds, Evidence, FailureEvidence, Judge, LatencyEvidence, Slot,
    SlotCounts, Verdict,
};
