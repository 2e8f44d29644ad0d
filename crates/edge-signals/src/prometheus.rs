//! The edge's totals as Prometheus text exposition format (version 0.0.4).

use std::fmt::Write as _;

use crate::signals::{DURATION_BUCKETS, EdgeSignals};

/// The counter of requests.
pub const REQUESTS_METRIC: &str = "cutover_edge_requests_total";
/// The latency histogram.
pub const DURATION_METRIC: &str = "cutover_edge_request_duration_seconds";

/// Renders `cutover_edge_requests_total{location,slot,release,status}` and the histogram
/// `cutover_edge_request_duration_seconds` with the same labels, from the totals of `signals`
/// (every request read since they were made). With no request yet, only HELP and TYPE lines.
pub fn render_prometheus(signals: &EdgeSignals) -> String {
    let series = signals.series();
    let mut out = String::new();
    let _ = writeln!(
        out,
        "# HELP {REQUESTS_METRIC} Requests nginx answered, by matched location, release slot, release and status."
    );
    let _ = writeln!(out, "# TYPE {REQUESTS_METRIC} counter");
    for s in &series {
        let _ = writeln!(
            out,
            "{REQUESTS_METRIC}{{{}}} {}",
            labels(s.location, s.slot, s.release, &s.status),
            s.total.count
        );
    }
    let _ = writeln!(
        out,
        "# HELP {DURATION_METRIC} Request time at nginx (first byte in to last byte out), by the same labels."
    );
    let _ = writeln!(out, "# TYPE {DURATION_METRIC} histogram");
    for s in &series {
        let l = labels(s.location, s.slot, s.release, &s.status);
        for (le, count) in DURATION_BUCKETS.iter().zip(s.total.buckets) {
            let _ = writeln!(out, "{DURATION_METRIC}_bucket{{{l},le=\"{le}\"}} {count}");
        }
        let _ = writeln!(
            out,
            "{DURATION_METRIC}_bucket{{{l},le=\"+Inf\"}} {}",
            s.total.count
        );
        let _ = writeln!(out, "{DURATION_METRIC}_sum{{{l}}} {}", s.total.sum_seconds);
        let _ = writeln!(out, "{DURATION_METRIC}_count{{{l}}} {}", s.total.count);
    }
    out
}

fn labels(location: &str, slot: &str, release: &str, status: &str) -> String {
    format!(
        "location=\"{}\",slot=\"{}\",release=\"{}\",status=\"{}\"",
        escape(location),
        escape(slot),
        escape(release),
        escape(status)
    )
}

/// Label values escape backslash, double quote and newline.
fn escape(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            _ => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::line::parse_line;
    use crate::signals::SignalOptions;

    #[test]
    fn series_render_with_cumulative_buckets_and_escaped_labels() {
        let mut options = SignalOptions::default();
        options
            .slots
            .insert("127.0.0.1:7001", "blue", Some("r\"1".into()));
        let mut signals = EdgeSignals::new(options);
        for (status, t) in [(200, "0.003"), (200, "0.2"), (503, "1.5")] {
            let line = format!(
                "{{\"time\":1.0,\"status\":{status},\"request_time\":{t},\"upstream_response_time\":\"{t}\",\"upstream_addr\":\"127.0.0.1:7001\",\"method\":\"GET\",\"location\":\"/api/\",\"bytes_sent\":1}}"
            );
            signals.record(&parse_line(line.as_bytes()).unwrap());
        }
        let text = render_prometheus(&signals);
        let l = r#"location="/api/",slot="blue",release="r\"1""#;
        assert!(
            text.contains(&format!("{REQUESTS_METRIC}{{{l},status=\"200\"}} 2\n")),
            "{text}"
        );
        assert!(
            text.contains(&format!(
                "{DURATION_METRIC}_bucket{{{l},status=\"200\",le=\"0.005\"}} 1\n"
            )),
            "{text}"
        );
        assert!(
            text.contains(&format!(
                "{DURATION_METRIC}_bucket{{{l},status=\"200\",le=\"0.25\"}} 2\n"
            )),
            "{text}"
        );
        assert!(
            text.contains(&format!(
                "{DURATION_METRIC}_bucket{{{l},status=\"503\",le=\"1\"}} 0\n"
            )),
            "{text}"
        );
        assert!(
            text.contains(&format!(
                "{DURATION_METRIC}_count{{{l},status=\"503\"}} 1\n"
            )),
            "{text}"
        );
        let empty = render_prometheus(&EdgeSignals::new(SignalOptions::default()));
        assert_eq!(empty.lines().count(), 4, "{empty}");
    }
}
