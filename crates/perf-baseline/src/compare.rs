//! Regression verdicts: a current run against a baseline, metric by metric, with tolerances
//! and a reason for every figure that moved.
//!
//! Load figures are noisy. A verdict from one pair of runs on a shared machine means little at
//! a 5 % tolerance; repeat runs (three or more), compare medians, and look at the spread
//! between repeats before tightening a tolerance below it.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::report::RunReport;
use crate::stats::LatencySummary;

/// A fraction written as a percentage: `"10%"` in text, `0.10` as a number.
#[derive(Debug, Clone, Copy, PartialEq, PartialOrd)]
pub struct Percent(pub f64);

impl FromStr for Percent {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        let value = match s.strip_suffix('%') {
            Some(p) => p.trim().parse::<f64>().map(|v| v / 100.0),
            None => s.parse::<f64>(),
        }
        .map_err(|_| format!("{s:?} is not a percentage (write e.g. \"10%\" or 0.1)"))?;
        if !(value.is_finite() && value >= 0.0) {
            return Err(format!("{s:?} must be a non-negative percentage"));
        }
        Ok(Percent(value))
    }
}

impl fmt::Display for Percent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}%", (self.0 * 1000.0).round() / 10.0)
    }
}

impl Serialize for Percent {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

impl<'de> Deserialize<'de> for Percent {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Text(String),
            Number(f64),
        }
        match Raw::deserialize(d)? {
            Raw::Text(t) => t.parse().map_err(serde::de::Error::custom),
            Raw::Number(n) => n.to_string().parse().map_err(serde::de::Error::custom),
        }
    }
}

impl schemars::JsonSchema for Percent {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Percent".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "description": "A percentage such as \"10%\", or a fraction such as 0.1.",
            "type": ["string", "number"]
        })
    }
}

/// How far each figure may move before the verdict changes (`[perf.tolerances]`).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct Tolerances {
    /// Allowed p50 growth.
    pub p50: Percent,
    /// Allowed p95 growth.
    pub p95: Percent,
    /// Allowed p99 growth (the tail is the noisiest figure).
    pub p99: Percent,
    /// Allowed relative growth of the error rate.
    pub error_rate: Percent,
    /// Error-rate growth below this many percentage points is ignored (0 to 1 error is noise).
    pub error_rate_floor: Percent,
    /// Allowed drop in requests per second.
    pub throughput: Percent,
    /// Allowed growth of the target's peak RSS.
    pub rss: Percent,
    /// Latency changes smaller than this many milliseconds are ignored whatever their ratio.
    pub latency_floor_ms: f64,
}

impl Default for Tolerances {
    fn default() -> Self {
        Self {
            p50: Percent(0.10),
            p95: Percent(0.10),
            p99: Percent(0.20),
            error_rate: Percent(0.50),
            error_rate_floor: Percent(0.001),
            throughput: Percent(0.15),
            rss: Percent(0.05),
            latency_floor_ms: 1.0,
        }
    }
}

/// The overall judgement.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    /// Nothing moved beyond its tolerance.
    Pass,
    /// Something got worse beyond its tolerance.
    Regressed,
    /// Nothing got worse and something got better beyond its tolerance.
    Improved,
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Verdict::Pass => "pass",
            Verdict::Regressed => "regressed",
            Verdict::Improved => "improved",
        })
    }
}

/// How one figure moved.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Movement {
    /// Within tolerance.
    Within,
    /// Worse beyond tolerance.
    Regressed,
    /// Better beyond tolerance.
    Improved,
}

/// One figure compared.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Reason {
    /// The figure (`p95_ms`, `error_rate`, `requests_per_sec`, `rss_peak_bytes`).
    pub metric: String,
    /// Its baseline value.
    pub baseline: f64,
    /// Its current value.
    pub current: f64,
    /// current / baseline (`null` when the baseline is 0).
    pub ratio: Option<f64>,
    /// The tolerance applied.
    pub tolerance: String,
    /// How it moved.
    pub movement: Movement,
    /// One sentence for people.
    pub message: String,
}

/// The result of [`compare`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Comparison {
    /// The verdict.
    pub verdict: Verdict,
    /// Every figure compared, worst first.
    pub reasons: Vec<Reason>,
    /// How to read the verdict given the noise of load figures.
    pub guidance: String,
}

/// Compares `current` with `baseline` (overall figures) under `tol`.
#[tracing::instrument(skip_all)]
pub fn compare(baseline: &RunReport, current: &RunReport, tol: &Tolerances) -> Comparison {
    let b = LatencySummary::of(&baseline.overall.latency);
    let c = LatencySummary::of(&current.overall.latency);
    let mut reasons = vec![
        latency("p50_ms", b.p50, c.p50, tol.p50, tol.latency_floor_ms),
        latency("p95_ms", b.p95, c.p95, tol.p95, tol.latency_floor_ms),
        latency("p99_ms", b.p99, c.p99, tol.p99, tol.latency_floor_ms),
        error_rate(
            baseline.overall.error_rate(),
            current.overall.error_rate(),
            tol,
        ),
        throughput(
            baseline.requests_per_sec(),
            current.requests_per_sec(),
            tol.throughput,
        ),
    ];
    if let (Some(rb), Some(rc)) = (&baseline.resources, &current.resources) {
        reasons.push(rss(
            rb.rss_peak_bytes as f64,
            rc.rss_peak_bytes as f64,
            tol.rss,
        ));
    }
    reasons.sort_by_key(|r| match r.movement {
        Movement::Regressed => 0,
        Movement::Improved => 1,
        Movement::Within => 2,
    });
    let verdict = if reasons.iter().any(|r| r.movement == Movement::Regressed) {
        Verdict::Regressed
    } else if reasons.iter().any(|r| r.movement == Movement::Improved) {
        Verdict::Improved
    } else {
        Verdict::Pass
    };
    let guidance =
        "Load figures are noisy: repeat each run at least 3 times, compare medians, and \
                    keep every tolerance above the spread seen between repeats of the same build."
            .to_owned();
    Comparison {
        verdict,
        reasons,
        guidance,
    }
}

fn ratio(b: f64, c: f64) -> Option<f64> {
    (b > 0.0).then(|| c / b)
}

fn latency(metric: &str, b: f64, c: f64, tol: Percent, floor_ms: f64) -> Reason {
    let r = ratio(b, c);
    let big_enough = (c - b).abs() >= floor_ms;
    let movement = match r {
        Some(r) if big_enough && r > 1.0 + tol.0 => Movement::Regressed,
        Some(r) if big_enough && r < 1.0 - tol.0 => Movement::Improved,
        None if big_enough && c > b => Movement::Regressed,
        _ => Movement::Within,
    };
    let change = r.map_or_else(
        || "from zero".to_owned(),
        |r| format!("{:+.1}%", (r - 1.0) * 100.0),
    );
    let message = format!(
        "{metric} {b:.3} -> {c:.3} ms ({change}; allowed +{tol}, changes under {floor_ms} ms ignored)"
    );
    Reason {
        metric: metric.to_owned(),
        baseline: b,
        current: c,
        ratio: r,
        tolerance: tol.to_string(),
        movement,
        message,
    }
}

fn error_rate(b: f64, c: f64, tol: &Tolerances) -> Reason {
    let r = ratio(b, c);
    let grew = c - b > tol.error_rate_floor.0 && c > b * (1.0 + tol.error_rate.0);
    let shrank = b - c > tol.error_rate_floor.0 && c < b * (1.0 - tol.error_rate.0);
    let movement = if grew {
        Movement::Regressed
    } else if shrank {
        Movement::Improved
    } else {
        Movement::Within
    };
    let message = format!(
        "error rate {:.3}% -> {:.3}% (allowed +{} relative, changes under {} points ignored)",
        b * 100.0,
        c * 100.0,
        tol.error_rate,
        tol.error_rate_floor
    );
    Reason {
        metric: "error_rate".to_owned(),
        baseline: b,
        current: c,
        ratio: r,
        tolerance: tol.error_rate.to_string(),
        movement,
        message,
    }
}

fn throughput(b: f64, c: f64, tol: Percent) -> Reason {
    let r = ratio(b, c);
    let movement = match r {
        Some(r) if r < 1.0 - tol.0 => Movement::Regressed,
        Some(r) if r > 1.0 + tol.0 => Movement::Improved,
        _ => Movement::Within,
    };
    let change = r.map_or_else(
        || "from zero".to_owned(),
        |r| format!("{:+.1}%", (r - 1.0) * 100.0),
    );
    let message = format!("throughput {b:.1} -> {c:.1} requests/s ({change}; allowed -{tol})");
    Reason {
        metric: "requests_per_sec".to_owned(),
        baseline: b,
        current: c,
        ratio: r,
        tolerance: tol.to_string(),
        movement,
        message,
    }
}

fn rss(b: f64, c: f64, tol: Percent) -> Reason {
    let r = ratio(b, c);
    let movement = match r {
        Some(r) if r > 1.0 + tol.0 => Movement::Regressed,
        Some(r) if r < 1.0 - tol.0 => Movement::Improved,
        _ => Movement::Within,
    };
    let mib = |x: f64| x / (1024.0 * 1024.0);
    let change = r.map_or_else(
        || "from zero".to_owned(),
        |r| format!("{:+.1}%", (r - 1.0) * 100.0),
    );
    let message = format!(
        "target peak RSS {:.1} -> {:.1} MiB ({change}; allowed +{tol})",
        mib(b),
        mib(c)
    );
    Reason {
        metric: "rss_peak_bytes".to_owned(),
        baseline: b,
        current: c,
        ratio: r,
        tolerance: tol.to_string(),
        movement,
        message,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percents_parse_from_text_and_numbers() {
        assert_eq!("10%".parse::<Percent>().unwrap(), Percent(0.1));
        assert_eq!("0.25".parse::<Percent>().unwrap(), Percent(0.25));
        assert!("ten".parse::<Percent>().is_err());
        assert!("-5%".parse::<Percent>().is_err());
        assert_eq!(Percent(0.1).to_string(), "10%");
        #[derive(Deserialize)]
        struct T {
            a: Percent,
            b: Percent,
        }
        let t: T = serde_json::from_str(r#"{"a":"15%","b":0.2}"#).unwrap();
        assert_eq!((t.a, t.b), (Percent(0.15), Percent(0.2)));
    }

    #[test]
    fn small_latency_changes_under_the_floor_are_ignored() {
        assert_eq!(
            latency("p50_ms", 0.1, 0.2, Percent(0.1), 1.0).movement,
            Movement::Within
        );
        assert_eq!(
            latency("p50_ms", 10.0, 12.0, Percent(0.1), 1.0).movement,
            Movement::Regressed
        );
        assert_eq!(
            latency("p50_ms", 10.0, 8.0, Percent(0.1), 1.0).movement,
            Movement::Improved
        );
        assert_eq!(
            latency("p50_ms", 10.0, 10.5, Percent(0.1), 0.0).movement,
            Movement::Within
        );
    }

    #[test]
    fn error_rate_needs_both_relative_and_absolute_growth() {
        let t = Tolerances::default();
        assert_eq!(error_rate(0.0, 0.00001, &t).movement, Movement::Within);
        assert_eq!(error_rate(0.0, 0.05, &t).movement, Movement::Regressed);
        assert_eq!(error_rate(0.10, 0.12, &t).movement, Movement::Within);
        assert_eq!(error_rate(0.10, 0.20, &t).movement, Movement::Regressed);
        assert_eq!(error_rate(0.20, 0.0, &t).movement, Movement::Improved);
    }

    #[test]
    fn throughput_and_rss_directions() {
        assert_eq!(
            throughput(1000.0, 800.0, Percent(0.15)).movement,
            Movement::Regressed
        );
        assert_eq!(
            throughput(1000.0, 900.0, Percent(0.15)).movement,
            Movement::Within
        );
        assert_eq!(
            throughput(1000.0, 1200.0, Percent(0.15)).movement,
            Movement::Improved
        );
        assert_eq!(
            rss(100.0, 110.0, Percent(0.05)).movement,
            Movement::Regressed
        );
        assert_eq!(rss(100.0, 103.0, Percent(0.05)).movement, Movement::Within);
    }
}
