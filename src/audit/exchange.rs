//! The audit record of one exchange (an AI request, an MCP request, what an MCP stream found, an
//! MCP tool-definition event), typed: `facts::Facts::record` fills it, and the writer serialises it
//! straight into the trail, chain fields included, with no intermediate map.
//!
//! The trail's canonical form (the bytes the MAC covers) is a JSON object with its keys sorted, as a
//! `serde_json::Map` writes them. [`Exchange`]'s `Serialize` writes its fields in that order by
//! hand; `tests::fields_are_written_in_key_order` fails if a field is ever added out of order, and
//! `facts::tests` compares the bytes with the map the record used to be built as.

use std::sync::Arc;

use serde::ser::{Serialize, SerializeMap, Serializer};
use serde_json::Value;

use crate::config::KeyEntry;
use crate::inspect::injection::classifier::Scores;
use crate::rules::Decision;

/// An exchange's audit record. Empty lists and `None` are left out of the record; see each field.
#[derive(Debug, Clone, Default)]
pub struct Exchange {
    /// `request` (AI) or `mcp`.
    pub kind: &'static str,
    /// `decision`, `request`, `stream_end`, or a tool-definition event.
    pub event: &'static str,
    /// The gateway's request id.
    pub request_id: String,
    /// The principal: `key_id`, `tenant`, `user` and `role` (all four, when known).
    pub principal: Option<Arc<KeyEntry>>,
    /// The client's session id: the writer stores its digest (`audit::session_digest`), never it.
    pub session: Option<String>,
    /// HTTP status.
    pub status: Option<u16>,
    /// Whether the answer was a stream.
    pub stream: Option<bool>,
    /// Decisions (written even when empty; left out when `None`).
    pub decisions: Option<Vec<Decision>>,
    /// Time from arrival to the end of the answer.
    pub duration_us: Option<u64>,
    /// AI: the endpoint.
    pub endpoint: Option<&'static str>,
    /// AI: the upstream.
    pub upstream: Option<String>,
    /// AI: the model asked for (through `client_text`).
    pub model: Option<String>,
    /// Why the answer was refused or broke off; a tool event's detail.
    pub detail: Option<String>,
    /// AI: tools removed or refused.
    pub tools_removed: Vec<String>,
    /// AI: system-prompt fragments found in the answer.
    pub prompt_fragments: Option<u64>,
    /// AI: the managed prompt injected (ids, never text).
    pub prompt: Option<Value>,
    /// Injection signature ids.
    pub injections: Vec<String>,
    /// The classifier's highest score per source (three decimals).
    pub classifier: Scores,
    /// Other tenants whose identifiers reached the client.
    pub cross_tenant: Vec<String>,
    /// AI: calls to data tools the client received.
    pub data_tool_calls: Vec<String>,
    /// Redactions per scanner rule id, sorted by id.
    pub redactions: Vec<(String, u64)>,
    /// AI streams: how the stream ended.
    pub stream_end: Option<&'static str>,
    /// AI streams: Markdown links neutralised.
    pub links_neutralized: Option<usize>,
    /// AI: the blocked request's payload, redacted.
    pub payload: Option<Value>,
    /// MCP: the server.
    pub server: Option<String>,
    /// MCP: the HTTP method.
    pub http_method: Option<String>,
    /// MCP: JSON-RPC methods called.
    pub methods: Vec<String>,
    /// MCP: `server/tool` of each forwarded `tools/call`.
    pub tools_called: Vec<String>,
    /// MCP: tools withheld from a list: (`server/tool`, rule).
    pub withheld: Vec<(String, String)>,
    /// MCP tool event: `server/tool`.
    pub tool: Option<String>,
    /// MCP tool event: the incident trigger it names.
    pub trigger: Option<&'static str>,
    /// The peer's address.
    pub client_addr: Option<String>,
    /// The client's address as a trusted proxy forwarded it.
    pub forwarded_for: Option<String>,
    /// The client's user agent (through `client_text`).
    pub user_agent: Option<String>,
    /// The client certificate's identity (through `client_text`).
    pub tls_identity: Option<String>,
    /// Set by the writer: `seq`, `time`, `prev`, `kid`.
    pub(super) chain: Option<ChainFields>,
}

/// The fields the writer adds to every record.
#[derive(Debug, Clone)]
pub(super) struct ChainFields {
    pub seq: u64,
    pub time: String,
    pub prev: String,
    pub kid: String,
}

impl Exchange {
    /// An empty record of `kind` and `event`.
    pub fn new(kind: &'static str, event: &'static str, request_id: String) -> Exchange {
        Exchange { kind, event, request_id, ..Exchange::default() }
    }

    /// The principal's user, when known.
    pub fn user(&self) -> Option<&str> {
        self.principal.as_deref().map(|k| k.user.as_str())
    }
}

/// The classifier scores as the trail spells them: `{"tool_result": 0.012, "user_input": 0.973}`,
/// rounded to three decimals (a non-finite score is `null`, as `serde_json::json!` writes it).
struct ScoresOut(Scores);

impl Serialize for ScoresOut {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let round = |x: f32| {
            let r = (f64::from(x) * 1000.0).round() / 1000.0;
            r.is_finite().then_some(r)
        };
        let mut m = s.serialize_map(None)?;
        if let Some(x) = self.0.tool_result {
            m.serialize_entry("tool_result", &round(x))?;
        }
        if let Some(x) = self.0.user_input {
            m.serialize_entry("user_input", &round(x))?;
        }
        m.end()
    }
}

/// `{"a": 1, "b": 2}` from sorted pairs.
struct Counts<'a>(&'a [(String, u64)]);

impl Serialize for Counts<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_map(self.0.iter().map(|(k, v)| (k, v)))
    }
}

/// `[{"rule": …, "tool": …}, …]`.
struct Withheld<'a>(&'a [(String, String)]);

impl Serialize for Withheld<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        struct One<'a>(&'a str, &'a str);
        impl Serialize for One<'_> {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                let mut m = s.serialize_map(Some(2))?;
                m.serialize_entry("rule", self.1)?;
                m.serialize_entry("tool", self.0)?;
                m.end()
            }
        }
        s.collect_seq(self.0.iter().map(|(t, r)| One(t, r)))
    }
}

impl Serialize for Exchange {
    /// Keys in sorted order: the trail's canonical form.
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        fn opt<M: SerializeMap, T: Serialize + ?Sized>(m: &mut M, k: &str, v: Option<&T>) -> Result<(), M::Error> {
            match v {
                Some(v) => m.serialize_entry(k, v),
                None => Ok(()),
            }
        }
        fn list<M: SerializeMap, T: Serialize>(m: &mut M, k: &str, v: &[T]) -> Result<(), M::Error> {
            if v.is_empty() {
                return Ok(());
            }
            m.serialize_entry(k, v)
        }
        let key = self.principal.as_deref();
        let chain = self.chain.as_ref();
        let scores = self.classifier;
        let mut m = s.serialize_map(None)?;
        if scores.tool_result.is_some() || scores.user_input.is_some() {
            m.serialize_entry("classifier", &ScoresOut(scores))?;
        }
        opt(&mut m, "client_addr", self.client_addr.as_deref())?;
        list(&mut m, "cross_tenant", &self.cross_tenant)?;
        list(&mut m, "data_tool_calls", &self.data_tool_calls)?;
        opt(&mut m, "decisions", self.decisions.as_deref())?;
        opt(&mut m, "detail", self.detail.as_deref())?;
        opt(&mut m, "duration_us", self.duration_us.as_ref())?;
        opt(&mut m, "endpoint", self.endpoint)?;
        m.serialize_entry("event", self.event)?;
        opt(&mut m, "forwarded_for", self.forwarded_for.as_deref())?;
        opt(&mut m, "http_method", self.http_method.as_deref())?;
        list(&mut m, "injections", &self.injections)?;
        opt(&mut m, "key_id", key.map(|k| k.id.as_str()))?;
        opt(&mut m, "kid", chain.map(|c| c.kid.as_str()))?;
        m.serialize_entry("kind", self.kind)?;
        opt(&mut m, "links_neutralized", self.links_neutralized.as_ref())?;
        list(&mut m, "methods", &self.methods)?;
        opt(&mut m, "model", self.model.as_deref())?;
        opt(&mut m, "payload", self.payload.as_ref())?;
        opt(&mut m, "prev", chain.map(|c| c.prev.as_str()))?;
        opt(&mut m, "prompt", self.prompt.as_ref())?;
        opt(&mut m, "prompt_fragments", self.prompt_fragments.as_ref())?;
        if !self.redactions.is_empty() {
            m.serialize_entry("redactions", &Counts(&self.redactions))?;
        }
        m.serialize_entry("request_id", &self.request_id)?;
        opt(&mut m, "role", key.map(|k| k.role.as_str()))?;
        opt(&mut m, "seq", chain.map(|c| &c.seq))?;
        opt(&mut m, "server", self.server.as_deref())?;
        opt(&mut m, "session", self.session.as_deref())?;
        opt(&mut m, "status", self.status.as_ref())?;
        opt(&mut m, "stream", self.stream.as_ref())?;
        opt(&mut m, "stream_end", self.stream_end)?;
        opt(&mut m, "tenant", key.map(|k| k.tenant.as_str()))?;
        opt(&mut m, "time", chain.map(|c| c.time.as_str()))?;
        opt(&mut m, "tls_identity", self.tls_identity.as_deref())?;
        opt(&mut m, "tool", self.tool.as_deref())?;
        list(&mut m, "tools_called", &self.tools_called)?;
        list(&mut m, "tools_removed", &self.tools_removed)?;
        opt(&mut m, "trigger", self.trigger)?;
        opt(&mut m, "upstream", self.upstream.as_deref())?;
        opt(&mut m, "user", key.map(|k| k.user.as_str()))?;
        opt(&mut m, "user_agent", self.user_agent.as_deref())?;
        if !self.withheld.is_empty() {
            m.serialize_entry("withheld", &Withheld(&self.withheld))?;
        }
        m.end()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::{Rule, RuleId, Verdict};

    /// Every field set: serialising the record directly and through a `serde_json::Value` (whose
    /// map sorts its keys) must give the same bytes, so the fields are written in key order.
    #[test]
    fn fields_are_written_in_key_order() {
        let key = KeyEntry {
            id: "k1".into(),
            tenant: "acme".into(),
            user: "ann".into(),
            role: "engineer".into(),
            expires: None,
            prompt: None,
        };
        let s = |x: &str| x.to_owned();
        let full = Exchange {
            kind: "request",
            event: "decision",
            request_id: s("r1"),
            principal: Some(Arc::new(key)),
            session: Some(s("sess")),
            status: Some(200),
            stream: Some(true),
            decisions: Some(vec![
                Decision::new(Rule::InjectionClassifierToolResult, Verdict::Block),
                Decision {
                    rule: RuleId::ServerRequestRefused("sampling/createMessage".into()),
                    action: Verdict::Block,
                },
            ]),
            duration_us: Some(12),
            endpoint: Some("chat"),
            upstream: Some(s("oai")),
            model: Some(s("gpt")),
            detail: Some(s("d")),
            tools_removed: vec![s("t")],
            prompt_fragments: Some(1),
            prompt: Some(serde_json::json!({"z": 1, "a": 2})),
            injections: vec![s("i")],
            classifier: Scores { user_input: Some(0.97349), tool_result: Some(0.0121) },
            cross_tenant: vec![s("beta")],
            data_tool_calls: vec![s("q")],
            redactions: vec![(s("a_rule"), 2), (s("b_rule"), 1)],
            stream_end: Some("complete"),
            links_neutralized: Some(3),
            payload: Some(serde_json::json!({"messages": []})),
            server: Some(s("docs")),
            http_method: Some(s("POST")),
            methods: vec![s("tools/call")],
            tools_called: vec![s("docs/echo")],
            withheld: vec![(s("docs/x"), s("mcp.tool_denied"))],
            tool: Some(s("docs/y")),
            trigger: Some("tool_poisoning"),
            client_addr: Some(s("127.0.0.1:1")),
            forwarded_for: Some(s("10.0.0.1")),
            user_agent: Some(s("ua")),
            tls_identity: Some(s("svc")),
            chain: Some(ChainFields { seq: 7, time: s("2026-12-03T00:00:00.000Z"), prev: s("00"), kid: s("kid1") }),
        };
        let direct = serde_json::to_string(&full).expect("serialises");
        let value = serde_json::to_value(&full).expect("to value");
        assert_eq!(direct, value.to_string());
        // Every field made it (none is silently skipped): 42 keys.
        assert_eq!(value.as_object().map(|m| m.len()), Some(42), "{direct}");
        assert_eq!(value["classifier"], serde_json::json!({"tool_result": 0.012, "user_input": 0.973}));
        assert_eq!(value["decisions"][1]["rule"], "mcp.server_request_refused:sampling/createMessage");
        assert_eq!(value["withheld"][0], serde_json::json!({"rule": "mcp.tool_denied", "tool": "docs/x"}));
    }

    #[test]
    fn empty_lists_and_absent_fields_are_left_out() {
        let r = Exchange::new("mcp", "tool_poisoning", "r2".into());
        assert_eq!(
            serde_json::to_string(&r).expect("serialises"),
            r#"{"event":"tool_poisoning","kind":"mcp","request_id":"r2"}"#
        );
    }
}
