//! Process identity: a pid plus its start time (field 22 of `/proc/PID/stat`), never a name.
//!
//! A pid is reused after its process is reaped; the pair (pid, start time in clock ticks since
//! boot) is not. Zombies count as dead: they run no code and hold no port.

use std::time::Duration;

use nix::sys::signal::{Signal, kill, killpg};
use nix::unistd::Pid;
use serde::{Deserialize, Serialize};

pub use host_util::ProcStat;

/// A process as started: pid plus start time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcessIdentity {
    /// The pid.
    pub pid: u32,
    /// Start time in clock ticks since boot.
    pub start_time: u64,
}

impl ProcessIdentity {
    /// The identity of a live process, if there is one with this pid.
    pub fn of(pid: u32) -> Option<Self> {
        ProcStat::read(pid).map(|s| Self {
            pid,
            start_time: s.start_time,
        })
    }

    /// Whether this very process still runs (same pid, same start time, not a zombie).
    pub fn is_alive(&self) -> bool {
        ProcStat::read(self.pid).is_some_and(|s| s.start_time == self.start_time && s.is_running())
    }

    /// Sends `signal` to this process if it is still the same process.
    pub fn signal(&self, signal: Signal) -> bool {
        self.is_alive() && pid_t(self.pid).is_some_and(|p| kill(p, signal).is_ok())
    }
}

fn pid_t(pid: u32) -> Option<Pid> {
    i32::try_from(pid)
        .ok()
        .filter(|p| *p > 0)
        .map(Pid::from_raw)
}

/// A process group that belongs to one session: the service's group inside its supervisor's
/// session. Matching the session as well keeps a reused group id from being signalled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcessGroup {
    /// The group id (the service's pid).
    pub pgid: u32,
    /// The session id (the supervisor's pid).
    pub session: u32,
}

impl ProcessGroup {
    /// Pids of running (non-zombie) members.
    pub fn members(&self) -> Vec<u32> {
        ProcStat::all()
            .into_iter()
            .filter(|s| s.pgrp == self.pgid && s.session == self.session && s.is_running())
            .map(|s| s.pid)
            .collect()
    }

    /// Whether any member still runs.
    pub fn is_alive(&self) -> bool {
        let Some(pgid) = pid_t(self.pgid) else {
            return false;
        };
        // Fast path: no process at all in the group.
        if killpg(pgid, None).is_err() {
            return false;
        }
        !self.members().is_empty()
    }

    /// Sends `signal` to the whole group, if it still has members of this session.
    pub fn signal(&self, signal: Signal) -> bool {
        match pid_t(self.pgid) {
            Some(pgid) if self.is_alive() => killpg(pgid, signal).is_ok(),
            _ => false,
        }
    }

    /// Polls (every 20 ms, calling `tick` in between, e.g. to reap) until no member runs or
    /// `timeout` passes; returns whether the group is gone.
    pub fn wait_gone(&self, timeout: Duration, mut tick: impl FnMut()) -> bool {
        let end = std::time::Instant::now() + timeout;
        loop {
            tick();
            if !self.is_alive() {
                return true;
            }
            if std::time::Instant::now() >= end {
                return false;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// The running (non-zombie) descendants of `ancestor`, found by walking `/proc` and following
/// each process's parent pid up to `ancestor`. The supervisor is a child subreaper, so a
/// descendant that called `setsid()` and lost its parent is reparented to it and stays in this
/// set, although it left the service's process group and session.
///
/// The walk is a snapshot: a process may exit or fork right after it. Callers signal through
/// [`ProcessIdentity`] (pid plus start time) so that a pid reused meanwhile is not signalled.
pub(crate) fn running_descendants(ancestor: u32) -> Vec<ProcStat> {
    let all = ProcStat::all();
    let mut children: std::collections::HashMap<u32, Vec<usize>> = Default::default();
    for (index, stat) in all.iter().enumerate() {
        children.entry(stat.ppid).or_default().push(index);
    }
    let mut found = Vec::new();
    let mut queue = vec![ancestor];
    // Each pid is visited once (a parent-pid graph read from one snapshot is a forest, but a
    // racy snapshot could hold a cycle through a reused pid), so the walk is bounded.
    let mut seen = std::collections::HashSet::from([ancestor]);
    while let Some(parent) = queue.pop() {
        for &index in children.get(&parent).map_or(&[][..], Vec::as_slice) {
            let stat = all[index];
            if seen.insert(stat.pid) {
                queue.push(stat.pid);
                if stat.is_running() {
                    found.push(stat);
                }
            }
        }
    }
    found
}

/// Clock ticks per second (`sysconf(_SC_CLK_TCK)`), usually 100.
pub(crate) fn clock_ticks_per_second() -> u64 {
    nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
        .ok()
        .flatten()
        .and_then(|v| u64::try_from(v).ok())
        .filter(|v| *v > 0)
        .unwrap_or(100)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_of_self_is_alive_and_a_wrong_start_time_is_not() {
        let me = ProcessIdentity::of(std::process::id()).unwrap();
        assert!(me.is_alive());
        let impostor = ProcessIdentity {
            start_time: me.start_time + 1,
            ..me
        };
        assert!(
            !impostor.is_alive(),
            "same pid, other start time: another process"
        );
        assert!(!impostor.signal(Signal::SIGTERM));
    }

    #[test]
    fn a_reaped_child_is_dead_and_its_group_gone() {
        use std::os::unix::process::CommandExt;
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .process_group(0)
            .spawn()
            .unwrap();
        let id = ProcessIdentity::of(child.id()).unwrap();
        let group = ProcessGroup {
            pgid: child.id(),
            session: ProcStat::read(child.id()).unwrap().session,
        };
        assert!(id.is_alive() && group.is_alive());
        assert_eq!(group.members(), vec![child.id()]);
        assert!(group.signal(Signal::SIGKILL));
        child.wait().unwrap();
        assert!(!id.is_alive());
        assert!(group.wait_gone(Duration::from_secs(5), || {}));
        assert!(!group.signal(Signal::SIGKILL));
    }

    #[test]
    fn descendants_include_children_and_grandchildren() {
        use std::os::unix::process::CommandExt;
        let dir = tempfile::tempdir().unwrap();
        let pidfile = dir.path().join("pid");
        let script = format!("sleep 300 & echo $! > {}; wait", pidfile.display());
        let mut child = std::process::Command::new("sh")
            .args(["-c", &script])
            .process_group(0)
            .spawn()
            .unwrap();
        let kill_all = |child: &mut std::process::Child| {
            let _ = killpg(Pid::from_raw(child.id() as i32), Signal::SIGKILL);
            let _ = child.wait();
        };
        let mut grandchild = None;
        for _ in 0..1000 {
            grandchild = std::fs::read_to_string(&pidfile)
                .ok()
                .and_then(|t| t.trim().parse::<u32>().ok());
            if grandchild.is_some() {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let found: Vec<u32> = running_descendants(std::process::id())
            .iter()
            .map(|s| s.pid)
            .collect();
        kill_all(&mut child);
        let grandchild = grandchild.expect("the shell wrote its child's pid within 10 s");
        assert!(found.contains(&child.id()), "{found:?}");
        assert!(found.contains(&grandchild), "{found:?}");
        assert!(
            !found.contains(&std::process::id()),
            "not the ancestor itself"
        );
    }
}
