//! File checks: `artifact`, `files-exist`, `dir-writable`, `file-mode`.

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::json;

use crate::units::{FileMode, Size};
use crate::{Check, CheckContext, DEFAULT_TIMEOUT, Outcome};

macro_rules! common {
    () => {
        fn id(&self) -> &str {
            &self.id
        }
        fn timeout(&self) -> Duration {
            self.timeout
        }
    };
}

/// `artifact`: the build's output exists, is a regular file, optionally executable, and its
/// size is within bounds (a truncated or runaway build shows up here).
#[derive(Debug, Clone)]
pub struct Artifact {
    id: String,
    timeout: Duration,
    path: PathBuf,
    executable: bool,
    min_bytes: Option<Size>,
    max_bytes: Option<Size>,
}

impl Artifact {
    /// Exists and is a regular file; not required executable; no size bounds.
    pub fn new(id: impl Into<String>, path: impl Into<PathBuf>) -> Self {
        Self {
            id: id.into(),
            timeout: DEFAULT_TIMEOUT,
            path: path.into(),
            executable: false,
            min_bytes: None,
            max_bytes: None,
        }
    }
    /// Requires an execute bit.
    #[must_use]
    pub fn executable(mut self, yes: bool) -> Self {
        self.executable = yes;
        self
    }
    /// Size bounds, inclusive.
    #[must_use]
    pub fn size_between(mut self, min: Option<Size>, max: Option<Size>) -> Self {
        self.min_bytes = min;
        self.max_bytes = max;
        self
    }
    /// Sets the timeout.
    #[must_use]
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }
}

impl Check for Artifact {
    common!();
    fn kind(&self) -> &'static str {
        "artifact"
    }
    fn description(&self) -> String {
        format!("the build artifact {}", self.path.display())
    }
    fn run(&self, _ctx: &CheckContext) -> Outcome {
        let shown = self.path.display();
        let meta = match std::fs::metadata(&self.path) {
            Ok(m) => m,
            Err(e) => {
                return Outcome::fail(
                    format!("{shown}: {e}"),
                    "run the build; check `path` against where the build writes its output",
                );
            }
        };
        if !meta.is_file() {
            return Outcome::fail(
                format!("{shown} is not a regular file"),
                "point `path` at the built file",
            );
        }
        let size = Size(meta.len());
        let mode = meta.permissions().mode() & 0o7777;
        let data = json!({"path": self.path, "bytes": size.0, "mode": format!("{mode:04o}")});
        if let Some(min) = self.min_bytes.filter(|min| size < *min) {
            return Outcome::fail(
                format!(
                    "{shown} is {size} ({} bytes), smaller than the minimum {min}",
                    size.0
                ),
                "the build produced a truncated or empty artifact; look at the build output",
            )
            .with_data(data);
        }
        if let Some(max) = self.max_bytes.filter(|max| size > *max) {
            return Outcome::fail(
                format!(
                    "{shown} is {size} ({} bytes), larger than the maximum {max}",
                    size.0
                ),
                "the build bundled more than expected (dev dependencies, source maps?)",
            )
            .with_data(data);
        }
        if self.executable && mode & 0o111 == 0 {
            return Outcome::fail(
                format!("{shown} is not executable (mode {mode:04o})"),
                format!("make the build set the bit, or run `chmod +x {shown}`"),
            )
            .with_data(data);
        }
        let exec = if self.executable { ", executable" } else { "" };
        Outcome::pass(format!("{shown}: {size}{exec}")).with_data(data)
    }
}

/// `files-exist`: every path of `all_of` exists, and at least one of `any_of` (when given).
#[derive(Debug, Clone)]
pub struct FilesExist {
    id: String,
    timeout: Duration,
    all_of: Vec<PathBuf>,
    any_of: Vec<PathBuf>,
}

impl FilesExist {
    /// Paths that must all exist, and paths of which one must exist.
    pub fn new(id: impl Into<String>, all_of: Vec<PathBuf>, any_of: Vec<PathBuf>) -> Self {
        Self {
            id: id.into(),
            timeout: DEFAULT_TIMEOUT,
            all_of,
            any_of,
        }
    }
    /// Sets the timeout.
    #[must_use]
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }
}

fn list(paths: &[&Path]) -> String {
    paths
        .iter()
        .map(|p| p.display().to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

impl Check for FilesExist {
    common!();
    fn kind(&self) -> &'static str {
        "files-exist"
    }
    fn description(&self) -> String {
        format!(
            "{} required and {} alternative paths exist",
            self.all_of.len(),
            self.any_of.len()
        )
    }
    fn run(&self, _ctx: &CheckContext) -> Outcome {
        if self.all_of.is_empty() && self.any_of.is_empty() {
            return Outcome::skip("no paths configured (set all_of and/or any_of)");
        }
        let missing: Vec<&Path> = self
            .all_of
            .iter()
            .filter(|p| !p.exists())
            .map(PathBuf::as_path)
            .collect();
        let found_any: Vec<&Path> = self
            .any_of
            .iter()
            .filter(|p| p.exists())
            .map(PathBuf::as_path)
            .collect();
        let data = json!({"missing": missing, "found_any_of": found_any});
        if !missing.is_empty() {
            return Outcome::fail(
                format!("missing: {}", list(&missing)),
                "create them (or deploy the shared files) before deploying",
            )
            .with_data(data);
        }
        if !self.any_of.is_empty() && found_any.is_empty() {
            let wanted: Vec<&Path> = self.any_of.iter().map(PathBuf::as_path).collect();
            return Outcome::fail(
                format!("none of these exists: {}", list(&wanted)),
                "create one of them",
            )
            .with_data(data);
        }
        let mut parts = Vec::new();
        if !self.all_of.is_empty() {
            parts.push(format!("all {} required paths exist", self.all_of.len()));
        }
        if let Some(first) = found_any.first() {
            parts.push(format!("found {}", first.display()));
        }
        Outcome::pass(parts.join("; ")).with_data(data)
    }
}

/// `dir-writable`: the directory exists (created when allowed) and a file can be created,
/// written, fsynced and removed in it.
#[derive(Debug, Clone)]
pub struct DirWritable {
    id: String,
    timeout: Duration,
    path: PathBuf,
    create: bool,
}

impl DirWritable {
    /// Creates the directory when missing.
    pub fn new(id: impl Into<String>, path: impl Into<PathBuf>) -> Self {
        Self {
            id: id.into(),
            timeout: DEFAULT_TIMEOUT,
            path: path.into(),
            create: true,
        }
    }
    /// Whether a missing directory may be created.
    #[must_use]
    pub fn create(mut self, yes: bool) -> Self {
        self.create = yes;
        self
    }
    /// Sets the timeout.
    #[must_use]
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }
}

impl Check for DirWritable {
    common!();
    fn kind(&self) -> &'static str {
        "dir-writable"
    }
    fn description(&self) -> String {
        format!("{} is a writable directory", self.path.display())
    }
    fn run(&self, _ctx: &CheckContext) -> Outcome {
        let shown = self.path.display();
        let mut created = false;
        match std::fs::metadata(&self.path) {
            Ok(m) if m.is_dir() => {}
            Ok(_) => {
                return Outcome::fail(
                    format!("{shown} exists but is not a directory"),
                    "move the file away or point `path` elsewhere",
                );
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && self.create => {
                if let Err(e) = std::fs::create_dir_all(&self.path) {
                    return Outcome::fail(
                        format!("cannot create {shown}: {e}"),
                        "create it by hand with the right owner, or fix its parent",
                    );
                }
                created = true;
            }
            Err(e) => {
                return Outcome::fail(
                    format!("{shown}: {e}"),
                    "create the directory (or set create = true)",
                );
            }
        }
        let probe = self.path.join(format!(
            ".cutover-preflight-{}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or_default()
        ));
        let written = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&probe)
            .and_then(|mut f| {
                f.write_all(b"cutover pre-flight probe\n")?;
                f.sync_all()
            });
        let removed = std::fs::remove_file(&probe);
        if let Err(e) = written {
            return Outcome::fail(
                format!("cannot write in {shown}: {e}"),
                "fix its owner/permissions, or remount the filesystem read-write",
            );
        }
        if let Err(e) = removed {
            return Outcome::fail(
                format!("wrote {} but cannot remove it: {e}", probe.display()),
                "check the directory's sticky bit and owner",
            );
        }
        let note = if created { " (created)" } else { "" };
        Outcome::pass(format!("{shown} is writable{note}"))
            .with_data(json!({"path": self.path, "created": created}))
    }
}

/// `file-mode`: a file (env file, private key) has no permission bits beyond `max_mode`
/// (default 0600: nothing for group and others).
#[derive(Debug, Clone)]
pub struct FileModeCheck {
    id: String,
    timeout: Duration,
    path: PathBuf,
    max_mode: FileMode,
    required: bool,
}

impl FileModeCheck {
    /// At most 0600; a missing file fails.
    pub fn new(id: impl Into<String>, path: impl Into<PathBuf>) -> Self {
        Self {
            id: id.into(),
            timeout: DEFAULT_TIMEOUT,
            path: path.into(),
            max_mode: FileMode(0o600),
            required: true,
        }
    }
    /// The most permissive mode allowed.
    #[must_use]
    pub fn max_mode(mut self, mode: FileMode) -> Self {
        self.max_mode = mode;
        self
    }
    /// Whether a missing file fails (`true`) or skips (`false`).
    #[must_use]
    pub fn required(mut self, yes: bool) -> Self {
        self.required = yes;
        self
    }
    /// Sets the timeout.
    #[must_use]
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }
}

impl Check for FileModeCheck {
    common!();
    fn kind(&self) -> &'static str {
        "file-mode"
    }
    fn description(&self) -> String {
        format!(
            "{} has mode {} or stricter",
            self.path.display(),
            self.max_mode
        )
    }
    fn run(&self, _ctx: &CheckContext) -> Outcome {
        let shown = self.path.display();
        let meta = match std::fs::metadata(&self.path) {
            Ok(m) => m,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && !self.required => {
                return Outcome::skip(format!("{shown} does not exist (not required)"));
            }
            Err(e) => {
                return Outcome::fail(
                    format!("{shown}: {e}"),
                    "create the file, or set required = false",
                );
            }
        };
        let mode = meta.permissions().mode() & 0o7777;
        let extra = mode & !self.max_mode.0;
        let data = json!({"path": self.path, "mode": format!("{mode:04o}"), "max_mode": self.max_mode.to_string()});
        if extra != 0 {
            let mut who = Vec::new();
            if extra & 0o070 != 0 {
                who.push("group");
            }
            if extra & 0o007 != 0 {
                who.push("others");
            }
            if extra & 0o7700 != 0 {
                who.push("owner/special bits");
            }
            return Outcome::fail(
                format!(
                    "{shown} has mode {mode:04o}, more than {} allows ({} can access it)",
                    self.max_mode,
                    who.join(" and ")
                ),
                format!("chmod {:o} {shown}", mode & self.max_mode.0),
            )
            .with_data(data);
        }
        Outcome::pass(format!("{shown} has mode {mode:04o}")).with_data(data)
    }
}
