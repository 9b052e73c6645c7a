//! Redaction of model output: whole JSON bodies, and SSE streams of the three formats (OpenAI chat
//! completions, OpenAI Responses, Anthropic messages).
//!
//! In a stream every string a client can receive passes the scanner, known field or not (see
//! [`super::fields`]): a field that grows across events (any string under a chat `delta`, an
//! Anthropic block delta — text, thinking, signature, tool input —, a Responses `*.delta`) goes
//! through its own [`HoldBack`], so that for every chunking the concatenation the client receives
//! equals the redaction of the whole text; every other string is redacted whole in its event.
//!
//! Hot path: the common event — one text delta and nothing else that holds text — is read with a
//! strict borrowing typed decode that locates the text in the raw event; the released text is
//! spliced into the raw bytes in its place (nothing else is decoded, rebuilt or re-serialised). Every
//! other event, and any event the fast decode does not fully understand (another text field, an
//! unknown member, escapes in the text, several choices, tool calls, a finish reason, duplicate
//! keys), takes the general path through a `serde_json::Value`.
//!
//! Layout: [`json`] (whole bodies, token data), [`link`] (the link stage and its markdown hold),
//! [`stream`] (the per-stream engine: slots, stages, fast path, general path), [`fast`] (the
//! pieces shared by the strict decodes). What each wire format's events look like — its fast decode,
//! its growing fields, its end events — is in `crate::inspect::format::{chat, messages, responses}`.

pub(in crate::inspect) mod fast;
mod json;
mod link;
mod stream;

pub(crate) use json::{carries_token_data, drop_all_token_data, may_carry_token_data, SKIP_KEYS, TOKEN_DATA};
pub use json::{redact_json, redact_json_with};
pub use link::{markdown_cut, LinkGuard, MARKDOWN_HOLD};
pub(in crate::inspect) use stream::Carrier;
pub use stream::{Redacted, StreamRedactor, MAX_FIELDS};
