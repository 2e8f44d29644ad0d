//! The one placeholder template of `cutover.toml`: `[service] start`, `build` and `env` values,
//! `cutover-proc`'s argv and environment, and the rendered units all fill the same names the
//! same way.
//!
//! | placeholder    | value                                                          |
//! |----------------|----------------------------------------------------------------|
//! | `{release}`    | the release directory (`<root>/releases/<id>`, absolute)       |
//! | `{release_id}` | the release id                                                 |
//! | `{port}`       | the port of the slot the release runs in                       |
//! | `{host}`       | `[service] host` (default `127.0.0.1`)                         |
//! | `{root}`       | the layout root                                                |
//! | `{shared}`     | `<root>/shared`                                                |
//!
//! `{{` and `}}` stand for literal braces. Any other `{name}` (letters, digits, `_`) is an
//! error: a typo such as `{relase}` must not reach a process as text. A brace that does not
//! open such a name (`{"a": 1}`, `{ port }`, a lone `{`) is left alone, so JSON arguments
//! pass through unchanged, and so is a shell's `${NAME}` (for `sh -c` commands).
//!
//! ```
//! use process_control::template::{self, Placeholders};
//!
//! let values = Placeholders {
//!     release: Some("/srv/hub/releases/r1".into()),
//!     release_id: Some("r1".into()),
//!     port: Some(7001),
//!     ..Placeholders::default()
//! };
//! assert_eq!(template::fill("{release}/bin/hub --port={port}", &values)?, "/srv/hub/releases/r1/bin/hub --port=7001");
//! assert_eq!(template::fill("{{port}}", &values)?, "{port}");
//! let err = template::check("--listen {hots}:{port}").unwrap_err();
//! assert_eq!((err.name.as_str(), err.offset), ("hots", 9));
//! # Ok::<(), template::TemplateError>(())
//! ```

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Deserializer};

/// Every placeholder name, in the order the docs list them.
pub const PLACEHOLDERS: &[&str] = &["release", "release_id", "port", "host", "root", "shared"];

/// The values placeholders are filled with; `None` where the context has none (a build has
/// no port, say), which makes a template using it an error rather than a literal.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Placeholders {
    /// `{release}`: the release directory.
    pub release: Option<String>,
    /// `{release_id}`.
    pub release_id: Option<String>,
    /// `{port}`.
    pub port: Option<u16>,
    /// `{host}`.
    pub host: Option<String>,
    /// `{root}`.
    pub root: Option<String>,
    /// `{shared}`.
    pub shared: Option<String>,
}

impl Placeholders {
    fn value(&self, name: &str) -> Option<String> {
        match name {
            "release" => self.release.clone(),
            "release_id" => self.release_id.clone(),
            "port" => self.port.map(|p| p.to_string()),
            "host" => self.host.clone(),
            "root" => self.root.clone(),
            "shared" => self.shared.clone(),
            _ => None,
        }
    }
}

/// A placeholder that is unknown, or known but without a value where it is used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TemplateError {
    /// The name inside the braces.
    pub name: String,
    /// Byte offset of its `{` in the template.
    pub offset: usize,
    /// Whether the name is one of [`PLACEHOLDERS`] (then it only lacks a value here).
    pub known: bool,
}

impl fmt::Display for TemplateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.known {
            write!(
                f,
                "placeholder `{{{}}}` at offset {} has no value here",
                self.name, self.offset
            )
        } else {
            write!(
                f,
                "unknown placeholder `{{{}}}` at offset {}; known placeholders: {} (write `{{{{` for a literal brace)",
                self.name,
                self.offset,
                PLACEHOLDERS
                    .iter()
                    .map(|p| format!("{{{p}}}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        }
    }
}

impl std::error::Error for TemplateError {}

/// One piece of a parsed template.
enum Piece<'a> {
    Text(&'a str),
    Name(&'a str, usize),
}

/// Splits `template` into literal text and placeholder names (escapes already undone in the
/// literal pieces' boundaries: `{{` yields one `{`).
fn parse(template: &str) -> Vec<Piece<'_>> {
    let bytes = template.as_bytes();
    let mut pieces = Vec::new();
    let mut start = 0;
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'{' if bytes.get(i + 1) == Some(&b'{') => {
                pieces.push(Piece::Text(&template[start..=i]));
                i += 2;
                start = i;
            }
            b'}' if bytes.get(i + 1) == Some(&b'}') => {
                pieces.push(Piece::Text(&template[start..=i]));
                i += 2;
                start = i;
            }
            // `${NAME}` is a shell's, for `sh -c` commands: not ours.
            b'{' if i > 0 && bytes[i - 1] == b'$' => i += 1,
            b'{' => {
                let name_len = bytes[i + 1..]
                    .iter()
                    .take_while(|b| b.is_ascii_alphanumeric() || **b == b'_')
                    .count();
                if name_len > 0 && bytes.get(i + 1 + name_len) == Some(&b'}') {
                    pieces.push(Piece::Text(&template[start..i]));
                    pieces.push(Piece::Name(&template[i + 1..i + 1 + name_len], i));
                    i += name_len + 2;
                    start = i;
                } else {
                    i += 1;
                }
            }
            _ => i += 1,
        }
    }
    pieces.push(Piece::Text(&template[start..]));
    pieces
}

/// Checks that every placeholder in `template` is a known one.
///
/// # Errors
/// The first unknown placeholder, with its offset.
pub fn check(template: &str) -> Result<(), TemplateError> {
    for piece in parse(template) {
        if let Piece::Name(name, offset) = piece
            && !PLACEHOLDERS.contains(&name)
        {
            return Err(TemplateError {
                name: name.to_owned(),
                offset,
                known: false,
            });
        }
    }
    Ok(())
}

/// Fills `template` with `values`.
///
/// # Errors
/// An unknown placeholder, or a known one that has no value in `values`.
pub fn fill(template: &str, values: &Placeholders) -> Result<String, TemplateError> {
    let mut out = String::with_capacity(template.len());
    for piece in parse(template) {
        match piece {
            Piece::Text(text) => out.push_str(text),
            Piece::Name(name, offset) => match values.value(name) {
                Some(value) => out.push_str(&value),
                None => {
                    return Err(TemplateError {
                        name: name.to_owned(),
                        offset,
                        known: PLACEHOLDERS.contains(&name),
                    });
                }
            },
        }
    }
    Ok(out)
}

/// Fills every element of `argv`.
///
/// # Errors
/// As [`fill`], for the first element that fails.
pub fn fill_all(argv: &[String], values: &Placeholders) -> Result<Vec<String>, TemplateError> {
    argv.iter().map(|a| fill(a, values)).collect()
}

/// A string checked by [`check`] as it is deserialised, so that a manifest with an unknown
/// placeholder fails to load with the value's line and column.
struct Checked(String);

impl<'de> Deserialize<'de> for Checked {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        check(&text).map_err(|e| serde::de::Error::custom(format!("{e} in {text:?}")))?;
        Ok(Self(text))
    }
}

/// `#[serde(deserialize_with = "process_control::template::checked_argv")]`: an argv whose
/// placeholders are checked at load.
///
/// # Errors
/// The deserialiser's, or an unknown placeholder (pointing at the element).
pub fn checked_argv<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<String>, D::Error> {
    let items = Vec::<Checked>::deserialize(deserializer)?;
    Ok(items.into_iter().map(|c| c.0).collect())
}

/// `#[serde(deserialize_with = "process_control::template::checked_map")]`: environment values
/// whose placeholders are checked at load.
///
/// # Errors
/// The deserialiser's, or an unknown placeholder (pointing at the value).
pub fn checked_map<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<BTreeMap<String, String>, D::Error> {
    let items = BTreeMap::<String, Checked>::deserialize(deserializer)?;
    Ok(items.into_iter().map(|(k, v)| (k, v.0)).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all() -> Placeholders {
        Placeholders {
            release: Some("/r/releases/X".into()),
            release_id: Some("X".into()),
            port: Some(7001),
            host: Some("127.0.0.1".into()),
            root: Some("/r".into()),
            shared: Some("/r/shared".into()),
        }
    }

    #[test]
    fn every_placeholder_is_filled() {
        let t = "{release}|{release_id}|{port}|{host}|{root}|{shared}";
        assert_eq!(
            fill(t, &all()).unwrap(),
            "/r/releases/X|X|7001|127.0.0.1|/r|/r/shared"
        );
        for name in PLACEHOLDERS {
            let t = format!("a{{{name}}}b");
            assert!(check(&t).is_ok(), "{t}");
            assert!(!fill(&t, &all()).unwrap().contains('{'), "{t}");
        }
    }

    #[test]
    fn unknown_placeholders_are_refused_with_their_position() {
        let err = check("--listen {host}:{prot}").unwrap_err();
        assert_eq!(err.name, "prot");
        assert_eq!(err.offset, 16);
        assert!(!err.known);
        assert!(
            err.to_string()
                .contains("unknown placeholder `{prot}` at offset 16")
        );
        let err = fill("{relase}", &all()).unwrap_err();
        assert_eq!(
            (err.name.as_str(), err.offset, err.known),
            ("relase", 0, false)
        );
    }

    #[test]
    fn a_known_placeholder_without_a_value_is_an_error_not_text() {
        let values = Placeholders {
            release: Some("/x".into()),
            ..Placeholders::default()
        };
        let err = fill("{release}:{port}", &values).unwrap_err();
        assert_eq!(
            (err.name.as_str(), err.offset, err.known),
            ("port", 10, true)
        );
        assert!(err.to_string().contains("has no value here"));
    }

    #[test]
    fn escapes_and_other_braces_pass_through() {
        assert_eq!(fill("{{port}}", &all()).unwrap(), "{port}");
        assert_eq!(fill("a}}b{{c", &all()).unwrap(), "a}b{c");
        assert_eq!(fill(r#"{"a": 1}"#, &all()).unwrap(), r#"{"a": 1}"#);
        assert_eq!(
            fill("${HOME} {} { port }", &all()).unwrap(),
            "${HOME} {} { port }"
        );
        assert_eq!(fill("", &all()).unwrap(), "");
        assert_eq!(fill("{", &all()).unwrap(), "{");
        assert_eq!(fill("x{port", &all()).unwrap(), "x{port");
    }

    #[test]
    fn checked_fields_fail_at_load_with_the_element() {
        #[derive(Debug, Deserialize)]
        struct T {
            #[serde(deserialize_with = "checked_argv")]
            start: Vec<String>,
            #[serde(default, deserialize_with = "checked_map")]
            env: BTreeMap<String, String>,
        }
        let ok: T = toml::from_str("start = [\"{release}/x\"]\nenv = { A = \"{port}\" }").unwrap();
        assert_eq!(ok.start, ["{release}/x"]);
        assert_eq!(ok.env["A"], "{port}");
        let err = toml::from_str::<T>("start = [\"ok\", \"{relese}\"]").unwrap_err();
        assert!(
            err.message().contains("unknown placeholder `{relese}`"),
            "{err}"
        );
        // toml points at the array holding the element.
        let span = err.span().unwrap();
        assert!(
            "start = [\"ok\", \"{relese}\"]"[span].contains("{relese}"),
            "{err}"
        );
        let err = toml::from_str::<T>("start = []\nenv = { A = \"{x}\" }").unwrap_err();
        assert!(err.message().contains("`{x}`"), "{err}");
    }
}
