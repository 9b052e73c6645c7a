//! The local override ("break-glass"): switches set on this replica alone, on top of the snapshot in
//! force (the file's, or the fleet's). The overlay only ever tightens: [`compose`] raises the level,
//! turns safe mode on and adds blocks; it never lifts anything the base snapshot has. It is kept in
//! its own file (`<state stem>.local.json`), so a restart keeps it, and it stays until lifted.

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

use super::{Action, PersistError, Snapshot};
use crate::config::Policy;

/// The overlay: its entries, each a batch of tightening actions.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LocalOverride {
    /// In the order they were set.
    #[serde(default)]
    pub entries: Vec<LocalEntry>,
}

/// One overlay entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LocalEntry {
    /// Its id on this replica (`admin --local lift ID`).
    pub id: u32,
    /// The tightening actions.
    pub actions: Vec<Action>,
    /// Who set it.
    pub actor: String,
    /// Why.
    pub reason: String,
    /// When (RFC 3339).
    pub since: String,
    /// Why it is local.
    pub origin: Origin,
}

/// Why an entry is in the overlay.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Origin {
    /// Set by an operator (`firebreak admin --local …`): kept until lifted.
    BreakGlass,
    /// An automatic plan that could not be committed to the fleet (PostgreSQL unreachable): committed
    /// as a fleet batch when the database returns, then dropped.
    OfflineContainment {
        /// The incident whose plan it is, if known.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        incident: Option<String>,
    },
}

impl LocalOverride {
    /// No entry.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The id the next entry gets.
    pub fn next_id(&self) -> u32 {
        self.entries.iter().map(|e| e.id).max().unwrap_or(0) + 1
    }
}

/// Whether an action only tightens (so it may go into the overlay).
pub fn tightening(a: &Action) -> bool {
    matches!(
        a,
        Action::SetLevel { .. }
            | Action::SafeMode { enabled: true }
            | Action::BlockUser { .. }
            | Action::BlockTenant { .. }
            | Action::BlockEgress { .. }
            | Action::RevokeKey { .. }
            | Action::TerminateSession { .. }
            | Action::DisableTool { .. }
            | Action::DisableEndpoint { .. }
            | Action::IsolateServer { .. }
            | Action::FreezeTools { .. }
            | Action::LimitUser { .. }
    )
}

/// Checks the actions of a new overlay entry against `base`: every action must tighten and be valid.
/// The problems, one per bad action (empty: fine).
pub fn check(actions: &[Action], reason: &str, base: &Snapshot, policy: &Policy) -> Vec<super::ActionError> {
    let mut problems = Vec::new();
    if reason.trim().is_empty() {
        problems.push(super::ActionError::new(0, "reason must not be empty: it is recorded in the audit trail"));
    }
    if actions.is_empty() {
        problems.push(super::ActionError::new(0, "no actions"));
    }
    let mut scratch = base.clone();
    for (i, a) in actions.iter().enumerate() {
        if !tightening(a) {
            problems.push(super::ActionError::new(
                i,
                "a local override only tightens (set_level, safe_mode on, block_*, revoke_key, terminate_session, \
                 disable_*, isolate_server, freeze_tools, limit_user); lift it with DELETE /admin/v1/local/switches",
            ));
        } else if let Err(e) = a.apply(&mut scratch, policy, "local", reason, SystemTime::now()) {
            problems.push(super::ActionError::new(i, e));
        }
    }
    problems
}

/// `base` ⊕ `local`: only ever tightens. The level is the higher of both, safe mode is on if either
/// has it, blocks of the overlay are added where the base has none for the same key, and a user limit
/// is the lower of both. The version stays the base's; the result carries the overlay
/// (`local_override`) so `admin state` shows it.
pub fn compose(base: &Snapshot, local: &LocalOverride, policy: &Policy) -> Snapshot {
    let mut out = base.clone();
    out.local_override = None;
    if local.is_empty() {
        return out;
    }
    for e in &local.entries {
        let since = humantime::parse_rfc3339_weak(&e.since).unwrap_or_else(|_| SystemTime::now());
        for a in e.actions.iter().filter(|a| tightening(a)) {
            let mut scratch = out.clone();
            if a.apply(&mut scratch, policy, &e.actor, &e.reason, since).is_err() {
                // Checked when it was set; a policy reload may have removed its target since.
                continue;
            }
            out.level = out.level.max(scratch.level);
            out.safe_mode |= scratch.safe_mode;
            let mut theirs = scratch;
            for (mine, extra) in out.entry_maps().into_iter().zip(theirs.entry_maps()) {
                for (k, v) in std::mem::take(extra) {
                    mine.entry(k).or_insert(v);
                }
            }
            for (user, l) in theirs.limited_users {
                match out.limited_users.get_mut(&user) {
                    Some(cur) if cur.requests_per_minute <= l.requests_per_minute => {}
                    _ => {
                        out.limited_users.insert(user, l);
                    }
                }
            }
        }
    }
    out.local_override = Some(local.clone());
    out
}

/// Where the overlay of the state file `state` is kept: `<stem>.local.json` beside it.
pub fn path_for(state: &Path) -> PathBuf {
    let stem = state.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_else(|| "state".into());
    state.with_file_name(format!("{stem}.local.json"))
}

/// Reads the overlay; empty when the file does not exist. A corrupt file is an error: starting
/// without it could lift a break-glass lockdown.
pub fn load(path: &Path) -> Result<LocalOverride, PersistError> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(LocalOverride::default()),
        Err(source) => return Err(PersistError::Read { path: path.to_path_buf(), source }),
    };
    serde_json::from_slice(&bytes)
        .map_err(|e| PersistError::Corrupt { path: path.to_path_buf(), detail: e.to_string() })
}

/// Writes the overlay atomically and durably.
pub async fn save(path: &Path, local: &LocalOverride) -> Result<(), PersistError> {
    let write = |source| PersistError::Write { path: path.to_path_buf(), source };
    let bytes = serde_json::to_vec_pretty(local).map_err(|e| write(std::io::Error::other(e)))?;
    let p = path.to_path_buf();
    tokio::task::spawn_blocking(move || super::write_atomic(&p, &bytes))
        .await
        .map_err(|e| write(std::io::Error::other(e)))?
        .map_err(write)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Level;

    fn policy() -> Policy {
        crate::config::load_str(crate::config::DEMO_NAME, crate::config::DEMO_POLICY, Path::new(".")).expect("demo")
    }

    fn entry(id: u32, actions: Vec<Action>) -> LocalEntry {
        LocalEntry {
            id,
            actions,
            actor: "ops".into(),
            reason: "break glass".into(),
            since: "2026-12-03T10:00:00Z".into(),
            origin: Origin::BreakGlass,
        }
    }

    #[test]
    fn compose_only_tightens() {
        let p = policy();
        let mut base = Snapshot { version: 7, level: Level::Critical, ..Snapshot::default() };
        base.blocked_users.insert(
            "alice".into(),
            super::super::Entry {
                reason: "base".into(),
                actor: "a".into(),
                since: "x".into(),
                expires: None,
                expires_unix: None,
            },
        );
        let local = LocalOverride {
            entries: vec![entry(
                1,
                vec![
                    Action::SetLevel { level: "elevated".into() },
                    Action::BlockUser { user: "alice".into(), ttl: Some("1m".into()) },
                    Action::BlockUser { user: "bob".into(), ttl: None },
                    Action::SafeMode { enabled: true },
                    // Not tightening: ignored even if it got into the file.
                    Action::UnblockUser { user: "alice".into() },
                    Action::SafeMode { enabled: false },
                ],
            )],
        };
        let c = compose(&base, &local, &p);
        assert_eq!(c.level, Level::Critical, "a lower overlay level never lowers the base's");
        assert_eq!(c.version, 7);
        assert!(c.safe_mode);
        assert_eq!(c.blocked_users["alice"].reason, "base", "the base's permanent block is kept, not replaced");
        assert!(c.blocked_users["alice"].expires_unix.is_none());
        assert!(c.blocked_users.contains_key("bob"));
        assert_eq!(c.local_override.as_ref().map(|l| l.entries.len()), Some(1));

        let lock = LocalOverride { entries: vec![entry(2, vec![Action::SetLevel { level: "lockdown".into() }])] };
        assert_eq!(compose(&base, &lock, &p).level, Level::Lockdown);
        let none = compose(&base, &LocalOverride::default(), &p);
        assert_eq!(none, base, "no overlay: the base itself");
    }

    #[test]
    fn user_limit_is_the_lower() {
        let p = policy();
        let mut base = Snapshot::default();
        let limit = |rpm| Action::LimitUser { user: "u".into(), requests_per_minute: rpm, ttl: None };
        let mut scratch = base.clone();
        limit(5).apply(&mut scratch, &p, "a", "r", SystemTime::now()).expect("valid");
        base.limited_users = scratch.limited_users;
        let c = compose(&base, &LocalOverride { entries: vec![entry(1, vec![limit(50)])] }, &p);
        assert_eq!(c.limited_users["u"].requests_per_minute, 5);
        let c = compose(&base, &LocalOverride { entries: vec![entry(1, vec![limit(2)])] }, &p);
        assert_eq!(c.limited_users["u"].requests_per_minute, 2);
    }

    #[test]
    fn check_refuses_loosening_actions() {
        let p = policy();
        let base = Snapshot::default();
        assert!(check(&[Action::SetLevel { level: "lockdown".into() }], "r", &base, &p).is_empty());
        assert_eq!(check(&[Action::SafeMode { enabled: false }], "r", &base, &p).len(), 1);
        assert_eq!(check(&[Action::UnblockUser { user: "a".into() }], "r", &base, &p).len(), 1);
        assert_eq!(check(&[Action::SetLevel { level: "nope".into() }], "r", &base, &p).len(), 1);
        assert_eq!(check(&[Action::SetLevel { level: "lockdown".into() }], " ", &base, &p).len(), 1);
    }
}
