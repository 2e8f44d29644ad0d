//! The phases before the switch: preflight, backup, build and stage.

use std::path::{Path, PathBuf};

use process_control::template;

use crate::env::CommandRequest;
use crate::journal::JournalEntry;
use crate::layout::ReleaseRecord;
use crate::operation::{Deployer, Run, describe_exit, tail};
use crate::phase::{Phase, Slot};

impl Deployer {
    pub(crate) fn phase_body(
        &self,
        run: &mut Run,
        phase: Phase,
        id: &str,
        to_slot: Slot,
        from_slot: Option<Slot>,
        previous: Option<&str>,
    ) -> Result<Option<String>, String> {
        match phase {
            Phase::Preflight => self.preflight(),
            Phase::Backup => {
                let made = self.backup(id)?;
                if let Some(archive) = &made {
                    self.journal(JournalEntry::BackupMade {
                        at: self.now(),
                        archive: archive.clone(),
                    })
                    .map_err(|e| e.to_string())?;
                }
                let detail = made.as_ref().map(|p| p.display().to_string());
                run.backup = made;
                Ok(detail.or(Some("skipped".to_owned())))
            }
            Phase::Build => self.build_and_stage(id, run.commit.as_deref()).map(Some),
            Phase::Switch => self.switch_to(id, to_slot, from_slot).map(Some),
            Phase::Validate => self
                .env
                .health
                .validate(
                    &self.target(id, to_slot),
                    self.manifest.deploy.validate_timeout,
                )
                .map(|()| None),
            Phase::Perf => self.env.perf.check(&self.target(id, to_slot)).map(Some),
            Phase::Commit => self
                .commit(id, to_slot, from_slot, previous)
                .map(Some)
                .map_err(|e| e.to_string()),
        }
    }

    pub(crate) fn preflight(&self) -> Result<Option<String>, String> {
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
        while backup_archive::archive_path(&dest, &backup_id).exists() {
            backup_id = format!("pre-{id}.{n}");
            n += 1;
        }
        opts.id = Some(backup_id);
        opts.service = Some(self.manifest.service.name.clone());
        opts.release = self.current();
        if let Some(config) = config {
            opts.include = config.include.clone();
            opts.exclude = config.exclude.clone();
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

    pub(crate) fn build_and_stage(&self, id: &str, commit: Option<&str>) -> Result<String, String> {
        let dir = self.layout.release_dir(id);
        std::fs::create_dir_all(&dir)
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        let service = &self.manifest.service;
        let mut detail = Vec::new();
        if !service.build.is_empty() {
            let argv = template::fill_all(&service.build, &self.placeholders(id, None))
                .map_err(|e| format!("[service] build: {e}"))?;
            let env = self.hook_env("build", "build", id, None);
            let result = self.env.runner.run(&CommandRequest {
                argv: &argv,
                cwd: &service.source,
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
                "built with {:?}",
                argv.first().cloned().unwrap_or_default()
            ));
        }
        let mut artifact = None;
        if let Some(spec) = &service.artifact {
            let from = service.source.join(&spec.path);
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
        Ok(detail.join("; "))
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
