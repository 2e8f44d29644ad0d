//! Real archives on real files: round trips, GNU tar compatibility, corruption, hostile
//! archives, listing and pruning.

#![allow(clippy::print_stdout, clippy::print_stderr)]
// What a test measured or why it waits: shown by nextest.
// Helpers outside #[test] functions unwrap too: a failure there is a test failure.
#![allow(clippy::unwrap_used)]

use std::io::Write;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

use backup_archive::{
    BackupError, Compression, CreateOptions, NoProgress, RestoreOptions, RetentionPolicy,
    VerifyOptions, create, list, prune, restore, verify,
};

/// Both compressions: most tests run once with each, since every check must hold for both.
const CODECS: [Compression; 2] = Compression::ALL;

fn set_mtime(path: &Path, secs: u64) {
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs);
    std::fs::File::options()
        .write(true)
        .open(path)
        .unwrap()
        .set_modified(t)
        .unwrap();
}

/// A source tree with a bit of everything: modes, mtimes, a symlink, an empty directory, a
/// nested file, a large compressible file and a larger-than-one-block random one.
fn sample_tree(root: &Path) -> PathBuf {
    let src = root.join("app");
    std::fs::create_dir_all(src.join("conf/nested")).unwrap();
    std::fs::create_dir_all(src.join("empty")).unwrap();
    std::fs::write(src.join("conf/app.toml"), "port = 7000\n").unwrap();
    std::fs::write(src.join("conf/nested/secret.txt"), "s3cr3t\n").unwrap();
    std::fs::set_permissions(
        src.join("conf/nested/secret.txt"),
        std::fs::Permissions::from_mode(0o600),
    )
    .unwrap();
    std::fs::write(src.join("run.sh"), "#!/bin/sh\necho hi\n").unwrap();
    std::fs::set_permissions(src.join("run.sh"), std::fs::Permissions::from_mode(0o755)).unwrap();
    let text: String = (0..200_000)
        .map(|i| format!("line {i} of the log\n"))
        .collect();
    std::fs::write(src.join("big.log"), text).unwrap();
    let mut x = 12345u64;
    let random: Vec<u8> = (0..5 * 1024 * 1024)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect();
    std::fs::write(src.join("blob.bin"), random).unwrap();
    std::os::unix::fs::symlink("conf/app.toml", src.join("link")).unwrap();
    std::fs::write(src.join("debug.log.tmp"), "excluded").unwrap();
    for (i, f) in ["conf/app.toml", "run.sh", "big.log", "blob.bin"]
        .iter()
        .enumerate()
    {
        set_mtime(&src.join(f), 1_600_000_000 + i as u64 * 1000);
    }
    src
}

fn make_backup(root: &Path, id: &str) -> (PathBuf, PathBuf) {
    make_backup_with(root, id, Compression::Gzip)
}

fn make_backup_with(root: &Path, id: &str, compression: Compression) -> (PathBuf, PathBuf) {
    let src = sample_tree(root);
    let mut opts = CreateOptions::new(vec![src.clone()], root.join("backups"));
    opts.id = Some(id.into());
    opts.compression = compression;
    opts.exclude = vec!["*.tmp".into()];
    opts.release = Some("r1".into());
    let report = create(&opts, &NoProgress).unwrap();
    assert!(report.sidecar.is_file());
    (src, report.archive)
}

/// Every path under `root` with its kind, mode, mtime and content or link target.
fn snapshot(root: &Path) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for e in walkdir::WalkDir::new(root).min_depth(1).sort_by_file_name() {
        let e = e.unwrap();
        let rel = e.path().strip_prefix(root).unwrap().display().to_string();
        let m = std::fs::symlink_metadata(e.path()).unwrap();
        let what = if m.file_type().is_symlink() {
            format!(
                "link {} mtime {}",
                std::fs::read_link(e.path()).unwrap().display(),
                m.mtime()
            )
        } else if m.is_dir() {
            format!("dir {:o}", m.mode() & 0o7777)
        } else {
            let bytes = std::fs::read(e.path()).unwrap();
            let sum: u64 = bytes.iter().map(|&b| u64::from(b)).sum();
            format!(
                "file {:o} mtime {} len {} sum {sum}",
                m.mode() & 0o7777,
                m.mtime(),
                bytes.len()
            )
        };
        out.push((rel, what));
    }
    out
}

#[test]
fn round_trip_preserves_contents_modes_mtimes_symlinks_and_empty_dirs() {
    for codec in CODECS {
        round_trip(codec);
    }
}

fn round_trip(codec: Compression) {
    let tmp = tempfile::tempdir().unwrap();
    let (src, archive) = make_backup_with(tmp.path(), "b1", codec);
    assert_eq!(
        archive.file_name().unwrap().to_string_lossy(),
        format!("b1.{}", codec.extension())
    );
    assert_eq!(Compression::of_file(&archive).unwrap(), codec);
    let r = verify(&archive, &VerifyOptions::default(), &NoProgress).unwrap();
    assert!(r.ok, "{codec}: {r:?}");
    let target = tmp.path().join("restored");
    let report = restore(&archive, &RestoreOptions::new(&target), &NoProgress).unwrap();
    assert!(report.entries >= 9, "{report:?}");
    let mut expected = snapshot(&src);
    expected.retain(|(p, _)| !p.ends_with(".tmp"));
    assert_eq!(snapshot(&target.join("app")), expected);
    // The target holds the archive's content and nothing else (no manifest file).
    let top: Vec<_> = std::fs::read_dir(&target)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(top, ["app"]);
    assert_eq!(
        std::fs::metadata(target.join("app")).unwrap().mode() & 0o777,
        std::fs::metadata(&src).unwrap().mode() & 0o777
    );
    assert!(!target.join(".cutover-manifest.json").exists());
}

#[test]
fn gnu_tar_lists_and_extracts_our_archives() {
    let tmp = tempfile::tempdir().unwrap();
    let (src, archive) = make_backup(tmp.path(), "b1");
    let listed = Command::new("tar")
        .arg("-tzf")
        .arg(&archive)
        .output()
        .expect("GNU tar (Debian package `tar`)");
    assert!(
        listed.status.success(),
        "{}",
        String::from_utf8_lossy(&listed.stderr)
    );
    let names = String::from_utf8(listed.stdout).unwrap();
    for want in [
        "app/conf/app.toml",
        "app/empty/",
        "app/link",
        "app/blob.bin",
        ".cutover-manifest.json",
    ] {
        assert!(
            names.lines().any(|l| l == want),
            "{want} missing from:\n{names}"
        );
    }
    let out = tmp.path().join("gnu");
    std::fs::create_dir(&out).unwrap();
    let x = Command::new("tar")
        .arg("-xzf")
        .arg(&archive)
        .arg("-C")
        .arg(&out)
        .output()
        .unwrap();
    assert!(x.status.success(), "{}", String::from_utf8_lossy(&x.stderr));
    assert_eq!(
        std::fs::read(out.join("app/blob.bin")).unwrap(),
        std::fs::read(src.join("blob.bin")).unwrap()
    );
    assert_eq!(
        std::fs::read_link(out.join("app/link")).unwrap(),
        Path::new("conf/app.toml")
    );
    assert_eq!(
        std::fs::metadata(out.join("app/run.sh")).unwrap().mode() & 0o777,
        0o755
    );
    // gzip itself agrees the multi-member stream is sound.
    let t = Command::new("gzip")
        .arg("-t")
        .arg(&archive)
        .output()
        .unwrap();
    assert!(t.status.success());
}

#[test]
fn gnu_tar_lists_and_extracts_our_zstd_archives() {
    let tmp = tempfile::tempdir().unwrap();
    let (src, archive) = make_backup_with(tmp.path(), "z1", Compression::Zstd);
    assert!(archive.to_string_lossy().ends_with("z1.tar.zst"));
    let listed = Command::new("tar")
        .arg("--zstd")
        .arg("-tf")
        .arg(&archive)
        .output()
        .expect("GNU tar (Debian package `tar`)");
    assert!(
        listed.status.success(),
        "tar --zstd -tf (needs the `zstd` program, Debian package `zstd`): {}",
        String::from_utf8_lossy(&listed.stderr)
    );
    let names = String::from_utf8(listed.stdout).unwrap();
    assert_eq!(names.lines().next(), Some(".cutover-manifest.json"));
    for want in [
        "app/conf/app.toml",
        "app/empty/",
        "app/link",
        "app/blob.bin",
    ] {
        assert!(
            names.lines().any(|l| l == want),
            "{want} missing from:\n{names}"
        );
    }
    let out = tmp.path().join("gnu");
    std::fs::create_dir(&out).unwrap();
    let x = Command::new("tar")
        .arg("--zstd")
        .arg("-xf")
        .arg(&archive)
        .arg("-C")
        .arg(&out)
        .output()
        .unwrap();
    assert!(x.status.success(), "{}", String::from_utf8_lossy(&x.stderr));
    let mut expected = snapshot(&src);
    expected.retain(|(p, _)| !p.ends_with(".tmp"));
    assert_eq!(snapshot(&out.join("app")), expected);
    // zstd itself agrees the stream (and every frame's checksum) is sound.
    let t = Command::new("zstd")
        .arg("-tq")
        .arg(&archive)
        .output()
        .expect("zstd (Debian package `zstd`)");
    assert!(t.status.success(), "{}", String::from_utf8_lossy(&t.stderr));
}

#[test]
fn the_format_comes_from_the_magic_number_not_the_name() {
    let tmp = tempfile::tempdir().unwrap();
    let (_, archive) = make_backup_with(tmp.path(), "z1", Compression::Zstd);
    // A zstd archive under a gzip name (sidecar renamed alongside) still verifies and restores.
    let dir = tmp.path().join("backups");
    let disguised = dir.join("z2.tar.gz");
    std::fs::rename(&archive, &disguised).unwrap();
    let mut side: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("z1.json")).unwrap()).unwrap();
    side["archive"] = "z2.tar.gz".into();
    std::fs::write(dir.join("z2.json"), side.to_string()).unwrap();
    std::fs::remove_file(dir.join("z1.json")).unwrap();
    assert_eq!(Compression::of_file(&disguised).unwrap(), Compression::Zstd);
    let r = verify(&disguised, &VerifyOptions::default(), &NoProgress).unwrap();
    assert!(r.ok, "{r:?}");
    let target = tmp.path().join("t");
    restore(&disguised, &RestoreOptions::new(&target), &NoProgress).unwrap();
    assert!(target.join("app/conf/app.toml").is_file());
    // list reports what the bytes say.
    let l = list(&dir).unwrap();
    assert_eq!(l.backups[0].compression, Some(Compression::Zstd));
    // Neither magic number: corrupt, and the message says what the file starts with.
    for (name, bytes) in [
        ("x.tar.zst", &b"BZh91AY&SY"[..]),
        ("e.tar.gz", b""),
        ("t.tar.gz", b"app/\0\0\0"),
    ] {
        let path = dir.join(name);
        std::fs::write(&path, bytes).unwrap();
        let r = verify(&path, &VerifyOptions::default(), &NoProgress).unwrap();
        let p = r.problem.expect("refused");
        assert_eq!(p.kind, "corrupt", "{name}");
        assert!(
            p.reason.contains("not a gzip or zstd archive"),
            "{name}: {p}"
        );
        let err = restore(
            &path,
            &RestoreOptions {
                require_sidecar: false,
                ..RestoreOptions::new(tmp.path().join("never"))
            },
            &NoProgress,
        )
        .unwrap_err();
        assert!(err.is_integrity(), "{err}");
        assert!(!tmp.path().join("never").exists());
        assert!(Compression::of_file(&path).is_err());
    }
    assert!(
        Compression::of_file(&dir.join("x.tar.zst"))
            .unwrap_err()
            .to_string()
            .contains("42 5a 68 39")
    );
}

#[test]
fn verify_passes_on_a_good_archive_and_records_it() {
    let tmp = tempfile::tempdir().unwrap();
    let (_, archive) = make_backup(tmp.path(), "b1");
    let r = verify(
        &archive,
        &VerifyOptions {
            record: true,
            ..Default::default()
        },
        &NoProgress,
    )
    .unwrap();
    assert!(r.ok, "{r:?}");
    let l = list(&tmp.path().join("backups")).unwrap();
    assert!(l.backups[0].verified());
}

#[test]
fn verify_fails_when_the_sidecar_disagrees_or_is_damaged() {
    let tmp = tempfile::tempdir().unwrap();
    let (_, archive) = make_backup(tmp.path(), "b1");
    let side = tmp.path().join("backups/b1.json");
    let text = std::fs::read_to_string(&side).unwrap();
    let mut v: serde_json::Value = serde_json::from_str(&text).unwrap();
    v["archive_sha256"] = serde_json::Value::String("00".repeat(32));
    std::fs::write(&side, serde_json::to_vec(&v).unwrap()).unwrap();
    let r = verify(&archive, &VerifyOptions::default(), &NoProgress).unwrap();
    assert!(
        r.problem
            .unwrap()
            .reason
            .contains("differs from the sidecar")
    );
    std::fs::write(&side, "{ not json").unwrap();
    let r = verify(&archive, &VerifyOptions::default(), &NoProgress).unwrap();
    assert!(r.problem.unwrap().reason.contains("unreadable"));
    std::fs::remove_file(&side).unwrap();
    let r = verify(&archive, &VerifyOptions::default(), &NoProgress).unwrap();
    assert!(r.problem.unwrap().reason.contains("sidecar is missing"));
}

fn flip_byte(path: &Path, at: u64) {
    let mut bytes = std::fs::read(path).unwrap();
    let i = usize::try_from(at).unwrap();
    bytes[i] ^= 0x55;
    std::fs::write(path, bytes).unwrap();
}

#[test]
fn flipped_byte_is_detected_by_verify_and_restore_changes_nothing() {
    for codec in CODECS {
        flipped_byte_is_detected(codec);
    }
}

fn flipped_byte_is_detected(codec: Compression) {
    let tmp = tempfile::tempdir().unwrap();
    let (_, archive) = make_backup_with(tmp.path(), "b1", codec);
    let len = std::fs::metadata(&archive).unwrap().len();
    for at in [len / 3, len / 2, len - 3] {
        let copy = tmp
            .path()
            .join(format!("backups/copy.{}", codec.extension()));
        std::fs::copy(&archive, &copy).unwrap();
        std::fs::copy(
            tmp.path().join("backups/b1.json"),
            tmp.path().join("backups/copy.json"),
        )
        .unwrap();
        flip_byte(&copy, at);
        let r = verify(&copy, &VerifyOptions::default(), &NoProgress).unwrap();
        assert!(!r.ok, "{codec}: flip at {at} not detected");
        let p = r.problem.unwrap();
        assert_eq!(p.kind, "corrupt");

        let target = tmp.path().join("live");
        std::fs::create_dir_all(&target).unwrap();
        std::fs::write(target.join("keep.txt"), "old").unwrap();
        let before = snapshot(&target);
        let err = restore(&copy, &RestoreOptions::new(&target), &NoProgress).unwrap_err();
        assert!(err.is_integrity(), "{codec}: {err}");
        assert_eq!(snapshot(&target), before);
        assert_no_leftovers(tmp.path());
    }
}

#[test]
fn flipped_byte_inside_a_file_names_that_entry() {
    // Level 0 stores content verbatim, so the flip lands inside a known file. gzip's CRC only
    // fails at the end of the member; the entry's own hash, checked against the manifest (the
    // first entry) as soon as the entry has been read, names it first.
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("d");
    std::fs::create_dir(&src).unwrap();
    std::fs::write(src.join("a.txt"), vec![b'a'; 100_000]).unwrap();
    std::fs::write(src.join("b.txt"), vec![b'b'; 100_000]).unwrap();
    let mut opts = CreateOptions::new(vec![src], tmp.path().join("bk"));
    opts.id = Some("x".into());
    opts.level = Some(0);
    let made = create(&opts, &NoProgress).unwrap();
    let bytes = std::fs::read(&made.archive).unwrap();
    let pos = bytes
        .windows(64)
        .position(|w| w.iter().all(|&b| b == b'b'))
        .unwrap() as u64
        + 10;
    flip_byte(&made.archive, pos);
    let r = verify(&made.archive, &VerifyOptions::default(), &NoProgress).unwrap();
    let p = r.problem.expect("damage found");
    assert_eq!(p.entry.as_deref(), Some("d/b.txt"), "{p:?}");
}

#[test]
fn truncated_archive_is_detected_by_verify_and_restore() {
    for codec in CODECS {
        truncated_archive_is_detected(codec);
    }
}

fn truncated_archive_is_detected(codec: Compression) {
    let tmp = tempfile::tempdir().unwrap();
    let (_, archive) = make_backup_with(tmp.path(), "b1", codec);
    let len = std::fs::metadata(&archive).unwrap().len();
    for keep in [0, 3, 10, len / 2, len - 1] {
        let copy = tmp.path().join(format!("backups/t.{}", codec.extension()));
        std::fs::copy(&archive, &copy).unwrap();
        std::fs::File::options()
            .write(true)
            .open(&copy)
            .unwrap()
            .set_len(keep)
            .unwrap();
        let r = verify(&copy, &VerifyOptions::default(), &NoProgress).unwrap();
        assert!(!r.ok, "{codec}: truncation to {keep} not detected");
        let target = tmp.path().join("live");
        let err = restore(
            &copy,
            &RestoreOptions {
                require_sidecar: false,
                ..RestoreOptions::new(&target)
            },
            &NoProgress,
        )
        .unwrap_err();
        assert!(err.is_integrity(), "{codec}: {err}");
        assert!(!target.exists());
    }
}

#[test]
fn restore_replaces_the_target_and_dry_run_reports_the_difference() {
    let tmp = tempfile::tempdir().unwrap();
    let (_, archive) = make_backup(tmp.path(), "b1");
    let target = tmp.path().join("live");
    restore(&archive, &RestoreOptions::new(&target), &NoProgress).unwrap();
    std::fs::write(target.join("app/conf/app.toml"), "port = 1\n").unwrap();
    std::fs::write(target.join("stray.txt"), "x").unwrap();
    std::fs::remove_file(target.join("app/run.sh")).unwrap();
    let before = snapshot(&target);
    let dry = RestoreOptions {
        dry_run: true,
        ..RestoreOptions::new(&target)
    };
    let r = restore(&archive, &dry, &NoProgress).unwrap();
    assert_eq!(snapshot(&target), before, "dry run changed the target");
    assert_eq!(r.diff.added, vec!["app/run.sh"]);
    assert_eq!(r.diff.changed, vec!["app/conf/app.toml"]);
    assert_eq!(r.diff.removed, vec!["stray.txt"]);
    restore(&archive, &RestoreOptions::new(&target), &NoProgress).unwrap();
    assert_eq!(
        std::fs::read_to_string(target.join("app/conf/app.toml")).unwrap(),
        "port = 7000\n"
    );
    assert!(!target.join("stray.txt").exists());
    assert_no_leftovers(tmp.path());
}

/// Nothing hidden (staging, aside, temp) remains beside the targets and backups.
fn assert_no_leftovers(dir: &Path) {
    for e in walkdir::WalkDir::new(dir).max_depth(2) {
        let e = e.unwrap();
        let name = e.file_name().to_string_lossy();
        assert!(
            !(name.contains(".restore-")
                || name.contains(".previous-")
                || name.contains(".partial-")),
            "leftover {}",
            e.path().display()
        );
    }
}

// ---- hostile archives, built byte by byte ----

struct Raw {
    tar: Vec<u8>,
}

impl Raw {
    fn new() -> Self {
        Self { tar: Vec::new() }
    }

    /// An archive that starts with a manifest listing `entries` (so that the checks after the
    /// first entry are reached).
    fn manifested(entries: serde_json::Value) -> Self {
        let manifest = serde_json::json!({
            "metadata": {
                "format": 1, "id": "hostile", "created": "2025-01-01T00:00:00Z", "host": "h",
                "service": null, "release": null, "commit": null, "cutover_version": "0",
                "sources": [],
            },
            "entries": entries,
        });
        Self::new().file(
            backup_archive::MANIFEST_ENTRY,
            &serde_json::to_vec(&manifest).unwrap(),
        )
    }

    /// A PAX extended header whose `size` record says `pax_size`, for the entry after it.
    fn pax_size(self, name: &str, pax_size: u64) -> Self {
        let body = format!(" size={pax_size}\n");
        // The record's length counts its own digits.
        let mut len = body.len() + 1;
        while format!("{len}{body}").len() != len {
            len += 1;
        }
        let record = format!("{len}{body}");
        self.entry(
            &format!("PaxHeader/{name}"),
            tar::EntryType::XHeader,
            0o644,
            record.len() as u64,
            "",
            record.as_bytes(),
        )
    }

    /// Appends raw bytes (an entry's payload whose header lied about its size), padded.
    fn payload(mut self, data: &[u8]) -> Self {
        self.tar.extend_from_slice(data);
        let pad = (512 - data.len() % 512) % 512;
        self.tar.extend(std::iter::repeat_n(0u8, pad));
        self
    }

    fn entry(
        mut self,
        name: &str,
        kind: tar::EntryType,
        mode: u32,
        size: u64,
        link: &str,
        data: &[u8],
    ) -> Self {
        let mut h = tar::Header::new_gnu();
        {
            let old = h.as_old_mut();
            old.name[..name.len()].copy_from_slice(name.as_bytes());
            old.linkname[..link.len()].copy_from_slice(link.as_bytes());
        }
        h.set_entry_type(kind);
        h.set_mode(mode);
        h.set_size(size);
        h.set_mtime(1_600_000_000);
        h.set_cksum();
        self.tar.extend_from_slice(h.as_bytes());
        self.tar.extend_from_slice(data);
        let pad = (512 - data.len() % 512) % 512;
        self.tar.extend(std::iter::repeat_n(0u8, pad));
        self
    }

    fn file(self, name: &str, data: &[u8]) -> Self {
        self.entry(
            name,
            tar::EntryType::Regular,
            0o644,
            data.len() as u64,
            "",
            data,
        )
    }

    /// Writes the archive gzip-compressed.
    fn write(self, path: &Path) {
        self.write_as(path, Compression::Gzip);
    }

    /// Writes the archive with `codec`: the hostile content is the same either way.
    fn write_as(mut self, path: &Path, codec: Compression) {
        self.tar.extend(std::iter::repeat_n(0u8, 1024));
        let bytes = match codec {
            Compression::Gzip => {
                let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
                gz.write_all(&self.tar).unwrap();
                gz.finish().unwrap()
            }
            Compression::Zstd => zstd::encode_all(&self.tar[..], 1).unwrap(),
        };
        std::fs::write(path, bytes).unwrap();
    }
}

#[test]
fn hostile_archives_are_refused_and_nothing_is_written_outside() {
    for codec in CODECS {
        hostile_archives_are_refused(codec);
    }
}

fn hostile_archives_are_refused(codec: Compression) {
    use tar::EntryType as T;
    let m = || Raw::manifested(serde_json::json!([]));
    let cases: Vec<(&str, Raw, &str)> = vec![
        ("absolute", m().file("/tmp/evil", b"x"), "absolute"),
        ("dotdot", m().file("a/../../outside/evil", b"x"), ".."),
        (
            "symlink-out",
            m().entry("esc", T::Symlink, 0o777, 0, "../outside", b"")
                .file("esc/evil", b"x"),
            "points outside",
        ),
        (
            "symlink-abs",
            m().entry("esc", T::Symlink, 0o777, 0, "/tmp", b"")
                .file("esc/evil", b"x"),
            "absolute",
        ),
        (
            "write-through-symlink",
            // The first two entries are sound and listed, so that the third is reached.
            Raw::manifested(serde_json::json!([
                {"path": "d", "kind": "dir", "size": 0, "mode": 0o755, "mtime": 1_600_000_000u64},
                {"path": "d/l", "kind": "symlink", "size": 0, "mode": 0o777,
                 "mtime": 1_600_000_000u64, "link": ".."},
            ]))
            .entry("d", T::Directory, 0o755, 0, "", b"")
            .entry("d/l", T::Symlink, 0o777, 0, "..", b"")
            .file("d/l/evil", b"x"),
            "through the symlink",
        ),
        (
            "hardlink-out",
            m().entry("h", T::Link, 0o644, 0, "../outside/secret", b""),
            "..",
        ),
        (
            "hardlink-abs",
            m().entry("h", T::Link, 0o644, 0, "/etc/passwd", b""),
            "absolute",
        ),
        (
            "hardlink-unknown",
            m().entry("h", T::Link, 0o644, 0, "nothere", b""),
            "not an earlier file",
        ),
        (
            "device",
            m().entry("dev", T::Char, 0o644, 0, "", b""),
            "device",
        ),
        ("fifo", m().entry("p", T::Fifo, 0o644, 0, "", b""), "fifo"),
        (
            "setuid",
            m().entry("s", T::Regular, 0o4755, 1, "", b"x"),
            "setuid",
        ),
        (
            "huge",
            m().entry("big", T::Regular, 0o644, 1 << 40, "", b""),
            "cap",
        ),
    ];
    for (case, raw, reason) in cases {
        let tmp = tempfile::tempdir().unwrap();
        let outside = tmp.path().join("outside");
        std::fs::create_dir(&outside).unwrap();
        std::fs::write(outside.join("secret"), "secret").unwrap();
        let name = format!("hostile.{}", codec.extension());
        let archive = tmp.path().join(&name);
        raw.write_as(&archive, codec);
        let target = tmp.path().join("target");
        std::fs::create_dir(&target).unwrap();
        std::fs::write(target.join("live.txt"), "live").unwrap();
        let opts = RestoreOptions {
            require_sidecar: false,
            ..RestoreOptions::new(&target)
        };
        let err = restore(&archive, &opts, &NoProgress).unwrap_err();
        match &err {
            BackupError::Refused { reason: r, .. } => {
                assert!(r.contains(reason), "{codec} {case}: {err}")
            }
            other => panic!("{codec} {case}: expected a refusal, got {other}"),
        }
        let mut around: Vec<String> = std::fs::read_dir(tmp.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        around.sort();
        assert_eq!(
            around,
            [name.as_str(), "outside", "target"],
            "{codec} {case}: staging left behind"
        );
        assert_eq!(snapshot(&outside).len(), 1, "{codec} {case}: wrote outside");
        assert_eq!(
            std::fs::read_to_string(outside.join("secret")).unwrap(),
            "secret"
        );
        assert_eq!(snapshot(&target).len(), 1, "{codec} {case}: target changed");
        // verify refuses it too.
        let r = verify(&archive, &VerifyOptions::default(), &NoProgress).unwrap();
        assert_eq!(r.problem.map(|p| p.kind), Some("refused"), "{codec} {case}");
    }
}

#[test]
fn a_plain_tar_without_manifest_is_corrupt_not_restored() {
    for codec in CODECS {
        plain_tar_refused(codec);
    }
}

fn plain_tar_refused(codec: Compression) {
    let tmp = tempfile::tempdir().unwrap();
    let archive = tmp.path().join(format!("plain.{}", codec.extension()));
    Raw::new().file("ok.txt", b"fine").write_as(&archive, codec);
    let target = tmp.path().join("t");
    let opts = RestoreOptions {
        require_sidecar: false,
        ..RestoreOptions::new(&target)
    };
    let err = restore(&archive, &opts, &NoProgress).unwrap_err();
    assert!(err.to_string().contains("manifest"), "{err}");
    assert!(!target.exists());
    // Without --allow-missing-sidecar even a sound archive is refused when its sidecar is gone.
    let (_, good) = make_backup_with(tmp.path(), "g", codec);
    std::fs::remove_file(tmp.path().join("backups/g.json")).unwrap();
    let err = restore(&good, &RestoreOptions::new(&target), &NoProgress).unwrap_err();
    assert!(err.to_string().contains("sidecar is missing"), "{err}");
}

#[test]
fn a_zstd_frame_asking_for_a_huge_window_is_refused_before_it_is_decoded() {
    // A frame header by hand: magic, a descriptor with no content size and no single segment,
    // a window descriptor of 2^31 bytes (exponent 21), then one empty last raw block. libzstd
    // would have to allocate 2 GiB to decode it.
    let mut frame = vec![0x28, 0xb5, 0x2f, 0xfd, 0x00, 21 << 3];
    frame.extend_from_slice(&[0x01, 0x00, 0x00]);
    let tmp = tempfile::tempdir().unwrap();
    let archive = tmp.path().join("bomb.tar.zst");
    std::fs::write(&archive, &frame).unwrap();
    let r = verify(&archive, &VerifyOptions::default(), &NoProgress).unwrap();
    let p = r.problem.expect("refused");
    assert_eq!(p.kind, "corrupt", "{p}");
    let target = tmp.path().join("t");
    let opts = RestoreOptions {
        require_sidecar: false,
        ..RestoreOptions::new(&target)
    };
    let err = restore(&archive, &opts, &NoProgress).unwrap_err();
    assert!(err.is_integrity(), "{err}");
    assert!(!target.exists());
    assert_no_leftovers(tmp.path());
    // The same header with a window the cap allows (2^27) is read as an empty stream, which
    // fails only for lacking a manifest: the refusal above was the window's.
    frame[5] = 17 << 3;
    std::fs::write(&archive, &frame).unwrap();
    let p = verify(&archive, &VerifyOptions::default(), &NoProgress)
        .unwrap()
        .problem
        .unwrap();
    assert!(p.reason.contains("no manifest"), "{p}");
}

// ---- hostile archives are refused before their data is written ----

/// `len` bytes that gzip cannot shrink, so that reading the compressed archive takes as long
/// as extracting it and a [`StagingWatch`] sees the extraction as it happens.
fn incompressible(len: usize) -> Vec<u8> {
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// A progress observer that, each time the reader takes compressed bytes, measures what sits
/// in restore staging directories under `dir` and keeps the largest total seen. The reader
/// runs at most a few blocks ahead of the extraction, so this sees the writes as they happen.
struct StagingWatch {
    dir: PathBuf,
    most: std::sync::atomic::AtomicU64,
    calls: std::sync::atomic::AtomicU64,
}

impl StagingWatch {
    fn new(dir: &Path) -> Self {
        Self {
            dir: dir.to_path_buf(),
            most: 0.into(),
            calls: 0.into(),
        }
    }

    fn staged_bytes(&self) -> u64 {
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return 0;
        };
        entries
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().contains(".restore-"))
            .flat_map(|e| walkdir::WalkDir::new(e.path()).into_iter().flatten())
            .filter_map(|e| e.metadata().ok())
            .filter(|m| m.is_file())
            .map(|m| m.len())
            .sum()
    }

    fn most(&self) -> u64 {
        self.most.load(std::sync::atomic::Ordering::Relaxed)
    }
}

impl backup_archive::Progress for StagingWatch {
    fn start(&self, _total: u64) {}
    fn advance(&self, _bytes: u64) {
        use std::sync::atomic::Ordering::Relaxed;
        self.calls.fetch_add(1, Relaxed);
        self.most.fetch_max(self.staged_bytes(), Relaxed);
    }
    fn finish(&self) {}
}

const MIB: u64 = 1024 * 1024;

#[test]
fn a_pax_size_larger_than_the_header_is_refused_before_its_payload_is_written() {
    for codec in CODECS {
        pax_size_refused(codec);
    }
}

fn pax_size_refused(codec: Compression) {
    let tmp = tempfile::tempdir().unwrap();
    let cap = 4 * MIB;
    let payload = incompressible(24 * MIB as usize);
    let archive = tmp.path().join(format!("pax.{}", codec.extension()));
    // The header (and the manifest) say 10 bytes; the PAX record says 24 MiB, which the tar
    // layer would read.
    Raw::manifested(serde_json::json!([
        {"path": "big", "kind": "file", "size": 10, "mode": 420, "mtime": 1_600_000_000u64,
         "sha256": "00"}
    ]))
    .pax_size("big", payload.len() as u64)
    .entry("big", tar::EntryType::Regular, 0o644, 10, "", b"")
    .payload(&payload)
    .write_as(&archive, codec);
    let target = tmp.path().join("target");
    let mut opts = RestoreOptions {
        require_sidecar: false,
        ..RestoreOptions::new(&target)
    };
    opts.limits.max_bytes = cap;
    let watch = StagingWatch::new(tmp.path());
    let err = restore(&archive, &opts, &watch).unwrap_err();
    let written = watch.most();
    eprintln!(
        "largest staging content seen: {written} bytes over {} reads (cap {cap})",
        watch.calls.load(std::sync::atomic::Ordering::Relaxed)
    );
    match &err {
        BackupError::Refused { entry, reason, .. } => {
            assert_eq!(entry, "big", "{err}");
            assert!(reason.contains("PAX size record"), "{err}");
        }
        other => panic!("expected the PAX/header disagreement refused, got: {other}"),
    }
    assert!(
        written <= cap,
        "{written} bytes were written into staging, more than the {cap} byte cap"
    );
    assert!(!target.exists());
    assert_no_leftovers(tmp.path());
    let report = verify(&archive, &VerifyOptions::default(), &NoProgress).unwrap();
    assert_eq!(report.problem.map(|p| p.kind), Some("refused"));
}

#[test]
fn a_manifest_declaring_more_than_the_cap_is_refused_before_any_entry() {
    for codec in CODECS {
        declared_total_refused(codec);
    }
}

fn declared_total_refused(codec: Compression) {
    let tmp = tempfile::tempdir().unwrap();
    let archive = tmp.path().join(format!("declared.{}", codec.extension()));
    let data = incompressible(MIB as usize);
    // Each entry fits the cap alone; the manifest's total does not.
    let record = |name: &str| {
        serde_json::json!({"path": name, "kind": "file", "size": MIB, "mode": 420,
                           "mtime": 1_600_000_000u64, "sha256": "00"})
    };
    Raw::manifested(serde_json::json!([record("a"), record("b"), record("c")]))
        .file("a", &data)
        .file("b", &data)
        .file("c", &data)
        .write_as(&archive, codec);
    let target = tmp.path().join("target");
    let mut opts = RestoreOptions {
        require_sidecar: false,
        ..RestoreOptions::new(&target)
    };
    opts.limits.max_bytes = 2 * MIB;
    let watch = StagingWatch::new(tmp.path());
    let err = restore(&archive, &opts, &watch).unwrap_err();
    match &err {
        BackupError::Refused { entry, reason, .. } => {
            assert_eq!(entry, backup_archive::MANIFEST_ENTRY, "{err}");
            assert!(reason.contains(&format!("declares {}", 3 * MIB)), "{err}");
        }
        other => panic!("expected the manifest refused, got: {other}"),
    }
    assert_eq!(watch.most(), 0, "nothing was extracted");
    assert_no_leftovers(tmp.path());
}

#[test]
fn no_sidecar_or_no_manifest_is_refused_before_anything_is_extracted() {
    let tmp = tempfile::tempdir().unwrap();
    let archive = tmp.path().join("plain.tar.gz");
    Raw::new()
        .file("data.bin", &incompressible(16 * MIB as usize))
        .write(&archive);
    let target = tmp.path().join("target");

    // With the sidecar required (the default), its absence is enough: nothing is even read.
    let watch = StagingWatch::new(tmp.path());
    let err = restore(&archive, &RestoreOptions::new(&target), &watch).unwrap_err();
    assert!(err.to_string().contains("sidecar is missing"), "{err}");
    assert!(
        err.to_string().contains("plain.json"),
        "names the sidecar: {err}"
    );
    assert_eq!(watch.most(), 0);
    assert_eq!(watch.calls.load(std::sync::atomic::Ordering::Relaxed), 0);

    // Without it, the first entry must be the manifest.
    let opts = RestoreOptions {
        require_sidecar: false,
        ..RestoreOptions::new(&target)
    };
    let watch = StagingWatch::new(tmp.path());
    let err = restore(&archive, &opts, &watch).unwrap_err();
    match &err {
        BackupError::Corrupt { entry, reason, .. } => {
            assert_eq!(entry.as_deref(), Some("data.bin"), "{err}");
            assert!(reason.contains("not the manifest"), "{err}");
        }
        other => panic!("expected a missing manifest, got: {other}"),
    }
    assert_eq!(watch.most(), 0, "data.bin was not extracted");
    assert!(!target.exists());
    assert_no_leftovers(tmp.path());
}

/// A tmpfs of `size` bytes mounted on a fresh directory, unmounted (lazily if busy) on drop.
struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    fn mount(size: u64) -> Self {
        let uid = Command::new("id").arg("-u").output().unwrap();
        assert_eq!(
            String::from_utf8_lossy(&uid.stdout).trim(),
            "0",
            "this test mounts a small tmpfs and must run as root (CI does)"
        );
        let dir = tempfile::tempdir().unwrap();
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .status()
            .unwrap();
        assert!(status.success(), "mount -t tmpfs failed: {status}");
        Self { dir }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let unmounted = Command::new("umount")
            .arg(self.dir.path())
            .status()
            .is_ok_and(|s| s.success());
        if !unmounted {
            let _ = Command::new("umount")
                .arg("-l")
                .arg(self.dir.path())
                .status();
        }
    }
}

#[test]
fn a_restore_larger_than_the_free_space_is_refused_before_extracting() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("data");
    std::fs::create_dir(&src).unwrap();
    std::fs::write(src.join("blob.bin"), incompressible(12 * MIB as usize)).unwrap();
    let mut opts = CreateOptions::new(vec![src], tmp.path().join("backups"));
    opts.id = Some("big".into());
    let made = create(&opts, &NoProgress).unwrap();

    let small = Tmpfs::mount(8 * MIB);
    let target = small.path().join("data");
    let watch = StagingWatch::new(small.path());
    let err = restore(&made.archive, &RestoreOptions::new(&target), &watch).unwrap_err();
    match &err {
        BackupError::NoSpace {
            path,
            needed,
            available,
            ..
        } => {
            assert_eq!(path, small.path(), "{err}");
            assert!(*needed >= 12 * MIB && *available <= 8 * MIB, "{err}");
        }
        other => panic!("expected too little free space, got: {other}"),
    }
    let text = err.to_string();
    assert!(text.contains("free space") && text.contains(&small.path().display().to_string()));
    assert_eq!(watch.most(), 0, "nothing was extracted");
    assert!(!target.exists());
    assert_no_leftovers(small.path());
}

// ---- list and prune ----

fn backup_at(root: &Path, dest: &Path, id: &str, at: &str) {
    let src = root.join("src");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("f"), id).unwrap();
    let mut opts = CreateOptions::new(vec![src], dest);
    opts.id = Some(id.into());
    opts.created = Some(at.parse().unwrap());
    create(&opts, &NoProgress).unwrap();
}

#[test]
fn list_orders_by_recorded_time_not_mtime_and_flags_incomplete() {
    let tmp = tempfile::tempdir().unwrap();
    let dest = tmp.path().join("bk");
    backup_at(tmp.path(), &dest, "zz-oldest", "2024-01-01T00:00:00Z");
    backup_at(tmp.path(), &dest, "aa-newest", "2025-06-01T00:00:00Z");
    backup_at(tmp.path(), &dest, "mm-middle", "2025-01-01T00:00:00Z");
    // Make mtimes lie: the oldest backup gets the newest mtime.
    set_mtime(&dest.join("zz-oldest.json"), 2_000_000_000);
    set_mtime(&dest.join("zz-oldest.tar.gz"), 2_000_000_000);
    std::fs::write(dest.join("orphan.tar.gz"), b"half").unwrap();
    std::fs::write(dest.join(".x.tar.gz.partial-1-2"), b"half").unwrap();
    let l = list(&dest).unwrap();
    let ids: Vec<&str> = l.backups.iter().map(|b| b.id.as_str()).collect();
    assert_eq!(ids, ["zz-oldest", "mm-middle", "aa-newest"]);
    assert_eq!(l.incomplete.len(), 2, "{:?}", l.incomplete);
}

#[test]
fn prune_dry_run_removes_nothing_and_keeps_newest_verified() {
    let tmp = tempfile::tempdir().unwrap();
    let dest = tmp.path().join("bk");
    for (i, day) in ["01", "02", "03", "04", "05"].iter().enumerate() {
        backup_at(
            tmp.path(),
            &dest,
            &format!("b{i}"),
            &format!("2025-01-{day}T12:00:00Z"),
        );
    }
    // Only b1 is verified; keep_last=1 keeps b4, the rule keeps b1.
    verify(
        &dest.join("b1.tar.gz"),
        &VerifyOptions {
            record: true,
            ..Default::default()
        },
        &NoProgress,
    )
    .unwrap();
    let policy = RetentionPolicy {
        keep_last: 1,
        ..Default::default()
    };
    let dry = prune(&dest, &policy, true).unwrap();
    assert_eq!(dry.removed, ["b3", "b2", "b0"]);
    assert_eq!(list(&dest).unwrap().backups.len(), 5);
    let real = prune(&dest, &policy, false).unwrap();
    assert_eq!(real.removed, dry.removed);
    let left: Vec<String> = list(&dest)
        .unwrap()
        .backups
        .into_iter()
        .map(|b| b.id)
        .collect();
    assert_eq!(left, ["b1", "b4"]);
    assert!(!dest.join("b0.tar.gz").exists() && !dest.join("b0.json").exists());
}

#[test]
fn zstd_backups_are_listed_pruned_and_swept_like_gzip_ones() {
    let tmp = tempfile::tempdir().unwrap();
    let dest = tmp.path().join("bk");
    let src = tmp.path().join("src");
    std::fs::create_dir_all(&src).unwrap();
    for (i, codec) in [CODECS[0], CODECS[1], CODECS[1], CODECS[0]]
        .iter()
        .enumerate()
    {
        std::fs::write(src.join("f"), format!("v{i}")).unwrap();
        let mut opts = CreateOptions::new(vec![src.clone()], &dest);
        opts.id = Some(format!("b{i}"));
        opts.created = Some(format!("2025-01-0{}T12:00:00Z", i + 1).parse().unwrap());
        opts.compression = *codec;
        create(&opts, &NoProgress).unwrap();
    }
    std::fs::write(dest.join("orphan.tar.zst"), b"half").unwrap();
    let dead = dead_pid();
    let partial = dest.join(format!(".b9.tar.zst.partial-{dead}-000000001"));
    std::fs::write(&partial, b"half").unwrap();
    let l = list(&dest).unwrap();
    let got: Vec<(&str, Option<Compression>)> = l
        .backups
        .iter()
        .map(|b| (b.id.as_str(), b.compression))
        .collect();
    assert_eq!(
        got,
        [
            ("b0", Some(Compression::Gzip)),
            ("b1", Some(Compression::Zstd)),
            ("b2", Some(Compression::Zstd)),
            ("b3", Some(Compression::Gzip)),
        ]
    );
    assert!(l.backups[1].archive.ends_with("b1.tar.zst"));
    let incomplete: Vec<_> = l.incomplete.iter().map(|i| i.path.clone()).collect();
    assert_eq!(incomplete, [partial.clone(), dest.join("orphan.tar.zst")]);
    // b1 verified: kept by the newest-verified rule; keep_last 1 keeps b3.
    verify(
        &dest.join("b1.tar.zst"),
        &VerifyOptions {
            record: true,
            ..Default::default()
        },
        &NoProgress,
    )
    .unwrap();
    let policy = RetentionPolicy {
        keep_last: 1,
        ..Default::default()
    };
    let r = prune(&dest, &policy, false).unwrap();
    assert_eq!(r.removed, ["b2", "b0"]);
    assert!(!dest.join("b2.tar.zst").exists() && !dest.join("b2.json").exists());
    assert!(dest.join("b1.tar.zst").exists());
    assert_eq!(backup_archive::sweep_partials(&dest).unwrap(), [partial]);
}

#[test]
fn an_id_is_one_backup_whatever_its_compression_and_levels_are_checked() {
    let tmp = tempfile::tempdir().unwrap();
    let dest = tmp.path().join("bk");
    backup_at(tmp.path(), &dest, "one", "2025-01-01T00:00:00Z");
    assert!(backup_archive::id_in_use(&dest, "one"));
    assert!(!backup_archive::id_in_use(&dest, "two"));
    let mut opts = CreateOptions::new(vec![tmp.path().join("src")], &dest);
    opts.id = Some("one".into());
    opts.compression = Compression::Zstd;
    assert!(matches!(
        create(&opts, &NoProgress),
        Err(BackupError::AlreadyExists { .. })
    ));
    opts.id = Some("two".into());
    for (codec, level) in [
        (Compression::Zstd, 0),
        (Compression::Zstd, 20),
        (Compression::Gzip, 10),
    ] {
        opts.compression = codec;
        opts.level = Some(level);
        let err = create(&opts, &NoProgress).unwrap_err();
        assert!(
            matches!(err, BackupError::InvalidLevel { .. }),
            "{codec} {level}: {err}"
        );
        assert!(err.to_string().contains(&format!("level {level}")), "{err}");
    }
    assert!(
        !backup_archive::id_in_use(&dest, "two"),
        "nothing was written"
    );
    opts.level = Some(19);
    opts.compression = Compression::Zstd;
    let made = create(&opts, &NoProgress).unwrap();
    assert!(made.archive.ends_with("two.tar.zst"));
    assert!(backup_archive::id_in_use(&dest, "two"));
}

#[test]
fn create_refuses_bad_ids_duplicates_and_missing_sources() {
    let tmp = tempfile::tempdir().unwrap();
    let dest = tmp.path().join("bk");
    backup_at(tmp.path(), &dest, "one", "2025-01-01T00:00:00Z");
    let mut opts = CreateOptions::new(vec![tmp.path().join("src")], &dest);
    opts.id = Some("one".into());
    assert!(matches!(
        create(&opts, &NoProgress),
        Err(BackupError::AlreadyExists { .. })
    ));
    opts.id = Some("../evil".into());
    assert!(matches!(
        create(&opts, &NoProgress),
        Err(BackupError::InvalidId { .. })
    ));
    let opts = CreateOptions::new(vec![tmp.path().join("missing")], &dest);
    assert!(matches!(
        create(&opts, &NoProgress),
        Err(BackupError::Source { .. })
    ));
}

// ---- leftovers of killed runs ----

/// A pid no process can have: pids are below /proc/sys/kernel/pid_max.
fn dead_pid() -> u32 {
    std::fs::read_to_string("/proc/sys/kernel/pid_max")
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

fn age_by(path: &Path, secs: u64) {
    let t = std::time::SystemTime::now() - std::time::Duration::from_secs(secs);
    // Opening read-only works for directories too; futimens needs no write access.
    std::fs::File::open(path).unwrap().set_modified(t).unwrap();
}

#[test]
fn prune_removes_old_leftovers_of_dead_runs_and_keeps_live_or_recent_ones() {
    use backup_archive::{LeftoverKind, PruneOptions, prune_with};
    let tmp = tempfile::tempdir().unwrap();
    let dest = tmp.path().join("bk");
    backup_at(tmp.path(), &dest, "b0", "2025-01-01T12:00:00Z");
    let dead = dead_pid();
    let me = std::process::id();
    let stale = dest.join(format!(".b1.tar.gz.partial-{dead}-000000001"));
    let recent = dest.join(format!(".b2.tar.gz.partial-{dead}-000000002"));
    let live = dest.join(format!(".b3.tar.gz.partial-{me}-000000003"));
    let unrelated = dest.join(".notes.partial-old");
    for p in [&stale, &recent, &live, &unrelated] {
        std::fs::write(p, b"half an archive").unwrap();
    }
    for p in [&stale, &live, &unrelated] {
        age_by(p, 2 * 3600);
    }
    // A killed restore's staging directory beside its target, with content.
    let targets = tmp.path().join("srv");
    let staging = targets.join(format!(".data.restore-{dead}-000000004"));
    std::fs::create_dir_all(staging.join("conf")).unwrap();
    std::fs::write(staging.join("conf/app.toml"), "x").unwrap();
    age_by(&staging, 2 * 3600);

    let policy = RetentionPolicy {
        keep_last: 5,
        ..Default::default()
    };
    let mut opts = PruneOptions {
        dry_run: true,
        leftover_dirs: vec![targets.clone()],
        ..PruneOptions::default()
    };
    let dry = prune_with(&dest, &policy, &opts).unwrap();
    let verdict = |r: &backup_archive::PruneReport, p: &Path| {
        r.leftovers
            .iter()
            .find(|l| l.path == p)
            .map(|l| (l.remove, l.reason.clone()))
    };
    assert_eq!(verdict(&dry, &stale).map(|v| v.0), Some(true));
    let (remove, reason) = verdict(&dry, &recent).unwrap();
    assert!(!remove && reason.contains("younger"), "{reason}");
    let (remove, reason) = verdict(&dry, &live).unwrap();
    assert!(!remove && reason.contains("still running"), "{reason}");
    assert_eq!(verdict(&dry, &unrelated), None, "not one of our names");
    let staged = dry.leftovers.iter().find(|l| l.path == staging).unwrap();
    assert_eq!(staged.kind, LeftoverKind::RestoreStaging);
    assert!(staged.remove);
    for p in [&stale, &recent, &live, &unrelated, &staging] {
        assert!(p.exists(), "a dry run removes nothing: {}", p.display());
    }

    opts.dry_run = false;
    let real = prune_with(&dest, &policy, &opts).unwrap();
    assert_eq!(real.leftovers.iter().filter(|l| l.remove).count(), 2);
    assert!(!stale.exists() && !staging.exists());
    for p in [&recent, &live, &unrelated] {
        assert!(p.exists(), "{} must stay", p.display());
    }
    assert!(dest.join("b0.tar.gz").exists(), "backups are untouched");
    // The plain `prune` sweeps the backup directory with the default age too.
    age_by(&recent, 2 * 3600);
    let plain = prune(&dest, &policy, false).unwrap();
    assert_eq!(plain.leftovers.iter().filter(|l| l.remove).count(), 1);
    assert!(!recent.exists() && live.exists());
}

#[test]
fn sweep_partials_removes_partials_of_dead_runs_at_once_and_keeps_live_ones() {
    let tmp = tempfile::tempdir().unwrap();
    let dest = tmp.path().join("bk");
    backup_at(tmp.path(), &dest, "b0", "2025-01-01T12:00:00Z");
    let dead = dead_pid();
    let me = std::process::id();
    // Fresh (seconds old): prune's one-hour rule would keep every one of them.
    let killed = dest.join(format!(".b1.tar.gz.partial-{dead}-000000001"));
    let killed_sidecar = dest.join(format!(".b1.json.partial-{dead}-000000002"));
    let live = dest.join(format!(".b2.tar.gz.partial-{me}-000000003"));
    // Its pid is not ours to see (another pid namespace, say), but its writer holds the lock.
    let locked = dest.join(format!(".b3.tar.gz.partial-{dead}-000000004"));
    let staging = dest.join(format!(".data.restore-{dead}-000000005"));
    let unrelated = dest.join(".notes.partial-old");
    for p in [&killed, &killed_sidecar, &live, &locked, &unrelated] {
        std::fs::write(p, b"half an archive").unwrap();
    }
    std::fs::create_dir(&staging).unwrap();
    let writer = std::fs::File::options().append(true).open(&locked).unwrap();
    rustix::fs::flock(
        &writer,
        rustix::fs::FlockOperation::NonBlockingLockExclusive,
    )
    .unwrap();

    let removed = backup_archive::sweep_partials(&dest).unwrap();
    assert_eq!(removed, vec![killed_sidecar.clone(), killed.clone()]);
    assert!(!killed.exists() && !killed_sidecar.exists());
    for p in [&live, &locked, &unrelated, &staging] {
        assert!(p.exists(), "{} must stay", p.display());
    }
    assert!(dest.join("b0.tar.gz").exists() && dest.join("b0.json").exists());

    drop(writer);
    let removed = backup_archive::sweep_partials(&dest).unwrap();
    assert_eq!(removed, vec![locked.clone()], "its writer is gone now");
    assert!(
        backup_archive::sweep_partials(&tmp.path().join("missing"))
            .unwrap()
            .is_empty()
    );
}
