//! Tool calls in responses. A call the principal may not make — a tool its role, the level or the
//! switches do not allow, or arguments that break the tool's constraints or the egress rules — is
//! refused: the client gets a well-formed response without the call and a short notice in its place,
//! never half a call. Streamed calls are held until complete (their arguments are needed for the
//! decision), then released whole or replaced. Works on whole JSON bodies and, event by event, on
//! streams of all three formats.

use std::collections::{BTreeMap, HashMap};

use bytes::Bytes;
use serde_json::{json, Map, Value};

use crate::protocol::sse::{event as sse, parse_event};
use crate::protocol::Endpoint;

/// Why a call was refused. `detail` names an argument or a rule, never a value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallRefusal {
    /// Rule id for audit and metrics (`tools.not_allowed`, `tools.argument`, `egress.*`).
    pub rule: &'static str,
    /// What to tell the client.
    pub detail: String,
}

/// The decisions a tool call needs.
pub trait CallCheck {
    /// Whether a call to `name` may be made at all.
    fn check_name(&self, name: &str) -> Option<CallRefusal>;
    /// Whether these arguments (a JSON document) may be sent to `name`.
    fn check_args(&self, name: &str, args: &str) -> Option<CallRefusal>;
    /// Whether `name` is a data tool: its delivered calls count toward bulk data extraction.
    fn is_data_tool(&self, _name: &str) -> bool {
        false
    }
}

/// A refused call, for audit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused {
    /// The tool.
    pub tool: String,
    /// Why.
    pub why: CallRefusal,
}

/// The notice that replaces a refused call.
pub fn notice(name: &str, why: &CallRefusal) -> String {
    format!("[firebreak] A call to tool `{name}` was blocked by policy ({}).", why.detail)
}

fn decide(check: &dyn CallCheck, name: &str, args: &str) -> Option<CallRefusal> {
    check.check_name(name).or_else(|| check.check_args(name, args))
}

/// What [`filter_json`] decided about the tool calls of a whole response body.
#[derive(Debug, Default)]
pub struct Checked {
    /// The calls refused (replaced by a notice).
    pub refused: Vec<Refused>,
    /// The calls to data tools left in the body: what the client receives, by tool name.
    pub data_calls: Vec<String>,
}

/// Removes refused tool calls from a whole response body; returns what was refused and which data
/// tools the calls left in it use.
pub fn filter_json(endpoint: Endpoint, body: &mut Value, check: &dyn CallCheck) -> Checked {
    let Checked { mut refused, mut data_calls } = Checked::default();
    let mut delivered = |name: &str| {
        if check.is_data_tool(name) {
            data_calls.push(name.to_owned());
        }
    };
    match endpoint {
        Endpoint::ChatCompletions => {
            for choice in body.get_mut("choices").and_then(Value::as_array_mut).into_iter().flatten() {
                let Some(msg) = choice.get_mut("message").and_then(Value::as_object_mut) else { continue };
                let mut notices = Vec::new();
                if let Some(Value::Array(calls)) = msg.get_mut("tool_calls") {
                    calls.retain(|c| {
                        let name = c.pointer("/function/name").and_then(Value::as_str).unwrap_or("<unnamed>");
                        let args = c.pointer("/function/arguments").and_then(Value::as_str).unwrap_or("");
                        match decide(check, name, args) {
                            None => {
                                delivered(name);
                                true
                            }
                            Some(why) => {
                                notices.push(notice(name, &why));
                                refused.push(Refused { tool: name.to_owned(), why });
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
        Endpoint::Messages => {
            let mut any_left = false;
            for block in body.get_mut("content").and_then(Value::as_array_mut).into_iter().flatten() {
                if block.get("type").and_then(Value::as_str) != Some("tool_use") {
                    continue;
                }
                let name = block.get("name").and_then(Value::as_str).unwrap_or("<unnamed>").to_owned();
                let args = block.get("input").map(Value::to_string).unwrap_or_default();
                match decide(check, &name, &args) {
                    None => {
                        delivered(&name);
                        any_left = true;
                    }
                    Some(why) => {
                        *block = json!({"type": "text", "text": notice(&name, &why)});
                        refused.push(Refused { tool: name, why });
                    }
                }
            }
            if !refused.is_empty() && !any_left && body.get("stop_reason").and_then(Value::as_str) == Some("tool_use") {
                body["stop_reason"] = json!("end_turn");
            }
        }
        Endpoint::Responses => {
            for item in body.get_mut("output").and_then(Value::as_array_mut).into_iter().flatten() {
                if item.get("type").and_then(Value::as_str) != Some("function_call") {
                    continue;
                }
                let name = item.get("name").and_then(Value::as_str).unwrap_or("<unnamed>").to_owned();
                let args = item.get("arguments").and_then(Value::as_str).unwrap_or("");
                match decide(check, &name, args) {
                    None => delivered(&name),
                    Some(why) => {
                        let id = item.get("id").cloned().unwrap_or(Value::Null);
                        *item = notice_item(id, &notice(&name, &why));
                        refused.push(Refused { tool: name, why });
                    }
                }
            }
        }
        Endpoint::Embeddings | Endpoint::Models => {}
    }
    Checked { refused, data_calls }
}

fn notice_item(id: Value, text: &str) -> Value {
    json!({"type": "message", "id": id, "status": "completed", "role": "assistant",
           "content": [{"type": "output_text", "text": text, "annotations": []}]})
}

/// What to do with one upstream SSE event.
#[derive(Debug, PartialEq, Eq)]
pub enum EventAction {
    /// Forward unchanged.
    Forward,
    /// Drop it (held, or part of a refused call).
    Drop,
    /// Send these events instead.
    Replace(Vec<Bytes>),
}

/// A chat tool call being assembled.
#[derive(Debug, Default)]
struct ChatCall {
    id: Option<String>,
    name: Option<String>,
    args: String,
}

/// A held Anthropic tool_use block or Responses function_call item.
#[derive(Debug, Default)]
struct HeldCall {
    name: String,
    args: String,
    events: Vec<Bytes>,
    /// Refused by name: its events are dropped, the notice was sent already.
    refused: bool,
}

/// Per-stream state of the streaming tool-call filter. Memory is bounded by `max_held` per stream.
#[derive(Debug)]
pub struct StreamFilter {
    endpoint: Endpoint,
    max_held: usize,
    held_bytes: usize,
    /// Chat: per choice, the calls being assembled, by their upstream index.
    chat: BTreeMap<u64, BTreeMap<u64, ChatCall>>,
    /// Chat: the envelope (id, model, …) of the last chunk, for the chunk that releases calls.
    envelope: Map<String, Value>,
    /// Anthropic (by block index) and Responses (by output index): held calls.
    held: HashMap<u64, HeldCall>,
    allowed_calls: usize,
    /// Calls refused so far.
    pub refused: Vec<Refused>,
    /// Calls to data tools released to the client so far, by tool name.
    pub data_calls: Vec<String>,
}

fn too_large() -> CallRefusal {
    CallRefusal { rule: "tools.call_too_large", detail: "the call's arguments exceed the size limit".into() }
}

impl StreamFilter {
    /// A filter for a stream of `endpoint`, holding at most `max_held` bytes of calls.
    pub fn new(endpoint: Endpoint, max_held: usize) -> Self {
        StreamFilter {
            endpoint,
            max_held,
            held_bytes: 0,
            chat: BTreeMap::new(),
            envelope: Map::new(),
            held: HashMap::new(),
            allowed_calls: 0,
            refused: Vec::new(),
            data_calls: Vec::new(),
        }
    }

    /// Decides on one raw event. Events that cannot concern a tool call are recognised without
    /// parsing (a substring test), so plain text streams pay almost nothing.
    pub fn on_event(&mut self, raw: &[u8], check: &dyn CallCheck) -> EventAction {
        use crate::inspect::needle::Needle;
        static TOOL_CALLS: Needle = Needle::new(b"\"tool_calls\"");
        static FINISH: Needle = Needle::new(b"finish_reason\":\"");
        static DONE: Needle = Needle::new(b"[DONE]");
        static TOOL_USE: Needle = Needle::new(b"tool_use");
        static CONTENT_BLOCK: Needle = Needle::new(b"content_block_");
        static MESSAGE: Needle = Needle::new(b"message_");
        static FUNCTION_CALL: Needle = Needle::new(b"function_call");
        static COMPLETED: Needle = Needle::new(b"response.completed");
        static INCOMPLETE: Needle = Needle::new(b"response.incomplete");
        static ITEM_DONE: Needle = Needle::new(b"output_item.done");
        let has = |n: &Needle| n.is_in(raw);
        match self.endpoint {
            Endpoint::ChatCompletions => {
                let relevant = has(&TOOL_CALLS) || (!self.chat.is_empty() && (has(&FINISH) || has(&DONE)));
                if relevant {
                    self.chat_event(raw, check)
                } else {
                    EventAction::Forward
                }
            }
            Endpoint::Messages => {
                let relevant = has(&TOOL_USE) || (!self.held.is_empty() && (has(&CONTENT_BLOCK) || has(&MESSAGE)));
                if relevant {
                    self.messages_event(raw, check)
                } else {
                    EventAction::Forward
                }
            }
            Endpoint::Responses => {
                let relevant = has(&FUNCTION_CALL)
                    || has(&COMPLETED)
                    || has(&INCOMPLETE)
                    || (!self.held.is_empty() && has(&ITEM_DONE));
                if relevant {
                    self.responses_event(raw, check)
                } else {
                    EventAction::Forward
                }
            }
            _ => EventAction::Forward,
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

    /// A call (Anthropic block or Responses item) starts: hold it when its name is allowed; when it
    /// is not, record the refusal and return the notice that takes its place.
    fn open_call(&mut self, i: u64, name: String, raw: &[u8], check: &dyn CallCheck) -> Option<String> {
        match check.check_name(&name) {
            None => {
                self.held_bytes += raw.len();
                self.held
                    .insert(i, HeldCall { name, events: vec![Bytes::copy_from_slice(raw)], ..HeldCall::default() });
                None
            }
            Some(why) => {
                let text = notice(&name, &why);
                self.refused.push(Refused { tool: name.clone(), why });
                self.held.insert(i, HeldCall { name, refused: true, ..HeldCall::default() });
                Some(text)
            }
        }
    }

    /// A held call is complete: its events (with the closing `raw` one) when its arguments pass,
    /// otherwise the refusal is recorded and the notice returned.
    fn close_call(&mut self, h: HeldCall, args: &str, raw: &[u8], check: &dyn CallCheck) -> Result<Vec<Bytes>, String> {
        let over = self.held_bytes > self.max_held;
        self.held_bytes = self.held_bytes.saturating_sub(h.events.iter().map(Bytes::len).sum());
        match if over { Some(too_large()) } else { check.check_args(&h.name, args) } {
            None => {
                self.allowed_calls += 1;
                if check.is_data_tool(&h.name) {
                    self.data_calls.push(h.name);
                }
                let mut events = h.events;
                events.push(Bytes::copy_from_slice(raw));
                Ok(events)
            }
            Some(why) => {
                let text = notice(&h.name, &why);
                self.refused.push(Refused { tool: h.name, why });
                Err(text)
            }
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
                    self.refused.push(Refused { tool: name, why });
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

fn anthropic_notice(index: u64, text: &str) -> Vec<Bytes> {
    let start = json!({"type": "content_block_start", "index": index, "content_block": {"type": "text", "text": ""}});
    let delta = json!({"type": "content_block_delta", "index": index, "delta": {"type": "text_delta", "text": text}});
    vec![sse(Some("content_block_start"), &start), sse(Some("content_block_delta"), &delta)]
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Allows tool `a` with any arguments except ones mentioning "evil".
    struct OnlyA;
    impl CallCheck for OnlyA {
        fn check_name(&self, name: &str) -> Option<CallRefusal> {
            (name != "a").then(|| CallRefusal { rule: "tools.not_allowed", detail: "tool not allowed".into() })
        }
        fn check_args(&self, _: &str, args: &str) -> Option<CallRefusal> {
            args.contains("evil")
                .then(|| CallRefusal { rule: "tools.argument", detail: "argument `x` not allowed".into() })
        }
    }

    fn chat_delta(index: u64, id: Option<&str>, name: Option<&str>, args: &str) -> Vec<u8> {
        let mut f = json!({"arguments": args});
        if let Some(n) = name {
            f["name"] = json!(n);
        }
        let mut c = json!({"index": index, "function": f});
        if let Some(i) = id {
            c["id"] = json!(i);
        }
        format!(
            "data: {}\n\n",
            json!({"id": "c", "object": "chat.completion.chunk", "model": "m",
            "choices": [{"index": 0, "delta": {"tool_calls": [c]}, "finish_reason": null}]})
        )
        .into_bytes()
    }

    fn finish() -> Vec<u8> {
        b"data: {\"id\":\"c\",\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"tool_calls\"}]}\n\n".to_vec()
    }

    fn released(a: EventAction) -> String {
        match a {
            EventAction::Replace(v) => v.iter().map(|b| String::from_utf8_lossy(b).into_owned()).collect(),
            EventAction::Drop => String::new(),
            EventAction::Forward => "<forward>".into(),
        }
    }

    #[test]
    fn chat_json_refuses_by_name_and_by_arguments() {
        let mut v = json!({"choices":[{"index":0,"finish_reason":"tool_calls","message":{"role":"assistant","content":null,
            "tool_calls":[{"id":"1","type":"function","function":{"name":"b","arguments":"{}"}},
                          {"id":"2","type":"function","function":{"name":"a","arguments":"{\"x\":\"evil\"}"}}]}}]});
        let r = filter_json(Endpoint::ChatCompletions, &mut v, &OnlyA).refused;
        assert_eq!(r.iter().map(|r| r.why.rule).collect::<Vec<_>>(), vec!["tools.not_allowed", "tools.argument"]);
        assert!(v.pointer("/choices/0/message/tool_calls").is_none());
        assert_eq!(v.pointer("/choices/0/finish_reason"), Some(&json!("stop")));
    }

    #[test]
    fn chat_stream_holds_calls_until_complete_then_releases_whole() {
        let mut f = StreamFilter::new(Endpoint::ChatCompletions, 1 << 20);
        assert_eq!(f.on_event(&chat_delta(0, Some("x"), Some("b"), ""), &OnlyA), EventAction::Drop);
        assert_eq!(f.on_event(&chat_delta(0, None, None, "{\"u\":"), &OnlyA), EventAction::Drop);
        assert_eq!(f.on_event(&chat_delta(1, Some("y"), Some("a"), "{\"q\":"), &OnlyA), EventAction::Drop);
        assert_eq!(f.on_event(&chat_delta(1, None, None, "1}"), &OnlyA), EventAction::Drop);
        let out = released(f.on_event(&finish(), &OnlyA));
        assert!(!out.contains("\"name\":\"b\""), "{out}");
        assert!(
            out.contains("\"arguments\":\"{\\\"q\\\":1}\"") && out.contains("\"index\":0"),
            "allowed call whole, renumbered: {out}"
        );
        assert!(out.contains("`b`"), "notice: {out}");
        assert_eq!(f.refused.len(), 1);
    }

    #[test]
    fn chat_stream_refuses_by_arguments() {
        let mut f = StreamFilter::new(Endpoint::ChatCompletions, 1 << 20);
        f.on_event(&chat_delta(0, Some("x"), Some("a"), "{\"x\":\"ev"), &OnlyA);
        f.on_event(&chat_delta(0, None, None, "il\"}"), &OnlyA);
        let out = released(f.on_event(&finish(), &OnlyA));
        assert!(!out.contains("evil") && !out.contains("tool_calls\":["), "{out}");
        assert!(out.contains("\"finish_reason\":\"stop\""), "{out}");
    }

    #[test]
    fn anthropic_stream_holds_then_checks_arguments() {
        let mut f = StreamFilter::new(Endpoint::Messages, 1 << 20);
        let start = b"event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":1,\"content_block\":{\"type\":\"tool_use\",\"id\":\"t\",\"name\":\"a\",\"input\":{}}}\n\n";
        assert_eq!(f.on_event(start, &OnlyA), EventAction::Drop);
        let delta = b"event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":1,\"delta\":{\"type\":\"input_json_delta\",\"partial_json\":\"{\\\"x\\\":\\\"evil\\\"}\"}}\n\n";
        assert_eq!(f.on_event(delta, &OnlyA), EventAction::Drop);
        let stop = b"event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":1}\n\n";
        let out = released(f.on_event(stop, &OnlyA));
        assert!(!out.contains("evil") && out.contains("text_delta") && out.contains("content_block_stop"), "{out}");
        let md =
            b"event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"tool_use\"}}\n\n";
        assert!(released(f.on_event(md, &OnlyA)).contains("end_turn"));
    }

    #[test]
    fn oversized_calls_are_refused() {
        let mut f = StreamFilter::new(Endpoint::ChatCompletions, 8);
        f.on_event(&chat_delta(0, Some("x"), Some("a"), "{\"q\":\"0123456789\"}"), &OnlyA);
        let out = released(f.on_event(&finish(), &OnlyA));
        assert!(out.contains("size limit") && !out.contains("0123456789"), "{out}");
    }
}
