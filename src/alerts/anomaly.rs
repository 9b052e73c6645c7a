//! Anomalies listed by `firebreak admin alerts`: rule spikes and triggers close to firing.
//!
//! A **rule spike**: every `[alerts] spike_window`, the decisions counted per rule id in the window
//! that just ended are compared with the window before; a rule with at least `spike_min_events`
//! decisions and at least `spike_factor` times the previous window's count is a spike (alerted as
//! `anomaly.rule_spike`). The counts come from the decision counters the gateway keeps anyway
//! (`firebreak_decisions_total`), read once per window: nothing is added to the request path. The
//! window before the first one after start-up counts as empty.
//!
//! A **trigger close to firing**: a principal whose count in a trigger's sliding window has reached
//! `near_threshold` of its threshold without going over it (read from the incident engine's
//! windows when asked).

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Mutex, Weak};

use serde_json::{json, Map, Value};

use super::event::Draft;
use crate::config::incidents::IncidentSeverity;
use crate::proxy::Gateway;

/// Spikes kept for the list.
const KEPT: usize = 100;

/// The spikes found so far, newest last.
#[derive(Debug, Default)]
pub struct Spikes(Mutex<VecDeque<Value>>);

impl Spikes {
    /// The newest `limit`, newest first.
    pub fn recent(&self, limit: usize) -> Vec<Value> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).iter().rev().take(limit).cloned().collect()
    }

    fn push(&self, v: Value) {
        let mut q = self.0.lock().unwrap_or_else(|p| p.into_inner());
        q.push_back(v);
        while q.len() > KEPT {
            q.pop_front();
        }
    }
}

/// Decisions per rule id (all actions together).
fn per_rule(gw: &Gateway) -> BTreeMap<String, u64> {
    let mut out = BTreeMap::new();
    for ((rule, _action), n) in gw.metrics.decision_counts() {
        *out.entry(rule).or_default() += n;
    }
    out
}

/// The rules of `window` that spiked against `previous`.
pub fn spikes(
    window: &BTreeMap<String, u64>,
    previous: &BTreeMap<String, u64>,
    factor: f64,
    min_events: u64,
) -> Vec<(String, u64, u64)> {
    window
        .iter()
        .filter_map(|(rule, &n)| {
            let before = previous.get(rule).copied().unwrap_or(0);
            (n >= min_events && n as f64 >= factor * before as f64).then(|| (rule.clone(), n, before))
        })
        .collect()
}

/// Compares each window's decisions per rule with the window before, until the gateway is gone.
pub async fn watch_spikes(gw: Weak<Gateway>) {
    let mut last = match gw.upgrade() {
        Some(g) => per_rule(&g),
        None => return,
    };
    let mut previous: BTreeMap<String, u64> = BTreeMap::new();
    loop {
        let Some(window) = gw.upgrade().map(|g| g.policy().alerts.spike_window) else { return };
        tokio::time::sleep(window).await;
        let Some(g) = gw.upgrade() else { return };
        let now = per_rule(&g);
        let counts: BTreeMap<String, u64> = now
            .iter()
            .map(|(r, n)| (r.clone(), n.saturating_sub(last.get(r).copied().unwrap_or(0))))
            .filter(|(_, n)| *n > 0)
            .collect();
        let policy = g.policy();
        let a = &policy.alerts;
        for (rule, n, before) in spikes(&counts, &previous, a.spike_factor, a.spike_min_events) {
            let window_text = humantime::format_duration(window).to_string();
            let time = humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string();
            g.alerts
                .spikes
                .push(json!({"rule": rule, "count": n, "previous": before, "window": window_text, "time": time}));
            let mut fields = Map::new();
            fields.insert("rule".into(), json!(rule));
            fields.insert("count".into(), json!(n));
            fields.insert("previous".into(), json!(before));
            fields.insert("window".into(), json!(window_text));
            g.alerts.dispatch(
                &policy,
                Draft {
                    event: "anomaly.rule_spike".into(),
                    severity: IncidentSeverity::Sev3,
                    summary: format!(
                        "rule {rule} spiked: {n} decisions in {window_text}, {before} in the window before"
                    ),
                    fields,
                    dedup_key: format!("firebreak-spike-{rule}"),
                    resolve: false,
                },
            );
        }
        previous = counts;
        last = now;
    }
}

/// Principals whose count in a trigger's window is at `near_threshold` of its threshold or more,
/// without having fired; highest share first.
pub fn near_firing(gw: &Gateway, limit: usize) -> Vec<Value> {
    let policy = gw.policy();
    let ratio = policy.alerts.near_threshold;
    let mut out: Vec<(f64, Value)> = gw
        .incidents
        .window_counts(&policy)
        .into_iter()
        .filter_map(|(trigger, principal, count)| {
            let t = policy.incidents.triggers.get(&trigger)?;
            if t.threshold == 0 || count > t.threshold {
                return None;
            }
            let share = count as f64 / t.threshold as f64;
            (share >= ratio).then(|| {
                (
                    share,
                    json!({
                        "trigger": trigger,
                        "principal": principal,
                        "count": count,
                        "threshold": t.threshold,
                        "fires_above": t.threshold,
                        "window": humantime::format_duration(t.window).to_string(),
                        "severity": t.severity.as_str(),
                    }),
                )
            })
        })
        .collect();
    out.sort_by(|a, b| b.0.total_cmp(&a.0));
    out.into_iter().take(limit).map(|(_, v)| v).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_spike_is_both_a_multiple_and_a_minimum() {
        let m = |v: &[(&str, u64)]| v.iter().map(|(k, n)| ((*k).to_owned(), *n)).collect::<BTreeMap<_, _>>();
        let prev = m(&[("a", 10), ("b", 1), ("c", 0)]);
        let now = m(&[("a", 29), ("b", 30), ("d", 25), ("e", 5)]);
        let found: Vec<String> = spikes(&now, &prev, 3.0, 20).into_iter().map(|(r, _, _)| r).collect();
        assert_eq!(found, ["b", "d"], "a: 2.9x; e: below the minimum; d: new");
        assert_eq!(spikes(&m(&[("a", 30)]), &prev, 3.0, 20).len(), 1, "exactly 3x counts");
    }
}
