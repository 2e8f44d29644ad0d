//! Shared helpers: fake provider CLIs in a temp dir put first on the resolver's PATH.

#![allow(dead_code, unreachable_pub, missing_docs, clippy::unwrap_used)]

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use secret_refs::{Redactor, Resolver};

/// A temp dir holding fake CLIs; each records its argv and its `/proc/self/cmdline`.
pub struct FakeBin {
    pub dir: tempfile::TempDir,
}

impl FakeBin {
    pub fn new() -> Self {
        Self {
            dir: cutover_tests::temp_dir(),
        }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Writes `name` as a shell script: a prelude that records its argv (one line per call in
    /// `NAME.args`) and its kernel cmdline (`NAME.cmdline`), then `body`. `$here` is the dir and
    /// `$here/value` is where tests put the value a fake prints.
    pub fn script(&self, name: &str, body: &str) -> &Self {
        let path = self.path().join(name);
        let text = format!(
            "#!/bin/sh\nhere=$(dirname \"$0\")\nprintf '%s\\n' \"$*\" >> \"$here/{name}.args\"\ncat /proc/$$/cmdline >> \"$here/{name}.cmdline\"\nprintf '\\n' >> \"$here/{name}.cmdline\"\n{body}\n"
        );
        std::fs::write(&path, text).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        self
    }

    /// Puts the value fakes print with `cat "$here/value"`.
    pub fn value(&self, value: &str) -> &Self {
        std::fs::write(self.path().join("value"), value).unwrap();
        self
    }

    pub fn read(&self, file: &str) -> String {
        std::fs::read_to_string(self.path().join(file)).unwrap_or_default()
    }

    /// A resolver with the fakes first on its PATH (an overlay: the process env is untouched), a
    /// private redactor and the given timeout.
    pub fn resolver(&self, timeout: Duration) -> Resolver {
        let path = format!(
            "{}:{}",
            self.path().display(),
            std::env::var("PATH").unwrap_or_else(|_| "/usr/bin:/bin".to_owned())
        );
        Resolver::new()
            .with_env("PATH", path)
            .with_timeout(timeout)
            .with_redactor(Redactor::new())
    }
}

/// Whether `pid` has exited (gone, or a zombie waiting for a reaper that is not us).
pub fn is_dead(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with(['Z', 'X'])),
    }
}

/// Reads a pid a fake wrote, waiting for the file to appear.
pub fn read_pid(path: &PathBuf) -> u32 {
    assert!(
        cutover_tests::wait_until(Duration::from_secs(10), || std::fs::read_to_string(path)
            .is_ok_and(|s| s.trim().parse::<u32>().is_ok())),
        "{} never written",
        path.display()
    );
    std::fs::read_to_string(path)
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}
