//! Mixture martingales for a stream of Bernoulli trials: the one building block of every test
//! in this crate.
//!
//! For a point null "each trial succeeds with probability `p`", the exponentially tilted
//! likelihood ratio `exp(λ·S − n·ψ(λ; p))`, with `S` the successes in `n` trials and
//! `ψ(λ; p) = ln(1 − p + p·e^λ)` the Bernoulli cumulant generating function, is a nonnegative
//! martingale with initial value 1 for every fixed `λ`; so is any average of such ratios
//! (Robbins' method of mixtures; Howard et al. 2021, section 3). Ville's inequality then bounds
//! the chance that it *ever* reaches `1/a` by `a`, which is what makes every test built on it
//! valid however often it is looked at.
//!
//! We average over a fixed grid of tilts, all positive (evidence that the true rate is *above*
//! `p`) or all negative (*below*). A geometric grid with ratio 2 costs at most `ln(grid size)`
//! nats against the best single tilt chosen in hindsight, and at least 83 % of that tilt's
//! exponent, whatever the effect size. A conjugate beta mixture over `[0, 1]` would be simpler
//! but pays about `½·ln(n / 2π·p(1 − p))` nats per stream instead (≈ 5 nats per stream after a
//! few thousand requests at 1 % failures, against `ln 6` ≈ 1.8 here), which delays every
//! decision.
//!
//! Two facts the callers rely on, both because `−ψ(λ; p)` is convex in `p` (the logarithm of an
//! affine function is concave) and a sum of log-convex functions is log-convex:
//!
//! * the logarithm of the mixture is convex in `p`, so its minimum over an interval is found by
//!   a safeguarded Newton iteration;
//! * an upward mixture decreases in `p` and a downward one increases, so the least favourable
//!   point of a one-sided composite null lies on its boundary.

/// The tilts of the grid (log-odds shifts), from 1/16 to 2.
const TILTS: [f64; 6] = [0.0625, 0.125, 0.25, 0.5, 1.0, 2.0];

/// Which way a mixture looks for evidence.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Side {
    /// Evidence that the true success probability is larger than the null's.
    Up,
    /// Evidence that it is smaller.
    Down,
}

/// The grid of tilts with the constants every evaluation needs.
#[derive(Debug, Clone)]
pub(crate) struct TiltGrid {
    /// Signed tilts for [`Side::Up`] and [`Side::Down`].
    lambda: [[f64; TILTS.len()]; 2],
    /// `e^λ − 1` for each signed tilt.
    expm1: [[f64; TILTS.len()]; 2],
    /// `ln(grid size)`: the mixture weights are uniform.
    ln_size: f64,
    /// `ln(grid size + 1)`: the failure test's mixture, which adds the tilt 0.
    ln_size_with_zero: f64,
}

impl TiltGrid {
    pub(crate) fn new() -> Self {
        let mut lambda = [[0.0; TILTS.len()]; 2];
        let mut expm1 = [[0.0; TILTS.len()]; 2];
        for (j, tilt) in TILTS.iter().enumerate() {
            lambda[0][j] = *tilt;
            lambda[1][j] = -tilt;
            expm1[0][j] = tilt.exp_m1();
            expm1[1][j] = (-tilt).exp_m1();
        }
        Self {
            lambda,
            expm1,
            ln_size: (TILTS.len() as f64).ln(),
            ln_size_with_zero: ((TILTS.len() + 1) as f64).ln(),
        }
    }

    fn index(side: Side) -> usize {
        match side {
            Side::Up => 0,
            Side::Down => 1,
        }
    }

    /// The log of the mixture after `successes` in `trials` against the null probability `p`,
    /// with its first and second derivatives in `p`.
    ///
    /// This mixture (the failure-rate test's) has one more component, the tilt 0: the
    /// martingale that bets nothing and stays 1. The failure test multiplies a canary mixture by
    /// a baseline mixture and takes the infimum over the null's line; without that component,
    /// a baseline mixture betting on the wrong side of the data falls like `exp(−n·KL)`, so when
    /// the baseline serves many times the canary's requests (a 5 % step: 19 to 1) the product's
    /// infimum falls with every request and "not worse" can never be shown. With it the
    /// baseline's factor stays above `1/7`, and the canary's own evidence decides.
    ///
    /// Plain indexed loops rather than iterator chains: this runs after every request in the
    /// simulation tests, which are built without optimisation.
    pub(crate) fn log_mixture_in_p(
        &self,
        trials: f64,
        successes: f64,
        p: f64,
        side: Side,
    ) -> Derivatives {
        let lambda = &self.lambda[Self::index(side)];
        let expm1 = &self.expm1[Self::index(side)];
        let mut exponent = [0.0; TILTS.len()];
        // The tilt-0 component's exponent is 0.
        let mut max = 0.0f64;
        for j in 0..TILTS.len() {
            exponent[j] = lambda[j] * successes - trials * (p * expm1[j]).ln_1p();
            max = max.max(exponent[j]);
        }
        // The derivatives of each component's log are −n·c/(1 + p·c) and n·c²/(1 + p·c)²;
        // those of the mixture's log are their weighted means plus the variance of the first.
        // The tilt-0 component adds its weight and nothing else (its slope is 0).
        let (mut sum, mut first, mut square) = ((-max).exp(), 0.0, 0.0);
        for j in 0..TILTS.len() {
            let weight = (exponent[j] - max).exp();
            let slope = expm1[j] / (1.0 + p * expm1[j]);
            sum += weight;
            first += weight * slope;
            square += weight * slope * slope;
        }
        let (first, square) = (-trials * first / sum, trials * trials * square / sum);
        // E[n·s²] + E[(n·s)²] − E[n·s]², with s the slope above.
        let second = square / trials.max(f64::MIN_POSITIVE) + square - first * first;
        Derivatives {
            value: max + sum.ln() - self.ln_size_with_zero,
            first,
            second: second.max(0.0),
        }
    }

    /// The cumulant generating function `ψ(λ_j; p)` of every tilt on `side`.
    pub(crate) fn cumulants(&self, p: f64, side: Side) -> [f64; TILTS.len()] {
        let side = Self::index(side);
        let mut psi = [0.0; TILTS.len()];
        for (j, value) in psi.iter_mut().enumerate() {
            *value = (p * self.expm1[side][j]).ln_1p();
        }
        psi
    }

    /// The log of the mixture after `successes` in `trials` against a fixed null whose
    /// cumulants are `psi` (from [`TiltGrid::cumulants`]), with its derivative in `successes`.
    pub(crate) fn log_mixture_in_successes(
        &self,
        trials: f64,
        successes: f64,
        psi: &[f64; TILTS.len()],
        side: Side,
    ) -> (f64, f64) {
        let lambda = &self.lambda[Self::index(side)];
        let mut exponent = [0.0; TILTS.len()];
        let mut max = f64::NEG_INFINITY;
        for j in 0..TILTS.len() {
            exponent[j] = lambda[j] * successes - trials * psi[j];
            max = max.max(exponent[j]);
        }
        let (mut sum, mut slope) = (0.0, 0.0);
        for j in 0..TILTS.len() {
            let weight = (exponent[j] - max).exp();
            sum += weight;
            slope += weight * lambda[j];
        }
        (max + sum.ln() - self.ln_size, slope / sum)
    }
}

/// A function's value with its first two derivatives.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Derivatives {
    pub(crate) value: f64,
    pub(crate) first: f64,
    pub(crate) second: f64,
}

/// The minimum of a convex function on `[lo, hi]` and where it is, by Newton's method kept
/// inside a shrinking bracket (bisection whenever a Newton step would leave it). `start` is a
/// guess of the minimiser, typically the previous answer.
pub(crate) fn minimise_convex(
    f: impl Fn(f64) -> Derivatives,
    lo: f64,
    hi: f64,
    start: f64,
) -> (f64, f64) {
    let (mut a, mut b) = (lo, hi);
    let mut x = if start.is_finite() {
        start.clamp(lo, hi)
    } else {
        0.5 * (lo + hi)
    };
    let mut best = (f64::INFINITY, x);
    for _ in 0..200 {
        let d = f(x);
        if d.value < best.0 {
            best = (d.value, x);
        }
        if d.first > 0.0 {
            if x <= lo {
                return (d.value, x);
            }
            b = x;
        } else if d.first < 0.0 {
            if x >= hi {
                return (d.value, x);
            }
            a = x;
        } else {
            return (d.value, x);
        }
        let newton = x - d.first / d.second;
        let next = if d.second > 0.0 && newton > a && newton < b {
            newton
        } else if d.second > 0.0 && newton <= a && a == lo {
            lo
        } else if d.second > 0.0 && newton >= b && b == hi {
            hi
        } else {
            0.5 * (a + b)
        };
        if (next - x).abs() <= 1e-13 || b - a <= 1e-15 {
            return best;
        }
        x = next;
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The mixture and its derivatives agree with a direct evaluation and finite differences.
    #[test]
    fn derivatives_in_p_match_finite_differences() {
        let grid = TiltGrid::new();
        for side in [Side::Up, Side::Down] {
            for (n, s, p) in [(100.0, 3.0, 0.02), (5000.0, 48.0, 0.013), (10.0, 0.0, 0.4)] {
                let d = grid.log_mixture_in_p(n, s, p, side);
                let direct: f64 = (1.0
                    + TILTS
                        .iter()
                        .map(|t| {
                            let l = if side == Side::Up { *t } else { -t };
                            (l * s - n * (1.0 - p + p * l.exp()).ln()).exp()
                        })
                        .sum::<f64>())
                    / (TILTS.len() + 1) as f64;
                assert!((d.value - direct.ln()).abs() < 1e-9, "{side:?} {n} {s} {p}");
                let h = 1e-6;
                let up = grid.log_mixture_in_p(n, s, p + h, side);
                let down = grid.log_mixture_in_p(n, s, p - h, side);
                let first = (up.value - down.value) / (2.0 * h);
                let second = (up.first - down.first) / (2.0 * h);
                assert!((d.first - first).abs() < 1e-4 * (1.0 + first.abs()));
                assert!((d.second - second).abs() < 1e-3 * (1.0 + second.abs()));
                assert!(d.second >= 0.0, "log-convex in p");
            }
        }
    }

    /// Under its own null the mixture is at most 1 at the maximum-likelihood point.
    #[test]
    fn mixture_is_at_most_one_at_the_observed_rate() {
        let grid = TiltGrid::new();
        for side in [Side::Up, Side::Down] {
            let d = grid.log_mixture_in_p(1000.0, 37.0, 0.037, side);
            assert!(d.value <= 0.0);
        }
    }

    #[test]
    fn minimise_convex_finds_interior_and_boundary_minima() {
        let parabola = |centre: f64| {
            move |x: f64| Derivatives {
                value: (x - centre).powi(2),
                first: 2.0 * (x - centre),
                second: 2.0,
            }
        };
        let (value, at) = minimise_convex(parabola(0.3), 0.0, 1.0, 0.9);
        assert!(value.abs() < 1e-20 && (at - 0.3).abs() < 1e-10);
        let (value, at) = minimise_convex(parabola(-0.5), 0.0, 1.0, 0.5);
        assert!((value - 0.25).abs() < 1e-12 && at == 0.0);
        let (value, at) = minimise_convex(parabola(1.5), 0.0, 1.0, 0.5);
        assert!((value - 0.25).abs() < 1e-12 && at == 1.0);
    }
}
