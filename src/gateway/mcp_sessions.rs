//! MCP session bindings: a session id the server handed out belongs to the key whose request it
//! answered, and to no other principal. In memory (bounded, forgotten after a day idle); an id the
//! gateway did not see handed out is unknown. Held by the [`super::Gateway`], used by `mcp`
//! through [`bind`], [`lookup`] and [`forget`].
//!
//! Fleet mode: the memory is a read-through cache of the `mcp_sessions` table
//! ([`crate::fleet::sessions`]), so a session initialized through one replica works through every
//! other, for the same key. A binding is written before the initialize answer is returned; a cache
//! miss asks the table; an ended session is deleted and every replica told to drop it. While
//! PostgreSQL is unreachable a miss is an unknown session (fail closed: the client starts a new
//! one), and new bindings are kept here and written when it is back ([`flush_pending`]).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::Gateway;
use crate::fleet::sessions::binding;

/// Most bindings waiting for PostgreSQL (fleet mode, while it is unreachable).
const MAX_PENDING: usize = 10_000;

/// The session bindings of the MCP servers: `(server, session id)` → the key id that opened it,
/// keyed by [`binding`] (a digest: the raw id is not kept).
#[derive(Debug)]
pub struct McpSessions {
    cache: moka::sync::Cache<String, Arc<str>>,
    /// Fleet mode: bindings made while PostgreSQL was unreachable, (binding, key id).
    pending: Mutex<Vec<(String, Arc<str>)>>,
}

impl Default for McpSessions {
    fn default() -> McpSessions {
        McpSessions {
            cache: moka::sync::Cache::builder()
                .max_capacity(100_000)
                .time_to_idle(Duration::from_secs(24 * 3600))
                .build(),
            pending: Mutex::new(Vec::new()),
        }
    }
}

impl McpSessions {
    /// Binds a session `server` handed out to the key `key_id` (this process only).
    #[cfg(test)]
    fn bind(&self, server: &str, session: &str, key_id: &str) {
        self.cache.insert(binding(server, session), Arc::from(key_id));
    }

    /// The key id a session of `server` is bound to, if this process saw it handed out.
    #[cfg(test)]
    fn lookup(&self, server: &str, session: &str) -> Option<Arc<str>> {
        self.cache.get(&binding(server, session))
    }

    /// Forgets a session of `server` (the client ended it).
    #[cfg(test)]
    fn forget(&self, server: &str, session: &str) {
        self.invalidate(&binding(server, session));
    }

    /// Drops a binding by its digest (another replica ended the session).
    pub fn invalidate(&self, binding: &str) {
        self.cache.invalidate(binding);
        if let Ok(mut p) = self.pending.lock() {
            p.retain(|(b, _)| b != binding);
        }
    }

    fn queue(&self, binding: String, key_id: Arc<str>) {
        if let Ok(mut p) = self.pending.lock() {
            if p.len() < MAX_PENDING {
                p.push((binding, key_id));
            }
        }
    }

    fn take_pending(&self) -> Vec<(String, Arc<str>)> {
        self.pending.lock().map(|mut p| std::mem::take(&mut *p)).unwrap_or_default()
    }
}

/// Binds a session `server` handed out to `key_id`; in fleet mode written to the table before it
/// returns (kept here and written later when PostgreSQL is unreachable).
pub async fn bind(gw: &Gateway, server: &str, session: &str, key_id: &str) {
    let b = binding(server, session);
    let key: Arc<str> = Arc::from(key_id);
    gw.mcp_sessions.cache.insert(b.clone(), key.clone());
    let Some(fleet) = &gw.fleet else { return };
    if let Err(e) = crate::fleet::sessions::bind(fleet, &b, key_id).await {
        tracing::warn!(server, error = %e, "MCP session bound on this replica only until PostgreSQL is back");
        gw.mcp_sessions.queue(b, key);
    }
}

/// The key id a session of `server` is bound to. Fleet mode: a cache miss asks the table; when it
/// cannot, the session is unknown (fail closed).
pub async fn lookup(gw: &Gateway, server: &str, session: &str) -> Option<Arc<str>> {
    let b = binding(server, session);
    if let Some(k) = gw.mcp_sessions.cache.get(&b) {
        return Some(k);
    }
    let fleet = gw.fleet.as_ref()?;
    match crate::fleet::sessions::lookup(fleet, &b).await {
        Ok(Some(k)) => {
            let k: Arc<str> = Arc::from(k);
            gw.mcp_sessions.cache.insert(b, k.clone());
            Some(k)
        }
        Ok(None) => None,
        Err(e) => {
            tracing::warn!(server, error = %e, "MCP session unknown here and PostgreSQL unreachable: refused");
            None
        }
    }
}

/// Forgets a session of `server` (the client ended it); in fleet mode on every replica.
pub async fn forget(gw: &Gateway, server: &str, session: &str) {
    let b = binding(server, session);
    gw.mcp_sessions.invalidate(&b);
    let Some(fleet) = &gw.fleet else { return };
    if let Err(e) = crate::fleet::sessions::unbind(fleet, &b).await {
        tracing::warn!(server, error = %e, "ended MCP session not removed from the fleet table");
    }
}

/// Fleet mode: writes the bindings made while PostgreSQL was unreachable (those that fail again
/// stay queued).
pub async fn flush_pending(gw: &Gateway) {
    let Some(fleet) = &gw.fleet else { return };
    let pending = gw.mcp_sessions.take_pending();
    let mut failed = Vec::new();
    for (b, key) in pending {
        if crate::fleet::sessions::bind(fleet, &b, &key).await.is_err() {
            failed.push((b, key));
        }
    }
    for (b, key) in failed {
        gw.mcp_sessions.queue(b, key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sessions_are_scoped_by_server_and_forgotten() {
        let s = McpSessions::default();
        s.bind("a", "s1", "key-1");
        assert_eq!(s.lookup("a", "s1").as_deref(), Some("key-1"));
        assert_eq!(s.lookup("b", "s1"), None, "another server's id is not this one's");
        s.forget("a", "s1");
        assert_eq!(s.lookup("a", "s1"), None);
        s.bind("a", "s2", "key-2");
        s.invalidate(&binding("a", "s2"));
        assert_eq!(s.lookup("a", "s2"), None, "dropped by digest (another replica ended it)");
    }
}
