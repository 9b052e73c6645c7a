//! Alerts wired to a running gateway: the tap on its audit writer, the router task turning tapped
//! records into alerts (enriched from the incident book), the rule-spike watch over its decision
//! counters, and the triggers close to firing. The alerts themselves (events, sinks, delivery,
//! formats) are `crate::alerts`, which knows nothing of the gateway.

use std::collections::BTreeMap;
use std::sync::{Arc, Weak};

use serde_json::{json, Map, Value};
use tokio::sync::mpsc;

use super::Gateway;
use crate::alerts::anomaly::spikes;
use crate::alerts::{event, Draft, TAP_CAPACITY};
use crate::config::incidents::IncidentSeverity;

/// Starts the alerts of `gw`: the tap on its audit writer, the router, the rule-spike watch and
/// the sinks of its policy. `firebreak serve` calls it once; offline replay never does (a replayed
/// attack must not page anyone).
pub fn start(gw: &Arc<Gateway>) {
    let (tx, rx) = mpsc::channel(TAP_CAPACITY);
    if !gw.audit.set_tap(tx) {
        return;
    }
    let policy = gw.policy();
    let _ = gw.alerts.sinks(&policy);
    tokio::spawn(route(Arc::downgrade(gw), rx));
    tokio::spawn(watch_spikes(Arc::downgrade(gw)));
}

/// Turns tapped records into alerts, in the order they were written.
async fn route(gw: Weak<Gateway>, mut rx: mpsc::Receiver<Map<String, Value>>) {
    while let Some(record) = rx.recv().await {
        let Some(gw) = gw.upgrade() else { return };
        for draft in event::classify(&record) {
            let draft = enrich(&gw, draft).await;
            let policy = gw.policy();
            gw.alerts.dispatch(&policy, draft);
        }
    }
}

/// Adds what the incident book knows to an incident alert: the actions taken and those awaiting an
/// operator. The engine holds the book while it opens an incident and runs its plan, so this waits
/// until the containment of an opening is done and the alert can say what was done.
async fn enrich(gw: &Gateway, mut d: Draft) -> Draft {
    if !d.event.starts_with("incident.") {
        return d;
    }
    let Some(id) = d.fields.get("incident").and_then(Value::as_str).map(str::to_owned) else { return d };
    let Some(inc) = super::incidents::get(gw, &id).await else { return d };
    let mut m = Map::new();
    let taken: Vec<Value> =
        inc.actions.iter().flat_map(|t| t.actions.iter()).filter_map(|a| serde_json::to_value(a).ok()).collect();
    let awaiting: Vec<Value> = inc
        .actions
        .last()
        .map(|t| t.awaiting_operator.iter().filter_map(|a| serde_json::to_value(a).ok()).collect())
        .unwrap_or_default();
    m.insert("actions".into(), Value::Array(taken));
    crate::audit::digest_sessions(&mut m);
    let mut w = Map::new();
    w.insert("actions".into(), Value::Array(awaiting));
    crate::audit::digest_sessions(&mut w);
    d.fields.insert("actions".into(), m.remove("actions").unwrap_or_default());
    d.fields.insert("awaiting_operator".into(), w.remove("actions").unwrap_or_default());
    d.fields.insert("plans".into(), json!(inc.actions.iter().map(|t| t.plan.as_str()).collect::<Vec<_>>()));
    d.fields.insert("firings".into(), json!(inc.firings));
    d.fields.insert("first_seen".into(), json!(inc.first_seen));
    d
}

/// Decisions per rule id (all actions together).
fn per_rule(gw: &Gateway) -> BTreeMap<String, u64> {
    let mut out = BTreeMap::new();
    for ((rule, _action), n) in gw.metrics.decision_counts() {
        *out.entry(rule).or_default() += n;
    }
    out
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
/// without having fired; highest share first. In fleet mode the counts are the fleet's (Redis).
pub async fn near_firing(gw: &Gateway, limit: usize) -> Vec<Value> {
    let policy = gw.policy();
    let ratio = policy.alerts.near_threshold;
    let mut out: Vec<(f64, Value)> = gw
        .windows
        .counts(&policy)
        .await
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
