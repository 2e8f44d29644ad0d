//! The deploy lock: `flock(2)` on `state/deploy.lock`, owner details in
//! `state/deploy.lock.owner` for the message a second deployer sees.
//!
//! The kernel drops the lock when the holder dies (even by SIGKILL), so there is no stale lock
//! to clean up; the owner file may be stale and is only ever shown, never trusted. The lock
//! file is opened close-on-exec (Rust's default), so a child the holder starts (the service's
//! supervisor) does not inherit it.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rustix::fs::FlockOperation;
use serde::{Deserialize, Serialize};

use crate::DeployError;
use crate::layout::write_atomic;

/// Who holds the lock.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LockOwner {
    /// The holder's pid.
    pub pid: u32,
    /// The host name.
    pub host: String,
    /// The user name.
    pub user: String,
    /// When it took the lock (RFC 3339).
    pub started: String,
    /// What it is doing (`deploy`, `rollback`, `recover`).
    pub operation: String,
    /// The release it works on, when known.
    pub release: Option<String>,
}

impl LockOwner {
    /// The owner for this process.
    pub fn current(operation: &str, release: Option<String>) -> Self {
        Self {
            pid: std::process::id(),
            host: hostname(),
            user: user_name(),
            started: jiff::Timestamp::now().to_string(),
            operation: operation.to_owned(),
            release,
        }
    }

    /// One line for people.
    pub fn describe(&self) -> String {
        format!(
            "{} by {}@{} (pid {}) since {}{}",
            self.operation,
            self.user,
            self.host,
            self.pid,
            self.started,
            self.release
                .as_deref()
                .map(|r| format!(", release {r}"))
                .unwrap_or_default()
        )
    }
}

/// A held deploy lock; dropping it releases the lock.
#[derive(Debug)]
pub struct DeployLock {
    file: File,
    path: PathBuf,
}

impl DeployLock {
    /// Takes the lock at `path`, waiting up to `wait` (zero: one try) for another holder.
    ///
    /// # Errors
    /// [`DeployError::Locked`] with the holder's details when it stays held,
    /// [`DeployError::Io`] when the file cannot be opened.
    #[tracing::instrument(skip_all, fields(path = %path.display()))]
    pub fn acquire(path: &Path, wait: Duration, owner: &LockOwner) -> Result<Self, DeployError> {
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(|e| DeployError::io("create", parent, e))?;
        }
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(path)
            .map_err(|e| DeployError::io("open", path, e))?;
        let deadline = Instant::now() + wait;
        loop {
            match rustix::fs::flock(&file, FlockOperation::NonBlockingLockExclusive) {
                Ok(()) => break,
                Err(e) if e == rustix::io::Errno::WOULDBLOCK || e == rustix::io::Errno::INTR => {
                    if Instant::now() >= deadline {
                        return Err(DeployError::Locked {
                            path: path.to_path_buf(),
                            owner: Self::owner(path)
                                .map(|o| o.describe())
                                .unwrap_or_else(|| "owner unknown".to_owned()),
                        });
                    }
                    std::thread::sleep(Duration::from_millis(50));
                }
                Err(e) => return Err(DeployError::io("flock", path, e.into())),
            }
        }
        let json = serde_json::to_vec_pretty(owner).unwrap_or_default();
        // Only ever shown to a second deployer: a full disk must not stop the one holding it.
        if let Err(e) = write_atomic(&owner_path(path), &json) {
            tracing::warn!(%e, "cannot record the lock's owner");
        }
        Ok(Self {
            file,
            path: path.to_path_buf(),
        })
    }

    /// The owner recorded beside the lock at `path` (possibly stale).
    pub fn owner(path: &Path) -> Option<LockOwner> {
        let text = std::fs::read_to_string(owner_path(path)).ok()?;
        serde_json::from_str(&text).ok()
    }

    /// Whether some process holds the lock at `path` now.
    pub fn is_held(path: &Path) -> bool {
        let Ok(file) = File::open(path) else {
            return false;
        };
        match rustix::fs::flock(&file, FlockOperation::NonBlockingLockShared) {
            Ok(()) => {
                let _ = rustix::fs::flock(&file, FlockOperation::Unlock);
                false
            }
            Err(_) => true,
        }
    }
}

impl Drop for DeployLock {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(owner_path(&self.path));
        let _ = rustix::fs::flock(&self.file, FlockOperation::Unlock);
    }
}

fn owner_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".owner");
    path.with_file_name(name)
}

/// The host name (empty when unknown).
pub(crate) fn hostname() -> String {
    rustix::system::uname()
        .nodename()
        .to_string_lossy()
        .into_owned()
}

/// The user name: `USER`, else `LOGNAME`, else the password database's name for the uid
/// (cron and CI often set neither), else the numeric uid.
pub(crate) fn user_name() -> String {
    user_name_from(
        std::env::var("USER")
            .or_else(|_| std::env::var("LOGNAME"))
            .ok(),
    )
}

/// [`user_name`] with the environment's answer given.
fn user_name_from(from_env: Option<String>) -> String {
    from_env.filter(|u| !u.is_empty()).unwrap_or_else(|| {
        let uid = nix::unistd::getuid();
        nix::unistd::User::from_uid(uid)
            .ok()
            .flatten()
            .map_or_else(|| uid.as_raw().to_string(), |u| u.name)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_user_is_named_even_without_user_in_the_environment() {
        // What cron and CI give: no USER, no LOGNAME (or an empty one). The password database
        // names the uid.
        let uid = nix::unistd::getuid();
        let expected = nix::unistd::User::from_uid(uid).unwrap().unwrap().name;
        for from_env in [None, Some(String::new())] {
            let name = user_name_from(from_env);
            assert_eq!(name, expected);
            assert_ne!(name, uid.as_raw().to_string(), "a name, not the uid");
        }
        assert_eq!(user_name_from(Some("alice".into())), "alice");
    }

    #[test]
    fn a_second_holder_is_refused_with_the_owner_named_and_gets_it_after_release() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("state/deploy.lock");
        let owner = LockOwner::current("deploy", Some("r1".into()));
        let first = DeployLock::acquire(&path, Duration::ZERO, &owner).unwrap();
        assert!(DeployLock::is_held(&path));
        // flock locks belong to the open file description: a second open conflicts even in
        // the same process.
        let err = DeployLock::acquire(&path, Duration::from_millis(120), &owner).unwrap_err();
        match &err {
            DeployError::Locked { owner, .. } => {
                assert!(owner.contains("deploy by"), "{owner}");
                assert!(owner.contains("release r1"), "{owner}");
            }
            other => panic!("unexpected {other:?}"),
        }
        assert_eq!(err.exit_code(), 75);
        drop(first);
        assert!(!DeployLock::is_held(&path));
        let _again = DeployLock::acquire(&path, Duration::ZERO, &owner).unwrap();
    }
}
