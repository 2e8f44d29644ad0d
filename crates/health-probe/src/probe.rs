//! The [`Probe`] trait and the step from configuration to a runnable probe: URLs parsed, regexes
//! compiled, CA files read and secrets resolved once, before the first attempt, so that a wait
//! loop repeats only the network work and a bad configuration fails before anything is probed.

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderValue};
use http::{Method, Uri};
use secret_refs::Resolver;

use crate::config::{HeaderSource, HttpTarget, ProbeConfig, Target};
use crate::error::ProbeError;
use crate::exec::ExecProbe;
use crate::http::{HttpProbe, header_name};
use crate::result::ProbeResult;
use crate::tcp::TcpProbe;

/// Something that can be checked, once per call.
pub trait Probe: Send + Sync {
    /// The name shown in reports.
    fn name(&self) -> &str;

    /// Runs one attempt, bounded by the probe's timeout. Never errors: an unreachable or
    /// unhealthy target is a result with status `fail` and a reason.
    fn check(&self) -> impl Future<Output = ProbeResult> + Send;
}

impl<T: Probe> Probe for &T {
    fn name(&self) -> &str {
        (**self).name()
    }

    fn check(&self) -> impl Future<Output = ProbeResult> + Send {
        (**self).check()
    }
}

impl<T: Probe> Probe for Box<T> {
    fn name(&self) -> &str {
        (**self).name()
    }

    fn check(&self) -> impl Future<Output = ProbeResult> + Send {
        (**self).check()
    }
}

impl<T: Probe> Probe for Arc<T> {
    fn name(&self) -> &str {
        (**self).name()
    }

    fn check(&self) -> impl Future<Output = ProbeResult> + Send {
        (**self).check()
    }
}

/// A probe ready to run, of any kind.
#[derive(Debug)]
#[non_exhaustive]
pub enum PreparedProbe {
    /// HTTP(S).
    Http(Box<HttpProbe>),
    /// TCP connect.
    Tcp(TcpProbe),
    /// A command.
    Exec(ExecProbe),
}

impl Probe for PreparedProbe {
    fn name(&self) -> &str {
        match self {
            PreparedProbe::Http(p) => &p.name,
            PreparedProbe::Tcp(p) => &p.name,
            PreparedProbe::Exec(p) => &p.name,
        }
    }

    async fn check(&self) -> ProbeResult {
        match self {
            PreparedProbe::Http(p) => p.check().await,
            PreparedProbe::Tcp(p) => p.check().await,
            PreparedProbe::Exec(p) => p.check().await,
        }
    }
}

/// What preparing a probe needs besides its configuration.
#[derive(Debug, Clone, Default)]
pub struct PrepareOptions {
    /// The directory relative `ca_file` paths resolve against (the manifest's directory);
    /// the current directory when `None`.
    pub base_dir: Option<PathBuf>,
    /// The base (`http://127.0.0.1:7000`) for probe URLs written as a path (`/api/health`).
    pub base_url: Option<String>,
    /// A PEM file of CA certificates trusted for the probes whose URL was written as a path
    /// (joined to [`Self::base_url`]) and which name no `ca_file` of their own: the
    /// certificate a deployment's proxy made for itself, when the base URL is its HTTPS
    /// listener. Probes with an absolute URL never get it. A relative path resolves against
    /// [`Self::base_dir`].
    pub base_ca_file: Option<PathBuf>,
    /// Resolves the secret references of headers.
    pub resolver: Resolver,
}

impl ProbeConfig {
    /// Turns the configuration into a runnable probe.
    ///
    /// # Errors
    /// A bad URL or method, a missing or empty CA file, an invalid header, or a secret reference
    /// that cannot be resolved; errors name the probe, never a secret value.
    #[tracing::instrument(skip_all, fields(probe = %self.name))]
    pub async fn prepare(&self, options: &PrepareOptions) -> Result<PreparedProbe, ProbeError> {
        let probe = Ok(match &self.target {
            Target::Http(http) => {
                PreparedProbe::Http(Box::new(self.prepare_http(http, options).await?))
            }
            Target::Tcp { address } => PreparedProbe::Tcp(TcpProbe {
                name: self.name.clone(),
                address: address.clone(),
                timeout: self.timeout,
                max_latency: self.max_latency,
            }),
            Target::Exec { command } => {
                if command.is_empty() {
                    return Err(ProbeError::InvalidConfig {
                        probe: self.name.clone(),
                        message: "`exec` needs at least the program".to_owned(),
                    });
                }
                PreparedProbe::Exec(ExecProbe {
                    name: self.name.clone(),
                    command: command.clone(),
                    timeout: self.timeout,
                    max_latency: self.max_latency,
                })
            }
        });
        if self.timeout.is_zero() {
            return Err(ProbeError::InvalidConfig {
                probe: self.name.clone(),
                message: "the timeout must be more than 0s".to_owned(),
            });
        }
        probe
    }

    async fn prepare_http(
        &self,
        http: &HttpTarget,
        options: &PrepareOptions,
    ) -> Result<HttpProbe, ProbeError> {
        let name = self.name.as_str();
        let uri = parse_url(name, &http.url, options.base_url.as_deref())?;
        let method = Method::from_bytes(http.method.trim().to_ascii_uppercase().as_bytes())
            .map_err(|_| ProbeError::InvalidConfig {
                probe: name.to_owned(),
                message: format!("invalid HTTP method `{}`", http.method),
            })?;
        let headers = resolve_headers(name, http, &options.resolver).await?;
        let body_regex = http
            .body_regex
            .as_deref()
            .map(regex::Regex::new)
            .transpose()
            .map_err(|e| ProbeError::InvalidConfig {
                probe: name.to_owned(),
                message: format!("invalid body_regex: {e}"),
            })?;
        // A probe's own CA file wins; a probe aimed at the base URL trusts the base's CA.
        let relative = http.url.starts_with('/');
        let ca_file = http
            .ca_file
            .as_ref()
            .or(options.base_ca_file.as_ref().filter(|_| relative))
            .map(|p| match &options.base_dir {
                Some(dir) if p.is_relative() => dir.join(p),
                _ => p.clone(),
            });
        // TLS is configured when the URL is https, or when a followed redirect may lead there.
        let tls = if uri.scheme_str() == Some("https")
            || http.follow_redirects > 0
            || ca_file.is_some()
        {
            Some(crate::tls::client_config(
                name,
                ca_file.as_deref(),
                http.insecure,
            )?)
        } else {
            None
        };
        Ok(HttpProbe {
            name: name.to_owned(),
            timeout: self.timeout,
            max_latency: self.max_latency,
            method,
            uri,
            headers,
            body: http.body.clone().map(Bytes::from).unwrap_or_default(),
            expect_status: http.expect_status.clone(),
            expect_json: http.expect_json.clone(),
            body_regex,
            tls,
            follow_redirects: http.follow_redirects,
        })
    }
}

/// Parses a probe URL: absolute `http(s)://host[:port]/path`, or a path joined to `base`.
pub(crate) fn parse_url(probe: &str, url: &str, base: Option<&str>) -> Result<Uri, ProbeError> {
    let invalid = |message: String| ProbeError::InvalidUrl {
        probe: probe.to_owned(),
        url: url.to_owned(),
        message,
    };
    let full = if url.starts_with('/') {
        let base =
            base.ok_or_else(|| invalid("a path needs a base URL (--base-url)".to_owned()))?;
        format!("{}{url}", base.trim_end_matches('/'))
    } else {
        url.to_owned()
    };
    if !full.contains("://") {
        return Err(invalid(
            "the URL needs a scheme, as in http://host:port/path".to_owned(),
        ));
    }
    let uri: Uri = full.parse().map_err(|e| invalid(format!("{e}")))?;
    match uri.scheme_str() {
        Some("http" | "https") => {}
        Some(other) => return Err(invalid(format!("scheme `{other}` is not http or https"))),
        None => {
            return Err(invalid(
                "the URL needs a scheme, as in http://host:port/path".to_owned(),
            ));
        }
    }
    if uri.host().is_none_or(str::is_empty) {
        return Err(invalid("the URL has no host".to_owned()));
    }
    if uri.authority().is_some_and(|a| a.as_str().contains('@')) {
        return Err(invalid(
            "credentials in the URL are not accepted; use bearer_token or a secret header"
                .to_owned(),
        ));
    }
    Ok(uri)
}

/// Header names whose values are treated as credentials even when written as plain text.
fn is_credential_header(name: &header::HeaderName) -> bool {
    name == header::AUTHORIZATION || name == header::PROXY_AUTHORIZATION || name == header::COOKIE
}

async fn resolve_headers(
    probe: &str,
    http: &HttpTarget,
    resolver: &Resolver,
) -> Result<HeaderMap, ProbeError> {
    let invalid = |header: &str, message: String| ProbeError::InvalidHeader {
        probe: probe.to_owned(),
        header: header.to_owned(),
        message,
    };
    let mut headers = HeaderMap::new();
    let secret_value = |header: &str, prefix: &str, secret: &secret_refs::Secret| {
        let mut bytes = Vec::with_capacity(prefix.len() + secret.len());
        bytes.extend_from_slice(prefix.as_bytes());
        bytes.extend_from_slice(secret.expose_secret().as_bytes());
        let value = HeaderValue::from_bytes(&bytes).map_err(|_| {
            invalid(
                header,
                "the resolved secret is not a valid header value (a newline or control character?)"
                    .to_owned(),
            )
        });
        // Overwrite the temporary copy; the header value itself is marked sensitive.
        bytes.iter_mut().for_each(|b| *b = 0);
        value.map(|mut v| {
            v.set_sensitive(true);
            v
        })
    };
    for (name, source) in &http.headers {
        let header = header_name(name).map_err(|m| invalid(name, m))?;
        let value = match source {
            HeaderSource::Value(text) => {
                let mut value = HeaderValue::from_str(text)
                    .map_err(|_| invalid(name, "invalid header value".to_owned()))?;
                value.set_sensitive(is_credential_header(&header));
                value
            }
            HeaderSource::Secret(secret) => {
                let resolved =
                    resolver
                        .resolve(&secret.secret)
                        .await
                        .map_err(|e| ProbeError::Secret {
                            probe: probe.to_owned(),
                            header: name.clone(),
                            message: e.to_string(),
                        })?;
                secret_value(name, &secret.prefix, &resolved)?
            }
        };
        headers.append(header, value);
    }
    if let Some(reference) = &http.bearer_token {
        let resolved = resolver
            .resolve(reference)
            .await
            .map_err(|e| ProbeError::Secret {
                probe: probe.to_owned(),
                header: "Authorization".to_owned(),
                message: e.to_string(),
            })?;
        headers.insert(
            header::AUTHORIZATION,
            secret_value("Authorization", "Bearer ", &resolved)?,
        );
    }
    Ok(headers)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_checked() {
        assert!(parse_url("p", "http://127.0.0.1:7000/api/health", None).is_ok());
        assert_eq!(
            parse_url("p", "/api/health", Some("http://h:1/")).unwrap(),
            "http://h:1/api/health"
        );
        for (url, needle) in [
            ("127.0.0.1:7000/x", "needs a scheme"),
            ("localhost:7000", "needs a scheme"),
            ("ftp://h/", "not http"),
            ("/x", "base URL"),
            ("http://u:p@h/", "credentials"),
            ("http://", "invalid URL"),
        ] {
            let err = parse_url("p", url, None).unwrap_err().to_string();
            assert!(err.contains(needle), "{url}: {err}");
        }
    }

    #[tokio::test]
    async fn secret_headers_are_resolved_and_never_shown() {
        let mut http = HttpTarget::get("http://127.0.0.1:1/");
        http.bearer_token = Some(secret_refs::SecretRef::parse("env:PROBE_TEST_TOKEN").unwrap());
        http.headers.push((
            "X-Api-Key".to_owned(),
            HeaderSource::Secret(crate::config::SecretHeader {
                secret: secret_refs::SecretRef::parse("env:PROBE_TEST_TOKEN").unwrap(),
                prefix: "k=".to_owned(),
            }),
        ));
        let options = PrepareOptions {
            resolver: Resolver::new().with_env("PROBE_TEST_TOKEN", "s3cr3t-t0ken"),
            ..PrepareOptions::default()
        };
        let probe = ProbeConfig::http("auth", http.clone())
            .prepare(&options)
            .await
            .unwrap();
        let PreparedProbe::Http(p) = &probe else {
            panic!("http")
        };
        assert_eq!(p.headers[header::AUTHORIZATION], "Bearer s3cr3t-t0ken");
        assert_eq!(p.headers["x-api-key"], "k=s3cr3t-t0ken");
        assert!(
            !format!("{probe:?}").contains("s3cr3t"),
            "Debug shows no secret"
        );

        // A probe of a closed port fails without the token in its result.
        let result = probe.check().await;
        assert!(!result.is_ok());
        assert!(!serde_json::to_string(&result).unwrap().contains("s3cr3t"));

        // An unresolvable reference names the header and the reference, not a value.
        let err = ProbeConfig::http("auth", http)
            .prepare(&PrepareOptions::default())
            .await
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("PROBE_TEST_TOKEN") && err.contains("X-Api-Key"),
            "{err}"
        );
    }
}
