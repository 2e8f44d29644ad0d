//! `cutover-probe`: runs health probes and waits for readiness.
//!
//! ```text
//! cutover-probe run                               # every [[probe]] of ./cutover.toml
//! cutover-probe run --suite smoke                 # the probes with suite = "smoke"
//! cutover-probe run --manifest target/cutover-demo/cutover.toml   # against what is live there
//! cutover-probe run --suite demo-hub --via release   # the live slot itself, not the proxy
//! cutover-probe run --suite demo-hub --base-url http://127.0.0.1:7000
//! cutover-probe run --url http://127.0.0.1:7000/api/health --expect-json '/state=="ready"'
//! cutover-probe wait --suite demo-hub --period 1s --failure-threshold 30
//! ```
//!
//! Where probe URLs written as a path (`url = "/api/health"`, and the built-in `demo-hub`
//! suite) go: `--base-url` when given; else, when the manifest describes a deployment (it has
//! a `[service]` table), the live release as live-deployment reads it from `<root>/current`
//! and `<root>/state`: with `--via public` (the default) its public URL, what users reach
//! through the proxy (over TLS when it is on, trusting the proxy's own self-signed
//! certificate when it made one), or with `--via release` the live slot's own address; else
//! `http://127.0.0.1:7000`. Nothing deployed is exit 3 with a sentence saying so, not a
//! refused connection. Probes with an absolute URL go where they say.
//!
//! Exit codes: 0 every probe ok, 2 a probe failed (or the wait gave up), 3 the probes could not
//! be run (nothing is deployed, bad URL, missing CA file, unresolvable secret), 64 usage, 78
//! invalid configuration. `--json` prints `{status, suite, target, probes: [{name, status,
//! reason, status_code, timings_ms}]}` (and, for `wait`, the attempt history); `target` is
//! `{url, via, release}`, present when a probe went to the base URL. This binary is argument
//! parsing and rendering only; the work is in the health-probe and live-deployment crates.

// A binary: what it prints is its output. Libraries never print (the workspace denies it).
#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};
use cutover_cli::{CommonArgs, EXIT_CONFIG, EXIT_UNKNOWN, Failure, Manifest, Status};
use health_probe::{
    DEMO_SUITE, HeaderSource, HttpTarget, JsonAssertion, Outcome, PrepareOptions, ProbeConfig,
    ProbeError, ProbeResult, SecretRef, StatusSet, SuiteProbe, SuiteReport, WaitPolicy,
};
use live_deployment::{Deployment, LiveError};
use serde::Serialize;

/// The base URL of the demo suite and of probe URLs written as paths, when none is given and
/// the manifest describes no deployment.
const DEFAULT_BASE_URL: &str = "http://127.0.0.1:7000";

#[derive(Debug, Parser)]
#[command(
    name = "cutover-probe",
    version,
    about = "Health probes that tell \"ready\" from \"merely listening\".",
    after_help = "Probe URLs written as a path (and the demo-hub suite) go to --base-url; else to the live \
deployment when the manifest has a [service] table (its public URL, or with --via release the live \
slot; exit 3 when nothing is deployed); else to http://127.0.0.1:7000."
)]
struct Cli {
    #[command(flatten)]
    common: CommonArgs,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Runs the probes once, concurrently, and reports each.
    Run(Select),
    /// Probes until ready (Kubernetes semantics) or until the thresholds or the budget give up.
    Wait {
        #[command(flatten)]
        select: Select,
        #[command(flatten)]
        policy: PolicyArgs,
    },
}

/// Which probes: ad hoc from flags (`--url`), a suite (`--suite`), or the manifest's `[[probe]]`.
#[derive(Debug, Args)]
struct Select {
    /// Run the probes of this suite: a `suite` named in the manifest, or the built-in `demo-hub`.
    #[arg(long, value_name = "NAME", conflicts_with = "url")]
    suite: Option<String>,
    /// Base URL for the demo suite and for manifest probe URLs written as a path. Default: the
    /// live deployment when the manifest describes one (see --via), else
    /// http://127.0.0.1:7000.
    #[arg(long, value_name = "URL")]
    base_url: Option<String>,
    /// Which address of the live deployment paths go to (default public). Needs a manifest
    /// with a [service] table.
    #[arg(long, value_enum, value_name = "WHERE", conflicts_with_all = ["base_url", "url"])]
    via: Option<Via>,
    #[command(flatten)]
    adhoc: AdHoc,
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

/// One ad hoc HTTP probe.
#[derive(Debug, Args)]
struct AdHoc {
    /// Probe this URL (ad hoc; the manifest is not read).
    #[arg(long, value_name = "URL")]
    url: Option<String>,
    /// The probe's name in reports.
    #[arg(long, value_name = "NAME", default_value = "probe", requires = "url")]
    name: String,
    /// Request method.
    #[arg(long, value_name = "METHOD", default_value = "GET", requires = "url")]
    method: String,
    /// A request header, `Name: value` (repeatable). Not for credentials: use --bearer-token.
    #[arg(long = "header", value_name = "K:V", value_parser = parse_header, requires = "url")]
    headers: Vec<(String, String)>,
    /// A secret reference (env:NAME, file:/path, op://…) whose value is sent as
    /// `Authorization: Bearer …`; the reference, never the token itself.
    // Parsed after clap, so that a token passed here by mistake is not echoed in its error.
    #[arg(long, value_name = "REF", requires = "url")]
    bearer_token: Option<String>,
    /// A request body.
    #[arg(long, value_name = "TEXT", requires = "url")]
    body: Option<String>,
    /// Accepted status codes: codes, classes and ranges, comma-separated (200,204 or 2xx,301).
    #[arg(long, value_name = "LIST", value_parser = parse_status, requires = "url")]
    expect_status: Option<StatusSet>,
    /// A JSON assertion (repeatable): POINTER OP [VALUE] with OP one of ==, !=, <, <=, >, >=,
    /// in [..], exists, absent, nonempty, =~ REGEX; values are JSON (quote strings), as in
    /// '/state=="ready"', '/tools nonempty', '/rate<=0.5', '/version =~ ^4\.'.
    #[arg(long, value_name = "EXPR", value_parser = parse_assertion, requires = "url")]
    expect_json: Vec<JsonAssertion>,
    /// A regex the body must match.
    #[arg(long, value_name = "REGEX", value_parser = parse_regex, requires = "url")]
    body_regex: Option<String>,
    /// Latency budget for the whole attempt (500ms, 2s).
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration, requires = "url")]
    max_latency: Option<Duration>,
    /// Limit on one whole attempt.
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration, default_value = "2s", requires = "url")]
    timeout: Duration,
    /// A PEM file of extra CA certificates to trust.
    #[arg(long, value_name = "PATH", requires = "url")]
    ca_file: Option<PathBuf>,
    /// Do not verify the server's certificate.
    #[arg(long, requires = "url")]
    insecure: bool,
    /// Follow up to N redirects (default: a redirect is judged as it is).
    #[arg(long, value_name = "N", default_value_t = 0, requires = "url")]
    follow_redirects: u8,
}

#[derive(Debug, Args)]
struct PolicyArgs {
    /// Time before the first attempt.
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration, default_value = "0s")]
    initial_delay: Duration,
    /// Time between the starts of two attempts.
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration, default_value = "1s")]
    period: Duration,
    /// Successes in a row needed.
    #[arg(long, value_name = "N", default_value_t = 1)]
    success_threshold: u32,
    /// Failed attempts after which the wait gives up.
    #[arg(long, value_name = "N", default_value_t = 30)]
    failure_threshold: u32,
    /// An overall limit on the wait.
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
    budget: Option<Duration>,
}

fn parse_header(text: &str) -> Result<(String, String), String> {
    let (name, value) = text
        .split_once(':')
        .ok_or_else(|| "expected `Name: value`".to_owned())?;
    if name.trim().is_empty() {
        return Err("the header name is empty".to_owned());
    }
    Ok((name.trim().to_owned(), value.trim().to_owned()))
}

fn parse_regex(text: &str) -> Result<String, String> {
    regex::Regex::new(text)
        .map(|_| text.to_owned())
        .map_err(|e| e.to_string())
}

fn parse_status(text: &str) -> Result<StatusSet, String> {
    text.parse().map_err(|e: ProbeError| e.to_string())
}

fn parse_assertion(text: &str) -> Result<JsonAssertion, String> {
    text.parse().map_err(|e: ProbeError| e.to_string())
}

/// Why the probes could not be judged: an invalid configuration (78), or they could not run (3).
fn probe_failure(err: ProbeError) -> Failure {
    if err.is_config() {
        Failure::config(err)
    } else {
        Failure::unknown(err)
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

/// What was selected, ready to prepare.
struct Plan {
    name: String,
    configs: Vec<ProbeConfig>,
    options: PrepareOptions,
    /// Where probe URLs written as a path went, when one did.
    target: Option<BaseTarget>,
}

/// Where probe URLs written as a path go, and why: the `target` of the JSON document.
#[derive(Debug, Clone, Serialize)]
struct BaseTarget {
    /// The base URL.
    url: String,
    /// `public` or `release` (the live deployment), `base-url` (the flag) or `default`.
    via: &'static str,
    /// The live release, when the base is the live deployment.
    release: Option<String>,
    /// The CA the base's certificate is trusted by (the proxy's own), when there is one.
    #[serde(skip)]
    ca_file: Option<PathBuf>,
}

impl BaseTarget {
    fn fixed(url: &str, via: &'static str) -> Self {
        BaseTarget {
            url: url.to_owned(),
            via,
            release: None,
            ca_file: None,
        }
    }

    /// Whether it is the live deployment (and worth a line in the table output).
    fn is_live(&self) -> bool {
        self.release.is_some()
    }
}

/// The base for probe URLs written as a path: `--base-url`, else the live deployment the
/// manifest describes (as `--via` asks), else [`DEFAULT_BASE_URL`].
fn base_target(manifest: Option<&Manifest>, select: &Select) -> Result<BaseTarget, Failure> {
    if let Some(url) = &select.base_url {
        return Ok(BaseTarget::fixed(url, "base-url"));
    }
    let deployment = match manifest {
        Some(m) => Deployment::of(m).map_err(|e| live_failure(&e))?,
        None => None,
    };
    let Some(deployment) = deployment else {
        if let Some(via) = select.via {
            return Err(Failure::usage(format!(
                "--via {} needs a manifest with a [service] table (the deployment to probe); give --base-url instead",
                via.as_str()
            )));
        }
        return Ok(BaseTarget::fixed(DEFAULT_BASE_URL, "default"));
    };
    let live = deployment.live().map_err(|e| live_failure(&e))?;
    let via = select.via.unwrap_or(Via::Public);
    let (url, ca_file) = match via {
        Via::Public => (live.url.clone(), live.proxy_ca.clone()),
        Via::Release => (live.slot_url.clone(), None),
    };
    let (Some(release), Some(url)) = (live.release.clone(), url) else {
        return Err(Failure::unknown(live.describe()));
    };
    tracing::info!(%url, via = via.as_str(), %release, "probing the live deployment");
    Ok(BaseTarget {
        ca_file: ca_file.filter(|_| url.starts_with("https://")),
        url,
        via: via.as_str(),
        release: Some(release),
    })
}

/// Whether a probe goes to the base URL (its URL is a path).
fn needs_base(config: &ProbeConfig) -> bool {
    matches!(&config.target, health_probe::Target::Http(http) if http.url.starts_with('/'))
}

fn plan(common: &CommonArgs, select: &Select) -> Result<Plan, Failure> {
    if let Some(url) = &select.adhoc.url {
        let a = &select.adhoc;
        let mut target = HttpTarget::get(url);
        target.method.clone_from(&a.method);
        target.headers = a
            .headers
            .iter()
            .map(|(k, v)| (k.clone(), HeaderSource::Value(v.clone())))
            .collect();
        target.bearer_token = a
            .bearer_token
            .as_deref()
            .map(SecretRef::parse)
            .transpose()
            .map_err(|e| Failure::usage(format!("--bearer-token: {e}")))?;
        target.body.clone_from(&a.body);
        target.expect_status = a.expect_status.clone().unwrap_or_default();
        target.expect_json.clone_from(&a.expect_json);
        target.body_regex.clone_from(&a.body_regex);
        target.ca_file.clone_from(&a.ca_file);
        target.insecure = a.insecure;
        target.follow_redirects = a.follow_redirects;
        let mut config = ProbeConfig::http(a.name.clone(), target).with_timeout(a.timeout);
        config.max_latency = a.max_latency;
        return Ok(Plan {
            name: a.name.clone(),
            configs: vec![config],
            options: PrepareOptions::default(),
            target: None,
        });
    }

    // The demo suite needs no manifest; do not fail on a broken one that is not needed.
    let manifest = match (common.manifest(), select.suite.as_deref()) {
        (Ok(m), _) => m,
        (Err(_), Some(DEMO_SUITE)) if common.manifest.is_none() => None,
        (Err(e), _) => return Err(Failure::config(e.to_string())),
    };
    let configs: Vec<ProbeConfig> = match &manifest {
        Some(m) => m
            .table::<Vec<ProbeConfig>>("probe")
            .map_err(|e| Failure::config(e.to_string()))?
            .unwrap_or_default(),
        None => Vec::new(),
    };
    let (name, configs) = match &select.suite {
        // The built-in suite is written as paths (an empty base), so that it goes to the base
        // URL like any probe written as a path.
        Some(name) => (
            name.clone(),
            health_probe::select_suite(&configs, name, "", None).map_err(probe_failure)?,
        ),
        None if configs.is_empty() => {
            return Err(Failure::usage(match manifest {
                Some(m) => format!(
                    "{} has no [[probe]] entries; give --url, --suite {DEMO_SUITE}, or add probes",
                    m.path().display()
                ),
                None => format!(
                    "nothing to probe: give --url URL, --suite {DEMO_SUITE}, or run where cutover.toml has [[probe]] entries"
                ),
            }));
        }
        None => ("all".to_owned(), configs),
    };
    // The deployment is read only when a probe goes to the base URL: probes with absolute
    // URLs need nothing to be deployed.
    let target = if configs.iter().any(needs_base) {
        Some(base_target(manifest.as_ref(), select)?)
    } else {
        None
    };
    let options = PrepareOptions {
        base_dir: manifest.as_ref().map(|m| m.dir()),
        base_url: Some(
            target
                .as_ref()
                .map_or_else(|| DEFAULT_BASE_URL.to_owned(), |t| t.url.clone()),
        ),
        base_ca_file: target.as_ref().and_then(|t| t.ca_file.clone()),
        ..PrepareOptions::default()
    };
    Ok(Plan {
        name,
        configs,
        options,
        target,
    })
}

/// The table output's first line when the probes went to the live deployment.
fn print_target(target: Option<&BaseTarget>) {
    if let Some(t) = target.filter(|t| t.is_live()) {
        cutover_cli::outln!(
            "target: {} (via {}, release {})",
            t.url,
            t.via,
            t.release.as_deref().unwrap_or("?")
        );
    }
}

/// One probe in the JSON document.
#[derive(Debug, Serialize)]
struct ProbeJson<'a> {
    name: &'a str,
    status: Status,
    reason: &'a str,
    status_code: Option<u16>,
    timings_ms: &'a health_probe::Timings,
}

fn status_of(outcome: Outcome) -> Status {
    match outcome {
        Outcome::Ok => Status::Ok,
        Outcome::Fail => Status::Fail,
    }
}

fn probes_json(results: &[ProbeResult]) -> Vec<ProbeJson<'_>> {
    results
        .iter()
        .map(|r| ProbeJson {
            name: &r.name,
            status: status_of(r.status),
            reason: &r.reason,
            status_code: r.status_code,
            timings_ms: &r.timings_ms,
        })
        .collect()
}

fn print_table(results: &[ProbeResult]) {
    let width = results
        .iter()
        .map(|r| r.name.len())
        .max()
        .unwrap_or(4)
        .max(4);
    for r in results {
        let code = r
            .status_code
            .map_or_else(|| "-".to_owned(), |c| c.to_string());
        let verdict = if r.is_ok() { "ok  " } else { "FAIL" };
        cutover_cli::outln!(
            "{verdict}  {:<width$}  {code:>3}  {:>9.1} ms  {}",
            r.name,
            r.timings_ms.total_ms,
            r.reason
        );
    }
    let ok = results.iter().filter(|r| r.is_ok()).count();
    cutover_cli::outln!("{ok}/{} probes ok", results.len());
}

async fn run(common: &CommonArgs, select: &Select) -> Result<i32, Failure> {
    let plan = plan(common, select)?;
    let probes = health_probe::prepare_all(&plan.configs, &plan.options)
        .await
        .map_err(probe_failure)?;
    let report: SuiteReport = health_probe::run_suite(&probes).await;
    let status = status_of(report.status);
    if common.json {
        #[derive(Serialize)]
        struct Doc<'a> {
            status: Status,
            suite: &'a str,
            #[serde(skip_serializing_if = "Option::is_none")]
            target: Option<&'a BaseTarget>,
            probes: Vec<ProbeJson<'a>>,
        }
        let doc = Doc {
            status,
            suite: &plan.name,
            target: plan.target.as_ref(),
            probes: probes_json(&report.probes),
        };
        cutover_cli::print_json(&doc)
            .map_err(|e| Failure::unknown(format!("writing the report failed: {e}")))?;
    } else {
        print_target(plan.target.as_ref());
        print_table(&report.probes);
    }
    Ok(status.exit_code())
}

async fn wait(common: &CommonArgs, select: &Select, policy: &PolicyArgs) -> Result<i32, Failure> {
    let plan = plan(common, select)?;
    let probes = health_probe::prepare_all(&plan.configs, &plan.options)
        .await
        .map_err(probe_failure)?;
    let suite = SuiteProbe::new(plan.name.clone(), probes);
    let policy = WaitPolicy {
        initial_delay: policy.initial_delay,
        period: policy.period,
        success_threshold: policy.success_threshold,
        failure_threshold: policy.failure_threshold,
        budget: policy.budget,
    };
    let outcome = health_probe::wait_ready(&suite, &policy).await;
    let last = suite.last_report().map(|r| r.probes).unwrap_or_default();
    let (status, attempts, elapsed_ms, history, message) = match &outcome {
        Ok(report) => (
            Status::Ok,
            report.attempts,
            report.elapsed_ms,
            report.history.clone(),
            format!(
                "ready after {} attempts in {:.0} ms",
                report.attempts, report.elapsed_ms
            ),
        ),
        Err(ProbeError::NotReady {
            attempts,
            elapsed,
            history,
            ..
        }) => (
            Status::Fail,
            *attempts,
            elapsed.as_secs_f64() * 1000.0,
            history.clone(),
            outcome_message(&outcome),
        ),
        Err(_) => return outcome.map(|_| 0).map_err(probe_failure),
    };
    if common.json {
        #[derive(Serialize)]
        struct AttemptJson<'a> {
            number: u32,
            at_ms: f64,
            status: Status,
            reason: &'a str,
        }
        #[derive(Serialize)]
        struct Doc<'a> {
            status: Status,
            suite: &'a str,
            #[serde(skip_serializing_if = "Option::is_none")]
            target: Option<&'a BaseTarget>,
            attempts: u32,
            elapsed_ms: f64,
            reason: &'a str,
            probes: Vec<ProbeJson<'a>>,
            history: Vec<AttemptJson<'a>>,
        }
        let doc = Doc {
            status,
            suite: &plan.name,
            target: plan.target.as_ref(),
            attempts,
            elapsed_ms,
            reason: &message,
            probes: probes_json(&last),
            history: history
                .iter()
                .map(|a| AttemptJson {
                    number: a.number,
                    at_ms: a.at_ms,
                    status: status_of(a.result.status),
                    reason: &a.result.reason,
                })
                .collect(),
        };
        cutover_cli::print_json(&doc)
            .map_err(|e| Failure::unknown(format!("writing the report failed: {e}")))?;
    } else {
        print_target(plan.target.as_ref());
        if status != Status::Ok {
            for a in &history {
                cutover_cli::outln!(
                    "#{:<3} {:>8.0} ms  {}  {}",
                    a.number,
                    a.at_ms,
                    a.result.status.as_str(),
                    a.result.reason
                );
            }
        }
        print_table(&last);
        cutover_cli::outln!("{message}");
    }
    Ok(status.exit_code())
}

fn outcome_message<T>(outcome: &Result<T, ProbeError>) -> String {
    match outcome {
        Ok(_) => "ready".to_owned(),
        Err(e) => e.to_string(),
    }
}

fn main() -> ExitCode {
    cutover_cli::exit(run_main())
}

fn run_main() -> Result<i32, Failure> {
    let cli: Cli = cutover_cli::parse()?;
    cli.common.init_logging();
    // One probe or a handful: a single-threaded runtime starts faster and is plenty.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Failure::unknown(format!("cannot start the async runtime: {e}")))?;
    let result = runtime.block_on(async {
        match &cli.command {
            Command::Run(select) => run(&cli.common, select).await,
            Command::Wait { select, policy } => wait(&cli.common, select, policy).await,
        }
    });
    result.map_err(|failure| {
        let code = failure.code();
        tracing::error!(message = %failure, code, "cutover-probe stopped");
        if cli.common.json && code == EXIT_UNKNOWN {
            let doc =
                serde_json::json!({"status": Status::Unknown, "reason": failure.to_string(), "probes": []});
            failure.with_json(doc)
        } else {
            failure
        }
    })
}
