//! Where a proxy instance keeps its files, all under one prefix directory.
//!
//! ```text
//! PREFIX/conf/nginx.conf          the rendered configuration
//! PREFIX/conf/upstream.conf       the live upstream (replaced atomically by a switch)
//! PREFIX/conf/upstream.conf.prev  the one before, put back when a switch fails
//! PREFIX/conf/admin-token.map     the admin bearer token (0600; only when configured)
//! PREFIX/conf/tls/{cert,key}.pem  the self-signed pair, when asked for
//! PREFIX/logs/{nginx.pid,error.log,access.log}
//! PREFIX/logs/access.json          JSON lines for measuring (the edge reader); *.1 once rotated
//! PREFIX/temp/{client_body,proxy,fastcgi,uwsgi,scgi}
//! PREFIX/acme/                    ACME http-01 challenge files
//! PREFIX/cutover-edge.json        what a later `switch`/`down` needs to know
//! ```

use std::path::{Path, PathBuf};

/// The self-signed certificate, relative to the config directory.
pub(crate) const SELF_SIGNED_CERT: &str = "tls/cert.pem";
/// The self-signed key, relative to the config directory.
pub(crate) const SELF_SIGNED_KEY: &str = "tls/key.pem";
/// The upstream include, relative to the config directory.
pub(crate) const UPSTREAM_INCLUDE: &str = "upstream.conf";
/// The route include (which upstream group serves), relative to the config directory.
pub(crate) const ROUTE_INCLUDE: &str = "route.conf";
/// The admin-token map include, relative to the config directory.
pub(crate) const ADMIN_TOKEN_INCLUDE: &str = "admin-token.map";
/// The edge log, relative to the logs directory.
pub(crate) const EDGE_LOG: &str = "access.json";
/// The temp paths nginx may use, relative to the prefix.
pub(crate) const TEMP_PATHS: [(&str, &str); 5] = [
    ("client_body_temp_path", "temp/client_body"),
    ("proxy_temp_path", "temp/proxy"),
    ("fastcgi_temp_path", "temp/fastcgi"),
    ("uwsgi_temp_path", "temp/uwsgi"),
    ("scgi_temp_path", "temp/scgi"),
];

/// The files of one nginx instance under its prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    prefix: PathBuf,
}

impl Layout {
    /// The layout under `prefix` (made absolute against the current directory when relative).
    pub fn new(prefix: impl AsRef<Path>) -> Self {
        let prefix = prefix.as_ref();
        let prefix = if prefix.is_absolute() {
            prefix.to_path_buf()
        } else {
            std::env::current_dir()
                .map(|d| d.join(prefix))
                .unwrap_or_else(|_| prefix.to_path_buf())
        };
        Self { prefix }
    }
    /// The prefix (`nginx -p`).
    pub fn prefix(&self) -> &Path {
        &self.prefix
    }
    /// The config directory.
    pub fn conf_dir(&self) -> PathBuf {
        self.prefix.join("conf")
    }
    /// `conf/nginx.conf` (`nginx -c`).
    pub fn conf_file(&self) -> PathBuf {
        self.conf_dir().join("nginx.conf")
    }
    /// The live upstream include.
    pub fn upstream_file(&self) -> PathBuf {
        self.conf_dir().join(UPSTREAM_INCLUDE)
    }
    /// The route include, read by every server block.
    pub fn route_file(&self) -> PathBuf {
        self.conf_dir().join(ROUTE_INCLUDE)
    }
    /// The directory of the route marker: the file named after the routed group.
    pub fn route_dir(&self) -> PathBuf {
        self.conf_dir().join("route")
    }
    /// The previous route include.
    pub fn previous_route_file(&self) -> PathBuf {
        self.conf_dir().join("route.conf.prev")
    }
    /// The previous upstream include.
    pub fn previous_upstream_file(&self) -> PathBuf {
        self.conf_dir().join("upstream.conf.prev")
    }
    /// The admin token map (0600).
    pub fn admin_token_file(&self) -> PathBuf {
        self.conf_dir().join(ADMIN_TOKEN_INCLUDE)
    }
    /// The logs directory.
    pub fn logs_dir(&self) -> PathBuf {
        self.prefix.join("logs")
    }
    /// The pid file nginx writes.
    pub fn pid_file(&self) -> PathBuf {
        self.logs_dir().join("nginx.pid")
    }
    /// The error log (`nginx -e` too).
    pub fn error_log(&self) -> PathBuf {
        self.logs_dir().join("error.log")
    }
    /// The access log.
    pub fn access_log(&self) -> PathBuf {
        self.logs_dir().join("access.log")
    }
    /// The rotated plain access log (`access.log.1`).
    pub fn rotated_access_log(&self) -> PathBuf {
        self.logs_dir().join("access.log.1")
    }
    /// The JSON-lines access log made for measuring (`log_format cutover_edge`).
    pub fn edge_log(&self) -> PathBuf {
        self.logs_dir().join(EDGE_LOG)
    }
    /// The rotated edge log (`access.json.1`), read for the part of a window before a rotation.
    pub fn rotated_edge_log(&self) -> PathBuf {
        self.logs_dir().join(format!("{EDGE_LOG}.1"))
    }
    /// The state file `cutover-edge` keeps beside the instance.
    pub fn state_file(&self) -> PathBuf {
        self.prefix.join("cutover-edge.json")
    }
    /// Resolves a path from the config the way nginx does for `ssl_certificate` and `include`.
    pub fn conf_relative(&self, path: &Path) -> PathBuf {
        if path.is_absolute() {
            path.to_path_buf()
        } else {
            self.conf_dir().join(path)
        }
    }
    /// Every directory nginx expects to exist before it starts.
    pub fn directories(&self) -> Vec<PathBuf> {
        let mut dirs = vec![
            self.prefix.clone(),
            self.conf_dir(),
            self.conf_dir().join("tls"),
            self.route_dir(),
            self.logs_dir(),
            self.prefix.join("temp"),
            self.prefix.join("acme"),
        ];
        dirs.extend(TEMP_PATHS.iter().map(|(_, p)| self.prefix.join(p)));
        dirs
    }
}
