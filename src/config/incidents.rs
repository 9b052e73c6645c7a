//! Triggers and containment plans as the policy declares them (`[triggers.<name>]`, `[plans.<name>]`),
//! with the defaults of the incident playbooks.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::action::{principal_scoped, Action};
use super::raw::{RawIncidents, RawPlan, RawTrigger};
use super::validate::{Problems, Seg};

/// Incident severity, SEV-1 (worst) to SEV-4.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum IncidentSeverity {
    /// Confirmed compromise: contain everything the plan names, now.
    #[serde(rename = "SEV-1")]
    Sev1,
    /// Serious, scoped to a principal.
    #[serde(rename = "SEV-2")]
    Sev2,
    /// Suspicious: slow the principal down.
    #[serde(rename = "SEV-3")]
    Sev3,
    /// Noteworthy: record only.
    #[serde(rename = "SEV-4")]
    Sev4,
}

impl IncidentSeverity {
    /// `SEV-1`..`SEV-4`.
    pub fn as_str(self) -> &'static str {
        match self {
            IncidentSeverity::Sev1 => "SEV-1",
            IncidentSeverity::Sev2 => "SEV-2",
            IncidentSeverity::Sev3 => "SEV-3",
            IncidentSeverity::Sev4 => "SEV-4",
        }
    }

    /// Accepts `SEV-1`, `sev1`, `1`.
    pub fn parse(s: &str) -> Option<IncidentSeverity> {
        match s.trim().to_ascii_lowercase().replace(['-', '_', ' '], "").trim_start_matches("sev") {
            "1" => Some(IncidentSeverity::Sev1),
            "2" => Some(IncidentSeverity::Sev2),
            "3" => Some(IncidentSeverity::Sev3),
            "4" => Some(IncidentSeverity::Sev4),
            _ => None,
        }
    }

    /// The default plan of this severity (`sev1`..`sev4`).
    pub fn plan(self) -> &'static str {
        match self {
            IncidentSeverity::Sev1 => "sev1",
            IncidentSeverity::Sev2 => "sev2",
            IncidentSeverity::Sev3 => "sev3",
            IncidentSeverity::Sev4 => "sev4",
        }
    }
}

/// One detection trigger.
#[derive(Debug, Clone, Serialize)]
pub struct Trigger {
    /// Name (`credential_leakage_confirmed`, …).
    pub name: String,
    /// Severity of the incidents it opens.
    pub severity: IncidentSeverity,
    /// Fires when the count in the window goes above this (0: on the first event).
    pub threshold: u64,
    /// Sliding window.
    #[serde(with = "humantime_serde_secs")]
    pub window: Duration,
    /// Whether the plan runs automatically when an incident opens.
    pub auto: bool,
    /// The plan to run.
    pub plan: String,
    /// Opt-in: one principal's event runs the plan's gateway-wide steps without corroboration.
    pub global_without_corroboration: bool,
}

mod humantime_serde_secs {
    pub fn serialize<S: serde::Serializer>(d: &std::time::Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&humantime::format_duration(*d).to_string())
    }
}

/// A containment plan: switch-action templates applied as one batch.
#[derive(Debug, Clone, Serialize)]
pub struct Plan {
    /// Templates; strings may name `{user}`, `{tenant}`, `{session}`, `{key_id}`, and `{sessions}`
    /// (the step is repeated for each recent session of the user).
    pub actions: Vec<Value>,
    /// The plan marks provider credentials for rotation (recorded; an operator rotates).
    pub rotate_credentials: bool,
    /// What it does, for people.
    pub description: String,
}

/// The principal a plan is run for.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Target {
    /// User id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// Tenant id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
    /// Session id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session: Option<String>,
    /// Virtual key id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_id: Option<String>,
    /// Every recent session of the user (filled in when a plan runs, for `{sessions}`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sessions: Vec<String>,
}

impl Plan {
    /// The plan's actions for `target`. A template that names a field the target lacks (a session
    /// for a request without one) is left out: containment never widens to "everyone". A template
    /// naming `{sessions}` becomes one action per session in `target.sessions` (none when empty).
    pub fn actions_for(&self, target: &Target) -> Result<Vec<Action>, String> {
        let mut out = Vec::new();
        for (i, t) in self.actions.iter().enumerate() {
            let each: Vec<Option<&str>> =
                if names_sessions(t) { target.sessions.iter().map(|s| Some(s.as_str())).collect() } else { vec![None] };
            for one in each {
                let mut v = t.clone();
                let mut missing = false;
                substitute(&mut v, target, one, &mut missing);
                if !missing {
                    out.push(serde_json::from_value(v).map_err(|e| format!("plan action {i}: {e}"))?);
                }
            }
        }
        Ok(out)
    }

    /// The steps that act on everyone (safe mode, level, every tool, endpoints, egress, servers).
    pub fn global_steps(&self) -> Vec<String> {
        self.actions
            .iter()
            .map(|t| t.get("action").and_then(Value::as_str).unwrap_or(""))
            .filter(|a| !principal_scoped(a))
            .map(str::to_owned)
            .collect()
    }
}

fn names_sessions(v: &Value) -> bool {
    match v {
        Value::String(s) => s.contains("{sessions}"),
        Value::Array(a) => a.iter().any(names_sessions),
        Value::Object(m) => m.values().any(names_sessions),
        _ => false,
    }
}

/// Fills the templates of `v`; `session` is the value of `{sessions}` for this copy.
fn substitute(v: &mut Value, t: &Target, session: Option<&str>, missing: &mut bool) {
    match v {
        Value::String(s) if s.contains('{') => {
            let one = session.map(str::to_owned);
            for (name, val) in [
                ("{user}", &t.user),
                ("{tenant}", &t.tenant),
                ("{sessions}", &one),
                ("{session}", &t.session),
                ("{key_id}", &t.key_id),
            ] {
                if s.contains(name) {
                    match val {
                        Some(x) => *s = s.replace(name, x),
                        None => *missing = true,
                    }
                }
            }
        }
        Value::Array(a) => a.iter_mut().for_each(|x| substitute(x, t, session, missing)),
        Value::Object(m) => m.values_mut().for_each(|x| substitute(x, t, session, missing)),
        _ => {}
    }
}

/// Default of `[incidents] corroboration`: distinct tenants.
pub const CORROBORATION: u32 = 3;

/// The compiled `[incidents]`, `[triggers]` and `[plans]`.
#[derive(Debug, Clone, Serialize)]
pub struct IncidentPolicy {
    /// `[incidents] auto_contain`: false is monitor mode (incidents open, no plan runs by itself).
    pub auto_contain: bool,
    /// `[incidents] corroboration`: an automatic plan's gateway-wide steps run only once the trigger
    /// has fired for this many distinct tenants within its window (its principal-scoped steps run
    /// at once).
    pub corroboration: u32,
    /// `[incidents] canary_corroborates`: a gateway canary in output is evidence enough by itself.
    pub canary_corroborates: bool,
    /// Accepted but risky settings, for `firebreak check` to print.
    pub warnings: Vec<String>,
    /// Enabled triggers by name.
    pub triggers: BTreeMap<String, Trigger>,
    /// Plans by name.
    pub plans: BTreeMap<String, Plan>,
}

/// Built-in triggers: (name, severity, threshold, window, auto).
pub const TRIGGERS: &[(&str, IncidentSeverity, u64, u64, bool)] = &[
    ("credential_leakage_confirmed", IncidentSeverity::Sev1, 0, 3600, true),
    ("unauthorized_tool_execution", IncidentSeverity::Sev1, 0, 3600, true),
    ("bulk_data_extraction", IncidentSeverity::Sev1, 100, 3600, false),
    ("sustained_injection_campaign", IncidentSeverity::Sev2, 50, 1800, false),
    ("system_prompt_exposure", IncidentSeverity::Sev2, 3, 3600, false),
    ("cross_user_data_leakage", IncidentSeverity::Sev2, 0, 3600, true),
    ("tool_definition_changed", IncidentSeverity::Sev2, 0, 3600, false),
    ("partial_prompt_extraction", IncidentSeverity::Sev3, 0, 3600, false),
    ("anomalous_probing", IncidentSeverity::Sev4, 3, 3600, false),
];

fn default_plans() -> BTreeMap<String, Plan> {
    use serde_json::json;
    let plan = |actions: Vec<Value>, rotate: bool, d: &str| Plan {
        actions,
        rotate_credentials: rotate,
        description: d.to_owned(),
    };
    BTreeMap::from([
        (
            "sev1".to_owned(),
            plan(
                vec![
                    json!({"action": "block_user", "user": "{user}"}),
                    json!({"action": "disable_tool", "tool": "*", "ttl": "24h"}),
                    json!({"action": "safe_mode", "enabled": true}),
                ],
                true,
                "block the user, disable every tool, enable safe mode, mark credentials for rotation",
            ),
        ),
        (
            "sev2".to_owned(),
            plan(
                vec![
                    json!({"action": "block_user", "user": "{user}", "ttl": "24h"}),
                    json!({"action": "limit_user", "user": "{user}", "requests_per_minute": 10, "ttl": "24h"}),
                    json!({"action": "terminate_session", "session": "{sessions}"}),
                ],
                false,
                "block the user for 24 h, rate-limit them after, terminate their recent sessions",
            ),
        ),
        (
            "sev3".to_owned(),
            plan(
                vec![json!({"action": "limit_user", "user": "{user}", "requests_per_minute": 10, "ttl": "1h"})],
                false,
                "rate-limit the user to 10 requests per minute for an hour",
            ),
        ),
        ("sev4".to_owned(), plan(Vec::new(), false, "record only")),
    ])
}

impl Default for IncidentPolicy {
    fn default() -> Self {
        let mut problems = Problems::default();
        IncidentPolicy::compile(&RawIncidents::default(), &BTreeMap::new(), &BTreeMap::new(), &mut problems)
    }
}

impl IncidentPolicy {
    /// Defaults overridden by the policy; every problem is reported.
    pub(crate) fn compile(
        raw_incidents: &RawIncidents,
        raw_triggers: &BTreeMap<String, RawTrigger>,
        raw_plans: &BTreeMap<String, RawPlan>,
        problems: &mut Problems,
    ) -> IncidentPolicy {
        let plans = plans(raw_plans, problems);
        unknown_triggers(raw_triggers, problems);
        let mut triggers = BTreeMap::new();
        let mut warnings = Vec::new();
        for &defaults in TRIGGERS {
            if let Some(t) = trigger(defaults, raw_triggers.get(defaults.0), &plans, problems, &mut warnings) {
                triggers.insert(t.name.clone(), t);
            }
        }
        let corroboration = raw_incidents.corroboration.unwrap_or(CORROBORATION);
        if corroboration < 2 {
            problems.add(
                0,
                vec!["incidents".into(), "corroboration".into()],
                format!("corroboration = {corroboration} lets one tenant's event act on every tenant"),
                Some("write 2 or more; to opt one trigger in, set global_without_corroboration on it".into()),
            );
        }
        IncidentPolicy {
            auto_contain: raw_incidents.auto_contain.unwrap_or(true),
            corroboration,
            canary_corroborates: raw_incidents.canary_corroborates.unwrap_or(true),
            warnings,
            triggers,
            plans,
        }
    }
}

/// `[section.name.key]` (or `[section.name]` when `key` is empty).
fn at(section: &str, name: &str, key: &str) -> Vec<Seg> {
    let mut v: Vec<Seg> = vec![section.into(), name.into()];
    if !key.is_empty() {
        v.push(key.into());
    }
    v
}

/// The default plans, overridden or added to by `[plans.NAME]`; each action must be a switch action.
fn plans(raw_plans: &BTreeMap<String, RawPlan>, problems: &mut Problems) -> BTreeMap<String, Plan> {
    let mut plans = default_plans();
    for (name, p) in raw_plans {
        let plan = Plan {
            actions: p.actions.clone(),
            rotate_credentials: p.rotate_credentials,
            description: p.description.clone().unwrap_or_default(),
        };
        let probe = Target {
            user: Some("u".into()),
            tenant: Some("t".into()),
            session: Some("s".into()),
            key_id: None,
            sessions: vec!["s".into()],
        };
        // key_id templates are checked against the policy's keys when run, not here.
        let without_keys = Plan {
            actions: plan.actions.iter().filter(|a| !a.to_string().contains("{key_id}")).cloned().collect(),
            ..plan.clone()
        };
        if let Err(e) = without_keys.actions_for(&probe) {
            problems.add(
                0,
                at("plans", name, "actions"),
                format!("plan `{name}`: {e}"),
                Some("each action is a switch action, e.g. {action = \"block_user\", user = \"{user}\"}".into()),
            );
        }
        plans.insert(name.clone(), plan);
    }
    plans
}

/// `[triggers.NAME]` must name a built-in trigger.
fn unknown_triggers(raw_triggers: &BTreeMap<String, RawTrigger>, problems: &mut Problems) {
    let known: Vec<&str> = TRIGGERS.iter().map(|t| t.0).collect();
    for name in raw_triggers.keys() {
        if !known.contains(&name.as_str()) {
            problems.add(
                0,
                at("triggers", name, ""),
                format!("unknown trigger `{name}`"),
                Some(format!("triggers: {}", known.join(", "))),
            );
        }
    }
}

/// One built-in trigger (`defaults`, a [`TRIGGERS`] row) with its `[triggers.NAME]` table; `None`
/// when disabled. A risky accepted setting adds to `warnings`.
fn trigger(
    (name, severity, threshold, window, auto): (&str, IncidentSeverity, u64, u64, bool),
    raw: Option<&RawTrigger>,
    plans: &BTreeMap<String, Plan>,
    problems: &mut Problems,
    warnings: &mut Vec<String>,
) -> Option<Trigger> {
    let r = raw.map_or_else(RawTrigger::default, |r| RawTrigger {
        enabled: r.enabled,
        threshold: r.threshold,
        window: r.window.clone(),
        severity: r.severity.clone(),
        auto: r.auto,
        plan: r.plan.clone(),
        global_without_corroboration: r.global_without_corroboration,
    });
    if r.enabled == Some(false) {
        return None;
    }
    let severity = match r.severity.as_deref().map(|s| (s, IncidentSeverity::parse(s))) {
        None => severity,
        Some((_, Some(s))) => s,
        Some((s, None)) => {
            problems.add(
                0,
                at("triggers", name, "severity"),
                format!("unknown severity `{s}`"),
                Some("write SEV-1, SEV-2, SEV-3 or SEV-4".into()),
            );
            severity
        }
    };
    let window = match r.window.as_deref().map(|w| (w, humantime::parse_duration(w))) {
        None => Duration::from_secs(window),
        Some((_, Ok(d))) if !d.is_zero() && d <= Duration::from_secs(7 * 86400) => d,
        Some((w, _)) => {
            problems.add(
                0,
                at("triggers", name, "window"),
                format!("`{w}` is not a window between 1s and 7d"),
                Some("write e.g. 30m, 1h".into()),
            );
            Duration::from_secs(window)
        }
    };
    let plan = r.plan.clone().unwrap_or_else(|| severity.plan().to_owned());
    match plans.get(&plan) {
        None => problems.add(
            0,
            at("triggers", name, "plan"),
            format!("unknown plan `{plan}`"),
            Some(format!("plans: {}", plans.keys().cloned().collect::<Vec<_>>().join(", "))),
        ),
        Some(p) if severity != IncidentSeverity::Sev1 && r.auto.unwrap_or(auto) && !p.global_steps().is_empty() => {
            problems.add(
                0,
                at("triggers", name, "plan"),
                format!(
                    "trigger `{name}` ({}) runs plan `{plan}` automatically, which acts on everyone ({})",
                    severity.as_str(),
                    p.global_steps().join(", ")
                ),
                Some("below SEV-1 an automatic plan may only act on the offending principal".into()),
            )
        }
        Some(_) => {}
    }
    let global_without_corroboration = r.global_without_corroboration.unwrap_or(false);
    let global = plans.get(&plan).map(Plan::global_steps).unwrap_or_default();
    if global_without_corroboration && r.auto.unwrap_or(auto) && !global.is_empty() {
        warnings.push(format!(
            "[triggers.{name}] global_without_corroboration = true: one principal's event runs \
             plan `{plan}`'s gateway-wide steps ({}) for everyone — any key (or MCP server) \
             that can cause this trigger can take the whole gateway down",
            global.join(", ")
        ));
    }
    Some(Trigger {
        name: name.to_owned(),
        severity,
        threshold: r.threshold.unwrap_or(threshold),
        window,
        auto: r.auto.unwrap_or(auto),
        plan,
        global_without_corroboration,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_compile_and_scope() {
        let p = IncidentPolicy::default();
        assert_eq!(p.triggers.len(), TRIGGERS.len());
        let t = Target { user: Some("alice".into()), tenant: Some("acme".into()), ..Target::default() };
        let sev2 = p.plans["sev2"].actions_for(&t).unwrap();
        // No session: the terminate_session step is left out rather than widened.
        assert_eq!(sev2.len(), 2);
        // `{sessions}`: one terminate_session per recent session of the user.
        let t = Target { sessions: vec!["s1".into(), "s2".into()], ..t };
        let sev2 = p.plans["sev2"].actions_for(&t).unwrap();
        assert_eq!(sev2.len(), 4);
        assert_eq!(
            sev2[2..],
            [
                Action::TerminateSession { session: "s1".into(), ttl: None },
                Action::TerminateSession { session: "s2".into(), ttl: None }
            ]
        );
        assert!(p.plans["sev3"].global_steps().is_empty());
        assert_eq!(p.plans["sev1"].global_steps(), vec!["disable_tool", "safe_mode"]);
        assert_eq!(IncidentSeverity::parse("sev-2"), Some(IncidentSeverity::Sev2));
        assert_eq!(IncidentSeverity::parse("SEV-4"), Some(IncidentSeverity::Sev4));
    }

    fn compiled(text: &str) -> (IncidentPolicy, Vec<(usize, String)>) {
        let raw = crate::config::compile::tests::raw(text);
        let mut p = Problems::default();
        let ip = IncidentPolicy::compile(&raw.incidents, &raw.triggers, &raw.plans, &mut p);
        let found = crate::config::compile::tests::located(p, text).into_iter().map(|l| (l.line, l.message)).collect();
        (ip, found)
    }

    #[test]
    fn triggers_and_plans_from_the_policy() {
        let text = "[triggers.bulk_data_extraction]\nthreshold = 5\nwindow = \"10m\"\nseverity = \"sev3\"\n\
                    [triggers.anomalous_probing]\nenabled = false\n\
                    [plans.quiet]\nactions = [{action = \"limit_user\", user = \"{user}\", requests_per_minute = 1}]\n\
                    [triggers.system_prompt_exposure]\nplan = \"quiet\"\nauto = true\n";
        let (ip, found) = compiled(text);
        assert!(found.is_empty(), "{found:?}");
        let b = &ip.triggers["bulk_data_extraction"];
        assert_eq!((b.threshold, b.window, b.severity), (5, Duration::from_secs(600), IncidentSeverity::Sev3));
        assert_eq!(b.plan, "sev3", "the plan follows the severity");
        assert!(!ip.triggers.contains_key("anomalous_probing"));
        assert!(ip.triggers["system_prompt_exposure"].auto);
        assert_eq!(ip.plans["quiet"].actions.len(), 1);
        assert_eq!((ip.corroboration, ip.auto_contain), (CORROBORATION, true));
    }

    #[test]
    fn bad_triggers_plans_and_corroboration_are_reported_at_their_keys() {
        let text = "[triggers.nope]\n\
                    [triggers.bulk_data_extraction]\nseverity = \"SEV-9\"\nwindow = \"9d\"\nplan = \"missing\"\n\
                    [triggers.partial_prompt_extraction]\nauto = true\nplan = \"sev1\"\n\
                    [plans.bad]\nactions = [{action = \"explode\"}]\n\
                    [incidents]\ncorroboration = 1\n";
        let (_, found) = compiled(text);
        let msgs: Vec<(usize, &str)> = found.iter().map(|(l, m)| (*l, m.as_str())).collect();
        assert_eq!(msgs[0], (1, "unknown trigger `nope`"));
        assert_eq!(msgs[1], (3, "unknown severity `SEV-9`"));
        assert_eq!(msgs[2], (4, "`9d` is not a window between 1s and 7d"));
        assert_eq!(msgs[3], (5, "unknown plan `missing`"));
        assert_eq!(
            msgs[4],
            (
                8,
                "trigger `partial_prompt_extraction` (SEV-3) runs plan `sev1` automatically, which acts on everyone \
                 (disable_tool, safe_mode)"
            )
        );
        assert_eq!(msgs[5].0, 10);
        assert!(msgs[5].1.starts_with("plan `bad`: plan action 0: "), "{msgs:?}");
        assert_eq!(msgs[6], (12, "corroboration = 1 lets one tenant's event act on every tenant"));
        assert_eq!(msgs.len(), 7, "{msgs:?}");
    }

    #[test]
    fn a_global_plan_without_corroboration_is_accepted_with_a_warning() {
        let text = "[triggers.credential_leakage_confirmed]\nglobal_without_corroboration = true\n";
        let (ip, found) = compiled(text);
        assert!(found.is_empty(), "{found:?}");
        assert_eq!(ip.warnings.len(), 1);
        assert!(ip.warnings[0].starts_with("[triggers.credential_leakage_confirmed] global_without_corroboration"));
        assert!(ip.triggers["credential_leakage_confirmed"].global_without_corroboration);
    }
}
