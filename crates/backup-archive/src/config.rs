//! The `[backup]` table of `cutover.toml`, owned by this crate.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::RetentionPolicy;

/// The `[backup]` table.
///
/// ```toml
/// [backup]
/// paths = ["config", "data"]        # what to archive, relative to the manifest
/// exclude = ["*.log", "data/cache/**"]
/// dest = "backups"                  # where archives and sidecars go (default <root>/backups)
/// keep_last = 5
/// keep_daily = 7
/// keep_weekly = 4
/// keep_monthly = 6
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct BackupConfig {
    /// Files and directories to archive (relative paths resolve against the manifest).
    #[serde(default)]
    pub paths: Vec<PathBuf>,
    /// When not empty, only files matching one of these globs are archived.
    #[serde(default)]
    pub include: Vec<String>,
    /// Globs of paths to leave out (a glob without `/` matches a base name anywhere).
    #[serde(default)]
    pub exclude: Vec<String>,
    /// The backup directory (relative to the manifest). Unset: the deployment's
    /// `<root>/backups` when the manifest describes one (as the deploy pipeline writes), else
    /// `backups` beside the manifest ([`Self::dest_or`]).
    #[serde(default)]
    pub dest: Option<PathBuf>,
    /// Keep the N newest backups.
    #[serde(default)]
    pub keep_last: u32,
    /// Keep the newest backup of each of the last N days.
    #[serde(default)]
    pub keep_daily: u32,
    /// Keep the newest backup of each of the last N ISO weeks.
    #[serde(default)]
    pub keep_weekly: u32,
    /// Keep the newest backup of each of the last N months.
    #[serde(default)]
    pub keep_monthly: u32,
    /// gzip level, 0-9 (default 6).
    #[serde(default = "default_level")]
    pub level: u32,
    /// Restore refuses archives with more entries than this (default 1,000,000).
    #[serde(default)]
    pub max_entries: Option<u64>,
    /// Restore refuses archives with more content bytes than this (default 64 GiB).
    #[serde(default)]
    pub max_bytes: Option<u64>,
}

fn default_level() -> u32 {
    6
}

impl Default for BackupConfig {
    fn default() -> Self {
        Self {
            paths: Vec::new(),
            include: Vec::new(),
            exclude: Vec::new(),
            dest: None,
            keep_last: 0,
            keep_daily: 0,
            keep_weekly: 0,
            keep_monthly: 0,
            level: default_level(),
            max_entries: None,
            max_bytes: None,
        }
    }
}

impl BackupConfig {
    /// `dest` when set, else `default` (a caller resolves a relative `dest` against the
    /// manifest's directory).
    pub fn dest_or(&self, default: &std::path::Path) -> PathBuf {
        self.dest.clone().unwrap_or_else(|| default.to_path_buf())
    }

    /// The retention rules of this table.
    pub fn retention(&self) -> RetentionPolicy {
        RetentionPolicy {
            keep_last: self.keep_last,
            keep_daily: self.keep_daily,
            keep_weekly: self.keep_weekly,
            keep_monthly: self.keep_monthly,
        }
    }

    /// The restore caps of this table.
    pub fn limits(&self) -> crate::Limits {
        let d = crate::Limits::default();
        crate::Limits {
            max_entries: self.max_entries.unwrap_or(d.max_entries),
            max_bytes: self.max_bytes.unwrap_or(d.max_bytes),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_with_defaults_and_rejects_unknown_keys() {
        let c: BackupConfig = toml::from_str("paths = [\"a\"]\nkeep_last = 3\n").unwrap();
        assert_eq!(c.dest, None);
        assert_eq!(
            c.dest_or("/srv/backups".as_ref()),
            PathBuf::from("/srv/backups")
        );
        assert_eq!(c.retention().keep_last, 3);
        assert_eq!(c.level, 6);
        let err = toml::from_str::<BackupConfig>("keep_lats = 3\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("keep_lats"), "{err}");
    }
}
