//! `cutover-probe` as a whole process against the demo service and small local files: exit codes
//! 0/2/3/64/78, the JSON document, manifest suites, the built-in suite and `wait`.
//! Needs `cargo build -p cutover-probe -p cutover-demo-hub` first.

#![allow(clippy::unwrap_used)] // helpers outside #[test] functions unwrap too

use std::path::Path;
use std::process::{Command, Output};

use cutover_tests::{DemoHub, temp_dir, workspace_bin};
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

#[test]
fn an_ad_hoc_probe_passes_and_reports_json() {
    let hub = DemoHub::start(&[]);
    hub.wait_ready();
    let dir = temp_dir();
    let url = format!("{}/api/health", hub.base_url());
    let out = probe(
        dir.path(),
        &[
            "run",
            "--url",
            &url,
            "--expect-json",
            r#"/state=="ready""#,
            "--expect-status",
            "200",
            "--json",
        ],
    );
    assert_eq!(code(&out), 0, "{}", String::from_utf8_lossy(&out.stderr));
    let doc = json(&out);
    assert_eq!(doc["status"], "ok");
    let p = &doc["probes"][0];
    assert_eq!(p["name"], "probe");
    assert_eq!(p["status"], "ok");
    assert_eq!(p["status_code"], 200);
    assert!(
        p["timings_ms"]["connect_ms"].is_number() && p["timings_ms"]["first_byte_ms"].is_number()
    );
    assert!(p["timings_ms"]["total_ms"].as_f64().unwrap() > 0.0);
    assert!(p["reason"].is_string());
}

#[test]
fn a_failed_probe_exits_2_with_its_reason() {
    let hub = DemoHub::start(&["--error-rate", "1"]);
    hub.wait_ready();
    let dir = temp_dir();
    let out = probe(
        dir.path(),
        &[
            "run",
            "--url",
            &format!("{}/api/tools", hub.base_url()),
            "--json",
        ],
    );
    assert_eq!(code(&out), 2);
    let doc = json(&out);
    assert_eq!(doc["status"], "fail");
    assert_eq!(doc["probes"][0]["reason"], "status 500 (expected 2xx)");

    let human = probe(
        dir.path(),
        &["run", "--url", &format!("{}/api/tools", hub.base_url())],
    );
    assert_eq!(code(&human), 2);
    let text = String::from_utf8_lossy(&human.stdout);
    assert!(
        text.contains("FAIL") && text.contains("status 500") && text.contains("0/1 probes ok"),
        "{text}"
    );
}

#[test]
fn what_cannot_be_run_exits_3_and_bad_flags_exit_64() {
    let dir = temp_dir();
    let bad_url = probe(dir.path(), &["run", "--url", "localhost:7000/api/health"]);
    assert_eq!(
        code(&bad_url),
        3,
        "{}",
        String::from_utf8_lossy(&bad_url.stderr)
    );
    assert!(String::from_utf8_lossy(&bad_url.stderr).contains("needs a scheme"));

    let no_ca = probe(
        dir.path(),
        &[
            "run",
            "--url",
            "https://127.0.0.1:1/",
            "--ca-file",
            "missing.pem",
            "--json",
        ],
    );
    assert_eq!(code(&no_ca), 3);
    assert_eq!(json(&no_ca)["status"], "unknown");

    let unset = probe(
        dir.path(),
        &[
            "run",
            "--url",
            "http://127.0.0.1:1/",
            "--bearer-token",
            "env:CUTOVER_PROBE_TEST_UNSET_VAR",
        ],
    );
    assert_eq!(code(&unset), 3);
    assert!(String::from_utf8_lossy(&unset.stderr).contains("CUTOVER_PROBE_TEST_UNSET_VAR"));

    let bad_expr = probe(
        dir.path(),
        &[
            "run",
            "--url",
            "http://127.0.0.1:1/",
            "--expect-json",
            "/state == ready",
        ],
    );
    assert_eq!(code(&bad_expr), 64);
    assert!(String::from_utf8_lossy(&bad_expr.stderr).contains("quote strings"));

    let token_as_value = probe(
        dir.path(),
        &[
            "run",
            "--url",
            "http://127.0.0.1:1/",
            "--bearer-token",
            "abc123",
        ],
    );
    assert_eq!(
        code(&token_as_value),
        64,
        "a bare token is refused: only references are accepted"
    );
    assert!(!String::from_utf8_lossy(&token_as_value.stderr).contains("abc123"));

    let nothing = probe(dir.path(), &["run"]);
    assert_eq!(code(&nothing), 64);
    assert!(String::from_utf8_lossy(&nothing.stderr).contains("nothing to probe"));
}

#[test]
fn manifest_probes_run_by_suite_and_bad_manifests_exit_78() {
    let hub = DemoHub::start(&[]);
    hub.wait_ready();
    let dir = temp_dir();
    let manifest = format!(
        r#"[service]
name = "hub"

[[probe]]
name = "ready"
url = "{base}/api/health"
expect_json = ['/state == "ready"']

[[probe]]
name = "port"
tcp = "{addr}"
suite = "smoke"

[[probe]]
name = "tools"
url = "/api/tools"
expect_json = ["/tools nonempty"]
suite = "smoke"
"#,
        base = hub.base_url(),
        addr = hub.addr
    );
    std::fs::write(dir.path().join("cutover.toml"), manifest).unwrap();
    let all = probe(
        dir.path(),
        &["run", "--json", "--base-url", &hub.base_url()],
    );
    assert_eq!(code(&all), 0, "{}", String::from_utf8_lossy(&all.stderr));
    assert_eq!(json(&all)["probes"].as_array().unwrap().len(), 3);

    let smoke = probe(
        dir.path(),
        &[
            "run",
            "--suite",
            "smoke",
            "--json",
            "--base-url",
            &hub.base_url(),
        ],
    );
    assert_eq!(
        code(&smoke),
        0,
        "{}",
        String::from_utf8_lossy(&smoke.stderr)
    );
    let names: Vec<_> = json(&smoke)["probes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(names, ["port", "tools"]);

    let unknown = probe(dir.path(), &["run", "--suite", "nightly"]);
    assert_eq!(code(&unknown), 78);
    assert!(
        String::from_utf8_lossy(&unknown.stderr).contains("known suites: default, demo-hub, smoke")
    );

    std::fs::write(
        dir.path().join("bad.toml"),
        "[[probe]]\nname = \"x\"\nurl = \"http://h/\"\nexpect_jsn = []\n",
    )
    .unwrap();
    let bad = probe(dir.path(), &["run", "--manifest", "bad.toml"]);
    assert_eq!(code(&bad), 78);
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(
        err.contains("bad.toml:")
            && err.contains("expect_jsn")
            && err.contains("did you mean `expect_json`"),
        "{err}"
    );
}

#[test]
fn the_built_in_demo_suite_runs_without_a_manifest() {
    let hub = DemoHub::start(&[]);
    hub.wait_ready();
    let dir = temp_dir();
    let out = probe(
        dir.path(),
        &[
            "run",
            "--suite",
            "demo-hub",
            "--base-url",
            &hub.base_url(),
            "--json",
        ],
    );
    assert_eq!(code(&out), 0, "{}", String::from_utf8_lossy(&out.stderr));
    let names: Vec<_> = json(&out)["probes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(names, ["health", "filtering-stats", "tools", "servers"]);
}

#[test]
fn wait_honours_thresholds_and_reports_the_history() {
    let never = DemoHub::start(&["--health-state", "starting"]);
    let dir = temp_dir();
    let url = format!("{}/api/health", never.base_url());
    let out = probe(
        dir.path(),
        &[
            "wait",
            "--url",
            &url,
            "--expect-json",
            r#"/state=="ready""#,
            "--period",
            "100ms",
            "--failure-threshold",
            "3",
            "--json",
        ],
    );
    assert_eq!(code(&out), 2, "{}", String::from_utf8_lossy(&out.stderr));
    let doc = json(&out);
    assert_eq!(doc["status"], "fail");
    assert_eq!(doc["attempts"], 3);
    let history = doc["history"].as_array().unwrap();
    assert_eq!(history.len(), 3);
    assert!(
        history.iter().all(|a| a["reason"]
            .as_str()
            .unwrap()
            .contains(r#"/state expected \"ready\", got \"starting\""#)
            || a["reason"]
                .as_str()
                .unwrap()
                .contains(r#"/state expected "ready", got "starting""#)),
        "{history:?}"
    );
    assert_eq!(doc["probes"][0]["status"], "fail");

    let slow = DemoHub::start(&["--start-delay", "1s"]);
    let url = format!("{}/api/health", slow.base_url());
    let out = probe(
        dir.path(),
        &[
            "wait",
            "--url",
            &url,
            "--expect-json",
            r#"/state=="ready""#,
            "--period",
            "100ms",
            "--success-threshold",
            "2",
            "--failure-threshold",
            "300",
            "--json",
        ],
    );
    assert_eq!(code(&out), 0, "{}", String::from_utf8_lossy(&out.stderr));
    let doc = json(&out);
    assert_eq!(doc["status"], "ok");
    let history = doc["history"].as_array().unwrap();
    let tail: Vec<_> = history
        .iter()
        .rev()
        .take(2)
        .map(|a| a["status"].as_str().unwrap())
        .collect();
    assert_eq!(tail, ["ok", "ok"], "two successes in a row");
    assert!(doc["attempts"].as_u64().unwrap() >= 3);
}

#[test]
fn help_lists_the_subcommands() {
    let dir = temp_dir();
    let out = probe(dir.path(), &["--help"]);
    assert_eq!(code(&out), 0);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("run") && text.contains("wait"), "{text}");
}
