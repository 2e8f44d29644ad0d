//! [`Resolver`]: providers, a timeout and an environment overlay; resolves references.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::fmt;
use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant};

use tracing::Instrument;
use tracing::instrument::WithSubscriber;

use crate::providers::{
    AwsSecretsManagerProvider, EnvProvider, ExecProvider, FileProvider, LiteralProvider,
    OnePasswordProvider,
};
use crate::{Provider, Redactor, ResolveContext, Secret, SecretError, SecretRef};

/// The default time one resolution may take.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// Extra time given to a provider past the timeout before the resolver stops waiting for it (the
/// built-in ones stop on time by themselves).
const PROVIDER_GRACE: Duration = Duration::from_secs(2);

/// Resolves [`SecretRef`]s into [`Secret`]s.
///
/// Cheap to clone (the parts are shared). Every resolved value is registered with the resolver's
/// [`Redactor`] (the process-wide one by default) so that a [`RedactingMakeWriter`](crate::RedactingMakeWriter)
/// hides it should it ever be logged.
///
/// Both an async API ([`resolve`](Self::resolve), which needs a tokio runtime) and a blocking one
/// ([`resolve_blocking`](Self::resolve_blocking), which needs none) are offered; both enforce the
/// timeout.
///
/// ```
/// use secret_refs::{Resolver, SecretRef};
/// use std::time::Duration;
///
/// let resolver = Resolver::new()
///     .with_timeout(Duration::from_secs(5))
///     .with_env("DEMO_TOKEN", "t0ken-value");  // an overlay: the process env is not touched
/// let token = resolver.resolve_blocking(&SecretRef::parse("env:DEMO_TOKEN")?)?;
/// assert_eq!(token.expose_secret(), "t0ken-value");
/// # Ok::<(), secret_refs::SecretError>(())
/// ```
#[derive(Clone)]
pub struct Resolver {
    providers: BTreeMap<String, Arc<dyn Provider>>,
    timeout: Duration,
    env: Arc<BTreeMap<OsString, OsString>>,
    redactor: Redactor,
    allow_empty: bool,
}

impl fmt::Debug for Resolver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Overlay values are not shown: someone may put a token there.
        f.debug_struct("Resolver")
            .field("providers", &self.providers.keys().collect::<Vec<_>>())
            .field("timeout", &self.timeout)
            .field("env", &self.env.keys().collect::<Vec<_>>())
            .field("redactor", &self.redactor)
            .field("allow_empty", &self.allow_empty)
            .finish()
    }
}

impl Default for Resolver {
    fn default() -> Self {
        Self::new()
    }
}

impl Resolver {
    /// The built-in providers, a 10 s timeout, no overlay, the global redactor, empty values
    /// refused.
    pub fn new() -> Self {
        let resolver = Self {
            providers: BTreeMap::new(),
            timeout: DEFAULT_TIMEOUT,
            env: Arc::new(BTreeMap::new()),
            redactor: Redactor::global().clone(),
            allow_empty: false,
        };
        resolver
            .with_provider(EnvProvider)
            .with_provider(FileProvider)
            .with_provider(OnePasswordProvider)
            .with_provider(AwsSecretsManagerProvider)
            .with_provider(ExecProvider)
            .with_provider(LiteralProvider)
    }

    /// Registers a provider for its scheme, replacing any provider already registered for it.
    #[must_use]
    pub fn with_provider(mut self, provider: impl Provider + 'static) -> Self {
        self.providers
            .insert(provider.scheme().to_owned(), Arc::new(provider));
        self
    }

    /// Sets the time one resolution may take (a CLI still running then is killed).
    #[must_use]
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Adds a variable to the environment overlay: `env:` references see it before the process
    /// environment, and provider CLIs get it on top of the inherited environment (so `PATH` here
    /// chooses which `op` or `aws` runs). The process environment itself is never modified.
    #[must_use]
    pub fn with_env(mut self, name: impl Into<OsString>, value: impl Into<OsString>) -> Self {
        Arc::make_mut(&mut self.env).insert(name.into(), value.into());
        self
    }

    /// Registers resolved values with this redactor instead of the global one.
    #[must_use]
    pub fn with_redactor(mut self, redactor: Redactor) -> Self {
        self.redactor = redactor;
        self
    }

    /// Whether an empty value is accepted (by default it is an error: a missing secret is more
    /// likely than an empty one).
    #[must_use]
    pub fn allow_empty(mut self, allow: bool) -> Self {
        self.allow_empty = allow;
        self
    }

    /// The timeout in force.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// The redactor values are registered with.
    pub fn redactor(&self) -> &Redactor {
        &self.redactor
    }

    fn provider_for(&self, reference: &SecretRef) -> Result<Arc<dyn Provider>, SecretError> {
        self.providers
            .get(reference.scheme())
            .cloned()
            .ok_or_else(|| SecretError::UnknownScheme {
                scheme: reference.scheme().to_owned(),
            })
    }

    fn timeout_error(&self, reference: &SecretRef) -> SecretError {
        SecretError::Timeout {
            reference: reference.to_string(),
            timeout: self.timeout,
            what: " (the provider did not return)".to_owned(),
        }
    }

    /// Checks and registers a resolved value.
    fn accept(
        &self,
        reference: &SecretRef,
        secret: Secret,
        started: Instant,
    ) -> Result<Secret, SecretError> {
        if secret.is_empty() && !self.allow_empty {
            return Err(SecretError::Empty {
                reference: reference.to_string(),
            });
        }
        self.redactor.register(&secret);
        tracing::debug!(elapsed = ?started.elapsed(), "resolved secret");
        Ok(secret)
    }

    fn call(
        provider: &dyn Provider,
        reference: &SecretRef,
        timeout: Duration,
        env: &BTreeMap<OsString, OsString>,
        redactor: &Redactor,
    ) -> Result<Secret, SecretError> {
        let ctx = ResolveContext::new(timeout, env, redactor);
        provider.resolve(reference, &ctx)
    }

    /// Resolves one reference without an async runtime, on a helper thread bounded by the
    /// timeout.
    ///
    /// # Errors
    /// [`SecretError::UnknownScheme`], [`SecretError::Timeout`], [`SecretError::Empty`] or the
    /// provider's error.
    pub fn resolve_blocking(&self, reference: &SecretRef) -> Result<Secret, SecretError> {
        let span = tracing::info_span!("resolve_secret", reference = %reference, scheme = reference.scheme());
        let _entered = span.enter();
        let started = Instant::now();
        let provider = self.provider_for(reference)?;
        let (tx, rx) = mpsc::channel();
        let (timeout, env, redactor) = (self.timeout, self.env.clone(), self.redactor.clone());
        let owned = reference.clone();
        let thread_span = span.clone();
        let dispatch = tracing::dispatcher::get_default(Clone::clone);
        std::thread::Builder::new()
            .name("secret-resolve".to_owned())
            .spawn(move || {
                // Log to the caller's subscriber, inside the caller's span.
                tracing::dispatcher::with_default(&dispatch, || {
                    let _entered = thread_span.enter();
                    let _ = tx.send(Self::call(&*provider, &owned, timeout, &env, &redactor));
                });
            })
            .map_err(|source| SecretError::Spawn {
                reference: reference.to_string(),
                program: "a resolver thread".to_owned(),
                error: source,
            })?;
        match rx.recv_timeout(self.timeout + PROVIDER_GRACE) {
            Ok(result) => self.accept(reference, result?, started),
            Err(_) => Err(self.timeout_error(reference)),
        }
    }

    /// Resolves one reference (needs a tokio runtime; the provider runs on a blocking thread).
    ///
    /// # Errors
    /// As [`resolve_blocking`](Self::resolve_blocking).
    pub async fn resolve(&self, reference: &SecretRef) -> Result<Secret, SecretError> {
        let span = tracing::info_span!("resolve_secret", reference = %reference, scheme = reference.scheme());
        async {
            let started = Instant::now();
            let provider = self.provider_for(reference)?;
            let (timeout, env, redactor) = (self.timeout, self.env.clone(), self.redactor.clone());
            let owned = reference.clone();
            let thread_span = tracing::Span::current();
            let dispatch = tracing::dispatcher::get_default(Clone::clone);
            let task = tokio::task::spawn_blocking(move || {
                tracing::dispatcher::with_default(&dispatch, || {
                    let _entered = thread_span.enter();
                    Self::call(&*provider, &owned, timeout, &env, &redactor)
                })
            });
            match tokio::time::timeout(self.timeout + PROVIDER_GRACE, task).await {
                Ok(Ok(result)) => self.accept(reference, result?, started),
                Ok(Err(join)) => Err(SecretError::Provider {
                    reference: reference.to_string(),
                    message: if join.is_panic() {
                        "the provider panicked".to_owned()
                    } else {
                        "the provider was cancelled".to_owned()
                    },
                }),
                Err(_) => Err(self.timeout_error(reference)),
            }
        }
        .instrument(span)
        .await
    }

    /// Resolves every reference concurrently, keeping each outcome (what a "secrets resolvable"
    /// check wants).
    pub async fn resolve_each(
        &self,
        refs: &BTreeMap<String, SecretRef>,
    ) -> BTreeMap<String, Result<Secret, SecretError>> {
        let mut set = tokio::task::JoinSet::new();
        for (name, reference) in refs {
            let (this, name, reference) = (self.clone(), name.clone(), reference.clone());
            set.spawn(
                async move {
                    let result = this.resolve(&reference).await;
                    (name, result)
                }
                .in_current_span()
                .with_current_subscriber(),
            );
        }
        let mut out = BTreeMap::new();
        while let Some(joined) = set.join_next().await {
            if let Ok((name, result)) = joined {
                out.insert(name, result);
            }
        }
        // A task can only be missing if it panicked; report it rather than dropping the name.
        for (name, reference) in refs {
            out.entry(name.clone()).or_insert_with(|| {
                Err(SecretError::Provider {
                    reference: reference.to_string(),
                    message: "resolution task failed".to_owned(),
                })
            });
        }
        out
    }

    /// Resolves every reference concurrently; the first error (in name order) fails the whole.
    ///
    /// # Errors
    /// The error of the first name, in order, that failed.
    pub async fn resolve_all(
        &self,
        refs: &BTreeMap<String, SecretRef>,
    ) -> Result<BTreeMap<String, Secret>, SecretError> {
        self.resolve_each(refs)
            .await
            .into_iter()
            .map(|(n, r)| r.map(|s| (n, s)))
            .collect()
    }

    /// Blocking [`resolve_each`](Self::resolve_each): one thread per reference, no runtime needed.
    pub fn resolve_each_blocking(
        &self,
        refs: &BTreeMap<String, SecretRef>,
    ) -> BTreeMap<String, Result<Secret, SecretError>> {
        std::thread::scope(|scope| {
            let handles: Vec<_> = refs
                .iter()
                .map(|(name, reference)| {
                    (
                        name,
                        reference,
                        scope.spawn(|| self.resolve_blocking(reference)),
                    )
                })
                .collect();
            handles
                .into_iter()
                .map(|(name, reference, handle)| {
                    let result = handle.join().unwrap_or_else(|_| {
                        Err(SecretError::Provider {
                            reference: reference.to_string(),
                            message: "resolution thread panicked".to_owned(),
                        })
                    });
                    (name.clone(), result)
                })
                .collect()
        })
    }

    /// Blocking [`resolve_all`](Self::resolve_all).
    ///
    /// # Errors
    /// The error of the first name, in order, that failed.
    pub fn resolve_all_blocking(
        &self,
        refs: &BTreeMap<String, SecretRef>,
    ) -> Result<BTreeMap<String, Secret>, SecretError> {
        self.resolve_each_blocking(refs)
            .into_iter()
            .map(|(n, r)| r.map(|s| (n, s)))
            .collect()
    }
}
