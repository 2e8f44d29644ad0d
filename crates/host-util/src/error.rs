//! Rendering an error with its causes, once each.

use std::error::Error;

/// `err: source: source's source: …`, the whole [`Error::source`] chain on one line.
///
/// A cause whose text the message before it already ends with is left out, so that an error
/// that still prints its source (a library type not written to our rule, such as hyper's) does
/// not show the same OS error twice.
pub fn error_chain(err: &dyn Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !cause_text.is_empty() && !text.ends_with(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    struct Outer(std::io::Error, &'static str);

    impl std::fmt::Display for Outer {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str(self.1)
        }
    }

    impl Error for Outer {
        fn source(&self) -> Option<&(dyn Error + 'static)> {
            Some(&self.0)
        }
    }

    #[test]
    fn the_chain_shows_every_cause_once() {
        let os = || std::io::Error::from_raw_os_error(2);
        let err = Outer(os(), "cannot read /x");
        let text = error_chain(&err);
        assert_eq!(text, format!("cannot read /x: {}", os()));
        // A message that already prints its source is not followed by it again.
        let repeated = format!("cannot read /x: {}", os());
        let err = Outer(os(), Box::leak(repeated.into_boxed_str()));
        assert_eq!(error_chain(&err).matches("os error 2").count(), 1);
        assert_eq!(error_chain(&os()), os().to_string());
    }
}
