//! The one loader for `cutover.toml`, shared by every cutover binary.
//!
//! Each library crate owns the serde types of the tables it reads (`[preflight]` belongs to
//! `preflight-checks`, `[[probe]]` to `health-probe`, …). A binary needs only a few of those
//! tables, so this crate lets it pick exactly the tables it wants out of the file and leave the
//! rest alone, while still giving the same quality of error everywhere:
//!
//! * the file is found at `--manifest PATH` or as `cutover.toml` in the current directory;
//! * syntax errors and type errors carry the file, line, column and key;
//! * an unknown key inside a table a binary reads is an error (the table's type says
//!   `#[serde(deny_unknown_fields)]`) and the message suggests the closest known key;
//! * an unknown top-level table is an error too, so `[prefligth]` cannot be silently ignored.
//!
//! ```
//! use serde::Deserialize;
//!
//! #[derive(Debug, Deserialize)]
//! #[serde(deny_unknown_fields)]
//! struct Service { name: String, port: u16 }
//!
//! let manifest = manifest_loader::Manifest::from_str(
//!     "cutover.toml",
//!     "[service]\nname = \"hub\"\nport = 7000\n[backup]\nkeep_last = 3\n",
//! )?;
//! let service: Service = manifest.table("service")?.expect("the table is present");
//! assert_eq!(service.port, 7000);
//! # Ok::<(), manifest_loader::ManifestError>(())
//! ```

use std::fmt;
use std::path::{Path, PathBuf};

use serde::de::{self, DeserializeOwned, DeserializeSeed, IgnoredAny, MapAccess, Visitor};

/// The file name looked up in the current directory when no `--manifest` is given.
pub const DEFAULT_FILE_NAME: &str = "cutover.toml";

/// The exit code for an invalid configuration (sysexits `EX_CONFIG`), shared by every binary.
pub const EXIT_INVALID_CONFIG: i32 = 78;

/// Every top-level table the manifest may hold. A key outside this list is a typo.
pub const KNOWN_TABLES: &[&str] = &[
    "service",
    "layout",
    "process",
    "proxy",
    "preflight",
    "backup",
    "probe",
    "alert",
    "perf",
    "hooks",
    "deploy",
    "monitor",
    "rollback",
    "fleet",
];

/// What went wrong while finding, reading or interpreting a manifest.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ManifestError {
    /// The manifest named by `--manifest` does not exist.
    #[error(
        "manifest {path} does not exist; pass --manifest PATH or run from the directory holding cutover.toml"
    )]
    NotFound {
        /// The path that was looked for.
        path: PathBuf,
    },
    /// The file exists but could not be read.
    #[error("failed to read manifest {path}: {error}")]
    Read {
        /// The manifest's path.
        path: PathBuf,
        /// The I/O error.
        error: std::io::Error,
    },
    /// The file is not valid TOML, or a table does not match its expected shape.
    #[error("{path}:{line}:{column}: {message}")]
    Invalid {
        /// The manifest's path.
        path: PathBuf,
        /// 1-based line of the offending text (0 when the parser could not say).
        line: usize,
        /// 1-based column of the offending text (0 when the parser could not say).
        column: usize,
        /// The dotted key (`preflight.check[2].warn_below`) where it is known, else the table.
        key: String,
        /// What is wrong and what to do.
        message: String,
    },
}

impl ManifestError {
    /// The exit code a binary should use for this error (78, invalid configuration).
    pub fn exit_code(&self) -> i32 {
        EXIT_INVALID_CONFIG
    }
}

/// A manifest file read into memory, from which tables are picked one at a time.
#[derive(Debug, Clone)]
pub struct Manifest {
    path: PathBuf,
    text: String,
}

impl Manifest {
    /// Finds the manifest: `explicit` when given (it must exist), else `cutover.toml` in the
    /// current directory when present. `Ok(None)` means no manifest: the binary runs from flags.
    pub fn locate(explicit: Option<&Path>) -> Result<Option<Self>, ManifestError> {
        match explicit {
            Some(path) => Self::load(path).map(Some),
            None => {
                let path = Path::new(DEFAULT_FILE_NAME);
                if path.exists() {
                    Self::load(path).map(Some)
                } else {
                    Ok(None)
                }
            }
        }
    }

    /// Reads the manifest at `path` and checks that it is TOML with only known top-level tables.
    pub fn load(path: &Path) -> Result<Self, ManifestError> {
        let text = std::fs::read_to_string(path).map_err(|source| {
            if source.kind() == std::io::ErrorKind::NotFound {
                ManifestError::NotFound {
                    path: path.to_path_buf(),
                }
            } else {
                ManifestError::Read {
                    path: path.to_path_buf(),
                    error: source,
                }
            }
        })?;
        Self::from_str(path, &text)
    }

    /// Builds a manifest from text already in memory; `path` is used in messages and to resolve
    /// relative paths.
    pub fn from_str(path: impl Into<PathBuf>, text: &str) -> Result<Self, ManifestError> {
        let manifest = Self {
            path: path.into(),
            text: text.to_owned(),
        };
        let top: toml::Table = toml::from_str(text).map_err(|e| manifest.error(&e, ""))?;
        for key in top.keys() {
            if !KNOWN_TABLES.contains(&key.as_str()) {
                let span = find_key_offset(text, key);
                let (line, column) = span.map(|o| line_col(text, o)).unwrap_or((0, 0));
                let hint = suggest(key, KNOWN_TABLES.iter().copied())
                    .map(|s| format!("; did you mean `{s}`?"))
                    .unwrap_or_else(|| format!("; known tables: {}", KNOWN_TABLES.join(", ")));
                return Err(ManifestError::Invalid {
                    path: manifest.path.clone(),
                    line,
                    column,
                    key: key.clone(),
                    message: format!("unknown top-level table `{key}`{hint}"),
                });
            }
        }
        Ok(manifest)
    }

    /// The manifest's path as it was given.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The directory relative paths in the manifest resolve against.
    pub fn dir(&self) -> PathBuf {
        match self.path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        }
    }

    /// Resolves a path from the manifest against the manifest's directory.
    pub fn resolve(&self, path: &Path) -> PathBuf {
        if path.is_absolute() {
            path.to_path_buf()
        } else {
            self.dir().join(path)
        }
    }

    /// Deserialises the value at the dotted `key` (`"preflight"`, `"service.secrets"`,
    /// `"probe"` for an array of tables). `Ok(None)` when the key is absent.
    pub fn table<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>, ManifestError> {
        let segments: Vec<&str> = key.split('.').collect();
        let deserializer =
            toml::Deserializer::parse(&self.text).map_err(|e| self.error(&e, key))?;
        Pick::<T> {
            segments: &segments,
            marker: std::marker::PhantomData,
        }
        .deserialize(deserializer)
        .map_err(|e| self.error(&e, key))
    }

    /// An error for a value that parses but cannot work, at the place `key` (dotted, such as
    /// `service.port` or `proxy.locations[1].path`) is written: file, line, column and key.
    pub fn invalid(&self, key: &str, message: impl Into<String>) -> ManifestError {
        let (line, column) = locate_key(&self.text, key)
            .map(|o| line_col(&self.text, o))
            .unwrap_or((0, 0));
        ManifestError::Invalid {
            path: self.path.clone(),
            line,
            column,
            key: key.to_owned(),
            message: format!("`{key}`: {}", message.into()),
        }
    }

    fn error(&self, err: &toml::de::Error, key: &str) -> ManifestError {
        let (line, column) = err
            .span()
            .map(|s| line_col(&self.text, s.start))
            .unwrap_or((0, 0));
        let mut message = err.message().trim().to_owned();
        if let Some(hint) = unknown_field_hint(&message) {
            message.push_str(&hint);
        }
        let key = if key.is_empty() {
            // A value the parser refuses (an integer beyond i64): name the key on that line.
            err.span()
                .and_then(|s| key_at(&self.text, s.start))
                .unwrap_or_else(|| "(document)".to_owned())
        } else {
            key.to_owned()
        };
        let message = format!("in `{key}`: {message}");
        ManifestError::Invalid {
            path: self.path.clone(),
            line,
            column,
            key,
            message,
        }
    }
}

/// Walks down a dotted key path, ignoring every sibling, and deserialises the value at the end.
struct Pick<'a, T> {
    segments: &'a [&'a str],
    marker: std::marker::PhantomData<T>,
}

impl<'de, T: DeserializeOwned> DeserializeSeed<'de> for Pick<'_, T> {
    type Value = Option<T>;

    fn deserialize<D: de::Deserializer<'de>>(
        self,
        deserializer: D,
    ) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_map(self)
    }
}

impl<'de, T: DeserializeOwned> Visitor<'de> for Pick<'_, T> {
    type Value = Option<T>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "a table holding `{}`", self.segments.join("."))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut found = None;
        while let Some(key) = map.next_key::<String>()? {
            match self.segments.split_first() {
                Some((first, rest)) if key == *first => {
                    found = if rest.is_empty() {
                        Some(map.next_value::<T>()?)
                    } else {
                        map.next_value_seed(Pick::<T> {
                            segments: rest,
                            marker: std::marker::PhantomData,
                        })?
                    };
                }
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(found)
    }
}

/// For serde's "unknown field `x`, expected one of `a`, `b`" message, suggests the closest key.
fn unknown_field_hint(message: &str) -> Option<String> {
    let rest = message.strip_prefix("unknown field `")?;
    let (unknown, rest) = rest.split_once('`')?;
    let expected = rest.split('`').skip(1).step_by(2);
    suggest(unknown, expected).map(|s| format!("; did you mean `{s}`?"))
}

/// The closest candidate to `word` by Jaro-Winkler similarity, when it is close enough to help.
pub fn suggest<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    candidates
        .into_iter()
        .map(|c| (strsim::jaro_winkler(word, c), c))
        .filter(|(score, _)| *score > 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, c)| c)
}

/// 1-based line and column of a byte offset.
fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, column)
}

/// The dotted key written at `offset`: the last table header before it, and the key of its line.
fn key_at(text: &str, offset: usize) -> Option<String> {
    let before = &text[..offset.min(text.len())];
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let line_end = text[line_start..]
        .find('\n')
        .map_or(text.len(), |i| line_start + i);
    let line = &text[line_start..line_end];
    let key = line.split_once('=')?.0.trim().trim_matches('"');
    if key.is_empty() || key.starts_with('[') {
        return None;
    }
    let table = before[..line_start]
        .lines()
        .rev()
        .map(str::trim)
        .find(|l| l.starts_with('['))
        .map(|h| h.trim_matches(|c| c == '[' || c == ']').trim().to_owned());
    Some(match table {
        Some(t) if !t.is_empty() => format!("{t}.{key}"),
        _ => key.to_owned(),
    })
}

/// Where the dotted `key` is written: `key =` inside the section of its table (`[a]` for
/// `a.b`, `[a.b]` for `a.b.c`, …), else the table's header, else a top-level mention.
fn locate_key(text: &str, key: &str) -> Option<usize> {
    let plain: String = {
        let mut out = String::new();
        let mut depth = 0;
        for c in key.chars() {
            match c {
                '[' => depth += 1,
                ']' => depth -= 1,
                c if depth == 0 => out.push(c),
                _ => {}
            }
        }
        out
    };
    let segments: Vec<&str> = plain.split('.').filter(|s| !s.is_empty()).collect();
    let mut header_only = None;
    for split in (1..segments.len()).rev() {
        let table = segments[..split].join(".");
        let rest = segments[split..].join(".");
        let mut offset = 0;
        let mut inside = false;
        for line in text.split_inclusive('\n') {
            let trimmed = line.trim_start();
            let indent = line.len() - trimmed.len();
            if trimmed.starts_with('[') {
                let name = trimmed
                    .trim_end()
                    .trim_matches(|c| c == '[' || c == ']')
                    .trim();
                inside = name == table;
                if inside && header_only.is_none() {
                    header_only = Some(offset + indent);
                }
            } else if inside
                && let Some(after) = trimmed.strip_prefix(rest.as_str())
                && (after.trim_start().starts_with('=') || after.starts_with('.'))
            {
                return Some(offset + indent);
            } else if inside
                && let Some((k, _)) = trimmed.split_once('=')
                && rest.starts_with(&format!("{}.", k.trim()))
            {
                // `env = { A = "x" }` for `env.A`: the line of the inline table.
                return Some(offset + indent);
            }
            offset += line.len();
        }
    }
    header_only.or_else(|| find_key_offset(text, segments.first().copied().unwrap_or(key)))
}

/// Where a top-level key is written (`[key]`, `[[key]]`, `key =` or `key.x =`), for messages.
fn find_key_offset(text: &str, key: &str) -> Option<usize> {
    let mut offset = 0;
    for line in text.split_inclusive('\n') {
        let trimmed = line.trim_start();
        let indent = line.len() - trimmed.len();
        let name = trimmed.trim_start_matches('[').trim_start();
        if let Some(after) = name.strip_prefix(key) {
            let after = after.trim_start();
            if after.starts_with(']') || after.starts_with('=') || after.starts_with('.') {
                return Some(offset + indent);
            }
        }
        offset += line.len();
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[test]
    fn invalid_names_the_line_and_column_of_the_key_in_its_table() {
        let text = "[service]\nname = \"hub\"\nport = 0\nenv = { \"A=B\" = \"x\" }\n[layout]\nroot = \"/\"\n[[probe]]\nurl = \"/a\"\n[[probe]]\nurl = \"/b\"\n";
        let m = Manifest::from_str("cutover.toml", text).unwrap();
        let at = |key: &str| match m.invalid(key, "bad") {
            ManifestError::Invalid { line, column, .. } => (line, column),
            other => panic!("{other}"),
        };
        assert_eq!(at("service.port"), (3, 1));
        assert_eq!(at("service.env.A=B"), (4, 1));
        assert_eq!(at("layout.root"), (6, 1));
        assert_eq!(
            at("layout.keep_releases"),
            (5, 1),
            "absent: the table's header"
        );
        assert_eq!(at("probe[0].url"), (8, 1));
        let msg = m.invalid("service.port", "must not be 0").to_string();
        assert_eq!(msg, "cutover.toml:3:1: `service.port`: must not be 0");
    }

    #[test]
    fn an_integer_too_large_for_toml_is_reported_under_its_key() {
        let err = Manifest::from_str("cutover.toml", "[service]\nport = 99999999999999999999\n")
            .unwrap_err();
        match err {
            ManifestError::Invalid { key, line, .. } => {
                assert_eq!(key, "service.port");
                assert_eq!(line, 2);
            }
            other => panic!("{other}"),
        }
    }

    #[derive(Debug, Deserialize, PartialEq)]
    #[serde(deny_unknown_fields)]
    struct Preflight {
        ignore: Vec<String>,
        #[serde(default)]
        check: Vec<Check>,
    }

    #[derive(Debug, Deserialize, PartialEq)]
    #[serde(deny_unknown_fields)]
    struct Check {
        kind: String,
        #[serde(default)]
        warn_below: Option<String>,
    }

    const GOOD: &str = r#"
[service]
name = "hub"
secrets = { KEY = "env:KEY" }

[preflight]
ignore = ["memory"]

[[preflight.check]]
kind = "disk-free"
warn_below = "20GB"

[[probe]]
name = "ready"
"#;

    #[test]
    fn picks_a_table_and_ignores_the_others() {
        let m = Manifest::from_str("cutover.toml", GOOD).unwrap();
        let p: Preflight = m.table("preflight").unwrap().unwrap();
        assert_eq!(p.ignore, vec!["memory"]);
        assert_eq!(p.check[0].warn_below.as_deref(), Some("20GB"));
        let absent: Option<Preflight> = m.table("perf").unwrap();
        assert!(absent.is_none());
    }

    #[test]
    fn picks_a_nested_key() {
        let m = Manifest::from_str("cutover.toml", GOOD).unwrap();
        let s: std::collections::BTreeMap<String, String> =
            m.table("service.secrets").unwrap().unwrap();
        assert_eq!(s["KEY"], "env:KEY");
    }

    #[test]
    fn unknown_key_names_line_column_and_suggests() {
        let text = GOOD.replace("warn_below = \"20GB\"", "warn_belw = \"20GB\"");
        let m = Manifest::from_str("cutover.toml", &text).unwrap();
        let err = m.table::<Preflight>("preflight").unwrap_err();
        let ManifestError::Invalid {
            line,
            column,
            ref message,
            ..
        } = err
        else {
            panic!("{err:?}")
        };
        assert_eq!((line, column), (11, 1), "{message}");
        assert!(message.contains("did you mean `warn_below`?"), "{message}");
        assert_eq!(err.exit_code(), 78);
        insta::assert_snapshot!(err.to_string(), @"cutover.toml:11:1: in `preflight`: unknown field `warn_belw`, expected `kind` or `warn_below`; did you mean `warn_below`?");
    }

    #[test]
    fn unknown_top_level_table_is_an_error() {
        let err = Manifest::from_str("m.toml", "[prefligth]\nignore = []\n").unwrap_err();
        insta::assert_snapshot!(err.to_string(), @"m.toml:1:1: unknown top-level table `prefligth`; did you mean `preflight`?");
    }

    #[test]
    fn syntax_error_names_the_position() {
        let err = Manifest::from_str("m.toml", "[service]\nname = \n").unwrap_err();
        let ManifestError::Invalid { line, .. } = err else {
            panic!("{err:?}")
        };
        assert_eq!(line, 2);
    }

    #[test]
    fn type_error_names_the_position() {
        let m = Manifest::from_str("m.toml", "[preflight]\nignore = 3\n").unwrap();
        let err = m.table::<Preflight>("preflight").unwrap_err();
        let ManifestError::Invalid { line, column, .. } = &err else {
            panic!("{err:?}")
        };
        assert_eq!((*line, *column), (2, 10), "{err}");
    }

    #[test]
    fn locate_missing_explicit_path_is_not_found() {
        let dir = tempfile::tempdir().unwrap();
        let err = Manifest::locate(Some(&dir.path().join("nope.toml"))).unwrap_err();
        assert!(matches!(err, ManifestError::NotFound { .. }), "{err:?}");
    }

    #[test]
    fn resolves_relative_paths_against_the_manifest_dir() {
        let m = Manifest::from_str("/etc/app/cutover.toml", "").unwrap();
        assert_eq!(m.resolve(Path::new("data")), PathBuf::from("/etc/app/data"));
        assert_eq!(m.resolve(Path::new("/abs")), PathBuf::from("/abs"));
    }
}
