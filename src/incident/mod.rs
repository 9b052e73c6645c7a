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
pub mod window;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use serde::{Deserialize, Serialize};

pub use crate::config::incidents::{IncidentPolicy, IncidentSeverity, Plan, Target, Trigger, TRIGGERS};
use window::{Count, Hit, Windows};

use crate::audit::{Audit, Record};
use crate::config::Policy;
use crate::facts::{Facts, Shape};
use crate::inspect::rule::Category;
use crate::rules::{Rule, Verdict};
use crate::state::{Action, ApplyError};

/// Most evidence entries kept per incident (the count goes on).
pub(crate) const MAX_EVIDENCE: usize = 100;
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
    /// The replica whose audit trail holds the record (fleet mode; `None` on a single node).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replica: Option<String>,
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
    pub severity: IncidentSeverity,
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
    /// Fleet mode: recorded in this replica's file while PostgreSQL was unreachable (id
    /// `INC-<replica>-L0001`), merged into the fleet book on reconnect.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub local: bool,
    /// Fleet mode: the local incident(s) merged into this one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub merged_from: Option<String>,
}

#[derive(Debug, Default, Serialize, Deserialize)]
pub(crate) struct Book {
    pub(crate) next: u64,
    pub(crate) incidents: Vec<Incident>,
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
    /// Fleet mode: the fleet incident book (PostgreSQL) cannot be reached; nothing was changed.
    #[error("the fleet incident book is unavailable: {0}; nothing was changed")]
    Unavailable(String),
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
    pub(crate) fn open_incident(&self, trigger: &str, target: &Target, server: Option<&str>) -> Option<usize> {
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

/// Now, RFC 3339 seconds.
pub fn now_rfc3339() -> String {
    humantime::format_rfc3339_seconds(SystemTime::now()).to_string()
}

/// A trigger that fired for an exchange, with the rule id that counted (the evidence named).
#[derive(Debug, Clone)]
pub struct Firing {
    /// The trigger.
    pub trigger: Trigger,
    /// The rule id that counted (a rule, a redaction rule's id, or the trigger's name).
    pub rule: String,
}

/// An exchange's trigger events before counting ([`Engine::signals`]).
#[derive(Debug, Default)]
pub struct Observed {
    /// The events, in the order they are counted.
    pub hits: Vec<Hit>,
    /// The canary rule that leaked, if one did: `system_prompt_exposure` fires without counting.
    pub canary: Option<String>,
}

impl Observed {
    /// Nothing to count and nothing fires (the common case).
    pub fn is_empty(&self) -> bool {
        self.hits.is_empty() && self.canary.is_none()
    }
}

/// A firing's source as an event in its trigger's corroboration window (one window per trigger,
/// `key` empty): the MCP server it came from, else the tenant, else the user, as a distinct label.
/// It fires at `[incidents] corroboration` distinct sources (threshold one less). Counted in the
/// engine (`Engine::corroboration`), on each replica alike: `fleet::windows::WindowCounter::corroborate`
/// can count it in Redis fleet-wide, but the gateway does not call it yet.
pub fn corroboration_hit(policy: &Policy, trigger: &Trigger, target: &Target, server: Option<&str>) -> Hit {
    let source = match (server, &target.tenant, &target.user) {
        (Some(s), _, _) => format!("server\u{0}{s}"),
        (None, Some(t), _) => format!("tenant\u{0}{t}"),
        (None, None, u) => format!("user\u{0}{}", u.as_deref().unwrap_or("")),
    };
    Hit {
        trigger: trigger.name.clone(),
        key: String::new(),
        count: Count::Distinct(window::label(&source)),
        window: trigger.window,
        threshold: u64::from(policy.incidents.corroboration).saturating_sub(1),
        rule: String::new(),
        unless: None,
    }
}

/// What corroborates a firing's gateway-wide steps, given its corroboration count `n` and whether
/// that count reached `[incidents] corroboration` (`counted`): the trigger's opt-in, a gateway
/// canary as evidence, or the distinct sources.
pub fn corroborated_by(policy: &Policy, trigger: &Trigger, rule: &str, n: u64, counted: bool) -> Option<String> {
    if trigger.global_without_corroboration {
        Some("opt-in (global_without_corroboration)".into())
    } else if policy.incidents.canary_corroborates && canary_rule(policy, rule) {
        Some("canary".into())
    } else if counted {
        Some(format!("{n} distinct tenants or servers within {}", humantime::format_duration(trigger.window)))
    } else {
        None
    }
}

/// Each (trigger, principal) counted in `windows` now, with its count. The principal is the user
/// (with the MCP server for a server trigger); a session's count names the session by its digest
/// only.
pub fn window_counts(windows: &Windows, policy: &Policy) -> Vec<(String, String, u64)> {
    let ip = &policy.incidents;
    let window_of = |k: &str| ip.triggers.get(k.split('\u{0}').next()?).map(|t| t.window);
    windows
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

/// The principal an exchange's firings are about.
pub fn target_of(f: &Facts) -> Target {
    let key = f.key.as_deref();
    let some = |s: Option<&str>| s.filter(|s| !s.is_empty()).map(str::to_owned);
    Target {
        user: some(key.map(|k| k.user.as_str())),
        tenant: some(key.map(|k| k.tenant.as_str())),
        session: some(f.session.as_deref()),
        key_id: some(key.map(|k| k.id.as_str())),
        sessions: Vec::new(),
    }
}

/// The MCP server an exchange's incidents are about (the record's `server`).
pub fn server_of(f: &Facts) -> Option<&str> {
    match f.shape {
        Shape::McpRequest | Shape::McpStreamEnd => f.server.as_deref().filter(|s| !s.is_empty()),
        Shape::AiRequest | Shape::McpToolEvent => None,
    }
}

/// What one exchange says, as trigger inputs.
#[derive(Debug, Default)]
struct Signals {
    leaks: Vec<(String, bool)>,
    tool_refused: Option<String>,
    data_calls: u64,
    blocks: BTreeSet<String>,
    injections: BTreeSet<String>,
    fragments: u64,
    trigger: Option<&'static str>,
    /// Another tenant's identifiers reached the client.
    cross_tenant: bool,
}

impl Signals {
    fn of(f: &Facts, policy: &Policy) -> Signals {
        let mut s = Signals::default();
        let mcp = f.shape.is_mcp();
        for (id, r) in &f.redactions {
            match r.category {
                Category::Canary => s.leaks.push((id.clone(), true)),
                Category::Credential => s.leaks.push((id.clone(), false)),
                _ => {}
            }
        }
        for d in f.decisions.iter().filter(|d| d.action == Verdict::Block) {
            if d.rule.is_guardrail() {
                s.blocks.insert(d.rule.to_string());
            }
            if d.rule.is_tool_refusal() && (mcp || f.status < 400) && s.tool_refused.is_none() {
                s.tool_refused = Some(d.rule.to_string());
            }
        }
        s.injections.extend(f.injections.iter().map(|i| format!("injection:{i}")));
        s.fragments = f.prompt_fragments;
        if mcp {
            // Every forwarded `tools/call` reads data, except tools the policy declares with side
            // effects (`[mcp_servers.X.tools.T] side_effects = true`: actions, not extraction).
            s.data_calls = f.tools_called.iter().filter(|c| !policy.mcp.acts(c)).count() as u64;
            s.trigger = f.trigger();
        }
        // Model tool calls to data tools that the client received (JSON or streamed).
        s.data_calls += f.data_tool_calls.len() as u64;
        s.cross_tenant = !f.cross_tenant.is_empty();
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

    /// The triggers that fire for this exchange, counted in the engine's own windows (single-node
    /// mode): [`Engine::signals`], then the windows, then [`Engine::firings`]. Nothing is audited
    /// or applied (the caller does that with the firings).
    pub fn observe(&self, policy: &Policy, f: &Facts, now: Instant) -> Vec<Firing> {
        let obs = self.signals(policy, f);
        if obs.is_empty() {
            return Vec::new();
        }
        let counted = self.windows.add_all(&obs.hits, now, 1);
        self.firings(policy, obs, &counted)
    }

    /// The engine's trigger windows (a fleet counts in Redis and falls back to these).
    pub fn windows(&self) -> &Windows {
        &self.windows
    }

    /// This exchange's trigger events, not yet counted: pure but for remembering the user's
    /// recent session. Empty (no allocation) for an exchange without signals, the common case.
    pub fn signals(&self, policy: &Policy, f: &Facts) -> Observed {
        let Some(user) = f.user() else { return Observed::default() };
        if let Some(session) = f.session.as_deref().filter(|s| !s.is_empty()) {
            self.saw_session(user, session);
        }
        let s = Signals::of(f, policy);
        let mut hits: Vec<Hit> = Vec::new();
        let ip = &policy.incidents;
        // One event for a trigger the policy has; its index in `hits`.
        let mut hit = |name: &str, key: &str, count: Count, rule: &str, unless: Option<usize>| -> Option<usize> {
            let t = ip.triggers.get(name)?;
            hits.push(Hit {
                trigger: t.name.clone(),
                key: key.to_owned(),
                count,
                window: t.window,
                threshold: t.threshold,
                rule: rule.to_owned(),
                unless,
            });
            Some(hits.len() - 1)
        };
        // A canary, if any, is the evidence named: it is proof, where a credential shape is a match.
        if let Some((rule, _)) = s.leaks.iter().find(|(_, canary)| *canary).or(s.leaks.first()) {
            hit("credential_leakage_confirmed", user, Count::Sum(1), rule, None);
        }
        if let Some(rule) = &s.tool_refused {
            hit("unauthorized_tool_execution", user, Count::Sum(1), rule, None);
        }
        if s.data_calls > 0 {
            let rule = if f.shape.is_mcp() { Rule::McpToolsCall } else { Rule::ToolsDataCall }.as_str();
            hit("bulk_data_extraction", user, Count::Sum(s.data_calls), rule, None);
        }
        if s.cross_tenant {
            hit("cross_user_data_leakage", user, Count::Sum(1), Rule::TenantsCrossTenant.as_str(), None);
        }
        if let Some(rule) = s.blocks.iter().next() {
            hit("sustained_injection_campaign", user, Count::Sum(1), rule, None);
        }
        for sig in s.blocks.iter().chain(&s.injections) {
            hit("anomalous_probing", user, Count::Distinct(window::label(sig)), sig, None);
        }
        if s.fragments > 0 {
            let session = f.session.clone().filter(|s| !s.is_empty()).unwrap_or_else(|| format!("user:{user}"));
            let fragment = Rule::PromptFragment.as_str();
            let exposed = hit("system_prompt_exposure", &session, Count::Sum(s.fragments), fragment, None);
            if s.fragments <= 2 {
                hit("partial_prompt_extraction", user, Count::Sum(1), fragment, exposed);
            }
        }
        if let Some(t) = &s.trigger {
            let key = format!("{user}\u{0}{}", server_of(f).unwrap_or_default());
            hit(t, &key, Count::Sum(1), t, None);
        }
        // A canary in the output exposes the system prompt by itself: no threshold.
        let canary = s.leaks.into_iter().find(|(_, canary)| *canary).map(|(rule, _)| rule);
        Observed { hits, canary }
    }

    /// The firings of an exchange whose hits were counted (`counted[i]` is `hits[i]`'s count and
    /// whether it fired), plus the canary's, one per trigger.
    pub fn firings(&self, policy: &Policy, obs: Observed, counted: &[(u64, bool)]) -> Vec<Firing> {
        let ip = &policy.incidents;
        let mut out: Vec<Firing> = obs
            .hits
            .into_iter()
            .zip(counted)
            .filter(|(_, (_, fired))| *fired)
            .filter_map(|(h, _)| Some(Firing { trigger: ip.triggers.get(&h.trigger)?.clone(), rule: h.rule }))
            .collect();
        if let (Some(rule), Some(t)) = (obs.canary, ip.triggers.get("system_prompt_exposure")) {
            out.push(Firing { trigger: t.clone(), rule });
        }
        // One firing per trigger per record.
        let mut seen = BTreeSet::new();
        out.retain(|f| seen.insert(f.trigger.name.clone()));
        out
    }

    /// Counts this firing's source for `trigger` and says what corroborates the plan's gateway-wide
    /// steps, if anything does: the trigger's opt-in, a gateway canary as evidence, or the trigger
    /// having fired for `[incidents] corroboration` distinct sources within its window. A source is
    /// the tenant, or the MCP server for an event that came from one (a server's output reaching
    /// many tenants is still one server).
    pub(crate) fn corroboration(
        &self,
        policy: &Policy,
        trigger: &Trigger,
        target: &Target,
        server: Option<&str>,
        rule: &str,
    ) -> Option<String> {
        let ip = &policy.incidents;
        let hit = corroboration_hit(policy, trigger, target, server);
        let cap = usize::try_from(ip.corroboration).unwrap_or(usize::MAX);
        let n = self.tenants.add(&trigger.name, Instant::now(), trigger.window, hit.count, cap);
        let counted = n >= u64::from(ip.corroboration);
        let by = corroborated_by(policy, trigger, rule, n, counted);
        if counted && !trigger.global_without_corroboration && !(ip.canary_corroborates && canary_rule(policy, rule)) {
            // Re-arms: the next gateway-wide run needs as many distinct sources again.
            self.tenants.reset(&trigger.name);
        }
        by
    }

    /// The incident book, locked.
    pub(crate) async fn book(&self) -> tokio::sync::MutexGuard<'_, Book> {
        self.book.lock().await
    }

    pub(crate) async fn save(&self, book: &mut Book) -> Result<(), IncidentError> {
        let (generation, bytes) = book.snapshot(&self.file.path)?;
        self.file.write(generation, bytes).await
    }

    /// Saves the book from a task of its own (at most one queued at a time: joins arriving while
    /// one is queued are in the snapshot it takes).
    pub(crate) fn save_later(&self) {
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
    pub async fn joins_only(&self, firings: &[Firing], target: &Target, server: Option<&str>) -> bool {
        let book = self.book.lock().await;
        firings.iter().all(|f| book.open_incident(&f.trigger.name, target, server).is_some())
    }

    /// Fleet mode: the incidents recorded in this replica's file while PostgreSQL was unreachable
    /// (`local`), oldest first, to merge into the fleet book.
    pub async fn local_incidents(&self) -> Vec<Incident> {
        self.book.lock().await.incidents.iter().filter(|i| i.local).cloned().collect()
    }

    /// Fleet mode: forgets the local incidents `ids` (merged into the fleet book) and saves the file.
    pub async fn drop_local(&self, ids: &[String]) -> Result<(), IncidentError> {
        let mut book = self.book.lock().await;
        book.incidents.retain(|i| !(i.local && ids.contains(&i.id)));
        self.save(&mut book).await
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
        audit: &Audit,
        id: &str,
        step: usize,
        done: bool,
        actor: &str,
    ) -> Result<Incident, IncidentError> {
        let mut book = self.book.lock().await;
        let inc = book.incidents.iter_mut().find(|i| i.id == id).ok_or_else(|| IncidentError::NotFound(id.into()))?;
        let text = tick_step(inc, step, done, actor)?;
        let out = inc.clone();
        let event = if done { "checklist_ticked" } else { "checklist_unticked" };
        let rec = incident_record(&out, event).with("actor", actor).with("step", step).with("step_text", text);
        let _ = audit.record_durable(rec).await;
        self.save(&mut book).await?;
        Ok(out)
    }

    /// Resolves an incident with a note (switches stay as they are: lifting them is a separate,
    /// deliberate change).
    /// Marks incident `id` resolved by `actor` (an authenticated admin identity); `on_behalf_of` is
    /// the name the client gave, kept in the audit record only.
    pub async fn resolve(
        &self,
        audit: &Audit,
        id: &str,
        actor: &str,
        on_behalf_of: Option<&str>,
        note: &str,
    ) -> Result<Incident, IncidentError> {
        let mut book = self.book.lock().await;
        let inc = book.incidents.iter_mut().find(|i| i.id == id).ok_or_else(|| IncidentError::NotFound(id.into()))?;
        resolve_with(inc, actor, note);
        let out = inc.clone();
        let rec = incident_record(&out, "resolved")
            .with("actor", actor)
            .with_opt("on_behalf_of", on_behalf_of)
            .with("note", note);
        let _ = audit.record_durable(rec).await;
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

/// Marks checklist step `step` of `inc` done (or not done again) by `actor`: the step's text.
pub fn tick_step(inc: &mut Incident, step: usize, done: bool, actor: &str) -> Result<String, IncidentError> {
    let Some(text) = inc.checklist.get(step).cloned() else {
        return Err(IncidentError::NoStep(inc.id.clone(), step, inc.checklist.len()));
    };
    inc.ticked.retain(|t| t.step != step);
    if done {
        inc.ticked.push(Tick { step, actor: actor.into(), time: now_rfc3339() });
        inc.ticked.sort_by_key(|t| t.step);
    }
    Ok(text)
}

/// Marks `inc` resolved by `actor`, with `note` (when not blank) added to its notes.
pub fn resolve_with(inc: &mut Incident, actor: &str, note: &str) {
    let now = now_rfc3339();
    if !note.trim().is_empty() {
        inc.notes.push(Note { time: now.clone(), actor: actor.into(), text: note.into() });
    }
    inc.status = Status::Resolved;
    inc.resolved_at = Some(now);
}

/// Whether `rule` is a gateway canary (a secret only the gateway knows), not a pattern match.
pub(crate) fn canary_rule(policy: &Policy, rule: &str) -> bool {
    match policy.scanner.rules().iter().find(|x| x.id == rule) {
        Some(r) => r.category == Category::Canary,
        None => rule.starts_with("canary"),
    }
}

/// The audit record of an incident event (`kind: incident`).
pub fn incident_record(inc: &Incident, event: &str) -> Record {
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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    fn policy(extra: &str) -> Policy {
        let text = format!(
            "[[redaction.canaries]]\nid = \"p\"\nvalue = \"fbQ7kX2mZp9RtL4w\"\n\n[triggers.anomalous_probing]\nthreshold = 2\n\n{extra}"
        );
        crate::config::load_str("t.toml", &text, Path::new(".")).expect("policy")
    }

    /// The facts an exchange of the record `rec`'s shape would have had, for user `alice` (the
    /// records these tests were first written with, turned into the engine's typed input).
    fn facts(p: &Policy, rec: &Value) -> Facts {
        use crate::facts::{Decision, Redacted, ToolEvent};
        use crate::rules::RuleId;
        let str_of = |k: &str| rec.get(k).and_then(Value::as_str);
        let strings = |k: &str| -> Vec<String> {
            rec.get(k)
                .and_then(Value::as_array)
                .map_or_else(Vec::new, |a| a.iter().filter_map(Value::as_str).map(str::to_owned).collect())
        };
        let shape = match (str_of("kind"), str_of("trigger")) {
            (Some("mcp"), Some(_)) => Shape::McpToolEvent,
            (Some("mcp"), None) => Shape::McpRequest,
            _ => Shape::AiRequest,
        };
        let mut f = Facts::new(shape, "req_1".into(), Instant::now());
        f.key = Some(Arc::new(crate::config::KeyEntry {
            id: "k1".into(),
            tenant: String::new(),
            user: "alice".into(),
            role: "dev".into(),
            expires: None,
            prompt: None,
        }));
        f.session = str_of("session").map(str::to_owned);
        f.server = str_of("server").map(str::to_owned);
        f.status = rec.get("status").and_then(Value::as_u64).map_or(200, |s| s as u16);
        if let Some(m) = rec.get("redactions").and_then(Value::as_object) {
            for (id, n) in m {
                let category = p
                    .scanner
                    .rules()
                    .iter()
                    .find(|x| &x.id == id)
                    .map_or(if id.starts_with("canary") { Category::Canary } else { Category::Pii }, |x| x.category);
                f.redactions.insert(id.clone(), Redacted { count: n.as_u64().unwrap_or(1), category });
            }
        }
        for d in rec.get("decisions").and_then(Value::as_array).into_iter().flatten() {
            let rule = d["rule"].as_str().expect("rule");
            let rule = RuleId::Fixed(Rule::parse(rule).expect("a rule of rules.rs"));
            let action = if d["action"] == "block" { Verdict::Block } else { Verdict::Allow };
            f.decisions.push(Decision { rule, action });
        }
        if str_of("event") == Some("tool_call_refused") {
            // A tool call refused in a stream: a block in the request's own (200) record today.
            let rule = Rule::parse(str_of("rule").expect("rule")).expect("a fixed rule");
            f.decide(rule, Verdict::Block);
        }
        f.injections = strings("injections");
        f.prompt_fragments = rec.get("prompt_fragments").and_then(Value::as_u64).unwrap_or(0);
        f.tools_called = strings("tools_called");
        f.data_tool_calls = strings("data_tool_calls");
        f.cross_tenant = strings("cross_tenant");
        if shape == Shape::McpToolEvent {
            let event = match str_of("event") {
                Some("tool_definition_changed") => "tool_definition_changed",
                _ => "tool_poisoning",
            };
            f.tool_event = Some(ToolEvent { event, tool: "srv/t".into(), detail: String::new() });
        }
        f
    }

    fn fired(e: &Engine, p: &Policy, rec: Value) -> Vec<String> {
        e.observe(p, &facts(p, &rec), Instant::now()).into_iter().map(|f| f.trigger.name).collect()
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
        assert!(!probing(fired(&e, &p, block("egress.private_address"))));
        assert!(!probing(fired(&e, &p, block("egress.private_address"))), "the same signature again is not new");
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
