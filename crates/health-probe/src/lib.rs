//! Probes that tell "ready" from "merely listening".
//!
//! The tooling cutover replaces called a 500 healthy, had no timeouts (a hung service hung the
//! deploy), took `status: "ok"` — which the service answers while still starting — as readiness,
//! and asserted fields that do not exist. This crate gives every probe a timeout over the whole
//! attempt, a verdict with a reason a person can act on, and phase timings:
//!
//! * **HTTP(S)** ([`HttpTarget`]): method, headers (values may come from secret references:
//!   `bearer_token = "env:HUB_TOKEN"`), body, an expected status set (default 2xx), JSON pointer
//!   assertions in a small expression language ([`expr`]: `==`, `!=`, `in`, `<`, `<=`, `>`, `>=`,
//!   `exists`, `absent`, `nonempty`, `=~`), a body regex, a latency budget, TLS verified by
//!   default (web PKI roots plus an optional CA file) and a redirect policy. The TCP connection
//!   and the TLS handshake are made here and handed to hyper's HTTP/1 client connection, so
//!   connect, TLS, first byte and total are timed separately.
//! * **TCP**: the address accepts a connection.
//! * **Exec**: a command (argv, no shell) exits 0; on timeout its process group is killed.
//! * **Readiness waiting** ([`wait_ready`]) with Kubernetes semantics: initial delay, period,
//!   per-attempt timeout, success and failure thresholds and an overall budget; a wait that gives
//!   up returns the last attempts in [`ProbeError::NotReady`].
//! * **Suites** ([`run_suite`]): the `[[probe]]` entries of `cutover.toml` ([`ProbeConfig`] is
//!   their serde type), run concurrently, and a built-in suite for the demo service
//!   ([`demo_suite`]) that covers the replaced tooling's eight validation intents correctly.
//!
//! Secret values are resolved once, when a probe is prepared, into header values marked
//! sensitive; they never appear in results, errors, `Debug` output or logs, and they are not
//! sent on to another origin when a redirect is followed.
//!
//! # Example
//!
//! ```
//! use health_probe::{HttpTarget, PrepareOptions, Probe, ProbeConfig};
//! use std::time::Duration;
//!
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! // A tiny server that answers like a hub that is still starting.
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
//! let addr = listener.local_addr()?;
//! tokio::spawn(async move {
//!     use tokio::io::{AsyncReadExt, AsyncWriteExt};
//!     let (mut socket, _) = listener.accept().await?;
//!     let mut buf = [0u8; 1024];
//!     let _ = socket.read(&mut buf).await?;
//!     let body = r#"{"status":"ok","state":"starting"}"#;
//!     let head = format!("HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n", body.len());
//!     socket.write_all(format!("{head}{body}").as_bytes()).await?;
//!     Ok::<_, std::io::Error>(())
//! });
//!
//! let mut target = HttpTarget::get(format!("http://{addr}/api/health"));
//! target.expect_json.push(r#"/state == "ready""#.parse()?);
//! let probe = ProbeConfig::http("health", target)
//!     .with_timeout(Duration::from_secs(2))
//!     .prepare(&PrepareOptions::default())
//!     .await?;
//! let result = probe.check().await;
//! assert!(!result.is_ok());
//! assert_eq!(result.reason, r#"/state expected "ready", got "starting""#);
//! assert_eq!(result.status_code, Some(200));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! # }).unwrap();
//! ```

mod config;
mod error;
mod exec;
pub mod expr;
mod http;
mod probe;
mod result;
mod status;
mod suite;
mod tcp;
mod tls;
mod wait;

pub use config::{
    DEFAULT_SUITE, DEFAULT_TIMEOUT, HeaderSource, HttpTarget, ProbeConfig, SecretHeader, Target,
};
pub use error::ProbeError;
pub use exec::ExecProbe;
pub use expr::{Comparison, JsonAssertion, JsonCheck};
pub use http::{HttpProbe, MAX_BODY_BYTES};
pub use probe::{PrepareOptions, PreparedProbe, Probe};
pub use result::{Attempt, Outcome, ProbeResult, Timings};
pub use secret_refs::{Resolver, SecretRef};
pub use status::{StatusPattern, StatusSet};
pub use suite::{
    DEMO_SUITE, SuiteProbe, SuiteReport, demo_suite, prepare_all, run_suite, select_suite,
    suite_names,
};
pub use tcp::TcpProbe;
pub use wait::{HISTORY_LEN, WaitPolicy, WaitReport, wait_ready};
