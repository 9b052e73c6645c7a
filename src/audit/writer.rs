//! The single writer task: assigns seq, time and the hash chain, appends, keeps the head file.

use std::io::Write;
use std::path::{Path, PathBuf};

use serde_json::{Map, Value};
use tokio::sync::{mpsc, oneshot};

use super::{head_path, Record, GENESIS};

/// SHA-256 hex of a serialised record (what `record_hash` computes from the map).
fn line_hash(line: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    hex::encode(Sha256::digest(line))
}

/// The audit trail could not be opened or written.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    /// I/O on the trail.
    #[error("audit trail {path}: {source}")]
    Io {
        /// File.
        path: PathBuf,
        /// Cause.
        source: std::io::Error,
    },
    /// The existing trail's last record cannot be continued.
    #[error("audit trail {path} ends with a damaged record at line {line}; run `firebreak audit verify {path}` and move the file aside to start a new trail")]
    Damaged {
        /// File.
        path: PathBuf,
        /// Line.
        line: usize,
    },
    /// The writer task has stopped.
    #[error("the audit writer has stopped")]
    Closed,
}

struct Msg {
    /// None: a barrier (see [`Audit::flush`]).
    record: Option<Record>,
    ack: Option<oneshot::Sender<Result<u64, String>>>,
    /// The ack waits for fsync (not only for the write).
    durable: bool,
}

/// A handle for sending records to the writer. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Audit {
    tx: mpsc::Sender<Msg>,
}

impl std::fmt::Debug for Msg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Msg")
    }
}

struct Chain {
    seq: u64,
    hash: String,
}

fn resume(path: &Path) -> Result<Chain, AuditError> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Chain { seq: 0, hash: GENESIS.into() }),
        Err(source) => return Err(AuditError::Io { path: path.into(), source }),
    };
    let lines = text.lines().filter(|l| !l.trim().is_empty()).count();
    let Some(last) = text.lines().rev().find(|l| !l.trim().is_empty()) else {
        return Ok(Chain { seq: 0, hash: GENESIS.into() });
    };
    let damaged = || AuditError::Damaged { path: path.into(), line: lines };
    let v: Map<String, Value> = serde_json::from_str(last).map_err(|_| damaged())?;
    let seq = v.get("seq").and_then(Value::as_u64).ok_or_else(damaged)?;
    let hash = v.get("hash").and_then(Value::as_str).ok_or_else(damaged)?.to_owned();
    if !text.ends_with('\n') {
        return Err(damaged());
    }
    Ok(Chain { seq, hash })
}

impl Audit {
    /// Opens (or creates) the trail at `path` and starts the writer task.
    pub fn open(path: &Path) -> Result<Audit, AuditError> {
        let chain = resume(path)?;
        use std::os::unix::fs::OpenOptionsExt;
        // 0600 like the state file: records name users, tenants and decisions.
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .open(path)
            .map_err(|source| AuditError::Io { path: path.into(), source })?;
        let (tx, rx) = mpsc::channel(8192);
        let path = path.to_path_buf();
        std::thread::Builder::new()
            .name("firebreak-audit".into())
            .spawn(move || run(rx, file, path, chain))
            .map_err(|source| AuditError::Io { path: PathBuf::new(), source })?;
        Ok(Audit { tx })
    }

    /// Queues a record (waits only when the queue is full: backpressure, never loss).
    pub async fn record(&self, record: Record) {
        if self.tx.send(Msg { record: Some(record), ack: None, durable: false }).await.is_err() {
            tracing::error!("audit writer stopped; a record was lost");
        }
    }

    /// Writes a record and waits until it is on disk (fsynced). Returns its seq.
    pub async fn record_durable(&self, record: Record) -> Result<u64, AuditError> {
        let (tx, rx) = oneshot::channel();
        self.tx
            .send(Msg { record: Some(record), ack: Some(tx), durable: true })
            .await
            .map_err(|_| AuditError::Closed)?;
        match rx.await {
            Ok(Ok(seq)) => Ok(seq),
            Ok(Err(e)) => Err(AuditError::Io { path: PathBuf::new(), source: std::io::Error::other(e) }),
            Err(_) => Err(AuditError::Closed),
        }
    }

    /// Waits until every record queued before this call is written and flushed to the file (not
    /// fsynced), so a reader of the file sees them. Offline replay reads a case's records this way.
    pub async fn flush(&self) -> Result<(), AuditError> {
        let (tx, rx) = oneshot::channel();
        self.tx.send(Msg { record: None, ack: Some(tx), durable: false }).await.map_err(|_| AuditError::Closed)?;
        match rx.await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(AuditError::Io { path: PathBuf::new(), source: std::io::Error::other(e) }),
            Err(_) => Err(AuditError::Closed),
        }
    }
}

/// The writer loop, on its own thread so file I/O never blocks the runtime's workers.
fn run(mut rx: mpsc::Receiver<Msg>, file: std::fs::File, path: PathBuf, mut chain: Chain) {
    let mut head = Head::open(&head_path(&path));
    let mut out = std::io::BufWriter::with_capacity(64 << 10, file);
    let mut acks: Vec<(oneshot::Sender<Result<u64, String>>, u64)> = Vec::new();
    let mut sync = false;
    // One line, reused: the record is serialised once; those bytes are both hashed and written.
    let mut line: Vec<u8> = Vec::with_capacity(1024);
    while let Some(first) = rx.blocking_recv() {
        let mut next = Some(first);
        let mut result: Result<(), std::io::Error> = Ok(());
        let burst_start = chain.seq;
        // Drain what is queued, then flush once: one write syscall per burst, not per record.
        while let Some(Msg { record, ack, durable }) = next.take() {
            let Some(record) = record else {
                // A barrier: acknowledged once what was queued before it is flushed.
                if let Some(a) = ack {
                    acks.push((a, chain.seq));
                }
                next = rx.try_recv().ok();
                continue;
            };
            sync |= durable;
            let mut m = record.0;
            super::digest_sessions(&mut m);
            chain.seq += 1;
            m.insert("seq".into(), Value::from(chain.seq));
            m.insert(
                "time".into(),
                Value::from(humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string()),
            );
            m.insert("prev".into(), Value::from(std::mem::take(&mut chain.hash)));
            line.clear();
            // serde_json's Map is ordered by key, so these are the canonical bytes `record_hash` hashes;
            // `hash` is appended as the last key (readers parse the line into a map: order is free).
            let serialised = serde_json::to_writer(&mut line, &m);
            chain.hash = line_hash(&line);
            if result.is_ok() {
                result = serialised.map_err(std::io::Error::other).and_then(|_| {
                    line.pop(); // the closing brace
                    line.extend_from_slice(b",\"hash\":\"");
                    line.extend_from_slice(chain.hash.as_bytes());
                    line.extend_from_slice(b"\"}\n");
                    out.write_all(&line)
                });
            }
            if let Some(a) = ack {
                acks.push((a, chain.seq));
            }
            next = rx.try_recv().ok();
        }
        if result.is_ok() {
            result = out.flush();
        }
        if result.is_ok() && std::mem::take(&mut sync) {
            result = out.get_ref().sync_data();
        }
        if result.is_ok() {
            result = head.write(chain.seq, &chain.hash);
        }
        if let Err(e) = &result {
            tracing::error!(error = %e, path = %path.display(), "audit write failed");
        }
        // Someone waited on this burst (a durable write, a barrier): they are latency-sensitive, and so
        // is whoever comes next (a switch change, a replay case), so no pause after it. Nor after a
        // lone record: records arrive one at a time only when the gateway is not busy.
        let waited = !acks.is_empty() || chain.seq.saturating_sub(burst_start) <= 1;
        for (a, seq) in acks.drain(..) {
            let _ = a.send(result.as_ref().map(|_| seq).map_err(|e| e.to_string()));
        }
        // Let records gather before the next burst: waking this thread for every request (a futex
        // wake and two context switches each) cost more than writing the record (perf, load test).
        if !waited {
            std::thread::sleep(BURST_PAUSE);
        }
    }
    if let Err(e) = out.flush() {
        tracing::error!(error = %e, path = %path.display(), "final audit flush failed");
    }
}

/// The writer's pause between bursts.
const BURST_PAUSE: std::time::Duration = std::time::Duration::from_millis(1);

/// `<file>.head`: the last seq and hash, overwritten in place with one `pwrite` of a fixed-size,
/// space-padded JSON document per burst (cheaper than a temp file and a rename; far smaller than a
/// disk sector, so it is not torn in practice).
struct Head(Option<std::fs::File>);

const HEAD_LEN: usize = 128;

impl Head {
    fn open(path: &Path) -> Head {
        use std::os::unix::fs::OpenOptionsExt;
        match std::fs::OpenOptions::new().create(true).write(true).truncate(false).mode(0o600).open(path) {
            Ok(f) => Head(Some(f)),
            Err(e) => {
                tracing::error!(error = %e, path = %path.display(), "cannot open the audit head file; records are still chained");
                Head(None)
            }
        }
    }

    fn write(&mut self, seq: u64, hash: &str) -> std::io::Result<()> {
        use std::os::unix::fs::FileExt;
        let Some(f) = &self.0 else { return Ok(()) };
        let mut doc = format!("{{\"seq\":{seq},\"hash\":\"{hash}\"}}");
        let pad = HEAD_LEN.saturating_sub(doc.len() + 1);
        doc.extend(std::iter::repeat_n(' ', pad));
        doc.push('\n');
        f.write_all_at(doc.as_bytes(), 0)
    }
}
