//! `cutover-proc`: start, stop, restart, inspect and read the logs of a service under the
//! built-in supervisor (default) or systemd, and print hardened systemd units.
//!
//! Only argument parsing and rendering live here; the work is in the `process-control`
//! library. The service can be described by flags alone or by the manifest (`--manifest PATH`
//! or `./cutover.toml`): `[process]` (process-control's [`ProcessConfig`]), `[service]` `name`,
//! `start`, `env`, `secrets` and `port`, and `[layout].root`. Flags override the manifest.
//!
//! When the manifest describes a deployment (`[service]` and `[layout]`, as the deploy
//! pipeline uses them), the live deployment gives the defaults (live-deployment reads what the
//! pipeline wrote): the service is the live slot's (`NAME-blue`/`NAME-green` under
//! blue-green), `status` without `--name` lists every slot, and the placeholders of `start`,
//! `env` and the command after `--` are the pipeline's: `{release}` the live release's
//! directory (with nothing live, `<root>/current`, the directory it will name), `{release_id}`, `{port}` the live slot's port (else `[service].port`), `{host}`,
//! `{root}`, `{shared}`. An unknown placeholder is an error (78 in the manifest, 64 in flags).
//! A relative program path after `--` (`target/release/app`) is resolved against the current
//! directory before the supervisor starts.
//!
//! This binary is also the supervisor program: `cutover-proc __supervise` and
//! `cutover-proc __exec-shim` are hidden modes handled before argument parsing.

// A binary: what it prints is its output. Libraries never print (the workspace denies it).
#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::io::{Read, Seek, SeekFrom, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};
use cutover_cli::{
    CommonArgs, EXIT_FAIL, EXIT_OK, EXIT_UNKNOWN, EXIT_USAGE, Failure, Manifest, Status,
};
use live_deployment::{Deployment, LiveError, LiveState};
use process_control::template::{self, Placeholders};
use process_control::{
    ListenSocket, LogLocation, NetworkAccess, ProcError, ProcessConfig, ProcessManager, Readiness,
    RestartPolicy, SecretDelivery, ServiceSpec, ServiceState, ServiceStatus, SupervisedConfig,
    SupervisedManager, SystemCommandRunner, SystemdConfig, SystemdManager, UnitOptions,
    render_units, tail_log,
};
use secret_refs::SecretRef;
use serde_json::json;

/// Start, stop and watch a service without ever losing the process.
///
/// The service is described by flags, by the manifest ([process], [service] name/start/env/
/// secrets/port, [layout].root), or both: flags win.
#[derive(Debug, Parser)]
#[command(name = "cutover-proc", version, about, long_about = None)]
struct Cli {
    #[command(flatten)]
    common: CommonArgs,
    /// Which service manager runs the service [default: [process].manager, else supervised].
    #[arg(long, global = true, value_enum)]
    manager: Option<ManagerKind>,
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum ManagerKind {
    /// The built-in supervisor (no root, no systemd).
    Supervised,
    /// systemd units driven through systemctl.
    Systemd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Start the service (a second start of a running service starts nothing).
    Start {
        #[command(flatten)]
        target: Target,
        #[command(flatten)]
        spec: SpecArgs,
    },
    /// Stop the service: stop signal to its process group, grace period, SIGKILL.
    Stop {
        #[command(flatten)]
        target: Target,
        /// Grace period before SIGKILL (default: the stop timeout it was started with).
        #[arg(long, value_parser = humantime::parse_duration)]
        grace: Option<Duration>,
    },
    /// Stop, then start (with the recorded command when no ARGV is given).
    Restart {
        #[command(flatten)]
        target: Target,
        /// Grace period before SIGKILL.
        #[arg(long, value_parser = humantime::parse_duration)]
        grace: Option<Duration>,
        #[command(flatten)]
        spec: SpecArgs,
    },
    /// Show state, pid, uptime, restarts, last exit, memory and CPU. Exit 0 running,
    /// 1 starting/stopping, 2 stopped/failed/crash-looping, 3 unknown or orphaned. Without
    /// --name and with a manifest that describes a deployment: every slot, live and standby
    /// marked, and the live slot's exit code.
    Status {
        #[command(flatten)]
        target: Target,
    },
    /// Print the service's log (the last lines; --follow keeps printing).
    Logs {
        #[command(flatten)]
        target: Target,
        /// How many lines to print first.
        #[arg(long, default_value_t = 100)]
        lines: usize,
        /// Keep printing new lines (rotation is followed) until interrupted.
        #[arg(long)]
        follow: bool,
    },
    /// Print the hardened systemd unit (and .socket unit) for a command.
    Unit {
        /// The service name [default: [service].name].
        #[arg(long)]
        name: Option<String>,
        /// The release layout root (ReadWritePaths, credentials directory) [default:
        /// [layout].root, else /opt/cutover].
        #[arg(long)]
        root: Option<PathBuf>,
        /// The program that turns credentials into environment variables (default: this one).
        #[arg(long, value_name = "PATH")]
        exec_shim: Option<PathBuf>,
        #[command(flatten)]
        spec: SpecArgs,
    },
}

/// Which service, and where its files are.
#[derive(Debug, Args)]
struct Target {
    /// The service name [default: the live slot's service (NAME-blue, NAME-green) when the
    /// manifest's deployment has a live release, else [service].name]. `status` without it
    /// lists every slot.
    #[arg(long)]
    name: Option<String>,
    /// The release layout root: state in ROOT/state/proc/NAME, logs in ROOT/logs/NAME.log
    /// [default: [layout].root].
    #[arg(long)]
    root: Option<PathBuf>,
    /// The supervisor program (default: this executable).
    #[arg(long, hide = true)]
    supervisor: Option<PathBuf>,
    /// The systemctl program (systemd manager; tests point it at a fake).
    #[arg(long, hide = true, default_value = "systemctl")]
    systemctl: String,
    /// Where unit files go (systemd manager).
    #[arg(long, hide = true, default_value = "/etc/systemd/system")]
    unit_dir: PathBuf,
}

/// What to run and how. Each flag overrides the manifest's key; unset flags leave it (or the
/// library default) in place.
#[derive(Debug, Args)]
struct SpecArgs {
    /// When to restart: on-failure, always, never [default: on-failure].
    #[arg(long)]
    restart: Option<RestartPolicy>,
    /// Wait for READY=1 on NOTIFY_SOCKET before calling the service running.
    #[arg(long)]
    notify: bool,
    /// Hold this listening TCP socket and hand it over as LISTEN_FDS (fd 3).
    #[arg(long, value_name = "ADDR")]
    socket: Option<SocketAddr>,
    /// A plain environment variable, NAME=VALUE (repeatable; added to [service].env).
    #[arg(long = "env", value_name = "NAME=VALUE", value_parser = parse_pair)]
    env: Vec<(String, String)>,
    /// A secret by reference, NAME=REF such as API_KEY=op://vault/item/field (repeatable; added
    /// to [service].secrets).
    #[arg(long = "secret", value_name = "NAME=REF", value_parser = parse_pair)]
    secrets: Vec<(String, String)>,
    /// Deliver secrets as files in $CREDENTIALS_DIRECTORY instead of environment variables.
    #[arg(long)]
    credentials: bool,
    /// Working directory.
    #[arg(long, value_name = "DIR")]
    cwd: Option<PathBuf>,
    /// Run as this user (the supervisor must run as root to switch).
    #[arg(long)]
    user: Option<String>,
    /// Grace period of a stop before SIGKILL [default: 30s].
    #[arg(long, value_parser = humantime::parse_duration)]
    stop_timeout: Option<Duration>,
    /// How long a start may take to become ready [default: 30s].
    #[arg(long, value_parser = humantime::parse_duration)]
    start_timeout: Option<Duration>,
    /// First restart delay, doubling per consecutive failure [default: 100ms].
    #[arg(long, value_parser = humantime::parse_duration)]
    backoff: Option<Duration>,
    /// Largest restart delay [default: 30s].
    #[arg(long, value_parser = humantime::parse_duration)]
    backoff_max: Option<Duration>,
    /// Starts allowed within --start-limit-interval before the service is marked failed
    /// [default: 5].
    #[arg(long)]
    start_limit: Option<u32>,
    /// The window of the start limit [default: 120s].
    #[arg(long, value_parser = humantime::parse_duration)]
    start_limit_interval: Option<Duration>,
    /// Open-files limit (RLIMIT_NOFILE; systemd LimitNOFILE=).
    #[arg(long)]
    nofile: Option<u64>,
    /// Memory limit in bytes (systemd MemoryMax=; RLIMIT_DATA under the supervisor).
    #[arg(long)]
    memory_max: Option<u64>,
    /// Task limit (systemd TasksMax=; RLIMIT_NPROC of the user under the supervisor).
    #[arg(long)]
    tasks_max: Option<u64>,
    /// CPU quota in percent of one core (systemd CPUQuota= only; the supervisor cannot).
    #[arg(long)]
    cpu_quota: Option<u32>,
    /// Allow network egress beyond localhost (for services calling external APIs).
    #[arg(long)]
    allow_egress: bool,
    /// The command to run (after --) [default: [service].start].
    #[arg(last = true, value_name = "ARGV")]
    argv: Vec<String>,
}

fn parse_pair(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .ok_or_else(|| "expected NAME=VALUE".to_owned())
}

/// What the manifest says about the service; empty without a manifest.
#[derive(Debug, Default)]
struct FromManifest {
    process: ProcessConfig,
    name: Option<String>,
    start: Option<Vec<String>>,
    env: BTreeMap<String, String>,
    secrets: BTreeMap<String, SecretRef>,
    port: Option<u16>,
    root: Option<PathBuf>,
    /// The deployment the manifest describes (it has `[layout]`): the live slot is the
    /// default service, and the live release fills the placeholders.
    deployment: Option<Deployment>,
}

impl FromManifest {
    /// Reads the tables this binary needs; every other table is left alone.
    fn load(manifest: &Manifest) -> Result<Self, LiveError> {
        let mut process: ProcessConfig = manifest.table("process")?.unwrap_or_default();
        if let Some(dir) = &process.working_directory {
            process.working_directory = Some(manifest.resolve(dir));
        }
        Ok(Self {
            process,
            name: manifest.table("service.name")?,
            start: manifest.table("service.start")?,
            env: manifest.table("service.env")?.unwrap_or_default(),
            secrets: manifest.table("service.secrets")?.unwrap_or_default(),
            port: manifest.table("service.port")?,
            root: manifest
                .table::<PathBuf>("layout.root")?
                .map(|p| manifest.resolve(&p)),
            deployment: Deployment::of(manifest)?,
        })
    }

    /// The live state, when the manifest describes a deployment.
    fn live(&self) -> anyhow::Result<Option<LiveState>> {
        self.deployment
            .as_ref()
            .map(Deployment::live)
            .transpose()
            .map_err(anyhow::Error::from)
    }

    /// The placeholder values for `root`: the live release (its directory and id), the live
    /// slot's port (else `[service].port`), `[service].host`, the root and `<root>/shared`.
    fn placeholders(&self, root: &Path) -> anyhow::Result<Placeholders> {
        let live = self.live()?;
        let layout = live_deployment::ReleaseLayout::new(root);
        let release = live.as_ref().and_then(|l| l.release.clone());
        let port = live
            .as_ref()
            .and_then(|l| l.slot_addr.map(|a| a.port()))
            .or(self.port);
        let host = self.deployment.as_ref().map(|d| d.service().host);
        let mut values = layout.placeholders(
            release.as_deref(),
            port,
            host.unwrap_or(std::net::IpAddr::from([127, 0, 0, 1])),
        );
        // Without a deployment's [service] there is no host to say.
        if host.is_none() {
            values.host = None;
        }
        Ok(values)
    }

    /// `--name`, else the live slot's service (`<name>-blue`, …) when the manifest describes a
    /// deployment with a release live, else `[service].name`.
    fn name(&self, flag: Option<&String>) -> anyhow::Result<String> {
        if let Some(name) = flag {
            return Ok(name.clone());
        }
        if let Some(live) = self.live()?.and_then(|l| l.live) {
            return Ok(live.name);
        }
        self.name.clone().ok_or_else(|| {
            usage("--name is required (or [service].name in the manifest)".to_owned())
        })
    }

    fn root(&self, flag: Option<&PathBuf>) -> anyhow::Result<PathBuf> {
        flag.or(self.root.as_ref()).cloned().ok_or_else(|| {
            usage("--root is required (or [layout].root in the manifest)".to_owned())
        })
    }
}

impl SpecArgs {
    /// Builds the spec: the manifest first, then the flags over it.
    fn spec(&self, name: &str, root: &Path, from: &FromManifest) -> anyhow::Result<ServiceSpec> {
        let values = from.placeholders(root)?;
        // What to do about a placeholder that has no value here.
        let nothing_live = |e: &template::TemplateError| match e.name.as_str() {
            "port" => "; set [service].port",
            "release_id" => {
                "; nothing is deployed, so {release_id} has no value (deploy first, or give the command after --)"
            }
            "host" => "; set [service] (host defaults to 127.0.0.1 there)",
            _ => "",
        };
        let argv = if self.argv.is_empty() {
            let start = from.start.as_ref().ok_or_else(|| {
                usage("--: no command: give it after -- or as [service].start".to_owned())
            })?;
            template::fill_all(start, &values)
                .map_err(|e| config_value(format!("[service].start: {e}{}", nothing_live(&e))))?
        } else {
            let mut argv = template::fill_all(&self.argv, &values)
                .map_err(|e| usage(format!("--: the command after --: {e}{}", nothing_live(&e))))?;
            // A relative program path means what it means in the caller's shell: the
            // supervisor runs from another directory.
            if let Some(program) = argv.first_mut()
                && program.contains('/')
                && Path::new(program.as_str()).is_relative()
            {
                let absolute = std::path::absolute(program.as_str())
                    .map_err(|e| usage(format!("--: cannot resolve {program}: {e}")))?;
                *program = absolute.to_string_lossy().into_owned();
            }
            argv
        };
        let mut spec = ServiceSpec::new(name, argv);
        for (k, v) in &from.env {
            let value = template::fill(v, &values)
                .map_err(|e| config_value(format!("[service].env {k}: {e}{}", nothing_live(&e))))?;
            spec.environment.insert(k.clone(), value);
        }
        spec.secrets = from.secrets.clone();
        from.process.apply_to(&mut spec);

        for (k, v) in &self.env {
            let value = template::fill(v, &values)
                .map_err(|e| usage(format!("--env {k}: {e}{}", nothing_live(&e))))?;
            spec.environment.insert(k.clone(), value);
        }
        for (k, reference) in &self.secrets {
            let parsed: SecretRef = reference
                .parse()
                .map_err(|e| usage(format!("--secret {k}: {e}")))?;
            spec.secrets.insert(k.clone(), parsed);
        }
        if self.credentials {
            spec.secret_delivery = SecretDelivery::Credentials;
        }
        if let Some(dir) = &self.cwd {
            spec.working_directory = Some(dir.clone());
        }
        if let Some(user) = &self.user {
            spec.user = Some(user.clone());
        }
        let r = &mut spec.restart;
        r.policy = self.restart.unwrap_or(r.policy);
        r.backoff_initial = self.backoff.unwrap_or(r.backoff_initial);
        r.backoff_max = self.backoff_max.unwrap_or(r.backoff_max);
        r.start_limit_burst = self.start_limit.unwrap_or(r.start_limit_burst);
        r.start_limit_interval = self.start_limit_interval.unwrap_or(r.start_limit_interval);
        spec.stop.timeout = self.stop_timeout.unwrap_or(spec.stop.timeout);
        spec.start_timeout = self.start_timeout.unwrap_or(spec.start_timeout);
        if self.notify {
            spec.readiness = Readiness::Notify;
        }
        if let Some(address) = self.socket {
            spec.socket = Some(ListenSocket { address });
        }
        let l = &mut spec.limits;
        l.nofile = self.nofile.or(l.nofile);
        l.memory_max = self.memory_max.or(l.memory_max);
        l.tasks_max = self.tasks_max.or(l.tasks_max);
        l.cpu_quota_percent = self.cpu_quota.or(l.cpu_quota_percent);
        if self.allow_egress {
            spec.network = NetworkAccess::Egress;
        }
        spec.validate()?;
        Ok(spec)
    }
}

/// A [`Target`] with the manifest's defaults filled in.
struct Resolved<'a> {
    name: String,
    root: PathBuf,
    target: &'a Target,
}

impl Target {
    fn resolve(&self, from: &FromManifest) -> anyhow::Result<Resolved<'_>> {
        Ok(Resolved {
            name: from.name(self.name.as_ref())?,
            root: from.root(self.root.as_ref())?,
            target: self,
        })
    }
}

fn supervised(resolved: &Resolved<'_>) -> SupervisedManager {
    let target = resolved.target;
    let mut config = SupervisedConfig::for_root(&resolved.root);
    if let Some(program) = &target.supervisor {
        config = config.with_supervisor_program(program);
    }
    SupervisedManager::new(config)
}

fn systemd(resolved: &Resolved<'_>) -> SystemdManager<SystemCommandRunner> {
    let target = resolved.target;
    let mut config = SystemdConfig::for_root(&resolved.root, &resolved.name)
        .with_systemctl(target.systemctl.clone())
        .with_unit_dir(target.unit_dir.clone());
    config.unit.exec_shim = std::env::current_exe().ok();
    SystemdManager::new(config, SystemCommandRunner::default())
}

fn manager(kind: ManagerKind, target: &Resolved<'_>) -> Box<dyn ProcessManager> {
    match kind {
        ManagerKind::Supervised => Box::new(supervised(target)),
        ManagerKind::Systemd => Box::new(systemd(target)),
    }
}

/// `--manager`, else `[process].manager`, else the built-in supervisor.
fn manager_kind(flag: Option<ManagerKind>, from: &FromManifest) -> ManagerKind {
    flag.unwrap_or(match from.process.manager {
        Some(process_control::ManagerKind::Systemd) => ManagerKind::Systemd,
        Some(process_control::ManagerKind::Supervised) | None => ManagerKind::Supervised,
    })
}

fn main() -> ExitCode {
    cutover_cli::exit(run_main())
}

fn run_main() -> Result<i32, Failure> {
    let args: Vec<OsString> = std::env::args_os().collect();
    if let Some(result) = process_control::run_hidden_mode(&args) {
        return result.map_err(|err| Failure::line(127, format!("cutover-proc: {err}")));
    }
    let cli: Cli = cutover_cli::parse()?;
    cli.common.init_logging();
    let from = load(&cli)?;
    run(&cli, &from).map_err(|err| {
        let code = exit_code_for(&err);
        let failure = Failure::new(code, format!("{err:#}"));
        if cli.common.json {
            failure.with_json(json!({
                "status": if code == EXIT_UNKNOWN { Status::Unknown } else { Status::Fail },
                "error": format!("{err:#}"),
            }))
        } else {
            failure
        }
    })
}

/// What the manifest says, if there is one; an invalid one is exit 78, a deployment that
/// cannot be read its own code.
fn load(cli: &Cli) -> Result<FromManifest, Failure> {
    match cli.common.manifest() {
        Ok(None) => Ok(FromManifest::default()),
        Ok(Some(manifest)) => match FromManifest::load(&manifest) {
            Ok(from) => Ok(from),
            Err(LiveError::Manifest(err)) => Err(config_error(cli, err)),
            Err(err) => {
                let failure = Failure::new(err.exit_code(), &err);
                Err(if cli.common.json {
                    failure.with_json(json!({
                        "status": Status::Unknown,
                        "error": err.to_string(),
                    }))
                } else {
                    failure
                })
            }
        },
        Err(err) => Err(config_error(cli, err)),
    }
}

/// An invalid manifest (file:line:col and key): exit 78.
fn config_error(cli: &Cli, err: cutover_cli::ManifestError) -> Failure {
    let doc = json!({
        "status": Status::Unknown,
        "error": err.to_string(),
    });
    let failure = Failure::from(err);
    if cli.common.json {
        failure.with_json(doc)
    } else {
        failure
    }
}

/// A manifest value that cannot be used where it is (exit 78).
#[derive(Debug)]
struct ConfigValue(String);

impl std::fmt::Display for ConfigValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ConfigValue {}

fn config_value(message: String) -> anyhow::Error {
    anyhow::Error::new(ConfigValue(message))
}

/// A flag that is missing or cannot be used (`--name`, `--secret …`, the command after `--`):
/// exit 64.
#[derive(Debug)]
struct Usage(String);

impl std::fmt::Display for Usage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Usage {}

fn usage(message: String) -> anyhow::Error {
    anyhow::Error::new(Usage(message))
}

fn exit_code_for(err: &anyhow::Error) -> i32 {
    if err.downcast_ref::<ConfigValue>().is_some() {
        return cutover_cli::EXIT_CONFIG;
    }
    if err.downcast_ref::<Usage>().is_some() {
        return EXIT_USAGE;
    }
    if let Some(live) = err.downcast_ref::<LiveError>() {
        return live.exit_code();
    }
    match err.downcast_ref::<ProcError>() {
        Some(ProcError::InvalidSpec { .. } | ProcError::Render { .. }) => EXIT_USAGE,
        Some(ProcError::NotInstalled { .. }) => EXIT_UNKNOWN,
        Some(_) | None => EXIT_FAIL,
    }
}

fn run(cli: &Cli, from: &FromManifest) -> anyhow::Result<i32> {
    let json_out = cli.common.json;
    let kind = manager_kind(cli.manager, from);
    match &cli.command {
        Cmd::Start { target, spec } => {
            let target = target.resolve(from)?;
            let spec = spec.spec(&target.name, &target.root, from)?;
            let outcome = manager(kind, &target).start(&spec)?;
            let code = outcome.status.state.exit_code().min(EXIT_FAIL);
            let verb = if outcome.already_running {
                "already running"
            } else {
                "started"
            };
            if json_out {
                cutover_cli::print_json(&json!({
                    "status": verdict(code),
                    "action": verb,
                    "already_running": outcome.already_running,
                    "recovered_orphan": outcome.recovered_orphan,
                    "service": outcome.status,
                }))?;
            } else {
                if let Some(pid) = outcome.recovered_orphan {
                    cutover_cli::outln!("stopped unsupervised pid {pid} left by a dead supervisor");
                }
                cutover_cli::outln!("{}: {verb}", target.name);
                print_status(&outcome.status);
            }
            Ok(code)
        }
        Cmd::Stop { target, grace } => {
            let target = target.resolve(from)?;
            let outcome = manager(kind, &target).stop(&target.name, *grace)?;
            if json_out {
                cutover_cli::print_json(&json!({"status": Status::Ok, "stop": outcome}))?;
            } else if outcome.was_running {
                cutover_cli::outln!(
                    "{}: stopped in {}{}",
                    target.name,
                    humantime::format_duration(round_ms(outcome.took)),
                    if outcome.killed {
                        " (SIGKILL after the grace period)"
                    } else {
                        ""
                    }
                );
            } else {
                cutover_cli::outln!("{}: was not running", target.name);
            }
            Ok(EXIT_OK)
        }
        Cmd::Restart {
            target,
            grace,
            spec,
        } => {
            let target = target.resolve(from)?;
            let spec = if spec.argv.is_empty() && from.start.is_none() {
                match kind {
                    ManagerKind::Supervised => supervised(&target).installed_spec(&target.name)?,
                    ManagerKind::Systemd => {
                        return Err(usage(
                            "--manager systemd restart needs the command after -- to render the unit"
                                .to_owned(),
                        ));
                    }
                }
            } else {
                spec.spec(&target.name, &target.root, from)?
            };
            let outcome = manager(kind, &target).restart(&spec, *grace)?;
            let code = outcome.status.state.exit_code().min(EXIT_FAIL);
            if json_out {
                cutover_cli::print_json(
                    &json!({"status": verdict(code), "service": outcome.status}),
                )?;
            } else {
                cutover_cli::outln!("{}: restarted", target.name);
                print_status(&outcome.status);
            }
            Ok(code)
        }
        Cmd::Status { target } => {
            if target.name.is_none()
                && let Some(live) = from.live()?
            {
                return slots_status(kind, target, from, &live, json_out);
            }
            let target = target.resolve(from)?;
            let status = match manager(kind, &target).status(&target.name) {
                Ok(s) => s,
                Err(err) => {
                    if json_out {
                        cutover_cli::print_json(
                            &json!({"status": Status::Unknown, "error": err.to_string()}),
                        )?;
                    }
                    eprintln!("error: {err}");
                    return Ok(EXIT_UNKNOWN);
                }
            };
            let code = status.state.exit_code();
            if json_out {
                cutover_cli::print_json(&json!({"status": verdict(code), "service": status}))?;
            } else {
                print_status(&status);
            }
            Ok(code)
        }
        Cmd::Logs {
            target,
            lines,
            follow,
        } => {
            let target = target.resolve(from)?;
            logs(kind, &target, *lines, *follow)
        }
        Cmd::Unit {
            name,
            root,
            exec_shim,
            spec,
        } => {
            let name = from.name(name.as_ref())?;
            let root = root
                .clone()
                .or_else(|| from.root.clone())
                .unwrap_or_else(|| PathBuf::from("/opt/cutover"));
            let spec = spec.spec(&name, &root, from)?;
            let mut options = UnitOptions::for_layout(&root, &name);
            options.exec_shim = exec_shim.clone().or_else(|| std::env::current_exe().ok());
            let units = render_units(&spec, &options)?;
            if json_out {
                cutover_cli::print_json(&json!({
                    "status": Status::Ok,
                    "service_name": units.service_name,
                    "service": units.service,
                    "socket_name": units.socket.as_ref().map(|s| &s.0),
                    "socket": units.socket.as_ref().map(|s| &s.1),
                }))?;
            } else {
                cutover_cli::outln!("# {}", units.service_name);
                cutover_cli::out!("{}", units.service);
                if let Some((socket_name, text)) = &units.socket {
                    cutover_cli::outln!("\n# {socket_name}");
                    cutover_cli::out!("{text}");
                }
            }
            Ok(EXIT_OK)
        }
    }
}

/// `status` with no `--name` for a manifest that describes a deployment: every slot of
/// `[service].name`, which is live and which is the standby. The exit code is the live slot's
/// (2 when nothing is deployed: nothing of the deployment runs).
fn slots_status(
    kind: ManagerKind,
    target: &Target,
    from: &FromManifest,
    live: &LiveState,
    json_out: bool,
) -> anyhow::Result<i32> {
    let root = from.root(target.root.as_ref())?;
    let mut slots = Vec::new();
    let mut code = if live.is_deployed() {
        EXIT_UNKNOWN
    } else {
        EXIT_FAIL
    };
    for slot in &live.slots {
        let resolved = Resolved {
            name: slot.name.clone(),
            root: root.clone(),
            target,
        };
        let status = manager(kind, &resolved).status(&slot.name);
        if slot.role == live_deployment::Role::Live {
            code = status
                .as_ref()
                .map_or(EXIT_UNKNOWN, |s| s.state.exit_code());
        }
        slots.push((slot, status));
    }
    if json_out {
        let slots_json: Vec<_> = slots
            .iter()
            .map(|(slot, status)| {
                json!({
                    "slot": slot.slot,
                    "name": slot.name,
                    "role": slot.role,
                    "release": slot.release,
                    "addr": slot.addr,
                    "service": status.as_ref().ok(),
                    "error": status.as_ref().err().map(ToString::to_string),
                })
            })
            .collect();
        cutover_cli::print_json(&json!({
            "status": verdict(code),
            "release": live.release,
            "slot": live.slot,
            "url": live.url,
            "live": live.describe(),
            "slots": slots_json,
        }))?;
    } else {
        cutover_cli::outln!("{}", live.describe());
        for (slot, status) in &slots {
            cutover_cli::outln!(
                "[{}] {} {}",
                slot.role.as_str(),
                slot.slot,
                slot.release.as_deref().unwrap_or("-")
            );
            match status {
                Ok(status) => print_status(status),
                Err(err) => cutover_cli::outln!("{}: unknown ({err})", slot.name),
            }
        }
    }
    Ok(code)
}

fn logs(
    kind: ManagerKind,
    target: &Resolved<'_>,
    lines: usize,
    follow: bool,
) -> anyhow::Result<i32> {
    match manager(kind, target).logs(&target.name) {
        LogLocation::File { path, .. } => {
            let mut out = std::io::stdout().lock();
            for line in tail_log(&path, lines)? {
                writeln!(out, "{line}")?;
            }
            out.flush()?;
            drop(out);
            if follow {
                follow_file(&path)?;
            }
            Ok(EXIT_OK)
        }
        LogLocation::Journal { unit } => {
            let mut command = std::process::Command::new("journalctl");
            command.args(["-u", &unit, "-n", &lines.to_string(), "--no-pager"]);
            if follow {
                command.arg("--follow");
            }
            let status = command.status()?;
            Ok(if status.success() { EXIT_OK } else { EXIT_FAIL })
        }
    }
}

fn verdict(code: i32) -> Status {
    match code {
        0 => Status::Ok,
        1 => Status::Warn,
        2 => Status::Fail,
        _ => Status::Unknown,
    }
}

fn round_ms(d: Duration) -> Duration {
    Duration::from_millis(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

fn print_status(status: &ServiceStatus) {
    let mut line = format!("{} ({}): {}", status.name, status.manager, status.state);
    if let Some(pid) = status.pid {
        line.push_str(&format!(", pid {pid}"));
    }
    if let Some(up) = status.uptime {
        line.push_str(&format!(
            ", up {}",
            humantime::format_duration(Duration::from_secs(up.as_secs()))
        ));
    }
    line.push_str(&format!(", {} restarts", status.restart_count));
    cutover_cli::outln!("{line}");
    if let Some(message) = &status.message {
        cutover_cli::outln!("  {message}");
    }
    if let Some(exit) = &status.last_exit {
        cutover_cli::outln!("  last exit: {}", exit.description);
    }
    if let (Some(rss), Some(cpu)) = (status.rss_bytes, status.cpu_time_ms) {
        cutover_cli::outln!(
            "  memory {:.1} MiB, cpu {} ms ({:.1} % average)",
            rss as f64 / (1 << 20) as f64,
            cpu,
            status.cpu_percent.unwrap_or(0.0)
        );
    }
    if status.state == ServiceState::Orphaned {
        cutover_cli::outln!("  run `cutover-proc start` again to recover");
    }
    match &status.logs {
        LogLocation::File { path, .. } => cutover_cli::outln!("  logs: {}", path.display()),
        LogLocation::Journal { unit } => cutover_cli::outln!("  logs: journalctl -u {unit}"),
    }
}

/// Prints what is appended to `path`, following rotation (a new inode or a shorter file),
/// until the process is interrupted.
fn follow_file(path: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::MetadataExt;
    let open = |p: &Path| -> Option<(std::fs::File, u64)> {
        let f = std::fs::File::open(p).ok()?;
        let ino = f.metadata().ok()?.ino();
        Some((f, ino))
    };
    let mut current = open(path).map(|(mut f, ino)| {
        let _ = f.seek(SeekFrom::End(0));
        (f, ino)
    });
    let mut buf = vec![0u8; 64 * 1024];
    let mut out = std::io::stdout();
    loop {
        let mut wrote = false;
        if let Some((file, _)) = current.as_mut() {
            loop {
                let n = file.read(&mut buf)?;
                if n == 0 {
                    break;
                }
                out.write_all(&buf[..n])?;
                wrote = true;
            }
        }
        if wrote {
            out.flush()?;
        }
        let rotated = match (&current, std::fs::metadata(path)) {
            (Some((file, ino)), Ok(meta)) => meta.ino() != *ino || meta.len() < file_pos(file),
            (None, Ok(_)) => true,
            _ => false,
        };
        if rotated {
            current = open(path);
            continue;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn file_pos(file: &std::fs::File) -> u64 {
    let mut f = file;
    f.stream_position().unwrap_or(0)
}
