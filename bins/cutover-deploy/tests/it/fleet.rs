//! Fleet rollouts against real sshd: four hosts as network namespaces this test creates
//! (a veth pair each, an address that exists only inside it), Debian's `/usr/sbin/sshd` in
//! each with its own host key and config, a test key pair, a known_hosts file the test writes
//! and `StrictHostKeyChecking=yes`. Each host has its own remote directory (the namespaces
//! share the filesystem) and runs the demo hub on its own loopback. Needs root, `ip`,
//! `openssh-server`, `openssh-client`, and `cargo build -p cutover-deploy -p cutover-demo-hub`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stderr)]
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use cutover_tests::{ChildGuard, temp_dir, wait_until, workspace_bin};
use serde_json::Value;

const HOSTS: [&str; 4] = ["h1", "h2", "h3", "h4"];

fn sh(cmd: &str) -> std::process::Output {
    Command::new("sh").args(["-c", cmd]).output().unwrap()
}

fn must(cmd: &str) {
    let out = sh(cmd);
    assert!(
        out.status.success(),
        "`{cmd}` failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn require() {
    let uid = std::fs::read_to_string("/proc/self/status")
        .unwrap()
        .lines()
        .find(|l| l.starts_with("Uid:"))
        .map(|l| l.split_whitespace().nth(2) == Some("0"));
    assert_eq!(
        uid,
        Some(true),
        "the fleet tests create network namespaces: run them as root (sudo -E cargo nextest run -p cutover-deploy --test fleet)"
    );
    assert!(
        Path::new("/usr/sbin/sshd").exists(),
        "sshd is missing: apt-get install -y openssh-server"
    );
    for p in ["ssh", "ssh-keygen", "ip", "setsid"] {
        assert!(
            sh(&format!("command -v {p}")).status.success(),
            "{p} is missing: apt-get install -y openssh-client iproute2 util-linux"
        );
    }
    let _ = std::fs::create_dir_all("/run/sshd");
}

/// Four hosts; everything torn down on drop, also when the test fails.
struct Fleet {
    dir: tempfile::TempDir,
    tag: String,
    sshd: Vec<Option<ChildGuard>>,
}

impl Fleet {
    /// `net` is unique per test (the 10.<net>.k.0/30 subnets); `up` says which hosts get sshd.
    fn new(net: u8, up: [bool; 4]) -> Self {
        require();
        let dir = temp_dir();
        let tag = format!("cf{}{}", std::process::id() % 100_000, net % 10);
        let mut this = Self {
            dir,
            tag,
            sshd: Vec::new(),
        };
        let d = this.dir.path().to_path_buf();
        must(&format!(
            "ssh-keygen -q -t ed25519 -N '' -f {}/id",
            d.display()
        ));
        std::fs::copy(d.join("id.pub"), d.join("authorized_keys")).unwrap();
        let mut known = String::new();
        let mut config = String::new();
        for (k, host) in HOSTS.iter().enumerate() {
            let k = k + 1;
            let ns = this.ns(host);
            let (a, b) = (format!("{}{k}a", this.tag), format!("{}{k}b", this.tag));
            let _ = sh(&format!(
                "ip netns del {ns} 2>/dev/null; ip link del {a} 2>/dev/null"
            ));
            must(&format!("ip netns add {ns}"));
            must(&format!("ip link add {a} type veth peer name {b}"));
            must(&format!("ip link set {b} netns {ns}"));
            must(&format!(
                "ip addr add 10.{net}.{k}.1/30 dev {a} && ip link set {a} up"
            ));
            must(&format!(
                "ip netns exec {ns} sh -c 'ip addr add 10.{net}.{k}.2/30 dev {b} && ip link set {b} up && ip link set lo up'"
            ));
            let hd = d.join("hosts").join(host);
            std::fs::create_dir_all(&hd).unwrap();
            let key = d.join(format!("{host}_host_key"));
            must(&format!(
                "ssh-keygen -q -t ed25519 -N '' -f {}",
                key.display()
            ));
            let pubkey = std::fs::read_to_string(key.with_extension("pub")).unwrap();
            let pubkey: Vec<&str> = pubkey.split_whitespace().take(2).collect();
            known.push_str(&format!("[10.{net}.{k}.2]:2222 {}\n", pubkey.join(" ")));
            config.push_str(&format!(
                "Host {host}\n  HostName 10.{net}.{k}.2\n  Port 2222\n  User root\n  IdentityFile {d}/id\n  IdentitiesOnly yes\n  UserKnownHostsFile {d}/known_hosts\n  GlobalKnownHostsFile /dev/null\n  StrictHostKeyChecking yes\n\n",
                d = d.display()
            ));
            let cfg = d.join(format!("{host}_sshd_config"));
            std::fs::write(&cfg, format!(
                "Port 2222\nListenAddress 10.{net}.{k}.2\nHostKey {key}\nPidFile none\nAuthorizedKeysFile {d}/authorized_keys\nPasswordAuthentication no\nKbdInteractiveAuthentication no\nUsePAM no\nStrictModes no\nPermitRootLogin prohibit-password\nLogLevel ERROR\n",
                key = key.display(), d = d.display()
            )).unwrap();
            if up[k - 1] {
                let mut cmd = Command::new("ip");
                cmd.args(["netns", "exec", &ns, "/usr/sbin/sshd", "-D", "-e", "-f"])
                    .arg(&cfg);
                cmd.stdout(std::process::Stdio::null())
                    .stderr(std::process::Stdio::null());
                let guard = ChildGuard::spawn(cmd).unwrap();
                std::fs::write(d.join(format!("{host}.sshd.pid")), guard.pid().to_string())
                    .unwrap();
                this.sshd.push(Some(guard));
            } else {
                this.sshd.push(None);
            }
        }
        std::fs::write(d.join("known_hosts"), known).unwrap();
        std::fs::write(d.join("ssh_config"), config).unwrap();
        for (k, host) in HOSTS.iter().enumerate() {
            if up[k] {
                let ok = wait_until(Duration::from_secs(15), || {
                    sh(&format!(
                        "ssh -F {}/ssh_config -o BatchMode=yes -o ConnectTimeout=2 {host} true",
                        d.display()
                    ))
                    .status
                    .success()
                });
                assert!(ok, "sshd of {host} does not answer");
            }
        }
        std::fs::create_dir_all(d.join("source/files")).unwrap();
        this.set_version("1");
        this
    }

    fn ns(&self, host: &str) -> String {
        format!("{}{host}", self.tag)
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn set_version(&self, v: &str) {
        std::fs::write(self.path().join("source/files/VERSION"), v).unwrap();
    }

    fn write_manifest(&self, fleet: &str) {
        let hub = workspace_bin("cutover-demo-hub");
        let text = format!(
            r#"
[service]
name = "hub"
source = "source"
build = ["sh", "-c", "mkdir -p app && cp {hub} app/hub && cp -r files/. app/"]
artifact = {{ path = "app", min_bytes = 102400 }}
start = ["sh", "-c", "if [ -e {{release}}/app/bad ] && [ -e {{release}}/../../../unhealthy-here ]; then exec {{release}}/app/hub --fail-start; fi; exec {{release}}/app/hub --listen 127.0.0.1:{{port}} --release-id {{release_id}} --grace 1s"]
port = 7100
[layout]
root = "root"
keep_releases = 5
[process]
stop_timeout = "5s"
[[probe]]
name = "ready"
suite = "ready"
url = "/api/health"
expect_json = ['/state == "ready"']
[deploy]
strategy = "restart"
backup = false
ready_timeout = "10s"
validate_timeout = "5s"
stable_for = "0s"
[fleet]
hosts = ["h1", "h2", "h3", "h4"]
batches = [1, 1, 2]
remote_dir = "{d}/hosts/{{host}}"
ssh_config = "ssh_config"
connect_timeout = "3s"
command_timeout = "120s"
{fleet}
{confirm}
"#,
            confirm = if fleet.contains("confirm_timeout") {
                ""
            } else {
                "confirm_timeout = \"20s\""
            },
            hub = hub.display(),
            d = self.path().display(),
        );
        std::fs::write(self.path().join("cutover.toml"), text).unwrap();
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(workspace_bin("cutover-deploy"));
        cmd.arg("--manifest")
            .arg(self.path().join("cutover.toml"))
            .arg("--json")
            .args(args)
            .env("NO_COLOR", "1");
        cmd
    }

    fn run(&self, args: &[&str]) -> (i32, Value, String) {
        let out = self.command(args).output().unwrap();
        (
            out.status.code().unwrap_or(-1),
            serde_json::from_slice(&out.stdout).unwrap_or(Value::Null),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    /// A host's status read inside its namespace with its own manifest (no ssh).
    fn local_status(&self, host: &str) -> Value {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.ns(host)])
            .arg(workspace_bin("cutover-deploy"))
            .arg("--manifest")
            .arg(self.path().join("hosts").join(host).join("cutover.toml"))
            .args(["--json", "status"]);
        serde_json::from_slice(&cmd.output().unwrap().stdout).unwrap_or(Value::Null)
    }

    fn currents(&self) -> Vec<Option<String>> {
        HOSTS
            .iter()
            .map(|h| self.local_status(h)["current"].as_str().map(str::to_owned))
            .collect()
    }

    fn deploy_ok(&self) -> Value {
        let (code, json, err) = self.run(&["deploy"]);
        assert_eq!(code, 0, "{json:#}\n{err}");
        json
    }
}

impl Drop for Fleet {
    fn drop(&mut self) {
        for host in HOSTS {
            let ns = self.ns(host);
            let manifest = self.path().join("hosts").join(host).join("cutover.toml");
            if manifest.exists() {
                let _ = Command::new("ip")
                    .args(["netns", "exec", &ns])
                    .arg(workspace_bin("cutover-deploy"))
                    .arg("--manifest")
                    .arg(&manifest)
                    .arg("down")
                    .output();
            }
        }
        self.sshd.clear();
        for (k, host) in HOSTS.iter().enumerate() {
            let ns = self.ns(host);
            // What is left inside a namespace this test made (watchdogs, sessions) goes with it.
            let _ = sh(&format!(
                "for p in $(ip netns pids {ns}); do kill -9 $p; done; ip netns del {ns}; ip link del {}{}a 2>/dev/null",
                self.tag,
                k + 1
            ));
        }
        // This test's masters only (other tests' hosts have other addresses).
        for host in HOSTS {
            let _ = sh(&format!(
                "ssh -F {}/ssh_config -o ControlPath={}/cutover-ssh-0/%C -O exit {host} >/dev/null 2>&1",
                self.path().display(),
                std::env::temp_dir().display()
            ));
        }
    }
}

fn host<'a>(report: &'a Value, name: &str) -> &'a Value {
    report["hosts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|h| h["host"] == name)
        .unwrap()
}

#[test]
fn healthy_rollout_in_batches_1_1_2() {
    let f = Fleet::new(201, [true; 4]);
    let log = f.path().join("hooks.log");
    f.write_manifest(&format!(
        r#"before_host = ["sh", "-c", "echo before $CUTOVER_HOST $CUTOVER_RELEASE >> {log}"]
after_host = ["sh", "-c", "echo after $CUTOVER_HOST $CUTOVER_RELEASE >> {log}"]"#,
        log = log.display()
    ));
    let t = Instant::now();
    let first = f.deploy_ok();
    let first_ms = t.elapsed().as_millis();
    assert_eq!(
        first["batches"],
        serde_json::json!([["h1"], ["h2"], ["h3", "h4"]])
    );
    let v1 = f.currents();
    assert!(v1.iter().all(Option::is_some), "{v1:?}");
    f.set_version("2");
    let t = Instant::now();
    let second = f.deploy_ok();
    let fleet_ms = t.elapsed().as_millis();
    for h in HOSTS {
        assert_eq!(host(&second, h)["outcome"], "confirmed", "{second:#}");
    }
    let v2 = f.currents();
    for (a, b) in v1.iter().zip(&v2) {
        assert_ne!(a, b);
    }
    let (code, status, err) = f.run(&["status", "--hosts"]);
    assert_eq!(code, 0, "{status:#} {err}");
    for (h, cur) in HOSTS.iter().zip(&v2) {
        let s = status["hosts"]
            .as_array()
            .unwrap()
            .iter()
            .find(|x| x["host"] == *h)
            .unwrap();
        assert_eq!(s["current"].as_str(), cur.as_deref());
        assert_eq!(s["healthy"], true);
    }
    // The figure for the note: the same release on each host alone, one after the other.
    f.set_version("3");
    let t = Instant::now();
    for h in HOSTS {
        let (code, json, err) = f.run(&["deploy", "--hosts", h]);
        assert_eq!(code, 0, "{json:#} {err}");
    }
    let serial_ms = t.elapsed().as_millis();
    eprintln!(
        "FIGURE fleet first deploy {first_ms} ms; [1,1,2] rollout {fleet_ms} ms; four single-host deploys {serial_ms} ms"
    );
}

#[test]
fn a_release_failing_its_gate_on_the_second_batch_rolls_the_first_back() {
    let f = Fleet::new(202, [true; 4]);
    f.write_manifest("");
    f.deploy_ok();
    let v1 = f.currents();
    std::fs::write(f.path().join("source/files/bad"), "").unwrap();
    std::fs::write(f.path().join("hosts/h2/unhealthy-here"), "").unwrap();
    f.set_version("2");
    let (code, report, err) = f.run(&["deploy"]);
    assert_eq!(code, 2, "{report:#}\n{err}");
    assert_eq!(host(&report, "h1")["outcome"], "rolled-back", "{report:#}");
    assert_eq!(host(&report, "h2")["outcome"], "failed");
    assert_eq!(host(&report, "h3")["outcome"], "not-started");
    assert_eq!(host(&report, "h4")["outcome"], "not-started");
    assert_eq!(f.currents(), v1, "every host on the previous release");
    for h in HOSTS {
        assert_eq!(f.local_status(h)["healthy"], true, "{h}");
    }
    eprintln!(
        "FIGURE fleet-wide rollback after a second-batch failure: {} ms",
        report["rollback_ms"]
    );
}

#[test]
fn a_killed_fleet_deploy_resumes_to_completion() {
    let f = Fleet::new(203, [true; 4]);
    f.write_manifest("");
    f.deploy_ok();
    let v1 = f.currents();
    f.set_version("2");
    let journal = f.path().join("root/state/fleet-journal.jsonl");
    std::fs::remove_file(&journal).unwrap();
    let mut child = ChildGuard::spawn(f.command(&["deploy"])).unwrap();
    let mid = wait_until(Duration::from_secs(60), || {
        std::fs::read_to_string(&journal)
            .is_ok_and(|j| j.contains(r#""host":"h2","step":"started""#))
    });
    assert!(mid, "the second batch never started");
    child.signal(libc::SIGKILL);
    let _ = child.wait_timeout(Duration::from_secs(10));
    let (code, report, err) = f.run(&["deploy", "--resume"]);
    assert_eq!(code, 0, "{report:#}\n{err}");
    assert_eq!(report["resumed"], true);
    for h in HOSTS {
        assert_eq!(host(&report, h)["outcome"], "confirmed", "{report:#}");
    }
    let v2 = f.currents();
    for ((h, a), b) in HOSTS.iter().zip(&v1).zip(&v2) {
        assert_ne!(a, b, "{h} still on the old release");
        assert_eq!(f.local_status(h)["healthy"], true, "{h}");
    }
    let (code, _, err) = f.run(&["deploy", "--resume"]);
    assert_eq!(code, 3, "nothing left to resume: {err}");
}

#[test]
fn an_unreachable_host_counts_toward_max_fail() {
    let f = Fleet::new(204, [true, true, false, true]);
    f.write_manifest("max_fail = 1");
    let (code, report, err) = f.run(&["deploy"]);
    assert_eq!(
        code, 1,
        "one failure is within max_fail = 1: {report:#}\n{err}"
    );
    assert_eq!(host(&report, "h3")["outcome"], "unreachable");
    assert_eq!(report["failures"], 1);
    let v1 = f.currents();
    f.write_manifest("max_fail = 0");
    f.set_version("2");
    let (code, report, err) = f.run(&["deploy"]);
    assert_eq!(
        code, 2,
        "one failure exceeds max_fail = 0: {report:#}\n{err}"
    );
    assert_eq!(host(&report, "h3")["outcome"], "unreachable");
    for h in ["h1", "h2", "h4"] {
        assert_eq!(host(&report, h)["outcome"], "rolled-back", "{report:#}");
    }
    assert_eq!(f.currents(), v1);
}

#[test]
fn a_host_whose_confirmation_never_arrives_reverts_by_itself() {
    let f = Fleet::new(205, [true; 4]);
    f.write_manifest("");
    f.deploy_ok();
    let v1 = f.currents();
    // h4's sshd listener goes away once its deploy begins: the multiplexed connection keeps
    // working, a fresh one (the confirmation) cannot be made.
    let hook = format!(
        r#"max_fail = 1
confirm_timeout = "3s"
before_host = ["sh", "-c", "[ \"$CUTOVER_HOST\" != h4 ] || kill $(cat {}/h4.sshd.pid)"]"#,
        f.path().display()
    );
    f.write_manifest(&hook);
    f.set_version("2");
    let (code, report, err) = f.run(&["deploy"]);
    assert_eq!(code, 1, "{report:#}\n{err}");
    assert_eq!(host(&report, "h4")["outcome"], "unconfirmed", "{report:#}");
    let reverted = wait_until(Duration::from_secs(60), || {
        f.local_status("h4")["current"].as_str() == v1[3].as_deref()
    });
    assert!(
        reverted,
        "h4 did not roll itself back: {:#}",
        f.local_status("h4")
    );
    assert_eq!(f.local_status("h4")["healthy"], true);
    let now = f.currents();
    for k in 0..3 {
        assert_ne!(now[k], v1[k]);
    }
}
