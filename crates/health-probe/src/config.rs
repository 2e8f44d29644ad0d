//! The serde types of a probe, as written in the `[[probe]]` entries of `cutover.toml`:
//!
//! ```toml
//! [[probe]]
//! name = "health"
//! url = "http://127.0.0.1:7000/api/health"   # or: tcp = "127.0.0.1:7000", or: exec = ["argv", "..."]
//! method = "GET"                              # default GET
//! headers = { Accept = "application/json", Authorization = { secret = "env:HUB_TOKEN", prefix = "Bearer " } }
//! bearer_token = "env:HUB_TOKEN"             # a secret reference: sends `Authorization: Bearer …`
//! body = '{"ping": true}'
//! expect_status = [200, "3xx"]                # default "2xx"
//! expect_json = ['/state == "ready"', '/tools nonempty']
//! body_regex = "ready"
//! max_latency = "500ms"                       # latency budget for the whole attempt
//! timeout = "2s"                              # default 2s, enforced over the whole attempt
//! ca_file = "certs/ca.pem"                    # trusted besides the built-in web roots
//! insecure = false                            # true skips certificate verification
//! follow_redirects = 0                        # how many redirects to follow (default none)
//! suite = "smoke"                             # default "default"
//! ```
//!
//! Exactly one of `url`, `tcp` and `exec` names the target; HTTP options on a TCP or exec probe
//! are errors, as are unknown keys. Secret references are resolved when the probe is prepared,
//! and the values go only into request headers marked sensitive: never into results, errors or
//! logs.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use secret_refs::SecretRef;
use serde::{Deserialize, Serialize};

use crate::error::ProbeError;
use crate::expr::JsonAssertion;
use crate::status::StatusSet;

/// The timeout of a probe attempt when none is given.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(2);

/// The suite a probe belongs to when it names none.
pub const DEFAULT_SUITE: &str = "default";

/// Where a header value comes from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(untagged)]
pub enum HeaderSource {
    /// A literal value, written into the manifest (not for credentials).
    Value(String),
    /// A value resolved from a secret reference (`env:NAME`, `file:/path`, `op://…`), with an
    /// optional literal prefix such as `"Bearer "`.
    Secret(SecretHeader),
}

/// A header whose value is a secret reference.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SecretHeader {
    /// The secret reference (`env:HUB_TOKEN`); the reference, never the value.
    #[schemars(with = "String")]
    pub secret: SecretRef,
    /// Literal text put before the secret (`"Bearer "`).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub prefix: String,
}

/// What an HTTP(S) probe sends and expects.
#[derive(Debug, Clone, PartialEq)]
pub struct HttpTarget {
    /// `http://` or `https://` URL; a URL starting with `/` is relative to the base URL given
    /// when the probe is prepared.
    pub url: String,
    /// The request method (default `GET`).
    pub method: String,
    /// Extra request headers, in order.
    pub headers: Vec<(String, HeaderSource)>,
    /// A secret reference whose value is sent as `Authorization: Bearer <value>`.
    pub bearer_token: Option<SecretRef>,
    /// A request body.
    pub body: Option<String>,
    /// Accepted status codes (default 2xx).
    pub expect_status: StatusSet,
    /// Assertions on the JSON body.
    pub expect_json: Vec<JsonAssertion>,
    /// A regex the body must match.
    pub body_regex: Option<String>,
    /// A PEM file of extra CA certificates to trust.
    pub ca_file: Option<PathBuf>,
    /// Skip certificate verification (the result still reports the TLS phase).
    pub insecure: bool,
    /// How many redirects to follow (0: a 3xx is judged as it is).
    pub follow_redirects: u8,
}

impl HttpTarget {
    /// A `GET` of `url` expecting a 2xx.
    pub fn get(url: impl Into<String>) -> Self {
        HttpTarget {
            url: url.into(),
            method: "GET".to_owned(),
            headers: Vec::new(),
            bearer_token: None,
            body: None,
            expect_status: StatusSet::default(),
            expect_json: Vec::new(),
            body_regex: None,
            ca_file: None,
            insecure: false,
            follow_redirects: 0,
        }
    }
}

/// What a probe looks at.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Target {
    /// An HTTP(S) request.
    Http(Box<HttpTarget>),
    /// A TCP connect to `host:port`.
    Tcp {
        /// `host:port`.
        address: String,
    },
    /// A command (argv, no shell) that must exit 0 within the timeout.
    Exec {
        /// The program and its arguments.
        command: Vec<String>,
    },
}

/// One probe: a `[[probe]]` entry of `cutover.toml`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "RawProbe", into = "RawProbe")]
pub struct ProbeConfig {
    /// The probe's name, shown in reports.
    pub name: String,
    /// The suite it belongs to (default `"default"`).
    pub suite: String,
    /// The limit on one whole attempt (default 2 s).
    pub timeout: Duration,
    /// The latency budget: an attempt slower than this fails even when everything else held.
    pub max_latency: Option<Duration>,
    /// What is probed.
    pub target: Target,
}

impl ProbeConfig {
    fn new(name: impl Into<String>, target: Target) -> Self {
        ProbeConfig {
            name: name.into(),
            suite: DEFAULT_SUITE.to_owned(),
            timeout: DEFAULT_TIMEOUT,
            max_latency: None,
            target,
        }
    }

    /// An HTTP probe with the given target.
    pub fn http(name: impl Into<String>, target: HttpTarget) -> Self {
        Self::new(name, Target::Http(Box::new(target)))
    }

    /// A TCP connect probe of `host:port`.
    pub fn tcp(name: impl Into<String>, address: impl Into<String>) -> Self {
        Self::new(
            name,
            Target::Tcp {
                address: address.into(),
            },
        )
    }

    /// A command probe: `command[0]` run with the rest as arguments.
    pub fn exec(name: impl Into<String>, command: Vec<String>) -> Self {
        Self::new(name, Target::Exec { command })
    }

    /// Sets the attempt timeout.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Sets the latency budget.
    pub fn with_max_latency(mut self, budget: Duration) -> Self {
        self.max_latency = Some(budget);
        self
    }

    /// Puts the probe in a suite.
    pub fn in_suite(mut self, suite: impl Into<String>) -> Self {
        self.suite = suite.into();
        self
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
struct RawProbe {
    name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    suite: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    tcp: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    exec: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    method: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    headers: BTreeMap<String, HeaderSource>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<String>")]
    bearer_token: Option<SecretRef>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    body: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "status_set_schema")]
    expect_status: Option<StatusSet>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(with = "Vec<String>")]
    expect_json: Vec<JsonAssertion>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    body_regex: Option<String>,
    #[serde(
        default,
        with = "humantime_serde",
        skip_serializing_if = "Option::is_none"
    )]
    #[schemars(with = "Option<String>")]
    max_latency: Option<Duration>,
    #[serde(
        default,
        with = "humantime_serde",
        skip_serializing_if = "Option::is_none"
    )]
    #[schemars(with = "Option<String>")]
    timeout: Option<Duration>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    ca_file: Option<PathBuf>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    insecure: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    follow_redirects: Option<u8>,
}

/// A `[[probe]]` entry is read through `RawProbe`, so its schema is that one's.
impl schemars::JsonSchema for ProbeConfig {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "ProbeConfig".into()
    }

    fn json_schema(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
        <RawProbe as schemars::JsonSchema>::json_schema(generator)
    }
}

fn status_set_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "description": "Accepted status codes: 200, \"2xx\", \"200,204\" or a list of those.",
        "type": ["integer", "string", "array"],
        "items": { "type": ["integer", "string"] }
    })
}

impl TryFrom<RawProbe> for ProbeConfig {
    type Error = ProbeError;

    fn try_from(raw: RawProbe) -> Result<Self, Self::Error> {
        let bad = |message: String| ProbeError::InvalidConfig {
            probe: raw.name.clone(),
            message,
        };
        if raw.name.trim().is_empty() {
            return Err(bad("`name` must not be empty".to_owned()));
        }
        let http_only: Vec<&str> = [
            ("method", raw.method.is_some()),
            ("headers", !raw.headers.is_empty()),
            ("bearer_token", raw.bearer_token.is_some()),
            ("body", raw.body.is_some()),
            ("expect_status", raw.expect_status.is_some()),
            ("expect_json", !raw.expect_json.is_empty()),
            ("body_regex", raw.body_regex.is_some()),
            ("ca_file", raw.ca_file.is_some()),
            ("insecure", raw.insecure),
            ("follow_redirects", raw.follow_redirects.is_some()),
        ]
        .into_iter()
        .filter_map(|(key, set)| set.then_some(key))
        .collect();
        if let Some(re) = &raw.body_regex {
            regex::Regex::new(re)
                .map_err(|e| bad(format!("`body_regex` is not a valid regex: {e}")))?;
        }
        if raw.timeout.is_some_and(|t| t.is_zero()) {
            return Err(bad("`timeout` must be more than 0s".to_owned()));
        }
        let target = match (raw.url.clone(), raw.tcp.clone(), raw.exec.clone()) {
            (Some(url), None, None) => Target::Http(Box::new(HttpTarget {
                url,
                method: raw.method.clone().unwrap_or_else(|| "GET".to_owned()),
                headers: raw.headers.clone().into_iter().collect(),
                bearer_token: raw.bearer_token.clone(),
                body: raw.body.clone(),
                expect_status: raw.expect_status.clone().unwrap_or_default(),
                expect_json: raw.expect_json.clone(),
                body_regex: raw.body_regex.clone(),
                ca_file: raw.ca_file.clone(),
                insecure: raw.insecure,
                follow_redirects: raw.follow_redirects.unwrap_or(0),
            })),
            (None, tcp, exec) if (tcp.is_some() ^ exec.is_some()) && !http_only.is_empty() => {
                let kind = if tcp.is_some() { "tcp" } else { "exec" };
                return Err(bad(format!(
                    "{} only apply to `url` probes, not `{kind}`",
                    quote_list(&http_only)
                )));
            }
            (None, Some(address), None) => Target::Tcp { address },
            (None, None, Some(command)) if command.is_empty() => {
                return Err(bad("`exec` needs at least the program".to_owned()));
            }
            (None, None, Some(command)) => Target::Exec { command },
            (None, None, None) => {
                return Err(bad("needs one target: `url`, `tcp` or `exec`".to_owned()));
            }
            _ => return Err(bad("give only one of `url`, `tcp` and `exec`".to_owned())),
        };
        Ok(ProbeConfig {
            name: raw.name,
            suite: raw.suite.unwrap_or_else(|| DEFAULT_SUITE.to_owned()),
            timeout: raw.timeout.unwrap_or(DEFAULT_TIMEOUT),
            max_latency: raw.max_latency,
            target,
        })
    }
}

fn quote_list(keys: &[&str]) -> String {
    let quoted: Vec<String> = keys.iter().map(|k| format!("`{k}`")).collect();
    quoted.join(", ")
}

impl From<ProbeConfig> for RawProbe {
    fn from(config: ProbeConfig) -> Self {
        let mut raw = RawProbe {
            name: config.name,
            suite: (config.suite != DEFAULT_SUITE).then_some(config.suite),
            timeout: (config.timeout != DEFAULT_TIMEOUT).then_some(config.timeout),
            max_latency: config.max_latency,
            ..RawProbe::default()
        };
        match config.target {
            Target::Http(http) => {
                let http = *http;
                raw.url = Some(http.url);
                raw.method = (http.method != "GET").then_some(http.method);
                raw.headers = http.headers.into_iter().collect();
                raw.bearer_token = http.bearer_token;
                raw.body = http.body;
                raw.expect_status =
                    (http.expect_status != StatusSet::default()).then_some(http.expect_status);
                raw.expect_json = http.expect_json;
                raw.body_regex = http.body_regex;
                raw.ca_file = http.ca_file;
                raw.insecure = http.insecure;
                raw.follow_redirects =
                    (http.follow_redirects != 0).then_some(http.follow_redirects);
            }
            Target::Tcp { address } => raw.tcp = Some(address),
            Target::Exec { command } => raw.exec = Some(command),
        }
        raw
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Deserialize)]
    struct Doc {
        probe: Vec<ProbeConfig>,
    }

    fn parse(text: &str) -> Result<Vec<ProbeConfig>, String> {
        toml::from_str::<Doc>(text)
            .map(|d| d.probe)
            .map_err(|e| e.to_string())
    }

    #[test]
    fn a_full_http_probe_parses_and_round_trips() {
        let probes = parse(
            r#"
            [[probe]]
            name = "health"
            url = "http://127.0.0.1:7000/api/health"
            method = "POST"
            headers = { Accept = "application/json", Authorization = { secret = "env:HUB_TOKEN", prefix = "Bearer " } }
            body = "{}"
            expect_status = [200, "3xx"]
            expect_json = ['/state == "ready"', "/tools nonempty"]
            body_regex = "ready"
            max_latency = "500ms"
            timeout = "3s"
            ca_file = "ca.pem"
            follow_redirects = 2
            suite = "smoke"
            "#,
        )
        .unwrap();
        let probe = &probes[0];
        assert_eq!(probe.timeout, Duration::from_secs(3));
        assert_eq!(probe.suite, "smoke");
        let Target::Http(http) = &probe.target else {
            panic!("an HTTP probe")
        };
        assert_eq!(http.method, "POST");
        assert_eq!(
            http.headers[1],
            (
                "Authorization".to_owned(),
                HeaderSource::Secret(SecretHeader {
                    secret: SecretRef::parse("env:HUB_TOKEN").unwrap(),
                    prefix: "Bearer ".into()
                })
            )
        );
        assert!(http.expect_status.accepts(302) && !http.expect_status.accepts(201));
        let text = toml::to_string(&Doc2 {
            probe: probes.clone(),
        })
        .unwrap();
        assert_eq!(parse(&text).unwrap(), probes, "{text}");
    }

    #[derive(Serialize)]
    struct Doc2 {
        probe: Vec<ProbeConfig>,
    }

    #[test]
    fn defaults_are_get_2xx_two_seconds() {
        let probes = parse(
            "[[probe]]\nname = \"a\"\nurl = \"http://x/\"\n[[probe]]\nname = \"b\"\ntcp = \"x:1\"",
        )
        .unwrap();
        assert_eq!(probes[0].timeout, DEFAULT_TIMEOUT);
        assert_eq!(probes[0].suite, DEFAULT_SUITE);
        assert_eq!(
            probes[0].target,
            Target::Http(Box::new(HttpTarget::get("http://x/")))
        );
        assert_eq!(
            probes[1].target,
            Target::Tcp {
                address: "x:1".into()
            }
        );
    }

    #[test]
    fn inconsistent_probes_are_rejected() {
        for (text, needle) in [
            ("name = \"a\"", "needs one target"),
            (
                "name = \"a\"\nurl = \"http://x\"\ntcp = \"x:1\"",
                "only one of",
            ),
            (
                "name = \"a\"\ntcp = \"x:1\"\nexpect_json = [\"/a exists\"]",
                "`expect_json` only apply",
            ),
            ("name = \"a\"\nexec = []", "at least the program"),
            (
                "name = \"a\"\nurl = \"http://x\"\nbody_regex = \"(\"",
                "not a valid regex",
            ),
            (
                "name = \"a\"\nurl = \"http://x\"\nexpect_json = [\"state == 1\"]",
                "must start with `/`",
            ),
            (
                "name = \"a\"\nurl = \"http://x\"\nexpect_status = \"9xx\"",
                "invalid expected status",
            ),
            (
                "name = \"a\"\nurl = \"http://x\"\ntimeout = \"0s\"",
                "more than 0s",
            ),
            (
                "name = \"a\"\nurl = \"http://x\"\nheaders = { A = { secret = \"env:X\", prefx = \"B\" } }",
                "headers",
            ),
        ] {
            let err = parse(&format!("[[probe]]\n{text}")).unwrap_err();
            assert!(err.contains(needle), "{text}: {err}");
        }
    }

    #[test]
    fn unknown_keys_are_named_with_file_position_by_the_manifest_loader() {
        let manifest = manifest_loader::Manifest::from_str(
            "cutover.toml",
            "[[probe]]\nname = \"a\"\nurl = \"http://x\"\ntimout = \"1s\"\n",
        )
        .unwrap();
        let err = manifest
            .table::<Vec<ProbeConfig>>("probe")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("cutover.toml:") && err.contains("timout") && err.contains("timeout"),
            "{err}"
        );
    }
}
