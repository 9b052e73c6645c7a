//! Tool calls in Anthropic messages: `tool_use` content blocks in a body; in a stream, a
//! `tool_use` block held from its `content_block_start` to its `content_block_stop`.

use bytes::Bytes;
use serde_json::{json, Value};

use crate::inspect::needle::Needle;
use crate::inspect::toolcalls::{decide, notice, CallCheck, Checked, EventAction, RefusedCall, StreamFilter};
use crate::protocol::sse::{event as sse, parse_event};

/// Replaces refused `tool_use` blocks of a `message` body by a notice (see
/// [`crate::inspect::toolcalls::filter_json`]).
pub(in crate::inspect) fn filter_body(body: &mut Value, check: &dyn CallCheck, out: &mut Checked) {
    let mut any_left = false;
    for block in body.get_mut("content").and_then(Value::as_array_mut).into_iter().flatten() {
        if block.get("type").and_then(Value::as_str) != Some("tool_use") {
            continue;
        }
        let name = block.get("name").and_then(Value::as_str).unwrap_or("<unnamed>").to_owned();
        let args = block.get("input").map(Value::to_string).unwrap_or_default();
        match decide(check, &name, &args) {
            None => {
                out.delivered(check, &name);
                any_left = true;
            }
            Some(why) => {
                *block = json!({"type": "text", "text": notice(&name, &why)});
                out.refused.push(RefusedCall { tool: name, why });
            }
        }
    }
    if !out.refused.is_empty() && !any_left && body.get("stop_reason").and_then(Value::as_str) == Some("tool_use") {
        body["stop_reason"] = json!("end_turn");
    }
}

impl StreamFilter {
    /// An event that may concern a call (a substring test, no parsing, for every other event).
    pub(in crate::inspect) fn messages_on_event(&mut self, raw: &[u8], check: &dyn CallCheck) -> EventAction {
        static TOOL_USE: Needle = Needle::new(b"tool_use");
        static CONTENT_BLOCK: Needle = Needle::new(b"content_block_");
        static MESSAGE: Needle = Needle::new(b"message_");
        let has = |n: &Needle| n.is_in(raw);
        let relevant = has(&TOOL_USE) || (!self.held.is_empty() && (has(&CONTENT_BLOCK) || has(&MESSAGE)));
        if relevant {
            self.messages_event(raw, check)
        } else {
            EventAction::Forward
        }
    }

    fn messages_event(&mut self, raw: &[u8], check: &dyn CallCheck) -> EventAction {
        let ev = parse_event(raw);
        let Some(Ok(mut v)) = ev.data.as_deref().map(serde_json::from_str::<Value>) else {
            return EventAction::Forward;
        };
        let index = v.get("index").and_then(Value::as_u64);
        match v.get("type").and_then(Value::as_str) {
            Some("content_block_start") => {
                if v.pointer("/content_block/type").and_then(Value::as_str) != Some("tool_use") {
                    return EventAction::Forward;
                }
                let name = v.pointer("/content_block/name").and_then(Value::as_str).unwrap_or("<unnamed>").to_owned();
                let i = index.unwrap_or(0);
                match self.open_call(i, name, raw, check) {
                    None => EventAction::Drop,
                    Some(text) => {
                        let events = anthropic_notice(i, &text);
                        EventAction::Replace(events)
                    }
                }
            }
            Some("content_block_delta") => match index.and_then(|i| self.held.get_mut(&i)) {
                Some(h) if h.refused => EventAction::Drop,
                Some(h) => {
                    if let Some(p) = v.pointer("/delta/partial_json").and_then(Value::as_str) {
                        h.args.push_str(p);
                    }
                    self.held_bytes += raw.len();
                    h.events.push(Bytes::copy_from_slice(raw));
                    EventAction::Drop
                }
                None => EventAction::Forward,
            },
            Some("content_block_stop") => {
                let Some(h) = index.and_then(|i| self.held.remove(&i)) else { return EventAction::Forward };
                if h.refused {
                    return EventAction::Forward; // closes the notice's text block
                }
                let args = if h.args.trim().is_empty() { "{}".to_owned() } else { h.args.clone() };
                match self.close_call(h, &args, raw, check) {
                    Ok(events) => EventAction::Replace(events),
                    Err(text) => {
                        let mut events = anthropic_notice(index.unwrap_or(0), &text);
                        events.push(Bytes::copy_from_slice(raw));
                        EventAction::Replace(events)
                    }
                }
            }
            Some("message_delta") if !self.refused.is_empty() && self.allowed_calls == 0 => {
                if v.pointer("/delta/stop_reason").and_then(Value::as_str) == Some("tool_use") {
                    v["delta"]["stop_reason"] = json!("end_turn");
                    return EventAction::Replace(vec![sse(ev.name.or(Some("message_delta")), &v)]);
                }
                EventAction::Forward
            }
            _ => EventAction::Forward,
        }
    }
}

fn anthropic_notice(index: u64, text: &str) -> Vec<Bytes> {
    let start = json!({"type": "content_block_start", "index": index, "content_block": {"type": "text", "text": ""}});
    let delta = json!({"type": "content_block_delta", "index": index, "delta": {"type": "text_delta", "text": text}});
    vec![sse(Some("content_block_start"), &start), sse(Some("content_block_delta"), &delta)]
}
