//! Circuit breakers: the real gateway in front of a faulting upstream written here (connection
//! resets, 5xx, timeouts, client errors — switched at run time) and the test MCP server. Each test
//! counts the requests that reached the upstream, so "refused fast" means "never touched it".
//!
//! Short `open_for` durations keep the tests quick; waiting for half-open is a bounded loop.

mod common;
mod upstream;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use common::Gateway;
use upstream::gw::*;
use upstream::mcp::{McpClient, McpServer, PROTOCOL_VERSION};
use upstream::{chat_json, FakeUpstream, Reply};

/// What the faulting upstream does with the next requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// 200 with a chat completion.
    Ok,
    /// Reads the request, then resets the connection (RST).
    Reset,
    /// Answers with this status and an OpenAI-style error body.
    Status(u16),
    /// Reads the request and never answers.
    Hang,
}

/// A provider that fails on demand: a raw HTTP/1.1 server on 127.0.0.1, so it can reset
/// connections for real.
struct Faulty {
    url: String,
    mode: Arc<Mutex<Mode>>,
    hits: Arc<AtomicUsize>,
}

impl Faulty {
    async fn start() -> Faulty {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        let mode = Arc::new(Mutex::new(Mode::Ok));
        let hits = Arc::new(AtomicUsize::new(0));
        let (m, h) = (mode.clone(), hits.clone());
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(serve(stream, m.clone(), h.clone()));
            }
        });
        Faulty { url, mode, hits }
    }

    fn set(&self, m: Mode) {
        *self.mode.lock().unwrap() = m;
    }

    fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }
}

/// Serves requests on one connection (keep-alive) until the mode says otherwise.
async fn serve(mut s: TcpStream, mode: Arc<Mutex<Mode>>, hits: Arc<AtomicUsize>) {
    let mut buf = Vec::new();
    loop {
        // Head, then the body by content-length.
        let head_end = loop {
            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            let mut chunk = [0u8; 4096];
            match s.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        };
        let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
        let len: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length:"))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0);
        while buf.len() < head_end + len {
            let mut chunk = [0u8; 4096];
            match s.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
        buf.drain(..head_end + len);
        hits.fetch_add(1, Ordering::SeqCst);
        let m = *mode.lock().unwrap();
        let (status, body) = match m {
            Mode::Ok => (200, chat_json("healthy again", "gpt-test").to_string()),
            Mode::Status(code) => (
                code,
                json!({"error": {"message": "scripted upstream failure", "type": "server_error", "code": null}})
                    .to_string(),
            ),
            Mode::Reset => {
                let _ = s.set_zero_linger();
                return; // dropped with linger 0: RST
            }
            Mode::Hang => {
                tokio::time::sleep(Duration::from_secs(3600)).await;
                return;
            }
        };
        let resp = format!(
            "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
            body.len()
        );
        if s.write_all(resp.as_bytes()).await.is_err() {
            return;
        }
    }
}

/// The policy: `oai` (OpenAI) is the faulting upstream, `ant` (Anthropic) a healthy fake; `extra`
/// adds `[circuit]`, limits, routes.
async fn rig(extra: &str) -> (Faulty, FakeUpstream, Gateway) {
    let faulty = Faulty::start().await;
    let healthy = FakeUpstream::start().await;
    let gw = start_with(
        &Upstreams {
            openai_url: &faulty.url,
            openai_env: OPENAI_ENV,
            anthropic_url: &healthy.base_url(),
            anthropic_env: ANTHROPIC_ENV,
        },
        extra,
    );
    (faulty, healthy, gw)
}

const CHAT: &str = "/v1/chat/completions";

async fn chat(gw: &Gateway) -> Got {
    call(gw, CHAT, &chat_body("gpt-4o-mini", false)).await
}

/// The circuit of `name` in `GET /admin/v1/circuits`.
async fn circuit(gw: &Gateway, name: &str) -> Value {
    let (status, v) = gw.admin(reqwest::Method::GET, "/admin/v1/circuits", None).await;
    assert_eq!(status, 200, "{v}");
    v["circuits"]
        .as_array()
        .and_then(|l| l.iter().find(|c| c["name"] == name).cloned())
        .unwrap_or_else(|| panic!("no circuit `{name}` in {v}"))
}

/// The console's Now page, logged in with the admin token.
async fn console_now(gw: &Gateway) -> String {
    let client = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().expect("client");
    let login = client
        .post(format!("{}/console/login", gw.admin))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("token={}", common::ADMIN_TOKEN))
        .send()
        .await
        .expect("login");
    assert_eq!(login.status(), 303, "console login");
    let cookie = login
        .headers()
        .get("set-cookie")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .expect("session cookie")
        .to_owned();
    let page = client.get(format!("{}/console/now", gw.admin)).header("cookie", cookie).send().await.expect("console");
    assert_eq!(page.status(), 200);
    page.text().await.expect("page")
}

/// The `kind: circuit` audit records so far.
fn circuit_records(gw: &Gateway) -> Vec<Value> {
    std::fs::read_to_string(gw.dir.join("audit.jsonl"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|r| r["kind"] == "circuit")
        .collect()
}

/// Waits (bounded) until the audit trail has a circuit record with `event` for `target`.
async fn wait_record(gw: &Gateway, target: &str, event: &str, n: usize) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let recs: Vec<Value> =
            circuit_records(gw).into_iter().filter(|r| r["target"] == target && r["event"] == event).collect();
        if recs.len() >= n {
            return recs;
        }
        assert!(Instant::now() < deadline, "no {n} `{event}` records for {target}: {:?}", circuit_records(gw));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Asserts the fast refusal of an open circuit: 503 in the OpenAI format, a clear reason, and a
/// `Retry-After`.
fn assert_circuit_open(g: &Got, target: &str) {
    let msg = assert_openai_error(g, 503);
    assert_eq!(g.json()["error"]["code"], "circuit_open", "{}", g.text);
    assert!(msg.contains(&format!("`{target}`")) && msg.contains("circuit open"), "{msg}");
    let retry: u64 = g.header("retry-after").and_then(|v| v.parse().ok()).expect("Retry-After in seconds");
    assert!(retry >= 1, "Retry-After {retry}");
}

/// Sends requests (bounded, 10 s) until one is let through to the upstream as a half-open probe;
/// returns it. Requests refused meanwhile must be the circuit's fast 503.
async fn until_probe(gw: &Gateway, faulty: &Faulty, target: &str) -> Got {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let before = faulty.hits();
        let g = chat(gw).await;
        if faulty.hits() > before {
            return g;
        }
        assert_circuit_open(&g, target);
        assert!(Instant::now() < deadline, "the circuit never let a probe through");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_hundreds_open_the_circuit_then_a_probe_closes_it() {
    let (faulty, healthy, gw) = rig(r#"
[circuit]
consecutive_failures = 3
min_requests = 100
open_for = "400ms"
half_open_probes = 1
"#)
    .await;
    assert_eq!(circuit(&gw, "oai").await["state"], "closed");
    faulty.set(Mode::Status(503));
    for i in 0..3 {
        let g = chat(&gw).await;
        assert_eq!(g.status, 503, "request {i}: the upstream's own 503 is passed on: {}", g.text);
        assert_ne!(g.json()["error"]["code"], "circuit_open", "not refused by the gateway yet");
    }
    assert_eq!(faulty.hits(), 3);
    // Open: refused at once, without touching the upstream.
    for _ in 0..5 {
        assert_circuit_open(&chat(&gw).await, "oai");
    }
    assert_eq!(faulty.hits(), 3, "an open circuit sends nothing upstream");
    let c = circuit(&gw, "oai").await;
    assert_eq!(c["state"], "open", "{c}");
    assert_eq!(c["consecutive_failures"], 3, "{c}");
    assert_eq!(c["last_error"], "status_5xx", "{c}");
    assert!(c["time_in_state_ms"].is_u64() && c["since"].is_string(), "{c}");
    // The console's Now page shows the open circuit, as the API does.
    let now = console_now(&gw).await;
    let row = now.find("data-state=\"open\"").map(|at| &now[at..now[at..].find("</tr>").map_or(now.len(), |e| at + e)]);
    assert!(row.is_some_and(|r| r.contains("oai") && r.contains("status_5xx")), "no open `oai` row: {now}");
    // Another upstream's circuit is not affected.
    healthy.push(Reply::json(&upstream::anthropic_json("fine", "claude-test")));
    assert_eq!(call(&gw, "/v1/messages", &messages_body("claude-test", false)).await.status, 200);
    assert_eq!(circuit(&gw, "ant").await["state"], "closed");
    // After open_for, one probe: the upstream is healthy again, so the circuit closes.
    faulty.set(Mode::Ok);
    let probe = until_probe(&gw, &faulty, "oai").await;
    assert_eq!(probe.status, 200, "{}", probe.text);
    let c = circuit(&gw, "oai").await;
    assert_eq!(c["state"], "closed", "{c}");
    assert_eq!(c["consecutive_failures"], 0, "{c}");
    assert_eq!(c["transitions"], json!({"opened": 1, "half_open": 1, "closed": 1}), "{c}");
    assert_eq!(chat(&gw).await.status, 200);
    // Each transition is audited, with the target and the failure class.
    let opened = wait_record(&gw, "oai", "opened", 1).await;
    assert_eq!(opened[0]["target_kind"], "upstream");
    assert_eq!(opened[0]["error_class"], "status_5xx");
    assert_eq!(opened[0]["reason"], "consecutive_failures");
    assert_eq!(opened[0]["consecutive_failures"], 3);
    wait_record(&gw, "oai", "half_open", 1).await;
    assert_eq!(wait_record(&gw, "oai", "closed", 1).await[0]["reason"], "probes_succeeded");
    // Metrics: the state gauge and the transitions counter.
    let metrics = reqwest::Client::new()
        .get(format!("{}/metrics", gw.admin))
        .bearer_auth(common::ADMIN_TOKEN)
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("metrics body");
    assert!(metrics.contains("firebreak_circuit_state{kind=\"upstream\",target=\"oai\"} 0"), "{metrics}");
    assert!(
        metrics.contains("firebreak_circuit_transitions_total{kind=\"upstream\",target=\"oai\",to=\"opened\"} 1"),
        "{metrics}"
    );
    // The refusals were counted under their own rule.
    assert!(metrics.contains("rule=\"upstream.circuit_open\""), "{metrics}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_probe_opens_it_again_and_two_probes_must_succeed() {
    let (faulty, _healthy, gw) = rig(r#"
[circuit]
consecutive_failures = 2
open_for = "300ms"
half_open_probes = 2
"#)
    .await;
    faulty.set(Mode::Reset);
    for _ in 0..2 {
        let g = chat(&gw).await;
        assert_openai_error(&g, 502);
    }
    let hits = faulty.hits();
    assert_circuit_open(&chat(&gw).await, "oai");
    assert_eq!(faulty.hits(), hits);
    assert_eq!(circuit(&gw, "oai").await["last_error"], "reset");
    // The probe meets a reset too: open again at once.
    let probe = until_probe(&gw, &faulty, "oai").await;
    assert_openai_error(&probe, 502);
    let hits = faulty.hits();
    assert_circuit_open(&chat(&gw).await, "oai");
    assert_eq!(faulty.hits(), hits, "re-opened: nothing reaches the upstream");
    let c = circuit(&gw, "oai").await;
    assert_eq!((c["state"].as_str(), c["transitions"]["opened"].as_u64()), (Some("open"), Some(2)), "{c}");
    let reopened = wait_record(&gw, "oai", "opened", 2).await;
    assert_eq!(reopened[1]["reason"], "probe_failed");
    assert_eq!(reopened[1]["error_class"], "reset");
    // Two probes must both succeed before it closes.
    faulty.set(Mode::Ok);
    assert_eq!(until_probe(&gw, &faulty, "oai").await.status, 200);
    assert_eq!(circuit(&gw, "oai").await["state"], "half_open", "one probe of two succeeded");
    assert_eq!(chat(&gw).await.status, 200);
    assert_eq!(circuit(&gw, "oai").await["state"], "closed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timeouts_and_connect_errors_count() {
    // `ant` points at a port where nothing listens.
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        format!("http://{}", l.local_addr().expect("addr"))
    };
    let faulty = Faulty::start().await;
    let gw = start_with(
        &Upstreams {
            openai_url: &faulty.url,
            openai_env: OPENAI_ENV,
            anthropic_url: &dead,
            anthropic_env: ANTHROPIC_ENV,
        },
        r#"
[limits]
upstream_timeout_ms = 300

[circuit]
consecutive_failures = 2
open_for = "1h"
"#,
    );
    faulty.set(Mode::Hang);
    for _ in 0..2 {
        assert_openai_error(&chat(&gw).await, 504);
    }
    let started = Instant::now();
    assert_circuit_open(&chat(&gw).await, "oai");
    assert!(started.elapsed() < Duration::from_millis(250), "refused without waiting for the upstream");
    let c = circuit(&gw, "oai").await;
    assert_eq!((c["state"].as_str(), c["last_error"].as_str()), (Some("open"), Some("timeout")), "{c}");
    assert!(c["retry_after_ms"].as_u64().is_some_and(|ms| ms > 3_000_000), "{c}");
    // Connection refused, on the Anthropic side: the refusal is in Anthropic's format.
    for _ in 0..2 {
        assert_anthropic_error(&call(&gw, "/v1/messages", &messages_body("claude-test", false)).await, 502);
    }
    let g = call(&gw, "/v1/messages", &messages_body("claude-test", false)).await;
    let msg = assert_anthropic_error(&g, 503);
    assert!(msg.contains("`ant`") && msg.contains("connect"), "{msg}");
    assert!(g.header("retry-after").is_some());
    assert_eq!(circuit(&gw, "ant").await["last_error"], "connect");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_fallback_takes_the_route_while_the_circuit_is_open() {
    let backup = FakeUpstream::start().await;
    backup.set_default(Reply::json(&chat_json("from the backup", "gpt-test")));
    let (faulty, _healthy, gw) = rig(&format!(
        r#"
[upstreams.backup]
kind = "openai"
base_url = "{}"
credential_env = "{OPENAI_ENV}"

[[routes]]
api = "openai"
upstream = "oai"
fallback = "backup"

[circuit]
consecutive_failures = 2
open_for = "1h"
"#,
        backup.base_url()
    ))
    .await;
    assert_eq!(chat(&gw).await.status, 200);
    assert_eq!(backup.count(), 0, "the fallback is used only while the circuit is open");
    faulty.set(Mode::Status(500));
    for _ in 0..2 {
        assert_eq!(chat(&gw).await.status, 500);
    }
    let hits = faulty.hits();
    for _ in 0..3 {
        let g = chat(&gw).await;
        assert_eq!(g.status, 200, "{}", g.text);
        assert_eq!(g.json()["choices"][0]["message"]["content"], "from the backup");
    }
    assert_eq!(faulty.hits(), hits, "the open upstream is not touched");
    assert_eq!(backup.count(), 3);
    // The request's audit record names the upstream that served it and the fallback decision.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let text = std::fs::read_to_string(gw.dir.join("audit.jsonl")).unwrap_or_default();
        let served: Vec<Value> = text
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter(|r| r["kind"] == "request" && r["upstream"] == "backup")
            .collect();
        if served.len() == 3 {
            assert!(served[0]["decisions"].to_string().contains("upstream.fallback"), "{}", served[0]);
            break;
        }
        assert!(Instant::now() < deadline, "request records served by the backup: {served:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_errors_and_uncounted_429s_never_open_it() {
    let (faulty, _healthy, gw) = rig(r#"
[circuit]
consecutive_failures = 2
min_requests = 2
failure_rate = 0.1
open_for = "1h"
"#)
    .await;
    for code in [400, 401, 404, 422, 429] {
        faulty.set(Mode::Status(code));
        for _ in 0..3 {
            assert_eq!(chat(&gw).await.status, code);
        }
    }
    assert_eq!(faulty.hits(), 15, "every request reached the upstream");
    let c = circuit(&gw, "oai").await;
    assert_eq!((c["state"].as_str(), c["consecutive_failures"].as_u64()), (Some("closed"), Some(0)), "{c}");
    assert_eq!(c["failures_in_window"], 0, "{c}");
    assert!(circuit_records(&gw).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_counted_429_and_the_failure_rate_open_it() {
    let (faulty, _healthy, gw) = rig(r#"
[circuit]
consecutive_failures = 100
failure_rate = 0.5
min_requests = 4
window = "1m"
open_for = "1h"

[upstreams.oai.circuit]
count_429 = true
"#)
    .await;
    // ok, 429, ok, 429: half of four requests failed.
    for m in [Mode::Ok, Mode::Status(429), Mode::Ok] {
        faulty.set(m);
        chat(&gw).await;
    }
    assert_eq!(circuit(&gw, "oai").await["state"], "closed", "3 requests are fewer than min_requests");
    faulty.set(Mode::Status(429));
    assert_eq!(chat(&gw).await.status, 429);
    let c = circuit(&gw, "oai").await;
    assert_eq!((c["state"].as_str(), c["last_error"].as_str()), (Some("open"), Some("status_429")), "{c}");
    assert_eq!(wait_record(&gw, "oai", "opened", 1).await[0]["reason"], "failure_rate");
    // The override applies to `oai` only; `ant` has the global settings.
    assert_eq!(circuit(&gw, "ant").await["settings"]["count_429"], false);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn circuit_status_cli_and_targets_without_a_breaker() {
    let (faulty, _healthy, gw) = rig(r#"
[circuit]
consecutive_failures = 1
open_for = "1h"

[upstreams.ant.circuit]
enabled = false
"#)
    .await;
    faulty.set(Mode::Status(502));
    chat(&gw).await;
    let (ok, out, err) = tokio::task::block_in_place(|| gw.cli(&["admin", "circuit-status"]));
    assert!(ok, "{out}{err}");
    let line = out.lines().find(|l| l.starts_with("oai ")).unwrap_or_else(|| panic!("{out}"));
    for want in ["upstream", "open", "100% (1/1)", "status_5xx"] {
        assert!(line.contains(want), "`{want}` in: {line}");
    }
    let ant = out.lines().find(|l| l.starts_with("ant ")).unwrap_or_else(|| panic!("{out}"));
    assert!(ant.contains(" off"), "{ant}");
    let (ok, out, _) = tokio::task::block_in_place(|| gw.cli(&["admin", "circuit-status", "--json"]));
    assert!(ok);
    let v: Value = serde_json::from_str(&out).expect("JSON");
    assert_eq!(v["circuits"][1]["name"], "oai", "{v}");
    assert_eq!(v["circuits"][1]["state"], "open", "{v}");
    assert_eq!(v["circuits"][0]["enabled"], false, "{v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_mcp_server_circuit_answers_json_rpc_errors() {
    const KEY: &str = "fb-vk-circuit-mcp-4e1d2a9b7c";
    let srv = McpServer::start().await;
    let policy = format!(
        r#"
[incidents]
auto_contain = false

[[keys]]
id = "k"
sha256 = "{}"
tenant = "t"
user = "u"
role = "r"

[roles.r]
mcp = ["docs/*"]

[mcp_servers.docs]
url = "{}"

[mcp_servers.docs.circuit]
consecutive_failures = 2
open_for = "300ms"
half_open_probes = 1
"#,
        common::sha256_hex(KEY),
        srv.url()
    );
    let gw = tokio::task::block_in_place(|| Gateway::start(&policy));
    let mut c = McpClient::new(&gw.url("/mcp/docs"), Some(KEY));
    c.initialize(PROTOCOL_VERSION).await;
    srv.fail_next(upstream::mcp::Fault::Status(503));
    srv.fail_next(upstream::mcp::Fault::Status(500));
    let list = upstream::mcp::request(7, "tools/list", json!({}));
    assert_eq!(c.post(&list).await.status, 503);
    assert_eq!(c.post(&list).await.status, 500);
    let hits = srv.count();
    let g = c.post(&list).await;
    assert_eq!(g.status, 503, "{}", g.text);
    let v = g.json();
    assert_eq!(v["jsonrpc"], "2.0");
    assert_eq!(v["id"], 7, "the error answers the request's id: {v}");
    assert_eq!(v["error"]["data"]["reason"], "upstream.circuit_open", "{v}");
    let msg = v["error"]["message"].as_str().unwrap_or_default();
    assert!(msg.contains("MCP server `docs`") && msg.contains("circuit open"), "{msg}");
    assert!(g.header("retry-after").is_some());
    assert_eq!(srv.count(), hits, "an open circuit sends nothing to the server");
    assert_eq!(circuit(&gw, "docs").await["kind"], "mcp_server");
    // After open_for a probe gets through; the server is fine again, so the circuit closes.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let g = c.post(&list).await;
        if g.status == 200 {
            assert!(g.json()["result"]["tools"].is_array(), "{}", g.text);
            break;
        }
        assert_eq!(g.status, 503, "{}", g.text);
        assert!(Instant::now() < deadline, "no probe let through");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(circuit(&gw, "docs").await["state"], "closed");
    let opened = wait_record(&gw, "docs", "opened", 1).await;
    assert_eq!(opened[0]["target_kind"], "mcp_server");
    wait_record(&gw, "docs", "closed", 1).await;
}

#[test]
fn check_reports_bad_circuit_settings_and_fallbacks() {
    let dir = tempfile::tempdir().expect("tempdir");
    let policy = r#"
[upstreams.a]
kind = "openai"
base_url = "http://127.0.0.1:9"

[upstreams.b]
kind = "anthropic"
base_url = "http://127.0.0.1:9"

[[routes]]
api = "openai"
upstream = "a"
fallback = "b"

[[routes]]
api = "anthropic"
upstream = "b"
fallback = "nowhere"

[circuit]
consecutive_failures = 0
failure_rate = 1.5
window = "soon"
open_for = "0s"

[upstreams.b.circuit]
enabled = false
"#;
    let path = dir.path().join("policy.toml");
    std::fs::write(&path, policy).expect("write");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_firebreak"))
        .arg("check")
        .arg(&path)
        .output()
        .expect("run check");
    let text = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{text}");
    for want in [
        "consecutive_failures",
        "failure_rate",
        "window `soon` is not a duration",
        "open_for `0s` is out of range",
        "does not speak the openai API",
        "unknown fallback upstream `nowhere`",
        "upstream `b` has no circuit breaker",
    ] {
        assert!(text.contains(want), "`{want}` in:\n{text}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_keeps_the_state_and_can_turn_a_breaker_off() {
    let extra = r#"
[circuit]
consecutive_failures = 1
open_for = "1h"
"#;
    let (faulty, _healthy, gw) = rig(extra).await;
    faulty.set(Mode::Status(500));
    chat(&gw).await;
    assert_circuit_open(&chat(&gw).await, "oai");
    // The same policy reloaded: the circuit stays open (a reload is no way around it).
    let (status, v) = gw.admin(reqwest::Method::POST, "/admin/v1/policy/reload", Some(json!({}))).await;
    assert_eq!(status, 200, "{v}");
    assert_circuit_open(&chat(&gw).await, "oai");
    // The operator turns `oai`'s breaker off: requests reach it again.
    let path = gw.dir.join("policy.toml");
    let text = std::fs::read_to_string(&path).expect("policy") + "\n[upstreams.oai.circuit]\nenabled = false\n";
    std::fs::write(&path, text).expect("write policy");
    let (status, v) = gw.admin(reqwest::Method::POST, "/admin/v1/policy/reload", Some(json!({}))).await;
    assert_eq!(status, 200, "{v}");
    faulty.set(Mode::Ok);
    assert_eq!(chat(&gw).await.status, 200);
    assert_eq!(circuit(&gw, "oai").await["enabled"], false);
}
