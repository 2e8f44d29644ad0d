//! The pipeline's systemd path: one unit per slot (`<service>-blue.service`,
//! `<service>-green.service`, or `<service>.service` under the restart strategy), each with
//! `WorkingDirectory=` its release, its own credentials directory, and the exec shim copied to
//! `<root>/bin/` where the sandboxed unit can reach it.
//!
//! Under `DynamicUser=yes` (no `[process] user`), the slots share one dynamic user named after
//! the service, and write to `StateDirectory=`/`LogsDirectory=` (`/var/lib/<service>`,
//! `/var/log/<service>`, given to that user by systemd) instead of root-owned
//! `ReadWritePaths=` they could not write anyway.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use process_control::{
    InstallOutcome, LogLocation, ProcError, ProcessManager, ServiceSpec, ServiceStatus,
    StartOutcome, StopOutcome, SystemCommandRunner, SystemdConfig, SystemdManager,
};

use crate::ReleaseLayout;

fn io(action: &'static str, path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> ProcError {
    let path = path.into();
    move |source| ProcError::Io {
        action,
        path,
        error: source,
    }
}
use crate::manifest::DeployManifest;

/// The exec shim's file name under `<root>/bin/`.
pub(crate) const EXEC_SHIM_NAME: &str = "cutover-exec-shim";

/// systemd behind the pipeline's process-manager trait.
#[derive(Debug)]
pub(crate) struct PipelineSystemd {
    config: SystemdConfig,
    credentials: PathBuf,
    /// The program copied to the shim path (this executable unless given).
    shim_source: Option<PathBuf>,
    shim: PathBuf,
    /// Whether the shim is in place (copied once per process).
    shim_ready: Mutex<bool>,
}

/// A systemd user name for `service`: lower case, `[a-z0-9_-]`, not starting with a digit,
/// at most 31 characters.
fn user_name_for(service: &str) -> String {
    let mut name: String = service
        .chars()
        .map(|c| match c.to_ascii_lowercase() {
            c @ ('a'..='z' | '0'..='9' | '_' | '-') => c,
            _ => '-',
        })
        .collect();
    if !name.starts_with(|c: char| c.is_ascii_lowercase() || c == '_') {
        name.insert_str(0, "svc-");
    }
    name.truncate(31);
    name
}

impl PipelineSystemd {
    pub(crate) fn new(
        manifest: &DeployManifest,
        layout: &ReleaseLayout,
        shim_source: Option<PathBuf>,
    ) -> Self {
        let name = &manifest.service.name;
        let root = layout.root();
        let mut config = SystemdConfig::for_root(root, name);
        if let Some(dir) = &manifest.process.unit_dir {
            config = config.with_unit_dir(manifest.dir.join(dir));
        }
        if let Some(program) = &manifest.process.systemctl {
            config = config.with_systemctl(program.clone());
        }
        let shim = root.join("bin").join(EXEC_SHIM_NAME);
        config.unit.exec_shim = Some(shim.clone());
        if manifest.process.user.is_none() {
            config.unit.read_write_paths.clear();
            config.unit.dynamic_user_name = Some(user_name_for(name));
            config.unit.state_directory = Some(name.clone());
            config.unit.logs_directory = Some(name.clone());
        }
        Self {
            config,
            credentials: layout.state_dir().join("credentials"),
            shim_source,
            shim,
            shim_ready: Mutex::new(false),
        }
    }

    /// The manager for one slot's unit: its own credentials directory, so that a restart of
    /// one slot never reads the other release's secrets.
    fn manager(&self, name: &str) -> SystemdManager<SystemCommandRunner> {
        let mut config = self.config.clone();
        config.unit.credentials_dir = Some(self.credentials.join(name));
        SystemdManager::new(config, SystemCommandRunner::default())
    }

    /// Copies the shim program to `<root>/bin/` unless an identical copy is there.
    fn install_shim(&self, service: &str) -> Result<(), ProcError> {
        let mut ready = self.shim_ready.lock().unwrap_or_else(|e| e.into_inner());
        if *ready {
            return Ok(());
        }
        let source = match &self.shim_source {
            Some(p) => p.clone(),
            None => std::env::current_exe()
                .map_err(io("find this executable", Path::new("/proc/self/exe")))?,
        };
        let fresh = |p: &Path| {
            std::fs::metadata(p)
                .ok()
                .map(|m| (m.len(), m.modified().ok()))
        };
        let (src, dst) = (fresh(&source), fresh(&self.shim));
        let up_to_date =
            matches!((src, dst), (Some((a, Some(ta))), Some((b, Some(tb)))) if a == b && tb >= ta);
        if !up_to_date {
            let dir = self.shim.parent().unwrap_or(Path::new("/"));
            std::fs::create_dir_all(dir).map_err(io("create", dir))?;
            let bytes = std::fs::read(&source).map_err(io("read the exec shim", &source))?;
            host_util::fs::write_atomic(&self.shim, &bytes, 0o755)
                .map_err(io("install the exec shim as", &self.shim))?;
            tracing::info!(service, shim = %self.shim.display(), "installed the exec shim");
        }
        *ready = true;
        Ok(())
    }
}

impl ProcessManager for PipelineSystemd {
    fn install(&self, spec: &ServiceSpec) -> Result<InstallOutcome, ProcError> {
        self.install_shim(&spec.name)?;
        self.manager(&spec.name).install(spec)
    }

    fn start(&self, spec: &ServiceSpec) -> Result<StartOutcome, ProcError> {
        self.install_shim(&spec.name)?;
        self.manager(&spec.name).start(spec)
    }

    fn stop(&self, name: &str, grace: Option<Duration>) -> Result<StopOutcome, ProcError> {
        self.manager(name).stop(name, grace)
    }

    fn status(&self, name: &str) -> Result<ServiceStatus, ProcError> {
        self.manager(name).status(name)
    }

    fn logs(&self, name: &str) -> LogLocation {
        self.manager(name).logs(name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_names_are_what_systemd_accepts() {
        assert_eq!(user_name_for("hub"), "hub");
        assert_eq!(user_name_for("Demo.Hub"), "demo-hub");
        assert_eq!(user_name_for("9lives"), "svc-9lives");
        assert_eq!(user_name_for(&"x".repeat(40)).len(), 31);
    }
}
