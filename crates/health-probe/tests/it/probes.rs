//! The probes against small loopback servers made by the tests: every HTTP expectation passes and
//! fails, timeouts hold on a server that never answers, TLS trusts only what it should, and the
//! TCP and exec probes both pass and fail.

#![allow(clippy::print_stdout, clippy::print_stderr)] // What a test measured or why it waits: shown by nextest.
#![allow(clippy::unwrap_used)] // helpers outside #[test] functions unwrap too

use crate::common;

use std::time::{Duration, Instant};

use common::{Reply, Seen, TestPki, closed_port, serve, serve_silence, serve_tls};
use health_probe::{
    HeaderSource, HttpTarget, Outcome, PrepareOptions, PreparedProbe, Probe, ProbeConfig,
    ProbeResult, Resolver, SecretHeader, SecretRef, run_suite,
};

const DOC: &str = r#"{"status":"ok","state":"ready","count":3,"rate":0.25,"tools":[{"name":"a"}],"empty":[],"version":"4.3.0"}"#;

async fn prepare(config: ProbeConfig) -> PreparedProbe {
    config.prepare(&PrepareOptions::default()).await.unwrap()
}

async fn http(target: HttpTarget) -> ProbeResult {
    prepare(ProbeConfig::http("t", target)).await.check().await
}

fn get(addr: std::net::SocketAddr, path: &str) -> HttpTarget {
    HttpTarget::get(format!("http://{addr}{path}"))
}

#[tokio::test]
async fn every_json_assertion_kind_passes_and_fails_against_a_server() {
    let addr = serve(|_| Reply::json(200, DOC)).await;
    let cases = [
        (r#"/state == "ready""#, r#"/state == "starting""#),
        (r#"/state != "starting""#, r#"/state != "ready""#),
        (r#"/state in ["ready", "idle"]"#, r#"/state in ["idle"]"#),
        ("/count < 4", "/count < 3"),
        ("/count <= 3", "/count <= 2"),
        ("/rate > 0.2", "/rate > 0.25"),
        ("/rate >= 0.25", "/rate >= 0.3"),
        ("/version exists", "/missing exists"),
        ("/missing absent", "/state absent"),
        ("/tools nonempty", "/empty nonempty"),
        (r#"/version =~ "^4\\.3""#, r"/version =~ ^5"),
    ];
    for (pass, fail) in cases {
        let mut target = get(addr, "/");
        target.expect_json = vec![pass.parse().unwrap()];
        let ok = http(target.clone()).await;
        assert!(ok.is_ok(), "{pass}: {ok:?}");
        target.expect_json = vec![fail.parse().unwrap()];
        let bad = http(target).await;
        assert_eq!(bad.status, Outcome::Fail, "{fail}");
        assert!(
            bad.reason
                .starts_with(fail.split_whitespace().next().unwrap()),
            "{fail}: {}",
            bad.reason
        );
        assert_eq!(bad.status_code, Some(200));
    }
}

#[tokio::test]
async fn a_wrong_field_value_says_what_was_expected_and_found() {
    let addr = serve(|_| Reply::json(200, r#"{"status":"ok","state":"starting"}"#)).await;
    let mut target = get(addr, "/api/health");
    target.expect_json = vec![
        r#"/status == "ok""#.parse().unwrap(),
        r#"/state == "ready""#.parse().unwrap(),
    ];
    let result = http(target).await;
    assert_eq!(result.reason, r#"/state expected "ready", got "starting""#);
}

#[tokio::test]
async fn a_body_that_is_not_json_fails_json_assertions() {
    let addr = serve(|_| Reply::json(200, "<html>")).await;
    let mut target = get(addr, "/");
    target.expect_json = vec!["/a exists".parse().unwrap()];
    let result = http(target).await;
    assert!(
        result.reason.starts_with("body is not JSON"),
        "{}",
        result.reason
    );
}

#[tokio::test]
async fn a_500_is_a_failure_and_the_status_set_is_honoured() {
    let addr = serve(|seen| {
        Reply::json(
            seen.path.trim_start_matches('/').parse().unwrap_or(200),
            "{}",
        )
    })
    .await;
    let result = http(get(addr, "/500")).await;
    assert_eq!(result.status, Outcome::Fail);
    assert_eq!(result.reason, "status 500 (expected 2xx)");
    assert_eq!(result.status_code, Some(500));
    assert!(http(get(addr, "/204")).await.is_ok());

    let mut target = get(addr, "/404");
    target.expect_status = "404,5xx".parse().unwrap();
    assert!(http(target.clone()).await.is_ok());
    target.url = format!("http://{addr}/200");
    assert_eq!(http(target).await.reason, "status 200 (expected 404,5xx)");
}

#[tokio::test]
async fn body_regex_passes_and_fails() {
    let addr = serve(|_| Reply::json(200, DOC)).await;
    let mut target = get(addr, "/");
    target.body_regex = Some(r#""state":"ready""#.to_owned());
    assert!(http(target.clone()).await.is_ok());
    target.body_regex = Some("starting".to_owned());
    assert_eq!(http(target).await.reason, "body does not match /starting/");
}

#[tokio::test]
async fn latency_budget_passes_and_fails() {
    let addr = serve(|seen| {
        let reply = Reply::json(200, "{}");
        if seen.path == "/slow" {
            reply.delayed(Duration::from_millis(300))
        } else {
            reply
        }
    })
    .await;
    // The pass case's budget is generous: an immediate local answer can still take a while on
    // a loaded CI machine (4 test threads on 2 cores). The fail case is robust as it is: the
    // server really waits 300 ms against a 100 ms budget.
    let fast = prepare(
        ProbeConfig::http("t", get(addr, "/fast")).with_max_latency(Duration::from_secs(5)),
    )
    .await;
    assert!(fast.check().await.is_ok());
    let slow = prepare(
        ProbeConfig::http("t", get(addr, "/slow")).with_max_latency(Duration::from_millis(100)),
    )
    .await;
    let result = slow.check().await;
    assert!(
        result.reason.starts_with("over latency budget (")
            && result.reason.ends_with(" ms > 100 ms)"),
        "{}",
        result.reason
    );
}

#[tokio::test]
async fn phase_timings_are_ordered() {
    let addr = serve(|_| Reply::json(200, "{}").delayed(Duration::from_millis(50))).await;
    let result = http(get(addr, "/")).await;
    let t = result.timings_ms;
    let (connect, first_byte) = (t.connect_ms.unwrap(), t.first_byte_ms.unwrap());
    assert!(t.tls_ms.is_none());
    assert!(connect <= first_byte && first_byte <= t.total_ms, "{t:?}");
    assert!(
        first_byte >= 50.0,
        "the server's delay is before the first byte: {t:?}"
    );
}

#[tokio::test]
async fn a_server_that_never_answers_fails_within_the_timeout() {
    let addr = serve_silence().await;
    let timeout = Duration::from_millis(300);
    let probe = prepare(ProbeConfig::http("hang", get(addr, "/")).with_timeout(timeout)).await;
    let start = Instant::now();
    let result = probe.check().await;
    let elapsed = start.elapsed();
    assert_eq!(
        result.reason,
        "timed out after 300ms (waiting for the response)"
    );
    assert!(result.timings_ms.connect_ms.is_some() && result.timings_ms.first_byte_ms.is_none());
    // The goal is timeout + 50 ms; the assertion is generous so that a loaded machine does not
    // make the test flaky. The overshoot is printed for the report.
    eprintln!(
        "timeout overshoot: {:.1} ms",
        (elapsed.as_secs_f64() - timeout.as_secs_f64()) * 1000.0
    );
    assert!(
        elapsed >= timeout && elapsed < timeout + Duration::from_secs(5),
        "{elapsed:?}"
    );
}

#[tokio::test]
async fn connection_refused_is_named() {
    let addr = closed_port();
    let result = http(get(addr, "/")).await;
    assert_eq!(result.reason, format!("connection refused ({addr})"));
    assert!(result.status_code.is_none());
}

#[tokio::test]
async fn method_headers_body_and_secret_headers_are_sent() {
    let addr = serve(|seen: &Seen| {
        let ok = seen.method == "POST"
            && seen.body == r#"{"ping":1}"#
            && seen.header("x-plain") == Some("yes")
            && seen.header("authorization") == Some("Bearer t0k3n-v4lue");
        Reply::json(if ok { 200 } else { 400 }, "{}")
    })
    .await;
    let mut target = get(addr, "/mcp");
    target.method = "post".to_owned();
    target.body = Some(r#"{"ping":1}"#.to_owned());
    target
        .headers
        .push(("X-Plain".to_owned(), HeaderSource::Value("yes".to_owned())));
    target.headers.push((
        "Authorization".to_owned(),
        HeaderSource::Secret(SecretHeader {
            secret: SecretRef::parse("env:PROBE_IT_TOKEN").unwrap(),
            prefix: "Bearer ".into(),
        }),
    ));
    let options = PrepareOptions {
        resolver: Resolver::new().with_env("PROBE_IT_TOKEN", "t0k3n-v4lue"),
        ..Default::default()
    };
    let probe = ProbeConfig::http("auth", target)
        .prepare(&options)
        .await
        .unwrap();
    let result = probe.check().await;
    assert!(result.is_ok(), "{result:?}");
    let shown = format!("{probe:?} {}", serde_json::to_string(&result).unwrap());
    assert!(!shown.contains("t0k3n"), "{shown}");
}

#[tokio::test]
async fn redirects_are_judged_or_followed_and_credentials_stay_with_their_origin() {
    let other = serve(|seen: &Seen| {
        let leaked = seen.header("authorization").is_some();
        Reply::json(if leaked { 400 } else { 200 }, r#"{"state":"ready"}"#)
    })
    .await;
    let addr = serve(move |seen: &Seen| match seen.path.as_str() {
        "/old" => Reply::redirect(302, "/new"),
        "/new" => Reply::json(
            if seen.header("authorization").is_some() {
                200
            } else {
                401
            },
            r#"{"state":"ready"}"#,
        ),
        "/away" => Reply::redirect(307, &format!("http://{other}/x")),
        _ => Reply::redirect(301, "/loop"),
    })
    .await;
    let result = http(get(addr, "/old")).await;
    assert_eq!(
        result.reason,
        "status 302 (expected 2xx), redirect to /new not followed"
    );

    let options = PrepareOptions {
        resolver: Resolver::new().with_env("PROBE_REDIRECT_TOKEN", "r3d"),
        ..Default::default()
    };
    let mut target = get(addr, "/old");
    target.follow_redirects = 3;
    target.bearer_token = Some(SecretRef::parse("env:PROBE_REDIRECT_TOKEN").unwrap());
    target.expect_json = vec![r#"/state == "ready""#.parse().unwrap()];
    let same_origin = ProbeConfig::http("r", target.clone())
        .prepare(&options)
        .await
        .unwrap()
        .check()
        .await;
    assert!(
        same_origin.is_ok(),
        "the token is kept on the same origin: {same_origin:?}"
    );

    target.url = format!("http://{addr}/away");
    let cross = ProbeConfig::http("r", target.clone())
        .prepare(&options)
        .await
        .unwrap()
        .check()
        .await;
    assert!(
        cross.is_ok(),
        "the token is dropped for another origin: {cross:?}"
    );

    target.url = format!("http://{addr}/loop");
    let looping = ProbeConfig::http("r", target)
        .prepare(&options)
        .await
        .unwrap()
        .check()
        .await;
    assert_eq!(
        looping.reason,
        "status 301 (expected 2xx), redirect to /loop not followed"
    );
}

#[tokio::test]
async fn tls_with_a_private_ca_fails_without_it_and_passes_with_it() {
    let pki = TestPki::new();
    let addr = serve_tls(&pki, |_| Reply::json(200, r#"{"state":"ready"}"#)).await;
    let url = format!("https://{addr}/api/health");

    let untrusted = http(HttpTarget::get(&url)).await;
    assert_eq!(untrusted.status, Outcome::Fail);
    assert!(
        untrusted.reason.starts_with("certificate not trusted"),
        "{}",
        untrusted.reason
    );
    assert!(untrusted.timings_ms.connect_ms.is_some() && untrusted.timings_ms.tls_ms.is_none());

    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("ca.pem"), &pki.ca_pem).unwrap();
    let mut target = HttpTarget::get(&url);
    target.ca_file = Some("ca.pem".into());
    target.expect_json = vec![r#"/state == "ready""#.parse().unwrap()];
    let options = PrepareOptions {
        base_dir: Some(dir.path().to_path_buf()),
        ..Default::default()
    };
    let trusted = ProbeConfig::http("tls", target)
        .prepare(&options)
        .await
        .unwrap()
        .check()
        .await;
    assert!(trusted.is_ok(), "{trusted:?}");
    let t = trusted.timings_ms;
    assert!(
        t.connect_ms.unwrap() <= t.tls_ms.unwrap() && t.tls_ms.unwrap() <= t.first_byte_ms.unwrap()
    );

    let mut insecure = HttpTarget::get(&url);
    insecure.insecure = true;
    assert!(http(insecure).await.is_ok(), "insecure skips verification");
}

#[tokio::test]
async fn the_base_ca_is_trusted_only_by_probes_aimed_at_the_base_url() {
    let pki = TestPki::new();
    let addr = serve_tls(&pki, |_| Reply::json(200, "{}")).await;
    let other = TestPki::new();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("proxy-ca.pem"), &pki.ca_pem).unwrap();
    std::fs::write(dir.path().join("other-ca.pem"), &other.ca_pem).unwrap();
    let options = PrepareOptions {
        base_dir: Some(dir.path().to_path_buf()),
        base_url: Some(format!("https://{addr}")),
        base_ca_file: Some("proxy-ca.pem".into()),
        ..Default::default()
    };
    let check = |target: HttpTarget| {
        let options = options.clone();
        async move {
            ProbeConfig::http("t", target)
                .prepare(&options)
                .await
                .unwrap()
                .check()
                .await
        }
    };

    // A path goes to the base URL and trusts its CA.
    let relative = check(HttpTarget::get("/api/health")).await;
    assert!(relative.is_ok(), "{relative:?}");
    // An absolute URL to the same server does not: it is not aimed at the base.
    let absolute = check(HttpTarget::get(format!("https://{addr}/api/health"))).await;
    assert!(
        absolute.reason.starts_with("certificate not trusted"),
        "{}",
        absolute.reason
    );
    // A probe's own CA file wins over the base's.
    let mut own = HttpTarget::get("/api/health");
    own.ca_file = Some("other-ca.pem".into());
    let own = check(own).await;
    assert!(
        own.reason.starts_with("certificate not trusted"),
        "{}",
        own.reason
    );
}

#[tokio::test]
async fn a_certificate_for_another_name_is_refused_even_with_its_ca() {
    let pki = TestPki::for_names(&["localhost"]);
    let addr = serve_tls(&pki, |_| Reply::json(200, "{}")).await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("ca.pem"), &pki.ca_pem).unwrap();
    let mut target = HttpTarget::get(format!("https://{addr}/"));
    target.ca_file = Some(dir.path().join("ca.pem"));
    assert_eq!(
        http(target.clone()).await.reason,
        "certificate not valid for host 127.0.0.1"
    );
    target.url = format!("https://localhost:{}/", addr.port());
    assert!(http(target).await.is_ok());
}

#[tokio::test]
async fn a_missing_or_empty_ca_file_stops_preparation() {
    let mut target = HttpTarget::get("https://127.0.0.1:1/");
    target.ca_file = Some("/nonexistent/ca.pem".into());
    let err = ProbeConfig::http("tls", target.clone())
        .prepare(&PrepareOptions::default())
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("/nonexistent/ca.pem") && !err.is_config(),
        "{err}"
    );

    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("empty.pem"), "nothing here").unwrap();
    target.ca_file = Some(dir.path().join("empty.pem"));
    let err = ProbeConfig::http("tls", target)
        .prepare(&PrepareOptions::default())
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("holds no PEM certificate"),
        "{err}"
    );
}

#[tokio::test]
async fn tcp_probe_passes_and_fails() {
    let addr = serve_silence().await;
    let ok = prepare(ProbeConfig::tcp("tcp", addr.to_string()))
        .await
        .check()
        .await;
    assert!(
        ok.is_ok() && ok.reason.starts_with("connected to"),
        "{ok:?}"
    );
    let closed = closed_port();
    let bad = prepare(ProbeConfig::tcp("tcp", closed.to_string()))
        .await
        .check()
        .await;
    assert_eq!(bad.reason, format!("connection refused ({closed})"));
}

#[tokio::test]
async fn exec_probe_passes_fails_and_is_killed_on_timeout() {
    let argv = |args: &[&str]| args.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
    let ok = prepare(ProbeConfig::exec("exec", argv(&["true"])))
        .await
        .check()
        .await;
    assert!(ok.is_ok(), "{ok:?}");
    let bad = prepare(ProbeConfig::exec(
        "exec",
        argv(&["sh", "-c", "echo broken >&2; exit 3"]),
    ))
    .await
    .check()
    .await;
    assert_eq!(bad.reason, "`sh` exited with status 3: broken");
    let missing = prepare(ProbeConfig::exec("exec", argv(&["/nonexistent/tool"])))
        .await
        .check()
        .await;
    assert!(
        missing
            .reason
            .starts_with("cannot start `/nonexistent/tool`"),
        "{}",
        missing.reason
    );

    // A hung command, with a child of its own, is killed (group and all) at the timeout.
    let dir = tempfile::tempdir().unwrap();
    let pid_file = dir.path().join("child.pid");
    let script = format!("sleep 30 & echo $! > {}; wait", pid_file.display());
    let hung = prepare(
        ProbeConfig::exec("exec", argv(&["sh", "-c", &script]))
            .with_timeout(Duration::from_millis(300)),
    )
    .await;
    let start = Instant::now();
    let result = hung.check().await;
    assert_eq!(result.reason, "timed out after 300ms (command killed)");
    // Bounded by the timeout, not by `sleep 30` (generous for a loaded machine).
    assert!(start.elapsed() < Duration::from_secs(10));
    let pid: i32 = std::fs::read_to_string(&pid_file)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let gone = cutover_tests::wait_until(Duration::from_secs(5), || {
        std::fs::read_to_string(format!("/proc/{pid}/stat")).map_or(true, |s| s.contains(") Z "))
    });
    assert!(gone, "the command's child {pid} was killed with its group");
}

#[tokio::test]
async fn a_suite_runs_concurrently_and_reports_each_probe_in_order() {
    let addr = serve(|seen| {
        let reply = Reply::json(if seen.path == "/bad" { 503 } else { 200 }, "{}");
        reply.delayed(Duration::from_secs(1))
    })
    .await;
    let probes = vec![
        prepare(ProbeConfig::http("a", get(addr, "/a"))).await,
        prepare(ProbeConfig::http("bad", get(addr, "/bad"))).await,
        prepare(ProbeConfig::http("c", get(addr, "/c"))).await,
        prepare(ProbeConfig::tcp("d", addr.to_string())).await,
    ];
    let start = Instant::now();
    let report = run_suite(&probes).await;
    let elapsed = start.elapsed();
    assert_eq!(report.status, Outcome::Fail);
    let names: Vec<_> = report
        .probes
        .iter()
        .map(|p| (p.name.as_str(), p.status))
        .collect();
    assert_eq!(
        names,
        [
            ("a", Outcome::Ok),
            ("bad", Outcome::Fail),
            ("c", Outcome::Ok),
            ("d", Outcome::Ok)
        ]
    );
    assert_eq!(report.probes[1].reason, "status 503 (expected 2xx)");
    // One after another the three HTTP probes would take at least 3 s; at once, about 1 s.
    // The bound leaves 1.5 s for a loaded machine while still telling the two apart.
    assert!(
        elapsed < Duration::from_millis(2500),
        "three 1 s probes ran at once: {elapsed:?}"
    );
    assert!(probes.iter().all(|p| !p.name().is_empty()));
}
