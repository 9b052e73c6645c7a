//! Switch actions: what a security lead can flip, each validated before anything changes.

use std::collections::BTreeMap;
use std::time::SystemTime;

use serde::Serialize;

use super::{Entry, Snapshot};
use crate::config::action::Action;
use crate::config::{Level, Policy};
use crate::protocol::Endpoint;

impl Action {
    /// Why an approval (or rejection) no longer applies to the state `s`: the tool's pending
    /// definition is not the one the operator reviewed.
    pub fn stale(&self, s: &Snapshot) -> Option<String> {
        let (Action::ApproveTool { server, tool, hash } | Action::RejectTool { server, tool, hash }) = self else {
            return None;
        };
        let key = format!("{server}/{tool}");
        let pending = s.tool_pins.get(&key)?.pending.as_deref()?;
        if pending.eq_ignore_ascii_case(hash.trim()) {
            return None;
        }
        Some(format!(
            "the definition of `{key}` waiting for approval is now {}…, not {}… that you reviewed: it changed \
             since; review it again (firebreak admin pending-tools) and use its hash",
            &pending[..pending.len().min(12)],
            hash.chars().take(12).collect::<String>()
        ))
    }
}

/// An invalid action in a batch.
#[derive(Debug, Clone, thiserror::Error, Serialize)]
#[error("action {index}: {message}")]
pub struct ActionError {
    /// Position in the batch (0-based).
    pub index: usize,
    /// What is wrong and what to do.
    pub message: String,
}

impl ActionError {
    /// The problem of the action at `index` (0-based).
    pub fn at(index: usize, message: impl Into<String>) -> Self {
        ActionError::new(index, message)
    }

    pub(super) fn new(index: usize, message: impl Into<String>) -> Self {
        ActionError { index, message: message.into() }
    }
}

fn mcp_server<'a>(policy: &Policy, server: &'a str) -> Result<&'a str, String> {
    if policy.mcp.servers.contains_key(server) {
        Ok(server)
    } else {
        Err(format!(
            "unknown MCP server `{server}`; servers in the policy: {}",
            policy.mcp.servers.keys().cloned().collect::<Vec<_>>().join(", ")
        ))
    }
}

fn entry(actor: &str, reason: &str, now: SystemTime, ttl: Option<&str>) -> Result<Entry, String> {
    let expires = match ttl {
        None => None,
        Some(t) => {
            let d = humantime::parse_duration(t)
                .map_err(|_| format!("ttl `{t}` is not a duration; write e.g. 30m, 1h, 7d"))?;
            if d.is_zero() {
                return Err("ttl must be longer than zero".into());
            }
            Some(now + d)
        }
    };
    // Rounded up to the whole second: checks compare whole seconds, so rounding down would lift a
    // block up to a second early (a `1s` ttl could last a millisecond). A block lasts at least its ttl.
    let expires_unix = expires
        .and_then(|t| t.duration_since(SystemTime::UNIX_EPOCH).ok())
        .map(|d| d.as_secs() + u64::from(d.subsec_nanos() > 0));
    Ok(Entry {
        reason: reason.to_owned(),
        actor: actor.to_owned(),
        since: humantime::format_rfc3339_seconds(now).to_string(),
        expires: expires_unix.map(|s| {
            humantime::format_rfc3339_seconds(SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(s)).to_string()
        }),
        expires_unix,
    })
}

fn non_empty<'a>(what: &str, v: &'a str) -> Result<&'a str, String> {
    let v = v.trim();
    if v.is_empty() {
        Err(format!("{what} must not be empty"))
    } else if v.len() > 256 {
        Err(format!("{what} is longer than 256 characters"))
    } else {
        Ok(v)
    }
}

fn insert(map: &mut BTreeMap<String, Entry>, what: &str, id: &str, e: Entry) -> Result<(), String> {
    map.insert(non_empty(what, id)?.to_owned(), e);
    Ok(())
}

fn endpoint(name: &str) -> Result<Endpoint, String> {
    Endpoint::parse(name).ok_or_else(|| {
        let known: Vec<&str> = Endpoint::ALL.iter().map(|e| e.name()).collect();
        format!("unknown endpoint `{name}`; endpoints: {}", known.join(", "))
    })
}

impl Action {
    /// Applies the action to `s` (a private copy), or says why it is invalid.
    pub fn apply(
        &self,
        s: &mut Snapshot,
        policy: &Policy,
        actor: &str,
        reason: &str,
        now: SystemTime,
    ) -> Result<(), String> {
        match self {
            Action::SetLevel { level } => {
                s.level = Level::parse(level)
                    .ok_or_else(|| format!("unknown level `{level}`; levels: normal, elevated, critical, lockdown"))?;
            }
            Action::SafeMode { enabled } => s.safe_mode = *enabled,
            Action::BlockUser { user, ttl } => {
                insert(&mut s.blocked_users, "user", user, entry(actor, reason, now, ttl.as_deref())?)?
            }
            Action::UnblockUser { user } => {
                s.blocked_users.remove(non_empty("user", user)?);
            }
            Action::BlockTenant { tenant, ttl } => {
                insert(&mut s.blocked_tenants, "tenant", tenant, entry(actor, reason, now, ttl.as_deref())?)?
            }
            Action::LimitUser { user, requests_per_minute, ttl } => {
                let e = entry(actor, reason, now, ttl.as_deref())?;
                let user = non_empty("user", user)?.to_owned();
                s.limited_users.insert(user, super::UserLimit { requests_per_minute: *requests_per_minute, entry: e });
            }
            Action::UnlimitUser { user } => {
                s.limited_users.remove(non_empty("user", user)?);
            }
            Action::UnblockTenant { tenant } => {
                s.blocked_tenants.remove(non_empty("tenant", tenant)?);
            }
            Action::RevokeKey { key_id } => {
                if !policy.key_ids.contains_key(key_id) {
                    return Err(format!(
                        "unknown key id `{key_id}`; revoke by the id declared in the policy's [[keys]]"
                    ));
                }
                insert(&mut s.revoked_keys, "key_id", key_id, entry(actor, reason, now, None)?)?
            }
            Action::TerminateSession { session, ttl } => {
                let ttl = ttl.as_deref().or(Some("24h"));
                insert(&mut s.terminated_sessions, "session", session, entry(actor, reason, now, ttl)?)?
            }
            Action::DisableTool { tool, ttl } => {
                insert(&mut s.disabled_tools, "tool", tool, entry(actor, reason, now, ttl.as_deref())?)?
            }
            Action::EnableTool { tool } => {
                s.disabled_tools.remove(non_empty("tool", tool)?);
            }
            Action::DisableEndpoint { endpoint: name, ttl } => {
                let ep = endpoint(name)?;
                s.disabled_endpoints.insert(ep.name().to_owned(), entry(actor, reason, now, ttl.as_deref())?);
            }
            Action::BlockEgress { host, ttl } => {
                let h = non_empty("host", host)?.trim_end_matches('.').to_ascii_lowercase();
                if h.contains(['/', ':', '@', ' ']) && h.parse::<std::net::IpAddr>().is_err() {
                    return Err(format!("`{host}` is not a host name, domain or IP address (no scheme, port or path)"));
                }
                s.blocked_egress.insert(h, entry(actor, reason, now, ttl.as_deref())?);
            }
            Action::UnblockEgress { host } => {
                s.blocked_egress.remove(&non_empty("host", host)?.trim_end_matches('.').to_ascii_lowercase());
            }
            Action::EnableEndpoint { endpoint: name } => {
                s.disabled_endpoints.remove(endpoint(name)?.name());
            }
            Action::IsolateServer { server, ttl } => {
                let e = entry(actor, reason, now, ttl.as_deref())?;
                s.isolated_servers.insert(mcp_server(policy, server)?.to_owned(), e);
            }
            Action::RestoreServer { server } => {
                s.isolated_servers.remove(non_empty("server", server)?);
            }
            Action::FreezeTools { server } => {
                let e = entry(actor, reason, now, None)?;
                s.frozen_servers.insert(mcp_server(policy, server)?.to_owned(), e);
            }
            Action::UnfreezeTools { server } => {
                s.frozen_servers.remove(non_empty("server", server)?);
            }
            Action::ApproveTool { server, tool, hash } | Action::RejectTool { server, tool, hash } => {
                let key = format!("{}/{}", mcp_server(policy, server)?, non_empty("tool", tool)?);
                let since = humantime::format_rfc3339_seconds(now).to_string();
                let pin = s.tool_pins.get_mut(&key).filter(|p| p.pending.is_some()).ok_or_else(|| {
                    format!("`{key}` has no changed definition waiting for approval (firebreak admin pending-tools)")
                })?;
                // `stale` already refused another hash; this guards direct callers.
                if !pin.pending.as_deref().is_some_and(|p| p.eq_ignore_ascii_case(hash.trim())) {
                    return Err(format!("the definition of `{key}` waiting for approval is not {hash}"));
                }
                let pending = pin.pending.take();
                let definition = pin.pending_definition.take();
                pin.pending_since = None;
                pin.pending_reason = None;
                if matches!(self, Action::ApproveTool { .. }) {
                    pin.hash = pending;
                    pin.definition = definition;
                    pin.since = Some(since);
                } else if pin.hash.is_none() {
                    // Nothing was ever trusted: forget the tool, as if never seen.
                    s.tool_pins.remove(&key);
                }
            }
            Action::RotatePrompt { prompt }
            | Action::RotateCanary { prompt }
            | Action::RestorePrompt { prompt }
            | Action::IssueCanary { prompt } => {
                use super::prompts::PromptChange;
                let change = match self {
                    Action::RotatePrompt { .. } => PromptChange::RotatePrompt,
                    Action::RotateCanary { .. } => PromptChange::RotateCanary,
                    Action::RestorePrompt { .. } => PromptChange::Restore,
                    _ => PromptChange::Issue,
                };
                super::prompts::apply(s, policy.managed_prompt(prompt)?, change, actor, reason, now)?;
            }
            Action::ObserveTool { server, tool, hash, suspect, definition } => {
                let key = format!("{}/{}", mcp_server(policy, server)?, non_empty("tool", tool)?);
                if hash.len() != 64 || !hash.bytes().all(|b| b.is_ascii_hexdigit()) {
                    return Err("hash must be 64 hex digits (SHA-256)".into());
                }
                let hash = hash.to_ascii_lowercase();
                if definition.as_ref().is_some_and(|d| super::pins::definition_hash(d) != hash) {
                    return Err(format!("the definition observed for `{key}` does not have the hash {hash}"));
                }
                // A definition too large to keep is reviewed by its hash alone.
                let definition = definition.clone().filter(|d| d.to_string().len() <= super::pins::MAX_KEPT_DEFINITION);
                let since = humantime::format_rfc3339_seconds(now).to_string();
                let frozen = s.server_frozen(server, super::unix_now());
                let pin = s.tool_pins.entry(key).or_default();
                if pin.hash.as_deref() == Some(hash.as_str()) {
                    // Already trusted (first seen, or approved by an operator).
                    if pin.definition.is_none() {
                        pin.definition = definition;
                    }
                } else if pin.hash.is_none() && pin.pending.is_none() && !frozen && suspect.is_none() {
                    pin.hash = Some(hash);
                    pin.since = Some(since);
                    pin.definition = definition;
                } else if pin.pending.as_deref() != Some(hash.as_str()) {
                    pin.pending = Some(hash);
                    pin.pending_since = Some(since);
                    pin.pending_definition = definition;
                    pin.pending_reason = Some(match suspect {
                        Some(rule) => rule.clone(),
                        None if pin.hash.is_none() && frozen => "mcp.tool_frozen".into(),
                        None => "mcp.tool_changed".into(),
                    });
                } else if let Some(rule) = suspect.as_ref().filter(|r| r.as_str() == "mcp.tool_poisoned") {
                    // The same pending definition, now known to be poisoned: say so.
                    pin.pending_reason = Some(rule.clone());
                }
            }
        }
        Ok(())
    }
}
