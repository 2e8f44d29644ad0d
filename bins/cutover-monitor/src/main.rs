//! `cutover-monitor`: a live view of one service, redrawn at an interval (5 s by default):
//! what is deployed (the live release, its slot and URLs, the live slot's pid and start time,
//! the warm standby, the last operation in the audit log, the tail of the live slot's log with
//! a count of lines that mention an error), what users got at the edge when the deployment
//! has a proxy (requests/s, success rate, p95/p99 and 429s from nginx's JSON access log, per
//! release slot: this works for a service that exposes nothing), `/api/health` (state and
//! version), `/api/stats`
//! (success rate, p50/p95/p99 latency, cache hit rate, queue depth, circuit breaker), the
//! process's resident memory and CPU use, and the state of every alert rule (cutover.toml's
//! `[[alert]]` entries, or the default rules, which take success rate and latency from the
//! edge when there is a proxy) with alert markers and a sparkline per metric.
//!
//! When the manifest describes a deployment (it has a `[service]` table), it needs nothing
//! else: the target is the live slot's own address (the service's own routes are read there;
//! what users reach through the proxy is the EDGE panel's), and the process is the live
//! slot's, by pid and start time as its process manager reports them. Both are looked up again
//! at every evaluation, so after a deploy to the other slot the monitor follows the new live
//! slot without restarting. `--target` and `--pid`/`--pid-file` override them; without a
//! deployment the target is `http://127.0.0.1:7000`. When nothing is deployed it says so and
//! the verdict is `unknown`: there is nothing to read, which is not a connection error.
//!
//! It replaces a bash loop that redrew the same metrics every 5 s and, reading fields the
//! service never returned, was always green. Here anything that could not be read is shown as
//! `no data` or `unreachable` and makes the verdict `unknown`, never `ok`.
//!
//! On a terminal it is a full-screen dashboard (q quits, r refreshes now, p pauses, tab moves
//! between panels): panels side by side on a wide terminal, stacked on a narrow one, every
//! metric with a sparkline of its recent evaluations. Otherwise it prints the same view as
//! text per evaluation; `--json` prints one JSON document per evaluation with a
//! top-level `status` (and a `deployment` object when the manifest describes one); `--once`
//! evaluates once and exits with the Nagios code (0 ok, 1 warning, 2 critical, 3 unknown):
//!
//! ```text
//! cutover-monitor --manifest /opt/hub/cutover.toml
//! cutover-monitor --once --json --manifest cutover.toml | jq '.status, .deployment.release'
//! cutover-monitor --target http://127.0.0.1:7000 --pid-file /run/hub.pid
//! ```
//!
//! The verdict judges what it sees: a threshold crossed now marks its severity while the rule
//! still waits out its `for` (shown as `pending`), so a dashboard never looks greener than the
//! numbers on it. `cutover-alerts check` is the one that honours `for` before paging anyone.
//!
//! This file is argument parsing and the loops; [`collect`] takes an evaluation (with
//! [`deployment`] reading what is live), [`snapshot`] holds and judges it, [`view`] draws it.

// A binary: what it prints is its output. Libraries never print (the workspace denies it).
#![allow(clippy::print_stdout, clippy::print_stderr)]

mod collect;
mod deployment;
mod edge;
mod snapshot;
mod view;

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use alert_rules::AlertRuleConfig;
use clap::Parser;
use cutover_cli::{CommonArgs, Failure, Status};

use crate::collect::{Collector, DEFAULT_TARGET, ProcessTarget, RuleSet, Setup};
use crate::view::{Dashboard, ViewOptions};

/// A live view of a service's health, statistics, process and alert states.
#[derive(Debug, Parser)]
#[command(name = "cutover-monitor", version, about, long_about = None)]
struct Cli {
    #[command(flatten)]
    common: CommonArgs,
    /// The service's base URL (plain HTTP; /api/health and /api/stats are read) (default: the
    /// live slot's own address when the manifest describes a deployment, followed across
    /// deploys; else http://127.0.0.1:7000)
    #[arg(long, value_name = "URL")]
    target: Option<String>,
    /// Time between evaluations.
    #[arg(long, value_parser = parse_interval, default_value = "5s")]
    interval: Duration,
    /// Evaluate once, print, and exit with 0 ok, 1 warning, 2 critical, 3 unknown.
    #[arg(long)]
    once: bool,
    /// Stop after this many evaluations (default: until q, Ctrl-C or SIGTERM).
    #[arg(long, value_name = "N", conflicts_with = "once")]
    count: Option<u64>,
    /// How long each HTTP read may take.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "3s")]
    timeout: Duration,
    /// The service's pid, to show its memory and CPU use (default: the live slot's, checked
    /// against its start time)
    #[arg(long, value_name = "PID", conflicts_with = "pid_file")]
    pid: Option<u32>,
    /// A file holding the service's pid (`PID` or `PID START_TIME`).
    #[arg(long, value_name = "FILE")]
    pid_file: Option<PathBuf>,
    /// Use the default rules even when the manifest has [[alert]] entries.
    #[arg(long)]
    defaults: bool,
}

fn parse_interval(text: &str) -> Result<Duration, String> {
    let d = humantime::parse_duration(text).map_err(|e| e.to_string())?;
    if d < Duration::from_millis(100) {
        return Err("the interval must be at least 100ms".to_owned());
    }
    Ok(d)
}

fn main() -> ExitCode {
    cutover_cli::exit(run())
}

fn run() -> Result<i32, Failure> {
    let cli: Cli = cutover_cli::parse()?;
    cli.common.init_logging();
    let manifest = cli.common.manifest()?;
    let deployment = match manifest.as_ref().map(live_deployment::Deployment::of) {
        Some(Ok(d)) => d,
        Some(Err(e)) => return Err(Failure::new(e.exit_code(), e)),
        None => None,
    };
    let rules = load_rules(&cli, manifest.as_ref())?;
    let process = match (cli.pid, &cli.pid_file) {
        (Some(pid), _) => Some(ProcessTarget::Pid(pid)),
        (None, Some(file)) => Some(ProcessTarget::PidFile(file.clone())),
        (None, None) => None,
    };
    let collector = Collector::new(Setup {
        target: cli.target.clone(),
        timeout: cli.timeout,
        rules,
        process,
        deployment,
    });
    // One worker: evaluations are a few small requests; the worker also watches for SIGTERM
    // while the terminal view waits for keys.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .map_err(|e| Failure::unknown(format!("cannot start the async runtime: {e}")))?;
    let options = ViewOptions {
        interval: cli.interval,
        refreshing: false,
        colours: cutover_cli::stdout_colours(),
    };
    let interactive = std::io::stdout().is_terminal() && std::io::stdin().is_terminal();
    if cli.common.json || cli.once || !interactive {
        rt.block_on(run_lines(&cli, collector, options))
    } else {
        run_terminal(&rt, collector, options)
    }
}

/// The manifest's `[[alert]]` entries, or the default rules, which the collector points at
/// the resolved target (`--target`, else the live slot, else the default) at each evaluation.
fn load_rules(cli: &Cli, manifest: Option<&cutover_cli::Manifest>) -> Result<RuleSet, Failure> {
    let configured = match (manifest, cli.defaults) {
        (Some(m), false) => m.table::<Vec<AlertRuleConfig>>("alert")?,
        _ => None,
    };
    let Some(mut rules) = configured else {
        // The defaults are built again for each target; check them once now.
        let rules = alert_rules::default_rules(cli.target.as_deref().unwrap_or(DEFAULT_TARGET))
            .map_err(Failure::config)?;
        alert_rules::validate_rules(&rules).map_err(Failure::config)?;
        return Ok(RuleSet::Defaults);
    };
    alert_rules::validate_rules(&rules).map_err(Failure::config)?;
    if let Some(m) = manifest {
        let dir = m.dir();
        for r in &mut rules {
            r.source.resolve_paths(&dir);
        }
    }
    Ok(RuleSet::Configured(rules))
}

/// `--json`, `--once`, or stdout not a terminal: one document (or text block) per evaluation.
async fn run_lines(
    cli: &Cli,
    mut collector: Collector,
    options: ViewOptions,
) -> Result<i32, Failure> {
    let limit = if cli.once { Some(1) } else { cli.count };
    let mut ticker = tokio::time::interval(cli.interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut terminate =
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
    let mut status = Status::Unknown;
    let mut done = 0u64;
    while limit.is_none_or(|n| done < n) {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = tokio::signal::ctrl_c() => break,
            Some(()) = async { match terminate.as_mut() { Some(s) => s.recv().await, None => std::future::pending().await } } => break,
        }
        let snapshot = collector.collect().await;
        done += 1;
        status = snapshot.status;
        let document = if cli.common.json && cli.once {
            serde_json::to_string_pretty(&snapshot).map(|doc| doc + "\n")
        } else if cli.common.json {
            serde_json::to_string(&snapshot).map(|line| line + "\n")
        } else {
            let separator = if done > 1 { "\n" } else { "" };
            Ok(format!("{separator}{}", view::text(&snapshot, &options)))
        };
        let written = match document {
            Ok(text) => write_stdout(&text),
            Err(e) => Err(std::io::Error::other(e)),
        };
        match written {
            Ok(()) => {}
            // The reader went away (`| head -1`): nothing more is wanted; leave quietly.
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => return Ok(status.exit_code()),
            Err(e) => return Err(Failure::unknown(format!("cannot write to stdout: {e}"))),
        }
    }
    Ok(status.exit_code())
}

/// Writes `text` to stdout and flushes it, so a closed pipe is seen at once.
fn write_stdout(text: &str) -> std::io::Result<()> {
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())?;
    out.flush()
}

/// The full-screen view: redraw after each evaluation, wait for keys in between; `p` pauses
/// the evaluations (the screen keeps the last one), `tab` and `shift-tab` move the focus
/// between panels, a resize redraws for the new size.
fn run_terminal(
    rt: &tokio::runtime::Runtime,
    mut collector: Collector,
    options: ViewOptions,
) -> Result<i32, Failure> {
    use ratatui::crossterm::event::{self, Event, KeyCode, KeyEventKind, KeyModifiers};

    // SIGTERM or SIGHUP: give the terminal back before leaving.
    rt.spawn(async {
        use tokio::signal::unix::{SignalKind, signal};
        if let (Ok(mut term), Ok(mut hup)) = (
            signal(SignalKind::terminate()),
            signal(SignalKind::hangup()),
        ) {
            tokio::select! {
                _ = term.recv() => {}
                _ = hup.recv() => {}
            }
            ratatui::restore();
            // The terminal view blocks on keys in the main thread; a signal ends it from here.
            #[allow(clippy::exit)]
            std::process::exit(0);
        }
    });
    let mut terminal = ratatui::init();
    let mut snapshot = None;
    let mut board = Dashboard::default();
    let mut next = Instant::now();
    let mut options = options;
    let result = loop {
        if !board.paused && Instant::now() >= next {
            options.refreshing = true;
            if let Err(e) = terminal.draw(|f| view::draw(f, snapshot.as_ref(), &options, &board)) {
                break Err(e);
            }
            let taken = rt.block_on(collector.collect());
            board.history.record(&taken);
            snapshot = Some(taken);
            options.refreshing = false;
            next = Instant::now() + options.interval;
            if let Err(e) = terminal.draw(|f| view::draw(f, snapshot.as_ref(), &options, &board)) {
                break Err(e);
            }
        }
        // Paused: wait for keys only (an hour at a time).
        let wait = if board.paused {
            Duration::from_secs(3600)
        } else {
            next.saturating_duration_since(Instant::now())
        };
        let redraw = match event::poll(wait) {
            Ok(false) => false,
            Ok(true) => match event::read() {
                Ok(Event::Key(key)) if key.kind == KeyEventKind::Press => match key.code {
                    KeyCode::Char('q') | KeyCode::Esc => break Ok(()),
                    KeyCode::Char('c') if key.modifiers.contains(KeyModifiers::CONTROL) => {
                        break Ok(());
                    }
                    KeyCode::Char('r') => {
                        board.paused = false;
                        next = Instant::now();
                        false
                    }
                    KeyCode::Char('p') => {
                        board.paused = !board.paused;
                        if !board.paused && Instant::now() >= next {
                            next = Instant::now();
                        }
                        true
                    }
                    KeyCode::Tab => {
                        board.move_focus(snapshot.as_ref(), true);
                        true
                    }
                    KeyCode::BackTab => {
                        board.move_focus(snapshot.as_ref(), false);
                        true
                    }
                    _ => false,
                },
                Ok(Event::Resize(..)) => true,
                Ok(_) => false,
                Err(e) => break Err(e),
            },
            Err(e) => break Err(e),
        };
        if redraw
            && let Err(e) = terminal.draw(|f| view::draw(f, snapshot.as_ref(), &options, &board))
        {
            break Err(e);
        }
    };
    ratatui::restore();
    result
        .map(|()| 0)
        .map_err(|e| Failure::unknown(format!("the terminal failed: {e}")))
}
