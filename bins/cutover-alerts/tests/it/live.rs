//! `cutover-alerts` against a deployment made by hand (no pipeline): the demo service on a
//! port the OS picked, a cutover.toml whose `[service]` names that port, and a release made
//! live under `[layout] root` with live-deployment's own layout functions. With nothing but
//! `--manifest`, sources written against the base URL read the live release, `for` holds
//! across one-shot runs in `<root>/state/alerts.json`, the proxy's own certificate is trusted,
//! and nothing deployed is said plainly.
//! Needs `cargo build -p cutover-alerts -p cutover-demo-hub` first.

#![allow(clippy::unwrap_used, clippy::expect_used)] // helpers outside #[test] functions unwrap too

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use cutover_tests::{DemoHub, free_port, temp_dir, tls_front, workspace_bin};
use live_deployment::{DeployState, ReleaseLayout, ReleaseRecord, Slot};
use serde_json::Value;

fn alerts(dir: &Path, args: &[&str]) -> Output {
    Command::new(workspace_bin("cutover-alerts"))
        .args(args)
        .current_dir(dir)
        .env_remove("CUTOVER_ALERTS_STATE")
        .env_remove("SSL_CERT_FILE")
        .env("RUST_LOG", "warn")
        .output()
        .expect("cutover-alerts runs")
}

fn json(out: &Output) -> Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "stdout is not one JSON document ({e}):\n{}\nstderr:\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// A rule on the live release's readiness, written against the base URL, with `for`; and one
/// on its statistics written as a path, which holds.
const RULES: &str = r#"
[[alert]]
name = "not-ready"
source = { http = "{url}/api/health", pointer = "/state" }
crit = '== "error"'
for = "1s"

[[alert]]
name = "queue-depth"
source = { http = "/api/stats", pointer = "/queue_depth" }
warn = "> 1000"
"#;

/// Writes `dir/cutover.toml`: `[service]` on `port`, `[layout] root = "root"`, then `extra`.
fn write_manifest(dir: &Path, port: u16, extra: &str) -> PathBuf {
    let text = format!(
        r#"[service]
name = "hub"
start = ["{{release}}/bin/cutover-demo-hub", "--listen", "{{host}}:{{port}}"]
port = {port}

[layout]
root = "root"
{extra}"#
    );
    let path = dir.join("cutover.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// Makes release `id` live in `slot` under `root`, as the pipeline leaves a deploy: a complete
/// release (its record written), `current` pointing at it, and the slot in the deploy state.
fn make_live(root: &Path, id: &str, slot: Slot) {
    let layout = ReleaseLayout::new(root);
    layout.ensure_dirs().unwrap();
    std::fs::create_dir_all(layout.release_dir(id)).unwrap();
    layout
        .write_record(&ReleaseRecord {
            id: id.to_owned(),
            service: "hub".to_owned(),
            commit: None,
            created: "2025-01-01T00:00:00Z".to_owned(),
            start: vec!["{release}/bin/cutover-demo-hub".to_owned()],
            env: Default::default(),
            set_env: Default::default(),
            secrets: Default::default(),
            artifact: None,
        })
        .unwrap();
    layout.set_current(id).unwrap();
    layout
        .save_state(&DeployState {
            slot: Some(slot),
            good: vec![id.to_owned()],
            failed: vec![],
            standby: None,
            ..DeployState::default()
        })
        .unwrap();
}

#[test]
fn for_fires_on_the_second_check_with_the_deployments_state_file() {
    let hub = DemoHub::start(&["--health-state", "error"]);
    let dir = temp_dir();
    let manifest = write_manifest(dir.path(), hub.addr.port(), RULES);
    let root = dir.path().join("root");
    make_live(&root, "r1", Slot::Single);
    let state = root.join("state/alerts.json");
    let m = manifest.to_str().unwrap();
    let args = ["check", "--manifest", m, "--json"];

    let first = alerts(dir.path(), &args);
    assert_eq!(
        first.status.code(),
        Some(0),
        "pending is not yet an alert: {}",
        stderr(&first)
    );
    let doc = json(&first);
    assert_eq!(
        doc["target"],
        serde_json::json!({"url": hub.base_url(), "via": "public", "release": "r1"})
    );
    assert_eq!(doc["alerts"][0]["name"], "not-ready");
    assert_eq!(doc["alerts"][0]["state"], "pending", "{doc}");
    assert_eq!(doc["alerts"][0]["value"], "error");
    assert_eq!(doc["alerts"][1]["state"], "inactive", "{doc}");
    assert!(state.is_file(), "the state went to {}", state.display());

    // Past `for`, the next one-shot run remembers the first and fires.
    std::thread::sleep(Duration::from_millis(1500));
    let second = alerts(dir.path(), &args);
    assert_eq!(second.status.code(), Some(2), "{}", stderr(&second));
    let doc = json(&second);
    assert_eq!(doc["alerts"][0]["state"], "firing", "{doc}");
    assert_eq!(doc["transitions"][0]["kind"], "firing", "{doc}");

    // The table says where it looked.
    let text = alerts(dir.path(), &["check", "--manifest", m]);
    assert_eq!(text.status.code(), Some(2));
    let stdout = String::from_utf8_lossy(&text.stdout);
    assert!(
        stdout.starts_with(&format!(
            "target: {} (via public, release r1)",
            hub.base_url()
        )),
        "{stdout}"
    );

    // The default rules read the live release too (with a state file of their own).
    let defaults = alerts(
        dir.path(),
        &[
            "check",
            "--manifest",
            m,
            "--defaults",
            "--via",
            "release",
            "--state",
            "defaults.json",
            "--json",
        ],
    );
    let doc = json(&defaults);
    assert_eq!(doc["alerts"].as_array().unwrap().len(), 8, "{doc}");
    assert_eq!(doc["target"]["url"], hub.base_url());
    assert!(
        doc["alerts"]
            .as_array()
            .unwrap()
            .iter()
            .all(|a| a["state"] != "unknown"),
        "every default rule could read the live release: {doc}"
    );
}

#[test]
fn nothing_deployed_exits_3_and_says_what_to_run() {
    let dir = temp_dir();
    let manifest = write_manifest(dir.path(), free_port(), RULES);
    let m = manifest.to_str().unwrap();

    for args in [
        &["check", "--manifest", m][..],
        &[
            "watch",
            "--manifest",
            m,
            "--count",
            "1",
            "--interval",
            "100ms",
        ][..],
        &["check", "--manifest", m, "--defaults"][..],
    ] {
        let out = alerts(dir.path(), args);
        assert_eq!(out.status.code(), Some(3), "{args:?}: {}", stderr(&out));
        let err = stderr(&out);
        assert!(
            err.contains("nothing is deployed under")
                && err.contains("run `cutover-deploy deploy`")
                && !err.contains("refused"),
            "{args:?}: {err}"
        );
    }
    let out = alerts(dir.path(), &["check", "--manifest", m, "--json"]);
    assert_eq!(out.status.code(), Some(3));
    let doc = json(&out);
    assert_eq!(doc["status"], "unknown");
    assert!(
        doc["reason"]
            .as_str()
            .unwrap()
            .starts_with("nothing is deployed"),
        "{doc}"
    );

    // Listing describes the configuration: the sources are shown as written.
    let list = alerts(dir.path(), &["list", "--manifest", m]);
    assert_eq!(list.status.code(), Some(0), "{}", stderr(&list));
    let text = String::from_utf8_lossy(&list.stdout);
    assert!(
        text.contains("json {url}/api/health /state") && text.contains("json /api/stats"),
        "{text}"
    );

    // Rules that need no base URL run, and keep their state in <root>/state even before a
    // deploy made that directory.
    std::fs::write(dir.path().join("value"), "80").unwrap();
    let local = write_manifest(
        dir.path(),
        free_port(),
        "[[alert]]\nname = \"queue\"\nsource = { command = [\"cat\", \"value\"] }\ncrit = \"> 50\"\n",
    );
    let out = alerts(
        dir.path(),
        &["check", "--manifest", local.to_str().unwrap()],
    );
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(dir.path().join("root/state/alerts.json").is_file());

    // --via needs a deployment to choose from; it and --target exclude each other.
    std::fs::write(dir.path().join("rules.toml"), RULES).unwrap();
    let no_service = alerts(
        dir.path(),
        &["check", "--manifest", "rules.toml", "--via", "release"],
    );
    assert_eq!(
        no_service.status.code(),
        Some(64),
        "{}",
        stderr(&no_service)
    );
    assert!(stderr(&no_service).contains("[service]"));
    let both = alerts(
        dir.path(),
        &["check", "--via", "public", "--target", "http://127.0.0.1:1"],
    );
    assert_eq!(both.status.code(), Some(64));
}

#[test]
fn through_the_proxy_the_certificate_it_made_is_trusted() {
    let hub = DemoHub::start(&["--health-state", "error"]);
    let dir = temp_dir();
    let proxy = |https: u16| {
        format!(
            "[proxy]\nkind = \"nginx\"\nlisten_http = [\"127.0.0.1:{}\"]\ncontrol_listen = \"127.0.0.1:{}\"\ntls = {{ listen = [\"127.0.0.1:{https}\"], self_signed = true }}\n{RULES}",
            free_port(),
            free_port()
        )
    };
    // Where the proxy keeps the self-signed certificate it made: ask live-deployment, then put
    // the front's certificate there.
    let manifest = write_manifest(dir.path(), hub.addr.port(), &proxy(1));
    let ca = live_deployment::Deployment::load(&manifest)
        .unwrap()
        .proxy_ca()
        .expect("a self-signed proxy has its own CA");
    let https = tls_front(hub.addr, &ca);
    let manifest = write_manifest(dir.path(), hub.addr.port(), &proxy(https));
    // Blue-green is the default behind nginx: the release is live in blue (`port`).
    make_live(&dir.path().join("root"), "r1", Slot::Blue);
    let m = manifest.to_str().unwrap();
    let check = |extra: &[&str]| {
        let mut args = vec!["check", "--manifest", m, "--json"];
        args.extend_from_slice(extra);
        alerts(dir.path(), &args)
    };

    let public = check(&[]);
    assert_eq!(public.status.code(), Some(0), "{}", stderr(&public));
    let doc = json(&public);
    assert_eq!(
        doc["target"],
        serde_json::json!({"url": format!("https://127.0.0.1:{https}"), "via": "public", "release": "r1"})
    );
    assert_eq!(
        doc["alerts"][0]["state"], "pending",
        "read through TLS: {doc}"
    );

    let release = check(&["--via", "release"]);
    let doc = json(&release);
    assert_eq!(doc["target"]["url"], hub.base_url());
    assert_ne!(doc["alerts"][0]["state"], "unknown", "{doc}");

    // Trust is that certificate's, not "anything": with another one there, TLS is refused and
    // the rules cannot be evaluated.
    let other = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned()]).unwrap();
    std::fs::write(&ca, other.cert.pem()).unwrap();
    let refused = check(&["--state", "other.json"]);
    assert_eq!(refused.status.code(), Some(3), "{}", stderr(&refused));
    let doc = json(&refused);
    assert_eq!(doc["alerts"][0]["state"], "unknown", "{doc}");
    assert!(
        doc["alerts"][0]["reason"].as_str().unwrap().contains("TLS"),
        "{doc}"
    );
}
