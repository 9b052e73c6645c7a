//! Redaction of an OpenAI chat completions stream: everything under `choices[].delta` grows (per
//! choice index and path); a choice's `finish_reason` and `[DONE]` end its fields; text released
//! with no upstream chunk left to carry it goes out in the envelope (id, model, …) of the last chunk.

use std::borrow::Cow;

use bytes::Bytes;
use serde::de::IgnoredAny;
use serde::Deserialize;
use serde_json::{json, Map, Value};

use crate::inspect::fields::{self, FieldKey, Kind};
use crate::inspect::redact::fast::{opt_text, NoText, NoTokenData};
use crate::inspect::redact::{Redacted, StreamRedactor, SKIP_KEYS};
use crate::inspect::scanner::Scanner;
use crate::protocol::sse::event as sse;

/// What a growing chat field carries, when the format decides it: tool-call and function-call
/// arguments are JSON text.
pub(in crate::inspect) fn kind(path: &str) -> Option<Kind> {
    (path.starts_with("tool_calls/") || path.starts_with("function_call/")).then_some(Kind::Args)
}

impl StreamRedactor {
    /// The fast path for a chunk whose one choice carries a plain `content` delta and nothing else.
    pub(in crate::inspect) fn fast_chat(&mut self, scanner: &Scanner, raw: &[u8], data: &str) -> Option<Redacted> {
        let c: ChatChunk<'_> = serde_json::from_str(data).ok()?;
        let [choice] = &c.choices[..] else { return None };
        if !self.st.whole_clean(scanner, c.obfuscation) {
            return None;
        }
        if let Some(reason) = &choice.finish_reason {
            return self.fast_finish(scanner, raw, data, choice, reason);
        }
        let delta = choice.delta.as_ref()?;
        if delta.tool_calls.is_some() {
            return None;
        }
        let Some(Cow::Borrowed(text)) = delta.content else { return None };
        self.last_chunk.clear();
        self.last_chunk.extend_from_slice(data.as_bytes());
        let key = FieldKey { scope: choice.index, sub: 0, path: "content".into() };
        let i = self.slot(&key, || {
            (
                json!({"index": key.scope, "delta": {"content": ""}, "finish_reason": null}),
                "/delta/content".into(),
                None,
            )
        });
        self.fast_splice(scanner, raw, data, key, text, i)
    }

    /// The fast path for the chunk that finishes a choice with no text of its own (its `delta`
    /// absent, empty, or a role and an empty `content`; a `finish_reason` the API defines): what the
    /// choice's fields still hold goes out first, in carrier events, then the chunk as it came
    /// (nothing in it needs a look: its other strings are identifiers, as in [`Self::fast_chat`]).
    fn fast_finish(
        &mut self,
        scanner: &Scanner,
        raw: &[u8],
        data: &str,
        choice: &ChatChoice<'_>,
        reason: &str,
    ) -> Option<Redacted> {
        const REASONS: [&str; 5] = ["stop", "length", "tool_calls", "content_filter", "function_call"];
        if !REASONS.contains(&reason) {
            return None;
        }
        if let Some(d) = &choice.delta {
            if d.tool_calls.is_some() || d.content.as_deref().is_some_and(|t| !t.is_empty()) {
                return None;
            }
        }
        let ci = choice.index;
        let mut events = self.carriers(scanner, |k| k.scope == ci);
        self.last_chunk.clear();
        self.last_chunk.extend_from_slice(data.as_bytes());
        if events.is_empty() {
            return Some(Redacted::Same);
        }
        events.push(Bytes::copy_from_slice(raw));
        Some(Redacted::Events(events))
    }

    /// A chat chunk: everything under `choices[].delta` grows (per choice index and path); a
    /// choice that finishes releases what its fields hold.
    pub(in crate::inspect) fn chat(
        &mut self,
        scanner: &Scanner,
        data: &str,
        v: &mut Value,
        before: &mut Vec<Bytes>,
    ) -> Option<bool> {
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

    /// The event that carries `v`, a choice with released text: the choice goes into the envelope
    /// (id, model, …) of the last chunk.
    pub(in crate::inspect) fn chat_carrier(&self, v: Value) -> Bytes {
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
}

// === the fast path's strict decode (see `crate::inspect::redact::fast`) ===

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)] // members named only so that the strict decode accepts them
struct ChatChunk<'a> {
    #[serde(borrow)]
    choices: Vec<ChatChoice<'a>>,
    // Identifiers (left alone, as in whole bodies).
    #[serde(default, borrow)]
    id: Option<&'a str>,
    #[serde(default, borrow)]
    object: Option<&'a str>,
    #[serde(default, borrow)]
    model: Option<&'a str>,
    #[serde(default, borrow)]
    system_fingerprint: Option<&'a str>,
    #[serde(default, borrow)]
    service_tier: Option<&'a str>,
    #[serde(default)]
    created: Option<NoText>,
    #[serde(default)]
    usage: Option<NoText>,
    /// Random padding: scanned whole.
    #[serde(default, borrow)]
    obfuscation: Option<&'a str>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)] // members named only so that the strict decode accepts them
struct ChatChoice<'a> {
    #[serde(default)]
    index: u64,
    #[serde(borrow, default)]
    delta: Option<ChatDelta<'a>>,
    /// A string (a reason the API defines takes [`StreamRedactor::fast_finish`]; any other
    /// value fails the decode: general path).
    #[serde(default, borrow)]
    finish_reason: Option<&'a str>,
    /// Token data is dropped by the general path: only a `logprobs` without it is taken here.
    #[serde(default)]
    logprobs: Option<NoTokenData>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)] // members named only so that the strict decode accepts them
struct ChatDelta<'a> {
    #[serde(borrow, default, deserialize_with = "opt_text")]
    content: Option<Cow<'a, str>>,
    #[serde(default)]
    tool_calls: Option<IgnoredAny>,
    #[serde(default, borrow)]
    role: Option<&'a str>,
    /// Only `null`: a refusal text is a field of its own (general path).
    #[serde(default)]
    refusal: Option<NoText>,
}
