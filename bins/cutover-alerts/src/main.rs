//! `cutover-alerts`: evaluates cutover.toml's `[[alert]]` rules (or the default rules against
//! a service URL) once for cron and pipelines (`check`, exit 0 ok / 1 warning / 2 critical /
//! 3 unknown), continuously (`watch`), lists them (`list`) and exports the Prometheus-sourced
//! ones as a Prometheus alerting-rules file (`export --prometheus OUT`).
//!
//! This file is argument parsing and glue; the work is in the `alert-rules` crate.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use alert_rules::{
    AlertRuleConfig, AlertState, AnyNotifier, CommandNotifier, Engine, EngineState, Evaluation,
    LineNotifier, Notifier, RuleStatus, Severity, WebhookFormat, WebhookNotifier,
};
use clap::{Args, Parser, Subcommand};
use cutover_cli::{CommonArgs, EXIT_CONFIG, EXIT_UNKNOWN, Status};
use serde::Serialize;

/// Alert rules over the metrics a service really exposes.
#[derive(Debug, Parser)]
#[command(name = "cutover-alerts", version, about, long_about = None)]
struct Cli {
    #[command(flatten)]
    common: CommonArgs,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Evaluate every rule once; exit 0 ok, 1 warning, 2 critical, 3 unknown.
    Check(EvalArgs),
    /// Evaluate every rule at an interval, printing transitions as they happen.
    Watch {
        /// Time between evaluations.
        #[arg(long, value_parser = humantime::parse_duration, default_value = "5s")]
        interval: Duration,
        /// Stop after this many evaluations (default: until interrupted).
        #[arg(long, value_name = "N")]
        count: Option<u64>,
        #[command(flatten)]
        eval: EvalArgs,
    },
    /// List the rules and their sources.
    List(RuleArgs),
    /// Write the rules whose source is a Prometheus metric as a Prometheus rules file.
    Export {
        /// The rules file to write (atomically).
        #[arg(long, value_name = "OUT")]
        prometheus: PathBuf,
        /// The rule group's name.
        #[arg(long, default_value = "cutover")]
        group: String,
        #[command(flatten)]
        rules: RuleArgs,
    },
}

/// Where the rules come from.
#[derive(Debug, Clone, Args)]
struct RuleArgs {
    /// Use the default rules even when the manifest has [[alert]] entries.
    #[arg(long)]
    defaults: bool,
    /// The service the default rules read (used when no [[alert]] entries are configured).
    #[arg(long, value_name = "URL", default_value = "http://127.0.0.1:7000")]
    target: String,
}

#[derive(Debug, Clone, Args)]
struct EvalArgs {
    #[command(flatten)]
    rules: RuleArgs,
    /// The state file that carries `for` timers across runs (written atomically).
    #[arg(long, value_name = "FILE", env = "CUTOVER_ALERTS_STATE")]
    state: Option<PathBuf>,
    /// POST transitions to this webhook as JSON; write `${VAR}` to read the URL from the
    /// environment and keep it out of the process list.
    #[arg(long, value_name = "URL")]
    webhook: Vec<String>,
    /// Send `--webhook` bodies in Slack's `{"text": …}` shape.
    #[arg(long)]
    slack: bool,
    /// Run this program for each transition (JSON on stdin, CUTOVER_ALERT_* variables).
    #[arg(long, value_name = "PROGRAM")]
    notify_command: Vec<String>,
}

fn main() -> ExitCode {
    let cli: Cli = cutover_cli::parse_or_exit();
    cli.common.init_logging();
    let code = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt.block_on(run(cli)),
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            EXIT_UNKNOWN
        }
    };
    ExitCode::from(u8::try_from(code).unwrap_or(u8::MAX))
}

async fn run(cli: Cli) -> i32 {
    let rule_args = match &cli.command {
        Command::Check(e) | Command::Watch { eval: e, .. } => e.rules.clone(),
        Command::List(r) | Command::Export { rules: r, .. } => r.clone(),
    };
    let rules = match load_rules(&cli.common, &rule_args) {
        Ok(r) => r,
        Err(code) => return code,
    };
    match cli.command {
        Command::Check(eval) => check(&cli.common, &eval, rules).await,
        Command::Watch {
            interval,
            count,
            eval,
        } => watch(&cli.common, &eval, rules, interval, count).await,
        Command::List(_) => list(&cli.common, &rules),
        Command::Export {
            prometheus, group, ..
        } => export(&cli.common, &rules, &prometheus, &group),
    }
}

/// The manifest's `[[alert]]` entries, or the default rules against `--target`.
fn load_rules(common: &CommonArgs, args: &RuleArgs) -> Result<Vec<AlertRuleConfig>, i32> {
    let manifest = common
        .manifest()
        .map_err(|e| cutover_cli::report_manifest_error(&e))?;
    let configured = match (&manifest, args.defaults) {
        (Some(m), false) => m
            .table::<Vec<AlertRuleConfig>>("alert")
            .map_err(|e| cutover_cli::report_manifest_error(&e))?,
        _ => None,
    };
    let mut rules = match configured {
        Some(rules) => rules,
        None => {
            tracing::info!(target = %args.target, "no [[alert]] entries configured; using the default rules");
            alert_rules::default_rules(&args.target).map_err(|e| {
                eprintln!("error: {e}");
                EXIT_CONFIG
            })?
        }
    };
    if let Err(e) = alert_rules::validate_rules(&rules) {
        eprintln!("error: {e}");
        return Err(EXIT_CONFIG);
    }
    if let Some(m) = &manifest {
        let dir = m.dir();
        for r in &mut rules {
            r.source.resolve_paths(&dir);
        }
    }
    Ok(rules)
}

fn shared_notifiers(eval: &EvalArgs) -> Vec<AnyNotifier> {
    let mut out = Vec::new();
    for url in &eval.webhook {
        let mut w = WebhookNotifier::new(url.clone());
        w.format = if eval.slack {
            WebhookFormat::Slack
        } else {
            WebhookFormat::Json
        };
        out.push(AnyNotifier::Webhook(w));
    }
    for program in &eval.notify_command {
        out.push(AnyNotifier::Command(CommandNotifier {
            argv: vec![program.clone()],
            timeout: Duration::from_secs(10),
        }));
    }
    out
}

/// The verdict of one evaluation: critical firing fails, warning firing warns, unknown is 3.
fn verdict(statuses: &[RuleStatus]) -> Status {
    statuses.iter().fold(Status::Ok, |acc, s| {
        let one = match (s.state, s.severity) {
            (AlertState::Firing, Some(Severity::Critical)) => Status::Fail,
            (AlertState::Firing, _) => Status::Warn,
            (AlertState::Unknown, _) => Status::Unknown,
            _ => Status::Ok,
        };
        acc.worst(one)
    })
}

#[derive(Serialize)]
struct AlertRow<'a> {
    name: &'a str,
    state: AlertState,
    severity: Option<Severity>,
    value: Option<&'a alert_rules::Value>,
    since: Option<jiff::Timestamp>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    description: Option<&'a str>,
}

#[derive(Serialize)]
struct CheckReport<'a> {
    status: Status,
    alerts: Vec<AlertRow<'a>>,
    transitions: &'a [alert_rules::Transition],
    #[serde(skip_serializing_if = "Vec::is_empty")]
    errors: Vec<String>,
}

fn rows(evaluation: &Evaluation) -> Vec<AlertRow<'_>> {
    evaluation
        .statuses
        .iter()
        .map(|s| AlertRow {
            name: &s.name,
            state: s.state,
            severity: s.severity,
            value: s.value.as_ref(),
            since: s.since,
            reason: s.reason.as_deref(),
            description: s.description.as_deref(),
        })
        .collect()
}

/// One evaluation: sample, evaluate, deliver. Returns the evaluation and problems to report.
async fn evaluate_once(
    engine: &mut Engine,
    rules: &[AlertRuleConfig],
    notifiers: &[AnyNotifier],
) -> (Evaluation, Vec<String>) {
    let samples = alert_rules::sample_all(rules).await;
    let evaluation = engine.evaluate(jiff::Timestamp::now(), &samples);
    let failures = alert_rules::deliver(&evaluation.transitions, rules, notifiers).await;
    let errors = failures
        .into_iter()
        .map(|e| {
            tracing::warn!(error = %e, "notification failed");
            e.to_string()
        })
        .collect();
    (evaluation, errors)
}

fn open_state(path: Option<&Path>, rules: &[AlertRuleConfig]) -> Result<EngineState, String> {
    match path {
        Some(p) => alert_rules::load_state(p).map_err(|e| e.to_string()),
        None => {
            if rules.iter().any(|r| !r.rule.for_duration.is_zero()) {
                tracing::warn!(
                    "without --state, rules with `for` stay pending: each run starts afresh"
                );
            }
            Ok(EngineState::default())
        }
    }
}

async fn check(common: &CommonArgs, eval: &EvalArgs, rules: Vec<AlertRuleConfig>) -> i32 {
    let mut errors = Vec::new();
    let state = open_state(eval.state.as_deref(), &rules).unwrap_or_else(|e| {
        errors.push(e);
        EngineState::default()
    });
    let mut engine = Engine::new(rules.iter().map(|r| r.rule.clone()).collect(), state);
    let (evaluation, notify_errors) =
        evaluate_once(&mut engine, &rules, &shared_notifiers(eval)).await;
    errors.extend(notify_errors);
    let mut status = verdict(&evaluation.statuses);
    if let Some(path) = &eval.state
        && let Err(e) = alert_rules::save_state(path, engine.state())
    {
        errors.push(e.to_string());
    }
    if errors.iter().any(|e| e.contains("alert state")) {
        // Without its state a one-shot run cannot honour `for`: that is "could not evaluate",
        // though a critical alert still wins.
        status = status.worst(Status::Unknown);
    }
    if common.json {
        let report = CheckReport {
            status,
            alerts: rows(&evaluation),
            transitions: &evaluation.transitions,
            errors,
        };
        if let Err(e) = cutover_cli::print_json(&report) {
            eprintln!("error: cannot write to stdout: {e}");
        }
    } else {
        print_table(&evaluation);
        for t in &evaluation.transitions {
            if t.kind.notifies() {
                println!("{}", alert_rules::render_line(t));
            }
        }
        for e in &errors {
            eprintln!("error: {e}");
        }
        println!("status: {status}");
    }
    status.exit_code()
}

fn print_table(evaluation: &Evaluation) {
    println!(
        "{:<24} {:<9} {:<9} {:>14}  {:<20} DETAIL",
        "RULE", "STATE", "SEVERITY", "VALUE", "SINCE"
    );
    for s in &evaluation.statuses {
        let detail = s
            .reason
            .as_deref()
            .or(s.description.as_deref())
            .unwrap_or("");
        println!(
            "{:<24} {:<9} {:<9} {:>14}  {:<20} {detail}",
            s.name,
            s.state.as_str(),
            s.severity.map_or("-", Severity::as_str),
            s.value
                .as_ref()
                .map_or_else(|| "-".to_owned(), ToString::to_string),
            s.since.map_or_else(
                || "-".to_owned(),
                |t| jiff::Timestamp::from_second(t.as_second())
                    .map_or_else(|_| t.to_string(), |t| t.to_string())
            ),
        );
    }
}

async fn watch(
    common: &CommonArgs,
    eval: &EvalArgs,
    rules: Vec<AlertRuleConfig>,
    interval: Duration,
    count: Option<u64>,
) -> i32 {
    let state = match open_state(eval.state.as_deref(), &rules) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e}");
            return EXIT_UNKNOWN;
        }
    };
    let mut engine = Engine::new(rules.iter().map(|r| r.rule.clone()).collect(), state);
    let notifiers = shared_notifiers(eval);
    let stdout_lines = LineNotifier::new(std::io::stdout());
    let mut ticker = tokio::time::interval(interval.max(Duration::from_millis(100)));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut terminate =
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
    let mut status = Status::Ok;
    let mut done = 0u64;
    loop {
        if count.is_some_and(|c| done >= c) {
            break;
        }
        tokio::select! {
            _ = ticker.tick() => {}
            _ = tokio::signal::ctrl_c() => break,
            Some(()) = async { match terminate.as_mut() { Some(s) => s.recv().await, None => std::future::pending().await } } => break,
        }
        let (evaluation, errors) = evaluate_once(&mut engine, &rules, &notifiers).await;
        done += 1;
        status = verdict(&evaluation.statuses);
        if let Some(path) = &eval.state
            && let Err(e) = alert_rules::save_state(path, engine.state())
        {
            tracing::error!(error = %e, "cannot save the alert state");
        }
        if common.json {
            // One compact JSON document per evaluation (JSON lines), since watch runs on.
            let report = CheckReport {
                status,
                alerts: rows(&evaluation),
                transitions: &evaluation.transitions,
                errors,
            };
            match serde_json::to_string(&report) {
                Ok(line) => println!("{line}"),
                Err(e) => tracing::error!(error = %e, "cannot render JSON"),
            }
        } else {
            for t in evaluation.transitions.iter().filter(|t| t.kind.notifies()) {
                if let Err(e) = stdout_lines.notify(t).await {
                    tracing::error!(error = %e, "cannot write to stdout");
                }
            }
            tracing::info!(%status, iteration = done, "evaluated");
        }
    }
    status.exit_code()
}

#[derive(Serialize)]
struct ListReport<'a> {
    status: Status,
    rules: &'a [AlertRuleConfig],
}

fn list(common: &CommonArgs, rules: &[AlertRuleConfig]) -> i32 {
    if common.json {
        if let Err(e) = cutover_cli::print_json(&ListReport {
            status: Status::Ok,
            rules,
        }) {
            eprintln!("error: cannot write to stdout: {e}");
        }
        return 0;
    }
    println!(
        "{:<24} {:<12} {:<12} {:<6} {:<6} {:<10} {:<10} SOURCE",
        "RULE", "WARN", "CRIT", "FOR", "KEEP", "NO_DATA", "ERROR"
    );
    for r in rules {
        let cond = |c: &Option<alert_rules::Condition>| {
            c.as_ref()
                .map_or_else(|| "-".to_owned(), ToString::to_string)
        };
        let policy = |p: alert_rules::Policy| {
            serde_json::to_value(p)
                .ok()
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_default()
        };
        println!(
            "{:<24} {:<12} {:<12} {:<6} {:<6} {:<10} {:<10} {}",
            r.rule.name,
            cond(&r.rule.warn),
            cond(&r.rule.crit),
            humantime::format_duration(r.rule.for_duration).to_string(),
            humantime::format_duration(r.rule.keep_firing_for).to_string(),
            policy(r.rule.no_data),
            policy(r.rule.error),
            r.source.describe(),
        );
    }
    0
}

#[derive(Serialize)]
struct ExportReport<'a> {
    status: Status,
    path: &'a Path,
    exported: &'a [String],
    skipped: Vec<serde_json::Value>,
}

fn export(common: &CommonArgs, rules: &[AlertRuleConfig], out: &Path, group: &str) -> i32 {
    let export = alert_rules::export_prometheus(rules, group);
    if let Err(e) = alert_rules::write_export(out, &export) {
        eprintln!("error: {e}");
        return cutover_cli::EXIT_FAIL;
    }
    if common.json {
        let skipped = export
            .skipped
            .iter()
            .map(|(name, why)| serde_json::json!({ "name": name, "reason": why }))
            .collect();
        let report = ExportReport {
            status: Status::Ok,
            path: out,
            exported: &export.exported,
            skipped,
        };
        if let Err(e) = cutover_cli::print_json(&report) {
            eprintln!("error: cannot write to stdout: {e}");
        }
    } else {
        println!(
            "wrote {} rule(s) to {}",
            export.exported.len(),
            out.display()
        );
        for (name, why) in &export.skipped {
            eprintln!("not exported: {name}: {why}");
        }
    }
    0
}
