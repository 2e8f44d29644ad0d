//! Feeds arbitrary bytes to the archive reader, both as a gzip stream and as raw tar data
//! wrapped in gzip, so that the fuzzer reaches the tar parser and the entry checks.
#![no_main]

use std::io::Write;

use backup_archive::{Limits, check_stream};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let limits = Limits {
        max_entries: 1000,
        max_bytes: 1 << 20,
    };
    let _ = check_stream(data, &limits);
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    if gz.write_all(data).is_ok() {
        if let Ok(wrapped) = gz.finish() {
            let _ = check_stream(&wrapped[..], &limits);
        }
    }
});
