//! Leftovers of killed runs: the hidden temporary files and directories that `create` and
//! `restore` write beside their results and rename (or remove) when they finish.
//!
//! A run that is killed (SIGKILL, power loss) cannot clean up, so its temporaries stay:
//! `.<archive>.partial-<pid>-<nanos>` (an unfinished archive or sidecar, in the backup
//! directory), `.<target>.restore-<pid>-<nanos>` (a restore's staging directory, beside the
//! target) and `.<target>.previous-<pid>-<nanos>` (the old content a restore moved aside on a
//! file system without `RENAME_EXCHANGE`).
//!
//! # When a leftover is removed
//! Only entries whose whole name has exactly that shape are considered, and one is removed
//! only when **both** hold:
//! - the process named by the pid in its name no longer runs (`/proc/<pid>` is gone), so no
//!   live run of this host can still be writing it; and
//! - it was last modified at least `min_age` ago (default [`DEFAULT_LEFTOVER_AGE`], one hour).
//!
//! The age guards against what the pid cannot tell: a run in another pid namespace (a
//! container sharing the directory) or a reused pid; a run that is writing keeps the mtime of
//! its archive fresh. Everything else is reported as kept, with the reason.
//!
//! # Partial archives, at once
//! [`sweep_partials`] removes the `.partial-` files of a backup directory without waiting for
//! the hour, for the next backup to run on a disk its killed predecessor filled. It can, because
//! `create` holds an exclusive `flock` on each partial file for as long as it writes it: a
//! partial whose pid no longer runs **and** whose lock can be taken has no writer left in any
//! pid namespace of this host. (A partial written by a version before the lock, on a directory
//! shared with another pid namespace, is the one case the lock cannot tell; flock is unreliable
//! on NFS.)

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use serde::Serialize;
use tracing::instrument;

use crate::BackupError;

/// The default minimum age of a leftover before it is removed: one hour.
pub const DEFAULT_LEFTOVER_AGE: Duration = Duration::from_secs(3600);

/// What kind of temporary a leftover is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum LeftoverKind {
    /// An unfinished archive or sidecar of `create` (`.partial-`).
    Partial,
    /// A restore's staging directory (`.restore-`).
    RestoreStaging,
    /// Old content moved aside by a restore without `RENAME_EXCHANGE` (`.previous-`).
    Previous,
}

/// One temporary left by a run, and what `prune` decided about it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Leftover {
    /// Its path.
    pub path: PathBuf,
    /// What it is.
    pub kind: LeftoverKind,
    /// The pid of the run that created it (from its name).
    pub pid: u32,
    /// Seconds since it was last modified.
    pub age_secs: u64,
    /// Whether it is (or, in a dry run, would be) removed.
    pub remove: bool,
    /// Why it is kept or removed.
    pub reason: String,
}

/// Parses `.<name>.<tag>-<pid>-<9 digits>` into its kind and pid.
fn parse_name(name: &str) -> Option<(LeftoverKind, u32)> {
    let rest = name.strip_prefix('.')?;
    let (stem, suffix) = rest.rsplit_once('.')?;
    if stem.is_empty() {
        return None;
    }
    let (tag, numbers) = suffix.split_once('-')?;
    let kind = match tag {
        "partial" => LeftoverKind::Partial,
        "restore" => LeftoverKind::RestoreStaging,
        "previous" => LeftoverKind::Previous,
        _ => return None,
    };
    let (pid, nanos) = numbers.split_once('-')?;
    if nanos.len() != 9 || !nanos.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    if pid.is_empty() || !pid.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some((kind, pid.parse().ok()?))
}

fn pid_running(pid: u32) -> bool {
    pid != 0 && Path::new("/proc").join(pid.to_string()).exists()
}

/// Finds the leftovers directly inside `dir` and decides, by the rules in the module docs,
/// which to remove. Nothing is changed. A missing `dir` has none.
///
/// # Errors
/// [`BackupError::Io`] when `dir` cannot be read.
pub fn find_leftovers(dir: &Path, min_age: Duration) -> Result<Vec<Leftover>, BackupError> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(BackupError::io("read directory", dir)(e)),
    };
    let now = SystemTime::now();
    let mut found = Vec::new();
    for entry in entries {
        let entry = entry.map_err(BackupError::io("read directory", dir))?;
        let name = entry.file_name();
        let Some((kind, pid)) = name.to_str().and_then(parse_name) else {
            continue;
        };
        let path = entry.path();
        // symlink_metadata: a leftover is never followed anywhere.
        let Ok(meta) = std::fs::symlink_metadata(&path) else {
            continue; // gone meanwhile
        };
        let age = meta
            .modified()
            .ok()
            .and_then(|m| now.duration_since(m).ok())
            .unwrap_or(Duration::ZERO);
        let (remove, reason) = if pid_running(pid) {
            (false, format!("its run (pid {pid}) is still running"))
        } else if age < min_age {
            (
                false,
                format!(
                    "modified {}s ago, younger than {}s",
                    age.as_secs(),
                    min_age.as_secs()
                ),
            )
        } else {
            (
                true,
                format!("pid {pid} has exited and it is {}s old", age.as_secs()),
            )
        };
        found.push(Leftover {
            path,
            kind,
            pid,
            age_secs: age.as_secs(),
            remove,
            reason,
        });
    }
    found.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(found)
}

/// Finds the leftovers in each of `dirs` and removes those the rules allow, unless `dry_run`.
/// Returns every leftover found with its verdict.
///
/// # Errors
/// [`BackupError::Io`] when a directory cannot be read or a leftover cannot be removed.
#[instrument(skip_all, fields(dirs = dirs.len(), dry_run))]
pub fn sweep_leftovers(
    dirs: &[PathBuf],
    min_age: Duration,
    dry_run: bool,
) -> Result<Vec<Leftover>, BackupError> {
    let mut all = Vec::new();
    for dir in dirs {
        let found = find_leftovers(dir, min_age)?;
        let mut removed_any = false;
        for leftover in found.iter().filter(|l| l.remove) {
            if dry_run {
                continue;
            }
            let result = match std::fs::symlink_metadata(&leftover.path) {
                Ok(m) if m.is_dir() => crate::restore::remove_tree(&leftover.path),
                Ok(_) => std::fs::remove_file(&leftover.path),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
                Err(e) => Err(e),
            };
            result.map_err(BackupError::io("remove leftover", &leftover.path))?;
            removed_any = true;
            tracing::info!(path = %leftover.path.display(), "removed the leftover of a killed run");
        }
        if removed_any {
            crate::fsutil::sync_dir(dir)?;
        }
        all.extend(found);
    }
    Ok(all)
}

/// Removes every `.partial-` file (an unfinished archive or sidecar of `create`) directly in
/// the backup directory `dest` that no live run is writing, whatever its age: its pid (from
/// its name) no longer runs and nobody holds the `flock` that `create` keeps on it while
/// writing (see the module docs). Returns the paths removed, sorted; a missing `dest` has none.
/// Restore staging and `.previous-` directories are left to [`sweep_leftovers`].
///
/// The deploy pipeline calls this at the start of its backup phase, so that a killed backup's
/// partial file does not fill the disk for the next one.
///
/// # Errors
/// [`BackupError::Io`] when `dest` cannot be read or a partial file cannot be removed.
#[instrument(skip_all, fields(dest = %dest.display()))]
pub fn sweep_partials(dest: &Path) -> Result<Vec<PathBuf>, BackupError> {
    let found = find_leftovers(dest, Duration::ZERO)?;
    let mut removed = Vec::new();
    for leftover in found {
        if leftover.kind != LeftoverKind::Partial || pid_running(leftover.pid) {
            continue;
        }
        match partial_is_locked(&leftover.path) {
            Ok(true) => {
                tracing::info!(path = %leftover.path.display(), "a partial file is being written (its lock is held): kept");
                continue;
            }
            Ok(false) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(BackupError::io("lock partial file", &leftover.path)(e)),
        }
        match std::fs::remove_file(&leftover.path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(BackupError::io("remove partial file", &leftover.path)(e)),
        }
        tracing::info!(path = %leftover.path.display(), pid = leftover.pid, "removed the partial file of a killed backup");
        removed.push(leftover.path);
    }
    if !removed.is_empty() {
        crate::fsutil::sync_dir(dest)?;
    }
    Ok(removed)
}

/// Whether another open file description holds the `flock` `create` takes on a partial file.
/// Only regular files are opened (never through a symlink) and nothing is written.
fn partial_is_locked(path: &Path) -> std::io::Result<bool> {
    use std::os::unix::fs::OpenOptionsExt;
    let meta = std::fs::symlink_metadata(path)?;
    if !meta.is_file() {
        return Ok(false);
    }
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags((rustix::fs::OFlags::NOFOLLOW | rustix::fs::OFlags::NONBLOCK).bits() as i32)
        .open(path)?;
    match rustix::fs::flock(&file, rustix::fs::FlockOperation::NonBlockingLockExclusive) {
        // Our lock goes with `file`, closed on return.
        Ok(()) => Ok(false),
        Err(rustix::io::Errno::WOULDBLOCK) => Ok(true),
        Err(e) => Err(e.into()),
    }
}

/// Takes the exclusive lock that marks `file` (a partial file `create` is writing) as in use.
pub(crate) fn lock_partial(file: &std::fs::File, path: &Path) -> Result<(), BackupError> {
    rustix::fs::flock(file, rustix::fs::FlockOperation::NonBlockingLockExclusive).map_err(|e| {
        BackupError::Io {
            action: "lock partial file",
            path: path.to_path_buf(),
            error: e.into(),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_our_exact_names_are_leftovers() {
        let table = [
            (
                ".b.tar.gz.partial-123-000000042",
                Some((LeftoverKind::Partial, 123)),
            ),
            (
                ".b.tar.zst.partial-7-000000042",
                Some((LeftoverKind::Partial, 7)),
            ),
            (
                ".data.restore-9-123456789",
                Some((LeftoverKind::RestoreStaging, 9)),
            ),
            (
                ".data.previous-77-000000000",
                Some((LeftoverKind::Previous, 77)),
            ),
            (".data.restore-9-12345678", None),
            (".data.restore-x-123456789", None),
            (".data.other-9-123456789", None),
            ("data.partial-9-123456789", None),
            ("..partial-9-123456789", None),
            (".gitignore", None),
        ];
        for (name, expected) in table {
            assert_eq!(parse_name(name), expected, "{name}");
        }
    }
}
