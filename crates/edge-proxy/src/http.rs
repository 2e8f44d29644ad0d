//! The HTTP/1.1 GET used to confirm a switch (reqwest): one request per connection, bounded
//! in time and size.

use std::net::SocketAddr;
use std::time::Duration;

/// The largest answer read, so that a misbehaving upstream cannot exhaust memory.
const MAX_RESPONSE: usize = 1 << 20;

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
    let url = format!("http://{addr}{path}");
    let client = reqwest::Client::builder()
        .user_agent("cutover-edge")
        // A fresh connection per probe: a kept-alive one could still reach an old worker.
        .pool_max_idle_per_host(0)
        .no_proxy()
        .http1_only()
        .build()
        .map_err(|e| format!("cannot build the HTTP client: {}", describe(e)))?;
    let mut response = client
        .get(url)
        .header(reqwest::header::CONNECTION, "close")
        .send()
        .await
        .map_err(|e| {
            if e.is_connect() {
                format!("connect to {addr}: {}", describe(e))
            } else {
                format!("malformed HTTP answer from {addr}: {}", describe(e))
            }
        })?;
    let status = response.status().as_u16();
    let headers = response
        .headers()
        .iter()
        .map(|(k, v)| {
            (
                k.as_str().to_owned(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect();
    let mut raw = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|e| format!("read from {addr}: {}", describe(e)))?
    {
        // The rest of a too-long answer is not read: the status and the start of the body
        // are what a check looks at.
        let room = MAX_RESPONSE.saturating_sub(raw.len());
        raw.extend_from_slice(&chunk[..chunk.len().min(room)]);
        if raw.len() >= MAX_RESPONSE {
            break;
        }
    }
    Ok(Answer {
        status,
        headers,
        body: String::from_utf8_lossy(&raw).into_owned(),
    })
}

/// A reqwest error with its causes, for a message.
fn describe(error: reqwest::Error) -> String {
    host_util::error_chain(&error.without_url())
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A server that answers each connection with `raw` once, then closes it.
    async fn serve(raw: &'static [u8]) -> SocketAddr {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                let mut buf = [0u8; 4096];
                let _ = stream.read(&mut buf).await;
                let _ = stream.write_all(raw).await;
                let _ = stream.shutdown().await;
            }
        });
        addr
    }

    #[tokio::test]
    async fn reads_plain_and_chunked_answers() {
        let plain = serve(b"HTTP/1.1 200 OK\r\nX-Cutover-Upstream: 1.2.3.4:5\r\nContent-Length: 16\r\nConnection: close\r\n\r\n{\"version\":\"r1\"}").await;
        let a = get(plain, "/health", Duration::from_secs(5)).await.unwrap();
        assert_eq!(a.status, 200);
        assert_eq!(a.header("x-cutover-upstream"), Some("1.2.3.4:5"));
        assert_eq!(a.json_text("/version").as_deref(), Some("r1"));
        let chunked = serve(b"HTTP/1.1 502 Bad\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n").await;
        let c = get(chunked, "/", Duration::from_secs(5)).await.unwrap();
        assert_eq!((c.status, c.body.as_str()), (502, "abcde"));
        let garbage = serve(b"garbage").await;
        let err = get(garbage, "/", Duration::from_secs(5)).await.unwrap_err();
        assert!(err.starts_with("malformed HTTP answer from"), "{err}");
    }

    #[tokio::test]
    async fn refused_and_silent_upstreams_are_named() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let addr: SocketAddr = ([127, 0, 0, 1], port).into();
        let err = get(addr, "/", Duration::from_secs(5)).await.unwrap_err();
        assert!(err.starts_with(&format!("connect to {addr}")), "{err}");
        // Bound, never accepting: the connect succeeds (backlog) and nothing answers.
        let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = silent.local_addr().unwrap();
        let err = get(addr, "/", Duration::from_millis(300))
            .await
            .unwrap_err();
        assert!(err.contains("within"), "{err}");
    }
}
