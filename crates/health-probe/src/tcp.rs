//! The TCP probe: the target accepts a connection within the timeout.

use std::time::{Duration, Instant};

use tracing::Instrument;

use crate::result::{Outcome, ProbeResult, Timings, millis};

/// A prepared TCP connect probe.
#[derive(Debug, Clone)]
pub struct TcpProbe {
    pub(crate) name: String,
    pub(crate) address: String,
    pub(crate) timeout: Duration,
    pub(crate) max_latency: Option<Duration>,
}

impl TcpProbe {
    /// Runs one attempt: resolve, connect, close.
    pub async fn check(&self) -> ProbeResult {
        let span = tracing::info_span!("tcp_probe", probe = %self.name, address = %self.address);
        async {
            let start = Instant::now();
            let attempt = tokio::time::timeout(self.timeout, self.connect()).await;
            let elapsed = start.elapsed();
            let mut timings = Timings {
                total_ms: millis(elapsed),
                ..Timings::default()
            };
            let (status, reason) = match attempt {
                Err(_) => (
                    Outcome::Fail,
                    format!(
                        "timed out after {} (connecting)",
                        humantime::format_duration(self.timeout)
                    ),
                ),
                Ok(Err(reason)) => (Outcome::Fail, reason),
                Ok(Ok(peer)) => {
                    timings.connect_ms = Some(timings.total_ms);
                    match self.max_latency {
                        Some(budget) if elapsed > budget => (
                            Outcome::Fail,
                            format!(
                                "over latency budget ({} ms > {} ms)",
                                elapsed.as_millis(),
                                budget.as_millis()
                            ),
                        ),
                        _ => (
                            Outcome::Ok,
                            format!(
                                "connected to {peer} in {:.1} ms",
                                elapsed.as_secs_f64() * 1000.0
                            ),
                        ),
                    }
                }
            };
            ProbeResult {
                name: self.name.clone(),
                status,
                reason,
                status_code: None,
                timings_ms: timings,
            }
        }
        .instrument(span)
        .await
    }

    async fn connect(&self) -> Result<std::net::SocketAddr, String> {
        let addrs: Vec<_> = tokio::net::lookup_host(self.address.as_str())
            .await
            .map_err(|e| format!("cannot resolve {}: {e}", self.address))?
            .collect();
        let mut last = format!("{} resolved to no address", self.address);
        for addr in addrs {
            match tokio::net::TcpStream::connect(addr).await {
                Ok(_) => return Ok(addr),
                Err(e) => last = crate::http::describe_connect_error(&e, &addr.to_string()),
            }
        }
        Err(last)
    }
}
