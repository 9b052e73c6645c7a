//! The evidence store: a directory (`0700`) holding one JSONL file per incident (`INC-00001.jsonl`,
//! `0600`) and `MANIFEST.sha256`, the SHA-256 of every file in `sha256sum` format (so
//! `cd DIR && sha256sum -c MANIFEST.sha256` checks it), rewritten atomically after each write.
//!
//! One thread writes; the request path only hands it lines over a bounded channel and never waits.
//! When the channel is full (the disk is far behind), a line is dropped, counted, and logged — the
//! gap is reported, never hidden: the next write records how many lines were dropped before it.

use std::collections::BTreeMap;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};
use std::sync::Arc;

use sha2::{Digest, Sha256};

/// Lines waiting for the writer at most.
const QUEUE: usize = 4096;
/// The manifest's file name.
pub const MANIFEST: &str = "MANIFEST.sha256";

enum Msg {
    Open { incident: String, header: String, lines: Vec<Arc<str>> },
    Append { incident: String, phase: &'static str, line: Arc<str> },
    Flush(tokio::sync::oneshot::Sender<()>),
}

/// A handle on the store's writer thread.
#[derive(Debug)]
pub struct Store {
    tx: SyncSender<Msg>,
    dropped: Arc<AtomicU64>,
}

impl std::fmt::Debug for Msg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Msg")
    }
}

/// The file of an incident in the store (ids are `INC-` and digits; anything else is refused).
pub fn incident_file(dir: &Path, incident: &str) -> Option<PathBuf> {
    let ok = !incident.is_empty()
        && incident.len() <= 64
        && incident.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    ok.then(|| dir.join(format!("{incident}.jsonl")))
}

impl Store {
    /// Creates the directory (`0700`) if needed and starts the writer.
    pub fn open(dir: &Path) -> Result<Store, String> {
        std::fs::create_dir_all(dir).map_err(|e| format!("evidence store {}: {e}", dir.display()))?;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
            .map_err(|e| format!("evidence store {}: {e}", dir.display()))?;
        let manifest = read_manifest(&dir.join(MANIFEST));
        let (tx, rx) = sync_channel(QUEUE);
        let dropped = Arc::new(AtomicU64::new(0));
        let w = Writer { dir: dir.to_path_buf(), manifest, files: BTreeMap::new(), dropped: dropped.clone() };
        std::thread::Builder::new()
            .name("firebreak-evidence".into())
            .spawn(move || w.run(rx))
            .map_err(|e| format!("evidence writer: {e}"))?;
        Ok(Store { tx, dropped })
    }

    fn send(&self, m: Msg) {
        match self.tx.try_send(m) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                let n = self.dropped.fetch_add(1, Ordering::Relaxed) + 1;
                tracing::warn!(dropped = n, "evidence store is behind: an exchange was not written");
            }
            Err(TrySendError::Disconnected(_)) => tracing::error!("the evidence writer has stopped"),
        }
    }

    /// Starts an incident's file with its header and its "before" window.
    pub fn open_incident(&self, incident: &str, header: String, lines: Vec<Arc<str>>) {
        self.send(Msg::Open { incident: incident.to_owned(), header, lines });
    }

    /// Appends one exchange to an incident's file.
    pub fn append(&self, incident: &str, phase: &'static str, line: Arc<str>) {
        self.send(Msg::Append { incident: incident.to_owned(), phase, line });
    }

    /// Waits until everything sent so far is written.
    pub async fn flush(&self) {
        let (tx, rx) = tokio::sync::oneshot::channel();
        // A barrier waits for room: it is sent from the admin path, never the request path.
        let sender = self.tx.clone();
        let sent = tokio::task::spawn_blocking(move || sender.send(Msg::Flush(tx)).is_ok()).await;
        if matches!(sent, Ok(true)) {
            let _ = rx.await;
        }
    }
}

struct Open {
    file: std::fs::File,
    hash: Sha256,
}

struct Writer {
    dir: PathBuf,
    /// File name → SHA-256 hex, for every file of the store.
    manifest: BTreeMap<String, String>,
    files: BTreeMap<String, Open>,
    dropped: Arc<AtomicU64>,
}

impl Writer {
    fn run(mut self, rx: Receiver<Msg>) {
        while let Ok(first) = rx.recv() {
            let mut flushes = Vec::new();
            let mut changed = false;
            let mut next = Some(first);
            while let Some(m) = next.take().or_else(|| rx.try_recv().ok()) {
                match m {
                    Msg::Flush(done) => flushes.push(done),
                    Msg::Open { incident, header, lines } => {
                        changed = true;
                        let mut text = header;
                        text.push('\n');
                        for l in lines {
                            text.push_str(&line("before", &l));
                        }
                        self.write(&incident, &text);
                    }
                    Msg::Append { incident, phase, line: l } => {
                        changed = true;
                        let mut text = String::new();
                        let dropped = self.dropped.swap(0, Ordering::Relaxed);
                        if dropped > 0 {
                            text.push_str(&format!("{{\"phase\":\"gap\",\"dropped\":{dropped}}}\n"));
                        }
                        text.push_str(&line(phase, &l));
                        self.write(&incident, &text);
                    }
                }
            }
            if changed {
                self.write_manifest();
            }
            for f in flushes {
                let _ = f.send(());
            }
        }
    }

    fn write(&mut self, incident: &str, text: &str) {
        let Some(path) = incident_file(&self.dir, incident) else { return };
        let name = format!("{incident}.jsonl");
        if !self.files.contains_key(&name) {
            // A file left by an earlier run is continued; its hash covers what is already there.
            let mut hash = Sha256::new();
            if let Ok(existing) = std::fs::read(&path) {
                hash.update(&existing);
            }
            match std::fs::OpenOptions::new().create(true).append(true).mode(0o600).open(&path) {
                Ok(file) => {
                    self.files.insert(name.clone(), Open { file, hash });
                }
                Err(e) => {
                    tracing::error!(path = %path.display(), error = %e, "evidence file not written");
                    return;
                }
            }
        }
        let Some(open) = self.files.get_mut(&name) else { return };
        match open.file.write_all(text.as_bytes()).and_then(|_| open.file.sync_data()) {
            Ok(()) => {
                open.hash.update(text.as_bytes());
                self.manifest.insert(name, hex::encode(open.hash.clone().finalize()));
            }
            Err(e) => tracing::error!(path = %path.display(), error = %e, "evidence file not written"),
        }
    }

    fn write_manifest(&self) {
        let mut text = String::new();
        for (name, hash) in &self.manifest {
            text.push_str(&format!("{hash}  {name}\n"));
        }
        let path = self.dir.join(MANIFEST);
        let tmp = self.dir.join(format!(".{MANIFEST}.tmp"));
        let r = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)
            .and_then(|mut f| f.write_all(text.as_bytes()).and_then(|_| f.sync_all()))
            .and_then(|_| std::fs::rename(&tmp, &path));
        if let Err(e) = r {
            tracing::error!(path = %path.display(), error = %e, "evidence manifest not written");
        }
    }
}

/// One stored line: the phase and the exchange.
fn line(phase: &str, exchange: &str) -> String {
    format!("{{\"phase\":\"{phase}\",\"exchange\":{exchange}}}\n")
}

fn read_manifest(path: &Path) -> BTreeMap<String, String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split_once("  ").map(|(h, n)| (n.to_owned(), h.to_owned())))
        .collect()
}

/// The stored file of `incident` and whether it matches the manifest: (lines, sha256, matches).
pub fn read_incident(dir: &Path, incident: &str) -> std::io::Result<Option<(Vec<serde_json::Value>, String, bool)>> {
    let Some(path) = incident_file(dir, incident) else { return Ok(None) };
    let bytes = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let digest = hex::encode(Sha256::digest(&bytes));
    let listed = read_manifest(&dir.join(MANIFEST)).get(&format!("{incident}.jsonl")).cloned();
    let lines = String::from_utf8_lossy(&bytes)
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|_| serde_json::json!({"phase": "unreadable", "line": l})))
        .collect();
    Ok(Some((lines, digest.clone(), listed.as_deref() == Some(digest.as_str()))))
}
