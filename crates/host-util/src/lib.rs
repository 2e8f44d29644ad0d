//! Host helpers that every cutover crate needs and that used to be written crate by crate
//! (issue 17):
//!
//! - [`fs::write_atomic`]: a temp file beside the target with exactly the mode asked for,
//!   fsync, rename over the target, fsync the directory; the temp file is removed on every
//!   error path.
//! - [`process::run_with_timeout`] (and [`process::run_async`] with the `tokio` feature): a
//!   command in its own process group, its output captured (bounded), the **whole group**
//!   killed when it outlives its timeout. [`process::kill_group`] and
//!   [`process::wait_or_kill`] for callers that wire the pipes themselves.
//! - [`proc_stat::ProcStat`]: the fields of `/proc/PID/stat`, parsed from the last `)`.
//! - [`tls`] (feature `tls`): the web PKI roots plus extra CA certificates from PEM, and a
//!   verifier that accepts any certificate while still checking the handshake signatures.
//!
//! Nothing here prints, exits or logs a value it was given.

pub mod fs;
pub mod proc_stat;
pub mod process;
#[cfg(feature = "tls")]
pub mod tls;

pub use proc_stat::ProcStat;
