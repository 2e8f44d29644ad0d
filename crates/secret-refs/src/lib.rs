//! Secrets from where teams keep them, handed to services, never shown.
//!
//! The replaced tooling kept API keys in a plaintext env file whose inline comments became part
//! of the values under systemd. This crate resolves **references** (`env:`, `file:`, `op://`,
//! `aws-sm://`, `exec:`, `literal:` and custom schemes) into [`Secret`] values and delivers them
//! as environment variables, an env file or systemd credential files, so that no value reaches a
//! log line, error message, `Debug` output or process argv.
//!
//! # Parts
//! - [`SecretRef`]: a parsed reference (`FromStr`, serde `Deserialize` from a string; `Display`
//!   and `Serialize` show the reference, never a value). A bare value is refused.
//! - [`Secret`]: zeroed on drop, `Debug`/`Display` print `***`, no `Serialize`;
//!   [`Secret::expose_secret`] is the one way in.
//! - [`Provider`]: one per scheme; built in: [`EnvProvider`], [`FileProvider`],
//!   [`OnePasswordProvider`] (`op read REF`), [`AwsSecretsManagerProvider`]
//!   (`aws secretsmanager get-secret-value … --query SecretString --output text`, then `#key`),
//!   [`ExecProvider`], [`LiteralProvider`]. Add Vault & co. with [`Resolver::with_provider`].
//! - [`Resolver`]: providers, a timeout (default 10 s; a CLI still running then is killed with
//!   its process group) and an environment overlay (`PATH`, `AWS_PROFILE`, … for the CLIs, and
//!   extra variables for `env:`), without touching the process environment.
//!   [`Resolver::resolve`] (async, tokio) and [`Resolver::resolve_blocking`] (no runtime), plus
//!   [`Resolver::resolve_all`] / [`Resolver::resolve_each`] for a `name -> reference` map.
//! - Delivery: [`CommandSecretExt::secret_env`] on `std`/`tokio` `Command`s; [`write_env_file`]
//!   (0600, atomic, quoting that round-trips through [`read_env_file`], systemd and `sh`);
//!   [`write_credentials_dir`] for `LoadCredential=` (files 0600 in a 0700 directory).
//! - Redaction: every resolved value is registered with a [`Redactor`] (the global one by
//!   default); [`RedactingMakeWriter`] wraps a `tracing-subscriber` writer and replaces those
//!   values with `***` in formatted output, as a second line of defence.
//!
//! # Reference forms
//! See [`SecretRef`] for the table. Two choices worth knowing: `exec:` takes a JSON array
//! (`exec:["pass","show","db"]`) or, if the body does not start with `[`, splits on whitespace
//! with no quoting and no shell; `file:` refuses a file that group or others can read unless the
//! reference ends in `?allow_shared=true`.
//!
//! # Example
//! ```
//! use std::collections::BTreeMap;
//! use secret_refs::{CommandSecretExt, Resolver, SecretRef, write_env_file, read_env_file};
//!
//! // As read from `[service].secrets` in cutover.toml.
//! let refs: BTreeMap<String, SecretRef> = serde_json::from_str(r#"{
//!     "API_KEY": "env:DEMO_API_KEY",
//!     "DB_PASSWORD": "literal:s3cret with # and \"quotes\""
//! }"#).unwrap();
//!
//! let resolver = Resolver::new().with_env("DEMO_API_KEY", "k-123456");
//! let secrets = resolver.resolve_all_blocking(&refs)?;
//! assert_eq!(format!("{:?}", secrets["API_KEY"]), "Secret(***)");
//!
//! // Hand them to a child by environment, never by argument...
//! let mut child = std::process::Command::new("true");
//! child.secret_envs(&secrets)?;
//!
//! // ...or write an env file for systemd's EnvironmentFile=.
//! let dir = tempfile::tempdir().unwrap();
//! let entries: Vec<(&str, &secret_refs::Secret)> =
//!     secrets.iter().map(|(k, v)| (k.as_str(), v)).collect();
//! write_env_file(&dir.path().join("app.env"), &entries)?;
//! let back = read_env_file(&dir.path().join("app.env"))?;
//! assert_eq!(back[1].1.expose_secret(), "s3cret with # and \"quotes\"");
//! # Ok::<(), secret_refs::SecretError>(())
//! ```
//!
//! # Limits
//! The standard library copies environment variables it passes to children, `serde_json` and CLI
//! pipes pass through buffers this crate does not own, and the kernel keeps a child's environment
//! readable by its user and root; zeroing is best effort beyond the `Secret` itself. Values
//! shorter than [`MIN_REDACTED_LEN`] bytes are not redacted from logs.

mod cli;
mod deliver;
mod envfile;
mod error;
mod provider;
mod providers;
mod redact;
mod reference;
mod resolver;
mod secret;

pub use deliver::{CommandSecretExt, write_credentials_dir};
pub use envfile::{parse_env, read_env_file, render_env_file, write_env_file};
pub use error::SecretError;
pub use provider::{Provider, ResolveContext};
pub use providers::{
    AwsSecretsManagerProvider, EnvProvider, ExecProvider, FileProvider, LiteralProvider,
    OnePasswordProvider,
};
pub use redact::{MIN_REDACTED_LEN, REDACTED, RedactingMakeWriter, RedactingWriter, Redactor};
pub use reference::SecretRef;
pub use resolver::{DEFAULT_TIMEOUT, Resolver};
pub use secret::Secret;
