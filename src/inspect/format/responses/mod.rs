//! OpenAI Responses (`/v1/responses`): the redaction walk of its stream events and its tool calls
//! (`function_call` items).

pub(in crate::inspect) mod redact;
pub(in crate::inspect) mod toolcalls;
