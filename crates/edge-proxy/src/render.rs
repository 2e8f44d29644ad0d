//! Rendering `[proxy]` into nginx configuration text: pure functions, no I/O.
//!
//! Three files come out: the main `nginx.conf`, the upstream include (the only file a switch
//! changes) and, when admin paths use a bearer token, a map include holding that token. The
//! main file never contains a secret, so it can be printed, diffed and snapshotted.
//!
//! Paths inside the main file are relative: logs, pid and temp paths to the nginx prefix
//! (`-p`), includes and certificates to the config directory. One rendered file therefore runs
//! under any prefix, which is what the private instance and `nginx -t` in a scratch directory
//! rely on.

use std::fmt::Write as _;
use std::net::SocketAddr;

use secret_refs::Secret;

use crate::EdgeError;
use crate::config::{LocationConfig, ProxyConfig, TlsConfig};
use crate::layout::{ADMIN_TOKEN_INCLUDE, ROUTE_INCLUDE, TEMP_PATHS, UPSTREAM_INCLUDE};
use crate::routes::{ROUTE_VARIABLE, Routes, UpstreamGroup};

/// The nginx variable every location proxies to (the routed upstream group's name).
pub const UPSTREAM_NAME: &str = ROUTE_VARIABLE;
/// The response header on the control listener naming the upstream that answered.
pub const UPSTREAM_HEADER: &str = "X-Cutover-Upstream";
/// The name of the JSON-lines `log_format` the edge reader measures.
pub const EDGE_LOG_FORMAT: &str = "cutover_edge";
/// The nginx variable each location sets to name itself in the edge log.
pub const LOCATION_VARIABLE: &str = "$cutover_location";

/// The fields of one edge log line, in the order nginx writes them. Numbers are bare; the
/// upstream fields are strings because nginx writes `-`, or a list (`"0.004, 0.010"`,
/// `"127.0.0.1:7001, 127.0.0.1:7002"`) when a request was retried on another server.
const EDGE_LOG_FIELDS: [(&str, &str); 11] = [
    ("time", "$msec"),
    ("status", "$status"),
    ("request_time", "$request_time"),
    ("upstream_response_time", "\"$upstream_response_time\""),
    ("upstream_addr", "\"$upstream_addr\""),
    ("upstream_status", "\"$upstream_status\""),
    ("method", "\"$request_method\""),
    ("location", "\"$cutover_location\""),
    ("bytes_sent", "$bytes_sent"),
    ("request_length", "$request_length"),
    ("connection", "$connection"),
];

/// What `render` shows in place of the admin token.
pub const TOKEN_PLACEHOLDER: &str =
    "<admin token from secret reference; written 0600, never printed>";

/// Choices that depend on how nginx is run rather than on the manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RenderOptions {
    /// `daemon on` (nginx forks, a pid file tells where it is) or `off` (under a supervisor).
    pub daemon: bool,
    /// `user USER [GROUP]` for workers when the master runs as root; `None` renders no `user`
    /// directive (right for an unprivileged master, where nginx ignores it anyway).
    pub worker_user: Option<String>,
}

impl Default for RenderOptions {
    fn default() -> Self {
        Self {
            daemon: true,
            worker_user: None,
        }
    }
}

/// The security headers every location sends, on every status (`always`).
const SECURITY_HEADERS: [(&str, &str); 4] = [
    ("X-Frame-Options", "DENY"),
    ("X-Content-Type-Options", "nosniff"),
    ("Referrer-Policy", "strict-origin-when-cross-origin"),
    (
        "Content-Security-Policy",
        "default-src 'none'; frame-ancestors 'none'",
    ),
];

/// Modern TLS 1.2 ciphers (forward secret AEAD only); TLS 1.3 suites are OpenSSL's defaults.
const TLS12_CIPHERS: &str = "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:\
ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:\
ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305";

/// Renders the main `nginx.conf` for `config`.
///
/// # Errors
/// [`EdgeError::InvalidConfig`] when the configuration does not validate.
#[tracing::instrument(skip_all, fields(server_name = %config.server_name))]
pub fn render_nginx_conf(
    config: &ProxyConfig,
    options: &RenderOptions,
) -> Result<String, EdgeError> {
    config.validate()?;
    let mut out = String::new();
    let w = &mut out;
    line(
        w,
        0,
        "# Rendered by cutover edge-proxy; edit cutover.toml [proxy], not this file.",
    );
    line(
        w,
        0,
        "# Paths are relative to the nginx prefix (-p); include and ssl_* paths to this",
    );
    line(
        w,
        0,
        "# file's directory. The upstream lives in upstream.conf, replaced by switches.",
    );
    match &options.worker_user {
        Some(user) => {
            line(
                w,
                0,
                "# The master runs as root: workers take this user, which owns the prefix",
            );
            line(w, 0, "# so that they can use the temp paths under it.");
            line(w, 0, &format!("user {user};"));
        }
        None => line(
            w,
            0,
            "# No `user`: the master is unprivileged and workers keep its user.",
        ),
    }
    let workers = config
        .worker_processes
        .map_or_else(|| "auto".to_owned(), |n| n.to_string());
    line(w, 0, &format!("worker_processes {workers};"));
    line(
        w,
        0,
        &format!("daemon {};", if options.daemon { "on" } else { "off" }),
    );
    line(w, 0, "pid logs/nginx.pid;");
    line(w, 0, "error_log logs/error.log warn;");
    line(
        w,
        0,
        "# Old workers finish in-flight requests on reload, but never longer than this",
    );
    line(
        w,
        0,
        "# (streaming connections would otherwise hold them for a day).",
    );
    line(
        w,
        0,
        &format!(
            "worker_shutdown_timeout {}s;",
            config.worker_shutdown_timeout.as_secs().max(1)
        ),
    );
    line(w, 0, "");
    line(w, 0, "events {");
    line(w, 1, "worker_connections 1024;");
    line(w, 0, "}");
    line(w, 0, "");
    line(w, 0, "http {");
    render_http_common(w, config);
    render_control_server(w, config);
    render_http_server(w, config);
    if let Some(tls) = &config.tls {
        render_https_server(w, config, tls);
    }
    line(w, 0, "}");
    Ok(out)
}

fn render_http_common(w: &mut String, config: &ProxyConfig) {
    line(w, 1, "default_type application/octet-stream;");
    line(w, 1, "server_tokens off;");
    line(w, 1, "sendfile on;");
    line(w, 1, "access_log logs/access.log;");
    line(
        w,
        1,
        "# JSON lines for measuring what users get (the edge reader): one line per request,",
    );
    line(
        w,
        1,
        "# written when it ends; 499 is a client that went away. Rotated by size (USR1).",
    );
    line(w, 1, &format!("log_format {EDGE_LOG_FORMAT} escape=json"));
    let last = EDGE_LOG_FIELDS.len() - 1;
    for (i, (name, value)) in EDGE_LOG_FIELDS.iter().enumerate() {
        let open = if i == 0 { "{" } else { "" };
        let close = if i == last { "}';" } else { ",'" };
        line(w, 2, &format!("'{open}\"{name}\":{value}{close}"));
    }
    line(
        w,
        1,
        &format!(
            "access_log logs/{} {EDGE_LOG_FORMAT};",
            crate::layout::EDGE_LOG
        ),
    );
    for (directive, path) in TEMP_PATHS {
        line(w, 1, &format!("{directive} {path};"));
    }
    line(
        w,
        1,
        &format!("client_max_body_size {};", config.client_max_body_size),
    );
    line(w, 1, "keepalive_timeout 65s;");
    line(w, 0, "");
    line(
        w,
        1,
        "# Rate limits per location and client address; beyond the burst: 429.",
    );
    line(w, 1, "limit_req_status 429;");
    line(w, 1, "limit_req_log_level warn;");
    for (i, loc) in config.locations.iter().enumerate() {
        if let Some(limit) = &loc.rate_limit {
            line(
                w,
                1,
                &format!(
                    "limit_req_zone $binary_remote_addr zone={}:10m rate={};",
                    zone_name(i, loc),
                    limit.rate
                ),
            );
        }
    }
    if config.admin.as_ref().is_some_and(|a| a.token.is_some()) {
        line(w, 0, "");
        line(
            w,
            1,
            "# Admin bearer token: the map's entries live in a 0600 include, never here.",
        );
        line(w, 1, "map $http_authorization $cutover_admin_authorized {");
        line(w, 2, "default 0;");
        line(w, 2, &format!("include {ADMIN_TOKEN_INCLUDE};"));
        line(w, 1, "}");
    }
    line(w, 0, "");
    line(
        w,
        1,
        "# The live upstream, with keepalive; replaced atomically by a switch.",
    );
    line(w, 1, &format!("include {UPSTREAM_INCLUDE};"));
    line(w, 0, "");
    line(w, 1, "proxy_http_version 1.1;");
    line(w, 1, "proxy_set_header Connection \"\";");
    line(w, 1, "proxy_set_header Host $host;");
    line(w, 1, "proxy_set_header X-Real-IP $remote_addr;");
    line(
        w,
        1,
        "proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;",
    );
    line(w, 1, "proxy_set_header X-Forwarded-Proto $scheme;");
    line(w, 1, "proxy_hide_header X-Powered-By;");
    line(w, 1, "proxy_connect_timeout 5s;");
    line(
        w,
        1,
        "# A stale keep-alive connection to the upstream is retried on a fresh one;",
    );
    line(
        w,
        1,
        "# non-idempotent requests are never retried once sent (nginx's default).",
    );
    line(w, 1, "proxy_next_upstream error timeout;");
    line(w, 1, "proxy_next_upstream_tries 3;");
    line(w, 1, "proxy_next_upstream_timeout 10s;");
    line(w, 0, "");
}

fn render_control_server(w: &mut String, config: &ProxyConfig) {
    line(
        w,
        1,
        "# Control listener (loopback only): confirms which upstream serves.",
    );
    line(w, 1, "server {");
    line(w, 2, &format!("listen {};", config.control_listen));
    line(w, 2, "server_name _;");
    line(w, 2, &format!("include {ROUTE_INCLUDE};"));
    line(w, 2, "access_log off;");
    line(w, 2, "allow 127.0.0.1;");
    line(w, 2, "allow ::1;");
    line(w, 2, "deny all;");
    line(w, 2, &format!("location = {} {{", config.health_path));
    line(w, 3, &format!("proxy_pass http://{ROUTE_VARIABLE};"));
    line(
        w,
        3,
        &format!("add_header {UPSTREAM_HEADER} $upstream_addr always;"),
    );
    headers(w, 3, None);
    line(w, 2, "}");
    line(w, 2, "location / {");
    line(w, 3, "return 404;");
    headers(w, 3, None);
    line(w, 2, "}");
    line(w, 1, "}");
    line(w, 0, "");
}

fn render_http_server(w: &mut String, config: &ProxyConfig) {
    if config.listen_http.is_empty() {
        return;
    }
    line(w, 1, "server {");
    for addr in &config.listen_http {
        line(w, 2, &format!("listen {addr};"));
    }
    line(w, 2, &format!("server_name {};", config.server_name));
    line(
        w,
        2,
        "# Which upstream group serves: a marker file, read per request (no reload).",
    );
    line(w, 2, &format!("include {ROUTE_INCLUDE};"));
    line(
        w,
        2,
        "# Requests that match no location below are logged under this name.",
    );
    tag(w, 2, "-");
    line(w, 2, "location ^~ /.well-known/acme-challenge/ {");
    tag(w, 3, "acme");
    line(w, 3, "root acme;");
    line(w, 3, "default_type text/plain;");
    headers(w, 3, None);
    line(w, 2, "}");
    match &config.tls {
        Some(tls) => {
            let port = tls.listen.first().map_or(443, SocketAddr::port);
            let target = if port == 443 {
                "https://$host$request_uri".to_owned()
            } else {
                format!("https://$host:{port}$request_uri")
            };
            line(w, 2, "location / {");
            tag(w, 3, "redirect");
            line(w, 3, &format!("return 301 {target};"));
            headers(w, 3, None);
            line(w, 2, "}");
        }
        None => render_app_locations(w, config, None),
    }
    line(w, 1, "}");
    line(w, 0, "");
}

fn render_https_server(w: &mut String, config: &ProxyConfig, tls: &TlsConfig) {
    line(w, 1, "server {");
    for addr in &tls.listen {
        line(w, 2, &format!("listen {addr} ssl http2;"));
    }
    line(w, 2, &format!("server_name {};", config.server_name));
    line(w, 2, &format!("include {ROUTE_INCLUDE};"));
    tag(w, 2, "-");
    line(
        w,
        2,
        &format!("ssl_certificate {};", tls.cert_path().display()),
    );
    line(
        w,
        2,
        &format!("ssl_certificate_key {};", tls.key_path().display()),
    );
    line(w, 2, "ssl_protocols TLSv1.2 TLSv1.3;");
    line(w, 2, &format!("ssl_ciphers {TLS12_CIPHERS};"));
    line(w, 2, "ssl_prefer_server_ciphers off;");
    line(w, 2, "ssl_session_cache shared:cutover_tls:10m;");
    line(w, 2, "ssl_session_timeout 1d;");
    line(w, 2, "ssl_session_tickets off;");
    if config.resolver.is_empty() {
        line(
            w,
            2,
            "# OCSP stapling is off: it needs [proxy] resolver to reach the responder.",
        );
    } else {
        line(w, 2, "ssl_stapling on;");
        if let Some(trusted) = &tls.trusted_certificate {
            line(w, 2, "ssl_stapling_verify on;");
            line(
                w,
                2,
                &format!("ssl_trusted_certificate {};", trusted.display()),
            );
        }
        line(
            w,
            2,
            &format!("resolver {} valid=300s;", config.resolver.join(" ")),
        );
        line(w, 2, "resolver_timeout 5s;");
    }
    let hsts = format!("max-age={}; includeSubDomains", tls.hsts_max_age.as_secs());
    render_app_locations(w, config, Some(&hsts));
    line(w, 1, "}");
    line(w, 0, "");
}

/// The service's locations, identical over HTTP and HTTPS apart from HSTS.
fn render_app_locations(w: &mut String, config: &ProxyConfig, hsts: Option<&str>) {
    let proxy = format!("proxy_pass http://{ROUTE_VARIABLE};");
    line(w, 2, "# Health: never rate limited, never access-logged.");
    line(w, 2, &format!("location = {} {{", config.health_path));
    line(w, 3, "access_log off;");
    line(w, 3, &proxy);
    headers(w, 3, hsts);
    line(w, 2, "}");
    if !config.locations.iter().any(|l| l.path == "/") {
        line(w, 2, "location / {");
        tag(w, 3, "/");
        line(w, 3, &proxy);
        headers(w, 3, hsts);
        line(w, 2, "}");
    }
    for (i, loc) in config.locations.iter().enumerate() {
        line(w, 2, &format!("location {} {{", loc.path));
        tag(w, 3, &loc.path);
        if loc.rate_limit.is_some() {
            // nginx refuses `burst=0`; no burst is written as none.
            let burst = match loc.rate_limit.as_ref().map_or(0, |l| l.burst) {
                0 => String::new(),
                n => format!(" burst={n}"),
            };
            line(
                w,
                3,
                &format!("limit_req zone={}{burst} nodelay;", zone_name(i, loc)),
            );
        }
        if loc.streaming {
            line(
                w,
                3,
                "# Streaming (SSE, chunked): pass bytes through as they come.",
            );
            line(w, 3, "proxy_buffering off;");
            line(w, 3, "proxy_request_buffering off;");
            line(w, 3, "proxy_cache off;");
            line(w, 3, "gzip off;");
        }
        if loc.sessions {
            line(
                w,
                3,
                "# Session routes: a session the live release does not know (404) may belong to",
            );
            line(
                w,
                3,
                "# the standby until its streams are closed: try it (nginx's backup server).",
            );
            line(
                w,
                3,
                "proxy_next_upstream error timeout http_404 non_idempotent;",
            );
        }
        let timeout = loc
            .read_timeout
            .map(|d| d.as_secs())
            .unwrap_or(if loc.streaming { 24 * 3600 } else { 60 });
        if loc.streaming || loc.read_timeout.is_some() {
            line(w, 3, &format!("proxy_read_timeout {timeout}s;"));
            line(w, 3, &format!("proxy_send_timeout {timeout}s;"));
        }
        line(w, 3, &proxy);
        headers(w, 3, hsts);
        line(w, 2, "}");
    }
    if let Some(admin) = &config.admin {
        for path in &admin.paths {
            line(w, 2, &format!("location {path} {{"));
            line(w, 3, "# Admin: never published open.");
            tag(w, 3, path);
            for addr in &admin.allow {
                line(w, 3, &format!("allow {addr};"));
            }
            if !admin.allow.is_empty() {
                line(w, 3, "deny all;");
            }
            if admin.token.is_some() {
                line(w, 3, "if ($cutover_admin_authorized = 0) {");
                line(w, 4, "return 401;");
                line(w, 3, "}");
            }
            line(w, 3, &proxy);
            headers(w, 3, hsts);
            line(w, 2, "}");
        }
    }
    line(w, 2, "# Dotfiles and configuration files are never served.");
    line(w, 2, "location ~ /\\. {");
    tag(w, 3, "deny-dotfiles");
    line(w, 3, "deny all;");
    headers(w, 3, hsts);
    line(w, 2, "}");
    line(
        w,
        2,
        "location ~* \\.(json|ya?ml|toml|ini|env|conf|bak|sql)$ {",
    );
    tag(w, 3, "deny-config");
    line(w, 3, "deny all;");
    headers(w, 3, hsts);
    line(w, 2, "}");
}

/// `set $cutover_location`: the name the edge log gives requests this location served.
fn tag(w: &mut String, depth: usize, name: &str) {
    line(w, depth, &format!("set {LOCATION_VARIABLE} \"{name}\";"));
}

/// `add_header` in a location replaces every inherited one, so each location carries them all.
fn headers(w: &mut String, depth: usize, hsts: Option<&str>) {
    if let Some(hsts) = hsts {
        line(
            w,
            depth,
            &format!("add_header Strict-Transport-Security \"{hsts}\" always;"),
        );
    }
    for (name, value) in SECURITY_HEADERS {
        line(w, depth, &format!("add_header {name} \"{value}\" always;"));
    }
}

fn zone_name(index: usize, loc: &LocationConfig) -> String {
    let slug: String = loc
        .path
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    format!("rl{index}{}", slug.trim_end_matches('_'))
}

fn line(w: &mut String, depth: usize, text: &str) {
    if text.is_empty() {
        w.push('\n');
        return;
    }
    let _ = writeln!(w, "{:indent$}{text}", "", indent = depth * 4);
}

/// Renders the upstream include for `upstream`.
pub fn render_upstream(upstream: SocketAddr) -> String {
    render_upstream_with_backup(upstream, None)
}

/// Renders the upstream include with a `backup` server: the warm standby, which nginx sends
/// requests to only while the live upstream fails (a crash, a restart), so users get answers
/// instead of 502s while the supervisor brings the live release back. One group, the default;
/// see [`Routes`] for the include with every group a switch may route to.
pub fn render_upstream_with_backup(upstream: SocketAddr, backup: Option<SocketAddr>) -> String {
    Routes::with_default(UpstreamGroup::new(upstream, backup), &[]).render_upstreams()
}

/// Reads the default upstream address back out of an upstream include.
pub fn parse_upstream(text: &str) -> Option<SocketAddr> {
    Routes::parse(text).default_group().map(|g| g.upstream)
}

/// Renders the admin-token map include: the only place the token value is written.
///
/// The entry is a case-sensitive regular expression (`map` compares plain strings ignoring
/// case, which would weaken the token); the scheme word itself is matched case-insensitively.
///
/// # Errors
/// [`EdgeError::Token`] when the value is not an RFC 6750 token (`A-Z a-z 0-9 - . _ ~ + /`,
/// then `=` padding) of at least 16 characters; such a value could not be written safely.
pub fn render_admin_token_map(reference: &str, token: &Secret) -> Result<Secret, EdgeError> {
    let value = token.expose_secret();
    let body = value.trim_end_matches('=');
    let valid = value.len() >= 16
        && !body.is_empty()
        && body
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_' | '~' | '+' | '/'));
    if !valid {
        return Err(EdgeError::Token {
            reference: reference.to_owned(),
            reason: "not a bearer token of 16 or more characters from A-Z a-z 0-9 - . _ ~ + / ="
                .to_owned(),
        });
    }
    let mut pattern = String::with_capacity(value.len() * 3);
    for c in value.chars() {
        // `.` and `+` are the token characters with a meaning in a regular expression.
        match c {
            '.' | '+' => {
                pattern.push('[');
                pattern.push(c);
                pattern.push(']');
            }
            _ => pattern.push(c),
        }
    }
    Ok(Secret::new(format!(
        "# Managed by cutover; holds a secret (mode 0600).\n\"~^(?i:bearer) {pattern}$\" 1;\n"
    )))
}

/// What `render` prints for the admin-token map.
pub fn admin_token_map_placeholder() -> String {
    format!("\"~^(?i:bearer) {TOKEN_PLACEHOLDER}$\" 1;\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upstream_round_trips() {
        for addr in ["127.0.0.1:7000", "[::1]:7001"] {
            let addr: SocketAddr = addr.parse().unwrap();
            assert_eq!(parse_upstream(&render_upstream(addr)), Some(addr));
            let standby: SocketAddr = "127.0.0.1:7999".parse().unwrap();
            let both = render_upstream_with_backup(addr, Some(standby));
            assert!(
                both.contains(&format!("server {standby} backup;")),
                "{both}"
            );
            assert_eq!(
                parse_upstream(&both),
                Some(addr),
                "the live one is read back"
            );
            assert!(!render_upstream_with_backup(addr, Some(addr)).contains("backup;"));
        }
        assert_eq!(parse_upstream("upstream x {}"), None);
    }

    #[test]
    fn token_map_escapes_and_refuses() {
        let map = render_admin_token_map("env:T", &Secret::new("abc.def+ghi/jkl_mno=")).unwrap();
        assert!(map.expose_secret().contains("abc[.]def[+]ghi/jkl_mno="));
        for bad in [
            "short",
            "has space in the middle",
            "quote\"quote\"quote\"",
            "dollar$dollar$dollar",
        ] {
            let err = render_admin_token_map("env:T", &Secret::new(bad)).unwrap_err();
            assert!(
                !err.to_string().contains(bad),
                "the error must not show the value"
            );
        }
    }

    #[test]
    fn zone_names_are_distinct_and_plain() {
        let cfg = crate::config::default_locations();
        assert_eq!(zone_name(0, &cfg[0]), "rl0_api");
        assert_eq!(zone_name(1, &cfg[1]), "rl1_api_tools");
    }
}
