//! Where a release is built: a clean export of the requested commit into a build directory
//! under the layout root, never the operator's working tree (whose uncommitted edits would
//! otherwise ship under the name of a commit that does not contain them).
//!
//! * A git source: the commit (`deploy --commit REV`, default `HEAD`) is exported with `git
//!   archive` (the source's own subdirectory when the source is one) and unpacked with fresh
//!   modification times, so that an incremental build tool never mistakes an exported file for
//!   an older one it has already built. A dirty working tree is a warning naming the files.
//! * Any other source is copied (the layout root and the build caches left out), and the
//!   report says so.
//! * `[service] build_cache` directories are moved into the build directory before the build
//!   and back out after it (also after a failed build), so that a second build is incremental.
//!   Moves are renames inside the layout root: no copying.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::env::CommandRequest;
use crate::error::DeployError;
use crate::operation::{Deployer, tail};

/// Entries of the layout root that a copied source never takes along (the root may lie inside
/// the source, or be it).
const LAYOUT_ENTRIES: &[&str] = &[
    "releases",
    "current",
    "shared",
    "backups",
    "state",
    "logs",
    "builds",
    "build-cache",
    "proxy",
];

/// How long one `git` command may take.
const GIT_TIMEOUT: Duration = Duration::from_secs(120);

/// The source of one deploy, resolved before its release id is chosen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Source {
    /// A commit of a git repository.
    Git {
        /// The full commit id.
        commit: String,
        /// The short id recorded in the release id and record.
        short: String,
        /// The repository's top directory.
        top: PathBuf,
        /// The source's path inside the repository (`""` at the top).
        prefix: String,
        /// Files of the working tree that differ from `HEAD` (not built).
        dirty: Vec<String>,
    },
    /// A directory that is not (in) a git repository: copied.
    Copy,
}

impl Source {
    /// The short commit, when there is one.
    pub(crate) fn short_commit(&self) -> Option<&str> {
        match self {
            Source::Git { short, .. } => Some(short),
            Source::Copy => None,
        }
    }

    /// The warning a dirty working tree deserves, if any.
    pub(crate) fn dirty_warning(&self) -> Option<String> {
        let Source::Git { dirty, short, .. } = self else {
            return None;
        };
        if dirty.is_empty() {
            return None;
        }
        const SHOWN: usize = 10;
        let mut names: Vec<String> = dirty.iter().take(SHOWN).map(|f| escape(f)).collect();
        if dirty.len() > SHOWN {
            names.push(format!("and {} more", dirty.len() - SHOWN));
        }
        Some(format!(
            "the working tree has uncommitted changes that are not built (commit {short} is): {}",
            names.join(", ")
        ))
    }
}

/// A file name as one line of text: control characters escaped.
fn escape(name: &str) -> String {
    if name.chars().any(char::is_control) {
        name.escape_debug().to_string()
    } else {
        name.to_owned()
    }
}

impl Deployer {
    fn git(&self, args: &[&str]) -> Result<crate::env::CommandResult, String> {
        self.git_in(&self.manifest.service.source, args)
    }

    fn git_in(&self, cwd: &Path, args: &[&str]) -> Result<crate::env::CommandResult, String> {
        let argv: Vec<String> = std::iter::once("git")
            .chain(args.iter().copied())
            .map(str::to_owned)
            .collect();
        self.env.runner.run(&CommandRequest {
            argv: &argv,
            cwd,
            env: &[("GIT_TERMINAL_PROMPT".to_owned(), "0".to_owned())],
            timeout: GIT_TIMEOUT,
        })
    }

    /// Which commit (or copy) the next deploy builds: `rev` (default `HEAD`).
    ///
    /// # Errors
    /// [`DeployError::Usage`] when `rev` is given for a source that is not a git repository or
    /// names no commit.
    pub(crate) fn resolve_source(&self, rev: Option<&str>) -> Result<Source, DeployError> {
        let source = &self.manifest.service.source;
        let usage = |reason: String| DeployError::Usage { reason };
        if rev.is_some_and(|r| r.is_empty() || r.starts_with('-')) {
            return Err(usage(format!(
                "--commit {:?}: a revision (a commit id, tag or branch), not an option",
                rev.unwrap_or_default()
            )));
        }
        let (top, prefix) = match self.git(&["rev-parse", "--show-toplevel", "--show-prefix"]) {
            Ok(r) if r.success() => {
                let mut lines = r.stdout.lines();
                let top = PathBuf::from(lines.next().unwrap_or_default());
                let prefix = lines
                    .next()
                    .unwrap_or_default()
                    .trim_end_matches('/')
                    .to_owned();
                (top, prefix)
            }
            _ => {
                if let Some(rev) = rev {
                    return Err(usage(format!(
                        "--commit {rev}: {} is not a git repository; deploy without --commit to build a copy of it",
                        source.display()
                    )));
                }
                return Ok(Source::Copy);
            }
        };
        let wanted = rev.unwrap_or("HEAD");
        let spec = format!("{wanted}^{{commit}}");
        let commit = match self.git(&["rev-parse", "--verify", "--quiet", &spec]) {
            Ok(r) if r.success() && !r.stdout.trim().is_empty() => r.stdout.trim().to_owned(),
            _ if rev.is_none() => {
                tracing::warn!(source = %source.display(), "the git repository has no commit yet; its files are copied");
                return Ok(Source::Copy);
            }
            _ => {
                return Err(usage(format!(
                    "--commit {wanted}: no such commit in {} (`git rev-parse --verify {wanted}` found none)",
                    source.display()
                )));
            }
        };
        let short = match self.git(&["rev-parse", "--short=7", &commit]) {
            Ok(r) if r.success() && !r.stdout.trim().is_empty() => r.stdout.trim().to_owned(),
            _ => commit.chars().take(7).collect(),
        };
        let dirty = match self.git(&[
            "status",
            "--porcelain=v1",
            "-z",
            "--untracked-files=all",
            "--",
            ".",
        ]) {
            Ok(r) if r.success() => parse_porcelain_z(&r.stdout),
            _ => Vec::new(),
        };
        // The layout root may lie inside the source (not ignored): its files are not edits.
        let root = canonical(self.layout.root());
        let dirty = dirty
            .into_iter()
            .filter(|f| !canonical(&top).join(f).starts_with(&root))
            .collect();
        Ok(Source::Git {
            commit,
            short,
            top,
            prefix,
            dirty,
        })
    }

    /// What the build phase says about its source, for `plan`.
    pub(crate) fn describe_source(&self) -> String {
        let source = self.manifest.service.source.display();
        match self.resolve_source(self.commit_request.as_deref()) {
            Ok(Source::Git { short, .. }) => {
                format!("a clean export of commit {short} of {source} (git archive)")
            }
            Ok(Source::Copy) => format!("a copy of {source} (not a git repository)"),
            Err(e) => format!("{source}: {e}"),
        }
    }

    /// Fills `dir` (which must not exist) with the source of the release: the exported commit
    /// or a copy. Returns what it did, for the report.
    pub(crate) fn export_source(&self, source: &Source, dir: &Path) -> Result<String, String> {
        std::fs::create_dir_all(dir)
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        match source {
            Source::Git {
                commit,
                short,
                top,
                prefix,
                ..
            } => {
                let tar_path = dir.with_extension("tar");
                let tree = format!("{commit}:{prefix}");
                let out = tar_path.display().to_string();
                // From the top: `git archive` in a subdirectory archives relative to it.
                let result = self.git_in(top, &["archive", "--format=tar", "-o", &out, &tree])?;
                if !result.success() {
                    let _ = std::fs::remove_file(&tar_path);
                    return Err(format!(
                        "git archive of {short} failed ({}): {}",
                        crate::operation::describe_exit(&result),
                        tail(&result.stderr, 400)
                    ));
                }
                let unpacked = unpack(&tar_path, dir);
                let _ = std::fs::remove_file(&tar_path);
                unpacked.map_err(|e| format!("cannot unpack the export of {short}: {e}"))?;
                Ok(format!("exported commit {short}"))
            }
            Source::Copy => {
                let from = &self.manifest.service.source;
                let skip = Skip {
                    root: canonical(self.layout.root()),
                    caches: self
                        .manifest
                        .service
                        .build_cache
                        .iter()
                        .map(|c| canonical(from).join(cache_path(c)))
                        .collect(),
                };
                copy_source(&canonical(from), dir, &skip).map_err(|e| {
                    format!("cannot copy {} to {}: {e}", from.display(), dir.display())
                })?;
                Ok(format!("copied {} (not a git repository)", from.display()))
            }
        }
    }

    /// Moves every `[service] build_cache` directory from the cache into the build tree.
    /// Returns what it brought in.
    pub(crate) fn cache_in(&self, dir: &Path) -> Vec<String> {
        let cache = self.layout.build_cache_dir();
        let mut brought = Vec::new();
        for entry in &self.manifest.service.build_cache {
            let rel = cache_path(entry);
            let (from, to) = (cache.join(&rel), dir.join(&rel));
            if !from.exists() {
                continue;
            }
            if to.exists() {
                tracing::warn!(cache = %entry, "the commit contains {entry} itself; the cached copy is left unused");
                continue;
            }
            let moved = to
                .parent()
                .map_or(Ok(()), std::fs::create_dir_all)
                .and_then(|()| std::fs::rename(&from, &to));
            match moved {
                Ok(()) => brought.push(entry.clone()),
                Err(e) => tracing::warn!(cache = %entry, %e, "cannot bring the build cache in"),
            }
        }
        brought
    }

    /// Moves every `[service] build_cache` directory from the build tree back to the cache.
    pub(crate) fn cache_out(&self, dir: &Path) {
        let cache = self.layout.build_cache_dir();
        for entry in &self.manifest.service.build_cache {
            let rel = cache_path(entry);
            let (from, to) = (dir.join(&rel), cache.join(&rel));
            if !from.is_dir() {
                continue;
            }
            let _ = std::fs::remove_dir_all(&to);
            let moved = to
                .parent()
                .map_or(Ok(()), std::fs::create_dir_all)
                .and_then(|()| std::fs::rename(&from, &to));
            if let Err(e) = moved {
                tracing::warn!(cache = %entry, %e, "cannot keep the build cache");
            }
        }
    }
}

/// A `build_cache` entry as a relative path (`"node_modules/"` → `node_modules`).
pub(crate) fn cache_path(entry: &str) -> PathBuf {
    PathBuf::from(entry.trim_end_matches('/'))
}

fn canonical(p: &Path) -> PathBuf {
    std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf())
}

/// Paths of `git status --porcelain=v1 -z` (a rename's original name skipped).
fn parse_porcelain_z(out: &str) -> Vec<String> {
    let mut files = Vec::new();
    let mut fields = out.split('\0').filter(|f| !f.is_empty());
    while let Some(field) = fields.next() {
        let Some((status, path)) = field.split_at_checked(3) else {
            continue;
        };
        files.push(path.to_owned());
        if status.starts_with('R') || status.starts_with('C') {
            fields.next();
        }
    }
    files
}

fn unpack(tar_path: &Path, dir: &Path) -> std::io::Result<()> {
    let file = std::fs::File::open(tar_path)?;
    let mut archive = tar::Archive::new(std::io::BufReader::new(file));
    // Fresh times: an incremental build must never take an exported file for an older one.
    archive.set_preserve_mtime(false);
    archive.set_preserve_permissions(true);
    archive.set_overwrite(false);
    archive.unpack(dir)
}

struct Skip {
    root: PathBuf,
    caches: Vec<PathBuf>,
}

impl Skip {
    fn skips(&self, path: &Path) -> bool {
        if path == self.root || self.caches.iter().any(|c| c == path) {
            return true;
        }
        path.parent() == Some(self.root.as_path())
            && path
                .file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| LAYOUT_ENTRIES.contains(&n))
    }
}

fn copy_source(from: &Path, to: &Path, skip: &Skip) -> std::io::Result<()> {
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let path = entry.path();
        if skip.skips(&path) {
            continue;
        }
        let target = to.join(entry.file_name());
        let kind = entry.file_type()?;
        if kind.is_dir() {
            std::fs::create_dir_all(&target)?;
            copy_source(&path, &target, skip)?;
        } else if kind.is_symlink() {
            std::os::unix::fs::symlink(std::fs::read_link(&path)?, &target)?;
        } else {
            std::fs::copy(&path, &target)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fakes::FakeWorld;
    use crate::{DeployManifest, Outcome, Phase};

    fn git(dir: &Path, args: &[&str]) -> String {
        let out = std::process::Command::new("git")
            .args(args)
            .current_dir(dir)
            .env("GIT_AUTHOR_NAME", "t")
            .env("GIT_AUTHOR_EMAIL", "t@example.invalid")
            .env("GIT_COMMITTER_NAME", "t")
            .env("GIT_COMMITTER_EMAIL", "t@example.invalid")
            .output()
            .expect("git runs");
        assert!(
            out.status.success(),
            "git {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }

    /// A repository at `<tmp>/repo` whose source is its `svc/` subdirectory, and a deployer
    /// whose layout root lies inside the source (as the demo's does).
    fn repo() -> (tempfile::TempDir, PathBuf, FakeWorld, Deployer) {
        let tmp = tempfile::tempdir().unwrap();
        let repo = tmp.path().join("repo");
        let src = repo.join("svc");
        std::fs::create_dir_all(&src).unwrap();
        git(&repo, &["init", "-q"]);
        std::fs::write(src.join("app.txt"), "v1").unwrap();
        std::fs::write(repo.join("outside.txt"), "not the source").unwrap();
        git(&repo, &["add", "."]);
        git(&repo, &["commit", "-q", "-m", "v1"]);
        let text = format!(
            r#"
[service]
name = "hub"
source = "{src}"
build = ["make"]
build_cache = ["cache/"]
start = ["app", "{{release_id}}", "{{port}}"]
port = 17000
[layout]
root = "{root}"
[deploy]
backup = false
stable_for = "0s"
"#,
            src = src.display(),
            root = src.join("deploy-root").display()
        );
        let world = FakeWorld::new();
        let manifest = DeployManifest::from_str(tmp.path().join("cutover.toml"), &text).unwrap();
        let d = Deployer::new(manifest, world.environment());
        (tmp, src, world, d)
    }

    #[test]
    fn a_deploy_builds_the_commit_not_the_working_tree_and_names_the_dirty_files() {
        let (_tmp, src, _world, d) = repo();
        std::fs::write(src.join("app.txt"), "v2, not committed").unwrap();
        std::fs::write(src.join("untracked.txt"), "x").unwrap();
        let head = git(&src, &["rev-parse", "--short=7", "HEAD"]);
        let report = d.deploy(Duration::ZERO).unwrap();
        assert_eq!(report.outcome, Outcome::Deployed, "{report:?}");
        assert!(report.release.ends_with(&head), "{}", report.release);
        let release = d.layout().release_dir(&report.release);
        let read = |p: &Path| {
            std::fs::read_to_string(p)
                .unwrap_or_else(|e| panic!("{}: {e}; {report:?}", p.display()))
        };
        assert_eq!(read(&release.join("app.txt")), "v1");
        assert!(!release.join("untracked.txt").exists());
        // The source's own subdirectory, not the repository around it.
        assert!(!release.join("outside.txt").exists());
        assert!(!release.join("svc").exists());
        let build = report
            .phases
            .iter()
            .find(|p| p.phase == Phase::Build.into())
            .unwrap();
        let detail = build.detail.clone().unwrap_or_default();
        assert!(
            detail.contains(&format!("exported commit {head}")),
            "{detail}"
        );
        assert!(
            detail.contains("uncommitted changes that are not built"),
            "{detail}"
        );
        assert!(
            detail.contains("app.txt") && detail.contains("untracked.txt"),
            "{detail}"
        );
        assert_eq!(
            d.layout().read_record(&report.release).unwrap().commit,
            Some(head)
        );
        // The build directory is gone; the working tree is as the operator left it.
        assert!(!d.layout().build_dir(&report.release).exists());
        assert_eq!(
            std::fs::read_to_string(src.join("app.txt")).unwrap(),
            "v2, not committed"
        );
    }

    #[test]
    fn commit_selects_an_older_commit_and_a_bad_one_is_refused_before_anything_is_made() {
        let (_tmp, src, _world, d) = repo();
        let first = git(&src, &["rev-parse", "HEAD"]);
        std::fs::write(src.join("app.txt"), "v2").unwrap();
        git(&src, &["commit", "-q", "-am", "v2"]);
        let d = d.with_commit(first.clone());
        let report = d.deploy(Duration::ZERO).unwrap();
        assert_eq!(report.outcome, Outcome::Deployed, "{report:?}");
        let release = d.layout().release_dir(&report.release);
        assert_eq!(
            std::fs::read_to_string(release.join("app.txt")).unwrap(),
            "v1"
        );
        assert!(report.release.ends_with(&first[..7]), "{}", report.release);

        for bad in ["no-such-rev", "--upload-pack=x", ""] {
            let d = Deployer::new(d.manifest().clone(), FakeWorld::new().environment())
                .with_commit(bad);
            let before = d.layout().list_releases().unwrap();
            let err = d.deploy(Duration::ZERO).unwrap_err();
            assert_eq!(err.exit_code(), 64, "{err}");
            assert!(err.to_string().contains("--commit"), "{err}");
            assert_eq!(d.layout().list_releases().unwrap(), before);
        }
    }

    #[test]
    fn a_source_that_is_not_a_repository_is_copied_without_the_layout_or_caches_and_says_so() {
        let tmp = tempfile::tempdir().unwrap();
        let src = tmp.path();
        std::fs::write(src.join("app.txt"), "plain").unwrap();
        std::fs::create_dir_all(src.join("cache")).unwrap();
        std::fs::write(src.join("cache/big"), "cached").unwrap();
        let text = format!(
            "[service]\nname = \"hub\"\nbuild_cache = [\"cache/\"]\nstart = [\"app\", \"{{release_id}}\", \"{{port}}\"]\nport = 17000\n[layout]\nroot = \"{}\"\n[deploy]\nbackup = false\nstable_for = \"0s\"\n",
            src.display()
        );
        let manifest = DeployManifest::from_str(src.join("cutover.toml"), &text).unwrap();
        let d = Deployer::new(manifest.clone(), FakeWorld::new().environment());
        let report = d.deploy(Duration::ZERO).unwrap();
        assert_eq!(report.outcome, Outcome::Deployed, "{report:?}");
        let build = report
            .phases
            .iter()
            .find(|p| p.phase == Phase::Build.into())
            .unwrap();
        let detail = build.detail.clone().unwrap_or_default();
        assert!(detail.contains("(not a git repository)"), "{detail}");
        let release = d.layout().release_dir(&report.release);
        assert_eq!(
            std::fs::read_to_string(release.join("app.txt")).unwrap(),
            "plain"
        );
        assert!(!release.join("releases").exists() && !release.join("state").exists());
        assert!(
            !release.join("cache").exists(),
            "a cache comes from the cache, not the source"
        );
        let err = Deployer::new(manifest, FakeWorld::new().environment())
            .with_commit("HEAD")
            .deploy(Duration::ZERO)
            .unwrap_err();
        assert_eq!(err.exit_code(), 64);
        assert!(err.to_string().contains("is not a git repository"), "{err}");
    }

    #[test]
    fn build_cache_entries_must_be_plain_relative_directories() {
        for bad in [
            "\"/abs/\"",
            "\"../up/\"",
            "\"a/../b\"",
            "\"/\"",
            "\"\"",
            "\"t/\", \"t\"",
        ] {
            let text = format!(
                "[service]\nname = \"hub\"\nbuild_cache = [{bad}]\nstart = [\"app\"]\nport = 17000\n[layout]\nroot = \"/srv/x\"\n"
            );
            let err = DeployManifest::from_str("cutover.toml", &text).unwrap_err();
            assert_eq!(err.exit_code(), 78, "{bad}: {err}");
            let msg = err.to_string();
            assert!(
                msg.contains("build_cache") && msg.contains("cutover.toml:3:"),
                "{bad}: {msg}"
            );
        }
    }

    #[test]
    fn porcelain_names_every_changed_file_and_skips_a_renames_origin() {
        let out = " M src/main.rs\0?? new file.txt\0R  b.rs\0a.rs\0D  gone.rs\0";
        assert_eq!(
            parse_porcelain_z(out),
            ["src/main.rs", "new file.txt", "b.rs", "gone.rs"]
        );
        assert!(parse_porcelain_z("").is_empty());
    }

    #[test]
    fn the_dirty_warning_escapes_names_and_caps_the_list() {
        let source = Source::Git {
            commit: "f".repeat(40),
            short: "fffffff".to_owned(),
            top: PathBuf::new(),
            prefix: String::new(),
            dirty: std::iter::once("a\nforged".to_owned())
                .chain((0..12).map(|i| format!("f{i}")))
                .collect(),
        };
        let w = source.dirty_warning().unwrap();
        assert!(w.contains("a\\nforged, f0, f1"), "{w}");
        assert!(w.contains("and 3 more"), "{w}");
        assert!(!w.contains('\n'));
        let clean = Source::Git {
            commit: "f".repeat(40),
            short: "fffffff".to_owned(),
            top: PathBuf::new(),
            prefix: String::new(),
            dirty: Vec::new(),
        };
        assert_eq!(clean.dirty_warning(), None);
        assert_eq!(Source::Copy.dirty_warning(), None);
    }
}
