//! End to end: the built cutover-deploy against copies of the real demo hub, the supervised
//! backend and a private nginx. Needs nginx (`apt-get install nginx`) and
//! `cargo build -p cutover-deploy -p cutover-demo-hub` first.

#![allow(clippy::print_stdout, clippy::print_stderr)]
// What a test measured or why it waits: shown by nextest.
// Test helpers panic on setup failures by design: a test that cannot set up must fail loudly.
#![allow(clippy::unwrap_used, clippy::expect_used)]
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use cutover_tests::{ChildGuard, free_port, http_get, temp_dir, wait_until, workspace_bin};
use serde_json::Value;

const SECRET: &str = "s3cr3t-canary-value";

struct Demo {
    dir: tempfile::TempDir,
    http: SocketAddr,
    blue: u16,
    green: u16,
    control: u16,
    strategy: &'static str,
}

impl Demo {
    fn new(strategy: &'static str) -> Self {
        assert!(
            Path::new("/usr/sbin/nginx").exists() || which("nginx"),
            "nginx is missing: apt-get install -y nginx"
        );
        let dir = temp_dir();
        let source = dir.path().join("source");
        std::fs::create_dir_all(&source).unwrap();
        let demo = Self {
            http: format!("127.0.0.1:{}", free_port()).parse().unwrap(),
            blue: free_port(),
            green: free_port(),
            control: free_port(),
            dir,
            strategy,
        };
        demo.write_manifest("", "");
        demo
    }

    fn write_manifest(&self, env: &str, deploy: &str) {
        let hub = workspace_bin("cutover-demo-hub");
        let build = format!(r#"["install", "-D", "{}", "bin/hub"]"#, hub.display());
        self.write_manifest_with(env, deploy, &build);
    }

    fn root(&self) -> PathBuf {
        self.dir.path().join("root")
    }

    fn manifest(&self) -> PathBuf {
        self.dir.path().join("cutover.toml")
    }

    /// `env` goes into `[service] env`; `deploy` into `[deploy]` (its keys win over the
    /// defaults here); `build` is the build argv.
    fn write_manifest_with(&self, env: &str, deploy: &str, build: &str) {
        self.write_manifest_full(env, deploy, build, "");
    }

    /// As [`Self::write_manifest_with`], with `extra` tables appended.
    fn write_manifest_full(&self, env: &str, deploy: &str, build: &str, extra: &str) {
        let mut defaults = String::new();
        for (key, value) in [
            ("ready_timeout", "\"15s\""),
            ("drain", "\"200ms\""),
            ("stable_for", "\"1s\""),
        ] {
            if !deploy.contains(key) {
                defaults.push_str(&format!("{key} = {value}\n"));
            }
        }
        let text = format!(
            r#"
[service]
name = "hub"
source = "source"
build = {build}
artifact = {{ path = "bin/hub", min_bytes = 102400, executable = true }}
start = ["{{release}}/bin/hub", "--listen", "127.0.0.1:{{port}}", "--release-id", "{{release_id}}", "--grace", "5s"]
port = {blue}
standby_port = {green}
env = {{ {env} }}
secrets = {{ API_KEY = "env:CUTOVER_TEST_SECRET" }}
[layout]
root = "root"
keep_releases = 3
shared = ["data/"]
[process]
stop_timeout = "5s"
[proxy]
kind = "nginx"
listen_http = ["{http}"]
control_listen = "127.0.0.1:{control}"
[[probe]]
name = "ready"
suite = "ready"
url = "/api/health"
expect_json = ['/state == "ready"']
[[probe]]
name = "tools"
url = "/api/tools"
expect_json = ["/tools nonempty"]
{extra}
[deploy]
strategy = "{strategy}"
validate_timeout = "5s"
{defaults}{deploy}
"#,
            blue = self.blue,
            green = self.green,
            http = self.http,
            control = self.control,
            strategy = self.strategy,
        );
        std::fs::write(self.manifest(), text).unwrap();
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(workspace_bin("cutover-deploy"));
        cmd.arg("--manifest")
            .arg(self.manifest())
            .args(args)
            .env("CUTOVER_TEST_SECRET", SECRET)
            .env("NO_COLOR", "1");
        cmd
    }

    fn run(&self, args: &[&str]) -> (i32, Value, Output) {
        let mut full = vec!["--json"];
        full.extend_from_slice(args);
        let out = self.command(&full).output().unwrap();
        let json = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
        (out.status.code().unwrap_or(-1), json, out)
    }

    fn deploy_ok(&self) -> String {
        let (code, json, out) = self.run(&["deploy"]);
        assert_eq!(
            code,
            0,
            "{json:#}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        json["release"].as_str().unwrap().to_owned()
    }

    /// The release answering through nginx (blue-green) or directly (restart).
    fn serving(&self) -> Option<String> {
        let addr = match self.strategy {
            "restart" => format!("127.0.0.1:{}", self.blue).parse().unwrap(),
            _ => self.http,
        };
        let r = http_get(addr, "/api/health").ok()?;
        let v: Value = serde_json::from_str(&r.body).ok()?;
        v["version"].as_str().map(str::to_owned)
    }

    fn journal(&self) -> String {
        std::fs::read_to_string(self.root().join("state/journal.jsonl")).unwrap_or_default()
    }
}

impl Drop for Demo {
    fn drop(&mut self) {
        let _ = self.command(&["down"]).output();
    }
}

fn which(program: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(program).exists()))
}

/// Runs a prepared command and returns (exit code, stdout as JSON, stderr).
fn json_output(mut cmd: Command) -> (i32, Value, String) {
    let out = cmd.output().unwrap();
    let json: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    (
        out.status.code().unwrap_or(-1),
        json,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A test's way of running cutover-deploy.
type RunFn<'a> = &'a dyn Fn(&[&str]) -> (i32, Value, String);

/// Runs `down` through the test's own runner when dropped, so that what a test started goes
/// even when it fails.
struct DownOnDrop<'a>(RunFn<'a>);

impl Drop for DownOnDrop<'_> {
    fn drop(&mut self) {
        let _ = (self.0)(&["down"]);
    }
}

/// Connection-per-request GETs through nginx until stopped; counts failures.
struct Load {
    stop: Arc<AtomicBool>,
    ok: Arc<AtomicU64>,
    failed: Arc<AtomicU64>,
    thread: Option<std::thread::JoinHandle<Vec<String>>>,
}

impl Load {
    fn start(addr: SocketAddr) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let ok = Arc::new(AtomicU64::new(0));
        let failed = Arc::new(AtomicU64::new(0));
        let (s, o, f) = (stop.clone(), ok.clone(), failed.clone());
        let thread = std::thread::spawn(move || {
            let mut errors = Vec::new();
            let end = Instant::now() + Duration::from_secs(60);
            while !s.load(Ordering::SeqCst) && Instant::now() < end {
                match http_get(addr, "/api/health") {
                    Ok(r) if r.status == 200 => {
                        o.fetch_add(1, Ordering::SeqCst);
                    }
                    other => {
                        f.fetch_add(1, Ordering::SeqCst);
                        if errors.len() < 5 {
                            errors.push(format!("{:?}", other.map(|r| r.status)));
                        }
                    }
                }
            }
            errors
        });
        Self {
            stop,
            ok,
            failed,
            thread: Some(thread),
        }
    }

    fn finish(mut self) -> (u64, u64, Vec<String>) {
        self.stop.store(true, Ordering::SeqCst);
        let errors = self
            .thread
            .take()
            .map(|t| t.join().unwrap())
            .unwrap_or_default();
        (
            self.ok.load(Ordering::SeqCst),
            self.failed.load(Ordering::SeqCst),
            errors,
        )
    }
}

#[test]
fn blue_green_under_load_bad_release_rollback_and_the_read_only_views() {
    let demo = Demo::new("blue-green");
    let r1 = demo.deploy_ok();
    assert_eq!(demo.serving().as_deref(), Some(r1.as_str()));

    // A second deploy under constant load: no failed request.
    let load = Load::start(demo.http);
    assert!(wait_until(Duration::from_secs(10), || load
        .ok
        .load(Ordering::SeqCst)
        > 20));
    let r2 = demo.deploy_ok();
    std::thread::sleep(Duration::from_millis(300));
    let (ok, failed, errors) = load.finish();
    eprintln!("connection-per-request load across a blue-green deploy: {ok} ok, {failed} failed");
    assert_eq!(
        failed, 0,
        "failed requests during the switch: {errors:?} ({ok} ok)"
    );
    assert!(ok > 50, "{ok}");
    assert_eq!(demo.serving().as_deref(), Some(r2.as_str()));

    // A bad release never becomes ready: rolled back automatically, exit 2, r2 serving.
    demo.write_manifest(
        r#"CUTOVER_DEMO_HEALTH_STATE = "starting""#,
        r#"ready_timeout = "2s""#,
    );
    let (code, json, out) = demo.run(&["deploy"]);
    assert_eq!(
        code,
        2,
        "{json:#}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(json["outcome"], "rolled-back");
    assert_eq!(json["status"], "fail");
    assert!(
        json["reason"]
            .as_str()
            .unwrap()
            .starts_with("switch failed"),
        "{json:#}"
    );
    assert_eq!(demo.serving().as_deref(), Some(r2.as_str()));
    demo.write_manifest("", "");

    // rollback with no version: back to r1.
    let (code, json, _) = demo.run(&["rollback"]);
    assert_eq!(code, 0, "{json:#}");
    assert_eq!(json["release"], r1.as_str());
    assert_eq!(demo.serving().as_deref(), Some(r1.as_str()));

    let (code, status, _) = demo.run(&["status"]);
    assert_eq!(code, 0, "{status:#}");
    assert_eq!(status["current"], r1.as_str());
    assert_eq!(status["healthy"], true);
    // The release rolled away from stays warm as the standby (keep_standby's default).
    assert_eq!(status["standby"]["release"], r2.as_str(), "{status:#}");

    let (code, releases, _) = demo.run(&["releases"]);
    assert_eq!(code, 0);
    let states: Vec<&str> = releases["releases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["state"].as_str().unwrap())
        .collect();
    assert!(
        states.contains(&"current") && states.contains(&"failed"),
        "{states:?}"
    );

    let (code, audit, _) = demo.run(&["audit"]);
    assert_eq!(code, 0);
    let outcomes: Vec<&str> = audit["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["outcome"].as_str().unwrap())
        .collect();
    assert_eq!(
        outcomes,
        ["deployed", "deployed", "rolled-back", "restored"]
    );

    // plan names the secret, never its value (nor does anything else print it).
    let out = demo.command(&["plan"]).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("API_KEY"), "{text}");
    for output in [&out.stdout, &out.stderr] {
        assert!(!String::from_utf8_lossy(output).contains(SECRET));
    }
    for file in ["state/journal.jsonl", "state/audit.jsonl"] {
        let text = std::fs::read_to_string(demo.root().join(file)).unwrap();
        assert!(!text.contains(SECRET), "{file}");
    }

    // r2 waits warm in the other slot: rolling back to it starts nothing, under load.
    let load = Load::start(demo.http);
    assert!(wait_until(Duration::from_secs(10), || load
        .ok
        .load(Ordering::SeqCst)
        > 20));
    let (code, json, _) = demo.run(&["rollback"]);
    std::thread::sleep(Duration::from_millis(300));
    let (ok, failed, errors) = load.finish();
    assert_eq!(code, 0, "{json:#}");
    assert_eq!(json["release"], r2.as_str());
    let switch = json["phases"][0]["detail"].as_str().unwrap();
    assert!(switch.contains("warm standby"), "{json:#}");
    assert_eq!(failed, 0, "failed requests: {errors:?} ({ok} ok)");
    assert_eq!(demo.serving().as_deref(), Some(r2.as_str()));
}

#[test]
fn the_lock_refuses_a_second_deploy_or_makes_it_wait() {
    let demo = Demo::new("restart");
    let state = demo.root().join("state");
    std::fs::create_dir_all(&state).unwrap();
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(state.join("deploy.lock"))
        .unwrap();
    use std::os::fd::AsRawFd;
    // SAFETY: flock on a descriptor this test owns.
    #[allow(unsafe_code)]
    let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    assert_eq!(rc, 0);
    let started = Instant::now();
    let (code, json, out) = demo.run(&["deploy"]);
    assert_eq!(
        code,
        75,
        "{json:#}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("another deploy holds"));
    assert!(started.elapsed() < Duration::from_secs(10));
    // With --lock-wait it waits for the holder, then deploys.
    let release = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(800));
        drop(file);
    });
    let (code, json, out) = demo.run(&["--lock-wait", "20s", "deploy"]);
    release.join().unwrap();
    assert_eq!(
        code,
        0,
        "{json:#}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(demo.serving().as_deref(), json["release"].as_str());
}

/// SIGKILL of cutover-deploy when the journal shows a phase started, then `recover`.
#[test]
fn killed_at_build_switch_or_commit_then_recover_leaves_a_consistent_state() {
    let demo = Demo::new("blue-green");
    let r1 = demo.deploy_ok();
    let hub = workspace_bin("cutover-demo-hub");
    // (phase to kill in, [service] env, [deploy] extra, build slowed, rolls forward)
    let cases = [
        ("build", "", "", true, false),
        (
            "switch",
            r#"CUTOVER_DEMO_START_DELAY = "4s""#,
            "",
            false,
            false,
        ),
        // Without a standby the commit drains, then stops the old release: time to kill it.
        (
            "commit",
            "",
            "drain = \"4s\"\nkeep_standby = false",
            false,
            true,
        ),
    ];
    let mut live = r1.clone();
    for (phase, env, extra, slow_build, forward) in cases {
        if slow_build {
            let build = format!(
                r#"["sh", "-c", "sleep 3 && install -D {} bin/hub"]"#,
                hub.display()
            );
            demo.write_manifest_with(env, extra, &build);
        } else {
            demo.write_manifest(env, extra);
        }
        let mut child = ChildGuard::spawn(demo.command(&["deploy"])).unwrap();
        let marker = format!(r#""phase":"{phase}""#);
        // The journal of this deploy (not the last one's): it moves from `live`, and is open.
        let begin = format!(r#""previous":"{live}""#);
        let started = |j: String| {
            j.lines().next().is_some_and(|l| l.contains(&begin))
                && !j.contains(r#""event":"end""#)
                && j.lines()
                    .any(|l| l.contains(r#""event":"phase-started""#) && l.contains(&marker))
        };
        assert!(
            wait_until(Duration::from_secs(30), || started(demo.journal())),
            "{phase}: {}",
            demo.journal()
        );
        std::thread::sleep(Duration::from_millis(300));
        child.signal(libc::SIGKILL);
        child.wait_timeout(Duration::from_secs(10)).expect("killed");
        demo.write_manifest("", "");
        let (code, json, out) = demo.run(&["recover"]);
        assert_eq!(
            code,
            0,
            "{phase}: {json:#}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(json["was_consistent"], false, "{phase}: {json:#}");
        let (_, status, _) = demo.run(&["status"]);
        assert_eq!(status["healthy"], true, "{phase}: {status:#}");
        assert_eq!(status["interrupted"], Value::Null);
        let current = status["current"].as_str().unwrap().to_owned();
        if forward {
            assert_ne!(current, live, "{phase}: rolled forward");
        } else {
            assert_eq!(current, live, "{phase}: rolled back");
        }
        assert_eq!(demo.serving().as_deref(), Some(current.as_str()), "{phase}");
        let running = status["services"]
            .as_object()
            .unwrap()
            .values()
            .filter(|v| v.as_str().unwrap().starts_with("running"))
            .count();
        // Rolled forward (recover's manifest keeps the standby), the previous release stays
        // warm in the other slot; rolled back, only the live one runs.
        if forward {
            assert_eq!(status["standby"]["release"], live.as_str(), "{status:#}");
            assert_eq!(running, 2, "{phase}: {status:#}");
        } else {
            assert_eq!(status["standby"], Value::Null, "{status:#}");
            assert_eq!(running, 1, "{phase}: {status:#}");
        }
        live = current;
        // The next deploy works from there.
    }
    let next = demo.deploy_ok();
    assert_eq!(demo.serving().as_deref(), Some(next.as_str()));
}

#[test]
fn a_release_that_cannot_start_fails_fast_instead_of_waiting_for_the_ready_timeout() {
    let demo = Demo::new("restart");
    let r1 = demo.deploy_ok();
    // The demo hub exits at once with CUTOVER_DEMO_FAIL_START; the readiness wait watches
    // the process manager, so the deploy fails well before its 30 s ready_timeout.
    demo.write_manifest(
        r#"CUTOVER_DEMO_FAIL_START = "1""#,
        r#"ready_timeout = "30s""#,
    );
    let started = std::time::Instant::now();
    let (code, json, out) = demo.run(&["deploy"]);
    let took = started.elapsed();
    assert_eq!(
        code,
        2,
        "{json:#}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(json["outcome"], "rolled-back", "{json:#}");
    let reason = json["reason"].as_str().unwrap();
    assert!(reason.starts_with("switch failed"), "{reason}");
    assert!(
        took < Duration::from_secs(20),
        "the failed start was noticed after {took:?}: {reason}"
    );
    assert_eq!(demo.serving().as_deref(), Some(r1.as_str()));
}

/// Runs a workspace binary with `--manifest` and `--json`, returning its exit code and document.
fn tool(demo: &Demo, bin: &str, args: &[&str]) -> (i32, Value, String) {
    let out = Command::new(workspace_bin(bin))
        .arg("--manifest")
        .arg(demo.manifest())
        .arg("--json")
        .args(args)
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    let json = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    (out.status.code().unwrap_or(-1), json, stderr)
}

/// The slot that `cutover-proc status` marks live, with its release and pid.
fn live_slot(status: &Value) -> (String, String, u64) {
    let live = status["slots"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["role"] == "live")
        .unwrap_or_else(|| panic!("no live slot: {status:#}"));
    (
        live["name"].as_str().unwrap().to_owned(),
        live["release"].as_str().unwrap().to_owned(),
        live["service"]["pid"].as_u64().unwrap_or(0),
    )
}

/// An operator's day: after a deploy, every per-phase binary finds the deployment with nothing
/// but `--manifest`, and follows it after a deploy to the other slot.
#[test]
fn an_operators_day_every_binary_finds_the_live_deployment_from_the_manifest() {
    let demo = Demo::new("blue-green");
    let hub = workspace_bin("cutover-demo-hub");
    let build = format!(r#"["install", "-D", "{}", "bin/hub"]"#, hub.display());
    let extra = r#"
[[probe]]
name = "fast"
suite = "slo"
url = "/api/health"
max_latency = "250ms"

[[alert]]
name = "slow"
source = { http = "/api/stats", pointer = "/latency_ms/p95" }
crit = "> 200"
for = "1s"
"#;
    demo.write_manifest_full("", "", &build, extra);
    let public = format!("http://{}", demo.http);
    let blue = format!("http://127.0.0.1:{}", demo.blue);
    let green = format!("http://127.0.0.1:{}", demo.green);

    // Nothing deployed yet: the tools say so instead of probing a guessed port.
    let (code, json, stderr) = tool(&demo, "cutover-probe", &["run"]);
    assert_eq!(code, 3, "{json:#}\n{stderr}");
    assert!(
        format!("{json}{stderr}").contains("nothing is deployed"),
        "{json:#}\n{stderr}"
    );

    let r1 = demo.deploy_ok();
    std::fs::write(
        demo.root().join("shared/data/notes.txt"),
        "kept across releases",
    )
    .unwrap();

    // cutover-deploy status: the release, where users reach it, the slot, the process.
    let (code, status, _) = demo.run(&["status"]);
    assert_eq!(code, 0, "{status:#}");
    assert_eq!(status["release"], r1.as_str(), "{status:#}");
    assert_eq!(status["url"], public.as_str(), "{status:#}");
    assert_eq!(status["slot_url"], blue.as_str(), "{status:#}");
    assert_eq!(status["service"]["state"], "running", "{status:#}");
    let pid1 = status["service"]["pid"].as_u64().unwrap();

    // The probes run against the public URL, through nginx.
    let (code, json, stderr) = tool(&demo, "cutover-probe", &["run"]);
    assert_eq!(code, 0, "{json:#}\n{stderr}");
    assert_eq!(json["status"], "ok", "{json:#}");
    assert!(
        json.to_string().contains(&public),
        "probed elsewhere: {json:#}"
    );
    let (code, json, stderr) = tool(&demo, "cutover-probe", &["run", "--via", "release"]);
    assert_eq!(code, 0, "{json:#}\n{stderr}");
    assert!(json.to_string().contains(&blue), "not the slot: {json:#}");

    // The monitor: the live release, its pid and URL.
    let (code, json, stderr) = tool(&demo, "cutover-monitor", &["--once"]);
    assert_eq!(code, 0, "{json:#}\n{stderr}");
    let text = json.to_string();
    assert!(text.contains(&r1), "{json:#}");
    assert!(text.contains(&pid1.to_string()), "{json:#}");
    assert!(text.contains(&public), "{json:#}");

    // cutover-proc status lists both slots, blue live running r1.
    let (code, json, stderr) = tool(&demo, "cutover-proc", &["status"]);
    assert_eq!(code, 0, "{json:#}\n{stderr}");
    assert_eq!(json["slots"].as_array().unwrap().len(), 2, "{json:#}");
    assert_eq!(live_slot(&json), ("hub-blue".to_owned(), r1.clone(), pid1));

    // cutover-backup list finds the pipeline's pre-deploy backup in <root>/backups.
    let (code, json, stderr) = tool(&demo, "cutover-backup", &["list"]);
    assert_eq!(code, 0, "{json:#}\n{stderr}");
    assert_eq!(json["dir"], demo.root().join("backups").to_str().unwrap());
    assert_eq!(json["backups"].as_array().unwrap().len(), 1, "{json:#}");

    // cutover-edge check renders and checks the proxy the manifest describes.
    let (code, json, stderr) = tool(&demo, "cutover-edge", &["check"]);
    assert_eq!(code, 0, "{json:#}\n{stderr}");

    // A release with a fault knob, deployed to the other slot: extra environment for this
    // release only, recorded in its record so a rollback to it runs it the same way.
    let (code, json, out) = demo.run(&["deploy", "--set-env", "CUTOVER_DEMO_LATENCY=400ms"]);
    assert_eq!(
        code,
        0,
        "{json:#}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r2 = json["release"].as_str().unwrap().to_owned();
    let record: Value = serde_json::from_str(
        &std::fs::read_to_string(demo.root().join("releases").join(&r2).join("release.json"))
            .unwrap(),
    )
    .unwrap();
    assert_eq!(
        record["set_env"]["CUTOVER_DEMO_LATENCY"], "400ms",
        "{record:#}"
    );
    // Secrets never come from the command line.
    let (code, _, out) = demo.run(&["deploy", "--set-env", "API_KEY=x"]);
    assert_eq!(code, 78, "{}", String::from_utf8_lossy(&out.stderr));

    // Everything follows the new live slot.
    let (code, status, _) = demo.run(&["status"]);
    assert_eq!(code, 0, "{status:#}");
    assert_eq!(status["release"], r2.as_str());
    assert_eq!(status["slot_url"], green.as_str());
    assert_eq!(status["url"], public.as_str());
    let pid2 = status["service"]["pid"].as_u64().unwrap();
    assert_ne!(pid1, pid2);

    let (code, json, stderr) = tool(&demo, "cutover-proc", &["status"]);
    assert_eq!(code, 0, "{json:#}\n{stderr}");
    assert_eq!(live_slot(&json), ("hub-green".to_owned(), r2.clone(), pid2));
    let standby = json["slots"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["role"] == "standby")
        .unwrap_or_else(|| panic!("{json:#}"));
    assert_eq!(standby["release"], r1.as_str());

    let (_, json, stderr) = tool(&demo, "cutover-monitor", &["--once"]);
    let text = json.to_string();
    assert!(
        text.contains(&r2) && text.contains(&pid2.to_string()),
        "{json:#}\n{stderr}"
    );

    // The slow release fails the latency probe (through nginx) ...
    let (code, json, stderr) = tool(&demo, "cutover-probe", &["run"]);
    assert_eq!(code, 2, "{json:#}\n{stderr}");

    // ... and the alert with `for` fires on the second cron-style run, its state kept in
    // <root>/state/alerts.json.
    let (first, json1, stderr) = tool(&demo, "cutover-alerts", &["check"]);
    assert_ne!(first, 2, "fired before its `for`: {json1:#}\n{stderr}");
    assert!(demo.root().join("state/alerts.json").is_file());
    std::thread::sleep(Duration::from_millis(1500));
    let (second, json2, stderr) = tool(&demo, "cutover-alerts", &["check"]);
    assert_eq!(second, 2, "{json2:#}\n{stderr}");
    assert!(json2.to_string().contains("slow"), "{json2:#}");

    let (code, json, _) = tool(&demo, "cutover-backup", &["list"]);
    assert_eq!(code, 0);
    assert_eq!(json["backups"].as_array().unwrap().len(), 2, "{json:#}");

    // cutover-edge finds the pipeline's nginx in <root>/proxy.
    let (code, json, stderr) = tool(&demo, "cutover-edge", &["down"]);
    assert_eq!(code, 0, "{json:#}\n{stderr}");
    assert_eq!(json["was_running"], true, "{json:#}");
    assert_eq!(json["dir"], demo.root().join("proxy").to_str().unwrap());
}

#[test]
fn an_unknown_placeholder_is_refused_at_load_with_its_line_and_column() {
    let demo = Demo::new("blue-green");
    let text = std::fs::read_to_string(demo.manifest())
        .unwrap()
        .replace("\"{release_id}\"", "\"{relase_id}\"");
    std::fs::write(demo.manifest(), text).unwrap();
    let (code, _, out) = demo.run(&["plan"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(code, 78, "{stderr}");
    assert!(
        stderr.contains("unknown placeholder `{relase_id}`"),
        "{stderr}"
    );
    assert!(stderr.contains("cutover.toml:7:"), "{stderr}");
    assert!(!demo.root().exists(), "nothing may be touched");
}

#[test]
fn a_never_ready_release_is_waited_for_the_whole_ready_timeout_and_the_message_says_so() {
    let demo = Demo::new("blue-green");
    let r1 = demo.deploy_ok();
    demo.write_manifest(
        r#"CUTOVER_DEMO_HEALTH_STATE = "starting""#,
        r#"ready_timeout = "3s""#,
    );
    let (code, json, out) = demo.run(&["deploy"]);
    assert_eq!(
        code,
        2,
        "{json:#}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let switch = json["phases"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["phase"] == "switch")
        .unwrap_or_else(|| panic!("{json:#}"))
        .clone();
    let took = switch["duration_ms"].as_u64().unwrap();
    eprintln!("never-ready release, ready_timeout 3s: switch failed after {took} ms: {switch}");
    // [budget, budget + one period + 1 s]; the switch also starts the process first.
    assert!(
        (3000..=3000 + 300 + 1000 + 500).contains(&took),
        "{took} ms: {switch:#}"
    );
    let detail = switch["detail"].as_str().unwrap();
    assert!(detail.contains("(ready_timeout 3s)"), "{detail}");
    let attempts: u32 = detail
        .split("not ready after ")
        .nth(1)
        .and_then(|rest| rest.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{detail}"));
    assert!(attempts >= 5, "{detail}");
    assert!(detail.contains("in 3."), "elapsed is the budget: {detail}");
    assert_eq!(demo.serving().as_deref(), Some(r1.as_str()));
}

#[test]
fn a_release_that_crashes_three_seconds_after_it_became_ready_is_rolled_back_by_the_stability_window()
 {
    let demo = Demo::new("blue-green");
    demo.write_manifest("", r#"stable_for = "5s""#);
    let r1 = demo.deploy_ok();
    let started = Instant::now();
    let (code, json, out) = demo.run(&["deploy", "--set-env", "CUTOVER_DEMO_CRASH_AFTER=3s"]);
    assert_eq!(
        code,
        2,
        "{json:#}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let reason = json["reason"].as_str().unwrap();
    eprintln!("crash after 3s: {reason}");
    assert!(
        reason.starts_with("stable failed: not stable for 5s (stable_for)"),
        "{json:#}"
    );
    // Validation had passed: the crash came inside the window, not before it.
    let phases: Vec<&str> = json["phases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["phase"].as_str().unwrap())
        .collect();
    assert!(
        phases.ends_with(&["validate", "stable", "rollback"]),
        "{phases:?}"
    );
    assert!(started.elapsed() >= Duration::from_secs(3));
    assert_eq!(demo.serving().as_deref(), Some(r1.as_str()));
}

#[test]
fn the_live_release_killed_under_load_is_covered_by_the_warm_standby_as_nginx_backup() {
    let demo = Demo::new("blue-green");
    let r1 = demo.deploy_ok();
    let r2 = demo.deploy_ok();
    let include = std::fs::read_to_string(demo.root().join("proxy/conf/upstream.conf")).unwrap();
    assert!(
        include.contains(&format!("server 127.0.0.1:{} backup;", demo.blue)),
        "{include}"
    );
    let (_, status, _) = demo.run(&["status"]);
    assert_eq!(status["standby"]["release"], r1.as_str(), "{status:#}");
    let pid = status["service"]["pid"].as_u64().unwrap();

    let load = Load::start(demo.http);
    assert!(wait_until(Duration::from_secs(10), || load
        .ok
        .load(Ordering::SeqCst)
        > 20));
    // kill(1) on the live release's process.
    let killed = Command::new("kill")
        .args(["-KILL", &pid.to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    // The supervisor brings the live release back; meanwhile nginx sends users to the standby.
    assert!(wait_until(Duration::from_secs(20), || {
        let (_, s, _) = demo.run(&["status"]);
        s["service"]["pid"].as_u64().is_some_and(|p| p != pid) && s["healthy"] == true
    }));
    std::thread::sleep(Duration::from_millis(500));
    let (ok, failed, errors) = load.finish();
    eprintln!(
        "live release SIGKILLed under load, standby as nginx backup: {ok} ok, {failed} failed"
    );
    assert_eq!(
        failed, 0,
        "failed requests while the live release was down: {errors:?} ({ok} ok)"
    );
    assert!(ok > 40, "{ok}");
    // Back on the live release once nginx tries it again.
    assert!(
        wait_until(Duration::from_secs(20), || demo.serving().as_deref()
            == Some(r2.as_str())),
        "{:?}",
        demo.serving()
    );
}

fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .args(args)
        .current_dir(dir)
        .env("GIT_AUTHOR_NAME", "t")
        .env("GIT_AUTHOR_EMAIL", "t@example.invalid")
        .env("GIT_COMMITTER_NAME", "t")
        .env("GIT_COMMITTER_EMAIL", "t@example.invalid")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

#[test]
fn a_release_is_built_from_a_clean_export_of_the_commit_and_its_build_cache_is_kept() {
    let demo = Demo::new("blue-green");
    let source = demo.dir.path().join("source");
    // The build counts its runs in the cache and ships the committed VERSION beside the hub.
    let hub = workspace_bin("cutover-demo-hub");
    std::fs::write(
        source.join("build.sh"),
        format!(
            "set -e\nmkdir -p cache\necho run >> cache/runs\ninstall -D {} bin/hub\ncp VERSION bin/VERSION\n",
            hub.display()
        ),
    )
    .unwrap();
    std::fs::write(source.join("VERSION"), "one").unwrap();
    git(&source, &["init", "-q"]);
    git(&source, &["add", "."]);
    git(&source, &["commit", "-q", "-m", "one"]);
    let first = git(&source, &["rev-parse", "HEAD"]);
    demo.write_manifest_with("", "", r#"["sh", "build.sh"]"#);
    let text = std::fs::read_to_string(demo.manifest()).unwrap();
    let text = text.replace("artifact = {", "build_cache = [\"cache/\"]\nartifact = {");
    let text = text.replace("path = \"bin/hub\"", "path = \"bin\"");
    let text = text.replace(", min_bytes = 102400, executable = true", "");
    std::fs::write(demo.manifest(), text).unwrap();

    // An uncommitted edit is named, and not built.
    std::fs::write(source.join("VERSION"), "edited, not committed").unwrap();
    let r1 = demo.deploy_ok();
    assert!(r1.ends_with(&first[..7]), "{r1}");
    let release = demo.root().join("releases").join(&r1);
    assert_eq!(
        std::fs::read_to_string(release.join("bin/VERSION")).unwrap(),
        "one"
    );
    let (_, json, out) = demo.run(&["releases"]);
    assert!(
        json.to_string().contains(&first[..7]),
        "{json:#} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let cache = demo.root().join("build-cache/cache/runs");
    assert_eq!(std::fs::read_to_string(&cache).unwrap().lines().count(), 1);

    std::fs::write(source.join("VERSION"), "two").unwrap();
    git(&source, &["commit", "-q", "-am", "two"]);
    let (code, json, out) = demo.run(&["deploy"]);
    assert_eq!(code, 0, "{json:#}");
    let build = json["phases"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["phase"] == "build")
        .unwrap()
        .clone();
    let detail = build["detail"].as_str().unwrap();
    assert!(detail.contains("build cache cache/"), "{detail}");
    assert!(!detail.contains("uncommitted"), "{detail}");
    let _ = out;
    // The second build found the first one's cache (the build appended to it).
    assert_eq!(std::fs::read_to_string(&cache).unwrap().lines().count(), 2);

    // The dirty warning reaches the operator, naming the file.
    std::fs::write(source.join("VERSION"), "dirty again").unwrap();
    let (code, json, out) = demo.run(&["deploy", "--commit", &first]);
    assert_eq!(code, 0, "{json:#}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("uncommitted changes that are not built") && stderr.contains("VERSION"),
        "{stderr}"
    );
    let r3 = json["release"].as_str().unwrap();
    assert_eq!(
        std::fs::read_to_string(demo.root().join("releases").join(r3).join("bin/VERSION")).unwrap(),
        "one"
    );
    assert_eq!(demo.serving().as_deref(), Some(r3));

    let (code, json, out) = demo.run(&["deploy", "--commit", "no-such-commit"]);
    assert_eq!(
        code,
        64,
        "{json:#} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(demo.serving().as_deref(), Some(r3));
    assert!(
        !demo.root().join("builds").exists()
            || std::fs::read_dir(demo.root().join("builds"))
                .unwrap()
                .next()
                .is_none(),
        "no build directory is left behind"
    );
}

/// A directory outside /tmp (which a unit's PrivateTmp=yes hides), removed when dropped.
struct OutsideTmp(PathBuf);

impl OutsideTmp {
    fn new(tag: &str) -> Self {
        static N: AtomicU64 = AtomicU64::new(0);
        // The target directory, unless the checkout itself is under /tmp or /var/tmp (a clone
        // made there): then a directory under /var/lib, which PrivateTmp leaves alone.
        let target = Path::new(env!("CARGO_TARGET_TMPDIR"));
        let base = if target.starts_with("/tmp") || target.starts_with("/var/tmp") {
            PathBuf::from("/var/lib/cutover-tests")
        } else {
            target.to_path_buf()
        };
        let dir = base.join(format!(
            "{tag}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }
}

impl Drop for OutsideTmp {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// `systemd-analyze security --offline=yes` of a unit file: its overall exposure.
fn exposure(unit: &Path) -> f64 {
    let out = Command::new("systemd-analyze")
        .args(["security", "--offline=yes", "--no-pager"])
        .arg(unit)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines()
        .find(|l| l.contains("Overall exposure level"))
        .and_then(|l| l.split(':').nth(1))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| {
            panic!(
                "no exposure in {text}{}",
                String::from_utf8_lossy(&out.stderr)
            )
        })
}

#[test]
fn blue_green_through_systemd_units_deploy_a_failed_deploy_and_a_rollback() {
    let demo = Demo::new("blue-green");
    let outside = OutsideTmp::new("systemd");
    let root = outside.0.join("root");
    let units = outside.0.join("units");
    let fake_dir = outside.0.join("fake");
    let manifest = |env: &str, deploy: &str| {
        demo.write_manifest(env, deploy);
        let text = std::fs::read_to_string(demo.manifest())
            .unwrap()
            .replace("root = \"root\"", &format!("root = \"{}\"", root.display()))
            .replace(
                "[process]\n",
                &format!(
                    "[process]\nmanager = \"systemd\"\nunit_dir = \"{}\"\nsystemctl = \"{}\"\n",
                    units.display(),
                    workspace_bin("fake-systemctl").display()
                ),
            );
        std::fs::write(demo.manifest(), text).unwrap();
    };
    let run = |args: &[&str]| {
        let mut full = vec!["--json"];
        full.extend_from_slice(args);
        let mut cmd = demo.command(&full);
        cmd.env("FAKE_SYSTEMCTL_DIR", &fake_dir)
            .env("FAKE_SYSTEMCTL_UNITS", &units);
        json_output(cmd)
    };
    // Whatever happens, the fake's processes go.
    let _down = DownOnDrop(&run);
    manifest("", "");

    let (code, json, stderr) = run(&["deploy"]);
    assert_eq!(code, 0, "{json:#}\n{stderr}");
    let r1 = json["release"].as_str().unwrap().to_owned();
    assert_eq!(demo.serving().as_deref(), Some(r1.as_str()));
    let (code, json, stderr) = run(&["deploy"]);
    assert_eq!(code, 0, "{json:#}\n{stderr}");
    let r2 = json["release"].as_str().unwrap().to_owned();
    assert_eq!(demo.serving().as_deref(), Some(r2.as_str()));

    // One unit per slot, each in its own release, reaching the shim outside /tmp.
    let blue = std::fs::read_to_string(units.join("hub-blue.service")).unwrap();
    let green = std::fs::read_to_string(units.join("hub-green.service")).unwrap();
    let shim = root.join("bin/cutover-exec-shim");
    assert!(shim.is_file());
    for (unit, release) in [(&blue, &r1), (&green, &r2)] {
        assert!(
            unit.contains(&format!(
                "WorkingDirectory={}",
                root.join("releases").join(release).display()
            )),
            "{unit}"
        );
        assert!(
            unit.contains(&format!("ExecStart={} __exec-shim", shim.display())),
            "{unit}"
        );
        for line in [
            "DynamicUser=yes",
            "User=hub",
            "StateDirectory=hub",
            "LogsDirectory=hub",
        ] {
            assert!(unit.lines().any(|l| l == line), "{line} missing:\n{unit}");
        }
        assert!(!unit.contains("ReadWritePaths="), "{unit}");
        assert!(!unit.contains(SECRET), "{unit}");
    }
    for name in ["hub-blue.service", "hub-green.service"] {
        let path = units.join(name);
        let out = Command::new("systemd-analyze")
            .arg("verify")
            .arg(&path)
            .output()
            .unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            out.status.success() && text.trim().is_empty(),
            "{name}: {text}"
        );
        let score = exposure(&path);
        eprintln!("{name}: systemd-analyze security --offline=yes exposure {score}");
        assert!(score <= 2.0, "{name}: exposure {score}");
    }
    // The secret reached the service through the credentials the shim read.
    let creds = root.join("state/credentials/hub-green/API_KEY");
    assert_eq!(std::fs::read_to_string(creds).unwrap(), SECRET);

    // A release that never becomes ready: rolled back, r2 serving, r1 still the warm standby.
    manifest(
        r#"CUTOVER_DEMO_HEALTH_STATE = "starting""#,
        r#"ready_timeout = "3s""#,
    );
    let (code, json, stderr) = run(&["deploy"]);
    assert_eq!(code, 2, "{json:#}\n{stderr}");
    assert_eq!(demo.serving().as_deref(), Some(r2.as_str()));

    // The rollback is one switch to the standby's unit.
    manifest("", "");
    let calls_before = std::fs::read_to_string(fake_dir.join("calls.log")).unwrap();
    let (code, json, stderr) = run(&["rollback"]);
    assert_eq!(code, 0, "{json:#}\n{stderr}");
    assert_eq!(json["release"].as_str(), Some(r1.as_str()), "{json:#}");
    assert_eq!(demo.serving().as_deref(), Some(r1.as_str()));
    let calls = std::fs::read_to_string(fake_dir.join("calls.log")).unwrap();
    let new_calls = &calls[calls_before.len()..];
    assert!(
        !new_calls.contains("start hub-blue.service"),
        "the standby was not restarted: {new_calls}"
    );
    let (code, status, stderr) = run(&["status"]);
    assert_eq!(code, 0, "{status:#}\n{stderr}");
    assert_eq!(status["service"]["state"], "running", "{status:#}");
}

/// Issue 21, item 3: a SIGKILLed deploy's build and pre-flight command do not outlive it.
#[test]
fn a_killed_deploys_build_and_preflight_command_are_killed_by_recover() {
    let demo = Demo::new("blue-green");
    let r1 = demo.deploy_ok();
    let hub = workspace_bin("cutover-demo-hub");
    let marks = demo.dir.path().join("marks");
    std::fs::create_dir_all(&marks).unwrap();
    let alive = |pid: u32| {
        std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .is_ok_and(|s| !s.rsplit_once(") ").is_some_and(|(_, r)| r.starts_with('Z')))
    };
    for phase in ["preflight", "build"] {
        let pid_file = marks.join(format!("{phase}.pid"));
        let late = marks.join(format!("{phase}.late"));
        // A command that records its pid (and its own child's), then outlives a killed deploy
        // unless something kills it, and writes `late` when it is done.
        let slow = format!(
            "sleep 6 & echo $! > {pid}; wait; touch {late}",
            pid = pid_file.display(),
            late = late.display()
        );
        let (build, extra) = if phase == "build" {
            (
                format!(
                    r#"["sh", "-c", "{slow}; install -D {} bin/hub"]"#,
                    hub.display()
                ),
                String::new(),
            )
        } else {
            (
                format!(r#"["install", "-D", "{}", "bin/hub"]"#, hub.display()),
                format!(
                    "[[preflight.check]]\nkind = \"command\"\ncommand = [\"sh\", \"-c\", \"{slow}\"]\n"
                ),
            )
        };
        demo.write_manifest_full("", "", &build, &extra);
        let mut child = ChildGuard::spawn(demo.command(&["deploy"])).unwrap();
        assert!(
            wait_until(Duration::from_secs(30), || std::fs::read_to_string(
                &pid_file
            )
            .is_ok_and(|s| s.trim().parse::<u32>().is_ok())),
            "{phase}: the command never started: {}",
            demo.journal()
        );
        let sleeper: u32 = std::fs::read_to_string(&pid_file)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        child.signal(libc::SIGKILL);
        child.wait_timeout(Duration::from_secs(10)).expect("killed");
        assert!(
            alive(sleeper),
            "{phase}: the orphan outlives its deploy until recover"
        );
        demo.write_manifest("", "");
        let (code, json, out) = demo.run(&["recover"]);
        assert_eq!(
            code,
            0,
            "{phase}: {json:#}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            wait_until(Duration::from_secs(10), || !alive(sleeper)),
            "{phase}: recover left {sleeper} running"
        );
        // Its shell, had it survived, would write `late` as soon as the sleep died.
        std::thread::sleep(Duration::from_secs(1));
        assert!(!late.exists(), "{phase}: the orphaned command ran on");
        assert_eq!(demo.serving().as_deref(), Some(r1.as_str()), "{phase}");
        let releases: Vec<_> = std::fs::read_dir(demo.root().join("releases"))
            .unwrap()
            .filter_map(Result::ok)
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            releases,
            std::slice::from_ref(&r1),
            "{phase}: nothing half-built is left"
        );
    }
}

/// A small tmpfs mounted over a directory, unmounted when dropped (as root only).
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(dir: &Path, size: &str) -> Self {
        let uid = Command::new("id").arg("-u").output().unwrap();
        assert_eq!(
            String::from_utf8_lossy(&uid.stdout).trim(),
            "0",
            "this test mounts a tmpfs to make a full disk: run it as root (cargo xtask test does)"
        );
        std::fs::create_dir_all(dir).unwrap();
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "mount: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Self(dir.to_path_buf())
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

fn fill(dir: &Path) {
    // Writes until the file system is full (dd stops with ENOSPC).
    let _ = Command::new("dd")
        .args(["if=/dev/zero", "bs=1M", "count=1000"])
        .arg(format!("of={}", dir.join("filler").display()))
        .output();
}

fn temp_files(root: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir)
            .into_iter()
            .flatten()
            .filter_map(Result::ok)
        {
            let path = entry.path();
            let name = entry.file_name().to_string_lossy().into_owned();
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                stack.push(path);
            } else if name.contains(".tmp") || name.contains(".partial-") {
                found.push(path);
            }
        }
    }
    found
}

/// Issue 21, item 2: a full disk fails a deploy cleanly and never wedges stopping.
#[test]
fn a_full_disk_fails_the_build_cleanly_refuses_the_next_deploy_and_still_stops() {
    struct FullDisk {
        demo: Demo,
        _tmpfs: Tmpfs,
    }
    let demo = Demo::new("blue-green");
    let tmpfs = Tmpfs::mount(&demo.root(), "160m");
    let t = FullDisk {
        demo,
        _tmpfs: tmpfs,
    };
    let demo = &t.demo;
    let r1 = demo.deploy_ok();
    let hub = workspace_bin("cutover-demo-hub");

    // A build that fills the disk: rolled back (exit 2, not 4), its remains removed.
    let build = format!(
        r#"["sh", "-c", "install -D {} bin/hub && dd if=/dev/zero of=filler bs=1M count=1000"]"#,
        hub.display()
    );
    demo.write_manifest_with("", "", &build);
    let (code, json, out) = demo.run(&["deploy"]);
    assert_eq!(
        code,
        2,
        "{json:#}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        json["reason"].as_str().unwrap().contains("build"),
        "{json:#}"
    );
    assert_eq!(demo.serving().as_deref(), Some(r1.as_str()));
    let releases: Vec<String> = std::fs::read_dir(demo.root().join("releases"))
        .unwrap()
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        releases,
        std::slice::from_ref(&r1),
        "the failed release is removed"
    );
    assert!(
        temp_files(&demo.root()).is_empty(),
        "{:?}",
        temp_files(&demo.root())
    );

    // A disk full from elsewhere: the next deploy is refused before it writes anything.
    demo.write_manifest("", "");
    fill(&demo.root());
    let journal_before = demo.journal();
    let (code, json, out) = demo.run(&["deploy"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(code, 2, "{json:#}\n{stderr}");
    assert!(
        stderr.contains("disk-free") && stderr.contains("MiB free"),
        "{json:#}\n{stderr}"
    );
    assert_eq!(demo.journal(), journal_before, "nothing was journalled");
    assert!(
        temp_files(&demo.root()).is_empty(),
        "{:?}",
        temp_files(&demo.root())
    );
    assert_eq!(demo.serving().as_deref(), Some(r1.as_str()));

    // Stopping needs no space.
    let (code, json, out) = demo.run(&["down"]);
    assert_eq!(
        code,
        0,
        "{json:#}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        wait_until(Duration::from_secs(10), || demo.serving().is_none()),
        "the service still answers after down on a full disk"
    );
    assert!(
        temp_files(&demo.root()).is_empty(),
        "{:?}",
        temp_files(&demo.root())
    );
    // With room again, the deployment comes back.
    std::fs::remove_file(demo.root().join("filler")).unwrap();
    let (code, json, out) = demo.run(&["recover"]);
    assert_eq!(
        code,
        0,
        "{json:#}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A network namespace of the test's own, deleted (with what runs in it) when dropped.
struct NetNs(String);

impl NetNs {
    fn new() -> Self {
        static N: AtomicU64 = AtomicU64::new(0);
        let name = format!(
            "cutover-t{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        );
        let ok = |args: &[&str]| {
            let out = Command::new("ip").args(args).output().unwrap_or_else(|e| {
                panic!("ip is missing ({e}): apt-get install -y iproute2, and run as root")
            });
            assert!(
                out.status.success(),
                "ip {args:?}: {} (network namespaces need root)",
                String::from_utf8_lossy(&out.stderr)
            );
        };
        ok(&["netns", "add", &name]);
        let ns = Self(name);
        ok(&["netns", "exec", &ns.0, "ip", "link", "set", "lo", "up"]);
        ns
    }

    fn command(&self, program: &Path) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.0]).arg(program);
        cmd
    }
}

impl Drop for NetNs {
    fn drop(&mut self) {
        // Whatever still runs in it is killed first, or the namespace would outlive the test.
        if let Ok(out) = Command::new("ip").args(["netns", "pids", &self.0]).output() {
            for pid in String::from_utf8_lossy(&out.stdout).split_whitespace() {
                let _ = Command::new("kill").args(["-9", pid]).status();
            }
        }
        let _ = Command::new("ip")
            .args(["netns", "delete", &self.0])
            .status();
    }
}

/// Issue 21, item 9: a release listening on every interface behind the proxy fails the switch.
#[test]
fn a_release_listening_beyond_loopback_fails_the_switch_unless_exposure_is_any() {
    let demo = Demo::new("blue-green");
    let ns = NetNs::new();
    let run = |args: &[&str]| {
        let mut cmd = ns.command(&workspace_bin("cutover-deploy"));
        cmd.arg("--manifest")
            .arg(demo.manifest())
            .arg("--json")
            .args(args)
            .env("CUTOVER_TEST_SECRET", SECRET);
        json_output(cmd)
    };
    let _down = DownOnDrop(&run);
    let everywhere = |exposure: &str| {
        demo.write_manifest("", "");
        let text = std::fs::read_to_string(demo.manifest())
            .unwrap()
            .replace("\"127.0.0.1:{port}\"", "\"0.0.0.0:{port}\"")
            .replace("[layout]", &format!("{exposure}\n[layout]"));
        std::fs::write(demo.manifest(), text).unwrap();
    };
    everywhere("");
    let (code, json, stderr) = run(&["deploy"]);
    assert_eq!(code, 2, "{json:#}\n{stderr}");
    let reason = json["reason"].as_str().unwrap_or_default();
    assert!(
        reason.starts_with("switch failed")
            && reason.contains(&format!("listens on 0.0.0.0:{} beyond loopback", demo.blue))
            && reason.contains("exposure = \"any\""),
        "{json:#}"
    );
    eprintln!("refused: {reason}");
    // The pre-flight check says the same of a running service.
    everywhere("exposure = \"any\"");
    let (code, json, stderr) = run(&["deploy"]);
    assert_eq!(code, 0, "{json:#}\n{stderr}");
    let checks = demo.dir.path().join("exposure.toml");
    std::fs::write(
        &checks,
        format!(
            "[[preflight.check]]\nkind = \"exposure\"\nport = {}\n",
            demo.blue
        ),
    )
    .unwrap();
    let out = ns
        .command(&workspace_bin("cutover-preflight"))
        .arg("--json")
        .arg("--manifest")
        .arg(&checks)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains(&format!("0.0.0.0:{}", demo.blue)) && text.contains("beyond loopback"),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_ne!(out.status.code(), Some(0));
}

/// Issue 21, item 8: `status` judges what nginx serves (its control listener), not what its
/// upstream file says.
#[test]
fn status_asks_nginx_what_it_serves_not_the_upstream_file() {
    let demo = Demo::new("blue-green");
    let r1 = demo.deploy_ok();
    let upstream = demo.root().join("proxy/conf/upstream.conf");
    let written = std::fs::read_to_string(&upstream).unwrap();
    let live = format!("127.0.0.1:{}", demo.blue);
    let other = format!("127.0.0.1:{}", demo.green);
    assert!(written.contains(&live), "{written}");
    // A switch killed after writing the file, before nginx reloaded: the file lies.
    std::fs::write(&upstream, written.replace(&live, &other)).unwrap();
    let (code, status, _) = demo.run(&["status"]);
    assert_eq!(code, 0, "nginx still serves the live slot: {status:#}");
    assert_eq!(status["healthy"], true, "{status:#}");
    // nginx loads the lie: now users are sent to the idle slot, and status says so.
    let pid: i32 = std::fs::read_to_string(demo.root().join("proxy/logs/nginx.pid"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let _ = Command::new("kill")
        .args(["-HUP", &pid.to_string()])
        .status();
    assert!(
        wait_until(Duration::from_secs(10), || {
            let (_, s, _) = demo.run(&["status"]);
            s["healthy"] == false
        }),
        "status stayed healthy"
    );
    let (code, status, _) = demo.run(&["status"]);
    assert_ne!(code, 0);
    let reason = status["health_reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains(&format!("nginx serves {other}")),
        "{status:#}"
    );
    let (code, json, _) = demo.run(&["recover"]);
    assert_eq!(code, 0, "{json:#}");
    let (_, status, _) = demo.run(&["status"]);
    assert_eq!(status["healthy"], true, "{status:#}");
    assert_eq!(demo.serving().as_deref(), Some(r1.as_str()));
}

/// One SSE stream as a client saw it.
#[derive(Debug, Clone)]
struct StreamSeen {
    release: String,
    last_event: String,
    clean: bool,
    ended: Instant,
}

/// Reads an SSE stream with curl until it ends; reconnects until `stop`. Each ended stream is
/// recorded; `on_event(name, data)` sees every event.
fn sse_client(
    url: String,
    stop: Arc<AtomicBool>,
    seen: Arc<std::sync::Mutex<Vec<StreamSeen>>>,
    on_event: impl Fn(&str, &str) + Send + 'static,
    on_end: impl Fn() + Send + 'static,
) -> std::thread::JoinHandle<()> {
    use std::io::BufRead;
    std::thread::spawn(move || {
        let end = Instant::now() + Duration::from_secs(90);
        while !stop.load(Ordering::SeqCst) && Instant::now() < end {
            let mut cmd = Command::new("curl");
            cmd.args(["-skN", "--max-time", "60", &url])
                .stdout(std::process::Stdio::piped());
            let Ok(mut child) = ChildGuard::spawn(cmd) else {
                return;
            };
            let out = child.child().stdout.take().unwrap();
            let (mut event, mut release, mut last) = (String::new(), String::new(), String::new());
            for line in std::io::BufReader::new(out).lines().map_while(Result::ok) {
                if let Some(name) = line.strip_prefix("event: ") {
                    event = name.to_owned();
                } else if let Some(data) = line.strip_prefix("data: ") {
                    if let Ok(v) = serde_json::from_str::<Value>(data)
                        && let Some(r) = v["release"].as_str()
                    {
                        release = r.to_owned();
                    }
                    on_event(&event, data);
                    last = event.clone();
                }
                if stop.load(Ordering::SeqCst) {
                    break;
                }
            }
            let status = child.wait_timeout(Duration::from_secs(5));
            on_end();
            if stop.load(Ordering::SeqCst) {
                return;
            }
            seen.lock().unwrap().push(StreamSeen {
                release,
                last_event: last,
                clean: status.is_some_and(|s| s.success()),
                ended: Instant::now(),
            });
        }
    })
}

/// Issue 16: SSE streams and MCP sessions survive a deploy and a rollback, and keep-alive
/// clients over HTTPS lose nothing.
#[test]
fn streams_sessions_and_keep_alive_clients_survive_a_deploy_and_a_rollback() {
    let demo = Demo::new("blue-green");
    let https = free_port();
    let extra = format!(
        "[proxy.tls]\nlisten = [\"127.0.0.1:{https}\"]\nself_signed = true\n\
         [[proxy.locations]]\npath = \"/api/events\"\nstreaming = true\n\
         [[proxy.locations]]\npath = \"/mcp\"\nstreaming = true\n\
         [[proxy.locations]]\npath = \"/messages\"\nsessions = true\n"
    );
    let hub = workspace_bin("cutover-demo-hub");
    let build = format!(r#"["install", "-D", "{}", "bin/hub"]"#, hub.display());
    demo.write_manifest_full("", "drain = \"1s\"", &build, &extra);
    let r1 = demo.deploy_ok();
    let base = format!("https://127.0.0.1:{https}");
    let stop = Arc::new(AtomicBool::new(false));

    // One deploy and its rollback (more with CUTOVER_STREAM_DEPLOYS=N, for the figures).
    let rounds: u64 = std::env::var("CUTOVER_STREAM_DEPLOYS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1);
    // Keep-alive load: wrk, 4 HTTPS connections, for the whole deploy and rollback.
    let wrk = ChildGuard::spawn({
        let mut c = Command::new("wrk");
        c.args([
            "-t1",
            "-c4",
            &format!("-d{}s", 15 + 10 * rounds),
            &format!("{base}/api/health"),
        ])
        .stdout(std::process::Stdio::piped());
        c
    })
    .expect("wrk is missing: apt-get install -y wrk");

    // SSE clients.
    let streams = Arc::new(std::sync::Mutex::new(Vec::new()));
    let sse: Vec<_> = (0..2)
        .map(|_| {
            sse_client(
                format!("{base}/api/events"),
                stop.clone(),
                streams.clone(),
                |_, _| {},
                || {},
            )
        })
        .collect();

    // An MCP client: a session stream, and a post on it every 100 ms.
    let session = Arc::new(std::sync::Mutex::new(None::<String>));
    let mcp_streams = Arc::new(std::sync::Mutex::new(Vec::new()));
    let mcp = {
        let (s1, s2) = (session.clone(), session.clone());
        sse_client(
            format!("{base}/mcp"),
            stop.clone(),
            mcp_streams.clone(),
            move |event, data| {
                if event == "endpoint"
                    && let Some(id) = data.split("sessionId=").nth(1)
                {
                    *s1.lock().unwrap() = Some(id.to_owned());
                }
                // Told to reconnect: post no more on this session.
                if event == "hub_state" && data.contains("\"stopping\"") {
                    *s1.lock().unwrap() = None;
                }
            },
            move || *s2.lock().unwrap() = None,
        )
    };
    let posts = {
        let (stop, session, base) = (stop.clone(), session.clone(), base.clone());
        std::thread::spawn(move || {
            let (mut ok, mut told, mut failed) = (0u32, 0u32, Vec::new());
            let end = Instant::now() + Duration::from_secs(90);
            while !stop.load(Ordering::SeqCst) && Instant::now() < end {
                std::thread::sleep(Duration::from_millis(100));
                let Some(id) = session.lock().unwrap().clone() else {
                    continue;
                };
                let out = Command::new("curl")
                    .args(["-sk", "-o", "/dev/null", "-w", "%{http_code}", "-X", "POST"])
                    .arg(format!("{base}/messages?sessionId={id}"))
                    .output()
                    .unwrap();
                let code = String::from_utf8_lossy(&out.stdout).to_string();
                if code == "202" {
                    ok += 1;
                    // Sent before the client saw its session's `stopping`, served all the same.
                    if session.lock().unwrap().as_deref() != Some(id.as_str()) {
                        told += 1;
                    }
                    continue;
                }
                // Any other answer is a failure: the client posts only on a session it has
                // not been told to leave, and the owner serves its sessions until it closes
                // their streams, after the `stopping` event.
                failed.push(format!("{code} for {id}"));
            }
            (ok, told, failed)
        })
    };
    assert!(
        wait_until(Duration::from_secs(10), || session
            .lock()
            .unwrap()
            .is_some()),
        "the MCP client never got a session"
    );
    std::thread::sleep(Duration::from_secs(1));

    // Which release answers, every 50 ms: the switch moment is when the answer changes.
    let served = Arc::new(std::sync::Mutex::new(Vec::<(Instant, String)>::new()));
    let poller = {
        let (stop, served, base) = (stop.clone(), served.clone(), base.clone());
        std::thread::spawn(move || {
            let end = Instant::now() + Duration::from_secs(120);
            while !stop.load(Ordering::SeqCst) && Instant::now() < end {
                let out = Command::new("curl")
                    .args(["-sk", "--max-time", "2", &format!("{base}/api/health")])
                    .output();
                if let Ok(out) = out
                    && let Ok(v) = serde_json::from_slice::<Value>(&out.stdout)
                    && let Some(r) = v["version"].as_str()
                {
                    let mut s = served.lock().unwrap();
                    if s.last().is_none_or(|(_, last)| last != r) {
                        s.push((Instant::now(), r.to_owned()));
                    }
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        })
    };
    let mut r2 = String::new();
    for _ in 0..rounds {
        let (code, json, out) = demo.run(&["deploy"]);
        assert_eq!(
            code,
            0,
            "{json:#}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        r2 = json["release"].as_str().unwrap().to_owned();
        std::thread::sleep(Duration::from_secs(2));
        let (code, json, out) = demo.run(&["rollback", "--to", &r1]);
        assert_eq!(
            code,
            0,
            "{json:#}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        std::thread::sleep(Duration::from_secs(2));
    }
    let health = Command::new("curl")
        .args(["-sk", &format!("{base}/api/health")])
        .output()
        .unwrap();
    let health: Value = serde_json::from_slice(&health.stdout).unwrap_or(Value::Null);
    assert_eq!(health["version"].as_str(), Some(r1.as_str()), "{health}");

    stop.store(true, Ordering::SeqCst);
    let (ok, told, failed) = posts.join().unwrap();
    poller.join().unwrap();
    let served = served.lock().unwrap().clone();
    let mut wrk = wrk;
    let status = wrk
        .wait_timeout(Duration::from_secs(40 + 10 * rounds))
        .expect("wrk ends");
    let mut report = String::new();
    use std::io::Read as _;
    if let Some(mut o) = wrk.child().stdout.take() {
        let _ = o.read_to_string(&mut report);
    }
    eprintln!("wrk ({status:?}):\n{report}");
    eprintln!(
        "MCP posts: {ok} served by their session's owner ({told} of them answered after the client saw `stopping`), failed {failed:?}"
    );
    let seen = streams.lock().unwrap().clone();
    let mcp_seen = mcp_streams.lock().unwrap().clone();
    eprintln!("SSE streams ended: {seen:#?}\nMCP streams ended: {mcp_seen:#?}");
    drop(sse);
    drop(mcp);

    // (2) Every stream that ended, ended with a complete stopping event and a clean close,
    // and the clients moved across both releases.
    assert!(
        !seen.is_empty(),
        "no stream ended: the old releases kept them"
    );
    for s in seen.iter().chain(&mcp_seen) {
        assert!(s.clean, "a stream was cut: {s:?}");
        assert_eq!(s.last_event, "hub_state", "{s:?}");
    }
    assert!(seen.iter().any(|s| s.release == r1), "{seen:?}");
    assert!(seen.iter().any(|s| s.release == r2), "{seen:?}");
    // Each old stream closed within drain + 1 s of the switch away from its release (with a
    // second of slack for the 50 ms poller and a loaded machine).
    let drain = Duration::from_secs(1);
    let mut slowest = Duration::ZERO;
    for s in seen.iter().chain(&mcp_seen) {
        let switched = served
            .windows(2)
            .filter(|w| w[0].1 == s.release && w[1].0 <= s.ended)
            .map(|w| w[1].0)
            .next_back()
            .unwrap_or_else(|| {
                panic!(
                    "no switch away from {} before its stream ended: {served:?}",
                    s.release
                )
            });
        let took = s.ended.duration_since(switched);
        slowest = slowest.max(took);
        assert!(
            took <= drain + Duration::from_secs(2),
            "{s:?} closed {took:?} after the switch"
        );
    }
    eprintln!(
        "the slowest old stream closed {slowest:?} after its switch (drain {drain:?}); {rounds} deploy(s) and rollback(s)"
    );
    // (3) No MCP post failed.
    assert!(failed.is_empty(), "failed posts: {failed:?}");
    assert!(ok > 20, "{ok}");
    // (1) The keep-alive load lost nothing.
    assert!(!report.contains("Socket errors"), "{report}");
    assert!(!report.contains("Non-2xx"), "{report}");
}

/// Every regular file under `dir`, recursively (sockets and FIFOs are not read).
fn regular_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries {
            let path = entry.unwrap().path();
            let meta = std::fs::symlink_metadata(&path).unwrap();
            if meta.is_dir() {
                stack.push(path);
            } else if meta.is_file() {
                out.push(path);
            }
        }
    }
    out
}

/// Issue 21, item 5: a secret provider that fails after printing a fresh canary on stdout and
/// stderr. The deploy fails and rolls back, naming the reference's secret and exit status; the
/// canary is in no output (table, `--json`, text and JSON logs), no file under the layout root
/// (state, logs, proxy, releases) and no `audit` view; the journal and audit log are 0600.
#[test]
fn a_failing_secret_providers_output_appears_nowhere_and_state_files_are_private() {
    use std::os::unix::fs::PermissionsExt;
    let demo = Demo::new("restart");
    let r1 = demo.deploy_ok();

    // Values never resolved in any process: nothing earlier can have taught a redactor them.
    // One is printed on stdout (a token), the other on stderr (a CLI's complaint).
    let canaries = [
        cutover_tests::fresh_canary("CANARY-OUT"),
        cutover_tests::fresh_canary("CANARY-ERR"),
    ];
    let [(a, b), (c, d)] = canaries.each_ref().map(|c| c.split_at(c.len() / 2));
    // Each is printed as two halves, so that the reference in the manifest never holds it.
    let script = r#"printf %s%s "$1" "$2"; printf "denied %s%s" "$3" "$4" >&2; exit 3"#;
    let argv = serde_json::to_string(&["sh", "-c", script, "sh", a, b, c, d]).unwrap();
    let manifest = std::fs::read_to_string(demo.manifest()).unwrap();
    let declared = r#"secrets = { API_KEY = "env:CUTOVER_TEST_SECRET" }"#;
    assert!(manifest.contains(declared), "{manifest}");
    let manifest = manifest.replace(
        declared,
        &format!("secrets = {{ API_KEY = 'exec:{argv}' }}"),
    );
    std::fs::write(demo.manifest(), manifest).unwrap();
    let leaked = |text: &str| canaries.iter().find(|c| text.contains(c.as_str())).cloned();

    let mut shown = Vec::new();
    let (code, json, out) = demo.run(&["deploy"]);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(code, 2, "{json:#}\n{stderr}");
    assert_eq!(json["outcome"], "rolled-back", "{json:#}");
    let reason = json["reason"].as_str().unwrap().to_owned();
    shown.push(("deploy --json", out));
    // The table, with JSON log lines on stderr.
    let out = demo
        .command(&["deploy", "--log-format", "json"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    shown.push(("deploy (table)", out));
    let (code, audit, out) = demo.run(&["audit"]);
    assert_eq!(code, 0, "{audit:#}");
    assert_eq!(audit["entries"].as_array().unwrap().len(), 3, "{audit:#}");
    shown.push(("audit --json", out));
    shown.push(("audit (table)", demo.command(&["audit"]).output().unwrap()));
    for (what, out) in &shown {
        for (stream, bytes) in [("stdout", &out.stdout), ("stderr", &out.stderr)] {
            let text = String::from_utf8_lossy(bytes);
            assert_eq!(leaked(&text), None, "in {what} {stream}:\n{text}");
        }
    }
    // The failures were recorded, so the files searched do hold what the deploys said.
    assert!(
        demo.journal().contains("exit status: 3"),
        "{}",
        demo.journal()
    );

    let files = regular_files(&demo.root());
    assert!(
        files
            .iter()
            .any(|f| f.starts_with(demo.root().join("logs"))),
        "{files:?}"
    );
    for file in &files {
        let text = String::from_utf8_lossy(&std::fs::read(file).unwrap()).into_owned();
        assert_eq!(leaked(&text), None, "in {}", file.display());
    }
    for name in ["journal.jsonl", "audit.jsonl", "deploy-state.json"] {
        let path = demo.root().join("state").join(name);
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o7777;
        assert_eq!(mode, 0o600, "{}", path.display());
    }
    // What it says instead: which secret, how the provider ended, where to look.
    for part in ["API_KEY", "exit status: 3", "run the provider yourself"] {
        assert!(reason.contains(part), "{part}: {reason}");
    }
    assert_eq!(demo.serving().as_deref(), Some(r1.as_str()));
}
