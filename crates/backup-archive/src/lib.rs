//! Backups that a rollback and an operator at 3 a.m. can trust: tar archives, compressed with
//! gzip (`<id>.tar.gz`, the default) or zstd (`<id>.tar.zst`), with a checksummed manifest of
//! every entry, written atomically, verified end to end, restored safely and pruned by
//! retention rules.
//!
//! # Theory of operation
//!
//! * **create** walks the sources (each stored under its base name, excludes applied), writes a
//!   tar stream and compresses it on every core: with gzip, in 4 MiB blocks, each block its own
//!   gzip member (pigz style; GNU `tar -xzf` and `gunzip` read the result; flate2 readers must
//!   use `MultiGzDecoder`); with zstd, through libzstd's own worker threads, a content checksum
//!   in every frame (`tar --zstd -xf` reads it). Every file is hashed (SHA-256) first, on every
//!   core; the manifest (`.cutover-manifest.json`: metadata plus every entry's path, type,
//!   size, mode, mtime, hash and link target) is the first entry, so readers check each entry
//!   the moment they have read it. The archive pass hashes again and fails if a file changed in
//!   between. The archive goes to a hidden temp file, is fsynced and renamed; then the sidecar
//!   `<id>.json` (metadata, archive SHA-256 and size) is renamed into place and the directory
//!   fsynced. The sidecar is the commit point: without it nothing counts as a backup.
//! * **verify** detects the compression from the file's first bytes (its magic number, not its
//!   name: [`Compression::detect`]), decompresses on one thread while another parses and
//!   hashes, compares every entry with the manifest as it goes and the whole file with the
//!   sidecar, and names the first bad entry.
//! * **restore** runs the same reader, with the same checks for either compression, and its
//!   own on every entry (normal relative paths only, symlinks that stay inside, hardlinks only to
//!   earlier files, no device or fifo nodes, no setuid/setgid, caps on entry count and size,
//!   nothing written through a symlink, files created `O_EXCL | O_NOFOLLOW`) into a fresh
//!   staging directory beside the target, then exchanges it with the target in one
//!   `renameat2(RENAME_EXCHANGE)`. Until that instant the target is untouched.
//! * **list** reads sidecars (of either compression's archives alike) and orders by the
//!   recorded creation time; **prune** applies restic-style `keep_last/daily/weekly/monthly`
//!   and never removes the newest verified backup. It also removes the leftovers of killed runs
//!   (hidden `.partial-` archives, `.restore-` staging and `.previous-` directories) once their
//!   run has exited and they are an hour old; see [`sweep_leftovers`]. [`sweep_partials`]
//!   removes a killed `create`'s partial files at once (its pid is gone and nobody holds their
//!   lock), for the next backup to start with.
//!
//! ```
//! use backup_archive::{CreateOptions, NoProgress, RestoreOptions, VerifyOptions};
//!
//! let tmp = tempfile::tempdir()?;
//! let src = tmp.path().join("config");
//! std::fs::create_dir(&src)?;
//! std::fs::write(src.join("app.toml"), "port = 7000\n")?;
//!
//! let mut opts = CreateOptions::new(vec![src.clone()], tmp.path().join("backups"));
//! opts.id = Some("first".into());
//! let made = backup_archive::create(&opts, &NoProgress)?;
//!
//! let report = backup_archive::verify(&made.archive, &VerifyOptions::default(), &NoProgress)?;
//! assert!(report.ok);
//!
//! let target = tmp.path().join("restored");
//! backup_archive::restore(&made.archive, &RestoreOptions::new(&target), &NoProgress)?;
//! assert_eq!(std::fs::read_to_string(target.join("config/app.toml"))?, "port = 7000\n");
//!
//! let listing = backup_archive::list(&tmp.path().join("backups"))?;
//! assert_eq!(listing.backups[0].id, "first");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod codec;
mod config;
mod create;
mod error;
mod format;
mod fsutil;
mod leftovers;
mod list;
mod pgzip;
mod progress;
mod read;
mod restore;
mod retention;
mod verify;

pub use codec::{Compression, ZSTD_WINDOW_LOG_MAX, archive_path, id_in_use};
pub use config::BackupConfig;
pub use create::{CreateOptions, CreateReport, create, default_id};
pub use error::BackupError;
pub use format::{
    ARCHIVE_EXT, ArchiveManifest, EntryKind, EntryRecord, FORMAT_VERSION, MANIFEST_ENTRY, Metadata,
    Sidecar, VerifyRecord, escape_name, escape_path, sidecar_path, validate_id,
};
pub use leftovers::{
    DEFAULT_LEFTOVER_AGE, Leftover, LeftoverKind, find_leftovers, sweep_leftovers, sweep_partials,
};
pub use list::{BackupInfo, Incomplete, Listing, list};
pub use progress::{NoProgress, Progress};
pub use read::Limits;
pub use restore::{RestoreDiff, RestoreOptions, RestoreReport, restore};
pub use retention::{
    Candidate, Decision, PruneOptions, PruneReport, RetentionPolicy, plan_retention, prune,
    prune_with,
};
pub use verify::{Problem, VerifyOptions, VerifyReport, verify};

/// Reads an archive from any reader (no sidecar involved) through every check `restore` makes,
/// without writing anything; returns the manifest when the archive is sound. This is what the
/// fuzz target drives.
pub fn check_stream(
    input: impl std::io::Read + Send,
    limits: &Limits,
) -> Result<ArchiveManifest, BackupError> {
    read::scan(
        input,
        std::path::Path::new("<stream>"),
        limits,
        &mut read::NullSink,
        &NoProgress,
    )
    .map(|s| s.manifest)
}
