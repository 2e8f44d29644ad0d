//! Rendered configurations: insta snapshots of the default and a full-featured one, and
//! `nginx -t` on both through a private prefix (the real nginx, no network needed).

use crate::common;

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;

use edge_proxy::{
    EdgeError, Layout, NginxInstance, ProxyConfig, RenderOptions, render_nginx_conf,
    render_upstream,
};
use secret_refs::Secret;

const DEFAULT: &str = r#"
kind = "nginx"
listen_http = ["127.0.0.1:8080"]
control_listen = "127.0.0.1:8081"
upstream = "127.0.0.1:7000"
"#;

const FULL: &str = r#"
kind = "nginx"
strategy = "blue-green"
server_name = "hub.example.com"
listen_http = ["127.0.0.1:8080", "[::1]:8080"]
control_listen = "127.0.0.1:8081"
upstream = "127.0.0.1:7000"
resolver = ["127.0.0.53"]
client_max_body_size = "4m"
worker_processes = 2
switch_timeout = "20s"

[tls]
listen = ["127.0.0.1:8443"]
self_signed = true
trusted_certificate = "tls/cert.pem"
hsts_max_age = "180days"

[[locations]]
path = "/api/"
rate_limit = { rate = "10r/s", burst = 20 }

[[locations]]
path = "/api/tools"
rate_limit = { rate = "300r/m", burst = 10 }

[[locations]]
path = "/mcp"
streaming = true

[[locations]]
path = "/api/events"
streaming = true
read_timeout = "1h"

[admin]
paths = ["/api/servers", "/api/restart"]
token = "env:CUTOVER_TEST_ADMIN_TOKEN"
allow = ["127.0.0.1", "10.0.0.0/8"]
"#;

fn parse(text: &str) -> ProxyConfig {
    toml::from_str(text).expect("the test configuration parses")
}

#[test]
fn default_config_snapshot() {
    let conf = render_nginx_conf(&parse(DEFAULT), &RenderOptions::default()).unwrap();
    insta::assert_snapshot!("default_nginx_conf", conf);
    insta::assert_snapshot!(
        "upstream_conf",
        render_upstream("127.0.0.1:7000".parse().unwrap())
    );
}

#[test]
fn full_config_snapshot() {
    let options = RenderOptions {
        daemon: false,
        worker_user: Some("www-data www-data".to_owned()),
    };
    let conf = render_nginx_conf(&parse(FULL), &options).unwrap();
    insta::assert_snapshot!("full_nginx_conf", conf);
}

#[test]
fn every_location_carries_the_security_headers() {
    // A textual check over the rendered file: each `location` block has all the headers
    // (nginx drops inherited add_header once a block sets its own).
    let conf = render_nginx_conf(&parse(FULL), &RenderOptions::default()).unwrap();
    let mut blocks = 0;
    for block in conf.split("\n        location ").skip(1) {
        let body = block.split("\n        }").next().unwrap();
        blocks += 1;
        for header in [
            "X-Frame-Options",
            "X-Content-Type-Options",
            "Referrer-Policy",
        ] {
            assert!(body.contains(header), "{header} missing in location {body}");
        }
    }
    assert_eq!(blocks, 14, "every location was inspected");
}

#[test]
fn stapling_only_with_a_resolver() {
    let mut config = parse(FULL);
    let with = render_nginx_conf(&config, &RenderOptions::default()).unwrap();
    assert!(with.contains("ssl_stapling on;") && with.contains("resolver 127.0.0.53"));
    config.resolver.clear();
    let without = render_nginx_conf(&config, &RenderOptions::default()).unwrap();
    assert!(!without.contains("ssl_stapling on;") && !without.contains("resolver_timeout"));
}

async fn nginx_t(
    config: ProxyConfig,
    token: Option<&Secret>,
) -> (Result<(), EdgeError>, PathBuf, tempfile::TempDir) {
    let dir = cutover_tests::temp_dir();
    let instance = NginxInstance::new(common::nginx(), Layout::new(dir.path()), config);
    instance
        .write_config(None, token)
        .expect("the files are written");
    let result = instance.check().await;
    (result, dir.path().to_path_buf(), dir)
}

#[tokio::test]
async fn default_config_passes_nginx_t() {
    let (result, _, _dir) = nginx_t(parse(DEFAULT), None).await;
    result.expect("nginx -t accepts the default configuration");
}

#[tokio::test]
async fn full_config_passes_nginx_t_and_keeps_the_token_out_of_nginx_conf() {
    let token = Secret::new("s3cr3t-admin-token-value.v1");
    let (result, prefix, _dir) = nginx_t(parse(FULL), Some(&token)).await;
    result.expect("nginx -t accepts the full configuration");
    let conf = std::fs::read_to_string(prefix.join("conf/nginx.conf")).unwrap();
    assert!(
        !conf.contains("s3cr3t"),
        "the token must never be in nginx.conf"
    );
    let map = prefix.join("conf/admin-token.map");
    assert!(
        std::fs::read_to_string(&map)
            .unwrap()
            .contains("s3cr3t-admin-token-value[.]v1")
    );
    assert_eq!(
        std::fs::metadata(&map).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let error_log = std::fs::read_to_string(prefix.join("logs/error.log")).unwrap_or_default();
    assert!(
        !error_log.contains("s3cr3t"),
        "the token must never reach a log"
    );
}

#[tokio::test]
async fn missing_certificates_fail_the_check_naming_the_file() {
    let mut config = parse(FULL);
    config.admin = None;
    let tls = config.tls.as_mut().unwrap();
    tls.self_signed = false;
    tls.cert = Some("/nonexistent/cutover/cert.pem".into());
    tls.key = Some("/nonexistent/cutover/key.pem".into());
    tls.trusted_certificate = None;
    let (result, _, _dir) = nginx_t(config, None).await;
    let err = result.expect_err("nginx -t must refuse a missing certificate");
    assert!(
        err.to_string().contains("/nonexistent/cutover/cert.pem"),
        "{err}"
    );
}

#[tokio::test]
async fn a_configured_token_must_be_resolved_before_writing() {
    let dir = cutover_tests::temp_dir();
    let instance = NginxInstance::new(common::nginx(), Layout::new(dir.path()), parse(FULL));
    let err = instance.write_config(None, None).unwrap_err();
    assert!(matches!(err, EdgeError::Token { .. }), "{err}");
    assert!(
        err.to_string().contains("env:CUTOVER_TEST_ADMIN_TOKEN"),
        "{err}"
    );
}
