//! `cutover-perf`: load runs with honest percentiles, baseline files and regression verdicts.
//!
//! * `run --url URL [--url URL …] [--connections N | --rate R] [--duration 10s | --requests N]
//!   [--warmup 2s] [--pid PID] [--save FILE] [--svg FILE] [--baseline FILE]`: a load run
//!   (closed model with `--connections`, open model with `--rate`); endpoints and settings come
//!   from `[perf]` in cutover.toml when no `--url` is given. With `--baseline` the run is also
//!   judged against that file.
//! * `compare BASELINE CURRENT [--tolerance-p95 10%] …`: exit 0 pass or improved, 2 regressed.
//! * `show FILE`: the figures of a saved run.
//!
//! `--json` prints one document: for `run`, `{status, requests, errors, requests_per_sec,
//! latency_ms: {p50, p90, p95, p99, p999, max}, endpoints: […], …}`; for `compare`,
//! `{status, verdict, reasons}`.

// A binary: what it prints is its output. Libraries never print (the workspace denies it).
#![allow(clippy::print_stdout, clippy::print_stderr)]

mod render;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use cutover_cli::{CommonArgs, EXIT_UNKNOWN, EXIT_USAGE, Failure, Status, print_json};
use perf_baseline::{
    Baseline, Comparison, Endpoint, PerfConfig, PerfError, Phase, Progress, RunReport, StopAfter,
    Tolerances, Verdict, compare, latency_svg,
};
use serde::Serialize;

#[derive(Debug, Parser)]
#[command(
    name = "cutover-perf",
    version,
    about = "Load runs with honest percentiles, baselines and regression verdicts"
)]
struct Cli {
    #[command(flatten)]
    common: CommonArgs,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Send load and report throughput, latency percentiles and errors.
    Run(Box<RunArgs>),
    /// Judge a run against a baseline: exit 0 pass or improved, 2 regressed.
    Compare(CompareArgs),
    /// Print the figures of a saved run.
    Show(ShowArgs),
}

#[derive(Debug, Args)]
struct RunArgs {
    /// An endpoint to load (repeatable; replaces [[perf.endpoint]]). Plain http:// only.
    #[arg(long = "url", value_name = "URL")]
    urls: Vec<String>,
    /// The method for --url endpoints.
    #[arg(long, default_value = "GET")]
    method: String,
    /// A header for --url endpoints, as `Name: value` (repeatable).
    #[arg(long = "header", value_name = "NAME: VALUE")]
    headers: Vec<String>,
    /// A request body for --url endpoints.
    #[arg(long)]
    body: Option<String>,
    /// Connections (closed model; with --rate, the connections sharing the schedule).
    #[arg(long, short = 'c')]
    connections: Option<usize>,
    /// Requests per second: the open model, with coordinated-omission correction.
    #[arg(long)]
    rate: Option<f64>,
    /// Measured duration (e.g. 10s).
    #[arg(long, short = 'd', value_parser = humantime::parse_duration, conflicts_with = "requests")]
    duration: Option<Duration>,
    /// Measured requests instead of a duration.
    #[arg(long, short = 'n')]
    requests: Option<u64>,
    /// Uncounted warm-up before measuring (e.g. 2s).
    #[arg(long, value_parser = humantime::parse_duration)]
    warmup: Option<Duration>,
    /// Per-request timeout (e.g. 10s).
    #[arg(long, value_parser = humantime::parse_duration)]
    timeout: Option<Duration>,
    /// Sample this process's RSS and CPU during the run (the target service).
    #[arg(long)]
    pid: Option<u32>,
    /// Save the run as a baseline file.
    #[arg(long, value_name = "FILE")]
    save: Option<PathBuf>,
    /// Write an SVG of the latency distribution (against --baseline when given).
    #[arg(long, value_name = "FILE")]
    svg: Option<PathBuf>,
    /// Judge the run against this baseline (default: `baseline` in [perf], if it exists).
    #[arg(long, value_name = "FILE")]
    baseline: Option<PathBuf>,
    #[command(flatten)]
    tolerances: ToleranceArgs,
}

#[derive(Debug, Args)]
struct ToleranceArgs {
    /// Allowed p50 growth (e.g. 10%).
    #[arg(long, value_name = "PCT")]
    tolerance_p50: Option<perf_baseline::Percent>,
    /// Allowed p95 growth (e.g. 10%).
    #[arg(long, value_name = "PCT")]
    tolerance_p95: Option<perf_baseline::Percent>,
    /// Allowed p99 growth (e.g. 20%).
    #[arg(long, value_name = "PCT")]
    tolerance_p99: Option<perf_baseline::Percent>,
    /// Allowed relative growth of the error rate (e.g. 50%).
    #[arg(long, value_name = "PCT")]
    tolerance_error_rate: Option<perf_baseline::Percent>,
    /// Allowed drop in requests per second (e.g. 15%).
    #[arg(long, value_name = "PCT")]
    tolerance_throughput: Option<perf_baseline::Percent>,
    /// Allowed growth of the target's peak RSS (e.g. 5%).
    #[arg(long, value_name = "PCT")]
    tolerance_rss: Option<perf_baseline::Percent>,
}

impl ToleranceArgs {
    fn apply(&self, mut t: Tolerances) -> Tolerances {
        let set = |slot: &mut perf_baseline::Percent, v: Option<perf_baseline::Percent>| {
            if let Some(v) = v {
                *slot = v;
            }
        };
        set(&mut t.p50, self.tolerance_p50);
        set(&mut t.p95, self.tolerance_p95);
        set(&mut t.p99, self.tolerance_p99);
        set(&mut t.error_rate, self.tolerance_error_rate);
        set(&mut t.throughput, self.tolerance_throughput);
        set(&mut t.rss, self.tolerance_rss);
        t
    }
}

#[derive(Debug, Args)]
struct CompareArgs {
    /// The baseline file.
    baseline: PathBuf,
    /// The current run's file (from `run --save`).
    current: PathBuf,
    /// Write an SVG of both latency distributions.
    #[arg(long, value_name = "FILE")]
    svg: Option<PathBuf>,
    #[command(flatten)]
    tolerances: ToleranceArgs,
}

#[derive(Debug, Args)]
struct ShowArgs {
    /// A baseline file.
    file: PathBuf,
}

/// Why a measurement could not be made: a bad URL, endpoint or plan is a usage error (64), the
/// rest "cannot evaluate" (3).
fn perf_failure(e: PerfError) -> Failure {
    let code = match e {
        PerfError::InvalidUrl { .. }
        | PerfError::InvalidEndpoint { .. }
        | PerfError::InvalidPlan { .. } => EXIT_USAGE,
        _ => EXIT_UNKNOWN,
    };
    Failure::new(code, e)
}

fn main() -> ExitCode {
    cutover_cli::exit(run_main())
}

fn run_main() -> Result<i32, Failure> {
    let cli: Cli = cutover_cli::parse()?;
    cli.common.init_logging();
    // An invalid manifest is reported as it is, without the JSON document of a failed command.
    let config = load_config(&cli)?;
    dispatch(&cli, config).map_err(|f| {
        tracing::error!(message = %f, "cutover-perf failed");
        if cli.common.json {
            let doc = serde_json::json!({"status": "unknown", "error": f.to_string()});
            f.with_json(doc)
        } else {
            f
        }
    })
}

/// The `[perf]` table (its baseline resolved against the manifest), else the defaults.
fn load_config(cli: &Cli) -> Result<PerfConfig, Failure> {
    let config = match cli.common.manifest()? {
        Some(manifest) => manifest.table::<PerfConfig>("perf")?.map(|mut c| {
            c.baseline = c.baseline.map(|p| manifest.resolve(&p));
            c
        }),
        None => None,
    };
    Ok(config.unwrap_or_default())
}

fn dispatch(cli: &Cli, config: PerfConfig) -> Result<i32, Failure> {
    match &cli.command {
        Command::Run(args) => run(cli, args, config),
        Command::Compare(args) => compare_files(cli, args, &config),
        Command::Show(args) => show(cli, args),
    }
}

fn endpoints_from_flags(args: &RunArgs) -> Result<Vec<Endpoint>, Failure> {
    let mut headers = std::collections::BTreeMap::new();
    for h in &args.headers {
        let (name, value) = h.split_once(':').ok_or_else(|| {
            Failure::new(EXIT_USAGE, format!("--header {h:?} is not `Name: value`"))
        })?;
        headers.insert(name.trim().to_owned(), value.trim().to_owned());
    }
    Ok(args
        .urls
        .iter()
        .map(|url| Endpoint {
            name: None,
            url: url.clone(),
            method: args.method.clone(),
            headers: headers.clone(),
            body: args.body.clone(),
            weight: 1,
        })
        .collect())
}

#[derive(Serialize)]
struct RunOutput {
    status: Status,
    #[serde(flatten)]
    summary: perf_baseline::RunSummary,
    #[serde(skip_serializing_if = "Option::is_none")]
    comparison: Option<Comparison>,
    #[serde(skip_serializing_if = "Option::is_none")]
    saved: Option<PathBuf>,
}

fn run(cli: &Cli, args: &RunArgs, mut config: PerfConfig) -> Result<i32, Failure> {
    if !args.urls.is_empty() {
        config.endpoints = endpoints_from_flags(args)?;
    }
    if args.connections.is_some() {
        config.connections = args.connections;
    }
    if args.rate.is_some() {
        config.rate = args.rate;
    }
    if args.duration.is_some() {
        config.duration = args.duration;
        config.requests = None;
    }
    if args.requests.is_some() {
        config.requests = args.requests;
        config.duration = None;
    }
    config.warmup = args.warmup.or(config.warmup);
    config.timeout = args.timeout.or(config.timeout);
    let mut plan = config.to_plan().map_err(perf_failure)?;
    plan.pid = args.pid;
    let baseline_path = args
        .baseline
        .clone()
        .or_else(|| config.baseline.clone().filter(|p| p.exists()));
    // Read the baseline first: a bad file should fail before minutes of load.
    let baseline = baseline_path
        .as_deref()
        .map(Baseline::load)
        .transpose()
        .map_err(perf_failure)?;

    let runtime = perf_baseline::build_runtime()
        .map_err(|e| Failure::new(EXIT_UNKNOWN, format!("cannot start the runtime: {e}")))?;
    let progress = Arc::new(Progress::default());
    let report = runtime
        .block_on(async {
            let bar = tokio::spawn(show_progress(progress.clone(), plan.stop, plan.warmup));
            let report = perf_baseline::run(&plan, progress.clone()).await;
            let _ = bar.await;
            report
        })
        .map_err(perf_failure)?;
    drop(runtime);

    if let Some(path) = &args.save {
        Baseline::new(report.clone())
            .save(path)
            .map_err(perf_failure)?;
    }
    let tolerances = args.tolerances.apply(config.tolerances);
    let comparison = baseline
        .as_ref()
        .map(|b| compare(&b.report, &report, &tolerances));
    if let Some(path) = &args.svg {
        write_svg(path, &report, baseline.as_ref().map(|b| &b.report))?;
    }
    let summary = report.summary();
    let mut status = if summary.requests == 0 || summary.errors >= summary.requests.max(1) {
        Status::Fail
    } else if summary.errors > 0 {
        Status::Warn
    } else {
        Status::Ok
    };
    if comparison
        .as_ref()
        .is_some_and(|c| c.verdict == Verdict::Regressed)
    {
        status = Status::Fail;
    }
    if cli.common.json {
        let out = RunOutput {
            status,
            summary,
            comparison,
            saved: args.save.clone(),
        };
        print_json(&out).map_err(io_failure)?;
    } else {
        cutover_cli::out!("{}", render::run_table(&summary, &report));
        if let Some(c) = &comparison {
            cutover_cli::out!("{}", render::comparison(c));
        }
        if let Some(path) = &args.save {
            cutover_cli::outln!("saved {}", path.display());
        }
    }
    Ok(status.exit_code())
}

async fn show_progress(progress: Arc<Progress>, stop: StopAfter, warmup: Duration) {
    use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
    let (len, by_time) = match stop {
        StopAfter::Duration(d) => (u64::try_from(d.as_millis()).unwrap_or(u64::MAX), true),
        StopAfter::Requests(n) => (n, false),
    };
    let bar = ProgressBar::with_draw_target(Some(len), ProgressDrawTarget::stderr());
    if bar.is_hidden() {
        // Not a terminal: stay quiet, as the CLI contract asks.
        return;
    }
    let style = ProgressStyle::with_template("{spinner} [{bar:40}] {percent:>3}% {msg}")
        .unwrap_or_else(|_| ProgressStyle::default_bar());
    bar.set_style(style);
    let start = tokio::time::Instant::now();
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    loop {
        tick.tick().await;
        let phase = progress.phase();
        if phase == Phase::Done {
            break;
        }
        let measured = start.elapsed().saturating_sub(warmup);
        bar.set_position(if by_time {
            u64::try_from(measured.as_millis())
                .unwrap_or(u64::MAX)
                .min(len)
        } else {
            progress.requests().min(len)
        });
        let what = if phase == Phase::WarmingUp {
            "warming up"
        } else {
            "measuring"
        };
        bar.set_message(format!(
            "{what}: {} requests, {} errors",
            progress.requests(),
            progress.errors()
        ));
    }
    bar.finish_and_clear();
}

fn io_failure(e: std::io::Error) -> Failure {
    Failure::new(EXIT_UNKNOWN, format!("cannot write the output: {e}"))
}

fn write_svg(
    path: &Path,
    current: &RunReport,
    baseline: Option<&RunReport>,
) -> Result<(), Failure> {
    let svg = match (baseline, &current.overall.uncorrected) {
        (Some(b), _) => latency_svg(
            "latency distribution: baseline vs current",
            &[
                ("baseline", &b.overall.latency),
                ("current", &current.overall.latency),
            ],
        ),
        (None, Some(unc)) => latency_svg(
            "latency distribution (open model)",
            &[
                ("corrected (from intended send)", &current.overall.latency),
                ("uncorrected (from write)", unc),
            ],
        ),
        (None, None) => latency_svg(
            "latency distribution",
            &[("current", &current.overall.latency)],
        ),
    };
    std::fs::write(path, svg).map_err(|e| {
        Failure::new(
            EXIT_UNKNOWN,
            format!("cannot write {}: {e}", path.display()),
        )
    })
}

#[derive(Serialize)]
struct CompareOutput<'a> {
    status: Status,
    verdict: Verdict,
    reasons: &'a [perf_baseline::Reason],
    guidance: &'a str,
    baseline: &'a Path,
    current: &'a Path,
}

fn compare_files(cli: &Cli, args: &CompareArgs, config: &PerfConfig) -> Result<i32, Failure> {
    let baseline = Baseline::load(&args.baseline).map_err(perf_failure)?;
    let current = Baseline::load(&args.current).map_err(perf_failure)?;
    let tolerances = args.tolerances.apply(config.tolerances);
    let c = compare(&baseline.report, &current.report, &tolerances);
    if let Some(path) = &args.svg {
        write_svg(path, &current.report, Some(&baseline.report))?;
    }
    let status = if c.verdict == Verdict::Regressed {
        Status::Fail
    } else {
        Status::Ok
    };
    if cli.common.json {
        let out = CompareOutput {
            status,
            verdict: c.verdict,
            reasons: &c.reasons,
            guidance: &c.guidance,
            baseline: &args.baseline,
            current: &args.current,
        };
        print_json(&out).map_err(io_failure)?;
    } else {
        cutover_cli::out!("{}", render::comparison(&c));
    }
    Ok(status.exit_code())
}

fn show(cli: &Cli, args: &ShowArgs) -> Result<i32, Failure> {
    let baseline = Baseline::load(&args.file).map_err(perf_failure)?;
    if cli.common.json {
        let out = serde_json::json!({
            "status": Status::Ok,
            "format": baseline.format,
            "version": baseline.version,
            "environment": baseline.environment,
            "started_at": baseline.report.started_at,
            "plan": baseline.report.plan,
            "summary": baseline.summary,
        });
        print_json(&out).map_err(io_failure)?;
    } else {
        let e = &baseline.environment;
        cutover_cli::outln!(
            "{} (version {}), measured {} on {} ({} cores, {}, kernel {})",
            args.file.display(),
            baseline.version,
            baseline.report.started_at,
            e.host,
            e.cores,
            e.os,
            e.kernel
        );
        cutover_cli::out!(
            "{}",
            render::run_table(&baseline.report.summary(), &baseline.report)
        );
    }
    Ok(Status::Ok.exit_code())
}
