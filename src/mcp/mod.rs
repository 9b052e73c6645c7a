//! The MCP gateway: `/mcp/<server>` proxied over the Streamable HTTP transport.
//!
//! The request path mirrors the AI-traffic pipeline: route (server) → origin → admission → identity
//! → switches (principal, session, isolation) → role may use the server → rate limit → body
//! (JSON-RPC, each element decided on its own) → server → every message of the answer inspected,
//! whole (`application/json`) or event by event (`text/event-stream`) → audit.

mod inspect;
pub mod jsonrpc;
mod stream;
pub mod tools;
mod upstream;
pub mod verify;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use http::{header, HeaderMap, HeaderValue, Method, Request, Response, StatusCode};
use serde_json::Value;

use crate::audit::Record;
use crate::config::mcp::McpServer;
use crate::config::{KeyEntry, Policy};
use crate::proxy::body::{full, Body, BoxError, ChannelBody};
use crate::proxy::error::GatewayError;
use crate::proxy::script::ScriptedReply;
use crate::proxy::{authenticate, Active, Gateway};
use crate::state::{unix_now, Batch, Refusal};
use inspect::{Fate, Findings};
use jsonrpc::Kind;
use tools::{Judge, ListOutcome};

/// Why an MCP request is refused or failed at the HTTP level.
#[derive(Debug, thiserror::Error)]
enum McpError {
    #[error(transparent)]
    Gateway(#[from] GatewayError),
    #[error("unknown MCP server `{0}`; the servers are named in the policy's [mcp_servers]")]
    UnknownServer(String),
    #[error("origin `{0}` may not call MCP servers through this gateway (add it to [mcp] allowed_origins)")]
    Origin(String),
    #[error("your role may not use MCP server `{0}`")]
    ServerNotAllowed(String),
    #[error("MCP server `{0}` is isolated by the gateway operator")]
    Isolated(String),
    #[error("this MCP session belongs to another principal")]
    SessionMismatch,
    #[error("unknown or expired MCP session; start a new session with an initialize request")]
    UnknownSession,
    #[error("invalid JSON-RPC message: {0}")]
    Invalid(String),
    #[error("method {0} is not supported on MCP endpoints (use POST, GET or DELETE)")]
    MethodNotAllowed(String),
}

impl McpError {
    fn status(&self) -> StatusCode {
        match self {
            McpError::Gateway(e) => e.status(),
            McpError::UnknownServer(_) | McpError::UnknownSession => StatusCode::NOT_FOUND,
            McpError::Origin(_) | McpError::ServerNotAllowed(_) | McpError::SessionMismatch => StatusCode::FORBIDDEN,
            McpError::Isolated(_) => StatusCode::SERVICE_UNAVAILABLE,
            McpError::Invalid(_) => StatusCode::BAD_REQUEST,
            McpError::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
        }
    }

    /// Whether the gateway refused (policy) rather than failed: the same split as the AI path's
    /// [`GatewayError::is_block`], so a refusal for the gateway's own load (`limits.concurrency`,
    /// `limits.buffered_bytes`), a failing audit trail or an open circuit is an `error` on both
    /// surfaces; the MCP refusals of its own (server, origin, session, isolation) are blocks.
    fn is_block(&self) -> bool {
        match self {
            McpError::Gateway(e) => e.is_block(),
            _ => true,
        }
    }

    fn reason(&self) -> &'static str {
        match self {
            McpError::Gateway(e) => e.reason(),
            McpError::UnknownServer(_) => "mcp.unknown_server",
            McpError::Origin(_) => "mcp.origin",
            McpError::ServerNotAllowed(_) => "mcp.server_not_allowed",
            McpError::Isolated(_) => "mcp.server_isolated",
            McpError::SessionMismatch => "mcp.session_mismatch",
            McpError::UnknownSession => "mcp.unknown_session",
            McpError::Invalid(_) => "mcp.invalid_message",
            McpError::MethodNotAllowed(_) => "request.method",
        }
    }

    fn code(&self) -> i64 {
        use GatewayError as G;
        match self {
            McpError::Gateway(G::BadJson(_)) => jsonrpc::PARSE_ERROR,
            McpError::Gateway(G::BadRequest(_) | G::UnsupportedMediaType | G::TooLarge(_))
            | McpError::Invalid(_)
            | McpError::MethodNotAllowed(_) => jsonrpc::INVALID_REQUEST,
            McpError::UnknownServer(_) => jsonrpc::METHOD_NOT_FOUND,
            McpError::Gateway(
                G::NoRoute
                | G::NoCredential(_)
                | G::UpstreamUnavailable(..)
                | G::CircuitOpen { .. }
                | G::UpstreamTimeout(_)
                | G::UpstreamInvalid { .. },
            ) => jsonrpc::INTERNAL_ERROR,
            _ => jsonrpc::REFUSED,
        }
    }

    fn into_response(self, id: Value, request_id: &HeaderValue) -> Response<Body> {
        let rid = request_id.to_str().unwrap_or("");
        let body = jsonrpc::error(id, self.code(), &self.to_string(), self.reason(), rid);
        let mut resp = Response::new(full(body.to_string()));
        *resp.status_mut() = self.status();
        let h = resp.headers_mut();
        h.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
        match &self {
            McpError::Gateway(GatewayError::RateLimited { retry_after, .. }) => {
                h.insert(header::RETRY_AFTER, HeaderValue::from(retry_after.as_secs().max(1)));
            }
            McpError::Gateway(GatewayError::CircuitOpen { retry_after, .. }) => {
                h.insert(header::RETRY_AFTER, HeaderValue::from(retry_after.as_secs_f64().ceil().max(1.0) as u64));
            }
            McpError::Gateway(GatewayError::UserInFlight(_) | GatewayError::BufferBudget) => {
                h.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            }
            _ if self.status() == StatusCode::SERVICE_UNAVAILABLE => {
                h.insert(header::RETRY_AFTER, HeaderValue::from_static("60"));
            }
            McpError::MethodNotAllowed(_) => {
                h.insert(header::ALLOW, HeaderValue::from_static("GET, POST, DELETE"));
            }
            _ => {}
        }
        resp
    }
}

/// What one MCP request learned, for the audit record at the end.
#[derive(Debug, Default)]
struct Ctx {
    server: String,
    key: Option<Arc<KeyEntry>>,
    session: Option<String>,
    /// The JSON-RPC id of a single request (errors answer it).
    rpc_id: Option<Value>,
    methods: Vec<String>,
    tools_called: Vec<String>,
    decisions: Vec<(String, &'static str)>,
    redactions: BTreeMap<String, u64>,
    injections: Vec<String>,
    /// The injection classifier's highest score on the server's results (a number, never text).
    classifier: crate::inspect::injection::classifier::Scores,
    /// Other tenants whose identifiers reached the client (names only).
    cross_tenant: Vec<String>,
    withheld: Vec<(String, String)>,
    /// Pins and events to record.
    list: ListOutcome,
    stream: bool,
    /// The POST body's share of the buffered-bytes budget, held as long as the request is.
    buffered: Option<crate::proxy::admission::Buffered>,
    /// Who sent it (peer, forwarded address, user agent, TLS identity), for the audit record.
    client: crate::proxy::client::ClientMeta,
    /// The payloads, kept only while `[forensics]` is on (redacted when captured).
    capture: Option<crate::forensics::Capture>,
}

impl Ctx {
    /// Adds what inspection found (injections, withheld tools, redaction counts) to an audit record.
    fn findings_into(&self, r: Record) -> Record {
        r.with_opt("injections", (!self.injections.is_empty()).then(|| self.injections.clone()))
            .with_opt("classifier", self.classifier.to_json())
            .with_opt("cross_tenant", (!self.cross_tenant.is_empty()).then(|| self.cross_tenant.clone()))
            .with_opt(
                "withheld",
                (!self.withheld.is_empty()).then(|| {
                    self.withheld.iter().map(|(t, r)| serde_json::json!({"tool": t, "rule": r})).collect::<Vec<_>>()
                }),
            )
            .with_opt(
                "redactions",
                (!self.redactions.is_empty()).then(|| serde_json::to_value(&self.redactions).unwrap_or_default()),
            )
    }
}

/// Serves one request to `/mcp/<server>`.
pub async fn handle<B>(gw: Arc<Gateway>, req: Request<B>, request_id: HeaderValue) -> Response<Body>
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    let start = Instant::now();
    let mut ctx = Ctx {
        server: req.uri().path().trim_start_matches("/mcp/").trim_end_matches('/').chars().take(100).collect(),
        session: req
            .headers()
            .get("mcp-session-id")
            .and_then(|v| v.to_str().ok())
            .filter(|s| !s.is_empty() && s.len() <= 256)
            .map(str::to_owned),
        client: crate::proxy::client::ClientMeta::of(req.extensions(), req.headers()),
        capture: gw.forensics.start(),
        ..Ctx::default()
    };
    let http_method = req.method().clone();
    gw.metrics.in_flight(1);
    let span = tracing::info_span!("mcp", request_id = ?request_id, server = %ctx.server, method = %http_method,
        key_id = tracing::field::Empty, status = tracing::field::Empty);
    let result = tracing::Instrument::instrument(serve(&gw, req, &request_id, &mut ctx), span.clone()).await;
    let mut resp = match result {
        Ok(r) => r,
        Err(e) => {
            let action = if e.is_block() { "block" } else { "error" };
            ctx.decisions.push((e.reason().to_owned(), action));
            e.into_response(ctx.rpc_id.clone().unwrap_or(Value::Null), &request_id)
        }
    };
    resp.headers_mut().insert("x-request-id", request_id.clone());
    let status = resp.status().as_u16();
    if ctx.decisions.is_empty() {
        ctx.decisions.push(("allow".into(), "allow"));
    }
    span.record("status", status);
    if let Some(k) = &ctx.key {
        span.record("key_id", k.id.as_str());
    }
    // As for AI requests: refusals and errors at `info`, clean requests at `debug` (the audit trail
    // has every one).
    let notable = status >= 400 || ctx.decisions.iter().any(|(_, a)| *a != "allow");
    span.in_scope(|| {
        let elapsed_us = start.elapsed().as_micros() as u64;
        if notable {
            tracing::info!(elapsed_us, "mcp request");
        } else {
            tracing::debug!(elapsed_us, "mcp request");
        }
    });
    gw.metrics.request("mcp", status, start.elapsed());
    for (rule, action) in &ctx.decisions {
        gw.metrics.decision(rule, action);
    }
    for (source, score) in ctx.classifier.iter() {
        gw.metrics.classifier_score(source, score);
    }
    gw.metrics.in_flight(-1);
    // Server (from the path), methods and tool names are the client's: see `audit::client_text`.
    let policy = gw.policy();
    let scanner = policy.scanner.clone();
    let client = |names: &[String]| names.iter().map(|n| crate::audit::client_text(&scanner, n)).collect::<Vec<_>>();
    let record = Record::new("mcp")
        .with("event", "request")
        .with("request_id", request_id.to_str().unwrap_or(""))
        .with("server", crate::audit::client_text(&scanner, &ctx.server))
        .with("http_method", http_method.as_str())
        .with("status", status)
        .with("stream", ctx.stream)
        .with(
            "decisions",
            ctx.decisions.iter().map(|(r, a)| serde_json::json!({"rule": r, "action": a})).collect::<Vec<_>>(),
        )
        .with("duration_us", start.elapsed().as_micros() as u64);
    let record = principal(record, ctx.key.as_deref(), ctx.session.as_deref())
        .with_opt("methods", (!ctx.methods.is_empty()).then(|| client(&ctx.methods)))
        .with_opt("tools_called", (!ctx.tools_called.is_empty()).then(|| client(&ctx.tools_called)));
    let record = ctx.findings_into(ctx.client.into_record(record, &scanner, &policy.listen.trusted_proxies));
    if let Some(c) = ctx.capture.take() {
        // Before the record is audited: an incident it opens finds this exchange in the ring.
        gw.forensics.capture(&record, c, &scanner);
    }
    crate::incident::audited(&gw, record).await;
    resp
}

fn principal(r: Record, key: Option<&KeyEntry>, session: Option<&str>) -> Record {
    r.with_opt("key_id", key.map(|k| k.id.as_str()))
        .with_opt("tenant", key.map(|k| k.tenant.as_str()))
        .with_opt("user", key.map(|k| k.user.as_str()))
        .with_opt("role", key.map(|k| k.role.as_str()))
        .with_opt("session", session)
}

/// The key of a session binding: session ids are the server's, so they are scoped by server.
fn session_key(server: &str, session: &str) -> String {
    format!("{server}\n{session}")
}

fn origin_allowed(policy: &Policy, h: &HeaderMap) -> Result<(), McpError> {
    let Some(origin) = h.get(header::ORIGIN) else { return Ok(()) };
    let o = origin.to_str().unwrap_or("").trim_end_matches('/').to_ascii_lowercase();
    if policy.mcp.allowed_origins.contains(&o) {
        Ok(())
    } else {
        Err(McpError::Origin(o.chars().take(100).collect()))
    }
}

async fn serve<B>(
    gw: &Arc<Gateway>,
    req: Request<B>,
    request_id: &HeaderValue,
    ctx: &mut Ctx,
) -> Result<Response<Body>, McpError>
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    let active = gw.active.load_full();
    let policy = &active.policy;
    // route
    let server =
        policy.mcp.servers.get(&ctx.server).cloned().ok_or_else(|| McpError::UnknownServer(ctx.server.clone()))?;
    // origin: a browser page must not reach MCP servers through the gateway unless allowed.
    origin_allowed(policy, req.headers())?;
    // admission
    let mut permit = gw.admission.admit()?;
    // identity
    let key = authenticate(policy, req.headers())?;
    ctx.key = Some(key.clone());
    let max_in_flight = policy.levels.get(gw.state.load().level).max_in_flight;
    gw.admission.hold_for_user(&mut permit, &key.user, max_in_flight)?;
    let script = req.extensions().get::<ScriptedReply>().cloned();
    let (parts, body) = req.into_parts();
    // body (POST): read before the switches so that refusals answer the request's id
    let posted = if parts.method == Method::POST {
        Some(read_messages(gw, body, &parts.headers, &policy.limits, ctx).await?)
    } else {
        None
    };
    // the audit trail (fail closed), after the body so the refusal answers the request's id
    crate::proxy::audit_gate(gw, policy)?;
    // switches: one snapshot for the whole request
    let snap = gw.state.load();
    let now = unix_now();
    if let Some(r) = snap.principal_refusal(&key, ctx.session.as_deref(), now) {
        return Err(match r {
            Refusal::Lockdown => GatewayError::Lockdown(policy.levels.get(snap.level).message.clone()),
            r => GatewayError::Refused(r),
        }
        .into());
    }
    // An isolated server gets no traffic, except a DELETE that ends a session (so clients can
    // close what they opened; the session must be the caller's, checked below).
    let closes_session = parts.method == Method::DELETE && ctx.session.is_some();
    if snap.server_isolated(&server.name, now) && !closes_session {
        return Err(McpError::Isolated(server.name.clone()));
    }
    // A session belongs to the principal whose request the server answered with its id (bound in
    // `forward`): another key presenting it is refused, and an id the gateway never saw handed out
    // (forged, expired, or issued before a restart, as bindings live in memory) gets 404, which
    // tells an MCP client to start a new session.
    // (An offline replay has no server behind it that could have handed out a session.)
    let replay = script.is_some();
    if ctx.session.is_none() && parts.headers.contains_key("mcp-session-id") && !replay {
        // Present but unusable (empty, too long, not text): no session the gateway handed out.
        return Err(McpError::UnknownSession);
    }
    if let Some(sid) = &ctx.session {
        match gw.mcp_sessions.get(&session_key(&server.name, sid)) {
            None if replay => {}
            None => return Err(McpError::UnknownSession),
            Some(bound) if &*bound != key.id.as_str() => return Err(McpError::SessionMismatch),
            Some(_) => {}
        }
    }
    let role_ok = policy
        .roles
        .get(&key.role)
        .and_then(|r| r.mcp.as_ref())
        .is_some_and(|(_, servers)| servers.matches(&server.name));
    if !role_ok {
        return Err(McpError::ServerNotAllowed(server.name.clone()));
    }
    // rate limit
    let level = policy.levels.get(snap.level);
    let rpm = snap.user_rpm(&key.user, level.requests_per_minute, crate::state::unix_now());
    gw.limiter.check(&key.user, rpm).map_err(|retry_after| GatewayError::RateLimited {
        rpm,
        level: snap.level.as_str(),
        retry_after,
    })?;
    let exchange = Exchange {
        gw: gw.clone(),
        active: active.clone(),
        server,
        key,
        snap,
        request_id: request_id.clone(),
        script,
        permit: Some(permit),
    };
    match (parts.method.clone(), posted) {
        (Method::POST, Some(p)) => post(exchange, &parts.headers, p, ctx).await,
        (m @ (Method::GET | Method::DELETE), _) => exchange.forward(m, &parts.headers, None, ctx).await,
        (m, _) => Err(McpError::MethodNotAllowed(m.to_string())),
    }
}

/// What a POST adds to an exchange.
struct Posted {
    /// The body to forward (the client's bytes when nothing was refused).
    body: Bytes,
    /// Answers the gateway gave itself (refused requests).
    local: Vec<Value>,
    /// Ids of the forwarded requests, still to be answered (a cut answers them).
    pending: Vec<Value>,
    /// Whether the client sent a batch.
    batch: bool,
}

/// One decided request on its way to the server and back.
struct Exchange {
    gw: Arc<Gateway>,
    active: Arc<Active>,
    server: Arc<McpServer>,
    key: Arc<KeyEntry>,
    snap: Arc<crate::state::Snapshot>,
    request_id: HeaderValue,
    script: Option<ScriptedReply>,
    permit: Option<crate::proxy::Permit>,
}

impl Exchange {
    fn judge(&self) -> Judge<'_> {
        Judge {
            policy: &self.active.policy,
            snap: &self.snap,
            server: &self.server,
            key: &self.key,
            now: unix_now(),
            hints: &self.gw.mcp_hints,
        }
    }

    /// Sends to the server and inspects the answer; for a POST, the gateway's own answers are
    /// merged into the server's.
    async fn forward(
        mut self,
        method: Method,
        headers: &HeaderMap,
        posted: Option<Posted>,
        ctx: &mut Ctx,
    ) -> Result<Response<Body>, McpError> {
        let (body, local, pending, batch) = match posted {
            Some(p) => (Some(p.body), p.local, p.pending, Some(p.batch)),
            None => (None, Vec::new(), Vec::new(), None),
        };
        let is_get = method == Method::GET;
        let is_delete = method == Method::DELETE;
        let out = upstream::Outgoing { method, headers, body, request_id: &self.request_id };
        let policy = self.active.policy.clone();
        // The server's circuit breaker: while open, refused at once (a scripted reply contacts no server).
        let breaker = self.server.circuit.as_ref().and_then(|_| self.gw.circuits.server(&self.server.name));
        let guard = match (&self.script, breaker) {
            (None, Some(b)) => crate::proxy::circuit_admit(&self.gw, Some(b), self.server.circuit.as_ref())
                .await
                .map_err(|open| crate::proxy::circuit_refused(&self.server.name, true, open))?,
            _ => None,
        };
        let resp = upstream::send(&self.active.clients, &self.server, out, &policy.limits, self.script.as_ref()).await;
        if let Some(g) = guard {
            g.finish(&self.gw, &resp).await;
        }
        let resp = resp?;
        let (head, upstream_body) = resp.into_parts();
        if is_delete && head.status.is_success() {
            if let Some(sid) = &ctx.session {
                self.gw.mcp_sessions.invalidate(&session_key(&self.server.name, sid));
            }
        }
        // A new session handed out by the server belongs to the key that asked for it.
        if let (None, true, Some(sid)) =
            (&ctx.session, head.status.is_success(), head.headers.get("mcp-session-id").and_then(|v| v.to_str().ok()))
        {
            if !sid.is_empty() && sid.len() <= 256 {
                self.gw.mcp_sessions.insert(session_key(&self.server.name, sid), Arc::from(self.key.id.as_str()));
            }
        }
        let mut builder = Response::builder().status(head.status);
        if let Some(h) = builder.headers_mut() {
            crate::proxy::upstream::copy_response_headers(&head.headers, h);
        }
        let ct =
            head.headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("").to_ascii_lowercase();
        let invalid = |detail: String| GatewayError::UpstreamInvalid { upstream: self.server.name.clone(), detail };
        if ct.starts_with("text/event-stream") && head.status.is_success() {
            ctx.stream = true;
            let prefix = (!local.is_empty()).then(|| {
                let mut b = Vec::new();
                for a in &local {
                    b.extend_from_slice(b"event: message\ndata: ");
                    b.extend_from_slice(a.to_string().as_bytes());
                    b.extend_from_slice(b"\n\n");
                }
                Bytes::from(b)
            });
            let mut server_headers = HeaderMap::new();
            for name in ["mcp-session-id", "mcp-protocol-version"] {
                if let Some(v) = headers.get(name).or_else(|| head.headers.get(name)) {
                    server_headers.insert(name, v.clone());
                }
            }
            let (tx, body) = ChannelBody::new(8);
            stream::spawn(
                stream::McpStream {
                    gw: self.gw.clone(),
                    active: self.active.clone(),
                    server: self.server.clone(),
                    key: self.key.clone(),
                    session: ctx.session.clone().or_else(|| {
                        head.headers.get("mcp-session-id").and_then(|v| v.to_str().ok()).map(str::to_owned)
                    }),
                    request_id: self.request_id.clone(),
                    pending,
                    idle: (!is_get).then_some(policy.limits.stream_idle_timeout),
                    server_headers,
                    permit: self.permit.take(),
                    capture: ctx.capture.take(),
                },
                upstream_body,
                tx,
                prefix,
            );
            if let Some(h) = builder.headers_mut() {
                h.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
                h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
            }
            return builder.body(body.boxed()).map_err(|e| invalid(e.to_string()).into());
        }
        let limit = policy.limits.max_response_body;
        let bytes = match tokio::time::timeout(
            policy.limits.upstream_timeout,
            crate::proxy::collect_limited(upstream_body, limit),
        )
        .await
        {
            Err(_) => return Err(GatewayError::UpstreamTimeout(self.server.name.clone()).into()),
            Ok(Err(detail)) => return Err(invalid(detail).into()),
            Ok(Ok(b)) => b,
        };
        if bytes.is_empty() && local.is_empty() {
            return builder.body(full(bytes)).map_err(|e| invalid(e.to_string()).into());
        }
        let had_local = !local.is_empty();
        let mut findings = Findings::default();
        let parsed = if bytes.is_empty() {
            Some(Value::Array(Vec::new()))
        } else {
            serde_json::from_slice::<Value>(&bytes).ok()
        };
        let body = match parsed {
            Some(v) if ct.starts_with("application/json") || bytes.is_empty() => {
                let judge = self.judge();
                let (mut list, was_batch) = match v {
                    Value::Array(a) => (a, true),
                    v => (vec![v], false),
                };
                let mut changed = false;
                list.retain_mut(|m| {
                    match inspect::server_message(&judge, m, ctx_rid(&self.request_id), &mut findings) {
                        Fate::Forward { changed: c } => {
                            changed |= c;
                            true
                        }
                        Fate::Refuse(_) | Fate::Drop => {
                            changed = true;
                            false
                        }
                    }
                });
                if list.is_empty() && local.is_empty() && findings.invalid > 0 {
                    return Err(invalid("the answer is not JSON-RPC".into()).into());
                }
                if local.is_empty() && !changed {
                    bytes
                } else {
                    list.extend(local);
                    if let Some(h) = builder.headers_mut() {
                        h.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
                    }
                    jsonrpc::encode(list, batch.unwrap_or(was_batch))
                }
            }
            _ if head.status.is_success() && !bytes.is_empty() => {
                return Err(invalid("the answer is not JSON-RPC".into()).into());
            }
            _ => {
                // A server error page: passed on, redacted as text.
                let text = String::from_utf8_lossy(&bytes);
                let (red, hits) = policy.scanner.redact(&text);
                findings.redactions.extend(hits.iter().map(|h| h.rule));
                if hits.is_empty() {
                    bytes.clone()
                } else {
                    Bytes::from(red.into_owned())
                }
            }
        };
        if had_local && head.status == StatusCode::ACCEPTED {
            builder = builder.status(StatusCode::OK);
        }
        absorb(&policy, findings, ctx);
        record_list(&self.gw, &mut ctx.list, &self.key, ctx_rid(&self.request_id)).await;
        if let Some(c) = ctx.capture.as_mut() {
            c.set_response(&body);
        }
        builder.body(full(body)).map_err(|e| invalid(e.to_string()).into())
    }
}

fn ctx_rid(v: &HeaderValue) -> &str {
    v.to_str().unwrap_or("")
}

/// Moves what inspection found into the request's audit context.
fn absorb(policy: &Policy, f: Findings, ctx: &mut Ctx) {
    for r in f.redactions {
        *ctx.redactions.entry(policy.scanner.rule(r).id.clone()).or_default() += 1;
    }
    if !ctx.redactions.is_empty() {
        ctx.decisions.push(("redaction".into(), "redact"));
    }
    for (id, action) in f.injections {
        let rule = if id == crate::inspect::injection::classifier::ID {
            crate::inspect::injection::classifier::rule("tool_result")
        } else {
            "injection.tool_result"
        };
        ctx.decisions.push((rule.into(), action));
        ctx.injections.push(id);
    }
    if let Some(s) = f.scores.tool_result {
        ctx.classifier.observe(crate::inspect::injection::Source::ToolResult, s);
    }
    let own = ctx.key.as_ref().map_or("", |k| k.tenant.as_str());
    ctx.cross_tenant = policy.tenants.others(&f.tenants, own);
    if !ctx.cross_tenant.is_empty() {
        ctx.decisions.push(("tenants.cross_tenant".into(), "detect"));
    }
    if f.invalid > 0 {
        ctx.decisions.push(("mcp.server_message_invalid".into(), "block"));
    }
    for m in f.refused_server_requests {
        ctx.decisions.push((format!("mcp.server_request_refused:{m}"), "block"));
    }
    // Tools withheld because their definition is not trusted are blocks; those outside the caller's
    // role, level or switches are a filter.
    let mut filtered = false;
    for (_, rule) in &f.list.withheld {
        let base = rule.split(' ').next().unwrap_or(rule);
        match base {
            "mcp.tool_changed" | "mcp.tool_poisoned" | "mcp.tool_frozen" => {
                if !ctx.decisions.iter().any(|(r, _)| r == base) {
                    ctx.decisions.push((base.to_owned(), "block"));
                }
            }
            _ => filtered = true,
        }
    }
    if filtered && !ctx.decisions.iter().any(|(r, _)| r == "mcp.tools_filtered") {
        ctx.decisions.push(("mcp.tools_filtered".into(), "strip"));
    }
    ctx.withheld.extend(f.list.withheld);
    ctx.list.observe.extend(f.list.observe);
    ctx.list.events.extend(f.list.events);
}

/// Records what a tools/list taught: first-seen pins and pending definitions as one switch batch
/// (persisted, so trust on first use survives restarts), and rug-pull, poisoning and shadowing events
/// in the audit trail. Runs before the client sees the list.
pub(crate) async fn record_list(gw: &Gateway, list: &mut ListOutcome, key: &KeyEntry, rid: &str) {
    for (event, tool, detail) in list.events.drain(..) {
        let trigger = matches!(event, "tool_definition_changed" | "tool_poisoning").then_some(event);
        tracing::warn!(event, tool = %tool, detail = %detail, "MCP tool definition event");
        gw.metrics.decision(&format!("mcp.{event}"), "detect");
        let r = Record::new("mcp")
            .with("event", event)
            .with("request_id", rid)
            .with("tool", tool)
            .with("detail", detail)
            .with_opt("trigger", trigger);
        crate::incident::audited(gw, principal(r, Some(key), None)).await;
    }
    if list.observe.is_empty() {
        return;
    }
    let batch = Batch {
        actions: std::mem::take(&mut list.observe),
        reason: "MCP tool definitions observed (trust on first use)".into(),
        actor: Some("firebreak".into()),
        expect_version: None,
    };
    match gw.apply(&batch).await {
        Ok(applied) => {
            gw.metrics.set_switch_version(applied.after.version);
            let actions = serde_json::to_value(&batch.actions).unwrap_or_default();
            gw.audit
                .record(
                    Record::new("switch")
                        .with("actor", "firebreak")
                        .with("reason", batch.reason.as_str())
                        .with("before_version", applied.before)
                        .with("after_version", applied.after.version)
                        .with("actions", actions),
                )
                .await;
        }
        Err(e) => tracing::warn!(error = %e, "could not record MCP tool pins"),
    }
}

/// Writes the audit record of a finished MCP stream when something happened in it.
async fn finish_stream(s: &stream::McpStream, f: Findings, cut: Option<&'static str>) {
    let mut ctx = Ctx { key: Some(s.key.clone()), ..Ctx::default() };
    absorb(&s.active.policy, f, &mut ctx);
    for (source, score) in ctx.classifier.iter() {
        s.gw.metrics.classifier_score(source, score);
    }
    if ctx.decisions.is_empty() && ctx.withheld.is_empty() && cut.is_none() {
        return;
    }
    if let Some(rule) = cut {
        s.gw.metrics.stream_terminated();
        ctx.decisions.push((rule.to_owned(), "terminate"));
    }
    for (rule, action) in &ctx.decisions {
        s.gw.metrics.decision(rule, action);
    }
    let r = Record::new("mcp")
        .with("event", "stream_end")
        .with("request_id", s.request_id.to_str().unwrap_or(""))
        .with("server", s.server.name.as_str())
        .with(
            "decisions",
            ctx.decisions.iter().map(|(r, a)| serde_json::json!({"rule": r, "action": a})).collect::<Vec<_>>(),
        );
    crate::incident::audited(&s.gw, ctx.findings_into(principal(r, Some(&s.key), s.session.as_deref()))).await;
}

/// Reads and validates a POST body. Runs right after authentication, before the switches, so every
/// later refusal can answer the request's own id.
async fn read_messages<B>(
    gw: &Gateway,
    body: B,
    headers: &HeaderMap,
    limits: &crate::config::Limits,
    ctx: &mut Ctx,
) -> Result<(Bytes, jsonrpc::Messages), McpError>
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    let ct = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    if !ct.trim_start().to_ascii_lowercase().starts_with("application/json") {
        return Err(GatewayError::UnsupportedMediaType.into());
    }
    let (bytes, buffered) = crate::proxy::body::read_request(body, headers, limits, &gw.admission).await?;
    ctx.buffered = Some(buffered);
    if let Some(c) = ctx.capture.as_mut() {
        c.set_request(bytes.clone());
    }
    let messages = match jsonrpc::parse(&bytes) {
        Ok(m) => m,
        Err(jsonrpc::ParseError::Json(e)) => return Err(GatewayError::BadJson(e).into()),
        Err(jsonrpc::ParseError::Invalid(e)) => {
            if let Ok(Value::Object(m)) = serde_json::from_slice::<Value>(&bytes) {
                ctx.rpc_id = Some(jsonrpc::answerable_id(&Value::Object(m)));
            }
            return Err(McpError::Invalid(e));
        }
    };
    if !messages.batch {
        ctx.rpc_id = messages.list[0].get("id").cloned();
    }
    Ok((bytes, messages))
}

/// POST: JSON-RPC messages, each decided on its own.
async fn post(
    ex: Exchange,
    headers: &HeaderMap,
    (bytes, messages): (Bytes, jsonrpc::Messages),
    ctx: &mut Ctx,
) -> Result<Response<Body>, McpError> {
    let rid = ex.request_id.to_str().unwrap_or("").to_owned();
    let judge = ex.judge();
    // Invalid batch elements are answered by the gateway, each with its own error.
    let mut local: Vec<Value> = messages
        .invalid
        .iter()
        .map(|(id, why)| {
            let message = format!("invalid JSON-RPC message: {why}");
            jsonrpc::error(id.clone(), jsonrpc::INVALID_REQUEST, &message, "mcp.invalid_message", &rid)
        })
        .collect();
    if !local.is_empty() {
        ctx.decisions.push(("mcp.invalid_message".into(), "block"));
    }
    let mut forward = Vec::with_capacity(messages.list.len());
    for m in messages.list {
        if let Some(method) = jsonrpc::method(&m) {
            ctx.methods.push(method.chars().take(64).collect());
        }
        if jsonrpc::kind(&m) == Ok(Kind::Request) && jsonrpc::method(&m) == Some("tools/call") {
            match judge.call(m.get("params")) {
                Ok(tool) => ctx.tools_called.push(format!("{}/{tool}", ex.server.name)),
                Err(r) => {
                    ctx.decisions.push((r.rule.clone(), "block"));
                    let id = m.get("id").cloned().unwrap_or(Value::Null);
                    local.push(jsonrpc::error(id, jsonrpc::REFUSED, &r.message, &r.rule, &rid));
                    continue;
                }
            }
        }
        forward.push(m);
    }
    if forward.is_empty() {
        // A batch of nothing but invalid elements is a bad request; its answer is still an array.
        let all_invalid = local.len() == messages.invalid.len();
        let mut resp = Response::new(full(jsonrpc::encode(local, messages.batch)));
        if all_invalid {
            *resp.status_mut() = StatusCode::BAD_REQUEST;
        }
        resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
        return Ok(resp);
    }
    let pending =
        forward.iter().filter(|m| jsonrpc::kind(m) == Ok(Kind::Request)).filter_map(|m| m.get("id").cloned()).collect();
    let body = if local.is_empty() { bytes } else { jsonrpc::encode(forward, messages.batch) };
    let posted = Posted { body, local, pending, batch: messages.batch };
    ex.forward(Method::POST, headers, Some(posted), ctx).await
}
