//! Redaction of known secret values from log output (defence in depth).
//!
//! Code should never log a value in the first place; this catches the mistake when it happens. A
//! [`Redactor`] is a shared registry of values; the [`Resolver`](crate::Resolver) registers every
//! value it resolves into one (the process-wide [`Redactor::global`] unless told otherwise).
//! [`RedactingMakeWriter`] wraps any `tracing-subscriber` writer and replaces every registered
//! value in each formatted event with `***` before it reaches the inner writer.

use std::borrow::Cow;
use std::fmt;
use std::io::{self, Write};
use std::sync::{Arc, OnceLock, RwLock};

use tracing_subscriber::fmt::MakeWriter;
use zeroize::Zeroizing;

use crate::Secret;

/// What a registered value is replaced with.
pub const REDACTED: &str = "***";

/// Values shorter than this are not registered: replacing every `a` or `42` would make logs
/// unreadable while hiding almost nothing.
pub const MIN_REDACTED_LEN: usize = 4;

/// A shared, cloneable registry of values to redact. Clones share the registry.
#[derive(Clone, Default)]
pub struct Redactor {
    values: Arc<RwLock<Vec<Zeroizing<String>>>>,
}

impl fmt::Debug for Redactor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Redactor")
            .field("values", &self.len())
            .finish()
    }
}

impl Redactor {
    /// An empty registry of its own.
    pub fn new() -> Self {
        Self::default()
    }

    /// The process-wide registry that resolvers use by default.
    pub fn global() -> &'static Redactor {
        static GLOBAL: OnceLock<Redactor> = OnceLock::new();
        GLOBAL.get_or_init(Redactor::new)
    }

    /// Registers a secret's value, and its JSON- and Debug-escaped forms where they differ (so a
    /// value with a newline or quote is also caught inside a JSON log line or a `{:?}` field).
    /// Values shorter than [`MIN_REDACTED_LEN`] bytes are ignored.
    pub fn register(&self, secret: &Secret) {
        let value = secret.expose_secret();
        if value.len() < MIN_REDACTED_LEN {
            return;
        }
        let debug = Zeroizing::new(value.escape_debug().to_string());
        let forms: Vec<Zeroizing<String>> = vec![
            Zeroizing::new(value.to_owned()),
            json_escaped(value),
            Zeroizing::new(debug.to_string()),
            // A `{:?}` field inside a JSON log line is escaped twice.
            json_escaped(&debug),
        ];

        let mut values = self.values.write().unwrap_or_else(|e| e.into_inner());
        for form in forms {
            if !form.is_empty() && !values.iter().any(|v| **v == *form) {
                values.push(form);
            }
        }
        // Longest first, so that a value containing another registered value is replaced whole.
        values.sort_by_key(|v| std::cmp::Reverse(v.len()));
    }

    /// Number of registered forms.
    pub fn len(&self) -> usize {
        self.values.read().map(|v| v.len()).unwrap_or(0)
    }

    /// Whether nothing is registered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Replaces every registered value in `text` with [`REDACTED`].
    pub fn redact<'a>(&self, text: &'a str) -> Cow<'a, str> {
        let values = self.values.read().unwrap_or_else(|e| e.into_inner());
        // Intermediate copies still hold values, so they are zeroed when replaced.
        let mut owned: Option<Zeroizing<String>> = None;
        for value in values.iter() {
            let current: &str = owned.as_deref().map_or(text, String::as_str);
            // `str::contains` is a fast substring search; most lines contain no value at all.
            if current.contains(value.as_str()) {
                owned = Some(Zeroizing::new(current.replace(value.as_str(), REDACTED)));
            }
        }
        match owned {
            None => Cow::Borrowed(text),
            Some(mut done) => Cow::Owned(std::mem::take(&mut *done)),
        }
    }

    /// Replaces every registered value in `bytes` with [`REDACTED`] (UTF-8 or not).
    pub fn redact_bytes<'a>(&self, bytes: &'a [u8]) -> Cow<'a, [u8]> {
        if let Ok(text) = std::str::from_utf8(bytes) {
            return match self.redact(text) {
                Cow::Borrowed(_) => Cow::Borrowed(bytes),
                Cow::Owned(s) => Cow::Owned(s.into_bytes()),
            };
        }
        let values = self.values.read().unwrap_or_else(|e| e.into_inner());
        let mut out: Cow<'a, [u8]> = Cow::Borrowed(bytes);
        for value in values.iter() {
            if let Some(replaced) = replace_all(&out, value.as_bytes(), REDACTED.as_bytes()) {
                out = Cow::Owned(replaced);
            }
        }
        out
    }
}

/// `value` as it appears inside a JSON string (without the quotes).
fn json_escaped(value: &str) -> Zeroizing<String> {
    let json = Zeroizing::new(serde_json::to_string(value).unwrap_or_default());
    // The JSON form starts and ends with an ASCII quote, so these are char boundaries.
    let inner = json
        .get(1..json.len().saturating_sub(1))
        .unwrap_or_default();
    Zeroizing::new(inner.to_owned())
}

/// Replaces every occurrence of `needle`; `None` when there is none.
pub(crate) fn replace_all(haystack: &[u8], needle: &[u8], with: &[u8]) -> Option<Vec<u8>> {
    if needle.is_empty() || haystack.len() < needle.len() {
        return None;
    }
    let mut out: Option<Vec<u8>> = None;
    let mut start = 0;
    let mut i = 0;
    while i + needle.len() <= haystack.len() {
        if &haystack[i..i + needle.len()] == needle {
            let buf = out.get_or_insert_with(|| Vec::with_capacity(haystack.len()));
            buf.extend_from_slice(&haystack[start..i]);
            buf.extend_from_slice(with);
            i += needle.len();
            start = i;
        } else {
            i += 1;
        }
    }
    let mut buf = out?;
    buf.extend_from_slice(&haystack[start..]);
    Some(buf)
}

/// A `tracing-subscriber` [`MakeWriter`] that redacts registered values from each event.
///
/// Each writer it makes buffers what the formatter writes and passes it on, redacted, when
/// flushed or dropped; the `fmt` layer makes one writer per event, so a value is redacted even if
/// the formatter writes it in pieces.
///
/// ```
/// use secret_refs::{RedactingMakeWriter, Redactor, Secret};
/// let redactor = Redactor::new();
/// redactor.register(&Secret::new("canary-123456"));
/// let subscriber = tracing_subscriber::fmt()
///     .with_writer(RedactingMakeWriter::new(std::io::stderr, redactor))
///     .finish();
/// tracing::subscriber::with_default(subscriber, || {
///     tracing::info!("oops: canary-123456"); // printed as "oops: ***"
/// });
/// ```
#[derive(Debug, Clone)]
pub struct RedactingMakeWriter<M> {
    inner: M,
    redactor: Redactor,
}

impl<M> RedactingMakeWriter<M> {
    /// Wraps `inner`, redacting what `redactor` holds (now or later).
    pub fn new(inner: M, redactor: Redactor) -> Self {
        Self { inner, redactor }
    }

    /// Wraps `inner`, redacting what [`Redactor::global`] holds.
    pub fn global(inner: M) -> Self {
        Self::new(inner, Redactor::global().clone())
    }
}

impl<'a, M: MakeWriter<'a>> MakeWriter<'a> for RedactingMakeWriter<M> {
    type Writer = RedactingWriter<M::Writer>;

    fn make_writer(&'a self) -> Self::Writer {
        RedactingWriter::new(self.inner.make_writer(), self.redactor.clone())
    }

    fn make_writer_for(&'a self, meta: &tracing::Metadata<'_>) -> Self::Writer {
        RedactingWriter::new(self.inner.make_writer_for(meta), self.redactor.clone())
    }
}

/// The writer made by [`RedactingMakeWriter`]; also usable alone around any `Write`.
pub struct RedactingWriter<W: Write> {
    inner: W,
    buffer: Zeroizing<Vec<u8>>,
    redactor: Redactor,
}

impl<W: Write> fmt::Debug for RedactingWriter<W> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedactingWriter")
            .field("buffered", &self.buffer.len())
            .finish_non_exhaustive()
    }
}

impl<W: Write> RedactingWriter<W> {
    /// Wraps `inner`.
    pub fn new(inner: W, redactor: Redactor) -> Self {
        Self {
            inner,
            buffer: Zeroizing::new(Vec::new()),
            redactor,
        }
    }

    fn pass_on(&mut self) -> io::Result<()> {
        if self.buffer.is_empty() {
            return Ok(());
        }
        let redacted = self.redactor.redact_bytes(&self.buffer);
        let result = self.inner.write_all(&redacted);
        drop(redacted);
        self.buffer.clear();
        result
    }
}

impl<W: Write> Write for RedactingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.buffer.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.pass_on()?;
        self.inner.flush()
    }
}

impl<W: Write> Drop for RedactingWriter<W> {
    fn drop(&mut self) {
        // Nowhere to report a failure from drop; the inner writer's own error handling applies.
        let _ = self.pass_on();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_every_occurrence_longest_first() {
        let r = Redactor::new();
        r.register(&Secret::new("abcd"));
        r.register(&Secret::new("abcdefgh"));
        r.register(&Secret::new("xy")); // too short: ignored
        assert_eq!(r.redact("1abcdefgh2abcd3xy"), "1***2***3xy");
        assert_eq!(r.redact("nothing here"), "nothing here");
        assert!(matches!(r.redact("clean"), Cow::Borrowed(_)));
        // Not UTF-8: the byte path.
        assert_eq!(&*r.redact_bytes(b"\xffabcd\xfe"), b"\xff***\xfe");
        assert!(matches!(r.redact_bytes(b"\xffclean"), Cow::Borrowed(_)));
    }

    #[test]
    fn catches_escaped_forms() {
        let r = Redactor::new();
        r.register(&Secret::new("line1\nline\"2"));
        assert_eq!(r.redact(r#"{"v":"line1\nline\"2"}"#), r#"{"v":"***"}"#);
        assert_eq!(r.redact("raw line1\nline\"2 end"), "raw *** end");
    }

    #[test]
    fn writer_redacts_on_drop() {
        let r = Redactor::new();
        r.register(&Secret::new("canary-42-xyz"));
        let mut out = Vec::new();
        {
            let mut w = RedactingWriter::new(&mut out, r.clone());
            w.write_all(b"a canary-4").unwrap();
            w.write_all(b"2-xyz b").unwrap();
        }
        assert_eq!(out, b"a *** b");
    }
}
