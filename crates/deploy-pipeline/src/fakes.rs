//! In-memory fakes of every environment trait (feature `test-util`), sharing one picture of
//! the world: what runs where, what answers, where traffic goes.
//!
//! A fake service "runs release R on port P" when its argv contains both; the fake health
//! checks read that, so a start template such as `["app", "{release_id}", "{port}"]` makes
//! the fakes behave like the real thing.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use process_control::{
    InstallOutcome, LogLocation, ProcError, ProcessManager, ServiceSpec, ServiceState,
    ServiceStatus, StartOutcome, StopOutcome,
};

use crate::env::{
    Clock, CommandRequest, CommandResult, CommandRunner, Environment, Health, PerfGate, Target,
    Traffic,
};

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

#[derive(Debug, Default)]
struct World {
    /// The fake clock's monotonic time.
    monotonic: Duration,
    /// The proxy's backup server.
    backup: Option<SocketAddr>,
    running: BTreeMap<String, ServiceSpec>,
    events: Vec<String>,
    fail_start: BTreeSet<String>,
    exit_at_start: BTreeSet<String>,
    failed_services: BTreeSet<String>,
    ready_waits: usize,
    not_ready: BTreeSet<String>,
    /// Releases that pass this many readiness checks, then crash (stop answering).
    crash_after_checks: BTreeMap<String, u32>,
    invalid: BTreeSet<String>,
    slow_perf: BTreeSet<String>,
    failing_programs: BTreeSet<String>,
    refused_upstreams: BTreeSet<SocketAddr>,
    upstream: Option<SocketAddr>,
    proxy_running: bool,
    now: Option<jiff::Timestamp>,
    /// Canary: the weighted split routed (baseline, canary, canary percent).
    split: Option<(SocketAddr, SocketAddr, u8)>,
    /// Canary: the fake edge log, and what each upstream answers (fail every n-th request,
    /// 0 never; latency in ms).
    edge_log: Option<PathBuf>,
    edge_behaviour: BTreeMap<SocketAddr, (u64, u32)>,
    edge_requests: BTreeMap<SocketAddr, u64>,
}

/// The shared fake world; clone it freely (clones share state).
#[derive(Debug, Clone, Default)]
pub struct FakeWorld(Arc<Mutex<World>>);

impl FakeWorld {
    /// An empty world at 2025-01-01T00:00:00Z.
    pub fn new() -> Self {
        Self::default()
    }

    /// Canary: the proxy keeps an edge log at `path`; while a split is routed, every sleep of
    /// the fake clock appends 100 requests to it, split by the weight between the two
    /// upstreams, each answering as [`Self::edge_behaviour`] says (default: 20 ms, no failures).
    pub fn edge_log(&self, path: PathBuf) {
        lock(&self.0).edge_log = Some(path);
    }

    /// Canary: `upstream` fails every `fail_every`-th request it serves (0: never) and answers
    /// in `latency_ms`.
    pub fn edge_behaviour(&self, upstream: SocketAddr, fail_every: u64, latency_ms: u32) {
        lock(&self.0)
            .edge_behaviour
            .insert(upstream, (fail_every, latency_ms));
    }

    /// The weighted split routed now.
    pub fn split(&self) -> Option<(SocketAddr, SocketAddr, u8)> {
        lock(&self.0).split
    }

    /// An [`Environment`] whose every part is a view of this world.
    pub fn environment(&self) -> Environment {
        Environment {
            procs: Box::new(FakeProcs(self.clone())),
            traffic: Box::new(FakeTraffic(self.clone())),
            health: Box::new(FakeHealth(self.clone())),
            perf: Box::new(FakePerf(self.clone())),
            runner: Box::new(FakeRunner(self.clone())),
            clock: Box::new(FakeClock(self.clone())),
        }
    }

    /// Starting any service whose argv mentions `release` fails.
    pub fn fail_start(&self, release: &str) {
        lock(&self.0).fail_start.insert(release.to_owned());
    }
    /// Starting `release` succeeds but its process exits at once: the manager then reports
    /// the service `failed` (a binary that cannot start, or crashes while starting).
    pub fn exit_at_start(&self, release: &str) {
        lock(&self.0).exit_at_start.insert(release.to_owned());
    }
    /// How many times a readiness wait was asked so far.
    pub fn ready_waits(&self) -> usize {
        lock(&self.0).ready_waits
    }
    /// `release` runs but never becomes ready.
    pub fn never_ready(&self, release: &str) {
        lock(&self.0).not_ready.insert(release.to_owned());
    }
    /// `release` answers its first `checks` readiness checks, then stops answering (a
    /// release that crashes a few seconds after it became ready).
    pub fn crash_after_checks(&self, release: &str, checks: u32) {
        lock(&self.0)
            .crash_after_checks
            .insert(release.to_owned(), checks);
    }
    /// `release` becomes ready but fails validation.
    pub fn fail_validation(&self, release: &str) {
        lock(&self.0).invalid.insert(release.to_owned());
    }
    /// The perf gate judges `release` regressed.
    pub fn regress(&self, release: &str) {
        lock(&self.0).slow_perf.insert(release.to_owned());
    }
    /// Commands whose program is `program` exit 1.
    pub fn fail_program(&self, program: &str) {
        lock(&self.0).failing_programs.insert(program.to_owned());
    }
    /// The proxy refuses to switch to `upstream`.
    pub fn refuse_upstream(&self, upstream: SocketAddr) {
        lock(&self.0).refused_upstreams.insert(upstream);
    }
    /// Clears every injected fault.
    pub fn heal(&self) {
        let mut w = lock(&self.0);
        w.fail_start.clear();
        w.exit_at_start.clear();
        w.not_ready.clear();
        w.crash_after_checks.clear();
        w.invalid.clear();
        w.slow_perf.clear();
        w.failing_programs.clear();
        w.refused_upstreams.clear();
    }
    /// Kills every fake service (a host reboot).
    pub fn kill_all(&self) {
        lock(&self.0).running.clear();
    }
    /// What runs: service name to its argv.
    pub fn running(&self) -> BTreeMap<String, Vec<String>> {
        lock(&self.0)
            .running
            .iter()
            .map(|(k, v)| (k.clone(), v.argv.clone()))
            .collect()
    }
    /// The release running as `service`, if any (the argv element that names a release).
    pub fn release_of(&self, service: &str, releases: &[&str]) -> Option<String> {
        let w = lock(&self.0);
        let spec = w.running.get(service)?;
        releases
            .iter()
            .find(|r| spec.argv.iter().any(|a| a == *r))
            .map(|r| (*r).to_owned())
    }
    /// The proxy's backup server (the warm standby).
    pub fn backup(&self) -> Option<SocketAddr> {
        lock(&self.0).backup
    }
    /// Where the fake proxy sends traffic.
    pub fn upstream(&self) -> Option<SocketAddr> {
        lock(&self.0).upstream
    }
    /// The id the next deploy will get (the fake clock's next reading, commit `abc1234`).
    pub fn next_release_id(&self) -> String {
        let now = lock(&self.0).now.unwrap_or_else(start_time);
        // The fake world's sources are plain directories: no commit.
        crate::release_id(now, None)
    }
    /// Every event in order (`start NAME`, `stop NAME`, `switch ADDR`, `run ARGV`).
    pub fn events(&self) -> Vec<String> {
        lock(&self.0).events.clone()
    }

    fn serving(&self, target: &Target) -> Result<(), String> {
        let w = lock(&self.0);
        let port = target
            .base_url
            .rsplit(':')
            .next()
            .unwrap_or_default()
            .to_owned();
        let runs = w
            .running
            .values()
            .any(|s| s.argv.contains(&target.release) && s.argv.contains(&port));
        if !runs {
            return Err(format!("{} does not run on port {port}", target.release));
        }
        if w.not_ready.contains(&target.release) {
            return Err(format!("{} is still starting", target.release));
        }
        Ok(())
    }
}

/// The fake process manager.
#[derive(Debug, Clone)]
pub struct FakeProcs(pub FakeWorld);

impl ProcessManager for FakeProcs {
    fn install(&self, _spec: &ServiceSpec) -> Result<InstallOutcome, ProcError> {
        Ok(InstallOutcome { files: Vec::new() })
    }

    fn start(&self, spec: &ServiceSpec) -> Result<StartOutcome, ProcError> {
        let mut w = lock(&(self.0).0);
        w.events.push(format!("start {}", spec.name));
        if spec.argv.iter().any(|a| w.fail_start.contains(a)) {
            return Err(ProcError::StartFailed {
                name: spec.name.clone(),
                reason: "exited at once (fake)".to_owned(),
            });
        }
        w.failed_services.remove(&spec.name);
        if spec.argv.iter().any(|a| w.exit_at_start.contains(a)) {
            w.failed_services.insert(spec.name.clone());
            drop(w);
            return Ok(StartOutcome {
                status: self.status(&spec.name)?,
                already_running: false,
                recovered_orphan: None,
            });
        }
        let already_running = w.running.contains_key(&spec.name);
        if !already_running {
            w.running.insert(spec.name.clone(), spec.clone());
        }
        drop(w);
        Ok(StartOutcome {
            status: self.status(&spec.name)?,
            already_running,
            recovered_orphan: None,
        })
    }

    fn stop(&self, name: &str, _grace: Option<Duration>) -> Result<StopOutcome, ProcError> {
        let mut w = lock(&(self.0).0);
        w.events.push(format!("stop {name}"));
        w.failed_services.remove(name);
        let was_running = w.running.remove(name).is_some();
        Ok(StopOutcome {
            was_running,
            killed: false,
            took: Duration::ZERO,
        })
    }

    fn status(&self, name: &str) -> Result<ServiceStatus, ProcError> {
        let (running, failed) = {
            let w = lock(&(self.0).0);
            (
                w.running.contains_key(name),
                w.failed_services.contains(name),
            )
        };
        Ok(ServiceStatus {
            name: name.to_owned(),
            manager: "fake".to_owned(),
            state: if running {
                ServiceState::Running
            } else if failed {
                ServiceState::Failed
            } else {
                ServiceState::Stopped
            },
            message: None,
            // Above the kernel's largest pid_max: no real process is ever read for it.
            pid: running.then_some(4_194_305),
            pgid: None,
            supervisor_pid: None,
            supervisor_alive: None,
            uptime: None,
            restart_count: 0,
            last_exit: None,
            rss_bytes: None,
            cpu_time_ms: None,
            cpu_percent: None,
            logs: self.logs(name),
        })
    }

    fn logs(&self, name: &str) -> LogLocation {
        LogLocation::File {
            path: format!("/dev/null/{name}").into(),
            keep: 0,
        }
    }
}

/// The fake proxy.
#[derive(Debug, Clone)]
pub struct FakeTraffic(pub FakeWorld);

impl Traffic for FakeTraffic {
    fn is_running(&self) -> bool {
        lock(&(self.0).0).proxy_running
    }
    fn current(&self) -> Result<Option<SocketAddr>, String> {
        Ok(lock(&(self.0).0).upstream)
    }
    fn start(&self, upstream: SocketAddr) -> Result<(), String> {
        let mut w = lock(&(self.0).0);
        w.events.push(format!("proxy start {upstream}"));
        w.proxy_running = true;
        w.upstream = Some(upstream);
        Ok(())
    }
    fn switch(&self, upstream: SocketAddr, release: Option<&str>) -> Result<(), String> {
        if let Some(release) = release {
            (self.0).serving(&Target {
                base_url: format!("http://{upstream}"),
                release: release.to_owned(),
            })?;
        }
        let mut w = lock(&(self.0).0);
        if w.refused_upstreams.contains(&upstream) {
            return Err(format!("switch to {upstream} refused (fake)"));
        }
        w.events.push(format!("switch {upstream}"));
        w.upstream = Some(upstream);
        w.backup = None;
        w.split = None;
        Ok(())
    }
    fn split(
        &self,
        baseline: SocketAddr,
        canary: SocketAddr,
        canary_percent: u8,
        release: Option<&str>,
    ) -> Result<(), String> {
        if let Some(release) = release {
            (self.0).serving(&Target {
                base_url: format!("http://{canary}"),
                release: release.to_owned(),
            })?;
        }
        let mut w = lock(&(self.0).0);
        w.events
            .push(format!("split {canary_percent}% to {canary}"));
        w.split = Some((baseline, canary, canary_percent));
        Ok(())
    }
    fn splitting(&self) -> bool {
        lock(&(self.0).0).split.is_some()
    }
    fn edge_log(&self) -> Option<PathBuf> {
        lock(&(self.0).0).edge_log.clone()
    }
    fn switch_with_backup(
        &self,
        upstream: SocketAddr,
        backup: Option<SocketAddr>,
        release: Option<&str>,
    ) -> Result<(), String> {
        self.switch(upstream, release)?;
        lock(&(self.0).0).backup = backup;
        Ok(())
    }
    fn stop(&self) -> Result<(), String> {
        lock(&(self.0).0).proxy_running = false;
        Ok(())
    }
}

/// The fake health checks.
#[derive(Debug, Clone)]
pub struct FakeHealth(pub FakeWorld);

impl Health for FakeHealth {
    fn check_ready(&self, target: &Target, _limit: Duration) -> Result<(), String> {
        {
            let mut w = lock(&(self.0).0);
            w.ready_waits += 1;
            if let Some(left) = w.crash_after_checks.get_mut(&target.release) {
                if *left == 0 {
                    return Err(format!("{} stopped answering", target.release));
                }
                *left -= 1;
            }
        }
        (self.0).serving(target)
    }
    fn wait_ready(&self, target: &Target, _budget: Duration) -> Result<(), String> {
        lock(&(self.0).0).ready_waits += 1;
        (self.0).serving(target)
    }
    fn validate(&self, target: &Target, _budget: Duration) -> Result<(), String> {
        (self.0).serving(target)?;
        if lock(&(self.0).0).invalid.contains(&target.release) {
            return Err(format!("tools: {} answers an empty list", target.release));
        }
        Ok(())
    }
}

/// The fake perf gate.
#[derive(Debug, Clone)]
pub struct FakePerf(pub FakeWorld);

impl PerfGate for FakePerf {
    fn check(&self, target: &Target) -> Result<String, String> {
        if lock(&(self.0).0).slow_perf.contains(&target.release) {
            Err("p95 rose 80% (tolerance 10%)".to_owned())
        } else {
            Ok("pass".to_owned())
        }
    }
}

/// The fake command runner: `git` answers commit `abc1234`; programs marked failing exit 1;
/// everything else succeeds.
#[derive(Debug, Clone)]
pub struct FakeRunner(pub FakeWorld);

impl CommandRunner for FakeRunner {
    fn run(&self, request: &CommandRequest<'_>) -> Result<CommandResult, String> {
        let program = request.argv.first().cloned().unwrap_or_default();
        if program == "git" {
            // git is real: the fake world's sources are real directories (a test that wants a
            // repository makes one).
            lock(&(self.0).0)
                .events
                .push(format!("run {}", request.argv.join(" ")));
            return crate::real::SystemRunner.run(request);
        }
        let mut w = lock(&(self.0).0);
        w.events.push(format!("run {}", request.argv.join(" ")));
        let fail = w.failing_programs.contains(&program);
        Ok(CommandResult {
            code: Some(i32::from(fail)),
            timed_out: false,
            stdout: String::new(),
            stderr: if fail {
                format!("{program}: failed (fake)")
            } else {
                String::new()
            },
        })
    }
}

/// The fake clock: starts at 2025-01-01T00:00:00Z and moves one second per reading.
#[derive(Debug, Clone)]
pub struct FakeClock(pub FakeWorld);

impl Clock for FakeClock {
    fn now(&self) -> jiff::Timestamp {
        let mut w = lock(&(self.0).0);
        let now = w.now.unwrap_or_else(start_time);
        w.now = Some(now + jiff::SignedDuration::from_secs(1));
        now
    }

    /// Virtual: moves only when something sleeps.
    fn monotonic(&self) -> Duration {
        lock(&(self.0).0).monotonic
    }

    /// Moves the virtual time on at once (and, during a canary split with an edge log, lets
    /// 100 requests through the fake proxy).
    fn sleep(&self, duration: Duration) {
        let mut w = lock(&(self.0).0);
        w.monotonic += duration;
        let (Some((baseline, canary, percent)), Some(path)) = (w.split, w.edge_log.clone()) else {
            return;
        };
        let mut text = String::new();
        for i in 0..100u64 {
            let upstream = if i % 100 < u64::from(percent) {
                canary
            } else {
                baseline
            };
            let n = {
                let count = w.edge_requests.entry(upstream).or_default();
                *count += 1;
                *count
            };
            let (fail_every, latency) = w.edge_behaviour.get(&upstream).copied().unwrap_or((0, 20));
            let status = if fail_every > 0 && n % fail_every == 0 {
                500
            } else {
                200
            };
            // A little spread, the same for both upstreams.
            let ms = f64::from(latency) * (1.0 + 0.01 * (n % 7) as f64);
            text.push_str(&format!(
                "{{\"time\":1735689600.0,\"status\":{status},\"request_time\":{:.3},\"upstream_addr\":\"{upstream}\",\"method\":\"GET\",\"location\":\"/\"}}\n",
                ms / 1000.0
            ));
        }
        if let Ok(mut file) = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
        {
            let _ = file.write_all(text.as_bytes());
        }
    }
}

fn start_time() -> jiff::Timestamp {
    jiff::Timestamp::UNIX_EPOCH + jiff::SignedDuration::from_secs(1_735_689_600)
}
