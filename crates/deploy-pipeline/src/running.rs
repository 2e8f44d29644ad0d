//! Running a release in a slot: its spec (placeholders filled), starting it and waiting until
//! it is ready while watching its process.

use std::time::{Duration, Instant};

use process_control::template;
use process_control::{ProcessManager, ServiceSpec};

use crate::env::Target;
use crate::layout::ReleaseRecord;
use crate::operation::Deployer;
use crate::phase::Slot;

impl Deployer {
    /// The values of the placeholders for release `id` (in `slot`, which gives `{port}`).
    pub(crate) fn placeholders(&self, id: &str, slot: Option<Slot>) -> template::Placeholders {
        template::Placeholders {
            release: Some(self.layout.release_dir(id).to_string_lossy().into_owned()),
            release_id: Some(id.to_owned()),
            port: slot.map(|s| self.port(s)),
            host: Some(self.manifest.service.host.to_string()),
            root: Some(self.layout.root().to_string_lossy().into_owned()),
            shared: Some(self.layout.shared_dir().to_string_lossy().into_owned()),
        }
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

    /// Waits for readiness in short slices and asks the process manager between them, so
    /// that a release which exits (cannot start, crashes) fails at once rather than after
    /// the whole `ready_timeout`. The loop is bounded by the number of slices, so a health
    /// check that answers early (a fake) cannot make it spin.
    pub(crate) fn wait_ready_watching(
        &self,
        service: &str,
        target: &Target,
        budget: Duration,
    ) -> Result<(), String> {
        let deadline = Instant::now() + budget;
        let slices = budget.as_millis().div_ceil(READY_SLICE.as_millis()).max(1);
        let mut last = String::from("not ready");
        for _ in 0..slices {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.env.health.wait_ready(target, left.min(READY_SLICE)) {
                Ok(()) => return Ok(()),
                Err(e) => last = e,
            }
            if let Ok(status) = self.env.procs.status(service) {
                use process_control::ServiceState as S;
                if matches!(status.state, S::Failed | S::Stopped | S::CrashLooping) {
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
                    return Err(format!(
                        "{service} is {} before it became ready{exit}{message} (last probe: {last})",
                        status.state
                    ));
                }
            }
            if Instant::now() >= deadline {
                break;
            }
        }
        Err(last)
    }
}

/// The readiness wait's slice: how often the process manager is asked whether the starting
/// release still runs.
const READY_SLICE: Duration = Duration::from_millis(300);
