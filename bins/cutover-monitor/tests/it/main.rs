//! The integration tests of `cutover-monitor`, in one test binary: each file of this directory is a
//! module, so the crate links one binary instead of one per file.

mod cli;
