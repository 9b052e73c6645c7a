//! JSON-RPC 2.0 as MCP uses it: telling requests, notifications and responses apart, batches, and
//! the error objects the gateway answers with.

use bytes::Bytes;
use serde_json::{json, Map, Value};

/// Error code for "refused by the gateway's policy" (server-defined range).
pub const REFUSED: i64 = -32001;
/// Parse error.
pub const PARSE_ERROR: i64 = -32700;
/// Invalid request.
pub const INVALID_REQUEST: i64 = -32600;
/// Method (here: server) not found.
pub const METHOD_NOT_FOUND: i64 = -32601;
/// Internal error (the server failed).
pub const INTERNAL_ERROR: i64 = -32603;

/// What a JSON-RPC message is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Has `method` and `id`: expects a response.
    Request,
    /// Has `method`, no `id`.
    Notification,
    /// Has `id` and `result` or `error`.
    Response,
}

/// Classifies one message, or says why it is not JSON-RPC 2.0.
pub fn kind(m: &Value) -> Result<Kind, &'static str> {
    let o = m.as_object().ok_or("a JSON-RPC message must be an object")?;
    if o.get("jsonrpc").and_then(Value::as_str) != Some("2.0") {
        return Err("`jsonrpc` must be \"2.0\"");
    }
    let id_ok = |id: &Value| matches!(id, Value::String(_) | Value::Number(_));
    match (o.get("method"), o.get("id")) {
        (Some(Value::String(_)), Some(id)) if id_ok(id) => Ok(Kind::Request),
        (Some(Value::String(_)), None) => Ok(Kind::Notification),
        (Some(_), _) => Err("`method` must be a string and `id` a string or number"),
        (None, Some(_)) if o.contains_key("result") || o.contains_key("error") => Ok(Kind::Response),
        (None, _) => Err("a message needs `method`, or `id` with `result` or `error`"),
    }
}

/// The messages of a POST body: one object, or a non-empty batch.
#[derive(Debug)]
pub struct Messages {
    /// The valid messages in order.
    pub list: Vec<Value>,
    /// The batch elements that are not JSON-RPC 2.0: the id to answer (null when the element has
    /// none that is valid) and why. Each gets its own error; the rest of the batch goes on.
    pub invalid: Vec<(Value, String)>,
    /// Whether they came as an array.
    pub batch: bool,
}

/// Why a body is not JSON-RPC.
#[derive(Debug)]
pub enum ParseError {
    /// Not JSON.
    Json(String),
    /// JSON, but not JSON-RPC 2.0.
    Invalid(String),
}

/// Parses and validates a client's POST body.
pub fn parse(body: &[u8]) -> Result<Messages, ParseError> {
    // A key twice is refused: the server might act on the copy the gateway did not check.
    let v = crate::protocol::json::parse_unique(body).map_err(|e| ParseError::Json(e.to_string()))?;
    let (list, batch) = match v {
        Value::Array(a) if a.is_empty() => return Err(ParseError::Invalid("an empty batch".into())),
        Value::Array(a) => (a, true),
        other => (vec![other], false),
    };
    if !batch {
        kind(&list[0]).map_err(|why| ParseError::Invalid(why.into()))?;
        return Ok(Messages { list, invalid: Vec::new(), batch });
    }
    // JSON-RPC 2.0: each element of a batch is answered on its own, an invalid one with its own error.
    let mut invalid = Vec::new();
    let mut valid = Vec::with_capacity(list.len());
    for (i, m) in list.into_iter().enumerate() {
        match kind(&m) {
            Ok(_) => valid.push(m),
            Err(why) => invalid.push((answerable_id(&m), format!("batch element {i}: {why}"))),
        }
    }
    Ok(Messages { list: valid, invalid, batch })
}

/// The id an error about `m` answers: its own when it is a valid id, else null.
pub fn answerable_id(m: &Value) -> Value {
    match m.get("id") {
        Some(id @ (Value::String(_) | Value::Number(_))) => id.clone(),
        _ => Value::Null,
    }
}

/// `method` of a request or notification.
pub fn method(m: &Value) -> Option<&str> {
    m.get("method").and_then(Value::as_str)
}

/// An error response to `id` (null when the request's id is unknown).
pub fn error(id: Value, code: i64, message: &str, reason: &str, request_id: &str) -> Value {
    json!({
        "jsonrpc": "2.0",
        "id": id,
        "error": {"code": code, "message": message, "data": {"reason": reason, "request_id": request_id}},
    })
}

/// Serialises answers as the client sent them: an array for a batch, else the single object.
pub fn encode(mut answers: Vec<Value>, batch: bool) -> Bytes {
    let v = if batch || answers.len() != 1 { Value::Array(answers) } else { answers.swap_remove(0) };
    Bytes::from(v.to_string())
}

/// The `result` object of a response, if it is one.
pub fn result_mut(m: &mut Value) -> Option<&mut Map<String, Value>> {
    m.get_mut("result").and_then(Value::as_object_mut)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds() {
        assert_eq!(kind(&json!({"jsonrpc":"2.0","id":1,"method":"tools/list"})), Ok(Kind::Request));
        assert_eq!(kind(&json!({"jsonrpc":"2.0","method":"notifications/initialized"})), Ok(Kind::Notification));
        assert_eq!(kind(&json!({"jsonrpc":"2.0","id":"a","result":{}})), Ok(Kind::Response));
        assert!(kind(&json!({"jsonrpc":"1.0","id":1,"method":"x"})).is_err());
        assert!(kind(&json!({"jsonrpc":"2.0","id":null,"method":"x"})).is_err());
        assert!(kind(&json!({"jsonrpc":"2.0","id":1})).is_err());
        assert!(kind(&json!([1])).is_err());
    }

    #[test]
    fn batches() {
        let m = parse(br#"[{"jsonrpc":"2.0","id":1,"method":"a"},{"jsonrpc":"2.0","method":"b"}]"#).unwrap();
        assert!(m.batch);
        assert_eq!(m.list.len(), 2);
        assert!(matches!(parse(b"[]"), Err(ParseError::Invalid(_))));
        assert!(matches!(parse(b"{"), Err(ParseError::Json(_))));
        // One invalid element does not sink the batch: it is set aside with the id to answer.
        let m =
            parse(br#"[{"jsonrpc":"2.0","id":1,"method":"a"}, 3, {"jsonrpc":"1.0","id":"x","method":"b"}]"#).unwrap();
        assert_eq!(m.list.len(), 1);
        assert_eq!(m.invalid.len(), 2);
        assert_eq!(m.invalid[0].0, Value::Null);
        assert!(m.invalid[0].1.contains("element 1"));
        assert_eq!(m.invalid[1].0, json!("x"));
        let m = parse(b"[1, 2]").unwrap();
        assert!(m.list.is_empty() && m.invalid.len() == 2 && m.batch);
        assert!(matches!(parse(b"3"), Err(ParseError::Invalid(_))));
    }

    #[test]
    fn encoding_keeps_shape() {
        let e = error(json!(7), REFUSED, "no", "mcp.x", "req_1");
        assert_eq!(encode(vec![e.clone()], false), Bytes::from(e.to_string()));
        assert!(encode(vec![e], true).starts_with(b"["));
    }
}
