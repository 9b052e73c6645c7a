//! Incident automation: triggers over the facts of each finished request, incidents, and the
//! containment plans they run.
//!
//! The engine sees exactly what the audit trail sees. Wherever the request path, the stream pump or
//! the MCP gateway writes an audit record, it calls [`audited`] instead of `Audit::record`: the record
//! is written as before, and its facts (decision rule ids, redaction rule ids, injections, prompt
//! fragments, tool calls, MCP triggers, principal) are turned into signals. Signals feed triggers,
//! counted over sliding windows per principal ([`window`]); a trigger that fires opens an incident,
//! or joins the open one of the same trigger and principal. An `auto` trigger's plan is applied as
//! one atomic switch batch *before* the call returns, that is before the triggering response or
//! stream is complete — so the principal's next request already meets the containment.
//!
//! Blast radius: one principal's events can be caused at will by any key or MCP server, so an
//! automatic plan applies at once only its steps on that principal (block, revoke, terminate,
//! limit). Its gateway-wide steps wait, recorded as `awaiting_operator`, until the trigger is
//! corroborated: fired for `[incidents] corroboration` distinct tenants (or MCP servers) within its
//! window, or evidenced by a gateway canary rather than a pattern match, or opted in per trigger.
//!
//! Incidents are kept in `<state file stem>.incidents.json` (written atomically) and audited as
//! `kind: "incident"` records with `severity` and `trigger`. Nothing secret reaches them: rule ids
//! and request ids only.

pub mod checklist;
mod policy;
pub mod window;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

pub use policy::{IncidentPolicy, Plan, Severity, Target, Trigger, TRIGGERS};
use window::{Count, Windows};

use crate::audit::Record;
use crate::config::Policy;
use crate::inspect::rule::Category;
use crate::proxy::Gateway;
use crate::state::{Action, ApplyError, Batch};

/// Most evidence entries kept per incident (the count goes on).
const MAX_EVIDENCE: usize = 100;
/// Most principals tracked by the windows at once.
const WINDOW_CAPACITY: u64 = 200_000;
/// Corroboration windows: one per trigger.
const CORROBORATION_CAPACITY: u64 = 64;
/// Resolved incidents kept in the file (open ones are always kept).
const MAX_RESOLVED: usize = 1_000;
/// Most users whose recent sessions are remembered at once (least recently used forgotten).
const SESSION_USERS: u64 = 100_000;
/// Most recent sessions remembered per user.
const SESSIONS_PER_USER: usize = 16;
/// A session unused this long is forgotten (the default ttl of `terminate_session`).
const SESSION_IDLE: std::time::Duration = std::time::Duration::from_secs(24 * 3600);

/// Open or resolved.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Under investigation.
    Open,
    /// Closed by an operator.
    Resolved,
}

/// One piece of evidence: the audit record (and request) that made a trigger count.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Evidence {
    /// Audit record seq.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audit_seq: Option<u64>,
    /// Request id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    /// The rule id that counted (never the matched text).
    pub rule: String,
    /// When.
    pub time: String,
}

/// Containment applied for an incident.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Taken {
    /// Plan name.
    pub plan: String,
    /// Who ran it (`firebreak` for automatic plans).
    pub actor: String,
    /// When.
    pub time: String,
    /// The switch actions applied as one batch.
    pub actions: Vec<Action>,
    /// The switch version after the batch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<u64>,
    /// Credentials were marked for rotation.
    #[serde(default)]
    pub credentials_marked_for_rotation: bool,
    /// Why the batch failed, if it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The plan's gateway-wide steps, not applied: one principal's event is not enough to act on
    /// everyone. Recommended; an operator runs them (`firebreak admin contain`, switches), or they
    /// run by themselves once the trigger is corroborated.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub awaiting_operator: Vec<Action>,
    /// What corroborated the gateway-wide steps that were applied (`canary`, `3 tenants`, `opt-in`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub corroborated_by: Option<String>,
}

/// An operator's note.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Note {
    /// When.
    pub time: String,
    /// Who.
    pub actor: String,
    /// What.
    pub text: String,
}

/// A checklist step marked done.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Tick {
    /// Index into the incident's checklist.
    pub step: usize,
    /// Who.
    pub actor: String,
    /// When.
    pub time: String,
}

/// An incident.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Incident {
    /// `INC-00001`.
    pub id: String,
    /// Severity.
    pub severity: Severity,
    /// The trigger that opened it.
    pub trigger: String,
    /// Open or resolved.
    pub status: Status,
    /// The offending principal.
    pub principal: Target,
    /// MCP server, when the trigger concerns one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server: Option<String>,
    /// First and last time the trigger fired for it.
    pub first_seen: String,
    /// Last time.
    pub last_seen: String,
    /// How many times the trigger fired into it.
    pub firings: u64,
    /// Evidence (the first [`MAX_EVIDENCE`]).
    pub evidence: Vec<Evidence>,
    /// Containment applied.
    pub actions: Vec<Taken>,
    /// The investigation checklist of its kind.
    pub checklist: Vec<String>,
    /// The checklist steps done, by index into `checklist`, with who ticked them and when.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ticked: Vec<Tick>,
    /// Notes.
    #[serde(default)]
    pub notes: Vec<Note>,
    /// When it was resolved.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resolved_at: Option<String>,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct Book {
    next: u64,
    incidents: Vec<Incident>,
    /// Bumped on every snapshot taken for the file, so an older snapshot never overwrites a newer
    /// one (saves run off the request path and may finish out of order).
    #[serde(skip)]
    generation: u64,
}

/// Why a plan could not run.
#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    /// No such plan.
    #[error("unknown plan `{0}`; plans: {1}")]
    Unknown(String, String),
    /// A template did not make a valid action.
    #[error("plan `{0}`: {1}")]
    Template(String, String),
    /// The plan needs a principal.
    #[error("give at least a user, tenant or session to contain")]
    NoTarget,
    /// The batch was rejected or could not be persisted (nothing changed).
    #[error(transparent)]
    Apply(#[from] ApplyError),
}

/// Why the incident file could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum IncidentError {
    /// Reading or parsing.
    #[error("incident file {0}: {1}; fix or move it aside")]
    Load(PathBuf, String),
    /// Writing.
    #[error("cannot write incident file {0}: {1}")]
    Write(PathBuf, String),
    /// No such incident.
    #[error("no incident `{0}`")]
    NotFound(String),
    /// No such checklist step.
    #[error("incident `{0}` has no checklist step {1} (it has {2}, numbered from 0)")]
    NoStep(String, usize, usize),
}

/// The incident engine of a running gateway.
#[derive(Debug)]
pub struct Engine {
    windows: Windows,
    /// Per trigger: the distinct tenants it fired for within its window (corroboration).
    tenants: Windows,
    /// User → the session ids of their recent requests, newest last (for `{sessions}` in plans).
    sessions: moka::sync::Cache<String, Arc<std::sync::Mutex<std::collections::VecDeque<String>>>>,
    book: Arc<tokio::sync::Mutex<Book>>,
    file: Arc<IncidentFile>,
}

/// The incident file and the generation of the last snapshot written to it.
#[derive(Debug)]
struct IncidentFile {
    path: PathBuf,
    written: tokio::sync::Mutex<u64>,
    /// A background save is queued and has not yet taken its snapshot.
    pending: std::sync::atomic::AtomicBool,
}

impl IncidentFile {
    /// Writes the snapshot `bytes` of generation `generation`, unless a newer one is already there.
    async fn write(&self, generation: u64, bytes: Vec<u8>) -> Result<(), IncidentError> {
        let mut written = self.written.lock().await;
        if *written >= generation {
            return Ok(());
        }
        let p = self.path.clone();
        tokio::task::spawn_blocking(move || crate::state::write_atomic(&p, &bytes))
            .await
            .map_err(|e| IncidentError::Write(self.path.clone(), e.to_string()))?
            .map_err(|e| IncidentError::Write(self.path.clone(), e.to_string()))?;
        *written = generation;
        Ok(())
    }
}

impl Book {
    /// The open incident a firing of `trigger` for `target` joins.
    fn open_incident(&self, trigger: &str, target: &Target, server: Option<&str>) -> Option<usize> {
        self.incidents.iter().position(|i| {
            i.status == Status::Open
                && i.trigger == trigger
                && i.principal.user == target.user
                && (trigger != "tool_definition_changed" || i.server.as_deref() == server)
        })
    }

    /// A numbered snapshot for the incident file.
    fn snapshot(&mut self, path: &Path) -> Result<(u64, Vec<u8>), IncidentError> {
        self.generation += 1;
        let mut bytes =
            serde_json::to_vec_pretty(self).map_err(|e| IncidentError::Write(path.to_path_buf(), e.to_string()))?;
        bytes.push(b'\n');
        Ok((self.generation, bytes))
    }
}

/// The incident file that goes with a state file: `state.json` → `state.incidents.json`.
pub fn file_for(state_file: &Path) -> PathBuf {
    state_file.with_extension("incidents.json")
}

fn now_rfc3339() -> String {
    humantime::format_rfc3339_seconds(SystemTime::now()).to_string()
}

/// Writes `record` to the audit trail and lets the incident engine see its facts. The one call the
/// request path, the stream pump and the MCP gateway make; automatic containment is applied before
/// it returns.
pub async fn audited(gw: &Gateway, record: Record) {
    let policy = gw.policy();
    let fields = record.fields();
    let target = Target {
        user: str_field(fields, "user"),
        tenant: str_field(fields, "tenant"),
        session: str_field(fields, "session"),
        key_id: str_field(fields, "key_id"),
        sessions: Vec::new(),
    };
    if let (Some(user), Some(session)) = (&target.user, &target.session) {
        gw.incidents.saw_session(user, session);
    }
    let firings = match &target.user {
        Some(user) => gw.incidents.evaluate(&policy, fields, user, Instant::now()),
        None => Vec::new(),
    };
    if firings.is_empty() {
        gw.audit.record(record).await;
        return;
    }
    let request_id = str_field(fields, "request_id");
    let server = str_field(fields, "server");
    // A firing that opens an incident (and may contain it) waits for its evidence to be on disk. One
    // that only joins an open incident does not: the request does not wait for an fsync of the
    // audit trail (which, under load, flushes everything written before it: 100-200 ms measured
    // in the load bench), and the joined incident is saved off the request path.
    let seq = if gw.incidents.joins_only(&firings, &target, server.as_deref()).await {
        gw.audit.record(record).await;
        None
    } else {
        gw.audit.record_durable(record).await.ok()
    };
    for (trigger, rule) in firings {
        let ev = Evidence { audit_seq: seq, request_id: request_id.clone(), rule, time: now_rfc3339() };
        gw.incidents.fire(gw, &policy, &trigger, &target, server.clone(), ev).await;
    }
}

fn str_field(m: &Map<String, Value>, k: &str) -> Option<String> {
    m.get(k).and_then(Value::as_str).filter(|s| !s.is_empty()).map(str::to_owned)
}

/// Rules whose blocks count as guardrail blocks (and as probing signatures).
fn guardrail(rule: &str) -> bool {
    crate::rules::Rule::parse(rule).is_some_and(crate::rules::Rule::is_guardrail)
}

/// A tool call the model (or an agent over MCP) tried and the gateway refused.
fn tool_refusal(rule: &str) -> bool {
    crate::rules::Rule::parse(rule).is_some_and(crate::rules::Rule::is_tool_refusal)
}

/// What one audit record says, as trigger inputs.
#[derive(Debug, Default)]
struct Signals {
    leaks: Vec<(String, bool)>,
    tool_refused: Option<String>,
    data_calls: u64,
    blocks: BTreeSet<String>,
    injections: BTreeSet<String>,
    fragments: u64,
    trigger: Option<String>,
    /// Another tenant's identifiers reached the client.
    cross_tenant: bool,
}

impl Signals {
    fn read(m: &Map<String, Value>, policy: &Policy) -> Signals {
        let mut s = Signals::default();
        let kind = m.get("kind").and_then(Value::as_str).unwrap_or("");
        let event = m.get("event").and_then(Value::as_str).unwrap_or("");
        let status = m.get("status").and_then(Value::as_u64).unwrap_or(200);
        if let Some(Value::Object(r)) = m.get("redactions") {
            for id in r.keys() {
                let cat = policy.scanner.rules().iter().find(|x| &x.id == id).map(|x| x.category);
                match cat {
                    Some(Category::Canary) => s.leaks.push((id.clone(), true)),
                    Some(Category::Credential) => s.leaks.push((id.clone(), false)),
                    _ if id.starts_with("canary") => s.leaks.push((id.clone(), true)),
                    _ => {}
                }
            }
        }
        let mut decide = |rule: &str, action: &str| {
            if action == "block" && guardrail(rule) {
                s.blocks.insert(rule.to_owned());
            }
            if action == "block" && tool_refusal(rule) && (kind == "mcp" || status < 400) {
                s.tool_refused.get_or_insert_with(|| rule.to_owned());
            }
        };
        if let Some(Value::Array(ds)) = m.get("decisions") {
            for d in ds {
                let rule = d.get("rule").and_then(Value::as_str).unwrap_or("");
                let action = d.get("action").and_then(Value::as_str).unwrap_or("");
                decide(rule, action);
            }
        }
        if event == "tool_call_refused" {
            if let Some(rule) = m.get("rule").and_then(Value::as_str) {
                decide(rule, "block");
            }
        }
        if let Some(Value::Array(ids)) = m.get("injections") {
            s.injections.extend(ids.iter().filter_map(Value::as_str).map(|i| format!("injection:{i}")));
        }
        s.fragments = match event {
            "prompt_fragments" => m.get("count").and_then(Value::as_u64).unwrap_or(0),
            _ => m.get("prompt_fragments").and_then(Value::as_u64).unwrap_or(0),
        };
        if kind == "mcp" {
            // Every forwarded `tools/call` reads data, except tools the policy declares with side
            // effects (`[mcp_servers.X.tools.T] side_effects = true`: actions, not extraction).
            if let Some(Value::Array(t)) = m.get("tools_called") {
                s.data_calls = t.iter().filter_map(Value::as_str).filter(|c| !policy.mcp.acts(c)).count() as u64;
            }
            s.trigger = str_field(m, "trigger");
        }
        // Model tool calls to data tools that the client received (JSON or streamed).
        if let Some(Value::Array(t)) = m.get("data_tool_calls") {
            s.data_calls += t.len() as u64;
        }
        s.cross_tenant = matches!(m.get("cross_tenant"), Some(Value::Array(t)) if !t.is_empty());
        s
    }
}

impl Engine {
    /// Opens the incident file (absent: no incidents yet).
    pub fn open(path: &Path) -> Result<Engine, IncidentError> {
        let book = match std::fs::read(path) {
            Ok(b) => serde_json::from_slice(&b).map_err(|e| IncidentError::Load(path.into(), e.to_string()))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Book::default(),
            Err(e) => return Err(IncidentError::Load(path.into(), e.to_string())),
        };
        Ok(Engine {
            windows: Windows::new(WINDOW_CAPACITY),
            tenants: Windows::new(CORROBORATION_CAPACITY),
            sessions: moka::sync::Cache::builder().max_capacity(SESSION_USERS).time_to_idle(SESSION_IDLE).build(),
            book: Arc::new(tokio::sync::Mutex::new(book)),
            file: Arc::new(IncidentFile {
                path: path.into(),
                written: tokio::sync::Mutex::new(0),
                pending: std::sync::atomic::AtomicBool::new(false),
            }),
        })
    }

    /// Remembers that `user` used `session` (bounded: the newest [`SESSIONS_PER_USER`] per user).
    fn saw_session(&self, user: &str, session: &str) {
        let slot = match self.sessions.get(user) {
            Some(s) => s,
            None => self.sessions.get_with(user.to_owned(), Default::default),
        };
        let mut list = slot.lock().unwrap_or_else(|p| p.into_inner());
        if list.back().is_some_and(|s| s == session) {
            return;
        }
        list.retain(|s| s != session);
        list.push_back(session.to_owned());
        while list.len() > SESSIONS_PER_USER {
            list.pop_front();
        }
    }

    /// The recent sessions of `user`, oldest first.
    pub fn sessions_of(&self, user: &str) -> Vec<String> {
        self.sessions
            .get(user)
            .map(|s| s.lock().unwrap_or_else(|p| p.into_inner()).iter().cloned().collect())
            .unwrap_or_default()
    }

    /// The triggers that fire for this record: (trigger, the rule id that counted).
    fn evaluate(&self, policy: &Policy, m: &Map<String, Value>, user: &str, now: Instant) -> Vec<(Trigger, String)> {
        let s = Signals::read(m, policy);
        let mut out = Vec::new();
        let ip = &policy.incidents;
        // Counts one event for a trigger; true when it fires.
        let mut hit = |name: &str, key: &str, count: Count, rule: &str| -> bool {
            let Some(t) = ip.triggers.get(name) else { return false };
            if t.threshold > 0 {
                let wkey = format!("{name}\u{0}{key}");
                let cap = usize::try_from(t.threshold.saturating_add(1)).unwrap_or(usize::MAX);
                if self.windows.add(&wkey, now, t.window, count, cap) <= t.threshold {
                    return false;
                }
                self.windows.reset(&wkey);
            }
            out.push((t.clone(), rule.to_owned()));
            true
        };
        // A canary, if any, is the evidence named: it is proof, where a credential shape is a match.
        if let Some((rule, _)) = s.leaks.iter().find(|(_, canary)| *canary).or(s.leaks.first()) {
            hit("credential_leakage_confirmed", user, Count::Sum(1), rule);
        }
        if let Some(rule) = &s.tool_refused {
            hit("unauthorized_tool_execution", user, Count::Sum(1), rule);
        }
        if s.data_calls > 0 {
            let rule =
                if m.get("kind").and_then(Value::as_str) == Some("mcp") { "mcp.tools_call" } else { "tools.data_call" };
            hit("bulk_data_extraction", user, Count::Sum(s.data_calls), rule);
        }
        if s.cross_tenant {
            hit("cross_user_data_leakage", user, Count::Sum(1), "tenants.cross_tenant");
        }
        if let Some(rule) = s.blocks.iter().next() {
            hit("sustained_injection_campaign", user, Count::Sum(1), rule);
        }
        for sig in s.blocks.iter().chain(&s.injections) {
            use std::hash::{Hash, Hasher};
            let mut h = std::collections::hash_map::DefaultHasher::new();
            sig.hash(&mut h);
            hit("anomalous_probing", user, Count::Distinct(h.finish()), sig);
        }
        if s.fragments > 0 {
            let session = str_field(m, "session").unwrap_or_else(|| format!("user:{user}"));
            let exposed = hit("system_prompt_exposure", &session, Count::Sum(s.fragments), "prompt.fragment");
            if !exposed && s.fragments <= 2 {
                hit("partial_prompt_extraction", user, Count::Sum(1), "prompt.fragment");
            }
        }
        if let Some(t) = &s.trigger {
            let key = format!("{user}\u{0}{}", str_field(m, "server").unwrap_or_default());
            hit(t, &key, Count::Sum(1), t);
        }
        // A canary in the output exposes the system prompt by itself: no threshold.
        if let (Some((rule, _)), Some(t)) =
            (s.leaks.iter().find(|(_, canary)| *canary), ip.triggers.get("system_prompt_exposure"))
        {
            out.push((t.clone(), rule.clone()));
        }
        // One firing per trigger per record.
        let mut seen = BTreeSet::new();
        out.retain(|(t, _)| seen.insert(t.name.clone()));
        out
    }

    /// Counts this firing's source for `trigger` and says what corroborates the plan's gateway-wide
    /// steps, if anything does: the trigger's opt-in, a gateway canary as evidence, or the trigger
    /// having fired for `[incidents] corroboration` distinct sources within its window. A source is
    /// the tenant, or the MCP server for an event that came from one (a server's output reaching
    /// many tenants is still one server).
    fn corroboration(
        &self,
        policy: &Policy,
        trigger: &Trigger,
        target: &Target,
        server: Option<&str>,
        rule: &str,
    ) -> Option<String> {
        use std::hash::{Hash, Hasher};
        let ip = &policy.incidents;
        let mut h = std::collections::hash_map::DefaultHasher::new();
        match (server, &target.tenant, &target.user) {
            (Some(s), _, _) => ("server", s).hash(&mut h),
            (None, Some(t), _) => ("tenant", t.as_str()).hash(&mut h),
            (None, None, u) => ("user", u.as_deref().unwrap_or("")).hash(&mut h),
        }
        let cap = usize::try_from(ip.corroboration).unwrap_or(usize::MAX);
        let n = self.tenants.add(&trigger.name, Instant::now(), trigger.window, Count::Distinct(h.finish()), cap);
        if trigger.global_without_corroboration {
            Some("opt-in (global_without_corroboration)".into())
        } else if ip.canary_corroborates && canary_rule(policy, rule) {
            Some("canary".into())
        } else if n >= u64::from(ip.corroboration) {
            // Re-arms: the next gateway-wide run needs as many distinct sources again.
            self.tenants.reset(&trigger.name);
            Some(format!("{n} distinct tenants or servers within {}", humantime::format_duration(trigger.window)))
        } else {
            None
        }
    }

    /// Opens or joins the incident of `trigger` for `target`. An automatic trigger contains the
    /// principal when the incident opens; its plan's gateway-wide steps run only when corroborated
    /// (they are recorded as awaiting an operator otherwise, and run when a later firing into the
    /// same incident is corroborated).
    async fn fire(
        &self,
        gw: &Gateway,
        policy: &Policy,
        trigger: &Trigger,
        target: &Target,
        server: Option<String>,
        ev: Evidence,
    ) {
        let auto = trigger.auto && policy.incidents.auto_contain;
        let corroborated = self.corroboration(policy, trigger, target, server.as_deref(), &ev.rule);
        let mut book = self.book.lock().await;
        let now = now_rfc3339();
        let open = book.open_incident(&trigger.name, target, server.as_deref());
        if let Some(pos) = open {
            let inc = &mut book.incidents[pos];
            inc.last_seen = now;
            inc.firings += 1;
            if inc.evidence.len() < MAX_EVIDENCE {
                inc.evidence.push(ev.clone());
            }
            let rec = incident_record(inc, "joined").with("rule", ev.rule.as_str());
            gw.audit.record(rec).await;
            let awaiting = inc.actions.last().is_some_and(|t| !t.awaiting_operator.is_empty());
            if !(auto && awaiting && corroborated.is_some()) {
                drop(book);
                self.save_later();
                return;
            }
            let id = inc.id.clone();
            let taken = contain(gw, policy, trigger, &id, target, corroborated).await;
            let widened = !taken.actions.is_empty() && taken.error.is_none();
            book.incidents[pos].actions.push(taken);
            if widened {
                // The steps that awaited an operator ran: the containment grew (alertable).
                let rec = incident_record(&book.incidents[pos], "escalated").with("rule", ev.rule.as_str()).with_opt(
                    "corroborated_by",
                    book.incidents[pos].actions.last().and_then(|t| t.corroborated_by.clone()),
                );
                gw.audit.record(rec).await;
            }
        } else {
            book.next += 1;
            let id = format!("INC-{:05}", book.next);
            let mut inc = Incident {
                id: id.clone(),
                severity: trigger.severity,
                trigger: trigger.name.clone(),
                status: Status::Open,
                principal: target.clone(),
                server,
                first_seen: now.clone(),
                last_seen: now,
                firings: 1,
                evidence: vec![ev.clone()],
                actions: Vec::new(),
                checklist: checklist::for_trigger(&trigger.name).into_iter().map(str::to_owned).collect(),
                ticked: Vec::new(),
                notes: Vec::new(),
                resolved_at: None,
            };
            tracing::warn!(incident = %id, severity = trigger.severity.as_str(), trigger = %trigger.name,
                user = target.user.as_deref(), rule = %ev.rule, "incident opened");
            gw.metrics.decision(&format!("incident.{}", trigger.name), "detect");
            // The incident record goes first so the switch record that follows can name it.
            let opened = incident_record(&inc, "opened").with("rule", ev.rule.as_str()).with("auto", auto);
            if let Err(e) = gw.audit.record_durable(opened).await {
                tracing::error!(error = %e, "incident opened but its audit record failed");
            }
            // The principal's recent exchanges (when `[forensics]` is on) become its evidence.
            gw.forensics.incident_opened(&inc);
            if auto {
                let taken = contain(gw, policy, trigger, &id, target, corroborated).await;
                if !taken.awaiting_operator.is_empty() {
                    let rec = incident_record(&inc, "awaiting_operator").with(
                        "awaiting_operator",
                        serde_json::to_value(&taken.awaiting_operator).unwrap_or(Value::Null),
                    );
                    gw.audit.record(rec).await;
                }
                inc.actions.push(taken);
            }
            book.incidents.push(inc);
        }
        if let Err(e) = self.save(&mut book).await {
            tracing::error!(error = %e, "incident file not written");
        }
    }

    async fn save(&self, book: &mut Book) -> Result<(), IncidentError> {
        let (generation, bytes) = book.snapshot(&self.file.path)?;
        self.file.write(generation, bytes).await
    }

    /// Saves the book from a task of its own (at most one queued at a time: joins arriving while
    /// one is queued are in the snapshot it takes).
    fn save_later(&self) {
        use std::sync::atomic::Ordering;
        if self.file.pending.swap(true, Ordering::AcqRel) {
            return;
        }
        let (book, file) = (self.book.clone(), self.file.clone());
        tokio::spawn(async move {
            let snap = {
                let mut b = book.lock().await;
                file.pending.store(false, Ordering::Release);
                b.snapshot(&file.path)
            };
            if let Err(e) = match snap {
                Ok((generation, bytes)) => file.write(generation, bytes).await,
                Err(e) => Err(e),
            } {
                tracing::error!(error = %e, "incident file not written");
            }
        });
    }

    /// Whether every firing joins an incident that is open now (none opens one).
    async fn joins_only(&self, firings: &[(Trigger, String)], target: &Target, server: Option<&str>) -> bool {
        let book = self.book.lock().await;
        firings.iter().all(|(t, _)| book.open_incident(&t.name, target, server).is_some())
    }

    /// Each (trigger, principal) counted in a trigger window now, with its count. The principal
    /// is the user (with the MCP server for a server trigger); a session's count names the session
    /// by its digest only.
    pub fn window_counts(&self, policy: &Policy) -> Vec<(String, String, u64)> {
        let ip = &policy.incidents;
        let window_of = |k: &str| ip.triggers.get(k.split('\u{0}').next()?).map(|t| t.window);
        self.windows
            .counts(Instant::now(), window_of)
            .into_iter()
            .filter_map(|(k, n)| {
                let (name, key) = k.split_once('\u{0}')?;
                let principal = match (name, key.split_once('\u{0}')) {
                    ("system_prompt_exposure", _) => match key.strip_prefix("user:") {
                        Some(u) => u.to_owned(),
                        None => format!("session {}", crate::audit::session_digest(key)),
                    },
                    (_, Some((user, server))) if !server.is_empty() => format!("{user} (server {server})"),
                    (_, Some((user, _))) => user.to_owned(),
                    (_, None) => key.to_owned(),
                };
                Some((name.to_owned(), principal, n))
            })
            .collect()
    }

    /// Every incident, newest first; only open ones when `open_only`.
    pub async fn list(&self, open_only: bool) -> Vec<Incident> {
        let book = self.book.lock().await;
        book.incidents.iter().rev().filter(|i| !open_only || i.status == Status::Open).cloned().collect()
    }

    /// One incident.
    pub async fn get(&self, id: &str) -> Option<Incident> {
        self.book.lock().await.incidents.iter().find(|i| i.id == id).cloned()
    }

    /// Marks checklist step `step` of an incident done (or not done again), audited as `kind:
    /// incident, event: checklist_ticked | checklist_unticked` with the step's text.
    pub async fn tick(
        &self,
        gw: &Gateway,
        id: &str,
        step: usize,
        done: bool,
        actor: &str,
    ) -> Result<Incident, IncidentError> {
        let mut book = self.book.lock().await;
        let inc = book.incidents.iter_mut().find(|i| i.id == id).ok_or_else(|| IncidentError::NotFound(id.into()))?;
        let Some(text) = inc.checklist.get(step).cloned() else {
            return Err(IncidentError::NoStep(id.into(), step, inc.checklist.len()));
        };
        inc.ticked.retain(|t| t.step != step);
        if done {
            inc.ticked.push(Tick { step, actor: actor.into(), time: now_rfc3339() });
            inc.ticked.sort_by_key(|t| t.step);
        }
        let out = inc.clone();
        let event = if done { "checklist_ticked" } else { "checklist_unticked" };
        let rec = incident_record(&out, event).with("actor", actor).with("step", step).with("step_text", text);
        let _ = gw.audit.record_durable(rec).await;
        self.save(&mut book).await?;
        Ok(out)
    }

    /// Resolves an incident with a note (switches stay as they are: lifting them is a separate,
    /// deliberate change).
    /// Marks incident `id` resolved by `actor` (an authenticated admin identity); `on_behalf_of` is
    /// the name the client gave, kept in the audit record only.
    pub async fn resolve(
        &self,
        gw: &Gateway,
        id: &str,
        actor: &str,
        on_behalf_of: Option<&str>,
        note: &str,
    ) -> Result<Incident, IncidentError> {
        let mut book = self.book.lock().await;
        let inc = book.incidents.iter_mut().find(|i| i.id == id).ok_or_else(|| IncidentError::NotFound(id.into()))?;
        let now = now_rfc3339();
        if !note.trim().is_empty() {
            inc.notes.push(Note { time: now.clone(), actor: actor.into(), text: note.into() });
        }
        inc.status = Status::Resolved;
        inc.resolved_at = Some(now);
        let out = inc.clone();
        let rec = incident_record(&out, "resolved")
            .with("actor", actor)
            .with_opt("on_behalf_of", on_behalf_of)
            .with("note", note);
        let _ = gw.audit.record_durable(rec).await;
        // Keep every open incident and the newest resolved ones.
        let resolved = book.incidents.iter().filter(|i| i.status == Status::Resolved).count();
        if resolved > MAX_RESOLVED {
            let mut drop = resolved - MAX_RESOLVED;
            book.incidents.retain(|i| {
                if drop > 0 && i.status == Status::Resolved {
                    drop -= 1;
                    false
                } else {
                    true
                }
            });
        }
        self.save(&mut book).await?;
        Ok(out)
    }
}

/// Whether `rule` is a gateway canary (a secret only the gateway knows), not a pattern match.
fn canary_rule(policy: &Policy, rule: &str) -> bool {
    match policy.scanner.rules().iter().find(|x| x.id == rule) {
        Some(r) => r.category == Category::Canary,
        None => rule.starts_with("canary"),
    }
}

/// Runs `trigger`'s plan automatically for incident `id`: everything when `corroborated`, the
/// principal-scoped steps only otherwise.
async fn contain(
    gw: &Gateway,
    policy: &Policy,
    trigger: &Trigger,
    id: &str,
    target: &Target,
    corroborated: Option<String>,
) -> Taken {
    let reason = format!("{id}: {} ({}) automatic containment", trigger.name, trigger.severity.as_str());
    let defer = corroborated.is_none();
    match run_plan(gw, policy, &trigger.plan, target, &reason, "firebreak", Some(id), defer).await {
        Ok(mut t) => {
            t.corroborated_by = corroborated.filter(|_| t.actions.iter().any(|a| !a.is_principal_scoped()));
            if !t.awaiting_operator.is_empty() {
                tracing::warn!(incident = id, trigger = %trigger.name, steps = t.awaiting_operator.len(),
                    "gateway-wide containment not corroborated: awaiting an operator");
            }
            t
        }
        Err(e) => Taken {
            plan: trigger.plan.clone(),
            actor: "firebreak".into(),
            time: now_rfc3339(),
            actions: Vec::new(),
            version: None,
            credentials_marked_for_rotation: false,
            error: Some(e.to_string()),
            awaiting_operator: Vec::new(),
            corroborated_by: None,
        },
    }
}

fn incident_record(inc: &Incident, event: &str) -> Record {
    Record::new("incident")
        .with("event", event)
        .with("incident", inc.id.as_str())
        .with("severity", inc.severity.as_str())
        .with("trigger", inc.trigger.as_str())
        .with_opt("user", inc.principal.user.as_deref())
        .with_opt("tenant", inc.principal.tenant.as_deref())
        .with_opt("session", inc.principal.session.as_deref())
        .with_opt("server", inc.server.as_deref())
}

/// Runs a containment plan for `target` as one atomic batch, and audits it (`kind: switch`, with the
/// plan's name; `kind: rotation, event: marked` when the plan marks credentials for rotation). With
/// `principal_only`, the plan's gateway-wide steps are not applied but returned in
/// `awaiting_operator`.
#[allow(clippy::too_many_arguments)]
pub async fn run_plan(
    gw: &Gateway,
    policy: &Policy,
    plan_name: &str,
    target: &Target,
    reason: &str,
    actor: &str,
    incident: Option<&str>,
    principal_only: bool,
) -> Result<Taken, PlanError> {
    let plan = policy.incidents.plans.get(plan_name).ok_or_else(|| {
        PlanError::Unknown(plan_name.into(), policy.incidents.plans.keys().cloned().collect::<Vec<_>>().join(", "))
    })?;
    if target.user.is_none() && target.tenant.is_none() && target.session.is_none() && target.key_id.is_none() {
        return Err(PlanError::NoTarget);
    }
    // `{sessions}`: every recent session of the user, and the one the plan was run for.
    let mut target = target.clone();
    if let Some(user) = &target.user {
        for s in gw.incidents.sessions_of(user) {
            if !target.sessions.contains(&s) {
                target.sessions.push(s);
            }
        }
    }
    if let Some(s) = &target.session {
        if !target.sessions.contains(s) {
            target.sessions.push(s.clone());
        }
    }
    let mut actions = plan.actions_for(&target).map_err(|e| PlanError::Template(plan_name.into(), e))?;
    let mut awaiting_operator = Vec::new();
    if principal_only {
        (actions, awaiting_operator) = actions.into_iter().partition(Action::is_principal_scoped);
    }
    let mut taken = Taken {
        plan: plan_name.into(),
        actor: actor.into(),
        time: now_rfc3339(),
        actions: actions.clone(),
        version: None,
        credentials_marked_for_rotation: plan.rotate_credentials,
        error: None,
        awaiting_operator,
        corroborated_by: None,
    };
    if !actions.is_empty() {
        let batch = Batch { actions, reason: reason.into(), actor: Some(actor.into()), expect_version: None };
        let applied = gw.apply(&batch).await?;
        gw.metrics.set_switch_version(applied.after.version);
        taken.version = Some(applied.after.version);
        let rec = Record::new("switch")
            .with("actor", actor)
            .with("reason", reason)
            .with("before_version", applied.before)
            .with("after_version", applied.after.version)
            .with("actions", serde_json::to_value(&batch.actions).unwrap_or(Value::Null))
            .with("plan", plan_name)
            .with_opt("incident", incident);
        if let Err(e) = gw.audit.record_durable(rec).await {
            tracing::error!(error = %e, "containment applied but its audit record failed");
            taken.error = Some(format!("applied, but its audit record could not be made durable: {e}"));
        }
        tracing::warn!(plan = plan_name, actor, version = applied.after.version, "containment plan applied");
    }
    if plan.rotate_credentials {
        let rec = Record::new("rotation")
            .with("event", "marked")
            .with("actor", actor)
            .with("reason", reason)
            .with("plan", plan_name)
            .with_opt("incident", incident);
        let _ = gw.audit.record_durable(rec).await;
    }
    Ok(taken)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn policy(extra: &str) -> Policy {
        let text = format!(
            "[[redaction.canaries]]\nid = \"p\"\nvalue = \"fbQ7kX2mZp9RtL4w\"\n\n[triggers.anomalous_probing]\nthreshold = 2\n\n{extra}"
        );
        crate::config::load_str("t.toml", &text, Path::new(".")).expect("policy")
    }

    fn fired(e: &Engine, p: &Policy, rec: Value) -> Vec<String> {
        let Value::Object(m) = rec else { panic!() };
        e.evaluate(p, &m, "alice", Instant::now()).into_iter().map(|(t, _)| t.name).collect()
    }

    #[test]
    fn signals_map_to_triggers() {
        let p = policy("");
        let e = Engine::open(Path::new("/nonexistent/incidents.json")).expect("absent file is fine");
        let leak = json!({"kind": "request", "user": "alice", "redactions": {"aws_access_key_id": 1}});
        assert_eq!(fired(&e, &p, leak), vec!["credential_leakage_confirmed"]);
        let pii = json!({"kind": "request", "user": "alice", "redactions": {"email": 2}});
        assert!(fired(&e, &p, pii).is_empty(), "PII is redacted but is not a credential leak");
        let canary = json!({"kind": "request", "event": "redaction", "redactions": {"canary.p": 1}});
        assert_eq!(fired(&e, &p, canary), vec!["credential_leakage_confirmed", "system_prompt_exposure"]);

        // A model's refused tool call (200) is unauthorized execution; a client asking for a tool it
        // may not use (403) is only a guardrail block.
        let model =
            json!({"kind": "request", "status": 200, "decisions": [{"rule": "tools.not_allowed", "action": "block"}]});
        assert!(fired(&e, &p, model).contains(&"unauthorized_tool_execution".to_owned()));
        let client =
            json!({"kind": "request", "status": 403, "decisions": [{"rule": "tools.not_allowed", "action": "block"}]});
        assert!(!fired(&e, &p, client).contains(&"unauthorized_tool_execution".to_owned()));
        let streamed = json!({"kind": "request", "event": "tool_call_refused", "rule": "tools.argument"});
        assert!(fired(&e, &p, streamed).contains(&"unauthorized_tool_execution".to_owned()));
        let mcp =
            json!({"kind": "mcp", "status": 200, "decisions": [{"rule": "mcp.tool_not_allowed", "action": "block"}]});
        assert!(fired(&e, &p, mcp).contains(&"unauthorized_tool_execution".to_owned()));

        // Fragments: 1-2 in a response is partial extraction; more than 3 in a session is exposure.
        let frag = |n: u64| json!({"kind": "request", "session": "s", "prompt_fragments": n});
        assert_eq!(fired(&e, &p, frag(2)), vec!["partial_prompt_extraction"]);
        assert_eq!(fired(&e, &p, frag(2)), vec!["system_prompt_exposure"], "2 + 2 > 3 in one session");

        // MCP rug pull.
        let rug = json!({"kind": "mcp", "event": "tool_definition_changed", "trigger": "tool_definition_changed", "server": "srv"});
        assert_eq!(fired(&e, &p, rug), vec!["tool_definition_changed"]);
    }

    #[test]
    fn probing_counts_distinct_signatures_and_rearms() {
        let p = policy("");
        let e = Engine::open(Path::new("/nonexistent/incidents.json")).expect("engine");
        let block =
            |rule: &str| json!({"kind": "request", "status": 400, "decisions": [{"rule": rule, "action": "block"}]});
        let probing = |v: Vec<String>| v.contains(&"anomalous_probing".to_owned());
        assert!(!probing(fired(&e, &p, block("egress.private"))));
        assert!(!probing(fired(&e, &p, block("egress.private"))), "the same signature again is not new");
        assert!(!probing(fired(&e, &p, block("role.model_not_allowed"))), "2 distinct: not above 2");
        assert!(probing(fired(&e, &p, block("injection.blocked"))), "3 distinct > 2");
        assert!(!probing(fired(&e, &p, block("egress.metadata"))), "the window re-arms after firing");
    }

    #[test]
    fn bulk_extraction_counts_mcp_tool_calls() {
        let p = policy("[triggers.bulk_data_extraction]\nthreshold = 5\n");
        let e = Engine::open(Path::new("/nonexistent/incidents.json")).expect("engine");
        let calls = |n: usize| json!({"kind": "mcp", "status": 200, "tools_called": vec!["srv/read"; n]});
        assert!(fired(&e, &p, calls(3)).is_empty());
        assert!(fired(&e, &p, calls(2)).is_empty(), "5 is not above 5");
        assert_eq!(fired(&e, &p, calls(1)), vec!["bulk_data_extraction"]);
    }

    #[test]
    fn mcp_tools_declared_with_side_effects_are_not_data_reads() {
        let p = policy(
            "[triggers.bulk_data_extraction]\nthreshold = 2\n\
             [mcp_servers.srv]\nurl = \"http://127.0.0.1:9/mcp\"\n\
             [mcp_servers.srv.tools.send]\nside_effects = true\n",
        );
        let e = Engine::open(Path::new("/nonexistent/incidents.json")).expect("engine");
        let calls = |t: &str, n: usize| json!({"kind": "mcp", "status": 200, "tools_called": vec![t; n]});
        assert!(fired(&e, &p, calls("srv/send", 5)).is_empty(), "actions are not extraction");
        assert!(fired(&e, &p, calls("srv/read", 2)).is_empty());
        assert_eq!(fired(&e, &p, calls("srv/read", 1)), vec!["bulk_data_extraction"]);
    }

    #[test]
    fn bulk_extraction_counts_model_data_tool_calls_too() {
        let p = policy("[triggers.bulk_data_extraction]\nthreshold = 3\n");
        let e = Engine::open(Path::new("/nonexistent/incidents.json")).expect("engine");
        let model = |n: usize| json!({"kind": "request", "status": 200, "data_tool_calls": vec!["get_row"; n]});
        assert!(fired(&e, &p, model(2)).is_empty());
        let mcp = json!({"kind": "mcp", "status": 200, "tools_called": ["srv/read"]});
        assert!(fired(&e, &p, mcp).is_empty(), "2 model + 1 MCP = 3 is not above 3");
        assert_eq!(fired(&e, &p, model(1)), vec!["bulk_data_extraction"]);
    }

    #[test]
    fn another_tenants_identifiers_are_cross_user_leakage() {
        let p = policy("");
        let e = Engine::open(Path::new("/nonexistent/incidents.json")).expect("engine");
        let rec = json!({"kind": "request", "event": "cross_tenant", "cross_tenant": ["globex"]});
        assert_eq!(fired(&e, &p, rec), vec!["cross_user_data_leakage"]);
        assert!(fired(&e, &p, json!({"kind": "request", "cross_tenant": []})).is_empty());
    }

    #[test]
    fn gateway_wide_steps_need_distinct_sources_or_a_canary() {
        let p = policy("");
        let e = Engine::open(Path::new("/nonexistent/incidents.json")).expect("engine");
        let tool = &p.incidents.triggers["unauthorized_tool_execution"];
        let who = |tenant: &str| Target {
            user: Some(format!("u-{tenant}")),
            tenant: Some(tenant.into()),
            ..Target::default()
        };
        let c = |t: &Trigger, tenant: &str, server: Option<&str>, rule: &str| {
            e.corroboration(&p, t, &who(tenant), server, rule)
        };
        assert!(c(tool, "a", None, "tools.not_allowed").is_none());
        assert!(c(tool, "a", None, "tools.not_allowed").is_none(), "the same tenant again");
        assert!(c(tool, "b", Some("srv"), "mcp.tool_not_allowed").is_none());
        assert!(c(tool, "c", Some("srv"), "mcp.tool_not_allowed").is_none(), "one server is one source");
        assert!(c(tool, "d", None, "tools.not_allowed").is_some(), "a, srv, d: three sources");
        assert!(c(tool, "e", None, "tools.not_allowed").is_none(), "re-armed after corroborating");
        let leak = &p.incidents.triggers["credential_leakage_confirmed"];
        assert_eq!(c(leak, "a", None, "canary.p").as_deref(), Some("canary"));
        assert!(c(leak, "a", None, "aws_access_key_id").is_none(), "a credential shape is a match, not proof");
        let off = policy("[incidents]\ncanary_corroborates = false\n");
        let leak = &off.incidents.triggers["credential_leakage_confirmed"];
        assert!(e.corroboration(&off, leak, &who("z"), None, "canary.p").is_none());
    }

    #[test]
    fn recent_sessions_are_remembered_per_user_and_bounded() {
        let e = Engine::open(Path::new("/nonexistent/incidents.json")).expect("engine");
        for s in ["s1", "s2", "s1"] {
            e.saw_session("alice", s);
        }
        e.saw_session("bob", "b1");
        assert_eq!(e.sessions_of("alice"), vec!["s2", "s1"], "newest last, no duplicates");
        assert_eq!(e.sessions_of("bob"), vec!["b1"]);
        for i in 0..100 {
            e.saw_session("carol", &format!("c{i}"));
        }
        let c = e.sessions_of("carol");
        assert_eq!(c.len(), SESSIONS_PER_USER);
        assert_eq!(c.last().map(String::as_str), Some("c99"));
    }
}
