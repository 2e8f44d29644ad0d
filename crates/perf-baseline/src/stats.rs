//! Measurement: HdrHistograms (microseconds, 3 significant digits), percentile summaries,
//! errors by kind, and the (de)serialization of histograms as base64 of the V2 format.
//!
//! Histograms auto-resize, so their memory depends on the largest latency seen, never on the
//! number of requests: a run of an hour uses the same memory as a run of a second.

use base64::Engine as _;
use hdrhistogram::Histogram;
use hdrhistogram::serialization::{Deserializer, Serializer as _, V2Serializer};
use serde::{Deserialize, Serialize};

/// Significant digits kept by every histogram.
pub const SIGNIFICANT_DIGITS: u8 = 3;

/// A latency histogram in microseconds.
pub type LatencyHistogram = Histogram<u64>;

/// A new, empty latency histogram (auto-resizing, 3 significant digits).
pub fn new_histogram() -> LatencyHistogram {
    // `new` fails only for more than 5 significant digits; no input reaches this.
    #[allow(clippy::expect_used)]
    Histogram::new(SIGNIFICANT_DIGITS).expect("3 significant digits is within HdrHistogram's 0..=5")
}

/// The value at `quantile` (0..=1) of `hist`, the convention HdrHistogram uses: the smallest
/// recorded value (at histogram precision) such that at least `ceil(quantile * count)` values
/// are at or below it.
pub fn percentile_us(hist: &LatencyHistogram, quantile: f64) -> u64 {
    hist.value_at_quantile(quantile)
}

/// Percentiles of a latency distribution, in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct LatencySummary {
    /// Median.
    pub p50: f64,
    /// 90th percentile.
    pub p90: f64,
    /// 95th percentile.
    pub p95: f64,
    /// 99th percentile.
    pub p99: f64,
    /// 99.9th percentile.
    pub p999: f64,
    /// The largest value.
    pub max: f64,
    /// The smallest value.
    pub min: f64,
    /// The mean.
    pub mean: f64,
    /// The standard deviation.
    pub stdev: f64,
}

fn us_to_ms(us: u64) -> f64 {
    us as f64 / 1000.0
}

impl LatencySummary {
    /// Summarises `hist` (microseconds) in milliseconds; all zero when it is empty.
    pub fn of(hist: &LatencyHistogram) -> Self {
        if hist.is_empty() {
            return Self::default();
        }
        Self {
            p50: us_to_ms(percentile_us(hist, 0.50)),
            p90: us_to_ms(percentile_us(hist, 0.90)),
            p95: us_to_ms(percentile_us(hist, 0.95)),
            p99: us_to_ms(percentile_us(hist, 0.99)),
            p999: us_to_ms(percentile_us(hist, 0.999)),
            max: us_to_ms(hist.max()),
            min: us_to_ms(hist.min()),
            mean: hist.mean() / 1000.0,
            stdev: hist.stdev() / 1000.0,
        }
    }
}

/// Failed requests, by kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ErrorCounts {
    /// Connections that could not be opened.
    pub connect: u64,
    /// Requests with no complete answer within the timeout.
    pub timeout: u64,
    /// Reads or writes that failed, or connections closed in the middle of a response.
    pub io: u64,
    /// Responses that were not valid HTTP/1.1.
    pub protocol: u64,
    /// 4xx answers.
    pub status_4xx: u64,
    /// 5xx answers.
    pub status_5xx: u64,
}

impl ErrorCounts {
    /// All errors together.
    pub fn total(&self) -> u64 {
        self.connect + self.timeout + self.io + self.protocol + self.status_4xx + self.status_5xx
    }

    /// Adds `other` into `self`.
    pub fn add(&mut self, other: &ErrorCounts) {
        self.connect += other.connect;
        self.timeout += other.timeout;
        self.io += other.io;
        self.protocol += other.protocol;
        self.status_4xx += other.status_4xx;
        self.status_5xx += other.status_5xx;
    }
}

/// What was measured for one endpoint, or for all of them together.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Measurement {
    /// Requests that ended (an answer of any status, or a failure after sending), warm-up excluded.
    pub requests: u64,
    /// Failures and 4xx/5xx answers, by kind.
    pub errors: ErrorCounts,
    /// Response bytes received (heads and bodies).
    pub bytes: u64,
    /// Sends that left more than [`crate::LATE_SEND_THRESHOLD`] after their intended time (open
    /// model only).
    pub late_sends: u64,
    /// Latency of every answered request, in microseconds. In the open model it is measured from
    /// the intended send time (coordinated omission corrected).
    #[serde(with = "hist_base64")]
    pub latency: LatencyHistogram,
    /// Open model only: latency from the actual write, which hides the queueing a stall causes.
    #[serde(
        default,
        with = "opt_hist_base64",
        skip_serializing_if = "Option::is_none"
    )]
    pub uncorrected: Option<LatencyHistogram>,
}

impl Measurement {
    /// An empty measurement; `open` adds the uncorrected histogram.
    pub fn new(open: bool) -> Self {
        Self {
            requests: 0,
            errors: ErrorCounts::default(),
            bytes: 0,
            late_sends: 0,
            latency: new_histogram(),
            uncorrected: open.then(new_histogram),
        }
    }

    /// Adds `other` into `self`.
    pub fn merge(&mut self, other: &Measurement) {
        self.requests += other.requests;
        self.errors.add(&other.errors);
        self.bytes += other.bytes;
        self.late_sends += other.late_sends;
        // Auto-resizing histograms accept any value another one holds.
        let _ = self.latency.add(&other.latency);
        match (&mut self.uncorrected, &other.uncorrected) {
            (Some(a), Some(b)) => {
                let _ = a.add(b);
            }
            (None, Some(b)) => self.uncorrected = Some(b.clone()),
            _ => {}
        }
    }

    /// Requests that got an answer (of any status, as wrk counts them): [`Self::requests`]
    /// minus the timeouts, I/O and protocol failures, which are errors beside it, not requests
    /// served. Requests/s is computed from this.
    pub fn completed(&self) -> u64 {
        self.requests
            .saturating_sub(self.errors.timeout + self.errors.io + self.errors.protocol)
    }

    /// Errors divided by requests (0 when nothing was sent).
    pub fn error_rate(&self) -> f64 {
        let attempts = self.requests + self.errors.connect;
        if attempts == 0 {
            0.0
        } else {
            self.errors.total() as f64 / attempts as f64
        }
    }
}

/// Encodes a histogram as base64 of its HdrHistogram V2 serialization.
pub fn encode_histogram(hist: &LatencyHistogram) -> Result<String, String> {
    let mut raw = Vec::new();
    V2Serializer::new()
        .serialize(hist, &mut raw)
        .map_err(|e| format!("{e:?}"))?;
    Ok(base64::engine::general_purpose::STANDARD.encode(raw))
}

/// Decodes what [`encode_histogram`] wrote.
pub fn decode_histogram(text: &str) -> Result<LatencyHistogram, String> {
    let raw = base64::engine::general_purpose::STANDARD
        .decode(text.trim())
        .map_err(|e| format!("not base64: {e}"))?;
    let mut hist: LatencyHistogram = Deserializer::new()
        .deserialize(&mut raw.as_slice())
        .map_err(|e| format!("not an HdrHistogram V2 encoding: {e:?}"))?;
    hist.auto(true);
    Ok(hist)
}

mod hist_base64 {
    use super::*;

    pub(super) fn serialize<S: serde::Serializer>(
        h: &LatencyHistogram,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        s.serialize_str(&encode_histogram(h).map_err(serde::ser::Error::custom)?)
    }

    pub(super) fn deserialize<'de, D: serde::Deserializer<'de>>(
        d: D,
    ) -> Result<LatencyHistogram, D::Error> {
        let text = String::deserialize(d)?;
        decode_histogram(&text).map_err(serde::de::Error::custom)
    }
}

mod opt_hist_base64 {
    use super::*;

    pub(super) fn serialize<S: serde::Serializer>(
        h: &Option<LatencyHistogram>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        match h {
            Some(h) => s.serialize_some(&encode_histogram(h).map_err(serde::ser::Error::custom)?),
            None => s.serialize_none(),
        }
    }

    pub(super) fn deserialize<'de, D: serde::Deserializer<'de>>(
        d: D,
    ) -> Result<Option<LatencyHistogram>, D::Error> {
        match Option::<String>::deserialize(d)? {
            Some(text) => decode_histogram(&text)
                .map(Some)
                .map_err(serde::de::Error::custom),
            None => Ok(None),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The exact percentile by the same convention as HdrHistogram, on sorted raw values.
    fn exact(sorted: &[u64], quantile: f64) -> u64 {
        let rank = ((quantile * sorted.len() as f64).ceil() as usize).max(1);
        sorted[rank.min(sorted.len()) - 1]
    }

    proptest! {
        #[test]
        fn percentiles_match_exact_sorted_values_within_hdr_precision(
            values in proptest::collection::vec(1u64..60_000_000, 1..2000),
        ) {
            let mut hist = new_histogram();
            for &v in &values {
                hist.record(v).unwrap();
            }
            let mut sorted = values.clone();
            sorted.sort_unstable();
            for q in [0.5, 0.9, 0.95, 0.99, 0.999, 1.0] {
                let want = exact(&sorted, q);
                let got = percentile_us(&hist, q);
                // 3 significant digits: a value is known to within 1/1000 of itself (plus the
                // unit at the bottom of the range).
                let slack = want / 1000 + 1;
                prop_assert!(got.abs_diff(want) <= slack, "q={} want={} got={}", q, want, got);
            }
            let summary = LatencySummary::of(&hist);
            prop_assert!(summary.p50 <= summary.p90 && summary.p90 <= summary.p99);
            prop_assert!(summary.p99 <= summary.p999 && summary.p999 <= summary.max);
        }

        #[test]
        fn histograms_round_trip_through_base64_v2(
            values in proptest::collection::vec(1u64..10_000_000, 0..500),
        ) {
            let mut hist = new_histogram();
            for &v in &values {
                hist.record(v).unwrap();
            }
            let back = decode_histogram(&encode_histogram(&hist).unwrap()).unwrap();
            prop_assert_eq!(back.len(), hist.len());
            prop_assert_eq!(back.max(), hist.max());
            prop_assert_eq!(LatencySummary::of(&back), LatencySummary::of(&hist));
        }
    }

    #[test]
    fn garbage_is_not_a_histogram() {
        assert!(decode_histogram("!!!").unwrap_err().contains("base64"));
        assert!(decode_histogram("aGVsbG8=").unwrap_err().contains("V2"));
    }

    #[test]
    fn empty_histograms_summarise_to_zero_and_merge() {
        assert_eq!(
            LatencySummary::of(&new_histogram()),
            LatencySummary::default()
        );
        let mut a = Measurement::new(true);
        let mut b = Measurement::new(true);
        b.requests = 3;
        b.errors.status_5xx = 1;
        b.latency.record(1000).unwrap();
        a.merge(&b);
        assert_eq!((a.requests, a.errors.total(), a.latency.len()), (3, 1, 1));
        assert!((a.error_rate() - 1.0 / 3.0).abs() < 1e-9);
    }

    #[test]
    fn completed_requests_leave_out_timeouts_and_io_errors_but_keep_error_statuses() {
        let mut m = Measurement::new(false);
        m.requests = 10;
        m.errors.timeout = 2;
        m.errors.io = 1;
        m.errors.protocol = 1;
        m.errors.status_5xx = 3;
        // 5xx answers are answers (wrk counts them too); the four failures are not requests.
        assert_eq!(m.completed(), 6);
        m.requests = 3;
        assert_eq!(m.completed(), 0, "never below zero");
    }

    #[test]
    fn a_run_without_failures_completes_every_request() {
        let mut m = Measurement::new(false);
        m.requests = 7;
        m.errors.status_4xx = 7;
        assert_eq!(m.completed(), 7);
    }
}
