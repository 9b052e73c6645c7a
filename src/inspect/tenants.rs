//! Cross-tenant identifiers in output: the policy declares, per tenant, literal identifiers that only
//! that tenant's data carries (`[tenants.acme] identifiers = ["ACME-CUST-", "acme-corp.com"]`). What
//! a client receives is checked for identifiers of a tenant other than the requester's; the tenants
//! found (names only, never the text) go into the audit record as `cross_tenant`, which feeds the
//! `cross_user_data_leakage` trigger (SEV-2, automatic).
//!
//! Detection only: nothing is redacted. Masking in streams would need the identifiers in the
//! hold-back window of the redaction scanner; the containment (the user is blocked before the
//! response is complete) is what the playbook asks for.
//!
//! Cost: one aho-corasick automaton (ASCII case-insensitive) built once per policy; one pass over the
//! text the client receives. A policy that declares no identifiers has no automaton, and every entry
//! point returns at once. Streams keep, per text stream, the last `longest - 1` bytes so that an
//! identifier split across any number of chunks is still found.

use std::collections::{BTreeMap, BTreeSet};

use aho_corasick::{AhoCorasick, AhoCorasickBuilder, MatchKind};
use serde_json::Value;

/// Shortest identifier accepted: shorter ones match ordinary text.
pub const MIN_LEN: usize = 4;
/// Longest identifier accepted (it bounds what a stream carries between chunks).
pub const MAX_LEN: usize = 256;

/// The compiled identifiers of every tenant.
#[derive(Debug, Default)]
pub struct TenantIds {
    ac: Option<AhoCorasick>,
    /// Pattern index → tenant index.
    owner: Vec<u32>,
    /// Tenant names by index.
    names: Vec<String>,
    /// Longest identifier, in bytes.
    longest: usize,
}

/// Tenants whose identifiers were seen (by index; see [`TenantIds::others`]).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Hits(BTreeSet<u32>);

impl Hits {
    /// Nothing seen.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl TenantIds {
    /// Builds the automaton. `tenants`: (tenant name, its identifiers), already validated (see
    /// [`check`]).
    pub fn new(tenants: &[(String, Vec<String>)]) -> Result<TenantIds, String> {
        let mut patterns = Vec::new();
        let mut owner = Vec::new();
        let mut names = Vec::new();
        for (t, (name, ids)) in tenants.iter().enumerate() {
            let t = u32::try_from(t).map_err(|_| "too many tenants".to_owned())?;
            names.push(name.clone());
            for id in ids {
                patterns.push(id.as_str());
                owner.push(t);
            }
        }
        if patterns.is_empty() {
            return Ok(TenantIds::default());
        }
        let longest = patterns.iter().map(|p| p.len()).max().unwrap_or(0);
        let ac = AhoCorasickBuilder::new()
            .ascii_case_insensitive(true)
            .match_kind(MatchKind::Standard)
            .build(&patterns)
            .map_err(|e| e.to_string())?;
        Ok(TenantIds { ac: Some(ac), owner, names, longest })
    }

    /// Whether no tenant declares identifiers (then nothing is ever scanned).
    pub fn is_empty(&self) -> bool {
        self.ac.is_none()
    }

    /// Adds the tenants whose identifiers occur in `text` to `hits`.
    pub fn find(&self, text: &[u8], hits: &mut Hits) {
        let Some(ac) = &self.ac else { return };
        // Overlapping search: identifiers of two tenants may overlap ("ACME-" inside "XACME-1").
        for m in ac.find_overlapping_iter(text) {
            if let Some(&t) = self.owner.get(m.pattern().as_usize()) {
                hits.0.insert(t);
            }
        }
    }

    /// Adds the tenants whose identifiers occur in a JSON (or plain text) body as the client
    /// receives it. Strings are read with their escapes decoded, so `\u0041CME-` is `ACME-`.
    pub fn find_json(&self, body: &[u8], hits: &mut Hits) {
        if self.is_empty() {
            return;
        }
        match memchr::memchr(b'\\', body) {
            None => self.find(body, hits),
            Some(_) => self.find(&unescape(body), hits),
        }
    }

    /// Adds the tenants whose identifiers occur in any string of `v` (keys included).
    pub fn find_value(&self, v: &Value, hits: &mut Hits) {
        if self.is_empty() {
            return;
        }
        match v {
            Value::String(s) => self.find(s.as_bytes(), hits),
            Value::Array(a) => a.iter().for_each(|x| self.find_value(x, hits)),
            Value::Object(m) => m.iter().for_each(|(k, x)| {
                self.find(k.as_bytes(), hits);
                self.find_value(x, hits);
            }),
            _ => {}
        }
    }

    /// The names of the tenants in `hits` other than `own`, sorted.
    pub fn others(&self, hits: &Hits, own: &str) -> Vec<String> {
        hits.0.iter().filter_map(|&t| self.names.get(t as usize)).filter(|n| n.as_str() != own).cloned().collect()
    }

    /// The tenants other than `own` whose identifiers occur in `body` (a whole response).
    pub fn leaked_to(&self, own: &str, body: &[u8]) -> Vec<String> {
        if self.is_empty() {
            return Vec::new();
        }
        let mut hits = Hits::default();
        self.find_json(body, &mut hits);
        self.others(&hits, own)
    }
}

/// Why an identifier is refused, if it is (`firebreak check` reports it).
pub fn check(id: &str) -> Option<String> {
    if id.trim() != id {
        return Some("an identifier must not start or end with whitespace".into());
    }
    if id.len() < MIN_LEN {
        return Some(format!("identifier `{id}` is shorter than {MIN_LEN} bytes: it would match ordinary text"));
    }
    if id.len() > MAX_LEN {
        return Some(format!("an identifier is longer than {MAX_LEN} bytes"));
    }
    None
}

/// Per-stream state: for each text stream (choice / content block / output item), the tail of what
/// was released that an identifier may still continue, and the tenants seen so far.
#[derive(Debug, Default)]
pub struct StreamScan {
    carry: BTreeMap<(u64, u64), Vec<u8>>,
    /// Tenants seen in the stream.
    pub hits: Hits,
}

impl StreamScan {
    /// Scans `text`, the next released piece of text stream `key`.
    pub fn push(&mut self, ids: &TenantIds, key: (u64, u64), text: &str) {
        if ids.is_empty() || text.is_empty() {
            return;
        }
        let buf = self.carry.entry(key).or_default();
        buf.extend_from_slice(text.as_bytes());
        ids.find(buf, &mut self.hits);
        // Keep only what could be the start of an identifier that the next piece completes.
        let keep = ids.longest.saturating_sub(1);
        if buf.len() > keep {
            buf.drain(..buf.len() - keep);
        }
    }
}

/// JSON text with the escapes inside strings decoded (`\n`, `\"`, `\uXXXX` with surrogate pairs);
/// anything malformed is kept as it was. Outside strings JSON has no backslashes, so the whole body
/// can be decoded in one pass.
fn unescape(b: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    let hex4 = |at: usize| -> Option<u32> {
        let s = std::str::from_utf8(b.get(at..at + 4)?).ok()?;
        u32::from_str_radix(s, 16).ok()
    };
    while i < b.len() {
        if b[i] != b'\\' || i + 1 >= b.len() {
            out.push(b[i]);
            i += 1;
            continue;
        }
        let simple = match b[i + 1] {
            b'"' => Some(b'"'),
            b'\\' => Some(b'\\'),
            b'/' => Some(b'/'),
            b'n' => Some(b'\n'),
            b't' => Some(b'\t'),
            b'r' => Some(b'\r'),
            b'b' => Some(0x08),
            b'f' => Some(0x0c),
            _ => None,
        };
        if let Some(c) = simple {
            out.push(c);
            i += 2;
            continue;
        }
        if b[i + 1] == b'u' {
            if let Some(hi) = hex4(i + 2) {
                let (c, used) = match (hi, b.get(i + 6..i + 8), hex4(i + 8)) {
                    (0xD800..=0xDBFF, Some(b"\\u"), Some(lo @ 0xDC00..=0xDFFF)) => {
                        (char::from_u32(0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00)), 12)
                    }
                    _ => (char::from_u32(hi), 6),
                };
                if let Some(c) = c {
                    let mut tmp = [0u8; 4];
                    out.extend_from_slice(c.encode_utf8(&mut tmp).as_bytes());
                    i += used;
                    continue;
                }
            }
        }
        out.push(b[i]);
        i += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids() -> TenantIds {
        TenantIds::new(&[
            ("acme".into(), vec!["ACME-CUST-".into(), "acme-corp.com".into()]),
            ("globex".into(), vec!["GLX-ACCT-".into()]),
        ])
        .expect("compiles")
    }

    #[test]
    fn case_insensitive_and_own_tenant_ignored() {
        let t = ids();
        assert_eq!(t.leaked_to("globex", b"ticket acme-cust-0042 from Bob@ACME-Corp.com"), vec!["acme"]);
        assert!(t.leaked_to("acme", b"ticket ACME-CUST-0042").is_empty(), "a tenant's own identifiers");
        assert_eq!(t.leaked_to("initech", b"ACME-CUST-1 and glx-acct-2"), vec!["acme", "globex"]);
        assert!(t.leaked_to("globex", b"ACME CUST and acme.corp").is_empty(), "literal, not fuzzy");
    }

    #[test]
    fn json_escapes_are_decoded() {
        let t = ids();
        let body = br#"{"content":"\u0041CME-CUST-7\nand GLX\u002dACCT-1 \ud83e\udd80"}"#;
        assert_eq!(t.leaked_to("x", body), vec!["acme", "globex"]);
        assert_eq!(unescape(br#""\ud83e\udd80 \"q\" \x""#), "\"🦀 \"q\" \\x\"".as_bytes());
    }

    #[test]
    fn split_across_any_chunks() {
        let t = ids();
        let text = "before GLX-ACCT-99 middle acme-corp.com after";
        for a in 0..text.len() {
            for b in a..text.len() {
                let mut s = StreamScan::default();
                for piece in [&text[..a], &text[a..b], &text[b..]] {
                    s.push(&t, (0, 0), piece);
                }
                assert_eq!(t.others(&s.hits, ""), vec!["acme", "globex"], "cut at {a}, {b}");
            }
        }
        // Byte by byte, and streams are carried separately (no false match across two choices).
        let mut s = StreamScan::default();
        for (i, c) in "GLX-ACCT-".char_indices() {
            s.push(&t, (u64::from(i % 2 == 0), 0), &c.to_string());
        }
        assert!(s.hits.is_empty(), "interleaved halves of two streams are not one identifier");
        let mut s = StreamScan::default();
        for c in "xxGLX-acct-".chars() {
            s.push(&t, (0, 0), &c.to_string());
        }
        assert_eq!(t.others(&s.hits, "acme"), vec!["globex"]);
    }

    #[test]
    fn nothing_declared_is_no_work() {
        let t = TenantIds::new(&[("acme".into(), Vec::new())]).expect("compiles");
        assert!(t.is_empty());
        assert!(t.leaked_to("other", b"ACME-CUST-1").is_empty());
        let mut s = StreamScan::default();
        s.push(&t, (0, 0), "ACME-CUST-1");
        assert!(s.carry.is_empty(), "nothing is carried when nothing is declared");
        assert!(TenantIds::default().is_empty());
    }

    #[test]
    fn identifiers_are_checked() {
        assert!(check("ACME-CUST-").is_none());
        assert!(check("abc").is_some());
        assert!(check(" acme").is_some());
        assert!(check(&"x".repeat(MAX_LEN + 1)).is_some());
    }
}
