//! Running a release in a slot: its spec (placeholders filled), starting it and waiting until
//! it is ready while watching its process.

use std::time::Duration;

use process_control::template;
use process_control::{ProcessManager, ServiceSpec};

use crate::env::Target;
use crate::layout::ReleaseRecord;
use crate::operation::Deployer;
use crate::phase::Slot;

impl Deployer {
    /// The values of the placeholders for release `id` (in `slot`, which gives `{port}`).
    pub(crate) fn placeholders(&self, id: &str, slot: Option<Slot>) -> template::Placeholders {
        self.layout.placeholders(
            Some(id),
            slot.map(|s| self.port(s)),
            self.manifest.service.host,
        )
    }

    /// The service spec that runs `record` in `slot`: its start argv and environment (the
    /// recorded `env`, then its `--set-env` extras) with every placeholder filled.
    ///
    /// # Errors
    /// A placeholder the record uses that is unknown (a record written by an older cutover).
    pub fn spec_for(&self, record: &ReleaseRecord, slot: Slot) -> Result<ServiceSpec, String> {
        let values = self.placeholders(&record.id, Some(slot));
        let fill = |what: &str, a: &String| {
            template::fill(a, &values).map_err(|e| format!("release {} {what}: {e}", record.id))
        };
        let argv = record
            .start
            .iter()
            .map(|a| fill("start", a))
            .collect::<Result<Vec<_>, _>>()?;
        let mut spec = ServiceSpec::new(slot.service_name(&self.manifest.service.name), argv);
        for (k, v) in record.env.iter().chain(&record.set_env) {
            spec.environment.insert(k.clone(), fill(k, v)?);
        }
        let port = self.port(slot).to_string();
        spec.environment
            .insert("CUTOVER_RELEASE".into(), record.id.clone());
        spec.environment.insert("CUTOVER_PORT".into(), port);
        spec.secrets = record.secrets.clone();
        spec.working_directory = Some(self.layout.release_dir(&record.id));
        self.manifest.process.apply_to(&mut spec);
        Ok(spec)
    }

    /// With a proxy in front, a release must not listen beyond loopback (around nginx, TLS
    /// and the rate limits) unless `[service] exposure = "any"` says that is intended. Its
    /// sockets are read through its processes' file descriptors, in its network namespace.
    pub(crate) fn check_exposure(&self, id: &str, slot: Slot) -> Result<(), String> {
        if self.manifest.proxy.is_none()
            || self.manifest.service.exposure == live_deployment::Exposure::Any
        {
            return Ok(());
        }
        let name = slot.service_name(&self.manifest.service.name);
        let Ok(status) = self.env.procs.status(&name) else {
            return Ok(());
        };
        let Some(pid) = status.pid else {
            return Ok(());
        };
        let mut pids = vec![pid];
        if let Some(group) = status.pgid {
            pids.extend(
                process_group_members(group)
                    .into_iter()
                    .filter(|p| *p != pid),
            );
        }
        let outside: Vec<String> = preflight_checks::checks::listening_addrs(&pids)
            .iter()
            .filter(|a| preflight_checks::checks::beyond_loopback(a))
            .map(ToString::to_string)
            .collect();
        if outside.is_empty() {
            return Ok(());
        }
        Err(format!(
            "{id} listens on {} beyond loopback, so it is reachable around nginx, TLS and the rate limits: make it listen on {} (its --listen or HOST setting, `{{host}}` in [service] start), or set [service] exposure = \"any\" if that is intended",
            outside.join(", "),
            self.manifest.service.host
        ))
    }

    /// Starts `id` in `slot` unless it already answers ready there as itself.
    pub(crate) fn ensure_running(&self, id: &str, slot: Slot, quick: bool) -> Result<(), String> {
        let target = self.target(id, slot);
        if quick
            && self
                .env
                .health
                .wait_ready(&target, Duration::from_millis(1500))
                .is_ok()
        {
            return Ok(());
        }
        let record = self.layout.read_record(id).map_err(|e| e.to_string())?;
        let spec = self.spec_for(&record, slot)?;
        self.env
            .procs
            .stop(&spec.name, None)
            .map_err(|e| format!("cannot stop {}: {e}", spec.name))?;
        self.env
            .procs
            .start(&spec)
            .map_err(|e| format!("cannot start {}: {e}", spec.name))?;
        self.wait_ready_watching(&spec.name, &target, self.manifest.deploy.ready_timeout)
            .map_err(|e| format!("{id} did not become ready on {}: {e}", target.base_url))
    }

    /// Waits for readiness for the whole `budget`: one attempt of the ready suite every
    /// [`READY_PERIOD`] (each probe with its own timeout, the last one cut at the budget's
    /// end), asking the process manager between attempts, so that a release which exits
    /// (cannot start, crashes) fails at once rather than after the whole budget. Time is the
    /// environment's clock, so the message gives the real elapsed time and attempt count.
    pub(crate) fn wait_ready_watching(
        &self,
        service: &str,
        target: &Target,
        budget: Duration,
    ) -> Result<(), String> {
        let clock = &self.env.clock;
        let start = clock.monotonic();
        let mut attempts = 0u32;
        let mut last = String::from("no attempt finished");
        loop {
            let begun = clock.monotonic();
            let left = budget.saturating_sub(begun.saturating_sub(start));
            if left.is_zero() && attempts > 0 {
                break;
            }
            attempts += 1;
            match self.env.health.check_ready(target, left.max(MIN_ATTEMPT)) {
                Ok(()) => return Ok(()),
                Err(e) => last = e,
            }
            if let Some(exited) = self.exited_before_ready(service, &last) {
                return Err(exited);
            }
            let now = clock.monotonic();
            let spent = now.saturating_sub(start);
            if spent >= budget {
                break;
            }
            let next = (begun + READY_PERIOD).saturating_sub(now);
            clock.sleep(next.min(budget - spent));
        }
        Err(format!(
            "not ready after {attempts} attempts in {:.1?} (ready_timeout {}): {last}",
            clock.monotonic().saturating_sub(start),
            humantime::format_duration(budget)
        ))
    }

    /// The stability window: the ready suite passes on every attempt, one per
    /// [`READY_PERIOD`], for `window`, and the process neither exits nor restarts.
    pub(crate) fn stable_for(
        &self,
        id: &str,
        slot: Slot,
        window: Duration,
    ) -> Result<String, String> {
        let service = slot.service_name(&self.manifest.service.name);
        let target = self.target(id, slot);
        let clock = &self.env.clock;
        let status = |procs: &dyn process_control::ProcessManager| {
            procs
                .status(&service)
                .map(|s| (s.state, s.restart_count, s.pid))
                .map_err(|e| format!("cannot read {service}'s state: {e}"))
        };
        let (_, restarts, pid) = status(self.env.procs.as_ref())?;
        let start = clock.monotonic();
        let mut attempts = 0u32;
        let window_text = humantime::format_duration(window);
        loop {
            let begun = clock.monotonic();
            let spent = begun.saturating_sub(start);
            attempts += 1;
            let fail = |what: String| {
                format!("not stable for {window_text} (stable_for): after {spent:.1?}, {what}")
            };
            let (state, now_restarts, now_pid) = status(self.env.procs.as_ref()).map_err(&fail)?;
            if now_restarts != restarts || now_pid != pid {
                return Err(fail(format!(
                    "{service} restarted ({restarts} → {now_restarts} restarts, pid {} → {})",
                    pid.map_or("-".to_owned(), |p| p.to_string()),
                    now_pid.map_or("-".to_owned(), |p| p.to_string())
                )));
            }
            if state != process_control::ServiceState::Running {
                return Err(fail(format!("{service} is {state}")));
            }
            if spent >= window {
                return Ok(format!(
                    "ready and unrestarted for {window_text} ({attempts} checks)"
                ));
            }
            // A check started inside the window finishes on its probes' own timeouts: a slow
            // but healthy release is not cut off at the window's end.
            let left = window - spent;
            self.env
                .health
                .check_ready(&target, left + STABLE_ATTEMPT_GRACE)
                .map_err(|e| fail(format!("the ready suite failed: {e}")))?;
            let now = clock.monotonic();
            let next = (begun + READY_PERIOD).saturating_sub(now);
            clock.sleep(next.min(window.saturating_sub(now.saturating_sub(start))));
        }
    }

    /// When the process manager says `service` is no longer running: why, with the last
    /// probe's answer.
    pub(crate) fn exited_before_ready(&self, service: &str, last: &str) -> Option<String> {
        use process_control::ServiceState as S;
        let status = self.env.procs.status(service).ok()?;
        if !matches!(status.state, S::Failed | S::Stopped | S::CrashLooping) {
            return None;
        }
        // The manager's message often names the exit already.
        let exit = status
            .last_exit
            .as_ref()
            .filter(|x| {
                !status
                    .message
                    .as_ref()
                    .is_some_and(|m| m.contains(&x.description))
            })
            .map(|x| format!(" ({})", x.description))
            .unwrap_or_default();
        let message = status
            .message
            .as_ref()
            .map(|m| format!(": {m}"))
            .unwrap_or_default();
        Some(format!(
            "{service} is {} before it became ready{exit}{message} (last probe: {last})",
            status.state
        ))
    }
}

/// How often the readiness wait tries again (from the start of one attempt to the next).
pub(crate) const READY_PERIOD: Duration = Duration::from_millis(300);

/// How far past the stability window's end its last check may run.
const STABLE_ATTEMPT_GRACE: Duration = Duration::from_secs(5);

/// The shortest attempt: one that starts as the budget ends still gets this long.
const MIN_ATTEMPT: Duration = Duration::from_millis(100);

/// The pids of the processes in process group `group`.
fn process_group_members(group: u32) -> Vec<u32> {
    process_control::ProcStat::all()
        .into_iter()
        .filter(|s| s.pgrp == group)
        .map(|s| s.pid)
        .collect()
}
