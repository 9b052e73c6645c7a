//! The single writer task: assigns seq, time and the hash chain, appends, keeps the head file, and
//! knows whether the trail can be written (see [`Audit::failure`]).
//!
//! A burst of records is serialised into one buffer and written with one `write`. When that write
//! (or the fsync a caller waits for) fails, the file is cut back to the end of the last good burst
//! — no torn line is left behind — and the records stay queued, in chain order, to be written again
//! every [`RETRY`]: nothing is lost while the disk is full, up to [`MAX_PENDING`] bytes (beyond that
//! new records are dropped before they get a seq, so the chain never has a gap; each one counted).
//! While it fails, [`Audit::failure`] says why: `/readyz` fails, admin changes are refused, and AI
//! traffic is refused too unless the policy says `[audit] on_failure = "fail_open"`.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Map, Value};
use tokio::sync::{broadcast, mpsc, oneshot};

use super::exchange::ChainFields;
use super::{head_path, AuditKey, Entry, Record, GENESIS};
use crate::config::AuditSettings;
use crate::metrics::Metrics;

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
    /// The audit key could not be read, or does not continue the trail.
    #[error("audit key: {0}")]
    Key(String),
    /// The record could not be made durable (the disk is full or failing).
    #[error("the audit trail cannot be written: {0}")]
    Unwritable(String),
    /// The writer task has stopped.
    #[error("the audit writer has stopped")]
    Closed,
}

struct Msg {
    /// None: a barrier (see [`Audit::flush`]).
    record: Option<Entry>,
    ack: Option<oneshot::Sender<Result<u64, String>>>,
    /// The ack waits for fsync (not only for the write).
    durable: bool,
}

impl std::fmt::Debug for Msg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Msg")
    }
}

/// Whether the trail can be written, shared by the writer and every handle.
#[derive(Debug, Default)]
struct Health {
    failing: AtomicBool,
    reason: Mutex<String>,
    /// Where the writer hands the records alerts are made of (set once, by `gateway::alerting::start`).
    tap: std::sync::OnceLock<mpsc::Sender<Map<String, Value>>>,
    /// Where the writer offers what it wrote (fleet mode's shipper; set once, by `fleet::shipper::spawn`).
    shipper: std::sync::OnceLock<super::ShipperHandle>,
}

/// Record kinds the alert tap takes; every other record (requests, MCP calls) is not even cloned.
pub const TAPPED_KINDS: [&str; 4] = ["incident", "switch", "circuit", "fleet"];

/// A record the writer has just chained, for the tap and the live feed.
enum Fields {
    Map(Map<String, Value>),
    Exchange(Box<super::Exchange>),
}

impl Fields {
    /// The record's `prev`.
    fn prev(&self) -> &str {
        match self {
            Fields::Map(m) => m.get("prev").and_then(Value::as_str).unwrap_or_default(),
            Fields::Exchange(e) => e.chain.as_ref().map_or("", |c| c.prev.as_str()),
        }
    }

    /// What a live subscriber sees of it ([`FEED_FIELDS`]).
    fn summary(&self) -> Option<Map<String, Value>> {
        let pick = |m: &Map<String, Value>| -> Map<String, Value> {
            FEED_FIELDS.iter().filter_map(|k| m.get(*k).map(|v| ((*k).to_owned(), v.clone()))).collect()
        };
        match self {
            Fields::Map(m) => Some(pick(m)),
            Fields::Exchange(e) => match serde_json::to_value(&**e) {
                Ok(Value::Object(m)) => Some(pick(&m)),
                _ => None,
            },
        }
    }
}

impl Health {
    /// Hands a record to the alert tap without ever waiting: a full tap drops it (counted by the
    /// alerts side, which sees the gap in nothing but its own metric).
    fn tap(&self, m: &Map<String, Value>, metrics: &Metrics) {
        let Some(tx) = self.tap.get() else { return };
        let kind = m.get("kind").and_then(Value::as_str).unwrap_or("");
        if !TAPPED_KINDS.contains(&kind) {
            return;
        }
        if tx.try_send(m.clone()).is_err() {
            metrics.alerts_tap_dropped();
        }
    }

    /// The audit-failure signal, which cannot go through the trail (it is what failed).
    fn tap_failure(&self, event: &str, reason: &str, metrics: &Metrics) {
        let Some(tx) = self.tap.get() else { return };
        let mut m = Map::new();
        m.insert("kind".into(), Value::from("audit"));
        m.insert("event".into(), Value::from(event));
        m.insert("reason".into(), Value::from(reason));
        m.insert(
            "time".into(),
            Value::from(humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string()),
        );
        if tx.try_send(m).is_err() {
            metrics.alerts_tap_dropped();
        }
    }
}

/// A handle for sending records to the writer. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Audit {
    tx: mpsc::Sender<Msg>,
    health: Arc<Health>,
    feed: broadcast::Sender<Arc<str>>,
    path: Arc<Path>,
}

/// Records kept for live subscribers ([`Audit::subscribe`]) that have not read them yet; a slower
/// subscriber loses the oldest (it is told how many), the writer never waits.
const FEED_DEPTH: usize = 256;

/// The fields of a record a live subscriber sees: what identifies the decision and who it concerns,
/// all already in the trail (session ids as their digest), never the chain fields or payloads.
const FEED_FIELDS: &[&str] = &[
    "seq",
    "time",
    "kind",
    "event",
    "endpoint",
    "status",
    "decisions",
    "stream",
    "duration_us",
    "key_id",
    "tenant",
    "user",
    "role",
    "session",
    "upstream",
    "model",
    "server",
    "tool",
    "method",
    "incident",
    "severity",
    "trigger",
    "actor",
    "reason",
    "rule",
    "after_version",
];

struct Chain {
    seq: u64,
    /// The last record's MAC (its `hash` for a legacy, unkeyed record): the next record's `prev`.
    mac: String,
}

/// What start-up found at the end of an existing trail.
struct Resumed {
    chain: Chain,
    /// The key id of the last record (`None`: empty trail, or a legacy unkeyed record).
    kid: Option<String>,
    /// Bytes of an incomplete last line (a crash or a full disk during a write), cut off.
    torn: Option<(u64, String)>,
}

/// Reads the end of the trail at `path`; cuts off an incomplete last line (the bytes after the
/// last newline: a write that never finished) so the chain continues from the last whole record.
fn resume(path: &Path) -> Result<Resumed, AuditError> {
    let io = |source| AuditError::Io { path: path.into(), source };
    let bytes = match std::fs::read(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Ok(Resumed { chain: Chain { seq: 0, mac: GENESIS.into() }, kid: None, torn: None })
        }
        Err(e) => return Err(io(e)),
    };
    let whole = bytes.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
    let torn = if whole < bytes.len() {
        let cut = &bytes[whole..];
        let f = std::fs::OpenOptions::new().write(true).open(path).map_err(io)?;
        f.set_len(whole as u64).and_then(|_| f.sync_data()).map_err(io)?;
        use sha2::{Digest, Sha256};
        Some((cut.len() as u64, hex::encode(Sha256::digest(cut))))
    } else {
        None
    };
    let text = String::from_utf8_lossy(&bytes[..whole]);
    let lines = text.lines().filter(|l| !l.trim().is_empty()).count();
    let Some(last) = text.lines().rev().find(|l| !l.trim().is_empty()) else {
        return Ok(Resumed { chain: Chain { seq: 0, mac: GENESIS.into() }, kid: None, torn });
    };
    let damaged = || AuditError::Damaged { path: path.into(), line: lines };
    let v: Map<String, Value> = serde_json::from_str(last).map_err(|_| damaged())?;
    let seq = v.get("seq").and_then(Value::as_u64).ok_or_else(damaged)?;
    let mac = v.get("mac").or_else(|| v.get("hash")).and_then(Value::as_str).ok_or_else(damaged)?.to_owned();
    let kid = v.get("kid").and_then(Value::as_str).map(str::to_owned);
    Ok(Resumed { chain: Chain { seq, mac }, kid, torn })
}

impl Audit {
    /// Opens (or creates, `0600`) the trail at `path` and starts the writer task. An incomplete last
    /// line is cut off and the first record written says so (`kind: audit, event: recovered`). The
    /// key comes from `settings` (see [`super::writing_key`]); when the trail was last written with
    /// another key, the previous key must be configured: it signs a `key_rotated` record naming the
    /// new key id, and the chain goes on with the new key. Without it start-up is refused.
    pub fn open(path: &Path, settings: &AuditSettings, metrics: Arc<Metrics>) -> Result<Audit, AuditError> {
        let key = super::writing_key(settings.key.as_ref(), path).map_err(AuditError::Key)?;
        let resumed = resume(path)?;
        let mut first = Vec::new();
        match &resumed.kid {
            Some(kid) if kid != key.id() => {
                let previous =
                    settings.previous_key.as_ref().map(AuditKey::load).transpose().map_err(AuditError::Key)?;
                match previous {
                    Some(old) if old.id() == kid => {
                        tracing::warn!(old_kid = %kid, new_kid = key.id(), "audit key rotated: a key_rotated record signed with the old key hands the chain over");
                        let r = Record::new("audit").with("event", "key_rotated").with("new_kid", key.id());
                        first.push((r, old));
                    }
                    _ => {
                        return Err(AuditError::Key(format!(
                            "{} was last written with key id {kid}, but the configured key is {}: set [audit] previous_key_env or previous_key_file to the old key (a key_rotated record signed with it hands the chain over), or move the trail and its .head aside to start a new one",
                            path.display(),
                            key.id()
                        )))
                    }
                }
            }
            _ => {}
        }
        use std::os::unix::fs::OpenOptionsExt;
        // 0600 like the state file: records name users, tenants and decisions.
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .open(path)
            .map_err(|source| AuditError::Io { path: path.into(), source })?;
        let good_len = file.metadata().map_err(|source| AuditError::Io { path: path.into(), source })?.len();
        let (tx, rx) = mpsc::channel(8192);
        let health = Arc::new(Health::default());
        let (feed, _) = broadcast::channel(FEED_DEPTH);
        if let Some((bytes, sha256)) = resumed.torn {
            tracing::warn!(path = %path.display(), bytes, "audit trail ended with an incomplete record (a crash or a full disk during a write); cut it off and recorded that");
            first.push((
                Record::new("audit")
                    .with("event", "recovered")
                    .with("torn_bytes", bytes)
                    .with("torn_sha256", sha256)
                    .with(
                        "reason",
                        "the last line was incomplete (a write that never finished); its bytes were removed",
                    ),
                key.clone(),
            ));
        }
        let writer = Writer {
            file,
            path: path.to_path_buf(),
            good_len,
            chain: resumed.chain,
            pending: Vec::with_capacity(64 << 10),
            pending_records: 0,
            head: Head::open(&head_path(path)),
            key,
            health: health.clone(),
            metrics,
            failing_since: None,
            last_report: None,
            feed: feed.clone(),
        };
        std::thread::Builder::new()
            .name("firebreak-audit".into())
            .spawn(move || writer.run(rx, first))
            .map_err(|source| AuditError::Io { path: PathBuf::new(), source })?;
        Ok(Audit { tx, health, feed, path: Arc::from(path) })
    }

    /// The trail's file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Starts offering every write (its records' seqs, file offset and bytes) to fleet mode's audit
    /// shipper, with a non-blocking, byte-bounded queue (see [`super::ShipperHandle`]). Records
    /// written before this call are not offered: the shipper catches up from the file. False when
    /// a shipper was already set.
    pub fn set_shipper(&self, handle: super::ShipperHandle) -> bool {
        self.health.shipper.set(handle).is_ok()
    }

    /// A live feed of the records written from now on, each as a JSON object of [`FEED_FIELDS`]
    /// (the console's decision stream). Bounded and lossy: a subscriber that falls more than
    /// [`FEED_DEPTH`] records behind gets `Lagged` and skips ahead; the writer never waits for it.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<str>> {
        self.feed.subscribe()
    }

    /// Why the trail cannot be written right now, or `None` when the last write succeeded.
    pub fn failure(&self) -> Option<String> {
        if !self.health.failing.load(Ordering::Acquire) {
            return None;
        }
        Some(self.health.reason.lock().unwrap_or_else(|p| p.into_inner()).clone())
    }

    /// Starts handing the records of [`TAPPED_KINDS`] (with their seq and time) and the audit
    /// failure signal (`kind: audit`, `event: write_failed` / `writable_again`) to `tx`, with
    /// `try_send`: the writer never waits for the alerts side. False when a tap was already set.
    pub fn set_tap(&self, tx: mpsc::Sender<Map<String, Value>>) -> bool {
        self.health.tap.set(tx).is_ok()
    }

    /// Whether the last write succeeded (one atomic load: the request path asks this).
    pub fn writable(&self) -> bool {
        !self.health.failing.load(Ordering::Acquire)
    }

    /// Queues a record (waits only when the queue is full: backpressure, never loss).
    pub async fn record(&self, record: impl Into<Entry>) {
        if self.tx.send(Msg { record: Some(record.into()), ack: None, durable: false }).await.is_err() {
            tracing::error!("audit writer stopped; a record was lost");
        }
    }

    /// Writes a record and waits until it is on disk (fsynced). Returns its seq. Fails as soon as the
    /// write or the fsync fails (the record stays queued and is written once the disk recovers).
    pub async fn record_durable(&self, record: impl Into<Entry>) -> Result<u64, AuditError> {
        let (tx, rx) = oneshot::channel();
        self.tx
            .send(Msg { record: Some(record.into()), ack: Some(tx), durable: true })
            .await
            .map_err(|_| AuditError::Closed)?;
        match rx.await {
            Ok(Ok(seq)) => Ok(seq),
            Ok(Err(e)) => Err(AuditError::Unwritable(e)),
            Err(_) => Err(AuditError::Closed),
        }
    }

    /// Waits until every record queued before this call is written to the file (not fsynced), so a
    /// reader of the file sees them. Offline replay reads a case's records this way.
    pub async fn flush(&self) -> Result<(), AuditError> {
        let (tx, rx) = oneshot::channel();
        self.tx.send(Msg { record: None, ack: Some(tx), durable: false }).await.map_err(|_| AuditError::Closed)?;
        match rx.await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(AuditError::Unwritable(e)),
            Err(_) => Err(AuditError::Closed),
        }
    }
}

/// The writer's pause between bursts.
const BURST_PAUSE: Duration = Duration::from_millis(1);
/// How often a failing trail is tried again.
const RETRY: Duration = Duration::from_millis(200);
/// Records kept in memory while the trail cannot be written (serialised bytes).
const MAX_PENDING: usize = 64 << 20;
/// How often a failure still in progress is logged again.
const REPORT_EVERY: Duration = Duration::from_secs(10);

/// The writer thread's state.
struct Writer {
    file: std::fs::File,
    path: PathBuf,
    /// File length at the end of the last burst written whole.
    good_len: u64,
    /// The chain including records still pending.
    chain: Chain,
    /// Serialised records not yet written, in chain order.
    pending: Vec<u8>,
    pending_records: u64,
    head: Head,
    key: AuditKey,
    health: Arc<Health>,
    metrics: Arc<Metrics>,
    failing_since: Option<Instant>,
    last_report: Option<Instant>,
    /// Live subscribers' feed (see [`Audit::subscribe`]).
    feed: broadcast::Sender<Arc<str>>,
}

impl Writer {
    /// The loop, on its own thread so file I/O never blocks the runtime's workers.
    fn run(mut self, mut rx: mpsc::Receiver<Msg>, first: Vec<(Record, AuditKey)>) {
        let mut acks: Vec<(oneshot::Sender<Result<u64, String>>, u64)> = Vec::new();
        if !first.is_empty() {
            for (r, key) in first {
                self.append_with(Entry::Fields(r), Some(&key));
            }
            // At once, not with the first request: a recovery or a rotation is never left unsaid.
            let _ = self.write(true);
        }
        let mut closed = false;
        while !closed {
            // Healthy: sleep until a record comes. Failing: wake every RETRY to try again.
            let mut next = if self.failing_since.is_none() {
                match rx.blocking_recv() {
                    Some(m) => Some(m),
                    None => break,
                }
            } else {
                match rx.try_recv() {
                    Ok(m) => Some(m),
                    Err(mpsc::error::TryRecvError::Empty) => {
                        std::thread::sleep(RETRY);
                        None
                    }
                    Err(mpsc::error::TryRecvError::Disconnected) => {
                        closed = true;
                        None
                    }
                }
            };
            let burst_start = self.chain.seq;
            let mut sync = false;
            // Drain what is queued, then write once: one write syscall per burst, not per record.
            while let Some(Msg { record, ack, durable }) = next.take() {
                let kept = match record {
                    Some(record) => {
                        sync |= durable;
                        self.append(record)
                    }
                    None => true,
                };
                match ack {
                    Some(a) if kept => acks.push((a, self.chain.seq)),
                    Some(a) => {
                        let _ = a.send(Err("the record was dropped: the backlog of the failing trail is full".into()));
                    }
                    None => {}
                }
                next = rx.try_recv().ok();
            }
            let result = self.write(sync);
            // Someone waited on this burst (a durable write, a barrier): they are latency-sensitive, and
            // so is whoever comes next (a switch change, a replay case), so no pause after it. Nor after
            // a lone record: records arrive one at a time only when the gateway is not busy.
            let waited = !acks.is_empty() || self.chain.seq.saturating_sub(burst_start) <= 1;
            for (a, seq) in acks.drain(..) {
                let _ = a.send(result.as_ref().map(|_| seq).map_err(Clone::clone));
            }
            // Let records gather before the next burst: waking this thread for every request (a futex
            // wake and two context switches each) cost more than writing the record (perf, load test).
            if !waited && self.failing_since.is_none() {
                std::thread::sleep(BURST_PAUSE);
            }
        }
        if !self.pending.is_empty() {
            if let Err(e) = self.write(true) {
                tracing::error!(error = %e, path = %self.path.display(), records = self.pending_records, "audit records could not be written before exit");
            }
        }
    }

    /// Chains, MACs and serialises one record into the pending buffer (or drops it, counted, when
    /// the buffer is full because the trail has been failing for long).
    /// False when the record was dropped.
    fn append(&mut self, record: Entry) -> bool {
        self.append_with(record, None)
    }

    /// [`Writer::append`] with another key than the writer's (the old one, for `key_rotated`).
    fn append_with(&mut self, record: Entry, other_key: Option<&AuditKey>) -> bool {
        if self.pending.len() >= MAX_PENDING {
            self.metrics.audit_dropped();
            return false;
        }
        let key = other_key.unwrap_or(&self.key);
        let chain = ChainFields {
            seq: self.chain.seq + 1,
            time: humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string(),
            prev: std::mem::take(&mut self.chain.mac),
            kid: key.id().to_owned(),
        };
        let start = self.pending.len();
        // Both shapes serialise with their keys sorted (serde_json's Map is ordered by key; an
        // `Exchange` writes its fields in key order): the canonical bytes the verifier MACs again.
        // `mac` is appended as the last key (readers parse the line into a map: order is free).
        let (written, fields) = match record {
            Entry::Fields(r) => {
                let mut m = r.0;
                super::digest_sessions(&mut m);
                m.insert("seq".into(), Value::from(chain.seq));
                m.insert("time".into(), Value::from(chain.time));
                m.insert("prev".into(), Value::from(chain.prev));
                m.insert("kid".into(), Value::from(chain.kid));
                (serde_json::to_writer(&mut self.pending, &m), Fields::Map(m))
            }
            Entry::Exchange(mut e) => {
                if let Some(s) = e.session.as_mut() {
                    *s = super::session_digest(s);
                }
                e.chain = Some(chain);
                (serde_json::to_writer(&mut self.pending, &*e), Fields::Exchange(e))
            }
        };
        if let Err(e) = written {
            // Cannot happen for JSON values and strings; the record is dropped, the chain unchanged.
            tracing::error!(error = %e, "an audit record could not be serialised");
            self.pending.truncate(start);
            self.chain.mac = fields.prev().to_owned();
            self.metrics.audit_dropped();
            return false;
        }
        self.chain.seq += 1;
        self.chain.mac = key.mac(&self.pending[start..]);
        self.pending.pop(); // the closing brace
        self.pending.extend_from_slice(b",\"mac\":\"");
        self.pending.extend_from_slice(self.chain.mac.as_bytes());
        self.pending.extend_from_slice(b"\"}\n");
        self.pending_records += 1;
        if let Fields::Map(m) = &fields {
            // Exchanges (`request`, `mcp`) are never among the tapped kinds.
            self.health.tap(m, &self.metrics);
        }
        // Nobody listening (the usual case): nothing is built.
        if self.feed.receiver_count() > 0 {
            if let Some(summary) = fields.summary() {
                let _ = self.feed.send(Arc::from(Value::Object(summary).to_string()));
            }
        }
        true
    }

    /// Writes what is pending (and fsyncs when `sync`), then the head. On failure the file is cut
    /// back to its last good length and everything stays pending.
    fn write(&mut self, sync: bool) -> Result<(), String> {
        if self.pending.is_empty() && !sync && self.failing_since.is_none() {
            return Ok(());
        }
        let mut r = Ok(());
        if self.failing_since.is_some() {
            // Whatever a failed attempt left behind goes first (O_APPEND writes at the end).
            r = self.file.set_len(self.good_len);
        }
        if r.is_ok() && !self.pending.is_empty() {
            r = self.file.write_all(&self.pending);
        }
        if r.is_ok() && (sync || self.failing_since.is_some()) {
            r = self.file.sync_data();
        }
        if r.is_ok() {
            r = self.head.write(self.chain.seq, &self.key, &self.chain.mac);
        }
        match r {
            Ok(()) => {
                if let (Some(shipper), false) = (self.health.shipper.get(), self.pending.is_empty()) {
                    let first = self.chain.seq + 1 - self.pending_records;
                    shipper.offer(first, self.chain.seq, self.good_len, &self.pending);
                }
                self.good_len += self.pending.len() as u64;
                self.pending.clear();
                self.pending_records = 0;
                if let Some(since) = self.failing_since.take() {
                    self.health.failing.store(false, Ordering::Release);
                    self.metrics.set_audit_writable(true);
                    self.health.tap_failure("writable_again", &self.path.display().to_string(), &self.metrics);
                    tracing::warn!(path = %self.path.display(), failed_for_ms = since.elapsed().as_millis() as u64, "audit trail writable again; the records queued meanwhile are written");
                }
                Ok(())
            }
            Err(e) => {
                // A failed write may have left part of a line; a failed fsync may have lost pages
                // the kernel reported written. Either way: back to the last good end, write it all again.
                let cut = self.file.set_len(self.good_len);
                let reason = format!("{}: {e}", self.path.display());
                self.metrics.audit_write_error();
                let now = Instant::now();
                if self.failing_since.is_none() {
                    *self.health.reason.lock().unwrap_or_else(|p| p.into_inner()) = reason.clone();
                    self.health.failing.store(true, Ordering::Release);
                    self.metrics.set_audit_writable(false);
                    self.failing_since = Some(now);
                    self.health.tap_failure("write_failed", &reason, &self.metrics);
                }
                if self.last_report.is_none_or(|t| now.duration_since(t) >= REPORT_EVERY) {
                    self.last_report = Some(now);
                    tracing::error!(error = %e, path = %self.path.display(), pending_records = self.pending_records, cut_back = cut.is_ok(), "audit write failed; records are held and retried, the gateway is not ready");
                }
                Err(reason)
            }
        }
    }
}

/// `<file>.head`: the last seq, the key id and a MAC over the seq and that record's MAC (so only the
/// key holder can write a head, and a truncated trail cannot be given a matching one), overwritten
/// in place with one `pwrite` of a fixed-size, space-padded JSON document per burst (cheaper than a
/// temp file and a rename; far smaller than a disk sector, so it is not torn in practice).
struct Head(Option<std::fs::File>);

const HEAD_LEN: usize = 192;

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

    fn write(&mut self, seq: u64, key: &AuditKey, record_mac: &str) -> std::io::Result<()> {
        use std::os::unix::fs::FileExt;
        let Some(f) = &self.0 else { return Ok(()) };
        let mut doc =
            format!("{{\"seq\":{seq},\"kid\":\"{}\",\"mac\":\"{}\"}}", key.id(), key.head_mac(seq, record_mac));
        let pad = HEAD_LEN.saturating_sub(doc.len() + 1);
        doc.extend(std::iter::repeat_n(' ', pad));
        doc.push('\n');
        f.write_all_at(doc.as_bytes(), 0)
    }
}
