//! The AI surface's upstream call: credential injection, the headers forwarded to a provider, and
//! the in-process scripted upstream. The pooled clients themselves are `http::outbound`'s.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{header, HeaderMap, HeaderValue, Request, Response};
use http_body_util::{BodyExt, Full};

use crate::config::{Limits, Upstream, UpstreamKind};
use crate::http::body::{Body, BoxError, ChannelBody};
use crate::http::error::GatewayError;
use crate::http::outbound::{transport_failure, Clients};
use crate::http::script::ScriptedReply;
use crate::protocol::reply::{self, Rendered, ReplySpec};
use crate::protocol::Endpoint;

/// Request headers passed on to a provider; everything else (the client's credentials, cookies,
/// hop-by-hop headers, encodings the gateway could not inspect) stays behind.
const FORWARDED_REQUEST_HEADERS: [header::HeaderName; 2] = [header::ACCEPT, header::USER_AGENT];
const FORWARDED_PREFIXED: [&str; 3] = ["anthropic-version", "anthropic-beta", "openai-beta"];

/// What the request path hands to an upstream.
#[derive(Debug)]
pub struct UpstreamRequest<'a> {
    /// Endpoint.
    pub endpoint: Endpoint,
    /// Client headers (filtered here).
    pub headers: &'a HeaderMap,
    /// Body to send (already rewritten by policy).
    pub body: Bytes,
    /// Request id sent upstream as `x-request-id`.
    pub request_id: &'a HeaderValue,
    /// For the scripted upstream: whether a stream was asked, the model and the last user text.
    pub stream: bool,
    /// Model (after overrides).
    pub model: Option<&'a str>,
    /// The last user message's text (scripted replies match on it).
    pub last_user_text: &'a str,
    /// The system text sent (scripted upstreams only: a reply may quote it as `{system}`).
    pub system_text: &'a str,
    /// Embedding inputs.
    pub inputs: usize,
    /// A reply scripted in-process (offline replay): answered instead of contacting the upstream.
    pub scripted: Option<&'a ScriptedReply>,
}

/// Sends the request and returns the response head with a streaming body.
pub async fn send(
    clients: &Clients,
    upstream: &Arc<Upstream>,
    out: UpstreamRequest<'_>,
    limits: &Limits,
) -> Result<Response<Body>, GatewayError> {
    if let Some(reply) = out.scripted {
        return Ok(reply.response());
    }
    match upstream.kind {
        UpstreamKind::Scripted => Ok(scripted(upstream, &out)),
        UpstreamKind::OpenAi | UpstreamKind::Anthropic => http_send(clients, upstream, out, limits).await,
    }
}

async fn http_send(
    clients: &Clients,
    up: &Arc<Upstream>,
    out: UpstreamRequest<'_>,
    limits: &Limits,
) -> Result<Response<Body>, GatewayError> {
    let client = clients.upstream(&up.name).ok_or(GatewayError::NoRoute)?;
    let base = up.base_url.as_ref().ok_or(GatewayError::NoRoute)?;
    let credential = up.credential.current().ok_or_else(|| GatewayError::NoCredential(up.name.clone()))?;
    let path = format!("{}{}", base.path().trim_end_matches('/'), out.endpoint.path());
    let uri = http::Uri::builder()
        .scheme(base.scheme_str().unwrap_or("https"))
        .authority(base.authority().map(|a| a.as_str()).unwrap_or_default())
        .path_and_query(path)
        .build()
        .map_err(|_| GatewayError::NoRoute)?;
    let method = if out.endpoint.has_body() { http::Method::POST } else { http::Method::GET };
    let mut req = Request::builder().method(method).uri(uri);
    let h = req.headers_mut().ok_or(GatewayError::NoRoute)?;
    for name in &FORWARDED_REQUEST_HEADERS {
        if let Some(v) = out.headers.get(name) {
            h.insert(name.clone(), v.clone());
        }
    }
    for name in FORWARDED_PREFIXED {
        for v in out.headers.get_all(name) {
            h.append(name, v.clone());
        }
    }
    h.insert(header::ACCEPT_ENCODING, HeaderValue::from_static("identity"));
    h.insert("x-request-id", out.request_id.clone());
    if out.endpoint.has_body() {
        h.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    }
    let mut cred = HeaderValue::from_str(
        match up.kind {
            UpstreamKind::Anthropic => credential.expose().to_owned(),
            _ => format!("Bearer {}", credential.expose()),
        }
        .as_str(),
    )
    .map_err(|_| GatewayError::NoCredential(up.name.clone()))?;
    cred.set_sensitive(true);
    match up.kind {
        UpstreamKind::Anthropic => {
            h.insert("x-api-key", cred);
            if !h.contains_key("anthropic-version") {
                h.insert("anthropic-version", HeaderValue::from_static("2023-06-01"));
            }
        }
        _ => {
            h.insert(header::AUTHORIZATION, cred);
        }
    }
    let req = req.body(Full::new(out.body)).map_err(|_| GatewayError::NoRoute)?;
    let resp = match tokio::time::timeout(limits.upstream_timeout, client.request(req)).await {
        Err(_) => return Err(GatewayError::UpstreamTimeout(up.name.clone())),
        Ok(Err(e)) => {
            tracing::warn!(upstream = %up.name, error = %e, "upstream request failed");
            return Err(GatewayError::UpstreamUnavailable(up.name.clone(), transport_failure(&e)));
        }
        Ok(Ok(r)) => r,
    };
    Ok(resp.map(|b| b.map_err(|e| Box::new(e) as BoxError).boxed()))
}

/// The scripted upstream: the first reply whose `when_contains` is in the last user message,
/// rendered in the endpoint's real wire format and streamed chunk by chunk with the configured delay.
fn scripted(up: &Upstream, out: &UpstreamRequest<'_>) -> Response<Body> {
    let reply = up.replies.iter().find(|r| r.when_contains.as_deref().is_none_or(|w| out.last_user_text.contains(w)));
    let text = reply.map_or("", |r| r.text.as_str());
    // `{system}` plays a model that leaks its instructions (the demo's and the tests' prompt leak).
    let leaked;
    let text = if text.contains("{system}") {
        leaked = text.replace("{system}", out.system_text);
        leaked.as_str()
    } else {
        text
    };
    let tool_call = reply.and_then(|r| r.tool_call.as_ref()).map(|(n, a)| (n.as_str(), a.as_str()));
    let id = out.request_id.to_str().unwrap_or("fb");
    let spec = ReplySpec {
        endpoint: out.endpoint,
        stream: out.stream,
        model: out.model.unwrap_or("firebreak-scripted"),
        text,
        chunk_chars: up.chunk_chars,
        id,
        inputs: out.inputs,
        tool_call,
    };
    rendered_response(reply::render(&spec), up.chunk_delay)
}

/// A response carrying a rendered reply; events are sent one by one with `delay` between them.
pub fn rendered_response(r: Rendered, delay: Duration) -> Response<Body> {
    match r {
        Rendered::Json(b) => {
            let mut resp = Response::new(crate::http::body::full(b));
            resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
            resp
        }
        Rendered::Events(events) => {
            let (tx, body) = ChannelBody::new(4);
            tokio::spawn(async move {
                for (i, e) in events.into_iter().enumerate() {
                    if i > 0 && !delay.is_zero() {
                        tokio::time::sleep(delay).await;
                    }
                    if tx.send(e).await.is_err() {
                        return;
                    }
                }
            });
            let mut resp = Response::new(body.boxed());
            resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
            resp.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
            resp
        }
    }
}
