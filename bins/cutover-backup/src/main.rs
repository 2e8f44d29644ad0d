//! `cutover-backup`: create, verify, list, restore and prune cutover backups.
//!
//! Reads `[backup]` from cutover.toml (or `--manifest PATH`) for defaults; every value can also
//! be given by flags. When the manifest describes a deployment (it has `[layout]`), the
//! defaults are the pipeline's own: `dest` is `[backup] dest`, else `<root>/backups`, and the
//! sources are `[backup] paths`, else `<root>/shared` (live-deployment holds the rule, so
//! `cutover-backup list` shows exactly the backups a deploy made). Without a deployment, `dest`
//! defaults to `backups` beside the manifest (or in the current directory). `--json` prints one JSON document with a top-level `status`. Exit codes:
//! 0 ok, 2 failed (a corrupt archive or a refused entry included), 3 could not evaluate,
//! 64 usage, 78 invalid configuration.

// A binary: what it prints is its output. Libraries never print (the workspace denies it).
#![allow(clippy::print_stdout, clippy::print_stderr)]

mod progress;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use backup_archive::{
    BackupConfig, BackupError, Compression, CreateOptions, PruneOptions, RestoreOptions,
    RetentionPolicy, VerifyOptions, escape_name, escape_path,
};
use clap::{Parser, Subcommand};
use cutover_cli::{CommonArgs, EXIT_FAIL, EXIT_UNKNOWN, Failure, Status};
use serde_json::json;

/// Checksummed, atomic backups: create, verify, list, restore, prune.
#[derive(Debug, Parser)]
#[command(name = "cutover-backup", version, about)]
struct Cli {
    #[command(flatten)]
    common: CommonArgs,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Archive sources into DEST/<id>.tar.gz (or <id>.tar.zst with zstd) with a manifest and a
    /// sidecar <id>.json.
    Create(CreateArgs),
    /// Re-read an archive and check every entry and the sidecar; names the first bad entry.
    Verify {
        /// The archive (.tar.gz or .tar.zst: the compression is read from the file's first
        /// bytes).
        archive: PathBuf,
        /// Do not record the outcome in the sidecar.
        #[arg(long)]
        no_record: bool,
    },
    /// List the backups in a directory, oldest first by recorded creation time.
    List {
        /// The backup directory (default: [backup].dest, else <root>/backups of the manifest's
        /// deployment, else ./backups).
        dir: Option<PathBuf>,
    },
    /// Restore an archive into a directory via a verified staging directory and an atomic swap.
    Restore {
        /// The archive (.tar.gz or .tar.zst: the compression is read from the file's first
        /// bytes).
        archive: PathBuf,
        /// The directory to replace.
        #[arg(long)]
        target: PathBuf,
        /// Show what would be added, changed and removed; change nothing.
        #[arg(long)]
        dry_run: bool,
        /// Accept an archive whose sidecar is missing (its entries are still checked against
        /// the manifest inside).
        #[arg(long)]
        allow_missing_sidecar: bool,
    },
    /// Remove backups no retention rule keeps (restic semantics); the newest verified backup
    /// is always kept. Also removes leftovers of killed runs (hidden .partial-, .restore- and
    /// .previous- temporaries) whose run has exited and that are older than --leftover-age.
    Prune(PruneArgs),
}

#[derive(Debug, clap::Args)]
struct CreateArgs {
    /// A file or directory to archive (repeatable; default: [backup].paths, else <root>/shared
    /// of the manifest's deployment).
    #[arg(long = "source", value_name = "PATH")]
    sources: Vec<PathBuf>,
    /// The backup directory (default: [backup].dest, else <root>/backups of the manifest's
    /// deployment, else ./backups).
    #[arg(long)]
    dest: Option<PathBuf>,
    /// A glob of paths to leave out (repeatable; added to [backup].exclude).
    #[arg(long, value_name = "GLOB")]
    exclude: Vec<String>,
    /// Only archive files matching a glob (repeatable; added to [backup].include).
    #[arg(long, value_name = "GLOB")]
    include: Vec<String>,
    /// The backup id (default: the UTC creation time).
    #[arg(long)]
    id: Option<String>,
    /// The service name to record.
    #[arg(long)]
    service: Option<String>,
    /// The live release id to record.
    #[arg(long)]
    release: Option<String>,
    /// The source commit to record.
    #[arg(long)]
    commit: Option<String>,
    /// gzip (<id>.tar.gz, readable by `tar -xzf`) or zstd (<id>.tar.zst, faster and smaller,
    /// readable by `tar --zstd -xf`) (default: [backup].compression, gzip).
    #[arg(long, value_name = "gzip|zstd", value_parser = parse_compression)]
    compression: Option<Compression>,
    /// Compression level: gzip 0-9 (default 6), zstd 1-19 (default 3); [backup].level applies
    /// when the compression is [backup].compression.
    #[arg(long)]
    level: Option<u32>,
    /// Compression threads (default: one per CPU).
    #[arg(long, default_value_t = 0)]
    threads: usize,
}

#[derive(Debug, clap::Args)]
struct PruneArgs {
    /// The backup directory (default: [backup].dest, else <root>/backups of the manifest's
    /// deployment, else ./backups).
    dir: Option<PathBuf>,
    /// Keep the N newest backups.
    #[arg(long)]
    keep_last: Option<u32>,
    /// Keep the newest backup of each of the last N days.
    #[arg(long)]
    keep_daily: Option<u32>,
    /// Keep the newest backup of each of the last N ISO weeks.
    #[arg(long)]
    keep_weekly: Option<u32>,
    /// Keep the newest backup of each of the last N months.
    #[arg(long)]
    keep_monthly: Option<u32>,
    /// Show what would be removed; remove nothing.
    #[arg(long)]
    dry_run: bool,
    /// A restore target whose directory is also swept for a killed restore's staging
    /// directories (repeatable).
    #[arg(long = "restore-target", value_name = "DIR")]
    restore_targets: Vec<PathBuf>,
    /// Remove a leftover of a killed run only when it is at least this old (and its run has
    /// exited).
    #[arg(long, value_parser = humantime::parse_duration, default_value = "1h")]
    leftover_age: std::time::Duration,
}

fn parse_compression(s: &str) -> Result<Compression, String> {
    s.parse()
}

fn main() -> ExitCode {
    cutover_cli::exit(run())
}

fn run() -> Result<i32, Failure> {
    let cli: Cli = cutover_cli::parse()?;
    cli.common.init_logging();
    let config = load_config(&cli.common)?;
    Ok(command(&cli, &config))
}

/// The `[backup]` table, the manifest's directory (relative paths resolve against it) and the
/// deployment the manifest describes, if any.
struct Config {
    table: BackupConfig,
    base: PathBuf,
    deployment: Option<live_deployment::Deployment>,
}

fn load_config(common: &CommonArgs) -> Result<Config, Failure> {
    let manifest = common.manifest()?;
    match manifest {
        None => Ok(Config {
            table: BackupConfig::default(),
            base: PathBuf::from("."),
            deployment: None,
        }),
        Some(m) => {
            let table = m.table::<BackupConfig>("backup")?.unwrap_or_default();
            let deployment = live_deployment::Deployment::of(&m)
                .map_err(|e| Failure::line(e.exit_code(), format!("cutover-backup: {e}")))?;
            Ok(Config {
                table,
                base: m.dir(),
                deployment,
            })
        }
    }
}

impl Config {
    /// The backup directory: `[backup] dest`, else the deployment's `<root>/backups`, else
    /// `backups` beside the manifest.
    fn dest(&self) -> PathBuf {
        match &self.deployment {
            Some(d) => d.backup_dest(self.table.dest.as_deref()),
            None => self.resolve(&self.table.dest_or(Path::new("backups"))),
        }
    }

    /// The default sources: `[backup] paths`, else the deployment's `<root>/shared`.
    fn sources(&self) -> Vec<PathBuf> {
        match &self.deployment {
            Some(d) => d.backup_sources(&self.table.paths),
            None => self.table.paths.iter().map(|p| self.resolve(p)).collect(),
        }
    }

    fn resolve(&self, p: &Path) -> PathBuf {
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            self.base.join(p)
        }
    }
}

/// Runs the command; its exit code (failures are reported where they happen, in JSON with
/// `--json`).
fn command(cli: &Cli, config: &Config) -> i32 {
    let json = cli.common.json;
    let bar = progress::Bar::for_terminal();
    match &cli.command {
        Command::Create(a) => cmd_create(a, config, &bar, json),
        Command::Verify { archive, no_record } => {
            let opts = VerifyOptions {
                record: !no_record,
                limits: config.table.limits(),
            };
            match backup_archive::verify(archive, &opts, &bar) {
                Ok(r) => {
                    let status = if r.ok { Status::Ok } else { Status::Fail };
                    if json {
                        emit(json!({"status": status, "command": "verify", "report": r}));
                    } else if let Some(p) = &r.problem {
                        // The problem's Display escapes the names it quotes.
                        cutover_cli::outln!("FAIL {}: {p}", escape_path(archive));
                    } else {
                        cutover_cli::outln!(
                            "OK {}: {} entries, {} bytes, sha256 {}",
                            escape_path(archive),
                            r.entries,
                            r.content_bytes,
                            r.archive_sha256.as_deref().unwrap_or("-")
                        );
                    }
                    status.exit_code()
                }
                Err(e) => fail(json, "verify", &e, EXIT_UNKNOWN),
            }
        }
        Command::List { dir } => {
            let dir = dir.clone().unwrap_or_else(|| config.dest());
            match backup_archive::list(&dir) {
                Ok(l) => {
                    if json {
                        emit(
                            json!({"status": Status::Ok, "command": "list", "dir": dir, "backups": l.backups, "incomplete": l.incomplete}),
                        );
                    } else {
                        print_listing(&l);
                    }
                    0
                }
                Err(e) => fail(json, "list", &e, EXIT_UNKNOWN),
            }
        }
        Command::Restore {
            archive,
            target,
            dry_run,
            allow_missing_sidecar,
        } => {
            let mut opts = RestoreOptions::new(target);
            opts.dry_run = *dry_run;
            opts.require_sidecar = !allow_missing_sidecar;
            opts.limits = config.table.limits();
            match backup_archive::restore(archive, &opts, &bar) {
                Ok(r) => {
                    if json {
                        emit(json!({"status": Status::Ok, "command": "restore", "report": r}));
                    } else {
                        let verb = if r.dry_run {
                            "would restore"
                        } else {
                            "restored"
                        };
                        cutover_cli::outln!(
                            "{verb} {} entries ({} bytes) into {}",
                            r.entries,
                            r.content_bytes,
                            escape_path(&r.target)
                        );
                        for (label, list) in [
                            ("+", &r.diff.added),
                            ("~", &r.diff.changed),
                            ("-", &r.diff.removed),
                        ] {
                            for p in list {
                                cutover_cli::outln!("  {label} {}", escape_name(p));
                            }
                        }
                    }
                    0
                }
                Err(e) => fail(json, "restore", &e, EXIT_FAIL),
            }
        }
        Command::Prune(a) => cmd_prune(a, config, json),
    }
}

fn cmd_create(a: &CreateArgs, config: &Config, bar: &progress::Bar, json: bool) -> i32 {
    let t = &config.table;
    let sources: Vec<PathBuf> = if a.sources.is_empty() {
        config.sources()
    } else {
        a.sources.clone()
    };
    if sources.is_empty() {
        return usage(
            json,
            "create",
            "no sources: pass --source PATH or set [backup].paths (or [service] and [layout], for <root>/shared) in cutover.toml",
        );
    }
    let dest = a.dest.clone().unwrap_or_else(|| config.dest());
    let mut opts = CreateOptions::new(sources, dest);
    opts.exclude = t.exclude.iter().chain(&a.exclude).cloned().collect();
    opts.include = t.include.iter().chain(&a.include).cloned().collect();
    opts.id = a.id.clone();
    opts.service = a.service.clone();
    opts.release = a.release.clone();
    opts.commit = a.commit.clone();
    // A level in [backup] belongs to [backup]'s compression: another compression given by flag
    // starts from its own default.
    let compression = a.compression.unwrap_or(t.compression);
    let level = a.level.or(t.level.filter(|_| compression == t.compression));
    opts.compression = compression;
    opts.level = match compression.resolve_level(level) {
        Ok(level) => Some(level),
        Err(e) => return usage(json, "create", &format!("--level: {e}")),
    };
    opts.threads = a.threads;
    match backup_archive::create(&opts, bar) {
        Ok(r) => {
            if json {
                emit(json!({"status": Status::Ok, "command": "create", "report": r}));
            } else {
                cutover_cli::outln!(
                    "created {} ({} entries, {} bytes -> {} bytes, sha256 {})",
                    escape_path(&r.archive),
                    r.summary.entry_count,
                    r.summary.content_bytes,
                    r.summary.archive_bytes,
                    r.summary.archive_sha256
                );
                for w in &r.warnings {
                    eprintln!("warning: {}", escape_name(w));
                }
            }
            0
        }
        Err(e) => fail(json, "create", &e, EXIT_FAIL),
    }
}

fn cmd_prune(a: &PruneArgs, config: &Config, json: bool) -> i32 {
    let t = &config.table;
    let flags_given = a.keep_last.is_some()
        || a.keep_daily.is_some()
        || a.keep_weekly.is_some()
        || a.keep_monthly.is_some();
    let policy = if flags_given {
        RetentionPolicy {
            keep_last: a.keep_last.unwrap_or(0),
            keep_daily: a.keep_daily.unwrap_or(0),
            keep_weekly: a.keep_weekly.unwrap_or(0),
            keep_monthly: a.keep_monthly.unwrap_or(0),
        }
    } else {
        t.retention()
    };
    if policy.is_empty() {
        return usage(
            json,
            "prune",
            "no retention rule: pass --keep-last N (or --keep-daily/weekly/monthly) or set them in [backup]",
        );
    }
    let dir = a.dir.clone().unwrap_or_else(|| config.dest());
    let opts = PruneOptions {
        dry_run: a.dry_run,
        leftover_age: a.leftover_age,
        leftover_dirs: a
            .restore_targets
            .iter()
            .map(|t| match t.parent() {
                Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
                _ => PathBuf::from("."),
            })
            .collect(),
    };
    match backup_archive::prune_with(&dir, &policy, &opts) {
        Ok(r) => {
            if json {
                emit(json!({"status": Status::Ok, "command": "prune", "report": r}));
            } else {
                for d in &r.decisions {
                    let verdict = if d.keep {
                        "keep  "
                    } else if r.dry_run {
                        "would remove"
                    } else {
                        "remove"
                    };
                    cutover_cli::outln!(
                        "{verdict} {} {} {}",
                        escape_name(&d.id),
                        d.created,
                        escape_name(&d.reasons.join(","))
                    );
                }
                for l in &r.leftovers {
                    let verdict = match (l.remove, r.dry_run) {
                        (false, _) => "keep  ",
                        (true, true) => "would remove",
                        (true, false) => "remove",
                    };
                    cutover_cli::outln!(
                        "{verdict} leftover {} ({})",
                        escape_path(&l.path),
                        escape_name(&l.reason)
                    );
                }
            }
            0
        }
        Err(e) => fail(json, "prune", &e, EXIT_FAIL),
    }
}

fn print_listing(l: &backup_archive::Listing) {
    cutover_cli::outln!(
        "{:<28} {:<25} {:>12} {:>8} {:<6} {:<16} VERIFY",
        "ID",
        "CREATED",
        "BYTES",
        "ENTRIES",
        "FORMAT",
        "RELEASE"
    );
    for b in &l.backups {
        let verify = match &b.last_verify {
            None => "never".to_owned(),
            Some(v) if v.ok => format!("ok {}", v.at),
            Some(v) => format!("FAILED {}", v.at),
        };
        // Every name comes from a file on disk: escaped, so that none can forge a line.
        cutover_cli::outln!(
            "{:<28} {:<25} {:>12} {:>8} {:<6} {:<16} {verify}",
            escape_name(&b.id),
            b.created.to_string(),
            b.archive_bytes,
            b.entry_count,
            b.compression.map_or("?", Compression::name),
            escape_name(b.release.as_deref().unwrap_or("-"))
        );
    }
    for i in &l.incomplete {
        cutover_cli::outln!(
            "incomplete: {} ({})",
            escape_path(&i.path),
            escape_name(&i.reason)
        );
    }
}

fn emit(value: serde_json::Value) {
    if let Err(e) = cutover_cli::print_json(&value) {
        eprintln!("error: cannot write to stdout: {e}");
    }
}

/// Reports an error; integrity failures (corruption, refused entries) always exit 2.
fn fail(json: bool, command: &str, e: &BackupError, operational_code: i32) -> i32 {
    let code = if e.is_integrity() {
        EXIT_FAIL
    } else {
        operational_code
    };
    let status = if code == EXIT_FAIL {
        Status::Fail
    } else {
        Status::Unknown
    };
    let problem = backup_archive::Problem::from_error(e);
    if json {
        emit(
            json!({"status": status, "command": command, "error": e.to_string(), "problem": problem}),
        );
    } else {
        // BackupError's Display escapes the names and paths it quotes.
        eprintln!("error: {e}");
    }
    code
}

fn usage(json: bool, command: &str, message: &str) -> i32 {
    if json {
        emit(json!({"status": Status::Unknown, "command": command, "error": message}));
    } else {
        eprintln!("error: {message}");
    }
    cutover_cli::EXIT_USAGE
}
