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
fn a_live_self_signed_endpoint_is_untrusted_unless_verify_is_off() {
    let made = make(&["localhost"], -1, 365);
    let (addr, server) = serve(&made, 2);
    let live = CertSource::Live(format!("localhost:{}", addr.port()));
    let r = run(TlsCert::new("tls", live.clone()));
    assert_eq!(r.status, CheckStatus::Fail, "{}", r.message);
    assert!(r.message.contains("untrusted chain"), "{}", r.message);
    assert!(r.message.contains("unknown issuer"), "{}", r.message);
    let r = run(TlsCert::new("tls", live).verify(false));
    assert_eq!(r.status, CheckStatus::Pass, "{}", r.message);
    assert!(r.message.contains("valid for localhost"), "{}", r.message);
    assert!(!r.message.contains("trusted"), "{}", r.message);
    server.join().unwrap();
}

/// A private CA (rcgen) and a leaf it issued for `names`.
struct Pki {
    ca_pem: String,
    leaf: Made,
}

fn make_pki(names: &[&str]) -> Pki {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "cutover test CA");
    ca_params.key_usages = vec![
        rcgen::KeyUsagePurpose::KeyCertSign,
        rcgen::KeyUsagePurpose::CrlSign,
    ];
    let ca_cert = ca_params.self_signed(&ca_key).unwrap();
    let issuer = rcgen::Issuer::new(ca_params, ca_key);
    let leaf_key = rcgen::KeyPair::generate().unwrap();
    let mut params =
        rcgen::CertificateParams::new(names.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>())
            .unwrap();
    let (y, m, d) = date_in(-1);
    params.not_before = rcgen::date_time_ymd(y, m, d);
    let (y, m, d) = date_in(365);
    params.not_after = rcgen::date_time_ymd(y, m, d);
    let leaf = params.signed_by(&leaf_key, &issuer).unwrap();
    Pki {
        ca_pem: ca_cert.pem(),
        leaf: Made {
            cert_pem: leaf.pem(),
            cert_der: leaf.der().to_vec(),
            key_der: leaf_key.serialize_der(),
        },
    }
}

#[test]
fn a_ca_issued_certificate_file_is_trusted_with_its_ca_and_fails_without() {
    let issued = make_pki(&["hub.example.com"]);
    let (dir, check) = file_check(&issued.leaf);
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, &issued.ca_pem).unwrap();
    let r = run(check.clone().name("hub.example.com").ca(&ca));
    assert_eq!(r.status, CheckStatus::Pass, "{}", r.message);
    assert!(r.message.contains("chain trusted"), "{}", r.message);
    // verify = true without a ca: the Mozilla roots do not know this CA.
    let r = run(check.clone().verify(true));
    assert_eq!(r.status, CheckStatus::Fail, "{}", r.message);
    assert!(r.message.contains("untrusted chain"), "{}", r.message);
    assert!(r.remedy.unwrap().contains("`ca`"));
    // Another CA (same name, another key) is no better: the signature does not verify.
    let other = make_pki(&["hub.example.com"]);
    let wrong = dir.path().join("other-ca.pem");
    std::fs::write(&wrong, &other.ca_pem).unwrap();
    let r = run(check.clone().ca(&wrong));
    assert_eq!(r.status, CheckStatus::Fail, "{}", r.message);
    assert!(r.message.contains("untrusted chain"), "{}", r.message);
    // Without verify and ca, a file is judged on dates and names only, as before.
    assert_eq!(run(check).status, CheckStatus::Pass);
}

#[test]
fn a_live_endpoint_is_trusted_with_its_ca_and_fails_without() {
    let issued = make_pki(&["localhost"]);
    let dir = cutover_tests::temp_dir();
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, &issued.ca_pem).unwrap();
    let (addr, server) = serve(&issued.leaf, 2);
    let live = CertSource::Live(format!("localhost:{}", addr.port()));
    let r = run(TlsCert::new("tls", live.clone()).ca(&ca));
    assert_eq!(r.status, CheckStatus::Pass, "{}", r.message);
    assert!(r.message.contains("chain trusted"), "{}", r.message);
    let r = run(TlsCert::new("tls", live));
    assert_eq!(r.status, CheckStatus::Fail, "{}", r.message);
    assert!(r.message.contains("untrusted chain"), "{}", r.message);
    server.join().unwrap();
}

#[test]
fn ca_and_verify_are_read_from_the_manifest_table() {
    let issued = make_pki(&["hub.example.com"]);
    let dir = cutover_tests::temp_dir();
    std::fs::write(dir.path().join("cert.pem"), &issued.leaf.cert_pem).unwrap();
    std::fs::write(dir.path().join("ca.pem"), &issued.ca_pem).unwrap();
    let build = |extra: &str| {
        let text = format!("[[check]]\nkind = \"tls-cert\"\npath = \"cert.pem\"\n{extra}");
        let config: preflight_checks::PreflightConfig = toml::from_str(&text).unwrap();
        let ctx = preflight_checks::BuildContext {
            base_dir: dir.path().to_path_buf(),
            ..preflight_checks::BuildContext::default()
        };
        Runner::new().with_checks(config.build(&ctx).unwrap()).run()
    };
    let report = build("ca = \"ca.pem\"\n");
    assert_eq!(report.checks[0].status, CheckStatus::Pass, "{report:?}");
    let report = build("verify = true\n");
    assert_eq!(report.checks[0].status, CheckStatus::Fail, "{report:?}");
    assert!(report.checks[0].message.contains("untrusted chain"));
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
