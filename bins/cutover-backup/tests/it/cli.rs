//! The built `cutover-backup` binary: its JSON and exit codes, the `[backup]` table, and what
//! SIGKILL at fixed fractions of a `create` or `restore` run leaves behind.

// Helpers outside #[test] functions unwrap too: a failure there is a test failure.
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use cutover_tests::ChildGuard;
use serde_json::Value;

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_cutover-backup"))
}

fn run(args: &[&str], cwd: &Path) -> (i32, Value, String) {
    let out: Output = bin()
        .args(args)
        .current_dir(cwd)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let json = serde_json::from_str(&stdout).unwrap_or(Value::Null);
    (
        out.status.code().unwrap_or(-1),
        json,
        format!("{stdout}{}", String::from_utf8_lossy(&out.stderr)),
    )
}

fn write_tree(root: &Path, files: usize, size: usize) {
    let mut x = 0x1234_5678_9abc_def0u64;
    for i in 0..files {
        let dir = root.join(format!("d{}", i % 7));
        std::fs::create_dir_all(&dir).unwrap();
        let data: Vec<u8> = (0..size)
            .map(|j| {
                if j % 3 == 0 {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    x as u8
                } else {
                    b'a' + (j % 26) as u8
                }
            })
            .collect();
        std::fs::write(dir.join(format!("f{i}.dat")), data).unwrap();
    }
}

#[test]
fn create_verify_list_restore_prune_with_json_and_exit_codes() {
    let tmp = cutover_tests::temp_dir();
    let d = tmp.path();
    let src = d.join("conf");
    write_tree(&src, 5, 10_000);
    let s = src.to_str().unwrap();
    let dest = d.join("bk");
    let dest_s = dest.to_str().unwrap();

    let (code, j, out) = run(
        &[
            "create",
            "--json",
            "--source",
            s,
            "--dest",
            dest_s,
            "--id",
            "one",
            "--release",
            "r7",
        ],
        d,
    );
    assert_eq!(code, 0, "{out}");
    assert_eq!(j["status"], "ok");
    let archive = j["report"]["archive"].as_str().unwrap().to_owned();

    let (code, j, out) = run(&["verify", "--json", &archive], d);
    assert_eq!((code, j["status"].as_str()), (0, Some("ok")), "{out}");

    let (code, j, _) = run(&["list", "--json", dest_s], d);
    assert_eq!(code, 0);
    assert_eq!(j["backups"][0]["id"], "one");
    assert_eq!(j["backups"][0]["release"], "r7");
    assert_eq!(j["backups"][0]["last_verify"]["ok"], true);

    let target = d.join("live");
    let (code, j, out) = run(
        &[
            "restore",
            "--json",
            &archive,
            "--target",
            target.to_str().unwrap(),
            "--dry-run",
        ],
        d,
    );
    assert_eq!(code, 0, "{out}");
    assert_eq!(
        j["report"]["diff"]["added"].as_array().unwrap().len(),
        1 + 5 + 5,
        "conf/, five dN/ directories and five files"
    );
    assert!(!target.exists());
    let (code, _, out) = run(
        &["restore", &archive, "--target", target.to_str().unwrap()],
        d,
    );
    assert_eq!(code, 0, "{out}");
    assert!(target.join("conf/d0/f0.dat").is_file());

    let (code, _, out) = run(
        &["create", "--source", s, "--dest", dest_s, "--id", "two"],
        d,
    );
    assert_eq!(code, 0, "{out}");
    let (code, j, out) = run(
        &["prune", "--json", dest_s, "--keep-last", "1", "--dry-run"],
        d,
    );
    assert_eq!(code, 0, "{out}");
    // "one" is the newest verified backup: kept although keep_last=1 only keeps "two".
    assert_eq!(j["report"]["removed"].as_array().unwrap().len(), 0, "{j}");

    // A flipped byte: verify and restore fail with 2 and name the problem.
    let mut bytes = std::fs::read(&archive).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    std::fs::write(&archive, bytes).unwrap();
    let (code, j, _) = run(&["verify", "--json", &archive], d);
    assert_eq!((code, j["status"].as_str()), (2, Some("fail")), "{j}");
    assert_eq!(j["report"]["problem"]["kind"], "corrupt");
    let before = tree_digest(&target);
    let (code, j, _) = run(
        &[
            "restore",
            "--json",
            &archive,
            "--target",
            target.to_str().unwrap(),
        ],
        d,
    );
    assert_eq!((code, j["status"].as_str()), (2, Some("fail")), "{j}");
    assert_eq!(tree_digest(&target), before);

    // Usage errors are 64; a missing archive cannot be evaluated (3).
    let (code, _, _) = run(&["prune", dest_s], d);
    assert_eq!(code, 64);
    let (code, _, _) = run(&["create", "--bogus"], d);
    assert_eq!(code, 64);
    let (code, j, _) = run(&["verify", "--json", "/nonexistent/x.tar.gz"], d);
    assert_eq!((code, j["status"].as_str()), (3, Some("unknown")));
}

#[test]
fn backup_table_in_cutover_toml_supplies_defaults_and_bad_keys_exit_78() {
    let tmp = cutover_tests::temp_dir();
    let d = tmp.path();
    write_tree(&d.join("data"), 3, 1000);
    std::fs::write(d.join("data/skip.log"), "x").unwrap();
    std::fs::write(
        d.join("cutover.toml"),
        "[service]\nname = \"hub\"\n[backup]\npaths = [\"data\"]\nexclude = [\"*.log\"]\ndest = \"bk\"\nkeep_last = 2\n",
    )
    .unwrap();
    let (code, j, out) = run(&["create", "--json", "--id", "a"], d);
    assert_eq!(code, 0, "{out}");
    assert_eq!(j["report"]["summary"]["entry_count"], 1 + 3 + 3, "{j}");
    assert!(d.join("bk/a.tar.gz").is_file() && d.join("bk/a.json").is_file());
    let (code, j, _) = run(&["prune", "--json"], d);
    assert_eq!(code, 0);
    assert_eq!(j["report"]["decisions"][0]["reasons"][0], "last");

    std::fs::write(d.join("bad.toml"), "[backup]\nkeep_lats = 2\n").unwrap();
    let (code, _, out) = run(&["--manifest", "bad.toml", "list"], d);
    assert_eq!(code, 78, "{out}");
    assert!(
        out.contains("keep_lats") && out.contains("bad.toml"),
        "{out}"
    );
}

#[test]
fn zstd_from_the_flag_or_the_table_and_levels_checked_per_compression() {
    let tmp = cutover_tests::temp_dir();
    let d = tmp.path();
    write_tree(&d.join("data"), 3, 5000);
    std::fs::write(
        d.join("cutover.toml"),
        "[backup]\npaths = [\"data\"]\ndest = \"bk\"\ncompression = \"zstd\"\nlevel = 12\n",
    )
    .unwrap();
    // From the table: zstd at level 12.
    let (code, j, out) = run(&["create", "--json", "--id", "z"], d);
    assert_eq!(code, 0, "{out}");
    assert!(d.join("bk/z.tar.zst").is_file(), "{j}");
    assert_eq!(j["report"]["summary"]["archive"], "z.tar.zst");
    // The flag overrides the table; the table's zstd level does not follow to gzip.
    let (code, _, out) = run(&["create", "--id", "g", "--compression", "gzip"], d);
    assert_eq!(code, 0, "{out}");
    assert!(d.join("bk/g.tar.gz").is_file());
    let z = d.join("bk/z.tar.zst");
    let (code, j, out) = run(&["verify", "--json", z.to_str().unwrap()], d);
    assert_eq!(
        (code, j["report"]["ok"].as_bool()),
        (0, Some(true)),
        "{out}"
    );
    let (code, j, _) = run(&["list", "--json"], d);
    assert_eq!(code, 0);
    let formats: Vec<&str> = j["backups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["compression"].as_str().unwrap())
        .collect();
    assert_eq!(formats.len(), 2);
    assert!(
        formats.contains(&"zstd") && formats.contains(&"gzip"),
        "{j}"
    );
    let (code, _, out) = run(&["list"], d);
    assert_eq!(code, 0);
    assert!(out.lines().next().unwrap().contains("FORMAT"), "{out}");
    assert!(
        out.lines()
            .any(|l| l.starts_with("z ") && l.contains(" zstd ")),
        "{out}"
    );
    let target = d.join("restored");
    let (code, _, out) = run(
        &[
            "restore",
            z.to_str().unwrap(),
            "--target",
            target.to_str().unwrap(),
        ],
        d,
    );
    assert_eq!(code, 0, "{out}");
    assert_eq!(
        tree_digest(&target.join("data")),
        tree_digest(&d.join("data"))
    );

    // A level out of range for its compression: a usage error by flag, a configuration error
    // (exit 78, naming the manifest and the key) from the table.
    let (code, _, out) = run(&["create", "--id", "x", "--level", "22"], d);
    assert_eq!(code, 64, "{out}");
    assert!(
        out.contains("level 22 is out of range for zstd: use 1-19"),
        "{out}"
    );
    let (code, _, out) = run(
        &[
            "create",
            "--id",
            "x",
            "--compression",
            "gzip",
            "--level",
            "12",
        ],
        d,
    );
    assert_eq!(code, 64, "{out}");
    assert!(out.contains("out of range for gzip: use 0-9"), "{out}");
    let (code, _, out) = run(&["create", "--id", "x", "--compression", "xz"], d);
    assert_eq!(code, 64, "{out}");
    assert!(out.contains("`gzip` or `zstd`"), "{out}");
    std::fs::write(
        d.join("bad.toml"),
        "[backup]\ncompression = \"zstd\"\nlevel = 0\n",
    )
    .unwrap();
    let (code, _, out) = run(&["--manifest", "bad.toml", "list"], d);
    assert_eq!(code, 78, "{out}");
    assert!(
        out.contains("bad.toml") && out.contains("`level`") && out.contains("use 1-19"),
        "{out}"
    );
    assert!(!d.join("bk/x.tar.zst").exists() && !d.join("bk/x.tar.gz").exists());
}

/// (path, size, content sum) of everything under `root`, sorted.
fn tree_digest(root: &Path) -> Vec<(PathBuf, u64, u64)> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&dir) else {
            continue;
        };
        for e in rd {
            let p = e.unwrap().path();
            let m = std::fs::symlink_metadata(&p).unwrap();
            if m.is_dir() {
                stack.push(p.clone());
                out.push((p.strip_prefix(root).unwrap().to_path_buf(), 0, 0));
            } else {
                let sum = std::fs::read(&p)
                    .unwrap()
                    .iter()
                    .map(|&b| u64::from(b))
                    .sum();
                out.push((p.strip_prefix(root).unwrap().to_path_buf(), m.len(), sum));
            }
        }
    }
    out.sort();
    out
}

/// Runs the binary, SIGKILLs it after `delay` unless it finished first; returns whether the
/// kill landed while it was still running.
fn run_and_kill(args: &[&str], delay: Duration) -> bool {
    let mut cmd = bin();
    cmd.args(args).stdout(Stdio::null()).stderr(Stdio::null());
    let mut child = ChildGuard::spawn(cmd).unwrap();
    let end = Instant::now() + delay;
    while Instant::now() < end {
        if child.child().try_wait().unwrap().is_some() {
            return false;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    let running = child.child().try_wait().unwrap().is_none();
    child.signal(libc::SIGKILL);
    child
        .wait_timeout(Duration::from_secs(20))
        .expect("killed child exits");
    running
}

/// When to SIGKILL a run, as fractions of the duration of a complete one.
const KILL_FRACTIONS: [f64; 6] = [0.02, 0.05, 0.1, 0.2, 0.35, 0.55];

fn timed_run(args: &[&str]) -> Duration {
    let start = Instant::now();
    let out = bin().args(args).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    start.elapsed()
}

#[test]
fn sigkill_during_create_never_leaves_a_complete_looking_backup() {
    let tmp = cutover_tests::temp_dir();
    let src = tmp.path().join("src");
    write_tree(&src, 24, 1_500_000);
    let s = src.to_str().unwrap();
    let dest = tmp.path().join("bk");
    let d = dest.to_str().unwrap();
    let full = timed_run(&["create", "--source", s, "--dest", d, "--id", "reference"]);
    let mut mid_run = 0;
    // Fixed fractions of a measured run, most of them early: deterministic, and on a loaded
    // machine (where a run may be faster or slower than the reference) several still land
    // mid-run.
    for (i, fraction) in KILL_FRACTIONS.iter().enumerate() {
        let id = format!("killed{i}");
        let delay = full.mul_f64(*fraction);
        if run_and_kill(&["create", "--source", s, "--dest", d, "--id", &id], delay) {
            mid_run += 1;
        }
        let listing = backup_archive::list(&dest).unwrap();
        let sidecar = dest.join(format!("{id}.json"));
        if sidecar.exists() {
            // Only a create that got to its commit point leaves a sidecar, and then it is whole.
            let r = backup_archive::verify(
                &dest.join(format!("{id}.tar.gz")),
                &backup_archive::VerifyOptions::default(),
                &backup_archive::NoProgress,
            )
            .unwrap();
            assert!(
                r.ok,
                "kill {i} after {delay:?} left a sidecar for a bad archive: {r:?}"
            );
        } else {
            assert!(
                listing.backups.iter().all(|b| b.id != id),
                "kill {i} after {delay:?}: listed as a backup without its sidecar"
            );
            // Whatever it left is reported as incomplete, never as a backup.
            for e in std::fs::read_dir(&dest).unwrap() {
                let name = e.unwrap().file_name().to_string_lossy().into_owned();
                if name.contains(&id) {
                    assert!(
                        listing.incomplete.iter().any(|x| x.path.ends_with(&name)),
                        "{name} unreported"
                    );
                }
            }
        }
    }
    assert!(
        mid_run >= 2,
        "only {mid_run} of 6 kills landed while create was running"
    );
}

#[test]
fn sigkill_during_restore_leaves_the_target_as_it_was() {
    let tmp = cutover_tests::temp_dir();
    let src = tmp.path().join("src");
    write_tree(&src, 24, 1_500_000);
    let dest = tmp.path().join("bk");
    let out = bin()
        .args([
            "create",
            "--id",
            "full",
            "--source",
            src.to_str().unwrap(),
            "--dest",
            dest.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(out.status.success());
    let archive = dest.join("full.tar.gz");
    let target = tmp.path().join("live");
    write_tree(&target, 3, 1000);
    let old = tree_digest(&target);
    let a = archive.to_str().unwrap();
    let t = target.to_str().unwrap();
    let full = {
        let scratch = tmp.path().join("scratch");
        let d = timed_run(&["restore", a, "--target", scratch.to_str().unwrap()]);
        std::fs::remove_dir_all(&scratch).unwrap();
        d
    };
    let mut mid_run = 0;
    for (i, fraction) in KILL_FRACTIONS.iter().enumerate() {
        let delay = full.mul_f64(*fraction);
        let running = run_and_kill(&["restore", a, "--target", t], delay);
        let now = tree_digest(&target);
        if running && now != old {
            // Killed after the swap: the new content is complete, never a mix.
            let mut restored = tree_digest(&target);
            restored.retain(|(p, _, _)| p.starts_with("src"));
            assert_eq!(
                restored.len(),
                now.len(),
                "kill {i}: a mix of old and new content"
            );
            std::fs::remove_dir_all(&target).unwrap();
            write_tree(&target, 3, 1000);
        } else if running {
            mid_run += 1;
        } else {
            std::fs::remove_dir_all(&target).unwrap();
            write_tree(&target, 3, 1000);
        }
        assert_eq!(tree_digest(&target), old);
    }
    assert!(
        mid_run >= 2,
        "only {mid_run} of 6 kills landed before the swap"
    );
}

#[test]
fn help_lists_every_subcommand_and_no_progress_bar_without_a_terminal() {
    let tmp = cutover_tests::temp_dir();
    let out = bin().arg("--help").output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    let help = String::from_utf8_lossy(&out.stdout);
    for sub in ["create", "verify", "list", "restore", "prune"] {
        assert!(help.contains(sub), "{sub} missing from --help:\n{help}");
    }
    assert!(!help.contains("bench"), "the bench helper stays hidden");
    write_tree(&tmp.path().join("s"), 2, 100);
    let out = bin()
        .args(["create", "--id", "q", "--source"])
        .arg(tmp.path().join("s"))
        .arg("--dest")
        .arg(tmp.path().join("bk"))
        .output()
        .unwrap();
    assert!(out.status.success());
    // stderr is a pipe here: no bar, no log noise.
    assert!(
        out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn prune_sweeps_leftovers_of_killed_runs_with_dry_run() {
    let tmp = cutover_tests::temp_dir();
    let d = tmp.path();
    let dest = d.join("bk");
    std::fs::create_dir_all(&dest).unwrap();
    let target = d.join("srv/data");
    std::fs::create_dir_all(&target).unwrap();
    // pid_max itself is never a pid: the run that made these is gone.
    let dead: u32 = std::fs::read_to_string("/proc/sys/kernel/pid_max")
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let partial = dest.join(format!(".x.tar.gz.partial-{dead}-000000001"));
    std::fs::write(&partial, b"half").unwrap();
    let staging = d.join(format!("srv/.data.restore-{dead}-000000002"));
    std::fs::create_dir_all(staging.join("sub")).unwrap();
    let dest_s = dest.to_str().unwrap();
    let t = target.to_str().unwrap();
    let args = |extra: &[&'static str]| {
        let mut v = vec!["prune", "--json", dest_s, "--keep-last", "1"];
        v.extend_from_slice(&["--restore-target", t]);
        v.extend_from_slice(extra);
        v
    };
    // Fresh: kept under the default age of an hour.
    let (code, j, out) = run(&args(&[]), d);
    assert_eq!(code, 0, "{out}");
    let leftovers = j["report"]["leftovers"].as_array().unwrap();
    assert_eq!(leftovers.len(), 2, "{j}");
    assert!(leftovers.iter().all(|l| l["remove"] == false), "{j}");
    assert!(partial.exists() && staging.exists());
    // With a zero age: a dry run reports, the real run removes.
    let (code, j, out) = run(&args(&["--leftover-age", "0s", "--dry-run"]), d);
    assert_eq!(code, 0, "{out}");
    let leftovers = j["report"]["leftovers"].as_array().unwrap();
    assert!(leftovers.iter().all(|l| l["remove"] == true), "{j}");
    assert!(partial.exists() && staging.exists());
    let (code, _, out) = run(&args(&["--leftover-age", "0s"]), d);
    assert_eq!(code, 0, "{out}");
    assert!(!partial.exists() && !staging.exists());
    assert!(target.exists());
}

#[test]
fn names_with_control_characters_cannot_forge_table_lines() {
    let tmp = cutover_tests::temp_dir();
    let d = tmp.path();
    let src = d.join("conf");
    std::fs::create_dir(&src).unwrap();
    // A file name and a release that each try to start a line of their own.
    std::fs::write(src.join("evil\nFORGED-ENTRY x"), "x").unwrap();
    let dest = d.join("bk");
    let (code, _, out) = run(
        &[
            "create",
            "--source",
            src.to_str().unwrap(),
            "--dest",
            dest.to_str().unwrap(),
            "--id",
            "one",
            "--release",
            "r1\nFORGED-RELEASE\r\u{1b}[2K",
        ],
        d,
    );
    assert_eq!(code, 0, "{out}");
    // A leftover whose own name holds a newline.
    std::fs::write(dest.join(".x\nFORGED-LEFTOVER.tmp-1"), "").unwrap();

    let starts_forged = |out: &str| {
        out.lines()
            .any(|l| l.starts_with("FORGED") || l.contains('\r'))
    };
    let (code, _, out) = run(&["list", dest.to_str().unwrap()], d);
    assert_eq!(code, 0, "{out}");
    assert!(!starts_forged(&out), "a name forged a line:\n{out}");
    assert!(out.contains(r"r1\nFORGED-RELEASE\r\u{1b}[2K"), "{out}");
    assert!(out.contains(r".x\nFORGED-LEFTOVER.tmp-1"), "{out}");

    let target = d.join("restored");
    let archive = dest.join("one.tar.gz");
    let (code, _, out) = run(
        &[
            "restore",
            archive.to_str().unwrap(),
            "--target",
            target.to_str().unwrap(),
            "--dry-run",
        ],
        d,
    );
    assert_eq!(code, 0, "{out}");
    assert!(!starts_forged(&out), "an entry name forged a line:\n{out}");
    assert!(out.contains(r"conf/evil\nFORGED-ENTRY x"), "{out}");
}
