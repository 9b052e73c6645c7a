//! The web console at /console: login, the session cookie, CSRF on every state-changing call, the
//! security headers, the decision stream and the admin API additions it uses (checklist ticking,
//! audit filters, audit verify). The browser test is tests/e2e/test_console.py.

mod common;

use std::time::{Duration, Instant};

use common::{sha256_hex, Gateway, ADMIN_TOKEN};
use futures_util::StreamExt;
use reqwest::{header, redirect, Method, StatusCode};
use serde_json::{json, Value};

const ALICE: &str = "sk-fb-alice-5e1f0c2a";
const BOB: &str = "sk-fb-bob-9a7d3b44";

fn policy() -> String {
    format!(
        r#"
[upstreams.scripted]
kind = "scripted"

[[upstreams.scripted.replies]]
text = "Hello from the scripted upstream."

[[keys]]
id = "alice-key"
sha256 = "{}"
tenant = "acme"
user = "alice"
role = "developer"

[[keys]]
id = "bob-key"
sha256 = "{}"
tenant = "globex"
user = "bob"
role = "developer"

[roles.developer]
"#,
        sha256_hex(ALICE),
        sha256_hex(BOB)
    )
}

/// A client that does not follow redirects and keeps no cookies (the tests handle both).
fn client() -> reqwest::Client {
    reqwest::Client::builder().redirect(redirect::Policy::none()).build().expect("client")
}

/// Logs in with the admin token; returns the `name=value` cookie pair.
async fn login(g: &Gateway) -> String {
    let r = client()
        .post(format!("{}/console/login", g.admin))
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(format!("token={ADMIN_TOKEN}"))
        .send()
        .await
        .expect("login");
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let set = r.headers().get(header::SET_COOKIE).and_then(|v| v.to_str().ok()).expect("set-cookie").to_owned();
    set.split(';').next().expect("pair").to_owned()
}

async fn page(g: &Gateway, path: &str, cookie: &str) -> (StatusCode, header::HeaderMap, String) {
    let r = client().get(format!("{}{path}", g.admin)).header(header::COOKIE, cookie).send().await.expect("page");
    let (s, h) = (r.status(), r.headers().clone());
    (s, h, r.text().await.unwrap_or_default())
}

/// The CSRF token of the session, as the page gives it to the script.
fn csrf_of(html: &str) -> String {
    let at = html.find("name=\"csrf-token\" content=\"").expect("csrf meta") + "name=\"csrf-token\" content=\"".len();
    html[at..at + 64].to_owned()
}

async fn api(
    g: &Gateway,
    method: Method,
    path: &str,
    cookie: &str,
    csrf: Option<&str>,
    body: Option<Value>,
) -> (u16, Value) {
    let mut rb = client().request(method, format!("{}{path}", g.admin)).header(header::COOKIE, cookie);
    if let Some(t) = csrf {
        rb = rb.header("x-csrf-token", t);
    }
    if let Some(b) = body {
        rb = rb.json(&b);
    }
    let r = rb.send().await.expect("api");
    let s = r.status().as_u16();
    let t = r.text().await.unwrap_or_default();
    (s, serde_json::from_str(&t).unwrap_or(Value::String(t)))
}

async fn chat(g: &Gateway, key: &str) -> u16 {
    client()
        .post(g.url("/v1/chat/completions"))
        .bearer_auth(key)
        .json(&json!({"model": "m", "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await
        .expect("chat")
        .status()
        .as_u16()
}

fn assert_hardened(h: &header::HeaderMap, what: &str) {
    let csp = h.get(header::CONTENT_SECURITY_POLICY).and_then(|v| v.to_str().ok()).unwrap_or_default();
    assert!(csp.contains("default-src 'self'"), "{what}: CSP {csp:?}");
    assert!(csp.contains("script-src 'self'") && csp.contains("style-src 'self'"), "{what}: CSP {csp:?}");
    assert!(csp.contains("frame-ancestors 'none'"), "{what}: CSP {csp:?}");
    assert!(!csp.contains("unsafe-inline") && !csp.contains("unsafe-eval"), "{what}: CSP {csp:?}");
    assert_eq!(h.get(header::X_FRAME_OPTIONS).map(|v| v.as_bytes()), Some(&b"DENY"[..]), "{what}");
    assert_eq!(h.get(header::REFERRER_POLICY).map(|v| v.as_bytes()), Some(&b"no-referrer"[..]), "{what}");
}

#[tokio::test]
async fn login_opens_a_hardened_session_and_never_echoes_the_token() {
    let g = Gateway::start(&policy());
    // Unauthenticated: the page redirects to the login form, which is hardened too.
    let r = client().get(format!("{}/console/now", g.admin)).send().await.expect("now");
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(r.headers().get(header::LOCATION).map(|v| v.as_bytes()), Some(&b"/console/login"[..]));
    let r = client().get(format!("{}/console/login", g.admin)).send().await.expect("login page");
    assert_eq!(r.status(), StatusCode::OK);
    assert_hardened(r.headers(), "login page");

    // A wrong token: 401, the form again, no cookie, and the token presented is not echoed.
    let wrong = "wrong-token-that-must-not-be-echoed";
    let r = client()
        .post(format!("{}/console/login", g.admin))
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(format!("token={wrong}"))
        .send()
        .await
        .expect("login");
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert!(r.headers().get(header::SET_COOKIE).is_none());
    assert!(!r.text().await.unwrap_or_default().contains(wrong));

    // A login form posted from another site is refused (no session exists yet to hold a CSRF token).
    let r = client()
        .post(format!("{}/console/login", g.admin))
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .header(header::ORIGIN, "https://evil.example")
        .body(format!("token={ADMIN_TOKEN}"))
        .send()
        .await
        .expect("login");
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    assert!(r.headers().get(header::SET_COOKIE).is_none());
    let r = client()
        .post(format!("{}/console/login", g.admin))
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .header("sec-fetch-site", "cross-site")
        .header(header::ORIGIN, "null")
        .body(format!("token={ADMIN_TOKEN}"))
        .send()
        .await
        .expect("login");
    assert_eq!(r.status(), StatusCode::FORBIDDEN, "a cross-site form, by its fetch metadata");

    // The right token: a session cookie with every attribute, and a random 256-bit id.
    let r = client()
        .post(format!("{}/console/login", g.admin))
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(format!("token={ADMIN_TOKEN}"))
        .send()
        .await
        .expect("login");
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let set = r.headers().get(header::SET_COOKIE).and_then(|v| v.to_str().ok()).expect("cookie").to_owned();
    assert!(set.contains("HttpOnly"), "{set}");
    assert!(set.contains("SameSite=Strict"), "{set}");
    assert!(set.contains("Path=/"), "{set}");
    assert!(set.contains("Max-Age=28800"), "an expiry: {set}");
    assert!(!set.contains("Secure"), "a plain-HTTP listener cannot set a Secure cookie: {set}");
    let cookie = set.split(';').next().expect("pair").to_owned();
    let id = cookie.split_once('=').expect("value").1;
    assert_eq!(id.len(), 64);
    assert!(id.bytes().all(|b| b.is_ascii_hexdigit()));
    assert_ne!(id, login(&g).await.split_once('=').expect("v").1, "every login gets a new id");

    // Every page: 200, hardened, no inline script or style, and nothing secret.
    for path in ["/console/now", "/console/act", "/console/incidents", "/console/tools", "/console/audit"] {
        let (s, h, body) = page(&g, path, &cookie).await;
        assert_eq!(s, StatusCode::OK, "{path}");
        assert_hardened(&h, path);
        assert_eq!(h.get(header::CACHE_CONTROL).map(|v| v.as_bytes()), Some(&b"no-store"[..]), "{path}");
        assert!(!body.contains(ADMIN_TOKEN), "{path} shows the admin token");
        assert!(!body.contains(id), "{path} shows the session id");
        assert!(!body.contains("style="), "{path} has an inline style");
        for handler in ["onclick=", "onload=", "onsubmit=", "onchange=", "javascript:"] {
            assert!(!body.contains(handler), "{path} has an inline handler");
        }
        for tag in body.match_indices("<script").map(|(i, _)| &body[i..]) {
            let end = tag.find('>').unwrap_or(tag.len());
            assert!(tag[..end].contains("src=\"/console/assets/"), "{path}: inline script {}", &tag[..end]);
            assert!(tag[end..].starts_with("></script>"), "{path}: a script with a body");
        }
    }
    // The assets the pages load, served from the binary.
    let (s, h, js) = page(&g, "/console/assets/console.js", "").await;
    assert_eq!(s, StatusCode::OK);
    assert!(h.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("").starts_with("text/javascript"));
    assert!(js.contains("X-CSRF-Token"));
    let (s, _, css) = page(&g, "/console/assets/console.css", "").await;
    assert_eq!(s, StatusCode::OK);
    assert!(css.contains("@media"), "responsive rules for a phone screen");
    // The admin token never reached the log either.
    assert!(!g.stderr().contains(ADMIN_TOKEN));
}

#[tokio::test]
async fn every_state_change_needs_the_sessions_csrf_token() {
    let g = Gateway::start(&policy());
    let cookie = login(&g).await;
    let (_, _, html) = page(&g, "/console/now", &cookie).await;
    let csrf = csrf_of(&html);
    let batch = json!({"actions": [{"action": "set_level", "level": "lockdown"}], "reason": "console test"});

    // Reading needs only the session.
    let (s, state) = api(&g, Method::GET, "/admin/v1/state", &cookie, None, None).await;
    assert_eq!(s, 200);
    let before = state["version"].as_u64().expect("version");

    // A change without the token, or with another one, is refused and changes nothing.
    for token in [None, Some("0".repeat(64).as_str()), Some(&csrf[..63])] {
        let (s, v) = api(&g, Method::POST, "/admin/v1/switches", &cookie, token, Some(batch.clone())).await;
        assert_eq!(s, 403, "{token:?}: {v}");
        assert_eq!(v["error"]["code"], "csrf_failed");
    }
    let (_, state) = api(&g, Method::GET, "/admin/v1/state", &cookie, None, None).await;
    assert_eq!(state["version"].as_u64(), Some(before));
    assert_eq!(state["level"], "normal");

    // With it: applied, and the audit record names the logged-in identity.
    let (s, v) = api(&g, Method::POST, "/admin/v1/switches", &cookie, Some(&csrf), Some(batch.clone())).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(chat(&g, ALICE).await, 503, "lockdown applied through the console session");
    // expect_version from a page loaded before the change: 409, explained.
    let stale =
        json!({"actions": [{"action": "set_level", "level": "normal"}], "reason": "lift", "expect_version": before});
    let (s, v) = api(&g, Method::POST, "/admin/v1/switches", &cookie, Some(&csrf), Some(stale)).await;
    assert_eq!(s, 409, "{v}");
    assert_eq!(v["error"]["code"], "version_conflict");
    assert_eq!(v["error"]["current_version"].as_u64(), Some(before + 1));
    let lift = json!({"actions": [{"action": "set_level", "level": "normal"}], "reason": "lift", "expect_version": before + 1});
    let (s, _) = api(&g, Method::POST, "/admin/v1/switches", &cookie, Some(&csrf), Some(lift)).await;
    assert_eq!(s, 200);
    assert_eq!(chat(&g, ALICE).await, 200);
    let (s, v) = g.admin(Method::GET, "/admin/v1/audit?kind=switch", None).await;
    assert_eq!(s, 200);
    let recs = v["records"].as_array().expect("records");
    assert_eq!(recs.len(), 2, "{v}");
    assert!(recs.iter().all(|r| r["actor"] == "admin" && r["reason"].is_string()));

    // Another session's token does not work for this one.
    let other = login(&g).await;
    let (_, _, other_html) = page(&g, "/console/now", &other).await;
    let other_csrf = csrf_of(&other_html);
    assert_ne!(other_csrf, csrf);
    let (s, _) = api(&g, Method::POST, "/admin/v1/switches", &cookie, Some(&other_csrf), Some(batch.clone())).await;
    assert_eq!(s, 403);

    // Logout needs the token too, and ends the session for the API as well.
    let r = client()
        .post(format!("{}/console/logout", g.admin))
        .header(header::COOKIE, &cookie)
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body("csrf=nope")
        .send()
        .await
        .expect("logout");
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let r = client()
        .post(format!("{}/console/logout", g.admin))
        .header(header::COOKIE, &cookie)
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(format!("csrf={csrf}"))
        .send()
        .await
        .expect("logout");
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let cleared = r.headers().get(header::SET_COOKIE).and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
    assert!(cleared.contains("Max-Age=0"), "{cleared}");
    let (s, v) = api(&g, Method::GET, "/admin/v1/state", &cookie, None, None).await;
    assert_eq!(s, 401, "{v}");
    assert_eq!(v["error"]["code"], "session_expired");
    let (s, _, _) = page(&g, "/console/now", &cookie).await;
    assert_eq!(s, StatusCode::SEE_OTHER);
    // A made-up cookie is no session.
    let (s, _) =
        api(&g, Method::GET, "/admin/v1/state", &format!("firebreak_console={}", "ab".repeat(32)), None, None).await;
    assert_eq!(s, 401);
}

#[tokio::test]
async fn the_decision_stream_carries_audit_fields_only() {
    let g = Gateway::start(&policy());
    let cookie = login(&g).await;
    let r = client()
        .get(format!("{}/admin/v1/decisions/stream", g.admin))
        .header(header::COOKIE, &cookie)
        .send()
        .await
        .expect("stream");
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers().get(header::CONTENT_TYPE).map(|v| v.as_bytes()), Some(&b"text/event-stream"[..]));
    let mut body = r.bytes_stream();
    // The stream has started (its first comment) before the request is made.
    let first = body.next().await.expect("first chunk").expect("chunk");
    assert!(first.starts_with(b": "));
    let session = "sess-secret-looking-value";
    let r = client()
        .post(g.url("/v1/chat/completions"))
        .bearer_auth(ALICE)
        .header("x-session-id", session)
        .json(&json!({"model": "m", "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await
        .expect("chat");
    assert_eq!(r.status(), 200);
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut text = String::new();
    let event = loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let chunk =
            tokio::time::timeout(left, body.next()).await.expect("an event within 10 s").expect("open").expect("chunk");
        text.push_str(&String::from_utf8_lossy(&chunk));
        if let Some(line) = text.lines().find(|l| l.starts_with("data: ") && l.contains("\"request\"")) {
            break serde_json::from_str::<Value>(&line["data: ".len()..]).expect("json event");
        }
    };
    assert_eq!(event["user"], "alice");
    assert_eq!(event["tenant"], "acme");
    assert_eq!(event["status"], 200);
    assert!(event["seq"].as_u64().is_some());
    assert_eq!(event["session"], Value::from(firebreak::audit::session_digest(session)), "the digest, as in the trail");
    assert!(!text.contains(session), "the raw session id is never streamed");
    for k in ["mac", "prev", "kid", "request_id"] {
        assert!(event.get(k).is_none(), "{k} is not streamed: {event}");
    }
    assert!(!text.contains(ALICE) && !text.contains(ADMIN_TOKEN));
    // Without a session or token: refused.
    let r = client().get(format!("{}/admin/v1/decisions/stream", g.admin)).send().await.expect("stream");
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn audit_search_filters_and_verification() {
    let g = Gateway::start(&policy());
    assert_eq!(chat(&g, ALICE).await, 200);
    assert_eq!(chat(&g, BOB).await, 200);
    assert_eq!(chat(&g, ALICE).await, 200);
    let get = |q: &'static str| g.admin(Method::GET, q, None);
    // The writer task appends records after the responses: wait (bounded) until all three are in.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (_, v) = get("/admin/v1/audit?kind=request").await;
        if v["records"].as_array().map(Vec::len) == Some(3) {
            break;
        }
        assert!(Instant::now() < deadline, "three request records never reached the trail: {v}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (s, v) = get("/admin/v1/audit?user=alice&kind=request").await;
    assert_eq!(s, 200);
    let recs = v["records"].as_array().expect("records").clone();
    assert_eq!(recs.len(), 2, "{v}");
    assert!(recs.iter().all(|r| r["user"] == "alice"));
    let (_, v) = get("/admin/v1/audit?tenant=globex").await;
    assert_eq!(v["records"].as_array().map(Vec::len), Some(1));
    let (_, v) = get("/admin/v1/audit?rule=allow&user=bob").await;
    assert_eq!(v["records"].as_array().map(Vec::len), Some(1), "{v}");
    let (_, v) = get("/admin/v1/audit?user=alice&limit=1").await;
    assert_eq!(v["records"].as_array().map(Vec::len), Some(1));
    let (_, v) = get("/admin/v1/audit?until=2000-01-01T00:00:00Z").await;
    assert_eq!(v["records"].as_array().map(Vec::len), Some(0));
    let (s, v) = get("/admin/v1/audit?colour=red").await;
    assert_eq!(s, 400);
    assert_eq!(v["error"]["code"], "unknown_parameter");
    let (s, v) = get("/admin/v1/audit?until=soon").await;
    assert_eq!(s, 400, "{v}");
    // The console's Audit page runs the same search.
    let cookie = login(&g).await;
    let (s, _, html) = page(&g, "/console/audit?user=bob", &cookie).await;
    assert_eq!(s, StatusCode::OK);
    assert!(html.contains("globex") && !html.contains(">acme<"), "only bob's records");
    let (s, _, _) = page(&g, "/console/audit?bogus=1", &cookie).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);

    let (s, v) = get("/admin/v1/audit/verify").await;
    assert_eq!(s, 200);
    assert_eq!(v["ok"], true, "{v}");
    assert!(v["records"].as_u64().unwrap_or(0) >= 3);
    // Tamper with a record: the status says so.
    let path = g.dir.join("audit.jsonl");
    let text = std::fs::read_to_string(&path).expect("trail");
    std::fs::write(&path, text.replacen("\"bob\"", "\"eve\"", 1)).expect("write");
    let (_, v) = get("/admin/v1/audit/verify").await;
    assert_eq!(v["ok"], false, "{v}");
}

#[tokio::test]
async fn checklist_ticks_are_kept_and_audited() {
    // A gateway canary leaked by the model opens a SEV-1 incident.
    let p = policy().replace(
        "[[upstreams.scripted.replies]]\ntext = \"Hello",
        "[[upstreams.scripted.replies]]\nwhen_contains = \"leak\"\ntext = \"The marker is fbQ7kX2mZp9RtL4w.\"\n\n[[upstreams.scripted.replies]]\ntext = \"Hello",
    ) + "\n[[redaction.canaries]]\nid = \"support-prompt\"\nvalue = \"fbQ7kX2mZp9RtL4w\"\n";
    let g = Gateway::start(&p);
    let r = client()
        .post(g.url("/v1/chat/completions"))
        .bearer_auth(ALICE)
        .json(&json!({"model": "m", "messages": [{"role": "user", "content": "leak it"}]}))
        .send()
        .await
        .expect("chat");
    assert!(!r.text().await.unwrap_or_default().contains("fbQ7kX2mZp9RtL4w"));
    let deadline = Instant::now() + Duration::from_secs(10);
    let id = loop {
        let (_, v) = g.admin(Method::GET, "/admin/v1/incidents", None).await;
        if let Some(id) = v["incidents"][0]["id"].as_str() {
            break id.to_owned();
        }
        assert!(Instant::now() < deadline, "no incident opened: {v}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let cookie = login(&g).await;
    let (_, _, html) = page(&g, &format!("/console/incidents/{id}"), &cookie).await;
    assert!(html.contains("class=\"tick\""), "checkboxes for the checklist");
    let csrf = csrf_of(&html);
    let path = format!("/admin/v1/incidents/{id}/checklist");
    let (s, _) = api(&g, Method::POST, &path, &cookie, None, Some(json!({"step": 0, "done": true}))).await;
    assert_eq!(s, 403, "no CSRF token");
    let (s, v) = api(&g, Method::POST, &path, &cookie, Some(&csrf), Some(json!({"step": 0, "done": true}))).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["incident"]["ticked"][0]["step"], 0);
    assert_eq!(v["incident"]["ticked"][0]["actor"], "admin");
    let (s, v) = api(&g, Method::POST, &path, &cookie, Some(&csrf), Some(json!({"step": 99}))).await;
    assert_eq!(s, 400, "{v}");
    assert_eq!(v["error"]["code"], "unknown_step");
    let (s, _) = api(
        &g,
        Method::POST,
        "/admin/v1/incidents/INC-99999/checklist",
        &cookie,
        Some(&csrf),
        Some(json!({"step": 0})),
    )
    .await;
    assert_eq!(s, 404);
    let (s, _) = api(&g, Method::POST, &path, &cookie, Some(&csrf), Some(json!({"step": "first"}))).await;
    assert_eq!(s, 400);
    // Kept (the incident file) and audited.
    let (_, v) = g.admin(Method::GET, &format!("/admin/v1/incidents/{id}"), None).await;
    assert_eq!(v["incident"]["ticked"].as_array().map(Vec::len), Some(1));
    let (_, v) = g.admin(Method::GET, &format!("/admin/v1/audit?kind=incident&incident={id}"), None).await;
    assert!(v["records"]
        .as_array()
        .expect("records")
        .iter()
        .any(|r| r["event"] == "checklist_ticked" && r["step"] == 0));
    // Untick.
    let (s, v) = api(&g, Method::POST, &path, &cookie, Some(&csrf), Some(json!({"step": 0, "done": false}))).await;
    assert_eq!(s, 200);
    assert!(v["incident"].get("ticked").is_none());
}

#[tokio::test]
async fn a_viewer_sees_no_action_and_is_refused_by_the_api() {
    const VIEWER: &str = "viewer-token-5b1c9e";
    const RESPONDER: &str = "responder-token-77ad02";
    let p = format!(
        "{}\n[[admins]]\nid = \"vera\"\nsha256 = \"{}\"\nrole = \"viewer\"\n\n[[admins]]\nid = \"rory\"\nsha256 = \"{}\"\nrole = \"responder\"\n",
        policy(),
        sha256_hex(VIEWER),
        sha256_hex(RESPONDER)
    );
    let g = Gateway::start(&p);
    let login_as = |token: &'static str| {
        let admin = g.admin.clone();
        async move {
            let r = client()
                .post(format!("{admin}/console/login"))
                .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
                .body(format!("token={token}"))
                .send()
                .await
                .expect("login");
            assert_eq!(r.status(), StatusCode::SEE_OTHER);
            let set = r.headers().get(header::SET_COOKIE).and_then(|v| v.to_str().ok()).expect("cookie").to_owned();
            set.split(';').next().expect("pair").to_owned()
        }
    };
    let viewer = login_as(VIEWER).await;
    let (_, _, now) = page(&g, "/console/now", &viewer).await;
    assert!(now.contains("vera") && now.contains("viewer"), "the identity is shown");
    let csrf = csrf_of(&now);
    let (s, _, act) = page(&g, "/console/act", &viewer).await;
    assert_eq!(s, StatusCode::OK);
    assert!(!act.contains("class=\"review\""), "a viewer sees no action buttons");
    assert!(act.contains("cannot do this"));
    // With a valid session and CSRF token, the API still refuses: 403 naming the role.
    let batch = json!({"actions": [{"action": "set_level", "level": "lockdown"}], "reason": "viewer tries"});
    let (s, v) = api(&g, Method::POST, "/admin/v1/switches", &viewer, Some(&csrf), Some(batch.clone())).await;
    assert_eq!(s, 403, "{v}");
    assert_eq!(v["error"]["code"], "forbidden");
    assert!(v["error"]["message"].as_str().unwrap_or("").contains("responder"), "{v}");
    assert_eq!(chat(&g, ALICE).await, 200, "nothing changed");

    // A responder may flip switches (recorded under their id) but not approve tools.
    let responder = login_as(RESPONDER).await;
    let (_, _, html) = page(&g, "/console/act", &responder).await;
    assert!(html.contains("class=\"review\""));
    let csrf = csrf_of(&html);
    let (s, v) = api(&g, Method::POST, "/admin/v1/switches", &responder, Some(&csrf), Some(batch)).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(chat(&g, ALICE).await, 503);
    let (_, v) = g.admin(Method::GET, "/admin/v1/audit?kind=switch", None).await;
    assert_eq!(v["records"][0]["actor"], "rory", "{v}");
    let approve = json!({"actions": [{"action": "approve_tool", "server": "s", "tool": "t", "hash": "0".repeat(64)}], "reason": "r"});
    let (s, v) = api(&g, Method::POST, "/admin/v1/switches", &responder, Some(&csrf), Some(approve)).await;
    assert_eq!(s, 403, "{v}");
}
