//! A private nginx instance: its own prefix, config, pid file, logs and temp paths under one
//! directory, on the addresses the configuration names (loopback ones in tests).
//!
//! Theory of operation: [`NginxInstance::write_config`] renders every file into the prefix
//! (atomically; the admin token map 0600); [`NginxInstance::start`] runs `nginx -t`, starts the
//! master with `daemon on`, waits for the pid file and for the control listener to answer, and
//! records the master's pid **and start time** in `cutover-edge.json`, so that
//! [`NginxInstance::stop`] signals the process it started and never a reused pid.

use std::net::SocketAddr;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::{Duration, Instant};

use secret_refs::Secret;
use serde::{Deserialize, Serialize};

use crate::EdgeError;
use crate::config::ProxyConfig;
use crate::fsutil::{read, write_atomic};
use crate::layout::Layout;
use crate::nginx::{Nginx, process_start_time};
use crate::render::{RenderOptions, render_admin_token_map, render_nginx_conf};
use crate::routes::{Routes, UpstreamGroup};
use crate::switch::NginxSwitch;
use crate::tls::{self_signed_names, write_self_signed};

/// How long [`NginxInstance::start`] waits for nginx to serve by default.
pub const DEFAULT_START_TIMEOUT: Duration = Duration::from_secs(15);

/// What a later `switch` or `down` needs to know about a started instance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstanceState {
    /// The master's pid.
    pub pid: i32,
    /// The master's start time (clock ticks since boot, `/proc/PID/stat` field 22): with the
    /// pid, the master's identity.
    pub start_time: u64,
    /// The control listener.
    pub control: SocketAddr,
    /// Plain-HTTP listeners.
    pub listen_http: Vec<SocketAddr>,
    /// HTTPS listeners.
    pub listen_https: Vec<SocketAddr>,
    /// The health path probed on switch.
    pub health_path: String,
    /// JSON pointer to the release id in the health answer.
    pub release_field: String,
    /// How long a switch waits for confirmation, in milliseconds.
    pub switch_timeout_ms: u64,
}

impl InstanceState {
    /// Reads the state file of the instance under `layout`.
    ///
    /// # Errors
    /// [`EdgeError::Io`] when it is missing or unreadable, [`EdgeError::Instance`] when garbled.
    pub fn load(layout: &Layout) -> Result<Self, EdgeError> {
        let path = layout.state_file();
        let text = read(&path)?;
        serde_json::from_str(&text).map_err(|e| EdgeError::Instance {
            prefix: layout.prefix().to_path_buf(),
            what: format!("has an unreadable {}: {e}", path.display()),
        })
    }

    /// Whether the recorded master is still alive (same pid, same start time).
    pub fn is_alive(&self) -> bool {
        process_start_time(self.pid) == Some(self.start_time)
    }
}

/// One nginx instance under a prefix directory.
#[derive(Debug, Clone)]
pub struct NginxInstance {
    nginx: Nginx,
    layout: Layout,
    config: ProxyConfig,
}

impl NginxInstance {
    /// An instance of `config` under `layout`, run by `nginx`.
    pub fn new(nginx: Nginx, layout: Layout, config: ProxyConfig) -> Self {
        Self {
            nginx,
            layout,
            config,
        }
    }

    /// The instance's files.
    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    /// The configuration it runs.
    pub fn config(&self) -> &ProxyConfig {
        &self.config
    }

    /// The nginx binary.
    pub fn nginx(&self) -> &Nginx {
        &self.nginx
    }

    /// How this instance renders: `daemon on`, and `user` set only when running as root (to
    /// `[proxy] user`, else the owner of the prefix directory, so workers can use its temp paths).
    pub fn render_options(&self) -> RenderOptions {
        RenderOptions {
            daemon: true,
            worker_user: worker_user(&self.config, self.layout.prefix()),
        }
    }

    /// As [`Self::write_config_with_routes`] with no groups besides the live one.
    ///
    /// # Errors
    /// As [`Self::write_config_with_routes`].
    pub fn write_config(
        &self,
        upstream: Option<SocketAddr>,
        admin_token: Option<&Secret>,
    ) -> Result<(), EdgeError> {
        self.write_config_with_routes(upstream, None, admin_token)
    }

    /// Writes every file under the prefix: directories, `nginx.conf`, the upstream include
    /// (`upstream`, else `[proxy] upstream`, else the one already there), the admin token map
    /// (0600) and a self-signed pair when asked for and missing.
    ///
    /// # Errors
    /// [`EdgeError::InvalidConfig`] when the configuration does not validate or no upstream is
    /// known, [`EdgeError::Token`] when a configured admin token was not given or is unusable,
    /// [`EdgeError::Io`] when a file cannot be written.
    ///
    /// `routes` lists every upstream group later switches may route to without a reload (its
    /// default must be `upstream`); the route marker is cleared, so the default serves.
    #[tracing::instrument(skip_all, fields(prefix = %self.layout.prefix().display()))]
    pub fn write_config_with_routes(
        &self,
        upstream: Option<SocketAddr>,
        routes: Option<Routes>,
        admin_token: Option<&Secret>,
    ) -> Result<(), EdgeError> {
        self.config.validate()?;
        for dir in self.layout.directories() {
            std::fs::create_dir_all(&dir)
                .map_err(|e| EdgeError::io("create directory", &dir, e))?;
        }
        if let Some(tls) = self.config.tls.as_ref().filter(|t| t.self_signed) {
            let cert = self.layout.conf_relative(&tls.cert_path());
            let key = self.layout.conf_relative(&tls.key_path());
            if !cert.exists() || !key.exists() {
                write_self_signed(&self_signed_names(&self.config.server_name), &cert, &key)?;
            }
        }
        let conf = render_nginx_conf(&self.config, &self.render_options())?;
        write_atomic(&self.layout.conf_file(), conf.as_bytes(), 0o644)?;
        match upstream.or(self.config.upstream) {
            Some(addr) => {
                let routes = routes
                    .filter(|r| r.default_group().is_some_and(|g| g.upstream == addr))
                    .unwrap_or_else(|| Routes::with_default(UpstreamGroup::new(addr, None), &[]));
                self.write_routes(&routes)?;
            }
            None if self.layout.upstream_file().exists() => {
                if !self.layout.route_file().exists() {
                    let text = std::fs::read_to_string(self.layout.upstream_file())
                        .map_err(|e| EdgeError::io("read", self.layout.upstream_file(), e))?;
                    self.write_routes(&Routes::parse(&text))?;
                }
            }
            None => {
                return Err(EdgeError::InvalidConfig {
                    key: "proxy.upstream".to_owned(),
                    reason: "no upstream given and none configured yet".to_owned(),
                });
            }
        }
        if let Some(reference) = self.config.admin.as_ref().and_then(|a| a.token.as_ref()) {
            let token = admin_token.ok_or_else(|| EdgeError::Token {
                reference: reference.to_string(),
                reason: "not resolved; resolve it before writing the configuration".to_owned(),
            })?;
            let map = render_admin_token_map(&reference.to_string(), token)?;
            write_atomic(
                &self.layout.admin_token_file(),
                map.expose_secret().as_bytes(),
                0o600,
            )?;
        }
        Ok(())
    }

    /// `nginx -t` on the written configuration.
    ///
    /// # Errors
    /// [`EdgeError::Nginx`] with nginx's messages.
    pub async fn check(&self) -> Result<(), EdgeError> {
        self.nginx.test(&self.layout).await.map(drop)
    }

    /// Tests the configuration, starts nginx and returns once the control listener answers.
    ///
    /// # Errors
    /// [`EdgeError::Instance`] when it is already running or does not serve within `timeout`;
    /// [`EdgeError::Nginx`] when the test or the start fails.
    #[tracing::instrument(skip_all, fields(prefix = %self.layout.prefix().display()))]
    pub async fn start(&self, timeout: Duration) -> Result<InstanceState, EdgeError> {
        if let Ok(state) = InstanceState::load(&self.layout)
            && state.is_alive()
        {
            return Err(self.instance_error(format!("is already running (pid {})", state.pid)));
        }
        self.check().await?;
        self.nginx.start_daemon(&self.layout).await?;
        let deadline = Instant::now() + timeout;
        let pid = loop {
            if let Some(pid) = read_pid(&self.layout.pid_file()) {
                break pid;
            }
            if Instant::now() >= deadline {
                return Err(self.instance_error(format!("wrote no pid file within {timeout:?}")));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        let start_time = process_start_time(pid)
            .ok_or_else(|| self.instance_error(format!("master pid {pid} exited at once")))?;
        let state = InstanceState {
            pid,
            start_time,
            control: self.config.control_listen,
            listen_http: self.config.listen_http.clone(),
            listen_https: self
                .config
                .tls
                .as_ref()
                .map(|t| t.listen.clone())
                .unwrap_or_default(),
            health_path: self.config.health_path.clone(),
            release_field: self.config.release_field.clone(),
            switch_timeout_ms: u64::try_from(self.config.switch_timeout.as_millis())
                .unwrap_or(u64::MAX),
        };
        let json =
            serde_json::to_vec_pretty(&state).map_err(|e| self.instance_error(e.to_string()))?;
        write_atomic(&self.layout.state_file(), &json, 0o644)?;
        loop {
            let probe =
                crate::http::get(state.control, &state.health_path, Duration::from_secs(2)).await;
            if probe.is_ok() {
                break;
            }
            if Instant::now() >= deadline || !state.is_alive() {
                let _ = self.stop(Duration::from_secs(5)).await;
                return Err(self.instance_error(format!(
                    "did not answer on {} within {timeout:?}; see {}",
                    state.control,
                    self.layout.error_log().display()
                )));
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        tracing::info!(pid, "nginx serving");
        Ok(state)
    }

    /// Stops the instance: `nginx -s quit` (graceful), then SIGTERM, then SIGKILL to its process
    /// group, each after `timeout`. Returns whether it was running.
    ///
    /// # Errors
    /// [`EdgeError::Instance`] when the master survives everything.
    #[tracing::instrument(skip_all, fields(prefix = %self.layout.prefix().display()))]
    pub async fn stop(&self, timeout: Duration) -> Result<bool, EdgeError> {
        stop_instance(&self.nginx, &self.layout, timeout).await
    }

    /// Writes the upstream include and `route.conf` for `routes`, and clears the marker.
    fn write_routes(&self, routes: &Routes) -> Result<(), EdgeError> {
        write_atomic(
            &self.layout.upstream_file(),
            routes.render_upstreams().as_bytes(),
            0o644,
        )?;
        write_atomic(
            &self.layout.route_file(),
            routes.render_route(&self.layout.route_dir()).as_bytes(),
            0o644,
        )?;
        crate::routes::clear_markers_except(&self.layout, None)
    }

    /// The traffic switch driving this instance.
    pub fn switcher(&self) -> NginxSwitch {
        NginxSwitch::new(
            self.nginx.clone(),
            self.layout.clone(),
            self.config.control_listen,
            self.config.health_path.clone(),
            self.config.release_field.clone(),
            self.config.switch_timeout,
        )
    }

    fn instance_error(&self, what: String) -> EdgeError {
        EdgeError::Instance {
            prefix: self.layout.prefix().to_path_buf(),
            what,
        }
    }
}

/// Stops the instance under `layout` (see [`NginxInstance::stop`]); usable with only the
/// directory, as `cutover-edge down` does.
///
/// # Errors
/// [`EdgeError::Instance`] when the master survives SIGKILL.
pub async fn stop_instance(
    nginx: &Nginx,
    layout: &Layout,
    timeout: Duration,
) -> Result<bool, EdgeError> {
    use nix::sys::signal::{Signal, kill};
    use nix::unistd::Pid;

    let Ok(state) = InstanceState::load(layout) else {
        // Not started by us: only nginx's own mechanism (its pid file) is safe to use.
        return match read_pid(&layout.pid_file()) {
            Some(_) => nginx.signal_stop(layout, false).await.map(|()| true),
            None => Ok(false),
        };
    };
    if !state.is_alive() {
        return Ok(false);
    }
    let gone = |state: &InstanceState| !state.is_alive();
    let _ = nginx.signal_stop(layout, true).await;
    if wait_for(timeout, || gone(&state)).await {
        return Ok(true);
    }
    tracing::warn!(
        pid = state.pid,
        "nginx did not quit gracefully; sending SIGTERM"
    );
    if state.is_alive() {
        let _ = kill(Pid::from_raw(state.pid), Signal::SIGTERM);
    }
    if wait_for(timeout, || gone(&state)).await {
        return Ok(true);
    }
    if state.is_alive() {
        // The daemonised master leads its own process group; its workers are in it.
        let _ = kill(Pid::from_raw(-state.pid), Signal::SIGKILL);
    }
    if wait_for(Duration::from_secs(5), || gone(&state)).await {
        return Ok(true);
    }
    Err(EdgeError::Instance {
        prefix: layout.prefix().to_path_buf(),
        what: format!("master pid {} survived SIGKILL", state.pid),
    })
}

async fn wait_for(timeout: Duration, mut done: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if done() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

fn read_pid(path: &Path) -> Option<i32> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

fn worker_user(config: &ProxyConfig, prefix: &Path) -> Option<String> {
    if let Some(user) = &config.user {
        return Some(user.clone());
    }
    if !nix::unistd::geteuid().is_root() {
        return None;
    }
    // As root nginx would run workers as `nobody`, who cannot reach temp paths under a private
    // (0700) prefix; the prefix's owner can.
    let meta = std::fs::metadata(prefix).ok()?;
    let user = nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(meta.uid())).ok()??;
    let group = nix::unistd::Group::from_gid(nix::unistd::Gid::from_raw(meta.gid())).ok()??;
    Some(format!("{} {}", user.name, group.name))
}
