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

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use http::{header, HeaderMap, HeaderValue, Method, Request, Response, StatusCode};
use serde_json::Value;

use crate::audit::Record;
use crate::config::mcp::McpServer;
use crate::config::{KeyEntry, Policy};
use crate::facts::{Decision, Facts, Shape, ToolEvent};
use crate::gateway::exchange::Finish;
use crate::gateway::{Active, Gateway};
use crate::http::body::{full, Body, BoxError, ChannelBody};
use crate::http::error::GatewayError;
use crate::http::script::ScriptedReply;
use crate::rules::{Rule, RuleId, Verdict};
use crate::state::{unix_now, Batch};
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

    fn reason(&self) -> Rule {
        match self {
            McpError::Gateway(e) => e.reason(),
            McpError::UnknownServer(_) => Rule::McpUnknownServer,
            McpError::Origin(_) => Rule::McpOrigin,
            McpError::ServerNotAllowed(_) => Rule::McpServerNotAllowed,
            McpError::Isolated(_) => Rule::McpServerIsolated,
            McpError::SessionMismatch => Rule::McpSessionMismatch,
            McpError::UnknownSession => Rule::McpUnknownSession,
            McpError::Invalid(_) => Rule::McpInvalidMessage,
            McpError::MethodNotAllowed(_) => Rule::RequestMethod,
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
        let body = jsonrpc::error(id, self.code(), &self.to_string(), self.reason().as_str(), rid);
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

/// The state of one MCP request on its way through the phases: its [`Facts`] (what the audit
/// record and the incident engine get) and what the phases hand each other.
#[derive(Debug)]
struct McpRequest {
    /// The server named by the path (the client's text, capped).
    server: String,
    /// What the phases learned.
    facts: Facts,
    /// The JSON-RPC id of a single request (errors answer it).
    rpc_id: Option<Value>,
    /// Pins and events to record.
    list: ListOutcome,
    /// The POST body's share of the buffered-bytes budget, held as long as the request is.
    buffered: Option<crate::http::admission::Buffered>,
    /// Who sent it (peer, forwarded address, user agent, TLS identity), for the audit record.
    client: Option<crate::http::client::ClientMeta>,
    /// The payloads, kept only while `[forensics]` is on (redacted when captured).
    capture: Option<crate::forensics::Capture>,
}

/// Serves one request to `/mcp/<server>`.
pub async fn handle<B>(gw: Arc<Gateway>, req: Request<B>, request_id: HeaderValue) -> Response<Body>
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    let start = Instant::now();
    let server: String = req.uri().path().trim_start_matches("/mcp/").trim_end_matches('/').chars().take(100).collect();
    let mut facts = Facts::new(Shape::McpRequest, request_id.to_str().unwrap_or("").to_owned(), start);
    facts.session = req
        .headers()
        .get("mcp-session-id")
        .and_then(|v| v.to_str().ok())
        .filter(|s| !s.is_empty() && s.len() <= 256)
        .map(str::to_owned);
    facts.server = Some(server.clone());
    facts.http_method = Some(req.method().as_str().to_owned());
    let mut ctx = McpRequest {
        server,
        facts,
        rpc_id: None,
        list: ListOutcome::default(),
        buffered: None,
        client: Some(crate::http::client::ClientMeta::of(req.extensions(), req.headers())),
        capture: gw.forensics.start(),
    };
    let http_method = req.method().clone();
    gw.metrics.in_flight(1);
    let span = tracing::info_span!("mcp", request_id = ?request_id, server = %ctx.server, method = %http_method,
        key_id = tracing::field::Empty, status = tracing::field::Empty);
    let result = tracing::Instrument::instrument(serve(&gw, req, &request_id, &mut ctx), span.clone()).await;
    let mut resp = match result {
        Ok(r) => r,
        Err(e) => {
            let action = if e.is_block() { Verdict::Block } else { Verdict::Error };
            ctx.facts.decisions.push(Decision { rule: e.reason().into(), action });
            e.into_response(ctx.rpc_id.clone().unwrap_or(Value::Null), &request_id)
        }
    };
    resp.headers_mut().insert("x-request-id", request_id.clone());
    let status = resp.status().as_u16();
    let facts = &mut ctx.facts;
    facts.status = status;
    if facts.decisions.is_empty() {
        facts.decide(Rule::Allow, Verdict::Allow);
    }
    span.record("status", status);
    if let Some(k) = &facts.key {
        span.record("key_id", k.id.as_str());
    }
    // As for AI requests: refusals and errors at `info`, clean requests at `debug` (the audit trail
    // has every one).
    let notable = status >= 400 || facts.decisions.iter().any(|d| d.action != Verdict::Allow);
    span.in_scope(|| {
        let elapsed_us = start.elapsed().as_micros() as u64;
        if notable {
            tracing::info!(elapsed_us, "mcp request");
        } else {
            tracing::debug!(elapsed_us, "mcp request");
        }
    });
    gw.metrics.request("mcp", status, start.elapsed());
    for d in &facts.decisions {
        gw.metrics.rule(&d.rule, d.action.as_str());
    }
    for (source, score) in facts.classifier.iter() {
        gw.metrics.classifier_score(source, score);
    }
    // A stream's request stays in flight until its pump ends (`stream::pump`).
    let done =
        Finish { client: ctx.client.take(), capture: ctx.capture.take(), permit: None, ends_request: !facts.stream };
    crate::gateway::exchange::finish(&gw, &gw.policy(), &ctx.facts, done).await;
    resp
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
    ctx: &mut McpRequest,
) -> Result<Response<Body>, McpError>
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    // route and origin, on the policy in force: a path that names no server costs nothing more.
    {
        let policy = gw.policy();
        if !policy.mcp.servers.contains_key(&ctx.server) {
            return Err(McpError::UnknownServer(ctx.server.clone()));
        }
        // origin: a browser page must not reach MCP servers through the gateway unless allowed.
        origin_allowed(&policy, req.headers())?;
    }
    // admission, then the switch snapshot and the policy (in the order the AI path uses, see
    // `exchange::admit`), then identity
    let mut adm = crate::gateway::exchange::admit(gw, req.headers(), false)?;
    ctx.facts.key = Some(adm.key.clone());
    adm.hold_for_user(gw)?;
    let script = req.extensions().get::<ScriptedReply>().cloned();
    let (parts, body) = req.into_parts();
    // body (POST): read before the switches so that refusals answer the request's id
    let posted = if parts.method == Method::POST {
        Some(read_messages(gw, body, &parts.headers, &adm.active.policy.limits, ctx).await?)
    } else {
        None
    };
    // switches: one snapshot for the whole request, the newest one once the body is in (a batch
    // acknowledged during the upload applies), with the policy loaded after it.
    if adm.refresh(gw, &parts.headers)? {
        ctx.facts.key = Some(adm.key.clone());
    }
    let crate::gateway::exchange::Admitted { permit, snap, active, key } = adm;
    let policy = &active.policy;
    let server =
        policy.mcp.servers.get(&ctx.server).cloned().ok_or_else(|| McpError::UnknownServer(ctx.server.clone()))?;
    // the audit trail (fail closed), after the body so the refusal answers the request's id
    crate::gateway::audit_gate(gw, policy)?;
    let now = unix_now();
    if let Some(r) = snap.principal_refusal(&key, ctx.facts.session.as_deref(), now) {
        return Err(crate::proxy::decide::refusal_error(policy, &snap, r).into());
    }
    // An isolated server gets no traffic, except a DELETE that ends a session (so clients can
    // close what they opened; the session must be the caller's, checked below).
    let closes_session = parts.method == Method::DELETE && ctx.facts.session.is_some();
    if snap.server_isolated(&server.name, now) && !closes_session {
        return Err(McpError::Isolated(server.name.clone()));
    }
    // A session belongs to the principal whose request the server answered with its id (bound in
    // `forward`): another key presenting it is refused, and an id the gateway never saw handed out
    // (forged, expired, or issued before a restart, as bindings live in memory) gets 404, which
    // tells an MCP client to start a new session.
    // (An offline replay has no server behind it that could have handed out a session.)
    let replay = script.is_some();
    if ctx.facts.session.is_none() && parts.headers.contains_key("mcp-session-id") && !replay {
        // Present but unusable (empty, too long, not text): no session the gateway handed out.
        return Err(McpError::UnknownSession);
    }
    if let Some(sid) = &ctx.facts.session {
        match crate::gateway::mcp_sessions::lookup(gw, &server.name, sid).await {
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
    let rpm = crate::proxy::decide::rate_limit(policy, &snap, &key, crate::state::unix_now());
    gw.limiter.check(&key.user, rpm).await.map_err(|r| crate::proxy::decide::rate_limited(&snap, rpm, r))?;
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
    permit: Option<crate::gateway::Permit>,
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
        ctx: &mut McpRequest,
    ) -> Result<Response<Body>, McpError> {
        let (body, local, pending, batch) = match posted {
            Some(p) => (Some(p.body), p.local, p.pending, Some(p.batch)),
            None => (None, Vec::new(), Vec::new(), None),
        };
        let is_get = method == Method::GET;
        let is_delete = method == Method::DELETE;
        let out = upstream::McpOutgoing { method, headers, body, request_id: &self.request_id };
        let policy = self.active.policy.clone();
        // The server's circuit breaker: while open, refused at once (a scripted reply contacts no server).
        let breaker = self.server.circuit.as_ref().and_then(|_| self.gw.circuits.server(&self.server.name));
        let guard = match (&self.script, breaker) {
            (None, Some(b)) => crate::gateway::circuit_admit(&self.gw, Some(b), self.server.circuit.as_ref())
                .await
                .map_err(|open| crate::gateway::circuit_refused(&self.server.name, true, open))?,
            _ => None,
        };
        let resp = upstream::send(&self.active.clients, &self.server, out, &policy.limits, self.script.as_ref()).await;
        if let Some(g) = guard {
            g.finish(&self.gw, &resp).await;
        }
        let resp = resp?;
        let (head, upstream_body) = resp.into_parts();
        if is_delete && head.status.is_success() {
            if let Some(sid) = &ctx.facts.session {
                crate::gateway::mcp_sessions::forget(&self.gw, &self.server.name, sid).await;
            }
        }
        // A new session handed out by the server belongs to the key that asked for it.
        if let (None, true, Some(sid)) = (
            &ctx.facts.session,
            head.status.is_success(),
            head.headers.get("mcp-session-id").and_then(|v| v.to_str().ok()),
        ) {
            if !sid.is_empty() && sid.len() <= 256 {
                crate::gateway::mcp_sessions::bind(&self.gw, &self.server.name, sid, &self.key.id).await;
            }
        }
        let mut builder = Response::builder().status(head.status);
        if let Some(h) = builder.headers_mut() {
            crate::http::outbound::copy_response_headers(&head.headers, h);
        }
        let ct =
            head.headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("").to_ascii_lowercase();
        let invalid = |detail: String| GatewayError::UpstreamInvalid { upstream: self.server.name.clone(), detail };
        if ct.starts_with("text/event-stream") && head.status.is_success() {
            ctx.facts.stream = true;
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
                    session: ctx.facts.session.clone().or_else(|| {
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
            crate::http::body::collect_limited(upstream_body, limit),
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
        absorb(&policy, findings, &mut ctx.facts, &mut ctx.list);
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

/// Moves what inspection found into the request's facts (and the pins and events it learned into
/// `list`).
fn absorb(policy: &Policy, f: Findings, facts: &mut Facts, list: &mut ListOutcome) {
    facts.count_redactions(&policy.scanner, &f.redactions);
    if !facts.redactions.is_empty() {
        facts.decide(Rule::Redaction, Verdict::Redact);
    }
    for (id, action) in f.injections {
        let rule = if id == crate::inspect::injection::classifier::ID {
            crate::inspect::injection::classifier::rule("tool_result").into()
        } else {
            Rule::InjectionToolResult.into()
        };
        facts.decisions.push(Decision { rule, action });
        facts.injections.push(id);
    }
    if let Some(s) = f.scores.tool_result {
        facts.classifier.observe(crate::inspect::injection::TextOrigin::ToolResult, s);
    }
    let own = facts.key.as_ref().map_or("", |k| k.tenant.as_str());
    facts.cross_tenant = policy.tenants.others(&f.tenants, own);
    if !facts.cross_tenant.is_empty() {
        facts.decide(Rule::TenantsCrossTenant, Verdict::Detect);
    }
    if f.invalid > 0 {
        facts.decide(Rule::McpServerMessageInvalid, Verdict::Block);
    }
    for m in f.refused_server_requests {
        facts.decisions.push(Decision { rule: RuleId::ServerRequestRefused(m.into()), action: Verdict::Block });
    }
    // Tools withheld because their definition is not trusted are blocks; those outside the caller's
    // role, level or switches are a filter.
    let mut filtered = false;
    for (_, rule) in &f.list.withheld {
        let base = rule.split(' ').next().unwrap_or(rule);
        match Rule::parse(base) {
            Some(r @ (Rule::McpToolChanged | Rule::McpToolPoisoned | Rule::McpToolFrozen)) => {
                if !facts.decided(r) {
                    facts.decide(r, Verdict::Block);
                }
            }
            _ => filtered = true,
        }
    }
    if filtered && !facts.decided(Rule::McpToolsFiltered) {
        facts.decide(Rule::McpToolsFiltered, Verdict::Strip);
    }
    facts.withheld.extend(f.list.withheld);
    list.observe.extend(f.list.observe);
    list.events.extend(f.list.events);
}

/// Records what a tools/list taught: first-seen pins and pending definitions as one switch batch
/// (persisted, so trust on first use survives restarts), and rug-pull, poisoning and shadowing events
/// in the audit trail. Runs before the client sees the list.
pub(crate) async fn record_list(gw: &Gateway, list: &mut ListOutcome, key: &Arc<KeyEntry>, rid: &str) {
    for (event, tool, detail) in list.events.drain(..) {
        tracing::warn!(event, tool = %tool, detail = %detail, "MCP tool definition event");
        gw.metrics.decision(&format!("mcp.{event}"), "detect");
        let mut facts = Facts::new(Shape::McpToolEvent, rid.to_owned(), Instant::now());
        facts.key = Some(key.clone());
        facts.tool_event = Some(ToolEvent { event, tool, detail });
        crate::gateway::exchange::finish(gw, &gw.policy(), &facts, Finish::default()).await;
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

/// Ends an MCP stream's request: the stream's own audit record (`stream_end`) when something
/// happened in it, then the request leaves the in-flight gauge and its slot is released.
async fn finish_stream(s: &mut stream::McpStream, f: Findings, cut: Option<Rule>) {
    let mut facts = Facts::new(Shape::McpStreamEnd, s.request_id.to_str().unwrap_or("").to_owned(), Instant::now());
    facts.key = Some(s.key.clone());
    facts.session = s.session.clone();
    facts.server = Some(s.server.name.clone());
    absorb(&s.active.policy, f, &mut facts, &mut ListOutcome::default());
    for (source, score) in facts.classifier.iter() {
        s.gw.metrics.classifier_score(source, score);
    }
    let done = Finish { permit: s.permit.take(), ends_request: true, ..Finish::default() };
    if facts.decisions.is_empty() && facts.withheld.is_empty() && cut.is_none() {
        s.gw.metrics.in_flight(-1);
        drop(done.permit);
        return;
    }
    if let Some(rule) = cut {
        s.gw.metrics.stream_terminated();
        facts.decisions.push(Decision { rule: rule.into(), action: Verdict::Terminate });
    }
    for d in &facts.decisions {
        s.gw.metrics.rule(&d.rule, d.action.as_str());
    }
    crate::gateway::exchange::finish(&s.gw, &s.active.policy, &facts, done).await;
}

/// Reads and validates a POST body. Runs right after authentication, before the switches, so every
/// later refusal can answer the request's own id.
async fn read_messages<B>(
    gw: &Gateway,
    body: B,
    headers: &HeaderMap,
    limits: &crate::config::Limits,
    ctx: &mut McpRequest,
) -> Result<(Bytes, jsonrpc::Messages), McpError>
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    let ct = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    if !ct.trim_start().to_ascii_lowercase().starts_with("application/json") {
        return Err(GatewayError::UnsupportedMediaType.into());
    }
    let (bytes, buffered) = crate::http::body::read_request(body, headers, limits, &gw.admission).await?;
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
    ctx: &mut McpRequest,
) -> Result<Response<Body>, McpError> {
    let rid = ex.request_id.to_str().unwrap_or("").to_owned();
    let judge = ex.judge();
    // Invalid batch elements are answered by the gateway, each with its own error.
    let mut local: Vec<Value> = messages
        .invalid
        .iter()
        .map(|(id, why)| {
            let message = format!("invalid JSON-RPC message: {why}");
            jsonrpc::error(id.clone(), jsonrpc::INVALID_REQUEST, &message, Rule::McpInvalidMessage.as_str(), &rid)
        })
        .collect();
    if !local.is_empty() {
        ctx.facts.decide(Rule::McpInvalidMessage, Verdict::Block);
    }
    let mut forward = Vec::with_capacity(messages.list.len());
    for m in messages.list {
        if let Some(method) = jsonrpc::method(&m) {
            ctx.facts.methods.push(method.chars().take(64).collect());
        }
        if jsonrpc::kind(&m) == Ok(Kind::Request) && jsonrpc::method(&m) == Some("tools/call") {
            match judge.call(m.get("params")) {
                Ok(tool) => ctx.facts.tools_called.push(format!("{}/{tool}", ex.server.name)),
                Err(r) => {
                    ctx.facts.decisions.push(Decision { rule: r.rule.clone(), action: Verdict::Block });
                    let id = m.get("id").cloned().unwrap_or(Value::Null);
                    local.push(jsonrpc::error(id, jsonrpc::REFUSED, &r.message, &r.rule.as_text(), &rid));
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
