//! The hidden `bench` subcommand: generates a tree of mixed files, then times this binary's
//! `create` against `tar -czf` (GNU tar + gzip -6) and `restore` (with verification) against
//! `tar -xzf`, side by side, alternating which goes first, and reports medians and ratios.
//! `cargo xtask bench` can call `cutover-backup bench --json`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use cutover_cli::Status;
use serde_json::json;

/// Arguments of `bench`.
#[derive(Debug, clap::Args)]
pub(crate) struct BenchArgs {
    /// Size of the generated tree in MiB.
    #[arg(long, default_value_t = 128)]
    size_mb: u64,
    /// Runs of each measurement (the median is reported).
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// Work directory (default: a fresh directory under the system temp dir, removed after).
    #[arg(long)]
    dir: Option<PathBuf>,
}

/// A small deterministic generator (xorshift64*), so the tree is the same on every run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
}

const WORDS: &[&str] = &[
    "deploy",
    "release",
    "health",
    "probe",
    "backup",
    "restore",
    "cutover",
    "service",
    "nginx",
    "upstream",
    "latency",
    "p95",
    "error",
    "warning",
    "config",
    "secret",
    "token",
    "request",
    "response",
    "cache",
    "queue",
    "depth",
    "circuit",
    "breaker",
    "open",
    "closed",
    "ready",
    "starting",
    "{",
    "}",
    "\"key\":",
    "42",
    "true",
    "false",
    "null",
    "INFO",
    "DEBUG",
    "2025-01-01T00:00:00Z",
    "GET",
    "/api/health",
    "200",
    "503",
];

/// Writes about `bytes` of files under `root`: two thirds text-like (log and JSON-ish words,
/// compressing about 4:1), one third random (incompressible), sizes from 1 KiB to 8 MiB.
fn generate(root: &Path, bytes: u64) -> std::io::Result<u64> {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let mut written = 0u64;
    let mut n = 0u64;
    while written < bytes {
        let dir = root.join(format!("d{:02}/sub{}", n % 17, n % 5));
        std::fs::create_dir_all(&dir)?;
        let size = match rng.next() % 10 {
            0..=5 => 1024 + rng.next() % (64 * 1024),
            6..=8 => 256 * 1024 + rng.next() % (1024 * 1024),
            _ => 2 * 1024 * 1024 + rng.next() % (6 * 1024 * 1024),
        };
        let text = !rng.next().is_multiple_of(3);
        let mut data = Vec::with_capacity(size as usize + 32);
        if text {
            while (data.len() as u64) < size {
                let w = WORDS[(rng.next() % WORDS.len() as u64) as usize];
                data.extend_from_slice(w.as_bytes());
                data.push(if rng.next().is_multiple_of(12) {
                    b'\n'
                } else {
                    b' '
                });
                if rng.next().is_multiple_of(7) {
                    data.extend_from_slice(format!("{}", rng.next() % 100_000).as_bytes());
                }
            }
            data.truncate(size as usize);
        } else {
            while (data.len() as u64) < size {
                data.extend_from_slice(&rng.next().to_le_bytes());
            }
            data.truncate(size as usize);
        }
        let ext = if text { "log" } else { "bin" };
        std::fs::write(dir.join(format!("f{n:05}.{ext}")), &data)?;
        written += size;
        n += 1;
    }
    Ok(n)
}

fn timed(mut cmd: Command) -> Result<f64, String> {
    let start = Instant::now();
    let out = cmd
        .output()
        .map_err(|e| format!("cannot run {cmd:?}: {e}"))?;
    let secs = start.elapsed().as_secs_f64();
    if !out.status.success() {
        return Err(format!(
            "{cmd:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(secs)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
}

pub(crate) fn run(args: &BenchArgs, json: bool) -> i32 {
    match measure(args) {
        Ok(v) => {
            if json {
                super::emit(v);
            } else {
                println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
            }
            0
        }
        Err(e) => {
            if json {
                super::emit(json!({"status": Status::Unknown, "command": "bench", "error": e}));
            } else {
                eprintln!("error: {e}");
            }
            cutover_cli::EXIT_UNKNOWN
        }
    }
}

fn measure(args: &BenchArgs) -> Result<serde_json::Value, String> {
    let tmp;
    let work = match &args.dir {
        Some(d) => d.clone(),
        None => {
            tmp = std::env::temp_dir().join(format!("cutover-backup-bench-{}", std::process::id()));
            tmp
        }
    };
    let result = measure_in(&work, args);
    if args.dir.is_none() {
        let _ = std::fs::remove_dir_all(&work);
    }
    result
}

fn measure_in(work: &Path, args: &BenchArgs) -> Result<serde_json::Value, String> {
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let tree = work.join("tree");
    std::fs::create_dir_all(&tree).map_err(|e| e.to_string())?;
    let files =
        generate(&tree, args.size_mb * 1024 * 1024).map_err(|e| format!("generate tree: {e}"))?;
    let (mut ours_c, mut tar_c, mut ours_r, mut tar_r) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let (mut ours_size, mut tar_size) = (0u64, 0u64);
    for i in 0..args.runs.max(1) {
        let dest = work.join(format!("ours-{i}"));
        let tar_file = work.join(format!("tar-{i}.tar.gz"));
        let mut ours = Command::new(&exe);
        ours.args(["create", "--id", "bench", "--source"])
            .arg(&tree)
            .arg("--dest")
            .arg(&dest);
        let mut tar = Command::new("tar");
        tar.arg("-czf")
            .arg(&tar_file)
            .arg("-C")
            .arg(work)
            .arg("tree");
        // Alternate which goes first so that cache warmth favours neither.
        if i % 2 == 0 {
            ours_c.push(timed(ours)?);
            tar_c.push(timed(tar)?);
        } else {
            tar_c.push(timed(tar)?);
            ours_c.push(timed(ours)?);
        }
        let archive = dest.join("bench.tar.gz");
        ours_size = std::fs::metadata(&archive)
            .map_err(|e| e.to_string())?
            .len();
        tar_size = std::fs::metadata(&tar_file)
            .map_err(|e| e.to_string())?
            .len();

        let target = work.join(format!("restored-ours-{i}"));
        let mut ours = Command::new(&exe);
        ours.arg("restore")
            .arg(&archive)
            .arg("--target")
            .arg(&target);
        let xdir = work.join(format!("restored-tar-{i}"));
        std::fs::create_dir_all(&xdir).map_err(|e| e.to_string())?;
        let mut tar = Command::new("tar");
        tar.arg("-xzf").arg(&tar_file).arg("-C").arg(&xdir);
        if i % 2 == 0 {
            ours_r.push(timed(ours)?);
            tar_r.push(timed(tar)?);
        } else {
            tar_r.push(timed(tar)?);
            ours_r.push(timed(ours)?);
        }
        for p in [&dest, &target, &xdir] {
            let _ = std::fs::remove_dir_all(p);
        }
        let _ = std::fs::remove_file(&tar_file);
    }
    let (oc, tc, or, tr) = (
        median(ours_c.clone()),
        median(tar_c.clone()),
        median(ours_r.clone()),
        median(tar_r.clone()),
    );
    let create_ratio = oc / tc;
    let restore_ratio = or / tr;
    let size_ratio = ours_size as f64 / tar_size as f64;
    let goals_met = create_ratio <= 0.5 && restore_ratio <= 1.2 && (size_ratio - 1.0).abs() <= 0.02;
    Ok(json!({
        "status": if goals_met { Status::Ok } else { Status::Warn },
        "command": "bench",
        "tree": {"files": files, "bytes": args.size_mb * 1024 * 1024},
        "runs": args.runs,
        "cores": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
        "create": {"ours_s": ours_c, "tar_czf_s": tar_c, "median_ours_s": oc, "median_tar_s": tc, "ratio": create_ratio, "goal": "<= 0.5"},
        "restore": {"ours_s": ours_r, "tar_xzf_s": tar_r, "median_ours_s": or, "median_tar_s": tr, "ratio": restore_ratio, "goal": "<= 1.2"},
        "size": {"ours_bytes": ours_size, "tar_gz_bytes": tar_size, "ratio": size_ratio, "goal": "within 2 %"},
    }))
}
