//! The manifest: `cutover.toml` read whole, each table typed by the crate that owns it.
//!
//! This module owns `[service]`, `[layout]`, `[hooks]` and `[deploy]`; it composes
//! `[process]` (process-control), `[proxy]` (edge-proxy), `[preflight]` (preflight-checks),
//! `[backup]` (backup-archive), `[[probe]]` (health-probe) and `[perf]` (perf-baseline), all
//! read through manifest-loader so that every unknown key is an error with file, line, column
//! and key (exit 78).

use std::path::{Path, PathBuf};
use std::time::Duration;

use backup_archive::BackupConfig;
use edge_proxy::{ProxyConfig, ProxyKind};
use health_probe::ProbeConfig;
use manifest_loader::Manifest;
use perf_baseline::PerfConfig;
use preflight_checks::PreflightConfig;
use process_control::ProcessConfig;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::DeployError;
use crate::phase::Phase;
pub use live_deployment::{ArtifactConfig, LayoutConfig, ServiceConfig, StrategyKind};

/// `[deploy]`: strategy, gates and timeouts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DeployConfig {
    /// `restart`, `blue-green` or `canary` (default: `blue-green` when `[proxy] kind = "nginx"`, else
    /// `restart`).
    #[serde(default)]
    pub strategy: Option<StrategyKind>,
    /// Run the `[preflight]` checks first (default true; without a `[preflight]` table nothing
    /// runs).
    #[serde(default = "yes")]
    pub preflight: bool,
    /// Back up before changing anything (default true): `[backup]` paths, else `<root>/shared`.
    #[serde(default = "yes")]
    pub backup: bool,
    /// Run the `[perf]` load and compare it with the saved baseline before committing (default
    /// false).
    #[serde(default)]
    pub perf_gate: bool,
    /// On rollback, also restore `<root>/shared` from the pre-deploy backup (default false).
    #[serde(default)]
    pub restore_shared_on_rollback: bool,
    /// The `[[probe]]` suite that says a started release is ready (default `ready`; when absent,
    /// a GET of `[service] health_path` expecting 2xx).
    #[serde(default = "default_ready_suite")]
    pub ready_suite: String,
    /// The `[[probe]]` suite run by the validate phase (default `default`; when absent, the
    /// ready check).
    #[serde(default = "default_validate_suite")]
    pub validate_suite: String,
    /// Probe relative URLs at the release's own port (true) — the only mode today.
    #[serde(default = "yes")]
    pub verify_release: bool,
    /// Limit on the build command (default 30m).
    #[serde(default = "default_build_timeout", with = "humantime_serde")]
    #[schemars(with = "String")]
    pub build_timeout: Duration,
    /// Limit on a started release becoming ready (default 30s).
    #[serde(default = "default_ready_timeout", with = "humantime_serde")]
    #[schemars(with = "String")]
    pub ready_timeout: Duration,
    /// Limit on the validation suite passing (retried until then; default 30s).
    #[serde(default = "default_ready_timeout", with = "humantime_serde")]
    #[schemars(with = "String")]
    pub validate_timeout: Duration,
    /// Blue-green: time between the confirmed switch and stopping the old release (default
    /// 500ms), on top of the old release's own graceful stop.
    #[serde(default = "default_drain", with = "humantime_serde")]
    #[schemars(with = "String")]
    pub drain: Duration,
    /// Blue-green: after a deploy, keep the previous release running in the idle slot as a
    /// warm standby (default true) until the next deploy stops it to start the new release
    /// there. A rollback to it then only probes it, switches nginx and validates: no start,
    /// no readiness wait, no drain. The cost is a second copy of the service in memory (its
    /// resident set, as `status` shows) and its background work. Ignored by `restart`.
    #[serde(default = "yes")]
    pub keep_standby: bool,
    /// The stability window (Nomad's `min_healthy_time`): after the switch, validation and
    /// the perf gate, the ready suite runs again every 300 ms for this long, and the
    /// release's process must not restart; otherwise the deploy rolls back (exit 2, the
    /// reason names the window). `"0s"` turns it off. Default `"5s"`. Deploys only: a
    /// rollback goes back to a release that was stable before.
    #[serde(default = "default_stable_for", with = "humantime_serde")]
    #[schemars(with = "String")]
    pub stable_for: Duration,
    /// `[deploy.canary]`: the canary strategy's steps, stickiness and judge (every key has a
    /// default; read only by `strategy = "canary"`).
    #[serde(default)]
    pub canary: crate::CanaryConfig,
}

impl Default for DeployConfig {
    fn default() -> Self {
        Self {
            strategy: None,
            preflight: true,
            backup: true,
            perf_gate: false,
            restore_shared_on_rollback: false,
            ready_suite: default_ready_suite(),
            validate_suite: default_validate_suite(),
            verify_release: true,
            build_timeout: default_build_timeout(),
            ready_timeout: default_ready_timeout(),
            validate_timeout: default_ready_timeout(),
            drain: default_drain(),
            keep_standby: true,
            stable_for: default_stable_for(),
            canary: crate::CanaryConfig::default(),
        }
    }
}

/// `[hooks]`: commands run before and after each phase and on failure.
///
/// Each hook is an argv run in the manifest's directory with `CUTOVER_PHASE`,
/// `CUTOVER_HOOK` (`before`, `after`, `failure`), `CUTOVER_RELEASE`,
/// `CUTOVER_PREVIOUS_RELEASE`, `CUTOVER_RELEASE_DIR`, `CUTOVER_ROOT`, `CUTOVER_SERVICE`,
/// `CUTOVER_STRATEGY` and (on failure) `CUTOVER_ERROR` in its environment. A failing
/// `before_*`/`after_*` hook fails its phase; a failing `on_failure` hook is only logged.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[allow(missing_docs)]
pub struct HooksConfig {
    /// Limit on each hook (default 60s).
    #[serde(default, with = "humantime_serde")]
    #[schemars(with = "Option<String>")]
    pub timeout: Option<Duration>,
    #[serde(default)]
    pub before_preflight: Vec<String>,
    #[serde(default)]
    pub after_preflight: Vec<String>,
    #[serde(default)]
    pub before_backup: Vec<String>,
    #[serde(default)]
    pub after_backup: Vec<String>,
    #[serde(default)]
    pub before_build: Vec<String>,
    #[serde(default)]
    pub after_build: Vec<String>,
    #[serde(default)]
    pub before_switch: Vec<String>,
    #[serde(default)]
    pub after_switch: Vec<String>,
    #[serde(default)]
    pub before_validate: Vec<String>,
    #[serde(default)]
    pub after_validate: Vec<String>,
    #[serde(default)]
    pub before_perf: Vec<String>,
    #[serde(default)]
    pub after_perf: Vec<String>,
    #[serde(default)]
    pub before_stable: Vec<String>,
    #[serde(default)]
    pub after_stable: Vec<String>,
    #[serde(default)]
    pub before_commit: Vec<String>,
    #[serde(default)]
    pub after_commit: Vec<String>,
    /// Run once when a deploy fails, before the rollback.
    #[serde(default)]
    pub on_failure: Vec<String>,
}

/// The default limit on one hook.
pub const DEFAULT_HOOK_TIMEOUT: Duration = Duration::from_secs(60);

impl HooksConfig {
    /// The hook run before (`before = true`) or after `phase`, when configured.
    pub fn for_phase(&self, phase: Phase, before: bool) -> Option<&[String]> {
        let argv = match (phase, before) {
            (Phase::Preflight, true) => &self.before_preflight,
            (Phase::Preflight, false) => &self.after_preflight,
            (Phase::Backup, true) => &self.before_backup,
            (Phase::Backup, false) => &self.after_backup,
            (Phase::Build, true) => &self.before_build,
            (Phase::Build, false) => &self.after_build,
            (Phase::Switch, true) => &self.before_switch,
            (Phase::Switch, false) => &self.after_switch,
            (Phase::Validate, true) => &self.before_validate,
            (Phase::Validate, false) => &self.after_validate,
            (Phase::Perf, true) => &self.before_perf,
            (Phase::Perf, false) => &self.after_perf,
            (Phase::Stable, true) => &self.before_stable,
            (Phase::Stable, false) => &self.after_stable,
            (Phase::Commit, true) => &self.before_commit,
            (Phase::Commit, false) => &self.after_commit,
        };
        (!argv.is_empty()).then_some(argv.as_slice())
    }

    /// The limit on each hook.
    pub fn timeout(&self) -> Duration {
        self.timeout.unwrap_or(DEFAULT_HOOK_TIMEOUT)
    }
}

/// The whole manifest as the deploy pipeline reads it.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct DeployManifest {
    /// The manifest file.
    pub path: PathBuf,
    /// Its directory: relative paths resolve against it.
    pub dir: PathBuf,
    /// `[service]`.
    pub service: ServiceConfig,
    /// `[layout]`.
    pub layout: LayoutConfig,
    /// `[process]`.
    pub process: ProcessConfig,
    /// `[proxy]`.
    pub proxy: Option<ProxyConfig>,
    /// `[preflight]`.
    pub preflight: Option<PreflightConfig>,
    /// `[backup]`.
    pub backup: Option<BackupConfig>,
    /// `[[probe]]`.
    pub probes: Vec<ProbeConfig>,
    /// `[perf]`.
    pub perf: Option<PerfConfig>,
    /// `[hooks]`.
    pub hooks: HooksConfig,
    /// `[deploy]`.
    pub deploy: DeployConfig,
}

impl DeployManifest {
    /// Reads every table the pipeline needs from `manifest`.
    ///
    /// # Errors
    /// [`DeployError::Manifest`] (file, line, column, key) for shapes and unknown keys,
    /// [`DeployError::Config`] for values that cannot work together.
    #[tracing::instrument(skip_all, fields(path = %manifest.path().display()))]
    pub fn from_manifest(manifest: &Manifest) -> Result<Self, DeployError> {
        let service: ServiceConfig =
            manifest
                .table("service")?
                .ok_or_else(|| DeployError::Config {
                    path: manifest.path().to_path_buf(),
                    key: "service".to_owned(),
                    reason: "the [service] table is required".to_owned(),
                })?;
        let dir = manifest.dir();
        let mut this = Self {
            path: manifest.path().to_path_buf(),
            dir: absolute(&dir),
            layout: manifest.table("layout")?.unwrap_or_default(),
            process: manifest.table("process")?.unwrap_or_default(),
            proxy: manifest.table("proxy")?,
            preflight: manifest.table("preflight")?,
            backup: manifest.table("backup")?,
            probes: manifest.table("probe")?.unwrap_or_default(),
            perf: manifest.table("perf")?,
            hooks: manifest.table("hooks")?.unwrap_or_default(),
            deploy: manifest.table("deploy")?.unwrap_or_default(),
            service,
        };
        this.service.source = absolute(&manifest.resolve(&this.service.source));
        this.validate(manifest)?;
        Ok(this)
    }

    /// Loads the manifest at `path`.
    ///
    /// # Errors
    /// As [`Self::from_manifest`].
    pub fn load(path: &Path) -> Result<Self, DeployError> {
        Self::from_manifest(&Manifest::load(path)?)
    }

    /// Parses manifest text (tests, `plan` of a string).
    ///
    /// # Errors
    /// As [`Self::from_manifest`].
    pub fn from_str(path: impl Into<PathBuf>, text: &str) -> Result<Self, DeployError> {
        Self::from_manifest(&Manifest::from_str(path, text)?)
    }

    /// Every value checked before anything is touched: exit 78 naming file, line, column
    /// and key, so that no deploy runs pre-flight, backup and build to fail at the switch.
    fn validate(&self, manifest: &Manifest) -> Result<(), DeployError> {
        let bad = |key: &str, reason: String| DeployError::Manifest(manifest.invalid(key, reason));
        let name = &self.service.name;
        if name.is_empty()
            || name.starts_with('.')
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        {
            return Err(bad(
                "service.name",
                format!("{name:?}: use letters, digits, '-', '_' and '.' only"),
            ));
        }
        match self.service.start.first() {
            None => return Err(bad("service.start", "the start argv is empty".to_owned())),
            Some(p) if p.trim().is_empty() => {
                return Err(bad(
                    "service.start",
                    "the program (argv[0]) is empty".to_owned(),
                ));
            }
            Some(_) => {}
        }
        if self.service.port == 0 {
            return Err(bad(
                "service.port",
                "0 is not a port the service can be reached on: give the port it listens on"
                    .to_owned(),
            ));
        }
        if let Some(standby) = self.service.standby_port {
            if standby == 0 {
                return Err(bad("service.standby_port", "0 is not a port".to_owned()));
            }
            if standby == self.service.port {
                return Err(bad(
                    "service.standby_port",
                    format!(
                        "{standby} must differ from service.port: the two slots run side by side"
                    ),
                ));
            }
        }
        let env_name = |k: &str| {
            !k.is_empty()
                && !k.starts_with(|c: char| c.is_ascii_digit())
                && k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        };
        for (table, names) in [
            ("service.env", self.service.env.keys().collect::<Vec<_>>()),
            ("service.secrets", self.service.secrets.keys().collect()),
        ] {
            if let Some(k) = names.into_iter().find(|k| !env_name(k)) {
                return Err(bad(
                    &format!("{table}.{k}"),
                    format!(
                        "{k:?} is not a variable name: letters, digits and '_', not starting with a digit"
                    ),
                ));
            }
        }
        if let Some(k) = self
            .service
            .env
            .keys()
            .find(|k| self.service.secrets.contains_key(*k))
        {
            return Err(bad(
                &format!("service.env.{k}"),
                format!(
                    "{k} is also in [service] secrets: a variable is plain or secret, not both"
                ),
            ));
        }
        let root = self.root();
        const SYSTEM_DIRS: &[&str] = &[
            "/", "/bin", "/boot", "/dev", "/etc", "/home", "/lib", "/lib64", "/opt", "/proc",
            "/root", "/run", "/sbin", "/srv", "/sys", "/tmp", "/usr", "/var", "/var/lib",
        ];
        let normal: PathBuf = root.components().collect();
        if SYSTEM_DIRS.iter().any(|d| normal == Path::new(d)) {
            return Err(bad(
                "layout.root",
                format!(
                    "{} is a system directory: releases/, current, backups/ and state/ would be written into it; use a directory of the service's own, such as /opt/{name}",
                    root.display()
                ),
            ));
        }
        if self.layout.keep_releases < 2 {
            return Err(bad(
                "layout.keep_releases",
                format!(
                    "{}: keep at least 2 releases (the current and the last good one)",
                    self.layout.keep_releases
                ),
            ));
        }
        for entry in &self.layout.shared {
            let p = Path::new(entry.trim_end_matches('/'));
            if entry.trim_end_matches('/').is_empty()
                || p.is_absolute()
                || p.components()
                    .any(|c| !matches!(c, std::path::Component::Normal(_)))
            {
                return Err(bad(
                    "layout.shared",
                    format!("{entry:?} must be a relative path inside shared/, without `..`"),
                ));
            }
        }
        for (key, value) in [
            ("deploy.ready_timeout", self.deploy.ready_timeout),
            ("deploy.validate_timeout", self.deploy.validate_timeout),
            ("deploy.build_timeout", self.deploy.build_timeout),
            (
                "process.stop_timeout",
                self.process.stop_timeout.unwrap_or(Duration::from_secs(1)),
            ),
            (
                "process.start_timeout",
                self.process.start_timeout.unwrap_or(Duration::from_secs(1)),
            ),
        ] {
            if value.is_zero() {
                return Err(bad(
                    key,
                    "a zero timeout can never be met: give a duration such as \"30s\"".to_owned(),
                ));
            }
        }
        if let Some(proxy) = &self.proxy
            && proxy.kind == ProxyKind::Nginx
            && let Err(e) = proxy.validate()
        {
            let (key, reason) = match &e {
                edge_proxy::EdgeError::InvalidConfig { key, reason } => {
                    (key.clone(), reason.clone())
                }
                other => ("proxy".to_owned(), other.to_string()),
            };
            return Err(bad(&key, reason));
        }
        if self.strategy().uses_slots() {
            let name = self.strategy().as_str();
            if self.service.standby_port.is_none() {
                return Err(bad(
                    "service.standby_port",
                    format!("{name} needs a second port for the idle slot"),
                ));
            }
            if !self
                .proxy
                .as_ref()
                .is_some_and(|p| p.kind == ProxyKind::Nginx)
            {
                return Err(bad(
                    "deploy.strategy",
                    format!("{name} switches an nginx upstream: set [proxy] kind = \"nginx\""),
                ));
            }
        }
        if self.strategy() == StrategyKind::Canary
            && let Err((key, reason)) = self.deploy.canary.validate()
        {
            return Err(bad(&key, reason));
        }
        if self.deploy.perf_gate && self.perf.is_none() {
            return Err(bad(
                "deploy.perf_gate",
                "the perf gate needs a [perf] table".to_owned(),
            ));
        }
        Ok(())
    }

    /// The strategy in effect.
    pub fn strategy(&self) -> StrategyKind {
        live_deployment::strategy_for(self.deploy.strategy, self.proxy.as_ref())
    }

    /// The layout root (absolute).
    pub fn root(&self) -> PathBuf {
        live_deployment::root_for(&self.dir, &self.layout, &self.service)
    }

    /// The deployment this manifest describes, as every other binary reads it.
    pub fn deployment(&self) -> live_deployment::Deployment {
        live_deployment::Deployment::new(
            self.path.clone(),
            self.dir.clone(),
            self.service.clone(),
            &self.layout,
            self.proxy.clone(),
            self.deploy.strategy,
            self.process.manager.unwrap_or_default(),
        )
    }

    /// The nginx prefix: `[proxy] dir`, else `<root>/proxy`.
    pub fn proxy_dir(&self) -> PathBuf {
        live_deployment::proxy_dir_for(&self.dir, self.proxy.as_ref(), &self.root())
    }
}

/// `path` made absolute against the current directory (left as it is when that fails).
fn absolute(path: &Path) -> PathBuf {
    std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf())
}

fn yes() -> bool {
    true
}
fn default_ready_suite() -> String {
    "ready".to_owned()
}
fn default_validate_suite() -> String {
    "default".to_owned()
}
fn default_build_timeout() -> Duration {
    Duration::from_secs(30 * 60)
}
fn default_ready_timeout() -> Duration {
    Duration::from_secs(30)
}
fn default_stable_for() -> Duration {
    Duration::from_secs(5)
}
fn default_drain() -> Duration {
    Duration::from_millis(500)
}

/// The whole manifest's shape for the JSON Schema: this crate's tables in detail, the tables
/// other crates own as objects documented in docs/manifest.md.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
struct ManifestSchema {
    service: ServiceConfig,
    #[serde(default)]
    layout: Option<LayoutConfig>,
    /// `[process]` (process-control's ProcessConfig): manager, restart, backoff, stop_timeout, …
    #[serde(default)]
    process: Option<process_control::ProcessConfig>,
    /// `[proxy]` (edge-proxy's ProxyConfig): kind, listen_http, control_listen, tls, …
    #[serde(default)]
    proxy: Option<edge_proxy::ProxyConfig>,
    /// `[preflight]` (preflight-checks' PreflightConfig): checks and ignore list.
    #[serde(default)]
    preflight: Option<preflight_checks::PreflightConfig>,
    /// `[backup]` (backup-archive's BackupConfig): paths, include/exclude, dest, retention.
    #[serde(default)]
    backup: Option<backup_archive::BackupConfig>,
    /// `[[probe]]` (health-probe's ProbeConfig): the validation suites.
    #[serde(default)]
    probe: Option<Vec<health_probe::ProbeConfig>>,
    /// `[[alert]]` (alert-rules), read by cutover-alerts and cutover-monitor.
    #[serde(default)]
    alert: Option<Vec<serde_json::Map<String, serde_json::Value>>>,
    /// `[perf]` (perf-baseline's PerfConfig): endpoints, load, tolerances, baseline.
    #[serde(default)]
    perf: Option<perf_baseline::PerfConfig>,
    #[serde(default)]
    hooks: Option<HooksConfig>,
    #[serde(default)]
    deploy: Option<DeployConfig>,
    /// `[monitor]` (cutover-monitor).
    #[serde(default)]
    monitor: Option<serde_json::Map<String, serde_json::Value>>,
    /// `[rollback]` (reserved).
    #[serde(default)]
    rollback: Option<serde_json::Map<String, serde_json::Value>>,
}

/// The JSON Schema of `cutover.toml` (draft 2020-12), pretty-printed.
pub fn json_schema() -> String {
    let schema = schemars::schema_for!(ManifestSchema);
    serde_json::to_string_pretty(&schema).unwrap_or_default()
}
