//! The audit shipper: every record of the local hash-chained JSONL goes to the `audit_records` table
//! (at least once, idempotent on (replica id, seq)) from a bounded queue that never blocks the
//! request path, catching up from the JSONL after an overflow or an outage.
//!
//! The writer offers each write as a [`Chunk`] ([`crate::audit::ShipperHandle`]); a full queue
//! drops it (`firebreak_fleet_audit_queue_overflow_total`). The task ships chunks in order; a gap
//! (a dropped chunk, records written before the task started, an outage) is read back from the
//! file, from the offset after the last shipped record when it is known (checked: the line there
//! must carry the next seq), else from the start, skipping what is shipped. The file is read by
//! path each time, so a trail that was moved aside and restarted is noticed (its seqs restart
//! below what PostgreSQL holds for this replica id: reported, never overwritten). The writer never
//! renames the trail itself (an audit-key rotation is a record inside it).
//!
//! While PostgreSQL is down a batch is retried with a backoff (100 ms doubling to 5 s); the queue
//! overflows meanwhile, and a catch-up follows. After each batch the replica's row gets the local
//! head (`replicas.audit_head`, for `audit verify --postgres`) and `shipped_seq`.

use std::collections::BTreeSet;
use std::io::{BufRead, Seek};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use serde_json::Value;

use super::db::{db_error, statement_error};
use super::{Fleet, FleetError, FleetStatus};
use crate::audit::{Audit, Chunk, ShipperQueue};

/// Backlog (records) past which the replica reports itself degraded.
pub const BACKLOG_DEGRADED: u64 = 10_000;
/// A backlog with no successful ship for this long is degraded too.
pub const STALE_AFTER: Duration = Duration::from_secs(30);
const BACKOFF_MIN: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(5);
const TICK: Duration = Duration::from_millis(500);
/// The head goes to the replica's row at most this often while batches flow (and at each tick).
const HEAD_EVERY: Duration = Duration::from_secs(1);
/// Chunks taken from the queue before the batch is shipped (they gather while a batch is in flight).
const DRAIN: usize = 256;
/// How long after a catch-up that found nothing to read the next one is tried.
const MISSING_RETRY: Duration = Duration::from_secs(30);

/// The statement of design §9: duplicates dropped, `rules` expanded from one JSON array per row.
const INSERT: &str =
    "INSERT INTO audit_records (replica_id, seq, time, kind, event, user_id, tenant, key_id, session, \
     request_id, rules, has_canary, flagged, line) \
     SELECT $1, u.seq, u.time, u.kind, u.event, u.user_id, u.tenant, u.key_id, u.session, u.request_id, \
            ARRAY(SELECT jsonb_array_elements_text(u.rules::jsonb)), u.has_canary, u.flagged, u.line \
     FROM unnest($2::bigint[], $3::timestamptz[], $4::text[], $5::text[], $6::text[], $7::text[], $8::text[], \
                 $9::text[], $10::text[], $11::text[], $12::bool[], $13::bool[], $14::text[]) \
          AS u(seq, time, kind, event, user_id, tenant, key_id, session, request_id, rules, has_canary, flagged, line) \
     ON CONFLICT (replica_id, seq) DO NOTHING";

/// The replica's head and shipped seq; inserts a minimal row when the heartbeat has not made one
/// yet (with this process's pid and start time, so the heartbeat takes it for its own; the
/// heartbeat's upsert fills in the rest).
const HEAD: &str =
    "INSERT INTO replicas (replica_id, address, pid, binary_version, started_at, last_seen, policy_hash, \
     audit_head, shipped_seq) VALUES ($1, '', $4, $5, $6, now(), '', $2, $3) \
     ON CONFLICT (replica_id) DO UPDATE SET audit_head = coalesce(EXCLUDED.audit_head, replicas.audit_head), \
     shipped_seq = GREATEST(replicas.shipped_seq, EXCLUDED.shipped_seq)";

/// What `/readyz` learns about the shipper (`Fleet.shipper`).
#[derive(Debug)]
pub struct ShipperState {
    /// The task runs (set by [`spawn`]).
    running: AtomicBool,
    /// The last successful ship, or the last time there was nothing to ship.
    last_ok: Mutex<Instant>,
    /// A problem that needs an operator (records missing from the local trail).
    problem: Mutex<Option<String>>,
    /// The local head (`<trail>.head`) read after the last shipped batch.
    head: Mutex<Option<Value>>,
}

impl Default for ShipperState {
    fn default() -> Self {
        ShipperState {
            running: AtomicBool::new(false),
            last_ok: Mutex::new(Instant::now()),
            problem: Mutex::new(None),
            head: Mutex::new(None),
        }
    }
}

impl ShipperState {
    /// Reasons the shipper makes this replica degraded: behind by more than [`BACKLOG_DEGRADED`]
    /// records, or behind with no successful ship for [`STALE_AFTER`]; records it cannot ship.
    pub fn degraded(&self, status: &FleetStatus) -> Vec<String> {
        let mut why = Vec::new();
        if !self.running.load(Relaxed) {
            return why;
        }
        let backlog = status.written_seq.load(Relaxed).saturating_sub(status.shipped_seq.load(Relaxed));
        let stale = self.last_ok.lock().map(|t| t.elapsed() > STALE_AFTER).unwrap_or(false);
        if backlog > BACKLOG_DEGRADED || (backlog > 0 && stale) {
            why.push(format!("audit shipper behind by {backlog} records"));
        }
        if let Some(p) = self.problem.lock().ok().and_then(|p| p.clone()) {
            why.push(p);
        }
        why
    }

    /// The local audit head read after the last shipped batch, for the heartbeat's
    /// `replicas.audit_head` (`audit verify --postgres` checks the shipped records against it; a
    /// head ahead of them is a backlog). `None` before the first batch: keep what the row has.
    pub fn head(&self) -> Option<Value> {
        self.head.lock().ok().and_then(|h| h.clone())
    }

    fn ok(&self) {
        if let Ok(mut t) = self.last_ok.lock() {
            *t = Instant::now();
        }
    }

    fn set_problem(&self, p: Option<String>) {
        if let Ok(mut slot) = self.problem.lock() {
            *slot = p;
        }
    }
}

/// Connects the audit writer to a new shipper task (from `gateway::fleet::start`). Records written
/// before this call are caught up from the file. Does nothing in single-node mode (`None`) or when
/// a shipper is already set.
pub fn spawn(fleet: Option<&Arc<Fleet>>, audit: &Audit) {
    let Some(fleet) = fleet else { return };
    let (handle, queue) = crate::audit::shipper_channel(fleet.settings.audit_queue_bytes);
    if !audit.set_shipper(handle) {
        return;
    }
    tokio::spawn(run(fleet.clone(), queue, audit.path().to_path_buf()));
}

/// The task: ships until the audit writer stops.
pub async fn run(fleet: Arc<Fleet>, queue: ShipperQueue, path: PathBuf) {
    fleet.shipper.running.store(true, Relaxed);
    fleet.shipper.ok();
    let batch = Batch::with_capacity(fleet.settings.audit_batch.max(1));
    let mut s = Shipper {
        fleet,
        queue,
        path,
        shipped: 0,
        next_offset: None,
        file_seq: 0,
        batch,
        backoff: BACKOFF_MIN,
        catch_up_after: None,
        last_error_log: None,
        pending_end: None,
        head_sent_seq: 0,
        head_sent_at: None,
    };
    s.shipped = loop {
        match s.load_shipped().await {
            Ok(v) => break v,
            Err(e) => s.failed(&e).await,
        }
    };
    s.backoff = BACKOFF_MIN;
    s.mirror();
    tracing::info!(replica = %s.fleet.replica_id, shipped_seq = s.shipped, "audit shipper started");
    // Whatever the file holds beyond what PostgreSQL has (records written before the task started,
    // or while the replica was down).
    s.catch_up(u64::MAX).await;
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            c = s.queue.recv() => match c {
                Some(c) => {
                    s.on_chunk(c).await;
                    for _ in 0..DRAIN {
                        let Some(c) = s.queue.try_recv() else { break };
                        s.on_chunk(c).await;
                    }
                    s.finish().await;
                }
                None => break,
            },
            _ = tick.tick() => s.on_tick().await,
        }
        s.mirror();
    }
    // The writer has stopped: ship what it wrote last (best effort, no retry beyond one round).
    s.finish().await;
    let until = s.written();
    if until > s.shipped {
        s.catch_up(until).await;
    }
    s.send_head().await;
}

/// The shipper task's state.
struct Shipper {
    fleet: Arc<Fleet>,
    queue: ShipperQueue,
    path: PathBuf,
    /// The last seq known to be in `audit_records` for this replica.
    shipped: u64,
    /// Where the record after `shipped` starts in the file, when known.
    next_offset: Option<u64>,
    /// The highest seq read from the file.
    file_seq: u64,
    batch: Batch,
    backoff: Duration,
    /// No catch-up from the tick before this (the last one found records missing).
    catch_up_after: Option<Instant>,
    last_error_log: Option<Instant>,
    /// The last chunk taken into the batch: its last seq and the offset after it.
    pending_end: Option<(u64, u64)>,
    /// `shipped` when the head was last sent, and when.
    head_sent_seq: u64,
    head_sent_at: Option<Instant>,
}

impl Shipper {
    fn written(&self) -> u64 {
        self.queue.written_seq().max(self.file_seq)
    }

    /// Publishes the counters (status, metrics).
    fn mirror(&self) {
        let f = &self.fleet;
        let written = self.written();
        f.status.written_seq.store(written, Relaxed);
        f.status.shipped_seq.store(self.shipped, Relaxed);
        f.metrics.audit_queue_overflow.store(self.queue.overflows(), Relaxed);
    }

    async fn load_shipped(&self) -> Result<u64, FleetError> {
        let c = self.fleet.db.client().await?;
        let row = c
            .query_one(
                "SELECT coalesce(max(seq), 0) FROM audit_records WHERE replica_id = $1",
                &[&self.fleet.replica_id],
            )
            .await
            .map_err(|e| statement_error(&e))?;
        Ok(row.get::<_, i64>(0).max(0) as u64)
    }

    /// Counts a failure, logs it (at most every 10 s) and waits the backoff.
    async fn failed(&mut self, e: &FleetError) {
        self.fleet.metrics.audit_ship_errors.fetch_add(1, Relaxed);
        let now = Instant::now();
        if self.last_error_log.is_none_or(|t| now.duration_since(t) >= Duration::from_secs(10)) {
            self.last_error_log = Some(now);
            tracing::warn!(error = %e, backlog = self.written().saturating_sub(self.shipped), "audit shipping failed; retrying (the records are in the local trail)");
        }
        self.mirror();
        tokio::time::sleep(self.backoff).await;
        self.backoff = (self.backoff * 2).min(BACKOFF_MAX);
    }

    /// Takes a chunk's records into the batch (shipped when full, or by [`Shipper::finish`]),
    /// after catching up a gap before it.
    async fn on_chunk(&mut self, c: Chunk) {
        let end = c.offset + c.bytes.len() as u64;
        self.file_seq = self.file_seq.max(c.last_seq);
        if c.last_seq <= self.shipped.max(self.batch.last) {
            if c.last_seq == self.shipped {
                self.next_offset = Some(end);
            }
            return;
        }
        if c.first_seq > self.shipped.max(self.batch.last) + 1 {
            self.finish().await;
            self.catch_up(c.first_seq - 1).await;
        }
        for line in c.bytes.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
            let Ok(line) = std::str::from_utf8(line) else { continue };
            match Row::parse(line) {
                Ok(row) if row.seq as u64 <= self.shipped.max(self.batch.last) => {}
                Ok(row) => {
                    self.batch.push(row);
                    if self.batch.len() >= self.fleet.settings.audit_batch {
                        self.flush().await;
                    }
                }
                Err(e) => tracing::error!(error = %e, "an audit record cannot be shipped: it is not a record"),
            }
        }
        self.pending_end = Some((c.last_seq, end));
    }

    /// Ships the batch and, when it ended with a whole chunk, remembers where the next record starts.
    async fn finish(&mut self) {
        self.flush().await;
        if let Some((seq, end)) = self.pending_end.take() {
            if self.shipped == seq {
                self.next_offset = Some(end);
            }
        }
    }

    async fn on_tick(&mut self) {
        self.send_head().await;
        let written = self.written();
        if written <= self.shipped {
            self.fleet.shipper.ok();
            return;
        }
        // Chunks still queued will be shipped (or show their gap) when they are received.
        if self.queue.queued_bytes() > 0 || self.catch_up_after.is_some_and(|t| Instant::now() < t) {
            return;
        }
        self.catch_up(written).await;
    }

    /// Ships the file's records after `shipped` up to `until` (inclusive; `u64::MAX`: to the end).
    async fn catch_up(&mut self, until: u64) {
        let mut rescanned = self.next_offset.is_none();
        while self.shipped < until {
            let start = self.next_offset.unwrap_or(0);
            let (path, after, max) = (self.path.clone(), self.shipped, self.fleet.settings.audit_batch.max(1));
            let read = tokio::task::spawn_blocking(move || read_lines(&path, start, after, until, max)).await;
            let read = match read {
                Ok(Ok(r)) => r,
                Ok(Err(e)) => {
                    tracing::error!(error = %e, path = %self.path.display(), "audit shipper cannot read the local trail");
                    self.catch_up_after = Some(Instant::now() + MISSING_RETRY);
                    return;
                }
                Err(_) => return,
            };
            self.file_seq = self.file_seq.max(read.last_seq);
            let misplaced = start > 0 && (read.beyond_end || read.first_seq.is_some_and(|s| s > after + 1));
            if misplaced && !rescanned {
                // The offset no longer points at the next record (the file was replaced): from the start.
                self.next_offset = None;
                rescanned = true;
                continue;
            }
            if read.rows.is_empty() {
                if until != u64::MAX {
                    self.missing(until, read.last_seq);
                } else if start == 0 && read.eof && read.last_seq < self.shipped {
                    self.missing(self.shipped, read.last_seq);
                }
                self.next_offset = Some(read.end_offset).filter(|_| !misplaced);
                return;
            }
            for row in read.rows {
                self.batch.push(row);
            }
            self.flush().await;
            self.next_offset = Some(read.end_offset);
            self.fleet.shipper.set_problem(None);
            self.catch_up_after = None;
            if read.eof {
                return;
            }
        }
    }

    /// Records that should be in the local trail are not: reported, retried later.
    fn missing(&mut self, until: u64, file_last: u64) {
        let p = format!(
            "audit records {}..={until} of replica {} are not in the local trail {} (it ends at seq {file_last}): it was moved aside or restarted; give a restarted trail a new replica id",
            self.shipped + 1,
            self.fleet.replica_id,
            self.path.display()
        );
        if self.catch_up_after.is_none() {
            tracing::error!("{p}");
        }
        self.fleet.shipper.set_problem(Some(p));
        self.catch_up_after = Some(Instant::now() + MISSING_RETRY);
    }

    /// Ships the batch, retrying until PostgreSQL takes it.
    async fn flush(&mut self) {
        if self.batch.len() == 0 {
            return;
        }
        loop {
            match self.insert().await {
                Ok(()) => break,
                Err(e) => self.failed(&e).await,
            }
        }
        self.backoff = BACKOFF_MIN;
        let n = self.batch.len() as u64;
        self.shipped = self.shipped.max(self.batch.last);
        self.batch.clear();
        self.fleet.metrics.audit_shipped.fetch_add(n, Relaxed);
        self.fleet.shipper.ok();
        self.mirror();
        if self.head_sent_at.is_none_or(|t| t.elapsed() >= HEAD_EVERY) {
            self.send_head().await;
        }
    }

    async fn insert(&self) -> Result<(), FleetError> {
        let c = self.fleet.db.client().await?;
        let st = c.prepare_cached(INSERT).await.map_err(|e| statement_error(&e))?;
        let b = &self.batch;
        c.execute(
            &st,
            &[
                &self.fleet.replica_id,
                &b.seq,
                &b.time,
                &b.kind,
                &b.event,
                &b.user_id,
                &b.tenant,
                &b.key_id,
                &b.session,
                &b.request_id,
                &b.rules,
                &b.has_canary,
                &b.flagged,
                &b.line,
            ],
        )
        .await
        .map_err(|e| statement_error(&e))?;
        Ok(())
    }

    /// The local head file and `shipped_seq` to the replica's row, when something was shipped
    /// since the last time (best effort: the next batch or tick sends them again).
    async fn send_head(&mut self) {
        if self.shipped == self.head_sent_seq {
            return;
        }
        let head = std::fs::read_to_string(crate::audit::head_path(&self.path))
            .ok()
            .and_then(|t| serde_json::from_str::<Value>(t.trim_end()).ok())
            .filter(Value::is_object);
        if let (Some(h), Ok(mut slot)) = (&head, self.fleet.shipper.head.lock()) {
            *slot = Some(h.clone());
        }
        let Ok(c) = self.fleet.db.client().await else { return };
        let r = c
            .execute(
                HEAD,
                &[
                    &self.fleet.replica_id,
                    &head,
                    &(self.shipped as i64),
                    &Fleet::pid(),
                    &env!("CARGO_PKG_VERSION"),
                    &self.fleet.started_at,
                ],
            )
            .await;
        match r {
            Ok(_) => {
                self.head_sent_seq = self.shipped;
                self.head_sent_at = Some(Instant::now());
            }
            Err(e) => tracing::debug!(error = %db_error(&e), "audit head not sent"),
        }
    }
}

/// One `audit_records` row.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    /// `seq`.
    pub seq: i64,
    /// `time`.
    pub time: SystemTime,
    /// `kind`.
    pub kind: String,
    /// `event`.
    pub event: Option<String>,
    /// `user`.
    pub user_id: Option<String>,
    /// `tenant`.
    pub tenant: Option<String>,
    /// `key_id`.
    pub key_id: Option<String>,
    /// `session` (already a digest in the trail).
    pub session: Option<String>,
    /// `request_id`.
    pub request_id: Option<String>,
    /// Rule ids: decision rules ∪ redaction rule ids ∪ injections ∪ `rule`, sorted.
    pub rules: Vec<String>,
    /// A rule id starting with `canary.`.
    pub has_canary: bool,
    /// A block decision, a credential or canary redaction, an injection, an incident.
    pub flagged: bool,
    /// The exact JSONL line.
    pub line: String,
}

/// The fields of a record the row's columns come from; every other field is skipped unparsed
/// (no map of the whole record is built). Scalars are kept only when they are strings ([`Str`]);
/// the three lists stay generic values, read as leniently as before.
#[derive(serde::Deserialize)]
struct Fields<'a> {
    #[serde(default)]
    seq: Option<u64>,
    #[serde(default, borrow)]
    time: Str<'a>,
    #[serde(default, borrow)]
    kind: Str<'a>,
    #[serde(default, borrow)]
    event: Str<'a>,
    #[serde(default, borrow)]
    user: Str<'a>,
    #[serde(default, borrow)]
    tenant: Str<'a>,
    #[serde(default, borrow)]
    key_id: Str<'a>,
    #[serde(default, borrow)]
    session: Str<'a>,
    #[serde(default, borrow)]
    request_id: Str<'a>,
    #[serde(default, borrow)]
    rule: Str<'a>,
    #[serde(default)]
    decisions: Option<Value>,
    #[serde(default)]
    redactions: Option<Value>,
    #[serde(default)]
    injections: Option<Value>,
}

/// A field kept only when it is a JSON string (borrowed from the line when it has no escapes);
/// any other value is skipped, as `Value::as_str` would.
#[derive(Default)]
struct Str<'a>(Option<std::borrow::Cow<'a, str>>);

impl Str<'_> {
    fn owned(&self) -> Option<String> {
        self.0.as_deref().map(str::to_owned)
    }
}

impl<'de: 'a, 'a> serde::Deserialize<'de> for Str<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::{IgnoredAny, MapAccess, SeqAccess, Visitor};
        use std::borrow::Cow;
        struct V<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for V<'a> {
            type Value = Str<'a>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Str<'a>, E> {
                Ok(Str(Some(Cow::Borrowed(v))))
            }
            fn visit_str<E>(self, v: &str) -> Result<Str<'a>, E> {
                Ok(Str(Some(Cow::Owned(v.to_owned()))))
            }
            fn visit_string<E>(self, v: String) -> Result<Str<'a>, E> {
                Ok(Str(Some(Cow::Owned(v))))
            }
            fn visit_bool<E>(self, _: bool) -> Result<Str<'a>, E> {
                Ok(Str(None))
            }
            fn visit_i64<E>(self, _: i64) -> Result<Str<'a>, E> {
                Ok(Str(None))
            }
            fn visit_u64<E>(self, _: u64) -> Result<Str<'a>, E> {
                Ok(Str(None))
            }
            fn visit_f64<E>(self, _: f64) -> Result<Str<'a>, E> {
                Ok(Str(None))
            }
            fn visit_unit<E>(self) -> Result<Str<'a>, E> {
                Ok(Str(None))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut a: A) -> Result<Str<'a>, A::Error> {
                while a.next_element::<IgnoredAny>()?.is_some() {}
                Ok(Str(None))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut a: A) -> Result<Str<'a>, A::Error> {
                while a.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                Ok(Str(None))
            }
        }
        d.deserialize_any(V(std::marker::PhantomData))
    }
}

impl Row {
    /// The row of one JSONL line.
    pub fn parse(line: &str) -> Result<Row, String> {
        let f: Fields = serde_json::from_str(line).map_err(|e| format!("not a record: {e}"))?;
        Row::from_fields(f, line)
    }

    /// The row of `line`, its fields already read.
    fn from_fields(f: Fields<'_>, line: &str) -> Result<Row, String> {
        let seq = f.seq.ok_or("no seq")?;
        let time = f.time.0.as_deref().and_then(|t| humantime::parse_rfc3339_weak(t).ok()).ok_or("no time")?;
        let kind = f.kind.owned().ok_or("no kind")?;
        let mut rules = BTreeSet::new();
        let mut flagged = kind == "incident" || f.event.0.as_deref() == Some("tool_call_refused");
        for d in f.decisions.as_ref().and_then(Value::as_array).into_iter().flatten() {
            if let Some(r) = d.get("rule").and_then(Value::as_str) {
                rules.insert(r.to_owned());
            }
            flagged |= d.get("action").and_then(Value::as_str) == Some("block");
        }
        for id in f.redactions.as_ref().and_then(Value::as_object).into_iter().flat_map(|r| r.keys()) {
            flagged |= id.starts_with("canary") || credential_rule(id);
            rules.insert(id.clone());
        }
        for i in f.injections.as_ref().and_then(Value::as_array).into_iter().flatten() {
            if let Some(i) = i.as_str() {
                rules.insert(i.to_owned());
                flagged = true;
            }
        }
        if let Some(r) = f.rule.owned() {
            rules.insert(r);
        }
        let has_canary = rules.iter().any(|r| r.starts_with("canary."));
        Ok(Row {
            seq: i64::try_from(seq).map_err(|_| "seq out of range")?,
            time,
            kind,
            event: f.event.owned(),
            user_id: f.user.owned(),
            tenant: f.tenant.owned(),
            key_id: f.key_id.owned(),
            session: f.session.owned(),
            request_id: f.request_id.owned(),
            rules: rules.into_iter().collect(),
            has_canary,
            flagged,
            line: line.to_owned(),
        })
    }
}

/// Whether `id` is a built-in credential rule (a redaction of one is flagged; PII is not).
fn credential_rule(id: &str) -> bool {
    static IDS: std::sync::OnceLock<BTreeSet<String>> = std::sync::OnceLock::new();
    IDS.get_or_init(|| {
        crate::inspect::builtin_rules()
            .map(|rules| {
                rules
                    .into_iter()
                    .filter(|(r, _)| r.category == crate::inspect::Category::Credential)
                    .map(|(r, _)| r.id)
                    .collect()
            })
            .unwrap_or_default()
    })
    .contains(id)
}

/// Rows in the column layout the INSERT binds.
#[derive(Debug, Default)]
struct Batch {
    /// The highest seq in the batch (0: empty).
    last: u64,
    seq: Vec<i64>,
    time: Vec<SystemTime>,
    kind: Vec<String>,
    event: Vec<Option<String>>,
    user_id: Vec<Option<String>>,
    tenant: Vec<Option<String>>,
    key_id: Vec<Option<String>>,
    session: Vec<Option<String>>,
    request_id: Vec<Option<String>>,
    rules: Vec<String>,
    has_canary: Vec<bool>,
    flagged: Vec<bool>,
    line: Vec<String>,
}

impl Batch {
    fn with_capacity(n: usize) -> Batch {
        Batch { seq: Vec::with_capacity(n), line: Vec::with_capacity(n), ..Batch::default() }
    }

    fn push(&mut self, r: Row) {
        self.last = self.last.max(r.seq.max(0) as u64);
        self.seq.push(r.seq);
        self.time.push(r.time);
        self.kind.push(r.kind);
        self.event.push(r.event);
        self.user_id.push(r.user_id);
        self.tenant.push(r.tenant);
        self.key_id.push(r.key_id);
        self.session.push(r.session);
        self.request_id.push(r.request_id);
        self.rules.push(serde_json::to_string(&r.rules).unwrap_or_else(|_| "[]".into()));
        self.has_canary.push(r.has_canary);
        self.flagged.push(r.flagged);
        self.line.push(r.line);
    }

    fn len(&self) -> usize {
        self.seq.len()
    }

    fn clear(&mut self) {
        self.last = 0;
        self.seq.clear();
        self.time.clear();
        self.kind.clear();
        self.event.clear();
        self.user_id.clear();
        self.tenant.clear();
        self.key_id.clear();
        self.session.clear();
        self.request_id.clear();
        self.rules.clear();
        self.has_canary.clear();
        self.flagged.clear();
        self.line.clear();
    }
}

/// What one read of the trail found.
#[derive(Debug, Default)]
struct Read {
    /// Records with `after < seq <= until`, at most `max`, in file order.
    rows: Vec<Row>,
    /// Offset after the last line consumed (shipped or skipped).
    end_offset: u64,
    /// The seq of the first whole line read.
    first_seq: Option<u64>,
    /// The highest seq read.
    last_seq: u64,
    /// `start` is past the end of the file.
    beyond_end: bool,
    /// The end of the file (its last whole line) was reached.
    eof: bool,
}

/// Reads the trail from `start` (a line boundary), skipping records with `seq <= after` and
/// stopping before the first with `seq > until`, after `max` records, or at an incomplete line.
fn read_lines(path: &Path, start: u64, after: u64, until: u64, max: usize) -> std::io::Result<Read> {
    let mut f = std::fs::File::open(path)?;
    let mut read = Read { end_offset: start, ..Read::default() };
    if f.metadata()?.len() < start {
        read.beyond_end = true;
        read.eof = true;
        return Ok(read);
    }
    f.seek(std::io::SeekFrom::Start(start))?;
    let mut r = std::io::BufReader::with_capacity(256 << 10, f);
    let mut line = Vec::new();
    loop {
        line.clear();
        let n = r.read_until(b'\n', &mut line)?;
        if n == 0 || line.last() != Some(&b'\n') {
            read.eof = true;
            return Ok(read);
        }
        let body = &line[..n - 1];
        let Some((text, fields, seq)) = record_of(body) else {
            // Not a record (cannot happen in a trail the writer wrote); skipped, verify names it.
            read.end_offset += n as u64;
            continue;
        };
        read.first_seq.get_or_insert(seq);
        read.last_seq = read.last_seq.max(seq);
        if seq > until {
            return Ok(read);
        }
        read.end_offset += n as u64;
        if seq <= after {
            continue;
        }
        match Row::from_fields(fields, text) {
            Ok(row) => read.rows.push(row),
            Err(e) => tracing::error!(seq, error = %e, "an audit record cannot be shipped"),
        }
        if read.rows.len() >= max {
            return Ok(read);
        }
    }
}

/// A trail line read once: its text, its fields and its seq (`None`: not a record).
fn record_of(body: &[u8]) -> Option<(&str, Fields<'_>, u64)> {
    let text = std::str::from_utf8(body).ok()?;
    let fields: Fields = serde_json::from_str(text).ok()?;
    let seq = fields.seq?;
    Some((text, fields, seq))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_row_carries_the_indexed_columns_and_the_exact_line() {
        let line = r#"{"decisions":[{"action":"block","rule":"injection.block"}],"injections":["ignore_previous"],"key_id":"k1","kind":"request","event":"decision","redactions":{"canary.support_bot":1,"email":2},"request_id":"r-1","seq":7,"session":"sha256:0011223344556677","tenant":"t","time":"2026-12-03T16:18:09.123Z","user":"alice","mac":"x"}"#;
        let r = Row::parse(line).expect("row");
        assert_eq!(r.seq, 7);
        assert_eq!(r.user_id.as_deref(), Some("alice"));
        assert_eq!(r.session.as_deref(), Some("sha256:0011223344556677"));
        assert_eq!(r.rules, ["canary.support_bot", "email", "ignore_previous", "injection.block"]);
        assert!(r.has_canary && r.flagged);
        assert_eq!(r.line, line);
        let t = r.time.duration_since(SystemTime::UNIX_EPOCH).expect("after 1970");
        assert_eq!(t.as_millis() % 1000, 123);
        let plain =
            Row::parse(r#"{"kind":"request","seq":8,"time":"2026-12-03T16:18:09.000Z","redactions":{"email":1}}"#)
                .expect("row");
        assert!(!plain.flagged && !plain.has_canary);
        let cred = Row::parse(
            r#"{"kind":"request","seq":9,"time":"2026-12-03T16:18:09.000Z","redactions":{"aws_access_key_id":1}}"#,
        )
        .expect("row");
        assert!(cred.flagged, "a credential redaction is flagged");
        assert!(Row::parse(r#"{"kind":"request","time":"2026-12-03T16:18:09.000Z"}"#).is_err());
        // Only strings fill the text columns (other values are skipped, not refused); escapes are read.
        let odd = Row::parse(
            r#"{"kind":"switch","seq":10,"time":"2026-12-03T16:18:09.000Z","user":null,"session":{"id":1},"rule":5,"tenant":"a\"b","event":["x"],"decisions":"none","extra":{"deep":[1,{"a":2}]}}"#,
        )
        .expect("row");
        assert_eq!((odd.user_id, odd.session, odd.event), (None, None, None));
        assert_eq!(odd.tenant.as_deref(), Some("a\"b"));
        assert!(odd.rules.is_empty() && !odd.flagged);
    }

    #[test]
    fn reading_the_trail_skips_what_is_shipped_and_stops_at_until_and_torn_lines() {
        let dir = std::env::temp_dir().join(format!("fb-shipper-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let path = dir.join("a.jsonl");
        let line = |seq: u64| format!("{{\"kind\":\"request\",\"seq\":{seq},\"time\":\"2026-12-03T16:18:09.000Z\"}}\n");
        let text: String = (1..=5).map(line).collect::<String>() + "{\"kind\":\"req";
        std::fs::write(&path, &text).expect("write");
        let r = read_lines(&path, 0, 2, u64::MAX, 100).expect("read");
        assert_eq!(r.rows.iter().map(|r| r.seq).collect::<Vec<_>>(), [3, 4, 5]);
        assert!(r.eof);
        assert_eq!(
            r.end_offset as usize,
            (1..=5).map(|s| line(s).len()).sum::<usize>(),
            "the torn line is not consumed"
        );
        let r = read_lines(&path, 0, 0, 3, 2).expect("read");
        assert_eq!(r.rows.iter().map(|r| r.seq).collect::<Vec<_>>(), [1, 2]);
        let r2 = read_lines(&path, r.end_offset, 2, 3, 100).expect("read");
        assert_eq!(r2.rows.iter().map(|r| r.seq).collect::<Vec<_>>(), [3]);
        assert_eq!(r2.first_seq, Some(3));
        assert!(!r2.eof, "stopped before seq 4");
        assert!(read_lines(&path, 1 << 20, 0, u64::MAX, 10).expect("read").beyond_end);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
