//! The remote half of the dead-man's switch.
//!
//! Before a host's deploy starts, the fleet starts `cutover-deploy fleet-watchdog` on it,
//! detached (`setsid -f`), with a marker prefix `<dir>/fleet/<token>`. The deploy command
//! writes `<token>.switched` when the pipeline switched (or `<token>.done` when it did not); the
//! fleet writes `<token>.confirmed` over a fresh SSH connection once the host is healthy.
//! A switched host that sees no confirmation within `confirm_timeout` rolls itself back.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// What the watchdog did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WatchOutcome {
    /// The deploy did not switch (or did not finish in time): nothing to guard.
    NotSwitched,
    /// Confirmed in time.
    Confirmed,
    /// Not confirmed: rolled back (the rollback's report line, or its error).
    RolledBack(Result<String, String>),
}

fn marker(prefix: &Path, ext: &str) -> PathBuf {
    let mut s = prefix.as_os_str().to_owned();
    s.push(".");
    s.push(ext);
    PathBuf::from(s)
}

/// Waits for the switch (up to `switch_timeout`), then for the confirmation (up to
/// `confirm_timeout` from the switch); calls `rollback` when the confirmation does not come.
pub fn watch(
    prefix: &Path,
    switch_timeout: Duration,
    confirm_timeout: Duration,
    rollback: impl FnOnce() -> Result<String, String>,
) -> WatchOutcome {
    let confirmed = marker(prefix, "confirmed");
    let deadline = Instant::now() + switch_timeout;
    loop {
        if confirmed.exists() {
            return WatchOutcome::Confirmed;
        }
        if marker(prefix, "switched").exists() {
            break;
        }
        if marker(prefix, "done").exists() || Instant::now() >= deadline {
            return WatchOutcome::NotSwitched;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let deadline = Instant::now() + confirm_timeout;
    while Instant::now() < deadline {
        if confirmed.exists() {
            return WatchOutcome::Confirmed;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    if confirmed.exists() {
        return WatchOutcome::Confirmed;
    }
    let result = rollback();
    let _ = std::fs::write(
        marker(prefix, "reverted"),
        match &result {
            Ok(s) | Err(s) => s.as_bytes(),
        },
    );
    WatchOutcome::RolledBack(result)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unconfirmed_rolls_back_confirmed_does_not() {
        let dir = std::env::temp_dir().join(format!("fleet-watch-{}", std::process::id()));
        let _ = std::fs::create_dir_all(&dir);
        let p = dir.join("t1");
        let _ = std::fs::write(marker(&p, "switched"), "");
        let out = watch(
            &p,
            Duration::from_secs(5),
            Duration::from_millis(200),
            || Ok("rolled".into()),
        );
        assert_eq!(out, WatchOutcome::RolledBack(Ok("rolled".into())));
        let p = dir.join("t2");
        let _ = std::fs::write(marker(&p, "switched"), "");
        let _ = std::fs::write(marker(&p, "confirmed"), "");
        let out = watch(&p, Duration::from_secs(5), Duration::from_secs(5), || {
            Ok("no".into())
        });
        assert_eq!(out, WatchOutcome::Confirmed);
        let p = dir.join("t3");
        let _ = std::fs::write(marker(&p, "done"), "");
        let out = watch(&p, Duration::from_secs(5), Duration::from_secs(5), || {
            Ok("no".into())
        });
        assert_eq!(out, WatchOutcome::NotSwitched);
        let _ = std::fs::remove_dir_all(dir);
    }
}
