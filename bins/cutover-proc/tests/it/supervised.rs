//! `cutover-proc` with the built-in supervisor against real processes: the demo hub, shells and
//! `sleep`. Every test owns a temp root; a guard SIGKILLs the supervisor and the service's
//! process group (identified by pid + start time and session) even when the test panics.

#![allow(clippy::unwrap_used)] // test helpers outside #[test] functions unwrap too

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use cutover_tests::{ChildGuard, http_get, wait_for_addr_file, wait_until, workspace_bin};
use nix_free::{kill_group, kill_pid};
use process_control::{ProcStat, ServiceState, SupervisedState};
use serde_json::Value;

const DEADLINE: Duration = Duration::from_secs(30);

/// Small signal helpers without another dependency.
mod nix_free {
    #[allow(unsafe_code)]
    pub(crate) fn kill_pid(pid: u32, signal: i32) {
        // SAFETY: kill(2) has no memory-safety preconditions.
        unsafe {
            libc::kill(pid as i32, signal);
        }
    }
    #[allow(unsafe_code)]
    pub(crate) fn kill_group(pgid: u32, signal: i32) {
        // SAFETY: as above; a negative pid names the process group.
        unsafe {
            libc::kill(-(pgid as i32), signal);
        }
    }
}

fn proc_bin() -> &'static str {
    env!("CARGO_BIN_EXE_cutover-proc")
}

/// A service under test: its root, and a Drop that leaves nothing running.
struct Svc {
    root: tempfile::TempDir,
    name: String,
}

impl Svc {
    fn new(name: &str) -> Self {
        Self {
            root: cutover_tests::temp_dir(),
            name: name.to_owned(),
        }
    }

    fn root(&self) -> &Path {
        self.root.path()
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.root.path().join(rel)
    }

    /// Runs `cutover-proc SUB --name N --root R ARGS…` and returns (exit code, stdout, stderr).
    fn cli(&self, sub: &str, args: &[&str]) -> (i32, String, String) {
        let mut all = vec![sub, "--name", &self.name, "--root"];
        let root = self.root().to_str().unwrap().to_owned();
        all.push(&root);
        all.extend_from_slice(args);
        run_cli(&all, &[])
    }

    fn state(&self) -> SupervisedState {
        let path = self.path(&format!("state/proc/{}/state.json", self.name));
        serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap()
    }

    fn status_json(&self) -> (i32, Value) {
        let (code, out, err) = self.cli("status", &["--json"]);
        let v: Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out} {err}"));
        (code, v)
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.path(&format!("logs/{}.log", self.name))).unwrap_or_default()
    }
}

impl Drop for Svc {
    fn drop(&mut self) {
        let path = self.path(&format!("state/proc/{}/state.json", self.name));
        let Ok(bytes) = std::fs::read(&path) else {
            return;
        };
        let Ok(state) = serde_json::from_slice::<SupervisedState>(&bytes) else {
            return;
        };
        if let Some(sup) = state.supervisor.filter(|s| s.is_alive()) {
            kill_pid(sup.pid, libc::SIGKILL);
        }
        if let Some(group) = state.group.filter(|g| g.is_alive()) {
            kill_group(group.pgid, libc::SIGKILL);
        }
    }
}

fn run_cli(args: &[&str], envs: &[(&str, &str)]) -> (i32, String, String) {
    let mut command = Command::new(proc_bin());
    command
        .args(args)
        .envs(envs.iter().copied())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut guard = ChildGuard::spawn(command).unwrap();
    let status = guard
        .wait_timeout(Duration::from_secs(90))
        .unwrap_or_else(|| panic!("cutover-proc {args:?} did not finish"));
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

fn hub() -> String {
    workspace_bin("cutover-demo-hub")
        .to_str()
        .unwrap()
        .to_owned()
}

fn alive(pid: u32) -> bool {
    ProcStat::read(pid).is_some_and(|s| s.is_running())
}

/// Processes in the supervisor's session other than the supervisor: the service and its kids.
fn session_members(session: u32) -> Vec<u32> {
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(ProcStat::read)
        .filter(|s| s.session == session && s.pid != session && s.is_running())
        .map(|s| s.pid)
        .collect()
}

#[test]
fn notify_start_is_ready_a_second_start_is_a_no_op_and_stop_finishes_in_flight_requests() {
    let svc = Svc::new("hub");
    let addr_file = svc.path("addr");
    let (code, out, err) = svc.cli(
        "start",
        &[
            "--notify",
            "--json",
            "--",
            &hub(),
            "--listen",
            "127.0.0.1:0",
            "--addr-file",
            addr_file.to_str().unwrap(),
            "--start-delay",
            "500ms",
            "--latency",
            "1500ms",
        ],
    );
    assert_eq!(code, 0, "{out}\n{err}");
    let started: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(started["status"], "ok");
    assert_eq!(started["service"]["state"], "running");
    let addr: SocketAddr = wait_for_addr_file(&addr_file, DEADLINE).unwrap();
    // READY=1 is sent only once the hub is ready, and start waited for it.
    let health = http_get(addr, "/api/health").unwrap();
    assert!(
        health.body.contains("\"state\":\"ready\""),
        "{}",
        health.body
    );

    let first = svc.state();
    let service_pid = first.service.unwrap().pid;
    let supervisor = first.supervisor.unwrap();
    assert_eq!(session_members(supervisor.pid), vec![service_pid]);

    let (code, out, _) = svc.cli(
        "start",
        &["--json", "--", &hub(), "--listen", "127.0.0.1:0"],
    );
    assert_eq!(code, 0);
    let again: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(again["already_running"], true);
    assert_eq!(again["service"]["pid"], service_pid);
    assert_eq!(svc.state().supervisor, Some(supervisor));
    assert_eq!(
        session_members(supervisor.pid),
        vec![service_pid],
        "no second copy"
    );

    let (code, out, _) = svc.cli("status", &[]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("running") && out.contains("memory"), "{out}");

    // `cutover-proc status | head -2`: a reader that went away ends it quietly, no panic.
    let mut child = Command::new(proc_bin())
        .args(["status", "--name", &svc.name, "--root"])
        .arg(svc.root())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let closed = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&closed.stderr);
    assert_eq!(closed.status.code(), Some(0), "{err}");
    assert!(!err.contains("panicked"), "{err}");

    // A slow request in flight when stop begins still gets its answer.
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(http_get(addr, "/api/tools").map(|r| r.status));
    });
    // /metrics is outside the latency knob and counts /api requests in flight.
    let in_flight = wait_until(DEADLINE, || {
        http_get(addr, "/metrics").is_ok_and(|r| {
            r.body
                .lines()
                .find(|l| l.starts_with("demo_hub_queue_depth "))
                .and_then(|l| l.rsplit(' ').next())
                .and_then(|v| v.parse::<f64>().ok())
                .is_some_and(|v| v >= 1.0)
        })
    });
    assert!(in_flight, "the slow request never reached the hub");
    let begun = Instant::now();
    let (code, out, err) = svc.cli("stop", &["--grace", "10s"]);
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(!out.contains("SIGKILL"), "{out}");
    let answer = rx.recv_timeout(DEADLINE).unwrap();
    assert_eq!(answer.unwrap(), 200, "the in-flight request finished");
    assert!(begun.elapsed() < Duration::from_secs(10));
    assert!(!alive(service_pid));
    let (code, status) = svc.status_json();
    assert_eq!(code, 2, "stopped exits 2");
    assert_eq!(status["service"]["state"], "stopped");
    assert_eq!(status["service"]["last_exit"]["code"], 0);
}

#[test]
fn crash_restarts_with_growing_delays_until_the_start_limit_marks_it_failed() {
    let svc = Svc::new("crashy");
    let (code, out, err) = svc.cli(
        "start",
        &[
            "--backoff",
            "200ms",
            "--start-limit",
            "4",
            "--start-limit-interval",
            "60s",
            "--",
            &hub(),
            "--listen",
            "127.0.0.1:0",
            "--crash-after",
            "300ms",
        ],
    );
    assert!(code == 0 || code == 2, "{out}\n{err}");
    let failed = wait_until(DEADLINE, || svc.state().state == ServiceState::Failed);
    assert!(failed, "never failed: {:?}\n{}", svc.state(), svc.log());
    let state = svc.state();
    assert_eq!(state.restart_count, 3, "{state:?}");
    assert!(
        state
            .message
            .as_deref()
            .unwrap_or("")
            .contains("start limit"),
        "{state:?}"
    );
    let delays: Vec<u64> = state.restarts.iter().map(|r| r.delay_ms).collect();
    assert_eq!(delays, [200, 400, 800], "exponential backoff");
    for r in &state.restarts {
        let started = r.started_at_ms.expect("each restart happened");
        assert!(
            started - r.exited_at_ms >= r.delay_ms,
            "restarted before its delay: {r:?}"
        );
    }
    assert_eq!(
        state.last_exit.as_ref().and_then(|e| e.signal),
        Some(libc::SIGABRT)
    );
    let (code, status) = svc.status_json();
    assert_eq!(code, 2);
    assert_eq!(status["service"]["state"], "failed");
    assert!(svc.log().contains("start limit hit"));
    assert!(
        !state.supervisor.unwrap().is_alive(),
        "a failed service's supervisor exits"
    );
}

#[test]
fn a_service_ignoring_sigterm_is_killed_after_the_grace_period() {
    let svc = Svc::new("stubborn");
    let (code, out, err) = svc.cli(
        "start",
        &["--", &hub(), "--listen", "127.0.0.1:0", "--ignore-sigterm"],
    );
    assert_eq!(code, 0, "{out}\n{err}");
    let pid = svc.state().service.unwrap().pid;
    let begun = Instant::now();
    let (code, out, _) = svc.cli("stop", &["--grace", "1s", "--json"]);
    let took = begun.elapsed();
    assert_eq!(code, 0);
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["stop"]["killed"], true, "{v}");
    assert!(took >= Duration::from_secs(1), "waited the grace period");
    assert!(took < Duration::from_secs(20));
    assert!(!alive(pid));
    assert_eq!(
        svc.state().last_exit.and_then(|e| e.signal),
        Some(libc::SIGKILL)
    );
}

#[test]
fn a_quick_stop_needs_no_sigkill() {
    let svc = Svc::new("polite");
    let (code, _, err) = svc.cli("start", &["--", &hub(), "--listen", "127.0.0.1:0"]);
    assert_eq!(code, 0, "{err}");
    let (code, out, _) = svc.cli("stop", &["--grace", "10s", "--json"]);
    assert_eq!(code, 0);
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["stop"]["killed"], false, "{v}");
    assert_eq!(v["stop"]["was_running"], true, "{v}");
}

#[test]
fn children_in_the_group_die_with_the_service() {
    let svc = Svc::new("family");
    let child_file = svc.path("child.pid");
    let script = format!(
        "sleep 300 & echo $! > '{}'; exec '{}' --listen 127.0.0.1:0",
        child_file.display(),
        hub()
    );
    let (code, _, err) = svc.cli("start", &["--", "/bin/sh", "-c", &script]);
    assert_eq!(code, 0, "{err}");
    assert!(wait_until(DEADLINE, || std::fs::read_to_string(
        &child_file
    )
    .is_ok_and(|s| s.ends_with('\n'))));
    let child: u32 = std::fs::read_to_string(&child_file)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(alive(child));
    let group = svc.state().group.unwrap();
    assert_eq!(ProcStat::read(child).unwrap().pgrp, group.pgid);
    let (code, _, _) = svc.cli("stop", &["--grace", "5s"]);
    assert_eq!(code, 0);
    assert!(
        wait_until(Duration::from_secs(5), || !alive(child)),
        "the sleep child outlived the service"
    );
}

#[test]
fn a_sigkilled_supervisor_is_reported_and_start_recovers_without_a_second_copy() {
    let svc = Svc::new("orphan");
    let argv = [hub(), "--listen".into(), "127.0.0.1:0".into()];
    let mut start_args = vec!["--json", "--"];
    start_args.extend(argv.iter().map(String::as_str));
    let (code, _, err) = svc.cli("start", &start_args);
    assert_eq!(code, 0, "{err}");
    let before = svc.state();
    let old_supervisor = before.supervisor.unwrap();
    let old_service = before.service.unwrap();
    kill_pid(old_supervisor.pid, libc::SIGKILL);
    assert!(wait_until(DEADLINE, || !old_supervisor.is_alive()));

    let (code, status) = svc.status_json();
    assert_eq!(code, 3, "{status}");
    assert_eq!(status["service"]["state"], "orphaned");
    assert_eq!(status["service"]["supervisor_alive"], false);
    assert!(old_service.is_alive(), "the orphan still runs");

    let (code, out, err) = svc.cli("start", &start_args);
    assert_eq!(code, 0, "{out}\n{err}");
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["recovered_orphan"], old_service.pid);
    assert_eq!(v["already_running"], false);
    assert!(!old_service.is_alive(), "the orphan was stopped");
    let after = svc.state();
    let new_supervisor = after.supervisor.unwrap();
    assert_ne!(new_supervisor, old_supervisor);
    assert_ne!(after.service.unwrap(), old_service);
    assert_eq!(session_members(new_supervisor.pid).len(), 1);
    let (code, _) = svc.status_json();
    assert_eq!(code, 0);
    assert_eq!(svc.cli("stop", &[]).0, 0);
}

#[test]
fn a_supervisor_dead_with_its_service_gone_is_reported_failed_and_start_recovers() {
    let svc = Svc::new("gone");
    let (code, _, err) = svc.cli("start", &["--", "/bin/sleep", "300"]);
    assert_eq!(code, 0, "{err}");
    let state = svc.state();
    kill_pid(state.supervisor.unwrap().pid, libc::SIGKILL);
    kill_group(state.group.unwrap().pgid, libc::SIGKILL);
    assert!(wait_until(DEADLINE, || !state
        .supervisor
        .unwrap()
        .is_alive()
        && !state.service.unwrap().is_alive()));
    let (code, status) = svc.status_json();
    assert_eq!(code, 2, "{status}");
    assert_eq!(status["service"]["state"], "failed");
    assert!(
        status["service"]["message"]
            .as_str()
            .unwrap()
            .contains("died")
    );
    let (code, out, _) = svc.cli("start", &["--json", "--", "/bin/sleep", "300"]);
    assert_eq!(code, 0);
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["recovered_orphan"], Value::Null);
    assert_eq!(svc.cli("stop", &[]).0, 0);
}

#[test]
fn socket_is_handed_over_and_kept_across_restarts() {
    let svc = Svc::new("socketed");
    let port = cutover_tests::free_port();
    let address = format!("127.0.0.1:{port}");
    let (code, _, err) = svc.cli(
        "start",
        &[
            "--socket",
            &address,
            "--notify",
            "--",
            &hub(),
            // The hub cannot bind port 1: it serves only because of the handed-over socket.
            "--listen",
            "127.0.0.1:1",
        ],
    );
    assert_eq!(code, 0, "{err}\n{}", svc.log());
    let addr: SocketAddr = address.parse().unwrap();
    assert_eq!(http_get(addr, "/api/health").unwrap().status, 200);
    let first = svc.state().service.unwrap().pid;
    // A crash: the supervisor restarts the hub on the same socket.
    kill_pid(first, libc::SIGKILL);
    assert!(wait_until(DEADLINE, || svc
        .state()
        .service
        .is_some_and(|s| s.pid != first)
        && svc.state().state == ServiceState::Running));
    assert_eq!(http_get(addr, "/api/health").unwrap().status, 200);
    assert_eq!(svc.state().restart_count, 1);
    assert_eq!(svc.cli("stop", &[]).0, 0);
}

#[test]
fn notify_readiness_that_never_comes_fails_the_start() {
    let svc = Svc::new("silent");
    let (code, out, err) = svc.cli(
        "start",
        &[
            "--notify",
            "--start-timeout",
            "1s",
            "--restart",
            "never",
            "--",
            "/bin/sleep",
            "300",
        ],
    );
    assert_eq!(code, 2, "{out}\n{err}");
    assert!(err.contains("not ready within 1s"), "{err}");
    let (code, status) = svc.status_json();
    assert_eq!(code, 2);
    assert_eq!(status["service"]["state"], "failed");
}

#[test]
fn a_program_that_exits_with_failure_and_no_restart_is_failed() {
    let svc = Svc::new("false");
    let (code, _, err) = svc.cli("start", &["--restart", "never", "--", "/bin/false"]);
    // `false` may exit before or after start reads the state: running then failed, or failed.
    assert!(code == 0 || code == 2, "{err}");
    assert!(wait_until(DEADLINE, || svc.state().state == ServiceState::Failed));
    assert_eq!(svc.state().last_exit.unwrap().code, Some(1));
    assert_eq!(svc.status_json().0, 2);
}

#[test]
fn secrets_arrive_by_environment_or_credential_file_and_never_in_argv_or_state() {
    let canary = "canary-secret-5f3a9c";
    for (delivery, read) in [
        ("env", "printf %s \"$API_KEY\""),
        ("credentials", "cat \"$CREDENTIALS_DIRECTORY/API_KEY\""),
    ] {
        let svc = Svc::new(&format!("secretive-{delivery}"));
        let out_file = svc.path("seen");
        let script = format!("{read} > '{}'; exec sleep 300", out_file.display());
        let root = svc.root().to_str().unwrap().to_owned();
        let mut args = vec![
            "start",
            "--name",
            &svc.name,
            "--root",
            &root,
            "--secret",
            "API_KEY=env:CANARY_SOURCE",
        ];
        if delivery == "credentials" {
            args.push("--credentials");
        }
        args.extend(["--", "/bin/sh", "-c", &script]);
        let (code, out, err) = run_cli(&args, &[("CANARY_SOURCE", canary)]);
        assert_eq!(code, 0, "{out}\n{err}");
        assert!(wait_until(DEADLINE, || std::fs::read_to_string(&out_file)
            .is_ok_and(|s| s == canary)));
        let state = svc.state();
        let pid = state.service.unwrap().pid;
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap();
        assert!(!String::from_utf8_lossy(&cmdline).contains(canary));
        let sup_cmdline =
            std::fs::read(format!("/proc/{}/cmdline", state.supervisor.unwrap().pid)).unwrap();
        assert!(!String::from_utf8_lossy(&sup_cmdline).contains(canary));
        for file in ["plan.json", "state.json"] {
            let text =
                std::fs::read_to_string(svc.path(&format!("state/proc/{}/{file}", svc.name)))
                    .unwrap();
            assert!(!text.contains(canary), "{file} holds the secret");
        }
        assert!(!svc.log().contains(canary));
        assert!(!out.contains(canary) && !err.contains(canary));
        assert_eq!(svc.cli("stop", &["--grace", "2s"]).0, 0);
    }
}

#[test]
fn logs_show_service_output_and_follow_new_lines() {
    let svc = Svc::new("chatty");
    let (code, _, err) = svc.cli(
        "start",
        &[
            "--env",
            "RUST_LOG=info",
            "--",
            &hub(),
            "--listen",
            "127.0.0.1:0",
        ],
    );
    assert_eq!(code, 0, "{err}");
    assert!(wait_until(DEADLINE, || svc.log().contains("listening")));
    let (code, out, _) = svc.cli("logs", &["--lines", "50"]);
    assert_eq!(code, 0);
    assert!(
        out.contains("listening") && out.contains("cutover-proc: started pid"),
        "{out}"
    );

    let mut command = Command::new(proc_bin());
    command
        .args([
            "logs", "--follow", "--lines", "1", "--name", &svc.name, "--root",
        ])
        .arg(svc.root())
        .stdout(Stdio::piped());
    let mut follower = ChildGuard::spawn(command).unwrap();
    let stdout = follower.child().stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            if tx.send(line.unwrap_or_default()).is_err() {
                break;
            }
        }
    });
    // The first line is the tail; then stopping writes new lines the follower must print.
    rx.recv_timeout(DEADLINE).expect("the tail is printed");
    assert_eq!(svc.cli("stop", &[]).0, 0);
    let end = Instant::now() + DEADLINE;
    let mut seen = Vec::new();
    while Instant::now() < end {
        match rx.recv_timeout(Duration::from_millis(200)) {
            Ok(line) if line.contains("supervisor exiting") => return,
            Ok(line) => seen.push(line),
            Err(_) => {}
        }
    }
    panic!("--follow did not print the stop lines; saw {seen:?}");
}

#[test]
fn status_of_an_unknown_service_is_unknown_and_bad_flags_are_usage_errors() {
    let svc = Svc::new("never");
    let (code, status) = svc.status_json();
    assert_eq!(code, 3);
    assert_eq!(status["status"], "unknown");
    let (code, _, _) = svc.cli("start", &["--"]);
    assert_eq!(code, 64, "no argv");
    let (code, _, err) = svc.cli("start", &["--secret", "K=plainvalue", "--", "/bin/true"]);
    assert_eq!(code, 64, "{err}");
    assert!(
        !err.contains("plainvalue"),
        "a bare value is not echoed: {err}"
    );
    let (code, _, _) = run_cli(&["frobnicate"], &[]);
    assert_eq!(code, 64);
}

#[test]
fn restart_without_argv_reuses_the_recorded_command() {
    let svc = Svc::new("again");
    assert_eq!(svc.cli("start", &["--", "/bin/sleep", "300"]).0, 0);
    let first = svc.state().service.unwrap();
    let (code, out, err) = svc.cli("restart", &["--grace", "2s"]);
    assert_eq!(code, 0, "{out}\n{err}");
    let second = svc.state().service.unwrap();
    assert_ne!(first, second);
    assert!(!first.is_alive() && second.is_alive());
    assert_eq!(svc.cli("stop", &[]).0, 0);
}

/// Writes `cutover.toml` into the service's root and returns its path.
fn write_manifest(svc: &Svc, text: &str) -> String {
    let path = svc.path("cutover.toml");
    std::fs::write(&path, text).unwrap();
    path.to_str().unwrap().to_owned()
}

/// The recorded plan (what the supervisor runs), as JSON.
fn plan(svc: &Svc) -> Value {
    let path = svc.path(&format!("state/proc/{}/plan.json", svc.name));
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

#[test]
fn exec_readiness_from_the_manifest_waits_for_the_probe_to_pass() {
    let svc = Svc::new("probed");
    let ready = svc.path("ready");
    let ready = ready.to_str().unwrap();
    // The service makes the probe pass only after a second: a start that did not wait for the
    // probe would return before the file exists.
    let manifest = write_manifest(
        &svc,
        &format!(
            r#"[service]
name = "probed"
start = ["/bin/sh", "-c", "sleep 1; touch '{ready}'; exec sleep 300"]

[process]
restart = "never"
stop_timeout = "7s"
start_timeout = "60s"
readiness = {{ kind = "exec", argv = ["/bin/sh", "-c", "test -f '{ready}'"], interval = "100ms" }}
"#
        ),
    );
    let root = svc.root().to_str().unwrap().to_owned();
    let (code, out, err) = run_cli(
        &[
            "start",
            "--manifest",
            &manifest,
            "--root",
            &root,
            "--stop-timeout",
            "3s",
            "--json",
        ],
        &[],
    );
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(
        Path::new(ready).exists(),
        "start returned before the probe could pass"
    );
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["service"]["state"], "running", "{v}");
    assert!(svc.log().contains("ready (probe passed)"), "{}", svc.log());
    // The manifest gave the command, policy and readiness; the flag overrode the stop timeout.
    let spec = &plan(&svc)["spec"];
    assert_eq!(spec["argv"][0], "/bin/sh");
    assert_eq!(spec["restart"]["policy"], "never");
    assert_eq!(spec["readiness"]["kind"], "exec");
    assert_eq!(
        spec["stop"]["timeout"], "3s",
        "the flag wins over the manifest"
    );
    assert_eq!(svc.cli("stop", &["--grace", "5s"]).0, 0);
}

#[test]
fn exec_readiness_that_never_passes_fails_the_start() {
    let svc = Svc::new("unprobed");
    let manifest = write_manifest(
        &svc,
        r#"[service]
name = "unprobed"
start = ["/bin/sleep", "300"]

[process]
restart = "never"
start_timeout = "2s"
readiness = { kind = "exec", argv = ["/bin/false"], interval = "100ms" }
"#,
    );
    let root = svc.root().to_str().unwrap().to_owned();
    let (code, out, err) = run_cli(&["start", "--manifest", &manifest, "--root", &root], &[]);
    assert_eq!(code, 2, "{out}\n{err}");
    assert!(err.contains("not ready within 2s"), "{err}");
    let (code, status) = svc.status_json();
    assert_eq!(code, 2);
    assert_eq!(status["service"]["state"], "failed");
    assert!(!svc.log().contains("probe passed"), "{}", svc.log());
}

/// The real, effective and saved uid of the test process.
fn own_uid() -> u32 {
    uid_of_pid("self")
}

fn uid_of_pid(pid: &str) -> u32 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("Uid:")).unwrap();
    line.split_whitespace().nth(2).unwrap().parse().unwrap()
}

/// nobody's uid from /etc/passwd (65534 on Debian).
fn nobody_uid() -> u32 {
    let passwd = std::fs::read_to_string("/etc/passwd").unwrap();
    passwd
        .lines()
        .find_map(|l| {
            let fields: Vec<&str> = l.split(':').collect();
            (fields.first() == Some(&"nobody")).then(|| fields[2].parse().unwrap())
        })
        .expect("no `nobody` user in /etc/passwd")
}

/// `--user nobody`. CI runs the tests as root, where the service must really run as nobody.
/// Run by another user, switching users is impossible: then the start must fail loudly (exit 2,
/// the OS error named) rather than run the service as the wrong user. Either way the test
/// asserts something that can fail.
#[test]
fn user_switches_the_service_to_nobody_as_root_and_fails_loudly_otherwise() {
    let svc = Svc::new("nobody-svc");
    let (code, out, err) = svc.cli(
        "start",
        &[
            "--user",
            "nobody",
            "--restart",
            "never",
            "--",
            "/bin/sleep",
            "300",
        ],
    );
    if own_uid() == 0 {
        assert_eq!(code, 0, "{out}\n{err}");
        let pid = svc.state().service.unwrap().pid;
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
        let uid_line = status.lines().find(|l| l.starts_with("Uid:")).unwrap();
        let nobody = nobody_uid();
        let uids: Vec<u32> = uid_line
            .split_whitespace()
            .skip(1)
            .map(|u| u.parse().unwrap())
            .collect();
        assert_eq!(
            uids, [nobody; 4],
            "real, effective, saved, fs uid: {uid_line}"
        );
        assert_eq!(
            uid_of_pid(&svc.state().supervisor.unwrap().pid.to_string()),
            0,
            "the supervisor itself stays root"
        );
        assert_eq!(svc.cli("stop", &["--grace", "5s"]).0, 0);
    } else {
        assert_eq!(
            code, 2,
            "a non-root supervisor cannot switch users: {out}\n{err}"
        );
        assert!(err.contains("Operation not permitted"), "{err}");
        assert_eq!(svc.state().state, ServiceState::Failed);
    }
    // An unknown user is refused, whoever runs the test.
    let svc = Svc::new("ghost-svc");
    let (code, _, err) = svc.cli(
        "start",
        &[
            "--user",
            "no-such-user-cutover",
            "--restart",
            "never",
            "--",
            "/bin/sleep",
            "300",
        ],
    );
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("no user `no-such-user-cutover`"), "{err}");
}

/// The value of one row of /proc/PID/limits: (soft, hard).
fn limit_row(pid: u32, row: &str) -> (String, String) {
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).unwrap();
    let line = limits
        .lines()
        .find(|l| l.starts_with(row))
        .unwrap_or_else(|| panic!("no {row} in {limits}"));
    let mut rest = line[row.len()..].split_whitespace();
    (
        rest.next().unwrap().to_owned(),
        rest.next().unwrap().to_owned(),
    )
}

#[test]
fn resource_limits_are_in_effect_in_the_service_process() {
    // Without limits the service inherits ours; with them each row holds the value asked for.
    let plain = Svc::new("unlimited");
    assert_eq!(plain.cli("start", &["--", "/bin/sleep", "300"]).0, 0);
    let plain_pid = plain.state().service.unwrap().pid;
    let ours = std::process::id();
    for row in ["Max open files", "Max data size", "Max processes"] {
        assert_eq!(limit_row(plain_pid, row), limit_row(ours, row), "{row}");
    }
    let svc = Svc::new("limited");
    let (code, out, err) = svc.cli(
        "start",
        &[
            "--nofile",
            "123",
            "--memory-max",
            "1073741824",
            "--tasks-max",
            "4321",
            "--cpu-quota",
            "50",
            "--",
            "/bin/sleep",
            "300",
        ],
    );
    assert_eq!(code, 0, "{out}\n{err}");
    let pid = svc.state().service.unwrap().pid;
    for (row, value) in [
        ("Max open files", "123"),
        ("Max data size", "1073741824"),
        ("Max processes", "4321"),
    ] {
        let got = limit_row(pid, row);
        assert_eq!(got, (value.to_owned(), value.to_owned()), "{row}");
        assert_ne!(
            got,
            limit_row(plain_pid, row),
            "{row} differs from the default"
        );
    }
    assert!(
        svc.log().contains("cpu_quota_percent = 50 is not applied"),
        "{}",
        svc.log()
    );
    assert_eq!(svc.cli("stop", &["--grace", "5s"]).0, 0);
    assert_eq!(plain.cli("stop", &["--grace", "5s"]).0, 0);
}

#[test]
fn a_relative_program_path_is_resolved_against_the_callers_directory() {
    let svc = Svc::new("relative");
    let bin = svc.path("work/target/release");
    std::fs::create_dir_all(&bin).unwrap();
    std::fs::copy(hub(), bin.join("app")).unwrap();
    let addr_file = svc.path("addr");
    let root = svc.root().to_str().unwrap().to_owned();
    let status = Command::new(proc_bin())
        .current_dir(svc.path("work"))
        .args(["start", "--name", "relative", "--root", &root, "--"])
        .args([
            "target/release/app",
            "--listen",
            "127.0.0.1:0",
            "--addr-file",
        ])
        .arg(&addr_file)
        .status()
        .unwrap();
    assert!(status.success(), "{status}");
    let addr = wait_for_addr_file(&addr_file, DEADLINE).expect("the relative program runs");
    assert_eq!(http_get(addr, "/api/health").unwrap().status, 200);
    let plan = plan(&svc);
    let argv0 = plan["spec"]["argv"][0]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(
        Path::new(&argv0).is_absolute() && argv0.ends_with("work/target/release/app"),
        "{plan:#}"
    );
    assert_eq!(svc.cli("stop", &[]).0, 0);
}

#[test]
fn placeholders_in_flags_are_filled_and_an_unknown_one_is_a_usage_error() {
    let svc = Svc::new("templated");
    let (code, out, err) = svc.cli(
        "start",
        &[
            "--env",
            "WHERE={root}/x",
            "--",
            "/bin/sh",
            "-c",
            "echo \"$WHERE {shared} ${HOME:-}\"; sleep 300",
        ],
    );
    assert_eq!(code, 0, "{out}\n{err}");
    let root = svc.root().to_str().unwrap().to_owned();
    assert!(
        wait_until(DEADLINE, || svc
            .log()
            .contains(&format!("{root}/x {root}/shared"))),
        "{}",
        svc.log()
    );
    assert_eq!(svc.cli("stop", &[]).0, 0);
    let (code, _, err) = svc.cli("start", &["--", "/bin/echo", "{relase}"]);
    assert_eq!(code, 64, "{err}");
    assert!(err.contains("unknown placeholder `{relase}`"), "{err}");
    let (code, _, err) = svc.cli("start", &["--", "/bin/echo", "{release_id}"]);
    assert_eq!(code, 64, "{err}");
    assert!(err.contains("nothing is deployed"), "{err}");
}
