//! The `[backup]` table of `cutover.toml`, owned by this crate.

use std::path::PathBuf;

use serde::{Deserialize, Deserializer, Serialize};

use crate::{Compression, RetentionPolicy};

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
/// compression = "zstd"              # or "gzip" (the default)
/// level = 3                         # gzip 0-9 (default 6), zstd 1-19 (default 3)
/// ```
///
/// A `level` outside its compression's range is refused when the table is read, naming the
/// level, the compression and the valid range.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, schemars::JsonSchema)]
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
    /// How archives are compressed: `gzip` (`<id>.tar.gz`, the default, readable by
    /// `tar -xzf` everywhere) or `zstd` (`<id>.tar.zst`, several times faster and smaller,
    /// readable by `tar --zstd -xf`).
    #[serde(default)]
    pub compression: Compression,
    /// The compression level: gzip 0-9 (default 6), zstd 1-19 (default 3).
    #[serde(default)]
    pub level: Option<u32>,
    /// Restore refuses archives with more entries than this (default 1,000,000).
    #[serde(default)]
    pub max_entries: Option<u64>,
    /// Restore refuses archives with more content bytes than this (default 64 GiB); an
    /// integer or a size such as `"10GB"`.
    #[serde(default, deserialize_with = "host_util::size::serde::option_bytes")]
    #[schemars(schema_with = "host_util::size::serde::option_schema")]
    pub max_bytes: Option<u64>,
}

/// The same table as [`BackupConfig`], read without its checks; [`BackupConfig`]'s
/// `Deserialize` reads this and then checks it, so every reader of `[backup]` gets the checks.
/// (`remote` makes the compiler hold the two field lists equal.)
#[derive(Deserialize)]
#[serde(remote = "BackupConfig", deny_unknown_fields)]
struct Unchecked {
    #[serde(default)]
    paths: Vec<PathBuf>,
    #[serde(default)]
    include: Vec<String>,
    #[serde(default)]
    exclude: Vec<String>,
    #[serde(default)]
    dest: Option<PathBuf>,
    #[serde(default)]
    keep_last: u32,
    #[serde(default)]
    keep_daily: u32,
    #[serde(default)]
    keep_weekly: u32,
    #[serde(default)]
    keep_monthly: u32,
    #[serde(default)]
    compression: Compression,
    #[serde(default)]
    level: Option<u32>,
    #[serde(default)]
    max_entries: Option<u64>,
    #[serde(default, deserialize_with = "host_util::size::serde::option_bytes")]
    max_bytes: Option<u64>,
}

impl<'de> Deserialize<'de> for BackupConfig {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let config = Unchecked::deserialize(deserializer)?;
        config.validate().map_err(|e| {
            serde::de::Error::custom(format!(
                "`level`: {e} (set `level` within the range of `compression`, or remove it)"
            ))
        })?;
        Ok(config)
    }
}

impl BackupConfig {
    /// `dest` when set, else `default` (a caller resolves a relative `dest` against the
    /// manifest's directory).
    pub fn dest_or(&self, default: &std::path::Path) -> PathBuf {
        self.dest.clone().unwrap_or_else(|| default.to_path_buf())
    }

    /// Checks what serde cannot: that `level` is within the range of `compression`.
    ///
    /// # Errors
    /// [`crate::BackupError::InvalidLevel`] naming the level, the compression and the range.
    pub fn validate(&self) -> Result<(), crate::BackupError> {
        self.compression.resolve_level(self.level).map(|_| ())
    }

    /// The level to compress at: `level`, else the default of `compression`.
    pub fn level_or_default(&self) -> u32 {
        self.level
            .unwrap_or_else(|| self.compression.default_level())
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
        assert_eq!(c.compression, Compression::Gzip);
        assert_eq!(c.level, None);
        assert_eq!(c.level_or_default(), 6);
        let err = toml::from_str::<BackupConfig>("keep_lats = 3\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("keep_lats"), "{err}");
    }

    #[test]
    fn compression_and_level_are_read_and_checked_per_codec() {
        let c: BackupConfig = toml::from_str("compression = \"zstd\"\n").unwrap();
        assert_eq!(c.compression, Compression::Zstd);
        assert_eq!(c.level_or_default(), 3);
        let c: BackupConfig = toml::from_str("compression = \"zstd\"\nlevel = 19\n").unwrap();
        assert_eq!(c.level_or_default(), 19);
        let c: BackupConfig = toml::from_str("level = 0\n").unwrap();
        assert_eq!(
            (c.compression, c.level_or_default()),
            (Compression::Gzip, 0)
        );
        for (text, wanted) in [
            (
                "compression = \"zstd\"\nlevel = 22\n",
                "level 22 is out of range for zstd: use 1-19",
            ),
            (
                "compression = \"zstd\"\nlevel = 0\n",
                "level 0 is out of range for zstd: use 1-19",
            ),
            ("level = 10\n", "level 10 is out of range for gzip: use 0-9"),
        ] {
            let err = toml::from_str::<BackupConfig>(text)
                .unwrap_err()
                .to_string();
            assert!(err.contains(wanted), "{text}: {err}");
            assert!(err.contains("`level`"), "names the key: {err}");
        }
        let err = toml::from_str::<BackupConfig>("compression = \"xz\"\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("xz") && err.contains("zstd"), "{err}");
        // What is written reads back the same.
        let c = BackupConfig {
            compression: Compression::Zstd,
            level: Some(5),
            ..BackupConfig::default()
        };
        let text = toml::to_string(&c).unwrap();
        assert_eq!(toml::from_str::<BackupConfig>(&text).unwrap(), c);
    }
}
