//! The typed record of one exchange: what every phase of the AI pipeline (`proxy::pipeline`, the
//! stream pump) and the MCP gateway (`mcp`) learned about a request, in one value.
//!
//! Phases fill it as they go; it is finished exactly once, when the response ends (a stream's pump
//! finishes it): the audit record is derived from it ([`Facts::record`]) and the incident engine
//! reads it as it is (`incident::Engine::observe`), so nothing is parsed back out of JSON and a rule
//! is never matched by its spelling. Nothing secret is in it: rule ids, counts, names and the
//! principal's ids; strings the client chose go through `audit::client_text` when the record is made.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use serde_json::Value;

use crate::audit::{client_list, client_text, Record};
use crate::config::KeyEntry;
use crate::inspect::injection::classifier::Scores;
use crate::inspect::rule::Category;
use crate::inspect::Scanner;
use crate::rules::{Rule, RuleId, Verdict};

/// Which record an exchange makes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// An AI request (`kind: request, event: decision`), streamed or not.
    AiRequest,
    /// An MCP request (`kind: mcp, event: request`).
    McpRequest,
    /// What an MCP answer stream found after its head was sent (`kind: mcp, event: stream_end`).
    McpStreamEnd,
    /// A tool-definition event learned from a `tools/list` (`kind: mcp, event: <event>`).
    McpToolEvent,
}

impl Shape {
    /// Whether the exchange is MCP traffic.
    pub fn is_mcp(self) -> bool {
        !matches!(self, Shape::AiRequest)
    }
}

/// One decision: the rule and what it did (`allow`, `block`, `modify`, `redact`, …).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// The rule.
    pub rule: RuleId,
    /// What it did.
    pub action: Verdict,
}

impl Decision {
    /// A decision of a fixed rule.
    pub fn new(rule: Rule, action: Verdict) -> Decision {
        Decision { rule: RuleId::Fixed(rule), action }
    }

    fn to_json(&self) -> Value {
        let mut m = serde_json::Map::new();
        m.insert("rule".into(), Value::from(self.rule.as_text().into_owned()));
        m.insert("action".into(), Value::from(self.action.as_str()));
        Value::Object(m)
    }
}

/// Redactions of one scanner rule: how many, and what the rule guards (a canary is proof of a
/// leak, a credential shape a match).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Redacted {
    /// Matches redacted.
    pub count: u64,
    /// The rule's category.
    pub category: Category,
}

/// A tool-definition event of an MCP server (rug pull, poisoning, shadowing, first pin).
#[derive(Debug, Clone)]
pub struct ToolEvent {
    /// The event (`tool_definition_changed`, `tool_poisoning`, …).
    pub event: &'static str,
    /// `server/tool`.
    pub tool: String,
    /// What changed (gateway-written).
    pub detail: String,
}

/// What one exchange learned. See the module documentation.
#[derive(Debug, Clone)]
pub struct Facts {
    /// Which record it makes.
    pub shape: Shape,
    /// The gateway's request id.
    pub request_id: String,
    /// When the request arrived.
    pub started: Instant,
    /// The principal (absent until identity).
    pub key: Option<Arc<KeyEntry>>,
    /// The client's session id (digested when the record is written).
    pub session: Option<String>,
    /// HTTP status sent.
    pub status: u16,
    /// Whether the answer is a stream.
    pub stream: bool,
    /// Decisions, in the order they were made.
    pub decisions: Vec<Decision>,
    /// Redactions by scanner rule id.
    pub redactions: BTreeMap<String, Redacted>,
    /// Injection signature ids that matched.
    pub injections: Vec<String>,
    /// The injection classifier's highest score per source.
    pub classifier: Scores,
    /// System-prompt fragments found in the response.
    pub prompt_fragments: u64,
    /// Other tenants whose identifiers reached the client (names).
    pub cross_tenant: Vec<String>,
    /// Why the answer was refused or broke off (gateway-written).
    pub detail: Option<String>,

    /// AI: the endpoint's name.
    pub endpoint: &'static str,
    /// AI: the upstream that served it.
    pub upstream: Option<String>,
    /// AI: the model asked for (the client's text).
    pub model: Option<String>,
    /// AI: tools removed from the request or refused in a whole response (the client's names).
    pub tools_removed: Vec<String>,
    /// AI: the managed prompt injected (id, version, canary generation; never text or canary).
    pub prompt: Option<Value>,
    /// AI: calls to data tools the client received (tool names).
    pub data_tool_calls: Vec<String>,
    /// AI: the blocked request's payload, redacted (`[audit] store_blocked_payloads`).
    pub payload: Option<Value>,
    /// AI streams: what the pump found once the stream ended.
    pub stream_end: Option<StreamEnd>,

    /// MCP: the server (as the client named it, or the policy's name once decided).
    pub server: Option<String>,
    /// MCP: the HTTP method.
    pub http_method: Option<String>,
    /// MCP: JSON-RPC methods called (the client's text).
    pub methods: Vec<String>,
    /// MCP: `server/tool` of each forwarded `tools/call` (the client's text).
    pub tools_called: Vec<String>,
    /// MCP: tools withheld from a list: (`server/tool`, rule and detail).
    pub withheld: Vec<(String, String)>,
    /// MCP: a tool-definition event.
    pub tool_event: Option<ToolEvent>,
}

/// How an AI stream ended, and what its pump found beyond the request's facts.
#[derive(Debug, Clone, Default)]
pub struct StreamEnd {
    /// `complete`, `client_gone`, `terminated`, `shutdown` or `error`.
    pub end: &'static str,
    /// Markdown links neutralised.
    pub links: usize,
    /// Tool calls refused in the stream (names, already through `client_text`).
    pub refused: Vec<String>,
}

impl Facts {
    /// Empty facts of an exchange of `shape` that started at `started`.
    pub fn new(shape: Shape, request_id: String, started: Instant) -> Facts {
        Facts {
            shape,
            request_id,
            started,
            key: None,
            session: None,
            status: 200,
            stream: false,
            decisions: Vec::new(),
            redactions: BTreeMap::new(),
            injections: Vec::new(),
            classifier: Scores::default(),
            prompt_fragments: 0,
            cross_tenant: Vec::new(),
            detail: None,
            endpoint: "unknown",
            upstream: None,
            model: None,
            tools_removed: Vec::new(),
            prompt: None,
            data_tool_calls: Vec::new(),
            payload: None,
            stream_end: None,
            server: None,
            http_method: None,
            methods: Vec::new(),
            tools_called: Vec::new(),
            withheld: Vec::new(),
            tool_event: None,
        }
    }

    /// Adds a decision of a fixed rule.
    pub fn decide(&mut self, rule: Rule, action: Verdict) {
        self.decisions.push(Decision::new(rule, action));
    }

    /// Whether a decision of `rule` was made.
    pub fn decided(&self, rule: Rule) -> bool {
        self.decisions.iter().any(|d| d.rule.is(rule))
    }

    /// Counts redactions by the scanner's rule indexes.
    pub fn count_redactions(&mut self, scanner: &Scanner, found: &[u16]) {
        for &r in found {
            let rule = scanner.rule(r);
            match self.redactions.get_mut(rule.id.as_str()) {
                Some(x) => x.count += 1,
                None => {
                    self.redactions.insert(rule.id.clone(), Redacted { count: 1, category: rule.category });
                }
            }
        }
    }

    /// The principal's user, when known and not empty.
    pub fn user(&self) -> Option<&str> {
        self.key.as_deref().map(|k| k.user.as_str()).filter(|s| !s.is_empty())
    }

    /// The audit record of this exchange. Strings the client chose go through
    /// [`client_text`]; the session id is digested by the writer.
    pub fn record(&self, scanner: &Scanner) -> Record {
        let decisions = || self.decisions.iter().map(Decision::to_json).collect::<Vec<_>>();
        match self.shape {
            Shape::AiRequest => {
                let mut removed = (!self.tools_removed.is_empty()).then(|| client_list(scanner, &self.tools_removed));
                let end = self.stream_end.as_ref();
                if let Some(refused) = end.map(|e| &e.refused).filter(|r| !r.is_empty()) {
                    removed.get_or_insert_with(Vec::new).extend(refused.iter().cloned());
                }
                let r = Record::new("request")
                    .with("event", "decision")
                    .with("request_id", self.request_id.as_str())
                    .with("endpoint", self.endpoint)
                    .with("status", self.status)
                    .with("decisions", decisions())
                    .with("stream", self.stream)
                    .with("duration_us", self.started.elapsed().as_micros() as u64);
                principal(r, self.key.as_deref(), self.session.as_deref())
                    .with_opt("upstream", self.upstream.as_deref())
                    .with_opt("model", self.model.as_deref().map(|m| client_text(scanner, m)))
                    .with_opt("detail", self.detail.as_deref())
                    .with_opt("tools_removed", removed)
                    .with_opt("prompt_fragments", (self.prompt_fragments > 0).then_some(self.prompt_fragments))
                    .with_opt("prompt", self.prompt.clone())
                    .with_opt("injections", (!self.injections.is_empty()).then(|| self.injections.clone()))
                    .with_opt("classifier", self.classifier.to_json())
                    .with_opt("cross_tenant", (!self.cross_tenant.is_empty()).then(|| self.cross_tenant.clone()))
                    .with_opt(
                        "data_tool_calls",
                        (!self.data_tool_calls.is_empty()).then(|| self.data_tool_calls.clone()),
                    )
                    .with_opt("redactions", self.redactions_json())
                    .with_opt("stream_end", end.map(|e| e.end))
                    .with_opt("links_neutralized", end.map(|e| e.links).filter(|n| *n > 0))
                    .with_opt("payload", self.payload.clone())
            }
            Shape::McpRequest => {
                let client = |names: &[String]| names.iter().map(|n| client_text(scanner, n)).collect::<Vec<_>>();
                let r = Record::new("mcp")
                    .with("event", "request")
                    .with("request_id", self.request_id.as_str())
                    .with("server", client_text(scanner, self.server.as_deref().unwrap_or("")))
                    .with("http_method", self.http_method.as_deref().unwrap_or(""))
                    .with("status", self.status)
                    .with("stream", self.stream)
                    .with("decisions", decisions())
                    .with("duration_us", self.started.elapsed().as_micros() as u64);
                let r = principal(r, self.key.as_deref(), self.session.as_deref())
                    .with_opt("methods", (!self.methods.is_empty()).then(|| client(&self.methods)))
                    .with_opt("tools_called", (!self.tools_called.is_empty()).then(|| client(&self.tools_called)));
                self.mcp_findings(r)
            }
            Shape::McpStreamEnd => {
                let r = Record::new("mcp")
                    .with("event", "stream_end")
                    .with("request_id", self.request_id.as_str())
                    .with("server", self.server.as_deref().unwrap_or(""))
                    .with("decisions", decisions());
                self.mcp_findings(principal(r, self.key.as_deref(), self.session.as_deref()))
            }
            Shape::McpToolEvent => {
                let (event, tool, detail) = match &self.tool_event {
                    Some(e) => (e.event, e.tool.as_str(), e.detail.as_str()),
                    None => ("tool_event", "", ""),
                };
                let r = Record::new("mcp")
                    .with("event", event)
                    .with("request_id", self.request_id.as_str())
                    .with("tool", tool)
                    .with("detail", detail)
                    .with_opt("trigger", self.trigger());
                principal(r, self.key.as_deref(), None)
            }
        }
    }

    /// The incident trigger an MCP tool-definition event names, if it is one.
    pub fn trigger(&self) -> Option<&'static str> {
        self.tool_event.as_ref().map(|e| e.event).filter(|e| matches!(*e, "tool_definition_changed" | "tool_poisoning"))
    }

    fn redactions_json(&self) -> Option<Value> {
        (!self.redactions.is_empty())
            .then(|| Value::Object(self.redactions.iter().map(|(id, r)| (id.clone(), Value::from(r.count))).collect()))
    }

    /// What inspection of an MCP answer found (injections, withheld tools, redaction counts).
    fn mcp_findings(&self, r: Record) -> Record {
        r.with_opt("injections", (!self.injections.is_empty()).then(|| self.injections.clone()))
            .with_opt("classifier", self.classifier.to_json())
            .with_opt("cross_tenant", (!self.cross_tenant.is_empty()).then(|| self.cross_tenant.clone()))
            .with_opt(
                "withheld",
                (!self.withheld.is_empty()).then(|| {
                    self.withheld.iter().map(|(t, r)| serde_json::json!({"tool": t, "rule": r})).collect::<Vec<_>>()
                }),
            )
            .with_opt("redactions", self.redactions_json())
    }
}

/// The principal's fields of a record.
pub fn principal(r: Record, key: Option<&KeyEntry>, session: Option<&str>) -> Record {
    r.with_opt("key_id", key.map(|k| k.id.as_str()))
        .with_opt("tenant", key.map(|k| k.tenant.as_str()))
        .with_opt("user", key.map(|k| k.user.as_str()))
        .with_opt("role", key.map(|k| k.role.as_str()))
        .with_opt("session", session)
}
