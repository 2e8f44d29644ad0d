//! The integration tests of `cutover-tests`, in one test binary: each file of this directory is a
//! module, so the crate links one binary instead of one per file.

mod demo_hub;
mod help;
