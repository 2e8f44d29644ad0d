//! The canary tests: a secret value is never found in trace-level logs, error messages, Debug
//! output, the argv of spawned children, or env/credential files other than the one meant for it;
//! and the redacting writer hides a value that someone does log.

#![allow(clippy::unwrap_used)] // helpers outside #[test] fns unwrap too

use crate::common;

use std::collections::BTreeMap;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::FakeBin;
use secret_refs::{
    CommandSecretExt, RedactingMakeWriter, Redactor, Resolver, Secret, SecretRef, read_env_file,
    write_credentials_dir, write_env_file,
};
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::fmt::format::FmtSpan;

const CANARY: &str = "CANARY-d41d8cd98f00b204";

/// A `MakeWriter` that appends everything to one shared buffer.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Captured {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

struct CapturedWriter(Arc<Mutex<Vec<u8>>>);

impl Write for CapturedWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for Captured {
    type Writer = CapturedWriter;
    fn make_writer(&'a self) -> Self::Writer {
        CapturedWriter(self.0.clone())
    }
}

fn r(s: &str) -> SecretRef {
    SecretRef::parse(s).unwrap()
}

/// Fakes that answer, fail (echoing the value on stderr) and hang, all around the canary.
fn fakes() -> FakeBin {
    let fake = FakeBin::new();
    fake.value(&format!("{{\"password\":\"{CANARY}\",\"user\":\"app\"}}"));
    fake.script(
        "op",
        r#"case "$2" in
  op://ok/*) printf 'CANARY-d41d8cd98f00b204\n' ;;
  op://fail/*) printf 'CANARY-d41d8cd98f00b204'; echo "[ERROR] denied for CANARY-d41d8cd98f00b204" >&2; exit 1 ;;
  *) exec sleep 30 ;;
esac"#,
    );
    fake.script("aws", r#"cat "$here/value""#);
    fake
}

/// Runs every provider, success and failure, plus every delivery, collecting the errors.
fn exercise_everything(fake: &FakeBin, files: &std::path::Path) -> Vec<String> {
    let secret_file = files.join("secret");
    std::fs::write(&secret_file, CANARY).unwrap();
    std::fs::set_permissions(&secret_file, std::fs::Permissions::from_mode(0o644)).unwrap();
    let resolver = fake
        .resolver(Duration::from_secs(20))
        .with_env("SR_LEAK", CANARY);
    let hasty = fake.resolver(Duration::from_millis(300));
    let mut errors = Vec::new();
    let mut keep = Vec::new();
    for reference in [
        "op://ok/item/field".to_owned(),
        "op://fail/item/field".to_owned(),
        "op://hang/item/field".to_owned(),
        "aws-sm://prod/db#password".to_owned(),
        "aws-sm://prod/db#missing".to_owned(),
        "aws-sm://prod/db".to_owned(),
        "env:SR_LEAK".to_owned(),
        format!("literal:{CANARY}"),
        r#"exec:["sh","-c","printf %s \"$SR_LEAK\""]"#.to_owned(),
        r#"exec:["sh","-c","echo $SR_LEAK >&2; exit 4"]"#.to_owned(),
        format!("file:{}", secret_file.display()),
        format!("file:{}?allow_shared=true", secret_file.display()),
        CANARY.to_owned(), // a bare value
    ] {
        let parsed = SecretRef::parse(&reference);
        let result = parsed.and_then(|p| {
            tracing::info!(reference = %p, debug = ?p, "resolving");
            if reference.starts_with("op://hang/") {
                hasty.resolve_blocking(&p)
            } else {
                resolver.resolve_blocking(&p)
            }
        });
        match result {
            Ok(secret) => {
                tracing::trace!(?secret, %secret, "resolved");
                keep.push(secret);
            }
            Err(e) => {
                tracing::error!(error = %e, debug = ?e, "failed");
                errors.push(format!("{e} / {e:?}"));
            }
        }
    }
    let map: BTreeMap<String, SecretRef> = [
        ("A".to_owned(), r("env:SR_LEAK")),
        ("B".to_owned(), r("op://ok/x/y")),
    ]
    .into();
    let all = resolver.resolve_all_blocking(&map).unwrap();
    tracing::debug!(?all, "all resolved");

    let secret = Secret::new(CANARY);
    write_env_file(&files.join("app.env"), &[("API_KEY", &secret)]).unwrap();
    write_credentials_dir(&files.join("creds"), &[("api", &secret)]).unwrap();
    std::fs::write(files.join("bad.env"), format!("K={CANARY} # trap\n")).unwrap();
    let e = read_env_file(&files.join("bad.env")).unwrap_err();
    tracing::warn!(error = %e, "env file");
    errors.push(format!("{e} / {e:?}"));
    let nul = Secret::new(format!("{CANARY}\0"));
    let e = write_env_file(&files.join("nul.env"), &[("K", &nul)]).unwrap_err();
    errors.push(format!("{e} / {e:?}"));
    let mut cmd = Command::new("true");
    cmd.secret_env("API_KEY", &secret).unwrap();
    tracing::debug!(?resolver, "done");
    assert!(keep.len() >= 7, "most references resolve: {}", keep.len());
    errors
}

#[test]
fn canary_is_absent_from_trace_logs_errors_and_debug() {
    let fake = fakes();
    let files = cutover_tests::temp_dir();
    let text_log = Captured::default();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_span_events(FmtSpan::FULL)
        .with_ansi(false)
        .with_writer(text_log.clone())
        .finish();
    let errors =
        tracing::subscriber::with_default(subscriber, || exercise_everything(&fake, files.path()));
    let log = text_log.text();
    // The log is really at trace level and really covers the resolutions and the child CLIs.
    assert!(log.contains("resolve_secret"), "{log}");
    assert!(log.contains("started provider CLI"), "{log}");
    assert!(log.contains("op://fail/item/field"), "{log}");
    assert!(!log.contains(CANARY), "canary in trace log:\n{log}");

    assert!(errors.len() >= 7, "{errors:#?}");
    for error in &errors {
        assert!(!error.contains(CANARY), "canary in error: {error}");
    }
    assert!(
        errors
            .iter()
            .any(|e| e.contains("secret `op://fail/item/field`: `op` failed (exit status: 1)")),
        "{errors:#?}"
    );
}

#[test]
fn canary_is_absent_from_json_logs() {
    let fake = fakes();
    let files = cutover_tests::temp_dir();
    let json_log = Captured::default();
    let subscriber = tracing_subscriber::fmt()
        .json()
        .with_max_level(tracing::Level::TRACE)
        .with_span_events(FmtSpan::FULL)
        .with_writer(json_log.clone())
        .finish();
    tracing::subscriber::with_default(subscriber, || exercise_everything(&fake, files.path()));
    let log = json_log.text();
    assert!(log.contains("resolve_secret"), "{log}");
    assert!(!log.contains(CANARY), "canary in JSON log:\n{log}");
}

#[test]
fn canary_is_absent_from_the_argv_of_provider_clis() {
    let fake = fakes();
    let files = cutover_tests::temp_dir();
    exercise_everything(&fake, files.path());
    let op = fake.read("op.cmdline");
    let aws = fake.read("aws.cmdline");
    // The kernel's view of argv, NUL-separated: the references are there, the value is not.
    assert!(op.contains("read\0op://ok/item/field"), "{op:?}");
    assert!(aws.contains("--secret-id\0prod/db"), "{aws:?}");
    assert!(!op.contains(CANARY) && !aws.contains(CANARY));
}

#[test]
fn delivered_child_has_the_secret_in_its_environment_not_its_argv() {
    let secret = Secret::new(CANARY);
    let mut cmd = Command::new("sleep");
    cmd.arg("30").stdout(Stdio::null());
    cmd.secret_env("API_KEY", &secret).unwrap();
    let child = cutover_tests::ChildGuard::spawn(cmd).unwrap();
    let pid = child.pid();
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap();
    assert!(!String::from_utf8_lossy(&cmdline).contains(CANARY));
    // environ can lag the exec for a moment; wait for the exec'd image.
    let mut environ = String::new();
    assert!(cutover_tests::wait_until(Duration::from_secs(10), || {
        environ = String::from_utf8_lossy(
            &std::fs::read(format!("/proc/{pid}/environ")).unwrap_or_default(),
        )
        .into_owned();
        environ.contains("API_KEY=")
    }));
    assert!(environ.contains(&format!("API_KEY={CANARY}")));
}

#[tokio::test]
async fn tokio_command_gets_the_secret_by_environment() {
    let secret = Secret::new(CANARY);
    let mut cmd = tokio::process::Command::new("sh");
    cmd.args(["-c", "printf %s \"$TOKEN\""]);
    cmd.secret_envs([("TOKEN", &secret)]).unwrap();
    let out = tokio::time::timeout(Duration::from_secs(20), cmd.output())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), CANARY);
}

#[test]
fn canary_is_only_in_the_files_meant_for_it() {
    let dir = cutover_tests::temp_dir();
    let secret = Secret::new(CANARY);
    let other = Secret::new("other-value-1234");
    write_env_file(&dir.path().join("a.env"), &[("A", &secret)]).unwrap();
    write_env_file(&dir.path().join("b.env"), &[("B", &other)]).unwrap();
    write_credentials_dir(&dir.path().join("creds"), &[("a", &secret), ("b", &other)]).unwrap();
    let read = |p: &str| std::fs::read_to_string(dir.path().join(p)).unwrap();
    assert!(read("a.env").contains(CANARY));
    assert!(!read("b.env").contains(CANARY));
    assert_eq!(read("creds/a"), CANARY);
    assert_eq!(read("creds/b"), "other-value-1234");
    // No temporary file was left behind to hold a copy.
    let mut names: Vec<String> = walk(dir.path());
    names.sort();
    assert_eq!(names, ["a.env", "b.env", "creds", "creds/a", "creds/b"]);
}

fn walk(root: &std::path::Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            out.push(path.strip_prefix(root).unwrap().display().to_string());
            if path.is_dir() {
                stack.push(path);
            }
        }
    }
    out
}

#[test]
fn redacting_writer_hides_a_logged_value() {
    let redactor = Redactor::new();
    let resolver = Resolver::new().with_redactor(redactor.clone());
    let secret = resolver
        .resolve_blocking(&r(&format!("literal:{CANARY}\nline2 \"q\"")))
        .unwrap();
    for json in [false, true] {
        let out = Captured::default();
        let writer = RedactingMakeWriter::new(out.clone(), redactor.clone());
        let builder = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::TRACE)
            .with_ansi(false)
            .with_writer(writer);
        let log = |()| {
            tracing::info!("careless {}", secret.expose_secret());
            tracing::info!(value = secret.expose_secret(), "field");
            tracing::info!(value = ?secret.expose_secret(), "debug field");
        };
        if json {
            tracing::subscriber::with_default(builder.json().finish(), || log(()));
        } else {
            tracing::subscriber::with_default(builder.finish(), || log(()));
        }
        let text = out.text();
        assert!(!text.contains(CANARY), "json={json}:\n{text}");
        assert_eq!(text.matches("***").count(), 3, "json={json}:\n{text}");
    }
}

#[test]
fn a_default_resolver_feeds_the_global_redactor() {
    let value = "global-canary-5b2f77";
    Resolver::new()
        .resolve_blocking(&r(&format!("literal:{value}")))
        .unwrap();
    let out = Captured::default();
    let subscriber = tracing_subscriber::fmt()
        .with_ansi(false)
        .with_writer(RedactingMakeWriter::global(out.clone()))
        .finish();
    tracing::subscriber::with_default(subscriber, || tracing::warn!("value={value}"));
    let text = out.text();
    assert!(
        text.contains("value=***") && !text.contains(value),
        "{text}"
    );
}

/// Every way an error can be printed: `Display`, `Debug`, pretty `Debug`, and each cause of the
/// `source()` chain in both forms (what `{:#}` in anyhow or a chain walker shows).
fn every_rendering(err: &secret_refs::SecretError) -> String {
    let mut text = format!("{err}\n{err:?}\n{err:#?}\n");
    let mut cause = std::error::Error::source(err);
    while let Some(c) = cause {
        text.push_str(&format!("{c}\n{c:?}\n"));
        cause = c.source();
    }
    text
}

/// `exec:["sh","-c",SCRIPT,"sh",HEAD,TAIL]`: the canary is printed as `HEAD` then `TAIL`, so the
/// reference holds its two halves but never the canary itself.
fn exec_printing(canary: &str, script: &str) -> SecretRef {
    let (head, tail) = canary.split_at(canary.len() / 2);
    SecretRef::Exec {
        argv: ["sh", "-c", script, "sh", head, tail]
            .map(str::to_owned)
            .into(),
    }
}

fn assert_failure_shows_no_output(
    err: &secret_refs::SecretError,
    reference: &SecretRef,
    canary: &str,
    status: &str,
) {
    let text = every_rendering(err);
    assert!(!text.contains(canary), "canary {canary} in:\n{text}");
    let shown = err.to_string();
    assert!(shown.contains(&reference.to_string()), "{shown}");
    assert!(shown.contains(status), "{shown}");
    assert!(shown.contains("run the provider yourself"), "{shown}");
}

#[test]
fn exec_provider_failing_with_a_fresh_canary_on_stderr_shows_none_of_it() {
    let canary = cutover_tests::fresh_canary("CANARY");
    let reference = exec_printing(&canary, r#"printf %s%s "$1" "$2" >&2; exit 3"#);
    // The default resolver and the global redactor: the canary was never resolved, so nothing
    // but the error's own construction can keep it out.
    let err = Resolver::new().resolve_blocking(&reference).unwrap_err();
    assert_failure_shows_no_output(&err, &reference, &canary, "exit status: 3");
}

#[test]
fn exec_provider_printing_a_token_on_stdout_then_failing_shows_none_of_it() {
    let canary = cutover_tests::fresh_canary("TOKEN");
    let reference = exec_printing(
        &canary,
        r#"printf '%s%s\n' "$1" "$2"; printf 'rejected %s%s\n' "$1" "$2" >&2; exit 5"#,
    );
    let err = Resolver::new().resolve_blocking(&reference).unwrap_err();
    assert_failure_shows_no_output(&err, &reference, &canary, "exit status: 5");
}

#[tokio::test]
async fn a_fake_op_printing_a_token_then_failing_shows_none_of_it() {
    let canary = cutover_tests::fresh_canary("OP-TOKEN");
    let fake = FakeBin::new();
    fake.value(&canary).script(
        "op",
        r#"cat "$here/value"; echo "[ERROR] session $(cat "$here/value") expired" >&2; exit 1"#,
    );
    let path = format!(
        "{}:{}",
        fake.path().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    // The global redactor, as in the binaries; the async path, as in preflight.
    let resolver = Resolver::new().with_env("PATH", path);
    let reference = r("op://prod/hub/token");
    let err = resolver.resolve(&reference).await.unwrap_err();
    assert_failure_shows_no_output(&err, &reference, &canary, "exit status: 1");
}

#[test]
fn env_and_file_failures_show_no_value() {
    let canary = cutover_tests::fresh_canary("FILE-CANARY");
    let dir = cutover_tests::temp_dir();
    let shared = dir.path().join("shared");
    std::fs::write(&shared, &canary).unwrap();
    std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o644)).unwrap();
    let resolver = Resolver::new().with_env("EMPTY_ONE", "");
    for reference in [
        format!("file:{}", shared.display()),
        format!("file:{}", dir.path().join("missing").display()),
        format!("file:{}", dir.path().display()),
        "env:SURELY_NOT_SET_ANYWHERE_7d1c".to_owned(),
        "env:EMPTY_ONE".to_owned(),
    ] {
        let err = resolver.resolve_blocking(&r(&reference)).unwrap_err();
        let text = every_rendering(&err);
        assert!(!text.contains(&canary), "{text}");
        assert!(
            err.to_string().contains(
                reference
                    .trim_start_matches("file:")
                    .trim_start_matches("env:")
            ),
            "{err}"
        );
    }
}
