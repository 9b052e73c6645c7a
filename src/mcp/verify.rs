//! "Scan the MCP server": list a server's tools (initialize + tools/list over Streamable HTTP) and
//! say, for each, whether its definition is trusted — the checks the gateway applies to every
//! `tools/list`, without recording anything. Used by `GET /admin/v1/mcp/servers/<server>/verify`
//! (the gateway lists the tools itself) and `firebreak mcp verify` (through that endpoint, or
//! directly against the server's URL with the policy's pins and state file).

use std::time::Duration;

use bytes::Bytes;
use http::{header, HeaderValue, Method, Request};
use http_body_util::{BodyExt, Full};
use serde::Serialize;
use serde_json::{json, Value};

use super::tools::{definition_hash, poison_signature};
use crate::config::mcp::McpServer;
use crate::config::Policy;
use crate::http::outbound::HttpClient;
use crate::state::Snapshot;

/// A tool's standing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Standing {
    /// Its definition has the hash pinned in the policy.
    Pinned,
    /// Its definition is the one trusted on first use (or approved by an operator).
    TrustedOnFirstUse,
    /// Never seen: the gateway would trust it on first use.
    New,
    /// It differs from the pinned or first-trusted definition (a rug pull), or a changed definition
    /// awaits approval.
    Changed,
    /// Its description carries a prompt-injection signature (tool poisoning).
    Poisoned,
    /// New while the server's tools are frozen.
    Frozen,
}

impl Standing {
    /// Its name in reports.
    pub fn as_str(self) -> &'static str {
        match self {
            Standing::Pinned => "pinned",
            Standing::TrustedOnFirstUse => "trusted_on_first_use",
            Standing::New => "new",
            Standing::Changed => "changed",
            Standing::Poisoned => "poisoned",
            Standing::Frozen => "frozen",
        }
    }

    /// Whether the gateway trusts the definition (`new` only when first use is accepted).
    pub fn trusted(self, allow_new: bool) -> bool {
        matches!(self, Standing::Pinned | Standing::TrustedOnFirstUse) || (allow_new && self == Standing::New)
    }
}

/// One tool of the report.
#[derive(Debug, Clone, Serialize)]
pub struct ToolReport {
    /// Its name (`?` when the server gave none).
    pub name: String,
    /// SHA-256 (hex) of its canonical definition.
    pub hash: String,
    /// Its standing.
    pub status: Standing,
    /// Why, in a sentence.
    pub detail: String,
    /// The injection signature its description matched, if any (also for a reviewed definition).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub signature: Option<String>,
    /// Another server of the policy with a tool of the same name (shadowing; reported only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shadows: Option<String>,
}

/// What `verify` found for one server.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// The server's name.
    pub server: String,
    /// Its tools, in the server's order.
    pub tools: Vec<ToolReport>,
}

impl Report {
    /// The tools that are not trusted.
    pub fn untrusted(&self, allow_new: bool) -> impl Iterator<Item = &ToolReport> {
        self.tools.iter().filter(move |t| !t.status.trusted(allow_new))
    }
}

/// The standing of each listed tool, as the gateway's `tools/list` filter would judge it (pins in the
/// policy, pins and pending definitions in the switch state, freezes, description checks).
pub fn assess(policy: &Policy, snap: &Snapshot, server: &McpServer, tools: &[Value]) -> Report {
    let now = crate::state::unix_now();
    let tools = tools
        .iter()
        .map(|t| {
            let name = t.get("name").and_then(Value::as_str).unwrap_or("?").to_owned();
            let q = format!("{}/{name}", server.name);
            let hash = definition_hash(t);
            let signature = poison_signature(policy, t);
            let policy_pin = server.pins.get(&name).map(hex::encode);
            let state_pin = snap.tool_pins.get(&q);
            let reviewed = policy_pin.as_deref() == Some(&hash)
                || state_pin.is_some_and(|p| p.pending.is_none() && p.hash.as_deref() == Some(&hash));
            let (status, detail) = match (&signature, policy_pin, state_pin) {
                (Some(sig), _, _) if !reviewed => {
                    (Standing::Poisoned, format!("its description matches the prompt-injection signature `{sig}`"))
                }
                (_, Some(pin), _) if pin == hash => (Standing::Pinned, "matches the hash pinned in the policy".into()),
                (_, Some(_), _) => (Standing::Changed, "differs from the hash pinned in the policy".into()),
                (_, None, Some(p)) if p.pending.is_some() => match p.pending_reason.as_deref() {
                    Some("mcp.tool_poisoned") => {
                        (Standing::Poisoned, "a definition flagged as poisoned awaits an operator's review".into())
                    }
                    Some("mcp.tool_frozen") => {
                        (Standing::Frozen, "first seen while the server's tools were frozen; awaits approval".into())
                    }
                    _ => (Standing::Changed, "a changed definition awaits approval (admin pending-tools)".into()),
                },
                (_, None, Some(p)) if p.hash.as_deref() == Some(&hash) => (
                    Standing::TrustedOnFirstUse,
                    format!("matches the definition trusted since {}", p.since.as_deref().unwrap_or("first use")),
                ),
                (_, None, Some(p)) if p.hash.is_some() => {
                    (Standing::Changed, "differs from the definition first trusted".into())
                }
                (_, None, Some(_)) => {
                    (Standing::Frozen, "first seen while the server's tools were frozen; awaits approval".into())
                }
                (_, None, None) if snap.server_frozen(&server.name, now) => {
                    (Standing::Frozen, "new while the server's tools are frozen".into())
                }
                (_, None, None) => (Standing::New, "never seen: the gateway would trust it on first use".into()),
            };
            let shadows = policy
                .mcp
                .servers
                .keys()
                .find(|s| {
                    *s != &server.name
                        && (snap.tool_pins.contains_key(&format!("{s}/{name}"))
                            || policy.mcp.servers.get(*s).is_some_and(|srv| srv.pins.contains_key(&name)))
                })
                .cloned();
            ToolReport { name, hash, status, detail, signature, shadows }
        })
        .collect();
    Report { server: server.name.clone(), tools }
}

/// How long each exchange with the server may take, and how large an answer may be.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Per request, until its answer is read.
    pub timeout: Duration,
    /// Largest answer.
    pub max_bytes: usize,
}

/// Lists every tool of `server` (at `server.url`) as an MCP client would: `initialize`,
/// `notifications/initialized`, `tools/list` page by page (at most 100 pages), then ends the
/// session. Answers in JSON or SSE are both read. Errors say what failed.
pub async fn list_tools(client: &HttpClient, server: &McpServer, limits: Limits) -> Result<Vec<Value>, String> {
    let mut s = Session { client, server, limits, session: None, version: None, next_id: 1 };
    let init = s
        .call(
            "initialize",
            json!({
                "protocolVersion": "2025-06-18",
                "capabilities": {},
                "clientInfo": {"name": "firebreak-mcp-verify", "version": env!("CARGO_PKG_VERSION")}
            }),
        )
        .await?;
    s.version = init.get("protocolVersion").and_then(Value::as_str).map(str::to_owned);
    s.notify("notifications/initialized").await?;
    let mut tools = Vec::new();
    let mut cursor: Option<String> = None;
    let result = async {
        for _ in 0..100 {
            let params = match &cursor {
                Some(c) => json!({ "cursor": c }),
                None => json!({}),
            };
            let page = s.call("tools/list", params).await?;
            let list =
                page.get("tools").and_then(Value::as_array).ok_or("the tools/list result has no `tools` array")?;
            tools.extend(list.iter().cloned());
            match page.get("nextCursor").and_then(Value::as_str) {
                Some(c) if !c.is_empty() => cursor = Some(c.to_owned()),
                _ => return Ok(()),
            }
        }
        Err("tools/list did not end after 100 pages".to_owned())
    }
    .await;
    s.end().await;
    result.map(|()| tools)
}

struct Session<'a> {
    client: &'a HttpClient,
    server: &'a McpServer,
    limits: Limits,
    session: Option<HeaderValue>,
    version: Option<String>,
    next_id: u64,
}

impl Session<'_> {
    fn request(&self, method: Method, body: Option<&Value>) -> Result<Request<Full<Bytes>>, String> {
        let mut b = Request::builder().method(method).uri(self.server.url.clone());
        let h = b.headers_mut().ok_or("invalid request")?;
        h.insert(header::ACCEPT, HeaderValue::from_static("application/json, text/event-stream"));
        if body.is_some() {
            h.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
        }
        if let Some(sid) = &self.session {
            h.insert("mcp-session-id", sid.clone());
        }
        if let Some(v) = self.version.as_deref().and_then(|v| HeaderValue::from_str(v).ok()) {
            h.insert("mcp-protocol-version", v);
        }
        if let Some(c) = self.server.credential.current() {
            let text = if self.server.credential_header == header::AUTHORIZATION {
                format!("Bearer {}", c.expose())
            } else {
                c.expose().to_owned()
            };
            let mut v =
                HeaderValue::from_str(&text).map_err(|_| "the server's credential is not a valid header value")?;
            v.set_sensitive(true);
            h.insert(self.server.credential_header.clone(), v);
        }
        let bytes = body.map(|b| Bytes::from(b.to_string())).unwrap_or_default();
        b.body(Full::new(bytes)).map_err(|e| e.to_string())
    }

    /// Sends a request and returns its result (or the server's JSON-RPC error, as text).
    async fn call(&mut self, method: &str, params: Value) -> Result<Value, String> {
        let id = self.next_id;
        self.next_id += 1;
        let body = json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params});
        let req = self.request(Method::POST, Some(&body))?;
        let answer = tokio::time::timeout(self.limits.timeout, self.exchange(req, id))
            .await
            .map_err(|_| format!("{method}: no answer within {} s", self.limits.timeout.as_secs_f64()))?
            .map_err(|e| format!("{method}: {e}"))?;
        if let Some(e) = answer.get("error") {
            let msg = e.get("message").and_then(Value::as_str).unwrap_or("(no message)");
            return Err(format!(
                "{method}: the server answered with an error: {}",
                msg.chars().take(300).collect::<String>()
            ));
        }
        answer.get("result").cloned().ok_or_else(|| format!("{method}: the answer has no result"))
    }

    async fn exchange(&mut self, req: Request<Full<Bytes>>, id: u64) -> Result<Value, String> {
        let resp = self.client.request(req).await.map_err(|e| format!("cannot reach the server ({e})"))?;
        if !resp.status().is_success() {
            return Err(format!("HTTP {}", resp.status()));
        }
        if self.session.is_none() {
            self.session = resp.headers().get("mcp-session-id").cloned();
        }
        let sse = resp
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|c| c.to_ascii_lowercase().starts_with("text/event-stream"));
        let mut body = resp.into_body();
        let answers = |v: &Value| v.get("id") == Some(&json!(id)) && v.get("method").is_none();
        if !sse {
            let mut buf = Vec::new();
            while let Some(frame) = body.frame().await {
                if let Ok(d) = frame.map_err(|e| e.to_string())?.into_data() {
                    if buf.len() + d.len() > self.limits.max_bytes {
                        return Err(format!("the answer exceeds {} bytes", self.limits.max_bytes));
                    }
                    buf.extend_from_slice(&d);
                }
            }
            let v: Value = serde_json::from_slice(&buf).map_err(|_| "the answer is not JSON".to_owned())?;
            let found = match v {
                Value::Array(list) => list.into_iter().find(answers),
                v => Some(v).filter(answers),
            };
            return found.ok_or_else(|| "the answer does not answer the request".into());
        }
        // SSE: read events until the one answering the request (server requests and notifications
        // on the way are skipped).
        let mut framer = crate::protocol::sse::SseFramer::new(self.limits.max_bytes);
        while let Some(frame) = body.frame().await {
            let Ok(d) = frame.map_err(|e| e.to_string())?.into_data() else { continue };
            framer.push(&d);
            while let Some(raw) = framer.next_event().map_err(|e| format!("broken event stream: {e}"))? {
                let event = crate::protocol::sse::parse_event(&raw);
                let Some(v) = event.data.and_then(|d| serde_json::from_str::<Value>(&d).ok()) else { continue };
                if answers(&v) {
                    return Ok(v);
                }
            }
        }
        Err("the event stream ended without the answer".into())
    }

    async fn notify(&mut self, method: &str) -> Result<(), String> {
        let req = self.request(Method::POST, Some(&json!({"jsonrpc": "2.0", "method": method})))?;
        let resp = tokio::time::timeout(self.limits.timeout, self.client.request(req))
            .await
            .map_err(|_| format!("{method}: no answer in time"))?
            .map_err(|e| format!("{method}: cannot reach the server ({e})"))?;
        if resp.status().is_success() {
            Ok(())
        } else {
            Err(format!("{method}: HTTP {}", resp.status()))
        }
    }

    /// Ends the session (best effort: a server may not support DELETE).
    async fn end(&self) {
        if self.session.is_none() {
            return;
        }
        if let Ok(req) = self.request(Method::DELETE, None) {
            let _ = tokio::time::timeout(self.limits.timeout, self.client.request(req)).await;
        }
    }
}
