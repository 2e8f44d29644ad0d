//! Which rules a service can answer: each route a rule reads is asked once, and a rule whose
//! route the service does not serve is left out, with the reason, instead of being unknown
//! for ever. This is how the defaults ([`crate::default_candidates`]) fit a service: a rule
//! may have several candidates (entries sharing a name, in order of preference) and the
//! first served one is kept.
//!
//! A route is *not served* when it answers 404 or 410, when a JSON source's route answers
//! 2xx with something that is not JSON (MCP Hub's web UI answers every unknown path with
//! HTML) or without the field the rule reads, and when a Prometheus source's route answers
//! HTML. A route that cannot be read (connection refused, timeout, 5xx, 401) *is* kept: the
//! service may be down or failing, and that is for the rule to report, never a reason to go
//! quiet. Sources that read no route (edge, host, process, command) are always kept.

use std::collections::BTreeMap;

use http::HeaderValue;
use serde::Serialize;

use crate::config::AlertRuleConfig;
use crate::http as client;
use crate::sources::Source;

/// A rule left out because the service does not serve what it reads.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NotServed {
    /// The rule's name.
    pub name: String,
    /// Why (`GET /api/stats answered 404`), for every candidate tried.
    pub reason: String,
}

/// What [`select_served`] chose.
#[derive(Debug, Clone, Default)]
pub struct Selection {
    /// One rule per name, in the order names first appear.
    pub rules: Vec<AlertRuleConfig>,
    /// The names none of whose candidates is served.
    pub not_served: Vec<NotServed>,
}

/// What one route answered to the probe.
#[derive(Debug, Clone)]
enum Answer {
    /// 2xx and a JSON document.
    Json(serde_json::Value),
    /// 2xx, not JSON; `html` when it looks like a web page.
    Text { html: bool },
    /// 404 or 410.
    Absent(u16),
    /// Anything else: down, timeout, another status.
    Unreadable,
}

/// For each rule name in `candidates`, the first candidate whose route the service serves.
/// Each distinct route is asked once (sequentially per route, all routes at once).
#[tracing::instrument(skip_all, fields(candidates = candidates.len()))]
pub async fn select_served(candidates: &[AlertRuleConfig]) -> Selection {
    let mut routes: BTreeMap<String, &Source> = BTreeMap::new();
    for c in candidates {
        if let Some(url) = route(&c.source) {
            routes.entry(url.to_owned()).or_insert(&c.source);
        }
    }
    let mut tasks = tokio::task::JoinSet::new();
    for (url, source) in routes {
        let source = source.clone();
        tasks.spawn(async move { (url, probe(&source).await) });
    }
    let mut answers = BTreeMap::new();
    while let Some(joined) = tasks.join_next().await {
        if let Ok((url, answer)) = joined {
            answers.insert(url, answer);
        }
    }

    let mut selection = Selection::default();
    let mut decided: Vec<String> = Vec::new();
    let mut reasons: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for c in candidates {
        let name = &c.rule.name;
        if decided.contains(name) {
            continue;
        }
        match served(&c.source, &answers) {
            Ok(()) => {
                decided.push(name.clone());
                reasons.remove(name);
                selection.rules.push(c.clone());
            }
            Err(why) => reasons.entry(name.clone()).or_default().push(why),
        }
    }
    // Names with no served candidate, in the order they first appear.
    for c in candidates {
        if let Some(why) = reasons.remove(&c.rule.name) {
            tracing::info!(rule = %c.rule.name, reason = %why.join("; "), "not served; rule left out");
            selection.not_served.push(NotServed {
                name: c.rule.name.clone(),
                reason: why.join("; "),
            });
        }
    }
    selection
}

/// The URL a source reads, when it reads one.
fn route(source: &Source) -> Option<&str> {
    match source {
        Source::Http(s) => Some(&s.url),
        Source::Prometheus(s) => Some(&s.url),
        _ => None,
    }
}

/// Whether the service serves what `source` reads, by the probe's answers.
fn served(source: &Source, answers: &BTreeMap<String, Answer>) -> Result<(), String> {
    let Some(url) = route(source) else {
        return Ok(());
    };
    let shown = client::display_url(url);
    let Some(answer) = answers.get(url) else {
        return Ok(());
    };
    match (source, answer) {
        (_, Answer::Unreadable) => Ok(()),
        (_, Answer::Absent(status)) => Err(format!("GET {shown} answered {status}")),
        (Source::Http(_), Answer::Text { html }) => Err(format!(
            "GET {shown} answers {}, not JSON",
            if *html { "HTML" } else { "text" }
        )),
        (Source::Http(s), Answer::Json(doc)) => {
            for pointer in std::iter::once(&s.pointer).chain(s.denominator.as_ref()) {
                if doc.pointer(pointer).is_none() {
                    return Err(format!("GET {shown} answers without {pointer}"));
                }
            }
            Ok(())
        }
        (Source::Prometheus(_), Answer::Text { html: true }) => {
            Err(format!("GET {shown} answers HTML, not Prometheus text"))
        }
        _ => Ok(()),
    }
}

/// Asks the route once, as the source would.
async fn probe(source: &Source) -> Answer {
    let (url, timeout, ca_file, header) = match source {
        Source::Http(s) => (
            &s.url,
            s.timeout,
            s.ca_file.as_deref(),
            s.header.iter().chain(&s.headers).collect::<Vec<_>>(),
        ),
        Source::Prometheus(s) => (&s.url, s.timeout, s.ca_file.as_deref(), Vec::new()),
        _ => return Answer::Unreadable,
    };
    let mut headers = vec![(
        http::header::ACCEPT,
        HeaderValue::from_static(match source {
            Source::Http(_) => "application/json",
            _ => "text/plain",
        }),
    )];
    for h in header {
        match h.resolve().await {
            Ok(pair) => headers.push(pair),
            Err(_) => return Answer::Unreadable,
        }
    }
    let out = client::Outgoing {
        method: http::Method::GET,
        url,
        headers,
        body: None,
        timeout,
        ca_file,
    };
    match client::send(out).await {
        Ok(r) if r.status == 404 || r.status == 410 => Answer::Absent(r.status),
        Ok(r) if (200..300).contains(&r.status) => {
            match serde_json::from_slice::<serde_json::Value>(&r.body) {
                Ok(doc) => Answer::Json(doc),
                Err(_) => {
                    let start = String::from_utf8_lossy(&r.body[..r.body.len().min(512)])
                        .trim_start()
                        .to_ascii_lowercase();
                    Answer::Text {
                        html: start.starts_with("<!doctype html") || start.starts_with("<html"),
                    }
                }
            }
        }
        _ => Answer::Unreadable,
    }
}
