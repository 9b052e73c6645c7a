//! Hardening of the audit trail (issue 13, items 3, 16, 17, 18), against the real gateway binary:
//! client-chosen strings never reach the trail in clear, the file is private, the chain is keyed,
//! and a trail that cannot be written fails closed.

mod common;

use std::path::Path;

use common::{sha256_hex, Gateway};
use serde_json::{json, Value};

const ALICE: &str = "sk-fb-hardening-alice-5e1f0a2b";
/// Credentials a careless client puts where the gateway does not expect them.
const AWS_KEY_ID: &str = "AKIAZ7QH3K2M9XW4LR5T";
const OPENAI_KEY: &str = "sk-proj-Q7vX2mT9pL4kR8sW1nB6cY3dF5gH0jZa";

fn policy(extra: &str) -> String {
    format!(
        r#"
[upstreams.scripted]
kind = "scripted"
chunk_chars = 16
chunk_delay_ms = 0

[[upstreams.scripted.replies]]
text = "Hello from the scripted upstream."

[[keys]]
id = "alice-key"
sha256 = "{alice}"
tenant = "acme"
user = "alice"
role = "developer"

[roles.developer]
tools = ["calc"]
mcp = ["docs/*"]

# Never reached in these tests: the gateway answers before it would forward.
[mcp_servers.docs]
url = "http://127.0.0.1:9/mcp"
{extra}
"#,
        alice = sha256_hex(ALICE),
    )
}

fn records(file: &Path) -> Vec<Value> {
    std::fs::read_to_string(file)
        .expect("audit file")
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON record"))
        .collect()
}

/// A switch change: acknowledged only once its record is durable, and the writer keeps order, so
/// every record queued before it is in the file when it returns.
async fn barrier(g: &Gateway) {
    let (status, body) =
        g.switches(json!({"actions": [{"action": "safe_mode", "enabled": false}], "reason": "barrier"})).await;
    assert_eq!(status, 200, "{body}");
}

fn tool(name: &str) -> Value {
    json!({"type": "function", "function": {"name": name, "parameters": {"type": "object", "properties": {}}}})
}

/// Item 3: a session id, a model name and the name of a stripped tool are the client's to choose;
/// a credential put there must not land in the trail, nor a terminal escape sequence, nor 10 KB.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_strings_reach_the_trail_redacted_escaped_capped_and_sessions_hashed() {
    let g = Gateway::start(&policy(""));
    let model = format!("gpt-test {AWS_KEY_ID} \u{1b}[31mred");
    let long_tool = "t".repeat(10_000);
    let resp = reqwest::Client::new()
        .post(g.url("/v1/chat/completions"))
        .bearer_auth(ALICE)
        .header("x-session-id", OPENAI_KEY)
        .json(&json!({
            "model": model,
            "messages": [{"role": "user", "content": "hi"}],
            "tools": [tool("calc"), tool(OPENAI_KEY), tool(&long_tool)],
        }))
        .send()
        .await
        .expect("chat");
    assert_eq!(resp.status().as_u16(), 200, "{}", resp.text().await.unwrap_or_default());
    // An MCP server name comes from the path: the client's too.
    let resp = reqwest::Client::new()
        .post(g.url(&format!("/mcp/{AWS_KEY_ID}")))
        .bearer_auth(ALICE)
        .json(&json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list"}))
        .send()
        .await
        .expect("mcp");
    assert_eq!(resp.status().as_u16(), 404);
    // A containment switch naming the session: its record carries the session too.
    let (status, body) = g
        .switches(json!({"actions": [{"action": "terminate_session", "session": OPENAI_KEY}], "reason": "leaked"}))
        .await;
    assert_eq!(status, 200, "{body}");
    barrier(&g).await;

    let file = g.dir.join("audit.jsonl");
    let text = std::fs::read_to_string(&file).expect("audit file");
    for secret in [AWS_KEY_ID, OPENAI_KEY, &OPENAI_KEY[3..]] {
        assert!(!text.contains(secret), "the trail holds {secret}:\n{text}");
    }
    assert!(!text.contains('\u{1b}') && !text.contains("\\u001b"), "a raw escape character in the trail");
    let digest = format!("sha256:{}", &sha256_hex(OPENAI_KEY)[..16]);
    let recs = records(&file);
    let req = recs.iter().find(|r| r["kind"] == "request" && r["tools_removed"].is_array()).expect("request record");
    assert_eq!(req["session"], json!(digest), "the session is stored as its digest: {req}");
    let m = req["model"].as_str().expect("model");
    assert!(m.starts_with("gpt-test [REDACTED:aws_access_key_id]"), "model redacted: {m}");
    assert!(m.contains("\\u{1b}[31mred"), "the escape character is written visibly: {m}");
    let removed: Vec<&str> = req["tools_removed"].as_array().expect("list").iter().filter_map(Value::as_str).collect();
    assert_eq!(removed.len(), 2, "{removed:?}");
    assert!(removed[0].starts_with("[REDACTED:openai_api_key"), "tool name redacted: {removed:?}");
    assert_eq!(removed[1].chars().count(), 129, "a long name is cut to 128 characters and a marker");
    assert!(removed[1].ends_with('…'));
    let mcp = recs.iter().find(|r| r["kind"] == "mcp").expect("mcp record");
    assert_eq!(mcp["server"], "[REDACTED:aws_access_key_id]", "{mcp}");
    let switch = recs.iter().find(|r| r["kind"] == "switch" && r["reason"] == "leaked").expect("switch record");
    assert_eq!(switch["actions"][0]["session"], json!(digest), "{switch}");
}

/// Item 18: the trail and its head file are private to the gateway's user, like the state file.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_files_are_created_private() {
    use std::os::unix::fs::PermissionsExt;
    let g = Gateway::start(&policy(""));
    barrier(&g).await;
    for name in ["audit.jsonl", "audit.jsonl.head"] {
        let mode = std::fs::metadata(g.dir.join(name)).expect(name).permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{name} is created {mode:o}");
    }
}

// === item 17: a trail that cannot be written ===

/// A gateway whose files may grow to `soft_kib` KiB only (`RLIMIT_FSIZE`, soft limit): past it every
/// write fails with EFBIG, as on a full disk, for root too (CI runs as root, so permissions would
/// not do). `SIGXFSZ` is ignored so the write fails instead of the signal killing the process. The
/// hard limit stays, so the test lifts the soft one later with `prlimit --pid` (no privilege).
struct Limited {
    gw: Gateway,
}

impl std::ops::Deref for Limited {
    type Target = Gateway;
    fn deref(&self) -> &Gateway {
        &self.gw
    }
}

impl Limited {
    fn spawn(dir: &Path, soft_kib: u64) -> Limited {
        let limit = format!("trap '' XFSZ; ulimit -S -f {soft_kib} && exec \"$0\" \"$@\"");
        let gw = Gateway::try_spawn_wrapped(dir, &[], &["bash", "-c", &limit])
            .unwrap_or_else(|e| panic!("bash (needed to set RLIMIT_FSIZE) or the gateway failed: {e}"));
        Limited { gw }
    }

    async fn chat(&self) -> (u16, String) {
        let resp = reqwest::Client::new()
            .post(format!("{}/v1/chat/completions", self.proxy))
            .bearer_auth(ALICE)
            .json(&json!({"model": "gpt-test", "messages": [{"role": "user", "content": "hi"}]}))
            .send()
            .await
            .expect("chat");
        (resp.status().as_u16(), resp.text().await.unwrap_or_default())
    }

    async fn admin(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> (u16, String) {
        let mut rb =
            reqwest::Client::new().request(method, format!("{}{}", self.admin, path)).bearer_auth(common::ADMIN_TOKEN);
        if let Some(b) = body {
            rb = rb.json(&b);
        }
        let resp = rb.send().await.expect("admin request");
        (resp.status().as_u16(), resp.text().await.unwrap_or_default())
    }

    /// Lifts the file-size limit: the disk has space again.
    fn free_disk(&self) {
        let ok = std::process::Command::new("prlimit")
            .args(["--pid", &self.gw.pid().to_string(), "--fsize=unlimited:"])
            .status()
            .expect("prlimit (util-linux) is needed by this test");
        assert!(ok.success(), "prlimit failed");
    }
}

fn stderr_of(dir: &Path) -> String {
    std::fs::read_to_string(dir.join("stderr.log")).unwrap_or_default()
}

/// Sends requests until one is refused for the audit trail; returns (200s, 503s) sent.
async fn fill_the_disk(g: &Limited, expect_refusal: bool) -> (u64, u64) {
    let (mut ok, mut refused) = (0u64, 0u64);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let (status, body) = g.chat().await;
        match status {
            200 => ok += 1,
            503 => {
                assert!(body.contains("cannot write its audit trail"), "a clear reason: {body}");
                refused += 1;
            }
            s => panic!("unexpected {s}: {body}"),
        }
        if refused > 0 || (!expect_refusal && g.admin(reqwest::Method::GET, "/readyz", None).await.0 == 503) {
            // A few more, all refused (closed) or all served (open).
            for _ in 0..3 {
                let (status, body) = g.chat().await;
                if expect_refusal {
                    assert_eq!(status, 503, "{body}");
                    refused += 1;
                } else {
                    assert_eq!(status, 200, "fail_open serves on: {body}");
                    ok += 1;
                }
            }
            return (ok, refused);
        }
        assert!(std::time::Instant::now() < deadline, "the trail never filled up after {ok} requests");
    }
}

async fn wait_ready(g: &Limited) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while g.admin(reqwest::Method::GET, "/readyz", None).await.0 != 200 {
        assert!(std::time::Instant::now() < deadline, "not ready again: {}", stderr_of(&g.dir));
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

fn verify(file: &Path, extra: &[&str]) -> (i32, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_firebreak"))
        .args(["audit", "verify"])
        .arg(file)
        .args(extra)
        .output()
        .expect("firebreak audit verify");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.code().unwrap_or(-1), text)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_audit_disk_fails_closed_refuses_switches_and_loses_nothing() {
    let tmp = tempfile::tempdir().expect("tempdir");
    std::fs::write(tmp.path().join("policy.toml"), policy("")).expect("policy");
    let g = Limited::spawn(tmp.path(), 24);
    let (ok, refused) = fill_the_disk(&g, true).await;
    assert!(ok > 10 && refused > 0, "{ok} served, then refused");

    let (status, body) = g.admin(reqwest::Method::GET, "/readyz", None).await;
    assert_eq!(status, 503, "not ready while the trail cannot be written: {body}");
    assert!(body.contains("audit trail cannot be written") && body.contains("File too large"), "{body}");
    let (_, metrics) = g.admin(reqwest::Method::GET, "/metrics", None).await;
    assert!(metrics.contains("firebreak_audit_writable 0"), "{metrics}");
    assert!(!metrics.contains("firebreak_audit_write_errors_total 0\n"), "write errors counted: {metrics}");
    assert!(metrics.contains("rule=\"audit.unavailable\",action=\"error\""), "refusals counted: {metrics}");
    assert!(stderr_of(&g.dir).contains("audit write failed"), "an error is logged: {}", stderr_of(&g.dir));
    // MCP too, as a JSON-RPC error answering the request's id.
    let resp = reqwest::Client::new()
        .post(format!("{}/mcp/docs", g.proxy))
        .bearer_auth(ALICE)
        .header("accept", "application/json, text/event-stream")
        .json(&json!({"jsonrpc": "2.0", "id": 41, "method": "tools/list"}))
        .send()
        .await
        .expect("mcp");
    assert_eq!(resp.status().as_u16(), 503);
    let body: Value = resp.json().await.expect("JSON-RPC error");
    assert_eq!(body["id"], 41, "{body}");
    assert!(body["error"]["message"].as_str().is_some_and(|m| m.contains("audit trail")), "{body}");

    // A switch is not acknowledged, and not applied either.
    let (status, body) = g
        .admin(
            reqwest::Method::POST,
            "/admin/v1/switches",
            Some(json!({"actions": [{"action": "set_level", "level": "lockdown"}], "reason": "incident"})),
        )
        .await;
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("audit_unavailable") && body.contains("nothing was changed"), "{body}");
    let (_, state) = g.admin(reqwest::Method::GET, "/admin/v1/state", None).await;
    let state: Value = serde_json::from_str(&state).expect("state");
    assert_eq!(state["level"], "normal", "{state}");

    // Space again: the held records are written, the gateway is ready, switches work.
    g.free_disk();
    wait_ready(&g).await;
    assert_eq!(g.chat().await.0, 200);
    let (status, body) = g
        .admin(
            reqwest::Method::POST,
            "/admin/v1/switches",
            Some(json!({"actions": [{"action": "safe_mode", "enabled": false}], "reason": "disk freed"})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let ack: Value = serde_json::from_str(&body).expect("ack");
    assert!(ack["audit_seq"].as_u64().is_some(), "acknowledged with its record's seq: {ack}");

    let file = g.dir.join("audit.jsonl");
    let recs = records(&file);
    let seqs: Vec<u64> = recs.iter().map(|r| r["seq"].as_u64().expect("seq")).collect();
    assert_eq!(seqs, (1..=seqs.len() as u64).collect::<Vec<_>>(), "no gap in the chain");
    let requests = |status: u64| recs.iter().filter(|r| r["kind"] == "request" && r["status"] == status).count() as u64;
    assert_eq!(requests(200), ok + 1, "every served request is in the trail");
    assert_eq!(requests(503), refused, "every refused request is in the trail");
    let (code, out) = verify(&file, &[]);
    assert_eq!(code, 0, "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fail_open_serves_on_but_is_not_ready() {
    let tmp = tempfile::tempdir().expect("tempdir");
    std::fs::write(tmp.path().join("policy.toml"), policy("[audit]\non_failure = \"fail_open\"\n")).expect("policy");
    let g = Limited::spawn(tmp.path(), 24);
    let (_ok, refused) = fill_the_disk(&g, false).await;
    assert_eq!(refused, 0);
    let (status, body) = g.admin(reqwest::Method::GET, "/readyz", None).await;
    assert_eq!(status, 503, "{body}");
    let (_, metrics) = g.admin(reqwest::Method::GET, "/metrics", None).await;
    assert!(metrics.contains("firebreak_audit_writable 0"), "{metrics}");
    assert!(stderr_of(&g.dir).contains("audit write failed"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_torn_last_line_is_cut_off_and_recorded_at_start_up() {
    let mut g = Gateway::start(&policy(""));
    barrier(&g).await;
    g.kill();
    let file = g.dir.join("audit.jsonl");
    let before = records(&file);
    let torn = br#"{"kind":"request","event":"decision","request_id":"req_0"#;
    let mut f = std::fs::OpenOptions::new().append(true).open(&file).expect("append");
    std::io::Write::write_all(&mut f, torn).expect("torn write");
    drop(f);

    let g2 = Gateway::try_spawn(&g.dir).unwrap_or_else(|e| panic!("a torn last line must not stop start-up: {e}"));
    // Written at start-up, not with the first request.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !std::fs::read_to_string(&file).is_ok_and(|t| t.contains("\"recovered\"") && t.ends_with('\n')) {
        assert!(std::time::Instant::now() < deadline, "no recovered record: {}", g2.stderr());
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let after = records(&file);
    let rec = &after[before.len()];
    assert_eq!(rec["kind"], "audit", "{rec}");
    assert_eq!(rec["event"], "recovered", "{rec}");
    assert_eq!(rec["torn_bytes"], torn.len() as u64, "{rec}");
    assert!(g2.stderr().contains("incomplete record"), "logged: {}", g2.stderr());
    let (code, out) = verify(&file, &[]);
    assert_eq!(code, 0, "{out}");
}

// === item 16: a keyed chain, a head that must be there ===

/// A MAC made with a key that is not the gateway's (what a forger with write access can make).
fn forged_mac(data: &str) -> String {
    let k = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, b"an attacker's own key, 32+ bytes long");
    hex::encode(ring::hmac::sign(&k, data.as_bytes()).as_ref())
}

fn sha(m: &serde_json::Map<String, Value>) -> String {
    use sha2::{Digest, Sha256};
    hex::encode(Sha256::digest(serde_json::to_string(m).expect("json").as_bytes()))
}

fn write_trail(dir: &Path, name: &str, lines: &[String], head: Option<&str>) -> std::path::PathBuf {
    let file = dir.join(name);
    std::fs::write(&file, lines.iter().map(|l| format!("{l}\n")).collect::<String>()).expect("trail");
    let head_file = dir.join(format!("{name}.head"));
    match head {
        Some(h) => std::fs::write(head_file, h).expect("head"),
        None => {
            let _ = std::fs::remove_file(head_file);
        }
    }
    file
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_records_and_truncation_without_the_head_are_found() {
    let g = Gateway::start(&policy(""));
    for _ in 0..3 {
        barrier(&g).await;
    }
    assert!(g.stderr().contains("generated an audit key"), "the generated key is announced: {}", g.stderr());
    let key_file = g.dir.join("audit.jsonl.key");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(std::fs::metadata(&key_file).expect("key file").permissions().mode() & 0o777, 0o600);
    let key_text = std::fs::read_to_string(&key_file).expect("key");
    let file = g.dir.join("audit.jsonl");
    let trail = std::fs::read_to_string(&file).expect("trail");
    assert!(!trail.contains(key_text.trim()), "the key is not in the trail");
    let (code, out) = verify(&file, &[]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("OK") && out.contains("head authenticated"), "{out}");

    let orig: Vec<String> = trail.lines().map(str::to_owned).collect();
    let n = orig.len();
    let last: serde_json::Map<String, Value> = serde_json::from_str(&orig[n - 1]).expect("record");
    let kid = last["kid"].as_str().expect("kid").to_owned();
    assert_eq!(kid.len(), 16);
    assert!(last.get("hash").is_none() && last["mac"].as_str().is_some_and(|m| m.len() == 64), "{last:?}");
    let head = std::fs::read_to_string(g.dir.join("audit.jsonl.head")).expect("head");
    let dir = tempfile::tempdir().expect("tempdir");
    let key_arg = ["--key-file", key_file.to_str().expect("utf-8")];

    // (b) A record appended with a correctly computed prev and seq, MACed with another key.
    let mut forged = serde_json::Map::new();
    forged.insert("kind".into(), json!("switch"));
    forged.insert("actor".into(), json!("mallory"));
    forged.insert("reason".into(), json!("routine"));
    forged.insert("seq".into(), json!(last["seq"].as_u64().expect("seq") + 1));
    forged.insert("time".into(), last["time"].clone());
    forged.insert("prev".into(), last["mac"].clone());
    forged.insert("kid".into(), json!(kid));
    let mac = forged_mac(&serde_json::to_string(&forged).expect("json"));
    forged.insert("mac".into(), json!(mac));
    let mut appended = orig.clone();
    appended.push(serde_json::to_string(&forged).expect("json"));
    let f = write_trail(dir.path(), "appended.jsonl", &appended, Some(&head));
    let (code, out) = verify(&f, &key_arg);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains(&format!("line {}:", n + 1)) && out.contains("MAC does not match"), "{out}");
    //    …or as a legacy, unkeyed record (SHA-256, which anyone can compute).
    forged.remove("mac");
    forged.remove("kid");
    let h = sha(&forged);
    forged.insert("hash".into(), json!(h));
    appended[n] = serde_json::to_string(&forged).expect("json");
    let f = write_trail(dir.path(), "appended-legacy.jsonl", &appended, Some(&head));
    let (code, out) = verify(&f, &key_arg);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("unkeyed record after keyed ones"), "{out}");

    // (a) The tail cut and the head deleted, garbled, or forged.
    let cut = &orig[..n - 2];
    let f = write_trail(dir.path(), "cut-nohead.jsonl", cut, None);
    let (code, out) = verify(&f, &key_arg);
    assert_eq!(code, 1, "a missing head is an error: {out}");
    assert!(out.contains("--allow-missing-head"), "{out}");
    let (code, out) = verify(&f, &[key_arg[0], key_arg[1], "--allow-missing-head"]);
    assert_eq!(code, 0, "allowed explicitly: {out}");
    assert!(out.contains("NO head file"), "and said so: {out}");
    let f = write_trail(dir.path(), "cut-garbled.jsonl", cut, Some("{\"seq\":7,\"ki"));
    let (code, out) = verify(&f, &key_arg);
    assert_eq!(code, 1, "a garbled head is an error, not ignored: {out}");
    let before: serde_json::Map<String, Value> = serde_json::from_str(&cut[cut.len() - 1]).expect("record");
    let fake = json!({"seq": before["seq"], "kid": kid, "mac": forged_mac("a head for a shorter trail")}).to_string();
    let f = write_trail(dir.path(), "cut-forged-head.jsonl", cut, Some(&fake));
    let (code, out) = verify(&f, &key_arg);
    assert_eq!(code, 1, "a head rewritten to fit is found: {out}");
    assert!(out.contains("head file does not match"), "{out}");
    //    The original head with the cut trail: records removed from the end.
    let f = write_trail(dir.path(), "cut.jsonl", cut, Some(&head));
    let (code, out) = verify(&f, &key_arg);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("removed from the end"), "{out}");

    // Without the key: the structure is checked, and the answer says authenticity is not proven.
    let f = write_trail(dir.path(), "nokey.jsonl", &orig, Some(&head));
    let (code, out) = verify(&f, &[]);
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("UNPROVEN") && out.contains(&kid), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_rotate_with_a_record_signed_by_the_old_key_and_legacy_trails_continue() {
    // A legacy trail (written before keys: a SHA-256 chain), continued by a keyed gateway.
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path();
    let mut prev = "0".repeat(64);
    let mut legacy = Vec::new();
    for seq in 1..=3u64 {
        let mut m = serde_json::Map::new();
        m.insert("kind".into(), json!("policy"));
        m.insert("event".into(), json!("reloaded"));
        m.insert("seq".into(), json!(seq));
        m.insert("time".into(), json!("2026-12-01T00:00:00.000Z"));
        m.insert("prev".into(), json!(prev));
        prev = sha(&m);
        m.insert("hash".into(), json!(prev));
        legacy.push(serde_json::to_string(&m).expect("json"));
    }
    let legacy_head = json!({"seq": 3, "hash": prev}).to_string();
    let f = write_trail(dir, "legacy-only.jsonl", &legacy, Some(&legacy_head));
    let (code, out) = verify(&f, &[]);
    assert_eq!(code, 2, "a legacy trail proves order only: {out}");
    assert!(out.contains("3 legacy unkeyed record(s)"), "{out}");

    let old_key = "11".repeat(32);
    let new_key = "22".repeat(32);
    std::fs::write(dir.join("old.key"), &old_key).expect("key");
    std::fs::write(dir.join("new.key"), &new_key).expect("key");
    write_trail(dir, "audit.jsonl", &legacy, Some(&legacy_head));
    std::fs::write(dir.join("policy.toml"), policy("[audit]\nkey_file = \"old.key\"\n")).expect("policy");
    let mut g = Gateway::spawn(dir);
    barrier(&g).await;
    g.kill();
    let file = dir.join("audit.jsonl");
    let (code, out) = verify(&file, &["--key-file", dir.join("old.key").to_str().expect("utf-8")]);
    assert_eq!(code, 0, "legacy records first, pinned by the keyed ones: {out}");
    assert!(out.contains("3 legacy unkeyed record(s) first (pinned"), "{out}");

    // A new key without the old one: refused, saying what to do.
    std::fs::write(dir.join("policy.toml"), policy("[audit]\nkey_file = \"new.key\"\n")).expect("policy");
    let err = match Gateway::try_spawn(dir) {
        Ok(_) => panic!("a key that does not continue the trail must not start"),
        Err(e) => e,
    };
    assert!(err.contains("previous_key_file"), "{err}");
    assert!(!err.contains(&old_key) && !err.contains(&new_key), "no key in the error: {err}");

    // With the old key named: a key_rotated record, signed with the old key, hands over.
    std::fs::write(
        dir.join("policy.toml"),
        policy("[audit]\nkey_file = \"new.key\"\nprevious_key_file = \"old.key\"\n"),
    )
    .expect("policy");
    let g = Gateway::spawn(dir);
    barrier(&g).await;
    let recs = records(&file);
    let rot = recs.iter().find(|r| r["event"] == "key_rotated").expect("key_rotated record");
    let last = recs.last().expect("record");
    assert_eq!(rot["new_kid"], last["kid"], "{rot}");
    assert_ne!(rot["kid"], last["kid"], "the rotation is signed with the old key: {rot}");
    let (code, out) = verify(&file, &["--policy", dir.join("policy.toml").to_str().expect("utf-8")]);
    assert_eq!(code, 0, "both keys from the policy: {out}");
    let (code, out) = verify(&file, &["--key-file", dir.join("new.key").to_str().expect("utf-8")]);
    assert_eq!(code, 2, "the old key's records are not proven without it: {out}");
}

/// Offline replay writes a scratch trail: it must not need (or touch) the production audit key.
#[test]
fn offline_replay_does_not_need_the_policys_audit_key() {
    let tmp = tempfile::tempdir().expect("tempdir");
    std::fs::write(tmp.path().join("policy.toml"), policy("[audit]\nkey_env = \"FIREBREAK_HARDENING_UNSET_KEY\"\n"))
        .expect("policy");
    let suite = format!(
        r#"
[keys]
alice = "{ALICE}"

[[cases]]
id = "redacted"
category = "credential-leak"
principal = "alice"
[cases.request]
kind = "chat"
prompt = "config?"
[cases.reply]
text = "the key is {AWS_KEY_ID} ok"
[cases.expect]
outcome = "redacted"
not_contains = ["{AWS_KEY_ID}"]
"#
    );
    std::fs::write(tmp.path().join("suite.toml"), suite).expect("suite");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_firebreak"))
        .args(["replay", "suite.toml", "--policy", "policy.toml"])
        .current_dir(tmp.path())
        .env_remove("FIREBREAK_HARDENING_UNSET_KEY")
        .output()
        .expect("firebreak replay");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("REMEDIATION VERIFIED"), "{stdout}");
}
