//! [`SecretRef`]: where a secret lives, parsed from a short string.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use crate::{Secret, SecretError};

/// A reference to a secret: where to get it, never the value itself (except `literal:`).
///
/// | written as | resolved by |
/// | --- | --- |
/// | `env:NAME` | the environment variable `NAME` (of the resolver's overlay, then the process) |
/// | `file:/path` | the file's contents, one trailing newline removed; refused if group/other can read it |
/// | `file:/path?allow_shared=true` | the same, accepting a file that group/other can read |
/// | `op://vault/item/field` | `op read op://vault/item/field` (1Password CLI) |
/// | `aws-sm://ID` | `aws secretsmanager get-secret-value --secret-id ID --query SecretString --output text` |
/// | `aws-sm://ID#key` | the same, then the string (or number/bool) at `key` of the secret's JSON object |
/// | `exec:["cmd","arg"]` | the standard output of that argv (JSON array of strings) |
/// | `exec:cmd arg` | the same, the argv split on whitespace (no quoting, no shell) |
/// | `literal:VALUE` | `VALUE` itself, for tests and demos |
/// | `scheme://…` | a [`Provider`](crate::Provider) registered for `scheme` (Vault, Doppler, …) |
///
/// A string with none of these forms is refused ([`SecretError::BareLiteral`]) so that a value
/// pasted where a reference belongs is not used silently, and the error does not repeat it.
///
/// `Display` (and `Serialize`) print the reference as written, except that a literal prints as
/// `literal:***`. The display form of every other variant parses back to the same reference.
/// References appear in logs and errors, so a custom `scheme://…` reference must name a secret,
/// never embed a credential. A relative `file:` path is taken relative to the current directory;
/// a caller that wants it relative to a manifest resolves it first.
///
/// ```
/// use secret_refs::SecretRef;
/// let r: SecretRef = "aws-sm://prod/db#password".parse()?;
/// assert_eq!(r.scheme(), "aws-sm");
/// assert_eq!(r.to_string(), "aws-sm://prod/db#password");
/// assert_eq!(SecretRef::parse("literal:hunter2")?.to_string(), "literal:***");
/// assert!(SecretRef::parse("hunter2").is_err());
/// # Ok::<(), secret_refs::SecretError>(())
/// ```
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum SecretRef {
    /// `env:NAME`.
    Env {
        /// The variable name.
        name: String,
    },
    /// `file:/path[?allow_shared=true]`.
    File {
        /// The file.
        path: PathBuf,
        /// Whether a file readable by group or others is accepted.
        allow_shared: bool,
    },
    /// `op://vault/item/field` (1Password).
    OnePassword {
        /// The whole reference, `op://` included, as `op read` takes it.
        reference: String,
    },
    /// `aws-sm://ID[#key]` (AWS Secrets Manager).
    AwsSecretsManager {
        /// The secret's name or ARN.
        secret_id: String,
        /// The key to take from the secret's JSON object, if any.
        json_key: Option<String>,
    },
    /// `exec:` an argv whose standard output is the value.
    Exec {
        /// Program and arguments (no shell).
        argv: Vec<String>,
    },
    /// `literal:VALUE`.
    Literal {
        /// The value.
        value: Secret,
    },
    /// `scheme://…` for a provider that is not built in.
    Custom {
        /// The scheme, such as `vault`.
        scheme: String,
        /// The whole reference, scheme included.
        reference: String,
    },
}

/// The largest accepted reference, to keep errors and logs readable.
const MAX_REFERENCE_LEN: usize = 4096;

impl SecretRef {
    /// Parses a reference; see the type's documentation for the forms.
    ///
    /// # Errors
    /// [`SecretError::BareLiteral`] for a string with no known form, and
    /// [`SecretError::InvalidReference`] for a known scheme with a malformed body.
    pub fn parse(input: &str) -> Result<Self, SecretError> {
        if let Some(value) = input.strip_prefix("literal:") {
            return Ok(Self::Literal {
                value: Secret::new(value),
            });
        }
        let invalid = |reason: &str| SecretError::InvalidReference {
            reference: input.to_owned(),
            reason: reason.to_owned(),
        };
        if input.len() > MAX_REFERENCE_LEN {
            return Err(SecretError::InvalidReference {
                reference: format!("{}…", truncate(input, 64)),
                reason: format!("longer than {MAX_REFERENCE_LEN} bytes"),
            });
        }
        if input.is_empty() {
            return Err(invalid("empty reference"));
        }
        if let Some(name) = input.strip_prefix("env:") {
            if let Err(reason) = check_env_name(name) {
                return Err(invalid(reason));
            }
            return Ok(Self::Env {
                name: name.to_owned(),
            });
        }
        if let Some(body) = input.strip_prefix("file:") {
            return parse_file(body).map_err(|reason| invalid(&reason));
        }
        if let Some(body) = input.strip_prefix("op://") {
            let segments: Vec<&str> = body.split('?').next().unwrap_or("").split('/').collect();
            if segments.len() < 3 || segments.iter().any(|s| s.is_empty()) {
                return Err(invalid(
                    "expected op://vault/item/field or op://vault/item/section/field",
                ));
            }
            return Ok(Self::OnePassword {
                reference: input.to_owned(),
            });
        }
        if let Some(body) = input.strip_prefix("aws-sm://") {
            let (secret_id, json_key) = match body.split_once('#') {
                Some((id, key)) => (id, Some(key)),
                None => (body, None),
            };
            if secret_id.is_empty() {
                return Err(invalid(
                    "expected aws-sm://SECRET_ID or aws-sm://SECRET_ID#key",
                ));
            }
            if json_key.is_some_and(str::is_empty) {
                return Err(invalid("empty JSON key after `#`"));
            }
            if secret_id.chars().any(char::is_whitespace) {
                return Err(invalid("the secret id contains whitespace"));
            }
            return Ok(Self::AwsSecretsManager {
                secret_id: secret_id.to_owned(),
                json_key: json_key.map(str::to_owned),
            });
        }
        if let Some(body) = input.strip_prefix("exec:") {
            let body = body.trim();
            let argv: Vec<String> = if body.starts_with('[') {
                serde_json::from_str(body).map_err(|e| {
                    invalid(&format!(
                        "expected a JSON array of strings after `exec:` ({e})"
                    ))
                })?
            } else {
                body.split_whitespace().map(str::to_owned).collect()
            };
            if argv.first().is_none_or(String::is_empty) {
                return Err(invalid("`exec:` needs a program"));
            }
            return Ok(Self::Exec { argv });
        }
        if let Some((scheme, rest)) = input.split_once("://")
            && is_scheme(scheme)
            && !rest.is_empty()
        {
            return Ok(Self::Custom {
                scheme: scheme.to_owned(),
                reference: input.to_owned(),
            });
        }
        Err(SecretError::BareLiteral {
            len: input.chars().count(),
        })
    }

    /// The scheme that picks the provider: `env`, `file`, `op`, `aws-sm`, `exec`, `literal`, or a
    /// custom one.
    pub fn scheme(&self) -> &str {
        match self {
            Self::Env { .. } => "env",
            Self::File { .. } => "file",
            Self::OnePassword { .. } => "op",
            Self::AwsSecretsManager { .. } => "aws-sm",
            Self::Exec { .. } => "exec",
            Self::Literal { .. } => "literal",
            Self::Custom { scheme, .. } => scheme,
        }
    }
}

fn truncate(s: &str, max: usize) -> &str {
    let mut end = max.min(s.len());
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

fn is_scheme(s: &str) -> bool {
    let mut chars = s.chars();
    chars.next().is_some_and(|c| c.is_ascii_lowercase())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "+-.".contains(c))
}

/// Checks a portable environment variable name: `[A-Za-z_][A-Za-z0-9_]*`.
pub(crate) fn check_env_name(name: &str) -> Result<(), &'static str> {
    let mut chars = name.chars();
    match chars.next() {
        None => Err("the variable name is empty"),
        Some(c) if !(c.is_ascii_alphabetic() || c == '_') => {
            Err("a variable name starts with a letter or `_`")
        }
        _ if !chars.all(|c| c.is_ascii_alphanumeric() || c == '_') => {
            Err("a variable name has only letters, digits and `_`")
        }
        _ => Ok(()),
    }
}

fn parse_file(body: &str) -> Result<SecretRef, String> {
    let (path, allow_shared) = match body.rsplit_once('?') {
        Some((path, query)) if query.contains('=') => {
            let mut allow_shared = false;
            for pair in query.split('&') {
                match pair.split_once('=') {
                    Some(("allow_shared", "true")) => allow_shared = true,
                    Some(("allow_shared", "false")) => allow_shared = false,
                    Some(("allow_shared", _)) => {
                        return Err("allow_shared takes `true` or `false`".to_owned());
                    }
                    _ => {
                        return Err(format!(
                            "unknown option `{pair}` (the only option is allow_shared=true)"
                        ));
                    }
                }
            }
            (path, allow_shared)
        }
        _ => (body, false),
    };
    if path.is_empty() {
        return Err("expected file:/path/to/secret".to_owned());
    }
    Ok(SecretRef::File {
        path: PathBuf::from(path),
        allow_shared,
    })
}

impl FromStr for SecretRef {
    type Err = SecretError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl fmt::Display for SecretRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Env { name } => write!(f, "env:{name}"),
            Self::File { path, allow_shared } => {
                write!(f, "file:{}", path.display())?;
                if *allow_shared {
                    f.write_str("?allow_shared=true")?;
                }
                Ok(())
            }
            Self::OnePassword { reference } | Self::Custom { reference, .. } => {
                f.write_str(reference)
            }
            Self::AwsSecretsManager {
                secret_id,
                json_key,
            } => {
                write!(f, "aws-sm://{secret_id}")?;
                if let Some(key) = json_key {
                    write!(f, "#{key}")?;
                }
                Ok(())
            }
            Self::Exec { argv } => {
                let json = serde_json::to_string(argv).map_err(|_| fmt::Error)?;
                write!(f, "exec:{json}")
            }
            Self::Literal { .. } => f.write_str("literal:***"),
        }
    }
}

impl fmt::Debug for SecretRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SecretRef({self})")
    }
}

impl serde::Serialize for SecretRef {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for SecretRef {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = SecretRef;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a secret reference such as \"env:NAME\" or \"op://vault/item/field\"")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<SecretRef, E> {
                SecretRef::parse(v).map_err(E::custom)
            }
        }
        deserializer.deserialize_str(Visitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(s: &str) -> SecretRef {
        SecretRef::parse(s).unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    fn err(s: &str) -> String {
        match SecretRef::parse(s) {
            Ok(r) => panic!("{s} parsed as {r}"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn parses_every_form() {
        let cases: &[(&str, SecretRef)] = &[
            (
                "env:API_KEY",
                SecretRef::Env {
                    name: "API_KEY".into(),
                },
            ),
            (
                "file:/run/s/key",
                SecretRef::File {
                    path: "/run/s/key".into(),
                    allow_shared: false,
                },
            ),
            (
                "file:/run/s/key?allow_shared=true",
                SecretRef::File {
                    path: "/run/s/key".into(),
                    allow_shared: true,
                },
            ),
            (
                "file:/odd?name",
                SecretRef::File {
                    path: "/odd?name".into(),
                    allow_shared: false,
                },
            ),
            (
                "op://prod/hub/gemini",
                SecretRef::OnePassword {
                    reference: "op://prod/hub/gemini".into(),
                },
            ),
            (
                "aws-sm://prod/db",
                SecretRef::AwsSecretsManager {
                    secret_id: "prod/db".into(),
                    json_key: None,
                },
            ),
            (
                "aws-sm://arn:aws:secretsmanager:eu-west-1:1:secret:x-AbC#password",
                SecretRef::AwsSecretsManager {
                    secret_id: "arn:aws:secretsmanager:eu-west-1:1:secret:x-AbC".into(),
                    json_key: Some("password".into()),
                },
            ),
            (
                r#"exec:["/bin/sh", "-c", "echo a b"]"#,
                SecretRef::Exec {
                    argv: vec!["/bin/sh".into(), "-c".into(), "echo a b".into()],
                },
            ),
            (
                "exec: pass show  db ",
                SecretRef::Exec {
                    argv: vec!["pass".into(), "show".into(), "db".into()],
                },
            ),
            (
                "literal: spaced #value ",
                SecretRef::Literal {
                    value: Secret::new(" spaced #value "),
                },
            ),
            (
                "vault://secret/data/x#k",
                SecretRef::Custom {
                    scheme: "vault".into(),
                    reference: "vault://secret/data/x#k".into(),
                },
            ),
        ];
        for (input, expected) in cases {
            let parsed = ok(input);
            assert_eq!(&parsed, expected, "{input}");
            if !matches!(parsed, SecretRef::Literal { .. }) {
                assert_eq!(
                    ok(&parsed.to_string()),
                    parsed,
                    "display round trip of {input}"
                );
            }
        }
    }

    #[test]
    fn refuses_malformed_references() {
        for (input, fragment) in [
            ("", "empty"),
            ("env:", "empty"),
            ("env:1ABC", "starts with"),
            ("env:A-B", "letters, digits"),
            ("file:", "file:/path"),
            ("file:/x?mode=1", "unknown option"),
            ("file:/x?allow_shared=yes", "true"),
            ("op://vault/item", "op://vault/item/field"),
            ("op://vault//field", "op://vault/item/field"),
            ("aws-sm://", "SECRET_ID"),
            ("aws-sm://x#", "empty JSON key"),
            ("exec:", "needs a program"),
            ("exec:[1]", "JSON array"),
            ("exec:[]", "needs a program"),
        ] {
            let message = err(input);
            assert!(message.contains(fragment), "{input}: {message}");
        }
    }

    #[test]
    fn bare_literal_is_refused_without_echoing_it() {
        for canary in ["sk-canary-0123456789", "pass:word", "http:/x", "Hunter2://"] {
            let message = err(canary);
            assert!(!message.contains(canary), "{message}");
            assert!(message.contains("literal:"), "{message}");
            assert!(message.contains("env:NAME"), "{message}");
        }
    }

    #[test]
    fn literal_never_displays() {
        let r = ok("literal:canary-xyz-123");
        assert_eq!(r.to_string(), "literal:***");
        assert!(!format!("{r:?}").contains("canary"));
        assert_eq!(serde_json::to_string(&r).unwrap(), "\"literal:***\"");
    }

    #[test]
    fn deserializes_from_a_string() {
        let r: SecretRef = serde_json::from_str("\"env:HOME\"").unwrap();
        assert_eq!(r.scheme(), "env");
        let e = serde_json::from_str::<SecretRef>("\"canary-bare-value\"").unwrap_err();
        assert!(!e.to_string().contains("canary"), "{e}");
    }
}
