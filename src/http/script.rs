//! Replies scripted in-process by `firebreak replay` (offline mode).
//!
//! A [`ScriptedReply`] is honoured only when code in this process inserts it into a request's
//! extensions before handing the request to the pipeline; nothing on the wire can set one. When
//! present, the upstream (provider or MCP server) is not contacted: the reply stands in for it, and
//! the response goes through exactly the same inspection as a real one.

use std::collections::VecDeque;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{header, HeaderValue, Response, StatusCode};
use http_body::Frame;
use http_body_util::BodyExt;

use super::body::{Body, BoxError};

/// What the upstream "answers" for one replayed request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScriptedReply {
    /// A whole body with `content-type: application/json`.
    Json {
        /// HTTP status.
        status: u16,
        /// The body, verbatim.
        body: Bytes,
    },
    /// A `text/event-stream` body delivered in exactly these chunks (the split is part of the case).
    Sse {
        /// HTTP status.
        status: u16,
        /// Raw chunks, concatenated they form the SSE stream.
        chunks: Vec<Bytes>,
    },
}

impl ScriptedReply {
    /// The reply as an upstream response: `application/json`, or `text/event-stream` delivered in
    /// exactly the scripted chunks (one body frame each).
    pub fn response(&self) -> Response<Body> {
        let (status, ct, body) = match self {
            ScriptedReply::Json { status, body } => (*status, "application/json", super::body::full(body.clone())),
            ScriptedReply::Sse { status, chunks } => {
                (*status, "text/event-stream", Chunks(chunks.iter().cloned().collect()).boxed())
            }
        };
        let mut resp = Response::new(body);
        *resp.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::OK);
        resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(ct));
        resp
    }
}

/// A body yielding pre-set chunks, one frame each, with no task and no timer.
struct Chunks(VecDeque<Bytes>);

impl http_body::Body for Chunks {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(mut self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        Poll::Ready(self.0.pop_front().map(|b| Ok(Frame::data(b))))
    }
}
