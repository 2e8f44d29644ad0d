//! `restore`: extract into a fresh staging directory beside the target with our own entry
//! validation (never the `tar` crate's unpack helpers), verify everything, then swap the staging
//! directory into place atomically (`renameat2(RENAME_EXCHANGE)`), keeping the previous content
//! until the swap has succeeded.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Serialize;
use tracing::instrument;

use crate::format::{ArchiveManifest, EntryKind, EntryRecord, Sidecar, sidecar_path};
use crate::fsutil::{parent_dir, sync_dir, temp_sibling};
use crate::read::{Limits, NullSink, Sink, open_archive, scan};
use crate::verify::{Problem, sidecar_problem};
use crate::{BackupError, Progress};

/// How to restore.
#[derive(Debug, Clone)]
pub struct RestoreOptions {
    /// The directory to replace with the archive's content.
    pub target: PathBuf,
    /// Only report what would be added, changed and removed.
    pub dry_run: bool,
    /// Caps on entry count and size.
    pub limits: Limits,
    /// Refuse an archive without its sidecar (default true: the sidecar's hash is what proves
    /// the file is the one `create` wrote).
    pub require_sidecar: bool,
    /// `syncfs` the staging directory before the swap so the new content is durable (default
    /// true).
    pub sync: bool,
}

impl RestoreOptions {
    /// Options with defaults for `target`.
    pub fn new(target: impl Into<PathBuf>) -> Self {
        Self {
            target: target.into(),
            dry_run: false,
            limits: Limits::default(),
            require_sidecar: true,
            sync: true,
        }
    }
}

/// What changes between the target and the archive, by archive path.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct RestoreDiff {
    /// In the archive, not in the target.
    pub added: Vec<String>,
    /// In both, different type, content, mode or link target.
    pub changed: Vec<String>,
    /// In the target, not in the archive.
    pub removed: Vec<String>,
}

/// The outcome of `restore`.
#[derive(Debug, Clone, Serialize)]
pub struct RestoreReport {
    /// The archive.
    pub archive: PathBuf,
    /// The target.
    pub target: PathBuf,
    /// Whether this was a dry run (nothing changed).
    pub dry_run: bool,
    /// Entries restored (or that would be).
    pub entries: u64,
    /// Content bytes restored (or that would be).
    pub content_bytes: u64,
    /// What changed (or would change).
    pub diff: RestoreDiff,
}

/// Restores `archive` into `opts.target`. On any error the target is left as it was and the
/// staging directory is removed; a killed restore leaves at most a hidden staging directory
/// beside the target (`.<target>.restore-*`).
#[instrument(skip_all, fields(archive = %archive.display(), target = %opts.target.display()))]
pub fn restore(
    archive: &Path,
    opts: &RestoreOptions,
    progress: &dyn Progress,
) -> Result<RestoreReport, BackupError> {
    let target = &opts.target;
    let parent = parent_dir(target);
    if !parent.is_dir() {
        return Err(BackupError::Target {
            path: target.clone(),
            reason: "its parent directory does not exist".into(),
        });
    }
    let target_meta = match std::fs::symlink_metadata(target) {
        Ok(m) if m.is_dir() => Some(m),
        Ok(_) => {
            return Err(BackupError::Target {
                path: target.clone(),
                reason: "exists and is not a directory".into(),
            });
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => {
            return Err(BackupError::Io {
                action: "inspect",
                path: target.clone(),
                error: e,
            });
        }
    };
    let side_path = sidecar_path(archive);
    let sidecar = match Sidecar::read(&side_path) {
        Ok(s) => Some(s),
        Err(BackupError::Io { error: source, .. })
            if source.kind() == std::io::ErrorKind::NotFound =>
        {
            None
        }
        Err(e) => return Err(e),
    };
    let (file, label) = open_archive(archive)?;
    let archive_len = file
        .metadata()
        .map_err(BackupError::io("inspect", archive))?
        .len();
    // What can be known before reading a byte is checked before reading a byte.
    match &sidecar {
        None if opts.require_sidecar => {
            return Err(BackupError::Corrupt {
                archive: label,
                entry: None,
                reason: format!(
                    "sidecar is missing ({}): the backup never completed or was tampered with; \
                     nothing was extracted (`--allow-missing-sidecar` restores it anyway)",
                    side_path.display()
                ),
            });
        }
        Some(side) if side.archive_bytes != archive_len => {
            return Err(BackupError::Corrupt {
                archive: label,
                entry: None,
                reason: format!(
                    "the archive is {archive_len} bytes but its sidecar {} records {}; nothing \
                     was extracted",
                    side_path.display(),
                    side.archive_bytes
                ),
            });
        }
        _ => {}
    }
    progress.start(archive_len);
    let check_sidecar = |s: &crate::read::Scanned| -> Result<(), BackupError> {
        if sidecar.is_none() && !opts.require_sidecar {
            return Ok(());
        }
        match sidecar_problem(
            sidecar.as_ref(),
            &s.manifest.metadata,
            &s.archive_sha256,
            s.archive_bytes,
        ) {
            None => Ok(()),
            Some(Problem { entry, reason, .. }) => Err(BackupError::Corrupt {
                archive: label.clone(),
                entry,
                reason,
            }),
        }
    };

    if opts.dry_run {
        let scanned = scan(file, &label, &opts.limits, &mut NullSink, progress)?;
        progress.finish();
        check_sidecar(&scanned)?;
        let diff = diff_target(target, target_meta.is_some(), &scanned.manifest.entries)?;
        return Ok(report(archive, opts, &scanned.manifest.entries, diff));
    }

    let staging = temp_sibling(target, "restore");
    std::fs::create_dir(&staging).map_err(BackupError::io("create staging directory", &staging))?;
    let result = (|| {
        // Opened before anything is written, so that its `syncfs` reports every writeback
        // error of this restore.
        let sync_dir = if opts.sync {
            let open = || File::open(&staging).map_err(BackupError::io("open", &staging));
            Some((open()?, open()?))
        } else {
            None
        };
        let (sync_dir, early) = match sync_dir {
            Some((last, helper)) => (Some(last), Some(EarlySyncfs::start(helper))),
            None => (None, None),
        };
        let mut extractor = Extractor {
            root: staging.clone(),
            dirs: Vec::new(),
            buf: vec![0; 256 * 1024],
            written: 0,
            early,
        };
        let scanned = scan(file, &label, &opts.limits, &mut extractor, progress)?;
        progress.finish();
        tracing::debug!(bytes = extractor.written, "content written into staging");
        if let Some(early) = extractor.early.take() {
            early.finish(&staging)?;
        }
        check_sidecar(&scanned)?;
        extractor.finish_dirs()?;
        let root_mode = target_meta.as_ref().map_or(0o755, |m| m.mode() & 0o7777);
        std::fs::set_permissions(&staging, std::fs::Permissions::from_mode(root_mode))
            .map_err(BackupError::io("set permissions", &staging))?;
        let diff = diff_target(target, target_meta.is_some(), &scanned.manifest.entries)?;
        if let Some(dir) = &sync_dir {
            rustix::fs::syncfs(dir).map_err(|e| BackupError::Io {
                action: "syncfs",
                path: staging.clone(),
                error: e.into(),
            })?;
        }
        Ok((scanned, diff))
    })();
    let (scanned, diff) = match result {
        Ok(r) => r,
        Err(e) => {
            let _ = remove_tree(&staging);
            return Err(e);
        }
    };
    swap_into_place(&staging, target, target_meta.is_some())?;
    tracing::info!(entries = scanned.manifest.entries.len(), "restored");
    Ok(report(archive, opts, &scanned.manifest.entries, diff))
}

fn report(
    archive: &Path,
    opts: &RestoreOptions,
    entries: &[EntryRecord],
    diff: RestoreDiff,
) -> RestoreReport {
    RestoreReport {
        archive: archive.to_path_buf(),
        target: opts.target.clone(),
        dry_run: opts.dry_run,
        entries: entries.len() as u64,
        content_bytes: entries.iter().map(|e| e.size).sum(),
        diff,
    }
}

/// Removes a tree we created, making read-only directories writable first.
pub(crate) fn remove_tree(path: &Path) -> std::io::Result<()> {
    for entry in walkdir::WalkDir::new(path)
        .follow_links(false)
        .into_iter()
        .flatten()
    {
        if entry.file_type().is_dir() {
            let _ = std::fs::set_permissions(entry.path(), std::fs::Permissions::from_mode(0o700));
        }
    }
    std::fs::remove_dir_all(path)
}

/// Puts `staging` where `target` is. With a target present the two are exchanged atomically,
/// then the old content (now at the staging path) is removed; the target never goes missing.
fn swap_into_place(staging: &Path, target: &Path, target_exists: bool) -> Result<(), BackupError> {
    use rustix::fs::{CWD, RenameFlags, renameat_with};
    let parent = parent_dir(target);
    let io_err = |action, e: rustix::io::Errno| BackupError::Io {
        action,
        path: target.to_path_buf(),
        error: e.into(),
    };
    if !target_exists {
        match renameat_with(CWD, staging, CWD, target, RenameFlags::NOREPLACE) {
            Ok(()) => {}
            Err(rustix::io::Errno::INVAL) | Err(rustix::io::Errno::NOSYS) => {
                std::fs::rename(staging, target)
                    .map_err(BackupError::io("rename into place", target))?;
            }
            Err(e) => {
                let _ = remove_tree(staging);
                return Err(io_err("rename into place", e));
            }
        }
        return sync_dir(&parent);
    }
    match renameat_with(CWD, staging, CWD, target, RenameFlags::EXCHANGE) {
        Ok(()) => {
            sync_dir(&parent)?;
            // The staging path now holds the previous content; the swap is durable, so drop it.
            remove_tree(staging).map_err(BackupError::io("remove previous content", staging))?;
            Ok(())
        }
        Err(rustix::io::Errno::INVAL) | Err(rustix::io::Errno::NOSYS) => {
            swap_by_renames(staging, target)
        }
        Err(e) => {
            let _ = remove_tree(staging);
            Err(io_err("swap into place", e))
        }
    }
}

/// The fallback of [`swap_into_place`] where `RENAME_EXCHANGE` is unsupported (some network
/// and FUSE file systems): move the old content aside (`.<target>.previous-*`), move the new
/// in, and move the old back if that fails. The target is missing only between the two
/// renames; a run killed there leaves the old content at the `previous` path, which `prune`
/// removes once the run is gone and an hour has passed.
fn swap_by_renames(staging: &Path, target: &Path) -> Result<(), BackupError> {
    let parent = parent_dir(target);
    let aside = temp_sibling(target, "previous");
    std::fs::rename(target, &aside).map_err(BackupError::io("move aside", target))?;
    if let Err(e) = std::fs::rename(staging, target) {
        let back = std::fs::rename(&aside, target);
        let _ = remove_tree(staging);
        return Err(match back {
            Ok(()) => BackupError::Io {
                action: "rename into place",
                path: target.to_path_buf(),
                error: e,
            },
            Err(back) => BackupError::Io {
                action: "move the previous content back (it is kept beside the target) to",
                path: target.to_path_buf(),
                error: back,
            },
        });
    }
    sync_dir(&parent)?;
    remove_tree(&aside).map_err(BackupError::io("remove previous content", &aside))
}

/// Writes validated entries under the staging root.
struct Extractor {
    root: PathBuf,
    dirs: Vec<(PathBuf, u32, u64)>,
    buf: Vec<u8>,
    /// File content bytes written so far.
    written: u64,
    /// Background flushing while the content is written (restores that sync).
    early: Option<EarlySyncfs>,
}

/// How much content is written between two early `syncfs` of the staging file system.
const EARLY_SYNCFS_BYTES: u64 = 16 * 1024 * 1024;

/// Flushes the staging file system in the background while the content is written: every
/// [`EARLY_SYNCFS_BYTES`], a helper thread runs `syncfs` (through its own descriptor), so that
/// the disk works while the cores decompress and the final `syncfs` before the swap has only
/// the tail left. The final `syncfs` still runs, on a descriptor opened before the first byte
/// was written (so it reports any writeback error of the whole restore), and an error of an
/// early one is returned by [`EarlySyncfs::finish`], never lost.
struct EarlySyncfs {
    since: u64,
    tx: Option<std::sync::mpsc::SyncSender<()>>,
    helper: Option<std::thread::JoinHandle<std::io::Result<()>>>,
}

impl EarlySyncfs {
    fn start(dir: File) -> Self {
        let (tx, rx) = std::sync::mpsc::sync_channel::<()>(1);
        let helper = std::thread::spawn(move || {
            for () in rx {
                rustix::fs::syncfs(&dir)?;
            }
            Ok(())
        });
        Self {
            since: 0,
            tx: Some(tx),
            helper: Some(helper),
        }
    }

    fn wrote(&mut self, n: u64) {
        self.since += n;
        if self.since >= EARLY_SYNCFS_BYTES {
            self.since = 0;
            // Skipped while the helper is still busy with the last one; a helper that stopped
            // on an error has it ready for `finish`.
            if let Some(tx) = &self.tx
                && let Err(std::sync::mpsc::TrySendError::Disconnected(())) = tx.try_send(())
            {
                self.tx = None;
            }
        }
    }

    fn finish(mut self, staging: &Path) -> Result<(), BackupError> {
        self.tx = None;
        let result = match self.helper.take().map(std::thread::JoinHandle::join) {
            Some(Ok(r)) => r,
            Some(Err(_)) => Err(std::io::Error::other("the syncfs helper panicked")),
            None => Ok(()),
        };
        result.map_err(BackupError::io("syncfs", staging))
    }
}

/// The bytes `manifest`'s files take on a file system with `block`-byte blocks: each file
/// rounded up to whole blocks, saturating.
fn needed_bytes(manifest: &ArchiveManifest, block: u64) -> u64 {
    let block = block.max(1);
    manifest
        .entries
        .iter()
        .filter(|e| e.kind == EntryKind::File)
        .fold(0u64, |sum, e| {
            sum.saturating_add(e.size.div_ceil(block).saturating_mul(block))
        })
}

/// Refuses a restore whose content cannot fit: `needed` against `available` bytes in `path`.
fn check_free_space(path: &Path, needed: u64, available: u64) -> Result<(), BackupError> {
    if needed > available {
        return Err(BackupError::NoSpace {
            path: path.to_path_buf(),
            needed,
            available,
        });
    }
    Ok(())
}

fn mtime_of(secs: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(secs)
}

impl Extractor {
    fn ensure_parent(&self, path: &Path) -> Result<(), BackupError> {
        // Validation guarantees no parent is a symlink or file we created, and the staging root
        // is fresh, so creating missing parents cannot follow a link.
        match path.parent() {
            Some(p) if !p.exists() => std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(p)
                .map_err(BackupError::io("create directory", p)),
            _ => Ok(()),
        }
    }

    /// Directory modes and times go last (deepest first), so a read-only directory does not
    /// block its own children and writing children does not bump its mtime.
    fn finish_dirs(&mut self) -> Result<(), BackupError> {
        self.dirs.sort_by(|a, b| b.0.cmp(&a.0));
        for (path, mode, mtime) in &self.dirs {
            let f = File::open(path).map_err(BackupError::io("open directory", path))?;
            f.set_permissions(std::fs::Permissions::from_mode(*mode))
                .map_err(BackupError::io("set permissions", path))?;
            f.set_modified(mtime_of(*mtime))
                .map_err(BackupError::io("set mtime", path))?;
        }
        Ok(())
    }
}

impl Sink for Extractor {
    /// The manifest's declared content must fit into the free space of the staging
    /// directory's file system before a byte is written (the previous content stays until the
    /// swap, so the whole new content must fit beside it).
    fn manifest(&mut self, manifest: &ArchiveManifest) -> Result<(), BackupError> {
        let stat = rustix::fs::statvfs(&self.root).map_err(|e| BackupError::Io {
            action: "read the free space (statvfs) of",
            path: self.root.clone(),
            error: e.into(),
        })?;
        let available = stat.f_bavail.saturating_mul(stat.f_frsize);
        let needed = needed_bytes(manifest, stat.f_frsize);
        check_free_space(&parent_dir(&self.root), needed, available)
    }

    fn entry(&mut self, rec: &EntryRecord, data: &mut dyn Read) -> Result<(), BackupError> {
        let path = self.root.join(&rec.path);
        self.ensure_parent(&path)?;
        match rec.kind {
            EntryKind::Dir => {
                match std::fs::DirBuilder::new().mode(0o700).create(&path) {
                    Ok(()) => {}
                    // Created earlier as an implicit parent: validation knows it is no link.
                    Err(e)
                        if e.kind() == std::io::ErrorKind::AlreadyExists
                            && !path.is_symlink()
                            && path.is_dir() => {}
                    Err(e) => {
                        return Err(BackupError::Io {
                            action: "create directory",
                            path,
                            error: e,
                        });
                    }
                }
                self.dirs.push((path, rec.mode, rec.mtime));
            }
            EntryKind::File => {
                let mut f = OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32)
                    .open(&path)
                    .map_err(BackupError::io("create", &path))?;
                loop {
                    let n = data
                        .read(&mut self.buf)
                        .map_err(BackupError::io("read archive", &path))?;
                    if n == 0 {
                        break;
                    }
                    f.write_all(&self.buf[..n])
                        .map_err(BackupError::io("write", &path))?;
                    self.written += n as u64;
                    if let Some(early) = &mut self.early {
                        early.wrote(n as u64);
                    }
                }
                f.set_permissions(std::fs::Permissions::from_mode(rec.mode))
                    .map_err(BackupError::io("set permissions", &path))?;
                f.set_modified(mtime_of(rec.mtime))
                    .map_err(BackupError::io("set mtime", &path))?;
            }
            EntryKind::Symlink => {
                let target = rec.link.as_deref().unwrap_or_default();
                std::os::unix::fs::symlink(target, &path)
                    .map_err(BackupError::io("create symlink", &path))?;
                let ts = rustix::fs::Timespec {
                    tv_sec: i64::try_from(rec.mtime).unwrap_or(0),
                    tv_nsec: 0,
                };
                let times = rustix::fs::Timestamps {
                    last_access: ts,
                    last_modification: ts,
                };
                rustix::fs::utimensat(
                    rustix::fs::CWD,
                    &path,
                    &times,
                    rustix::fs::AtFlags::SYMLINK_NOFOLLOW,
                )
                .map_err(|e| BackupError::Io {
                    action: "set symlink mtime",
                    path: path.clone(),
                    error: e.into(),
                })?;
            }
            EntryKind::Hardlink => {
                let original = self.root.join(rec.link.as_deref().unwrap_or_default());
                std::fs::hard_link(&original, &path)
                    .map_err(BackupError::io("create hardlink", &path))?;
            }
        }
        Ok(())
    }
}

/// Compares the target as it is now with the archive's entries.
fn diff_target(
    target: &Path,
    exists: bool,
    entries: &[EntryRecord],
) -> Result<RestoreDiff, BackupError> {
    let mut wanted: BTreeMap<&str, &EntryRecord> =
        entries.iter().map(|e| (e.path.as_str(), e)).collect();
    let mut diff = RestoreDiff::default();
    if exists {
        for item in walkdir::WalkDir::new(target)
            .min_depth(1)
            .follow_links(false)
            .sort_by_file_name()
        {
            let item = item.map_err(|e| BackupError::Io {
                action: "walk",
                path: target.to_path_buf(),
                error: e
                    .into_io_error()
                    .unwrap_or_else(|| std::io::Error::other("walk failed")),
            })?;
            let rel = item
                .path()
                .strip_prefix(target)
                .map(|p| p.to_string_lossy().into_owned())
                .unwrap_or_default();
            match wanted.remove(rel.as_str()) {
                None => diff.removed.push(rel),
                Some(rec) => {
                    if differs(item.path(), rec)? {
                        diff.changed.push(rel);
                    }
                }
            }
        }
    }
    diff.added = wanted.into_keys().map(str::to_owned).collect();
    Ok(diff)
}

fn differs(path: &Path, rec: &EntryRecord) -> Result<bool, BackupError> {
    let meta = std::fs::symlink_metadata(path).map_err(BackupError::io("inspect", path))?;
    let ft = meta.file_type();
    Ok(match rec.kind {
        EntryKind::Dir => !ft.is_dir() || meta.mode() & 0o7777 != rec.mode,
        EntryKind::Symlink => {
            !ft.is_symlink()
                || std::fs::read_link(path).ok().as_deref() != rec.link.as_deref().map(Path::new)
        }
        EntryKind::File | EntryKind::Hardlink => {
            let wrong_size = rec.kind == EntryKind::File && meta.len() != rec.size;
            if !ft.is_file() || meta.mode() & 0o7777 != rec.mode & 0o7777 || wrong_size {
                true
            } else {
                rec.sha256.is_some() && rec.sha256 != Some(hash_file(path)?)
            }
        }
    })
}

fn hash_file(path: &Path) -> Result<String, BackupError> {
    use sha2::{Digest, Sha256};
    let mut f = File::open(path).map_err(BackupError::io("read", path))?;
    let mut h = Sha256::new();
    std::io::copy(&mut f, &mut h).map_err(BackupError::io("read", path))?;
    Ok(hex::encode(h.finalize()))
}

#[cfg(test)]
mod fallback_tests {
    use super::*;

    fn tree(root: &Path, files: &[(&str, &str)]) {
        std::fs::create_dir_all(root).unwrap();
        for (name, content) in files {
            let path = root.join(name);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, content).unwrap();
        }
    }

    fn read_tree(root: &Path) -> Vec<(String, String)> {
        let mut out: Vec<(String, String)> = walkdir::WalkDir::new(root)
            .into_iter()
            .flatten()
            .filter(|e| e.file_type().is_file())
            .map(|e| {
                let rel = e.path().strip_prefix(root).unwrap().display().to_string();
                (rel, std::fs::read_to_string(e.path()).unwrap())
            })
            .collect();
        out.sort();
        out
    }

    fn siblings(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn the_rename_fallback_puts_the_new_tree_in_place_and_leaves_nothing_beside() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("data");
        tree(&target, &[("a.txt", "old a"), ("sub/b.txt", "old b")]);
        let staging = temp_sibling(&target, "restore");
        tree(&staging, &[("a.txt", "new a"), ("c.txt", "new c")]);
        swap_by_renames(&staging, &target).unwrap();
        assert_eq!(
            read_tree(&target),
            [
                ("a.txt".to_owned(), "new a".to_owned()),
                ("c.txt".to_owned(), "new c".to_owned())
            ]
        );
        assert_eq!(
            siblings(dir.path()),
            ["data"],
            "no staging or previous content left"
        );
    }

    #[test]
    fn a_failed_fallback_swap_leaves_the_old_target_whole() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("data");
        let old = [("a.txt", "old a"), ("sub/b.txt", "old b")];
        tree(&target, &old);
        let before = read_tree(&target);
        // The staging directory vanished (or cannot be renamed): the second rename fails.
        let staging = temp_sibling(&target, "restore");
        let err = swap_by_renames(&staging, &target).unwrap_err();
        assert!(err.to_string().contains("rename into place"), "{err}");
        assert_eq!(read_tree(&target), before, "the old content is back, whole");
        assert_eq!(siblings(dir.path()), ["data"], "nothing left aside");
    }
}
