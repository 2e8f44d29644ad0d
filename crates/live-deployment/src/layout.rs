//! The release layout on a host and its atomic state changes.
//!
//! ```text
//! <root>/releases/<id>/     one directory per release; complete once release.json exists
//! <root>/current -> releases/<id>   swapped by renaming a new link over the old one
//! <root>/shared/            linked into each release
//! <root>/backups/           pre-deploy archives
//! <root>/state/             deploy.lock, deploy.lock.owner, journal.jsonl, audit.jsonl, deploy-state.json
//! <root>/logs/              service output
//! ```

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use secret_refs::SecretRef;
use serde::{Deserialize, Serialize};

use crate::LiveError;
use crate::service::Slot;

/// The file inside a release that marks it complete and records how to run it.
pub const RELEASE_RECORD: &str = "release.json";

/// What a staged release is and how to start it, as recorded when it was staged (a rollback
/// runs an old release exactly as it was deployed, whatever the manifest says today).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReleaseRecord {
    /// The release id.
    pub id: String,
    /// The service name.
    pub service: String,
    /// The source commit (short), when the source is a git work tree.
    pub commit: Option<String>,
    /// When it was staged (RFC 3339, UTC).
    pub created: String,
    /// The start argv template (placeholders not yet filled in).
    pub start: Vec<String>,
    /// Plain environment variables.
    pub env: BTreeMap<String, String>,
    /// Extra environment given for this release only (`cutover-deploy deploy --set-env`),
    /// applied over `env`, so that a rollback to it runs it the same way.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub set_env: BTreeMap<String, String>,
    /// Secret references by variable name (references, never values).
    pub secrets: BTreeMap<String, SecretRef>,
    /// The artifact's path inside the release and its size.
    pub artifact: Option<(PathBuf, u64)>,
}

/// What the pipeline remembers between operations (`state/deploy-state.json`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeployState {
    /// The slot serving `current`.
    pub slot: Option<Slot>,
    /// Releases that were committed, oldest first (the last is the current one).
    pub good: Vec<String>,
    /// Releases that failed and were rolled back.
    pub failed: Vec<String>,
    /// Blue-green: the release kept running warm in the slot opposite `slot` (the previous
    /// one, after a deploy with `keep_standby`). Cleared before anything else starts there.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub standby: Option<String>,
    /// Canary: the deploy in progress or the last one (its step, weights and the judge's
    /// latest evidence), for `status` and the monitor.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub canary: Option<CanaryProgress>,
}

/// What a canary deploy is doing, as the pipeline last wrote it (`deploy-state.json`'s
/// `canary` section): kept after it ends, with its final verdict.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CanaryProgress {
    /// The release being judged.
    pub release: String,
    /// The release it is compared with (the live one).
    pub baseline: String,
    /// The slot the canary runs in.
    pub canary_slot: Slot,
    /// The slot the baseline runs in.
    pub baseline_slot: Slot,
    /// The step now (1-based) among `steps`.
    pub step: u32,
    /// Every step's canary share in percent.
    pub steps: Vec<u8>,
    /// The canary's share of traffic now, in percent (0 after a rollback).
    pub canary_percent: u8,
    /// `running`, `promoted`, `rolled-back`.
    pub state: String,
    /// The judge's latest verdict (`continue`, `promote-step`, `rollback`, `inconclusive`).
    pub verdict: String,
    /// The judge's reason for it, with the numbers.
    pub reason: String,
    /// The judge's evidence (counts, rates, e-values, latency bounds), as it serialises it.
    pub evidence: serde_json::Value,
    /// When this was written (RFC 3339).
    pub updated: String,
}

impl DeployState {
    /// The newest good release other than `current`: the default rollback target.
    pub fn last_good_before(&self, current: Option<&str>) -> Option<&str> {
        self.good
            .iter()
            .rev()
            .map(String::as_str)
            .find(|id| Some(*id) != current)
    }

    /// Records `id` as the newest good release.
    pub fn mark_good(&mut self, id: &str) {
        self.good.retain(|g| g != id);
        self.failed.retain(|g| g != id);
        self.good.push(id.to_owned());
    }

    /// Records `id` as failed.
    pub fn mark_failed(&mut self, id: &str) {
        if !self.good.iter().any(|g| g == id) && !self.failed.iter().any(|g| g == id) {
            self.failed.push(id.to_owned());
        }
    }
}

/// The directories and files under one root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReleaseLayout {
    root: PathBuf,
}

impl ReleaseLayout {
    /// The layout under `root`.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }
    /// The root.
    pub fn root(&self) -> &Path {
        &self.root
    }
    /// `<root>/releases`.
    pub fn releases_dir(&self) -> PathBuf {
        self.root.join("releases")
    }
    /// `<root>/releases/<id>`.
    pub fn release_dir(&self, id: &str) -> PathBuf {
        self.releases_dir().join(id)
    }
    /// `<root>/current`.
    pub fn current_link(&self) -> PathBuf {
        self.root.join("current")
    }
    /// `<root>/shared`.
    pub fn shared_dir(&self) -> PathBuf {
        self.root.join("shared")
    }
    /// `<root>/backups`.
    pub fn backups_dir(&self) -> PathBuf {
        self.root.join("backups")
    }
    /// `<root>/builds/`: build directories of deploys under way.
    pub fn builds_dir(&self) -> PathBuf {
        self.root.join("builds")
    }

    /// `<root>/builds/<id>`: where release `id` is exported and built (removed afterwards).
    pub fn build_dir(&self, id: &str) -> PathBuf {
        self.builds_dir().join(id)
    }

    /// `<root>/build-cache/`: the `[service] build_cache` directories kept between builds.
    pub fn build_cache_dir(&self) -> PathBuf {
        self.root.join("build-cache")
    }

    /// `<root>/state/`: the journal, audit log, lock and deploy state.
    pub fn state_dir(&self) -> PathBuf {
        self.root.join("state")
    }
    /// `<root>/logs`.
    pub fn logs_dir(&self) -> PathBuf {
        self.root.join("logs")
    }
    /// `<root>/state/deploy.lock`.
    pub fn lock_file(&self) -> PathBuf {
        self.state_dir().join("deploy.lock")
    }
    /// `<root>/state/journal.jsonl`.
    pub fn journal_file(&self) -> PathBuf {
        self.state_dir().join("journal.jsonl")
    }
    /// `<root>/state/audit.jsonl`.
    pub fn audit_file(&self) -> PathBuf {
        self.state_dir().join("audit.jsonl")
    }
    /// `<root>/state/deploy-state.json`.
    pub fn state_file(&self) -> PathBuf {
        self.state_dir().join("deploy-state.json")
    }

    /// The values of the manifest's placeholders for release `release` (with nothing live,
    /// `{release}` is `current`, the directory it will name, and `{release_id}` has none),
    /// the slot's `port` (none in a build) and the service's `host`.
    pub fn placeholders(
        &self,
        release: Option<&str>,
        port: Option<u16>,
        host: std::net::IpAddr,
    ) -> process_control::template::Placeholders {
        let dir = release.map_or_else(|| self.current_link(), |id| self.release_dir(id));
        process_control::template::Placeholders {
            release: Some(dir.to_string_lossy().into_owned()),
            release_id: release.map(str::to_owned),
            port,
            host: Some(host.to_string()),
            root: Some(self.root.to_string_lossy().into_owned()),
            shared: Some(self.shared_dir().to_string_lossy().into_owned()),
        }
    }

    /// Creates the directories.
    ///
    /// # Errors
    /// [`LiveError::Io`] naming the directory.
    pub fn ensure_dirs(&self) -> Result<(), LiveError> {
        for dir in [
            self.releases_dir(),
            self.shared_dir(),
            self.backups_dir(),
            self.state_dir(),
            self.logs_dir(),
        ] {
            std::fs::create_dir_all(&dir).map_err(|e| LiveError::io("create", &dir, e))?;
        }
        Ok(())
    }

    /// The release `current` names, if any.
    pub fn current(&self) -> Option<String> {
        let target = std::fs::read_link(self.current_link()).ok()?;
        target.file_name().map(|n| n.to_string_lossy().into_owned())
    }

    /// Points `current` at `id` atomically: a new link under a temp name renamed over the old
    /// one, then the root directory fsynced.
    ///
    /// # Errors
    /// [`LiveError::Io`].
    pub fn set_current(&self, id: &str) -> Result<(), LiveError> {
        let tmp = self
            .root
            .join(format!(".current.tmp-{}", std::process::id()));
        let _ = std::fs::remove_file(&tmp);
        std::os::unix::fs::symlink(Path::new("releases").join(id), &tmp)
            .map_err(|e| LiveError::io("create symlink", &tmp, e))?;
        if let Err(e) = std::fs::rename(&tmp, self.current_link()) {
            // A failed switch must not leave the temp link behind.
            let _ = std::fs::remove_file(&tmp);
            return Err(LiveError::io("rename over", self.current_link(), e));
        }
        fsync_dir(&self.root)
    }

    /// Removes `current` (a first deploy rolled back).
    ///
    /// # Errors
    /// [`LiveError::Io`].
    pub fn clear_current(&self) -> Result<(), LiveError> {
        match std::fs::remove_file(self.current_link()) {
            Ok(()) => fsync_dir(&self.root),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(LiveError::io("remove", self.current_link(), e)),
        }
    }

    /// Every release directory, sorted by id (oldest first), complete or not.
    ///
    /// # Errors
    /// [`LiveError::Io`].
    pub fn list_releases(&self) -> Result<Vec<String>, LiveError> {
        let dir = self.releases_dir();
        let entries = match std::fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(LiveError::io("list", &dir, e)),
        };
        let mut ids: Vec<String> = entries
            .filter_map(Result::ok)
            .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| !n.starts_with('.'))
            .collect();
        ids.sort();
        Ok(ids)
    }

    /// Whether `id` was staged completely (its record exists).
    pub fn is_complete(&self, id: &str) -> bool {
        self.release_dir(id).join(RELEASE_RECORD).is_file()
    }

    /// Reads the record of `id`.
    ///
    /// # Errors
    /// [`LiveError::Release`] when it is missing or unreadable.
    pub fn read_record(&self, id: &str) -> Result<ReleaseRecord, LiveError> {
        let path = self.release_dir(id).join(RELEASE_RECORD);
        let text = std::fs::read_to_string(&path).map_err(|e| LiveError::Release {
            id: id.to_owned(),
            reason: format!("is not complete ({}: {e})", path.display()),
        })?;
        serde_json::from_str(&text).map_err(|e| LiveError::Corrupt {
            path,
            reason: e.to_string(),
        })
    }

    /// Writes the record of a staged release: the commit point of staging.
    ///
    /// # Errors
    /// [`LiveError::Io`].
    pub fn write_record(&self, record: &ReleaseRecord) -> Result<(), LiveError> {
        let path = self.release_dir(&record.id).join(RELEASE_RECORD);
        let json = serde_json::to_vec_pretty(record).map_err(|e| LiveError::Corrupt {
            path: path.clone(),
            reason: e.to_string(),
        })?;
        write_atomic(&path, &json)
    }

    /// Links each shared entry into the release: `releases/<id>/<entry>` ->
    /// `<root>/shared/<entry>`, creating a missing shared directory (trailing `/`) or leaving a
    /// missing file to the service.
    ///
    /// # Errors
    /// [`LiveError::Io`].
    pub fn link_shared(&self, id: &str, shared: &[String]) -> Result<(), LiveError> {
        for entry in shared {
            let is_dir = entry.ends_with('/');
            let rel = entry.trim_end_matches('/');
            let target = self.shared_dir().join(rel);
            if is_dir {
                std::fs::create_dir_all(&target)
                    .map_err(|e| LiveError::io("create", &target, e))?;
            } else if let Some(parent) = target.parent() {
                std::fs::create_dir_all(parent).map_err(|e| LiveError::io("create", parent, e))?;
            }
            let link = self.release_dir(id).join(rel);
            if let Some(parent) = link.parent() {
                std::fs::create_dir_all(parent).map_err(|e| LiveError::io("create", parent, e))?;
            }
            if link.symlink_metadata().is_ok() {
                let removed = if link.is_dir() && !link.is_symlink() {
                    std::fs::remove_dir_all(&link)
                } else {
                    std::fs::remove_file(&link)
                };
                removed.map_err(|e| LiveError::io("replace", &link, e))?;
            }
            std::os::unix::fs::symlink(&target, &link)
                .map_err(|e| LiveError::io("create symlink", &link, e))?;
        }
        Ok(())
    }

    /// Removes a release directory.
    ///
    /// # Errors
    /// [`LiveError::Io`].
    pub fn remove_release(&self, id: &str) -> Result<(), LiveError> {
        let dir = self.release_dir(id);
        match std::fs::remove_dir_all(&dir) {
            Ok(()) => fsync_dir(&self.releases_dir()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(LiveError::io("remove", &dir, e)),
        }
    }

    /// Reads `state/deploy-state.json` (empty when absent).
    ///
    /// # Errors
    /// [`LiveError::Corrupt`] when it does not parse.
    pub fn load_state(&self) -> Result<DeployState, LiveError> {
        let path = self.state_file();
        match std::fs::read_to_string(&path) {
            Ok(text) => serde_json::from_str(&text).map_err(|e| LiveError::Corrupt {
                path,
                reason: e.to_string(),
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(DeployState::default()),
            Err(e) => Err(LiveError::io("read", &path, e)),
        }
    }

    /// Writes `state/deploy-state.json` atomically.
    ///
    /// # Errors
    /// [`LiveError::Io`].
    pub fn save_state(&self, state: &DeployState) -> Result<(), LiveError> {
        let path = self.state_file();
        let json = serde_json::to_vec_pretty(state).map_err(|e| LiveError::Corrupt {
            path: path.clone(),
            reason: e.to_string(),
        })?;
        write_atomic(&path, &json)
    }
}

/// A sortable release id: UTC time to the second, then the short commit (or `local`).
pub fn release_id(now: jiff::Timestamp, commit: Option<&str>) -> String {
    let time = now.strftime("%Y%m%dT%H%M%SZ");
    let commit: String = commit
        .unwrap_or("local")
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .take(12)
        .collect();
    let commit = if commit.is_empty() {
        "local".to_owned()
    } else {
        commit
    };
    format!("{time}-{commit}")
}

/// The mode of every file [`write_atomic`] writes: readable and writable by its owner only.
const STATE_FILE_MODE: u32 = 0o600;

/// Writes `bytes` to `path` atomically: temp file in the same directory, fsync, rename, fsync
/// the directory. The file has mode 0600 whatever the umask, and replaces
/// one of any mode: deploy state says what failed and why, which is nobody else's to read.
///
/// # Errors
/// [`LiveError::Io`].
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), LiveError> {
    host_util::fs::write_atomic(path, bytes, STATE_FILE_MODE)
        .map_err(|e| LiveError::io("write", path, e))
}

/// fsyncs a directory so that renames in it are durable.
///
/// # Errors
/// [`LiveError::Io`].
pub fn fsync_dir(dir: &Path) -> Result<(), LiveError> {
    host_util::fs::fsync_dir(dir).map_err(|e| LiveError::io("fsync", dir, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atomic_writes_are_private_whatever_the_old_file() {
        use std::os::unix::fs::PermissionsExt;
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("deploy-state.json");
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o7777;
        write_atomic(&path, b"one").unwrap();
        assert_eq!(mode(&path), 0o600);
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        write_atomic(&path, b"two").unwrap();
        assert_eq!(mode(&path), 0o600);
        assert_eq!(std::fs::read(&path).unwrap(), b"two");
        assert_eq!(
            std::fs::read_dir(tmp.path()).unwrap().count(),
            1,
            "no temp file left"
        );
    }

    #[test]
    fn a_failed_switch_of_current_leaves_no_temp_link() {
        let tmp = tempfile::tempdir().unwrap();
        let layout = ReleaseLayout::new(tmp.path());
        // `current` as a non-empty directory: the rename over it fails.
        std::fs::create_dir_all(layout.current_link().join("x")).unwrap();
        assert!(layout.set_current("r1").is_err());
        let names: Vec<_> = std::fs::read_dir(tmp.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert!(!names.iter().any(|n| n.contains(".tmp")), "{names:?}");
    }

    #[test]
    fn release_ids_sort_by_time() {
        let a = release_id("2025-01-02T03:04:05Z".parse().unwrap(), Some("abc1234"));
        let b = release_id("2025-01-02T03:04:06Z".parse().unwrap(), Some("0000000"));
        assert_eq!(a, "20250102T030405Z-abc1234");
        assert!(a < b);
        assert_eq!(
            release_id("2025-01-02T03:04:05Z".parse().unwrap(), None),
            "20250102T030405Z-local"
        );
        assert_eq!(
            release_id("2025-01-02T03:04:05Z".parse().unwrap(), Some("../x")),
            "20250102T030405Z-x"
        );
    }

    #[test]
    fn current_swaps_atomically_and_shared_entries_link() {
        let tmp = tempfile::tempdir().unwrap();
        let layout = ReleaseLayout::new(tmp.path());
        layout.ensure_dirs().unwrap();
        assert_eq!(layout.current(), None);
        for id in ["r1", "r2"] {
            std::fs::create_dir_all(layout.release_dir(id)).unwrap();
        }
        layout.set_current("r1").unwrap();
        assert_eq!(layout.current().as_deref(), Some("r1"));
        layout.set_current("r2").unwrap();
        assert_eq!(layout.current().as_deref(), Some("r2"));
        assert!(
            std::fs::read_dir(tmp.path()).unwrap().all(|e| !e
                .unwrap()
                .file_name()
                .to_string_lossy()
                .contains("tmp")),
            "no temp link left behind"
        );
        layout
            .link_shared("r2", &["data/".into(), "conf/servers.json".into()])
            .unwrap();
        std::fs::write(layout.release_dir("r2").join("data/x"), "1").unwrap();
        assert_eq!(
            std::fs::read_to_string(layout.shared_dir().join("data/x")).unwrap(),
            "1"
        );
        assert!(
            layout
                .release_dir("r2")
                .join("conf/servers.json")
                .is_symlink()
        );
        layout.clear_current().unwrap();
        assert_eq!(layout.current(), None);
        assert!(!layout.is_complete("r2"));
        assert_eq!(layout.list_releases().unwrap(), ["r1", "r2"]);
    }

    #[test]
    fn placeholders_name_the_release_directory_or_current_when_nothing_is_live() {
        let layout = ReleaseLayout::new("/srv/hub");
        let host = std::net::IpAddr::from([127, 0, 0, 1]);
        let live = layout.placeholders(Some("r1"), Some(7001), host);
        let filled = process_control::template::fill(
            "{release}|{release_id}|{port}|{host}|{root}|{shared}",
            &live,
        )
        .unwrap();
        assert_eq!(
            filled,
            "/srv/hub/releases/r1|r1|7001|127.0.0.1|/srv/hub|/srv/hub/shared"
        );
        let none = layout.placeholders(None, None, host);
        assert_eq!(none.release.as_deref(), Some("/srv/hub/current"));
        assert!(process_control::template::fill("{release_id}", &none).is_err());
        assert!(process_control::template::fill("{port}", &none).is_err());
    }

    #[test]
    fn state_round_trips_and_picks_the_last_good() {
        let tmp = tempfile::tempdir().unwrap();
        let layout = ReleaseLayout::new(tmp.path());
        layout.ensure_dirs().unwrap();
        let mut state = layout.load_state().unwrap();
        state.mark_good("a");
        state.mark_good("b");
        state.mark_failed("c");
        state.mark_failed("b");
        layout.save_state(&state).unwrap();
        let state = layout.load_state().unwrap();
        assert_eq!(state.good, ["a", "b"]);
        assert_eq!(state.failed, ["c"]);
        assert_eq!(state.last_good_before(Some("b")), Some("a"));
        assert_eq!(state.last_good_before(Some("c")), Some("b"));
        std::fs::write(layout.state_file(), "{").unwrap();
        assert!(matches!(
            layout.load_state(),
            Err(LiveError::Corrupt { .. })
        ));
    }
}
