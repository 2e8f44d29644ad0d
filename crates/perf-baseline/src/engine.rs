//! The load engine: a fixed set of connections, one task per connection, request bytes built
//! once, latency timed from just before the write to the end of the body, and per-task
//! histograms merged at the end so that the hot path shares nothing but two counters. As in
//! wrk, the connections are spread over one thread per core, each running its own event loop
//! (measured here: a few percent more requests/s than one work-stealing runtime).
//!
//! * **Closed model** (`connections`): each connection sends its next request as soon as the
//!   previous answer has arrived. Simple and fast, but when the server stalls it sends less, so
//!   its percentiles hide the stall (coordinated omission).
//! * **Open model** (`rate`): every request has an intended send time on a fixed schedule
//!   (`rate` per second spread over the connections). Latency is measured from the *intended*
//!   time, so time spent waiting behind a stalled request counts; the latency from the actual
//!   write is reported beside it, with the achieved rate and the number of late sends.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU8, AtomicU64, Ordering};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::time::Instant;
use tracing::instrument;

use crate::endpoint::{Endpoint, parse_url, request_bytes, weighted_schedule};
use crate::http1::{Connection, ExchangeError};
use crate::resources::ResourceSampler;
use crate::stats::Measurement;
use crate::{PerfError, RunReport};

/// A send leaving later than this after its intended time counts as late (open model). Timers
/// have a resolution of 1 ms, so smaller delays are scheduling noise rather than back-pressure.
pub const LATE_SEND_THRESHOLD: Duration = Duration::from_millis(2);

/// How long a connection waits before trying again after a failed connect.
const RECONNECT_BACKOFF: Duration = Duration::from_millis(10);

/// How requests are sent.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "model", rename_all = "lowercase")]
pub enum LoadModel {
    /// `connections` connections, each sending as soon as its previous answer arrived.
    Closed {
        /// The number of connections.
        connections: usize,
    },
    /// `rate` requests per second on a fixed schedule spread over `connections` connections.
    Open {
        /// Requests per second, all endpoints together.
        rate: f64,
        /// The number of connections that share the schedule.
        connections: usize,
    },
}

impl LoadModel {
    /// The number of connections.
    pub fn connections(&self) -> usize {
        match *self {
            LoadModel::Closed { connections } | LoadModel::Open { connections, .. } => connections,
        }
    }
}

/// When the measured part of a run ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StopAfter {
    /// After this long (warm-up not included).
    #[serde(with = "humantime_serde")]
    Duration(Duration),
    /// After this many measured requests.
    Requests(u64),
}

/// Everything a run needs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LoadPlan {
    /// The endpoints and their weights.
    pub endpoints: Vec<Endpoint>,
    /// Closed or open model.
    pub model: LoadModel,
    /// When to stop.
    pub stop: StopAfter,
    /// Load sent first and not counted.
    #[serde(with = "humantime_serde")]
    pub warmup: Duration,
    /// The longest a request (or a connect) may take before it counts as a timeout.
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    /// A process whose RSS and CPU are sampled during the run (the target service).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid: Option<u32>,
    /// How often that process is sampled.
    #[serde(with = "humantime_serde")]
    pub sample_interval: Duration,
}

impl LoadPlan {
    /// A closed-model plan of `connections` connections for `duration` against `endpoints`,
    /// no warm-up, 10 s timeout.
    pub fn closed(endpoints: Vec<Endpoint>, connections: usize, duration: Duration) -> Self {
        Self {
            endpoints,
            model: LoadModel::Closed { connections },
            stop: StopAfter::Duration(duration),
            warmup: Duration::ZERO,
            timeout: Duration::from_secs(10),
            pid: None,
            sample_interval: Duration::from_millis(250),
        }
    }

    fn validate(&self) -> Result<(), PerfError> {
        let bad = |reason: &str| {
            Err(PerfError::InvalidPlan {
                reason: reason.to_owned(),
            })
        };
        if self.endpoints.is_empty() {
            return bad("no endpoint to load (give --url or [[perf.endpoint]])");
        }
        if self.endpoints.iter().all(|e| e.weight == 0) {
            return bad("every endpoint has weight 0");
        }
        let connections = self.model.connections();
        if connections == 0 || connections > 100_000 {
            return bad("connections must be between 1 and 100000");
        }
        if let LoadModel::Open { rate, .. } = self.model
            && !(rate.is_finite() && rate > 0.0)
        {
            return bad("rate must be a positive number of requests per second");
        }
        match self.stop {
            StopAfter::Duration(d) if d.is_zero() => bad("duration must be more than zero"),
            StopAfter::Requests(0) => bad("requests must be more than zero"),
            _ if self.timeout.is_zero() => bad("timeout must be more than zero"),
            _ => Ok(()),
        }
    }
}

/// Live counters a progress display can poll while a run goes on.
#[derive(Debug, Default)]
pub struct Progress {
    requests: AtomicU64,
    errors: AtomicU64,
    phase: AtomicU8,
}

/// Where a run is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Sending the uncounted warm-up load.
    WarmingUp,
    /// Measuring.
    Measuring,
    /// Finished.
    Done,
}

impl Progress {
    /// Measured requests so far.
    pub fn requests(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }

    /// Measured errors so far.
    pub fn errors(&self) -> u64 {
        self.errors.load(Ordering::Relaxed)
    }

    /// The current phase.
    pub fn phase(&self) -> Phase {
        match self.phase.load(Ordering::Relaxed) {
            0 => Phase::WarmingUp,
            1 => Phase::Measuring,
            _ => Phase::Done,
        }
    }
}

/// Builds a runtime for the caller of [`run`]: one worker per available core. (The load itself
/// runs on its own per-core threads; this runtime only awaits them and shows progress.)
pub fn build_runtime() -> std::io::Result<tokio::runtime::Runtime> {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(cores)
        .enable_all()
        .build()
}

struct Prepared {
    request: Box<[u8]>,
    head: bool,
    target: usize,
}

struct Shared {
    endpoints: Vec<Prepared>,
    targets: Vec<SocketAddr>,
    schedule: Vec<usize>,
    model: LoadModel,
    timeout: Duration,
    start: Instant,
    warm_end: Instant,
    end: Option<Instant>,
    budget: Option<AtomicI64>,
    progress: Arc<Progress>,
}

struct WorkerResult {
    per_endpoint: Vec<Measurement>,
    last_done: Option<Instant>,
}

/// Runs `plan` on the current (preferably multi-threaded) tokio runtime and reports what it
/// measured. `progress` is updated as requests complete.
#[instrument(skip_all, fields(endpoints = plan.endpoints.len(), model = ?plan.model, stop = ?plan.stop))]
pub async fn run(plan: &LoadPlan, progress: Arc<Progress>) -> Result<RunReport, PerfError> {
    plan.validate()?;
    let mut targets: Vec<SocketAddr> = Vec::new();
    let mut endpoints = Vec::with_capacity(plan.endpoints.len());
    for endpoint in &plan.endpoints {
        let url = parse_url(&endpoint.url)?;
        let addr = resolve(&url.host, url.port, &endpoint.url).await?;
        let target = match targets.iter().position(|t| *t == addr) {
            Some(i) => i,
            None => {
                targets.push(addr);
                targets.len() - 1
            }
        };
        endpoints.push(Prepared {
            request: request_bytes(endpoint, &url)?.into_boxed_slice(),
            head: endpoint.method.eq_ignore_ascii_case("HEAD"),
            target,
        });
    }
    let weights: Vec<u32> = plan.endpoints.iter().map(|e| e.weight).collect();
    let sampler = match plan.pid {
        Some(pid) => Some(ResourceSampler::start(pid, plan.sample_interval)?),
        None => None,
    };
    let started_at = jiff::Timestamp::now();
    let start = Instant::now();
    let warm_end = start + plan.warmup;
    let end = match (plan.stop, plan.model) {
        (StopAfter::Duration(d), _) => Some(warm_end + d),
        (StopAfter::Requests(n), LoadModel::Open { rate, .. }) => {
            Some(warm_end + Duration::from_secs_f64(n as f64 / rate))
        }
        (StopAfter::Requests(_), LoadModel::Closed { .. }) => None,
    };
    let budget = match plan.stop {
        StopAfter::Requests(n) => Some(AtomicI64::new(i64::try_from(n).unwrap_or(i64::MAX))),
        StopAfter::Duration(_) => None,
    };
    progress
        .phase
        .store(if plan.warmup.is_zero() { 1 } else { 0 }, Ordering::Relaxed);
    let shared = Arc::new(Shared {
        endpoints,
        targets,
        schedule: weighted_schedule(&weights),
        model: plan.model,
        timeout: plan.timeout,
        start,
        warm_end,
        end,
        budget,
        progress: progress.clone(),
    });
    let phase_task = (!plan.warmup.is_zero()).then(|| {
        let progress = progress.clone();
        tokio::spawn(async move {
            tokio::time::sleep_until(warm_end).await;
            let _ = progress
                .phase
                .compare_exchange(0, 1, Ordering::Relaxed, Ordering::Relaxed);
        })
    });
    let connections = plan.model.connections();
    let open = matches!(plan.model, LoadModel::Open { .. });
    let mut per_endpoint: Vec<Measurement> = plan
        .endpoints
        .iter()
        .map(|_| Measurement::new(open))
        .collect();
    let mut last_done = None;
    for result in run_workers(&shared, connections).await? {
        for (total, part) in per_endpoint.iter_mut().zip(&result.per_endpoint) {
            total.merge(part);
        }
        last_done = last_done.max(result.last_done);
    }
    if let Some(task) = phase_task {
        task.abort();
    }
    progress.phase.store(2, Ordering::Relaxed);
    let resources = sampler.map(ResourceSampler::stop);
    let window = match end {
        Some(end) => end.saturating_duration_since(warm_end),
        None => last_done
            .unwrap_or(warm_end)
            .saturating_duration_since(warm_end),
    };
    Ok(RunReport::assemble(
        plan.clone(),
        started_at,
        window,
        per_endpoint,
        resources,
    ))
}

/// Runs the connection tasks the way wrk does: one thread per core, each with its own
/// single-threaded event loop holding an equal share of the connections, so a connection's
/// wake-ups never cross threads. Results come back to the caller's runtime over channels.
async fn run_workers(
    shared: &Arc<Shared>,
    connections: usize,
) -> Result<Vec<WorkerResult>, PerfError> {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let threads = cores.min(connections).max(1);
    let mut receivers = Vec::with_capacity(threads);
    for t in 0..threads {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let shared = shared.clone();
        std::thread::Builder::new()
            .name(format!("perf-load-{t}"))
            .spawn(move || {
                let result = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .map_err(|e| format!("cannot start a load thread's runtime: {e}"))
                    .and_then(|rt| {
                        rt.block_on(async {
                            let tasks: Vec<_> = (t..connections)
                                .step_by(threads)
                                .map(|k| tokio::spawn(worker(shared.clone(), k)))
                                .collect();
                            let mut results = Vec::with_capacity(tasks.len());
                            for task in tasks {
                                results.push(task.await.map_err(|e| e.to_string())?);
                            }
                            Ok(results)
                        })
                    });
                let _ = tx.send(result);
            })
            .map_err(|e| PerfError::Worker {
                reason: format!("cannot start a load thread: {e}"),
            })?;
        receivers.push(rx);
    }
    let mut all = Vec::with_capacity(connections);
    for rx in receivers {
        let results = rx
            .await
            .map_err(|_| PerfError::Worker {
                reason: "a load thread ended without a result".to_owned(),
            })?
            .map_err(|reason| PerfError::Worker { reason })?;
        all.extend(results);
    }
    Ok(all)
}

async fn resolve(host: &str, port: u16, url: &str) -> Result<SocketAddr, PerfError> {
    let mut addrs = tokio::net::lookup_host((host, port))
        .await
        .map_err(|source| PerfError::Resolve {
            url: url.to_owned(),
            error: source,
        })?;
    addrs.next().ok_or_else(|| PerfError::Resolve {
        url: url.to_owned(),
        error: std::io::Error::new(std::io::ErrorKind::NotFound, "no address"),
    })
}

/// Flushes the per-task progress counts every this many requests.
const PROGRESS_BATCH: u64 = 32;

async fn worker(shared: Arc<Shared>, k: usize) -> WorkerResult {
    let open = matches!(shared.model, LoadModel::Open { .. });
    let mut per_endpoint: Vec<Measurement> = shared
        .endpoints
        .iter()
        .map(|_| Measurement::new(open))
        .collect();
    let mut conns: Vec<Option<Connection>> = shared.targets.iter().map(|_| None).collect();
    let mut last_done = None;
    let mut slot = k % shared.schedule.len().max(1);
    let (interval, mut next) = match shared.model {
        LoadModel::Open { rate, connections } => {
            let interval = Duration::from_secs_f64(connections as f64 / rate);
            (
                interval,
                shared.start + interval.mul_f64(k as f64 / connections as f64),
            )
        }
        LoadModel::Closed { .. } => (Duration::ZERO, shared.start),
    };
    let (mut pending_requests, mut pending_errors) = (0u64, 0u64);
    // One timer per connection for the whole run, re-armed only when it fires, instead of a
    // timer registered and cancelled around every request.
    let mut watchdog = Box::pin(tokio::time::sleep_until(Instant::now() + FAR_FUTURE));
    while let Some(&ep_index) = shared.schedule.get(slot) {
        slot = (slot + 1) % shared.schedule.len();
        let intended = if open {
            if shared.end.is_some_and(|end| next >= end) {
                break;
            }
            if Instant::now() < next {
                tokio::time::sleep_until(next).await;
            }
            let intended = next;
            next += interval;
            Some(intended)
        } else {
            if shared.end.is_some_and(|end| Instant::now() >= end) {
                break;
            }
            None
        };
        let measuring = intended.unwrap_or_else(Instant::now) >= shared.warm_end;
        if measuring
            && let Some(budget) = &shared.budget
            && budget.fetch_sub(1, Ordering::Relaxed) <= 0
        {
            break;
        }
        let endpoint = &shared.endpoints[ep_index];
        let m = &mut per_endpoint[ep_index];
        let conn = match &mut conns[endpoint.target] {
            Some(conn) => conn,
            empty => {
                let addr = shared.targets[endpoint.target];
                match tokio::time::timeout(shared.timeout, Connection::connect(addr)).await {
                    Ok(Ok(conn)) => empty.insert(conn),
                    failed => {
                        tracing::debug!(%addr, ?failed, "connect failed");
                        if measuring {
                            m.errors.connect += 1;
                            pending_errors += 1;
                        }
                        let wake = Instant::now() + RECONNECT_BACKOFF;
                        tokio::time::sleep_until(shared.end.map_or(wake, |e| e.min(wake))).await;
                        continue;
                    }
                }
            }
        };
        let t_write = Instant::now();
        // The closed model cuts a request off at the end of the run; the open model waits for
        // it, because an answer that is late at the end is exactly what it must see.
        let limit = t_write + shared.timeout;
        let deadline = match (open, shared.end) {
            (false, Some(end)) => limit.min(end),
            _ => limit,
        };
        let exchange = conn.exchange(&endpoint.request, endpoint.head);
        let result = until_deadline(exchange, &mut watchdog, deadline)
            .await
            .ok_or(());
        let t_done = Instant::now();
        let outcome = match result {
            Ok(Ok(info)) => {
                if info.close {
                    conns[endpoint.target] = None;
                }
                Ok(info)
            }
            Ok(Err(e)) => {
                conns[endpoint.target] = None;
                Err(Some(e))
            }
            Err(_) => {
                conns[endpoint.target] = None;
                if deadline < limit {
                    break; // cut off by the end of the run: neither an answer nor an error
                }
                Err(None)
            }
        };
        if !measuring {
            continue;
        }
        m.requests += 1;
        pending_requests += 1;
        last_done = Some(t_done);
        match outcome {
            Ok(info) => {
                m.bytes += info.wire_bytes;
                match info.status {
                    400..=499 => m.errors.status_4xx += 1,
                    500..=599 => m.errors.status_5xx += 1,
                    _ => {}
                }
                if info.status >= 400 {
                    pending_errors += 1;
                }
                let from = intended.unwrap_or(t_write);
                let _ = m.latency.record(micros(t_done - from));
                if let (Some(intended), Some(uncorrected)) = (intended, &mut m.uncorrected) {
                    let _ = uncorrected.record(micros(t_done - t_write));
                    if t_write - intended > LATE_SEND_THRESHOLD {
                        m.late_sends += 1;
                    }
                }
            }
            Err(e) => {
                pending_errors += 1;
                match e {
                    None => m.errors.timeout += 1,
                    Some(ExchangeError::Protocol(_)) => m.errors.protocol += 1,
                    Some(ExchangeError::Io(_) | ExchangeError::Closed { .. }) => m.errors.io += 1,
                }
            }
        }
        if pending_requests >= PROGRESS_BATCH {
            flush_progress(&shared.progress, &mut pending_requests, &mut pending_errors);
        }
    }
    flush_progress(&shared.progress, &mut pending_requests, &mut pending_errors);
    WorkerResult {
        per_endpoint,
        last_done,
    }
}

/// A deadline nothing reaches.
const FAR_FUTURE: Duration = Duration::from_secs(365 * 24 * 3600);

/// Awaits `fut` until `deadline` (`None` when it passes first). The watchdog is never later
/// than the deadline of the request in flight: it is pulled in when it is later, and when it
/// fires early (it was set for an earlier request) it is pushed out to this one's deadline.
async fn until_deadline<F: std::future::Future>(
    fut: F,
    watchdog: &mut std::pin::Pin<Box<tokio::time::Sleep>>,
    deadline: Instant,
) -> Option<F::Output> {
    if watchdog.deadline() > deadline {
        watchdog.as_mut().reset(deadline);
    }
    let mut fut = std::pin::pin!(fut);
    loop {
        tokio::select! {
            biased;
            out = &mut fut => return Some(out),
            () = watchdog.as_mut() => {
                if Instant::now() >= deadline {
                    return None;
                }
                watchdog.as_mut().reset(deadline);
            }
        }
    }
}

fn flush_progress(progress: &Progress, requests: &mut u64, errors: &mut u64) {
    progress
        .requests
        .fetch_add(std::mem::take(requests), Ordering::Relaxed);
    progress
        .errors
        .fetch_add(std::mem::take(errors), Ordering::Relaxed);
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invalid_plans_are_rejected_with_a_reason() {
        let ok = LoadPlan::closed(
            vec![Endpoint::get("http://127.0.0.1:1/")],
            1,
            Duration::from_secs(1),
        );
        assert!(ok.validate().is_ok());
        let mut p = ok.clone();
        p.endpoints.clear();
        assert!(
            p.validate()
                .unwrap_err()
                .to_string()
                .contains("no endpoint")
        );
        let mut p = ok.clone();
        p.model = LoadModel::Closed { connections: 0 };
        assert!(p.validate().is_err());
        let mut p = ok.clone();
        p.model = LoadModel::Open {
            rate: 0.0,
            connections: 1,
        };
        assert!(p.validate().unwrap_err().to_string().contains("rate"));
        let mut p = ok.clone();
        p.stop = StopAfter::Requests(0);
        assert!(p.validate().is_err());
        let mut p = ok;
        p.endpoints[0].weight = 0;
        assert!(p.validate().is_err());
    }
}
