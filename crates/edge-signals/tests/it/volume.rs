//! A million log lines: the reader streams them in bounded memory. The figures (peak memory,
//! cost per 10^5 lines) are printed for the note; nothing here is timed.

#![allow(clippy::print_stdout, clippy::print_stderr)] // What a test measured or why it waits: shown by nextest.
use std::io::{BufWriter, Write};
use std::time::Instant;

use edge_signals::{
    EdgeReader, MAX_GROUPS, MAX_LINE, MAX_SERIES, READ_CHUNK, SignalOptions, StartAt, read_window,
};

/// A `/proc/self/status` field in KiB.
fn status_kib(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .expect("the field is there")
}

#[test]
fn a_million_lines_are_read_in_bounded_memory() {
    const LINES: u64 = 1_000_000;
    let dir = cutover_tests::temp_dir();
    let path = dir.path().join("access.json");
    {
        let mut out = BufWriter::new(std::fs::File::create(&path).expect("create the log"));
        // 1,000 requests a second over 1,000 s, three locations, two slots, some failures.
        let base_ms = 1_700_000_000_000i64;
        for i in 0..LINES {
            let t = base_ms + i64::try_from(i).expect("small");
            let status = match i % 50 {
                0 => 503,
                1 => 429,
                2 => 499,
                _ => 200,
            };
            let location = ["/api/", "/api/tools", "/"][(i % 3) as usize];
            let slot = 7001 + i % 2;
            writeln!(
                out,
                r#"{{"time":{}.{:03},"status":{status},"request_time":0.{:03},"upstream_response_time":"0.{:03}","upstream_addr":"127.0.0.1:{slot}","upstream_status":"{status}","method":"GET","location":"{location}","bytes_sent":{},"request_length":80,"connection":{i}}}"#,
                t / 1000,
                t % 1000,
                i % 997,
                i % 991,
                200 + i % 300,
            )
            .expect("write a line");
        }
        out.flush().expect("flush");
    }
    let size = std::fs::metadata(&path).expect("stat").len();
    let rss_before = status_kib("VmRSS:");

    let started = Instant::now();
    let mut reader = EdgeReader::new(&path, StartAt::Beginning, SignalOptions::default());
    let report = reader.poll().expect("the log reads");
    let elapsed = started.elapsed();
    assert_eq!(report.follow.lines, LINES);
    assert_eq!(report.malformed, 0);

    // The bounds, asserted: the buffers, the window's samples (one minute at 1,000/s), the
    // groups and series.
    assert!(
        reader.buffered_bytes() <= READ_CHUNK + 2 * MAX_LINE,
        "{}",
        reader.buffered_bytes()
    );
    let samples = reader.signals().samples_held();
    assert!(
        samples <= 60_001,
        "{samples} samples held for a 60 s window at 1,000/s"
    );
    let (groups, series) = reader.signals().groups_and_series();
    assert!(
        groups <= MAX_GROUPS && series <= MAX_SERIES,
        "{groups} {series}"
    );
    assert_eq!(groups, 6, "three locations by two slots");
    assert!(series <= 6 * 4, "{series}");
    let end = jiff::Timestamp::from_millisecond(1_700_000_000_000 + 999_999).expect("time");
    let window = reader.signals().window(end);
    assert_eq!(window.overall.requests, 60_000);

    let peak = status_kib("VmHWM:");
    // Generous: a whole-file read would need 230 MB.
    assert!(
        peak < 64 * 1024,
        "peak RSS {peak} KiB reading {size} bytes; before reading {rss_before} KiB"
    );

    let started_window = Instant::now();
    let once = read_window(&path, None, SignalOptions::default(), end).expect("a window read");
    let window_elapsed = started_window.elapsed();
    assert_eq!(once.window(end).overall.requests, 60_000);

    eprintln!(
        "figures: {LINES} lines ({size} bytes) in {:.0} ms = {:.1} ms per 10^5 lines; peak RSS {peak} KiB (RSS before reading {rss_before} KiB); {samples} samples held; one-shot window read {:.0} ms",
        elapsed.as_secs_f64() * 1000.0,
        elapsed.as_secs_f64() * 1000.0 / (LINES as f64 / 100_000.0),
        window_elapsed.as_secs_f64() * 1000.0,
    );
}
