//! OpenAI chat completions (`/v1/chat/completions`): the redaction walk of its stream chunks and its
//! tool calls.

pub(in crate::inspect) mod redact;
pub(in crate::inspect) mod toolcalls;
