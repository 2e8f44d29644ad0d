//! The real implementations of the pipeline's traits: the system clock, a command runner
//! with process-group timeouts, nginx through edge-proxy, health-probe suites and the
//! perf-baseline gate; and [`real_environment`], which assembles them for a manifest.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use edge_proxy::{Layout, Nginx, NginxInstance, SwitchTarget, TrafficSwitch};
use health_probe::{
    HttpTarget, PrepareOptions, ProbeConfig, ProbeError, SuiteProbe, WaitPolicy, prepare_all,
    wait_ready,
};
use process_control::{ManagerKind, SupervisedConfig, SupervisedManager};

use crate::env::{
    Clock, CommandRequest, CommandResult, CommandRunner, Environment, Health, NoPerfGate,
    NoTraffic, PerfGate, Target, Traffic,
};
use crate::manifest::{DeployManifest, StrategyKind};
use crate::phase::Slot;
use crate::{DeployError, ReleaseLayout};

/// The system clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> jiff::Timestamp {
        jiff::Timestamp::now()
    }
}

/// Runs commands in their own process group; on timeout the whole group is killed.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemRunner;

const OUTPUT_LIMIT: usize = 64 * 1024;

impl CommandRunner for SystemRunner {
    fn run(&self, request: &CommandRequest<'_>) -> Result<CommandResult, String> {
        let (program, args) = request
            .argv
            .split_first()
            .ok_or_else(|| "empty argv".to_owned())?;
        let mut cmd = Command::new(program);
        cmd.args(args)
            .current_dir(request.cwd)
            .envs(request.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null());
        let done = host_util::process::run_with_timeout(&mut cmd, request.timeout, OUTPUT_LIMIT)
            .map_err(|e| format!("cannot run {program:?} in {}: {e}", request.cwd.display()))?;
        Ok(CommandResult {
            code: done.status.and_then(|s| s.code()),
            timed_out: done.timed_out,
            stdout: String::from_utf8_lossy(&done.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&done.stderr).into_owned(),
        })
    }
}

fn runtime() -> Result<Arc<tokio::runtime::Runtime>, String> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map(Arc::new)
        .map_err(|e| format!("cannot start an async runtime: {e}"))
}

/// nginx as the traffic switch: a private instance under the proxy directory.
#[allow(missing_debug_implementations)]
pub struct NginxTraffic {
    instance: NginxInstance,
    rt: Arc<tokio::runtime::Runtime>,
    /// The two slots' addresses: every group a switch between them can need is in nginx's
    /// configuration from the start, so no switch reloads it.
    slots: Vec<SocketAddr>,
    /// Canary: the weighted splits of every step, both ways round, rendered at start so that
    /// no step reloads nginx either; and what they hash.
    splits: Vec<edge_proxy::WeightedSplit>,
    sticky: edge_proxy::StickyKey,
}

impl NginxTraffic {
    /// The instance for `[proxy]` of `manifest` (prefix `[proxy] dir`, else `<root>/proxy`).
    ///
    /// # Errors
    /// When nginx is not installed (`apt-get install nginx`).
    pub fn new(manifest: &DeployManifest) -> Result<Self, DeployError> {
        let mut config = manifest.proxy.clone().ok_or_else(|| DeployError::Config {
            path: manifest.path.clone(),
            key: "proxy".to_owned(),
            reason: format!("{} needs a [proxy] table", manifest.strategy().as_str()),
        })?;
        let dir = manifest.proxy_dir();
        config.dir = Some(dir.clone());
        let nginx = Nginx::locate().map_err(|e| DeployError::step("locate nginx", e))?;
        let slots = [Slot::Blue, Slot::Green]
            .map(|s| manifest.service.addr_for(s))
            .to_vec();
        let canary = &manifest.deploy.canary;
        let mut splits = Vec::new();
        if manifest.strategy() == StrategyKind::Canary
            && let [a, b] = slots[..]
        {
            for (baseline, canary_addr) in [(a, b), (b, a)] {
                splits.extend(canary.split_steps().map(|canary_percent| {
                    edge_proxy::WeightedSplit {
                        baseline,
                        canary: canary_addr,
                        canary_percent,
                    }
                }));
            }
        }
        Ok(Self {
            instance: NginxInstance::new(nginx, Layout::new(dir), config),
            rt: runtime().map_err(|e| DeployError::step("proxy", e))?,
            slots,
            splits,
            sticky: canary.sticky(),
        })
    }
}

impl Traffic for NginxTraffic {
    fn is_running(&self) -> bool {
        edge_proxy::InstanceState::load(self.instance.layout()).is_ok_and(|s| s.is_alive())
    }

    fn current(&self) -> Result<Option<SocketAddr>, String> {
        self.rt
            .block_on(self.instance.switcher().current())
            .map_err(|e| e.to_string())
    }

    fn serving(&self) -> Result<Option<SocketAddr>, String> {
        self.rt
            .block_on(self.instance.switcher().served_by())
            .map_err(|e| e.to_string())
    }

    fn start(&self, upstream: SocketAddr) -> Result<(), String> {
        let token = match self
            .instance
            .config()
            .admin
            .as_ref()
            .and_then(|a| a.token.as_ref())
        {
            Some(reference) => Some(
                secret_refs::Resolver::new()
                    .resolve_blocking(reference)
                    .map_err(|e| e.to_string())?,
            ),
            None => None,
        };
        let live = edge_proxy::UpstreamGroup::new(upstream, None);
        let mut known = Vec::new();
        for a in &self.slots {
            known.push(edge_proxy::UpstreamGroup::new(*a, None));
            for b in &self.slots {
                if a != b {
                    known.push(edge_proxy::UpstreamGroup::new(*a, Some(*b)));
                }
            }
        }
        let routes = edge_proxy::Routes::with_default(live, &known)
            .with_splits(&self.splits, self.sticky.clone());
        self.instance
            .write_config_with_routes(Some(upstream), Some(routes), token.as_ref())
            .map_err(|e| e.to_string())?;
        self.rt
            .block_on(self.instance.start(edge_proxy::DEFAULT_START_TIMEOUT))
            .map(drop)
            .map_err(|e| e.to_string())
    }

    fn switch(&self, upstream: SocketAddr, release: Option<&str>) -> Result<(), String> {
        self.switch_with_backup(upstream, None, release)
    }

    fn switch_with_backup(
        &self,
        upstream: SocketAddr,
        backup: Option<SocketAddr>,
        release: Option<&str>,
    ) -> Result<(), String> {
        let target = SwitchTarget {
            upstream,
            expect_release: release.map(str::to_owned),
            backup,
        };
        self.rt
            .block_on(self.instance.switcher().switch(&target))
            .map(drop)
            .map_err(|e| e.to_string())
    }

    fn stop(&self) -> Result<(), String> {
        self.rt
            .block_on(self.instance.stop(Duration::from_secs(5)))
            .map(drop)
            .map_err(|e| e.to_string())
    }

    fn split(
        &self,
        baseline: SocketAddr,
        canary: SocketAddr,
        canary_percent: u8,
        release: Option<&str>,
    ) -> Result<(), String> {
        let split = edge_proxy::WeightedSplit {
            baseline,
            canary,
            canary_percent,
        };
        self.rt
            .block_on(
                self.instance
                    .switcher()
                    .split(&split, &self.splits, &self.sticky, release),
            )
            .map_err(|e| e.to_string())
    }

    fn splitting(&self) -> bool {
        self.instance
            .switcher()
            .current_split()
            .is_ok_and(|s| s.is_some())
    }

    fn edge_log(&self) -> Option<PathBuf> {
        Some(self.instance.layout().edge_log())
    }
}

/// Readiness and validation with health-probe: the manifest's `[[probe]]` suites (relative
/// URLs against the release's own address), or a GET of the health path.
#[allow(missing_debug_implementations)]
pub struct ProbeHealth {
    ready: Vec<ProbeConfig>,
    validate: Vec<ProbeConfig>,
    release_field: Option<String>,
    health_path: String,
    base_dir: PathBuf,
    rt: Arc<tokio::runtime::Runtime>,
}

impl ProbeHealth {
    /// The checks `manifest` describes.
    ///
    /// # Errors
    /// When no async runtime can be started.
    pub fn new(manifest: &DeployManifest) -> Result<Self, DeployError> {
        let suite = |name: &str| -> Vec<ProbeConfig> {
            manifest
                .probes
                .iter()
                .filter(|p| p.suite == name)
                .cloned()
                .collect()
        };
        let d = &manifest.deploy;
        let release_field = d.verify_release.then(|| {
            manifest
                .proxy
                .as_ref()
                .map(|p| p.release_field.clone())
                .unwrap_or_else(|| "/version".to_owned())
        });
        Ok(Self {
            ready: suite(&d.ready_suite),
            validate: suite(&d.validate_suite),
            release_field,
            health_path: manifest.service.health_path.clone(),
            base_dir: manifest.dir.clone(),
            rt: runtime().map_err(|e| DeployError::step("health", e))?,
        })
    }

    fn probes(&self, configs: &[ProbeConfig], target: &Target) -> Vec<ProbeConfig> {
        let mut probes: Vec<ProbeConfig> = if configs.is_empty() {
            vec![
                ProbeConfig::http("health", HttpTarget::get(self.health_path.clone()))
                    .with_timeout(Duration::from_secs(2)),
            ]
        } else {
            configs.to_vec()
        };
        if let Some(field) = &self.release_field {
            let mut check = HttpTarget::get(self.health_path.clone());
            if let Ok(assertion) =
                format!("{field} == {}", serde_json::json!(target.release)).parse()
            {
                check.expect_json.push(assertion);
            }
            probes.push(ProbeConfig::http("release", check).with_timeout(Duration::from_secs(2)));
        }
        probes
    }

    /// Relative probe URLs against the release being checked; CA paths against the manifest.
    fn options(&self, target: &Target) -> PrepareOptions {
        PrepareOptions {
            base_dir: Some(self.base_dir.clone()),
            base_url: Some(target.base_url.clone()),
            ..PrepareOptions::default()
        }
    }

    fn wait(
        &self,
        configs: &[ProbeConfig],
        target: &Target,
        budget: Duration,
    ) -> Result<(), String> {
        let configs = self.probes(configs, target);
        let options = self.options(target);
        self.rt.block_on(async {
            let prepared = prepare_all(&configs, &options)
                .await
                .map_err(|e| e.to_string())?;
            let suite = SuiteProbe::new("suite", prepared);
            let policy = WaitPolicy {
                period: Duration::from_millis(200),
                failure_threshold: u32::MAX,
                budget: Some(budget),
                ..WaitPolicy::default()
            };
            match wait_ready(&suite, &policy).await {
                Ok(_) => Ok(()),
                Err(ProbeError::NotReady {
                    attempts, elapsed, ..
                }) => {
                    let why = suite
                        .last_report()
                        .map(|r| failures(&r))
                        .unwrap_or_default();
                    Err(format!(
                        "not ready after {attempts} attempts in {elapsed:.1?}: {why}"
                    ))
                }
                Err(e) => Err(e.to_string()),
            }
        })
    }
}

/// The failing probes of a suite run and why, for messages.
fn failures(report: &health_probe::SuiteReport) -> String {
    report
        .probes
        .iter()
        .filter(|p| !p.is_ok())
        .map(|p| format!("{}: {}", p.name, p.reason))
        .collect::<Vec<_>>()
        .join("; ")
}

impl Health for ProbeHealth {
    fn wait_ready(&self, target: &Target, budget: Duration) -> Result<(), String> {
        self.wait(&self.ready, target, budget)
    }

    fn check_ready(&self, target: &Target, limit: Duration) -> Result<(), String> {
        let configs = self.probes(&self.ready, target);
        let options = self.options(target);
        self.rt.block_on(async {
            let attempt = async {
                let prepared = prepare_all(&configs, &options)
                    .await
                    .map_err(|e| e.to_string())?;
                let report = health_probe::run_suite(&prepared).await;
                if report.probes.iter().all(|p| p.is_ok()) {
                    Ok(())
                } else {
                    Err(failures(&report))
                }
            };
            match tokio::time::timeout(limit, attempt).await {
                Ok(result) => result,
                Err(_) => Err(format!(
                    "the attempt was cut at the end of the budget ({limit:.1?})"
                )),
            }
        })
    }

    fn validate(&self, target: &Target, budget: Duration) -> Result<(), String> {
        self.wait(&self.validate, target, budget)
    }
}

/// The perf gate: `[perf]` load against the new release, compared with the saved baseline
/// (`[perf] baseline`, else `<root>/state/baselines/perf.json`); the first run saves it.
#[derive(Debug)]
pub struct BaselineGate {
    config: perf_baseline::PerfConfig,
    baseline: PathBuf,
}

impl BaselineGate {
    /// The gate for `manifest`.
    pub fn new(manifest: &DeployManifest, layout: &ReleaseLayout) -> Option<Self> {
        let config = manifest.perf.clone()?;
        let baseline = config.baseline.as_ref().map_or_else(
            || layout.state_dir().join("baselines").join("perf.json"),
            |p| manifest.dir.join(p),
        );
        Some(Self { config, baseline })
    }
}

impl PerfGate for BaselineGate {
    fn check(&self, target: &Target) -> Result<String, String> {
        let mut plan = self.config.to_plan().map_err(|e| e.to_string())?;
        for endpoint in &mut plan.endpoints {
            if endpoint.url.starts_with('/') {
                endpoint.url = format!("{}{}", target.base_url, endpoint.url);
            }
        }
        let rt = perf_baseline::build_runtime().map_err(|e| e.to_string())?;
        let report = rt
            .block_on(perf_baseline::run(
                &plan,
                Arc::new(perf_baseline::Progress::default()),
            ))
            .map_err(|e| e.to_string())?;
        if !self.baseline.exists() {
            if let Some(parent) = self.baseline.parent() {
                std::fs::create_dir_all(parent).map_err(|e| e.to_string())?;
            }
            perf_baseline::Baseline::new(report)
                .save(&self.baseline)
                .map_err(|e| e.to_string())?;
            return Ok(format!(
                "no baseline yet: saved {}",
                self.baseline.display()
            ));
        }
        let baseline = perf_baseline::Baseline::load(&self.baseline).map_err(|e| e.to_string())?;
        let comparison = perf_baseline::compare(&baseline.report, &report, &self.config.tolerances);
        match comparison.verdict {
            perf_baseline::Verdict::Regressed => Err(comparison
                .reasons
                .first()
                .map(|r| r.message.clone())
                .unwrap_or_else(|| "regressed".to_owned())),
            verdict => Ok(format!("{verdict} against {}", self.baseline.display())),
        }
    }
}

/// The real environment for `manifest`: the supervised (or systemd) process manager with
/// `supervisor` as the supervisor program (`None`: the current executable, which must call
/// `process_control::run_hidden_mode` first thing), nginx for blue-green, health-probe, the
/// perf gate, the system runner and clock.
///
/// # Errors
/// [`DeployError::Config`] for a manager this build cannot drive, or nginx missing.
pub fn real_environment(
    manifest: &DeployManifest,
    supervisor: Option<PathBuf>,
) -> Result<Environment, DeployError> {
    let layout = ReleaseLayout::new(manifest.root());
    let procs: Box<dyn process_control::ProcessManager + Send + Sync> =
        match manifest.process.manager.unwrap_or_default() {
            ManagerKind::Supervised => {
                let mut config = SupervisedConfig::for_root(layout.root());
                if let Some(program) = supervisor {
                    config = config.with_supervisor_program(program);
                }
                Box::new(SupervisedManager::new(config))
            }
            ManagerKind::Systemd => Box::new(crate::systemd::PipelineSystemd::new(
                manifest, &layout, supervisor,
            )),
        };
    let traffic: Box<dyn Traffic> = match manifest.strategy() {
        StrategyKind::BlueGreen | StrategyKind::Canary => Box::new(NginxTraffic::new(manifest)?),
        StrategyKind::Restart => Box::new(NoTraffic),
    };
    let perf: Box<dyn PerfGate> = match BaselineGate::new(manifest, &layout) {
        Some(gate) if manifest.deploy.perf_gate => Box::new(gate),
        _ => Box::new(NoPerfGate),
    };
    Ok(Environment {
        procs,
        traffic,
        health: Box::new(ProbeHealth::new(manifest)?),
        perf,
        runner: Box::new(SystemRunner),
        clock: Box::new(SystemClock),
    })
}
