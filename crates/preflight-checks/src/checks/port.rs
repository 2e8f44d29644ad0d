//! `port-free`: the address the service will bind is free, found by binding it; when it is
//! taken, the holder is named from /proc/net/tcp{,6} (socket inode) and /proc/*/fd.

use std::net::{SocketAddr, TcpListener, ToSocketAddrs};
use std::path::Path;
use std::time::Duration;

use serde_json::json;

use crate::{Check, CheckContext, DEFAULT_TIMEOUT, Outcome};

/// `port-free`: binding `addr` succeeds.
#[derive(Debug, Clone)]
pub struct PortFree {
    id: String,
    timeout: Duration,
    addr: String,
}

impl PortFree {
    /// `addr` as `host:port` (`127.0.0.1:7000`, `[::]:443`, `localhost:7000`).
    pub fn new(id: impl Into<String>, addr: impl Into<String>) -> Self {
        Self {
            id: id.into(),
            timeout: DEFAULT_TIMEOUT,
            addr: addr.into(),
        }
    }
    /// Sets the timeout.
    #[must_use]
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }
}

/// A process holding a listening socket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Holder {
    /// Its pid.
    pub pid: u32,
    /// Its command name (`/proc/PID/comm`, at most 15 bytes).
    pub name: String,
}

/// Socket inodes of TCP listeners on `port`, from /proc/net/tcp and tcp6.
fn listening_inodes(port: u16) -> Vec<u64> {
    let mut inodes = Vec::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let Ok(text) = std::fs::read_to_string(table) else {
            continue;
        };
        for line in text.lines().skip(1) {
            let fields: Vec<&str> = line.split_whitespace().collect();
            // sl local_address rem_address st tx:rx tr:when retrnsmt uid timeout inode
            let (Some(local), Some(state), Some(inode)) =
                (fields.get(1), fields.get(3), fields.get(9))
            else {
                continue;
            };
            let Some(port_hex) = local.rsplit(':').next() else {
                continue;
            };
            // State 0A is LISTEN.
            if *state == "0A"
                && u16::from_str_radix(port_hex, 16).ok() == Some(port)
                && let Ok(inode) = inode.parse::<u64>()
                && inode != 0
            {
                inodes.push(inode);
            }
        }
    }
    inodes
}

/// Processes whose open files include one of these socket inodes. Processes of other users are
/// invisible without privileges; they are silently passed over.
pub fn socket_holders(inodes: &[u64]) -> Vec<Holder> {
    let mut holders = Vec::new();
    if inodes.is_empty() {
        return holders;
    }
    let wanted: Vec<String> = inodes.iter().map(|i| format!("socket:[{i}]")).collect();
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return holders;
    };
    for entry in procs.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(fds) = std::fs::read_dir(entry.path().join("fd")) else {
            continue;
        };
        let holds = fds.flatten().any(|fd| {
            std::fs::read_link(fd.path())
                .ok()
                .and_then(|target| target.to_str().map(|t| wanted.iter().any(|w| w == t)))
                .unwrap_or(false)
        });
        if holds {
            let name =
                std::fs::read_to_string(Path::new("/proc").join(pid.to_string()).join("comm"))
                    .map(|s| s.trim().to_owned())
                    .unwrap_or_else(|_| "?".to_owned());
            holders.push(Holder { pid, name });
        }
    }
    holders
}

/// The processes listening on TCP `port`, as far as /proc shows them.
pub fn port_holders(port: u16) -> Vec<Holder> {
    socket_holders(&listening_inodes(port))
}

impl Check for PortFree {
    fn id(&self) -> &str {
        &self.id
    }
    fn kind(&self) -> &'static str {
        "port-free"
    }
    fn timeout(&self) -> Duration {
        self.timeout
    }
    fn description(&self) -> String {
        format!("{} can be bound", self.addr)
    }
    fn run(&self, _ctx: &CheckContext) -> Outcome {
        let addrs: Vec<SocketAddr> = match self.addr.to_socket_addrs() {
            Ok(a) => a.collect(),
            Err(e) => {
                return Outcome::fail(
                    format!("cannot resolve {}: {e}", self.addr),
                    "write `addr` as host:port, such as 127.0.0.1:7000",
                );
            }
        };
        let Some(addr) = addrs.first().copied() else {
            return Outcome::fail(
                format!("{} resolves to no address", self.addr),
                "fix `addr`",
            );
        };
        match TcpListener::bind(addr) {
            Ok(listener) => {
                drop(listener);
                Outcome::pass(format!("{addr} is free")).with_data(json!({"addr": addr.to_string()}))
            }
            Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => {
                let holders = port_holders(addr.port());
                let named = if holders.is_empty() {
                    "the holder is not visible to this user".to_owned()
                } else {
                    holders
                        .iter()
                        .map(|h| format!("{} (pid {})", h.name, h.pid))
                        .collect::<Vec<_>>()
                        .join(", ")
                };
                let pids: Vec<u32> = holders.iter().map(|h| h.pid).collect();
                Outcome::fail(
                    format!("{addr} is already in use: held by {named}"),
                    "stop the process holding it (is an old release still running?) or choose another port",
                )
                .with_data(json!({"addr": addr.to_string(), "holders": pids}))
            }
            Err(e) => Outcome::fail(
                format!("cannot bind {addr}: {e}"),
                match e.kind() {
                    std::io::ErrorKind::PermissionDenied => {
                        "ports below 1024 need root or CAP_NET_BIND_SERVICE; use a higher port behind the proxy"
                    }
                    std::io::ErrorKind::AddrNotAvailable => "the address is not on this host; fix `addr`",
                    _ => "check `addr`",
                },
            )
            .with_data(json!({"addr": addr.to_string()})),
        }
    }
}
