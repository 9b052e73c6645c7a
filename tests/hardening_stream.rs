//! Hardening of streamed responses (issue 13): every string a client can receive passes the
//! scanner, whatever field carries it and however it is split across events; bytes that are not SSE
//! and streams that end without their terminal event end with the provider's error event; a stream
//! is counted in flight and audited once, when it ends.
//!
//! The real gateway runs against a stand-in provider that streams the real wire formats.

mod common;
mod upstream;

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use serde_json::{json, Value};
use tokio::sync::Notify;
use upstream::gw::*;
use upstream::*;

const SECRET: &str = "AKIAZ7Q3M4N5P6R2T8VW";
/// The secret's two halves, sent in two events.
const HALVES: [&str; 2] = ["The key is AKIAZ7Q3", "M4N5P6R2T8VW, sorry."];
const REDACTED: &str = "The key is [REDACTED:aws_access_key_id], sorry.";

fn data(v: &Value) -> String {
    format!("data: {v}\n\n")
}

fn named(name: &str, v: &Value) -> String {
    format!("event: {name}\ndata: {v}\n\n")
}

fn chunk(delta: Value) -> Value {
    json!({"id": "chatcmpl-h", "object": "chat.completion.chunk", "created": 1_700_000_000, "model": "gpt-4o",
           "choices": [{"index": 0, "delta": delta, "logprobs": null, "finish_reason": null}]})
}

/// A chat stream whose two middle chunks carry `wrap(half)` as their delta.
fn chat_stream(wrap: impl Fn(&str) -> Value) -> String {
    let mut s = data(&chunk(json!({"role": "assistant", "content": ""})));
    for h in HALVES {
        s += &data(&chunk(wrap(h)));
    }
    s += &data(&json!({"id": "chatcmpl-h", "object": "chat.completion.chunk", "model": "gpt-4o",
                       "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}));
    s + "data: [DONE]\n\n"
}

/// An Anthropic stream with one block of `block_type` whose deltas carry `wrap(half)`.
fn anthropic_stream(block_type: &str, wrap: impl Fn(&str) -> Value) -> String {
    let mut s = named(
        "message_start",
        &json!({"type": "message_start", "message": {"id": "msg_h", "type": "message",
        "role": "assistant", "model": "claude-sonnet-4", "content": [], "stop_reason": null, "usage": {"input_tokens": 1, "output_tokens": 1}}}),
    );
    s += &named(
        "content_block_start",
        &json!({"type": "content_block_start", "index": 0, "content_block": {"type": block_type, block_type: ""}}),
    );
    for h in HALVES {
        s += &named("content_block_delta", &json!({"type": "content_block_delta", "index": 0, "delta": wrap(h)}));
    }
    s += &named("content_block_stop", &json!({"type": "content_block_stop", "index": 0}));
    s += &named(
        "message_delta",
        &json!({"type": "message_delta", "delta": {"stop_reason": "end_turn"}, "usage": {"output_tokens": 3}}),
    );
    s + &named("message_stop", &json!({"type": "message_stop"}))
}

/// A Responses stream whose `response.<kind>.delta` events carry the halves, then its `.done`.
fn responses_stream(kind: &str, index_field: &str) -> String {
    let mut s = named(
        "response.created",
        &json!({"type": "response.created", "response": {"id": "resp_h", "status": "in_progress", "output": []}}),
    );
    let delta_type = format!("response.{kind}.delta");
    for h in HALVES {
        s += &named(
            &delta_type,
            &json!({"type": delta_type, "item_id": "rs_h", "output_index": 0, index_field: 0, "delta": h, "obfuscation": "x1"}),
        );
    }
    let done = format!("response.{kind}.done");
    s += &named(
        &done,
        &json!({"type": done, "item_id": "rs_h", "output_index": 0, index_field: 0, "text": HALVES.concat()}),
    );
    s + &named(
        "response.completed",
        &json!({"type": "response.completed", "response": {"id": "resp_h", "status": "completed"}}),
    )
}

/// The JSON data of every event of a delivered stream, with its event name.
fn delivered(text: &str) -> Vec<(Option<String>, Value)> {
    parse_sse(text).into_iter().filter_map(|e| e.json().map(|v| (e.name.clone(), v))).collect()
}

/// What a client assembles from the values at `pointer` of the events `pick` selects.
fn assembled(text: &str, pick: impl Fn(&Option<String>, &Value) -> bool, pointer: &str) -> String {
    delivered(text)
        .iter()
        .filter(|(n, v)| pick(n, v))
        .filter_map(|(_, v)| v.pointer(pointer).and_then(Value::as_str).map(str::to_owned))
        .collect()
}

fn is_error_event(path: &str, name: &Option<String>, v: &Value) -> bool {
    match path {
        "/v1/chat/completions" => v["error"].is_object(),
        _ => name.as_deref() == Some("error") && v["type"] == "error",
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_secret_split_across_events_in_any_streamed_field_is_redacted() {
    let (up, gw) = setup("").await;
    type Case = (&'static str, &'static str, Value, String, fn(&Option<String>, &Value) -> bool, &'static str);
    let chat: fn(&Option<String>, &Value) -> bool = |_, v| v["choices"][0].is_object();
    let block: fn(&Option<String>, &Value) -> bool = |_, v| v["type"] == "content_block_delta";
    let cases: Vec<Case> = vec![
        (
            "chat delta.refusal",
            "/v1/chat/completions",
            chat_body("gpt-4o", true),
            chat_stream(|h| json!({"refusal": h})),
            chat,
            "/choices/0/delta/refusal",
        ),
        (
            "chat delta.reasoning_content",
            "/v1/chat/completions",
            chat_body("gpt-4o", true),
            chat_stream(|h| json!({"reasoning_content": h})),
            chat,
            "/choices/0/delta/reasoning_content",
        ),
        (
            "chat content as an array of parts",
            "/v1/chat/completions",
            chat_body("gpt-4o", true),
            chat_stream(|h| json!({"content": [{"type": "text", "text": h}]})),
            chat,
            "/choices/0/delta/content/0/text",
        ),
        (
            "chat unknown nested field",
            "/v1/chat/completions",
            chat_body("gpt-4o", true),
            chat_stream(|h| json!({"x_vendor": {"note": h}})),
            chat,
            "/choices/0/delta/x_vendor/note",
        ),
        (
            "anthropic thinking_delta",
            "/v1/messages",
            messages_body("claude-sonnet-4", true),
            anthropic_stream("thinking", |h| json!({"type": "thinking_delta", "thinking": h})),
            block,
            "/delta/thinking",
        ),
        (
            "anthropic unknown delta type",
            "/v1/messages",
            messages_body("claude-sonnet-4", true),
            anthropic_stream("text", |h| json!({"type": "x_vendor_delta", "note": h})),
            block,
            "/delta/note",
        ),
        (
            "responses reasoning summary",
            "/v1/responses",
            responses_body("gpt-4o", true),
            responses_stream("reasoning_summary_text", "summary_index"),
            |n, _| n.as_deref() == Some("response.reasoning_summary_text.delta"),
            "/delta",
        ),
        (
            "responses reasoning text",
            "/v1/responses",
            responses_body("gpt-4o", true),
            responses_stream("reasoning_text", "content_index"),
            |n, _| n.as_deref() == Some("response.reasoning_text.delta"),
            "/delta",
        ),
        (
            "responses refusal",
            "/v1/responses",
            responses_body("gpt-4o", true),
            responses_stream("refusal", "content_index"),
            |n, _| n.as_deref() == Some("response.refusal.delta"),
            "/delta",
        ),
    ];
    for (what, path, body, sent, pick, pointer) in cases {
        assert!(sent.contains(HALVES[0]) && sent.contains(HALVES[1]), "{what}: the fixture splits the secret");
        for chunking in [Chunking::Whole, Chunking::Awkward] {
            up.push(Reply::sse(&sent, chunking));
            let g = call(&gw, path, &body).await;
            assert_eq!(g.status, 200, "{what}: {}", g.text);
            assert!(
                !g.text.contains("AKIAZ7Q3"),
                "{what} {chunking:?}: no part of the secret reaches the client: {}",
                g.text
            );
            assert_eq!(assembled(&g.text, pick, pointer), REDACTED, "{what} {chunking:?}: {}", g.text);
            assert!(
                !delivered(&g.text).iter().any(|(n, v)| is_error_event(path, n, v)),
                "{what}: a complete stream: {}",
                g.text
            );
        }
    }
    // An unknown field that is whole in each event is redacted whole, in every event.
    let sent = chat_stream(|h| json!({"content": h}))
        .replace("\"model\":\"gpt-4o\"", &format!("\"model\":\"gpt-4o\",\"x_debug\":\"leak {SECRET}\""));
    assert!(sent.contains(SECRET));
    up.push(Reply::sse(&sent, Chunking::Whole));
    let g = call(&gw, "/v1/chat/completions", &chat_body("gpt-4o", true)).await;
    assert!(!g.text.contains(SECRET), "{}", g.text);
    assert_eq!(chat_stream_text(&parse_sse(&g.text)), REDACTED);
    assert!(g.text.contains("leak [REDACTED:aws_access_key_id]"), "{}", g.text);
}

/// Chat events carrying the tail of a stream after something that is not SSE.
fn with_garbage(garbage: &str) -> String {
    let mut s = data(&chunk(json!({"role": "assistant", "content": "first words "})));
    s += garbage;
    s += &data(&chunk(json!({"content": "AFTER-THE-GARBAGE"})));
    s + "data: [DONE]\n\n"
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bytes_that_are_not_sse_end_the_stream_with_an_error_event() {
    let (up, gw) = setup("").await;
    for garbage in [
        "<html><body>502 Bad Gateway</body></html>\n\n",
        "{\"error\": {\"message\": \"upstream exploded\"}}\n\n",
        "data: plain text, not the provider's JSON\n\n",
        "data: \u{1}\n\n\u{0}\u{0}binary\n\n",
    ] {
        up.push(Reply::sse(&with_garbage(garbage), Chunking::Awkward));
        let g = call(&gw, "/v1/chat/completions", &chat_body("gpt-4o", true)).await;
        assert_eq!(g.status, 200);
        let events = parse_sse(&g.text);
        let (last, before) = events.split_last().expect("events");
        let v = last.json().expect("the last event is JSON");
        assert!(
            v["error"]["message"].is_string() && v["error"]["code"] == "upstream_stream_error",
            "{garbage:?}: {}",
            g.text
        );
        assert_eq!(chat_stream_text(before), "first words ", "{garbage:?}: what came before is delivered");
        for bad in ["<html", "upstream exploded", "plain text", "binary", "AFTER-THE-GARBAGE", "[DONE]"] {
            assert!(!g.text.contains(bad), "{garbage:?}: `{bad}` reached the client: {}", g.text);
        }
    }
    // What a legitimate provider sends besides events passes: comments, blank lines, a named ping
    // without data, an id. A comment's text reaches the client too, so it is scanned.
    let mut sent = String::from(": ping\n\n\n\nevent: ping\n\n");
    sent += &data(&chunk(json!({"role": "assistant", "content": "Hello"})));
    sent += &format!(": debug {SECRET}\n\nid: 7\n");
    sent += &data(&chunk(json!({"content": " world"})));
    sent += "data: [DONE]\n\n";
    up.push(Reply::sse(&sent, Chunking::Bytes(5)));
    let g = call(&gw, "/v1/chat/completions", &chat_body("gpt-4o", true)).await;
    let events = parse_sse(&g.text);
    assert_eq!(chat_stream_text(&events), "Hello world", "{}", g.text);
    assert_eq!(events.last().and_then(|e| e.data.as_deref()), Some("[DONE]"), "{}", g.text);
    assert!(events.iter().any(|e| e.comments == [" ping"]), "{}", g.text);
    assert!(!g.text.contains(SECRET) && g.text.contains(": debug [REDACTED:aws_access_key_id]"), "{}", g.text);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_that_ends_without_its_terminal_event_ends_with_an_error_event() {
    let (up, gw) = setup("").await;
    let pieces = ["Hello ", "there, ", "truncated"];
    let cases = [
        ("/v1/chat/completions", chat_body("gpt-4o", true), chat_sse(&pieces, "gpt-4o"), "data: [DONE]\n\n".to_owned()),
        (
            "/v1/messages",
            messages_body("claude-sonnet-4", true),
            anthropic_sse(&pieces, "claude-sonnet-4"),
            named("message_stop", &json!({"type": "message_stop"})),
        ),
    ];
    for (path, body, sent, terminal) in cases {
        assert!(sent.ends_with(&terminal), "fixture");
        let cut = &sent[..sent.len() - terminal.len()];
        up.push(Reply::sse(cut, Chunking::Awkward));
        let g = call(&gw, path, &body).await;
        let events = delivered(&g.text);
        let (name, v) = events.last().expect("events");
        assert!(is_error_event(path, name, v), "{path}: a truncated stream ends with an error event: {}", g.text);
        assert_eq!(events.iter().filter(|(n, v)| is_error_event(path, n, v)).count(), 1);
        // The same stream, complete, has no error event.
        up.push(Reply::sse(&sent, Chunking::Awkward));
        let g = call(&gw, path, &body).await;
        assert!(!delivered(&g.text).iter().any(|(n, v)| is_error_event(path, n, v)), "{path}: {}", g.text);
    }
    let sent = responses_sse(&pieces, "gpt-4o");
    let cut = &sent[..sent.find("event: response.completed").expect("fixture")];
    up.push(Reply::sse(cut, Chunking::Whole));
    let g = call(&gw, "/v1/responses", &responses_body("gpt-4o", true)).await;
    let events = delivered(&g.text);
    let (name, v) = events.last().expect("events");
    assert!(is_error_event("/v1/responses", name, v), "{}", g.text);
    // The provider's own error event ends a stream: nothing is added to it.
    let mut sent = anthropic_sse(&pieces, "claude-sonnet-4");
    sent.truncate(sent.find("event: content_block_stop").expect("fixture"));
    sent += &named("error", &json!({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}));
    up.push(Reply::sse(&sent, Chunking::Whole));
    let g = call(&gw, "/v1/messages", &messages_body("claude-sonnet-4", true)).await;
    let errors: Vec<Value> =
        delivered(&g.text).into_iter().filter(|(n, v)| is_error_event("/v1/messages", n, v)).map(|(_, v)| v).collect();
    assert_eq!(errors.len(), 1, "{}", g.text);
    assert_eq!(errors[0]["error"]["type"], "overloaded_error");
}

/// The gateway's `firebreak_requests_in_flight` gauge.
async fn in_flight(gw: &common::Gateway) -> i64 {
    let (status, body) = gw.admin(reqwest::Method::GET, "/metrics", None).await;
    assert_eq!(status, 200);
    let text = body.as_str().unwrap_or_default().to_owned();
    text.lines()
        .find_map(|l| l.strip_prefix("firebreak_requests_in_flight "))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("no in-flight gauge in {text}"))
}

/// The audit records of one request.
fn records_of(gw: &common::Gateway, request_id: &str) -> Vec<Value> {
    std::fs::read_to_string(gw.dir.join("audit.jsonl"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|r| r["request_id"] == request_id)
        .collect()
}

/// Waits (bounded) until `pred` holds for the request's records and the in-flight gauge.
async fn wait_for(gw: &common::Gateway, request_id: &str, pred: impl Fn(&[Value], i64) -> bool) -> Vec<Value> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let records = records_of(gw, request_id);
        let n = in_flight(gw).await;
        if pred(&records, n) {
            return records;
        }
        assert!(tokio::time::Instant::now() < deadline, "in flight {n}, records {records:#?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_is_in_flight_and_audited_once_when_it_ends() {
    let (up, gw) = setup("").await;
    // The provider streams a secret split across two events, but waits after its first event until
    // the test lets it go on.
    let events: Vec<String> = parse_sse(&chat_stream(|h| json!({"refusal": h}))).into_iter().map(|e| e.raw).collect();
    for (release_by_client, want_end) in [(false, "complete"), (true, "client_gone")] {
        let gate = Arc::new(Notify::new());
        up.push(Reply::sse_chunks(events.clone()).with_gate(0, gate.clone()));
        let resp = post(&client(), &gw, "/v1/chat/completions", Auth::Bearer(ALICE), &chat_body("gpt-4o", true))
            .send()
            .await
            .expect("stream request");
        let request_id = resp.headers()["x-request-id"].to_str().expect("request id").to_owned();
        let mut stream = resp.bytes_stream();
        let first = tokio::time::timeout(Duration::from_secs(10), stream.next()).await.expect("first event in time");
        assert!(first.is_some(), "the first event arrives");
        // Headers and the first event are out; the stream is not over.
        assert_eq!(in_flight(&gw).await, 1, "a stream counts as in flight until it ends");
        assert!(records_of(&gw, &request_id).is_empty(), "no audit record before the stream ends");
        if release_by_client {
            // The client goes away while the provider is silent: the stream ends at once.
            drop(stream);
        } else {
            gate.notify_one();
            let mut rest = Vec::new();
            while let Some(c) = tokio::time::timeout(Duration::from_secs(10), stream.next()).await.expect("in time") {
                rest.extend_from_slice(&c.expect("chunk"));
            }
            assert!(String::from_utf8_lossy(&rest).contains("[REDACTED:aws_access_key_id]"));
        }
        let records = wait_for(&gw, &request_id, |r, n| !r.is_empty() && n == 0).await;
        gate.notify_one();
        // Written once, and it was not written before the end: give a second record the chance to
        // appear, bounded by the next request's record (the writer keeps order).
        up.push(Reply::json(&chat_json("ok", "gpt-4o")));
        let g = call(&gw, "/v1/chat/completions", &chat_body("gpt-4o", false)).await;
        let next = g.header("x-request-id").expect("request id").to_owned();
        wait_for(&gw, &next, |r, _| !r.is_empty()).await;
        let records_now = records_of(&gw, &request_id);
        assert_eq!(records_now.len(), 1, "one record per stream: {records_now:#?}");
        let r = &records[0];
        assert_eq!(r["stream"], true);
        assert_eq!(r["stream_end"], want_end, "{r}");
        if want_end == "complete" {
            assert_eq!(r["redactions"]["aws_access_key_id"], 1, "the stream's redactions are in its record: {r}");
        }
        assert!(!r.to_string().contains("AKIAZ7Q3"), "never the secret: {r}");
    }
}

/// Token data (`logprobs`) spells the model's text one token at a time, where no redaction can reach
/// a secret split across tokens: it never reaches the client, in a whole body or a stream, while a
/// `logprobs` flag or an empty list passes as sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_data_never_reaches_the_client() {
    let (up, gw) = setup("").await;
    let tokens = |parts: &[&str]| {
        json!({"content": parts.iter().map(|t| json!({"token": t, "logprob": -0.1,
            "bytes": t.bytes().collect::<Vec<u8>>(), "top_logprobs": []})).collect::<Vec<_>>(), "refusal": null})
    };
    // A whole chat body whose text is clean but whose tokens spell the key (a hostile upstream),
    // and one whose text and tokens both carry it.
    for content in ["All fine.", HALVES.concat().as_str()] {
        up.push(Reply::json(&json!({"id": "chatcmpl-t", "object": "chat.completion", "created": 1_700_000_000,
            "model": "gpt-4o", "choices": [{"index": 0, "message": {"role": "assistant", "content": content},
            "logprobs": tokens(&["AKIA", "Z7Q3", "M4N5", "P6R2", "T8VW"]), "finish_reason": "stop"}]})));
        let g = call(&gw, "/v1/chat/completions", &chat_body("gpt-4o", false)).await;
        assert_eq!(g.status, 200, "{}", g.text);
        let v = g.json();
        assert!(v["choices"][0]["logprobs"].is_null(), "token data delivered: {}", g.text);
        assert!(!g.text.contains("Z7Q3") && !g.text.contains(SECRET), "{}", g.text);
    }
    // A stream: each chunk's tokens.
    let mut s = String::new();
    for (i, h) in HALVES.iter().enumerate() {
        let mut c = chunk(json!({"content": h}));
        c["choices"][0]["logprobs"] = tokens(&[["AKIAZ7Q3", "M4N5P6R2T8VW"][i]]);
        s += &data(&c);
    }
    s += &data(&json!({"id": "chatcmpl-h", "object": "chat.completion.chunk", "model": "gpt-4o",
                       "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}));
    s += "data: [DONE]\n\n";
    up.push(Reply::sse(&s, Chunking::Awkward));
    let g = call(&gw, "/v1/chat/completions", &chat_body("gpt-4o", true)).await;
    assert_eq!(g.status, 200, "{}", g.text);
    assert!(!g.text.contains("Z7Q3") && !g.text.contains("P6R2"), "token data delivered: {}", g.text);
    assert_eq!(
        assembled(&g.text, |_, v| v["choices"][0].is_object(), "/choices/0/delta/content"),
        REDACTED,
        "{}",
        g.text
    );
    // No token data: a flag and the Responses API's empty list pass unchanged.
    up.push(Reply::json(&json!({"id": "chatcmpl-t", "object": "chat.completion", "model": "gpt-4o",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "fine"}, "logprobs": null,
        "finish_reason": "stop"}], "logprobs_flag_echo": true})));
    let g = call(&gw, "/v1/chat/completions", &chat_body("gpt-4o", false)).await;
    assert_eq!(g.json()["choices"][0]["message"]["content"], "fine", "{}", g.text);
}
