//! Performance baselines for a service: an HTTP/1.1 load generator built to keep up with `wrk`,
//! honest percentiles, baseline files and regression verdicts.
//!
//! * [`run`] drives a [`LoadPlan`]: a **closed model** (N keep-alive connections, each sending
//!   as soon as its answer arrived) or an **open model** (a constant request rate whose latency
//!   is measured from each request's *intended* send time, correcting coordinated omission,
//!   with the uncorrected figures, the achieved rate and the late sends beside it). Endpoints
//!   have a method, headers, a body and a weight in the mix; a warm-up is not counted.
//! * Every latency goes into an HdrHistogram (3 significant digits) per endpoint and overall;
//!   errors are counted by kind; the target process's RSS and CPU are sampled ([`resources`]).
//! * A [`Baseline`] is a run saved as versioned JSON (settings, environment, summary, base64
//!   V2 histograms). [`compare()`] judges a run against one: pass, regressed or improved, with a
//!   reason per figure. [`latency_svg`] draws both distributions.
//!
//! The library never prints and never exits; `cutover-perf` renders its results.
//!
//! ```
//! use std::sync::Arc;
//! use std::time::Duration;
//! use perf_baseline::{Endpoint, LoadPlan, Progress, StopAfter};
//! use tokio::io::{AsyncReadExt, AsyncWriteExt};
//!
//! # #[tokio::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! // A tiny keep-alive server answering every request with "ok".
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
//! let addr = listener.local_addr()?;
//! tokio::spawn(async move {
//!     while let Ok((mut s, _)) = listener.accept().await {
//!         tokio::spawn(async move {
//!             let mut buf = [0u8; 4096];
//!             while let Ok(n) = s.read(&mut buf).await {
//!                 if n == 0 { break }
//!                 let _ = s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok").await;
//!             }
//!         });
//!     }
//! });
//!
//! let mut plan = LoadPlan::closed(vec![Endpoint::get(format!("http://{addr}/"))], 2, Duration::from_secs(1));
//! plan.stop = StopAfter::Requests(200);
//! let report = perf_baseline::run(&plan, Arc::new(Progress::default())).await?;
//! let summary = report.summary();
//! assert_eq!(summary.requests, 200);
//! assert_eq!(summary.errors, 0);
//! assert!(summary.latency_ms.p50 <= summary.latency_ms.p99);
//! # Ok(()) }
//! ```

pub mod baseline;
pub mod compare;
pub mod config;
pub mod endpoint;
pub mod engine;
pub mod http1;
pub mod report;
pub mod resources;
pub mod stats;
pub mod svg;

use std::path::PathBuf;

pub use baseline::{BASELINE_FORMAT, BASELINE_VERSION, Baseline, Environment};
pub use compare::{Comparison, Movement, Percent, Reason, Tolerances, Verdict, compare};
pub use config::PerfConfig;
pub use endpoint::Endpoint;
pub use engine::{
    LATE_SEND_THRESHOLD, LoadModel, LoadPlan, Phase, Progress, StopAfter, build_runtime, run,
};
pub use report::{EndpointReport, EndpointSummary, OpenModelStats, RunReport, RunSummary};
pub use resources::{ResourceSampler, ResourceSummary};
pub use stats::{ErrorCounts, LatencyHistogram, LatencySummary, Measurement};
pub use svg::latency_svg;

/// Everything that can go wrong in this crate, with the URL, path or process it concerns.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PerfError {
    /// A URL the engine cannot load.
    #[error("invalid URL {url}: {reason}")]
    InvalidUrl {
        /// The URL as given.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// An endpoint whose request cannot be built (bad method or header).
    #[error("invalid endpoint {url}: {reason}")]
    InvalidEndpoint {
        /// The endpoint's URL.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A plan that cannot run (no endpoint, zero connections, …).
    #[error("invalid load plan: {reason}")]
    InvalidPlan {
        /// What is wrong with it.
        reason: String,
    },
    /// A host name that does not resolve.
    #[error("cannot resolve the host of {url}: {error}")]
    Resolve {
        /// The endpoint's URL.
        url: String,
        /// The resolver's error.
        error: std::io::Error,
    },
    /// The target process cannot be sampled.
    #[error("cannot sample process {pid}: {reason}")]
    Sampling {
        /// The process id.
        pid: u32,
        /// Why.
        reason: String,
    },
    /// A connection task ended abnormally (a bug).
    #[error("a load task failed: {reason}")]
    Worker {
        /// The task's failure.
        reason: String,
    },
    /// A baseline file cannot be read.
    #[error("cannot read baseline {path}: {error}")]
    ReadBaseline {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        error: std::io::Error,
    },
    /// A baseline file is not valid.
    #[error("invalid baseline {path}: {reason}")]
    InvalidBaseline {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// A baseline file cannot be written.
    #[error("cannot write baseline {path}: {error}")]
    WriteBaseline {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        error: std::io::Error,
    },
}
