//! Forwarding to an MCP server: its URL, its own credential (never the client's), and the transport
//! headers carried through.

use bytes::Bytes;
use http::{header, HeaderMap, HeaderValue, Method, Request, Response};
use http_body_util::{BodyExt, Full};

use crate::config::mcp::McpServer;
use crate::config::Limits;
use crate::gateway::Clients;
use crate::http::body::{Body, BoxError, ChannelBody};
use crate::http::error::GatewayError;
use crate::http::script::ScriptedReply;

/// Client request headers passed to the server; everything else (the client's `Authorization`,
/// cookies, hop-by-hop headers) stays behind.
const FORWARDED: [&str; 5] = ["accept", "mcp-session-id", "mcp-protocol-version", "last-event-id", "user-agent"];

/// One request to an MCP server.
pub struct McpOutgoing<'a> {
    /// GET, POST or DELETE.
    pub method: Method,
    /// The client's headers (filtered here).
    pub headers: &'a HeaderMap,
    /// Body for POST.
    pub body: Option<Bytes>,
    /// Sent as `x-request-id`.
    pub request_id: &'a HeaderValue,
}

/// Sends a request to the server and returns its response head with a streaming body. A
/// [`ScriptedReply`] stands in for the server when one is given (offline replay).
pub async fn send(
    clients: &Clients,
    server: &McpServer,
    out: McpOutgoing<'_>,
    limits: &Limits,
    script: Option<&ScriptedReply>,
) -> Result<Response<Body>, GatewayError> {
    if let Some(s) = script {
        return Ok(scripted(s));
    }
    let client = clients.mcp(&server.name).ok_or(GatewayError::NoRoute)?;
    let mut req = Request::builder().method(out.method.clone()).uri(server.url.clone());
    let h = req.headers_mut().ok_or(GatewayError::NoRoute)?;
    for name in FORWARDED {
        if let Some(v) = out.headers.get(name) {
            h.insert(name, v.clone());
        }
    }
    if !h.contains_key(header::ACCEPT) {
        h.insert(header::ACCEPT, HeaderValue::from_static("application/json, text/event-stream"));
    }
    h.insert(header::ACCEPT_ENCODING, HeaderValue::from_static("identity"));
    h.insert("x-request-id", out.request_id.clone());
    if out.body.is_some() {
        h.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    }
    if let Some(c) = server.credential.current() {
        let text = if server.credential_header == header::AUTHORIZATION {
            format!("Bearer {}", c.expose())
        } else {
            c.expose().to_owned()
        };
        let mut v = HeaderValue::from_str(&text).map_err(|_| GatewayError::NoCredential(server.name.clone()))?;
        v.set_sensitive(true);
        h.insert(server.credential_header.clone(), v);
    } else if server.credential.source().is_some() {
        return Err(GatewayError::NoCredential(server.name.clone()));
    }
    let req = req.body(Full::new(out.body.unwrap_or_default())).map_err(|_| GatewayError::NoRoute)?;
    match tokio::time::timeout(limits.upstream_timeout, client.request(req)).await {
        Err(_) => Err(GatewayError::UpstreamTimeout(server.name.clone())),
        Ok(Err(e)) => {
            tracing::warn!(server = %server.name, error = %e, "MCP server request failed");
            Err(GatewayError::UpstreamUnavailable(server.name.clone(), crate::http::outbound::transport_failure(&e)))
        }
        Ok(Ok(r)) => Ok(r.map(|b| b.map_err(|e| Box::new(e) as BoxError).boxed())),
    }
}

fn scripted(s: &ScriptedReply) -> Response<Body> {
    let (status, ct, body) = match s {
        ScriptedReply::Json { status, body } => (*status, "application/json", crate::http::body::full(body.clone())),
        ScriptedReply::Sse { status, chunks } => {
            let (tx, body) = ChannelBody::new(4);
            let chunks = chunks.clone();
            tokio::spawn(async move {
                for c in chunks {
                    if tx.send(c).await.is_err() {
                        return;
                    }
                }
            });
            (*status, "text/event-stream", body.boxed())
        }
    };
    let mut resp = Response::new(body);
    *resp.status_mut() = http::StatusCode::from_u16(status).unwrap_or(http::StatusCode::OK);
    resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(ct));
    resp
}

/// Answers a server's request on the client's behalf (a refused `sampling/createMessage`, say), in
/// the background: the client's stream does not wait for it.
pub fn answer_server(
    active: std::sync::Arc<crate::gateway::Active>,
    server: std::sync::Arc<McpServer>,
    headers: HeaderMap,
    body: Bytes,
    request_id: HeaderValue,
) {
    tokio::spawn(async move {
        let out = McpOutgoing { method: Method::POST, headers: &headers, body: Some(body), request_id: &request_id };
        if let Err(e) = send(&active.clients, &server, out, &active.policy.limits, None).await {
            tracing::debug!(server = %server.name, error = %e, "could not answer the server's refused request");
        }
    });
}
