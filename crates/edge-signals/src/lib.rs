//! Golden signals from the edge: what users get, measured at the nginx in front of a service
//! that may expose no metrics at all.
//!
//! edge-proxy renders nginx with a JSON-lines access log (`logs/access.json`, `log_format
//! cutover_edge`): one line per request with its end time, status (499 when the client went
//! away), request and upstream times, the upstream that answered and the matched location.
//! This crate reads it:
//!
//! - [`LogFollower`] follows the file by path across rotation (the renamed file is finished
//!   first, and late writes to it are still read) and truncation (reading restarts at 0),
//!   streaming fixed-size chunks and holding at most one incomplete line per open file.
//! - [`EdgeSignals`] turns lines into a sliding window (default 60 s, by the log's own
//!   timestamps): requests, requests/s, success rate (the share of requests that were not
//!   5xx, among all but 429s and 499s, which are counted apart), p50/p95/p99 latency (of the
//!   same judged requests) from an HDR histogram at 3 significant digits, overall, per location and per upstream slot
//!   ([`SlotMap`]: address to slot and release). An empty window is no data (`None`), never
//!   100 % or 0 %. Memory is bounded by caps on samples, groups and series.
//! - [`EdgeReader`] puts the two together for long-running owners; [`read_window`] reads the
//!   last window once (bisecting the log by time, rotated generation included).
//! - [`render_prometheus`]: `cutover_edge_requests_total` and
//!   `cutover_edge_request_duration_seconds` with `location`, `slot`, `release`, `status`.
//!
//! ```
//! use edge_signals::{EdgeSignals, SignalOptions, parse_line};
//!
//! let mut signals = EdgeSignals::new(SignalOptions::default());
//! for status in [200, 200, 200, 503, 429] {
//!     let line = format!(
//!         r#"{{"time":1700000000.5,"status":{status},"request_time":0.012,"upstream_response_time":"0.011","upstream_addr":"127.0.0.1:7001","method":"GET","location":"/api/","bytes_sent":120}}"#
//!     );
//!     signals.record(&parse_line(line.as_bytes()).expect("an edge log line"));
//! }
//! let now = jiff::Timestamp::from_millisecond(1_700_000_001_000)?;
//! let api = signals.window(now).locations["/api/"].clone();
//! assert_eq!(api.success_rate, Some(0.75), "the 429 is counted apart");
//! assert_eq!((api.status_5xx, api.status_429, api.p95_ms), (1, 1, Some(12.0)));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod error;
mod follow;
mod line;
mod prometheus;
mod reader;
mod signals;

pub use error::SignalsError;
pub use follow::{LogFollower, MAX_LINE, PollStats, READ_CHUNK, StartAt};
pub use line::{EdgeLine, parse_line};
pub use prometheus::{DURATION_METRIC, REQUESTS_METRIC, render_prometheus};
pub use reader::{EdgeReader, ReadReport, read_window};
pub use signals::{
    DEFAULT_MAX_SAMPLES, DEFAULT_WINDOW, DURATION_BUCKETS, EdgeSignals, MAX_GROUPS, MAX_SERIES,
    NO_UPSTREAM, OTHER, Series, SeriesTotal, SignalOptions, Signals, SlotInfo, SlotMap,
    SlotSignals, WindowReport,
};
