//! The console's pages, server-rendered with maud (every interpolation HTML-escaped). No inline
//! script or style: behaviour is in `assets/console.js`, looks in `assets/console.css`, and data the
//! script needs is in `data-*` attributes and `<meta>` tags.

use std::collections::BTreeMap;

use maud::{html, Markup, DOCTYPE};
use serde_json::{json, Value};

use super::audit::AuditQuery;
use super::session::Session;
use super::who::Role;
use crate::control::Admin;

/// Decisions shown on the Now page before the stream adds more.
const RECENT_DECISIONS: usize = 20;

fn layout(s: Option<&Session>, title: &str, active: &str, version: Option<u64>, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                meta name="referrer" content="no-referrer";
                @if let Some(s) = s {
                    meta name="csrf-token" content=(s.csrf);
                    meta name="role" content=(s.identity.role.as_str());
                }
                @if let Some(v) = version {
                    meta name="switch-version" content=(v);
                }
                title { (title) " · firebreak console" }
                link rel="icon" href="data:,";
                link rel="stylesheet" href="/console/assets/console.css";
                script src="/console/assets/console.js" defer {}
            }
            body {
                header.top {
                    a.brand href="/console/now" { "firebreak" }
                    @if let Some(s) = s {
                        nav {
                            @for (href, name) in [("/console/now", "Now"), ("/console/act", "Act"), ("/console/incidents", "Incidents"), ("/console/tools", "Tools"), ("/console/audit", "Audit")] {
                                a href=(href) class=[(active == name).then_some("active")] { (name) }
                            }
                        }
                        div.who {
                            span #whoami { (s.identity.id) " · " (s.identity.role.as_str()) }
                            span.meta { " (" (s.method) " login, " (s.remaining() / 60) " min left)" }
                            form method="post" action="/console/logout" {
                                input type="hidden" name="csrf" value=(s.csrf);
                                button #logout type="submit" { "Log out" }
                            }
                        }
                    }
                }
                main { (body) }
            }
        }
    }
}

/// The login page. `cert`: the verified client certificate on this connection, if any.
pub fn login(cert: Option<&str>, problem: Option<&str>) -> Markup {
    layout(
        None,
        "Log in",
        "",
        None,
        html! {
            section.card.login {
                h1 { "Log in" }
                @if let Some(p) = problem { p.problem role="alert" { (p) } }
                form #login method="post" action="/console/login" {
                    label for="token" { "Admin token" }
                    input #token type="password" name="token" autocomplete="off" required;
                    button type="submit" { "Log in" }
                }
                @if let Some(c) = cert {
                    form method="post" action="/console/login" {
                        input type="hidden" name="method" value="certificate";
                        button type="submit" { "Log in as " (c) " (client certificate)" }
                    }
                }
                p.hint { "The token is sent once, over this form; the console keeps a session cookie, never the token." }
            }
        },
    )
}

/// A page saying something is not there.
pub fn not_found(s: &Session, what: &str) -> Markup {
    layout(Some(s), "Not found", "", None, html! { section.card { p.problem { (what) } } })
}

fn entries<T>(title: &str, id: &str, m: &BTreeMap<String, T>, show: impl Fn(&String) -> String) -> Markup
where
    T: serde::Serialize,
{
    html! {
        section.card id=(id) {
            h2 { (title) " " span.count { (m.len()) } }
            @if m.is_empty() { p.empty { "none" } } @else {
                ul.entries {
                    @for (k, v) in m {
                        @let v = serde_json::to_value(v).unwrap_or(Value::Null);
                        li {
                            code { (show(k)) }
                            @if let Some(r) = v.get("reason").and_then(Value::as_str) { " — " (r) }
                            @if let Some(a) = v.get("actor").and_then(Value::as_str) { span.meta { " by " (a) } }
                            @if let Some(e) = v.get("expires").and_then(Value::as_str) { span.meta { " until " (e) } }
                        }
                    }
                }
            }
        }
    }
}

/// One decision row (the same shape the script renders from the stream).
fn decision_row(r: &Value) -> Markup {
    let f =
        |k: &str| r.get(k).map(|v| v.as_str().map(str::to_owned).unwrap_or_else(|| v.to_string())).unwrap_or_default();
    let rules: Vec<String> = r
        .get("decisions")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .map(|d| {
                    format!(
                        "{} {}",
                        d.get("action").and_then(Value::as_str).unwrap_or(""),
                        d.get("rule").and_then(Value::as_str).unwrap_or("")
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    html! {
        tr {
            td { (f("seq")) }
            td { (f("time")) }
            td { (f("kind")) }
            td { (f("status")) }
            td { (f("user")) }
            td { (f("tenant")) }
            td { (rules.join(", ")) }
        }
    }
}

/// Now: the state at a glance, live rates and decisions.
pub async fn now(a: &Admin, s: &Session) -> Markup {
    let snap = a.gw.state.load();
    let open = crate::gateway::incidents::list(&a.gw, true).await.incidents;
    let mut by_sev: BTreeMap<&str, usize> = ["SEV-1", "SEV-2", "SEV-3", "SEV-4"].into_iter().map(|k| (k, 0)).collect();
    for i in &open {
        *by_sev.entry(i.severity.as_str()).or_default() += 1;
    }
    let path = a.gw.policy().storage.audit_file.clone();
    let recent = tokio::task::spawn_blocking(move || {
        crate::audit::read_matching(&path, None, RECENT_DECISIONS, |r| {
            r.get("kind").and_then(Value::as_str) == Some("request")
        })
    })
    .await
    .ok()
    .and_then(Result::ok)
    .unwrap_or_default();
    // Upstream and MCP server health (`GET /admin/v1/circuits`), as the API shows it.
    let circuits: Vec<Value> =
        a.gw.circuits.status(&a.gw.policy()).iter().filter_map(|c| serde_json::to_value(c).ok()).collect();
    let terminated: BTreeMap<String, _> =
        snap.terminated_sessions.iter().map(|(k, v)| (crate::audit::session_digest(k), v.clone())).collect();
    let body = html! {
        div.grid {
            section.card.big id="level" data-level=(snap.level.as_str()) {
                h2 { "Level" }
                p.value { (snap.level.as_str()) }
            }
            section.card.big id="safe-mode" {
                h2 { "Safe mode" }
                p.value { @if snap.safe_mode { "on" } @else { "off" } }
            }
            section.card.big id="version" {
                h2 { "Switch version" }
                p.value { (snap.version) }
                @if let Some(u) = &snap.updated_at { p.meta { "changed " (u) } }
            }
            section.card.big id="rates" {
                h2 { "Live rates" }
                p.value { span #rate-requests { "…" } " req/s" }
                p.meta { span #rate-blocks { "…" } " blocks/s · " span #rate-decisions { "…" } " decisions/s" }
            }
        }
        section.card id="open-incidents" {
            h2 { "Open incidents " span.count { (open.len()) } }
            p.sev {
                @for (sev, n) in &by_sev { span class=(format!("sev sev{}", &sev[4..])) { (sev) ": " (n) } " " }
            }
            @if !open.is_empty() {
                ul.entries {
                    @for i in &open {
                        li { a href=(format!("/console/incidents/{}", i.id)) { (i.id) } " " span class=(format!("sev sev{}", &i.severity.as_str()[4..])) { (i.severity.as_str()) } " " (i.trigger) }
                    }
                }
            }
        }
        div.grid {
            (entries("Blocked users", "blocked-users", &snap.blocked_users, String::clone))
            (entries("Blocked tenants", "blocked-tenants", &snap.blocked_tenants, String::clone))
            (entries("Revoked keys", "revoked-keys", &snap.revoked_keys, String::clone))
            (entries("Terminated sessions", "terminated-sessions", &terminated, String::clone))
            (entries("Isolated MCP servers", "isolated-servers", &snap.isolated_servers, String::clone))
            (entries("Frozen MCP servers", "frozen-servers", &snap.frozen_servers, String::clone))
            (entries("Disabled tools", "disabled-tools", &snap.disabled_tools, String::clone))
            (entries("Disabled endpoints", "disabled-endpoints", &snap.disabled_endpoints, String::clone))
            (entries("Blocked egress", "blocked-egress", &snap.blocked_egress, String::clone))
            (entries("Rate-limited users", "limited-users", &snap.limited_users, String::clone))
        }
        section.card id="circuits" {
            h2 { "Circuit breakers " span.count { (circuits.iter().filter(|c| c["enabled"] == true).count()) } }
            @if circuits.iter().all(|c| c["enabled"] != true) { p.empty { "no breaker configured ([circuit])" } } @else {
                div.scroll { table {
                    thead { tr { th { "target" } th { "state" } th { "failure rate" } th { "consecutive failures" } th { "last error" } th { "in state" } } }
                    tbody {
                        @for c in circuits.iter().filter(|c| c["enabled"] == true) {
                            tr data-state=(c["state"].as_str().unwrap_or("")) {
                                td { (c["kind"].as_str().unwrap_or("")) " " code { (c["name"].as_str().unwrap_or("")) } }
                                td { (c["state"].as_str().unwrap_or("")) }
                                td { (c["failure_rate"].as_f64().map(|r| format!("{:.0}%", r * 100.0)).unwrap_or_default()) }
                                td { (c["consecutive_failures"].as_u64().unwrap_or(0)) }
                                td { (c["last_error"].as_str().unwrap_or("—")) }
                                td { (c["time_in_state_ms"].as_u64().map(|ms| format!("{} s", ms / 1000)).unwrap_or_default()) }
                            }
                        }
                    }
                } }
            }
        }
        section.card id="prompts" {
            h2 { "Managed prompts " span.count { (snap.prompts.len()) } }
            @if snap.prompts.is_empty() { p.empty { "none" } } @else {
                table {
                    thead { tr { th { "prompt" } th { "live version" } th { "canary generation" } th { "rotations" } } }
                    tbody {
                        @for (id, p) in &snap.prompts {
                            tr { td { (id) } td { (serde_json::to_value(p.live).ok().and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default()) } td { (p.canary_generation) } td { (p.history.len()) } }
                        }
                    }
                }
            }
        }
        section.card id="decisions-card" {
            h2 { "Latest decisions " span #stream-status.meta { "connecting…" } }
            div.scroll {
                table #decisions data-max=(RECENT_DECISIONS * 3) {
                    thead { tr { th { "seq" } th { "time" } th { "kind" } th { "status" } th { "user" } th { "tenant" } th { "decisions" } } }
                    tbody {
                        @for r in recent.iter().rev() { (decision_row(r)) }
                    }
                }
            }
        }
    };
    layout(Some(s), "Now", "Now", Some(snap.version), body)
}

/// One form of the Act page.
struct Act<'a> {
    id: &'a str,
    title: &'a str,
    /// `switches`, `rotate_prompt`, `rotate_canary` or `plan`.
    kind: &'a str,
    /// The switch action (`switches` only).
    action: &'a str,
    role: Role,
    fields: Vec<Field<'a>>,
}

enum Field<'a> {
    Text { name: &'a str, label: &'a str, required: bool, placeholder: &'a str },
    Select { name: &'a str, label: &'a str, options: Vec<(String, String)> },
}

fn field_markup(f: &Field<'_>, form: &str) -> Markup {
    match f {
        Field::Text { name, label, required, placeholder } => html! {
            label for=(format!("{form}-{name}")) { (label) }
            input id=(format!("{form}-{name}")) type="text" name=(name) required[*required] placeholder=(placeholder) autocomplete="off";
        },
        Field::Select { name, label, options } => html! {
            label for=(format!("{form}-{name}")) { (label) }
            select id=(format!("{form}-{name}")) name=(name) {
                @for (v, l) in options { option value=(v) { (l) } }
            }
        },
    }
}

fn act_form(me: Role, a: &Act<'_>) -> Markup {
    html! {
        section.card.act id=(a.id) {
            h2 { (a.title) " " span.role { "needs " (a.role.as_str()) } }
            @if let Some(label) = a.fields.iter().find_map(|f| match f { Field::Select { label, options, .. } if options.is_empty() => Some(*label), _ => None }) {
                p.meta { "Nothing to choose: the policy names no " (label.to_lowercase()) "." }
            } @else if me >= a.role {
                form.act data-kind=(a.kind) data-action=(a.action) data-role=(a.role.as_str()) {
                    @for f in &a.fields { (field_markup(f, a.id)) }
                    label for=(format!("{}-reason", a.id)) { "Reason (recorded in the audit trail)" }
                    input id=(format!("{}-reason", a.id)) type="text" name="reason" required autocomplete="off";
                    button.review type="submit" { "Review…" }
                }
            } @else {
                p.meta { "Your role (" (me.as_str()) ") cannot do this." }
            }
        }
    }
}

fn ttl() -> Field<'static> {
    Field::Text { name: "ttl", label: "For (optional: 30m, 1h, 2d)", required: false, placeholder: "until lifted" }
}

fn text<'a>(name: &'a str, label: &'a str) -> Field<'a> {
    Field::Text { name, label, required: true, placeholder: "" }
}

fn confirm_panel() -> Markup {
    html! {
        section #confirm.card.confirm hidden {
            h2 { "Confirm" }
            p { "This is exactly what will be sent: " code #confirm-endpoint {} }
            pre #confirm-body {}
            p #confirm-role.meta {}
            div.buttons {
                button #confirm-apply type="button" { "Apply" }
                button #confirm-cancel.secondary type="button" { "Cancel" }
            }
        }
        section #result.card hidden role="status" {
            h2 #result-title {}
            p #result-text {}
            pre #result-body {}
        }
    }
}

/// Act: every switch, with a reason, a confirmation and the role it needs.
pub fn act(a: &Admin, s: &Session) -> Markup {
    let snap = a.gw.state.load();
    let policy = a.gw.policy();
    let me = s.identity.role;
    let opts = |it: Vec<String>| it.into_iter().map(|v| (v.clone(), v)).collect::<Vec<_>>();
    let levels = opts(["normal", "elevated", "critical", "lockdown"].iter().map(|s| s.to_string()).collect());
    let servers = opts(policy.mcp.servers.keys().cloned().collect());
    let prompts = opts(policy.managed_prompts.keys().cloned().collect());
    let plans = opts(policy.incidents.plans.keys().cloned().collect());
    let keys = opts(policy.key_ids.keys().cloned().collect());
    let sw = |id, title, action, fields| Act { id, title, kind: "switches", action, role: Role::Responder, fields };
    let forms = vec![
        sw(
            "set-level",
            "Set the level",
            "set_level",
            vec![Field::Select { name: "level", label: "Level", options: levels }],
        ),
        sw(
            "safe-mode",
            "Safe mode",
            "safe_mode",
            vec![Field::Select {
                name: "enabled",
                label: "Safe mode",
                options: vec![("true".into(), "on".into()), ("false".into(), "off".into())],
            }],
        ),
        sw("block-user", "Block a user", "block_user", vec![text("user", "User"), ttl()]),
        sw("unblock-user", "Unblock a user", "unblock_user", vec![text("user", "User")]),
        sw("block-tenant", "Block a tenant", "block_tenant", vec![text("tenant", "Tenant"), ttl()]),
        sw("unblock-tenant", "Unblock a tenant", "unblock_tenant", vec![text("tenant", "Tenant")]),
        sw(
            "revoke-key",
            "Revoke a virtual key",
            "revoke_key",
            vec![Field::Select { name: "key_id", label: "Key id", options: keys }],
        ),
        sw("terminate-session", "Terminate a session", "terminate_session", vec![text("session", "Session id"), ttl()]),
        sw(
            "isolate-server",
            "Isolate an MCP server",
            "isolate_server",
            vec![Field::Select { name: "server", label: "Server", options: servers.clone() }, ttl()],
        ),
        sw(
            "restore-server",
            "Restore an MCP server",
            "restore_server",
            vec![Field::Select { name: "server", label: "Server", options: servers }],
        ),
        sw("disable-tool", "Disable a tool", "disable_tool", vec![text("tool", "Tool name"), ttl()]),
        sw("enable-tool", "Re-enable a tool", "enable_tool", vec![text("tool", "Tool name")]),
        Act {
            id: "rotate-prompt",
            title: "Rotate a managed prompt",
            kind: "rotate_prompt",
            action: "",
            role: Role::Responder,
            fields: vec![Field::Select { name: "prompt", label: "Prompt", options: prompts.clone() }],
        },
        Act {
            id: "rotate-canary",
            title: "Rotate a canary",
            kind: "rotate_canary",
            action: "",
            role: Role::Responder,
            fields: vec![Field::Select { name: "prompt", label: "Prompt", options: prompts }],
        },
        Act {
            id: "run-plan",
            title: "Run a containment plan",
            kind: "plan",
            action: "",
            role: Role::Responder,
            fields: vec![
                Field::Select { name: "plan", label: "Plan", options: plans },
                Field::Text { name: "user", label: "User", required: false, placeholder: "" },
                Field::Text { name: "tenant", label: "Tenant", required: false, placeholder: "" },
                Field::Text { name: "session", label: "Session id", required: false, placeholder: "" },
            ],
        },
    ];
    let body = html! {
        p.meta { "Switch version " strong #act-version { (snap.version) } "; level " strong { (snap.level.as_str()) } ", safe mode " strong { @if snap.safe_mode { "on" } @else { "off" } } "." }
        (confirm_panel())
        section.card #pending-approvals data-me=(s.identity.id) data-can=(if me >= Role::Responder { "yes" } else { "no" }) {
            h2 { "Waiting for a second identity " span #pending-count.count { "…" } }
            p.meta { "Changes held by the two-person rule ([admin.require_second]): another identity whose role covers the change approves it before it expires." }
            div #pending-list {}
        }
        div.grid {
            @for f in &forms { (act_form(me, f)) }
        }
    };
    layout(Some(s), "Act", "Act", Some(snap.version), body)
}

/// Incidents: the list.
pub async fn incidents(a: &Admin, s: &Session) -> Markup {
    let list = crate::gateway::incidents::list(&a.gw, false).await.incidents;
    let body = html! {
        section.card {
            h1 { "Incidents " span.count { (list.len()) } }
            @if list.is_empty() { p.empty { "No incidents." } } @else {
                div.scroll { table #incidents {
                    thead { tr { th { "id" } th { "severity" } th { "trigger" } th { "status" } th { "principal" } th { "first seen" } th { "last seen" } th { "firings" } } }
                    tbody {
                        @for i in &list {
                            tr class=(format!("status-{}", status(i))) {
                                td { a href=(format!("/console/incidents/{}", i.id)) { (i.id) } }
                                td { span class=(format!("sev sev{}", &i.severity.as_str()[4..])) { (i.severity.as_str()) } }
                                td { (i.trigger) }
                                td { (status(i)) }
                                td { (principal(&i.principal)) }
                                td { (i.first_seen) }
                                td { (i.last_seen) }
                                td { (i.firings) }
                            }
                        }
                    }
                } }
            }
        }
    };
    layout(Some(s), "Incidents", "Incidents", None, body)
}

fn status(i: &crate::incident::Incident) -> &'static str {
    match i.status {
        crate::incident::Status::Open => "open",
        crate::incident::Status::Resolved => "resolved",
    }
}

fn principal(t: &crate::incident::Target) -> String {
    let mut parts = Vec::new();
    if let Some(u) = &t.user {
        parts.push(format!("user {u}"));
    }
    if let Some(u) = &t.tenant {
        parts.push(format!("tenant {u}"));
    }
    if let Some(u) = &t.session {
        parts.push(format!("session {}", crate::audit::session_digest(u)));
    }
    if let Some(u) = &t.key_id {
        parts.push(format!("key {u}"));
    }
    parts.join(", ")
}

/// One incident: principal, evidence, containment, checklist, timeline, resolve.
pub async fn incident(a: &Admin, s: &Session, id: &str) -> Option<Markup> {
    let i = crate::gateway::incidents::get(&a.gw, id).await?;
    let seqs: Vec<u64> = i.evidence.iter().filter_map(|e| e.audit_seq).collect();
    let path = a.gw.policy().storage.audit_file.clone();
    let iid = i.id.clone();
    let timeline = tokio::task::spawn_blocking(move || {
        crate::audit::read_matching(&path, None, 500, |r| {
            r.get("incident").and_then(Value::as_str) == Some(iid.as_str())
                || r.get("seq").and_then(Value::as_u64).is_some_and(|n| seqs.contains(&n))
        })
    })
    .await
    .ok()
    .and_then(Result::ok)
    .unwrap_or_default();
    let can = s.identity.role >= Role::Responder;
    let open = i.status == crate::incident::Status::Open;
    let body = html! {
        section.card #incident data-id=(i.id) {
            h1 { (i.id) " " span class=(format!("sev sev{}", &i.severity.as_str()[4..])) { (i.severity.as_str()) } " " span #incident-status class=(format!("status status-{}", status(&i))) { (status(&i)) } }
            dl {
                dt { "trigger" } dd { (i.trigger) }
                dt { "principal" } dd { (principal(&i.principal)) }
                @if let Some(srv) = &i.server { dt { "MCP server" } dd { (srv) } }
                dt { "first seen" } dd { (i.first_seen) }
                dt { "last seen" } dd { (i.last_seen) }
                dt { "firings" } dd { (i.firings) }
                @if let Some(r) = &i.resolved_at { dt { "resolved" } dd { (r) } }
            }
        }
        (confirm_panel())
        section.card #checklist {
            h2 { "Checklist" }
            ol.checklist {
                @for (n, step) in i.checklist.iter().enumerate() {
                    @let tick = i.ticked.iter().find(|t| t.step == n);
                    li {
                        label {
                            input type="checkbox" class="tick" data-step=(n) checked[tick.is_some()] disabled[!can || !open];
                            " " (step)
                        }
                        @if let Some(t) = tick { span.meta { " — " (t.actor) ", " (t.time) } }
                    }
                }
            }
            @if !can { p.meta { "Ticking needs the responder role." } }
        }
        section.card #evidence {
            h2 { "Evidence " span.count { (i.evidence.len()) } }
            div.scroll { table {
                thead { tr { th { "audit seq" } th { "request" } th { "rule" } th { "time" } } }
                tbody { @for e in &i.evidence { tr { td { (e.audit_seq.map(|n| n.to_string()).unwrap_or_default()) } td { (e.request_id.clone().unwrap_or_default()) } td { code { (e.rule) } } td { (e.time) } } } }
            } }
        }
        section.card #containment {
            h2 { "Containment" }
            @if i.actions.is_empty() { p.empty { "none" } }
            @for t in &i.actions {
                p { strong { (t.plan) } " by " (t.actor) " at " (t.time) @if let Some(v) = t.version { " → version " (v) } }
                pre { (serde_json::to_string_pretty(&t.actions).unwrap_or_default()) }
                @if !t.awaiting_operator.is_empty() {
                    p.meta { "Awaiting an operator:" }
                    pre { (serde_json::to_string_pretty(&t.awaiting_operator).unwrap_or_default()) }
                }
                @if let Some(e) = &t.error { p.problem { (e) } }
            }
        }
        section.card #timeline {
            h2 { "Timeline (audit trail)" }
            div.scroll { table {
                thead { tr { th { "seq" } th { "time" } th { "kind" } th { "event" } th { "actor" } th { "detail" } } }
                tbody {
                    @for r in &timeline {
                        @let g = |k: &str| r.get(k).map(|v| v.as_str().map(str::to_owned).unwrap_or_else(|| v.to_string())).unwrap_or_default();
                        tr { td { (g("seq")) } td { (g("time")) } td { (g("kind")) } td { (g("event")) } td { (g("actor")) }
                             td { (detail(r)) } }
                    }
                }
            } }
        }
        section.card #notes {
            h2 { "Notes" }
            @if i.notes.is_empty() { p.empty { "none" } }
            @for n in &i.notes { p { (n.text) span.meta { " — " (n.actor) ", " (n.time) } } }
            @if can && open {
                form #resolve.act data-kind="resolve" data-role="responder" data-incident=(i.id) {
                    label for="resolve-note" { "Resolution note (required)" }
                    input #resolve-note type="text" name="note" required autocomplete="off";
                    button.review type="submit" { "Resolve…" }
                }
            }
        }
    };
    Some(layout(Some(s), &i.id, "Incidents", None, body))
}

/// A short description of an audit record for tables.
fn detail(r: &Value) -> String {
    let mut parts = Vec::new();
    for k in ["trigger", "severity", "reason", "note", "step_text", "user", "tenant", "status", "endpoint"] {
        if let Some(v) = r.get(k) {
            parts.push(format!("{k}: {}", v.as_str().map(str::to_owned).unwrap_or_else(|| v.to_string())));
        }
    }
    if let Some(d) = r.get("decisions").and_then(Value::as_array).filter(|d| !d.is_empty()) {
        let rules: Vec<&str> = d.iter().filter_map(|x| x.get("rule").and_then(Value::as_str)).collect();
        parts.push(format!("rules: {}", rules.join(", ")));
    }
    if let Some(a) = r.get("actions").and_then(Value::as_array) {
        let names: Vec<&str> = a.iter().filter_map(|x| x.get("action").and_then(Value::as_str)).collect();
        parts.push(format!("actions: {}", names.join(", ")));
    }
    parts.join(" · ")
}

/// Pending tool approvals: the definition, the pinned one and the diff; approve or reject by hash.
pub fn tools(a: &Admin, s: &Session) -> Markup {
    let snap = a.gw.state.load();
    let can = s.identity.role >= Role::Admin;
    let pending: Vec<(&String, &crate::state::ToolPin, &str)> =
        snap.tool_pins.iter().filter_map(|(k, p)| p.pending.as_deref().map(|h| (k, p, h))).collect();
    let body = html! {
        (confirm_panel())
        section.card {
            h1 { "Pending tool approvals " span.count { (pending.len()) } }
            p.meta { "Approving or rejecting needs the admin role; the hash you reviewed is sent, so a definition that changed since is refused (409)." }
            @if pending.is_empty() { p.empty { "No tool definition is waiting." } }
        }
        @for (key, pin, hash) in &pending {
            @let (server, tool) = key.split_once('/').unwrap_or((key.as_str(), ""));
            @let diff = pin.pending_definition.as_ref().map(|d| crate::mcp::tools::definition_diff(pin.definition.as_ref(), d)).unwrap_or_default();
            section.card.tool data-tool=(key) {
                h2 { code { (key) } " " span.meta { (pin.pending_reason.as_deref().unwrap_or("mcp.tool_changed")) } }
                dl {
                    dt { "pending hash" } dd { code.hash { (hash) } }
                    dt { "seen since" } dd { (pin.pending_since.clone().unwrap_or_default()) }
                    dt { "pinned hash" } dd { code { (pin.hash.clone().unwrap_or_else(|| "none".into())) } }
                }
                h3 { "Diff against the pinned definition" }
                pre.diff {
                    @for line in &diff {
                        span class=(if line.starts_with('+') { "add" } else if line.starts_with('-') { "del" } else { "ctx" }) { (line) "\n" }
                    }
                }
                details {
                    summary { "Full pending definition" }
                    pre { (pin.pending_definition.as_ref().map(|d| serde_json::to_string_pretty(d).unwrap_or_default()).unwrap_or_default()) }
                }
                details {
                    summary { "Pinned definition" }
                    pre { (pin.definition.as_ref().map(|d| serde_json::to_string_pretty(d).unwrap_or_default()).unwrap_or_else(|| "none".into())) }
                }
                @if can {
                    @for (action, label) in [("approve_tool", "Approve…"), ("reject_tool", "Reject…")] {
                        form.act data-kind="switches" data-action=(action) data-role="admin" {
                            input type="hidden" name="server" value=(server);
                            input type="hidden" name="tool" value=(tool);
                            input type="hidden" name="hash" value=(hash);
                            label { "Reason" input type="text" name="reason" required autocomplete="off"; }
                            button.review type="submit" { (label) }
                        }
                    }
                } @else {
                    p.meta { "Your role (" (s.identity.role.as_str()) ") cannot approve tools." }
                }
            }
        }
    };
    layout(Some(s), "Tools", "Tools", Some(snap.version), body)
}

/// Audit search, and the trail's verification status.
pub async fn audit(a: &Admin, s: &Session, q: &AuditQuery) -> Markup {
    let path = a.gw.policy().storage.audit_file.clone();
    let run = q.filtered() || q.since.is_some() || q.until.is_some();
    let qq = q.clone();
    let records = if run {
        tokio::task::spawn_blocking(move || {
            crate::audit::read_matching(&path, qq.since, qq.limit.min(500), |r| qq.matches(r))
        })
        .await
        .ok()
        .and_then(Result::ok)
        .unwrap_or_default()
    } else {
        Vec::new()
    };
    let v = |o: &Option<String>| o.clone().unwrap_or_default();
    let body = html! {
        section.card #verify {
            h2 { "Audit chain " span #verify-status.meta { "checking…" } }
            p #verify-detail.meta {}
        }
        section.card {
            h1 { "Audit search" }
            form #audit-search method="get" action="/console/audit" {
                div.grid.fields {
                    div { label for="q-user" { "User" } input #q-user type="text" name="user" value=(v(&q.user)); }
                    div { label for="q-tenant" { "Tenant" } input #q-tenant type="text" name="tenant" value=(v(&q.tenant)); }
                    div { label for="q-session" { "Session (sha256: digest)" } input #q-session type="text" name="session" value=(v(&q.session)); }
                    div { label for="q-rule" { "Rule (prefix*)" } input #q-rule type="text" name="rule" value=(v(&q.rule)); }
                    div { label for="q-kind" { "Kind" } input #q-kind type="text" name="kind" value=(v(&q.kind)) placeholder="request, switch, incident…"; }
                    div { label for="q-since" { "Since" } input #q-since type="text" name="since" value=(q.since_text) placeholder="1h or RFC 3339"; }
                    div { label for="q-until" { "Until" } input #q-until type="text" name="until" value=(q.until_text) placeholder="RFC 3339"; }
                }
                button type="submit" { "Search" }
            }
        }
        @if run {
            section.card #audit-results {
                h2 { "Records " span.count { (records.len()) } }
                div.scroll { table {
                    thead { tr { th { "seq" } th { "time" } th { "kind" } th { "event" } th { "actor" } th { "detail" } } }
                    tbody {
                        @for r in records.iter().rev() {
                            @let g = |k: &str| r.get(k).map(|v| v.as_str().map(str::to_owned).unwrap_or_else(|| v.to_string())).unwrap_or_default();
                            tr { td { (g("seq")) } td { (g("time")) } td { (g("kind")) } td { (g("event")) } td { (g("actor")) } td { (detail(r)) } }
                        }
                    }
                } }
            }
        }
    };
    layout(Some(s), "Audit", "Audit", None, body)
}

/// The verification report of the live trail as JSON (for the Audit page).
pub fn verify_json(r: &Result<crate::audit::VerifyReport, String>) -> Value {
    match r {
        Ok(rep) => json!({"ok": rep.proven(), "summary": rep.summary(), "records": rep.records}),
        Err(e) => json!({"ok": false, "error": e}),
    }
}
