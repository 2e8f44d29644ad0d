//! Size-based rotation of the access logs: rename, then have nginx reopen them.
//!
//! nginx keeps writing to the file it opened, whatever its name, until it is told to reopen
//! its logs (`USR1`). So a rotation renames `access.json` to `access.json.1` (and the plain
//! `access.log` to `access.log.1`), which loses nothing: lines written between the rename and
//! the reopen land in the renamed file, where a reader that follows the log by its open file
//! (the edge reader) finishes them before it moves to the new file. One rotated generation is
//! kept; the next rotation replaces it. A lock file serialises rotations, so two owners that
//! check the size at once cannot rename twice and push the unread generation away.

use std::path::Path;

use nix::fcntl::{Flock, FlockArg};
use serde::Serialize;

use crate::EdgeError;
use crate::instance::InstanceState;
use crate::layout::Layout;
use crate::nginx::Nginx;

/// When [`rotate_access_logs`] renames the logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RotateWhen {
    /// Only when the edge log (or the plain one) is larger than this many bytes
    /// (`[proxy] access_log_max_bytes`).
    LargerThan(u64),
    /// Now, whatever their size (an empty log is left alone).
    Now,
}

/// What a rotation did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RotationReport {
    /// Whether the logs were renamed.
    pub rotated: bool,
    /// The edge log's size before the rotation (or now, when nothing was done).
    pub edge_log_bytes: u64,
    /// How nginx was told to reopen: `usr1 PID`, `nginx -s reopen`, or `not running`.
    pub reopened: Option<String>,
}

/// Rotates the access logs of the instance under `layout` when `when` says so, then has nginx
/// reopen them: `USR1` to the master recorded in `cutover-edge.json` (pid and start time),
/// else `nginx -s reopen` through its pid file; with no nginx running, renaming is enough.
///
/// # Errors
/// [`EdgeError::Io`] when a log cannot be renamed or the lock taken; [`EdgeError::Nginx`] when
/// nginx runs but cannot be told to reopen (the logs were renamed: nginx keeps writing to
/// `*.1` until it is reloaded or restarted).
#[tracing::instrument(skip_all, fields(prefix = %layout.prefix().display()))]
pub async fn rotate_access_logs(
    nginx: &Nginx,
    layout: &Layout,
    when: RotateWhen,
) -> Result<RotationReport, EdgeError> {
    let lock_path = layout.logs_dir().join("rotate.lock");
    let lock_file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(|e| EdgeError::io("open", &lock_path, e))?;
    let _lock = Flock::lock(lock_file, FlockArg::LockExclusive)
        .map_err(|(_, errno)| EdgeError::io("lock", &lock_path, errno.into()))?;
    let edge = size_of(&layout.edge_log())?;
    let plain = size_of(&layout.access_log())?;
    let due = match when {
        RotateWhen::LargerThan(max) => edge > max || plain > max,
        RotateWhen::Now => edge > 0 || plain > 0,
    };
    if !due {
        return Ok(RotationReport {
            rotated: false,
            edge_log_bytes: edge,
            reopened: None,
        });
    }
    for (from, to) in [
        (layout.edge_log(), layout.rotated_edge_log()),
        (layout.access_log(), layout.rotated_access_log()),
    ] {
        match std::fs::rename(&from, &to) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(EdgeError::io("rename", &from, e)),
        }
    }
    let reopened = reopen(nginx, layout).await?;
    tracing::info!(edge_log_bytes = edge, %reopened, "access logs rotated");
    Ok(RotationReport {
        rotated: true,
        edge_log_bytes: edge,
        reopened: Some(reopened),
    })
}

async fn reopen(nginx: &Nginx, layout: &Layout) -> Result<String, EdgeError> {
    use nix::sys::signal::{Signal, kill};
    if let Ok(state) = InstanceState::load(layout)
        && state.is_alive()
    {
        kill(nix::unistd::Pid::from_raw(state.pid), Signal::SIGUSR1).map_err(|e| {
            EdgeError::Nginx {
                command: format!("kill -USR1 {}", state.pid),
                reason: e.to_string(),
            }
        })?;
        return Ok(format!("usr1 {}", state.pid));
    }
    if layout.pid_file().exists() {
        // Not started by cutover-edge: only nginx's own mechanism (its pid file) is safe.
        nginx.reopen(layout).await?;
        return Ok("nginx -s reopen".to_owned());
    }
    Ok("not running".to_owned())
}

fn size_of(path: &Path) -> Result<u64, EdgeError> {
    match std::fs::metadata(path) {
        Ok(m) => Ok(m.len()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(0),
        Err(e) => Err(EdgeError::io("stat", path, e)),
    }
}
