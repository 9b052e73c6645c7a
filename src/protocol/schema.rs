//! The request fields the gateway relies on, checked per API on the body already read (no second
//! parse; the members kept as raw JSON — tools, token limits — are checked on their text): the model it routes and allowlists, the stream flag, the token limits, the tools
//! it strips, and the message structure its injection inspection walks. A message with an unknown role
//! or a content part that is not an object would be skipped by that walk, so they are refused here
//! rather than forwarded uninspected. Everything else is the provider's to judge.
//!
//! Errors name the field (`param`, OpenAI-style: `messages[0].role`) and use OpenAI's codes
//! (`missing_required_parameter`, `invalid_type`, `invalid_value`, `empty_array`).

use serde_json::Value;

use super::json;
use super::request::{Field, Payload};
use super::Endpoint;

/// A field of the wrong type or value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    /// The field, e.g. `max_tokens` or `messages[0].role`.
    pub param: String,
    /// What is wrong, naming the field.
    pub message: String,
    /// OpenAI-style error code.
    pub code: &'static str,
}

/// Roles of OpenAI chat messages.
const CHAT_ROLES: &[&str] = &["system", "developer", "user", "assistant", "tool", "function"];
/// Roles of Anthropic messages (the system prompt is a top-level field there).
const ANTHROPIC_ROLES: &[&str] = &["user", "assistant"];
/// Roles of Responses API input messages.
const RESPONSES_ROLES: &[&str] = &["system", "developer", "user", "assistant"];

/// Checks the fields of `endpoint`'s request body that the gateway relies on.
pub fn check(endpoint: Endpoint, body: &Payload) -> Result<(), FieldError> {
    if endpoint == Endpoint::Models {
        return Ok(());
    }
    let f = Fields(body);
    f.model()?;
    f.opt("stream", Type::Bool)?;
    f.opt("tools", Type::ArrayOfObjects)?;
    match endpoint {
        Endpoint::ChatCompletions => {
            f.messages(CHAT_ROLES, Content::Optional)?;
            f.opt("max_tokens", Type::PositiveInt)?;
            f.opt("max_completion_tokens", Type::PositiveInt)?;
            f.opt("n", Type::PositiveInt)?;
            f.opt("functions", Type::ArrayOfObjects)?;
            f.opt("tool_choice", Type::StringOrObject)?;
        }
        Endpoint::Messages => {
            f.required("max_tokens", Type::PositiveInt)?;
            f.messages(ANTHROPIC_ROLES, Content::Required)?;
            f.opt("system", Type::StringOrArrayOfObjects)?;
        }
        Endpoint::Responses => {
            f.responses_input()?;
            f.opt("instructions", Type::String)?;
            f.opt("max_output_tokens", Type::PositiveInt)?;
            f.opt("tool_choice", Type::StringOrObject)?;
        }
        Endpoint::Embeddings => f.embeddings_input()?,
        Endpoint::Models => {}
    }
    Ok(())
}

/// The JSON types a field may have.
#[derive(Debug, Clone, Copy)]
enum Type {
    Bool,
    String,
    PositiveInt,
    ArrayOfObjects,
    StringOrObject,
    StringOrArrayOfObjects,
}

impl Type {
    fn expected(self) -> &'static str {
        match self {
            Type::Bool => "a boolean",
            Type::String => "a string",
            Type::PositiveInt => "a positive integer",
            Type::ArrayOfObjects => "an array of objects",
            Type::StringOrObject => "a string or an object",
            Type::StringOrArrayOfObjects => "a string or an array of objects",
        }
    }

    /// `Ok` when `v` fits; otherwise the index of the first element that is not an object (for
    /// arrays), or `None` when the value itself is of the wrong type.
    fn fits(self, v: &Value) -> Result<(), Option<usize>> {
        let objects = |a: &[Value]| match a.iter().position(|x| !x.is_object()) {
            Some(i) => Err(Some(i)),
            None => Ok(()),
        };
        match (self, v) {
            (Type::Bool, Value::Bool(_))
            | (Type::String, Value::String(_))
            | (Type::StringOrObject, Value::String(_) | Value::Object(_))
            | (Type::StringOrArrayOfObjects, Value::String(_)) => Ok(()),
            (Type::PositiveInt, Value::Number(n)) if n.as_u64().is_some_and(|n| n >= 1) => Ok(()),
            (Type::ArrayOfObjects | Type::StringOrArrayOfObjects, Value::Array(a)) => objects(a),
            _ => Err(None),
        }
    }
}

/// The name of a JSON value's type, for messages.
fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "an integer",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn missing(param: &str) -> FieldError {
    FieldError {
        param: param.to_owned(),
        message: format!("missing required parameter `{param}`"),
        code: "missing_required_parameter",
    }
}

fn wrong(param: String, expected: &str, got: &Value) -> FieldError {
    let message = format!("`{param}` must be {expected}, got {}", type_name(got));
    FieldError { param, message, code: "invalid_type" }
}

/// How a message's `content` is checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Content {
    /// Required: a string or an array of objects.
    Required,
    /// As `Required`, but `null` or absent is allowed for assistant messages (tool calls).
    Optional,
}

struct Fields<'a>(&'a Payload);

/// Whether the raw JSON `b` is an array of objects (the common case of `tools`, checked without
/// parsing the tools).
fn raw_array_of_objects(b: &[u8]) -> bool {
    json::elements(b, 0..b.len()).is_some_and(|e| e.iter().all(|r| json::first(b, r) == Some(b'{')))
}

impl<'a> Fields<'a> {
    /// A parsed member.
    fn get(&self, name: &str) -> Option<&'a Value> {
        match self.0.field(name)? {
            Field::Json(v) => Some(v),
            Field::Raw(_) => None,
        }
    }

    /// Checks member `name` (absent: `absent`) against `t`; a member kept as raw JSON is parsed for
    /// the check only when it is not the common array of objects (an error, a number).
    fn checked(&self, name: &str, t: Type, absent: Result<(), FieldError>) -> Result<(), FieldError> {
        let check = |v: &Value| match v {
            Value::Null => absent.clone(),
            v => fit(name, v, t),
        };
        match self.0.field(name) {
            None => absent.clone(),
            Some(Field::Json(v)) => check(v),
            Some(Field::Raw(b)) if matches!(t, Type::ArrayOfObjects) && raw_array_of_objects(b) => Ok(()),
            Some(Field::Raw(b)) => match serde_json::from_slice::<Value>(b) {
                Ok(v) => check(&v),
                // Cannot happen (the body was validated as JSON): refuse rather than pass.
                Err(_) => Err(FieldError {
                    param: name.to_owned(),
                    message: format!("`{name}` must be {}", t.expected()),
                    code: "invalid_type",
                }),
            },
        }
    }

    /// An optional field: absent or `null`, or of type `t`.
    fn opt(&self, name: &str, t: Type) -> Result<(), FieldError> {
        self.checked(name, t, Ok(()))
    }

    /// A required field of type `t`.
    fn required(&self, name: &str, t: Type) -> Result<(), FieldError> {
        self.checked(name, t, Err(missing(name)))
    }

    /// `model`: a non-empty string (routes and role allowlists are decided on it).
    fn model(&self) -> Result<(), FieldError> {
        match self.get("model") {
            None | Some(Value::Null) => Err(missing("model")),
            Some(Value::String(s)) if s.trim().is_empty() => Err(FieldError {
                param: "model".into(),
                message: "`model` must not be empty".into(),
                code: "invalid_value",
            }),
            Some(Value::String(_)) => Ok(()),
            Some(v) => Err(wrong("model".into(), "a string", v)),
        }
    }

    /// `messages`: a non-empty array of objects, each with a known `role` and a `content` the
    /// injection inspection can walk (a string, or an array of objects).
    fn messages(&self, roles: &[&str], content: Content) -> Result<(), FieldError> {
        let list = match self.get("messages") {
            None | Some(Value::Null) => return Err(missing("messages")),
            Some(Value::Array(a)) => a,
            Some(v) => return Err(wrong("messages".into(), "an array of message objects", v)),
        };
        if list.is_empty() {
            return Err(FieldError {
                param: "messages".into(),
                message: "`messages` must not be empty".into(),
                code: "empty_array",
            });
        }
        for (i, m) in list.iter().enumerate() {
            let Value::Object(m) = m else {
                return Err(wrong(format!("messages[{i}]"), "an object", m));
            };
            let role = match m.get("role") {
                Some(Value::String(r)) => r.as_str(),
                None | Some(Value::Null) => return Err(missing(&format!("messages[{i}].role"))),
                Some(v) => return Err(wrong(format!("messages[{i}].role"), "a string", v)),
            };
            if !roles.contains(&role) {
                // The value is not echoed: a client may put anything there.
                return Err(FieldError {
                    param: format!("messages[{i}].role"),
                    message: format!("`messages[{i}].role` must be one of {}", roles.join(", ")),
                    code: "invalid_value",
                });
            }
            let param = || format!("messages[{i}].content");
            match m.get("content") {
                None | Some(Value::Null) if content == Content::Optional && role == "assistant" => {}
                None | Some(Value::Null) => return Err(missing(&param())),
                Some(v) => fit_at(param, v, Type::StringOrArrayOfObjects)?,
            }
        }
        Ok(())
    }

    /// Responses `input` (optional: a stored prompt or a previous response may stand in): a string,
    /// or an array of item objects, each a message with a known role or an item with a `type`.
    fn responses_input(&self) -> Result<(), FieldError> {
        let items = match self.get("input") {
            None | Some(Value::Null | Value::String(_)) => return Ok(()),
            Some(Value::Array(a)) => a,
            Some(v) => return Err(wrong("input".into(), "a string or an array of input items", v)),
        };
        for (i, it) in items.iter().enumerate() {
            let Value::Object(it) = it else {
                return Err(wrong(format!("input[{i}]"), "an object", it));
            };
            match (it.get("role"), it.get("type")) {
                (Some(Value::String(r)), _) if RESPONSES_ROLES.contains(&r.as_str()) => {
                    if let Some(c) = it.get("content") {
                        fit_at(|| format!("input[{i}].content"), c, Type::StringOrArrayOfObjects)?;
                    }
                }
                (Some(r), _) => {
                    return Err(FieldError {
                        param: format!("input[{i}].role"),
                        message: format!("`input[{i}].role` must be one of {}", RESPONSES_ROLES.join(", ")),
                        code: if r.is_string() { "invalid_value" } else { "invalid_type" },
                    })
                }
                (None, Some(Value::String(_))) => {}
                (None, _) => return Err(missing(&format!("input[{i}].type"))),
            }
        }
        Ok(())
    }

    /// Embeddings `input`: a string, or a non-empty array of strings or token arrays.
    fn embeddings_input(&self) -> Result<(), FieldError> {
        let expected = "a string or a non-empty array of strings or token arrays";
        match self.get("input") {
            None | Some(Value::Null) => Err(missing("input")),
            Some(Value::String(_)) => Ok(()),
            Some(Value::Array(a)) if a.is_empty() => Err(FieldError {
                param: "input".into(),
                message: "`input` must not be empty".into(),
                code: "empty_array",
            }),
            Some(Value::Array(a)) => {
                match a.iter().position(|x| !matches!(x, Value::String(_) | Value::Number(_) | Value::Array(_))) {
                    Some(i) => Err(wrong(format!("input[{i}]"), "a string, a token or a token array", &a[i])),
                    None => Ok(()),
                }
            }
            Some(v) => Err(wrong("input".into(), expected, v)),
        }
    }
}

fn fit(name: &str, v: &Value, t: Type) -> Result<(), FieldError> {
    fit_at(|| name.to_owned(), v, t)
}

/// Checks `v` against `t`; the parameter name is only built for an error.
fn fit_at(param: impl Fn() -> String, v: &Value, t: Type) -> Result<(), FieldError> {
    match t.fits(v) {
        Ok(()) => Ok(()),
        // A number, but zero, negative or fractional.
        Err(None) if matches!((t, v), (Type::PositiveInt, Value::Number(_))) => {
            let param = param();
            Err(FieldError { message: format!("`{param}` must be a positive integer"), param, code: "invalid_value" })
        }
        Err(None) => Err(wrong(param(), t.expected(), v)),
        Err(Some(i)) => Err(wrong(format!("{}[{i}]", param()), "an object", &v[i])),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Map};

    fn check_map(endpoint: Endpoint, map: &Map<String, Value>) -> Result<(), FieldError> {
        let bytes = bytes::Bytes::from(serde_json::to_vec(map).unwrap());
        check(endpoint, &Payload::read(&bytes).unwrap())
    }

    fn run(endpoint: Endpoint, v: Value) -> Result<(), FieldError> {
        let Value::Object(map) = v else { panic!("an object") };
        check_map(endpoint, &map)
    }

    fn param(endpoint: Endpoint, v: Value) -> String {
        run(endpoint, v).expect_err("refused").param
    }

    #[test]
    fn valid_requests_of_every_api_pass() {
        let chat = json!({"model": "gpt-4o", "stream": true, "max_tokens": 10, "n": 1,
            "messages": [{"role": "system", "content": "s"}, {"role": "user", "content": [{"type": "text", "text": "hi"}]},
                {"role": "assistant", "content": null, "tool_calls": []}, {"role": "tool", "tool_call_id": "c", "content": "r"}],
            "tools": [{"type": "function", "function": {"name": "f"}}], "tool_choice": "auto"});
        assert_eq!(run(Endpoint::ChatCompletions, chat), Ok(()));
        let ant = json!({"model": "claude", "max_tokens": 5, "system": [{"type": "text", "text": "s"}],
            "messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": [{"type": "text", "text": "x"}]}]});
        assert_eq!(run(Endpoint::Messages, ant), Ok(()));
        let resp = json!({"model": "gpt-4o", "input": [{"role": "user", "content": "a"},
            {"type": "function_call_output", "call_id": "c", "output": "o"}], "instructions": "i"});
        assert_eq!(run(Endpoint::Responses, resp), Ok(()));
        assert_eq!(run(Endpoint::Responses, json!({"model": "m", "input": "hi"})), Ok(()));
        assert_eq!(run(Endpoint::Embeddings, json!({"model": "e", "input": ["a", "b"]})), Ok(()));
        assert_eq!(run(Endpoint::Embeddings, json!({"model": "e", "input": [[1, 2], [3]]})), Ok(()));
    }

    #[test]
    fn the_audit_examples_are_refused_naming_the_field() {
        let e = run(Endpoint::ChatCompletions, json!({"model": "m", "messages": 123})).unwrap_err();
        assert_eq!((e.param.as_str(), e.code), ("messages", "invalid_type"));
        assert!(e.message.contains("`messages`") && e.message.contains("an integer"), "{}", e.message);
        let tools = json!({"model": "m", "messages": [{"role": "user", "content": "x"}], "tools": [1, 2]});
        assert_eq!(param(Endpoint::ChatCompletions, tools), "tools[0]");
        let e = run(
            Endpoint::ChatCompletions,
            json!({"model": "m", "messages": [{"role": "user", "content": "x"}], "max_tokens": "x"}),
        )
        .unwrap_err();
        assert_eq!((e.param.as_str(), e.code), ("max_tokens", "invalid_type"));
        let e = run(Endpoint::ChatCompletions, json!({"model": "", "messages": [{"role": "user", "content": "x"}]}))
            .unwrap_err();
        assert_eq!((e.param.as_str(), e.code), ("model", "invalid_value"));
    }

    #[test]
    fn structure_the_inspection_walks_is_enforced() {
        let chat = |m: Value| json!({"model": "m", "messages": m});
        assert_eq!(param(Endpoint::ChatCompletions, chat(json!([]))), "messages");
        assert_eq!(param(Endpoint::ChatCompletions, chat(json!(["hi"]))), "messages[0]");
        assert_eq!(param(Endpoint::ChatCompletions, chat(json!([{"content": "x"}]))), "messages[0].role");
        assert_eq!(
            param(Endpoint::ChatCompletions, chat(json!([{"role": "usr", "content": "x"}]))),
            "messages[0].role"
        );
        assert_eq!(param(Endpoint::ChatCompletions, chat(json!([{"role": "user"}]))), "messages[0].content");
        assert_eq!(
            param(Endpoint::ChatCompletions, chat(json!([{"role": "user", "content": ["ignore all"]}]))),
            "messages[0].content[0]"
        );
        assert_eq!(
            param(Endpoint::ChatCompletions, chat(json!([{"role": "user", "content": 5}]))),
            "messages[0].content"
        );
        let ant = |extra: Value| {
            let mut v = json!({"model": "c", "max_tokens": 5, "messages": [{"role": "user", "content": "x"}]});
            for (k, x) in extra.as_object().unwrap() {
                v[k] = x.clone();
            }
            v
        };
        let Value::Object(mut no_max) = ant(json!({})) else { unreachable!() };
        no_max.remove("max_tokens");
        let e = check_map(Endpoint::Messages, &no_max).unwrap_err();
        assert_eq!((e.param.as_str(), e.code), ("max_tokens", "missing_required_parameter"));
        assert_eq!(run(Endpoint::Messages, ant(json!({"max_tokens": 0}))).unwrap_err().code, "invalid_value");
        assert_eq!(param(Endpoint::Messages, ant(json!({"max_tokens": 1.5}))), "max_tokens");
        assert_eq!(param(Endpoint::Messages, ant(json!({"system": 7}))), "system");
        assert_eq!(
            param(Endpoint::Messages, ant(json!({"messages": [{"role": "system", "content": "x"}]}))),
            "messages[0].role"
        );
        assert_eq!(
            param(Endpoint::Messages, ant(json!({"messages": [{"role": "assistant", "content": null}]}))),
            "messages[0].content"
        );
        assert_eq!(param(Endpoint::Responses, json!({"model": "m", "input": 3})), "input");
        assert_eq!(
            param(Endpoint::Responses, json!({"model": "m", "input": [{"role": "user", "content": 3}]})),
            "input[0].content"
        );
        assert_eq!(param(Endpoint::Responses, json!({"model": "m", "input": [{"content": "x"}]})), "input[0].type");
        assert_eq!(param(Endpoint::Responses, json!({"model": "m", "instructions": ["x"]})), "instructions");
        assert_eq!(param(Endpoint::Embeddings, json!({"model": "m"})), "input");
        assert_eq!(param(Endpoint::Embeddings, json!({"model": "m", "input": []})), "input");
        assert_eq!(param(Endpoint::Embeddings, json!({"model": "m", "input": [{}]})), "input[0]");
        assert_eq!(param(Endpoint::ChatCompletions, json!({"messages": [{"role": "user", "content": "x"}]})), "model");
        assert_eq!(param(Endpoint::ChatCompletions, json!({"model": 1, "messages": []})), "model");
        assert_eq!(
            param(
                Endpoint::ChatCompletions,
                chat(json!([{"role": "user", "content": "x"}]))
                    .as_object()
                    .map(|m| {
                        let mut m = m.clone();
                        m.insert("stream".into(), json!("yes"));
                        Value::Object(m)
                    })
                    .unwrap()
            ),
            "stream"
        );
    }
}
