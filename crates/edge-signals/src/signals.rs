//! Golden signals from edge log lines: a sliding window by the log's own timestamps, and
//! running totals for Prometheus.
//!
//! The window keeps one compact sample per request (16 bytes: time, latency, status, group),
//! at most [`SignalOptions::max_samples`] of them, and builds HDR histograms (3 significant
//! digits) when asked; totals keep one counter and fixed histogram buckets per series. Both are
//! bounded: groups (location × slot) by [`MAX_GROUPS`], series (group × status) by
//! [`MAX_SERIES`]; beyond, requests are counted under `(other)`.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::time::Duration;

use hdrhistogram::Histogram;
use serde::Serialize;

use crate::line::EdgeLine;

/// The default window: one minute.
pub const DEFAULT_WINDOW: Duration = Duration::from_secs(60);
/// The default cap on samples in the window (16 MiB): 17,000 requests/s for a minute.
pub const DEFAULT_MAX_SAMPLES: usize = 1 << 20;
/// Distinct (location, slot) pairs tracked; more fold into `(other)`.
pub const MAX_GROUPS: usize = 256;
/// Distinct (group, status) series totalled; more fold into status `other`.
pub const MAX_SERIES: usize = 4096;
/// Latencies are recorded in milliseconds up to an hour (longer ones count as an hour).
const MAX_LATENCY_MS: u64 = 3_600_000;
/// The upper bounds (seconds) of the Prometheus latency histogram's buckets.
pub const DURATION_BUCKETS: [f64; 12] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];
/// The name under which requests beyond the caps are counted.
pub const OTHER: &str = "(other)";
/// The slot of requests no upstream answered (rate-limited, redirected, denied).
pub const NO_UPSTREAM: &str = "none";

/// What an upstream address is in the deployment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SlotInfo {
    /// The slot's name (`blue`, `green`, `single`).
    pub slot: String,
    /// The release it runs, when known.
    pub release: Option<String>,
}

/// Upstream addresses (`127.0.0.1:7001`, as nginx writes them) to the slots they are;
/// an address not in the map is its own slot name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SlotMap {
    by_addr: BTreeMap<String, SlotInfo>,
}

impl SlotMap {
    /// An empty map: every address is named as itself.
    pub fn new() -> Self {
        Self::default()
    }

    /// Names `addr` as `slot` running `release`.
    pub fn insert(
        &mut self,
        addr: impl Into<String>,
        slot: impl Into<String>,
        release: Option<String>,
    ) {
        self.by_addr.insert(
            addr.into(),
            SlotInfo {
                slot: slot.into(),
                release,
            },
        );
    }

    fn lookup(&self, addr: Option<&str>) -> (String, Option<String>) {
        match addr {
            None => (NO_UPSTREAM.to_owned(), None),
            Some(a) => match self.by_addr.get(a) {
                Some(info) => (info.slot.clone(), info.release.clone()),
                None => (a.to_owned(), None),
            },
        }
    }
}

/// How signals are computed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignalOptions {
    /// The sliding window (default one minute).
    pub window: Duration,
    /// The most samples the window keeps; when more requests fall in the window, the oldest
    /// are dropped and the report says `truncated`.
    pub max_samples: usize,
    /// Upstream addresses to slots.
    pub slots: SlotMap,
}

impl Default for SignalOptions {
    fn default() -> Self {
        Self {
            window: DEFAULT_WINDOW,
            max_samples: DEFAULT_MAX_SAMPLES,
            slots: SlotMap::new(),
        }
    }
}

/// One request in the window.
#[derive(Debug, Clone, Copy)]
struct Sample {
    time_ms: i64,
    latency_ms: u32,
    status: u16,
    group: u16,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Group {
    location: String,
    slot: String,
    release: Option<String>,
}

/// Running totals of one series (a group and a status).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SeriesTotal {
    /// Requests.
    pub count: u64,
    /// Requests at or under each of [`DURATION_BUCKETS`] (cumulative, as Prometheus wants).
    pub buckets: [u64; DURATION_BUCKETS.len()],
    /// The sum of their latencies, in seconds.
    pub sum_seconds: f64,
}

/// One Prometheus series: its labels and totals.
#[derive(Debug, Clone, PartialEq)]
pub struct Series<'a> {
    /// The location that served the requests.
    pub location: &'a str,
    /// The slot that answered (`none` when no upstream did).
    pub slot: &'a str,
    /// The release in that slot (empty when unknown).
    pub release: &'a str,
    /// The status code (`other` beyond the series cap).
    pub status: String,
    /// The totals.
    pub total: &'a SeriesTotal,
}

/// The signals of one set of requests in the window.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Signals {
    /// Requests that ended in the window.
    pub requests: u64,
    /// `requests` over the window's length.
    pub requests_per_sec: f64,
    /// Answers 500–599: failures of the service.
    pub status_5xx: u64,
    /// 429: turned away by a rate limit (not a failure of the service).
    pub status_429: u64,
    /// 499: the client went away before the answer (not counted as a failure).
    pub status_499: u64,
    /// Other 4xx answers (the client's mistake, served correctly).
    pub status_4xx: u64,
    /// The share (0–1) of judged requests (all but 429 and 499) that were not 5xx; `None` when
    /// none was judged: no data, never 100 % or 0 %.
    pub success_rate: Option<f64>,
    /// Median latency in milliseconds (nginx `$request_time`) of the judged requests (429s and
    /// 499s are not the service's latency); `None` with none.
    pub p50_ms: Option<f64>,
    /// 95th percentile latency in milliseconds.
    pub p95_ms: Option<f64>,
    /// 99th percentile latency in milliseconds.
    pub p99_ms: Option<f64>,
    /// The slowest request in milliseconds.
    pub max_ms: Option<f64>,
}

/// A slot's signals with the release it runs.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct SlotSignals {
    /// The release, when the slot map knows it.
    pub release: Option<String>,
    /// Its signals.
    #[serde(flatten)]
    pub signals: Signals,
}

/// The window at one instant: overall, per location and per slot.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WindowReport {
    /// The window's length in seconds.
    pub window_seconds: f64,
    /// Its end (the `now` it was asked for), milliseconds since the Unix epoch.
    pub end_ms: i64,
    /// Every request.
    pub overall: Signals,
    /// By location (`$cutover_location`).
    pub locations: BTreeMap<String, Signals>,
    /// By the slot that answered.
    pub slots: BTreeMap<String, SlotSignals>,
    /// Whether requests in the window were dropped because it held more than the sample cap.
    pub truncated: bool,
}

impl WindowReport {
    /// The signals of `location` (all requests when `None`); `None` when the window holds no
    /// request to it.
    pub fn for_location(&self, location: Option<&str>) -> Option<&Signals> {
        match location {
            None => Some(&self.overall).filter(|s| s.requests > 0),
            Some(l) => self.locations.get(l).filter(|s| s.requests > 0),
        }
    }
}

/// Signals from edge log lines: feed lines with [`EdgeSignals::record`], ask for the window
/// with [`EdgeSignals::window`] and for totals with [`EdgeSignals::series`].
#[derive(Debug)]
pub struct EdgeSignals {
    options: SignalOptions,
    groups: Vec<Group>,
    group_index: HashMap<Group, u16>,
    samples: VecDeque<Sample>,
    /// The newest time a dropped (capped) sample had: the window is truncated while it is in it.
    dropped_until_ms: Option<i64>,
    newest_ms: i64,
    totals: HashMap<(u16, u16), SeriesTotal>,
}

impl EdgeSignals {
    /// Empty signals computed as `options` says.
    pub fn new(options: SignalOptions) -> Self {
        Self {
            options,
            groups: Vec::new(),
            group_index: HashMap::new(),
            samples: VecDeque::new(),
            dropped_until_ms: None,
            newest_ms: i64::MIN,
            totals: HashMap::new(),
        }
    }

    /// The options in use.
    pub fn options(&self) -> &SignalOptions {
        &self.options
    }

    /// Replaces the slot map (after a deploy moved releases); requests already recorded keep
    /// the names they were recorded under.
    pub fn set_slots(&mut self, slots: SlotMap) {
        self.options.slots = slots;
    }

    fn window_ms(&self) -> i64 {
        i64::try_from(self.options.window.as_millis()).unwrap_or(i64::MAX)
    }

    fn group_of(&mut self, line: &EdgeLine<'_>) -> u16 {
        let (slot, release) = self.options.slots.lookup(line.upstream_addr.as_deref());
        let key = Group {
            location: line.location.clone().into_owned(),
            slot,
            release,
        };
        if let Some(&i) = self.group_index.get(&key) {
            return i;
        }
        let key = if self.groups.len() < MAX_GROUPS - 1 {
            key
        } else {
            Group {
                location: OTHER.to_owned(),
                slot: OTHER.to_owned(),
                release: None,
            }
        };
        if let Some(&i) = self.group_index.get(&key) {
            return i;
        }
        let i = u16::try_from(self.groups.len()).unwrap_or(u16::MAX);
        self.groups.push(key.clone());
        self.group_index.insert(key, i);
        i
    }

    /// Records one request: in the totals always, in the window unless it is older than the
    /// window before the newest request seen.
    pub fn record(&mut self, line: &EdgeLine<'_>) {
        let group = self.group_of(line);
        let status =
            if self.totals.len() < MAX_SERIES || self.totals.contains_key(&(group, line.status)) {
                line.status
            } else {
                0
            };
        let total = self.totals.entry((group, status)).or_default();
        total.count += 1;
        let seconds = f64::from(line.request_ms) / 1000.0;
        total.sum_seconds += seconds;
        for (bucket, le) in total.buckets.iter_mut().zip(DURATION_BUCKETS) {
            if seconds <= le {
                *bucket += 1;
            }
        }
        self.newest_ms = self.newest_ms.max(line.time_ms);
        let horizon = self.newest_ms.saturating_sub(self.window_ms());
        while self.samples.front().is_some_and(|s| s.time_ms <= horizon) {
            self.samples.pop_front();
        }
        if line.time_ms <= horizon {
            return;
        }
        if self.samples.len() >= self.options.max_samples.max(1)
            && let Some(dropped) = self.samples.pop_front()
        {
            self.dropped_until_ms = Some(
                self.dropped_until_ms
                    .map_or(dropped.time_ms, |t| t.max(dropped.time_ms)),
            );
        }
        self.samples.push_back(Sample {
            time_ms: line.time_ms,
            latency_ms: line.request_ms,
            status: line.status,
            group,
        });
    }

    /// Samples held in the window now (bounded by [`SignalOptions::max_samples`]).
    pub fn samples_held(&self) -> usize {
        self.samples.len()
    }

    /// Groups and series tracked (bounded by [`MAX_GROUPS`] and [`MAX_SERIES`]).
    pub fn groups_and_series(&self) -> (usize, usize) {
        (self.groups.len(), self.totals.len())
    }

    /// The window ending at `now`: requests whose log time is in (`now − window`, `now`].
    pub fn window(&self, now: jiff::Timestamp) -> WindowReport {
        let end_ms = now.as_millisecond();
        let start_ms = end_ms.saturating_sub(self.window_ms());
        let window_seconds = self.options.window.as_secs_f64();
        let mut overall = Accumulator::default();
        let mut locations: BTreeMap<&str, Accumulator> = BTreeMap::new();
        let mut slots: BTreeMap<&str, (Option<&str>, Accumulator)> = BTreeMap::new();
        for s in self
            .samples
            .iter()
            .filter(|s| s.time_ms > start_ms && s.time_ms <= end_ms)
        {
            let Some(group) = self.groups.get(usize::from(s.group)) else {
                continue;
            };
            overall.add(s);
            locations.entry(group.location.as_str()).or_default().add(s);
            let slot = slots
                .entry(group.slot.as_str())
                .or_insert_with(|| (group.release.as_deref(), Accumulator::default()));
            // The release most recently seen in the slot names it.
            slot.0 = group.release.as_deref().or(slot.0);
            slot.1.add(s);
        }
        WindowReport {
            window_seconds,
            end_ms,
            overall: overall.finish(window_seconds),
            locations: locations
                .into_iter()
                .map(|(k, a)| (k.to_owned(), a.finish(window_seconds)))
                .collect(),
            slots: slots
                .into_iter()
                .map(|(k, (release, a))| {
                    (
                        k.to_owned(),
                        SlotSignals {
                            release: release.map(str::to_owned),
                            signals: a.finish(window_seconds),
                        },
                    )
                })
                .collect(),
            truncated: self.dropped_until_ms.is_some_and(|t| t > start_ms),
        }
    }

    /// Every series' totals since these signals were created, in a stable order.
    pub fn series(&self) -> Vec<Series<'_>> {
        let mut out: Vec<Series<'_>> = self
            .totals
            .iter()
            .filter_map(|(&(g, status), total)| {
                let group = self.groups.get(usize::from(g))?;
                Some(Series {
                    location: &group.location,
                    slot: &group.slot,
                    release: group.release.as_deref().unwrap_or(""),
                    status: if status == 0 {
                        "other".to_owned()
                    } else {
                        status.to_string()
                    },
                    total,
                })
            })
            .collect();
        out.sort_by(|a, b| {
            (a.location, a.slot, a.release, &a.status)
                .cmp(&(b.location, b.slot, b.release, &b.status))
        });
        out
    }
}

#[derive(Default)]
struct Accumulator {
    requests: u64,
    s5xx: u64,
    s429: u64,
    s499: u64,
    s4xx: u64,
    histogram: Option<Histogram<u64>>,
}

impl Accumulator {
    fn add(&mut self, s: &Sample) {
        self.requests += 1;
        match s.status {
            // Neither is a latency of the service: a 429 is nginx turning the request away at
            // once, a 499 how long the client waited before it left.
            429 => {
                self.s429 += 1;
                return;
            }
            499 => {
                self.s499 += 1;
                return;
            }
            500..=599 => self.s5xx += 1,
            400..=498 => self.s4xx += 1,
            _ => {}
        }
        if self.histogram.is_none() {
            self.histogram = Histogram::new_with_bounds(1, MAX_LATENCY_MS, 3).ok();
        }
        if let Some(h) = self.histogram.as_mut() {
            h.saturating_record(u64::from(s.latency_ms).min(MAX_LATENCY_MS));
        }
    }

    fn finish(self, window_seconds: f64) -> Signals {
        let judged = self.requests - self.s429 - self.s499;
        let quantile = |q: f64| {
            self.histogram
                .as_ref()
                .filter(|h| !h.is_empty())
                .map(|h| h.value_at_quantile(q) as f64)
        };
        Signals {
            requests: self.requests,
            requests_per_sec: if window_seconds > 0.0 {
                self.requests as f64 / window_seconds
            } else {
                0.0
            },
            status_5xx: self.s5xx,
            status_429: self.s429,
            status_499: self.s499,
            status_4xx: self.s4xx,
            success_rate: (judged > 0).then(|| (judged - self.s5xx) as f64 / judged as f64),
            p50_ms: quantile(0.50),
            p95_ms: quantile(0.95),
            p99_ms: quantile(0.99),
            max_ms: self
                .histogram
                .as_ref()
                .filter(|h| !h.is_empty())
                .map(|h| h.max() as f64),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::borrow::Cow;

    fn line(
        time_ms: i64,
        status: u16,
        ms: u32,
        location: &'static str,
        addr: Option<&'static str>,
    ) -> EdgeLine<'static> {
        EdgeLine {
            time_ms,
            status,
            request_ms: ms,
            upstream_ms: addr.map(|_| ms),
            upstream_addr: addr.map(Cow::Borrowed),
            method: Cow::Borrowed("GET"),
            location: Cow::Borrowed(location),
            bytes_sent: 100,
        }
    }

    fn at(ms: i64) -> jiff::Timestamp {
        jiff::Timestamp::from_millisecond(ms).unwrap()
    }

    #[test]
    fn an_empty_window_is_no_data_not_a_rate() {
        let signals = EdgeSignals::new(SignalOptions::default());
        let w = signals.window(at(1_000_000));
        assert_eq!(w.overall.requests, 0);
        assert_eq!(w.overall.success_rate, None);
        assert_eq!(w.overall.p95_ms, None);
        assert!(w.for_location(None).is_none());
        assert!(w.for_location(Some("/api/")).is_none());
    }

    #[test]
    fn only_rate_limited_or_abandoned_requests_are_no_success_data() {
        let mut signals = EdgeSignals::new(SignalOptions::default());
        signals.record(&line(1_000, 429, 0, "/api/", None));
        signals.record(&line(1_001, 499, 3000, "/api/", Some("127.0.0.1:7001")));
        let w = signals.window(at(2_000));
        assert_eq!(
            (
                w.overall.requests,
                w.overall.status_429,
                w.overall.status_499
            ),
            (2, 1, 1)
        );
        assert_eq!(w.overall.success_rate, None);
    }

    #[test]
    fn success_rate_counts_5xx_against_judged_requests_per_location_and_slot() {
        let mut options = SignalOptions::default();
        options
            .slots
            .insert("127.0.0.1:7001", "blue", Some("r1".into()));
        options
            .slots
            .insert("127.0.0.1:7002", "green", Some("r2".into()));
        let mut signals = EdgeSignals::new(options);
        let t = 100_000;
        for i in 0..90 {
            signals.record(&line(t + i, 200, 10, "/api/", Some("127.0.0.1:7001")));
        }
        for i in 0..10 {
            signals.record(&line(t + i, 503, 10, "/api/", Some("127.0.0.1:7002")));
        }
        for i in 0..5 {
            signals.record(&line(t + i, 429, 0, "/api/", None));
            signals.record(&line(t + i, 404, 1, "/", Some("127.0.0.1:7001")));
        }
        let w = signals.window(at(t + 1_000));
        let api = &w.locations["/api/"];
        assert_eq!((api.requests, api.status_5xx, api.status_429), (105, 10, 5));
        assert_eq!(api.success_rate, Some(0.9));
        assert_eq!(
            w.locations["/"].success_rate,
            Some(1.0),
            "a 404 is served correctly"
        );
        assert_eq!(w.slots["green"].signals.success_rate, Some(0.0));
        assert_eq!(w.slots["green"].release.as_deref(), Some("r2"));
        assert_eq!(w.slots["blue"].signals.requests, 95);
        assert_eq!(w.slots[NO_UPSTREAM].signals.requests, 5);
        assert!((w.overall.requests_per_sec - 110.0 / 60.0).abs() < 1e-9);
    }

    #[test]
    fn rate_limited_and_abandoned_requests_are_not_latency_samples() {
        let mut signals = EdgeSignals::new(SignalOptions::default());
        let t = 100_000;
        for i in 0..95 {
            signals.record(&line(t + i, 429, 0, "/api/", None));
        }
        signals.record(&line(t, 499, 30_000, "/api/", Some("a:1")));
        for i in 0..5 {
            signals.record(&line(t + i, 200, 50, "/api/", Some("a:1")));
        }
        let w = signals.window(at(t + 1_000));
        let api = &w.locations["/api/"];
        assert_eq!(api.requests, 101);
        assert_eq!((api.p50_ms, api.p99_ms), (Some(50.0), Some(50.0)));
        // Only turned away: no latency at all, not 0 ms.
        let mut only_429 = EdgeSignals::new(SignalOptions::default());
        only_429.record(&line(t, 429, 0, "/api/", None));
        let w = only_429.window(at(t + 1_000));
        assert_eq!(w.overall.p95_ms, None);
        assert_eq!(w.overall.success_rate, None);
    }

    #[test]
    fn percentiles_are_nearest_rank_to_three_digits() {
        let mut signals = EdgeSignals::new(SignalOptions::default());
        for ms in 1..=1000 {
            signals.record(&line(5_000, 200, ms, "/", Some("a:1")));
        }
        let w = signals.window(at(5_000));
        assert_eq!(w.overall.p50_ms, Some(500.0));
        assert_eq!(w.overall.p95_ms, Some(950.0));
        assert_eq!(w.overall.p99_ms, Some(990.0));
        assert_eq!(w.overall.max_ms, Some(1000.0));
        // Beyond 2048 ms values are kept to 3 significant digits.
        signals.record(&line(5_000, 200, 123_456, "/", Some("a:1")));
        let max = signals.window(at(5_000)).overall.max_ms.unwrap();
        assert!((max - 123_456.0).abs() / 123_456.0 < 0.001, "{max}");
    }

    #[test]
    fn the_window_slides_by_log_time_and_now() {
        let mut signals = EdgeSignals::new(SignalOptions {
            window: Duration::from_secs(10),
            ..SignalOptions::default()
        });
        signals.record(&line(1_000, 500, 5, "/", None));
        signals.record(&line(9_000, 200, 5, "/", None));
        assert_eq!(signals.window(at(10_000)).overall.requests, 2);
        assert_eq!(
            signals.window(at(11_000)).overall.requests,
            1,
            "the first slid out"
        );
        assert_eq!(
            signals.window(at(30_000)).overall.requests,
            0,
            "traffic stopped: no data"
        );
        // A newer line evicts samples older than its window; totals keep everything.
        signals.record(&line(25_000, 200, 5, "/", None));
        assert_eq!(signals.samples_held(), 1);
        let total: u64 = signals.series().iter().map(|s| s.total.count).sum();
        assert_eq!(total, 3);
    }

    #[test]
    fn memory_is_capped_and_a_capped_window_says_so() {
        let mut signals = EdgeSignals::new(SignalOptions {
            max_samples: 100,
            ..SignalOptions::default()
        });
        for i in 0..1_000 {
            let location: &'static str = Box::leak(format!("/l{}", i % 400).into_boxed_str());
            signals.record(&line(10_000 + i, 200 + (i % 300) as u16, 1, location, None));
        }
        assert_eq!(signals.samples_held(), 100);
        let (groups, series) = signals.groups_and_series();
        assert!(
            groups <= MAX_GROUPS && series <= MAX_SERIES,
            "{groups} {series}"
        );
        let w = signals.window(at(11_000));
        assert!(w.truncated);
        assert_eq!(w.overall.requests, 100);
        assert_eq!(groups, MAX_GROUPS, "the rest fold into one group");
        assert!(signals.series().iter().any(|s| s.location == OTHER));
    }
}
