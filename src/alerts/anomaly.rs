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
//!
//! The watch and the list over a running gateway are `gateway::alerting`'s.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Mutex;

use serde_json::Value;

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

    pub(crate) fn push(&self, v: Value) {
        let mut q = self.0.lock().unwrap_or_else(|p| p.into_inner());
        q.push_back(v);
        while q.len() > KEPT {
            q.pop_front();
        }
    }
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
