//! Reading and rewriting AI request bodies: model, stream flag, tools, the last user message.
//! The body is parsed once into a JSON map; the pipeline decides on it and serialises it only if it
//! changed.

use serde_json::{Map, Value};

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

/// A parsed request body.
#[derive(Debug)]
pub struct Body {
    /// The JSON object.
    pub map: Map<String, Value>,
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

impl Body {
    /// Parses and checks the fields the gateway relies on ([`super::schema`]).
    pub fn parse(endpoint: Endpoint, bytes: &[u8]) -> Result<Body, BodyError> {
        let v: Value = serde_json::from_slice(bytes).map_err(|e| BodyError::Json(e.to_string()))?;
        let Value::Object(map) = v else {
            return Err(BodyError::Shape("the body must be a JSON object".into()));
        };
        super::schema::check(endpoint, &map).map_err(BodyError::Field)?;
        Ok(Body { map, changed: false })
    }

    /// The requested model.
    pub fn model(&self) -> Option<&str> {
        self.map.get("model").and_then(Value::as_str)
    }

    /// Replaces the model.
    pub fn set_model(&mut self, model: &str) {
        self.map.insert("model".into(), Value::from(model));
        self.changed = true;
    }

    /// Whether the client asked for a stream.
    pub fn stream(&self) -> bool {
        self.map.get("stream").and_then(Value::as_bool).unwrap_or(false)
    }

    /// The text of the last user message (for scripted replies and, later, inspection).
    pub fn last_user_text(&self, endpoint: Endpoint) -> String {
        match endpoint {
            Endpoint::ChatCompletions | Endpoint::Messages => self
                .map
                .get("messages")
                .and_then(Value::as_array)
                .and_then(|m| m.iter().rev().find(|m| m.get("role").and_then(Value::as_str) == Some("user")))
                .and_then(|m| m.get("content"))
                .map(content_text)
                .unwrap_or_default(),
            Endpoint::Responses => match self.map.get("input") {
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
                match self.map.get_mut("messages") {
                    Some(Value::Array(m)) => m.insert(0, msg),
                    _ => {
                        self.map.insert("messages".into(), Value::Array(vec![msg]));
                    }
                }
            }
            Endpoint::Messages => {
                let next = match self.map.get_mut("system") {
                    Some(Value::String(own)) if !own.is_empty() => joined(own),
                    Some(Value::Array(blocks)) if !blocks.is_empty() => {
                        blocks.insert(0, serde_json::json!({"type": "text", "text": text}));
                        self.changed = true;
                        return;
                    }
                    _ => Value::from(text),
                };
                self.map.insert("system".into(), next);
            }
            Endpoint::Responses => {
                let next = match self.map.get("instructions") {
                    Some(Value::String(own)) if !own.is_empty() => joined(own),
                    _ => Value::from(text),
                };
                self.map.insert("instructions".into(), next);
            }
            Endpoint::Embeddings | Endpoint::Models => return,
        }
        self.changed = true;
    }

    /// The system text the model is given (for scripted replies that play a leaking model).
    pub fn system_text(&self, endpoint: Endpoint) -> String {
        match endpoint {
            Endpoint::ChatCompletions => self
                .map
                .get("messages")
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
            Endpoint::Messages => self.map.get("system").map(content_text).unwrap_or_default(),
            Endpoint::Responses => self.map.get("instructions").map(content_text).unwrap_or_default(),
            Endpoint::Embeddings | Endpoint::Models => String::new(),
        }
    }

    /// How many embedding inputs were given.
    pub fn embedding_inputs(&self) -> usize {
        match self.map.get("input") {
            Some(Value::Array(a)) => a.len(),
            Some(_) => 1,
            None => 0,
        }
    }

    /// Removes every tool `keep` rejects; returns the removed names. Tool choice and related keys
    /// are cleaned up so the provider does not reject the rewritten request.
    pub fn strip_tools(&mut self, endpoint: Endpoint, keep: impl Fn(&str) -> bool) -> Vec<String> {
        let mut removed = Vec::new();
        for key in ["tools", "functions"] {
            let Some(Value::Array(tools)) = self.map.get_mut(key) else { continue };
            tools.retain(|t| match tool_name(endpoint, t) {
                Some(name) if keep(name) => true,
                Some(name) => {
                    removed.push(name.to_owned());
                    false
                }
                // A tool without a name cannot be checked: drop it (fail closed).
                None => {
                    removed.push("<unnamed>".to_owned());
                    false
                }
            });
            if tools.is_empty() {
                self.map.remove(key);
                self.map.remove("tool_choice");
                self.map.remove("function_call");
                self.map.remove("parallel_tool_calls");
            }
        }
        if !removed.is_empty() {
            self.changed = true;
            // A forced choice of a removed tool must go too.
            let forced = self.map.get("tool_choice").and_then(|c| {
                c.get("name").or_else(|| c.get("function").and_then(|f| f.get("name"))).and_then(Value::as_str)
            });
            if forced.is_some_and(|n| removed.iter().any(|r| r == n)) {
                self.map.remove("tool_choice");
            }
        }
        removed
    }

    /// Serialises the (changed) body.
    pub fn to_bytes(&self) -> bytes::Bytes {
        bytes::Bytes::from(serde_json::to_vec(&self.map).unwrap_or_default())
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strips_tools_and_forced_choice() {
        let raw = br#"{"model":"m","messages":[{"role":"user","content":"hi"}],"tools":[{"type":"function","function":{"name":"a"}},{"type":"function","function":{"name":"b"}}],"tool_choice":{"type":"function","function":{"name":"b"}}}"#;
        let mut b = Body::parse(Endpoint::ChatCompletions, raw).unwrap();
        assert_eq!(b.strip_tools(Endpoint::ChatCompletions, |n| n == "a"), vec!["b"]);
        assert!(b.map.get("tool_choice").is_none());
        assert_eq!(b.map["tools"].as_array().unwrap().len(), 1);
        let removed = b.strip_tools(Endpoint::ChatCompletions, |_| false);
        assert_eq!(removed, vec!["a"]);
        assert!(b.map.get("tools").is_none());
    }

    #[test]
    fn rejects_bad_shapes() {
        assert!(Body::parse(Endpoint::ChatCompletions, b"{").is_err());
        assert!(Body::parse(Endpoint::ChatCompletions, b"[]").is_err());
        assert!(Body::parse(Endpoint::ChatCompletions, br#"{"model":1}"#).is_err());
        assert!(Body::parse(Endpoint::Messages, br#"{"model":"m","stream":"yes"}"#).is_err());
    }
}

/// Where a piece of request text comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// Written by the user.
    User,
    /// A tool's output fed back into the conversation (indirect injection lives here).
    ToolResult,
}

impl Source {
    /// Its name in audit records.
    pub fn as_str(self) -> &'static str {
        match self {
            Source::User => "user_input",
            Source::ToolResult => "tool_result",
        }
    }
}

/// Calls `f` on every user-written and tool-result text of the request, mutably, so a stage can
/// inspect and rewrite them in place. Returns whether `f` reported a change.
pub fn visit_texts(
    endpoint: Endpoint,
    map: &mut Map<String, Value>,
    f: &mut dyn FnMut(Source, &mut String) -> bool,
) -> bool {
    fn text_or_parts(v: &mut Value, source: Source, f: &mut dyn FnMut(Source, &mut String) -> bool) -> bool {
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
    let mut changed = false;
    match endpoint {
        Endpoint::ChatCompletions => {
            for m in map.get_mut("messages").and_then(Value::as_array_mut).into_iter().flatten() {
                let source = match m.get("role").and_then(Value::as_str) {
                    Some("user") => Source::User,
                    Some("tool" | "function") => Source::ToolResult,
                    _ => continue,
                };
                if let Some(c) = m.get_mut("content") {
                    changed |= text_or_parts(c, source, f);
                }
            }
        }
        Endpoint::Messages => {
            for m in map.get_mut("messages").and_then(Value::as_array_mut).into_iter().flatten() {
                if m.get("role").and_then(Value::as_str) != Some("user") {
                    continue;
                }
                match m.get_mut("content") {
                    Some(Value::String(s)) => changed |= f(Source::User, s),
                    Some(Value::Array(blocks)) => {
                        for b in blocks {
                            match b.get("type").and_then(Value::as_str) {
                                Some("text") => {
                                    if let Some(Value::String(s)) = b.get_mut("text") {
                                        changed |= f(Source::User, s);
                                    }
                                }
                                Some("tool_result") => {
                                    if let Some(c) = b.get_mut("content") {
                                        changed |= text_or_parts(c, Source::ToolResult, f);
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
        Endpoint::Responses => match map.get_mut("input") {
            Some(Value::String(s)) => changed |= f(Source::User, s),
            Some(Value::Array(items)) => {
                for it in items {
                    if it.get("type").and_then(Value::as_str) == Some("function_call_output") {
                        if let Some(o) = it.get_mut("output") {
                            changed |= text_or_parts(o, Source::ToolResult, f);
                        }
                    } else if it.get("role").and_then(Value::as_str) == Some("user") {
                        if let Some(c) = it.get_mut("content") {
                            changed |= text_or_parts(c, Source::User, f);
                        }
                    }
                }
            }
            _ => {}
        },
        Endpoint::Embeddings | Endpoint::Models => {}
    }
    changed
}

#[cfg(test)]
mod visit_tests {
    use super::*;

    fn collect(endpoint: Endpoint, body: &str) -> Vec<(Source, String)> {
        let Value::Object(mut map) = serde_json::from_str(body).unwrap() else { panic!() };
        let mut out = Vec::new();
        visit_texts(endpoint, &mut map, &mut |s, t| {
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
            vec![(Source::User, "hi".into()), (Source::ToolResult, "result".into())]
        );
        let ant = r#"{"model":"m","messages":[{"role":"user","content":[{"type":"tool_result","tool_use_id":"t","content":"out"},{"type":"text","text":"q"}]}]}"#;
        assert_eq!(
            collect(Endpoint::Messages, ant),
            vec![(Source::ToolResult, "out".into()), (Source::User, "q".into())]
        );
        let resp = r#"{"model":"m","input":[{"role":"user","content":"a"},{"type":"function_call_output","call_id":"c","output":"o"}]}"#;
        assert_eq!(
            collect(Endpoint::Responses, resp),
            vec![(Source::User, "a".into()), (Source::ToolResult, "o".into())]
        );
    }
}
