//! `create`: walk the sources, write a tar stream compressed on every core (parallel gzip
//! members, or multi-threaded zstd), record a manifest of every entry as the first entry, and
//! commit archive then sidecar atomically.

use std::fs::Metadata as FsMetadata;
use std::io::{self, BufReader, Read, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use tracing::instrument;

use crate::codec::{Compressor, archive_path, id_in_use};
use crate::format::{
    ArchiveManifest, EntryKind, EntryRecord, FORMAT_VERSION, MANIFEST_ENTRY, Metadata, Sidecar,
    sidecar_path, validate_id,
};
use crate::fsutil::{create_new, sync_dir, temp_sibling};
use crate::{BackupError, Compression, Progress};

/// What to back up and how.
#[derive(Debug, Clone)]
pub struct CreateOptions {
    /// Files or directories to archive; each is stored under its own base name.
    pub sources: Vec<PathBuf>,
    /// The directory the archive and sidecar are written to (created when missing).
    pub dest: PathBuf,
    /// Globs of paths to leave out (a glob without `/` matches a base name anywhere; one with
    /// `/` matches the whole archive path, e.g. `config/cache/**`).
    pub exclude: Vec<String>,
    /// When not empty, only files and links matching one of these globs are archived
    /// (directories are always walked).
    pub include: Vec<String>,
    /// The backup id; derived from the creation time when `None`.
    pub id: Option<String>,
    /// The service name recorded in metadata.
    pub service: Option<String>,
    /// The live release recorded in metadata.
    pub release: Option<String>,
    /// The source commit recorded in metadata.
    pub commit: Option<String>,
    /// The creation time to record; now when `None` (tests pin it).
    pub created: Option<jiff::Timestamp>,
    /// How the archive is compressed (default gzip, `<id>.tar.gz`; zstd writes `<id>.tar.zst`).
    pub compression: Compression,
    /// The compression level: gzip 0-9, zstd 1-19; `None` for the compression's default (gzip
    /// 6, zstd 3, as the `gzip` and `zstd` tools). A level out of range is refused.
    pub level: Option<u32>,
    /// Compression threads (gzip workers, or libzstd workers); the number of CPUs when 0.
    pub threads: usize,
}

impl CreateOptions {
    /// Options with defaults for everything but the sources and destination.
    pub fn new(sources: Vec<PathBuf>, dest: impl Into<PathBuf>) -> Self {
        Self {
            sources,
            dest: dest.into(),
            exclude: Vec::new(),
            include: Vec::new(),
            id: None,
            service: None,
            release: None,
            commit: None,
            created: None,
            compression: Compression::Gzip,
            level: None,
            threads: 0,
        }
    }
}

/// What `create` made.
#[derive(Debug, Clone, serde::Serialize)]
pub struct CreateReport {
    /// The backup id.
    pub id: String,
    /// The archive's path.
    pub archive: PathBuf,
    /// The sidecar's path.
    pub sidecar: PathBuf,
    /// The sidecar's content (metadata, archive hash and size, counts).
    pub summary: Sidecar,
    /// Things skipped or changed on the way (special files, stripped setuid bits).
    pub warnings: Vec<String>,
}

/// One planned entry: where it comes from and what the manifest will say.
struct Planned {
    source: PathBuf,
    record: EntryRecord,
    uid: u64,
    gid: u64,
}

/// Creates a backup. Nothing that looks complete exists until the sidecar is renamed into
/// place, which happens last: a killed `create` leaves at most a hidden temp file, or an
/// archive without a sidecar that [`crate::list`] reports as incomplete.
#[instrument(skip_all, fields(dest = %opts.dest.display(), sources = opts.sources.len()))]
pub fn create(opts: &CreateOptions, progress: &dyn Progress) -> Result<CreateReport, BackupError> {
    let created = opts.created.unwrap_or_else(jiff::Timestamp::now);
    let id = match &opts.id {
        Some(id) => id.clone(),
        None => default_id(created),
    };
    validate_id(&id)?;
    let level = opts.compression.resolve_level(opts.level)?;
    std::fs::create_dir_all(&opts.dest).map_err(BackupError::io("create directory", &opts.dest))?;
    let archive = archive_path(&opts.dest, &id, opts.compression);
    let sidecar = sidecar_path(&archive);
    // An id is one backup whatever its compression: `<id>.json` names one archive.
    if id_in_use(&opts.dest, &id) {
        return Err(BackupError::AlreadyExists {
            id,
            dir: opts.dest.clone(),
        });
    }

    let filter = PathFilter::new(&opts.include, &opts.exclude)?;
    let mut warnings = Vec::new();
    let mut planned = plan(&opts.sources, &filter, &mut warnings)?;
    prehash(&mut planned, thread_count(opts.threads))?;
    let content_bytes: u64 = planned.iter().map(|p| p.record.size).sum();
    let metadata = Metadata {
        format: FORMAT_VERSION,
        id: id.clone(),
        created,
        host: rustix::system::uname()
            .nodename()
            .to_string_lossy()
            .into_owned(),
        service: opts.service.clone(),
        release: opts.release.clone(),
        commit: opts.commit.clone(),
        cutover_version: env!("CARGO_PKG_VERSION").to_owned(),
        sources: opts
            .sources
            .iter()
            .map(|s| s.display().to_string())
            .collect(),
    };

    let tmp_archive = temp_sibling(&archive, "partial");
    let tmp_sidecar = temp_sibling(&sidecar, "partial");
    let result = (|| {
        progress.start(content_bytes);
        let (entries, sha256, archive_bytes) =
            write_archive(&tmp_archive, planned, &metadata, opts, level, progress)?;
        progress.finish();
        let summary = Sidecar {
            metadata: metadata.clone(),
            archive: file_name(&archive),
            archive_sha256: hex::encode(sha256),
            archive_bytes,
            entry_count: entries.len() as u64,
            content_bytes,
            last_verify: None,
        };
        let json = serde_json::to_vec_pretty(&summary)
            .map_err(|e| BackupError::Internal(format!("sidecar serialisation: {e}")))?;
        let mut f = create_new(&tmp_sidecar)?;
        // Held until `f` closes, after the rename: see `sweep_partials`.
        crate::leftovers::lock_partial(&f, &tmp_sidecar)?;
        f.write_all(&json)
            .map_err(BackupError::io("write", &tmp_sidecar))?;
        f.sync_all()
            .map_err(BackupError::io("fsync", &tmp_sidecar))?;
        // The archive first, the sidecar last: the sidecar is the commit point.
        rename_noreplace(&tmp_archive, &archive)?;
        rename_noreplace(&tmp_sidecar, &sidecar)?;
        sync_dir(&opts.dest)?;
        Ok(summary)
    })();
    match result {
        Ok(summary) => {
            tracing::info!(id = %id, bytes = summary.archive_bytes, "backup created");
            Ok(CreateReport {
                id,
                archive,
                sidecar,
                summary,
                warnings,
            })
        }
        Err(e) => {
            let _ = std::fs::remove_file(&tmp_archive);
            let _ = std::fs::remove_file(&tmp_sidecar);
            Err(e)
        }
    }
}

/// The id used when none is given: the UTC creation time, e.g. `20250102T030405.678Z`.
pub fn default_id(created: jiff::Timestamp) -> String {
    let millis = created.subsec_millisecond();
    format!("{}.{millis:03}Z", created.strftime("%Y%m%dT%H%M%S"))
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

fn rename_noreplace(from: &Path, to: &Path) -> Result<(), BackupError> {
    use rustix::fs::{CWD, RenameFlags, renameat_with};
    match renameat_with(CWD, from, CWD, to, RenameFlags::NOREPLACE) {
        Ok(()) => Ok(()),
        // Some file systems lack RENAME_NOREPLACE; the existence check before writing stands in.
        Err(rustix::io::Errno::INVAL) | Err(rustix::io::Errno::NOSYS) => {
            std::fs::rename(from, to).map_err(BackupError::io("rename into place", to))
        }
        Err(e) => Err(BackupError::Io {
            action: "rename into place",
            path: to.to_path_buf(),
            error: e.into(),
        }),
    }
}

/// Include/exclude matching on archive paths.
pub(crate) struct PathFilter {
    exclude_full: globset::GlobSet,
    exclude_name: globset::GlobSet,
    include_full: globset::GlobSet,
    include_name: globset::GlobSet,
    has_include: bool,
}

impl PathFilter {
    pub(crate) fn new(include: &[String], exclude: &[String]) -> Result<Self, BackupError> {
        let (include_full, include_name) = build_sets(include)?;
        let (exclude_full, exclude_name) = build_sets(exclude)?;
        Ok(Self {
            exclude_full,
            exclude_name,
            include_full,
            include_name,
            has_include: !include.is_empty(),
        })
    }

    pub(crate) fn excluded(&self, archive_path: &str) -> bool {
        let name = archive_path.rsplit('/').next().unwrap_or(archive_path);
        self.exclude_full.is_match(archive_path) || self.exclude_name.is_match(name)
    }

    pub(crate) fn included(&self, archive_path: &str) -> bool {
        let name = archive_path.rsplit('/').next().unwrap_or(archive_path);
        !self.has_include
            || self.include_full.is_match(archive_path)
            || self.include_name.is_match(name)
    }
}

fn build_sets(globs: &[String]) -> Result<(globset::GlobSet, globset::GlobSet), BackupError> {
    let mut full = globset::GlobSetBuilder::new();
    let mut name = globset::GlobSetBuilder::new();
    for g in globs {
        let glob = globset::GlobBuilder::new(g.trim_end_matches('/'))
            .literal_separator(true)
            .build()
            .map_err(|source| BackupError::Glob {
                glob: g.clone(),
                error: source,
            })?;
        if g.trim_end_matches('/').contains('/') {
            full.add(glob)
        } else {
            name.add(glob)
        };
    }
    let build = |b: globset::GlobSetBuilder| {
        b.build().map_err(|source| BackupError::Glob {
            glob: globs.join(", "),
            error: source,
        })
    };
    Ok((build(full)?, build(name)?))
}

/// Walks every source and decides what goes in, in archive order (sorted by name).
fn plan(
    sources: &[PathBuf],
    filter: &PathFilter,
    warnings: &mut Vec<String>,
) -> Result<Vec<Planned>, BackupError> {
    if sources.is_empty() {
        return Err(BackupError::Source {
            path: PathBuf::new(),
            reason: "no source paths given".into(),
        });
    }
    let mut names = std::collections::BTreeSet::new();
    let mut out = Vec::new();
    for source in sources {
        let meta = std::fs::symlink_metadata(source).map_err(|e| BackupError::Source {
            path: source.clone(),
            reason: e.to_string(),
        })?;
        let root_name = root_name(source, &meta)?;
        if root_name == MANIFEST_ENTRY || !names.insert(root_name.clone()) {
            return Err(BackupError::Source {
                path: source.clone(),
                reason: format!(
                    "another source is already stored as `{root_name}`, or the name is reserved"
                ),
            });
        }
        let walker = walkdir::WalkDir::new(source)
            .follow_links(false)
            .sort_by_file_name()
            .into_iter();
        let walker = walker.filter_entry(|e| {
            let rel = archive_rel(&root_name, source, e.path());
            rel.as_deref()
                .is_none_or(|r| e.depth() == 0 || !filter.excluded(r))
        });
        for entry in walker {
            let entry = entry.map_err(|e| BackupError::Source {
                path: e.path().map_or_else(|| source.clone(), Path::to_path_buf),
                reason: e.to_string(),
            })?;
            let path = entry.path();
            let rel = archive_rel(&root_name, source, path).ok_or_else(|| BackupError::Source {
                path: path.to_path_buf(),
                reason: "file name is not valid UTF-8".into(),
            })?;
            let meta = entry.metadata().map_err(|e| BackupError::Source {
                path: path.to_path_buf(),
                reason: e.to_string(),
            })?;
            let ft = meta.file_type();
            let (kind, link) = if ft.is_dir() {
                (EntryKind::Dir, None)
            } else if ft.is_file() {
                (EntryKind::File, None)
            } else if ft.is_symlink() {
                let target =
                    std::fs::read_link(path).map_err(BackupError::io("read link", path))?;
                let target =
                    target
                        .to_str()
                        .map(str::to_owned)
                        .ok_or_else(|| BackupError::Source {
                            path: path.to_path_buf(),
                            reason: "link target is not valid UTF-8".into(),
                        })?;
                (EntryKind::Symlink, Some(target))
            } else {
                warnings.push(format!(
                    "skipped {}: not a file, directory or symlink",
                    path.display()
                ));
                continue;
            };
            if kind != EntryKind::Dir && !filter.included(&rel) {
                continue;
            }
            out.push(planned(path, rel, kind, link, &meta, warnings));
        }
    }
    Ok(out)
}

fn planned(
    path: &Path,
    rel: String,
    kind: EntryKind,
    link: Option<String>,
    meta: &FsMetadata,
    warnings: &mut Vec<String>,
) -> Planned {
    let raw_mode = meta.mode() & 0o7777;
    if raw_mode & 0o6000 != 0 && kind != EntryKind::Symlink {
        warnings.push(format!("stripped setuid/setgid bits of {}", path.display()));
    }
    let mode = if kind == EntryKind::Symlink {
        0o777
    } else {
        raw_mode & !0o6000
    };
    Planned {
        source: path.to_path_buf(),
        record: EntryRecord {
            path: rel,
            kind,
            size: if kind == EntryKind::File {
                meta.len()
            } else {
                0
            },
            mode,
            mtime: u64::try_from(meta.mtime()).unwrap_or(0),
            sha256: None,
            link,
        },
        uid: u64::from(meta.uid()),
        gid: u64::from(meta.gid()),
    }
}

/// The name a source root is stored under: its base name (after resolving `.` and `..`).
fn root_name(source: &Path, meta: &FsMetadata) -> Result<String, BackupError> {
    let resolved;
    let named = match source.file_name() {
        Some(_)
            if !meta.is_dir()
                || source
                    .components()
                    .next_back()
                    .is_some_and(|c| matches!(c, std::path::Component::Normal(_))) =>
        {
            source
        }
        _ => {
            resolved = source
                .canonicalize()
                .map_err(BackupError::io("resolve", source))?;
            &resolved
        }
    };
    named
        .file_name()
        .and_then(|n| n.to_str())
        .map(str::to_owned)
        .ok_or_else(|| BackupError::Source {
            path: source.to_path_buf(),
            reason: "has no UTF-8 base name".into(),
        })
}

/// The archive path of `path` found under `source`, stored under `root_name`.
fn archive_rel(root_name: &str, source: &Path, path: &Path) -> Option<String> {
    let rest = path.strip_prefix(source).ok()?;
    let mut out = root_name.to_owned();
    for c in rest.components() {
        out.push('/');
        out.push_str(c.as_os_str().to_str()?);
    }
    Some(out)
}

/// A reader that hashes and counts what passes through it.
struct HashingReader<R> {
    inner: R,
    hasher: Sha256,
    count: u64,
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.count += n as u64;
        Ok(n)
    }
}

type Written = (Vec<EntryRecord>, [u8; 32], u64);

fn thread_count(requested: usize) -> usize {
    if requested == 0 {
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(2)
    } else {
        requested
    }
}

/// Hashes every file before the archive is written (on `threads` threads), so that the manifest
/// can be the first entry. The archive pass hashes again and fails if a file changed between.
fn prehash(planned: &mut [Planned], threads: usize) -> Result<(), BackupError> {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let next = AtomicUsize::new(0);
    let files: Vec<(usize, &Path)> = planned
        .iter()
        .enumerate()
        .filter(|(_, p)| p.record.kind == EntryKind::File)
        .map(|(i, p)| (i, p.source.as_path()))
        .collect();
    let hash_some = || -> Result<Vec<(usize, String)>, BackupError> {
        let mut out = Vec::new();
        let mut buf = vec![0u8; 256 * 1024];
        loop {
            let k = next.fetch_add(1, Ordering::Relaxed);
            let Some(&(i, path)) = files.get(k) else {
                return Ok(out);
            };
            let mut f = std::fs::File::open(path).map_err(BackupError::io("open", path))?;
            let mut h = Sha256::new();
            loop {
                let n = f.read(&mut buf).map_err(BackupError::io("read", path))?;
                if n == 0 {
                    break;
                }
                h.update(&buf[..n]);
            }
            out.push((i, hex::encode(h.finalize())));
        }
    };
    let results: Vec<Result<Vec<(usize, String)>, BackupError>> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads.max(1))
            .map(|_| scope.spawn(hash_some))
            .collect();
        workers
            .into_iter()
            .map(|w| {
                w.join().unwrap_or_else(|_| {
                    Err(BackupError::Internal("hashing thread panicked".into()))
                })
            })
            .collect()
    });
    for r in results {
        for (i, hash) in r? {
            if let Some(p) = planned.get_mut(i) {
                p.record.sha256 = Some(hash);
            }
        }
    }
    Ok(())
}

fn write_archive(
    tmp: &Path,
    planned: Vec<Planned>,
    metadata: &Metadata,
    opts: &CreateOptions,
    level: u32,
    progress: &dyn Progress,
) -> Result<Written, BackupError> {
    let file = create_new(tmp)?;
    // Held while the archive is written (the lock goes with the file): see `sweep_partials`.
    crate::leftovers::lock_partial(&file, tmp)?;
    let out = Compressor::new(file, opts.compression, level, thread_count(opts.threads))
        .map_err(BackupError::io("start compressing", tmp))?;
    let mut tar = tar::Builder::new(out);
    // The manifest goes first, so that readers check each entry as soon as they have read it
    // and can name the first bad one even when the compressed stream breaks further on.
    let manifest = ArchiveManifest {
        metadata: metadata.clone(),
        entries: planned.iter().map(|p| p.record.clone()).collect(),
    };
    let json = serde_json::to_vec(&manifest)
        .map_err(|e| BackupError::Internal(format!("manifest serialisation: {e}")))?;
    let mut header = tar::Header::new_gnu();
    header.set_entry_type(tar::EntryType::Regular);
    header.set_mode(0o644);
    header.set_mtime(u64::try_from(metadata.created.as_second()).unwrap_or(0));
    header.set_size(json.len() as u64);
    tar.append_data(&mut header, MANIFEST_ENTRY, &json[..])
        .map_err(BackupError::io("write archive", tmp))?;
    drop(json);
    for p in planned {
        let rec = p.record;
        let mut header = tar::Header::new_gnu();
        header.set_mode(rec.mode);
        header.set_mtime(rec.mtime);
        header.set_uid(p.uid);
        header.set_gid(p.gid);
        let res = match rec.kind {
            EntryKind::Dir => {
                header.set_entry_type(tar::EntryType::Directory);
                header.set_size(0);
                tar.append_data(&mut header, format!("{}/", rec.path), io::empty())
            }
            EntryKind::Symlink => {
                header.set_entry_type(tar::EntryType::Symlink);
                header.set_size(0);
                let target = rec.link.as_deref().unwrap_or_default();
                tar.append_link(&mut header, &rec.path, target)
            }
            EntryKind::File | EntryKind::Hardlink => {
                header.set_entry_type(tar::EntryType::Regular);
                header.set_size(rec.size);
                let f =
                    std::fs::File::open(&p.source).map_err(BackupError::io("open", &p.source))?;
                let hashing = HashingReader {
                    inner: f.take(rec.size),
                    hasher: Sha256::new(),
                    count: 0,
                };
                let mut reader = BufReader::with_capacity(256 * 1024, hashing);
                let r = tar.append_data(&mut header, &rec.path, &mut reader);
                let hashing = reader.into_inner();
                progress.advance(rec.size);
                // The content must be what the manifest, hashed beforehand, says it is.
                let hash = hex::encode(hashing.hasher.finalize());
                if r.is_ok() && (hashing.count != rec.size || rec.sha256.as_deref() != Some(&hash))
                {
                    return Err(BackupError::Changed {
                        path: p.source,
                        expected: rec.size,
                    });
                }
                r
            }
        };
        res.map_err(|e| {
            if e.kind() == io::ErrorKind::UnexpectedEof {
                BackupError::Changed {
                    path: p.source.clone(),
                    expected: rec.size,
                }
            } else {
                BackupError::Io {
                    action: "write archive",
                    path: tmp.to_path_buf(),
                    error: e,
                }
            }
        })?;
    }
    tar.finish()
        .map_err(BackupError::io("write archive", tmp))?;
    let out = tar
        .into_inner()
        .map_err(BackupError::io("write archive", tmp))?;
    let (file, fin) = out
        .finish()
        .map_err(BackupError::io("write archive", tmp))?;
    file.sync_all().map_err(BackupError::io("fsync", tmp))?;
    Ok((manifest.entries, fin.sha256, fin.bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filter_matches_names_anywhere_and_paths_exactly() {
        let f =
            PathFilter::new(&[], &["*.log".into(), "app/cache/**".into(), "tmp/".into()]).unwrap();
        assert!(f.excluded("app/x/y.log"));
        assert!(f.excluded("app/cache/a/b"));
        assert!(f.excluded("app/sub/tmp"));
        assert!(!f.excluded("app/x/y.txt"));
        assert!(!f.excluded("other/cache/a"));
        let inc = PathFilter::new(&["*.json".into()], &[]).unwrap();
        assert!(inc.included("a/b.json"));
        assert!(!inc.included("a/b.txt"));
        assert!(PathFilter::new(&[], &["[".into()]).is_err());
    }

    #[test]
    fn default_ids_sort_by_time() {
        let a: jiff::Timestamp = "2025-01-02T03:04:05.678Z".parse().unwrap();
        assert_eq!(default_id(a), "20250102T030405.678Z");
    }
}
