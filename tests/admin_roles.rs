//! Admin identities, roles and the two-person rule, against the real gateway: `[[admins]]` tokens
//! with roles viewer / responder / admin, the legacy `[admin]` token as `admin`, 403s naming the
//! missing role (audited), the audit actor being the authenticated identity, and pending actions
//! that a second identity approves (or that expire).

mod common;
mod upstream;

use std::process::Command;
use std::time::{Duration, Instant};

use common::{sha256_hex, Gateway, ADMIN_TOKEN};
use reqwest::Method;
use serde_json::{json, Value};
use upstream::gw::*;

const VIEWER: &str = "fb-admin-viewer-3c1e9a7d50b2f846";
const RESPONDER: &str = "fb-admin-responder-8b2d4f6a1c3e5709";
const RESPONDER2: &str = "fb-admin-responder2-0e7a9c5b3d1f2468";
const ADMIN: &str = "fb-admin-admin-5f3b1d9e7c2a4680";
const CHAT: &str = "/v1/chat/completions";

fn admins(second: &str) -> String {
    format!(
        r#"
[[admins]]
id = "vera"
sha256 = "{v}"
role = "viewer"

[[admins]]
id = "rita"
sha256 = "{r}"
role = "responder"

[[admins]]
id = "ravi"
sha256 = "{r2}"
role = "responder"

[[admins]]
id = "ada"
sha256 = "{a}"
cert_identity = "ada.example"
role = "admin"

{second}
"#,
        v = sha256_hex(VIEWER),
        r = sha256_hex(RESPONDER),
        r2 = sha256_hex(RESPONDER2),
        a = sha256_hex(ADMIN),
    )
}

/// An admin request with `token` (or none): status and JSON body.
async fn req(gw: &Gateway, token: Option<&str>, method: Method, path: &str, body: Option<Value>) -> (u16, Value) {
    let mut rb = reqwest::Client::new().request(method, format!("{}{}", gw.admin, path));
    if let Some(t) = token {
        rb = rb.bearer_auth(t);
    }
    if let Some(b) = body {
        rb = rb.json(&b);
    }
    let resp = rb.send().await.expect("admin request");
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap_or_default();
    (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
}

async fn batch(gw: &Gateway, token: &str, actions: Value, actor: Option<&str>) -> (u16, Value) {
    let mut b = json!({"actions": actions, "reason": "admin roles test"});
    if let Some(a) = actor {
        b["actor"] = json!(a);
    }
    req(gw, Some(token), Method::POST, "/admin/v1/switches", Some(b)).await
}

async fn version(gw: &Gateway) -> u64 {
    let (s, v) = req(gw, Some(ADMIN_TOKEN), Method::GET, "/admin/v1/state", None).await;
    assert_eq!(s, 200, "{v}");
    v["version"].as_u64().expect("version")
}

/// Every audit record so far (flushed: the trail is read through the API).
async fn audit(gw: &Gateway) -> Vec<Value> {
    let (s, v) = req(gw, Some(ADMIN_TOKEN), Method::GET, "/admin/v1/audit?limit=100000", None).await;
    assert_eq!(s, 200, "{v}");
    v["records"].as_array().cloned().unwrap_or_default()
}

fn assert_forbidden(status: u16, v: &Value, needed: &str, role: &str, what: &str) {
    assert_eq!(status, 403, "{what}: {v}");
    assert_eq!(v["error"]["code"], "forbidden", "{what}: {v}");
    let msg = v["error"]["message"].as_str().unwrap_or_default();
    assert!(
        msg.contains(&format!("needs role {needed}; you are {role}")),
        "{what}: the message names the missing role: {msg}"
    );
    assert_eq!(v["error"]["required_role"], needed, "{what}: {v}");
}

/// Runs `firebreak admin ARGS…` with `token` in FIREBREAK_ADMIN_TOKEN: (success, stdout + stderr).
fn cli(gw: &Gateway, token: &str, args: &[&str]) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_firebreak"))
        .arg("admin")
        .args(args)
        .env("FIREBREAK_ADMIN_URL", &gw.admin)
        .env("FIREBREAK_ADMIN_TOKEN", token)
        .output()
        .expect("run firebreak");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.success(), text)
}

/// Every state-changing route, with a body that would be accepted from a caller with the role.
fn write_routes() -> Vec<(&'static str, Value, &'static str)> {
    vec![
        (
            "/admin/v1/switches",
            json!({"actions": [{"action": "set_level", "level": "lockdown"}], "reason": "r"}),
            "responder",
        ),
        ("/admin/v1/playbooks/sev3", json!({"user": "alice", "reason": "r"}), "responder"),
        ("/admin/v1/rotate/prompt/support", json!({"reason": "r"}), "responder"),
        ("/admin/v1/rotate/canary/support", json!({"reason": "r"}), "responder"),
        ("/admin/v1/incidents/INC-00001/resolve", json!({"note": "n"}), "responder"),
        ("/admin/v1/incidents/INC-00001/checklist", json!({"step": 0}), "responder"),
        ("/admin/v1/pending/p-0000000000000000/approve", json!({}), "responder"),
        ("/admin/v1/pending/p-0000000000000000/reject", json!({}), "responder"),
        ("/admin/v1/policy/reload", json!({}), "admin"),
        ("/admin/v1/rotate/credentials", json!({"reason": "r"}), "admin"),
        ("/admin/v1/rotate/credential/oai", json!({"reason": "r"}), "admin"),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn viewer_reads_everything_and_is_refused_every_write_route_with_the_role_named_and_audited() {
    let (_up, gw) = setup(&admins("")).await;
    let (s, who) = req(&gw, Some(VIEWER), Method::GET, "/admin/v1/whoami", None).await;
    assert_eq!((s, who), (200, json!({"id": "vera", "role": "viewer"})));
    for path in [
        "/admin/v1/state",
        "/admin/v1/tools/pending",
        "/admin/v1/audit",
        "/admin/v1/incidents",
        "/admin/v1/pending",
        "/metrics",
    ] {
        let resp = reqwest::Client::new().get(format!("{}{path}", gw.admin)).bearer_auth(VIEWER).send().await.unwrap();
        assert_eq!(resp.status().as_u16(), 200, "a viewer reads {path}");
    }
    let before = version(&gw).await;
    let routes = write_routes();
    for (path, body, needed) in &routes {
        let (s, v) = req(&gw, Some(VIEWER), Method::POST, path, Some(body.clone())).await;
        assert_forbidden(s, &v, needed, "viewer", path);
    }
    assert_eq!(version(&gw).await, before, "no refused request changed anything");
    // A responder gets past the role check on every responder route (whatever the route answers
    // next), and is refused the admin ones.
    for (path, body, needed) in &routes {
        let (s, v) = req(&gw, Some(RESPONDER), Method::POST, path, Some(body.clone())).await;
        if *needed == "admin" {
            assert_forbidden(s, &v, "admin", "responder", path);
        } else {
            assert_ne!(s, 403, "{path} is a responder route: {v}");
        }
    }

    // Each refusal is audited with who, the route and the role needed — never the token.
    let records = audit(&gw).await;
    let refused: Vec<&Value> = records.iter().filter(|r| r["kind"] == "admin" && r["event"] == "refused").collect();
    for (path, _, needed) in &routes {
        assert!(
            refused.iter().any(|r| r["actor"] == "vera"
                && r["role"] == "viewer"
                && r["required_role"] == *needed
                && r["route"] == format!("POST {path}")),
            "refusal of {path} audited: {refused:?}"
        );
    }
    // No token in any file the gateway wrote (audit trail, state, logs).
    for entry in std::fs::read_dir(&gw.dir).unwrap().flatten() {
        if entry.file_name() == "policy.toml" {
            continue;
        }
        let text = String::from_utf8_lossy(&std::fs::read(entry.path()).unwrap_or_default()).into_owned();
        for t in [VIEWER, RESPONDER, ADMIN, ADMIN_TOKEN] {
            assert!(!text.contains(t), "a token in {:?}", entry.file_name());
        }
    }

    // No token, a wrong token, a malformed header: 401, nothing audited as an identity.
    assert_eq!(req(&gw, None, Method::GET, "/admin/v1/state", None).await.0, 401);
    let (s, v) = req(&gw, Some("fb-admin-wrong"), Method::GET, "/admin/v1/state", None).await;
    assert_eq!((s, v["error"]["code"].as_str()), (401, Some("unauthorized")), "{v}");
    let resp = reqwest::Client::new()
        .get(format!("{}/admin/v1/state", gw.admin))
        .header("authorization", "Basic abc")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 401);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn responder_flips_switches_but_not_reload_credentials_or_tool_approvals_and_admin_does_all() {
    let (_up, gw) = setup(&admins("")).await;
    let (s, v) = batch(&gw, RESPONDER, json!([{"action": "set_level", "level": "lockdown"}]), None).await;
    assert_eq!(s, 200, "a responder sets the level: {v}");
    assert_eq!(call(&gw, CHAT, &chat_body("gpt-4o", false)).await.status, 503, "lockdown is in force");
    let (s, v) = batch(
        &gw,
        RESPONDER,
        json!([{"action": "block_user", "user": "bob"}, {"action": "isolate_server", "server": "nope"}]),
        None,
    )
    .await;
    assert_eq!(s, 400, "the role check passes; the batch itself is validated as before: {v}");

    // Tool approvals in a batch need admin, even next to actions a responder may take.
    let approve = json!({"action": "approve_tool", "server": "srv", "tool": "t", "hash": "00"});
    let (s, v) =
        batch(&gw, RESPONDER, json!([{"action": "set_level", "level": "normal"}, approve.clone()]), None).await;
    assert_forbidden(s, &v, "admin", "responder", "approve_tool");
    assert!(v["error"]["message"].as_str().unwrap().contains("approve_tool"), "{v}");
    let reject = json!({"action": "reject_tool", "server": "srv", "tool": "t", "hash": "00"});
    let (s, v) = batch(&gw, RESPONDER, json!([reject.clone()]), None).await;
    assert_forbidden(s, &v, "admin", "responder", "reject_tool");
    let (s, v) = req(&gw, Some(RESPONDER), Method::POST, "/admin/v1/policy/reload", Some(json!({}))).await;
    assert_forbidden(s, &v, "admin", "responder", "reload");
    let (s, v) =
        req(&gw, Some(RESPONDER), Method::POST, "/admin/v1/rotate/credentials", Some(json!({"reason": "r"}))).await;
    assert_forbidden(s, &v, "admin", "responder", "rotate credentials");
    assert_eq!(
        call(&gw, CHAT, &chat_body("gpt-4o", false)).await.status,
        503,
        "the refused batch did not lift lockdown"
    );

    // The admin identity does all of it.
    let (s, v) = req(&gw, Some(ADMIN), Method::POST, "/admin/v1/policy/reload", Some(json!({}))).await;
    assert_eq!(s, 200, "{v}");
    let (s, v) =
        req(&gw, Some(ADMIN), Method::POST, "/admin/v1/rotate/credential/oai", Some(json!({"reason": "r"}))).await;
    assert_eq!(s, 200, "{v}");
    let (s, v) = batch(&gw, ADMIN, json!([approve]), None).await;
    assert_ne!(s, 403, "an admin may approve tools (this one is unknown, so the batch is invalid): {v}");
    let (s, v) = batch(&gw, ADMIN, json!([{"action": "set_level", "level": "normal"}]), None).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(call(&gw, CHAT, &chat_body("gpt-4o", false)).await.status, 200);

    let records = audit(&gw).await;
    assert!(
        records.iter().any(|r| r["kind"] == "policy" && r["event"] == "reloaded" && r["actor"] == "ada"),
        "the reload is attributed to ada: {:?}",
        records.iter().map(|r| format!("{}/{}/{}", r["kind"], r["event"], r["actor"])).collect::<Vec<_>>()
    );
    assert!(records.iter().any(|r| r["kind"] == "rotation" && r["event"] == "credential" && r["actor"] == "ada"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_audit_actor_is_the_identity_and_a_client_sent_actor_is_only_on_behalf_of() {
    let (_up, gw) = setup(&admins("")).await;
    let (s, v) = batch(&gw, RESPONDER, json!([{"action": "block_user", "user": "bob"}]), Some("ada")).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["state"]["blocked_users"]["bob"]["actor"], "rita", "the state names who did it: {v}");
    let (s, v) = req(
        &gw,
        Some(RESPONDER),
        Method::POST,
        "/admin/v1/playbooks/sev3",
        Some(json!({"user": "alice", "reason": "test", "actor": "ceo"})),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["taken"]["actor"], "rita", "{v}");
    // The legacy token's actor is `admin`; its client-sent name is on_behalf_of too.
    let (s, _) = gw
        .switches(json!({"actions": [{"action": "unblock_user", "user": "bob"}], "reason": "r", "actor": "oncall-7"}))
        .await;
    assert_eq!(s, 200);

    let records = audit(&gw).await;
    let switches: Vec<&Value> = records.iter().filter(|r| r["kind"] == "switch").collect();
    let block = switches.iter().find(|r| r["actions"][0]["action"] == "block_user").expect("block record");
    assert_eq!(block["actor"], "rita", "{block}");
    assert_eq!(block["on_behalf_of"], "ada", "{block}");
    let plan = switches.iter().find(|r| r["plan"] == "sev3").expect("plan record");
    assert_eq!(plan["actor"], "rita", "{plan}");
    assert!(plan["reason"].as_str().unwrap().contains("on behalf of ceo"), "{plan}");
    let unblock = switches.iter().find(|r| r["actions"][0]["action"] == "unblock_user").expect("unblock record");
    assert_eq!((&unblock["actor"], &unblock["on_behalf_of"]), (&json!("admin"), &json!("oncall-7")));
    assert!(
        !records.iter().any(|r| r["actor"] == "ceo" || r["actor"] == "oncall-7"),
        "a claimed name is never the actor"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_legacy_token_is_the_admin_identity_next_to_named_admins_and_alone() {
    let (_up, gw) = setup(&admins("")).await;
    let (s, v) = req(&gw, Some(ADMIN_TOKEN), Method::GET, "/admin/v1/whoami", None).await;
    assert_eq!((s, v), (200, json!({"id": "admin", "role": "admin"})));
    let (s, v) = req(&gw, Some(ADMIN_TOKEN), Method::POST, "/admin/v1/policy/reload", Some(json!({}))).await;
    assert_eq!(s, 200, "{v}");
    // With no [[admins]] at all (every existing deployment), the token works as before.
    let (_up2, old) = setup("").await;
    let (s, v) = req(&old, Some(ADMIN_TOKEN), Method::GET, "/admin/v1/whoami", None).await;
    assert_eq!((s, v), (200, json!({"id": "admin", "role": "admin"})));
    let (ok, out) = cli(&old, ADMIN_TOKEN, &["level", "critical", "--reason", "legacy cli"]);
    assert!(ok, "{out}");
    let (ok, out) = cli(&gw, RESPONDER, &["whoami"]);
    assert!(ok && out.contains("\"rita\"") && out.contains("\"responder\""), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_person_rule_lifting_lockdown_waits_for_a_different_identity() {
    let second = "[admin.require_second]\nactions = [\"set_level:normal\", \"restore_server\", \"block_user:bob\"]\nttl = \"15m\"\n";
    let (_up, gw) = setup(&admins(second)).await;
    // Raising the level is not listed: applied at once.
    let (s, v) = batch(&gw, RESPONDER, json!([{"action": "set_level", "level": "lockdown"}]), None).await;
    assert_eq!(s, 200, "{v}");
    let v0 = version(&gw).await;

    // Lifting it is held: 202 with the exact batch.
    let (s, v) = batch(&gw, RESPONDER, json!([{"action": "set_level", "level": "normal"}]), Some("night shift")).await;
    assert_eq!(s, 202, "{v}");
    assert_eq!(v["applied"], false);
    let p = &v["pending"];
    let id = p["id"].as_str().expect("pending id").to_owned();
    assert_eq!(p["batch"]["actions"], json!([{"action": "set_level", "level": "normal"}]));
    assert_eq!(p["requested_by"]["id"], "rita");
    assert_eq!(p["needs_second"], json!(["set_level:normal"]));
    assert_eq!(p["required_role"], "responder");
    assert_eq!(version(&gw).await, v0, "nothing applied yet");
    assert_eq!(call(&gw, CHAT, &chat_body("gpt-4o", false)).await.status, 503, "still in lockdown");
    let (s, list) = req(&gw, Some(VIEWER), Method::GET, "/admin/v1/pending", None).await;
    assert_eq!(s, 200);
    assert_eq!(list["pending"][0]["id"], id.as_str(), "{list}");

    // The same identity cannot approve its own request; a viewer cannot approve at all.
    let (s, v) = req(&gw, Some(RESPONDER), Method::POST, &format!("/admin/v1/pending/{id}/approve"), None).await;
    assert_eq!((s, v["error"]["code"].as_str()), (403, Some("same_identity")), "{v}");
    let (s, v) = req(&gw, Some(VIEWER), Method::POST, &format!("/admin/v1/pending/{id}/approve"), None).await;
    assert_forbidden(s, &v, "responder", "viewer", "viewer approval");
    assert_eq!(call(&gw, CHAT, &chat_body("gpt-4o", false)).await.status, 503, "refused approvals apply nothing");

    // A second responder approves (through the CLI): applied, both identities recorded.
    let (ok, out) = cli(&gw, RESPONDER2, &["approve", &id]);
    assert!(ok, "{out}");
    assert!(out.contains("\"approved_by\": \"ravi\""), "{out}");
    assert_eq!(call(&gw, CHAT, &chat_body("gpt-4o", false)).await.status, 200, "lockdown lifted");
    let (s, v) = req(&gw, Some(ADMIN), Method::POST, &format!("/admin/v1/pending/{id}/approve"), None).await;
    assert_eq!((s, v["error"]["code"].as_str()), (404, Some("unknown_pending")), "approved once only: {v}");

    // block_user:bob is held too; bob is served until it is approved, refused after.
    let (s, v) = batch(&gw, RESPONDER2, json!([{"action": "block_user", "user": "bob"}]), None).await;
    assert_eq!(s, 202, "{v}");
    let id2 = v["pending"]["id"].as_str().unwrap().to_owned();
    let bob = || send(post(&client(), &gw, CHAT, Auth::Bearer(BOB), &chat_body("gpt-4o", false)));
    assert_eq!(bob().await.status, 200, "not blocked before approval");
    let (ok, out) = cli(&gw, RESPONDER2, &["pending"]);
    assert!(ok && out.contains(&id2), "{out}");
    let (s, v) = req(&gw, Some(ADMIN), Method::POST, &format!("/admin/v1/pending/{id2}/approve"), None).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(bob().await.status, 403, "bob is blocked once approved");
    // Other users and other actions are not held.
    let (s, v) = batch(&gw, RESPONDER, json!([{"action": "block_user", "user": "mallory"}]), None).await;
    assert_eq!(s, 200, "{v}");

    let records = audit(&gw).await;
    let lift = records
        .iter()
        .find(|r| r["kind"] == "switch" && r["actions"] == json!([{"action": "set_level", "level": "normal"}]))
        .expect("the lift was audited");
    assert_eq!(lift["actor"], "rita", "{lift}");
    assert_eq!(lift["requested_by"], "rita");
    assert_eq!(lift["approved_by"], "ravi");
    assert_eq!(lift["pending_id"], id.as_str());
    assert_eq!(lift["on_behalf_of"], "night shift");
    let events = |pid: &str| -> Vec<String> {
        records
            .iter()
            .filter(|r| r["kind"] == "approval" && r["pending_id"] == pid)
            .map(|r| r["event"].as_str().unwrap_or_default().to_owned())
            .collect()
    };
    assert_eq!(events(&id), ["requested", "refused", "approved"], "the same-identity attempt is audited");
    assert!(records.iter().any(|r| r["kind"] == "admin" && r["event"] == "refused" && r["actor"] == "vera"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_person_rule_expired_rejected_and_stale_pending_actions_apply_nothing() {
    let second =
        "[admin.require_second]\nactions = [\"restore_server\", \"safe_mode:off\", \"set_level\"]\nttl = \"1s\"\n";
    let (_up, gw) = setup(&admins(second)).await;
    let (s, v) = batch(&gw, RESPONDER, json!([{"action": "safe_mode", "enabled": true}]), None).await;
    assert_eq!(s, 200, "safe_mode:on is not held: {v}");
    let v0 = version(&gw).await;

    // Expired: it leaves the list after the TTL, and its approval answers 410.
    let (s, v) = batch(&gw, RESPONDER, json!([{"action": "safe_mode", "enabled": false}]), None).await;
    assert_eq!(s, 202, "{v}");
    let id = v["pending"]["id"].as_str().unwrap().to_owned();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (_, list) = req(&gw, Some(VIEWER), Method::GET, "/admin/v1/pending", None).await;
        if list["pending"].as_array().is_some_and(|l| l.is_empty()) {
            break;
        }
        assert!(Instant::now() < deadline, "the pending action never expired: {list}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (s, v) = req(&gw, Some(RESPONDER2), Method::POST, &format!("/admin/v1/pending/{id}/approve"), None).await;
    assert_eq!((s, v["error"]["code"].as_str()), (410, Some("pending_expired")), "{v}");
    assert_eq!(version(&gw).await, v0, "an expired action is never applied");

    // Rejected by the requester: withdrawn, nothing applied, and gone.
    let (s, v) = batch(&gw, RESPONDER, json!([{"action": "set_level", "level": "elevated"}]), None).await;
    assert_eq!(s, 202, "{v}");
    let id = v["pending"]["id"].as_str().unwrap().to_owned();
    let (ok, out) = cli(&gw, RESPONDER, &["reject", &id]);
    assert!(ok && out.contains("\"rejected\""), "{out}");
    let (s, _) = req(&gw, Some(RESPONDER2), Method::POST, &format!("/admin/v1/pending/{id}/approve"), None).await;
    assert_eq!(s, 404);
    assert_eq!(version(&gw).await, v0);

    // expect_version is checked when the action is approved, not when it was asked for.
    let (s, v) = req(
        &gw,
        Some(RESPONDER),
        Method::POST,
        "/admin/v1/switches",
        Some(json!({"actions": [{"action": "set_level", "level": "elevated"}], "reason": "r", "expect_version": v0})),
    )
    .await;
    assert_eq!(s, 202, "{v}");
    let id = v["pending"]["id"].as_str().unwrap().to_owned();
    let (s, _) = batch(&gw, ADMIN, json!([{"action": "block_user", "user": "zed"}]), None).await;
    assert_eq!(s, 200, "the state moves on meanwhile");
    let (s, v) = req(&gw, Some(RESPONDER2), Method::POST, &format!("/admin/v1/pending/{id}/approve"), None).await;
    assert_eq!((s, v["error"]["code"].as_str()), (409, Some("version_conflict")), "{v}");
    let (_, st) = req(&gw, Some(VIEWER), Method::GET, "/admin/v1/state", None).await;
    assert_eq!(st["level"], "normal", "{st}");

    // An invalid held batch is refused at once, not parked for a second person.
    let (s, v) = batch(&gw, RESPONDER, json!([{"action": "set_level", "level": "nonsense"}]), None).await;
    assert_eq!(s, 400, "{v}");

    let records = audit(&gw).await;
    assert!(records.iter().any(|r| r["kind"] == "approval" && r["event"] == "expired"));
    assert!(records.iter().any(|r| r["kind"] == "approval" && r["event"] == "rejected" && r["rejected_by"] == "rita"));
}

#[test]
fn check_reports_every_admin_identity_problem() {
    let tmp = tempfile::tempdir().unwrap();
    let policy = format!(
        r#"
[upstreams.oai]
kind = "openai"
credential_env = "X"

[admin]
max_auth_failures = 0
auth_failure_window = "2d"

[admin.require_second]
actions = ["set_level:normal", "launch_missiles", "set_level:panic", "safe_mode:maybe", "approve_tool:notool"]
ttl = "forever"

[[admins]]
id = "a"
sha256 = "{h}"
role = "admin"

[[admins]]
id = "a"
sha256 = "{h}"
role = "viewer"

[[admins]]
id = "b"
sha256 = "not-hex"
role = "responder"

[[admins]]
id = "c"
sha256 = "{h2}"
role = "superuser"

[[admins]]
id = "d"
role = "viewer"
"#,
        h = sha256_hex("one"),
        h2 = sha256_hex("two"),
    );
    let file = tmp.path().join("policy.toml");
    std::fs::write(&file, policy).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_firebreak")).arg("check").arg(&file).output().unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(!out.status.success(), "{text}");
    for needle in [
        "admin id `a` is used twice",
        "admin `a` has the same token hash as admin `a`",
        "admin `b`: sha256 must be 64 hex digits",
        "admin `c`: unknown role `superuser`",
        "admin `d` has neither sha256 nor cert_identity",
        "unknown action `launch_missiles`",
        "`set_level:panic`: `panic` is not a level",
        "`safe_mode:maybe`",
        "`approve_tool:notool`",
        "`forever` is not a duration",
        "`0` is not between 1 and 10000",
        "`2d` is not a duration between 1s and 24h",
    ] {
        assert!(text.contains(needle), "check reports `{needle}`:\n{text}");
    }
    assert!(text.contains("policy.toml:"), "problems are located: {text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_person_rule_holds_a_prompt_rotation_and_a_viewer_cannot_decide() {
    let second = "[admin.require_second]\nactions = [\"rotate_prompt:support\", \"unblock_user\"]\n";
    let extra = format!("[prompts.support]\ntext = \"You are the support bot of ACME.\"\n\n{}", admins(second));
    let (_up, gw) = setup(&extra).await;
    let rotate = |token: &'static str| {
        req(
            &gw,
            Some(token),
            Method::POST,
            "/admin/v1/rotate/prompt/support",
            Some(json!({"reason": "leaked", "actor": "ir-lead"})),
        )
    };
    let (s, v) = rotate(RESPONDER).await;
    assert_eq!(s, 202, "{v}");
    assert_eq!(v["pending"]["kind"], "rotate_prompt");
    assert_eq!(v["pending"]["batch"]["actions"], json!([{"action": "rotate_prompt", "prompt": "support"}]));
    let id = v["pending"]["id"].as_str().unwrap().to_owned();
    let (_, st) = req(&gw, Some(VIEWER), Method::GET, "/admin/v1/state", None).await;
    assert_eq!(st["prompts"]["support"]["live"], "primary", "not rotated yet: {st}");
    assert_eq!(st["prompts"]["support"]["canary_generation"], 1, "{st}");
    let (s, v) = req(&gw, Some(ADMIN), Method::POST, &format!("/admin/v1/pending/{id}/approve"), None).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["rotated"], "support");
    assert_eq!(v["new"]["version"], "fallback", "no backup declared: the fallback goes live: {v}");

    // A viewer can neither approve nor reject; a second responder approves a responder's batch.
    let (s, v) = batch(&gw, ADMIN, json!([{"action": "block_user", "user": "bob"}]), None).await;
    assert_eq!(s, 200, "{v}");
    let (s, v) = batch(&gw, RESPONDER, json!([{"action": "unblock_user", "user": "bob"}]), None).await;
    assert_eq!(s, 202, "{v}");
    let id = v["pending"]["id"].as_str().unwrap().to_owned();
    let (s, v) = req(&gw, Some(VIEWER), Method::POST, &format!("/admin/v1/pending/{id}/reject"), None).await;
    assert_forbidden(s, &v, "responder", "viewer", "a viewer cannot reject");
    let (s, v) = req(&gw, Some(RESPONDER2), Method::POST, &format!("/admin/v1/pending/{id}/approve"), None).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["approved_by"], "ravi");

    let records = audit(&gw).await;
    let rot = records.iter().find(|r| r["kind"] == "rotation" && r["event"] == "prompt").expect("rotation audited");
    assert_eq!(
        (&rot["actor"], &rot["approved_by"], &rot["on_behalf_of"]),
        (&json!("rita"), &json!("ada"), &json!("ir-lead"))
    );
}

/// The admin listener's records of `event` so far (the trail file: the API itself is locked out).
fn trail_events(gw: &Gateway, event: &str) -> Vec<Value> {
    let text = std::fs::read_to_string(gw.dir.join("audit.jsonl")).unwrap_or_default();
    text.lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|r| r["kind"] == "admin" && r["event"] == event)
        .collect()
}

/// A console login form POST with `token`: status, `Retry-After`, page.
async fn console_login(gw: &Gateway, token: &str) -> (u16, Option<String>, String) {
    let resp = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
        .post(format!("{}/console/login", gw.admin))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("token={token}"))
        .send()
        .await
        .expect("console login");
    let status = resp.status().as_u16();
    let retry = resp.headers().get("retry-after").and_then(|v| v.to_str().ok()).map(str::to_owned);
    (status, retry, resp.text().await.unwrap_or_default())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_admin_authentications_are_audited_and_lock_the_address_out() {
    let lockout = "[admin]\nmax_auth_failures = 3\nauth_failure_window = \"1h\"\n";
    let (_up, gw) = setup(&admins(lockout)).await;
    assert_eq!(req(&gw, Some(VIEWER), Method::GET, "/admin/v1/state", None).await.0, 200);

    // A request with no credential is refused and audited but is no guess: it never counts. Then
    // three wrong tokens from 127.0.0.1, on both doors: the third starts the lockout.
    for _ in 0..5 {
        assert_eq!(req(&gw, None, Method::GET, "/admin/v1/state", None).await.0, 401);
    }
    let (s, _, page) = console_login(&gw, "fb-admin-guess-1").await;
    assert_eq!(s, 401, "{page}");
    assert!(!page.contains("fb-admin-guess-1"), "the guess is not echoed");
    let (s, v) = req(&gw, Some("fb-admin-guess-2"), Method::GET, "/admin/v1/state", None).await;
    assert_eq!((s, v["error"]["code"].as_str()), (401, Some("unauthorized")), "{v}");
    assert_eq!(req(&gw, Some(VIEWER), Method::GET, "/admin/v1/state", None).await.0, 200, "two guesses: not yet");
    let (s, v) = req(&gw, Some("fb-admin-guess-2b"), Method::GET, "/admin/v1/state", None).await;
    assert_eq!((s, v["error"]["code"].as_str()), (401, Some("unauthorized")), "{v}");

    // Locked out: even the right token is refused unchecked, on the API and the console, with the
    // time left; the message names the setting and never the token.
    let resp = reqwest::Client::new()
        .get(format!("{}/admin/v1/state", gw.admin))
        .bearer_auth(ADMIN)
        .send()
        .await
        .expect("admin request");
    assert_eq!(resp.status().as_u16(), 429);
    let retry: u64 = resp.headers()["retry-after"].to_str().unwrap().parse().expect("Retry-After seconds");
    assert!((3000..=3600).contains(&retry), "the rest of the hour: {retry}");
    let v: Value = resp.json().await.expect("a JSON error");
    assert_eq!(v["error"]["code"], "auth_locked_out", "{v}");
    let msg = v["error"]["message"].as_str().unwrap_or_default();
    assert!(msg.contains("max_auth_failures") && !msg.contains(ADMIN), "{msg}");
    let (s, retry, page) = console_login(&gw, ADMIN).await;
    assert_eq!(s, 429, "{page}");
    assert!(retry.is_some() && page.contains("Too many failed logins"), "{page}");
    assert_eq!(req(&gw, Some("fb-admin-guess-3"), Method::GET, "/admin/v1/state", None).await.0, 429);
    assert_eq!(req(&gw, Some(RESPONDER), Method::GET, "/metrics", None).await.0, 429);

    // The trail: each refusal up to the lockout, with the address and the reason; the lockout once;
    // nothing for the attempts refused while locked out, and no token anywhere.
    let deadline = Instant::now() + Duration::from_secs(10);
    while trail_events(&gw, "auth_locked_out").is_empty() {
        assert!(Instant::now() < deadline, "the lockout is audited");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let failed = trail_events(&gw, "auth_failed");
    let reasons: Vec<_> = failed.iter().map(|r| r["reason"].as_str().unwrap_or_default()).collect();
    assert_eq!(reasons, ["no_credential"; 5].into_iter().chain(["wrong_token"; 3]).collect::<Vec<_>>(), "{failed:?}");
    assert!(failed.iter().all(|r| r["peer"] == "127.0.0.1"), "{failed:?}");
    assert_eq!(failed[5]["route"], "POST /console/login");
    assert_eq!(failed[6]["route"], "GET /admin/v1/state");
    let guesses: Vec<_> = failed.iter().map(|r| r["failures"].as_u64()).collect();
    assert_eq!(guesses, [None, None, None, None, None, Some(1), Some(2), Some(3)], "only wrong tokens count");
    let locked = trail_events(&gw, "auth_locked_out");
    assert_eq!(locked.len(), 1, "{locked:?}");
    assert_eq!((locked[0]["peer"].as_str(), locked[0]["window_seconds"].as_u64()), (Some("127.0.0.1"), Some(3600)));
    let trail = std::fs::read_to_string(gw.dir.join("audit.jsonl")).unwrap_or_default();
    for t in ["fb-admin-guess-1", "fb-admin-guess-2", "fb-admin-guess-3", ADMIN, RESPONDER, VIEWER] {
        assert!(!trail.contains(t), "a token in the trail");
    }

    // Another address is not locked out, and sees the refusals in the metrics.
    let other = reqwest::Client::builder()
        .local_address(std::net::IpAddr::from([127, 0, 0, 2]))
        .build()
        .expect("a client on 127.0.0.2");
    let resp = other.get(format!("{}/metrics", gw.admin)).bearer_auth(VIEWER).send().await.expect("metrics");
    assert_eq!(resp.status().as_u16(), 200, "127.0.0.2 is another address");
    let text = resp.text().await.unwrap_or_default();
    for line in [
        "firebreak_admin_auth_failures_total{reason=\"no_credential\"} 5",
        "firebreak_admin_auth_failures_total{reason=\"wrong_token\"} 3",
        "firebreak_admin_auth_failures_total{reason=\"locked_out\"} 4",
        "firebreak_admin_auth_lockouts_total 1",
    ] {
        assert!(text.lines().any(|l| l == line), "{line} in:\n{text}");
    }
    // A reload that raises the limit lifts the lockout (the count stays: 3 < 10).
    let policy = std::fs::read_to_string(gw.dir.join("policy.toml")).expect("policy");
    std::fs::write(gw.dir.join("policy.toml"), policy.replace("max_auth_failures = 3", "max_auth_failures = 10"))
        .expect("write policy");
    let resp = other.post(format!("{}/admin/v1/policy/reload", gw.admin)).bearer_auth(ADMIN).send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 200, "{}", resp.text().await.unwrap_or_default());
    assert_eq!(req(&gw, Some(ADMIN), Method::GET, "/admin/v1/state", None).await.0, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_person_rule_holds_a_plan_run_by_hand_whose_actions_need_it() {
    let second = "[admin.require_second]\nactions = [\"set_level:normal\"]\n\n\
                  [plans.recover]\ndescription = \"back to normal\"\nactions = [{action = \"set_level\", level = \"normal\"}]\n\n\
                  [plans.quiet]\nactions = [{action = \"block_user\", user = \"{user}\"}]\n";
    let (_up, gw) = setup(&admins(second)).await;
    let (s, v) = batch(&gw, RESPONDER, json!([{"action": "set_level", "level": "lockdown"}]), None).await;
    assert_eq!(s, 200, "{v}");
    let run = |token: &'static str, plan: &'static str| {
        let gw = &gw;
        async move {
            let body = json!({"user": "bob", "reason": "INC-7 over"});
            req(gw, Some(token), Method::POST, &format!("/admin/v1/playbooks/{plan}"), Some(body)).await
        }
    };

    // A plan that would lift the lockdown is held like the batch it makes.
    let (s, v) = run(RESPONDER, "recover").await;
    assert_eq!(s, 202, "{v}");
    let p = &v["pending"];
    assert_eq!((p["kind"].as_str(), p["plan"].as_str()), (Some("playbook"), Some("recover")), "{v}");
    assert_eq!(p["batch"]["actions"], json!([{"action": "set_level", "level": "normal"}]));
    assert_eq!(p["needs_second"], json!(["set_level:normal"]));
    let id = p["id"].as_str().expect("pending id").to_owned();
    assert_eq!(call(&gw, CHAT, &chat_body("gpt-4o", false)).await.status, 503, "still in lockdown");
    let (s, v) = req(&gw, Some(RESPONDER), Method::POST, &format!("/admin/v1/pending/{id}/approve"), None).await;
    assert_eq!((s, v["error"]["code"].as_str()), (403, Some("same_identity")), "{v}");

    // A second identity approves: the plan runs, recorded as the plan with both identities.
    let (s, v) = req(&gw, Some(RESPONDER2), Method::POST, &format!("/admin/v1/pending/{id}/approve"), None).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!((v["applied"].as_bool(), v["plan"].as_str()), (Some(true), Some("recover")), "{v}");
    assert_eq!(call(&gw, CHAT, &chat_body("gpt-4o", false)).await.status, 200, "lockdown lifted");

    // A plan with no listed action runs at once.
    let (s, v) = run(RESPONDER, "quiet").await;
    assert_eq!(s, 200, "{v}");
    let bob = send(post(&client(), &gw, CHAT, Auth::Bearer(BOB), &chat_body("gpt-4o", false))).await;
    assert_eq!(bob.status, 403, "bob is blocked by the plan");

    let records = audit(&gw).await;
    let lift =
        records.iter().find(|r| r["kind"] == "switch" && r["plan"] == "recover").expect("the plan's switch record");
    assert_eq!(
        (&lift["actor"], &lift["requested_by"], &lift["approved_by"], &lift["pending_id"]),
        (&json!("rita"), &json!("rita"), &json!("ravi"), &json!(id)),
        "{lift}"
    );
    let approvals: Vec<_> = records
        .iter()
        .filter(|r| r["kind"] == "approval" && r["pending_id"] == id.as_str())
        .map(|r| (r["event"].as_str().unwrap_or_default(), r["kind_of_request"].as_str().unwrap_or_default()))
        .collect();
    assert_eq!(approvals, [("requested", "playbook"), ("refused", "playbook"), ("approved", "playbook")]);
}
