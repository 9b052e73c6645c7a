//! Cross-tenant leakage, bulk extraction through model tool calls, and SEV-2 containment of every
//! recent session of a user, end to end: the real gateway in front of a fake provider on loopback.

mod common;
mod upstream;

use common::{sha256_hex, Gateway};
use serde_json::{json, Value};
use upstream::{
    anthropic_sse, anthropic_tool_json, chat_json, chat_sse, chat_tool_json, chat_tool_sse, Call, Chunking,
    FakeUpstream, Reply,
};

const ALICE: &str = "fbk-xt-alice-acme-3b9d0f";
const CAROL: &str = "fbk-xt-carol-acme-71c2ae";
const BOB: &str = "fbk-xt-bob-globex-5e8a41";
/// Tenant globex's identifier, as the fake provider leaks it.
const GLOBEX_ID: &str = "GLX-ACCT-77120";

fn policy(up: &str, extra: &str) -> String {
    format!(
        r#"
[upstreams.oai]
kind = "openai"
base_url = "{up}"
credential_env = "{openai_env}"

[upstreams.ant]
kind = "anthropic"
base_url = "{up}"
credential_env = "{anthropic_env}"

[[keys]]
id = "alice-key"
sha256 = "{alice}"
tenant = "acme"
user = "alice"
role = "r"

[[keys]]
id = "carol-key"
sha256 = "{carol}"
tenant = "acme"
user = "carol"
role = "r"

[[keys]]
id = "bob-key"
sha256 = "{bob}"
tenant = "globex"
user = "bob"
role = "r"

[roles.r]

[tools.get_record]
side_effects = false

[tools.send_email]
side_effects = true

[tools.calc]
data = false

[tenants.acme]
identifiers = ["ACME-CUST-", "acme-corp.com"]

[tenants.globex]
identifiers = ["GLX-ACCT-"]

{extra}
"#,
        alice = sha256_hex(ALICE),
        carol = sha256_hex(CAROL),
        bob = sha256_hex(BOB),
        openai_env = upstream::gw::OPENAI_ENV,
        anthropic_env = upstream::gw::ANTHROPIC_ENV,
    )
}

async fn setup(extra: &str) -> (FakeUpstream, Gateway) {
    upstream::gw::ensure_env();
    let up = FakeUpstream::start().await;
    let text = policy(&up.base_url(), extra);
    let gw = tokio::task::block_in_place(|| Gateway::start(&text));
    (up, gw)
}

async fn chat(gw: &Gateway, key: &str, stream: bool, session: Option<&str>) -> (u16, String) {
    let mut rb = reqwest::Client::new()
        .post(gw.url("/v1/chat/completions"))
        .bearer_auth(key)
        .json(&json!({"model": "gpt-test", "stream": stream, "messages": [{"role": "user", "content": "hi"}]}));
    if let Some(s) = session {
        rb = rb.header("x-session-id", s);
    }
    let resp = rb.send().await.expect("request");
    (resp.status().as_u16(), resp.text().await.unwrap_or_default())
}

async fn messages(gw: &Gateway, key: &str, stream: bool) -> (u16, String) {
    let resp = reqwest::Client::new()
        .post(gw.url("/v1/messages"))
        .header("x-api-key", key)
        .json(&json!({"model": "claude-test", "max_tokens": 50, "stream": stream,
                      "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await
        .expect("request");
    (resp.status().as_u16(), resp.text().await.unwrap_or_default())
}

async fn incidents(gw: &Gateway) -> Vec<Value> {
    let (status, v) = gw.admin(reqwest::Method::GET, "/admin/v1/incidents", None).await;
    assert_eq!(status, 200, "{v}");
    v["incidents"].as_array().cloned().unwrap_or_default()
}

async fn state(gw: &Gateway) -> Value {
    gw.admin(reqwest::Method::GET, "/admin/v1/state", None).await.1
}

fn audit(gw: &Gateway) -> Vec<Value> {
    std::fs::read_to_string(gw.dir.join("audit.jsonl"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

fn of_user<'a>(list: &'a [Value], user: &str, trigger: &str) -> Vec<&'a Value> {
    list.iter().filter(|i| i["principal"]["user"] == user && i["trigger"] == trigger).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_tenants_identifier_in_json_or_split_across_sse_chunks_contains_the_user() {
    let (up, gw) = setup("").await;

    // globex's own identifier, to a globex user, JSON and streamed: nothing happens.
    up.push(Reply::json(&chat_json(&format!("Your account {GLOBEX_ID} is fine."), "gpt-test")));
    let (status, body) = chat(&gw, BOB, false, None).await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains(GLOBEX_ID), "detection only: the text is delivered: {body}");
    up.push(Reply::sse(&chat_sse(&["Your account GLX-", "ACCT-77", "120 is fine."], "gpt-test"), Chunking::Bytes(7)));
    assert_eq!(chat(&gw, BOB, true, None).await.0, 200);
    assert!(incidents(&gw).await.is_empty(), "a tenant's own identifiers are not a leak");

    // globex's identifier in a JSON answer to alice (acme): SEV-2, contained before the response returns.
    up.push(Reply::json(&chat_json(&format!("Found it: account {GLOBEX_ID}."), "gpt-test")));
    let (status, body) = chat(&gw, ALICE, false, Some("alice-s1")).await;
    assert_eq!(status, 200, "{body}");
    let list = incidents(&gw).await;
    let inc = of_user(&list, "alice", "cross_user_data_leakage");
    assert_eq!(inc.len(), 1, "{list:?}");
    assert_eq!(inc[0]["severity"], "SEV-2");
    assert_eq!(inc[0]["principal"]["tenant"], "acme");
    assert_eq!(inc[0]["evidence"][0]["rule"], "tenants.cross_tenant");
    assert_eq!(inc[0]["actions"][0]["plan"], "sev2");
    assert_eq!(chat(&gw, ALICE, false, None).await.0, 403, "alice is blocked");

    // Split across SSE events and across socket reads, in a stream to carol (acme), Anthropic format.
    up.push(Reply::sse(
        &anthropic_sse(&["The ledger says g", "lx-a", "cct-77", "120, done."], "claude-test"),
        Chunking::Awkward,
    ));
    let (status, body) = messages(&gw, CAROL, true).await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("message_stop"), "the stream completed: {body}");
    let list = incidents(&gw).await;
    let inc = of_user(&list, "carol", "cross_user_data_leakage");
    assert_eq!(inc.len(), 1, "{list:?}");
    assert_eq!(inc[0]["severity"], "SEV-2");
    assert_eq!(messages(&gw, CAROL, false).await.0, 403, "carol is blocked once the stream has ended");

    // globex's traffic is unaffected: no incident for bob, no tenant-wide block.
    assert!(list.iter().all(|i| i["principal"]["user"] != "bob"), "{list:?}");
    up.push(Reply::json(&chat_json("hello", "gpt-test")));
    assert_eq!(chat(&gw, BOB, false, None).await.0, 200);
    let s = state(&gw).await;
    assert!(s["blocked_tenants"].as_object().is_none_or(|m| m.is_empty()), "{s}");

    // The audit trail names the other tenant, never the identifier found.
    let records = audit(&gw);
    let seen: Vec<&Value> = records.iter().filter(|r| r.get("cross_tenant").is_some()).collect();
    assert_eq!(seen.len(), 2, "one JSON and one stream record: {seen:?}");
    assert!(seen.iter().all(|r| r["cross_tenant"] == json!(["globex"])), "{seen:?}");
    assert_eq!(seen.iter().filter(|r| r["user"] == "alice").count(), 1);
    let trail = std::fs::read_to_string(gw.dir.join("audit.jsonl")).unwrap();
    let book = std::fs::read_to_string(gw.dir.join("state.incidents.json")).unwrap();
    for text in [&trail, &book] {
        assert!(!text.to_ascii_uppercase().contains("GLX-ACCT"), "the identifier was written down");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bulk_extraction_counts_delivered_model_data_tool_calls() {
    let (up, gw) = setup("[triggers.bulk_data_extraction]\nthreshold = 3\n").await;
    let call = |id: &'static str, name: &'static str| Call { id, name, args: r#"{"id":"42"}"# };

    // JSON: two data calls; a tool with side effects and a tool marked `data = false` do not count.
    let calls = [call("c1", "get_record"), call("c2", "get_record"), call("c3", "send_email"), call("c4", "calc")];
    up.push(Reply::json(&chat_tool_json(&calls, "gpt-test")));
    let (status, body) = chat(&gw, ALICE, false, None).await;
    assert_eq!(status, 200, "{body}");
    // Streamed: one more, which makes exactly the threshold (3): no incident yet.
    up.push(Reply::sse(&chat_tool_sse(&[call("c5", "get_record")], "gpt-test"), Chunking::Bytes(16)));
    let (status, body) = chat(&gw, ALICE, true, None).await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("get_record"), "the call was delivered: {body}");
    assert!(incidents(&gw).await.is_empty(), "3 data calls are not above the threshold of 3");
    // Another user's calls count for that user only.
    up.push(Reply::json(&chat_tool_json(&[call("c6", "get_record")], "gpt-test")));
    assert_eq!(chat(&gw, BOB, false, None).await.0, 200);
    assert!(incidents(&gw).await.is_empty());

    // The fourth (Anthropic, JSON) fires.
    up.push(Reply::json(&anthropic_tool_json(&[call("t7", "get_record")], "claude-test")));
    assert_eq!(messages(&gw, ALICE, false).await.0, 200);
    let list = incidents(&gw).await;
    assert_eq!(list.len(), 1, "{list:?}");
    assert_eq!(list[0]["trigger"], "bulk_data_extraction");
    assert_eq!(list[0]["severity"], "SEV-1");
    assert_eq!(list[0]["principal"]["user"], "alice");
    assert_eq!(list[0]["evidence"][0]["rule"], "tools.data_call");
    let counted: usize = audit(&gw)
        .iter()
        .filter(|r| r["user"] == "alice")
        .filter_map(|r| r["data_tool_calls"].as_array().map(Vec::len))
        .sum();
    assert_eq!(counted, 4, "every delivered data call is in the audit trail");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sev2_containment_terminates_every_recent_session_of_the_user() {
    let (up, gw) = setup("").await;
    for (key, session) in [(ALICE, "alice-laptop"), (ALICE, "alice-phone"), (BOB, "bob-desk"), (CAROL, "carol-1")] {
        up.push(Reply::json(&chat_json("hello", "gpt-test")));
        assert_eq!(chat(&gw, key, false, Some(session)).await.0, 200, "{session}");
    }
    // The leak happens in a third session of alice's.
    up.push(Reply::json(&chat_json(&format!("account {GLOBEX_ID}"), "gpt-test")));
    assert_eq!(chat(&gw, ALICE, false, Some("alice-tablet")).await.0, 200);

    let list = incidents(&gw).await;
    let inc = of_user(&list, "alice", "cross_user_data_leakage");
    assert_eq!(inc.len(), 1, "{list:?}");
    let taken = inc[0]["actions"][0]["actions"].as_array().cloned().unwrap_or_default();
    let terminated: Vec<&str> =
        taken.iter().filter(|a| a["action"] == "terminate_session").filter_map(|a| a["session"].as_str()).collect();
    assert_eq!(terminated, ["alice-laptop", "alice-phone", "alice-tablet"], "{taken:?}");
    let s = state(&gw).await;
    for sid in ["alice-laptop", "alice-phone", "alice-tablet"] {
        assert!(s["terminated_sessions"][sid].is_object(), "{sid}: {s}");
    }
    assert!(s["terminated_sessions"]["bob-desk"].is_null() && s["terminated_sessions"]["carol-1"].is_null(), "{s}");

    // Both earlier sessions are refused as sessions (even to a colleague's key); other users' are not.
    for sid in ["alice-laptop", "alice-phone"] {
        let (status, body) = chat(&gw, CAROL, false, Some(sid)).await;
        assert_eq!(status, 403, "{sid}: {body}");
        assert!(body.contains("session"), "{sid}: refused as a terminated session: {body}");
    }
    for (key, sid) in [(BOB, "bob-desk"), (CAROL, "carol-1")] {
        up.push(Reply::json(&chat_json("hello", "gpt-test")));
        assert_eq!(chat(&gw, key, false, Some(sid)).await.0, 200, "{sid}");
    }
    // One batch, one switch version.
    let switches: Vec<Value> = audit(&gw).into_iter().filter(|r| r["kind"] == "switch").collect();
    assert_eq!(switches.len(), 1, "{switches:?}");
    assert_eq!(switches[0]["plan"], "sev2");
}

#[test]
fn tenant_identifiers_are_validated() {
    let base = |extra: &str| {
        policy("http://127.0.0.1:9", "").replace("[tenants.globex]\nidentifiers = [\"GLX-ACCT-\"]\n", extra)
    };
    let load = |text: String| firebreak::config::load_str("t.toml", &text, std::path::Path::new("."));
    load(base("")).expect("no globex identifiers is fine");
    for (extra, want) in [
        ("[tenants.globex]\nidentifiers = [\"GLX\"]\n", "shorter than 4"),
        ("[tenants.globex]\nidentifiers = [\"acme-corp.COM\"]\n", "declared for tenants"),
        ("[tenants.initech]\nidentifiers = [\"INI-0001\"]\n", "not the tenant of any key"),
        ("[tenants.globex]\nidentifiers = [\"GLX-ACME-CUST-\"]\n", "contains `ACME-CUST-` of tenant `acme`"),
        ("[tenants.globex]\nidentifier = [\"GLX-ACCT-\"]\n", "unknown field"),
    ] {
        let err = load(base(extra)).expect_err(extra).to_string();
        assert!(err.contains(want), "{extra}: {err}");
    }
}
