//! The audit trail: append-only JSONL, each record chained to the previous one by a keyed MAC.
//!
//! Every record carries `seq` (its id), `time`, `prev` (the previous record's `mac`), `kid` (the id
//! of the audit key, never the key) and `mac` (HMAC-SHA-256 with that key of the record serialised
//! without `mac`, keys sorted). A head file (`<file>.head`) holds the last seq and a MAC over it and
//! that record's MAC, so truncation at a line boundary is detected too. Trails written before keys
//! existed carry `hash` (SHA-256) instead; [`verify`] accepts them only before the first keyed
//! record. What verification does and does not prove: see `verify.rs`.
//! Records are written by one task; the request path only sends to a channel. Nothing secret is ever
//! put in a record: callers pass key ids, rule ids and locations, never matched values, and strings
//! the client chose go through [`client_text`]; session ids are stored as [`session_digest`]s.

mod exchange;
mod key;
mod ship;
mod verify;
mod writer;

use serde_json::{Map, Value};

pub use exchange::Exchange;
pub(crate) use key::head_message;
pub use key::{default_key_path, writing_key, AuditKey};
pub use ship::{shipper_channel, Chunk, ShipperHandle, ShipperQueue};
pub use verify::{verify, verify_lines, HeadCheck, TrailHead, VerifyError, VerifyOptions, VerifyReport};
pub use writer::{Audit, AuditError};

/// The `prev` of the first record.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// The path of the head file for an audit file.
pub fn head_path(path: &std::path::Path) -> std::path::PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(".head");
    s.into()
}

/// A record being built: `kind` plus fields. `seq`, `time`, `prev` and `kid` are added by the
/// writer. The request path's records are typed instead ([`Exchange`]).
#[derive(Debug, Clone)]
pub struct Record(Map<String, Value>);

impl Record {
    /// A record of `kind` (`request`, `switch`, `policy`, …).
    pub fn new(kind: &str) -> Self {
        let mut m = Map::new();
        m.insert("kind".into(), Value::from(kind));
        Record(m)
    }

    /// Adds a field.
    pub fn with(mut self, key: &str, value: impl Into<Value>) -> Self {
        self.0.insert(key.to_owned(), value.into());
        self
    }

    /// The fields so far.
    pub fn fields(&self) -> &Map<String, Value> {
        &self.0
    }

    /// Adds a field when present.
    pub fn with_opt(self, key: &str, value: Option<impl Into<Value>>) -> Self {
        match value {
            Some(v) => self.with(key, v),
            None => self,
        }
    }
}

/// What the writer appends: a control-plane [`Record`] (switches, policies, incidents, …) or an
/// exchange's typed record, serialised straight from its fields.
#[derive(Debug, Clone)]
pub enum Entry {
    /// A record built as a map.
    Fields(Record),
    /// The record of an exchange (the request path's record).
    Exchange(Box<Exchange>),
}

impl From<Record> for Entry {
    fn from(r: Record) -> Entry {
        Entry::Fields(r)
    }
}

impl From<Exchange> for Entry {
    fn from(e: Exchange) -> Entry {
        Entry::Exchange(Box::new(e))
    }
}

/// Longest client-supplied string kept in a record (a model name, a tool name), in characters.
pub const MAX_CLIENT_TEXT: usize = 128;
/// Most client-supplied names kept in one list field (tools stripped); the rest are counted.
pub const MAX_CLIENT_LIST: usize = 32;

/// A string the client chose (model name, tool name), made fit for the trail: every secret the
/// scanner finds redacted (on the whole string, before anything is cut, so half a secret cannot slip
/// through), control and bidirectional-formatting characters escaped as `\u{…}` (so a reader
/// printing the trail to a terminal sees them, and no escape sequence runs), and the result cut to
/// [`MAX_CLIENT_TEXT`] characters with a `…` marker.
pub fn client_text(scanner: &crate::inspect::Scanner, s: &str) -> String {
    client_text_capped(scanner, s, MAX_CLIENT_TEXT)
}

/// [`client_text`] with another cap, in characters (a user agent keeps more than a model name).
pub fn client_text_capped(scanner: &crate::inspect::Scanner, s: &str, max: usize) -> String {
    let (redacted, _) = scanner.redact(s);
    let mut out = String::with_capacity(redacted.len().min(max * 2));
    for (n, c) in redacted.chars().enumerate() {
        if n == max {
            out.push('…');
            break;
        }
        if c.is_control() || matches!(c, '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}') {
            use std::fmt::Write;
            let _ = write!(out, "\\u{{{:x}}}", c as u32);
        } else {
            out.push(c);
        }
    }
    out
}

/// A list of client-chosen names (tools stripped) for a record: each through [`client_text`], at
/// most [`MAX_CLIENT_LIST`] of them, then one `"… (+N more)"` entry.
pub fn client_list(scanner: &crate::inspect::Scanner, names: &[String]) -> Vec<String> {
    let mut out: Vec<String> = names.iter().take(MAX_CLIENT_LIST).map(|n| client_text(scanner, n)).collect();
    if names.len() > MAX_CLIENT_LIST {
        out.push(format!("… (+{} more)", names.len() - MAX_CLIENT_LIST));
    }
    out
}

/// What the trail stores for a session id (`x-session-id`, `Mcp-Session-Id`): never the id, which a
/// client may fill with anything (a credential, once), but `sha256:` and the first 16 hex digits of
/// its SHA-256. Records of one session still correlate, and an operator holding an id finds them
/// with `printf %s "$ID" | sha256sum | cut -c1-16`. Unkeyed on purpose: the digest stays the same
/// across audit-key rotations and needs no key to compute; 64 bits reveal nothing usable of a
/// random id or a credential.
pub fn session_digest(session: &str) -> String {
    use sha2::{Digest, Sha256};
    let d = Sha256::digest(session.as_bytes());
    format!("sha256:{}", hex::encode(&d[..8]))
}

/// Replaces every session id in a record's fields by its [`session_digest`]: the top-level
/// `session` and the `session` of each entry of `actions` (a `terminate_session` in a switch
/// record). Runs on the writer thread, after the incident engine has read the record (it needs the
/// id itself, to terminate the session).
pub(crate) fn digest_sessions(m: &mut Map<String, Value>) {
    fn digest(v: &mut Value) {
        if let Value::String(s) = v {
            *s = session_digest(s);
        }
    }
    if let Some(v) = m.get_mut("session") {
        digest(v);
    }
    if let Some(Value::Array(actions)) = m.get_mut("actions") {
        for a in actions {
            if let Some(v) = a.get_mut("session") {
                digest(v);
            }
        }
    }
}

/// SHA-256 hex of a record map serialised without its `hash` key (legacy, unkeyed records).
pub(crate) fn record_hash(m: &Map<String, Value>) -> String {
    use sha2::{Digest, Sha256};
    // serde_json's Map is ordered by key, so serialisation is canonical.
    let s = serde_json::to_string(m).unwrap_or_default();
    hex::encode(Sha256::digest(s.as_bytes()))
}

/// Reads the records with `time >= since` (RFC 3339 comparison), at most `limit`, oldest first.
pub fn read_since(
    path: &std::path::Path,
    since: Option<std::time::SystemTime>,
    limit: usize,
) -> std::io::Result<Vec<Value>> {
    read_matching(path, since, limit, |_| true)
}

/// [`read_since`], keeping only the records `keep` accepts (the newest `limit` of them).
pub fn read_matching(
    path: &std::path::Path,
    since: Option<std::time::SystemTime>,
    limit: usize,
    keep: impl Fn(&Value) -> bool,
) -> std::io::Result<Vec<Value>> {
    use std::io::BufRead;
    let f = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut out = std::collections::VecDeque::new();
    for line in std::io::BufReader::new(f).lines() {
        let line = line?;
        let Ok(v) = serde_json::from_str::<Value>(&line) else { continue };
        let keep_time = match since {
            None => true,
            Some(s) => v
                .get("time")
                .and_then(Value::as_str)
                .and_then(|t| humantime::parse_rfc3339(t).ok())
                .is_some_and(|t| t >= s),
        };
        if keep_time && keep(&v) {
            out.push_back(v);
            if out.len() > limit {
                out.pop_front();
            }
        }
    }
    Ok(out.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scanner() -> crate::inspect::Scanner {
        let rules = crate::inspect::catalog::builtin().expect("catalog").into_iter().map(|(r, _)| r).collect();
        crate::inspect::Scanner::new(rules, "[REDACTED:<rule-id>]").expect("scanner")
    }

    #[test]
    fn client_text_redacts_escapes_and_caps() {
        let s = scanner();
        assert_eq!(client_text(&s, "gpt-4o"), "gpt-4o", "ordinary names pass unchanged");
        assert_eq!(client_text(&s, "m AKIAZ7QH3K2M9XW4LR5T"), "m [REDACTED:aws_access_key_id]");
        assert_eq!(client_text(&s, "a\u{1b}[2Jb\nc\u{202e}d"), "a\\u{1b}[2Jb\\u{a}c\\u{202e}d");
        let long = client_text(&s, &"x".repeat(1000));
        assert_eq!(long.chars().count(), MAX_CLIENT_TEXT + 1);
        assert!(long.ends_with('…'));
        // A secret cut by the cap is redacted first, so no half of it survives.
        let at_edge = format!("{} AKIAZ7QH3K2M9XW4LR5T", "y".repeat(MAX_CLIENT_TEXT - 11));
        assert!(!client_text(&s, &at_edge).contains("AKIAZ7"));
        let names: Vec<String> = (0..40).map(|i| format!("t{i}")).collect();
        let list = client_list(&s, &names);
        assert_eq!(list.len(), MAX_CLIENT_LIST + 1);
        assert_eq!(list[MAX_CLIENT_LIST], "… (+8 more)");
    }

    #[test]
    fn session_ids_are_digested_wherever_a_record_names_one() {
        let mut m = Record::new("switch")
            .with("session", "s-1")
            .with("actions", serde_json::json!([{"action": "terminate_session", "session": "s-1"}, {"action": "x"}]))
            .0;
        digest_sessions(&mut m);
        let d = session_digest("s-1");
        assert_eq!(d.len(), "sha256:".len() + 16);
        assert_eq!(m["session"], Value::from(d.clone()));
        assert_eq!(m["actions"][0]["session"], Value::from(d));
        assert!(m["actions"][1].get("session").is_none());
    }
}
