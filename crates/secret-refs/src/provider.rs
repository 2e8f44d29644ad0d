//! The [`Provider`] trait that resolves references of one scheme, and the context it gets.

use std::collections::BTreeMap;
use std::ffi::{OsStr, OsString};
use std::fmt;
use std::time::{Duration, Instant};

use crate::{Redactor, Secret, SecretError, SecretRef};

/// Resolves the references of one scheme into values.
///
/// Built in: `env`, `file`, `op`, `aws-sm`, `exec`, `literal`. A team adds Vault, Doppler and the
/// like by implementing this trait and registering it with
/// [`Resolver::with_provider`](crate::Resolver::with_provider); a provider for a built-in scheme
/// replaces the built-in one (a test double, for example).
///
/// The call is blocking: the resolver runs it on a blocking thread for async callers and bounds it
/// with the timeout either way. A provider must itself stop at [`ResolveContext::deadline`] (kill
/// its child process, abandon its request) so that nothing keeps running behind a timed-out
/// resolution; [`ResolveContext::run`] does this for CLI-based providers.
///
/// Rules for implementors: never put the value in an error, log line or argv, nor anything a
/// backend printed or answered on failure (it can hold the value); name the reference in errors
/// (its `Display` is safe) and say where to look.
///
/// ```
/// use secret_refs::{Provider, ResolveContext, Resolver, Secret, SecretError, SecretRef};
///
/// #[derive(Debug)]
/// struct Vault;
/// impl Provider for Vault {
///     fn scheme(&self) -> &str { "vault" }
///     fn resolve(&self, reference: &SecretRef, ctx: &ResolveContext<'_>) -> Result<Secret, SecretError> {
///         // A real one would call `ctx.run(reference, "vault", &["kv", "get", ...])`.
///         Ok(Secret::new("from-vault"))
///     }
/// }
/// let resolver = Resolver::new().with_provider(Vault);
/// let value = resolver.resolve_blocking(&"vault://kv/app#token".parse()?)?;
/// assert_eq!(value.expose_secret(), "from-vault");
/// # Ok::<(), SecretError>(())
/// ```
pub trait Provider: Send + Sync + fmt::Debug {
    /// The scheme this provider handles, such as `vault` for `vault://…`.
    fn scheme(&self) -> &str;

    /// Resolves one reference whose [`SecretRef::scheme`] is [`scheme`](Self::scheme).
    ///
    /// # Errors
    /// Any [`SecretError`] naming the reference and never the value.
    fn resolve(
        &self,
        reference: &SecretRef,
        ctx: &ResolveContext<'_>,
    ) -> Result<Secret, SecretError>;
}

/// What a provider gets from the resolver for one resolution.
#[derive(Debug)]
pub struct ResolveContext<'a> {
    pub(crate) timeout: Duration,
    pub(crate) deadline: Instant,
    pub(crate) env: &'a BTreeMap<OsString, OsString>,
    pub(crate) redactor: &'a Redactor,
}

impl<'a> ResolveContext<'a> {
    /// A context for calling a provider directly (the resolver builds its own).
    pub fn new(
        timeout: Duration,
        env: &'a BTreeMap<OsString, OsString>,
        redactor: &'a Redactor,
    ) -> Self {
        Self {
            timeout,
            deadline: Instant::now() + timeout,
            env,
            redactor,
        }
    }

    /// The resolver's timeout for this resolution.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// When this resolution must be finished.
    pub fn deadline(&self) -> Instant {
        self.deadline
    }

    /// Looks a variable up in the resolver's environment overlay, then the process environment.
    pub fn var(&self, name: &str) -> Option<OsString> {
        self.env
            .get(OsStr::new(name))
            .cloned()
            .or_else(|| std::env::var_os(name))
    }

    /// Variables set on every child process a provider starts (on top of the inherited
    /// environment); `PATH` here also decides where the program is found.
    pub fn child_env(&self) -> &BTreeMap<OsString, OsString> {
        self.env
    }

    /// The registry of values to redact, for a custom provider that must turn text it did not
    /// write (a service's reply, say) into a message; such text had better be left out.
    pub fn redactor(&self) -> &Redactor {
        self.redactor
    }

    /// Runs a provider CLI: no stdin, the overlay environment, its own process group, standard
    /// error to `/dev/null`, killed (with its group) at the deadline. Returns standard output
    /// with one trailing newline removed, or an error that names the reference, the program and
    /// its exit status, and never anything the CLI printed (a failing CLI can still print the
    /// value): the message tells the reader to run the provider to see its output.
    ///
    /// # Errors
    /// [`SecretError::Spawn`], [`SecretError::CommandFailed`], [`SecretError::Timeout`],
    /// [`SecretError::TooLarge`], [`SecretError::NotUtf8`].
    pub fn run(
        &self,
        reference: &SecretRef,
        program: &str,
        args: &[&str],
    ) -> Result<Secret, SecretError> {
        crate::cli::run(self, reference, program, args)
    }
}
