//! [`Deployment`]: one manifest's deployment as the pipeline left it, and [`LiveState`]: what is
//! live in it now.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};

use edge_proxy::{ProxyConfig, ProxyKind};
use manifest_loader::Manifest;
use process_control::{
    LogLocation, ManagerKind, ProcessIdentity, ProcessManager, ServiceStatus, SupervisedConfig,
    SupervisedManager,
};
use serde::Serialize;

use crate::LiveError;
use crate::layout::ReleaseLayout;
use crate::service::{LayoutConfig, ServiceConfig, Slot, StrategyKind};

/// The layout root a manifest names: `[layout] root` (relative to the manifest's directory),
/// else `/opt/<service.name>`.
pub fn root_for(manifest_dir: &Path, layout: &LayoutConfig, service: &ServiceConfig) -> PathBuf {
    match &layout.root {
        Some(root) if root.is_absolute() => root.clone(),
        Some(root) => manifest_dir.join(root),
        None => PathBuf::from("/opt").join(&service.name),
    }
}

/// The private nginx's directory: `[proxy] dir` (relative to the manifest's directory), else
/// `<root>/proxy`.
pub fn proxy_dir_for(manifest_dir: &Path, proxy: Option<&ProxyConfig>, root: &Path) -> PathBuf {
    match proxy.and_then(|p| p.dir.clone()) {
        Some(dir) if dir.is_absolute() => dir,
        Some(dir) => manifest_dir.join(dir),
        None => root.join("proxy"),
    }
}

/// What a backup of the deployment archives: `paths` (relative to the manifest's directory)
/// when given, else `<root>/shared`.
pub fn backup_sources(
    manifest_dir: &Path,
    layout: &ReleaseLayout,
    paths: &[PathBuf],
) -> Vec<PathBuf> {
    if paths.is_empty() {
        vec![layout.shared_dir()]
    } else {
        paths.iter().map(|p| manifest_dir.join(p)).collect()
    }
}

/// Where backups of the deployment go: `dest` (relative to the manifest's directory) when
/// given, else `<root>/backups`.
pub fn backup_dest(manifest_dir: &Path, layout: &ReleaseLayout, dest: Option<&Path>) -> PathBuf {
    match dest {
        Some(dest) => manifest_dir.join(dest),
        None => layout.backups_dir(),
    }
}

/// The strategy a manifest runs: `[deploy] strategy`, else blue-green behind an nginx proxy
/// and restart without one.
pub fn strategy_for(explicit: Option<StrategyKind>, proxy: Option<&ProxyConfig>) -> StrategyKind {
    explicit.unwrap_or(if proxy.is_some_and(|p| p.kind == ProxyKind::Nginx) {
        StrategyKind::BlueGreen
    } else {
        StrategyKind::Restart
    })
}

/// Where each part of a deployment lives on the host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Paths {
    /// The layout root.
    pub root: PathBuf,
    /// `<root>/releases`.
    pub releases: PathBuf,
    /// `<root>/current`.
    pub current: PathBuf,
    /// `<root>/shared`.
    pub shared: PathBuf,
    /// `<root>/state`.
    pub state: PathBuf,
    /// `<root>/backups`: where the pipeline writes its pre-deploy backups.
    pub backups: PathBuf,
    /// The private nginx's directory (`[proxy] dir`, else `<root>/proxy`).
    pub proxy: PathBuf,
    /// `<root>/logs`.
    pub logs: PathBuf,
}

/// One manifest's deployment: what the manifest says, plus where the pipeline keeps its state.
/// [`Deployment::live`] reads what is live now; call it again to follow a later deploy.
#[derive(Debug, Clone)]
pub struct Deployment {
    manifest: PathBuf,
    dir: PathBuf,
    service: ServiceConfig,
    strategy: StrategyKind,
    proxy: Option<ProxyConfig>,
    manager: ManagerKind,
    layout: ReleaseLayout,
    proxy_dir: PathBuf,
}

impl Deployment {
    /// Reads `[service]`, `[layout]`, `[proxy]`, `[deploy] strategy` and `[process] manager`
    /// from `manifest`; every other table is left alone.
    ///
    /// # Errors
    /// [`LiveError::Manifest`] for a table that does not parse, [`LiveError::Config`] when
    /// there is no `[service]` table (exit 78 both).
    pub fn from_manifest(manifest: &Manifest) -> Result<Self, LiveError> {
        let mut service: ServiceConfig =
            manifest
                .table("service")?
                .ok_or_else(|| LiveError::Config {
                    path: manifest.path().to_path_buf(),
                    key: "service".to_owned(),
                    reason: "the [service] table is required to find the deployment".to_owned(),
                })?;
        let dir = absolute(&manifest.dir());
        service.source = absolute(&manifest.resolve(&service.source));
        let layout: LayoutConfig = manifest.table("layout")?.unwrap_or_default();
        let proxy: Option<ProxyConfig> = manifest.table("proxy")?;
        let explicit: Option<StrategyKind> = manifest.table("deploy.strategy")?;
        let manager: Option<ManagerKind> = manifest.table("process.manager")?;
        Ok(Self::new(
            manifest.path().to_path_buf(),
            dir,
            service,
            &layout,
            proxy,
            explicit,
            manager.unwrap_or_default(),
        ))
    }

    /// The deployment of `manifest` when it describes one (it has a `[layout]` table, as a
    /// manifest the deploy pipeline runs does); `Ok(None)` for a manifest that only
    /// configures one tool.
    ///
    /// # Errors
    /// As [`Self::from_manifest`] when there is a `[layout]` table: its `[service]` must then
    /// be whole.
    pub fn of(manifest: &Manifest) -> Result<Option<Self>, LiveError> {
        if manifest.table::<serde::de::IgnoredAny>("layout")?.is_none() {
            return Ok(None);
        }
        Self::from_manifest(manifest).map(Some)
    }

    /// A deployment from tables already read (the deploy pipeline's manifest builds its own
    /// this way). `manifest_dir` must be absolute; `service.source` is taken as it is.
    pub fn new(
        manifest: PathBuf,
        manifest_dir: PathBuf,
        service: ServiceConfig,
        layout: &LayoutConfig,
        proxy: Option<ProxyConfig>,
        explicit_strategy: Option<StrategyKind>,
        manager: ManagerKind,
    ) -> Self {
        let root = root_for(&manifest_dir, layout, &service);
        let proxy_dir = proxy_dir_for(&manifest_dir, proxy.as_ref(), &root);
        Self {
            manifest,
            dir: manifest_dir,
            strategy: strategy_for(explicit_strategy, proxy.as_ref()),
            proxy,
            manager,
            layout: ReleaseLayout::new(root),
            proxy_dir,
            service,
        }
    }

    /// Loads the manifest at `path` and reads the deployment from it.
    ///
    /// # Errors
    /// As [`Self::from_manifest`], and when the file cannot be read.
    pub fn load(path: &Path) -> Result<Self, LiveError> {
        Self::from_manifest(&Manifest::load(path)?)
    }

    /// The manifest it was read from.
    pub fn manifest_path(&self) -> &Path {
        &self.manifest
    }
    /// The manifest's directory (absolute): relative paths in it resolve against this.
    pub fn manifest_dir(&self) -> &Path {
        &self.dir
    }
    /// `[service]`.
    pub fn service(&self) -> &ServiceConfig {
        &self.service
    }
    /// The strategy in effect.
    pub fn strategy(&self) -> StrategyKind {
        self.strategy
    }
    /// `[proxy]`, when there is an nginx in front.
    pub fn proxy(&self) -> Option<&ProxyConfig> {
        self.proxy.as_ref().filter(|p| p.kind == ProxyKind::Nginx)
    }
    /// The process manager the manifest runs the service under.
    pub fn manager_kind(&self) -> ManagerKind {
        self.manager
    }
    /// The release layout.
    pub fn layout(&self) -> &ReleaseLayout {
        &self.layout
    }
    /// The layout root.
    pub fn root(&self) -> &Path {
        self.layout.root()
    }

    /// Where each part lives.
    pub fn paths(&self) -> Paths {
        Paths {
            root: self.layout.root().to_path_buf(),
            releases: self.layout.releases_dir(),
            current: self.layout.current_link(),
            shared: self.layout.shared_dir(),
            state: self.layout.state_dir(),
            backups: self.layout.backups_dir(),
            proxy: self.proxy_dir.clone(),
            logs: self.layout.logs_dir(),
        }
    }

    /// The private nginx's directory.
    pub fn proxy_dir(&self) -> &Path {
        &self.proxy_dir
    }

    /// What a backup archives by default, as the pipeline's backup phase does: `paths`
    /// (`[backup] paths`) else `<root>/shared`.
    pub fn backup_sources(&self, paths: &[PathBuf]) -> Vec<PathBuf> {
        backup_sources(&self.dir, &self.layout, paths)
    }

    /// Where backups go by default, as the pipeline writes them: `dest` (`[backup] dest`)
    /// else `<root>/backups`.
    pub fn backup_dest(&self, dest: Option<&Path>) -> PathBuf {
        backup_dest(&self.dir, &self.layout, dest)
    }

    /// `<root>/state/alerts.json`: where alert states persist between runs.
    pub fn alerts_state_file(&self) -> PathBuf {
        self.layout.state_dir().join("alerts.json")
    }

    /// The process-manager name of `slot`'s service.
    pub fn service_name(&self, slot: Slot) -> String {
        slot.service_name(&self.service.name)
    }

    /// The base URL of a release in `slot`, as the pipeline probes it.
    pub fn slot_url(&self, slot: Slot) -> String {
        format!("http://{}", self.service.addr_for(slot))
    }

    /// Where users reach the service: the proxy's first HTTPS listener when TLS is on, else
    /// its first plain listener; `None` without a proxy (then the slot address is all there
    /// is). An unspecified listen address (`0.0.0.0`, `[::]`) is reached on loopback.
    pub fn public_url(&self) -> Option<String> {
        let proxy = self.proxy()?;
        if let Some(addr) = proxy.tls.as_ref().and_then(|t| t.listen.first()) {
            return Some(format!("https://{}", reachable(*addr)));
        }
        proxy
            .listen_http
            .first()
            .map(|addr| format!("http://{}", reachable(*addr)))
    }

    /// The certificate to trust for [`Self::public_url`] when the manifest had the proxy make
    /// its own self-signed one (`[proxy.tls] self_signed = true`); `None` otherwise, when the
    /// system's roots apply.
    pub fn proxy_ca(&self) -> Option<PathBuf> {
        let tls = self.proxy()?.tls.as_ref()?;
        if !tls.self_signed || tls.cert.is_some() {
            return None;
        }
        Some(edge_proxy::Layout::new(&self.proxy_dir).conf_relative(&tls.cert_path()))
    }

    /// The process manager that runs this deployment's slots (for status and logs; starting
    /// needs the supervisor program, which the pipeline sets).
    pub fn process_manager(&self) -> Box<dyn ProcessManager + Send + Sync> {
        match self.manager {
            ManagerKind::Supervised => Box::new(SupervisedManager::new(
                SupervisedConfig::for_root(self.layout.root()),
            )),
            ManagerKind::Systemd => Box::new(process_control::SystemdManager::new(
                process_control::SystemdConfig::for_root(self.layout.root(), &self.service.name),
                process_control::SystemCommandRunner::default(),
            )),
        }
    }

    /// What is live now, asking the manifest's process manager about each slot.
    ///
    /// # Errors
    /// [`LiveError::Corrupt`] when the pipeline's state file cannot be read.
    pub fn live(&self) -> Result<LiveState, LiveError> {
        self.live_with(self.process_manager().as_ref())
    }

    /// What is live now, asking `procs` about each slot.
    ///
    /// # Errors
    /// As [`Self::live`].
    pub fn live_with(&self, procs: &dyn ProcessManager) -> Result<LiveState, LiveError> {
        let state = self.layout.load_state()?;
        let release = self
            .layout
            .current()
            .filter(|id| self.layout.is_complete(id));
        let default_slot = self.strategy.slots()[0];
        let slot = release.as_ref().map(|_| {
            state
                .slot
                .filter(|s| self.strategy.slots().contains(s))
                .unwrap_or(default_slot)
        });
        let standby_slot = state
            .standby
            .as_ref()
            .and(slot)
            .filter(|_| self.strategy.uses_slots())
            .map(Slot::other);
        let slots: Vec<SlotView> = self
            .strategy
            .slots()
            .iter()
            .map(|&s| {
                let (role, release) = if Some(s) == slot {
                    (Role::Live, release.clone())
                } else if Some(s) == standby_slot {
                    (Role::Standby, state.standby.clone())
                } else {
                    (Role::Idle, None)
                };
                let name = self.service_name(s);
                SlotView {
                    slot: s,
                    process: SlotProcess::of(procs.status(&name), procs.logs(&name)),
                    name,
                    role,
                    release,
                    addr: self.service.addr_for(s),
                    url: self.slot_url(s),
                }
            })
            .collect();
        let live = slots.iter().find(|s| s.role == Role::Live).cloned();
        let standby = slots.iter().find(|s| s.role == Role::Standby).cloned();
        Ok(LiveState {
            service: self.service.name.clone(),
            strategy: self.strategy,
            url: live
                .as_ref()
                .map(|l| self.public_url().unwrap_or_else(|| l.url.clone())),
            public_url: self.public_url(),
            proxy_ca: self.proxy_ca(),
            release,
            slot,
            slot_addr: live.as_ref().map(|l| l.addr),
            slot_url: live.as_ref().map(|l| l.url.clone()),
            process: live.as_ref().map(|l| l.process.clone()),
            live,
            standby,
            slots,
            paths: self.paths(),
        })
    }
}

/// An unspecified listen address is reached on loopback.
fn reachable(addr: SocketAddr) -> SocketAddr {
    match addr.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => {
            SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), addr.port())
        }
        IpAddr::V6(ip) if ip.is_unspecified() => {
            SocketAddr::new(IpAddr::V6(Ipv6Addr::LOCALHOST), addr.port())
        }
        _ => addr,
    }
}

/// `path` made absolute against the current directory (left as it is when that fails).
fn absolute(path: &Path) -> PathBuf {
    std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf())
}

/// What a slot is doing in the deployment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Role {
    /// It serves `current`: the proxy sends users here.
    Live,
    /// It runs the previous release as a warm standby (blue-green with `keep_standby`).
    Standby,
    /// Nothing the pipeline keeps runs here.
    Idle,
}

impl Role {
    /// The spelling in reports.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Live => "live",
            Self::Standby => "standby",
            Self::Idle => "idle",
        }
    }
}

/// A slot's process as its manager reports it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SlotProcess {
    /// `running`, `stopped`, `failed`, … (`unknown` when the manager could not say).
    pub state: String,
    /// The main process.
    pub pid: Option<u32>,
    /// Its start time in clock ticks since boot (with the pid, its identity: `PID START` is
    /// what `cutover-monitor --pid-file` reads).
    pub start_time: Option<u64>,
    /// Milliseconds since it started.
    pub uptime_ms: Option<u64>,
    /// Restarts since its supervisor started.
    pub restart_count: u32,
    /// Its resident memory.
    pub rss_bytes: Option<u64>,
    /// Its output: a file, or the journal unit.
    pub log: Option<PathBuf>,
    /// Why the state is unknown, when it is.
    pub error: Option<String>,
}

impl SlotProcess {
    fn of(status: Result<ServiceStatus, process_control::ProcError>, logs: LogLocation) -> Self {
        let log = match logs {
            LogLocation::File { path, .. } => Some(path),
            LogLocation::Journal { .. } => None,
        };
        match status {
            Ok(s) => Self {
                state: s.state.as_str().to_owned(),
                start_time: s
                    .pid
                    .and_then(ProcessIdentity::of)
                    .map(|identity| identity.start_time),
                pid: s.pid,
                uptime_ms: s
                    .uptime
                    .map(|u| u64::try_from(u.as_millis()).unwrap_or(u64::MAX)),
                restart_count: s.restart_count,
                rss_bytes: s.rss_bytes,
                log,
                error: None,
            },
            Err(e) => Self {
                state: "unknown".to_owned(),
                pid: None,
                start_time: None,
                uptime_ms: None,
                restart_count: 0,
                rss_bytes: None,
                log,
                error: Some(e.to_string()),
            },
        }
    }

    /// Whether a process runs.
    pub fn is_running(&self) -> bool {
        self.pid.is_some()
    }
}

/// One slot of the deployment.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SlotView {
    /// The slot.
    pub slot: Slot,
    /// Its process-manager service name (`<name>-blue`, …).
    pub name: String,
    /// Live, standby or idle.
    pub role: Role,
    /// The release it runs, when the pipeline put one there.
    pub release: Option<String>,
    /// The address it listens on.
    pub addr: SocketAddr,
    /// Its base URL.
    pub url: String,
    /// Its process.
    pub process: SlotProcess,
}

/// What is live in a deployment, read from `<root>/current`, `<root>/state/deploy-state.json`
/// and the process manager: the same files the pipeline writes, never a second record.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LiveState {
    /// The service name.
    pub service: String,
    /// The strategy in effect.
    pub strategy: StrategyKind,
    /// The live release id; `None` when nothing is deployed.
    pub release: Option<String>,
    /// Its slot.
    pub slot: Option<Slot>,
    /// The live slot's own address.
    pub slot_addr: Option<SocketAddr>,
    /// The live slot's own base URL.
    pub slot_url: Option<String>,
    /// Where users reach the live release: the public URL behind a proxy, else the slot's.
    pub url: Option<String>,
    /// Where users reach the service, deployed or not (the proxy's listener).
    pub public_url: Option<String>,
    /// The self-signed certificate to trust for `url`, when the proxy made its own.
    pub proxy_ca: Option<PathBuf>,
    /// The live slot's process.
    pub process: Option<SlotProcess>,
    /// The live slot.
    pub live: Option<SlotView>,
    /// The warm standby's slot, when one is kept.
    pub standby: Option<SlotView>,
    /// Every slot.
    pub slots: Vec<SlotView>,
    /// Where each part lives.
    pub paths: Paths,
}

impl LiveState {
    /// Whether a release is live.
    pub fn is_deployed(&self) -> bool {
        self.release.is_some()
    }

    /// One sentence for people: what is live, where, and under which pid; or plainly that
    /// nothing is deployed and what to run.
    pub fn describe(&self) -> String {
        let Some(release) = &self.release else {
            return format!(
                "nothing is deployed under {} ({} names no complete release); run `cutover-deploy deploy`",
                self.paths.root.display(),
                self.paths.current.display()
            );
        };
        let mut text = format!(
            "{release} is live in slot {}",
            self.slot.map_or("?", Slot::as_str)
        );
        if let Some(live) = &self.live {
            text.push_str(&format!(" ({}", live.addr));
            match live.process.pid {
                Some(pid) => text.push_str(&format!(", pid {pid}, {})", live.process.state)),
                None => text.push_str(&format!(", {})", live.process.state)),
            }
        }
        if let Some(url) = &self.url {
            text.push_str(&format!(", reached at {url}"));
        }
        if let Some(standby) = &self.standby {
            text.push_str(&format!(
                "; standby {} in slot {} ({})",
                standby.release.as_deref().unwrap_or("?"),
                standby.slot,
                standby.process.state
            ));
        }
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layout::{DeployState, ReleaseRecord};

    fn manifest(dir: &Path, extra: &str) -> Manifest {
        Manifest::from_str(
            dir.join("cutover.toml"),
            &format!(
                r#"
[service]
name = "hub"
start = ["{{release}}/bin/hub", "--listen", "{{host}}:{{port}}"]
port = 7100
standby_port = 7101
[layout]
root = "root"
{extra}
"#
            ),
        )
        .unwrap()
    }

    fn stage(layout: &ReleaseLayout, id: &str) {
        std::fs::create_dir_all(layout.release_dir(id)).unwrap();
        layout
            .write_record(&ReleaseRecord {
                id: id.to_owned(),
                service: "hub".into(),
                commit: None,
                created: "t".into(),
                start: vec!["x".into()],
                env: Default::default(),
                set_env: Default::default(),
                secrets: Default::default(),
                artifact: None,
            })
            .unwrap();
    }

    const PROXY: &str = r#"
[proxy]
kind = "nginx"
listen_http = ["0.0.0.0:8080"]
control_listen = "127.0.0.1:8081"
tls = { listen = ["127.0.0.1:8443"], self_signed = true }
"#;

    #[test]
    fn the_live_slot_standby_and_urls_come_from_what_the_pipeline_wrote() {
        let tmp = tempfile::tempdir().unwrap();
        let d = Deployment::from_manifest(&manifest(tmp.path(), PROXY)).unwrap();
        assert_eq!(d.strategy(), StrategyKind::BlueGreen);
        assert_eq!(d.public_url().as_deref(), Some("https://127.0.0.1:8443"));
        assert_eq!(
            d.proxy_ca().unwrap(),
            tmp.path().join("root/proxy/conf/tls/cert.pem")
        );
        assert_eq!(
            d.alerts_state_file(),
            tmp.path().join("root/state/alerts.json")
        );

        let layout = d.layout();
        layout.ensure_dirs().unwrap();
        let live = d.live().unwrap();
        assert!(!live.is_deployed());
        assert_eq!((live.url.as_deref(), live.slot), (None, None));

        stage(layout, "r1");
        stage(layout, "r2");
        layout.set_current("r2").unwrap();
        layout
            .save_state(&DeployState {
                slot: Some(Slot::Green),
                good: vec!["r1".into(), "r2".into()],
                failed: vec![],
                standby: Some("r1".into()),
                ..DeployState::default()
            })
            .unwrap();
        let live = d.live().unwrap();
        assert_eq!(live.release.as_deref(), Some("r2"));
        assert_eq!(live.slot, Some(Slot::Green));
        assert_eq!(live.slot_addr, Some("127.0.0.1:7101".parse().unwrap()));
        assert_eq!(live.slot_url.as_deref(), Some("http://127.0.0.1:7101"));
        assert_eq!(live.url.as_deref(), Some("https://127.0.0.1:8443"));
        let standby = live.standby.as_ref().unwrap();
        assert_eq!(
            (standby.slot, standby.release.as_deref()),
            (Slot::Blue, Some("r1"))
        );
        assert_eq!(standby.name, "hub-blue");
        assert_eq!(live.live.as_ref().unwrap().name, "hub-green");
        // Nothing runs: the supervisor's word is "stopped", with no pid.
        assert_eq!(live.process.as_ref().unwrap().pid, None);
        assert!(
            live.describe()
                .starts_with("r2 is live in slot green (127.0.0.1:7101")
        );
        assert!(live.describe().contains("standby r1 in slot blue"));

        // An incomplete current is not live.
        std::fs::remove_file(layout.release_dir("r2").join(crate::RELEASE_RECORD)).unwrap();
        assert!(!d.live().unwrap().is_deployed());
    }

    #[test]
    fn without_a_proxy_the_slot_is_where_users_go() {
        let tmp = tempfile::tempdir().unwrap();
        let d = Deployment::from_manifest(&manifest(tmp.path(), "")).unwrap();
        assert_eq!(d.strategy(), StrategyKind::Restart);
        assert_eq!(d.public_url(), None);
        assert_eq!(d.proxy_ca(), None);
        d.layout().ensure_dirs().unwrap();
        stage(d.layout(), "r1");
        d.layout().set_current("r1").unwrap();
        let live = d.live().unwrap();
        assert_eq!(live.slot, Some(Slot::Single));
        assert_eq!(live.url.as_deref(), Some("http://127.0.0.1:7100"));
        assert_eq!(live.slots.len(), 1);
        assert_eq!(live.slots[0].name, "hub");
    }

    #[test]
    fn plain_http_proxy_and_a_missing_service_table() {
        let tmp = tempfile::tempdir().unwrap();
        let d = Deployment::from_manifest(&manifest(
            tmp.path(),
            "[proxy]\nkind = \"nginx\"\nlisten_http = [\"[::]:8080\"]\ncontrol_listen = \"127.0.0.1:8081\"\ndir = \"/elsewhere/nginx\"\n",
        ))
        .unwrap();
        assert_eq!(d.public_url().as_deref(), Some("http://[::1]:8080"));
        assert_eq!(d.paths().proxy, Path::new("/elsewhere/nginx"));
        let m = Manifest::from_str(tmp.path().join("cutover.toml"), "[layout]\nroot = \"x\"\n")
            .unwrap();
        let err = Deployment::from_manifest(&m).unwrap_err();
        assert_eq!(err.exit_code(), 78);
        assert!(
            err.to_string().contains("[service] table is required"),
            "{err}"
        );
    }

    #[test]
    fn an_unknown_placeholder_fails_the_load_with_line_and_column() {
        let tmp = tempfile::tempdir().unwrap();
        let m = Manifest::from_str(
            tmp.path().join("cutover.toml"),
            "[service]\nname = \"hub\"\nport = 1\nstart = [\"bin\", \"{relase}\"]\n",
        )
        .unwrap();
        let err = Deployment::from_manifest(&m).unwrap_err();
        assert_eq!(err.exit_code(), 78);
        let text = err.to_string();
        assert!(text.contains("cutover.toml:4:9"), "{text}");
        assert!(text.contains("unknown placeholder `{relase}`"), "{text}");
    }
}
