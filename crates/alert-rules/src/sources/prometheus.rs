//! The Prometheus text exposition format, parsed properly (labels with escapes, special float
//! values, optional timestamps), and a source that picks one series out of it.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::http;
use crate::sample::Sample;

/// One sample line: `name{labels} value [timestamp]`.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    /// The metric name.
    pub name: String,
    /// Its labels.
    pub labels: BTreeMap<String, String>,
    /// The value.
    pub value: f64,
}

/// Parses an exposition document. Comments (`# HELP`, `# TYPE`, `# EOF`) and blank lines are
/// skipped; a malformed line is an error naming its line number.
pub fn parse_exposition(text: &str) -> Result<Vec<Series>, String> {
    let mut out = Vec::new();
    for (index, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        out.push(parse_line(line).map_err(|e| format!("line {}: {e}", index + 1))?);
    }
    Ok(out)
}

fn parse_line(line: &str) -> Result<Series, String> {
    let name_end = line
        .find(|c: char| c == '{' || c.is_whitespace())
        .unwrap_or(line.len());
    let name = &line[..name_end];
    if name.is_empty()
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
    {
        return Err(format!("`{name}` is not a metric name"));
    }
    let mut rest = &line[name_end..];
    let mut labels = BTreeMap::new();
    if let Some(after) = rest.strip_prefix('{') {
        rest = parse_labels(after, &mut labels)?;
    }
    let mut fields = rest.split_whitespace();
    let value = fields.next().ok_or("no value")?;
    let value = parse_float(value).ok_or_else(|| format!("`{value}` is not a number"))?;
    // An optional timestamp may follow; anything after that is malformed.
    if let Some(ts) = fields.next()
        && ts.parse::<i64>().is_err()
        && parse_float(ts).is_none()
    {
        return Err(format!("`{ts}` is not a timestamp"));
    }
    if fields.next().is_some() {
        return Err("unexpected text after the timestamp".to_owned());
    }
    Ok(Series {
        name: name.to_owned(),
        labels,
        value,
    })
}

/// Parses `a="x",b="y"}` and returns what follows the closing brace.
fn parse_labels<'a>(
    mut s: &'a str,
    labels: &mut BTreeMap<String, String>,
) -> Result<&'a str, String> {
    loop {
        s = s.trim_start();
        if let Some(after) = s.strip_prefix('}') {
            return Ok(after);
        }
        let eq = s.find('=').ok_or("a label without `=`")?;
        let key = s[..eq].trim();
        if key.is_empty() || !key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(format!("`{key}` is not a label name"));
        }
        s = s[eq + 1..]
            .trim_start()
            .strip_prefix('"')
            .ok_or("a label value must be quoted")?;
        let mut value = String::new();
        let mut chars = s.char_indices();
        let end = loop {
            match chars.next() {
                Some((i, '"')) => break i,
                Some((_, '\\')) => match chars.next() {
                    Some((_, 'n')) => value.push('\n'),
                    Some((_, c)) => value.push(c),
                    None => return Err("unterminated escape".to_owned()),
                },
                Some((_, c)) => value.push(c),
                None => return Err("unterminated label value".to_owned()),
            }
        };
        labels.insert(key.to_owned(), value);
        s = s[end + 1..].trim_start();
        if let Some(after) = s.strip_prefix(',') {
            s = after;
        } else if !s.starts_with('}') {
            return Err("expected `,` or `}` after a label".to_owned());
        }
    }
}

fn parse_float(s: &str) -> Option<f64> {
    match s {
        "+Inf" | "Inf" => Some(f64::INFINITY),
        "-Inf" => Some(f64::NEG_INFINITY),
        "NaN" => Some(f64::NAN),
        _ => s.parse().ok(),
    }
}

/// How several matching series become one value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Aggregate {
    /// Their sum (PromQL `sum`).
    Sum,
    /// The largest (PromQL `max`).
    Max,
    /// The smallest (PromQL `min`).
    Min,
}

impl Aggregate {
    /// The PromQL aggregation operator.
    pub fn as_str(self) -> &'static str {
        match self {
            Aggregate::Sum => "sum",
            Aggregate::Max => "max",
            Aggregate::Min => "min",
        }
    }
}

/// Picks the value of `metric{labels}`: no match is no data; several matches need an
/// aggregation, since silently picking one would judge the wrong series.
pub fn select(
    series: &[Series],
    metric: &str,
    labels: &BTreeMap<String, String>,
    aggregate: Option<Aggregate>,
) -> Sample {
    // As in PromQL, a matcher `l=""` also matches series without the label.
    let matches: Vec<f64> = series
        .iter()
        .filter(|s| s.name == metric)
        .filter(|s| {
            labels
                .iter()
                .all(|(k, v)| s.labels.get(k).map_or(v.is_empty(), |have| have == v))
        })
        .map(|s| s.value)
        .collect();
    let selector = selector(metric, labels);
    match (matches.as_slice(), aggregate) {
        ([], _) => Sample::no_data(format!("no series matches {selector}")),
        ([one], None) => Sample::number(*one),
        (_, None) => Sample::error(format!(
            "{} series match {selector}; add label matchers or set aggregate = \"sum\"|\"max\"|\"min\"",
            matches.len()
        )),
        (all, Some(Aggregate::Sum)) => Sample::number(all.iter().sum()),
        (all, Some(Aggregate::Max)) => {
            Sample::number(all.iter().copied().fold(f64::NEG_INFINITY, f64::max))
        }
        (all, Some(Aggregate::Min)) => {
            Sample::number(all.iter().copied().fold(f64::INFINITY, f64::min))
        }
    }
}

/// `metric{a="x",b="y"}` with PromQL escaping of label values.
pub fn selector(metric: &str, labels: &BTreeMap<String, String>) -> String {
    if labels.is_empty() {
        return metric.to_owned();
    }
    let inner: Vec<String> = labels
        .iter()
        .map(|(k, v)| {
            let escaped = v
                .replace('\\', "\\\\")
                .replace('"', "\\\"")
                .replace('\n', "\\n");
            format!("{k}=\"{escaped}\"")
        })
        .collect();
    format!("{metric}{{{}}}", inner.join(","))
}

/// A source reading one series from a `/metrics` endpoint.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PrometheusSource {
    /// The endpoint (`http://127.0.0.1:7000/metrics`), or a path against the service's base
    /// URL (`/metrics`, `{url}/metrics`) until [`Source::resolve_base_url`] joins them.
    ///
    /// [`Source::resolve_base_url`]: crate::Source::resolve_base_url
    #[serde(serialize_with = "crate::http::serialize_url")]
    pub url: String,
    /// The metric name.
    pub metric: String,
    /// Label matchers (equality).
    pub labels: BTreeMap<String, String>,
    /// How to combine several matching series.
    pub aggregate: Option<Aggregate>,
    /// A factor applied to the value.
    pub scale: Option<f64>,
    /// The request timeout.
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    /// A PEM file of CA certificates trusted besides the built-in roots: set with the base URL
    /// when that is a deployment's proxy with its own self-signed certificate.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<PathBuf>,
}

impl PrometheusSource {
    /// Fetches the page and selects the series.
    #[tracing::instrument(skip_all, fields(url = %http::redacted_target(&self.url), metric = %self.metric))]
    pub async fn sample(&self) -> Sample {
        let out = http::Outgoing {
            method: ::http::Method::GET,
            url: &self.url,
            headers: Vec::new(),
            body: None,
            timeout: self.timeout,
            ca_file: self.ca_file.as_deref(),
        };
        let response = match http::send(out).await {
            Ok(r) => r,
            Err(f) => return Sample::error(format!("{}: {}", f.target, f.message)),
        };
        if !(200..300).contains(&response.status) {
            return Sample::error(format!(
                "{} answered HTTP {}",
                http::redacted_target(&self.url),
                response.status
            ));
        }
        let text = String::from_utf8_lossy(&response.body);
        match parse_exposition(&text) {
            Ok(series) => {
                select(&series, &self.metric, &self.labels, self.aggregate).scaled(self.scale)
            }
            Err(e) => Sample::error(format!("not the Prometheus text format: {e}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PAGE: &str = r#"# HELP http_requests_total Requests served.
# TYPE http_requests_total counter
http_requests_total{code="200",route="/api/tools"} 1027 1395066363000
http_requests_total{code="500",route="/api/tools"} 3
http_requests_total{code="500",route="/api/stats"} 4
  # indented comment
weird_labels{path="C:\\dir\\",msg="say \"hi\"\nbye",} +Inf
no_labels 2.5e3
nan_value NaN
# EOF
"#;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn parses_labels_escapes_and_special_values() {
        let series = parse_exposition(PAGE).unwrap();
        assert_eq!(series.len(), 6);
        assert_eq!(series[0].value, 1027.0);
        assert_eq!(series[3].labels["path"], "C:\\dir\\");
        assert_eq!(series[3].labels["msg"], "say \"hi\"\nbye");
        assert_eq!(series[3].value, f64::INFINITY);
        assert_eq!(series[4].value, 2500.0);
        assert!(series[5].value.is_nan());
    }

    #[test]
    fn malformed_lines_name_their_number() {
        for bad in [
            "x{a=\"1\" 2",
            "x{a=1} 2",
            "x",
            "x{a=\"1\"} one",
            "bad-name 1",
            "x 1 2 3",
        ] {
            let err = parse_exposition(&format!("# ok\n{bad}\n")).unwrap_err();
            assert!(err.starts_with("line 2:"), "{bad}: {err}");
        }
    }

    #[test]
    fn selects_one_series_or_says_why_not() {
        let series = parse_exposition(PAGE).unwrap();
        let pick = |m: &str, l: &[(&str, &str)], a| select(&series, m, &labels(l), a);
        assert_eq!(
            pick(
                "http_requests_total",
                &[("code", "500"), ("route", "/api/stats")],
                None
            ),
            Sample::number(4.0)
        );
        assert_eq!(pick("no_labels", &[], None), Sample::number(2500.0));
        assert!(matches!(
            pick("http_requests_total", &[("code", "500")], None),
            Sample::Error(_)
        ));
        assert_eq!(
            pick(
                "http_requests_total",
                &[("code", "500")],
                Some(Aggregate::Sum)
            ),
            Sample::number(7.0)
        );
        assert_eq!(
            pick(
                "http_requests_total",
                &[("code", "500")],
                Some(Aggregate::Max)
            ),
            Sample::number(4.0)
        );
        assert!(matches!(
            pick("http_requests_total", &[("code", "404")], None),
            Sample::NoData(_)
        ));
        assert!(matches!(
            pick("absent_metric", &[], None),
            Sample::NoData(_)
        ));
        // An empty matcher matches a series without that label, as in PromQL.
        assert_eq!(
            pick("no_labels", &[("job", "")], None),
            Sample::number(2500.0)
        );
    }

    #[test]
    fn selectors_escape_label_values() {
        assert_eq!(
            selector("m", &labels(&[("a", "x\"y"), ("b", "1")])),
            r#"m{a="x\"y",b="1"}"#
        );
        assert_eq!(selector("m", &BTreeMap::new()), "m");
    }
}
