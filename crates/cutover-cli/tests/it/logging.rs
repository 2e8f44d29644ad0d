//! The logging every binary installs redacts each secret value resolved in the process, in text
//! and JSON lines, whoever logs it.

#![allow(clippy::unwrap_used)] // helpers outside #[test] fns unwrap too

use std::io::Write;
use std::sync::{Arc, Mutex};

use cutover_cli::{LogFormat, log_subscriber};
use secret_refs::{Resolver, SecretRef};
use tracing_subscriber::fmt::MakeWriter;

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

#[test]
fn a_resolved_secret_logged_by_mistake_is_redacted_in_text_and_json_lines() {
    for format in [LogFormat::Text, LogFormat::Json] {
        // A value of this test's own: one resolved elsewhere would be redacted already.
        let canary = cutover_tests::fresh_canary("LOG-CANARY");
        let never_resolved = cutover_tests::fresh_canary("NOT-A-SECRET");
        let reference = SecretRef::parse(&format!("literal:{canary}")).unwrap();
        // The default resolver registers with the global redactor, as the binaries' do.
        let secret = Resolver::new().resolve_blocking(&reference).unwrap();
        let out = Captured::default();
        tracing::subscriber::with_default(log_subscriber(format, out.clone()), || {
            // Error level, so that no RUST_LOG in the test's environment filters it out.
            tracing::error!("careless {} and {never_resolved}", secret.expose_secret());
            tracing::error!(value = secret.expose_secret(), "field");
            tracing::error!(value = ?secret.expose_secret(), "debug field");
        });
        let text = out.text();
        assert!(!text.contains(&canary), "{format:?}:\n{text}");
        assert_eq!(text.matches("***").count(), 3, "{format:?}:\n{text}");
        // The lines really went through: a value nobody resolved is printed as is.
        assert!(text.contains(&never_resolved), "{format:?}:\n{text}");
    }
}
