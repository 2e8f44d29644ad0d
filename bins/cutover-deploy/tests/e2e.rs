//! End to end: the built cutover-deploy against copies of the real demo hub, the supervised
//! backend and a private nginx. Needs nginx (`apt-get install nginx`) and
//! `cargo build -p cutover-deploy -p cutover-demo-hub` first.

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
