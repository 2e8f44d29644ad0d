//! Env files and credential directories on a real filesystem: modes, atomic replacement, and
//! values that survive a round trip through our reader and through `/bin/sh`.

#![allow(clippy::unwrap_used)] // helpers outside #[test] fns unwrap too

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

use secret_refs::{Secret, SecretError, read_env_file, write_credentials_dir, write_env_file};

const TRICKY: &[&str] = &[
    "plain",
    "with spaces  and\ttabs ",
    " leading space",
    "hash # not a comment",
    "#starts-with-hash",
    "dollar $HOME ${PATH} $(id) `id`",
    "double \" quote and \\\" escaped",
    "single ' quote",
    "back\\slash\\",
    "multi\nline\nvalue\n",
    "crlf\r\nend",
    "equals=in=value",
    "unicode é ✓ 🔑",
    "trailing backslash \\",
    "",
];

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o7777
}

fn entries(values: &[Secret]) -> Vec<(String, &Secret)> {
    values
        .iter()
        .enumerate()
        .map(|(i, s)| (format!("VAR_{i}"), s))
        .collect()
}

#[test]
fn env_file_round_trips_tricky_values_with_mode_0600() {
    let dir = cutover_tests::temp_dir();
    let path = dir.path().join("app.env");
    let values: Vec<Secret> = TRICKY.iter().map(|v| Secret::new(*v)).collect();
    let named = entries(&values);
    let refs: Vec<(&str, &Secret)> = named.iter().map(|(n, s)| (n.as_str(), *s)).collect();
    write_env_file(&path, &refs).unwrap();
    assert_eq!(mode(&path), 0o600);
    let back = read_env_file(&path).unwrap();
    assert_eq!(back.len(), TRICKY.len());
    for ((name, value), (want_name, want)) in back.iter().zip(&refs) {
        assert_eq!(name, want_name);
        assert!(
            value == *want,
            "{name}: {:?} != {:?}",
            value.expose_secret(),
            want.expose_secret()
        );
    }
}

#[test]
fn env_file_means_the_same_to_a_posix_shell() {
    let dir = cutover_tests::temp_dir();
    let path = dir.path().join("app.env");
    for (i, value) in TRICKY.iter().enumerate() {
        let secret = Secret::new(*value);
        write_env_file(&path, &[("V", &secret)]).unwrap();
        let out = Command::new("sh")
            .args(["-c", "set -a; . \"$1\"; printf %s \"$V\"", "sh"])
            .arg(&path)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "case {i}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(String::from_utf8_lossy(&out.stdout), *value, "case {i}");
    }
}

#[test]
fn env_file_replaces_an_open_file_atomically_with_0600() {
    let dir = cutover_tests::temp_dir();
    let path = dir.path().join("app.env");
    std::fs::write(&path, "OLD=1\n").unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    let old_inode = std::os::unix::fs::MetadataExt::ino(&std::fs::metadata(&path).unwrap());
    write_env_file(&path, &[("NEW", &Secret::new("v"))]).unwrap();
    assert_eq!(mode(&path), 0o600);
    assert_eq!(std::fs::read_to_string(&path).unwrap(), "NEW=\"v\"\n");
    // Replaced by rename, not rewritten in place (a reader never sees half a file).
    let new_inode = std::os::unix::fs::MetadataExt::ino(&std::fs::metadata(&path).unwrap());
    assert_ne!(old_inode, new_inode);
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        1,
        "no temp file left"
    );
}

#[test]
fn env_file_write_failure_names_the_path() {
    // A path under a regular file fails even for root (ENOTDIR).
    let dir = cutover_tests::temp_dir();
    let blocker = dir.path().join("file");
    std::fs::write(&blocker, "x").unwrap();
    let target = blocker.join("app.env");
    let err = write_env_file(&target, &[("K", &Secret::new("v"))]).unwrap_err();
    assert!(matches!(err, SecretError::Io { .. }), "{err:?}");
    assert!(
        err.to_string().contains(&target.display().to_string()),
        "{err}"
    );
    let err =
        write_credentials_dir(&blocker.join("creds"), &[("k", &Secret::new("v"))]).unwrap_err();
    assert!(err.to_string().contains("creds"), "{err}");
}

#[test]
fn credentials_dir_is_0700_with_0600_files() {
    let dir = cutover_tests::temp_dir();
    let creds = dir.path().join("deep/creds");
    let (a, b) = (Secret::new("value-a\n"), Secret::new("value b"));
    write_credentials_dir(&creds, &[("gemini-api.key", &a), ("DB_PASSWORD", &b)]).unwrap();
    assert_eq!(mode(&creds), 0o700);
    for name in ["gemini-api.key", "DB_PASSWORD"] {
        assert_eq!(mode(&creds.join(name)), 0o600, "{name}");
    }
    assert_eq!(
        std::fs::read(creds.join("gemini-api.key")).unwrap(),
        b"value-a\n"
    );
    // An existing, too-open directory is tightened; a rewrite replaces the value.
    std::fs::set_permissions(&creds, std::fs::Permissions::from_mode(0o755)).unwrap();
    write_credentials_dir(&creds, &[("DB_PASSWORD", &a)]).unwrap();
    assert_eq!(mode(&creds), 0o700);
    assert_eq!(
        std::fs::read(creds.join("DB_PASSWORD")).unwrap(),
        b"value-a\n"
    );
}

#[test]
fn bad_names_are_refused_before_anything_is_written() {
    let dir = cutover_tests::temp_dir();
    let s = Secret::new("v");
    for name in ["", "../escape", ".hidden", "a/b", "spa ce"] {
        let err =
            write_credentials_dir(&dir.path().join("c"), &[("ok", &s), (name, &s)]).unwrap_err();
        assert!(
            matches!(err, SecretError::InvalidName { .. }),
            "{name:?}: {err:?}"
        );
    }
    let err = write_credentials_dir(&dir.path().join("c"), &[("x", &s), ("x", &s)]).unwrap_err();
    assert!(err.to_string().contains("twice"), "{err}");
    for name in ["", "1X", "A-B", "A B", "A=B"] {
        let err = write_env_file(&dir.path().join("e.env"), &[(name, &s)]).unwrap_err();
        assert!(
            matches!(err, SecretError::InvalidName { .. }),
            "{name:?}: {err:?}"
        );
    }
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        0,
        "nothing written"
    );
}
