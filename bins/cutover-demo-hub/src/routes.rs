//! The HTTP surface: the real hub's routes and shapes, `/api/stats`, `/metrics`, and the
//! middleware that applies auth and the latency / error-rate / leak knobs to every `/api` answer.

use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::{Duration, Instant};

use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{Value, json};

use crate::config::{Args, Shape, StuckState};
use crate::stats::{self, Stats};

const STARTING: u8 = 0;
const READY: u8 = 1;
const ERROR: u8 = 2;
const STOPPING: u8 = 3;

/// Shared state behind every handler.
#[derive(Debug)]
pub(crate) struct AppState {
    state: AtomicU8,
    stuck: Option<StuckState>,
    release_id: String,
    token: Option<String>,
    latency: Duration,
    error_rate: f64,
    leak_per_request: u64,
    started: Instant,
    shape: Shape,
    pub(crate) stats: Stats,
}

impl AppState {
    pub(crate) fn new(args: &Args) -> Self {
        let initial = match args.health_state {
            Some(StuckState::Error) => ERROR,
            _ => STARTING,
        };
        Self {
            state: AtomicU8::new(initial),
            stuck: args.health_state,
            release_id: args.release_id.clone(),
            token: args.token.clone(),
            latency: args.latency,
            error_rate: args.error_rate,
            leak_per_request: args.leak_per_request,
            started: Instant::now(),
            shape: args.shape,
            stats: Stats::new(args.cache_capacity),
        }
    }

    /// Moves from "starting" to "ready" unless a knob pins the state; true when it became ready.
    pub(crate) fn become_ready(&self) -> bool {
        if self.stuck.is_some() {
            return false;
        }
        self.state
            .compare_exchange(STARTING, READY, Ordering::SeqCst, Ordering::SeqCst)
            .is_ok()
    }

    pub(crate) fn set_stopping(&self) {
        self.state.store(STOPPING, Ordering::SeqCst);
    }

    fn state_name(&self) -> &'static str {
        match self.state.load(Ordering::SeqCst) {
            READY => "ready",
            ERROR => "error",
            STOPPING => "stopping",
            _ => "starting",
        }
    }

    fn is_ready(&self) -> bool {
        self.state.load(Ordering::SeqCst) == READY
    }
}

/// All routes. `/api/*` goes through the knob middleware; `/metrics` does not.
///
/// With `--shape mcp-hub` only what MCP Hub 4.3.0 serves is there: no `/api/stats` (404), and
/// every other path outside `/api` (`/metrics` included) answers 200 with the web UI's HTML.
/// Both shapes serve the streams (`/api/events`, `/mcp`, `/messages`).
pub(crate) fn router(state: Arc<AppState>, streams: Arc<crate::streams::Streams>) -> Router {
    let mut api = Router::new()
        .route("/events", crate::streams::events_route(streams.clone()))
        .route("/health", get(health))
        .route("/filtering/stats", get(filtering_stats))
        .route("/tools", get(tools))
        .route("/servers", get(servers));
    if state.shape == Shape::Demo {
        api = api.route("/stats", get(api_stats));
    }
    let api = api
        .fallback(not_found)
        .layer(middleware::from_fn_with_state(state.clone(), api_knobs));
    let root = Router::new()
        .nest("/api", api)
        .merge(crate::streams::router(streams));
    let root = match state.shape {
        Shape::Demo => root.route("/metrics", get(metrics)).fallback(not_found),
        Shape::McpHub => root.fallback(web_ui),
    };
    root.with_state(state)
}

/// The statistics route a reader polls: not traffic, so reading it neither moves the figures
/// nor fails by `--error-rate` (a failing service can still be measured).
fn is_stats_route(shape: Shape, path: &str) -> bool {
    let path = path.strip_prefix("/api").unwrap_or(path);
    match shape {
        Shape::Demo => path == "/stats",
        Shape::McpHub => path == "/filtering/stats",
    }
}

/// What MCP Hub serves outside `/api`: its web UI, a single-page app whose index answers every
/// path (so `/metrics` is 200 and HTML, not Prometheus text).
async fn web_ui() -> Response {
    (
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        concat!(
            "<!doctype html>\n<html lang=\"en\">\n<head>\n<meta charset=\"UTF-8\" />\n",
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1.0\" />\n",
            "<title>MCP Hub</title>\n<script type=\"module\" src=\"/assets/index.js\"></script>\n",
            "</head>\n<body>\n<div id=\"root\"></div>\n</body>\n</html>\n"
        ),
    )
        .into_response()
}

fn timestamp() -> String {
    jiff::Timestamp::now().to_string()
}

async fn not_found() -> Response {
    (
        StatusCode::NOT_FOUND,
        Json(json!({"error": "Not found", "timestamp": timestamp()})),
    )
        .into_response()
}

/// Auth, injected latency, injected errors, leak, and the statistics for every `/api` request.
async fn api_knobs(State(app): State<Arc<AppState>>, request: Request, next: Next) -> Response {
    let path = request.uri().path().to_owned();
    let is_health = path == "/health" || path == "/api/health";
    // The statistics reader is not traffic: reading the stats route must not move the figures.
    let counted = !is_stats_route(app.shape, &path);
    // Only routes the service serves fail by the knob: a route it does not serve stays 404,
    // as routing comes before any work in a real service.
    let served = request.extensions().get::<MatchedPath>().is_some();
    let started = Instant::now();
    if counted {
        app.stats.begin();
    }
    if !app.latency.is_zero() {
        tokio::time::sleep(app.latency).await;
    }
    let response = if !is_health && !authorised(&app, request.headers()) {
        (
            StatusCode::UNAUTHORIZED,
            [(header::WWW_AUTHENTICATE, "Bearer")],
            Json(json!({"error": "Unauthorized", "timestamp": timestamp()})),
        )
            .into_response()
    } else if !is_health
        && counted
        && served
        && app.error_rate > 0.0
        && rand::random::<f64>() < app.error_rate
    {
        (
            StatusCode::INTERNAL_SERVER_ERROR,
            Json(json!({"error": "Injected failure (--error-rate)", "timestamp": timestamp()})),
        )
            .into_response()
    } else {
        next.run(request).await
    };
    if counted {
        app.stats.leak(app.leak_per_request);
        app.stats
            .finish(response.status().as_u16(), started.elapsed());
    }
    response
}

fn authorised(app: &AppState, headers: &HeaderMap) -> bool {
    let Some(token) = &app.token else { return true };
    let Some(given) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let Some(given) = given.strip_prefix("Bearer ") else {
        return false;
    };
    // Compare without an early exit so timing does not reveal how much of the token matched.
    given.len() == token.len()
        && given
            .bytes()
            .zip(token.bytes())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
}

fn server_list(app: &AppState) -> Vec<Value> {
    let uptime = app.started.elapsed().as_secs();
    let status = if app.is_ready() {
        "connected"
    } else {
        "connecting"
    };
    ["filesystem", "github", "memory"]
        .iter()
        .map(|name| json!({"name": name, "displayName": name, "status": status, "uptime": uptime, "error": null}))
        .collect()
}

const TOOLS: &[(&str, &str, &str, &[&str])] = &[
    (
        "filesystem",
        "read_file",
        "Read a file from the workspace",
        &["filesystem"],
    ),
    (
        "filesystem",
        "write_file",
        "Write a file in the workspace",
        &["filesystem"],
    ),
    (
        "filesystem",
        "list_directory",
        "List a directory",
        &["filesystem"],
    ),
    (
        "github",
        "search_repositories",
        "Search GitHub repositories",
        &["github", "search"],
    ),
    ("github", "create_issue", "Open an issue", &["github"]),
    (
        "memory",
        "remember",
        "Store a note in the knowledge graph",
        &["memory"],
    ),
];

async fn health(State(app): State<Arc<AppState>>) -> Json<Value> {
    let servers = server_list(&app);
    let active = app.stats.in_flight();
    Json(json!({
        "status": "ok",
        "state": app.state_name(),
        "server_id": format!("demo-hub-{}", std::process::id()),
        "version": app.release_id,
        "activeClients": active,
        "timestamp": timestamp(),
        "servers": servers,
        "connections": {"totalConnections": servers.len(), "connectedServers": if app.is_ready() { servers.len() } else { 0 }},
        "mcpEndpoint": {
            "activeClients": active,
            "registeredCapabilities": {"tools": TOOLS.len(), "resources": 0, "resourceTemplates": 0, "prompts": 0},
            "totalCapabilities": TOOLS.len(),
        },
        "workspaces": {"current": "demo", "allActive": {}},
    }))
}

async fn filtering_stats(State(app): State<Arc<AppState>>) -> Response {
    if !app.is_ready() {
        return (StatusCode::NOT_FOUND, Json(json!({"error": "Filtering stats not available: hub is initialising", "timestamp": timestamp()})))
            .into_response();
    }
    // As the real hub: a rate of 0 while nothing has been looked up.
    let rate = app.stats.cache_hit_rate().unwrap_or(0.0);
    // MCP Hub's `totalTools` is the number of tool checks made so far (each a cache lookup),
    // so it rises with traffic; the demo shape reports its catalogue's size.
    let total = match app.shape {
        Shape::Demo => TOOLS.len() as u64,
        Shape::McpHub => {
            let (hits, misses) = app.stats.cache_counts();
            hits + misses
        }
    };
    Json(json!({
        "enabled": true,
        "mode": "category",
        "totalTools": total,
        "filteredTools": 0,
        "exposedTools": total,
        "filterRate": 0.0,
        "serverFilterMode": "allowlist",
        "allowedServers": ["filesystem", "github", "memory"],
        "allowedCategories": ["filesystem", "github", "memory", "search"],
        "categoryCacheSize": app.stats.cache_size(),
        "cacheHitRate": rate,
        "llmCacheSize": app.stats.cache_size(),
        "llmCacheHitRate": rate,
        "timestamp": timestamp(),
    }))
    .into_response()
}

async fn tools(State(app): State<Arc<AppState>>, uri: axum::http::Uri) -> Json<Value> {
    app.stats
        .cache_lookup(&format!("tools?{}", uri.query().unwrap_or("")));
    let tools: Vec<Value> = TOOLS
        .iter()
        .map(|(server, name, description, categories)| {
            json!({"server": server, "serverDisplayName": server, "name": name, "description": description, "enabled": true, "categories": categories})
        })
        .collect();
    Json(json!({"tools": tools, "timestamp": timestamp()}))
}

async fn servers(State(app): State<Arc<AppState>>) -> Json<Value> {
    app.stats.cache_lookup("servers");
    Json(json!({"servers": server_list(&app), "timestamp": timestamp()}))
}

async fn api_stats(State(app): State<Arc<AppState>>) -> Json<Value> {
    let s = app.stats.summary();
    let (hits, misses) = app.stats.cache_counts();
    Json(json!({
        "version": app.release_id,
        "state": app.state_name(),
        "uptime_seconds": app.started.elapsed().as_secs_f64(),
        "window_seconds": stats::WINDOW.as_secs(),
        "window_requests": s.window_requests,
        "requests": app.stats.requests(),
        "errors": app.stats.errors(),
        "success_rate": s.success_rate,
        "latency_ms": {"p50": s.p50_ms, "p95": s.p95_ms, "p99": s.p99_ms},
        "cache_hit_rate": app.stats.cache_hit_rate(),
        "cache_hits": hits,
        "cache_misses": misses,
        "cache_lookups": hits + misses,
        "queue_depth": app.stats.in_flight(),
        "circuit_breaker": app.stats.breaker().as_str(),
        "leaked_bytes": app.stats.leaked_bytes(),
        "rss_bytes": stats::rss_bytes(),
        "timestamp": timestamp(),
    }))
}

async fn metrics(State(app): State<Arc<AppState>>) -> Response {
    let s = app.stats.summary();
    let mut out = String::new();
    let mut gauge = |name: &str, help: &str, value: Option<f64>| {
        if let Some(v) = value {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {v}");
        }
    };
    gauge("demo_hub_up", "1 while the process serves.", Some(1.0));
    gauge(
        "demo_hub_ready",
        "1 once the hub is ready.",
        Some(if app.is_ready() { 1.0 } else { 0.0 }),
    );
    gauge(
        "demo_hub_uptime_seconds",
        "Seconds since start.",
        Some(app.started.elapsed().as_secs_f64()),
    );
    gauge(
        "demo_hub_success_ratio",
        "Fraction of /api answers in the window that were not 5xx.",
        s.success_rate,
    );
    gauge(
        "demo_hub_cache_hit_ratio",
        "Fraction of cache lookups that hit.",
        app.stats.cache_hit_rate(),
    );
    gauge(
        "demo_hub_queue_depth",
        "Requests in flight.",
        Some(app.stats.in_flight() as f64),
    );
    gauge(
        "demo_hub_leaked_bytes",
        "Memory kept by --leak-per-request.",
        Some(app.stats.leaked_bytes() as f64),
    );
    gauge(
        "process_resident_memory_bytes",
        "Resident memory size in bytes.",
        stats::rss_bytes().map(|b| b as f64),
    );
    let _ = writeln!(
        out,
        "# HELP demo_hub_build_info The release this process runs.\n# TYPE demo_hub_build_info gauge"
    );
    let _ = writeln!(
        out,
        "demo_hub_build_info{{version=\"{}\"}} 1",
        escape_label(&app.release_id)
    );
    let _ = writeln!(
        out,
        "# HELP demo_hub_latency_ms Latency of /api answers in the window, by quantile.\n# TYPE demo_hub_latency_ms gauge"
    );
    for (q, v) in [("0.5", s.p50_ms), ("0.95", s.p95_ms), ("0.99", s.p99_ms)] {
        if let Some(v) = v {
            let _ = writeln!(out, "demo_hub_latency_ms{{quantile=\"{q}\"}} {v}");
        }
    }
    let _ = writeln!(
        out,
        "# HELP demo_hub_requests_total /api answers by status code.\n# TYPE demo_hub_requests_total counter"
    );
    for (code, n) in app.stats.by_code() {
        let _ = writeln!(out, "demo_hub_requests_total{{code=\"{code}\"}} {n}");
    }
    let breaker = app.stats.breaker();
    let _ = writeln!(
        out,
        "# HELP demo_hub_circuit_breaker_state 1 for the breaker's current state.\n# TYPE demo_hub_circuit_breaker_state gauge"
    );
    for name in ["closed", "half-open", "open"] {
        let v = u8::from(breaker.as_str() == name);
        let _ = writeln!(
            out,
            "demo_hub_circuit_breaker_state{{state=\"{name}\"}} {v}"
        );
    }
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        out,
    )
        .into_response()
}

fn escape_label(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}
