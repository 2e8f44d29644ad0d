//! Progress reporting, so that a binary can draw a bar while the library stays silent.

/// Receives progress of long operations in bytes (content bytes for `create`, archive bytes
/// for `verify` and `restore`). Called from worker threads, hence `Sync`.
pub trait Progress: Sync {
    /// The operation starts and will handle about `total` bytes.
    fn start(&self, total: u64);
    /// `bytes` more were handled.
    fn advance(&self, bytes: u64);
    /// The operation is done.
    fn finish(&self);
}

/// Progress that goes nowhere.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoProgress;

impl Progress for NoProgress {
    fn start(&self, _: u64) {}
    fn advance(&self, _: u64) {}
    fn finish(&self) {}
}
