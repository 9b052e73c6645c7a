//! Fleet mode: many replicas share one switch state, one incident book and one audit store.
//!
//! PostgreSQL is the system of record (switch snapshot and its batches, incidents, audit records,
//! MCP session bindings, fleet commands, the replica list); Redis holds hot counters only (rate
//! limits, trigger windows). Single-node mode (no `[fleet]`) builds none of this.
//!
//! Layering: `fleet` sits above `config`, `state`, `audit`, `incident` and `metrics`, and below
//! `gateway`. It never names the gateway: the tasks that install a snapshot or run a command live
//! in `gateway::fleet` and call in here. Design: `docs/design/fleet-mode.md`.
//!
//! Principles: the hot path never waits on PostgreSQL (at most one Redis round trip, with a short
//! timeout and a local fallback); fail-static, never open (a replica that cannot reach the database
//! keeps enforcing the snapshot it has, also across a restart, and only break-glass can tighten it
//! locally); once-only effects use database primitives (row locks with a version compare-and-set,
//! partial unique indexes, atomic Lua scripts, `ON CONFLICT DO NOTHING`).

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64};
use std::sync::{Arc, Mutex};

use crate::config::fleet::FleetSettings;

pub mod commands;
pub mod db;
pub mod incidents;
pub mod limiter;
pub mod metrics;
pub mod redis_conn;
pub mod replicas;
pub mod sessions;
pub mod shipper;
pub mod switches;
pub mod windows;

/// Why a fleet operation failed. The texts go to operators: they say what happened and what
/// still holds; they never carry a URL or a password.
#[derive(Debug, thiserror::Error, Clone)]
pub enum FleetError {
    /// PostgreSQL cannot be reached (connect or pool timeout).
    #[error("PostgreSQL is unreachable ({0})")]
    Unavailable(String),
    /// A statement failed.
    #[error("PostgreSQL error: {0}")]
    Db(String),
    /// The connection was lost while committing: the change may or may not have been applied.
    #[error("the commit's outcome is unknown ({0}); GET /admin/v1/state shows whether it was applied")]
    Unknown(String),
    /// The database was migrated by a newer binary.
    #[error("database schema version {found} is newer than this binary's {known}: upgrade this replica")]
    SchemaTooNew {
        /// In the database.
        found: i32,
        /// Known to this binary.
        known: i32,
    },
    /// The snapshot in the database cannot be decoded by this binary (written by a newer one).
    #[error("the database snapshot (version {0}) cannot be read by this binary: {1}")]
    Unreadable(u64, String),
}

/// What `/readyz`, the metrics and `admin fleet` read about the fleet connections (atomics: read
/// without locks, written by the background tasks).
#[derive(Debug, Default)]
pub struct FleetStatus {
    /// PostgreSQL answered the last attempt.
    pub pg_up: AtomicBool,
    /// Redis answered the last call.
    pub redis_up: AtomicBool,
    /// The LISTEN connection is up.
    pub listen_up: AtomicBool,
    /// The last switch version seen in the database (notification or poll).
    pub db_version: AtomicU64,
    /// Live replicas at the last heartbeat round (at least 1: this one).
    pub live_replicas: AtomicU32,
    /// A schema or snapshot problem that keeps this replica degraded.
    pub schema_problem: Mutex<Option<String>>,
    /// The switch version this replica enforces (its base snapshot's).
    pub applied_version: AtomicU64,
    /// The local audit trail's last sequence number (set by the writer).
    pub written_seq: AtomicU64,
    /// The last sequence number known to be in `audit_records` (set by the shipper).
    pub shipped_seq: AtomicU64,
    /// The break-glass override in force on this replica, as JSON, for the heartbeat (None: none).
    pub local_override: Mutex<Option<serde_json::Value>>,
    /// Held around each heartbeat; `true` once this replica left the fleet (a graceful stop), after
    /// which no heartbeat is written.
    pub left: tokio::sync::Mutex<bool>,
}

/// The fleet handle a replica holds (`Gateway.fleet`), `None` in single-node mode.
#[derive(Debug)]
pub struct Fleet {
    /// The settings it started with (a reload keeps them).
    pub settings: Arc<FleetSettings>,
    /// This replica's id.
    pub replica_id: String,
    /// The PostgreSQL pool (lazy: creating it does not connect).
    pub db: db::FleetDb,
    /// The Redis connection (lazy, reconnecting, with backoff).
    pub redis: redis_conn::RedisShared,
    /// Connection state.
    pub status: FleetStatus,
    /// Fleet metrics (rendered after the gateway's own).
    pub metrics: metrics::FleetMetrics,
    /// The audit shipper's health, for `degraded()` (the task: `shipper::spawn`).
    pub shipper: shipper::ShipperState,
    /// When this process started, to the microsecond as PostgreSQL keeps it: with the pid, what
    /// tells this process's `replicas` row from another one's (the heartbeat and the shipper both
    /// write it).
    pub started_at: std::time::SystemTime,
}

impl Fleet {
    /// Builds the handle. Never connects and never fails on an outage: the URLs are read here (a
    /// missing environment variable or file is the one error), connections are made by the tasks.
    pub fn new(settings: Arc<FleetSettings>, replica_id: String) -> Result<Arc<Fleet>, FleetError> {
        let db = db::FleetDb::new(&settings, &replica_id)?;
        let redis = redis_conn::RedisShared::new(&settings)?;
        let status = FleetStatus { live_replicas: AtomicU32::new(1), ..FleetStatus::default() };
        Ok(Arc::new(Fleet {
            settings,
            replica_id,
            db,
            redis,
            status,
            metrics: metrics::FleetMetrics::default(),
            shipper: Default::default(),
            started_at: start_time(),
        }))
    }

    /// This process's id as the `replicas` row keeps it.
    pub fn pid() -> i32 {
        i32::try_from(std::process::id()).unwrap_or(i32::MAX)
    }

    /// Why this replica is degraded (empty: it is not): for `/readyz` and `admin fleet`.
    pub fn degraded(&self) -> Vec<String> {
        use std::sync::atomic::Ordering::Relaxed;
        let mut why = Vec::new();
        if !self.status.pg_up.load(Relaxed) {
            why.push("postgres unreachable: enforcing the last known switch snapshot".to_string());
        }
        if !self.status.redis_up.load(Relaxed) {
            why.push("redis unreachable: rate limits and trigger windows count per replica".to_string());
        }
        why.extend(self.shipper.degraded(&self.status));
        if let Ok(p) = self.status.schema_problem.lock() {
            if let Some(p) = p.as_ref() {
                why.push(p.clone());
            }
        }
        why
    }
}

impl Fleet {
    /// `firebreak_fleet_*` for `/metrics`: [`metrics::FleetMetrics::render`] plus
    /// `firebreak_fleet_degraded{reason}` (1 while that reason holds; `other` counts the reasons
    /// beyond PostgreSQL, Redis and the schema).
    pub fn render_metrics(&self) -> String {
        use std::sync::atomic::Ordering::Relaxed;
        let schema = self.status.schema_problem.lock().map(|p| p.is_some()).unwrap_or(false);
        let (pg, redis) = (!self.status.pg_up.load(Relaxed), !self.status.redis_up.load(Relaxed));
        let all = self.degraded().len();
        let other = all.saturating_sub(usize::from(pg) + usize::from(redis) + usize::from(schema));
        let mut s = self.metrics.render(&self.status);
        s.push_str("# HELP firebreak_fleet_degraded Whether this replica is degraded, by reason (see /readyz).\n# TYPE firebreak_fleet_degraded gauge\n");
        for (reason, v) in [
            ("postgres", usize::from(pg)),
            ("redis", usize::from(redis)),
            ("schema", usize::from(schema)),
            ("other", other),
        ] {
            s.push_str(&format!("firebreak_fleet_degraded{{reason=\"{reason}\"}} {v}\n"));
        }
        s
    }
}

/// Now, truncated to the microsecond (so that a `replicas` row reads back equal).
fn start_time() -> std::time::SystemTime {
    use std::time::{Duration, SystemTime, UNIX_EPOCH};
    let since_epoch = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
    UNIX_EPOCH + Duration::from_micros(u64::try_from(since_epoch.as_micros()).unwrap_or(u64::MAX))
}

/// This replica's id: the flag or `FIREBREAK_REPLICA_ID` (given as `explicit`), then the policy,
/// then `<hostname>:<proxy port>`.
pub fn replica_id(explicit: Option<&str>, settings: &FleetSettings, port: u16) -> String {
    if let Some(id) = explicit.filter(|s| !s.is_empty()) {
        return id.to_string();
    }
    if let Some(id) = &settings.replica_id {
        return id.clone();
    }
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok().filter(|s| !s.is_empty()))
        .unwrap_or_else(|| "replica".into());
    format!("{host}:{port}")
}

/// Failpoints for the crash and lost-notification tests (`FIREBREAK_FLEET_FAILPOINT`, read once,
/// debug builds only): `pause_before_commit=<ms>`, `pause_after_commit=<ms>`, `ignore_notify`,
/// `no_poll`, comma-separated. `Some(ms)` (0 for a flag) when set.
pub fn failpoint(name: &str) -> Option<u64> {
    #[cfg(debug_assertions)]
    {
        static POINTS: std::sync::OnceLock<Vec<(String, u64)>> = std::sync::OnceLock::new();
        let points = POINTS.get_or_init(|| {
            std::env::var("FIREBREAK_FLEET_FAILPOINT")
                .unwrap_or_default()
                .split(',')
                .filter(|s| !s.is_empty())
                .map(|p| match p.split_once('=') {
                    Some((k, v)) => (k.trim().to_string(), v.trim().parse().unwrap_or(0)),
                    None => (p.trim().to_string(), 0),
                })
                .collect()
        });
        points.iter().find(|(k, _)| k == name).map(|(_, v)| *v)
    }
    #[cfg(not(debug_assertions))]
    {
        let _ = name;
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::fleet::UrlSource;
    use crate::config::Secret;

    fn settings(id: Option<&str>) -> FleetSettings {
        let mut s = FleetSettings::for_postgres(UrlSource::Inline(Secret::new("postgres://fb@127.0.0.1/fb")));
        s.replica_id = id.map(str::to_owned);
        s
    }

    #[test]
    fn the_replica_id_is_the_flag_then_the_policy_then_host_and_port() {
        assert_eq!(replica_id(Some("flag"), &settings(Some("policy")), 8080), "flag");
        assert_eq!(replica_id(Some(""), &settings(Some("policy")), 8080), "policy");
        assert_eq!(replica_id(None, &settings(Some("policy")), 8080), "policy");
        let default = replica_id(None, &settings(None), 8080);
        assert!(default.ends_with(":8080") && default.len() > ":8080".len(), "{default}");
    }

    #[test]
    fn a_new_fleet_handle_connects_nowhere_and_starts_degraded() {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
        rt.block_on(async {
            // Port 1: nothing listens; building the handle must not try.
            let mut s = settings(Some("a"));
            s.postgres = UrlSource::Inline(Secret::new("postgres://fb@127.0.0.1:1/fb"));
            let f = Fleet::new(Arc::new(s), "a".into()).expect("built without connecting");
            assert_eq!(f.status.live_replicas.load(std::sync::atomic::Ordering::Relaxed), 1);
            assert!(f.degraded().iter().any(|r| r.starts_with("postgres unreachable")));
            assert!(f.render_metrics().contains("firebreak_fleet_degraded{reason=\"postgres\"} 1\n"));
        });
    }
}
