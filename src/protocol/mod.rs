//! Wire formats: which API a request speaks, its endpoints, error bodies, SSE framing, and replies
//! the gateway writes itself (safe mode, the scripted upstream).

pub mod json;
pub mod reply;
pub mod request;
pub mod schema;
pub mod sse;

use std::fmt;

use bytes::Bytes;

/// The API family a client speaks; errors are shaped accordingly.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Api {
    /// OpenAI-style (`/v1/chat/completions`, `/v1/responses`, …).
    OpenAi,
    /// Anthropic-style (`/v1/messages`).
    Anthropic,
}

impl fmt::Display for Api {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Api::OpenAi => "openai",
            Api::Anthropic => "anthropic",
        })
    }
}

/// The AI endpoints the gateway serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Endpoint {
    /// `POST /v1/chat/completions`
    ChatCompletions,
    /// `POST /v1/responses`
    Responses,
    /// `POST /v1/embeddings`
    Embeddings,
    /// `GET /v1/models`
    Models,
    /// `POST /v1/messages`
    Messages,
}

impl Endpoint {
    /// Every endpoint.
    pub const ALL: [Endpoint; 5] =
        [Endpoint::ChatCompletions, Endpoint::Responses, Endpoint::Embeddings, Endpoint::Models, Endpoint::Messages];

    /// Matches a request line; `None` for anything else.
    pub fn route(method: &http::Method, path: &str) -> Option<Endpoint> {
        let ep = Endpoint::ALL.into_iter().find(|e| e.path() == path)?;
        let ok = match ep {
            Endpoint::Models => method == http::Method::GET,
            _ => method == http::Method::POST,
        };
        ok.then_some(ep)
    }

    /// The API family.
    pub fn api(self) -> Api {
        match self {
            Endpoint::Messages => Api::Anthropic,
            _ => Api::OpenAi,
        }
    }

    /// The request path.
    pub fn path(self) -> &'static str {
        match self {
            Endpoint::ChatCompletions => "/v1/chat/completions",
            Endpoint::Responses => "/v1/responses",
            Endpoint::Embeddings => "/v1/embeddings",
            Endpoint::Models => "/v1/models",
            Endpoint::Messages => "/v1/messages",
        }
    }

    /// Its name in switches and metrics.
    pub fn name(self) -> &'static str {
        match self {
            Endpoint::ChatCompletions => "chat_completions",
            Endpoint::Responses => "responses",
            Endpoint::Embeddings => "embeddings",
            Endpoint::Models => "models",
            Endpoint::Messages => "messages",
        }
    }

    /// Parses a name (`chat_completions`) or a path (`/v1/chat/completions`).
    pub fn parse(s: &str) -> Option<Endpoint> {
        Endpoint::ALL.into_iter().find(|e| e.name() == s || e.path() == s)
    }

    /// Whether requests carry a JSON body the gateway reads.
    pub fn has_body(self) -> bool {
        self != Endpoint::Models
    }
}

/// The API family to answer in for a path that matched no endpoint.
pub fn api_for_path(path: &str) -> Api {
    if path.starts_with("/v1/messages") || path.starts_with("/v1/complete") {
        Api::Anthropic
    } else {
        Api::OpenAi
    }
}

/// An error body in the caller's format.
pub fn error_body(api: Api, kind: ErrorKind, message: &str, code: &str) -> Bytes {
    error_body_for(api, kind, message, code, None)
}

/// An error body in the caller's format naming the request field at fault (OpenAI's `param`;
/// Anthropic's errors have no such field, their message names it).
pub fn error_body_for(api: Api, kind: ErrorKind, message: &str, code: &str, param: Option<&str>) -> Bytes {
    let v = match api {
        Api::OpenAi => serde_json::json!({
            "error": {"message": message, "type": kind.openai_type(), "code": code, "param": param}
        }),
        Api::Anthropic => serde_json::json!({
            "type": "error",
            "error": {"type": kind.anthropic_type(), "message": message}
        }),
    };
    Bytes::from(v.to_string())
}

/// A terminal SSE error event in the stream's own format, ending a stream cleanly: Anthropic
/// `event: error`, OpenAI Responses `event: error` with `{"type":"error","code","message"}`, OpenAI
/// chat completions a `data:` line carrying `{"error":{…}}`.
pub fn error_event(endpoint: Endpoint, kind: ErrorKind, message: &str, code: &str) -> Bytes {
    let body = match endpoint {
        // The Responses API's own error event is flat ({type, code, message}); the nested `error`
        // object as well makes the official SDKs raise instead of yielding a silent event.
        Endpoint::Responses => Bytes::from(
            serde_json::json!({"type": "error", "code": code, "message": message, "param": null,
                "error": {"type": kind.openai_type(), "code": code, "message": message}})
            .to_string(),
        ),
        _ => error_body(endpoint.api(), kind, message, code),
    };
    let mut out = Vec::with_capacity(body.len() + 32);
    if matches!(endpoint, Endpoint::Messages | Endpoint::Responses) {
        out.extend_from_slice(b"event: error\n");
    }
    out.extend_from_slice(b"data: ");
    out.extend_from_slice(&body);
    out.extend_from_slice(b"\n\n");
    Bytes::from(out)
}

/// The broad class of an error, mapped to each API's error type names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// 400
    InvalidRequest,
    /// 401
    Authentication,
    /// 403
    Permission,
    /// 404
    NotFound,
    /// 413
    TooLarge,
    /// 429
    RateLimit,
    /// 500/502/504: upstream or gateway failure
    Api,
    /// 503
    Overloaded,
}

impl ErrorKind {
    fn openai_type(self) -> &'static str {
        match self {
            ErrorKind::InvalidRequest | ErrorKind::TooLarge | ErrorKind::NotFound => "invalid_request_error",
            ErrorKind::Authentication => "authentication_error",
            ErrorKind::Permission => "permission_error",
            ErrorKind::RateLimit => "rate_limit_error",
            ErrorKind::Api => "api_error",
            ErrorKind::Overloaded => "service_unavailable",
        }
    }

    fn anthropic_type(self) -> &'static str {
        match self {
            ErrorKind::InvalidRequest => "invalid_request_error",
            ErrorKind::Authentication => "authentication_error",
            ErrorKind::Permission => "permission_error",
            ErrorKind::NotFound => "not_found_error",
            ErrorKind::TooLarge => "request_too_large",
            ErrorKind::RateLimit => "rate_limit_error",
            ErrorKind::Api => "api_error",
            ErrorKind::Overloaded => "overloaded_error",
        }
    }
}
