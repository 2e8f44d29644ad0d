//! Handing secrets to a service: environment variables of a child process, and a directory of
//! credential files for systemd's `LoadCredential=`. (Env files are in [`crate::envfile`].)

use std::fs::{self, DirBuilder};
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::Path;

use crate::reference::check_env_name;
use crate::{Secret, SecretError};

/// Sets secrets as environment variables of a child process (never as arguments).
///
/// Implemented for [`std::process::Command`] and [`tokio::process::Command`]. The name must be a
/// portable variable name and the value must not contain a NUL byte. Note that the standard
/// library keeps its own (not zeroed) copy of the environment it will pass to the child.
///
/// ```
/// use secret_refs::{CommandSecretExt, Secret};
/// let token = Secret::new("t0ken-value");
/// let mut cmd = std::process::Command::new("env");
/// cmd.secret_env("API_TOKEN", &token)?;
/// # Ok::<(), secret_refs::SecretError>(())
/// ```
pub trait CommandSecretExt {
    /// Sets one variable.
    ///
    /// # Errors
    /// [`SecretError::InvalidName`] or [`SecretError::Undeliverable`] (NUL in the value).
    fn secret_env(&mut self, name: &str, secret: &Secret) -> Result<&mut Self, SecretError>;

    /// Sets several variables, such as the map from
    /// [`Resolver::resolve_all`](crate::Resolver::resolve_all) (`cmd.secret_envs(&map)`).
    ///
    /// # Errors
    /// As [`secret_env`](Self::secret_env); nothing is set if any entry is refused.
    fn secret_envs<'a, I, K>(&mut self, secrets: I) -> Result<&mut Self, SecretError>
    where
        I: IntoIterator<Item = (K, &'a Secret)>,
        K: AsRef<str>,
    {
        let secrets: Vec<(K, &Secret)> = secrets.into_iter().collect();
        for (name, secret) in &secrets {
            check_env_entry(name.as_ref(), secret, "an environment variable")?;
        }
        for (name, secret) in &secrets {
            self.secret_env(name.as_ref(), secret)?;
        }
        Ok(self)
    }
}

pub(crate) fn check_env_entry(
    name: &str,
    secret: &Secret,
    how: &'static str,
) -> Result<(), SecretError> {
    check_env_name(name).map_err(|reason| SecretError::InvalidName {
        kind: "environment variable",
        name: name.to_owned(),
        reason,
    })?;
    if secret.expose_secret().contains('\0') {
        return Err(SecretError::Undeliverable {
            name: name.to_owned(),
            how,
            reason: "the value contains a NUL byte",
        });
    }
    Ok(())
}

impl CommandSecretExt for std::process::Command {
    fn secret_env(&mut self, name: &str, secret: &Secret) -> Result<&mut Self, SecretError> {
        check_env_entry(name, secret, "an environment variable")?;
        Ok(self.env(name, secret.expose_secret()))
    }
}

impl CommandSecretExt for tokio::process::Command {
    fn secret_env(&mut self, name: &str, secret: &Secret) -> Result<&mut Self, SecretError> {
        check_env_entry(name, secret, "an environment variable")?;
        Ok(self.env(name, secret.expose_secret()))
    }
}

/// Writes `bytes` to `path` atomically with exactly `mode`: a temp file in the same directory
/// (created with `mode`), fsync, rename over `path`, fsync the directory.
pub(crate) fn atomic_write(path: &Path, bytes: &[u8], mode: u32) -> Result<(), SecretError> {
    host_util::fs::write_atomic(path, bytes, mode).map_err(|source| SecretError::Io {
        action: "write",
        path: path.to_path_buf(),
        error: source,
    })
}

/// Checks a systemd credential name: `[A-Za-z0-9_.-]`, not starting with `.`, at most 255 bytes.
fn check_credential_name(name: &str) -> Result<(), SecretError> {
    let reason = if name.is_empty() {
        Some("the name is empty")
    } else if name.len() > 255 {
        Some("the name is longer than 255 bytes")
    } else if name.starts_with('.') {
        Some("the name starts with `.`")
    } else if !name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c))
    {
        Some("a credential name has only letters, digits, `_`, `.` and `-`")
    } else {
        None
    };
    match reason {
        Some(reason) => Err(SecretError::InvalidName {
            kind: "credential",
            name: name.to_owned(),
            reason,
        }),
        None => Ok(()),
    }
}

/// Writes one file per secret into `dir` for systemd's `LoadCredential=NAME:DIR/NAME` (the service
/// then reads `$CREDENTIALS_DIRECTORY/NAME`).
///
/// `dir` is created if needed and set to mode 0700; each file holds exactly the value (no trailing
/// newline), has mode 0600 and is written atomically. Other files in `dir` are left alone. All
/// names are checked before anything is written.
///
/// ```
/// use secret_refs::{write_credentials_dir, Secret};
/// let dir = tempfile::tempdir().unwrap();
/// let creds = dir.path().join("creds");
/// write_credentials_dir(&creds, &[("api-key", &Secret::new("t0ken"))])?;
/// assert_eq!(std::fs::read_to_string(creds.join("api-key")).unwrap(), "t0ken");
/// # Ok::<(), secret_refs::SecretError>(())
/// ```
///
/// # Errors
/// [`SecretError::InvalidName`] for a bad or repeated name, [`SecretError::Io`] for the filesystem.
#[tracing::instrument(skip_all, fields(dir = %dir.display(), count = secrets.len()))]
pub fn write_credentials_dir(dir: &Path, secrets: &[(&str, &Secret)]) -> Result<(), SecretError> {
    for (i, (name, _)) in secrets.iter().enumerate() {
        check_credential_name(name)?;
        if secrets[..i].iter().any(|(other, _)| other == name) {
            return Err(SecretError::InvalidName {
                kind: "credential",
                name: (*name).to_owned(),
                reason: "the name appears twice",
            });
        }
    }
    let io = |action: &'static str| {
        move |source| SecretError::Io {
            action,
            path: dir.to_path_buf(),
            error: source,
        }
    };
    DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(io("create credentials directory"))?;
    fs::set_permissions(dir, fs::Permissions::from_mode(0o700))
        .map_err(io("set the mode of credentials directory"))?;
    for (name, secret) in secrets {
        atomic_write(&dir.join(name), secret.expose_secret().as_bytes(), 0o600)?;
    }
    tracing::debug!("wrote credentials");
    Ok(())
}
