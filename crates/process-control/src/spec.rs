//! [`ServiceSpec`]: what to run and how to keep it running, shared by every backend.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use secret_refs::SecretRef;
use serde::{Deserialize, Serialize};

use crate::ProcError;

/// A service to run: argv (never a shell string), environment, secrets, restart and stop
/// behaviour, readiness, an optional listening socket and resource limits.
///
/// Build one with [`ServiceSpec::new`] and adjust the public fields; every field but `name` and
/// `argv` has a default. It is also `Deserialize` (unknown keys refused), durations written as
/// `"30s"`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct ServiceSpec {
    /// The service name: letters, digits, `-`, `_`, `.`; it names the unit and state files.
    pub name: String,
    /// Program and arguments. Never put a secret here: `/proc/PID/cmdline` is world-readable.
    pub argv: Vec<String>,
    /// Working directory of the service (default: the supervisor's, `/`).
    #[serde(default)]
    pub working_directory: Option<PathBuf>,
    /// Plain environment variables (not secret).
    #[serde(default)]
    pub environment: BTreeMap<String, String>,
    /// Secrets by name, resolved when the service starts and delivered as `secret_delivery` says.
    #[serde(default)]
    pub secrets: BTreeMap<String, SecretRef>,
    /// How secrets reach the service.
    #[serde(default)]
    pub secret_delivery: SecretDelivery,
    /// The user to run as (default: the supervisor's user; a systemd `DynamicUser=`).
    #[serde(default)]
    pub user: Option<String>,
    /// Restart policy, backoff and start limit.
    #[serde(default)]
    pub restart: RestartSpec,
    /// Stop signal and grace period.
    #[serde(default)]
    pub stop: StopSpec,
    /// How readiness is known.
    #[serde(default)]
    pub readiness: Readiness,
    /// How long a start may take to become ready before it counts as failed.
    #[serde(default = "default_start_timeout", with = "humantime_serde")]
    pub start_timeout: Duration,
    /// A listening socket held by the supervisor (or a systemd `.socket` unit) and handed to
    /// the service as `LISTEN_FDS=1` on fd 3, so connections queue across restarts.
    #[serde(default)]
    pub socket: Option<ListenSocket>,
    /// Resource limits.
    #[serde(default)]
    pub limits: ResourceLimits,
    /// Whether the service may reach addresses other than localhost (systemd `IPAddressDeny=`).
    #[serde(default)]
    pub network: NetworkAccess,
}

fn default_start_timeout() -> Duration {
    Duration::from_secs(30)
}

impl ServiceSpec {
    /// A spec with defaults: restart on failure with backoff 100 ms..30 s, start limit 5 in
    /// 120 s, stop with SIGTERM and a 30 s grace, no readiness signal, no socket.
    pub fn new(name: impl Into<String>, argv: impl IntoIterator<Item = impl Into<String>>) -> Self {
        Self {
            name: name.into(),
            argv: argv.into_iter().map(Into::into).collect(),
            working_directory: None,
            environment: BTreeMap::new(),
            secrets: BTreeMap::new(),
            secret_delivery: SecretDelivery::default(),
            user: None,
            restart: RestartSpec::default(),
            stop: StopSpec::default(),
            readiness: Readiness::default(),
            start_timeout: default_start_timeout(),
            socket: None,
            limits: ResourceLimits::default(),
            network: NetworkAccess::default(),
        }
    }

    /// Checks what can be checked without running anything.
    ///
    /// # Errors
    /// [`ProcError::InvalidSpec`] naming the first problem.
    pub fn validate(&self) -> Result<(), ProcError> {
        let bad = |reason: String| ProcError::InvalidSpec {
            name: self.name.clone(),
            reason,
        };
        if self.name.is_empty()
            || self.name.len() > 200
            || self.name.starts_with('.')
            || !self
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        {
            return Err(bad(
                "the name must be 1-200 letters, digits, `-`, `_` or `.`, not starting with `.`"
                    .into(),
            ));
        }
        match self.argv.first() {
            None => return Err(bad("argv is empty".into())),
            Some(p) if p.is_empty() => return Err(bad("argv[0] is empty".into())),
            Some(_) => {}
        }
        if self.argv.iter().any(|a| a.contains('\0')) {
            return Err(bad("an argument contains a NUL byte".into()));
        }
        for (k, v) in &self.environment {
            if !is_env_name(k) {
                return Err(bad(format!(
                    "`{k}` is not a valid environment variable name"
                )));
            }
            if v.contains('\0') {
                return Err(bad(format!("the value of `{k}` contains a NUL byte")));
            }
            if self.secrets.contains_key(k) {
                return Err(bad(format!("`{k}` is both a plain variable and a secret")));
            }
        }
        for k in self.secrets.keys() {
            let ok = match self.secret_delivery {
                SecretDelivery::Environment => is_env_name(k),
                SecretDelivery::Credentials => is_credential_name(k),
            };
            if !ok {
                return Err(bad(format!(
                    "`{k}` is not a valid name for delivery by {}",
                    self.secret_delivery.as_str()
                )));
            }
        }
        let r = &self.restart;
        if r.backoff_initial.is_zero() || r.backoff_max < r.backoff_initial {
            return Err(bad(
                "restart backoff needs 0 < backoff_initial <= backoff_max".into(),
            ));
        }
        if r.start_limit_burst == 0 || r.start_limit_interval.is_zero() {
            return Err(bad(
                "the start limit needs a burst >= 1 and an interval > 0".into(),
            ));
        }
        if self.start_timeout.is_zero() {
            return Err(bad("start_timeout must be more than zero".into()));
        }
        if let Readiness::Exec { argv, .. } = &self.readiness
            && argv.is_empty()
        {
            return Err(bad("the readiness probe's argv is empty".into()));
        }
        Ok(())
    }
}

pub(crate) fn is_env_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

pub(crate) fn is_credential_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 255
        && !name.starts_with('.')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c))
}

/// How secrets reach the service: never through argv.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "kebab-case")]
pub enum SecretDelivery {
    /// As environment variables named by the secret's key.
    #[default]
    Environment,
    /// As files `$CREDENTIALS_DIRECTORY/NAME` (mode 0600, directory 0700), systemd's
    /// `LoadCredential=` convention.
    Credentials,
}

impl SecretDelivery {
    /// `environment` or `credentials`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Environment => "environment",
            Self::Credentials => "credentials",
        }
    }
}

/// When a service that exited is started again.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "kebab-case")]
pub enum RestartPolicy {
    /// After a non-zero exit, a signal or a readiness timeout.
    #[default]
    OnFailure,
    /// After any exit.
    Always,
    /// Never.
    Never,
}

impl RestartPolicy {
    /// `on-failure`, `always` or `never` (also systemd's `Restart=` values, with `no`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::OnFailure => "on-failure",
            Self::Always => "always",
            Self::Never => "never",
        }
    }

    /// Whether an exit (successful or not) leads to a restart.
    pub fn restarts_after(self, success: bool) -> bool {
        match self {
            Self::Always => true,
            Self::OnFailure => !success,
            Self::Never => false,
        }
    }
}

impl std::str::FromStr for RestartPolicy {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "on-failure" => Ok(Self::OnFailure),
            "always" => Ok(Self::Always),
            "never" | "no" => Ok(Self::Never),
            other => Err(format!(
                "unknown restart policy `{other}` (on-failure, always, never)"
            )),
        }
    }
}

/// Restart policy with exponential backoff and a start limit.
///
/// The n-th consecutive restart waits `min(backoff_initial * 2^(n-1), backoff_max)`. More than
/// `start_limit_burst` starts within `start_limit_interval` mark the service failed (systemd's
/// `StartLimitBurst=`/`StartLimitIntervalSec=`). A service that stayed up for `reset_after`
/// starts the backoff from the beginning again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RestartSpec {
    /// When to restart.
    pub policy: RestartPolicy,
    /// First delay.
    #[serde(with = "humantime_serde")]
    pub backoff_initial: Duration,
    /// Largest delay.
    #[serde(with = "humantime_serde")]
    pub backoff_max: Duration,
    /// Starts allowed within `start_limit_interval`.
    pub start_limit_burst: u32,
    /// The window of the start limit.
    #[serde(with = "humantime_serde")]
    pub start_limit_interval: Duration,
    /// Uptime after which the backoff starts over.
    #[serde(with = "humantime_serde")]
    pub reset_after: Duration,
}

impl Default for RestartSpec {
    fn default() -> Self {
        Self {
            policy: RestartPolicy::OnFailure,
            backoff_initial: Duration::from_millis(100),
            backoff_max: Duration::from_secs(30),
            start_limit_burst: 5,
            start_limit_interval: Duration::from_secs(120),
            reset_after: Duration::from_secs(60),
        }
    }
}

impl RestartSpec {
    /// The delay before restart number `n` (1-based) of a run of consecutive failures.
    pub fn delay(&self, n: u32) -> Duration {
        let factor = 1u32.checked_shl(n.saturating_sub(1)).unwrap_or(u32::MAX);
        self.backoff_initial
            .checked_mul(factor)
            .map_or(self.backoff_max, |d| d.min(self.backoff_max))
    }
}

/// A signal a service can be asked to stop with.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "UPPERCASE")]
pub enum StopSignal {
    /// SIGTERM.
    #[default]
    Sigterm,
    /// SIGINT.
    Sigint,
    /// SIGQUIT.
    Sigquit,
    /// SIGHUP.
    Sighup,
}

impl StopSignal {
    /// The nix signal.
    pub fn signal(self) -> nix::sys::signal::Signal {
        use nix::sys::signal::Signal;
        match self {
            Self::Sigterm => Signal::SIGTERM,
            Self::Sigint => Signal::SIGINT,
            Self::Sigquit => Signal::SIGQUIT,
            Self::Sighup => Signal::SIGHUP,
        }
    }

    /// `SIGTERM` and so on, as systemd's `KillSignal=` takes it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Sigterm => "SIGTERM",
            Self::Sigint => "SIGINT",
            Self::Sigquit => "SIGQUIT",
            Self::Sighup => "SIGHUP",
        }
    }
}

/// How a service is stopped: `signal` to its process group, then SIGKILL after `timeout`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StopSpec {
    /// The first signal.
    pub signal: StopSignal,
    /// The grace period before SIGKILL.
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
}

impl Default for StopSpec {
    fn default() -> Self {
        Self {
            signal: StopSignal::Sigterm,
            timeout: Duration::from_secs(30),
        }
    }
}

/// How the supervisor knows the service is ready.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(tag = "kind", rename_all = "kebab-case", deny_unknown_fields)]
pub enum Readiness {
    /// Ready as soon as it runs.
    #[default]
    None,
    /// Ready when it sends `READY=1` to `NOTIFY_SOCKET` (systemd `Type=notify`).
    Notify,
    /// Ready when this probe command (the health-probe hook) exits 0; tried every `interval`.
    Exec {
        /// The probe's argv.
        argv: Vec<String>,
        /// Time between tries.
        #[serde(with = "humantime_serde", default = "default_probe_interval")]
        #[schemars(with = "String")]
        interval: Duration,
    },
}

fn default_probe_interval() -> Duration {
    Duration::from_millis(250)
}

/// A TCP socket to listen on and hand over.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListenSocket {
    /// The address (use a loopback address behind a proxy).
    pub address: SocketAddr,
}

/// Resource limits.
///
/// systemd renders them as cgroup limits (`LimitNOFILE=`, `MemoryMax=`, `CPUQuota=`,
/// `TasksMax=`). The supervised backend has no cgroups (it runs without root) and applies what
/// `setrlimit(2)` can express, soft and hard limit alike, so the service cannot raise them:
///
/// | key | supervised backend | how it differs from systemd |
/// |---|---|---|
/// | `nofile` | `RLIMIT_NOFILE` | the same |
/// | `memory_max` | `RLIMIT_DATA` | caps private writable *virtual* memory (heap, anonymous mappings) of each process, not the RSS of the group; an allocation beyond it fails with ENOMEM instead of an OOM kill |
/// | `tasks_max` | `RLIMIT_NPROC` | counts every process and thread of the service's **user**, not of the service; not enforced for root (or `CAP_SYS_RESOURCE`) |
/// | `cpu_quota_percent` | not applied | `RLIMIT_CPU` limits total CPU seconds, not a rate, so there is no honest equivalent: `CPUQuota=` is systemd-only |
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct ResourceLimits {
    /// Open files (`LimitNOFILE=`).
    pub nofile: Option<u64>,
    /// Memory in bytes (`MemoryMax=`; `RLIMIT_DATA` under the supervised backend): an integer
    /// or a size such as `"512MiB"`.
    #[serde(default, deserialize_with = "host_util::size::serde::option_bytes")]
    #[schemars(schema_with = "host_util::size::serde::option_schema")]
    pub memory_max: Option<u64>,
    /// CPU quota in percent of one CPU (`CPUQuota=`; systemd only).
    pub cpu_quota_percent: Option<u32>,
    /// Tasks (`TasksMax=`; `RLIMIT_NPROC` of the user under the supervised backend).
    pub tasks_max: Option<u64>,
}

/// Network reach of the service (a manifest choice: a service calling external APIs needs
/// `egress`).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "kebab-case")]
pub enum NetworkAccess {
    /// Only localhost (`IPAddressDeny=any`, `IPAddressAllow=localhost`).
    #[default]
    LocalhostOnly,
    /// Any address.
    Egress,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_maximum() {
        let r = RestartSpec {
            backoff_initial: Duration::from_millis(100),
            backoff_max: Duration::from_millis(700),
            ..RestartSpec::default()
        };
        let delays: Vec<u128> = (1..=6).map(|n| r.delay(n).as_millis()).collect();
        assert_eq!(delays, [100, 200, 400, 700, 700, 700]);
        assert_eq!(r.delay(200), Duration::from_millis(700));
    }

    #[test]
    fn restart_policy_table() {
        use RestartPolicy::*;
        let table = [
            (OnFailure, true, false),
            (OnFailure, false, true),
            (Always, true, true),
            (Always, false, true),
            (Never, true, false),
            (Never, false, false),
        ];
        for (policy, success, expected) in table {
            assert_eq!(
                policy.restarts_after(success),
                expected,
                "{policy:?} {success}"
            );
        }
        assert_eq!("no".parse::<RestartPolicy>(), Ok(Never));
        assert!("sometimes".parse::<RestartPolicy>().is_err());
    }

    #[test]
    fn validation_accepts_good_and_names_the_problem_in_bad_specs() {
        let good = ServiceSpec::new("demo-hub", ["/bin/true"]);
        good.validate().unwrap();
        let cases: Vec<(ServiceSpec, &str)> = vec![
            (ServiceSpec::new("bad name", ["/bin/true"]), "the name"),
            (ServiceSpec::new("x", Vec::<String>::new()), "argv is empty"),
            (
                {
                    let mut s = good.clone();
                    s.environment.insert("1X".into(), "v".into());
                    s
                },
                "not a valid environment variable",
            ),
            (
                {
                    let mut s = good.clone();
                    s.environment.insert("K".into(), "v".into());
                    s.secrets.insert("K".into(), "env:K".parse().unwrap());
                    s
                },
                "both a plain variable and a secret",
            ),
            (
                {
                    let mut s = good.clone();
                    s.restart.backoff_initial = Duration::ZERO;
                    s
                },
                "backoff",
            ),
            (
                {
                    let mut s = good.clone();
                    s.restart.start_limit_burst = 0;
                    s
                },
                "start limit",
            ),
        ];
        for (spec, needle) in cases {
            let err = spec.validate().unwrap_err().to_string();
            assert!(err.contains(needle), "{err} lacks {needle}");
        }
    }

    #[test]
    fn spec_deserialises_with_defaults_and_refuses_unknown_keys() {
        let spec: ServiceSpec = serde_json::from_str(
            r#"{"name":"hub","argv":["/bin/hub"],"stop":{"timeout":"5s"},
                "readiness":{"kind":"notify"},"secrets":{"API_KEY":"env:K"}}"#,
        )
        .unwrap();
        assert_eq!(spec.stop.timeout, Duration::from_secs(5));
        assert_eq!(spec.readiness, Readiness::Notify);
        assert_eq!(spec.restart, RestartSpec::default());
        let err = serde_json::from_str::<ServiceSpec>(r#"{"name":"x","argv":["a"],"nope":1}"#)
            .unwrap_err();
        assert!(err.to_string().contains("nope"));
    }
}
