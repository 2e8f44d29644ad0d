//! The integration tests of `health-probe`, in one test binary: each file of this directory is a
//! module, so the crate links one binary instead of one per file.

mod common;
mod demo_hub;
mod probes;
