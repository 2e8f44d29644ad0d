//! A self-signed certificate for staging and tests (rcgen, ECDSA P-256).

use std::path::Path;

use crate::EdgeError;
use crate::fsutil::write_atomic;

/// Generates a self-signed certificate for `names` (DNS names or IP addresses) and writes the
/// certificate (0644) and the key (0600) atomically.
///
/// # Errors
/// [`EdgeError::Certificate`] when generation fails, [`EdgeError::Io`] when writing does.
#[tracing::instrument(skip_all, fields(cert = %cert.display()))]
pub fn write_self_signed(names: &[String], cert: &Path, key: &Path) -> Result<(), EdgeError> {
    let certified = rcgen::generate_simple_self_signed(names.to_vec())
        .map_err(|e| EdgeError::Certificate(e.to_string()))?;
    for path in [cert, key] {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| EdgeError::io("create directory", dir, e))?;
        }
    }
    write_atomic(key, certified.signing_key.serialize_pem().as_bytes(), 0o600)?;
    write_atomic(cert, certified.cert.pem().as_bytes(), 0o644)?;
    Ok(())
}

/// The names a self-signed certificate covers: the server name (unless `_`) and loopback.
pub fn self_signed_names(server_name: &str) -> Vec<String> {
    let mut names: Vec<String> = server_name
        .split_whitespace()
        .filter(|n| *n != "_" && !n.contains('*'))
        .map(str::to_owned)
        .collect();
    for n in ["localhost", "127.0.0.1", "::1"] {
        if !names.iter().any(|x| x == n) {
            names.push(n.to_owned());
        }
    }
    names
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_a_pem_pair_with_a_private_key() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = (
            dir.path().join("tls/cert.pem"),
            dir.path().join("tls/key.pem"),
        );
        write_self_signed(&self_signed_names("hub.example"), &cert, &key).unwrap();
        assert!(
            std::fs::read_to_string(&cert)
                .unwrap()
                .starts_with("-----BEGIN CERTIFICATE-----")
        );
        assert!(
            std::fs::read_to_string(&key)
                .unwrap()
                .contains("PRIVATE KEY")
        );
        assert_eq!(
            std::fs::metadata(&key).unwrap().permissions().mode() & 0o777,
            0o600
        );
    }

    #[test]
    fn names_skip_wildcards() {
        assert_eq!(self_signed_names("_"), ["localhost", "127.0.0.1", "::1"]);
        assert_eq!(self_signed_names("a.example *.b")[0], "a.example");
    }
}
