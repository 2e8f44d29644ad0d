//! The serde types of cutover.toml's `[[alert]]` entries (this crate owns them).
//!
//! ```toml
//! [[alert]]
//! name = "llm-cache-hit-rate"
//! source = { http = "http://127.0.0.1:7000/api/filtering/stats", pointer = "/llmCacheHitRate", scale = 100 }
//! # or, against the service's base URL (the live deployment, or cutover-alerts --target):
//! # source = { http = "{url}/api/filtering/stats", … }   or   { http = "/api/filtering/stats", … }
//! # a ratio is no data while the count it is over is 0 (nothing looked up yet):
//! # source = { http = "{url}/api/filtering/stats", pointer = "/cacheHitRate", denominator = "/totalTools", scale = 100 }
//! warn = "< 80"
//! crit = "< 60"
//! for = "2m"
//! keep_firing_for = "1m"
//! no_data = "alerting"             # alerting | ok | keep-last | unknown (default)
//! error = "alerting"
//! ```
//!
//! Entries are validated while they are deserialised, so a mistake is reported with the
//! manifest's file, line and column by `manifest-loader`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::condition::Condition;
use crate::error::AlertError;
use crate::notify::NotifierConfig;
use crate::rule::{Policy, Rule};
use crate::secret::RawSecret;
use crate::sources::edge::DEFAULT_EDGE_WINDOW;
use crate::sources::{
    Aggregate, CommandSource, EdgeMetric, EdgeSource, HostFact, HostSource, JsonSource,
    ProcessField, ProcessSource, ProcessTarget, PrometheusSource, SecretHeader, Source,
};

/// How long an HTTP source or a command may take by default.
pub const DEFAULT_SOURCE_TIMEOUT: Duration = Duration::from_secs(5);
/// How long CPU use is measured over by default.
pub const DEFAULT_CPU_WINDOW: Duration = Duration::from_millis(500);

/// One `[[alert]]` entry: the rule, where its samples come from, and who hears about it.
///
/// ```
/// let toml = r#"
/// name = "p95"
/// source = { http = "http://127.0.0.1:7000/api/stats", pointer = "/latency_ms/p95" }
/// warn = "> 2000"
/// crit = "> 5000"
/// for = "1m"
/// "#;
/// let entry: alert_rules::AlertRuleConfig = toml::from_str(toml)?;
/// assert_eq!(entry.rule.for_duration, std::time::Duration::from_secs(60));
/// # Ok::<(), toml::de::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "RawAlertRule")]
pub struct AlertRuleConfig {
    /// The rule the engine evaluates.
    pub rule: Rule,
    /// Where its samples come from.
    pub source: Source,
    /// Notifiers for this rule alone (in addition to any the caller adds for every rule).
    pub notify: Vec<NotifierConfig>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAlertRule {
    name: String,
    source: RawSource,
    warn: Option<Condition>,
    crit: Option<Condition>,
    #[serde(rename = "for", default, with = "humantime_serde")]
    for_duration: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    keep_firing_for: Option<Duration>,
    #[serde(default)]
    no_data: Policy,
    #[serde(default)]
    error: Policy,
    #[serde(default, with = "humantime_serde")]
    delta: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    repeat_interval: Option<Duration>,
    #[serde(default)]
    labels: BTreeMap<String, String>,
    description: Option<String>,
    #[serde(default)]
    notify: Vec<NotifierConfig>,
}

impl TryFrom<RawAlertRule> for AlertRuleConfig {
    type Error = AlertError;

    fn try_from(raw: RawAlertRule) -> Result<Self, Self::Error> {
        let name = raw.name;
        let source = raw
            .source
            .build()
            .map_err(|message| AlertError::InvalidRule {
                rule: name.clone(),
                message: format!("source: {message}"),
            })?;
        let rule = Rule {
            name: name.clone(),
            warn: raw.warn,
            crit: raw.crit,
            for_duration: raw.for_duration.unwrap_or(Duration::ZERO),
            keep_firing_for: raw.keep_firing_for.unwrap_or(Duration::ZERO),
            no_data: raw.no_data,
            error: raw.error,
            delta: raw.delta,
            repeat_interval: raw.repeat_interval,
            labels: raw.labels,
            description: raw.description,
        };
        rule.validate()?;
        let numeric_only = matches!(
            source,
            Source::Prometheus(_) | Source::Process(_) | Source::Host(_) | Source::Edge(_)
        );
        if numeric_only && rule.conditions().any(|(_, c)| c.is_text()) {
            return Err(AlertError::InvalidRule {
                rule: name,
                message: "this source yields numbers; a string condition such as == \"open\" can never hold".into(),
            });
        }
        Ok(AlertRuleConfig {
            rule,
            source,
            notify: raw.notify,
        })
    }
}

/// Checks what single entries cannot: rule names are unique.
pub fn validate_rules(rules: &[AlertRuleConfig]) -> Result<(), AlertError> {
    let mut seen = BTreeSet::new();
    for r in rules {
        if !seen.insert(r.rule.name.as_str()) {
            return Err(AlertError::InvalidRule {
                rule: r.rule.name.clone(),
                message: "two [[alert]] entries have this name; names must be unique".into(),
            });
        }
    }
    Ok(())
}

/// Every key a `source = { … }` table may hold; which ones apply depends on the kind.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSource {
    http: Option<String>,
    prometheus: Option<String>,
    command: Option<Vec<String>>,
    process: Option<ProcessTarget>,
    host: Option<HostFact>,
    edge: Option<RawEdge>,
    pointer: Option<String>,
    scale: Option<f64>,
    denominator: Option<String>,
    min_denominator: Option<f64>,
    header: Option<String>,
    headers: Option<BTreeMap<String, RawHeaderValue>>,
    metric: Option<String>,
    labels: Option<BTreeMap<String, String>>,
    aggregate: Option<Aggregate>,
    field: Option<ProcessField>,
    path: Option<PathBuf>,
    #[serde(default, with = "humantime_serde")]
    timeout: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    cpu_window: Option<Duration>,
}

/// A value of `headers = { Name = … }`: literal text, or a secret reference with a prefix (as a
/// `[[probe]]` header is written).
#[derive(Deserialize)]
#[serde(
    untagged,
    expecting = "a header value, or { secret = \"env:NAME\", prefix = \"Bearer \" } (a secret reference and the text before its value)"
)]
enum RawHeaderValue {
    Literal(String),
    Secret(RawSecret),
}

/// `source = { edge = { window = "60s", location = "/api/", metric = "success_rate" } }`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEdge {
    metric: Option<EdgeMetric>,
    #[serde(default, with = "humantime_serde")]
    window: Option<Duration>,
    location: Option<String>,
    log: Option<PathBuf>,
}

impl RawSource {
    fn build(self) -> Result<Source, String> {
        let kinds = [
            ("http", self.http.is_some()),
            ("prometheus", self.prometheus.is_some()),
            ("command", self.command.is_some()),
            ("process", self.process.is_some()),
            ("host", self.host.is_some()),
            ("edge", self.edge.is_some()),
        ];
        let chosen: Vec<&str> = kinds
            .iter()
            .filter(|(_, set)| *set)
            .map(|(k, _)| *k)
            .collect();
        let kind = match chosen.as_slice() {
            [one] => *one,
            [] => {
                return Err(
                    "name one kind: http, prometheus, command, process, host or edge".into(),
                );
            }
            many => return Err(format!("name one kind, not {}", many.join(" and "))),
        };
        let present = [
            ("pointer", self.pointer.is_some()),
            ("scale", self.scale.is_some()),
            ("denominator", self.denominator.is_some()),
            ("min_denominator", self.min_denominator.is_some()),
            ("header", self.header.is_some()),
            ("headers", self.headers.is_some()),
            ("metric", self.metric.is_some()),
            ("labels", self.labels.is_some()),
            ("aggregate", self.aggregate.is_some()),
            ("field", self.field.is_some()),
            ("path", self.path.is_some()),
            ("timeout", self.timeout.is_some()),
            ("cpu_window", self.cpu_window.is_some()),
        ];
        let allowed: &[&str] = match kind {
            "http" => &[
                "pointer",
                "scale",
                "denominator",
                "min_denominator",
                "header",
                "headers",
                "timeout",
            ],
            "prometheus" => &["metric", "labels", "aggregate", "scale", "timeout"],
            "command" => &["scale", "timeout"],
            "process" => &["field", "cpu_window"],
            "edge" => &[],
            _ => &["path"],
        };
        if let Some((key, _)) = present.iter().find(|(k, set)| *set && !allowed.contains(k)) {
            return Err(format!(
                "`{key}` does not apply to a {kind} source (it takes {})",
                allowed.join(", ")
            ));
        }
        if self.scale.is_some_and(|s| !s.is_finite()) {
            return Err("`scale` must be a finite number".into());
        }
        let timeout = self.timeout.unwrap_or(DEFAULT_SOURCE_TIMEOUT);
        if timeout.is_zero() {
            return Err("`timeout` must be positive".into());
        }
        match kind {
            "http" => {
                let url = self.http.unwrap_or_default();
                crate::http::check_source_url(&url)?;
                let pointer = self
                    .pointer
                    .ok_or("an http source needs `pointer` (for example \"/latency_ms/p95\")")?;
                if !pointer.is_empty() && !pointer.starts_with('/') {
                    return Err(format!(
                        "`pointer` is a JSON pointer and starts with `/` (\"/{pointer}\")"
                    ));
                }
                if let Some(d) = &self.denominator
                    && !d.starts_with('/')
                {
                    return Err(format!(
                        "`denominator` is a JSON pointer and starts with `/` (\"/{d}\")"
                    ));
                }
                if let Some(least) = self.min_denominator {
                    if self.denominator.is_none() {
                        return Err(
                            "`min_denominator` needs `denominator` (the count the ratio is over)"
                                .into(),
                        );
                    }
                    if !least.is_finite() || least < 0.0 {
                        return Err(format!(
                            "`min_denominator` must be a count of 0 or more, not {least}"
                        ));
                    }
                }
                let header = self
                    .header
                    .as_deref()
                    .map(SecretHeader::parse)
                    .transpose()?;
                if let (Some(h), Some(text)) = (&header, &self.header) {
                    crate::secret::warn_if_template("header", text, |var| {
                        format!(
                            "`headers = {{ {} = {{ secret = \"env:{var}\", prefix = \"…\" }} }}`",
                            h.name
                        )
                    });
                }
                let headers = self
                    .headers
                    .unwrap_or_default()
                    .into_iter()
                    .map(|(name, value)| match value {
                        RawHeaderValue::Literal(v) => SecretHeader::literal(&name, v),
                        RawHeaderValue::Secret(s) => {
                            SecretHeader::from_text(&name, s.parse(&format!("headers.{name}"))?)
                        }
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                Ok(Source::Http(JsonSource {
                    url,
                    pointer,
                    scale: self.scale,
                    denominator: self.denominator,
                    min_denominator: self.min_denominator,
                    header,
                    headers,
                    timeout,
                    ca_file: None,
                }))
            }
            "prometheus" => {
                let url = self.prometheus.unwrap_or_default();
                crate::http::check_source_url(&url)?;
                let metric = self.metric.ok_or("a prometheus source needs `metric`")?;
                if metric.is_empty()
                    || !metric
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
                {
                    return Err(format!("`{metric}` is not a Prometheus metric name"));
                }
                Ok(Source::Prometheus(PrometheusSource {
                    url,
                    metric,
                    labels: self.labels.unwrap_or_default(),
                    aggregate: self.aggregate,
                    scale: self.scale,
                    timeout,
                    ca_file: None,
                }))
            }
            "command" => {
                let argv = self.command.unwrap_or_default();
                if argv.first().is_none_or(String::is_empty) {
                    return Err(
                        "`command` is an argv list such as [\"/usr/local/bin/queue-depth\"]".into(),
                    );
                }
                Ok(Source::Command(CommandSource {
                    argv,
                    scale: self.scale,
                    timeout,
                }))
            }
            "process" => {
                let target = self.process.unwrap_or(ProcessTarget {
                    pid_file: None,
                    pid: None,
                });
                if target.pid.is_some() == target.pid_file.is_some() {
                    return Err(
                        "`process` names exactly one of { pid_file = \"…\" } or { pid = N }".into(),
                    );
                }
                let field = self.field.ok_or(
                    "a process source needs `field` (rss_bytes, cpu_percent, threads, open_fds)",
                )?;
                Ok(Source::Process(ProcessSource {
                    target,
                    field,
                    cpu_window: self.cpu_window.unwrap_or(DEFAULT_CPU_WINDOW),
                }))
            }
            "edge" => {
                let raw = self.edge.ok_or("an edge source needs a table")?;
                let metric = raw.metric.ok_or(
                    "an edge source needs `metric` (success_rate, p50_ms, p95_ms, p99_ms, requests_per_sec, status_5xx, status_429)",
                )?;
                let window = raw.window.unwrap_or(DEFAULT_EDGE_WINDOW);
                if window < Duration::from_secs(1) {
                    return Err("an edge `window` is at least 1s (for example \"60s\")".into());
                }
                if let Some(location) = &raw.location
                    && !location.starts_with('/')
                    && !matches!(location.as_str(), "-" | "redirect" | "acme")
                {
                    return Err(format!(
                        "edge `location` {location:?} is a [[proxy.locations]] path such as \"/api/\""
                    ));
                }
                Ok(Source::Edge(EdgeSource {
                    log: raw.log,
                    window,
                    location: raw.location,
                    metric,
                }))
            }
            _ => {
                let fact = self.host.ok_or("a host source needs a fact")?;
                Ok(Source::Host(HostSource {
                    fact,
                    path: self.path.unwrap_or_else(|| PathBuf::from("/")),
                }))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(entry: &str) -> Result<AlertRuleConfig, String> {
        toml::from_str::<AlertRuleConfig>(entry).map_err(|e| e.to_string())
    }

    #[test]
    fn the_issue_examples_parse() {
        let a = parse(
            r#"
name = "llm-cache-hit-rate"
source = { http = "http://127.0.0.1:7000/api/filtering/stats", pointer = "/llmCacheHitRate", scale = 100 }
warn = "< 80"
crit = "< 60"
for = "2m"
keep_firing_for = "1m"
no_data = "alerting"
error = "alerting"
"#,
        )
        .unwrap();
        assert_eq!(a.rule.for_duration, Duration::from_secs(120));
        assert_eq!(a.rule.keep_firing_for, Duration::from_secs(60));
        assert_eq!(a.rule.no_data, Policy::Alerting);
        let Source::Http(s) = &a.source else { panic!() };
        assert_eq!(
            (s.pointer.as_str(), s.scale),
            ("/llmCacheHitRate", Some(100.0))
        );

        let b = parse(
            r#"
name = "server-errors"
source = { prometheus = "http://127.0.0.1:7000/metrics", metric = "NAME", labels = { code = "500" } }
crit = "> 0"
"#,
        )
        .unwrap();
        let Source::Prometheus(p) = &b.source else {
            panic!()
        };
        assert_eq!(p.labels["code"], "500");
        assert_eq!(b.rule.error, Policy::Unknown);

        for source in [
            r#"{ command = ["sh", "-c", "echo 1"] }"#,
            r#"{ process = { pid_file = "run/hub.pid" }, field = "rss_bytes" }"#,
            r#"{ process = { pid = 1 }, field = "cpu_percent" }"#,
            r#"{ host = "disk_free_percent", path = "/" }"#,
        ] {
            parse(&format!(
                "name = \"x\"\nsource = {source}\nwarn = \"> 1\"\n"
            ))
            .unwrap();
        }
        let c = parse("name = \"cb\"\nsource = { command = [\"x\"] }\nwarn = '== \"half-open\"'\ncrit = '== \"open\"'\n").unwrap();
        assert!(c.rule.crit.unwrap().is_text());
    }

    #[test]
    fn mistakes_are_reported_with_what_to_do() {
        let cases: &[(&str, &str)] = &[
            (
                "source = { http = \"http://h/\" }\nwarn = \"> 1\"",
                "needs `pointer`",
            ),
            (
                "source = { http = \"http://h/\", pointer = \"/a\", metric = \"m\" }\nwarn = \"> 1\"",
                "`metric` does not apply",
            ),
            (
                "source = { http = \"http://h/\", command = [\"x\"] }\nwarn = \"> 1\"",
                "not http and command",
            ),
            ("source = { }\nwarn = \"> 1\"", "name one kind"),
            (
                "source = { http = \"ftp://h/\", pointer = \"/a\" }\nwarn = \"> 1\"",
                "http://",
            ),
            (
                "source = { http = \"http://h/\", pointer = \"a\" }\nwarn = \"> 1\"",
                "starts with `/`",
            ),
            (
                "source = { http = \"http://h/\", pointer = \"/a\", min_denominator = 5 }\nwarn = \"> 1\"",
                "needs `denominator`",
            ),
            (
                "source = { http = \"http://h/\", pointer = \"/a\", denominator = \"/n\", min_denominator = -1 }\nwarn = \"> 1\"",
                "0 or more",
            ),
            ("source = { command = [\"x\"] }", "set `warn`, `crit`"),
            (
                "source = { command = [\"x\"] }\nwarn = \"about 3\"",
                "invalid condition",
            ),
            (
                "source = { host = \"disk_free_percent\" }\nwarn = '== \"open\"'",
                "string condition",
            ),
            (
                "source = { process = { pid = 1, pid_file = \"p\" }, field = \"rss_bytes\" }\nwarn = \"> 1\"",
                "exactly one",
            ),
            (
                "source = { command = [\"x\"] }\nwarn = \"> 1\"\nfor = \"soon\"",
                "soon",
            ),
            (
                "source = { command = [\"x\"] }\nwarn = \"> 1\"\nno_data = \"maybe\"",
                "maybe",
            ),
            (
                "source = { command = [\"x\"] }\nwarn = \"> 1\"\nfro = \"1m\"",
                "unknown field `fro`",
            ),
        ];
        for (body, want) in cases {
            let err = parse(&format!("name = \"x\"\n{body}\n")).unwrap_err();
            assert!(err.contains(want), "{body}\n => {err}");
        }
    }

    #[test]
    fn sources_written_against_the_base_url_resolve_later() {
        let mut a = parse(
            "name = \"p95\"\nsource = { http = \"{url}/api/stats\", pointer = \"/latency_ms/p95\" }\nwarn = \"> 1\"\n",
        )
        .unwrap();
        let mut b = parse(
            "name = \"m\"\nsource = { prometheus = \"/metrics\", metric = \"up\" }\nwarn = \"> 1\"\n",
        )
        .unwrap();
        assert!(a.source.needs_base_url() && b.source.needs_base_url());
        assert_eq!(a.source.describe(), "json {url}/api/stats /latency_ms/p95");
        let ca = std::path::Path::new("/root/proxy/conf/tls/cert.pem");
        a.source
            .resolve_base_url("https://127.0.0.1:8443", Some(ca));
        b.source.resolve_base_url("http://127.0.0.1:7100/", None);
        let (Source::Http(a), Source::Prometheus(b)) = (&a.source, &b.source) else {
            panic!()
        };
        assert_eq!(a.url, "https://127.0.0.1:8443/api/stats");
        assert_eq!(a.ca_file.as_deref(), Some(ca));
        assert_eq!(
            (b.url.as_str(), b.ca_file.as_deref()),
            ("http://127.0.0.1:7100/metrics", None)
        );

        // An absolute URL is left alone; a URL that is neither is refused.
        let mut c = parse(
            "name = \"c\"\nsource = { http = \"http://h:1/x\", pointer = \"/a\" }\nwarn = \"> 1\"\n",
        )
        .unwrap();
        assert!(!c.source.needs_base_url());
        c.source.resolve_base_url("http://elsewhere:2", Some(ca));
        assert_eq!(c.source.describe(), "json http://h:1/x /a");
        let err = parse(
            "name = \"d\"\nsource = { http = \"api/stats\", pointer = \"/a\" }\nwarn = \"> 1\"\n",
        )
        .unwrap_err();
        assert!(err.contains("http://"), "{err}");
    }

    #[test]
    fn names_must_be_unique() {
        let a = parse("name = \"x\"\nsource = { command = [\"x\"] }\nwarn = \"> 1\"\n").unwrap();
        assert!(validate_rules(std::slice::from_ref(&a)).is_ok());
        assert!(validate_rules(&[a.clone(), a]).is_err());
    }
}
