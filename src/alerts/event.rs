//! From audit records to alerts: which records are worth an alert, under which event name, with
//! which severity, summary and PagerDuty dedup key. Pure functions over the record's fields.

use std::collections::BTreeMap;
use std::sync::Mutex;

use serde_json::{json, Map, Value};

use crate::config::incidents::IncidentSeverity;

/// An alert about to be dispatched (no id or time yet).
#[derive(Debug, Clone)]
pub struct Draft {
    /// Event name (one of [`crate::config::alerts::EVENTS`], or `test`).
    pub event: String,
    /// Severity (incident events: the incident's; others: fixed per event).
    pub severity: IncidentSeverity,
    /// One line for people.
    pub summary: String,
    /// Facts: incident, trigger, user, tenant, server, actions, reason, versions… Never a secret:
    /// they come from audit records (session ids already digested) and the incident book.
    pub fields: Map<String, Value>,
    /// Groups the trigger and the resolve of one problem (PagerDuty `dedup_key`).
    pub dedup_key: String,
    /// This alert closes the problem of its dedup key (incident resolved, trail writable again).
    pub resolve: bool,
}

/// A dispatched alert, kept in the recent ring with how each sink fared.
#[derive(Debug)]
pub struct Alert {
    /// `alr-<start time>-<n>`: unique across restarts (receivers drop duplicates by it).
    pub id: String,
    /// RFC 3339.
    pub time: String,
    /// What it says.
    pub draft: Draft,
    /// A test sent by `firebreak admin alerts test`.
    pub test: bool,
    /// Sink → `queued`, `sent`, `retrying`, `dead_letter`, `dropped`.
    pub deliveries: Mutex<BTreeMap<String, String>>,
}

impl Alert {
    /// The JSON every sink starts from (the webhook body, the dead-letter line, the admin list).
    pub fn to_json(&self) -> Value {
        let d = &self.draft;
        let mut v = json!({
            "id": self.id,
            "time": self.time,
            "event": d.event,
            "severity": d.severity.as_str(),
            "summary": d.summary,
            "dedup_key": d.dedup_key,
            "resolve": d.resolve,
            "test": self.test,
        });
        for (k, x) in &d.fields {
            v[k] = x.clone();
        }
        v
    }

    /// Notes how the delivery to `sink` stands.
    pub fn delivery(&self, sink: &str, status: &str) {
        self.deliveries.lock().unwrap_or_else(|p| p.into_inner()).insert(sink.to_owned(), status.to_owned());
    }

    /// [`Alert::to_json`] with the deliveries.
    pub fn listed(&self) -> Value {
        let mut v = self.to_json();
        v["deliveries"] = json!(*self.deliveries.lock().unwrap_or_else(|p| p.into_inner()));
        v
    }
}

fn s<'a>(m: &'a Map<String, Value>, k: &str) -> Option<&'a str> {
    m.get(k).and_then(Value::as_str).filter(|s| !s.is_empty())
}

/// Copies the named fields that are present.
fn pick(m: &Map<String, Value>, keys: &[&str]) -> Map<String, Value> {
    keys.iter().filter_map(|k| m.get(*k).map(|v| ((*k).to_owned(), v.clone()))).collect()
}

/// `alice (tenant acme)`, or `-`.
pub fn principal(m: &Map<String, Value>) -> String {
    match (s(m, "user"), s(m, "tenant")) {
        (Some(u), Some(t)) => format!("{u} (tenant {t})"),
        (Some(u), None) => u.to_owned(),
        (None, Some(t)) => format!("tenant {t}"),
        (None, None) => s(m, "session").map_or_else(|| "-".to_owned(), |x| format!("session {x}")),
    }
}

/// The alerts one tapped audit record makes (most make none; a switch batch may make several).
pub fn classify(m: &Map<String, Value>) -> Vec<Draft> {
    let kind = s(m, "kind").unwrap_or("");
    let event = s(m, "event").unwrap_or("");
    match kind {
        "incident" => incident(m, event).into_iter().collect(),
        "switch" => switch(m),
        "audit" => audit(m, event).into_iter().collect(),
        "circuit" => circuit(m, event).into_iter().collect(),
        "fleet" if event == "replica_lag" => vec![Draft {
            event: "fleet.replica_lag".into(),
            severity: IncidentSeverity::Sev3,
            summary: format!("replica {} lags behind", s(m, "replica").unwrap_or("?")),
            fields: pick(m, &["replica", "lag_ms", "seq"]),
            dedup_key: format!("firebreak-fleet-lag-{}", s(m, "replica").unwrap_or("?")),
            resolve: false,
        }],
        _ => Vec::new(),
    }
}

fn incident(m: &Map<String, Value>, event: &str) -> Option<Draft> {
    if !matches!(event, "opened" | "joined" | "escalated" | "resolved") {
        return None;
    }
    let id = s(m, "incident")?;
    let severity = s(m, "severity").and_then(IncidentSeverity::parse).unwrap_or(IncidentSeverity::Sev4);
    let trigger = s(m, "trigger").unwrap_or("?");
    let summary = format!("{} incident {id} {event}: {trigger} by {}", severity.as_str(), principal(m));
    Some(Draft {
        event: format!("incident.{event}"),
        severity,
        summary,
        fields: pick(
            m,
            &[
                "incident",
                "trigger",
                "user",
                "tenant",
                "session",
                "server",
                "rule",
                "auto",
                "actor",
                "on_behalf_of",
                "note",
                "seq",
            ],
        ),
        dedup_key: format!("firebreak-{id}"),
        resolve: event == "resolved",
    })
}

fn switch(m: &Map<String, Value>) -> Vec<Draft> {
    let actions = m.get("actions").and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default();
    let named = |a: &Value, name: &str| a.get("action").and_then(Value::as_str) == Some(name);
    let lockdown =
        actions.iter().any(|a| named(a, "set_level") && a.get("level").and_then(Value::as_str) == Some("lockdown"));
    let safe_mode =
        actions.iter().any(|a| named(a, "safe_mode") && a.get("enabled").and_then(Value::as_bool) == Some(true));
    let isolated: Vec<&str> = actions
        .iter()
        .filter(|a| named(a, "isolate_server"))
        .filter_map(|a| a.get("server").and_then(Value::as_str))
        .collect();
    let version = m.get("after_version").and_then(Value::as_u64).unwrap_or(0);
    let by = format!(
        "(switch version {version}, by {}{})",
        s(m, "actor").unwrap_or("?"),
        s(m, "reason").map(|r| format!(": {r}")).unwrap_or_default()
    );
    let fields = || {
        pick(
            m,
            &[
                "actor",
                "on_behalf_of",
                "reason",
                "before_version",
                "after_version",
                "actions",
                "plan",
                "incident",
                "seq",
            ],
        )
    };
    let mut out = Vec::new();
    let mut add = |event: &str, severity, summary: String| {
        out.push(Draft {
            event: format!("switch.{event}"),
            severity,
            summary,
            fields: fields(),
            dedup_key: format!("firebreak-switch-{version}-{event}"),
            resolve: false,
        })
    };
    if lockdown {
        add("lockdown", IncidentSeverity::Sev1, format!("LOCKDOWN: every AI request is refused {by}"));
    }
    if safe_mode {
        add("safe_mode", IncidentSeverity::Sev2, format!("safe mode on: the model is not asked {by}"));
    }
    if !isolated.is_empty() {
        add("isolate_server", IncidentSeverity::Sev2, format!("MCP server isolated: {} {by}", isolated.join(", ")));
    }
    out
}

fn audit(m: &Map<String, Value>, event: &str) -> Option<Draft> {
    let (name, severity, summary, resolve) = match event {
        "write_failed" => (
            "failure",
            IncidentSeverity::Sev1,
            format!(
                "the audit trail cannot be written ({}); traffic is refused unless on_failure = fail_open",
                s(m, "reason").unwrap_or("?")
            ),
            false,
        ),
        "writable_again" => ("recovered", IncidentSeverity::Sev4, "the audit trail is writable again".to_owned(), true),
        _ => return None,
    };
    Some(Draft {
        event: format!("audit.{name}"),
        severity,
        summary,
        fields: pick(m, &["reason"]),
        dedup_key: "firebreak-audit-trail".into(),
        resolve,
    })
}

fn circuit(m: &Map<String, Value>, event: &str) -> Option<Draft> {
    let (name, severity, resolve) = match event {
        "opened" | "open" => ("opened", IncidentSeverity::Sev3, false),
        "half_open" | "half_opened" => ("half_open", IncidentSeverity::Sev4, false),
        "closed" | "close" => ("closed", IncidentSeverity::Sev4, true),
        _ => return None,
    };
    let target = ["target", "upstream", "server", "name"].iter().find_map(|k| s(m, k)).unwrap_or("?");
    Some(Draft {
        event: format!("circuit.{name}"),
        severity,
        summary: format!(
            "circuit {name} for {target}{}",
            s(m, "reason").or(s(m, "error_class")).map(|r| format!(": {r}")).unwrap_or_default()
        ),
        fields: pick(
            m,
            &[
                "target",
                "target_kind",
                "upstream",
                "server",
                "name",
                "reason",
                "error_class",
                "failure_rate",
                "consecutive_failures",
                "requests_in_window",
                "seq",
            ],
        ),
        dedup_key: format!("firebreak-circuit-{target}"),
        resolve,
    })
}

/// `block_user user=alice ttl=1h`: one switch action in a line (session ids digested).
pub fn action_line(a: &Value) -> String {
    let Some(o) = a.as_object() else { return a.to_string() };
    let mut line = o.get("action").and_then(Value::as_str).unwrap_or("?").to_owned();
    for (k, v) in o.iter().filter(|(k, v)| *k != "action" && !v.is_null()) {
        let v = match (k.as_str(), v) {
            ("session", Value::String(x)) if !x.starts_with("sha256:") => crate::audit::session_digest(x),
            (_, Value::String(x)) => x.clone(),
            (_, other) => other.to_string(),
        };
        line.push_str(&format!(" {k}={v}"));
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(v: Value) -> Map<String, Value> {
        match v {
            Value::Object(m) => m,
            _ => Map::new(),
        }
    }

    #[test]
    fn records_map_to_events() {
        let opened = map(
            json!({"kind": "incident", "event": "opened", "incident": "INC-00001", "severity": "SEV-1", "trigger": "credential_leakage_confirmed", "user": "alice", "tenant": "acme"}),
        );
        let d = classify(&opened);
        assert_eq!(d.len(), 1);
        assert_eq!(d[0].event, "incident.opened");
        assert_eq!(d[0].severity, IncidentSeverity::Sev1);
        assert_eq!(d[0].dedup_key, "firebreak-INC-00001");
        assert!(d[0].summary.contains("alice (tenant acme)"));
        let resolved =
            map(json!({"kind": "incident", "event": "resolved", "incident": "INC-00001", "severity": "SEV-1"}));
        assert!(classify(&resolved)[0].resolve);
        assert!(
            classify(&map(json!({"kind": "incident", "event": "awaiting_operator", "incident": "INC-1"}))).is_empty()
        );

        let batch = map(json!({"kind": "switch", "after_version": 7, "actor": "ops", "actions": [
            {"action": "set_level", "level": "lockdown"}, {"action": "safe_mode", "enabled": true},
            {"action": "isolate_server", "server": "srv"}, {"action": "block_user", "user": "bob"}]}));
        let events: Vec<String> = classify(&batch).into_iter().map(|d| d.event).collect();
        assert_eq!(events, ["switch.lockdown", "switch.safe_mode", "switch.isolate_server"]);
        let calm = map(
            json!({"kind": "switch", "actions": [{"action": "set_level", "level": "elevated"}, {"action": "safe_mode", "enabled": false}]}),
        );
        assert!(classify(&calm).is_empty(), "only lockdown, safe mode on and isolation alert");

        let failed = map(json!({"kind": "audit", "event": "write_failed", "reason": "disk full"}));
        assert_eq!(classify(&failed)[0].event, "audit.failure");
        let back = map(json!({"kind": "audit", "event": "writable_again"}));
        assert!(classify(&back)[0].resolve);
        // As the breakers write them (`circuit::State::event`).
        let open = map(
            json!({"kind": "circuit", "event": "opened", "target": "openai", "target_kind": "upstream", "reason": "5 consecutive failures"}),
        );
        let d = &classify(&open)[0];
        assert_eq!(
            (d.event.as_str(), d.dedup_key.as_str(), d.resolve),
            ("circuit.opened", "firebreak-circuit-openai", false)
        );
        assert_eq!(d.summary, "circuit opened for openai: 5 consecutive failures");
        let half = map(json!({"kind": "circuit", "event": "half_open", "target": "openai"}));
        assert_eq!(classify(&half)[0].event, "circuit.half_open");
        let closed = map(json!({"kind": "circuit", "event": "closed", "target": "openai"}));
        let d = &classify(&closed)[0];
        assert!(d.resolve && d.dedup_key == "firebreak-circuit-openai", "closing resolves the opening's page");
        assert!(classify(&map(json!({"kind": "request"}))).is_empty());
    }

    #[test]
    fn action_lines_never_carry_a_raw_session_id() {
        let a = json!({"action": "terminate_session", "session": "s-secret-1"});
        let line = action_line(&a);
        assert!(!line.contains("s-secret-1"), "{line}");
        assert!(line.starts_with("terminate_session session=sha256:"));
        assert_eq!(
            action_line(&json!({"action": "block_user", "user": "alice", "ttl": null})),
            "block_user user=alice"
        );
    }
}
