//! The tool-call filter's tests (whole bodies and streams of every format).

use serde_json::json;

use super::*;
use crate::protocol::Endpoint;

/// Allows tool `a` with any arguments except ones mentioning "evil".
struct OnlyA;
impl CallCheck for OnlyA {
    fn check_name(&self, name: &str) -> Option<CallRefusal> {
        (name != "a")
            .then(|| CallRefusal { rule: crate::rules::Rule::ToolsNotAllowed, detail: "tool not allowed".into() })
    }
    fn check_args(&self, _: &str, args: &str) -> Option<CallRefusal> {
        args.contains("evil")
            .then(|| CallRefusal { rule: crate::rules::Rule::ToolsArgument, detail: "argument `x` not allowed".into() })
    }
}

fn chat_delta(index: u64, id: Option<&str>, name: Option<&str>, args: &str) -> Vec<u8> {
    let mut f = json!({"arguments": args});
    if let Some(n) = name {
        f["name"] = json!(n);
    }
    let mut c = json!({"index": index, "function": f});
    if let Some(i) = id {
        c["id"] = json!(i);
    }
    format!(
        "data: {}\n\n",
        json!({"id": "c", "object": "chat.completion.chunk", "model": "m",
        "choices": [{"index": 0, "delta": {"tool_calls": [c]}, "finish_reason": null}]})
    )
    .into_bytes()
}

fn finish() -> Vec<u8> {
    b"data: {\"id\":\"c\",\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"tool_calls\"}]}\n\n".to_vec()
}

fn released(a: EventAction) -> String {
    match a {
        EventAction::Replace(v) => v.iter().map(|b| String::from_utf8_lossy(b).into_owned()).collect(),
        EventAction::Drop => String::new(),
        EventAction::Forward => "<forward>".into(),
    }
}

#[test]
fn chat_json_refuses_by_name_and_by_arguments() {
    let mut v = json!({"choices":[{"index":0,"finish_reason":"tool_calls","message":{"role":"assistant","content":null,
        "tool_calls":[{"id":"1","type":"function","function":{"name":"b","arguments":"{}"}},
                      {"id":"2","type":"function","function":{"name":"a","arguments":"{\"x\":\"evil\"}"}}]}}]});
    let r = filter_json(Endpoint::ChatCompletions, &mut v, &OnlyA).refused;
    assert_eq!(r.iter().map(|r| r.why.rule.as_str()).collect::<Vec<_>>(), vec!["tools.not_allowed", "tools.argument"]);
    assert!(v.pointer("/choices/0/message/tool_calls").is_none());
    assert_eq!(v.pointer("/choices/0/finish_reason"), Some(&json!("stop")));
}

#[test]
fn chat_stream_holds_calls_until_complete_then_releases_whole() {
    let mut f = StreamFilter::new(Endpoint::ChatCompletions, 1 << 20);
    assert_eq!(f.on_event(&chat_delta(0, Some("x"), Some("b"), ""), &OnlyA), EventAction::Drop);
    assert_eq!(f.on_event(&chat_delta(0, None, None, "{\"u\":"), &OnlyA), EventAction::Drop);
    assert_eq!(f.on_event(&chat_delta(1, Some("y"), Some("a"), "{\"q\":"), &OnlyA), EventAction::Drop);
    assert_eq!(f.on_event(&chat_delta(1, None, None, "1}"), &OnlyA), EventAction::Drop);
    let out = released(f.on_event(&finish(), &OnlyA));
    assert!(!out.contains("\"name\":\"b\""), "{out}");
    assert!(
        out.contains("\"arguments\":\"{\\\"q\\\":1}\"") && out.contains("\"index\":0"),
        "allowed call whole, renumbered: {out}"
    );
    assert!(out.contains("`b`"), "notice: {out}");
    assert_eq!(f.refused.len(), 1);
}

#[test]
fn chat_stream_refuses_by_arguments() {
    let mut f = StreamFilter::new(Endpoint::ChatCompletions, 1 << 20);
    f.on_event(&chat_delta(0, Some("x"), Some("a"), "{\"x\":\"ev"), &OnlyA);
    f.on_event(&chat_delta(0, None, None, "il\"}"), &OnlyA);
    let out = released(f.on_event(&finish(), &OnlyA));
    assert!(!out.contains("evil") && !out.contains("tool_calls\":["), "{out}");
    assert!(out.contains("\"finish_reason\":\"stop\""), "{out}");
}

#[test]
fn anthropic_stream_holds_then_checks_arguments() {
    let mut f = StreamFilter::new(Endpoint::Messages, 1 << 20);
    let start = b"event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":1,\"content_block\":{\"type\":\"tool_use\",\"id\":\"t\",\"name\":\"a\",\"input\":{}}}\n\n";
    assert_eq!(f.on_event(start, &OnlyA), EventAction::Drop);
    let delta = b"event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":1,\"delta\":{\"type\":\"input_json_delta\",\"partial_json\":\"{\\\"x\\\":\\\"evil\\\"}\"}}\n\n";
    assert_eq!(f.on_event(delta, &OnlyA), EventAction::Drop);
    let stop = b"event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":1}\n\n";
    let out = released(f.on_event(stop, &OnlyA));
    assert!(!out.contains("evil") && out.contains("text_delta") && out.contains("content_block_stop"), "{out}");
    let md = b"event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"tool_use\"}}\n\n";
    assert!(released(f.on_event(md, &OnlyA)).contains("end_turn"));
}

#[test]
fn oversized_calls_are_refused() {
    let mut f = StreamFilter::new(Endpoint::ChatCompletions, 8);
    f.on_event(&chat_delta(0, Some("x"), Some("a"), "{\"q\":\"0123456789\"}"), &OnlyA);
    let out = released(f.on_event(&finish(), &OnlyA));
    assert!(out.contains("size limit") && !out.contains("0123456789"), "{out}");
}
