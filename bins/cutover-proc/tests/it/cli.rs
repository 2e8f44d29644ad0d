//! `cutover-proc unit` and `--manager systemd` against a fake `systemctl` script that records
//! its arguments (systemd itself is never started on these machines).

#![allow(clippy::unwrap_used)] // test helpers outside #[test] functions unwrap too

use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Stdio};
use std::time::Duration;

use cutover_tests::ChildGuard;
use serde_json::Value;

fn run(args: &[&str]) -> (i32, String, String) {
    let mut command = Command::new(env!("CARGO_BIN_EXE_cutover-proc"));
    command
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut guard = ChildGuard::spawn(command).unwrap();
    let status = guard.wait_timeout(Duration::from_secs(60)).unwrap();
    let mut out = String::new();
    let mut err = String::new();
    use std::io::Read;
    guard
        .child()
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .unwrap();
    guard
        .child()
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    (status.code().unwrap_or(-1), out, err)
}

#[test]
fn unit_prints_a_hardened_service_and_socket_unit() {
    let (code, out, err) = run(&[
        "unit",
        "--name",
        "demo-hub",
        "--root",
        "/opt/demo-hub",
        "--notify",
        "--socket",
        "127.0.0.1:7000",
        "--",
        "/usr/local/bin/cutover-demo-hub",
        "--listen",
        "127.0.0.1:7000",
    ]);
    assert_eq!(code, 0, "{err}");
    for needle in [
        "Type=notify",
        "ProtectSystem=strict",
        "CapabilityBoundingSet=\n",
        "IPAddressDeny=any",
        "ListenStream=127.0.0.1:7000",
        "# demo-hub.socket",
    ] {
        assert!(out.contains(needle), "{needle} missing:\n{out}");
    }
    let (code, out, _) = run(&[
        "unit",
        "--json",
        "--name",
        "demo-hub",
        "--allow-egress",
        "--",
        "/usr/bin/hub",
    ]);
    assert_eq!(code, 0);
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["status"], "ok");
    assert!(!v["service"].as_str().unwrap().contains("IPAddressDeny"));
    // A layout under /tmp would be hidden by PrivateTmp: refused as a usage error.
    let (code, _, err) = run(&[
        "unit",
        "--name",
        "x",
        "--root",
        "/tmp/x",
        "--",
        "/usr/bin/hub",
    ]);
    assert_eq!(code, 64, "{err}");
    assert!(err.contains("PrivateTmp"), "{err}");
}

#[test]
fn systemd_manager_drives_systemctl_in_order() {
    let dir = cutover_tests::temp_dir();
    let record = dir.path().join("calls");
    let fake = dir.path().join("systemctl");
    std::fs::write(
        &fake,
        format!(
            "#!/bin/sh\necho \"$*\" >> '{}'\ncase \"$1\" in\n  is-active) exit 3 ;;\n  show) printf 'ActiveState=active\\nSubState=running\\nMainPID=4242\\nNRestarts=0\\n' ;;\nesac\nexit 0\n",
            record.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).unwrap();
    let units = dir.path().join("units");
    let common = [
        "--manager",
        "systemd",
        "--name",
        "demo-hub",
        "--root",
        "/opt/demo-hub",
        "--systemctl",
        fake.to_str().unwrap(),
        "--unit-dir",
        units.to_str().unwrap(),
    ];
    let mut start = vec!["start"];
    start.extend(common);
    start.extend(["--notify", "--", "/usr/local/bin/cutover-demo-hub"]);
    let (code, out, err) = run(&start);
    assert_eq!(code, 0, "{out}\n{err}");
    let mut status = vec!["status", "--json"];
    status.extend(common);
    let (code, out, _) = run(&status);
    assert_eq!(code, 0, "{out}");
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["service"]["pid"], 4242);
    let mut stop = vec!["stop"];
    stop.extend(common);
    assert_eq!(run(&stop).0, 0);
    let calls = std::fs::read_to_string(&record).unwrap();
    let verbs: Vec<String> = calls
        .lines()
        .map(|l| l.split(' ').take(2).collect::<Vec<_>>().join(" "))
        .collect();
    assert_eq!(
        verbs,
        [
            "is-active --quiet",
            "daemon-reload",
            "enable demo-hub.service",
            "start demo-hub.service",
            "show demo-hub.service",
            "show demo-hub.service",
            "is-active --quiet",
            "stop demo-hub.socket",
            "stop demo-hub.service",
            "show demo-hub.service",
        ]
    );
    let unit = std::fs::read_to_string(units.join("demo-hub.service")).unwrap();
    assert!(unit.contains("Type=notify"));
}

#[test]
fn unit_is_rendered_from_the_manifest_with_flags_overriding() {
    let dir = cutover_tests::temp_dir();
    let manifest = dir.path().join("cutover.toml");
    std::fs::write(
        &manifest,
        r#"[service]
name = "mcp-hub"
start = ["/usr/bin/bun", "{release}/dist/cli.js", "--port", "{port}"]
port = 7000
env = { NODE_ENV = "production" }
secrets = { GEMINI_API_KEY = "op://prod/mcp-hub/gemini" }
build = ["bun", "run", "build"]

[layout]
root = "/opt/mcp-hub"

[process]
manager = "systemd"
restart = "always"
stop_timeout = "45s"
readiness = { kind = "notify" }
limits = { nofile = 65536, memory_max = 8589934592 }
network = "egress"

[backup]
keep_last = 3
"#,
    )
    .unwrap();
    let m = manifest.to_str().unwrap();
    // The shim is named (as the pipeline installs it, under the layout root): this test
    // binary may itself sit under /tmp, which PrivateTmp hides and the renderer refuses.
    let shim = "/opt/mcp-hub/bin/cutover-proc";
    let (code, out, err) = run(&["unit", "--manifest", m, "--exec-shim", shim]);
    assert_eq!(code, 0, "{err}");
    for needle in [
        "# mcp-hub.service",
        "/usr/bin/bun /opt/mcp-hub/current/dist/cli.js --port 7000",
        "Restart=always",
        "TimeoutStopSec=45s",
        "Type=notify",
        "LimitNOFILE=65536",
        "MemoryMax=8589934592",
        "Environment=\"NODE_ENV=production\"",
        "LoadCredential=GEMINI_API_KEY:/opt/mcp-hub/state/credentials/mcp-hub/GEMINI_API_KEY",
    ] {
        assert!(out.contains(needle), "{needle} missing:\n{out}");
    }
    assert!(!out.contains("IPAddressDeny"), "network = egress:\n{out}");
    assert!(!out.contains("op://"), "{out}");
    // Flags win over the manifest.
    let (code, out, err) = run(&[
        "unit",
        "--manifest",
        m,
        "--name",
        "other",
        "--restart",
        "never",
        "--stop-timeout",
        "5s",
        "--exec-shim",
        shim,
        "--",
        "/usr/bin/other",
    ]);
    assert_eq!(code, 0, "{err}");
    for needle in [
        "# other.service",
        "Restart=no",
        "TimeoutStopSec=5",
        "/usr/bin/other",
    ] {
        assert!(out.contains(needle), "{needle} missing:\n{out}");
    }
    assert!(!out.contains("cli.js"), "{out}");
}

#[test]
fn unknown_keys_in_process_are_configuration_errors_with_line_and_column() {
    let dir = cutover_tests::temp_dir();
    let manifest = dir.path().join("cutover.toml");
    std::fs::write(
        &manifest,
        "[service]\nname = \"hub\"\nstart = [\"/bin/true\"]\n\n[process]\nrestart = \"always\"\nstop_timout = \"5s\"\n",
    )
    .unwrap();
    let m = manifest.to_str().unwrap();
    let (code, out, err) = run(&["unit", "--manifest", m]);
    assert_eq!(code, 78, "{out}\n{err}");
    assert!(err.contains("cutover.toml:7:1"), "{err}");
    assert!(err.contains("stop_timout"), "{err}");
    assert!(
        err.contains("stop_timeout"),
        "suggests the known key: {err}"
    );
    // A wrong type is a configuration error too; a good manifest is accepted.
    std::fs::write(
        &manifest,
        "[service]\nname = \"hub\"\nstart = [\"/bin/true\"]\n[process]\nstop_timeout = 5\n",
    )
    .unwrap();
    let (code, _, err) = run(&["unit", "--manifest", m]);
    assert_eq!(code, 78, "{err}");
    assert!(err.contains("cutover.toml:5:"), "{err}");
    std::fs::write(
        &manifest,
        "[service]\nname = \"hub\"\nstart = [\"/bin/true\"]\n[process]\nstop_timeout = \"5s\"\n",
    )
    .unwrap();
    assert_eq!(run(&["unit", "--manifest", m]).0, 0);
    // {port} without [service].port is a configuration error naming the key.
    std::fs::write(
        &manifest,
        "[service]\nname = \"hub\"\nstart = [\"/bin/hub\", \"--port\", \"{port}\"]\n",
    )
    .unwrap();
    let (code, _, err) = run(&["unit", "--manifest", m]);
    assert_eq!(code, 78, "{err}");
    assert!(err.contains("[service].port"), "{err}");
}
