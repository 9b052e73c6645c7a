//! Messages from an MCP server on their way to the client: tools/list filtered and pinned, results
//! redacted and checked for injected instructions, server requests allowed or refused.

use serde_json::{json, Value};

use super::jsonrpc::{self, Kind};
use super::tools::{Judge, ListOutcome};
use crate::config::mcp::Permit;
use crate::inspect::injection::{HitAction, TextOrigin};

/// What inspection found across the messages of one HTTP exchange or stream.
#[derive(Debug, Default)]
pub struct Findings {
    /// Redaction rule indexes that matched.
    pub redactions: Vec<u16>,
    /// Injection signatures in results: (signature id, action); the classifier's actions as
    /// `inj.classifier`.
    pub injections: Vec<(String, crate::rules::Verdict)>,
    /// The classifier's highest score (tool results only here).
    pub scores: crate::inspect::injection::classifier::Scores,
    /// tools/list outcomes.
    pub list: ListOutcome,
    /// Server requests refused (method).
    pub refused_server_requests: Vec<String>,
    /// Ids of responses seen (the requests they answer are no longer pending).
    pub answered: Vec<Value>,
    /// Tenants whose identifiers are in the messages forwarded to the client.
    pub tenants: crate::inspect::tenants::Hits,
    /// Server messages dropped because they were not JSON-RPC 2.0 the gateway could classify.
    pub invalid: usize,
}

/// What becomes of one server message.
#[derive(Debug)]
pub enum Fate {
    /// Forwarded; `changed` when it must be re-encoded.
    Forward {
        /// The message was modified.
        changed: bool,
    },
    /// Dropped; the server gets this answer instead (a refused server request).
    Refuse(Value),
    /// Dropped: not a JSON-RPC 2.0 message, so the gateway cannot tell what policy applies to it.
    Drop,
}

/// Inspects one server message in place.
pub fn server_message(j: &Judge<'_>, m: &mut Value, request_id: &str, found: &mut Findings) -> Fate {
    let mut changed = false;
    match jsonrpc::kind(m) {
        Ok(Kind::Request) => {
            let method = jsonrpc::method(m).unwrap_or_default();
            let permit = match method {
                "sampling/createMessage" => Some(j.server.sampling),
                "elicitation/create" => Some(j.server.elicitation),
                _ => None,
            };
            if permit == Some(Permit::Refuse) {
                found.refused_server_requests.push(method.to_owned());
                let id = m.get("id").cloned().unwrap_or(Value::Null);
                return Fate::Refuse(jsonrpc::error(
                    id,
                    jsonrpc::REFUSED,
                    &format!("{method} from server `{}` is refused by the gateway policy", j.server.name),
                    crate::rules::SERVER_REQUEST_REFUSED,
                    request_id,
                ));
            }
        }
        Ok(Kind::Response) => {
            if let Some(id) = m.get("id") {
                found.answered.push(id.clone());
            }
            if let Some(result) = jsonrpc::result_mut(m) {
                if result.contains_key("tools") {
                    let out = j.filter_list(result);
                    changed |= !out.withheld.is_empty();
                    found.list.withheld.extend(out.withheld);
                    found.list.observe.extend(out.observe);
                    found.list.events.extend(out.events);
                }
                changed |= injection(j, result, found);
            }
        }
        Ok(Kind::Notification) => {}
        // Fail closed: what the gateway cannot classify, it does not let through (a client may
        // read it more leniently than the gateway does).
        Err(_) => {
            found.invalid += 1;
            return Fate::Drop;
        }
    }
    let before = found.redactions.len();
    crate::inspect::redact::redact_json(&j.policy.scanner, m, &mut found.redactions);
    changed |= found.redactions.len() > before;
    j.policy.tenants.find_value(m, &mut found.tenants);
    Fate::Forward { changed }
}

/// Tool output (tool results, resource contents, prompt messages) against the injection signatures
/// and (when enabled) the classifier, with the policy's actions for tool results. Returns whether
/// the result changed.
fn injection(j: &Judge<'_>, result: &mut serde_json::Map<String, Value>, found: &mut Findings) -> bool {
    use crate::inspect::injection::classifier::{action_name, ID};
    let sigs = &j.policy.injection;
    let mut blocked: Option<String> = None;
    let mut changed = false;
    for key in ["content", "structuredContent", "contents", "messages"] {
        if let Some(v) = result.get_mut(key) {
            visit_strings(v, &mut |s| {
                let v = sigs.verdict(s, TextOrigin::ToolResult);
                let by_classifier = v.classifier.and_then(|c| {
                    found.scores.observe(TextOrigin::ToolResult, c.score);
                    c.action
                });
                let Some(action) = v.action else { return };
                let name = action_name(action);
                found.injections.extend(v.assessment.hits.iter().map(|h| (h.id.to_owned(), name)));
                if let Some(a) = by_classifier {
                    found.injections.push((ID.to_owned(), action_name(a)));
                }
                if action == HitAction::Block && blocked.is_none() {
                    blocked = match (v.assessment.action, v.assessment.hits.first()) {
                        (Some(HitAction::Block), Some(h)) => Some(h.id.to_owned()),
                        _ => Some(ID.to_owned()),
                    };
                }
                if action == HitAction::Strip {
                    if let Some(stripped) = sigs.apply_strip(s, &v) {
                        *s = stripped;
                        changed = true;
                    }
                }
            });
        }
    }
    if let Some(id) = blocked {
        let notice = format!("[firebreak: tool output withheld: it matched prompt-injection detection `{id}`]");
        result.clear();
        result.insert("content".into(), json!([{"type": "text", "text": notice}]));
        result.insert("isError".into(), Value::Bool(true));
        changed = true;
    }
    changed
}

/// Every string value under `v`, except identifiers and types.
fn visit_strings(v: &mut Value, f: &mut dyn FnMut(&mut String)) {
    match v {
        Value::String(s) => f(s),
        Value::Array(a) => a.iter_mut().for_each(|x| visit_strings(x, f)),
        Value::Object(m) => {
            for (k, x) in m.iter_mut() {
                if !matches!(k.as_str(), "type" | "uri" | "mimeType" | "role" | "name") {
                    visit_strings(x, f);
                }
            }
        }
        _ => {}
    }
}
