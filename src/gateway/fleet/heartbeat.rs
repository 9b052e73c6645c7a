//! The replica heartbeat (design §6): every `heartbeat_interval` this replica upserts its row in
//! `replicas` (addresses, pid, version, applied switch version, policy hash, audit progress, Redis
//! health, break-glass override) and counts the live replicas. PostgreSQL's reachability
//! (`status.pg_up`) follows the outcome, with a log line on each transition only.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Weak};

use crate::fleet::replicas::{self, Beat};
use crate::fleet::Fleet;
use crate::gateway::{Gateway, Replica};

/// Spawns the heartbeat task (it ends when the gateway is dropped). `schema_ok`: the start found
/// the schema in place; otherwise each round tries again first.
pub fn spawn(gw: &Arc<Gateway>, replica: &Replica, schema_ok: bool) {
    let Some(fleet) = gw.fleet.clone() else { return };
    let policy = gw.policy();
    let address = replica.proxy.unwrap_or(policy.listen.proxy).to_string();
    let admin_address = Some(replica.admin.unwrap_or(policy.listen.admin).to_string());
    tokio::spawn(run(Arc::downgrade(gw), fleet, address, admin_address, schema_ok));
}

async fn run(
    gw: Weak<Gateway>,
    fleet: Arc<Fleet>,
    address: String,
    admin_address: Option<String>,
    mut schema_ok: bool,
) {
    let (started_at, pid) = (fleet.started_at, Fleet::pid());
    let settings = fleet.settings.clone();
    let bound = settings.connect_timeout + settings.statement_timeout;
    let mut tick = tokio::time::interval(settings.heartbeat_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let (mut first, mut clash) = (true, false);
    loop {
        tick.tick().await;
        if !schema_ok {
            schema_ok = super::ensure_schema(&fleet, false).await;
            if !schema_ok {
                continue;
            }
        }
        let beat = {
            let Some(gw) = gw.upgrade() else { return };
            let policy = gw.policy();
            Beat {
                address: address.clone(),
                admin_address: admin_address.clone(),
                pid,
                binary_version: env!("CARGO_PKG_VERSION").to_string(),
                started_at,
                applied_version: gw.state.load().version,
                policy_hash: policy.content_sha256.clone(),
                written_seq: fleet.status.written_seq.load(Relaxed),
                shipped_seq: fleet.status.shipped_seq.load(Relaxed),
                redis_ok: fleet.status.redis_up.load(Relaxed),
                local_override: fleet.status.local_override.lock().ok().and_then(|o| o.clone()),
                // The head of the shipped records (None until the shipper shipped one: the row keeps its head).
                audit_head: fleet.shipper.head(),
            }
        };
        let left = fleet.status.left.lock().await;
        if *left {
            return;
        }
        let outcome =
            tokio::time::timeout(bound, replicas::heartbeat(&fleet.db, &fleet.replica_id, &beat, settings.live_after))
                .await;
        drop(left);
        match outcome {
            Ok(Ok((live, prev))) => {
                fleet.status.live_replicas.store(live, Relaxed);
                if !fleet.status.pg_up.swap(true, Relaxed) {
                    tracing::info!(replica = %fleet.replica_id, live_replicas = live, "fleet: PostgreSQL reachable");
                }
                let other = prev.filter(|h| h.pid != pid || h.started_at != started_at);
                match (&other, first) {
                    // At start: the row belongs to a process heard from within live_after.
                    (Some(h), true) if h.fresh => tracing::error!(replica = %fleet.replica_id, other_pid = h.pid,
                        other_started_at = %humantime::format_rfc3339_seconds(h.started_at),
                        "fleet: another process heartbeated as this replica id within live_after: two replicas with one id? Give each its own (--replica-id or FIREBREAK_REPLICA_ID); a restart within live_after also shows this once"),
                    // Later: someone else wrote our row since our last heartbeat.
                    (Some(h), false) if !clash => tracing::error!(replica = %fleet.replica_id, other_pid = h.pid,
                        other_started_at = %humantime::format_rfc3339_seconds(h.started_at),
                        "fleet: another process is heartbeating as this replica id: two replicas with one id; give each its own (--replica-id or FIREBREAK_REPLICA_ID)"),
                    (None, false) if clash => {
                        tracing::info!(replica = %fleet.replica_id, "fleet: this replica id is no longer shared")
                    }
                    _ => {}
                }
                clash = other.is_some() && !first;
                first = false;
            }
            Ok(Err(e)) => down(&fleet, &e.to_string()),
            Err(_) => down(&fleet, "timed out"),
        }
    }
}

/// PostgreSQL did not answer: degraded, logged once per outage.
fn down(fleet: &Fleet, why: &str) {
    if fleet.status.pg_up.swap(false, Relaxed) {
        tracing::warn!(replica = %fleet.replica_id, reason = %why, "fleet: PostgreSQL unreachable: enforcing the local switch snapshot");
    }
}

/// On a graceful stop: marks this replica's row as not live (bounded by the connect timeout; an
/// outage just leaves the row to age out after `live_after`).
pub async fn leave(gw: &Gateway) {
    let Some(fleet) = &gw.fleet else { return };
    let pid = Fleet::pid();
    let bound = fleet.settings.connect_timeout;
    // Waits for a heartbeat in flight, and none follows.
    let mut left = fleet.status.left.lock().await;
    *left = true;
    if let Ok(Ok(())) = tokio::time::timeout(bound, replicas::leave(&fleet.db, &fleet.replica_id, pid)).await {
        tracing::info!(replica = %fleet.replica_id, "fleet: left (no longer counted live)");
    }
}
