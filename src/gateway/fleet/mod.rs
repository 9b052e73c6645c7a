//! Fleet mode, the gateway's side: the glue between the [`Gateway`] and [`crate::fleet`] (which never
//! names the gateway). `start` runs once from [`Gateway::start`], after the local state is open (so
//! the local snapshot is enforced from the first request) and before the first canaries are issued.

use std::sync::Arc;

use super::Gateway;

pub mod commands;
pub mod sync;

/// Brings this replica into the fleet: migrations (when automatic), the first sync of the switch
/// snapshot, then the background tasks. Never fails on an outage: a replica that cannot reach
/// PostgreSQL starts on its local snapshot, degraded, and the tasks keep retrying.
pub async fn start(gw: &Arc<Gateway>) {
    if gw.fleet.is_none() {
        return;
    }
    sync::first_sync(gw).await;
    sync::spawn(gw);
    commands::spawn(gw);
}
