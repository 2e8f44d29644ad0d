//! How traffic moves: the switch to a new release, the warm standby, the commit and retention.

use std::time::Duration;

use process_control::ProcessManager;

use crate::DeployError;
use crate::layout::DeployState;
use crate::manifest::StrategyKind;
use crate::operation::Deployer;
use crate::phase::Slot;

impl Deployer {
    pub(crate) fn switch_to(
        &self,
        id: &str,
        to_slot: Slot,
        from_slot: Option<Slot>,
    ) -> Result<String, String> {
        match self.strategy() {
            StrategyKind::Restart => {
                self.layout.set_current(id).map_err(|e| e.to_string())?;
                self.ensure_running(id, to_slot, false)?;
                Ok(format!(
                    "restarted {} on port {}",
                    to_slot.service_name(&self.manifest.service.name),
                    self.port(to_slot)
                ))
            }
            StrategyKind::BlueGreen => {
                let warm = self.warm_standby(id, to_slot);
                if !warm {
                    // Whatever waited in that slot is stopped now: forget it first, so that
                    // the state never names a standby that is not there.
                    self.clear_standby().map_err(|e| e.to_string())?;
                    self.ensure_running(id, to_slot, false)?;
                }
                let upstream = self.addr(to_slot);
                if self.env.traffic.is_running() {
                    self.env.traffic.switch(upstream, self.release_check(id))?;
                } else {
                    self.env.traffic.start(upstream)?;
                }
                self.layout.set_current(id).map_err(|e| e.to_string())?;
                Ok(format!(
                    "{id} {} in slot {to_slot}; traffic moved to {upstream}{}",
                    if warm {
                        "was the warm standby, healthy"
                    } else {
                        "ready"
                    },
                    from_slot
                        .map(|s| format!(" from slot {s}"))
                        .unwrap_or_default()
                ))
            }
        }
    }

    pub(crate) fn release_check<'a>(&self, id: &'a str) -> Option<&'a str> {
        self.manifest.deploy.verify_release.then_some(id)
    }

    pub(crate) fn keeps_standby(&self) -> bool {
        self.strategy() == StrategyKind::BlueGreen && self.manifest.deploy.keep_standby
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

    pub(crate) fn traffic_on(&self, slot: Slot) -> bool {
        self.strategy() == StrategyKind::Restart
            || (self.env.traffic.is_running()
                && self.env.traffic.current().ok().flatten() == Some(self.addr(slot)))
    }

    pub(crate) fn ensure_traffic(&self, slot: Slot, release: &str) -> Result<(), String> {
        let upstream = self.addr(slot);
        if !self.env.traffic.is_running() {
            self.env.traffic.start(upstream)
        } else if self.env.traffic.current()? != Some(upstream) {
            self.env
                .traffic
                .switch(upstream, self.release_check(release))
        } else {
            Ok(())
        }
    }
}

/// How long a rollback waits for the standby to answer ready before it starts it cold.
const STANDBY_PROBE_BUDGET: Duration = Duration::from_secs(1);
