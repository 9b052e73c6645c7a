//! `[[admins]]` and `[admin.require_second]`: the named operators of the admin API, their roles, and
//! the actions that need a second operator's approval.
//!
//! An admin is identified by the SHA-256 of a bearer token (like a virtual key) and/or by the
//! identity of a verified mTLS client certificate (`[listen] admin_tls`). The single legacy
//! `[admin] token_env`/`token_file` token is not listed here: it is read at start and acts as an
//! identity named `admin` with the `admin` role (`control::identity`).

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::validate::{Problems, Seg};

/// Default time a pending two-person action waits for its second approval.
pub const DEFAULT_SECOND_TTL: Duration = Duration::from_secs(15 * 60);

/// What an admin identity may do; ordered, each role includes the ones below it.
///
/// Named `AdminRole` here because `config::Role` is a virtual key's role; `control::identity`
/// re-exports it as `Role`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AdminRole {
    /// Reads state, incidents, the audit trail, pending tools and approvals, metrics.
    Viewer,
    /// Viewer, plus every containment switch, plans, prompt and canary rotations, incident
    /// checklists and resolution.
    Responder,
    /// Everything: policy reload, credential rotation, tool approvals and rejections.
    Admin,
}

impl AdminRole {
    /// Every role, lowest first.
    pub const ALL: [AdminRole; 3] = [AdminRole::Viewer, AdminRole::Responder, AdminRole::Admin];

    /// The name used in the policy, the API and the audit trail.
    pub fn as_str(self) -> &'static str {
        match self {
            AdminRole::Viewer => "viewer",
            AdminRole::Responder => "responder",
            AdminRole::Admin => "admin",
        }
    }

    /// The role named `s`.
    pub fn parse(s: &str) -> Option<AdminRole> {
        AdminRole::ALL.into_iter().find(|r| r.as_str() == s)
    }
}

impl std::fmt::Display for AdminRole {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One `[[admins]]` entry as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAdminIdentity {
    /// Who (recorded as the audit actor).
    pub id: String,
    /// SHA-256 (hex) of the bearer token.
    pub sha256: Option<String>,
    /// The verified client certificate's identity (`[listen] admin_tls` client_identity).
    pub cert_identity: Option<String>,
    /// viewer, responder or admin.
    pub role: String,
}

/// `[admin.require_second]` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRequireSecond {
    /// Action names (`op` or `op:arg`) that wait for a second identity's approval.
    #[serde(default)]
    pub actions: Vec<String>,
    /// How long a pending action waits (default 15m).
    pub ttl: Option<String>,
}

/// A compiled `[[admins]]` entry.
#[derive(Debug, Clone)]
pub struct AdminIdentity {
    /// Who.
    pub id: String,
    /// What they may do.
    pub role: AdminRole,
    /// SHA-256 of the bearer token.
    pub sha256: Option<[u8; 32]>,
    /// The certificate identity.
    pub cert_identity: Option<String>,
}

/// One `[admin.require_second]` action name: a switch action's `op`, and optionally the value of
/// its main argument (see `action_arg` in the admin API's identity module).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActionPattern {
    /// The switch action (`set_level`, `restore_server`, `approve_tool`, …).
    pub op: String,
    /// Only when its main argument is this (`normal` in `set_level:normal`).
    pub arg: Option<String>,
}

impl ActionPattern {
    /// `op` or `op:arg`, as written in the policy.
    pub fn name(&self) -> String {
        match &self.arg {
            Some(a) => format!("{}:{a}", self.op),
            None => self.op.clone(),
        }
    }
}

/// The two-person rule.
#[derive(Debug, Clone)]
pub struct RequireSecond {
    /// Actions that wait for a second approval.
    pub actions: Vec<ActionPattern>,
    /// How long they wait.
    pub ttl: Duration,
}

/// `[admin] max_auth_failures` and `auth_failure_window`: how many refused admin authentications
/// one address may make before its token attempts are refused unchecked (429) until the window
/// that started with its first failure ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lockout {
    /// Failures that start the lockout.
    pub max_failures: u32,
    /// The counting window, from an address's first failure.
    pub window: Duration,
}

impl Default for Lockout {
    fn default() -> Lockout {
        Lockout { max_failures: 10, window: Duration::from_secs(5 * 60) }
    }
}

/// The admin directory of a policy.
#[derive(Debug, Clone, Default)]
pub struct Admins {
    /// `[[admins]]`, in policy order.
    pub identities: Vec<AdminIdentity>,
    /// `[admin.require_second]`, when set with at least one action.
    pub require_second: Option<RequireSecond>,
    /// The lockout after failed authentications.
    pub lockout: Lockout,
}

/// Switch actions an operator may send, with what their `:arg` names (`None`: no argument form).
/// `observe_tool` and `issue_canary` are the gateway's own and not listed.
pub const OPS: &[(&str, Option<&str>)] = &[
    ("set_level", Some("level")),
    ("safe_mode", Some("on|off")),
    ("block_user", Some("user")),
    ("unblock_user", Some("user")),
    ("block_tenant", Some("tenant")),
    ("unblock_tenant", Some("tenant")),
    ("limit_user", Some("user")),
    ("unlimit_user", Some("user")),
    ("revoke_key", Some("key_id")),
    ("terminate_session", Some("session")),
    ("disable_tool", Some("tool")),
    ("enable_tool", Some("tool")),
    ("disable_endpoint", Some("endpoint")),
    ("enable_endpoint", Some("endpoint")),
    ("block_egress", Some("host")),
    ("unblock_egress", Some("host")),
    ("isolate_server", Some("server")),
    ("restore_server", Some("server")),
    ("freeze_tools", Some("server")),
    ("unfreeze_tools", Some("server")),
    ("approve_tool", Some("server/tool")),
    ("reject_tool", Some("server/tool")),
    ("rotate_prompt", Some("prompt")),
    ("rotate_canary", Some("prompt")),
    ("restore_prompt", Some("prompt")),
];

/// Compiles `[[admins]]`, `[admin.require_second]` and the `[admin]` lockout, reporting every problem.
pub(super) fn compile(raw: &[RawAdminIdentity], admin: &super::raw::RawAdmin, problems: &mut Problems) -> Admins {
    let mut identities = Vec::new();
    let mut ids = HashSet::new();
    let mut digests: BTreeMap<[u8; 32], String> = BTreeMap::new();
    let mut certs: BTreeMap<String, String> = BTreeMap::new();
    for (i, a) in raw.iter().enumerate() {
        let at = |f: &str| -> Vec<Seg> { vec!["admins".into(), i.into(), f.into()] };
        if a.id.trim().is_empty() || a.id.chars().any(char::is_control) || a.id.len() > 128 {
            problems.add(0, at("id"), "an admin id must be 1 to 128 characters, no control characters", None);
        } else if !ids.insert(a.id.clone()) {
            problems.add(
                0,
                at("id"),
                format!("admin id `{}` is used twice", a.id),
                Some("admin ids must be unique".into()),
            );
        }
        let role = AdminRole::parse(&a.role);
        if role.is_none() {
            problems.add(
                0,
                at("role"),
                format!("admin `{}`: unknown role `{}`", a.id, a.role),
                Some("roles are viewer, responder, admin".into()),
            );
        }
        let sha256 = a.sha256.as_deref().and_then(|h| {
            let mut d = [0u8; 32];
            if h.len() == 64 && hex::decode_to_slice(h, &mut d).is_ok() {
                Some(d)
            } else {
                problems.add(
                    0,
                    at("sha256"),
                    format!("admin `{}`: sha256 must be 64 hex digits", a.id),
                    Some("run `firebreak key new --id ID` (or `printf %s TOKEN | sha256sum`) and use its hash".into()),
                );
                None
            }
        });
        if let Some(d) = sha256 {
            if let Some(other) = digests.insert(d, a.id.clone()) {
                problems.add(
                    0,
                    at("sha256"),
                    format!("admin `{}` has the same token hash as admin `{other}`", a.id),
                    Some("give every admin a token of their own".into()),
                );
            }
        }
        let cert_identity = a.cert_identity.as_deref().map(str::trim).filter(|c| !c.is_empty()).map(str::to_owned);
        if a.cert_identity.is_some() && cert_identity.is_none() {
            problems.add(0, at("cert_identity"), format!("admin `{}`: cert_identity is empty", a.id), None);
        }
        if let Some(c) = &cert_identity {
            if let Some(other) = certs.insert(c.clone(), a.id.clone()) {
                problems.add(
                    0,
                    at("cert_identity"),
                    format!("admin `{}` has the same cert_identity `{c}` as admin `{other}`", a.id),
                    None,
                );
            }
        }
        if a.sha256.is_none() && a.cert_identity.is_none() {
            problems.add(
                0,
                vec!["admins".into(), i.into()],
                format!("admin `{}` has neither sha256 nor cert_identity: it could never log in", a.id),
                Some("set sha256 (a token's hash), cert_identity (an mTLS client identity), or both".into()),
            );
        }
        if let Some(role) = role {
            identities.push(AdminIdentity { id: a.id.clone(), role, sha256, cert_identity });
        }
    }
    let require_second = admin.require_second.as_ref().and_then(|s| compile_second(s, problems));
    Admins { identities, require_second, lockout: compile_lockout(admin, problems) }
}

fn compile_lockout(admin: &super::raw::RawAdmin, problems: &mut Problems) -> Lockout {
    let default = Lockout::default();
    let max_failures = match admin.max_auth_failures {
        None => default.max_failures,
        Some(n) => match u32::try_from(n) {
            Ok(n) if (1..=10_000).contains(&n) => n,
            _ => {
                problems.add(
                    0,
                    vec!["admin".into(), "max_auth_failures".into()],
                    format!("`{n}` is not between 1 and 10000"),
                    Some("the default is 10 failed authentications per address".into()),
                );
                default.max_failures
            }
        },
    };
    let window = match &admin.auth_failure_window {
        None => default.window,
        Some(t) => match humantime::parse_duration(t) {
            Ok(d) if d >= Duration::from_secs(1) && d <= Duration::from_secs(24 * 3600) => d,
            _ => {
                problems.add(
                    0,
                    vec!["admin".into(), "auth_failure_window".into()],
                    format!("`{t}` is not a duration between 1s and 24h"),
                    Some("write e.g. \"5m\" (the default)".into()),
                );
                default.window
            }
        },
    };
    Lockout { max_failures, window }
}

fn compile_second(s: &RawRequireSecond, problems: &mut Problems) -> Option<RequireSecond> {
    let at = |f: &str| -> Vec<Seg> { vec!["admin".into(), "require_second".into(), f.into()] };
    let mut actions = Vec::new();
    for (i, name) in s.actions.iter().enumerate() {
        let here = || -> Vec<Seg> { vec!["admin".into(), "require_second".into(), "actions".into(), i.into()] };
        let (op, arg) = match name.split_once(':') {
            Some((op, arg)) => (op.trim(), Some(arg.trim())),
            None => (name.trim(), None),
        };
        let Some((_, arg_kind)) = OPS.iter().find(|(o, _)| *o == op) else {
            problems.add(
                0,
                here(),
                format!("unknown action `{name}`"),
                Some(format!(
                    "name a switch action, optionally with its argument (`set_level:normal`); actions: {}",
                    OPS.iter().map(|(o, _)| *o).collect::<Vec<_>>().join(", ")
                )),
            );
            continue;
        };
        if let Some(a) = arg {
            let ok = match *arg_kind {
                Some("level") => super::Level::parse(a).is_some(),
                Some("on|off") => a == "on" || a == "off",
                Some("server/tool") => a.split_once('/').is_some_and(|(s, t)| !s.is_empty() && !t.is_empty()),
                _ => !a.is_empty(),
            };
            if !ok {
                problems.add(
                    0,
                    here(),
                    format!("`{name}`: `{a}` is not a {} for `{op}`", arg_kind.unwrap_or("value")),
                    Some(match *arg_kind {
                        Some("level") => "levels are normal, elevated, critical, lockdown".into(),
                        Some("on|off") => "write safe_mode:on or safe_mode:off".into(),
                        Some("server/tool") => "write approve_tool:SERVER/TOOL".into(),
                        _ => format!("write {op}:VALUE"),
                    }),
                );
                continue;
            }
        }
        actions.push(ActionPattern { op: op.to_owned(), arg: arg.map(str::to_owned) });
    }
    let ttl = match &s.ttl {
        None => DEFAULT_SECOND_TTL,
        Some(t) => match humantime::parse_duration(t) {
            Ok(d) if d >= Duration::from_secs(1) && d <= Duration::from_secs(7 * 24 * 3600) => d,
            _ => {
                problems.add(
                    0,
                    at("ttl"),
                    format!("`{t}` is not a duration between 1s and 7d"),
                    Some("write e.g. \"15m\"".into()),
                );
                DEFAULT_SECOND_TTL
            }
        },
    };
    (!actions.is_empty()).then_some(RequireSecond { actions, ttl })
}
