//! How every cutover binary ends, in one shape (as ripgrep's `main`):
//!
//! ```no_run
//! use std::process::ExitCode;
//! use cutover_cli::Failure;
//!
//! #[derive(clap::Parser)]
//! struct Cli {}
//!
//! fn main() -> ExitCode {
//!     cutover_cli::exit(run())
//! }
//!
//! /// `Ok` is the verdict's exit code (0 ok, 1 warn, 2 fail, 3 unknown); `Err` is why the
//! /// command could not go on, with its own exit code.
//! fn run() -> Result<i32, Failure> {
//!     let _cli: Cli = cutover_cli::parse()?;
//!     Err(Failure::config("[service] name: missing"))
//! }
//! ```
//!
//! A [`Failure`] carries its exit code (64 usage, 75 locked, 78 invalid configuration, 3 cannot
//! evaluate, 2 failed, …) and what is still to be said: [`exit`] prints it (the JSON document on
//! stdout first, then the line on stderr) and turns the code into the process's exit status.

use std::fmt;
use std::process::ExitCode;

use crate::{EXIT_CONFIG, EXIT_FAIL, EXIT_OK, EXIT_UNKNOWN, EXIT_USAGE, ManifestError};

/// Why a command stopped: its exit code and what it still has to say.
///
/// Made where the problem is found and returned with `?` up to `main`, which hands it to
/// [`exit`]; nothing below `main` exits the process.
#[derive(Debug)]
pub struct Failure {
    code: i32,
    report: Report,
    json: Option<serde_json::Value>,
}

#[derive(Debug)]
enum Report {
    /// Everything was said where it happened.
    Done,
    /// `error: MESSAGE` on stderr.
    Error(String),
    /// This line on stderr, as it is.
    Line(String),
    /// clap's help, version or usage error, printed the way clap prints it.
    Clap(clap::Error),
}

impl Failure {
    /// Exit with `code`, printing `error: MESSAGE` on stderr.
    pub fn new(code: i32, message: impl fmt::Display) -> Self {
        Failure {
            code,
            report: Report::Error(message.to_string()),
            json: None,
        }
    }

    /// Exit with `code`, printing `line` on stderr as it is (for binaries whose messages carry
    /// their own prefix, such as `cutover-demo-hub: …`).
    pub fn line(code: i32, line: impl Into<String>) -> Self {
        Failure {
            code,
            report: Report::Line(line.into()),
            json: None,
        }
    }

    /// Exit with `code`, saying nothing more: the problem was reported where it was found.
    pub fn reported(code: i32) -> Self {
        Failure {
            code,
            report: Report::Done,
            json: None,
        }
    }

    /// A usage error (exit 64).
    pub fn usage(message: impl fmt::Display) -> Self {
        Failure::new(EXIT_USAGE, message)
    }

    /// Invalid configuration (exit 78).
    pub fn config(message: impl fmt::Display) -> Self {
        Failure::new(EXIT_CONFIG, message)
    }

    /// Could not evaluate (exit 3).
    pub fn unknown(message: impl fmt::Display) -> Self {
        Failure::new(EXIT_UNKNOWN, message)
    }

    /// Failed (exit 2).
    pub fn fail(message: impl fmt::Display) -> Self {
        Failure::new(EXIT_FAIL, message)
    }

    /// Also prints `doc` on stdout (pretty, one document) before the message: the answer of a
    /// command run with `--json`.
    #[must_use]
    pub fn with_json(mut self, doc: serde_json::Value) -> Self {
        self.json = Some(doc);
        self
    }

    /// The exit code.
    pub fn code(&self) -> i32 {
        self.code
    }

    /// The message for stderr, if any is still to be printed (clap's own text excepted).
    pub fn message(&self) -> Option<&str> {
        match &self.report {
            Report::Error(m) | Report::Line(m) => Some(m),
            Report::Done | Report::Clap(_) => None,
        }
    }

    /// Prints what is still to be said: the JSON document, then the message.
    #[allow(clippy::print_stderr)] // The binaries' one place that reports why they stop.
    fn report(self) {
        if let Some(doc) = &self.json {
            // A closed stdout cannot be reported anywhere better than the message below.
            let _ = crate::print_json(doc);
        }
        match self.report {
            Report::Done => {}
            Report::Error(m) => eprintln!("error: {m}"),
            Report::Line(l) => eprintln!("{l}"),
            Report::Clap(e) => {
                let _ = e.print();
            }
        }
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.report {
            Report::Error(m) | Report::Line(m) => f.write_str(m),
            Report::Clap(e) => write!(f, "{e}"),
            Report::Done => write!(f, "exit {}", self.code),
        }
    }
}

impl std::error::Error for Failure {}

/// An invalid manifest: its message (file:line:col and key) and exit 78.
impl From<ManifestError> for Failure {
    fn from(err: ManifestError) -> Self {
        Failure::new(err.exit_code(), err)
    }
}

/// clap's verdict on the command line: help and version exit 0, anything else is a usage error
/// (64).
impl From<clap::Error> for Failure {
    fn from(err: clap::Error) -> Self {
        let code = match err.kind() {
            clap::error::ErrorKind::DisplayHelp
            | clap::error::ErrorKind::DisplayVersion
            | clap::error::ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => EXIT_OK,
            _ => EXIT_USAGE,
        };
        Failure {
            code,
            report: Report::Clap(err),
            json: None,
        }
    }
}

/// Parses the command line; `--help`, `--version` and usage errors come back as a [`Failure`]
/// (exit 0 and 64).
pub fn parse<P: clap::Parser>() -> Result<P, Failure> {
    P::try_parse().map_err(Failure::from)
}

/// The end of every binary's `main`: reports a [`Failure`] and turns the code into the exit
/// status (the low 8 bits, as `std::process::exit` would).
pub fn exit(outcome: Result<i32, Failure>) -> ExitCode {
    let code = match outcome {
        Ok(code) => code,
        Err(failure) => {
            let code = failure.code;
            failure.report();
            code
        }
    };
    // The status is the low byte of the code, exactly as the kernel would take it from exit(2).
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    ExitCode::from(code as u8)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_of_the_constructors() {
        assert_eq!(Failure::usage("x").code(), 64);
        assert_eq!(Failure::config("x").code(), 78);
        assert_eq!(Failure::unknown("x").code(), 3);
        assert_eq!(Failure::fail("x").code(), 2);
        assert_eq!(Failure::reported(75).code(), 75);
        assert_eq!(
            Failure::usage("--name is required").message(),
            Some("--name is required")
        );
        assert_eq!(Failure::reported(2).message(), None);
    }

    #[test]
    fn clap_help_is_ok_and_a_bad_flag_is_usage() {
        #[derive(Debug, clap::Parser)]
        struct Cli {
            #[arg(long)]
            _flag: bool,
        }
        use clap::Parser;
        let help = Cli::try_parse_from(["x", "--help"]).map_err(Failure::from);
        assert_eq!(help.map(|_| ()).unwrap_err().code(), EXIT_OK);
        let bad = Cli::try_parse_from(["x", "--nope"]).map_err(Failure::from);
        assert_eq!(bad.map(|_| ()).unwrap_err().code(), EXIT_USAGE);
    }

    #[test]
    fn exit_passes_the_code_through() {
        assert_eq!(exit(Ok(0)), ExitCode::from(0));
        assert_eq!(exit(Ok(3)), ExitCode::from(3));
        assert_eq!(exit(Err(Failure::reported(75))), ExitCode::from(75));
        assert_ne!(exit(Err(Failure::reported(75))), ExitCode::from(78));
    }
}
