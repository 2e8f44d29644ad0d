//! Endpoints: what one kind of request looks like (method, URL, headers, body, weight in the mix)
//! and its request bytes, built once before the run.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::PerfError;

/// One kind of request in the load, as written in `[[perf.endpoint]]` or given by `--url`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Endpoint {
    /// A short name for reports (default: the method and path).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// `http://host:port/path?query` (plain HTTP/1.1).
    pub url: String,
    /// The request method (default `GET`).
    #[serde(default = "default_method")]
    pub method: String,
    /// Extra request headers.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, String>,
    /// A request body, sent with its `Content-Length`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
    /// The endpoint's share of the mix relative to the others (default 1).
    #[serde(default = "default_weight")]
    pub weight: u32,
}

fn default_method() -> String {
    "GET".to_owned()
}

fn default_weight() -> u32 {
    1
}

impl Endpoint {
    /// A `GET` of `url` with weight 1.
    pub fn get(url: impl Into<String>) -> Self {
        Self {
            name: None,
            url: url.into(),
            method: default_method(),
            headers: BTreeMap::new(),
            body: None,
            weight: 1,
        }
    }

    /// The name used in reports: the given one, else `METHOD /path`.
    pub fn display_name(&self) -> String {
        if let Some(name) = &self.name {
            return name.clone();
        }
        match parse_url(&self.url) {
            Ok(u) => format!("{} {}", self.method, u.path),
            Err(_) => format!("{} {}", self.method, self.url),
        }
    }
}

/// The pieces of an `http://` URL that the engine needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ParsedUrl {
    /// `host:port` as written (the `Host` header).
    pub(crate) authority: String,
    /// The host to resolve.
    pub(crate) host: String,
    /// The port (80 when absent).
    pub(crate) port: u16,
    /// The path and query (`/` when absent).
    pub(crate) path: String,
}

/// Parses a plain-HTTP URL.
pub(crate) fn parse_url(url: &str) -> Result<ParsedUrl, PerfError> {
    let bad = |reason: &str| PerfError::InvalidUrl {
        url: url.to_owned(),
        reason: reason.to_owned(),
    };
    let rest = if let Some(rest) = url.strip_prefix("http://") {
        rest
    } else if url.starts_with("https://") {
        return Err(bad(
            "https is not supported by the load engine; load the plain-HTTP listener",
        ));
    } else {
        return Err(bad("expected a URL starting with http://"));
    };
    let (authority, path) = match rest.find(['/', '?']) {
        Some(i) if rest.as_bytes()[i] == b'/' => (&rest[..i], rest[i..].to_owned()),
        Some(i) => (&rest[..i], format!("/{}", &rest[i..])),
        None => (rest, "/".to_owned()),
    };
    let path = match path.find('#') {
        Some(i) => path[..i].to_owned(),
        None => path,
    };
    if authority.is_empty() || authority.contains('@') {
        return Err(bad("the URL needs a host (user info is not supported)"));
    }
    let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
        let (host, after) = v6
            .split_once(']')
            .ok_or_else(|| bad("unclosed IPv6 bracket"))?;
        let port = match after.strip_prefix(':') {
            Some(p) => p.parse().map_err(|_| bad("invalid port"))?,
            None if after.is_empty() => 80,
            None => return Err(bad("unexpected text after the IPv6 address")),
        };
        (host.to_owned(), port)
    } else {
        match authority.rsplit_once(':') {
            Some((h, p)) => (h.to_owned(), p.parse().map_err(|_| bad("invalid port"))?),
            None => (authority.to_owned(), 80),
        }
    };
    if host.is_empty()
        || path
            .bytes()
            .any(|b| b.is_ascii_whitespace() || b.is_ascii_control())
    {
        return Err(bad("empty host, or whitespace in the path"));
    }
    Ok(ParsedUrl {
        authority: authority.to_owned(),
        host,
        port,
        path,
    })
}

fn valid_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// Builds the exact bytes of one request to `endpoint` (done once, before the run).
pub(crate) fn request_bytes(endpoint: &Endpoint, url: &ParsedUrl) -> Result<Vec<u8>, PerfError> {
    let bad = |reason: String| PerfError::InvalidEndpoint {
        url: endpoint.url.clone(),
        reason,
    };
    if !valid_token(&endpoint.method) {
        return Err(bad(format!("invalid method {:?}", endpoint.method)));
    }
    let mut out = format!(
        "{} {} HTTP/1.1\r\nHost: {}\r\nUser-Agent: cutover-perf/{}\r\n",
        endpoint.method,
        url.path,
        url.authority,
        env!("CARGO_PKG_VERSION")
    );
    for (name, value) in &endpoint.headers {
        if !valid_token(name) || value.bytes().any(|b| b == b'\r' || b == b'\n') {
            return Err(bad(format!("invalid header {name:?}")));
        }
        if name.eq_ignore_ascii_case("host") || name.eq_ignore_ascii_case("content-length") {
            return Err(bad(format!("header {name} is set by the engine")));
        }
        out.push_str(&format!("{name}: {value}\r\n"));
    }
    if let Some(body) = &endpoint.body {
        out.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    out.push_str("\r\n");
    if let Some(body) = &endpoint.body {
        out.push_str(body);
    }
    Ok(out.into_bytes())
}

/// The sequence of endpoint indices a connection walks through: each endpoint appears as often
/// as its weight, interleaved (smooth weighted round robin) so that a short run sees the mix.
pub(crate) fn weighted_schedule(weights: &[u32]) -> Vec<usize> {
    let total: i64 = weights.iter().map(|&w| i64::from(w)).sum();
    let mut current = vec![0i64; weights.len()];
    let mut out = Vec::with_capacity(usize::try_from(total).unwrap_or(0));
    for _ in 0..total {
        for (c, &w) in current.iter_mut().zip(weights) {
            *c += i64::from(w);
        }
        let Some((best, _)) = current
            .iter()
            .enumerate()
            .max_by_key(|&(i, c)| (*c, -(i as i64)))
        else {
            break;
        };
        current[best] -= total;
        out.push(best);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_parse_into_authority_host_port_and_path() {
        let u = parse_url("http://127.0.0.1:8080/api/x?y=1#frag").unwrap();
        assert_eq!(
            (
                u.authority.as_str(),
                u.host.as_str(),
                u.port,
                u.path.as_str()
            ),
            ("127.0.0.1:8080", "127.0.0.1", 8080, "/api/x?y=1")
        );
        let u = parse_url("http://example.test").unwrap();
        assert_eq!((u.port, u.path.as_str()), (80, "/"));
        let u = parse_url("http://[::1]:9/?q").unwrap();
        assert_eq!(
            (u.host.as_str(), u.port, u.path.as_str()),
            ("::1", 9, "/?q")
        );
        let u = parse_url("http://h?q=1").unwrap();
        assert_eq!(u.path, "/?q=1");
    }

    #[test]
    fn bad_urls_are_rejected_with_the_url() {
        for bad in [
            "https://x/",
            "ftp://x",
            "http://",
            "http://h:port/",
            "http://u@h/",
            "http://h/a b",
        ] {
            let err = parse_url(bad).unwrap_err();
            assert!(err.to_string().contains(bad), "{err}");
        }
    }

    #[test]
    fn request_bytes_carry_host_headers_and_body() {
        let mut e = Endpoint::get("http://127.0.0.1:1/p");
        e.method = "POST".into();
        e.headers.insert("X-A".into(), "b".into());
        e.body = Some("{}".into());
        let bytes = request_bytes(&e, &parse_url(&e.url).unwrap()).unwrap();
        let text = String::from_utf8(bytes).unwrap();
        assert!(
            text.starts_with("POST /p HTTP/1.1\r\nHost: 127.0.0.1:1\r\n"),
            "{text}"
        );
        assert!(
            text.ends_with("X-A: b\r\nContent-Length: 2\r\n\r\n{}"),
            "{text}"
        );
        e.headers.insert("Bad\nName".into(), "v".into());
        assert!(request_bytes(&e, &parse_url(&e.url).unwrap()).is_err());
    }

    #[test]
    fn weighted_schedule_interleaves_by_weight() {
        assert_eq!(weighted_schedule(&[1]), vec![0]);
        let s = weighted_schedule(&[3, 1]);
        assert_eq!(s.len(), 4);
        assert_eq!(s.iter().filter(|&&i| i == 0).count(), 3);
        let s = weighted_schedule(&[1, 1, 2]);
        assert_eq!(s, vec![2, 0, 1, 2]);
    }
}
