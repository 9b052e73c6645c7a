//! Data-plane integration tests, part 2: SSE streams. Passthrough of all three streaming formats
//! regardless of how the provider's bytes are chunked, broken upstream streams ending in a clean
//! terminal error event, and events reaching the client while the provider is still writing.

mod common;
mod upstream;

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use serde_json::Value;
use tokio::sync::Notify;
use upstream::gw::*;
use upstream::*;

const PIECES: &[&str] = &["Hé", "llo, wö", "rld — ", "naïve café ", "✓ 🦀", " done.", " 日本語のテキスト"];
const CHUNKINGS: [Chunking; 4] = [Chunking::Whole, Chunking::Awkward, Chunking::Bytes(1), Chunking::Bytes(7)];

type Normal = (Option<String>, Option<Value>, Vec<String>);

/// The events with their model text taken out: text deltas (which redaction's hold-back may
/// redistribute across events, or move into the closing event) are dropped and text fields removed.
/// Everything else (roles, keep-alive comments, tool calls, usage, event names, `[DONE]`) must
/// arrive unchanged and in order; the text itself is compared separately.
fn normalized(events: &[SseEvent]) -> Vec<Normal> {
    events
        .iter()
        .filter(|e| !is_text_delta(e))
        .map(|e| {
            let (name, mut data, comments) = e.normalized();
            if let Some(Value::Array(choices)) = data.as_mut().and_then(|d| d.get_mut("choices")) {
                for c in choices {
                    if let Some(Value::Object(d)) = c.get_mut("delta") {
                        d.remove("content");
                    }
                }
            }
            (name, data, comments)
        })
        .collect()
}

fn is_text_delta(e: &SseEvent) -> bool {
    let Some(v) = e.json() else { return false };
    match e.name.as_deref() {
        Some("response.output_text.delta") => true,
        Some("content_block_delta") => v.pointer("/delta/type").and_then(Value::as_str) == Some("text_delta"),
        _ => {
            v.pointer("/choices/0/finish_reason").is_some_and(Value::is_null)
                && v.pointer("/choices/0/delta")
                    .and_then(Value::as_object)
                    .is_some_and(|d| d.len() == 1 && d.contains_key("content"))
        }
    }
}

/// Sends `sent` through the gateway under every chunking and checks the client gets the same events.
async fn passthrough(path: &str, body: Value, sent: &str, text_of: fn(&[SseEvent]) -> String) {
    let (up, gw) = setup("").await;
    let want = parse_sse(sent);
    for chunking in CHUNKINGS {
        let mut reply = Reply::sse(sent, chunking);
        if chunking == Chunking::Bytes(1) {
            // Thousands of one-byte chunks: no pacing needed to make them arrive apart.
            reply = reply.with_chunk_delay(Duration::ZERO);
        }
        up.push(reply);
        let g = call(&gw, path, &body).await;
        assert_eq!(g.status, 200, "{path} {chunking:?}: {}", g.text);
        assert!(g.header("content-type").is_some_and(|c| c.starts_with("text/event-stream")), "{path} {chunking:?}");
        assert!(g.header("x-request-id").is_some());
        let got = parse_sse(&g.text);
        assert_eq!(
            normalized(&got),
            normalized(&want),
            "{path} {chunking:?}: the client gets the provider's events (text compared below)"
        );
        assert_eq!(text_of(&got), PIECES.concat(), "{path} {chunking:?}: text");
    }
    assert_eq!(up.count(), CHUNKINGS.len());
    assert!(up.requests().iter().all(|r| r.json()["stream"] == true));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chat_completions_sse_passthrough_any_chunking() {
    let sent = chat_sse(PIECES, "gpt-4o");
    let events = parse_sse(&sent);
    assert_eq!(
        events.iter().filter(|e| e.comments == vec![" keep-alive".to_owned()]).count(),
        2,
        "fixture has keep-alives"
    );
    passthrough("/v1/chat/completions", chat_body("gpt-4o", true), &sent, chat_stream_text).await;
    // The normalised comparison above covers [DONE] and the comments; spell them out anyway.
    let (up, gw) = setup("").await;
    up.push(Reply::sse(&sent, Chunking::Awkward));
    let g = call(&gw, "/v1/chat/completions", &chat_body("gpt-4o", true)).await;
    let got = parse_sse(&g.text);
    assert_eq!(got.last().and_then(|e| e.data.as_deref()), Some("[DONE]"), "[DONE] is the last event");
    assert_eq!(
        got.iter().filter(|e| e.comments.iter().any(|c| c.trim() == "keep-alive")).count(),
        2,
        "keep-alive comments are preserved"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn responses_sse_passthrough_any_chunking() {
    let sent = responses_sse(PIECES, "gpt-4o");
    passthrough("/v1/responses", responses_body("gpt-4o", true), &sent, responses_stream_text).await;
    let names: Vec<_> = parse_sse(&sent).into_iter().filter_map(|e| e.name).collect();
    assert!(
        names.contains(&"response.output_text.delta".to_owned())
            && names.last().map(String::as_str) == Some("response.completed")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anthropic_messages_sse_passthrough_any_chunking() {
    let sent = anthropic_sse(PIECES, "claude-sonnet-4");
    passthrough("/v1/messages", messages_body("claude-sonnet-4", true), &sent, anthropic_stream_text).await;
    let (up, gw) = setup("").await;
    up.push(Reply::sse(&sent, Chunking::Awkward));
    let g = call(&gw, "/v1/messages", &messages_body("claude-sonnet-4", true)).await;
    let names: Vec<_> = parse_sse(&g.text).into_iter().map(|e| e.name.unwrap_or_default()).collect();
    assert_eq!(names.first().map(String::as_str), Some("message_start"));
    assert_eq!(names.last().map(String::as_str), Some("message_stop"));
    assert_eq!(names.iter().filter(|n| *n == "ping").count(), 2, "ping events are preserved");
}

/// Asserts `ev` is a terminal error event in the format of `path`'s API.
fn assert_error_event(path: &str, ev: &SseEvent) {
    let v = ev.json().unwrap_or_else(|| panic!("the terminal event carries JSON: {ev:?}"));
    if path == "/v1/messages" {
        assert_eq!(ev.name.as_deref(), Some("error"), "Anthropic error events are named `error`: {ev:?}");
        assert_eq!(v["type"], "error", "{v}");
        assert!(v["error"]["type"].is_string() && v["error"]["message"].is_string(), "{v}");
    } else if path == "/v1/responses" {
        // The Responses API's own stream error: `event: error` with a flat {type, code, message}.
        assert_eq!(ev.name.as_deref(), Some("error"), "Responses error events are named `error`: {ev:?}");
        assert_eq!(v["type"], "error", "{v}");
        assert!(v["code"].is_string() && v["message"].is_string(), "{v}");
    } else {
        let e = &v["error"];
        assert!(e["message"].is_string() && e["type"].is_string() && e["code"].is_string(), "OpenAI error shape: {v}");
    }
}

/// Cuts `sent` after `keep` whole events plus half of the next one.
fn cut_mid_event(sent: &str, keep: usize) -> (String, String) {
    let events = parse_sse(sent);
    let whole: String = events[..keep].iter().map(|e| e.raw.as_str()).collect();
    let next = &events[keep].raw;
    let half: String = next.chars().take(next.chars().count() / 2).collect();
    (whole, half)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broken_upstream_streams_end_with_a_terminal_error_event() {
    let (up, gw) = setup("").await;
    let cases: [(&str, Value, String, End); 4] = [
        ("/v1/chat/completions", chat_body("gpt-4o", true), chat_sse(PIECES, "gpt-4o"), End::Clean),
        ("/v1/chat/completions", chat_body("gpt-4o", true), chat_sse(PIECES, "gpt-4o"), End::Abort),
        ("/v1/responses", responses_body("gpt-4o", true), responses_sse(PIECES, "gpt-4o"), End::Clean),
        ("/v1/messages", messages_body("claude-sonnet-4", true), anthropic_sse(PIECES, "claude-sonnet-4"), End::Abort),
    ];
    for (path, body, sent, end) in cases {
        let keep = 4;
        let (whole, half) = cut_mid_event(&sent, keep);
        up.push(Reply::sse_chunks(vec![whole.clone(), half.clone()]).with_end(end));
        let g = call(&gw, path, &body).await;
        assert_eq!(g.status, 200, "{path}: the stream had started");
        let got = parse_sse(&g.text); // panics when the stream is torn mid-event
                                      // Text the redaction hold-back still held when the upstream broke goes out (redacted) just
                                      // before the error event; the structure of the events before the break is intact.
        let (last, before) = got.split_last().expect("at least the error event");
        assert_eq!(
            normalized(before),
            normalized(&parse_sse(&whole)),
            "{path} {end:?}: events before the break arrive intact; got {got:#?}"
        );
        assert_error_event(path, last);
        assert!(!g.text.contains("[DONE]"), "a broken stream does not pretend to be complete");
        // The gateway keeps serving.
        up.push(Reply::sse(&sent, Chunking::Whole));
        let g = call(&gw, path, &body).await;
        assert_eq!(
            normalized(&parse_sse(&g.text)),
            normalized(&parse_sse(&sent)),
            "{path}: the next stream is served normally"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_upstream_event_ends_the_stream_with_an_error_event() {
    let (up, gw) = setup("[limits]\nmax_response_body_bytes = 4096\n").await;
    let huge = "A".repeat(20_000);
    let marker = "OVERSIZED-EVENT-MARKER";
    for (path, body, sent) in [
        ("/v1/chat/completions", chat_body("gpt-4o", true), chat_sse(&["ok ", marker, &huge, " end"], "gpt-4o")),
        (
            "/v1/messages",
            messages_body("claude-sonnet-4", true),
            anthropic_sse(&["ok ", marker, &huge, " end"], "claude-sonnet-4"),
        ),
    ] {
        up.push(Reply::sse(&sent, Chunking::Bytes(1000)));
        let g = call(&gw, path, &body).await;
        assert_eq!(g.status, 200);
        let got = parse_sse(&g.text);
        let last = got.last().expect("some events");
        assert_error_event(path, last);
        assert!(!g.text.contains(&huge[..5000]), "{path}: the oversized event is not delivered");
        assert!(!g.text.contains(" end"), "{path}: nothing after the break is delivered");
        // The gateway keeps serving.
        let small =
            if path == "/v1/messages" { anthropic_sse(PIECES, "claude-sonnet-4") } else { chat_sse(PIECES, "gpt-4o") };
        up.push(Reply::sse(&small, Chunking::Awkward));
        let g = call(&gw, path, &body).await;
        assert_eq!(normalized(&parse_sse(&g.text)), normalized(&parse_sse(&small)));
    }
}

/// Reads from `stream` until `pred(buffer)` holds; fails after 10 s.
async fn read_until(
    stream: &mut (impl futures_util::Stream<Item = reqwest::Result<bytes::Bytes>> + Unpin),
    buf: &mut Vec<u8>,
    pred: impl Fn(&[u8]) -> bool,
) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !pred(buf) {
        match tokio::time::timeout_at(deadline, stream.next()).await {
            Err(_) => {
                panic!("nothing more reached the client within 10 s; got so far: {:?}", String::from_utf8_lossy(buf))
            }
            Ok(None) => return,
            Ok(Some(chunk)) => buf.extend_from_slice(&chunk.expect("stream chunk")),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn first_event_reaches_the_client_before_the_upstream_finishes() {
    let (up, gw) = setup("").await;
    for (path, body, sent) in [
        ("/v1/chat/completions", chat_body("gpt-4o", true), chat_sse(PIECES, "gpt-4o")),
        ("/v1/messages", messages_body("claude-sonnet-4", true), anthropic_sse(PIECES, "claude-sonnet-4")),
    ] {
        let events: Vec<String> = parse_sse(&sent).into_iter().map(|e| e.raw).collect();
        let release = Arc::new(Notify::new());
        // The provider writes the first event, then waits until the test has seen it arrive.
        up.push(Reply::sse_chunks(events.clone()).with_gate(0, release.clone()));
        let resp = post(&client(), &gw, path, auth_for(path, ALICE), &body).send().await.expect("stream request");
        assert_eq!(resp.status(), 200);
        let mut stream = resp.bytes_stream();
        let mut buf = Vec::new();
        read_until(&mut stream, &mut buf, |b| b.windows(2).any(|w| w == b"\n\n")).await;
        let first =
            parse_sse(&String::from_utf8_lossy(&buf[..buf.windows(2).position(|w| w == b"\n\n").unwrap_or(0) + 2]));
        assert_eq!(
            normalized(&first),
            normalized(&parse_sse(&events[0])),
            "{path}: the first event arrived while the provider was still writing"
        );
        assert_eq!(buf.len(), events[0].len(), "{path}: nothing beyond the first event can have arrived yet");
        release.notify_one();
        read_until(&mut stream, &mut buf, |_| false).await;
        let got = parse_sse(&String::from_utf8_lossy(&buf));
        assert_eq!(normalized(&got), normalized(&parse_sse(&sent)), "{path}: then the rest");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_stream_arrives_whole_and_in_order() {
    // Far more events than the gateway's channel holds: the pump must wait for the client, never
    // drop or reorder.
    let (up, gw) = setup("").await;
    let many: Vec<String> = (0..2000).map(|i| format!("token-{i:04} ")).collect();
    let pieces: Vec<&str> = many.iter().map(String::as_str).collect();
    let sent = chat_sse(&pieces, "gpt-4o");
    up.push(Reply::sse(&sent, Chunking::Bytes(64 * 1024)));
    let g = call(&gw, "/v1/chat/completions", &chat_body("gpt-4o", true)).await;
    let got = parse_sse(&g.text);
    assert_eq!(chat_stream_text(&got), many.concat());
    assert_eq!(normalized(&got), normalized(&parse_sse(&sent)));
}

#[test]
fn the_awkward_chunking_really_is_awkward() {
    // Guards the fixture: the cuts fall inside multi-byte characters, inside `data:` prefixes and
    // between the two newlines that end an event.
    let sent = chat_sse(PIECES, "gpt-4o");
    let chunks = split(sent.as_bytes(), Chunking::Awkward);
    assert_eq!(chunks.concat(), sent.as_bytes());
    assert!(chunks.iter().any(|c| std::str::from_utf8(c).is_err()), "some chunk ends inside a UTF-8 character");
    assert!(chunks.iter().any(|c| c.starts_with(b"a: ")), "some chunk starts inside a `data:` prefix");
    assert!(
        chunks.iter().any(|c| c.as_ref() == b"\n" || c.starts_with(b"\ndat")),
        "some chunk starts between an event's two newlines"
    );
    assert!(chunks.len() > parse_sse(&sent).len() * 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_upstream_stream_ends_with_a_terminal_error_event() {
    let (up, gw) = setup("[limits]\nstream_idle_timeout_ms = 1000\n").await;
    for (path, body, sent) in [
        ("/v1/chat/completions", chat_body("gpt-4o", true), chat_sse(PIECES, "gpt-4o")),
        ("/v1/messages", messages_body("claude-sonnet-4", true), anthropic_sse(PIECES, "claude-sonnet-4")),
    ] {
        let events: Vec<String> = parse_sse(&sent).into_iter().map(|e| e.raw).collect();
        // The provider sends one event and then goes silent (never released).
        let never = Arc::new(Notify::new());
        up.push(Reply::sse_chunks(events.clone()).with_gate(0, never));
        let g = call(&gw, path, &body).await;
        assert_eq!(g.status, 200);
        let got = parse_sse(&g.text);
        assert_eq!(got.len(), 2, "{path}: the first event, then the error: {got:#?}");
        assert_eq!(got[0].normalized(), parse_sse(&events[0])[0].normalized());
        assert_error_event(path, &got[1]);
    }
}
