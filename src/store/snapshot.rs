//! The local snapshot file: the last state a replica applied, read at
//! start-up when the store cannot be reached.

use std::fs;
use std::io;
use std::path::Path;

use serde_json::{json, Value};

use super::state::RolloutState;

/// A state and the store revision it was applied at.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Snapshot {
    pub(super) revision: u64,
    pub(super) state: RolloutState,
}

/// Writes `snapshot` to `path` whole or not at all (a file beside it, then
/// a rename).
pub(super) fn write(path: &Path, snapshot: &Snapshot) -> io::Result<()> {
    let state: Value = serde_json::from_slice(&snapshot.state.to_json())
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
    let doc = json!({ "revision": snapshot.revision, "state": state });
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    fs::write(&tmp, serde_json::to_vec(&doc).unwrap_or_default())?;
    fs::rename(&tmp, path)
}

/// Reads the snapshot at `path`: `Ok(None)` when there is none.
///
/// # Errors
/// A message when the file exists and cannot be read or does not parse.
pub(super) fn read(path: &Path) -> Result<Option<Snapshot>, String> {
    let bytes = match fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("snapshot {}: {e}", path.display())),
    };
    let doc: Value = serde_json::from_slice(&bytes)
        .map_err(|e| format!("snapshot {}: not JSON: {e}", path.display()))?;
    let revision = doc["revision"]
        .as_u64()
        .ok_or_else(|| format!("snapshot {}: no revision", path.display()))?;
    let state = serde_json::to_vec(&doc["state"]).unwrap_or_default();
    let state =
        RolloutState::from_json(&state).map_err(|e| format!("snapshot {}: {e}", path.display()))?;
    Ok(Some(Snapshot { revision, state }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn written_then_read_back() {
        let dir = std::env::temp_dir().join(format!("rollout-snapshot-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let path = dir.join("iris.json");
        assert_eq!(read(&path), Ok(None));
        let snap = Snapshot {
            revision: 42,
            state: RolloutState::new([None, None]),
        };
        write(&path, &snap).unwrap();
        assert_eq!(read(&path), Ok(Some(snap)));
        fs::write(&path, b"{").unwrap();
        assert!(read(&path).unwrap_err().contains("not JSON"));
        fs::remove_dir_all(&dir).unwrap();
    }
}
