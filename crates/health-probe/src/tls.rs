//! TLS for HTTPS probes: rustls with the ring provider, verification on by default against the
//! web PKI roots plus an optional CA file, and handshake failures turned into reasons a person
//! can act on ("certificate not trusted (unknown issuer)").

use std::path::Path;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme,
};

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
            .with_custom_certificate_verifier(Arc::new(NoVerification(provider)))
            .with_no_client_auth()
    } else {
        let mut roots = RootCertStore {
            roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
        };
        if let Some(path) = ca_file {
            add_ca_file(probe, path, &mut roots)?;
        }
        builder.with_root_certificates(roots).with_no_client_auth()
    };
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

fn add_ca_file(probe: &str, path: &Path, roots: &mut RootCertStore) -> Result<(), ProbeError> {
    let error = |message: String| ProbeError::CaFile {
        probe: probe.to_owned(),
        path: path.to_path_buf(),
        message,
    };
    let text = std::fs::read(path).map_err(|e| error(format!("cannot be read: {e}")))?;
    let mut added = 0usize;
    for cert in CertificateDer::pem_slice_iter(&text) {
        let cert = cert.map_err(|e| error(format!("is not valid PEM: {e}")))?;
        roots.add(cert).map_err(|e| {
            error(format!(
                "holds a certificate that cannot be used as a CA: {e}"
            ))
        })?;
        added += 1;
    }
    if added == 0 {
        return Err(error("holds no PEM certificate".to_owned()));
    }
    Ok(())
}

/// Accepts any certificate (for `insecure = true`) while still checking handshake signatures.
#[derive(Debug)]
struct NoVerification(Arc<CryptoProvider>);

impl ServerCertVerifier for NoVerification {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
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
