//! Replies scripted in-process by `firebreak replay` (offline mode).
//!
//! A [`ScriptedReply`] is honoured only when code in this process inserts it into a request's
//! extensions before handing the request to the pipeline; nothing on the wire can set one. When
//! present, the upstream (provider or MCP server) is not contacted: the reply stands in for it, and
//! the response goes through exactly the same inspection as a real one.

use bytes::Bytes;

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
