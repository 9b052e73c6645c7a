//! The gateway's own OpenAI Responses replies: a `response` body, or its named event stream.

use bytes::Bytes;
use serde_json::{json, Value};

use super::{named_event, pieces, usage_tokens, ReplySpec};

pub(super) fn json(s: &ReplySpec<'_>, created: u64, status: &str, text: &str) -> Value {
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

pub(super) fn events(s: &ReplySpec<'_>, created: u64) -> Vec<Bytes> {
    let item_id = format!("msg_{}", s.id);
    let mut seq = 0u64;
    let mut ev = |name: &str, mut v: Value| {
        v["type"] = json!(name);
        v["sequence_number"] = json!(seq);
        seq += 1;
        named_event(name, &v)
    };
    let mut out = vec![
        ev("response.created", json!({"response": json(s, created, "in_progress", "")})),
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
    out.push(ev("response.completed", json!({"response": json(s, created, "completed", s.text)})));
    out
}
