//! The failure-rate test: e-processes for "the canary fails more often than the baseline by
//! more than the tolerance" and for "it does not".
//!
//! Each slot's requests are Bernoulli trials (a failure is a "success" of the trial) with an
//! unknown rate: `p_c` for the canary, `p_b` for the baseline. For a point `(p_c, p_b)` the
//! product of an upward mixture martingale on the canary and a downward one on the baseline
//! ([`crate::mixture`]) is a test martingale: each request multiplies it by a factor whose
//! expectation is 1, whichever slot nginx sent it to, because the slot is chosen before the
//! outcome is known. For the composite null `H_worse: p_c ≤ p_b + δ` we take the infimum over
//! the null's points; it is at most the martingale of the true point, so by Ville's inequality
//! it reaches `1/a` with probability at most `a`, however the requests interleave and however
//! often it is checked (an e-process; Ramdas et al. 2023, "Game-theoretic statistics and safe
//! anytime-valid inference"). Rejecting `H_worse` is evidence that the canary is worse by more
//! than `δ`; the mirror image (downward on the canary, upward on the baseline, null
//! `p_c ≥ p_b + δ`) is evidence that it is *not*.
//!
//! The upward canary mixture decreases in `p_c` and the downward baseline mixture increases in
//! `p_b`, so the infimum lies on the line `p_c = p_b + δ`; along it the log of the product is
//! convex, and one safeguarded Newton minimisation finds it.

use std::cell::Cell;

use crate::mixture::{Derivatives, Side, TiltGrid, minimise_convex};

/// A slot's requests and failures as the test sees them.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Trials {
    pub(crate) requests: f64,
    pub(crate) failures: f64,
}

/// Which composite null an e-value is against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Null {
    /// `p_c − p_b ≤ margin`: rejecting it says the canary is worse.
    WithinTolerance,
    /// `p_c − p_b ≥ margin`: rejecting it says the canary is not worse.
    BeyondTolerance,
}

/// The e-value tests, with the last minimiser of each kept as the next start: between two
/// checks a few requests move the minimiser very little, so Newton's method then needs one or
/// two steps.
#[derive(Debug)]
pub(crate) struct FailureTest {
    grid: TiltGrid,
    warm_start: [Cell<f64>; 2],
}

impl FailureTest {
    pub(crate) fn new() -> Self {
        Self {
            grid: TiltGrid::new(),
            warm_start: [Cell::new(f64::NAN), Cell::new(f64::NAN)],
        }
    }

    /// The natural log of the e-value against `null` with the difference `margin`.
    pub(crate) fn log_e_value(
        &self,
        canary: Trials,
        baseline: Trials,
        margin: f64,
        null: Null,
    ) -> f64 {
        let (canary_side, baseline_side, slot) = match null {
            Null::WithinTolerance => (Side::Up, Side::Down, 0),
            Null::BeyondTolerance => (Side::Down, Side::Up, 1),
        };
        // The line p_c = p_b + margin inside the unit square.
        let lo = (-margin).max(0.0);
        let hi = (1.0 - margin).min(1.0);
        if lo > hi {
            return 0.0;
        }
        let start = match self.warm_start[slot].get() {
            warm if warm.is_finite() => warm,
            _ => projection(canary, baseline, margin),
        };
        let objective = |p: f64| {
            let c = self.grid.log_mixture_in_p(
                canary.requests,
                canary.failures,
                (p + margin).clamp(0.0, 1.0),
                canary_side,
            );
            let b =
                self.grid
                    .log_mixture_in_p(baseline.requests, baseline.failures, p, baseline_side);
            Derivatives {
                value: c.value + b.value,
                first: c.first + b.first,
                second: c.second + b.second,
            }
        };
        let (value, at) = minimise_convex(objective, lo, hi, start);
        self.warm_start[slot].set(at);
        value
    }

    /// Forgets the warm starts (after the data were reset).
    pub(crate) fn forget_warm_starts(&self) {
        for cell in &self.warm_start {
            cell.set(f64::NAN);
        }
    }
}

/// The point on the null's boundary closest to the observed rates in the metric of their
/// variances: a good first guess of the minimiser.
fn projection(canary: Trials, baseline: Trials, margin: f64) -> f64 {
    let rate = |t: Trials| {
        if t.requests > 0.0 {
            t.failures / t.requests
        } else {
            0.0
        }
    };
    let information = |t: Trials| {
        let r = rate(t).clamp(1e-4, 1.0 - 1e-4);
        t.requests / (r * (1.0 - r))
    };
    let (ic, ib) = (information(canary), information(baseline));
    let share = if ic + ib > 0.0 { ic / (ic + ib) } else { 0.5 };
    rate(baseline) + share * (rate(canary) - rate(baseline) - margin)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn trials(requests: u32, failures: u32) -> Trials {
        Trials {
            requests: requests.into(),
            failures: failures.into(),
        }
    }

    /// The minimisation agrees with a brute-force scan of the boundary.
    #[test]
    fn e_values_match_a_scan_of_the_null_boundary() {
        let grid = TiltGrid::new();
        let cases = [
            (trials(4000, 80), trials(4000, 20), 0.005),
            (trials(300, 2), trials(5700, 60), 0.005),
            (trials(10, 0), trials(10, 0), 0.005),
            (trials(2000, 25), trials(2000, 18), 0.0),
            (trials(500, 250), trials(500, 240), 0.02),
        ];
        for (canary, baseline, margin) in cases {
            for null in [Null::WithinTolerance, Null::BeyondTolerance] {
                let test = FailureTest::new();
                let fast = test.log_e_value(canary, baseline, margin, null);
                let (cs, bs) = match null {
                    Null::WithinTolerance => (Side::Up, Side::Down),
                    Null::BeyondTolerance => (Side::Down, Side::Up),
                };
                let scan = (0..=20_000)
                    .map(|i| f64::from(i) / 20_000.0 * (1.0 - margin))
                    .map(|p| {
                        grid.log_mixture_in_p(canary.requests, canary.failures, p + margin, cs)
                            .value
                            + grid
                                .log_mixture_in_p(baseline.requests, baseline.failures, p, bs)
                                .value
                    })
                    .fold(f64::INFINITY, f64::min);
                assert!(fast <= scan + 1e-9, "{null:?}: {fast} > scan {scan}");
                assert!(fast >= scan - 1e-3, "{null:?}: {fast} ≪ scan {scan}");
                // A second call from the warm start gives the same answer.
                let again = test.log_e_value(canary, baseline, margin, null);
                assert!((again - fast).abs() < 1e-9);
            }
        }
    }

    /// Evidence points the right way: a canary failing 4× as often is worse, an equal one is
    /// not worse by more than the tolerance.
    #[test]
    fn e_values_grow_in_the_direction_of_the_data() {
        let test = FailureTest::new();
        let worse = test.log_e_value(
            trials(6000, 120),
            trials(6000, 30),
            0.005,
            Null::WithinTolerance,
        );
        assert!(worse > 20f64.ln(), "{worse}");
        let test = FailureTest::new();
        let fine = test.log_e_value(
            trials(40000, 400),
            trials(40000, 400),
            0.005,
            Null::BeyondTolerance,
        );
        assert!(fine > 20f64.ln(), "{fine}");
        let test = FailureTest::new();
        let none = test.log_e_value(
            trials(40000, 400),
            trials(40000, 400),
            0.005,
            Null::WithinTolerance,
        );
        assert!(none <= 0.0, "{none}");
    }
}
