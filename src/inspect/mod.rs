//! Inspection: what a client receives must never contain a credential, a canary or a link that
//! smuggles data out, whatever the provider sends and however the stream is chunked.
//!
//! - [`rule`] — a detection rule: prefilter anchor, windowed regex, validator.
//! - [`scanner`] — one aho-corasick automaton for all keywords + a digit-run detector decide where
//!   each rule's regex runs; findings are merged and replaced.
//! - [`holdback`] — streaming redaction that never releases part of a future match.
//! - [`redact`] — whole JSON bodies (`json`), the link stage, and the per-stream engine; `fields`
//!   finds every string of a stream event and which ones grow across events.
//! - [`toolcalls`] — tool calls in responses: refused calls replaced by a notice, streamed calls
//!   held until complete.
//! - [`format`] — per wire format (chat, messages, responses), one folder each: the redaction walk of
//!   its stream events and where its tool calls are.
//! - [`tenants`] — another tenant's identifiers in what a client receives (detection only).
//! - [`validate`] — checksums and entropy.
//! - [`needle`] — substring tests for fixed needles, prepared once.

pub mod canary;
pub mod catalog;
pub mod egress;
mod fields;
pub mod format;
pub mod fragments;
pub mod holdback;
pub mod injection;
pub mod json_walk;
pub mod needle;
mod prefilter;
pub mod redact;
pub mod rule;
pub mod scanner;
pub mod tenants;
pub mod toolcalls;
pub mod validate;

pub use holdback::HoldBack;
pub use rule::{Anchor, Category, Rule, RuleError, Severity};
pub use scanner::{Finding, Scanner};

/// The built-in rules, each with whether it is on by default.
pub fn builtin_rules() -> Result<Vec<(Rule, bool)>, RuleError> {
    catalog::builtin()
}
