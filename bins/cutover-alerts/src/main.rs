//! `cutover-alerts`: evaluates cutover.toml's `[[alert]]` rules (or the default rules against
//! a service URL) once for cron and pipelines (`check`, exit 0 ok / 1 warning / 2 critical /
//! 3 unknown), continuously (`watch`), lists them (`list`) and exports the Prometheus-sourced
//! ones as a Prometheus alerting-rules file (`export --prometheus OUT`).
//!
//! ```text
//! cutover-alerts check --manifest target/cutover-demo/cutover.toml   # the live deployment
//! cutover-alerts check --via release                 # the live slot itself, not the proxy
//! cutover-alerts check --target http://127.0.0.1:7000 --state /var/lib/hub/alerts.json
//! cutover-alerts watch --interval 10s
//! ```
//!
//! Where sources go: a source URL written as a path (`/api/stats`) or as `{url}/api/stats`,
//! and the default rules, read the service's base URL: `--target` when given; else, when the
//! manifest describes a deployment (it has a `[service]` table), the live release as
//! live-deployment reads it from `<root>/current` and `<root>/state`: with `--via public` (the
//! default) its public URL, what users reach through the proxy (over TLS when it is on,
//! trusting the proxy's own self-signed certificate when it made one), or with `--via release`
//! the live slot's own address; else `http://127.0.0.1:7000`. When the sources need the live
//! deployment and nothing is deployed, `check` and `watch` exit 3 with a sentence saying so;
//! `watch` re-reads the live release at every evaluation, so it follows a new deploy.
//!
//! `for` across one-shot runs needs the state file: `--state` (or `CUTOVER_ALERTS_STATE`),
//! else, when the manifest describes a deployment, `<root>/state/alerts.json`. With `--json`,
//! `check` prints `{status, target, alerts, transitions, errors}`; `target` is `{url, via,
//! release}`, present when a source went to the base URL.
//!
//! The default rules keep only what the service serves: each route they read is asked once
//! per `check` (and, in `watch`, again at each evaluation while a rule is left out), and a
//! rule whose route answers 404 or something other than the JSON field it reads is left out
//! and listed as `n/a` with the reason (`not_served` in `--json`) instead of being unknown for
//! ever; a service that is down keeps its rules, which say so. Notifications carry the
//! labels `service` and `release` of the live deployment; `--alertmanager URL` (or `notify
//! = { alertmanager = URL }` in an `[[alert]]`) posts to Alertmanager's v2 API, re-sending
//! what fires at every evaluation.
//!
//! This file is argument parsing and glue; the work is in the `alert-rules` and
//! `live-deployment` crates.

// A binary: what it prints is its output. Libraries never print (the workspace denies it).
#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use std::collections::BTreeMap;

use alert_rules::{
    AlertRuleConfig, AlertState, AlertmanagerNotifier, AnyNotifier, CommandNotifier, Engine,
    EngineState, Evaluation, LineNotifier, NotServed, Notifier, RuleStatus, Severity,
    WebhookFormat, WebhookNotifier,
};
use clap::{Args, Parser, Subcommand, ValueEnum};
use cutover_cli::{CommonArgs, EXIT_CONFIG, EXIT_UNKNOWN, Failure, Manifest, Status};
use live_deployment::{Deployment, LiveError};
use serde::Serialize;

/// The service's base URL when none is given and the manifest describes no deployment.
const DEFAULT_TARGET: &str = "http://127.0.0.1:7000";

/// Alert rules over the metrics a service really exposes.
#[derive(Debug, Parser)]
#[command(
    name = "cutover-alerts",
    version,
    about,
    long_about = None,
    after_help = "Sources written as a path or as {url}/... (and the default rules) read --target; else the \
live deployment when the manifest has a [service] table (its public URL, or with --via release the \
live slot; exit 3 when nothing is deployed); else http://127.0.0.1:7000. --state defaults to the \
deployment's <root>/state/alerts.json."
)]
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

/// Where the rules come from, and the service they read.
#[derive(Debug, Clone, Args)]
struct RuleArgs {
    /// Use the default rules even when the manifest has [[alert]] entries.
    #[arg(long)]
    defaults: bool,
    /// The service's base URL: what the default rules read (used when no [[alert]] entries are
    /// configured) and what sources written as a path or as `{url}/…` resolve against.
    /// Default: the live deployment when the manifest describes one (see --via), else
    /// http://127.0.0.1:7000.
    #[arg(long, value_name = "URL")]
    target: Option<String>,
    /// Which address of the live deployment the service is read at (default public). Needs a
    /// manifest with a [service] table.
    #[arg(long, value_enum, value_name = "WHERE", conflicts_with = "target")]
    via: Option<Via>,
}

/// Which address of the live deployment `--via` names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Via {
    /// What users reach: the proxy's HTTPS listener when TLS is on (trusting the proxy's own
    /// self-signed certificate when it made one), else its plain listener, else the slot
    Public,
    /// The live release's own slot address, bypassing the proxy
    Release,
}

impl Via {
    fn as_str(self) -> &'static str {
        match self {
            Via::Public => "public",
            Via::Release => "release",
        }
    }
}

#[derive(Debug, Clone, Args)]
struct EvalArgs {
    #[command(flatten)]
    rules: RuleArgs,
    /// The state file that carries `for` timers across runs (written atomically). Default:
    /// `<root>/state/alerts.json` when the manifest describes a deployment.
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
    /// POST firing and resolved alerts to this Alertmanager's v2 API
    /// (http://127.0.0.1:9093); what fires is re-sent at every evaluation with endsAt a
    /// margin ahead (15m, or 4 intervals of `watch` when longer).
    #[arg(long, value_name = "URL")]
    alertmanager: Vec<String>,
}

fn main() -> ExitCode {
    cutover_cli::exit(run_main())
}

fn run_main() -> Result<i32, Failure> {
    let cli: Cli = cutover_cli::parse()?;
    cli.common.init_logging();
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Failure::unknown(format!("cannot start the async runtime: {e}")))?
        .block_on(run(cli))
}

async fn run(cli: Cli) -> Result<i32, Failure> {
    let (rule_args, default_state) = match &cli.command {
        Command::Check(e) | Command::Watch { eval: e, .. } => (e.rules.clone(), e.state.is_none()),
        Command::List(r) | Command::Export { rules: r, .. } => (r.clone(), false),
    };
    let manifest = cli.common.manifest()?;
    let (mut templates, defaults) = load_rules(manifest.as_ref(), &rule_args)?;
    let needs_base = templates.iter().any(|r| r.source.needs_base_url());
    let needs_edge = templates.iter().any(|r| r.source.needs_edge_log());
    // The deployment is read when something needs it: the default state file of `check` and
    // `watch`, a source written against the base URL with no --target, or an edge source
    // (whose log is the deployment proxy's).
    let deployment = match &manifest {
        Some(m) if default_state || needs_edge || (needs_base && rule_args.target.is_none()) => {
            Deployment::of(m).map_err(|e| stop(&cli.common, live_failure(&e)))?
        }
        _ => None,
    };
    // Edge sources read the access log of the deployment's proxy; the directory does not
    // move while the command runs, so it is joined once.
    if let Some(proxy_dir) = deployment
        .as_ref()
        .filter(|d| d.proxy().is_some())
        .map(|d| d.proxy_dir().to_path_buf())
    {
        for r in &mut templates {
            r.source.resolve_edge_log(&proxy_dir);
        }
    }
    let base = if needs_base {
        Some(BaseSource::new(&rule_args, deployment.as_ref()).map_err(|f| stop(&cli.common, f))?)
    } else {
        None
    };
    let (eval, repeat) = match cli.command {
        Command::Check(eval) => (eval, None),
        Command::Watch {
            interval,
            count,
            eval,
        } => (eval, Some((interval, count))),
        // Listing and exporting describe the configuration: when nothing is deployed, sources
        // written against the base URL are shown as written.
        // The defaults' alternative sources are listed by their first choice.
        Command::List(_) => {
            let target = base.as_ref().and_then(|b| b.current().ok());
            return Ok(list(
                &cli.common,
                &first_choices(resolve(&templates, target.as_ref())),
            ));
        }
        Command::Export {
            prometheus, group, ..
        } => {
            let target = base.as_ref().and_then(|b| b.current().ok());
            let rules = first_choices(resolve(&templates, target.as_ref()));
            return export(&cli.common, &rules, &prometheus, &group);
        }
    };
    // Evaluating needs the base now: nothing deployed is "cannot evaluate" (exit 3).
    let target = base
        .as_ref()
        .map(BaseSource::current)
        .transpose()
        .map_err(|f| stop(&cli.common, f))?;
    let rules = resolve(&templates, target.as_ref());
    let state = state_file(&eval, deployment.as_ref());
    let run = Evaluate {
        common: &cli.common,
        eval: &eval,
        state: state.as_deref(),
        templates: &templates,
        defaults,
        base: base.as_ref(),
        deployment: deployment.as_ref(),
        target,
    };
    match repeat {
        Some((interval, count)) => watch(run, rules, interval, count).await,
        None => Ok(check(run, rules).await),
    }
}

/// A deployment that cannot be read: 78 for the manifest, 3 for damaged state.
fn live_failure(err: &LiveError) -> Failure {
    if err.exit_code() == EXIT_CONFIG {
        Failure::config(err)
    } else {
        Failure::unknown(err)
    }
}

/// Why a command cannot go on, with the JSON document `--json` answers when it is "unknown"
/// (exit 3: the rules cannot be evaluated, as when nothing is deployed).
fn stop(common: &CommonArgs, failure: Failure) -> Failure {
    if common.json && failure.code() == EXIT_UNKNOWN {
        let doc = serde_json::json!({
            "status": Status::Unknown,
            "reason": failure.to_string(),
            "alerts": [],
            "transitions": [],
        });
        failure.with_json(doc)
    } else {
        failure
    }
}

/// Where sources written against the base URL went: the `target` of the JSON document.
#[derive(Debug, Clone, PartialEq, Serialize)]
struct BaseTarget {
    /// The base URL.
    url: String,
    /// `public` or `release` (the live deployment), `target` (the flag) or `default`.
    via: &'static str,
    /// The live release, when the base is the live deployment.
    release: Option<String>,
    /// The CA the base's certificate is trusted by (the proxy's own), when there is one.
    #[serde(skip)]
    ca_file: Option<PathBuf>,
}

/// Where the base URL comes from: fixed (`--target`, the default), or the live deployment,
/// read again at each [`BaseSource::current`] so that `watch` follows a new deploy.
#[derive(Debug)]
enum BaseSource {
    Fixed(BaseTarget),
    Live(Box<Deployment>, Via),
}

impl BaseSource {
    /// `--target`, else the live deployment (as `--via` asks), else [`DEFAULT_TARGET`].
    fn new(args: &RuleArgs, deployment: Option<&Deployment>) -> Result<Self, Failure> {
        let fixed = |url: &str, via| {
            BaseSource::Fixed(BaseTarget {
                url: url.to_owned(),
                via,
                release: None,
                ca_file: None,
            })
        };
        match (&args.target, deployment) {
            (Some(url), _) => Ok(fixed(url, "target")),
            (None, Some(d)) => Ok(BaseSource::Live(
                Box::new(d.clone()),
                args.via.unwrap_or(Via::Public),
            )),
            (None, None) => match args.via {
                Some(via) => Err(Failure::usage(format!(
                    "--via {} needs a manifest with a [service] table (the deployment to read); give --target instead",
                    via.as_str()
                ))),
                None => Ok(fixed(DEFAULT_TARGET, "default")),
            },
        }
    }

    /// The base URL now; for the live deployment, exit 3 with a sentence when nothing is
    /// deployed.
    fn current(&self) -> Result<BaseTarget, Failure> {
        let (deployment, via) = match self {
            BaseSource::Fixed(t) => return Ok(t.clone()),
            BaseSource::Live(d, via) => (d, *via),
        };
        let live = deployment.live().map_err(|e| live_failure(&e))?;
        let (url, ca_file) = match via {
            Via::Public => (live.url.clone(), live.proxy_ca.clone()),
            Via::Release => (live.slot_url.clone(), None),
        };
        let (Some(release), Some(url)) = (live.release.clone(), url) else {
            return Err(Failure::unknown(live.describe()));
        };
        Ok(BaseTarget {
            ca_file: ca_file.filter(|_| url.starts_with("https://")),
            url,
            via: via.as_str(),
            release: Some(release),
        })
    }
}

/// The rules with their sources written against the base URL joined to `target` (left as
/// written without one).
fn resolve(templates: &[AlertRuleConfig], target: Option<&BaseTarget>) -> Vec<AlertRuleConfig> {
    let mut rules = templates.to_vec();
    if let Some(t) = target {
        for r in &mut rules {
            r.source.resolve_base_url(&t.url, t.ca_file.as_deref());
        }
    }
    rules
}

/// The state file: `--state`, else the deployment's `<root>/state/alerts.json` (its directory
/// made when missing; a deploy makes it).
fn state_file(eval: &EvalArgs, deployment: Option<&Deployment>) -> Option<PathBuf> {
    if let Some(path) = &eval.state {
        return Some(path.clone());
    }
    let path = deployment?.alerts_state_file();
    if let Some(dir) = path.parent()
        && let Err(e) = std::fs::create_dir_all(dir)
    {
        // Saving the state then fails and says so; the evaluation itself goes on.
        tracing::warn!(dir = %dir.display(), error = %e, "cannot create the alert state directory");
    }
    Some(path)
}

/// What `check` and `watch` share.
struct Evaluate<'a> {
    common: &'a CommonArgs,
    eval: &'a EvalArgs,
    /// The state file, when there is one.
    state: Option<&'a std::path::Path>,
    /// The rules as configured (sources not yet joined to a base URL).
    templates: &'a [AlertRuleConfig],
    /// Whether they are the default rules' candidates (kept by what the service serves).
    defaults: bool,
    /// Where the base URL comes from, when a source needs one.
    base: Option<&'a BaseSource>,
    /// The deployment, when the manifest describes one (for the notification labels).
    deployment: Option<&'a Deployment>,
    /// The base URL the rules were resolved against.
    target: Option<BaseTarget>,
}

/// The manifest's `[[alert]]` entries, or the default rules' candidates (written against the
/// base URL; several may share a name, see [`alert_rules::default_candidates`]), and whether
/// they are the defaults.
fn load_rules(
    manifest: Option<&Manifest>,
    args: &RuleArgs,
) -> Result<(Vec<AlertRuleConfig>, bool), Failure> {
    let configured = match (manifest, args.defaults) {
        (Some(m), false) => m.table::<Vec<AlertRuleConfig>>("alert")?,
        _ => None,
    };
    let defaults = configured.is_none();
    let mut rules = match configured {
        Some(rules) => rules,
        None => {
            tracing::info!("no [[alert]] entries configured; using the default rules");
            // `{url}`: resolved against --target or the live deployment like any such source.
            // With a proxy in front, success rate and latency are measured at the edge, so
            // they work for a service that exposes no statistics.
            let has_proxy = manifest
                .and_then(|m| Deployment::of(m).ok().flatten())
                .is_some_and(|d| d.proxy().is_some());
            let from = if has_proxy {
                alert_rules::SignalsFrom::Edge
            } else {
                alert_rules::SignalsFrom::Service
            };
            alert_rules::default_candidates("{url}", from).map_err(Failure::config)?
        }
    };
    if !defaults {
        alert_rules::validate_rules(&rules).map_err(Failure::config)?;
    }
    if let Some(m) = manifest {
        let dir = m.dir();
        for r in &mut rules {
            r.source.resolve_paths(&dir);
        }
    }
    Ok((rules, defaults))
}

/// The first candidate of each name (the defaults as [`alert_rules::default_rules_from`]
/// gives them); configured rules have unique names and pass unchanged.
fn first_choices(mut rules: Vec<AlertRuleConfig>) -> Vec<AlertRuleConfig> {
    let mut seen = std::collections::BTreeSet::new();
    rules.retain(|r| seen.insert(r.rule.name.clone()));
    rules
}

/// The rules to evaluate: configured ones as they are; for the defaults, per name the first
/// candidate the service serves, and those left out with the reason.
async fn applicable(
    rules: Vec<AlertRuleConfig>,
    defaults: bool,
) -> (Vec<AlertRuleConfig>, Vec<NotServed>) {
    if !defaults {
        return (rules, Vec::new());
    }
    let selection = alert_rules::select_served(&rules).await;
    (selection.rules, selection.not_served)
}

/// The labels every notification carries: the deployment's `service` and, when one is live,
/// its `release`.
fn context_labels(
    deployment: Option<&Deployment>,
    target: Option<&BaseTarget>,
) -> BTreeMap<String, String> {
    let mut labels = BTreeMap::new();
    let Some(d) = deployment else {
        return labels;
    };
    labels.insert("service".to_owned(), d.service().name.clone());
    let release = match target.and_then(|t| t.release.clone()) {
        Some(r) => Some(r),
        None => d.live().ok().and_then(|l| l.release),
    };
    if let Some(r) = release {
        labels.insert("release".to_owned(), r);
    }
    labels
}

/// The notifiers of the flags; `interval` is `watch`'s, which an Alertmanager's resend margin
/// must exceed.
fn shared_notifiers(eval: &EvalArgs, interval: Option<Duration>) -> Vec<AnyNotifier> {
    let mut out = Vec::new();
    for url in &eval.alertmanager {
        let mut a = AlertmanagerNotifier::new(url.clone());
        if let Some(every) = interval {
            a.resend_margin = a.resend_margin.max(every.saturating_mul(4));
        }
        out.push(AnyNotifier::Alertmanager(a));
    }
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
    #[serde(skip_serializing_if = "Option::is_none")]
    target: Option<&'a BaseTarget>,
    alerts: Vec<AlertRow<'a>>,
    transitions: &'a [alert_rules::Transition],
    /// Default rules left out because the service does not serve what they read.
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    not_served: &'a [NotServed],
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

/// One evaluation: sample, evaluate, deliver (with `labels` on every notification). Returns
/// the evaluation, its transitions labelled as delivered, and problems to report.
async fn evaluate_once(
    engine: &mut Engine,
    rules: &[AlertRuleConfig],
    notifiers: &[AnyNotifier],
    labels: &BTreeMap<String, String>,
) -> (Evaluation, Vec<String>) {
    let samples = alert_rules::sample_all(rules).await;
    let now = jiff::Timestamp::now();
    let mut evaluation = engine.evaluate(now, &samples);
    let failures =
        alert_rules::deliver_evaluation(now, &evaluation, rules, notifiers, labels).await;
    alert_rules::label_transitions(&mut evaluation.transitions, labels);
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

async fn check(run: Evaluate<'_>, rules: Vec<AlertRuleConfig>) -> i32 {
    let (common, eval) = (run.common, run.eval);
    let mut errors = Vec::new();
    let state = open_state(run.state, &rules).unwrap_or_else(|e| {
        errors.push(e);
        EngineState::default()
    });
    let (rules, not_served) = applicable(rules, run.defaults).await;
    let labels = context_labels(run.deployment, run.target.as_ref());
    let mut engine = Engine::new(rules.iter().map(|r| r.rule.clone()).collect(), state);
    let (evaluation, notify_errors) =
        evaluate_once(&mut engine, &rules, &shared_notifiers(eval, None), &labels).await;
    errors.extend(notify_errors);
    let mut status = verdict(&evaluation.statuses);
    if let Some(path) = run.state
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
            target: run.target.as_ref(),
            alerts: rows(&evaluation),
            transitions: &evaluation.transitions,
            not_served: &not_served,
            errors,
        };
        if let Err(e) = cutover_cli::print_json(&report) {
            eprintln!("error: cannot write to stdout: {e}");
        }
    } else {
        if let Some(t) = run.target.as_ref().filter(|t| t.release.is_some()) {
            cutover_cli::outln!(
                "target: {} (via {}, release {})",
                t.url,
                t.via,
                t.release.as_deref().unwrap_or("?")
            );
        }
        print_table(&evaluation, &not_served);
        for t in &evaluation.transitions {
            if t.kind.notifies() {
                cutover_cli::outln!("{}", alert_rules::render_line(t));
            }
        }
        for e in &errors {
            eprintln!("error: {e}");
        }
        cutover_cli::outln!("status: {status}");
    }
    status.exit_code()
}

fn print_table(evaluation: &Evaluation, not_served: &[NotServed]) {
    cutover_cli::outln!(
        "{:<24} {:<9} {:<9} {:>14}  {:<20} DETAIL",
        "RULE",
        "STATE",
        "SEVERITY",
        "VALUE",
        "SINCE"
    );
    for s in &evaluation.statuses {
        let detail = s
            .reason
            .as_deref()
            .or(s.description.as_deref())
            .unwrap_or("");
        cutover_cli::outln!(
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
    for n in not_served {
        cutover_cli::outln!(
            "{:<24} {:<9} {:<9} {:>14}  {:<20} not served, rule left out: {}",
            n.name,
            "n/a",
            "-",
            "-",
            "-",
            n.reason
        );
    }
}

async fn watch(
    mut run: Evaluate<'_>,
    rules: Vec<AlertRuleConfig>,
    interval: Duration,
    count: Option<u64>,
) -> Result<i32, Failure> {
    let (common, eval) = (run.common, run.eval);
    let state = open_state(run.state, &rules).map_err(Failure::unknown)?;
    let candidates = rules;
    let (mut rules, mut not_served) = applicable(candidates.clone(), run.defaults).await;
    let mut engine = Engine::new(rules.iter().map(|r| r.rule.clone()).collect(), state);
    let notifiers = shared_notifiers(eval, Some(interval));
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
        // Follow a new deploy (blue-green moves the live slot): read the live release again.
        let mut reselect = !not_served.is_empty();
        let mut candidates_now = None;
        if let Some(base) = run.base {
            match base.current() {
                Ok(target) if run.target.as_ref() != Some(&target) => {
                    tracing::info!(url = %target.url, release = ?target.release, "the live deployment changed");
                    candidates_now = Some(resolve(run.templates, Some(&target)));
                    reselect = true;
                    run.target = Some(target);
                }
                Ok(_) => {}
                Err(stop) => {
                    tracing::warn!(
                        ?stop,
                        "cannot read the live deployment; keeping the last target"
                    )
                }
            }
        }
        // A rule left out comes back once its route is served (a hub that was starting).
        if reselect && run.defaults {
            let all = match candidates_now {
                Some(c) => c,
                None => resolve(run.templates, run.target.as_ref()),
            };
            let (now_rules, now_not_served) = applicable(all, true).await;
            let names = |r: &[AlertRuleConfig]| -> Vec<String> {
                r.iter().map(|r| r.rule.name.clone()).collect()
            };
            if names(&now_rules) != names(&rules) {
                tracing::info!(left_out = ?now_not_served, "the rules the service serves changed");
                engine = Engine::new(
                    now_rules.iter().map(|r| r.rule.clone()).collect(),
                    engine.state().clone(),
                );
            }
            rules = now_rules;
            not_served = now_not_served;
        } else if let Some(c) = candidates_now {
            rules = c;
        }
        let labels = context_labels(run.deployment, run.target.as_ref());
        let (evaluation, errors) = evaluate_once(&mut engine, &rules, &notifiers, &labels).await;
        done += 1;
        status = verdict(&evaluation.statuses);
        if let Some(path) = run.state
            && let Err(e) = alert_rules::save_state(path, engine.state())
        {
            tracing::error!(error = %e, "cannot save the alert state");
        }
        if common.json {
            // One compact JSON document per evaluation (JSON lines), since watch runs on.
            let report = CheckReport {
                status,
                target: run.target.as_ref(),
                alerts: rows(&evaluation),
                transitions: &evaluation.transitions,
                not_served: &not_served,
                errors,
            };
            match serde_json::to_string(&report) {
                Ok(line) => cutover_cli::outln!("{line}"),
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
    Ok(status.exit_code())
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
    cutover_cli::outln!(
        "{:<24} {:<12} {:<12} {:<6} {:<6} {:<10} {:<10} SOURCE",
        "RULE",
        "WARN",
        "CRIT",
        "FOR",
        "KEEP",
        "NO_DATA",
        "ERROR"
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
        cutover_cli::outln!(
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

fn export(
    common: &CommonArgs,
    rules: &[AlertRuleConfig],
    out: &Path,
    group: &str,
) -> Result<i32, Failure> {
    let export = alert_rules::export_prometheus(rules, group);
    alert_rules::write_export(out, &export).map_err(Failure::fail)?;
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
        cutover_cli::outln!(
            "wrote {} rule(s) to {}",
            export.exported.len(),
            out.display()
        );
        for (name, why) in &export.skipped {
            eprintln!("not exported: {name}: {why}");
        }
    }
    Ok(0)
}
