//! Sources and notifiers against a real HTTP server on 127.0.0.1:0 (axum), so that every
//! outcome a rule distinguishes (value, no data, error) and every delivery path (success,
//! retry, give up, timeout) is shown to happen for real.

#![allow(clippy::unwrap_used)] // test helpers outside #[test] functions

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use alert_rules::notify::{CommandNotifier, Notifier, WebhookFormat, WebhookNotifier};
use alert_rules::{
    AlertError, AlertRuleConfig, Engine, MetricSource, Sample, Transition, TransitionKind,
};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post};

#[derive(Clone, Default)]
struct Seen {
    hooks: Arc<Mutex<Vec<(String, String)>>>,
}

const METRICS: &str = "# TYPE demo_hub_requests_total counter\n\
demo_hub_requests_total{code=\"200\"} 41\n\
demo_hub_requests_total{code=\"500\"} 3\n\
demo_hub_success_ratio 0.93\n";

async fn server() -> (String, Seen) {
    let seen = Seen::default();
    let app = axum::Router::new()
        .route(
            "/stats",
            get(|| async {
                axum::Json(serde_json::json!({
                    "success_rate": 0.93, "latency_ms": {"p95": 2500}, "circuit_breaker": "open",
                    "cache_hit_rate": null, "list": [1]
                }))
            }),
        )
        .route(
            "/auth-stats",
            get(|headers: HeaderMap| async move {
                let want = format!("Bearer {}", std::env::var("PATH").unwrap());
                if headers.get("authorization").and_then(|v| v.to_str().ok()) == Some(want.as_str())
                {
                    (StatusCode::OK, "{\"x\": 1}")
                } else {
                    (StatusCode::UNAUTHORIZED, "{}")
                }
            }),
        )
        .route(
            "/fail",
            get(|| async { (StatusCode::INTERNAL_SERVER_ERROR, "{\"x\": 1}") }),
        )
        .route("/notjson", get(|| async { "hello" }))
        .route("/metrics", get(|| async { METRICS }))
        .route(
            "/slow",
            // Never answers: the client's timeout is what ends the request.
            get(|| async {
                std::future::pending::<()>().await;
                "{}"
            }),
        )
        .route(
            "/hook/{token}/{mode}",
            post(
                |State(seen): State<Seen>,
                 Path((token, mode)): Path<(String, String)>,
                 body: String| async move {
                    let n = {
                        let mut hooks = seen.hooks.lock().unwrap();
                        hooks.push((format!("{token}/{mode}"), body));
                        hooks
                            .iter()
                            .filter(|(k, _)| k == &format!("{token}/{mode}"))
                            .count()
                    };
                    match mode.as_str() {
                        "ok" => StatusCode::OK,
                        "bad" => StatusCode::BAD_REQUEST,
                        "slow" => {
                            std::future::pending::<()>().await;
                            StatusCode::OK
                        }
                        // `failN`: the first N attempts fail with 503.
                        m => {
                            let fails: usize = m.trim_start_matches("fail").parse().unwrap_or(0);
                            if n <= fails {
                                StatusCode::SERVICE_UNAVAILABLE
                            } else {
                                StatusCode::NO_CONTENT
                            }
                        }
                    }
                },
            ),
        )
        .with_state(seen.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://{addr}"), seen)
}

fn source(toml_source: &str) -> alert_rules::Source {
    let entry: AlertRuleConfig = toml::from_str(&format!(
        "name = \"t\"\nsource = {toml_source}\nwarn = \"> 0\"\n"
    ))
    .unwrap();
    entry.source
}

#[tokio::test]
async fn json_source_tells_value_no_data_and_error_apart() {
    let (base, _) = server().await;
    let json = |path: &str, pointer: &str, extra: &str| {
        source(&format!(
            "{{ http = \"{base}{path}\", pointer = \"{pointer}\"{extra} }}"
        ))
    };
    assert_eq!(
        json("/stats", "/success_rate", ", scale = 100")
            .sample()
            .await,
        Sample::number(93.0)
    );
    assert_eq!(
        json("/stats", "/latency_ms/p95", "").sample().await,
        Sample::number(2500.0)
    );
    assert_eq!(
        json("/stats", "/circuit_breaker", "").sample().await,
        Sample::text("open")
    );
    let no_data = [
        json("/stats", "/cache_hit_rate", ""),
        json("/stats", "/missing", ""),
    ];
    for s in no_data {
        assert!(matches!(s.sample().await, Sample::NoData(_)));
    }
    let errors = [
        (json("/stats", "/list", ""), "not a scalar"),
        (json("/fail", "/x", ""), "HTTP 500"),
        (json("/notjson", "/x", ""), "not JSON"),
        (json("/auth-stats", "/x", ""), "HTTP 401"),
        (json("/slow", "/x", ", timeout = \"300ms\""), "within 300ms"),
    ];
    for (s, want) in errors {
        let Sample::Error(e) = s.sample().await else {
            panic!("{want}")
        };
        assert!(e.contains(want), "{want}: {e}");
    }
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let down = source(&format!(
        "{{ http = \"http://127.0.0.1:{port}/api/stats\", pointer = \"/x\" }}"
    ));
    assert!(matches!(down.sample().await, Sample::Error(_)));
}

#[tokio::test]
async fn json_source_sends_its_header_with_environment_expansion() {
    let (base, _) = server().await;
    let with = source(&format!(
        "{{ http = \"{base}/auth-stats\", pointer = \"/x\", header = \"Authorization: Bearer ${{PATH}}\" }}"
    ));
    assert_eq!(with.sample().await, Sample::number(1.0));
    // The header value never appears in Debug output.
    assert!(!format!("{with:?}").contains(&std::env::var("PATH").unwrap()));
}

/// A `file:` secret holding `value`, mode 0600 as the file provider asks.
fn secret_file(dir: &std::path::Path, name: &str, value: &str) -> std::path::PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let path = dir.join(name);
    std::fs::write(&path, format!("{value}\n")).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    path
}

#[tokio::test]
async fn json_source_sends_headers_from_secret_references_as_probes_write_them() {
    let (base, _) = server().await;
    let dir = tempfile::tempdir().unwrap();
    let token = secret_file(dir.path(), "token", &std::env::var("PATH").unwrap());
    let with = source(&format!(
        "{{ http = \"{base}/auth-stats\", pointer = \"/x\", headers = {{ Accept = \"application/json\", Authorization = {{ secret = \"file:{}\", prefix = \"Bearer \" }} }} }}",
        token.display()
    ));
    assert_eq!(with.sample().await, Sample::number(1.0));
    let shown = format!("{with:?} {}", serde_json::to_string(&with).unwrap());
    assert!(!shown.contains(&std::env::var("PATH").unwrap()), "{shown}");

    // The wrong secret is refused by the server: the header really carries the file's value.
    let wrong = secret_file(dir.path(), "wrong", "not-the-token");
    let refused = source(&format!(
        "{{ http = \"{base}/auth-stats\", pointer = \"/x\", headers = {{ Authorization = {{ secret = \"file:{}\", prefix = \"Bearer \" }} }} }}",
        wrong.display()
    ));
    assert!(matches!(refused.sample().await, Sample::Error(_)));

    // A reference that cannot be resolved is an error naming it, not a request without it.
    let unset = source(&format!(
        "{{ http = \"{base}/auth-stats\", pointer = \"/x\", headers = {{ Authorization = {{ secret = \"env:CUTOVER_IT_SURELY_UNSET_TOKEN\" }} }} }}"
    ));
    match unset.sample().await {
        Sample::Error(e) => assert!(e.contains("CUTOVER_IT_SURELY_UNSET_TOKEN"), "{e}"),
        other => panic!("expected an error, got {other:?}"),
    }

    // A bare value where a reference belongs is refused at load, without showing the value.
    let err = toml::from_str::<AlertRuleConfig>(&format!(
        "name = \"t\"\nsource = {{ http = \"{base}/x\", pointer = \"/x\", headers = {{ Authorization = {{ secret = \"hunter2\" }} }} }}\nwarn = \"> 0\"\n"
    ))
    .unwrap_err()
    .to_string();
    assert!(err.contains("headers.Authorization.secret"), "{err}");
    assert!(!err.contains("hunter2"), "{err}");
}

#[tokio::test]
async fn webhook_url_from_a_secret_reference_with_a_prefix() {
    let (base, seen) = server().await;
    let dir = tempfile::tempdir().unwrap();
    let path = secret_file(dir.path(), "hook", "s3cret-path/ok");
    let entry: AlertRuleConfig = toml::from_str(&format!(
        "name = \"t\"\nsource = {{ command = [\"x\"] }}\nwarn = \"> 0\"\nnotify = [{{ webhook = {{ secret = \"file:{}\", prefix = \"{base}/hook/\" }}, retries = 0 }}]\n",
        path.display()
    ))
    .unwrap();
    let notifier = entry.notify[0].build();
    let described = notifier.describe();
    assert!(!described.contains("s3cret"), "{described}");
    notifier.notify(&transition()).await.unwrap();
    let hooks = seen.hooks.lock().unwrap().clone();
    assert_eq!(hooks.len(), 1);
    assert_eq!(hooks[0].0, "s3cret-path/ok");

    // A bare value where the reference belongs is refused at load, naming the key and not
    // showing the value (the message; toml's own Display also quotes the offending line,
    // which the binaries do not print: see manifest-loader).
    let err = toml::from_str::<AlertRuleConfig>(
        "name = \"t\"\nsource = { command = [\"x\"] }\nwarn = \"> 0\"\nnotify = [{ webhook = { secret = \"hunter2\" } }]\n",
    )
    .unwrap_err()
    .message()
    .to_owned();
    assert!(err.contains("webhook.secret"), "{err}");
    assert!(!err.contains("hunter2"), "{err}");
}

#[tokio::test]
async fn prometheus_source_selects_by_labels() {
    let (base, _) = server().await;
    let prom = |metric: &str, extra: &str| {
        source(&format!(
            "{{ prometheus = \"{base}/metrics\", metric = \"{metric}\"{extra} }}"
        ))
    };
    assert_eq!(
        prom("demo_hub_requests_total", ", labels = { code = \"500\" }")
            .sample()
            .await,
        Sample::number(3.0)
    );
    assert_eq!(
        prom("demo_hub_requests_total", ", aggregate = \"sum\"")
            .sample()
            .await,
        Sample::number(44.0)
    );
    assert_eq!(
        prom("demo_hub_success_ratio", ", scale = 100")
            .sample()
            .await,
        Sample::number(93.0)
    );
    assert!(matches!(
        prom("demo_hub_requests_total", "").sample().await,
        Sample::Error(_)
    ));
    assert!(matches!(
        prom("demo_hub_requests_total", ", labels = { code = \"404\" }")
            .sample()
            .await,
        Sample::NoData(_)
    ));
    let garbage = source(&format!(
        "{{ prometheus = \"{base}/stats\", metric = \"x\" }}"
    ));
    assert!(matches!(garbage.sample().await, Sample::Error(_)));
}

fn transition() -> Transition {
    let entry: AlertRuleConfig = toml::from_str(
        "name = \"latency-p95\"\nsource = { command = [\"x\"] }\nwarn = \"> 2000\"\ndescription = \"p95 is {{ $value }} ms\"\n",
    )
    .unwrap();
    let mut engine = Engine::new(vec![entry.rule], Default::default());
    let samples: BTreeMap<String, Sample> =
        [("latency-p95".to_owned(), Sample::number(2500.0))].into();
    engine
        .evaluate(jiff::Timestamp::UNIX_EPOCH, &samples)
        .transitions
        .remove(0)
}

fn hook(base: &str, path: &str, retries: u32) -> WebhookNotifier {
    let mut w = WebhookNotifier::new(format!("{base}/hook/{path}"));
    w.retries = retries;
    w.backoff = Duration::from_millis(10);
    w.timeout = Duration::from_secs(5);
    w
}

#[tokio::test]
async fn webhook_posts_json_and_slack_bodies() {
    let (base, seen) = server().await;
    hook(&base, "a/ok", 0).notify(&transition()).await.unwrap();
    let mut slack = hook(&base, "b/ok", 0);
    slack.format = WebhookFormat::Slack;
    slack.notify(&transition()).await.unwrap();
    let hooks = seen.hooks.lock().unwrap().clone();
    let json: serde_json::Value = serde_json::from_str(&hooks[0].1).unwrap();
    assert_eq!(json["rule"], "latency-p95");
    assert_eq!(json["kind"], "firing");
    assert_eq!(json["severity"], "warning");
    assert_eq!(json["labels"]["severity"], "warning");
    assert_eq!(json["description"], "p95 is 2500 ms");
    let slack_body: serde_json::Value = serde_json::from_str(&hooks[1].1).unwrap();
    assert_eq!(
        slack_body,
        serde_json::json!({"text": "1970-01-01T00:00:00Z FIRING latency-p95 severity=warning value=2500 p95 is 2500 ms"})
    );
}

#[tokio::test]
async fn webhook_retries_then_succeeds_or_gives_up() {
    let (base, seen) = server().await;
    hook(&base, "c/fail2", 3)
        .notify(&transition())
        .await
        .unwrap();
    let attempts = |key: &str| {
        seen.hooks
            .lock()
            .unwrap()
            .iter()
            .filter(|(k, _)| k == key)
            .count()
    };
    assert_eq!(attempts("c/fail2"), 3);

    let err = hook(&base, "d/fail9", 2)
        .notify(&transition())
        .await
        .unwrap_err();
    assert!(
        matches!(err, AlertError::NotifyFailed { attempts: 3, .. }),
        "{err}"
    );
    assert_eq!(attempts("d/fail9"), 3);

    // A 4xx is the receiver saying no: retrying would not help.
    let err = hook(&base, "e/bad", 5)
        .notify(&transition())
        .await
        .unwrap_err();
    assert!(
        matches!(err, AlertError::NotifyFailed { attempts: 1, .. }),
        "{err}"
    );
}

#[tokio::test]
async fn webhook_times_out_and_never_shows_its_path() {
    let (base, _) = server().await;
    let mut w = hook(&base, "sEcReT-token/slow", 0);
    w.timeout = Duration::from_millis(300);
    let err = w.notify(&transition()).await.unwrap_err().to_string();
    assert!(err.contains("within 300ms"), "{err}");
    assert!(!err.contains("sEcReT"), "{err}");
    assert!(!format!("{w:?}").contains("sEcReT"));
}

#[tokio::test]
async fn command_notifier_gets_json_and_environment() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let script = format!(
        "cat > {0}; echo \"$CUTOVER_ALERT_RULE $CUTOVER_ALERT_KIND $CUTOVER_ALERT_SEVERITY $CUTOVER_ALERT_VALUE\" >> {0}",
        out.display()
    );
    let n = CommandNotifier {
        argv: vec!["sh".into(), "-c".into(), script],
        timeout: Duration::from_secs(10),
    };
    n.notify(&transition()).await.unwrap();
    let text = std::fs::read_to_string(&out).unwrap();
    assert!(text.contains("\"rule\":\"latency-p95\""), "{text}");
    assert!(
        text.ends_with("latency-p95 firing warning 2500\n"),
        "{text}"
    );

    let failing = CommandNotifier {
        argv: vec!["sh".into(), "-c".into(), "echo nope >&2; exit 4".into()],
        timeout: Duration::from_secs(10),
    };
    let err = failing.notify(&transition()).await.unwrap_err().to_string();
    assert!(err.contains("nope"), "{err}");
    let hung = CommandNotifier {
        argv: vec!["sleep".into(), "30".into()],
        timeout: Duration::from_millis(300),
    };
    assert!(
        hung.notify(&transition())
            .await
            .unwrap_err()
            .to_string()
            .contains("did not finish")
    );
}

#[tokio::test]
async fn deliver_reaches_rule_and_shared_notifiers_and_reports_failures() {
    let (base, seen) = server().await;
    let entry: AlertRuleConfig = toml::from_str(&format!(
        "name = \"latency-p95\"\nsource = {{ command = [\"x\"] }}\nwarn = \"> 2000\"\nnotify = [{{ webhook = \"{base}/hook/rule/ok\" }}]\n"
    ))
    .unwrap();
    let shared = [alert_rules::AnyNotifier::Webhook(hook(
        &base,
        "shared/bad",
        0,
    ))];
    let mut t = transition();
    let failures = alert_rules::deliver(
        std::slice::from_ref(&t),
        std::slice::from_ref(&entry),
        &shared,
    )
    .await;
    assert_eq!(failures.len(), 1, "{failures:?}");
    let keys: Vec<String> = seen
        .hooks
        .lock()
        .unwrap()
        .iter()
        .map(|(k, _)| k.clone())
        .collect();
    assert!(
        keys.contains(&"rule/ok".to_owned()) && keys.contains(&"shared/bad".to_owned()),
        "{keys:?}"
    );
    // Pending is internal: nobody hears about it.
    t.kind = TransitionKind::Pending;
    let before = seen.hooks.lock().unwrap().len();
    assert!(
        alert_rules::deliver(&[t], &[entry], &shared)
            .await
            .is_empty()
    );
    assert_eq!(seen.hooks.lock().unwrap().len(), before);
}

#[tokio::test]
async fn line_notifier_writes_one_line_per_transition() {
    let n = alert_rules::LineNotifier::new(Vec::new());
    n.notify(&transition()).await.unwrap();
    let text = String::from_utf8(n.into_inner()).unwrap();
    assert_eq!(
        text,
        "1970-01-01T00:00:00Z FIRING latency-p95 severity=warning value=2500 p95 is 2500 ms\n"
    );
}
