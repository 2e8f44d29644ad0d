//! The integration tests of `process-control`, in one test binary: each file of this directory is a
//! module, so the crate links one binary instead of one per file.

mod supervised_sweep;
mod systemd;
