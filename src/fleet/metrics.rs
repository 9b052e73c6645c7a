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

impl FleetMetrics {
    /// Prometheus text of every fleet metric (`firebreak_fleet_*`): these counters, the
    /// propagation histogram (cumulative buckets), and the gauges read from `status`.
    pub fn render(&self, status: &super::FleetStatus) -> String {
        use std::fmt::Write;
        use std::sync::atomic::Ordering::Relaxed;
        let mut s = String::new();
        let mut one = |name: &str, kind: &str, help: &str, value: u64| {
            let _ = writeln!(
                s,
                "# HELP firebreak_fleet_{name} {help}\n# TYPE firebreak_fleet_{name} {kind}\nfirebreak_fleet_{name} {value}"
            );
        };
        one(
            "switch_lag_versions",
            "gauge",
            "Database switch version minus the one this replica enforces.",
            self.switch_lag_versions.load(Relaxed),
        );
        one(
            "poll_catchups_total",
            "counter",
            "Snapshots installed by the poll that no notification announced.",
            self.poll_catchups.load(Relaxed),
        );
        one(
            "listen_reconnects_total",
            "counter",
            "LISTEN connection re-established.",
            self.listen_reconnects.load(Relaxed),
        );
        one(
            "snapshots_installed_total",
            "counter",
            "Switch snapshots installed from the fleet.",
            self.snapshots_installed.load(Relaxed),
        );
        // One counter with a label per kind of count (pushed after the others).
        let fallback = format!(
            "# HELP firebreak_fleet_redis_fallback_total Rate-limit checks (ratelimit) and trigger-window adds (window) counted locally because Redis was unreachable.\n\
             # TYPE firebreak_fleet_redis_fallback_total counter\n\
             firebreak_fleet_redis_fallback_total{{what=\"ratelimit\"}} {}\n\
             firebreak_fleet_redis_fallback_total{{what=\"window\"}} {}\n",
            self.redis_fallback_ratelimit.load(Relaxed),
            self.redis_fallback_window.load(Relaxed),
        );
        one(
            "audit_backlog",
            "gauge",
            "Audit records written locally and not yet in PostgreSQL.",
            status.written_seq.load(Relaxed).saturating_sub(status.shipped_seq.load(Relaxed)),
        );
        one("audit_shipped_total", "counter", "Audit records shipped to PostgreSQL.", self.audit_shipped.load(Relaxed));
        one(
            "audit_queue_overflow_total",
            "counter",
            "Chunks dropped from the shipper's queue (caught up from the JSONL).",
            self.audit_queue_overflow.load(Relaxed),
        );
        one(
            "audit_ship_errors_total",
            "counter",
            "Failed audit shipping attempts.",
            self.audit_ship_errors.load(Relaxed),
        );
        one(
            "writes_unavailable_total",
            "counter",
            "Admin writes refused because PostgreSQL was unreachable.",
            self.writes_unavailable.load(Relaxed),
        );
        one(
            "pg_up",
            "gauge",
            "PostgreSQL answered the last attempt (1) or not (0).",
            u64::from(status.pg_up.load(Relaxed)),
        );
        one(
            "redis_up",
            "gauge",
            "Redis answered the last call (1) or not (0).",
            u64::from(status.redis_up.load(Relaxed)),
        );
        one(
            "listen_up",
            "gauge",
            "The LISTEN connection for switch notifications is up.",
            u64::from(status.listen_up.load(Relaxed)),
        );
        one(
            "live_replicas",
            "gauge",
            "Replicas heard from within live_after at the last heartbeat (at least 1).",
            u64::from(status.live_replicas.load(Relaxed)),
        );
        one("db_version", "gauge", "The last switch version seen in the database.", status.db_version.load(Relaxed));
        let _ = writeln!(
            s,
            "# HELP firebreak_fleet_propagation_seconds Commit on the issuing replica to installed here.\n# TYPE firebreak_fleet_propagation_seconds histogram"
        );
        let mut cumulative = 0u64;
        for (bound, count) in PROPAGATION_BUCKETS_US.iter().zip(&self.propagation_us_buckets) {
            cumulative += count.load(Relaxed);
            let le = *bound as f64 / 1e6;
            let _ = writeln!(s, "firebreak_fleet_propagation_seconds_bucket{{le=\"{le}\"}} {cumulative}");
        }
        let total = self.propagation_count.load(Relaxed);
        let _ = writeln!(s, "firebreak_fleet_propagation_seconds_bucket{{le=\"+Inf\"}} {}", total.max(cumulative));
        let _ = writeln!(
            s,
            "firebreak_fleet_propagation_seconds_sum {}",
            self.propagation_us_sum.load(Relaxed) as f64 / 1e6
        );
        let _ = writeln!(s, "firebreak_fleet_propagation_seconds_count {}", total.max(cumulative));
        s.push_str(&fallback);
        s
    }

    /// Records one propagation sample (commit elsewhere → installed here).
    pub fn observe_propagation(&self, took: std::time::Duration) {
        use std::sync::atomic::Ordering::Relaxed;
        let us = u64::try_from(took.as_micros()).unwrap_or(u64::MAX);
        if let Some(i) = PROPAGATION_BUCKETS_US.iter().position(|b| us <= *b) {
            self.propagation_us_buckets[i].fetch_add(1, Relaxed);
        }
        self.propagation_us_sum.fetch_add(us, Relaxed);
        self.propagation_count.fetch_add(1, Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_histogram_renders_cumulative_buckets() {
        let m = FleetMetrics::default();
        m.observe_propagation(std::time::Duration::from_micros(500));
        m.observe_propagation(std::time::Duration::from_millis(20));
        m.observe_propagation(std::time::Duration::from_secs(60));
        let text = m.render(&super::super::FleetStatus::default());
        assert!(text.contains("firebreak_fleet_propagation_seconds_bucket{le=\"0.001\"} 1\n"), "{text}");
        assert!(text.contains("firebreak_fleet_propagation_seconds_bucket{le=\"0.025\"} 2\n"), "{text}");
        assert!(text.contains("firebreak_fleet_propagation_seconds_bucket{le=\"5\"} 2\n"), "{text}");
        assert!(text.contains("firebreak_fleet_propagation_seconds_bucket{le=\"+Inf\"} 3\n"), "{text}");
        assert!(text.contains("firebreak_fleet_propagation_seconds_count 3\n"), "{text}");
        assert!(text.contains("firebreak_fleet_pg_up 0\n"), "{text}");
    }
}
