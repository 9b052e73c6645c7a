//! Containment switches end to end: atomic batches, optimistic concurrency, persistence across
//! restarts, streams cut in flight, reloads, admin auth, metrics and the `firebreak admin` CLI.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::{sha256_hex, Gateway, ADMIN_TOKEN};
use futures_util::StreamExt;
use reqwest::Method;
use serde_json::{json, Value};

const ALICE: &str = "sk-fb-alice-5e1f0c2a";
const BOB: &str = "sk-fb-bob-9a7d3b44";
const CAROL: &str = "sk-fb-carol-0c8e61d5";
const DAVE: &str = "sk-fb-dave-71b2aa90";
const ERIN: &str = "sk-fb-erin-e4c3f917";

const STORY: &str = "Once upon a time there was a gateway that read every stream as it flowed past, \
chunk by chunk, and when the security lead flipped a switch it closed the door at once, politely, \
with a proper terminal error event instead of a torn connection. The agents it guarded never saw \
a secret, and the auditors could always tell who did what and when. The end of a long story.";

fn key(id: &str, secret: &str, tenant: &str, user: &str) -> String {
    format!(
        "[[keys]]\nid = \"{id}\"\nsha256 = \"{}\"\ntenant = \"{tenant}\"\nuser = \"{user}\"\nrole = \"developer\"\n\n",
        sha256_hex(secret)
    )
}

/// A policy with a scripted upstream (slow stream for "story" prompts) and the given extra keys.
fn policy_with(extra_keys: &str) -> String {
    format!(
        r#"
[upstreams.scripted]
kind = "scripted"
chunk_chars = 4
chunk_delay_ms = 25

[[upstreams.scripted.replies]]
when_contains = "story"
text = "{STORY}"

[[upstreams.scripted.replies]]
text = "Hello from the scripted upstream."

{alice}{bob}{carol}{extra_keys}
[roles.developer]
"#,
        alice = key("alice-key", ALICE, "acme", "alice"),
        bob = key("bob-key", BOB, "globex", "bob"),
        carol = key("carol-key", CAROL, "acme", "carol"),
    )
}

fn policy() -> String {
    policy_with("")
}

fn client() -> reqwest::Client {
    reqwest::Client::new()
}

/// A non-streamed chat completion; returns the status and body.
async fn chat(g: &Gateway, key: &str, session: Option<&str>) -> (u16, Value) {
    let mut rb = client()
        .post(g.url("/v1/chat/completions"))
        .bearer_auth(key)
        .json(&json!({"model": "gpt-test", "messages": [{"role": "user", "content": "hi"}]}));
    if let Some(s) = session {
        rb = rb.header("x-session-id", s);
    }
    let resp = rb.send().await.expect("chat request");
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap_or_default();
    (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
}

async fn state(g: &Gateway) -> Value {
    let (status, v) = g.admin(Method::GET, "/admin/v1/state", None).await;
    assert_eq!(status, 200, "{v}");
    v
}

async fn version(g: &Gateway) -> u64 {
    state(g).await["version"].as_u64().expect("version")
}

async fn apply(g: &Gateway, actions: Value) -> Value {
    let (status, v) = g.switches(json!({"actions": actions, "reason": "test", "actor": "tests"})).await;
    assert_eq!(status, 200, "batch failed: {v}");
    v
}

/// Polls `f` until it returns true or the deadline passes.
async fn eventually<F, Fut>(what: &str, within: Duration, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + within;
    loop {
        if f().await {
            return;
        }
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

// ---------------------------------------------------------------------------------------------
// Batches

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_action_rejects_the_whole_batch() {
    let g = Gateway::start(&policy());
    let v0 = version(&g).await;
    let bad_actions = [
        json!({"action": "set_level", "level": "apocalypse"}),
        json!({"action": "block_tenant", "tenant": "globex", "ttl": "soon"}),
        json!({"action": "revoke_key", "key_id": "no-such-key"}),
    ];
    for bad in bad_actions {
        let (status, body) = g
            .switches(json!({
                "actions": [
                    {"action": "set_level", "level": "lockdown"},
                    {"action": "block_user", "user": "alice"},
                    bad,
                    {"action": "safe_mode", "enabled": true}
                ],
                "reason": "one bad action",
            }))
            .await;
        assert_eq!(status, 400, "{body}");
        let problems = body["error"]["problems"].as_array().expect("problems listed");
        assert!(problems.iter().any(|p| p["index"] == 2), "the bad action (index 2) is named: {body}");
        let s = state(&g).await;
        assert_eq!(s["version"].as_u64(), Some(v0), "version unchanged: {s}");
        assert_eq!(s["level"], "normal", "set_level of the batch not applied: {s}");
        assert_eq!(s["safe_mode"], false, "safe_mode of the batch not applied: {s}");
        assert!(s["blocked_users"].get("alice").is_none(), "block_user of the batch not applied: {s}");
        assert!(s["blocked_tenants"].get("globex").is_none(), "{s}");
        let (status, body) = chat(&g, ALICE, None).await;
        assert_eq!(status, 200, "alice still served: {body}");
    }
    // Malformed batches (unknown action, unknown field, missing reason) change nothing either.
    for batch in [
        json!({"actions": [{"action": "launch_missiles"}], "reason": "x"}),
        json!({"actions": [{"action": "block_user", "user": "alice", "colour": "red"}], "reason": "x"}),
        json!({"actions": [{"action": "block_user", "user": "alice"}]}),
        json!({"actions": [{"action": "block_user", "user": "alice"}], "reason": "  "}),
        json!({"actions": [], "reason": "x"}),
    ] {
        let (status, body) = g.switches(batch.clone()).await;
        assert_eq!(status, 400, "{batch} -> {body}");
        assert_eq!(version(&g).await, v0);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_batches_with_the_same_expect_version_one_wins() {
    let g = Gateway::start(&policy());
    apply(&g, json!([{"action": "set_level", "level": "elevated"}])).await;
    let v0 = version(&g).await;
    let mut tasks = Vec::new();
    for i in 0..8 {
        let admin = g.admin.clone();
        tasks.push(tokio::spawn(async move {
            let resp = reqwest::Client::new()
                .post(format!("{admin}/admin/v1/switches"))
                .bearer_auth(ADMIN_TOKEN)
                .json(&json!({
                    "actions": [{"action": "block_user", "user": format!("racer-{i}")}],
                    "reason": "race",
                    "expect_version": v0,
                }))
                .send()
                .await
                .expect("switch request");
            let status = resp.status().as_u16();
            let body: Value = resp.json().await.expect("json");
            (i, status, body)
        }));
    }
    let mut winners = Vec::new();
    for t in tasks {
        let (i, status, body) = t.await.expect("task");
        match status {
            200 => winners.push(i),
            409 => {
                assert_eq!(body["error"]["code"], "version_conflict", "{body}");
                assert_eq!(body["error"]["current_version"].as_u64(), Some(v0 + 1), "{body}");
            }
            other => panic!("unexpected status {other}: {body}"),
        }
    }
    assert_eq!(winners.len(), 1, "exactly one batch wins: {winners:?}");
    let s = state(&g).await;
    assert_eq!(s["version"].as_u64(), Some(v0 + 1), "{s}");
    let blocked: Vec<&String> = s["blocked_users"].as_object().expect("map").keys().collect();
    assert_eq!(blocked, vec![&format!("racer-{}", winners[0])], "only the winner's action applied");
    // A stale expect_version is refused, a fresh one applies.
    let (status, _) = g
        .switches(json!({"actions": [{"action": "safe_mode", "enabled": true}], "reason": "x", "expect_version": v0}))
        .await;
    assert_eq!(status, 409);
    let (status, body) = g
        .switches(
            json!({"actions": [{"action": "safe_mode", "enabled": true}], "reason": "x", "expect_version": v0 + 1}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["version"].as_u64(), Some(v0 + 2));
}

// ---------------------------------------------------------------------------------------------
// Persistence

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_keeps_lockdown() {
    let g = Gateway::start(&policy());
    let (status, _) = chat(&g, ALICE, None).await;
    assert_eq!(status, 200);
    let applied = apply(&g, json!([{"action": "set_level", "level": "lockdown"}])).await;
    let v = applied["version"].as_u64().expect("version");
    let (status, body) = chat(&g, ALICE, None).await;
    assert_eq!(status, 503, "{body}");
    let g = g.restart();
    let (status, body) = chat(&g, ALICE, None).await;
    assert_eq!(status, 503, "a restart must not lift a lockdown: {body}");
    assert!(body["error"]["message"].is_string(), "OpenAI-style error: {body}");
    let s = state(&g).await;
    assert_eq!(s["level"], "lockdown");
    assert_eq!(s["version"].as_u64(), Some(v));
    // And lifting it works after the restart.
    apply(&g, json!([{"action": "set_level", "level": "normal"}])).await;
    let (status, _) = chat(&g, ALICE, None).await;
    assert_eq!(status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupt_state_file_stops_start_up() {
    let mut g = Gateway::start(&policy());
    apply(&g, json!([{"action": "set_level", "level": "lockdown"}])).await;
    g.kill();
    let state_file = g.dir.join("state.json");
    std::fs::write(&state_file, b"{\"version\": 3, \"level\": \"lockd").expect("corrupt the state");
    let err = match Gateway::try_spawn(&g.dir) {
        Ok(_) => panic!("the gateway started on a corrupt state file"),
        Err(e) => e,
    };
    assert!(err.contains("state file"), "error names the state file: {err}");
    assert!(err.contains(&state_file.display().to_string()), "error gives the path: {err}");
    assert!(err.contains("corrupt"), "error says what is wrong: {err}");
    // A state file of the wrong shape is corrupt too.
    std::fs::write(&state_file, b"{\"version\": \"seven\"}").expect("write");
    let err = Gateway::try_spawn(&g.dir).err().expect("must not start");
    assert!(err.contains("state file"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn state_file_is_valid_json_and_survives_restart() {
    let g = Gateway::start(&policy());
    apply(
        &g,
        json!([
            {"action": "block_user", "user": "mallory", "ttl": "2h"},
            {"action": "revoke_key", "key_id": "carol-key"},
            {"action": "set_level", "level": "elevated"},
        ]),
    )
    .await;
    let applied = apply(&g, json!([{"action": "disable_endpoint", "endpoint": "embeddings"}])).await;
    let v = applied["version"].as_u64().expect("version");
    let text = std::fs::read_to_string(g.dir.join("state.json")).expect("state file");
    let on_disk: Value = serde_json::from_str(&text).expect("the state file is valid JSON");
    assert_eq!(on_disk["version"].as_u64(), Some(v), "{on_disk}");
    assert_eq!(on_disk["level"], "elevated");
    assert!(on_disk["blocked_users"]["mallory"]["expires"].is_string(), "{on_disk}");
    assert!(on_disk["revoked_keys"]["carol-key"].is_object(), "{on_disk}");
    assert!(on_disk["disabled_endpoints"]["embeddings"].is_object(), "{on_disk}");
    // No temp files left behind.
    let leftovers: Vec<String> = std::fs::read_dir(&g.dir)
        .expect("dir")
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    let before = state(&g).await;
    let g = g.restart();
    let after = state(&g).await;
    assert_eq!(after["version"].as_u64(), Some(v));
    for k in ["level", "safe_mode", "blocked_users", "revoked_keys", "disabled_endpoints"] {
        assert_eq!(before[k], after[k], "{k} survives the restart");
    }
    let (status, _) = chat(&g, CAROL, None).await;
    assert_eq!(status, 401, "carol's key stays revoked after the restart");
    // The next batch continues from the restored version.
    let applied = apply(&g, json!([{"action": "set_level", "level": "normal"}])).await;
    assert_eq!(applied["version"].as_u64(), Some(v + 1));
}

// ---------------------------------------------------------------------------------------------
// Streams in flight

/// A stream being read in the background: what arrived, and when a terminal error event arrived.
struct Reader {
    task: tokio::task::JoinHandle<(String, Option<Instant>)>,
}

/// Opens a streamed request and waits for its first bytes; the rest is read by a background task.
async fn open_stream(g: &Gateway, api: &str, key: &str) -> Reader {
    let rb = match api {
        "openai" => client().post(g.url("/v1/chat/completions")).bearer_auth(key).json(&json!({
            "model": "gpt-test", "stream": true,
            "messages": [{"role": "user", "content": "tell me a story"}]
        })),
        _ => client().post(g.url("/v1/messages")).header("x-api-key", key).json(&json!({
            "model": "claude-test", "max_tokens": 512, "stream": true,
            "messages": [{"role": "user", "content": "tell me a story"}]
        })),
    };
    let resp = rb.send().await.expect("stream request");
    assert_eq!(resp.status().as_u16(), 200, "stream refused");
    let marker = if api == "openai" { "data: {\"error\"" } else { "event: error" };
    let mut body = resp.bytes_stream();
    let mut text = String::new();
    // Wait for the first content event, so the stream is truly in flight.
    let deadline = Instant::now() + Duration::from_secs(10);
    while !text.contains("data:") {
        assert!(Instant::now() < deadline, "no first event");
        match tokio::time::timeout(Duration::from_secs(10), body.next()).await {
            Ok(Some(Ok(b))) => text.push_str(&String::from_utf8_lossy(&b)),
            other => panic!("stream ended before its first event: {other:?}"),
        }
    }
    let task = tokio::spawn(async move {
        let mut error_at = None;
        while let Ok(Some(chunk)) = tokio::time::timeout(Duration::from_secs(20), body.next()).await {
            let Ok(b) = chunk else { break };
            text.push_str(&String::from_utf8_lossy(&b));
            if error_at.is_none() && text.contains(marker) {
                error_at = Some(Instant::now());
            }
        }
        (text, error_at)
    });
    Reader { task }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn block_user_cuts_streams_in_flight_within_100ms() {
    let g = Gateway::start(&policy());
    let alice_openai = open_stream(&g, "openai", ALICE).await;
    let alice_anthropic = open_stream(&g, "anthropic", ALICE).await;
    let bob_openai = open_stream(&g, "openai", BOB).await;
    let bob_anthropic = open_stream(&g, "anthropic", BOB).await;

    let sent = Instant::now();
    let (status, body) =
        g.switches(json!({"actions": [{"action": "block_user", "user": "alice"}], "reason": "incident"})).await;
    let returned = Instant::now();
    assert_eq!(status, 200, "{body}");

    for (api, reader) in [("openai", alice_openai), ("anthropic", alice_anthropic)] {
        let (text, error_at) = reader.task.await.expect("reader");
        let error_at = error_at.unwrap_or_else(|| panic!("{api}: no terminal error event; got:\n{text}"));
        let lag = error_at.saturating_duration_since(returned);
        eprintln!("{api}: terminal error event {lag:?} after the admin call returned");
        assert!(error_at >= sent, "{api}: the stream was cut before the switch was flipped");
        assert!(lag < Duration::from_millis(100), "{api}: stream cut {lag:?} after the admin call returned");
        // The error event is the last thing on the stream, in the provider's format.
        let last = text.trim_end().rsplit("\n\n").next().unwrap_or("").to_owned();
        if api == "openai" {
            assert!(last.starts_with("data: {\"error\""), "openai terminal event: {last:?}");
            let v: Value = serde_json::from_str(last.trim_start_matches("data: ")).expect("error JSON");
            assert!(v["error"]["message"].is_string(), "{v}");
            assert!(v["error"]["type"].is_string(), "{v}");
            assert!(!text.contains("[DONE]"), "a cut stream does not pretend to finish");
        } else {
            assert!(last.starts_with("event: error\n"), "anthropic terminal event: {last:?}");
            let data = last.lines().find_map(|l| l.strip_prefix("data: ")).expect("data line");
            let v: Value = serde_json::from_str(data).expect("error JSON");
            assert_eq!(v["type"], "error", "{v}");
            assert!(v["error"]["type"].is_string(), "{v}");
            assert!(!text.contains("message_stop"), "a cut stream does not pretend to finish");
        }
        assert!(!text.contains("The end of a long story"), "{api}: the story was cut before its end");
    }
    // Bob's concurrent streams are not cut: they run to their normal end.
    for (api, reader) in [("openai", bob_openai), ("anthropic", bob_anthropic)] {
        let (text, error_at) = reader.task.await.expect("reader");
        assert!(error_at.is_none(), "{api}: bob's stream was cut:\n{text}");
        if api == "openai" {
            assert!(text.contains("data: [DONE]"), "{api}: bob's stream completes:\n{text}");
        } else {
            assert!(text.contains("message_stop"), "{api}: bob's stream completes:\n{text}");
        }
    }
    let (status, _) = chat(&g, ALICE, None).await;
    assert_eq!(status, 403, "alice's new requests are refused too");
}

// ---------------------------------------------------------------------------------------------
// Refusals

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoke_key_refuses_with_401() {
    let g = Gateway::start(&policy());
    assert_eq!(chat(&g, CAROL, None).await.0, 200);
    apply(&g, json!([{"action": "revoke_key", "key_id": "carol-key"}])).await;
    let (status, body) = chat(&g, CAROL, None).await;
    assert_eq!(status, 401, "{body}");
    assert!(body["error"]["message"].as_str().is_some_and(|m| m.contains("revoked")), "{body}");
    assert_eq!(chat(&g, ALICE, None).await.0, 200, "other keys of the same tenant still work");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn block_tenant_with_ttl_expires() {
    let g = Gateway::start(&policy());
    let t0 = Instant::now();
    apply(&g, json!([{"action": "block_tenant", "tenant": "acme", "ttl": "1s"}])).await;
    let (status, body) = chat(&g, ALICE, None).await;
    // The block lasts at least a second from the admin call; check it while that is certain.
    if t0.elapsed() < Duration::from_millis(900) {
        assert_eq!(status, 403, "{body}");
    }
    let (status, _) = chat(&g, BOB, None).await;
    assert_eq!(status, 200, "another tenant is not blocked");
    eventually("the tenant block to expire", Duration::from_secs(5), || async { chat(&g, CAROL, None).await.0 == 200 })
        .await;
    assert!(t0.elapsed() >= Duration::from_secs(1), "the block lasted at least its ttl");
    assert_eq!(chat(&g, ALICE, None).await.0, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn block_tenant_refuses_with_403() {
    let g = Gateway::start(&policy());
    apply(&g, json!([{"action": "block_tenant", "tenant": "acme", "ttl": "1h"}])).await;
    for k in [ALICE, CAROL] {
        let (status, body) = chat(&g, k, None).await;
        assert_eq!(status, 403, "{body}");
        assert_eq!(body["error"]["type"], "permission_error", "{body}");
    }
    assert_eq!(chat(&g, BOB, None).await.0, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn terminate_session_refuses_that_session_only() {
    let g = Gateway::start(&policy());
    assert_eq!(chat(&g, ALICE, Some("sess-1")).await.0, 200);
    apply(&g, json!([{"action": "terminate_session", "session": "sess-1"}])).await;
    let (status, body) = chat(&g, ALICE, Some("sess-1")).await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(chat(&g, BOB, Some("sess-1")).await.0, 403, "the session is refused for any key");
    assert_eq!(chat(&g, ALICE, Some("sess-2")).await.0, 200, "another session of the same user works");
    assert_eq!(chat(&g, ALICE, None).await.0, 200, "no session works");
}

// ---------------------------------------------------------------------------------------------
// Reload

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_rejects_a_broken_policy_and_accepts_a_valid_one() {
    let g = Gateway::start(&policy());
    let policy_file = g.dir.join("policy.toml");
    let broken = format!(
        "{}\n[[routes]]\napi = \"openai\"\nupstream = \"nowhere\"\n\n[limits]\nmax_request_body_bytes = -5\n",
        policy()
    );
    std::fs::write(&policy_file, &broken).expect("write broken policy");
    let route_line = broken.lines().position(|l| l.starts_with("upstream = \"nowhere\"")).expect("line") + 1;
    let limit_line = broken.lines().position(|l| l.starts_with("max_request_body_bytes")).expect("line") + 1;
    let (status, body) = g.admin(Method::POST, "/admin/v1/policy/reload", Some(json!({}))).await;
    assert_eq!(status, 422, "{body}");
    let problems = body["error"]["problems"].as_array().expect("problems");
    let file = policy_file.display().to_string();
    let at =
        |line: usize| problems.iter().any(|p| p["file"] == file.as_str() && p["line"].as_u64() == Some(line as u64));
    assert!(at(route_line), "unknown upstream reported at {file}:{route_line}: {body}");
    assert!(at(limit_line), "bad limit reported at {file}:{limit_line}: {body}");
    assert!(problems.iter().all(|p| p["message"].is_string()), "{body}");
    // The old policy still serves.
    assert_eq!(chat(&g, ALICE, None).await.0, 200);
    assert_eq!(chat(&g, DAVE, None).await.0, 401, "dave is not in the old policy");

    // Syntax errors are rejected too.
    std::fs::write(&policy_file, "[upstreams.scripted\nkind = ").expect("write");
    let (status, body) = g.admin(Method::POST, "/admin/v1/policy/reload", Some(json!({}))).await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["error"]["problems"][0]["line"].as_u64(), Some(1), "{body}");
    assert_eq!(chat(&g, ALICE, None).await.0, 200);

    // A valid changed policy reloads: a new key works.
    std::fs::write(&policy_file, policy_with(&key("dave-key", DAVE, "initech", "dave"))).expect("write");
    let (status, body) = g.admin(Method::POST, "/admin/v1/policy/reload", Some(json!({}))).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["reloaded"], true);
    assert_eq!(chat(&g, DAVE, None).await.0, 200, "the new key works after the reload");
    assert_eq!(chat(&g, ALICE, None).await.0, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reloads_the_policy() {
    let g = Gateway::start(&policy());
    assert_eq!(chat(&g, ERIN, None).await.0, 401);
    // A broken policy on SIGHUP is rejected and the old one stays.
    std::fs::write(g.dir.join("policy.toml"), "this is not toml = = =").expect("write");
    let hup = || {
        let st = Command::new("kill").args(["-HUP", &g.pid().to_string()]).status().expect("kill -HUP");
        assert!(st.success());
    };
    hup();
    eventually("the rejected reload to be audited", Duration::from_secs(10), || async {
        std::fs::read_to_string(g.dir.join("audit.jsonl")).unwrap_or_default().contains("reload_rejected")
    })
    .await;
    assert_eq!(chat(&g, ALICE, None).await.0, 200, "the old policy still serves");

    std::fs::write(g.dir.join("policy.toml"), policy_with(&key("erin-key", ERIN, "acme", "erin"))).expect("write");
    hup();
    eventually("erin's key to work after SIGHUP", Duration::from_secs(10), || async {
        chat(&g, ERIN, None).await.0 == 200
    })
    .await;
    assert_eq!(chat(&g, ALICE, None).await.0, 200);
}

// ---------------------------------------------------------------------------------------------
// Admin API surface

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_auth_health_and_metrics() {
    let g = Gateway::start(&policy());
    let c = client();
    let state_url = format!("{}/admin/v1/state", g.admin);
    let r = c.get(&state_url).send().await.expect("req");
    assert_eq!(r.status().as_u16(), 401, "missing token");
    let r = c.get(&state_url).bearer_auth("wrong-token").send().await.expect("req");
    assert_eq!(r.status().as_u16(), 401, "wrong token");
    let r = c.get(&state_url).header("authorization", ADMIN_TOKEN).send().await.expect("req");
    assert_eq!(r.status().as_u16(), 401, "token without the Bearer scheme");
    let r = c
        .post(format!("{}/admin/v1/switches", g.admin))
        .bearer_auth("wrong-token")
        .json(&json!({"actions": [{"action": "set_level", "level": "lockdown"}], "reason": "x"}))
        .send()
        .await
        .expect("req");
    assert_eq!(r.status().as_u16(), 401);
    assert_eq!(version(&g).await, 0, "an unauthorised batch changes nothing");
    let r = c.get(format!("{}/metrics", g.admin)).send().await.expect("req");
    assert_eq!(r.status().as_u16(), 401, "metrics need the token");
    for path in ["/healthz", "/readyz"] {
        let r = c.get(format!("{}{path}", g.admin)).send().await.expect("req");
        assert_eq!(r.status().as_u16(), 200, "{path} without a token");
    }
    let r = c.get(&state_url).bearer_auth(ADMIN_TOKEN).send().await.expect("req");
    assert_eq!(r.status().as_u16(), 200);

    assert_eq!(chat(&g, ALICE, None).await.0, 200);
    apply(&g, json!([{"action": "set_level", "level": "elevated"}])).await;
    let r = c.get(format!("{}/metrics", g.admin)).bearer_auth(ADMIN_TOKEN).send().await.expect("req");
    assert_eq!(r.status().as_u16(), 200);
    let text = r.text().await.expect("metrics");
    assert!(text.contains("firebreak_requests_total"), "{text}");
    assert!(text.contains("firebreak_switch_version 1"), "{text}");
    // The admin token is never echoed.
    assert!(!text.contains(ADMIN_TOKEN));
}

// ---------------------------------------------------------------------------------------------
// CLI

fn cli(g: &Gateway, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_firebreak"))
        .arg("admin")
        .args(["--url", &g.admin])
        .args(args)
        .env("FIREBREAK_ADMIN_TOKEN", ADMIN_TOKEN)
        .output()
        .expect("run firebreak admin")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_cli_sets_level_and_applies_batches() {
    let g = Gateway::start(&policy());
    let out = cli(&g, &["level", "lockdown", "--reason", "x"]);
    assert!(out.status.success(), "{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    let s = state(&g).await;
    assert_eq!(s["level"], "lockdown");
    assert_eq!(chat(&g, ALICE, None).await.0, 503);

    let batch = g.dir.join("batch.json");
    std::fs::write(
        &batch,
        json!({"actions": [
            {"action": "set_level", "level": "normal"},
            {"action": "block_user", "user": "bob"},
            {"action": "revoke_key", "key_id": "carol-key"}
        ], "reason": "cli batch"})
        .to_string(),
    )
    .expect("write batch");
    let out = cli(&g, &["apply", batch.to_str().expect("utf-8 path")]);
    assert!(out.status.success(), "{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    let s = state(&g).await;
    assert_eq!(s["level"], "normal", "{s}");
    assert!(s["blocked_users"]["bob"].is_object(), "{s}");
    assert_eq!(s["blocked_users"]["bob"]["reason"], "cli batch", "{s}");
    assert!(s["revoked_keys"]["carol-key"].is_object(), "{s}");
    assert_eq!(s["version"].as_u64(), Some(2));
    assert_eq!(chat(&g, ALICE, None).await.0, 200);
    assert_eq!(chat(&g, BOB, None).await.0, 403);

    // An invalid batch from the CLI fails with exit 1 and changes nothing.
    std::fs::write(&batch, json!([{"action": "set_level", "level": "bogus"}]).to_string()).expect("write");
    let out = cli(&g, &["apply", batch.to_str().expect("utf-8 path"), "--reason", "bad"]);
    assert_eq!(out.status.code(), Some(1), "{}", String::from_utf8_lossy(&out.stdout));
    assert_eq!(version(&g).await, 2);

    // A wrong token fails.
    let out = Command::new(env!("CARGO_BIN_EXE_firebreak"))
        .args(["admin", "--url", &g.admin, "state"])
        .env("FIREBREAK_ADMIN_TOKEN", "nope")
        .output()
        .expect("run");
    assert!(!out.status.success());
}
