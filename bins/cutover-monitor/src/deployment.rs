//! The deployment the manifest describes, as one evaluation sees it: what is live (release,
//! slot, the slot's own address, its process), the warm standby, the last operation in the
//! audit log and the tail of the live slot's log. [`read`] is called at every evaluation, so
//! after a deploy to the other slot the monitor follows the new live slot (new target, new
//! pid) without restarting.
//!
//! Everything here comes from what the pipeline and the process manager write
//! ([`live_deployment::Deployment::live`], `<root>/state/audit.jsonl`, the slot's log file);
//! nothing is guessed.

use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use live_deployment::{Deployment, LiveState, Slot, StrategyKind};
use serde::{Deserialize, Serialize};

use crate::collect::ProcessTarget;

/// Lines of the live slot's log shown.
pub(crate) const LOG_TAIL_LINES: usize = 10;
/// Lines of the live slot's log in which error lines are counted.
pub(crate) const LOG_WINDOW_LINES: usize = 200;
/// At most this much of the end of a log file is read per evaluation (a log rotates at
/// 10 MiB; reading all of it every few seconds would be the monitor's main cost).
const LOG_READ_BYTES: u64 = 256 * 1024;
/// At most this much of the end of the audit log is read to find its last record.
const AUDIT_READ_BYTES: u64 = 64 * 1024;

/// The deployment section of a snapshot.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub(crate) struct DeploymentView {
    /// The service name (`[service] name`).
    pub(crate) service: String,
    /// The strategy in effect.
    pub(crate) strategy: StrategyKind,
    /// Whether a release is live.
    pub(crate) deployed: bool,
    /// One sentence: what is live, where and under which pid; or plainly that nothing is
    /// deployed and what to run.
    pub(crate) description: String,
    /// The live release id.
    pub(crate) release: Option<String>,
    /// Its slot (`single`, `blue`, `green`).
    pub(crate) slot: Option<Slot>,
    /// Where users reach the live release: the proxy's public URL, else the slot's own.
    pub(crate) url: Option<String>,
    /// The live slot's own base URL (what the monitor reads when `--target` is not given).
    pub(crate) slot_url: Option<String>,
    /// The live slot's main process, as its process manager reports it.
    pub(crate) pid: Option<u32>,
    /// Its start time in clock ticks since boot (with the pid, its identity).
    pub(crate) start_time: Option<u64>,
    /// Its state (`running`, `stopped`, `failed`, …).
    pub(crate) process_state: Option<String>,
    /// Restarts since its supervisor started.
    pub(crate) restart_count: Option<u32>,
    /// The warm standby, when one is kept.
    pub(crate) standby: Option<StandbyView>,
    /// The last operation in the audit log.
    pub(crate) last_operation: Option<OperationView>,
    /// The tail of the live slot's log (`None` under systemd, whose output is in the journal).
    pub(crate) log: Option<LogView>,
    /// What could not be read (the state files, the audit log, the log).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub(crate) errors: Vec<String>,
    /// Canary: the running or last canary (step, weights, the judge's latest verdict, reason
    /// and evidence), as the pipeline wrote it to `deploy-state.json`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) canary: Option<live_deployment::CanaryProgress>,
}

/// The warm standby.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct StandbyView {
    /// The release it runs.
    pub(crate) release: Option<String>,
    /// Its slot.
    pub(crate) slot: Slot,
    /// Its process's state.
    pub(crate) state: String,
    /// Its pid.
    pub(crate) pid: Option<u32>,
}

/// One record of the audit log, the fields the monitor shows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct OperationView {
    /// `deploy`, `rollback` or `recover`.
    pub(crate) operation: String,
    /// The release brought live (or attempted).
    #[serde(default)]
    pub(crate) release: Option<String>,
    /// `deployed`, `rolled-back`, `rollback-failed`, `aborted`, `recovered`, `noop`.
    pub(crate) outcome: String,
    /// When it started (RFC 3339, as the audit log has it).
    pub(crate) at: String,
    /// Why it failed, when it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) reason: Option<String>,
}

/// The tail of the live slot's log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct LogView {
    /// The log file.
    pub(crate) path: PathBuf,
    /// Its last lines (at most [`LOG_TAIL_LINES`]), oldest first.
    pub(crate) tail: Vec<String>,
    /// How many lines were looked at for errors (the last [`LOG_WINDOW_LINES`] at most).
    pub(crate) window: usize,
    /// How many of those mention an error: `error` in any case, which includes a level of
    /// `ERROR`.
    pub(crate) errors: usize,
}

/// What one look at the deployment found.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Reading {
    /// What is live, when the state files could be read.
    pub(crate) live: Option<LiveState>,
    /// The section for the snapshot.
    pub(crate) view: DeploymentView,
}

impl Reading {
    /// The live slot's own base URL: the monitor's target when `--target` is not given.
    pub(crate) fn target(&self) -> Option<String> {
        self.live.as_ref().and_then(|l| l.slot_url.clone())
    }

    /// The live slot's process, to measure when neither `--pid` nor `--pid-file` is given.
    pub(crate) fn process_target(&self) -> Option<ProcessTarget> {
        self.live.as_ref().and_then(process_target)
    }

    /// Why there is no target, for the verdict: the `describe()` sentence when nothing is
    /// deployed, the reason when the state could not be read.
    pub(crate) fn no_target_reason(&self) -> String {
        match &self.live {
            Some(live) => live.describe(),
            None => self
                .view
                .errors
                .first()
                .cloned()
                .unwrap_or_else(|| "the deployment could not be read".to_owned()),
        }
    }
}

/// The live slot's process as a measurement target: its pid, checked against its start time.
pub(crate) fn process_target(live: &LiveState) -> Option<ProcessTarget> {
    let process = live.process.as_ref()?;
    Some(ProcessTarget::Live {
        pid: process.pid?,
        start_time: process.start_time,
        name: live
            .live
            .as_ref()
            .map_or_else(|| live.service.clone(), |l| l.name.clone()),
    })
}

/// Looks at the deployment now (blocking: state files, the process manager, the logs).
pub(crate) fn read(deployment: &Deployment) -> Reading {
    let mut errors = Vec::new();
    let last_operation = match last_operation(&deployment.layout().audit_file()) {
        Ok(op) => op,
        Err(e) => {
            errors.push(e);
            None
        }
    };
    match deployment.live() {
        Ok(live) => {
            let log = match live.process.as_ref().and_then(|p| p.log.clone()) {
                Some(path) if live.is_deployed() => match read_log(&path) {
                    Ok(log) => Some(log),
                    Err(e) => {
                        errors.push(e);
                        None
                    }
                },
                _ => None,
            };
            let mut view = DeploymentView::new(&live, last_operation, log, errors);
            view.canary = deployment.layout().load_state().ok().and_then(|s| s.canary);
            Reading {
                live: Some(live),
                view,
            }
        }
        Err(e) => Reading::failed(
            deployment,
            format!("cannot read the deployment: {e}"),
            last_operation,
            errors,
        ),
    }
}

impl Reading {
    /// A look that could not read what is live: `error` says why (first among `errors`).
    pub(crate) fn failed(
        deployment: &Deployment,
        error: String,
        last_operation: Option<OperationView>,
        mut errors: Vec<String>,
    ) -> Reading {
        errors.insert(0, error.clone());
        Reading {
            live: None,
            view: DeploymentView {
                service: deployment.service().name.clone(),
                strategy: deployment.strategy(),
                deployed: false,
                description: error,
                release: None,
                slot: None,
                url: None,
                slot_url: None,
                pid: None,
                start_time: None,
                process_state: None,
                restart_count: None,
                standby: None,
                last_operation,
                log: None,
                errors,
                canary: None,
            },
        }
    }
}

impl DeploymentView {
    /// The section for `live`, with what was read beside it.
    pub(crate) fn new(
        live: &LiveState,
        last_operation: Option<OperationView>,
        log: Option<LogView>,
        errors: Vec<String>,
    ) -> DeploymentView {
        let process = live.process.as_ref();
        DeploymentView {
            service: live.service.clone(),
            strategy: live.strategy,
            deployed: live.is_deployed(),
            description: live.describe(),
            release: live.release.clone(),
            slot: live.slot,
            url: live.url.clone(),
            slot_url: live.slot_url.clone(),
            pid: process.and_then(|p| p.pid),
            start_time: process.and_then(|p| p.start_time),
            process_state: process.map(|p| p.state.clone()),
            restart_count: process.map(|p| p.restart_count),
            standby: live.standby.as_ref().map(|s| StandbyView {
                release: s.release.clone(),
                slot: s.slot,
                state: s.process.state.clone(),
                pid: s.process.pid,
            }),
            last_operation,
            log,
            errors,
            canary: None,
        }
    }
}

/// The last readable record of the audit log; `None` when there is none yet.
fn last_operation(path: &Path) -> Result<Option<OperationView>, String> {
    let text = match read_end(path, AUDIT_READ_BYTES) {
        Ok(Some((text, _))) => text,
        Ok(None) => return Ok(None),
        Err(e) => return Err(format!("cannot read the audit log {}: {e}", path.display())),
    };
    Ok(text
        .lines()
        .rev()
        .find_map(|line| serde_json::from_str::<OperationView>(line).ok()))
}

/// The tail of a slot's log and its error count. A missing log is an empty one (the service
/// has not written anything yet).
fn read_log(path: &Path) -> Result<LogView, String> {
    let lines = tail_lines(path, LOG_WINDOW_LINES)
        .map_err(|e| format!("cannot read the log {}: {e}", path.display()))?;
    Ok(log_view(path, &lines))
}

/// The view of a log window: its last [`LOG_TAIL_LINES`] lines (control characters made
/// spaces, so a terminal shows them as text) and how many lines of the window mention an
/// error.
pub(crate) fn log_view(path: &Path, window: &[String]) -> LogView {
    let skip = window.len().saturating_sub(LOG_TAIL_LINES);
    LogView {
        path: path.to_path_buf(),
        tail: window[skip..].iter().map(|l| printable(l)).collect(),
        window: window.len(),
        errors: window.iter().filter(|l| mentions_error(l)).count(),
    }
}

/// `error` in any case: `ERROR` levels, `"level":"error"`, `error:` messages.
pub(crate) fn mentions_error(line: &str) -> bool {
    line.to_ascii_lowercase().contains("error")
}

fn printable(line: &str) -> String {
    line.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

/// The last `n` lines of a log, reading at most [`LOG_READ_BYTES`] of its end, and of the
/// rotated file before it (`<path>.1`) when the current one is short.
fn tail_lines(path: &Path, n: usize) -> std::io::Result<Vec<String>> {
    let mut lines = match read_end(path, LOG_READ_BYTES)? {
        Some((text, whole)) => {
            let lines: Vec<String> = text.lines().map(str::to_owned).collect();
            if lines.len() >= n || !whole {
                return Ok(last(lines, n));
            }
            lines
        }
        None => Vec::new(),
    };
    let rotated = process_control::RotatingLog::rotated_path(path, 1);
    if let Some((text, _)) = read_end(&rotated, LOG_READ_BYTES)? {
        let mut before: Vec<String> = text.lines().map(str::to_owned).collect();
        before.append(&mut lines);
        lines = before;
    }
    Ok(last(lines, n))
}

fn last(mut lines: Vec<String>, n: usize) -> Vec<String> {
    let skip = lines.len().saturating_sub(n);
    lines.split_off(skip)
}

/// The last `max` bytes of a file as text, starting at a line boundary, and whether that is
/// the whole file; `None` when the file does not exist.
fn read_end(path: &Path, max: u64) -> std::io::Result<Option<(String, bool)>> {
    let mut file = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let len = file.metadata()?.len();
    let start = len.saturating_sub(max);
    file.seek(SeekFrom::Start(start))?;
    let mut bytes = Vec::new();
    file.take(max).read_to_end(&mut bytes)?;
    let mut text = String::from_utf8_lossy(&bytes).into_owned();
    if start > 0 {
        // The first line is cut: drop it.
        text = text
            .split_once('\n')
            .map_or_else(String::new, |(_, rest)| rest.to_owned());
    }
    Ok(Some((text, start == 0)))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use live_deployment::{Paths, Role, SlotProcess, SlotView};

    fn process(pid: Option<u32>, start_time: Option<u64>) -> SlotProcess {
        SlotProcess {
            state: if pid.is_some() { "running" } else { "stopped" }.to_owned(),
            pid,
            start_time,
            uptime_ms: None,
            restart_count: 0,
            rss_bytes: None,
            log: Some(PathBuf::from("/srv/hub/logs/hub-green.log")),
            error: None,
        }
    }

    fn slot(slot: Slot, role: Role, release: &str, port: u16, p: SlotProcess) -> SlotView {
        SlotView {
            slot,
            name: slot.service_name("hub"),
            role,
            release: Some(release.to_owned()),
            addr: format!("127.0.0.1:{port}").parse().unwrap(),
            url: format!("http://127.0.0.1:{port}"),
            process: p,
        }
    }

    /// r2 live in green under `pid`, r1 the standby in blue.
    pub(crate) fn live_state(pid: Option<u32>, start_time: Option<u64>) -> LiveState {
        let live = slot(
            Slot::Green,
            Role::Live,
            "r2",
            7101,
            process(pid, start_time),
        );
        let standby = slot(
            Slot::Blue,
            Role::Standby,
            "r1",
            7100,
            process(Some(1), None),
        );
        let root = PathBuf::from("/srv/hub");
        LiveState {
            service: "hub".into(),
            strategy: StrategyKind::BlueGreen,
            release: Some("r2".into()),
            slot: Some(Slot::Green),
            slot_addr: Some(live.addr),
            slot_url: Some(live.url.clone()),
            url: Some("https://127.0.0.1:8443".into()),
            public_url: Some("https://127.0.0.1:8443".into()),
            proxy_ca: None,
            process: Some(live.process.clone()),
            slots: vec![standby.clone(), live.clone()],
            live: Some(live),
            standby: Some(standby),
            paths: Paths {
                releases: root.join("releases"),
                current: root.join("current"),
                shared: root.join("shared"),
                state: root.join("state"),
                backups: root.join("backups"),
                proxy: root.join("proxy"),
                logs: root.join("logs"),
                root,
            },
        }
    }

    #[test]
    fn the_pid_and_start_time_come_from_the_live_slot() {
        let live = live_state(Some(4242), Some(99));
        assert_eq!(
            process_target(&live),
            Some(ProcessTarget::Live {
                pid: 4242,
                start_time: Some(99),
                name: "hub-green".into()
            })
        );
        // Nothing runs in the live slot: nothing to measure.
        assert_eq!(process_target(&live_state(None, None)), None);

        let view = DeploymentView::new(&live, None, None, Vec::new());
        assert_eq!(view.release.as_deref(), Some("r2"));
        assert_eq!(view.slot, Some(Slot::Green));
        assert_eq!(view.slot_url.as_deref(), Some("http://127.0.0.1:7101"));
        assert_eq!(view.url.as_deref(), Some("https://127.0.0.1:8443"));
        assert_eq!((view.pid, view.start_time), (Some(4242), Some(99)));
        let standby = view.standby.unwrap();
        assert_eq!(
            (
                standby.release.as_deref(),
                standby.slot,
                standby.state.as_str()
            ),
            (Some("r1"), Slot::Blue, "running")
        );
    }

    #[test]
    fn the_log_window_counts_error_lines_and_shows_the_tail() {
        let window: Vec<String> = (0..30)
            .map(|i| match i {
                3 => "2025-06-01T12:00:00Z ERROR db: gone".to_owned(),
                25 => r#"{"level":"error","msg":"x"}"#.to_owned(),
                27 => "request failed: Error 500\u{1b}[0m".to_owned(),
                _ => format!("INFO line {i}"),
            })
            .collect();
        let view = log_view(Path::new("/x.log"), &window);
        assert_eq!(view.window, 30);
        assert_eq!(view.errors, 3);
        assert_eq!(view.tail.len(), LOG_TAIL_LINES);
        assert_eq!(view.tail[0], "INFO line 20");
        assert_eq!(view.tail[7], "request failed: Error 500 [0m");
        assert!(!mentions_error("INFO all good"));
    }

    #[test]
    fn logs_are_read_from_their_end_and_the_rotated_file_fills_a_short_one() {
        let dir = cutover_tests::temp_dir();
        let log = dir.path().join("hub.log");
        assert!(tail_lines(&log, 5).unwrap().is_empty());
        std::fs::write(
            process_control::RotatingLog::rotated_path(&log, 1),
            "old 1\nold 2\nold 3\n",
        )
        .unwrap();
        std::fs::write(&log, "new 1\nnew 2\n").unwrap();
        assert_eq!(tail_lines(&log, 3).unwrap(), ["old 3", "new 1", "new 2"]);

        // A long log: only its end is read, and the cut first line is dropped.
        let long: String = (0..40_000).map(|i| format!("line {i}\n")).collect();
        assert!(long.len() as u64 > LOG_READ_BYTES);
        std::fs::write(&log, &long).unwrap();
        let lines = tail_lines(&log, LOG_WINDOW_LINES).unwrap();
        assert_eq!(lines.len(), LOG_WINDOW_LINES);
        assert_eq!(lines.last().unwrap(), "line 39999");
        let (text, whole) = read_end(&log, LOG_READ_BYTES).unwrap().unwrap();
        assert!(!whole);
        assert!(text.starts_with("line "), "{}", &text[..20]);
    }

    #[test]
    fn the_last_readable_audit_record_is_the_last_operation() {
        let dir = cutover_tests::temp_dir();
        let audit = dir.path().join("audit.jsonl");
        assert_eq!(last_operation(&audit).unwrap(), None);
        std::fs::write(
            &audit,
            concat!(
                r#"{"at":"2025-06-01T11:00:00Z","operation":"deploy","release":"r1","outcome":"deployed","phases":[]}"#,
                "\n",
                r#"{"at":"2025-06-01T12:00:00Z","operation":"rollback","release":"r1","previous":"r2","outcome":"rolled-back","reason":"p95 too high"}"#,
                "\n",
                "{not json\n",
            ),
        )
        .unwrap();
        let op = last_operation(&audit).unwrap().unwrap();
        assert_eq!(op.operation, "rollback");
        assert_eq!(op.release.as_deref(), Some("r1"));
        assert_eq!(op.outcome, "rolled-back");
        assert_eq!(op.at, "2025-06-01T12:00:00Z");
        assert_eq!(op.reason.as_deref(), Some("p95 too high"));
    }
}
