//! The Alertmanager notifier against a real Alertmanager (Debian `prometheus-alertmanager`,
//! `apt-get install -y prometheus-alertmanager`), started by the test on a loopback port it
//! checked free, with its own storage and configuration in a temp dir, and killed when the
//! test ends, also when it fails: a firing rule shows in `GET /api/v2/alerts` with its
//! labels and stays active while it fires; once the rule resolves it is no longer active.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers outside #[test] functions

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use alert_rules::{AlertRuleConfig, AlertState, Engine, Sample, deliver_evaluation};
use cutover_tests::{ChildGuard, free_port, http_get, temp_dir, wait_until};
use serde_json::Value;

const ALERTMANAGER: &str = "/usr/bin/prometheus-alertmanager";

/// A running Alertmanager; killed (process group and all) on drop.
struct Alertmanager {
    addr: SocketAddr,
    _guard: ChildGuard,
    _dir: tempfile::TempDir,
}

impl Alertmanager {
    fn start() -> Self {
        assert!(
            Path::new(ALERTMANAGER).is_file(),
            "{ALERTMANAGER} is missing: apt-get install -y prometheus-alertmanager"
        );
        let dir = temp_dir();
        let config = dir.path().join("am.yml");
        std::fs::write(
            &config,
            "route:\n  receiver: blackhole\n  group_wait: 1s\nreceivers:\n  - name: blackhole\n",
        )
        .unwrap();
        // The port was free a moment ago; another process may take it before Alertmanager
        // binds, so a start that exits is tried again on another port.
        for _ in 0..5 {
            let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
            let mut command = Command::new(ALERTMANAGER);
            command
                .arg(format!("--web.listen-address={addr}"))
                .arg("--cluster.listen-address=")
                .arg(format!(
                    "--storage.path={}",
                    dir.path().join("data").display()
                ))
                .arg(format!("--config.file={}", config.display()))
                .stdout(Stdio::null())
                .stderr(Stdio::null());
            let mut guard = ChildGuard::spawn(command).expect("prometheus-alertmanager starts");
            let ready = wait_until(Duration::from_secs(30), || {
                http_get(addr, "/-/ready").is_ok_and(|r| r.status == 200)
                    || guard.child().try_wait().ok().flatten().is_some()
            });
            if ready && guard.child().try_wait().ok().flatten().is_none() {
                return Self {
                    addr,
                    _guard: guard,
                    _dir: dir,
                };
            }
        }
        panic!("Alertmanager did not become ready on a free loopback port");
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The alerts `GET /api/v2/alerts` lists named `alertname`.
    fn alerts(&self, alertname: &str) -> Vec<Value> {
        let r = http_get(self.addr, "/api/v2/alerts").unwrap();
        assert_eq!(r.status, 200, "{}", r.body);
        let all: Vec<Value> = serde_json::from_str(&r.body).unwrap();
        all.into_iter()
            .filter(|a| a["labels"]["alertname"] == alertname)
            .collect()
    }

    fn active(&self, alertname: &str) -> Vec<Value> {
        self.alerts(alertname)
            .into_iter()
            .filter(|a| a["status"]["state"] == "active")
            .collect()
    }

    /// The active alerts named `alertname` once `done` holds of them (Alertmanager marks a
    /// new alert active when it has processed it), failing after a generous deadline.
    fn active_once(&self, alertname: &str, done: impl Fn(&[Value]) -> bool) -> Vec<Value> {
        let mut last = Vec::new();
        let held = wait_until(Duration::from_secs(20), || {
            last = self.active(alertname);
            done(&last)
        });
        assert!(held, "{:?}", self.alerts(alertname));
        last
    }
}

fn rule(url: &str) -> AlertRuleConfig {
    toml::from_str(&format!(
        r#"
name = "queue-depth"
source = {{ command = ["true"] }}
warn = "> 10"
crit = "> 50"
labels = {{ team = "hub" }}
description = "{{{{ $value }}}} requests in flight"
notify = [{{ alertmanager = "{url}", resend_margin = "10m" }}]
"#
    ))
    .expect("an [[alert]] entry with an Alertmanager notifier parses")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_firing_rule_shows_in_alertmanager_and_clears_when_it_resolves() {
    let am = Alertmanager::start();
    let rules = vec![rule(&am.url())];
    let mut engine = Engine::new(vec![rules[0].rule.clone()], Default::default());
    let context: BTreeMap<String, String> = [
        ("service".to_owned(), "hub".to_owned()),
        ("release".to_owned(), "20260101T000000Z-abc1234".to_owned()),
    ]
    .into();
    let mut evaluate = async |depth: f64| {
        let now = jiff::Timestamp::now();
        let samples = [("queue-depth".to_owned(), Sample::number(depth))].into();
        let evaluation = engine.evaluate(now, &samples);
        let failures = deliver_evaluation(now, &evaluation, &rules, &[], &context).await;
        assert!(failures.is_empty(), "{failures:?}");
        evaluation
    };

    let first = evaluate(20.0).await;
    assert_eq!(first.statuses[0].state, AlertState::Firing);
    let listed = am.active_once("queue-depth", |a| a.len() == 1);
    let labels = &listed[0]["labels"];
    assert_eq!(
        labels,
        &serde_json::json!({
            "alertname": "queue-depth",
            "severity": "warning",
            "service": "hub",
            "release": "20260101T000000Z-abc1234",
            "team": "hub",
        })
    );
    assert_eq!(
        listed[0]["annotations"]["description"],
        "20 requests in flight"
    );
    let ends_first = listed[0]["endsAt"].as_str().unwrap().to_owned();
    let ends_first: jiff::Timestamp = ends_first.parse().unwrap();
    assert!(
        ends_first > jiff::Timestamp::now() + Duration::from_secs(5 * 60),
        "a firing alert ends a margin ahead: {ends_first}"
    );

    // Still firing, nothing changed: it is re-sent (Alertmanager keeps it active, with an
    // endsAt at least as late).
    let again = evaluate(25.0).await;
    assert!(again.transitions.is_empty(), "{:?}", again.transitions);
    let listed = am.active_once("queue-depth", |a| a.len() == 1);
    let ends_again: jiff::Timestamp = listed[0]["endsAt"].as_str().unwrap().parse().unwrap();
    assert!(ends_again >= ends_first, "{ends_again} < {ends_first}");

    // Escalation: the warning resolves and the critical alert fires.
    evaluate(80.0).await;
    let listed = am.active_once("queue-depth", |a| {
        a.len() == 1 && a[0]["labels"]["severity"] == "critical"
    });
    let severities: Vec<&str> = listed
        .iter()
        .map(|a| a["labels"]["severity"].as_str().unwrap())
        .collect();
    assert_eq!(severities, ["critical"], "{listed:?}");

    // Resolved: no longer active.
    let resolved = evaluate(0.0).await;
    assert_eq!(resolved.statuses[0].state, AlertState::Resolved);
    let cleared = wait_until(Duration::from_secs(20), || {
        am.active("queue-depth").is_empty()
    });
    assert!(
        cleared,
        "still active after the rule resolved: {:?}",
        am.alerts("queue-depth")
    );
}

#[test]
fn alertmanager_notifier_mistakes_are_reported() {
    for (notify, want) in [
        (r#"{ alertmanager = "ftp://x" }"#, "http"),
        (
            r#"{ alertmanager = "http://127.0.0.1:9093", format = "slack" }"#,
            "webhooks only",
        ),
        (
            r#"{ webhook = "http://127.0.0.1:9", resend_margin = "5m" }"#,
            "alertmanager only",
        ),
        (
            r#"{ alertmanager = "http://127.0.0.1:9093", webhook = "http://127.0.0.1:9" }"#,
            "one of",
        ),
    ] {
        let err = toml::from_str::<AlertRuleConfig>(&format!(
            "name = \"x\"\nsource = {{ command = [\"true\"] }}\nwarn = \"> 1\"\nnotify = [{notify}]\n"
        ))
        .unwrap_err()
        .to_string();
        assert!(err.contains(want), "{notify}: {err}");
    }
}
