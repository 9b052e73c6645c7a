//! Redaction of an Anthropic messages stream: a `content_block_delta`'s `delta` grows (per block
//! index and path), as does the text a `content_block_start` opens a text or thinking block with; a
//! block's `content_block_stop` ends its fields, `message_stop` every field.

use std::borrow::Cow;

use bytes::Bytes;
use serde::Deserialize;
use serde_json::{json, Map, Value};

use crate::inspect::fields::{self, FieldKey, Kind, Seg};
use crate::inspect::redact::fast::opt_text;
use crate::inspect::redact::{Carrier, Redacted, StreamRedactor};
use crate::inspect::scanner::Scanner;

/// What a growing Anthropic field carries, when the format decides it: a tool's `partial_json` is
/// JSON text.
pub(in crate::inspect) fn kind(path: &str) -> Option<Kind> {
    (path == "partial_json").then_some(Kind::Args)
}

/// The skeleton of a `content_block_delta` event of field `k` (the pointer to its string, its event name).
fn delta_carrier(k: &FieldKey) -> Carrier {
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
}

impl StreamRedactor {
    /// The fast path for a `content_block_delta` that carries one plain delta field and nothing else.
    pub(in crate::inspect) fn fast_messages(&mut self, scanner: &Scanner, raw: &[u8], data: &str) -> Option<Redacted> {
        let e: MessagesDelta<'_> = serde_json::from_str(data).ok()?;
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
        let key = FieldKey { scope: e.index, sub: 0, path: field.into() };
        let i = self.slot(&key, || delta_carrier(&key));
        self.fast_splice(scanner, raw, data, key, text, i)
    }

    /// An Anthropic event: a `content_block_delta`'s `delta` grows (per block index and path), as
    /// does the text a `content_block_start` opens a text or thinking block with; a block's stop
    /// releases what it holds, `message_stop` what the stream holds.
    pub(in crate::inspect) fn messages(
        &mut self,
        scanner: &Scanner,
        v: &mut Value,
        before: &mut Vec<Bytes>,
    ) -> Option<bool> {
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
}

// === the fast path's strict decode (see `crate::inspect::redact::fast`) ===

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MessagesDelta<'a> {
    #[serde(rename = "type")]
    ty: &'a str,
    #[serde(default)]
    index: u64,
    #[serde(borrow, default)]
    delta: Option<MessagesInner<'a>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MessagesInner<'a> {
    #[serde(rename = "type")]
    ty: &'a str,
    #[serde(borrow, default, deserialize_with = "opt_text")]
    text: Option<Cow<'a, str>>,
    #[serde(borrow, default, deserialize_with = "opt_text")]
    partial_json: Option<Cow<'a, str>>,
    #[serde(borrow, default, deserialize_with = "opt_text")]
    thinking: Option<Cow<'a, str>>,
    #[serde(borrow, default, deserialize_with = "opt_text")]
    signature: Option<Cow<'a, str>>,
}
