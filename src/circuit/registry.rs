//! The breakers of a gateway (kept across policy reloads), and what they show: the admin status and
//! the Prometheus metrics.

use std::collections::HashMap;
use std::fmt::Write;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use arc_swap::ArcSwap;
use serde::Serialize;

use super::{Breaker, CircuitSettings, Failure, State, TargetKind};
use crate::config::Policy;

/// One target in `GET /admin/v1/circuits`.
#[derive(Debug, Clone, Serialize)]
pub struct Status {
    /// Upstream or MCP server.
    pub kind: TargetKind,
    /// Its name.
    pub name: String,
    /// Whether it has a breaker.
    pub enabled: bool,
    /// The rest is absent without a breaker.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub state: Option<State>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[allow(missing_docs)]
    pub failure_rate: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[allow(missing_docs)]
    pub requests_in_window: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[allow(missing_docs)]
    pub failures_in_window: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[allow(missing_docs)]
    pub consecutive_failures: Option<u64>,
    /// The last failure's class, and when (RFC 3339).
    pub last_error: Option<Failure>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[allow(missing_docs)]
    pub last_error_at: Option<String>,
    /// When it entered its state (RFC 3339).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub since: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[allow(missing_docs)]
    pub time_in_state_ms: Option<u64>,
    /// Open: time until half-open probes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retry_after_ms: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[allow(missing_docs)]
    pub transitions: Option<Transitions>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[allow(missing_docs)]
    pub settings: Option<SettingsView>,
}

/// Transitions counted since start.
#[derive(Debug, Clone, Serialize)]
#[allow(missing_docs)]
pub struct Transitions {
    pub opened: u64,
    pub half_open: u64,
    pub closed: u64,
}

/// The limits in force, as the policy writes them.
#[derive(Debug, Clone, Serialize)]
#[allow(missing_docs)]
pub struct SettingsView {
    pub consecutive_failures: u32,
    pub failure_rate: f64,
    pub window: String,
    pub min_requests: u32,
    pub open_for: String,
    pub half_open_probes: u32,
    pub count_429: bool,
}

impl From<&CircuitSettings> for SettingsView {
    fn from(s: &CircuitSettings) -> Self {
        SettingsView {
            consecutive_failures: s.consecutive_failures,
            failure_rate: s.failure_rate,
            window: humantime::format_duration(s.window).to_string(),
            min_requests: s.min_requests,
            open_for: humantime::format_duration(s.open_for).to_string(),
            half_open_probes: s.half_open_probes,
            count_429: s.count_429,
        }
    }
}

#[derive(Debug, Default)]
struct Table {
    upstreams: HashMap<String, Arc<Breaker>>,
    servers: HashMap<String, Arc<Breaker>>,
}

/// Every breaker of a gateway. Survives policy reloads: a target that keeps its name keeps its state.
#[derive(Debug)]
pub struct Circuits {
    table: ArcSwap<Table>,
}

impl Circuits {
    /// Breakers for the targets of `policy` that have one.
    pub fn new(policy: &Policy) -> Circuits {
        let c = Circuits { table: ArcSwap::from_pointee(Table::default()) };
        c.rebuild(policy);
        c
    }

    /// Follows a new policy: breakers of targets it still has (with a breaker) are kept.
    pub fn rebuild(&self, policy: &Policy) {
        let old = self.table.load();
        let keep = |map: &HashMap<String, Arc<Breaker>>, kind, name: &str| {
            map.get(name).cloned().unwrap_or_else(|| Arc::new(Breaker::new(kind, name)))
        };
        let mut t = Table::default();
        for u in policy.upstreams.values().filter(|u| u.circuit.is_some()) {
            t.upstreams.insert(u.name.clone(), keep(&old.upstreams, TargetKind::Upstream, &u.name));
        }
        for s in policy.mcp.servers.values().filter(|s| s.circuit.is_some()) {
            t.servers.insert(s.name.clone(), keep(&old.servers, TargetKind::McpServer, &s.name));
        }
        self.table.store(Arc::new(t));
    }

    /// An upstream's breaker.
    pub fn upstream(&self, name: &str) -> Option<Arc<Breaker>> {
        self.table.load().upstreams.get(name).cloned()
    }

    /// An MCP server's breaker.
    pub fn server(&self, name: &str) -> Option<Arc<Breaker>> {
        self.table.load().servers.get(name).cloned()
    }

    /// Every upstream (scripted ones have no breaker) and MCP server of `policy`.
    pub fn status(&self, policy: &Policy) -> Vec<Status> {
        let t = self.table.load();
        let off = |kind, name: &str| Status {
            kind,
            name: name.to_owned(),
            enabled: false,
            state: None,
            failure_rate: None,
            requests_in_window: None,
            failures_in_window: None,
            consecutive_failures: None,
            last_error: None,
            last_error_at: None,
            since: None,
            time_in_state_ms: None,
            retry_after_ms: None,
            transitions: None,
            settings: None,
        };
        let mut out = Vec::new();
        for u in policy.upstreams.values() {
            out.push(match (&u.circuit, t.upstreams.get(&u.name)) {
                (Some(s), Some(b)) => b.status(s),
                _ => off(TargetKind::Upstream, &u.name),
            });
        }
        for srv in policy.mcp.servers.values() {
            out.push(match (&srv.circuit, t.servers.get(&srv.name)) {
                (Some(s), Some(b)) => b.status(s),
                _ => off(TargetKind::McpServer, &srv.name),
            });
        }
        out
    }

    /// Prometheus text: the state gauge (0 closed, 1 open, 2 half-open) and transitions per target.
    pub fn render_metrics(&self) -> String {
        let t = self.table.load();
        let mut s = String::new();
        if t.upstreams.is_empty() && t.servers.is_empty() {
            return s;
        }
        let mut all: Vec<&Arc<Breaker>> = t.upstreams.values().chain(t.servers.values()).collect();
        all.sort_by(|a, b| (a.kind.as_str(), &a.name).cmp(&(b.kind.as_str(), &b.name)));
        s.push_str("# HELP firebreak_circuit_state Circuit breaker state per target (0 closed, 1 open, 2 half-open).\n# TYPE firebreak_circuit_state gauge\n");
        for b in &all {
            let _ = writeln!(
                s,
                "firebreak_circuit_state{{kind=\"{}\",target=\"{}\"}} {}",
                b.kind.as_str(),
                b.name,
                b.state().bits()
            );
        }
        s.push_str("# HELP firebreak_circuit_transitions_total Circuit breaker transitions per target and new state.\n# TYPE firebreak_circuit_transitions_total counter\n");
        for b in &all {
            for (i, to) in ["opened", "half_open", "closed"].iter().enumerate() {
                let _ = writeln!(
                    s,
                    "firebreak_circuit_transitions_total{{kind=\"{}\",target=\"{}\",to=\"{to}\"}} {}",
                    b.kind.as_str(),
                    b.name,
                    b.transitions[i].load(Ordering::Relaxed)
                );
            }
        }
        s
    }
}
