//! The built-in providers: `env`, `file`, `op`, `aws-sm`, `exec`, `literal`.

use std::fs::File;
use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use zeroize::{Zeroize, Zeroizing};

use crate::cli::{MAX_VALUE_BYTES, bytes_to_secret};
use crate::{Provider, ResolveContext, Secret, SecretError, SecretRef};

fn wrong_scheme(provider: &str, reference: &SecretRef) -> SecretError {
    SecretError::Provider {
        reference: reference.to_string(),
        message: format!("the `{provider}` provider was handed a reference of another scheme"),
    }
}

/// `env:NAME`: the resolver's environment overlay, then the process environment.
#[derive(Debug, Default, Clone, Copy)]
pub struct EnvProvider;

impl Provider for EnvProvider {
    fn scheme(&self) -> &str {
        "env"
    }

    fn resolve(
        &self,
        reference: &SecretRef,
        ctx: &ResolveContext<'_>,
    ) -> Result<Secret, SecretError> {
        let SecretRef::Env { name } = reference else {
            return Err(wrong_scheme("env", reference));
        };
        let value = ctx.var(name).ok_or_else(|| SecretError::EnvNotSet {
            reference: reference.to_string(),
            name: name.clone(),
        })?;
        match value.into_string() {
            Ok(s) => Ok(Secret::new(s)),
            Err(os) => {
                os.into_encoded_bytes().zeroize();
                Err(SecretError::NotUtf8 {
                    reference: reference.to_string(),
                })
            }
        }
    }
}

/// `file:/path[?allow_shared=true]`: the file's contents with one trailing newline removed.
///
/// The permission check is made on the opened file (no race with a swap of the path), and refuses
/// any group or other permission bit unless the reference says `allow_shared=true`. Running as
/// root does not change the check: the point is who else can read it.
#[derive(Debug, Default, Clone, Copy)]
pub struct FileProvider;

impl Provider for FileProvider {
    fn scheme(&self) -> &str {
        "file"
    }

    fn resolve(
        &self,
        reference: &SecretRef,
        _ctx: &ResolveContext<'_>,
    ) -> Result<Secret, SecretError> {
        let SecretRef::File { path, allow_shared } = reference else {
            return Err(wrong_scheme("file", reference));
        };
        read_secret_file(path, *allow_shared, reference)
    }
}

fn read_secret_file(
    path: &Path,
    allow_shared: bool,
    reference: &SecretRef,
) -> Result<Secret, SecretError> {
    let io = |action: &'static str| {
        move |source| SecretError::Io {
            action,
            path: path.to_path_buf(),
            error: source,
        }
    };
    let file = File::open(path).map_err(io("open secret file"))?;
    let meta = file.metadata().map_err(io("inspect secret file"))?;
    if !meta.is_file() {
        return Err(SecretError::Io {
            action: "read secret file",
            path: path.to_path_buf(),
            error: std::io::Error::other("not a regular file"),
        });
    }
    let mode = meta.mode() & 0o7777;
    if mode & 0o077 != 0 && !allow_shared {
        return Err(SecretError::FileTooOpen {
            path: path.to_path_buf(),
            mode,
        });
    }
    let limit = MAX_VALUE_BYTES as u64;
    if meta.len() > limit {
        return Err(SecretError::TooLarge {
            reference: reference.to_string(),
            limit: MAX_VALUE_BYTES,
        });
    }
    // Sized up front (plus one byte to notice growth) so that reading never reallocates.
    let capacity = usize::try_from(meta.len()).unwrap_or(MAX_VALUE_BYTES) + 1;
    let mut bytes = Zeroizing::new(Vec::with_capacity(capacity));
    file.take(limit + 1)
        .read_to_end(&mut bytes)
        .map_err(io("read secret file"))?;
    if bytes.len() > MAX_VALUE_BYTES {
        return Err(SecretError::TooLarge {
            reference: reference.to_string(),
            limit: MAX_VALUE_BYTES,
        });
    }
    bytes_to_secret(bytes, reference)
}

/// `op://vault/item/field`: `op read op://vault/item/field` (1Password CLI).
///
/// The reference is in argv (it names the secret, it is not the value); the value comes back on
/// standard output, one trailing newline removed.
#[derive(Debug, Default, Clone, Copy)]
pub struct OnePasswordProvider;

impl Provider for OnePasswordProvider {
    fn scheme(&self) -> &str {
        "op"
    }

    fn resolve(
        &self,
        reference: &SecretRef,
        ctx: &ResolveContext<'_>,
    ) -> Result<Secret, SecretError> {
        let SecretRef::OnePassword { reference: op_ref } = reference else {
            return Err(wrong_scheme("op", reference));
        };
        ctx.run(reference, "op", &["read", op_ref])
    }
}

/// `aws-sm://ID[#key]`: `aws secretsmanager get-secret-value --secret-id ID --query SecretString
/// --output text`, then, with `#key`, the value at `key` of the secret's JSON object (a string as
/// is; a number or boolean in its JSON form).
///
/// Region and credentials come from the AWS CLI's usual environment (`AWS_REGION`,
/// `AWS_PROFILE`, …), which a resolver can set for its children with
/// [`Resolver::with_env`](crate::Resolver::with_env). A secret without a `SecretString` (a binary
/// secret), which the CLI prints as `None`, is refused.
#[derive(Debug, Default, Clone, Copy)]
pub struct AwsSecretsManagerProvider;

impl Provider for AwsSecretsManagerProvider {
    fn scheme(&self) -> &str {
        "aws-sm"
    }

    fn resolve(
        &self,
        reference: &SecretRef,
        ctx: &ResolveContext<'_>,
    ) -> Result<Secret, SecretError> {
        let SecretRef::AwsSecretsManager {
            secret_id,
            json_key,
        } = reference
        else {
            return Err(wrong_scheme("aws-sm", reference));
        };
        let text = ctx.run(
            reference,
            "aws",
            &[
                "secretsmanager",
                "get-secret-value",
                "--secret-id",
                secret_id,
                "--query",
                "SecretString",
                "--output",
                "text",
            ],
        )?;
        if text.expose_secret() == "None" {
            return Err(SecretError::Provider {
                reference: reference.to_string(),
                message: "the secret has no SecretString (binary secrets are not supported)"
                    .to_owned(),
            });
        }
        match json_key {
            None => Ok(text),
            Some(key) => json_field(&text, key, reference),
        }
    }
}

/// Takes `key` from a JSON object held in a secret, zeroing every string of the parsed tree.
fn json_field(text: &Secret, key: &str, reference: &SecretRef) -> Result<Secret, SecretError> {
    let fail = |reason: String| SecretError::JsonKey {
        reference: reference.to_string(),
        key: key.to_owned(),
        reason,
    };
    let mut tree: serde_json::Value = serde_json::from_str(text.expose_secret()).map_err(|e| {
        // Only the position: serde_json's messages can quote parts of the input.
        fail(format!(
            "the secret is not valid JSON (line {}, column {})",
            e.line(),
            e.column()
        ))
    })?;
    let result = match &mut tree {
        serde_json::Value::Object(map) => match map.get_mut(key) {
            Some(serde_json::Value::String(s)) => Ok(Secret::new(std::mem::take(s))),
            Some(v @ (serde_json::Value::Number(_) | serde_json::Value::Bool(_))) => {
                Ok(Secret::new(v.to_string()))
            }
            Some(_) => Err(fail(
                "the value at that key is not a string, number or boolean".to_owned(),
            )),
            None => Err(fail(format!(
                "the secret's JSON object has no such key (it has {} keys)",
                map.len()
            ))),
        },
        _ => Err(fail("the secret is JSON but not an object".to_owned())),
    };
    zeroize_json(&mut tree);
    result
}

fn zeroize_json(value: &mut serde_json::Value) {
    match value {
        serde_json::Value::String(s) => s.zeroize(),
        serde_json::Value::Array(items) => items.iter_mut().for_each(zeroize_json),
        serde_json::Value::Object(map) => {
            for (_, v) in map.iter_mut() {
                zeroize_json(v);
            }
        }
        _ => {}
    }
}

/// `exec:["cmd","arg"]` or `exec:cmd arg`: the program's standard output, one trailing newline
/// removed. No shell is involved; write `exec:["sh","-c","…"]` to use one.
#[derive(Debug, Default, Clone, Copy)]
pub struct ExecProvider;

impl Provider for ExecProvider {
    fn scheme(&self) -> &str {
        "exec"
    }

    fn resolve(
        &self,
        reference: &SecretRef,
        ctx: &ResolveContext<'_>,
    ) -> Result<Secret, SecretError> {
        let SecretRef::Exec { argv } = reference else {
            return Err(wrong_scheme("exec", reference));
        };
        let Some((program, args)) = argv.split_first() else {
            return Err(SecretError::InvalidReference {
                reference: reference.to_string(),
                reason: "`exec:` needs a program".to_owned(),
            });
        };
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        ctx.run(reference, program, &args)
    }
}

/// `literal:VALUE`: the value itself.
#[derive(Debug, Default, Clone, Copy)]
pub struct LiteralProvider;

impl Provider for LiteralProvider {
    fn scheme(&self) -> &str {
        "literal"
    }

    fn resolve(
        &self,
        reference: &SecretRef,
        _ctx: &ResolveContext<'_>,
    ) -> Result<Secret, SecretError> {
        match reference {
            SecretRef::Literal { value } => Ok(value.clone()),
            _ => Err(wrong_scheme("literal", reference)),
        }
    }
}
