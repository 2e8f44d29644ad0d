//! A recording [`TrafficSwitch`] for tests of code that drives a proxy (feature `test-util`).

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::Duration;

use crate::EdgeError;
use crate::switch::{SwitchReport, SwitchTarget, TrafficSwitch};

/// A switch that keeps the current upstream in memory, refuses upstreams not marked healthy
/// and records every switch it confirmed.
#[derive(Debug, Default)]
pub struct FakeSwitch {
    current: Mutex<Option<SocketAddr>>,
    healthy: Mutex<BTreeSet<SocketAddr>>,
    history: Mutex<Vec<SocketAddr>>,
}

impl FakeSwitch {
    /// A fake serving `current`.
    pub fn new(current: Option<SocketAddr>) -> Self {
        Self {
            current: Mutex::new(current),
            ..Self::default()
        }
    }

    /// Marks `addr` healthy (or not): switching to an unhealthy upstream is refused.
    pub fn set_healthy(&self, addr: SocketAddr, healthy: bool) {
        let mut set = self.healthy.lock().unwrap_or_else(|e| e.into_inner());
        if healthy {
            set.insert(addr);
        } else {
            set.remove(&addr);
        }
    }

    /// Every upstream switched to, in order.
    pub fn history(&self) -> Vec<SocketAddr> {
        self.history
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

impl TrafficSwitch for FakeSwitch {
    async fn current(&self) -> Result<Option<SocketAddr>, EdgeError> {
        Ok(*self.current.lock().unwrap_or_else(|e| e.into_inner()))
    }

    async fn switch(&self, target: &SwitchTarget) -> Result<SwitchReport, EdgeError> {
        let healthy = self
            .healthy
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains(&target.upstream);
        if !healthy {
            return Err(EdgeError::UpstreamUnhealthy {
                upstream: target.upstream,
                reason: "marked unhealthy in the fake".to_owned(),
            });
        }
        let from = self
            .current
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .replace(target.upstream);
        self.history
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(target.upstream);
        Ok(SwitchReport {
            from,
            to: target.upstream,
            release: target.expect_release.clone(),
            elapsed: Duration::ZERO,
            confirm_probes: 1,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn fake_switches_only_to_healthy_upstreams() {
        let (a, b): (SocketAddr, SocketAddr) = (
            "127.0.0.1:1".parse().unwrap(),
            "127.0.0.1:2".parse().unwrap(),
        );
        let fake = FakeSwitch::new(Some(a));
        let target = SwitchTarget {
            upstream: b,
            expect_release: None,
            backup: None,
        };
        assert!(fake.switch(&target).await.is_err());
        assert_eq!(fake.current().await.unwrap(), Some(a));
        fake.set_healthy(b, true);
        assert_eq!(fake.switch(&target).await.unwrap().from, Some(a));
        assert_eq!(fake.history(), [b]);
    }
}
