//! Replies the gateway writes itself, byte-for-byte in each provider's wire format: the safe-mode
//! answer and the scripted upstream (demo policy, offline replay). SDKs cannot tell them from a real
//! provider's.

use bytes::Bytes;
use serde_json::{json, Value};

use super::Endpoint;

/// A reply body: one JSON document, or the SSE events of a stream (each a complete event).
#[derive(Debug)]
pub enum Rendered {
    /// `application/json`
    Json(Bytes),
    /// `text/event-stream`, one entry per event.
    Events(Vec<Bytes>),
}

/// What to answer.
#[derive(Debug)]
pub struct ReplySpec<'a> {
    /// The endpoint asked.
    pub endpoint: Endpoint,
    /// Whether the client asked for a stream.
    pub stream: bool,
    /// Model name to echo.
    pub model: &'a str,
    /// Assistant text.
    pub text: &'a str,
    /// Characters per streamed delta.
    pub chunk_chars: usize,
    /// Response id.
    pub id: &'a str,
    /// For embeddings: how many inputs were given.
    pub inputs: usize,
    /// A tool call after the text: (name, JSON arguments).
    pub tool_call: Option<(&'a str, &'a str)>,
}

/// Renders a reply.
pub fn render(spec: &ReplySpec<'_>) -> Rendered {
    let created = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
    match (spec.endpoint, spec.stream) {
        (Endpoint::ChatCompletions, false) => Rendered::Json(json_bytes(&chat_json(spec, created))),
        (Endpoint::ChatCompletions, true) => Rendered::Events(chat_events(spec, created)),
        (Endpoint::Responses, false) => {
            Rendered::Json(json_bytes(&response_json(spec, created, "completed", spec.text)))
        }
        (Endpoint::Responses, true) => Rendered::Events(response_events(spec, created)),
        (Endpoint::Messages, false) => Rendered::Json(json_bytes(&message_json(spec))),
        (Endpoint::Messages, true) => Rendered::Events(message_events(spec)),
        (Endpoint::Embeddings, _) => Rendered::Json(json_bytes(&embeddings_json(spec))),
        (Endpoint::Models, _) => Rendered::Json(json_bytes(&json!({
            "object": "list",
            "data": [{"id": spec.model, "object": "model", "created": created, "owned_by": "firebreak"}]
        }))),
    }
}

fn json_bytes(v: &Value) -> Bytes {
    Bytes::from(v.to_string())
}

fn data_event(v: &Value) -> Bytes {
    super::sse::event(None, v)
}

fn named_event(name: &str, v: &Value) -> Bytes {
    super::sse::event(Some(name), v)
}

/// Splits `text` into pieces of at most `n` characters, on character boundaries.
pub fn pieces(text: &str, n: usize) -> Vec<&str> {
    let n = n.max(1);
    let mut out = Vec::with_capacity(text.len() / n + 1);
    let mut start = 0;
    for (count, (i, _)) in text.char_indices().enumerate() {
        if count > 0 && count % n == 0 {
            out.push(&text[start..i]);
            start = i;
        }
    }
    if start < text.len() {
        out.push(&text[start..]);
    }
    out
}

fn usage_tokens(text: &str) -> u64 {
    (text.split_whitespace().count() as u64).max(1)
}

fn chat_json(s: &ReplySpec<'_>, created: u64) -> Value {
    let n = usage_tokens(s.text);
    let mut v = json!({
        "id": s.id, "object": "chat.completion", "created": created, "model": s.model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": s.text, "refusal": null},
                     "logprobs": null, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 1, "completion_tokens": n, "total_tokens": n + 1}
    });
    if let Some((name, args)) = s.tool_call {
        v["choices"][0]["message"]["tool_calls"] = json!([{"id": format!("call_{}", s.id), "type": "function", "function": {"name": name, "arguments": args}}]);
        v["choices"][0]["finish_reason"] = json!("tool_calls");
    }
    v
}

fn chat_events(s: &ReplySpec<'_>, created: u64) -> Vec<Bytes> {
    let chunk = |delta: Value, finish: Value| {
        data_event(&json!({
            "id": s.id, "object": "chat.completion.chunk", "created": created, "model": s.model,
            "choices": [{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish}]
        }))
    };
    let mut out = vec![chunk(json!({"role": "assistant", "content": ""}), Value::Null)];
    for p in pieces(s.text, s.chunk_chars) {
        out.push(chunk(json!({"content": p}), Value::Null));
    }
    if let Some((name, args)) = s.tool_call {
        out.push(chunk(
            json!({"tool_calls": [{"index": 0, "id": format!("call_{}", s.id), "type": "function",
                                   "function": {"name": name, "arguments": ""}}]}),
            Value::Null,
        ));
        for p in pieces(args, s.chunk_chars) {
            out.push(chunk(json!({"tool_calls": [{"index": 0, "function": {"arguments": p}}]}), Value::Null));
        }
        out.push(chunk(json!({}), json!("tool_calls")));
        out.push(Bytes::from_static(b"data: [DONE]\n\n"));
        return out;
    }
    out.push(chunk(json!({}), json!("stop")));
    out.push(Bytes::from_static(b"data: [DONE]\n\n"));
    out
}

fn response_json(s: &ReplySpec<'_>, created: u64, status: &str, text: &str) -> Value {
    let n = usage_tokens(text);
    let output = if status == "completed" {
        json!([{
            "type": "message", "id": format!("msg_{}", s.id), "status": "completed", "role": "assistant",
            "content": [{"type": "output_text", "text": text, "annotations": []}]
        }])
    } else {
        json!([])
    };
    json!({
        "id": s.id, "object": "response", "created_at": created, "status": status, "model": s.model,
        "output": output, "parallel_tool_calls": true, "tool_choice": "auto", "tools": [],
        "error": null, "incomplete_details": null, "instructions": null, "metadata": {},
        "temperature": 1.0, "top_p": 1.0,
        "usage": {"input_tokens": 1, "output_tokens": n, "total_tokens": n + 1,
                   "input_tokens_details": {"cached_tokens": 0}, "output_tokens_details": {"reasoning_tokens": 0}}
    })
}

fn response_events(s: &ReplySpec<'_>, created: u64) -> Vec<Bytes> {
    let item_id = format!("msg_{}", s.id);
    let mut seq = 0u64;
    let mut ev = |name: &str, mut v: Value| {
        v["type"] = json!(name);
        v["sequence_number"] = json!(seq);
        seq += 1;
        named_event(name, &v)
    };
    let mut out = vec![
        ev("response.created", json!({"response": response_json(s, created, "in_progress", "")})),
        ev(
            "response.output_item.added",
            json!({"output_index": 0, "item": {
            "type": "message", "id": item_id, "status": "in_progress", "role": "assistant", "content": []}}),
        ),
        ev(
            "response.content_part.added",
            json!({"item_id": item_id, "output_index": 0, "content_index": 0,
            "part": {"type": "output_text", "text": "", "annotations": []}}),
        ),
    ];
    for p in pieces(s.text, s.chunk_chars) {
        out.push(ev(
            "response.output_text.delta",
            json!({"item_id": item_id, "output_index": 0, "content_index": 0, "delta": p}),
        ));
    }
    out.push(ev(
        "response.output_text.done",
        json!({"item_id": item_id, "output_index": 0, "content_index": 0, "text": s.text}),
    ));
    out.push(ev(
        "response.content_part.done",
        json!({"item_id": item_id, "output_index": 0, "content_index": 0,
        "part": {"type": "output_text", "text": s.text, "annotations": []}}),
    ));
    out.push(ev(
        "response.output_item.done",
        json!({"output_index": 0, "item": {
        "type": "message", "id": item_id, "status": "completed", "role": "assistant",
        "content": [{"type": "output_text", "text": s.text, "annotations": []}]}}),
    ));
    out.push(ev("response.completed", json!({"response": response_json(s, created, "completed", s.text)})));
    out
}

fn message_json(s: &ReplySpec<'_>) -> Value {
    let mut v = message_json_text(s);
    if let Some((name, args)) = s.tool_call {
        let input: Value = serde_json::from_str(args).unwrap_or_else(|_| json!({}));
        if let Some(Value::Array(c)) = v.get_mut("content") {
            c.push(json!({"type": "tool_use", "id": format!("toolu_{}", s.id), "name": name, "input": input}));
        }
        v["stop_reason"] = json!("tool_use");
    }
    v
}

fn message_json_text(s: &ReplySpec<'_>) -> Value {
    json!({
        "id": s.id, "type": "message", "role": "assistant", "model": s.model,
        "content": [{"type": "text", "text": s.text}],
        "stop_reason": "end_turn", "stop_sequence": null,
        "usage": {"input_tokens": 1, "output_tokens": usage_tokens(s.text)}
    })
}

fn message_events(s: &ReplySpec<'_>) -> Vec<Bytes> {
    let mut out = vec![
        named_event(
            "message_start",
            &json!({"type": "message_start", "message": {
            "id": s.id, "type": "message", "role": "assistant", "model": s.model, "content": [],
            "stop_reason": null, "stop_sequence": null, "usage": {"input_tokens": 1, "output_tokens": 1}}}),
        ),
        named_event(
            "content_block_start",
            &json!({"type": "content_block_start", "index": 0,
            "content_block": {"type": "text", "text": ""}}),
        ),
        named_event("ping", &json!({"type": "ping"})),
    ];
    for p in pieces(s.text, s.chunk_chars) {
        out.push(named_event(
            "content_block_delta",
            &json!({"type": "content_block_delta", "index": 0,
            "delta": {"type": "text_delta", "text": p}}),
        ));
    }
    out.push(named_event("content_block_stop", &json!({"type": "content_block_stop", "index": 0})));
    let mut stop = "end_turn";
    if let Some((name, args)) = s.tool_call {
        stop = "tool_use";
        out.push(named_event(
            "content_block_start",
            &json!({"type": "content_block_start", "index": 1,
            "content_block": {"type": "tool_use", "id": format!("toolu_{}", s.id), "name": name, "input": {}}}),
        ));
        for p in pieces(args, s.chunk_chars) {
            out.push(named_event(
                "content_block_delta",
                &json!({"type": "content_block_delta", "index": 1,
                "delta": {"type": "input_json_delta", "partial_json": p}}),
            ));
        }
        out.push(named_event("content_block_stop", &json!({"type": "content_block_stop", "index": 1})));
    }
    out.push(named_event(
        "message_delta",
        &json!({"type": "message_delta",
        "delta": {"stop_reason": stop, "stop_sequence": null},
        "usage": {"output_tokens": usage_tokens(s.text)}}),
    ));
    out.push(named_event("message_stop", &json!({"type": "message_stop"})));
    out
}

fn embeddings_json(s: &ReplySpec<'_>) -> Value {
    // Deterministic, normalised vectors so demo output is stable.
    let data: Vec<Value> = (0..s.inputs.max(1))
        .map(|i| {
            let v: Vec<f64> = (0..8).map(|d| (((i * 31 + d * 7) % 17) as f64 - 8.0) / 16.0).collect();
            json!({"object": "embedding", "index": i, "embedding": v})
        })
        .collect();
    json!({"object": "list", "data": data, "model": s.model, "usage": {"prompt_tokens": 1, "total_tokens": 1}})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pieces_respect_char_boundaries() {
        assert_eq!(pieces("héllo wörld", 4), vec!["héll", "o wö", "rld"]);
        assert_eq!(pieces("", 4), Vec::<&str>::new());
        assert_eq!(pieces("ab", 0), vec!["a", "b"]);
    }

    #[test]
    fn chat_stream_ends_with_done() {
        let spec = ReplySpec {
            endpoint: Endpoint::ChatCompletions,
            stream: true,
            model: "m",
            text: "hello there",
            chunk_chars: 3,
            id: "x",
            inputs: 0,
            tool_call: None,
        };
        let Rendered::Events(ev) = render(&spec) else { panic!("expected events") };
        assert_eq!(ev.last().map(|b| &b[..]), Some(&b"data: [DONE]\n\n"[..]));
        let text: String = ev[1..ev.len() - 2]
            .iter()
            .map(|e| {
                let v: Value = serde_json::from_slice(&e[6..e.len() - 2]).unwrap();
                v["choices"][0]["delta"]["content"].as_str().unwrap().to_owned()
            })
            .collect();
        assert_eq!(text, "hello there");
    }
}
