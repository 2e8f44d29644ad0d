//! A log file rotated by size: `app.log`, then `app.log.1` (newest) … `app.log.N`.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// Appends to `path`; before a write would take it past `max_bytes`, renames `path` to
/// `path.1` (shifting older ones up, dropping the one past `keep`) and starts a new file.
/// A single write larger than `max_bytes` still goes in whole, into a fresh file.
#[derive(Debug)]
pub struct RotatingLog {
    path: PathBuf,
    max_bytes: u64,
    keep: u32,
    file: File,
    size: u64,
}

impl RotatingLog {
    /// Opens (creating, mode 0640) the log for appending.
    ///
    /// # Errors
    /// When the directory cannot be created or the file opened.
    pub fn open(path: &Path, max_bytes: u64, keep: u32) -> std::io::Result<Self> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let file = Self::open_file(path)?;
        let size = file.metadata()?.len();
        Ok(Self {
            path: path.to_path_buf(),
            max_bytes: max_bytes.max(1),
            keep,
            file,
            size,
        })
    }

    fn open_file(path: &Path) -> std::io::Result<File> {
        OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o640)
            .open(path)
    }

    /// The path of rotated file `n` (1 = newest).
    pub fn rotated_path(path: &Path, n: u32) -> PathBuf {
        let mut name = path.as_os_str().to_owned();
        name.push(format!(".{n}"));
        PathBuf::from(name)
    }

    fn rotate(&mut self) -> std::io::Result<()> {
        if self.keep == 0 {
            self.file.set_len(0)?;
        } else {
            let _ = std::fs::remove_file(Self::rotated_path(&self.path, self.keep));
            for n in (1..self.keep).rev() {
                let from = Self::rotated_path(&self.path, n);
                if from.exists() {
                    std::fs::rename(&from, Self::rotated_path(&self.path, n + 1))?;
                }
            }
            std::fs::rename(&self.path, Self::rotated_path(&self.path, 1))?;
            self.file = Self::open_file(&self.path)?;
        }
        self.size = 0;
        Ok(())
    }

    /// Appends `bytes`, rotating first when needed.
    ///
    /// # Errors
    /// I/O errors of the rename or the write.
    pub fn write(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        let len = u64::try_from(bytes.len()).unwrap_or(u64::MAX);
        if self.size > 0 && self.size.saturating_add(len) > self.max_bytes {
            self.rotate()?;
        }
        self.file.write_all(bytes)?;
        self.size = self.size.saturating_add(len);
        Ok(())
    }

    /// Appends one line from the supervisor itself, prefixed with a UTC timestamp.
    pub fn note(&mut self, message: &str) {
        let stamp = humantime::format_rfc3339_millis(std::time::SystemTime::now());
        let line = format!("{stamp} cutover-proc: {message}\n");
        // The log is the only place the supervisor can report to; a failed write is dropped.
        let _ = self.write(line.as_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rotates_by_size_and_keeps_only_n_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("logs/app.log");
        let mut log = RotatingLog::open(&path, 100, 2).unwrap();
        for i in 0..10 {
            log.write(format!("line {i:02} {}\n", "x".repeat(30)).as_bytes())
                .unwrap();
        }
        let size = |p: &Path| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0);
        assert!(size(&path) <= 100);
        assert!(size(&RotatingLog::rotated_path(&path, 1)) <= 100);
        assert!(RotatingLog::rotated_path(&path, 2).exists());
        assert!(!RotatingLog::rotated_path(&path, 3).exists(), "keep = 2");
        let newest = std::fs::read_to_string(&path).unwrap();
        assert!(newest.contains("line 09"), "{newest}");
        let previous = std::fs::read_to_string(RotatingLog::rotated_path(&path, 1)).unwrap();
        assert!(previous.contains("line 07"), "{previous}");
    }

    #[test]
    fn small_writes_never_rotate() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("app.log");
        let mut log = RotatingLog::open(&path, 1 << 20, 3).unwrap();
        log.note("hello");
        log.write(b"service line\n").unwrap();
        drop(log);
        let mut log = RotatingLog::open(&path, 1 << 20, 3).unwrap();
        log.write(b"after reopen\n").unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.contains("cutover-proc: hello") && text.ends_with("after reopen\n"));
        assert!(!RotatingLog::rotated_path(&path, 1).exists());
    }
}
