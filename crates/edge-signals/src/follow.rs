//! Following a log file by path across rotation and truncation, in bounded memory.
//!
//! Theory of operation: the follower holds the file it reads open and remembers its device and
//! inode. At each [`LogFollower::poll`] it reads what was appended since the last one, in
//! chunks of a fixed buffer, and hands over complete lines; the bytes after the last newline
//! wait (up to a limit) until the line is complete. When the path names another file (a
//! rotation renamed the old one away) it first reads the old file to its end, then opens the
//! new one at offset 0, and keeps the old one open as *draining* until the next rotation:
//! nginx workers may still append to it for a moment after the rename, until they reopen
//! their logs, and those lines are read too, so none is lost and none is read twice. When the
//! file at the path is shorter than the offset (truncated in place), reading restarts at 0.
//!
//! Limitation: a file truncated in place and grown past the old offset between two polls is
//! indistinguishable from one that was appended to; rotate by renaming (as edge-proxy does).

use std::fs::File;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};

use crate::error::SignalsError;

/// The read buffer: one chunk of the file at a time, never the whole file.
pub const READ_CHUNK: usize = 64 * 1024;
/// The longest line kept while waiting for its end; a longer one is skipped and counted.
pub const MAX_LINE: usize = 64 * 1024;

/// Where the first file is read from when the follower opens it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartAt {
    /// From its first byte.
    Beginning,
    /// From its current end: only what is appended from now on.
    End,
    /// From this byte offset (rounded forward to the next line start).
    Offset(u64),
}

/// What one poll saw besides the lines.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PollStats {
    /// Complete lines handed over.
    pub lines: u64,
    /// Bytes read.
    pub bytes: u64,
    /// Rotations noticed (the path named a new file).
    pub rotations: u32,
    /// Truncations noticed (the file shrank below the offset).
    pub truncations: u32,
    /// Lines longer than [`MAX_LINE`], skipped.
    pub oversized: u64,
}

impl PollStats {
    fn add(&mut self, other: PollStats) {
        self.lines += other.lines;
        self.bytes += other.bytes;
        self.rotations += other.rotations;
        self.truncations += other.truncations;
        self.oversized += other.oversized;
    }
}

/// An open file being read, with its identity and the incomplete line at its end.
#[derive(Debug)]
struct Tail {
    file: File,
    dev: u64,
    ino: u64,
    offset: u64,
    partial: Vec<u8>,
    /// Skipping the rest of an oversized line (or, after starting mid-file, a partial one).
    skipping: bool,
}

impl Tail {
    fn open(path: &Path, start: StartAt) -> Result<Option<Self>, SignalsError> {
        let file = match File::open(path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(SignalsError::io("open", path, e)),
        };
        let meta = file
            .metadata()
            .map_err(|e| SignalsError::io("stat", path, e))?;
        let (offset, skipping) = match start {
            StartAt::Beginning => (0, false),
            StartAt::End => (meta.len(), false),
            StartAt::Offset(0) => (0, false),
            // Mid-file: unless the offset is a line start, the bytes up to the next newline
            // belong to a line read elsewhere.
            StartAt::Offset(n) => {
                let n = n.min(meta.len());
                let mut before = [0u8; 1];
                let at_line_start = file
                    .read_at(&mut before, n - 1)
                    .map_err(|e| SignalsError::io("read", path, e))?
                    == 1
                    && before[0] == b'\n';
                (n, !at_line_start)
            }
        };
        Ok(Some(Self {
            file,
            dev: meta.dev(),
            ino: meta.ino(),
            offset,
            partial: Vec::new(),
            skipping,
        }))
    }

    /// Reads from the offset to the end of the file, handing each complete line to `on_line`.
    fn read_to_end(
        &mut self,
        path: &Path,
        buf: &mut [u8],
        on_line: &mut dyn FnMut(&[u8]),
    ) -> Result<PollStats, SignalsError> {
        let mut stats = PollStats::default();
        let len = self
            .file
            .metadata()
            .map_err(|e| SignalsError::io("stat", path, e))?
            .len();
        if len < self.offset {
            stats.truncations += 1;
            tracing::info!(path = %path.display(), len, offset = self.offset, "edge log truncated; reading from its start");
            self.offset = 0;
            self.partial.clear();
            self.skipping = false;
        }
        loop {
            let n = match self.file.read_at(buf, self.offset) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(SignalsError::io("read", path, e)),
            };
            self.offset += n as u64;
            stats.bytes += n as u64;
            self.split(&buf[..n], on_line, &mut stats);
        }
        Ok(stats)
    }

    fn split(&mut self, mut chunk: &[u8], on_line: &mut dyn FnMut(&[u8]), stats: &mut PollStats) {
        while let Some(pos) = chunk.iter().position(|&b| b == b'\n') {
            let (head, rest) = (&chunk[..pos], &chunk[pos + 1..]);
            chunk = rest;
            if self.skipping {
                self.skipping = false;
                self.partial.clear();
                continue;
            }
            if self.partial.is_empty() {
                emit(head, on_line, stats);
            } else if self.partial.len() + head.len() > MAX_LINE {
                self.partial.clear();
                stats.oversized += 1;
            } else {
                self.partial.extend_from_slice(head);
                emit(&self.partial, on_line, stats);
                self.partial.clear();
            }
        }
        if self.skipping || chunk.is_empty() {
            return;
        }
        if self.partial.len() + chunk.len() > MAX_LINE {
            self.partial.clear();
            self.skipping = true;
            stats.oversized += 1;
        } else {
            self.partial.extend_from_slice(chunk);
        }
    }

    /// Bytes held for an incomplete line.
    fn held(&self) -> usize {
        self.partial.capacity()
    }
}

fn emit(line: &[u8], on_line: &mut dyn FnMut(&[u8]), stats: &mut PollStats) {
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    if !line.is_empty() {
        stats.lines += 1;
        on_line(line);
    }
}

/// Follows the file at a path: see the module documentation.
#[derive(Debug)]
pub struct LogFollower {
    path: PathBuf,
    start: StartAt,
    current: Option<Tail>,
    draining: Option<Tail>,
    buf: Vec<u8>,
}

impl LogFollower {
    /// A follower of `path` (which may not exist yet), starting at `start` in the first file
    /// it opens; files that replace it by rotation are read from their start.
    pub fn new(path: impl Into<PathBuf>, start: StartAt) -> Self {
        Self {
            path: path.into(),
            start,
            current: None,
            draining: None,
            buf: vec![0; READ_CHUNK],
        }
    }

    /// The path followed.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Reads everything appended since the last poll (in the rotated-away file first, then the
    /// file at the path) and hands each complete line, without its newline, to `on_line`.
    ///
    /// # Errors
    /// [`SignalsError::Io`] when a file cannot be opened, inspected or read; a missing file is
    /// not an error (nothing is read until it appears).
    pub fn poll(&mut self, on_line: &mut dyn FnMut(&[u8])) -> Result<PollStats, SignalsError> {
        let mut stats = PollStats::default();
        let identity = match std::fs::metadata(&self.path) {
            Ok(m) => Some((m.dev(), m.ino())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(SignalsError::io("stat", &self.path, e)),
        };
        let rotated = match (&self.current, identity) {
            (Some(t), Some(id)) => (t.dev, t.ino) != id,
            _ => false,
        };
        if rotated {
            stats.rotations += 1;
            // The generation before last is done: nginx reopened its logs one rotation ago.
            if let Some(mut old) = self.draining.take() {
                stats.add(old.read_to_end(&self.path, &mut self.buf, on_line)?);
            }
            self.draining = self.current.take();
            tracing::debug!(path = %self.path.display(), "edge log rotated; finishing the old file");
        }
        if let Some(old) = self.draining.as_mut() {
            stats.add(old.read_to_end(&self.path, &mut self.buf, on_line)?);
        }
        if self.current.is_none() && identity.is_some() {
            let start = if rotated || stats.rotations > 0 {
                StartAt::Beginning
            } else {
                std::mem::replace(&mut self.start, StartAt::Beginning)
            };
            self.current = Tail::open(&self.path, start)?;
        }
        if let Some(current) = self.current.as_mut() {
            stats.add(current.read_to_end(&self.path, &mut self.buf, on_line)?);
        }
        Ok(stats)
    }

    /// The memory the follower holds besides its fixed read buffer: the incomplete lines of
    /// the files it has open (each at most [`MAX_LINE`]).
    pub fn held_bytes(&self) -> usize {
        self.current.as_ref().map_or(0, Tail::held) + self.draining.as_ref().map_or(0, Tail::held)
    }

    /// The read buffer's size ([`READ_CHUNK`]).
    pub fn buffer_bytes(&self) -> usize {
        self.buf.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn collect(f: &mut LogFollower) -> (Vec<String>, PollStats) {
        let mut lines = Vec::new();
        let stats = f
            .poll(&mut |l| lines.push(String::from_utf8_lossy(l).into_owned()))
            .unwrap();
        (lines, stats)
    }

    fn append(path: &Path, text: &str) {
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .unwrap();
        f.write_all(text.as_bytes()).unwrap();
    }

    #[test]
    fn partial_lines_wait_for_their_end() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log");
        let mut f = LogFollower::new(&path, StartAt::Beginning);
        assert_eq!(collect(&mut f).0, Vec::<String>::new(), "no file yet");
        append(&path, "one\ntw");
        assert_eq!(collect(&mut f).0, ["one"]);
        append(&path, "o\nthree\n");
        assert_eq!(collect(&mut f).0, ["two", "three"]);
        assert_eq!(collect(&mut f).0, Vec::<String>::new());
    }

    #[test]
    fn rotation_finishes_the_old_file_and_reads_late_writes_once() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log");
        let old_path = dir.path().join("log.1");
        append(&path, "a\n");
        let mut f = LogFollower::new(&path, StartAt::Beginning);
        assert_eq!(collect(&mut f).0, ["a"]);
        // Written after the last poll, then renamed: still read, before the new file.
        let mut writer = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap();
        writer.write_all(b"b\n").unwrap();
        std::fs::rename(&path, &old_path).unwrap();
        append(&path, "c\n");
        let (lines, stats) = collect(&mut f);
        assert_eq!(lines, ["b", "c"]);
        assert_eq!(stats.rotations, 1);
        // A worker that has not reopened yet writes to the renamed file: read, once.
        writer.write_all(b"late\n").unwrap();
        append(&path, "d\n");
        assert_eq!(collect(&mut f).0, ["late", "d"]);
        assert_eq!(collect(&mut f).0, Vec::<String>::new());
    }

    #[test]
    fn truncation_restarts_at_zero() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log");
        append(&path, "first line\nsecond line\n");
        let mut f = LogFollower::new(&path, StartAt::Beginning);
        assert_eq!(collect(&mut f).0.len(), 2);
        std::fs::OpenOptions::new()
            .write(true)
            .truncate(true)
            .open(&path)
            .unwrap();
        append(&path, "x\n");
        let (lines, stats) = collect(&mut f);
        assert_eq!((lines, stats.truncations), (vec!["x".to_owned()], 1));
    }

    #[test]
    fn oversized_lines_are_skipped_and_memory_stays_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log");
        let huge = "z".repeat(MAX_LINE * 3);
        append(&path, &format!("ok\n{huge}"));
        let mut f = LogFollower::new(&path, StartAt::Beginning);
        let (lines, stats) = collect(&mut f);
        assert_eq!((lines, stats.oversized), (vec!["ok".to_owned()], 1));
        assert!(f.held_bytes() <= MAX_LINE * 2, "{}", f.held_bytes());
        append(&path, "tail of the huge line\nnext\n");
        assert_eq!(collect(&mut f).0, ["next"]);
    }

    #[test]
    fn starting_mid_file_skips_to_the_next_line_and_at_end_reads_only_new_lines() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log");
        append(&path, "alpha\nbeta\n");
        let mut f = LogFollower::new(&path, StartAt::Offset(2));
        assert_eq!(collect(&mut f).0, ["beta"]);
        let mut exact = LogFollower::new(&path, StartAt::Offset(6));
        assert_eq!(
            collect(&mut exact).0,
            ["beta"],
            "an offset at a line start keeps it"
        );
        let mut g = LogFollower::new(&path, StartAt::End);
        assert_eq!(collect(&mut g).0, Vec::<String>::new());
        append(&path, "gamma\n");
        assert_eq!(collect(&mut g).0, ["gamma"]);
    }
}
