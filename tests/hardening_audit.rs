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
