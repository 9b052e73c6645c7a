//! The gateway's own OpenAI chat completions replies: a `chat.completion` body, or its chunk stream
//! ending with `[DONE]`.

use bytes::Bytes;
use serde_json::{json, Value};

use super::{data_event, pieces, usage_tokens, ReplySpec};

pub(super) fn json(s: &ReplySpec<'_>, created: u64) -> Value {
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

pub(super) fn events(s: &ReplySpec<'_>, created: u64) -> Vec<Bytes> {
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
