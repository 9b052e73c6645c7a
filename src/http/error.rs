//! Every way a request can be refused or fail, and the one place they become HTTP responses shaped
//! like the caller's API.

use std::time::Duration;

use bytes::Bytes;
use http::{header, HeaderValue, Response, StatusCode};

use super::body::{full, Body};
use crate::protocol::{error_body_for, Api, ErrorKind};
use crate::rules::Rule;
use crate::state::Refusal;

/// A refusal or failure on the request path. Messages never contain secrets.
#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    /// No route for this method and path.
    #[error("unknown route {method} {path}; firebreak serves /v1/chat/completions, /v1/responses, /v1/embeddings, /v1/models and /v1/messages")]
    NotFound {
        /// Method.
        method: String,
        /// Path (no query).
        path: String,
    },
    /// No key presented.
    #[error("missing API key: send your firebreak virtual key as `Authorization: Bearer <key>` or `x-api-key: <key>`")]
    MissingKey,
    /// The key is not known.
    #[error("invalid API key: this key is not a firebreak virtual key")]
    UnknownKey,
    /// The key expired.
    #[error("API key `{0}` has expired; ask your platform team for a new one")]
    KeyExpired(String),
    /// A switch refuses the request.
    #[error("{}", refusal_message(*.0))]
    Refused(Refusal),
    /// Lockdown.
    #[error("{0}")]
    Lockdown(String),
    /// Rate limit of the current level.
    #[error("rate limit of {rpm} requests per minute reached at degradation level {level}; retry after {} s", .retry_after.as_secs().max(1))]
    RateLimited {
        /// Limit.
        rpm: u32,
        /// Level name.
        level: &'static str,
        /// When a request will be accepted again.
        retry_after: Duration,
    },
    /// Body too large.
    #[error("request body exceeds the limit of {0} bytes")]
    TooLarge(usize),
    /// Not JSON.
    #[error("content-type must be application/json")]
    UnsupportedMediaType,
    /// Malformed JSON.
    #[error("request body is not valid JSON: {0}")]
    BadJson(String),
    /// The body is JSON but not of the expected shape.
    #[error("invalid request: {0}")]
    BadRequest(String),
    /// A field the gateway relies on is missing or of the wrong type (`protocol::schema`).
    #[error("invalid request: {}", .0.message)]
    InvalidField(crate::protocol::schema::FieldError),
    /// The request offers tools the principal may not use, and the role says refuse.
    #[error("tools not allowed for your role or at the current level: {}", .0.join(", "))]
    ToolsNotAllowed(Vec<String>),
    /// A prompt-injection signature (or the classifier, `inj.classifier`) matched where the policy says block.
    #[error("the request was blocked by prompt-injection detection `{0}`")]
    InjectionBlocked(String),
    /// The role may not use this model.
    #[error("model `{0}` is not allowed for your role")]
    ModelNotAllowed(String),
    /// The audit trail cannot be written and the policy fails closed (`[audit] on_failure`).
    #[error("the gateway cannot write its audit trail, so it serves no AI traffic until it can (policy: [audit] on_failure = \"fail_closed\"); the operator is alerted (/readyz, firebreak_audit_writable)")]
    AuditUnavailable,
    /// Too many requests in flight.
    #[error("the gateway is at its concurrency limit; retry shortly")]
    Overloaded,
    /// The user already has its level's share of requests in flight.
    #[error("too many requests in flight for this user (at most {0} at the current level); retry when one finishes")]
    UserInFlight(u32),
    /// The gateway's budget of buffered request bodies is spent.
    #[error("the gateway is holding too many request bodies right now; retry shortly")]
    BufferBudget,
    /// The request body did not arrive in time (too slow, or too long in total).
    #[error("the request body did not arrive in time; send it faster")]
    BodyTimeout,
    /// No upstream configured for this request.
    #[error("no upstream is configured for this API and model")]
    NoRoute,
    /// The managed prompt bound to the request has no canary in the switch state (fail closed).
    #[error("managed prompt `{0}` is not ready (no canary issued); the operator must run `firebreak admin rotate-canary {0}`")]
    PromptUnavailable(String),
    /// The upstream's credential is not available.
    #[error("upstream `{0}` has no credential configured; the operator must set it and rotate it in")]
    NoCredential(String),
    /// Could not reach the upstream (connect error, or the connection broke before the answer).
    #[error("upstream `{0}` is unreachable")]
    UpstreamUnavailable(String, crate::circuit::Failure),
    /// The target's circuit breaker is open: it failed too often, so the gateway does not call it.
    #[error("{} `{target}` is failing ({}), so firebreak is not sending it requests for now (circuit open); retry after {} s",
        if *.mcp { "MCP server" } else { "upstream" },
        .error_class.map_or("repeated failures", crate::circuit::Failure::as_str),
        .retry_after.as_secs_f64().ceil().max(1.0))]
    CircuitOpen {
        /// Upstream or MCP server name.
        target: String,
        /// Whether it is an MCP server.
        mcp: bool,
        /// The last failure's class.
        error_class: Option<crate::circuit::Failure>,
        /// When a request may be let through again.
        retry_after: Duration,
    },
    /// The upstream did not answer in time.
    #[error("upstream `{0}` did not answer in time")]
    UpstreamTimeout(String),
    /// The gateway is shutting down and the drain time is up (ends the streams still open).
    #[error("the gateway is shutting down; retry the request")]
    ShuttingDown,
    /// The upstream answered with something the gateway cannot pass on safely.
    #[error("upstream `{upstream}` sent an invalid response: {detail}")]
    UpstreamInvalid {
        /// Upstream name.
        upstream: String,
        /// What was wrong.
        detail: String,
    },
}

fn refusal_message(r: Refusal) -> &'static str {
    match r {
        Refusal::Lockdown => "the AI service is in lockdown",
        Refusal::EndpointDisabled => "this endpoint is disabled by the gateway operator",
        Refusal::KeyRevoked => "this API key has been revoked",
        Refusal::TenantBlocked => "access for your organisation is suspended by the gateway operator",
        Refusal::UserBlocked => "access for this user is suspended by the gateway operator",
        Refusal::SessionTerminated => "this session was terminated by the gateway operator",
    }
}

impl GatewayError {
    /// HTTP status.
    pub fn status(&self) -> StatusCode {
        use GatewayError::*;
        match self {
            NotFound { .. } => StatusCode::NOT_FOUND,
            MissingKey | UnknownKey | KeyExpired(_) | Refused(Refusal::KeyRevoked) => StatusCode::UNAUTHORIZED,
            Refused(Refusal::Lockdown) | Lockdown(_) => StatusCode::SERVICE_UNAVAILABLE,
            Refused(_) | ModelNotAllowed(_) | ToolsNotAllowed(_) => StatusCode::FORBIDDEN,
            RateLimited { .. } | UserInFlight(_) => StatusCode::TOO_MANY_REQUESTS,
            BodyTimeout => StatusCode::REQUEST_TIMEOUT,
            BufferBudget => StatusCode::SERVICE_UNAVAILABLE,
            TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            BadJson(_) | BadRequest(_) | InvalidField(_) | InjectionBlocked(_) => StatusCode::BAD_REQUEST,
            Overloaded | PromptUnavailable(_) | ShuttingDown | AuditUnavailable | CircuitOpen { .. } => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            NoRoute | NoCredential(_) | UpstreamUnavailable(..) | UpstreamInvalid { .. } => StatusCode::BAD_GATEWAY,
            UpstreamTimeout(_) => StatusCode::GATEWAY_TIMEOUT,
        }
    }

    /// Rule id for audit, metrics and logs.
    pub fn reason(&self) -> Rule {
        use GatewayError::*;
        match self {
            NotFound { .. } => Rule::RequestUnknownRoute,
            MissingKey => Rule::AuthMissingKey,
            UnknownKey => Rule::AuthUnknownKey,
            KeyExpired(_) => Rule::AuthKeyExpired,
            Refused(r) => r.rule(),
            Lockdown(_) => Rule::LevelLockdown,
            RateLimited { .. } => Rule::LevelRateLimit,
            TooLarge(_) => Rule::RequestTooLarge,
            UnsupportedMediaType => Rule::RequestContentType,
            BadJson(_) => Rule::RequestBadJson,
            BadRequest(_) | InvalidField(_) => Rule::RequestInvalid,
            ModelNotAllowed(_) => Rule::RoleModelNotAllowed,
            ToolsNotAllowed(_) => Rule::ToolsNotAllowed,
            InjectionBlocked(_) => Rule::InjectionBlocked,
            Overloaded => Rule::LimitsConcurrency,
            AuditUnavailable => Rule::AuditUnavailable,
            UserInFlight(_) => Rule::LimitsUserInFlight,
            BufferBudget => Rule::LimitsBufferedBytes,
            BodyTimeout => Rule::RequestBodyTimeout,
            NoRoute => Rule::UpstreamNoRoute,
            PromptUnavailable(_) => Rule::PromptUnavailable,
            ShuttingDown => Rule::GatewayShutdown,
            NoCredential(_) => Rule::UpstreamNoCredential,
            UpstreamUnavailable(..) => Rule::UpstreamUnavailable,
            CircuitOpen { .. } => Rule::UpstreamCircuitOpen,
            UpstreamTimeout(_) => Rule::UpstreamTimeout,
            UpstreamInvalid { .. } => Rule::UpstreamInvalidResponse,
        }
    }

    /// The API error class.
    pub fn kind(&self) -> ErrorKind {
        match self.status() {
            StatusCode::BAD_REQUEST | StatusCode::UNSUPPORTED_MEDIA_TYPE | StatusCode::REQUEST_TIMEOUT => {
                ErrorKind::InvalidRequest
            }
            StatusCode::UNAUTHORIZED => ErrorKind::Authentication,
            StatusCode::FORBIDDEN => ErrorKind::Permission,
            StatusCode::NOT_FOUND => ErrorKind::NotFound,
            StatusCode::PAYLOAD_TOO_LARGE => ErrorKind::TooLarge,
            StatusCode::TOO_MANY_REQUESTS => ErrorKind::RateLimit,
            StatusCode::SERVICE_UNAVAILABLE => ErrorKind::Overloaded,
            _ => ErrorKind::Api,
        }
    }

    /// The `code` field of OpenAI-style errors.
    pub fn code(&self) -> &'static str {
        if let GatewayError::InvalidField(f) = self {
            return f.code;
        }
        let r = self.reason().as_str();
        r.rsplit('.').next().unwrap_or(r)
    }

    /// Whether the gateway refused (policy) rather than failed.
    pub fn is_block(&self) -> bool {
        self.status().is_client_error() || matches!(self, GatewayError::Refused(_) | GatewayError::Lockdown(_))
    }

    /// The response, in the caller's format, with the request id.
    pub fn into_response(self, api: Api, request_id: &HeaderValue) -> Response<Body> {
        let param = match &self {
            GatewayError::InvalidField(f) => Some(f.param.as_str()),
            _ => None,
        };
        let body: Bytes = error_body_for(api, self.kind(), &self.to_string(), self.code(), param);
        let mut resp = Response::new(full(body));
        *resp.status_mut() = self.status();
        let h = resp.headers_mut();
        h.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
        h.insert("x-request-id", request_id.clone());
        if api == Api::Anthropic {
            h.insert("request-id", request_id.clone());
        }
        match &self {
            GatewayError::RateLimited { retry_after, .. } => {
                h.insert(header::RETRY_AFTER, HeaderValue::from(retry_after.as_secs().max(1)));
            }
            GatewayError::CircuitOpen { retry_after, .. } => {
                h.insert(header::RETRY_AFTER, HeaderValue::from(retry_after.as_secs_f64().ceil().max(1.0) as u64));
            }
            // Both free up as soon as another request finishes.
            GatewayError::UserInFlight(_) | GatewayError::BufferBudget => {
                h.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            }
            _ if self.status() == StatusCode::SERVICE_UNAVAILABLE => {
                h.insert(header::RETRY_AFTER, HeaderValue::from_static("60"));
            }
            _ => {}
        }
        resp
    }
}
