//! Evidence capture around incidents (`[forensics]`, off by default), and forensic bundles.
//!
//! While it is on, every finished exchange of an authenticated principal (the request body and the
//! body the client received; for a stream, the bytes the client was sent) is redacted by the
//! policy's scanner — secrets, PII, canaries: the raw value is never kept, not even in memory — cut
//! to `max_payload_bytes`, and pushed into that principal's ring: the newest exchanges within
//! `before`, at most `max_entries` and `max_bytes` of them. Rings live in a bounded cache
//! (`max_memory_bytes / max_bytes` principals, least recently used forgotten, idle ones expire
//! after `before`), so memory is bounded overall.
//!
//! When an incident opens ([`Forensics::incident_opened`], called by the incident engine), the
//! principal's ring is written to the evidence store as the incident's file, and for `after` the
//! principal's next exchanges are appended to it (at most `max_entries` and `max_bytes` more). The
//! store ([`store`]) is a directory (`0700`) of one JSONL file per incident (`0600`) and a
//! `MANIFEST.sha256` (`sha256sum -c` format), written by one thread off the request path.
//!
//! When it is off, nothing here runs: the request path tests one `bool` and keeps no payload.
//!
//! [`bundle`] builds and verifies the forensic bundle of an incident
//! (`firebreak admin incident ID --export FILE`, `firebreak audit verify-bundle FILE`).

pub mod bundle;
pub mod store;

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use serde_json::{Map, Value};

use crate::audit::Exchange;
use crate::config::forensics::ForensicsSettings;

/// The payloads of one exchange, kept only while forensics is on.
#[derive(Debug, Default)]
pub struct Capture {
    request: Option<Bytes>,
    response: Vec<u8>,
    response_truncated: bool,
    limit: usize,
}

impl Capture {
    /// A capture of at most `limit` response bytes.
    pub fn new(limit: usize) -> Capture {
        Capture { limit, ..Capture::default() }
    }

    /// The request body as the client sent it (redacted when the exchange is captured).
    pub fn set_request(&mut self, body: Bytes) {
        self.request = Some(body);
    }

    /// The whole response body the client received.
    pub fn set_response(&mut self, body: &[u8]) {
        self.response.clear();
        self.push_response(body);
    }

    /// More of a streamed response, as sent to the client (kept up to the limit).
    pub fn push_response(&mut self, bytes: &[u8]) {
        let room = self.limit.saturating_sub(self.response.len());
        if bytes.len() > room {
            self.response_truncated = true;
        }
        self.response.extend_from_slice(&bytes[..bytes.len().min(room)]);
    }
}

/// Adds what a stream pump sends the client to its capture, when there is one; returns the bytes.
pub fn kept(capture: &mut Option<Capture>, bytes: Bytes) -> Bytes {
    if let Some(c) = capture {
        c.push_response(&bytes);
    }
    bytes
}

/// One redacted exchange, serialised once.
#[derive(Debug)]
struct Entry {
    at: Instant,
    json: Arc<str>,
}

#[derive(Debug, Default)]
struct Ring {
    entries: VecDeque<Entry>,
    bytes: usize,
}

impl Ring {
    fn push(&mut self, e: Entry, s: &ForensicsSettings) {
        self.bytes += e.json.len();
        self.entries.push_back(e);
        let now = Instant::now();
        while let Some(first) = self.entries.front() {
            let old = now.saturating_duration_since(first.at) > s.before;
            if !(old || self.entries.len() > s.max_entries || self.bytes > s.max_bytes) {
                break;
            }
            if let Some(gone) = self.entries.pop_front() {
                self.bytes -= gone.json.len();
            }
        }
    }
}

/// An incident whose principal's exchanges are being written ("after" window).
#[derive(Debug)]
struct Recording {
    incident: String,
    until: Instant,
    entries: usize,
    bytes: usize,
}

/// The evidence capture of a running gateway.
#[derive(Debug)]
pub struct Forensics {
    on: Option<On>,
}

#[derive(Debug)]
struct On {
    settings: Arc<ForensicsSettings>,
    rings: moka::sync::Cache<String, Arc<Mutex<Ring>>>,
    recording: moka::sync::Cache<String, Arc<Mutex<Vec<Recording>>>>,
    store: store::Store,
}

impl Forensics {
    /// Off: nothing is captured.
    pub fn off() -> Forensics {
        Forensics { on: None }
    }

    /// Capture with `settings`, into the store they name (created `0700` if needed).
    pub fn open(settings: Arc<ForensicsSettings>) -> Result<Forensics, String> {
        let store = store::Store::open(&settings.dir)?;
        let rings =
            moka::sync::Cache::builder().max_capacity(settings.max_principals()).time_to_idle(settings.before).build();
        let recording = moka::sync::Cache::builder()
            .max_capacity(10_000)
            .time_to_live(settings.after + Duration::from_secs(1))
            .build();
        Ok(Forensics { on: Some(On { settings, rings, recording, store }) })
    }

    /// Whether exchanges are captured (one load on the request path).
    pub fn is_on(&self) -> bool {
        self.on.is_some()
    }

    /// An empty capture for a new exchange, when capture is on.
    pub fn start(&self) -> Option<Capture> {
        self.on.as_ref().map(|o| Capture::new(o.settings.max_payload_bytes))
    }

    /// The evidence store's directory, when capture is on.
    pub fn dir(&self) -> Option<&std::path::Path> {
        self.on.as_ref().map(|o| o.settings.dir.as_path())
    }

    /// Keeps a finished exchange of the principal its audit `record` names: redacted with `scanner`,
    /// pushed into the principal's ring, and written to the store for each of the principal's
    /// incidents still in their "after" window.
    pub fn capture(&self, record: &Exchange, capture: Capture, scanner: &crate::inspect::Scanner) {
        let Some(on) = &self.on else { return };
        let Some(user) = record.user() else { return };
        let json: Arc<str> = entry_json(record, capture, scanner, on.settings.max_payload_bytes).into();
        if let Some(rec) = on.recording.get(user) {
            let now = Instant::now();
            let mut list = rec.lock().unwrap_or_else(|p| p.into_inner());
            list.retain(|r| r.until > now);
            for r in list.iter_mut() {
                if r.entries < on.settings.max_entries && r.bytes + json.len() <= on.settings.max_bytes {
                    r.entries += 1;
                    r.bytes += json.len();
                    on.store.append(&r.incident, "after", json.clone());
                }
            }
        }
        let ring = on.rings.get_with_by_ref(user, Default::default);
        ring.lock().unwrap_or_else(|p| p.into_inner()).push(Entry { at: Instant::now(), json }, &on.settings);
    }

    /// An incident opened for `user`: its ring goes to the store as the incident's "before"
    /// window, and the user's exchanges for the "after" window follow.
    pub fn incident_opened(&self, incident: &crate::incident::Incident) {
        let Some(on) = &self.on else { return };
        let Some(user) = incident.principal.user.as_deref() else { return };
        let now = Instant::now();
        let before: Vec<Arc<str>> = match on.rings.get(user) {
            Some(ring) => {
                let ring = ring.lock().unwrap_or_else(|p| p.into_inner());
                ring.entries
                    .iter()
                    .filter(|e| now.saturating_duration_since(e.at) <= on.settings.before)
                    .map(|e| e.json.clone())
                    .collect()
            }
            None => Vec::new(),
        };
        let s = &on.settings;
        let header = serde_json::json!({
            "phase": "header",
            "incident": incident.id,
            "trigger": incident.trigger,
            "severity": incident.severity.as_str(),
            "user": user,
            "tenant": incident.principal.tenant,
            "opened": incident.first_seen,
            "before": humantime::format_duration(s.before).to_string(),
            "after": humantime::format_duration(s.after).to_string(),
            "max_entries": s.max_entries,
            "max_bytes": s.max_bytes,
            "max_payload_bytes": s.max_payload_bytes,
        });
        on.store.open_incident(&incident.id, header.to_string(), before);
        let slot = on.recording.get_with_by_ref(user, Default::default);
        slot.lock().unwrap_or_else(|p| p.into_inner()).push(Recording {
            incident: incident.id.clone(),
            until: now + s.after,
            entries: 0,
            bytes: 0,
        });
        // Stored again so the entry lives `after` from this incident, not from an earlier one.
        on.recording.insert(user.to_owned(), slot);
    }

    /// Waits until everything captured so far is on disk (for an export).
    pub async fn flush(&self) {
        if let Some(on) = &self.on {
            on.store.flush().await;
        }
    }
}

/// The stored form of one exchange: who, what, when (from its audit record; the session as its
/// digest) and the payloads, redacted and cut.
fn entry_json(r: &Exchange, c: Capture, scanner: &crate::inspect::Scanner, max: usize) -> String {
    let mut m = Map::new();
    m.insert("time".into(), Value::from(humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string()));
    m.insert("request_id".into(), Value::from(r.request_id.as_str()));
    m.insert("kind".into(), Value::from(r.kind));
    m.insert("event".into(), Value::from(r.event));
    let key = r.principal.as_deref();
    let known = [
        ("endpoint", r.endpoint.map(Value::from)),
        ("server", r.server.as_deref().map(Value::from)),
        ("status", r.status.map(Value::from)),
        ("stream", r.stream.map(Value::from)),
        ("user", key.map(|k| Value::from(k.user.as_str()))),
        ("tenant", key.map(|k| Value::from(k.tenant.as_str()))),
        ("key_id", key.map(|k| Value::from(k.id.as_str()))),
        ("session", r.session.as_deref().map(|s| Value::from(crate::audit::session_digest(s)))),
    ];
    for (k, v) in known {
        if let Some(v) = v {
            m.insert(k.into(), v);
        }
    }
    let mut truncated = Vec::new();
    if let Some(body) = &c.request {
        let (v, cut) = redacted_payload(body, scanner, max);
        m.insert("request".into(), v);
        if cut {
            truncated.push("request");
        }
    }
    if !c.response.is_empty() {
        let (v, cut) = redacted_payload(&c.response, scanner, max);
        m.insert("response".into(), v);
        if cut || c.response_truncated {
            truncated.push("response");
        }
    }
    if !truncated.is_empty() {
        m.insert("truncated".into(), Value::from(truncated));
    }
    Value::Object(m).to_string()
}

/// A payload with every string redacted by `scanner` (a JSON body string by string, anything else
/// as text), cut to `max` bytes of its serialisation (then kept as text). Redaction comes first, so a
/// cut can never leave half a secret unredacted.
fn redacted_payload(bytes: &[u8], scanner: &crate::inspect::Scanner, max: usize) -> (Value, bool) {
    let v = match serde_json::from_slice::<Value>(bytes) {
        Ok(mut v) => {
            let mut found = Vec::new();
            crate::inspect::redact::redact_json(scanner, &mut v, &mut found);
            v
        }
        Err(_) => Value::from(scanner.redact(&String::from_utf8_lossy(bytes)).0.into_owned()),
    };
    let text = match &v {
        Value::String(s) => std::borrow::Cow::Borrowed(s.as_str()),
        other => std::borrow::Cow::Owned(other.to_string()),
    };
    if text.len() <= max {
        return (v, false);
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    (Value::from(&text[..end]), true)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scanner() -> crate::inspect::Scanner {
        let rules = crate::inspect::catalog::builtin().expect("catalog").into_iter().map(|(r, _)| r).collect();
        crate::inspect::Scanner::new(rules, "[REDACTED:<rule-id>]").expect("scanner")
    }

    fn settings(max_entries: usize, max_bytes: usize) -> ForensicsSettings {
        ForensicsSettings {
            dir: "unused".into(),
            before: Duration::from_secs(60),
            after: Duration::from_secs(60),
            max_entries,
            max_bytes,
            max_payload_bytes: 64,
            max_memory_bytes: 1 << 20,
        }
    }

    #[test]
    fn payloads_are_redacted_before_they_are_cut() {
        let s = scanner();
        let secret = "AKIAZ7QH3K2M9XW4LR5T";
        let body = format!("{{\"messages\":[{{\"content\":\"key {secret}\"}}]}}");
        let (v, cut) = redacted_payload(body.as_bytes(), &s, 1000);
        assert!(!cut);
        assert!(!v.to_string().contains(secret) && v.to_string().contains("REDACTED"), "{v}");
        // Cut in the middle of where the secret was: the secret is gone all the same.
        let (v, cut) = redacted_payload(format!("text {secret} more").as_bytes(), &s, 12);
        assert!(cut && !v.to_string().contains("AKIAZ7"), "{v}");
        let mut c = Capture::new(4);
        c.push_response(b"abc");
        c.push_response(b"def");
        assert_eq!(c.response, b"abcd");
        assert!(c.response_truncated);
    }

    #[test]
    fn a_ring_is_bounded_by_count_and_bytes() {
        let s = settings(3, 100);
        let mut r = Ring::default();
        for i in 0..10 {
            r.push(Entry { at: Instant::now(), json: format!("{i:010}").into() }, &s);
        }
        assert_eq!(r.entries.len(), 3, "count");
        assert_eq!(&*r.entries[2].json, "0000000009", "newest kept");
        let s = settings(100, 25);
        let mut r = Ring::default();
        for i in 0..10 {
            r.push(Entry { at: Instant::now(), json: format!("{i:010}").into() }, &s);
        }
        assert_eq!(r.entries.len(), 2, "bytes: 2 × 10 ≤ 25 < 3 × 10");
        assert_eq!(r.bytes, 20);
    }

    #[test]
    fn a_ring_forgets_what_is_older_than_the_before_window() {
        let s = settings(100, 1 << 20);
        let mut r = Ring::default();
        let old = Instant::now().checked_sub(Duration::from_secs(120)).expect("an instant 2 min ago");
        r.push(Entry { at: old, json: "old".into() }, &s);
        r.push(Entry { at: Instant::now(), json: "new".into() }, &s);
        assert_eq!(r.entries.len(), 1);
        assert_eq!(&*r.entries[0].json, "new");
        assert_eq!(r.bytes, 3);
    }
}
