//! The replica heartbeat (design §6): every `heartbeat_interval` this replica upserts its row in
//! `replicas` (addresses, pid, version, applied switch version, policy hash, audit progress, Redis
//! health, break-glass override) and counts the live replicas. PostgreSQL's reachability
//! (`status.pg_up`) follows the outcome, with a log line on each transition only.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Weak};
use std::time::SystemTime;

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
    let started_at = SystemTime::now();
    let pid = i32::try_from(std::process::id()).unwrap_or(i32::MAX);
    let settings = fleet.settings.clone();
    let bound = settings.connect_timeout + settings.statement_timeout;
    let mut tick = tokio::time::interval(settings.heartbeat_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut holder_checked = false;
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
                audit_head: None,
            }
        };
        if !holder_checked {
            match tokio::time::timeout(bound, replicas::holder(&fleet.db, &fleet.replica_id, settings.live_after)).await
            {
                Ok(Ok(h)) => {
                    holder_checked = true;
                    if let Some(h) = h.filter(|h| h.fresh && (h.pid != pid || h.started_at != started_at)) {
                        tracing::error!(replica = %fleet.replica_id, other_pid = h.pid,
                            other_started_at = %humantime::format_rfc3339_seconds(h.started_at),
                            "fleet: another process heartbeated as this replica id within live_after: two replicas with one id? Give each its own (--replica-id or FIREBREAK_REPLICA_ID); a restart within live_after also shows this once");
                    }
                }
                Ok(Err(e)) => down(&fleet, &e.to_string()),
                Err(_) => down(&fleet, "timed out"),
            }
        }
        match tokio::time::timeout(bound, replicas::heartbeat(&fleet.db, &fleet.replica_id, &beat, settings.live_after))
            .await
        {
            Ok(Ok(live)) => {
                fleet.status.live_replicas.store(live, Relaxed);
                if !fleet.status.pg_up.swap(true, Relaxed) {
                    tracing::info!(replica = %fleet.replica_id, live_replicas = live, "fleet: PostgreSQL reachable");
                }
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
