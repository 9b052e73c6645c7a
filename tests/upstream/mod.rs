//! A scriptable fake AI provider for integration tests: a small hyper 1 server on `127.0.0.1:0`,
//! spawned on the test's tokio runtime. It speaks the providers' real wire formats (OpenAI chat
//! completions JSON and SSE, OpenAI Responses SSE, Anthropic messages JSON and SSE), writes bodies in
//! chunks split at awkward byte boundaries, and records every request (method, path, headers, body)
//! so tests can assert on exactly what reached the provider.
//!
//! Each request takes the next queued [`Reply`] (see [`FakeUpstream::push`]), or the default one.
#![allow(dead_code)]

pub mod gw;
pub mod mcp;

use std::collections::VecDeque;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderMap, Request, Response, StatusCode};
use http_body::Frame;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::{json, Value};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, Notify};

// ---------------------------------------------------------------------------------------------
// Scripting
// ---------------------------------------------------------------------------------------------

/// How a scripted body ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum End {
    /// The body ends normally after the last chunk (even if that chunk ends mid-event).
    Clean,
    /// The connection is torn down after the last chunk (a body error at the reader).
    Abort,
}

/// How a body is cut into the chunks written to the socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Chunking {
    /// One chunk.
    Whole,
    /// Fixed-size chunks of this many bytes (1 = byte by byte).
    Bytes(usize),
    /// Cuts inside `data:` prefixes, between the two newlines that end an event, and inside every
    /// multi-byte UTF-8 character.
    Awkward,
}

/// Splits `body` according to `mode`.
pub fn split(body: &[u8], mode: Chunking) -> Vec<Bytes> {
    match mode {
        Chunking::Whole => vec![Bytes::copy_from_slice(body)],
        Chunking::Bytes(n) => body.chunks(n.max(1)).map(Bytes::copy_from_slice).collect(),
        Chunking::Awkward => {
            let mut cuts = Vec::new();
            let mut line_start = 0;
            for i in 1..body.len() {
                let prev = body[i - 1];
                let cur = body[i];
                if prev == b'\n' {
                    line_start = i;
                }
                let mid_utf8 = (cur & 0xC0) == 0x80 && (prev & 0xC0) == 0xC0;
                let mid_terminator = prev == b'\n' && cur == b'\n';
                let mid_prefix = i == line_start + 3;
                if mid_utf8 || mid_terminator || mid_prefix {
                    cuts.push(i);
                }
            }
            let mut out = Vec::new();
            let mut start = 0;
            for c in cuts {
                if c > start {
                    out.push(Bytes::copy_from_slice(&body[start..c]));
                    start = c;
                }
            }
            if start < body.len() {
                out.push(Bytes::copy_from_slice(&body[start..]));
            }
            out
        }
    }
}

/// One scripted answer.
#[derive(Debug, Clone)]
pub struct Reply {
    /// HTTP status.
    pub status: u16,
    /// Response headers (content-type included).
    pub headers: Vec<(String, String)>,
    /// The body, chunk by chunk.
    pub chunks: Vec<Bytes>,
    /// Pause between chunks (network pacing, so the reader sees the cuts).
    pub chunk_delay: Duration,
    /// Pause before the response head is sent.
    pub head_delay: Duration,
    /// After sending chunk `n`, wait until the `Notify` is triggered.
    pub gate: Option<(usize, Arc<Notify>)>,
    /// How the body ends.
    pub end: End,
}

impl Reply {
    /// A JSON body (status 200).
    pub fn json(v: &Value) -> Reply {
        Reply {
            status: 200,
            headers: vec![("content-type".into(), "application/json".into())],
            chunks: vec![Bytes::from(v.to_string())],
            chunk_delay: Duration::ZERO,
            head_delay: Duration::ZERO,
            gate: None,
            end: End::Clean,
        }
    }

    /// An SSE body cut by `chunking`. Non-whole chunkings get a small pause between chunks so that
    /// the gateway really reads them one by one.
    pub fn sse(body: &str, chunking: Chunking) -> Reply {
        Reply {
            status: 200,
            headers: vec![
                ("content-type".into(), "text/event-stream; charset=utf-8".into()),
                ("cache-control".into(), "no-cache".into()),
            ],
            chunks: split(body.as_bytes(), chunking),
            chunk_delay: if chunking == Chunking::Whole { Duration::ZERO } else { Duration::from_millis(1) },
            head_delay: Duration::ZERO,
            gate: None,
            end: End::Clean,
        }
    }

    /// An SSE body given as explicit chunks.
    pub fn sse_chunks(chunks: Vec<String>) -> Reply {
        let mut r = Reply::sse("", Chunking::Whole);
        r.chunks = chunks.into_iter().map(Bytes::from).collect();
        r
    }

    /// Any body, as explicit chunks, with this content type.
    pub fn raw(content_type: &str, chunks: Vec<String>) -> Reply {
        let mut r = Reply::json(&Value::Null);
        r.headers = vec![("content-type".into(), content_type.into())];
        r.chunks = chunks.into_iter().map(Bytes::from).collect();
        r
    }

    /// Sets the status.
    pub fn with_status(mut self, status: u16) -> Reply {
        self.status = status;
        self
    }

    /// Adds a response header.
    pub fn with_header(mut self, k: &str, v: &str) -> Reply {
        self.headers.push((k.into(), v.into()));
        self
    }

    /// Delays the response head.
    pub fn with_head_delay(mut self, d: Duration) -> Reply {
        self.head_delay = d;
        self
    }

    /// Sets the pause between chunks.
    pub fn with_chunk_delay(mut self, d: Duration) -> Reply {
        self.chunk_delay = d;
        self
    }

    /// Waits on `n` after chunk `after` has been written.
    pub fn with_gate(mut self, after: usize, n: Arc<Notify>) -> Reply {
        self.gate = Some((after, n));
        self
    }

    /// How the body ends.
    pub fn with_end(mut self, end: End) -> Reply {
        self.end = end;
        self
    }
}

/// A request the fake provider received.
#[derive(Debug, Clone)]
pub struct Recorded {
    /// Method.
    pub method: String,
    /// Path and query.
    pub path: String,
    /// Every header as received.
    pub headers: HeaderMap,
    /// The body bytes.
    pub body: Bytes,
}

impl Recorded {
    /// The body as JSON (`Null` when it is not JSON).
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }

    /// One header as text.
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_owned)
    }

    /// Every header as `name: value` text, for "never appears anywhere" assertions.
    pub fn all_headers_text(&self) -> String {
        self.headers.iter().map(|(k, v)| format!("{}: {}\n", k, String::from_utf8_lossy(v.as_bytes()))).collect()
    }
}

struct Shared {
    queue: Mutex<VecDeque<Reply>>,
    default: Mutex<Reply>,
    requests: Mutex<Vec<Recorded>>,
}

/// The running fake provider. It lives as long as the test's runtime.
pub struct FakeUpstream {
    /// Where it listens.
    pub addr: SocketAddr,
    shared: Arc<Shared>,
}

impl FakeUpstream {
    /// Starts the server; by default it answers every request with a small chat completion.
    pub async fn start() -> FakeUpstream {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind fake upstream");
        let addr = listener.local_addr().expect("local addr");
        let shared = Arc::new(Shared {
            queue: Mutex::new(VecDeque::new()),
            default: Mutex::new(Reply::json(&chat_json("default reply", "gpt-test"))),
            requests: Mutex::new(Vec::new()),
        });
        let s = shared.clone();
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let _ = stream.set_nodelay(true);
                let s = s.clone();
                tokio::spawn(async move {
                    let svc = service_fn(move |req| handle(s.clone(), req));
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        FakeUpstream { addr, shared }
    }

    /// `http://127.0.0.1:PORT`
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Queues a reply for the next request.
    pub fn push(&self, r: Reply) {
        self.shared.queue.lock().unwrap().push_back(r);
    }

    /// The reply used when the queue is empty.
    pub fn set_default(&self, r: Reply) {
        *self.shared.default.lock().unwrap() = r;
    }

    /// Every request received so far.
    pub fn requests(&self) -> Vec<Recorded> {
        self.shared.requests.lock().unwrap().clone()
    }

    /// How many requests were received.
    pub fn count(&self) -> usize {
        self.shared.requests.lock().unwrap().len()
    }

    /// Waits (bounded) until at least `n` requests arrived; panics after 10 s.
    pub async fn wait_requests(&self, n: usize) -> Vec<Recorded> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let r = self.requests();
            if r.len() >= n {
                return r;
            }
            assert!(Instant::now() < deadline, "fake upstream got {} requests, expected {n}", r.len());
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// The last request received (panics if none).
    pub fn last(&self) -> Recorded {
        self.requests().pop().expect("the fake upstream received no request")
    }
}

type FakeBody = http_body_util::combinators::BoxBody<Bytes, std::io::Error>;

/// A channel-fed response body.
struct ChanBody(mpsc::Receiver<Result<Bytes, std::io::Error>>);

impl http_body::Body for ChanBody {
    type Data = Bytes;
    type Error = std::io::Error;
    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, std::io::Error>>> {
        self.0.poll_recv(cx).map(|o| o.map(|r| r.map(Frame::data)))
    }
}

async fn handle(s: Arc<Shared>, req: Request<Incoming>) -> Result<Response<FakeBody>, Infallible> {
    let (parts, body) = req.into_parts();
    let body = body.collect().await.map(|c| c.to_bytes()).unwrap_or_default();
    s.requests.lock().unwrap().push(Recorded {
        method: parts.method.to_string(),
        path: parts.uri.path_and_query().map(|p| p.to_string()).unwrap_or_default(),
        headers: parts.headers,
        body,
    });
    let reply = {
        let next = s.queue.lock().unwrap().pop_front();
        next.unwrap_or_else(|| s.default.lock().unwrap().clone())
    };
    if !reply.head_delay.is_zero() {
        tokio::time::sleep(reply.head_delay).await;
    }
    let (tx, rx) = mpsc::channel(1);
    let Reply { chunks, chunk_delay, gate, end, .. } = reply.clone();
    tokio::spawn(async move {
        for (i, c) in chunks.into_iter().enumerate() {
            if i > 0 && !chunk_delay.is_zero() {
                tokio::time::sleep(chunk_delay).await;
            }
            if tx.send(Ok(c)).await.is_err() {
                return;
            }
            if let Some((after, n)) = &gate {
                if *after == i {
                    n.notified().await;
                }
            }
        }
        if end == End::Abort {
            let _ = tx.send(Err(std::io::Error::other("fake upstream tears the connection down"))).await;
        }
    });
    let mut resp = Response::new(BodyExt::boxed(ChanBody(rx)));
    *resp.status_mut() = StatusCode::from_u16(reply.status).unwrap_or(StatusCode::OK);
    for (k, v) in &reply.headers {
        if let (Ok(k), Ok(v)) = (http::HeaderName::from_bytes(k.as_bytes()), http::HeaderValue::from_str(v)) {
            resp.headers_mut().append(k, v);
        }
    }
    Ok(resp)
}

// ---------------------------------------------------------------------------------------------
// Provider wire formats
// ---------------------------------------------------------------------------------------------

fn data(v: &Value) -> String {
    format!("data: {v}\n\n")
}

fn named(name: &str, v: &Value) -> String {
    format!("event: {name}\ndata: {v}\n\n")
}

/// OpenAI chat completion (non-streamed).
pub fn chat_json(text: &str, model: &str) -> Value {
    json!({
        "id": "chatcmpl-fake123", "object": "chat.completion", "created": 1_700_000_000, "model": model,
        "system_fingerprint": "fp_fake",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text, "refusal": null},
                     "logprobs": null, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 9, "completion_tokens": 12, "total_tokens": 21}
    })
}

fn chat_chunk(model: &str, delta: Value, finish: Value) -> Value {
    json!({"id": "chatcmpl-fake123", "object": "chat.completion.chunk", "created": 1_700_000_000,
           "model": model, "system_fingerprint": "fp_fake",
           "choices": [{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish}]})
}

/// OpenAI chat completion stream: role chunk, a `: keep-alive` comment, one chunk per piece (with a
/// second keep-alive in the middle), a finish chunk, a usage chunk, `data: [DONE]`.
pub fn chat_sse(pieces: &[&str], model: &str) -> String {
    let mut s = String::new();
    s += &data(&chat_chunk(model, json!({"role": "assistant", "content": "", "refusal": null}), Value::Null));
    s += ": keep-alive\n\n";
    for (i, p) in pieces.iter().enumerate() {
        s += &data(&chat_chunk(model, json!({"content": p}), Value::Null));
        if i == pieces.len() / 2 {
            s += ": keep-alive\n\n";
        }
    }
    s += &data(&chat_chunk(model, json!({}), json!("stop")));
    s += &data(&json!({"id": "chatcmpl-fake123", "object": "chat.completion.chunk", "created": 1_700_000_000,
                       "model": model, "choices": [],
                       "usage": {"prompt_tokens": 9, "completion_tokens": 12, "total_tokens": 21}}));
    s += "data: [DONE]\n\n";
    s
}

/// A tool call: id, function name, JSON arguments (as a string), and how the arguments are cut when
/// streamed.
#[derive(Debug, Clone)]
pub struct Call {
    /// Call id.
    pub id: &'static str,
    /// Tool name.
    pub name: &'static str,
    /// Arguments (a JSON document as text).
    pub args: &'static str,
}

/// OpenAI chat completion with tool calls (non-streamed).
pub fn chat_tool_json(calls: &[Call], model: &str) -> Value {
    let tc: Vec<Value> = calls
        .iter()
        .map(|c| json!({"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.args}}))
        .collect();
    json!({
        "id": "chatcmpl-fake123", "object": "chat.completion", "created": 1_700_000_000, "model": model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": null, "tool_calls": tc, "refusal": null},
                     "logprobs": null, "finish_reason": "tool_calls"}],
        "usage": {"prompt_tokens": 9, "completion_tokens": 12, "total_tokens": 21}
    })
}

fn thirds(s: &str) -> Vec<&str> {
    let b: Vec<usize> = s.char_indices().map(|(i, _)| i).chain([s.len()]).collect();
    let n = b.len() - 1;
    let (a, c) = (b[n / 3], b[2 * n / 3]);
    vec![&s[..a], &s[a..c], &s[c..]]
}

/// The events of one streamed chat tool call (`index` is its position in the message).
pub fn chat_tool_call_events(index: usize, c: &Call, model: &str) -> Vec<String> {
    let mut out = vec![data(&chat_chunk(
        model,
        json!({"tool_calls": [{"index": index, "id": c.id, "type": "function", "function": {"name": c.name, "arguments": ""}}]}),
        Value::Null,
    ))];
    for p in thirds(c.args) {
        out.push(data(&chat_chunk(
            model,
            json!({"tool_calls": [{"index": index, "function": {"arguments": p}}]}),
            Value::Null,
        )));
    }
    out
}

/// OpenAI chat completion stream with tool calls (arguments streamed in pieces), ending with
/// `finish_reason: "tool_calls"` and `[DONE]`.
pub fn chat_tool_sse(calls: &[Call], model: &str) -> String {
    let mut s = data(&chat_chunk(model, json!({"role": "assistant", "content": null}), Value::Null));
    for (i, c) in calls.iter().enumerate() {
        for e in chat_tool_call_events(i, c, model) {
            s += &e;
        }
    }
    s += &data(&chat_chunk(model, json!({}), json!("tool_calls")));
    s += "data: [DONE]\n\n";
    s
}

/// OpenAI Responses API response (non-streamed).
pub fn responses_json(text: &str, model: &str) -> Value {
    json!({
        "id": "resp_fake123", "object": "response", "created_at": 1_700_000_000, "status": "completed", "model": model,
        "output": [{"type": "message", "id": "msg_fake", "status": "completed", "role": "assistant",
                    "content": [{"type": "output_text", "text": text, "annotations": []}]}],
        "parallel_tool_calls": true, "tool_choice": "auto", "tools": [], "error": null,
        "incomplete_details": null, "instructions": null, "metadata": {},
        "usage": {"input_tokens": 9, "output_tokens": 12, "total_tokens": 21}
    })
}

/// OpenAI Responses API stream (`event: response.output_text.delta` …, ending `response.completed`).
pub fn responses_sse(pieces: &[&str], model: &str) -> String {
    let text: String = pieces.concat();
    let mut seq = 0;
    let mut s = String::new();
    let mut ev = |name: &str, mut v: Value| {
        v["type"] = json!(name);
        v["sequence_number"] = json!(seq);
        seq += 1;
        s += &named(name, &v);
    };
    let mut pending = responses_json("", model);
    pending["status"] = json!("in_progress");
    pending["output"] = json!([]);
    ev("response.created", json!({"response": pending.clone()}));
    ev("response.in_progress", json!({"response": pending}));
    ev(
        "response.output_item.added",
        json!({"output_index": 0, "item": {"type": "message", "id": "msg_fake",
        "status": "in_progress", "role": "assistant", "content": []}}),
    );
    ev(
        "response.content_part.added",
        json!({"item_id": "msg_fake", "output_index": 0, "content_index": 0,
        "part": {"type": "output_text", "text": "", "annotations": []}}),
    );
    for p in pieces {
        ev(
            "response.output_text.delta",
            json!({"item_id": "msg_fake", "output_index": 0, "content_index": 0, "delta": p}),
        );
    }
    ev(
        "response.output_text.done",
        json!({"item_id": "msg_fake", "output_index": 0, "content_index": 0, "text": text}),
    );
    ev(
        "response.content_part.done",
        json!({"item_id": "msg_fake", "output_index": 0, "content_index": 0,
        "part": {"type": "output_text", "text": text, "annotations": []}}),
    );
    ev(
        "response.output_item.done",
        json!({"output_index": 0, "item": {"type": "message", "id": "msg_fake",
        "status": "completed", "role": "assistant", "content": [{"type": "output_text", "text": text, "annotations": []}]}}),
    );
    ev("response.completed", json!({"response": responses_json(&text, model)}));
    s
}

/// Anthropic message (non-streamed).
pub fn anthropic_json(text: &str, model: &str) -> Value {
    json!({
        "id": "msg_fake123", "type": "message", "role": "assistant", "model": model,
        "content": [{"type": "text", "text": text}],
        "stop_reason": "end_turn", "stop_sequence": null,
        "usage": {"input_tokens": 9, "output_tokens": 12}
    })
}

/// Anthropic message with tool_use blocks (non-streamed).
pub fn anthropic_tool_json(calls: &[Call], model: &str) -> Value {
    let mut content = vec![json!({"type": "text", "text": "Let me use some tools."})];
    for c in calls {
        let input: Value = serde_json::from_str(c.args).unwrap_or(Value::Null);
        content.push(json!({"type": "tool_use", "id": c.id, "name": c.name, "input": input}));
    }
    json!({
        "id": "msg_fake123", "type": "message", "role": "assistant", "model": model, "content": content,
        "stop_reason": "tool_use", "stop_sequence": null, "usage": {"input_tokens": 9, "output_tokens": 12}
    })
}

fn anthropic_start(model: &str) -> String {
    named(
        "message_start",
        &json!({"type": "message_start", "message": {"id": "msg_fake123", "type": "message",
        "role": "assistant", "model": model, "content": [], "stop_reason": null, "stop_sequence": null,
        "usage": {"input_tokens": 9, "output_tokens": 1}}}),
    )
}

fn anthropic_end(stop: &str) -> String {
    named(
        "message_delta",
        &json!({"type": "message_delta", "delta": {"stop_reason": stop, "stop_sequence": null},
        "usage": {"output_tokens": 12}}),
    ) + &named("message_stop", &json!({"type": "message_stop"}))
}

/// Anthropic message stream: `message_start`, `content_block_start`, `ping`, text deltas (a second
/// `ping` in the middle), `content_block_stop`, `message_delta`, `message_stop`.
pub fn anthropic_sse(pieces: &[&str], model: &str) -> String {
    let mut s = anthropic_start(model);
    s += &named(
        "content_block_start",
        &json!({"type": "content_block_start", "index": 0,
        "content_block": {"type": "text", "text": ""}}),
    );
    s += &named("ping", &json!({"type": "ping"}));
    for (i, p) in pieces.iter().enumerate() {
        s += &named(
            "content_block_delta",
            &json!({"type": "content_block_delta", "index": 0,
            "delta": {"type": "text_delta", "text": p}}),
        );
        if i == pieces.len() / 2 {
            s += &named("ping", &json!({"type": "ping"}));
        }
    }
    s += &named("content_block_stop", &json!({"type": "content_block_stop", "index": 0}));
    s += &anthropic_end("end_turn");
    s
}

/// The events of one streamed Anthropic tool_use block at content index `index`.
pub fn anthropic_tool_block_events(index: usize, c: &Call) -> Vec<String> {
    let mut out = vec![named(
        "content_block_start",
        &json!({"type": "content_block_start", "index": index,
        "content_block": {"type": "tool_use", "id": c.id, "name": c.name, "input": {}}}),
    )];
    for p in thirds(c.args) {
        out.push(named(
            "content_block_delta",
            &json!({"type": "content_block_delta", "index": index,
            "delta": {"type": "input_json_delta", "partial_json": p}}),
        ));
    }
    out.push(named("content_block_stop", &json!({"type": "content_block_stop", "index": index})));
    out
}

/// Anthropic stream: a text block, then one tool_use block per call, `stop_reason: tool_use`.
pub fn anthropic_tool_sse(calls: &[Call], model: &str) -> String {
    let mut s = anthropic_start(model);
    s += &named(
        "content_block_start",
        &json!({"type": "content_block_start", "index": 0,
        "content_block": {"type": "text", "text": ""}}),
    );
    s += &named(
        "content_block_delta",
        &json!({"type": "content_block_delta", "index": 0,
        "delta": {"type": "text_delta", "text": "Let me use some tools."}}),
    );
    s += &named("content_block_stop", &json!({"type": "content_block_stop", "index": 0}));
    for (i, c) in calls.iter().enumerate() {
        for e in anthropic_tool_block_events(i + 1, c) {
            s += &e;
        }
    }
    s += &anthropic_end("tool_use");
    s
}

// ---------------------------------------------------------------------------------------------
// Client side: reading what the gateway delivered
// ---------------------------------------------------------------------------------------------

/// One SSE event as a client sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct SseEvent {
    /// `event:` name.
    pub name: Option<String>,
    /// `data:` lines joined with `\n`.
    pub data: Option<String>,
    /// Comment lines (without the leading `:`), e.g. ` keep-alive`.
    pub comments: Vec<String>,
    /// The raw event text including its terminating blank line.
    pub raw: String,
}

impl SseEvent {
    /// The data as JSON (`None` for `[DONE]`, comments or non-JSON data).
    pub fn json(&self) -> Option<Value> {
        self.data.as_deref().and_then(|d| serde_json::from_str(d).ok())
    }

    /// A comparable form: name, data (as JSON when it is JSON), comments.
    pub fn normalized(&self) -> (Option<String>, Option<Value>, Vec<String>) {
        let d = self.data.as_ref().map(|d| serde_json::from_str(d).unwrap_or_else(|_| Value::String(d.clone())));
        (self.name.clone(), d, self.comments.clone())
    }
}

/// Parses a whole SSE body (LF or CRLF line endings). Panics on a trailing unterminated event,
/// since a well-behaved gateway always ends streams on an event boundary.
pub fn parse_sse(body: &str) -> Vec<SseEvent> {
    let body = body.replace("\r\n", "\n");
    let mut out = Vec::new();
    let mut rest = body.as_str();
    while !rest.is_empty() {
        let Some(end) = rest.find("\n\n") else {
            panic!("stream ended in the middle of an event: {rest:?}");
        };
        let raw = &rest[..end + 2];
        rest = &rest[end + 2..];
        let mut ev = SseEvent { name: None, data: None, comments: Vec::new(), raw: raw.to_owned() };
        for line in raw[..end].split('\n') {
            if let Some(c) = line.strip_prefix(':') {
                ev.comments.push(c.to_owned());
                continue;
            }
            let (field, value) = match line.split_once(':') {
                Some((f, v)) => (f, v.strip_prefix(' ').unwrap_or(v)),
                None => (line, ""),
            };
            match field {
                "event" => ev.name = Some(value.to_owned()),
                "data" => {
                    ev.data = Some(match ev.data.take() {
                        None => value.to_owned(),
                        Some(p) => format!("{p}\n{value}"),
                    })
                }
                _ => {}
            }
        }
        out.push(ev);
    }
    out
}

/// The assistant text of a chat completion stream.
pub fn chat_stream_text(events: &[SseEvent]) -> String {
    events
        .iter()
        .filter_map(SseEvent::json)
        .filter_map(|v| v.pointer("/choices/0/delta/content").and_then(Value::as_str).map(str::to_owned))
        .collect()
}

/// The assistant text of a Responses stream.
pub fn responses_stream_text(events: &[SseEvent]) -> String {
    events
        .iter()
        .filter(|e| e.name.as_deref() == Some("response.output_text.delta"))
        .filter_map(SseEvent::json)
        .filter_map(|v| v.get("delta").and_then(Value::as_str).map(str::to_owned))
        .collect()
}

/// The text of an Anthropic stream's text deltas.
pub fn anthropic_stream_text(events: &[SseEvent]) -> String {
    events
        .iter()
        .filter(|e| e.name.as_deref() == Some("content_block_delta"))
        .filter_map(SseEvent::json)
        .filter_map(|v| v.pointer("/delta/text").and_then(Value::as_str).map(str::to_owned))
        .collect()
}
