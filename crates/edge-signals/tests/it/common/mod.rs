//! Set-up for the real-nginx tests: a private nginx rendered by edge-proxy in its own temp dir
//! (killed, process group and all, when the guard drops, even on panic), and a small test
//! upstream whose answers are set by the request: `/api/work?status=503&delay=37` answers 503
//! after 37 ms, so the truth of every request is known in advance.

#![allow(dead_code, unreachable_pub)]

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::Duration;

use cutover_tests::{free_port, temp_dir};
use edge_proxy::{
    InstanceState, Layout, LocationConfig, Nginx, NginxInstance, ProxyConfig, RateLimit,
};

/// nginx, or a loud failure naming the package.
pub fn nginx() -> Nginx {
    Nginx::locate().expect(
        "nginx is required by these tests: apt-get install -y --no-install-recommends nginx",
    )
}

fn free_addr() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], free_port()))
}

/// Plain HTTP on free loopback ports: `/api/` (no limit), `/limited/` (1 r/s, no burst: 429s)
/// and the default `/`.
pub fn config() -> ProxyConfig {
    let mut config = ProxyConfig::minimal(free_addr(), free_addr());
    config.worker_processes = Some(2);
    config.locations = vec![
        LocationConfig {
            path: "/api/".to_owned(),
            rate_limit: None,
            streaming: false,
            read_timeout: None,
            sessions: false,
        },
        LocationConfig {
            path: "/limited/".to_owned(),
            rate_limit: Some(RateLimit {
                rate: "1r/s".to_owned(),
                burst: 0,
            }),
            streaming: false,
            read_timeout: None,
            sessions: false,
        },
    ];
    config
}

/// A running private nginx; stopped on drop.
pub struct Running {
    pub instance: NginxInstance,
    pub state: InstanceState,
    pub dir: tempfile::TempDir,
}

impl Running {
    pub async fn start(config: ProxyConfig, upstream: SocketAddr) -> Self {
        let dir = temp_dir();
        let instance = NginxInstance::new(nginx(), Layout::new(dir.path().join("px")), config);
        instance
            .write_config(Some(upstream), None)
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
        if self.state.is_alive() {
            let _ = kill(nix::unistd::Pid::from_raw(-self.state.pid), Signal::SIGKILL);
        }
        let _ = cutover_tests::wait_until(Duration::from_secs(5), || !self.state.is_alive());
    }
}

/// Starts the test upstream on a free loopback port; it serves (a thread per connection,
/// keep-alive) until the test process ends.
pub fn start_upstream() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind the test upstream");
    let addr = listener.local_addr().expect("its address");
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            std::thread::spawn(move || serve(stream));
        }
    });
    addr
}

fn serve(stream: TcpStream) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(60)));
    let Ok(mut writer) = stream.try_clone() else {
        return;
    };
    let mut reader = BufReader::new(stream);
    loop {
        let mut request_line = String::new();
        if reader.read_line(&mut request_line).unwrap_or(0) == 0 {
            return;
        }
        // Headers until the blank line; requests through nginx here carry no body.
        loop {
            let mut header = String::new();
            if reader.read_line(&mut header).unwrap_or(0) == 0 {
                return;
            }
            if header == "\r\n" || header == "\n" {
                break;
            }
        }
        let target = request_line.split_whitespace().nth(1).unwrap_or("/");
        let (status, delay) = plan_of(target);
        if delay > 0 {
            std::thread::sleep(Duration::from_millis(delay));
        }
        let body = format!("{{\"status\":{status},\"version\":\"test\"}}");
        let response = format!(
            "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        if writer.write_all(response.as_bytes()).is_err() {
            return;
        }
    }
}

/// The status and delay a target asks for (`?status=N&delay=MS`; default 200, 0).
pub fn plan_of(target: &str) -> (u16, u64) {
    let query = target.split_once('?').map_or("", |(_, q)| q);
    let mut status = 200;
    let mut delay = 0;
    for pair in query.split('&') {
        match pair.split_once('=') {
            Some(("status", v)) => status = v.parse().unwrap_or(200),
            Some(("delay", v)) => delay = v.parse().unwrap_or(0),
            _ => {}
        }
    }
    (status, delay)
}

/// Nearest-rank quantile of `values` (sorted here).
pub fn nearest_rank(values: &mut [f64], q: f64) -> f64 {
    values.sort_by(f64::total_cmp);
    let rank = ((q * values.len() as f64).ceil() as usize).clamp(1, values.len());
    values[rank - 1]
}

/// `promtool`, or a loud failure naming the package.
pub fn promtool() -> std::path::PathBuf {
    let dirs = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .unwrap_or_default();
    dirs.into_iter()
        .map(|d| d.join("promtool"))
        .find(|p| p.is_file())
        .expect("promtool is required by this test: apt-get install -y --no-install-recommends prometheus")
}
