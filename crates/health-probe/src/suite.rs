//! Suites: named lists of probes run concurrently, with a report per probe, and the built-in
//! suite for the demo service.
//!
//! The demo suite covers the eight validation intents of the replaced tooling, each against
//! something the service really serves:
//!
//! | replaced test                              | here                                                       |
//! |--------------------------------------------|------------------------------------------------------------|
//! | 1. `/api/health` `status == "ok"`          | `health`: `/status == "ok"` **and** `/state == "ready"` (the listener answers "ok" while still starting) |
//! | 2. filtering stats `enabled == true`       | `filtering-stats`: 200 and `/enabled == true`               |
//! | 3. `llm.enabled == true` (no such field)   | `filtering-stats`: the flat `/llmCacheHitRate` is a rate in 0..1 |
//! | 4. has `llmCache` (no such field)          | `filtering-stats`: `/llmCacheSize >= 0`                     |
//! | 5. `/api/tools` non-empty `tools`          | `tools`: `/tools nonempty`, each with a `/tools/0/name`     |
//! | 6. JSON-RPC ping on `/mcp` (not served)    | `servers`: `/api/servers` lists the connected servers (`/servers nonempty`) |
//! | 7. the config file is valid JSON           | not an HTTP concern: a pre-flight check (preflight-checks) |
//! | 8. an LLM key variable is set              | not an HTTP concern: a secret reference checked before deploy (secret-refs) |
//!
//! Every probe expects a 2xx, so a 500 or a 404 fails it.

use std::future::Future;
use std::pin::Pin;
use std::task::Poll;

use secret_refs::SecretRef;
use serde::{Deserialize, Serialize};

use crate::config::{DEFAULT_SUITE, HttpTarget, ProbeConfig};
use crate::error::ProbeError;
use crate::probe::{PrepareOptions, PreparedProbe, Probe};
use crate::result::{Outcome, ProbeResult};

/// The name of the built-in suite for the demo service.
pub const DEMO_SUITE: &str = "demo-hub";

/// What a suite run found.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SuiteReport {
    /// `ok` when every probe passed.
    pub status: Outcome,
    /// One result per probe, in the suite's order.
    pub probes: Vec<ProbeResult>,
}

impl SuiteReport {
    /// Whether every probe passed.
    pub fn is_ok(&self) -> bool {
        self.status == Outcome::Ok
    }
}

/// Runs every probe at once and reports them in order.
#[tracing::instrument(skip_all, fields(probes = probes.len()))]
pub async fn run_suite<P: Probe>(probes: &[P]) -> SuiteReport {
    let results = join_all(probes.iter().map(Probe::check).collect()).await;
    let status = if results.iter().all(ProbeResult::is_ok) {
        Outcome::Ok
    } else {
        Outcome::Fail
    };
    SuiteReport {
        status,
        probes: results,
    }
}

/// Prepares every probe, stopping at the first that cannot be prepared.
///
/// # Errors
/// As [`ProbeConfig::prepare`].
pub async fn prepare_all(
    configs: &[ProbeConfig],
    options: &PrepareOptions,
) -> Result<Vec<PreparedProbe>, ProbeError> {
    let mut prepared = Vec::with_capacity(configs.len());
    for config in configs {
        prepared.push(config.prepare(options).await?);
    }
    Ok(prepared)
}

/// The probes of the suite `name`: the manifest's probes with `suite = name` or, when the
/// manifest has none, the built-in [`DEMO_SUITE`] against `base_url`.
///
/// # Errors
/// [`ProbeError::UnknownSuite`] when neither exists.
pub fn select_suite(
    configs: &[ProbeConfig],
    name: &str,
    base_url: &str,
    bearer_token: Option<SecretRef>,
) -> Result<Vec<ProbeConfig>, ProbeError> {
    let chosen: Vec<ProbeConfig> = configs
        .iter()
        .filter(|c| c.suite == name)
        .cloned()
        .collect();
    if !chosen.is_empty() {
        return Ok(chosen);
    }
    if name == DEMO_SUITE {
        return Ok(demo_suite(base_url, bearer_token));
    }
    let mut known: Vec<&str> = configs.iter().map(|c| c.suite.as_str()).collect();
    known.push(DEMO_SUITE);
    known.sort_unstable();
    known.dedup();
    Err(ProbeError::UnknownSuite {
        name: name.to_owned(),
        known: known.join(", "),
    })
}

/// The built-in validation suite for the demo service (and the real MCP Hub) at `base_url`
/// (`http://127.0.0.1:7000`). `bearer_token` is sent to the `/api/*` routes other than health,
/// for a hub started with `--token`.
pub fn demo_suite(base_url: &str, bearer_token: Option<SecretRef>) -> Vec<ProbeConfig> {
    let base = base_url.trim_end_matches('/');
    let probe = |name: &str, path: &str, assertions: &[&str], auth: bool| {
        let mut target = HttpTarget::get(format!("{base}{path}"));
        target.expect_json = assertions.iter().filter_map(|a| a.parse().ok()).collect();
        if auth {
            target.bearer_token = bearer_token.clone();
        }
        ProbeConfig::http(name, target).in_suite(DEMO_SUITE)
    };
    vec![
        probe(
            "health",
            "/api/health",
            &[r#"/status == "ok""#, r#"/state == "ready""#],
            false,
        ),
        probe(
            "filtering-stats",
            "/api/filtering/stats",
            &[
                "/enabled == true",
                "/llmCacheSize >= 0",
                "/llmCacheHitRate >= 0",
                "/llmCacheHitRate <= 1",
            ],
            true,
        ),
        probe(
            "tools",
            "/api/tools",
            &["/tools nonempty", "/tools/0/name exists"],
            true,
        ),
        probe("servers", "/api/servers", &["/servers nonempty"], true),
    ]
}

/// The suites named in a list of probes, in first-seen order.
pub fn suite_names(configs: &[ProbeConfig]) -> Vec<&str> {
    let mut names: Vec<&str> = Vec::new();
    for c in configs {
        if !names.contains(&c.suite.as_str()) {
            names.push(&c.suite);
        }
    }
    if names.is_empty() {
        names.push(DEFAULT_SUITE);
    }
    names
}

/// A whole suite seen as one probe, for waiting until every probe of it passes in the same
/// round: an attempt runs them all at once and is ok only when each one is.
#[derive(Debug)]
pub struct SuiteProbe<P> {
    name: String,
    probes: Vec<P>,
    last: std::sync::Mutex<Option<SuiteReport>>,
}

impl<P: Probe> SuiteProbe<P> {
    /// A suite called `name` made of `probes`.
    pub fn new(name: impl Into<String>, probes: Vec<P>) -> Self {
        SuiteProbe {
            name: name.into(),
            probes,
            last: std::sync::Mutex::new(None),
        }
    }

    /// The per-probe report of the latest attempt.
    pub fn last_report(&self) -> Option<SuiteReport> {
        self.last.lock().ok().and_then(|last| last.clone())
    }
}

impl<P: Probe> Probe for SuiteProbe<P> {
    fn name(&self) -> &str {
        &self.name
    }

    async fn check(&self) -> ProbeResult {
        let report = run_suite(&self.probes).await;
        let failed: Vec<String> = report
            .probes
            .iter()
            .filter(|p| !p.is_ok())
            .map(|p| format!("{}: {}", p.name, p.reason))
            .collect();
        let total_ms = report
            .probes
            .iter()
            .map(|p| p.timings_ms.total_ms)
            .fold(0.0, f64::max);
        let reason = if failed.is_empty() {
            format!("all {} probes ok", report.probes.len())
        } else {
            format!(
                "{} of {} failed: {}",
                failed.len(),
                report.probes.len(),
                failed.join("; ")
            )
        };
        let result = ProbeResult {
            name: self.name.clone(),
            status: report.status,
            reason,
            status_code: None,
            timings_ms: crate::result::Timings {
                total_ms,
                ..Default::default()
            },
        };
        if let Ok(mut last) = self.last.lock() {
            *last = Some(report);
        }
        result
    }
}

/// Polls every future until all are done; outputs keep the input order. Probes are I/O-bound, so
/// running them on one task costs nothing and needs neither `'static` nor a spawn.
async fn join_all<F: Future>(futures: Vec<F>) -> Vec<F::Output> {
    let mut futures: Vec<Pin<Box<F>>> = futures.into_iter().map(Box::pin).collect();
    let mut outputs: Vec<Option<F::Output>> = futures.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (future, output) in futures.iter_mut().zip(outputs.iter_mut()) {
            if output.is_none() {
                match future.as_mut().poll(cx) {
                    Poll::Ready(value) => *output = Some(value),
                    Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            Poll::Pending
        } else {
            Poll::Ready(())
        }
    })
    .await;
    outputs.into_iter().flatten().collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Target;

    #[test]
    fn the_demo_suite_asks_for_readiness_not_just_ok() {
        let suite = demo_suite("http://127.0.0.1:7000/", None);
        assert_eq!(
            suite.iter().map(|p| p.name.as_str()).collect::<Vec<_>>(),
            ["health", "filtering-stats", "tools", "servers"]
        );
        let Target::Http(health) = &suite[0].target else {
            panic!("http")
        };
        assert_eq!(health.url, "http://127.0.0.1:7000/api/health");
        assert!(
            health
                .expect_json
                .iter()
                .any(|a| a.to_string() == r#"/state == "ready""#)
        );
        // Every assertion string parsed (none was silently dropped).
        let Target::Http(stats) = &suite[1].target else {
            panic!("http")
        };
        assert_eq!(stats.expect_json.len(), 4);
    }

    #[test]
    fn suites_are_selected_by_name() {
        let configs = vec![
            ProbeConfig::tcp("a", "h:1"),
            ProbeConfig::tcp("b", "h:1").in_suite("smoke"),
            ProbeConfig::tcp("c", "h:1").in_suite("smoke"),
        ];
        assert_eq!(select_suite(&configs, "smoke", "", None).unwrap().len(), 2);
        assert_eq!(
            select_suite(&configs, DEMO_SUITE, "http://h:1", None)
                .unwrap()
                .len(),
            4
        );
        let err = select_suite(&configs, "nope", "", None)
            .unwrap_err()
            .to_string();
        assert!(err.contains("default, demo-hub, smoke"), "{err}");
        assert_eq!(suite_names(&configs), ["default", "smoke"]);
    }
}
