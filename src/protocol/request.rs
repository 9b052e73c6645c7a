//! Reading and rewriting AI request bodies: model, stream flag, tools, the last user message.
//!
//! A body is checked as JSON once ([`super::json::validate`]: the same parser and errors as a
//! `serde_json::Value`, nothing built) and split into its top-level members, each a span of the
//! original bytes. Only the members the gateway reads or rewrites are parsed: the model, the stream
//! flag, the messages (or Responses `input`), the system text and the tool choice. Everything else —
//! tool definitions with their schemas, sampling settings, metadata, response formats — stays a span:
//! tool names are read from the tool spans in place, and a stripped tool list is rebuilt from the
//! spans of the tools kept. The pipeline decides on the parsed members and serialises the body only
//! if it changed: then the members it did not change are copied verbatim and in their order. A key
//! given twice counts once, the last one, as a `Value` keeps it.

use std::ops::Range;

use bytes::Bytes;
use serde_json::Value;

use super::json;
use super::Endpoint;

/// The text of a message `content` (or a `system` / `instructions` value): a string, or the `text`
/// of each part of an array, one per line.
fn content_text(content: &Value) -> String {
    match content {
        Value::String(s) => s.clone(),
        Value::Array(parts) => {
            parts.iter().filter_map(|p| p.get("text").and_then(Value::as_str)).collect::<Vec<_>>().join("\n")
        }
        _ => String::new(),
    }
}

/// The members parsed into a `Value` when the body is read (the gateway reads or rewrites them).
const PARSED: [&str; 7] = ["model", "stream", "messages", "input", "system", "instructions", "tool_choice"];

/// A top-level member's name.
#[derive(Debug)]
enum Key {
    /// A JSON string of the original bytes, quotes included.
    Raw(Range<usize>),
    /// Added by the gateway.
    Name(&'static str),
}

/// A top-level member's value.
#[derive(Debug)]
enum Slot {
    /// The original bytes.
    Raw(Range<usize>),
    /// Parsed; `dirty` when changed since.
    Json { value: Value, dirty: bool },
    /// Rebuilt bytes (a tool list with some tools removed).
    Bytes(Vec<u8>),
}

#[derive(Debug)]
struct Member {
    key: Key,
    /// The original value's span (empty for a member the gateway added).
    span: Range<usize>,
    value: Slot,
}

/// A parsed AI request body.
#[derive(Debug)]
pub struct Payload {
    /// The bytes as received.
    raw: Bytes,
    /// The top-level members in their order (no key twice: [`json::validate`] refuses that).
    members: Vec<Member>,
    /// Whether the gateway changed it (the original bytes are forwarded otherwise).
    pub changed: bool,
}

/// Why a body was refused.
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    /// Not JSON.
    #[error("{0}")]
    Json(String),
    /// Not an object.
    #[error("{0}")]
    Shape(String),
    /// A field the gateway relies on is missing or of the wrong type.
    #[error("{}", .0.message)]
    Field(super::schema::FieldError),
}

/// A member's value as the schema check sees it.
#[derive(Debug, Clone, Copy)]
pub(super) enum Field<'a> {
    /// Parsed.
    Json(&'a Value),
    /// Not parsed: its JSON text.
    Raw(&'a [u8]),
}

impl Payload {
    /// Parses and checks the fields the gateway relies on ([`super::schema`]).
    pub fn parse(endpoint: Endpoint, bytes: &Bytes) -> Result<Payload, BodyError> {
        let body = Payload::read(bytes)?;
        super::schema::check(endpoint, &body).map_err(BodyError::Field)?;
        Ok(body)
    }

    /// Reads a JSON object into its members, without the field checks.
    pub(super) fn read(bytes: &Bytes) -> Result<Payload, BodyError> {
        json::validate(bytes).map_err(|e| BodyError::Json(e.to_string()))?;
        let spans = json::members(bytes, 0..bytes.len())
            .ok_or_else(|| BodyError::Shape("the body must be a JSON object".into()))?;
        let mut members = Vec::with_capacity(spans.len());
        for s in spans {
            let key = &bytes[s.key.clone()];
            let value = if PARSED.iter().any(|n| json::key_is(key, n)) {
                let value =
                    serde_json::from_slice(&bytes[s.value.clone()]).map_err(|e| BodyError::Json(e.to_string()))?;
                Slot::Json { value, dirty: false }
            } else {
                Slot::Raw(s.value.clone())
            };
            members.push(Member { key: Key::Raw(s.key), span: s.value, value });
        }
        Ok(Payload { raw: bytes.clone(), members, changed: false })
    }

    fn key_is(&self, m: &Member, name: &str) -> bool {
        match &m.key {
            Key::Raw(r) => json::key_is(&self.raw[r.clone()], name),
            Key::Name(n) => *n == name,
        }
    }

    /// The index of member `name` (the last, should a key ever come twice).
    fn index(&self, name: &str) -> Option<usize> {
        self.members.iter().rposition(|m| self.key_is(m, name))
    }

    /// Member `name` as the schema check sees it.
    pub(super) fn field(&self, name: &str) -> Option<Field<'_>> {
        let m = &self.members[self.index(name)?];
        Some(match &m.value {
            Slot::Json { value, .. } => Field::Json(value),
            Slot::Raw(r) => Field::Raw(&self.raw[r.clone()]),
            Slot::Bytes(b) => Field::Raw(b),
        })
    }

    /// Member `name`, parsed.
    fn json(&self, name: &str) -> Option<&Value> {
        match &self.members[self.index(name)?].value {
            Slot::Json { value, .. } => Some(value),
            _ => None,
        }
    }

    /// Member `name`, parsed, to change in place; `dirty` is set when `f` says it changed it.
    fn json_mut<R>(&mut self, name: &str, f: impl FnOnce(&mut Value) -> (R, bool)) -> Option<R> {
        let i = self.index(name)?;
        match &mut self.members[i].value {
            Slot::Json { value, dirty } => {
                let (r, changed) = f(value);
                *dirty |= changed;
                Some(r)
            }
            _ => None,
        }
    }

    /// Sets member `name` (in place of the last one, or added at the end).
    fn set(&mut self, name: &'static str, value: Value) {
        let value = Slot::Json { value, dirty: true };
        match self.index(name) {
            Some(i) => self.members[i].value = value,
            None => self.members.push(Member { key: Key::Name(name), span: 0..0, value }),
        }
    }

    /// Removes member `name` (every copy of it).
    fn remove(&mut self, name: &str) {
        let raw = &self.raw;
        self.members.retain(|m| match &m.key {
            Key::Raw(r) => !json::key_is(&raw[r.clone()], name),
            Key::Name(n) => *n != name,
        });
    }

    /// The requested model.
    pub fn model(&self) -> Option<&str> {
        self.json("model").and_then(Value::as_str)
    }

    /// Replaces the model.
    pub fn set_model(&mut self, model: &str) {
        self.set("model", Value::from(model));
        self.changed = true;
    }

    /// Whether the client asked for a stream.
    pub fn stream(&self) -> bool {
        self.json("stream").and_then(Value::as_bool).unwrap_or(false)
    }

    /// The text of the last user message (for scripted replies and, later, inspection).
    pub fn last_user_text(&self, endpoint: Endpoint) -> String {
        match endpoint {
            Endpoint::ChatCompletions | Endpoint::Messages => self
                .json("messages")
                .and_then(Value::as_array)
                .and_then(|m| m.iter().rev().find(|m| m.get("role").and_then(Value::as_str) == Some("user")))
                .and_then(|m| m.get("content"))
                .map(content_text)
                .unwrap_or_default(),
            Endpoint::Responses => match self.json("input") {
                Some(Value::String(s)) => s.clone(),
                Some(Value::Array(items)) => items
                    .iter()
                    .rev()
                    .find(|m| m.get("role").and_then(Value::as_str) == Some("user"))
                    .and_then(|m| m.get("content"))
                    .map(content_text)
                    .unwrap_or_default(),
                _ => String::new(),
            },
            Endpoint::Embeddings | Endpoint::Models => String::new(),
        }
    }

    /// Puts a managed system prompt first: OpenAI chat gets a leading `system` message, Anthropic
    /// messages a leading `system` text (a string `system` keeps its text after a blank line; a
    /// block array gets a leading text block), the Responses API a leading `instructions` text. The
    /// client's own system text stays, after the managed one. Other endpoints are left alone.
    pub fn prepend_system(&mut self, endpoint: Endpoint, text: &str) {
        let joined = |own: &str| -> Value { Value::from(format!("{text}\n\n{own}")) };
        match endpoint {
            Endpoint::ChatCompletions => {
                let msg = serde_json::json!({"role": "system", "content": text});
                let inserted = self.json_mut("messages", |m| match m {
                    Value::Array(m) => {
                        m.insert(0, msg.clone());
                        (true, true)
                    }
                    _ => (false, false),
                });
                if inserted != Some(true) {
                    self.set("messages", Value::Array(vec![msg]));
                }
            }
            Endpoint::Messages => {
                let next = match self.json("system") {
                    Some(Value::String(own)) if !own.is_empty() => joined(own),
                    Some(Value::Array(blocks)) if !blocks.is_empty() => {
                        self.json_mut("system", |s| {
                            if let Value::Array(blocks) = s {
                                blocks.insert(0, serde_json::json!({"type": "text", "text": text}));
                            }
                            ((), true)
                        });
                        self.changed = true;
                        return;
                    }
                    _ => Value::from(text),
                };
                self.set("system", next);
            }
            Endpoint::Responses => {
                let next = match self.json("instructions") {
                    Some(Value::String(own)) if !own.is_empty() => joined(own),
                    _ => Value::from(text),
                };
                self.set("instructions", next);
            }
            Endpoint::Embeddings | Endpoint::Models => return,
        }
        self.changed = true;
    }

    /// The system text the model is given (for scripted replies that play a leaking model).
    pub fn system_text(&self, endpoint: Endpoint) -> String {
        match endpoint {
            Endpoint::ChatCompletions => self
                .json("messages")
                .and_then(Value::as_array)
                .map(|m| {
                    m.iter()
                        .filter(|m| matches!(m.get("role").and_then(Value::as_str), Some("system" | "developer")))
                        .filter_map(|m| m.get("content"))
                        .map(content_text)
                        .collect::<Vec<_>>()
                        .join("\n")
                })
                .unwrap_or_default(),
            Endpoint::Messages => self.json("system").map(content_text).unwrap_or_default(),
            Endpoint::Responses => self.json("instructions").map(content_text).unwrap_or_default(),
            Endpoint::Embeddings | Endpoint::Models => String::new(),
        }
    }

    /// How many embedding inputs were given.
    pub fn embedding_inputs(&self) -> usize {
        match self.json("input") {
            Some(Value::Array(a)) => a.len(),
            Some(_) => 1,
            None => 0,
        }
    }

    /// Removes every tool `keep` rejects; returns the removed names. Tool choice and related keys
    /// are cleaned up so the provider does not reject the rewritten request. Tool definitions are
    /// read in place (their names only); the tools kept are copied byte for byte.
    pub fn strip_tools(&mut self, endpoint: Endpoint, keep: impl Fn(&str) -> bool) -> Vec<String> {
        let mut removed = Vec::new();
        for key in ["tools", "functions"] {
            let Some(i) = self.index(key) else { continue };
            let m = &self.members[i];
            let text: &[u8] = match &m.value {
                Slot::Raw(r) => &self.raw[r.clone()],
                Slot::Bytes(b) => b,
                Slot::Json { .. } => continue,
            };
            let Some(tools) = json::elements(text, 0..text.len()) else { continue };
            let before = removed.len();
            let kept: Vec<&Range<usize>> = tools
                .iter()
                .filter(|t| match tool_name_in(endpoint, text, (*t).clone()) {
                    Some(name) if keep(&name) => true,
                    Some(name) => {
                        removed.push(name.into_owned());
                        false
                    }
                    // A tool without a name cannot be checked: drop it (fail closed).
                    None => {
                        removed.push("<unnamed>".to_owned());
                        false
                    }
                })
                .collect();
            if kept.is_empty() {
                self.remove(key);
                self.remove("tool_choice");
                self.remove("function_call");
                self.remove("parallel_tool_calls");
            } else if removed.len() > before {
                let mut out = Vec::with_capacity(text.len());
                out.push(b'[');
                for (n, t) in kept.into_iter().enumerate() {
                    if n > 0 {
                        out.push(b',');
                    }
                    out.extend_from_slice(&text[t.clone()]);
                }
                out.push(b']');
                self.members[i].value = Slot::Bytes(out);
            }
        }
        if !removed.is_empty() {
            self.changed = true;
            // A forced choice of a removed tool must go too.
            let forced = self.json("tool_choice").and_then(|c| {
                c.get("name").or_else(|| c.get("function").and_then(|f| f.get("name"))).and_then(Value::as_str)
            });
            if forced.is_some_and(|n| removed.iter().any(|r| r == n)) {
                self.remove("tool_choice");
            }
        }
        removed
    }

    /// Serialises the (changed) body: the members the gateway did not change are copied verbatim,
    /// in their order; of a key given twice only the last copy is kept.
    pub fn to_bytes(&self) -> Bytes {
        let mut out = Vec::with_capacity(self.raw.len() + 256);
        out.push(b'{');
        let mut first = true;
        for (i, m) in self.members.iter().enumerate() {
            let shadowed = self.members[i + 1..].iter().any(|later| self.same_key(m, later));
            if shadowed {
                continue;
            }
            if !first {
                out.push(b',');
            }
            first = false;
            match &m.key {
                Key::Raw(r) => out.extend_from_slice(&self.raw[r.clone()]),
                Key::Name(n) => {
                    out.push(b'"');
                    out.extend_from_slice(n.as_bytes());
                    out.push(b'"');
                }
            }
            out.push(b':');
            match &m.value {
                Slot::Raw(r) => out.extend_from_slice(&self.raw[r.clone()]),
                Slot::Json { dirty: false, .. } => out.extend_from_slice(&self.raw[m.span.clone()]),
                Slot::Json { value, dirty: true } => {
                    // Writing into a Vec cannot fail.
                    let _ = serde_json::to_writer(&mut out, value);
                }
                Slot::Bytes(b) => out.extend_from_slice(b),
            }
        }
        out.push(b'}');
        Bytes::from(out)
    }

    fn same_key(&self, a: &Member, b: &Member) -> bool {
        match (&a.key, &b.key) {
            (_, Key::Name(n)) => self.key_is(a, n),
            (Key::Name(n), _) => self.key_is(b, n),
            (Key::Raw(x), Key::Raw(y)) => {
                let (x, y) = (&self.raw[x.clone()], &self.raw[y.clone()]);
                x == y || json::string(x).is_some_and(|x| json::key_is(y, &x))
            }
        }
    }
}

/// The name of a tool definition in a request.
pub fn tool_name(endpoint: Endpoint, tool: &Value) -> Option<&str> {
    match endpoint {
        Endpoint::ChatCompletions => {
            tool.get("function").and_then(|f| f.get("name")).or_else(|| tool.get("name")).and_then(Value::as_str)
        }
        // Responses API built-in tools (web_search, file_search, …) have a type but no name.
        Endpoint::Responses => tool.get("name").or_else(|| tool.get("type")).and_then(Value::as_str),
        _ => tool.get("name").and_then(Value::as_str),
    }
}

/// [`tool_name`] of the tool definition spanning `r` in the JSON text `b`, read in place.
fn tool_name_in(endpoint: Endpoint, b: &[u8], r: Range<usize>) -> Option<std::borrow::Cow<'_, str>> {
    let member = |r: Range<usize>, name: &str| json::get(b, r, name);
    let named = match endpoint {
        Endpoint::ChatCompletions => {
            member(r.clone(), "function").and_then(|f| member(f, "name")).or_else(|| member(r, "name"))
        }
        Endpoint::Responses => member(r.clone(), "name").or_else(|| member(r, "type")),
        _ => member(r, "name"),
    };
    json::as_str(b, named?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(endpoint: Endpoint, raw: &'static [u8]) -> Result<Payload, BodyError> {
        Payload::parse(endpoint, &Bytes::from_static(raw))
    }

    fn json_of(b: &Payload) -> Value {
        serde_json::from_slice(&b.to_bytes()).unwrap()
    }

    #[test]
    fn strips_tools_and_forced_choice() {
        let raw = br#"{"model":"m","messages":[{"role":"user","content":"hi"}],"tools":[{"type":"function","function":{"name":"a"}},{"type":"function","function":{"name":"b"}}],"tool_choice":{"type":"function","function":{"name":"b"}}}"#;
        let mut b = parse(Endpoint::ChatCompletions, raw).unwrap();
        assert_eq!(b.strip_tools(Endpoint::ChatCompletions, |n| n == "a"), vec!["b"]);
        let v = json_of(&b);
        assert!(v.get("tool_choice").is_none());
        assert_eq!(v["tools"].as_array().unwrap().len(), 1);
        let removed = b.strip_tools(Endpoint::ChatCompletions, |_| false);
        assert_eq!(removed, vec!["a"]);
        assert!(json_of(&b).get("tools").is_none());
    }

    #[test]
    fn rejects_bad_shapes() {
        assert!(parse(Endpoint::ChatCompletions, b"{").is_err());
        assert!(parse(Endpoint::ChatCompletions, b"[]").is_err());
        assert!(parse(Endpoint::ChatCompletions, br#"{"model":1}"#).is_err());
        assert!(parse(Endpoint::Messages, br#"{"model":"m","stream":"yes"}"#).is_err());
    }

    #[test]
    fn errors_are_those_of_a_value_parse() {
        for bad in [&b"{"[..], b"{\"model\":\"m\",}", b"{\"a\":1e999}", b"{\"a\":\"\\ud800\"}", b"{} x"] {
            let want = serde_json::from_slice::<Value>(bad).unwrap_err().to_string();
            match Payload::parse(Endpoint::ChatCompletions, &Bytes::copy_from_slice(bad)) {
                Err(BodyError::Json(m)) => assert_eq!(m, want),
                other => panic!("{other:?}"),
            }
        }
        assert!(matches!(parse(Endpoint::ChatCompletions, b"\"x\""), Err(BodyError::Shape(_))));
    }

    #[test]
    fn unchanged_members_keep_their_bytes_and_order() {
        let raw = br#"{"temperature":0.70,"model":"gpt-4o","messages":[{"role":"user","content":"hi"}],
            "tools":[{"type":"function","function":{"name":"keep","parameters":{"type":"object","properties":{"q":{"type":"string"}}}}},
                     {"type":"function","function":{"name":"drop"}}],"response_format":{"type":"json_schema","json_schema":{"b":1,"a":2}}}"#;
        let mut b = parse(Endpoint::ChatCompletions, raw).unwrap();
        assert_eq!(b.model(), Some("gpt-4o"));
        assert_eq!(b.strip_tools(Endpoint::ChatCompletions, |n| n == "keep"), ["drop"]);
        b.set_model("gpt-4o-mini");
        let out = String::from_utf8(b.to_bytes().to_vec()).unwrap();
        assert_eq!(
            out,
            r#"{"temperature":0.70,"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}],"tools":[{"type":"function","function":{"name":"keep","parameters":{"type":"object","properties":{"q":{"type":"string"}}}}}],"response_format":{"type":"json_schema","json_schema":{"b":1,"a":2}}}"#
        );
    }

    #[test]
    fn a_key_given_twice_is_refused() {
        for raw in [
            &br#"{"model":"a","messages":[{"role":"user","content":"hi"}],"model":"b"}"#[..],
            br#"{"model":"a","messages":[{"role":"user","content":"hi"}],"mod\u0065l":"b"}"#,
            br#"{"model":"a","messages":[{"role":"user","content":"hi"}],"tools":[],"tools":[{"function":{"name":"y"}}]}"#,
            br#"{"model":"a","messages":[{"role":"user","content":"hi","content":"ignore"}]}"#,
        ] {
            let e = parse(Endpoint::ChatCompletions, raw).expect_err(&String::from_utf8_lossy(raw));
            assert!(matches!(&e, BodyError::Json(m) if m.contains("same key twice")), "{e}");
        }
    }

    #[test]
    fn tool_names_read_in_place_match_the_value_reading() {
        let tools = [
            r#"{"type":"function","function":{"name":"f"}}"#,
            r#"{"name":"n","function":{"name":"f"}}"#,
            r#"{"name":"n","function":"x"}"#,
            r#"{"name":"n","function":{"name":1}}"#,
            r#"{"type":"web_search"}"#,
            r#"{"name":"n\u00e9","type":"t"}"#,
            r#"{"name":null,"type":"t"}"#,
            r#"{}"#,
        ];
        for t in tools {
            let v: Value = serde_json::from_str(t).unwrap();
            for ep in [Endpoint::ChatCompletions, Endpoint::Responses, Endpoint::Messages] {
                let got = tool_name_in(ep, t.as_bytes(), 0..t.len());
                assert_eq!(got.as_deref(), tool_name(ep, &v), "{t} {ep:?}");
            }
        }
    }

    #[test]
    fn prepends_the_managed_prompt() {
        let mut b = parse(
            Endpoint::Messages,
            br#"{"model":"c","max_tokens":5,"system":"own","messages":[{"role":"user","content":"hi"}]}"#,
        )
        .unwrap();
        b.prepend_system(Endpoint::Messages, "managed");
        assert!(b.changed);
        assert_eq!(json_of(&b)["system"], "managed\n\nown");
        assert_eq!(b.system_text(Endpoint::Messages), "managed\n\nown");
        let mut b =
            parse(Endpoint::ChatCompletions, br#"{"model":"m","messages":[{"role":"user","content":"hi"}]}"#).unwrap();
        b.prepend_system(Endpoint::ChatCompletions, "managed");
        assert_eq!(json_of(&b)["messages"][0], serde_json::json!({"role": "system", "content": "managed"}));
        assert_eq!(b.last_user_text(Endpoint::ChatCompletions), "hi");
        let mut b = parse(Endpoint::Responses, br#"{"model":"m","input":"hi"}"#).unwrap();
        b.prepend_system(Endpoint::Responses, "managed");
        assert_eq!(json_of(&b)["instructions"], "managed");
    }
}

/// Where a piece of request text comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TextOrigin {
    /// Written by the user.
    UserInput,
    /// A tool's output fed back into the conversation (indirect injection lives here).
    ToolResult,
}

impl TextOrigin {
    /// Its name in audit records.
    pub fn as_str(self) -> &'static str {
        match self {
            TextOrigin::UserInput => "user_input",
            TextOrigin::ToolResult => "tool_result",
        }
    }
}

/// Calls `f` on every user-written and tool-result text of the request, mutably, so a stage can
/// inspect and rewrite them in place. Returns whether `f` reported a change.
pub fn visit_texts(endpoint: Endpoint, body: &mut Payload, f: &mut dyn FnMut(TextOrigin, &mut String) -> bool) -> bool {
    fn text_or_parts(v: &mut Value, source: TextOrigin, f: &mut dyn FnMut(TextOrigin, &mut String) -> bool) -> bool {
        match v {
            Value::String(s) => f(source, s),
            Value::Array(parts) => {
                let mut changed = false;
                for p in parts {
                    let is_text = matches!(p.get("type").and_then(Value::as_str), Some("text" | "input_text") | None);
                    if is_text {
                        if let Some(Value::String(s)) = p.get_mut("text") {
                            changed |= f(source, s);
                        }
                    }
                }
                changed
            }
            _ => false,
        }
    }
    let walk = |v: &mut Value| -> (bool, bool) {
        let mut changed = false;
        match endpoint {
            Endpoint::ChatCompletions => {
                for m in v.as_array_mut().into_iter().flatten() {
                    let source = match m.get("role").and_then(Value::as_str) {
                        Some("user") => TextOrigin::UserInput,
                        Some("tool" | "function") => TextOrigin::ToolResult,
                        _ => continue,
                    };
                    if let Some(c) = m.get_mut("content") {
                        changed |= text_or_parts(c, source, f);
                    }
                }
            }
            Endpoint::Messages => {
                for m in v.as_array_mut().into_iter().flatten() {
                    if m.get("role").and_then(Value::as_str) != Some("user") {
                        continue;
                    }
                    match m.get_mut("content") {
                        Some(Value::String(s)) => changed |= f(TextOrigin::UserInput, s),
                        Some(Value::Array(blocks)) => {
                            for b in blocks {
                                match b.get("type").and_then(Value::as_str) {
                                    Some("text") => {
                                        if let Some(Value::String(s)) = b.get_mut("text") {
                                            changed |= f(TextOrigin::UserInput, s);
                                        }
                                    }
                                    Some("tool_result") => {
                                        if let Some(c) = b.get_mut("content") {
                                            changed |= text_or_parts(c, TextOrigin::ToolResult, f);
                                        }
                                    }
                                    _ => {}
                                }
                            }
                        }
                        _ => {}
                    }
                }
            }
            Endpoint::Responses => match v {
                Value::String(s) => changed |= f(TextOrigin::UserInput, s),
                Value::Array(items) => {
                    for it in items {
                        if it.get("type").and_then(Value::as_str) == Some("function_call_output") {
                            if let Some(o) = it.get_mut("output") {
                                changed |= text_or_parts(o, TextOrigin::ToolResult, f);
                            }
                        } else if it.get("role").and_then(Value::as_str) == Some("user") {
                            if let Some(c) = it.get_mut("content") {
                                changed |= text_or_parts(c, TextOrigin::UserInput, f);
                            }
                        }
                    }
                }
                _ => {}
            },
            Endpoint::Embeddings | Endpoint::Models => {}
        }
        (changed, changed)
    };
    let member = match endpoint {
        Endpoint::ChatCompletions | Endpoint::Messages => "messages",
        Endpoint::Responses => "input",
        Endpoint::Embeddings | Endpoint::Models => return false,
    };
    body.json_mut(member, walk).unwrap_or(false)
}

#[cfg(test)]
mod visit_tests {
    use super::*;

    fn collect(endpoint: Endpoint, body: &'static str) -> Vec<(TextOrigin, String)> {
        let mut b = Payload::read(&Bytes::from_static(body.as_bytes())).unwrap();
        let mut out = Vec::new();
        visit_texts(endpoint, &mut b, &mut |s, t| {
            out.push((s, t.clone()));
            false
        });
        out
    }

    #[test]
    fn finds_user_and_tool_texts_in_every_format() {
        let chat = r#"{"model":"m","messages":[{"role":"system","content":"sys"},{"role":"user","content":[{"type":"text","text":"hi"}]},
            {"role":"tool","tool_call_id":"1","content":"result"}]}"#;
        assert_eq!(
            collect(Endpoint::ChatCompletions, chat),
            vec![(TextOrigin::UserInput, "hi".into()), (TextOrigin::ToolResult, "result".into())]
        );
        let ant = r#"{"model":"m","messages":[{"role":"user","content":[{"type":"tool_result","tool_use_id":"t","content":"out"},{"type":"text","text":"q"}]}]}"#;
        assert_eq!(
            collect(Endpoint::Messages, ant),
            vec![(TextOrigin::ToolResult, "out".into()), (TextOrigin::UserInput, "q".into())]
        );
        let resp = r#"{"model":"m","input":[{"role":"user","content":"a"},{"type":"function_call_output","call_id":"c","output":"o"}]}"#;
        assert_eq!(
            collect(Endpoint::Responses, resp),
            vec![(TextOrigin::UserInput, "a".into()), (TextOrigin::ToolResult, "o".into())]
        );
    }

    #[test]
    fn a_rewritten_text_is_serialised_and_the_rest_kept() {
        let raw = r#"{"model":"m","messages":[{"role":"user","content":"secret"}],"tools":[{"name":"t","parameters":{"z":1,"a":2}}]}"#;
        let mut b = Payload::parse(Endpoint::ChatCompletions, &Bytes::from_static(raw.as_bytes())).unwrap();
        let changed = visit_texts(Endpoint::ChatCompletions, &mut b, &mut |_, t| {
            *t = "[redacted]".into();
            true
        });
        assert!(changed);
        assert_eq!(
            String::from_utf8(b.to_bytes().to_vec()).unwrap(),
            r#"{"model":"m","messages":[{"content":"[redacted]","role":"user"}],"tools":[{"name":"t","parameters":{"z":1,"a":2}}]}"#
        );
    }
}
