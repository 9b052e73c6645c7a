//! Turning a case's request and reply tables into the HTTP request the gateway receives and the
//! [`ScriptedReply`] the upstream "sends": shorthands (`prompt`, `tool_result`, tool names, reply
//! `text`) expand into each API's real wire format, so suites stay short and stay true to the SDKs.

use bytes::Bytes;
use serde_json::{json, Value};

use super::suite::{to_json, HttpRequest, RawReply, RawRequest};
use crate::http::script::ScriptedReply;
use crate::protocol::reply::{self, Rendered, ReplySpec};
use crate::protocol::Endpoint;

/// A problem: (the key it is about, message).
type Problem = (&'static str, String);

/// The request kinds a case can send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// OpenAI chat completions.
    Chat,
    /// OpenAI Responses.
    Responses,
    /// Anthropic messages.
    Messages,
    /// OpenAI embeddings.
    Embeddings,
    /// `GET /v1/models`.
    Models,
    /// MCP JSON-RPC over Streamable HTTP (`POST /mcp/<server>`).
    Mcp,
}

/// What the reply builder needs to know about the request.
#[derive(Debug, Clone)]
pub struct Info {
    /// Kind.
    pub kind: Kind,
    /// The AI endpoint (none for MCP).
    pub endpoint: Option<Endpoint>,
    /// Whether a stream was asked.
    pub stream: bool,
    /// Model asked.
    pub model: String,
    /// Embedding inputs.
    pub inputs: usize,
}

impl Kind {
    fn parse(s: &str) -> Option<Kind> {
        Some(match s {
            "chat" => Kind::Chat,
            "responses" => Kind::Responses,
            "messages" => Kind::Messages,
            "embeddings" => Kind::Embeddings,
            "models" => Kind::Models,
            "mcp" => Kind::Mcp,
            _ => return None,
        })
    }

    fn endpoint(self) -> Option<Endpoint> {
        Some(match self {
            Kind::Chat => Endpoint::ChatCompletions,
            Kind::Responses => Endpoint::Responses,
            Kind::Messages => Endpoint::Messages,
            Kind::Embeddings => Endpoint::Embeddings,
            Kind::Models => Endpoint::Models,
            Kind::Mcp => return None,
        })
    }

    /// The kind serving an endpoint (for `--from-audit`).
    pub fn of_endpoint(name: &str) -> Option<&'static str> {
        Some(match Endpoint::parse(name)? {
            Endpoint::ChatCompletions => "chat",
            Endpoint::Responses => "responses",
            Endpoint::Messages => "messages",
            Endpoint::Embeddings => "embeddings",
            Endpoint::Models => "models",
        })
    }
}

/// Builds the HTTP request of a case.
pub(super) fn request(r: &RawRequest, session: Option<&str>) -> Result<(HttpRequest, Info), Problem> {
    let kind = Kind::parse(&r.kind).ok_or_else(|| {
        (
            "kind",
            format!("unknown request kind `{}`; kinds: chat, responses, messages, embeddings, models, mcp", r.kind),
        )
    })?;
    let endpoint = kind.endpoint();
    let stream = r.stream.unwrap_or(false);
    let default_model = match kind {
        Kind::Messages => "claude-3-5-haiku-latest",
        Kind::Embeddings => "text-embedding-3-small",
        _ => "gpt-4o-mini",
    };
    let model = r.model.clone().unwrap_or_else(|| default_model.to_owned());
    let mut headers = vec![];
    let (method, path, body) = match (kind, &r.body) {
        (Kind::Models, _) => (http::Method::GET, Endpoint::Models.path().to_owned(), Bytes::new()),
        (_, Some(b)) => {
            let body = match b {
                toml::Value::String(s) => Bytes::from(s.clone()),
                other => Bytes::from(to_json(other).to_string()),
            };
            (http::Method::POST, path_of(kind, r)?, body)
        }
        (_, None) => (http::Method::POST, path_of(kind, r)?, Bytes::from(body(kind, r, &model, stream)?.to_string())),
    };
    if method == http::Method::POST {
        headers.push(("content-type".into(), "application/json".into()));
    }
    match kind {
        Kind::Messages => headers.push(("anthropic-version".into(), "2023-06-01".into())),
        Kind::Mcp => {
            headers.push(("accept".into(), "application/json, text/event-stream".into()));
            if let Some(s) = session {
                headers.push(("mcp-session-id".into(), s.to_owned()));
            }
        }
        _ => {}
    }
    if let Some(s) = session {
        headers.push(("x-session-id".into(), s.to_owned()));
    }
    for (k, v) in &r.headers {
        let lower = k.to_ascii_lowercase();
        if lower == "authorization" || lower == "x-api-key" {
            return Err(("headers", format!("header `{k}` is set from the case's key or principal, not here")));
        }
        if http::HeaderName::from_bytes(k.as_bytes()).is_err() || http::HeaderValue::from_str(v).is_err() {
            return Err(("headers", format!("header `{k}` is not a valid HTTP header")));
        }
        headers.retain(|(h, _)| *h != lower);
        headers.push((lower, v.clone()));
    }
    let inputs = match &r.input {
        Some(toml::Value::Array(a)) => a.len(),
        Some(_) => 1,
        None => usize::from(r.prompt.is_some()),
    };
    let info = Info { kind, endpoint, stream, model, inputs };
    Ok((HttpRequest { method, path, headers, body }, info))
}

fn path_of(kind: Kind, r: &RawRequest) -> Result<String, Problem> {
    match kind.endpoint() {
        Some(e) => Ok(e.path().to_owned()),
        None => {
            let server = r.server.as_deref().ok_or(("server", "an mcp request names its `server`".to_owned()))?;
            if server.is_empty() || !server.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') {
                return Err(("server", format!("`{server}` is not a server name (letters, digits, - and _)")));
            }
            Ok(format!("/mcp/{server}"))
        }
    }
}

/// A tool definition from a name (shorthand) or a table (verbatim).
fn tool_def(kind: Kind, t: &toml::Value) -> Value {
    let schema = json!({"type": "object", "properties": {}});
    match t {
        toml::Value::String(name) => match kind {
            Kind::Messages => json!({"name": name, "description": name, "input_schema": schema}),
            Kind::Responses => json!({"type": "function", "name": name, "parameters": schema}),
            _ => json!({"type": "function", "function": {"name": name, "parameters": schema}}),
        },
        other => to_json(other),
    }
}

fn body(kind: Kind, r: &RawRequest, model: &str, stream: bool) -> Result<Value, Problem> {
    let prompt = r.prompt.as_deref();
    let mut v = match kind {
        Kind::Chat => {
            let messages = match &r.messages {
                Some(m) => m.iter().map(to_json).collect(),
                None => {
                    let mut m = Vec::new();
                    if let Some(s) = &r.system {
                        m.push(json!({"role": "system", "content": s}));
                    }
                    m.push(json!({"role": "user", "content": prompt.unwrap_or("Hello")}));
                    if let Some(tr) = &r.tool_result {
                        let args = tr.arguments.as_deref().unwrap_or("{}");
                        m.push(json!({"role": "assistant", "content": null, "tool_calls": [
                            {"id": "call_replay_1", "type": "function", "function": {"name": tr.tool, "arguments": args}}]}));
                        m.push(json!({"role": "tool", "tool_call_id": "call_replay_1", "content": tr.content}));
                    }
                    m
                }
            };
            json!({"model": model, "messages": messages})
        }
        Kind::Messages => {
            let messages = match &r.messages {
                Some(m) => m.iter().map(to_json).collect(),
                None => {
                    let mut m = vec![json!({"role": "user", "content": prompt.unwrap_or("Hello")})];
                    if let Some(tr) = &r.tool_result {
                        let input: Value = serde_json::from_str(tr.arguments.as_deref().unwrap_or("{}"))
                            .map_err(|e| ("tool_result", format!("`arguments` is not JSON: {e}")))?;
                        m.push(json!({"role": "assistant", "content": [
                            {"type": "tool_use", "id": "toolu_replay_1", "name": tr.tool, "input": input}]}));
                        m.push(json!({"role": "user", "content": [
                            {"type": "tool_result", "tool_use_id": "toolu_replay_1", "content": tr.content}]}));
                    }
                    m
                }
            };
            let mut v = json!({"model": model, "max_tokens": 512, "messages": messages});
            if let Some(s) = &r.system {
                v["system"] = json!(s);
            }
            v
        }
        Kind::Responses => {
            let input = match (&r.input, &r.tool_result) {
                (Some(i), _) => to_json(i),
                (None, Some(tr)) => json!([
                    {"role": "user", "content": prompt.unwrap_or("Hello")},
                    {"type": "function_call", "call_id": "call_replay_1", "name": tr.tool,
                     "arguments": tr.arguments.as_deref().unwrap_or("{}")},
                    {"type": "function_call_output", "call_id": "call_replay_1", "output": tr.content}
                ]),
                (None, None) => json!(prompt.unwrap_or("Hello")),
            };
            let mut v = json!({"model": model, "input": input});
            if let Some(s) = &r.system {
                v["instructions"] = json!(s);
            }
            v
        }
        Kind::Embeddings => {
            let input = r.input.as_ref().map_or_else(|| json!(prompt.unwrap_or("Hello")), to_json);
            json!({"model": model, "input": input})
        }
        Kind::Models => json!({}),
        Kind::Mcp => {
            let method = r.method.as_deref().ok_or(("method", "an mcp request needs `method` or `body`".to_owned()))?;
            let mut v = json!({"jsonrpc": "2.0", "id": 1, "method": method});
            if let Some(p) = &r.params {
                v["params"] = to_json(p);
            }
            return Ok(v);
        }
    };
    if stream {
        v["stream"] = json!(true);
    }
    if let Some(tools) = &r.tools {
        v["tools"] = Value::Array(tools.iter().map(|t| tool_def(kind, t)).collect());
    }
    Ok(v)
}

/// Builds the scripted upstream reply of a case.
pub(super) fn reply(r: &RawReply, info: &Info) -> Result<ScriptedReply, Problem> {
    let status = r.status.unwrap_or(200);
    if !(100..=599).contains(&status) {
        return Err(("status", format!("{status} is not an HTTP status")));
    }
    let forms = [r.json.is_some(), r.sse.is_some(), r.text.is_some() || r.tool_call.is_some()];
    if forms.iter().filter(|f| **f).count() != 1 {
        return Err(("json", "give exactly one of `json`, `sse`, or `text` / `tool_call`".into()));
    }
    if let Some(j) = &r.json {
        let body = match j {
            toml::Value::String(s) => Bytes::from(s.clone()),
            other => Bytes::from(to_json(other).to_string()),
        };
        return Ok(ScriptedReply::Json { status, body });
    }
    if let Some(chunks) = &r.sse {
        if chunks.is_empty() {
            return Err(("sse", "`sse` needs at least one chunk".into()));
        }
        let chunks = chunks.iter().map(|c| Bytes::from(c.clone())).collect();
        return Ok(ScriptedReply::Sse { status, chunks: resplit(chunks, r.split_bytes) });
    }
    let Some(endpoint) = info.endpoint else {
        return Err((
            "text",
            "`text` / `tool_call` replies exist for AI endpoints; script MCP replies with `json` or `sse`".into(),
        ));
    };
    if let (Some(call), Endpoint::Responses) = (&r.tool_call, endpoint) {
        // The shared renderer writes Responses text only; a function call item is written here.
        let chunk = r.chunk_chars.unwrap_or(8).max(1);
        return Ok(responses_call(status, info, r.text.as_deref().unwrap_or(""), call, chunk, r.split_bytes));
    }
    let text = r.text.as_deref().unwrap_or("");
    let spec = ReplySpec {
        endpoint,
        stream: info.stream,
        model: &info.model,
        text,
        chunk_chars: r.chunk_chars.unwrap_or(8).max(1),
        id: "replay",
        inputs: info.inputs,
        tool_call: r.tool_call.as_ref().map(|t| (t.name.as_str(), t.arguments.as_str())),
    };
    Ok(match reply::render(&spec) {
        Rendered::Json(body) => ScriptedReply::Json { status, body },
        Rendered::Events(events) => ScriptedReply::Sse { status, chunks: resplit(events, r.split_bytes) },
    })
}

/// The default reply when a case scripts none: a short benign answer in the endpoint's wire format,
/// so offline mode never touches the network.
pub fn default_reply(info: &Info) -> ScriptedReply {
    let Some(endpoint) = info.endpoint else {
        return ScriptedReply::Json {
            status: 200,
            body: Bytes::from_static(br#"{"jsonrpc":"2.0","id":1,"result":{}}"#),
        };
    };
    let spec = ReplySpec {
        endpoint,
        stream: info.stream,
        model: &info.model,
        text: "This is the default scripted reply of firebreak replay.",
        chunk_chars: 16,
        id: "replay",
        inputs: info.inputs,
        tool_call: None,
    };
    match reply::render(&spec) {
        Rendered::Json(body) => ScriptedReply::Json { status: 200, body },
        Rendered::Events(chunks) => ScriptedReply::Sse { status: 200, chunks },
    }
}

/// With `split_bytes`, the stream is re-cut into pieces of that many bytes (cutting through event
/// framing, JSON and UTF-8 alike, as a network may); otherwise the chunks stay as given.
fn resplit(chunks: Vec<Bytes>, split: Option<usize>) -> Vec<Bytes> {
    let Some(n) = split.filter(|n| *n > 0) else { return chunks };
    let all: Vec<u8> = chunks.iter().flat_map(|c| c.iter().copied()).collect();
    all.chunks(n).map(Bytes::copy_from_slice).collect()
}

/// The request facts of a built case, re-derived for the default reply.
pub fn info_of(req: &HttpRequest) -> Info {
    let kind = if req.path.starts_with("/mcp/") {
        Kind::Mcp
    } else {
        match Endpoint::parse(&req.path) {
            Some(Endpoint::ChatCompletions) => Kind::Chat,
            Some(Endpoint::Responses) => Kind::Responses,
            Some(Endpoint::Messages) => Kind::Messages,
            Some(Endpoint::Embeddings) => Kind::Embeddings,
            _ => Kind::Models,
        }
    };
    let v: Value = serde_json::from_slice(&req.body).unwrap_or(Value::Null);
    Info {
        kind,
        endpoint: kind.endpoint(),
        stream: v.get("stream").and_then(Value::as_bool).unwrap_or(false),
        model: v.get("model").and_then(Value::as_str).unwrap_or("replay").to_owned(),
        inputs: match v.get("input") {
            Some(Value::Array(a)) => a.len(),
            Some(_) => 1,
            None => 0,
        },
    }
}

/// A Responses reply whose output is (optional text and) one `function_call` item: one JSON body, or
/// the event stream of the real API with the arguments in `chunk`-character deltas.
fn responses_call(
    status: u16,
    info: &Info,
    text: &str,
    call: &super::suite::RawToolCall,
    chunk: usize,
    split: Option<usize>,
) -> ScriptedReply {
    let item = |args: &str, st: &str| {
        json!({"type": "function_call", "id": "fc_replay", "call_id": "call_replay", "name": call.name,
               "arguments": args, "status": st})
    };
    let message = json!({"type": "message", "id": "msg_replay", "status": "completed", "role": "assistant",
                         "content": [{"type": "output_text", "text": text, "annotations": []}]});
    let mut output = Vec::new();
    if !text.is_empty() {
        output.push(message);
    }
    output.push(item(&call.arguments, "completed"));
    let response = |st: &str, output: Value| {
        json!({"id": "resp_replay", "object": "response", "created_at": 0, "status": st, "model": info.model,
               "output": output, "tools": [], "error": null, "incomplete_details": null, "metadata": {}})
    };
    if !info.stream {
        let body = Bytes::from(response("completed", Value::Array(output.clone())).to_string());
        return ScriptedReply::Json { status, body };
    }
    let mut events = Vec::new();
    let mut seq = 0u64;
    let mut ev = |name: &str, mut v: Value| {
        v["type"] = json!(name);
        v["sequence_number"] = json!(seq);
        seq += 1;
        events.push(crate::protocol::sse::event(Some(name), &v));
    };
    ev("response.created", json!({"response": response("in_progress", json!([]))}));
    let oi = output.len() - 1;
    if oi == 1 {
        ev("response.output_item.added", json!({"output_index": 0, "item": output[0]}));
        ev("response.output_item.done", json!({"output_index": 0, "item": output[0]}));
    }
    ev("response.output_item.added", json!({"output_index": oi, "item": item("", "in_progress")}));
    for p in reply::pieces(&call.arguments, chunk) {
        ev("response.function_call_arguments.delta", json!({"item_id": "fc_replay", "output_index": oi, "delta": p}));
    }
    ev(
        "response.function_call_arguments.done",
        json!({"item_id": "fc_replay", "output_index": oi, "arguments": call.arguments}),
    );
    ev("response.output_item.done", json!({"output_index": oi, "item": item(&call.arguments, "completed")}));
    ev("response.completed", json!({"response": response("completed", Value::Array(output))}));
    ScriptedReply::Sse { status, chunks: resplit(events, split) }
}
