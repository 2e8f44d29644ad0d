//! The [`Secret`] type: a value that zeroes itself on drop and refuses to be shown.

use std::fmt;

use zeroize::Zeroizing;

/// A secret value.
///
/// - The bytes are overwritten with zeroes when the `Secret` is dropped (via [`zeroize`]).
/// - `Debug` prints `Secret(***)` and `Display` prints `***`.
/// - It deliberately does not implement `Serialize`: a struct holding a `Secret` cannot be written
///   to a report, journal or JSON document by accident. Serialise the [`SecretRef`](crate::SecretRef)
///   instead, whose `Display` never shows a value.
/// - [`expose_secret`](Self::expose_secret) is the one way to read it; grep for it in reviews.
///
/// Equality compares in time independent of where the first difference is.
///
/// ```
/// use secret_refs::Secret;
/// let s = Secret::new("hunter2-canary");
/// assert_eq!(format!("{s} {s:?}"), "*** Secret(***)");
/// assert_eq!(s.expose_secret(), "hunter2-canary");
/// ```
#[derive(Clone, Default)]
pub struct Secret(Zeroizing<String>);

impl Secret {
    /// Wraps a value. Passing an owned `String` moves it without copying.
    pub fn new(value: impl Into<String>) -> Self {
        Self(Zeroizing::new(value.into()))
    }

    /// The value. Never log, print or put it in an error or argv.
    pub fn expose_secret(&self) -> &str {
        &self.0
    }

    /// Length of the value in bytes.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether the value is empty.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl From<String> for Secret {
    fn from(value: String) -> Self {
        Self::new(value)
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl PartialEq for Secret {
    fn eq(&self, other: &Self) -> bool {
        let (a, b) = (self.0.as_bytes(), other.0.as_bytes());
        if a.len() != b.len() {
            return false;
        }
        a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
    }
}

impl Eq for Secret {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_and_display_redact() {
        let s = Secret::new("canary-value-1234");
        assert_eq!(format!("{s}"), "***");
        assert_eq!(format!("{s:?}"), "Secret(***)");
        assert_eq!(format!("{:#?}", Some(&s)), "Some(\n    Secret(***),\n)");
        assert_eq!(s.expose_secret(), "canary-value-1234");
        assert_eq!(s.len(), 17);
        assert!(!s.is_empty());
    }

    #[test]
    fn equality() {
        assert_eq!(Secret::new("abc"), Secret::new("abc"));
        assert_ne!(Secret::new("abc"), Secret::new("abd"));
        assert_ne!(Secret::new("abc"), Secret::new("abcd"));
    }
}
