//! `stop` under the built-in supervisor leaves no process behind, not even one that called
//! `setsid()` and so left the service's process group and session (issue 21, item 4).
//!
//! The supervisor program is this crate's own `process-control-supervisor` binary. Every test
//! owns a temp root; a guard SIGKILLs the supervisor, the service's group and the escaped
//! process (each identified by pid plus start time) even when the test fails.

#![allow(clippy::unwrap_used)] // test helpers outside #[test] functions unwrap too

use std::path::{Path, PathBuf};
use std::time::Duration;

use cutover_tests::wait_until;
use nix::sys::signal::Signal;
use process_control::{
    ProcStat, ProcessIdentity, ProcessManager, ServiceSpec, ServiceState, SupervisedConfig,
    SupervisedManager,
};

const DEADLINE: Duration = Duration::from_secs(30);

/// A supervised service in its own temp root, and everything it started killed on drop.
struct Fixture {
    root: tempfile::TempDir,
    manager: SupervisedManager,
    name: &'static str,
    escaped: Option<ProcessIdentity>,
}

impl Fixture {
    fn new(name: &'static str) -> Self {
        let root = cutover_tests::temp_dir();
        let config = SupervisedConfig::for_root(root.path())
            .with_supervisor_program(env!("CARGO_BIN_EXE_process-control-supervisor"));
        Self {
            manager: SupervisedManager::new(config),
            root,
            name,
            escaped: None,
        }
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.root.path().join(rel)
    }

    /// Starts `sh -c SCRIPT` (which must write the escaped process's pid to `$PIDFILE`) and
    /// waits until that process has its own session, i.e. has really called `setsid()`.
    fn start_and_find_escaped(&mut self, script: &str) -> ProcessIdentity {
        let pidfile = self.path("escaped.pid");
        let mut spec = ServiceSpec::new(self.name, ["sh", "-c", script]);
        spec.environment
            .insert("PIDFILE".into(), pidfile.display().to_string());
        let started = self.manager.start(&spec).unwrap();
        assert_eq!(started.status.state, ServiceState::Running, "{started:?}");
        let service_session = started
            .status
            .pid
            .and_then(ProcStat::read)
            .map(|s| s.session)
            .unwrap();
        let mut escaped = None;
        let found = wait_until(DEADLINE, || {
            escaped = read_pid(&pidfile)
                .and_then(ProcStat::read)
                .filter(|s| s.session == s.pid && s.session != service_session)
                .and_then(|s| ProcessIdentity::of(s.pid));
            escaped.is_some()
        });
        assert!(
            found,
            "no process of its own session named in {} within {DEADLINE:?}",
            pidfile.display()
        );
        self.escaped = escaped;
        escaped.unwrap()
    }
}

fn read_pid(path: &Path) -> Option<u32> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

impl Drop for Fixture {
    fn drop(&mut self) {
        if let Some(escaped) = self.escaped {
            escaped.signal(Signal::SIGKILL);
        }
        if let Ok(Some(state)) = self.manager.recorded_state(self.name) {
            if let Some(supervisor) = state.supervisor {
                supervisor.signal(Signal::SIGKILL);
            }
            if let Some(group) = state.group {
                group.signal(Signal::SIGKILL);
            }
        }
    }
}

#[test]
fn stop_ends_a_descendant_that_called_setsid() {
    let mut fixture = Fixture::new("setsid-sleeper");
    let escaped =
        fixture.start_and_find_escaped(r#"setsid sleep 300 & echo $! > "$PIDFILE"; wait"#);
    let outcome = fixture
        .manager
        .stop(fixture.name, Some(Duration::from_secs(10)))
        .unwrap();
    assert!(outcome.was_running, "{outcome:?}");
    assert!(
        wait_until(DEADLINE, || !escaped.is_alive()),
        "pid {} (setsid sleep 300) still runs after stop",
        escaped.pid
    );
    let status = fixture.manager.status(fixture.name).unwrap();
    assert_eq!(status.state, ServiceState::Stopped, "{status:?}");
    assert!(
        !outcome.killed,
        "sleep ends on SIGTERM, no SIGKILL was needed: {outcome:?}"
    );
}

#[test]
fn a_setsid_descendant_that_ignores_sigterm_is_killed_after_the_grace_period() {
    let mut fixture = Fixture::new("setsid-stubborn");
    // The escaped shell ignores SIGTERM; its `sleep 1` children do not, and each dies on
    // the sweep's SIGTERM or on its own, so only SIGKILL ends the loop.
    let escaped = fixture.start_and_find_escaped(
        r#"setsid sh -c 'trap "" TERM; while :; do sleep 1; done' & echo $! > "$PIDFILE"; wait"#,
    );
    let outcome = fixture
        .manager
        .stop(fixture.name, Some(Duration::from_secs(1)))
        .unwrap();
    assert!(
        wait_until(DEADLINE, || !escaped.is_alive()),
        "pid {} (ignores SIGTERM) still runs after stop",
        escaped.pid
    );
    assert!(outcome.killed, "SIGKILL was needed: {outcome:?}");
    let status = fixture.manager.status(fixture.name).unwrap();
    assert_eq!(status.state, ServiceState::Stopped, "{status:?}");
}
