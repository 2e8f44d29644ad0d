//! Hooks: commands run before and after each phase and on failure, with `CUTOVER_*` variables.

use crate::env::CommandRequest;
use crate::operation::{Deployer, describe_exit, tail};
use crate::phase::Phase;

impl Deployer {
    pub(crate) fn hook_env(
        &self,
        phase: &str,
        hook: &str,
        id: &str,
        previous: Option<&str>,
    ) -> Vec<(String, String)> {
        vec![
            (
                crate::orphans::MARKER.into(),
                crate::orphans::marker_value(self.layout.root()),
            ),
            ("CUTOVER_PHASE".into(), phase.to_owned()),
            ("CUTOVER_HOOK".into(), hook.to_owned()),
            ("CUTOVER_RELEASE".into(), id.to_owned()),
            (
                "CUTOVER_PREVIOUS_RELEASE".into(),
                previous.unwrap_or("").to_owned(),
            ),
            (
                "CUTOVER_RELEASE_DIR".into(),
                self.layout.release_dir(id).to_string_lossy().into_owned(),
            ),
            (
                "CUTOVER_ROOT".into(),
                self.layout.root().to_string_lossy().into_owned(),
            ),
            ("CUTOVER_SERVICE".into(), self.manifest.service.name.clone()),
            (
                "CUTOVER_STRATEGY".into(),
                self.strategy().kind().as_str().to_owned(),
            ),
        ]
    }

    pub(crate) fn run_hook(
        &self,
        phase: Phase,
        before: bool,
        id: &str,
        previous: Option<&str>,
    ) -> Result<(), String> {
        let Some(argv) = self.manifest.hooks.for_phase(phase, before) else {
            return Ok(());
        };
        let which = if before { "before" } else { "after" };
        let env = self.hook_env(phase.as_str(), which, id, previous);
        let result = self.env.runner.run(&CommandRequest {
            argv,
            cwd: &self.manifest.dir,
            env: &env,
            timeout: self.manifest.hooks.timeout(),
        })?;
        if result.success() {
            Ok(())
        } else {
            Err(format!(
                "{which}_{phase} hook {:?} {}: {}",
                argv,
                describe_exit(&result),
                tail(&result.stderr, 400)
            ))
        }
    }

    pub(crate) fn run_hook_on_failure(&self, id: &str, previous: Option<&str>, reason: &str) {
        if self.manifest.hooks.on_failure.is_empty() {
            return;
        }
        let mut env = self.hook_env("failure", "failure", id, previous);
        env.push(("CUTOVER_ERROR".into(), reason.to_owned()));
        match self.env.runner.run(&CommandRequest {
            argv: &self.manifest.hooks.on_failure,
            cwd: &self.manifest.dir,
            env: &env,
            timeout: self.manifest.hooks.timeout(),
        }) {
            Ok(r) if r.success() => {}
            Ok(r) => tracing::warn!(exit = %describe_exit(&r), "on_failure hook failed"),
            Err(e) => tracing::warn!(%e, "on_failure hook could not run"),
        }
    }
}
