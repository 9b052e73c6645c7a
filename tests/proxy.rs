//! Data-plane integration tests, part 1: JSON passthrough, credential injection, HTTP/2, and errors
//! in the caller's format. The real `firebreak` binary runs against the in-process fake provider in
//! `tests/upstream`.

mod common;
mod upstream;

use std::time::Duration;

use serde_json::{json, Value};
use upstream::gw::*;
use upstream::{anthropic_json, chat_json, responses_json, FakeUpstream, Reply};

const TEXT: &str = "Grüße aus der Werkstatt — naïve café, ✓ and 🦀.";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_passthrough_for_all_three_apis() {
    let (up, gw) = setup("").await;
    let cases = [
        ("/v1/chat/completions", chat_body("gpt-4o-mini", false), chat_json(TEXT, "gpt-4o-mini")),
        ("/v1/responses", responses_body("gpt-4o-mini", false), responses_json(TEXT, "gpt-4o-mini")),
        ("/v1/messages", messages_body("claude-sonnet-4", false), anthropic_json(TEXT, "claude-sonnet-4")),
    ];
    for (i, (path, req, reply)) in cases.iter().enumerate() {
        up.push(Reply::json(reply).with_header("x-upstream-marker", "m1"));
        let g = call(&gw, path, req).await;
        assert_eq!(g.status, 200, "{path}: {}", g.text);
        assert_eq!(&g.json(), reply, "{path}: the client gets the provider's JSON unchanged");
        assert!(g.header("x-request-id").is_some_and(|r| !r.is_empty()), "{path}: x-request-id");
        assert_eq!(g.header("x-upstream-marker"), Some("m1"), "{path}: provider headers are passed back");
        let reqs = up.wait_requests(i + 1).await;
        let got = &reqs[i];
        assert_eq!(got.method, "POST");
        assert_eq!(got.path, *path, "the provider is called on the same API path");
        assert_eq!(&got.json(), req, "{path}: the provider gets the client's body unchanged");
        assert!(got.header("x-request-id").is_some_and(|r| !r.is_empty()), "the request id goes upstream too");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_error_status_and_body_pass_through() {
    let (up, gw) = setup("").await;
    let err = json!({"error": {"message": "Rate limit reached for gpt-4o", "type": "requests", "param": null, "code": "rate_limit_exceeded"}});
    up.push(Reply::json(&err).with_status(429).with_header("retry-after", "7"));
    let g = call(&gw, "/v1/chat/completions", &chat_body("gpt-4o", false)).await;
    assert_eq!(g.status, 429);
    assert_eq!(g.json(), err);
    assert_eq!(g.header("retry-after"), Some("7"));
    let aerr = json!({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}});
    up.push(Reply::json(&aerr).with_status(529));
    let g = call(&gw, "/v1/messages", &messages_body("claude-sonnet-4", false)).await;
    assert_eq!(g.status, 529);
    assert_eq!(g.json(), aerr);
}

/// Every header the upstream saw, checked for the virtual key; the body too.
fn assert_no_virtual_key(r: &upstream::Recorded) {
    let headers = r.all_headers_text();
    for k in [ALICE, BOB] {
        assert!(!headers.contains(k), "the client's virtual key reached the provider in a header:\n{headers}");
        assert!(!String::from_utf8_lossy(&r.body).contains(k), "the virtual key reached the provider in the body");
    }
    assert!(!headers.contains("fb-vk-"), "no part of a virtual key goes upstream:\n{headers}");
    for h in ["cookie", "proxy-authorization", "x-forwarded-authorization"] {
        assert!(r.headers.get(h).is_none(), "`{h}` must not be forwarded:\n{headers}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openai_credential_injected_and_virtual_key_never_forwarded() {
    let (up, gw) = setup("").await;
    let c = client();
    // The virtual key as Bearer, and smuggled in every other place a naive proxy would forward.
    let rb = post(&c, &gw, "/v1/chat/completions", Auth::Bearer(ALICE), &chat_body("gpt-4o", false))
        .header("x-api-key", ALICE)
        .header("cookie", format!("session={ALICE}"))
        .header("proxy-authorization", format!("Bearer {ALICE}"))
        .header("x-forwarded-authorization", format!("Bearer {ALICE}"))
        .header("openai-beta", "assistants=v2");
    let g = send(rb).await;
    assert_eq!(g.status, 200, "{}", g.text);
    let r = up.wait_requests(1).await.remove(0);
    let auths: Vec<_> =
        r.headers.get_all("authorization").iter().map(|v| v.to_str().unwrap_or("").to_owned()).collect();
    assert_eq!(auths, vec![format!("Bearer {OPENAI_SECRET}")], "exactly the provider secret from {OPENAI_ENV}");
    assert!(r.headers.get("x-api-key").is_none(), "no x-api-key to an OpenAI provider");
    assert_eq!(r.header("openai-beta").as_deref(), Some("assistants=v2"), "provider feature headers are kept");
    assert!(!r.all_headers_text().contains(ANTHROPIC_SECRET), "the other provider's secret never goes here");
    assert_no_virtual_key(&r);
    // The provider secret never comes back to the client.
    let back = format!("{:?}{}", g.headers, g.text);
    assert!(!back.contains(OPENAI_SECRET), "the provider secret leaked to the client");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anthropic_credential_injected_and_virtual_key_never_forwarded() {
    let (up, gw) = setup("").await;
    let c = client();
    for (i, auth) in [Auth::ApiKey(ALICE), Auth::Bearer(ALICE)].into_iter().enumerate() {
        up.push(Reply::json(&anthropic_json("hi", "claude-sonnet-4")));
        let rb = post(&c, &gw, "/v1/messages", auth, &messages_body("claude-sonnet-4", false))
            .header("cookie", format!("k={ALICE}"))
            .header("anthropic-beta", "tools-2024-04-04");
        let g = send(rb).await;
        assert_eq!(g.status, 200, "{auth:?}: {}", g.text);
        let r = up.wait_requests(i + 1).await.remove(i);
        let keys: Vec<_> = r.headers.get_all("x-api-key").iter().map(|v| v.to_str().unwrap_or("").to_owned()).collect();
        assert_eq!(
            keys,
            vec![ANTHROPIC_SECRET.to_owned()],
            "{auth:?}: exactly the provider secret from {ANTHROPIC_ENV}"
        );
        assert!(r.headers.get("authorization").is_none(), "{auth:?}: the client's Authorization never goes upstream");
        assert!(r.header("anthropic-version").is_some(), "anthropic-version is always sent");
        assert_eq!(r.header("anthropic-beta").as_deref(), Some("tools-2024-04-04"));
        assert!(!r.all_headers_text().contains(OPENAI_SECRET));
        assert_no_virtual_key(&r);
        assert!(!g.text.contains(ANTHROPIC_SECRET));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_provider_credential_is_502_in_callers_format() {
    ensure_env();
    let up = FakeUpstream::start().await;
    let url = up.base_url();
    let gw = start_with(
        &Upstreams { openai_url: &url, openai_env: UNSET_ENV, anthropic_url: &url, anthropic_env: UNSET_ENV },
        "",
    );
    let g = call(&gw, "/v1/chat/completions", &chat_body("gpt-4o", false)).await;
    let msg = assert_openai_error(&g, 502);
    assert!(msg.contains("credential"), "the message names the problem: {msg}");
    let g = call(&gw, "/v1/messages", &messages_body("claude-sonnet-4", true)).await;
    assert_anthropic_error(&g, 502);
    assert_eq!(up.count(), 0, "nothing is sent upstream without a credential");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_prior_knowledge_clients_are_served() {
    let (up, gw) = setup("").await;
    let c = reqwest::Client::builder().http2_prior_knowledge().build().expect("h2 client");
    up.push(Reply::json(&chat_json(TEXT, "gpt-4o")));
    let resp = post(&c, &gw, "/v1/chat/completions", Auth::Bearer(ALICE), &chat_body("gpt-4o", false))
        .send()
        .await
        .expect("h2 request");
    assert_eq!(resp.version(), reqwest::Version::HTTP_2);
    assert_eq!(resp.status(), 200);
    assert!(resp.headers().get("x-request-id").is_some());
    let v: Value = resp.json().await.expect("json");
    assert_eq!(v, chat_json(TEXT, "gpt-4o"));

    // A stream over HTTP/2, and an error over HTTP/2.
    let sse = upstream::anthropic_sse(&["Hallo ", "Wörld"], "claude-sonnet-4");
    up.push(Reply::sse(&sse, upstream::Chunking::Awkward));
    let resp = post(&c, &gw, "/v1/messages", Auth::ApiKey(ALICE), &messages_body("claude-sonnet-4", true))
        .send()
        .await
        .expect("h2 stream");
    assert_eq!(resp.version(), reqwest::Version::HTTP_2);
    let text = resp.text().await.expect("stream body");
    assert_eq!(upstream::anthropic_stream_text(&upstream::parse_sse(&text)), "Hallo Wörld");
    let g = send(post(&c, &gw, "/v1/messages", Auth::ApiKey(STRANGER), &messages_body("claude-sonnet-4", false))).await;
    assert_anthropic_error(&g, 401);
    let r = up.wait_requests(2).await;
    assert_eq!(r[0].header("authorization").as_deref(), Some(format!("Bearer {OPENAI_SECRET}").as_str()));
}

/// A raw request: any content type and body bytes.
fn raw(
    c: &reqwest::Client,
    gw: &common::Gateway,
    path: &str,
    auth: Auth<'_>,
    ct: &str,
    body: Vec<u8>,
) -> reqwest::RequestBuilder {
    let rb = c.post(gw.url(path)).header("content-type", ct).body(body);
    match auth {
        Auth::Bearer(k) => rb.bearer_auth(k),
        Auth::ApiKey(k) => rb.header("x-api-key", k),
        Auth::None => rb,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_are_in_the_callers_format_with_a_request_id() {
    let (up, gw) = setup("[limits]\nmax_request_body_bytes = 2048\n").await;
    let c = client();
    for path in ["/v1/chat/completions", "/v1/messages"] {
        let body =
            if path == "/v1/messages" { messages_body("claude-sonnet-4", false) } else { chat_body("gpt-4o", false) };
        let ok = || body.to_string().into_bytes();

        let g = send(raw(&c, &gw, path, auth_for(path, STRANGER), "application/json", ok())).await;
        let msg = assert_error(path, &g, 401);
        assert!(!msg.contains(STRANGER), "the presented key is never echoed: {msg}");

        let g = send(raw(&c, &gw, path, Auth::None, "application/json", ok())).await;
        assert_error(path, &g, 401);

        let g = send(raw(&c, &gw, path, Auth::Bearer(""), "application/json", ok())).await;
        assert_error(path, &g, 401);

        let g = send(raw(&c, &gw, path, auth_for(path, OLD), "application/json", ok())).await;
        let msg = assert_error(path, &g, 401);
        assert!(msg.contains("expired"), "{msg}");

        let g = send(raw(
            &c,
            &gw,
            path,
            auth_for(path, ALICE),
            "application/json",
            b"{\"model\": \"x\", \"messages\": [".to_vec(),
        ))
        .await;
        assert_error(path, &g, 400);

        let g = send(raw(&c, &gw, path, auth_for(path, ALICE), "application/json", b"[1,2,3]".to_vec())).await;
        assert_error(path, &g, 400);

        let g = send(raw(&c, &gw, path, auth_for(path, ALICE), "text/plain", ok())).await;
        assert_error(path, &g, 415);

        let mut big = body.clone();
        big["messages"][0]["content"] = Value::String("x".repeat(10_000));
        let g = send(raw(&c, &gw, path, auth_for(path, ALICE), "application/json", big.to_string().into_bytes())).await;
        let msg = assert_error(path, &g, 413);
        assert!(msg.contains("2048"), "the limit is named: {msg}");
    }
    // Unknown routes, answered in the format of the API family the path belongs to.
    let g = send(raw(&c, &gw, "/v1/chat/completion", Auth::Bearer(ALICE), "application/json", b"{}".to_vec())).await;
    assert_openai_error(&g, 404);
    let g = send(raw(&c, &gw, "/v1/messages/batches", Auth::ApiKey(ALICE), "application/json", b"{}".to_vec())).await;
    assert_anthropic_error(&g, 404);
    let g = send(c.get(gw.url("/v1/chat/completions")).bearer_auth(ALICE)).await;
    assert_openai_error(&g, 404);
    let g = send(c.get(gw.url("/definitely/not/here"))).await;
    assert_openai_error(&g, 404);

    assert_eq!(up.count(), 0, "no refused request ever reaches the provider");
    // Nothing was disturbed: a good request still goes through.
    let g = call(&gw, "/v1/chat/completions", &chat_body("gpt-4o", false)).await;
    assert_eq!(g.status, 200, "{}", g.text);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_down_is_502() {
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr").port()
    };
    let url = format!("http://127.0.0.1:{closed}");
    let gw = start_with(
        &Upstreams { openai_url: &url, openai_env: OPENAI_ENV, anthropic_url: &url, anthropic_env: ANTHROPIC_ENV },
        "",
    );
    let g = call(&gw, "/v1/chat/completions", &chat_body("gpt-4o", false)).await;
    assert_openai_error(&g, 502);
    let g = call(&gw, "/v1/chat/completions", &chat_body("gpt-4o", true)).await;
    assert_openai_error(&g, 502);
    let g = call(&gw, "/v1/messages", &messages_body("claude-sonnet-4", false)).await;
    let msg = assert_anthropic_error(&g, 502);
    assert!(!msg.contains(ANTHROPIC_SECRET));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_timeout_is_504_and_the_gateway_keeps_serving() {
    let (up, gw) = setup("[limits]\nupstream_timeout_ms = 1000\n").await;
    let slow = Duration::from_secs(10);
    up.push(Reply::json(&chat_json("late", "gpt-4o")).with_head_delay(slow));
    let t0 = std::time::Instant::now();
    let g = call(&gw, "/v1/chat/completions", &chat_body("gpt-4o", false)).await;
    assert_openai_error(&g, 504);
    assert!(t0.elapsed() < slow, "the gateway gave up before the provider answered");
    up.push(Reply::json(&anthropic_json("late", "claude-sonnet-4")).with_head_delay(slow));
    let g = call(&gw, "/v1/messages", &messages_body("claude-sonnet-4", true)).await;
    assert_anthropic_error(&g, 504);
    // A JSON body that starts but never finishes in time is a timeout too.
    up.push(Reply::raw("application/json", vec!["{\"id\":".into(), "\"x\"}".into()]).with_chunk_delay(slow));
    let g = call(&gw, "/v1/chat/completions", &chat_body("gpt-4o", false)).await;
    assert_openai_error(&g, 504);
    // And the next request is served normally.
    up.push(Reply::json(&chat_json("on time", "gpt-4o")));
    let g = call(&gw, "/v1/chat/completions", &chat_body("gpt-4o", false)).await;
    assert_eq!(g.status, 200);
    assert_eq!(g.json()["choices"][0]["message"]["content"], "on time");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn base_url_path_prefix_is_kept() {
    ensure_env();
    let up = FakeUpstream::start().await;
    let oai = format!("{}/gateway/openai", up.base_url());
    let ant = format!("{}/gateway/anthropic/", up.base_url());
    let gw = start_with(
        &Upstreams { openai_url: &oai, openai_env: OPENAI_ENV, anthropic_url: &ant, anthropic_env: ANTHROPIC_ENV },
        "",
    );
    assert_eq!(call(&gw, "/v1/chat/completions", &chat_body("gpt-4o", false)).await.status, 200);
    up.push(Reply::json(&anthropic_json("ok", "claude-sonnet-4")));
    assert_eq!(call(&gw, "/v1/messages", &messages_body("claude-sonnet-4", false)).await.status, 200);
    let paths: Vec<String> = up.wait_requests(2).await.into_iter().map(|r| r.path).collect();
    assert_eq!(paths, vec!["/gateway/openai/v1/chat/completions", "/gateway/anthropic/v1/messages"]);
}
