//! Shared set-up for the real-nginx tests: free loopback ports, a private instance in its own
//! temp dir, killed (process group and all) when the guard drops, even when a test panics.

#![allow(dead_code, unreachable_pub)]

use std::net::SocketAddr;
use std::time::Duration;

use cutover_tests::{free_port, temp_dir};
use edge_proxy::{InstanceState, Layout, Nginx, NginxInstance, ProxyConfig};
use secret_refs::Secret;

/// nginx, or a loud failure naming the package.
pub fn nginx() -> Nginx {
    Nginx::locate().expect(
        "nginx is required by these tests: apt-get install -y --no-install-recommends nginx",
    )
}

/// A loopback address with a port that was free a moment ago.
pub fn free_addr() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], free_port()))
}

/// A plain-HTTP configuration on free loopback ports with no locations besides `/` and health.
pub fn plain_config() -> ProxyConfig {
    let mut config = ProxyConfig::minimal(free_addr(), free_addr());
    config.locations.clear();
    config.worker_processes = Some(1);
    config.switch_timeout = Duration::from_secs(10);
    config
}

/// A running private nginx; stopped on drop.
pub struct Running {
    pub instance: NginxInstance,
    pub state: InstanceState,
    pub dir: tempfile::TempDir,
}

impl Running {
    /// Writes and starts `config` with `upstream` in a fresh temp dir.
    pub async fn start(config: ProxyConfig, upstream: SocketAddr, token: Option<&Secret>) -> Self {
        let dir = temp_dir();
        let instance = NginxInstance::new(nginx(), Layout::new(dir.path().join("px")), config);
        instance
            .write_config(Some(upstream), token)
            .expect("the configuration is written");
        let state = instance
            .start(Duration::from_secs(20))
            .await
            .unwrap_or_else(|e| panic!("nginx starts: {e}"));
        Self {
            instance,
            state,
            dir,
        }
    }

    /// The first plain-HTTP listener.
    pub fn http(&self) -> SocketAddr {
        self.state.listen_http[0]
    }

    pub fn layout(&self) -> &Layout {
        self.instance.layout()
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        use nix::sys::signal::{Signal, kill};
        // The daemonised master leads its own process group (its workers included); the start
        // time check makes sure the pid is still the nginx this test started.
        if self.state.is_alive() {
            let _ = kill(nix::unistd::Pid::from_raw(-self.state.pid), Signal::SIGKILL);
        }
        let _ = cutover_tests::wait_until(Duration::from_secs(5), || !self.state.is_alive());
    }
}
