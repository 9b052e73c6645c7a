//! MCP session bindings (session id → key id) shared by every replica, so that a session
//! initialized through one replica is usable through any other, by the same key only.
//!
//! A binding is stored as `hex(sha256("server\nsession id"))`: the raw id is never stored. The
//! gateway's in-memory cache stays the read-through cache (`gateway::mcp_sessions`); this module
//! is the table: [`bind`] (awaited on the initialize answer, before it is returned: the client's
//! next call may reach another replica), [`lookup`] on a cache miss, [`unbind`] with a
//! `pg_notify('firebreak_mcp', binding)` so the others drop their cached copy, and [`cleanup`] of
//! bindings idle for a day.

use std::time::Duration;

use sha2::{Digest, Sha256};

use super::incidents::pg;
use super::{Fleet, FleetError};

/// The notification channel of unbound sessions (payload: the binding).
pub const CHANNEL: &str = "firebreak_mcp";

/// A binding left unused this long is deleted by [`cleanup`] (the in-memory cache's idle time).
pub const IDLE: Duration = Duration::from_secs(24 * 3600);

/// The stored form of a session of `server`: hex SHA-256 of `server\nsid`.
pub fn binding(server: &str, sid: &str) -> String {
    let mut h = Sha256::new();
    h.update(server.as_bytes());
    h.update(b"\n");
    h.update(sid.as_bytes());
    hex::encode(h.finalize())
}

/// Records that `binding` belongs to `key_id` (a binding already there is kept: the first key wins).
pub async fn bind(fleet: &Fleet, binding: &str, key_id: &str) -> Result<(), FleetError> {
    let c = fleet.db.client().await?;
    c.execute(
        "INSERT INTO mcp_sessions (binding, key_id, created_by) VALUES ($1, $2, $3) ON CONFLICT (binding) DO NOTHING",
        &[&binding, &key_id, &fleet.replica_id],
    )
    .await
    .map_err(pg)?;
    Ok(())
}

/// The key id `binding` belongs to, if any replica bound it. Marks it used (at most hourly).
pub async fn lookup(fleet: &Fleet, binding: &str) -> Result<Option<String>, FleetError> {
    let c = fleet.db.client().await?;
    let row = c
        .query_opt(
            "SELECT key_id, last_used < now() - interval '1 hour' FROM mcp_sessions WHERE binding = $1",
            &[&binding],
        )
        .await
        .map_err(pg)?;
    let Some(row) = row else { return Ok(None) };
    let stale: bool = row.try_get(1).map_err(pg)?;
    if stale {
        let _ = c.execute("UPDATE mcp_sessions SET last_used = now() WHERE binding = $1", &[&binding]).await;
    }
    row.try_get(0).map(Some).map_err(pg)
}

/// Deletes `binding` and tells every replica to drop it from its cache.
pub async fn unbind(fleet: &Fleet, binding: &str) -> Result<(), FleetError> {
    let c = fleet.db.client().await?;
    c.execute(
        "WITH d AS (DELETE FROM mcp_sessions WHERE binding = $1 RETURNING binding) SELECT pg_notify('firebreak_mcp', $1)",
        &[&binding],
    )
    .await
    .map_err(pg)?;
    Ok(())
}

/// Deletes the bindings unused for [`IDLE`]; how many.
pub async fn cleanup(fleet: &Fleet) -> Result<u64, FleetError> {
    let c = fleet.db.client().await?;
    let secs = IDLE.as_secs_f64();
    c.execute("DELETE FROM mcp_sessions WHERE last_used < now() - make_interval(secs => $1)", &[&secs])
        .await
        .map_err(pg)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bindings_hash_server_and_id_and_never_contain_the_id() {
        let b = binding("srv", "session-123");
        assert_eq!(b.len(), 64);
        assert!(!b.contains("session-123"));
        assert_ne!(b, binding("other", "session-123"), "scoped by server");
        assert_eq!(b, binding("srv", "session-123"), "stable");
    }

    #[tokio::test]
    async fn bindings_are_shared_and_unbound_with_a_notification() {
        let db = super::super::incidents::testdb::TestDb::new().await;
        let (a, b) = (db.fleet("A"), db.fleet("B"));
        let k = binding("srv", "sid-1");
        bind(&a, &k, "key-1").await.expect("bind");
        bind(&b, &k, "key-2").await.expect("a second bind is ignored");
        assert_eq!(lookup(&b, &k).await.expect("lookup").as_deref(), Some("key-1"));
        assert_eq!(lookup(&b, &binding("srv", "sid-2")).await.expect("lookup"), None);
        let rows = db.sql("SELECT binding FROM mcp_sessions").await;
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].get::<_, String>(0), k, "only the digest is stored");
        unbind(&b, &k).await.expect("unbind");
        assert_eq!(lookup(&a, &k).await.expect("lookup"), None);
        bind(&a, &k, "key-1").await.expect("bind");
        db.sql("UPDATE mcp_sessions SET last_used = now() - interval '25 hours'").await;
        assert_eq!(cleanup(&a).await.expect("cleanup"), 1);
    }
}
