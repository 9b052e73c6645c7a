//! Redaction of an OpenAI Responses stream: a `response.*.delta` event's `delta` grows (per output
//! index, content or summary index, and event type); the matching `.done` event, the item's
//! `output_item.done` and the response's end release what is held.

use std::borrow::Cow;

use bytes::Bytes;
use serde::Deserialize;
use serde_json::{json, Map, Value};

use crate::inspect::fields::{self, FieldKey, Kind, Seg};
use crate::inspect::redact::fast::{opt_text, NoText, NoTokenData};
use crate::inspect::redact::{redact_json_with, Redacted, StreamRedactor};
use crate::inspect::scanner::Scanner;

/// What a growing Responses field carries, when the format decides it: function-call and custom
/// tool input is JSON text, audio is opaque.
pub(in crate::inspect) fn kind(path: &str) -> Option<Kind> {
    if path.contains("arguments") || path.contains("_input.") {
        Some(Kind::Args)
    } else if path.starts_with("response.audio.delta") {
        Some(Kind::Opaque)
    } else {
        None
    }
}

impl StreamRedactor {
    /// The fast path for a `response.*.delta` event with a plain `delta` string and nothing else.
    pub(in crate::inspect) fn fast_responses(&mut self, scanner: &Scanner, raw: &[u8], data: &str) -> Option<Redacted> {
        let e: ResponsesDelta<'_> = serde_json::from_str(data).ok()?;
        if !e.ty.ends_with(".delta") || !self.st.whole_clean(scanner, e.obfuscation) {
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
        self.fast_splice(scanner, raw, data, key, text, i)
    }

    /// A Responses event: a `response.*.delta` event's `delta` grows (per output index, content or
    /// summary index, and event type); the matching `.done` event, the item's `output_item.done`
    /// and the response's end release what is held.
    pub(in crate::inspect) fn responses(
        &mut self,
        scanner: &Scanner,
        v: &mut Value,
        before: &mut Vec<Bytes>,
    ) -> Option<bool> {
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

// === the fast path's strict decode (see `crate::inspect::redact::fast`) ===

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)] // members named only so that the strict decode accepts them
struct ResponsesDelta<'a> {
    #[serde(rename = "type")]
    ty: &'a str,
    #[serde(default)]
    output_index: u64,
    #[serde(default)]
    content_index: Option<u64>,
    #[serde(default)]
    summary_index: Option<u64>,
    #[serde(borrow, default, deserialize_with = "opt_text")]
    delta: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    item_id: Option<&'a str>,
    #[serde(default)]
    sequence_number: Option<NoText>,
    #[serde(default)]
    logprobs: Option<NoTokenData>,
    /// Random padding: scanned whole.
    #[serde(default, borrow)]
    obfuscation: Option<&'a str>,
}
