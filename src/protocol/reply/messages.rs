//! The gateway's own Anthropic messages replies: a `message` body, or its named event stream.

use bytes::Bytes;
use serde_json::{json, Value};

use super::{named_event, pieces, usage_tokens, ReplySpec};

pub(super) fn json(s: &ReplySpec<'_>) -> Value {
    let mut v = json_text(s);
    if let Some((name, args)) = s.tool_call {
        let input: Value = serde_json::from_str(args).unwrap_or_else(|_| json!({}));
        if let Some(Value::Array(c)) = v.get_mut("content") {
            c.push(json!({"type": "tool_use", "id": format!("toolu_{}", s.id), "name": name, "input": input}));
        }
        v["stop_reason"] = json!("tool_use");
    }
    v
}

fn json_text(s: &ReplySpec<'_>) -> Value {
    json!({
        "id": s.id, "type": "message", "role": "assistant", "model": s.model,
        "content": [{"type": "text", "text": s.text}],
        "stop_reason": "end_turn", "stop_sequence": null,
        "usage": {"input_tokens": 1, "output_tokens": usage_tokens(s.text)}
    })
}

pub(super) fn events(s: &ReplySpec<'_>) -> Vec<Bytes> {
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
