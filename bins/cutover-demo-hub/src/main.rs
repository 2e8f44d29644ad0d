//! `cutover-demo-hub`: the bundled demo service that `cargo xtask deploy` deploys by default and
//! that every cutover test targets.
//!
//! It answers the real MCP Hub's API shapes (`/api/health`, `/api/filtering/stats`, `/api/tools`,
//! `/api/servers`) with the same semantics that tripped the replaced tooling (`status` is always
//! `"ok"`; readiness is `state == "ready"`; the stats route answers 404 while starting), and adds
//! what the real service never had: `/api/stats` and `/metrics`, computed from the traffic it
//! actually serves. Fault knobs produce on purpose every failure a deploy must catch.
//!
//! `--shape mcp-hub` (or `CUTOVER_DEMO_SHAPE=mcp-hub`) serves only what MCP Hub 4.3.0 serves:
//! no `/api/stats`, `/metrics` answering 200 with the web UI's HTML, and
//! `/api/filtering/stats` with fractions, `cacheHitRate` 0 until the first lookup and
//! `totalTools` counting the tool checks (lookups) made so far. The knobs work in both shapes.

// A binary: what it prints is its output. Libraries never print (the workspace denies it).
#![allow(clippy::print_stdout, clippy::print_stderr)]

mod config;
mod notify;
mod routes;
mod stats;
mod streams;

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use tokio::signal::unix::{SignalKind, signal};

use cutover_cli::Failure;

use crate::config::Args;
use crate::routes::AppState;

fn main() -> ExitCode {
    cutover_cli::exit(run())
}

fn run() -> Result<i32, Failure> {
    // Socket activation must be read before any thread exists: listenfd clears the variables.
    let inherited = notify::take_activated_listener();
    let args: Args = cutover_cli::parse()?;
    cutover_cli::init_logging(args.log_format);
    if args.fail_start {
        tracing::error!("--fail-start: exiting at once as asked");
        return Err(Failure::line(
            1,
            "cutover-demo-hub: failing at start as asked (--fail-start)",
        ));
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|err| {
            Failure::line(
                1,
                format!("cutover-demo-hub: cannot start the runtime: {err}"),
            )
        })?;
    let outcome = runtime.block_on(serve(args, inherited));
    // Requests still in flight after the grace period are abandoned, not waited for.
    runtime.shutdown_background();
    outcome
}

async fn serve(
    args: Args,
    inherited: std::io::Result<Option<std::net::TcpListener>>,
) -> Result<i32, Failure> {
    let listener = bind(&args, inherited).map_err(|err| {
        Failure::line(
            1,
            format!("cutover-demo-hub: cannot listen on {}: {err}", args.listen),
        )
    })?;
    let local = listener.local_addr().ok();
    if let (Some(path), Some(addr)) = (&args.addr_file, local)
        && let Err(err) = config::write_atomically(path, &addr.to_string())
    {
        return Err(Failure::line(
            1,
            format!("cutover-demo-hub: cannot write {}: {err}", path.display()),
        ));
    }
    tracing::info!(addr = ?local, release = %args.release_id, "listening");

    let state = Arc::new(AppState::new(&args));
    spawn_readiness(state.clone(), args.start_delay);
    if let Some(after) = args.crash_after {
        tokio::spawn(async move {
            tokio::time::sleep(after).await;
            tracing::error!("--crash-after elapsed: aborting as asked");
            std::process::abort();
        });
    }

    let streams = streams::Streams::new(&args.release_id);
    let shutdown = Arc::new(tokio::sync::Notify::new());
    let server = {
        let shutdown = shutdown.clone();
        let app = routes::router(state.clone(), streams.clone());
        tokio::spawn(async move {
            axum::serve(
                listener,
                app.into_make_service_with_connect_info::<SocketAddr>(),
            )
            .with_graceful_shutdown(async move { shutdown.notified().await })
            .await
        })
    };

    wait_for_stop_signal(args.ignore_sigterm).await;
    state.set_stopping();
    tracing::info!(grace = ?args.grace, "stopping: no new connections, finishing in-flight requests");
    // Streams first: each gets `stopping` and its end, or it would hold the shutdown open.
    streams.stop();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
    while streams.open() > 0 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    shutdown.notify_one();
    match tokio::time::timeout(args.grace, server).await {
        Ok(Ok(Ok(()))) => Ok(0),
        Ok(Ok(Err(err))) => Err(Failure::line(
            1,
            format!("cutover-demo-hub: server error: {err}"),
        )),
        Ok(Err(join)) => Err(Failure::line(
            1,
            format!("cutover-demo-hub: server task failed: {join}"),
        )),
        Err(_) => {
            tracing::warn!(grace = ?args.grace, "grace period over with requests still in flight");
            Ok(0)
        }
    }
}

fn bind(
    args: &Args,
    inherited: std::io::Result<Option<std::net::TcpListener>>,
) -> std::io::Result<tokio::net::TcpListener> {
    let std_listener = match inherited? {
        Some(l) => {
            tracing::info!("using the socket handed over by socket activation (LISTEN_FDS)");
            l
        }
        None => std::net::TcpListener::bind(&args.listen)?,
    };
    std_listener.set_nonblocking(true)?;
    tokio::net::TcpListener::from_std(std_listener)
}

fn spawn_readiness(state: Arc<AppState>, delay: Duration) {
    tokio::spawn(async move {
        tokio::time::sleep(delay).await;
        if state.become_ready() {
            notify::ready();
        }
    });
}

async fn wait_for_stop_signal(ignore_sigterm: bool) {
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        // Without signal handlers the process still dies on SIGTERM by default; wait forever.
        std::future::pending::<()>().await;
        return;
    };
    loop {
        tokio::select! {
            _ = term.recv() => {
                if ignore_sigterm {
                    tracing::warn!("SIGTERM received and ignored (--ignore-sigterm)");
                    continue;
                }
                return;
            }
            _ = int.recv() => return,
        }
    }
}
