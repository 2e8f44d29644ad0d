//! Streams and keep-alive clients across deploys (issue 16): the end-to-end scenario of
//! `streams_sessions_and_keep_alive_clients_survive_a_deploy_and_a_rollback` (real nginx over
//! HTTPS, the demo hub, wrk with 4 keep-alive connections, SSE clients, an MCP client posting
//! every 100 ms), repeated for N deploys and rollbacks, its figures read from its output.

use std::path::Path;
use std::process::Command;

use super::{Plan, Row, fail_words, pass};

/// Runs the scenario and turns what it printed into rows.
pub(super) fn streams(
    root: &Path,
    _release: &Path,
    plan: &Plan,
    details: &mut String,
    _raw: &mut super::Raw,
) -> Result<Vec<Row>, String> {
    let rounds = if plan.quick { 1 } else { 10 };
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    // The scenario starts the workspace's debug binaries (as `cargo xtask test` builds them).
    crate::run(
        root,
        &cargo,
        &["build", "--workspace", "--bins", "--locked"],
        "debug build of the binaries the scenario starts",
    )?;
    let out = Command::new(&cargo)
        .args([
            "nextest",
            "run",
            "-p",
            "cutover-deploy",
            "--no-capture",
            "-E",
            "test(streams_sessions_and_keep_alive_clients)",
        ])
        .env("CUTOVER_STREAM_DEPLOYS", rounds.to_string())
        .current_dir(root)
        .output()
        .map_err(|e| format!("cannot run cargo nextest: {e}"))?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let find = |prefix: &str| {
        text.lines()
            .map(str::trim)
            .find(|l| l.contains(prefix))
            .map(str::to_owned)
    };
    let requests = find("requests in").unwrap_or_default();
    let socket_errors = find("Socket errors").unwrap_or_else(|| "Socket errors: none".to_owned());
    let non2xx = find("Non-2xx").unwrap_or_else(|| "Non-2xx: none".to_owned());
    let posts = find("MCP posts:").unwrap_or_default();
    let slowest = find("the slowest old stream closed").unwrap_or_default();
    let ok = out.status.success();
    let _ = std::fmt::Write::write_fmt(
        details,
        format_args!(
            "\n### Streams and keep-alive clients ({rounds} deploys and rollbacks)\n\n\
             The e2e scenario `streams_sessions_and_keep_alive_clients_survive_a_deploy_and_a_rollback` \
             with `CUTOVER_STREAM_DEPLOYS={rounds}`: wrk ({requests}; {socket_errors}; {non2xx}), \
             {posts}; {slowest}.\n"
        ),
    );
    let kept =
        ok && !requests.is_empty() && socket_errors.ends_with("none") && non2xx.ends_with("none");
    let posted = ok && posts.ends_with("failed []");
    // What the scenario said when it failed: its last lines.
    let said = || {
        let tail: Vec<&str> = text
            .lines()
            .rev()
            .filter(|l| !l.trim().is_empty())
            .take(2)
            .collect();
        tail.into_iter().rev().collect::<Vec<_>>().join(" / ")
    };
    Ok(vec![
        Row {
            goal: format!(
                "keep-alive HTTPS load (wrk, 4 connections) across {rounds} deploys + rollbacks: 0 failed"
            ),
            measured: format!(
                "{requests}; {socket_errors}; {non2xx}{}",
                fail_words(kept, || if ok {
                    "wrk's keep-alive clients saw failed requests during the deploys".to_owned()
                } else {
                    format!("the scenario failed ({}): {}", out.status, said())
                })
            ),
            runs: "1".to_owned(),
            spread: "-".to_owned(),
            verdict: pass(kept),
        },
        Row {
            goal: format!("MCP posts across {rounds} deploys + rollbacks: 0 lost"),
            measured: format!(
                "{}{}",
                posts.trim_start_matches("MCP posts: "),
                fail_words(posted, || if ok {
                    "some MCP posts failed during the deploys".to_owned()
                } else {
                    "the scenario failed, so the posts were not all counted".to_owned()
                })
            ),
            runs: "1".to_owned(),
            spread: "-".to_owned(),
            verdict: pass(posted),
        },
        Row {
            goal: "switch to the last old stream closed: ≤ drain (1 s) + 1 s".to_owned(),
            measured: format!(
                "{slowest}{}",
                fail_words(ok, || {
                    "the scenario failed: an old stream outlived drain + 1 s, or it stopped \
                     before measuring"
                        .to_owned()
                })
            ),
            runs: rounds.to_string(),
            spread: "-".to_owned(),
            verdict: pass(ok),
        },
    ])
}
