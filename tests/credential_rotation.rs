//! Provider credential rotation without a restart: `POST /admin/v1/rotate/credential/<upstream>` and
//! `firebreak admin rotate-all`. Requests in flight finish with the old credential, every request
//! after the rotation carries the new one, nothing fails, and no credential reaches the audit trail
//! or the logs.

mod common;
mod upstream;

use std::sync::Arc;

use common::{sha256_hex, Gateway, ADMIN_TOKEN};
use serde_json::{json, Value};
use tokio::sync::Notify;
use upstream::gw::ALICE;
use upstream::*;

const OLD: &str = "sk-proj-OLD-credential-0a1b2c3d4e5f";
const NEW: &str = "sk-proj-NEW-credential-9f8e7d6c5b4a";
const NEWER: &str = "sk-proj-NEWER-credential-77aa88bb";
const IN_FLIGHT: usize = 4;

fn policy(url: &str) -> String {
    format!(
        r#"
[upstreams.oai]
kind = "openai"
base_url = "{url}"
credential_file = "openai.key"

[[keys]]
id = "alice-key"
sha256 = "{alice}"
tenant = "acme"
user = "alice"
role = "developer"

[roles.developer]
"#,
        alice = sha256_hex(ALICE)
    )
}

async fn chat(gw: &Gateway, stream: bool) -> (u16, String) {
    let resp = reqwest::Client::new()
        .post(gw.url("/v1/chat/completions"))
        .bearer_auth(ALICE)
        .json(&json!({"model": "gpt-4o", "stream": stream, "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await
        .expect("request");
    let status = resp.status().as_u16();
    (status, resp.text().await.unwrap_or_default())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotation_swaps_the_credential_for_new_requests_and_in_flight_ones_finish() {
    let up = FakeUpstream::start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("policy.toml"), policy(&up.base_url())).expect("policy");
    std::fs::write(dir.path().join("openai.key"), format!("{OLD}\n")).expect("key file");
    let gw = Gateway::spawn(dir.path());

    // Streams held open by the provider after their first chunk, until their gate opens (one
    // Notify each: notify_one keeps a permit for a stream that is not waiting yet).
    let gates: Vec<Arc<Notify>> = (0..IN_FLIGHT).map(|_| Arc::new(Notify::new())).collect();
    let body = chat_sse(&["one ", "two ", "three"], "gpt-4o");
    for g in &gates {
        up.push(Reply::sse(&body, Chunking::Bytes(40)).with_gate(1, g.clone()));
    }
    let gw = Arc::new(gw);
    let streams: Vec<_> = (0..IN_FLIGHT)
        .map(|_| {
            let gw = gw.clone();
            tokio::spawn(async move { chat(&gw, true).await })
        })
        .collect();
    let seen = up.wait_requests(IN_FLIGHT).await;
    assert!(seen.iter().all(|r| r.header("authorization").as_deref() == Some(&*format!("Bearer {OLD}"))));

    // Rotate while they are in flight.
    std::fs::write(dir.path().join("openai.key"), format!("{NEW}\n")).expect("key file");
    let (status, v) = gw
        .admin(reqwest::Method::POST, "/admin/v1/rotate/credential/oai", Some(json!({"reason": "INC-7: key leaked"})))
        .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["rotated"], json!(["oai"]));

    // Requests after the rotation carry the new credential, while the old streams are still open.
    up.set_default(Reply::json(&chat_json("fresh", "gpt-4o")));
    for _ in 0..3 {
        let (status, text) = chat(&gw, false).await;
        assert_eq!(status, 200, "{text}");
    }
    let after: Vec<_> = up.requests().into_iter().skip(IN_FLIGHT).collect();
    assert_eq!(after.len(), 3);
    for r in &after {
        assert_eq!(r.header("authorization").as_deref(), Some(&*format!("Bearer {NEW}")), "new request, new key");
    }

    // The streams in flight finish normally.
    gates.iter().for_each(|g| g.notify_one());
    for s in streams {
        let (status, text) = s.await.expect("join");
        assert_eq!(status, 200);
        let events = parse_sse(&text);
        assert_eq!(chat_stream_text(&events), "one two three", "the stream finished whole: {text}");
        assert!(!text.contains("\"error\""), "no in-flight request failed: {text}");
    }

    // A failed rotation (unreadable source) keeps the credential in force.
    std::fs::remove_file(dir.path().join("openai.key")).expect("rm");
    let (status, v) =
        gw.admin(reqwest::Method::POST, "/admin/v1/rotate/credentials", Some(json!({"reason": "rotate-all"}))).await;
    assert_eq!(status, 422, "{v}");
    assert!(v["failed"]["oai"].as_str().is_some_and(|m| m.contains("openai.key")), "{v}");
    let (status, _) = chat(&gw, false).await;
    assert_eq!(status, 200);
    assert_eq!(up.last().header("authorization").as_deref(), Some(&*format!("Bearer {NEW}")));

    // The CLI's rotate-all (the mass-compromise playbook).
    std::fs::write(dir.path().join("openai.key"), NEWER).expect("key file");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_firebreak"))
        .args(["admin", "--url", &gw.admin, "--reason", "INC-8: mass compromise", "rotate-all"])
        .env("FIREBREAK_ADMIN_TOKEN", ADMIN_TOKEN)
        .output()
        .expect("cli");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stdout));
    let (status, _) = chat(&gw, false).await;
    assert_eq!(status, 200);
    assert_eq!(up.last().header("authorization").as_deref(), Some(&*format!("Bearer {NEWER}")));

    // Unknown names and missing reasons are refused.
    let (status, _) =
        gw.admin(reqwest::Method::POST, "/admin/v1/rotate/credential/nope", Some(json!({"reason": "x"}))).await;
    assert_eq!(status, 404);
    let (status, _) = gw.admin(reqwest::Method::POST, "/admin/v1/rotate/credential/oai", Some(json!({}))).await;
    assert_eq!(status, 400);

    // Rotations are audited by name; no credential is ever written down.
    let (_, audit) = gw.admin(reqwest::Method::GET, "/admin/v1/audit?limit=1000", None).await;
    let text = audit.to_string();
    let rotations: Vec<&Value> =
        audit["records"].as_array().map(|a| a.iter().filter(|r| r["kind"] == "rotation").collect()).unwrap_or_default();
    assert_eq!(rotations.len(), 3, "{text}");
    assert_eq!(rotations[0]["reason"], "INC-7: key leaked");
    for secret in [OLD, NEW, NEWER] {
        assert!(!text.contains(secret), "the audit trail holds no credential");
        assert!(!gw.stderr().contains(secret), "the log holds no credential");
    }
}
