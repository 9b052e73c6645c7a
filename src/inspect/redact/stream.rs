//! The per-stream redaction engine, the same for every format: growing fields held back in slots
//! (one [`HoldBack`] each), the stages after redaction (links, prompt fragments, tenants), the fast
//! path's splice into the raw event and its [`Template`], and the general path through a `Value`.
//! What an event of each format looks like — which strings grow, which events end a field, the
//! strict decode of the common delta — is in [`crate::inspect::format`].

use std::borrow::Cow;

use bytes::Bytes;
use serde_json::Value;

use super::json::redact_json_with;
use super::link::{markdown_cut, LinkGuard};
use crate::inspect::fields::{self, FieldKey, Kind, Seg};
use crate::inspect::holdback::HoldBack;
use crate::inspect::scanner::Scanner;
use crate::protocol::sse::{event as sse, parse_event};
use crate::protocol::Endpoint;

/// What became of one event.
#[derive(Debug)]
pub enum Redacted {
    /// Forward unchanged.
    Same,
    /// Send these instead (possibly none).
    Events(Vec<Bytes>),
    /// The event cannot be inspected within the stream's bounds: end the stream with an error event
    /// (fail closed). The reason names the bound, never the text.
    Uninspectable(&'static str),
}

/// Most growing fields one stream may hold back at once (choices × fields, content blocks, output
/// items). Real streams use a handful; past the bound the stream ends with an error event, so the
/// memory per stream stays bounded (each field holds at most the scanner's hold and a block rule's
/// cap, plus [`super::MARKDOWN_HOLD`]).
pub const MAX_FIELDS: usize = 64;

/// What a new field's carrier event is made of: the skeleton, the JSON pointer of its string, the
/// SSE event name (see [`Slot`]).
pub(in crate::inspect) type Carrier = (Value, String, Option<String>);

/// A growing field present in an event, with its path there.
pub(in crate::inspect) type Present = (FieldKey, Vec<Seg>);

/// One growing field being held back.
#[derive(Debug)]
pub(in crate::inspect) struct Slot {
    pub(in crate::inspect) key: FieldKey,
    kind: Kind,
    /// Distinguishes this field in the tenant scan's carry.
    serial: u64,
    hb: HoldBack,
    /// Text released by redaction but held by the link stage (an open markdown link).
    md: String,
    /// A minimal event of this field (see [`fields::skeleton`]), the string at `pointer`: text
    /// released when no upstream event of the field is left to carry it goes out in a copy.
    skeleton: Value,
    pointer: String,
    /// The SSE event name of that event.
    name: Option<String>,
}

/// Per-stream redaction state.
#[derive(Debug)]
pub struct StreamRedactor {
    endpoint: Endpoint,
    /// The growing fields held back, in the order they appeared.
    pub(in crate::inspect) slots: Vec<Slot>,
    serial: u64,
    /// Chat: the last chunk's JSON data, whose envelope wraps text flushed before `[DONE]` (kept raw and
    /// decoded only when needed; the buffer is reused from event to event).
    pub(in crate::inspect) last_chunk: Vec<u8>,
    /// The shape of the last event the fast path decoded (see [`Template`]).
    template: Option<Template>,
    /// What happens to released text after redaction (and what was found).
    pub(in crate::inspect) st: Stages,
}

/// The stages after redaction, and what they found.
#[derive(Debug, Default)]
pub(in crate::inspect) struct Stages {
    /// Rules that matched (for audit and metrics; never the text).
    found: Vec<u16>,
    /// Outside links in text are neutralised (held until complete).
    pub(in crate::inspect) guard: Option<LinkGuard>,
    /// Links neutralised so far.
    links: usize,
    /// System-prompt fragments in the released text.
    fragments:
        Option<(std::sync::Arc<crate::inspect::fragments::PromptShingles>, crate::inspect::fragments::FragmentCounter)>,
    /// Tenant identifiers in the released text (only when the policy declares some).
    tenants: Option<(std::sync::Arc<crate::inspect::tenants::TenantIds>, crate::inspect::tenants::StreamScan)>,
}

impl Stages {
    /// Adds a delta of `slot`; the text now released (redacted, links checked).
    pub(in crate::inspect) fn push(&mut self, scanner: &Scanner, slot: &mut Slot, text: &str) -> String {
        let mut out = String::with_capacity(text.len());
        slot.hb.push(scanner, text, &mut out);
        self.found.append(&mut slot.hb.findings);
        self.after(slot, out, false)
    }

    /// The end of `slot`: everything it still holds.
    fn finish(&mut self, scanner: &Scanner, slot: &mut Slot) -> String {
        let mut out = String::new();
        slot.hb.finish(scanner, &mut out);
        self.found.append(&mut slot.hb.findings);
        self.after(slot, out, true)
    }

    /// Second stage for text: hold an open markdown construct until complete, then neutralise
    /// outside links in what is released; then the detections on what the client receives.
    fn after(&mut self, slot: &mut Slot, released: String, end: bool) -> String {
        let out = match (&self.guard, slot.kind) {
            (Some(guard), Kind::Text) => {
                if let Some((p, c)) = &mut self.fragments {
                    c.push(p, &released);
                }
                let mut pending = std::mem::take(&mut slot.md);
                pending.push_str(&released);
                let cut = if end { pending.len() } else { markdown_cut(&pending) };
                slot.md = pending.split_off(cut);
                match guard.apply(&pending) {
                    Some((out, n)) => {
                        self.links += n;
                        out
                    }
                    None => pending,
                }
            }
            _ => released,
        };
        if let Some((ids, scan)) = &mut self.tenants {
            scan.push(ids, (slot.serial, 0), &out);
        }
        out
    }

    /// Whether a string the fast path leaves in place (`obfuscation` padding) is clean whole: nothing
    /// to redact and no outside link. `None` is clean.
    pub(in crate::inspect) fn whole_clean(&self, scanner: &Scanner, s: Option<&str>) -> bool {
        s.is_none_or(|s| scanner.scan(s).is_empty() && self.guard.as_ref().is_none_or(|g| g.apply(s).is_none()))
    }

    /// Redacts every string of `v` whole (and neutralises outside links); whether anything changed.
    pub(in crate::inspect) fn whole(&mut self, scanner: &Scanner, v: &mut Value) -> bool {
        let before = (self.found.len(), self.links);
        redact_json_with(scanner, self.guard.as_ref(), v, &mut self.found, &mut self.links);
        if let Some((ids, scan)) = &mut self.tenants {
            ids.find_value(v, &mut scan.hits);
        }
        (self.found.len(), self.links) != before
    }
}

impl StreamRedactor {
    /// A redactor for a stream of `endpoint`.
    pub fn new(endpoint: Endpoint) -> Self {
        StreamRedactor {
            endpoint,
            slots: Vec::new(),
            serial: 0,
            last_chunk: Vec::new(),
            template: None,
            st: Stages::default(),
        }
    }

    /// Looks for these tenant identifiers in the released text (see [`super::tenants`]).
    pub fn with_tenants(mut self, ids: std::sync::Arc<crate::inspect::tenants::TenantIds>) -> Self {
        if !ids.is_empty() {
            self.st.tenants = Some((ids, crate::inspect::tenants::StreamScan::default()));
        }
        self
    }

    /// The tenants other than `own` whose identifiers the client received.
    pub fn cross_tenant(&self, own: &str) -> Vec<String> {
        self.st.tenants.as_ref().map(|(ids, scan)| ids.others(&scan.hits, own)).unwrap_or_default()
    }

    /// Counts fragments of these prompts in the released text.
    pub fn with_prompts(mut self, prompts: std::sync::Arc<crate::inspect::fragments::PromptShingles>) -> Self {
        if !prompts.is_empty() {
            self.st.fragments = Some((prompts, crate::inspect::fragments::FragmentCounter::default()));
        }
        self
    }

    /// System-prompt shingles found in the stream so far.
    pub fn prompt_fragments(&mut self) -> usize {
        match &mut self.st.fragments {
            Some((p, c)) => {
                c.finish(p);
                c.total()
            }
            None => 0,
        }
    }

    /// Adds a guard that neutralises links pointing outside the egress rules.
    pub fn with_links(mut self, guard: LinkGuard) -> Self {
        self.st.guard = Some(guard);
        self
    }

    /// Rules that matched so far (for audit and metrics; never the text).
    pub fn found(&self) -> &[u16] {
        &self.st.found
    }

    /// Links neutralised so far.
    pub fn links(&self) -> usize {
        self.st.links
    }

    /// The slot of `key`, made by `make` (skeleton, pointer, event name) when it is new; `None` past
    /// [`MAX_FIELDS`].
    pub(in crate::inspect) fn slot(&mut self, key: &FieldKey, make: impl FnOnce() -> Carrier) -> Option<usize> {
        if let Some(i) = self.slots.iter().position(|s| s.key == *key) {
            return Some(i);
        }
        if self.slots.len() >= MAX_FIELDS {
            return None;
        }
        let (skeleton, pointer, name) = make();
        self.serial += 1;
        self.slots.push(Slot {
            kind: kind_of(self.endpoint, key),
            key: key.clone(),
            serial: self.serial,
            hb: HoldBack::new(),
            md: String::new(),
            skeleton,
            pointer,
            name,
        });
        Some(self.slots.len() - 1)
    }

    /// Ends the fields `which` selects, in the order they appeared: each with what it still held.
    pub(in crate::inspect) fn close(
        &mut self,
        scanner: &Scanner,
        which: impl Fn(&FieldKey) -> bool,
    ) -> Vec<(Slot, String)> {
        let mut out = Vec::new();
        let mut i = 0;
        while i < self.slots.len() {
            if which(&self.slots[i].key) {
                let mut slot = self.slots.remove(i);
                let rest = self.st.finish(scanner, &mut slot);
                out.push((slot, rest));
            } else {
                i += 1;
            }
        }
        out
    }

    /// The event that carries `rest`, the end of `slot`'s text, when no upstream event is left to.
    pub(in crate::inspect) fn carrier(&self, slot: &Slot, rest: String) -> Bytes {
        // Chat: the field's last fast-path delta with `rest` in its text's place, when there is one
        // (the same envelope as the deltas the client already has, with nothing decoded or rebuilt).
        if self.endpoint == Endpoint::ChatCompletions {
            if let Some(t) = self.template.as_ref().filter(|t| t.key == slot.key && t.carries_text_only()) {
                if let Some(event) = t.with_text(&rest) {
                    return event;
                }
            }
        }
        let mut v = slot.skeleton.clone();
        if let Some(s) = v.pointer_mut(&slot.pointer) {
            *s = Value::String(rest);
        }
        match self.endpoint {
            Endpoint::ChatCompletions => self.chat_carrier(v),
            _ => sse(slot.name.as_deref(), &v),
        }
    }

    /// Carrier events for every field that still holds text (the end of the stream).
    pub(in crate::inspect) fn carriers(&mut self, scanner: &Scanner, which: impl Fn(&FieldKey) -> bool) -> Vec<Bytes> {
        let closed = self.close(scanner, which);
        closed.into_iter().filter(|(_, rest)| !rest.is_empty()).map(|(slot, rest)| self.carrier(&slot, rest)).collect()
    }

    /// Redacts one raw SSE event.
    pub fn on_event(&mut self, scanner: &Scanner, raw: &[u8]) -> Redacted {
        if let Some(t) = &self.template {
            if let Some(text) = t.text_of(raw) {
                let slot = self.slots.iter().position(|s| s.key == t.key);
                let (from, tail) = (t.data_start, t.data_tail);
                if self.endpoint == Endpoint::ChatCompletions {
                    self.last_chunk.clear();
                    self.last_chunk.extend_from_slice(&raw[from..raw.len() - tail]);
                }
                let Some(i) = slot else {
                    // The field was closed since: the general path makes a new one.
                    return self.general_raw(scanner, raw);
                };
                return self.splice(scanner, raw, i, text).unwrap_or(Redacted::Same);
            }
        }
        let ev = parse_event(raw);
        if let Some(Cow::Borrowed(data)) = ev.data {
            if let Some(r) = self.fast(scanner, raw, data) {
                return r;
            }
        }
        self.general_raw(scanner, raw)
    }

    fn general_raw(&mut self, scanner: &Scanner, raw: &[u8]) -> Redacted {
        let ev = parse_event(raw);
        let Some(data) = ev.data.as_deref() else { return Redacted::Same };
        self.general(scanner, ev.name, data)
    }

    /// The text still held at the end of an upstream stream that ended without its terminal events.
    pub fn finish(&mut self, scanner: &Scanner) -> Vec<Bytes> {
        self.carriers(scanner, |_| true)
    }

    /// The fast path for an event that carries one text delta and nothing else that needs a look (see
    /// the module doc); `None` when the event needs the general path. `data` is borrowed from `raw`.
    fn fast(&mut self, scanner: &Scanner, raw: &[u8], data: &str) -> Option<Redacted> {
        match self.endpoint {
            Endpoint::ChatCompletions => self.fast_chat(scanner, raw, data),
            Endpoint::Messages => self.fast_messages(scanner, raw, data),
            Endpoint::Responses => self.fast_responses(scanner, raw, data),
            Endpoint::Embeddings | Endpoint::Models => None,
        }
    }

    /// Remembers the shape of a fast-path event (see [`Template`]) and splices its released text.
    pub(in crate::inspect) fn fast_splice(
        &mut self,
        scanner: &Scanner,
        raw: &[u8],
        data: &str,
        key: FieldKey,
        text: &str,
        slot: Option<usize>,
    ) -> Option<Redacted> {
        let Some(i) = slot else { return Some(Redacted::Uninspectable("too many text fields in one stream")) };
        // The text literal's place in `raw` (the quotes included): `text` borrows from `data`, which
        // borrows from `raw`; anything else means it was not borrowed and the general path is taken.
        let at = span_in(raw, text.as_bytes())?;
        let (start, end) = (at.checked_sub(1)?, at + text.len() + 1);
        if raw.get(start) != Some(&b'"') || raw.get(end - 1) != Some(&b'"') {
            return None;
        }
        let data_start = span_in(raw, data.as_bytes())?;
        self.template = Some(Template {
            prefix: raw[..start].to_vec(),
            suffix: raw[end..].to_vec(),
            key,
            data_start,
            data_tail: raw.len() - data_start - data.len(),
        });
        self.splice(scanner, raw, i, text)
    }

    /// Releases what `text` (a JSON string literal without escapes in `raw`) lets out of slot `i`,
    /// spliced into `raw` in the literal's place.
    fn splice(&mut self, scanner: &Scanner, raw: &[u8], i: usize, text: &str) -> Option<Redacted> {
        let at = span_in(raw, text.as_bytes())?;
        let (start, end) = (at.checked_sub(1)?, at + text.len() + 1);
        let released = self.st.push(scanner, &mut self.slots[i], text);
        if released == text {
            return Some(Redacted::Same);
        }
        let mut out = Vec::with_capacity(raw.len() + released.len() - text.len().min(released.len()) + 8);
        out.extend_from_slice(&raw[..start]);
        serde_json::to_writer(&mut out, released.as_str()).ok()?;
        out.extend_from_slice(&raw[end..]);
        Some(Redacted::Events(vec![Bytes::from(out)]))
    }

    /// Pushes every string of the growing subtree `d` into its field's hold-back and puts the
    /// released text in its place. `key` names a string's field from its path; `carrier` makes the
    /// skeleton of a new field from the subtree's own skeleton. Returns whether a string changed and
    /// the fields present (with their paths); `None` past [`MAX_FIELDS`].
    pub(in crate::inspect) fn grow(
        &mut self,
        scanner: &Scanner,
        d: &mut Value,
        key: &dyn Fn(&[Seg]) -> FieldKey,
        carrier: &dyn Fn(Value, String) -> Carrier,
    ) -> Option<(bool, Vec<Present>)> {
        let strings = fields::take_strings(d);
        let mut changed = false;
        let mut present = Vec::with_capacity(strings.len());
        for (path, text) in strings {
            let k = key(&path);
            let i = self.slot(&k, || {
                let (s, p) = fields::skeleton(d, &path);
                carrier(s, p)
            })?;
            let released = self.st.push(scanner, &mut self.slots[i], &text);
            changed |= released != text;
            if let Some(s) = fields::at_mut(d, &path) {
                *s = Value::String(released);
            }
            present.push((k, path));
        }
        Some((changed, present))
    }

    /// The general path: the event decoded, its growing fields held back, every other string
    /// redacted whole.
    fn general(&mut self, scanner: &Scanner, name: Option<&str>, data: &str) -> Redacted {
        if self.endpoint == Endpoint::ChatCompletions && data.trim() == "[DONE]" {
            let mut events = self.finish(scanner);
            if events.is_empty() {
                return Redacted::Same;
            }
            events.push(Bytes::from_static(b"data: [DONE]\n\n"));
            return Redacted::Events(events);
        }
        if data.trim().is_empty() || data.trim() == "[DONE]" {
            // Nothing that could leak: an empty keep-alive, or `[DONE]` in a format that has its own end.
            return Redacted::Same;
        }
        let mut v = match serde_json::from_str::<Value>(data) {
            Ok(v @ Value::Object(_)) => v,
            Ok(mut v) => {
                return if self.st.whole(scanner, &mut v) {
                    Redacted::Events(vec![sse(name, &v)])
                } else {
                    Redacted::Same
                };
            }
            // Not the provider's format: nothing of it is sent, the stream ends (fail closed).
            Err(_) => return Redacted::Uninspectable("a data line that is not JSON"),
        };
        let dropped = super::json::drop_all_token_data(&mut v);
        let mut before = Vec::new();
        let done = match self.endpoint {
            Endpoint::ChatCompletions => self.chat(scanner, data, &mut v, &mut before),
            Endpoint::Messages => self.messages(scanner, &mut v, &mut before),
            Endpoint::Responses => self.responses(scanner, &mut v, &mut before),
            _ => Some(self.st.whole(scanner, &mut v)),
        };
        let Some(changed) = done else { return Redacted::Uninspectable("too many text fields in one stream") };
        if before.is_empty() && !changed && !dropped {
            return Redacted::Same;
        }
        before.push(sse(name, &v));
        Redacted::Events(before)
    }
}

/// What a growing field carries (see [`Kind`]): the format's own fields first, then what holds in
/// every format (a signature is opaque, the rest is text).
fn kind_of(endpoint: Endpoint, key: &FieldKey) -> Kind {
    let p = key.path.as_str();
    let own = match endpoint {
        Endpoint::ChatCompletions => crate::inspect::format::chat::redact::kind(p),
        Endpoint::Messages => crate::inspect::format::messages::redact::kind(p),
        Endpoint::Responses => crate::inspect::format::responses::redact::kind(p),
        Endpoint::Embeddings | Endpoint::Models => None,
    };
    match own {
        Some(k) => k,
        None if p.ends_with("signature") => Kind::Opaque,
        None => Kind::Text,
    }
}

/// The bytes of a text-delta event around its text literal, remembered from the last event the fast
/// path decoded. Deltas of one stream differ only in their text, so the next event that has the same
/// bytes before and after a plain literal (no quote, escape or control character inside, so it reads
/// the same as JSON and as SSE) is the same document with another text: it needs no decoding at all.
/// Everything else in it was checked when the template was made (the fast path takes only events
/// whose other strings are identifiers or scan clean whole).
#[derive(Debug)]
struct Template {
    /// Everything before the literal's opening quote.
    prefix: Vec<u8>,
    /// Everything after its closing quote.
    suffix: Vec<u8>,
    /// The field it feeds.
    key: FieldKey,
    /// Where the JSON data starts (in the prefix) and how far before the end it stops (in the suffix).
    data_start: usize,
    data_tail: usize,
}

impl Template {
    /// Whether the event carries the text and identifiers only: not a role (the first delta of a
    /// chat stream names it; a carrier does not repeat it).
    fn carries_text_only(&self) -> bool {
        memchr::memmem::find(&self.prefix, b"\"role\"").is_none()
            && memchr::memmem::find(&self.suffix, b"\"role\"").is_none()
    }

    /// The event of this shape that carries `text`.
    fn with_text(&self, text: &str) -> Option<Bytes> {
        let mut out = Vec::with_capacity(self.prefix.len() + text.len() + 2 + self.suffix.len());
        out.extend_from_slice(&self.prefix);
        serde_json::to_writer(&mut out, text).ok()?;
        out.extend_from_slice(&self.suffix);
        Some(Bytes::from(out))
    }

    /// The text of `raw` when it has this shape.
    fn text_of<'r>(&self, raw: &'r [u8]) -> Option<&'r str> {
        let lit = raw.strip_prefix(&self.prefix[..])?.strip_suffix(&self.suffix[..])?;
        let inner = lit.strip_prefix(b"\"")?.strip_suffix(b"\"")?;
        if inner.iter().any(|&b| b == b'"' || b == b'\\' || b < 0x20) {
            return None;
        }
        std::str::from_utf8(inner).ok()
    }
}

/// Where `part` (a slice borrowed from `whole`) starts in `whole`; `None` when it is not a part of it.
fn span_in(whole: &[u8], part: &[u8]) -> Option<usize> {
    let at = (part.as_ptr() as usize).checked_sub(whole.as_ptr() as usize)?;
    (at + part.len() <= whole.len() && whole.get(at..at + part.len()) == Some(part)).then_some(at)
}

#[cfg(test)]
#[path = "stream_tests.rs"]
mod tests;
