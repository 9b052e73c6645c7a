//! Redaction of model output: whole JSON bodies, and SSE streams of the three formats (OpenAI chat
//! completions, OpenAI Responses, Anthropic messages).
//!
//! In a stream every string a client can receive passes the scanner, known field or not (see
//! [`super::fields`]): a field that grows across events (any string under a chat `delta`, an
//! Anthropic block delta — text, thinking, signature, tool input —, a Responses `*.delta`) goes
//! through its own [`HoldBack`], so that for every chunking the concatenation the client receives
//! equals the redaction of the whole text; every other string is redacted whole in its event.
//!
//! Hot path: the common event — one text delta and nothing else that holds text — is read with a
//! strict borrowing typed decode that locates the text in the raw event; the released text is
//! spliced into the raw bytes in its place (nothing else is decoded, rebuilt or re-serialised). Every
//! other event, and any event the fast decode does not fully understand (another text field, an
//! unknown member, escapes in the text, several choices, tool calls, a finish reason, duplicate
//! keys), takes the general path through a `serde_json::Value`.

use std::borrow::Cow;

use bytes::Bytes;
use serde_json::{json, Map, Value};

use super::fields::{self, FieldKey, Kind, Seg};
use super::holdback::HoldBack;
use super::scanner::Scanner;
use crate::protocol::sse::{event as sse, parse_event};
use crate::protocol::Endpoint;

/// Strict borrowing decodes of the common delta events (the fast path).
mod fast;

/// Neutralises links and images in model output that point outside the egress rules.
#[derive(Clone)]
pub struct LinkGuard {
    /// The policy's egress rules.
    pub rules: std::sync::Arc<super::egress::EgressRules>,
    /// Extra blocked hosts (the switches in force).
    pub blocked: std::sync::Arc<dyn Fn(&str) -> bool + Send + Sync>,
}

impl std::fmt::Debug for LinkGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LinkGuard")
    }
}

impl LinkGuard {
    /// `text` with outside links neutralised; the number neutralised.
    pub fn apply(&self, text: &str) -> Option<(String, usize)> {
        self.rules.neutralize_markdown(text, &*self.blocked).map(|(s, n)| (s, n.len()))
    }
}

/// Keys whose string values are identifiers or enums, never model text: left alone.
pub(crate) const SKIP_KEYS: [&str; 17] = [
    "id",
    "object",
    "model",
    "type",
    "role",
    "finish_reason",
    "stop_reason",
    "status",
    "item_id",
    "call_id",
    "tool_use_id",
    "system_fingerprint",
    "service_tier",
    "name",
    "event",
    "logprobs",
    "stop_sequence",
];

/// Redacts every text string in a JSON value in place (and neutralises outside links when a guard
/// is given); returns the rules that matched.
pub fn redact_json(scanner: &Scanner, v: &mut Value, found: &mut Vec<u16>) {
    redact_json_with(scanner, None, v, found, &mut 0);
}

/// [`redact_json`] with an optional link guard; `links` counts neutralised links.
pub fn redact_json_with(
    scanner: &Scanner,
    guard: Option<&LinkGuard>,
    v: &mut Value,
    found: &mut Vec<u16>,
    links: &mut usize,
) {
    match v {
        Value::String(s) => {
            let (red, f) = scanner.redact(s);
            if !f.is_empty() {
                found.extend(f.iter().map(|f| f.rule));
                *s = red.into_owned();
            }
            if let Some((out, n)) = guard.and_then(|g| g.apply(s)) {
                *links += n;
                *s = out;
            }
        }
        Value::Array(a) => a.iter_mut().for_each(|x| redact_json_with(scanner, guard, x, found, links)),
        Value::Object(m) => {
            for (k, x) in m.iter_mut() {
                if !SKIP_KEYS.contains(&k.as_str()) {
                    redact_json_with(scanner, guard, x, found, links);
                }
            }
        }
        _ => {}
    }
}

/// The member that carries per-token data (OpenAI chat and Responses `logprobs`: every token's
/// string, its bytes and the top alternatives). It repeats the model's text one token at a time, so
/// a secret spelled across tokens cannot be redacted there: an answer never carries it (see
/// [`drop_token_data`]).
pub(crate) const TOKEN_DATA: &str = "logprobs";

/// Sets a `logprobs` value that carries token data (an object or an array) to `null`; a flag
/// (`true`, a count) is left alone. Returns whether it changed. Fail closed: the gateway cannot
/// inspect text split into tokens, so it does not deliver it.
pub(crate) fn drop_token_data(x: &mut Value) -> bool {
    let carries = carries_token_data(x);
    if carries {
        *x = Value::Null;
    }
    carries
}

/// Whether a `logprobs` value carries token data: a non-empty array, or an object with a member
/// that is neither `null` nor an empty array (`{"content": null}` and the Responses `[]` carry none).
pub(crate) fn carries_token_data(x: &Value) -> bool {
    match x {
        Value::Array(a) => !a.is_empty(),
        Value::Object(m) => m.values().any(|v| !v.is_null() && v.as_array().is_none_or(|a| !a.is_empty())),
        _ => false,
    }
}

/// Whether a raw JSON body may carry token data: a `"logprobs"` member whose value opens an object
/// or a non-empty array (a `null`, a flag or `[]` does not). A byte test for the fast paths that skip decoding; a
/// `true` sends the body to the path that decodes it and drops the data.
pub(crate) fn may_carry_token_data(bytes: &[u8]) -> bool {
    memchr::memmem::find_iter(bytes, b"\"logprobs\"").any(|at| {
        let mut rest = bytes[at + 10..].iter().copied().skip_while(u8::is_ascii_whitespace);
        if rest.next() != Some(b':') {
            return false;
        }
        let mut value = rest.skip_while(u8::is_ascii_whitespace);
        match value.next() {
            Some(b'{') => true,
            Some(b'[') => value.find(|b| !b.is_ascii_whitespace()) != Some(b']'),
            _ => false,
        }
    })
}

/// [`drop_token_data`] for every `logprobs` member anywhere under `v` (outside identifier keys).
pub(crate) fn drop_all_token_data(v: &mut Value) -> bool {
    match v {
        Value::Array(a) => a.iter_mut().fold(false, |ch, x| drop_all_token_data(x) | ch),
        Value::Object(m) => m.iter_mut().fold(false, |ch, (k, x)| {
            (if k == TOKEN_DATA {
                drop_token_data(x)
            } else if SKIP_KEYS.contains(&k.as_str()) {
                false
            } else {
                drop_all_token_data(x)
            }) | ch
        }),
        _ => false,
    }
}

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
/// cap, plus [`MARKDOWN_HOLD`]).
pub const MAX_FIELDS: usize = 64;

/// What a new field's carrier event is made of: the skeleton, the JSON pointer of its string, the
/// SSE event name (see [`Slot`]).
type Carrier = (Value, String, Option<String>);

/// A growing field present in an event, with its path there.
type Present = (FieldKey, Vec<Seg>);

/// One growing field being held back.
#[derive(Debug)]
struct Slot {
    key: FieldKey,
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
    slots: Vec<Slot>,
    serial: u64,
    /// Chat: the last chunk's JSON data, whose envelope wraps text flushed before `[DONE]` (kept raw and
    /// decoded only when needed; the buffer is reused from event to event).
    last_chunk: Vec<u8>,
    /// The shape of the last event the fast path decoded (see [`Template`]).
    template: Option<Template>,
    /// What happens to released text after redaction (and what was found).
    st: Stages,
}

/// The stages after redaction, and what they found.
#[derive(Debug, Default)]
struct Stages {
    /// Rules that matched (for audit and metrics; never the text).
    found: Vec<u16>,
    /// Outside links in text are neutralised (held until complete).
    guard: Option<LinkGuard>,
    /// Links neutralised so far.
    links: usize,
    /// System-prompt fragments in the released text.
    fragments: Option<(std::sync::Arc<super::fragments::PromptShingles>, super::fragments::FragmentCounter)>,
    /// Tenant identifiers in the released text (only when the policy declares some).
    tenants: Option<(std::sync::Arc<super::tenants::TenantIds>, super::tenants::StreamScan)>,
}

impl Stages {
    /// Adds a delta of `slot`; the text now released (redacted, links checked).
    fn push(&mut self, scanner: &Scanner, slot: &mut Slot, text: &str) -> String {
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

    /// Redacts every string of `v` whole (and neutralises outside links); whether anything changed.
    fn whole(&mut self, scanner: &Scanner, v: &mut Value) -> bool {
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
    pub fn with_tenants(mut self, ids: std::sync::Arc<super::tenants::TenantIds>) -> Self {
        if !ids.is_empty() {
            self.st.tenants = Some((ids, super::tenants::StreamScan::default()));
        }
        self
    }

    /// The tenants other than `own` whose identifiers the client received.
    pub fn cross_tenant(&self, own: &str) -> Vec<String> {
        self.st.tenants.as_ref().map(|(ids, scan)| ids.others(&scan.hits, own)).unwrap_or_default()
    }

    /// Counts fragments of these prompts in the released text.
    pub fn with_prompts(mut self, prompts: std::sync::Arc<super::fragments::PromptShingles>) -> Self {
        if !prompts.is_empty() {
            self.st.fragments = Some((prompts, super::fragments::FragmentCounter::default()));
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
    fn slot(&mut self, key: &FieldKey, make: impl FnOnce() -> Carrier) -> Option<usize> {
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
    fn close(&mut self, scanner: &Scanner, which: impl Fn(&FieldKey) -> bool) -> Vec<(Slot, String)> {
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
    fn carrier(&self, slot: &Slot, rest: String) -> Bytes {
        let mut v = slot.skeleton.clone();
        if let Some(s) = v.pointer_mut(&slot.pointer) {
            *s = Value::String(rest);
        }
        if self.endpoint != Endpoint::ChatCompletions {
            return sse(slot.name.as_deref(), &v);
        }
        // Chat: the choice goes into the envelope (id, model, …) of the last chunk.
        let mut m = match serde_json::from_slice::<Value>(&self.last_chunk) {
            Ok(Value::Object(mut m)) => {
                m.remove("choices");
                m.remove("usage");
                m.retain(|k, _| SKIP_KEYS.contains(&k.as_str()) || k == "created");
                m
            }
            _ => Map::new(),
        };
        m.insert("choices".into(), Value::Array(vec![v]));
        sse(None, &Value::Object(m))
    }

    /// Carrier events for every field that still holds text (the end of the stream).
    fn carriers(&mut self, scanner: &Scanner, which: impl Fn(&FieldKey) -> bool) -> Vec<Bytes> {
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
        let whole_clean = |s: Option<&str>, st: &Stages| {
            s.is_none_or(|s| scanner.scan(s).is_empty() && st.guard.as_ref().is_none_or(|g| g.apply(s).is_none()))
        };
        let (key, text, made): (FieldKey, &str, fn(&FieldKey) -> Carrier) = match self.endpoint {
            Endpoint::ChatCompletions => {
                let c: fast::ChatChunk<'_> = serde_json::from_str(data).ok()?;
                let [choice] = &c.choices[..] else { return None };
                if choice.finish_reason.is_some() || !whole_clean(c.obfuscation, &self.st) {
                    return None;
                }
                let delta = choice.delta.as_ref()?;
                if delta.tool_calls.is_some() {
                    return None;
                }
                let Some(Cow::Borrowed(text)) = delta.content else { return None };
                self.last_chunk.clear();
                self.last_chunk.extend_from_slice(data.as_bytes());
                let key = FieldKey { scope: choice.index, sub: 0, path: "content".into() };
                (key, text, |k| {
                    (
                        json!({"index": k.scope, "delta": {"content": ""}, "finish_reason": null}),
                        "/delta/content".into(),
                        None,
                    )
                })
            }
            Endpoint::Messages => {
                let e: fast::MessagesDelta<'_> = serde_json::from_str(data).ok()?;
                if e.ty != "content_block_delta" {
                    return None;
                }
                let d = e.delta?;
                let (field, others) = match d.ty {
                    "text_delta" => ("text", [&d.partial_json, &d.thinking, &d.signature]),
                    "input_json_delta" => ("partial_json", [&d.text, &d.thinking, &d.signature]),
                    "thinking_delta" => ("thinking", [&d.text, &d.partial_json, &d.signature]),
                    "signature_delta" => ("signature", [&d.text, &d.partial_json, &d.thinking]),
                    _ => return None,
                };
                if others.iter().any(|o| o.is_some()) {
                    return None;
                }
                let value = match field {
                    "text" => d.text,
                    "partial_json" => d.partial_json,
                    "thinking" => d.thinking,
                    _ => d.signature,
                };
                let Some(Cow::Borrowed(text)) = value else { return None };
                (FieldKey { scope: e.index, sub: 0, path: field.into() }, text, |k| {
                    let ty = match k.path.as_str() {
                        "text" => "text_delta",
                        "partial_json" => "input_json_delta",
                        "thinking" => "thinking_delta",
                        _ => "signature_delta",
                    };
                    let mut delta = Map::new();
                    delta.insert("type".into(), json!(ty));
                    delta.insert(k.path.clone(), json!(""));
                    let skel = json!({"type": "content_block_delta", "index": k.scope, "delta": delta});
                    (skel, format!("/delta/{}", k.path), Some("content_block_delta".into()))
                })
            }
            Endpoint::Responses => {
                let e: fast::ResponsesDelta<'_> = serde_json::from_str(data).ok()?;
                if !e.ty.ends_with(".delta") || !whole_clean(e.obfuscation, &self.st) {
                    return None;
                }
                let Some(Cow::Borrowed(text)) = e.delta else { return None };
                let sub = e.content_index.or(e.summary_index).unwrap_or(0);
                let key = FieldKey { scope: e.output_index, sub, path: e.ty.into() };
                let i = self.slot(&key, || {
                    let mut skel = json!({"type": e.ty, "output_index": e.output_index, "delta": ""});
                    if let Some(id) = e.item_id {
                        skel["item_id"] = json!(id);
                    }
                    if let Some(ci) = e.content_index {
                        skel["content_index"] = json!(ci);
                    }
                    if let Some(si) = e.summary_index {
                        skel["summary_index"] = json!(si);
                    }
                    (skel, "/delta".into(), Some(e.ty.to_owned()))
                });
                return self.fast_splice(scanner, raw, data, key, text, i);
            }
            _ => return None,
        };
        let i = self.slot(&key, || made(&key));
        self.fast_splice(scanner, raw, data, key, text, i)
    }

    /// Remembers the shape of a fast-path event (see [`Template`]) and splices its released text.
    fn fast_splice(
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
    fn grow(
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
        let dropped = drop_all_token_data(&mut v);
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

    /// A chat chunk: everything under `choices[].delta` grows (per choice index and path); a
    /// choice that finishes releases what its fields hold.
    fn chat(&mut self, scanner: &Scanner, data: &str, v: &mut Value, before: &mut Vec<Bytes>) -> Option<bool> {
        let mut changed = false;
        let mut deltas = Vec::new();
        let n = v.get("choices").and_then(Value::as_array).map_or(0, Vec::len);
        for p in 0..n {
            let c = &mut v["choices"][p];
            let ci = c.get("index").and_then(Value::as_u64).unwrap_or(p as u64);
            let finished = c.get("finish_reason").is_some_and(|f| !f.is_null());
            let mut delta = c.as_object_mut().and_then(|m| m.remove("delta"));
            let mut present = Vec::new();
            if let Some(d) = delta.as_mut() {
                let (ch, pr) = self.grow(
                    scanner,
                    d,
                    &|path| FieldKey { scope: ci, sub: 0, path: fields::path_string("", path) },
                    &|s, p| (json!({"index": ci, "delta": s, "finish_reason": null}), format!("/delta{p}"), None),
                )?;
                changed |= ch;
                present = pr;
            }
            if finished {
                for (slot, rest) in self.close(scanner, |k| k.scope == ci) {
                    if rest.is_empty() {
                        continue;
                    }
                    changed = true;
                    match (present.iter().find(|(k, _)| *k == slot.key), delta.as_mut()) {
                        // The field is in this chunk: its rest follows its text here.
                        (Some((_, path)), Some(d)) => {
                            if let Some(Value::String(s)) = fields::at_mut(d, path) {
                                s.push_str(&rest);
                            }
                        }
                        _ => before.push(self.carrier(&slot, rest)),
                    }
                }
            }
            deltas.push((p, delta));
        }
        self.last_chunk.clear();
        self.last_chunk.extend_from_slice(data.as_bytes());
        changed |= self.st.whole(scanner, v);
        for (p, delta) in deltas {
            if let (Some(d), Some(c)) = (delta, v["choices"][p].as_object_mut()) {
                c.insert("delta".into(), d);
            }
        }
        Some(changed)
    }

    /// An Anthropic event: a `content_block_delta`'s `delta` grows (per block index and path), as
    /// does the text a `content_block_start` opens a text or thinking block with; a block's stop
    /// releases what it holds, `message_stop` what the stream holds.
    fn messages(&mut self, scanner: &Scanner, v: &mut Value, before: &mut Vec<Bytes>) -> Option<bool> {
        let index = v.get("index").and_then(Value::as_u64).unwrap_or(0);
        let ty = v.get("type").and_then(Value::as_str).unwrap_or("").to_owned();
        let carrier = |name: &'static str| {
            move |s: Value, p: String| {
                (
                    json!({"type": "content_block_delta", "index": index, "delta": s}),
                    format!("/delta{p}"),
                    Some(name.to_owned()),
                )
            }
        };
        let mut changed = false;
        let mut taken = None;
        match ty.as_str() {
            "content_block_delta" if v.pointer("/delta/type").and_then(Value::as_str) != Some("citations_delta") => {
                if let Some(mut d) = v.as_object_mut().and_then(|m| m.remove("delta")) {
                    let key = |path: &[Seg]| FieldKey { scope: index, sub: 0, path: fields::path_string("", path) };
                    changed |= self.grow(scanner, &mut d, &key, &carrier("content_block_delta"))?.0;
                    taken = Some(("delta", d));
                }
            }
            "content_block_start" => {
                // The block's opening text is the start of the text its deltas extend.
                let field = match v.pointer("/content_block/type").and_then(Value::as_str) {
                    Some("text") => Some(("text", "text_delta")),
                    Some("thinking") => Some(("thinking", "thinking_delta")),
                    _ => None,
                };
                if let Some((field, delta_type)) = field {
                    let at = format!("/content_block/{field}");
                    let text = match v.pointer_mut(&at) {
                        Some(Value::String(s)) if !s.is_empty() => std::mem::take(s),
                        _ => String::new(),
                    };
                    if !text.is_empty() {
                        let key = FieldKey { scope: index, sub: 0, path: field.into() };
                        let make = || {
                            let mut d = Map::new();
                            d.insert("type".into(), json!(delta_type));
                            d.insert(field.into(), json!(""));
                            carrier("content_block_delta")(Value::Object(d), format!("/{field}"))
                        };
                        let i = self.slot(&key, make)?;
                        let released = self.st.push(scanner, &mut self.slots[i], &text);
                        changed |= released != text;
                        // The field is empty now: the rest of the event is redacted whole without it.
                        changed |= self.st.whole(scanner, v);
                        if let Some(s) = v.pointer_mut(&at) {
                            *s = Value::String(released);
                        }
                        return Some(changed);
                    }
                }
            }
            "content_block_stop" => before.extend(self.carriers(scanner, |k| k.scope == index)),
            "message_stop" => before.extend(self.carriers(scanner, |_| true)),
            _ => {}
        }
        changed |= self.st.whole(scanner, v);
        if let (Some((k, d)), Some(m)) = (taken, v.as_object_mut()) {
            m.insert(k.into(), d);
        }
        Some(changed)
    }

    /// A Responses event: a `response.*.delta` event's `delta` grows (per output index, content or
    /// summary index, and event type); the matching `.done` event, the item's `output_item.done`
    /// and the response's end release what is held.
    fn responses(&mut self, scanner: &Scanner, v: &mut Value, before: &mut Vec<Bytes>) -> Option<bool> {
        let oi = v.get("output_index").and_then(Value::as_u64).unwrap_or(0);
        let sub = v.get("content_index").or_else(|| v.get("summary_index")).and_then(Value::as_u64).unwrap_or(0);
        let ty = v.get("type").and_then(Value::as_str).unwrap_or("").to_owned();
        if ty.ends_with(".delta") {
            let mut changed = false;
            if let Some(mut d) = v.as_object_mut().and_then(|m| m.remove("delta")) {
                let skel = {
                    let mut s = Map::new();
                    for k in ["type", "item_id", "output_index", "content_index", "summary_index"] {
                        if let Some(x) = v.get(k) {
                            s.insert(k.into(), x.clone());
                        }
                    }
                    Value::Object(s)
                };
                let key = |path: &[Seg]| FieldKey { scope: oi, sub, path: fields::path_string(&ty, path) };
                let carrier = |s: Value, p: String| {
                    let mut e = skel.clone();
                    e["delta"] = s;
                    (e, format!("/delta{p}"), Some(ty.clone()))
                };
                changed |= self.grow(scanner, &mut d, &key, &carrier)?.0;
                changed |= self.st.whole(scanner, v);
                if let Some(m) = v.as_object_mut() {
                    m.insert("delta".into(), d);
                }
            } else {
                changed |= self.st.whole(scanner, v);
            }
            return Some(changed);
        }
        if let Some(family) = ty.strip_suffix(".done") {
            let field = format!("{family}.delta");
            let ends_item = ty == "response.output_item.done";
            before.extend(self.carriers(scanner, |k| {
                k.scope == oi && (ends_item || (k.sub == sub && k.path.split('/').next() == Some(field.as_str())))
            }));
            // The done event repeats the whole text: redacted whole, it equals what was streamed (its
            // findings were counted as the text streamed).
            let (mut ignored, mut links) = (Vec::new(), 0);
            redact_json_with(scanner, self.st.guard.as_ref(), v, &mut ignored, &mut links);
            return Some(!ignored.is_empty() || links > 0);
        }
        if matches!(ty.as_str(), "response.completed" | "response.incomplete" | "response.failed") {
            before.extend(self.carriers(scanner, |_| true));
        }
        Some(self.st.whole(scanner, v))
    }
}

/// What a growing field carries (see [`Kind`]).
fn kind_of(endpoint: Endpoint, key: &FieldKey) -> Kind {
    let p = key.path.as_str();
    match endpoint {
        Endpoint::ChatCompletions if p.starts_with("tool_calls/") || p.starts_with("function_call/") => Kind::Args,
        Endpoint::Messages if p == "partial_json" => Kind::Args,
        Endpoint::Responses if p.contains("arguments") || p.contains("_input.") => Kind::Args,
        Endpoint::Responses if p.starts_with("response.audio.delta") => Kind::Opaque,
        _ if p.ends_with("signature") => Kind::Opaque,
        _ => Kind::Text,
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

/// Longest markdown link or image the stream holds back for (text + URL + title).
pub const MARKDOWN_HOLD: usize = 2600;

/// Where released stream text must stop so no markdown link, image, autolink or HTML tag is cut
/// in half: the start of the earliest construct in the last [`MARKDOWN_HOLD`] bytes that is still
/// open (no closing `)` / `>` yet). Everything before it can be neutralised and released.
pub fn markdown_cut(text: &str) -> usize {
    let b = text.as_bytes();
    let from = super::scanner::floor(text, b.len().saturating_sub(MARKDOWN_HOLD));
    let mut i = from;
    while let Some(off) = memchr::memchr2(b'[', b'<', &b[i..]) {
        let c = i + off;
        let rest = &b[c..];
        let open = if rest[0] == b'<' {
            memchr::memchr(b'>', rest).is_none()
        } else {
            match memchr::memchr(b']', rest) {
                None => true,
                // `[text]` at the very end: a `(` or `:` may still follow.
                Some(close) if c + close + 1 == b.len() => true,
                Some(close) => match rest.get(close + 1) {
                    Some(b'(') => memchr::memchr(b')', &rest[close..]).is_none(),
                    Some(b':') => memchr::memchr(b'\n', &rest[close..]).is_none(),
                    _ => false,
                },
            }
        };
        if open {
            // Include a `!` that makes it an image.
            return if c > 0 && b[c - 1] == b'!' { c - 1 } else { c };
        }
        i = c + 1;
    }
    // A trailing `!` may become an image once its `[` arrives.
    if b.last() == Some(&b'!') {
        return b.len() - 1;
    }
    b.len()
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use serde_json::json;

    use super::*;

    fn scanner() -> Scanner {
        let rules =
            crate::inspect::catalog::builtin().unwrap().into_iter().filter(|(_, on)| *on).map(|(r, _)| r).collect();
        Scanner::new(rules, "[REDACTED:<rule-id>]").unwrap()
    }

    const TEXT: &str = "Sure. key AKIAZ7Q3M4N5P6R2T8VW, token ghp_8f3Kq2Lm9Xz4Vb7Nw1Rt6Yu0Pa5Sd3Fg2Hj4, \
        mail bob.smith@acme-corp.io, card 4111 1111 1111 1111 — and plain prose that must pass untouched: ünïcode 🦀.";

    /// Splits `text` at the (sorted, char-aligned) cut points.
    fn split(text: &str, cuts: &[usize]) -> Vec<String> {
        let mut out = Vec::new();
        let mut at = 0;
        for &c in cuts {
            let c = crate::inspect::scanner::floor(text, c).max(at);
            out.push(text[at..c].to_owned());
            at = c;
        }
        out.push(text[at..].to_owned());
        out
    }

    fn run(endpoint: Endpoint, events: Vec<String>, s: &Scanner) -> String {
        run_with(&mut StreamRedactor::new(endpoint), s, events)
    }

    fn texts(out: &str, endpoint: Endpoint) -> String {
        out.split("\n\n")
            .filter_map(|e| e.lines().find_map(|l| l.strip_prefix("data: ")).map(|d| (e, d)))
            .filter_map(|(e, d)| serde_json::from_str::<Value>(d).ok().map(|v| (e, v)))
            .filter_map(|(e, v)| match endpoint {
                Endpoint::ChatCompletions => {
                    v.pointer("/choices/0/delta/content").and_then(Value::as_str).map(str::to_owned)
                }
                Endpoint::Messages => v.pointer("/delta/text").and_then(Value::as_str).map(str::to_owned),
                _ => e.contains("output_text.delta").then(|| v["delta"].as_str().unwrap_or("").to_owned()),
            })
            .collect()
    }

    fn events(endpoint: Endpoint, pieces: &[String]) -> Vec<String> {
        let mut ev = Vec::new();
        match endpoint {
            Endpoint::ChatCompletions => {
                for p in pieces {
                    ev.push(format!(
                        "data: {}\n\n",
                        json!({"id": "c", "choices": [{"index": 0, "delta": {"content": p}, "finish_reason": null}]})
                    ));
                }
                ev.push(format!(
                    "data: {}\n\n",
                    json!({"id": "c", "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
                ));
                ev.push("data: [DONE]\n\n".into());
            }
            Endpoint::Messages => {
                ev.push("event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\n".into());
                for p in pieces {
                    ev.push(format!(
                        "event: content_block_delta\ndata: {}\n\n",
                        json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": p}})
                    ));
                }
                ev.push("event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":0}\n\n".into());
                ev.push("event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n".into());
            }
            _ => {
                for p in pieces {
                    ev.push(format!("event: response.output_text.delta\ndata: {}\n\n", json!({"type": "response.output_text.delta", "output_index": 0, "content_index": 0, "item_id": "i", "delta": p})));
                }
                ev.push(format!("event: response.output_text.done\ndata: {}\n\n", json!({"type": "response.output_text.done", "output_index": 0, "content_index": 0, "item_id": "i", "text": TEXT})));
            }
        }
        ev
    }

    /// A plain text delta takes the fast path: the released text is spliced into the upstream's own
    /// bytes (key order, spacing and every other member kept), and the result is still the general path's.
    #[test]
    fn text_deltas_are_spliced_into_the_raw_event() {
        let s = scanner();
        let raw = |t: &str| {
            format!("data: {{\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"created\": 1700000000,\"choices\":[{{\"index\":0,\"delta\":{{\"content\":{}}},\"logprobs\":null,\"finish_reason\":null}}]}}\n\n", json!(t))
        };
        let mut r = StreamRedactor::new(Endpoint::ChatCompletions);
        let long = "plain words flowing by without anything secret in them at all, ".repeat(4);
        let mut out = String::new();
        for piece in [long.as_str(), "and more.", " key AKIAZ7Q3M4N5P6R2T8VW end"] {
            match r.on_event(&s, raw(piece).as_bytes()) {
                Redacted::Same => out.push_str(&raw(piece)),
                Redacted::Events(v) => {
                    for e in v {
                        let e = String::from_utf8(e.to_vec()).unwrap();
                        assert!(
                            e.starts_with(
                                "data: {\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"created\": 1700000000,"
                            ),
                            "{e}"
                        );
                        out.push_str(&e);
                    }
                }
                Redacted::Uninspectable(why) => panic!("{why}"),
            }
        }
        for b in r.finish(&s) {
            out.push_str(&String::from_utf8_lossy(&b));
        }
        let want = s.redact(&format!("{long}and more. key AKIAZ7Q3M4N5P6R2T8VW end")).0.into_owned();
        assert_eq!(texts(&out, Endpoint::ChatCompletions), want);
        assert!(!out.contains("AKIAZ7Q3M4N5P6R2T8VW"));
    }

    /// Another tenant's identifier split across deltas is seen in every format; the stream itself is
    /// left as it was (detection only).
    #[test]
    fn tenant_identifiers_in_released_text() {
        let s = scanner();
        let ids = std::sync::Arc::new(
            crate::inspect::tenants::TenantIds::new(&[("globex".into(), vec!["GLX-ACCT-".into()])]).unwrap(),
        );
        let text = "Account glx-a";
        for ep in [Endpoint::ChatCompletions, Endpoint::Messages, Endpoint::Responses] {
            let pieces: Vec<String> = vec![text.into(), "cct-1 is".into(), " fine.".into()];
            let mut r = StreamRedactor::new(ep).with_tenants(ids.clone());
            let mut out = String::new();
            for e in events(ep, &pieces) {
                match r.on_event(&s, e.as_bytes()) {
                    Redacted::Same => out.push_str(&e),
                    Redacted::Events(v) => v.iter().for_each(|b| out.push_str(&String::from_utf8_lossy(b))),
                    Redacted::Uninspectable(why) => panic!("{why}"),
                }
            }
            assert_eq!(r.cross_tenant("acme"), vec!["globex"], "{ep:?}");
            assert!(r.cross_tenant("globex").is_empty(), "{ep:?}: own tenant");
            if ep != Endpoint::Responses {
                assert_eq!(texts(&out, ep), "Account glx-acct-1 is fine.", "{ep:?}");
            }
        }
        let mut r = StreamRedactor::new(Endpoint::ChatCompletions)
            .with_tenants(std::sync::Arc::new(crate::inspect::tenants::TenantIds::default()));
        assert!(r.st.tenants.is_none(), "nothing declared: no scanning state");
        r.on_event(&s, events(Endpoint::ChatCompletions, &["GLX-ACCT-1".into()])[0].as_bytes());
        assert!(r.cross_tenant("acme").is_empty());
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        /// For any chunking, in all three stream formats, the client-visible text equals the
        /// redaction of the whole text, and no secret appears anywhere in what is sent.
        #[test]
        fn every_format_any_chunking(cuts in proptest::collection::vec(0usize..TEXT.len(), 0..60)) {
            let s = scanner();
            let mut cuts = cuts;
            cuts.sort_unstable();
            let pieces = split(TEXT, &cuts);
            let want = s.redact(TEXT).0.into_owned();
            for ep in [Endpoint::ChatCompletions, Endpoint::Messages, Endpoint::Responses] {
                let out = run(ep, events(ep, &pieces), &s);
                prop_assert_eq!(texts(&out, ep), want.clone(), "{:?}", ep);
                for secret in ["AKIAZ7Q3M4N5P6R2T8VW", "ghp_8f3Kq2Lm9Xz4Vb7Nw1Rt6Yu0Pa5Sd3Fg2Hj4", "4111 1111 1111 1111", "bob.smith@acme-corp.io"] {
                    prop_assert!(!out.contains(secret), "{:?} leaked {}", ep, secret);
                }
            }
        }

        /// Clean text passes through byte-identical, whatever the chunking.
        #[test]
        fn clean_text_is_unchanged(cuts in proptest::collection::vec(0usize..200, 0..30)) {
            let s = scanner();
            let clean = "The quick brown fox jumps over the lazy dog; see section [3] and ![fig](/img/a.png). ".repeat(3);
            let mut cuts = cuts;
            cuts.sort_unstable();
            let pieces = split(&clean, &cuts);
            let out = run(Endpoint::ChatCompletions, events(Endpoint::ChatCompletions, &pieces), &s);
            prop_assert_eq!(texts(&out, Endpoint::ChatCompletions), clean);
        }

        /// The invariant for every string field, known or not: text in random fields (refusal,
        /// reasoning, thinking, tool input, signature, unknown names), given directly, as an array of
        /// parts or nested, in all three formats, two fields interleaved, cut anywhere: each field the
        /// client assembles equals the redaction of its whole text, and no secret appears anywhere
        /// (a secret in an unknown whole field of every event included).
        #[test]
        fn every_field_any_shape_any_chunking(
            ep in prop_oneof![Just(Endpoint::ChatCompletions), Just(Endpoint::Messages), Just(Endpoint::Responses)],
            a in 0usize..5,
            b in 0usize..5,
            unknown in "x_[a-z_]{1,12}",
            nest_a in 0u8..4,
            nest_b in 0u8..4,
            together in any::<bool>(),
            cuts_a in proptest::collection::vec(0usize..TEXT.len(), 0..40),
            cuts_b in proptest::collection::vec(0usize..TEXT2.len(), 0..40),
        ) {
            let s = scanner();
            let mut names: Vec<String> = field_names(ep).iter().map(|n| (*n).to_owned()).collect();
            names.push(unknown);
            let b = if a == b { (b + 1) % names.len() } else { b };
            let fa = Field { ep, name: names[a].clone(), nest: nest_a, scope: 0 };
            // Anthropic fields live in content blocks: the second field is another block.
            let fb = Field { ep, name: names[b].clone(), nest: nest_b, scope: u64::from(ep == Endpoint::Messages) };
            let (mut cuts_a, mut cuts_b) = (cuts_a, cuts_b);
            cuts_a.sort_unstable();
            cuts_b.sort_unstable();
            let (pa, pb) = (split(TEXT, &cuts_a), split(TEXT2, &cuts_b));
            let out = run(ep, shaped_events(&fa, &pa, &fb, &pb, together), &s);
            prop_assert_eq!(fa.assembled(&out), s.redact(TEXT).0.into_owned(), "{:?}", fa);
            prop_assert_eq!(fb.assembled(&out), s.redact(TEXT2).0.into_owned(), "{:?}", fb);
            for secret in SECRETS {
                prop_assert!(!out.contains(secret), "{:?} leaked {}: {}", ep, secret, out);
            }
        }
    }

    const TEXT2: &str = "Thinking: the card is 5500 0000 0000 0004, the key AKIAZ7Q3M4N5P6R2T8VX and \
        jane.doe@example-mail.org; nothing else.";

    const SECRETS: [&str; 7] = [
        "AKIAZ7Q3M4N5P6R2T8VW",
        "ghp_8f3Kq2Lm9Xz4Vb7Nw1Rt6Yu0Pa5Sd3Fg2Hj4",
        "4111 1111 1111 1111",
        "bob.smith@acme-corp.io",
        "5500 0000 0000 0004",
        "AKIAZ7Q3M4N5P6R2T8VX",
        "jane.doe@example-mail.org",
    ];

    /// Field names per format: the known growing fields (a random unknown one is added).
    fn field_names(ep: Endpoint) -> [&'static str; 4] {
        match ep {
            Endpoint::ChatCompletions => ["content", "refusal", "reasoning_content", "reasoning"],
            Endpoint::Messages => ["text", "thinking", "partial_json", "signature"],
            _ => ["output_text", "refusal", "reasoning_summary_text", "reasoning_text"],
        }
    }

    /// One growing field: its format, name, nesting (0 a string, 1 an array of parts, 2 a nested
    /// object, 3 parts within parts) and its choice / block index.
    #[derive(Debug)]
    struct Field {
        ep: Endpoint,
        name: String,
        nest: u8,
        scope: u64,
    }

    impl Field {
        /// The value that carries `text` (under the field's name, except for Responses).
        fn wrap(&self, text: &str) -> Value {
            match self.nest {
                0 => json!(text),
                1 => json!([{"type": "text", "text": text}]),
                2 => json!({"inner": text}),
                _ => json!([{"type": "thinking", "thinking": [{"type": "text", "text": text}]}]),
            }
        }

        fn inner_pointer(&self) -> &'static str {
            ["", "/0/text", "/inner", "/0/thinking/0/text"][self.nest as usize]
        }

        fn responses_type(&self, suffix: &str) -> String {
            format!("response.{}.{suffix}", self.name)
        }

        /// The data of one event carrying `text` in this field (and the same secret, whole, in an
        /// unknown member).
        fn event(&self, text: &str) -> String {
            let meta = "whole: AKIAZ7Q3M4N5P6R2T8VW";
            match self.ep {
                Endpoint::ChatCompletions => format!(
                    "data: {}\n\n",
                    json!({"id": "c", "object": "chat.completion.chunk", "x_meta": meta,
                        "choices": [{"index": self.scope, "delta": {self.name.as_str(): self.wrap(text)}, "finish_reason": null}]})
                ),
                Endpoint::Messages => {
                    let ty = match self.name.as_str() {
                        "text" => "text_delta",
                        "thinking" => "thinking_delta",
                        "partial_json" => "input_json_delta",
                        "signature" => "signature_delta",
                        _ => "x_vendor_delta",
                    };
                    format!(
                        "event: content_block_delta\ndata: {}\n\n",
                        json!({"type": "content_block_delta", "index": self.scope, "x_meta": meta,
                            "delta": {"type": ty, self.name.as_str(): self.wrap(text)}})
                    )
                }
                _ => {
                    let ty = self.responses_type("delta");
                    let index =
                        if self.name.starts_with("reasoning_summary") { "summary_index" } else { "content_index" };
                    format!(
                        "event: {ty}\ndata: {}\n\n",
                        json!({"type": ty, "item_id": "i", "output_index": self.scope, index: 0, "x_meta": meta,
                            "obfuscation": "q9Zt", "delta": self.wrap(text)})
                    )
                }
            }
        }

        /// What a client assembles of this field from the delivered stream.
        fn assembled(&self, out: &str) -> String {
            let mut text = String::new();
            for e in out.split("\n\n") {
                let Some(d) = e.lines().find_map(|l| l.strip_prefix("data: ")) else { continue };
                let Ok(v) = serde_json::from_str::<Value>(d) else { continue };
                let pointer = match self.ep {
                    Endpoint::ChatCompletions => {
                        if v.pointer("/choices/0/index").and_then(Value::as_u64) != Some(self.scope) {
                            continue;
                        }
                        format!("/choices/0/delta/{}{}", self.name, self.inner_pointer())
                    }
                    Endpoint::Messages => {
                        if v["type"] != "content_block_delta" || v["index"].as_u64() != Some(self.scope) {
                            continue;
                        }
                        format!("/delta/{}{}", self.name, self.inner_pointer())
                    }
                    _ => {
                        if v["type"] != self.responses_type("delta").as_str() {
                            continue;
                        }
                        format!("/delta{}", self.inner_pointer())
                    }
                };
                text.push_str(v.pointer(&pointer).and_then(Value::as_str).unwrap_or(""));
            }
            text
        }
    }

    /// A stream of `ep` carrying the pieces of two fields (in the same events or in turns), with the
    /// format's opening and closing events.
    fn shaped_events(fa: &Field, pa: &[String], fb: &Field, pb: &[String], together: bool) -> Vec<String> {
        let ep = fa.ep;
        let mut ev = Vec::new();
        if ep == Endpoint::Messages {
            for f in [fa, fb] {
                ev.push(format!("event: content_block_start\ndata: {}\n\n", json!({"type": "content_block_start", "index": f.scope, "content_block": {"type": "text", "text": ""}})));
            }
        }
        let n = pa.len().max(pb.len());
        for i in 0..n {
            let (x, y) = (pa.get(i).map_or("", String::as_str), pb.get(i).map_or("", String::as_str));
            if together && ep == Endpoint::ChatCompletions {
                // Both fields in one delta.
                let mut v: Value = serde_json::from_str(fa.event(x).trim_start_matches("data: ").trim()).unwrap();
                v["choices"][0]["delta"][fb.name.as_str()] = fb.wrap(y);
                ev.push(format!("data: {v}\n\n"));
            } else {
                ev.push(fa.event(x));
                ev.push(fb.event(y));
            }
        }
        match ep {
            Endpoint::ChatCompletions => {
                ev.push(format!(
                    "data: {}\n\n",
                    json!({"id": "c", "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
                ));
                ev.push("data: [DONE]\n\n".into());
            }
            Endpoint::Messages => {
                for f in [fa, fb] {
                    ev.push(format!(
                        "event: content_block_stop\ndata: {}\n\n",
                        json!({"type": "content_block_stop", "index": f.scope})
                    ));
                }
                ev.push("event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n".into());
            }
            _ => {
                for (f, whole) in [(fa, TEXT), (fb, TEXT2)] {
                    let ty = f.responses_type("done");
                    ev.push(format!(
                        "event: {ty}\ndata: {}\n\n",
                        json!({"type": ty, "item_id": "i", "output_index": f.scope, "content_index": 0, "text": whole})
                    ));
                }
                ev.push(format!(
                    "event: response.completed\ndata: {}\n\n",
                    json!({"type": "response.completed", "response": {"id": "r", "status": "completed"}})
                ));
            }
        }
        ev
    }

    /// A stream may hold back only so many fields: one more ends it (fail closed), whatever path the
    /// event takes.
    #[test]
    fn too_many_fields_is_uninspectable() {
        let s = scanner();
        let mut r = StreamRedactor::new(Endpoint::ChatCompletions);
        for i in 0..MAX_FIELDS as u64 {
            let e = format!("data: {}\n\n", json!({"choices": [{"index": i, "delta": {"content": "x"}}]}));
            assert!(!matches!(r.on_event(&s, e.as_bytes()), Redacted::Uninspectable(_)), "field {i}");
        }
        let e = format!("data: {}\n\n", json!({"choices": [{"index": 999, "delta": {"content": "x"}}]}));
        assert!(matches!(r.on_event(&s, e.as_bytes()), Redacted::Uninspectable(_)));
        let e = format!("data: {}\n\n", json!({"choices": [{"index": 0, "delta": {"x_new": "y"}}]}));
        assert!(matches!(r.on_event(&s, e.as_bytes()), Redacted::Uninspectable(_)));
    }

    /// Data that is not JSON is not the provider's format: the stream ends. Empty data and `[DONE]`
    /// carry nothing and pass.
    #[test]
    fn data_that_is_not_json_ends_the_stream_but_keep_alives_pass() {
        let s = scanner();
        for ep in [Endpoint::ChatCompletions, Endpoint::Messages, Endpoint::Responses] {
            let mut r = StreamRedactor::new(ep);
            assert!(matches!(r.on_event(&s, b"data: <html>oops</html>\n\n"), Redacted::Uninspectable(_)), "{ep:?}");
            for ok in [&b"data:\n\n"[..], b"data: [DONE]\n\n", b": ping\n\n", b"event: ping\n\n"] {
                assert!(matches!(r.on_event(&s, ok), Redacted::Same), "{ep:?} {}", String::from_utf8_lossy(ok));
            }
        }
    }

    /// The fast path takes only events whose other strings are identifiers: a refusal or an unknown
    /// text member beside the content is inspected too.
    #[test]
    fn a_second_text_member_is_not_skipped_by_the_fast_path() {
        let s = scanner();
        for extra in [
            json!({"refusal": "AKIAZ7Q3M4N5P6R2T8VW"}),
            json!({"reasoning_content": "AKIAZ7Q3M4N5P6R2T8VW"}),
            json!({"x_note": "AKIAZ7Q3M4N5P6R2T8VW"}),
        ] {
            let mut delta = json!({"content": "hello"});
            delta.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
            let mut r = StreamRedactor::new(Endpoint::ChatCompletions);
            let out =
                run_with(&mut r, &s, vec![format!("data: {}\n\n", json!({"choices": [{"index": 0, "delta": delta}]}))]);
            assert!(!out.contains("AKIAZ7Q3M4N5P6R2T8VW"), "{out}");
        }
        let mut r = StreamRedactor::new(Endpoint::ChatCompletions);
        let out = run_with(
            &mut r,
            &s,
            vec![format!(
                "data: {}\n\n",
                json!({"obfuscation": "AKIAZ7Q3M4N5P6R2T8VW", "choices": [{"index": 0, "delta": {"content": "hi"}}]})
            )],
        );
        assert!(!out.contains("AKIAZ7Q3M4N5P6R2T8VW"), "{out}");
    }

    fn run_with(r: &mut StreamRedactor, s: &Scanner, events: Vec<String>) -> String {
        let mut out = String::new();
        for e in events {
            match r.on_event(s, e.as_bytes()) {
                Redacted::Same => out.push_str(&e),
                Redacted::Events(v) => v.iter().for_each(|b| out.push_str(&String::from_utf8_lossy(b))),
                Redacted::Uninspectable(_) => out.push_str("<uninspectable>"),
            }
        }
        for b in r.finish(s) {
            out.push_str(&String::from_utf8_lossy(&b));
        }
        out
    }

    #[test]
    fn token_data_is_found_in_bytes_and_values() {
        for (doc, carries) in [
            (&br#"{"logprobs":null}"#[..], false),
            (br#"{"logprobs" : true}"#, false),
            (br#"{"logprobs":[]}"#, false),
            (br#"{"logprobs": [ ]}"#, false),
            (br#"{"logprobs":[{"token":"a"}]}"#, true),
            (br#"{"choices":[{"logprobs": {"content":[]}}]}"#, true),
            (br#"{"text":"say \"logprobs\": [1]"}"#, false),
        ] {
            assert_eq!(may_carry_token_data(doc), carries, "{}", String::from_utf8_lossy(doc));
        }
        assert!(!carries_token_data(&json!({"content": null, "refusal": []})));
        assert!(carries_token_data(&json!({"content": [{"bytes": [65]}]})));
        let mut v = json!({"choices": [{"logprobs": {"content": [{"token": "AKIA"}]}, "id": {"logprobs": [1]}}]});
        assert!(drop_all_token_data(&mut v));
        assert_eq!(v, json!({"choices": [{"logprobs": null, "id": {"logprobs": [1]}}]}));
    }
}
