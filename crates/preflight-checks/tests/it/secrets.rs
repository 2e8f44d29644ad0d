//! `secrets`: references resolve through secret-refs; values never appear in the result.

#![allow(clippy::unwrap_used)] // Helpers in test files unwrap too; a panic fails the test.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;

use preflight_checks::checks::SecretsResolve;
use preflight_checks::{Check, CheckResult, CheckStatus, Runner};

const VALUE: &str = "s3cr3t-value-that-must-not-leak";

fn run(check: impl Check + 'static) -> CheckResult {
    Runner::new().with_check(check).run().checks.remove(0)
}

fn assert_no_value(r: &CheckResult) {
    let all = format!("{r:?} {}", serde_json::to_string(r).unwrap());
    assert!(!all.contains(VALUE), "the value leaked: {all}");
}

#[test]
fn secrets_pass_when_every_reference_resolves() {
    let dir = cutover_tests::temp_dir();
    let file = dir.path().join("key");
    std::fs::write(&file, VALUE).unwrap();
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
    let refs = BTreeMap::from([
        ("API_KEY".to_owned(), format!("file:{}", file.display())),
        ("DB_PASSWORD".to_owned(), format!("literal:{VALUE}")),
        ("HOME_DIR".to_owned(), "env:PATH".to_owned()),
    ]);
    let r = run(SecretsResolve::new("secrets", refs));
    assert_eq!(r.status, CheckStatus::Pass, "{}", r.message);
    assert_eq!(
        r.message,
        "3 secret(s) resolve: API_KEY, DB_PASSWORD, HOME_DIR (values not shown)"
    );
    assert_no_value(&r);
}

#[test]
fn secrets_fail_naming_each_unresolvable_reference_without_values() {
    let dir = cutover_tests::temp_dir();
    let open = dir.path().join("open-key");
    std::fs::write(&open, VALUE).unwrap();
    std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o644)).unwrap();
    let refs = BTreeMap::from([
        (
            "GEMINI_API_KEY".to_owned(),
            "env:CUTOVER_TEST_SURELY_UNSET_VAR".to_owned(),
        ),
        ("SHARED".to_owned(), format!("file:{}", open.display())),
        ("BARE".to_owned(), VALUE.to_owned()),
        ("OK".to_owned(), "literal:fine-value".to_owned()),
    ]);
    let r = run(SecretsResolve::new("secrets", refs));
    assert_eq!(r.status, CheckStatus::Fail);
    assert!(
        r.message.starts_with("3 of 4 secret(s) do not resolve"),
        "{}",
        r.message
    );
    assert!(
        r.message
            .contains("GEMINI_API_KEY: secret `env:CUTOVER_TEST_SURELY_UNSET_VAR`"),
        "{}",
        r.message
    );
    assert!(r.message.contains("SHARED: secret file"), "{}", r.message);
    assert!(
        r.message
            .contains("BARE: a bare value is not a secret reference"),
        "{}",
        r.message
    );
    assert_no_value(&r);
}

#[test]
fn secrets_skip_when_none_are_declared() {
    let r = run(SecretsResolve::new("secrets", BTreeMap::new()));
    assert_eq!(r.status, CheckStatus::Skip);
}
