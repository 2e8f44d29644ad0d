//! `cutover-edge`: render, check, start, switch and stop the nginx in front of a service, so
//! that scripted pipelines can drive the proxy themselves. Settings come from cutover.toml's
//! `[proxy]` table when a manifest is found, and from flags for one-off use (flags win). The
//! instance's directory defaults to `[proxy] dir`, else, when the manifest describes a
//! deployment, the pipeline's own `<root>/proxy`. `metrics` prints (or, with `--listen`,
//! serves) what users got, measured from nginx's JSON access log by `edge-signals`, as
//! Prometheus text, naming upstreams after the deployment's slots and releases; `rotate`
//! rotates the access logs by size.
//!
//! Exit codes: 0 done; 2 failed (a switch that was refused or not confirmed leaves traffic on
//! the previous upstream); 3 nginx is not installed; 64 usage; 78 invalid configuration.

// A binary: what it prints is its output. Libraries never print (the workspace denies it).
#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use cutover_cli::{
    CommonArgs, EXIT_CONFIG, EXIT_FAIL, EXIT_OK, EXIT_UNKNOWN, Failure, Status, print_json,
};
use edge_proxy::{
    DEFAULT_ACCESS_LOG_MAX_BYTES, EdgeError, Layout, Nginx, NginxInstance, NginxSwitch,
    ProxyConfig, ProxyKind, RateLimit, RenderOptions, RotateWhen, SwitchTarget, TlsConfig,
    TrafficSwitch, admin_token_map_placeholder, render_nginx_conf, render_upstream,
    rotate_access_logs, stop_instance,
};
use serde_json::json;

mod metrics;

/// Drive the nginx in front of a cutover service.
#[derive(Debug, Parser)]
#[command(name = "cutover-edge", version, about, long_about = None)]
struct Cli {
    #[command(flatten)]
    common: CommonArgs,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Print the nginx configuration (the admin token is shown as a placeholder).
    Render(ProxyArgs),
    /// Render into a scratch directory and run `nginx -t` on it.
    Check(ProxyArgs),
    /// Start a private nginx under --dir and return once it serves.
    Up(UpArgs),
    /// Move traffic to --upstream; returns once nginx shows it serving (exit 2 and traffic
    /// unchanged otherwise).
    Switch(SwitchArgs),
    /// Stop the nginx under --dir (graceful, then forced).
    Down(DownArgs),
    /// Print what users got, measured at nginx (its JSON access log), as Prometheus text;
    /// with --listen, serve it at /metrics until killed.
    Metrics(MetricsArgs),
    /// Rotate the access logs when larger than `[proxy] access_log_max_bytes` (or now, with
    /// --force) and have nginx reopen them.
    Rotate(RotateArgs),
}

/// Settings that shape the configuration; each overrides `[proxy]`.
#[derive(Debug, Clone, Args)]
struct ProxyArgs {
    /// Plain-HTTP listen address (default without a manifest: a free loopback port).
    #[arg(long, value_name = "ADDR")]
    listen_http: Vec<SocketAddr>,
    /// HTTPS listen address (turns TLS on).
    #[arg(long, value_name = "ADDR")]
    listen_https: Vec<SocketAddr>,
    /// Generate a self-signed certificate (implies TLS; default HTTPS address: a free port).
    #[arg(long)]
    self_signed: bool,
    /// Loopback control listener used to confirm switches (default: a free loopback port).
    #[arg(long, value_name = "ADDR")]
    control: Option<SocketAddr>,
    /// Rate limit for every rate-limited location, such as 10r/s.
    #[arg(long, value_name = "RATE")]
    rate_limit: Option<String>,
    /// Burst for --rate-limit.
    #[arg(long, value_name = "N")]
    burst: Option<u32>,
    /// nginx server_name.
    #[arg(long)]
    server_name: Option<String>,
}

#[derive(Debug, Args)]
struct UpArgs {
    /// The instance's directory (nginx prefix); default `[proxy] dir`, else the
    /// deployment's `<root>/proxy`.
    #[arg(long)]
    dir: Option<PathBuf>,
    /// The upstream to serve first.
    #[arg(long, value_name = "ADDR")]
    upstream: Option<SocketAddr>,
    /// How long to wait for nginx to serve.
    #[arg(long, default_value = "15s", value_parser = humantime::parse_duration)]
    timeout: Duration,
    #[command(flatten)]
    proxy: ProxyArgs,
}

#[derive(Debug, Args)]
struct SwitchArgs {
    /// The instance's directory; default `[proxy] dir`, else the
    /// deployment's `<root>/proxy`.
    #[arg(long)]
    dir: Option<PathBuf>,
    /// The upstream to move traffic to.
    #[arg(long, value_name = "ADDR")]
    upstream: SocketAddr,
    /// The release id the new upstream's health answer must name.
    #[arg(long, value_name = "ID")]
    expect_release: Option<String>,
}

#[derive(Debug, Args)]
struct DownArgs {
    /// The instance's directory; default `[proxy] dir`, else the
    /// deployment's `<root>/proxy`.
    #[arg(long)]
    dir: Option<PathBuf>,
    /// How long each stop step (quit, TERM) may take.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    timeout: Duration,
}

#[derive(Debug, Args)]
struct MetricsArgs {
    /// The instance's directory; default `[proxy] dir`, else the
    /// deployment's `<root>/proxy`.
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Serve the text at http://ADDR/metrics (reading the log as it grows, rotating it by
    /// size) until killed, instead of printing it once.
    #[arg(long, value_name = "ADDR")]
    listen: Option<SocketAddr>,
}

#[derive(Debug, Args)]
struct RotateArgs {
    /// The instance's directory; default `[proxy] dir`, else the
    /// deployment's `<root>/proxy`.
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Rotate whatever the size (an empty log is left alone).
    #[arg(long)]
    force: bool,
}

/// Why an nginx command failed: invalid configuration 78, no nginx 3, anything else 2.
fn edge_failure(err: EdgeError) -> Failure {
    let code = match &err {
        EdgeError::InvalidConfig { .. } => EXIT_CONFIG,
        EdgeError::NginxNotFound => EXIT_UNKNOWN,
        _ => EXIT_FAIL,
    };
    Failure::new(code, err)
}

fn main() -> ExitCode {
    cutover_cli::exit(run())
}

fn run() -> Result<i32, Failure> {
    let cli: Cli = cutover_cli::parse()?;
    cli.common.init_logging();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Failure::fail(format!("cannot start the async runtime: {e}")))?;
    let json = cli.common.json;
    let command = command_name(&cli.command);
    match runtime.block_on(execute(cli)) {
        Ok(Output { doc, text }) => {
            if json {
                let mut doc = doc;
                doc["status"] = json!(Status::Ok);
                doc["command"] = json!(command);
                let _ = print_json(&doc);
            } else {
                cutover_cli::out!("{text}");
            }
            Ok(EXIT_OK)
        }
        Err(failure) => {
            let message = failure.message().unwrap_or_default().to_owned();
            tracing::error!(%message, "{command} failed");
            if json {
                let status = if failure.code() == EXIT_UNKNOWN {
                    Status::Unknown
                } else {
                    Status::Fail
                };
                let doc = json!({ "status": status, "command": command, "error": message });
                return Err(failure.with_json(doc));
            }
            Err(failure)
        }
    }
}

fn command_name(command: &Command) -> &'static str {
    match command {
        Command::Render(_) => "render",
        Command::Check(_) => "check",
        Command::Up(_) => "up",
        Command::Switch(_) => "switch",
        Command::Down(_) => "down",
        Command::Metrics(_) => "metrics",
        Command::Rotate(_) => "rotate",
    }
}

/// What a command prints: a JSON document (status added) or text.
struct Output {
    doc: serde_json::Value,
    text: String,
}

async fn execute(cli: Cli) -> Result<Output, Failure> {
    let manifest = cli.common.manifest()?;
    let deployment = match &manifest {
        Some(m) => live_deployment::Deployment::of(m)
            .map_err(|e| Failure::new(e.exit_code(), e.to_string()))?,
        None => None,
    };
    let mut from_manifest: Option<ProxyConfig> = match &manifest {
        Some(m) => m.table("proxy")?,
        None => None,
    };
    // Paths in [proxy] are relative to the manifest, wherever the command runs from; nginx
    // would otherwise read a relative certificate path against its own directory.
    if let (Some(m), Some(config)) = (&manifest, from_manifest.as_mut()) {
        let base = std::path::absolute(m.dir()).unwrap_or_else(|_| m.dir());
        config.resolve_paths(&base);
        // The pipeline's nginx lives in `[proxy] dir`, else `<root>/proxy`: live-deployment
        // says which, so `down`, `switch` and `up` find it with nothing but --manifest.
        if config.dir.is_none()
            && let Some(deployment) = &deployment
        {
            config.dir = Some(deployment.proxy_dir().to_path_buf());
        }
    }
    match cli.command {
        Command::Render(args) => render(build_config(from_manifest, &args)?),
        Command::Check(args) => check(build_config(from_manifest, &args)?).await,
        Command::Up(args) => {
            let config = build_config(from_manifest, &args.proxy)?;
            let dir = pick_dir(args.dir, Some(&config))?;
            up(config, dir, args.upstream, args.timeout).await
        }
        Command::Switch(args) => {
            let dir = pick_dir(args.dir, from_manifest.as_ref())?;
            switch(dir, args.upstream, args.expect_release).await
        }
        Command::Metrics(args) => {
            let dir = pick_dir(args.dir, from_manifest.as_ref())?;
            let max_bytes = from_manifest
                .as_ref()
                .map_or(DEFAULT_ACCESS_LOG_MAX_BYTES, |c| c.access_log_max_bytes);
            let edge = metrics::Edge::new(Layout::new(&dir), deployment, max_bytes);
            match args.listen {
                Some(addr) => metrics::serve(edge, addr).await,
                None => metrics::once(edge),
            }
        }
        Command::Rotate(args) => {
            let dir = pick_dir(args.dir, from_manifest.as_ref())?;
            let when = if args.force {
                RotateWhen::Now
            } else {
                RotateWhen::LargerThan(
                    from_manifest
                        .as_ref()
                        .map_or(DEFAULT_ACCESS_LOG_MAX_BYTES, |c| c.access_log_max_bytes),
                )
            };
            let nginx = Nginx::locate().map_err(crate::edge_failure)?;
            let layout = Layout::new(&dir);
            let report = rotate_access_logs(&nginx, &layout, when)
                .await
                .map_err(crate::edge_failure)?;
            let text = if report.rotated {
                format!(
                    "rotated {} ({} bytes) to {}; nginx reopened: {}\n",
                    layout.edge_log().display(),
                    report.edge_log_bytes,
                    layout.rotated_edge_log().display(),
                    report.reopened.as_deref().unwrap_or("-")
                )
            } else {
                format!(
                    "{} is {} bytes: not rotated\n",
                    layout.edge_log().display(),
                    report.edge_log_bytes
                )
            };
            Ok(Output {
                doc: serde_json::to_value(&report).unwrap_or_default(),
                text,
            })
        }
        Command::Down(args) => {
            let dir = pick_dir(args.dir, from_manifest.as_ref())?;
            let nginx = Nginx::locate().map_err(crate::edge_failure)?;
            let layout = Layout::new(&dir);
            let was_running = stop_instance(&nginx, &layout, args.timeout)
                .await
                .map_err(crate::edge_failure)?;
            Ok(Output {
                doc: json!({ "dir": layout.prefix(), "was_running": was_running }),
                text: format!(
                    "nginx under {} {}\n",
                    layout.prefix().display(),
                    if was_running {
                        "stopped"
                    } else {
                        "was not running"
                    }
                ),
            })
        }
    }
}

fn pick_dir(flag: Option<PathBuf>, config: Option<&ProxyConfig>) -> Result<PathBuf, Failure> {
    flag.or_else(|| config.and_then(|c| c.dir.clone()))
        .ok_or_else(|| Failure::new(cutover_cli::EXIT_USAGE, "no directory: pass --dir DIR, set [proxy] dir, or give a manifest with [service] and [layout] (then <root>/proxy)".to_owned()))
}

/// The `[proxy]` table with flags applied, or a configuration from flags alone.
fn build_config(
    from_manifest: Option<ProxyConfig>,
    args: &ProxyArgs,
) -> Result<ProxyConfig, Failure> {
    let mut config = match from_manifest {
        Some(config) => config,
        None => {
            let http = args
                .listen_http
                .first()
                .copied()
                .map_or_else(free_loopback, Ok)?;
            let control = args.control.map_or_else(free_loopback, Ok)?;
            let mut config = ProxyConfig::minimal(http, control);
            config.listen_http = if args.listen_http.is_empty() {
                vec![http]
            } else {
                args.listen_http.clone()
            };
            config
        }
    };
    if config.kind == ProxyKind::None {
        return Err(Failure::new(
            EXIT_CONFIG,
            "[proxy] kind = \"none\": there is no proxy to drive".to_owned(),
        ));
    }
    if !args.listen_http.is_empty() {
        config.listen_http = args.listen_http.clone();
    }
    if let Some(control) = args.control {
        config.control_listen = control;
    }
    if let Some(name) = &args.server_name {
        config.server_name = name.clone();
    }
    if !args.listen_https.is_empty() || args.self_signed {
        let listen = if args.listen_https.is_empty() {
            match &config.tls {
                Some(tls) => tls.listen.clone(),
                None => vec![free_loopback()?],
            }
        } else {
            args.listen_https.clone()
        };
        let tls = config.tls.get_or_insert_with(|| TlsConfig {
            listen: listen.clone(),
            cert: None,
            key: None,
            self_signed: true,
            trusted_certificate: None,
            hsts_max_age: Duration::from_secs(365 * 24 * 3600),
        });
        tls.listen = listen;
        if args.self_signed {
            tls.self_signed = true;
            tls.cert = None;
            tls.key = None;
        }
    }
    if args.rate_limit.is_some() || args.burst.is_some() {
        for loc in &mut config.locations {
            let limit = loc.rate_limit.get_or_insert_with(|| RateLimit {
                rate: "10r/s".to_owned(),
                burst: 0,
            });
            if let Some(rate) = &args.rate_limit {
                limit.rate = rate.clone();
            }
            if let Some(burst) = args.burst {
                limit.burst = burst;
            }
        }
    }
    config.validate().map_err(crate::edge_failure)?;
    Ok(config)
}

fn free_loopback() -> Result<SocketAddr, Failure> {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map_err(|e| Failure::new(EXIT_FAIL, format!("no free loopback port: {e}")))
}

fn render(config: ProxyConfig) -> Result<Output, Failure> {
    let conf =
        render_nginx_conf(&config, &RenderOptions::default()).map_err(crate::edge_failure)?;
    let upstream = config.upstream.map(render_upstream);
    let token_map = config
        .admin
        .as_ref()
        .and_then(|a| a.token.as_ref())
        .map(|_| admin_token_map_placeholder());
    let mut text = conf.clone();
    for (name, body) in [
        ("upstream.conf", &upstream),
        ("admin-token.map", &token_map),
    ] {
        if let Some(body) = body {
            text.push_str(&format!("\n# ---- {name} ----\n"));
            for line in body.lines() {
                text.push_str(&format!("# {line}\n"));
            }
        }
    }
    Ok(Output {
        doc: json!({ "nginx_conf": conf, "upstream_conf": upstream, "admin_token_map": token_map }),
        text,
    })
}

async fn check(config: ProxyConfig) -> Result<Output, Failure> {
    let nginx = Nginx::locate().map_err(crate::edge_failure)?;
    let scratch = tempfile::Builder::new()
        .prefix("cutover-edge-check-")
        .tempdir()
        .map_err(|e| Failure::new(EXIT_FAIL, format!("cannot make a scratch directory: {e}")))?;
    let layout = Layout::new(scratch.path());
    let instance = NginxInstance::new(nginx, layout, config.clone());
    // The check must not need the live secret: a well-formed stand-in token tests the syntax.
    let stand_in = secret_refs::Secret::new("cutover-check-placeholder-token");
    let upstream = config
        .upstream
        .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 9)));
    instance
        .write_config(Some(upstream), Some(&stand_in))
        .map_err(crate::edge_failure)?;
    instance.check().await.map_err(crate::edge_failure)?;
    Ok(Output {
        doc: json!({ "nginx": instance.nginx().binary() }),
        text: "nginx -t: configuration ok\n".to_owned(),
    })
}

async fn up(
    config: ProxyConfig,
    dir: PathBuf,
    upstream: Option<SocketAddr>,
    timeout: Duration,
) -> Result<Output, Failure> {
    let nginx = Nginx::locate().map_err(crate::edge_failure)?;
    let layout = Layout::new(&dir);
    let token = match config.admin.as_ref().and_then(|a| a.token.as_ref()) {
        Some(reference) => Some(
            secret_refs::Resolver::new()
                .resolve(reference)
                .await
                .map_err(|e| EdgeError::Token {
                    reference: reference.to_string(),
                    reason: e.to_string(),
                })
                .map_err(crate::edge_failure)?,
        ),
        None => None,
    };
    let instance = NginxInstance::new(nginx, layout, config);
    instance
        .write_config(upstream, token.as_ref())
        .map_err(crate::edge_failure)?;
    let state = instance.start(timeout).await.map_err(crate::edge_failure)?;
    let current = instance
        .switcher()
        .current()
        .await
        .map_err(crate::edge_failure)?;
    let text = format!(
        "nginx serving under {} (pid {}): http {:?}, https {:?}, control {}, upstream {}\n",
        instance.layout().prefix().display(),
        state.pid,
        state.listen_http,
        state.listen_https,
        state.control,
        current.map_or_else(|| "none".to_owned(), |a| a.to_string()),
    );
    Ok(Output {
        doc: json!({
            "dir": instance.layout().prefix(),
            "pid": state.pid,
            "listen_http": state.listen_http,
            "listen_https": state.listen_https,
            "control": state.control,
            "upstream": current,
        }),
        text,
    })
}

async fn switch(
    dir: PathBuf,
    upstream: SocketAddr,
    expect_release: Option<String>,
) -> Result<Output, Failure> {
    let nginx = Nginx::locate().map_err(crate::edge_failure)?;
    let switcher =
        NginxSwitch::from_state(nginx, Layout::new(&dir)).map_err(crate::edge_failure)?;
    let report = switcher
        .switch(&SwitchTarget {
            upstream,
            expect_release,
            backup: None,
        })
        .await
        .map_err(crate::edge_failure)?;
    let text = format!(
        "traffic moved {} -> {} (release {}) in {} ms\n",
        report
            .from
            .map_or_else(|| "none".to_owned(), |a| a.to_string()),
        report.to,
        report.release.as_deref().unwrap_or("unknown"),
        report.elapsed.as_millis()
    );
    let doc = serde_json::to_value(&report).unwrap_or_default();
    Ok(Output { doc, text })
}
