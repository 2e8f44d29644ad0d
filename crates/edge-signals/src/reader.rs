//! The edge reader: a [`LogFollower`] feeding [`EdgeSignals`], and a one-shot read of the
//! last window for callers that run once (an alert check from cron).

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::error::SignalsError;
use crate::follow::{LogFollower, PollStats, StartAt};
use crate::line::parse_line;
use crate::signals::{EdgeSignals, SignalOptions};

/// Lines may be logged out of time order by this much (workers cache the time; a request is
/// logged when it ends): a window read starts this much earlier to be sure to miss none.
const DISORDER_SLACK: Duration = Duration::from_secs(5);

/// What a poll of the reader saw.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReadReport {
    /// Lines, rotations, truncations, oversized lines.
    pub follow: PollStats,
    /// Lines that were not edge log lines (counted, skipped).
    pub malformed: u64,
}

/// Follows an edge log and keeps its signals; call [`EdgeReader::poll`] as often as fresh
/// numbers are wanted (each call reads only what was appended).
#[derive(Debug)]
pub struct EdgeReader {
    follower: LogFollower,
    signals: EdgeSignals,
    malformed: u64,
}

impl EdgeReader {
    /// A reader of the log at `path`, starting at `start` in the file there now.
    pub fn new(path: impl Into<PathBuf>, start: StartAt, options: SignalOptions) -> Self {
        Self {
            follower: LogFollower::new(path, start),
            signals: EdgeSignals::new(options),
            malformed: 0,
        }
    }

    /// A reader of the log at `path` that starts at the first line of the window ending at
    /// `now` (found by bisection, as [`read_window`] does, so a large log is not read whole),
    /// for an owner that wants the last window on its first poll and only what is appended
    /// after that. A log that does not exist yet is followed from its first byte once it
    /// appears. The rotated generation is not read: right after a rotation the first window
    /// holds only what the new file has.
    ///
    /// # Errors
    /// [`SignalsError::Io`] when the log exists but cannot be read.
    pub fn at_window(
        path: impl Into<PathBuf>,
        options: SignalOptions,
        now: jiff::Timestamp,
    ) -> Result<Self, SignalsError> {
        let path = path.into();
        let start = if path.exists() {
            let from_ms = now.as_millisecond().saturating_sub(
                i64::try_from((options.window + DISORDER_SLACK).as_millis()).unwrap_or(i64::MAX),
            );
            StartAt::Offset(first_offset_at_or_after(&path, from_ms)?)
        } else {
            StartAt::Beginning
        };
        Ok(Self::new(path, start, options))
    }

    /// Reads what was appended since the last poll, across a rotation or truncation.
    ///
    /// # Errors
    /// [`SignalsError::Io`] when the log cannot be read.
    pub fn poll(&mut self) -> Result<ReadReport, SignalsError> {
        let signals = &mut self.signals;
        let mut malformed = 0;
        let follow = self.follower.poll(&mut |line| match parse_line(line) {
            Some(l) => signals.record(&l),
            None => malformed += 1,
        })?;
        self.malformed += malformed;
        Ok(ReadReport { follow, malformed })
    }

    /// The signals so far.
    pub fn signals(&self) -> &EdgeSignals {
        &self.signals
    }

    /// The signals, to change the slot map.
    pub fn signals_mut(&mut self) -> &mut EdgeSignals {
        &mut self.signals
    }

    /// Lines skipped as not edge log lines since the reader was made.
    pub fn malformed(&self) -> u64 {
        self.malformed
    }

    /// The path followed.
    pub fn path(&self) -> &Path {
        self.follower.path()
    }

    /// Bytes the follower holds: its read buffer plus incomplete lines (bounded).
    pub fn buffered_bytes(&self) -> usize {
        self.follower.buffer_bytes() + self.follower.held_bytes()
    }
}

/// Reads the requests of the window ending at `now` from the edge log at `path` and, first,
/// from its rotated generation `rotated` (when given and present): each file from the first
/// line within the window (found by bisection on the log's times, so a large log costs a
/// few reads, not a whole pass) to its end.
///
/// # Errors
/// [`SignalsError::Missing`] when `path` does not exist; [`SignalsError::Io`] when a file
/// cannot be read.
#[tracing::instrument(skip_all, fields(path = %path.display()))]
pub fn read_window(
    path: &Path,
    rotated: Option<&Path>,
    options: SignalOptions,
    now: jiff::Timestamp,
) -> Result<EdgeSignals, SignalsError> {
    if !path.exists() {
        return Err(SignalsError::Missing {
            path: path.to_path_buf(),
        });
    }
    let from_ms = now.as_millisecond().saturating_sub(
        i64::try_from((options.window + DISORDER_SLACK).as_millis()).unwrap_or(i64::MAX),
    );
    let mut signals = EdgeSignals::new(options);
    for file in rotated.into_iter().chain([path]) {
        if !file.exists() {
            continue;
        }
        let offset = first_offset_at_or_after(file, from_ms)?;
        let mut follower = LogFollower::new(file, StartAt::Offset(offset));
        follower.poll(&mut |line| {
            if let Some(l) = parse_line(line) {
                signals.record(&l);
            }
        })?;
    }
    Ok(signals)
}

/// An offset in `path` at or before the first line logged at `from_ms` or later.
fn first_offset_at_or_after(path: &Path, from_ms: i64) -> Result<u64, SignalsError> {
    let file = File::open(path).map_err(|e| SignalsError::io("open", path, e))?;
    let len = file
        .metadata()
        .map_err(|e| SignalsError::io("stat", path, e))?
        .len();
    let (mut lo, mut hi) = (0u64, len);
    let mut buf = vec![0u8; 8 * 1024];
    // Invariant: every line starting before `lo` was logged before `from_ms` (give or take the
    // slack already taken off); stop when the range is one buffer wide.
    while hi - lo > buf.len() as u64 {
        let mid = lo + (hi - lo) / 2;
        match time_of_line_after(&file, path, mid, &mut buf)? {
            Some(t) if t < from_ms => lo = mid,
            _ => hi = mid,
        }
    }
    Ok(lo)
}

/// The time of the first complete line that starts after `offset`.
fn time_of_line_after(
    file: &File,
    path: &Path,
    offset: u64,
    buf: &mut [u8],
) -> Result<Option<i64>, SignalsError> {
    let n = file
        .read_at(buf, offset)
        .map_err(|e| SignalsError::io("read", path, e))?;
    let chunk = &buf[..n];
    let Some(start) = chunk.iter().position(|&b| b == b'\n').map(|p| p + 1) else {
        return Ok(None);
    };
    let rest = &chunk[start..];
    let Some(end) = rest.iter().position(|&b| b == b'\n') else {
        return Ok(None);
    };
    Ok(parse_line(&rest[..end]).map(|l| l.time_ms))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn log_line(time_ms: i64, status: u16) -> String {
        format!(
            "{{\"time\":{}.{:03},\"status\":{status},\"request_time\":0.010,\"upstream_response_time\":\"0.009\",\"upstream_addr\":\"127.0.0.1:7001\",\"method\":\"GET\",\"location\":\"/api/\",\"bytes_sent\":10}}\n",
            time_ms / 1000,
            time_ms % 1000
        )
    }

    #[test]
    fn a_window_read_bisects_a_large_log_and_includes_the_rotated_part() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("access.json");
        let rotated = dir.path().join("access.json.1");
        let mut old = std::fs::File::create(&rotated).unwrap();
        let mut new = std::fs::File::create(&path).unwrap();
        // 100,000 s of one request a second, then the last 30 s in the rotated file and 30 s
        // in the new one.
        let base = 1_700_000_000_000i64;
        for s in 0..100_000i64 {
            old.write_all(log_line(base + s * 1000, 200).as_bytes())
                .unwrap();
        }
        for s in 100_000..100_030i64 {
            old.write_all(log_line(base + s * 1000, 503).as_bytes())
                .unwrap();
        }
        for s in 100_030..100_060i64 {
            new.write_all(log_line(base + s * 1000, 200).as_bytes())
                .unwrap();
        }
        new.write_all(b"not json\n").unwrap();
        let now = jiff::Timestamp::from_millisecond(base + 100_059_500).unwrap();
        let signals = read_window(&path, Some(&rotated), SignalOptions::default(), now).unwrap();
        let w = signals.window(now);
        assert_eq!(w.overall.requests, 60);
        assert_eq!(w.overall.status_5xx, 30);
        assert_eq!(w.overall.success_rate, Some(0.5));
        // Bisection: far fewer samples were ever recorded than the file holds.
        let recorded: u64 = signals.series().iter().map(|s| s.total.count).sum();
        assert!(recorded < 1_000, "{recorded} lines read for a 60 s window");
    }

    #[test]
    fn a_reader_at_the_window_starts_near_its_first_line_and_then_follows() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("access.json");
        let mut file = std::fs::File::create(&path).unwrap();
        let base = 1_700_000_000_000i64;
        for s in 0..10_000i64 {
            file.write_all(log_line(base + s * 1000, 200).as_bytes())
                .unwrap();
        }
        let now = jiff::Timestamp::from_millisecond(base + 9_999_500).unwrap();
        let mut reader = EdgeReader::at_window(&path, SignalOptions::default(), now).unwrap();
        let report = reader.poll().unwrap();
        assert!(report.follow.lines < 1_000, "{report:?}");
        assert_eq!(reader.signals().window(now).overall.requests, 60);
        // Then only what is appended.
        file.write_all(log_line(base + 10_000_000, 503).as_bytes())
            .unwrap();
        assert_eq!(reader.poll().unwrap().follow.lines, 1);
        let later = jiff::Timestamp::from_millisecond(base + 10_000_100).unwrap();
        assert_eq!(reader.signals().window(later).overall.status_5xx, 1);

        // A log that is not there yet is read from its start once it appears.
        let missing = dir.path().join("later.json");
        let mut reader = EdgeReader::at_window(&missing, SignalOptions::default(), now).unwrap();
        assert_eq!(reader.poll().unwrap().follow.lines, 0);
        std::fs::write(&missing, log_line(base + 9_999_000, 200)).unwrap();
        assert_eq!(reader.poll().unwrap().follow.lines, 1);
    }

    #[test]
    fn a_missing_log_says_what_to_do() {
        let err = read_window(
            Path::new("/nonexistent/logs/access.json"),
            None,
            SignalOptions::default(),
            jiff::Timestamp::UNIX_EPOCH,
        )
        .unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("/nonexistent/logs/access.json") && text.contains("cutover-edge up"),
            "{text}"
        );
    }
}
