//! The load generator against wrk: cutover-perf and wrk at the same connection count against the
//! same target (a private, unprivileged nginx serving a 612-byte file, and the demo hub's
//! /api/health), round after round, the order alternating each round (odd rounds wrk first,
//! even rounds cutover-perf first). The goal is the median of the per-round ratios. The rows
//! are produced here; nothing is read from a script's table.

#[allow(clippy::wildcard_imports)]
use super::*;

/// A private nginx (prefix, pid, logs and temp paths under its own temp dir) serving a
/// 612-byte file on a free loopback port; stopped when dropped.
struct StaticNginx {
    child: Child,
    url: String,
    _dir: TempDir,
}

impl StaticNginx {
    fn start() -> Result<StaticNginx, String> {
        output("sh", &["-c", "command -v nginx"]).map_err(|_| {
            "nginx is missing: apt-get install -y --no-install-recommends nginx".to_owned()
        })?;
        let dir = TempDir::new("perf-nginx")?;
        // nginx started as root runs its workers as nobody, who must read the files.
        chmod(&dir.path, "755")?;
        let html = dir.path.join("html");
        std::fs::create_dir_all(html.join("../logs")).map_err(|e| e.to_string())?;
        std::fs::create_dir_all(&html).map_err(|e| e.to_string())?;
        std::fs::write(html.join("index.html"), "x".repeat(612)).map_err(|e| e.to_string())?;
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map_err(|e| format!("cannot find a free port: {e}"))?
            .port();
        let p = dir.path.display();
        let conf = format!(
            "daemon off;\nworker_processes 1;\npid {p}/nginx.pid;\nerror_log {p}/logs/error.log warn;\n\
             events {{ worker_connections 1024; }}\nhttp {{\n  access_log off;\n\
             client_body_temp_path {p}/client_temp;\n  proxy_temp_path {p}/proxy_temp;\n\
             fastcgi_temp_path {p}/fastcgi_temp;\n  uwsgi_temp_path {p}/uwsgi_temp;\n\
             scgi_temp_path {p}/scgi_temp;\n  keepalive_requests 1000000;\n\
             server {{ listen 127.0.0.1:{port}; root {p}/html; }}\n}}\n"
        );
        let conf_path = dir.path.join("nginx.conf");
        std::fs::write(&conf_path, conf).map_err(|e| e.to_string())?;
        let child = Command::new("nginx")
            .arg("-p")
            .arg(&dir.path)
            .arg("-c")
            .arg(&conf_path)
            .arg("-e")
            .arg(dir.path.join("logs/error.log"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("cannot start nginx: {e}"))?;
        let nginx = StaticNginx {
            child,
            url: format!("http://127.0.0.1:{port}/index.html"),
            _dir: dir,
        };
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let deadline = Instant::now() + Duration::from_secs(20);
        while !get(addr, "/index.html").is_ok_and(|r| r.contains("xxxx")) {
            if Instant::now() > deadline {
                return Err("the private nginx did not answer within 20 s".to_owned());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(nginx)
    }
}

impl Drop for StaticNginx {
    /// A fast shutdown (SIGTERM: the master stops its workers, then exits). SIGKILL to the
    /// master alone would leave its worker running as an orphan, here seen spinning at half a
    /// core through the next benchmark; it is the fallback after 10 s only.
    fn drop(&mut self) {
        let pid = self.child.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One tool's run: completed requests per second and its errors.
#[derive(Debug, Clone, serde::Serialize)]
struct Run {
    rps: f64,
    errors: u64,
}

/// `wrk -tN -cC -dSs URL`: its `Requests/sec:` line and its socket errors and non-2xx count.
fn wrk(url: &str, plan: &Plan, threads: usize) -> Result<Run, String> {
    let text = output(
        "wrk",
        &[
            &format!("-t{threads}"),
            &format!("-c{}", plan.perf_connections),
            &format!("-d{}s", plan.perf_seconds),
            url,
        ],
    )?;
    parse_wrk(&text).ok_or_else(|| format!("wrk printed no `Requests/sec:` line: {text}"))
}

/// Reads wrk's summary: `Requests/sec:` and the errors beside it (`Socket errors: connect A,
/// read B, write C, timeout D` and `Non-2xx or 3xx responses: E`).
fn parse_wrk(text: &str) -> Option<Run> {
    let rps = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("Requests/sec:"))?
        .trim()
        .parse()
        .ok()?;
    let mut errors = 0;
    for line in text.lines().map(str::trim) {
        if let Some(rest) = line.strip_prefix("Socket errors:") {
            errors += rest
                .split(',')
                .filter_map(|kv| kv.split_whitespace().nth(1)?.parse::<u64>().ok())
                .sum::<u64>();
        } else if let Some(rest) = line.strip_prefix("Non-2xx or 3xx responses:") {
            errors += rest.trim().parse::<u64>().unwrap_or(0);
        }
    }
    Some(Run { rps, errors })
}

/// `cutover-perf run --url URL -c C -d Ss --json`: requests_per_sec (completed requests only)
/// and errors.
fn perf_run(release: &Path, url: &str, plan: &Plan) -> Result<Run, String> {
    let text = output(
        &release.join("cutover-perf").display().to_string(),
        &[
            "run",
            "--url",
            url,
            "-c",
            &plan.perf_connections.to_string(),
            "-d",
            &format!("{}s", plan.perf_seconds),
            "--json",
        ],
    )?;
    let doc: serde_json::Value = serde_json::from_str(&text)
        .map_err(|e| format!("cutover-perf printed no JSON ({e}): {text}"))?;
    let rps = doc
        .pointer("/requests_per_sec")
        .and_then(serde_json::Value::as_f64)
        .ok_or("cutover-perf's JSON has no requests_per_sec")?;
    let errors = doc
        .pointer("/errors")
        .and_then(serde_json::Value::as_u64)
        .unwrap_or(0);
    Ok(Run { rps, errors })
}

/// cutover-perf vs wrk on a private nginx and the demo hub.
pub(super) fn perf(
    _root: &Path,
    release: &Path,
    plan: &Plan,
    details: &mut String,
    raw: &mut Raw,
) -> Result<Vec<Row>, String> {
    output("sh", &["-c", "command -v wrk"])
        .map_err(|_| "wrk is missing: apt-get install -y --no-install-recommends wrk".to_owned())?;
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let nginx = StaticNginx::start()?;
    let hub = Hub::start(release)?;
    let hub_url = format!("http://{}/api/health", hub.addr);
    let _ = writeln!(
        details,
        "### Load generator\n\nEach round runs wrk (`-t{threads} -c{c} -d{s}s`) and `cutover-perf \
         run -c {c} -d {s}s` against the same target (a private nginx serving a 612-byte file, \
         and the demo hub's /api/health, release build); odd rounds run wrk first, even rounds \
         cutover-perf first. Both count completed requests only (answers of any status); \
         errors are reported beside them.\n\n\
         | target | round | first | wrk req/s | wrk errors | cutover-perf req/s | cutover-perf errors | ratio |\n\
         |---|---|---|---|---|---|---|---|",
        c = plan.perf_connections,
        s = plan.perf_seconds,
    );
    let mut rows = Vec::new();
    let mut figures = serde_json::Map::new();
    for (target, url) in [("nginx", nginx.url.as_str()), ("hub", hub_url.as_str())] {
        let (mut w, mut p, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
        for round in 1..=plan.perf_rounds {
            let wrk_first = round % 2 == 1;
            let (a, b) = if wrk_first {
                let a = wrk(url, plan, threads)?;
                (a, perf_run(release, url, plan)?)
            } else {
                let b = perf_run(release, url, plan)?;
                (wrk(url, plan, threads)?, b)
            };
            let ratio = b.rps / a.rps;
            let _ = writeln!(
                details,
                "| {target} | {round} | {} | {:.0} | {} | {:.0} | {} | {ratio:.3} |",
                if wrk_first { "wrk" } else { "cutover-perf" },
                a.rps,
                a.errors,
                b.rps,
                b.errors
            );
            w.push(a);
            p.push(b);
            ratios.push(ratio);
        }
        let wr: Vec<f64> = w.iter().map(|r| r.rps).collect();
        let pr: Vec<f64> = p.iter().map(|r| r.rps).collect();
        let (mw, mp, mr) = (median(&wr), median(&pr), median(&ratios));
        let perf_errors: u64 = p.iter().map(|r| r.errors).sum();
        let wrk_errors: u64 = w.iter().map(|r| r.errors).sum();
        let _ = writeln!(
            details,
            "| {target} | median of {} | | {mw:.0} | {wrk_errors} (sum) | {mp:.0} | {perf_errors} (sum) | **{mr:.3}** (median of per-round ratios) |",
            plan.perf_rounds
        );
        figures.insert(
            target.to_owned(),
            serde_json::json!({"wrk": w, "cutover_perf": p, "ratios": ratios}),
        );
        let ok = mr >= 1.0;
        rows.push(Row {
            goal: format!(
                "load generator ≥ 1.0× wrk's requests/s ({target}, {} connections, median of \
                 per-round ratios)",
                plan.perf_connections
            ),
            measured: format!(
                "{mr:.2}× (medians {mp:.0} vs {mw:.0} req/s; errors {perf_errors} vs {wrk_errors}){}",
                if ok {
                    String::new()
                } else {
                    format!(
                        " — FAIL: cutover-perf completed {:.0} % fewer requests per second than \
                         wrk against {target}",
                        (1.0 - mr) * 100.0
                    )
                }
            ),
            runs: plan.perf_rounds.to_string(),
            spread: spread(&ratios, 2),
            verdict: pass(ok),
        });
    }
    details.push('\n');
    if plan.perf_rss_seconds > 0 && Path::new("/usr/bin/time").is_file() {
        let dir = TempDir::new("perf-rss")?;
        let rss = dir.path.join("rss");
        let out = Command::new("/usr/bin/time")
            .arg("-f")
            .arg("%M")
            .arg("-o")
            .arg(&rss)
            .arg(release.join("cutover-perf"))
            .args(["run", "--url", &nginx.url, "-c"])
            .arg(plan.perf_connections.to_string())
            .arg("-d")
            .arg(format!("{}s", plan.perf_rss_seconds))
            .arg("--json")
            .output()
            .map_err(|e| format!("cannot run /usr/bin/time cutover-perf: {e}"))?;
        let requests = serde_json::from_slice::<serde_json::Value>(&out.stdout)
            .ok()
            .and_then(|d| d.pointer("/requests").and_then(serde_json::Value::as_u64))
            .unwrap_or(0);
        if let Some(kib) = std::fs::read_to_string(&rss)
            .ok()
            .and_then(|t| t.lines().last()?.trim().parse::<u64>().ok())
        {
            let _ = writeln!(
                details,
                "cutover-perf peak RSS over a {}s run ({requests} requests, {} connections): \
                 {} MiB ({kib} KiB).\n",
                plan.perf_rss_seconds,
                plan.perf_connections,
                kib / 1024
            );
            figures.insert(
                "peak_rss".to_owned(),
                serde_json::json!({"kib": kib, "seconds": plan.perf_rss_seconds, "requests": requests}),
            );
        }
    }
    raw.insert(
        "load_generator".to_owned(),
        serde_json::Value::Object(figures),
    );
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrk_summary_gives_requests_per_second_and_errors() {
        let text = "Running 5s test @ http://127.0.0.1:1/\n  2 threads and 16 connections\n\
                    Socket errors: connect 1, read 2, write 0, timeout 3\n\
                    Non-2xx or 3xx responses: 4\nRequests/sec:  72316.83\nTransfer/sec: 1MB\n";
        let run = parse_wrk(text).unwrap();
        assert!((run.rps - 72316.83).abs() < 1e-6);
        assert_eq!(run.errors, 10);
    }

    #[test]
    fn wrk_output_without_a_rate_is_refused() {
        assert!(parse_wrk("unable to connect to 127.0.0.1:1 Connection refused\n").is_none());
    }
}
