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
