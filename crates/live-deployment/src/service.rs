//! The tables that say what is deployed and where: `[service]` and `[layout]`, the strategy
//! and the slots a release runs in. The deploy pipeline composes them into its manifest; every
//! other binary reads them through [`Deployment`](crate::Deployment).

use std::collections::BTreeMap;
use std::path::PathBuf;

use schemars::JsonSchema;
use secret_refs::SecretRef;
use serde::{Deserialize, Serialize};

/// `[service]`: what is deployed and how it runs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ServiceConfig {
    /// The service name: letters, digits, `-`, `_`, `.`; it names the process-manager services.
    pub name: String,
    /// The directory a release is built from (relative to the manifest; default `.`).
    #[serde(default = "default_source")]
    pub source: PathBuf,
    /// The build command as argv, run in `source` (never a shell string; write `["sh", "-c",
    /// "…"]` to ask for a shell). Placeholders: `{release}` (the release directory),
    /// `{release_id}`. Empty: nothing is built.
    #[serde(default, deserialize_with = "process_control::template::checked_argv")]
    pub build: Vec<String>,
    /// Directories kept between builds (`["node_modules/", "target/"]`), relative to the
    /// source: moved into the build directory before the build and back out after it, so that
    /// a second build is incremental. Kept under `<root>/build-cache/`.
    #[serde(default, deserialize_with = "relative_dirs")]
    pub build_cache: Vec<String>,
    /// The build's product, copied from the build directory into the release and checked.
    /// Without one, the whole build directory (build caches included) becomes the release.
    #[serde(default)]
    pub artifact: Option<ArtifactConfig>,
    /// The start command as argv. Placeholders: `{release}` (absolute release directory),
    /// `{release_id}`, `{port}`, `{host}`, `{root}`, `{shared}`.
    #[serde(deserialize_with = "process_control::template::checked_argv")]
    pub start: Vec<String>,
    /// The loopback port the service listens on (the `blue` slot under blue-green).
    pub port: u16,
    /// The second port, used by the `green` slot under blue-green (required there).
    #[serde(default)]
    pub standby_port: Option<u16>,
    /// The address the service listens on and is probed at (default `127.0.0.1`).
    #[serde(default = "default_host")]
    pub host: std::net::IpAddr,
    /// Plain environment variables for the service (not secret). Values take the same
    /// placeholders as `start`.
    #[serde(default, deserialize_with = "process_control::template::checked_map")]
    pub env: BTreeMap<String, String>,
    /// Secrets by variable name: references (`env:`, `file:`, `op://`, `aws-sm://`, `exec:`),
    /// resolved when the service starts and passed by environment, never shown.
    #[serde(default)]
    #[schemars(with = "BTreeMap<String, String>")]
    pub secrets: BTreeMap<String, SecretRef>,
    /// The readiness path probed when no `ready` suite is configured (default `/api/health`).
    #[serde(default = "default_health_path")]
    pub health_path: String,
    /// Where the service may listen when a proxy is in front of it: `loopback` (default; a
    /// release that listens beyond loopback, around nginx, TLS and the rate limits, fails the
    /// switch) or `any` (that is intended).
    #[serde(default)]
    pub exposure: Exposure,
}

/// `[service] exposure`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Exposure {
    /// Loopback only: the proxy is the one way in.
    #[default]
    Loopback,
    /// Any address: reaching the service around the proxy is intended.
    Any,
}

/// `[service].artifact`: what the build must produce.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ArtifactConfig {
    /// Path relative to `source`; copied to the same relative path inside the release.
    pub path: PathBuf,
    /// Smallest acceptable size in bytes, an integer or a size such as `"100KB"` (default
    /// none).
    #[serde(default, deserialize_with = "host_util::size::serde::option_bytes")]
    #[schemars(schema_with = "host_util::size::serde::option_schema")]
    pub min_bytes: Option<u64>,
    /// Largest acceptable size in bytes, as `min_bytes` (default none).
    #[serde(default, deserialize_with = "host_util::size::serde::option_bytes")]
    #[schemars(schema_with = "host_util::size::serde::option_schema")]
    pub max_bytes: Option<u64>,
    /// The artifact must be an executable file (default false).
    #[serde(default)]
    pub executable: bool,
}

/// `[layout]`: where releases live on the host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LayoutConfig {
    /// The root directory (relative to the manifest; default `/opt/<service.name>`).
    #[serde(default)]
    pub root: Option<PathBuf>,
    /// Releases kept on disk, the current and the last good one always among them (default 5).
    #[serde(default = "default_keep")]
    pub keep_releases: usize,
    /// Files and directories (trailing `/`) under `<root>/shared/` linked into every release.
    #[serde(default)]
    pub shared: Vec<String>,
}

impl Default for LayoutConfig {
    fn default() -> Self {
        Self {
            root: None,
            keep_releases: default_keep(),
            shared: Vec::new(),
        }
    }
}

/// How a new release replaces the old one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum StrategyKind {
    /// Stop the old release, start the new one in place (short downtime; no proxy needed).
    Restart,
    /// Start the new release on the idle port, switch the nginx upstream, drain and stop the old.
    BlueGreen,
    /// Start the new release on the idle port, split traffic by weight across both slots in
    /// steps, and promote or roll back on a sequential test of the edge signals (then commit
    /// like blue-green).
    Canary,
}

impl StrategyKind {
    /// The manifest spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Restart => "restart",
            Self::BlueGreen => "blue-green",
            Self::Canary => "canary",
        }
    }
}

/// Where a release runs: the one service of the restart strategy, or one of the two
/// blue-green services.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Slot {
    /// The restart strategy's single service, named after the service, on `port`.
    Single,
    /// Blue-green: `<name>-blue` on `port`.
    Blue,
    /// Blue-green: `<name>-green` on `standby_port`.
    Green,
}

impl Slot {
    /// The other blue-green slot (`Single` stays `Single`).
    pub fn other(self) -> Slot {
        match self {
            Slot::Single => Slot::Single,
            Slot::Blue => Slot::Green,
            Slot::Green => Slot::Blue,
        }
    }

    /// The process-manager service name for `service`.
    pub fn service_name(self, service: &str) -> String {
        match self {
            Slot::Single => service.to_owned(),
            Slot::Blue => format!("{service}-blue"),
            Slot::Green => format!("{service}-green"),
        }
    }

    /// The name used in reports.
    pub fn as_str(self) -> &'static str {
        match self {
            Slot::Single => "single",
            Slot::Blue => "blue",
            Slot::Green => "green",
        }
    }
}

impl std::fmt::Display for Slot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `build_cache` entries: relative paths inside the source, without `..`, each named once.
fn relative_dirs<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    use serde::de::Error;
    let entries = Vec::<String>::deserialize(d)?;
    let mut seen = std::collections::BTreeSet::new();
    for entry in &entries {
        let path = std::path::Path::new(entry.trim_end_matches('/'));
        let plain = path
            .components()
            .all(|c| matches!(c, std::path::Component::Normal(_)));
        if entry.trim_end_matches('/').is_empty() || !plain {
            return Err(D::Error::custom(format!(
                "build_cache entry {entry:?} must be a directory inside the source, such as \"target/\" (no leading /, no ..)"
            )));
        }
        if !seen.insert(path.to_path_buf()) {
            return Err(D::Error::custom(format!(
                "build_cache entry {entry:?} is listed twice"
            )));
        }
    }
    Ok(entries)
}

fn default_source() -> PathBuf {
    PathBuf::from(".")
}
fn default_host() -> std::net::IpAddr {
    std::net::IpAddr::from([127, 0, 0, 1])
}
fn default_health_path() -> String {
    "/api/health".to_owned()
}
fn default_keep() -> usize {
    5
}

impl ServiceConfig {
    /// The port of `slot`: `standby_port` for green, `port` otherwise.
    pub fn port_for(&self, slot: Slot) -> u16 {
        match slot {
            Slot::Green => self.standby_port.unwrap_or(self.port),
            Slot::Single | Slot::Blue => self.port,
        }
    }

    /// The address a release in `slot` listens on and is probed at.
    pub fn addr_for(&self, slot: Slot) -> std::net::SocketAddr {
        std::net::SocketAddr::new(self.host, self.port_for(slot))
    }
}

impl StrategyKind {
    /// Whether the strategy runs two slots behind nginx (blue-green and canary).
    pub fn uses_slots(self) -> bool {
        matches!(self, Self::BlueGreen | Self::Canary)
    }

    /// The slots a release can run in under this strategy.
    pub fn slots(self) -> &'static [Slot] {
        match self {
            Self::Restart => &[Slot::Single],
            Self::BlueGreen | Self::Canary => &[Slot::Blue, Slot::Green],
        }
    }
}
