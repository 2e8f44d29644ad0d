//! Parallel gzip, pigz style: the input is cut into fixed-size blocks, each block is compressed
//! into its own complete gzip member on a pool of worker threads, and the members are written
//! back to back in order. GNU gzip and tar read such a file as one stream; flate2 reads it with
//! `MultiGzDecoder` (its `GzDecoder` would stop after the first member).
//!
//! Independent members cost a little ratio (each block starts without a dictionary): with
//! 4 MiB blocks that is well under 0.1 %, and it lets every core compress.

use std::io::{self, Write};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use flate2::Compression;
use flate2::write::GzEncoder;
use sha2::{Digest, Sha256};

/// The uncompressed size of one gzip member.
pub(crate) const BLOCK_SIZE: usize = 4 * 1024 * 1024;

type Job = (u64, Vec<u8>);
type Done = (u64, io::Result<Vec<u8>>);

/// What the writer thread reports when the stream is finished.
#[derive(Debug)]
pub(crate) struct Finished {
    /// SHA-256 of everything written to the output.
    pub(crate) sha256: [u8; 32],
    /// Bytes written to the output.
    pub(crate) bytes: u64,
}

/// A `Write` that compresses into parallel gzip members and writes them, in order, to `W` on a
/// writer thread that also hashes the output.
pub(crate) struct ParallelGzWriter<W: Write + Send + 'static> {
    buf: Vec<u8>,
    next_seq: u64,
    jobs: Option<SyncSender<Job>>,
    workers: Vec<JoinHandle<()>>,
    writer: Option<JoinHandle<io::Result<(W, Finished)>>>,
}

impl<W: Write + Send + 'static> std::fmt::Debug for ParallelGzWriter<W> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ParallelGzWriter")
            .field("next_seq", &self.next_seq)
            .finish()
    }
}

impl<W: Write + Send + 'static> ParallelGzWriter<W> {
    /// Starts `threads` compressors (at least one) at `level` (0-9) writing into `out`.
    pub(crate) fn new(out: W, level: u32, threads: usize) -> Self {
        let threads = threads.max(1);
        let (job_tx, job_rx) = sync_channel::<Job>(threads);
        let (done_tx, done_rx) = sync_channel::<Done>(threads * 2);
        let job_rx = Arc::new(Mutex::new(job_rx));
        let workers = (0..threads)
            .map(|_| {
                let rx = Arc::clone(&job_rx);
                let tx = done_tx.clone();
                std::thread::spawn(move || worker(rx, tx, level))
            })
            .collect();
        drop(done_tx);
        let writer = std::thread::spawn(move || write_in_order(out, done_rx));
        Self {
            buf: Vec::with_capacity(BLOCK_SIZE),
            next_seq: 0,
            jobs: Some(job_tx),
            workers,
            writer: Some(writer),
        }
    }

    fn dispatch(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let block = std::mem::replace(&mut self.buf, Vec::with_capacity(BLOCK_SIZE));
        let seq = self.next_seq;
        self.next_seq += 1;
        let sent = self
            .jobs
            .as_ref()
            .map(|tx| tx.send((seq, block)).is_ok())
            .unwrap_or(false);
        if sent {
            Ok(())
        } else {
            Err(self.pipeline_error())
        }
    }

    /// The writer thread stopped early: fetch its error.
    fn pipeline_error(&mut self) -> io::Error {
        self.jobs = None;
        match self.writer.take().map(JoinHandle::join) {
            Some(Ok(Err(e))) => e,
            _ => io::Error::other("compression pipeline stopped"),
        }
    }

    /// Compresses what is left, waits for every member to be written and returns the output and
    /// its hash and size.
    pub(crate) fn finish(mut self) -> io::Result<(W, Finished)> {
        self.dispatch()?;
        self.jobs = None;
        for w in self.workers.drain(..) {
            w.join()
                .map_err(|_| io::Error::other("compression worker panicked"))?;
        }
        match self.writer.take().map(JoinHandle::join) {
            Some(Ok(result)) => result,
            _ => Err(io::Error::other("archive writer thread panicked")),
        }
    }
}

impl<W: Write + Send + 'static> Write for ParallelGzWriter<W> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let room = BLOCK_SIZE - self.buf.len();
        let n = room.min(data.len());
        self.buf.extend_from_slice(&data[..n]);
        if self.buf.len() == BLOCK_SIZE {
            self.dispatch()?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

fn worker(jobs: Arc<Mutex<Receiver<Job>>>, done: SyncSender<Done>, level: u32) {
    loop {
        // The lock is held only while taking one job, so workers compress concurrently.
        let job = match jobs.lock() {
            Ok(rx) => rx.recv(),
            Err(_) => return,
        };
        let Ok((seq, block)) = job else { return };
        if done.send((seq, compress_member(&block, level))).is_err() {
            return;
        }
    }
}

/// Compresses one block into one complete gzip member.
pub(crate) fn compress_member(block: &[u8], level: u32) -> io::Result<Vec<u8>> {
    let mut enc = GzEncoder::new(
        Vec::with_capacity(block.len() / 2 + 64),
        Compression::new(level),
    );
    enc.write_all(block)?;
    enc.finish()
}

fn write_in_order<W: Write>(mut out: W, done: Receiver<Done>) -> io::Result<(W, Finished)> {
    let mut pending = std::collections::BTreeMap::new();
    let mut next = 0u64;
    let mut hasher = Sha256::new();
    let mut bytes = 0u64;
    for (seq, member) in done {
        pending.insert(seq, member?);
        while let Some(member) = pending.remove(&next) {
            out.write_all(&member)?;
            hasher.update(&member);
            bytes += member.len() as u64;
            next += 1;
        }
    }
    if !pending.is_empty() {
        return Err(io::Error::other("a compressed block went missing"));
    }
    out.flush()?;
    Ok((
        out,
        Finished {
            sha256: hasher.finalize().into(),
            bytes,
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    #[test]
    fn members_concatenate_into_one_stream() {
        let data: Vec<u8> = (0..(BLOCK_SIZE * 2 + 12345))
            .map(|i| (i % 251) as u8 ^ (i / 7919) as u8)
            .collect();
        let mut w = ParallelGzWriter::new(Vec::new(), 6, 2);
        w.write_all(&data).unwrap();
        let (out, fin) = w.finish().unwrap();
        assert_eq!(fin.bytes, out.len() as u64);
        let mut back = Vec::new();
        flate2::read::MultiGzDecoder::new(&out[..])
            .read_to_end(&mut back)
            .unwrap();
        assert_eq!(back, data);
        // A single-member decoder sees only the first block: the reason readers must use
        // MultiGzDecoder.
        let mut first = Vec::new();
        flate2::read::GzDecoder::new(&out[..])
            .read_to_end(&mut first)
            .unwrap();
        assert_eq!(first.len(), BLOCK_SIZE);
    }

    #[test]
    fn empty_input_gives_empty_output() {
        let w = ParallelGzWriter::new(Vec::new(), 6, 2);
        let (out, fin) = w.finish().unwrap();
        assert!(out.is_empty());
        assert_eq!(fin.bytes, 0);
    }
}
