//! `deploy --hosts`, `deploy --resume`, `status --hosts` and the hidden `fleet-watchdog`: the
//! command-line side of the `fleet-rollout` crate.

use std::path::Path;
use std::time::Duration;

use cutover_cli::{Failure, Status};
use deploy_pipeline::Deployer;
use fleet_rollout::{Fleet, FleetConfig, FleetError, FleetReport};
use serde_json::json;

/// Builds the fleet of `hosts` (or the manifest's), or the exit code of the error.
fn fleet(
    manifest: &manifest_loader::Manifest,
    deployer: &Deployer,
    hosts: Option<&[String]>,
) -> Result<Fleet, FleetError> {
    let cfg = FleetConfig::from_manifest(manifest)?;
    let hosts = cfg.hosts(hosts)?;
    let m = deployer.manifest();
    let bin = std::env::current_exe()
        .map_err(|e| FleetError::Io(format!("cannot find this cutover-deploy binary: {e}")))?;
    Fleet::new(
        manifest,
        cfg,
        hosts,
        &m.service.name,
        &m.service.source,
        bin,
        deployer.layout().state_dir(),
    )
}

/// Whether a plain `deploy` is a fleet deploy (the manifest names hosts).
pub(crate) fn configured(manifest: &manifest_loader::Manifest) -> Result<bool, FleetError> {
    Ok(FleetConfig::from_manifest(manifest)?.has_hosts())
}

fn fail(json: bool, err: &FleetError) -> Failure {
    let code = err.exit_code();
    let failure = Failure::new(code, err);
    if json {
        failure.with_json(crate::document(
            Status::Unknown,
            &json!({ "error": err.to_string(), "exit_code": code }),
        ))
    } else {
        failure
    }
}

/// `deploy --hosts …` / `deploy --resume` / `deploy` with `[fleet] hosts`.
pub(crate) fn deploy(
    manifest: &manifest_loader::Manifest,
    deployer: &Deployer,
    hosts: Option<&[String]>,
    resume: bool,
    lock_wait: Duration,
    json: bool,
) -> Result<i32, Failure> {
    let fleet = fleet(manifest, deployer, hosts).map_err(|e| fail(json, &e))?;
    match fleet.run(resume, lock_wait) {
        Ok(report) => Ok(render(&report, json)),
        Err(e) => Err(fail(json, &e)),
    }
}

fn render(report: &FleetReport, json: bool) -> i32 {
    let code = report.exit_code();
    if json {
        let status = match code {
            0 => Status::Ok,
            1 => Status::Warn,
            _ => Status::Fail,
        };
        crate::print_json(status, report);
    } else {
        for (i, b) in report.batches.iter().enumerate() {
            cutover_cli::outln!("batch {}: {}", i + 1, b.join(", "));
        }
        cutover_cli::outln!("{:<24} {:<16} {:<32} DETAIL", "HOST", "OUTCOME", "RELEASE");
        for h in &report.hosts {
            cutover_cli::outln!(
                "{:<24} {:<16} {:<32} {}",
                h.host,
                h.outcome,
                h.deployed
                    .as_deref()
                    .or(h.previous.as_deref())
                    .unwrap_or("-"),
                h.detail.as_deref().unwrap_or("")
            );
        }
        let line = format!(
            "fleet {} of {}: {} in {} ms ({} failed, max_fail {})",
            if report.resumed { "resume" } else { "deploy" },
            report.release,
            report.outcome,
            report.duration_ms,
            report.failures,
            report.max_fail
        );
        if code == 0 {
            cutover_cli::outln!("{line}");
        } else {
            eprintln!("{line}");
            if let Some(r) = &report.reason {
                eprintln!("stopped: {r}");
            }
            if let Some(ms) = report.rollback_ms {
                eprintln!("fleet-wide rollback took {ms} ms");
            }
        }
    }
    code
}

/// `status --hosts [LIST]`.
pub(crate) fn status(
    manifest: &manifest_loader::Manifest,
    deployer: &Deployer,
    hosts: Option<&[String]>,
    json: bool,
) -> Result<i32, Failure> {
    let fleet = fleet(manifest, deployer, hosts).map_err(|e| fail(json, &e))?;
    let list = fleet.statuses();
    let status = if list.iter().all(|h| h.healthy) {
        Status::Ok
    } else {
        Status::Fail
    };
    if json {
        crate::print_json(status, &json!({ "hosts": list }));
    } else {
        cutover_cli::outln!("{:<24} {:<32} HEALTH", "HOST", "CURRENT");
        for h in &list {
            cutover_cli::outln!(
                "{:<24} {:<32} {}",
                h.host,
                h.current.as_deref().unwrap_or("(none)"),
                if h.healthy {
                    "ready".to_owned()
                } else if !h.reachable {
                    format!("UNREACHABLE: {}", h.detail.as_deref().unwrap_or(""))
                } else {
                    format!("NOT READY: {}", h.detail.as_deref().unwrap_or(""))
                }
            );
        }
    }
    Ok(status.exit_code())
}

/// The hidden `fleet-watchdog`: the remote half of the dead-man's switch.
pub(crate) fn watchdog(
    deployer: &Deployer,
    marker: &Path,
    switch_timeout: Duration,
    confirm_timeout: Duration,
) -> i32 {
    let outcome =
        fleet_rollout::watchdog::watch(marker, switch_timeout, confirm_timeout, || match deployer
            .rollback(None, Duration::from_secs(300))
        {
            Ok(r) => Ok(format!("{}: {}", r.outcome.as_str(), r.live)),
            Err(e) => Err(e.to_string()),
        });
    eprintln!("fleet-watchdog {}: {outcome:?}", marker.display());
    match outcome {
        fleet_rollout::watchdog::WatchOutcome::RolledBack(Err(_)) => 4,
        _ => 0,
    }
}

/// Refuses `--resume` together with `--hosts`.
pub(crate) fn usage_conflict() -> Failure {
    Failure::usage("--resume continues the journaled fleet deploy: it takes no --hosts")
}
