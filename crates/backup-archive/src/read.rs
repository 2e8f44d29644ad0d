//! Reading an archive: decompression on its own thread (gzip or zstd, as the stream's magic
//! number says; hashing the compressed bytes as they pass), tar parsing, the safety checks every entry must pass, per-entry hashing, and the final
//! comparison with the manifest stored as the first entry.
//!
//! Both `verify` and `restore` go through [`scan`]; they differ only in the [`Sink`] that
//! receives each validated entry.
//!
//! A hostile archive is refused before its data reaches the sink: the first entry must be the
//! manifest, whose declared entry count and content bytes must fit the [`Limits`] (and, for a
//! restore, the free space: [`Sink::manifest`]); an entry whose PAX `size` record disagrees
//! with its header is refused, as is one that differs from the manifest in path, type, size,
//! mode or link; and the bytes actually read are counted against the cap, never more than the
//! checked size being read. These rules are the same whatever the compression; a zstd frame
//! that asks for a window above 2^[`ZSTD_WINDOW_LOG_MAX`](crate::ZSTD_WINDOW_LOG_MAX) bytes is
//! refused before it is decoded.

use std::collections::HashMap;
use std::io::{self, BufReader, Read};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{Receiver, sync_channel};

use sha2::{Digest, Sha256};

use crate::codec::{Decompressor, unknown_format};
use crate::format::{ArchiveManifest, EntryKind, EntryRecord, MANIFEST_ENTRY, MAX_MANIFEST_BYTES};
use crate::{BackupError, Compression, Progress};

/// Caps that keep a hostile archive from filling the disk or memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// The most entries an archive may hold.
    pub max_entries: u64,
    /// The most content bytes an archive may hold: the manifest's declared total is checked
    /// against it before anything is read, and the bytes actually read are counted against it.
    pub max_bytes: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_entries: 1_000_000,
            max_bytes: 64 * 1024 * 1024 * 1024,
        }
    }
}

/// Receives each entry that passed validation. For a file, `data` yields its content (hashed by
/// the scanner whether or not the sink reads it).
pub(crate) trait Sink {
    /// Called once with the manifest, after its totals passed the limits and before any entry:
    /// the last moment to refuse the archive with nothing written (a restore checks the free
    /// space here).
    fn manifest(&mut self, manifest: &ArchiveManifest) -> Result<(), BackupError> {
        let _ = manifest;
        Ok(())
    }

    fn entry(&mut self, rec: &EntryRecord, data: &mut dyn Read) -> Result<(), BackupError>;
}

/// A sink that only looks (verify, dry run).
pub(crate) struct NullSink;

impl Sink for NullSink {
    fn entry(&mut self, _: &EntryRecord, _: &mut dyn Read) -> Result<(), BackupError> {
        Ok(())
    }
}

/// What a complete, consistent scan found.
#[derive(Debug)]
pub(crate) struct Scanned {
    pub(crate) manifest: ArchiveManifest,
    pub(crate) archive_sha256: String,
    pub(crate) archive_bytes: u64,
}

/// Reads `input` (labelled `label` in errors) to the end through `sink`.
pub(crate) fn scan(
    input: impl Read + Send,
    label: &Path,
    limits: &Limits,
    sink: &mut dyn Sink,
    progress: &dyn Progress,
) -> Result<Scanned, BackupError> {
    std::thread::scope(|scope| {
        let (tx, rx) = sync_channel::<io::Result<Vec<u8>>>(8);
        let decoder = scope.spawn(move || {
            let mut counted = CountingHasher {
                inner: input,
                hasher: Sha256::new(),
                count: 0,
                progress,
            };
            // The compression is what the first bytes say, whatever the file is called.
            let mut head = [0u8; 4];
            let (n, err) = read_full(&mut counted, &mut head);
            let format = match (err, Compression::detect(&head[..n])) {
                (Some(e), _) => Err(e),
                (None, None) => Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    unknown_format(&head[..n]),
                )),
                (None, Some(format)) => Ok(format),
            };
            let replayed = io::Cursor::new(head[..n].to_vec()).chain(counted);
            let dec = format.and_then(|format| {
                Decompressor::new(format, BufReader::with_capacity(1 << 20, replayed))
            });
            let mut dec = match dec {
                Ok(dec) => dec,
                Err(e) => {
                    let _ = tx.send(Err(e));
                    return None;
                }
            };
            loop {
                let mut buf = vec![0u8; 1 << 20];
                let (n, err) = read_full(&mut dec, &mut buf);
                if n > 0 {
                    buf.truncate(n);
                    // What decoded before an error is delivered first, so the reader can name
                    // the entry the damage is in.
                    if tx.send(Ok(buf)).is_err() {
                        return None;
                    }
                }
                if let Some(e) = err {
                    let _ = tx.send(Err(e));
                    return None;
                }
                if n == 0 {
                    break;
                }
            }
            let (_, mut counted) = dec.into_inner().into_inner().into_inner();
            // The decoders stop at end of file; anything they did not consume is still hashed
            // (the bytes they buffered were hashed as they were read).
            if io::copy(&mut counted, &mut io::sink()).is_err() {
                return None;
            }
            Some((hex::encode(counted.hasher.finalize()), counted.count))
        });
        let scanned = scan_tar(
            ChannelReader {
                rx,
                cur: Vec::new(),
                pos: 0,
            },
            label,
            limits,
            sink,
        );
        let hashed = decoder
            .join()
            .map_err(|_| BackupError::Internal("decompression thread panicked".into()))?;
        let manifest = scanned?;
        let (archive_sha256, archive_bytes) =
            hashed.ok_or_else(|| corrupt(label, None, "archive could not be read to its end"))?;
        Ok(Scanned {
            manifest,
            archive_sha256,
            archive_bytes,
        })
    })
}

/// Fills `buf` as far as the reader goes; returns what was read and the error that stopped it.
fn read_full(r: &mut impl Read, buf: &mut [u8]) -> (usize, Option<io::Error>) {
    let mut filled = 0;
    while filled < buf.len() {
        match r.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return (filled, Some(e)),
        }
    }
    (filled, None)
}

struct CountingHasher<'p, R> {
    inner: R,
    hasher: Sha256,
    count: u64,
    progress: &'p dyn Progress,
}

impl<R: Read> Read for CountingHasher<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.count += n as u64;
        self.progress.advance(n as u64);
        Ok(n)
    }
}

/// The decompressed stream, handed over from the decompression thread in blocks.
struct ChannelReader {
    rx: Receiver<io::Result<Vec<u8>>>,
    cur: Vec<u8>,
    pos: usize,
}

impl Read for ChannelReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.pos == self.cur.len() {
            match self.rx.recv() {
                Ok(Ok(block)) => {
                    self.cur = block;
                    self.pos = 0;
                }
                Ok(Err(e)) => return Err(e),
                Err(_) => return Ok(0),
            }
        }
        let n = buf.len().min(self.cur.len() - self.pos);
        buf[..n].copy_from_slice(&self.cur[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

fn corrupt(label: &Path, entry: Option<&str>, reason: impl Into<String>) -> BackupError {
    BackupError::Corrupt {
        archive: label.to_path_buf(),
        entry: entry.map(str::to_owned),
        reason: reason.into(),
    }
}

fn refused(label: &Path, entry: &str, reason: impl Into<String>) -> BackupError {
    BackupError::Refused {
        archive: label.to_path_buf(),
        entry: entry.to_owned(),
        reason: reason.into(),
    }
}

/// Where a read error happened, for the message: inside an entry, or after the last good one.
fn position(current: Option<&str>, last: Option<&str>) -> String {
    match (current, last) {
        (Some(c), _) => c.to_owned(),
        (None, Some(l)) => format!("(header after {l})"),
        (None, None) => "(first header)".to_owned(),
    }
}

fn scan_tar(
    input: ChannelReader,
    label: &Path,
    limits: &Limits,
    sink: &mut dyn Sink,
) -> Result<ArchiveManifest, BackupError> {
    let mut archive = tar::Archive::new(input);
    let mut seen: HashMap<String, EntryKind> = HashMap::new();
    let mut count = 0usize;
    let mut last: Option<String> = None;
    let mut total_bytes = 0u64;
    let mut manifest: Option<ArchiveManifest> = None;
    let mut entries = archive
        .entries()
        .map_err(|e| corrupt(label, Some("(first header)"), e.to_string()))?;
    loop {
        let mut entry = match entries.next() {
            None => break,
            Some(Ok(entry)) => entry,
            Some(Err(e)) => {
                return Err(corrupt(
                    label,
                    Some(&position(None, last.as_deref())),
                    e.to_string(),
                ));
            }
        };
        let raw_path = String::from_utf8(entry.path_bytes().into_owned())
            .map_err(|_| refused(label, "(non-UTF-8 name)", "entry name is not valid UTF-8"))?;
        let header = entry.header().clone();
        let etype = header.entry_type();
        if etype.is_pax_global_extensions() {
            continue;
        }
        // What will be read is `entry.size()` (a PAX `size` record wins over the header); a
        // disagreement is how a hostile archive slips a large payload past a header check.
        let data_size = entry.size();
        let header_size = header
            .entry_size()
            .map_err(|e| corrupt(label, Some(&raw_path), e.to_string()))?;
        if data_size != header_size {
            let reason = format!(
                "its PAX size record says {data_size} bytes but its header says {header_size}; \
                 refused before reading its data"
            );
            return Err(refused(label, &raw_path, reason));
        }
        if raw_path == MANIFEST_ENTRY {
            if manifest.is_some() || count > 0 {
                return Err(corrupt(
                    label,
                    Some(&raw_path),
                    "the manifest must be the first entry",
                ));
            }
            let m = read_manifest(&mut entry, etype, label)?;
            check_declared(&m, limits, label)?;
            sink.manifest(&m)?;
            manifest = Some(m);
            continue;
        }
        let Some(m) = &manifest else {
            let reason = format!(
                "the first entry is not the manifest `{MANIFEST_ENTRY}`: not a cutover backup, or \
                 damaged; nothing was extracted"
            );
            return Err(corrupt(label, Some(&raw_path), reason));
        };
        let rec = read_entry(
            &mut entry,
            &raw_path,
            &header,
            data_size,
            label,
            limits,
            &seen,
            &mut total_bytes,
            count,
            m.entries.get(count),
            sink,
        )?;
        // Each entry is checked against the manifest as soon as it has been read, so the first
        // bad entry is the one named.
        compare_entry(label, &rec, m.entries.get(count), true)?;
        seen.insert(rec.path.clone(), rec.kind);
        last = Some(rec.path);
        count += 1;
    }
    // After the end-of-archive blocks only zero padding may follow.
    let mut rest = archive.into_inner();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = rest
            .read(&mut buf)
            .map_err(|e| corrupt(label, Some(&position(None, last.as_deref())), e.to_string()))?;
        if n == 0 {
            break;
        }
        if buf[..n].iter().any(|&b| b != 0) {
            return Err(corrupt(
                label,
                None,
                "data after the end of the tar archive",
            ));
        }
    }
    let manifest = manifest
        .ok_or_else(|| corrupt(label, None, "archive has no manifest as its first entry"))?;
    if let Some(missing) = manifest.entries.get(count) {
        return Err(corrupt(
            label,
            Some(&missing.path),
            "entry listed in the manifest is missing from the archive (truncated?)",
        ));
    }
    Ok(manifest)
}

/// Refuses a manifest that declares more entries or content bytes than the limits allow,
/// before any entry is read.
fn check_declared(
    manifest: &ArchiveManifest,
    limits: &Limits,
    label: &Path,
) -> Result<(), BackupError> {
    let entries = manifest.entries.len() as u64;
    if entries > limits.max_entries {
        let reason = format!(
            "the manifest declares {entries} entries, more than the cap of {}; nothing was \
             extracted (raise max_entries if the backup is genuine)",
            limits.max_entries
        );
        return Err(refused(label, MANIFEST_ENTRY, reason));
    }
    let bytes = declared_bytes(manifest);
    if bytes > limits.max_bytes {
        let reason = format!(
            "the manifest declares {bytes} bytes of file content, more than the max_bytes cap \
             of {}; nothing was extracted (raise [backup] max_bytes if the backup is genuine)",
            limits.max_bytes
        );
        return Err(refused(label, MANIFEST_ENTRY, reason));
    }
    Ok(())
}

/// The content bytes a manifest declares (file sizes, saturating).
pub(crate) fn declared_bytes(manifest: &ArchiveManifest) -> u64 {
    manifest
        .entries
        .iter()
        .filter(|e| e.kind == EntryKind::File)
        .fold(0u64, |sum, e| sum.saturating_add(e.size))
}

fn read_manifest(
    entry: &mut impl Read,
    etype: tar::EntryType,
    label: &Path,
) -> Result<ArchiveManifest, BackupError> {
    if !etype.is_file() {
        return Err(refused(
            label,
            MANIFEST_ENTRY,
            "manifest entry is not a regular file",
        ));
    }
    let mut json = Vec::new();
    entry
        .take(MAX_MANIFEST_BYTES + 1)
        .read_to_end(&mut json)
        .map_err(|e| corrupt(label, Some(MANIFEST_ENTRY), e.to_string()))?;
    if json.len() as u64 > MAX_MANIFEST_BYTES {
        return Err(refused(
            label,
            MANIFEST_ENTRY,
            "manifest is larger than the cap",
        ));
    }
    serde_json::from_slice(&json).map_err(|e| {
        corrupt(
            label,
            Some(MANIFEST_ENTRY),
            format!("manifest does not parse: {e}"),
        )
    })
}

/// Validates one entry, hands it to the sink and returns its record (with the content hash).
#[allow(clippy::too_many_arguments)]
fn read_entry(
    entry: &mut impl Read,
    raw_path: &str,
    header: &tar::Header,
    data_size: u64,
    label: &Path,
    limits: &Limits,
    seen: &HashMap<String, EntryKind>,
    total_bytes: &mut u64,
    count: usize,
    expected: Option<&EntryRecord>,
    sink: &mut dyn Sink,
) -> Result<EntryRecord, BackupError> {
    let path = normalise_entry_path(raw_path).map_err(|r| refused(label, raw_path, r))?;
    if count as u64 >= limits.max_entries {
        let reason = format!("more than {} entries (the cap)", limits.max_entries);
        return Err(refused(label, raw_path, reason));
    }
    let kind = match header.entry_type() {
        tar::EntryType::Regular | tar::EntryType::Continuous => EntryKind::File,
        tar::EntryType::Directory => EntryKind::Dir,
        tar::EntryType::Symlink => EntryKind::Symlink,
        tar::EntryType::Link => EntryKind::Hardlink,
        tar::EntryType::Char | tar::EntryType::Block => {
            return Err(refused(label, raw_path, "device nodes are never restored"));
        }
        tar::EntryType::Fifo => return Err(refused(label, raw_path, "fifos are never restored")),
        other => {
            let reason = format!("unsupported entry type {:?}", other.as_byte() as char);
            return Err(refused(label, raw_path, reason));
        }
    };
    let mode = header
        .mode()
        .map_err(|e| corrupt(label, Some(raw_path), e.to_string()))?
        & 0o7777;
    if mode & 0o6000 != 0 && kind != EntryKind::Symlink {
        return Err(refused(
            label,
            raw_path,
            "setuid/setgid bits are never restored",
        ));
    }
    let mtime = header
        .mtime()
        .map_err(|e| corrupt(label, Some(raw_path), e.to_string()))?;
    if kind != EntryKind::File && data_size != 0 {
        let what = match kind {
            EntryKind::Dir => "directory",
            EntryKind::Symlink => "symlink",
            _ => "hardlink",
        };
        let reason = format!("a {what} entry carrying {data_size} bytes of data");
        return Err(refused(label, raw_path, reason));
    }
    let size = data_size;
    let remaining = limits.max_bytes.saturating_sub(*total_bytes);
    if size > remaining {
        let reason = format!(
            "its {size} bytes take the archive past the {} byte cap ({} bytes read before it)",
            limits.max_bytes, *total_bytes
        );
        return Err(refused(label, raw_path, reason));
    }
    check_parents(&path, seen).map_err(|r| refused(label, raw_path, r))?;
    if seen.contains_key(&path) {
        return Err(refused(label, raw_path, "duplicate entry"));
    }
    let link = match kind {
        EntryKind::Symlink | EntryKind::Hardlink => {
            let target = header
                .link_name_bytes()
                .map(|b| String::from_utf8(b.into_owned()))
                .transpose()
                .map_err(|_| refused(label, raw_path, "link target is not valid UTF-8"))?
                .ok_or_else(|| refused(label, raw_path, "link without a target"))?;
            Some(check_link(kind, &path, &target, seen).map_err(|r| refused(label, raw_path, r))?)
        }
        _ => None,
    };
    let mut rec = EntryRecord {
        path,
        kind,
        size,
        mode,
        mtime,
        sha256: None,
        link,
    };
    // Everything but the hash is compared before the sink sees a byte of data.
    compare_entry(label, &rec, expected, false)?;
    if kind == EntryKind::File {
        // Never more than the size checked above is read, whatever the tar layer would yield.
        let mut limited = entry.take(size);
        let mut hashing = HashingRead {
            inner: &mut limited,
            hasher: Sha256::new(),
            count: 0,
        };
        sink.entry(&rec, &mut hashing)
            .map_err(|e| remap_read_error(e, label, raw_path))?;
        io::copy(&mut hashing, &mut io::sink())
            .map_err(|e| corrupt(label, Some(raw_path), e.to_string()))?;
        // The bytes actually read count against the cap, not the sizes the headers declare.
        *total_bytes = total_bytes.saturating_add(hashing.count);
        if hashing.count != size {
            let reason = format!("truncated: {} of {size} bytes", hashing.count);
            return Err(corrupt(label, Some(raw_path), reason));
        }
        rec.sha256 = Some(hex::encode(hashing.hasher.finalize()));
    } else {
        sink.entry(&rec, &mut io::empty())?;
    }
    Ok(rec)
}

/// Checks a link target and returns it as recorded (hardlink targets normalised).
fn check_link(
    kind: EntryKind,
    path: &str,
    target: &str,
    seen: &HashMap<String, EntryKind>,
) -> Result<String, String> {
    if kind == EntryKind::Symlink {
        check_symlink_target(path, target)?;
        return Ok(target.to_owned());
    }
    let target = normalise_entry_path(target).map_err(|r| format!("hardlink target: {r}"))?;
    if seen.get(&target) != Some(&EntryKind::File) {
        return Err(format!(
            "hardlink to `{target}`, which is not an earlier file of this archive"
        ));
    }
    Ok(target)
}

/// A sink's I/O error while it was reading the entry is corruption of that entry; its own write
/// errors stay what they are.
fn remap_read_error(e: BackupError, label: &Path, entry: &str) -> BackupError {
    match e {
        BackupError::Io {
            action: "read archive",
            error: source,
            ..
        } => corrupt(label, Some(entry), source.to_string()),
        other => other,
    }
}

struct HashingRead<'a, R> {
    inner: &'a mut R,
    hasher: Sha256,
    count: u64,
}

impl<R: Read> Read for HashingRead<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.count += n as u64;
        Ok(n)
    }
}

/// Compares an entry with its manifest record; `check_hash` is false before its data was read.
fn compare_entry(
    label: &Path,
    actual: &EntryRecord,
    expected: Option<&EntryRecord>,
    check_hash: bool,
) -> Result<(), BackupError> {
    let Some(expected) = expected else {
        return Err(corrupt(
            label,
            Some(&actual.path),
            "entry is not in the manifest",
        ));
    };
    let what = if expected.path != actual.path {
        Some(format!("manifest expects `{}` here", expected.path))
    } else if expected.kind != actual.kind {
        Some("type differs from the manifest".to_owned())
    } else if expected.size != actual.size {
        Some(format!(
            "size {} differs from the manifest's {}",
            actual.size, expected.size
        ))
    } else if check_hash && expected.sha256 != actual.sha256 {
        Some("sha256 differs from the manifest".to_owned())
    } else if expected.mode != actual.mode || expected.mtime != actual.mtime {
        Some("mode or mtime differs from the manifest".to_owned())
    } else if expected.link != actual.link {
        Some("link target differs from the manifest".to_owned())
    } else {
        None
    };
    match what {
        Some(what) => Err(corrupt(label, Some(&actual.path), what)),
        None => Ok(()),
    }
}

/// Checks an entry path and returns it normalised: `/`-separated normal components only (`.`
/// and empty components dropped), never absolute, never `..`.
pub(crate) fn normalise_entry_path(raw: &str) -> Result<String, String> {
    if raw.starts_with('/') {
        return Err("absolute path".into());
    }
    if raw.contains('\0') || raw.contains('\\') {
        return Err("path contains NUL or backslash".into());
    }
    let mut parts = Vec::new();
    for part in raw.split('/') {
        match part {
            "" | "." => {}
            ".." => return Err("path contains `..`".into()),
            p => parts.push(p),
        }
    }
    if parts.is_empty() {
        return Err("empty path".into());
    }
    Ok(parts.join("/"))
}

/// Refuses an entry whose parent would be a symlink or a non-directory: nothing is ever written
/// through a symlink.
fn check_parents(path: &str, seen: &HashMap<String, EntryKind>) -> Result<(), String> {
    let mut end = 0;
    while let Some(i) = path[end..].find('/') {
        let prefix = &path[..end + i];
        match seen.get(prefix) {
            Some(EntryKind::Symlink) => {
                return Err(format!("would be written through the symlink `{prefix}`"));
            }
            Some(EntryKind::File | EntryKind::Hardlink) => {
                return Err(format!("parent `{prefix}` is not a directory"));
            }
            _ => {}
        }
        end += i + 1;
    }
    Ok(())
}

/// A symlink's target must stay inside the restore root: relative, with `..` only as leading
/// components, and no more of them than the link's own depth. Every symlink obeying this
/// resolves inside the root even through other symlinks (each hop stays inside).
pub(crate) fn check_symlink_target(path: &str, target: &str) -> Result<(), String> {
    if target.is_empty() {
        return Err("symlink with an empty target".into());
    }
    if target.starts_with('/') {
        return Err(format!(
            "symlink to the absolute path `{target}` points outside"
        ));
    }
    let depth = path.matches('/').count();
    let mut ups = 0;
    let mut descended = false;
    for part in target.split('/') {
        match part {
            "" | "." => {}
            ".." if !descended => ups += 1,
            ".." => return Err(format!("symlink target `{target}` has `..` after a name")),
            _ => descended = true,
        }
    }
    if ups > depth {
        return Err(format!(
            "symlink to `{target}` points outside the restore root"
        ));
    }
    Ok(())
}

/// Where `scan` reads from: an archive file.
pub(crate) fn open_archive(path: &Path) -> Result<(std::fs::File, PathBuf), BackupError> {
    let f = std::fs::File::open(path).map_err(BackupError::io("open archive", path))?;
    Ok((f, path.to_path_buf()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entry_paths_are_normalised_or_refused() {
        assert_eq!(normalise_entry_path("a/./b//c/").unwrap(), "a/b/c");
        for bad in ["/etc/passwd", "a/../../x", "..", "", "./", "a\\b"] {
            assert!(normalise_entry_path(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn symlink_targets_must_stay_inside() {
        for (path, target) in [
            ("a/l", "b"),
            ("a/l", "../b"),
            ("a/b/l", "../../c/d"),
            ("l", "./x"),
        ] {
            assert!(
                check_symlink_target(path, target).is_ok(),
                "{path} -> {target}"
            );
        }
        for (path, target) in [
            ("l", "/etc"),
            ("l", "../x"),
            ("a/l", "../../x"),
            ("a/l", "b/../../x"),
            ("l", ""),
        ] {
            assert!(
                check_symlink_target(path, target).is_err(),
                "{path} -> {target}"
            );
        }
    }

    #[test]
    fn parents_must_be_directories() {
        let mut seen = HashMap::new();
        seen.insert("a".to_owned(), EntryKind::Dir);
        seen.insert("a/l".to_owned(), EntryKind::Symlink);
        seen.insert("a/f".to_owned(), EntryKind::File);
        assert!(check_parents("a/x", &seen).is_ok());
        assert!(
            check_parents("a/l/x", &seen)
                .unwrap_err()
                .contains("symlink")
        );
        assert!(
            check_parents("a/f/x", &seen)
                .unwrap_err()
                .contains("not a directory")
        );
    }
}
