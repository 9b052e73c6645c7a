//! The replica heartbeat, the live count, and the replica list of `admin fleet` (design §6).

use std::time::{Duration, SystemTime};

use serde_json::Value;

use super::db::{statement_error, FleetDb};
use super::FleetError;

/// What one replica reports about itself every `heartbeat_interval`.
#[derive(Debug, Clone)]
pub struct Beat {
    /// The proxy listener as bound.
    pub address: String,
    /// The admin listener as bound.
    pub admin_address: Option<String>,
    /// The process id.
    pub pid: i32,
    /// `CARGO_PKG_VERSION`.
    pub binary_version: String,
    /// When this process started.
    pub started_at: SystemTime,
    /// The switch version it enforces.
    pub applied_version: u64,
    /// SHA-256 of its policy files.
    pub policy_hash: String,
    /// The local audit trail's last sequence number.
    pub written_seq: u64,
    /// The last sequence number known to be shipped.
    pub shipped_seq: u64,
    /// Redis answered its last call.
    pub redis_ok: bool,
    /// The break-glass override in force, if any.
    pub local_override: Option<Value>,
    /// The local audit head file, if known.
    pub audit_head: Option<Value>,
}

/// Whoever wrote a replica id's row before this heartbeat.
#[derive(Debug, Clone, PartialEq)]
pub struct Holder {
    /// Its process id.
    pub pid: i32,
    /// When it started.
    pub started_at: SystemTime,
    /// Its last heartbeat is within `live_after`.
    pub fresh: bool,
}

/// One row of the replica list.
#[derive(Debug, Clone)]
pub struct ReplicaRow {
    /// Replica id.
    pub id: String,
    /// Proxy listener.
    pub address: String,
    /// Admin listener.
    pub admin_address: Option<String>,
    /// Process id.
    pub pid: i32,
    /// Binary version.
    pub binary_version: String,
    /// Start time (RFC 3339).
    pub started_at: String,
    /// Last heartbeat (RFC 3339).
    pub last_seen: String,
    /// Heard from within `live_after`.
    pub live: bool,
    /// Switch version it enforces.
    pub applied_version: u64,
    /// Its policy's SHA-256.
    pub policy_hash: String,
    /// Local audit trail's last seq.
    pub written_seq: u64,
    /// Last shipped seq.
    pub shipped_seq: u64,
    /// Redis reachable.
    pub redis_ok: bool,
    /// Break-glass override in force.
    pub local_override: Option<Value>,
}

fn i64_of(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

fn u64_of(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

/// Upserts this replica's row, then counts the live replicas (at least 1). Also returns who held
/// the row just before this write (`None`: nobody yet), for the "two replicas with one id" check.
pub async fn heartbeat(
    db: &FleetDb,
    id: &str,
    beat: &Beat,
    live_after: Duration,
) -> Result<(u32, Option<Holder>), FleetError> {
    let client = db.client().await?;
    let row = client
        .query_one(
            "WITH prev AS (SELECT pid, started_at, last_seen > now() - make_interval(secs => $14) AS fresh
                           FROM replicas WHERE replica_id = $1)
             INSERT INTO replicas (replica_id, address, admin_address, pid, binary_version, started_at, last_seen,
                                   applied_version, policy_hash, written_seq, shipped_seq, redis_ok, local_override, audit_head)
             VALUES ($1, $2, $3, $4, $5, $6, now(), $7, $8, $9, $10, $11, $12, $13)
             ON CONFLICT (replica_id) DO UPDATE SET address = EXCLUDED.address, admin_address = EXCLUDED.admin_address,
               pid = EXCLUDED.pid, binary_version = EXCLUDED.binary_version, started_at = EXCLUDED.started_at,
               last_seen = now(), applied_version = greatest(replicas.applied_version, EXCLUDED.applied_version),
               policy_hash = EXCLUDED.policy_hash, written_seq = EXCLUDED.written_seq, shipped_seq = EXCLUDED.shipped_seq,
               redis_ok = EXCLUDED.redis_ok, local_override = EXCLUDED.local_override,
               audit_head = coalesce(EXCLUDED.audit_head, replicas.audit_head)
             RETURNING (SELECT pid FROM prev), (SELECT started_at FROM prev), (SELECT fresh FROM prev)",
            &[
                &id,
                &beat.address,
                &beat.admin_address,
                &beat.pid,
                &beat.binary_version,
                &beat.started_at,
                &i64_of(beat.applied_version),
                &beat.policy_hash,
                &i64_of(beat.written_seq),
                &i64_of(beat.shipped_seq),
                &beat.redis_ok,
                &beat.local_override,
                &beat.audit_head,
                &live_after.as_secs_f64(),
            ],
        )
        .await
        .map_err(|e| statement_error(&e))?;
    let prev = match (row.get::<_, Option<i32>>(0), row.get::<_, Option<SystemTime>>(1)) {
        (Some(pid), Some(started_at)) => {
            Some(Holder { pid, started_at, fresh: row.get::<_, Option<bool>>(2).unwrap_or(false) })
        }
        _ => None,
    };
    Ok((live_count_with(&client, live_after).await?, prev))
}

/// A graceful stop: this process's row stops counting as live at once (rather than after
/// `live_after`), so the others' live count drops now. Only our own row (same pid) is touched.
pub async fn leave(db: &FleetDb, id: &str, pid: i32) -> Result<(), FleetError> {
    let client = db.client().await?;
    client
        .execute(
            "UPDATE replicas SET last_seen = now() - interval '1 day' WHERE replica_id = $1 AND pid = $2",
            &[&id, &pid],
        )
        .await
        .map_err(|e| statement_error(&e))?;
    Ok(())
}

/// Replicas heard from within `live_after` (at least 1: the caller).
async fn live_count_with(client: &deadpool_postgres::Object, live_after: Duration) -> Result<u32, FleetError> {
    let n: i64 = client
        .query_one(
            "SELECT count(*) FROM replicas WHERE last_seen > now() - make_interval(secs => $1)",
            &[&live_after.as_secs_f64()],
        )
        .await
        .map_err(|e| statement_error(&e))?
        .get(0);
    Ok(u32::try_from(n).unwrap_or(u32::MAX).max(1))
}

/// Every replica row, by id.
pub async fn list(db: &FleetDb, live_after: Duration) -> Result<Vec<ReplicaRow>, FleetError> {
    let client = db.client().await?;
    let rows = client
        .query(
            "SELECT replica_id, address, admin_address, pid, binary_version, started_at, last_seen,
                    last_seen > now() - make_interval(secs => $1), applied_version, policy_hash,
                    written_seq, shipped_seq, redis_ok, local_override
             FROM replicas ORDER BY replica_id",
            &[&live_after.as_secs_f64()],
        )
        .await
        .map_err(|e| statement_error(&e))?;
    Ok(rows
        .iter()
        .map(|r| ReplicaRow {
            id: r.get(0),
            address: r.get(1),
            admin_address: r.get(2),
            pid: r.get(3),
            binary_version: r.get(4),
            started_at: humantime::format_rfc3339_seconds(r.get::<_, SystemTime>(5)).to_string(),
            last_seen: humantime::format_rfc3339_millis(r.get::<_, SystemTime>(6)).to_string(),
            live: r.get(7),
            applied_version: u64_of(r.get(8)),
            policy_hash: r.get(9),
            written_seq: u64_of(r.get(10)),
            shipped_seq: u64_of(r.get(11)),
            redis_ok: r.get(12),
            local_override: r.get(13),
        })
        .collect())
}

/// The switch version in `switch_state` (0: not seeded yet).
pub async fn db_version(db: &FleetDb) -> Result<u64, FleetError> {
    let client = db.client().await?;
    let row = client.query_opt("SELECT version FROM switch_state", &[]).await.map_err(|e| statement_error(&e))?;
    Ok(row.map_or(0, |r| u64_of(r.get(0))))
}

/// The fleet view of `admin fleet` (design §6): every replica with its lag and mismatch, the policy
/// hashes, and whether they disagree. The majority hash is the reference; on a tie, `own_hash`.
pub fn overview(db_version: u64, rows: &[ReplicaRow], own_hash: &str) -> Value {
    use std::collections::BTreeMap;
    let mut hashes: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for r in rows {
        hashes.entry(r.policy_hash.as_str()).or_default().push(r.id.as_str());
    }
    let top = hashes.values().map(Vec::len).max().unwrap_or(0);
    let reference = if hashes.get(own_hash).is_some_and(|ids| ids.len() == top) || hashes.is_empty() {
        own_hash
    } else {
        hashes.iter().find(|(_, ids)| ids.len() == top).map_or(own_hash, |(h, _)| *h)
    };
    let replicas: Vec<Value> = rows
        .iter()
        .map(|r| {
            serde_json::json!({
                "id": r.id,
                "address": r.address,
                "admin_address": r.admin_address,
                "pid": r.pid,
                "applied_version": r.applied_version,
                "lag": db_version.saturating_sub(r.applied_version),
                "policy_hash": r.policy_hash,
                "policy_mismatch": r.policy_hash != reference,
                "started_at": r.started_at,
                "last_heartbeat": r.last_seen,
                "live": r.live,
                "shipper_backlog": r.written_seq.saturating_sub(r.shipped_seq),
                "redis_ok": r.redis_ok,
                "local_override": r.local_override,
                "binary_version": r.binary_version,
            })
        })
        .collect();
    serde_json::json!({
        "db_version": db_version,
        "replicas": replicas,
        "policy_hashes": hashes,
        "reference_hash": reference,
        "mismatch": hashes.len() > 1,
        "live": rows.iter().filter(|r| r.live).count(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(id: &str, hash: &str, applied: u64) -> ReplicaRow {
        ReplicaRow {
            id: id.into(),
            address: "127.0.0.1:1".into(),
            admin_address: None,
            pid: 1,
            binary_version: "0.1.0".into(),
            started_at: String::new(),
            last_seen: String::new(),
            live: true,
            applied_version: applied,
            policy_hash: hash.into(),
            written_seq: 10,
            shipped_seq: 7,
            redis_ok: true,
            local_override: None,
        }
    }

    #[test]
    fn the_majority_hash_wins_and_a_tie_goes_to_this_replica() {
        let v = overview(5, &[row("A", "h1", 5), row("B", "h1", 3), row("C", "h2", 5)], "h2");
        assert_eq!(v["mismatch"], true);
        assert_eq!(v["replicas"][0]["policy_mismatch"], false);
        assert_eq!(v["replicas"][2]["policy_mismatch"], true);
        assert_eq!(v["replicas"][1]["lag"], 2);
        assert_eq!(v["replicas"][0]["shipper_backlog"], 3);
        let tie = overview(5, &[row("A", "h1", 5), row("C", "h2", 5)], "h2");
        assert_eq!(tie["replicas"][0]["policy_mismatch"], true);
        assert_eq!(tie["replicas"][1]["policy_mismatch"], false);
        let same = overview(5, &[row("A", "h1", 5)], "h1");
        assert_eq!(same["mismatch"], false);
    }
}
