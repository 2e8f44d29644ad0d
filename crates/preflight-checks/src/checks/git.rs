//! Repository checks through the `git` CLI: `git-clean` and `not-tracked`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::json;

use crate::exec::{self, Finished, SpawnError};
use crate::{Check, CheckContext, DEFAULT_TIMEOUT, Outcome};

/// How many dirty paths a message names.
const NAMED_PATHS: usize = 10;

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

/// Runs `git -C dir args...` without taking optional locks (so a check never blocks or
/// disturbs a concurrent git command) and with messages in English.
fn git(dir: &Path, args: &[&str], ctx: &CheckContext) -> Result<Finished, Outcome> {
    let mut argv = vec!["git".to_owned(), "-C".to_owned(), dir.display().to_string()];
    argv.extend(args.iter().map(|a| (*a).to_owned()));
    let env = BTreeMap::from([
        ("GIT_OPTIONAL_LOCKS".to_owned(), "0".to_owned()),
        ("LC_ALL".to_owned(), "C".to_owned()),
    ]);
    match exec::run(&argv, None, &env, ctx.deadline()) {
        Ok(f) if f.status.is_none() => Err(Outcome::fail(
            format!("`git {}` did not finish in time", args.join(" ")),
            "find out why git is slow here (a huge untracked tree, a network filesystem?)",
        )),
        Ok(f) => Ok(f),
        Err(SpawnError::NotFound) => Err(Outcome::fail(
            "git is not installed (program `git` not found on PATH)",
            "install git (Debian/Ubuntu: apt-get install git)",
        )),
        Err(e) => Err(Outcome::fail(
            format!("cannot run git: {e}"),
            "check that git can run here",
        )),
    }
}

fn git_failed(what: &str, f: &Finished) -> Outcome {
    let tail = f.tail(3);
    if tail.contains("not a git repository") {
        Outcome::fail(
            format!("{what}: not a git work tree ({tail})"),
            "point `path`/`repo` at the repository's work tree",
        )
    } else {
        Outcome::fail(
            format!("{what}: git failed: {tail}"),
            "run the git command by hand to see why",
        )
    }
}

/// `git-clean`: no tracked file is modified, staged or deleted (and, when asked, no untracked
/// file exists), so a release is built from exactly a commit.
#[derive(Debug, Clone)]
pub struct GitClean {
    id: String,
    timeout: Duration,
    path: PathBuf,
    untracked: bool,
}

impl GitClean {
    /// Tracked changes only.
    pub fn new(id: impl Into<String>, path: impl Into<PathBuf>) -> Self {
        Self {
            id: id.into(),
            timeout: DEFAULT_TIMEOUT,
            path: path.into(),
            untracked: false,
        }
    }
    /// Whether untracked (not ignored) files count as dirty too.
    #[must_use]
    pub fn untracked(mut self, yes: bool) -> Self {
        self.untracked = yes;
        self
    }
    /// Sets the timeout.
    #[must_use]
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }
}

/// Paths from `git status --porcelain=v1 -z` output.
fn parse_porcelain(output: &str) -> Vec<String> {
    let mut paths = Vec::new();
    let mut fields = output.split('\0').filter(|f| !f.is_empty());
    while let Some(entry) = fields.next() {
        let (code, path) = entry.split_at(entry.len().min(3));
        paths.push(path.to_owned());
        // A rename or copy is followed by the original path as its own field.
        if code.starts_with('R') || code.starts_with('C') {
            fields.next();
        }
    }
    paths
}

impl Check for GitClean {
    common!();
    fn kind(&self) -> &'static str {
        "git-clean"
    }
    fn description(&self) -> String {
        let what = if self.untracked {
            "tracked or untracked"
        } else {
            "tracked"
        };
        format!("no {what} changes in {}", self.path.display())
    }
    fn run(&self, ctx: &CheckContext) -> Outcome {
        let untracked = if self.untracked {
            "--untracked-files=normal"
        } else {
            "--untracked-files=no"
        };
        let shown = self.path.display().to_string();
        let f = match git(
            &self.path,
            &["status", "--porcelain=v1", "-z", untracked],
            ctx,
        ) {
            Ok(f) => f,
            Err(o) => return o,
        };
        if !f.status.is_some_and(|s| s.success()) {
            return git_failed(&shown, &f);
        }
        let dirty = parse_porcelain(&f.output);
        let data = json!({"path": self.path, "dirty": dirty.len(), "paths": dirty.iter().take(NAMED_PATHS).collect::<Vec<_>>()});
        if dirty.is_empty() {
            return Outcome::pass(format!("{shown}: working tree clean")).with_data(data);
        }
        let mut named = dirty
            .iter()
            .take(NAMED_PATHS)
            .cloned()
            .collect::<Vec<_>>()
            .join(", ");
        if dirty.len() > NAMED_PATHS {
            named.push_str(&format!(" and {} more", dirty.len() - NAMED_PATHS));
        }
        Outcome::fail(
            format!("{shown}: {} uncommitted change(s): {named}", dirty.len()),
            "commit or stash the changes so that the release is exactly a commit",
        )
        .with_data(data)
    }
}

/// `not-tracked`: paths that must never be committed (env files, backups, keys) are not
/// tracked by git and are covered by an ignore rule.
#[derive(Debug, Clone)]
pub struct NotTracked {
    id: String,
    timeout: Duration,
    repo: PathBuf,
    paths: Vec<String>,
}

impl NotTracked {
    /// `paths` are relative to `repo` (or absolute inside it).
    pub fn new(id: impl Into<String>, repo: impl Into<PathBuf>, paths: Vec<String>) -> Self {
        Self {
            id: id.into(),
            timeout: DEFAULT_TIMEOUT,
            repo: repo.into(),
            paths,
        }
    }
    /// Sets the timeout.
    #[must_use]
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }
}

impl Check for NotTracked {
    common!();
    fn kind(&self) -> &'static str {
        "not-tracked"
    }
    fn description(&self) -> String {
        format!(
            "{} path(s) are untracked and ignored in {}",
            self.paths.len(),
            self.repo.display()
        )
    }
    fn run(&self, ctx: &CheckContext) -> Outcome {
        if self.paths.is_empty() {
            return Outcome::skip("no paths configured");
        }
        let shown = self.repo.display().to_string();
        let mut args = vec!["ls-files", "-z", "--"];
        args.extend(self.paths.iter().map(String::as_str));
        let f = match git(&self.repo, &args, ctx) {
            Ok(f) => f,
            Err(o) => return o,
        };
        if !f.status.is_some_and(|s| s.success()) {
            return git_failed(&shown, &f);
        }
        let tracked: Vec<String> = f
            .output
            .split('\0')
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect();

        // `-z` needs `--stdin`; one path per line is enough for paths a manifest names.
        let mut args = vec![
            "-c",
            "core.quotePath=false",
            "check-ignore",
            "--no-index",
            "--",
        ];
        args.extend(self.paths.iter().map(String::as_str));
        let f = match git(&self.repo, &args, ctx) {
            Ok(f) => f,
            Err(o) => return o,
        };
        // check-ignore exits 1 when no path is ignored, 128 on a real error.
        if !f.status.is_some_and(|s| s.success() || s.code() == Some(1)) {
            return git_failed(&shown, &f);
        }
        let ignored: Vec<&str> = f.output.lines().filter(|s| !s.is_empty()).collect();
        let not_ignored: Vec<&str> = self
            .paths
            .iter()
            .map(String::as_str)
            .filter(|p| !ignored.contains(p))
            .collect();
        let data = json!({"tracked": tracked, "not_ignored": not_ignored});
        if !tracked.is_empty() {
            let named = tracked
                .iter()
                .take(NAMED_PATHS)
                .cloned()
                .collect::<Vec<_>>()
                .join(", ");
            return Outcome::fail(
                format!("tracked by git but must not be: {named}"),
                "run `git rm --cached <path>`, add it to .gitignore, and rotate any secret it held",
            )
            .with_data(data);
        }
        if !not_ignored.is_empty() {
            return Outcome::fail(
                format!("not covered by .gitignore: {}", not_ignored.join(", ")),
                "add these paths to .gitignore so they cannot be committed by accident",
            )
            .with_data(data);
        }
        Outcome::pass(format!(
            "{} path(s) untracked and ignored",
            self.paths.len()
        ))
        .with_data(data)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn porcelain_skips_rename_sources() {
        let out = " M src/a.rs\0R  new.rs\0old.rs\0D  gone.txt\0?? extra\0";
        assert_eq!(
            parse_porcelain(out),
            ["src/a.rs", "new.rs", "gone.txt", "extra"]
        );
    }
}
