//! Tool calls in OpenAI Responses: `function_call` output items in a body; in a stream, an item
//! held from its `output_item.added` to its `output_item.done`, and the final response's summary
//! filtered like a body.

use bytes::Bytes;
use serde_json::{json, Value};

use crate::inspect::needle::Needle;
use crate::inspect::toolcalls::{
    decide, filter_json, notice, CallCheck, Checked, EventAction, RefusedCall, StreamFilter,
};
use crate::protocol::sse::{event as sse, parse_event};
use crate::protocol::Endpoint;

/// Replaces refused `function_call` items of a `response` body by a notice message (see
/// [`crate::inspect::toolcalls::filter_json`]).
pub(in crate::inspect) fn filter_body(body: &mut Value, check: &dyn CallCheck, out: &mut Checked) {
    for item in body.get_mut("output").and_then(Value::as_array_mut).into_iter().flatten() {
        if item.get("type").and_then(Value::as_str) != Some("function_call") {
            continue;
        }
        let name = item.get("name").and_then(Value::as_str).unwrap_or("<unnamed>").to_owned();
        let args = item.get("arguments").and_then(Value::as_str).unwrap_or("");
        match decide(check, &name, args) {
            None => out.delivered(check, &name),
            Some(why) => {
                let id = item.get("id").cloned().unwrap_or(Value::Null);
                *item = notice_item(id, &notice(&name, &why));
                out.refused.push(RefusedCall { tool: name, why });
            }
        }
    }
}

fn notice_item(id: Value, text: &str) -> Value {
    json!({"type": "message", "id": id, "status": "completed", "role": "assistant",
           "content": [{"type": "output_text", "text": text, "annotations": []}]})
}

impl StreamFilter {
    /// An event that may concern a call (a substring test, no parsing, for every other event).
    pub(in crate::inspect) fn responses_on_event(&mut self, raw: &[u8], check: &dyn CallCheck) -> EventAction {
        static FUNCTION_CALL: Needle = Needle::new(b"function_call");
        static COMPLETED: Needle = Needle::new(b"response.completed");
        static INCOMPLETE: Needle = Needle::new(b"response.incomplete");
        static ITEM_DONE: Needle = Needle::new(b"output_item.done");
        let has = |n: &Needle| n.is_in(raw);
        let relevant =
            has(&FUNCTION_CALL) || has(&COMPLETED) || has(&INCOMPLETE) || (!self.held.is_empty() && has(&ITEM_DONE));
        if relevant {
            self.responses_event(raw, check)
        } else {
            EventAction::Forward
        }
    }

    fn responses_event(&mut self, raw: &[u8], check: &dyn CallCheck) -> EventAction {
        let ev = parse_event(raw);
        let Some(Ok(mut v)) = ev.data.as_deref().map(serde_json::from_str::<Value>) else {
            return EventAction::Forward;
        };
        let oi = v.get("output_index").and_then(Value::as_u64);
        let ty = v.get("type").and_then(Value::as_str).unwrap_or("").to_owned();
        match ty.as_str() {
            "response.output_item.added" => {
                if v.pointer("/item/type").and_then(Value::as_str) != Some("function_call") {
                    return EventAction::Forward;
                }
                let name = v.pointer("/item/name").and_then(Value::as_str).unwrap_or("<unnamed>").to_owned();
                let i = oi.unwrap_or(0);
                match self.open_call(i, name, raw, check) {
                    None => EventAction::Drop,
                    Some(text) => {
                        let id = v.pointer("/item/id").cloned().unwrap_or(Value::Null);
                        v["item"] = notice_item(id, &text);
                        EventAction::Replace(vec![sse(ev.name, &v)])
                    }
                }
            }
            t if t.starts_with("response.function_call_arguments.") => match oi.and_then(|i| self.held.get_mut(&i)) {
                Some(h) if h.refused => EventAction::Drop,
                Some(h) => {
                    if t.ends_with(".delta") {
                        if let Some(d) = v.get("delta").and_then(Value::as_str) {
                            h.args.push_str(d);
                        }
                    } else if let Some(a) = v.get("arguments").and_then(Value::as_str) {
                        h.args = a.to_owned();
                    }
                    self.held_bytes += raw.len();
                    h.events.push(Bytes::copy_from_slice(raw));
                    EventAction::Drop
                }
                None => EventAction::Forward,
            },
            "response.output_item.done" => {
                let Some(h) = oi.and_then(|i| self.held.remove(&i)) else { return EventAction::Forward };
                let id = v.pointer("/item/id").cloned().unwrap_or(Value::Null);
                if h.refused {
                    // Already replaced by a notice item; close it with the same text.
                    let text = self
                        .refused
                        .iter()
                        .rev()
                        .find(|r| r.tool == h.name)
                        .map(|r| notice(&r.tool, &r.why))
                        .unwrap_or_default();
                    v["item"] = notice_item(id, &text);
                    return EventAction::Replace(vec![sse(ev.name, &v)]);
                }
                let args = v
                    .pointer("/item/arguments")
                    .and_then(Value::as_str)
                    .map(str::to_owned)
                    .unwrap_or_else(|| h.args.clone());
                match self.close_call(h, &args, raw, check) {
                    Ok(events) => EventAction::Replace(events),
                    Err(text) => {
                        let mut added = json!({"type": "response.output_item.added", "output_index": oi, "item": notice_item(id.clone(), &text)});
                        added["item"]["status"] = json!("in_progress");
                        v["item"] = notice_item(id, &text);
                        EventAction::Replace(vec![sse(Some("response.output_item.added"), &added), sse(ev.name, &v)])
                    }
                }
            }
            "response.completed" | "response.incomplete" | "response.failed" => {
                let Some(resp) = v.get_mut("response") else { return EventAction::Forward };
                let before = self.refused.len();
                let again = filter_json(Endpoint::Responses, resp, check).refused;
                if again.is_empty() {
                    EventAction::Forward
                } else {
                    // Already counted when streamed; the summary only mirrors it.
                    self.refused.truncate(before);
                    EventAction::Replace(vec![sse(ev.name, &v)])
                }
            }
            _ => EventAction::Forward,
        }
    }
}
