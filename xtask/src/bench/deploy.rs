//! Deploys and rollbacks under load.

#[allow(clippy::wildcard_imports)]
use super::*;

/// Deploys and rollbacks under constant load: blue-green through nginx, and the restart
/// strategy beside it (load straight at the service port), each in its own temp directory with
/// its own ports, driving the release `cutover-deploy` as whole processes.
pub(super) fn deploy(
    root: &Path,
    release: &Path,
    plan: &Plan,
    details: &mut String,
    raw: &mut Raw,
) -> Result<Vec<Row>, String> {
    const GOAL_LOAD: &str = "blue-green deploy under constant load: 0 failed requests \
                             (new connections and keep-alive) and 0 streams cut without notice";
    let runs = if plan.quick { 2 } else { 3 };
    let bg = deploy_under_load(root, release, "blue-green", runs);
    let rs = deploy_under_load(root, release, "restart", runs);
    let _ = writeln!(
        details,
        "### Deploy\n\n`cutover-deploy --manifest M deploy` then {runs} × (`deploy`, `rollback`) \
         per strategy, whole processes, wall time, the manifest being xtask/demo/cutover.toml \
         (pre-flight gate, backup, the demo hub, ready and validate probes) without its \
         injected start delay, with a build step that copies the release demo hub (no cargo) \
         and its own loopback ports and root in a temp directory. The first deploy is cold and \
         not counted. During the {runs} deploys and {runs} rollbacks three kinds of clients \
         run at once, through nginx for blue-green and straight at the service port for \
         restart (it has no standby to switch to): one `GET /api/health` per new connection \
         (2 s timeouts, 5 ms apart); {KEEPALIVE} keep-alive connections sending `GET \
         /api/health` one after another (2 ms apart), reconnecting after a failure; and {SSE} \
         SSE clients on `/api/events`, reconnecting when a stream ends. A request fails on a \
         connect, read or timeout error, a connection closed before its answer, or a status \
         other than 200; a stream that ends after the hub's `stopping` event is a clean end \
         (the client reconnects), one that ends or stalls (3 s without a heartbeat) without it \
         is cut. Failures are counted per kind. Blue-green keeps the replaced release warm as \
         the standby (`keep_standby`), so its rollback is a probe and a switch. Everything is \
         stopped by `cutover-deploy down` at the end.\n"
    );
    let _ = writeln!(
        details,
        "| strategy | deploys (ms) | rollbacks (ms) | deploy median (ms) | rollback median (ms) \
         | new-connection requests ok / failed | keep-alive requests ok / failed | streams: \
         clean ends, cut | failures by kind |\n|---|---|---|---|---|---|---|---|---|"
    );
    for (name, r) in [("blue-green", &bg), ("restart", &rs)] {
        match r {
            Ok(m) => {
                let _ = writeln!(
                    details,
                    "| {name} | {} | {} | {:.0} | {:.0} | {} / {} | {} / {} | {}, {} | {} |",
                    join(&m.deploy_ms, 0),
                    join(&m.rollback_ms, 0),
                    median(&m.deploy_ms),
                    median(&m.rollback_ms),
                    m.fresh.ok,
                    m.fresh.failed(),
                    m.keepalive.ok,
                    m.keepalive.failed(),
                    m.streams.ok,
                    m.streams.failed(),
                    m.kinds(),
                );
            }
            Err(e) => {
                let _ = writeln!(
                    details,
                    "| {name} | error: {e} | - | - | - | - | - | - | - |"
                );
            }
        }
    }
    for (name, r) in [("blue-green", &bg), ("restart", &rs)] {
        if let Ok(m) = r {
            let firsts: Vec<&String> = m
                .fresh
                .first
                .iter()
                .chain(&m.keepalive.first)
                .chain(&m.streams.first)
                .take(4)
                .collect();
            let _ = writeln!(
                details,
                "\n{name}: first (cold) deploy {:.0} ms; rollback / deploy {:.2}× (ratio of \
                 medians, context); load over {:.1} s{}.",
                m.first_ms,
                m.ratio(),
                m.load_seconds,
                if firsts.is_empty() {
                    String::new()
                } else {
                    format!(
                        "; first failures: {}",
                        firsts
                            .iter()
                            .map(|s| s.as_str())
                            .collect::<Vec<_>>()
                            .join("; ")
                    )
                }
            );
        }
    }
    details.push('\n');
    let mut figures = serde_json::Map::new();
    for (name, r) in [("blue_green", &bg), ("restart", &rs)] {
        if let Ok(m) = r {
            figures.insert(
                name.to_owned(),
                serde_json::to_value(m).map_err(|e| e.to_string())?,
            );
        }
    }
    raw.insert("deploy".to_owned(), serde_json::Value::Object(figures));
    let bg = match bg {
        Ok(m) => m,
        Err(e) => {
            return Ok(vec![Row {
                goal: GOAL_LOAD.to_owned(),
                measured: format!("error: {e}"),
                runs: "-".to_owned(),
                spread: "-".to_owned(),
                verdict: Verdict::Fail,
            }]);
        }
    };
    let beside = match &rs {
        Ok(m) => format!("restart beside it, straight at the port: {}", m.kinds()),
        Err(e) => format!("restart beside it: error: {e}"),
    };
    let failed = bg.fresh.failed() + bg.keepalive.failed() + bg.streams.failed();
    let ok = failed == 0 && bg.fresh.ok > 0 && bg.keepalive.ok > 0 && bg.streams.ok > 0;
    Ok(vec![Row {
        goal: GOAL_LOAD.to_owned(),
        measured: format!(
            "{failed} failed: new connections {} ok / {} failed, keep-alive {} / {}, streams {} \
             clean ends / {} cut, through nginx over {runs} deploys + {runs} rollbacks ({beside}){}",
            bg.fresh.ok,
            bg.fresh.failed(),
            bg.keepalive.ok,
            bg.keepalive.failed(),
            bg.streams.ok,
            bg.streams.failed(),
            if ok {
                String::new()
            } else {
                format!(
                    " — FAIL: clients saw {} during blue-green deploys",
                    bg.kinds()
                )
            }
        ),
        runs: format!("{runs} deploys + {runs} rollbacks"),
        spread: "-".to_owned(),
        verdict: pass(ok),
    }])
}

/// Keep-alive connections during the deploy rows.
const KEEPALIVE: usize = 4;
/// SSE clients during the deploy rows.
const SSE: usize = 4;

/// One strategy's deploys and rollbacks under load.
#[derive(Debug, Default, serde::Serialize)]
struct DeployFigures {
    first_ms: f64,
    deploy_ms: Vec<f64>,
    rollback_ms: Vec<f64>,
    /// One request per new connection.
    fresh: Tally,
    /// Keep-alive connections.
    keepalive: Tally,
    /// SSE clients (`ok` = streams that ended cleanly or were still open at the end).
    streams: Tally,
    load_seconds: f64,
}

impl DeployFigures {
    /// Every failure kind with its count, e.g. `keep-alive closed 2, stream cut 1`, or `none`.
    fn kinds(&self) -> String {
        let all: Vec<String> = [
            ("new connection", &self.fresh),
            ("keep-alive", &self.keepalive),
            ("stream", &self.streams),
        ]
        .iter()
        .flat_map(|(who, t)| t.kinds.iter().map(move |(k, n)| format!("{who} {k} {n}")))
        .collect();
        if all.is_empty() {
            "no failures".to_owned()
        } else {
            all.join(", ")
        }
    }

    /// Median rollback over median deploy.
    fn ratio(&self) -> f64 {
        median(&self.rollback_ms) / median(&self.deploy_ms)
    }
}

/// A deployment under a temp root; `down` (then the pid files) stops it when dropped.
pub(super) struct Deployment {
    bin: PathBuf,
    manifest: PathBuf,
    pub(super) root: PathBuf,
    stopped: bool,
    _dir: TempDir,
}

impl Deployment {
    /// Writes the manifest from the demo template with `strategy` and fresh ports.
    pub(super) fn new(
        workspace: &Path,
        release: &Path,
        strategy: &str,
    ) -> Result<(Deployment, SocketAddr), String> {
        let dir = TempDir::new(&format!("deploy-{strategy}"))?;
        let source = dir.path.join("source");
        std::fs::create_dir_all(&source).map_err(|e| format!("{}: {e}", source.display()))?;
        let template = workspace.join("xtask/demo/cutover.toml");
        let text = std::fs::read_to_string(&template)
            .map_err(|e| format!("cannot read {}: {e}", template.display()))?;
        let holders: Vec<std::net::TcpListener> = (0..4)
            .map(|_| std::net::TcpListener::bind("127.0.0.1:0"))
            .collect::<Result<_, _>>()
            .map_err(|e| format!("cannot find free ports: {e}"))?;
        let mut ports = Vec::new();
        for h in &holders {
            ports.push(h.local_addr().map_err(|e| e.to_string())?.port());
        }
        drop(holders);
        let root = dir.path.join("root");
        let hub = release.join("cutover-demo-hub");
        let mut text = text
            .replace("@SOURCE@", &source.display().to_string())
            .replace("@ROOT@", &root.display().to_string())
            .replace("@PORT_BLUE@", &ports[0].to_string())
            .replace("@PORT_GREEN@", &ports[1].to_string())
            .replace("@PORT_HTTP@", &ports[2].to_string())
            .replace("@PORT_CONTROL@", &ports[3].to_string());
        let lines: [(&str, String); 4] = [
            (
                "build = ",
                format!(
                    "build = [\"install\", \"-D\", \"{}\", \"bin/hub\"]",
                    hub.display()
                ),
            ),
            (
                "artifact = ",
                "artifact = { path = \"bin/hub\", min_bytes = 102400, executable = true }"
                    .to_owned(),
            ),
            (
                "start = ",
                "start = [\"{release}/bin/hub\", \"--listen\", \"{host}:{port}\", \
                 \"--release-id\", \"{release_id}\"]"
                    .to_owned(),
            ),
            ("strategy = ", format!("strategy = \"{strategy}\"")),
        ];
        for (prefix, line) in lines {
            let old = text
                .lines()
                .find(|l| l.starts_with(prefix))
                .ok_or_else(|| format!("{} has no `{prefix}…` line", template.display()))?
                .to_owned();
            text = text.replace(&old, &line);
        }
        // The bench manifest injects no start delay: the figures are what cutover itself costs.
        let text: String = text
            .lines()
            .filter(|l| !l.starts_with("env = ") || !l.contains("CUTOVER_DEMO_START_DELAY"))
            .map(|l| format!("{l}\n"))
            .collect();
        let manifest = dir.path.join("cutover.toml");
        std::fs::write(&manifest, text)
            .map_err(|e| format!("cannot write {}: {e}", manifest.display()))?;
        let target = if strategy == "restart" {
            ports[0]
        } else {
            ports[2]
        };
        Ok((
            Deployment {
                bin: release.join("cutover-deploy"),
                manifest,
                root,
                stopped: false,
                _dir: dir,
            },
            SocketAddr::from(([127, 0, 0, 1], target)),
        ))
    }

    /// Wall time (ms) of one `cutover-deploy` command that must succeed.
    pub(super) fn timed(&self, command: &str) -> Result<f64, String> {
        self.run(command, false).map(|(ms, _)| ms)
    }

    /// Wall time (ms) and the `--json` report of one `cutover-deploy` command that must succeed.
    pub(super) fn timed_json(&self, command: &str) -> Result<(f64, serde_json::Value), String> {
        self.run(command, true)
    }

    fn run(&self, command: &str, json: bool) -> Result<(f64, serde_json::Value), String> {
        let mut c = Command::new(&self.bin);
        c.arg("--manifest").arg(&self.manifest);
        if json {
            c.arg("--json");
        }
        let t = Instant::now();
        let out = c
            .arg(command)
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("cannot run {}: {e}", self.bin.display()))?;
        let ms = t.elapsed().as_secs_f64() * 1000.0;
        if out.status.success() {
            let doc = if json {
                serde_json::from_slice(&out.stdout)
                    .map_err(|e| format!("cutover-deploy --json {command} printed no JSON: {e}"))?
            } else {
                serde_json::Value::Null
            };
            Ok((ms, doc))
        } else {
            let stderr = String::from_utf8_lossy(&out.stderr);
            let tail: Vec<&str> = stderr.lines().rev().take(3).collect();
            Err(format!(
                "cutover-deploy {command} failed ({}): {}",
                out.status,
                tail.into_iter().rev().collect::<Vec<_>>().join(" / ")
            ))
        }
    }

    /// `cutover-deploy down`; on failure, stops what the pid files name.
    pub(super) fn down(&mut self) -> Result<(), String> {
        self.stopped = true;
        let down = self.timed("down").map(|_| ());
        if down.is_err() {
            self.kill_by_pid_files();
        }
        down
    }

    /// The last resort: the nginx master and every slot's supervisor and process group.
    fn kill_by_pid_files(&self) {
        let nginx = self.root.join("proxy/logs/nginx.pid");
        if let Some(pid) = std::fs::read_to_string(&nginx)
            .ok()
            .and_then(|p| p.trim().parse::<u32>().ok())
        {
            kill(&["-TERM", &pid.to_string()]);
        }
        let Ok(slots) = std::fs::read_dir(self.root.join("state/proc")) else {
            return;
        };
        for slot in slots.flatten() {
            let Some(state) = std::fs::read_to_string(slot.path().join("state.json"))
                .ok()
                .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
            else {
                continue;
            };
            if state.pointer("/state").and_then(serde_json::Value::as_str) == Some("stopped") {
                continue;
            }
            if let Some(pgid) = state
                .pointer("/group/pgid")
                .and_then(serde_json::Value::as_f64)
            {
                kill(&["-TERM", "--", &format!("-{pgid:.0}")]);
            }
            if let Some(pid) = state
                .pointer("/supervisor/pid")
                .and_then(serde_json::Value::as_f64)
            {
                kill(&["-TERM", &format!("{pid:.0}")]);
            }
        }
    }
}

impl Drop for Deployment {
    fn drop(&mut self) {
        if !self.stopped {
            let _ = self.down();
        }
    }
}

/// `kill ARGS`, quietly, ignoring the outcome (the process may be gone already).
fn kill(args: &[&str]) {
    let _ = Command::new("kill")
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

/// First deploy, then `runs` × (deploy, rollback) under the load threads, then `down`.
fn deploy_under_load(
    workspace: &Path,
    release: &Path,
    strategy: &str,
    runs: usize,
) -> Result<DeployFigures, String> {
    let (mut d, target) = Deployment::new(workspace, release, strategy)?;
    let mut figures = DeployFigures {
        first_ms: d.timed("deploy")?,
        ..DeployFigures::default()
    };
    let stop = AtomicBool::new(false);
    let t = Instant::now();
    let result = std::thread::scope(|s| {
        let fresh = s.spawn(|| fresh_loop(target, &stop));
        let keepalive: Vec<_> = (0..KEEPALIVE)
            .map(|_| s.spawn(|| keepalive_loop(target, &stop)))
            .collect();
        let streams: Vec<_> = (0..SSE)
            .map(|_| s.spawn(|| sse_loop(target, &stop)))
            .collect();
        // Let every client connect before the first deploy.
        std::thread::sleep(Duration::from_millis(300));
        let mut result = Ok(());
        for _ in 0..runs {
            match d.timed("deploy").and_then(|dep| {
                figures.deploy_ms.push(dep);
                d.timed("rollback")
            }) {
                Ok(rb) => figures.rollback_ms.push(rb),
                Err(e) => {
                    result = Err(e);
                    break;
                }
            }
        }
        std::thread::sleep(Duration::from_millis(300));
        stop.store(true, Ordering::Relaxed);
        let mut join =
            |h: std::thread::ScopedJoinHandle<'_, Tally>, into: &mut Tally| match h.join() {
                Ok(t) => into.add(t),
                Err(_) => result = Err("a load thread panicked".to_owned()),
            };
        join(fresh, &mut figures.fresh);
        for h in keepalive {
            join(h, &mut figures.keepalive);
        }
        for h in streams {
            join(h, &mut figures.streams);
        }
        result
    });
    figures.load_seconds = t.elapsed().as_secs_f64();
    let down = d.down();
    result?;
    down?;
    Ok(figures)
}

/// What one kind of client saw: successes, failures by kind, the first few failures.
#[derive(Debug, Default, serde::Serialize)]
struct Tally {
    ok: u64,
    kinds: std::collections::BTreeMap<String, u64>,
    first: Vec<String>,
}

impl Tally {
    fn fail(&mut self, kind: &str, what: String, t: Instant) {
        *self.kinds.entry(kind.to_owned()).or_default() += 1;
        if self.first.len() < 3 {
            self.first.push(format!(
                "{kind}: {what} at {:.1} s",
                t.elapsed().as_secs_f64()
            ));
        }
    }

    fn failed(&self) -> u64 {
        self.kinds.values().sum()
    }

    fn add(&mut self, other: Tally) {
        self.ok += other.ok;
        for (k, n) in other.kinds {
            *self.kinds.entry(k).or_default() += n;
        }
        for f in other.first {
            if self.first.len() < 3 {
                self.first.push(f);
            }
        }
    }
}

/// The kind of an I/O failure: `timeout` or `read`.
fn io_kind(e: &std::io::Error) -> &'static str {
    match e.kind() {
        std::io::ErrorKind::TimedOut | std::io::ErrorKind::WouldBlock => "timeout",
        _ => "read",
    }
}

/// How many requests or streams one client makes at most.
const MAX_REQUESTS: u64 = 200_000;

/// One `GET /api/health` per connection until `stop` (or a bound), counting the outcomes.
fn fresh_loop(target: SocketAddr, stop: &AtomicBool) -> Tally {
    let timeout = Duration::from_secs(2);
    let mut tally = Tally::default();
    let t = Instant::now();
    while !stop.load(Ordering::Relaxed) && tally.ok + tally.failed() < MAX_REQUESTS {
        let s = match TcpStream::connect_timeout(&target, timeout) {
            Ok(s) => s,
            Err(e) => {
                tally.fail("connect", e.to_string(), t);
                std::thread::sleep(Duration::from_millis(5));
                continue;
            }
        };
        let outcome = (|| -> std::io::Result<String> {
            let mut s = s;
            s.set_read_timeout(Some(timeout))?;
            s.set_write_timeout(Some(timeout))?;
            write!(
                s,
                "GET /api/health HTTP/1.1\r\nHost: {target}\r\nConnection: close\r\n\r\n"
            )?;
            let mut out = String::new();
            s.read_to_string(&mut out)?;
            Ok(out)
        })();
        match outcome {
            Ok(r) if r.starts_with("HTTP/1.1 200") || r.starts_with("HTTP/1.0 200") => {
                tally.ok += 1;
            }
            Ok(r) if r.is_empty() => tally.fail("closed", "no answer".to_owned(), t),
            Ok(r) => tally.fail(
                "status",
                format!("`{}`", r.lines().next().unwrap_or_default()),
                t,
            ),
            Err(e) => tally.fail(io_kind(&e), e.to_string(), t),
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    tally
}

/// Reads one HTTP/1.1 answer (Content-Length or chunked body): its status and whether the
/// server will close the connection. `Err((kind, what))` on failure.
fn read_answer(r: &mut impl std::io::BufRead) -> Result<(u16, bool), (&'static str, String)> {
    let io = |e: std::io::Error| (io_kind(&e), e.to_string());
    let mut line = String::new();
    if r.read_line(&mut line).map_err(io)? == 0 {
        return Err(("closed", "connection closed before the answer".to_owned()));
    }
    let status: u16 = line
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| ("protocol", format!("bad status line `{}`", line.trim())))?;
    let (mut length, mut chunked, mut close) = (0usize, false, false);
    loop {
        line.clear();
        if r.read_line(&mut line).map_err(io)? == 0 {
            return Err(("closed", "connection closed in the headers".to_owned()));
        }
        let l = line.trim_end();
        if l.is_empty() {
            break;
        }
        let lower = l.to_ascii_lowercase();
        if let Some(v) = lower.strip_prefix("content-length:") {
            length = v.trim().parse().unwrap_or(0);
        } else if lower.starts_with("transfer-encoding:") && lower.contains("chunked") {
            chunked = true;
        } else if lower.starts_with("connection:") && lower.contains("close") {
            close = true;
        }
    }
    let mut body = vec![0u8; length];
    if chunked {
        loop {
            line.clear();
            r.read_line(&mut line).map_err(io)?;
            let n = usize::from_str_radix(line.trim(), 16)
                .map_err(|_| ("protocol", format!("bad chunk size `{}`", line.trim())))?;
            let mut chunk = vec![0u8; n + 2];
            r.read_exact(&mut chunk).map_err(io)?;
            if n == 0 {
                break;
            }
        }
    } else {
        r.read_exact(&mut body).map_err(io)?;
    }
    Ok((status, close))
}

/// A keep-alive connection sending `GET /api/health` one after another until `stop`,
/// reconnecting after a failure or a `Connection: close`.
fn keepalive_loop(target: SocketAddr, stop: &AtomicBool) -> Tally {
    let timeout = Duration::from_secs(2);
    let mut tally = Tally::default();
    let t = Instant::now();
    let mut conn: Option<std::io::BufReader<TcpStream>> = None;
    while !stop.load(Ordering::Relaxed) && tally.ok + tally.failed() < MAX_REQUESTS {
        let r = match conn.as_mut() {
            Some(r) => r,
            None => match TcpStream::connect_timeout(&target, timeout).and_then(|s| {
                s.set_read_timeout(Some(timeout))?;
                s.set_write_timeout(Some(timeout))?;
                Ok(s)
            }) {
                Ok(s) => conn.insert(std::io::BufReader::new(s)),
                Err(e) => {
                    tally.fail("connect", e.to_string(), t);
                    std::thread::sleep(Duration::from_millis(5));
                    continue;
                }
            },
        };
        let sent = write!(
            r.get_mut(),
            "GET /api/health HTTP/1.1\r\nHost: {target}\r\n\r\n"
        );
        let outcome = match sent {
            Ok(()) => read_answer(r),
            Err(e) => Err(("write", e.to_string())),
        };
        match outcome {
            Ok((200, close)) => {
                tally.ok += 1;
                if close {
                    conn = None;
                }
            }
            Ok((status, _)) => {
                tally.fail("status", format!("status {status}"), t);
                conn = None;
            }
            Err((kind, what)) => {
                tally.fail(kind, what, t);
                conn = None;
            }
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    tally
}

/// An SSE client on `/api/events` until `stop`, reconnecting when a stream ends. A stream that
/// ends after the `stopping` event counts as ok (a clean end); one still open at `stop` counts
/// as ok; one that ends, or goes 3 s without a byte (heartbeats come every second), without it
/// counts as cut.
fn sse_loop(target: SocketAddr, stop: &AtomicBool) -> Tally {
    use std::io::BufRead as _;
    let mut tally = Tally::default();
    let t = Instant::now();
    while !stop.load(Ordering::Relaxed) && tally.ok + tally.failed() < MAX_REQUESTS {
        let s = match TcpStream::connect_timeout(&target, Duration::from_secs(2)).and_then(|s| {
            s.set_read_timeout(Some(Duration::from_secs(3)))?;
            Ok(s)
        }) {
            Ok(s) => s,
            Err(e) => {
                tally.fail("connect", e.to_string(), t);
                std::thread::sleep(Duration::from_millis(20));
                continue;
            }
        };
        let mut r = std::io::BufReader::new(s);
        if let Err(e) = write!(
            r.get_mut(),
            "GET /api/events HTTP/1.1\r\nHost: {target}\r\nAccept: text/event-stream\r\n\
             Connection: close\r\n\r\n"
        ) {
            tally.fail("write", e.to_string(), t);
            continue;
        }
        let mut line = String::new();
        match r.read_line(&mut line) {
            Ok(0) => {
                tally.fail("closed", "no answer".to_owned(), t);
                continue;
            }
            Err(e) => {
                tally.fail(io_kind(&e), e.to_string(), t);
                continue;
            }
            Ok(_) if line.split_whitespace().nth(1) != Some("200") => {
                tally.fail("status", format!("`{}`", line.trim()), t);
                std::thread::sleep(Duration::from_millis(20));
                continue;
            }
            Ok(_) => {}
        }
        let mut stopping = false;
        loop {
            if stop.load(Ordering::Relaxed) {
                tally.ok += 1;
                break;
            }
            line.clear();
            match r.read_line(&mut line) {
                // The end of the chunked body (`0`) or of the connection.
                Ok(0) => {
                    if stopping {
                        tally.ok += 1;
                    } else {
                        tally.fail("cut", "stream ended without `stopping`".to_owned(), t);
                    }
                    break;
                }
                Ok(_) if line.trim() == "0" => {
                    if stopping {
                        tally.ok += 1;
                    } else {
                        tally.fail("cut", "stream ended without `stopping`".to_owned(), t);
                    }
                    break;
                }
                Ok(_) => stopping |= line.contains("stopping"),
                Err(e) if stop.load(Ordering::Relaxed) => {
                    let _ = e;
                    tally.ok += 1;
                    break;
                }
                Err(e) => {
                    let kind = if io_kind(&e) == "timeout" {
                        "stall"
                    } else {
                        "cut"
                    };
                    tally.fail(kind, e.to_string(), t);
                    break;
                }
            }
        }
    }
    tally
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(text: &str) -> Result<(u16, bool), (&'static str, String)> {
        read_answer(&mut std::io::Cursor::new(text.as_bytes().to_vec()))
    }

    #[test]
    fn answers_are_read_whole_by_length_or_chunks() {
        assert_eq!(
            answer("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"),
            Ok((200, false))
        );
        assert_eq!(
            answer(
                "HTTP/1.1 503 Busy\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n\
                 2\r\nno\r\n0\r\n\r\n"
            ),
            Ok((503, true))
        );
        // Two answers on one keep-alive connection: the first read leaves the second intact.
        let mut two = std::io::Cursor::new(
            b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nxHTTP/1.1 204 No\r\n\r\n".to_vec(),
        );
        assert_eq!(read_answer(&mut two), Ok((200, false)));
        assert_eq!(read_answer(&mut two), Ok((204, false)));
    }

    #[test]
    fn failures_are_named_by_kind() {
        assert_eq!(answer("").unwrap_err().0, "closed");
        assert_eq!(
            answer("HTTP/1.1 200 OK\r\nContent-").unwrap_err().0,
            "closed"
        );
        assert_eq!(answer("garbage\r\n\r\n").unwrap_err().0, "protocol");
        assert_eq!(
            answer("HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nshort")
                .unwrap_err()
                .0,
            "read"
        );
    }

    #[test]
    fn tallies_count_failures_per_kind_and_keep_the_first_three() {
        let t0 = Instant::now();
        let mut a = Tally {
            ok: 5,
            ..Tally::default()
        };
        for _ in 0..4 {
            a.fail("closed", "x".to_owned(), t0);
        }
        let mut b = Tally::default();
        b.fail("timeout", "y".to_owned(), t0);
        b.ok = 2;
        a.add(b);
        assert_eq!((a.ok, a.failed()), (7, 5));
        assert_eq!(a.kinds["closed"], 4);
        assert_eq!(a.kinds["timeout"], 1);
        assert_eq!(a.first.len(), 3);
        let figures = DeployFigures {
            keepalive: a,
            ..DeployFigures::default()
        };
        assert_eq!(figures.kinds(), "keep-alive closed 4, keep-alive timeout 1");
        assert_eq!(DeployFigures::default().kinds(), "no failures");
    }
}
