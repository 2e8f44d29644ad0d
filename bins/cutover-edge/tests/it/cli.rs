//! `cutover-edge` as scripts use it: render, check, up, switch, down, `--json`, exit codes.
//! Needs `cargo build -p cutover-edge -p cutover-demo-hub`, nginx and openssl.

// Helpers outside #[test] functions unwrap like the tests themselves.
#![allow(clippy::unwrap_used)]

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use cutover_tests::{DemoHub, free_port, http_get, temp_dir, workspace_bin};

fn edge(args: &[&str], cwd: &Path) -> Output {
    Command::new(workspace_bin("cutover-edge"))
        .args(args)
        .current_dir(cwd)
        .env("NO_COLOR", "1")
        .output()
        .expect("cutover-edge runs")
}

fn json(output: &Output) -> serde_json::Value {
    serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
        panic!(
            "stdout is one JSON document ({e}):\n{}\nstderr:\n{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        )
    })
}

fn loopback() -> String {
    format!("127.0.0.1:{}", free_port())
}

const TOKEN: &str = "cli-test-admin-token-value-42";

fn manifest(dir: &Path, tls: &str) -> std::path::PathBuf {
    let text = format!(
        r#"
[service]
name = "hub"

[proxy]
kind = "nginx"
listen_http = ["{http}"]
control_listen = "{control}"
upstream = "127.0.0.1:7000"
{tls}

[[proxy.locations]]
path = "/api/"
rate_limit = {{ rate = "10r/s", burst = 20 }}

[proxy.admin]
paths = ["/api/servers"]
token = "literal:{TOKEN}"
"#,
        http = loopback(),
        control = loopback(),
    );
    let path = dir.join("cutover.toml");
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn render_prints_the_config_with_a_placeholder_for_the_token() {
    let dir = temp_dir();
    manifest(dir.path(), "");
    let out = edge(&["render"], dir.path());
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("limit_req zone=rl0_api burst=20 nodelay;"),
        "{text}"
    );
    assert!(
        text.contains("<admin token from secret reference"),
        "{text}"
    );
    assert!(!text.contains(TOKEN), "the token must never be printed");

    let out = edge(&["render", "--json"], dir.path());
    let doc = json(&out);
    assert_eq!(doc["status"], "ok");
    assert!(
        doc["nginx_conf"]
            .as_str()
            .unwrap()
            .contains("include upstream.conf;")
    );
    assert!(!String::from_utf8_lossy(&out.stdout).contains(TOKEN));
}

#[test]
fn an_unknown_key_is_a_configuration_error() {
    let dir = temp_dir();
    let path = manifest(dir.path(), "");
    let text = std::fs::read_to_string(&path)
        .unwrap()
        .replace("upstream =", "upstreem =");
    std::fs::write(&path, text).unwrap();
    let out = edge(&["render", "--json"], dir.path());
    assert_eq!(out.status.code(), Some(78));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("upstreem"), "{stderr}");
}

#[test]
fn check_passes_a_good_config_and_fails_a_missing_certificate() {
    let dir = temp_dir();
    manifest(dir.path(), "");
    let out = edge(&["check", "--json"], dir.path());
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(json(&out)["status"], "ok");

    let tls = format!(
        "[proxy.tls]\nlisten = [\"{}\"]\ncert = \"/nonexistent/edge/cert.pem\"\nkey = \"/nonexistent/edge/key.pem\"\n",
        loopback()
    );
    manifest(dir.path(), &tls);
    let out = edge(&["check", "--json"], dir.path());
    assert_eq!(out.status.code(), Some(2));
    let doc = json(&out);
    assert_eq!(doc["status"], "fail");
    assert!(
        doc["error"]
            .as_str()
            .unwrap()
            .contains("/nonexistent/edge/cert.pem"),
        "{doc}"
    );
}

/// Relative `cert`/`key` in `[proxy.tls]` name files beside the manifest, whatever the
/// current directory: found there (nginx -t passes), and not taken from the current directory
/// when they are missing beside the manifest.
#[test]
fn relative_certificate_paths_resolve_against_the_manifest_directory() {
    let manifest_dir = temp_dir();
    let elsewhere = temp_dir();
    let tls = format!(
        "[proxy.tls]\nlisten = [\"{}\"]\ncert = \"certs/cert.pem\"\nkey = \"certs/key.pem\"\n",
        loopback()
    );
    let path = manifest(manifest_dir.path(), &tls);
    let m = path.to_str().unwrap();
    let names = vec!["localhost".to_owned()];
    let certs = manifest_dir.path().join("certs");
    edge_proxy::write_self_signed(&names, &certs.join("cert.pem"), &certs.join("key.pem")).unwrap();

    let out = edge(&["render", "--manifest", m], elsewhere.path());
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let expected = format!("ssl_certificate {};", certs.join("cert.pem").display());
    assert!(text.contains(&expected), "{expected} missing:\n{text}");
    let out = edge(&["check", "--json", "--manifest", m], elsewhere.path());
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // The same relative files in the current directory but not beside the manifest: refused,
    // and the message names the path beside the manifest.
    let moved = elsewhere.path().join("certs");
    std::fs::rename(&certs, &moved).unwrap();
    let out = edge(&["check", "--json", "--manifest", m], elsewhere.path());
    assert_eq!(out.status.code(), Some(2));
    let doc = json(&out);
    let error = doc["error"].as_str().unwrap();
    assert!(
        error.contains(&certs.join("cert.pem").display().to_string()),
        "{doc}"
    );
}

/// Stops the nginx under `dir` on drop (graceful `down`, then the group by pid + start time).
struct Down<'a>(&'a Path);

impl Drop for Down<'_> {
    fn drop(&mut self) {
        let _ = Command::new(workspace_bin("cutover-edge"))
            .args(["down", "--timeout", "3s", "--dir"])
            .arg(self.0)
            .output();
    }
}

fn version_via(addr: &str) -> Option<String> {
    let addr: SocketAddr = addr.parse().ok()?;
    let body = http_get(addr, "/api/health").ok()?.body;
    let json: serde_json::Value = serde_json::from_str(&body).ok()?;
    json["version"].as_str().map(str::to_owned)
}

#[test]
fn up_switch_down_from_flags_with_a_refused_switch() {
    let blue = DemoHub::start(&["--release-id", "blue"]);
    let green = DemoHub::start(&["--release-id", "green"]);
    blue.wait_ready();
    green.wait_ready();
    let work = temp_dir();
    let dir = work.path().join("proxy");
    let dir_arg = dir.to_str().unwrap();
    let _down = Down(&dir);

    let blue_addr = blue.addr.to_string();
    let out = edge(
        &[
            "up",
            "--json",
            "--dir",
            dir_arg,
            "--upstream",
            &blue_addr,
            "--rate-limit",
            "50r/s",
            "--burst",
            "100",
        ],
        work.path(),
    );
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let doc = json(&out);
    assert_eq!(doc["upstream"], blue_addr);
    let http = doc["listen_http"][0].as_str().unwrap().to_owned();
    assert_eq!(version_via(&http).as_deref(), Some("blue"));

    let green_addr = green.addr.to_string();
    let out = edge(
        &[
            "switch",
            "--json",
            "--dir",
            dir_arg,
            "--upstream",
            &green_addr,
            "--expect-release",
            "green",
        ],
        work.path(),
    );
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let doc = json(&out);
    assert_eq!(
        (doc["from"].as_str(), doc["release"].as_str()),
        (Some(blue_addr.as_str()), Some("green"))
    );
    assert_eq!(version_via(&http).as_deref(), Some("green"));

    let dead = loopback();
    let out = edge(
        &["switch", "--json", "--dir", dir_arg, "--upstream", &dead],
        work.path(),
    );
    assert_eq!(out.status.code(), Some(2), "a dead upstream is refused");
    let doc = json(&out);
    assert_eq!(doc["status"], "fail");
    assert!(
        doc["error"].as_str().unwrap().contains("traffic unchanged"),
        "{doc}"
    );
    assert_eq!(
        version_via(&http).as_deref(),
        Some("green"),
        "traffic stays"
    );

    let out = edge(&["down", "--json", "--dir", dir_arg], work.path());
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(json(&out)["was_running"], true);
    let gone = cutover_tests::wait_until(Duration::from_secs(10), || {
        http_get(http.parse().unwrap(), "/").is_err()
    });
    assert!(gone, "nginx stopped listening");
    let out = edge(&["down", "--json", "--dir", dir_arg], work.path());
    assert_eq!(json(&out)["was_running"], false);
}

#[test]
fn usage_errors_exit_64() {
    let dir = temp_dir();
    let out = edge(&["switch", "--upstream", "not-an-address"], dir.path());
    assert_eq!(out.status.code(), Some(64));
}

#[test]
fn metrics_print_and_serve_the_edge_log_and_rotate_rotates_it() {
    use std::io::BufRead;

    let hub = DemoHub::start(&["--release-id", "r1"]);
    hub.wait_ready();
    let work = temp_dir();
    let dir = work.path().join("proxy");
    let dir_arg = dir.to_str().unwrap();
    let _down = Down(&dir);
    let upstream = hub.addr.to_string();
    let out = edge(
        &[
            "up",
            "--json",
            "--dir",
            dir_arg,
            "--upstream",
            &upstream,
            "--rate-limit",
            "1000r/s",
            "--burst",
            "1000",
        ],
        work.path(),
    );
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let http: SocketAddr = json(&out)["listen_http"][0]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let ok = (0..30)
        .filter(|_| http_get(http, "/api/tools").unwrap().status == 200)
        .count();
    assert_eq!(ok, 30);
    let series = format!(
        "cutover_edge_requests_total{{location=\"/api/tools\",slot=\"{upstream}\",release=\"\",status=\"200\"}} 30"
    );
    // nginx logs a request as it ends; wait for the last line.
    let mut printed = String::new();
    let logged = cutover_tests::wait_until(Duration::from_secs(20), || {
        let out = edge(&["metrics", "--dir", dir_arg], work.path());
        printed = String::from_utf8_lossy(&out.stdout).into_owned();
        out.status.success() && printed.contains(&series)
    });
    assert!(logged, "{series} in:\n{printed}");
    assert!(printed.contains("# TYPE cutover_edge_request_duration_seconds histogram"));

    // Under the size limit nothing rotates; --force does, and nginx reopens.
    let out = edge(&["rotate", "--json", "--dir", dir_arg], work.path());
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(json(&out)["rotated"], false);
    let out = edge(
        &["rotate", "--json", "--force", "--dir", dir_arg],
        work.path(),
    );
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let doc = json(&out);
    assert_eq!(doc["rotated"], true, "{doc}");
    assert!(dir.join("logs/access.json.1").exists());
    assert_eq!(http_get(http, "/api/tools").unwrap().status, 200);
    let reopened = cutover_tests::wait_until(Duration::from_secs(20), || {
        std::fs::read_to_string(dir.join("logs/access.json")).is_ok_and(|t| t.lines().count() == 1)
    });
    assert!(
        reopened,
        "nginx writes the new access.json after the reopen"
    );

    // Served: the scrape sees the current file's request.
    let mut command = Command::new(workspace_bin("cutover-edge"));
    command
        .args(["metrics", "--dir", dir_arg, "--listen", "127.0.0.1:0"])
        .env("NO_COLOR", "1")
        .stdout(std::process::Stdio::piped());
    let mut server = cutover_tests::ChildGuard::spawn(command).unwrap();
    let stdout = server.child().stdout.take().unwrap();
    let mut first = String::new();
    std::io::BufReader::new(stdout)
        .read_line(&mut first)
        .unwrap();
    let url = first.trim().strip_prefix("serving http://").unwrap();
    let addr: SocketAddr = url.strip_suffix("/metrics").unwrap().parse().unwrap();
    let scraped = http_get(addr, "/metrics").unwrap();
    assert_eq!(scraped.status, 200);
    assert!(
        scraped.body.contains(&series.replace("} 30", "} 1")),
        "{}",
        scraped.body
    );
    assert_eq!(http_get(addr, "/other").unwrap().status, 404);
}
