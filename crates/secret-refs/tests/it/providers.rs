//! Every provider against a real process boundary or a real file: answering, failing, timing out.

#![allow(clippy::unwrap_used)] // helpers outside #[test] fns unwrap too

use crate::common;

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use common::{FakeBin, is_dead, read_pid};
use secret_refs::{Provider, ResolveContext, Resolver, Secret, SecretError, SecretRef};

const T: Duration = Duration::from_secs(10);

fn r(s: &str) -> SecretRef {
    SecretRef::parse(s).unwrap()
}

#[test]
fn op_answers_with_one_trailing_newline_removed() {
    let fake = FakeBin::new();
    fake.value("op-canary-7f3a\n\n")
        .script("op", r#"[ "$1" = read ] || exit 9; cat "$here/value""#);
    let value = fake
        .resolver(T)
        .resolve_blocking(&r("op://prod/hub/gemini"))
        .unwrap();
    assert_eq!(value.expose_secret(), "op-canary-7f3a\n");
    assert_eq!(fake.read("op.args"), "read op://prod/hub/gemini\n");
}

#[test]
fn op_failure_names_the_reference_and_status_and_shows_none_of_its_output() {
    let fake = FakeBin::new();
    let token = cutover_tests::fresh_canary("op-token");
    fake.value(&token).script(
        "op",
        r#"cat "$here/value"; echo "[ERROR] 2024/01/01 could not read secret: $(cat "$here/value") is not allowed" >&2; exit 1"#,
    );
    let err = fake
        .resolver(T)
        .resolve_blocking(&r("op://prod/hub/key"))
        .unwrap_err();
    let message = err.to_string();
    assert!(matches!(err, SecretError::CommandFailed { .. }), "{err:?}");
    assert!(message.contains("op://prod/hub/key"), "{message}");
    assert!(message.contains("exit status: 1"), "{message}");
    assert!(message.contains("run the provider yourself"), "{message}");
    // Not even the harmless part: the CLI's words are not ours to judge.
    assert!(!message.contains("could not read secret"), "{message}");
    assert!(!message.contains(&token), "{message}");
    assert!(!format!("{err:?}").contains(&token));
}

#[test]
fn op_timeout_kills_the_cli_and_its_children() {
    let fake = FakeBin::new();
    fake.script(
        "op",
        r#"echo $$ > "$here/pid"; sleep 30 & echo $! > "$here/sleep.pid"; wait"#,
    );
    let err = fake
        .resolver(Duration::from_secs(3))
        .resolve_blocking(&r("op://prod/hub/slow"))
        .unwrap_err();
    assert!(matches!(err, SecretError::Timeout { .. }), "{err:?}");
    let message = err.to_string();
    assert!(
        message.contains("op://prod/hub/slow") && message.contains("killed `op`"),
        "{message}"
    );
    let (pid, sleep_pid) = (
        read_pid(&fake.path().join("pid")),
        read_pid(&fake.path().join("sleep.pid")),
    );
    assert!(
        cutover_tests::wait_until(Duration::from_secs(10), || is_dead(pid)
            && is_dead(sleep_pid)),
        "op ({pid}) or its sleep ({sleep_pid}) survived the timeout"
    );
}

#[test]
fn aws_answers_with_the_documented_argv() {
    let fake = FakeBin::new();
    fake.value("aws-canary-plain\n").script(
        "aws",
        r#"[ "$*" = "secretsmanager get-secret-value --secret-id prod/db --query SecretString --output text" ] || { echo "bad args: $*" >&2; exit 2; }
cat "$here/value""#,
    );
    let value = fake
        .resolver(T)
        .resolve_blocking(&r("aws-sm://prod/db"))
        .unwrap();
    assert_eq!(value.expose_secret(), "aws-canary-plain");
}

#[test]
fn aws_takes_the_json_key() {
    let fake = FakeBin::new();
    fake.value(
        r#"{"username":"app","password":"aws-canary-json \"q\"","port":5432,"nested":{"a":1}}"#,
    )
    .script("aws", r#"cat "$here/value"; echo"#);
    let resolver = fake.resolver(T);
    let get = |s: &str| resolver.resolve_blocking(&r(s));
    assert_eq!(
        get("aws-sm://prod/db#password").unwrap().expose_secret(),
        "aws-canary-json \"q\""
    );
    assert_eq!(
        get("aws-sm://prod/db#port").unwrap().expose_secret(),
        "5432"
    );
    for (reference, fragment) in [
        ("aws-sm://prod/db#missing", "no such key"),
        ("aws-sm://prod/db#nested", "not a string"),
    ] {
        let message = get(reference).unwrap_err().to_string();
        assert!(
            message.contains(reference) && message.contains(fragment),
            "{message}"
        );
        assert!(!message.contains("aws-canary-json"), "{message}");
    }
    // The whole secret, without a key, is the JSON text.
    assert!(
        get("aws-sm://prod/db")
            .unwrap()
            .expose_secret()
            .starts_with('{')
    );
}

#[test]
fn aws_json_key_on_non_json_is_refused_without_quoting_it() {
    let fake = FakeBin::new();
    fake.value("aws-canary-notjson {")
        .script("aws", r#"cat "$here/value""#);
    let message = fake
        .resolver(T)
        .resolve_blocking(&r("aws-sm://x#k"))
        .unwrap_err()
        .to_string();
    assert!(message.contains("not valid JSON"), "{message}");
    assert!(!message.contains("aws-canary"), "{message}");
}

#[test]
fn aws_failure_names_the_reference_and_the_exit_status_not_the_cli_message() {
    let fake = FakeBin::new();
    fake.script(
        "aws",
        r#"echo "An error occurred (ResourceNotFoundException) when calling the GetSecretValue operation: Secrets Manager can't find the specified secret." >&2; exit 254"#,
    );
    let message = fake
        .resolver(T)
        .resolve_blocking(&r("aws-sm://prod/missing"))
        .unwrap_err()
        .to_string();
    assert!(message.contains("aws-sm://prod/missing"), "{message}");
    assert!(message.contains("exit status: 254"), "{message}");
    assert!(!message.contains("ResourceNotFoundException"), "{message}");
}

#[test]
fn aws_binary_secret_is_refused() {
    let fake = FakeBin::new();
    fake.script("aws", "echo None");
    let message = fake
        .resolver(T)
        .resolve_blocking(&r("aws-sm://bin"))
        .unwrap_err()
        .to_string();
    assert!(message.contains("no SecretString"), "{message}");
}

#[test]
fn aws_timeout_is_reported() {
    let fake = FakeBin::new();
    fake.script("aws", r#"echo $$ > "$here/pid"; exec sleep 30"#);
    let err = fake
        .resolver(Duration::from_secs(3))
        .resolve_blocking(&r("aws-sm://slow#k"))
        .unwrap_err();
    assert!(matches!(err, SecretError::Timeout { .. }), "{err:?}");
    assert!(err.to_string().contains("aws-sm://slow#k"));
    let pid = read_pid(&fake.path().join("pid"));
    assert!(cutover_tests::wait_until(Duration::from_secs(10), || {
        is_dead(pid)
    }));
}

#[test]
fn missing_cli_is_a_spawn_error_naming_it() {
    let fake = FakeBin::new(); // no scripts; PATH without op is not guaranteed, so point at nothing
    let resolver = fake.resolver(T).with_env("PATH", fake.path());
    let err = resolver.resolve_blocking(&r("op://a/b/c")).unwrap_err();
    assert!(matches!(err, SecretError::Spawn { .. }), "{err:?}");
    let message = err.to_string();
    assert!(
        message.contains("`op`") && message.contains("op://a/b/c"),
        "{message}"
    );
}

#[test]
fn exec_runs_an_argv_without_a_shell() {
    let fake = FakeBin::new();
    fake.value("exec-canary-1").script(
        "getsecret",
        r#"printf '%s|%s\n' "$1" "$(cat "$here/value")""#,
    );
    let resolver = fake.resolver(T).with_env("EXEC_EXTRA", "from-overlay");
    let json = resolver
        .resolve_blocking(&r(r#"exec:["getsecret", "two words"]"#))
        .unwrap();
    assert_eq!(json.expose_secret(), "two words|exec-canary-1");
    let split = resolver
        .resolve_blocking(&r("exec:getsecret two words"))
        .unwrap();
    assert_eq!(split.expose_secret(), "two|exec-canary-1");
    let env = resolver
        .resolve_blocking(&r(r#"exec:["sh","-c","printf %s \"$EXEC_EXTRA\""]"#))
        .unwrap();
    assert_eq!(env.expose_secret(), "from-overlay");
}

#[test]
fn exec_failure_and_empty_output_are_errors() {
    let resolver = Resolver::new().with_redactor(secret_refs::Redactor::new());
    let message = resolver
        .resolve_blocking(&r(r#"exec:["sh","-c","echo nope >&2; exit 3"]"#))
        .unwrap_err()
        .to_string();
    assert!(
        message.contains(r#"exec:["sh","-c","echo nope >&2; exit 3"]"#)
            && message.contains("exit status: 3"),
        "{message}"
    );
    let err = resolver.resolve_blocking(&r("exec:true")).unwrap_err();
    assert!(matches!(err, SecretError::Empty { .. }), "{err:?}");
    let empty = resolver
        .clone()
        .allow_empty(true)
        .resolve_blocking(&r("exec:true"))
        .unwrap();
    assert!(empty.is_empty());
}

#[test]
fn file_secret_private_is_read_and_shared_is_refused() {
    let dir = cutover_tests::temp_dir();
    let path = dir.path().join("key");
    std::fs::write(&path, "file-canary-22\n").unwrap();
    let resolver = Resolver::new().with_redactor(secret_refs::Redactor::new());
    let reference = r(&format!("file:{}", path.display()));

    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    assert_eq!(
        resolver
            .resolve_blocking(&reference)
            .unwrap()
            .expose_secret(),
        "file-canary-22"
    );
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o400)).unwrap();
    assert!(resolver.resolve_blocking(&reference).is_ok());

    for mode in [0o644, 0o640, 0o604, 0o660] {
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
        let err = resolver.resolve_blocking(&reference).unwrap_err();
        assert!(
            matches!(err, SecretError::FileTooOpen { .. }),
            "{mode:o}: {err:?}"
        );
        let message = err.to_string();
        assert!(message.contains(&format!("{mode:04o}")), "{message}");
        assert!(
            message.contains("chmod 600") && message.contains("allow_shared=true"),
            "{message}"
        );
        assert!(!message.contains("file-canary"), "{message}");
    }
    let shared = r(&format!("file:{}?allow_shared=true", path.display()));
    assert_eq!(
        resolver.resolve_blocking(&shared).unwrap().expose_secret(),
        "file-canary-22"
    );
}

#[test]
fn file_secret_missing_or_not_a_file() {
    let dir = cutover_tests::temp_dir();
    let resolver = Resolver::new().with_redactor(secret_refs::Redactor::new());
    let missing = dir.path().join("nope");
    let message = resolver
        .resolve_blocking(&r(&format!("file:{}", missing.display())))
        .unwrap_err()
        .to_string();
    assert!(
        message.contains(&missing.display().to_string()),
        "{message}"
    );
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
    let message = resolver
        .resolve_blocking(&r(&format!("file:{}", dir.path().display())))
        .unwrap_err()
        .to_string();
    assert!(message.contains("not a regular file"), "{message}");
}

#[test]
fn env_literal_and_unknown_schemes() {
    let resolver = Resolver::new()
        .with_redactor(secret_refs::Redactor::new())
        .with_env("SR_TEST_VAR", "env-canary-3");
    assert_eq!(
        resolver
            .resolve_blocking(&r("env:SR_TEST_VAR"))
            .unwrap()
            .expose_secret(),
        "env-canary-3"
    );
    let err = resolver
        .resolve_blocking(&r("env:SR_TEST_SURELY_UNSET_42"))
        .unwrap_err();
    assert!(matches!(err, SecretError::EnvNotSet { .. }), "{err:?}");
    assert!(err.to_string().contains("SR_TEST_SURELY_UNSET_42"));
    assert_eq!(
        resolver
            .resolve_blocking(&r("literal:lit value"))
            .unwrap()
            .expose_secret(),
        "lit value"
    );
    let err = resolver.resolve_blocking(&r("literal:")).unwrap_err();
    assert!(matches!(err, SecretError::Empty { .. }), "{err:?}");
    let err = resolver.resolve_blocking(&r("vault://kv/x")).unwrap_err();
    assert!(
        err.to_string()
            .contains("no secret provider for scheme `vault`"),
        "{err}"
    );
}

#[derive(Debug)]
struct Stub(&'static str, Duration, Duration);

impl Provider for Stub {
    fn scheme(&self) -> &str {
        self.0
    }
    fn resolve(
        &self,
        reference: &SecretRef,
        ctx: &ResolveContext<'_>,
    ) -> Result<Secret, SecretError> {
        assert_eq!(reference.scheme(), self.0);
        assert_eq!(ctx.timeout(), self.2);
        std::thread::sleep(self.1);
        Ok(Secret::new(format!("{}-value", self.0)))
    }
}

#[test]
fn custom_providers_add_and_replace_schemes() {
    let resolver = Resolver::new()
        .with_redactor(secret_refs::Redactor::new())
        .with_timeout(Duration::from_secs(5))
        .with_provider(Stub("vault", Duration::ZERO, Duration::from_secs(5)))
        .with_provider(Stub("op", Duration::ZERO, Duration::from_secs(5)));
    assert_eq!(
        resolver
            .resolve_blocking(&r("vault://kv/x"))
            .unwrap()
            .expose_secret(),
        "vault-value"
    );
    assert_eq!(
        resolver
            .resolve_blocking(&r("op://a/b/c"))
            .unwrap()
            .expose_secret(),
        "op-value"
    );
}

#[test]
fn a_provider_that_overruns_is_cut_off() {
    let resolver = Resolver::new()
        .with_redactor(secret_refs::Redactor::new())
        .with_timeout(Duration::from_millis(200))
        .with_provider(Stub(
            "slow",
            Duration::from_secs(8),
            Duration::from_millis(200),
        ));
    let err = resolver.resolve_blocking(&r("slow://x")).unwrap_err();
    assert!(matches!(err, SecretError::Timeout { .. }), "{err:?}");
}

fn refs(pairs: &[(&str, &str)]) -> BTreeMap<String, SecretRef> {
    pairs.iter().map(|(k, v)| ((*k).to_owned(), r(v))).collect()
}

#[test]
fn resolve_all_blocking_needs_no_runtime() {
    let fake = FakeBin::new();
    fake.value("op-all-1").script("op", r#"cat "$here/value""#);
    let resolver = fake.resolver(T).with_env("SR_ALL", "env-all-2");
    let all = resolver
        .resolve_all_blocking(&refs(&[
            ("A", "op://v/i/f"),
            ("B", "env:SR_ALL"),
            ("C", "literal:c-val"),
        ]))
        .unwrap();
    let values: Vec<(&str, &str)> = all
        .iter()
        .map(|(k, v)| (k.as_str(), v.expose_secret()))
        .collect();
    assert_eq!(
        values,
        [("A", "op-all-1"), ("B", "env-all-2"), ("C", "c-val")]
    );
    let each = resolver
        .resolve_each_blocking(&refs(&[("OK", "literal:x-val"), ("BAD", "env:SR_NOPE_99")]));
    assert!(each["OK"].is_ok() && each["BAD"].is_err());
    let err = resolver
        .resolve_all_blocking(&refs(&[("OK", "literal:x-val"), ("BAD", "env:SR_NOPE_99")]))
        .unwrap_err();
    assert!(err.to_string().contains("SR_NOPE_99"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn async_resolve_and_resolve_all() {
    let fake = FakeBin::new();
    fake.value("aws-async-1")
        .script("aws", r#"cat "$here/value""#);
    fake.script("op", "exec sleep 30");
    let resolver = fake
        .resolver(Duration::from_secs(3))
        .with_env("SR_ASYNC", "env-async");
    assert_eq!(
        resolver
            .resolve(&r("aws-sm://x"))
            .await
            .unwrap()
            .expose_secret(),
        "aws-async-1"
    );
    let all = resolver
        .resolve_all(&refs(&[("A", "aws-sm://x"), ("B", "env:SR_ASYNC")]))
        .await
        .unwrap();
    assert_eq!(all["B"].expose_secret(), "env-async");
    let each = resolver
        .resolve_each(&refs(&[("A", "aws-sm://x"), ("SLOW", "op://v/i/f")]))
        .await;
    assert!(each["A"].is_ok());
    assert!(
        matches!(each["SLOW"], Err(SecretError::Timeout { .. })),
        "{:?}",
        each["SLOW"]
    );
}
