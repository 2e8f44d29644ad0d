//! The supervisor process (`PROGRAM __supervise --state-dir DIR`) and the exec shim
//! (`PROGRAM __exec-shim …`).
//!
//! # Theory of operation
//! The supervisor starts detached: it calls `setsid()` (it is not a group leader, because
//! `start` spawns it without a process group of its own), becomes a child subreaper (so that
//! orphaned descendants of the service are reparented to it and reaped), reads the secret
//! values from its standard input (a pipe the caller closes), and blocks SIGCHLD, SIGTERM,
//! SIGINT and SIGHUP in favour of a signalfd. One single-threaded `poll` loop then waits on
//! the signalfd, the pipe carrying the service's stdout+stderr (copied to the rotated log),
//! the `NOTIFY_SOCKET` datagram socket, and the next deadline (readiness, backoff, kill).
//!
//! The service runs in its own process group (`process_group(0)`). With a socket to hand
//! over, it is started through the exec shim: a `pre_exec` hook that calls only `dup2`,
//! `fcntl` and `setrlimit` (async-signal-safe) puts the listener on fd 3 without
//! close-on-exec, and the shim, now running as the service's pid, sets `LISTEN_FDS=1` and
//! `LISTEN_PID` to its own pid and execs the service, keeping that pid.
//!
//! Every transition is written to `state.json` atomically. SIGTERM to the supervisor means
//! "stop": the grace period comes from `stop-request.json` (written by `stop`), the stop
//! signal goes to the group, SIGKILL follows after the grace, and the supervisor exits once no
//! member of the group runs.
//!
//! A descendant that called `setsid()` (or `setpgid()`) has left the group, so the group
//! signal misses it; as a child subreaper the supervisor inherits it when its parent dies.
//! Once the group is gone, the supervisor therefore sweeps every process still descending
//! from it (found by walking `/proc` parent pids): SIGTERM, then SIGKILL when the grace period
//! ends, reaping each. It exits only when nothing descends from it any more, so `stop` leaves
//! no process behind. When the main process exits on its own, what it left behind (group and
//! sweep alike) is killed, like systemd's `KillMode=control-group`. No cgroup is needed.

use std::collections::{BTreeMap, VecDeque};
use std::ffi::OsString;
use std::io::Read;
use std::net::TcpListener;
use std::os::fd::{AsFd, AsRawFd};
use std::os::unix::net::UnixDatagram;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::signal::{SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::Pid;
use secret_refs::{CommandSecretExt, Secret};

use super::logfile::RotatingLog;
use super::state::{
    Plan, RestartRecord, SecretPayload, ServicePaths, StopRequest, SupervisedState, now_ms,
};
use crate::identity::{ProcStat, ProcessGroup, ProcessIdentity, running_descendants};
use crate::spec::SecretDelivery;
use crate::{ExitInfo, ProcError, Readiness, ServiceState};

/// The first argument that runs a program in supervisor mode.
pub const SUPERVISE_MODE: &str = "__supervise";
/// The first argument that runs a program as the exec shim.
pub const EXEC_SHIM_MODE: &str = "__exec-shim";

/// Runs the hidden supervisor or exec-shim mode when `args` (the whole argv, program first)
/// asks for one; returns `None` otherwise. A binary that is to serve as the supervisor program
/// calls this first thing in `main` and exits with the code it returns:
///
/// ```no_run
/// // First thing in `main`:
/// let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
/// if let Some(result) = process_control::run_hidden_mode(&args) {
///     match result {
///         Ok(code) => std::process::exit(code),
///         Err(err) => {
///             eprintln!("error: {err}");
///             std::process::exit(127)
///         }
///     }
/// }
/// // … the binary's own argument parsing …
/// ```
///
/// The supervisor mode returns only when the service is stopped or failed; the shim mode
/// returns only when the exec fails.
pub fn run_hidden_mode(args: &[OsString]) -> Option<Result<i32, ProcError>> {
    let mode = args.get(1)?;
    if mode == SUPERVISE_MODE {
        let dir = match (args.get(2), args.get(3)) {
            (Some(flag), Some(dir)) if flag == "--state-dir" => PathBuf::from(dir),
            _ => {
                return Some(Err(ProcError::InvalidSpec {
                    name: String::new(),
                    reason: format!("usage: PROGRAM {SUPERVISE_MODE} --state-dir DIR"),
                }));
            }
        };
        Some(run_supervisor(&dir))
    } else if mode == EXEC_SHIM_MODE {
        Some(run_exec_shim(&args[2..]))
    } else {
        None
    }
}

/// The exec shim: `__exec-shim [--listen-fds N] [--credential-env NAME]… -- PROGRAM ARGS…`.
///
/// Sets `LISTEN_FDS=N` and `LISTEN_PID=<own pid>` (when N > 0), sets each `NAME` to the
/// contents of `$CREDENTIALS_DIRECTORY/NAME` (how a systemd unit delivers credentials as
/// environment variables), then execs the program, keeping the pid.
fn run_exec_shim(args: &[OsString]) -> Result<i32, ProcError> {
    let usage = |reason: &str| ProcError::InvalidSpec {
        name: String::new(),
        reason: format!("{EXEC_SHIM_MODE}: {reason}"),
    };
    let mut listen_fds = 0u32;
    let mut credential_env: Vec<String> = Vec::new();
    let mut i = 0;
    while i < args.len() && args[i] != "--" {
        let value = args
            .get(i + 1)
            .and_then(|v| v.to_str())
            .ok_or_else(|| usage("a flag lacks its value"))?;
        match args[i].to_str() {
            Some("--listen-fds") => {
                listen_fds = value.parse().map_err(|_| usage("bad --listen-fds"))?;
            }
            Some("--credential-env") => credential_env.push(value.to_owned()),
            _ => return Err(usage("unknown flag")),
        }
        i += 2;
    }
    let argv = args.get(i + 1..).unwrap_or_default();
    let program = argv.first().ok_or_else(|| usage("no program after --"))?;
    let mut command = Command::new(program);
    command.args(&argv[1..]);
    if listen_fds > 0 {
        command
            .env("LISTEN_FDS", listen_fds.to_string())
            .env("LISTEN_PID", std::process::id().to_string());
    }
    if !credential_env.is_empty() {
        let dir = std::env::var_os("CREDENTIALS_DIRECTORY")
            .map(PathBuf::from)
            .ok_or_else(|| usage("CREDENTIALS_DIRECTORY is not set"))?;
        for name in &credential_env {
            let path = dir.join(name);
            let value =
                std::fs::read_to_string(&path).map_err(ProcError::io("read credential", &path))?;
            command
                .secret_env(name, &Secret::new(value))
                .map_err(|source| ProcError::Secret {
                    name: String::new(),
                    secret: name.clone(),
                    error: Box::new(source),
                })?;
        }
    }
    let err = command.exec();
    Err(ProcError::Os {
        name: String::new(),
        action: format!("exec {}", Path::new(program).display()),
        error: err,
    })
}

/// Where the supervisor is in the life of the service.
#[derive(Debug, Clone, Copy)]
enum Phase {
    Starting {
        deadline: Instant,
        next_probe: Instant,
    },
    Running,
    Backoff {
        until: Instant,
    },
    Stopping {
        kill_at: Instant,
        give_up_at: Instant,
    },
    Done,
}

#[derive(Debug, Clone, Copy)]
struct Current {
    id: ProcessIdentity,
    started: Instant,
}

struct Supervisor {
    paths: ServicePaths,
    plan: Plan,
    log: RotatingLog,
    state: SupervisedState,
    secrets: BTreeMap<String, Secret>,
    listener: Option<TcpListener>,
    notify: Option<(UnixDatagram, OsString)>,
    log_reader: std::io::PipeReader,
    log_writer: std::io::PipeWriter,
    session: u32,
    shim: PathBuf,
    current: Option<Current>,
    /// The group of the last service process, kept until none of its members runs.
    group: Option<ProcessGroup>,
    phase: Phase,
    consecutive_failures: u32,
    starts: VecDeque<Instant>,
    pending_reason: Option<String>,
    killed_after_grace: bool,
    /// Whether the descendants left outside the group were sent SIGTERM in this stop.
    swept: bool,
}

fn run_supervisor(dir: &Path) -> Result<i32, ProcError> {
    let os = |action: &str| ProcError::os("", action.to_owned());
    // Not a group leader (spawned without a process group), so setsid() succeeds.
    let session = rustix::process::setsid()
        .map_err(|e| os("setsid")(e.into()))?
        .as_raw_nonzero()
        .get()
        .unsigned_abs();
    let me = rustix::process::getpid();
    rustix::process::set_child_subreaper(Some(me))
        .map_err(|e| os("become a child subreaper")(e.into()))?;

    let mut payload = Vec::new();
    std::io::stdin()
        .read_to_end(&mut payload)
        .map_err(|e| os("read secrets from stdin")(e))?;
    let values: SecretPayload = if payload.is_empty() {
        SecretPayload::new()
    } else {
        serde_json::from_slice(&payload).map_err(|source| ProcError::Corrupt {
            path: PathBuf::from("<stdin>"),
            error: source,
        })?
    };
    payload.fill(0);
    let secrets: BTreeMap<String, Secret> = values
        .into_iter()
        .map(|(k, v)| (k, Secret::new(v)))
        .collect();

    let probe = ServicePaths {
        dir: dir.to_path_buf(),
        log: PathBuf::new(),
    };
    let plan = Plan::load(&probe.plan())?.ok_or_else(|| ProcError::NotInstalled {
        name: String::new(),
        path: probe.plan(),
    })?;
    let paths = ServicePaths {
        dir: dir.to_path_buf(),
        log: plan.log_path.clone(),
    };
    let log = RotatingLog::open(&paths.log, plan.log_max_bytes, plan.log_keep)
        .map_err(ProcError::io("open log", &paths.log))?;
    let (log_reader, log_writer) = std::io::pipe().map_err(|e| os("create the log pipe")(e))?;
    let shim =
        std::env::current_exe().map_err(|e| os("find the supervisor's own executable")(e))?;

    let mut state = SupervisedState::new(ServiceState::Starting);
    state.supervisor = ProcessIdentity::of(std::process::id());
    let mut supervisor = Supervisor {
        paths,
        plan,
        log,
        state,
        secrets,
        listener: None,
        notify: None,
        log_reader,
        log_writer,
        session,
        shim,
        current: None,
        group: None,
        phase: Phase::Done,
        consecutive_failures: 0,
        starts: VecDeque::new(),
        pending_reason: None,
        killed_after_grace: false,
        swept: false,
    };
    match supervisor.prepare() {
        Ok(()) => supervisor.run(),
        Err(err) => {
            supervisor.log.note(&format!("cannot start: {err}"));
            supervisor.state.state = ServiceState::Failed;
            supervisor.state.message = Some(err.to_string());
            supervisor.save();
            Ok(1)
        }
    }
}

fn describe(status: WaitStatus) -> Option<(u32, ExitInfo)> {
    let (pid, code, signal, description) = match status {
        WaitStatus::Exited(pid, code) => {
            (pid, Some(code), None, format!("exited with code {code}"))
        }
        WaitStatus::Signaled(pid, sig, core) => (
            pid,
            None,
            Some(sig as i32),
            format!(
                "killed by {}{}",
                sig.as_str(),
                if core { " (core dumped)" } else { "" }
            ),
        ),
        _ => return None,
    };
    Some((
        pid.as_raw().unsigned_abs(),
        ExitInfo {
            code,
            signal,
            description,
            at_ms: now_ms(),
        },
    ))
}

impl Supervisor {
    fn spec(&self) -> &crate::ServiceSpec {
        &self.plan.spec
    }

    fn save(&mut self) {
        if let Err(err) = self.state.save(&self.paths.state()) {
            self.log.note(&format!("cannot write state: {err}"));
        }
    }

    fn set_state(&mut self, state: ServiceState, message: Option<String>) {
        self.state.state = state;
        self.state.message = message;
        self.save();
    }

    /// Binds the socket, the notify socket, writes credentials: everything done once.
    fn prepare(&mut self) -> Result<(), ProcError> {
        let name = self.spec().name.clone();
        self.log.note(&format!(
            "supervisor {} starting `{name}` ({} restart policy)",
            std::process::id(),
            self.spec().restart.policy.as_str()
        ));
        if let Some(percent) = self.spec().limits.cpu_quota_percent {
            self.log.note(&format!(
                "cpu_quota_percent = {percent} is not applied: a CPU quota needs systemd (CPUQuota=)"
            ));
        }
        if let Some(socket) = self.spec().socket.clone() {
            let listener = TcpListener::bind(socket.address).map_err(ProcError::os(
                &name,
                format!("listen on {}", socket.address),
            ))?;
            self.log
                .note(&format!("holding listening socket {}", socket.address));
            self.listener = Some(listener);
        }
        if self.spec().readiness == Readiness::Notify {
            self.notify = Some(self.bind_notify_socket()?);
        }
        if self.spec().secret_delivery == SecretDelivery::Credentials && !self.secrets.is_empty() {
            let entries: Vec<(&str, &Secret)> =
                self.secrets.iter().map(|(k, v)| (k.as_str(), v)).collect();
            secret_refs::write_credentials_dir(&self.paths.credentials(), &entries).map_err(
                |source| ProcError::Secret {
                    name: name.clone(),
                    secret: "(credentials directory)".into(),
                    error: Box::new(source),
                },
            )?;
        }
        let mask = supervisor_signals();
        mask.thread_block()
            .map_err(|e| ProcError::os(&name, "block signals")(e.into()))?;
        self.spawn();
        Ok(())
    }

    fn bind_notify_socket(&self) -> Result<(UnixDatagram, OsString), ProcError> {
        let path = self.paths.notify_socket();
        let name = &self.spec().name;
        // sun_path holds 108 bytes; a long state path falls back to the abstract namespace.
        if path.as_os_str().len() < 100 {
            let _ = std::fs::remove_file(&path);
            let socket = UnixDatagram::bind(&path)
                .map_err(ProcError::os(name, format!("bind {}", path.display())))?;
            socket
                .set_nonblocking(true)
                .map_err(ProcError::os(name, "configure the notify socket"))?;
            Ok((socket, path.into_os_string()))
        } else {
            use std::os::linux::net::SocketAddrExt;
            let abstract_name = format!(
                "cutover-proc/{}/{}",
                std::process::id(),
                self.state.supervisor.map_or(0, |s| s.start_time)
            );
            let addr = std::os::unix::net::SocketAddr::from_abstract_name(abstract_name.as_bytes())
                .map_err(ProcError::os(name, "name the notify socket"))?;
            let socket = UnixDatagram::bind_addr(&addr)
                .map_err(ProcError::os(name, "bind the abstract notify socket"))?;
            socket
                .set_nonblocking(true)
                .map_err(ProcError::os(name, "configure the notify socket"))?;
            Ok((socket, OsString::from(format!("@{abstract_name}"))))
        }
    }

    fn build_command(&self) -> Result<Command, ProcError> {
        let spec = self.spec();
        let mut command = if self.listener.is_some() {
            let mut c = Command::new(&self.shim);
            c.arg(EXEC_SHIM_MODE)
                .args(["--listen-fds", "1", "--"])
                .args(&spec.argv);
            c
        } else {
            let mut c = Command::new(&spec.argv[0]);
            c.args(&spec.argv[1..]);
            c
        };
        command
            .env_remove("LISTEN_FDS")
            .env_remove("LISTEN_PID")
            .env_remove("LISTEN_FDNAMES")
            .env_remove("NOTIFY_SOCKET")
            .envs(&spec.environment)
            .stdin(Stdio::null())
            .process_group(0);
        let writer = |w: &std::io::PipeWriter| {
            w.try_clone()
                .map_err(ProcError::os(&spec.name, "duplicate the log pipe"))
        };
        command
            .stdout(writer(&self.log_writer)?)
            .stderr(writer(&self.log_writer)?);
        if let Some(dir) = &spec.working_directory {
            command.current_dir(dir);
        } else {
            command.current_dir("/");
        }
        match spec.secret_delivery {
            SecretDelivery::Environment => {
                command
                    .secret_envs(self.secrets.iter().map(|(k, v)| (k.as_str(), v)))
                    .map_err(|source| ProcError::Secret {
                        name: spec.name.clone(),
                        secret: "(environment)".into(),
                        error: Box::new(source),
                    })?;
            }
            SecretDelivery::Credentials if !self.secrets.is_empty() => {
                command.env("CREDENTIALS_DIRECTORY", self.paths.credentials());
            }
            SecretDelivery::Credentials => {}
        }
        if let Some((_, name)) = &self.notify {
            command.env("NOTIFY_SOCKET", name);
        }
        if let Some(user) = &spec.user {
            let found = nix::unistd::User::from_name(user)
                .map_err(|e| ProcError::os(&spec.name, format!("look up user `{user}`"))(e.into()))?
                .ok_or_else(|| ProcError::InvalidSpec {
                    name: spec.name.clone(),
                    reason: format!("no user `{user}` on this host"),
                })?;
            command.uid(found.uid.as_raw()).gid(found.gid.as_raw());
        }
        let listen_fd = self.listener.as_ref().map(|l| l.as_raw_fd());
        // A limit the host cannot give is named here, not as EPERM from inside the exec.
        crate::limits::check_limits(spec, false)?;
        // What setrlimit can express; see `ResourceLimits` for how each differs from systemd.
        let rlimits: Vec<(RlimitResource, u64)> = [
            (libc::RLIMIT_NOFILE, spec.limits.nofile),
            (libc::RLIMIT_DATA, spec.limits.memory_max),
            (libc::RLIMIT_NPROC, spec.limits.tasks_max),
        ]
        .into_iter()
        .filter_map(|(resource, value)| value.map(|v| (resource, v)))
        .collect();
        let empty = empty_sigset();
        #[allow(unsafe_code)]
        // SAFETY: the hook runs between fork and exec and calls only pthread_sigmask, signal,
        // fcntl, dup2 and setrlimit (async-signal-safe) on values computed before the fork; it
        // allocates nothing and takes no lock.
        unsafe {
            command.pre_exec(move || {
                // The supervisor blocks SIGTERM & co. for its signalfd, and a blocked mask is
                // inherited: the service must start with nothing blocked and SIGPIPE default.
                if libc::pthread_sigmask(libc::SIG_SETMASK, &empty, std::ptr::null_mut()) != 0
                    || libc::signal(libc::SIGPIPE, libc::SIG_DFL) == libc::SIG_ERR
                {
                    return Err(std::io::Error::last_os_error());
                }
                if let Some(fd) = listen_fd {
                    // dup2 onto itself would keep close-on-exec, so fd 3 is cleared instead.
                    let rc = if fd == 3 {
                        libc::fcntl(3, libc::F_SETFD, 0)
                    } else {
                        libc::dup2(fd, 3)
                    };
                    if rc < 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                }
                for &(resource, n) in &rlimits {
                    let limit = libc::rlimit {
                        rlim_cur: n,
                        rlim_max: n,
                    };
                    if libc::setrlimit(resource, &limit) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                }
                Ok(())
            });
        }
        Ok(command)
    }

    fn spawn(&mut self) {
        let now = Instant::now();
        self.starts.push_back(now);
        let spawned = self.build_command().and_then(|mut c| {
            c.spawn().map_err(ProcError::os(
                &self.plan.spec.name,
                format!("run {}", self.plan.spec.argv[0]),
            ))
        });
        let child = match spawned {
            Ok(child) => child,
            Err(err) => {
                self.log.note(&format!("{err}"));
                let exit = ExitInfo {
                    code: None,
                    signal: None,
                    description: format!("could not start: {err}"),
                    at_ms: now_ms(),
                };
                self.after_exit(exit, Duration::ZERO);
                return;
            }
        };
        let pid = child.id();
        // The std handle is dropped: exits are collected by waitpid(-1) in the loop.
        drop(child);
        let id = ProcStat::read(pid).map_or(ProcessIdentity { pid, start_time: 0 }, |s| {
            ProcessIdentity {
                pid,
                start_time: s.start_time,
            }
        });
        let group = ProcessGroup {
            pgid: pid,
            session: self.session,
        };
        self.current = Some(Current { id, started: now });
        self.group = Some(group);
        self.state.service = Some(id);
        self.state.group = Some(group);
        self.state.started_at_ms = Some(now_ms());
        if let Some(last) = self.state.restarts.last_mut()
            && last.started_at_ms.is_none()
        {
            last.started_at_ms = Some(now_ms());
        }
        let readiness = self.spec().readiness.clone();
        let message = format!("started pid {pid}");
        self.log.note(&message);
        if readiness == Readiness::None {
            self.phase = Phase::Running;
            self.set_state(ServiceState::Running, Some(message));
        } else {
            self.phase = Phase::Starting {
                deadline: now + self.spec().start_timeout,
                next_probe: now,
            };
            self.set_state(
                ServiceState::Starting,
                Some(format!("{message}, waiting for readiness")),
            );
        }
    }

    fn run(&mut self) -> Result<i32, ProcError> {
        let name = self.spec().name.clone();
        let sigfd = SignalFd::with_flags(
            &supervisor_signals(),
            SfdFlags::SFD_NONBLOCK | SfdFlags::SFD_CLOEXEC,
        )
        .map_err(|e| ProcError::os(&name, "create a signalfd")(e.into()))?;
        let mut buf = vec![0u8; 64 * 1024];
        for _ in 0..u64::MAX {
            if matches!(self.phase, Phase::Done) {
                break;
            }
            let timeout = self.poll_timeout();
            let (sig_ready, log_ready, notify_ready) = {
                let mut fds = vec![
                    PollFd::new(sigfd.as_fd(), PollFlags::POLLIN),
                    PollFd::new(self.log_reader.as_fd(), PollFlags::POLLIN),
                ];
                if let Some((socket, _)) = &self.notify {
                    fds.push(PollFd::new(socket.as_fd(), PollFlags::POLLIN));
                }
                let ms = u16::try_from(timeout.as_millis().clamp(1, 10_000)).unwrap_or(10_000);
                match poll(&mut fds, PollTimeout::from(ms)) {
                    Ok(_) => {}
                    Err(nix::errno::Errno::EINTR) => continue,
                    Err(e) => return Err(ProcError::os(&name, "poll")(e.into())),
                }
                let ready = |fd: &PollFd<'_>| {
                    fd.revents()
                        .is_some_and(|r| r.intersects(PollFlags::POLLIN | PollFlags::POLLHUP))
                };
                (
                    ready(&fds[0]),
                    ready(&fds[1]),
                    fds.get(2).is_some_and(ready),
                )
            };
            if log_ready {
                self.pump_log(&mut buf);
            }
            if notify_ready {
                self.read_notify(&mut buf);
            }
            if sig_ready {
                while let Ok(Some(info)) = sigfd.read_signal() {
                    match Signal::try_from(i32::try_from(info.ssi_signo).unwrap_or(0)) {
                        Ok(Signal::SIGCHLD) => {}
                        Ok(Signal::SIGTERM | Signal::SIGINT) => self.begin_stop(),
                        Ok(other) => self.log.note(&format!("ignoring {}", other.as_str())),
                        Err(_) => {}
                    }
                }
            }
            // Reap on every turn: SIGCHLD coalesces, and a child may exit between turns.
            self.reap();
            self.on_timers();
        }
        // Drain what the service wrote last.
        self.pump_log(&mut buf);
        if self.notify.is_some() {
            let _ = std::fs::remove_file(self.paths.notify_socket());
        }
        let code = if self.state.state == ServiceState::Failed {
            1
        } else {
            0
        };
        self.log
            .note(&format!("supervisor exiting: {}", self.state.state));
        Ok(code)
    }

    fn poll_timeout(&self) -> Duration {
        let now = Instant::now();
        let until = |t: Instant| t.saturating_duration_since(now);
        match self.phase {
            Phase::Starting {
                deadline,
                next_probe,
            } => {
                let mut t = until(deadline);
                if matches!(self.spec().readiness, Readiness::Exec { .. }) {
                    t = t.min(until(next_probe));
                }
                t
            }
            Phase::Backoff { until: at } => until(at),
            Phase::Stopping { .. } => Duration::from_millis(20),
            // Also poll the group while running: leftovers of an exited service must be seen.
            Phase::Running | Phase::Done => Duration::from_millis(1000),
        }
    }

    fn pump_log(&mut self, buf: &mut [u8]) {
        // Read whatever is there without blocking: poll said readable, or this is the drain.
        for _ in 0..64 {
            let n = {
                let mut fds = [PollFd::new(self.log_reader.as_fd(), PollFlags::POLLIN)];
                let readable = poll(&mut fds, PollTimeout::ZERO).is_ok_and(|n| n > 0)
                    && fds[0]
                        .revents()
                        .is_some_and(|r| r.contains(PollFlags::POLLIN));
                if !readable {
                    return;
                }
                match (&self.log_reader).read(buf) {
                    Ok(0) | Err(_) => return,
                    Ok(n) => n,
                }
            };
            // Nowhere else to report a failed write; keep draining so the service never blocks.
            let _ = self.log.write(&buf[..n]);
        }
    }

    fn read_notify(&mut self, buf: &mut [u8]) {
        let mut ready = false;
        if let Some((socket, _)) = &self.notify {
            while let Ok(n) = socket.recv(buf) {
                let text = String::from_utf8_lossy(&buf[..n]);
                if text.lines().any(|l| l.trim() == "READY=1") {
                    ready = true;
                }
            }
        }
        if ready && matches!(self.phase, Phase::Starting { .. }) {
            self.mark_ready("READY=1 received");
        }
    }

    fn mark_ready(&mut self, how: &str) {
        self.phase = Phase::Running;
        let pid = self.current.map_or(0, |c| c.id.pid);
        self.log.note(&format!("pid {pid} is ready ({how})"));
        self.set_state(
            ServiceState::Running,
            Some(format!("pid {pid} ready ({how})")),
        );
    }

    fn reap(&mut self) {
        for _ in 0..10_000 {
            match waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::StillAlive) | Err(_) => return,
                Ok(status) => {
                    let Some((pid, mut exit)) = describe(status) else {
                        continue;
                    };
                    let Some(current) = self.current.filter(|c| c.id.pid == pid) else {
                        continue; // an orphaned descendant, now reaped
                    };
                    self.current = None;
                    if let Some(reason) = self.pending_reason.take() {
                        exit.description = format!("{reason}; {}", exit.description);
                    }
                    self.log.note(&format!("pid {pid} {}", exit.description));
                    self.after_exit(exit, current.started.elapsed());
                }
            }
        }
    }

    /// Decides what follows an exit of the main process (or a failed spawn).
    fn after_exit(&mut self, exit: ExitInfo, ran_for: Duration) {
        self.state.service = None;
        self.state.last_exit = Some(exit.clone());
        if let Phase::Stopping { .. } = self.phase {
            self.save();
            return;
        }
        // Like systemd's KillMode=control-group: what the main process left behind goes too.
        if let Some(group) = self.group
            && group.signal(Signal::SIGKILL)
        {
            self.log
                .note("killed what the service left in its process group");
        }
        let leftovers = self.leftovers();
        if !leftovers.is_empty() {
            for process in &leftovers {
                process.signal(Signal::SIGKILL);
            }
            self.log.note(&format!(
                "killed what the service left outside its process group (pids {})",
                pid_list(&leftovers)
            ));
        }
        let success = exit.success();
        let restart = self.spec().restart.clone();
        if !restart.policy.restarts_after(success) {
            let state = if success {
                ServiceState::Stopped
            } else {
                ServiceState::Failed
            };
            self.phase = Phase::Done;
            self.set_state(
                state,
                Some(format!(
                    "{}; not restarted ({} policy)",
                    exit.description,
                    restart.policy.as_str()
                )),
            );
            return;
        }
        if ran_for >= restart.reset_after {
            self.consecutive_failures = 0;
        }
        let now = Instant::now();
        while self
            .starts
            .front()
            .is_some_and(|t| now.duration_since(*t) > restart.start_limit_interval)
        {
            self.starts.pop_front();
        }
        if self.starts.len() >= restart.start_limit_burst as usize {
            let message = format!(
                "start limit hit: {} starts within {}; last: {}",
                self.starts.len(),
                humantime::format_duration(restart.start_limit_interval),
                exit.description
            );
            self.log.note(&message);
            self.phase = Phase::Done;
            self.set_state(ServiceState::Failed, Some(message));
            return;
        }
        self.consecutive_failures += 1;
        let delay = restart.delay(self.consecutive_failures);
        self.state.restart_count += 1;
        self.state.restarts.push(RestartRecord {
            exited_at_ms: exit.at_ms,
            delay_ms: u64::try_from(delay.as_millis()).unwrap_or(u64::MAX),
            started_at_ms: None,
        });
        if self.state.restarts.len() > 32 {
            self.state.restarts.remove(0);
        }
        self.phase = Phase::Backoff { until: now + delay };
        let message = format!(
            "{}; restart {} in {}",
            exit.description,
            self.state.restart_count,
            humantime::format_duration(delay)
        );
        self.log.note(&message);
        self.set_state(ServiceState::CrashLooping, Some(message));
    }

    fn on_timers(&mut self) {
        let now = Instant::now();
        match self.phase {
            Phase::Starting {
                deadline,
                next_probe,
            } => {
                if now >= deadline {
                    let timeout = self.spec().start_timeout;
                    self.pending_reason = Some(format!(
                        "not ready within {}",
                        humantime::format_duration(timeout)
                    ));
                    self.log
                        .note("readiness timeout: killing the process group");
                    if let Some(group) = self.group {
                        group.signal(Signal::SIGKILL);
                    }
                    // The exit arrives through reap(); avoid firing again meanwhile.
                    self.phase = Phase::Running;
                } else if now >= next_probe
                    && let Readiness::Exec { argv, interval } = self.spec().readiness.clone()
                {
                    if self.run_probe(&argv, interval) {
                        self.mark_ready("probe passed");
                    } else if let Phase::Starting { deadline, .. } = self.phase {
                        self.phase = Phase::Starting {
                            deadline,
                            next_probe: Instant::now() + interval,
                        };
                    }
                }
            }
            Phase::Backoff { until } if now >= until => self.spawn(),
            Phase::Stopping {
                kill_at,
                give_up_at,
            } => self.on_stopping_tick(now, kill_at, give_up_at),
            _ => {}
        }
    }

    /// One turn of a stop: the group first, then the sweep of what descends from the
    /// supervisor outside it (see the module docs), SIGKILL to both once the grace is over.
    fn on_stopping_tick(&mut self, now: Instant, kill_at: Instant, give_up_at: Instant) {
        let group_alive = self.group.is_some_and(|g| g.is_alive());
        let main_alive = group_alive || self.current.is_some();
        let past_grace = now >= kill_at;
        // The walk of /proc is only needed once the group is gone or the grace is over.
        let leftovers = if !main_alive || past_grace {
            self.leftovers()
        } else {
            Vec::new()
        };
        if !main_alive && leftovers.is_empty() {
            let message = if self.killed_after_grace {
                "stopped (SIGKILL after the grace period)"
            } else {
                "stopped"
            };
            self.log.note(message);
            self.phase = Phase::Done;
            self.state.service = None;
            self.set_state(ServiceState::Stopped, Some(message.into()));
        } else if now >= give_up_at {
            let message = if main_alive {
                "processes of the group survived SIGKILL".to_owned()
            } else {
                format!(
                    "processes that left the group survived SIGKILL (pids {})",
                    pid_list(&leftovers)
                )
            };
            self.log.note(&message);
            self.phase = Phase::Done;
            self.set_state(ServiceState::Failed, Some(message));
        } else if past_grace {
            if !self.killed_after_grace {
                self.killed_after_grace = true;
                self.log.note(&format!(
                    "grace period over: SIGKILL to the process group{}",
                    if leftovers.is_empty() {
                        String::new()
                    } else {
                        format!(" and to pids {}", pid_list(&leftovers))
                    }
                ));
                if let Some(group) = self.group {
                    group.signal(Signal::SIGKILL);
                }
            }
            // Every turn: a leftover may have forked since the last one.
            for process in &leftovers {
                process.signal(Signal::SIGKILL);
            }
        } else if !main_alive && !self.swept {
            self.swept = true;
            self.log.note(&format!(
                "the process group is gone; SIGTERM to what left it (pids {}), SIGKILL when the grace period ends",
                pid_list(&leftovers)
            ));
            for process in &leftovers {
                process.signal(Signal::SIGTERM);
            }
        }
    }

    /// Every running process descending from the supervisor: the service's group while it
    /// lives, and whatever left that group (by `setsid()` or `setpgid()`) and was kept in the
    /// supervisor's tree by the child subreaper.
    fn leftovers(&self) -> Vec<ProcessIdentity> {
        running_descendants(std::process::id())
            .into_iter()
            .map(|s| ProcessIdentity {
                pid: s.pid,
                start_time: s.start_time,
            })
            .collect()
    }

    fn run_probe(&mut self, argv: &[String], interval: Duration) -> bool {
        let mut command = Command::new(&argv[0]);
        command.args(&argv[1..]).stdin(Stdio::null());
        match self.log_writer.try_clone() {
            Ok(w) => command.stdout(w),
            Err(_) => command.stdout(Stdio::null()),
        };
        command.stderr(Stdio::null()).process_group(0);
        let empty = empty_sigset();
        #[allow(unsafe_code)]
        // SAFETY: only pthread_sigmask (async-signal-safe) on a set built before the fork.
        unsafe {
            command.pre_exec(move || {
                libc::pthread_sigmask(libc::SIG_SETMASK, &empty, std::ptr::null_mut());
                Ok(())
            });
        }
        let Ok(mut child) = command.spawn() else {
            return false;
        };
        let limit = (interval * 4).clamp(Duration::from_secs(1), Duration::from_secs(10));
        let end = Instant::now() + limit;
        loop {
            match child.try_wait() {
                Ok(Some(status)) => return status.success(),
                Ok(None) if Instant::now() < end => std::thread::sleep(Duration::from_millis(10)),
                _ => {
                    let _ = child.kill();
                    let _ = child.wait();
                    return false;
                }
            }
        }
    }

    fn begin_stop(&mut self) {
        if matches!(self.phase, Phase::Stopping { .. } | Phase::Done) {
            return;
        }
        let stop_request = self.paths.stop_request();
        let grace = StopRequest::load(&stop_request).map_or(self.spec().stop.timeout, |r| r.grace);
        let _ = std::fs::remove_file(&stop_request);
        let signal = self.spec().stop.signal;
        let alive = self.group.is_some_and(|g| g.is_alive());
        if !alive && self.current.is_none() && self.leftovers().is_empty() {
            self.phase = Phase::Done;
            self.state.service = None;
            self.set_state(ServiceState::Stopped, Some("stopped".into()));
            return;
        }
        self.log.note(&format!(
            "stopping: {} to the process group, SIGKILL after {}",
            signal.as_str(),
            humantime::format_duration(grace)
        ));
        if let Some(group) = self.group {
            group.signal(signal.signal());
        }
        let now = Instant::now();
        self.phase = Phase::Stopping {
            kill_at: now + grace,
            give_up_at: now + grace + Duration::from_secs(10),
        };
        self.set_state(
            ServiceState::Stopping,
            Some(format!("{} sent", signal.as_str())),
        );
    }
}

/// `12, 34` for a log line or a message.
fn pid_list(processes: &[ProcessIdentity]) -> String {
    let pids: Vec<String> = processes.iter().map(|p| p.pid.to_string()).collect();
    pids.join(", ")
}

/// An empty signal set, built before a fork so the child only copies it.
fn empty_sigset() -> libc::sigset_t {
    *SigSet::empty().as_ref()
}

/// The resource argument of `setrlimit` (its C type differs between libc flavours).
type RlimitResource = libc::__rlimit_resource_t;

fn supervisor_signals() -> SigSet {
    let mut mask = SigSet::empty();
    for s in [
        Signal::SIGCHLD,
        Signal::SIGTERM,
        Signal::SIGINT,
        Signal::SIGHUP,
    ] {
        mask.add(s);
    }
    mask
}
