//! The harness every cutover test that runs real processes uses.
//!
//! It finds the workspace's built binaries (`cargo xtask test` builds them first; a missing one
//! is a loud failure with the command to run, never a skip), starts them as children that are
//! always killed (process group and all) when the guard drops, even when the test panics, and
//! waits for conditions with generous deadlines instead of fixed sleeps. Ports come from the OS:
//! the demo service binds `127.0.0.1:0` and writes the address it got to a file.
//!
//! The HTTP helper is deliberately tiny and blocking (one request per connection, with timeouts)
//! so that tests observe the service without sharing code with the clients under test.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long harness waits (for readiness, for an address file) before failing a test.
pub const DEFAULT_DEADLINE: Duration = Duration::from_secs(20);

/// The directory holding the workspace's built binaries (`target/debug` or the profile in use).
pub fn bin_dir() -> PathBuf {
    // A test executable lives in target/<profile>/deps/; the binaries are one level up.
    let exe = std::env::current_exe().expect("the test executable has a path");
    let deps = exe.parent().expect("the test executable is in a directory");
    let dir = if deps.ends_with("deps") {
        deps.parent().unwrap_or(deps)
    } else {
        deps
    };
    dir.to_path_buf()
}

/// The path of a workspace binary, failing loudly (never skipping) when it has not been built.
pub fn workspace_bin(name: &str) -> PathBuf {
    let path = bin_dir().join(name);
    assert!(
        path.is_file(),
        "{} is not built; run `cargo build --workspace --bins` first (`cargo xtask test` does this)",
        path.display()
    );
    path
}

/// A fresh temporary directory, removed when dropped.
pub fn temp_dir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("cutover-test-")
        .tempdir()
        .expect("a temporary directory can be made")
}

/// A canary value never produced before, in this process or another: `LABEL-PID-N-RANDOM`.
///
/// Leak tests need a value of their own each: the redactor hides every value resolved earlier in
/// the process, so a canary shared with a test that resolved it would be hidden by that success
/// rather than by the code under test.
pub fn fresh_canary(label: &str) -> String {
    use std::hash::{BuildHasher, RandomState};
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    // RandomState is seeded from the OS per process, so this differs between runs too.
    let random = RandomState::new().hash_one((n, nanos));
    format!("{label}-{}-{n}-{random:016x}", std::process::id())
}

/// A loopback port that was free a moment ago. Prefer letting the program bind port 0 and
/// report its address; use this only where a program needs the number in advance.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("the OS hands out a loopback port")
}

/// Polls `condition` every 25 ms until it holds or `deadline` passes; returns whether it held.
pub fn wait_until(deadline: Duration, mut condition: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + deadline;
    loop {
        if condition() {
            return true;
        }
        if Instant::now() >= end {
            return false;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
}

/// Free space on the file system holding `/`, in percent of its size, measured as the
/// `disk-free` default alert rule measures it (blocks available to unprivileged users).
pub fn host_disk_free_percent() -> f64 {
    let st = rustix::fs::statvfs("/").expect("statvfs / works");
    if st.f_blocks == 0 {
        return 100.0;
    }
    st.f_bavail as f64 / st.f_blocks as f64 * 100.0
}

/// Whether the `disk-free` default rule (warning below 10 % free on `/`) may fire on this host
/// while a test runs.
///
/// That rule judges the machine, not the service under test, so a test of the other rules
/// allows it to fire here, and only here: within half a point of the threshold, because the
/// suite itself writes while it runs. Elsewhere it must be quiet, and the rule's own tests show
/// it firing and quiet on thresholds set around the host's real value.
pub fn host_disk_may_warn() -> bool {
    host_disk_free_percent() < 10.5
}

/// A child process started in its own process group and killed with that group on drop.
#[derive(Debug)]
pub struct ChildGuard {
    child: Option<Child>,
}

impl ChildGuard {
    /// Starts `command` in a new process group, stdin closed.
    pub fn spawn(mut command: Command) -> std::io::Result<Self> {
        use std::os::unix::process::CommandExt;
        command.process_group(0).stdin(Stdio::null());
        Ok(Self {
            child: Some(command.spawn()?),
        })
    }

    /// The child's pid.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    /// Mutable access to the child (to read its pipes or wait for it).
    pub fn child(&mut self) -> &mut Child {
        self.child
            .as_mut()
            .expect("the child is present until dropped")
    }

    /// Sends `signal` (a libc signal number) to the child alone.
    pub fn signal(&self, signal: i32) {
        if let Ok(pid) = i32::try_from(self.pid()) {
            // The child is not reaped until this guard waits for it, so the pid cannot be reused.
            kill(pid, signal);
        }
    }

    /// Waits up to `deadline` for the child to exit and returns its status.
    pub fn wait_timeout(&mut self, deadline: Duration) -> Option<std::process::ExitStatus> {
        let child = self.child();
        let end = Instant::now() + deadline;
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                return Some(status);
            }
            if Instant::now() >= end {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            if let Ok(pid) = i32::try_from(child.id()) {
                kill(-pid, libc::SIGKILL);
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

#[allow(unsafe_code)]
fn kill(pid: i32, signal: i32) {
    // SAFETY: kill(2) has no memory-safety preconditions; errors (ESRCH) are ignored on purpose.
    unsafe {
        libc::kill(pid, signal);
    }
}

/// A running `cutover-demo-hub` on a loopback port the OS picked.
#[derive(Debug)]
pub struct DemoHub {
    /// The process; killed when the hub is dropped.
    pub guard: ChildGuard,
    /// The address it listens on.
    pub addr: SocketAddr,
    _dir: tempfile::TempDir,
}

impl DemoHub {
    /// Starts the demo service with extra arguments and waits until it accepts connections
    /// (not until it is ready: tests of readiness look at `/api/health` themselves).
    pub fn start(args: &[&str]) -> Self {
        Self::start_with(args, &[])
    }

    /// Like [`DemoHub::start`], with extra environment variables.
    pub fn start_with(args: &[&str], envs: &[(&str, &str)]) -> Self {
        let dir = temp_dir();
        let addr_file = dir.path().join("addr");
        let mut command = Command::new(workspace_bin("cutover-demo-hub"));
        command
            .arg("--listen")
            .arg("127.0.0.1:0")
            .arg("--addr-file")
            .arg(&addr_file)
            .args(args);
        for (k, v) in envs {
            command.env(k, v);
        }
        command.stdout(Stdio::null()).stderr(Stdio::inherit());
        let guard = ChildGuard::spawn(command).expect("cutover-demo-hub starts");
        let addr = wait_for_addr_file(&addr_file, DEFAULT_DEADLINE).unwrap_or_else(|| {
            panic!(
                "cutover-demo-hub did not write {} in time",
                addr_file.display()
            )
        });
        Self {
            guard,
            addr,
            _dir: dir,
        }
    }

    /// `http://ADDR` for this hub.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Waits until `/api/health` reports `state == "ready"`.
    pub fn wait_ready(&self) {
        let ready = wait_until(DEFAULT_DEADLINE, || {
            http_get(self.addr, "/api/health").is_ok_and(|r| r.body.contains("\"state\":\"ready\""))
        });
        assert!(ready, "demo hub at {} did not become ready", self.addr);
    }
}

/// Reads a `host:port` written by a program once it is listening.
pub fn wait_for_addr_file(path: &Path, deadline: Duration) -> Option<SocketAddr> {
    let mut addr = None;
    wait_until(deadline, || {
        addr = std::fs::read_to_string(path)
            .ok()
            .and_then(|s| s.trim().parse().ok());
        addr.is_some()
    });
    addr
}

/// A response read by [`http_request`].
#[derive(Debug, Clone)]
pub struct HttpResponse {
    /// The status code.
    pub status: u16,
    /// The header lines, as `(lower-case name, value)`.
    pub headers: Vec<(String, String)>,
    /// The body as text.
    pub body: String,
}

impl HttpResponse {
    /// The first header with this (lower-case) name.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// `GET path` on a fresh connection with 10 s timeouts.
pub fn http_get(addr: SocketAddr, path: &str) -> std::io::Result<HttpResponse> {
    http_request(addr, "GET", path, &[], None)
}

/// One HTTP/1.1 request on a fresh connection (`Connection: close`), with 10 s timeouts.
pub fn http_request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&str>,
) -> std::io::Result<HttpResponse> {
    let timeout = Duration::from_secs(10);
    let mut stream = TcpStream::connect_timeout(&addr, timeout)?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    let mut request = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (k, v) in headers {
        request.push_str(&format!("{k}: {v}\r\n"));
    }
    if let Some(body) = body {
        request.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    request.push_str("\r\n");
    if let Some(body) = body {
        request.push_str(body);
    }
    stream.write_all(request.as_bytes())?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw)?;
    parse_response(&raw)
}

fn parse_response(raw: &[u8]) -> std::io::Result<HttpResponse> {
    let bad = |what: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, what.to_owned());
    let text = String::from_utf8_lossy(raw);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| bad("no end of headers"))?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next().ok_or_else(|| bad("empty response"))?;
    let status = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| bad("no status code"))?;
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
    Ok(HttpResponse {
        status,
        headers,
        body,
    })
}

fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let Ok(n) = usize::from_str_radix(size.trim(), 16) else {
            break;
        };
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        body = rest[n..].trim_start_matches("\r\n");
    }
    out
}

/// An HTTPS front for `upstream` on a loopback port, standing in for the proxy: a fresh
/// self-signed certificate for 127.0.0.1 (its PEM written to `cert_file`), TLS terminated and
/// the bytes copied to `upstream`. Returns the port; it serves until the test process ends.
///
/// # Panics
/// When the certificate, the listener or the runtime cannot be made.
pub fn tls_front(upstream: SocketAddr, cert_file: &Path) -> u16 {
    let cert =
        rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned(), "localhost".to_owned()])
            .expect("the TLS front can be set up");
    std::fs::create_dir_all(cert_file.parent().expect("the TLS front can be set up"))
        .expect("the TLS front can be set up");
    std::fs::write(cert_file, cert.cert.pem()).expect("the TLS front can be set up");
    let key = rustls::pki_types::PrivateKeyDer::Pkcs8(cert.signing_key.serialize_der().into());
    let config = rustls::ServerConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("the TLS front can be set up")
    .with_no_client_auth()
    .with_single_cert(vec![cert.cert.der().clone()], key)
    .expect("the TLS front can be set up");
    let acceptor = tokio_rustls::TlsAcceptor::from(std::sync::Arc::new(config));
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("the TLS front can be set up");
    let port = listener
        .local_addr()
        .expect("the TLS front can be set up")
        .port();
    listener
        .set_nonblocking(true)
        .expect("the TLS front can be set up");
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("the TLS front can be set up");
        runtime.block_on(async move {
            let listener =
                tokio::net::TcpListener::from_std(listener).expect("the TLS front can be set up");
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    return;
                };
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    // A client that refuses the certificate ends its handshake here.
                    let Ok(mut tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let Ok(mut up) = tokio::net::TcpStream::connect(upstream).await else {
                        return;
                    };
                    let _ = tokio::io::copy_bidirectional(&mut tls, &mut up).await;
                });
            }
        });
    });
    port
}
