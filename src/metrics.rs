//! Prometheus metrics, rendered as text on the admin listener's `/metrics`.
//!
//! Counters are keyed by static label values only (endpoint, status, rule id, action): never by user,
//! key or anything from the request, so cardinality stays bounded.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

/// Latency histogram bucket bounds, in seconds.
const BUCKETS: [f64; 14] = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];

/// All gateway metrics.
#[derive(Debug, Default)]
pub struct Metrics {
    requests: Mutex<BTreeMap<(&'static str, u16), u64>>,
    /// rule id → action → count. Rule ids come from the policy (bounded), not from requests.
    decisions: Mutex<BTreeMap<String, BTreeMap<&'static str, u64>>>,
    latency_buckets: [AtomicU64; BUCKETS.len()],
    latency_count: AtomicU64,
    latency_sum_us: AtomicU64,
    in_flight: AtomicI64,
    streams_terminated: AtomicU64,
    switch_version: AtomicU64,
    policy_reloads: Mutex<BTreeMap<&'static str, u64>>,
    audit_unwritable: std::sync::atomic::AtomicBool,
    audit_write_errors: AtomicU64,
    audit_dropped: AtomicU64,
    /// Alert sinks by name (names come from the policy: bounded).
    alert_sinks: Mutex<BTreeMap<String, std::sync::Arc<AlertSinkMetrics>>>,
    alerts_tap_dropped: AtomicU64,
    /// Injection classifier scores (highest per request and source): [user_input, tool_result] ×
    /// [`SCORE_BUCKETS`] (cumulative), plus counts and sums.
    classifier: [ScoreHistogram; 2],
}

/// Delivery counters of one alert sink (see `alerts::deliver`).
#[derive(Debug, Default)]
pub struct AlertSinkMetrics {
    /// Delivered (the receiver answered 2xx).
    pub sent: AtomicU64,
    /// Given up after the last attempt (written to the dead-letter file).
    pub failed: AtomicU64,
    /// Attempts after the first.
    pub retried: AtomicU64,
    /// Not queued: the sink's queue was full.
    pub dropped: AtomicU64,
    /// Alerts waiting in the queue (or being delivered).
    pub queued: AtomicI64,
}

/// Classifier score histogram bucket bounds.
const SCORE_BUCKETS: [f64; 10] = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95];

#[derive(Debug, Default)]
struct ScoreHistogram {
    buckets: [AtomicU64; SCORE_BUCKETS.len()],
    count: AtomicU64,
    /// Sum of scores in millionths.
    sum_micro: AtomicU64,
}

impl Metrics {
    /// Counts a finished request.
    pub fn request(&self, endpoint: &'static str, status: u16, elapsed: Duration) {
        *self.requests.lock().unwrap_or_else(|p| p.into_inner()).entry((endpoint, status)).or_default() += 1;
        let secs = elapsed.as_secs_f64();
        for (i, b) in BUCKETS.iter().enumerate() {
            if secs <= *b {
                self.latency_buckets[i].fetch_add(1, Ordering::Relaxed);
            }
        }
        self.latency_count.fetch_add(1, Ordering::Relaxed);
        self.latency_sum_us.fetch_add(elapsed.as_micros() as u64, Ordering::Relaxed);
    }

    /// Counts a policy decision.
    pub fn decision(&self, rule: &str, action: &'static str) {
        self.decisions_n(rule, action, 1);
    }

    /// Counts a decision of a typed rule (no allocation for a fixed rule already counted).
    pub fn rule(&self, rule: &crate::rules::RuleId, action: &'static str) {
        self.decisions_n(&rule.as_text(), action, 1);
    }

    /// Counts `n` decisions of a fixed rule at once.
    pub fn rule_n(&self, rule: crate::rules::Rule, action: &'static str, n: u64) {
        self.decisions_n(rule.as_str(), action, n);
    }

    /// Counts `n` decisions at once.
    pub fn decisions_n(&self, rule: &str, action: &'static str, n: u64) {
        let mut d = self.decisions.lock().unwrap_or_else(|p| p.into_inner());
        // Allocate the rule id only the first time it is seen.
        let per_rule = match d.get_mut(rule) {
            Some(m) => m,
            None => d.entry(rule.to_owned()).or_default(),
        };
        *per_rule.entry(action).or_default() += n;
    }

    /// An injection classifier score (`source`: `user_input` or `tool_result`).
    pub fn classifier_score(&self, source: &str, score: f32) {
        let h = &self.classifier[usize::from(source == "tool_result")];
        let s = f64::from(score);
        for (i, b) in SCORE_BUCKETS.iter().enumerate() {
            if s <= *b {
                h.buckets[i].fetch_add(1, Ordering::Relaxed);
            }
        }
        h.count.fetch_add(1, Ordering::Relaxed);
        h.sum_micro.fetch_add((s.clamp(0.0, 1.0) * 1e6) as u64, Ordering::Relaxed);
    }

    /// A request started (+1) or ended (-1).
    pub fn in_flight(&self, delta: i64) {
        self.in_flight.fetch_add(delta, Ordering::Relaxed);
    }

    /// A stream was ended by a switch.
    pub fn stream_terminated(&self) {
        self.streams_terminated.fetch_add(1, Ordering::Relaxed);
    }

    /// The switch snapshot version now in force.
    pub fn set_switch_version(&self, v: u64) {
        self.switch_version.store(v, Ordering::Relaxed);
    }

    /// A policy reload attempt (`ok` or `rejected`).
    pub fn policy_reload(&self, outcome: &'static str) {
        *self.policy_reloads.lock().unwrap_or_else(|p| p.into_inner()).entry(outcome).or_default() += 1;
    }

    /// Whether the audit trail can be written (the writer sets it after each burst).
    pub fn set_audit_writable(&self, writable: bool) {
        self.audit_unwritable.store(!writable, Ordering::Relaxed);
    }

    /// An audit write (or fsync, or head update) failed.
    pub fn audit_write_error(&self) {
        self.audit_write_errors.fetch_add(1, Ordering::Relaxed);
    }

    /// An audit record was dropped (the in-memory backlog of a failing trail was full).
    pub fn audit_dropped(&self) {
        self.audit_dropped.fetch_add(1, Ordering::Relaxed);
    }

    /// The counters of alert sink `name` (created on first use, kept across reloads).
    pub fn alert_sink(&self, name: &str) -> std::sync::Arc<AlertSinkMetrics> {
        let mut m = self.alert_sinks.lock().unwrap_or_else(|p| p.into_inner());
        match m.get(name) {
            Some(s) => s.clone(),
            None => m.entry(name.to_owned()).or_default().clone(),
        }
    }

    /// An audit record (or the audit-failure signal) was not handed to the alerts: their tap was full.
    pub fn alerts_tap_dropped(&self) {
        self.alerts_tap_dropped.fetch_add(1, Ordering::Relaxed);
    }

    /// Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut s = String::with_capacity(4096);
        s.push_str("# HELP firebreak_requests_total AI requests by endpoint and status.\n# TYPE firebreak_requests_total counter\n");
        for ((ep, st), n) in self.requests.lock().unwrap_or_else(|p| p.into_inner()).iter() {
            let _ = writeln!(s, "firebreak_requests_total{{endpoint=\"{ep}\",status=\"{st}\"}} {n}");
        }
        s.push_str("# HELP firebreak_decisions_total Policy decisions by rule and action.\n# TYPE firebreak_decisions_total counter\n");
        for (rule, actions) in self.decisions.lock().unwrap_or_else(|p| p.into_inner()).iter() {
            for (action, n) in actions {
                let _ = writeln!(s, "firebreak_decisions_total{{rule=\"{rule}\",action=\"{action}\"}} {n}");
            }
        }
        s.push_str("# HELP firebreak_request_duration_seconds Time from request to response head (streams: to first byte).\n# TYPE firebreak_request_duration_seconds histogram\n");
        for (i, b) in BUCKETS.iter().enumerate() {
            let _ = writeln!(
                s,
                "firebreak_request_duration_seconds_bucket{{le=\"{b}\"}} {}",
                self.latency_buckets[i].load(Ordering::Relaxed)
            );
        }
        let count = self.latency_count.load(Ordering::Relaxed);
        let _ = writeln!(s, "firebreak_request_duration_seconds_bucket{{le=\"+Inf\"}} {count}");
        let _ = writeln!(
            s,
            "firebreak_request_duration_seconds_sum {}",
            self.latency_sum_us.load(Ordering::Relaxed) as f64 / 1e6
        );
        let _ = writeln!(s, "firebreak_request_duration_seconds_count {count}");
        let _ = writeln!(s, "# HELP firebreak_requests_in_flight Requests being served.\n# TYPE firebreak_requests_in_flight gauge\nfirebreak_requests_in_flight {}", self.in_flight.load(Ordering::Relaxed));
        let _ = writeln!(s, "# HELP firebreak_streams_terminated_total Streams ended by a switch.\n# TYPE firebreak_streams_terminated_total counter\nfirebreak_streams_terminated_total {}", self.streams_terminated.load(Ordering::Relaxed));
        let _ = writeln!(s, "# HELP firebreak_switch_version Version of the switch snapshot in force.\n# TYPE firebreak_switch_version gauge\nfirebreak_switch_version {}", self.switch_version.load(Ordering::Relaxed));
        let _ = writeln!(s, "# HELP firebreak_audit_writable Whether the audit trail can be written (0: failing; see /readyz).\n# TYPE firebreak_audit_writable gauge\nfirebreak_audit_writable {}", u8::from(!self.audit_unwritable.load(Ordering::Relaxed)));
        let _ = writeln!(s, "# HELP firebreak_audit_write_errors_total Failed audit writes, fsyncs and head updates.\n# TYPE firebreak_audit_write_errors_total counter\nfirebreak_audit_write_errors_total {}", self.audit_write_errors.load(Ordering::Relaxed));
        let _ = writeln!(s, "# HELP firebreak_audit_records_dropped_total Audit records lost because the backlog of a failing trail was full.\n# TYPE firebreak_audit_records_dropped_total counter\nfirebreak_audit_records_dropped_total {}", self.audit_dropped.load(Ordering::Relaxed));
        self.render_alerts(&mut s);
        s.push_str("# HELP firebreak_injection_classifier_score Highest injection classifier score per request and source.\n# TYPE firebreak_injection_classifier_score histogram\n");
        for (source, h) in ["user_input", "tool_result"].iter().zip(&self.classifier) {
            for (i, b) in SCORE_BUCKETS.iter().enumerate() {
                let _ = writeln!(
                    s,
                    "firebreak_injection_classifier_score_bucket{{source=\"{source}\",le=\"{b}\"}} {}",
                    h.buckets[i].load(Ordering::Relaxed)
                );
            }
            let count = h.count.load(Ordering::Relaxed);
            let _ =
                writeln!(s, "firebreak_injection_classifier_score_bucket{{source=\"{source}\",le=\"+Inf\"}} {count}");
            let _ = writeln!(
                s,
                "firebreak_injection_classifier_score_sum{{source=\"{source}\"}} {}",
                h.sum_micro.load(Ordering::Relaxed) as f64 / 1e6
            );
            let _ = writeln!(s, "firebreak_injection_classifier_score_count{{source=\"{source}\"}} {count}");
        }
        s.push_str("# HELP firebreak_policy_reloads_total Policy reloads by outcome.\n# TYPE firebreak_policy_reloads_total counter\n");
        for (o, n) in self.policy_reloads.lock().unwrap_or_else(|p| p.into_inner()).iter() {
            let _ = writeln!(s, "firebreak_policy_reloads_total{{outcome=\"{o}\"}} {n}");
        }
        s
    }
}

impl Metrics {
    fn render_alerts(&self, s: &mut String) {
        let sinks = self.alert_sinks.lock().unwrap_or_else(|p| p.into_inner());
        type Read = fn(&AlertSinkMetrics) -> u64;
        let counters: [(&str, &str, Read); 4] = [
            ("sent", "Alerts delivered, by sink.", |m| m.sent.load(Ordering::Relaxed)),
            ("failed", "Alerts given up after the last attempt (dead-lettered), by sink.", |m| {
                m.failed.load(Ordering::Relaxed)
            }),
            ("retries", "Alert delivery attempts after the first, by sink.", |m| m.retried.load(Ordering::Relaxed)),
            ("dropped", "Alerts dropped because the sink's queue was full, by sink.", |m| {
                m.dropped.load(Ordering::Relaxed)
            }),
        ];
        for (name, help, get) in counters {
            let _ = writeln!(
                s,
                "# HELP firebreak_alerts_{name}_total {help}\n# TYPE firebreak_alerts_{name}_total counter"
            );
            for (sink, m) in sinks.iter() {
                let _ = writeln!(s, "firebreak_alerts_{name}_total{{sink=\"{sink}\"}} {}", get(m));
            }
        }
        let _ = writeln!(s, "# HELP firebreak_alerts_queue_depth Alerts queued or being delivered, by sink.\n# TYPE firebreak_alerts_queue_depth gauge");
        for (sink, m) in sinks.iter() {
            let _ = writeln!(
                s,
                "firebreak_alerts_queue_depth{{sink=\"{sink}\"}} {}",
                m.queued.load(Ordering::Relaxed).max(0)
            );
        }
        let _ = writeln!(s, "# HELP firebreak_alerts_tap_dropped_total Audit records not turned into alerts because the alert tap was full.\n# TYPE firebreak_alerts_tap_dropped_total counter\nfirebreak_alerts_tap_dropped_total {}", self.alerts_tap_dropped.load(Ordering::Relaxed));
    }

    /// Request counts by (endpoint, status), for exporters.
    pub fn request_counts(&self) -> Vec<((&'static str, u16), u64)> {
        self.requests.lock().unwrap_or_else(|p| p.into_inner()).iter().map(|(k, v)| (*k, *v)).collect()
    }

    /// Decision counts by (rule, action), for exporters.
    pub fn decision_counts(&self) -> Vec<((String, &'static str), u64)> {
        let d = self.decisions.lock().unwrap_or_else(|p| p.into_inner());
        d.iter().flat_map(|(rule, actions)| actions.iter().map(move |(a, n)| ((rule.clone(), *a), *n))).collect()
    }

    /// The switch version.
    pub fn switch_version(&self) -> u64 {
        self.switch_version.load(Ordering::Relaxed)
    }
}
