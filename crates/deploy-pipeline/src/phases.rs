//! The phases as values ([`Step`]): each describes itself for `plan` and runs for `deploy`,
//! from the one list [`steps`]; and the work of the phases before the switch (preflight,
//! backup, build and stage).

use std::path::{Path, PathBuf};

use process_control::template;

use crate::env::CommandRequest;
use crate::journal::{JournalEntry, Operation};
use crate::layout::ReleaseRecord;
use crate::operation::{Deployer, Run, describe_exit, tail};
use crate::phase::{Phase, Slot};
use crate::source::Source;

/// Where an operation is going: what each step describes and acts on.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Course<'a> {
    /// The release brought live.
    pub(crate) id: &'a str,
    /// The release live before.
    pub(crate) previous: Option<&'a str>,
    /// The slot the release runs in.
    pub(crate) to: Slot,
    /// The slot the previous release runs in.
    pub(crate) from: Option<Slot>,
}

/// One phase as a value: it says what it would do (for `plan`) and does it (for `deploy`), so
/// the two cannot drift apart.
pub(crate) trait Step: Sync {
    /// Which phase it is (journal, hooks, reports).
    fn phase(&self) -> Phase;
    /// What it would do, in one sentence.
    fn describe(&self, d: &Deployer, c: &Course<'_>) -> String;
    /// Does it: Ok with a detail for the report (`"skipped"` when it did nothing).
    fn run(&self, d: &Deployer, c: &Course<'_>, run: &mut Run) -> Result<Option<String>, String>;
}

/// The steps of `op`, in order: the one list `plan` describes and `deploy` runs.
pub(crate) fn steps(d: &Deployer, op: Operation) -> Vec<&'static dyn Step> {
    let mut steps: Vec<&'static dyn Step> = Vec::new();
    if op == Operation::Deploy {
        steps.extend([&Preflight as &dyn Step, &Backup, &Build]);
    }
    steps.extend([&Switch as &dyn Step, &Validate]);
    if op == Operation::Deploy && d.manifest.deploy.perf_gate {
        steps.push(&Perf);
    }
    if op == Operation::Deploy && !d.manifest.deploy.stable_for.is_zero() {
        steps.push(&Stable);
    }
    steps.push(&Commit);
    steps
}

struct Preflight;

impl Step for Preflight {
    fn phase(&self) -> Phase {
        Phase::Preflight
    }
    fn describe(&self, d: &Deployer, _c: &Course<'_>) -> String {
        match (&d.manifest.preflight, d.manifest.deploy.preflight) {
            (Some(p), true) => format!(
                "{} configured checks (the default set when none)",
                p.check.len()
            ),
            _ => "skipped (no [preflight] table or deploy.preflight = false)".to_owned(),
        }
    }
    fn run(&self, d: &Deployer, _c: &Course<'_>, _run: &mut Run) -> Result<Option<String>, String> {
        d.preflight()
    }
}

struct Backup;

impl Step for Backup {
    fn phase(&self) -> Phase {
        Phase::Backup
    }
    fn describe(&self, d: &Deployer, _c: &Course<'_>) -> String {
        if !d.manifest.deploy.backup {
            return "skipped (deploy.backup = false)".to_owned();
        }
        let (sources, dest) = d.backup_target();
        format!(
            "archive {} to {}",
            sources
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", "),
            dest.display()
        )
    }
    fn run(&self, d: &Deployer, c: &Course<'_>, run: &mut Run) -> Result<Option<String>, String> {
        let made = d.backup(c.id)?;
        if let Some(archive) = &made {
            d.journal(JournalEntry::BackupMade {
                at: d.now(),
                archive: archive.clone(),
            })
            .map_err(|e| e.to_string())?;
        }
        let detail = made.as_ref().map(|p| p.display().to_string());
        run.backup = made;
        Ok(detail.or(Some("skipped".to_owned())))
    }
}

struct Build;

impl Step for Build {
    fn phase(&self) -> Phase {
        Phase::Build
    }
    fn describe(&self, d: &Deployer, c: &Course<'_>) -> String {
        let s = &d.manifest.service;
        format!(
            "{} in {}, built in {}{}; stage {}{}",
            if s.build.is_empty() {
                "no build command".to_owned()
            } else {
                format!("run {:?}", s.build)
            },
            d.describe_source(),
            d.layout.build_dir(c.id).display(),
            if s.build_cache.is_empty() {
                String::new()
            } else {
                format!(" (build cache {:?})", s.build_cache)
            },
            d.layout.release_dir(c.id).display(),
            s.artifact
                .as_ref()
                .map(|a| format!("; check artifact {}", a.path.display()))
                .unwrap_or_default()
        )
    }
    fn run(&self, d: &Deployer, c: &Course<'_>, run: &mut Run) -> Result<Option<String>, String> {
        let source = run.source.clone().unwrap_or(Source::Copy);
        d.build_and_stage(c.id, &source, run.commit.as_deref())
            .map(Some)
    }
}

struct Switch;

impl Step for Switch {
    fn phase(&self) -> Phase {
        Phase::Switch
    }
    fn describe(&self, d: &Deployer, c: &Course<'_>) -> String {
        let service = c.to.service_name(&d.manifest.service.name);
        d.strategy().describe_switch(d, c.id, &service, c.to)
    }
    fn run(&self, d: &Deployer, c: &Course<'_>, _run: &mut Run) -> Result<Option<String>, String> {
        d.strategy().switch(d, c.id, c.to, c.from).map(Some)
    }
}

struct Validate;

impl Step for Validate {
    fn phase(&self) -> Phase {
        Phase::Validate
    }
    fn describe(&self, d: &Deployer, c: &Course<'_>) -> String {
        format!(
            "suite {:?} against {}",
            d.manifest.deploy.validate_suite,
            d.target(c.id, c.to).base_url
        )
    }
    fn run(&self, d: &Deployer, c: &Course<'_>, _run: &mut Run) -> Result<Option<String>, String> {
        d.env
            .health
            .validate(&d.target(c.id, c.to), d.manifest.deploy.validate_timeout)
            .map(|()| None)
    }
}

struct Perf;

impl Step for Perf {
    fn phase(&self) -> Phase {
        Phase::Perf
    }
    fn describe(&self, _d: &Deployer, _c: &Course<'_>) -> String {
        "load the new release and compare with the baseline".to_owned()
    }
    fn run(&self, d: &Deployer, c: &Course<'_>, _run: &mut Run) -> Result<Option<String>, String> {
        d.env.perf.check(&d.target(c.id, c.to)).map(Some)
    }
}

struct Stable;

impl Step for Stable {
    fn phase(&self) -> Phase {
        Phase::Stable
    }
    fn describe(&self, d: &Deployer, c: &Course<'_>) -> String {
        format!(
            "ready suite every 300ms for {} against {}, {} must not restart",
            humantime::format_duration(d.manifest.deploy.stable_for),
            d.target(c.id, c.to).base_url,
            c.to.service_name(&d.manifest.service.name)
        )
    }
    fn run(&self, d: &Deployer, c: &Course<'_>, _run: &mut Run) -> Result<Option<String>, String> {
        d.stable_for(c.id, c.to, d.manifest.deploy.stable_for)
            .map(Some)
    }
}

struct Commit;

impl Step for Commit {
    fn phase(&self) -> Phase {
        Phase::Commit
    }
    fn describe(&self, d: &Deployer, c: &Course<'_>) -> String {
        let name = &d.manifest.service.name;
        format!(
            "record {} as good{}; keep {} releases",
            c.id,
            c.from
                .filter(|f| *f != c.to)
                .map(|f| if d.keeps_standby() {
                    format!(
                        ", keep {} running as the warm standby",
                        f.service_name(name)
                    )
                } else {
                    format!(", drain and stop {}", f.service_name(name))
                })
                .unwrap_or_default(),
            d.manifest.layout.keep_releases
        )
    }
    fn run(&self, d: &Deployer, c: &Course<'_>, _run: &mut Run) -> Result<Option<String>, String> {
        d.commit(c.id, c.to, c.from, c.previous)
            .map(Some)
            .map_err(|e| e.to_string())
    }
}

impl Deployer {
    pub(crate) fn preflight(&self) -> Result<Option<String>, String> {
        if self.manifest.deploy.preflight {
            // Limits the host cannot give fail here, naming the limit, not at start as EPERM.
            let mut spec = process_control::ServiceSpec::new(&self.manifest.service.name, ["-"]);
            self.manifest.process.apply_to(&mut spec);
            let systemd =
                self.manifest.process.manager == Some(process_control::ManagerKind::Systemd);
            process_control::check_limits(&spec, systemd).map_err(|e| e.to_string())?;
        }
        let Some(config) = self
            .manifest
            .preflight
            .as_ref()
            .filter(|_| self.manifest.deploy.preflight)
        else {
            return Ok(Some("skipped".to_owned()));
        };
        let ctx = preflight_checks::BuildContext {
            base_dir: self.manifest.dir.clone(),
            secrets: self
                .manifest
                .service
                .secrets
                .iter()
                .map(|(k, v)| (k.clone(), v.to_string()))
                .collect(),
            env: [(
                crate::orphans::MARKER.to_owned(),
                crate::orphans::marker_value(self.layout.root()),
            )]
            .into(),
        };
        let checks = config.build(&ctx).map_err(|e| e.to_string())?;
        let report = preflight_checks::Runner::new()
            .with_checks(checks)
            .with_ignore(config.ignore_list())
            .run();
        let failed: Vec<String> = report
            .checks
            .iter()
            .filter(|c| c.status == preflight_checks::CheckStatus::Fail)
            .map(|c| format!("{}: {}", c.id, c.message))
            .collect();
        if failed.is_empty() {
            Ok(Some(format!(
                "{} checks, {}",
                report.checks.len(),
                report.status.as_str()
            )))
        } else {
            Err(failed.join("; "))
        }
    }

    /// The layout root has room for a release: twice the current release (its build and its
    /// staged copy), at least [`MIN_FREE`]. On by default, so that a full disk stops a deploy
    /// before it writes anything rather than in the middle of its build.
    pub(crate) fn check_room(&self) -> Result<(), String> {
        let root = self.layout.root();
        let Ok(stat) = rustix::fs::statvfs(root) else {
            return Ok(());
        };
        let free = stat.f_bavail.saturating_mul(stat.f_frsize);
        let current = self
            .current()
            .map(|id| dir_size(&self.layout.release_dir(&id)))
            .unwrap_or(0);
        let need = current.saturating_mul(2).max(MIN_FREE);
        if free < need {
            return Err(format!(
                "disk-free: {} has {} MiB free, below the {} MiB a release needs (twice the current release, at least {} MiB): free some space (old backups in {}, releases) before deploying",
                root.display(),
                free >> 20,
                need >> 20,
                MIN_FREE >> 20,
                self.backup_target().1.display()
            ));
        }
        Ok(())
    }

    /// What the backup phase archives and where to: `[backup] paths` (else `<root>/shared`)
    /// to `[backup] dest` (else `<root>/backups`), relative paths against the manifest. The
    /// same rule `cutover-backup` applies through live-deployment, and `plan` shows.
    pub(crate) fn backup_target(&self) -> (Vec<PathBuf>, PathBuf) {
        let b = self.manifest.backup.as_ref();
        let paths = b.map(|b| b.paths.clone()).unwrap_or_default();
        let dest = b.and_then(|b| b.dest.clone());
        (
            live_deployment::backup_sources(&self.manifest.dir, &self.layout, &paths),
            live_deployment::backup_dest(&self.manifest.dir, &self.layout, dest.as_deref()),
        )
    }

    pub(crate) fn backup(&self, id: &str) -> Result<Option<PathBuf>, String> {
        if !self.manifest.deploy.backup {
            return Ok(None);
        }
        let config = self.manifest.backup.as_ref();
        let (sources, dest) = self.backup_target();
        // What killed backups left (their writer is gone): swept now, not an hour later.
        match backup_archive::sweep_partials(&dest) {
            Ok(swept) if !swept.is_empty() => {
                tracing::info!(count = swept.len(), dest = %dest.display(), "removed partial backups of runs that died");
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(%e, "cannot sweep partial backups"),
        }
        let sources: Vec<PathBuf> = sources
            .into_iter()
            .filter(|p: &PathBuf| p.exists())
            .collect();
        if sources.is_empty() {
            return Ok(None);
        }
        let mut opts = backup_archive::CreateOptions::new(sources, dest.clone());
        // A release id can come back (a failed release is removed, and the next deploy in the
        // same second gets its id again), so the backup id is made unique here.
        let mut backup_id = format!("pre-{id}");
        let mut n = 2;
        while backup_archive::id_in_use(&dest, &backup_id) {
            backup_id = format!("pre-{id}.{n}");
            n += 1;
        }
        opts.id = Some(backup_id);
        opts.service = Some(self.manifest.service.name.clone());
        opts.release = self.current();
        if let Some(config) = config {
            opts.include = config.include.clone();
            opts.exclude = config.exclude.clone();
            opts.compression = config.compression;
            opts.level = config.level;
        }
        let made = backup_archive::create(&opts, &backup_archive::NoProgress)
            .map_err(|e| e.to_string())?;
        if let Some(config) = config {
            let policy = config.retention();
            if policy != backup_archive::RetentionPolicy::default()
                && let Err(e) = backup_archive::prune(&dest, &policy, false)
            {
                tracing::warn!(%e, "pruning backups failed");
            }
        }
        Ok(Some(made.archive))
    }

    pub(crate) fn build_and_stage(
        &self,
        id: &str,
        source: &Source,
        commit: Option<&str>,
    ) -> Result<String, String> {
        let dir = self.layout.release_dir(id);
        std::fs::create_dir_all(&dir)
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        let build_dir = self.layout.build_dir(id);
        let _ = std::fs::remove_dir_all(&build_dir);
        let built = self.build_in(id, source, &build_dir);
        let staged = built.and_then(|mut detail| {
            self.stage(id, &build_dir, &dir, commit).map(|more| {
                detail.extend(more);
                detail
            })
        });
        self.cache_out(&build_dir);
        let _ = std::fs::remove_dir_all(&build_dir);
        let _ = std::fs::remove_dir(self.layout.builds_dir());
        staged.map(|detail| detail.join("; "))
    }

    /// Exports the source into `build_dir`, brings the build caches in and runs the build.
    fn build_in(&self, id: &str, source: &Source, build_dir: &Path) -> Result<Vec<String>, String> {
        let service = &self.manifest.service;
        let mut detail = vec![self.export_source(source, build_dir)?];
        if let Some(warning) = source.dirty_warning() {
            detail.push(format!("warning: {warning}"));
        }
        let cached = self.cache_in(build_dir);
        if !service.build_cache.is_empty() {
            detail.push(if cached.is_empty() {
                "build cache empty (first build)".to_owned()
            } else {
                format!("build cache {}", cached.join(", "))
            });
        }
        if !service.build.is_empty() {
            let argv = template::fill_all(&service.build, &self.placeholders(id, None))
                .map_err(|e| format!("[service] build: {e}"))?;
            let env = self.hook_env("build", "build", id, None);
            let started = std::time::Instant::now();
            let result = self.env.runner.run(&CommandRequest {
                argv: &argv,
                cwd: build_dir,
                env: &env,
                timeout: self.manifest.deploy.build_timeout,
            })?;
            if !result.success() {
                return Err(format!(
                    "build command {:?} {}: {}",
                    argv,
                    describe_exit(&result),
                    tail(&result.stderr, 400)
                ));
            }
            detail.push(format!(
                "built with {:?} in {:.1}s",
                argv.first().cloned().unwrap_or_default(),
                started.elapsed().as_secs_f64()
            ));
        }
        Ok(detail)
    }

    /// Puts the build's product into the release directory `dir` and writes its record.
    fn stage(
        &self,
        id: &str,
        build_dir: &Path,
        dir: &Path,
        commit: Option<&str>,
    ) -> Result<Vec<String>, String> {
        let service = &self.manifest.service;
        let mut detail = Vec::new();
        let mut artifact = None;
        if let Some(spec) = &service.artifact {
            let from = build_dir.join(&spec.path);
            let to = dir.join(&spec.path);
            if !from.exists() {
                return Err(format!(
                    "artifact {} does not exist after the build",
                    from.display()
                ));
            }
            copy_tree(&from, &to)
                .map_err(|e| format!("cannot copy {} to {}: {e}", from.display(), to.display()))?;
            let meta = std::fs::metadata(&to).map_err(|e| format!("{}: {e}", to.display()))?;
            let bytes = if meta.is_dir() {
                dir_size(&to)
            } else {
                meta.len()
            };
            if spec.min_bytes.is_some_and(|min| bytes < min) {
                return Err(format!(
                    "artifact {} is {bytes} bytes, below min_bytes {}",
                    spec.path.display(),
                    spec.min_bytes.unwrap_or_default()
                ));
            }
            if spec.max_bytes.is_some_and(|max| bytes > max) {
                return Err(format!(
                    "artifact {} is {bytes} bytes, above max_bytes {}",
                    spec.path.display(),
                    spec.max_bytes.unwrap_or_default()
                ));
            }
            if spec.executable {
                use std::os::unix::fs::PermissionsExt;
                if !meta.is_file() || meta.permissions().mode() & 0o111 == 0 {
                    return Err(format!(
                        "artifact {} is not an executable file",
                        spec.path.display()
                    ));
                }
            }
            detail.push(format!("artifact {} ({bytes} bytes)", spec.path.display()));
            artifact = Some((spec.path.clone(), bytes));
        } else {
            // No artifact: the whole build tree is the release, its build caches copied in
            // (the cache keeps the originals for the next build).
            self.cache_out(build_dir);
            move_entries(build_dir, dir)
                .map_err(|e| format!("cannot move the build into {}: {e}", dir.display()))?;
            for entry in &service.build_cache {
                let rel = crate::source::cache_path(entry);
                let cached = self.layout.build_cache_dir().join(&rel);
                if cached.is_dir() {
                    copy_tree(&cached, &dir.join(&rel)).map_err(|e| {
                        format!("cannot copy the build cache {entry} into the release: {e}")
                    })?;
                }
            }
            detail.push("the build tree is the release (no artifact configured)".to_owned());
        }
        self.layout
            .link_shared(id, &self.manifest.layout.shared)
            .map_err(|e| e.to_string())?;
        self.layout
            .write_record(&ReleaseRecord {
                id: id.to_owned(),
                service: service.name.clone(),
                commit: commit.map(str::to_owned),
                created: self.now(),
                start: service.start.clone(),
                env: service.env.clone(),
                set_env: self.set_env.clone(),
                secrets: service.secrets.clone(),
                artifact,
            })
            .map_err(|e| e.to_string())?;
        detail.push(format!("staged {}", dir.display()));
        Ok(detail)
    }
}

fn copy_tree(from: &Path, to: &Path) -> std::io::Result<()> {
    if let Some(parent) = to.parent() {
        std::fs::create_dir_all(parent)?;
    }
    let meta = std::fs::symlink_metadata(from)?;
    if meta.is_dir() {
        std::fs::create_dir_all(to)?;
        for entry in std::fs::read_dir(from)? {
            let entry = entry?;
            copy_tree(&entry.path(), &to.join(entry.file_name()))?;
        }
        Ok(())
    } else if meta.file_type().is_symlink() {
        std::os::unix::fs::symlink(std::fs::read_link(from)?, to)
    } else {
        std::fs::copy(from, to).map(drop)
    }
}

/// The least free space a deploy starts with on the layout root.
const MIN_FREE: u64 = 64 << 20;

/// Moves every entry of `from` into `to` (renames: both are under the layout root).
fn move_entries(from: &Path, to: &Path) -> std::io::Result<()> {
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        std::fs::rename(entry.path(), to.join(entry.file_name()))?;
    }
    Ok(())
}

fn dir_size(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .map(|e| match e.metadata() {
                    Ok(m) if m.is_dir() => dir_size(&e.path()),
                    Ok(m) => m.len(),
                    Err(_) => 0,
                })
                .sum()
        })
        .unwrap_or(0)
}
