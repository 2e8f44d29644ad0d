//! The `[preflight]` table of cutover.toml (this crate owns its serde types) and how it becomes
//! checks.
//!
//! ```toml
//! [preflight]
//! ignore = ["memory"]              # ids whose failures become warnings ("all" for every one)
//!
//! [[preflight.check]]
//! kind = "port-free"               # a kind from `cutover-preflight --list`
//! id = "app-port"                  # optional; defaults to the kind
//! addr = "127.0.0.1:7000"
//! ```
//!
//! Every entry accepts `id` and `timeout` (`"30s"`) besides its kind's keys; unknown keys are
//! errors. Relative paths resolve against [`BuildContext::base_dir`] (the manifest's directory).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;

use crate::checks::{
    Artifact, CertSource, CommandCheck, CpuCount, DirWritable, DiskFree, Exposure, FileModeCheck,
    FilesExist, GitClean, InodesFree, Memory, NotTracked, OpenFilesLimit, PortFree, RuntimeVersion,
    SecretsResolve, TlsCert,
};
use crate::units::{FileMode, Level, Size};
use crate::{Check, PreflightError};

/// The `[preflight]` table.
#[derive(Debug, Clone, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PreflightConfig {
    /// Ids whose failures become warnings; `"all"` ignores every failure.
    #[serde(default)]
    pub ignore: Vec<String>,
    /// The checks (`[[preflight.check]]`). When empty, the default set runs.
    #[serde(default)]
    pub check: Vec<CheckSpec>,
}

/// One `[[preflight.check]]` entry, chosen by its `kind`.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(tag = "kind", rename_all = "kebab-case")]
#[non_exhaustive]
pub enum CheckSpec {
    /// `git-clean`.
    GitClean(GitCleanSpec),
    /// `command` (a test suite).
    Command(CommandSpec),
    /// `build`.
    Build(CommandSpec),
    /// `artifact`.
    Artifact(ArtifactSpec),
    /// `files-exist`.
    FilesExist(FilesExistSpec),
    /// `secrets`.
    Secrets(SecretsSpec),
    /// `disk-free`.
    DiskFree(SpaceSpec),
    /// `memory`.
    Memory(MemorySpec),
    /// `runtime-version`.
    RuntimeVersion(RuntimeVersionSpec),
    /// `port-free`.
    PortFree(PortFreeSpec),
    /// `exposure`.
    Exposure(ExposureSpec),
    /// `dir-writable`.
    DirWritable(DirWritableSpec),
    /// `file-mode`.
    FileMode(FileModeSpec),
    /// `not-tracked`.
    NotTracked(NotTrackedSpec),
    /// `tls-cert`.
    TlsCert(TlsCertSpec),
    /// `cpu-count`.
    CpuCount(CountSpec),
    /// `open-files-limit`.
    OpenFilesLimit(CountSpec),
    /// `inodes-free`.
    InodesFree(SpaceSpec),
}

/// Keys every kind accepts.
macro_rules! spec {
    ($(#[$meta:meta])* $name:ident { $($(#[$fmeta:meta])* $field:ident : $ty:ty),* $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Default, Deserialize, schemars::JsonSchema)]
        #[serde(deny_unknown_fields)]
        pub struct $name {
            /// The check's id (default: the kind).
            #[serde(default)]
            pub id: Option<String>,
            /// How long the check may take (`"30s"`).
            #[serde(default, with = "humantime_serde")]
            #[schemars(with = "Option<String>")]
            pub timeout: Option<Duration>,
            $($(#[$fmeta])* pub $field: $ty,)*
        }
    };
}

spec!(
    /// Keys of `git-clean`.
    GitCleanSpec {
        /// The work tree (default: the manifest's directory).
        #[serde(default)]
        path: Option<PathBuf>,
        /// Whether untracked files count as dirty.
        #[serde(default)]
        untracked: bool,
    }
);

spec!(
    /// Keys of `command` and `build`.
    CommandSpec {
        /// The argv (`["cargo", "test"]`); no shell unless you write `["sh", "-c", "..."]`.
        command: Vec<String>,
        /// The working directory (default: the manifest's directory).
        #[serde(default)]
        dir: Option<PathBuf>,
        /// Extra environment variables.
        #[serde(default)]
        env: BTreeMap<String, String>,
    }
);

spec!(
    /// Keys of `artifact`.
    ArtifactSpec {
        /// The file.
        path: PathBuf,
        /// Whether an execute bit is required.
        #[serde(default)]
        executable: bool,
        /// Smallest acceptable size.
        #[serde(default)]
        min_bytes: Option<Size>,
        /// Largest acceptable size.
        #[serde(default)]
        max_bytes: Option<Size>,
    }
);

spec!(
    /// Keys of `files-exist`.
    FilesExistSpec {
        /// Paths that must all exist.
        #[serde(default)]
        all_of: Vec<PathBuf>,
        /// Paths of which at least one must exist.
        #[serde(default)]
        any_of: Vec<PathBuf>,
    }
);

spec!(
    /// Keys of `secrets` (the references come from `[service].secrets`).
    SecretsSpec {}
);

spec!(
    /// Keys of `disk-free` and `inodes-free`.
    SpaceSpec {
        /// A path on the filesystem to measure (default: the manifest's directory).
        #[serde(default)]
        path: Option<PathBuf>,
        /// Warn below this (size or percentage; `"0%"` never warns).
        #[serde(default)]
        warn_below: Option<Level>,
        /// Fail below this (size or percentage; `"0%"` never fails).
        #[serde(default)]
        fail_below: Option<Level>,
    }
);

spec!(
    /// Keys of `memory`.
    MemorySpec {
        /// Warn below this (size or percentage of total).
        #[serde(default)]
        warn_below: Option<Level>,
        /// Fail below this (size or percentage of total).
        #[serde(default)]
        fail_below: Option<Level>,
    }
);

spec!(
    /// Keys of `runtime-version`.
    RuntimeVersionSpec {
        /// The argv printing the version (`["bun", "--version"]`).
        command: Vec<String>,
        /// A semver requirement (`">=1.1, <2"`).
        #[serde(default)]
        #[schemars(with = "Option<String>")]
        require: Option<semver::VersionReq>,
    }
);

spec!(
    /// Keys of `port-free`.
    PortFreeSpec {
        /// `host:port` the service will bind.
        addr: String,
    }
);

spec!(
    /// Keys of `exposure`.
    ExposureSpec {
        /// The port of the running service whose listening sockets are checked.
        port: u16,
    }
);

spec!(
    /// Keys of `dir-writable`.
    DirWritableSpec {
        /// The directory.
        path: PathBuf,
        /// Whether a missing directory may be created (default true).
        #[serde(default)]
        create: Option<bool>,
    }
);

spec!(
    /// Keys of `file-mode`.
    FileModeSpec {
        /// The file.
        path: PathBuf,
        /// The most permissive mode allowed (default `"0600"`).
        #[serde(default)]
        max_mode: Option<FileMode>,
        /// Whether a missing file fails (default true) or skips.
        #[serde(default)]
        required: Option<bool>,
    }
);

spec!(
    /// Keys of `not-tracked`.
    NotTrackedSpec {
        /// The repository (default: the manifest's directory).
        #[serde(default)]
        repo: Option<PathBuf>,
        /// Paths relative to the repository (`.env.production`, `backups/`).
        paths: Vec<String>,
    }
);

spec!(
    /// Keys of `tls-cert` (exactly one of `path` and `addr`).
    TlsCertSpec {
        /// A PEM certificate file.
        #[serde(default)]
        path: Option<PathBuf>,
        /// A live endpoint, `host:port`.
        #[serde(default)]
        addr: Option<String>,
        /// The name it must be valid for (default: the host of `addr`).
        #[serde(default)]
        name: Option<String>,
        /// Warn when it expires within this many days (default 30).
        #[serde(default)]
        warn_days: Option<u64>,
        /// Fail when it expires within this many days (default 7).
        #[serde(default)]
        fail_days: Option<u64>,
        /// A PEM file of the CA certificates to trust (implies `verify`).
        #[serde(default)]
        ca: Option<PathBuf>,
        /// Judge the chain's trust (default: true for `addr` or with `ca`, false for `path`).
        #[serde(default)]
        verify: Option<bool>,
    }
);

spec!(
    /// Keys of `cpu-count` and `open-files-limit`.
    CountSpec {
        /// Warn below this count.
        #[serde(default)]
        warn_below: Option<u64>,
        /// Fail below this count.
        #[serde(default)]
        fail_below: Option<u64>,
    }
);

/// What building checks from specs needs besides the specs.
#[derive(Debug, Clone, Default)]
pub struct BuildContext {
    /// Relative paths resolve against this directory (the manifest's).
    pub base_dir: PathBuf,
    /// `[service].secrets`: variable name to reference, for the `secrets` check.
    pub secrets: BTreeMap<String, String>,
    /// Environment added to every `command` and `build` check (the deploy pipeline marks its
    /// children with it, so that `recover` can find one its killed deploy left running); a
    /// check's own `env` wins.
    pub env: BTreeMap<String, String>,
}

impl BuildContext {
    fn resolve(&self, path: &Path) -> PathBuf {
        if path.is_absolute() || self.base_dir.as_os_str().is_empty() {
            path.to_path_buf()
        } else {
            self.base_dir.join(path)
        }
    }

    fn resolve_or_base(&self, path: Option<&PathBuf>) -> PathBuf {
        match path {
            Some(p) => self.resolve(p),
            None if self.base_dir.as_os_str().is_empty() => PathBuf::from("."),
            None => self.base_dir.clone(),
        }
    }
}

impl CheckSpec {
    /// The kind, as written in `kind = "..."`.
    pub fn kind(&self) -> &'static str {
        match self {
            CheckSpec::GitClean(_) => "git-clean",
            CheckSpec::Command(_) => "command",
            CheckSpec::Build(_) => "build",
            CheckSpec::Artifact(_) => "artifact",
            CheckSpec::FilesExist(_) => "files-exist",
            CheckSpec::Secrets(_) => "secrets",
            CheckSpec::DiskFree(_) => "disk-free",
            CheckSpec::Memory(_) => "memory",
            CheckSpec::RuntimeVersion(_) => "runtime-version",
            CheckSpec::PortFree(_) => "port-free",
            CheckSpec::Exposure(_) => "exposure",
            CheckSpec::DirWritable(_) => "dir-writable",
            CheckSpec::FileMode(_) => "file-mode",
            CheckSpec::NotTracked(_) => "not-tracked",
            CheckSpec::TlsCert(_) => "tls-cert",
            CheckSpec::CpuCount(_) => "cpu-count",
            CheckSpec::OpenFilesLimit(_) => "open-files-limit",
            CheckSpec::InodesFree(_) => "inodes-free",
        }
    }

    fn common(&self) -> (Option<&String>, Option<Duration>) {
        macro_rules! pick {
            ($s:expr) => {
                ($s.id.as_ref(), $s.timeout)
            };
        }
        match self {
            CheckSpec::GitClean(s) => pick!(s),
            CheckSpec::Command(s) | CheckSpec::Build(s) => pick!(s),
            CheckSpec::Artifact(s) => pick!(s),
            CheckSpec::FilesExist(s) => pick!(s),
            CheckSpec::Secrets(s) => pick!(s),
            CheckSpec::DiskFree(s) | CheckSpec::InodesFree(s) => pick!(s),
            CheckSpec::Memory(s) => pick!(s),
            CheckSpec::RuntimeVersion(s) => pick!(s),
            CheckSpec::PortFree(s) => pick!(s),
            CheckSpec::Exposure(s) => pick!(s),
            CheckSpec::DirWritable(s) => pick!(s),
            CheckSpec::FileMode(s) => pick!(s),
            CheckSpec::NotTracked(s) => pick!(s),
            CheckSpec::TlsCert(s) => pick!(s),
            CheckSpec::CpuCount(s) | CheckSpec::OpenFilesLimit(s) => pick!(s),
        }
    }

    /// The id: the explicit `id`, else the kind.
    pub fn id(&self) -> String {
        self.common()
            .0
            .cloned()
            .unwrap_or_else(|| self.kind().to_owned())
    }

    /// Builds the check. `index` is the entry's position, for messages.
    ///
    /// # Errors
    /// [`PreflightError::InvalidCheck`] for a bad id, an empty command or a `tls-cert` with
    /// neither or both of `path` and `addr`.
    pub fn build(
        &self,
        index: usize,
        ctx: &BuildContext,
    ) -> Result<Arc<dyn Check>, PreflightError> {
        let id = self.id();
        let invalid = |key: &str, message: &str| PreflightError::InvalidCheck {
            index,
            id: id.clone(),
            key: key.to_owned(),
            message: message.to_owned(),
        };
        if !is_kebab_case(&id) {
            return Err(invalid(
                "id",
                "must be kebab-case: lower-case letters, digits and single dashes, such as `app-port`",
            ));
        }
        let timeout = self.common().1;
        let t = |default: Duration| timeout.unwrap_or(default);
        let check: Arc<dyn Check> = match self {
            CheckSpec::GitClean(s) => Arc::new(
                GitClean::new(&id, ctx.resolve_or_base(s.path.as_ref()))
                    .untracked(s.untracked)
                    .with_timeout(t(crate::DEFAULT_TIMEOUT)),
            ),
            CheckSpec::Command(s) | CheckSpec::Build(s) => {
                if s.command.is_empty() || s.command[0].is_empty() {
                    return Err(invalid(
                        "command",
                        "must name a program, such as [\"cargo\", \"test\"]",
                    ));
                }
                let check = if matches!(self, CheckSpec::Build(_)) {
                    CommandCheck::build(&id, s.command.clone())
                } else {
                    CommandCheck::new(&id, s.command.clone())
                };
                Arc::new(
                    check
                        .dir(ctx.resolve_or_base(s.dir.as_ref()))
                        .env({
                            let mut env = ctx.env.clone();
                            env.extend(s.env.clone());
                            env
                        })
                        .with_timeout(t(crate::DEFAULT_COMMAND_TIMEOUT)),
                )
            }
            CheckSpec::Artifact(s) => Arc::new(
                Artifact::new(&id, ctx.resolve(&s.path))
                    .executable(s.executable)
                    .size_between(s.min_bytes, s.max_bytes)
                    .with_timeout(t(crate::DEFAULT_TIMEOUT)),
            ),
            CheckSpec::FilesExist(s) => {
                if s.all_of.is_empty() && s.any_of.is_empty() {
                    return Err(invalid("all_of", "or `any_of` must list at least one path"));
                }
                Arc::new(
                    FilesExist::new(
                        &id,
                        s.all_of.iter().map(|p| ctx.resolve(p)).collect(),
                        s.any_of.iter().map(|p| ctx.resolve(p)).collect(),
                    )
                    .with_timeout(t(crate::DEFAULT_TIMEOUT)),
                )
            }
            CheckSpec::Secrets(_) => Arc::new(
                SecretsResolve::new(&id, ctx.secrets.clone())
                    .with_timeout(t(crate::DEFAULT_TIMEOUT)),
            ),
            CheckSpec::DiskFree(s) => {
                let mut c = DiskFree::new(&id, ctx.resolve_or_base(s.path.as_ref()));
                if s.warn_below.is_some() {
                    c = c.warn_below(s.warn_below);
                }
                if s.fail_below.is_some() {
                    c = c.fail_below(s.fail_below);
                }
                Arc::new(c.with_timeout(t(crate::DEFAULT_TIMEOUT)))
            }
            CheckSpec::InodesFree(s) => {
                let mut c = InodesFree::new(&id, ctx.resolve_or_base(s.path.as_ref()));
                if s.warn_below.is_some() {
                    c = c.warn_below(s.warn_below);
                }
                if s.fail_below.is_some() {
                    c = c.fail_below(s.fail_below);
                }
                Arc::new(c.with_timeout(t(crate::DEFAULT_TIMEOUT)))
            }
            CheckSpec::Memory(s) => {
                let mut c = Memory::new(&id);
                if s.warn_below.is_some() {
                    c = c.warn_below(s.warn_below);
                }
                if s.fail_below.is_some() {
                    c = c.fail_below(s.fail_below);
                }
                Arc::new(c.with_timeout(t(crate::DEFAULT_TIMEOUT)))
            }
            CheckSpec::RuntimeVersion(s) => {
                if s.command.is_empty() || s.command[0].is_empty() {
                    return Err(invalid(
                        "command",
                        "must name a program, such as [\"bun\", \"--version\"]",
                    ));
                }
                let mut c = RuntimeVersion::new(&id, s.command.clone());
                if let Some(req) = &s.require {
                    c = c.require(req.clone());
                }
                Arc::new(c.with_timeout(t(crate::DEFAULT_TIMEOUT)))
            }
            CheckSpec::PortFree(s) => {
                if !s.addr.contains(':') {
                    return Err(invalid(
                        "addr",
                        "must be host:port, such as \"127.0.0.1:7000\"",
                    ));
                }
                Arc::new(PortFree::new(&id, s.addr.clone()).with_timeout(t(crate::DEFAULT_TIMEOUT)))
            }
            CheckSpec::Exposure(s) => {
                if s.port == 0 {
                    return Err(invalid("port", "must be the service's port, not 0"));
                }
                Arc::new(Exposure::new(&id, s.port).with_timeout(t(crate::DEFAULT_TIMEOUT)))
            }
            CheckSpec::DirWritable(s) => Arc::new(
                DirWritable::new(&id, ctx.resolve(&s.path))
                    .create(s.create.unwrap_or(true))
                    .with_timeout(t(crate::DEFAULT_TIMEOUT)),
            ),
            CheckSpec::FileMode(s) => Arc::new(
                FileModeCheck::new(&id, ctx.resolve(&s.path))
                    .max_mode(s.max_mode.unwrap_or(FileMode(0o600)))
                    .required(s.required.unwrap_or(true))
                    .with_timeout(t(crate::DEFAULT_TIMEOUT)),
            ),
            CheckSpec::NotTracked(s) => {
                if s.paths.is_empty() {
                    return Err(invalid("paths", "must list at least one path"));
                }
                Arc::new(
                    NotTracked::new(&id, ctx.resolve_or_base(s.repo.as_ref()), s.paths.clone())
                        .with_timeout(t(crate::DEFAULT_TIMEOUT)),
                )
            }
            CheckSpec::TlsCert(s) => {
                let source = match (&s.path, &s.addr) {
                    (Some(p), None) => CertSource::File(ctx.resolve(p)),
                    (None, Some(a)) if a.contains(':') => CertSource::Live(a.clone()),
                    (None, Some(_)) => {
                        return Err(invalid(
                            "addr",
                            "must be host:port, such as \"example.com:443\"",
                        ));
                    }
                    _ => {
                        return Err(invalid(
                            "path",
                            "or `addr` must be given, not both: a PEM file or a live host:port",
                        ));
                    }
                };
                let mut c = TlsCert::new(&id, source)
                    .days(s.warn_days.unwrap_or(30), s.fail_days.unwrap_or(7))
                    .with_timeout(t(crate::DEFAULT_TIMEOUT));
                if let Some(name) = &s.name {
                    c = c.name(name.clone());
                }
                if let Some(ca) = &s.ca {
                    c = c.ca(ctx.resolve(ca));
                }
                if let Some(verify) = s.verify {
                    c = c.verify(verify);
                }
                Arc::new(c)
            }
            CheckSpec::CpuCount(s) => Arc::new(
                CpuCount::new(&id)
                    .levels(s.warn_below.or(Some(2)), s.fail_below)
                    .with_timeout(t(crate::DEFAULT_TIMEOUT)),
            ),
            CheckSpec::OpenFilesLimit(s) => Arc::new(
                OpenFilesLimit::new(&id)
                    .levels(s.warn_below.or(Some(1024)), s.fail_below.or(Some(256)))
                    .with_timeout(t(crate::DEFAULT_TIMEOUT)),
            ),
        };
        Ok(check)
    }
}

fn is_kebab_case(id: &str) -> bool {
    !id.is_empty()
        && id.split('-').all(|part| {
            !part.is_empty()
                && part
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        })
}

impl PreflightConfig {
    /// The ignore list of this configuration.
    pub fn ignore_list(&self) -> crate::IgnoreList {
        crate::IgnoreList::from_ids(&self.ignore)
    }

    /// Builds every check, in order.
    ///
    /// # Errors
    /// The first entry that cannot be built, or a duplicate id.
    #[tracing::instrument(skip_all, fields(checks = self.check.len()))]
    pub fn build(&self, ctx: &BuildContext) -> Result<Vec<Arc<dyn Check>>, PreflightError> {
        let mut seen = BTreeSet::new();
        let mut checks = Vec::with_capacity(self.check.len());
        for (index, spec) in self.check.iter().enumerate() {
            let id = spec.id();
            if !seen.insert(id.clone()) {
                return Err(PreflightError::DuplicateId { index, id });
            }
            checks.push(spec.build(index, ctx)?);
        }
        Ok(checks)
    }
}

/// What the default set (no `[[preflight.check]]`) should cover.
#[derive(Debug, Clone, Default)]
pub struct DefaultSet {
    /// Whether the base directory is in a git work tree (adds `git-clean`).
    pub git: bool,
    /// The address the service will bind (adds `port-free`).
    pub addr: Option<String>,
    /// Whether the service declares secrets (adds `secrets`).
    pub secrets: bool,
}

impl DefaultSet {
    /// The default checks: git-clean (in a git work tree), disk-free, inodes-free, memory,
    /// cpu-count, open-files-limit, dir-writable on the base directory, port-free (with an
    /// address) and secrets (when declared), each with its default settings.
    pub fn config(&self) -> PreflightConfig {
        let mut check = Vec::new();
        if self.git {
            check.push(CheckSpec::GitClean(GitCleanSpec::default()));
        }
        check.push(CheckSpec::DiskFree(SpaceSpec::default()));
        check.push(CheckSpec::InodesFree(SpaceSpec::default()));
        check.push(CheckSpec::Memory(MemorySpec::default()));
        check.push(CheckSpec::CpuCount(CountSpec::default()));
        check.push(CheckSpec::OpenFilesLimit(CountSpec::default()));
        check.push(CheckSpec::DirWritable(DirWritableSpec {
            path: PathBuf::from("."),
            create: Some(false),
            ..Default::default()
        }));
        if let Some(addr) = &self.addr {
            check.push(CheckSpec::PortFree(PortFreeSpec {
                addr: addr.clone(),
                ..Default::default()
            }));
        }
        if self.secrets {
            check.push(CheckSpec::Secrets(SecretsSpec::default()));
        }
        PreflightConfig {
            ignore: Vec::new(),
            check,
        }
    }
}

/// Whether `dir` is inside a git work tree (a `.git` entry in it or a parent), without running
/// git.
pub fn in_git_work_tree(dir: &Path) -> bool {
    let dir = std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf());
    dir.ancestors().any(|d| d.join(".git").exists())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kebab_case_ids() {
        for ok in ["a", "app-port", "disk-free-2"] {
            assert!(is_kebab_case(ok), "{ok}");
        }
        for bad in ["", "App", "a--b", "-a", "a_b", "a b"] {
            assert!(!is_kebab_case(bad), "{bad}");
        }
    }
}
