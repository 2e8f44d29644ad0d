//! The one error type of this crate.
//!
//! Invariant: no variant ever holds a secret value or anything a provider printed. References are
//! stored in their display form (see [`SecretRef`](crate::SecretRef)'s `Display`, which prints
//! `literal:***` for literals), a bare value that was refused is described by its length only, and
//! a provider CLI that fails is described by its reference, program and exit status: neither its
//! standard output nor its standard error is kept, because a failing CLI can still have printed the
//! value, a token or part of one (scrubbing only catches values known beforehand).
//!
//! Causes are shown in the message and not also returned by `source()`, so that a printed chain
//! does not repeat them.

use std::path::PathBuf;
use std::time::Duration;

/// Everything that can go wrong while parsing, resolving or delivering a secret.
///
/// Messages are lowercase fragments that name the reference, path, command or variable involved,
/// and never the value.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SecretError {
    /// A string without a known scheme was given where a reference was expected.
    #[error(
        "a bare value is not a secret reference (the {len}-character value is not shown); write \
         `env:NAME`, `file:/path`, `op://vault/item/field`, `aws-sm://ID[#key]` or `exec:[...]`, \
         or `literal:<value>` to use the value as is"
    )]
    BareLiteral {
        /// Length of the refused value in characters.
        len: usize,
    },

    /// The reference has a known scheme but its body is malformed.
    #[error("invalid secret reference `{reference}`: {reason}")]
    InvalidReference {
        /// The reference as written (never a literal value).
        reference: String,
        /// What is wrong with it.
        reason: String,
    },

    /// No provider is registered for the reference's scheme.
    #[error(
        "no secret provider for scheme `{scheme}` (built in: env, file, op, aws-sm, exec, literal)"
    )]
    UnknownScheme {
        /// The scheme, such as `vault`.
        scheme: String,
    },

    /// An `env:` reference names a variable that is not set.
    #[error("secret `{reference}`: environment variable `{name}` is not set")]
    EnvNotSet {
        /// The reference.
        reference: String,
        /// The variable name.
        name: String,
    },

    /// A value is not valid UTF-8.
    #[error("secret `{reference}`: the value is not valid UTF-8")]
    NotUtf8 {
        /// The reference.
        reference: String,
    },

    /// The resolved value is empty (refused unless the resolver allows empty values).
    #[error(
        "secret `{reference}` resolved to an empty value (a missing secret is more likely than an \
         empty one; allow it with Resolver::allow_empty)"
    )]
    Empty {
        /// The reference.
        reference: String,
    },

    /// A `file:` secret is readable by group or others.
    #[error(
        "secret file {path} has mode {mode:04o}, which lets group or others read it; run \
         `chmod 600 {path}` or write the reference as `file:{path}?allow_shared=true` to accept \
         this"
    )]
    FileTooOpen {
        /// The file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },

    /// A filesystem operation failed.
    #[error("failed to {action} {path}: {error}")]
    Io {
        /// What was being done, such as "read secret file".
        action: &'static str,
        /// The path involved.
        path: PathBuf,
        /// The underlying error (shown in the message, not returned by `source()`).
        error: std::io::Error,
    },

    /// A provider CLI could not be started.
    #[error("secret `{reference}`: failed to run `{program}`: {error}")]
    Spawn {
        /// The reference.
        reference: String,
        /// The program, such as `op`.
        program: String,
        /// The underlying error (shown in the message, not returned by `source()`).
        error: std::io::Error,
    },

    /// A provider CLI exited unsuccessfully. What it printed is not kept (it may hold the
    /// value), so the message says how to see it.
    #[error(
        "secret `{reference}`: `{program}` failed ({status}); its output is not shown because it \
         may contain the secret: run the provider yourself to see it"
    )]
    CommandFailed {
        /// The reference.
        reference: String,
        /// The program, such as `aws`.
        program: String,
        /// The exit status, such as "exit status: 1" or "signal: 9 (SIGKILL)".
        status: String,
    },

    /// Resolving took longer than the resolver's timeout (the child, if any, was killed).
    #[error("secret `{reference}`: timed out after {timeout:?}{what}")]
    Timeout {
        /// The reference.
        reference: String,
        /// The timeout in force.
        timeout: Duration,
        /// Extra context, such as " (killed `op`)".
        what: String,
    },

    /// A provider produced more output than a secret can reasonably be.
    #[error("secret `{reference}`: the value is larger than {limit} bytes")]
    TooLarge {
        /// The reference.
        reference: String,
        /// The limit in bytes.
        limit: usize,
    },

    /// The `#key` of an `aws-sm://` reference could not be taken from the secret's JSON.
    #[error("secret `{reference}`: cannot take JSON key `{key}`: {reason}")]
    JsonKey {
        /// The reference.
        reference: String,
        /// The key.
        key: String,
        /// Why (never quoting the secret).
        reason: String,
    },

    /// A custom provider failed.
    #[error("secret `{reference}`: {message}")]
    Provider {
        /// The reference.
        reference: String,
        /// The provider's message, which must not contain the value.
        message: String,
    },

    /// A name (environment variable or credential) is not acceptable.
    #[error("invalid {kind} name `{name}`: {reason}")]
    InvalidName {
        /// "environment variable" or "credential".
        kind: &'static str,
        /// The name.
        name: String,
        /// What is wrong with it.
        reason: &'static str,
    },

    /// A value cannot be delivered the requested way (for example a NUL byte in an env var).
    #[error("secret `{name}` cannot be delivered as {how}: {reason}")]
    Undeliverable {
        /// The variable or credential name.
        name: String,
        /// "an environment variable", "an env file entry", ...
        how: &'static str,
        /// Why.
        reason: &'static str,
    },

    /// An env file could not be parsed.
    #[error("{path}:{line}: {reason}")]
    EnvFileSyntax {
        /// The file.
        path: PathBuf,
        /// The 1-based line where the bad entry starts.
        line: usize,
        /// What is wrong (never quoting the value).
        reason: String,
    },
}
