//! TLS for HTTPS probes: rustls with the ring provider, verification on by default against the
//! web PKI roots plus an optional CA file, and handshake failures turned into reasons a person
//! can act on ("certificate not trusted (unknown issuer)").

use std::path::Path;
use std::sync::Arc;

use rustls::{CertificateError, ClientConfig};

use crate::error::ProbeError;

/// Builds the client configuration for one probe.
pub(crate) fn client_config(
    probe: &str,
    ca_file: Option<&Path>,
    insecure: bool,
) -> Result<Arc<ClientConfig>, ProbeError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let tls_error = |e: rustls::Error| ProbeError::InvalidConfig {
        probe: probe.to_owned(),
        message: format!("TLS set-up: {e}"),
    };
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(tls_error)?;
    let mut config = if insecure {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(host_util::tls::AnyCertificate(provider)))
            .with_no_client_auth()
    } else {
        let roots = match ca_file {
            Some(path) => {
                let error = |message: String| ProbeError::CaFile {
                    probe: probe.to_owned(),
                    path: path.to_path_buf(),
                    message,
                };
                let pem = std::fs::read(path).map_err(|e| error(format!("cannot be read: {e}")))?;
                host_util::tls::roots_with(Some(&pem)).map_err(error)?
            }
            None => host_util::tls::roots_with(None).map_err(tls_config_error(probe))?,
        };
        builder.with_root_certificates(roots).with_no_client_auth()
    };
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

fn tls_config_error(probe: &str) -> impl FnOnce(String) -> ProbeError + '_ {
    move |message| ProbeError::InvalidConfig {
        probe: probe.to_owned(),
        message: format!("TLS set-up: {message}"),
    }
}

/// A reason for a failed handshake.
pub(crate) fn describe_handshake_error(err: &std::io::Error, host: &str) -> String {
    let Some(tls) = err
        .get_ref()
        .and_then(|e| e.downcast_ref::<rustls::Error>())
    else {
        return format!("TLS handshake failed: {err}");
    };
    match tls {
        rustls::Error::InvalidCertificate(cert) => match cert {
            CertificateError::UnknownIssuer => {
                "certificate not trusted (unknown issuer; give the issuing CA with ca_file / --ca-file)".to_owned()
            }
            CertificateError::BadSignature => "certificate not trusted (bad signature)".to_owned(),
            CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. } => {
                format!("certificate not valid for host {host}")
            }
            CertificateError::Expired | CertificateError::ExpiredContext { .. } => "certificate expired".to_owned(),
            CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => {
                "certificate not valid yet".to_owned()
            }
            CertificateError::Revoked => "certificate revoked".to_owned(),
            other => format!("certificate not trusted ({other:?})"),
        },
        other => format!("TLS handshake failed: {other}"),
    }
}
