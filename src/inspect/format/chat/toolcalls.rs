//! Tool calls in OpenAI chat completions: `choices[].message.tool_calls` in a body; in a stream,
//! `delta.tool_calls` assembled per choice and call index, released in one chunk when the choice
//! finishes (or at `[DONE]`).

use bytes::Bytes;
use serde_json::{json, Map, Value};

use crate::inspect::needle::Needle;
use crate::inspect::toolcalls::{
    decide, notice, too_large, CallCheck, Checked, EventAction, RefusedCall, StreamFilter,
};
use crate::protocol::sse::{event as sse, parse_event};

/// Removes refused calls from a `chat.completion` body (see [`crate::inspect::toolcalls::filter_json`]).
pub(in crate::inspect) fn filter_body(body: &mut Value, check: &dyn CallCheck, out: &mut Checked) {
    for choice in body.get_mut("choices").and_then(Value::as_array_mut).into_iter().flatten() {
        let Some(msg) = choice.get_mut("message").and_then(Value::as_object_mut) else { continue };
        let mut notices = Vec::new();
        if let Some(Value::Array(calls)) = msg.get_mut("tool_calls") {
            calls.retain(|c| {
                let name = c.pointer("/function/name").and_then(Value::as_str).unwrap_or("<unnamed>");
                let args = c.pointer("/function/arguments").and_then(Value::as_str).unwrap_or("");
                match decide(check, name, args) {
                    None => {
                        out.delivered(check, name);
                        true
                    }
                    Some(why) => {
                        notices.push(notice(name, &why));
                        out.refused.push(RefusedCall { tool: name.to_owned(), why });
                        false
                    }
                }
            });
            if calls.is_empty() {
                msg.remove("tool_calls");
            }
        }
        if notices.is_empty() {
            continue;
        }
        let text = notices.join("\n");
        let content = match msg.get("content").and_then(Value::as_str) {
            Some(c) if !c.is_empty() => format!("{c}\n{text}"),
            _ => text,
        };
        let none_left = !msg.contains_key("tool_calls");
        msg.insert("content".into(), Value::from(content));
        if none_left && choice.get("finish_reason").and_then(Value::as_str) == Some("tool_calls") {
            choice["finish_reason"] = json!("stop");
        }
    }
}

/// A chat tool call being assembled.
#[derive(Debug, Default)]
pub(in crate::inspect) struct ChatCall {
    id: Option<String>,
    name: Option<String>,
    args: String,
}

impl StreamFilter {
    /// A chunk that may concern a call (a substring test, no parsing, for every other chunk).
    pub(in crate::inspect) fn chat_on_event(&mut self, raw: &[u8], check: &dyn CallCheck) -> EventAction {
        static TOOL_CALLS: Needle = Needle::new(b"\"tool_calls\"");
        static FINISH: Needle = Needle::new(b"finish_reason\":\"");
        static DONE: Needle = Needle::new(b"[DONE]");
        let has = |n: &Needle| n.is_in(raw);
        let relevant = has(&TOOL_CALLS) || (!self.chat.is_empty() && (has(&FINISH) || has(&DONE)));
        if relevant {
            self.chat_event(raw, check)
        } else {
            EventAction::Forward
        }
    }

    fn chat_event(&mut self, raw: &[u8], check: &dyn CallCheck) -> EventAction {
        let ev = parse_event(raw);
        let data = ev.data.as_deref().unwrap_or("");
        if data.trim() == "[DONE]" {
            // Calls never closed by a finish_reason are completed now.
            let choices: Vec<u64> = self.chat.keys().copied().collect();
            let mut out: Vec<Bytes> =
                choices.into_iter().filter_map(|ci| self.release_chat(ci, check).map(|(e, _)| e)).collect();
            if out.is_empty() {
                return EventAction::Forward;
            }
            out.push(Bytes::copy_from_slice(raw));
            return EventAction::Replace(out);
        }
        let Ok(Value::Object(mut v)) = serde_json::from_str::<Value>(data) else { return EventAction::Forward };
        self.remember_envelope(&v);
        let mut before = Vec::new();
        let mut changed = false;
        if let Some(Value::Array(choices)) = v.get_mut("choices") {
            for choice in choices.iter_mut() {
                let ci = choice.get("index").and_then(Value::as_u64).unwrap_or(0);
                if let Some(delta) = choice.get_mut("delta").and_then(Value::as_object_mut) {
                    if let Some(Value::Array(calls)) = delta.remove("tool_calls") {
                        changed = true;
                        let assembling = self.chat.entry(ci).or_default();
                        for c in calls {
                            let i = c.get("index").and_then(Value::as_u64).unwrap_or(0);
                            let call = assembling.entry(i).or_default();
                            if let Some(id) = c.get("id").and_then(Value::as_str) {
                                call.id = Some(id.to_owned());
                            }
                            if let Some(n) = c.pointer("/function/name").and_then(Value::as_str) {
                                call.name.get_or_insert_with(String::new).push_str(n);
                            }
                            if let Some(a) = c.pointer("/function/arguments").and_then(Value::as_str) {
                                self.held_bytes += a.len();
                                call.args.push_str(a);
                            }
                        }
                    }
                }
                let finished = choice.get("finish_reason").is_some_and(|f| !f.is_null());
                if finished && self.chat.contains_key(&ci) {
                    changed = true;
                    if let Some((event, any_allowed)) = self.release_chat(ci, check) {
                        before.push(event);
                        if !any_allowed && choice.get("finish_reason").and_then(Value::as_str) == Some("tool_calls") {
                            choice["finish_reason"] = json!("stop");
                        }
                    }
                }
            }
        }
        if !changed {
            return EventAction::Forward;
        }
        // A chunk that only carried (now held) tool-call deltas is dropped.
        let empty = v.get("choices").and_then(Value::as_array).is_some_and(|cs| {
            cs.iter().all(|c| {
                c.get("finish_reason").is_none_or(Value::is_null)
                    && c.get("delta")
                        .and_then(Value::as_object)
                        .is_none_or(|d| d.iter().all(|(k, x)| k == "role" || x.is_null()))
            })
        }) && !v.contains_key("usage");
        if !empty {
            before.push(sse(ev.name, &Value::Object(v)));
        }
        if before.is_empty() {
            EventAction::Drop
        } else {
            EventAction::Replace(before)
        }
    }

    fn remember_envelope(&mut self, v: &Map<String, Value>) {
        if self.envelope.is_empty() {
            for k in ["id", "object", "created", "model", "system_fingerprint"] {
                if let Some(x) = v.get(k) {
                    self.envelope.insert(k.into(), x.clone());
                }
            }
        }
    }

    /// Completes every call of choice `ci`: one chunk carrying the allowed calls (whole) and a notice
    /// for each refused one. Returns it and whether any call was allowed.
    fn release_chat(&mut self, ci: u64, check: &dyn CallCheck) -> Option<(Bytes, bool)> {
        let calls = self.chat.remove(&ci)?;
        let over = self.held_bytes > self.max_held;
        let mut out_calls = Vec::new();
        let mut notices = Vec::new();
        for (_, c) in calls {
            let name = c.name.unwrap_or_else(|| "<unnamed>".into());
            let verdict = if over { Some(too_large()) } else { decide(check, &name, &c.args) };
            match verdict {
                None => {
                    if check.is_data_tool(&name) {
                        self.data_calls.push(name.clone());
                    }
                    out_calls.push(json!({"index": out_calls.len(), "id": c.id, "type": "function",
                        "function": {"name": name, "arguments": c.args}}));
                }
                Some(why) => {
                    notices.push(notice(&name, &why));
                    self.refused.push(RefusedCall { tool: name, why });
                }
            }
        }
        self.held_bytes = 0;
        let any_allowed = !out_calls.is_empty();
        self.allowed_calls += out_calls.len();
        let mut delta = Map::new();
        if !notices.is_empty() {
            delta.insert("content".into(), Value::from(notices.join("\n")));
        }
        if any_allowed {
            delta.insert("tool_calls".into(), Value::Array(out_calls));
        }
        let mut v = self.envelope.clone();
        if v.is_empty() {
            v.insert("object".into(), json!("chat.completion.chunk"));
        }
        v.insert("choices".into(), json!([{"index": ci, "delta": delta, "finish_reason": null}]));
        Some((sse(None, &Value::Object(v)), any_allowed))
    }
}
