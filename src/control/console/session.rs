//! The console's server-side session table: a random 256-bit id in an HttpOnly cookie, looked up by
//! its SHA-256 (so the lookup's timing says nothing about stored ids), each with its identity, its
//! CSRF synchronizer token and an absolute expiry. Bounded: when full, expired sessions go first,
//! then the oldest.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use rand::RngCore;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::who::Identity;

/// The cookie's name.
pub const COOKIE: &str = "firebreak_console";
/// How long a session lasts after login (absolute, not sliding).
pub const TTL: Duration = Duration::from_secs(8 * 3600);
/// Most sessions held at once.
pub const MAX_SESSIONS: usize = 1024;

/// One logged-in browser.
#[derive(Debug, Clone)]
pub struct Session {
    /// Who logged in.
    pub identity: Identity,
    /// How (`token` or `certificate`).
    pub method: &'static str,
    /// The synchronizer token every state-changing call must echo (hex).
    pub csrf: String,
    expires: Instant,
    created: Instant,
}

/// The table.
#[derive(Debug, Default)]
pub struct Sessions {
    by_digest: Mutex<HashMap<[u8; 32], Session>>,
}

fn random_hex() -> String {
    let mut b = [0u8; 32];
    rand::rng().fill_bytes(&mut b);
    hex::encode(b)
}

fn digest(id: &str) -> [u8; 32] {
    Sha256::digest(id.as_bytes()).into()
}

impl Sessions {
    /// Opens a session; returns its id (for the cookie only: never logged, never in a page).
    pub fn create(&self, identity: Identity, method: &'static str) -> String {
        let id = random_hex();
        let now = Instant::now();
        let s = Session { identity, method, csrf: random_hex(), expires: now + TTL, created: now };
        let mut t = self.by_digest.lock().unwrap_or_else(|p| p.into_inner());
        if t.len() >= MAX_SESSIONS {
            t.retain(|_, s| s.expires > now);
        }
        while t.len() >= MAX_SESSIONS {
            let Some(oldest) = t.iter().min_by_key(|(_, s)| s.created).map(|(k, _)| *k) else { break };
            t.remove(&oldest);
        }
        t.insert(digest(&id), s);
        id
    }

    /// The live session of `id`, if any (an expired one is removed).
    pub fn get(&self, id: &str) -> Option<Session> {
        let key = digest(id);
        let mut t = self.by_digest.lock().unwrap_or_else(|p| p.into_inner());
        match t.get(&key) {
            Some(s) if s.expires > Instant::now() => Some(s.clone()),
            Some(_) => {
                t.remove(&key);
                None
            }
            None => None,
        }
    }

    /// Ends a session.
    pub fn remove(&self, id: &str) {
        self.by_digest.lock().unwrap_or_else(|p| p.into_inner()).remove(&digest(id));
    }

    /// Sessions held (for tests and the bound).
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.by_digest.lock().unwrap_or_else(|p| p.into_inner()).len()
    }
}

impl Session {
    /// Whether `presented` is this session's CSRF token (constant time).
    pub fn csrf_ok(&self, presented: Option<&str>) -> bool {
        match presented {
            Some(p) => bool::from(p.as_bytes().ct_eq(self.csrf.as_bytes())),
            None => false,
        }
    }

    /// Seconds left.
    pub fn remaining(&self) -> u64 {
        self.expires.saturating_duration_since(Instant::now()).as_secs()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::control::console::who::Role;

    fn who() -> Identity {
        Identity { id: "ops".into(), role: Role::Admin }
    }

    #[test]
    fn ids_are_random_and_csrf_is_checked() {
        let t = Sessions::default();
        let a = t.create(who(), "token");
        let b = t.create(who(), "token");
        assert_ne!(a, b);
        assert_eq!(a.len(), 64, "256 bits, hex");
        let s = t.get(&a).expect("session");
        assert!(s.csrf_ok(Some(&s.csrf.clone())));
        assert!(!s.csrf_ok(Some("nope")));
        assert!(!s.csrf_ok(None));
        t.remove(&a);
        assert!(t.get(&a).is_none());
        assert!(t.get("unknown").is_none());
    }

    #[test]
    fn the_table_is_bounded() {
        let t = Sessions::default();
        let first = t.create(who(), "token");
        for _ in 0..MAX_SESSIONS {
            t.create(who(), "token");
        }
        assert_eq!(t.len(), MAX_SESSIONS);
        assert!(t.get(&first).is_none(), "the oldest session made room");
    }
}
