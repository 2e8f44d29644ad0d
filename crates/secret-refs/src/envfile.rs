//! Env files: `NAME="value"` lines that systemd's `EnvironmentFile=`, a POSIX shell (`set -a;
//! . FILE`) and [`read_env_file`] all read back to the same values.
//!
//! The writer always double-quotes and escapes exactly `\`, `"`, `$` and `` ` `` with a backslash;
//! newlines, `#`, spaces and single quotes stay literal inside the quotes. So there is no
//! inline-comment trap: `#` inside quotes is part of the value for every reader, and nothing but
//! whitespace may follow the closing quote.
//!
//! The reader accepts what the writer writes plus the usual hand-written forms: blank lines,
//! `#`/`;` comment lines, `export NAME=…`, single quotes (verbatim, no escapes) and unquoted values
//! (trimmed, `\x` gives `x`, a trailing `\` continues the line). An unquoted value containing ` #`
//! is refused, because systemd keeps such a "comment" as part of the value while shells drop it:
//! quote the value. Errors give the file and line, never the value.

use std::fs::File;
use std::io::Read;
use std::path::Path;

use zeroize::Zeroizing;

use crate::deliver::{atomic_write, check_env_entry};
use crate::{Secret, SecretError};

/// Renders entries as env-file text (what [`write_env_file`] writes).
///
/// # Errors
/// [`SecretError::InvalidName`] for a bad or repeated name, [`SecretError::Undeliverable`] for a
/// value with a NUL byte.
pub fn render_env_file(secrets: &[(&str, &Secret)]) -> Result<Zeroizing<String>, SecretError> {
    let mut out = Zeroizing::new(String::with_capacity(
        secrets.iter().map(|(n, s)| n.len() + 2 * s.len() + 4).sum(),
    ));
    for (i, (name, secret)) in secrets.iter().enumerate() {
        check_env_entry(name, secret, "an env file entry")?;
        if secrets[..i].iter().any(|(other, _)| other == name) {
            return Err(SecretError::InvalidName {
                kind: "environment variable",
                name: (*name).to_owned(),
                reason: "the name appears twice",
            });
        }
        out.push_str(name);
        out.push_str("=\"");
        for c in secret.expose_secret().chars() {
            if matches!(c, '\\' | '"' | '$' | '`') {
                out.push('\\');
            }
            out.push(c);
        }
        out.push_str("\"\n");
    }
    Ok(out)
}

/// Writes an env file: mode 0600, atomically (temp file in the same directory, fsync, rename,
/// fsync the directory), with the quoting described in the module docs.
///
/// ```
/// use secret_refs::{read_env_file, write_env_file, Secret};
/// let dir = tempfile::tempdir().unwrap();
/// let path = dir.path().join("service.env");
/// let tricky = Secret::new("a \"quoted\" #not-a-comment $HOME\nsecond line");
/// write_env_file(&path, &[("API_KEY", &tricky)])?;
/// let back = read_env_file(&path)?;
/// assert_eq!(back[0].0, "API_KEY");
/// assert_eq!(back[0].1, tricky);
/// # Ok::<(), secret_refs::SecretError>(())
/// ```
///
/// # Errors
/// As [`render_env_file`], and [`SecretError::Io`] for the filesystem.
#[tracing::instrument(skip_all, fields(path = %path.display(), count = secrets.len()))]
pub fn write_env_file(path: &Path, secrets: &[(&str, &Secret)]) -> Result<(), SecretError> {
    let text = render_env_file(secrets)?;
    atomic_write(path, text.as_bytes(), 0o600)?;
    tracing::debug!("wrote env file");
    Ok(())
}

/// Reads an env file into `(name, value)` pairs in file order.
///
/// # Errors
/// [`SecretError::Io`], or [`SecretError::EnvFileSyntax`] naming the file and line.
#[tracing::instrument(skip_all, fields(path = %path.display()))]
pub fn read_env_file(path: &Path) -> Result<Vec<(String, Secret)>, SecretError> {
    let io = |action: &'static str| {
        move |source| SecretError::Io {
            action,
            path: path.to_path_buf(),
            error: source,
        }
    };
    let mut file = File::open(path).map_err(io("open env file"))?;
    let len = file.metadata().map(|m| m.len()).unwrap_or(0);
    let mut text = Zeroizing::new(String::with_capacity(
        usize::try_from(len).unwrap_or(0).saturating_add(1),
    ));
    file.read_to_string(&mut text)
        .map_err(io("read env file"))?;
    parse_env(&text, path)
}

/// Parses env-file text; `path` is only used in error messages.
///
/// # Errors
/// [`SecretError::EnvFileSyntax`].
pub fn parse_env(text: &str, path: &Path) -> Result<Vec<(String, Secret)>, SecretError> {
    Parser {
        chars: text.chars().collect::<Vec<char>>().into(),
        pos: 0,
        line: 1,
        path,
    }
    .parse()
}

struct Parser<'a> {
    chars: Zeroizing<Vec<char>>,
    pos: usize,
    line: usize,
    path: &'a Path,
}

impl Parser<'_> {
    fn peek(&self) -> Option<char> {
        self.chars.get(self.pos).copied()
    }

    fn bump(&mut self) -> Option<char> {
        let c = self.peek()?;
        self.pos += 1;
        if c == '\n' {
            self.line += 1;
        }
        Some(c)
    }

    fn error(&self, line: usize, reason: impl Into<String>) -> SecretError {
        SecretError::EnvFileSyntax {
            path: self.path.to_path_buf(),
            line,
            reason: reason.into(),
        }
    }

    fn skip_blanks(&mut self) {
        while matches!(self.peek(), Some(' ' | '\t' | '\r')) {
            self.bump();
        }
    }

    fn skip_line(&mut self) {
        while let Some(c) = self.bump() {
            if c == '\n' {
                break;
            }
        }
    }

    fn parse(mut self) -> Result<Vec<(String, Secret)>, SecretError> {
        let mut entries = Vec::new();
        while self.peek().is_some() {
            self.skip_blanks();
            match self.peek() {
                None => break,
                Some('\n') => {
                    self.bump();
                    continue;
                }
                Some('#' | ';') => {
                    self.skip_line();
                    continue;
                }
                Some(_) => {}
            }
            let line = self.line;
            let mut name = String::new();
            while let Some(c) = self.peek() {
                if c == '=' || c == '\n' {
                    break;
                }
                name.push(c);
                self.bump();
            }
            if self.bump() != Some('=') {
                return Err(self.error(line, "expected NAME=value"));
            }
            let mut name = name.trim();
            if let Some(rest) = name.strip_prefix("export")
                && rest.starts_with([' ', '\t'])
            {
                name = rest.trim_start();
            }
            crate::reference::check_env_name(name)
                .map_err(|reason| self.error(line, format!("`{name}`: {reason}")))?;
            let name = name.to_owned();
            self.skip_blanks();
            let value = match self.peek() {
                Some('"') => self.double_quoted(line, &name)?,
                Some('\'') => self.single_quoted(line, &name)?,
                _ => self.unquoted(line, &name)?,
            };
            entries.push((name, value));
        }
        Ok(entries)
    }

    /// After a closing quote: only blanks up to the end of the line.
    fn end_of_quoted(&mut self, line: usize, name: &str) -> Result<(), SecretError> {
        self.skip_blanks();
        match self.bump() {
            None | Some('\n') => Ok(()),
            Some(_) => Err(self.error(
                line,
                format!(
                    "`{name}`: unexpected text after the closing quote (readers disagree on it)"
                ),
            )),
        }
    }

    fn double_quoted(&mut self, line: usize, name: &str) -> Result<Secret, SecretError> {
        self.bump();
        let mut value = Zeroizing::new(String::new());
        loop {
            match self.bump() {
                None => {
                    return Err(self.error(line, format!("`{name}`: unterminated double quote")));
                }
                Some('"') => break,
                Some('\\') => match self.bump() {
                    None => {
                        return Err(
                            self.error(line, format!("`{name}`: unterminated double quote"))
                        );
                    }
                    Some('\n') => {}
                    Some(c @ ('"' | '\\' | '$' | '`')) => value.push(c),
                    Some(c) => {
                        value.push('\\');
                        value.push(c);
                    }
                },
                Some(c) => value.push(c),
            }
        }
        self.end_of_quoted(line, name)?;
        Ok(Secret::new(std::mem::take(&mut *value)))
    }

    fn single_quoted(&mut self, line: usize, name: &str) -> Result<Secret, SecretError> {
        self.bump();
        let mut value = Zeroizing::new(String::new());
        loop {
            match self.bump() {
                None => {
                    return Err(self.error(line, format!("`{name}`: unterminated single quote")));
                }
                Some('\'') => break,
                Some(c) => value.push(c),
            }
        }
        self.end_of_quoted(line, name)?;
        Ok(Secret::new(std::mem::take(&mut *value)))
    }

    fn unquoted(&mut self, line: usize, name: &str) -> Result<Secret, SecretError> {
        let mut value = Zeroizing::new(String::new());
        loop {
            match self.bump() {
                None | Some('\n') => break,
                Some('\\') => match self.bump() {
                    None => break,
                    Some('\n') => {}
                    Some(c) => value.push(c),
                },
                Some(c) => value.push(c),
            }
        }
        let trimmed_len = value.trim_end_matches([' ', '\t', '\r']).len();
        value.truncate(trimmed_len);
        if value.contains(" #") || value.contains("\t#") {
            return Err(self.error(
                line,
                format!(
                    "`{name}`: unquoted value contains ` #`, which systemd keeps as part of the \
                     value but shells treat as a comment; quote the value or move the comment to \
                     its own line"
                ),
            ));
        }
        Ok(Secret::new(std::mem::take(&mut *value)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Vec<(String, String)>, String> {
        parse_env(text, Path::new("t.env"))
            .map(|v| {
                v.into_iter()
                    .map(|(n, s)| (n, s.expose_secret().to_owned()))
                    .collect()
            })
            .map_err(|e| e.to_string())
    }

    fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(a, b)| ((*a).to_owned(), (*b).to_owned()))
            .collect()
    }

    #[test]
    fn renders_with_escapes() {
        let s = Secret::new("a\"b\\c$d`e f#g'h\ni");
        let text = render_env_file(&[("K", &s)]).unwrap();
        assert_eq!(&*text, "K=\"a\\\"b\\\\c\\$d\\`e f#g'h\ni\"\n");
    }

    #[test]
    fn reads_hand_written_forms() {
        let text = "# comment\n\n; also\nexport A=plain value  \nB='single \"$x\" # kept'\nC=\"dq \\n stays\" \nD=a\\ b\\\ncontinued\nE=\n";
        assert_eq!(
            parse(text).unwrap(),
            pairs(&[
                ("A", "plain value"),
                ("B", "single \"$x\" # kept"),
                ("C", "dq \\n stays"),
                ("D", "a bcontinued"),
                ("E", ""),
            ])
        );
    }

    #[test]
    fn refuses_the_inline_comment_trap_and_garbage() {
        for (text, line, fragment) in [
            ("A=1\nKEY=abc # comment\n", 2, "` #`"),
            ("A=\"x\" # c\n", 1, "after the closing quote"),
            ("A=\"never closed\n", 1, "unterminated double"),
            ("\n\nA='x\n", 3, "unterminated single"),
            ("JUSTTEXT\n", 1, "NAME=value"),
            ("1A=x\n", 1, "starts with"),
        ] {
            let err = parse(text).unwrap_err();
            assert!(
                err.starts_with(&format!("t.env:{line}: ")),
                "{text:?}: {err}"
            );
            assert!(err.contains(fragment), "{text:?}: {err}");
        }
    }

    #[test]
    fn errors_never_quote_values() {
        let err = parse("K=canary-777 # oops\n").unwrap_err();
        assert!(!err.contains("canary"), "{err}");
        let err = parse("K=\"canary-777\" trailing\n").unwrap_err();
        assert!(!err.contains("canary"), "{err}");
    }

    #[test]
    fn refuses_nul_and_duplicates() {
        let nul = Secret::new("a\0b");
        assert!(matches!(
            render_env_file(&[("K", &nul)]),
            Err(SecretError::Undeliverable { .. })
        ));
        let s = Secret::new("x");
        assert!(matches!(
            render_env_file(&[("K", &s), ("K", &s)]),
            Err(SecretError::InvalidName { .. })
        ));
        assert!(matches!(
            render_env_file(&[("K-1", &s)]),
            Err(SecretError::InvalidName { .. })
        ));
    }

    proptest::proptest! {
        #[test]
        fn round_trips_any_value(value in "[^\u{0}]{0,40}", tricky in "[ #$\"'`\\\\\n\r\t=a]{0,20}") {
            let a = Secret::new(value);
            let b = Secret::new(tricky);
            let text = render_env_file(&[("A", &a), ("B_2", &b)]).unwrap();
            let back = parse_env(&text, Path::new("p.env")).unwrap();
            proptest::prop_assert_eq!(back.len(), 2);
            proptest::prop_assert!(back[0].1 == a && back[1].1 == b);
        }
    }
}
