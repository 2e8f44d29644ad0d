//! Retention, with restic's `forget` semantics: each rule walks the backups newest first and
//! keeps the newest backup of each of its last N distinct periods (days, ISO weeks, months, in
//! UTC); a backup kept by any rule is kept. On top of that the newest verified backup is never
//! removed, whatever the rules say.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tracing::instrument;

use crate::BackupError;
use crate::leftovers::{DEFAULT_LEFTOVER_AGE, Leftover, sweep_leftovers};
use crate::list::list;

/// How many backups to keep. A rule at 0 keeps nothing by itself.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RetentionPolicy {
    /// Keep the N newest backups.
    pub keep_last: u32,
    /// Keep the newest backup of each of the last N days that have one.
    pub keep_daily: u32,
    /// Keep the newest backup of each of the last N ISO weeks that have one.
    pub keep_weekly: u32,
    /// Keep the newest backup of each of the last N months that have one.
    pub keep_monthly: u32,
}

impl RetentionPolicy {
    /// Whether every rule is 0 (such a policy would remove everything, so it is refused).
    pub fn is_empty(&self) -> bool {
        self.keep_last == 0
            && self.keep_daily == 0
            && self.keep_weekly == 0
            && self.keep_monthly == 0
    }
}

/// A backup as retention sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    /// The backup id.
    pub id: String,
    /// Recorded creation time.
    pub created: jiff::Timestamp,
    /// Whether its last verification passed.
    pub verified: bool,
}

/// The verdict on one backup.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Decision {
    /// The backup id.
    pub id: String,
    /// Recorded creation time.
    pub created: jiff::Timestamp,
    /// Kept or not.
    pub keep: bool,
    /// Every rule that keeps it (`last`, `daily`, `weekly`, `monthly`, `newest verified`).
    pub reasons: Vec<String>,
}

/// Maps a backup (its time, its rank newest first) to the period it falls in.
type Bucket = fn(&jiff::Timestamp, usize) -> (i32, i32);
/// A rule: its name, how many periods it still keeps, its bucket function, the last period kept.
type Rule = (&'static str, u32, Bucket, Option<(i32, i32)>);

/// Applies `policy` to `backups` (any order); returns decisions newest first.
pub fn plan_retention(
    policy: &RetentionPolicy,
    backups: &[Candidate],
) -> Result<Vec<Decision>, BackupError> {
    if policy.is_empty() {
        return Err(BackupError::EmptyPolicy);
    }
    let mut sorted: Vec<&Candidate> = backups.iter().collect();
    sorted.sort_by(|a, b| b.created.cmp(&a.created).then_with(|| b.id.cmp(&a.id)));
    let mut rules: [Rule; 4] = [
        (
            "last",
            policy.keep_last,
            |_, i| (i32::try_from(i).unwrap_or(i32::MAX), 0),
            None,
        ),
        (
            "daily",
            policy.keep_daily,
            |t, _| {
                let d = t.to_zoned_datetime(jiff::tz::TimeZone::UTC).date();
                (i32::from(d.year()), i32::from(d.day_of_year()))
            },
            None,
        ),
        (
            "weekly",
            policy.keep_weekly,
            |t, _| {
                let w = t
                    .to_zoned_datetime(jiff::tz::TimeZone::UTC)
                    .date()
                    .iso_week_date();
                (i32::from(w.year()), i32::from(w.week()))
            },
            None,
        ),
        (
            "monthly",
            policy.keep_monthly,
            |t, _| {
                let d = t.to_zoned_datetime(jiff::tz::TimeZone::UTC).date();
                (i32::from(d.year()), i32::from(d.month()))
            },
            None,
        ),
    ];
    let newest_verified = sorted.iter().find(|c| c.verified).map(|c| c.id.clone());
    let mut out = Vec::with_capacity(sorted.len());
    for (i, c) in sorted.iter().enumerate() {
        let mut reasons = Vec::new();
        for (name, count, bucket, last) in rules.iter_mut() {
            if *count == 0 {
                continue;
            }
            let b = bucket(&c.created, i);
            if *last != Some(b) {
                *last = Some(b);
                *count -= 1;
                reasons.push((*name).to_owned());
            }
        }
        if newest_verified.as_deref() == Some(c.id.as_str()) {
            reasons.push("newest verified".to_owned());
        }
        out.push(Decision {
            id: c.id.clone(),
            created: c.created,
            keep: !reasons.is_empty(),
            reasons,
        });
    }
    Ok(out)
}

/// What `prune` did (or would do).
#[derive(Debug, Clone, Serialize)]
pub struct PruneReport {
    /// Whether this was a dry run (nothing removed).
    pub dry_run: bool,
    /// Every backup's verdict, newest first.
    pub decisions: Vec<Decision>,
    /// Ids removed (or that would be).
    pub removed: Vec<String>,
    /// Temporaries of killed runs found, each with its verdict (the rules are in
    /// [`sweep_leftovers`](crate::sweep_leftovers)).
    pub leftovers: Vec<Leftover>,
}

/// How `prune` runs.
#[derive(Debug, Clone)]
pub struct PruneOptions {
    /// Only report; remove nothing.
    pub dry_run: bool,
    /// The minimum age of a leftover of a killed run before it is removed (default one hour).
    pub leftover_age: Duration,
    /// More directories to sweep for leftovers besides the backup directory: the parents of
    /// restore targets, where restore stages.
    pub leftover_dirs: Vec<PathBuf>,
}

impl Default for PruneOptions {
    fn default() -> Self {
        Self {
            dry_run: false,
            leftover_age: DEFAULT_LEFTOVER_AGE,
            leftover_dirs: Vec::new(),
        }
    }
}

/// Applies `policy` to the backups in `dir`, removing (sidecar first, then archive) those no
/// rule keeps, and the leftovers of killed runs in `dir` older than an hour whose run has
/// exited, unless `dry_run`. [`prune_with`] takes more options.
pub fn prune(
    dir: &Path,
    policy: &RetentionPolicy,
    dry_run: bool,
) -> Result<PruneReport, BackupError> {
    prune_with(
        dir,
        policy,
        &PruneOptions {
            dry_run,
            ..PruneOptions::default()
        },
    )
}

/// [`prune`] with options: the leftover age and more directories to sweep for leftovers.
#[instrument(skip_all, fields(dir = %dir.display(), dry_run = opts.dry_run))]
pub fn prune_with(
    dir: &Path,
    policy: &RetentionPolicy,
    opts: &PruneOptions,
) -> Result<PruneReport, BackupError> {
    let dry_run = opts.dry_run;
    let listing = list(dir)?;
    let candidates: Vec<Candidate> = listing
        .backups
        .iter()
        .map(|b| Candidate {
            id: b.id.clone(),
            created: b.created,
            verified: b.verified(),
        })
        .collect();
    let decisions = plan_retention(policy, &candidates)?;
    let mut removed = Vec::new();
    for d in decisions.iter().filter(|d| !d.keep) {
        if let Some(b) = listing.backups.iter().find(|b| b.id == d.id) {
            if !dry_run {
                // The sidecar goes first so that a half-removed backup never looks complete.
                std::fs::remove_file(&b.sidecar).map_err(BackupError::io("remove", &b.sidecar))?;
                std::fs::remove_file(&b.archive).map_err(BackupError::io("remove", &b.archive))?;
            }
            removed.push(d.id.clone());
        }
    }
    if !dry_run && !removed.is_empty() {
        crate::fsutil::sync_dir(dir)?;
    }
    let mut dirs = vec![dir.to_path_buf()];
    dirs.extend(opts.leftover_dirs.iter().cloned());
    dirs.dedup();
    let leftovers = sweep_leftovers(&dirs, opts.leftover_age, dry_run)?;
    tracing::info!(
        removed = removed.len(),
        leftovers = leftovers.iter().filter(|l| l.remove).count(),
        "pruned"
    );
    Ok(PruneReport {
        dry_run,
        decisions,
        removed,
        leftovers,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(id: &str, at: &str, verified: bool) -> Candidate {
        Candidate {
            id: id.to_owned(),
            created: at.parse().unwrap(),
            verified,
        }
    }

    fn kept(policy: RetentionPolicy, backups: &[Candidate]) -> Vec<String> {
        let mut k: Vec<String> = plan_retention(&policy, backups)
            .unwrap()
            .into_iter()
            .filter(|d| d.keep)
            .map(|d| d.id)
            .collect();
        k.sort();
        k
    }

    fn p(keep_last: u32, keep_daily: u32, keep_weekly: u32, keep_monthly: u32) -> RetentionPolicy {
        RetentionPolicy {
            keep_last,
            keep_daily,
            keep_weekly,
            keep_monthly,
        }
    }

    /// Two backups a day on 2025-01-01 .. 2025-03-31 (ids are the dates), none verified.
    fn season() -> Vec<Candidate> {
        let mut out = Vec::new();
        let mut day: jiff::civil::Date = "2025-01-01".parse().unwrap();
        let end: jiff::civil::Date = "2025-03-31".parse().unwrap();
        while day <= end {
            for hour in [3, 15] {
                let ts = day
                    .at(hour, 0, 0, 0)
                    .to_zoned_datetime(jiff::tz::TimeZone::UTC)
                    .unwrap()
                    .timestamp();
                out.push(Candidate {
                    id: format!("{day}T{hour:02}"),
                    created: ts,
                    verified: false,
                });
            }
            day = day.tomorrow().unwrap();
        }
        out
    }

    #[test]
    fn table_of_policies_over_synthetic_dates() {
        let s = season();
        let cases: Vec<(RetentionPolicy, Vec<&str>)> = vec![
            (
                p(3, 0, 0, 0),
                vec!["2025-03-30T15", "2025-03-31T03", "2025-03-31T15"],
            ),
            (p(0, 2, 0, 0), vec!["2025-03-30T15", "2025-03-31T15"]),
            // 2025-03-31 is a Monday: ISO week 14 holds only it, week 13 ends on Sunday 03-30.
            (p(0, 0, 2, 0), vec!["2025-03-30T15", "2025-03-31T15"]),
            (
                p(0, 0, 0, 3),
                vec!["2025-01-31T15", "2025-02-28T15", "2025-03-31T15"],
            ),
            // Rules overlap: a backup kept by several is counted once.
            (
                p(1, 2, 0, 2),
                vec!["2025-02-28T15", "2025-03-30T15", "2025-03-31T15"],
            ),
            // More periods asked than exist: everything that is newest of its month is kept.
            (
                p(0, 0, 0, 12),
                vec!["2025-01-31T15", "2025-02-28T15", "2025-03-31T15"],
            ),
        ];
        for (policy, expected) in cases {
            let mut expected: Vec<String> = expected.into_iter().map(str::to_owned).collect();
            expected.sort();
            assert_eq!(kept(policy, &s), expected, "{policy:?}");
        }
    }

    #[test]
    fn newest_verified_backup_is_never_removed() {
        let b = vec![
            c("old-verified", "2025-01-01T00:00:00Z", true),
            c("mid-verified", "2025-01-02T00:00:00Z", true),
            c("new-unverified", "2025-01-03T00:00:00Z", false),
        ];
        assert_eq!(
            kept(p(1, 0, 0, 0), &b),
            vec!["mid-verified", "new-unverified"]
        );
        let d = plan_retention(&p(1, 0, 0, 0), &b).unwrap();
        assert_eq!(d[1].reasons, vec!["newest verified"]);
        assert!(!d[2].keep);
    }

    #[test]
    fn order_of_input_does_not_matter_and_empty_policy_is_refused() {
        let mut s = season();
        let a = kept(p(2, 3, 1, 1), &s);
        s.reverse();
        assert_eq!(kept(p(2, 3, 1, 1), &s), a);
        assert!(matches!(
            plan_retention(&p(0, 0, 0, 0), &s),
            Err(BackupError::EmptyPolicy)
        ));
        assert!(plan_retention(&p(1, 0, 0, 0), &[]).unwrap().is_empty());
    }
}
