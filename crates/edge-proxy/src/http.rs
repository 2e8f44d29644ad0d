//! A deliberately small HTTP/1.1 GET used to confirm a switch: one request per connection,
//! bounded in time and size, no dependencies beyond tokio.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The largest answer read, so that a misbehaving upstream cannot exhaust memory.
const MAX_RESPONSE: u64 = 1 << 20;

/// An answer: status, lower-cased header names, body.
#[derive(Debug, Clone)]
pub(crate) struct Answer {
    pub(crate) status: u16,
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) body: String,
}

impl Answer {
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The value at a JSON pointer of the body, as text (strings unquoted).
    pub(crate) fn json_text(&self, pointer: &str) -> Option<String> {
        let value: serde_json::Value = serde_json::from_str(&self.body).ok()?;
        match value.pointer(pointer)? {
            serde_json::Value::String(s) => Some(s.clone()),
            other => Some(other.to_string()),
        }
    }
}

/// `GET path` on `addr` with `Connection: close`, within `timeout` overall.
pub(crate) async fn get(addr: SocketAddr, path: &str, timeout: Duration) -> Result<Answer, String> {
    tokio::time::timeout(timeout, get_inner(addr, path))
        .await
        .map_err(|_| format!("no answer from {addr} within {timeout:?}"))?
}

async fn get_inner(addr: SocketAddr, path: &str) -> Result<Answer, String> {
    let mut stream = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|e| format!("connect to {addr}: {e}"))?;
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nUser-Agent: cutover-edge\r\nConnection: close\r\n\r\n"
    );
    stream
        .write_all(request.as_bytes())
        .await
        .map_err(|e| format!("send to {addr}: {e}"))?;
    let mut raw = Vec::new();
    (&mut stream)
        .take(MAX_RESPONSE)
        .read_to_end(&mut raw)
        .await
        .map_err(|e| format!("read from {addr}: {e}"))?;
    parse(&raw).ok_or_else(|| format!("malformed HTTP answer from {addr}"))
}

fn parse(raw: &[u8]) -> Option<Answer> {
    let text = String::from_utf8_lossy(raw);
    let (head, body) = text.split_once("\r\n\r\n")?;
    let mut lines = head.split("\r\n");
    let status = lines.next()?.split_whitespace().nth(1)?.parse().ok()?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let chunked = headers
        .iter()
        .any(|(k, v)| k == "transfer-encoding" && v.contains("chunked"));
    let body = if chunked {
        dechunk(body)
    } else {
        body.to_owned()
    };
    Some(Answer {
        status,
        headers,
        body,
    })
}

fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let Ok(n) = usize::from_str_radix(size.split(';').next().unwrap_or("").trim(), 16) else {
            break;
        };
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        body = rest[n..].strip_prefix("\r\n").unwrap_or(&rest[n..]);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_plain_and_chunked() {
        let a =
            parse(b"HTTP/1.1 200 OK\r\nX-Cutover-Upstream: 1.2.3.4:5\r\n\r\n{\"version\":\"r1\"}")
                .unwrap();
        assert_eq!(a.status, 200);
        assert_eq!(a.header("x-cutover-upstream"), Some("1.2.3.4:5"));
        assert_eq!(a.json_text("/version").as_deref(), Some("r1"));
        let c = parse(b"HTTP/1.1 502 Bad\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n").unwrap();
        assert_eq!((c.status, c.body.as_str()), (502, "abcde"));
        assert!(parse(b"garbage").is_none());
    }
}
