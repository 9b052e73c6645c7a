//! Fleet metrics, rendered after the gateway's own (`firebreak_fleet_*`). Every field is declared
//! here up front so the parts of fleet mode can count without touching each other's code; the
//! rendering is `render`.

use std::sync::atomic::AtomicU64;

/// Counters and gauges of the fleet tasks (relaxed atomics).
#[derive(Debug, Default)]
pub struct FleetMetrics {
    /// Gauge: database switch version minus the applied one.
    pub switch_lag_versions: AtomicU64,
    /// Snapshots installed by the poll that no notification announced.
    pub poll_catchups: AtomicU64,
    /// LISTEN connection re-established.
    pub listen_reconnects: AtomicU64,
    /// Snapshots installed from the fleet (notification or poll).
    pub snapshots_installed: AtomicU64,
    /// Propagation (commit on the issuing replica → installed here), microseconds, histogram
    /// buckets at [`PROPAGATION_BUCKETS_US`] (cumulative at render time) plus sum and count.
    pub propagation_us_buckets: [AtomicU64; PROPAGATION_BUCKETS_US.len()],
    /// Sum of the propagation times, microseconds.
    pub propagation_us_sum: AtomicU64,
    /// Number of propagation samples.
    pub propagation_count: AtomicU64,
    /// Rate-limit checks counted locally because Redis was unreachable.
    pub redis_fallback_ratelimit: AtomicU64,
    /// Trigger-window adds counted locally because Redis was unreachable.
    pub redis_fallback_window: AtomicU64,
    /// Gauge: audit records written locally and not yet in PostgreSQL.
    pub audit_backlog: AtomicU64,
    /// Audit records shipped.
    pub audit_shipped: AtomicU64,
    /// Chunks dropped from the shipper's queue (the JSONL has them; a catch-up follows).
    pub audit_queue_overflow: AtomicU64,
    /// Failed shipping attempts.
    pub audit_ship_errors: AtomicU64,
    /// Admin writes refused because PostgreSQL was unreachable.
    pub writes_unavailable: AtomicU64,
}

/// Upper bounds of the propagation histogram, microseconds.
pub const PROPAGATION_BUCKETS_US: [u64; 10] =
    [1_000, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000, 1_000_000, 5_000_000];
