//! Pre-flight checks: the gate a deploy trusts before it touches anything.
//!
//! The replaced pre-flight script aborted after its first check on every run, treated a missing
//! runtime as a crash and counted warnings as passes. This crate runs every check, concurrently,
//! each bounded by a timeout, and reports each one honestly: `pass`, `warn`, `fail` or `skip`,
//! with the measured value in the message and a remedy for anything that is not a pass.
//!
//! # Parts
//! - [`Check`]: a stable kebab-case id, a kind, a description, a timeout and `run` returning an
//!   [`Outcome`] (status, one-line message, remedy, structured data).
//! - [`Runner`]: runs checks concurrently (one thread each; builds and test suites one at a time
//!   alongside the rest), each with its timeout (default 10 s, command/build 30 min). A check that
//!   panics or times out is a `fail` saying so, never a crash of the run. An [`IgnoreList`]
//!   (`--ignore ID,ID` or `all`, as kubeadm does) turns those failures into warnings and says so.
//!   The result is a [`Report`]: JSON via serde (`{status, duration_ms, checks: [...]}`), a table
//!   via [`Report::render_table`].
//! - [`checks`]: the built-in checks: `git-clean`, `command`, `build`, `artifact`,
//!   `files-exist`, `secrets` (through `secret-refs`, values never shown), `disk-free`,
//!   `memory`, `runtime-version`, `port-free` (naming the holding process), `dir-writable`,
//!   `file-mode`, `not-tracked`, `tls-cert` (file or live `host:port`), `cpu-count`,
//!   `open-files-limit`, `inodes-free`.
//! - [`PreflightConfig`]: the `[preflight]` table of cutover.toml (its serde types live here), and
//!   [`DefaultSet`] for a run without one; [`CATALOG`] documents every kind's keys and defaults.
//!
//! # Example
//! ```
//! use preflight_checks::{BuildContext, IgnoreList, PreflightConfig, Runner, RunStatus};
//!
//! let dir = tempfile::tempdir()?;
//! std::fs::write(dir.path().join("app.env"), "KEY=value\n")?;
//! let config: PreflightConfig = toml::from_str(r#"
//!     ignore = ["memory"]
//!
//!     [[check]]
//!     kind = "file-mode"
//!     id = "env-file"
//!     path = "app.env"
//!     max_mode = "0777"
//!
//!     [[check]]
//!     kind = "disk-free"
//!     warn_below = "0%"
//!     fail_below = "1MiB"
//! "#)?;
//! let ctx = BuildContext { base_dir: dir.path().to_path_buf(), ..Default::default() };
//! let report = Runner::new()
//!     .with_checks(config.build(&ctx)?)
//!     .with_ignore(config.ignore_list().union(IgnoreList::parse("env-file")))
//!     .run();
//! assert_eq!(report.status, RunStatus::Ok, "{}", report.render_table(Default::default()));
//! let json = serde_json::to_value(&report)?;
//! assert_eq!(json["checks"][0]["id"], "env-file");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod catalog;
mod check;
pub mod checks;
mod config;
mod error;
mod exec;
mod outcome;
mod render;
mod runner;
pub mod units;

pub use catalog::{CATALOG, COMMON_KEYS, KeyDoc, KindDoc, kind_doc};
pub use check::{Check, CheckContext, DEFAULT_COMMAND_TIMEOUT, DEFAULT_TIMEOUT};
pub use config::{
    ArtifactSpec, BuildContext, CheckSpec, CommandSpec, CountSpec, DefaultSet, DirWritableSpec,
    ExposureSpec, FileModeSpec, FilesExistSpec, GitCleanSpec, MemorySpec, NotTrackedSpec,
    PortFreeSpec, PreflightConfig, RuntimeVersionSpec, SecretsSpec, SpaceSpec, TlsCertSpec,
    in_git_work_tree,
};
pub use error::PreflightError;
pub use outcome::{CheckResult, CheckStatus, Outcome};
pub use render::TableStyle;
pub use runner::{IgnoreList, Report, RunStatus, Runner};

/// The closest candidate to `word` when it is close enough to be a likely typo.
pub(crate) fn suggest<'a>(
    word: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<&'a str> {
    candidates
        .into_iter()
        .map(|c| (strsim::jaro_winkler(word, c), c))
        .filter(|(score, _)| *score > 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, c)| c)
}
