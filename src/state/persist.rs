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
    let corrupt = |e: serde_json::Error| PersistError::Corrupt { path: path.to_path_buf(), detail: e.to_string() };
    let mut v: serde_json::Value = serde_json::from_slice(&bytes).map_err(corrupt)?;
    let canaries = match v.as_object_mut().and_then(|m| m.remove(CANARIES)) {
        Some(c) => serde_json::from_value(c).map_err(corrupt)?,
        None => Default::default(),
    };
    let mut snap: Snapshot = serde_json::from_value(v).map_err(corrupt)?;
    snap.fill_expiry().map_err(|detail| PersistError::Corrupt { path: path.to_path_buf(), detail })?;
    snap.canaries = canaries;
    Ok(Some(snap))
}

/// The key under which the state file keeps the canary values beside the snapshot's fields.
const CANARIES: &str = "canary_values";

fn encode(snap: &Snapshot) -> serde_json::Result<Vec<u8>> {
    let mut v = serde_json::to_value(snap)?;
    if let (Some(m), false) = (v.as_object_mut(), snap.canaries.is_empty()) {
        m.insert(CANARIES.into(), serde_json::to_value(&snap.canaries)?);
    }
    serde_json::to_vec_pretty(&v)
}

/// Writes the snapshot atomically and durably.
pub async fn save(path: &Path, snap: &Snapshot) -> Result<(), PersistError> {
    let bytes =
        encode(snap).map_err(|e| PersistError::Write { path: path.to_path_buf(), source: std::io::Error::other(e) })?;
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
        // Owner-only: the state file holds canary values.
        let mut opts = std::fs::OpenOptions::new();
        opts.write(true).create(true).truncate(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
        let mut f = opts.open(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path)?;
    std::fs::File::open(&dir)?.sync_all()?;
    Ok(())
}
