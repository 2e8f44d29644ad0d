//! `cargo xtask bench [--quick]`: measures the design brief's performance goals side by side in one
//! run and writes docs/benchmarks.md.
//!
//! These machines are shared and noisy, so every goal is a ratio against a reference taken in
//! the same run (interleaved where the runs are short), reported as a median with its spread.
//! Each measurement calls built binaries as whole processes (nothing here links the
//! workspace's libraries; serde_json reads their reports). A measurement that cannot run
//! becomes a row that says why, never a number. The full run also writes every raw figure to
//! docs/benchmarks.json beside docs/benchmarks.md.
//!
//! One module per subject: [`backup`] (with [`backup_run`], the measurement itself), [`load`]
//! (cutover-perf against wrk), [`probe`], [`preflight`], [`monitor`], [`deploy`] (deploys and
//! rollbacks under load), [`switch`] (the traffic switch against a bare `nginx -s reload`, and
//! the deploy's own overhead) and [`streams`].

mod backup;
mod backup_run;
mod deploy;
mod load;
mod monitor;
mod preflight;
mod probe;
mod streams;
mod switch;

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
                monitor_seconds: 20,
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
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
enum Verdict {
    Pass,
    Fail,
}

/// The raw figures of every subject, written to docs/benchmarks.json.
type Raw = serde_json::Map<String, serde_json::Value>;

/// One row of the table.
#[derive(Debug, Clone, serde::Serialize)]
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
    // cargo honours CARGO_TARGET_DIR; so does this.
    let release = std::env::var_os("CARGO_TARGET_DIR")
        .map_or_else(|| root.join("target"), |d| root.join(d))
        .join("release");
    let mut rows = Vec::new();
    let mut details = String::new();

    let mut raw = Raw::new();
    let steps: [(&str, StepFn); 8] = [
        ("backup", backup::backup),
        ("load generator", load::perf),
        ("probe", probe::probe),
        ("pre-flight", preflight::preflight),
        ("monitor", monitor::monitor),
        ("switch", switch::switch),
        ("deploy", deploy::deploy),
        ("streams", streams::streams),
    ];
    for (name, step) in steps {
        if only.as_deref().is_some_and(|o| o != name) {
            continue;
        }
        eprintln!("xtask bench: {name}…");
        let t = Instant::now();
        match step(root, &release, &plan, &mut details, &mut raw) {
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
        if let Ok(text) = serde_json::to_string_pretty(&raw) {
            println!("{text}");
        }
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
    let figures = figures(
        &plan,
        &facts_start,
        &facts_end,
        &rows,
        raw,
        started.elapsed(),
    );
    let out_json = root.join("docs/benchmarks.json");
    let text = serde_json::to_string_pretty(&figures).map_err(|e| e.to_string())?;
    std::fs::write(&out_json, text + "\n")
        .map_err(|e| format!("cannot write {}: {e}", out_json.display()))?;
    println!("{}", render_table(&rows));
    println!("wrote {}", out.display());
    Ok(())
}

/// docs/benchmarks.json: the run's facts, every row (goal, measured, verdict) and the raw
/// figures of every subject.
fn figures(
    plan: &Plan,
    start: &Facts,
    end: &Facts,
    rows: &[Row],
    raw: Raw,
    took: Duration,
) -> serde_json::Value {
    serde_json::json!({
        "quick": plan.quick,
        "seconds": took.as_secs_f64(),
        "date": start.date,
        "cpus": start.nproc,
        "cpu": start.cpu,
        "kernel": start.kernel,
        "load_start": start.load,
        "load_end": end.load,
        "rows": rows,
        "raw": raw,
    })
}

type StepFn = fn(&Path, &Path, &Plan, &mut String, &mut Raw) -> Result<Vec<Row>, String>;

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
            r.goal,
            measured_cell(r),
            r.runs,
            r.spread
        );
    }
    out
}

fn pass(ok: bool) -> Verdict {
    if ok { Verdict::Pass } else { Verdict::Fail }
}

/// The plain words a FAIL adds after its figures (` — FAIL: …`), or nothing when `ok`.
fn fail_words(ok: bool, why: impl FnOnce() -> String) -> String {
    if ok {
        String::new()
    } else {
        format!(" — FAIL: {}", why())
    }
}

/// A row's measured cell: a FAIL always says in words what missed, even when the subject
/// gave no reason of its own.
fn measured_cell(r: &Row) -> String {
    if r.verdict == Verdict::Fail && !r.measured.contains("FAIL") {
        format!("{} — FAIL: the goal was not met", r.measured)
    } else {
        r.measured.clone()
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn medians_and_spreads() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), 2.5);
        assert_eq!(spread(&[1.234, 0.5], 2), "0.50–1.23");
        assert_eq!(spread(&[], 2), "-");
        assert!(median(&[]).is_nan());
    }

    fn row(measured: &str, verdict: Verdict) -> Row {
        Row {
            goal: "g ≤ 1".to_owned(),
            measured: measured.to_owned(),
            runs: "3".to_owned(),
            spread: "0.9–1.1".to_owned(),
            verdict,
        }
    }

    #[test]
    fn a_fail_is_always_said_in_words() {
        assert_eq!(fail_words(true, || "x".to_owned()), "");
        assert_eq!(
            fail_words(false, || "too slow".to_owned()),
            " — FAIL: too slow"
        );
        let table = render_table(&[
            row("0.9×", Verdict::Pass),
            row("1.2× — FAIL: too slow", Verdict::Fail),
            row("1.3×", Verdict::Fail),
        ]);
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines[2], "| g ≤ 1 | 0.9× | 3 | 0.9–1.1 | pass |");
        assert_eq!(
            lines[3],
            "| g ≤ 1 | 1.2× — FAIL: too slow | 3 | 0.9–1.1 | **FAIL** |"
        );
        assert_eq!(
            lines[4],
            "| g ≤ 1 | 1.3× — FAIL: the goal was not met | 3 | 0.9–1.1 | **FAIL** |"
        );
    }

    #[test]
    fn the_json_figures_hold_the_facts_rows_and_raw_figures() {
        let facts = Facts {
            date: "d".to_owned(),
            nproc: 2,
            load: "1 2 3".to_owned(),
            cpu: "c".to_owned(),
            kernel: "k".to_owned(),
        };
        let mut raw = Raw::new();
        raw.insert("probe".to_owned(), serde_json::json!({"curl_s": [0.01]}));
        let doc = figures(
            &Plan::new(true),
            &facts,
            &facts,
            &[row("1.3×", Verdict::Fail)],
            raw,
            Duration::from_secs(2),
        );
        assert_eq!(doc["quick"], true);
        assert_eq!(doc["cpus"], 2);
        assert_eq!(doc["seconds"], 2.0);
        assert_eq!(doc["rows"][0]["verdict"], "fail");
        assert_eq!(doc["rows"][0]["goal"], "g ≤ 1");
        assert_eq!(doc["raw"]["probe"]["curl_s"][0], 0.01);
        // What is written is what is read back.
        let text = serde_json::to_string_pretty(&doc).unwrap();
        assert_eq!(
            serde_json::from_str::<serde_json::Value>(&text).unwrap(),
            doc
        );
    }
}
