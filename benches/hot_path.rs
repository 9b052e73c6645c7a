//! Micro-benchmarks of firebreak's per-request hot path, phase by phase, and of the streaming path.
//!
//! Run: `cargo bench --bench hot_path` (add `-- <filter>` to run some). Short settings are built in
//! (1 s warm-up, 3 s measurement per benchmark) so the whole run takes about a minute.
//!
//! What is measured (see benches/README.md for the latest figures):
//! - `auth/*`: SHA-256 of the presented key + lookup in the policy's key table (Bearer and x-api-key).
//! - `switches/*`: loading the switch snapshot (`StateStore::load`, an `ArcSwap` load) and
//!   `Snapshot::refusal` against a snapshot holding realistic block lists.
//! - `ratelimit/check`: one token-bucket check for one of several users.
//! - `body/*`: parsing a typical chat request body, stripping the tools the role may not use, and
//!   re-serialising it when it changed.
//! - `decision/*`: all of the above in the pipeline's order, plus model checks and routing — the
//!   work the gateway does on a request before it talks to the upstream.
//! - `sse/framer`: framing a realistic streamed chat completion fed in 32-byte chunks.
//! - `sse/toolcall_filter`: the streaming tool-call filter on plain text events (a substring test).
//! - `client/*`: the request's client facts — taken from the request (`of`, per request) and written
//!   into its audit record (`record`: peer address, user agent through `audit::client_text_capped`).

use std::hint::black_box;
use std::path::Path;
use std::time::Duration;

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use http::{HeaderMap, HeaderValue};
use sha2::{Digest, Sha256};

use firebreak::config::Policy;
use firebreak::gateway::ratelimit::RateLimiter;
use firebreak::http::authenticate;
use firebreak::inspect::toolcalls::{EventAction, StreamFilter};
use firebreak::protocol::request::Payload;
use firebreak::protocol::sse::SseFramer;
use firebreak::protocol::Endpoint;
use firebreak::state::{unix_now, Entry, Snapshot, StateStore};

const KEYS: usize = 24;
const ROLES: [&str; 3] = ["developer", "analyst", "support"];

fn secret(i: usize) -> String {
    format!("fb-bench-{i:04}-a7c3e9f1d2b4")
}

/// A realistic policy: two upstreams with routes, 24 keys over 3 tenants and 3 roles, tool and model
/// allowlists with wildcards, per-level settings.
fn policy() -> Policy {
    let mut t = String::from(
        r#"
[listen]
proxy = "127.0.0.1:0"
admin = "127.0.0.1:0"

[limits]
max_request_body_bytes = 1048576
max_concurrent_requests = 1024

[upstreams.openai]
kind = "openai"
base_url = "http://127.0.0.1:9/"
credential_env = "FIREBREAK_BENCH_OPENAI_KEY"

[upstreams.anthropic]
kind = "anthropic"
base_url = "http://127.0.0.1:9/"
credential_env = "FIREBREAK_BENCH_ANTHROPIC_KEY"

[[routes]]
api = "openai"
upstream = "openai"
models = ["gpt-4o*", "gpt-4.1*", "o3*", "o4-mini*"]

[[routes]]
api = "anthropic"
upstream = "anthropic"

[roles.developer]
tools = ["get_weather", "search_*", "send_email", "read_file", "list_*"]
models = ["gpt-4o*", "gpt-4.1*", "claude-*"]

[roles.analyst]
tools = ["search_*", "get_weather"]
models = ["gpt-4o-mini", "claude-3-5-haiku-*"]

[roles.support]
tools = ["search_docs", "lookup_ticket"]

[tools.get_weather]
side_effects = false
[tools.search_docs]
side_effects = false
[tools.search_web]
side_effects = false
[tools.read_file]
side_effects = false
[tools.list_files]
side_effects = false
[tools.lookup_ticket]
side_effects = false
[tools.send_email]
side_effects = true
[tools.run_shell]
side_effects = true

[levels.normal]
requests_per_minute = 4000000000
[levels.elevated]
requests_per_minute = 600
tools = "no_side_effects"
[levels.critical]
requests_per_minute = 60
tools = "none"
model = "gpt-4o-mini"

[safe_mode]
reply = "Safe mode is on."
"#,
    );
    for i in 0..KEYS {
        let sha = hex::encode(Sha256::digest(secret(i).as_bytes()));
        t.push_str(&format!(
            "\n[[keys]]\nid = \"key-{i}\"\nsha256 = \"{sha}\"\ntenant = \"tenant-{}\"\nuser = \"user-{i}\"\nrole = \"{}\"\n",
            i % 3,
            ROLES[i % ROLES.len()]
        ));
    }
    match firebreak::config::load_str("bench.toml", &t, Path::new(".")) {
        Ok(p) => p,
        Err(e) => panic!("bench policy does not load: {e}"),
    }
}

fn entry() -> Entry {
    Entry {
        reason: "incident 42".into(),
        actor: "bench".into(),
        since: "2026-01-01T00:00:00Z".into(),
        expires: None,
        expires_unix: None,
    }
}

/// A switch state as it might look during an incident: some blocked users and tenants, revoked keys,
/// terminated sessions, a disabled tool; none of which hit the benchmarked principal.
fn store(dir: &Path) -> StateStore {
    let mut s = Snapshot { version: 17, ..Snapshot::default() };
    for i in 0..50 {
        s.blocked_users.insert(format!("blocked-user-{i}"), entry());
        s.terminated_sessions.insert(format!("sess-terminated-{i}"), entry());
        s.revoked_keys.insert(format!("revoked-key-{i}"), entry());
    }
    s.blocked_tenants.insert("tenant-evil".into(), entry());
    s.disabled_tools.insert("run_shell".into(), entry());
    s.disabled_endpoints.insert("embeddings".into(), entry());
    let path = dir.join("state.json");
    std::fs::write(&path, serde_json::to_vec_pretty(&s).expect("serialise snapshot")).expect("write state");
    let store = StateStore::open(&path).expect("open state");
    assert_eq!(store.load().version, 17, "the state file was restored");
    store
}

fn headers(i: usize) -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert(http::header::AUTHORIZATION, HeaderValue::from_str(&format!("Bearer {}", secret(i))).expect("header"));
    h.insert(http::header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    h.insert("x-session-id", HeaderValue::from_static("sess-7f3a9c"));
    h.insert(http::header::USER_AGENT, HeaderValue::from_static("openai-python/1.54.0"));
    h
}

fn tool(name: &str, desc: &str) -> serde_json::Value {
    serde_json::json!({"type": "function", "function": {"name": name, "description": desc,
        "parameters": {"type": "object", "properties": {"query": {"type": "string", "description": "What to look for."},
            "limit": {"type": "integer", "minimum": 1, "maximum": 50}}, "required": ["query"]}}})
}

/// A typical agent chat request (~2.1 KB): system prompt, a few turns, four tools, one of which
/// (`run_shell`) the developer role may not use.
fn chat_body(with_forbidden_tool: bool) -> Bytes {
    let mut tools = vec![
        tool("get_weather", "Current weather for a city."),
        tool("search_docs", "Search the internal documentation."),
        tool("send_email", "Send an email on the user's behalf."),
    ];
    if with_forbidden_tool {
        tools.push(tool("run_shell", "Run a shell command on the build host."));
    }
    let v = serde_json::json!({
        "model": "gpt-4o-mini",
        "stream": false,
        "temperature": 0.2,
        "messages": [
            {"role": "system", "content": "You are a helpful engineering assistant for ACME Corp. Answer concisely, cite the documentation you used, and never reveal credentials. When a tool can answer better than you can, call it. ".repeat(2)},
            {"role": "user", "content": "Our deploy to eu-west failed with 'connection reset by peer' while pulling the image. What should I check first?"},
            {"role": "assistant", "content": "Check the registry's status page, then whether the node's egress proxy allows the registry host, and retry with verbose logging to see where the reset happens."},
            {"role": "user", "content": "Search the runbooks for the egress proxy allowlist and tell me who owns it. Also, what's the weather in Dublin?"}
        ],
        "tools": tools,
        "tool_choice": "auto"
    });
    Bytes::from(serde_json::to_vec(&v).expect("serialise body"))
}

/// A streamed chat completion as a provider sends it: role chunk, ~300 content deltas, finish, DONE.
fn chat_stream() -> Vec<u8> {
    let words = "The gateway checks every request against the policy , forwards it to the provider , and streams the answer back one event at a time .".split(' ').collect::<Vec<_>>();
    let chunk = |delta: serde_json::Value, finish: serde_json::Value| {
        format!(
            "data: {}\n\n",
            serde_json::json!({"id": "chatcmpl-AbC123xyz", "object": "chat.completion.chunk", "created": 1_731_000_000u64,
            "model": "gpt-4o-mini-2024-07-18", "system_fingerprint": "fp_0ba0d124f1",
            "choices": [{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish}]})
        )
    };
    let mut s =
        chunk(serde_json::json!({"role": "assistant", "content": "", "refusal": null}), serde_json::Value::Null);
    for i in 0..300 {
        let w = words[i % words.len()];
        s.push_str(&chunk(serde_json::json!({"content": format!(" {w}")}), serde_json::Value::Null));
    }
    s.push_str(&chunk(serde_json::json!({}), serde_json::json!("stop")));
    s.push_str("data: [DONE]\n\n");
    s.into_bytes()
}

/// The same text as an Anthropic messages stream (named events).
fn messages_stream() -> Vec<u8> {
    let mut s = String::from("event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_01\",\"type\":\"message\",\"role\":\"assistant\",\"model\":\"claude-3-5-haiku-20241022\",\"content\":[],\"stop_reason\":null,\"usage\":{\"input_tokens\":42,\"output_tokens\":1}}}\n\n");
    s.push_str("event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\n");
    for i in 0..300 {
        s.push_str(&format!("event: content_block_delta\ndata: {{\"type\":\"content_block_delta\",\"index\":0,\"delta\":{{\"type\":\"text_delta\",\"text\":\" word{i}\"}}}}\n\n"));
    }
    s.push_str("event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":0}\n\n");
    s.push_str("event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"end_turn\"},\"usage\":{\"output_tokens\":300}}\n\n");
    s.push_str("event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n");
    s.into_bytes()
}

fn frame_all(stream: &[u8]) -> Vec<Bytes> {
    let mut f = SseFramer::new(1 << 20);
    f.push(stream);
    let mut out = Vec::new();
    while let Some(ev) = f.next_event().expect("frame") {
        out.push(ev);
    }
    out
}

/// The decision the pipeline makes before contacting the upstream (phases 3–7 and the route),
/// through the same functions the pipeline calls. Returns the bytes that would be forwarded.
fn decide(policy: &Policy, state: &StateStore, limiter: &RateLimiter, h: &HeaderMap, raw: &Bytes) -> Bytes {
    let endpoint = Endpoint::ChatCompletions;
    let key = authenticate(policy, h).expect("authenticated");
    let snap = state.load();
    let now = unix_now();
    let session = h.get("x-session-id").and_then(|v| v.to_str().ok());
    let rpm = firebreak::proxy::decide::admit(policy, &snap, &key, endpoint, session, now).expect("admitted");
    limiter.check(&key.user, rpm).expect("within the rate limit");
    let mut b = Payload::parse(endpoint, raw).expect("parsed");
    let rw = firebreak::proxy::decide::rewrite(policy, &snap, &key, endpoint, &mut b, now).expect("allowed");
    black_box(&rw);
    let up = policy.route(endpoint.api(), b.model()).expect("routed");
    black_box(&up.name);
    if b.changed {
        b.to_bytes()
    } else {
        raw.clone()
    }
}

fn hot_path(c: &mut Criterion) {
    let policy = policy();
    let dir = tempfile::tempdir().expect("tempdir");
    let state = store(dir.path());
    let limiter = RateLimiter::default();
    let hs: Vec<HeaderMap> = (0..KEYS).map(headers).collect();
    // Developer keys are 0, 3, 6, …: those get the tool-stripping treatment below.
    let dev: Vec<&HeaderMap> = hs.iter().step_by(3).collect();
    let body_strip = chat_body(true);
    let body_clean = chat_body(false);

    let mut g = c.benchmark_group("auth");
    g.throughput(Throughput::Elements(1));
    let mut i = 0usize;
    g.bench_function("bearer_sha256_lookup", |b| {
        b.iter(|| {
            i = (i + 1) % KEYS;
            black_box(authenticate(&policy, &hs[i]).expect("known key"))
        })
    });
    let mut xh = HeaderMap::new();
    xh.insert("x-api-key", HeaderValue::from_str(&secret(5)).expect("header"));
    g.bench_function("x_api_key_sha256_lookup", |b| {
        b.iter(|| black_box(authenticate(&policy, &xh).expect("known key")))
    });
    let mut unknown = HeaderMap::new();
    unknown.insert(http::header::AUTHORIZATION, HeaderValue::from_static("Bearer fb-not-a-key-000000000000"));
    g.bench_function("unknown_key", |b| b.iter(|| black_box(authenticate(&policy, &unknown).is_err())));
    g.finish();

    let key = authenticate(&policy, &hs[0]).expect("known key");
    let mut g = c.benchmark_group("switches");
    g.throughput(Throughput::Elements(1));
    g.bench_function("snapshot_load", |b| b.iter(|| black_box(state.load())));
    g.bench_function("load_and_refusal", |b| {
        b.iter(|| {
            let snap = state.load();
            black_box(snap.refusal(&key, Endpoint::ChatCompletions, Some("sess-7f3a9c"), unix_now()))
        })
    });
    g.finish();

    let mut g = c.benchmark_group("ratelimit");
    g.throughput(Throughput::Elements(1));
    let users: Vec<String> = (0..KEYS).map(|i| format!("user-{i}")).collect();
    let mut i = 0usize;
    g.bench_function("check", |b| {
        b.iter(|| {
            i = (i + 1) % KEYS;
            black_box(limiter.check(&users[i], 4_000_000_000))
        })
    });
    g.finish();

    let mut g = c.benchmark_group("body");
    g.throughput(Throughput::Bytes(body_strip.len() as u64));
    g.bench_function("parse", |b| {
        b.iter(|| black_box(Payload::parse(Endpoint::ChatCompletions, &body_strip).expect("parsed")))
    });
    // The parse before issue 15, in the same run: the body into a `serde_json::Value` (the field
    // checks on the map, which followed, allocate nothing).
    g.bench_function("parse_into_value", |b| {
        b.iter(|| black_box(serde_json::from_slice::<serde_json::Value>(&body_strip).expect("JSON")))
    });
    g.bench_function("parse_strip_serialise", |b| {
        b.iter(|| {
            let mut body = Payload::parse(Endpoint::ChatCompletions, &body_strip).expect("parsed");
            let removed = body.strip_tools(Endpoint::ChatCompletions, |n| {
                policy.tool_allowed("developer", firebreak::config::Level::Normal, n)
            });
            debug_assert_eq!(removed, ["run_shell"]);
            black_box(body.to_bytes())
        })
    });
    g.bench_function("strip_only", |b| {
        // The parsed body is built and dropped outside the timing.
        b.iter_batched_ref(
            || Payload::parse(Endpoint::ChatCompletions, &body_strip).expect("parsed"),
            |body| {
                black_box(body.strip_tools(Endpoint::ChatCompletions, |n| {
                    policy.tool_allowed("developer", firebreak::config::Level::Normal, n)
                }))
            },
            BatchSize::SmallInput,
        )
    });
    g.finish();

    let mut g = c.benchmark_group("decision");
    g.throughput(Throughput::Elements(1));
    let mut i = 0usize;
    g.bench_function("full_tool_stripped", |b| {
        b.iter(|| {
            i = (i + 1) % dev.len();
            black_box(decide(&policy, &state, &limiter, dev[i], &body_strip))
        })
    });
    g.bench_function("full_unchanged", |b| {
        b.iter(|| {
            i = (i + 1) % dev.len();
            black_box(decide(&policy, &state, &limiter, dev[i], &body_clean))
        })
    });
    g.finish();
}

fn streaming(c: &mut Criterion) {
    let chat = chat_stream();
    let messages = messages_stream();
    let mut g = c.benchmark_group("sse");
    for (name, stream) in [("framer_chat_32B_chunks", &chat), ("framer_messages_32B_chunks", &messages)] {
        let events = frame_all(stream).len();
        g.throughput(Throughput::Bytes(stream.len() as u64));
        g.bench_function(name, |b| {
            b.iter(|| {
                let mut f = SseFramer::new(1 << 20);
                let mut n = 0usize;
                for chunk in stream.chunks(32) {
                    f.push(chunk);
                    while let Some(ev) = f.next_event().expect("frame") {
                        n += 1;
                        black_box(&ev);
                    }
                }
                f.finish().expect("complete");
                assert_eq!(n, events);
                n
            })
        });
    }
    struct AllowAll;
    impl firebreak::inspect::toolcalls::CallCheck for AllowAll {
        fn check_name(&self, _: &str) -> Option<firebreak::inspect::toolcalls::CallRefusal> {
            None
        }
        fn check_args(&self, _: &str, _: &str) -> Option<firebreak::inspect::toolcalls::CallRefusal> {
            None
        }
    }
    let allow = AllowAll;
    for (name, endpoint, stream) in [
        ("toolcall_filter_chat_text", Endpoint::ChatCompletions, &chat),
        ("toolcall_filter_messages_text", Endpoint::Messages, &messages),
    ] {
        let events = frame_all(stream);
        g.throughput(Throughput::Bytes(stream.len() as u64));
        g.bench_function(name, |b| {
            b.iter(|| {
                let mut f = StreamFilter::new(endpoint, 1 << 20);
                for ev in &events {
                    let a = f.on_event(ev, &allow);
                    debug_assert_eq!(a, EventAction::Forward);
                    black_box(a);
                }
            })
        });
    }
    // The stream redactor on clean text (the fast path and its template), every event as it comes.
    let policy = policy();
    for (name, endpoint, stream) in [
        ("redact_chat_text", Endpoint::ChatCompletions, &chat),
        ("redact_messages_text", Endpoint::Messages, &messages),
    ] {
        let events = frame_all(stream);
        g.throughput(Throughput::Bytes(stream.len() as u64));
        g.bench_function(name, |b| {
            b.iter(|| {
                let mut r = firebreak::inspect::redact::StreamRedactor::new(endpoint);
                for ev in &events {
                    black_box(r.on_event(&policy.scanner, ev));
                }
                black_box(r.finish(&policy.scanner))
            })
        });
    }
    g.finish();
}

fn config() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .sample_size(30)
        .without_plots()
}

/// The client facts of every audit record: what the request path pays for them.
fn client_meta(c: &mut Criterion) {
    use firebreak::http::client::ClientMeta;
    use firebreak::http::peer::Peer;
    let policy = policy();
    let mut ext = http::Extensions::new();
    ext.insert(Peer::tcp(Some("192.0.2.10:51234".parse().expect("addr"))));
    let bare = HeaderMap::new();
    let mut typical = HeaderMap::new();
    typical.insert(http::header::USER_AGENT, HeaderValue::from_static("OpenAI/Python 1.54.4"));
    let mut g = c.benchmark_group("client");
    g.throughput(Throughput::Elements(1));
    g.bench_function("of_no_headers", |b| b.iter(|| black_box(ClientMeta::of(&ext, &bare))));
    g.bench_function("of_user_agent", |b| b.iter(|| black_box(ClientMeta::of(&ext, &typical))));
    let meta = ClientMeta::of(&ext, &typical);
    g.bench_function("record_user_agent", |b| {
        b.iter(|| {
            let mut r = firebreak::audit::Exchange::new("request", "decision", String::new());
            meta.fill(&mut r, &policy.scanner, &policy.listen.trusted_proxies);
            black_box(r)
        })
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = config();
    targets = hot_path, streaming, client_meta
}
criterion_main!(benches);
