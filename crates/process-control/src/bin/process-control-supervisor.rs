//! A supervisor program and nothing else: `process-control-supervisor __supervise --state-dir
//! DIR` (and `__exec-shim …`), for library users whose own binary does not call
//! [`process_control::run_hidden_mode`], and for this crate's integration tests, which need a
//! real supervisor without building `cutover-proc`. Point
//! [`process_control::SupervisedConfig::supervisor_program`] at it.

// A binary: what it prints is its output. Libraries never print (the workspace denies it).
#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::ffi::OsString;

fn main() {
    let args: Vec<OsString> = std::env::args_os().collect();
    match process_control::run_hidden_mode(&args) {
        Some(Ok(code)) => std::process::exit(code),
        Some(Err(err)) => {
            eprintln!("error: {err}");
            std::process::exit(127)
        }
        None => {
            eprintln!(
                "usage: process-control-supervisor {} --state-dir DIR (started by SupervisedManager, not by hand)",
                process_control::SUPERVISE_MODE
            );
            std::process::exit(64)
        }
    }
}
