//! Restores arbitrary (gzip-wrapped) tar data into a temp directory and checks that nothing
//! appears outside the target and that a failed restore leaves the target untouched.
#![no_main]

use std::io::Write;

use backup_archive::{Limits, NoProgress, RestoreOptions, restore};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(tmp) = tempfile::tempdir() else { return };
    let archive = tmp.path().join("in.tar.gz");
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    if gz.write_all(data).is_err() {
        return;
    }
    let Ok(bytes) = gz.finish() else { return };
    if std::fs::write(&archive, bytes).is_err() {
        return;
    }
    let target = tmp.path().join("target");
    std::fs::create_dir(&target).expect("target");
    std::fs::write(target.join("live"), b"live").expect("live file");
    let mut opts = RestoreOptions::new(&target);
    opts.require_sidecar = false;
    opts.sync = false;
    opts.limits = Limits {
        max_entries: 1000,
        max_bytes: 1 << 20,
    };
    let result = restore(&archive, &opts, &NoProgress);
    let mut around: Vec<_> = std::fs::read_dir(tmp.path())
        .expect("tmp")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    around.sort();
    assert_eq!(
        around,
        ["in.tar.gz", "target"],
        "something was left beside the target"
    );
    if result.is_err() {
        assert_eq!(
            std::fs::read(target.join("live")).expect("live kept"),
            b"live"
        );
        assert_eq!(std::fs::read_dir(&target).expect("target").count(), 1);
    }
});
