//! The integration tests of `preflight-checks`, in one test binary: each file of this directory is a
//! module, so the crate links one binary instead of one per file.

mod command;
mod config;
mod files;
mod git;
mod host;
mod port;
mod runner;
mod secrets;
mod tls;
