//! What every cutover binary shares, so that the CLI contract (docs/cli.md) holds in one place:
//!
//! * [`CommonArgs`]: `--manifest PATH`, `--json`, `--log-format text|json`, flattened into each
//!   binary's clap parser;
//! * [`init_logging`]: `tracing` to stderr, filtered by `RUST_LOG` (default `warn`), colours off
//!   when `NO_COLOR` is set or stderr is not a terminal, JSON lines with `--log-format json`, and
//!   every secret value resolved in the process replaced by `***` (see [`log_subscriber`]);
//! * [`Status`] and the exit codes: 0 ok, 1 warning, 2 failed/critical, 3 unknown, 64 usage,
//!   75 locked, 78 invalid configuration;
//! * [`print_json`]: exactly one JSON document on stdout;
//! * [`exit()`], [`parse`] and [`Failure`]: one `main` → `run` → exit-code shape for every binary
//!   (see [the `exit` module](mod@exit));
//! * [`error_chain`]: an error and its sources on one line, each once (`{err}: {source}: …`).
//!
//! Only binaries depend on this crate; libraries never print and never exit.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;

use serde::Serialize;

pub use host_util::error_chain;
pub use manifest_loader::{Manifest, ManifestError};

pub mod exit;
pub use exit::{Failure, exit, parse};

/// Exit code: everything ok.
pub const EXIT_OK: i32 = 0;
/// Exit code: warnings only.
pub const EXIT_WARN: i32 = 1;
/// Exit code: failed or critical.
pub const EXIT_FAIL: i32 = 2;
/// Exit code: could not evaluate.
pub const EXIT_UNKNOWN: i32 = 3;
/// Exit code: usage error (clap's own errors use it too).
pub const EXIT_USAGE: i32 = 64;
/// Exit code: another deploy holds the lock.
pub const EXIT_LOCKED: i32 = 75;
/// Exit code: invalid configuration.
pub const EXIT_CONFIG: i32 = manifest_loader::EXIT_INVALID_CONFIG;

/// The verdict of anything that judges, as printed in `"status"` and mapped to an exit code.
///
/// Ordered by severity, as [`Status::worst`] combines them: ok < warn < unknown < fail (so
/// `max` is the worst), which is not the order of the exit codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// All good.
    Ok,
    /// Something deserves a look, nothing failed.
    Warn,
    /// Something failed or is critical.
    Fail,
    /// Could not evaluate.
    Unknown,
}

impl Status {
    /// The Nagios-style exit code: 0, 1, 2 or 3.
    pub fn exit_code(self) -> i32 {
        match self {
            Status::Ok => EXIT_OK,
            Status::Warn => EXIT_WARN,
            Status::Fail => EXIT_FAIL,
            Status::Unknown => EXIT_UNKNOWN,
        }
    }

    /// The lower-case name used in JSON and tables.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::Warn => "warn",
            Status::Fail => "fail",
            Status::Unknown => "unknown",
        }
    }

    /// Combines two verdicts: fail beats unknown beats warn beats ok.
    pub fn worst(self, other: Status) -> Status {
        self.max(other)
    }

    fn severity(self) -> u8 {
        match self {
            Status::Ok => 0,
            Status::Warn => 1,
            Status::Unknown => 2,
            Status::Fail => 3,
        }
    }
}

impl PartialOrd for Status {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Status {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.severity().cmp(&other.severity())
    }
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How log lines on stderr are formatted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line, for machines.
    Json,
}

/// Flags every binary accepts; add with `#[command(flatten)]`.
#[derive(Debug, Clone, clap::Args)]
pub struct CommonArgs {
    /// The manifest to read (default: cutover.toml in the current directory, when present).
    #[arg(long, global = true, value_name = "PATH")]
    pub manifest: Option<PathBuf>,
    /// Print exactly one JSON document on stdout instead of a table.
    #[arg(long, global = true)]
    pub json: bool,
    /// Format of the log lines written to stderr.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
}

impl CommonArgs {
    /// Installs logging as these flags ask.
    pub fn init_logging(&self) {
        init_logging(self.log_format);
    }

    /// Finds and reads the manifest (`--manifest` or ./cutover.toml); `None` when there is none.
    pub fn manifest(&self) -> Result<Option<Manifest>, ManifestError> {
        Manifest::locate(self.manifest.as_deref())
    }
}

/// Installs a `tracing` subscriber writing to stderr; `RUST_LOG` filters (default `warn`).
///
/// It is [`log_subscriber`]'s, so every value a [`secret_refs::Resolver`] resolves in the
/// process (with the global redactor, the default) is replaced by `***` in every line: the
/// second line of defence behind code that never logs a value.
pub fn init_logging(format: LogFormat) {
    use tracing_subscriber::util::SubscriberInitExt;
    let ansi = std::env::var_os("NO_COLOR").is_none() && std::io::stderr().is_terminal();
    // A second initialisation (tests calling main twice) is harmless, so its error is ignored.
    let _ = subscriber(format, ansi, std::io::stderr).try_init();
}

/// The subscriber [`init_logging`] installs, writing to `writer` instead of stderr and without
/// colours: `RUST_LOG` filters (default `warn`), and each formatted line passes through a
/// [`secret_refs::RedactingMakeWriter`] over the global [`secret_refs::Redactor`].
///
/// ```
/// use secret_refs::{Resolver, SecretRef};
/// let value = Resolver::new().resolve_blocking(&SecretRef::parse("literal:doc-canary-41")?)?;
/// let subscriber = cutover_cli::log_subscriber(cutover_cli::LogFormat::Text, std::io::stderr);
/// tracing::subscriber::with_default(subscriber, || {
///     tracing::warn!("careless: {}", value.expose_secret()); // printed as "careless: ***"
/// });
/// # Ok::<(), secret_refs::SecretError>(())
/// ```
pub fn log_subscriber<W>(format: LogFormat, writer: W) -> Box<dyn tracing::Subscriber + Send + Sync>
where
    W: for<'w> tracing_subscriber::fmt::MakeWriter<'w> + Send + Sync + 'static,
{
    subscriber(format, false, writer)
}

fn subscriber<W>(
    format: LogFormat,
    ansi: bool,
    writer: W,
) -> Box<dyn tracing::Subscriber + Send + Sync>
where
    W: for<'w> tracing_subscriber::fmt::MakeWriter<'w> + Send + Sync + 'static,
{
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(secret_refs::RedactingMakeWriter::global(writer));
    match format {
        LogFormat::Text => Box::new(builder.with_ansi(ansi).finish()),
        LogFormat::Json => Box::new(builder.json().with_ansi(false).finish()),
    }
}

/// Whether colours may be used on stdout (`NO_COLOR` unset and stdout a terminal).
pub fn stdout_colours() -> bool {
    std::env::var_os("NO_COLOR").is_none() && std::io::stdout().is_terminal()
}

/// Prints one JSON document (pretty, newline-terminated) on stdout.
pub fn print_json<T: Serialize>(value: &T) -> std::io::Result<()> {
    let mut out = std::io::stdout().lock();
    serde_json::to_writer_pretty(&mut out, value)?;
    out.write_all(b"\n")?;
    out.flush()
}

/// `println!` for a command's output, through [`write_out`]: a closed stdout (`| head -2`)
/// ends the program quietly instead of panicking.
#[macro_export]
macro_rules! outln {
    () => {
        $crate::write_out(format_args!("\n"))
    };
    ($($arg:tt)*) => {
        $crate::write_out(format_args!("{}\n", format_args!($($arg)*)))
    };
}

/// `print!` for a command's output, through [`write_out`].
#[macro_export]
macro_rules! out {
    ($($arg:tt)*) => {
        $crate::write_out(format_args!($($arg)*))
    };
}

/// Writes a command's output on stdout (what [`outln!`] and [`out!`] expand to).
///
/// A reader that went away (`cutover-proc status | head -2`) is not an error of this program:
/// it exits at once with 0 and says nothing, as ripgrep does, where `println!` would panic and
/// exit 101. Any other write error is reported once on stderr and exits with 2 (fail).
// Called only from binaries, through the macros: the entry's own output and exit.
#[allow(clippy::exit, clippy::print_stderr)]
pub fn write_out(args: std::fmt::Arguments<'_>) {
    let mut out = std::io::stdout().lock();
    match out.write_fmt(args) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => std::process::exit(EXIT_OK),
        Err(e) => {
            eprintln!("error: writing to stdout: {e}");
            std::process::exit(EXIT_FAIL);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn worst_orders_fail_over_unknown_over_warn_over_ok() {
        use Status::*;
        assert_eq!(Ok.worst(Warn), Warn);
        assert_eq!(Warn.worst(Unknown), Unknown);
        assert_eq!(Unknown.worst(Fail), Fail);
        assert_eq!(Fail.worst(Ok), Fail);
        // The order agrees with `worst`: the maximum of a set is its worst verdict.
        assert_eq!([Ok, Fail, Unknown, Warn].into_iter().max(), Some(Fail));
        assert_eq!([Ok, Unknown, Warn].into_iter().max(), Some(Unknown));
        assert!(Warn < Unknown && Unknown < Fail && Ok < Warn);
        assert_eq!(
            [Ok, Warn, Fail, Unknown].map(Status::exit_code),
            [0, 1, 2, 3]
        );
    }

    #[test]
    fn status_serialises_lower_case() {
        assert_eq!(serde_json::to_string(&Status::Warn).unwrap(), "\"warn\"");
    }
}
