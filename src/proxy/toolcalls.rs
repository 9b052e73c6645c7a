//! Tool calls in responses: a call to a tool the principal may not use (role, level, switches) is
//! refused. The client gets a well-formed response without the call and a short notice in its place,
//! never half a call. Works on whole JSON bodies and, event by event, on streams of all three formats.

use std::collections::{HashMap, HashSet};

use bytes::Bytes;
use serde_json::{json, Map, Value};

use crate::protocol::sse::parse_event;
use crate::protocol::Endpoint;

/// The notice that replaces a refused call.
pub fn notice(name: &str) -> String {
    format!("[firebreak] A call to tool `{name}` was blocked by policy.")
}

/// Removes refused tool calls from a whole response body; returns the refused tool names.
pub fn filter_json(endpoint: Endpoint, body: &mut Value, allowed: &dyn Fn(&str) -> bool) -> Vec<String> {
    let mut blocked = Vec::new();
    match endpoint {
        Endpoint::ChatCompletions => {
            for choice in body.get_mut("choices").and_then(Value::as_array_mut).into_iter().flatten() {
                let Some(msg) = choice.get_mut("message").and_then(Value::as_object_mut) else { continue };
                let mut refused = Vec::new();
                if let Some(Value::Array(calls)) = msg.get_mut("tool_calls") {
                    calls.retain(|c| {
                        let name = c.pointer("/function/name").and_then(Value::as_str).unwrap_or("<unnamed>");
                        let ok = allowed(name);
                        if !ok {
                            refused.push(name.to_owned());
                        }
                        ok
                    });
                    if calls.is_empty() {
                        msg.remove("tool_calls");
                    }
                }
                if refused.is_empty() {
                    continue;
                }
                let text = refused.iter().map(|n| notice(n)).collect::<Vec<_>>().join("\n");
                let content = match msg.get("content").and_then(Value::as_str) {
                    Some(c) if !c.is_empty() => format!("{c}\n{text}"),
                    _ => text,
                };
                let none_left = !msg.contains_key("tool_calls");
                msg.insert("content".into(), Value::from(content));
                if none_left && choice.get("finish_reason").and_then(Value::as_str) == Some("tool_calls") {
                    choice["finish_reason"] = json!("stop");
                }
                blocked.extend(refused);
            }
        }
        Endpoint::Messages => {
            let mut any_left = false;
            for block in body.get_mut("content").and_then(Value::as_array_mut).into_iter().flatten() {
                if block.get("type").and_then(Value::as_str) != Some("tool_use") {
                    continue;
                }
                let name = block.get("name").and_then(Value::as_str).unwrap_or("<unnamed>").to_owned();
                if allowed(&name) {
                    any_left = true;
                } else {
                    *block = json!({"type": "text", "text": notice(&name)});
                    blocked.push(name);
                }
            }
            if !blocked.is_empty() && !any_left && body.get("stop_reason").and_then(Value::as_str) == Some("tool_use") {
                body["stop_reason"] = json!("end_turn");
            }
        }
        Endpoint::Responses => {
            for item in body.get_mut("output").and_then(Value::as_array_mut).into_iter().flatten() {
                if item.get("type").and_then(Value::as_str) != Some("function_call") {
                    continue;
                }
                let name = item.get("name").and_then(Value::as_str).unwrap_or("<unnamed>").to_owned();
                if !allowed(&name) {
                    let id = item.get("id").cloned().unwrap_or(Value::Null);
                    *item = notice_item(id, &name);
                    blocked.push(name);
                }
            }
        }
        Endpoint::Embeddings | Endpoint::Models => {}
    }
    blocked
}

fn notice_item(id: Value, name: &str) -> Value {
    json!({"type": "message", "id": id, "status": "completed", "role": "assistant",
           "content": [{"type": "output_text", "text": notice(name), "annotations": []}]})
}

/// What to do with one upstream SSE event.
#[derive(Debug, PartialEq, Eq)]
pub enum EventAction {
    /// Forward unchanged.
    Forward,
    /// Drop it.
    Drop,
    /// Send these events instead.
    Replace(Vec<Bytes>),
}

/// Per-stream state of the streaming tool-call filter.
#[derive(Debug)]
pub struct StreamFilter {
    endpoint: Endpoint,
    /// Chat: per choice, the decision for each original tool-call index (true = allowed).
    chat_calls: HashMap<u64, Vec<bool>>,
    /// Anthropic: content block indexes replaced by a notice; count of allowed tool blocks.
    replaced_blocks: HashSet<u64>,
    allowed_tool_blocks: usize,
    /// Responses: output indexes replaced by a notice, with the refused name.
    replaced_items: HashMap<u64, String>,
    /// Tool names refused so far.
    pub blocked: Vec<String>,
}

fn sse(name: Option<&str>, v: &Value) -> Bytes {
    match name {
        Some(n) => Bytes::from(format!("event: {n}\ndata: {v}\n\n")),
        None => Bytes::from(format!("data: {v}\n\n")),
    }
}

impl StreamFilter {
    /// A filter for a stream of `endpoint`.
    pub fn new(endpoint: Endpoint) -> Self {
        StreamFilter {
            endpoint,
            chat_calls: HashMap::new(),
            replaced_blocks: HashSet::new(),
            allowed_tool_blocks: 0,
            replaced_items: HashMap::new(),
            blocked: Vec::new(),
        }
    }

    /// Decides on one raw event. Events that cannot concern a tool call are recognised without
    /// parsing (a substring test), so plain text streams pay almost nothing.
    pub fn on_event(&mut self, raw: &[u8], allowed: &dyn Fn(&str) -> bool) -> EventAction {
        match self.endpoint {
            Endpoint::ChatCompletions => {
                // Parse only events that carry tool calls, or a finish reason once calls were seen.
                let relevant = memchr::memmem::find(raw, b"\"tool_calls\"").is_some()
                    || (!self.chat_calls.is_empty() && memchr::memmem::find(raw, b"finish_reason").is_some());
                if !relevant {
                    return EventAction::Forward;
                }
                self.chat_event(raw, allowed)
            }
            Endpoint::Messages => {
                let relevant = memchr::memmem::find(raw, b"tool_use").is_some()
                    || (!self.replaced_blocks.is_empty()
                        && memchr::memmem::find(raw, b"content_block_delta").is_some());
                if !relevant {
                    return EventAction::Forward;
                }
                self.messages_event(raw, allowed)
            }
            Endpoint::Responses => {
                let relevant = memchr::memmem::find(raw, b"function_call").is_some()
                    || memchr::memmem::find(raw, b"response.completed").is_some()
                    || memchr::memmem::find(raw, b"response.incomplete").is_some();
                if !relevant {
                    return EventAction::Forward;
                }
                self.responses_event(raw, allowed)
            }
            _ => EventAction::Forward,
        }
    }

    fn chat_event(&mut self, raw: &[u8], allowed: &dyn Fn(&str) -> bool) -> EventAction {
        let ev = parse_event(raw);
        let Some(Ok(mut v)) = ev.data.as_deref().map(serde_json::from_str::<Value>) else {
            return EventAction::Forward;
        };
        let mut changed = false;
        for choice in v.get_mut("choices").and_then(Value::as_array_mut).into_iter().flatten() {
            let ci = choice.get("index").and_then(Value::as_u64).unwrap_or(0);
            let decisions = self.chat_calls.entry(ci).or_default();
            let mut notices = Vec::new();
            if let Some(delta) = choice.get_mut("delta").and_then(Value::as_object_mut) {
                if let Some(Value::Array(calls)) = delta.get_mut("tool_calls") {
                    calls.retain_mut(|c| {
                        let i = c.get("index").and_then(Value::as_u64).unwrap_or(0) as usize;
                        if i >= decisions.len() {
                            let name = c.pointer("/function/name").and_then(Value::as_str).unwrap_or("<unnamed>");
                            let ok = allowed(name);
                            if !ok {
                                notices.push(name.to_owned());
                            }
                            decisions.resize(i + 1, true);
                            decisions[i] = ok;
                        }
                        if !decisions[i] {
                            changed = true;
                            return false;
                        }
                        let new_index = decisions[..i].iter().filter(|d| **d).count();
                        if new_index != i {
                            c["index"] = json!(new_index);
                            changed = true;
                        }
                        true
                    });
                    if calls.is_empty() {
                        delta.remove("tool_calls");
                    }
                }
                if !notices.is_empty() {
                    let text = notices.iter().map(|n| notice(n)).collect::<Vec<_>>().join("\n");
                    let content = match delta.get("content").and_then(Value::as_str) {
                        Some(c) if !c.is_empty() => format!("{c}{text}"),
                        _ => text,
                    };
                    delta.insert("content".into(), Value::from(content));
                    self.blocked.extend(notices);
                }
            }
            let any_allowed = decisions.iter().any(|d| *d);
            if !any_allowed
                && !decisions.is_empty()
                && choice.get("finish_reason").and_then(Value::as_str) == Some("tool_calls")
            {
                choice["finish_reason"] = json!("stop");
                changed = true;
            }
        }
        if changed {
            EventAction::Replace(vec![sse(ev.name, &v)])
        } else {
            EventAction::Forward
        }
    }

    fn messages_event(&mut self, raw: &[u8], allowed: &dyn Fn(&str) -> bool) -> EventAction {
        let ev = parse_event(raw);
        let Some(Ok(mut v)) = ev.data.as_deref().map(serde_json::from_str::<Map<String, Value>>) else {
            return EventAction::Forward;
        };
        let index = v.get("index").and_then(Value::as_u64);
        match v.get("type").and_then(Value::as_str) {
            Some("content_block_start") => {
                let block = v.get("content_block");
                if block.and_then(|b| b.get("type")).and_then(Value::as_str) != Some("tool_use") {
                    return EventAction::Forward;
                }
                let name = block.and_then(|b| b.get("name")).and_then(Value::as_str).unwrap_or("<unnamed>").to_owned();
                if allowed(&name) {
                    self.allowed_tool_blocks += 1;
                    return EventAction::Forward;
                }
                let i = index.unwrap_or(0);
                self.replaced_blocks.insert(i);
                let start =
                    json!({"type": "content_block_start", "index": i, "content_block": {"type": "text", "text": ""}});
                let delta = json!({"type": "content_block_delta", "index": i, "delta": {"type": "text_delta", "text": notice(&name)}});
                self.blocked.push(name);
                EventAction::Replace(vec![
                    sse(Some("content_block_start"), &start),
                    sse(Some("content_block_delta"), &delta),
                ])
            }
            Some("content_block_delta") if index.is_some_and(|i| self.replaced_blocks.contains(&i)) => {
                EventAction::Drop
            }
            Some("message_delta") if !self.replaced_blocks.is_empty() && self.allowed_tool_blocks == 0 => {
                if v.get("delta").and_then(|d| d.get("stop_reason")).and_then(Value::as_str) == Some("tool_use") {
                    if let Some(d) = v.get_mut("delta") {
                        d["stop_reason"] = json!("end_turn");
                    }
                    return EventAction::Replace(vec![sse(ev.name.or(Some("message_delta")), &Value::Object(v))]);
                }
                EventAction::Forward
            }
            _ => EventAction::Forward,
        }
    }

    fn responses_event(&mut self, raw: &[u8], allowed: &dyn Fn(&str) -> bool) -> EventAction {
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
                if allowed(&name) {
                    return EventAction::Forward;
                }
                let id = v.pointer("/item/id").cloned().unwrap_or(Value::Null);
                v["item"] = notice_item(id, &name);
                self.replaced_items.insert(oi.unwrap_or(0), name.clone());
                self.blocked.push(name);
                EventAction::Replace(vec![sse(ev.name, &v)])
            }
            "response.output_item.done" => match oi.and_then(|i| self.replaced_items.get(&i)) {
                Some(name) => {
                    let id = v.pointer("/item/id").cloned().unwrap_or(Value::Null);
                    v["item"] = notice_item(id, name);
                    EventAction::Replace(vec![sse(ev.name, &v)])
                }
                None => EventAction::Forward,
            },
            t if t.starts_with("response.function_call_arguments.") => {
                if oi.is_some_and(|i| self.replaced_items.contains_key(&i)) {
                    EventAction::Drop
                } else {
                    EventAction::Forward
                }
            }
            "response.completed" | "response.incomplete" | "response.failed" => {
                let Some(resp) = v.get_mut("response") else { return EventAction::Forward };
                let refused = filter_json(Endpoint::Responses, resp, allowed);
                if refused.is_empty() {
                    EventAction::Forward
                } else {
                    EventAction::Replace(vec![sse(ev.name, &v)])
                }
            }
            _ => EventAction::Forward,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn only_a(n: &str) -> bool {
        n == "a"
    }

    #[test]
    fn chat_json_refuses_and_keeps() {
        let mut v = json!({"choices":[{"index":0,"finish_reason":"tool_calls","message":{"role":"assistant","content":null,
            "tool_calls":[{"id":"1","type":"function","function":{"name":"b","arguments":"{}"}}]}}]});
        assert_eq!(filter_json(Endpoint::ChatCompletions, &mut v, &only_a), vec!["b"]);
        assert!(v.pointer("/choices/0/message/tool_calls").is_none());
        assert_eq!(v.pointer("/choices/0/finish_reason"), Some(&json!("stop")));
        assert!(v.pointer("/choices/0/message/content").and_then(Value::as_str).unwrap().contains("`b`"));
    }

    #[test]
    fn chat_stream_drops_and_renumbers() {
        let mut f = StreamFilter::new(Endpoint::ChatCompletions);
        let e1 = br#"data: {"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"id":"x","function":{"name":"b","arguments":""}}]}}]}

"#;
        let e2 = br#"data: {"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"{\"u\":1}"}}]}}]}

"#;
        let e3 = br#"data: {"choices":[{"index":0,"delta":{"tool_calls":[{"index":1,"id":"y","function":{"name":"a","arguments":"{}"}}]}}]}

"#;
        let EventAction::Replace(r1) = f.on_event(e1, &only_a) else { panic!() };
        assert!(!String::from_utf8_lossy(&r1[0]).contains("\"name\":\"b\""));
        let EventAction::Replace(r2) = f.on_event(e2, &only_a) else { panic!() };
        assert!(!String::from_utf8_lossy(&r2[0]).contains("arguments"));
        let EventAction::Replace(r3) = f.on_event(e3, &only_a) else { panic!() };
        assert!(String::from_utf8_lossy(&r3[0]).contains("\"index\":0"), "renumbered");
        assert_eq!(
            f.on_event(b"data: {\"choices\":[{\"delta\":{\"content\":\"hi\"}}]}\n\n", &only_a),
            EventAction::Forward
        );
        assert_eq!(f.blocked, vec!["b"]);
    }

    #[test]
    fn anthropic_stream_replaces_block() {
        let mut f = StreamFilter::new(Endpoint::Messages);
        let start = b"event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":1,\"content_block\":{\"type\":\"tool_use\",\"id\":\"t\",\"name\":\"b\",\"input\":{}}}\n\n";
        let EventAction::Replace(r) = f.on_event(start, &only_a) else { panic!() };
        assert_eq!(r.len(), 2);
        let delta = b"event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":1,\"delta\":{\"type\":\"input_json_delta\",\"partial_json\":\"{}\"}}\n\n";
        assert_eq!(f.on_event(delta, &only_a), EventAction::Drop);
        let md =
            b"event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"tool_use\"}}\n\n";
        let EventAction::Replace(r) = f.on_event(md, &only_a) else { panic!() };
        assert!(String::from_utf8_lossy(&r[0]).contains("end_turn"));
    }
}
