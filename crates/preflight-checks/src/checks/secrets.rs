//! `secrets`: every secret reference of the service (`[service].secrets`) resolves. Only names
//! and references are ever reported; values are dropped (and zeroed) as soon as they resolve.

use std::collections::BTreeMap;
use std::time::Duration;

use secret_refs::{Resolver, SecretRef};
use serde_json::json;

use crate::{Check, CheckContext, DEFAULT_TIMEOUT, Outcome};

/// `secrets`: each `NAME = "reference"` resolves to a non-empty value.
#[derive(Debug, Clone)]
pub struct SecretsResolve {
    id: String,
    timeout: Duration,
    refs: BTreeMap<String, String>,
    resolver: Resolver,
}

impl SecretsResolve {
    /// `refs` maps variable names to references as written in the manifest.
    pub fn new(id: impl Into<String>, refs: BTreeMap<String, String>) -> Self {
        Self {
            id: id.into(),
            timeout: DEFAULT_TIMEOUT,
            refs,
            resolver: Resolver::new(),
        }
    }
    /// Uses this resolver (providers, environment overlay) instead of the default one. Its
    /// timeout is replaced to fit within the check's own.
    #[must_use]
    pub fn resolver(mut self, resolver: Resolver) -> Self {
        self.resolver = resolver;
        self
    }
    /// Sets the timeout.
    #[must_use]
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }
}

impl Check for SecretsResolve {
    fn id(&self) -> &str {
        &self.id
    }
    fn kind(&self) -> &'static str {
        "secrets"
    }
    fn timeout(&self) -> Duration {
        self.timeout
    }
    fn description(&self) -> String {
        format!("{} secret reference(s) resolve", self.refs.len())
    }
    fn run(&self, ctx: &CheckContext) -> Outcome {
        if self.refs.is_empty() {
            return Outcome::skip("no secrets declared in [service].secrets");
        }
        let mut problems: Vec<String> = Vec::new();
        let mut parsed = BTreeMap::new();
        for (name, text) in &self.refs {
            match SecretRef::parse(text) {
                Ok(r) => {
                    parsed.insert(name.clone(), r);
                }
                // The parse error never quotes a bare value, only its length.
                Err(e) => problems.push(format!("{name}: {e}")),
            }
        }
        // Leave the resolver's own timeout room to report inside the check's deadline.
        let budget = ctx.remaining().mul_f64(0.8).max(Duration::from_millis(100));
        let resolver = self.resolver.clone().with_timeout(budget);
        let mut resolved = Vec::new();
        for (name, result) in resolver.resolve_each_blocking(&parsed) {
            match result {
                // The value is dropped (and zeroed) right here.
                Ok(_secret) => resolved.push(name),
                Err(e) => problems.push(format!("{name}: {e}")),
            }
        }
        let names: Vec<&String> = self.refs.keys().collect();
        let schemes: BTreeMap<&String, &str> =
            parsed.iter().map(|(n, r)| (n, r.scheme())).collect();
        let data = json!({"names": names, "schemes": schemes, "resolved": resolved});
        if problems.is_empty() {
            Outcome::pass(format!(
                "{} secret(s) resolve: {} (values not shown)",
                resolved.len(),
                resolved.join(", ")
            ))
            .with_data(data)
        } else {
            Outcome::fail(
                format!(
                    "{} of {} secret(s) do not resolve: {}",
                    problems.len(),
                    self.refs.len(),
                    problems.join("; ")
                ),
                "set the variables / sign in to the secret store (op signin, aws sso login) / fix the references in [service].secrets",
            )
            .with_data(data)
        }
    }
}
