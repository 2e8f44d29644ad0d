//! `cutover-probe` against a deployment made by hand (no pipeline): the demo service on a port
//! the OS picked, a cutover.toml whose `[service]` names that port, and a release made live
//! under `[layout] root` with live-deployment's own layout functions. With nothing but
//! `--manifest`, the probes go to the live release (public URL by default, the slot with
//! `--via release`), follow a new deploy, fail on a faulty one, trust the proxy's own
//! certificate, and say plainly when nothing is deployed.
//! Needs `cargo build -p cutover-probe -p cutover-demo-hub` first.

#![allow(clippy::unwrap_used, clippy::expect_used)] // helpers outside #[test] functions unwrap too

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use cutover_tests::{DemoHub, free_port, temp_dir, tls_front, workspace_bin};
use live_deployment::{DeployState, ReleaseLayout, ReleaseRecord, Slot};
use serde_json::Value;

fn probe(dir: &Path, args: &[&str]) -> Output {
    Command::new(workspace_bin("cutover-probe"))
        .args(args)
        .current_dir(dir)
        .env_remove("RUST_LOG")
        .output()
        .expect("cutover-probe runs")
}

fn json(output: &Output) -> Value {
    serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
        panic!(
            "stdout is one JSON document ({e}): {}\nstderr: {}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        )
    })
}

fn code(output: &Output) -> i32 {
    output.status.code().expect("exited normally")
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// Relative probes (paths), as a deployment's manifest would have them.
const PROBES: &str = r#"
[[probe]]
name = "ready"
url = "/api/health"
expect_json = ['/state == "ready"']

[[probe]]
name = "tools"
url = "/api/tools"
expect_json = ["/tools nonempty"]
"#;

/// Writes `dir/cutover.toml`: `[service]` on `port` (and `standby_port`), `[layout] root =
/// "root"`, then `extra`.
fn write_manifest(dir: &Path, port: u16, standby: Option<u16>, extra: &str) -> PathBuf {
    let standby = standby.map_or_else(String::new, |p| format!("standby_port = {p}"));
    let text = format!(
        r#"[service]
name = "hub"
start = ["{{release}}/bin/cutover-demo-hub", "--listen", "{{host}}:{{port}}"]
port = {port}
{standby}

[layout]
root = "root"
{extra}
{PROBES}"#
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
    let mut state = layout.load_state().unwrap();
    state.mark_good(id);
    layout
        .save_state(&DeployState {
            slot: Some(slot),
            ..state
        })
        .unwrap();
}

#[test]
fn the_live_release_is_probed_with_nothing_but_the_manifest() {
    let hub = DemoHub::start(&[]);
    hub.wait_ready();
    let dir = temp_dir();
    let manifest = write_manifest(dir.path(), hub.addr.port(), None, "");
    make_live(&dir.path().join("root"), "r1", Slot::Single);
    let m = manifest.to_str().unwrap();

    let out = probe(dir.path(), &["run", "--manifest", m, "--json"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let doc = json(&out);
    assert_eq!(doc["status"], "ok");
    assert_eq!(doc["probes"].as_array().unwrap().len(), 2);
    // No proxy: the public URL is the slot's own.
    assert_eq!(
        doc["target"],
        serde_json::json!({"url": hub.base_url(), "via": "public", "release": "r1"})
    );

    let text = probe(dir.path(), &["run", "--manifest", m]);
    assert_eq!(code(&text), 0, "{}", stderr(&text));
    let stdout = String::from_utf8_lossy(&text.stdout);
    assert!(
        stdout.starts_with(&format!(
            "target: {} (via public, release r1)",
            hub.base_url()
        )) && stdout.contains("2/2 probes ok"),
        "{stdout}"
    );

    // The built-in suite goes there too, and so does a wait.
    let demo = probe(
        dir.path(),
        &["run", "--manifest", m, "--suite", "demo-hub", "--json"],
    );
    assert_eq!(code(&demo), 0, "{}", stderr(&demo));
    assert_eq!(json(&demo)["probes"].as_array().unwrap().len(), 4);
    let wait = probe(
        dir.path(),
        &[
            "wait",
            "--manifest",
            m,
            "--via",
            "release",
            "--period",
            "200ms",
            "--failure-threshold",
            "100",
            "--json",
        ],
    );
    assert_eq!(code(&wait), 0, "{}", stderr(&wait));
    assert_eq!(json(&wait)["target"]["via"], "release");
}

#[test]
fn a_faulty_new_deploy_fails_the_same_command() {
    // Blue-green without a proxy: blue is healthy, green answers `state: "error"`.
    let blue = DemoHub::start(&[]);
    let green = DemoHub::start(&["--health-state", "error"]);
    blue.wait_ready();
    let dir = temp_dir();
    let manifest = write_manifest(
        dir.path(),
        blue.addr.port(),
        Some(green.addr.port()),
        "[deploy]\nstrategy = \"blue-green\"\n",
    );
    let root = dir.path().join("root");
    let m = manifest.to_str().unwrap();
    let args = ["run", "--manifest", m, "--json"];

    make_live(&root, "r1", Slot::Blue);
    let good = probe(dir.path(), &args);
    assert_eq!(code(&good), 0, "{}", stderr(&good));
    assert_eq!(json(&good)["target"]["url"], blue.base_url());

    // A new deploy moves the live release to green: the same command now probes it, and fails.
    make_live(&root, "r2", Slot::Green);
    let bad = probe(dir.path(), &args);
    assert_eq!(code(&bad), 2, "{}", stderr(&bad));
    let doc = json(&bad);
    assert_eq!(doc["status"], "fail");
    assert_eq!(
        doc["target"],
        serde_json::json!({"url": green.base_url(), "via": "public", "release": "r2"})
    );
    let ready = &doc["probes"][0];
    assert_eq!(ready["name"], "ready");
    assert_eq!(ready["status"], "fail");
    assert!(
        ready["reason"].as_str().unwrap().contains(r#"got "error""#),
        "{doc}"
    );

    let wait = probe(
        dir.path(),
        &[
            "wait",
            "--manifest",
            m,
            "--period",
            "100ms",
            "--failure-threshold",
            "2",
        ],
    );
    assert_eq!(code(&wait), 2, "{}", stderr(&wait));
}

#[test]
fn nothing_deployed_exits_3_and_says_what_to_run() {
    let dir = temp_dir();
    let manifest = write_manifest(dir.path(), free_port(), None, "");
    let m = manifest.to_str().unwrap();
    // The layout exists (a deploy was prepared) but `current` names no release.
    ReleaseLayout::new(dir.path().join("root"))
        .ensure_dirs()
        .unwrap();

    for args in [
        &["run", "--manifest", m][..],
        &["run", "--manifest", m, "--suite", "demo-hub"][..],
        &["wait", "--manifest", m, "--via", "release"][..],
    ] {
        let out = probe(dir.path(), args);
        assert_eq!(code(&out), 3, "{args:?}: {}", stderr(&out));
        let err = stderr(&out);
        assert!(
            err.contains("nothing is deployed under")
                && err.contains("root")
                && err.contains("run `cutover-deploy deploy`")
                && !err.contains("refused"),
            "{args:?}: {err}"
        );
    }
    let out = probe(dir.path(), &["run", "--manifest", m, "--json"]);
    assert_eq!(code(&out), 3);
    let doc = json(&out);
    assert_eq!(doc["status"], "unknown");
    assert!(
        doc["reason"]
            .as_str()
            .unwrap()
            .starts_with("nothing is deployed"),
        "{doc}"
    );

    // --base-url is taken as given: the deployment is not consulted (a closed port fails).
    let port = free_port();
    let given = probe(
        dir.path(),
        &[
            "run",
            "--manifest",
            m,
            "--base-url",
            &format!("http://127.0.0.1:{port}"),
            "--json",
        ],
    );
    assert_eq!(code(&given), 2, "{}", stderr(&given));
    assert!(json(&given)["target"]["via"] == "base-url");

    // --via needs a deployment to choose from; it and --base-url exclude each other.
    std::fs::write(dir.path().join("probes.toml"), PROBES).unwrap();
    let no_service = probe(
        dir.path(),
        &["run", "--manifest", "probes.toml", "--via", "release"],
    );
    assert_eq!(code(&no_service), 64, "{}", stderr(&no_service));
    assert!(stderr(&no_service).contains("[service]"));
    let both = probe(
        dir.path(),
        &["run", "--via", "public", "--base-url", "http://127.0.0.1:1"],
    );
    assert_eq!(code(&both), 64);
}

#[test]
fn through_the_proxy_the_certificate_it_made_is_trusted() {
    let hub = DemoHub::start(&[]);
    hub.wait_ready();
    let dir = temp_dir();
    // Where the proxy keeps the self-signed certificate it made: write the manifest once to
    // ask live-deployment, then put the front's certificate there.
    let proxy = |https: u16| {
        format!(
            "[proxy]\nkind = \"nginx\"\nlisten_http = [\"127.0.0.1:{}\"]\ncontrol_listen = \"127.0.0.1:{}\"\ntls = {{ listen = [\"127.0.0.1:{https}\"], self_signed = true }}\n",
            free_port(),
            free_port()
        )
    };
    let manifest = write_manifest(dir.path(), hub.addr.port(), None, &proxy(1));
    let ca = live_deployment::Deployment::load(&manifest)
        .unwrap()
        .proxy_ca()
        .expect("a self-signed proxy has its own CA");
    assert!(
        ca.starts_with(dir.path().join("root/proxy")),
        "{}",
        ca.display()
    );
    let https = tls_front(hub.addr, &ca);
    let manifest = write_manifest(dir.path(), hub.addr.port(), None, &proxy(https));
    // Blue-green is the default behind nginx: the release is live in blue (`port`).
    make_live(&dir.path().join("root"), "r1", Slot::Blue);
    let m = manifest.to_str().unwrap();

    let public = probe(dir.path(), &["run", "--manifest", m, "--json"]);
    assert_eq!(code(&public), 0, "{}", stderr(&public));
    assert_eq!(
        json(&public)["target"],
        serde_json::json!({"url": format!("https://127.0.0.1:{https}"), "via": "public", "release": "r1"})
    );
    let release = probe(
        dir.path(),
        &["run", "--manifest", m, "--via", "release", "--json"],
    );
    assert_eq!(code(&release), 0, "{}", stderr(&release));
    assert_eq!(json(&release)["target"]["url"], hub.base_url());

    // Trust is that certificate's, not "anything": with another one there, TLS is refused.
    let other = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned()]).unwrap();
    std::fs::write(&ca, other.cert.pem()).unwrap();
    let refused = probe(dir.path(), &["run", "--manifest", m, "--json"]);
    assert_eq!(code(&refused), 2, "{}", stderr(&refused));
    let reason = json(&refused)["probes"][0]["reason"].clone();
    assert!(
        reason.as_str().unwrap().contains("certificate not trusted"),
        "{reason}"
    );
}
