//! The backup measurement (moved out of the shipped `cutover-backup`, issue 17): generates a
//! tree of mixed files, then times the release `cutover-backup create` (gzip and zstd) against
//! the real peer, `tar -cf - | pigz -pN -6` with N the number of CPUs, and its `restore` (with
//! verification) against `pigz -dc | tar -xf -`, all as whole processes on the same tree,
//! rotating which tool goes first each round. Single-threaded `tar -czf`/`tar -xzf` and
//! `tar -cf - | zstd -TN -3` are measured as context. Needs `pigz` and `zstd`.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Instant;

use serde_json::json;

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

fn timed_ok(mut cmd: Command) -> Result<f64, String> {
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

/// Times `first | second` (the second's stdout into `out` when given), as a shell would run
/// it: from spawning the first to both having exited.
fn timed_pipe(mut first: Command, mut second: Command, out: Option<&Path>) -> Result<f64, String> {
    let start = Instant::now();
    let mut a = first
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("cannot run {first:?}: {e}"))?;
    let pipe = a
        .stdout
        .take()
        .ok_or_else(|| format!("no pipe from {first:?}"))?;
    second.stdin(Stdio::from(pipe)).stderr(Stdio::piped());
    if let Some(out) = out {
        let f = std::fs::File::create(out)
            .map_err(|e| format!("cannot create {}: {e}", out.display()))?;
        second.stdout(f);
    }
    let b = second
        .spawn()
        .map_err(|e| format!("cannot run {second:?}: {e}"))?;
    let b_out = b
        .wait_with_output()
        .map_err(|e| format!("{second:?}: {e}"))?;
    let a_status = a.wait().map_err(|e| format!("{first:?}: {e}"))?;
    let secs = start.elapsed().as_secs_f64();
    if !a_status.success() || !b_out.status.success() {
        return Err(format!(
            "{first:?} | {second:?} failed ({a_status}, {}): {}",
            b_out.status,
            String::from_utf8_lossy(&b_out.stderr)
        ));
    }
    Ok(secs)
}

/// Fails with the package to install when `program` is not on PATH.
fn need(program: &str) -> Result<(), String> {
    let found = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| d.join(program).is_file()))
        .unwrap_or(false);
    if found {
        Ok(())
    } else {
        Err(format!(
            "`{program}` is not installed (Debian package `{program}`; `cargo xtask bench` \
             installs it): the backup rows compare against it"
        ))
    }
}

/// One tool's timings over the rounds and the size of what it made.
#[derive(Debug, Default)]
struct Series {
    secs: Vec<f64>,
    bytes: u64,
}

impl Series {
    fn json(&self) -> serde_json::Value {
        json!({"s": self.secs, "median_s": self.median(), "bytes": self.bytes})
    }

    fn median(&self) -> f64 {
        super::median(&self.secs)
    }
}

fn size(path: &Path) -> Result<u64, String> {
    std::fs::metadata(path)
        .map(|m| m.len())
        .map_err(|e| format!("{}: {e}", path.display()))
}

/// Each contender's series, by name.
type Contenders = std::collections::BTreeMap<&'static str, Series>;

/// The ratios of medians (and sizes) the rows are made of, and whether the four goals are met:
/// gzip create ≤ 1.0× pigz, its archive within 2 % of pigz's, zstd create ≥ 5× faster than
/// pigz, gzip restore ≤ 1.0× `pigz -dc | tar -x`.
fn ratios(created: &Contenders, restored: &Contenders) -> (serde_json::Value, bool) {
    let c = |k: &str| created.get(k).map_or(f64::NAN, Series::median);
    let r = |k: &str| restored.get(k).map_or(f64::NAN, Series::median);
    let bytes = |k: &str| created.get(k).map_or(0, |s| s.bytes) as f64;
    let gzip_vs_pigz = c("gzip") / c("pigz");
    let zstd_speedup = c("pigz") / c("zstd");
    let size_gzip_vs_pigz = bytes("gzip") / bytes("pigz");
    let restore_vs_pigz = r("gzip") / r("pigz");
    // NaN (a missing contender) compares false: never a pass.
    let goals_met = gzip_vs_pigz <= 1.0
        && (size_gzip_vs_pigz - 1.0).abs() <= 0.02
        && zstd_speedup >= 5.0
        && restore_vs_pigz <= 1.0;
    let ratios = json!({
        "create_gzip_vs_pigz": gzip_vs_pigz,
        "create_zstd_speedup_vs_pigz": zstd_speedup,
        "create_gzip_vs_tar_czf": c("gzip") / c("tar_czf"),
        "create_zstd_vs_zstd_cli": c("zstd") / c("zstd_cli"),
        "size_gzip_vs_pigz": size_gzip_vs_pigz,
        "size_zstd_vs_pigz": bytes("zstd") / bytes("pigz"),
        "size_zstd_vs_zstd_cli": bytes("zstd") / bytes("zstd_cli"),
        "restore_gzip_vs_pigz": restore_vs_pigz,
        "restore_zstd_vs_pigz": r("zstd") / r("pigz"),
        "restore_gzip_vs_tar_xzf": r("gzip") / r("tar_xzf"),
    });
    (ratios, goals_met)
}

/// The create contenders, in the order of the first round.
const CREATE: [&str; 5] = ["gzip", "zstd", "pigz", "tar_czf", "zstd_cli"];
/// The restore contenders, in the order of the first round.
const RESTORE: [&str; 4] = ["gzip", "zstd", "pigz", "tar_xzf"];

/// Times the release `cutover-backup` (`exe`) against pigz, zstd and tar on a generated tree of
/// `size_mb` MiB under `work`, `runs` rounds, and returns the figures.
pub(super) fn measure_in(
    exe: &Path,
    work: &Path,
    size_mb: u64,
    runs: usize,
) -> Result<serde_json::Value, String> {
    need("pigz")?;
    need("zstd")?;
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    let tree = work.join("tree");
    std::fs::create_dir_all(&tree).map_err(|e| e.to_string())?;
    let files =
        generate(&tree, size_mb * 1024 * 1024).map_err(|e| format!("generate tree: {e}"))?;
    let mut created: Contenders = CREATE.iter().map(|k| (*k, Series::default())).collect();
    let mut restored: Contenders = RESTORE.iter().map(|k| (*k, Series::default())).collect();
    let tar_c = || {
        let mut c = Command::new("tar");
        c.arg("-cf").arg("-").arg("-C").arg(work).arg("tree");
        c
    };
    let rounds = runs.max(1);
    for round in 0..rounds {
        let dest = |codec: &str| work.join(format!("ours-{codec}-{round}"));
        let ours_archive = |codec: &str| {
            let ext = if codec == "gzip" { "tar.gz" } else { "tar.zst" };
            dest(codec).join(format!("bench.{ext}"))
        };
        let pigz_file = work.join(format!("pigz-{round}.tar.gz"));
        let tar_file = work.join(format!("tar-{round}.tar.gz"));
        let zstd_file = work.join(format!("zstd-{round}.tar.zst"));
        // Rotate which tool goes first, so that cache warmth and the machine's other load
        // favour none of them.
        for k in 0..CREATE.len() {
            let which = CREATE[(k + round) % CREATE.len()];
            let secs = match which {
                "gzip" | "zstd" => {
                    let mut ours = Command::new(exe);
                    ours.args([
                        "create",
                        "--id",
                        "bench",
                        "--compression",
                        which,
                        "--source",
                    ])
                    .arg(&tree)
                    .arg("--dest")
                    .arg(dest(which));
                    timed_ok(ours)?
                }
                "pigz" => {
                    let mut pigz = Command::new("pigz");
                    pigz.arg(format!("-p{cores}")).arg("-6");
                    timed_pipe(tar_c(), pigz, Some(&pigz_file))?
                }
                "tar_czf" => {
                    let mut tar = Command::new("tar");
                    tar.arg("-czf")
                        .arg(&tar_file)
                        .arg("-C")
                        .arg(work)
                        .arg("tree");
                    timed_ok(tar)?
                }
                _ => {
                    let mut zstd = Command::new("zstd");
                    zstd.arg(format!("-T{cores}")).args(["-3", "-q", "-c"]);
                    timed_pipe(tar_c(), zstd, Some(&zstd_file))?
                }
            };
            if let Some(s) = created.get_mut(which) {
                s.secs.push(secs);
            }
        }
        for (which, path) in [
            ("gzip", ours_archive("gzip")),
            ("zstd", ours_archive("zstd")),
            ("pigz", pigz_file.clone()),
            ("tar_czf", tar_file.clone()),
            ("zstd_cli", zstd_file.clone()),
        ] {
            if let Some(s) = created.get_mut(which) {
                s.bytes = size(&path)?;
            }
        }

        // Restores read the same archive where they can: pigz and tar unpack cutover's own gzip
        // archive (a plain multi-member gzip stream), so the same bytes go in.
        for k in 0..RESTORE.len() {
            let which = RESTORE[(k + round) % RESTORE.len()];
            let target = work.join(format!("restored-{which}-{round}"));
            let secs = match which {
                "gzip" | "zstd" => {
                    let mut ours = Command::new(exe);
                    ours.arg("restore")
                        .arg(ours_archive(which))
                        .arg("--target")
                        .arg(&target);
                    timed_ok(ours)?
                }
                "pigz" => {
                    std::fs::create_dir_all(&target).map_err(|e| e.to_string())?;
                    let mut pigz = Command::new("pigz");
                    pigz.arg("-dc").arg(ours_archive("gzip"));
                    let mut tar = Command::new("tar");
                    tar.arg("-xf").arg("-").arg("-C").arg(&target);
                    timed_pipe(pigz, tar, None)?
                }
                _ => {
                    std::fs::create_dir_all(&target).map_err(|e| e.to_string())?;
                    let mut tar = Command::new("tar");
                    tar.arg("-xzf")
                        .arg(ours_archive("gzip"))
                        .arg("-C")
                        .arg(&target);
                    timed_ok(tar)?
                }
            };
            if let Some(s) = restored.get_mut(which) {
                s.secs.push(secs);
                s.bytes = size(&ours_archive(if which == "zstd" { "zstd" } else { "gzip" }))?;
            }
            let _ = std::fs::remove_dir_all(&target);
        }
        for p in [dest("gzip"), dest("zstd")] {
            let _ = std::fs::remove_dir_all(p);
        }
        for p in [&pigz_file, &tar_file, &zstd_file] {
            let _ = std::fs::remove_file(p);
        }
    }
    let (ratios, goals_met) = ratios(&created, &restored);
    let series = |m: &Contenders| {
        serde_json::Value::Object(m.iter().map(|(k, v)| ((*k).to_owned(), v.json())).collect())
    };
    Ok(json!({
        "goals_met": goals_met,
        "tree": {"files": files, "bytes": size_mb * 1024 * 1024},
        "runs": rounds,
        "cores": cores,
        "pigz": format!("tar -cf - | pigz -p{cores} -6"),
        "create": series(&created),
        "restore": series(&restored),
        "ratios": ratios,
        "goals": {
            "create_gzip_vs_pigz": "<= 1.0",
            "size_gzip_vs_pigz": "within 2 %",
            "create_zstd_speedup_vs_pigz": ">= 5",
            "restore_gzip_vs_pigz": "<= 1.0",
        },
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn series(secs: &[f64], bytes: u64) -> Series {
        Series {
            secs: secs.to_vec(),
            bytes,
        }
    }

    fn contenders(rows: &[(&'static str, &[f64], u64)]) -> Contenders {
        rows.iter().map(|(k, s, b)| (*k, series(s, *b))).collect()
    }

    #[test]
    fn ratios_are_of_medians_and_the_goals_hold_when_every_one_is_met() {
        let created = contenders(&[
            ("gzip", &[1.0, 3.0, 0.9], 100),
            ("zstd", &[0.1, 0.2, 0.15], 80),
            ("pigz", &[1.0, 1.1, 0.95], 101),
            ("tar_czf", &[2.0], 100),
            ("zstd_cli", &[0.15], 80),
        ]);
        let restored = contenders(&[
            ("gzip", &[0.5], 100),
            ("zstd", &[0.3], 80),
            ("pigz", &[0.6], 100),
            ("tar_xzf", &[1.0], 100),
        ]);
        let (r, met) = ratios(&created, &restored);
        let f = |k: &str| r[k].as_f64().unwrap();
        assert!((f("create_gzip_vs_pigz") - 1.0 / 1.0).abs() < 1e-9);
        assert!((f("create_zstd_speedup_vs_pigz") - 1.0 / 0.15).abs() < 1e-9);
        assert!((f("size_gzip_vs_pigz") - 100.0 / 101.0).abs() < 1e-9);
        assert!((f("restore_gzip_vs_pigz") - 0.5 / 0.6).abs() < 1e-9);
        assert!((f("create_gzip_vs_tar_czf") - 0.5).abs() < 1e-9);
        assert!(met);
    }

    #[test]
    fn one_goal_missed_or_a_contender_missing_fails_the_backup_goals() {
        let restored = contenders(&[("gzip", &[0.5], 1), ("pigz", &[0.6], 1)]);
        // zstd only 4× faster than pigz.
        let slow_zstd = contenders(&[
            ("gzip", &[1.0], 100),
            ("zstd", &[0.25], 80),
            ("pigz", &[1.0], 100),
        ]);
        assert!(!ratios(&slow_zstd, &restored).1);
        // gzip's archive 3 % larger than pigz's.
        let big = contenders(&[
            ("gzip", &[1.0], 103),
            ("zstd", &[0.1], 80),
            ("pigz", &[1.0], 100),
        ]);
        assert!(!ratios(&big, &restored).1);
        // No pigz figures at all: NaN ratios, never a pass (and JSON null, not a number).
        let none = contenders(&[("gzip", &[1.0], 100), ("zstd", &[0.1], 80)]);
        let (r, met) = ratios(&none, &restored);
        assert!(!met);
        assert!(r["create_gzip_vs_pigz"].is_null());
    }

    #[test]
    fn the_generated_tree_is_the_same_every_time() {
        let a = tempfile_dir("a");
        let b = tempfile_dir("b");
        let na = generate(&a, 3 * 1024 * 1024).unwrap();
        let nb = generate(&b, 3 * 1024 * 1024).unwrap();
        assert_eq!(na, nb);
        let list = |d: &Path| {
            let mut v: Vec<(String, Vec<u8>)> = Vec::new();
            for e in walk(d) {
                v.push((
                    e.strip_prefix(d).unwrap().display().to_string(),
                    std::fs::read(&e).unwrap(),
                ));
            }
            v.sort();
            v
        };
        assert_eq!(list(&a), list(&b));
        let _ = std::fs::remove_dir_all(&a);
        let _ = std::fs::remove_dir_all(&b);
    }

    fn tempfile_dir(name: &str) -> std::path::PathBuf {
        let d = std::env::temp_dir().join(format!(
            "xtask-bench-tree-{name}-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    fn walk(d: &Path) -> Vec<std::path::PathBuf> {
        let mut out = Vec::new();
        for e in std::fs::read_dir(d).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(walk(&p));
            } else {
                out.push(p);
            }
        }
        out
    }
}
