//! A fast, canned AI provider for load tests: it answers OpenAI chat completions (JSON and SSE),
//! OpenAI responses, Anthropic messages (JSON and SSE) and the models list with fixed bodies, so the
//! measured cost is the proxy's, not the upstream's.
//!
//! ```text
//! cargo run --release --example fake_provider -- [--listen 127.0.0.1:0] [--ready-file F] [--threads N]
//! ```
//!
//! Once listening it prints `{"addr":"127.0.0.1:PORT","pid":N}` on stdout (and writes it to the ready
//! file, if given). Streaming is chosen by `"stream": true` in the request body. Every streamed event is
//! sent as its own body frame, as a real provider's token stream would be. A request body carrying
//! `"fake_delay_ms":N` gets its events N ms apart (a slow stream, for the memory test of many open
//! streams). Only loopback is served.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::OnceLock;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{header, Method, Request, Response, StatusCode};
use http_body::Frame;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;

/// A body made of pre-built frames, each sent as one data frame, optionally `delay` apart.
struct Frames {
    frames: VecDeque<Bytes>,
    delay: Option<(std::time::Duration, Pin<Box<tokio::time::Sleep>>)>,
}

impl http_body::Body for Frames {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        let this = &mut *self;
        if let Some((d, sleep)) = &mut this.delay {
            if this.frames.is_empty() {
                return Poll::Ready(None);
            }
            std::task::ready!(sleep.as_mut().poll(cx));
            let next = tokio::time::Instant::now() + *d;
            sleep.as_mut().reset(next);
        }
        Poll::Ready(this.frames.pop_front().map(|b| Ok(Frame::data(b))))
    }

    fn is_end_stream(&self) -> bool {
        self.frames.is_empty()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        if self.frames.len() <= 1 {
            // A single frame has a known length: hyper then sends Content-Length instead of chunks.
            http_body::SizeHint::with_exact(self.frames.front().map_or(0, |b| b.len() as u64))
        } else {
            http_body::SizeHint::default()
        }
    }
}

const WORDS: &[&str] = &[
    "The",
    " gateway",
    " checks",
    " every",
    " request",
    " against",
    " the",
    " policy",
    ",",
    " forwards",
    " it",
    " to",
    " the",
    " provider",
    ",",
    " and",
    " streams",
    " the",
    " answer",
    " back",
    " one",
    " event",
    " at",
    " a",
    " time",
    ".",
    " Nothing",
    " is",
    " buffered",
    " longer",
    " than",
    " needed",
    ".",
];

struct Canned {
    chat_json: Bytes,
    chat_sse: Vec<Bytes>,
    responses_json: Bytes,
    messages_json: Bytes,
    messages_sse: Vec<Bytes>,
    models: Bytes,
}

fn canned() -> &'static Canned {
    static C: OnceLock<Canned> = OnceLock::new();
    C.get_or_init(|| {
        let text: String = WORDS.concat();
        let chat_json = serde_json::json!({
            "id": "chatcmpl-bench0001", "object": "chat.completion", "created": 1_700_000_000u64, "model": "gpt-4o-mini",
            "system_fingerprint": "fp_bench",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text, "refusal": null}, "logprobs": null, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 42, "completion_tokens": WORDS.len(), "total_tokens": 42 + WORDS.len()}
        });
        let mut chat_sse = Vec::new();
        let head = |delta: serde_json::Value, finish: serde_json::Value| {
            serde_json::json!({"id": "chatcmpl-bench0001", "object": "chat.completion.chunk", "created": 1_700_000_000u64,
                "model": "gpt-4o-mini", "system_fingerprint": "fp_bench",
                "choices": [{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish}]})
        };
        chat_sse.push(Bytes::from(format!("data: {}\n\n", head(serde_json::json!({"role": "assistant", "content": ""}), serde_json::Value::Null))));
        for w in WORDS {
            chat_sse.push(Bytes::from(format!("data: {}\n\n", head(serde_json::json!({"content": w}), serde_json::Value::Null))));
        }
        chat_sse.push(Bytes::from(format!("data: {}\n\n", head(serde_json::json!({}), serde_json::json!("stop")))));
        chat_sse.push(Bytes::from_static(b"data: [DONE]\n\n"));

        let responses_json = serde_json::json!({
            "id": "resp_bench0001", "object": "response", "created_at": 1_700_000_000u64, "status": "completed", "model": "gpt-4o-mini",
            "output": [{"type": "message", "id": "msg_bench", "status": "completed", "role": "assistant",
                "content": [{"type": "output_text", "text": text, "annotations": []}]}],
            "usage": {"input_tokens": 42, "output_tokens": WORDS.len(), "total_tokens": 42 + WORDS.len()}
        });
        let messages_json = serde_json::json!({
            "id": "msg_bench0001", "type": "message", "role": "assistant", "model": "claude-3-5-haiku-latest",
            "content": [{"type": "text", "text": text}], "stop_reason": "end_turn", "stop_sequence": null,
            "usage": {"input_tokens": 42, "output_tokens": WORDS.len()}
        });
        let ev = |name: &str, v: serde_json::Value| Bytes::from(format!("event: {name}\ndata: {v}\n\n"));
        let mut messages_sse = vec![
            ev("message_start", serde_json::json!({"type": "message_start", "message": {"id": "msg_bench0001", "type": "message", "role": "assistant",
                "model": "claude-3-5-haiku-latest", "content": [], "stop_reason": null, "stop_sequence": null, "usage": {"input_tokens": 42, "output_tokens": 1}}})),
            ev("content_block_start", serde_json::json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}})),
        ];
        for w in WORDS {
            messages_sse.push(ev("content_block_delta", serde_json::json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": w}})));
        }
        messages_sse.push(ev("content_block_stop", serde_json::json!({"type": "content_block_stop", "index": 0})));
        messages_sse.push(ev("message_delta", serde_json::json!({"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": null}, "usage": {"output_tokens": WORDS.len()}})));
        messages_sse.push(ev("message_stop", serde_json::json!({"type": "message_stop"})));
        let models = serde_json::json!({"object": "list", "data": [
            {"id": "gpt-4o-mini", "object": "model", "created": 1_700_000_000u64, "owned_by": "bench"},
            {"id": "gpt-4o", "object": "model", "created": 1_700_000_000u64, "owned_by": "bench"}]});
        Canned {
            chat_json: Bytes::from(chat_json.to_string()),
            chat_sse,
            responses_json: Bytes::from(responses_json.to_string()),
            messages_json: Bytes::from(messages_json.to_string()),
            messages_sse,
            models: Bytes::from(models.to_string()),
        }
    })
}

fn reply(status: StatusCode, content_type: &'static str, frames: Vec<Bytes>) -> Response<Frames> {
    let mut r = Response::new(Frames { frames: frames.into(), delay: None });
    *r.status_mut() = status;
    r.headers_mut().insert(header::CONTENT_TYPE, header::HeaderValue::from_static(content_type));
    if content_type == "text/event-stream" {
        r.headers_mut().insert(header::CACHE_CONTROL, header::HeaderValue::from_static("no-cache"));
    }
    r
}

async fn handle(req: Request<Incoming>) -> Result<Response<Frames>, Infallible> {
    let c = canned();
    let (parts, body) = req.into_parts();
    // Drain the body (a real provider reads it) so the connection stays reusable.
    let body = match body.collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => Bytes::new(),
    };
    let stream = memchr::memmem::find(&body, b"\"stream\":true").is_some()
        || memchr::memmem::find(&body, b"\"stream\": true").is_some();
    let delay = memchr::memmem::find(&body, b"\"fake_delay_ms\":").and_then(|at| {
        let digits = body[at + 16..].iter().take_while(|b| b.is_ascii_digit()).count();
        std::str::from_utf8(&body[at + 16..at + 16 + digits]).ok()?.parse::<u64>().ok()
    });
    let mut r = match (&parts.method, parts.uri.path()) {
        (&Method::POST, "/v1/chat/completions") if stream => {
            reply(StatusCode::OK, "text/event-stream", c.chat_sse.clone())
        }
        (&Method::POST, "/v1/chat/completions") => reply(StatusCode::OK, "application/json", vec![c.chat_json.clone()]),
        (&Method::POST, "/v1/messages") if stream => reply(StatusCode::OK, "text/event-stream", c.messages_sse.clone()),
        (&Method::POST, "/v1/messages") => reply(StatusCode::OK, "application/json", vec![c.messages_json.clone()]),
        (&Method::POST, "/v1/responses") => reply(StatusCode::OK, "application/json", vec![c.responses_json.clone()]),
        (&Method::GET, "/v1/models") => reply(StatusCode::OK, "application/json", vec![c.models.clone()]),
        _ => reply(
            StatusCode::NOT_FOUND,
            "application/json",
            vec![Bytes::from_static(
                br#"{"error":{"message":"not found","type":"invalid_request_error","code":"not_found"}}"#,
            )],
        ),
    };
    if let Some(ms) = delay.filter(|&ms| ms > 0) {
        let d = std::time::Duration::from_millis(ms);
        r.body_mut().delay = Some((d, Box::pin(tokio::time::sleep(d))));
    }
    Ok(r)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut listen: SocketAddr = "127.0.0.1:0".parse()?;
    let mut ready_file = None;
    let mut threads = 1usize;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--listen" => listen = args.next().ok_or("--listen needs an address")?.parse()?,
            "--ready-file" => ready_file = Some(args.next().ok_or("--ready-file needs a path")?),
            "--threads" => threads = args.next().ok_or("--threads needs a number")?.parse()?,
            "-h" | "--help" => {
                println!("fake_provider [--listen 127.0.0.1:0] [--ready-file F] [--threads N]");
                return Ok(());
            }
            other => return Err(format!("unknown argument {other}").into()),
        }
    }
    if !listen.ip().is_loopback() {
        return Err("fake_provider only listens on loopback addresses".into());
    }
    canned();
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(threads.max(1)).enable_all().build()?;
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind(listen).await?;
        let addr = listener.local_addr()?;
        let line = format!("{{\"addr\":\"{addr}\",\"pid\":{}}}", std::process::id());
        if let Some(f) = &ready_file {
            let tmp = format!("{f}.tmp");
            std::fs::write(&tmp, &line)?;
            std::fs::rename(&tmp, f)?;
        }
        println!("{line}");
        let builder = auto::Builder::new(TokioExecutor::new());
        loop {
            let (sock, _) = match listener.accept().await {
                Ok(s) => s,
                Err(e) => {
                    eprintln!("accept: {e}");
                    continue;
                }
            };
            let _ = sock.set_nodelay(true);
            let builder = builder.clone();
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(handle);
                let _ = builder.serve_connection(TokioIo::new(sock), svc).await;
            });
        }
    })
}
