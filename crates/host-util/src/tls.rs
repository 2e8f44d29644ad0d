//! TLS client pieces shared by the HTTPS probes and the `tls-cert` pre-flight check: root
//! stores with extra CA certificates, and a verifier that accepts any certificate while still
//! checking the handshake signatures (for `insecure` probes, and for a check that judges the
//! certificate itself afterwards).

use std::sync::Arc;

use rustls::RootCertStore;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};

/// The web PKI roots plus every certificate in `extra_pem` (a PEM file's bytes, when given).
///
/// # Errors
/// A message for a person: the PEM is invalid, holds no certificate, or holds one that cannot
/// be used as a CA.
pub fn roots_with(extra_pem: Option<&[u8]>) -> Result<RootCertStore, String> {
    let mut roots = RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    if let Some(pem) = extra_pem {
        let mut added = 0usize;
        for cert in CertificateDer::pem_slice_iter(pem) {
            let cert = cert.map_err(|e| format!("is not valid PEM: {e}"))?;
            roots
                .add(cert)
                .map_err(|e| format!("holds a certificate that cannot be used as a CA: {e}"))?;
            added += 1;
        }
        if added == 0 {
            return Err("holds no PEM certificate".to_owned());
        }
    }
    Ok(roots)
}

/// Accepts any certificate but verifies the handshake signatures with the provider's
/// algorithms, so the server must still hold the key of the certificate it presents.
#[derive(Debug)]
pub struct AnyCertificate(pub Arc<CryptoProvider>);

impl ServerCertVerifier for AnyCertificate {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extra_roots_must_hold_a_certificate() {
        let base = roots_with(None).unwrap().len();
        assert!(base > 0);
        assert_eq!(
            roots_with(Some(b"no pem here")).unwrap_err(),
            "holds no PEM certificate"
        );
    }
}
