//! Rendering a [`Snapshot`]: the full-screen terminal view (ratatui) and the same lines as
//! plain text when stdout is not a terminal. Pure functions of the snapshot, the [`History`]
//! of recent evaluations and the [`Dashboard`]'s state (focus, pause): no I/O.
//!
//! The screen is a header (verdict, findings, keys) over panels: DEPLOYMENT, EDGE (what users
//! got through the proxy), SERVICE (health, process, the service's own statistics), ALERTS and
//! LOG. A terminal at least [`WIDE`] columns wide shows them in two columns, a narrower one
//! stacks them; when they do not all fit, the focused panel (`tab`) keeps its full height and
//! the others shrink, so every panel can be read on a small terminal. Every metric has a
//! sparkline of its recent evaluations, newest on the right; `·` marks an evaluation without
//! a value.
//!
//! Every value that could not be read says so (`no data`, `unreachable`), and every marker
//! is a word as well as a colour (`ok`, `WARN`, `CRIT`, `UNKN`), so a screen without colours
//! (or a log file) tells the same story.

use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

use alert_rules::Severity;
use cutover_cli::Status;
use edge_signals::Signals;
use ratatui::Frame;
use ratatui::layout::{Alignment, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, BorderType, Borders, Paragraph, RenderDirection, Sparkline};

use crate::deployment::DeploymentView;
use crate::edge::EdgeReach;
use crate::snapshot::{AlertView, Reach, Snapshot, Stats, reach_word};

/// From this many columns the panels are laid out in two columns.
pub(crate) const WIDE: u16 = 140;
/// Evaluations kept for the sparklines (20 minutes at the default 5 s).
pub(crate) const HISTORY: usize = 240;
/// The widest a sparkline beside a detail column gets.
const SPARK_BESIDE_DETAIL: u16 = 24;
/// The narrowest sparkline worth drawing.
const SPARK_MIN: u16 = 4;

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

/// The panels, in the order `tab` visits them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Panel {
    /// What is live.
    Deployment,
    /// What users got through the proxy.
    Edge,
    /// Health, process and the service's own statistics.
    Service,
    /// Every rule's standing.
    Alerts,
    /// The tail of the live slot's log.
    Log,
}

/// The full-screen view's own state: the history behind the sparklines, the focused panel and
/// whether evaluations are paused.
#[derive(Debug, Clone, Default)]
pub(crate) struct Dashboard {
    /// Recent evaluations' values.
    pub(crate) history: History,
    /// The index of the focused panel among those shown (taken modulo their number).
    pub(crate) focus: usize,
    /// Whether evaluations are paused (`p`).
    pub(crate) paused: bool,
}

impl Dashboard {
    /// Moves the focus to the next panel shown (`tab`), or the previous one (`shift-tab`).
    pub(crate) fn move_focus(&mut self, snapshot: Option<&Snapshot>, forward: bool) {
        let n = panels_of(snapshot).len().max(1);
        let current = self.focus % n;
        self.focus = if forward {
            (current + 1) % n
        } else {
            (current + n - 1) % n
        };
    }

    /// The focused panel, when there are panels.
    pub(crate) fn focused(&self, snapshot: Option<&Snapshot>) -> Option<Panel> {
        let panels = panels_of(snapshot);
        (!panels.is_empty()).then(|| panels[self.focus % panels.len()])
    }
}

/// Each metric's values over the last [`HISTORY`] evaluations, oldest first; `None` where an
/// evaluation had no value.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct History {
    evaluations: usize,
    series: BTreeMap<String, VecDeque<Option<f64>>>,
}

impl History {
    /// Adds an evaluation's values.
    pub(crate) fn record(&mut self, snapshot: &Snapshot) {
        let values = metric_values(snapshot);
        let len = self.evaluations.min(HISTORY - 1);
        for (key, _) in &values {
            // A metric seen for the first time had no value before.
            self.series
                .entry(key.clone())
                .or_insert_with(|| std::iter::repeat_n(None, len).collect());
        }
        for (key, series) in &mut self.series {
            let value = values.iter().find(|(k, _)| k == key).and_then(|(_, v)| *v);
            series.push_back(value);
            while series.len() > HISTORY {
                series.pop_front();
            }
        }
        // Metrics gone for a whole history (a slot removed, a rule renamed) are forgotten; a
        // metric still reported keeps its series, values or not (its `·` say "no data").
        self.series
            .retain(|key, s| values.iter().any(|(k, _)| k == key) || s.iter().any(Option::is_some));
        self.evaluations += 1;
    }

    /// The last `n` values of `key`, newest first.
    fn newest_first(&self, key: &str, n: usize) -> Vec<Option<f64>> {
        self.series
            .get(key)
            .map(|s| s.iter().rev().take(n).copied().collect())
            .unwrap_or_default()
    }
}

/// The values a snapshot gives the sparklines, by key.
fn metric_values(s: &Snapshot) -> Vec<(String, Option<f64>)> {
    let mut out = Vec::new();
    if let Some(e) = s.edge.as_ref().filter(|e| e.reach == EdgeReach::Ok) {
        edge_values(&mut out, "edge", &e.overall);
        for slot in &e.slots {
            edge_values(&mut out, &format!("edge.slot.{}", slot.slot), &slot.signals);
        }
    }
    if let Some(p) = &s.process {
        out.push(("process.rss".into(), p.rss_bytes.map(|b| b as f64)));
        out.push(("process.cpu".into(), p.cpu_percent));
    }
    let st = &s.stats;
    for (key, value) in [
        ("stats.success", st.success_rate),
        ("stats.p50", st.p50_ms),
        ("stats.p95", st.p95_ms),
        ("stats.p99", st.p99_ms),
        ("stats.cache", st.cache_hit_rate),
        ("stats.queue", st.queue_depth),
    ] {
        out.push((key.to_owned(), value));
    }
    for a in &s.alerts {
        out.push((
            format!("alert.{}", a.name),
            a.value.as_ref().and_then(alert_rules::Value::as_f64),
        ));
    }
    out
}

fn edge_values(out: &mut Vec<(String, Option<f64>)>, prefix: &str, s: &Signals) {
    out.push((format!("{prefix}.rps"), Some(s.requests_per_sec)));
    out.push((format!("{prefix}.success"), s.success_rate));
    out.push((format!("{prefix}.p95"), s.p95_ms));
    out.push((format!("{prefix}.p99"), s.p99_ms));
    out.push((format!("{prefix}.429"), Some(s.status_429 as f64)));
}

/// One line of a panel: its text, the metric whose sparkline follows it, and a detail after
/// the sparkline.
struct Row {
    head: Line<'static>,
    spark: Option<String>,
    tail: String,
}

impl Row {
    fn plain(head: Line<'static>) -> Row {
        Row {
            head,
            spark: None,
            tail: String::new(),
        }
    }

    fn with_spark(head: Line<'static>, key: impl Into<String>) -> Row {
        Row {
            head,
            spark: Some(key.into()),
            tail: String::new(),
        }
    }
}

/// A panel's title and rows.
struct PanelContent {
    panel: Panel,
    title: String,
    rows: Vec<Row>,
}

/// The panels a snapshot shows, in `tab` order.
fn panels_of(snapshot: Option<&Snapshot>) -> Vec<Panel> {
    let Some(s) = snapshot else {
        return Vec::new();
    };
    let mut out = Vec::new();
    if s.deployment.is_some() {
        out.push(Panel::Deployment);
    }
    if s.edge.is_some() {
        out.push(Panel::Edge);
    }
    out.push(Panel::Service);
    out.push(Panel::Alerts);
    if s.deployment.as_ref().is_some_and(|d| d.log.is_some()) {
        out.push(Panel::Log);
    }
    out
}

fn content(panel: Panel, s: &Snapshot, colours: bool) -> PanelContent {
    let (title, rows) = match panel {
        Panel::Deployment => deployment_panel(s.deployment.as_ref(), colours),
        Panel::Edge => edge_panel(s, colours),
        Panel::Service => service_panel(s, colours),
        Panel::Alerts => alerts_panel(s, colours),
        Panel::Log => log_panel(s),
    };
    PanelContent { panel, title, rows }
}

/// Draws the whole screen.
pub(crate) fn draw(
    frame: &mut Frame<'_>,
    snapshot: Option<&Snapshot>,
    options: &ViewOptions,
    board: &Dashboard,
) {
    let area = frame.area();
    let header = header_lines(snapshot, options, board.paused);
    let header_height = (u16::try_from(header.len()).unwrap_or(u16::MAX) + 2).min(area.height);
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
    let header_area = Rect {
        height: header_height,
        ..area
    };
    frame.render_widget(Paragraph::new(header).block(block), header_area);
    let body = Rect {
        y: area.y + header_height,
        height: area.height - header_height,
        ..area
    };
    let Some(s) = snapshot else {
        return;
    };
    let focused = board.focused(snapshot);
    let contents: Vec<PanelContent> = panels_of(snapshot)
        .into_iter()
        .map(|p| content(p, s, options.colours))
        .collect();
    let columns: Vec<(Rect, Vec<&PanelContent>)> = if body.width >= WIDE {
        let left_width = body.width / 2;
        let left = Rect {
            width: left_width,
            ..body
        };
        let right = Rect {
            x: body.x + left_width,
            width: body.width - left_width,
            ..body
        };
        let (l, r): (Vec<&PanelContent>, Vec<&PanelContent>) = contents
            .iter()
            .partition(|c| matches!(c.panel, Panel::Edge | Panel::Service));
        vec![(left, l), (right, r)]
    } else {
        vec![(body, contents.iter().collect())]
    };
    for (column, panels) in columns {
        let natural: Vec<u16> = panels
            .iter()
            .map(|p| {
                u16::try_from(p.rows.len())
                    .unwrap_or(u16::MAX)
                    .saturating_add(2)
            })
            .collect();
        let focus = panels.iter().position(|p| Some(p.panel) == focused);
        let heights = column_heights(&natural, focus, column.height);
        let mut y = column.y;
        for (p, h) in panels.iter().zip(heights) {
            if h == 0 {
                continue;
            }
            let rect = Rect {
                y,
                height: h,
                ..column
            };
            y += h;
            render_panel(
                frame,
                p,
                rect,
                Some(p.panel) == focused,
                &board.history,
                options.colours,
            );
        }
    }
}

/// How tall each panel of a column is: what it needs, the last one taking what is left; when
/// they do not fit, every panel keeps its borders and title, the focused one gets what it
/// needs first and the others what remains, in order.
fn column_heights(natural: &[u16], focus: Option<usize>, available: u16) -> Vec<u16> {
    let total: u16 = natural.iter().fold(0, |a, &h| a.saturating_add(h));
    let mut heights = natural.to_vec();
    if total <= available {
        if let Some(last) = heights.last_mut() {
            *last += available - total;
        }
        return heights;
    }
    let mut left = available;
    for h in &mut heights {
        *h = (*h).min(2).min(left);
        left -= *h;
    }
    let order = focus
        .into_iter()
        .chain((0..natural.len()).filter(|&i| Some(i) != focus));
    for i in order {
        let more = natural[i].saturating_sub(heights[i]).min(left);
        if heights[i] > 0 {
            heights[i] += more;
            left -= more;
        }
    }
    heights
}

fn render_panel(
    frame: &mut Frame<'_>,
    panel: &PanelContent,
    rect: Rect,
    focused: bool,
    history: &History,
    colours: bool,
) {
    let mut block = Block::default()
        .borders(Borders::ALL)
        .title(format!(" {} ", panel.title));
    if focused {
        block = block.border_type(BorderType::Thick);
        if colours {
            block = block.border_style(Style::default().fg(Color::Cyan));
        }
    }
    let inner = block.inner(rect);
    frame.render_widget(block, rect);
    for (i, row) in panel.rows.iter().enumerate() {
        let Ok(i) = u16::try_from(i) else { break };
        if i >= inner.height {
            break;
        }
        let y = inner.y + i;
        let line_rect = |x: u16, width: u16| Rect {
            x,
            y,
            width: width.min(inner.right().saturating_sub(x)),
            height: 1,
        };
        let head_width = u16::try_from(row.head.width()).unwrap_or(u16::MAX);
        let tail_width = u16::try_from(row.tail.chars().count()).unwrap_or(u16::MAX);
        let room = inner
            .width
            .saturating_sub(head_width.saturating_add(2))
            .saturating_sub(if tail_width > 0 { tail_width + 2 } else { 0 });
        let spark_width = if tail_width > 0 {
            room.min(SPARK_BESIDE_DETAIL)
        } else {
            room
        };
        match &row.spark {
            Some(key) if spark_width >= SPARK_MIN => {
                frame.render_widget(
                    Paragraph::new(row.head.clone()),
                    line_rect(inner.x, head_width),
                );
                let spark_x = inner.x + head_width + 2;
                frame.render_widget(
                    sparkline(history, key, spark_width, colours),
                    line_rect(spark_x, spark_width),
                );
                if tail_width > 0 {
                    let x = spark_x + spark_width + 2;
                    frame.render_widget(
                        Paragraph::new(row.tail.clone()),
                        line_rect(x, inner.right().saturating_sub(x)),
                    );
                }
            }
            _ => {
                let mut line = row.head.clone();
                if tail_width > 0 {
                    line.spans.push(Span::raw(format!("  {}", row.tail)));
                }
                frame.render_widget(Paragraph::new(line), line_rect(inner.x, inner.width));
            }
        }
    }
}

/// A one-line sparkline of `key`'s last `width` values, newest on the right.
fn sparkline(history: &History, key: &str, width: u16, colours: bool) -> Sparkline<'static> {
    let data: Vec<Option<u64>> = history
        .newest_first(key, usize::from(width))
        .into_iter()
        .map(|v| v.map(|v| (v.max(0.0) * 1000.0).round() as u64))
        .collect();
    let mut spark = Sparkline::default()
        .data(data)
        .direction(RenderDirection::RightToLeft)
        .absent_value_symbol("·");
    if colours {
        spark = spark
            .style(Style::default().fg(Color::Cyan))
            .absent_value_style(Style::default().fg(Color::DarkGray));
    }
    spark
}

/// The view as plain text, for a stdout that is not a terminal.
pub(crate) fn text(snapshot: &Snapshot, options: &ViewOptions) -> String {
    let mut lines = header_lines(Some(snapshot), options, false);
    for panel in panels_of(Some(snapshot)) {
        let c = content(panel, snapshot, options.colours);
        lines.push(Line::default());
        lines.push(heading(&c.title, options.colours));
        for row in c.rows {
            let mut line = row.head;
            if !row.tail.is_empty() {
                line.spans.push(Span::raw(format!("  {}", row.tail)));
            }
            lines.push(line);
        }
    }
    let mut out = String::new();
    for line in lines {
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

/// A labelled line: label, marker, value.
fn row(label: &str, mark: Span<'static>, value: String) -> Line<'static> {
    Line::from(vec![
        Span::raw(format!("  {label:<17} ")),
        mark,
        Span::raw(format!("  {value}")),
    ])
}

/// A metric's line: as [`row`], the value padded so the sparklines after it line up.
fn metric(label: &str, mark: Span<'static>, value: String, key: &str) -> Row {
    Row::with_spark(row(label, mark, format!("{value:<14}")), key)
}

/// The header: the verdict and its findings, when and how often, the keys.
fn header_lines(
    snapshot: Option<&Snapshot>,
    options: &ViewOptions,
    paused: bool,
) -> Vec<Line<'static>> {
    let colours = options.colours;
    let every = humantime::format_duration(options.interval).to_string();
    let Some(s) = snapshot else {
        return vec![Line::from(format!(
            " collecting the first evaluation… (every {every}; q quits)"
        ))];
    };
    let summary = if s.reasons.is_empty() {
        "everything within thresholds".to_owned()
    } else {
        s.reasons.join("; ")
    };
    let state = if paused {
        " · PAUSED (p resumes)"
    } else if options.refreshing {
        " · refreshing…"
    } else {
        ""
    };
    vec![
        Line::from(vec![
            Span::raw(" status   "),
            Span::styled(status_word(s.status), marker_style(s.status, colours)),
            Span::raw(format!("  {summary}")),
        ]),
        Line::from(format!(
            " updated  {} · every {every} · took {} ms{state} · q quit · r refresh · p pause · tab panel",
            s.at.strftime("%Y-%m-%d %H:%M:%S UTC"),
            s.took_ms,
        )),
    ]
}

/// What is live: release and slot, the URLs, the live slot's process, the standby and the
/// last operation in the audit log.
fn deployment_panel(d: Option<&DeploymentView>, colours: bool) -> (String, Vec<Row>) {
    let Some(d) = d else {
        return ("DEPLOYMENT".to_owned(), Vec::new());
    };
    let title = format!("DEPLOYMENT  {} · {}", d.service, d.strategy.as_str());
    let mut out = Vec::new();
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
    if let Some(c) = &d.canary {
        out.push(row(
            "canary",
            none(),
            format!(
                "{} in slot {} vs {} · {} · step {} of {:?} · {} % canary / {} % baseline",
                c.release,
                c.canary_slot,
                c.baseline,
                c.state,
                c.step,
                c.steps,
                c.canary_percent,
                100 - u32::from(c.canary_percent.min(100)),
            ),
        ));
        out.push(row("judge", none(), format!("{}: {}", c.verdict, c.reason)));
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
    (title, out.into_iter().map(Row::plain).collect())
}

/// The marker of the rule `name`, when it reads the edge (`edge`) or not.
fn mark_of(alerts: &[AlertView], name: &str, edge: bool, colours: bool) -> Span<'static> {
    marker(
        alerts
            .iter()
            .find(|a| a.name == name && a.from_edge == edge)
            .map(|a| a.marker),
        colours,
    )
}

fn percent(f: Option<f64>) -> Option<String> {
    f.map(|f| format!("{:.1} %", f * 100.0))
}

fn millis(f: Option<f64>) -> Option<String> {
    f.map(|f| format!("{f:.1} ms"))
}

/// What users got through the proxy, overall and per release slot.
fn edge_panel(s: &Snapshot, colours: bool) -> (String, Vec<Row>) {
    let Some(e) = &s.edge else {
        return ("EDGE".to_owned(), Vec::new());
    };
    let title = match e.reach {
        EdgeReach::Ok => format!(
            "EDGE  last {:.0} s: {} requests",
            e.window_seconds, e.overall.requests
        ),
        _ => "EDGE".to_owned(),
    };
    let read = e.reach == EdgeReach::Ok;
    let shown = |value: Option<String>| -> String {
        match (read, value) {
            (true, Some(v)) => v,
            (true, None) => "no data".to_owned(),
            (false, _) => "not read".to_owned(),
        }
    };
    let mark = |rule: &str| mark_of(&s.alerts, rule, true, colours);
    let o = &e.overall;
    let mut rows = vec![
        metric(
            "requests/s",
            marker(None, colours),
            shown(Some(format!("{:.1}", o.requests_per_sec))),
            "edge.rps",
        ),
        metric(
            "success rate",
            mark("success-rate"),
            shown(percent(o.success_rate)),
            "edge.success",
        ),
        metric(
            "latency p95",
            mark("latency-p95"),
            shown(millis(o.p95_ms)),
            "edge.p95",
        ),
        metric(
            "latency p99",
            mark("latency-p99"),
            shown(millis(o.p99_ms)),
            "edge.p99",
        ),
        metric(
            "429 rate-limited",
            marker(None, colours),
            shown(Some(o.status_429.to_string())),
            "edge.429",
        ),
    ];
    if read {
        rows.push(Row::plain(Line::from(format!(
            "  {:<8} {:<8} {:<18} {:>7} {:>8} {:>9}",
            "SLOT", "ROLE", "RELEASE", "REQ/S", "SUCCESS", "P95"
        ))));
        for slot in &e.slots {
            let dash = || "-".to_owned();
            rows.push(Row::with_spark(
                Line::from(format!(
                    "  {:<8} {:<8} {:<18} {:>7.1} {:>8} {:>9}",
                    slot.slot,
                    slot.role.as_deref().unwrap_or("-"),
                    slot.release.as_deref().unwrap_or("-"),
                    slot.signals.requests_per_sec,
                    percent(slot.signals.success_rate).unwrap_or_else(dash),
                    millis(slot.signals.p95_ms).unwrap_or_else(dash),
                )),
                format!("edge.slot.{}.rps", slot.slot),
            ));
        }
        if e.truncated {
            rows.push(Row::plain(Line::from(
                "  (the window held more requests than are kept: the oldest were dropped)",
            )));
        }
    }
    if let Some(err) = &e.error {
        rows.push(Row::plain(Line::from(format!("  ({err})"))));
    }
    (title, rows)
}

/// Health, process and the service's own statistics.
fn service_panel(s: &Snapshot, colours: bool) -> (String, Vec<Row>) {
    let mut out = Vec::new();
    let health = match &s.health.error {
        // The deployment panel and the status line say why, once each.
        Some(_) if s.health.reach == Reach::NoTarget => "not deployed".to_owned(),
        Some(e) => format!("{} ({e})", reach_word(&s.health.reach)),
        None => format!(
            "state {} (status {}) · version {}",
            s.health.state.as_deref().unwrap_or("missing"),
            s.health.status.as_deref().unwrap_or("missing"),
            s.health.version.as_deref().unwrap_or("not reported")
        ),
    };
    out.push(Row::plain(row(
        "health",
        marker(Some(s.health.marker), colours),
        health,
    )));
    if let Some(p) = &s.process {
        let value = match &p.error {
            Some(e) => format!("{e} (from {})", p.source),
            None => format!(
                "pid {} (from {})",
                p.pid.map_or_else(|| "?".to_owned(), |pid| pid.to_string()),
                p.source,
            ),
        };
        out.push(Row::plain(row(
            "process",
            marker(Some(p.marker), colours),
            value,
        )));
        if p.error.is_none() {
            let none = || marker(None, colours);
            out.push(metric(
                "memory (rss)",
                none(),
                p.rss_bytes.map_or_else(|| "no data".to_owned(), mebibytes),
                "process.rss",
            ));
            out.push(metric(
                "cpu",
                none(),
                p.cpu_percent
                    .map_or_else(|| "no data".to_owned(), |c| format!("{c:.1} % of a core")),
                "process.cpu",
            ));
        }
    }
    out.extend(stats_rows(&s.stats, s.edge.is_some(), &s.alerts, colours));
    ("SERVICE".to_owned(), out)
}

fn stats_rows(stats: &Stats, edge: bool, alerts: &[AlertView], colours: bool) -> Vec<Row> {
    let mut out = Vec::new();
    if edge && stats.reach == Reach::BadAnswer {
        // Behind the proxy the service's own statistics are optional: the edge measures.
        out.push(Row::plain(heading(
            "statistics  not served by the service (the EDGE panel measures)",
            colours,
        )));
        if let Some(e) = &stats.error {
            out.push(Row::plain(Line::from(format!("  ({e})"))));
        }
        return out;
    }
    let window = match (stats.window_seconds, stats.window_requests) {
        (Some(secs), Some(n)) => format!("  (last {secs:.0} s: {n:.0} requests)"),
        _ => String::new(),
    };
    out.push(Row::plain(heading(&format!("statistics{window}"), colours)));
    let mark = |rule: &str| mark_of(alerts, rule, false, colours);
    let shown = |value: Option<String>| -> String {
        match (&stats.reach, value) {
            (Reach::Ok, Some(v)) => v,
            (Reach::Ok, None) => "no data".to_owned(),
            (reach, _) => reach_word(reach).to_owned(),
        }
    };
    out.push(metric(
        "success rate",
        mark("success-rate"),
        shown(percent(stats.success_rate)),
        "stats.success",
    ));
    out.push(metric(
        "latency p50",
        mark("latency-p50"),
        shown(millis(stats.p50_ms)),
        "stats.p50",
    ));
    out.push(metric(
        "latency p95",
        mark("latency-p95"),
        shown(millis(stats.p95_ms)),
        "stats.p95",
    ));
    out.push(metric(
        "latency p99",
        mark("latency-p99"),
        shown(millis(stats.p99_ms)),
        "stats.p99",
    ));
    out.push(metric(
        "cache hit rate",
        mark("cache-hit-rate"),
        shown(percent(stats.cache_hit_rate)),
        "stats.cache",
    ));
    out.push(metric(
        "queue depth",
        mark("queue-depth"),
        shown(stats.queue_depth.map(|q| format!("{q:.0}"))),
        "stats.queue",
    ));
    out.push(Row::plain(row(
        "circuit breaker",
        mark("circuit-breaker"),
        shown(stats.circuit_breaker.clone()),
    )));
    if let Some(e) = stats
        .error
        .as_ref()
        .filter(|_| stats.reach != Reach::NoTarget)
    {
        out.push(Row::plain(Line::from(format!("  ({e})"))));
    }
    out
}

/// Every rule's standing, with a sparkline of its value.
fn alerts_panel(s: &Snapshot, colours: bool) -> (String, Vec<Row>) {
    let mut out = vec![Row::plain(Line::from(format!(
        "  {:<17} MARK  {:<9} {:<9} {:>12}",
        "RULE", "STATE", "SEVERITY", "VALUE"
    )))];
    if s.alerts.is_empty() && s.health.reach == Reach::NoTarget {
        out.push(Row::plain(Line::from(
            "  (not evaluated: nothing is deployed)",
        )));
    } else if s.alerts.is_empty() {
        out.push(Row::plain(Line::from("  (no rules)")));
    }
    for a in &s.alerts {
        out.push(Row {
            head: Line::from(vec![
                Span::raw(format!("  {:<17} ", a.name)),
                marker(Some(a.marker), colours),
                Span::raw(format!(
                    "  {:<9} {:<9} {:>12}",
                    a.state.as_str(),
                    a.severity.map_or("-", Severity::as_str),
                    a.value
                        .as_ref()
                        .map_or_else(|| "-".to_owned(), ToString::to_string),
                )),
            ]),
            spark: Some(format!("alert.{}", a.name)),
            tail: alert_detail(a),
        });
    }
    if !s.not_served.is_empty() {
        out.push(Row::plain(Line::from(format!(
            "  (not evaluated, the service does not serve /api/stats: {})",
            s.not_served.join(", ")
        ))));
    }
    ("ALERTS".to_owned(), out)
}

fn log_panel(s: &Snapshot) -> (String, Vec<Row>) {
    let Some(log) = s.deployment.as_ref().and_then(|d| d.log.as_ref()) else {
        return ("LOG".to_owned(), Vec::new());
    };
    let title = format!(
        "LOG  {} · {} of the last {} lines mention an error",
        log.path.display(),
        log.errors,
        log.window
    );
    let mut out = Vec::new();
    if log.tail.is_empty() {
        out.push(Row::plain(Line::from("  (empty)")));
    }
    for line in &log.tail {
        out.push(Row::plain(Line::from(format!("  {line}"))));
    }
    (title, out)
}

fn alert_detail(a: &AlertView) -> String {
    match &a.reason {
        // A reason with no value means the sample was not a value: say which kind.
        Some(r) if a.value.is_none() => r.clone(),
        _ => String::new(),
    }
}

fn mebibytes(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1024.0 * 1024.0))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::edge::EdgeView;
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
        let (status, reasons) = snapshot::verdict(&health, &stats, None, process.as_ref(), &alerts);
        Snapshot {
            edge: None,
            not_served: Vec::new(),
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
        let mut board = Dashboard::default();
        if let Some(s) = snapshot {
            board.history.record(s);
        }
        board_screen(snapshot, &board, width, height)
    }

    fn board_screen(
        snapshot: Option<&Snapshot>,
        board: &Dashboard,
        width: u16,
        height: u16,
    ) -> String {
        let mut terminal = Terminal::new(TestBackend::new(width, height)).unwrap();
        terminal
            .draw(|frame| draw(frame, snapshot, &options(), board))
            .unwrap();
        buffer_text(&terminal)
    }

    fn buffer_text(terminal: &Terminal<TestBackend>) -> String {
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

    /// A canary in progress: its step, weights and the judge's latest verdict and reason.
    #[test]
    fn a_canary_shows_its_step_weights_and_the_judges_reason() {
        let mut s = deployed();
        if let Some(d) = s.deployment.as_mut() {
            d.canary = Some(live_deployment::CanaryProgress {
                release: "r3".into(),
                baseline: "r2".into(),
                canary_slot: live_deployment::Slot::Blue,
                baseline_slot: live_deployment::Slot::Green,
                step: 2,
                steps: vec![5, 25, 50, 100],
                canary_percent: 25,
                state: "running".into(),
                verdict: "continue".into(),
                reason: "not enough evidence yet: the canary served 40 of the 100 requests needed"
                    .into(),
                evidence: serde_json::Value::Null,
                updated: "2025-06-01T11:59:00Z".into(),
            });
        }
        let screen = text(&s, &options());
        assert!(
            screen.contains("r3 in slot blue vs r2 · running · step 2 of [5, 25, 50, 100] · 25 % canary / 75 % baseline"),
            "{screen}"
        );
        assert!(
            screen.contains("continue: not enough evidence yet: the canary served 40"),
            "{screen}"
        );
        let json = serde_json::to_value(s.deployment.as_ref().unwrap()).unwrap();
        assert_eq!(json["canary"]["canary_percent"], 25);
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
            .draw(|frame| draw(frame, Some(&s), &options(), &Dashboard::default()))
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

    // ---- The dashboard behind a proxy: EDGE panel, sparklines, layouts, focus, pause.

    fn signals(rps: f64, success: Option<f64>, p95: f64, n429: u64) -> Signals {
        let requests = (rps * 60.0).round() as u64;
        Signals {
            requests,
            requests_per_sec: rps,
            status_5xx: success.map_or(0, |s| ((1.0 - s) * requests as f64).round() as u64),
            status_429: n429,
            status_499: 0,
            status_4xx: 0,
            success_rate: success,
            p50_ms: (requests > 0).then_some(p95 / 3.0),
            p95_ms: (requests > 0).then_some(p95),
            p99_ms: (requests > 0).then_some(p95 * 1.5),
            max_ms: (requests > 0).then_some(p95 * 2.0),
        }
    }

    fn edge_of(overall: Signals, green: Signals, blue: Signals) -> EdgeView {
        let slot =
            |name: &str, role: &str, release: &str, signals: Signals| crate::edge::EdgeSlotView {
                slot: name.into(),
                release: Some(release.into()),
                role: Some(role.into()),
                signals,
            };
        EdgeView {
            log: "/srv/hub/proxy/logs/access.json".into(),
            reach: EdgeReach::Ok,
            error: None,
            window_seconds: 60.0,
            overall,
            slots: vec![
                slot("blue", "standby", "r1", blue),
                slot("green", "live", "r2", green),
            ],
            truncated: false,
        }
    }

    fn edge_alert(name: &str, value: Option<f64>, severity: Option<Severity>) -> AlertView {
        let state = match severity {
            Some(_) => AlertState::Pending,
            None => AlertState::Inactive,
        };
        let reason = value
            .is_none()
            .then_some("no data: no judged request in the last 1m");
        let mut a = status(name, state, severity, value.map(Value::Number), reason);
        a.from_edge = true;
        a
    }

    /// Behind the proxy at step `i` of a run: `degraded` fails 13 % of requests and is slow,
    /// `down` has the service unreachable (nginx answers 502).
    fn behind_proxy(i: usize, kind: &str) -> Snapshot {
        let wave = (i % 7) as f64;
        let rps = 15.0 + wave;
        let (success, p95, n429) = match kind {
            "degraded" => (Some(0.87 - wave / 100.0), 2600.0 + wave * 100.0, 12),
            "down" => (Some(0.0), 1.0 + wave / 10.0, 0),
            _ => (Some(0.998), 12.0 + wave, 0),
        };
        let overall = signals(rps, success, p95, n429);
        let green = signals(rps, success, p95, 0);
        let idle = signals(0.0, None, 0.0, 0);
        let mut s = deployed();
        s.edge = Some(edge_of(overall.clone(), green, idle));
        let severity_of = |warn: bool, crit: bool| {
            if crit {
                Some(Severity::Critical)
            } else if warn {
                Some(Severity::Warning)
            } else {
                None
            }
        };
        let rate = overall.success_rate.map(|r| r * 100.0);
        let mut alerts = vec![
            edge_alert(
                "success-rate",
                rate,
                severity_of(
                    rate.is_some_and(|r| r < 95.0),
                    rate.is_some_and(|r| r < 90.0),
                ),
            ),
            edge_alert(
                "latency-p95",
                overall.p95_ms,
                severity_of(p95 > 2000.0, p95 > 5000.0),
            ),
            edge_alert(
                "latency-p99",
                overall.p99_ms,
                severity_of(p95 * 1.5 > 3000.0, p95 * 1.5 > 8000.0),
            ),
        ];
        if kind == "down" {
            let e = "127.0.0.1:7101: Connection refused (os error 111)".to_owned();
            s.health = Health::unread(Reach::Unreachable, e.clone());
            s.stats = Stats::unread(Reach::Unreachable, e.clone());
            s.process = None;
            alerts.push(status(
                "queue-depth",
                AlertState::Unknown,
                None,
                None,
                Some(&e),
            ));
        } else {
            s.stats = Stats::from_document(&json!({
                "window_seconds": 60, "window_requests": rps * 60.0,
                "success_rate": success, "latency_ms": {"p50": p95 / 3.0, "p95": p95, "p99": p95 * 1.5},
                "cache_hit_rate": 0.85 - wave / 100.0, "queue_depth": wave, "circuit_breaker": "closed"
            }));
            if let Some(p) = s.process.as_mut() {
                p.cpu_percent = Some(0.4 + wave / 10.0);
                p.rss_bytes = Some((25 + i as u64 % 3) * 1024 * 1024);
            }
            alerts.push(status(
                "cache-hit-rate",
                AlertState::Inactive,
                None,
                Some(Value::Number(85.0 - wave)),
                None,
            ));
            alerts.push(status(
                "queue-depth",
                AlertState::Inactive,
                None,
                Some(Value::Number(wave)),
                None,
            ));
            alerts.push(status(
                "circuit-breaker",
                AlertState::Inactive,
                None,
                Some(Value::from("closed")),
                None,
            ));
        }
        s.alerts = alerts;
        let (status, reasons) = snapshot::verdict(
            &s.health,
            &s.stats,
            s.edge.as_ref(),
            s.process.as_ref(),
            &s.alerts,
        );
        s.status = status;
        s.reasons = reasons;
        s
    }

    /// 40 evaluations of `kind`, the last one current, and the dashboard that saw them.
    fn run_of(kind: &str) -> (Snapshot, Dashboard) {
        let mut board = Dashboard::default();
        let mut last = None;
        for i in 0..40 {
            let s = behind_proxy(i, kind);
            board.history.record(&s);
            last = Some(s);
        }
        (last.unwrap(), board)
    }

    #[test]
    fn a_healthy_service_behind_the_proxy_wide_and_narrow() {
        let (s, board) = run_of("healthy");
        assert_eq!(s.status, Status::Ok, "{:?}", s.reasons);
        let wide = board_screen(Some(&s), &board, 180, 42);
        assert!(wide.contains("EDGE  last 60 s: 1140 requests"), "{wide}");
        assert!(wide.contains("99.8 %"), "{wide}");
        assert!(wide.contains("green    live     r2"), "{wide}");
        assert!(
            wide.contains('▇') || wide.contains('█'),
            "sparklines:\n{wide}"
        );
        // Side by side: EDGE and DEPLOYMENT start on the same line.
        let line = wide.lines().find(|l| l.contains(" EDGE ")).unwrap();
        assert!(line.contains(" DEPLOYMENT "), "{wide}");
        insta::assert_snapshot!("edge_healthy_wide", wide);

        let narrow = board_screen(Some(&s), &board, 100, 42);
        let line = narrow.lines().find(|l| l.contains(" EDGE ")).unwrap();
        assert!(!line.contains(" DEPLOYMENT "), "stacked:\n{narrow}");
        insta::assert_snapshot!("edge_healthy_narrow", narrow);
    }

    #[test]
    fn a_degraded_service_behind_the_proxy_marks_the_edge() {
        let (s, board) = run_of("degraded");
        assert_eq!(s.status, Status::Fail, "{:?}", s.reasons);
        let wide = board_screen(Some(&s), &board, 180, 42);
        let success = wide
            .lines()
            .find(|l| l.contains("success rate") && l.contains("CRIT"))
            .unwrap_or_else(|| panic!("a CRIT success rate on the EDGE panel:\n{wide}"));
        assert!(success.contains("83.0 %"), "{success}");
        assert!(wide.contains("429 rate-limited"), "{wide}");
        insta::assert_snapshot!("edge_degraded_wide", wide);
        insta::assert_snapshot!(
            "edge_degraded_narrow",
            board_screen(Some(&s), &board, 100, 42)
        );
    }

    #[test]
    fn an_unreachable_service_behind_the_proxy_shows_the_edge_failing() {
        let (s, board) = run_of("down");
        assert_eq!(s.status, Status::Fail, "{:?}", s.reasons);
        let wide = board_screen(Some(&s), &board, 180, 42);
        assert!(wide.contains("unreachable"), "{wide}");
        assert!(wide.contains("0.0 %"), "{wide}");
        insta::assert_snapshot!("edge_unreachable_wide", wide);
        insta::assert_snapshot!(
            "edge_unreachable_narrow",
            board_screen(Some(&s), &board, 100, 42)
        );
    }

    #[test]
    fn an_empty_window_is_no_data_and_a_missing_log_says_so() {
        let mut s = behind_proxy(0, "healthy");
        let idle = signals(0.0, None, 0.0, 0);
        s.edge = Some(edge_of(idle.clone(), idle.clone(), idle));
        let t = text(&s, &options());
        let edge: Vec<&str> = t
            .lines()
            .skip_while(|l| !l.starts_with(" EDGE"))
            .take(6)
            .collect();
        let edge = edge.join("\n");
        assert!(
            edge.contains("success rate") && edge.contains("no data"),
            "{edge}"
        );
        assert!(
            !edge.contains("100.0 %") && !edge.contains(" 0.0 %"),
            "{edge}"
        );
        assert!(edge.contains("requests/s              0.0"), "{edge}");

        let e = s.edge.as_mut().unwrap();
        e.reach = EdgeReach::Missing;
        e.error = Some("the edge log /srv/hub/proxy/logs/access.json does not exist".into());
        let (status, reasons) = snapshot::verdict(&s.health, &s.stats, s.edge.as_ref(), None, &[]);
        assert_eq!(status, Status::Unknown);
        assert!(reasons[0].starts_with("edge: the edge log"), "{reasons:?}");
        let t = text(&s, &options());
        assert!(t.contains("not read"), "{t}");
    }

    #[test]
    fn statistics_the_service_does_not_serve_are_no_finding_behind_the_proxy() {
        let mut s = behind_proxy(0, "healthy");
        s.stats = Stats::unread(
            Reach::BadAnswer,
            "http://127.0.0.1:7101/api/stats answered HTTP 404".into(),
        );
        s.alerts.retain(|a| a.from_edge);
        s.not_served = vec!["cache-hit-rate".into(), "queue-depth".into()];
        let (status, reasons) =
            snapshot::verdict(&s.health, &s.stats, s.edge.as_ref(), None, &s.alerts);
        assert_eq!(status, Status::Ok, "{reasons:?}");
        // Without an edge it is still unknown.
        let (status, _) = snapshot::verdict(&s.health, &s.stats, None, None, &s.alerts);
        assert_eq!(status, Status::Unknown);
        let t = text(&s, &options());
        assert!(t.contains("not served by the service"), "{t}");
        assert!(
            t.contains("does not serve /api/stats: cache-hit-rate, queue-depth"),
            "{t}"
        );
    }

    #[test]
    fn tab_moves_the_focus_and_a_resize_relays_the_panels() {
        let (s, mut board) = run_of("healthy");
        assert_eq!(board.focused(Some(&s)), Some(Panel::Deployment));
        board.move_focus(Some(&s), true);
        assert_eq!(board.focused(Some(&s)), Some(Panel::Edge));
        board.move_focus(Some(&s), false);
        board.move_focus(Some(&s), false);
        assert_eq!(board.focused(Some(&s)), Some(Panel::Log), "wraps around");
        board.move_focus(Some(&s), true);
        board.move_focus(Some(&s), true);
        assert_eq!(board.focused(Some(&s)), Some(Panel::Edge));

        let mut terminal = Terminal::new(TestBackend::new(180, 42)).unwrap();
        terminal
            .draw(|f| draw(f, Some(&s), &options(), &board))
            .unwrap();
        let wide = buffer_text(&terminal);
        // The focused panel has a thick border.
        let edge_title = wide.lines().find(|l| l.contains(" EDGE ")).unwrap();
        assert!(edge_title.contains("┏"), "{edge_title}");
        // Resized to a small terminal: stacked, and the focused panel still shows in full.
        terminal.backend_mut().resize(80, 30);
        terminal
            .draw(|f| draw(f, Some(&s), &options(), &board))
            .unwrap();
        let small = buffer_text(&terminal);
        assert_eq!(small.lines().count(), 30);
        assert!(small.lines().all(|l| l.chars().count() <= 80), "{small}");
        for row in ["requests/s", "success rate", "latency p99", "SLOT", "green"] {
            assert!(small.contains(row), "{row}:\n{small}");
        }
        insta::assert_snapshot!("edge_focused_small", small);
    }

    #[test]
    fn pause_shows_in_the_header() {
        let (s, mut board) = run_of("healthy");
        board.paused = true;
        let screen = board_screen(Some(&s), &board, 120, 30);
        assert!(screen.contains("PAUSED (p resumes)"), "{screen}");
    }

    #[test]
    fn panels_that_do_not_fit_keep_their_title_and_the_focused_one_its_rows() {
        assert_eq!(column_heights(&[5, 5], None, 20), [5, 15]);
        assert_eq!(column_heights(&[10, 10, 10], Some(2), 16), [4, 2, 10]);
        assert_eq!(column_heights(&[10, 10, 10], None, 16), [10, 4, 2]);
        assert_eq!(column_heights(&[10, 10, 10], Some(1), 4), [2, 2, 0]);
    }

    #[test]
    fn history_keeps_the_recent_evaluations_and_no_data_stays_absent() {
        let mut history = History::default();
        let mut s = behind_proxy(0, "healthy");
        for i in 0..(HISTORY + 10) {
            s.edge.as_mut().unwrap().overall.requests_per_sec = i as f64;
            s.edge.as_mut().unwrap().overall.success_rate = (i % 2 == 0).then_some(1.0);
            history.record(&s);
        }
        let rps = history.newest_first("edge.rps", 3);
        assert_eq!(rps, [Some(249.0), Some(248.0), Some(247.0)]);
        assert_eq!(history.series["edge.rps"].len(), HISTORY);
        assert_eq!(history.newest_first("edge.success", 2), [None, Some(1.0)]);
        // A metric that appears later is absent before it.
        s.alerts.push(status(
            "new-rule",
            AlertState::Inactive,
            None,
            Some(Value::Number(3.0)),
            None,
        ));
        history.record(&s);
        let new = &history.series["alert.new-rule"];
        assert_eq!(new.len(), HISTORY);
        assert_eq!(new.back(), Some(&Some(3.0)));
        assert_eq!(new.front(), Some(&None));
    }
}
