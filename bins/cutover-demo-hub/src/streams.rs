//! The hub's streams, as MCP Hub serves them: `GET /api/events` (Server-Sent Events: a
//! `hub_state` event, a `heartbeat` every second) and MCP-style sessions (`GET /mcp` is an SSE
//! stream whose first event, `endpoint`, gives `/messages?sessionId=…`; `POST /messages` answers
//! 202 for a session this process holds and `404 Session not found` otherwise). On SIGTERM every
//! stream gets a `hub_state` event `stopping`, so a client knows to reconnect, and is closed
//! cleanly 300 ms later (a complete event, then the end of the chunked body); until the close
//! its session still answers, so a post that crossed the event is served by its owner.

use std::collections::HashSet;
use std::convert::Infallible;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::response::sse::{Event, Sse};
use axum::routing::{get, post};
use futures_util::Stream;
use serde::Deserialize;
use serde_json::json;
use tokio::sync::watch;

/// The streams and sessions of this process.
#[derive(Debug)]
pub(crate) struct Streams {
    release: String,
    stopping: watch::Sender<bool>,
    sessions: Mutex<HashSet<String>>,
    next: AtomicU64,
    open: AtomicU64,
}

impl Streams {
    pub(crate) fn new(release: &str) -> Arc<Self> {
        Arc::new(Self {
            release: release.to_owned(),
            stopping: watch::channel(false).0,
            sessions: Mutex::new(HashSet::new()),
            next: AtomicU64::new(1),
            open: AtomicU64::new(0),
        })
    }

    /// Ends every stream: each gets `hub_state: stopping`, then its end.
    pub(crate) fn stop(&self) {
        self.stopping.send_replace(true);
    }

    /// Streams still open.
    pub(crate) fn open(&self) -> u64 {
        self.open.load(Ordering::SeqCst)
    }

    fn sessions(&self) -> std::sync::MutexGuard<'_, HashSet<String>> {
        self.sessions.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Counts a stream as open while it lives, and forgets its session when it ends.
struct Open {
    streams: Arc<Streams>,
    session: Option<String>,
}

impl Drop for Open {
    fn drop(&mut self) {
        self.streams.open.fetch_sub(1, Ordering::SeqCst);
        if let Some(id) = &self.session {
            self.streams.sessions().remove(id);
        }
    }
}

enum Step {
    First,
    Beat(u64),
    /// `stopping` was sent: the session still answers for [`CLOSE_LINGER`], then the end.
    Linger,
}

/// How long a stream stays open after its `stopping` event, its session still answering
/// `POST /messages`: a client that was posting when the process began to stop has its post
/// served by the owner, and learns from the event (before the close) to reconnect, so no post
/// of a client that follows the event meets a `404 Session not found`.
const CLOSE_LINGER: Duration = Duration::from_millis(300);

/// An SSE stream: `first`, then a heartbeat every second until the process stops, then
/// `hub_state: stopping` and the end.
fn stream(
    streams: Arc<Streams>,
    first: Event,
    session: Option<String>,
) -> impl Stream<Item = Result<Event, Infallible>> {
    streams.open.fetch_add(1, Ordering::SeqCst);
    let stopping = streams.stopping.subscribe();
    let guard = Open {
        streams: streams.clone(),
        session,
    };
    futures_util::stream::unfold(
        (Step::First, Some(first), stopping, guard),
        |(step, first, mut stopping, guard)| async move {
            let release = guard.streams.release.clone();
            match step {
                Step::First => Some((
                    Ok(first.unwrap_or_default()),
                    (Step::Beat(1), None, stopping, guard),
                )),
                Step::Beat(n) => {
                    let stop = *stopping.borrow() || {
                        tokio::select! {
                            () = tokio::time::sleep(Duration::from_secs(1)) => false,
                            _ = stopping.changed() => true,
                        }
                    };
                    let event = if stop {
                        Event::default()
                            .event("hub_state")
                            .data(json!({"state": "stopping", "release": release}).to_string())
                    } else {
                        Event::default()
                            .event("heartbeat")
                            .data(json!({"n": n, "release": release}).to_string())
                    };
                    let next = if stop {
                        Step::Linger
                    } else {
                        Step::Beat(n + 1)
                    };
                    Some((Ok(event), (next, None, stopping, guard)))
                }
                Step::Linger => {
                    tokio::time::sleep(CLOSE_LINGER).await;
                    drop(guard);
                    None
                }
            }
        },
    )
}

async fn events(State(streams): State<Arc<Streams>>) -> impl IntoResponse {
    let first = Event::default()
        .event("hub_state")
        .data(json!({"state": "ready", "release": streams.release}).to_string());
    Sse::new(stream(streams.clone(), first, None))
}

async fn mcp(State(streams): State<Arc<Streams>>) -> impl IntoResponse {
    let id = format!(
        "{}-{}",
        streams.release,
        streams.next.fetch_add(1, Ordering::SeqCst)
    );
    streams.sessions().insert(id.clone());
    let first = Event::default()
        .event("endpoint")
        .data(format!("/messages?sessionId={id}"));
    Sse::new(stream(streams.clone(), first, Some(id)))
}

#[derive(Debug, Deserialize)]
struct SessionQuery {
    #[serde(rename = "sessionId")]
    session_id: Option<String>,
}

async fn messages(
    State(streams): State<Arc<Streams>>,
    Query(q): Query<SessionQuery>,
) -> impl IntoResponse {
    let known = q
        .session_id
        .as_ref()
        .is_some_and(|id| streams.sessions().contains(id));
    if known {
        (StatusCode::ACCEPTED, "Accepted").into_response()
    } else {
        (StatusCode::NOT_FOUND, "Session not found").into_response()
    }
}

/// `GET /api/events` (for the `/api` router).
pub(crate) fn events_route<S: Clone + Send + Sync + 'static>(
    streams: Arc<Streams>,
) -> axum::routing::MethodRouter<S> {
    get(events).with_state(streams)
}

/// `GET /mcp` and `POST /messages`.
pub(crate) fn router<S: Clone + Send + Sync + 'static>(streams: Arc<Streams>) -> Router<S> {
    Router::new()
        .route("/mcp", get(mcp))
        .route("/messages", post(messages))
        .with_state(streams)
}
