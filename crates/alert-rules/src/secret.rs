//! Secret values in sources and notifiers, written as the rest of the manifest writes them: a
//! secret-refs reference (`env:NAME`, `file:/path`, `op://…`, `exec:…`) with an optional
//! literal prefix, `{ secret = "env:HUB_TOKEN", prefix = "Bearer " }`, as a `[[probe]]`
//! header is.
//!
//! The older form, `${VAR}` inside a header value or a webhook URL, is still read (its
//! variables are filled from the environment when the request is made) and is deprecated:
//! loading it logs a warning that names the variables and the reference to write instead,
//! never a value.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use secret_refs::{Resolver, Secret, SecretRef};
use serde::Deserialize;

/// How long a resolved value is reused before the reference is resolved again: a rotated
/// token is picked up within this, and an `exec:` or `op://` reference does not run a program
/// for every sample.
const REUSE_FOR: Duration = Duration::from_secs(60);

/// `{ secret = "env:NAME", prefix = "…" }` as written. The reference is parsed by
/// [`RawSecret::parse`] rather than by serde, so that a bad one is refused with secret-refs'
/// own message and the key (an untagged enum would only say that nothing matched).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawSecret {
    secret: String,
    #[serde(default)]
    prefix: String,
}

impl RawSecret {
    /// The checked reference; an error names `key` (`headers.Authorization`, `webhook`).
    pub(crate) fn parse(self, key: &str) -> Result<SecretText, String> {
        let secret = SecretRef::parse(&self.secret).map_err(|e| format!("{key}.secret: {e}"))?;
        Ok(SecretText::new(secret, self.prefix))
    }
}

/// A secret reference and the literal text sent before its value.
#[derive(Clone)]
pub(crate) struct SecretText {
    secret: SecretRef,
    prefix: String,
    cache: Arc<Mutex<Option<(Instant, Secret)>>>,
}

impl PartialEq for SecretText {
    fn eq(&self, other: &Self) -> bool {
        self.secret == other.secret && self.prefix == other.prefix
    }
}

impl Eq for SecretText {}

impl SecretText {
    /// `prefix` followed by the value of `secret`.
    pub(crate) fn new(secret: SecretRef, prefix: impl Into<String>) -> Self {
        SecretText {
            secret,
            prefix: prefix.into(),
            cache: Arc::default(),
        }
    }

    /// The reference, as it may be shown (`env:HUB_TOKEN`; a `literal:` one shows `***`).
    pub(crate) fn reference(&self) -> String {
        self.secret.to_string()
    }

    /// The literal prefix (not secret).
    pub(crate) fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The prefix and the secret's value. An error names the reference, never a value.
    pub(crate) async fn resolve(&self) -> Result<String, String> {
        let cached = self
            .cache
            .lock()
            .ok()
            .and_then(|c| c.clone())
            .filter(|(at, _)| at.elapsed() < REUSE_FOR);
        let secret = match cached {
            Some((_, secret)) => secret,
            None => {
                let secret = Resolver::new()
                    .resolve(&self.secret)
                    .await
                    .map_err(|e| e.to_string())?;
                if let Ok(mut cache) = self.cache.lock() {
                    *cache = Some((Instant::now(), secret.clone()));
                }
                secret
            }
        };
        Ok(format!("{}{}", self.prefix, secret.expose_secret()))
    }
}

/// The variables a `${VAR}` template names, in order (empty when it names none).
pub(crate) fn template_vars(text: &str) -> Vec<&str> {
    let mut vars = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find("${") {
        let after = &rest[start + 2..];
        let Some(end) = after.find('}') else { break };
        vars.push(&after[..end]);
        rest = &after[end + 1..];
    }
    vars
}

/// Replaces each `${VAR}` of the deprecated template form with the variable's value; `what`
/// names the header or URL in the error for a missing variable.
pub(crate) fn expand_env(text: &str, what: &str) -> Result<String, String> {
    let mut out = String::new();
    let mut rest = text;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let end = after
            .find('}')
            .ok_or_else(|| format!("unterminated ${{ in {what}"))?;
        let var = &after[..end];
        let value = std::env::var(var)
            .map_err(|_| format!("environment variable {var} (used in {what}) is not set"))?;
        out.push_str(&value);
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

/// Logs, when `text` (the value of `key`) uses the deprecated `${VAR}` form, that it fills
/// those variables from the environment, with the reference to write instead (`instead` is
/// given the first variable's name). Only variable names are shown, never a value.
pub(crate) fn warn_if_template(key: &str, text: &str, instead: impl FnOnce(&str) -> String) {
    let vars = template_vars(text);
    let Some(first) = vars.first() else { return };
    let instead = instead(first);
    let names = vars
        .iter()
        .map(|v| format!("${{{v}}}"))
        .collect::<Vec<_>>()
        .join(", ");
    tracing::warn!(
        "`{key}` fills {names} from the environment: the `${{VAR}}` form is deprecated and will \
         go; write {instead}"
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn template_variables_are_listed_and_expanded() {
        assert_eq!(template_vars("a ${X} b ${Y_2}"), ["X", "Y_2"]);
        assert!(template_vars("plain").is_empty());
        let value = std::env::var("PATH").unwrap();
        assert_eq!(
            expand_env("p=${PATH}", "header `X`").unwrap(),
            format!("p={value}")
        );
        let err = expand_env("${CUTOVER_ALERTS_SURELY_UNSET_VAR}", "header `X`").unwrap_err();
        assert!(err.contains("CUTOVER_ALERTS_SURELY_UNSET_VAR") && err.contains("header `X`"));
        assert!(
            expand_env("${OPEN", "header `X`")
                .unwrap_err()
                .contains("unterminated")
        );
    }

    #[tokio::test]
    async fn a_reference_resolves_with_its_prefix_and_errors_name_only_the_reference() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("token");
        std::fs::write(&file, "t0k3n-canary\n").unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
        }
        let reference = SecretRef::parse(&format!("file:{}", file.display())).unwrap();
        let text = SecretText::new(reference, "Bearer ");
        assert_eq!(text.resolve().await.unwrap(), "Bearer t0k3n-canary");
        // Within REUSE_FOR the value is reused, not read again; a clone shares it.
        std::fs::write(&file, "rotated\n").unwrap();
        assert_eq!(text.clone().resolve().await.unwrap(), "Bearer t0k3n-canary");
        // Once it is older than that, the reference is resolved again.
        if let Ok(mut cache) = text.cache.lock()
            && let Some((at, _)) = cache.as_mut()
        {
            *at -= REUSE_FOR;
        }
        assert_eq!(text.resolve().await.unwrap(), "Bearer rotated");

        let missing = SecretText::new(
            SecretRef::parse("env:CUTOVER_ALERTS_SURELY_UNSET_TOKEN").unwrap(),
            "",
        );
        let err = missing.resolve().await.unwrap_err();
        assert!(err.contains("CUTOVER_ALERTS_SURELY_UNSET_TOKEN"), "{err}");
    }
}
