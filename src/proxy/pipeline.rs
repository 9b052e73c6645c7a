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
use crate::facts::{Decision, Facts, Shape};
use crate::gateway::Gateway;
use crate::http::body::{collect_limited, full, Body, BoxError, ChannelBody};
use crate::http::error::GatewayError;
use crate::http::new_request_id;
use crate::inspect::injection::classifier;
use crate::inspect::toolcalls;
use crate::protocol::reply::{self, ReplySpec};
use crate::protocol::request::{BodyError, Payload};
use crate::protocol::{api_for_path, Api, Endpoint};
use crate::rules::{Rule, Verdict};
use crate::state::unix_now;

/// The state of one AI request on its way through the phases: its [`Facts`] (what the audit record
/// and the incident engine get) and what the phases hand each other.
#[derive(Debug)]
struct AiRequest {
    request_id: HeaderValue,
    endpoint: Option<Endpoint>,
    api: Api,
    /// What the phases learned, for the log phase (or the stream pump) to finish.
    facts: Facts,
    /// The request body, kept only when `[audit] store_blocked_payloads` is on (for the audit
    /// record of a blocked request, redacted there).
    payload: Option<Bytes>,
    /// The request body's share of the buffered-bytes budget, held as long as the request is.
    buffered: Option<crate::http::admission::Buffered>,
    /// A streamed response's pump, started by the log phase with the request's facts.
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
    let request_id = new_request_id();
    let mut facts = Facts::new(Shape::AiRequest, request_id.to_str().unwrap_or("").to_owned(), start);
    facts.endpoint = endpoint.map_or("unknown", Endpoint::name);
    facts.session = session_of(req.headers());
    let mut ctx = AiRequest {
        request_id,
        api: endpoint.map_or_else(|| api_for_path(path), Endpoint::api),
        endpoint,
        facts,
        payload: None,
        buffered: None,
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
            ctx.facts.decisions.push(Decision { rule: e.reason().into(), action: action_of(&e) });
            if let GatewayError::UpstreamInvalid { detail, .. } = &e {
                ctx.facts.detail = Some(detail.clone());
            }
            e.into_response(ctx.api, &ctx.request_id)
        }
    };
    resp.headers_mut().insert("x-request-id", ctx.request_id.clone());
    let status = resp.status().as_u16();
    let facts = &mut ctx.facts;
    facts.status = status;
    if facts.decisions.is_empty() {
        facts.decide(Rule::Allow, Verdict::Allow);
    }
    span.record("status", status);
    span.record("decision", facts.decisions[0].rule.as_text().as_ref());
    if let Some(k) = &facts.key {
        span.record("key_id", k.id.as_str());
    }
    // The audit trail holds every request; the log line is for what an operator should notice:
    // refusals, errors and redactions at `info`, clean requests at `debug` (a write(2) per request at
    // `info` was a measurable share of the CPU per request in the load bench, see benches/README.md).
    let notable =
        status >= 400 || !facts.redactions.is_empty() || facts.decisions.iter().any(|d| d.action != Verdict::Allow);
    span.in_scope(|| {
        let elapsed_us = start.elapsed().as_micros() as u64;
        let upstream = facts.upstream.as_deref();
        if notable {
            tracing::info!(elapsed_us, stream = facts.stream, upstream, "request");
        } else {
            tracing::debug!(elapsed_us, stream = facts.stream, upstream, "request");
        }
    });
    gw.metrics.request(facts.endpoint, status, start.elapsed());
    for d in &facts.decisions {
        gw.metrics.rule(&d.rule, d.action.as_str());
    }
    for (rule, r) in &facts.redactions {
        gw.metrics.decisions_n(rule, "redact", r.count);
    }
    for (source, score) in facts.classifier.iter() {
        gw.metrics.classifier_score(source, score);
    }
    let policy = gw.policy();
    facts.payload = blocked_payload(&policy.scanner, ctx.payload.as_ref(), &facts.decisions);
    let done = crate::gateway::exchange::Finish {
        client: Some(ctx.client),
        capture: ctx.capture.take(),
        permit: None,
        ends_request: true,
    };
    if let Some(pump) = ctx.pump.take() {
        // A stream is counted in flight and audited (once, with what its inspection found) when it ends.
        stream::spawn(pump, ctx.facts, done);
        return resp;
    }
    crate::gateway::exchange::finish(&gw, &policy, &ctx.facts, done).await;
    resp
}

/// What a refusal or failure is recorded as: `block` when the gateway refused (policy, the
/// caller's request), `error` when it failed or shed load ([`GatewayError::is_block`]).
pub(crate) fn action_of(e: &GatewayError) -> crate::rules::Verdict {
    if e.is_block() {
        Verdict::Block
    } else {
        Verdict::Error
    }
}

/// The payload of a blocked request for its audit record, every string redacted by the scanner, when
/// the policy keeps payloads (`[audit] store_blocked_payloads`); `None` otherwise.
fn blocked_payload(
    scanner: &crate::inspect::Scanner,
    payload: Option<&Bytes>,
    decisions: &[Decision],
) -> Option<serde_json::Value> {
    let bytes = payload?;
    if !decisions.iter().any(|d| d.action == Verdict::Block) {
        return None;
    }
    let mut found = Vec::new();
    match serde_json::from_slice::<serde_json::Value>(bytes) {
        Ok(mut v) => {
            crate::inspect::redact::redact_json(scanner, &mut v, &mut found);
            Some(v)
        }
        Err(_) => Some(serde_json::Value::from(scanner.redact(&String::from_utf8_lossy(bytes)).0.into_owned())),
    }
}

fn session_of(h: &HeaderMap) -> Option<String> {
    h.get("x-session-id")
        .or_else(|| h.get("mcp-session-id"))
        .and_then(|v| v.to_str().ok())
        .filter(|s| !s.is_empty() && s.len() <= 256)
        .map(str::to_owned)
}

async fn serve<B>(gw: &Arc<Gateway>, req: Request<B>, ctx: &mut AiRequest) -> Result<Response<Body>, GatewayError>
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    // 1. route
    let endpoint = ctx.endpoint.ok_or_else(|| GatewayError::NotFound {
        method: req.method().to_string(),
        path: req.uri().path().chars().take(200).collect(),
    })?;
    // 2. admission, then the switch snapshot and the policy (in that order: see `exchange::admit`),
    // 3. identity; a fail-closed policy serves nothing while the audit trail cannot be written.
    let mut adm = crate::gateway::exchange::admit(gw, req.headers(), true)?;
    ctx.facts.key = Some(adm.key.clone());
    // 4, 5. switches and rate limit, before the body is read so that a refused caller costs little.
    let now = unix_now();
    let rpm = decide::admit(&adm.active.policy, &adm.snap, &adm.key, endpoint, ctx.facts.session.as_deref(), now)?;
    gw.limiter.check(&adm.key.user, rpm).await.map_err(|r| decide::rate_limited(&adm.snap, rpm, r))?;
    // The user's share of the concurrency limit, before its body can hold a slot.
    adm.hold_for_user(gw)?;
    // 6. body
    let (parts, body) = req.into_parts();
    let read = if endpoint.has_body() {
        let ct = parts.headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
        if !ct.trim_start().to_ascii_lowercase().starts_with("application/json") {
            return Err(GatewayError::UnsupportedMediaType);
        }
        let (bytes, buffered) =
            crate::http::body::read_request(body, &parts.headers, &adm.active.policy.limits, &gw.admission).await?;
        ctx.buffered = Some(buffered);
        Some(bytes)
    } else {
        None
    };
    // 6b. switches again: a switch acknowledged while the body was uploading (a lockdown, a revoked
    // key) applies to this request too. The snapshot seen now decides the rest of the request; the
    // policy is reloaded after it (the canary order above) and the key looked up in it again.
    if adm.refresh(gw, &parts.headers)? {
        ctx.facts.key = Some(adm.key.clone());
        if let Some(r) = adm.snap.refusal(&adm.key, endpoint, ctx.facts.session.as_deref(), unix_now()) {
            return Err(decide::refusal_error(&adm.active.policy, &adm.snap, r));
        }
    }
    let crate::gateway::exchange::Admitted { permit, snap, active, key } = adm;
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
        ctx.facts.stream = b.stream();
        let rw = decide::rewrite(policy, &snap, &key, endpoint, b, now)?;
        let mut found = decide::RequestFindings::default();
        let inspected = decide::inspect_request_into(policy, endpoint, b, &mut found);
        ctx.facts.classifier = found.scores;
        if let Err(e) = inspected {
            // A block: the classifier's own decision is counted too (the signatures' are not,
            // as before: the error's rule says it).
            ctx.facts.decisions.extend(
                found
                    .injections
                    .iter()
                    .filter(|(_, id, _)| id == classifier::ID)
                    .map(|(s, _, a)| Decision { rule: classifier::rule(s).into(), action: *a }),
            );
            return Err(e);
        }
        ctx.facts.count_redactions(&policy.scanner, &found.redactions);
        for (source, id, action) in found.injections {
            let rule = if id == classifier::ID {
                classifier::rule(source).into()
            } else if source == "tool_result" {
                Rule::InjectionToolResult.into()
            } else {
                Rule::InjectionUserInput.into()
            };
            ctx.facts.decisions.push(Decision { rule, action });
            ctx.facts.injections.push(id);
        }
        if rw.model_overridden {
            ctx.facts.decide(Rule::LevelModelOverride, Verdict::Modify);
        }
        if !rw.tools_removed.is_empty() {
            ctx.facts.decide(Rule::ToolsStripped, Verdict::Modify);
            ctx.facts.tools_removed = rw.tools_removed;
        }
        ctx.facts.model = b.model().map(str::to_owned);
    }
    // 8. safe mode
    if snap.safe_mode {
        ctx.facts.decide(Rule::SwitchSafeMode, Verdict::SafeMode);
        let spec = ReplySpec {
            endpoint,
            stream: ctx.facts.stream,
            model: ctx.facts.model.as_deref().unwrap_or("firebreak-safe-mode"),
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
    let route = policy.route_entry(endpoint.api(), ctx.facts.model.as_deref());
    let up = route.and_then(|r| policy.upstreams.get(&r.upstream)).ok_or(GatewayError::NoRoute)?.clone();
    ctx.facts.upstream = Some(up.name.clone());
    // The upstream's circuit breaker (a reply scripted in-process contacts no upstream).
    let scripted_reply = parts.extensions.get::<crate::http::script::ScriptedReply>();
    let (up, guard) =
        if scripted_reply.is_some() { (up, None) } else { through_breaker(gw, policy, route, up, ctx).await? };
    ctx.facts.upstream = Some(up.name.clone());
    if let (Some((b, _)), Some(mp)) = (parsed.as_mut(), policy.prompt_for(&key, route)) {
        ctx.facts.prompt = Some(inject_prompt(mp, &snap, endpoint, b)?);
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
        stream: ctx.facts.stream,
        model: ctx.facts.model.as_deref(),
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
    ctx.facts.cross_tenant = policy.tenants.leaked_to(&key.tenant, &bytes);
    if !ctx.facts.cross_tenant.is_empty() {
        ctx.facts.decide(Rule::TenantsCrossTenant, Verdict::Detect);
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
    ctx: &mut AiRequest,
) -> Result<(Arc<crate::config::Upstream>, Option<crate::gateway::health::Guard>), GatewayError> {
    let breaker = |u: &crate::config::Upstream| u.circuit.as_ref().and_then(|_| gw.circuits.upstream(&u.name));
    let open = match crate::gateway::health::admit(gw, breaker(&up), up.circuit.as_ref()).await {
        Ok(g) => return Ok((up, g)),
        Err(open) => open,
    };
    if let Some(fb) = route.and_then(|r| r.fallback.as_deref()).and_then(|n| policy.upstreams.get(n)) {
        if let Ok(g) = crate::gateway::health::admit(gw, breaker(fb), fb.circuit.as_ref()).await {
            ctx.facts.decide(Rule::UpstreamFallback, Verdict::Modify);
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
    ctx: &mut AiRequest,
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
        ctx.facts.count_redactions(scanner, &rules);
        return Ok(Bytes::from(red.into_owned()));
    };
    let mut changed = false;
    if may_call_tools {
        let checked = toolcalls::filter_json(endpoint, &mut v, check);
        if !checked.refused.is_empty() {
            for r in checked.refused {
                ctx.facts.decisions.push(Decision { rule: r.why.rule.into(), action: Verdict::Block });
                ctx.facts.tools_removed.push(r.tool);
            }
            changed = true;
        }
        ctx.facts.data_tool_calls = checked.data_calls;
    }
    // Per-token data repeats the text token by token, where no redaction can reach: never delivered.
    changed |= crate::inspect::redact::drop_all_token_data(&mut v);
    let mut found = Vec::new();
    let mut links = 0;
    crate::inspect::redact::redact_json_with(scanner, Some(guard), &mut v, &mut found, &mut links);
    if !found.is_empty() {
        ctx.facts.count_redactions(scanner, &found);
        changed = true;
    }
    if links > 0 {
        ctx.facts.decide(Rule::EgressMarkdownLink, Verdict::Neutralize);
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
fn count_fragments<S: AsRef<str>>(
    prompts: &crate::inspect::fragments::PromptShingles,
    strings: &[S],
    ctx: &mut AiRequest,
) {
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
        ctx.facts.decide(Rule::PromptFragment, Verdict::Detect);
        ctx.facts.prompt_fragments = n as u64;
    }
}
