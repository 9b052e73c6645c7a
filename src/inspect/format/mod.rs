//! What inspection knows about each provider wire format, one folder per format:
//!
//! - [`chat`] — OpenAI chat completions (`/v1/chat/completions`).
//! - [`messages`] — Anthropic messages (`/v1/messages`).
//! - [`responses`] — OpenAI Responses (`/v1/responses`).
//!
//! Each folder has one file per concern: `redact.rs` (which strings of a stream event grow, which
//! events end a field, the fast path's strict decode of the common delta, the event that carries
//! held-back text) and `toolcalls.rs` (where the calls are in a whole body and in a stream, and what
//! replaces a refused one). The engines they plug into are format-free:
//! [`crate::inspect::redact`] (slots, hold-back, the stages after redaction, splicing) and
//! [`crate::inspect::toolcalls`] (decisions, refusal records, the held-call bound). Each engine
//! dispatches on the endpoint in one `match` (`StreamRedactor::fast` / `general` / `kind_of` /
//! `carrier`, `StreamFilter::on_event`, `filter_json`).
//!
//! Why here and not in `protocol/`: these adapters work on inspection state (hold-backs, the
//! scanner, the tool-call decisions), and `protocol` sits below `inspect`. The per-format knowledge
//! that needs no inspection — request parsing (`protocol::request`), the request schema
//! (`protocol::schema`), the gateway's own replies (`protocol::reply::{chat, messages, responses}`,
//! one file per format), SSE framing (`protocol::sse`) — stays in `protocol`. A fourth provider format adds an `Endpoint` variant,
//! a folder here (`redact.rs`, `toolcalls.rs`) with one arm in each engine's dispatch, and its wire
//! pieces in `protocol`.
//!
//! The adapters are `impl` blocks on the engines' state types ([`crate::inspect::redact::StreamRedactor`],
//! [`crate::inspect::toolcalls::StreamFilter`]): moved code, no adapter trait, no dynamic dispatch on
//! the per-chunk path.

pub mod chat;
pub mod messages;
pub mod responses;
