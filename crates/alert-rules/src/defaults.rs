//! The default rules: the replaced tooling's thresholds, pointed at the fields the demo
//! service (and any service with the same shapes) really serves, or, when the deployment has
//! a proxy, at what the proxy measured ([`SignalsFrom::Edge`]): success rate and latency
//! from nginx's access log work for a service that exposes nothing at all. What only the
//! service knows (cache hit rate, queue depth, circuit breaker, its memory) stays on its
//! routes.
//!
//! `/api/stats` is read because it answers without the fault knobs' injected errors, so a
//! failing service can still be measured. Rates are fractions there and are scaled to
//! percentages here: the replaced tooling compared 95 % with 0.95 and was always critical.
//!
//! Not every service serves these routes (MCP Hub 4.3.0 serves no `/api/stats`, and its
//! `/metrics` is the HTML of its web UI), so the defaults come as *candidates*
//! ([`default_candidates`]): a rule may have several, in order of preference, and
//! [`crate::select_served`] asks the service once for each route and keeps, per rule, the
//! first candidate the service serves. A rule none of whose routes is served (404, or an
//! answer that is not JSON or lacks the field) is left out and said so, rather than being
//! unknown for ever; a route that cannot be read (down, 5xx) keeps its rule, which then says
//! what is wrong.

use crate::config::AlertRuleConfig;
use crate::error::AlertError;

/// Where the default rules take success rate and latency from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignalsFrom {
    /// The service's own `/api/stats`.
    Service,
    /// The proxy's access log (`edge` sources, resolved with
    /// [`crate::Source::resolve_edge_log`]).
    Edge,
}

/// The default rules against a service at `base_url` (`http://127.0.0.1:7000`), with success
/// rate and latency from the service itself; see [`default_rules_from`].
///
/// | rule | source | warning | critical |
/// |---|---|---|---|
/// | success-rate | `/api/stats` `/success_rate` × 100 | < 95 | < 90 |
/// | latency-p95 | `/latency_ms/p95` (ms) | > 2000 | > 5000 |
/// | latency-p99 | `/latency_ms/p99` (ms) | > 3000 | > 8000 |
/// | cache-hit-rate | `/cache_hit_rate` × 100 over `/cache_lookups` (else, in [`default_candidates`], `/api/filtering/stats` `/cacheHitRate` × 100 over `/totalTools`), no data below 10 lookups | < 80 | < 60 |
/// | queue-depth | `/queue_depth` | > 10 | > 50 |
/// | circuit-breaker | `/circuit_breaker` | `== "half-open"` | `== "open"` |
/// | memory-growth | `/rss_bytes`, change over 10 min | > 64 MiB | > 256 MiB |
/// | disk-free | free space on `/`, % | < 10 | < 5 |
///
/// Statistics computed over a traffic window have no value while no traffic flows; those
/// rules treat "no data" as ok. A hit rate over no lookup is no data too (not 0 %), so an
/// idle service does not warn. A service that cannot be read makes the rules `unknown`.
pub fn default_rules(base_url: &str) -> Result<Vec<AlertRuleConfig>, AlertError> {
    default_rules_from(base_url, SignalsFrom::Service)
}

/// The default rules, with success rate and latency from `from`:
///
/// | rule | [`SignalsFrom::Edge`] source | warning | critical |
/// |---|---|---|---|
/// | success-rate | `edge` `success_rate`, all locations, 60 s | < 95 | < 90 |
/// | latency-p95 | `edge` `p95_ms` | > 2000 | > 5000 |
/// | latency-p99 | `edge` `p99_ms` | > 3000 | > 8000 |
///
/// The others are as in [`default_rules`]. A window without requests is "no data", which
/// these rules treat as ok (an idle service is not failing).
pub fn default_rules_from(
    base_url: &str,
    from: SignalsFrom,
) -> Result<Vec<AlertRuleConfig>, AlertError> {
    let mut rules = default_candidates(base_url, from)?;
    let mut seen = std::collections::BTreeSet::new();
    rules.retain(|r| seen.insert(r.rule.name.clone()));
    Ok(rules)
}

/// The default rules of [`default_rules_from`] with every alternative source: entries that
/// share a name are candidates for one rule, in order of preference, for
/// [`crate::select_served`] to choose from by what the service serves. Today one rule has
/// an alternative: `cache-hit-rate`, from `/api/stats` `/cache_hit_rate` (the demo), else
/// `/api/filtering/stats` `/cacheHitRate` (MCP Hub's), taken over `/totalTools` (the tool
/// checks, each a cache lookup) so that `0` before the first lookup is no data, not 0 %.
/// Both take at least 10 lookups (`min_denominator`): the one miss of a just-deployed
/// service's validation probe is not a 0 % hit rate.
pub fn default_candidates(
    base_url: &str,
    from: SignalsFrom,
) -> Result<Vec<AlertRuleConfig>, AlertError> {
    let base = base_url.trim_end_matches('/');
    let stats = format!("{base}/api/stats");
    let filtering = format!("{base}/api/filtering/stats");
    let (success, p95, p99) = match from {
        SignalsFrom::Service => (
            format!(
                r#"{{ http = "{stats}", pointer = "/success_rate", scale = 100, timeout = "10s" }}"#
            ),
            format!(r#"{{ http = "{stats}", pointer = "/latency_ms/p95", timeout = "10s" }}"#),
            format!(r#"{{ http = "{stats}", pointer = "/latency_ms/p99", timeout = "10s" }}"#),
        ),
        SignalsFrom::Edge => (
            r#"{ edge = { window = "60s", metric = "success_rate" } }"#.to_owned(),
            r#"{ edge = { window = "60s", metric = "p95_ms" } }"#.to_owned(),
            r#"{ edge = { window = "60s", metric = "p99_ms" } }"#.to_owned(),
        ),
    };
    let text = format!(
        r#"
[[alert]]
name = "success-rate"
source = {success}
warn = "< 95"
crit = "< 90"
for = "1m"
no_data = "ok"
description = "{{{{ $value }}}} % of requests succeeded in the last minute"

[[alert]]
name = "latency-p95"
source = {p95}
warn = "> 2000"
crit = "> 5000"
for = "1m"
no_data = "ok"
description = "p95 latency is {{{{ $value }}}} ms"

[[alert]]
name = "latency-p99"
source = {p99}
warn = "> 3000"
crit = "> 8000"
for = "1m"
no_data = "ok"
description = "p99 latency is {{{{ $value }}}} ms"

[[alert]]
name = "cache-hit-rate"
source = {{ http = "{stats}", pointer = "/cache_hit_rate", denominator = "/cache_lookups", min_denominator = 10, scale = 100, timeout = "10s" }}
warn = "< 80"
crit = "< 60"
for = "5m"
no_data = "ok"
description = "cache hit rate is {{{{ $value }}}} %"

[[alert]]
name = "cache-hit-rate"
source = {{ http = "{filtering}", pointer = "/cacheHitRate", denominator = "/totalTools", min_denominator = 10, scale = 100, timeout = "10s" }}
warn = "< 80"
crit = "< 60"
for = "5m"
no_data = "ok"
description = "cache hit rate is {{{{ $value }}}} %"

[[alert]]
name = "queue-depth"
source = {{ http = "{stats}", pointer = "/queue_depth", timeout = "10s" }}
warn = "> 10"
crit = "> 50"
for = "1m"
description = "{{{{ $value }}}} requests in flight"

[[alert]]
name = "circuit-breaker"
source = {{ http = "{stats}", pointer = "/circuit_breaker", timeout = "10s" }}
warn = '== "half-open"'
crit = '== "open"'
description = "the circuit breaker is {{{{ $value }}}}"

[[alert]]
name = "memory-growth"
source = {{ http = "{stats}", pointer = "/rss_bytes", timeout = "10s" }}
delta = "10m"
warn = "> 67108864"
crit = "> 268435456"
description = "resident memory grew by {{{{ $value }}}} bytes in 10 minutes"

[[alert]]
name = "disk-free"
source = {{ host = "disk_free_percent", path = "/" }}
warn = "< 10"
crit = "< 5"
for = "5m"
description = "{{{{ $value }}}} % of the disk is free"
"#
    );
    #[derive(serde::Deserialize)]
    struct Doc {
        alert: Vec<AlertRuleConfig>,
    }
    let doc: Doc = toml::from_str(&text).map_err(|e| AlertError::InvalidRule {
        rule: "(defaults)".into(),
        message: e.to_string(),
    })?;
    Ok(doc.alert)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_parse_and_point_at_the_base_url() {
        let rules = default_rules("http://127.0.0.1:9/").unwrap();
        let names: Vec<&str> = rules.iter().map(|r| r.rule.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "success-rate",
                "latency-p95",
                "latency-p99",
                "cache-hit-rate",
                "queue-depth",
                "circuit-breaker",
                "memory-growth",
                "disk-free"
            ]
        );
        let crate::sources::Source::Http(s) = &rules[0].source else {
            panic!()
        };
        assert_eq!(s.url, "http://127.0.0.1:9/api/stats");
        crate::config::validate_rules(&rules).unwrap();
    }

    #[test]
    fn with_a_proxy_success_and_latency_come_from_the_edge_and_the_rest_from_the_service() {
        let rules = default_rules_from("{url}", SignalsFrom::Edge).unwrap();
        let kinds: Vec<(&str, &str)> = rules
            .iter()
            .map(|r| {
                let kind = match &r.source {
                    crate::Source::Edge(_) => "edge",
                    crate::Source::Http(_) => "http",
                    crate::Source::Host(_) => "host",
                    _ => "other",
                };
                (r.rule.name.as_str(), kind)
            })
            .collect();
        assert_eq!(
            kinds,
            [
                ("success-rate", "edge"),
                ("latency-p95", "edge"),
                ("latency-p99", "edge"),
                ("cache-hit-rate", "http"),
                ("queue-depth", "http"),
                ("circuit-breaker", "http"),
                ("memory-growth", "http"),
                ("disk-free", "host")
            ]
        );
        assert!(rules[0].source.needs_edge_log());
        let mut success = rules[0].source.clone();
        success.resolve_edge_log(std::path::Path::new("/srv/hub/proxy"));
        let crate::Source::Edge(e) = &success else {
            panic!()
        };
        assert_eq!(
            e.log.as_deref(),
            Some(std::path::Path::new("/srv/hub/proxy/logs/access.json"))
        );
        assert_eq!(e.metric, crate::sources::EdgeMetric::SuccessRate);
    }
}
