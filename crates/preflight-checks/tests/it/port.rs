//! `port-free` against really bound ports.

#![allow(clippy::unwrap_used)] // Helpers in test files unwrap too; a panic fails the test.

use std::net::TcpListener;

use preflight_checks::checks::{PortFree, port_holders};
use preflight_checks::{Check, CheckResult, CheckStatus, Runner};

fn run(check: impl Check + 'static) -> CheckResult {
    Runner::new().with_check(check).run().checks.remove(0)
}

#[test]
fn port_free_passes_for_a_free_port() {
    // Hold a port, release it, and check it while nothing binds it (the OS does not hand a
    // just-released ephemeral port straight back out).
    let port = cutover_tests::free_port();
    let r = run(PortFree::new("app-port", format!("127.0.0.1:{port}")));
    assert_eq!(r.status, CheckStatus::Pass, "{}", r.message);
    assert_eq!(r.message, format!("127.0.0.1:{port} is free"));
}

#[test]
fn port_free_fails_for_a_bound_port_and_names_this_process() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let r = run(PortFree::new("app-port", addr.to_string()));
    assert_eq!(r.status, CheckStatus::Fail);
    let me = std::process::id();
    assert!(r.message.contains(&format!("(pid {me})")), "{}", r.message);
    assert!(
        r.message
            .starts_with(&format!("{addr} is already in use: held by ")),
        "{}",
        r.message
    );
    assert_eq!(r.data["holders"][0], me);
    assert!(port_holders(addr.port()).iter().any(|h| h.pid == me));
    drop(listener);
}

#[test]
fn port_free_fails_for_an_address_not_on_this_host() {
    // 192.0.2.0/24 is TEST-NET-1: never assigned to a local interface.
    let r = run(PortFree::new("app-port", "192.0.2.1:7000"));
    assert_eq!(r.status, CheckStatus::Fail);
    assert!(r.message.contains("cannot bind"), "{}", r.message);
    let r = run(PortFree::new("app-port", "127.0.0.1:not-a-port"));
    assert_eq!(r.status, CheckStatus::Fail);
    assert!(r.message.contains("cannot resolve"), "{}", r.message);
}
