//! The request path, as named phases. One plain async function runs them in order; each phase can
//! answer early with a [`GatewayError`], which becomes a response in exactly one place.
//!
//! Order, and why:
//! 1. route — unknown paths are refused before any work.
//! 2. admission (concurrency) — shed load before reading bodies.
//! 3. identity — nothing else is decided for an anonymous caller.
//! 4. switches — one snapshot for the whole request: lockdown, disabled endpoint, revoked key,
//!    blocked tenant/user, terminated session. Cheap and most urgent during an incident.
//! 5. rate limit of the current level — before the body is read, so a flood costs little.
//! 6. body — size limit, content type, JSON, the fields the gateway relies on (`protocol::schema`);
//!    then the switches once more if a batch was acknowledged while the body was uploading.
//! 7. decide — model allowlist, model override, tools stripped (role, level, switches).
//! 8. safe mode — answered here, the model is never asked.
//! 9. upstream — route, credential injection, timeouts.
//! 10. response — JSON checked whole (tool calls; a 2xx body that is not JSON is a 502) or streamed
//!     through the pump.
//! 11. log — metrics and one audit record per request decision.

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use http::{header, HeaderMap, HeaderValue, Request, Response};

use super::decide;
use super::stream::{self, StreamCtx};
use super::upstream::{self, UpstreamRequest};
use crate::audit::Record;
use crate::config::KeyEntry;
use crate::gateway::audit_gate;
use crate::gateway::Gateway;
use crate::http::body::collect_limited;
use crate::http::body::{full, Body, BoxError, ChannelBody};
use crate::http::error::GatewayError;
use crate::http::{authenticate, new_request_id};
use crate::inspect::injection::classifier;
use crate::inspect::toolcalls;
use crate::protocol::reply::{self, ReplySpec};
use crate::protocol::request::{BodyError, Payload};
use crate::protocol::{api_for_path, Api, Endpoint};
use crate::state::unix_now;

/// What the phases learn about a request, for logging at the end.
#[derive(Debug)]
struct Ctx {
    request_id: HeaderValue,
    endpoint: Option<Endpoint>,
    api: Api,
    key: Option<Arc<KeyEntry>>,
    session: Option<String>,
    upstream: Option<String>,
    model: Option<String>,
    stream: bool,
    /// (rule, action) pairs decided along the way.
    decisions: Vec<(&'static str, &'static str)>,
    tools_removed: Vec<String>,
    /// Redactions by rule id (never the text).
    redactions: std::collections::BTreeMap<String, u64>,
    /// Injection signature ids that matched.
    injections: Vec<String>,
    /// The injection classifier's highest score per source (numbers, never text).
    classifier: classifier::Scores,
    /// System-prompt shingles found in a whole response.
    prompt_fragments: usize,
    /// The managed prompt injected: id, version and canary generation (never text or canary).
    prompt: Option<serde_json::Value>,
    /// Other tenants whose identifiers were in the response (names, never the text).
    cross_tenant: Vec<String>,
    /// Calls to data tools delivered in a whole response (tool names).
    data_tool_calls: Vec<String>,
    /// The request body, kept only when `[audit] store_blocked_payloads` is on (for the audit
    /// record of a blocked request, redacted there).
    payload: Option<Bytes>,
    /// The request body's share of the buffered-bytes budget, held as long as the request is.
    buffered: Option<crate::http::admission::Buffered>,
    /// Why the upstream's answer was refused (gateway-written, never upstream content).
    upstream_error: Option<String>,
    /// A streamed response's pump, started by the log phase with the request's audit record.
    pump: Option<stream::Pending>,
    /// Who sent it (peer, forwarded address, user agent, TLS identity), for the audit record.
    client: crate::http::client::ClientMeta,
    /// The payloads, kept only while `[forensics]` is on (redacted when captured).
    capture: Option<crate::forensics::Capture>,
}

/// Serves one AI request (MCP requests go to `mcp::handle`). Generic over the body so in-process
/// callers (offline replay) can hand in a whole buffer instead of a socket's `Incoming`.
pub async fn handle<B>(gw: Arc<Gateway>, req: Request<B>) -> Response<Body>
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    let start = Instant::now();
    let path = req.uri().path();
    let endpoint = Endpoint::route(req.method(), path);
    let mut ctx = Ctx {
        request_id: new_request_id(),
        api: endpoint.map_or_else(|| api_for_path(path), Endpoint::api),
        endpoint,
        key: None,
        session: session_of(req.headers()),
        upstream: None,
        model: None,
        stream: false,
        decisions: Vec::new(),
        tools_removed: Vec::new(),
        redactions: std::collections::BTreeMap::new(),
        injections: Vec::new(),
        classifier: classifier::Scores::default(),
        prompt_fragments: 0,
        prompt: None,
        cross_tenant: Vec::new(),
        data_tool_calls: Vec::new(),
        payload: None,
        buffered: None,
        upstream_error: None,
        pump: None,
        client: crate::http::client::ClientMeta::of(req.extensions(), req.headers()),
        capture: gw.forensics.start(),
    };
    gw.metrics.in_flight(1);
    let span = tracing::info_span!("request", request_id = ?ctx.request_id, endpoint = endpoint.map_or("unknown", Endpoint::name),
        key_id = tracing::field::Empty, decision = tracing::field::Empty, status = tracing::field::Empty);
    let result = tracing::Instrument::instrument(serve(&gw, req, &mut ctx), span.clone()).await;
    let mut resp = match result {
        Ok(r) => r,
        Err(e) => {
            ctx.decisions.push((e.reason(), if e.is_block() { "block" } else { "error" }));
            if let GatewayError::UpstreamInvalid { detail, .. } = &e {
                ctx.upstream_error = Some(detail.clone());
            }
            e.into_response(ctx.api, &ctx.request_id)
        }
    };
    resp.headers_mut().insert("x-request-id", ctx.request_id.clone());
    let status = resp.status().as_u16();
    if ctx.decisions.is_empty() {
        ctx.decisions.push(("allow", "allow"));
    }
    span.record("status", status);
    span.record("decision", ctx.decisions[0].0);
    if let Some(k) = &ctx.key {
        span.record("key_id", k.id.as_str());
    }
    let endpoint_name = endpoint.map_or("unknown", Endpoint::name);
    // The audit trail holds every request; the log line is for what an operator should notice:
    // refusals, errors and redactions at `info`, clean requests at `debug` (a write(2) per request at
    // `info` was a measurable share of the CPU per request in the load bench, see benches/README.md).
    let notable = status >= 400 || !ctx.redactions.is_empty() || ctx.decisions.iter().any(|(_, a)| *a != "allow");
    span.in_scope(|| {
        let elapsed_us = start.elapsed().as_micros() as u64;
        let upstream = ctx.upstream.as_deref();
        if notable {
            tracing::info!(elapsed_us, stream = ctx.stream, upstream, "request");
        } else {
            tracing::debug!(elapsed_us, stream = ctx.stream, upstream, "request");
        }
    });
    gw.metrics.request(endpoint_name, status, start.elapsed());
    for (rule, action) in &ctx.decisions {
        gw.metrics.decision(rule, action);
    }
    for (rule, n) in &ctx.redactions {
        gw.metrics.decisions_n(rule, "redact", *n);
    }
    for (source, score) in ctx.classifier.iter() {
        gw.metrics.classifier_score(source, score);
    }
    let policy = gw.policy();
    let mut record = audit_record(&ctx, &policy.scanner, endpoint_name, status, start);
    record = ctx.client.into_record(record, &policy.scanner, &policy.listen.trusted_proxies);
    if let Some(p) = blocked_payload(&gw, &ctx) {
        record = record.with("payload", p);
    }
    if let Some(pump) = ctx.pump.take() {
        // A stream is counted in flight and audited (once, with what its inspection found) when it ends.
        stream::spawn(pump, record, start);
        return resp;
    }
    gw.metrics.in_flight(-1);
    if let Some(c) = ctx.capture.take() {
        // Before the record is audited: an incident it opens finds this exchange in the ring.
        gw.forensics.capture(&record, c, &policy.scanner);
    }
    crate::incident::audited(&gw, record).await;
    resp
}

/// The payload of a blocked request for its audit record, every string redacted by the scanner, when
/// the policy keeps payloads (`[audit] store_blocked_payloads`); `None` otherwise.
fn blocked_payload(gw: &Gateway, ctx: &Ctx) -> Option<serde_json::Value> {
    let bytes = ctx.payload.as_ref()?;
    if !ctx.decisions.iter().any(|(_, action)| *action == "block") {
        return None;
    }
    let scanner = gw.policy().scanner.clone();
    let mut found = Vec::new();
    match serde_json::from_slice::<serde_json::Value>(bytes) {
        Ok(mut v) => {
            crate::inspect::redact::redact_json(&scanner, &mut v, &mut found);
            Some(v)
        }
        Err(_) => Some(serde_json::Value::from(scanner.redact(&String::from_utf8_lossy(bytes)).0.into_owned())),
    }
}

/// The request's audit record. Strings the client chose (model, tool names) go through
/// `audit::client_text` (secrets redacted, control characters escaped, length capped); the session
/// id is replaced by its digest when the record is written (`audit::session_digest`).
fn audit_record(ctx: &Ctx, scanner: &crate::inspect::Scanner, endpoint: &str, status: u16, start: Instant) -> Record {
    let decisions: Vec<serde_json::Value> =
        ctx.decisions.iter().map(|(rule, action)| serde_json::json!({"rule": rule, "action": action})).collect();
    Record::new("request")
        .with("event", "decision")
        .with("request_id", ctx.request_id.to_str().unwrap_or(""))
        .with("endpoint", endpoint)
        .with("status", status)
        .with("decisions", decisions)
        .with("stream", ctx.stream)
        .with("duration_us", start.elapsed().as_micros() as u64)
        .with_opt("key_id", ctx.key.as_ref().map(|k| k.id.as_str()))
        .with_opt("tenant", ctx.key.as_ref().map(|k| k.tenant.as_str()))
        .with_opt("user", ctx.key.as_ref().map(|k| k.user.as_str()))
        .with_opt("role", ctx.key.as_ref().map(|k| k.role.as_str()))
        .with_opt("session", ctx.session.as_deref())
        .with_opt("upstream", ctx.upstream.as_deref())
        .with_opt("model", ctx.model.as_deref().map(|m| crate::audit::client_text(scanner, m)))
        .with_opt("detail", ctx.upstream_error.as_deref())
        .with_opt(
            "tools_removed",
            (!ctx.tools_removed.is_empty()).then(|| crate::audit::client_list(scanner, &ctx.tools_removed)),
        )
        .with_opt("prompt_fragments", (ctx.prompt_fragments > 0).then_some(ctx.prompt_fragments))
        .with_opt("prompt", ctx.prompt.clone())
        .with_opt("injections", (!ctx.injections.is_empty()).then(|| ctx.injections.clone()))
        .with_opt("classifier", ctx.classifier.to_json())
        .with_opt("cross_tenant", (!ctx.cross_tenant.is_empty()).then(|| ctx.cross_tenant.clone()))
        .with_opt("data_tool_calls", (!ctx.data_tool_calls.is_empty()).then(|| ctx.data_tool_calls.clone()))
        .with_opt(
            "redactions",
            (!ctx.redactions.is_empty()).then(|| serde_json::to_value(&ctx.redactions).unwrap_or_default()),
        )
}

fn session_of(h: &HeaderMap) -> Option<String> {
    h.get("x-session-id")
        .or_else(|| h.get("mcp-session-id"))
        .and_then(|v| v.to_str().ok())
        .filter(|s| !s.is_empty() && s.len() <= 256)
        .map(str::to_owned)
}

async fn serve<B>(gw: &Arc<Gateway>, req: Request<B>, ctx: &mut Ctx) -> Result<Response<Body>, GatewayError>
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    // 1. route
    let endpoint = ctx.endpoint.ok_or_else(|| GatewayError::NotFound {
        method: req.method().to_string(),
        path: req.uri().path().chars().take(200).collect(),
    })?;
    // 2. admission
    let mut permit = gw.admission.admit()?;
    // The snapshot is loaded before the policy: a canary rotation stores the policy whose scanner
    // knows the new canary before the snapshot that injects it, so this order never pairs a new
    // canary with a scanner that cannot see it.
    let mut snap = gw.state.load();
    let mut active = gw.active.load_full();
    audit_gate(gw, &active.policy)?;
    // 3. identity
    let mut key = authenticate(&active.policy, req.headers())?;
    ctx.key = Some(key.clone());
    // 4, 5. switches and rate limit, before the body is read so that a refused caller costs little.
    let now = unix_now();
    decide::admit(&active.policy, &snap, &gw.limiter, &key, endpoint, ctx.session.as_deref(), now)?;
    // The user's share of the concurrency limit, before its body can hold a slot.
    gw.admission.hold_for_user(&mut permit, &key.user, active.policy.levels.get(snap.level).max_in_flight)?;
    // 6. body
    let (parts, body) = req.into_parts();
    let read = if endpoint.has_body() {
        let ct = parts.headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
        if !ct.trim_start().to_ascii_lowercase().starts_with("application/json") {
            return Err(GatewayError::UnsupportedMediaType);
        }
        let (bytes, buffered) =
            crate::http::body::read_request(body, &parts.headers, &active.policy.limits, &gw.admission).await?;
        ctx.buffered = Some(buffered);
        Some(bytes)
    } else {
        None
    };
    // 6b. switches again: a switch acknowledged while the body was uploading (a lockdown, a revoked
    // key) applies to this request too. The snapshot seen now decides the rest of the request; the
    // policy is reloaded after it (the canary order above) and the key looked up in it again.
    let latest = gw.state.load();
    if !Arc::ptr_eq(&latest, &snap) {
        snap = latest;
        active = gw.active.load_full();
        key = authenticate(&active.policy, &parts.headers)?;
        ctx.key = Some(key.clone());
        if let Some(r) = snap.refusal(&key, endpoint, ctx.session.as_deref(), unix_now()) {
            return Err(decide::refusal_error(&active.policy, &snap, r));
        }
    }
    let policy = &active.policy;
    let mut parsed = if let Some(bytes) = read {
        if policy.audit.store_blocked_payloads {
            ctx.payload = Some(bytes.clone());
        }
        if let Some(c) = ctx.capture.as_mut() {
            c.set_request(bytes.clone());
        }
        let parsed = Payload::parse(endpoint, &bytes).map_err(|e| match e {
            BodyError::Json(m) => GatewayError::BadJson(m),
            BodyError::Shape(m) => GatewayError::BadRequest(m),
            BodyError::Field(f) => GatewayError::InvalidField(f),
        })?;
        Some((parsed, bytes))
    } else {
        None
    };
    // 7. decide
    if let Some((b, _)) = parsed.as_mut() {
        ctx.stream = b.stream();
        let rw = decide::rewrite(policy, &snap, &key, endpoint, b, now)?;
        let mut found = decide::RequestFindings::default();
        let inspected = decide::inspect_request_into(policy, endpoint, b, &mut found);
        ctx.classifier = found.scores;
        if let Err(e) = inspected {
            // A block: the classifier's own decision is counted too (the signatures' are not,
            // as before: the error's rule says it).
            ctx.decisions.extend(
                found
                    .injections
                    .iter()
                    .filter(|(_, id, _)| id == classifier::ID)
                    .map(|(s, _, a)| (classifier::rule(s), *a)),
            );
            return Err(e);
        }
        count_redactions(&policy.scanner, &found.redactions, ctx);
        for (source, id, action) in found.injections {
            let rule = if id == classifier::ID {
                classifier::rule(source)
            } else if source == "tool_result" {
                "injection.tool_result"
            } else {
                "injection.user_input"
            };
            ctx.decisions.push((rule, action));
            ctx.injections.push(id);
        }
        if rw.model_overridden {
            ctx.decisions.push(("level.model_override", "modify"));
        }
        if !rw.tools_removed.is_empty() {
            ctx.decisions.push(("tools.stripped", "modify"));
            ctx.tools_removed = rw.tools_removed;
        }
        ctx.model = b.model().map(str::to_owned);
    }
    // 8. safe mode
    if snap.safe_mode {
        ctx.decisions.push(("switch.safe_mode", "safe_mode"));
        let spec = ReplySpec {
            endpoint,
            stream: ctx.stream,
            model: ctx.model.as_deref().unwrap_or("firebreak-safe-mode"),
            text: &policy.safe_mode_reply,
            chunk_chars: 64,
            id: ctx.request_id.to_str().unwrap_or("fb"),
            inputs: parsed.as_ref().map_or(0, |(b, _)| b.embedding_inputs()),
            tool_call: None,
        };
        return Ok(upstream::rendered_response(reply::render(&spec), std::time::Duration::ZERO));
    }
    // 9. upstream, with the managed prompt (after the request inspection: its canary must reach the
    // model unredacted)
    let route = policy.route_entry(endpoint.api(), ctx.model.as_deref());
    let up = route.and_then(|r| policy.upstreams.get(&r.upstream)).ok_or(GatewayError::NoRoute)?.clone();
    ctx.upstream = Some(up.name.clone());
    // The upstream's circuit breaker (a reply scripted in-process contacts no upstream).
    let scripted_reply = parts.extensions.get::<crate::http::script::ScriptedReply>();
    let (up, guard) =
        if scripted_reply.is_some() { (up, None) } else { through_breaker(gw, policy, route, up, ctx).await? };
    ctx.upstream = Some(up.name.clone());
    if let (Some((b, _)), Some(mp)) = (parsed.as_mut(), policy.prompt_for(&key, route)) {
        ctx.prompt = Some(inject_prompt(mp, &snap, endpoint, b)?);
    }
    let scripted = up.kind == crate::config::UpstreamKind::Scripted;
    let (body_bytes, last_user, system, inputs) = match &parsed {
        Some((b, original)) => (
            if b.changed { b.to_bytes() } else { original.clone() },
            if scripted { b.last_user_text(endpoint) } else { String::new() },
            if scripted { b.system_text(endpoint) } else { String::new() },
            b.embedding_inputs(),
        ),
        None => (Bytes::new(), String::new(), String::new(), 0),
    };
    let out = UpstreamRequest {
        endpoint,
        headers: &parts.headers,
        body: body_bytes,
        request_id: &ctx.request_id,
        stream: ctx.stream,
        model: ctx.model.as_deref(),
        last_user_text: &last_user,
        system_text: &system,
        inputs,
        scripted: scripted_reply,
    };
    // A shutdown whose drain time is up answers a request still waiting for its upstream with 503
    // in the caller's format, as it ends the open streams, rather than dropping the connection.
    let closed = gw.closed();
    tokio::pin!(closed);
    let resp = tokio::select! {
        resp = upstream::send(&active.clients, &up, out, &policy.limits) => resp,
        () = &mut closed => return Err(GatewayError::ShuttingDown),
    };
    if let Some(g) = guard {
        g.finish(gw, &resp).await;
    }
    let resp = resp?;
    // 10. response
    let (head, upstream_body) = resp.into_parts();
    let is_sse = head
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.starts_with("text/event-stream"));
    let mut out = Response::builder().status(head.status);
    if let Some(h) = out.headers_mut() {
        crate::http::outbound::copy_response_headers(&head.headers, h);
    }
    if is_sse && head.status.is_success() {
        let (tx, body) = ChannelBody::new(8);
        ctx.pump = Some(stream::Pending {
            ctx: StreamCtx {
                gw: gw.clone(),
                policy: active.policy.clone(),
                key,
                endpoint,
                session: ctx.session.clone(),
                request_id: ctx.request_id.to_str().unwrap_or("").to_owned(),
                upstream: up.name.clone(),
                permit: Some(permit),
                capture: ctx.capture.take(),
            },
            upstream: upstream_body,
            tx,
        });
        return out
            .body(body.boxed())
            .map_err(|e| GatewayError::UpstreamInvalid { upstream: up.name.clone(), detail: e.to_string() });
    }
    let limit = policy.limits.max_response_body;
    let collected = tokio::select! {
        c = tokio::time::timeout(policy.limits.upstream_timeout, collect_limited(upstream_body, limit)) => c,
        () = &mut closed => return Err(GatewayError::ShuttingDown),
    };
    let bytes = match collected {
        Err(_) => return Err(GatewayError::UpstreamTimeout(up.name.clone())),
        Ok(Err(detail)) => return Err(GatewayError::UpstreamInvalid { upstream: up.name.clone(), detail }),
        Ok(Ok(b)) => b,
    };
    let check = decide::CallPolicy { policy, snap: &snap, role: &key.role, now };
    let guard = stream::link_guard(policy, snap.clone());
    let bytes = inspect_json(
        endpoint,
        head.status.is_success(),
        bytes,
        &check,
        &OutputInspect { scanner: &policy.scanner, guard: &guard, prompts: &policy.prompts },
        ctx,
    )
    .map_err(|NotJson| GatewayError::UpstreamInvalid {
        upstream: up.name.clone(),
        detail: format!("the body of a {} response is not JSON", head.status.as_u16()),
    })?;
    ctx.cross_tenant = policy.tenants.leaked_to(&key.tenant, &bytes);
    if !ctx.cross_tenant.is_empty() {
        ctx.decisions.push(("tenants.cross_tenant", "detect"));
    }
    drop(permit);
    if let Some(c) = ctx.capture.as_mut() {
        c.set_response(&bytes);
    }
    out.body(full(bytes))
        .map_err(|e| GatewayError::UpstreamInvalid { upstream: up.name.clone(), detail: e.to_string() })
}

/// The upstream a request goes to, through its circuit breaker: the route's upstream while its
/// circuit lets requests through; while it is open, the route's fallback (through the fallback's own
/// breaker), else a 503 at once. Upstreams without a breaker cost nothing here.
async fn through_breaker(
    gw: &Gateway,
    policy: &crate::config::Policy,
    route: Option<&crate::config::Route>,
    up: Arc<crate::config::Upstream>,
    ctx: &mut Ctx,
) -> Result<(Arc<crate::config::Upstream>, Option<crate::gateway::health::Guard>), GatewayError> {
    let breaker = |u: &crate::config::Upstream| u.circuit.as_ref().and_then(|_| gw.circuits.upstream(&u.name));
    let open = match crate::gateway::health::admit(gw, breaker(&up), up.circuit.as_ref()).await {
        Ok(g) => return Ok((up, g)),
        Err(open) => open,
    };
    if let Some(fb) = route.and_then(|r| r.fallback.as_deref()).and_then(|n| policy.upstreams.get(n)) {
        if let Ok(g) = crate::gateway::health::admit(gw, breaker(fb), fb.circuit.as_ref()).await {
            ctx.decisions.push(("upstream.fallback", "modify"));
            return Ok((fb.clone(), g));
        }
    }
    Err(crate::gateway::health::refused(&up.name, false, open))
}

/// Puts the live version of a managed prompt, with its canary, first in the request. Fails closed
/// when the switch state has no canary for it (never sends a prompt the gateway cannot detect).
fn inject_prompt(
    mp: &crate::config::prompts::ManagedPrompt,
    snap: &crate::state::Snapshot,
    endpoint: Endpoint,
    body: &mut Payload,
) -> Result<serde_json::Value, GatewayError> {
    let (Some(st), Some(canary)) = (snap.prompts.get(&mp.id), snap.canaries.current(&mp.id)) else {
        return Err(GatewayError::PromptUnavailable(mp.id.clone()));
    };
    body.prepend_system(endpoint, &mp.render(st.live, canary));
    Ok(serde_json::json!({"id": mp.id, "version": st.live.as_str(), "canary": st.canary_generation}))
}

/// A success body that is not JSON: no SDK can read it and the gateway cannot inspect it.
#[derive(Debug)]
struct NotJson;

/// The response-body phase for whole JSON bodies: refused tool calls replaced by a notice, then every
/// text string redacted (error bodies too: providers echo parts of keys). The body is parsed only
/// when it may need either; otherwise a success body is only validated (no allocation). A success
/// body that is not JSON is refused ([`NotJson`]); an error body that is not JSON (a proxy's HTML
/// page) is passed on redacted as text.
fn inspect_json(
    endpoint: Endpoint,
    success: bool,
    bytes: Bytes,
    check: &dyn toolcalls::CallCheck,
    out: &OutputInspect<'_>,
    ctx: &mut Ctx,
) -> Result<Bytes, NotJson> {
    let (scanner, guard, prompts) = (out.scanner, out.guard, out.prompts);
    use crate::inspect::needle::Needle;
    static TOOL: Needle = Needle::new(b"tool");
    static FUNCTION_CALL: Needle = Needle::new(b"function_call");
    static LINK_OPEN: Needle = Needle::new(b"](");
    static SCHEME: Needle = Needle::new(b"://");
    let may_call_tools = success && (TOOL.is_in(&bytes) || FUNCTION_CALL.is_in(&bytes));
    if prompts.is_empty() {
        // A secret can hide behind JSON escapes (`\n` in a PEM block, `\u0041`): only a body without
        // escapes and without raw findings can skip parsing.
        let may_leak = match std::str::from_utf8(&bytes) {
            Ok(text) => memchr::memchr(b'\\', &bytes).is_some() || !scanner.scan(text).is_empty(),
            Err(_) => true,
        };
        let may_link = LINK_OPEN.is_in(&bytes) || SCHEME.is_in(&bytes);
        let may_carry_tokens = crate::inspect::redact::may_carry_token_data(&bytes);
        if !may_call_tools && !may_leak && !may_link && !may_carry_tokens {
            if success && serde_json::from_slice::<serde::de::IgnoredAny>(&bytes).is_err() {
                return Err(NotJson);
            }
            return Ok(bytes);
        }
    }
    if !may_call_tools {
        // The common case: no tool call to check. A borrowing walk checks every text string as the
        // general path below would (redaction, links); when none needs rewriting, the body goes out
        // as it came and only the fragment count is left, over the same strings in the same order.
        let clean = crate::inspect::json_walk::clean_strings(&bytes, &mut |s| {
            !scanner.scan(s).is_empty() || guard.apply(s).is_some()
        });
        if let Some(strings) = clean {
            count_fragments(prompts, &strings, ctx);
            return Ok(bytes);
        }
    }
    let Ok(mut v) = serde_json::from_slice::<serde_json::Value>(&bytes) else {
        if success {
            return Err(NotJson);
        }
        // An error page that is not JSON: redact as text (fail closed).
        let text = String::from_utf8_lossy(&bytes);
        let (red, found) = scanner.redact(&text);
        if found.is_empty() {
            return Ok(bytes);
        }
        let rules: Vec<u16> = found.iter().map(|f| f.rule).collect();
        count_redactions(scanner, &rules, ctx);
        return Ok(Bytes::from(red.into_owned()));
    };
    let mut changed = false;
    if may_call_tools {
        let checked = toolcalls::filter_json(endpoint, &mut v, check);
        if !checked.refused.is_empty() {
            for r in checked.refused {
                ctx.decisions.push((r.why.rule, "block"));
                ctx.tools_removed.push(r.tool);
            }
            changed = true;
        }
        ctx.data_tool_calls = checked.data_calls;
    }
    // Per-token data repeats the text token by token, where no redaction can reach: never delivered.
    changed |= crate::inspect::redact::drop_all_token_data(&mut v);
    let mut found = Vec::new();
    let mut links = 0;
    crate::inspect::redact::redact_json_with(scanner, Some(guard), &mut v, &mut found, &mut links);
    if !found.is_empty() {
        count_redactions(scanner, &found, ctx);
        changed = true;
    }
    if links > 0 {
        ctx.decisions.push(("egress.markdown_link", "neutralize"));
        changed = true;
    }
    if !prompts.is_empty() {
        let mut strings = Vec::new();
        collect_strings(&v, &mut strings);
        count_fragments(prompts, &strings, ctx);
    }
    Ok(if changed { Bytes::from(v.to_string()) } else { bytes })
}

/// What inspects a response body: redaction, link neutralisation, prompt-fragment counting.
struct OutputInspect<'a> {
    scanner: &'a crate::inspect::Scanner,
    guard: &'a crate::inspect::redact::LinkGuard,
    prompts: &'a crate::inspect::fragments::PromptShingles,
}

/// Every string of a JSON value, in map (key) order (for fragment counting).
fn collect_strings<'v>(v: &'v serde_json::Value, out: &mut Vec<&'v str>) {
    match v {
        serde_json::Value::String(s) => out.push(s),
        serde_json::Value::Array(a) => a.iter().for_each(|x| collect_strings(x, out)),
        serde_json::Value::Object(m) => m.values().for_each(|x| collect_strings(x, out)),
        _ => {}
    }
}

/// Counts system-prompt fragments in a response's strings, newline-separated.
fn count_fragments<S: AsRef<str>>(prompts: &crate::inspect::fragments::PromptShingles, strings: &[S], ctx: &mut Ctx) {
    if prompts.is_empty() {
        return;
    }
    let mut all = String::with_capacity(strings.iter().map(|s| s.as_ref().len() + 1).sum());
    for s in strings {
        all.push_str(s.as_ref());
        all.push('\n');
    }
    let n: usize = prompts.count(&all).values().sum();
    if n > 0 {
        ctx.decisions.push(("prompt.fragment", "detect"));
        ctx.prompt_fragments = n;
    }
}

fn count_redactions(scanner: &crate::inspect::Scanner, found: &[u16], ctx: &mut Ctx) {
    for &r in found {
        *ctx.redactions.entry(scanner.rule(r).id.clone()).or_default() += 1;
    }
}
