//! Managed system prompts end to end: the prompt bound to a key or a route is injected as the system
//! message (OpenAI and Anthropic shapes) with a canary; `rotate/prompt` moves to the backup and then
//! the fallback with a new canary each time, `rotate/canary` issues a new canary only; every canary
//! ever issued stays detected (after a restart too); neither the text nor a canary appears in the
//! admin API, the audit trail or the logs; rotations racing requests never send an undetected
//! canary.

mod common;
mod upstream;

use std::sync::Arc;

use common::{sha256_hex, Gateway, ADMIN_TOKEN};
use serde_json::{json, Value};
use upstream::*;

const ALICE: &str = "fbk-prompts-alice";
const BOB: &str = "fbk-prompts-bob";
const PRIMARY: &str = "You are Acme's support assistant. Answer questions about orders politely and never reveal the internal pricing tiers.";
const BACKUP: &str =
    "You are a support assistant for Acme orders. Be brief, polite and factual; internal details are off limits.";

fn policy(url: &str, extra: &str) -> String {
    format!(
        r#"
[upstreams.oai]
kind = "openai"
base_url = "{url}"
credential_file = "provider.key"

[upstreams.anth]
kind = "anthropic"
base_url = "{url}"
credential_file = "provider.key"

[[routes]]
api = "openai"
upstream = "oai"

[[routes]]
api = "anthropic"
upstream = "anth"
prompt = "support"

[prompts.support]
text = "{PRIMARY}"

[prompts.support_backup]
text = "{BACKUP}"

[incidents]
auto_contain = false

[[keys]]
id = "alice-key"
sha256 = "{alice}"
tenant = "acme"
user = "alice"
role = "r"
prompt = "support"

[[keys]]
id = "bob-key"
sha256 = "{bob}"
tenant = "acme"
user = "bob"
role = "r"

[roles.r]

{extra}
"#,
        alice = sha256_hex(ALICE),
        bob = sha256_hex(BOB),
    )
}

async fn start(extra: &str) -> (FakeUpstream, Gateway) {
    let up = FakeUpstream::start().await;
    up.set_default(Reply::json(&chat_json("Hello.", "gpt-4o")));
    let gw = Gateway::start_with_files(
        &policy(&up.base_url(), extra),
        &[("provider.key", "sk-test-provider-key-0123456789")],
    );
    (up, gw)
}

async fn chat(gw: &Gateway, key: &str, body: Value) -> (u16, String) {
    let resp = reqwest::Client::new()
        .post(gw.url("/v1/chat/completions"))
        .bearer_auth(key)
        .json(&body)
        .send()
        .await
        .expect("request");
    let status = resp.status().as_u16();
    (status, resp.text().await.unwrap_or_default())
}

fn hello(stream: bool) -> Value {
    json!({"model": "gpt-4o", "stream": stream, "messages": [
        {"role": "system", "content": "Client system text."},
        {"role": "user", "content": "hi"}]})
}

/// The canary in a system text the gateway injected (`Internal reference: <canary>.`).
fn canary_in(system: &str) -> String {
    let re = regex::Regex::new(r"Internal reference: ([A-Za-z0-9]{20})\.$").unwrap();
    re.captures(system).unwrap_or_else(|| panic!("no canary line in {system:?}"))[1].to_owned()
}

/// The system message the provider received with the last OpenAI chat request.
fn last_system(up: &FakeUpstream) -> String {
    let body = up.last().json();
    assert_eq!(body["messages"][0]["role"], "system", "{body}");
    body["messages"][0]["content"].as_str().expect("system content").to_owned()
}

async fn state(gw: &Gateway) -> Value {
    gw.admin(reqwest::Method::GET, "/admin/v1/state", None).await.1
}

fn audit_text(gw: &Gateway) -> String {
    std::fs::read_to_string(gw.dir.join("audit.jsonl")).unwrap_or_default()
}

fn firebreak(gw: &Gateway, args: &[&str]) -> (bool, String) {
    let (ok, stdout, stderr) = gw.cli(args);
    (ok, stdout + &stderr)
}

/// Asks the provider to "leak" `text` in a JSON reply and returns what the client got.
async fn leak(gw: &Gateway, up: &FakeUpstream, text: &str) -> String {
    up.push(Reply::json(&chat_json(&format!("My instructions end with: {text} - that is all."), "gpt-4o")));
    let (status, body) =
        chat(gw, BOB, json!({"model": "gpt-4o", "messages": [{"role": "user", "content": "x"}]})).await;
    assert_eq!(status, 200, "{body}");
    body
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn managed_prompt_is_injected_by_key_and_by_route_with_a_canary_that_is_never_shown() {
    let (up, gw) = start("").await;

    // Bound by alice's key: a leading system message; the client's own system message stays after it.
    let (status, body) = chat(&gw, ALICE, hello(false)).await;
    assert_eq!(status, 200, "{body}");
    let sent = up.last().json();
    let system = last_system(&up);
    assert!(system.starts_with(PRIMARY), "{system}");
    let canary = canary_in(&system);
    assert_eq!(sent["messages"][1]["content"], "Client system text.");
    assert_eq!(sent["messages"][2]["content"], "hi");

    // Bob's key binds nothing and the OpenAI route binds nothing: his request is forwarded as sent.
    chat(&gw, BOB, hello(false)).await;
    assert_eq!(up.last().json()["messages"], hello(false)["messages"]);

    // The Anthropic route binds the prompt for everyone: a string `system` keeps the client's text after it.
    up.push(Reply::json(&anthropic_json("Hi.", "claude-sonnet-4-5")));
    let resp = reqwest::Client::new()
        .post(gw.url("/v1/messages"))
        .header("x-api-key", BOB)
        .header("anthropic-version", "2023-06-01")
        .json(&json!({"model": "claude-sonnet-4-5", "max_tokens": 64, "system": "Client system text.",
                      "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let system = up.last().json()["system"].as_str().unwrap().to_owned();
    assert!(system.starts_with(PRIMARY) && system.ends_with("\n\nClient system text."), "{system}");
    assert!(system.contains(&format!("Internal reference: {canary}.")), "{system}");

    // The state names the version and the canary generation, never the text or the canary.
    let s = state(&gw).await;
    assert_eq!(s["prompts"]["support"]["live"], "primary", "{s}");
    assert_eq!(s["prompts"]["support"]["canary_generation"], 1);
    assert_eq!(s["prompts"]["support"]["history"][0]["kind"], "issue_canary");
    assert_eq!(s["prompts"]["support"]["history"][0]["actor"], "firebreak");
    let shown = s.to_string();
    assert!(!shown.contains(&canary) && !shown.contains("pricing tiers"), "{shown}");
    // The audit trail records which prompt version each request carried, not the text.
    let trail = audit_text(&gw);
    assert!(!trail.contains(&canary) && !trail.contains("pricing tiers"));
    let carried = json!({"id": "support", "version": "primary", "canary": 1});
    assert!(
        trail.lines().filter_map(|l| serde_json::from_str::<Value>(l).ok()).any(|r| r["prompt"] == carried),
        "{trail}"
    );
    assert!(!gw.stderr().contains(&canary));
    // The state file keeps it (so it is detected after a restart), readable by the owner only.
    let file = gw.dir.join("state.json");
    assert!(std::fs::read_to_string(&file).unwrap().contains(&canary));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(&file).unwrap().permissions().mode() & 0o077, 0, "state file is private");
    }

    // The canary is detected in output, plain and base64-encoded, in JSON and split across SSE chunks;
    // a leak opens a SEV-1 incident like any credential (monitor mode here: no containment).
    let body = leak(&gw, &up, &canary).await;
    assert!(body.contains("[REDACTED:canary.support]") && !body.contains(&canary), "{body}");
    let (_, list) = gw.admin(reqwest::Method::GET, "/admin/v1/incidents", None).await;
    let sev1 = list["incidents"]
        .as_array()
        .and_then(|l| l.iter().find(|i| i["trigger"] == "credential_leakage_confirmed"))
        .unwrap_or_else(|| panic!("no SEV-1 incident: {list}"));
    assert_eq!(sev1["evidence"][0]["rule"], "canary.support");
    assert_eq!(sev1["principal"]["user"], "bob");
    // The log sweep (`firebreak scan --policy`) knows the managed canaries from the state file.
    let log = gw.dir.join("app.log");
    std::fs::write(&log, format!("10:02 debug prompt dump ... Internal reference: {canary}.\n")).unwrap();
    let state_file = gw.dir.join("state.json");
    let policy_file = gw.dir.join("policy.toml");
    let args = ["scan", "--policy", policy_file.to_str().unwrap(), "--state-file", state_file.to_str().unwrap()];
    let (found, out, _) = gw.cli(&[&args[..], &[log.to_str().unwrap()]].concat());
    assert!(!found && out.contains("app.log:1:") && out.contains("canary.support"), "{out}");
    assert!(!out.contains(&canary), "{out}");
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD.encode(format!("ref:{canary}"));
    let body = leak(&gw, &up, &b64).await;
    assert!(body.contains("[REDACTED:canary.support]"), "{body}");
    let (a, b) = canary.split_at(7);
    up.push(Reply::sse(&chat_sse(&["Reference ", a, b, " ok"], "gpt-4o"), Chunking::Awkward));
    let (status, body) =
        chat(&gw, BOB, json!({"model": "gpt-4o", "stream": true, "messages": [{"role": "user", "content": "x"}]}))
            .await;
    assert_eq!(status, 200);
    assert!(!body.contains(a) || !body.contains(b), "the split canary reached the client: {body}");
    assert!(body.contains("[REDACTED:canary.support]"), "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotation_moves_to_backup_then_fallback_with_new_canaries_and_every_old_canary_stays_detected() {
    let (up, gw) = start("").await;
    chat(&gw, ALICE, hello(false)).await;
    let c1 = canary_in(&last_system(&up));

    // Emergency rotation through the admin API: the backup goes live with a new canary.
    let (status, v) = gw
        .admin(
            reqwest::Method::POST,
            "/admin/v1/rotate/prompt/support",
            Some(json!({"reason": "INC-7 prompt leaked", "actor": "sec-lead"})),
        )
        .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["old"]["version"], "primary");
    assert_eq!(v["new"]["version"], "backup");
    assert_eq!(v["new"]["canary"], 2);
    assert!(!v.to_string().contains(&c1));
    // The very next request carries the backup and a new canary.
    chat(&gw, ALICE, hello(false)).await;
    let system = last_system(&up);
    assert!(system.starts_with(BACKUP) && !system.contains("pricing tiers"), "{system}");
    let c2 = canary_in(&system);
    assert_ne!(c1, c2);

    // rotate-canary (CLI): same text, new canary.
    let (ok, out) = firebreak(&gw, &["admin", "rotate-canary", "support", "--reason", "canary seen in a paste"]);
    assert!(ok, "{out}");
    chat(&gw, ALICE, hello(false)).await;
    let system = last_system(&up);
    assert!(system.starts_with(BACKUP));
    let c3 = canary_in(&system);
    assert!(c3 != c1 && c3 != c2);

    // rotate-prompt (CLI) again: no second backup, so the fallback.
    let (ok, out) = firebreak(&gw, &["admin", "rotate-prompt", "support", "--reason", "backup leaked too"]);
    assert!(ok, "{out}");
    chat(&gw, ALICE, hello(false)).await;
    let system = last_system(&up);
    assert!(!system.contains(PRIMARY) && !system.contains(BACKUP), "{system}");
    let c4 = canary_in(&system);

    // The primary was invalidated: restoring it without a new text is refused, nothing changes.
    let (ok, out) = firebreak(&gw, &["admin", "restore-prompt", "support", "--reason", "try"]);
    assert!(!ok && out.contains("rotated away as compromised"), "{out}");

    // The history shows every rotation, who and why, with no canary and no text.
    let s = state(&gw).await;
    let history = s["prompts"]["support"]["history"].as_array().unwrap().clone();
    let kinds: Vec<&str> = history.iter().map(|h| h["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["issue_canary", "rotate_prompt", "rotate_canary", "rotate_prompt"]);
    // The actor is the authenticated identity (the legacy token is `admin`); "sec-lead" was only
    // the client's claim (kept as on_behalf_of in the rotation's audit record).
    assert_eq!(history[1]["actor"], "admin");
    assert_eq!(history[1]["reason"], "INC-7 prompt leaked");
    assert_eq!(history[3]["new"]["version"], "fallback");
    assert_eq!(s["prompts"]["support"]["canary_generation"], 4);
    let shown = s.to_string() + &audit_text(&gw);
    for c in [&c1, &c2, &c3, &c4] {
        assert!(!shown.contains(c.as_str()), "a canary is in the state or the audit trail");
    }
    let rotations: Vec<Value> = audit_text(&gw)
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|r| r["kind"] == "rotation" && r["prompt"] == "support")
        .collect();
    assert_eq!(rotations.len(), 3, "one audit record per rotation: {rotations:?}");

    // Every canary ever issued is still detected, after a restart too; the fallback stays live.
    let gw = gw.restart();
    for c in [&c1, &c2, &c3, &c4] {
        let body = leak(&gw, &up, c).await;
        assert!(body.contains("[REDACTED:canary.support]") && !body.contains(c.as_str()), "{body}");
    }
    chat(&gw, ALICE, hello(false)).await;
    assert_eq!(canary_in(&last_system(&up)), c4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotations_racing_requests_never_send_a_canary_the_scanner_cannot_see() {
    let (up, gw) = start("").await;
    let gw = Arc::new(gw);
    let mut tasks = Vec::new();
    for i in 0..24 {
        let gw = gw.clone();
        tasks.push(tokio::spawn(async move {
            let (status, body) = chat(&gw, ALICE, hello(i % 2 == 0)).await;
            assert_eq!(status, 200, "{body}");
        }));
    }
    for i in 0..6 {
        let path = if i % 2 == 0 { "/admin/v1/rotate/canary/support" } else { "/admin/v1/rotate/prompt/support" };
        let (status, v) = gw.admin(reqwest::Method::POST, path, Some(json!({"reason": format!("race {i}")}))).await;
        assert_eq!(status, 200, "{v}");
    }
    for t in tasks {
        t.await.unwrap();
    }
    let seen: std::collections::BTreeSet<String> = up
        .requests()
        .iter()
        .filter(|r| r.path == "/v1/chat/completions")
        .map(|r| canary_in(r.json()["messages"][0]["content"].as_str().unwrap()))
        .collect();
    assert!(!seen.is_empty());
    for c in &seen {
        let body = leak(&gw, &up, c).await;
        assert!(body.contains("[REDACTED:canary.support]"), "canary sent upstream but not detected: {body}");
    }
    assert_eq!(state(&gw).await["prompts"]["support"]["canary_generation"], 7);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_rotation_requests_are_refused_and_a_prompt_added_by_reload_gets_its_canary() {
    let (up, gw) = start("").await;
    let post = |path: &'static str, body: Option<Value>| {
        let gw = &gw;
        async move { gw.admin(reqwest::Method::POST, path, body).await }
    };
    let (status, v) = post("/admin/v1/rotate/prompt/nope", Some(json!({"reason": "x"}))).await;
    assert_eq!(status, 404, "{v}");
    assert_eq!(v["error"]["code"], "unknown_prompt");
    let (status, v) = post("/admin/v1/rotate/prompt/support_backup", Some(json!({"reason": "x"}))).await;
    assert_eq!(status, 404, "a backup is rotated through its prompt: {v}");
    let (status, v) = post("/admin/v1/rotate/canary/support", Some(json!({"actor": "x"}))).await;
    assert_eq!(status, 400, "{v}");
    assert_eq!(v["error"]["code"], "reason_required");
    let (status, v) = post("/admin/v1/rotate/canary/support", None).await;
    assert_eq!(status, 400, "{v}");
    let resp = reqwest::Client::new()
        .post(format!("{}/admin/v1/rotate/canary/support", gw.admin))
        .bearer_auth(ADMIN_TOKEN)
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    let resp = reqwest::Client::new()
        .post(format!("{}/admin/v1/rotate/canary/support", gw.admin))
        .json(&json!({"reason": "no token"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    let (status, v) = gw.switches(json!({"actions": [{"action": "rotate_prompt", "prompt": "support"}], "reason": "r", "expect_version": 999})).await;
    assert_eq!(status, 409, "{v}");
    assert_eq!(state(&gw).await["prompts"]["support"]["canary_generation"], 1, "nothing changed");

    // A policy naming an unknown prompt, or binding a backup, is rejected by reload; the old one stays.
    let file = gw.dir.join("policy.toml");
    let good = std::fs::read_to_string(&file).unwrap();
    std::fs::write(&file, good.replace("prompt = \"support\"\n\n[[keys]]", "prompt = \"support_backup\"\n\n[[keys]]"))
        .unwrap();
    let (status, v) = post("/admin/v1/policy/reload", Some(json!({}))).await;
    assert_eq!(status, 422, "{v}");
    assert!(v.to_string().contains("support_backup"), "{v}");

    // A new prompt bound to bob by reload: the first request already carries its canary.
    std::fs::write(
        &file,
        good.replace("role = \"r\"\n\n[roles.r]", "role = \"r\"\nprompt = \"ops\"\n\n[roles.r]")
            + "\n[prompts.ops]\ntext = \"You are the operations assistant. Keep answers short.\"\n",
    )
    .unwrap();
    let (status, v) = post("/admin/v1/policy/reload", Some(json!({}))).await;
    assert_eq!(status, 200, "{v}");
    chat(&gw, BOB, hello(false)).await;
    let system = last_system(&up);
    assert!(system.starts_with("You are the operations assistant."), "{system}");
    let ops = canary_in(&system);
    let s = state(&gw).await;
    assert_eq!(s["prompts"]["ops"]["canary_generation"], 1, "{s}");
    let body = leak(&gw, &up, &ops).await;
    assert!(body.contains("[REDACTED:canary.ops]"), "{body}");
}
