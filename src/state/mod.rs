//! The containment state ("the switches"): one immutable [`Snapshot`] behind an `ArcSwap`.
//!
//! Every request loads one snapshot and decides with it from start to end. A batch of
//! [`Action`]s is validated whole against a copy, persisted to disk (temp file, fsync, rename), and
//! only then swapped in with one pointer store and announced on a `watch` channel, which streams in
//! flight listen to. Writers are serialised by one async mutex; readers never wait.

mod action;
pub mod local;
mod persist;
pub mod pins;
pub mod prompts;

pub use persist::write_atomic;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use arc_swap::ArcSwap;
use serde::{Deserialize, Serialize};
use tokio::sync::{watch, Mutex};

pub use crate::config::action::{principal_scoped, Action};
pub use action::ActionError;
pub use persist::PersistError;

use crate::config::{KeyEntry, Level, Policy};
use crate::protocol::Endpoint;

/// Why an entry is in a block list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// Why.
    pub reason: String,
    /// Who.
    pub actor: String,
    /// When (RFC 3339).
    pub since: String,
    /// Until when (RFC 3339); none means until lifted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires: Option<String>,
    /// `expires` as seconds since the epoch, for cheap checks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_unix: Option<u64>,
}

impl Entry {
    /// Whether the entry is in force at `now` (seconds since the epoch).
    pub fn active(&self, now: u64) -> bool {
        self.expires_unix.is_none_or(|e| now < e)
    }
}

/// One immutable version of the switches.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Snapshot {
    /// Increases by one with every applied batch.
    pub version: u64,
    /// Degradation level.
    pub level: Level,
    /// Safe mode: the model is not asked.
    pub safe_mode: bool,
    /// Blocked users.
    #[serde(default)]
    pub blocked_users: BTreeMap<String, Entry>,
    /// Blocked tenants.
    #[serde(default)]
    pub blocked_tenants: BTreeMap<String, Entry>,
    /// Revoked key ids.
    #[serde(default)]
    pub revoked_keys: BTreeMap<String, Entry>,
    /// Terminated sessions.
    #[serde(default)]
    pub terminated_sessions: BTreeMap<String, Entry>,
    /// Disabled model tools.
    #[serde(default)]
    pub disabled_tools: BTreeMap<String, Entry>,
    /// Disabled endpoints (by name).
    #[serde(default)]
    pub disabled_endpoints: BTreeMap<String, Entry>,
    /// Extra egress blocks: hosts or domains (a domain covers its subdomains).
    #[serde(default)]
    pub blocked_egress: BTreeMap<String, Entry>,
    /// Isolated MCP servers: no traffic, open streams ended.
    #[serde(default)]
    pub isolated_servers: BTreeMap<String, Entry>,
    /// MCP servers whose tool definitions may not change or grow.
    #[serde(default)]
    pub frozen_servers: BTreeMap<String, Entry>,
    /// Users held to a lower request rate than their level's (incident containment).
    #[serde(default)]
    pub limited_users: BTreeMap<String, UserLimit>,
    /// MCP tool definitions seen and trusted, by `server/tool` (trust on first use).
    #[serde(default)]
    pub tool_pins: BTreeMap<String, ToolPin>,
    /// Managed prompts: live version, canary generation, rotation history (never text or canary).
    #[serde(default)]
    pub prompts: BTreeMap<String, prompts::PromptState>,
    /// Canary values of the managed prompts. Never serialised with the snapshot (so never in an
    /// admin response or the audit trail); `persist` stores them beside it in the state file.
    #[serde(skip)]
    pub canaries: prompts::Canaries,
    /// When the last batch was applied (RFC 3339).
    #[serde(default)]
    pub updated_at: Option<String>,
    /// The break-glass overlay composed into this snapshot on this replica alone (only in the
    /// snapshot in force, never in the state file or the fleet's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub local_override: Option<local::LocalOverride>,
}

/// A per-user rate limit set by `limit_user`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserLimit {
    /// Requests per minute.
    pub requests_per_minute: u32,
    /// Why, who, until when.
    #[serde(flatten)]
    pub entry: Entry,
}

/// The trusted definition hash of one MCP tool, and a changed one waiting for approval.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ToolPin {
    /// SHA-256 (hex) of the trusted canonical definition; none when the first definition seen
    /// arrived while the server was frozen.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hash: Option<String>,
    /// When it was trusted (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since: Option<String>,
    /// A different definition seen since, withheld until `approve_tool`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pending: Option<String>,
    /// When the pending definition was first seen.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pending_since: Option<String>,
    /// Why it is pending: `mcp.tool_changed`, `mcp.tool_frozen` or `mcp.tool_poisoned`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pending_reason: Option<String>,
    /// The trusted definition (its hashed fields, canonical), for the diff an operator reviews.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub definition: Option<serde_json::Value>,
    /// The pending definition in full: what `approve_tool` with its hash would trust.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pending_definition: Option<serde_json::Value>,
}

impl Default for Snapshot {
    fn default() -> Self {
        Snapshot {
            version: 0,
            level: Level::Normal,
            safe_mode: false,
            blocked_users: BTreeMap::new(),
            blocked_tenants: BTreeMap::new(),
            revoked_keys: BTreeMap::new(),
            terminated_sessions: BTreeMap::new(),
            disabled_tools: BTreeMap::new(),
            disabled_endpoints: BTreeMap::new(),
            blocked_egress: BTreeMap::new(),
            isolated_servers: BTreeMap::new(),
            frozen_servers: BTreeMap::new(),
            limited_users: BTreeMap::new(),
            tool_pins: BTreeMap::new(),
            prompts: BTreeMap::new(),
            canaries: prompts::Canaries::default(),
            updated_at: None,
            local_override: None,
        }
    }
}

/// Why a principal's request (or stream) is refused by the switches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Lockdown level.
    Lockdown,
    /// The endpoint is disabled.
    EndpointDisabled,
    /// The key was revoked.
    KeyRevoked,
    /// The tenant is blocked.
    TenantBlocked,
    /// The user is blocked.
    UserBlocked,
    /// The session was terminated.
    SessionTerminated,
}

impl Refusal {
    /// Rule id for audit and metrics.
    pub fn rule(self) -> crate::rules::Rule {
        match self {
            Refusal::Lockdown => crate::rules::Rule::SwitchLockdown,
            Refusal::EndpointDisabled => crate::rules::Rule::SwitchEndpointDisabled,
            Refusal::KeyRevoked => crate::rules::Rule::SwitchKeyRevoked,
            Refusal::TenantBlocked => crate::rules::Rule::SwitchTenantBlocked,
            Refusal::UserBlocked => crate::rules::Rule::SwitchUserBlocked,
            Refusal::SessionTerminated => crate::rules::Rule::SwitchSessionTerminated,
        }
    }
}

/// Seconds since the epoch.
pub fn unix_now() -> u64 {
    SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

impl Snapshot {
    /// The first switch that refuses this principal on this endpoint, if any.
    pub fn refusal(&self, key: &KeyEntry, endpoint: Endpoint, session: Option<&str>, now: u64) -> Option<Refusal> {
        if self.level != Level::Lockdown && self.disabled_endpoints.get(endpoint.name()).is_some_and(|e| e.active(now))
        {
            return Some(Refusal::EndpointDisabled);
        }
        self.principal_refusal(key, session, now)
    }

    /// The first switch that refuses this principal (or session) anywhere, if any.
    pub fn principal_refusal(&self, key: &KeyEntry, session: Option<&str>, now: u64) -> Option<Refusal> {
        let hit = |m: &BTreeMap<String, Entry>, k: &str| m.get(k).is_some_and(|e| e.active(now));
        if self.level == Level::Lockdown {
            Some(Refusal::Lockdown)
        } else if hit(&self.revoked_keys, &key.id) {
            Some(Refusal::KeyRevoked)
        } else if hit(&self.blocked_tenants, &key.tenant) {
            Some(Refusal::TenantBlocked)
        } else if hit(&self.blocked_users, &key.user) {
            Some(Refusal::UserBlocked)
        } else if session.is_some_and(|s| hit(&self.terminated_sessions, s)) {
            Some(Refusal::SessionTerminated)
        } else {
            None
        }
    }

    /// Whether a host (or one of its parent domains, as the egress checker passes them) is blocked
    /// by a switch.
    pub fn egress_blocked(&self, host: &str, now: u64) -> bool {
        self.blocked_egress.get(&host.to_ascii_lowercase()).is_some_and(|e| e.active(now))
    }

    /// Whether an MCP server is isolated.
    pub fn server_isolated(&self, server: &str, now: u64) -> bool {
        self.isolated_servers.get(server).is_some_and(|e| e.active(now))
    }

    /// Whether an MCP server's tool definitions are frozen.
    pub fn server_frozen(&self, server: &str, now: u64) -> bool {
        self.frozen_servers.get(server).is_some_and(|e| e.active(now))
    }

    /// Whether a tool is disabled by a switch (`*` disables every tool).
    pub fn tool_disabled(&self, tool: &str, now: u64) -> bool {
        let hit = |k: &str| self.disabled_tools.get(k).is_some_and(|e| e.active(now));
        hit(tool) || (!self.disabled_tools.is_empty() && hit("*"))
    }

    /// The requests per minute allowed to `user`: the level's, or a lower per-user limit in force.
    pub fn user_rpm(&self, user: &str, level_rpm: u32, now: u64) -> u32 {
        match self.limited_users.get(user) {
            Some(l) if l.entry.active(now) => level_rpm.min(l.requests_per_minute),
            _ => level_rpm,
        }
    }
}

/// A batch of actions as posted to the admin API.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Batch {
    /// The actions, applied all or nothing.
    pub actions: Vec<Action>,
    /// Why (required: it goes into the audit trail).
    pub reason: String,
    /// Who.
    #[serde(default)]
    pub actor: Option<String>,
    /// Apply only if the current version is this one.
    #[serde(default)]
    pub expect_version: Option<u64>,
}

/// Why a batch was not applied.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    /// One or more actions are invalid; nothing changed.
    #[error("batch rejected, nothing changed: {}", .0.iter().map(|e| e.to_string()).collect::<Vec<_>>().join("; "))]
    Invalid(Vec<ActionError>),
    /// `expect_version` did not match.
    #[error("version conflict: expected {expected}, current is {current}; re-read the state and retry")]
    Conflict {
        /// What the caller expected.
        expected: u64,
        /// What it is.
        current: u64,
    },
    /// What the batch approves (or rejects) is no longer what is pending: the definition the
    /// operator reviewed changed since. Nothing changed.
    #[error("batch refused, nothing changed: {}", .0.iter().map(|e| e.to_string()).collect::<Vec<_>>().join("; "))]
    Stale(Vec<ActionError>),
    /// The new state could not be persisted; nothing changed.
    #[error(transparent)]
    Persist(#[from] PersistError),
    /// Fleet mode: the shared store could not commit the batch (or the outcome is unknown).
    #[error("{}", .0.message)]
    Fleet(FleetFailure),
}

/// Why a fleet commit failed, as the state layer sees it (the fleet maps its own errors to this).
#[derive(Debug, Clone)]
pub struct FleetFailure {
    /// Whether the batch may have been committed after all (connection lost during COMMIT).
    pub unknown: bool,
    /// For the operator: what happened, what still holds, what to do.
    pub message: String,
}

/// The outcome of an applied batch.
#[derive(Debug, Clone)]
pub struct Applied {
    /// Version before.
    pub before: u64,
    /// Version after.
    pub after: Arc<Snapshot>,
}

/// Applies `batch` to a copy of `cur`: checks `expect_version`, validates every action, purges
/// expired entries, bumps the version. Pure: nothing is persisted or swapped. The file store and the
/// fleet's transaction (on the database's snapshot) both apply batches with it.
pub fn apply_batch(cur: &Snapshot, batch: &Batch, policy: &Policy, now: SystemTime) -> Result<Snapshot, ApplyError> {
    if let Some(expected) = batch.expect_version {
        if expected != cur.version {
            return Err(ApplyError::Conflict { expected, current: cur.version });
        }
    }
    let actor = batch.actor.as_deref().unwrap_or("admin");
    let mut next = cur.clone();
    next.local_override = None;
    let mut errors = Vec::new();
    if batch.reason.trim().is_empty() {
        errors.push(ActionError::new(0, "reason must not be empty: it is recorded in the audit trail"));
    }
    if batch.actions.is_empty() {
        errors.push(ActionError::new(0, "the batch has no actions"));
    }
    let mut stale = Vec::new();
    for (i, a) in batch.actions.iter().enumerate() {
        if let Some(e) = a.stale(&next) {
            stale.push(ActionError::new(i, e));
        } else if let Err(e) = a.apply(&mut next, policy, actor, &batch.reason, now) {
            errors.push(ActionError::new(i, e));
        }
    }
    if !errors.is_empty() {
        return Err(ApplyError::Invalid(errors));
    }
    if !stale.is_empty() {
        return Err(ApplyError::Stale(stale));
    }
    next.purge_expired(unix_now());
    next.version = cur.version + 1;
    next.updated_at = Some(humantime::format_rfc3339_seconds(now).to_string());
    Ok(next)
}

/// Owns the snapshot in force, its file, the local override and the change announcements.
///
/// `base` is the file's (or the fleet's) snapshot; `current` is `base` ⊕ the local override
/// ([`local::compose`]), what requests load. Without an override both are the same.
#[derive(Debug)]
pub struct StateStore {
    current: ArcSwap<Snapshot>,
    base: ArcSwap<Snapshot>,
    local: std::sync::Mutex<local::LocalOverride>,
    changes: watch::Sender<Arc<Snapshot>>,
    writer: Mutex<()>,
    path: PathBuf,
    local_path: PathBuf,
}

impl StateStore {
    /// Opens the state at `path`: restored when the file exists, fresh when it does not; and the
    /// local override beside it. An unreadable or corrupt file is an error: starting without it could
    /// lift a lockdown.
    pub fn open(path: &Path) -> Result<Self, PersistError> {
        Self::open_with(path, None)
    }

    /// [`StateStore::open`], composing the local override with `policy` (its targets are checked
    /// against it). Without a policy an override still applies its level and safe mode.
    pub fn open_with(path: &Path, policy: Option<&Policy>) -> Result<Self, PersistError> {
        let mut snap = persist::load(path)?.unwrap_or_default();
        snap.purge_expired(unix_now());
        let local_path = local::path_for(path);
        let overlay = local::load(&local_path)?;
        let base = Arc::new(snap);
        let current = match policy {
            Some(p) if !overlay.is_empty() => Arc::new(local::compose(&base, &overlay, p)),
            _ => base.clone(),
        };
        let (changes, _) = watch::channel(current.clone());
        Ok(StateStore {
            current: ArcSwap::new(current),
            base: ArcSwap::new(base),
            local: std::sync::Mutex::new(overlay),
            changes,
            writer: Mutex::new(()),
            path: path.to_path_buf(),
            local_path,
        })
    }

    /// The snapshot in force now (the base with the local override composed in). Hold it for the
    /// whole request.
    pub fn load(&self) -> Arc<Snapshot> {
        self.current.load_full()
    }

    /// The file's (or the fleet's) snapshot, without the local override.
    pub fn base(&self) -> Arc<Snapshot> {
        self.base.load_full()
    }

    /// The local override in force (empty: none).
    pub fn local(&self) -> local::LocalOverride {
        self.local.lock().map(|l| l.clone()).unwrap_or_default()
    }

    /// A receiver that sees every new snapshot.
    pub fn subscribe(&self) -> watch::Receiver<Arc<Snapshot>> {
        self.changes.subscribe()
    }

    /// Validates the batch whole, persists, swaps, announces. All or nothing.
    pub async fn apply(&self, batch: &Batch, policy: &Policy) -> Result<Applied, ApplyError> {
        self.apply_with(batch, policy, |_| Ok(())).await
    }

    /// [`StateStore::apply`], calling `before_swap` with the validated new snapshot before it is
    /// persisted and swapped in: whatever must already be in force when a request can see the new
    /// snapshot (the scanner that detects a new canary) is put in place there. An error rejects the
    /// batch; nothing else changed.
    pub async fn apply_with(
        &self,
        batch: &Batch,
        policy: &Policy,
        before_swap: impl FnOnce(&Snapshot) -> Result<(), String>,
    ) -> Result<Applied, ApplyError> {
        let _guard = self.writer.lock().await;
        let cur = self.base.load_full();
        let next = apply_batch(&cur, batch, policy, SystemTime::now())?;
        before_swap(&next).map_err(|e| ApplyError::Invalid(vec![ActionError::new(0, e)]))?;
        let next = Arc::new(next);
        persist::save(&self.path, &next).await?;
        let after = self.install(next, policy);
        Ok(Applied { before: cur.version, after })
    }

    /// Swaps in a new base (already persisted) and announces the composed snapshot.
    fn install(&self, base: Arc<Snapshot>, policy: &Policy) -> Arc<Snapshot> {
        let overlay = self.local();
        let current = if overlay.is_empty() { base.clone() } else { Arc::new(local::compose(&base, &overlay, policy)) };
        self.base.store(base);
        self.current.store(current.clone());
        self.changes.send_replace(current.clone());
        current
    }

    /// A newer snapshot from the fleet (a notification, the poll, or this replica's own commit):
    /// persisted to the local file (so a restart without the database enforces it: fail-static),
    /// then swapped in and announced. Never installs a version at or below the base's: `Ok(None)`.
    /// A failure to write the file is returned after the snapshot was installed anyway (the database
    /// has it; enforcing the newer snapshot is right), as `Err` with the snapshot in force.
    pub async fn install_remote(
        &self,
        snap: Snapshot,
        policy: &Policy,
    ) -> Result<Option<Arc<Snapshot>>, (Arc<Snapshot>, PersistError)> {
        let _guard = self.writer.lock().await;
        if snap.version <= self.base.load().version {
            return Ok(None);
        }
        let mut snap = snap;
        snap.local_override = None;
        let next = Arc::new(snap);
        let saved = persist::save(&self.path, &next).await;
        let current = self.install(next, policy);
        match saved {
            Ok(()) => Ok(Some(current)),
            Err(e) => Err((current, e)),
        }
    }

    /// Changes the local override (break-glass), persists it beside the state file, and swaps in
    /// the newly composed snapshot. `f` returns an error to refuse the change (nothing changes).
    pub async fn set_local<T>(
        &self,
        policy: &Policy,
        f: impl FnOnce(&mut local::LocalOverride) -> Result<T, String>,
    ) -> Result<Result<(T, Arc<Snapshot>), String>, PersistError> {
        let _guard = self.writer.lock().await;
        let mut overlay = self.local();
        let out = match f(&mut overlay) {
            Ok(t) => t,
            Err(e) => return Ok(Err(e)),
        };
        local::save(&self.local_path, &overlay).await?;
        if let Ok(mut l) = self.local.lock() {
            *l = overlay;
        }
        let current = self.install(self.base.load_full(), policy);
        Ok(Ok((out, current)))
    }

    /// Re-composes the snapshot in force with `policy` (after a reload: the override's targets are
    /// checked against the new policy). Without an override nothing changes.
    pub async fn recompose(&self, policy: &Policy) {
        let _guard = self.writer.lock().await;
        if !self.local().is_empty() {
            self.install(self.base.load_full(), policy);
        }
    }
}

impl StateStore {
    /// Puts back the switches of `snap` (taken earlier with [`StateStore::load`]) as a new version,
    /// persisted and announced like any batch. For offline replay, which resets the switches after a
    /// case that set preconditions; the admin API has no such call (every change there is an audited
    /// batch of actions).
    pub async fn reset_to(&self, snap: &Snapshot) -> Result<Arc<Snapshot>, PersistError> {
        let _guard = self.writer.lock().await;
        let cur = self.base.load_full();
        let mut next = snap.clone();
        next.local_override = None;
        next.purge_expired(unix_now());
        next.version = cur.version + 1;
        next.updated_at = Some(humantime::format_rfc3339_seconds(SystemTime::now()).to_string());
        let next = Arc::new(next);
        persist::save(&self.path, &next).await?;
        self.base.store(next.clone());
        self.current.store(next.clone());
        self.changes.send_replace(next.clone());
        Ok(next)
    }
}

impl Snapshot {
    /// Every entry list of the snapshot that can expire.
    fn entry_maps(&mut self) -> [&mut BTreeMap<String, Entry>; 9] {
        [
            &mut self.blocked_users,
            &mut self.blocked_tenants,
            &mut self.revoked_keys,
            &mut self.terminated_sessions,
            &mut self.disabled_tools,
            &mut self.disabled_endpoints,
            &mut self.blocked_egress,
            &mut self.isolated_servers,
            &mut self.frozen_servers,
        ]
    }

    /// Drops every entry that expired by `now`: an expired entry never comes back (a clock set
    /// back, a hand-edited file), and the state file does not grow with dead entries.
    pub(crate) fn purge_expired(&mut self, now: u64) {
        for m in self.entry_maps() {
            m.retain(|_, e| e.active(now));
        }
        self.limited_users.retain(|_, l| l.entry.active(now));
    }

    /// Fills `expires_unix` from `expires` where a (hand-written) file has only the latter, so an
    /// entry with an end never counts as permanent; an unreadable `expires` is an error.
    fn fill_expiry(&mut self) -> Result<(), String> {
        fn fill(k: &str, e: &mut Entry) -> Result<(), String> {
            if let (None, Some(t)) = (e.expires_unix, &e.expires) {
                let at = humantime::parse_rfc3339_weak(t)
                    .map_err(|_| format!("entry `{k}`: expires `{t}` is not an RFC 3339 time"))?;
                e.expires_unix = Some(at.duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_secs()));
            }
            Ok(())
        }
        for m in self.entry_maps() {
            for (k, e) in m.iter_mut() {
                fill(k, e)?;
            }
        }
        for (k, l) in self.limited_users.iter_mut() {
            fill(k, &mut l.entry)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> Policy {
        crate::config::load_str(crate::config::DEMO_NAME, crate::config::DEMO_POLICY, Path::new(".")).expect("demo")
    }

    fn batch(actions: Vec<Action>, expect: Option<u64>) -> Batch {
        Batch { actions, reason: "test".into(), actor: Some("ops".into()), expect_version: expect }
    }

    #[test]
    fn apply_batch_is_pure_and_bumps_the_version() {
        let p = policy();
        let cur = Snapshot { version: 4, ..Snapshot::default() };
        let next = apply_batch(
            &cur,
            &batch(
                vec![Action::SetLevel { level: "critical".into() }, Action::BlockUser { user: "u".into(), ttl: None }],
                Some(4),
            ),
            &p,
            SystemTime::now(),
        )
        .expect("valid");
        assert_eq!(cur.version, 4, "the input is not touched");
        assert_eq!(cur.level, Level::Normal);
        assert_eq!(next.version, 5);
        assert_eq!(next.level, Level::Critical);
        assert_eq!(next.blocked_users["u"].actor, "ops");
        assert!(next.updated_at.is_some());
        assert!(next.local_override.is_none());
    }

    #[test]
    fn apply_batch_checks_the_version_and_rejects_whole() {
        let p = policy();
        let cur = Snapshot { version: 4, ..Snapshot::default() };
        let set = |l: &str| Action::SetLevel { level: l.into() };
        match apply_batch(&cur, &batch(vec![set("lockdown")], Some(3)), &p, SystemTime::now()) {
            Err(ApplyError::Conflict { expected: 3, current: 4 }) => {}
            other => panic!("expected a conflict, got {other:?}"),
        }
        match apply_batch(&cur, &batch(vec![set("lockdown"), set("nope")], None), &p, SystemTime::now()) {
            Err(ApplyError::Invalid(e)) => assert_eq!(e[0].index, 1),
            other => panic!("expected invalid, got {other:?}"),
        }
        let empty = Batch { actions: vec![], reason: " ".into(), actor: None, expect_version: None };
        match apply_batch(&cur, &empty, &p, SystemTime::now()) {
            Err(ApplyError::Invalid(e)) => assert_eq!(e.len(), 2),
            other => panic!("expected invalid, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn the_store_composes_the_override_and_never_installs_an_older_remote() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("state.json");
        let p = policy();
        let store = StateStore::open_with(&path, Some(&p)).expect("open");
        let applied = store.apply(&batch(vec![Action::SetLevel { level: "elevated".into() }], None), &p).await;
        assert_eq!(applied.expect("applied").after.version, 1);
        let (id, cur) = store
            .set_local(&p, |o| {
                let id = o.next_id();
                o.entries.push(local::LocalEntry {
                    id,
                    actions: vec![Action::SetLevel { level: "lockdown".into() }],
                    actor: "ops".into(),
                    reason: "glass".into(),
                    since: "2026-12-03T10:00:00Z".into(),
                    origin: local::Origin::BreakGlass,
                });
                Ok(id)
            })
            .await
            .expect("persisted")
            .expect("set");
        assert_eq!(id, 1);
        assert_eq!(cur.level, Level::Lockdown);
        assert_eq!(store.base().level, Level::Elevated, "the base is not changed by the override");
        assert!(local::path_for(&path).exists());
        // A newer remote snapshot: the override stays composed on top.
        let remote = Snapshot { version: 5, level: Level::Critical, ..Snapshot::default() };
        let installed = store.install_remote(remote.clone(), &p).await.expect("saved").expect("newer");
        assert_eq!((installed.version, installed.level), (5, Level::Lockdown));
        assert_eq!(store.base().level, Level::Critical);
        // Never an older or equal one.
        let older = Snapshot { version: 5, ..Snapshot::default() };
        assert!(store.install_remote(older, &p).await.expect("no write").is_none());
        // Reopened (a restart): base from the file, the override from its own file.
        drop(store);
        let store = StateStore::open_with(&path, Some(&p)).expect("reopen");
        assert_eq!(store.base().version, 5);
        assert_eq!(store.load().level, Level::Lockdown);
        let persisted = std::fs::read_to_string(&path).expect("state file");
        assert!(!persisted.contains("local_override"), "the state file never holds the override");
    }
}
