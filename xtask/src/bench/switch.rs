//! The switch against its limit. What a rollback to a warm standby has to do at least is move
//! traffic; the classic way to do that is one `nginx -s reload` plus the confirmation that the
//! old workers are gone. So, on the same private nginx that cutover-deploy runs (blue-green,
//! the bench manifest, no injected start delay), each round times:
//! - a bare `nginx -s reload` (the master's own command line, so the same prefix and config)
//!   until every worker that served before has exited and a new one is up;
//! - `cutover-deploy rollback` to the warm standby, as a whole process, and whether nginx's
//!   workers changed during it (the switch uses no-reload route markers, see
//!   crates/edge-proxy/src/routes.rs, so normally they do not);
//! - `cutover-deploy deploy` (which makes the next warm standby), its build phase from its
//!   `--json` report, and the service's own start-to-ready time (the release demo hub started
//!   directly, polled every 2 ms until /api/health says ready): cutover's own overhead is the
//!   deploy's wall time minus both.
//!
//! The order of the reload and the rollback alternates each round.

#[allow(clippy::wildcard_imports)]
use super::*;

use super::deploy::Deployment;

/// The nginx master's pid from the deployment's pid file.
fn master_pid(root: &Path) -> Result<u32, String> {
    let file = root.join("proxy/logs/nginx.pid");
    std::fs::read_to_string(&file)
        .ok()
        .and_then(|p| p.trim().parse().ok())
        .ok_or_else(|| format!("no nginx pid in {}", file.display()))
}

/// The pids whose parent is `parent` (from /proc/*/stat).
fn children(parent: u32) -> Vec<u32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .ok()
                .and_then(|s| {
                    // The fields after the command (which may hold spaces) in parentheses.
                    let rest = &s[s.rfind(')')? + 2..];
                    let mut f = rest.split_whitespace();
                    let state = f.next()?;
                    let ppid: u32 = f.next()?.parse().ok()?;
                    Some(ppid == parent && state != "Z")
                })
                .unwrap_or(false)
        })
        .collect::<std::collections::BTreeSet<u32>>()
        .into_iter()
        .collect()
}

/// The nginx command line the master was started with (nginx rewrites its title to
/// `nginx: master process /usr/sbin/nginx -p … -c … -e …`).
fn master_command(pid: u32) -> Result<Vec<String>, String> {
    let raw = std::fs::read(format!("/proc/{pid}/cmdline"))
        .map_err(|e| format!("cannot read nginx's command line: {e}"))?;
    let text = String::from_utf8_lossy(&raw).replace('\0', " ");
    command_after_title(&text)
        .ok_or_else(|| format!("cannot read nginx's command line from `{text}`"))
}

/// The words after `master process` in an nginx master's title (all of them without it).
fn command_after_title(text: &str) -> Option<Vec<String>> {
    let words: Vec<String> = text.split_whitespace().map(str::to_owned).collect();
    let start = words
        .iter()
        .position(|w| w == "process")
        .map_or(0, |i| i + 1);
    let command: Vec<String> = words[start..].to_vec();
    (!command.is_empty()).then_some(command)
}

/// Waits (bounded) until none of `old` is a child of `master` any more and a new one is.
fn old_workers_gone(master: u32, old: &[u32]) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let now = children(master);
        if !now.is_empty() && now.iter().all(|p| !old.contains(p)) {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err("nginx's old workers were still there 30 s after the reload".to_owned());
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// One bare `nginx -s reload` on the deployment's nginx, until the old workers are gone (ms).
fn bare_reload(root: &Path) -> Result<f64, String> {
    let master = master_pid(root)?;
    let command = master_command(master)?;
    let old = children(master);
    let t = Instant::now();
    let out = Command::new(&command[0])
        .args(&command[1..])
        .args(["-s", "reload"])
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run {}: {e}", command[0]))?;
    if !out.status.success() {
        return Err(format!(
            "nginx -s reload failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    old_workers_gone(master, &old)?;
    Ok(t.elapsed().as_secs_f64() * 1000.0)
}

/// The service's own start-to-ready time: the release demo hub started directly, polled every
/// 2 ms until /api/health says ready (ms).
fn service_start_to_ready(release: &Path) -> Result<f64, String> {
    let dir = TempDir::new("ready")?;
    let addr_file = dir.path.join("addr");
    let t = Instant::now();
    let child = Command::new(release.join("cutover-demo-hub"))
        .args(["--listen", "127.0.0.1:0", "--addr-file"])
        .arg(&addr_file)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("cannot start cutover-demo-hub: {e}"))?;
    let mut hub = Hub {
        child,
        addr: SocketAddr::from(([127, 0, 0, 1], 0)),
        _dir: dir,
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(addr) = std::fs::read_to_string(&addr_file)
            .ok()
            .and_then(|a| a.trim().parse().ok())
        {
            hub.addr = addr;
            if get(addr, "/api/health").is_ok_and(|b| b.contains("\"state\":\"ready\"")) {
                return Ok(t.elapsed().as_secs_f64() * 1000.0);
            }
        }
        if Instant::now() > deadline {
            return Err("the demo hub did not become ready within 20 s".to_owned());
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// A phase's duration from a deploy's `--json` report (ms).
fn phase_ms(report: &serde_json::Value, phase: &str) -> Option<f64> {
    report
        .pointer("/phases")?
        .as_array()?
        .iter()
        .find(|p| p.pointer("/phase").and_then(serde_json::Value::as_str) == Some(phase))?
        .pointer("/duration_ms")?
        .as_f64()
}

/// The build phase's duration from a deploy's `--json` report (ms).
fn build_ms(report: &serde_json::Value) -> Option<f64> {
    phase_ms(report, "build")
}

/// cutover's own overhead in a deploy (ms): its wall time less the build, the service's own
/// start-to-ready time and the configured stability window (`[deploy] stable_for`, a wait that
/// watches the new release, not work of cutover's).
fn overhead_ms(deploy: f64, build: f64, ready: f64, stable: f64) -> f64 {
    deploy - build - ready - stable
}

/// What each round measured.
#[derive(Debug, Default, serde::Serialize)]
struct Figures {
    reload_ms: Vec<f64>,
    rollback_ms: Vec<f64>,
    rollback_reloaded_nginx: Vec<bool>,
    deploy_ms: Vec<f64>,
    build_ms: Vec<f64>,
    ready_ms: Vec<f64>,
    stable_ms: Vec<f64>,
    overhead_ms: Vec<f64>,
}

/// The switch rows.
pub(super) fn switch(
    root: &Path,
    release: &Path,
    plan: &Plan,
    details: &mut String,
    raw: &mut Raw,
) -> Result<Vec<Row>, String> {
    let rounds = if plan.quick { 3 } else { 7 };
    let (mut d, _) = Deployment::new(root, release, "blue-green")?;
    let result = (|| -> Result<Figures, String> {
        let mut f = Figures::default();
        d.timed("deploy")?; // cold: the first release, no standby yet
        for round in 0..rounds {
            let ready = service_start_to_ready(release)?;
            let (deploy, report) = d.timed_json("deploy")?;
            let build = build_ms(&report).ok_or("the deploy's JSON report has no build phase")?;
            // No `stable` phase when the window is off.
            let stable = phase_ms(&report, "stable").unwrap_or(0.0);
            f.deploy_ms.push(deploy);
            f.build_ms.push(build);
            f.ready_ms.push(ready);
            f.stable_ms.push(stable);
            f.overhead_ms
                .push(overhead_ms(deploy, build, ready, stable));
            let mut rollback = || -> Result<(), String> {
                let master = master_pid(&d.root)?;
                let before = children(master);
                f.rollback_ms.push(d.timed("rollback")?);
                let after = children(master);
                f.rollback_reloaded_nginx.push(before != after);
                Ok(())
            };
            if round % 2 == 0 {
                f.reload_ms.push(bare_reload(&d.root)?);
                rollback()?;
            } else {
                rollback()?;
                f.reload_ms.push(bare_reload(&d.root)?);
            }
        }
        Ok(f)
    })();
    let down = d.down();
    let f = result?;
    down?;
    let (reload, rollback, overhead) = (
        median(&f.reload_ms),
        median(&f.rollback_ms),
        median(&f.overhead_ms),
    );
    let reloads = f.rollback_reloaded_nginx.iter().filter(|r| **r).count();
    let _ = writeln!(
        details,
        "### Switch\n\nOn the private nginx of a blue-green deployment (the bench manifest, no \
         injected start delay), {rounds} rounds, the order of the first two alternating: a bare \
         `nginx -s reload` (nginx's own command line) until every old worker has exited and a \
         new one is up; `cutover-deploy rollback` to the warm standby (whole process: manifest, \
         lock, probe of the standby, the switch and its confirmation through nginx, journal and \
         audit); then `cutover-deploy deploy`, whose build phase comes from its `--json` report, \
         beside the service's own start-to-ready time (the release demo hub started directly, \
         polled every 2 ms). cutover's overhead = deploy − build − start-to-ready − the \
         stability window (the `stable` phase: `[deploy] stable_for`, 5 s by default, a \
         configured wait that watches the new release; it is listed, not hidden). The switch \
         moves traffic with no-reload route markers (crates/edge-proxy/src/routes.rs): nginx's \
         workers changed during {reloads} of {rounds} rollbacks.\n\n\
         | | per round (ms) | median (ms) |\n|---|---|---|\n\
         | bare `nginx -s reload` + old workers gone | {} | {reload:.1} |\n\
         | `cutover-deploy rollback` (warm standby) | {} | {rollback:.1} |\n\
         | `cutover-deploy deploy` | {} | {:.1} |\n\
         | its build phase | {} | {:.1} |\n\
         | the service's start-to-ready | {} | {:.1} |\n\
         | its stability window (`stable` phase) | {} | {:.1} |\n\
         | cutover's overhead | {} | {overhead:.1} |\n",
        join(&f.reload_ms, 1),
        join(&f.rollback_ms, 1),
        join(&f.deploy_ms, 1),
        median(&f.deploy_ms),
        join(&f.build_ms, 0),
        median(&f.build_ms),
        join(&f.ready_ms, 1),
        median(&f.ready_ms),
        join(&f.stable_ms, 0),
        median(&f.stable_ms),
        join(&f.overhead_ms, 1),
    );
    let per_round =
        |a: &[f64]| -> Vec<f64> { a.iter().zip(&f.reload_ms).map(|(x, r)| x / r).collect() };
    let rb_ratio = rollback / reload;
    let oh_ratio = overhead / reload;
    let rb_ok = rb_ratio <= 1.5;
    let oh_ok = oh_ratio <= 2.0;
    let rows = vec![
        Row {
            goal: "rollback to a warm standby ≤ 1.5× a bare `nginx -s reload` + old workers gone \
                   (same nginx)"
                .to_owned(),
            measured: format!(
                "{rb_ratio:.2}× ({rollback:.1} ms vs {reload:.1} ms, ratio of medians; nginx \
                 reloaded in {reloads} of {rounds} rollbacks){}",
                if rb_ok {
                    String::new()
                } else {
                    format!(" — FAIL: a rollback took {rb_ratio:.1}× a bare reload, above 1.5×")
                }
            ),
            runs: rounds.to_string(),
            spread: spread(&per_round(&f.rollback_ms), 2),
            verdict: pass(rb_ok),
        },
        Row {
            goal:
                "deploy overhead (wall − build − service start-to-ready − stability window) ≤ 2× \
                   a bare reload"
                    .to_owned(),
            measured: format!(
                "{oh_ratio:.2}× ({overhead:.1} ms vs {reload:.1} ms, ratio of medians; deploy \
                 {:.1} ms, build {:.1} ms, start-to-ready {:.1} ms, stability window {:.0} ms){}",
                median(&f.deploy_ms),
                median(&f.build_ms),
                median(&f.ready_ms),
                median(&f.stable_ms),
                if oh_ok {
                    String::new()
                } else {
                    format!(
                        " — FAIL: cutover's own work in a deploy took {oh_ratio:.1}× a bare \
                         reload, above 2×"
                    )
                }
            ),
            runs: rounds.to_string(),
            spread: spread(&per_round(&f.overhead_ms), 1),
            verdict: pass(oh_ok),
        },
    ];
    raw.insert(
        "switch".to_owned(),
        serde_json::to_value(&f).map_err(|e| e.to_string())?,
    );
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_build_phase_comes_from_the_deploy_report() {
        let report = serde_json::json!({"phases": [
            {"phase": "preflight", "duration_ms": 12},
            {"phase": "build", "duration_ms": 31},
            {"phase": "switch", "duration_ms": 4},
        ]});
        assert_eq!(build_ms(&report), Some(31.0));
        assert_eq!(build_ms(&serde_json::json!({"phases": []})), None);
        assert_eq!(build_ms(&serde_json::json!({})), None);
        assert_eq!(phase_ms(&report, "switch"), Some(4.0));
        assert_eq!(phase_ms(&report, "stable"), None);
    }

    #[test]
    fn the_overhead_leaves_out_build_start_to_ready_and_the_stability_window() {
        assert_eq!(overhead_ms(5300.0, 100.0, 10.0, 5000.0), 190.0);
        assert_eq!(overhead_ms(400.0, 100.0, 10.0, 0.0), 290.0);
    }

    #[test]
    fn a_master_s_command_line_is_read_after_its_title() {
        assert_eq!(
            command_after_title("nginx: master process /usr/sbin/nginx -p /r/proxy -c /r/n.conf"),
            Some(vec![
                "/usr/sbin/nginx".to_owned(),
                "-p".to_owned(),
                "/r/proxy".to_owned(),
                "-c".to_owned(),
                "/r/n.conf".to_owned()
            ])
        );
        assert_eq!(command_after_title("nginx: master process"), None);
    }
}
