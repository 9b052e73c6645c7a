//! MCP session bindings: a session id the server handed out belongs to the key whose request it
//! answered, and to no other principal. In memory (bounded, forgotten after a day idle); an id the
//! gateway did not see handed out is unknown. Held by the [`super::Gateway`], used by `mcp`.

use std::sync::Arc;
use std::time::Duration;

/// The session bindings of the MCP servers: `(server, session id)` → the key id that opened it.
#[derive(Debug)]
pub struct McpSessions(moka::sync::Cache<String, Arc<str>>);

impl Default for McpSessions {
    fn default() -> McpSessions {
        McpSessions(
            moka::sync::Cache::builder().max_capacity(100_000).time_to_idle(Duration::from_secs(24 * 3600)).build(),
        )
    }
}

/// The key of a session binding: session ids are the server's, so they are scoped by server.
fn session_key(server: &str, session: &str) -> String {
    format!("{server}\n{session}")
}

impl McpSessions {
    /// Binds a session `server` handed out to the key `key_id`.
    pub fn bind(&self, server: &str, session: &str, key_id: &str) {
        self.0.insert(session_key(server, session), Arc::from(key_id));
    }

    /// The key id a session of `server` is bound to, if the gateway saw it handed out.
    pub fn lookup(&self, server: &str, session: &str) -> Option<Arc<str>> {
        self.0.get(&session_key(server, session))
    }

    /// Forgets a session of `server` (the client ended it).
    pub fn forget(&self, server: &str, session: &str) {
        self.0.invalidate(&session_key(server, session));
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
    }
}
