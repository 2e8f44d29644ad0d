//! The HTTP(S) probe. It connects the TCP stream itself, runs the TLS handshake itself and hands
//! the stream to hyper's HTTP/1 connection, so that each phase (connect, TLS, first byte, total)
//! is timed on its own; the timeout covers the whole attempt, redirects included.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, Request, Uri};
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::rt::TokioIo;
use rustls::ClientConfig;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tracing::Instrument;

use crate::expr::JsonAssertion;
use crate::result::{Outcome, ProbeResult, Timings, millis};
use crate::status::StatusSet;

/// The largest body a probe reads; a bigger one fails the probe rather than exhausting memory.
pub const MAX_BODY_BYTES: usize = 4 * 1024 * 1024;

/// A prepared HTTP(S) probe: URL parsed, regexes compiled, secrets resolved into sensitive
/// header values (shown as `Sensitive` by `Debug`), TLS configured.
#[derive(Debug)]
pub struct HttpProbe {
    pub(crate) name: String,
    pub(crate) timeout: Duration,
    pub(crate) max_latency: Option<Duration>,
    pub(crate) method: Method,
    pub(crate) uri: Uri,
    pub(crate) headers: HeaderMap,
    pub(crate) body: Bytes,
    pub(crate) expect_status: StatusSet,
    pub(crate) expect_json: Vec<JsonAssertion>,
    pub(crate) body_regex: Option<regex::Regex>,
    pub(crate) tls: Option<Arc<ClientConfig>>,
    pub(crate) follow_redirects: u8,
}

/// Where an attempt got to, kept outside the timed future so that a timeout can say which
/// phase it interrupted and keep the timings measured so far.
#[derive(Debug)]
struct Progress {
    start: Instant,
    phase: &'static str,
    timings: Timings,
    status_code: Option<u16>,
}

impl Progress {
    fn mark(&self) -> Option<f64> {
        Some(millis(self.start.elapsed()))
    }
}

/// A response with its body read.
struct Answer {
    status: u16,
    location: Option<String>,
    body: Bytes,
}

/// Aborts the spawned connection task when the attempt ends (or is cancelled by the timeout),
/// so that a server that never answers cannot keep a socket open behind the probe's back.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl HttpProbe {
    /// The URL probed.
    pub fn url(&self) -> &Uri {
        &self.uri
    }

    /// Runs one attempt.
    pub async fn check(&self) -> ProbeResult {
        let span = tracing::info_span!("http_probe", probe = %self.name, url = %self.uri);
        async {
            let mut progress =
                Progress { start: Instant::now(), phase: "connecting", timings: Timings::default(), status_code: None };
            let outcome = tokio::time::timeout(self.timeout, self.exchange(&mut progress)).await;
            progress.timings.total_ms = millis(progress.start.elapsed());
            let total = progress.start.elapsed();
            let (status, reason) = match outcome {
                Err(_) => (
                    Outcome::Fail,
                    format!("timed out after {} ({})", humantime::format_duration(self.timeout), progress.phase),
                ),
                Ok(Err(reason)) => (Outcome::Fail, reason),
                Ok(Ok(answer)) => self.judge(&answer, total),
            };
            tracing::debug!(status = status.as_str(), %reason, total_ms = progress.timings.total_ms, "http probe done");
            ProbeResult {
                name: self.name.clone(),
                status,
                reason,
                status_code: progress.status_code,
                timings_ms: progress.timings,
            }
        }
        .instrument(span)
        .await
    }

    fn judge(&self, answer: &Answer, total: Duration) -> (Outcome, String) {
        let code = answer.status;
        if !self.expect_status.accepts(code) {
            let mut reason = format!("status {code} (expected {})", self.expect_status);
            if let Some(location) = &answer.location {
                reason.push_str(&format!(", redirect to {location} not followed"));
            }
            return (Outcome::Fail, reason);
        }
        let mut failures = Vec::new();
        if let Some(re) = &self.body_regex
            && !re.is_match(&String::from_utf8_lossy(&answer.body))
        {
            failures.push(format!("body does not match /{}/", re.as_str()));
        }
        if !self.expect_json.is_empty() {
            match serde_json::from_slice::<serde_json::Value>(&answer.body) {
                Ok(document) => failures.extend(
                    self.expect_json
                        .iter()
                        .filter_map(|a| a.evaluate(&document).err()),
                ),
                Err(e) => failures.push(format!("body is not JSON ({e})")),
            }
        }
        if let Some(budget) = self.max_latency
            && total > budget
        {
            failures.push(format!(
                "over latency budget ({} ms > {} ms)",
                total.as_millis(),
                budget.as_millis()
            ));
        }
        if failures.is_empty() {
            (
                Outcome::Ok,
                format!("status {code} in {:.1} ms", total.as_secs_f64() * 1000.0),
            )
        } else {
            (Outcome::Fail, failures.join("; "))
        }
    }

    async fn exchange(&self, progress: &mut Progress) -> Result<Answer, String> {
        let mut uri = self.uri.clone();
        let mut method = self.method.clone();
        let mut body = self.body.clone();
        let mut headers = self.headers.clone();
        let mut hop = 0u8;
        loop {
            let answer = self
                .request(&uri, &method, &headers, body.clone(), progress)
                .await?;
            let redirect = matches!(answer.status, 301 | 302 | 303 | 307 | 308);
            let Some(location) = answer
                .location
                .as_deref()
                .filter(|_| redirect && hop < self.follow_redirects)
            else {
                return Ok(answer);
            };
            let next = resolve_location(&uri, location)?;
            if next.scheme() != uri.scheme() || next.authority() != uri.authority() {
                // Credentials are for the origin they were configured for, as curl does.
                headers = headers
                    .iter()
                    .filter(|(_, v)| !v.is_sensitive())
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect();
            }
            if answer.status == 303
                || (matches!(answer.status, 301 | 302) && method == Method::POST)
            {
                method = Method::GET;
                body = Bytes::new();
            }
            tracing::debug!(from = %uri, to = %next, status = answer.status, "following redirect");
            uri = next;
            hop += 1;
        }
    }

    async fn request(
        &self,
        uri: &Uri,
        method: &Method,
        headers: &HeaderMap,
        body: Bytes,
        progress: &mut Progress,
    ) -> Result<Answer, String> {
        let https = uri.scheme_str() == Some("https");
        let host = uri.host().ok_or_else(|| format!("URL {uri} has no host"))?;
        let bare_host = host.trim_start_matches('[').trim_end_matches(']');
        let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });

        progress.phase = "connecting";
        progress.timings = Timings::default();
        progress.status_code = None;
        let stream = connect(bare_host, port).await?;
        progress.timings.connect_ms = progress.mark();

        let request = build_request(uri, method, headers, body)?;
        if https {
            progress.phase = "in the TLS handshake";
            let config = self
                .tls
                .clone()
                .ok_or_else(|| "TLS is not configured for this probe".to_owned())?;
            let server_name = rustls::pki_types::ServerName::try_from(bare_host.to_owned())
                .map_err(|e| format!("invalid TLS server name {bare_host}: {e}"))?;
            let tls = tokio_rustls::TlsConnector::from(config)
                .connect(server_name, stream)
                .await
                .map_err(|e| crate::tls::describe_handshake_error(&e, bare_host))?;
            progress.timings.tls_ms = progress.mark();
            send(tls, request, progress).await
        } else {
            send(stream, request, progress).await
        }
    }
}

async fn connect(host: &str, port: u16) -> Result<TcpStream, String> {
    let addrs: Vec<_> = tokio::net::lookup_host((host, port))
        .await
        .map_err(|e| format!("cannot resolve {host}: {e}"))?
        .collect();
    let mut last = format!("{host} resolved to no address");
    for addr in addrs {
        match TcpStream::connect(addr).await {
            Ok(stream) => {
                // Small request and response: waiting for Nagle only adds latency.
                let _ = stream.set_nodelay(true);
                return Ok(stream);
            }
            Err(e) => last = describe_connect_error(&e, &addr.to_string()),
        }
    }
    Err(last)
}

/// A connect failure in words: "connection refused (127.0.0.1:7000)".
pub(crate) fn describe_connect_error(err: &std::io::Error, addr: &str) -> String {
    match err.kind() {
        std::io::ErrorKind::ConnectionRefused => format!("connection refused ({addr})"),
        std::io::ErrorKind::TimedOut => format!("connect to {addr} timed out"),
        _ => format!("cannot connect to {addr}: {err}"),
    }
}

fn build_request(
    uri: &Uri,
    method: &Method,
    headers: &HeaderMap,
    body: Bytes,
) -> Result<Request<Full<Bytes>>, String> {
    let authority = uri
        .authority()
        .map(|a| a.as_str().rsplit('@').next().unwrap_or_default().to_owned());
    let path = uri.path_and_query().map_or("/", |p| p.as_str());
    let mut request = Request::builder()
        .method(method.clone())
        .uri(path)
        .body(Full::new(body))
        .map_err(|e| format!("invalid request: {e}"))?;
    let h = request.headers_mut();
    if let Some(authority) = authority.and_then(|a| HeaderValue::from_str(&a).ok()) {
        h.insert(header::HOST, authority);
    }
    h.insert(
        header::USER_AGENT,
        HeaderValue::from_static(concat!("cutover-probe/", env!("CARGO_PKG_VERSION"))),
    );
    h.insert(header::ACCEPT, HeaderValue::from_static("*/*"));
    h.insert(header::CONNECTION, HeaderValue::from_static("close"));
    for (name, value) in headers {
        h.insert(name.clone(), value.clone());
    }
    Ok(request)
}

async fn send<IO>(
    io: IO,
    request: Request<Full<Bytes>>,
    progress: &mut Progress,
) -> Result<Answer, String>
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    progress.phase = "sending the request";
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake::<_, Full<Bytes>>(TokioIo::new(io))
            .await
            .map_err(|e| format!("HTTP handshake failed: {e}"))?;
    let _connection = AbortOnDrop(tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::debug!(error = %e, "connection ended with an error");
        }
    }));
    progress.phase = "waiting for the response";
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| describe_hyper_error(&e))?;
    progress.timings.first_byte_ms = progress.mark();
    let status = response.status().as_u16();
    progress.status_code = Some(status);
    let location = response
        .headers()
        .get(header::LOCATION)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    progress.phase = "reading the body";
    let body = Limited::new(response.into_body(), MAX_BODY_BYTES)
        .collect()
        .await
        .map_err(|e| {
            if e.is::<http_body_util::LengthLimitError>() {
                format!("body larger than {} MiB", MAX_BODY_BYTES / (1024 * 1024))
            } else {
                format!("reading the body failed: {e}")
            }
        })?;
    Ok(Answer {
        status,
        location,
        body: body.to_bytes(),
    })
}

fn describe_hyper_error(err: &hyper::Error) -> String {
    if err.is_incomplete_message() {
        "connection closed before a complete response".to_owned()
    } else if err.is_parse() {
        format!("invalid HTTP response: {err}")
    } else {
        format!("request failed: {err}")
    }
}

/// Resolves a `Location` header against the URL that answered.
fn resolve_location(base: &Uri, location: &str) -> Result<Uri, String> {
    let bad = |e: &dyn std::fmt::Display| format!("invalid redirect location {location}: {e}");
    let parsed: Uri = location.parse().map_err(|e| bad(&e))?;
    if parsed.scheme().is_some() {
        return Ok(parsed);
    }
    let scheme = base.scheme_str().unwrap_or("http");
    let authority = base.authority().map_or("", |a| a.as_str());
    let path = if location.starts_with('/') {
        location.to_owned()
    } else {
        let base_path = base.path();
        let dir = base_path.rsplit_once('/').map_or("", |(d, _)| d);
        format!("{dir}/{location}")
    };
    format!("{scheme}://{authority}{path}")
        .parse()
        .map_err(|e| bad(&e))
}

/// Parses a header name for a probe.
pub(crate) fn header_name(name: &str) -> Result<HeaderName, String> {
    HeaderName::from_bytes(name.trim().as_bytes()).map_err(|e| format!("invalid header name: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locations_resolve_against_the_answering_url() {
        let base: Uri = "http://h:1/a/b?q".parse().unwrap();
        assert_eq!(resolve_location(&base, "/x").unwrap(), "http://h:1/x");
        assert_eq!(resolve_location(&base, "c").unwrap(), "http://h:1/a/c");
        assert_eq!(resolve_location(&base, "https://o/").unwrap(), "https://o/");
    }
}
