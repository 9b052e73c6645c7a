//! Fleet mode, the gateway's side: the glue between the [`Gateway`] and [`crate::fleet`] (which never
//! names the gateway). `start` runs once from [`Gateway::start`], after the local state is open (so
//! the local snapshot is enforced from the first request) and before the first canaries are issued.

use std::sync::Arc;

use super::{Gateway, Replica};
use crate::config::fleet::Migrate;
use crate::fleet::{Fleet, FleetError};

pub mod commands;
pub mod heartbeat;
pub mod sync;

/// Brings this replica into the fleet: migrations (when automatic), the first sync of the switch
/// snapshot, then the background tasks. Never fails on an outage: a replica that cannot reach
/// PostgreSQL starts on its local snapshot, degraded, and the tasks keep retrying.
pub async fn start(gw: &Arc<Gateway>, replica: &Replica) {
    let Some(fleet) = gw.fleet.clone() else { return };
    let schema_ok = ensure_schema(&fleet, true).await;
    crate::fleet::shipper::spawn(gw.fleet.as_ref(), &gw.audit);
    sync::first_sync(gw).await;
    sync::spawn(gw);
    heartbeat::spawn(gw, replica, schema_ok);
    commands::spawn(gw);
}

/// Migrates (`migrate = "auto"`) or checks (`"manual"`) the schema, bounded by the connect and
/// statement timeouts; records the outcome in `status` (`pg_up`, `schema_problem`). True when the
/// schema is the one this binary needs; false when it is not, or PostgreSQL did not answer (the
/// heartbeat tries again). `first`: at start, where an outage is logged even though `pg_up` was
/// never true.
pub(crate) async fn ensure_schema(fleet: &Fleet, first: bool) -> bool {
    use std::sync::atomic::Ordering::Relaxed;
    let bound = fleet.settings.connect_timeout + fleet.settings.statement_timeout;
    let outcome = match fleet.settings.migrate {
        Migrate::Auto => {
            tokio::time::timeout(bound, fleet.db.migrate(&fleet.replica_id)).await.map(|r| r.map(|_| None))
        }
        Migrate::Manual => tokio::time::timeout(bound, fleet.db.schema_problem()).await,
    };
    let outcome = outcome.unwrap_or_else(|_| Err(FleetError::Unavailable("timed out".into())));
    let problem = match outcome {
        Ok(p) => p,
        Err(FleetError::Unavailable(why)) => {
            if fleet.status.pg_up.swap(false, Relaxed) || first {
                tracing::warn!(replica = %fleet.replica_id, reason = %why, "fleet: PostgreSQL is unreachable: enforcing the local switch snapshot, retrying");
            }
            return false;
        }
        Err(e) => Some(e.to_string()),
    };
    fleet.status.pg_up.store(true, Relaxed);
    let ok = problem.is_none();
    if let Ok(mut p) = fleet.status.schema_problem.lock() {
        if *p != problem {
            match &problem {
                Some(why) => {
                    tracing::error!(replica = %fleet.replica_id, problem = %why, "fleet: schema problem, running degraded")
                }
                None if p.is_some() => tracing::info!(replica = %fleet.replica_id, "fleet: schema problem solved"),
                None => {}
            }
        }
        *p = problem;
    }
    ok
}
