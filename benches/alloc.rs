//! Heap allocations per request through the real pipeline, in-process (issue 15).
//!
//! `cargo bench --bench alloc` (no criterion: it counts, it does not time). A counting global
//! allocator (`stats_alloc`, every thread: the audit writer's work is included) wraps the system
//! allocator. The gateway runs `policies/example.toml` unchanged except for its files (a temp dir),
//! the normal level's rate limit (raised out of the way; it is still checked) and the audit key
//! (a scratch one, as `firebreak replay` does); the log subscriber is the one `firebreak serve`
//! installs, at the policy's level (`info`). Requests go through `server::route` with the
//! upstream's reply scripted in the request's extensions, as offline replay does: no socket, so
//! only the gateway's own allocations are counted, not hyper's connection handling.
//!
//! Modes, the bodies of the load bench (`benches/load/`, the bodies of its nginx mock upstream):
//! - `json`: `chat.json` (a 1.35 KB chat request with 2 tools) answered with `reply_chat.json`
//!   (the 721-byte `chat.completion` of the nginx mock upstream);
//! - `sse`: `chat_stream.json` answered with `reply_chat.sse` (20 chunk events and `[DONE]`), one
//!   body frame per event;
//! - `mcp`: `mcp_call.json` (`tools/call` of `echo` on `everything`) answered with `reply_mcp.json`.
//!
//! For each: `WARMUP` requests, then `N` requests (`FB_ALLOC_N`, default 2,000): the requests are
//! built before counting starts, the responses are read to the end and dropped, and the audit trail
//! is flushed before counting stops. Prints allocations, reallocations and bytes allocated per
//! request. `FB_ALLOC_MODES=json,sse` runs only the modes named (e.g. a long run under `perf record`).

use std::alloc::System;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use stats_alloc::{Region, StatsAlloc, INSTRUMENTED_SYSTEM};

use firebreak::gateway::{Gateway, PolicySource};
use firebreak::http::script::ScriptedReply;
use firebreak::metrics::Metrics;
use firebreak::protocol::request::Payload;
use firebreak::protocol::Endpoint;

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

const WARMUP: usize = 300;
const N_DEFAULT: usize = 2000;

/// Requests counted per mode: `FB_ALLOC_N` (e.g. a long run under `perf record`), else 2,000.
fn n() -> usize {
    std::env::var("FB_ALLOC_N").ok().and_then(|v| v.parse().ok()).unwrap_or(N_DEFAULT)
}
const CLIENT_KEY: &str = "example-key-platform";

fn read(path: &Path) -> Bytes {
    match std::fs::read(path) {
        Ok(b) => Bytes::from(b),
        Err(e) => panic!("{}: {e}", path.display()),
    }
}

/// `policies/example.toml` with the normal level's rate limit out of the way, loaded with its
/// files in `dir`.
fn policy(root: &Path, dir: &Path) -> firebreak::config::Policy {
    let text = std::fs::read_to_string(root.join("policies/example.toml")).expect("example policy");
    let marker = "[levels.normal]\nrequests_per_minute = ";
    let at = text.find(marker).expect("the example policy has [levels.normal]") + marker.len();
    let end = at + text[at..].find('\n').expect("a line end");
    let text = format!("{}1000000000{}", &text[..at], &text[end..]);
    let mut p = firebreak::config::load_str("example.toml", &text, &root.join("policies")).expect("policy loads");
    p.storage.state_file = dir.join("state.json");
    p.storage.audit_file = dir.join("audit.jsonl");
    p.audit.key = None;
    p.audit.previous_key = None;
    p.forensics = None;
    p
}

struct Mode {
    name: &'static str,
    path: &'static str,
    accept: &'static str,
    body: Bytes,
    reply: ScriptedReply,
    expect: &'static str,
}

fn request(m: &Mode) -> http::Request<Full<Bytes>> {
    let mut r = http::Request::builder()
        .method("POST")
        .uri(m.path)
        .header(http::header::AUTHORIZATION, format!("Bearer {CLIENT_KEY}"))
        .header(http::header::CONTENT_TYPE, "application/json")
        .header(http::header::ACCEPT, m.accept)
        .body(Full::new(m.body.clone()))
        .expect("request");
    r.extensions_mut().insert(m.reply.clone());
    r
}

async fn send(gw: &Arc<Gateway>, req: http::Request<Full<Bytes>>) -> (u16, Bytes) {
    let resp = firebreak::server::route(gw.clone(), req).await;
    let status = resp.status().as_u16();
    let body = resp.into_body().collect().await.map(|c| c.to_bytes()).unwrap_or_default();
    (status, body)
}

async fn measure(gw: &Arc<Gateway>, m: &Mode, n: usize) {
    let (status, body) = send(gw, request(m)).await;
    let text = String::from_utf8_lossy(&body);
    assert!(status == 200 && text.contains(m.expect), "{}: HTTP {status}: {text}", m.name);
    for _ in 0..WARMUP {
        send(gw, request(m)).await;
    }
    gw.audit.flush().await.expect("audit flush");
    let reqs: Vec<_> = (0..n).map(|_| request(m)).collect();
    let region = Region::new(GLOBAL);
    let start = Instant::now();
    for r in reqs {
        send(gw, r).await;
    }
    gw.audit.flush().await.expect("audit flush");
    let elapsed = start.elapsed();
    let s = region.change();
    let n = n as f64;
    println!(
        "| {} | {:.1} | {:.1} | {:.0} | {:.1} |",
        m.name,
        s.allocations as f64 / n,
        s.reallocations as f64 / n,
        (s.bytes_allocated + s.bytes_reallocated.max(0) as usize) as f64 / n,
        elapsed.as_secs_f64() * 1e6 / n,
    );
}

fn main() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let load = root.join("benches/load");
    let dir = tempfile::tempdir().expect("temp dir");
    // The example policy names these credentials; nothing is sent anywhere.
    std::env::set_var("OPENAI_API_KEY", "sk-bench-provider-not-a-real-key");
    std::env::set_var("ANTHROPIC_API_KEY", "sk-bench-provider-not-a-real-key");
    let policy = policy(root, dir.path());
    // The subscriber `firebreak serve` installs (the example policy logs at `info`; FIREBREAK_LOG
    // overrides it), so the per-request span and log line are counted as they cost in production.
    let _telemetry = firebreak::telemetry::init(&policy.telemetry, false, None);
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    rt.block_on(async {
        let gw =
            Gateway::start(policy, PolicySource::Demo, Arc::new(Metrics::default())).await.expect("gateway starts");
        let sse = read(&load.join("reply_chat.sse"));
        let mut chunks = Vec::new();
        let mut rest = &sse[..];
        while let Some(i) = rest.windows(2).position(|w| w == b"\n\n") {
            chunks.push(sse.slice_ref(&rest[..i + 2]));
            rest = &rest[i + 2..];
        }
        let modes = [
            Mode {
                name: "json",
                path: "/v1/chat/completions",
                accept: "application/json",
                body: read(&load.join("chat.json")),
                reply: ScriptedReply::Json { status: 200, body: read(&load.join("reply_chat.json")) },
                expect: "chat.completion",
            },
            Mode {
                name: "sse",
                path: "/v1/chat/completions",
                accept: "text/event-stream",
                body: read(&load.join("chat_stream.json")),
                reply: ScriptedReply::Sse { status: 200, chunks },
                expect: "[DONE]",
            },
            Mode {
                name: "mcp",
                path: "/mcp/everything",
                accept: "application/json, text/event-stream",
                body: read(&load.join("mcp_call.json")),
                reply: ScriptedReply::Json { status: 200, body: read(&load.join("reply_mcp.json")) },
                expect: "Echo: the gateway",
            },
        ];
        // Read once, outside every counted region (reading the environment allocates).
        let n = n();
        println!(
            "Heap allocations per request, in-process pipeline, policies/example.toml ({n} requests after {WARMUP}):\n"
        );
        println!(
            "| mode | allocations | reallocations | bytes allocated | µs per request (one thread, not a load figure) |"
        );
        println!("|---|---:|---:|---:|---:|");
        // `FB_ALLOC_MODES=json,sse`: only these modes (a profile of one).
        let only = std::env::var("FB_ALLOC_MODES").ok();
        for m in modes.iter().filter(|m| only.as_deref().is_none_or(|o| o.split(',').any(|x| x == m.name))) {
            measure(&gw, m, n).await;
        }
        // The request body alone: the parse into a `Value` that the gateway did before issue 15
        // (with the field checks, which allocate nothing on a valid body), and `Payload::parse`.
        println!("\nThe request body alone ({n} parses):\n");
        println!("| body | `Value` parse: allocations, bytes | `Payload::parse`: allocations, bytes |");
        println!("|---|---:|---:|");
        for m in &modes[..2] {
            let count = |f: &dyn Fn()| {
                let region = Region::new(GLOBAL);
                for _ in 0..n {
                    f();
                }
                let s = region.change();
                (s.allocations as f64 / n as f64, s.bytes_allocated as f64 / n as f64)
            };
            let (va, vb) = count(&|| {
                std::hint::black_box(serde_json::from_slice::<serde_json::Value>(&m.body).expect("JSON"));
            });
            let (pa, pb) = count(&|| {
                std::hint::black_box(Payload::parse(Endpoint::ChatCompletions, &m.body).expect("parsed"));
            });
            println!("| {} ({} bytes) | {va:.1}, {vb:.0} | {pa:.1}, {pb:.0} |", m.name, m.body.len());
        }
    });
}
