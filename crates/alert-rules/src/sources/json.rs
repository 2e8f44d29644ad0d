//! A JSON endpoint read with a JSON pointer (`/latency_ms/p95`), optionally scaled.

use std::path::PathBuf;
use std::time::Duration;

use http::{HeaderName, HeaderValue};
use serde::{Serialize, Serializer};

use secret_refs::SecretRef;

use crate::http as client;
use crate::sample::{Sample, sample_from_json};
use crate::secret::{SecretText, expand_env};

/// An HTTP header of an http source, whose value may be secret: its value is never shown in
/// Debug output, serialised configuration, logs or errors.
///
/// Written as a `[[probe]]` header is, `headers = { Authorization = { secret = "env:HUB_TOKEN",
/// prefix = "Bearer " }, Accept = "application/json" }`: a literal value, or a secret-refs
/// reference resolved when the request is made. The older `header = "Name: value"` is still
/// read, with `${VAR}` in the value filled from the environment; that form is deprecated
/// (loading it logs a warning naming the reference to write instead).
#[derive(Clone, PartialEq, Eq)]
pub struct SecretHeader {
    /// The header name (`Authorization`).
    pub name: String,
    value: HeaderText,
}

#[derive(Clone, PartialEq, Eq)]
enum HeaderText {
    /// `header = "Name: value"`: `${VAR}` is filled from the environment (deprecated).
    Template(String),
    /// `headers = { Name = "value" }`.
    Literal(String),
    /// `headers = { Name = { secret = "env:VAR", prefix = "Bearer " } }`.
    Secret(SecretText),
}

impl SecretHeader {
    /// Parses the older `Name: value` form, in which `${VAR}` is filled from the environment.
    pub fn parse(text: &str) -> Result<Self, String> {
        let (name, value) = text
            .split_once(':')
            .ok_or("a header is written `Name: value`")?;
        let name = checked_name(name.trim())?;
        Ok(SecretHeader {
            name,
            value: HeaderText::Template(value.trim().to_owned()),
        })
    }

    /// A header with a literal value (not for credentials).
    pub fn literal(name: &str, value: impl Into<String>) -> Result<Self, String> {
        Ok(SecretHeader {
            name: checked_name(name)?,
            value: HeaderText::Literal(value.into()),
        })
    }

    /// A header whose value is `prefix` followed by the value of the secret reference.
    pub fn secret(
        name: &str,
        secret: SecretRef,
        prefix: impl Into<String>,
    ) -> Result<Self, String> {
        Self::from_text(name, SecretText::new(secret, prefix))
    }

    /// A header whose value is a checked secret reference with its prefix.
    pub(crate) fn from_text(name: &str, text: SecretText) -> Result<Self, String> {
        Ok(SecretHeader {
            name: checked_name(name)?,
            value: HeaderText::Secret(text),
        })
    }

    /// The name and the value, resolved: `${VAR}` expanded or the reference read. An error
    /// names the header and the variable or reference, never a value.
    pub(crate) async fn resolve(&self) -> Result<(HeaderName, HeaderValue), String> {
        let what = format!("header `{}`", self.name);
        let value = match &self.value {
            HeaderText::Template(t) => expand_env(t, &what)?,
            HeaderText::Literal(v) => v.clone(),
            HeaderText::Secret(s) => s.resolve().await.map_err(|e| format!("{what}: {e}"))?,
        };
        let name = HeaderName::from_bytes(self.name.as_bytes())
            .map_err(|_| format!("`{}` is not a header name", self.name))?;
        let mut value = HeaderValue::from_str(&value)
            .map_err(|_| format!("the value of {what} has invalid characters"))?;
        value.set_sensitive(true);
        Ok((name, value))
    }
}

fn checked_name(name: &str) -> Result<String, String> {
    HeaderName::from_bytes(name.as_bytes())
        .map(|_| name.to_owned())
        .map_err(|_| format!("`{name}` is not a header name"))
}

impl std::fmt::Debug for SecretHeader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SecretHeader({}: ***)", self.name)
    }
}

impl Serialize for SecretHeader {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match &self.value {
            // The reference names where the value is, not the value (`literal:` shows `***`).
            HeaderText::Secret(s) => {
                serializer.collect_str(&format_args!("{}: *** (from {})", self.name, s.reference()))
            }
            HeaderText::Template(_) | HeaderText::Literal(_) => {
                serializer.collect_str(&format_args!("{}: ***", self.name))
            }
        }
    }
}

/// A source reading one field of a JSON document served over HTTP.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct JsonSource {
    /// The endpoint (`http://127.0.0.1:7000/api/stats`), or a path against the service's base
    /// URL (`/api/stats`, `{url}/api/stats`) until [`Source::resolve_base_url`] joins them.
    ///
    /// [`Source::resolve_base_url`]: crate::Source::resolve_base_url
    #[serde(serialize_with = "crate::http::serialize_url")]
    pub url: String,
    /// An RFC 6901 JSON pointer to the field (`/latency_ms/p95`).
    pub pointer: String,
    /// A factor applied to numbers (100 turns a fraction into a percentage).
    pub scale: Option<f64>,
    /// For a ratio: a JSON pointer to the count it is taken over (`/totalTools`, the lookups
    /// behind a hit rate). A count of 0 makes the sample no data, since a rate over nothing
    /// is no rate (a service that says 0 % before its first lookup is not missing them all).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub denominator: Option<String>,
    /// With `denominator`: a count below this is no data as well (one cache miss is not a
    /// 0 % hit rate worth an alert). Unset: only 0 is.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub min_denominator: Option<f64>,
    /// The older single header (`header = "Name: value"`), if any.
    pub header: Option<SecretHeader>,
    /// Request headers (`headers = { … }`), each literal or a secret reference.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub headers: Vec<SecretHeader>,
    /// The request timeout.
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    /// A PEM file of CA certificates trusted besides the built-in roots: set with the base URL
    /// when that is a deployment's proxy with its own self-signed certificate.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<PathBuf>,
}

impl JsonSource {
    /// Fetches the document and reads the field: a down endpoint or a non-2xx answer is an
    /// error; a missing field is no data.
    #[tracing::instrument(skip_all, fields(url = %client::redacted_target(&self.url), pointer = %self.pointer))]
    pub async fn sample(&self) -> Sample {
        let mut headers = vec![(
            http::header::ACCEPT,
            HeaderValue::from_static("application/json"),
        )];
        for h in self.header.iter().chain(&self.headers) {
            match h.resolve().await {
                Ok(pair) => headers.push(pair),
                Err(e) => return Sample::error(e),
            }
        }
        let out = client::Outgoing {
            method: http::Method::GET,
            url: &self.url,
            headers,
            body: None,
            timeout: self.timeout,
            ca_file: self.ca_file.as_deref(),
        };
        let response = match client::send(out).await {
            Ok(r) => r,
            Err(f) => return Sample::error(format!("{}: {}", f.target, f.message)),
        };
        if !(200..300).contains(&response.status) {
            return Sample::error(format!(
                "{} answered HTTP {}",
                client::redacted_target(&self.url),
                response.status
            ));
        }
        let document: serde_json::Value = match serde_json::from_slice(&response.body) {
            Ok(v) => v,
            Err(e) => return Sample::error(format!("the answer is not JSON: {e}")),
        };
        self.sample_document(&document)
    }

    /// Reads the field from a document already fetched (as the monitor shares one reading of
    /// the stats route among its rules): the ratio's count first (`denominator`,
    /// `min_denominator`), then the field, scaled; a missing field is no data.
    pub fn sample_document(&self, document: &serde_json::Value) -> Sample {
        if let Some(count) = &self.denominator
            && let Some(gate) = ratio_gate(document, count, self.min_denominator)
        {
            return gate;
        }
        match document.pointer(&self.pointer) {
            Some(field) => {
                sample_from_json(field, &format!("field {}", self.pointer)).scaled(self.scale)
            }
            None => Sample::no_data(format!("the answer has no field {}", self.pointer)),
        }
    }
}

/// The sample a ratio's count stops (no data below the least count, an error for a count that
/// is not a number), or `None` when the ratio may be read.
fn ratio_gate(document: &serde_json::Value, count: &str, least: Option<f64>) -> Option<Sample> {
    let v = match document.pointer(count) {
        None => return Some(Sample::no_data(format!("the answer has no field {count}"))),
        Some(v) => v,
    };
    match v.as_f64() {
        Some(0.0) => Some(Sample::no_data(format!(
            "{count} is 0: a ratio over nothing is no data, not 0"
        ))),
        Some(n) if least.is_some_and(|least| n < least) => Some(Sample::no_data(format!(
            "{count} is {n}, below min_denominator {}: too few to judge a ratio",
            least.unwrap_or_default()
        ))),
        Some(_) => None,
        None if v.is_null() => Some(Sample::no_data(format!("field {count} is null"))),
        None => Some(Sample::error(format!("field {count} is not a number: {v}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ratio_over_too_few_is_no_data_and_over_enough_is_read() {
        let doc = serde_json::json!({"lookups": 1, "none": 0, "text": "x", "null": null});
        let no_data = |s: Option<Sample>| match s {
            Some(Sample::NoData(reason)) => reason,
            other => panic!("not no data: {other:?}"),
        };
        assert!(no_data(ratio_gate(&doc, "/none", None)).contains("over nothing"));
        no_data(ratio_gate(&doc, "/null", None));
        no_data(ratio_gate(&doc, "/missing", None));
        assert!(
            ratio_gate(&doc, "/lookups", None).is_none(),
            "one is enough unless asked"
        );
        let few = no_data(ratio_gate(&doc, "/lookups", Some(10.0)));
        assert!(few.contains("below min_denominator 10"), "{few}");
        let doc = serde_json::json!({"lookups": 10});
        assert!(ratio_gate(&doc, "/lookups", Some(10.0)).is_none());
        assert!(matches!(
            ratio_gate(&serde_json::json!({"n": "x"}), "/n", None),
            Some(Sample::Error(_))
        ));
    }

    #[test]
    fn header_values_stay_hidden() {
        let h = SecretHeader::parse("Authorization: Bearer hunter2").unwrap();
        assert_eq!(format!("{h:?}"), "SecretHeader(Authorization: ***)");
        assert_eq!(serde_json::to_string(&h).unwrap(), "\"Authorization: ***\"");
        assert!(SecretHeader::parse("no colon").is_err());
        assert!(SecretHeader::parse("bad name: x").is_err());
    }

    #[tokio::test]
    async fn header_values_expand_environment_variables() {
        // PATH is set in every test environment; a made-up name is not.
        let h = SecretHeader::parse("X-Path: p=${PATH}").unwrap();
        let (_, v) = h.resolve().await.unwrap();
        assert!(v.to_str().unwrap().starts_with("p=/"));
        let h = SecretHeader::parse("X-T: ${CUTOVER_ALERTS_SURELY_UNSET_VAR}").unwrap();
        assert!(
            h.resolve()
                .await
                .unwrap_err()
                .contains("CUTOVER_ALERTS_SURELY_UNSET_VAR")
        );
    }

    #[tokio::test]
    async fn secret_and_literal_headers_resolve_and_never_show_a_value() {
        let secret = SecretRef::parse("literal:hunter2-canary").unwrap();
        let h = SecretHeader::secret("Authorization", secret, "Bearer ").unwrap();
        let (name, value) = h.resolve().await.unwrap();
        assert_eq!(
            (name.as_str(), value.to_str().unwrap()),
            ("authorization", "Bearer hunter2-canary")
        );
        assert!(value.is_sensitive());
        let shown = format!("{h:?} {}", serde_json::to_string(&h).unwrap());
        assert!(!shown.contains("hunter2"), "{shown}");

        // A literal value is sent as written: `${…}` in it is text, not a variable.
        let h = SecretHeader::literal("X-Note", "${PATH}").unwrap();
        assert_eq!(h.resolve().await.unwrap().1, "${PATH}");
        assert!(SecretHeader::literal("bad name", "x").is_err());

        // An unresolvable reference names the header and the reference.
        let missing = SecretRef::parse("env:CUTOVER_ALERTS_SURELY_UNSET_TOKEN").unwrap();
        let err = SecretHeader::secret("X-Api-Key", missing, "")
            .unwrap()
            .resolve()
            .await
            .unwrap_err();
        assert!(
            err.contains("X-Api-Key") && err.contains("CUTOVER_ALERTS_SURELY_UNSET_TOKEN"),
            "{err}"
        );
    }
}
