//! Rendering a [`Snapshot`]: the full-screen terminal view (ratatui) and the same lines as
//! plain text when stdout is not a terminal. Pure functions of the snapshot: no I/O.
//!
//! Every value that could not be read says so (`no data`, `unreachable`), and every marker
//! is a word as well as a colour (`ok`, `WARN`, `CRIT`, `UNKN`), so a screen without colours
//! (or a log file) tells the same story.

use std::time::Duration;

use alert_rules::Severity;
use cutover_cli::Status;
use ratatui::Frame;
use ratatui::layout::Alignment;
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Paragraph};

use crate::deployment::DeploymentView;
use crate::snapshot::{AlertView, Reach, Snapshot, Stats, reach_word};

/// What the view shows besides the snapshot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ViewOptions {
    /// The refresh interval, shown in the header.
    pub(crate) interval: Duration,
    /// Whether an evaluation is running right now.
    pub(crate) refreshing: bool,
    /// Whether to use colours (off with `NO_COLOR`).
    pub(crate) colours: bool,
}

/// Draws the whole screen.
pub(crate) fn draw(frame: &mut Frame<'_>, snapshot: Option<&Snapshot>, options: &ViewOptions) {
    let area = frame.area();
    let status = snapshot.map(|s| s.status);
    let title = format!(
        " cutover-monitor · {} ",
        snapshot.map_or("", |s| s.target.as_deref().unwrap_or("nothing deployed"))
    );
    let mut block = Block::default().borders(Borders::ALL).title(title);
    if let Some(status) = status {
        block = block.title(
            Line::from(Span::styled(
                format!(" {} ", status_word(status)),
                marker_style(status, options.colours),
            ))
            .alignment(Alignment::Right),
        );
    }
    let paragraph = Paragraph::new(lines(snapshot, options)).block(block);
    frame.render_widget(paragraph, area);
}

/// The view as plain text, for a stdout that is not a terminal.
pub(crate) fn text(snapshot: &Snapshot, options: &ViewOptions) -> String {
    let mut out = String::new();
    for line in lines(Some(snapshot), options) {
        let mut s: String = line
            .spans
            .iter()
            .map(|span| span.content.as_ref())
            .collect();
        s.truncate(s.trim_end().len());
        out.push_str(&s);
        out.push('\n');
    }
    out
}

/// `ok`, `WARN`, `CRIT`, `UNKNOWN`.
fn status_word(status: Status) -> &'static str {
    match status {
        Status::Ok => "OK",
        Status::Warn => "WARN",
        Status::Fail => "CRIT",
        Status::Unknown => "UNKNOWN",
    }
}

/// A four-character marker.
fn marker_word(status: Status) -> &'static str {
    match status {
        Status::Ok => " ok ",
        Status::Warn => "WARN",
        Status::Fail => "CRIT",
        Status::Unknown => "UNKN",
    }
}

fn marker_style(status: Status, colours: bool) -> Style {
    if !colours {
        return Style::default();
    }
    match status {
        Status::Ok => Style::default().fg(Color::Green),
        Status::Warn => Style::default()
            .fg(Color::Yellow)
            .add_modifier(Modifier::BOLD),
        Status::Fail => Style::default().fg(Color::Red).add_modifier(Modifier::BOLD),
        Status::Unknown => Style::default()
            .fg(Color::Magenta)
            .add_modifier(Modifier::BOLD),
    }
}

fn marker(status: Option<Status>, colours: bool) -> Span<'static> {
    match status {
        Some(s) => Span::styled(marker_word(s), marker_style(s, colours)),
        None => Span::raw("    "),
    }
}

fn heading(text: &str, colours: bool) -> Line<'static> {
    let style = if colours {
        Style::default().add_modifier(Modifier::BOLD)
    } else {
        Style::default()
    };
    Line::from(Span::styled(format!(" {text}"), style))
}

fn row(label: &str, mark: Span<'static>, value: String) -> Line<'static> {
    Line::from(vec![
        Span::raw(format!("  {label:<17} ")),
        mark,
        Span::raw(format!("  {value}")),
    ])
}

fn lines(snapshot: Option<&Snapshot>, options: &ViewOptions) -> Vec<Line<'static>> {
    let colours = options.colours;
    let every = humantime::format_duration(options.interval).to_string();
    let Some(s) = snapshot else {
        return vec![Line::from(format!(
            " collecting the first evaluation… (every {every}; q quits)"
        ))];
    };
    let mut out = Vec::new();
    let summary = if s.reasons.is_empty() {
        "everything within thresholds".to_owned()
    } else {
        s.reasons.join("; ")
    };
    out.push(Line::from(vec![
        Span::raw(" status   "),
        Span::styled(status_word(s.status), marker_style(s.status, colours)),
        Span::raw(format!("  {summary}")),
    ]));
    out.push(Line::from(format!(
        " updated  {} · every {every} · took {} ms{} · q quit · r refresh",
        s.at.strftime("%Y-%m-%d %H:%M:%S UTC"),
        s.took_ms,
        if options.refreshing {
            " · refreshing…"
        } else {
            ""
        }
    )));
    out.push(Line::default());

    if let Some(d) = &s.deployment {
        out.extend(deployment_lines(d, colours));
        out.push(Line::default());
    }

    out.push(heading("SERVICE", colours));
    let health = match &s.health.error {
        // The deployment section and the status line say why, once each.
        Some(_) if s.health.reach == Reach::NoTarget => "not deployed".to_owned(),
        Some(e) => format!("{} ({e})", reach_word(&s.health.reach)),
        None => format!(
            "state {} (status {}) · version {}",
            s.health.state.as_deref().unwrap_or("missing"),
            s.health.status.as_deref().unwrap_or("missing"),
            s.health.version.as_deref().unwrap_or("not reported")
        ),
    };
    out.push(row(
        "health",
        marker(Some(s.health.marker), colours),
        health,
    ));
    if let Some(p) = &s.process {
        let value = match &p.error {
            Some(e) => format!("{e} (from {})", p.source),
            None => format!(
                "pid {} (from {}) · rss {} · cpu {}",
                p.pid.map_or_else(|| "?".to_owned(), |pid| pid.to_string()),
                p.source,
                p.rss_bytes.map_or_else(|| "no data".to_owned(), mebibytes),
                p.cpu_percent
                    .map_or_else(|| "no data".to_owned(), |c| format!("{c:.1} % of a core"))
            ),
        };
        out.push(row("process", marker(Some(p.marker), colours), value));
    }
    out.push(Line::default());

    out.extend(stats_lines(&s.stats, &s.alerts, colours));
    out.push(Line::default());

    out.push(heading("ALERTS", colours));
    out.push(Line::from(format!(
        "  {:<17} MARK  {:<9} {:<9} {:>12}  DETAIL",
        "RULE", "STATE", "SEVERITY", "VALUE"
    )));
    if s.alerts.is_empty() && s.health.reach == Reach::NoTarget {
        out.push(Line::from("  (not evaluated: nothing is deployed)"));
    } else if s.alerts.is_empty() {
        out.push(Line::from("  (no rules)"));
    }
    for a in &s.alerts {
        out.push(Line::from(vec![
            Span::raw(format!("  {:<17} ", a.name)),
            marker(Some(a.marker), colours),
            Span::raw(format!(
                "  {:<9} {:<9} {:>12}  {}",
                a.state.as_str(),
                a.severity.map_or("-", Severity::as_str),
                a.value
                    .as_ref()
                    .map_or_else(|| "-".to_owned(), ToString::to_string),
                alert_detail(a)
            )),
        ]));
    }
    if let Some(log) = s.deployment.as_ref().and_then(|d| d.log.as_ref()) {
        out.push(Line::default());
        out.push(heading(
            &format!(
                "LOG  {} · {} of the last {} lines mention an error",
                log.path.display(),
                log.errors,
                log.window
            ),
            colours,
        ));
        if log.tail.is_empty() {
            out.push(Line::from("  (empty)"));
        }
        for line in &log.tail {
            out.push(Line::from(format!("  {line}")));
        }
    }
    out
}

/// What is live: release and slot, the URLs, the live slot's process, the standby and the
/// last operation in the audit log.
fn deployment_lines(d: &DeploymentView, colours: bool) -> Vec<Line<'static>> {
    let mut out = vec![heading(
        &format!("DEPLOYMENT  {} · {}", d.service, d.strategy.as_str()),
        colours,
    )];
    let none = || marker(None, colours);
    match &d.release {
        Some(release) => {
            let slot = d.slot.map_or("?", |s| s.as_str());
            out.push(row("release", none(), format!("{release} in slot {slot}")));
            let or_none = |url: &Option<String>| url.clone().unwrap_or_else(|| "-".to_owned());
            out.push(row("slot url", none(), or_none(&d.slot_url)));
            out.push(row("url", none(), or_none(&d.url)));
            let mut process = match (d.pid, d.start_time) {
                (Some(pid), Some(start)) => format!("pid {pid} · start time {start}"),
                (Some(pid), None) => format!("pid {pid}"),
                (None, _) => "no pid".to_owned(),
            };
            if let Some(state) = &d.process_state {
                process.push_str(&format!(" · {state}"));
            }
            if let Some(n) = d.restart_count {
                process.push_str(&format!(" · {n} restarts"));
            }
            out.push(row("live process", none(), process));
        }
        None => out.push(row("release", none(), d.description.clone())),
    }
    if let Some(standby) = &d.standby {
        out.push(row(
            "standby",
            none(),
            format!(
                "{} in slot {} · {}",
                standby.release.as_deref().unwrap_or("?"),
                standby.slot,
                standby.state
            ),
        ));
    }
    let last = match &d.last_operation {
        Some(op) => {
            let mut text = format!(
                "{} {}: {} at {}",
                op.operation,
                op.release.as_deref().unwrap_or("-"),
                op.outcome,
                op.at
            );
            if let Some(reason) = &op.reason {
                text.push_str(&format!(" ({reason})"));
            }
            text
        }
        None => "none recorded".to_owned(),
    };
    out.push(row("last operation", none(), last));
    for e in &d.errors {
        if d.release.is_some() || e != &d.description {
            out.push(Line::from(format!("  ({e})")));
        }
    }
    out
}

fn alert_detail(a: &AlertView) -> String {
    match &a.reason {
        // A reason with no value means the sample was not a value: say which kind.
        Some(r) if a.value.is_none() => r.clone(),
        _ => String::new(),
    }
}

fn stats_lines(stats: &Stats, alerts: &[AlertView], colours: bool) -> Vec<Line<'static>> {
    let mut out = Vec::new();
    let window = match (stats.window_seconds, stats.window_requests) {
        (Some(secs), Some(n)) => format!("  (last {secs:.0} s: {n:.0} requests)"),
        _ => String::new(),
    };
    out.push(heading(&format!("STATISTICS{window}"), colours));
    let mark = |rule: &str| {
        marker(
            alerts.iter().find(|a| a.name == rule).map(|a| a.marker),
            colours,
        )
    };
    let shown = |value: Option<String>| -> String {
        match (&stats.reach, value) {
            (Reach::Ok, Some(v)) => v,
            (Reach::Ok, None) => "no data".to_owned(),
            (reach, _) => reach_word(reach).to_owned(),
        }
    };
    let percent = |f: Option<f64>| f.map(|f| format!("{:.1} %", f * 100.0));
    let ms = |f: Option<f64>| f.map(|f| format!("{f:.1} ms"));
    out.push(row(
        "success rate",
        mark("success-rate"),
        shown(percent(stats.success_rate)),
    ));
    out.push(row(
        "latency p50",
        mark("latency-p50"),
        shown(ms(stats.p50_ms)),
    ));
    out.push(row(
        "latency p95",
        mark("latency-p95"),
        shown(ms(stats.p95_ms)),
    ));
    out.push(row(
        "latency p99",
        mark("latency-p99"),
        shown(ms(stats.p99_ms)),
    ));
    out.push(row(
        "cache hit rate",
        mark("cache-hit-rate"),
        shown(percent(stats.cache_hit_rate)),
    ));
    out.push(row(
        "queue depth",
        mark("queue-depth"),
        shown(stats.queue_depth.map(|q| format!("{q:.0}"))),
    ));
    out.push(row(
        "circuit breaker",
        mark("circuit-breaker"),
        shown(stats.circuit_breaker.clone()),
    ));
    if let Some(e) = stats
        .error
        .as_ref()
        .filter(|_| stats.reach != Reach::NoTarget)
    {
        out.push(Line::from(format!("  ({e})")));
    }
    out
}

fn mebibytes(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1024.0 * 1024.0))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::snapshot::{self, Health, ProcessView};
    use alert_rules::{AlertState, RuleStatus, Value};
    use ratatui::Terminal;
    use ratatui::backend::TestBackend;
    use serde_json::json;

    fn status(
        name: &str,
        state: AlertState,
        severity: Option<Severity>,
        value: Option<Value>,
        reason: Option<&str>,
    ) -> AlertView {
        AlertView::from_status(&RuleStatus {
            name: name.into(),
            state,
            severity,
            value,
            since: None,
            reason: reason.map(str::to_owned),
            description: None,
        })
    }

    fn snapshot_of(
        health: Health,
        stats: Stats,
        alerts: Vec<AlertView>,
        measured: bool,
    ) -> Snapshot {
        let process = measured.then(|| ProcessView {
            source: "--pid".into(),
            pid: Some(4242),
            rss_bytes: Some(25 * 1024 * 1024),
            cpu_percent: Some(0.4),
            error: None,
            marker: Status::Ok,
        });
        let (status, reasons) = snapshot::verdict(&health, &stats, process.as_ref(), &alerts);
        Snapshot {
            status,
            target: Some("http://127.0.0.1:7000".into()),
            at: "2025-06-01T12:00:00Z".parse().unwrap(),
            took_ms: 7,
            deployment: None,
            health,
            stats,
            process,
            alerts,
            reasons,
        }
    }

    fn failing() -> Snapshot {
        let health = Health::from_document(
            &json!({"status": "ok", "state": "ready", "version": "20250601-abc1234"}),
        );
        let stats = Stats::from_document(&json!({
            "window_seconds": 60, "window_requests": 40, "success_rate": 0.0,
            "latency_ms": {"p50": 1.25, "p95": 2.5, "p99": 3.0},
            "cache_hit_rate": null, "queue_depth": 0, "circuit_breaker": "open"
        }));
        let alerts = vec![
            status(
                "success-rate",
                AlertState::Pending,
                Some(Severity::Critical),
                Some(Value::Number(0.0)),
                None,
            ),
            status(
                "latency-p95",
                AlertState::Inactive,
                None,
                Some(Value::Number(2.5)),
                None,
            ),
            status(
                "cache-hit-rate",
                AlertState::Inactive,
                None,
                None,
                Some("field /cache_hit_rate is null"),
            ),
            status(
                "circuit-breaker",
                AlertState::Firing,
                Some(Severity::Critical),
                Some(Value::from("open")),
                None,
            ),
        ];
        snapshot_of(health, stats, alerts, true)
    }

    fn unreachable() -> Snapshot {
        let e = "127.0.0.1:7000: Connection refused (os error 111)".to_owned();
        let health = Health::unread(Reach::Unreachable, e.clone());
        let stats = Stats::unread(Reach::Unreachable, e.clone());
        let alerts = vec![status(
            "success-rate",
            AlertState::Unknown,
            None,
            None,
            Some(&e),
        )];
        snapshot_of(health, stats, alerts, false)
    }

    fn options() -> ViewOptions {
        ViewOptions {
            interval: Duration::from_secs(5),
            refreshing: false,
            colours: true,
        }
    }

    /// `failing()` as the live release r2 in slot green of a blue-green deployment, with r1
    /// the standby, a rollback the last operation and errors in its log.
    fn deployed() -> Snapshot {
        let live = crate::deployment::tests::live_state(Some(4242), Some(99));
        let window: Vec<String> = (1..=14)
            .map(|i| match i {
                9 => "2025-06-01T11:59:09Z ERROR upstream timed out".to_owned(),
                _ => format!("2025-06-01T11:59:{i:02}Z INFO GET /api/tools 200"),
            })
            .collect();
        let log = crate::deployment::log_view(
            live.process.as_ref().unwrap().log.as_deref().unwrap(),
            &window,
        );
        let op = crate::deployment::OperationView {
            operation: "deploy".into(),
            release: Some("r2".into()),
            outcome: "deployed".into(),
            at: "2025-06-01T11:58:00Z".into(),
            reason: None,
        };
        let mut s = failing();
        s.target = live.slot_url.clone();
        s.deployment = Some(DeploymentView::new(&live, Some(op), Some(log), Vec::new()));
        s
    }

    /// A deployment with nothing live.
    fn nothing_deployed() -> Snapshot {
        let mut live = crate::deployment::tests::live_state(None, None);
        live.release = None;
        live.slot = None;
        live.slot_addr = None;
        live.slot_url = None;
        live.url = None;
        live.process = None;
        live.live = None;
        live.standby = None;
        let why = live.describe();
        let mut s = snapshot_of(
            Health::unread(Reach::NoTarget, why.clone()),
            Stats::unread(Reach::NoTarget, why),
            Vec::new(),
            false,
        );
        s.target = None;
        s.deployment = Some(DeploymentView::new(&live, None, None, Vec::new()));
        s
    }

    fn screen(snapshot: Option<&Snapshot>) -> String {
        screen_of(snapshot, 110, 30)
    }

    fn screen_of(snapshot: Option<&Snapshot>, width: u16, height: u16) -> String {
        let mut terminal = Terminal::new(TestBackend::new(width, height)).unwrap();
        terminal
            .draw(|frame| draw(frame, snapshot, &options()))
            .unwrap();
        let buffer = terminal.backend().buffer();
        let mut out = String::new();
        for y in 0..buffer.area.height {
            let line: String = (0..buffer.area.width)
                .map(|x| buffer[(x, y)].symbol())
                .collect();
            out.push_str(line.trim_end());
            out.push('\n');
        }
        out
    }

    #[test]
    fn a_failing_service_shows_its_markers() {
        insta::assert_snapshot!("failing", screen(Some(&failing())));
    }

    #[test]
    fn an_unreachable_service_says_so() {
        let s = screen(Some(&unreachable()));
        assert!(s.contains("UNKNOWN"));
        assert!(
            !s.contains(" ok "),
            "nothing unread is shown as healthy:\n{s}"
        );
        insta::assert_snapshot!("unreachable", s);
    }

    #[test]
    fn a_deployment_shows_what_is_live_and_its_log() {
        let s = screen_of(Some(&deployed()), 110, 50);
        assert!(s.contains("cutover-monitor · http://127.0.0.1:7101"), "{s}");
        assert!(s.contains("r2 in slot green"), "{s}");
        assert!(s.contains("pid 4242 · start time 99 · running"), "{s}");
        assert!(s.contains("r1 in slot blue · running"), "{s}");
        assert!(
            s.contains("deploy r2: deployed at 2025-06-01T11:58:00Z"),
            "{s}"
        );
        assert!(s.contains("1 of the last 14 lines mention an error"), "{s}");
        insta::assert_snapshot!("deployed", s);
    }

    #[test]
    fn nothing_deployed_says_so_and_is_unknown() {
        let s = screen(Some(&nothing_deployed()));
        assert!(s.contains("cutover-monitor · nothing deployed"), "{s}");
        assert!(
            s.contains("UNKNOWN  nothing is deployed under /srv/hub"),
            "{s}"
        );
        assert!(s.contains("(not evaluated: nothing is deployed)"), "{s}");
        assert!(!s.contains("unreachable"), "{s}");
        insta::assert_snapshot!("nothing_deployed", s);
    }

    #[test]
    fn before_the_first_evaluation() {
        assert!(screen(None).contains("collecting the first evaluation"));
    }

    #[test]
    fn colours_mark_severity() {
        let mut terminal = Terminal::new(TestBackend::new(110, 30)).unwrap();
        let s = failing();
        terminal
            .draw(|frame| draw(frame, Some(&s), &options()))
            .unwrap();
        let buffer = terminal.backend().buffer();
        // Find the first "CRIT" marker and check it is red.
        let found = (0..buffer.area.height).any(|y| {
            (0..buffer.area.width.saturating_sub(4)).any(|x| {
                let word: String = (x..x + 4).map(|x| buffer[(x, y)].symbol()).collect();
                word == "CRIT" && buffer[(x, y)].fg == Color::Red
            })
        });
        assert!(found, "a red CRIT marker");
    }

    #[test]
    fn plain_text_matches_the_screen() {
        let plain = ViewOptions {
            colours: false,
            ..options()
        };
        let t = text(&failing(), &plain);
        assert!(t.contains("CRIT  0.0 %"), "{t}");
        assert!(t.contains("no data"), "{t}");
        assert!(
            t.contains("state ready (status ok) · version 20250601-abc1234"),
            "{t}"
        );
    }
}
