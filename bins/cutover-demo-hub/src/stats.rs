//! Statistics computed from the traffic the service really serves: a sliding window of request
//! samples for success rate and latency percentiles, a real LRU-ish response cache for the hit
//! rate, the in-flight count as queue depth, and a circuit breaker driven by consecutive 5xx.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Samples older than this leave the window.
pub(crate) const WINDOW: Duration = Duration::from_secs(60);
/// At most this many samples are kept, so memory stays flat under heavy load.
const MAX_SAMPLES: usize = 20_000;
/// Consecutive failures that open the breaker.
const BREAKER_THRESHOLD: u32 = 5;
/// How long the breaker stays open before letting a trial request through (half-open).
const BREAKER_COOLDOWN: Duration = Duration::from_secs(10);

#[derive(Debug, Clone, Copy)]
struct Sample {
    at: Instant,
    micros: u64,
    ok: bool,
}

/// The circuit breaker's state, as the real hub's LLM client reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Breaker {
    Closed,
    HalfOpen,
    Open,
}

impl Breaker {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Breaker::Closed => "closed",
            Breaker::HalfOpen => "half-open",
            Breaker::Open => "open",
        }
    }
}

#[derive(Debug, Default)]
struct BreakerState {
    consecutive_failures: u32,
    opened_at: Option<Instant>,
}

impl BreakerState {
    fn state(&self, now: Instant) -> Breaker {
        match self.opened_at {
            None => Breaker::Closed,
            Some(at) if now.duration_since(at) >= BREAKER_COOLDOWN => Breaker::HalfOpen,
            Some(_) => Breaker::Open,
        }
    }

    fn record(&mut self, ok: bool, now: Instant) {
        if ok {
            self.consecutive_failures = 0;
            // A success while half-open (or closed) closes the breaker.
            if self.state(now) != Breaker::Open {
                self.opened_at = None;
            }
        } else {
            self.consecutive_failures += 1;
            let state = self.state(now);
            if state == Breaker::HalfOpen
                || (state == Breaker::Closed && self.consecutive_failures >= BREAKER_THRESHOLD)
            {
                self.opened_at = Some(now);
            }
        }
    }
}

#[derive(Debug)]
struct Cache {
    capacity: usize,
    tick: u64,
    entries: HashMap<String, u64>,
}

impl Cache {
    /// Looks `key` up, inserting it on a miss (evicting the least recently used entry).
    fn lookup(&mut self, key: &str) -> bool {
        self.tick += 1;
        if self.capacity == 0 {
            return false;
        }
        if let Some(used) = self.entries.get_mut(key) {
            *used = self.tick;
            return true;
        }
        if self.entries.len() >= self.capacity
            && let Some(oldest) = self
                .entries
                .iter()
                .min_by_key(|(_, t)| **t)
                .map(|(k, _)| k.clone())
        {
            self.entries.remove(&oldest);
        }
        self.entries.insert(key.to_owned(), self.tick);
        false
    }
}

/// Everything `/api/stats` and `/metrics` report.
#[derive(Debug)]
pub(crate) struct Stats {
    window: Mutex<VecDeque<Sample>>,
    by_code: Mutex<BTreeMap<u16, u64>>,
    requests: AtomicU64,
    errors: AtomicU64,
    in_flight: AtomicU64,
    cache: Mutex<Cache>,
    cache_hits: AtomicU64,
    cache_misses: AtomicU64,
    breaker: Mutex<BreakerState>,
    leaked: Mutex<Vec<Vec<u8>>>,
    leaked_bytes: AtomicU64,
}

/// A point-in-time summary of the window.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Summary {
    pub(crate) window_requests: u64,
    pub(crate) success_rate: Option<f64>,
    pub(crate) p50_ms: Option<f64>,
    pub(crate) p95_ms: Option<f64>,
    pub(crate) p99_ms: Option<f64>,
}

impl Stats {
    pub(crate) fn new(cache_capacity: usize) -> Self {
        Self {
            window: Mutex::new(VecDeque::new()),
            by_code: Mutex::new(BTreeMap::new()),
            requests: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            in_flight: AtomicU64::new(0),
            cache: Mutex::new(Cache {
                capacity: cache_capacity,
                tick: 0,
                entries: HashMap::new(),
            }),
            cache_hits: AtomicU64::new(0),
            cache_misses: AtomicU64::new(0),
            breaker: Mutex::new(BreakerState::default()),
            leaked: Mutex::new(Vec::new()),
            leaked_bytes: AtomicU64::new(0),
        }
    }

    pub(crate) fn begin(&self) {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
    }

    /// Records a finished request: 5xx answers count as failures.
    pub(crate) fn finish(&self, status: u16, elapsed: Duration) {
        let now = Instant::now();
        let ok = status < 500;
        self.in_flight.fetch_sub(1, Ordering::Relaxed);
        self.requests.fetch_add(1, Ordering::Relaxed);
        if !ok {
            self.errors.fetch_add(1, Ordering::Relaxed);
        }
        *lock(&self.by_code).entry(status).or_insert(0) += 1;
        lock(&self.breaker).record(ok, now);
        let mut window = lock(&self.window);
        window.push_back(Sample {
            at: now,
            micros: elapsed.as_micros() as u64,
            ok,
        });
        while window.len() > MAX_SAMPLES
            || window
                .front()
                .is_some_and(|s| now.duration_since(s.at) > WINDOW)
        {
            window.pop_front();
        }
    }

    pub(crate) fn cache_lookup(&self, key: &str) -> bool {
        let hit = lock(&self.cache).lookup(key);
        if hit {
            self.cache_hits.fetch_add(1, Ordering::Relaxed);
        } else {
            self.cache_misses.fetch_add(1, Ordering::Relaxed);
        }
        hit
    }

    /// Keeps `bytes` of memory alive forever, touching every page so the RSS really grows.
    pub(crate) fn leak(&self, bytes: u64) {
        if bytes == 0 {
            return;
        }
        let block = vec![0xA5u8; usize::try_from(bytes).unwrap_or(usize::MAX)];
        lock(&self.leaked).push(block);
        self.leaked_bytes.fetch_add(bytes, Ordering::Relaxed);
    }

    pub(crate) fn summary(&self) -> Summary {
        let now = Instant::now();
        let window = lock(&self.window);
        let samples: Vec<Sample> = window
            .iter()
            .filter(|s| now.duration_since(s.at) <= WINDOW)
            .copied()
            .collect();
        drop(window);
        if samples.is_empty() {
            return Summary::default();
        }
        let ok = samples.iter().filter(|s| s.ok).count();
        let mut micros: Vec<u64> = samples.iter().map(|s| s.micros).collect();
        micros.sort_unstable();
        let pct = |q: f64| {
            // Nearest-rank percentile: the smallest value with at least q of the samples at or below it.
            let rank = ((q * micros.len() as f64).ceil() as usize).clamp(1, micros.len());
            micros[rank - 1] as f64 / 1000.0
        };
        Summary {
            window_requests: samples.len() as u64,
            success_rate: Some(ok as f64 / samples.len() as f64),
            p50_ms: Some(pct(0.50)),
            p95_ms: Some(pct(0.95)),
            p99_ms: Some(pct(0.99)),
        }
    }

    pub(crate) fn requests(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }

    pub(crate) fn errors(&self) -> u64 {
        self.errors.load(Ordering::Relaxed)
    }

    pub(crate) fn in_flight(&self) -> u64 {
        self.in_flight.load(Ordering::Relaxed)
    }

    pub(crate) fn by_code(&self) -> BTreeMap<u16, u64> {
        lock(&self.by_code).clone()
    }

    pub(crate) fn cache_counts(&self) -> (u64, u64) {
        (
            self.cache_hits.load(Ordering::Relaxed),
            self.cache_misses.load(Ordering::Relaxed),
        )
    }

    pub(crate) fn cache_hit_rate(&self) -> Option<f64> {
        let (hits, misses) = self.cache_counts();
        (hits + misses > 0).then(|| hits as f64 / (hits + misses) as f64)
    }

    pub(crate) fn cache_size(&self) -> usize {
        lock(&self.cache).entries.len()
    }

    pub(crate) fn breaker(&self) -> Breaker {
        lock(&self.breaker).state(Instant::now())
    }

    pub(crate) fn leaked_bytes(&self) -> u64 {
        self.leaked_bytes.load(Ordering::Relaxed)
    }
}

/// Locks a mutex, recovering the data if a panicking thread poisoned it (the counters stay usable).
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The resident set size of this process, from /proc/self/status.
pub(crate) fn rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_and_success_rate_follow_samples() {
        let stats = Stats::new(4);
        for ms in 1..=100u64 {
            stats.begin();
            stats.finish(if ms <= 10 { 500 } else { 200 }, Duration::from_millis(ms));
        }
        let s = stats.summary();
        assert_eq!(s.window_requests, 100);
        assert_eq!(s.success_rate, Some(0.9));
        assert_eq!(s.p50_ms, Some(50.0));
        assert_eq!(s.p95_ms, Some(95.0));
        assert_eq!(s.p99_ms, Some(99.0));
        assert_eq!(stats.errors(), 10);
        assert_eq!(stats.in_flight(), 0);
    }

    #[test]
    fn empty_window_reports_no_data() {
        let s = Stats::new(4).summary();
        assert_eq!(s.success_rate, None);
        assert_eq!(s.p95_ms, None);
    }

    #[test]
    fn breaker_opens_after_consecutive_failures_and_half_opens_after_cooldown() {
        let mut b = BreakerState::default();
        let t0 = Instant::now();
        for _ in 0..4 {
            b.record(false, t0);
        }
        assert_eq!(b.state(t0), Breaker::Closed);
        b.record(false, t0);
        assert_eq!(b.state(t0), Breaker::Open);
        let later = t0 + BREAKER_COOLDOWN;
        assert_eq!(b.state(later), Breaker::HalfOpen);
        b.record(false, later);
        assert_eq!(
            b.state(later),
            Breaker::Open,
            "a failure while half-open opens it again"
        );
        let later2 = later + BREAKER_COOLDOWN;
        b.record(true, later2);
        assert_eq!(b.state(later2), Breaker::Closed);
    }

    #[test]
    fn cache_hits_after_first_miss_and_zero_capacity_always_misses() {
        let stats = Stats::new(2);
        assert!(!stats.cache_lookup("a"));
        assert!(stats.cache_lookup("a"));
        assert_eq!(stats.cache_hit_rate(), Some(0.5));
        let none = Stats::new(0);
        assert!(!none.cache_lookup("a"));
        assert!(!none.cache_lookup("a"));
        assert_eq!(none.cache_hit_rate(), Some(0.0));
    }
}
