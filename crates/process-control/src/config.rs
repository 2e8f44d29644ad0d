//! [`ProcessConfig`]: the manifest's `[process]` table, applied on top of a [`ServiceSpec`].
//!
//! Every key is optional: an absent key leaves the spec (and so the library default) alone,
//! which lets a binary apply the manifest first and its own flags after, flags winning.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::spec::{
    ListenSocket, NetworkAccess, Readiness, ResourceLimits, RestartPolicy, SecretDelivery,
    ServiceSpec, StopSignal,
};

/// Which service manager runs the service.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "kebab-case")]
pub enum ManagerKind {
    /// The built-in supervisor (no root, no systemd).
    #[default]
    Supervised,
    /// systemd units driven through `systemctl`.
    Systemd,
}

/// The `[process]` table of `cutover.toml`: how the service is run and kept running.
///
/// ```toml
/// [process]
/// manager = "supervised"            # or "systemd"
/// restart = "on-failure"            # always | never
/// backoff = "100ms"                 # first restart delay, doubling per consecutive failure
/// backoff_max = "30s"
/// start_limit_burst = 5             # starts allowed within start_limit_interval
/// start_limit_interval = "120s"
/// reset_after = "60s"               # uptime after which the backoff starts over
/// stop_signal = "SIGTERM"           # SIGINT | SIGQUIT | SIGHUP
/// stop_timeout = "30s"              # grace before SIGKILL
/// start_timeout = "30s"             # time to become ready
/// readiness = { kind = "exec", argv = ["cutover-probe", "--url", "http://127.0.0.1:7000/api/health"], interval = "500ms" }
/// user = "mcp-hub"
/// working_directory = "/opt/mcp-hub/current"
/// secret_delivery = "environment"   # or "credentials"
/// socket = "127.0.0.1:7000"         # held by the supervisor, handed over as LISTEN_FDS
/// network = "localhost-only"        # or "egress" for services calling external APIs
/// limits = { nofile = 65536, memory_max = 8589934592, tasks_max = 512, cpu_quota_percent = 400 }
/// ```
///
/// Unknown keys are refused. Durations are humantime strings.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, default)]
#[non_exhaustive]
pub struct ProcessConfig {
    /// Which service manager runs the service (default: supervised).
    pub manager: Option<ManagerKind>,
    /// When to restart.
    pub restart: Option<RestartPolicy>,
    /// First restart delay.
    #[serde(with = "humantime_serde")]
    #[schemars(with = "Option<String>")]
    pub backoff: Option<Duration>,
    /// Largest restart delay.
    #[serde(with = "humantime_serde")]
    #[schemars(with = "Option<String>")]
    pub backoff_max: Option<Duration>,
    /// Starts allowed within `start_limit_interval`.
    pub start_limit_burst: Option<u32>,
    /// The window of the start limit.
    #[serde(with = "humantime_serde")]
    #[schemars(with = "Option<String>")]
    pub start_limit_interval: Option<Duration>,
    /// Uptime after which the backoff starts over.
    #[serde(with = "humantime_serde")]
    #[schemars(with = "Option<String>")]
    pub reset_after: Option<Duration>,
    /// The first signal of a stop.
    pub stop_signal: Option<StopSignal>,
    /// The grace period of a stop before SIGKILL.
    #[serde(with = "humantime_serde")]
    #[schemars(with = "Option<String>")]
    pub stop_timeout: Option<Duration>,
    /// How long a start may take to become ready.
    #[serde(with = "humantime_serde")]
    #[schemars(with = "Option<String>")]
    pub start_timeout: Option<Duration>,
    /// How readiness is known.
    pub readiness: Option<Readiness>,
    /// The user to run as.
    pub user: Option<String>,
    /// The working directory.
    pub working_directory: Option<PathBuf>,
    /// How secrets reach the service.
    pub secret_delivery: Option<SecretDelivery>,
    /// A listening socket to hold and hand over.
    pub socket: Option<SocketAddr>,
    /// Network reach.
    pub network: Option<NetworkAccess>,
    /// Resource limits; each limit given here replaces the spec's.
    pub limits: Option<ResourceLimits>,
    /// systemd: where unit files are written (default `/etc/systemd/system`).
    pub unit_dir: Option<PathBuf>,
    /// systemd: the `systemctl` program (default `systemctl` on `PATH`).
    pub systemctl: Option<String>,
}

impl ProcessConfig {
    /// Writes every key that is set into `spec`, leaving the others as they are.
    pub fn apply_to(&self, spec: &mut ServiceSpec) {
        let set = |target: &mut Duration, value: Option<Duration>| {
            if let Some(v) = value {
                *target = v;
            }
        };
        if let Some(policy) = self.restart {
            spec.restart.policy = policy;
        }
        set(&mut spec.restart.backoff_initial, self.backoff);
        set(&mut spec.restart.backoff_max, self.backoff_max);
        if let Some(burst) = self.start_limit_burst {
            spec.restart.start_limit_burst = burst;
        }
        set(
            &mut spec.restart.start_limit_interval,
            self.start_limit_interval,
        );
        set(&mut spec.restart.reset_after, self.reset_after);
        if let Some(signal) = self.stop_signal {
            spec.stop.signal = signal;
        }
        set(&mut spec.stop.timeout, self.stop_timeout);
        set(&mut spec.start_timeout, self.start_timeout);
        if let Some(readiness) = &self.readiness {
            spec.readiness = readiness.clone();
        }
        if let Some(user) = &self.user {
            spec.user = Some(user.clone());
        }
        if let Some(dir) = &self.working_directory {
            spec.working_directory = Some(dir.clone());
        }
        if let Some(delivery) = self.secret_delivery {
            spec.secret_delivery = delivery;
        }
        if let Some(address) = self.socket {
            spec.socket = Some(ListenSocket { address });
        }
        if let Some(network) = self.network {
            spec.network = network;
        }
        if let Some(limits) = &self.limits {
            let l = &mut spec.limits;
            l.nofile = limits.nofile.or(l.nofile);
            l.memory_max = limits.memory_max.or(l.memory_max);
            l.cpu_quota_percent = limits.cpu_quota_percent.or(l.cpu_quota_percent);
            l.tasks_max = limits.tasks_max.or(l.tasks_max);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_keys_given_change_the_spec() {
        let config: ProcessConfig = serde_json::from_str(
            r#"{"restart":"always","stop_timeout":"5s","stop_signal":"SIGINT",
                "readiness":{"kind":"exec","argv":["/bin/true"]},
                "limits":{"nofile":1024},"network":"egress","manager":"systemd"}"#,
        )
        .unwrap();
        assert_eq!(config.manager, Some(ManagerKind::Systemd));
        let mut spec = ServiceSpec::new("hub", ["/bin/hub"]);
        spec.limits.tasks_max = Some(64);
        config.apply_to(&mut spec);
        assert_eq!(spec.restart.policy, RestartPolicy::Always);
        assert_eq!(spec.stop.timeout, Duration::from_secs(5));
        assert_eq!(spec.stop.signal, StopSignal::Sigint);
        assert!(matches!(spec.readiness, Readiness::Exec { .. }));
        assert_eq!(spec.limits.nofile, Some(1024));
        assert_eq!(spec.limits.tasks_max, Some(64), "a limit not given is kept");
        assert_eq!(spec.network, NetworkAccess::Egress);
        // Untouched keys keep the library defaults.
        let defaults = ServiceSpec::new("hub", ["/bin/hub"]);
        assert_eq!(spec.start_timeout, defaults.start_timeout);
        assert_eq!(
            spec.restart.backoff_initial,
            defaults.restart.backoff_initial
        );
    }

    #[test]
    fn unknown_keys_are_refused() {
        let err = serde_json::from_str::<ProcessConfig>(r#"{"stop_timout":"5s"}"#).unwrap_err();
        assert!(err.to_string().contains("stop_timout"), "{err}");
    }
}
