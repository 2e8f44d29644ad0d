//! The two compressions an archive can have, how each is written and read, and how a reader
//! tells them apart: from the file's first bytes (its magic number), never from its name alone.
//!
//! Both wrap the same tar stream with the same manifest entry, checks and limits; only the
//! compression layer differs.
//!
//! * **gzip** (`<id>.tar.gz`, the default): independent 4 MiB gzip members compressed on every
//!   core ([`crate::pgzip`]); `tar -xzf` and `gunzip` read it everywhere.
//! * **zstd** (`<id>.tar.zst`): one zstd stream compressed by libzstd's own worker threads (one
//!   per core), with a content checksum in every frame; `tar --zstd -xf` (GNU tar 1.31+) and
//!   `zstd -d` read it. Decoding refuses a frame that asks for a window larger than
//!   2^[`ZSTD_WINDOW_LOG_MAX`] bytes, so a hostile frame cannot make the reader allocate more.

use std::fs::File;
use std::io::{self, BufRead, Read, Write};
use std::ops::RangeInclusive;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::BackupError;
use crate::pgzip::{Finished, ParallelGzWriter};

/// The largest zstd window (as a power of two) a reader accepts: 128 MiB, libzstd's own default
/// cap. cutover writes windows of at most 8 MiB (level 19).
pub const ZSTD_WINDOW_LOG_MAX: u32 = 27;

/// How an archive's tar stream is compressed: `[backup] compression`.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    /// gzip, `<id>.tar.gz`, levels 0-9 (default 6): readable by `tar -xzf` everywhere.
    #[default]
    Gzip,
    /// zstd, `<id>.tar.zst`, levels 1-19 (default 3): several times faster than gzip and a
    /// smaller archive; readable by `tar --zstd -xf` (GNU tar 1.31 or later) and `zstd -d`.
    Zstd,
}

impl Compression {
    /// Every compression, in the order readers try their extensions.
    pub const ALL: [Compression; 2] = [Compression::Gzip, Compression::Zstd];

    /// The name used in `cutover.toml` and on the command line (`gzip`, `zstd`).
    pub fn name(self) -> &'static str {
        match self {
            Compression::Gzip => "gzip",
            Compression::Zstd => "zstd",
        }
    }

    /// The archive file extension, without the leading dot (`tar.gz`, `tar.zst`).
    pub fn extension(self) -> &'static str {
        match self {
            Compression::Gzip => "tar.gz",
            Compression::Zstd => "tar.zst",
        }
    }

    /// The levels this compression accepts (gzip 0-9, zstd 1-19).
    pub fn levels(self) -> RangeInclusive<u32> {
        match self {
            Compression::Gzip => 0..=9,
            Compression::Zstd => 1..=19,
        }
    }

    /// The level used when none is given (gzip 6, as `gzip` itself; zstd 3, as `zstd` itself).
    pub fn default_level(self) -> u32 {
        match self {
            Compression::Gzip => 6,
            Compression::Zstd => 3,
        }
    }

    /// `level`, or the default level when `None`, checked against [`Self::levels`].
    ///
    /// # Errors
    /// [`BackupError::InvalidLevel`] naming the level, the compression and the valid range.
    pub fn resolve_level(self, level: Option<u32>) -> Result<u32, BackupError> {
        let level = level.unwrap_or_else(|| self.default_level());
        if self.levels().contains(&level) {
            Ok(level)
        } else {
            Err(BackupError::InvalidLevel {
                compression: self,
                level,
            })
        }
    }

    /// The compression a file starting with `head` has, from its magic number: gzip
    /// `1f 8b`, zstd `28 b5 2f fd` (or a zstd skippable frame, `5? 2a 4d 18`). `None` for
    /// anything else, an empty file included.
    ///
    /// ```
    /// use backup_archive::Compression;
    /// assert_eq!(Compression::detect(&[0x1f, 0x8b, 8, 0]), Some(Compression::Gzip));
    /// assert_eq!(Compression::detect(&[0x28, 0xb5, 0x2f, 0xfd]), Some(Compression::Zstd));
    /// assert_eq!(Compression::detect(b"ustar"), None);
    /// ```
    pub fn detect(head: &[u8]) -> Option<Compression> {
        match head {
            [0x1f, 0x8b, ..] => Some(Compression::Gzip),
            [0x28, 0xb5, 0x2f, 0xfd, ..] => Some(Compression::Zstd),
            [0x50..=0x5f, 0x2a, 0x4d, 0x18, ..] => Some(Compression::Zstd),
            _ => None,
        }
    }

    /// The compression of the archive at `path`, read from its first four bytes.
    ///
    /// # Errors
    /// [`BackupError::Io`] when the file cannot be read; [`BackupError::Corrupt`] when it is
    /// neither gzip nor zstd.
    pub fn of_file(path: &Path) -> Result<Compression, BackupError> {
        let mut f = File::open(path).map_err(BackupError::io("open archive", path))?;
        let mut head = [0u8; 4];
        let mut n = 0;
        while n < head.len() {
            match f.read(&mut head[n..]) {
                Ok(0) => break,
                Ok(k) => n += k,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(BackupError::io("read archive", path)(e)),
            }
        }
        Compression::detect(&head[..n]).ok_or_else(|| BackupError::Corrupt {
            archive: path.to_path_buf(),
            entry: None,
            reason: unknown_format(&head[..n]),
        })
    }

    /// The compression an archive's file name says it has (`.tar.gz`/`.tgz`,
    /// `.tar.zst`/`.tzst`); `None` for any other name. Readers trust the magic number, not
    /// this; `list` and `prune` use it to recognise archives.
    pub fn from_file_name(name: &str) -> Option<Compression> {
        if name.ends_with(".tar.gz") || name.ends_with(".tgz") {
            Some(Compression::Gzip)
        } else if name.ends_with(".tar.zst") || name.ends_with(".tzst") {
            Some(Compression::Zstd)
        } else {
            None
        }
    }
}

impl std::fmt::Display for Compression {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for Compression {
    type Err = String;

    /// Parses `gzip` or `zstd`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Compression::ALL
            .into_iter()
            .find(|c| c.name() == s)
            .ok_or_else(|| format!("unknown compression `{s}`: use `gzip` or `zstd`"))
    }
}

/// What a reader says about a file that starts with neither magic number.
pub(crate) fn unknown_format(head: &[u8]) -> String {
    if head.is_empty() {
        return "the file is empty: not a gzip or zstd archive".to_owned();
    }
    let hex: Vec<String> = head.iter().map(|b| format!("{b:02x}")).collect();
    format!(
        "not a gzip or zstd archive: it starts with the bytes {}",
        hex.join(" ")
    )
}

/// The archive path of a backup id with this compression: `<dir>/<id>.tar.gz` or
/// `<dir>/<id>.tar.zst`.
pub fn archive_path(dir: &Path, id: &str, compression: Compression) -> PathBuf {
    dir.join(format!("{id}.{}", compression.extension()))
}

/// Whether `dir` already holds something of backup `id`: its sidecar `<id>.json` or an archive
/// `<id>.tar.gz` / `<id>.tar.zst`. `create` refuses such an id.
pub fn id_in_use(dir: &Path, id: &str) -> bool {
    crate::format::sidecar_path(&archive_path(dir, id, Compression::Gzip)).exists()
        || Compression::ALL
            .iter()
            .any(|c| archive_path(dir, id, *c).exists())
}

/// How much is written between two early `fdatasync`s of the archive ([`SyncingFile`]).
const EARLY_SYNC_BYTES: u64 = 8 * 1024 * 1024;

/// The archive file, flushed to disk as it grows: every [`EARLY_SYNC_BYTES`] written, a helper
/// thread `fdatasync`s what is there so far (through a second descriptor), so that the disk
/// works while the cores compress and the final `fsync` of `create` waits only for the tail.
/// An error of an early sync is kept and returned by [`SyncingFile::finish`], never lost.
pub(crate) struct SyncingFile {
    file: File,
    since: u64,
    tx: Option<std::sync::mpsc::SyncSender<()>>,
    syncer: Option<std::thread::JoinHandle<io::Result<()>>>,
}

impl SyncingFile {
    /// Wraps `file`; without a second descriptor it only writes (the final fsync still runs).
    pub(crate) fn new(file: File) -> Self {
        let (tx, syncer) = match file.try_clone() {
            Ok(other) => {
                let (tx, rx) = std::sync::mpsc::sync_channel::<()>(1);
                let syncer = std::thread::spawn(move || {
                    for () in rx {
                        other.sync_data()?;
                    }
                    Ok(())
                });
                (Some(tx), Some(syncer))
            }
            Err(_) => (None, None),
        };
        Self {
            file,
            since: 0,
            tx,
            syncer,
        }
    }

    /// Stops the helper; returns the file, or the error an early sync met.
    pub(crate) fn finish(mut self) -> io::Result<File> {
        self.tx = None;
        if let Some(syncer) = self.syncer.take() {
            syncer
                .join()
                .map_err(|_| io::Error::other("the archive's sync thread panicked"))??;
        }
        Ok(self.file)
    }
}

impl Write for SyncingFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.file.write(buf)?;
        self.since += n as u64;
        if self.since >= EARLY_SYNC_BYTES {
            self.since = 0;
            // When the helper is still busy with the last one, this one is skipped.
            if let Some(tx) = &self.tx
                && let Err(std::sync::mpsc::TrySendError::Disconnected(())) = tx.try_send(())
            {
                // The helper stopped on an error: `finish` reports it.
                self.tx = None;
            }
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

/// A `Write` that hashes and counts what passes through it.
pub(crate) struct HashingWriter<W> {
    inner: W,
    hasher: Sha256,
    bytes: u64,
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// The compressing writer `create` puts under its tar builder.
pub(crate) enum Compressor {
    /// Parallel gzip members.
    Gzip(ParallelGzWriter<SyncingFile>),
    /// libzstd with its worker threads, hashing its output.
    Zstd(zstd::stream::write::Encoder<'static, HashingWriter<SyncingFile>>),
}

impl std::fmt::Debug for Compressor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Compressor::Gzip(w) => w.fmt(f),
            Compressor::Zstd(_) => f.write_str("Compressor::Zstd"),
        }
    }
}

impl Compressor {
    /// Compresses into `out` at `level` (already checked) on `threads` threads.
    pub(crate) fn new(
        out: File,
        compression: Compression,
        level: u32,
        threads: usize,
    ) -> io::Result<Self> {
        let out = SyncingFile::new(out);
        match compression {
            Compression::Gzip => Ok(Compressor::Gzip(ParallelGzWriter::new(out, level, threads))),
            Compression::Zstd => {
                let out = HashingWriter {
                    inner: out,
                    hasher: Sha256::new(),
                    bytes: 0,
                };
                // The range check has been made: 1-19 fits an i32.
                let level = i32::try_from(level).unwrap_or(3);
                let mut enc = zstd::stream::write::Encoder::new(out, level)?;
                enc.include_checksum(true)?;
                enc.multithread(u32::try_from(threads.max(1)).unwrap_or(1))?;
                Ok(Compressor::Zstd(enc))
            }
        }
    }

    /// Ends the stream; returns the file and the hash and size of everything written to it.
    pub(crate) fn finish(self) -> io::Result<(File, Finished)> {
        match self {
            Compressor::Gzip(w) => {
                let (out, fin) = w.finish()?;
                Ok((out.finish()?, fin))
            }
            Compressor::Zstd(enc) => {
                let mut out = enc.finish()?;
                out.inner.flush()?;
                Ok((
                    out.inner.finish()?,
                    Finished {
                        sha256: out.hasher.finalize().into(),
                        bytes: out.bytes,
                    },
                ))
            }
        }
    }
}

impl Write for Compressor {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Compressor::Gzip(w) => w.write(buf),
            Compressor::Zstd(w) => w.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Compressor::Gzip(w) => w.flush(),
            Compressor::Zstd(w) => w.flush(),
        }
    }
}

/// The decompressing reader under the tar parser, chosen by the stream's magic number.
pub(crate) enum Decompressor<R: BufRead> {
    /// Every gzip member to the end (not only the first).
    Gzip(Box<flate2::bufread::MultiGzDecoder<R>>),
    /// Every zstd frame to the end.
    Zstd(zstd::stream::read::Decoder<'static, R>),
}

impl<R: BufRead> Decompressor<R> {
    /// A decoder for `compression` reading `input`.
    pub(crate) fn new(compression: Compression, input: R) -> io::Result<Self> {
        match compression {
            Compression::Gzip => Ok(Decompressor::Gzip(Box::new(
                flate2::bufread::MultiGzDecoder::new(input),
            ))),
            Compression::Zstd => {
                let mut dec = zstd::stream::read::Decoder::with_buffer(input)?;
                // A frame asking for a larger window is refused before anything is allocated.
                dec.window_log_max(ZSTD_WINDOW_LOG_MAX)?;
                Ok(Decompressor::Zstd(dec))
            }
        }
    }

    /// The input, positioned after what the decoder consumed.
    pub(crate) fn into_inner(self) -> R {
        match self {
            Decompressor::Gzip(d) => (*d).into_inner(),
            Decompressor::Zstd(d) => d.finish(),
        }
    }
}

impl<R: BufRead> Read for Decompressor<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Decompressor::Gzip(d) => d.read(buf),
            Decompressor::Zstd(d) => d.read(buf),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn magic_numbers_decide_and_names_only_recognise() {
        assert_eq!(Compression::detect(&[0x1f, 0x8b]), Some(Compression::Gzip));
        assert_eq!(
            Compression::detect(&[0x28, 0xb5, 0x2f, 0xfd, 0x04]),
            Some(Compression::Zstd)
        );
        assert_eq!(
            Compression::detect(&[0x5a, 0x2a, 0x4d, 0x18]),
            Some(Compression::Zstd)
        );
        for other in [
            &b""[..],
            b"\x1f",
            b"\x28\xb5\x2f",
            b"BZh9",
            b"\xfd7zXZ",
            b"app/",
        ] {
            assert_eq!(Compression::detect(other), None, "{other:?}");
        }
        assert_eq!(
            Compression::from_file_name("a.tar.zst"),
            Some(Compression::Zstd)
        );
        assert_eq!(
            Compression::from_file_name("a.tgz"),
            Some(Compression::Gzip)
        );
        assert_eq!(Compression::from_file_name("a.json"), None);
        assert!(unknown_format(b"ab").contains("61 62"));
        assert!(unknown_format(b"").contains("empty"));
    }

    #[test]
    fn levels_are_checked_per_compression() {
        assert_eq!(Compression::Gzip.resolve_level(None).unwrap(), 6);
        assert_eq!(Compression::Zstd.resolve_level(None).unwrap(), 3);
        assert_eq!(Compression::Gzip.resolve_level(Some(0)).unwrap(), 0);
        assert_eq!(Compression::Zstd.resolve_level(Some(19)).unwrap(), 19);
        let err = Compression::Zstd.resolve_level(Some(0)).unwrap_err();
        assert!(err.to_string().contains("1-19"), "{err}");
        let err = Compression::Gzip.resolve_level(Some(12)).unwrap_err();
        assert_eq!(
            err.to_string(),
            "compression level 12 is out of range for gzip: use 0-9 (default 6)"
        );
        assert_eq!("zstd".parse::<Compression>(), Ok(Compression::Zstd));
        assert!(
            "xz".parse::<Compression>()
                .unwrap_err()
                .contains("`gzip` or `zstd`")
        );
    }

    #[test]
    fn zstd_round_trips_through_the_reader_across_frames() {
        let data: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
        let file = tempfile::tempfile().unwrap();
        let mut w = Compressor::new(file, Compression::Zstd, 3, 2).unwrap();
        w.write_all(&data).unwrap();
        let (mut file, fin) = w.finish().unwrap();
        use std::io::Seek;
        file.rewind().unwrap();
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes).unwrap();
        assert_eq!(fin.bytes, bytes.len() as u64);
        assert_eq!(fin.sha256, <[u8; 32]>::from(Sha256::digest(&bytes)));
        assert_eq!(Compression::detect(&bytes), Some(Compression::Zstd));
        // Two frames back to back read as one stream, as two gzip members do.
        let twice = [bytes.clone(), bytes].concat();
        let mut dec = Decompressor::new(Compression::Zstd, &twice[..]).unwrap();
        let mut back = Vec::new();
        dec.read_to_end(&mut back).unwrap();
        assert_eq!(back.len(), data.len() * 2);
        assert_eq!(&back[..data.len()], &data[..]);
    }
}
