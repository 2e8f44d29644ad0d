//! `cutover-preflight` as a whole process: manifests, flags, exit codes, the table and the JSON
//! (insta snapshots of a mixed run), `--list`, and a real demo hub holding the port.

#![allow(clippy::unwrap_used)] // Helpers in test files unwrap too; a panic fails the test.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output};

fn preflight(dir: &Path, args: &[&str]) -> Output {
    Command::new(cutover_tests::workspace_bin("cutover-preflight"))
        .current_dir(dir)
        .args(args)
        .env("NO_COLOR", "1")
        .env("COLUMNS", "100")
        .env_remove("RUST_LOG")
        .output()
        .expect("cutover-preflight runs")
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// A manifest whose checks pass, warn (an ignored failure), fail and skip, all with messages
/// that do not depend on the host.
const MIXED: &str = r#"
[service]
name = "demo"
secrets = { API_KEY = "literal:abc-123-xyz" }

[preflight]
ignore = ["bun"]

[[preflight.check]]
kind = "files-exist"
id = "config"
all_of = ["cutover.toml"]

[[preflight.check]]
kind = "runtime-version"
id = "bun"
command = ["sh", "-c", "echo 0.9.0"]
require = ">=1.1"

[[preflight.check]]
kind = "file-mode"
id = "env-file"
path = ".env.production"

[[preflight.check]]
kind = "file-mode"
id = "tls-key"
path = "key.pem"
required = false

[[preflight.check]]
kind = "dir-writable"
path = "data"

[[preflight.check]]
kind = "secrets"
"#;

fn mixed_dir() -> tempfile::TempDir {
    let dir = cutover_tests::temp_dir();
    std::fs::write(dir.path().join("cutover.toml"), MIXED).unwrap();
    let env = dir.path().join(".env.production");
    std::fs::write(&env, "API_KEY=x\n").unwrap();
    std::fs::set_permissions(&env, std::fs::Permissions::from_mode(0o644)).unwrap();
    dir
}

fn filters(dir: &Path) -> Vec<(String, String)> {
    let canonical = std::fs::canonicalize(dir).unwrap();
    vec![
        (
            regex::escape(&canonical.display().to_string()),
            "[DIR]".into(),
        ),
        (regex::escape(&dir.display().to_string()), "[DIR]".into()),
        // Durations vary in width too, so the padding before them goes with them.
        (r" +\d+\.\d+ms".into(), " [ms]".into()),
        (
            r#""duration_ms": [0-9.e-]+"#.into(),
            r#""duration_ms": "[ms]""#.into(),
        ),
    ]
}

macro_rules! snapshot {
    ($dir:expr, $value:expr) => {{
        let filters = filters($dir);
        let refs: Vec<(&str, &str)> = filters.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();
        insta::with_settings!({ filters => refs }, {
            insta::assert_snapshot!($value);
        });
    }};
}

#[test]
fn a_mixed_run_as_a_table() {
    let dir = mixed_dir();
    let out = preflight(dir.path(), &[]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        !stdout(&out).contains("abc-123-xyz"),
        "a secret value leaked"
    );
    snapshot!(dir.path(), stdout(&out));
}

#[test]
fn a_mixed_run_as_json() {
    let dir = mixed_dir();
    let out = preflight(dir.path(), &["--json"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("one JSON document");
    assert_eq!(json["status"], "fail");
    assert!(
        !stdout(&out).contains("abc-123-xyz"),
        "a secret value leaked"
    );
    snapshot!(dir.path(), stdout(&out));
}

#[test]
fn exit_codes_follow_the_contract() {
    let dir = mixed_dir();
    // The only failure ignored from the command line: warnings only, exit 1, and it says so.
    let out = preflight(dir.path(), &["--ignore", "env-file"]);
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    assert!(
        stdout(&out).contains("ignored failures (reported as warnings): bun, env-file"),
        "{}",
        stdout(&out)
    );
    // All passes: exit 0.
    let out = preflight(
        dir.path(),
        &["--only", "config,dir-writable,secrets", "--json"],
    );
    assert_eq!(out.status.code(), Some(0), "{}", stdout(&out));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["status"], "ok");
    assert_eq!(json["checks"].as_array().unwrap().len(), 3);
    // `all` ignores every failure.
    let out = preflight(dir.path(), &["--ignore", "all"]);
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
}

#[test]
fn usage_errors_exit_64() {
    let dir = mixed_dir();
    let out = preflight(dir.path(), &["--only", "env-fle"]);
    assert_eq!(out.status.code(), Some(64));
    assert!(
        stderr(&out).contains("did you mean `env-file`?"),
        "{}",
        stderr(&out)
    );
    let out = preflight(dir.path(), &["--ignore", "nope"]);
    assert_eq!(out.status.code(), Some(64), "{}", stderr(&out));
    let out = preflight(dir.path(), &["--no-such-flag"]);
    assert_eq!(out.status.code(), Some(64));
}

#[test]
fn invalid_configuration_exits_78_naming_file_line_and_key() {
    let dir = cutover_tests::temp_dir();
    let manifest = dir.path().join("cutover.toml");
    std::fs::write(
        &manifest,
        "[preflight]\n\n[[preflight.check]]\nkind = \"disk-free\"\nwarn_belw = \"1GB\"\n",
    )
    .unwrap();
    let out = preflight(dir.path(), &[]);
    assert_eq!(out.status.code(), Some(78));
    let err = stderr(&out);
    assert!(err.contains("cutover.toml:"), "{err}");
    assert!(err.contains("did you mean `warn_below`?"), "{err}");

    std::fs::write(&manifest, "[[preflight.check]]\nkind = \"memory\"\n\n[[preflight.check]]\nkind = \"port-free\"\naddr = \"7000\"\n").unwrap();
    let out = preflight(dir.path(), &[]);
    assert_eq!(out.status.code(), Some(78));
    assert!(
        stderr(&out).contains(
            "cutover.toml:6:1: preflight.check[1] (`port-free`): `addr` must be host:port"
        ),
        "{}",
        stderr(&out)
    );

    std::fs::write(
        &manifest,
        "[preflight]\nignore = [\"memroy\"]\n[[preflight.check]]\nkind = \"memory\"\n",
    )
    .unwrap();
    let out = preflight(dir.path(), &[]);
    assert_eq!(out.status.code(), Some(78));
    assert!(
        stderr(&out).contains("cutover.toml:2:1: [preflight].ignore: no check has the id `memroy`"),
        "{}",
        stderr(&out)
    );

    let out = preflight(dir.path(), &["--manifest", "missing.toml"]);
    assert_eq!(out.status.code(), Some(78));
}

#[test]
fn list_documents_every_kind_with_keys_and_defaults() {
    let dir = cutover_tests::temp_dir();
    let out = preflight(dir.path(), &["--list"]);
    assert_eq!(out.status.code(), Some(0));
    let text = stdout(&out);
    for doc in preflight_checks::CATALOG {
        assert!(
            text.contains(&format!("\n{}\n", doc.kind)),
            "{} missing",
            doc.kind
        );
    }
    insta::assert_snapshot!(text);
    let out = preflight(dir.path(), &["--list", "--json"]);
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["kinds"].as_array().unwrap().len(), 18);
}

#[test]
fn without_a_manifest_the_default_set_runs() {
    let dir = cutover_tests::temp_dir();
    let out = preflight(dir.path(), &["--json"]);
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("one JSON document");
    let ids: Vec<&str> = json["checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_str().unwrap())
        .collect();
    assert_eq!(
        ids,
        [
            "disk-free",
            "inodes-free",
            "memory",
            "cpu-count",
            "open-files-limit",
            "dir-writable",
            "port-free"
        ]
    );
    let want = match json["status"].as_str().unwrap() {
        "ok" => 0,
        "warn" => 1,
        _ => 2,
    };
    assert_eq!(out.status.code(), Some(want));
    assert_eq!(
        json["checks"][6]["message"]
            .as_str()
            .unwrap()
            .split(' ')
            .next(),
        Some("127.0.0.1:7000")
    );
}

#[test]
fn a_manifest_without_checks_runs_the_defaults_with_its_port_and_secrets() {
    let dir = cutover_tests::temp_dir();
    std::fs::write(
        dir.path().join("cutover.toml"),
        "[service]\nport = 1\nsecrets = { K = \"literal:v-a-l-u-e\" }\n",
    )
    .unwrap();
    let out = preflight(dir.path(), &["--json", "--only", "port-free,secrets"]);
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let port = &json["checks"][0];
    assert_eq!(port["id"], "port-free");
    assert!(
        port["message"].as_str().unwrap().contains("127.0.0.1:1"),
        "{port}"
    );
    assert_eq!(json["checks"][1]["status"], "pass");
}

#[test]
fn port_free_names_a_demo_hub_holding_the_port() {
    let hub = cutover_tests::DemoHub::start(&[]);
    let dir = cutover_tests::temp_dir();
    std::fs::write(
        dir.path().join("cutover.toml"),
        format!(
            "[[preflight.check]]\nkind = \"port-free\"\naddr = \"{}\"\n",
            hub.addr
        ),
    )
    .unwrap();
    let out = preflight(dir.path(), &["--json"]);
    assert_eq!(out.status.code(), Some(2), "{}", stdout(&out));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let message = json["checks"][0]["message"].as_str().unwrap();
    assert!(
        message.contains(&format!("cutover-demo-hu (pid {})", hub.guard.pid())),
        "{message}"
    );
    drop(hub);
    // Once the hub is gone the same port is free again.
    let freed = cutover_tests::wait_until(std::time::Duration::from_secs(10), || {
        preflight(dir.path(), &[]).status.code() == Some(0)
    });
    assert!(freed, "the port is free after the hub stopped");
}

#[test]
fn help_is_stable() {
    let dir = cutover_tests::temp_dir();
    let out = preflight(dir.path(), &["--help"]);
    assert_eq!(out.status.code(), Some(0));
    insta::assert_snapshot!(stdout(&out));
}
