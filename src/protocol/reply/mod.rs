//! Replies the gateway writes itself, byte-for-byte in each provider's wire format: the safe-mode
//! answer and the scripted upstream (demo policy, offline replay). SDKs cannot tell them from a real
//! provider's.
//!
//! One file per wire format ([`chat`], [`responses`], [`messages`]); embeddings and the model list,
//! which have no stream, are here.

mod chat;
mod messages;
mod responses;

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
        (Endpoint::ChatCompletions, false) => Rendered::Json(json_bytes(&chat::json(spec, created))),
        (Endpoint::ChatCompletions, true) => Rendered::Events(chat::events(spec, created)),
        (Endpoint::Responses, false) => {
            Rendered::Json(json_bytes(&responses::json(spec, created, "completed", spec.text)))
        }
        (Endpoint::Responses, true) => Rendered::Events(responses::events(spec, created)),
        (Endpoint::Messages, false) => Rendered::Json(json_bytes(&messages::json(spec))),
        (Endpoint::Messages, true) => Rendered::Events(messages::events(spec)),
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
