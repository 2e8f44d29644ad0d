//! `tls-cert`: a certificate (a PEM file, or what a live `host:port` presents) is valid now,
//! does not expire within the warn/fail number of days, and is valid for the expected name.
//!
//! It also judges **trust** (the chain leads to a trusted CA) for a live endpoint, and for a
//! file when `verify` is set or a `ca` is given: the trust anchors are the PEM certificates in
//! `ca` when given, else the Mozilla roots (webpki-roots) plus the certificates in the file
//! `SSL_CERT_FILE` names. An untrusted chain fails with the reason (unknown issuer, bad
//! signature, …). `verify = false` turns trust judging off for a live endpoint (a
//! self-signed staging certificate then passes on dates and names alone). For a file, the
//! certificates after the first are the intermediates; for a live endpoint, the chain the
//! server sent. The live handshake also proves the server holds the key.

use std::io::Read;
use std::net::{IpAddr, TcpStream, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rustls::RootCertStore;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::server::ParsedCertificate;
use serde_json::json;
use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::GeneralName;

use crate::{Check, CheckContext, CheckStatus, DEFAULT_TIMEOUT, Outcome};

/// Where the certificate comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CertSource {
    /// A PEM file; its first certificate is the one judged (the leaf of a chain file).
    File(PathBuf),
    /// A live TLS endpoint, `host:port`.
    Live(String),
}

/// `tls-cert`: see the module docs.
#[derive(Debug, Clone)]
pub struct TlsCert {
    id: String,
    timeout: Duration,
    source: CertSource,
    name: Option<String>,
    warn_days: u64,
    fail_days: u64,
    ca: Option<PathBuf>,
    verify: Option<bool>,
}

impl TlsCert {
    /// Defaults: warn within 30 days, fail within 7; the name defaults to the host of a live
    /// address and is not checked for a file unless given.
    pub fn new(id: impl Into<String>, source: CertSource) -> Self {
        Self {
            id: id.into(),
            timeout: DEFAULT_TIMEOUT,
            source,
            name: None,
            warn_days: 30,
            fail_days: 7,
            ca: None,
            verify: None,
        }
    }
    /// Trust only the CA certificates in this PEM file (implies verifying the chain).
    #[must_use]
    pub fn ca(mut self, path: impl Into<PathBuf>) -> Self {
        self.ca = Some(path.into());
        self
    }
    /// Whether to judge the chain's trust (default: yes for a live endpoint or with a `ca`,
    /// no for a file without one).
    #[must_use]
    pub fn verify(mut self, verify: bool) -> Self {
        self.verify = Some(verify);
        self
    }

    fn verifies(&self) -> bool {
        self.verify
            .unwrap_or(self.ca.is_some() || matches!(self.source, CertSource::Live(_)))
    }
    /// The DNS name or IP address the certificate must be valid for.
    #[must_use]
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }
    /// Warn when it expires within `warn` days, fail within `fail` days.
    #[must_use]
    pub fn days(mut self, warn: u64, fail: u64) -> Self {
        self.warn_days = warn;
        self.fail_days = fail;
        self
    }
    /// Sets the timeout.
    #[must_use]
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    fn expected_name(&self) -> Option<String> {
        self.name.clone().or_else(|| match &self.source {
            CertSource::File(_) => None,
            CertSource::Live(addr) => split_host(addr).map(str::to_owned),
        })
    }
}

/// The host part of `host:port` / `[v6]:port`.
fn split_host(addr: &str) -> Option<&str> {
    let (host, _port) = addr.rsplit_once(':')?;
    Some(host.trim_start_matches('[').trim_end_matches(']'))
}

/// Whether a certificate name (possibly `*.example.com`) covers `name`.
fn dns_matches(pattern: &str, name: &str) -> bool {
    let (pattern, name) = (pattern.to_ascii_lowercase(), name.to_ascii_lowercase());
    let name = name.trim_end_matches('.');
    match pattern.strip_prefix("*.") {
        Some(suffix) => name
            .split_once('.')
            .is_some_and(|(label, rest)| !label.is_empty() && rest == suffix),
        None => pattern.trim_end_matches('.') == name,
    }
}

/// The names a certificate is valid for: its SAN DNS names and IP addresses, or its common name
/// when it has no SAN extension.
fn cert_names(cert: &X509Certificate<'_>) -> (Vec<String>, Vec<IpAddr>) {
    let mut dns = Vec::new();
    let mut ips = Vec::new();
    match cert.subject_alternative_name() {
        Ok(Some(san)) => {
            for name in &san.value.general_names {
                match name {
                    GeneralName::DNSName(d) => dns.push((*d).to_owned()),
                    GeneralName::IPAddress(bytes) => match bytes.len() {
                        4 => {
                            let b: [u8; 4] = [bytes[0], bytes[1], bytes[2], bytes[3]];
                            ips.push(IpAddr::from(b));
                        }
                        16 => {
                            let mut b = [0u8; 16];
                            b.copy_from_slice(bytes);
                            ips.push(IpAddr::from(b));
                        }
                        _ => {}
                    },
                    _ => {}
                }
            }
        }
        _ => {
            for cn in cert.subject().iter_common_name() {
                if let Ok(s) = cn.as_str() {
                    dns.push(s.to_owned());
                }
            }
        }
    }
    (dns, ips)
}

/// Connects to `addr`, completes a TLS handshake with `sni` and returns the chain it presented,
/// leaf first.
fn fetch_live(addr: &str, sni: &str, ctx: &CheckContext) -> Result<Vec<Vec<u8>>, String> {
    let target = addr
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve {addr}: {e}"))?
        .next()
        .ok_or_else(|| format!("{addr} resolves to no address"))?;
    let budget = ctx.remaining().max(Duration::from_millis(100));
    let mut tcp = TcpStream::connect_timeout(&target, budget)
        .map_err(|e| format!("cannot connect to {addr}: {e}"))?;
    tcp.set_read_timeout(Some(budget))
        .map_err(|e| e.to_string())?;
    tcp.set_write_timeout(Some(budget))
        .map_err(|e| e.to_string())?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(host_util::tls::AnyCertificate(provider)))
        .with_no_client_auth();
    let server_name = ServerName::try_from(sni.to_owned())
        .map_err(|e| format!("invalid server name `{sni}`: {e}"))?;
    let mut conn = rustls::ClientConnection::new(Arc::new(config), server_name)
        .map_err(|e| format!("TLS setup failed: {e}"))?;
    while conn.is_handshaking() {
        conn.complete_io(&mut tcp)
            .map_err(|e| format!("TLS handshake with {addr} failed: {e}"))?;
    }
    let chain: Vec<Vec<u8>> = conn
        .peer_certificates()
        .map(|certs| certs.iter().map(|c| c.as_ref().to_vec()).collect())
        .unwrap_or_default();
    if chain.is_empty() {
        return Err(format!("{addr} presented no certificate"));
    }
    conn.send_close_notify();
    let _ = conn.complete_io(&mut tcp);
    Ok(chain)
}

/// Every certificate in a PEM file, in order (DER); an error when there is none.
fn read_pem(path: &Path) -> Result<Vec<Vec<u8>>, String> {
    let mut bytes = Vec::new();
    std::fs::File::open(path)
        .and_then(|mut f| f.read_to_end(&mut bytes))
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let mut certs = Vec::new();
    for pem in x509_parser::pem::Pem::iter_from_buffer(&bytes) {
        match pem {
            Ok(pem) if pem.label == "CERTIFICATE" => certs.push(pem.contents),
            Ok(_) => continue,
            Err(e) => return Err(format!("{} is not valid PEM: {e}", path.display())),
        }
    }
    if certs.is_empty() {
        return Err(format!("{} holds no PEM certificate", path.display()));
    }
    Ok(certs)
}

/// The trust anchors: the certificates of `ca`, or the Mozilla roots plus `SSL_CERT_FILE`.
fn trust_anchors(ca: Option<&Path>) -> Result<RootCertStore, String> {
    let mut roots = RootCertStore::empty();
    let extra = match ca {
        Some(path) => Some(path.to_path_buf()),
        None => {
            roots.roots = webpki_roots::TLS_SERVER_ROOTS.to_vec();
            std::env::var_os("SSL_CERT_FILE").map(PathBuf::from)
        }
    };
    if let Some(path) = extra {
        for der in read_pem(&path).map_err(|e| format!("CA file: {e}"))? {
            roots
                .add(CertificateDer::from(der))
                .map_err(|e| format!("CA file {}: unusable certificate: {e}", path.display()))?;
        }
    }
    Ok(roots)
}

/// Checks that `chain` (leaf first, then intermediates) leads to one of `roots`, with valid
/// signatures and CA constraints. Dates and names are judged elsewhere.
fn verify_chain(chain: &[Vec<u8>], roots: &RootCertStore) -> Result<(), String> {
    let Some((leaf, intermediates)) = chain.split_first() else {
        return Err("no certificate".to_owned());
    };
    let leaf = CertificateDer::from(leaf.as_slice());
    let parsed = ParsedCertificate::try_from(&leaf).map_err(|e| e.to_string())?;
    let intermediates: Vec<CertificateDer<'_>> = intermediates
        .iter()
        .map(|c| CertificateDer::from(c.as_slice()))
        .collect();
    let provider = rustls::crypto::ring::default_provider();
    rustls::client::verify_server_cert_signed_by_trust_anchor(
        &parsed,
        roots,
        &intermediates,
        UnixTime::now(),
        provider.signature_verification_algorithms.all,
    )
    .map_err(|e| match e {
        rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer) => {
            "issued by a CA that is not trusted (unknown issuer)".to_owned()
        }
        other => other.to_string(),
    })
}

impl Check for TlsCert {
    fn id(&self) -> &str {
        &self.id
    }
    fn kind(&self) -> &'static str {
        "tls-cert"
    }
    fn timeout(&self) -> Duration {
        self.timeout
    }
    fn description(&self) -> String {
        match &self.source {
            CertSource::File(p) => format!("the certificate in {}", p.display()),
            CertSource::Live(a) => format!("the certificate served on {a}"),
        }
    }
    fn run(&self, ctx: &CheckContext) -> Outcome {
        let name = self.expected_name();
        let (der, origin) = match &self.source {
            CertSource::File(path) => (read_pem(path), path.display().to_string()),
            CertSource::Live(addr) => {
                let sni = name.clone().or_else(|| split_host(addr).map(str::to_owned));
                let sni = sni.unwrap_or_else(|| "localhost".to_owned());
                (fetch_live(addr, &sni, ctx), addr.clone())
            }
        };
        let chain = match der {
            Ok(d) => d,
            Err(e) => {
                return Outcome::fail(
                    e,
                    "check `path`/`addr`, and that the server speaks TLS there",
                );
            }
        };
        let Some(der) = chain.first() else {
            return Outcome::fail(
                format!("{origin}: no certificate"),
                "replace the certificate",
            );
        };
        let cert = match x509_parser::parse_x509_certificate(der) {
            Ok((_, cert)) => cert,
            Err(e) => {
                return Outcome::fail(
                    format!("{origin}: not a valid X.509 certificate: {e}"),
                    "replace the certificate",
                );
            }
        };
        let outcome = judge_cert(
            &cert,
            &origin,
            name.as_deref(),
            self.warn_days,
            self.fail_days,
        );
        if outcome.status == CheckStatus::Fail || !self.verifies() {
            return outcome;
        }
        let trusted = trust_anchors(self.ca.as_deref()).and_then(|r| verify_chain(&chain, &r));
        match trusted {
            Ok(()) => {
                let mut outcome = outcome;
                outcome.message.push_str(", chain trusted");
                outcome
            }
            Err(reason) => {
                let anchors = match &self.ca {
                    Some(ca) => format!("the CA in {}", ca.display()),
                    None => "the system's trusted CAs".to_owned(),
                };
                Outcome::fail(
                    format!("{origin}: untrusted chain: {reason}"),
                    format!(
                        "serve the full chain issued by {anchors}, set `ca` to the issuing CA, or `verify = false` for a staging certificate"
                    ),
                )
                .with_data(outcome.data)
            }
        }
    }
}

fn judge_cert(
    cert: &X509Certificate<'_>,
    origin: &str,
    name: Option<&str>,
    warn_days: u64,
    fail_days: u64,
) -> Outcome {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or_default();
    let validity = cert.validity();
    let not_after = validity.not_after.timestamp();
    let not_before = validity.not_before.timestamp();
    let expires = validity.not_after.to_datetime().date().to_string();
    let days_left = (not_after - now).div_euclid(86_400);
    let (dns, ips) = cert_names(cert);
    let names: Vec<String> = dns
        .iter()
        .cloned()
        .chain(ips.iter().map(ToString::to_string))
        .collect();
    let data = json!({
        "source": origin,
        "subject": cert.subject().to_string(),
        "names": names,
        "not_after": expires,
        "days_left": days_left,
    });
    let renew = "renew the certificate (certbot renew, or your CA's process) and reload the proxy";
    if now < not_before {
        return Outcome::fail(
            format!(
                "{origin}: not valid before {}",
                validity.not_before.to_datetime().date()
            ),
            "check the host clock, or wait until the certificate becomes valid",
        )
        .with_data(data);
    }
    if now >= not_after {
        return Outcome::fail(format!("{origin}: expired on {expires}"), renew).with_data(data);
    }
    if let Some(name) = name {
        let ok = match name.parse::<IpAddr>() {
            Ok(ip) => ips.contains(&ip),
            Err(_) => dns.iter().any(|p| dns_matches(p, name)),
        };
        if !ok {
            return Outcome::fail(
                format!(
                    "{origin}: not valid for {name} (valid for: {})",
                    if names.is_empty() {
                        "no names".to_owned()
                    } else {
                        names.join(", ")
                    }
                ),
                format!("issue a certificate whose subjectAltName includes {name}"),
            )
            .with_data(data);
        }
    }
    let for_name = name.map(|n| format!(", valid for {n}")).unwrap_or_default();
    let summary = format!("{origin}: expires {expires} (in {days_left} days){for_name}");
    if days_left < fail_days as i64 {
        return Outcome::fail(format!("{summary}, within {fail_days} days"), renew).with_data(data);
    }
    if days_left < warn_days as i64 {
        return Outcome::warn(format!("{summary}, within {warn_days} days"), renew).with_data(data);
    }
    Outcome::pass(summary).with_data(data)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcards_cover_one_label() {
        assert!(dns_matches("*.example.com", "api.example.com"));
        assert!(dns_matches("API.example.com", "api.EXAMPLE.com."));
        assert!(!dns_matches("*.example.com", "example.com"));
        assert!(!dns_matches("*.example.com", "a.b.example.com"));
        assert!(!dns_matches("example.com", "www.example.com"));
    }

    #[test]
    fn hosts_split_from_addresses() {
        assert_eq!(split_host("example.com:443"), Some("example.com"));
        assert_eq!(split_host("[::1]:8443"), Some("::1"));
        assert_eq!(split_host("nohost"), None);
    }
}
