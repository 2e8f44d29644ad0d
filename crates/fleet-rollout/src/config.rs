//! `[fleet]` in cutover.toml.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use crate::FleetError;
use crate::plan::{BatchSize, FailBudget};

/// The `[fleet]` table: which hosts, in which batches, with which failure budget.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FleetConfig {
    /// ssh destinations (`web1`, `deploy@10.0.0.5`, a `~/.ssh/config` Host alias).
    #[serde(default)]
    pub hosts: Vec<String>,
    /// A file with one ssh destination a line (`#` comments), relative to the manifest.
    pub hosts_file: Option<PathBuf>,
    /// Batch sizes: counts or percentages of the remaining hosts (default `[1, "100%"]`).
    #[serde(default = "default_batches")]
    pub batches: Vec<BatchSize>,
    /// Failed hosts tolerated (count or percentage of the fleet); the rollout stops when the
    /// failures exceed it. Default 0.
    #[serde(default)]
    pub max_fail: FailBudget,
    /// How long to watch a finished batch before the next one starts (default 0s).
    #[serde(default, with = "humantime_serde")]
    #[schemars(with = "String")]
    pub soak: Duration,
    /// How long a switched host waits for its confirmation over a fresh SSH connection
    /// before it rolls itself back (default 60s).
    #[serde(default = "default_confirm", with = "humantime_serde")]
    #[schemars(with = "String")]
    pub confirm_timeout: Duration,
    /// Command (argv) run locally before a host is deployed (drain it from the pool), with
    /// `CUTOVER_HOST` and `CUTOVER_RELEASE` set.
    #[serde(default)]
    pub before_host: Vec<String>,
    /// Command (argv) run locally after a host is deployed and confirmed (add it back).
    #[serde(default)]
    pub after_host: Vec<String>,
    /// Where the remote copy of cutover lives on each host (`{host}` and `{service}` are
    /// replaced; relative to the login directory). Default `.cutover/{service}`.
    #[serde(default = "default_remote_dir")]
    pub remote_dir: String,
    /// Extra options for every ssh/scp command (`["-o", "Port=2222"]`).
    #[serde(default)]
    pub ssh_options: Vec<String>,
    /// An ssh_config file used instead of `~/.ssh/config` (`ssh -F`).
    pub ssh_config: Option<PathBuf>,
    /// Connect timeout of every ssh command (default 10s).
    #[serde(default = "default_connect", with = "humantime_serde")]
    #[schemars(with = "String")]
    pub connect_timeout: Duration,
    /// Timeout of one remote deploy or rollback (default 15m).
    #[serde(default = "default_command", with = "humantime_serde")]
    #[schemars(with = "String")]
    pub command_timeout: Duration,
    /// How many hosts are rolled back at once after a stop (default 8).
    #[serde(default = "default_parallel")]
    pub parallel: usize,
}

fn default_batches() -> Vec<BatchSize> {
    vec![BatchSize::Count(1), BatchSize::Percent(100)]
}
fn default_confirm() -> Duration {
    Duration::from_secs(60)
}
fn default_remote_dir() -> String {
    ".cutover/{service}".to_owned()
}
fn default_connect() -> Duration {
    Duration::from_secs(10)
}
fn default_command() -> Duration {
    Duration::from_secs(900)
}
fn default_parallel() -> usize {
    8
}

impl Default for FleetConfig {
    fn default() -> Self {
        Self {
            hosts: Vec::new(),
            hosts_file: None,
            batches: default_batches(),
            max_fail: FailBudget::default(),
            soak: Duration::ZERO,
            confirm_timeout: default_confirm(),
            before_host: Vec::new(),
            after_host: Vec::new(),
            remote_dir: default_remote_dir(),
            ssh_options: Vec::new(),
            ssh_config: None,
            connect_timeout: default_connect(),
            command_timeout: default_command(),
            parallel: default_parallel(),
        }
    }
}

impl FleetConfig {
    /// Reads `[fleet]` (defaults when absent), resolving `hosts_file` and `ssh_config`
    /// against the manifest's directory.
    ///
    /// # Errors
    /// [`FleetError::Config`] naming the key when the table is invalid.
    pub fn from_manifest(manifest: &manifest_loader::Manifest) -> Result<Self, FleetError> {
        let mut this: Self = manifest.table("fleet")?.unwrap_or_default();
        if let Some(f) = &this.hosts_file {
            this.hosts_file = Some(manifest.resolve(f));
        }
        if let Some(f) = &this.ssh_config {
            this.ssh_config = Some(manifest.resolve(f));
        }
        if this.parallel == 0 {
            return Err(FleetError::Config {
                key: "fleet.parallel".to_owned(),
                reason: "must be at least 1".to_owned(),
            });
        }
        Ok(this)
    }

    /// Whether the manifest names any hosts.
    pub fn has_hosts(&self) -> bool {
        !self.hosts.is_empty() || self.hosts_file.is_some()
    }

    /// The hosts: `override_hosts` when given, else `hosts` then the lines of `hosts_file`,
    /// without duplicates.
    ///
    /// # Errors
    /// [`FleetError::Config`] when the hosts file cannot be read or no host is named.
    pub fn hosts(&self, override_hosts: Option<&[String]>) -> Result<Vec<String>, FleetError> {
        let mut out: Vec<String> = Vec::new();
        let mut push = |h: &str| {
            let h = h.trim();
            if !h.is_empty() && !out.iter().any(|x| x == h) {
                out.push(h.to_owned());
            }
        };
        if let Some(list) = override_hosts {
            list.iter().for_each(|h| push(h));
        } else {
            self.hosts.iter().for_each(|h| push(h));
            if let Some(file) = &self.hosts_file {
                let text = std::fs::read_to_string(file).map_err(|e| FleetError::Config {
                    key: "fleet.hosts_file".to_owned(),
                    reason: format!("cannot read {}: {e}", file.display()),
                })?;
                for line in text.lines() {
                    let line = line.split('#').next().unwrap_or("");
                    push(line);
                }
            }
        }
        if out.is_empty() {
            return Err(FleetError::Config {
                key: "fleet.hosts".to_owned(),
                reason: "no host named: set [fleet] hosts or hosts_file, or pass --hosts"
                    .to_owned(),
            });
        }
        if let Some(bad) = out.iter().find(|h| h.starts_with('-')) {
            return Err(FleetError::Config {
                key: "fleet.hosts".to_owned(),
                reason: format!("{bad:?} is not an ssh destination (it starts with '-')"),
            });
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(text: &str) -> Result<FleetConfig, FleetError> {
        let dir = std::env::temp_dir().join(format!("fleet-config-{}", std::process::id()));
        let _ = std::fs::create_dir_all(&dir);
        let _ = std::fs::write(dir.join("hosts.txt"), "web2 # the second\n\nweb3\nweb1\n");
        let m = manifest_loader::Manifest::from_str(dir.join("cutover.toml"), text)?;
        FleetConfig::from_manifest(&m)
    }

    #[test]
    fn hosts_from_the_list_the_file_and_the_flag() {
        let cfg = load("[fleet]\nhosts = [\"web1\"]\nhosts_file = \"hosts.txt\"\nbatches = [1, \"25%\"]\nmax_fail = \"10%\"\nsoak = \"2s\"\n").ok();
        let cfg = cfg.as_ref();
        assert_eq!(
            cfg.and_then(|c| c.hosts(None).ok()),
            Some(vec![
                "web1".to_owned(),
                "web2".to_owned(),
                "web3".to_owned()
            ])
        );
        let flag = vec!["a".to_owned(), "b".to_owned()];
        assert_eq!(
            cfg.and_then(|c| c.hosts(Some(&flag)).ok()),
            Some(flag.clone())
        );
        assert_eq!(cfg.map(|c| c.max_fail), Some(FailBudget::Percent(10)));
        assert_eq!(cfg.map(|c| c.soak), Some(Duration::from_secs(2)));
        assert!(cfg.is_some_and(FleetConfig::has_hosts));
    }

    #[test]
    fn no_host_an_option_as_host_and_an_unknown_key_are_refused() {
        let none = load("[service]\nname = \"x\"\n").ok();
        assert!(none.as_ref().is_some_and(|c| !c.has_hosts()));
        let err = none
            .and_then(|c| c.hosts(None).err())
            .map(|e| e.to_string());
        assert!(err.is_some_and(|e| e.contains("fleet.hosts") && e.contains("--hosts")));
        let dash = load("[fleet]\nhosts = [\"-oProxyCommand=x\"]\n").ok();
        assert!(dash.and_then(|c| c.hosts(None).err()).is_some());
        let typo = load("[fleet]\nhost = [\"a\"]\n")
            .err()
            .map(|e| e.to_string());
        assert!(
            typo.is_some_and(|e| e.contains("host")),
            "unknown key refused"
        );
        assert_eq!(
            load("[fleet]\nparallel = 0\n").err().map(|e| e.exit_code()),
            Some(78)
        );
        assert_eq!(
            load("[fleet]\nbatches = [0]\n")
                .err()
                .map(|e| e.exit_code()),
            Some(78)
        );
    }
}
