//! `exposure`: the service on a port listens on loopback only, so that nginx, TLS and the rate
//! limits are not bypassed. A Node service that calls `app.listen(port)` binds every interface;
//! the replaced tooling's answer was a firewall step. Its listening sockets are read through the
//! holder's file descriptors and its own network namespace's `/proc/PID/net/tcp{,6}`.

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use serde_json::json;

use super::port::port_holders;
use crate::{Check, CheckContext, DEFAULT_TIMEOUT, Outcome};

/// Socket inodes open in `pids`.
fn socket_inodes(pids: &[u32]) -> BTreeSet<u64> {
    let mut inodes = BTreeSet::new();
    for pid in pids {
        let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
            continue;
        };
        for fd in fds.flatten() {
            if let Ok(target) = std::fs::read_link(fd.path())
                && let Some(inode) = target
                    .to_str()
                    .and_then(|t| t.strip_prefix("socket:["))
                    .and_then(|t| t.strip_suffix(']'))
                    .and_then(|t| t.parse().ok())
            {
                inodes.insert(inode);
            }
        }
    }
    inodes
}

/// Decodes `/proc/net/tcp`'s `0100007F:1B58` (or tcp6's 32 hex digits): each 32-bit word is
/// in host (little-endian) order.
fn decode(local: &str) -> Option<SocketAddr> {
    let (ip, port) = local.split_once(':')?;
    let port = u16::from_str_radix(port, 16).ok()?;
    let words: Vec<u32> = (0..ip.len() / 8)
        .map(|i| u32::from_str_radix(ip.get(i * 8..i * 8 + 8)?, 16).ok())
        .collect::<Option<_>>()?;
    let ip = match words.as_slice() {
        [w] => IpAddr::V4(Ipv4Addr::from(w.swap_bytes())),
        [a, b, c, d] => {
            let bytes: Vec<u8> = [a, b, c, d].iter().flat_map(|w| w.to_le_bytes()).collect();
            let octets: [u8; 16] = bytes.try_into().ok()?;
            IpAddr::V6(Ipv6Addr::from(octets))
        }
        _ => return None,
    };
    Some(SocketAddr::new(ip, port))
}

/// The TCP addresses that `pids` listen on, read in the network namespace of the first pid.
pub fn listening_addrs(pids: &[u32]) -> Vec<SocketAddr> {
    let inodes = socket_inodes(pids);
    let Some(first) = pids.first() else {
        return Vec::new();
    };
    let mut addrs = Vec::new();
    for table in ["tcp", "tcp6"] {
        let Ok(text) = std::fs::read_to_string(format!("/proc/{first}/net/{table}")) else {
            continue;
        };
        for line in text.lines().skip(1) {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let (Some(local), Some(state), Some(inode)) =
                (fields.get(1), fields.get(3), fields.get(9))
            else {
                continue;
            };
            if *state == "0A"
                && inode.parse::<u64>().is_ok_and(|i| inodes.contains(&i))
                && let Some(addr) = decode(local)
            {
                addrs.push(addr);
            }
        }
    }
    addrs.sort();
    addrs.dedup();
    addrs
}

/// Whether an address a service listens on is reachable from beyond this host's loopback
/// (`0.0.0.0`, `::`, or a real interface's address; an IPv4-mapped loopback counts as loopback).
pub fn beyond_loopback(addr: &SocketAddr) -> bool {
    match addr.ip() {
        IpAddr::V4(ip) => !ip.is_loopback(),
        IpAddr::V6(ip) => {
            !ip.is_loopback() && !ip.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback())
        }
    }
}

/// `exposure`: whatever listens on `port` listens on loopback only.
#[derive(Debug, Clone)]
pub struct Exposure {
    id: String,
    timeout: Duration,
    port: u16,
}

impl Exposure {
    /// The service on `port`.
    pub fn new(id: impl Into<String>, port: u16) -> Self {
        Self {
            id: id.into(),
            timeout: DEFAULT_TIMEOUT,
            port,
        }
    }

    /// Sets the timeout.
    #[must_use]
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }
}

impl Check for Exposure {
    fn id(&self) -> &str {
        &self.id
    }
    fn kind(&self) -> &'static str {
        "exposure"
    }
    fn timeout(&self) -> Duration {
        self.timeout
    }
    fn description(&self) -> String {
        format!("the service on port {} listens on loopback only", self.port)
    }
    fn run(&self, _ctx: &CheckContext) -> Outcome {
        let holders = port_holders(self.port);
        if holders.is_empty() {
            return Outcome::skip(format!(
                "nothing this user can see listens on port {}",
                self.port
            ));
        }
        let pids: Vec<u32> = holders.iter().map(|h| h.pid).collect();
        let addrs = listening_addrs(&pids);
        let outside: Vec<String> = addrs
            .iter()
            .filter(|a| beyond_loopback(a))
            .map(ToString::to_string)
            .collect();
        let names: Vec<String> = holders
            .iter()
            .map(|h| format!("{} (pid {})", h.name, h.pid))
            .collect();
        let data = json!({"port": self.port, "holders": pids, "listening": addrs.iter().map(ToString::to_string).collect::<Vec<_>>()});
        if outside.is_empty() {
            Outcome::pass(format!("{} listens on loopback only", names.join(", "))).with_data(data)
        } else {
            Outcome::fail(
                format!(
                    "{} listens on {} beyond loopback: its routes are reachable around the proxy, TLS and the rate limits",
                    names.join(", "),
                    outside.join(", ")
                ),
                "make the service listen on 127.0.0.1 (its --listen or HOST setting), or firewall the port",
            )
            .with_data(data)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    #[test]
    fn addresses_decode_as_the_kernel_writes_them() {
        assert_eq!(
            decode("0100007F:1B58"),
            Some("127.0.0.1:7000".parse().unwrap())
        );
        assert_eq!(decode("00000000:0050"), Some("0.0.0.0:80".parse().unwrap()));
        assert_eq!(
            decode("00000000000000000000000001000000:01BB"),
            Some("[::1]:443".parse().unwrap())
        );
        assert_eq!(decode("zz:1"), None);
    }

    #[test]
    fn a_loopback_listener_passes_and_one_on_every_interface_fails() {
        let ctx = CheckContext::with_timeout(Duration::from_secs(10));
        let lo = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = lo.local_addr().unwrap().port();
        let out = Exposure::new("exposure", port).run(&ctx);
        assert_eq!(out.status, crate::CheckStatus::Pass, "{out:?}");
        // Every interface, inside this test's own process (bound, never reachable from
        // outside the machine in a test namespace or behind the CI's network).
        let any = TcpListener::bind("0.0.0.0:0").unwrap();
        let port = any.local_addr().unwrap().port();
        assert!(listening_addrs(&[std::process::id()]).contains(&any.local_addr().unwrap()));
        let out = Exposure::new("exposure", port).run(&ctx);
        assert_eq!(out.status, crate::CheckStatus::Fail, "{out:?}");
        assert!(out.message.contains(&format!("0.0.0.0:{port}")), "{out:?}");
        drop(any);
    }
}
