//! `tls-cert` with real certificates made with rcgen: as PEM files and served live by a rustls
//! server on a loopback port.

#![allow(clippy::unwrap_used)] // Helpers in test files unwrap too; a panic fails the test.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::Arc;

use preflight_checks::checks::{CertSource, TlsCert};
use preflight_checks::{Check, CheckResult, CheckStatus, Runner};

fn run(check: impl Check + 'static) -> CheckResult {
    Runner::new().with_check(check).run().checks.remove(0)
}

/// The UTC date `days` from today as (year, month, day), by Howard Hinnant's days-to-civil.
fn date_in(days: i64) -> (i32, u8, u8) {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let z = now.div_euclid(86_400) + days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year as i32, month as u8, day as u8)
}

struct Made {
    cert_pem: String,
    cert_der: Vec<u8>,
    key_der: Vec<u8>,
}

fn make(names: &[&str], not_before_days: i64, not_after_days: i64) -> Made {
    let mut params =
        rcgen::CertificateParams::new(names.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>())
            .unwrap();
    let (y, m, d) = date_in(not_before_days);
    params.not_before = rcgen::date_time_ymd(y, m, d);
    let (y, m, d) = date_in(not_after_days);
    params.not_after = rcgen::date_time_ymd(y, m, d);
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = params.self_signed(&key).unwrap();
    Made {
        cert_pem: cert.pem(),
        cert_der: cert.der().to_vec(),
        key_der: key.serialize_der(),
    }
}

fn file_check(made: &Made) -> (tempfile::TempDir, TlsCert) {
    let dir = cutover_tests::temp_dir();
    let path = dir.path().join("cert.pem");
    std::fs::write(&path, &made.cert_pem).unwrap();
    let check = TlsCert::new("tls", CertSource::File(path));
    (dir, check)
}

#[test]
fn a_valid_certificate_file_passes_for_its_name() {
    let made = make(&["localhost", "hub.example.com"], -1, 365);
    let (_dir, check) = file_check(&made);
    let r = run(check.name("hub.example.com"));
    assert_eq!(r.status, CheckStatus::Pass, "{}", r.message);
    assert!(
        r.message.contains("valid for hub.example.com"),
        "{}",
        r.message
    );
    assert!(r.data["days_left"].as_i64().unwrap() >= 360);
}

#[test]
fn a_wildcard_certificate_covers_one_label() {
    let made = make(&["*.example.com"], -1, 365);
    let (_dir, check) = file_check(&made);
    assert_eq!(
        run(check.clone().name("api.example.com")).status,
        CheckStatus::Pass
    );
    assert_eq!(run(check.name("example.com")).status, CheckStatus::Fail);
}

#[test]
fn an_expired_certificate_fails() {
    let made = make(&["localhost"], -30, -2);
    let (_dir, check) = file_check(&made);
    let r = run(check);
    assert_eq!(r.status, CheckStatus::Fail);
    assert!(r.message.contains("expired on"), "{}", r.message);
}

#[test]
fn a_certificate_expiring_soon_warns_then_fails() {
    let made = make(&["localhost"], -1, 20);
    let (_dir, check) = file_check(&made);
    let r = run(check.clone());
    assert_eq!(r.status, CheckStatus::Warn, "{}", r.message);
    assert!(r.message.contains("within 30 days"), "{}", r.message);
    let r = run(check.days(60, 40));
    assert_eq!(r.status, CheckStatus::Fail, "{}", r.message);
    assert!(r.message.contains("within 40 days"), "{}", r.message);
}

#[test]
fn a_certificate_for_another_name_fails() {
    let made = make(&["other.example.com"], -1, 365);
    let (_dir, check) = file_check(&made);
    let r = run(check.name("hub.example.com"));
    assert_eq!(r.status, CheckStatus::Fail);
    assert!(
        r.message
            .contains("not valid for hub.example.com (valid for: other.example.com)"),
        "{}",
        r.message
    );
}

#[test]
fn a_certificate_not_yet_valid_or_a_bad_file_fails() {
    let made = make(&["localhost"], 3, 365);
    let (dir, check) = file_check(&made);
    let r = run(check);
    assert_eq!(r.status, CheckStatus::Fail);
    assert!(r.message.contains("not valid before"), "{}", r.message);
    let junk = dir.path().join("junk.pem");
    std::fs::write(&junk, "not a certificate\n").unwrap();
    let r = run(TlsCert::new("tls", CertSource::File(junk)));
    assert_eq!(r.status, CheckStatus::Fail);
    assert!(
        r.message.contains("holds no PEM certificate"),
        "{}",
        r.message
    );
}

/// Serves `made` with TLS on a loopback port for `connections` handshakes.
fn serve(made: &Made, connections: usize) -> (std::net::SocketAddr, std::thread::JoinHandle<()>) {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            vec![rustls::pki_types::CertificateDer::from(
                made.cert_der.clone(),
            )],
            rustls::pki_types::PrivateKeyDer::Pkcs8(made.key_der.clone().into()),
        )
        .unwrap();
    let config = Arc::new(config);
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let handle = std::thread::spawn(move || {
        for _ in 0..connections {
            let Ok((mut tcp, _)) = listener.accept() else {
                return;
            };
            tcp.set_read_timeout(Some(std::time::Duration::from_secs(10)))
                .unwrap();
            let mut conn = rustls::ServerConnection::new(config.clone()).unwrap();
            while conn.is_handshaking() {
                if conn.complete_io(&mut tcp).is_err() {
                    break;
                }
            }
            let mut stream = rustls::Stream::new(&mut conn, &mut tcp);
            let mut buf = [0u8; 16];
            let _ = stream.read(&mut buf);
            let _ = stream.flush();
        }
    });
    (addr, handle)
}

#[test]
fn a_live_endpoint_with_a_valid_certificate_passes() {
    let made = make(&["localhost"], -1, 365);
    let (addr, server) = serve(&made, 1);
    let r = run(TlsCert::new(
        "tls",
        CertSource::Live(format!("localhost:{}", addr.port())),
    ));
    assert_eq!(r.status, CheckStatus::Pass, "{}", r.message);
    assert!(r.message.contains("valid for localhost"), "{}", r.message);
    server.join().unwrap();
}

#[test]
fn a_live_endpoint_with_the_wrong_name_or_no_tls_fails() {
    let made = make(&["other.example.com"], -1, 365);
    let (addr, server) = serve(&made, 1);
    let r = run(TlsCert::new("tls", CertSource::Live(addr.to_string())));
    assert_eq!(r.status, CheckStatus::Fail);
    assert!(
        r.message.contains("not valid for 127.0.0.1"),
        "{}",
        r.message
    );
    server.join().unwrap();

    // A plain TCP listener that closes at once: the handshake fails, reported not crashed.
    let plain = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = plain.local_addr().unwrap();
    let closer = std::thread::spawn(move || {
        let _ = plain.accept();
    });
    let r = run(TlsCert::new("tls", CertSource::Live(addr.to_string())));
    assert_eq!(r.status, CheckStatus::Fail);
    assert!(r.message.contains("TLS handshake"), "{}", r.message);
    closer.join().unwrap();
}
