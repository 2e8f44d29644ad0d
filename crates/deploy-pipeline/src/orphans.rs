//! A deploy's children die with it: every command a deploy runs (the build, hooks, pre-flight
//! `command` and `build` checks) carries [`MARKER`]`=<root>` in its environment, which its own
//! children inherit. A deploy killed with SIGKILL cannot stop them, so `recover` (and so the
//! next deploy, which recovers first) kills every process still carrying the marker of this
//! root before it removes what they were writing: under the deploy lock, no live operation of
//! this root can own one.

use std::path::Path;
use std::time::{Duration, Instant};

use process_control::ProcStat;

/// The environment variable that marks a deploy's children.
pub(crate) const MARKER: &str = "CUTOVER_DEPLOY_OF";

/// The marker's value for the deployment under `root`.
pub(crate) fn marker_value(root: &Path) -> String {
    root.to_string_lossy().into_owned()
}

/// The pids of running processes whose environment carries the marker of `root` (this
/// process excluded). Processes of other users cannot be read, and are not ours.
pub(crate) fn find(root: &Path) -> Vec<u32> {
    let wanted = format!("{MARKER}={}", marker_value(root));
    let me = std::process::id();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(Result::ok)
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&pid| pid != me)
        .filter(|&pid| {
            std::fs::read(format!("/proc/{pid}/environ"))
                .is_ok_and(|env| env.split(|b| *b == 0).any(|v| v == wanted.as_bytes()))
        })
        .filter(|&pid| ProcStat::read(pid).is_some_and(|s| s.state != 'Z'))
        .collect()
}

/// Kills what a killed deploy of `root` left running (each process and its process group),
/// waiting up to `wait` for them to go. Returns what was killed, for the report.
pub(crate) fn kill(root: &Path, wait: Duration) -> Vec<u32> {
    let pids = find(root);
    if pids.is_empty() {
        return pids;
    }
    for &pid in &pids {
        let Ok(raw) = i32::try_from(pid) else {
            continue;
        };
        let Some(pid_t) = rustix::process::Pid::from_raw(raw) else {
            continue;
        };
        if let Some(stat) = ProcStat::read(pid)
            && stat.pgrp != 0
            && rustix::process::getpgrp().as_raw_pid() != i32::try_from(stat.pgrp).unwrap_or(-1)
        {
            host_util::process::kill_group(stat.pgrp);
        }
        let _ = rustix::process::kill_process(pid_t, rustix::process::Signal::KILL);
    }
    let deadline = Instant::now() + wait;
    while Instant::now() < deadline && !find(root).is_empty() {
        std::thread::sleep(Duration::from_millis(20));
    }
    tracing::warn!(?pids, "killed what an interrupted deploy left running");
    pids
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    #[test]
    fn marked_processes_of_this_root_are_killed_and_others_are_left() {
        let tmp = tempfile::tempdir().unwrap();
        let (ours, theirs) = (tmp.path().join("a"), tmp.path().join("b"));
        let spawn = |root: &Path| {
            use std::os::unix::process::CommandExt;
            Command::new("sh")
                .args(["-c", "sleep 300 & wait"])
                .env(MARKER, marker_value(root))
                .process_group(0)
                .spawn()
                .unwrap()
        };
        let mut mine = spawn(&ours);
        let mut other = spawn(&theirs);
        let deadline = Instant::now() + Duration::from_secs(10);
        // The shell and its sleep both carry the marker.
        while find(&ours).len() < 2 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        assert_eq!(find(&ours).len(), 2, "{:?}", find(&ours));
        let killed = kill(&ours, Duration::from_secs(10));
        assert_eq!(killed.len(), 2);
        assert!(find(&ours).is_empty());
        let _ = mine.wait();
        assert_eq!(
            find(&theirs).len(),
            2,
            "another root's processes are left alone"
        );
        let _ = kill(&theirs, Duration::from_secs(10));
        let _ = other.wait();
    }
}
