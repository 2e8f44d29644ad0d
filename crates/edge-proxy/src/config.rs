//! The `[proxy]` table of cutover.toml: what the proxy in front of the service looks like.
//!
//! This crate owns the type; the deploy pipeline's manifest composes it. Every field that ends
//! up inside the nginx configuration is validated before rendering, so a path or name can never
//! inject a directive (`;`, `{`, quotes and variables are refused).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use secret_refs::SecretRef;
use serde::{Deserialize, Serialize};

use crate::EdgeError;

/// `[proxy]`: the reverse proxy in front of the service.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ProxyConfig {
    /// Which proxy: `"none"` (the service is reached directly) or `"nginx"`.
    pub kind: ProxyKind,
    /// How traffic moves between releases; only `"blue-green"` exists.
    #[serde(default)]
    pub strategy: Strategy,
    /// nginx `server_name` (default `_`, any name).
    #[serde(default = "default_server_name")]
    pub server_name: String,
    /// Plain-HTTP listen addresses. With TLS they only redirect to HTTPS (and answer ACME
    /// challenges); without TLS they serve the service.
    #[serde(default)]
    pub listen_http: Vec<SocketAddr>,
    /// A loopback-only listener that answers the health path with an `X-Cutover-Upstream`
    /// header naming the upstream that served it; switching confirms through it.
    pub control_listen: SocketAddr,
    /// The upstream traffic goes to when the proxy is first set up.
    #[serde(default)]
    pub upstream: Option<SocketAddr>,
    /// TLS termination; absent means plain HTTP only.
    #[serde(default)]
    pub tls: Option<TlsConfig>,
    /// DNS resolvers for OCSP stapling; stapling is enabled only when this is set.
    #[serde(default)]
    pub resolver: Vec<String>,
    /// The service's health path: exempt from rate limits and access logs, probed on switch.
    #[serde(default = "default_health_path")]
    pub health_path: String,
    /// JSON pointer into the health answer that names the running release (demo service:
    /// `/version`).
    #[serde(default = "default_release_field")]
    pub release_field: String,
    /// nginx `client_max_body_size`, such as `10m`.
    #[serde(default = "default_body_limit")]
    pub client_max_body_size: String,
    /// Proxied locations besides `/` and the health path (default: `/api/` at 10 r/s burst 20 and
    /// `/api/tools` at 5 r/s burst 10, as the replaced configuration had).
    #[serde(default = "default_locations")]
    pub locations: Vec<LocationConfig>,
    /// Admin paths and how they are protected.
    #[serde(default)]
    pub admin: Option<AdminConfig>,
    /// The user nginx workers run as when the master runs as root. Unset: the owner of the
    /// proxy directory (so that workers can use the temp paths under it).
    #[serde(default)]
    pub user: Option<String>,
    /// nginx `worker_processes` (default `auto`).
    #[serde(default)]
    pub worker_processes: Option<u16>,
    /// The directory nginx runs in (its prefix: config, logs, pid file, temp paths); in a
    /// manifest, relative to the manifest's directory.
    #[serde(default)]
    pub dir: Option<PathBuf>,
    /// How long a switch waits for nginx to show the new upstream serving.
    #[serde(default = "default_switch_timeout", with = "humantime_serde")]
    #[schemars(with = "String")]
    pub switch_timeout: Duration,
    /// The size past which the access logs (`logs/access.json`, the JSON lines the edge reader
    /// measures, and the plain `logs/access.log`) are rotated: renamed to `*.1` and reopened by
    /// nginx (`USR1`). Checked by `cutover-edge rotate` and by the edge reader's owner
    /// (`cutover-edge metrics --listen`). Default 64 MiB; an integer or a size such as
    /// `"64MiB"`.
    #[serde(
        default = "default_access_log_max_bytes",
        deserialize_with = "host_util::size::serde::bytes"
    )]
    #[schemars(schema_with = "host_util::size::serde::schema")]
    pub access_log_max_bytes: u64,
    /// nginx `worker_shutdown_timeout`: how long old workers may keep connections open after
    /// a reload. Streams are ended by the old release itself within `[deploy] drain`, so this
    /// is a last resort, kept longer than the drain (default 60 s).
    #[serde(default = "default_worker_shutdown_timeout", with = "humantime_serde")]
    #[schemars(with = "String")]
    pub worker_shutdown_timeout: Duration,
}

/// `[proxy].kind`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum ProxyKind {
    /// No proxy: the deploy pipeline restarts the service in place.
    None,
    /// nginx, rendered and driven by this crate.
    Nginx,
}

/// `[proxy].strategy`.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "kebab-case")]
pub enum Strategy {
    /// Start the new release beside the old one, switch the upstream, drain the old one.
    #[default]
    BlueGreen,
}

/// `[proxy.tls]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// HTTPS listen addresses.
    pub listen: Vec<SocketAddr>,
    /// Certificate chain (PEM). In a manifest, a relative path is relative to the manifest's
    /// directory (see [`ProxyConfig::resolve_paths`]); a path still relative when rendered is
    /// relative to the nginx directory. Default with `self_signed`: `tls/cert.pem` under the
    /// nginx directory.
    #[serde(default)]
    pub cert: Option<PathBuf>,
    /// Private key (PEM); relative paths as for `cert`. Default with `self_signed`:
    /// `tls/key.pem` under the nginx directory.
    #[serde(default)]
    pub key: Option<PathBuf>,
    /// Generate a self-signed certificate for the server name and loopback (staging, tests).
    #[serde(default)]
    pub self_signed: bool,
    /// CA chain used to verify OCSP responses (`ssl_stapling_verify` only when set); relative
    /// paths as for `cert`.
    #[serde(default)]
    pub trusted_certificate: Option<PathBuf>,
    /// `Strict-Transport-Security` max-age (default one year).
    #[serde(default = "default_hsts", with = "humantime_serde")]
    #[schemars(with = "String")]
    pub hsts_max_age: Duration,
}

impl TlsConfig {
    /// The certificate path as rendered (the self-signed default when unset).
    pub fn cert_path(&self) -> PathBuf {
        self.cert
            .clone()
            .unwrap_or_else(|| PathBuf::from(crate::layout::SELF_SIGNED_CERT))
    }

    /// The key path as rendered (the self-signed default when unset).
    pub fn key_path(&self) -> PathBuf {
        self.key
            .clone()
            .unwrap_or_else(|| PathBuf::from(crate::layout::SELF_SIGNED_KEY))
    }
}

/// One `[[proxy.locations]]` entry: a prefix location proxied to the upstream.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LocationConfig {
    /// URI prefix, such as `/api/`.
    pub path: String,
    /// Per-client-address rate limit answered with 429 beyond the burst.
    #[serde(default)]
    pub rate_limit: Option<RateLimit>,
    /// A streaming (SSE, chunked MCP) location: buffering off, long read timeout.
    #[serde(default)]
    pub streaming: bool,
    /// `proxy_read_timeout` (default 60 s, 24 h for streaming locations).
    #[serde(default, with = "humantime_serde")]
    #[schemars(with = "Option<String>")]
    pub read_timeout: Option<Duration>,
    /// Requests that belong to a session held by one process (MCP's `POST
    /// /messages?sessionId=`): a `404` from the live release is retried on the warm standby
    /// (nginx's backup server), which still owns the sessions of its streams until it has
    /// closed them. Default false.
    #[serde(default)]
    pub sessions: bool,
}

/// A rate limit: `rate` like `10r/s` or `600r/m`, `burst` extra requests served at once.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RateLimit {
    /// Sustained rate, `Nr/s` or `Nr/m`.
    pub rate: String,
    /// Requests above the rate admitted without delay before 429s start.
    #[serde(default)]
    pub burst: u32,
}

/// `[proxy.admin]`: paths that change the service, never published without protection.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AdminConfig {
    /// URI prefixes of the admin endpoints.
    pub paths: Vec<String>,
    /// A bearer token (a secret reference, never a value) the client must send.
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub token: Option<SecretRef>,
    /// Client addresses or CIDR ranges allowed; everyone else gets 403.
    #[serde(default)]
    pub allow: Vec<String>,
}

fn default_server_name() -> String {
    "_".to_owned()
}
fn default_health_path() -> String {
    "/api/health".to_owned()
}
fn default_release_field() -> String {
    "/version".to_owned()
}
fn default_body_limit() -> String {
    "10m".to_owned()
}
fn default_worker_shutdown_timeout() -> Duration {
    Duration::from_secs(60)
}
fn default_switch_timeout() -> Duration {
    Duration::from_secs(15)
}
/// 64 MiB: about 200,000 requests of the edge log, many minutes at a busy service's rate, so a
/// one-minute window rarely spans a rotation and the disk never fills with logs.
pub const DEFAULT_ACCESS_LOG_MAX_BYTES: u64 = 64 * 1024 * 1024;

fn default_access_log_max_bytes() -> u64 {
    DEFAULT_ACCESS_LOG_MAX_BYTES
}
fn default_hsts() -> Duration {
    Duration::from_secs(365 * 24 * 3600)
}

/// The locations of the replaced configuration, pointed at paths the service really serves.
pub fn default_locations() -> Vec<LocationConfig> {
    vec![
        LocationConfig {
            path: "/api/".to_owned(),
            rate_limit: Some(RateLimit {
                rate: "10r/s".to_owned(),
                burst: 20,
            }),
            streaming: false,
            read_timeout: None,
            sessions: false,
        },
        LocationConfig {
            path: "/api/tools".to_owned(),
            rate_limit: Some(RateLimit {
                rate: "5r/s".to_owned(),
                burst: 10,
            }),
            streaming: false,
            read_timeout: None,
            sessions: false,
        },
    ]
}

impl ProxyConfig {
    /// Makes the relative paths of the table absolute against `base`, the directory of the
    /// manifest they were written in (pass an absolute directory): `dir`, `tls.cert`,
    /// `tls.key` and `tls.trusted_certificate`. Without this, nginx would read a relative
    /// certificate path against its own directory, not where the operator wrote it.
    pub fn resolve_paths(&mut self, base: &Path) {
        let resolve = |path: &mut Option<PathBuf>| {
            if let Some(p) = path.as_mut()
                && p.is_relative()
            {
                *p = base.join(&*p);
            }
        };
        resolve(&mut self.dir);
        if let Some(tls) = self.tls.as_mut() {
            resolve(&mut tls.cert);
            resolve(&mut tls.key);
            resolve(&mut tls.trusted_certificate);
        }
    }

    /// A minimal nginx configuration: plain HTTP on `listen_http`, the default locations.
    pub fn minimal(listen_http: SocketAddr, control_listen: SocketAddr) -> Self {
        Self {
            kind: ProxyKind::Nginx,
            strategy: Strategy::BlueGreen,
            server_name: default_server_name(),
            listen_http: vec![listen_http],
            control_listen,
            upstream: None,
            tls: None,
            resolver: Vec::new(),
            health_path: default_health_path(),
            release_field: default_release_field(),
            client_max_body_size: default_body_limit(),
            locations: default_locations(),
            admin: None,
            user: None,
            worker_processes: None,
            dir: None,
            switch_timeout: default_switch_timeout(),
            access_log_max_bytes: default_access_log_max_bytes(),
            worker_shutdown_timeout: default_worker_shutdown_timeout(),
        }
    }

    /// Checks every value that reaches the nginx configuration.
    ///
    /// # Errors
    /// [`EdgeError::InvalidConfig`] naming the key and why.
    pub fn validate(&self) -> Result<(), EdgeError> {
        let invalid = |key: &str, reason: String| EdgeError::InvalidConfig {
            key: format!("proxy.{key}"),
            reason,
        };
        if self.kind == ProxyKind::None {
            return Err(invalid(
                "kind",
                "kind is \"none\": there is no proxy to render".to_owned(),
            ));
        }
        if self.listen_http.is_empty() && self.tls.is_none() {
            return Err(invalid(
                "listen_http",
                "no listener: set listen_http or [proxy.tls] listen".to_owned(),
            ));
        }
        if !self.control_listen.ip().is_loopback() {
            return Err(invalid(
                "control_listen",
                format!("{} is not a loopback address", self.control_listen),
            ));
        }
        check_word("server_name", &self.server_name, |c| {
            c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | '*' | ' ')
        })?;
        check_uri("health_path", &self.health_path)?;
        if !self.release_field.is_empty() && !self.release_field.starts_with('/') {
            return Err(invalid(
                "release_field",
                "a JSON pointer starts with '/'".to_owned(),
            ));
        }
        check_size("client_max_body_size", &self.client_max_body_size)?;
        if self.worker_shutdown_timeout < Duration::from_secs(1) {
            return Err(invalid(
                "worker_shutdown_timeout",
                "at least 1s: old workers must get time to finish what they serve".to_owned(),
            ));
        }
        if self.access_log_max_bytes < 4096 {
            return Err(invalid(
                "access_log_max_bytes",
                format!(
                    "{} bytes would rotate after a few requests; use at least 4096 (default {})",
                    self.access_log_max_bytes, DEFAULT_ACCESS_LOG_MAX_BYTES
                ),
            ));
        }
        for (i, resolver) in self.resolver.iter().enumerate() {
            check_word(&format!("resolver[{i}]"), resolver, |c| {
                c.is_ascii_alphanumeric() || matches!(c, '.' | ':' | '[' | ']' | '-')
            })?;
        }
        if let Some(user) = &self.user {
            check_word("user", user, |c| {
                c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ' ')
            })?;
        }
        if let Some(tls) = &self.tls {
            if tls.listen.is_empty() {
                return Err(invalid("tls.listen", "no HTTPS listen address".to_owned()));
            }
            if !tls.self_signed && (tls.cert.is_none() || tls.key.is_none()) {
                return Err(invalid(
                    "tls.cert",
                    "cert and key are required unless self_signed = true".to_owned(),
                ));
            }
            for (key, path) in [
                ("tls.cert", Some(tls.cert_path())),
                ("tls.key", Some(tls.key_path())),
                ("tls.trusted_certificate", tls.trusted_certificate.clone()),
            ] {
                if let Some(path) = path {
                    check_path(key, &path)?;
                }
            }
        }
        let mut seen = std::collections::BTreeSet::new();
        for (i, loc) in self.locations.iter().enumerate() {
            let key = format!("locations[{i}].path");
            check_uri(&key, &loc.path)?;
            if loc.path == self.health_path {
                return Err(invalid(
                    &key,
                    "the health path has its own location".to_owned(),
                ));
            }
            if !seen.insert(loc.path.as_str()) {
                return Err(invalid(&key, format!("{} appears twice", loc.path)));
            }
            if let Some(limit) = &loc.rate_limit {
                check_rate(&format!("locations[{i}].rate_limit.rate"), &limit.rate)?;
            }
        }
        if let Some(admin) = &self.admin {
            if admin.paths.is_empty() {
                return Err(invalid("admin.paths", "no admin path listed".to_owned()));
            }
            if admin.token.is_none() && admin.allow.is_empty() {
                return Err(invalid(
                    "admin",
                    "admin paths need a token or an allow list; they are never published open"
                        .to_owned(),
                ));
            }
            for (i, path) in admin.paths.iter().enumerate() {
                let key = format!("admin.paths[{i}]");
                check_uri(&key, path)?;
                if !seen.insert(path.as_str()) || *path == self.health_path {
                    return Err(invalid(&key, format!("{path} is also another location")));
                }
            }
            for (i, addr) in admin.allow.iter().enumerate() {
                check_word(&format!("admin.allow[{i}]"), addr, |c| {
                    c.is_ascii_hexdigit() || matches!(c, '.' | ':' | '/')
                })?;
            }
        }
        Ok(())
    }
}

fn check_word(key: &str, value: &str, ok: impl Fn(char) -> bool) -> Result<(), EdgeError> {
    if value.is_empty() || !value.chars().all(ok) {
        return Err(EdgeError::InvalidConfig {
            key: format!("proxy.{key}"),
            reason: format!("{value:?} has characters nginx would misread"),
        });
    }
    Ok(())
}

fn check_uri(key: &str, value: &str) -> Result<(), EdgeError> {
    if !value.starts_with('/') {
        return Err(EdgeError::InvalidConfig {
            key: format!("proxy.{key}"),
            reason: format!("{value:?} must start with '/'"),
        });
    }
    check_word(key, value, |c| {
        c.is_ascii_alphanumeric() || matches!(c, '/' | '-' | '_' | '.' | '~' | '%' | '@' | ':')
    })
}

fn check_path(key: &str, path: &std::path::Path) -> Result<(), EdgeError> {
    let text = path.to_str().unwrap_or("\u{0}");
    check_word(key, text, |c| {
        c.is_ascii_alphanumeric() || matches!(c, '/' | '-' | '_' | '.' | '+' | '@' | ':')
    })
}

fn check_size(key: &str, value: &str) -> Result<(), EdgeError> {
    let digits = value.trim_end_matches(['k', 'K', 'm', 'M', 'g', 'G']);
    if digits.is_empty()
        || !digits.chars().all(|c| c.is_ascii_digit())
        || value.len() - digits.len() > 1
    {
        return Err(EdgeError::InvalidConfig {
            key: format!("proxy.{key}"),
            reason: format!("{value:?} is not a size like 10m"),
        });
    }
    Ok(())
}

/// Parses `Nr/s` or `Nr/m` into (N, per-second?).
pub(crate) fn check_rate(key: &str, value: &str) -> Result<(), EdgeError> {
    let ok = value
        .strip_suffix("r/s")
        .or_else(|| value.strip_suffix("r/m"))
        .is_some_and(|n| !n.is_empty() && n.chars().all(|c| c.is_ascii_digit()) && n != "0");
    if !ok {
        return Err(EdgeError::InvalidConfig {
            key: format!("proxy.{key}"),
            reason: format!("{value:?} is not a rate like 10r/s or 600r/m"),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_paths_resolve_against_the_manifest_directory_and_absolute_ones_stay() {
        let mut config: ProxyConfig = toml::from_str(
            r#"
            kind = "nginx"
            listen_http = ["127.0.0.1:8080"]
            control_listen = "127.0.0.1:8081"
            dir = "run/nginx"
            [tls]
            listen = ["127.0.0.1:8443"]
            cert = "certs/cert.pem"
            key = "/etc/ssl/private/key.pem"
            trusted_certificate = "../ca.pem"
        "#,
        )
        .unwrap();
        config.resolve_paths(Path::new("/srv/hub"));
        assert_eq!(config.dir, Some(PathBuf::from("/srv/hub/run/nginx")));
        let tls = config.tls.unwrap();
        assert_eq!(tls.cert, Some(PathBuf::from("/srv/hub/certs/cert.pem")));
        assert_eq!(tls.key, Some(PathBuf::from("/etc/ssl/private/key.pem")));
        assert_eq!(
            tls.trusted_certificate,
            Some(PathBuf::from("/srv/hub/../ca.pem"))
        );
        // The self-signed default stays relative: it lives under the nginx directory.
        let mut plain = ProxyConfig::minimal(
            "127.0.0.1:8080".parse().unwrap(),
            "127.0.0.1:8081".parse().unwrap(),
        );
        plain.tls = Some(TlsConfig {
            listen: vec!["127.0.0.1:8443".parse().unwrap()],
            cert: None,
            key: None,
            self_signed: true,
            trusted_certificate: None,
            hsts_max_age: Duration::from_secs(1),
        });
        plain.resolve_paths(Path::new("/srv/hub"));
        assert_eq!(
            plain.tls.unwrap().cert_path(),
            PathBuf::from(crate::layout::SELF_SIGNED_CERT)
        );
    }

    fn base() -> ProxyConfig {
        ProxyConfig::minimal(
            "127.0.0.1:8080".parse().unwrap(),
            "127.0.0.1:8081".parse().unwrap(),
        )
    }

    #[test]
    fn minimal_config_is_valid() {
        base().validate().unwrap();
    }

    #[test]
    fn invalid_values_are_refused_with_their_key() {
        type Mutation = Box<dyn Fn(&mut ProxyConfig)>;
        let cases: Vec<(&str, Mutation)> = vec![
            ("proxy.kind", Box::new(|c| c.kind = ProxyKind::None)),
            (
                "proxy.server_name",
                Box::new(|c| c.server_name = "a; include /etc/passwd".into()),
            ),
            (
                "proxy.health_path",
                Box::new(|c| c.health_path = "api".into()),
            ),
            (
                "proxy.locations[0].path",
                Box::new(|c| c.locations[0].path = "/x{".into()),
            ),
            (
                "proxy.locations[1].rate_limit.rate",
                Box::new(|c| c.locations[1].rate_limit.as_mut().unwrap().rate = "10/s".into()),
            ),
            (
                "proxy.client_max_body_size",
                Box::new(|c| c.client_max_body_size = "10mb".into()),
            ),
            (
                "proxy.control_listen",
                Box::new(|c| c.control_listen = "0.0.0.0:9".parse().unwrap()),
            ),
            (
                "proxy.admin",
                Box::new(|c| {
                    c.admin = Some(AdminConfig {
                        paths: vec!["/api/servers".into()],
                        token: None,
                        allow: vec![],
                    })
                }),
            ),
            (
                "proxy.tls.cert",
                Box::new(|c| {
                    c.tls = Some(TlsConfig {
                        listen: vec!["127.0.0.1:8443".parse().unwrap()],
                        cert: None,
                        key: None,
                        self_signed: false,
                        trusted_certificate: None,
                        hsts_max_age: default_hsts(),
                    })
                }),
            ),
        ];
        for (key, mutate) in cases {
            let mut config = base();
            mutate(&mut config);
            match config.validate() {
                Err(EdgeError::InvalidConfig { key: got, .. }) => assert_eq!(got, key),
                other => panic!("{key}: expected an invalid-config error, got {other:?}"),
            }
        }
    }

    #[test]
    fn rates_parse() {
        for ok in ["1r/s", "10r/s", "600r/m"] {
            check_rate("r", ok).unwrap();
        }
        for bad in ["0r/s", "r/s", "10", "10r/h", "-1r/s", "1.5r/s"] {
            assert!(check_rate("r", bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn deserialises_from_toml_with_unknown_keys_refused() {
        let text = r#"
            kind = "nginx"
            listen_http = ["127.0.0.1:8080"]
            control_listen = "127.0.0.1:8081"
            switch_timeout = "5s"
            [tls]
            listen = ["127.0.0.1:8443"]
            self_signed = true
            [[locations]]
            path = "/mcp"
            streaming = true
        "#;
        let config: ProxyConfig = toml::from_str(text).unwrap();
        config.validate().unwrap();
        assert_eq!(config.switch_timeout, Duration::from_secs(5));
        assert!(config.locations[0].streaming);
        let bad = format!("{text}\nlisten_htttp = []");
        assert!(toml::from_str::<ProxyConfig>(&bad).is_err());
    }
}
