//! `cargo xtask bench [--quick]`: measures DESIGN.md's performance goals side by side in one
//! run and writes docs/benchmarks.md.
//!
//! These machines are shared and noisy, so every goal is a ratio against a reference taken in
//! the same run (interleaved where the runs are short), reported as a median with its spread.
//! Each measurement calls built binaries and scripts as whole processes; nothing here links
//! the libraries, so xtask stays dependency-free. A measurement that cannot run becomes a row
//! that says why, never a number.

mod streams;

use std::fmt::Write as _;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// How much to measure.
#[derive(Debug, Clone, Copy)]
struct Plan {
    quick: bool,
    backup_mb: u32,
    backup_runs: u32,
    perf_rounds: u32,
    perf_seconds: u32,
    perf_connections: u32,
    perf_rss_seconds: u32,
    process_runs: u32,
    monitor_seconds: u64,
}

impl Plan {
    fn new(quick: bool) -> Plan {
        if quick {
            Plan {
                quick,
                backup_mb: 32,
                backup_runs: 3,
                perf_rounds: 3,
                perf_seconds: 3,
                perf_connections: 16,
                perf_rss_seconds: 0,
                process_runs: 10,
                monitor_seconds: 30,
            }
        } else {
            Plan {
                quick,
                backup_mb: 128,
                backup_runs: 5,
                perf_rounds: 5,
                perf_seconds: 5,
                perf_connections: 16,
                perf_rss_seconds: 30,
                process_runs: 20,
                monitor_seconds: 60,
            }
        }
    }
}

/// A measurement's outcome against its goal.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Verdict {
    Pass,
    Fail,
}

/// One row of the table.
#[derive(Debug, Clone)]
struct Row {
    goal: String,
    measured: String,
    runs: String,
    spread: String,
    verdict: Verdict,
}

/// Runs the benchmarks and writes docs/benchmarks.md.
pub(crate) fn bench(root: &Path, args: &[String]) -> Result<(), String> {
    let mut quick = false;
    let mut only: Option<String> = None;
    let mut args = args.iter();
    while let Some(a) = args.next() {
        match a.as_str() {
            "--quick" => quick = true,
            // One subject, its table printed; docs/benchmarks.md is left as it is.
            "--only" => only = args.next().cloned(),
            other => {
                return Err(format!(
                    "unknown bench option `{other}` (try --quick, --only SUBJECT)"
                ));
            }
        }
    }
    let plan = Plan::new(quick);
    let started = Instant::now();
    let facts_start = Facts::gather();
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    // The streams subject runs the e2e scenario on the debug build; the others need release.
    if only.as_deref() != Some("streams") {
        crate::run(
            root,
            &cargo,
            &[
                "build",
                "--release",
                "-p",
                "cutover-backup",
                "-p",
                "cutover-perf",
                "-p",
                "cutover-demo-hub",
                "-p",
                "cutover-probe",
                "-p",
                "cutover-preflight",
                "-p",
                "cutover-monitor",
                "-p",
                "cutover-deploy",
            ],
            "release build",
        )?;
    }
    // bench.sh and cargo honour CARGO_TARGET_DIR; so does this.
    let release = std::env::var_os("CARGO_TARGET_DIR")
        .map_or_else(|| root.join("target"), |d| root.join(d))
        .join("release");
    let mut rows = Vec::new();
    let mut details = String::new();

    let steps: [(&str, StepFn); 7] = [
        ("backup", backup),
        ("load generator", perf),
        ("probe", probe),
        ("pre-flight", preflight),
        ("monitor", monitor),
        ("deploy", deploy),
        ("streams", streams::streams),
    ];
    for (name, step) in steps {
        if only.as_deref().is_some_and(|o| o != name) {
            continue;
        }
        eprintln!("xtask bench: {name}…");
        let t = Instant::now();
        match step(root, &release, &plan, &mut details) {
            Ok(mut r) => rows.append(&mut r),
            Err(e) => {
                eprintln!("xtask bench: {name} failed: {e}");
                rows.push(Row {
                    goal: name.to_owned(),
                    measured: format!("error: {e}"),
                    runs: "-".to_owned(),
                    spread: "-".to_owned(),
                    verdict: Verdict::Fail,
                });
            }
        }
        eprintln!(
            "xtask bench: {name} took {:.0} s",
            t.elapsed().as_secs_f64()
        );
    }
    if only.is_some() {
        println!("{}", render_table(&rows));
        println!("{details}");
        return Ok(());
    }
    let facts_end = Facts::gather();
    let doc = render(
        &plan,
        &facts_start,
        &facts_end,
        &rows,
        &details,
        started.elapsed(),
    );
    let out = root.join("docs/benchmarks.md");
    std::fs::write(&out, doc).map_err(|e| format!("cannot write {}: {e}", out.display()))?;
    println!("{}", render_table(&rows));
    println!("wrote {}", out.display());
    Ok(())
}

type StepFn = fn(&Path, &Path, &Plan, &mut String) -> Result<Vec<Row>, String>;

// ---------------------------------------------------------------------------------------------
// Machine facts.

#[derive(Debug)]
struct Facts {
    date: String,
    nproc: usize,
    load: String,
    cpu: String,
    kernel: String,
}

impl Facts {
    fn gather() -> Facts {
        let load = std::fs::read_to_string("/proc/loadavg")
            .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
            .unwrap_or_else(|_| "unknown".to_owned());
        let cpu = std::fs::read_to_string("/proc/cpuinfo")
            .ok()
            .and_then(|c| {
                c.lines()
                    .find(|l| l.starts_with("model name"))
                    .and_then(|l| l.split_once(':'))
                    .map(|(_, v)| v.trim().to_owned())
            })
            .unwrap_or_else(|| "unknown".to_owned());
        Facts {
            date: output("date", &["-u", "+%Y-%m-%d %H:%M UTC"])
                .unwrap_or_else(|_| "unknown".to_owned()),
            nproc: std::thread::available_parallelism().map_or(1, |n| n.get()),
            load,
            cpu,
            kernel: output("uname", &["-sr"]).unwrap_or_else(|_| "unknown".to_owned()),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Steps.

/// `cutover-backup bench --json`: create (gzip, zstd) against `tar -cf - | pigz -pN -6` and
/// restore + verify against `pigz -dc | tar -xf -`, side by side on the same tree, rotating
/// which tool goes first; single-threaded `tar -czf`/`tar -xzf` and `tar | zstd -TN -3` are
/// context rows of the details table.
fn backup(
    _root: &Path,
    release: &Path,
    plan: &Plan,
    details: &mut String,
) -> Result<Vec<Row>, String> {
    let size = plan.backup_mb.to_string();
    let runs = plan.backup_runs.to_string();
    let out = Command::new(release.join("cutover-backup"))
        .args(["bench", "--size-mb", &size, "--runs", &runs, "--json"])
        .stderr(Stdio::inherit())
        .output()
        .map_err(|e| format!("cannot run cutover-backup bench: {e}"))?;
    let text = String::from_utf8_lossy(&out.stdout);
    let doc =
        json::parse(&text).map_err(|e| format!("cutover-backup bench printed no JSON: {e}"))?;
    if let Some(e) = doc.pointer("/error").and_then(json::Value::as_str) {
        return Err(format!("cutover-backup bench: {e}"));
    }
    let num = |p: &str| doc.pointer(p).and_then(json::Value::as_f64);
    let need = |p: &str| num(p).ok_or_else(|| format!("cutover-backup bench JSON lacks {p}"));
    let list = |p: &str| {
        doc.pointer(p)
            .and_then(json::Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(json::Value::as_f64)
                    .collect::<Vec<f64>>()
            })
            .unwrap_or_default()
    };
    let per_round =
        |a: &[f64], b: &[f64]| -> Vec<f64> { a.iter().zip(b).map(|(x, y)| x / y).collect() };
    let cores = num("/cores").unwrap_or(1.0);
    let pigz = format!("`tar -cf - | pigz -p{cores:.0} -6`");
    // Inside a table cell a pipe must be escaped, even in code.
    let pigz_cell = pigz.replace('|', "\\|");
    let (c_gz, c_zst, c_pigz) = (
        list("/create/gzip/s"),
        list("/create/zstd/s"),
        list("/create/pigz/s"),
    );
    let (r_gz, r_pigz) = (list("/restore/gzip/s"), list("/restore/pigz/s"));
    let (m_gz, m_zst, m_pigz) = (
        need("/create/gzip/median_s")?,
        need("/create/zstd/median_s")?,
        need("/create/pigz/median_s")?,
    );
    let (mr_gz, mr_pigz) = (
        need("/restore/gzip/median_s")?,
        need("/restore/pigz/median_s")?,
    );
    let gzip_ratio = need("/ratios/create_gzip_vs_pigz")?;
    let zstd_speedup = need("/ratios/create_zstd_speedup_vs_pigz")?;
    let size_ratio = need("/ratios/size_gzip_vs_pigz")?;
    let zstd_size = need("/ratios/size_zstd_vs_pigz")?;
    let restore_ratio = need("/ratios/restore_gzip_vs_pigz")?;
    let files = num("/tree/files").unwrap_or(0.0);

    let _ = writeln!(
        details,
        "### Backup\n\n`cutover-backup bench --size-mb {size} --runs {runs} --json`: a generated tree \
         of {files:.0} mixed files ({size} MiB: two thirds text-like, one third random), every tool \
         run on the same tree in each round, the order rotated each round. pigz is the real peer \
         of cutover's parallel gzip ({pigz}, as many threads as CPUs); `tar -czf` (one core) and \
         `tar -cf - | zstd -T{cores:.0} -3` are context. The restores unpack cutover's own archives \
         (pigz and tar read its gzip archive: the same bytes in); cutover's restore also checks \
         every entry against the manifest, verifies the sidecar, fsyncs and swaps atomically.\n\n\
         | | per round (s) | median (s) | archive (bytes) |\n|---|---|---|---|"
    );
    for (label, key) in [
        ("create: cutover-backup gzip", "/create/gzip"),
        ("create: cutover-backup zstd", "/create/zstd"),
        ("create: `tar -cf - \\| pigz -6`", "/create/pigz"),
        ("create: `tar -czf` (context)", "/create/tar_czf"),
        (
            "create: `tar -cf - \\| zstd -3` (context)",
            "/create/zstd_cli",
        ),
        (
            "restore + verify: cutover-backup, gzip archive",
            "/restore/gzip",
        ),
        (
            "restore + verify: cutover-backup, zstd archive",
            "/restore/zstd",
        ),
        ("restore: `pigz -dc \\| tar -xf -`", "/restore/pigz"),
        ("restore: `tar -xzf` (context)", "/restore/tar_xzf"),
    ] {
        let _ = writeln!(
            details,
            "| {label} | {} | {:.2} | {:.0} |",
            join(&list(&format!("{key}/s")), 2),
            num(&format!("{key}/median_s")).unwrap_or(f64::NAN),
            num(&format!("{key}/bytes")).unwrap_or(f64::NAN),
        );
    }
    let _ = writeln!(
        details,
        "\nContext ratios: gzip create {:.2}× `tar -czf`; zstd create {:.2}× the zstd CLI's time, \
         archive {:.3}× its size and {:.3}× pigz's; zstd restore {:.2}× `pigz -dc | tar -xf -`; \
         gzip restore {:.2}× `tar -xzf`.",
        num("/ratios/create_gzip_vs_tar_czf").unwrap_or(f64::NAN),
        num("/ratios/create_zstd_vs_zstd_cli").unwrap_or(f64::NAN),
        num("/ratios/size_zstd_vs_zstd_cli").unwrap_or(f64::NAN),
        zstd_size,
        num("/ratios/restore_zstd_vs_pigz").unwrap_or(f64::NAN),
        num("/ratios/restore_gzip_vs_tar_xzf").unwrap_or(f64::NAN),
    );

    let pct = |r: f64| (r - 1.0) * 100.0;
    let gzip_ok = gzip_ratio <= 1.0;
    let size_ok = (size_ratio - 1.0).abs() <= 0.02;
    let zstd_ok = zstd_speedup >= 5.0;
    let restore_ok = restore_ratio <= 1.0;
    // A FAIL says in words what missed and by how much.
    let because = |ok: bool, why: String| {
        if ok {
            String::new()
        } else {
            format!(" — FAIL: {why}")
        }
    };
    Ok(vec![
        Row {
            goal: format!("backup create (gzip) ≤ 1.0× {pigz_cell} wall time, same tree"),
            measured: format!(
                "{gzip_ratio:.2}× ({m_gz:.2} s vs {m_pigz:.2} s, ratio of medians){}",
                because(
                    gzip_ok,
                    format!(
                        "cutover-backup's gzip create took {:.0} % longer than pigz",
                        pct(gzip_ratio)
                    )
                )
            ),
            runs: runs.clone(),
            spread: spread(&per_round(&c_gz, &c_pigz), 2),
            verdict: pass(gzip_ok),
        },
        Row {
            goal: "gzip archive within 2 % of pigz -6's size".to_owned(),
            measured: format!(
                "{size_ratio:.3}× ({:+.1} %){}",
                pct(size_ratio),
                because(
                    size_ok,
                    format!(
                        "cutover's gzip archive is {:.1} % {} than pigz's",
                        pct(size_ratio).abs(),
                        if size_ratio > 1.0 {
                            "larger"
                        } else {
                            "smaller"
                        }
                    )
                )
            ),
            runs: "1 (deterministic)".to_owned(),
            spread: "-".to_owned(),
            verdict: pass(size_ok),
        },
        Row {
            goal: format!("backup create (zstd) ≥ 5× faster than {pigz_cell}"),
            measured: format!(
                "{zstd_speedup:.1}× faster ({m_zst:.2} s vs {m_pigz:.2} s, ratio of medians; \
                 archive {:+.1} % vs pigz's){}",
                pct(zstd_size),
                because(
                    zstd_ok,
                    format!("zstd create is only {zstd_speedup:.1}× faster than pigz, short of 5×")
                )
            ),
            runs: runs.clone(),
            spread: spread(&per_round(&c_pigz, &c_zst), 1),
            verdict: pass(zstd_ok),
        },
        Row {
            goal: "restore + verify (gzip) ≤ 1.0× `pigz -dc \\| tar -xf -`".to_owned(),
            measured: format!(
                "{restore_ratio:.2}× ({mr_gz:.2} s vs {mr_pigz:.2} s, ratio of medians){}",
                because(
                    restore_ok,
                    format!(
                        "cutover-backup's restore took {:.0} % longer than pigz and tar",
                        pct(restore_ratio)
                    )
                )
            ),
            runs,
            spread: spread(&per_round(&r_gz, &r_pigz), 2),
            verdict: pass(restore_ok),
        },
    ])
}

/// bins/cutover-perf/bench/bench.sh: cutover-perf vs wrk on a private nginx and the demo hub.
fn perf(
    root: &Path,
    _release: &Path,
    plan: &Plan,
    details: &mut String,
) -> Result<Vec<Row>, String> {
    let script = root.join("bins/cutover-perf/bench/bench.sh");
    let args = [
        plan.perf_rounds.to_string(),
        plan.perf_seconds.to_string(),
        plan.perf_connections.to_string(),
        plan.perf_rss_seconds.to_string(),
    ];
    let out = Command::new("bash")
        .arg(&script)
        .args(&args)
        .current_dir(root)
        .output()
        .map_err(|e| format!("cannot run {}: {e}", script.display()))?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() {
        return Err(format!(
            "{} failed ({}): {}",
            script.display(),
            out.status,
            stderr.lines().rev().take(3).collect::<Vec<_>>().join(" / ")
        ));
    }
    let results: Vec<Vec<(String, String)>> = stderr
        .lines()
        .filter_map(|l| l.strip_prefix("RESULT "))
        .map(|l| {
            l.split_whitespace()
                .filter_map(|kv| kv.split_once('='))
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect()
        })
        .collect();
    let get = |r: &[(String, String)], k: &str| {
        r.iter().find(|(key, _)| key == k).map(|(_, v)| v.clone())
    };
    let table = String::from_utf8_lossy(&out.stdout);
    let _ = writeln!(
        details,
        "### Load generator\n\n`bins/cutover-perf/bench/bench.sh {}`: each round runs wrk, then \
         cutover-perf, at the same connection count against the same target (a private nginx \
         serving a 612-byte file, and the demo hub's /api/health, release build).\n\n{}\n",
        args.join(" "),
        table.trim_end()
    );
    let mut rows = Vec::new();
    for r in &results {
        // The peak-RSS line is already in the script's table output above.
        let Some(target) = get(r, "target") else {
            continue;
        };
        let ratio: f64 = get(r, "ratio")
            .and_then(|v| v.parse().ok())
            .ok_or("a RESULT line has no ratio")?;
        let per_round = get(r, "round_ratio_median").unwrap_or_default();
        rows.push(Row {
            goal: format!(
                "load generator ≥ 0.9× wrk's requests/s ({target}, {} connections)",
                get(r, "connections").unwrap_or_default()
            ),
            measured: format!(
                "{ratio:.2}× ({} vs {} req/s; median of per-round ratios {per_round})",
                get(r, "perf_rps").unwrap_or_default(),
                get(r, "wrk_rps").unwrap_or_default()
            ),
            runs: plan.perf_rounds.to_string(),
            spread: round_spread(&table, &target),
            verdict: pass(ratio >= 0.9),
        });
    }
    if rows.is_empty() {
        return Err("bench.sh printed no RESULT lines".to_owned());
    }
    Ok(rows)
}

/// min–max of the per-round ratios in bench.sh's table (`| target | round | wrk | perf | r |`).
fn round_spread(table: &str, target: &str) -> String {
    let ratios: Vec<f64> = table
        .lines()
        .filter_map(|l| {
            let cells: Vec<&str> = l.split('|').map(str::trim).collect();
            (cells.len() >= 6 && cells[1] == target && cells[2].parse::<u32>().is_ok())
                .then(|| cells[5].parse().ok())
                .flatten()
        })
        .collect();
    spread(&ratios, 2)
}

/// One probe vs `curl`, as whole processes, interleaved.
fn probe(
    _root: &Path,
    release: &Path,
    plan: &Plan,
    details: &mut String,
) -> Result<Vec<Row>, String> {
    let hub = Hub::start(release)?;
    let url = format!("http://{}/api/health", hub.addr);
    let which_curl = output("sh", &["-c", "command -v curl"]).map_err(|_| {
        "curl is missing: apt-get install -y --no-install-recommends curl".to_owned()
    })?;
    let mut ours = Vec::new();
    let mut theirs = Vec::new();
    for i in 0..plan.process_runs {
        let mut p = Command::new(release.join("cutover-probe"));
        p.args(["run", "--url", &url]);
        let mut c = Command::new(&which_curl);
        c.args(["-fsS", "-o", "/dev/null", &url]);
        if i % 2 == 0 {
            ours.push(time(&mut p)?);
            theirs.push(time(&mut c)?);
        } else {
            theirs.push(time(&mut c)?);
            ours.push(time(&mut p)?);
        }
    }
    let (mo, mt) = (median(&ours), median(&theirs));
    let ratios: Vec<f64> = ours.iter().zip(&theirs).map(|(a, b)| a / b).collect();
    let ratio = mo / mt;
    let _ = writeln!(
        details,
        "### Probe vs curl\n\n`cutover-probe run --url URL` vs `curl -fsS -o /dev/null URL` \
         against the demo hub's /api/health (release build), {} interleaved pairs, whole \
         processes, wall time.\n\n| | median (ms) | min–max (ms) |\n|---|---|---|\n\
         | cutover-probe | {:.2} | {} |\n| curl | {:.2} | {} |\n",
        plan.process_runs,
        mo * 1000.0,
        spread(&ours.iter().map(|s| s * 1000.0).collect::<Vec<_>>(), 2),
        mt * 1000.0,
        spread(&theirs.iter().map(|s| s * 1000.0).collect::<Vec<_>>(), 2),
    );
    Ok(vec![Row {
        goal: "one probe ≤ 1.5× `curl`'s wall time (whole processes)".to_owned(),
        measured: format!(
            "{ratio:.2}× ({:.1} ms vs {:.1} ms, ratio of medians)",
            mo * 1000.0,
            mt * 1000.0
        ),
        runs: plan.process_runs.to_string(),
        spread: spread(&ratios, 2),
        verdict: pass(ratio <= 1.5),
    }])
}

/// Every local pre-flight check (no command, no build) on a generated repository.
fn preflight(
    _root: &Path,
    release: &Path,
    plan: &Plan,
    details: &mut String,
) -> Result<Vec<Row>, String> {
    let dir = TempDir::new("preflight")?;
    let repo = dir.path.as_path();
    let w = |rel: &str, text: &[u8]| -> Result<(), String> {
        let p = repo.join(rel);
        if let Some(parent) = p.parent() {
            std::fs::create_dir_all(parent).map_err(|e| format!("{}: {e}", parent.display()))?;
        }
        std::fs::write(&p, text).map_err(|e| format!("{}: {e}", p.display()))
    };
    w("dist/cli.js", &vec![b'x'; 200 * 1024])?;
    w("mcp-servers.json", b"{}\n")?;
    w(".gitignore", b".env.production\nbackups/\n")?;
    w(".env.production", b"NODE_ENV=production\n")?;
    chmod(&repo.join(".env.production"), "600")?;
    chmod(&repo.join("dist/cli.js"), "755")?;
    let tls = if output("sh", &["-c", "command -v openssl"]).is_ok() {
        run_quiet(
            Command::new("openssl")
                .args([
                    "req",
                    "-x509",
                    "-newkey",
                    "ec",
                    "-pkeyopt",
                    "ec_paramgen_curve:prime256v1",
                    "-nodes",
                    "-days",
                    "365",
                    "-subj",
                    "/CN=localhost",
                    "-keyout",
                    "key.pem",
                    "-out",
                    "cert.pem",
                ])
                .current_dir(repo),
        )?;
        "\n[[preflight.check]]\nkind = \"tls-cert\"\npath = \"cert.pem\"\nname = \"localhost\"\n"
    } else {
        ""
    };
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map_err(|e| format!("cannot find a free port: {e}"))?
        .port();
    let manifest = format!(
        r#"[service]
name = "bench"
secrets = {{ API_KEY = "env:CUTOVER_BENCH_API_KEY" }}

[[preflight.check]]
kind = "git-clean"

[[preflight.check]]
kind = "artifact"
path = "dist/cli.js"
executable = true
min_bytes = "100KB"
max_bytes = "10MB"

[[preflight.check]]
kind = "files-exist"
any_of = ["mcp-servers.json", "config/mcp-servers.json"]

[[preflight.check]]
kind = "secrets"

[[preflight.check]]
kind = "disk-free"
warn_below = "1%"
fail_below = "0%"

[[preflight.check]]
kind = "memory"
warn_below = "0%"

[[preflight.check]]
kind = "runtime-version"
command = ["git", "--version"]

[[preflight.check]]
kind = "port-free"
addr = "127.0.0.1:{port}"

[[preflight.check]]
kind = "dir-writable"
path = "backups"

[[preflight.check]]
kind = "file-mode"
path = ".env.production"

[[preflight.check]]
kind = "not-tracked"
paths = [".env.production", "backups/"]

[[preflight.check]]
kind = "cpu-count"
warn_below = 1

[[preflight.check]]
kind = "open-files-limit"
warn_below = 64
fail_below = 16

[[preflight.check]]
kind = "inodes-free"
{tls}"#
    );
    w("cutover.toml", manifest.as_bytes())?;
    for args in [
        &["init", "-q"][..],
        &["add", "-A"],
        &[
            "-c",
            "user.name=bench",
            "-c",
            "user.email=bench@localhost",
            "commit",
            "-q",
            "-m",
            "bench",
        ],
    ] {
        run_quiet(Command::new("git").args(args).current_dir(repo))?;
    }
    let cmd = || {
        let mut c = Command::new(release.join("cutover-preflight"));
        c.args(["--json"])
            .current_dir(repo)
            .env("CUTOVER_BENCH_API_KEY", "not-a-real-secret");
        c
    };
    // One run to show what was checked (and that everything passed).
    let first = cmd()
        .output()
        .map_err(|e| format!("cannot run cutover-preflight: {e}"))?;
    let report = String::from_utf8_lossy(&first.stdout);
    let doc =
        json::parse(&report).map_err(|e| format!("cutover-preflight printed no JSON: {e}"))?;
    let status = doc
        .pointer("/status")
        .and_then(json::Value::as_str)
        .unwrap_or("?")
        .to_owned();
    let checks: Vec<String> = doc
        .pointer("/checks")
        .and_then(json::Value::as_array)
        .map(|a| {
            a.iter()
                .map(|c| {
                    format!(
                        "{} ({})",
                        c.pointer("/id")
                            .and_then(json::Value::as_str)
                            .unwrap_or("?"),
                        c.pointer("/outcome")
                            .or_else(|| c.pointer("/status"))
                            .and_then(json::Value::as_str)
                            .unwrap_or("?")
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    if status != "ok" {
        return Err(format!(
            "the generated repository does not pass pre-flight ({status}): {}",
            checks.join(", ")
        ));
    }
    let mut times = Vec::new();
    for _ in 0..plan.process_runs {
        times.push(time(&mut cmd())?);
    }
    let ms: Vec<f64> = times.iter().map(|s| s * 1000.0).collect();
    let m = median(&ms);
    let _ = writeln!(
        details,
        "### Pre-flight\n\n`cutover-preflight --json` in a generated git repository whose \
         manifest lists every local check kind ({} checks: {}), with no `command` or `build` \
         check; {} runs, whole process, wall time (ms): {}.\n",
        checks.len(),
        checks.join(", "),
        plan.process_runs,
        join(&ms, 1)
    );
    Ok(vec![Row {
        goal: format!(
            "all local pre-flight checks ({}) ≤ 100 ms wall",
            checks.len()
        ),
        measured: format!("{m:.1} ms"),
        runs: plan.process_runs.to_string(),
        spread: format!("{} ms", spread(&ms, 1)),
        verdict: pass(m <= 100.0),
    }])
}

/// cutover-monitor's CPU use at a 5 s refresh, on a real terminal (tmux), for a minute.
fn monitor(
    _root: &Path,
    release: &Path,
    plan: &Plan,
    details: &mut String,
) -> Result<Vec<Row>, String> {
    output("sh", &["-c", "command -v tmux"]).map_err(|_| {
        "tmux is missing: apt-get install -y --no-install-recommends tmux".to_owned()
    })?;
    let hub = Hub::start(release)?;
    let socket = format!("cutover-bench-{}", std::process::id());
    let command = format!(
        "exec {} --target http://{} --interval 5s --pid {}",
        release.join("cutover-monitor").display(),
        hub.addr,
        hub.child.id()
    );
    let pid: u32 = output(
        "tmux",
        &[
            "-L",
            &socket,
            "new-session",
            "-d",
            "-x",
            "120",
            "-y",
            "40",
            "-P",
            "-F",
            "#{pane_pid}",
            &command,
        ],
    )?
    .trim()
    .parse()
    .map_err(|e| format!("tmux did not report the pane's pid: {e}"))?;
    let server = TmuxServer { socket };
    let hz: f64 = output("getconf", &["CLK_TCK"])?
        .trim()
        .parse()
        .map_err(|e| format!("getconf CLK_TCK: {e}"))?;
    // Let it start and draw its first evaluation, then measure a window of whole intervals.
    std::thread::sleep(Duration::from_secs(2));
    let screen = output("tmux", &["-L", &server.socket, "capture-pane", "-p"])?;
    if !screen.contains("cutover-monitor") || !screen.contains("ALERTS") {
        return Err(format!("the monitor's screen is not showing:\n{screen}"));
    }
    let (t0, c0) = (Instant::now(), cpu_ticks(pid)?);
    std::thread::sleep(Duration::from_secs(plan.monitor_seconds));
    let (elapsed, c1) = (t0.elapsed().as_secs_f64(), cpu_ticks(pid)?);
    let screen = output("tmux", &["-L", &server.socket, "capture-pane", "-p"])?;
    drop(server);
    let seconds = (c1 - c0) as f64 / hz;
    let percent = seconds / elapsed * 100.0;
    let lifetime = c1 as f64 / hz;
    let status_line = screen
        .lines()
        .find(|l| l.contains("status"))
        .unwrap_or("")
        .trim_matches(|c: char| c == '│' || c.is_whitespace())
        .to_owned();
    let _ = writeln!(
        details,
        "### Monitor\n\n`cutover-monitor --target URL --interval 5s --pid HUB_PID` in a \
         120×40 tmux pane against the idle demo hub (release build). CPU time from \
         /proc/PID/stat (utime + stime, {hz:.0} ticks/s) over {elapsed:.1} s after a 2 s \
         start: {seconds:.2} s of CPU, {percent:.3} % of one core; over its whole life \
         including start-up, {lifetime:.2} s of CPU. The screen's status line at the end: \
         `{status_line}`.\n"
    );
    Ok(vec![Row {
        goal: "monitor at 5 s refresh ≤ 1 % of one core".to_owned(),
        measured: format!("{percent:.3} % of one core"),
        runs: format!("1 window of {elapsed:.0} s"),
        spread: format!(
            "one clock tick = {:.3} % over the window",
            1.0 / hz / elapsed * 100.0
        ),
        verdict: pass(percent <= 1.0),
    }])
}

/// Deploys and rollbacks under constant load: blue-green through nginx, and the restart
/// strategy beside it (load straight at the service port), each in its own temp directory with
/// its own ports, driving the release `cutover-deploy` as whole processes.
fn deploy(
    root: &Path,
    release: &Path,
    _plan: &Plan,
    details: &mut String,
) -> Result<Vec<Row>, String> {
    const GOAL_LOAD: &str = "blue-green deploy under constant load: 0 failed requests";
    const GOAL_ROLLBACK: &str = "rollback ≤ 0.3× the deploy's time";
    let runs = 3;
    let bg = deploy_under_load(root, release, "blue-green", runs);
    let rs = deploy_under_load(root, release, "restart", runs);
    let _ = writeln!(
        details,
        "### Deploy\n\n`cutover-deploy --manifest M deploy` then {runs} × (`deploy`, `rollback`) \
         per strategy, whole processes, wall time, the manifest being xtask/demo/cutover.toml \
         (pre-flight gate, backup, the demo hub with a 300 ms start delay, ready and validate \
         probes) with a build step that copies the release demo hub (no cargo) and its own \
         loopback ports and root in a temp directory. The first deploy is cold and not counted. \
         During the {runs} deploys and {runs} rollbacks a load thread sends one `GET \
         /api/health` per new connection (2 s timeouts, 5 ms apart): through nginx for \
         blue-green, straight at the service port for restart (it has no standby to switch \
         to). A request fails on any connect, read or timeout error, or a status other than \
         200. Blue-green keeps the replaced release warm as the standby (`keep_standby`), so \
         its rollback is a probe and an nginx switch. Everything is stopped by `cutover-deploy \
         down` at the end.\n"
    );
    let _ = writeln!(
        details,
        "| strategy | deploys (ms) | rollbacks (ms) | deploy median (ms) | rollback median (ms) \
         | rollback / deploy | requests ok | failed |\n|---|---|---|---|---|---|---|---|"
    );
    for (name, r) in [("blue-green", &bg), ("restart", &rs)] {
        match r {
            Ok(m) => {
                let _ = writeln!(
                    details,
                    "| {name} | {} | {} | {:.0} | {:.0} | {:.2}× | {} | {} |",
                    join(&m.deploy_ms, 0),
                    join(&m.rollback_ms, 0),
                    median(&m.deploy_ms),
                    median(&m.rollback_ms),
                    m.ratio(),
                    m.ok,
                    m.failed
                );
            }
            Err(e) => {
                let _ = writeln!(details, "| {name} | error: {e} | - | - | - | - | - | - |");
            }
        }
    }
    for (name, r) in [("blue-green", &bg), ("restart", &rs)] {
        if let Ok(m) = r {
            let _ = writeln!(
                details,
                "\n{name}: first (cold) deploy {:.0} ms; load {} requests in {:.1} s ({:.0} req/s){}.",
                m.first_ms,
                m.ok + m.failed,
                m.load_seconds,
                (m.ok + m.failed) as f64 / m.load_seconds.max(1e-9),
                if m.errors.is_empty() {
                    String::new()
                } else {
                    format!("; first failures: {}", m.errors.join("; "))
                }
            );
        }
    }
    details.push('\n');
    let bg = match bg {
        Ok(m) => m,
        Err(e) => {
            let row = |goal: &str| Row {
                goal: goal.to_owned(),
                measured: format!("error: {e}"),
                runs: "-".to_owned(),
                spread: "-".to_owned(),
                verdict: Verdict::Fail,
            };
            return Ok(vec![row(GOAL_LOAD), row(GOAL_ROLLBACK)]);
        }
    };
    let beside_load = match &rs {
        Ok(m) => format!(
            "restart beside it: {} failed of {} (straight at the port)",
            m.failed,
            m.ok + m.failed
        ),
        Err(e) => format!("restart beside it: error: {e}"),
    };
    let beside_time = match &rs {
        Ok(m) => format!(
            "restart: {:.0} vs {:.0} ms, {:.2}×",
            median(&m.rollback_ms),
            median(&m.deploy_ms),
            m.ratio()
        ),
        Err(e) => format!("restart: error: {e}"),
    };
    let total = bg.ok + bg.failed;
    let pair_ratios: Vec<f64> = bg
        .rollback_ms
        .iter()
        .zip(&bg.deploy_ms)
        .map(|(r, d)| r / d)
        .collect();
    Ok(vec![
        Row {
            goal: GOAL_LOAD.to_owned(),
            measured: format!(
                "{} failed of {total} requests through nginx over {runs} deploys + {runs} \
                 rollbacks ({beside_load})",
                bg.failed
            ),
            runs: format!("{runs} deploys + {runs} rollbacks"),
            spread: "-".to_owned(),
            verdict: pass(bg.failed == 0 && total > 0),
        },
        Row {
            goal: GOAL_ROLLBACK.to_owned(),
            measured: format!(
                "{:.2}× (rollback {:.0} ms vs deploy {:.0} ms, blue-green, ratio of medians; \
                 {beside_time})",
                bg.ratio(),
                median(&bg.rollback_ms),
                median(&bg.deploy_ms)
            ),
            runs: runs.to_string(),
            spread: spread(&pair_ratios, 2),
            verdict: pass(bg.ratio() <= 0.3),
        },
    ])
}

/// One strategy's deploys and rollbacks under load.
#[derive(Debug, Default)]
struct DeployFigures {
    first_ms: f64,
    deploy_ms: Vec<f64>,
    rollback_ms: Vec<f64>,
    ok: u64,
    failed: u64,
    errors: Vec<String>,
    load_seconds: f64,
}

impl DeployFigures {
    /// Median rollback over median deploy.
    fn ratio(&self) -> f64 {
        median(&self.rollback_ms) / median(&self.deploy_ms)
    }
}

/// A deployment under a temp root; `down` (then the pid files) stops it when dropped.
struct Deployment {
    bin: PathBuf,
    manifest: PathBuf,
    root: PathBuf,
    stopped: bool,
    _dir: TempDir,
}

impl Deployment {
    /// Writes the manifest from the demo template with `strategy` and fresh ports.
    fn new(
        workspace: &Path,
        release: &Path,
        strategy: &str,
    ) -> Result<(Deployment, SocketAddr), String> {
        let dir = TempDir::new(&format!("deploy-{strategy}"))?;
        let source = dir.path.join("source");
        std::fs::create_dir_all(&source).map_err(|e| format!("{}: {e}", source.display()))?;
        let template = workspace.join("xtask/demo/cutover.toml");
        let text = std::fs::read_to_string(&template)
            .map_err(|e| format!("cannot read {}: {e}", template.display()))?;
        let holders: Vec<std::net::TcpListener> = (0..4)
            .map(|_| std::net::TcpListener::bind("127.0.0.1:0"))
            .collect::<Result<_, _>>()
            .map_err(|e| format!("cannot find free ports: {e}"))?;
        let mut ports = Vec::new();
        for h in &holders {
            ports.push(h.local_addr().map_err(|e| e.to_string())?.port());
        }
        drop(holders);
        let root = dir.path.join("root");
        let hub = release.join("cutover-demo-hub");
        let mut text = text
            .replace("@SOURCE@", &source.display().to_string())
            .replace("@ROOT@", &root.display().to_string())
            .replace("@PORT_BLUE@", &ports[0].to_string())
            .replace("@PORT_GREEN@", &ports[1].to_string())
            .replace("@PORT_HTTP@", &ports[2].to_string())
            .replace("@PORT_CONTROL@", &ports[3].to_string());
        let lines: [(&str, String); 4] = [
            (
                "build = ",
                format!(
                    "build = [\"install\", \"-D\", \"{}\", \"bin/hub\"]",
                    hub.display()
                ),
            ),
            (
                "artifact = ",
                "artifact = { path = \"bin/hub\", min_bytes = 102400, executable = true }"
                    .to_owned(),
            ),
            (
                "start = ",
                "start = [\"{release}/bin/hub\", \"--listen\", \"{host}:{port}\", \
                 \"--release-id\", \"{release_id}\"]"
                    .to_owned(),
            ),
            ("strategy = ", format!("strategy = \"{strategy}\"")),
        ];
        for (prefix, line) in lines {
            let old = text
                .lines()
                .find(|l| l.starts_with(prefix))
                .ok_or_else(|| format!("{} has no `{prefix}…` line", template.display()))?
                .to_owned();
            text = text.replace(&old, &line);
        }
        let manifest = dir.path.join("cutover.toml");
        std::fs::write(&manifest, text)
            .map_err(|e| format!("cannot write {}: {e}", manifest.display()))?;
        let target = if strategy == "restart" {
            ports[0]
        } else {
            ports[2]
        };
        Ok((
            Deployment {
                bin: release.join("cutover-deploy"),
                manifest,
                root,
                stopped: false,
                _dir: dir,
            },
            SocketAddr::from(([127, 0, 0, 1], target)),
        ))
    }

    /// Wall time (ms) of one `cutover-deploy` command that must succeed.
    fn timed(&self, command: &str) -> Result<f64, String> {
        let t = Instant::now();
        let out = Command::new(&self.bin)
            .arg("--manifest")
            .arg(&self.manifest)
            .arg(command)
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("cannot run {}: {e}", self.bin.display()))?;
        let ms = t.elapsed().as_secs_f64() * 1000.0;
        if out.status.success() {
            Ok(ms)
        } else {
            let stderr = String::from_utf8_lossy(&out.stderr);
            let tail: Vec<&str> = stderr.lines().rev().take(3).collect();
            Err(format!(
                "cutover-deploy {command} failed ({}): {}",
                out.status,
                tail.into_iter().rev().collect::<Vec<_>>().join(" / ")
            ))
        }
    }

    /// `cutover-deploy down`; on failure, stops what the pid files name.
    fn down(&mut self) -> Result<(), String> {
        self.stopped = true;
        let down = self.timed("down").map(|_| ());
        if down.is_err() {
            self.kill_by_pid_files();
        }
        down
    }

    /// The last resort: the nginx master and every slot's supervisor and process group.
    fn kill_by_pid_files(&self) {
        let nginx = self.root.join("proxy/logs/nginx.pid");
        if let Some(pid) = std::fs::read_to_string(&nginx)
            .ok()
            .and_then(|p| p.trim().parse::<u32>().ok())
        {
            kill(&["-TERM", &pid.to_string()]);
        }
        let Ok(slots) = std::fs::read_dir(self.root.join("state/proc")) else {
            return;
        };
        for slot in slots.flatten() {
            let Some(state) = std::fs::read_to_string(slot.path().join("state.json"))
                .ok()
                .and_then(|t| json::parse(&t).ok())
            else {
                continue;
            };
            if state.pointer("/state").and_then(json::Value::as_str) == Some("stopped") {
                continue;
            }
            if let Some(pgid) = state.pointer("/group/pgid").and_then(json::Value::as_f64) {
                kill(&["-TERM", "--", &format!("-{pgid:.0}")]);
            }
            if let Some(pid) = state
                .pointer("/supervisor/pid")
                .and_then(json::Value::as_f64)
            {
                kill(&["-TERM", &format!("{pid:.0}")]);
            }
        }
    }
}

impl Drop for Deployment {
    fn drop(&mut self) {
        if !self.stopped {
            let _ = self.down();
        }
    }
}

/// `kill ARGS`, quietly, ignoring the outcome (the process may be gone already).
fn kill(args: &[&str]) {
    let _ = Command::new("kill")
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

/// First deploy, then `runs` × (deploy, rollback) under a load thread, then `down`.
fn deploy_under_load(
    workspace: &Path,
    release: &Path,
    strategy: &str,
    runs: usize,
) -> Result<DeployFigures, String> {
    let (mut d, target) = Deployment::new(workspace, release, strategy)?;
    let mut figures = DeployFigures {
        first_ms: d.timed("deploy")?,
        ..DeployFigures::default()
    };
    let stop = AtomicBool::new(false);
    let result = std::thread::scope(|s| {
        let load = s.spawn(|| load_loop(target, &stop));
        let mut result = Ok(());
        for _ in 0..runs {
            match d.timed("deploy").and_then(|dep| {
                figures.deploy_ms.push(dep);
                d.timed("rollback")
            }) {
                Ok(rb) => figures.rollback_ms.push(rb),
                Err(e) => {
                    result = Err(e);
                    break;
                }
            }
        }
        stop.store(true, Ordering::Relaxed);
        match load.join() {
            Ok(l) => {
                figures.ok = l.ok;
                figures.failed = l.failed;
                figures.errors = l.errors;
                figures.load_seconds = l.seconds;
            }
            Err(_) => result = Err("the load thread panicked".to_owned()),
        }
        result
    });
    let down = d.down();
    result?;
    down?;
    Ok(figures)
}

/// What the load thread saw.
struct Load {
    ok: u64,
    failed: u64,
    errors: Vec<String>,
    seconds: f64,
}

/// One `GET /api/health` per connection until `stop` (or a bound), counting the outcomes.
fn load_loop(target: SocketAddr, stop: &AtomicBool) -> Load {
    const MAX_REQUESTS: u64 = 200_000;
    let timeout = Duration::from_secs(2);
    let mut load = Load {
        ok: 0,
        failed: 0,
        errors: Vec::new(),
        seconds: 0.0,
    };
    let t = Instant::now();
    while !stop.load(Ordering::Relaxed) && load.ok + load.failed < MAX_REQUESTS {
        let outcome = (|| -> std::io::Result<String> {
            let mut s = TcpStream::connect_timeout(&target, timeout)?;
            s.set_read_timeout(Some(timeout))?;
            s.set_write_timeout(Some(timeout))?;
            write!(
                s,
                "GET /api/health HTTP/1.1\r\nHost: {target}\r\nConnection: close\r\n\r\n"
            )?;
            let mut out = String::new();
            s.read_to_string(&mut out)?;
            Ok(out)
        })();
        match outcome {
            Ok(r) if r.starts_with("HTTP/1.1 200") || r.starts_with("HTTP/1.0 200") => {
                load.ok += 1;
            }
            other => {
                load.failed += 1;
                if load.errors.len() < 3 {
                    load.errors.push(match other {
                        Ok(r) => format!(
                            "`{}` at {:.1} s",
                            r.lines().next().unwrap_or("empty answer"),
                            t.elapsed().as_secs_f64()
                        ),
                        Err(e) => format!("{e} at {:.1} s", t.elapsed().as_secs_f64()),
                    });
                }
            }
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    load.seconds = t.elapsed().as_secs_f64();
    load
}

// ---------------------------------------------------------------------------------------------
// Rendering.

fn render(
    plan: &Plan,
    start: &Facts,
    end: &Facts,
    rows: &[Row],
    details: &str,
    took: Duration,
) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "# Benchmarks\n\n\
         Measured by `cargo xtask bench{}` on {}: {} CPUs ({}), {}; load average {} at the \
         start and {} at the end; the run took {:.0} s. The machine is shared and noisy, so \
         each goal is a ratio against a reference measured side by side in the same run \
         (interleaved where runs are short); the figures are medians, and the spread is the \
         min–max of the per-run ratios (or values). Regenerate with `cargo xtask bench` \
         (`--quick` for fewer, smaller runs).\n",
        if plan.quick { " --quick" } else { "" },
        start.date,
        start.nproc,
        start.cpu,
        start.kernel,
        start.load,
        end.load,
        took.as_secs_f64()
    );
    out.push_str(&render_table(rows));
    let _ = writeln!(out, "\n## Details\n\n{details}");
    out
}

fn render_table(rows: &[Row]) -> String {
    let mut out =
        String::from("| goal | measured | median of | spread | result |\n|---|---|---|---|---|\n");
    for r in rows {
        let verdict = match r.verdict {
            Verdict::Pass => "pass",
            Verdict::Fail => "**FAIL**",
        };
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {verdict} |",
            r.goal, r.measured, r.runs, r.spread
        );
    }
    out
}

fn pass(ok: bool) -> Verdict {
    if ok { Verdict::Pass } else { Verdict::Fail }
}

fn median(values: &[f64]) -> f64 {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

fn spread(values: &[f64], decimals: usize) -> String {
    let min = values.iter().copied().fold(f64::INFINITY, f64::min);
    let max = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    if values.is_empty() {
        "-".to_owned()
    } else {
        format!("{min:.decimals$}–{max:.decimals$}")
    }
}

fn join(values: &[f64], decimals: usize) -> String {
    values
        .iter()
        .map(|v| format!("{v:.decimals$}"))
        .collect::<Vec<_>>()
        .join(", ")
}

// ---------------------------------------------------------------------------------------------
// Processes.

/// A command's trimmed stdout; failure names the command.
fn output(program: &str, args: &[&str]) -> Result<String, String> {
    let out = Command::new(program)
        .args(args)
        .stderr(Stdio::piped())
        .output()
        .map_err(|e| format!("cannot run {program}: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "{program} {} failed ({}): {}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

fn run_quiet(command: &mut Command) -> Result<(), String> {
    let out = command
        .output()
        .map_err(|e| format!("cannot run {:?}: {e}", command.get_program()))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{:?} failed ({}): {}",
            command.get_program(),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

fn chmod(path: &Path, mode: &str) -> Result<(), String> {
    run_quiet(Command::new("chmod").arg(mode).arg(path))
}

/// Wall time of one run of a command that must succeed, output discarded.
fn time(command: &mut Command) -> Result<f64, String> {
    command.stdout(Stdio::null()).stderr(Stdio::null());
    let t = Instant::now();
    let status = command
        .status()
        .map_err(|e| format!("cannot run {:?}: {e}", command.get_program()))?;
    let elapsed = t.elapsed().as_secs_f64();
    if !status.success() {
        return Err(format!("{:?} failed ({status})", command.get_program()));
    }
    Ok(elapsed)
}

/// utime + stime of a process, in clock ticks.
fn cpu_ticks(pid: u32) -> Result<u64, String> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map_err(|e| format!("cannot read /proc/{pid}/stat (did the monitor exit?): {e}"))?;
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, r)| r.split_whitespace().collect())
        .unwrap_or_default();
    // Fields 14 and 15 of proc(5); the list starts at field 3.
    let field = |n: usize| fields.get(n - 3).and_then(|f| f.parse::<u64>().ok());
    match (field(14), field(15)) {
        (Some(u), Some(s)) => Ok(u + s),
        _ => Err(format!("/proc/{pid}/stat has no CPU times")),
    }
}

/// A private tmux server, killed when dropped (only this one, by its socket name).
struct TmuxServer {
    socket: String,
}

impl Drop for TmuxServer {
    fn drop(&mut self) {
        let _ = Command::new("tmux")
            .args(["-L", &self.socket, "kill-server"])
            .stderr(Stdio::null())
            .status();
    }
}

/// A temporary directory, removed when dropped.
struct TempDir {
    path: PathBuf,
}

impl TempDir {
    fn new(name: &str) -> Result<TempDir, String> {
        let path =
            std::env::temp_dir().join(format!("cutover-bench-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        Ok(TempDir { path })
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// The release demo hub on a free loopback port, ready; killed when dropped.
struct Hub {
    child: Child,
    addr: SocketAddr,
    _dir: TempDir,
}

impl Hub {
    fn start(release: &Path) -> Result<Hub, String> {
        let dir = TempDir::new("hub")?;
        let addr_file = dir.path.join("addr");
        let child = Command::new(release.join("cutover-demo-hub"))
            .args(["--listen", "127.0.0.1:0", "--addr-file"])
            .arg(&addr_file)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("cannot start cutover-demo-hub: {e}"))?;
        let mut hub = Hub {
            child,
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(addr) = std::fs::read_to_string(&addr_file)
                .ok()
                .and_then(|a| a.trim().parse().ok())
            {
                hub.addr = addr;
                if get(addr, "/api/health").is_ok_and(|b| b.contains("\"state\":\"ready\"")) {
                    return Ok(hub);
                }
            }
            if Instant::now() > deadline {
                return Err("the demo hub did not become ready within 20 s".to_owned());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Hub {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A minimal `GET` returning the raw response.
fn get(addr: SocketAddr, path: &str) -> std::io::Result<String> {
    let timeout = Duration::from_secs(5);
    let mut s = TcpStream::connect_timeout(&addr, timeout)?;
    s.set_read_timeout(Some(timeout))?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )?;
    let mut out = String::new();
    s.read_to_string(&mut out)?;
    Ok(out)
}

// ---------------------------------------------------------------------------------------------

/// Just enough JSON to read the helpers' reports (xtask has no dependencies).
mod json {
    /// A JSON value.
    #[derive(Debug, Clone, PartialEq)]
    pub(crate) enum Value {
        Null,
        Bool(bool),
        Number(f64),
        String(String),
        Array(Vec<Value>),
        Object(Vec<(String, Value)>),
    }

    impl Value {
        /// RFC 6901 lookup (no escapes needed here).
        pub(crate) fn pointer(&self, pointer: &str) -> Option<&Value> {
            pointer.split('/').skip(1).try_fold(self, |v, key| match v {
                Value::Object(fields) => fields.iter().find(|(k, _)| k == key).map(|(_, v)| v),
                Value::Array(items) => key.parse::<usize>().ok().and_then(|i| items.get(i)),
                _ => None,
            })
        }

        pub(crate) fn as_f64(&self) -> Option<f64> {
            match self {
                Value::Number(n) => Some(*n),
                _ => None,
            }
        }

        pub(crate) fn as_str(&self) -> Option<&str> {
            match self {
                Value::String(s) => Some(s),
                _ => None,
            }
        }

        pub(crate) fn as_array(&self) -> Option<&[Value]> {
            match self {
                Value::Array(a) => Some(a),
                _ => None,
            }
        }
    }

    /// Parses one JSON document (surrounding whitespace allowed).
    pub(crate) fn parse(text: &str) -> Result<Value, String> {
        let mut p = Parser {
            s: text.as_bytes(),
            i: 0,
        };
        let v = p.value(0)?;
        p.ws();
        if p.i != p.s.len() {
            return Err(format!("trailing characters at byte {}", p.i));
        }
        Ok(v)
    }

    struct Parser<'a> {
        s: &'a [u8],
        i: usize,
    }

    impl Parser<'_> {
        fn ws(&mut self) {
            while self.i < self.s.len() && self.s[self.i].is_ascii_whitespace() {
                self.i += 1;
            }
        }

        fn err(&self, what: &str) -> String {
            format!("{what} at byte {}", self.i)
        }

        fn eat(&mut self, lit: &str) -> Result<(), String> {
            if self.s[self.i..].starts_with(lit.as_bytes()) {
                self.i += lit.len();
                Ok(())
            } else {
                Err(self.err(&format!("expected {lit}")))
            }
        }

        fn value(&mut self, depth: usize) -> Result<Value, String> {
            if depth > 64 {
                return Err(self.err("nested too deeply"));
            }
            self.ws();
            match self.s.get(self.i) {
                None => Err(self.err("unexpected end")),
                Some(b'n') => self.eat("null").map(|()| Value::Null),
                Some(b't') => self.eat("true").map(|()| Value::Bool(true)),
                Some(b'f') => self.eat("false").map(|()| Value::Bool(false)),
                Some(b'"') => self.string().map(Value::String),
                Some(b'[') => {
                    self.i += 1;
                    let mut items = Vec::new();
                    self.ws();
                    if self.s.get(self.i) == Some(&b']') {
                        self.i += 1;
                        return Ok(Value::Array(items));
                    }
                    loop {
                        items.push(self.value(depth + 1)?);
                        self.ws();
                        match self.s.get(self.i) {
                            Some(b',') => self.i += 1,
                            Some(b']') => {
                                self.i += 1;
                                return Ok(Value::Array(items));
                            }
                            _ => return Err(self.err("expected , or ]")),
                        }
                    }
                }
                Some(b'{') => {
                    self.i += 1;
                    let mut fields = Vec::new();
                    self.ws();
                    if self.s.get(self.i) == Some(&b'}') {
                        self.i += 1;
                        return Ok(Value::Object(fields));
                    }
                    loop {
                        self.ws();
                        let key = self.string()?;
                        self.ws();
                        self.eat(":")?;
                        fields.push((key, self.value(depth + 1)?));
                        self.ws();
                        match self.s.get(self.i) {
                            Some(b',') => self.i += 1,
                            Some(b'}') => {
                                self.i += 1;
                                return Ok(Value::Object(fields));
                            }
                            _ => return Err(self.err("expected , or }")),
                        }
                    }
                }
                Some(_) => {
                    let start = self.i;
                    while self.i < self.s.len()
                        && matches!(
                            self.s[self.i],
                            b'-' | b'+' | b'.' | b'e' | b'E' | b'0'..=b'9'
                        )
                    {
                        self.i += 1;
                    }
                    std::str::from_utf8(&self.s[start..self.i])
                        .ok()
                        .and_then(|t| t.parse().ok())
                        .map(Value::Number)
                        .ok_or_else(|| self.err("expected a value"))
                }
            }
        }

        fn string(&mut self) -> Result<String, String> {
            self.eat("\"")?;
            let mut out = Vec::new();
            loop {
                let Some(&b) = self.s.get(self.i) else {
                    return Err(self.err("unterminated string"));
                };
                self.i += 1;
                match b {
                    b'"' => break,
                    b'\\' => {
                        let Some(&e) = self.s.get(self.i) else {
                            return Err(self.err("unterminated escape"));
                        };
                        self.i += 1;
                        match e {
                            b'n' => out.push(b'\n'),
                            b't' => out.push(b'\t'),
                            b'r' => out.push(b'\r'),
                            b'b' => out.push(8),
                            b'f' => out.push(12),
                            b'u' => {
                                let hex = self
                                    .s
                                    .get(self.i..self.i + 4)
                                    .and_then(|h| std::str::from_utf8(h).ok())
                                    .and_then(|h| u32::from_str_radix(h, 16).ok())
                                    .ok_or_else(|| self.err("bad \\u escape"))?;
                                self.i += 4;
                                let c = char::from_u32(hex).unwrap_or('\u{fffd}');
                                let mut buf = [0; 4];
                                out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
                            }
                            other => out.push(other),
                        }
                    }
                    other => out.push(other),
                }
            }
            String::from_utf8(out).map_err(|_| self.err("a string is not UTF-8"))
        }
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn parses_the_helpers_shapes() {
            let v = parse(r#" {"status":"ok","create":{"ratio":0.41,"ours_s":[1.5,2e0]},"s":"a\"b\u00e9","n":null,"t":true} "#)
                .unwrap();
            assert_eq!(v.pointer("/status").and_then(Value::as_str), Some("ok"));
            assert_eq!(
                v.pointer("/create/ratio").and_then(Value::as_f64),
                Some(0.41)
            );
            assert_eq!(
                v.pointer("/create/ours_s/1").and_then(Value::as_f64),
                Some(2.0)
            );
            assert_eq!(v.pointer("/s").and_then(Value::as_str), Some("a\"bé"));
            assert!(parse("{\"a\": }").is_err());
            assert!(parse("[1, 2] x").is_err());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn medians_and_spreads() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), 2.5);
        assert_eq!(spread(&[1.234, 0.5], 2), "0.50–1.23");
        assert_eq!(spread(&[], 2), "-");
    }

    #[test]
    fn round_spread_reads_the_script_table() {
        let table = "| target | round | wrk req/s | cutover-perf req/s | ratio |\n|---|---|---|---|---|\n\
                     | nginx | 1 | 100 | 95 | 0.950 |\n| nginx | 2 | 100 | 99 | 0.990 |\n\
                     | nginx | median of 2 | 100 | 97 | **0.970** |\n| hub | 1 | 10 | 9 | 0.900 |\n";
        assert_eq!(round_spread(table, "nginx"), "0.95–0.99");
        assert_eq!(round_spread(table, "hub"), "0.90–0.90");
    }
}
