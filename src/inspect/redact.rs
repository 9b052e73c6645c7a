//! Redaction of model output: whole JSON bodies, and SSE streams of the three formats (OpenAI chat
//! completions, OpenAI Responses, Anthropic messages), where every text field is JSON-decoded per
//! choice / content block, passed through a [`HoldBack`], and re-encoded.
//!
//! Hot path: the common event — one text delta and nothing else to look at — is read with a borrowing
//! typed decode that locates the text in the raw event; the released text is spliced into the raw
//! bytes in its place (nothing else is decoded, rebuilt or re-serialised). Every other event, and any
//! event the fast decode does not fully understand (escapes in the text, several choices, tool calls, a
//! finish reason, duplicate keys), takes the general path through a `serde_json::Value`.

use std::borrow::Cow;
use std::collections::BTreeMap;

use bytes::Bytes;
use serde_json::{json, Map, Value};

use super::holdback::HoldBack;
use super::scanner::Scanner;
use crate::protocol::sse::{event as sse, parse_event};
use crate::protocol::Endpoint;

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

/// What became of one event.
#[derive(Debug)]
pub enum Redacted {
    /// Forward unchanged.
    Same,
    /// Send these instead (possibly none).
    Events(Vec<Bytes>),
}

/// Per-stream redaction state.
#[derive(Debug)]
pub struct StreamRedactor {
    endpoint: Endpoint,
    /// One hold-back per text stream: (choice or output index, field slot).
    held: BTreeMap<(u64, u64), HoldBack>,
    /// Chat: the last chunk's JSON data, whose envelope wraps text flushed before `[DONE]` (kept raw and
    /// decoded only when needed; the buffer is reused from event to event).
    last_chunk: Vec<u8>,
    /// Anthropic: what kind of delta each content block carries.
    block_kind: BTreeMap<u64, &'static str>,
    /// The shape of the last event the fast path decoded (see [`Template`]).
    template: Option<Template>,
    /// Rules that matched (for audit and metrics; never the text).
    pub found: Vec<u16>,
    /// Outside links in text are neutralised (held until complete).
    guard: Option<LinkGuard>,
    /// Per text stream: released-by-redaction text not yet released past the link check.
    md: BTreeMap<(u64, u64), String>,
    /// Links neutralised so far.
    pub links: usize,
    /// System-prompt fragments in the released text.
    fragments: Option<(std::sync::Arc<super::fragments::PromptShingles>, super::fragments::FragmentCounter)>,
    /// Tenant identifiers in the released text (only when the policy declares some).
    tenants: Option<(std::sync::Arc<super::tenants::TenantIds>, super::tenants::StreamScan)>,
}

/// Slots for the text fields of one choice / block / item.
const TEXT: u64 = 0;
const ARGS: u64 = 1;

impl StreamRedactor {
    /// A redactor for a stream of `endpoint`.
    pub fn new(endpoint: Endpoint) -> Self {
        StreamRedactor {
            endpoint,
            held: BTreeMap::new(),
            last_chunk: Vec::new(),
            template: None,
            block_kind: BTreeMap::new(),
            found: Vec::new(),
            guard: None,
            md: BTreeMap::new(),
            links: 0,
            fragments: None,
            tenants: None,
        }
    }

    /// Looks for these tenant identifiers in the released text (see [`super::tenants`]).
    pub fn with_tenants(mut self, ids: std::sync::Arc<super::tenants::TenantIds>) -> Self {
        if !ids.is_empty() {
            self.tenants = Some((ids, super::tenants::StreamScan::default()));
        }
        self
    }

    /// The tenants other than `own` whose identifiers the client received.
    pub fn cross_tenant(&self, own: &str) -> Vec<String> {
        self.tenants.as_ref().map(|(ids, scan)| ids.others(&scan.hits, own)).unwrap_or_default()
    }

    /// The text released to the client from stream `key`, as last seen: scanned for tenant identifiers.
    fn released(&mut self, key: (u64, u64), text: String) -> String {
        if let Some((ids, scan)) = &mut self.tenants {
            scan.push(ids, key, &text);
        }
        text
    }

    /// Counts fragments of these prompts in the released text.
    pub fn with_prompts(mut self, prompts: std::sync::Arc<super::fragments::PromptShingles>) -> Self {
        if !prompts.is_empty() {
            self.fragments = Some((prompts, super::fragments::FragmentCounter::default()));
        }
        self
    }

    /// System-prompt shingles found in the stream so far.
    pub fn prompt_fragments(&mut self) -> usize {
        match &mut self.fragments {
            Some((p, c)) => {
                c.finish(p);
                c.total()
            }
            None => 0,
        }
    }

    /// Adds a guard that neutralises links pointing outside the egress rules.
    pub fn with_links(mut self, guard: LinkGuard) -> Self {
        self.guard = Some(guard);
        self
    }

    fn push(&mut self, scanner: &Scanner, key: (u64, u64), text: &str) -> String {
        let hb = self.held.entry(key).or_default();
        let mut out = String::with_capacity(text.len());
        hb.push(scanner, text, &mut out);
        self.found.append(&mut hb.findings);
        let out = self.links_stage(key, out, false);
        self.released(key, out)
    }

    fn flush(&mut self, scanner: &Scanner, key: (u64, u64)) -> String {
        let mut out = String::new();
        if let Some(mut hb) = self.held.remove(&key) {
            hb.finish(scanner, &mut out);
            self.found.append(&mut hb.findings);
        }
        let out = self.links_stage(key, out, true);
        self.released(key, out)
    }

    /// Second stage for text (not tool arguments): hold an open markdown construct until complete,
    /// then neutralise outside links in what is released.
    fn links_stage(&mut self, key: (u64, u64), released: String, end: bool) -> String {
        let Some(guard) = self.guard.as_ref() else { return released };
        let is_text = match self.endpoint {
            Endpoint::ChatCompletions => key.1 == TEXT,
            Endpoint::Responses => key.1 % 2 == 0,
            Endpoint::Messages => self.block_kind.get(&key.0).copied() != Some("input_json_delta"),
            _ => false,
        };
        if !is_text {
            return released;
        }
        if let Some((p, c)) = &mut self.fragments {
            c.push(p, &released);
        }
        let mut pending = self.md.remove(&key).unwrap_or_default();
        pending.push_str(&released);
        let cut = if end { pending.len() } else { markdown_cut(&pending) };
        let rest = pending.split_off(cut);
        if !rest.is_empty() {
            self.md.insert(key, rest);
        }
        match guard.apply(&pending) {
            Some((out, n)) => {
                self.links += n;
                out
            }
            None => pending,
        }
    }

    /// Redacts one raw SSE event.
    pub fn on_event(&mut self, scanner: &Scanner, raw: &[u8]) -> Redacted {
        if let Some((key, text)) = self.template.as_ref().and_then(|t| t.text_of(raw)) {
            if self.endpoint == Endpoint::ChatCompletions {
                if let Some(t) = &self.template {
                    self.last_chunk.clear();
                    self.last_chunk.extend_from_slice(&raw[t.data_start..raw.len() - t.data_tail]);
                }
            }
            return self.splice(scanner, raw, key, text).unwrap_or(Redacted::Same);
        }
        let ev = parse_event(raw);
        if let Some(Cow::Borrowed(data)) = ev.data {
            if let Some(r) = self.fast(scanner, raw, data) {
                return r;
            }
        }
        let Some(data) = ev.data.as_deref() else { return Redacted::Same };
        let name = ev.name.map(str::to_owned);
        match self.endpoint {
            Endpoint::ChatCompletions => self.chat(scanner, data),
            Endpoint::Messages => self.messages(scanner, name.as_deref(), data),
            Endpoint::Responses => self.responses(scanner, name.as_deref(), data),
            _ => Redacted::Same,
        }
    }

    /// The text still held at the end of an upstream stream that ended without its terminal events.
    pub fn finish(&mut self, scanner: &Scanner) -> Vec<Bytes> {
        let mut keys: Vec<(u64, u64)> = self.held.keys().chain(self.md.keys()).copied().collect();
        keys.sort_unstable();
        keys.dedup();
        let mut out = Vec::new();
        for k in keys {
            let text = self.flush(scanner, k);
            if text.is_empty() {
                continue;
            }
            out.push(match self.endpoint {
                Endpoint::Messages => sse(Some("content_block_delta"), &json!({"type": "content_block_delta", "index": k.0, "delta": {"type": "text_delta", "text": text}})),
                Endpoint::Responses => sse(Some("response.output_text.delta"), &json!({"type": "response.output_text.delta", "output_index": k.0, "content_index": 0, "delta": text})),
                _ => self.chat_envelope(k.0, text),
            });
        }
        out
    }

    /// The fast path for an event that carries one text delta and nothing else that needs a look (see
    /// the module doc); `None` when the event needs the general path. `data` is borrowed from `raw`.
    fn fast(&mut self, scanner: &Scanner, raw: &[u8], data: &str) -> Option<Redacted> {
        let (key, text) = match self.endpoint {
            Endpoint::ChatCompletions => {
                let c: fast::ChatChunk<'_> = serde_json::from_str(data).ok()?;
                let [choice] = &c.choices[..] else { return None };
                if choice.finish_reason.is_some() {
                    return None;
                }
                let delta = choice.delta.as_ref()?;
                if delta.tool_calls.is_some() {
                    return None;
                }
                let Some(Cow::Borrowed(text)) = delta.content else { return None };
                self.last_chunk.clear();
                self.last_chunk.extend_from_slice(data.as_bytes());
                ((choice.index, TEXT), text)
            }
            Endpoint::Messages => {
                let e: fast::MessagesDelta<'_> = serde_json::from_str(data).ok()?;
                if e.ty != "content_block_delta" {
                    return None;
                }
                let d = e.delta?;
                let field = match d.ty? {
                    "text_delta" => d.text,
                    "input_json_delta" => d.partial_json,
                    "thinking_delta" => d.thinking,
                    _ => return None,
                };
                let Some(Cow::Borrowed(text)) = field else { return None };
                ((e.index, TEXT), text)
            }
            Endpoint::Responses => {
                let e: fast::ResponsesDelta<'_> = serde_json::from_str(data).ok()?;
                let key = match e.ty {
                    "response.output_text.delta" | "response.refusal.delta" => {
                        (e.output_index, TEXT + 2 * e.content_index)
                    }
                    "response.function_call_arguments.delta" => (e.output_index, ARGS),
                    _ => return None,
                };
                let Some(Cow::Borrowed(text)) = e.delta else { return None };
                (key, text)
            }
            _ => return None,
        };
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
        self.splice(scanner, raw, key, text)
    }

    /// Releases what `text` (a JSON string literal without escapes in `raw`) lets out of stream `key`,
    /// spliced into `raw` in the literal's place.
    fn splice(&mut self, scanner: &Scanner, raw: &[u8], key: (u64, u64), text: &str) -> Option<Redacted> {
        let at = span_in(raw, text.as_bytes())?;
        let (start, end) = (at.checked_sub(1)?, at + text.len() + 1);
        let released = self.push(scanner, key, text);
        if released == text {
            return Some(Redacted::Same);
        }
        let mut out = Vec::with_capacity(raw.len() + released.len() - text.len().min(released.len()) + 8);
        out.extend_from_slice(&raw[..start]);
        serde_json::to_writer(&mut out, released.as_str()).ok()?;
        out.extend_from_slice(&raw[end..]);
        Some(Redacted::Events(vec![Bytes::from(out)]))
    }

    fn chat_envelope(&self, choice: u64, text: String) -> Bytes {
        let mut m = match serde_json::from_slice::<Value>(&self.last_chunk) {
            Ok(Value::Object(mut m)) => {
                m.remove("choices");
                m.remove("usage");
                m
            }
            _ => Map::new(),
        };
        m.insert("choices".into(), json!([{"index": choice, "delta": {"content": text}, "finish_reason": null}]));
        sse(None, &Value::Object(m))
    }

    fn chat(&mut self, scanner: &Scanner, data: &str) -> Redacted {
        if data.trim() == "[DONE]" {
            let mut events = self.finish(scanner);
            if events.is_empty() {
                return Redacted::Same;
            }
            events.push(Bytes::from_static(b"data: [DONE]\n\n"));
            return Redacted::Events(events);
        }
        let Ok(Value::Object(mut v)) = serde_json::from_str::<Value>(data) else {
            return self.opaque(scanner, None, data);
        };
        let mut changed = false;
        if let Some(Value::Array(choices)) = v.get_mut("choices") {
            for c in choices.iter_mut() {
                let ci = c.get("index").and_then(Value::as_u64).unwrap_or(0);
                let finished = c.get("finish_reason").is_some_and(|f| !f.is_null());
                let Some(delta) = c.get_mut("delta").and_then(Value::as_object_mut) else { continue };
                if let Some(Value::String(t)) = delta.get("content") {
                    let t = t.clone();
                    let mut released = self.push(scanner, (ci, TEXT), &t);
                    if finished {
                        released.push_str(&self.flush(scanner, (ci, TEXT)));
                    }
                    delta.insert("content".into(), Value::from(released));
                    changed = true;
                } else if finished && self.held.contains_key(&(ci, TEXT)) {
                    delta.insert("content".into(), Value::from(self.flush(scanner, (ci, TEXT))));
                    changed = true;
                }
                if let Some(Value::Array(calls)) = delta.get_mut("tool_calls") {
                    for call in calls.iter_mut() {
                        let ti = call.get("index").and_then(Value::as_u64).unwrap_or(0);
                        if let Some(Value::String(a)) = call.pointer("/function/arguments") {
                            let a = a.clone();
                            let released = self.push(scanner, (ci, ARGS + 1 + ti), &a);
                            call["function"]["arguments"] = Value::from(released);
                            changed = true;
                        }
                    }
                }
                if finished {
                    // Arguments held for this choice's calls go out with the finishing chunk.
                    let keys: Vec<(u64, u64)> = self.held.keys().filter(|k| k.0 == ci && k.1 > ARGS).copied().collect();
                    for k in keys {
                        let rest = self.flush(scanner, k);
                        if !rest.is_empty() {
                            let calls = delta.entry("tool_calls").or_insert_with(|| json!([]));
                            if let Value::Array(a) = calls {
                                a.push(json!({"index": k.1 - ARGS - 1, "function": {"arguments": rest}}));
                            }
                            changed = true;
                        }
                    }
                }
            }
        }
        self.last_chunk.clear();
        self.last_chunk.extend_from_slice(data.as_bytes());
        if changed {
            Redacted::Events(vec![sse(None, &Value::Object(v))])
        } else {
            Redacted::Same
        }
    }

    fn messages(&mut self, scanner: &Scanner, name: Option<&str>, data: &str) -> Redacted {
        let mut v = match serde_json::from_str::<Value>(data) {
            Ok(v @ Value::Object(_)) => v,
            _ => return self.opaque(scanner, name, data),
        };
        let index = v.get("index").and_then(Value::as_u64).unwrap_or(0);
        match v.get("type").and_then(Value::as_str) {
            Some("content_block_start") => {
                let kind = match v.pointer("/content_block/type").and_then(Value::as_str) {
                    Some("tool_use") | Some("server_tool_use") => "input_json_delta",
                    Some("thinking") => "thinking_delta",
                    _ => "text_delta",
                };
                self.block_kind.insert(index, kind);
                let mut found = Vec::new();
                if let Some(b) = v.get_mut("content_block") {
                    redact_json(scanner, b, &mut found);
                }
                if found.is_empty() {
                    Redacted::Same
                } else {
                    self.found.extend(found);
                    Redacted::Events(vec![sse(name, &v)])
                }
            }
            Some("content_block_delta") => {
                let field = match v.pointer("/delta/type").and_then(Value::as_str) {
                    Some("text_delta") => "text",
                    Some("input_json_delta") => "partial_json",
                    Some("thinking_delta") => "thinking",
                    _ => return Redacted::Same,
                };
                let Some(t) = v.pointer(&format!("/delta/{field}")).and_then(Value::as_str).map(str::to_owned) else {
                    return Redacted::Same;
                };
                let released = self.push(scanner, (index, TEXT), &t);
                v["delta"][field] = Value::from(released);
                Redacted::Events(vec![sse(name, &v)])
            }
            Some("content_block_stop") => {
                let rest = self.flush(scanner, (index, TEXT));
                if rest.is_empty() {
                    return Redacted::Same;
                }
                let kind = self.block_kind.get(&index).copied().unwrap_or("text_delta");
                let field = match kind {
                    "input_json_delta" => "partial_json",
                    "thinking_delta" => "thinking",
                    _ => "text",
                };
                let delta =
                    json!({"type": "content_block_delta", "index": index, "delta": {"type": kind, field: rest}});
                Redacted::Events(vec![sse(Some("content_block_delta"), &delta), sse(name, &v)])
            }
            Some("message_stop") => {
                let mut events = self.finish(scanner);
                if events.is_empty() {
                    return Redacted::Same;
                }
                events.push(sse(name, &v));
                Redacted::Events(events)
            }
            _ => self.whole(scanner, name, v),
        }
    }

    fn responses(&mut self, scanner: &Scanner, name: Option<&str>, data: &str) -> Redacted {
        let Ok(Value::Object(mut v)) = serde_json::from_str::<Value>(data) else {
            return self.opaque(scanner, name, data);
        };
        let oi = v.get("output_index").and_then(Value::as_u64).unwrap_or(0);
        let ci = v.get("content_index").and_then(Value::as_u64).unwrap_or(0);
        let ty = v.get("type").and_then(Value::as_str).unwrap_or("").to_owned();
        let (key, field) = match ty.as_str() {
            "response.output_text.delta" | "response.refusal.delta" => ((oi, TEXT + 2 * ci), "delta"),
            "response.function_call_arguments.delta" => ((oi, ARGS), "delta"),
            "response.output_text.done" | "response.refusal.done" | "response.function_call_arguments.done" => {
                let key = if ty.starts_with("response.function") { (oi, ARGS) } else { (oi, TEXT + 2 * ci) };
                let rest = self.flush(scanner, key);
                // The done event repeats the whole text: redacted whole, it equals what was streamed.
                let mut whole = Value::Object(v);
                let mut ignored = Vec::new();
                redact_json_with(scanner, self.guard.as_ref(), &mut whole, &mut ignored, &mut 0);
                let mut events = Vec::new();
                if !rest.is_empty() {
                    let delta_type = if key.1 == ARGS {
                        "response.function_call_arguments.delta"
                    } else {
                        "response.output_text.delta"
                    };
                    let mut d = json!({"type": delta_type, "output_index": oi, "delta": rest});
                    if key.1 != ARGS {
                        d["content_index"] = json!(ci);
                    }
                    if let Some(id) = whole.get("item_id") {
                        d["item_id"] = id.clone();
                    }
                    events.push(sse(Some(delta_type), &d));
                }
                events.push(sse(name, &whole));
                return Redacted::Events(events);
            }
            _ => return self.whole(scanner, name, Value::Object(v)),
        };
        let Some(t) = v.get(field).and_then(Value::as_str).map(str::to_owned) else { return Redacted::Same };
        let released = self.push(scanner, key, &t);
        v.insert(field.into(), Value::from(released));
        Redacted::Events(vec![sse(name, &Value::Object(v))])
    }

    /// An event with whole texts (item done, response completed, message start): redacted whole.
    fn whole(&mut self, scanner: &Scanner, name: Option<&str>, mut v: Value) -> Redacted {
        let before = (self.found.len(), self.links);
        redact_json_with(scanner, self.guard.as_ref(), &mut v, &mut self.found, &mut self.links);
        if let Some((ids, scan)) = &mut self.tenants {
            ids.find_value(&v, &mut scan.hits);
        }
        if (self.found.len(), self.links) == before {
            Redacted::Same
        } else {
            Redacted::Events(vec![sse(name, &v)])
        }
    }

    /// A data line that is not JSON: redacted as plain text (fail closed).
    fn opaque(&mut self, scanner: &Scanner, name: Option<&str>, data: &str) -> Redacted {
        let (red, f) = scanner.redact(data);
        if f.is_empty() {
            return Redacted::Same;
        }
        self.found.extend(f.iter().map(|f| f.rule));
        let mut s = String::new();
        if let Some(n) = name {
            s.push_str(&format!("event: {n}\n"));
        }
        for line in red.split('\n') {
            s.push_str("data: ");
            s.push_str(line);
            s.push('\n');
        }
        s.push('\n');
        Redacted::Events(vec![Bytes::from(s)])
    }
}

/// The bytes of a text-delta event around its text literal, remembered from the last event the fast
/// path decoded. Deltas of one stream differ only in their text, so the next event that has the same
/// bytes before and after a plain literal (no quote, escape or control character inside, so it reads
/// the same as JSON and as SSE) is the same document with another text: it needs no decoding at all.
#[derive(Debug)]
struct Template {
    /// Everything before the literal's opening quote.
    prefix: Vec<u8>,
    /// Everything after its closing quote.
    suffix: Vec<u8>,
    /// The text stream it feeds.
    key: (u64, u64),
    /// Where the JSON data starts (in the prefix) and how far before the end it stops (in the suffix).
    data_start: usize,
    data_tail: usize,
}

impl Template {
    /// The stream and the text of `raw` when it has this shape.
    fn text_of<'r>(&self, raw: &'r [u8]) -> Option<((u64, u64), &'r str)> {
        let lit = raw.strip_prefix(&self.prefix[..])?.strip_suffix(&self.suffix[..])?;
        let inner = lit.strip_prefix(b"\"")?.strip_suffix(b"\"")?;
        if inner.iter().any(|&b| b == b'"' || b == b'\\' || b < 0x20) {
            return None;
        }
        Some((self.key, std::str::from_utf8(inner).ok()?))
    }
}

/// Where `part` (a slice borrowed from `whole`) starts in `whole`; `None` when it is not a part of it.
fn span_in(whole: &[u8], part: &[u8]) -> Option<usize> {
    let at = (part.as_ptr() as usize).checked_sub(whole.as_ptr() as usize)?;
    (at + part.len() <= whole.len() && whole.get(at..at + part.len()) == Some(part)).then_some(at)
}

/// Borrowing decodes of the common stream events, for the fast path. Fields not named here are
/// skipped unread; a duplicate key, an unexpected type or an escaped text fails the decode (the general
/// path then takes the event).
mod fast {
    use std::borrow::Cow;

    use serde::de::IgnoredAny;
    use serde::Deserialize;

    /// A string borrowed from the input when it has no escapes (serde's own `Option<Cow<str>>` always
    /// copies). Escaped strings come back owned, and the fast path then steps aside.
    pub(super) fn opt_text<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Cow<'de, str>>, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = Option<Cow<'de, str>>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a string or null")
            }
            fn visit_borrowed_str<E: serde::de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(Some(Cow::Borrowed(v)))
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Some(Cow::Owned(v.to_owned())))
            }
            fn visit_unit<E: serde::de::Error>(self) -> Result<Self::Value, E> {
                Ok(None)
            }
            fn visit_none<E: serde::de::Error>(self) -> Result<Self::Value, E> {
                Ok(None)
            }
            fn visit_some<D: serde::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
                d.deserialize_str(V)
            }
        }
        d.deserialize_option(V)
    }

    #[derive(Deserialize)]
    pub(super) struct ChatChunk<'a> {
        #[serde(borrow)]
        pub choices: Vec<ChatChoice<'a>>,
    }

    #[derive(Deserialize)]
    pub(super) struct ChatChoice<'a> {
        #[serde(default)]
        pub index: u64,
        #[serde(borrow, default)]
        pub delta: Option<ChatDelta<'a>>,
        #[serde(default)]
        pub finish_reason: Option<IgnoredAny>,
    }

    #[derive(Deserialize)]
    pub(super) struct ChatDelta<'a> {
        #[serde(borrow, default, deserialize_with = "opt_text")]
        pub content: Option<Cow<'a, str>>,
        #[serde(default)]
        pub tool_calls: Option<IgnoredAny>,
    }

    #[derive(Deserialize)]
    pub(super) struct MessagesDelta<'a> {
        #[serde(rename = "type")]
        pub ty: &'a str,
        #[serde(default)]
        pub index: u64,
        #[serde(borrow, default)]
        pub delta: Option<MessagesInner<'a>>,
    }

    #[derive(Deserialize)]
    pub(super) struct MessagesInner<'a> {
        #[serde(rename = "type", default)]
        pub ty: Option<&'a str>,
        #[serde(borrow, default, deserialize_with = "opt_text")]
        pub text: Option<Cow<'a, str>>,
        #[serde(borrow, default, deserialize_with = "opt_text")]
        pub partial_json: Option<Cow<'a, str>>,
        #[serde(borrow, default, deserialize_with = "opt_text")]
        pub thinking: Option<Cow<'a, str>>,
    }

    #[derive(Deserialize)]
    pub(super) struct ResponsesDelta<'a> {
        #[serde(rename = "type")]
        pub ty: &'a str,
        #[serde(default)]
        pub output_index: u64,
        #[serde(default)]
        pub content_index: u64,
        #[serde(borrow, default, deserialize_with = "opt_text")]
        pub delta: Option<Cow<'a, str>>,
    }
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
        let mut r = StreamRedactor::new(endpoint);
        let mut out = String::new();
        for e in events {
            match r.on_event(s, e.as_bytes()) {
                Redacted::Same => out.push_str(&e),
                Redacted::Events(v) => v.iter().for_each(|b| out.push_str(&String::from_utf8_lossy(b))),
            }
        }
        for b in r.finish(s) {
            out.push_str(&String::from_utf8_lossy(&b));
        }
        out
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
    /// bytes (key order, spacing and unknown fields kept), and the result is still the general path's.
    #[test]
    fn text_deltas_are_spliced_into_the_raw_event() {
        let s = scanner();
        let raw = |t: &str| {
            format!("data: {{\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"x_extra\":[1, 2],\"choices\":[{{\"index\":0,\"delta\":{{\"content\":{}}},\"logprobs\":null,\"finish_reason\":null}}]}}\n\n", json!(t))
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
                                "data: {\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"x_extra\":[1, 2],"
                            ),
                            "{e}"
                        );
                        out.push_str(&e);
                    }
                }
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
        assert!(r.tenants.is_none(), "nothing declared: no scanning state");
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
    }
}
