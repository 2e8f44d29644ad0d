//! The HTTP/1.1 requests of the JSON and Prometheus sources and the webhook notifier: reqwest
//! with a hard timeout, a body limit, our own TLS roots, and messages that never show a URL's
//! path or query. One connection per request: these run every few seconds
//! at most, and a fresh connection never trips over a keep-alive socket the server closed.

use std::path::Path;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderName, HeaderValue, Method, Uri};

/// Bodies larger than this are refused: a metrics page or a stats document is far smaller.
pub(crate) const MAX_BODY_BYTES: usize = 8 * 1024 * 1024;

/// A response: status and body.
#[derive(Debug)]
pub(crate) struct Response {
    pub(crate) status: u16,
    pub(crate) body: Bytes,
}

/// Why a request failed; `target` is `scheme://host:port` (never the path, which may hold a
/// token).
#[derive(Debug)]
pub(crate) struct Failure {
    pub(crate) target: String,
    pub(crate) message: String,
}

/// What to send.
#[derive(Debug)]
pub(crate) struct Outgoing<'a> {
    pub(crate) method: Method,
    pub(crate) url: &'a str,
    pub(crate) headers: Vec<(HeaderName, HeaderValue)>,
    pub(crate) body: Option<Vec<u8>>,
    pub(crate) timeout: Duration,
    /// A PEM file of CA certificates trusted besides the built-in roots (and `SSL_CERT_FILE`).
    pub(crate) ca_file: Option<&'a Path>,
}

/// What a source URL written against the service's base URL starts with: `{url}/api/stats`.
pub(crate) const BASE_PLACEHOLDER: &str = "{url}";

/// Whether a source URL is written against the service's base URL: a path (`/api/stats`) or
/// `{url}/api/stats`. The caller joins it to the base ([`join_base`]) before sampling.
pub(crate) fn is_relative(url: &str) -> bool {
    url.starts_with('/') || url.starts_with(BASE_PLACEHOLDER)
}

/// `base` + the path of a relative source URL (`{url}/x` or `/x`); other URLs unchanged.
pub(crate) fn join_base(url: &str, base: &str) -> String {
    let rest = url.strip_prefix(BASE_PLACEHOLDER).unwrap_or(url);
    if is_relative(url) {
        format!("{}{rest}", base.trim_end_matches('/'))
    } else {
        url.to_owned()
    }
}

/// A relative URL for messages and listings: `{url}` (when written so) and the path, without
/// the query string.
fn relative_display(url: &str) -> String {
    let (prefix, rest) = match url.strip_prefix(BASE_PLACEHOLDER) {
        Some(rest) => (BASE_PLACEHOLDER, rest),
        None => ("", url),
    };
    let path = rest.split(['?', '#']).next().unwrap_or("");
    format!("{prefix}{path}")
}

/// `scheme://host:port` of a URL, for messages: the path and query stay out because webhook
/// URLs carry their secret there.
pub(crate) fn redacted_target(url: &str) -> String {
    if is_relative(url) {
        // Not yet joined to a base URL: there is no host to show.
        return "(base URL)".to_owned();
    }
    match url.parse::<Uri>() {
        Ok(uri) => {
            let scheme = uri.scheme_str().unwrap_or("http");
            let host = uri.host().unwrap_or("?");
            match uri.port_u16() {
                Some(port) => format!("{scheme}://{host}:{port}"),
                None => format!("{scheme}://{host}"),
            }
        }
        Err(_) => "(invalid URL)".to_owned(),
    }
}

/// `scheme://host:port/path` of a URL, for listings: the query string stays out because it
/// may carry a token.
pub(crate) fn display_url(url: &str) -> String {
    if is_relative(url) {
        return relative_display(url);
    }
    let path = url
        .parse::<Uri>()
        .map(|u| u.path().to_owned())
        .unwrap_or_default();
    format!("{}{path}", redacted_target(url))
}

/// Serialises a source URL the way listings show it ([`display_url`]).
pub(crate) fn serialize_url<S: serde::Serializer>(
    url: &str,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(&display_url(url))
}

/// Checks a source URL once, at configuration time: as [`check_url`], or written against the
/// service's base URL (`/api/stats`, `{url}/api/stats`).
pub(crate) fn check_source_url(url: &str) -> Result<(), String> {
    let Some(rest) = url
        .strip_prefix(BASE_PLACEHOLDER)
        .or(url.strip_prefix('/').map(|_| url))
    else {
        if !url.contains("://") {
            return Err(format!(
                "a source URL starts with http:// or https://, or is written against the service's base URL as /path or {BASE_PLACEHOLDER}/path"
            ));
        }
        return check_url(url);
    };
    if !(rest.is_empty() || rest.starts_with(['/', '?'])) {
        return Err(format!(
            "`{}` must go on with a path after {BASE_PLACEHOLDER} (\"{BASE_PLACEHOLDER}/api/stats\")",
            relative_display(url)
        ));
    }
    join_base(url, "http://base")
        .parse::<Uri>()
        .map(|_| ())
        .map_err(|e| format!("`{}` is not a URL path: {e}", relative_display(url)))
}

/// Checks a URL once, at configuration time: http or https, with a host.
pub(crate) fn check_url(url: &str) -> Result<(), String> {
    let uri: Uri = url
        .parse()
        .map_err(|e| format!("`{}` is not a URL: {e}", redacted_target(url)))?;
    match uri.scheme_str() {
        Some("http" | "https") => {}
        _ => {
            return Err(format!(
                "{} must start with http:// or https://",
                redacted_target(url)
            ));
        }
    }
    if uri.host().is_none_or(str::is_empty) {
        return Err("the URL has no host".to_owned());
    }
    Ok(())
}

/// Sends one request and reads the whole body, all within `timeout`.
pub(crate) async fn send(out: Outgoing<'_>) -> Result<Response, Failure> {
    let target = redacted_target(out.url);
    let fail = |message: String| Failure {
        target: target.clone(),
        message,
    };
    if is_relative(out.url) {
        return Err(fail(format!(
            "`{}` is relative: it needs the service's base URL (cutover-alerts --target, or a manifest describing the deployment)",
            relative_display(out.url)
        )));
    }
    let timeout = out.timeout;
    match tokio::time::timeout(timeout, send_inner(out)).await {
        Ok(Ok(response)) => Ok(response),
        Ok(Err(message)) => Err(fail(message)),
        Err(_) => Err(fail(format!(
            "no complete answer within {}",
            humantime::format_duration(timeout)
        ))),
    }
}

async fn send_inner(out: Outgoing<'_>) -> Result<Response, String> {
    let url = reqwest::Url::parse(out.url).map_err(|e| format!("invalid URL: {e}"))?;
    let https = match url.scheme() {
        "http" => false,
        "https" => true,
        _ => return Err("only http:// and https:// URLs are supported".to_owned()),
    };
    if url.host_str().is_none_or(str::is_empty) {
        return Err("the URL has no host".to_owned());
    }
    let mut builder = reqwest::Client::builder()
        .user_agent(concat!("cutover-alerts/", env!("CARGO_PKG_VERSION")))
        // One connection per request (see the module docs), and never a proxy from the
        // environment: these requests go where the manifest says.
        .pool_max_idle_per_host(0)
        .no_proxy()
        .http1_only()
        // Requests are small and latency matters more than packing.
        .tcp_nodelay(true);
    // Before connecting, so that an unreadable CA file is named as such.
    if https {
        builder = builder.use_preconfigured_tls(tls_config(out.ca_file)?.as_ref().clone());
    }
    let client = builder
        .build()
        .map_err(|e| format!("cannot build the client: {}", describe(e)))?;
    let mut request = client.request(out.method, url);
    for (name, value) in out.headers {
        request = request.header(name, value);
    }
    if let Some(body) = out.body {
        request = request.body(body);
    }
    let mut response = request.send().await.map_err(|e| {
        let stage = if e.is_connect() { "connect" } else { "request" };
        format!("{stage}: {}", describe(e))
    })?;
    let status = response.status().as_u16();
    let mut body = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|e| format!("reading the body: {}", describe(e)))?
    {
        if body.len() + chunk.len() > MAX_BODY_BYTES {
            return Err(format!(
                "reading the body: longer than {MAX_BODY_BYTES} bytes"
            ));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(Response {
        status,
        body: Bytes::from(body),
    })
}

/// A reqwest error for a message: its text and its sources', without the URL (whose path and
/// query may carry a token).
fn describe(error: reqwest::Error) -> String {
    let chain = host_util::error_chain(&error.without_url());
    // A refused certificate is named as a TLS failure: the layers between reqwest and rustls
    // (hyper-util's connector, io::Error) hide rustls' error type, but not its words.
    if chain.contains("peer certificate") || chain.contains("handshake") {
        let tail = chain
            .rfind("invalid peer certificate")
            .map_or(chain.as_str(), |at| &chain[at..]);
        return format!("TLS handshake failed: {tail}");
    }
    chain
}

/// The TLS client configuration: the Mozilla roots (webpki-roots), plus the PEM certificates
/// in `SSL_CERT_FILE` when that variable names a file (a private CA, as OpenSSL honours it),
/// plus those of `ca_file` (a deployment's own proxy certificate), which must be readable.
fn tls_config(ca_file: Option<&Path>) -> Result<Arc<rustls::ClientConfig>, String> {
    static CONFIG: OnceLock<Arc<rustls::ClientConfig>> = OnceLock::new();
    let Some(ca_file) = ca_file else {
        return Ok(CONFIG
            .get_or_init(|| Arc::new(build_tls(base_roots())))
            .clone());
    };
    // Built per request: sources are sampled every few seconds at most, and a CA file that a
    // new deploy replaced is then read afresh.
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(ca_file)
        .map_err(|e| format!("cannot read the CA file {}: {e}", ca_file.display()))?
        .filter_map(Result::ok)
        .collect();
    let mut roots = base_roots();
    let (added, _) = roots.add_parsable_certificates(certs);
    if added == 0 {
        return Err(format!(
            "the CA file {} holds no PEM certificate",
            ca_file.display()
        ));
    }
    Ok(Arc::new(build_tls(roots)))
}

fn base_roots() -> rustls::RootCertStore {
    let mut roots = rustls::RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    if let Some(file) = std::env::var_os("SSL_CERT_FILE") {
        add_pem_roots(&mut roots, Path::new(&file));
    }
    roots
}

fn build_tls(roots: rustls::RootCertStore) -> rustls::ClientConfig {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    match rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
    {
        Ok(builder) => builder.with_root_certificates(roots).with_no_client_auth(),
        // The ring provider supports the default versions; this arm keeps a library
        // path free of panics all the same.
        Err(_) => rustls::ClientConfig::builder()
            .with_root_certificates(roots)
            .with_no_client_auth(),
    }
}

fn add_pem_roots(roots: &mut rustls::RootCertStore, file: &Path) {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    match CertificateDer::pem_file_iter(file) {
        Ok(certs) => {
            let (added, ignored) = roots.add_parsable_certificates(certs.filter_map(Result::ok));
            tracing::debug!(file = %file.display(), added, ignored, "extra TLS roots from SSL_CERT_FILE");
        }
        Err(e) => {
            tracing::warn!(file = %file.display(), error = %e, "cannot read SSL_CERT_FILE; using the built-in roots")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_never_show_paths() {
        assert_eq!(
            redacted_target("https://hooks.slack.com/services/T0/B0/SECRET"),
            "https://hooks.slack.com"
        );
        assert_eq!(
            redacted_target("http://127.0.0.1:7000/api/stats?token=x"),
            "http://127.0.0.1:7000"
        );
        assert!(check_url("ftp://x/").is_err());
        assert!(check_url("http://127.0.0.1:1/").is_ok());
    }

    #[test]
    fn relative_source_urls_join_the_base_and_show_no_query() {
        for url in ["/api/stats", "{url}/api/stats?token=x", "{url}"] {
            assert!(check_source_url(url).is_ok(), "{url}");
            assert!(is_relative(url));
        }
        assert!(check_source_url("{url}api").is_err());
        assert!(check_source_url("api/stats").is_err());
        assert!(check_url("/api/stats").is_err(), "webhooks stay absolute");
        assert_eq!(
            join_base("{url}/api/stats", "https://127.0.0.1:8443/"),
            "https://127.0.0.1:8443/api/stats"
        );
        assert_eq!(join_base("/metrics", "http://h:1"), "http://h:1/metrics");
        assert_eq!(join_base("http://a/x", "http://h:1"), "http://a/x");
        assert_eq!(display_url("{url}/api/stats?token=x"), "{url}/api/stats");
        assert_eq!(display_url("/api/stats?token=x"), "/api/stats");
        assert_eq!(redacted_target("/api/stats"), "(base URL)");
    }

    #[tokio::test]
    async fn an_unjoined_url_or_an_unreadable_ca_file_fails_without_connecting() {
        let out = Outgoing {
            method: Method::GET,
            url: "/api/stats?token=sEcReT",
            headers: vec![],
            body: None,
            timeout: Duration::from_secs(5),
            ca_file: None,
        };
        let err = send(out).await.unwrap_err();
        assert!(err.message.contains("base URL"), "{}", err.message);
        assert!(!err.message.contains("sEcReT"), "{}", err.message);

        let out = Outgoing {
            method: Method::GET,
            url: "https://127.0.0.1:1/x",
            headers: vec![],
            body: None,
            timeout: Duration::from_secs(5),
            ca_file: Some(Path::new("/nonexistent/ca.pem")),
        };
        let err = send(out).await.unwrap_err();
        assert!(
            err.message.contains("/nonexistent/ca.pem"),
            "{}",
            err.message
        );
    }

    #[tokio::test]
    async fn refused_connection_and_silence_are_failures() {
        // A bound listener that never accepts: the connect succeeds (backlog) and nothing answers.
        let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/x", silent.local_addr().unwrap());
        let out = Outgoing {
            method: Method::GET,
            url: &url,
            headers: vec![],
            body: None,
            timeout: Duration::from_millis(300),
            ca_file: None,
        };
        let err = send(out).await.unwrap_err();
        assert!(err.message.contains("within"), "{}", err.message);

        let port = {
            std::net::TcpListener::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap()
                .port()
        };
        let url = format!("http://127.0.0.1:{port}/x");
        let out = Outgoing {
            method: Method::GET,
            url: &url,
            headers: vec![],
            body: None,
            timeout: Duration::from_secs(5),
            ca_file: None,
        };
        let err = send(out).await.unwrap_err();
        assert!(err.message.contains("connect"), "{}", err.message);
    }
}
