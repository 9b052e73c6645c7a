//! Durable state: written to a temp file, fsynced, renamed over the old one, directory fsynced —
//! so a crash leaves either the old or the new snapshot, never a torn one.

use std::path::{Path, PathBuf};

use super::Snapshot;

/// The state file could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum PersistError {
    /// Reading failed.
    #[error("cannot read state file {path}: {source}; fix its permissions, or restore it from a backup (starting without it could silently lift a lockdown)")]
    Read {
        /// File.
        path: PathBuf,
        /// Cause.
        source: std::io::Error,
    },
    /// The file is not a valid snapshot.
    #[error("state file {path} is corrupt ({detail}); restore it from a backup, or move it aside to start with a clean state (this lifts every switch)")]
    Corrupt {
        /// File.
        path: PathBuf,
        /// Parser message.
        detail: String,
    },
    /// Writing failed.
    #[error("cannot write state file {path}: {source}; the change was not applied")]
    Write {
        /// File.
        path: PathBuf,
        /// Cause.
        source: std::io::Error,
    },
}

/// Reads the snapshot; `Ok(None)` when the file does not exist.
pub fn load(path: &Path) -> Result<Option<Snapshot>, PersistError> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => return Err(PersistError::Read { path: path.to_path_buf(), source }),
    };
    serde_json::from_slice(&bytes)
        .map(Some)
        .map_err(|e| PersistError::Corrupt { path: path.to_path_buf(), detail: e.to_string() })
}

/// Writes the snapshot atomically and durably.
pub async fn save(path: &Path, snap: &Snapshot) -> Result<(), PersistError> {
    let bytes = serde_json::to_vec_pretty(snap)
        .map_err(|e| PersistError::Write { path: path.to_path_buf(), source: std::io::Error::other(e) })?;
    let path = path.to_path_buf();
    let p = path.clone();
    tokio::task::spawn_blocking(move || write_atomic(&p, &bytes))
        .await
        .map_err(|e| PersistError::Write { path: path.clone(), source: std::io::Error::other(e) })?
        .map_err(|source| PersistError::Write { path, source })
}

/// temp + fsync + rename + fsync(dir).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "state".into());
    let tmp = dir.join(format!(".{name}.tmp.{}", std::process::id()));
    {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path)?;
    std::fs::File::open(&dir)?.sync_all()?;
    Ok(())
}
