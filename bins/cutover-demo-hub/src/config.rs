//! Command-line flags (each also settable by a `CUTOVER_DEMO_*` variable) and small parsers.

use std::path::{Path, PathBuf};
use std::time::Duration;

/// The demo service's flags. Names and variables are a contract other tests rely on.
#[derive(Debug, Clone, clap::Parser)]
#[command(
    name = "cutover-demo-hub",
    version,
    about = "The demo service cutover deploys and tests against."
)]
pub(crate) struct Args {
    /// Address to listen on (ignored when a socket is handed over with LISTEN_FDS).
    #[arg(long, env = "CUTOVER_DEMO_LISTEN", default_value = "127.0.0.1:7000")]
    pub(crate) listen: String,
    /// Write the bound address here (atomically) once listening; useful with port 0.
    #[arg(long, env = "CUTOVER_DEMO_ADDR_FILE", value_name = "PATH")]
    pub(crate) addr_file: Option<PathBuf>,
    /// The release id, shown as `version` in /api/health and on /metrics.
    #[arg(long, env = "CUTOVER_DEMO_RELEASE_ID", default_value = "dev")]
    pub(crate) release_id: String,
    /// Require `Authorization: Bearer TOKEN` on /api/* (except /api/health). Prefer the
    /// environment variable: a value in argv is visible to every user.
    #[arg(long, env = "CUTOVER_DEMO_TOKEN", hide_env_values = true)]
    pub(crate) token: Option<String>,
    /// Stay in state "starting" (stats answer 404) for this long before becoming ready.
    #[arg(long, env = "CUTOVER_DEMO_START_DELAY", value_parser = humantime::parse_duration, default_value = "0s")]
    pub(crate) start_delay: Duration,
    /// Exit 1 at once, before listening.
    #[arg(long, env = "CUTOVER_DEMO_FAIL_START")]
    pub(crate) fail_start: bool,
    /// Abort the process this long after start.
    #[arg(long, env = "CUTOVER_DEMO_CRASH_AFTER", value_parser = humantime::parse_duration)]
    pub(crate) crash_after: Option<Duration>,
    /// Never become ready: stay in this state.
    #[arg(long, env = "CUTOVER_DEMO_HEALTH_STATE", value_enum)]
    pub(crate) health_state: Option<StuckState>,
    /// Added to every /api answer.
    #[arg(long, env = "CUTOVER_DEMO_LATENCY", value_parser = humantime::parse_duration, default_value = "0s")]
    pub(crate) latency: Duration,
    /// The fraction (0..1) of /api answers, health excluded, that are 500s.
    #[arg(long, env = "CUTOVER_DEMO_ERROR_RATE", value_parser = parse_fraction, default_value = "0")]
    pub(crate) error_rate: f64,
    /// Memory kept (and touched) per /api request, e.g. 64KiB.
    #[arg(long, env = "CUTOVER_DEMO_LEAK_PER_REQUEST", value_parser = parse_bytes, default_value = "0")]
    pub(crate) leak_per_request: u64,
    /// Ignore SIGTERM (SIGINT still stops the service).
    #[arg(long, env = "CUTOVER_DEMO_IGNORE_SIGTERM")]
    pub(crate) ignore_sigterm: bool,
    /// How long shutdown waits for in-flight requests.
    #[arg(long, env = "CUTOVER_DEMO_GRACE", value_parser = humantime::parse_duration, default_value = "10s")]
    pub(crate) grace: Duration,
    /// Entries in the response cache behind /api/tools and /api/filtering/stats; 0 disables it
    /// (every lookup misses, so the cache hit rate falls to 0).
    #[arg(long, env = "CUTOVER_DEMO_CACHE_CAPACITY", default_value_t = 256)]
    pub(crate) cache_capacity: usize,
    /// Which API to serve: `demo` (the MCP Hub routes plus `/api/stats` and a Prometheus
    /// `/metrics`) or `mcp-hub` (only what MCP Hub 4.3.0 serves: no `/api/stats`, `/metrics`
    /// answers 200 with the web UI's HTML, `/api/filtering/stats` counts tool checks in
    /// `totalTools`). The fault knobs work in both.
    #[arg(long, env = "CUTOVER_DEMO_SHAPE", value_enum, default_value_t = Shape::Demo)]
    pub(crate) shape: Shape,
    /// Format of the log lines on stderr.
    #[arg(long, value_enum, default_value_t = cutover_cli::LogFormat::Text)]
    pub(crate) log_format: cutover_cli::LogFormat,
}

/// The API shape the service answers with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Shape {
    /// The MCP Hub routes plus what the real service never had: `/api/stats` and a
    /// Prometheus `/metrics`.
    Demo,
    /// Only what MCP Hub 4.3.0 serves.
    McpHub,
}

/// A state the service can be told to stay in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum StuckState {
    /// Listening, `status: "ok"`, never ready.
    Starting,
    /// Listening, `status: "ok"`, `state: "error"`.
    Error,
}

fn parse_fraction(s: &str) -> Result<f64, String> {
    let v: f64 = s
        .trim()
        .parse()
        .map_err(|_| format!("`{s}` is not a number; use a fraction like 0.2"))?;
    if (0.0..=1.0).contains(&v) {
        Ok(v)
    } else {
        Err(format!("`{s}` is outside 0..1; use a fraction like 0.2"))
    }
}

/// Parses sizes like `64KiB`, `1MiB`, `10KB`, `512` (bytes).
pub(crate) fn parse_bytes(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let split = t
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: f64 = num
        .parse()
        .map_err(|_| format!("`{s}` is not a size; use e.g. 64KiB, 1MiB or 512"))?;
    let mult: f64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1.0,
        "kb" | "k" => 1e3,
        "kib" => 1024.0,
        "mb" | "m" => 1e6,
        "mib" => 1024.0 * 1024.0,
        "gb" | "g" => 1e9,
        "gib" => 1024.0 * 1024.0 * 1024.0,
        other => {
            return Err(format!(
                "unknown size unit `{other}` in `{s}`; use B, KB, KiB, MB, MiB, GB or GiB"
            ));
        }
    };
    Ok((n * mult) as u64)
}

/// Writes `contents` to `path` atomically ([`host_util::fs::write_atomic`]).
pub(crate) fn write_atomically(path: &Path, contents: &str) -> std::io::Result<()> {
    host_util::fs::write_atomic(path, contents.as_bytes(), 0o644)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse() {
        assert_eq!(parse_bytes("64KiB"), Ok(65536));
        assert_eq!(parse_bytes("1MiB"), Ok(1 << 20));
        assert_eq!(parse_bytes("10KB"), Ok(10_000));
        assert_eq!(parse_bytes("512"), Ok(512));
        assert!(parse_bytes("12 parsecs").is_err());
    }

    #[test]
    fn fractions_are_bounded() {
        assert_eq!(parse_fraction("0.2"), Ok(0.2));
        assert!(parse_fraction("1.5").is_err());
        assert!(parse_fraction("x").is_err());
    }
}
