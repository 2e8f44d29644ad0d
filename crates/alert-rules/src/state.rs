//! The engine's state on disk: one JSON file, replaced atomically.

use std::path::Path;

use crate::engine::{EngineState, STATE_VERSION};
use crate::error::AlertError;

/// Reads the state file; a missing file is an empty state. A file written by another state
/// version is ignored (the rules start afresh) rather than misread.
#[tracing::instrument(skip_all, fields(path = %path.display()))]
pub fn load_state(path: &Path) -> Result<EngineState, AlertError> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(EngineState::default()),
        Err(e) => {
            return Err(AlertError::StateRead {
                path: path.to_path_buf(),
                message: e.to_string(),
            });
        }
    };
    let version: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| AlertError::StateRead {
            path: path.to_path_buf(),
            message: format!("not JSON: {e}"),
        })?;
    if version.get("version").and_then(serde_json::Value::as_u64) != Some(u64::from(STATE_VERSION))
    {
        tracing::warn!("state file has another version; starting afresh");
        return Ok(EngineState::default());
    }
    serde_json::from_value(version).map_err(|e| AlertError::StateRead {
        path: path.to_path_buf(),
        message: e.to_string(),
    })
}

/// Writes the state atomically: a temporary file in the same directory, fsync, rename over
/// the target, fsync the directory. A reader sees the old file or the new one, never a mix.
#[tracing::instrument(skip_all, fields(path = %path.display()))]
pub fn save_state(path: &Path, state: &EngineState) -> Result<(), AlertError> {
    let err = |source: std::io::Error| AlertError::StateWrite {
        path: path.to_path_buf(),
        error: source,
    };
    let mut bytes = serde_json::to_vec_pretty(state).map_err(|e| err(std::io::Error::other(e)))?;
    bytes.push(b'\n');
    write_atomic(path, &bytes).map_err(err)
}

/// Replaces `path` with `bytes` atomically, mode 0644 ([`host_util::fs::write_atomic`]).
///
/// # Errors
/// The I/O error of the step that failed.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    host_util::fs::write_atomic(path, bytes, 0o644)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::RuleState;

    #[test]
    fn round_trips_and_replaces() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("alerts.json");
        assert_eq!(load_state(&path).unwrap(), EngineState::default());
        let mut state = EngineState::default();
        state.rules.insert("a".into(), RuleState::default());
        save_state(&path, &state).unwrap();
        assert_eq!(load_state(&path).unwrap(), state);
        save_state(&path, &EngineState::default()).unwrap();
        assert_eq!(load_state(&path).unwrap(), EngineState::default());
        let leftovers: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(leftovers, vec![std::ffi::OsString::from("alerts.json")]);
    }

    #[test]
    fn garbage_is_an_error_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("alerts.json");
        std::fs::write(&path, "{not json").unwrap();
        let err = load_state(&path).unwrap_err();
        assert!(err.to_string().contains("alerts.json"), "{err}");
    }

    #[test]
    fn other_versions_start_afresh() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("alerts.json");
        std::fs::write(&path, r#"{"version": 99, "rules": {"x": 1}}"#).unwrap();
        assert_eq!(load_state(&path).unwrap(), EngineState::default());
    }

    #[test]
    fn unwritable_directory_is_an_error() {
        // Root ignores permission bits, so use a parent that is a regular file (ENOTDIR).
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("file");
        std::fs::write(&file, "x").unwrap();
        let err = save_state(&file.join("alerts.json"), &EngineState::default()).unwrap_err();
        assert!(matches!(err, AlertError::StateWrite { .. }), "{err}");
    }
}
