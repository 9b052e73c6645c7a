//! Redaction end to end: a provider reply carrying secrets, streamed in every format and chunked
//! down to one character per event, reaches the client redacted, and what the client reads equals
//! the redaction of the whole text.

mod common;

use common::{sha256_hex, Gateway};
use serde_json::{json, Value};

const KEY: &str = "fbk-redaction-test-key";
const CANARY: &str = "fbQ7kX2mZp9RtL4w";

fn secret_text() -> String {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD.encode(format!("x{CANARY}"));
    format!(
        "Sure! The deploy key is AKIAZ7Q3M4N5P6R2T8VW and the db password: \"Xk29-vLq8-Pz71\". \
         Card on file: 4111 1111 1111 1111. Internal marker {b64}.\n\
         -----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEAq7BFUpkGp3+LQmlQ\n-----END RSA PRIVATE KEY-----\n\
         Ünïcödé stays intact 🦀. Done."
    )
}

/// A scripted upstream answering `text` in chunks of `chunk_chars`, one key, and `extra` policy text.
fn policy_with(text: &str, chunk_chars: usize, extra: &str) -> String {
    format!(
        r#"
# These tests provoke leaks and refusals on purpose: incidents open, no plan runs (monitor mode).
[incidents]
auto_contain = false

[upstreams.s]
kind = "scripted"
chunk_chars = {chunk_chars}
chunk_delay_ms = 0

[[upstreams.s.replies]]
text = {text:?}

[[keys]]
id = "k"
sha256 = "{hash}"
tenant = "t"
user = "u"
role = "r"

[roles.r]
{extra}
"#,
        hash = sha256_hex(KEY),
    )
}

fn policy(chunk_chars: usize) -> String {
    policy_with(
        &secret_text(),
        chunk_chars,
        &format!("[[redaction.canaries]]\nid = \"support-prompt\"\nvalue = \"{CANARY}\"\n"),
    )
}

fn expected(policy_text: &str) -> String {
    let p = firebreak::config::load_str("t.toml", policy_text, std::path::Path::new(".")).expect("policy");
    p.scanner.redact(&secret_text()).0.into_owned()
}

fn assert_clean(text: &str) {
    for secret in ["AKIAZ7Q3M4N5P6R2T8VW", "Xk29-vLq8-Pz71", "4111 1111 1111 1111", "MIIEowIBAAKCAQEA", CANARY] {
        assert!(!text.contains(secret), "{secret} reached the client: {text}");
    }
    assert!(text.contains("[REDACTED:aws_access_key_id]"), "{text}");
    assert!(text.contains("[REDACTED:canary.support-prompt]"), "{text}");
    assert!(text.contains("Ünïcödé stays intact 🦀. Done."), "{text}");
}

fn events(body: &str) -> Vec<(Option<String>, Value)> {
    body.split("\n\n")
        .filter_map(|e| {
            let mut name = None;
            let mut data = None;
            for line in e.lines() {
                if let Some(n) = line.strip_prefix("event: ") {
                    name = Some(n.to_owned());
                }
                if let Some(d) = line.strip_prefix("data: ") {
                    data = serde_json::from_str::<Value>(d).ok();
                }
            }
            data.map(|d| (name, d))
        })
        .collect()
}

async fn post(gw: &Gateway, path: &str, body: Value) -> String {
    let resp = reqwest::Client::new()
        .post(gw.url(path))
        .bearer_auth(KEY)
        .header("x-api-key", KEY)
        .json(&body)
        .send()
        .await
        .expect("request");
    assert_eq!(resp.status(), 200);
    resp.text().await.expect("body")
}

#[tokio::test]
async fn streamed_secrets_are_redacted_in_every_format_and_chunking() {
    for chunk in [1usize, 3, 7, 64] {
        let p = policy(chunk);
        let want = expected(&p);
        let gw = Gateway::start(&p);
        let msgs = json!([{"role": "user", "content": "hi"}]);

        let body = post(&gw, "/v1/chat/completions", json!({"model": "m", "stream": true, "messages": msgs})).await;
        let text: String = events(&body)
            .iter()
            .filter_map(|(_, v)| v.pointer("/choices/0/delta/content").and_then(Value::as_str))
            .collect();
        assert_eq!(text, want, "chat, {chunk} chars per chunk");
        assert!(body.trim_end().ends_with("data: [DONE]"));

        let body =
            post(&gw, "/v1/messages", json!({"model": "m", "max_tokens": 100, "stream": true, "messages": msgs})).await;
        let text: String = events(&body)
            .iter()
            .filter(|(n, _)| n.as_deref() == Some("content_block_delta"))
            .filter_map(|(_, v)| v.pointer("/delta/text").and_then(Value::as_str))
            .collect();
        assert_eq!(text, want, "anthropic, {chunk} chars per chunk");

        let body = post(&gw, "/v1/responses", json!({"model": "m", "stream": true, "input": "hi"})).await;
        let evs = events(&body);
        let text: String = evs
            .iter()
            .filter(|(n, _)| n.as_deref() == Some("response.output_text.delta"))
            .filter_map(|(_, v)| v.get("delta").and_then(Value::as_str))
            .collect();
        assert_eq!(text, want, "responses, {chunk} chars per chunk");
        let done = evs.iter().find(|(n, _)| n.as_deref() == Some("response.output_text.done")).expect("done event");
        assert_eq!(done.1["text"], want, "the done event's whole text is redacted the same way");
        assert!(!body.contains("AKIAZ7Q3M4N5P6R2T8VW"), "no event (completed, item done…) leaks: {body}");
        assert_clean(&want);
    }
}

#[tokio::test]
async fn json_responses_are_redacted_and_audited_without_the_secret() {
    let p = policy(8);
    let want = expected(&p);
    let gw = Gateway::start(&p);
    let body =
        post(&gw, "/v1/chat/completions", json!({"model": "m", "messages": [{"role": "user", "content": "hi"}]})).await;
    let v: Value = serde_json::from_str(&body).expect("json");
    assert_eq!(v["choices"][0]["message"]["content"], want);
    let body = post(
        &gw,
        "/v1/messages",
        json!({"model": "m", "max_tokens": 10, "messages": [{"role": "user", "content": "hi"}]}),
    )
    .await;
    let v: Value = serde_json::from_str(&body).expect("json");
    assert_eq!(v["content"][0]["text"], want);
    assert_clean(&want);

    // The audit trail names the rules, never the values.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let trail = std::fs::read_to_string(gw.dir.join("audit.jsonl")).unwrap_or_default();
        if trail.contains("\"redactions\"") && trail.contains("aws_access_key_id") {
            for secret in ["AKIAZ7Q3M4N5P6R2T8VW", "Xk29-vLq8-Pz71", CANARY, "MIIEow"] {
                assert!(!trail.contains(secret), "{secret} in the audit trail");
            }
            break;
        }
        assert!(std::time::Instant::now() < deadline, "no redaction record in the audit trail:\n{trail}");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let (status, metrics) = gw.admin(reqwest::Method::GET, "/metrics", None).await;
    assert_eq!(status, 200);
    let metrics = metrics.as_str().unwrap_or_default().to_owned();
    assert!(metrics.contains("firebreak_decisions_total{rule=\"aws_access_key_id\",action=\"redact\"}"), "{metrics}");
}

#[tokio::test]
async fn system_prompt_fragments_are_counted_per_response() {
    let prompt = "You are Acme's support assistant. Never reveal internal pricing tiers, never discuss unreleased products, and always escalate refund requests above 500 euros to a human agent.";
    let leak = "My instructions: never reveal internal pricing tiers, never discuss unreleased products, and always escalate refund requests.";
    let p = policy_with(leak, 5, &format!("[[redaction.prompts]]\nid = \"support\"\ntext = {prompt:?}\n"));
    let gw = Gateway::start(&p);
    let msgs = json!([{"role": "user", "content": "hello there"}]);
    post(&gw, "/v1/chat/completions", json!({"model": "m", "stream": true, "messages": msgs})).await;
    post(&gw, "/v1/chat/completions", json!({"model": "m", "messages": msgs})).await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let trail = std::fs::read_to_string(gw.dir.join("audit.jsonl")).unwrap_or_default();
        let records: Vec<Value> = trail.lines().filter_map(|l| serde_json::from_str(l).ok()).collect();
        // One record per request; a stream's is written when it ends, with what it found.
        let count = |stream: bool| {
            records
                .iter()
                .find(|r| r["stream"] == stream && r["event"] == "decision")
                .and_then(|r| r["prompt_fragments"].as_u64())
        };
        let (streamed, whole) = (count(true), count(false));
        if let (Some(s), Some(w)) = (streamed, whole) {
            assert!(s >= 5, "streamed count {s}");
            assert_eq!(s, w, "streamed and whole responses count the same fragments");
            assert!(!trail.contains("pricing tiers"), "the prompt text is never audited");
            break;
        }
        assert!(std::time::Instant::now() < deadline, "no fragment counts in the audit trail:\n{trail}");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}
