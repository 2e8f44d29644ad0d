//! `cutover-preflight`: runs the pre-flight checks of cutover.toml's `[preflight]` table (or a
//! default set for the current directory and the demo service when there is none) and reports
//! them as a table or, with `--json`, one JSON document `{status, checks: [...]}`.
//!
//! Exit codes: 0 every check passed (or skipped), 1 warnings only, 2 a check failed, 64 usage
//! error (an unknown id in `--only`/`--ignore`), 78 invalid configuration.

// A binary: what it prints is its output. Libraries never print (the workspace denies it).
#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::collections::BTreeMap;
use std::path::Path;
use std::process::ExitCode;

use clap::Parser;
use cutover_cli::{CommonArgs, EXIT_OK, Failure, Manifest, Status};
use preflight_checks::{
    BuildContext, CATALOG, COMMON_KEYS, DefaultSet, IgnoreList, KeyDoc, PreflightConfig,
    PreflightError, RunStatus, Runner, TableStyle, in_git_work_tree,
};

/// The address the demo service binds by default, checked when no manifest names a port.
const DEMO_ADDR: &str = "127.0.0.1:7000";

/// Runs cutover's pre-flight checks and reports pass / warn / fail / skip for each.
///
/// Checks come from `[[preflight.check]]` in cutover.toml; without any, a default set runs
/// (git-clean in a git work tree, disk-free, inodes-free, memory, cpu-count, open-files-limit,
/// dir-writable on the manifest's directory, port-free on the service's port, secrets when
/// `[service].secrets` declares some).
///
/// Exit codes: 0 all passed, 1 warnings only, 2 a check failed, 64 usage error, 78 invalid
/// configuration.
#[derive(Debug, Parser)]
#[command(name = "cutover-preflight", version, about, long_about)]
struct Cli {
    #[command(flatten)]
    common: CommonArgs,

    /// Ids whose failures become warnings (comma-separated), or `all`; added to
    /// `[preflight].ignore`.
    #[arg(long, value_name = "IDS", value_delimiter = ',')]
    ignore: Vec<String>,

    /// Run only the checks with these ids (comma-separated).
    #[arg(long, value_name = "IDS", value_delimiter = ',')]
    only: Vec<String>,

    /// List every check kind with its keys and defaults, then exit.
    #[arg(long)]
    list: bool,
}

fn main() -> ExitCode {
    cutover_cli::exit(run())
}

fn run() -> Result<i32, Failure> {
    let cli: Cli = cutover_cli::parse()?;
    cli.common.init_logging();
    if cli.list {
        return Ok(list(cli.common.json));
    }
    let manifest = cli.common.manifest()?;
    let (config, ctx) = load(manifest.as_ref())?;
    let checks = config
        .build(&ctx)
        .map_err(|e| config_error(manifest.as_ref(), &e))?;
    let runner = Runner::new()
        .with_checks(checks)
        .with_ignore(config.ignore_list());
    runner
        .validate_ignore("[preflight].ignore")
        .map_err(|e| config_error(manifest.as_ref(), &e))?;
    let flag_ignore = IgnoreList::from_ids(&cli.ignore);
    let runner = runner.with_ignore(flag_ignore.clone());
    runner.validate_ignore("--ignore").map_err(Failure::usage)?;
    let mut runner = runner.with_ignore(config.ignore_list().union(flag_ignore));
    if !cli.only.is_empty() {
        runner = runner.only(&cli.only).map_err(Failure::usage)?;
    }

    let report = runner.run();
    if cli.common.json {
        cutover_cli::print_json(&report)
            .map_err(|e| Failure::fail(format!("cannot write the report: {e}")))?;
    } else {
        cutover_cli::out!(
            "{}",
            report.render_table(TableStyle {
                colours: cutover_cli::stdout_colours(),
                durations: true,
            })
        );
    }
    let status = match report.status {
        RunStatus::Ok => Status::Ok,
        RunStatus::Warn => Status::Warn,
        RunStatus::Fail => Status::Fail,
    };
    Ok(status.exit_code())
}

/// The configuration to run and what building it needs.
fn load(manifest: Option<&Manifest>) -> Result<(PreflightConfig, BuildContext), Failure> {
    let Some(manifest) = manifest else {
        let config = DefaultSet {
            git: in_git_work_tree(Path::new(".")),
            addr: Some(DEMO_ADDR.to_owned()),
            secrets: false,
        }
        .config();
        return Ok((config, BuildContext::default()));
    };
    let config: Option<PreflightConfig> = manifest.table("preflight")?;
    let secrets: BTreeMap<String, String> = manifest.table("service.secrets")?.unwrap_or_default();
    let port: Option<u16> = manifest.table("service.port")?;
    let ctx = BuildContext {
        base_dir: manifest.dir(),
        secrets,
        ..BuildContext::default()
    };
    let mut config = config.unwrap_or_default();
    if config.check.is_empty() {
        let defaults = DefaultSet {
            git: in_git_work_tree(&ctx.base_dir),
            addr: Some(port.map_or_else(|| DEMO_ADDR.to_owned(), |p| format!("127.0.0.1:{p}"))),
            secrets: !ctx.secrets.is_empty(),
        };
        config.check = defaults.config().check;
    }
    Ok((config, ctx))
}

/// Reports an invalid `[preflight]` table with the manifest's path and, where it can be found,
/// the line of the offending entry (exit 78).
fn config_error(manifest: Option<&Manifest>, err: &PreflightError) -> Failure {
    let location = manifest.map(|m| {
        let line = match err {
            PreflightError::InvalidCheck { index, key, .. } => {
                entry_line(m.path(), *index, Some(key))
            }
            PreflightError::DuplicateId { index, .. } => entry_line(m.path(), *index, Some("id")),
            PreflightError::UnknownId { .. } => key_line(m.path(), "ignore"),
            _ => None,
        };
        match line {
            Some((line, column)) => format!("{}:{line}:{column}: ", m.path().display()),
            None => format!("{}: ", m.path().display()),
        }
    });
    tracing::error!(%err, "invalid configuration");
    Failure::config(format!("{}{err}", location.unwrap_or_default()))
}

/// 1-based line and column of the `index`-th `[[preflight.check]]` entry, or of `key` inside it.
fn entry_line(path: &Path, index: usize, key: Option<&str>) -> Option<(usize, usize)> {
    let text = std::fs::read_to_string(path).ok()?;
    let lines: Vec<&str> = text.lines().collect();
    let headers: Vec<usize> = lines
        .iter()
        .enumerate()
        .filter(|(_, l)| l.trim().replace(' ', "") == "[[preflight.check]]")
        .map(|(i, _)| i)
        .collect();
    let start = *headers.get(index)?;
    let end = lines
        .iter()
        .enumerate()
        .skip(start + 1)
        .find(|(_, l)| l.trim_start().starts_with('['))
        .map_or(lines.len(), |(i, _)| i);
    if let Some(key) = key {
        for (i, line) in lines.iter().enumerate().take(end).skip(start + 1) {
            let trimmed = line.trim_start();
            if trimmed
                .strip_prefix(key)
                .is_some_and(|rest| rest.trim_start().starts_with('='))
            {
                return Some((i + 1, line.len() - trimmed.len() + 1));
            }
        }
    }
    Some((start + 1, 1))
}

/// 1-based line and column of `key =` inside `[preflight]`.
fn key_line(path: &Path, key: &str) -> Option<(usize, usize)> {
    let text = std::fs::read_to_string(path).ok()?;
    let mut inside = false;
    for (i, line) in text.lines().enumerate() {
        let trimmed = line.trim();
        if trimmed.starts_with('[') {
            inside = trimmed.replace(' ', "") == "[preflight]";
            continue;
        }
        if inside
            && trimmed
                .strip_prefix(key)
                .is_some_and(|rest| rest.trim_start().starts_with('='))
        {
            return Some((i + 1, line.len() - line.trim_start().len() + 1));
        }
    }
    None
}

fn list(json: bool) -> i32 {
    if json {
        let doc = serde_json::json!({
            "status": "ok",
            "common_keys": COMMON_KEYS,
            "kinds": CATALOG,
        });
        return match cutover_cli::print_json(&doc) {
            Ok(()) => EXIT_OK,
            Err(_) => cutover_cli::EXIT_FAIL,
        };
    }
    cutover_cli::out!("{}", render_list());
    EXIT_OK
}

fn render_keys(out: &mut String, keys: &[KeyDoc]) {
    use std::fmt::Write;
    for k in keys {
        let _ = writeln!(
            out,
            "    {:<12} {:<20} default: {}\n    {:<12} {}",
            k.key, k.ty, k.default, "", k.doc
        );
    }
}

fn render_list() -> String {
    use std::fmt::Write;
    let mut out = String::new();
    out.push_str("Check kinds for [[preflight.check]] (kind = \"...\"). Relative paths resolve against the manifest's directory.\n\n");
    out.push_str("Keys every kind accepts:\n");
    render_keys(&mut out, COMMON_KEYS);
    for kind in CATALOG {
        let _ = writeln!(out, "\n{}\n  {}", kind.kind, kind.summary);
        if kind.keys.is_empty() {
            out.push_str("    (no keys of its own)\n");
        }
        render_keys(&mut out, kind.keys);
    }
    out.push_str(
        "\n[preflight].ignore = [\"id\", ...] (or --ignore ID,ID / all) turns those failures into warnings.\n",
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entry_lines_are_found() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cutover.toml");
        std::fs::write(
            &path,
            "[preflight]\nignore = [\"x\"]\n\n[[preflight.check]]\nkind = \"memory\"\n\n[[preflight.check]]\nkind = \"port-free\"\n  addr = \"nope\"\n",
        )
        .unwrap();
        assert_eq!(entry_line(&path, 1, Some("addr")), Some((9, 3)));
        assert_eq!(entry_line(&path, 0, Some("addr")), Some((4, 1)));
        assert_eq!(entry_line(&path, 2, None), None);
        assert_eq!(key_line(&path, "ignore"), Some((2, 1)));
    }
}
