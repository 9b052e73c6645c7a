//! Anthropic messages (`/v1/messages`): the redaction walk of its stream events and its tool calls
//! (`tool_use` blocks).

pub(in crate::inspect) mod redact;
pub(in crate::inspect) mod toolcalls;
