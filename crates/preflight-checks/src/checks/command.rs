//! Command checks: `command` (a test suite), `build`, and `runtime-version`.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::Duration;

use serde_json::json;

use crate::exec::{self, SpawnError, display_argv};
use crate::{Check, CheckContext, DEFAULT_COMMAND_TIMEOUT, DEFAULT_TIMEOUT, Outcome};

/// How many lines of output a failure message quotes.
const TAIL_LINES: usize = 5;

fn not_found(argv: &[String]) -> Outcome {
    let program = argv.first().map(String::as_str).unwrap_or("");
    Outcome::fail(
        format!("program `{program}` not found (is it installed and on PATH?)"),
        format!("install `{program}` or give its full path in `command`"),
    )
}

/// `command` and `build`: a command (argv, no shell) exits 0 within its timeout; on failure the
/// message quotes the tail of its output.
#[derive(Debug, Clone)]
pub struct CommandCheck {
    id: String,
    kind: &'static str,
    timeout: Duration,
    argv: Vec<String>,
    dir: Option<PathBuf>,
    env: BTreeMap<String, String>,
}

impl CommandCheck {
    /// A `command` check (kind `"command"`), 30 min timeout.
    pub fn new(id: impl Into<String>, argv: Vec<String>) -> Self {
        Self {
            id: id.into(),
            kind: "command",
            timeout: DEFAULT_COMMAND_TIMEOUT,
            argv,
            dir: None,
            env: BTreeMap::new(),
        }
    }
    /// A `build` check (kind `"build"`), 30 min timeout.
    pub fn build(id: impl Into<String>, argv: Vec<String>) -> Self {
        Self {
            kind: "build",
            ..Self::new(id, argv)
        }
    }
    /// The working directory (default: the current one).
    #[must_use]
    pub fn dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.dir = Some(dir.into());
        self
    }
    /// Extra environment variables.
    #[must_use]
    pub fn env(mut self, env: BTreeMap<String, String>) -> Self {
        self.env = env;
        self
    }
    /// Sets the timeout.
    #[must_use]
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }
}

impl Check for CommandCheck {
    fn id(&self) -> &str {
        &self.id
    }
    fn kind(&self) -> &'static str {
        self.kind
    }
    fn timeout(&self) -> Duration {
        self.timeout
    }
    fn exclusive(&self) -> bool {
        true
    }
    fn description(&self) -> String {
        format!("`{}` exits 0", display_argv(&self.argv))
    }
    fn run(&self, ctx: &CheckContext) -> Outcome {
        let shown = display_argv(&self.argv);
        let finished = match exec::run(&self.argv, self.dir.as_deref(), &self.env, ctx.deadline()) {
            Ok(f) => f,
            Err(SpawnError::NotFound) => return not_found(&self.argv),
            Err(e) => {
                return Outcome::fail(
                    format!("cannot run `{shown}`: {e}"),
                    "check the command and its working directory",
                );
            }
        };
        let secs = finished.elapsed.as_secs_f64();
        let tail = finished.tail(TAIL_LINES);
        let data = json!({"command": self.argv, "exit_code": finished.status.and_then(|s| s.code()), "seconds": secs, "output_tail": tail});
        match finished.status {
            None => Outcome::fail(
                format!(
                    "`{shown}` was killed after {} (timeout); last output: {tail}",
                    humantime::format_duration(self.timeout)
                ),
                "find out why it hangs, or raise `timeout`",
            ),
            Some(status) if status.success() => {
                Outcome::pass(format!("`{shown}` exited 0 in {secs:.1}s"))
            }
            Some(status) => Outcome::fail(
                format!("`{shown}` failed ({status}) after {secs:.1}s; last output: {tail}"),
                format!("run `{shown}` by hand and fix what it reports"),
            ),
        }
        .with_data(data)
    }
}

/// `runtime-version`: a command's version output (`bun --version`, `node --version`) satisfies
/// a semver requirement (`>=1.1, <2`). A missing program is a clear failure.
#[derive(Debug, Clone)]
pub struct RuntimeVersion {
    id: String,
    timeout: Duration,
    argv: Vec<String>,
    require: Option<semver::VersionReq>,
}

impl RuntimeVersion {
    /// Without a requirement, any version that can be read passes.
    pub fn new(id: impl Into<String>, argv: Vec<String>) -> Self {
        Self {
            id: id.into(),
            timeout: DEFAULT_TIMEOUT,
            argv,
            require: None,
        }
    }
    /// The requirement the version must meet.
    #[must_use]
    pub fn require(mut self, req: semver::VersionReq) -> Self {
        self.require = Some(req);
        self
    }
    /// Sets the timeout.
    #[must_use]
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }
}

/// The first version-looking token in `text` (`v1.2.3`, `1.1`, `bun 1.1.38-canary`).
pub(crate) fn find_version(text: &str) -> Option<semver::Version> {
    static PATTERN: OnceLock<Option<regex::Regex>> = OnceLock::new();
    let pattern = PATTERN
        .get_or_init(|| {
            regex::Regex::new(r"(\d+)\.(\d+)(?:\.(\d+))?(-[0-9A-Za-z.-]+)?(\+[0-9A-Za-z.-]+)?").ok()
        })
        .as_ref()?;
    let caps = pattern.captures(text)?;
    let num = |i: usize| {
        caps.get(i)
            .map_or(Some(0), |m| m.as_str().parse::<u64>().ok())
    };
    let mut version = semver::Version::new(num(1)?, num(2)?, num(3)?);
    if let Some(pre) = caps.get(4) {
        version.pre = semver::Prerelease::new(&pre.as_str()[1..]).ok()?;
    }
    if let Some(build) = caps.get(5) {
        version.build = semver::BuildMetadata::new(&build.as_str()[1..]).ok()?;
    }
    Some(version)
}

impl Check for RuntimeVersion {
    fn id(&self) -> &str {
        &self.id
    }
    fn kind(&self) -> &'static str {
        "runtime-version"
    }
    fn timeout(&self) -> Duration {
        self.timeout
    }
    fn description(&self) -> String {
        match &self.require {
            Some(req) => format!(
                "`{}` reports a version matching {req}",
                display_argv(&self.argv)
            ),
            None => format!("`{}` reports a version", display_argv(&self.argv)),
        }
    }
    fn run(&self, ctx: &CheckContext) -> Outcome {
        let shown = display_argv(&self.argv);
        let finished = match exec::run(&self.argv, None, &BTreeMap::new(), ctx.deadline()) {
            Ok(f) => f,
            Err(SpawnError::NotFound) => return not_found(&self.argv),
            Err(e) => {
                return Outcome::fail(format!("cannot run `{shown}`: {e}"), "check the command");
            }
        };
        let tail = finished.tail(2);
        match finished.status {
            None => {
                return Outcome::fail(
                    format!("`{shown}` did not answer in time"),
                    "check that the command prints its version and exits",
                );
            }
            Some(s) if !s.success() => {
                return Outcome::fail(
                    format!("`{shown}` failed ({s}): {tail}"),
                    "check that the runtime is installed correctly",
                );
            }
            Some(_) => {}
        }
        let Some(version) = find_version(&finished.output) else {
            return Outcome::fail(
                format!("`{shown}` printed no version number: {tail}"),
                "point `command` at something that prints its version",
            );
        };
        let data = json!({"command": self.argv, "version": version.to_string(), "require": self.require.as_ref().map(ToString::to_string)});
        match &self.require {
            Some(req) if !req.matches(&version) => Outcome::fail(
                format!("`{shown}` reports {version}, which does not satisfy {req}"),
                format!("install a version matching {req}"),
            ),
            Some(req) => Outcome::pass(format!("{version} satisfies {req}")),
            None => Outcome::pass(format!("`{shown}` reports {version}")),
        }
        .with_data(data)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_are_found_in_typical_outputs() {
        for (text, want) in [
            ("1.1.38\n", "1.1.38"),
            ("v20.11.1\n", "20.11.1"),
            ("rustc 1.95.0 (abc 2026-01-01)", "1.95.0"),
            ("Python 3.12", "3.12.0"),
            ("bun 1.2.0-canary.5+abc", "1.2.0-canary.5+abc"),
        ] {
            assert_eq!(find_version(text).unwrap().to_string(), want, "{text}");
        }
        assert!(find_version("no digits here").is_none());
    }
}
