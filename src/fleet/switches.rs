//! Switch batches as one PostgreSQL transaction (compare-and-set on the version, the audit record in
//! the same transaction, NOTIFY), reading and seeding the shared snapshot, and `?wait=all`.
//!
//! The shared snapshot is one row of `switch_state`: `snapshot` is serde's [`Snapshot`] (canary
//! values are skipped by serde), `canaries` holds the canary values apart, as the state file keeps
//! them under `canary_values`. The LISTEN + poll loop that installs newer snapshots is the gateway's
//! (`gateway::fleet::sync`): installing needs the gateway.

use std::time::{Duration, Instant, SystemTime};

use serde_json::{json, Map, Value};

use super::{db::db_error, Fleet, FleetError};
use crate::state::{ApplyError, FleetFailure, Snapshot};

/// The NOTIFY channel of committed switch batches.
pub const CHANNEL: &str = "firebreak_switch";

/// A batch committed to the shared snapshot.
#[derive(Debug)]
pub struct Committed {
    /// The version before.
    pub before: u64,
    /// The snapshot committed (with its canaries).
    pub after: Snapshot,
    /// When it was committed (this host's clock, microseconds since the epoch).
    pub committed_at_us: i64,
}

/// The shared snapshot as read from the database.
#[derive(Debug)]
pub struct Remote {
    /// Its version.
    pub version: u64,
    /// The snapshot, its canaries restored.
    pub snapshot: Snapshot,
    /// The replica that committed this version and when (µs since the epoch), from
    /// `switch_batches` (none for a seeded version).
    pub committed: Option<(String, i64)>,
}

/// A notification of a committed batch: `{"v": version, "t": commit time (µs), "r": replica}`.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct Notice {
    /// The version committed.
    pub v: u64,
    /// When (the committing replica's clock, microseconds since the epoch).
    #[serde(default)]
    pub t: i64,
    /// Which replica committed it.
    #[serde(default)]
    pub r: String,
}

/// The answer of [`Fleet::wait_all`].
#[derive(Debug, Clone, serde::Serialize)]
pub struct WaitAll {
    /// The version waited for.
    pub version: u64,
    /// Every live replica has applied it.
    pub complete: bool,
    /// How long it waited.
    pub waited_ms: u64,
    /// Every replica: `{id, applied, live}`.
    pub replicas: Vec<Value>,
    /// Live replicas behind: `{id, applied, last_seen}`.
    pub laggards: Vec<Value>,
}

impl From<FleetError> for ApplyError {
    fn from(e: FleetError) -> ApplyError {
        ApplyError::Fleet(FleetFailure { unknown: matches!(e, FleetError::Unknown(_)), message: e.to_string() })
    }
}

/// Microseconds since the epoch, now.
pub fn now_us() -> i64 {
    SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_micros() as i64)
}

/// A statement's error: a lost connection says the database is unreachable, the rest is `Db`.
fn stmt_error(e: &tokio_postgres::Error) -> FleetError {
    if e.is_closed() || e.as_db_error().is_none() && e.to_string().contains("connection") {
        FleetError::Unavailable(db_error(e))
    } else {
        FleetError::Db(db_error(e))
    }
}

/// Decodes a `switch_state` row's snapshot and canaries.
fn decode(version: i64, snapshot: Value, canaries: Value) -> Result<Remote, FleetError> {
    let version = u64::try_from(version).unwrap_or(0);
    let mut snap: Snapshot =
        serde_json::from_value(snapshot).map_err(|e| FleetError::Unreadable(version, e.to_string()))?;
    snap.canaries = serde_json::from_value(canaries).map_err(|e| FleetError::Unreadable(version, e.to_string()))?;
    snap.version = version;
    Ok(Remote { version, snapshot: snap, committed: None })
}

/// The row's columns for `snap` (the local override stripped, canaries apart).
fn encode(snap: &Snapshot) -> Result<(Value, Value), FleetError> {
    let mut s = snap.clone();
    s.local_override = None;
    let v = serde_json::to_value(&s).map_err(|e| FleetError::Db(format!("cannot encode the snapshot: {e}")))?;
    let c =
        serde_json::to_value(&s.canaries).map_err(|e| FleetError::Db(format!("cannot encode the canaries: {e}")))?;
    Ok((v, c))
}

impl Fleet {
    /// Commits one switch batch fleet-wide: locks the shared row, checks `expect` against the
    /// database's version (`Conflict` otherwise), calls `f` with the database's snapshot (never the
    /// local one, which may be stale) to get the next one, writes it with the batch's audit `record`
    /// (`actor`, `reason`, …; the versions are added here) and a NOTIFY, and commits. Nothing is
    /// visible anywhere unless the COMMIT succeeds.
    ///
    /// Errors: the pool cannot connect → `Fleet(Unavailable)`; the connection is lost during COMMIT
    /// → `Fleet(Unknown)`; an empty `switch_state` (never seeded) → `Fleet(Db)`.
    pub async fn commit_batch<F>(
        &self,
        expect: Option<u64>,
        record: Map<String, Value>,
        f: F,
    ) -> Result<Committed, ApplyError>
    where
        F: FnOnce(Snapshot) -> Result<Snapshot, ApplyError>,
    {
        let out = self.commit_inner(expect, record, f).await;
        if let Err(ApplyError::Fleet(FleetFailure { unknown: false, .. })) = &out {
            self.metrics.writes_unavailable.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        out
    }

    async fn commit_inner<F>(
        &self,
        expect: Option<u64>,
        mut record: Map<String, Value>,
        f: F,
    ) -> Result<Committed, ApplyError>
    where
        F: FnOnce(Snapshot) -> Result<Snapshot, ApplyError>,
    {
        use std::sync::atomic::Ordering::Relaxed;
        let mut client = self.db.client().await.inspect_err(|_| self.status.pg_up.store(false, Relaxed))?;
        let tx = client.transaction().await.map_err(|e| stmt_error(&e))?;
        let row = tx
            .query_opt("SELECT version, snapshot, canaries FROM switch_state WHERE id FOR UPDATE", &[])
            .await
            .map_err(|e| stmt_error(&e))?
            .ok_or_else(|| {
                FleetError::Db("the shared switch state is empty (not seeded yet): retry in a moment".into())
            })?;
        self.status.pg_up.store(true, Relaxed);
        let shared = decode(row.get(0), row.get(1), row.get(2))?;
        let before = shared.version;
        self.status.db_version.fetch_max(before, Relaxed);
        if let Some(expected) = expect {
            if expected != before {
                return Err(ApplyError::Conflict { expected, current: before });
            }
        }
        let mut next = f(shared.snapshot)?;
        next.version = before + 1;
        next.local_override = None;
        let after = next.version;
        let (snap_json, canaries_json) = encode(&next)?;
        let (b, a) = (before as i64, after as i64);
        let n = tx
            .execute(
                "UPDATE switch_state SET version = $2, snapshot = $3, canaries = $4, updated_at = now() \
                 WHERE id AND version = $1",
                &[&b, &a, &snap_json, &canaries_json],
            )
            .await
            .map_err(|e| stmt_error(&e))?;
        if n != 1 {
            return Err(ApplyError::Conflict { expected: before, current: before + 1 });
        }
        record.insert("before_version".into(), json!(before));
        record.insert("after_version".into(), json!(after));
        let text = |k: &str| record.get(k).and_then(Value::as_str).unwrap_or_default().to_owned();
        let (actor, reason) = (text("actor"), text("reason"));
        let record = Value::Object(record);
        tx.execute(
            "INSERT INTO switch_batches (version, before_version, replica_id, actor, reason, record) \
             VALUES ($1, $2, $3, $4, $5, $6)",
            &[&a, &b, &self.replica_id, &actor, &reason, &record],
        )
        .await
        .map_err(|e| stmt_error(&e))?;
        let committed_at_us = now_us();
        let payload = json!({"v": after, "t": committed_at_us, "r": self.replica_id}).to_string();
        tx.execute("SELECT pg_notify($1, $2)", &[&CHANNEL, &payload]).await.map_err(|e| stmt_error(&e))?;
        if let Some(ms) = super::failpoint("pause_before_commit") {
            tokio::time::sleep(Duration::from_millis(ms)).await;
        }
        tx.commit().await.map_err(|e| FleetError::Unknown(db_error(&e)))?;
        self.status.db_version.fetch_max(after, Relaxed);
        if let Some(ms) = super::failpoint("pause_after_commit") {
            tokio::time::sleep(Duration::from_millis(ms)).await;
        }
        Ok(Committed { before, after: next, committed_at_us })
    }

    /// The shared snapshot; `None` when the row was never seeded.
    pub async fn fetch(&self) -> Result<Option<Remote>, FleetError> {
        let client = self.db.client().await?;
        let row = client
            .query_opt(
                "SELECT s.version, s.snapshot, s.canaries, b.replica_id, \
                 (extract(epoch FROM b.committed_at) * 1000000)::bigint \
                 FROM switch_state s LEFT JOIN switch_batches b ON b.version = s.version WHERE s.id",
                &[],
            )
            .await
            .map_err(|e| stmt_error(&e))?;
        let Some(r) = row else { return Ok(None) };
        let mut remote = decode(r.get(0), r.get(1), r.get(2))?;
        if let (Some(by), Some(at)) = (r.get::<_, Option<String>>(3), r.get::<_, Option<i64>>(4)) {
            remote.committed = Some((by, at));
        }
        Ok(Some(remote))
    }

    /// Seeds an empty `switch_state` with `snap` (a single node moving to a fleet keeps its
    /// switches). True when this replica's insert won; false when a row was there already.
    pub async fn seed(&self, snap: &Snapshot) -> Result<bool, FleetError> {
        let client = self.db.client().await?;
        let (s, c) = encode(snap)?;
        let v = snap.version as i64;
        let n = client
            .execute(
                "INSERT INTO switch_state (version, snapshot, canaries) VALUES ($1, $2, $3) ON CONFLICT (id) DO NOTHING",
                &[&v, &s, &c],
            )
            .await
            .map_err(|e| stmt_error(&e))?;
        Ok(n == 1)
    }

    /// Records that this replica enforces `version` (for `?wait=all` and `admin fleet`). The
    /// heartbeat writes the row; this only moves its applied version forward.
    pub async fn report_applied(&self, version: u64) -> Result<(), FleetError> {
        let client = self.db.client().await?;
        let v = version as i64;
        client
            .execute(
                "UPDATE replicas SET applied_version = greatest(applied_version, $2), applied_at = now() \
                 WHERE replica_id = $1",
                &[&self.replica_id, &v],
            )
            .await
            .map_err(|e| stmt_error(&e))?;
        Ok(())
    }

    /// Waits (every 10 ms, at most `timeout`) until every live replica has applied `version`.
    /// Never an error once the batch is committed: a database that goes away while waiting ends the
    /// wait as incomplete.
    pub async fn wait_all(&self, version: u64, timeout: Duration) -> WaitAll {
        let start = Instant::now();
        let live_after = self.settings.live_after.as_secs_f64();
        let mut last: Option<(Vec<Value>, Vec<Value>)> = None;
        loop {
            if let Ok(client) = self.db.client().await {
                let q = "SELECT replica_id, applied_version, \
                         (last_seen > now() - make_interval(secs => $1)) AS live, last_seen::text \
                         FROM replicas ORDER BY replica_id";
                if let Ok(rows) = client.query(q, &[&live_after]).await {
                    let mut replicas = Vec::new();
                    let mut laggards = Vec::new();
                    for r in rows {
                        let (id, applied, live, seen): (String, i64, bool, String) =
                            (r.get(0), r.get(1), r.get(2), r.get(3));
                        replicas.push(json!({"id": id, "applied": applied, "live": live}));
                        if live && (applied as u64) < version {
                            laggards.push(json!({"id": id, "applied": applied, "last_seen": seen}));
                        }
                    }
                    let done = laggards.is_empty();
                    last = Some((replicas, laggards));
                    if done {
                        break;
                    }
                }
            }
            if start.elapsed() >= timeout {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let (replicas, laggards, complete) = match last {
            Some((r, l)) => {
                let c = l.is_empty();
                (r, l, c)
            }
            None => (Vec::new(), Vec::new(), false),
        };
        WaitAll { version, complete, waited_ms: start.elapsed().as_millis() as u64, replicas, laggards }
    }
}
