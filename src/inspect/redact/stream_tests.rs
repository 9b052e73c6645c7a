//! The stream redaction tests (every format, any chunking).

use proptest::prelude::*;
use serde_json::json;

use super::*;

fn scanner() -> Scanner {
    let rules = crate::inspect::catalog::builtin().unwrap().into_iter().filter(|(_, on)| *on).map(|(r, _)| r).collect();
    Scanner::new(rules, "[REDACTED:<rule-id>]").unwrap()
}

const TEXT: &str = "Sure. key AKIAZ7Q3M4N5P6R2T8VW, token ghp_8f3Kq2Lm9Xz4Vb7Nw1Rt6Yu0Pa5Sd3Fg2Hj4, \
    mail bob.smith@acme-corp.io, card 4111 1111 1111 1111 — and plain prose that must pass untouched: ünïcode 🦀.";

/// Splits `text` at the (sorted, char-aligned) cut points.
fn split(text: &str, cuts: &[usize]) -> Vec<String> {
    let mut out = Vec::new();
    let mut at = 0;
    for &c in cuts {
        let c = crate::inspect::scanner::floor(text, c).max(at);
        out.push(text[at..c].to_owned());
        at = c;
    }
    out.push(text[at..].to_owned());
    out
}

fn run(endpoint: Endpoint, events: Vec<String>, s: &Scanner) -> String {
    run_with(&mut StreamRedactor::new(endpoint), s, events)
}

fn texts(out: &str, endpoint: Endpoint) -> String {
    out.split("\n\n")
        .filter_map(|e| e.lines().find_map(|l| l.strip_prefix("data: ")).map(|d| (e, d)))
        .filter_map(|(e, d)| serde_json::from_str::<Value>(d).ok().map(|v| (e, v)))
        .filter_map(|(e, v)| match endpoint {
            Endpoint::ChatCompletions => {
                v.pointer("/choices/0/delta/content").and_then(Value::as_str).map(str::to_owned)
            }
            Endpoint::Messages => v.pointer("/delta/text").and_then(Value::as_str).map(str::to_owned),
            _ => e.contains("output_text.delta").then(|| v["delta"].as_str().unwrap_or("").to_owned()),
        })
        .collect()
}

fn events(endpoint: Endpoint, pieces: &[String]) -> Vec<String> {
    let mut ev = Vec::new();
    match endpoint {
        Endpoint::ChatCompletions => {
            for p in pieces {
                ev.push(format!(
                    "data: {}\n\n",
                    json!({"id": "c", "choices": [{"index": 0, "delta": {"content": p}, "finish_reason": null}]})
                ));
            }
            ev.push(format!(
                "data: {}\n\n",
                json!({"id": "c", "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
            ));
            ev.push("data: [DONE]\n\n".into());
        }
        Endpoint::Messages => {
            ev.push("event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\n".into());
            for p in pieces {
                ev.push(format!(
                    "event: content_block_delta\ndata: {}\n\n",
                    json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": p}})
                ));
            }
            ev.push("event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":0}\n\n".into());
            ev.push("event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n".into());
        }
        _ => {
            for p in pieces {
                ev.push(format!("event: response.output_text.delta\ndata: {}\n\n", json!({"type": "response.output_text.delta", "output_index": 0, "content_index": 0, "item_id": "i", "delta": p})));
            }
            ev.push(format!("event: response.output_text.done\ndata: {}\n\n", json!({"type": "response.output_text.done", "output_index": 0, "content_index": 0, "item_id": "i", "text": TEXT})));
        }
    }
    ev
}

/// A plain text delta takes the fast path: the released text is spliced into the upstream's own
/// bytes (key order, spacing and every other member kept), and the result is still the general path's.
#[test]
fn text_deltas_are_spliced_into_the_raw_event() {
    let s = scanner();
    let raw = |t: &str| {
        format!("data: {{\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"created\": 1700000000,\"choices\":[{{\"index\":0,\"delta\":{{\"content\":{}}},\"logprobs\":null,\"finish_reason\":null}}]}}\n\n", json!(t))
    };
    let mut r = StreamRedactor::new(Endpoint::ChatCompletions);
    let long = "plain words flowing by without anything secret in them at all, ".repeat(4);
    let mut out = String::new();
    for piece in [long.as_str(), "and more.", " key AKIAZ7Q3M4N5P6R2T8VW end"] {
        match r.on_event(&s, raw(piece).as_bytes()) {
            Redacted::Same => out.push_str(&raw(piece)),
            Redacted::Events(v) => {
                for e in v {
                    let e = String::from_utf8(e.to_vec()).unwrap();
                    assert!(
                        e.starts_with(
                            "data: {\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"created\": 1700000000,"
                        ),
                        "{e}"
                    );
                    out.push_str(&e);
                }
            }
            Redacted::Uninspectable(why) => panic!("{why}"),
        }
    }
    for b in r.finish(&s) {
        out.push_str(&String::from_utf8_lossy(&b));
    }
    let want = s.redact(&format!("{long}and more. key AKIAZ7Q3M4N5P6R2T8VW end")).0.into_owned();
    assert_eq!(texts(&out, Endpoint::ChatCompletions), want);
    assert!(!out.contains("AKIAZ7Q3M4N5P6R2T8VW"));
}

/// The chunk that finishes a choice takes the fast path too: the text its field still held goes out
/// first, in an event of the deltas' own shape (no role repeated), then the finishing chunk byte for
/// byte; a finish reason the API does not define goes through the general path, with the same text.
#[test]
fn the_finishing_chunk_releases_the_held_text_then_passes_as_it_came() {
    let s = scanner();
    let env = "\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"created\":1700000000,\"model\":\"m\"";
    let first = format!("data: {{{env},\"choices\":[{{\"index\":0,\"delta\":{{\"role\":\"assistant\",\"content\":\"\",\"refusal\":null}},\"logprobs\":null,\"finish_reason\":null}}]}}\n\n");
    let delta = |t: &str| {
        format!("data: {{{env},\"choices\":[{{\"index\":0,\"delta\":{{\"content\":{}}},\"logprobs\":null,\"finish_reason\":null}}]}}\n\n", json!(t))
    };
    for (reason, fast) in [("stop", true), ("length", true), ("made_up_reason", false)] {
        let finish = format!("data: {{{env},\"choices\":[{{\"index\":0,\"delta\":{{}},\"logprobs\":null,\"finish_reason\":\"{reason}\"}}]}}\n\n");
        let mut r = StreamRedactor::new(Endpoint::ChatCompletions);
        let mut out = String::new();
        let push = |r: &mut StreamRedactor, e: &str, out: &mut String| -> Vec<String> {
            match r.on_event(&s, e.as_bytes()) {
                Redacted::Same => {
                    out.push_str(e);
                    vec![e.to_owned()]
                }
                Redacted::Events(v) => {
                    let v: Vec<String> = v.iter().map(|b| String::from_utf8(b.to_vec()).unwrap()).collect();
                    v.iter().for_each(|e| out.push_str(e));
                    v
                }
                Redacted::Uninspectable(why) => panic!("{why}"),
            }
        };
        push(&mut r, &first, &mut out);
        for piece in ["Here is the key AKIAZ7Q3M4", "N5P6R2T8VW and", " the end of it"] {
            push(&mut r, &delta(piece), &mut out);
        }
        let last = push(&mut r, &finish, &mut out);
        push(&mut r, "data: [DONE]\n\n", &mut out);
        let want = s.redact("Here is the key AKIAZ7Q3M4N5P6R2T8VW and the end of it").0.into_owned();
        assert_eq!(texts(&out, Endpoint::ChatCompletions), want, "{reason}");
        assert!(!out.contains("AKIAZ7Q3M4N5P6R2T8VW"), "{reason}");
        assert!(last.len() >= 2, "{reason}: the held text goes out before the finishing chunk: {last:?}");
        if fast {
            assert_eq!(last.last().unwrap(), &finish, "{reason}: the finishing chunk as it came");
            let carrier = &last[0];
            assert!(carrier.starts_with(&format!("data: {{{env},")), "{carrier}");
            assert!(!carrier.contains("role"), "{carrier}");
        } else {
            assert_ne!(last.last().unwrap(), &finish, "{reason}: re-serialised by the general path");
        }
    }
}

/// Another tenant's identifier split across deltas is seen in every format; the stream itself is
/// left as it was (detection only).
#[test]
fn tenant_identifiers_in_released_text() {
    let s = scanner();
    let ids = std::sync::Arc::new(
        crate::inspect::tenants::TenantIds::new(&[("globex".into(), vec!["GLX-ACCT-".into()])]).unwrap(),
    );
    let text = "Account glx-a";
    for ep in [Endpoint::ChatCompletions, Endpoint::Messages, Endpoint::Responses] {
        let pieces: Vec<String> = vec![text.into(), "cct-1 is".into(), " fine.".into()];
        let mut r = StreamRedactor::new(ep).with_tenants(ids.clone());
        let mut out = String::new();
        for e in events(ep, &pieces) {
            match r.on_event(&s, e.as_bytes()) {
                Redacted::Same => out.push_str(&e),
                Redacted::Events(v) => v.iter().for_each(|b| out.push_str(&String::from_utf8_lossy(b))),
                Redacted::Uninspectable(why) => panic!("{why}"),
            }
        }
        assert_eq!(r.cross_tenant("acme"), vec!["globex"], "{ep:?}");
        assert!(r.cross_tenant("globex").is_empty(), "{ep:?}: own tenant");
        if ep != Endpoint::Responses {
            assert_eq!(texts(&out, ep), "Account glx-acct-1 is fine.", "{ep:?}");
        }
    }
    let mut r = StreamRedactor::new(Endpoint::ChatCompletions)
        .with_tenants(std::sync::Arc::new(crate::inspect::tenants::TenantIds::default()));
    assert!(r.st.tenants.is_none(), "nothing declared: no scanning state");
    r.on_event(&s, events(Endpoint::ChatCompletions, &["GLX-ACCT-1".into()])[0].as_bytes());
    assert!(r.cross_tenant("acme").is_empty());
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]
    /// For any chunking, in all three stream formats, the client-visible text equals the
    /// redaction of the whole text, and no secret appears anywhere in what is sent.
    #[test]
    fn every_format_any_chunking(cuts in proptest::collection::vec(0usize..TEXT.len(), 0..60)) {
        let s = scanner();
        let mut cuts = cuts;
        cuts.sort_unstable();
        let pieces = split(TEXT, &cuts);
        let want = s.redact(TEXT).0.into_owned();
        for ep in [Endpoint::ChatCompletions, Endpoint::Messages, Endpoint::Responses] {
            let out = run(ep, events(ep, &pieces), &s);
            prop_assert_eq!(texts(&out, ep), want.clone(), "{:?}", ep);
            for secret in ["AKIAZ7Q3M4N5P6R2T8VW", "ghp_8f3Kq2Lm9Xz4Vb7Nw1Rt6Yu0Pa5Sd3Fg2Hj4", "4111 1111 1111 1111", "bob.smith@acme-corp.io"] {
                prop_assert!(!out.contains(secret), "{:?} leaked {}", ep, secret);
            }
        }
    }

    /// Clean text passes through byte-identical, whatever the chunking.
    #[test]
    fn clean_text_is_unchanged(cuts in proptest::collection::vec(0usize..200, 0..30)) {
        let s = scanner();
        let clean = "The quick brown fox jumps over the lazy dog; see section [3] and ![fig](/img/a.png). ".repeat(3);
        let mut cuts = cuts;
        cuts.sort_unstable();
        let pieces = split(&clean, &cuts);
        let out = run(Endpoint::ChatCompletions, events(Endpoint::ChatCompletions, &pieces), &s);
        prop_assert_eq!(texts(&out, Endpoint::ChatCompletions), clean);
    }

    /// The invariant for every string field, known or not: text in random fields (refusal,
    /// reasoning, thinking, tool input, signature, unknown names), given directly, as an array of
    /// parts or nested, in all three formats, two fields interleaved, cut anywhere: each field the
    /// client assembles equals the redaction of its whole text, and no secret appears anywhere
    /// (a secret in an unknown whole field of every event included).
    #[test]
    fn every_field_any_shape_any_chunking(
        ep in prop_oneof![Just(Endpoint::ChatCompletions), Just(Endpoint::Messages), Just(Endpoint::Responses)],
        a in 0usize..5,
        b in 0usize..5,
        unknown in "x_[a-z_]{1,12}",
        nest_a in 0u8..4,
        nest_b in 0u8..4,
        together in any::<bool>(),
        cuts_a in proptest::collection::vec(0usize..TEXT.len(), 0..40),
        cuts_b in proptest::collection::vec(0usize..TEXT2.len(), 0..40),
    ) {
        let s = scanner();
        let mut names: Vec<String> = field_names(ep).iter().map(|n| (*n).to_owned()).collect();
        names.push(unknown);
        let b = if a == b { (b + 1) % names.len() } else { b };
        let fa = Field { ep, name: names[a].clone(), nest: nest_a, scope: 0 };
        // Anthropic fields live in content blocks: the second field is another block.
        let fb = Field { ep, name: names[b].clone(), nest: nest_b, scope: u64::from(ep == Endpoint::Messages) };
        let (mut cuts_a, mut cuts_b) = (cuts_a, cuts_b);
        cuts_a.sort_unstable();
        cuts_b.sort_unstable();
        let (pa, pb) = (split(TEXT, &cuts_a), split(TEXT2, &cuts_b));
        let out = run(ep, shaped_events(&fa, &pa, &fb, &pb, together), &s);
        prop_assert_eq!(fa.assembled(&out), s.redact(TEXT).0.into_owned(), "{:?}", fa);
        prop_assert_eq!(fb.assembled(&out), s.redact(TEXT2).0.into_owned(), "{:?}", fb);
        for secret in SECRETS {
            prop_assert!(!out.contains(secret), "{:?} leaked {}: {}", ep, secret, out);
        }
    }
}

const TEXT2: &str = "Thinking: the card is 5500 0000 0000 0004, the key AKIAZ7Q3M4N5P6R2T8VX and \
    jane.doe@example-mail.org; nothing else.";

const SECRETS: [&str; 7] = [
    "AKIAZ7Q3M4N5P6R2T8VW",
    "ghp_8f3Kq2Lm9Xz4Vb7Nw1Rt6Yu0Pa5Sd3Fg2Hj4",
    "4111 1111 1111 1111",
    "bob.smith@acme-corp.io",
    "5500 0000 0000 0004",
    "AKIAZ7Q3M4N5P6R2T8VX",
    "jane.doe@example-mail.org",
];

/// Field names per format: the known growing fields (a random unknown one is added).
fn field_names(ep: Endpoint) -> [&'static str; 4] {
    match ep {
        Endpoint::ChatCompletions => ["content", "refusal", "reasoning_content", "reasoning"],
        Endpoint::Messages => ["text", "thinking", "partial_json", "signature"],
        _ => ["output_text", "refusal", "reasoning_summary_text", "reasoning_text"],
    }
}

/// One growing field: its format, name, nesting (0 a string, 1 an array of parts, 2 a nested
/// object, 3 parts within parts) and its choice / block index.
#[derive(Debug)]
struct Field {
    ep: Endpoint,
    name: String,
    nest: u8,
    scope: u64,
}

impl Field {
    /// The value that carries `text` (under the field's name, except for Responses).
    fn wrap(&self, text: &str) -> Value {
        match self.nest {
            0 => json!(text),
            1 => json!([{"type": "text", "text": text}]),
            2 => json!({"inner": text}),
            _ => json!([{"type": "thinking", "thinking": [{"type": "text", "text": text}]}]),
        }
    }

    fn inner_pointer(&self) -> &'static str {
        ["", "/0/text", "/inner", "/0/thinking/0/text"][self.nest as usize]
    }

    fn responses_type(&self, suffix: &str) -> String {
        format!("response.{}.{suffix}", self.name)
    }

    /// The data of one event carrying `text` in this field (and the same secret, whole, in an
    /// unknown member).
    fn event(&self, text: &str) -> String {
        let meta = "whole: AKIAZ7Q3M4N5P6R2T8VW";
        match self.ep {
            Endpoint::ChatCompletions => format!(
                "data: {}\n\n",
                json!({"id": "c", "object": "chat.completion.chunk", "x_meta": meta,
                    "choices": [{"index": self.scope, "delta": {self.name.as_str(): self.wrap(text)}, "finish_reason": null}]})
            ),
            Endpoint::Messages => {
                let ty = match self.name.as_str() {
                    "text" => "text_delta",
                    "thinking" => "thinking_delta",
                    "partial_json" => "input_json_delta",
                    "signature" => "signature_delta",
                    _ => "x_vendor_delta",
                };
                format!(
                    "event: content_block_delta\ndata: {}\n\n",
                    json!({"type": "content_block_delta", "index": self.scope, "x_meta": meta,
                        "delta": {"type": ty, self.name.as_str(): self.wrap(text)}})
                )
            }
            _ => {
                let ty = self.responses_type("delta");
                let index = if self.name.starts_with("reasoning_summary") { "summary_index" } else { "content_index" };
                format!(
                    "event: {ty}\ndata: {}\n\n",
                    json!({"type": ty, "item_id": "i", "output_index": self.scope, index: 0, "x_meta": meta,
                        "obfuscation": "q9Zt", "delta": self.wrap(text)})
                )
            }
        }
    }

    /// What a client assembles of this field from the delivered stream.
    fn assembled(&self, out: &str) -> String {
        let mut text = String::new();
        for e in out.split("\n\n") {
            let Some(d) = e.lines().find_map(|l| l.strip_prefix("data: ")) else { continue };
            let Ok(v) = serde_json::from_str::<Value>(d) else { continue };
            let pointer = match self.ep {
                Endpoint::ChatCompletions => {
                    if v.pointer("/choices/0/index").and_then(Value::as_u64) != Some(self.scope) {
                        continue;
                    }
                    format!("/choices/0/delta/{}{}", self.name, self.inner_pointer())
                }
                Endpoint::Messages => {
                    if v["type"] != "content_block_delta" || v["index"].as_u64() != Some(self.scope) {
                        continue;
                    }
                    format!("/delta/{}{}", self.name, self.inner_pointer())
                }
                _ => {
                    if v["type"] != self.responses_type("delta").as_str() {
                        continue;
                    }
                    format!("/delta{}", self.inner_pointer())
                }
            };
            text.push_str(v.pointer(&pointer).and_then(Value::as_str).unwrap_or(""));
        }
        text
    }
}

/// A stream of `ep` carrying the pieces of two fields (in the same events or in turns), with the
/// format's opening and closing events.
fn shaped_events(fa: &Field, pa: &[String], fb: &Field, pb: &[String], together: bool) -> Vec<String> {
    let ep = fa.ep;
    let mut ev = Vec::new();
    if ep == Endpoint::Messages {
        for f in [fa, fb] {
            ev.push(format!(
                "event: content_block_start\ndata: {}\n\n",
                json!({"type": "content_block_start", "index": f.scope, "content_block": {"type": "text", "text": ""}})
            ));
        }
    }
    let n = pa.len().max(pb.len());
    for i in 0..n {
        let (x, y) = (pa.get(i).map_or("", String::as_str), pb.get(i).map_or("", String::as_str));
        if together && ep == Endpoint::ChatCompletions {
            // Both fields in one delta.
            let mut v: Value = serde_json::from_str(fa.event(x).trim_start_matches("data: ").trim()).unwrap();
            v["choices"][0]["delta"][fb.name.as_str()] = fb.wrap(y);
            ev.push(format!("data: {v}\n\n"));
        } else {
            ev.push(fa.event(x));
            ev.push(fb.event(y));
        }
    }
    match ep {
        Endpoint::ChatCompletions => {
            ev.push(format!(
                "data: {}\n\n",
                json!({"id": "c", "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
            ));
            ev.push("data: [DONE]\n\n".into());
        }
        Endpoint::Messages => {
            for f in [fa, fb] {
                ev.push(format!(
                    "event: content_block_stop\ndata: {}\n\n",
                    json!({"type": "content_block_stop", "index": f.scope})
                ));
            }
            ev.push("event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n".into());
        }
        _ => {
            for (f, whole) in [(fa, TEXT), (fb, TEXT2)] {
                let ty = f.responses_type("done");
                ev.push(format!(
                    "event: {ty}\ndata: {}\n\n",
                    json!({"type": ty, "item_id": "i", "output_index": f.scope, "content_index": 0, "text": whole})
                ));
            }
            ev.push(format!(
                "event: response.completed\ndata: {}\n\n",
                json!({"type": "response.completed", "response": {"id": "r", "status": "completed"}})
            ));
        }
    }
    ev
}

/// A stream may hold back only so many fields: one more ends it (fail closed), whatever path the
/// event takes.
#[test]
fn too_many_fields_is_uninspectable() {
    let s = scanner();
    let mut r = StreamRedactor::new(Endpoint::ChatCompletions);
    for i in 0..MAX_FIELDS as u64 {
        let e = format!("data: {}\n\n", json!({"choices": [{"index": i, "delta": {"content": "x"}}]}));
        assert!(!matches!(r.on_event(&s, e.as_bytes()), Redacted::Uninspectable(_)), "field {i}");
    }
    let e = format!("data: {}\n\n", json!({"choices": [{"index": 999, "delta": {"content": "x"}}]}));
    assert!(matches!(r.on_event(&s, e.as_bytes()), Redacted::Uninspectable(_)));
    let e = format!("data: {}\n\n", json!({"choices": [{"index": 0, "delta": {"x_new": "y"}}]}));
    assert!(matches!(r.on_event(&s, e.as_bytes()), Redacted::Uninspectable(_)));
}

/// Data that is not JSON is not the provider's format: the stream ends. Empty data and `[DONE]`
/// carry nothing and pass.
#[test]
fn data_that_is_not_json_ends_the_stream_but_keep_alives_pass() {
    let s = scanner();
    for ep in [Endpoint::ChatCompletions, Endpoint::Messages, Endpoint::Responses] {
        let mut r = StreamRedactor::new(ep);
        assert!(matches!(r.on_event(&s, b"data: <html>oops</html>\n\n"), Redacted::Uninspectable(_)), "{ep:?}");
        for ok in [&b"data:\n\n"[..], b"data: [DONE]\n\n", b": ping\n\n", b"event: ping\n\n"] {
            assert!(matches!(r.on_event(&s, ok), Redacted::Same), "{ep:?} {}", String::from_utf8_lossy(ok));
        }
    }
}

/// The fast path takes only events whose other strings are identifiers: a refusal or an unknown
/// text member beside the content is inspected too.
#[test]
fn a_second_text_member_is_not_skipped_by_the_fast_path() {
    let s = scanner();
    for extra in [
        json!({"refusal": "AKIAZ7Q3M4N5P6R2T8VW"}),
        json!({"reasoning_content": "AKIAZ7Q3M4N5P6R2T8VW"}),
        json!({"x_note": "AKIAZ7Q3M4N5P6R2T8VW"}),
    ] {
        let mut delta = json!({"content": "hello"});
        delta.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        let mut r = StreamRedactor::new(Endpoint::ChatCompletions);
        let out =
            run_with(&mut r, &s, vec![format!("data: {}\n\n", json!({"choices": [{"index": 0, "delta": delta}]}))]);
        assert!(!out.contains("AKIAZ7Q3M4N5P6R2T8VW"), "{out}");
    }
    let mut r = StreamRedactor::new(Endpoint::ChatCompletions);
    let out = run_with(
        &mut r,
        &s,
        vec![format!(
            "data: {}\n\n",
            json!({"obfuscation": "AKIAZ7Q3M4N5P6R2T8VW", "choices": [{"index": 0, "delta": {"content": "hi"}}]})
        )],
    );
    assert!(!out.contains("AKIAZ7Q3M4N5P6R2T8VW"), "{out}");
}

fn run_with(r: &mut StreamRedactor, s: &Scanner, events: Vec<String>) -> String {
    let mut out = String::new();
    for e in events {
        match r.on_event(s, e.as_bytes()) {
            Redacted::Same => out.push_str(&e),
            Redacted::Events(v) => v.iter().for_each(|b| out.push_str(&String::from_utf8_lossy(b))),
            Redacted::Uninspectable(_) => out.push_str("<uninspectable>"),
        }
    }
    for b in r.finish(s) {
        out.push_str(&String::from_utf8_lossy(&b));
    }
    out
}
