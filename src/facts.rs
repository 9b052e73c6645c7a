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

use crate::audit::{client_list, client_text, Exchange};
use crate::config::KeyEntry;
use crate::inspect::injection::classifier::Scores;
use crate::inspect::rule::Category;
use crate::inspect::Scanner;
pub use crate::rules::Decision;
use crate::rules::{Rule, Verdict};

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
    pub fn record(&self, scanner: &Scanner) -> Exchange {
        let client = |names: &[String]| names.iter().map(|n| client_text(scanner, n)).collect::<Vec<_>>();
        let duration = || Some(self.started.elapsed().as_micros() as u64);
        let (kind, event) = match self.shape {
            Shape::AiRequest => ("request", "decision"),
            Shape::McpRequest => ("mcp", "request"),
            Shape::McpStreamEnd => ("mcp", "stream_end"),
            Shape::McpToolEvent => ("mcp", self.tool_event.as_ref().map_or("tool_event", |e| e.event)),
        };
        let mut r = Exchange::new(kind, event, self.request_id.clone());
        r.principal = self.key.clone();
        if self.shape != Shape::McpToolEvent {
            r.session = self.session.clone();
            r.decisions = Some(self.decisions.clone());
            r.injections = self.injections.clone();
            r.classifier = self.classifier;
            r.cross_tenant = self.cross_tenant.clone();
            r.redactions = self.redactions.iter().map(|(id, x)| (id.clone(), x.count)).collect();
        }
        match self.shape {
            Shape::AiRequest => {
                let end = self.stream_end.as_ref();
                let mut removed = client_list(scanner, &self.tools_removed);
                if let Some(e) = end {
                    removed.extend(e.refused.iter().cloned());
                }
                r.endpoint = Some(self.endpoint);
                r.status = Some(self.status);
                r.stream = Some(self.stream);
                r.duration_us = duration();
                r.upstream = self.upstream.clone();
                r.model = self.model.as_deref().map(|m| client_text(scanner, m));
                r.detail = self.detail.clone();
                r.tools_removed = removed;
                r.prompt_fragments = (self.prompt_fragments > 0).then_some(self.prompt_fragments);
                r.prompt = self.prompt.clone();
                r.data_tool_calls = self.data_tool_calls.clone();
                r.stream_end = end.map(|e| e.end);
                r.links_neutralized = end.map(|e| e.links).filter(|n| *n > 0);
                r.payload = self.payload.clone();
            }
            Shape::McpRequest => {
                r.server = Some(client_text(scanner, self.server.as_deref().unwrap_or("")));
                r.http_method = Some(self.http_method.clone().unwrap_or_default());
                r.status = Some(self.status);
                r.stream = Some(self.stream);
                r.duration_us = duration();
                r.methods = client(&self.methods);
                r.tools_called = client(&self.tools_called);
                r.withheld = self.withheld.clone();
            }
            Shape::McpStreamEnd => {
                r.server = Some(self.server.clone().unwrap_or_default());
                r.withheld = self.withheld.clone();
            }
            Shape::McpToolEvent => {
                let (tool, detail) =
                    self.tool_event.as_ref().map_or(("", ""), |e| (e.tool.as_str(), e.detail.as_str()));
                r.tool = Some(tool.to_owned());
                r.detail = Some(detail.to_owned());
                r.trigger = self.trigger();
            }
        }
        r
    }

    /// The incident trigger an MCP tool-definition event names, if it is one.
    pub fn trigger(&self) -> Option<&'static str> {
        self.tool_event.as_ref().map(|e| e.event).filter(|e| matches!(*e, "tool_definition_changed" | "tool_poisoning"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::Record;
    use crate::inspect::rule::Category;
    use crate::rules::RuleId;
    use serde_json::{json, Map, Value};

    fn scanner() -> Scanner {
        let rules = crate::inspect::catalog::builtin().expect("catalog").into_iter().map(|(r, _)| r).collect();
        Scanner::new(rules, "[REDACTED:<rule-id>]").expect("scanner")
    }

    /// The record as it was built before it was typed (a map, field by field), kept to prove the
    /// typed record writes the same bytes.
    fn legacy(f: &Facts, scanner: &Scanner) -> Map<String, Value> {
        fn principal(r: Record, key: Option<&KeyEntry>, session: Option<&str>) -> Record {
            r.with_opt("key_id", key.map(|k| k.id.as_str()))
                .with_opt("tenant", key.map(|k| k.tenant.as_str()))
                .with_opt("user", key.map(|k| k.user.as_str()))
                .with_opt("role", key.map(|k| k.role.as_str()))
                .with_opt("session", session)
        }
        let decisions = || {
            f.decisions
                .iter()
                .map(|d| json!({"rule": d.rule.as_text().into_owned(), "action": d.action.as_str()}))
                .collect::<Vec<_>>()
        };
        let redactions = || {
            (!f.redactions.is_empty())
                .then(|| Value::Object(f.redactions.iter().map(|(id, r)| (id.clone(), Value::from(r.count))).collect()))
        };
        let nonempty = |v: &Vec<String>| (!v.is_empty()).then(|| v.clone());
        let findings = |r: Record| {
            r.with_opt("injections", nonempty(&f.injections))
                .with_opt("classifier", f.classifier.to_json())
                .with_opt("cross_tenant", nonempty(&f.cross_tenant))
                .with_opt(
                    "withheld",
                    (!f.withheld.is_empty())
                        .then(|| f.withheld.iter().map(|(t, r)| json!({"tool": t, "rule": r})).collect::<Vec<_>>()),
                )
                .with_opt("redactions", redactions())
        };
        let duration = f.started.elapsed().as_micros() as u64;
        let r = match f.shape {
            Shape::AiRequest => {
                let mut removed = (!f.tools_removed.is_empty()).then(|| client_list(scanner, &f.tools_removed));
                let end = f.stream_end.as_ref();
                if let Some(refused) = end.map(|e| &e.refused).filter(|r| !r.is_empty()) {
                    removed.get_or_insert_with(Vec::new).extend(refused.iter().cloned());
                }
                let r = Record::new("request")
                    .with("event", "decision")
                    .with("request_id", f.request_id.as_str())
                    .with("endpoint", f.endpoint)
                    .with("status", f.status)
                    .with("decisions", decisions())
                    .with("stream", f.stream)
                    .with("duration_us", duration);
                principal(r, f.key.as_deref(), f.session.as_deref())
                    .with_opt("upstream", f.upstream.as_deref())
                    .with_opt("model", f.model.as_deref().map(|m| client_text(scanner, m)))
                    .with_opt("detail", f.detail.as_deref())
                    .with_opt("tools_removed", removed)
                    .with_opt("prompt_fragments", (f.prompt_fragments > 0).then_some(f.prompt_fragments))
                    .with_opt("prompt", f.prompt.clone())
                    .with_opt("injections", nonempty(&f.injections))
                    .with_opt("classifier", f.classifier.to_json())
                    .with_opt("cross_tenant", nonempty(&f.cross_tenant))
                    .with_opt("data_tool_calls", nonempty(&f.data_tool_calls))
                    .with_opt("redactions", redactions())
                    .with_opt("stream_end", end.map(|e| e.end))
                    .with_opt("links_neutralized", end.map(|e| e.links).filter(|n| *n > 0))
                    .with_opt("payload", f.payload.clone())
            }
            Shape::McpRequest => {
                let client = |names: &[String]| names.iter().map(|n| client_text(scanner, n)).collect::<Vec<_>>();
                let r = Record::new("mcp")
                    .with("event", "request")
                    .with("request_id", f.request_id.as_str())
                    .with("server", client_text(scanner, f.server.as_deref().unwrap_or("")))
                    .with("http_method", f.http_method.as_deref().unwrap_or(""))
                    .with("status", f.status)
                    .with("stream", f.stream)
                    .with("decisions", decisions())
                    .with("duration_us", duration);
                let r = principal(r, f.key.as_deref(), f.session.as_deref())
                    .with_opt("methods", (!f.methods.is_empty()).then(|| client(&f.methods)))
                    .with_opt("tools_called", (!f.tools_called.is_empty()).then(|| client(&f.tools_called)));
                findings(r)
            }
            Shape::McpStreamEnd => {
                let r = Record::new("mcp")
                    .with("event", "stream_end")
                    .with("request_id", f.request_id.as_str())
                    .with("server", f.server.as_deref().unwrap_or(""))
                    .with("decisions", decisions());
                findings(principal(r, f.key.as_deref(), f.session.as_deref()))
            }
            Shape::McpToolEvent => {
                let (event, tool, detail) = match &f.tool_event {
                    Some(e) => (e.event, e.tool.as_str(), e.detail.as_str()),
                    None => ("tool_event", "", ""),
                };
                let r = Record::new("mcp")
                    .with("event", event)
                    .with("request_id", f.request_id.as_str())
                    .with("tool", tool)
                    .with("detail", detail)
                    .with_opt("trigger", f.trigger());
                principal(r, f.key.as_deref(), None)
            }
        };
        r.fields().clone()
    }

    /// The typed record's bytes, with the legacy record's `duration_us` (the two read the clock
    /// at different moments).
    fn typed(f: &Facts, scanner: &Scanner, legacy: &Map<String, Value>) -> String {
        let mut r = f.record(scanner);
        if r.duration_us.is_some() {
            r.duration_us = legacy["duration_us"].as_u64();
        }
        serde_json::to_string(&r).expect("serialises")
    }

    fn bare(shape: Shape) -> Facts {
        Facts::new(shape, "req-1".into(), Instant::now())
    }

    fn full(shape: Shape) -> Facts {
        let mut f = bare(shape);
        f.key = Some(Arc::new(KeyEntry {
            id: "k-1".into(),
            tenant: "acme".into(),
            user: "ann".into(),
            role: "engineer".into(),
            expires: None,
            prompt: None,
        }));
        f.session = Some("sess-1".into());
        f.status = 403;
        f.stream = true;
        f.decide(Rule::InjectionClassifierUserInput, Verdict::Block);
        f.decisions.push(Decision { rule: RuleId::ServerRequestRefused("roots/list".into()), action: Verdict::Block });
        f.redactions.insert("b_rule".into(), Redacted { count: 2, category: Category::Credential });
        f.redactions.insert("a_rule".into(), Redacted { count: 1, category: Category::Canary });
        f.injections = vec!["inj.ignore_previous".into()];
        f.classifier.observe(crate::protocol::request::TextOrigin::UserInput, 0.98765);
        f.classifier.observe(crate::protocol::request::TextOrigin::ToolResult, 0.0004);
        f.prompt_fragments = 3;
        f.cross_tenant = vec!["beta".into()];
        f.detail = Some("refused: \"why\"".into());
        f.endpoint = "chat";
        f.upstream = Some("oai".into());
        f.model = Some("gpt-4o AKIAZ7QH3K2M9XW4LR5T\u{1b}".into());
        f.tools_removed = (0..40).map(|i| format!("tool{i}")).collect();
        f.prompt = Some(json!({"id": "p", "version": 2, "canary_generation": 1}));
        f.data_tool_calls = vec!["lookup".into()];
        f.payload = Some(json!({"messages": [{"role": "user", "content": "[REDACTED:x]"}]}));
        f.stream_end = Some(StreamEnd { end: "terminated", links: 2, refused: vec!["shell".into()] });
        f.server = Some("docs\u{7}".into());
        f.http_method = Some("POST".into());
        f.methods = vec!["tools/call".into(), "tools/list".into()];
        f.tools_called = vec!["docs/echo".into()];
        f.withheld = vec![("docs/x".into(), "mcp.tool_denied".into())];
        f.tool_event = Some(ToolEvent { event: "tool_poisoning", tool: "docs/y".into(), detail: "changed".into() });
        f
    }

    #[test]
    fn the_typed_record_writes_the_bytes_the_map_record_did() {
        let scanner = scanner();
        let mut cases = Vec::new();
        for shape in [Shape::AiRequest, Shape::McpRequest, Shape::McpStreamEnd, Shape::McpToolEvent] {
            cases.push(bare(shape));
            cases.push(full(shape));
            let mut f = full(shape);
            f.classifier = Scores::default();
            f.stream_end = Some(StreamEnd { end: "complete", links: 0, refused: Vec::new() });
            f.tools_removed.clear();
            f.tool_event = Some(ToolEvent { event: "tool_first_seen", tool: String::new(), detail: String::new() });
            f.key = Some(Arc::new(KeyEntry {
                id: "k".into(),
                tenant: String::new(),
                user: String::new(),
                role: "r".into(),
                expires: None,
                prompt: None,
            }));
            cases.push(f);
        }
        for f in &cases {
            let old = legacy(f, &scanner);
            let new = typed(f, &scanner, &old);
            assert_eq!(new, serde_json::to_string(&old).expect("serialises"), "{:?}", f.shape);
        }
        // The cases exercise what they claim to.
        let ai = legacy(&cases[1], &scanner);
        assert_eq!(ai["tools_removed"].as_array().map(Vec::len), Some(MAX_LIST_PLUS_REFUSED));
        assert!(ai["model"].as_str().is_some_and(|m| m.contains("[REDACTED:")));
    }

    /// 32 names, the `… (+8 more)` entry, and the one refused in the stream.
    const MAX_LIST_PLUS_REFUSED: usize = crate::audit::MAX_CLIENT_LIST + 2;
}
