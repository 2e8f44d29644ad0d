//! The systemd backend without a running systemd: snapshots of rendered units,
//! `systemd-analyze verify` and `systemd-analyze security --offline=yes` on them, and the
//! `systemctl` command sequences recorded by a fake runner.

#![allow(clippy::print_stdout, clippy::print_stderr)] // What a test measured or why it waits: shown by nextest.
#![allow(clippy::unwrap_used)] // test helpers outside #[test] functions unwrap too

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use process_control::{
    CommandOutput, ListenSocket, NetworkAccess, ProcessManager, Readiness, RecordingRunner,
    SecretDelivery, ServiceSpec, ServiceState, SystemdConfig, SystemdManager, UnitOptions,
    render_units,
};
use secret_refs::Resolver;

/// The demo service as the deploy pipeline would run it: notify readiness, a handed-over
/// socket, one secret as a credential file, the release layout under /opt/demo-hub.
fn demo_spec(program: &str) -> ServiceSpec {
    let mut spec = ServiceSpec::new(
        "demo-hub",
        [
            program,
            "--listen",
            "127.0.0.1:7000",
            "--release-id",
            "20261125T000000Z-abc1234",
        ],
    );
    spec.readiness = Readiness::Notify;
    spec.working_directory = Some("/opt/demo-hub/current".into());
    spec.environment.insert("RUST_LOG".into(), "info".into());
    spec.secrets.insert(
        "CUTOVER_DEMO_TOKEN".into(),
        "env:DEMO_TOKEN".parse().unwrap(),
    );
    spec.secret_delivery = SecretDelivery::Credentials;
    spec.socket = Some(ListenSocket {
        address: "127.0.0.1:7000".parse::<SocketAddr>().unwrap(),
    });
    spec.limits.nofile = Some(65536);
    spec.limits.memory_max = Some(2 << 30);
    spec.stop.timeout = Duration::from_secs(30);
    spec.start_timeout = Duration::from_secs(60);
    spec
}

fn demo_options() -> UnitOptions {
    UnitOptions::for_layout(Path::new("/opt/demo-hub"), "demo-hub")
}

/// The replaced tooling's unit, key for key (SEED-SYSTEM.md), with a real ExecStart.
fn seed_unit(program: &str) -> String {
    format!(
        "[Unit]\nDescription=MCP Hub\nAfter=network.target\nStartLimitIntervalSec=120\nStartLimitBurst=5\n\n\
         [Service]\nType=simple\nExecStart={program} --listen 127.0.0.1:7000\nWorkingDirectory=/opt/demo-hub\n\
         Restart=always\nRestartSec=10\nLimitNOFILE=65536\nMemoryLimit=8G\nCPUQuota=400%\n\
         NoNewPrivileges=true\nPrivateTmp=true\nProtectSystem=strict\nProtectHome=true\n\
         ReadWritePaths=/home/mcp/.local/state/mcp-hub\nEnvironmentFile=/opt/demo-hub/.env.production\n\
         StandardOutput=journal\nStandardError=journal\nTimeoutStartSec=60\nTimeoutStopSec=30\n\n\
         [Install]\nWantedBy=multi-user.target\n"
    )
}

fn systemd_analyze() -> &'static str {
    let ok = Command::new("systemd-analyze")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        ok,
        "systemd-analyze is missing: install it with `apt-get install -y systemd` \
         (it is only run offline; systemd is never booted)"
    );
    "systemd-analyze"
}

fn write_units(dir: &Path, units: &[(&str, &str)]) -> Vec<PathBuf> {
    units
        .iter()
        .map(|(name, text)| {
            let path = dir.join(name);
            std::fs::write(&path, text).unwrap();
            path
        })
        .collect()
}

/// Runs `systemd-analyze verify` and returns (success, diagnostics).
fn verify(paths: &[PathBuf]) -> (bool, String) {
    let out = Command::new(systemd_analyze())
        .arg("verify")
        .args(paths)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success() && text.trim().is_empty(), text)
}

/// The overall exposure that `systemd-analyze security --offline=yes` gives a unit file.
fn exposure(path: &Path) -> f64 {
    let out = Command::new(systemd_analyze())
        .args(["security", "--offline=yes", "--no-pager"])
        .arg(path)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text
        .lines()
        .find(|l| l.contains("Overall exposure level"))
        .unwrap_or_else(|| {
            panic!(
                "no exposure in: {text}{}",
                String::from_utf8_lossy(&out.stderr)
            )
        });
    line.split(':')
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("cannot read the score in {line}"))
}

fn demo_hub_program() -> String {
    cutover_tests::workspace_bin("cutover-demo-hub")
        .to_str()
        .unwrap()
        .to_owned()
}

#[test]
fn rendered_units_match_their_snapshots() {
    let units = render_units(
        &demo_spec("/usr/local/bin/cutover-demo-hub"),
        &demo_options(),
    )
    .unwrap();
    insta::assert_snapshot!("demo_hub_service", units.service);
    let (socket_name, socket) = units.socket.unwrap();
    assert_eq!(socket_name, "demo-hub.socket");
    insta::assert_snapshot!("demo_hub_socket", socket);

    // The real service: a bun runtime calling external APIs, secrets as environment variables
    // through the exec shim, a named user, writable state under /home (ProtectHome=read-only).
    let mut hub = ServiceSpec::new(
        "mcp-hub",
        [
            "/usr/local/bin/bun",
            "/opt/mcp-hub/current/dist/cli.js",
            "--port",
            "7000",
        ],
    );
    hub.user = Some("mcp".into());
    hub.network = NetworkAccess::Egress;
    hub.secrets.insert(
        "GEMINI_API_KEY".into(),
        "op://prod/mcp-hub/gemini".parse().unwrap(),
    );
    hub.environment
        .insert("NODE_ENV".into(), "production".into());
    hub.restart.policy = process_control::RestartPolicy::Always;
    hub.limits.cpu_quota_percent = Some(400);
    let mut options = UnitOptions::for_layout(Path::new("/opt/mcp-hub"), "mcp-hub");
    options
        .read_write_paths
        .push("/home/mcp/.local/state/mcp-hub".into());
    options.exec_shim = Some("/usr/local/bin/cutover-proc".into());
    let units = render_units(&hub, &options).unwrap();
    assert!(units.socket.is_none());
    insta::assert_snapshot!("mcp_hub_service", units.service);
}

#[test]
fn systemd_analyze_verify_passes_rendered_units_and_flags_the_replaced_one() {
    let dir = tempfile::tempdir().unwrap();
    let program = demo_hub_program();
    let units = render_units(&demo_spec(&program), &demo_options()).unwrap();
    let (socket_name, socket) = units.socket.clone().unwrap();
    let paths = write_units(
        dir.path(),
        &[
            (&units.service_name, &units.service),
            (&socket_name, &socket),
        ],
    );
    let (clean, diagnostics) = verify(&paths);
    assert!(
        clean,
        "verify complained:\n{diagnostics}\n{}",
        units.service
    );

    // A failing case: the replaced tooling's unit uses the deprecated MemoryLimit=.
    let seed = write_units(dir.path(), &[("seed.service", &seed_unit(&program))]);
    let (clean, diagnostics) = verify(&seed);
    assert!(
        !clean && diagnostics.contains("MemoryLimit"),
        "{diagnostics}"
    );

    // And one that does not exist: verify checks ExecStart.
    let missing = units
        .service
        .replace(&program, "/nonexistent/cutover-demo-hub");
    let broken = write_units(dir.path(), &[("broken.service", &missing)]);
    let (clean, diagnostics) = verify(&broken);
    assert!(
        !clean,
        "a missing ExecStart must be reported: {diagnostics}"
    );
}

#[test]
fn the_default_demo_unit_scores_at_most_2_exposure_and_the_replaced_one_is_exposed() {
    let dir = tempfile::tempdir().unwrap();
    let program = demo_hub_program();
    let default_unit = render_units(
        &ServiceSpec::new("demo-hub", [program.as_str(), "--listen", "127.0.0.1:7000"]),
        &demo_options(),
    )
    .unwrap();
    let full = render_units(&demo_spec(&program), &demo_options()).unwrap();
    let mut egress_spec = demo_spec(&program);
    egress_spec.network = NetworkAccess::Egress;
    egress_spec.name = "demo-hub-egress".into();
    let egress = render_units(&egress_spec, &demo_options()).unwrap();
    let paths = write_units(
        dir.path(),
        &[
            ("demo-hub.service", &default_unit.service),
            ("demo-hub-full.service", &full.service),
            ("demo-hub-egress.service", &egress.service),
            ("seed.service", &seed_unit(&program)),
        ],
    );
    let scores: Vec<f64> = paths.iter().map(|p| exposure(p)).collect();
    println!(
        "systemd-analyze security --offline=yes: default demo unit {:.1}, with notify+socket+credential {:.1}, with egress allowed {:.1}; replaced tooling's unit {:.1}",
        scores[0], scores[1], scores[2], scores[3]
    );
    assert!(scores[0] <= 2.0, "default unit exposure {}", scores[0]);
    assert!(scores[1] <= 2.0, "full demo unit exposure {}", scores[1]);
    assert!(scores[2] <= 2.5, "egress unit exposure {}", scores[2]);
    assert!(
        scores[3] >= 8.0,
        "the replaced unit should be exposed: {}",
        scores[3]
    );
}

fn fake_systemctl(active: bool) -> RecordingRunner {
    RecordingRunner::answering(move |argv| match argv.get(1).map(String::as_str) {
        Some("is-active") => CommandOutput {
            code: Some(if active { 0 } else { 3 }),
            ..CommandOutput::default()
        },
        Some("show") => CommandOutput::ok(
            "ActiveState=active\nSubState=running\nResult=success\nMainPID=4242\nNRestarts=2\n\
                 ExecMainCode=0\nExecMainStatus=0\nExecMainStartTimestampMonotonic=0\n\
                 MemoryCurrent=10485760\nCPUUsageNSec=250000000\n",
        ),
        _ => CommandOutput::ok(""),
    })
}

/// A manager rendering for the layout under /opt/demo-hub (a layout under /tmp would be
/// hidden by PrivateTmp and is refused), writing units and credentials into temp dirs.
fn systemd_manager(
    root: &Path,
    unit_dir: &Path,
    runner: RecordingRunner,
) -> SystemdManager<RecordingRunner> {
    let mut config = SystemdConfig::for_root(Path::new("/opt/demo-hub"), "demo-hub")
        .with_unit_dir(unit_dir)
        .with_systemctl("systemctl");
    config.unit.credentials_dir = Some(root.join("credentials"));
    SystemdManager::new(config, runner)
        .with_resolver(Resolver::new().with_env("DEMO_TOKEN", "canary-token-9d1e"))
}

#[test]
fn install_start_stop_status_run_the_expected_systemctl_sequence() {
    let root = tempfile::tempdir().unwrap();
    let units = tempfile::tempdir().unwrap();
    let manager = systemd_manager(root.path(), units.path(), fake_systemctl(false));
    let spec = demo_spec("/usr/local/bin/cutover-demo-hub");
    let started = manager.start(&spec).unwrap();
    assert!(!started.already_running);
    assert_eq!(started.status.state, ServiceState::Running);
    assert_eq!(started.status.pid, Some(4242));
    assert_eq!(started.status.restart_count, 2);
    assert_eq!(started.status.rss_bytes, Some(10 << 20));
    assert_eq!(started.status.cpu_time_ms, Some(250));
    let show = format!(
        "systemctl show demo-hub.service --property={}",
        process_control::SHOW_PROPERTIES
    );
    assert_eq!(
        manager.runner().calls(),
        vec![
            "systemctl is-active --quiet demo-hub.service".to_owned(),
            "systemctl daemon-reload".into(),
            "systemctl enable demo-hub.socket demo-hub.service".into(),
            "systemctl start demo-hub.socket".into(),
            "systemctl start demo-hub.service".into(),
            show.clone(),
        ]
    );
    // The unit and the credential are on disk; the secret is in neither the unit nor a command.
    let unit = std::fs::read_to_string(units.path().join("demo-hub.service")).unwrap();
    assert!(unit.contains("LoadCredential=CUTOVER_DEMO_TOKEN:"));
    assert!(!unit.contains("canary-token-9d1e"));
    assert!(units.path().join("demo-hub.socket").is_file());
    let credential = root.path().join("credentials/CUTOVER_DEMO_TOKEN");
    assert_eq!(
        std::fs::read_to_string(&credential).unwrap(),
        "canary-token-9d1e"
    );
    assert!(
        manager
            .runner()
            .calls()
            .iter()
            .all(|c| !c.contains("canary"))
    );

    manager.runner().clear();
    let stopped = manager
        .stop("demo-hub", Some(Duration::from_secs(5)))
        .unwrap();
    assert!(!stopped.was_running, "the fake says inactive");
    assert_eq!(
        manager.runner().calls(),
        vec![
            "systemctl is-active --quiet demo-hub.service".to_owned(),
            "systemctl stop demo-hub.socket".into(),
            "systemctl stop demo-hub.service".into(),
            "systemctl show demo-hub.service --property=Result".into(),
        ]
    );
    manager.runner().clear();
    let status = manager.status("demo-hub").unwrap();
    assert_eq!(status.manager, "systemd");
    assert_eq!(manager.runner().calls(), vec![show]);
    assert!(matches!(
        status.logs,
        process_control::LogLocation::Journal { .. }
    ));
}

#[test]
fn starting_an_active_unit_starts_nothing_and_a_failing_systemctl_is_an_error() {
    let root = tempfile::tempdir().unwrap();
    let units = tempfile::tempdir().unwrap();
    let manager = systemd_manager(root.path(), units.path(), fake_systemctl(true));
    let spec = ServiceSpec::new("demo-hub", ["/usr/local/bin/cutover-demo-hub"]);
    let outcome = manager.start(&spec).unwrap();
    assert!(outcome.already_running);
    assert!(
        manager
            .runner()
            .calls()
            .iter()
            .all(|c| !c.contains(" start ")),
        "{:?}",
        manager.runner().calls()
    );

    let failing = RecordingRunner::answering(|argv| match argv.get(1).map(String::as_str) {
        Some("daemon-reload") => CommandOutput {
            code: Some(1),
            stdout: String::new(),
            stderr: "Access denied".into(),
        },
        _ => CommandOutput {
            code: Some(3),
            ..CommandOutput::default()
        },
    });
    let manager = systemd_manager(root.path(), units.path(), failing);
    let err = manager.start(&spec).unwrap_err().to_string();
    assert!(
        err.contains("systemctl daemon-reload") && err.contains("Access denied"),
        "{err}"
    );
}

#[test]
fn show_states_map_to_service_states() {
    use process_control::state_from_show;
    let table = [
        ("active", "running", ServiceState::Running),
        ("activating", "start", ServiceState::Starting),
        ("activating", "auto-restart", ServiceState::CrashLooping),
        ("deactivating", "stop-sigterm", ServiceState::Stopping),
        ("inactive", "dead", ServiceState::Stopped),
        ("failed", "failed", ServiceState::Failed),
        ("", "", ServiceState::Unknown),
    ];
    for (active, sub, expected) in table {
        assert_eq!(state_from_show(active, sub), expected, "{active}/{sub}");
    }
    let parsed = process_control::parse_show("A=1\nB=x=y\n\nnoise");
    assert_eq!(
        parsed,
        BTreeMap::from([("A".into(), "1".into()), ("B".into(), "x=y".into())])
    );
}
