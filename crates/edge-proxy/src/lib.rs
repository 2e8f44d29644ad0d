//! nginx in front of a service: configuration rendering, validation, a private instance, and
//! upstream switches without a reload that are confirmed before they count.
//!
//! The replaced nginx configuration would not load until certificates existed, enabled OCSP
//! stapling without a resolver, lost its security headers in one location, pointed SSE at paths
//! the service does not use and published admin endpoints without authentication. This crate
//! renders from cutover.toml's `[proxy]` table ([`ProxyConfig`], owned here) a configuration
//! that avoids each of those, and drives nginx so that traffic moves between releases without
//! a failed request.
//!
//! # Parts
//! - [`render_nginx_conf`]: HTTP → HTTPS redirect with an ACME challenge location; TLS 1.2/1.3
//!   only with modern ciphers and a session cache; OCSP stapling only when `resolver` is set;
//!   HSTS and security headers in **every** location (nginx's `add_header` is not inherited
//!   once a location sets its own); a rate-limit zone per location (429 beyond the burst); the
//!   upstream in a separate include ([`render_upstream`]) with keepalive; streaming locations
//!   with buffering off and a long read timeout; a health location exempt from rate limits and
//!   access logs; dotfiles and config extensions denied; a body size limit; admin paths behind
//!   a bearer token (compared by an nginx `map`, the token in a 0600 include written by
//!   [`render_admin_token_map`], never in the main file) and/or an address allow-list; a
//!   loopback control listener that names the upstream that answered.
//! - [`write_self_signed`]: a self-signed pair (rcgen) for staging and tests.
//! - [`Nginx`]: the binary (`PATH`, then /usr/sbin): `-t`, start, `-s reload`, `-s quit`, each
//!   with `-p PREFIX -c CONF -e ERROR_LOG` and a timeout.
//! - [`NginxInstance`]: a private instance under one directory ([`Layout`]): pid, logs and
//!   every temp path under the prefix, identified by pid plus start time.
//! - The edge log: every proxied request as one JSON line in `logs/access.json`
//!   (`log_format cutover_edge`: time, status, request and upstream times, the upstream that
//!   served it, method, the matched location from `$cutover_location`, bytes sent), beside the
//!   plain access log; [`rotate_access_logs`] rotates both by size and has nginx reopen them.
//!   The `edge-signals` crate reads it.
//! - [`TrafficSwitch`] and [`NginxSwitch`]: the upstream include holds every group a switch
//!   may need and every location proxies to `$cutover_route`, which a marker file under
//!   `conf/route/` picks per request; a switch checks the new upstream directly, moves the
//!   marker and confirms through nginx's control listener, with no reload (so no keep-alive
//!   connection or stream is closed); on failure the previous marker is put back. Only a group
//!   nginx does not know yet is added with `nginx -t` and a graceful reload. `FakeSwitch`
//!   (feature `test-util`) for tests of code that drives a switch.
//!
//! # Example
//! ```
//! use edge_proxy::{ProxyConfig, RenderOptions, render_nginx_conf, render_upstream};
//!
//! let config: ProxyConfig = toml::from_str(r#"
//!     kind = "nginx"
//!     server_name = "hub.example.com"
//!     listen_http = ["127.0.0.1:8080"]
//!     control_listen = "127.0.0.1:8081"
//!     [tls]
//!     listen = ["127.0.0.1:8443"]
//!     self_signed = true
//!     [[locations]]
//!     path = "/mcp"
//!     streaming = true
//! "#)?;
//! let conf = render_nginx_conf(&config, &RenderOptions::default())?;
//! assert!(conf.contains("ssl_protocols TLSv1.2 TLSv1.3;"));
//! assert!(conf.contains("proxy_buffering off;"));
//! assert!(!conf.contains("ssl_stapling on"), "no resolver, no stapling");
//! assert!(render_upstream("127.0.0.1:7000".parse()?).contains("server 127.0.0.1:7000"));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! Starting and switching need nginx; see `tests/nginx.rs` and the `cutover-edge` binary.
//!
//! # Features
//! - `test-util`: `FakeSwitch`, a recording [`TrafficSwitch`] for tests of code that drives one.

mod config;
mod error;
#[cfg(any(test, feature = "test-util"))]
mod fake;
mod fsutil;
mod http;
mod instance;
mod layout;
mod nginx;
mod render;
mod rotate;
mod routes;
mod switch;
mod tls;

pub use config::{
    AdminConfig, DEFAULT_ACCESS_LOG_MAX_BYTES, LocationConfig, ProxyConfig, ProxyKind, RateLimit,
    Strategy, TlsConfig, default_locations,
};
pub use error::EdgeError;
#[cfg(any(test, feature = "test-util"))]
pub use fake::FakeSwitch;
pub use instance::{DEFAULT_START_TIMEOUT, InstanceState, NginxInstance, stop_instance};
pub use layout::Layout;
pub use nginx::{DEFAULT_COMMAND_TIMEOUT, Nginx};
pub use render::{
    EDGE_LOG_FORMAT, LOCATION_VARIABLE, RenderOptions, TOKEN_PLACEHOLDER, UPSTREAM_HEADER,
    UPSTREAM_NAME, admin_token_map_placeholder, parse_upstream, render_admin_token_map,
    render_nginx_conf, render_upstream, render_upstream_with_backup,
};
pub use rotate::{RotateWhen, RotationReport, rotate_access_logs};
pub use routes::{
    ROUTE_VARIABLE, Routes, StickyKey, UpstreamGroup, WeightedSplit, clear_markers_except,
    set_marker, set_split_marker,
};
pub use switch::{NginxSwitch, SwitchReport, SwitchTarget, TrafficSwitch};
pub use tls::{self_signed_names, write_self_signed};
