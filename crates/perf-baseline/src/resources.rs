//! Samples the target process's resident memory and CPU time during a run (sysinfo), so that a
//! memory regression shows up next to the latency figures.
//!
//! The sampler runs on its own thread so that reading `/proc` never delays the load tasks.

use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use sysinfo::{Pid, ProcessRefreshKind, ProcessesToUpdate, System};

use crate::PerfError;

/// What was seen of the target process during a run.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct ResourceSummary {
    /// The sampled process.
    pub pid: u32,
    /// How many samples were taken.
    pub samples: u64,
    /// Resident set size at the first sample, in bytes.
    pub rss_start_bytes: u64,
    /// Resident set size at the last sample, in bytes.
    pub rss_end_bytes: u64,
    /// The largest resident set size seen, in bytes.
    pub rss_peak_bytes: u64,
    /// The mean resident set size over the samples, in bytes.
    pub rss_mean_bytes: u64,
    /// CPU time over wall time between the first and last sample, in percent of one core.
    pub cpu_mean_percent: f64,
    /// The highest CPU use over one sampling interval, in percent of one core.
    pub cpu_peak_percent: f64,
    /// Whether the process disappeared during the run.
    pub exited: bool,
}

/// A running sampler; [`ResourceSampler::stop`] ends it and returns the summary.
#[derive(Debug)]
pub struct ResourceSampler {
    stop: mpsc::Sender<()>,
    handle: JoinHandle<ResourceSummary>,
}

fn read(system: &mut System, pid: Pid) -> Option<(u64, u64)> {
    system.refresh_processes_specifics(
        ProcessesToUpdate::Some(&[pid]),
        true,
        ProcessRefreshKind::nothing().with_memory().with_cpu(),
    );
    system
        .process(pid)
        .map(|p| (p.memory(), p.accumulated_cpu_time()))
}

impl ResourceSampler {
    /// Starts sampling `pid` every `interval`; fails when there is no such process.
    pub fn start(pid: u32, interval: Duration) -> Result<Self, PerfError> {
        let mut system = System::new().map_err(|e| PerfError::Sampling {
            pid,
            reason: e.to_string(),
        })?;
        let spid = Pid::from_u32(pid);
        let Some((rss, cpu_ms)) = read(&mut system, spid) else {
            return Err(PerfError::Sampling {
                pid,
                reason: "no such process".to_owned(),
            });
        };
        let interval = interval.max(Duration::from_millis(10));
        let (stop, stopped) = mpsc::channel::<()>();
        let handle = std::thread::Builder::new()
            .name("perf-sampler".to_owned())
            .spawn(move || {
                let mut s = ResourceSummary {
                    pid,
                    samples: 1,
                    rss_start_bytes: rss,
                    rss_end_bytes: rss,
                    rss_peak_bytes: rss,
                    rss_mean_bytes: rss,
                    ..ResourceSummary::default()
                };
                let (first_at, first_cpu) = (Instant::now(), cpu_ms);
                let (mut prev_at, mut prev_cpu) = (first_at, cpu_ms);
                let mut rss_sum = u128::from(rss);
                // Ends when the run says stop (or drops the sender) or the process goes away.
                while let Err(mpsc::RecvTimeoutError::Timeout) = stopped.recv_timeout(interval) {
                    let Some((rss, cpu_ms)) = read(&mut system, spid) else {
                        s.exited = true;
                        break;
                    };
                    let now = Instant::now();
                    s.samples += 1;
                    s.rss_end_bytes = rss;
                    s.rss_peak_bytes = s.rss_peak_bytes.max(rss);
                    rss_sum += u128::from(rss);
                    let wall_ms = now.duration_since(prev_at).as_secs_f64() * 1000.0;
                    if wall_ms > 0.0 {
                        let pct = cpu_ms.saturating_sub(prev_cpu) as f64 / wall_ms * 100.0;
                        s.cpu_peak_percent = s.cpu_peak_percent.max(pct);
                    }
                    let total_ms = now.duration_since(first_at).as_secs_f64() * 1000.0;
                    if total_ms > 0.0 {
                        s.cpu_mean_percent =
                            cpu_ms.saturating_sub(first_cpu) as f64 / total_ms * 100.0;
                    }
                    (prev_at, prev_cpu) = (now, cpu_ms);
                }
                s.rss_mean_bytes =
                    u64::try_from(rss_sum / u128::from(s.samples)).unwrap_or(u64::MAX);
                s
            })
            .map_err(|e| PerfError::Sampling {
                pid,
                reason: format!("cannot start the sampler thread: {e}"),
            })?;
        Ok(Self { stop, handle })
    }

    /// Stops sampling and returns what was seen.
    pub fn stop(self) -> ResourceSummary {
        let _ = self.stop.send(());
        // The thread only panics on a bug; an empty summary is the honest fallback.
        self.handle.join().unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_a_live_process_and_sees_memory_grow() {
        let sampler =
            ResourceSampler::start(std::process::id(), Duration::from_millis(20)).unwrap();
        let big: Vec<u8> = vec![1; 64 << 20];
        let end = Instant::now() + Duration::from_millis(300);
        let mut x = 0u64;
        while Instant::now() < end {
            x = x.wrapping_add(big.iter().step_by(4096).map(|&b| u64::from(b)).sum::<u64>());
        }
        let s = sampler.stop();
        assert!(x > 0);
        drop(big);
        assert!(s.samples >= 3, "{s:?}");
        assert!(s.rss_peak_bytes >= s.rss_start_bytes + (32 << 20), "{s:?}");
        assert!(s.cpu_mean_percent > 10.0, "{s:?}");
        assert!(!s.exited);
    }

    #[test]
    fn a_missing_process_is_an_error() {
        // Pids are bounded by pid_max (at most 2^22), so this one cannot exist.
        let err = ResourceSampler::start(u32::MAX - 7, Duration::from_millis(20)).unwrap_err();
        assert!(err.to_string().contains("no such process"), "{err}");
    }
}
