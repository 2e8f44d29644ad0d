//! `cutover-deploy`: deploy, roll back, inspect and recover a service described by
//! `cutover.toml`.
//!
//! Only argument parsing and rendering live here; the work is in the `deploy-pipeline`
//! library. This binary is also the supervisor program of the services it starts (the hidden
//! `__supervise` and `__exec-shim` modes are handled before argument parsing), so a deploy
//! needs no other cutover binary on the host.
//!
//! Exit codes: 0 deployed / ok; 2 failed and rolled back, the previous release serving and
//! healthy (or, for `status`/`recover`, not healthy); 4 failed and the rollback failed too;
//! 64 usage; 75 another deploy holds the lock; 78 invalid configuration.

// A binary: what it prints is its output. Libraries never print (the workspace denies it).
#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::ffi::OsString;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use cutover_cli::{CommonArgs, EXIT_OK, EXIT_WARN, Failure, Status};
use deploy_pipeline::{DeployError, DeployManifest, DeployReport, Deployer, Outcome};
use serde_json::{Value, json};

mod fleet;

/// Deploy a service through preflight, backup, build, switch, validate and commit, with
/// automatic rollback; roll back, inspect and recover.
#[derive(Debug, Parser)]
#[command(name = "cutover-deploy", version, about, long_about = None)]
struct Cli {
    #[command(flatten)]
    common: CommonArgs,
    /// How long to wait for another deploy's lock before giving up with exit 75 (default: do
    /// not wait).
    #[arg(long, global = true, value_parser = humantime::parse_duration, default_value = "0s", value_name = "DURATION")]
    lock_wait: Duration,
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Build and deploy a new release from the manifest's source (exit 0, 2 or 4).
    Deploy {
        /// Extra environment for this release only, KEY=VALUE (repeatable): recorded in the
        /// release, so a rollback to it runs it the same way. Values take the `[service] env`
        /// placeholders. Never for secrets: a name listed in `[service] secrets` is refused.
        #[arg(long = "set-env", value_name = "KEY=VALUE", value_parser = parse_pair)]
        set_env: Vec<(String, String)>,
        /// The commit to build (a commit id, tag or branch of the source's git repository;
        /// default its HEAD). It is exported into a build directory under the layout root:
        /// the working tree is never built, and its uncommitted changes are named in a warning.
        #[arg(long, value_name = "REV")]
        commit: Option<String>,
        /// Deploy to these ssh destinations (comma-separated) instead of `[fleet] hosts`:
        /// in batches, with a failure budget and fleet-wide rollback.
        #[arg(long, value_name = "HOST,...", value_delimiter = ',')]
        hosts: Option<Vec<String>>,
        /// Continue the interrupted fleet deploy recorded in the fleet journal.
        #[arg(long)]
        resume: bool,
    },
    /// Bring back the last good release before the current one, or the one named.
    Rollback {
        /// The release id to roll back to (default: the last good release).
        #[arg(long, value_name = "ID")]
        to: Option<String>,
    },
    /// Show what is live, whether it is healthy and what a rollback would bring back.
    Status {
        /// Show each fleet host's live release instead (the hosts named, comma-separated, or
        /// `[fleet] hosts` when none are).
        #[arg(long, value_name = "HOST,...", num_args = 0..=1, default_missing_value = "")]
        hosts: Option<String>,
    },
    /// List the releases on disk.
    Releases,
    /// Show what a deploy would do now, without doing it (secrets named, never resolved).
    Plan,
    /// Print the audit log (who, when, commit, phases with durations, outcome).
    Audit {
        /// Only the last N operations.
        #[arg(long, value_name = "N")]
        last: Option<usize>,
    },
    /// Finish or undo an interrupted operation so that `current` names a complete release
    /// and the service that answers runs it.
    Recover,
    /// Stop the service (every slot) and the proxy; `recover` or the next deploy starts it again.
    Down,
    /// Print the JSON Schema of cutover.toml.
    Schema,
    /// The remote half of a fleet deploy's dead-man's switch (started by the fleet).
    #[command(hide = true)]
    FleetWatchdog {
        /// The marker prefix `<dir>/fleet/<token>`.
        #[arg(long)]
        marker: std::path::PathBuf,
        /// How long to wait for the deploy to switch.
        #[arg(long, value_parser = humantime::parse_duration)]
        switch_timeout: Duration,
        /// How long a switched host waits for its confirmation.
        #[arg(long, value_parser = humantime::parse_duration)]
        confirm_timeout: Duration,
    },
}

fn parse_pair(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .ok_or_else(|| "expected KEY=VALUE".to_owned())
}

fn main() -> ExitCode {
    cutover_cli::exit(run())
}

fn run() -> Result<i32, Failure> {
    let args: Vec<OsString> = std::env::args_os().collect();
    if let Some(result) = process_control::run_hidden_mode(&args) {
        return result.map_err(|err| Failure::new(127, err));
    }
    let cli: Cli = cutover_cli::parse()?;
    cli.common.init_logging();
    command(&cli)
}

fn command(cli: &Cli) -> Result<i32, Failure> {
    if matches!(cli.command, Cmd::Schema) {
        cutover_cli::outln!("{}", deploy_pipeline::json_schema());
        return Ok(EXIT_OK);
    }
    let manifest = cli.common.manifest()?.ok_or_else(|| {
        Failure::config("no manifest: pass --manifest PATH or run where cutover.toml is")
    })?;
    let loaded = manifest;
    let manifest = match DeployManifest::from_manifest(&loaded) {
        Ok(m) => m,
        Err(e) => return Err(fail(cli, &e)),
    };
    let env = match deploy_pipeline::real_environment(&manifest, None) {
        Ok(env) => env,
        Err(e) => return Err(fail(cli, &e)),
    };
    let mut deployer = Deployer::new(manifest, env);
    match &cli.command {
        Cmd::Deploy { hosts, resume, .. } => {
            if *resume && hosts.is_some() {
                return Err(fleet::usage_conflict());
            }
            let configured =
                fleet::configured(&loaded).map_err(|e| Failure::new(e.exit_code(), e))?;
            if hosts.is_some() || *resume || configured {
                return fleet::deploy(
                    &loaded,
                    &deployer,
                    hosts.as_deref(),
                    *resume,
                    cli.lock_wait,
                    cli.common.json,
                );
            }
        }
        Cmd::Status { hosts: Some(list) } => {
            let list: Vec<String> = list
                .split(',')
                .filter(|h| !h.trim().is_empty())
                .map(str::to_owned)
                .collect();
            let list = (!list.is_empty()).then_some(list);
            return fleet::status(&loaded, &deployer, list.as_deref(), cli.common.json);
        }
        Cmd::FleetWatchdog {
            marker,
            switch_timeout,
            confirm_timeout,
        } => {
            return Ok(fleet::watchdog(
                &deployer,
                marker,
                *switch_timeout,
                *confirm_timeout,
            ));
        }
        _ => {}
    }
    if let Cmd::Deploy {
        set_env, commit, ..
    } = &cli.command
    {
        deployer = match deployer.with_set_env(set_env.iter().cloned()) {
            Ok(d) => d,
            Err(e) => return Err(fail(cli, &e)),
        };
        if let Some(rev) = commit {
            deployer = deployer.with_commit(rev.clone());
        }
    }
    let code = match &cli.command {
        Cmd::Deploy { .. } => report_operation(cli, deployer.deploy(cli.lock_wait))?,
        Cmd::Rollback { to } => {
            report_operation(cli, deployer.rollback(to.as_deref(), cli.lock_wait))?
        }
        Cmd::Status { .. } => match deployer.status() {
            Ok(s) => {
                let status = if s.interrupted.is_some() {
                    Status::Warn
                } else if s.healthy {
                    Status::Ok
                } else {
                    Status::Fail
                };
                if cli.common.json {
                    print_json(status, &s);
                } else {
                    cutover_cli::outln!("service   {} ({})", s.service_name, s.strategy.as_str());
                    cutover_cli::outln!("root      {}", s.root.display());
                    cutover_cli::outln!(
                        "current   {}{}",
                        s.current.as_deref().unwrap_or("(none)"),
                        s.slot.map(|x| format!(" in slot {x}")).unwrap_or_default()
                    );
                    if let Some(url) = &s.url {
                        cutover_cli::outln!("url       {url}");
                    }
                    if let Some(url) = &s.slot_url {
                        cutover_cli::outln!(
                            "slot      {url}{}",
                            match s.service.pid {
                                Some(pid) => format!(" ({}, pid {pid})", s.service.state),
                                None => format!(" ({})", s.service.state),
                            }
                        );
                    }
                    if let Some(u) = s.upstream {
                        cutover_cli::outln!("proxy     upstream {u}");
                    }
                    cutover_cli::outln!(
                        "health    {}",
                        if s.healthy {
                            "ready".to_owned()
                        } else {
                            format!("NOT READY: {}", s.health_reason.clone().unwrap_or_default())
                        }
                    );
                    cutover_cli::outln!(
                        "rollback  {}",
                        s.rollback_target
                            .as_deref()
                            .unwrap_or("(no earlier good release)")
                    );
                    if let Some(standby) = &s.standby {
                        cutover_cli::outln!(
                            "standby   {} warm in slot {}: {}{}",
                            standby.release,
                            standby.slot,
                            standby.process,
                            standby
                                .rss_bytes
                                .map(|b| format!(", {} MiB resident", b / (1024 * 1024)))
                                .unwrap_or_default()
                        );
                    }
                    for (name, state) in &s.services {
                        cutover_cli::outln!("process   {name}: {state}");
                    }
                    if let Some(c) = &s.canary {
                        let steps: Vec<String> = c.steps.iter().map(|p| format!("{p}%")).collect();
                        cutover_cli::outln!(
                            "canary    {} in slot {} against {} in slot {}: {}, step {} of [{}], weights {}% canary / {}% baseline",
                            c.release,
                            c.canary_slot,
                            c.baseline,
                            c.baseline_slot,
                            c.state,
                            c.step,
                            steps.join(", "),
                            c.canary_percent,
                            100 - u32::from(c.canary_percent.min(100)),
                        );
                        cutover_cli::outln!("judge     {}: {}", c.verdict, c.reason);
                    }
                    if let Some(i) = &s.interrupted {
                        cutover_cli::outln!(
                            "WARNING   an interrupted {} of {} awaits `cutover-deploy recover`",
                            i.op.as_str(),
                            i.release
                        );
                    }
                    if let Some(holder) = &s.lock_holder {
                        cutover_cli::outln!("lock      held: {holder}");
                    }
                    if let Some(last) = &s.last_outcome {
                        cutover_cli::outln!("last      {last}");
                    }
                }
                status.exit_code()
            }
            Err(e) => return Err(fail(cli, &e)),
        },
        Cmd::Releases => match deployer.releases() {
            Ok(list) => {
                if cli.common.json {
                    print_json(Status::Ok, &json!({ "releases": list }));
                } else if list.is_empty() {
                    cutover_cli::outln!("no releases");
                } else {
                    cutover_cli::outln!(
                        "{:<32} {:<11} {:<10} CREATED",
                        "RELEASE",
                        "STATE",
                        "COMMIT"
                    );
                    for r in list.iter().rev() {
                        cutover_cli::outln!(
                            "{:<32} {:<11} {:<10} {}",
                            r.id,
                            r.state,
                            r.commit.as_deref().unwrap_or("-"),
                            r.created.as_deref().unwrap_or("-")
                        );
                    }
                }
                EXIT_OK
            }
            Err(e) => return Err(fail(cli, &e)),
        },
        Cmd::Plan => match deployer.plan() {
            Ok(plan) => {
                if cli.common.json {
                    print_json(Status::Ok, &plan);
                } else {
                    cutover_cli::outln!(
                        "deploy {} of {} ({}), slot {} on port {}",
                        plan.release,
                        plan.service,
                        plan.strategy.as_str(),
                        plan.slot,
                        plan.port
                    );
                    cutover_cli::outln!(
                        "live now: {}",
                        plan.previous.as_deref().unwrap_or("(nothing)")
                    );
                    if let Some(i) = &plan.interrupted {
                        cutover_cli::outln!(
                            "first: recover the interrupted {} of {}",
                            i.op.as_str(),
                            i.release
                        );
                    }
                    if let Some(steps) = &plan.canary_steps {
                        let steps: Vec<String> = steps.iter().map(|p| format!("{p} %")).collect();
                        cutover_cli::outln!("canary steps: {}", steps.join(" -> "));
                    }
                    for p in &plan.phases {
                        cutover_cli::outln!("  {:<10} {}", p.phase.as_str(), p.action);
                        for h in &p.hooks {
                            cutover_cli::outln!("  {:<10}   hook {h}", "");
                        }
                    }
                    cutover_cli::outln!("start:   {:?}", plan.start);
                    cutover_cli::outln!("env:     {}", plan.env.join(", "));
                    cutover_cli::outln!(
                        "secrets: {} (resolved at start, never shown)",
                        if plan.secrets.is_empty() {
                            "none".to_owned()
                        } else {
                            plan.secrets.join(", ")
                        }
                    );
                    if !plan.prune.is_empty() {
                        cutover_cli::outln!("prune:   {}", plan.prune.join(", "));
                    }
                }
                EXIT_OK
            }
            Err(e) => return Err(fail(cli, &e)),
        },
        Cmd::Audit { last } => {
            match deploy_pipeline::audit::read(&deployer.layout().audit_file()) {
                Ok(mut records) => {
                    if let Some(n) = last {
                        let skip = records.len().saturating_sub(*n);
                        records.drain(..skip);
                    }
                    if cli.common.json {
                        print_json(Status::Ok, &json!({ "entries": records }));
                    } else {
                        for r in &records {
                            let phases: Vec<String> = r
                                .phases
                                .iter()
                                .map(|p| format!("{}:{}:{}ms", p.phase, p.outcome, p.duration_ms))
                                .collect();
                            cutover_cli::outln!(
                                "{} {}@{} {} {} -> {} [{}] {}ms {}{}",
                                r.at,
                                r.user,
                                r.host,
                                r.operation,
                                r.release.as_deref().unwrap_or("-"),
                                r.outcome,
                                r.commit.as_deref().unwrap_or("-"),
                                r.duration_ms,
                                phases.join(" "),
                                r.reason
                                    .as_deref()
                                    .map(|x| format!(" ({x})"))
                                    .unwrap_or_default()
                            );
                        }
                    }
                    EXIT_OK
                }
                Err(e) => return Err(fail(cli, &e)),
            }
        }
        Cmd::Recover => match deployer.recover(cli.lock_wait) {
            Ok(r) => {
                let status = if r.healthy { Status::Ok } else { Status::Fail };
                if cli.common.json {
                    print_json(status, &r);
                } else {
                    cutover_cli::outln!("{}", r.action);
                    cutover_cli::outln!("live: {}", r.live);
                }
                // Unfinished work that could not be finished: a person must look.
                if r.rollback_failed {
                    4
                } else {
                    status.exit_code()
                }
            }
            Err(e) => return Err(fail(cli, &e)),
        },
        Cmd::Down => match deployer.down(cli.lock_wait) {
            Ok(what) => {
                if cli.common.json {
                    print_json(Status::Ok, &json!({ "stopped": what }));
                } else {
                    cutover_cli::outln!("{what}");
                }
                EXIT_OK
            }
            Err(e) => return Err(fail(cli, &e)),
        },
        Cmd::Schema | Cmd::FleetWatchdog { .. } => EXIT_OK,
    };
    Ok(code)
}

fn report_operation(cli: &Cli, result: Result<DeployReport, DeployError>) -> Result<i32, Failure> {
    let report = match result {
        Ok(r) => r,
        Err(e) => return Err(fail(cli, &e)),
    };
    let status = if report.outcome == Outcome::Deployed {
        Status::Ok
    } else {
        Status::Fail
    };
    if cli.common.json {
        print_json(status, &report);
    } else {
        if let Some(r) = &report.recovered {
            cutover_cli::outln!("recovered first: {r}");
        }
        for p in &report.phases {
            cutover_cli::outln!(
                "  {:<10} {:<8} {:>7} ms  {}",
                p.phase,
                p.outcome,
                p.duration_ms,
                p.detail.as_deref().unwrap_or("")
            );
        }
        match report.outcome {
            Outcome::Deployed => cutover_cli::outln!(
                "{} {} in {} ms: {}",
                report.operation,
                report.release,
                report.duration_ms,
                report.live
            ),
            outcome => {
                eprintln!(
                    "{} of {} {}: {}",
                    report.operation,
                    report.release,
                    outcome.as_str(),
                    report.reason.as_deref().unwrap_or("")
                );
                eprintln!("live: {}", report.live);
            }
        }
    }
    Ok(report.outcome.exit_code())
}

fn print_json<T: serde::Serialize>(status: Status, value: &T) {
    let _ = cutover_cli::print_json(&document(status, value));
}

/// The JSON document `print_json` prints: `value` with its `"status"`.
fn document<T: serde::Serialize>(status: Status, value: &T) -> Value {
    let mut doc = serde_json::to_value(value).unwrap_or(Value::Null);
    match &mut doc {
        Value::Object(map) => {
            map.insert("status".to_owned(), json!(status.as_str()));
        }
        other => {
            *other = json!({ "status": status.as_str(), "result": other.clone() });
        }
    }
    doc
}

/// Why a deploy command stops: its message, its exit code and, with `--json`, the document.
fn fail(cli: &Cli, err: &DeployError) -> Failure {
    let code = err.exit_code();
    let failure = Failure::new(code, err);
    if cli.common.json {
        let status = if code == EXIT_WARN {
            Status::Warn
        } else {
            Status::Unknown
        };
        failure.with_json(document(
            status,
            &json!({ "error": err.to_string(), "exit_code": code }),
        ))
    } else {
        failure
    }
}
