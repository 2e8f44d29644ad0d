//! How a new release replaces the old one: the [`Strategy`] owns the slots, which slot a
//! release goes to next, which one is live, moving traffic there and back; and, shared by
//! every strategy, the warm standby, the commit and retention.
//!
//! `restart` runs one slot and restarts it in place; `blue-green` runs two behind nginx and
//! moves the upstream. A canary strategy (traffic split by weight across both slots) is one
//! more implementation of the same trait.

use std::time::Duration;

use process_control::ProcessManager;

use crate::DeployError;
use crate::layout::DeployState;
use crate::manifest::StrategyKind;
use crate::operation::Deployer;
use crate::phase::Slot;

/// How a new release replaces the old one.
pub(crate) trait Strategy: Sync {
    /// The manifest's name for it.
    fn kind(&self) -> StrategyKind;

    /// The slots a release can run in.
    fn slots(&self) -> &'static [Slot];

    /// The slot the live release runs in: the one place that says it (from
    /// `deploy-state.json`, else the first slot).
    fn live_slot(&self, state: &DeployState) -> Slot {
        state
            .slot
            .filter(|s| self.slots().contains(s))
            .unwrap_or(self.slots()[0])
    }

    /// The slot a new release starts in, given the live one.
    fn next_slot(&self, live: Option<Slot>) -> Slot;

    /// Whether a warm standby may be kept in the other slot.
    fn keeps_standby(&self, d: &Deployer) -> bool;

    /// Starts `id` in `to` and moves users to it (and `current`). Ok says what was done.
    fn switch(
        &self,
        d: &Deployer,
        id: &str,
        to: Slot,
        from: Option<Slot>,
    ) -> Result<String, String>;

    /// Puts `previous` back live in `from` after `failed_slot` served it (idempotent, so that
    /// recovery can run it again). Ok lists what was done.
    fn restore(
        &self,
        d: &Deployer,
        previous: &str,
        from: Slot,
        failed_slot: Slot,
    ) -> Result<Vec<String>, String>;

    /// Whether users reach `slot` now.
    fn traffic_on(&self, d: &Deployer, slot: Slot) -> bool;

    /// Makes sure users reach `release` in `slot`.
    fn ensure_traffic(&self, d: &Deployer, slot: Slot, release: &str) -> Result<(), String>;

    /// What `switch` would do, for `plan`.
    fn describe_switch(&self, d: &Deployer, id: &str, service: &str, slot: Slot) -> String;
}

/// The strategy of `kind`.
pub(crate) fn for_kind(kind: StrategyKind) -> &'static dyn Strategy {
    match kind {
        StrategyKind::Restart => &Restart,
        StrategyKind::BlueGreen => &BlueGreen,
        StrategyKind::Canary => &crate::canary::Canary,
    }
}

/// Stop the old release, start the new one in place (short downtime; no proxy).
struct Restart;

impl Strategy for Restart {
    fn kind(&self) -> StrategyKind {
        StrategyKind::Restart
    }

    fn slots(&self) -> &'static [Slot] {
        &[Slot::Single]
    }

    fn next_slot(&self, _live: Option<Slot>) -> Slot {
        Slot::Single
    }

    fn keeps_standby(&self, _d: &Deployer) -> bool {
        false
    }

    fn switch(
        &self,
        d: &Deployer,
        id: &str,
        to: Slot,
        _from: Option<Slot>,
    ) -> Result<String, String> {
        d.layout.set_current(id).map_err(|e| e.to_string())?;
        d.ensure_running(id, to, false)?;
        d.check_exposure(id, to)?;
        Ok(format!(
            "restarted {} on port {}",
            to.service_name(&d.manifest.service.name),
            d.port(to)
        ))
    }

    fn restore(
        &self,
        d: &Deployer,
        previous: &str,
        from: Slot,
        _failed_slot: Slot,
    ) -> Result<Vec<String>, String> {
        d.layout.set_current(previous).map_err(|e| e.to_string())?;
        d.ensure_running(previous, from, true)?;
        Ok(vec![format!("{previous} running again")])
    }

    fn traffic_on(&self, _d: &Deployer, _slot: Slot) -> bool {
        true
    }

    fn ensure_traffic(&self, _d: &Deployer, _slot: Slot, _release: &str) -> Result<(), String> {
        Ok(())
    }

    fn describe_switch(&self, d: &Deployer, id: &str, service: &str, slot: Slot) -> String {
        format!(
            "stop {service}, point current at {id}, start {service} on port {}, wait until ready",
            d.port(slot)
        )
    }
}

/// Start the new release in the idle slot, switch the nginx upstream, keep the old one warm
/// (or drain and stop it).
pub(crate) struct BlueGreen;

impl Strategy for BlueGreen {
    fn kind(&self) -> StrategyKind {
        StrategyKind::BlueGreen
    }

    fn slots(&self) -> &'static [Slot] {
        &[Slot::Blue, Slot::Green]
    }

    fn next_slot(&self, live: Option<Slot>) -> Slot {
        live.map_or(Slot::Blue, Slot::other)
    }

    fn keeps_standby(&self, d: &Deployer) -> bool {
        d.manifest.deploy.keep_standby
    }

    fn switch(
        &self,
        d: &Deployer,
        id: &str,
        to: Slot,
        from: Option<Slot>,
    ) -> Result<String, String> {
        let warm = d.warm_standby(id, to);
        let leaving = d.current();
        if !warm {
            // Whatever waited in that slot is stopped now: forget it first, so that the state
            // never names a standby that is not there.
            d.clear_standby().map_err(|e| e.to_string())?;
            d.ensure_running(id, to, false)?;
            d.check_exposure(id, to)?;
        }
        let upstream = d.addr(to);
        // The release live now stays warm in its slot (keep_standby): nginx lists it as the
        // backup server from this switch on, so a crash of the new release is answered by it.
        let backup = from
            .filter(|f| *f != to && d.keeps_standby())
            .map(|f| d.addr(f));
        if d.env.traffic.is_running() {
            d.env
                .traffic
                .switch_with_backup(upstream, backup, d.release_check(id))?;
        } else {
            d.env.traffic.start(upstream)?;
        }
        d.layout.set_current(id).map_err(|e| e.to_string())?;
        let streams = match (backup.and(from), leaving.as_deref()) {
            (Some(from), Some(leaving)) if leaving != id => d.end_standby_streams(leaving, from),
            _ => None,
        };
        Ok(format!(
            "{id} {} in slot {to}; traffic moved to {upstream}{}{}",
            if warm {
                "was the warm standby, healthy"
            } else {
                "ready"
            },
            from.map(|s| format!(" from slot {s}")).unwrap_or_default(),
            streams.map(|s| format!("; {s}")).unwrap_or_default()
        ))
    }

    fn restore(
        &self,
        d: &Deployer,
        previous: &str,
        from: Slot,
        failed_slot: Slot,
    ) -> Result<Vec<String>, String> {
        let mut done = Vec::new();
        d.ensure_running(previous, from, true)?;
        let upstream = d.addr(from);
        if d.env.traffic.is_running() {
            if d.env.traffic.current()? != Some(upstream) {
                d.env.traffic.switch(upstream, d.release_check(previous))?;
                done.push(format!("traffic back on {upstream}"));
            }
        } else {
            d.env.traffic.start(upstream)?;
            done.push(format!("proxy started on {upstream}"));
        }
        d.layout.set_current(previous).map_err(|e| e.to_string())?;
        if failed_slot != from {
            let svc = failed_slot.service_name(&d.manifest.service.name);
            d.clear_standby().map_err(|e| e.to_string())?;
            d.env
                .procs
                .stop(&svc, None)
                .map_err(|e| format!("cannot stop {svc}: {e}"))?;
            done.push(format!("stopped {svc}"));
        }
        Ok(done)
    }

    fn traffic_on(&self, d: &Deployer, slot: Slot) -> bool {
        d.env.traffic.is_running() && d.env.traffic.current().ok().flatten() == Some(d.addr(slot))
    }

    fn ensure_traffic(&self, d: &Deployer, slot: Slot, release: &str) -> Result<(), String> {
        let upstream = d.addr(slot);
        if !d.env.traffic.is_running() {
            d.env.traffic.start(upstream)
        } else if d.env.traffic.current()? != Some(upstream) {
            d.env.traffic.switch(upstream, d.release_check(release))
        } else {
            Ok(())
        }
    }

    fn describe_switch(&self, d: &Deployer, id: &str, service: &str, slot: Slot) -> String {
        format!(
            "start {service} on port {}, wait until ready, {} nginx upstream to {}, point current at {id}",
            d.port(slot),
            if d.env.traffic.is_running() {
                "switch"
            } else {
                "start nginx with"
            },
            d.addr(slot)
        )
    }
}

impl Deployer {
    pub(crate) fn release_check<'a>(&self, id: &'a str) -> Option<&'a str> {
        self.manifest.deploy.verify_release.then_some(id)
    }

    pub(crate) fn keeps_standby(&self) -> bool {
        self.strategy().keeps_standby(self)
    }

    /// Whether the proxy serves streams or sessions (`[proxy.locations]` with `streaming` or
    /// `sessions`): their connections stay attached to the release they opened on.
    pub(crate) fn has_streams(&self) -> bool {
        self.manifest
            .proxy
            .as_ref()
            .is_some_and(|p| p.locations.iter().any(|l| l.streaming || l.sessions))
    }

    /// After a switch, the release left warm in `slot` still holds its streams (SSE, MCP
    /// sessions), which nginx's old workers would cut uncleanly at `worker_shutdown_timeout`.
    /// After `[deploy] drain` (in-flight requests and session messages finish on it, retried
    /// there by nginx on a 404), it is restarted gracefully: its own stop ends every stream
    /// with a complete event and a clean close, clients reconnect to the live release, and it
    /// is warm again moments later. A standby that cannot be restarted is let go (the next
    /// rollback is a cold start). Returns what it did, for the report.
    pub(crate) fn end_standby_streams(&self, release: &str, slot: Slot) -> Option<String> {
        if !self.has_streams() {
            return None;
        }
        self.env.clock.sleep(self.manifest.deploy.drain);
        let started = self.env.clock.monotonic();
        match self.ensure_running(release, slot, false) {
            Ok(()) => Some(format!(
                "the standby {release} was restarted to end its streams ({} ms)",
                (self.env.clock.monotonic().saturating_sub(started)).as_millis()
            )),
            Err(e) => {
                tracing::warn!(%e, "the standby could not be restarted after ending its streams");
                let _ = self.clear_standby();
                Some(format!(
                    "the standby {release} ended its streams but did not come back: {e}"
                ))
            }
        }
    }

    /// Whether `id` already runs warm in `slot` as the recorded standby: the process manager
    /// says it runs and it answers ready as itself at once. Then a rollback needs no start.
    pub(crate) fn warm_standby(&self, id: &str, slot: Slot) -> bool {
        let Ok(state) = self.layout.load_state() else {
            return false;
        };
        if !self.keeps_standby()
            || state.standby.as_deref() != Some(id)
            || state.slot.map(Slot::other) != Some(slot)
        {
            return false;
        }
        let name = slot.service_name(&self.manifest.service.name);
        let running = self
            .env
            .procs
            .status(&name)
            .is_ok_and(|s| s.state == process_control::ServiceState::Running);
        let ready = running
            && self
                .env
                .health
                .wait_ready(&self.target(id, slot), STANDBY_PROBE_BUDGET)
                .is_ok();
        if !ready {
            tracing::info!(release = id, %slot, running, "the standby is not healthy: starting it cold");
        }
        ready
    }

    pub(crate) fn clear_standby(&self) -> Result<(), DeployError> {
        let mut state = self.layout.load_state()?;
        if state.standby.take().is_some() {
            self.layout.save_state(&state)?;
        }
        Ok(())
    }

    pub(crate) fn commit(
        &self,
        id: &str,
        to_slot: Slot,
        from_slot: Option<Slot>,
        previous: Option<&str>,
    ) -> Result<String, DeployError> {
        let mut state = self.layout.load_state()?;
        state.mark_good(id);
        state.slot = Some(to_slot);
        let old_slot = from_slot.filter(|s| *s != to_slot);
        // The previous release stays warm in its slot when it still runs there.
        state.standby = match (old_slot, previous) {
            (Some(old), Some(previous)) if self.keeps_standby() && previous != id => self
                .env
                .procs
                .status(&old.service_name(&self.manifest.service.name))
                .ok()
                .filter(|s| s.state == process_control::ServiceState::Running)
                .map(|_| previous.to_owned()),
            _ => None,
        };
        self.layout.save_state(&state)?;
        let mut detail = vec![format!("{id} recorded as good")];
        if let Some(standby) = &state.standby {
            detail.push(format!(
                "{standby} kept warm in slot {} as the standby",
                old_slot.map(|s| s.to_string()).unwrap_or_default()
            ));
        } else if let Some(old) = old_slot {
            std::thread::sleep(self.manifest.deploy.drain);
            let name = old.service_name(&self.manifest.service.name);
            match self.env.procs.stop(&name, None) {
                Ok(_) => detail.push(format!("stopped {name}")),
                Err(e) => {
                    tracing::warn!(%e, "stopping the old release failed");
                    detail.push(format!("could not stop {name}: {e}"));
                }
            }
        }
        let pruned = self.prune(&state, id)?;
        if !pruned.is_empty() {
            detail.push(format!("pruned {}", pruned.join(", ")));
        }
        Ok(detail.join("; "))
    }

    /// Releases a commit of `keep` would remove: oldest first beyond `keep_releases`, never
    /// the current, the last good or the one in flight; incomplete ones always.
    pub(crate) fn prune_candidates(
        &self,
        state: &DeployState,
        current: &str,
    ) -> Result<Vec<String>, DeployError> {
        let all = self.layout.list_releases()?;
        let last_good = state.last_good_before(Some(current)).map(str::to_owned);
        let keep_protected = |id: &String| {
            id == current || Some(id) == last_good.as_ref() || Some(id) == state.standby.as_ref()
        };
        let mut out: Vec<String> = all
            .iter()
            .filter(|id| !keep_protected(id) && !self.layout.is_complete(id))
            .cloned()
            .collect();
        let complete: Vec<&String> = all
            .iter()
            .filter(|id| self.layout.is_complete(id))
            .collect();
        let mut excess = complete
            .len()
            .saturating_sub(self.manifest.layout.keep_releases);
        for id in complete {
            if excess == 0 {
                break;
            }
            if !keep_protected(id) {
                out.push(id.clone());
                excess -= 1;
            }
        }
        Ok(out)
    }

    pub(crate) fn prune(
        &self,
        state: &DeployState,
        current: &str,
    ) -> Result<Vec<String>, DeployError> {
        let victims = self.prune_candidates(state, current)?;
        for id in &victims {
            self.layout.remove_release(id)?;
        }
        if !victims.is_empty() {
            let mut state = self.layout.load_state()?;
            state.good.retain(|g| !victims.contains(g));
            state.failed.retain(|g| !victims.contains(g));
            self.layout.save_state(&state)?;
        }
        Ok(victims)
    }
}

/// How long a rollback waits for the standby to answer ready before it starts it cold.
const STANDBY_PROBE_BUDGET: Duration = Duration::from_secs(1);
