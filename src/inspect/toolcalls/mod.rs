//! Tool calls in responses. A call the principal may not make — a tool its role, the level or the
//! switches do not allow, or arguments that break the tool's constraints or the egress rules — is
//! refused: the client gets a well-formed response without the call and a short notice in its place,
//! never half a call. Streamed calls are held until complete (their arguments are needed for the
//! decision), then released whole or replaced. Works on whole JSON bodies and, event by event, on
//! streams of all three formats.
//!
//! Layout: this module holds what every format shares — the decisions ([`CallCheck`]), the refusal
//! records and notices, the whole-body entry point — and [`stream`] the per-stream state; where the
//! calls are in a body or an event of each format is in `crate::inspect::format::*::toolcalls`.

mod stream;

use serde_json::Value;

use crate::inspect::format;
use crate::protocol::Endpoint;

pub use stream::{EventAction, StreamFilter};

/// Why a call was refused. `detail` names an argument or a rule, never a value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallRefusal {
    /// Rule id for audit and metrics (`tools.not_allowed`, `tools.argument`, `egress.*`).
    pub rule: crate::rules::Rule,
    /// What to tell the client.
    pub detail: String,
}

/// The decisions a tool call needs.
pub trait CallCheck {
    /// Whether a call to `name` may be made at all.
    fn check_name(&self, name: &str) -> Option<CallRefusal>;
    /// Whether these arguments (a JSON document) may be sent to `name`.
    fn check_args(&self, name: &str, args: &str) -> Option<CallRefusal>;
    /// Whether `name` is a data tool: its delivered calls count toward bulk data extraction.
    fn is_data_tool(&self, _name: &str) -> bool {
        false
    }
}

/// A refused call, for audit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefusedCall {
    /// The tool.
    pub tool: String,
    /// Why.
    pub why: CallRefusal,
}

/// The notice that replaces a refused call.
pub fn notice(name: &str, why: &CallRefusal) -> String {
    format!("[firebreak] A call to tool `{name}` was blocked by policy ({}).", why.detail)
}

pub(in crate::inspect) fn decide(check: &dyn CallCheck, name: &str, args: &str) -> Option<CallRefusal> {
    check.check_name(name).or_else(|| check.check_args(name, args))
}

/// What [`filter_json`] decided about the tool calls of a whole response body.
#[derive(Debug, Default)]
pub struct Checked {
    /// The calls refused (replaced by a notice).
    pub refused: Vec<RefusedCall>,
    /// The calls to data tools left in the body: what the client receives, by tool name.
    pub data_calls: Vec<String>,
}

impl Checked {
    /// A call to `name` is left in the body: counted when `name` is a data tool.
    pub(in crate::inspect) fn delivered(&mut self, check: &dyn CallCheck, name: &str) {
        if check.is_data_tool(name) {
            self.data_calls.push(name.to_owned());
        }
    }
}

/// Removes refused tool calls from a whole response body; returns what was refused and which data
/// tools the calls left in it use.
pub fn filter_json(endpoint: Endpoint, body: &mut Value, check: &dyn CallCheck) -> Checked {
    let mut out = Checked::default();
    match endpoint {
        Endpoint::ChatCompletions => format::chat::toolcalls::filter_body(body, check, &mut out),
        Endpoint::Messages => format::messages::toolcalls::filter_body(body, check, &mut out),
        Endpoint::Responses => format::responses::toolcalls::filter_body(body, check, &mut out),
        Endpoint::Embeddings | Endpoint::Models => {}
    }
    out
}

/// The refusal of a streamed call whose arguments outgrew the stream's bound.
pub(in crate::inspect) fn too_large() -> CallRefusal {
    CallRefusal {
        rule: crate::rules::Rule::ToolsCallTooLarge,
        detail: "the call's arguments exceed the size limit".into(),
    }
}

#[cfg(test)]
mod tests;
