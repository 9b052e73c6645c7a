//! The switch snapshot across the fleet: the first sync at start, and the LISTEN + poll tasks that
//! install every newer snapshot committed by any replica.
//!
//! Notifications are only a hint: the row in `switch_state` is the truth. The LISTEN connection is
//! its own (pooled connections cannot receive notifications); after every (re)connect it sends a
//! catch-up tick, and the poll (every `poll_interval`) catches whatever a lost notification missed.
//! Installing goes through [`Gateway::install_fleet_snapshot`]: scanner first, then the snapshot,
//! announced on the same `watch` channel as a local batch (so open streams are cut the same way).

use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Weak};
use std::time::Duration;

use futures_util::StreamExt;
use tokio::sync::mpsc;

use crate::fleet::switches::Notice;
use crate::fleet::{failpoint, Fleet, FleetError};
use crate::gateway::Gateway;

/// What woke the sync loop.
#[derive(Debug)]
enum Wake {
    /// A notification of a committed batch.
    Notified(Notice),
    /// The LISTEN connection was (re)established: something may have been missed.
    CatchUp,
    /// The poll timer.
    Poll,
}

/// At start: the database snapshot if newer, the local one seeded into an empty database; an older
/// database snapshot is kept out (degraded: restored from a backup?); an unreachable database leaves
/// the local snapshot in force (degraded, fail-static).
pub async fn first_sync(gw: &Arc<Gateway>) {
    let Some(fleet) = gw.fleet.clone() else { return };
    let local = gw.state.base();
    fleet.status.applied_version.store(local.version, Relaxed);
    let fetched = match tokio::time::timeout(fleet.settings.connect_timeout * 2, fleet.fetch()).await {
        Ok(r) => r,
        Err(_) => Err(FleetError::Unavailable("timed out".into())),
    };
    match fetched {
        Ok(Some(remote)) => {
            fleet.status.pg_up.store(true, Relaxed);
            note_db_version(&fleet, remote.version, local.version);
            if remote.version > local.version {
                tracing::info!(
                    local = local.version,
                    db = remote.version,
                    "fleet: installing the newer database snapshot"
                );
                gw.install_fleet_snapshot(remote.snapshot, remote.committed).await;
            } else if remote.version < local.version {
                let why = format!(
                    "database snapshot v{} is older than this replica's v{}: restored from a backup? this replica keeps its own",
                    remote.version, local.version
                );
                tracing::warn!("{why}");
                set_problem(&fleet, Some(why));
            }
        }
        Ok(None) => {
            fleet.status.pg_up.store(true, Relaxed);
            match fleet.seed(&local).await {
                Ok(true) => {
                    tracing::info!(
                        version = local.version,
                        "fleet: seeded the shared switch state with this replica's snapshot"
                    );
                    fleet.status.db_version.fetch_max(local.version, Relaxed);
                }
                Ok(false) => {
                    // Another replica seeded first: its row is the truth.
                    if let Ok(Some(remote)) = fleet.fetch().await {
                        note_db_version(&fleet, remote.version, local.version);
                        if remote.version > local.version {
                            gw.install_fleet_snapshot(remote.snapshot, remote.committed).await;
                        } else if remote.version < local.version {
                            tracing::warn!(local = local.version, db = remote.version, "fleet: another replica seeded an older snapshot than this one's; this replica keeps its own");
                        }
                    }
                }
                Err(e) => fail(&fleet, &e),
            }
        }
        Err(e) => fail(&fleet, &e),
    }
    let applied = gw.state.base().version;
    fleet.status.applied_version.store(applied, Relaxed);
    gw.publish_override();
    let f = fleet.clone();
    tokio::spawn(async move {
        let _ = f.report_applied(applied).await;
    });
}

/// Spawns the LISTEN and poll tasks (they end when the gateway is dropped).
pub fn spawn(gw: &Arc<Gateway>) {
    let Some(fleet) = gw.fleet.clone() else { return };
    let (tx, rx) = mpsc::channel(64);
    tokio::spawn(listen_loop(fleet.clone(), Arc::downgrade(gw), tx));
    tokio::spawn(sync_loop(fleet, Arc::downgrade(gw), rx));
}

fn note_db_version(fleet: &Fleet, db: u64, applied: u64) {
    fleet.status.db_version.fetch_max(db, Relaxed);
    fleet.metrics.switch_lag_versions.store(db.saturating_sub(applied), Relaxed);
}

fn set_problem(fleet: &Fleet, why: Option<String>) {
    if let Ok(mut p) = fleet.status.schema_problem.lock() {
        *p = why;
    }
}

/// Clears a snapshot problem this module reported (an older or unreadable database snapshot) once
/// the database's snapshot is readable and not older; problems of other parts stay.
fn clear_own_problem(fleet: &Fleet) {
    if let Ok(mut p) = fleet.status.schema_problem.lock() {
        let mine = p.as_deref().is_some_and(|p| {
            p.starts_with("database snapshot v")
                || p.starts_with("switch snapshot v")
                || p.starts_with("the database snapshot (version")
        });
        if mine {
            *p = None;
        }
    }
}

fn fail(fleet: &Fleet, e: &FleetError) {
    match e {
        FleetError::Unreadable(..) | FleetError::SchemaTooNew { .. } => {
            fleet.status.pg_up.store(true, Relaxed);
            set_problem(fleet, Some(e.to_string()));
        }
        _ => fleet.status.pg_up.store(false, Relaxed),
    }
    tracing::warn!(error = %e, "fleet: cannot sync the switch snapshot; enforcing the local one");
}

/// The LISTEN connection: its own, named `firebreak-listen:<replica>`; reconnects with backoff
/// (100 ms → 5 s) and sends a catch-up tick after every connect.
async fn listen_loop(fleet: Arc<Fleet>, gw: Weak<Gateway>, tx: mpsc::Sender<Wake>) {
    let mut backoff = Duration::from_millis(100);
    let mut first = true;
    loop {
        if gw.strong_count() == 0 {
            return;
        }
        let mut config = fleet.db.config.clone();
        config.application_name(format!("firebreak-listen:{}", fleet.replica_id));
        match tokio::time::timeout(fleet.settings.connect_timeout, config.connect(tokio_postgres::NoTls)).await {
            Ok(Ok((client, mut connection))) => {
                let (ntx, mut nrx) = mpsc::unbounded_channel();
                let driver = tokio::spawn(async move {
                    let mut msgs = futures_util::stream::poll_fn(move |cx| connection.poll_message(cx));
                    while let Some(m) = msgs.next().await {
                        match m {
                            Ok(tokio_postgres::AsyncMessage::Notification(n)) => {
                                if ntx.send(n).is_err() {
                                    return;
                                }
                            }
                            Ok(_) => {}
                            Err(_) => return,
                        }
                    }
                });
                let listening = client.batch_execute(&format!("LISTEN {}", crate::fleet::switches::CHANNEL)).await;
                if listening.is_ok() {
                    backoff = Duration::from_millis(100);
                    fleet.status.listen_up.store(true, Relaxed);
                    if !first {
                        fleet.metrics.listen_reconnects.fetch_add(1, Relaxed);
                    }
                    first = false;
                    let _ = tx.try_send(Wake::CatchUp);
                    let ignore = failpoint("ignore_notify").is_some();
                    loop {
                        match tokio::time::timeout(Duration::from_secs(1), nrx.recv()).await {
                            Ok(Some(n)) => {
                                if ignore || n.channel() != crate::fleet::switches::CHANNEL {
                                    continue;
                                }
                                if let Ok(notice) = serde_json::from_str::<Notice>(n.payload()) {
                                    let _ = tx.try_send(Wake::Notified(notice));
                                }
                            }
                            Ok(None) => break, // the connection ended
                            Err(_) if gw.strong_count() == 0 => {
                                driver.abort();
                                return;
                            }
                            Err(_) => {}
                        }
                    }
                    fleet.status.listen_up.store(false, Relaxed);
                    tracing::warn!("fleet: the LISTEN connection was lost; reconnecting (the poll covers the gap)");
                }
                driver.abort();
                drop(client);
            }
            Ok(Err(e)) => tracing::debug!(error = %crate::fleet::db::db_error(&e), "fleet: LISTEN connect failed"),
            Err(_) => tracing::debug!("fleet: LISTEN connect timed out"),
        }
        fleet.status.listen_up.store(false, Relaxed);
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
}

/// Installs every newer snapshot: on a notification, a catch-up tick, or every `poll_interval`.
async fn sync_loop(fleet: Arc<Fleet>, gw: Weak<Gateway>, mut rx: mpsc::Receiver<Wake>) {
    let mut tick = tokio::time::interval(fleet.settings.poll_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    let no_poll = failpoint("no_poll").is_some();
    loop {
        let wake = tokio::select! {
            w = rx.recv() => match w {
                Some(w) => w,
                None => Wake::Poll,
            },
            _ = tick.tick() => Wake::Poll,
        };
        if no_poll && !matches!(wake, Wake::Notified(_)) {
            continue;
        }
        let Some(gw) = gw.upgrade() else { return };
        sync_once(&fleet, &gw, wake).await;
    }
}

async fn sync_once(fleet: &Arc<Fleet>, gw: &Arc<Gateway>, wake: Wake) {
    let applied = gw.state.base().version;
    if let Wake::Notified(n) = &wake {
        fleet.status.db_version.fetch_max(n.v, Relaxed);
        if n.v <= applied {
            return; // this replica's own commit, or already installed
        }
    }
    let remote = match fleet.fetch().await {
        Ok(Some(r)) => r,
        Ok(None) => {
            // Never seeded (every replica started without the database): this one seeds it.
            fleet.status.pg_up.store(true, Relaxed);
            if let Err(e) = fleet.seed(&gw.state.base()).await {
                fail(fleet, &e);
            }
            return;
        }
        Err(e) => {
            fail(fleet, &e);
            return;
        }
    };
    fleet.status.pg_up.store(true, Relaxed);
    note_db_version(fleet, remote.version, applied);
    if remote.version >= applied {
        clear_own_problem(fleet);
    }
    // Offline containment waiting for the database is committed now (nothing when there is none).
    gw.replay_offline_containment().await;
    if remote.version <= applied {
        return;
    }
    let version = remote.version;
    let notified = match &wake {
        Wake::Notified(n) if n.v == version => Some((n.r.clone(), n.t)),
        _ => None,
    };
    let from = notified.clone().or(remote.committed);
    if gw.install_fleet_snapshot(remote.snapshot, from).await {
        if let Some((_, t)) = notified {
            observe_propagation(fleet, crate::fleet::switches::now_us() - t);
        }
        if !matches!(wake, Wake::Notified(_)) {
            fleet.metrics.poll_catchups.fetch_add(1, Relaxed);
            tracing::warn!(version, "fleet: the poll installed a switch version no notification announced");
        }
        tracing::info!(version, "fleet: switch snapshot installed");
    }
}

fn observe_propagation(fleet: &Fleet, us: i64) {
    let us = u64::try_from(us).unwrap_or(0);
    let m = &fleet.metrics;
    for (bound, bucket) in crate::fleet::metrics::PROPAGATION_BUCKETS_US.iter().zip(&m.propagation_us_buckets) {
        if us <= *bound {
            bucket.fetch_add(1, Relaxed);
            break;
        }
    }
    m.propagation_us_sum.fetch_add(us, Relaxed);
    m.propagation_count.fetch_add(1, Relaxed);
}
