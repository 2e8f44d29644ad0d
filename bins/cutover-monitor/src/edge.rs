//! The EDGE panel's numbers: what users got from the private nginx in front of the service,
//! read from its JSON access log (`<proxy dir>/logs/access.json`) by the edge reader
//! ([`edge_signals::EdgeReader`]). It works for a service that exposes nothing at all.
//!
//! The reader is made at the first evaluation, starting at the first line of the last window
//! (found by bisection, never a whole pass over the log), and each evaluation after that reads
//! only what was appended since the one before, across rotations. Upstream addresses are
//! named after the deployment's slots and the releases in them, looked up again at every
//! evaluation, so after a deploy the new release's requests show under its slot.
//!
//! The default rules' edge sources (success rate, p95, p99 over 60 s) are fed from the same
//! window ([`sample_edge`]), so the numbers on the panel and the markers beside them agree and
//! the log is read once per evaluation, not once per rule.

use std::path::{Path, PathBuf};
use std::time::Duration;

use alert_rules::Sample;
use alert_rules::sources::{EdgeMetric, EdgeSource};
use edge_signals::{DEFAULT_WINDOW, EdgeReader, SignalOptions, Signals, SlotMap, WindowReport};
use live_deployment::LiveState;
use serde::Serialize;

/// The panel's window: the default rules' too.
pub(crate) const EDGE_WINDOW: Duration = DEFAULT_WINDOW;

/// How the edge log was read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum EdgeReach {
    /// Read.
    Ok,
    /// The log does not exist: no proxy has written it (not started yet, or stopped).
    Missing,
    /// It could not be read.
    Error,
}

/// The EDGE section of a snapshot: the window's signals overall and per release slot.
/// `success_rate` and the latencies are `null` when the window holds no request (no data,
/// never 100 % or 0 %); `requests_per_sec` is a value (0 is an idle service).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub(crate) struct EdgeView {
    /// The JSON access log followed.
    pub(crate) log: PathBuf,
    /// How the reading went.
    pub(crate) reach: EdgeReach,
    /// Why it could not be read.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) error: Option<String>,
    /// The window's length in seconds.
    pub(crate) window_seconds: f64,
    /// Every request in the window.
    #[serde(flatten)]
    pub(crate) overall: Signals,
    /// Per slot: the deployment's slots first (traffic or not), then any other upstream seen
    /// (`none` for requests no upstream answered, such as rate-limited ones).
    pub(crate) slots: Vec<EdgeSlotView>,
    /// Whether the window held more requests than the reader keeps (the oldest were dropped).
    pub(crate) truncated: bool,
}

/// One upstream slot's signals in the window.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub(crate) struct EdgeSlotView {
    /// The slot (`blue`, `green`, `single`), or the address when the deployment does not
    /// name it.
    pub(crate) slot: String,
    /// The release it runs (or ran when the requests were logged).
    pub(crate) release: Option<String>,
    /// `live`, `standby` or `idle`, when the slot is the deployment's.
    pub(crate) role: Option<String>,
    /// Its signals.
    #[serde(flatten)]
    pub(crate) signals: Signals,
}

/// A deployment slot as the edge panel names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SlotName {
    /// Its address as nginx logs it (`127.0.0.1:7001`).
    pub(crate) addr: String,
    /// The slot's name.
    pub(crate) slot: String,
    /// The release in it.
    pub(crate) release: Option<String>,
    /// Its role.
    pub(crate) role: String,
}

/// The slots of `live`, as the edge panel names them.
pub(crate) fn slot_names(live: &LiveState) -> Vec<SlotName> {
    live.slots
        .iter()
        .map(|s| SlotName {
            addr: s.addr.to_string(),
            slot: s.slot.as_str().to_owned(),
            release: s.release.clone(),
            role: s.role.as_str().to_owned(),
        })
        .collect()
}

/// Follows one edge log across evaluations.
#[derive(Debug)]
pub(crate) struct EdgeWatch {
    log: PathBuf,
    reader: Option<EdgeReader>,
    slots: Vec<SlotName>,
}

impl EdgeWatch {
    /// A watch on the access log of the proxy under `proxy_dir`; nothing is read until the
    /// first [`EdgeWatch::poll`].
    pub(crate) fn new(proxy_dir: &Path) -> EdgeWatch {
        EdgeWatch {
            log: proxy_dir.join("logs").join("access.json"),
            reader: None,
            slots: Vec::new(),
        }
    }

    /// The log followed.
    pub(crate) fn log(&self) -> &Path {
        &self.log
    }

    /// Reads what was appended since the last poll (the last window at the first) and gives
    /// the window ending at `now`, named after `slots` (the deployment's, when it could be
    /// read). Blocking: file reads.
    pub(crate) fn poll(
        &mut self,
        slots: Option<Vec<SlotName>>,
        now: jiff::Timestamp,
    ) -> (EdgeView, Option<WindowReport>) {
        if let Some(slots) = slots {
            self.slots = slots;
        }
        let mut map = SlotMap::new();
        for s in &self.slots {
            map.insert(s.addr.clone(), s.slot.clone(), s.release.clone());
        }
        let reader = match &mut self.reader {
            Some(r) => r,
            None => {
                let options = SignalOptions {
                    window: EDGE_WINDOW,
                    slots: map.clone(),
                    ..SignalOptions::default()
                };
                match EdgeReader::at_window(&self.log, options, now) {
                    Ok(r) => self.reader.insert(r),
                    Err(e) => return (self.unread(EdgeReach::Error, e.to_string()), None),
                }
            }
        };
        if reader.signals().options().slots != map {
            reader.signals_mut().set_slots(map);
        }
        let exists = self.log.exists();
        let polled = reader.poll();
        let report = reader.signals().window(now);
        let failure = match polled {
            Err(e) => Some((EdgeReach::Error, e.to_string())),
            Ok(_) if !exists => Some((
                EdgeReach::Missing,
                format!(
                    "the edge log {} does not exist: is the proxy running? (`cutover-edge up`, or a deploy, starts it)",
                    self.log.display()
                ),
            )),
            Ok(_) => None,
        };
        let mut view = view_of(&self.log, &report, &self.slots);
        if let Some((reach, error)) = failure {
            view.reach = reach;
            view.error = Some(error);
        }
        (view, Some(report))
    }

    fn unread(&self, reach: EdgeReach, error: String) -> EdgeView {
        EdgeView {
            log: self.log.clone(),
            reach,
            error: Some(error),
            window_seconds: EDGE_WINDOW.as_secs_f64(),
            overall: Signals::default(),
            slots: Vec::new(),
            truncated: false,
        }
    }
}

/// The view of a window: the deployment's slots first, traffic or not, then the others seen.
pub(crate) fn view_of(log: &Path, report: &WindowReport, slots: &[SlotName]) -> EdgeView {
    let mut out: Vec<EdgeSlotView> = slots
        .iter()
        .map(|s| {
            let seen = report.slots.get(&s.slot);
            EdgeSlotView {
                slot: s.slot.clone(),
                release: s
                    .release
                    .clone()
                    .or_else(|| seen.and_then(|x| x.release.clone())),
                role: Some(s.role.clone()),
                signals: seen.map(|x| x.signals.clone()).unwrap_or_default(),
            }
        })
        .collect();
    for (name, seen) in &report.slots {
        if !slots.iter().any(|s| &s.slot == name) {
            out.push(EdgeSlotView {
                slot: name.clone(),
                release: seen.release.clone(),
                role: None,
                signals: seen.signals.clone(),
            });
        }
    }
    EdgeView {
        log: log.to_path_buf(),
        reach: EdgeReach::Ok,
        error: None,
        window_seconds: report.window_seconds,
        overall: report.overall.clone(),
        slots: out,
        truncated: report.truncated,
    }
}

/// Whether `source` can be sampled from the monitor's own window: the same log and window.
pub(crate) fn shares_window(source: &EdgeSource, log: &Path) -> bool {
    source.log.as_deref() == Some(log) && source.window == EDGE_WINDOW
}

/// A rule's sample from the monitor's window, with the edge source's own meaning: an empty
/// window is no data (a count or a rate of 0 is a value).
pub(crate) fn sample_edge(report: &WindowReport, source: &EdgeSource) -> Sample {
    match source
        .metric
        .of(report.for_location(source.location.as_deref()))
    {
        Some(v) => Sample::number(v),
        None => Sample::no_data(format!(
            "no {}request{} in the last {}",
            if source.metric == EdgeMetric::SuccessRate {
                "judged (non-429, non-499) "
            } else {
                ""
            },
            source
                .location
                .as_deref()
                .map_or_else(String::new, |l| format!(" to {l}")),
            humantime::format_duration(source.window)
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn line(time_ms: i64, status: u16, addr: &str, ms: u32) -> String {
        format!(
            "{{\"time\":{}.{:03},\"status\":{status},\"request_time\":{}.{:03},\"upstream_response_time\":\"0.001\",\"upstream_addr\":\"{addr}\",\"method\":\"GET\",\"location\":\"/\",\"bytes_sent\":10}}\n",
            time_ms / 1000,
            time_ms % 1000,
            ms / 1000,
            ms % 1000
        )
    }

    fn slots() -> Vec<SlotName> {
        vec![
            SlotName {
                addr: "127.0.0.1:7100".into(),
                slot: "blue".into(),
                release: Some("r1".into()),
                role: "standby".into(),
            },
            SlotName {
                addr: "127.0.0.1:7101".into(),
                slot: "green".into(),
                release: Some("r2".into()),
                role: "live".into(),
            },
        ]
    }

    #[test]
    fn the_window_is_named_after_the_slots_and_followed_incrementally() {
        let dir = cutover_tests::temp_dir();
        let proxy = dir.path();
        std::fs::create_dir_all(proxy.join("logs")).unwrap();
        let mut watch = EdgeWatch::new(proxy);
        let now_ms = jiff::Timestamp::now().as_millisecond();
        let now = jiff::Timestamp::from_millisecond(now_ms).unwrap();

        // No log yet: said so, and nothing is a value but the rate.
        let (view, report) = watch.poll(Some(slots()), now);
        assert_eq!(view.reach, EdgeReach::Missing, "{view:?}");
        assert!(view.error.unwrap().contains("does not exist"));
        assert_eq!(view.overall.success_rate, None);
        let report = report.unwrap();
        let p95 = EdgeSource {
            log: Some(watch.log().to_path_buf()),
            window: EDGE_WINDOW,
            location: None,
            metric: EdgeMetric::P95Ms,
        };
        assert!(shares_window(&p95, watch.log()));
        assert!(matches!(sample_edge(&report, &p95), Sample::NoData(_)));

        let mut log = std::fs::File::create(watch.log()).unwrap();
        for i in 0..9 {
            log.write_all(line(now_ms - 1000 + i, 200, "127.0.0.1:7101", 20).as_bytes())
                .unwrap();
        }
        log.write_all(line(now_ms - 900, 503, "127.0.0.1:7101", 40).as_bytes())
            .unwrap();
        log.write_all(line(now_ms - 800, 429, "-", 0).as_bytes())
            .unwrap();
        let (view, report) = watch.poll(None, now);
        assert_eq!(view.reach, EdgeReach::Ok, "{view:?}");
        assert_eq!(view.overall.requests, 11);
        assert_eq!(view.overall.status_429, 1);
        assert_eq!(view.overall.success_rate, Some(0.9));
        let names: Vec<(&str, Option<&str>, u64)> = view
            .slots
            .iter()
            .map(|s| (s.slot.as_str(), s.role.as_deref(), s.signals.requests))
            .collect();
        assert_eq!(
            names,
            [
                ("blue", Some("standby"), 0),
                ("green", Some("live"), 10),
                ("none", None, 1)
            ]
        );
        assert_eq!(
            view.slots[0].signals.success_rate, None,
            "no data, not 100 %"
        );
        assert_eq!(view.slots[1].release.as_deref(), Some("r2"));
        let success = EdgeSource {
            metric: EdgeMetric::SuccessRate,
            ..p95.clone()
        };
        assert_eq!(
            sample_edge(&report.unwrap(), &success),
            Sample::number(90.0)
        );

        // Only what was appended is read at the next poll.
        log.write_all(line(now_ms - 500, 200, "127.0.0.1:7100", 5).as_bytes())
            .unwrap();
        let (view, _) = watch.poll(None, now);
        assert_eq!(view.overall.requests, 12);
        assert_eq!(view.slots[0].signals.requests, 1);
    }
}
