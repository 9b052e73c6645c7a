//! Reading and rewriting AI request bodies: model, stream flag, tools, the last user message.
//! The body is parsed once into a JSON map; the pipeline decides on it and serialises it only if it
//! changed.

use serde_json::{Map, Value};

use super::Endpoint;

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
    /// Not an object, or a field of the wrong type.
    #[error("{0}")]
    Shape(String),
}

impl Body {
    /// Parses and checks the fields the gateway relies on.
    pub fn parse(endpoint: Endpoint, bytes: &[u8]) -> Result<Body, BodyError> {
        let v: Value = serde_json::from_slice(bytes).map_err(|e| BodyError::Json(e.to_string()))?;
        let Value::Object(map) = v else {
            return Err(BodyError::Shape("the body must be a JSON object".into()));
        };
        match map.get("model") {
            Some(Value::String(_)) => {}
            None if endpoint == Endpoint::Models => {}
            None => return Err(BodyError::Shape("`model` is required".into())),
            Some(_) => return Err(BodyError::Shape("`model` must be a string".into())),
        }
        if let Some(s) = map.get("stream") {
            if !s.is_boolean() && !s.is_null() {
                return Err(BodyError::Shape("`stream` must be a boolean".into()));
            }
        }
        if let Some(t) = map.get("tools") {
            if !t.is_array() && !t.is_null() {
                return Err(BodyError::Shape("`tools` must be an array".into()));
            }
        }
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
        let text_of = |content: &Value| -> String {
            match content {
                Value::String(s) => s.clone(),
                Value::Array(parts) => {
                    parts.iter().filter_map(|p| p.get("text").and_then(Value::as_str)).collect::<Vec<_>>().join("\n")
                }
                _ => String::new(),
            }
        };
        match endpoint {
            Endpoint::ChatCompletions | Endpoint::Messages => self
                .map
                .get("messages")
                .and_then(Value::as_array)
                .and_then(|m| m.iter().rev().find(|m| m.get("role").and_then(Value::as_str) == Some("user")))
                .and_then(|m| m.get("content"))
                .map(text_of)
                .unwrap_or_default(),
            Endpoint::Responses => match self.map.get("input") {
                Some(Value::String(s)) => s.clone(),
                Some(Value::Array(items)) => items
                    .iter()
                    .rev()
                    .find(|m| m.get("role").and_then(Value::as_str) == Some("user"))
                    .and_then(|m| m.get("content"))
                    .map(text_of)
                    .unwrap_or_default(),
                _ => String::new(),
            },
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
        let raw = br#"{"model":"m","tools":[{"type":"function","function":{"name":"a"}},{"type":"function","function":{"name":"b"}}],"tool_choice":{"type":"function","function":{"name":"b"}}}"#;
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
