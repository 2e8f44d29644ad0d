//! `cutover-edge metrics`: the edge log as Prometheus text, printed once or served.

use std::net::SocketAddr;
use std::time::Duration;

use edge_proxy::{Layout, Nginx, RotateWhen, rotate_access_logs};
use edge_signals::{EdgeReader, SignalOptions, SlotMap, StartAt, render_prometheus};
use live_deployment::Deployment;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use cutover_cli::Failure;

use crate::Output;

/// How often the served reader catches up with the log and checks its size.
const TICK: Duration = Duration::from_secs(1);
/// A scrape's request must arrive within this.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// The edge log of one instance and what names its upstreams.
pub(crate) struct Edge {
    layout: Layout,
    deployment: Option<Deployment>,
    max_bytes: u64,
    reader: EdgeReader,
}

impl Edge {
    pub(crate) fn new(layout: Layout, deployment: Option<Deployment>, max_bytes: u64) -> Self {
        let reader = EdgeReader::new(
            layout.edge_log(),
            StartAt::Beginning,
            SignalOptions::default(),
        );
        let mut edge = Self {
            layout,
            deployment,
            max_bytes,
            reader,
        };
        edge.refresh_slots();
        edge
    }

    /// Names upstream addresses after the deployment's slots and the releases in them (read
    /// again before each scrape, so a deploy's new release shows).
    fn refresh_slots(&mut self) {
        let Some(deployment) = &self.deployment else {
            return;
        };
        let live = match deployment.live() {
            Ok(live) => live,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the live deployment; upstreams keep their addresses as slot names");
                return;
            }
        };
        let mut slots = SlotMap::new();
        for s in &live.slots {
            slots.insert(s.addr.to_string(), s.slot.as_str(), s.release.clone());
        }
        self.reader.signals_mut().set_slots(slots);
    }

    fn read(&mut self) -> Result<(), Failure> {
        self.reader
            .poll()
            .map(drop)
            .map_err(|e| Failure::new(cutover_cli::EXIT_FAIL, e.to_string()))
    }
}

/// Reads the whole current edge log once and prints its totals.
pub(crate) fn once(mut edge: Edge) -> Result<Output, Failure> {
    if !edge.layout.edge_log().exists() {
        return Err(Failure::new(
            cutover_cli::EXIT_UNKNOWN,
            format!(
                "edge log {} does not exist; start the proxy (`cutover-edge up`, or a deploy) so that nginx writes it",
                edge.layout.edge_log().display()
            ),
        ));
    }
    edge.read()?;
    let text = render_prometheus(edge.reader.signals());
    let window = edge.reader.signals().window(jiff::Timestamp::now());
    Ok(Output {
        doc: json!({
            "log": edge.layout.edge_log(),
            "window": window,
            "prometheus": text,
        }),
        text,
    })
}

/// Serves `/metrics` on `addr` until the process is killed, reading the log each second and
/// rotating it when it passes the size limit (this process owns the reader, so it is the one
/// that knows it has finished the old file).
pub(crate) async fn serve(mut edge: Edge, addr: SocketAddr) -> Result<Output, Failure> {
    let listener = tokio::net::TcpListener::bind(addr).await.map_err(|e| {
        Failure::new(
            cutover_cli::EXIT_FAIL,
            format!("cannot listen on {addr}: {e}; pick a free address with --listen"),
        )
    })?;
    let bound = listener
        .local_addr()
        .map_err(|e| Failure::new(cutover_cli::EXIT_FAIL, e.to_string()))?;
    // The one line a supervisor or test waits for: where to scrape.
    cutover_cli::outln!("serving http://{bound}/metrics");
    let nginx = Nginx::locate().ok();
    let mut tick = tokio::time::interval(TICK);
    loop {
        tokio::select! {
            _ = tick.tick() => {
                if let Err(f) = edge.read() {
                    tracing::warn!(error = %f, "edge log not read");
                }
                if let Some(nginx) = &nginx {
                    match rotate_access_logs(nginx, &edge.layout, RotateWhen::LargerThan(edge.max_bytes)).await {
                        Ok(r) if r.rotated => tracing::info!(bytes = r.edge_log_bytes, "access logs rotated"),
                        Ok(_) => {}
                        Err(e) => tracing::warn!(error = %e, "access logs not rotated"),
                    }
                }
            }
            accepted = listener.accept() => {
                let Ok((stream, peer)) = accepted else { continue };
                edge.refresh_slots();
                if let Err(f) = edge.read() {
                    tracing::warn!(error = %f, "edge log not read");
                }
                let body = render_prometheus(edge.reader.signals());
                if let Err(e) = answer(stream, &body).await {
                    tracing::debug!(%peer, error = %e, "scrape not answered");
                }
            }
        }
    }
}

/// Answers one request: `GET /metrics` with the text, anything else 404.
async fn answer(mut stream: tokio::net::TcpStream, body: &str) -> std::io::Result<()> {
    let mut head = Vec::with_capacity(1024);
    let mut buf = [0u8; 1024];
    let read = tokio::time::timeout(REQUEST_TIMEOUT, async {
        while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 16 * 1024 {
            let n = stream.read(&mut buf).await?;
            if n == 0 {
                break;
            }
            head.extend_from_slice(&buf[..n]);
        }
        Ok::<(), std::io::Error>(())
    })
    .await;
    if !matches!(read, Ok(Ok(()))) {
        return Ok(());
    }
    let request_line =
        String::from_utf8_lossy(head.split(|&b| b == b'\r').next().unwrap_or(&[])).into_owned();
    let mut parts = request_line.split_whitespace();
    let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let path = target.split('?').next().unwrap_or("");
    let (status, content_type, body) = if method == "GET" && path == "/metrics" {
        ("200 OK", "text/plain; version=0.0.4; charset=utf-8", body)
    } else {
        (
            "404 Not Found",
            "text/plain; charset=utf-8",
            "GET /metrics\n",
        )
    };
    let response = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(response.as_bytes()).await?;
    stream.shutdown().await
}
