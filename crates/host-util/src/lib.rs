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
//! - [`size::parse_size`]: `"10GB"`, `"512MiB"` or bytes, the one size syntax of the
//!   manifest (with `serde` helpers under the `config` feature).
//! - [`error_chain`]: an error and its sources on one line, each once.
//!
//! Nothing here prints, exits or logs a value it was given.

pub mod error;
pub mod fs;
pub mod proc_stat;
pub mod process;
pub mod size;
#[cfg(feature = "tls")]
pub mod tls;

pub use error::error_chain;
pub use proc_stat::ProcStat;
