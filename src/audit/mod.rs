//! The audit trail: append-only JSONL, each record chained to the previous one by SHA-256.
//!
//! Every record carries `seq` (its id), `time`, `prev` (the previous record's `hash`) and `hash`
//! (SHA-256 of the record serialised without `hash`, keys sorted). A head file (`<file>.head`)
//! remembers the last seq and hash so truncation at a line boundary is detected too.
//! Records are written by one task; the request path only sends to a channel. Nothing secret is ever
//! put in a record: callers pass key ids, rule ids and locations, never matched values.

mod verify;
mod writer;

use serde_json::{Map, Value};

pub use verify::{verify, VerifyError, VerifyReport};
pub use writer::{Audit, AuditError};

/// The `prev` of the first record.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// The path of the head file for an audit file.
pub fn head_path(path: &std::path::Path) -> std::path::PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(".head");
    s.into()
}

/// A record being built: `kind` plus fields. `seq`, `time`, `prev` and `hash` are added by the writer.
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

/// SHA-256 hex of a record map serialised without its `hash` key.
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
        let keep = match since {
            None => true,
            Some(s) => v
                .get("time")
                .and_then(Value::as_str)
                .and_then(|t| humantime::parse_rfc3339(t).ok())
                .is_some_and(|t| t >= s),
        };
        if keep {
            out.push_back(v);
            if out.len() > limit {
                out.pop_front();
            }
        }
    }
    Ok(out.into())
}
