//! Test-side helpers around the harness: a policy that routes both APIs to a [`FakeUpstream`],
//! virtual keys, provider secrets, and small request helpers.
#![allow(dead_code)]

use std::sync::Once;

use reqwest::header::HeaderMap;
use serde_json::{json, Value};

use super::FakeUpstream;
use crate::common::{sha256_hex, Gateway};

/// Alice's virtual key (role `developer`: every tool).
pub const ALICE: &str = "fb-vk-alice-9d2f61c0e4b7a8351f";
/// Bob's virtual key (role `analyst`: tools `search_*` only).
pub const BOB: &str = "fb-vk-bob-7a1c90e3d2b4f56e08";
/// A key that expired in 2020.
pub const OLD: &str = "fb-vk-old-0c4e8a2f19b7d6e3a5";
/// A key that is in no policy.
pub const STRANGER: &str = "fb-vk-stranger-5b3e1d7c9a0f2468";

/// Environment variables holding the provider secrets the gateway injects.
pub const OPENAI_ENV: &str = "FB_PROXY_TEST_OPENAI_SECRET";
/// Its value.
pub const OPENAI_SECRET: &str = "sk-proj-UPSTREAM-openai-secret-4f0c2b9e7d1a";
/// Anthropic's.
pub const ANTHROPIC_ENV: &str = "FB_PROXY_TEST_ANTHROPIC_SECRET";
/// Its value.
pub const ANTHROPIC_SECRET: &str = "sk-ant-api03-UPSTREAM-anthropic-secret-8e6d";
/// An environment variable that is never set.
pub const UNSET_ENV: &str = "FB_PROXY_TEST_NEVER_SET_8c1f";

/// The safe-mode reply in [`policy`].
pub const SAFE_REPLY: &str = "Safe mode: pre-approved answer only — nothing was sent to a model. ✓";

static ENV: Once = Once::new();

/// Puts the provider secrets into this process's environment (inherited by the gateway process).
/// Done once, with fixed values, before the first gateway starts.
pub fn ensure_env() {
    ENV.call_once(|| {
        std::env::set_var(OPENAI_ENV, OPENAI_SECRET);
        std::env::set_var(ANTHROPIC_ENV, ANTHROPIC_SECRET);
    });
}

/// Where each API goes and which variable holds its credential.
pub struct Upstreams<'a> {
    /// OpenAI-kind base URL.
    pub openai_url: &'a str,
    /// Its credential variable.
    pub openai_env: &'a str,
    /// Anthropic-kind base URL.
    pub anthropic_url: &'a str,
    /// Its credential variable.
    pub anthropic_env: &'a str,
}

/// A policy with an OpenAI and an Anthropic upstream, keys for alice (developer), bob (analyst) and
/// an expired key, three declared tools, and `extra` appended (limits, levels…).
pub fn policy(u: &Upstreams<'_>, extra: &str) -> String {
    format!(
        r#"
# These tests provoke leaks and refusals on purpose: incidents open, no plan runs (monitor mode).
[incidents]
auto_contain = false

[upstreams.oai]
kind = "openai"
base_url = "{openai_url}"
credential_env = "{openai_env}"

[upstreams.ant]
kind = "anthropic"
base_url = "{anthropic_url}"
credential_env = "{anthropic_env}"

[[keys]]
id = "alice-key"
sha256 = "{alice}"
tenant = "acme"
user = "alice"
role = "developer"

[[keys]]
id = "bob-key"
sha256 = "{bob}"
tenant = "acme"
user = "bob"
role = "analyst"

[[keys]]
id = "old-key"
sha256 = "{old}"
tenant = "acme"
user = "olga"
role = "developer"
expires = "2020-01-01T00:00:00Z"

[roles.developer]

[roles.analyst]
tools = ["search_*"]

[tools.get_weather]
side_effects = false

[tools.search_docs]
side_effects = false

[tools.send_email]
side_effects = true

[safe_mode]
reply = "{safe}"

{extra}
"#,
        openai_url = u.openai_url,
        openai_env = u.openai_env,
        anthropic_url = u.anthropic_url,
        anthropic_env = u.anthropic_env,
        alice = sha256_hex(ALICE),
        bob = sha256_hex(BOB),
        old = sha256_hex(OLD),
        safe = SAFE_REPLY,
    )
}

/// A fake upstream and a gateway routing both APIs to it, with `extra` policy text.
pub async fn setup(extra: &str) -> (FakeUpstream, Gateway) {
    setup_with_env(extra, &[]).await
}

/// Like [`setup`], with extra environment variables for the gateway process.
pub async fn setup_with_env(extra: &str, env: &[(&str, &str)]) -> (FakeUpstream, Gateway) {
    ensure_env();
    let up = FakeUpstream::start().await;
    let url = up.base_url();
    let text = policy(
        &Upstreams { openai_url: &url, openai_env: OPENAI_ENV, anthropic_url: &url, anthropic_env: ANTHROPIC_ENV },
        extra,
    );
    let gw = tokio::task::block_in_place(|| Gateway::start_with_env(&text, env));
    (up, gw)
}

/// Starts a gateway on a custom upstream layout.
pub fn start_with(u: &Upstreams<'_>, extra: &str) -> Gateway {
    ensure_env();
    let text = policy(u, extra);
    tokio::task::block_in_place(|| Gateway::start(&text))
}

/// An HTTP/1.1 client.
pub fn client() -> reqwest::Client {
    reqwest::Client::builder().build().expect("client")
}

/// How the client presents its key.
#[derive(Clone, Copy, Debug)]
pub enum Auth<'a> {
    /// `Authorization: Bearer`
    Bearer(&'a str),
    /// `x-api-key`
    ApiKey(&'a str),
    /// No key.
    None,
}

/// The usual key header for a path: Bearer for OpenAI paths, `x-api-key` for Anthropic.
pub fn auth_for(path: &str, key: &'static str) -> Auth<'static> {
    if path.starts_with("/v1/messages") {
        Auth::ApiKey(key)
    } else {
        Auth::Bearer(key)
    }
}

/// A POST with a JSON body to the gateway.
pub fn post(c: &reqwest::Client, gw: &Gateway, path: &str, auth: Auth<'_>, body: &Value) -> reqwest::RequestBuilder {
    let mut rb = c.post(gw.url(path)).header("content-type", "application/json").body(body.to_string());
    rb = match auth {
        Auth::Bearer(k) => rb.bearer_auth(k),
        Auth::ApiKey(k) => rb.header("x-api-key", k).header("anthropic-version", "2023-06-01"),
        Auth::None => rb,
    };
    rb
}

/// A finished response: status, headers, body text.
#[derive(Debug)]
pub struct Got {
    /// Status.
    pub status: u16,
    /// Headers.
    pub headers: HeaderMap,
    /// Body.
    pub text: String,
}

impl Got {
    /// The body as JSON (panics with the body when it is not).
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.text).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text))
    }

    /// A header as text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// Sends and reads the whole body (bounded by 30 s).
pub async fn send(rb: reqwest::RequestBuilder) -> Got {
    let fut = async {
        let resp = rb.send().await.expect("request to the gateway failed");
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let text = resp.text().await.expect("reading the gateway's body failed");
        Got { status, headers, text }
    };
    tokio::time::timeout(std::time::Duration::from_secs(30), fut).await.expect("gateway response within 30 s")
}

/// POSTs `body` to `path` as alice (the usual key header for the path) and reads the answer.
pub async fn call(gw: &Gateway, path: &str, body: &Value) -> Got {
    send(post(&client(), gw, path, auth_for(path, ALICE), body)).await
}

/// Asserts an OpenAI-style error body, the status, and an `x-request-id`; returns the message.
pub fn assert_openai_error(g: &Got, status: u16) -> String {
    assert_eq!(g.status, status, "status; body: {}", g.text);
    let v = g.json();
    let e = &v["error"];
    assert!(e.is_object(), "OpenAI error shape expected: {v}");
    for f in ["message", "type", "code"] {
        assert!(e[f].is_string(), "OpenAI error needs a string `{f}`: {v}");
    }
    assert!(v.get("type").is_none(), "not an Anthropic error: {v}");
    assert!(g.header("x-request-id").is_some_and(|r| !r.is_empty()), "x-request-id header on {status}");
    assert!(g.header("content-type").is_some_and(|c| c.starts_with("application/json")));
    e["message"].as_str().unwrap_or_default().to_owned()
}

/// Asserts an Anthropic-style error body, the status, and an `x-request-id`; returns the message.
pub fn assert_anthropic_error(g: &Got, status: u16) -> String {
    assert_eq!(g.status, status, "status; body: {}", g.text);
    let v = g.json();
    assert_eq!(v["type"], "error", "Anthropic error shape expected: {v}");
    assert!(v["error"]["type"].is_string(), "Anthropic error needs error.type: {v}");
    assert!(v["error"]["message"].is_string(), "Anthropic error needs error.message: {v}");
    assert!(g.header("x-request-id").is_some_and(|r| !r.is_empty()), "x-request-id header on {status}");
    v["error"]["message"].as_str().unwrap_or_default().to_owned()
}

/// Asserts the error shape of the API `path` belongs to.
pub fn assert_error(path: &str, g: &Got, status: u16) -> String {
    if path.starts_with("/v1/messages") {
        assert_anthropic_error(g, status)
    } else {
        assert_openai_error(g, status)
    }
}

/// Posts a switch batch and asserts it was applied.
pub async fn flip(gw: &Gateway, actions: Value) {
    let (status, body) = gw.switches(json!({"actions": actions, "reason": "proxy test", "actor": "tests"})).await;
    assert_eq!(status, 200, "switch batch refused: {body}");
}

/// A minimal chat completions body.
pub fn chat_body(model: &str, stream: bool) -> Value {
    json!({"model": model, "stream": stream, "messages": [{"role": "user", "content": "Hello there"}]})
}

/// A minimal Anthropic messages body.
pub fn messages_body(model: &str, stream: bool) -> Value {
    json!({"model": model, "stream": stream, "max_tokens": 256, "messages": [{"role": "user", "content": "Hello there"}]})
}

/// A minimal Responses body.
pub fn responses_body(model: &str, stream: bool) -> Value {
    json!({"model": model, "stream": stream, "input": "Hello there"})
}

/// OpenAI-style tool definitions for these names.
pub fn openai_tools(names: &[&str]) -> Value {
    Value::Array(
        names
            .iter()
            .map(|n| json!({"type": "function", "function": {"name": n, "description": "test tool", "parameters": {"type": "object", "properties": {}}}}))
            .collect(),
    )
}

/// Anthropic-style tool definitions for these names.
pub fn anthropic_tools(names: &[&str]) -> Value {
    Value::Array(
        names
            .iter()
            .map(|n| json!({"name": n, "description": "test tool", "input_schema": {"type": "object", "properties": {}}}))
            .collect(),
    )
}

/// The tool names in a request body the upstream received (either format).
pub fn tool_names(body: &Value) -> Vec<String> {
    body.get("tools")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|t| {
            t.pointer("/function/name").or_else(|| t.get("name")).and_then(Value::as_str).map(str::to_owned)
        })
        .collect()
}
