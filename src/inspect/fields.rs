//! The text fields of a stream event, found by a generic walk, so that no string reaches a client
//! uninspected, whatever its name or nesting.
//!
//! A stream event holds two kinds of strings. A *growing* field is one the client appends across
//! events (an OpenAI chat `delta.*`, an Anthropic `content_block_delta`'s `delta.*`, a Responses
//! `response.*.delta` event's `delta`): a secret can be split across events, so each such field gets
//! its own hold-back, identified by a [`FieldKey`] that is the same in every event that extends the
//! field (choice / content block / output item, content or summary index, path of names). Every other
//! string is whole in its event and is redacted whole. Identifier keys ([`SKIP_KEYS`]) are left alone,
//! as in whole JSON bodies.
//!
//! A [`Seg`] path points from the root of a growing subtree to one string. Array elements are
//! identified across events by their `index` field when they have one (chat `tool_calls`), by their
//! position otherwise (content given as an array of parts).

use serde_json::{Map, Value};

use super::redact::SKIP_KEYS;

/// One step from a value to a string inside it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Seg {
    /// An object member.
    Key(String),
    /// An array element: its position in this event, and its `index` field, if any.
    Elem { pos: usize, index: Option<u64> },
}

/// Identifies one growing field across the events of a stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct FieldKey {
    /// Choice index (chat), content block index (Anthropic), output index (Responses).
    pub scope: u64,
    /// Content or summary index (Responses); 0 elsewhere.
    pub sub: u64,
    /// The field's path of names (with the event type for Responses).
    pub path: String,
}

/// What a growing field carries, which decides the stages after redaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// Model text: outside links neutralised, prompt fragments counted.
    Text,
    /// Tool-call arguments (JSON text): redacted only; the tool-call filter checks their URLs.
    Args,
    /// Opaque values (thinking signatures, base64 audio): redacted only.
    Opaque,
}

/// Takes every string under `v` outside identifier keys out of it (leaving `""` in place), with its
/// path from `v`, in document order.
pub(crate) fn take_strings(v: &mut Value) -> Vec<(Vec<Seg>, String)> {
    let mut out = Vec::new();
    let mut path = Vec::new();
    take(v, &mut path, &mut out);
    out
}

fn take(v: &mut Value, path: &mut Vec<Seg>, out: &mut Vec<(Vec<Seg>, String)>) {
    match v {
        Value::String(s) => out.push((path.clone(), std::mem::take(s))),
        Value::Array(a) => {
            for (pos, x) in a.iter_mut().enumerate() {
                let index = x.get("index").and_then(Value::as_u64);
                path.push(Seg::Elem { pos, index });
                take(x, path, out);
                path.pop();
            }
        }
        Value::Object(m) => {
            for (k, x) in m.iter_mut() {
                if SKIP_KEYS.contains(&k.as_str()) {
                    continue;
                }
                path.push(Seg::Key(k.clone()));
                take(x, path, out);
                path.pop();
            }
        }
        _ => {}
    }
}

/// The value at `path` under `v` (positions as in the event the path was taken from).
pub(crate) fn at_mut<'v>(v: &'v mut Value, path: &[Seg]) -> Option<&'v mut Value> {
    path.iter().try_fold(v, |v, seg| match seg {
        Seg::Key(k) => v.get_mut(k.as_str()),
        Seg::Elem { pos, .. } => v.get_mut(*pos),
    })
}

/// The key path of `path`: names joined by `/`, array elements by `#index` or their position.
pub(crate) fn path_string(prefix: &str, path: &[Seg]) -> String {
    let mut s = String::with_capacity(prefix.len() + 16 * path.len());
    s.push_str(prefix);
    for seg in path {
        if !s.is_empty() {
            s.push('/');
        }
        match seg {
            Seg::Key(k) => s.push_str(k),
            Seg::Elem { index: Some(i), .. } => {
                s.push('#');
                s.push_str(&i.to_string());
            }
            Seg::Elem { pos, index: None } => s.push_str(&pos.to_string()),
        }
    }
    s
}

/// Members kept in a skeleton: what places an element (never text). Not `id` or `role`: clients
/// append every string of a delta (the OpenAI SDKs' accumulators concatenate all but `index` and
/// `type`), so a repeated id would be doubled.
const ID_KEYS: [&str; 2] = ["type", "index"];

/// A minimal copy of `v` that leads to the string at `path` (set to `""`): along the way only the
/// identifying members of each object ([`ID_KEYS`]) and one element of each array. Text released
/// with no upstream event of its own is sent in a copy of it. Also returns the JSON pointer of the
/// string in the copy.
pub(crate) fn skeleton(v: &Value, path: &[Seg]) -> (Value, String) {
    let mut pointer = String::new();
    let s = skel(v, path, &mut pointer);
    (s, pointer)
}

fn skel(v: &Value, path: &[Seg], pointer: &mut String) -> Value {
    let Some((seg, rest)) = path.split_first() else { return Value::String(String::new()) };
    match (v, seg) {
        (Value::Object(m), Seg::Key(k)) => {
            let mut out = Map::new();
            for id in ID_KEYS {
                if let Some(x) = m.get(id).filter(|x| x.is_number() || x.is_string()) {
                    out.insert(id.to_owned(), x.clone());
                }
            }
            pointer.push('/');
            pointer.push_str(&k.replace('~', "~0").replace('/', "~1"));
            out.insert(k.clone(), skel(m.get(k.as_str()).unwrap_or(&Value::Null), rest, pointer));
            Value::Object(out)
        }
        (Value::Array(a), Seg::Elem { pos, .. }) => {
            pointer.push_str("/0");
            Value::Array(vec![skel(a.get(*pos).unwrap_or(&Value::Null), rest, pointer)])
        }
        // The path was taken from this value, so this is not reached; an empty string keeps it total.
        _ => Value::String(String::new()),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn every_string_outside_identifier_keys_with_its_path() {
        let mut v = json!({"role": "assistant", "content": [{"type": "text", "text": "a"}], "refusal": "b",
            "tool_calls": [{"index": 3, "id": "call_1", "function": {"name": "f", "arguments": "{\"x\""}}],
            "x": {"y": ["c", 1, null]}});
        let got: Vec<(String, String)> =
            take_strings(&mut v).into_iter().map(|(p, s)| (path_string("", &p), s)).collect();
        let want =
            [("content/0/text", "a"), ("refusal", "b"), ("tool_calls/#3/function/arguments", "{\"x\""), ("x/y/0", "c")];
        assert_eq!(got, want.map(|(p, s)| (p.to_owned(), s.to_owned())));
        assert_eq!(v["refusal"], "", "taken out");
        assert_eq!(v["role"], "assistant", "identifiers stay");
    }

    #[test]
    fn skeleton_keeps_identifiers_along_the_path_only() {
        let v = json!({"type": "content_block_delta", "index": 2, "extra": "drop me",
            "delta": {"type": "thinking_delta", "thinking": "secret", "n": 1}});
        let mut w = v.clone();
        let strings = take_strings(&mut w);
        let (path, _) = strings.iter().find(|(_, s)| s == "secret").unwrap();
        let (s, pointer) = skeleton(&v, path);
        assert_eq!(
            s,
            json!({"type": "content_block_delta", "index": 2, "delta": {"type": "thinking_delta", "thinking": ""}})
        );
        assert_eq!(pointer, "/delta/thinking");
        let v = json!({"content": [{"type": "text", "text": "x"}, {"type": "text", "text": "y"}]});
        let path = [Seg::Key("content".into()), Seg::Elem { pos: 1, index: None }, Seg::Key("text".into())];
        assert_eq!(skeleton(&v, &path), (json!({"content": [{"type": "text", "text": ""}]}), "/content/0/text".into()));
    }
}
