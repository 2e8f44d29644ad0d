//! Tables for people: the figures of a run and the reasons of a comparison.

use std::fmt::Write as _;

use perf_baseline::{Comparison, LatencySummary, Movement, RunReport, RunSummary};

fn row(out: &mut String, name: &str, requests: u64, errors: u64, rps: f64, l: &LatencySummary) {
    let _ = writeln!(
        out,
        "{name:<28} {requests:>9} {errors:>7} {rps:>10.1} {:>9.3} {:>9.3} {:>9.3} {:>9.3} {:>9.3} {:>9.3}",
        l.p50, l.p90, l.p95, l.p99, l.p999, l.max
    );
}

/// The run's figures: a header line, a latency table (overall and per endpoint), open-model
/// figures, errors by kind and the target's resources.
pub(crate) fn run_table(s: &RunSummary, report: &RunReport) -> String {
    let mut out = String::new();
    let model = match report.plan.model {
        perf_baseline::LoadModel::Closed { connections } => {
            format!("closed model, {connections} connections")
        }
        perf_baseline::LoadModel::Open { rate, connections } => {
            format!("open model, {rate} requests/s over {connections} connections")
        }
    };
    let _ = writeln!(
        out,
        "{} requests in {:.2} s ({model}): {:.1} requests/s, {} errors, {:.1} KiB received",
        s.requests,
        s.duration_s,
        s.requests_per_sec,
        s.errors,
        s.bytes as f64 / 1024.0
    );
    let _ = writeln!(
        out,
        "{:<28} {:>9} {:>7} {:>10} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9}",
        "latency (ms)", "requests", "errors", "req/s", "p50", "p90", "p95", "p99", "p99.9", "max"
    );
    row(
        &mut out,
        "overall",
        s.requests,
        s.errors,
        s.requests_per_sec,
        &s.latency_ms,
    );
    if let Some(u) = &s.uncorrected_latency_ms {
        row(
            &mut out,
            "  uncorrected (from write)",
            s.requests,
            s.errors,
            s.requests_per_sec,
            u,
        );
    }
    if s.endpoints.len() > 1 {
        for e in &s.endpoints {
            row(
                &mut out,
                &e.name,
                e.requests,
                e.errors,
                e.requests_per_sec,
                &e.latency_ms,
            );
        }
    }
    if let Some(o) = &s.open {
        let _ = writeln!(
            out,
            "open model: requested {:.1}/s, achieved {:.1}/s, {} sends later than {} ms; latency measured from the intended send time",
            o.requested_rate, o.achieved_rate, o.late_sends, o.late_threshold_ms
        );
    }
    if s.errors > 0 {
        let e = &s.errors_by_kind;
        let _ = writeln!(
            out,
            "errors: connect {}, timeout {}, io {}, protocol {}, 4xx {}, 5xx {}",
            e.connect, e.timeout, e.io, e.protocol, e.status_4xx, e.status_5xx
        );
    }
    if let Some(r) = &s.resources {
        let mib = |b: u64| b as f64 / (1024.0 * 1024.0);
        let _ = writeln!(
            out,
            "target pid {}: RSS {:.1} -> {:.1} MiB (peak {:.1}), CPU mean {:.0}% peak {:.0}% of a core{}",
            r.pid,
            mib(r.rss_start_bytes),
            mib(r.rss_end_bytes),
            mib(r.rss_peak_bytes),
            r.cpu_mean_percent,
            r.cpu_peak_percent,
            if r.exited {
                " (exited during the run)"
            } else {
                ""
            }
        );
    }
    out
}

/// The verdict and one line per figure.
pub(crate) fn comparison(c: &Comparison) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "verdict: {}", c.verdict);
    for r in &c.reasons {
        let mark = match r.movement {
            Movement::Regressed => "REGRESSED",
            Movement::Improved => "improved",
            Movement::Within => "ok",
        };
        let _ = writeln!(out, "  {mark:<9} {}", r.message);
    }
    let _ = writeln!(out, "{}", c.guidance);
    out
}
