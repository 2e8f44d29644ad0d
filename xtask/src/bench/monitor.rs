//! cutover-monitor's CPU use.

#[allow(clippy::wildcard_imports)]
use super::*;

/// cutover-monitor's CPU use at a 5 s refresh, on a real terminal (tmux), for a minute.
pub(super) fn monitor(
    _root: &Path,
    release: &Path,
    plan: &Plan,
    details: &mut String,
    raw: &mut Raw,
) -> Result<Vec<Row>, String> {
    output("sh", &["-c", "command -v tmux"]).map_err(|_| {
        "tmux is missing: apt-get install -y --no-install-recommends tmux".to_owned()
    })?;
    let hub = Hub::start(release)?;
    let socket = format!("cutover-bench-{}", std::process::id());
    let command = format!(
        "exec {} --target http://{} --interval 5s --pid {}",
        release.join("cutover-monitor").display(),
        hub.addr,
        hub.child.id()
    );
    let pid: u32 = output(
        "tmux",
        &[
            "-L",
            &socket,
            "new-session",
            "-d",
            "-x",
            "120",
            "-y",
            "40",
            "-P",
            "-F",
            "#{pane_pid}",
            &command,
        ],
    )?
    .trim()
    .parse()
    .map_err(|e| format!("tmux did not report the pane's pid: {e}"))?;
    let server = TmuxServer { socket };
    let hz: f64 = output("getconf", &["CLK_TCK"])?
        .trim()
        .parse()
        .map_err(|e| format!("getconf CLK_TCK: {e}"))?;
    // Let it start and draw its first evaluation, then measure a window of whole intervals.
    std::thread::sleep(Duration::from_secs(2));
    let screen = output("tmux", &["-L", &server.socket, "capture-pane", "-p"])?;
    if !screen.contains("cutover-monitor") || !screen.contains("ALERTS") {
        return Err(format!("the monitor's screen is not showing:\n{screen}"));
    }
    let (t0, c0) = (Instant::now(), cpu_ticks(pid)?);
    std::thread::sleep(Duration::from_secs(plan.monitor_seconds));
    let (elapsed, c1) = (t0.elapsed().as_secs_f64(), cpu_ticks(pid)?);
    let screen = output("tmux", &["-L", &server.socket, "capture-pane", "-p"])?;
    drop(server);
    let seconds = (c1 - c0) as f64 / hz;
    let percent = seconds / elapsed * 100.0;
    let lifetime = c1 as f64 / hz;
    raw.insert(
        "monitor".to_owned(),
        serde_json::json!({"window_s": elapsed, "cpu_s": seconds, "percent_of_one_core": percent, "lifetime_cpu_s": lifetime}),
    );
    let status_line = screen
        .lines()
        .find(|l| l.contains("status"))
        .unwrap_or("")
        .trim_matches(|c: char| c == '│' || c.is_whitespace())
        .to_owned();
    let _ = writeln!(
        details,
        "### Monitor\n\n`cutover-monitor --target URL --interval 5s --pid HUB_PID` in a \
         120×40 tmux pane against the idle demo hub (release build). CPU time from \
         /proc/PID/stat (utime + stime, {hz:.0} ticks/s) over {elapsed:.1} s after a 2 s \
         start: {seconds:.2} s of CPU, {percent:.3} % of one core; over its whole life \
         including start-up, {lifetime:.2} s of CPU. The screen's status line at the end: \
         `{status_line}`.\n"
    );
    Ok(vec![Row {
        goal: "monitor at 5 s refresh ≤ 1 % of one core".to_owned(),
        measured: format!(
            "{percent:.3} % of one core{}",
            fail_words(percent <= 1.0, || format!(
                "the monitor used {percent:.2} % of one core at a 5 s refresh, above 1 %"
            ))
        ),
        runs: format!("1 window of {elapsed:.0} s"),
        spread: format!(
            "one clock tick = {:.3} % over the window",
            1.0 / hz / elapsed * 100.0
        ),
        verdict: pass(percent <= 1.0),
    }])
}
