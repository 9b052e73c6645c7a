//! Whole JSON bodies: every text string redacted in place (identifier keys left alone), and the
//! per-token data (`logprobs`) that no answer may carry.

use serde_json::Value;

use super::link::LinkGuard;
use crate::inspect::scanner::Scanner;

/// Keys whose string values are identifiers or enums, never model text: left alone.
pub(crate) const SKIP_KEYS: [&str; 17] = [
    "id",
    "object",
    "model",
    "type",
    "role",
    "finish_reason",
    "stop_reason",
    "status",
    "item_id",
    "call_id",
    "tool_use_id",
    "system_fingerprint",
    "service_tier",
    "name",
    "event",
    "logprobs",
    "stop_sequence",
];

/// Redacts every text string in a JSON value in place (and neutralises outside links when a guard
/// is given); returns the rules that matched.
pub fn redact_json(scanner: &Scanner, v: &mut Value, found: &mut Vec<u16>) {
    redact_json_with(scanner, None, v, found, &mut 0);
}

/// [`redact_json`] with an optional link guard; `links` counts neutralised links.
pub fn redact_json_with(
    scanner: &Scanner,
    guard: Option<&LinkGuard>,
    v: &mut Value,
    found: &mut Vec<u16>,
    links: &mut usize,
) {
    match v {
        Value::String(s) => {
            let (red, f) = scanner.redact(s);
            if !f.is_empty() {
                found.extend(f.iter().map(|f| f.rule));
                *s = red.into_owned();
            }
            if let Some((out, n)) = guard.and_then(|g| g.apply(s)) {
                *links += n;
                *s = out;
            }
        }
        Value::Array(a) => a.iter_mut().for_each(|x| redact_json_with(scanner, guard, x, found, links)),
        Value::Object(m) => {
            for (k, x) in m.iter_mut() {
                if !SKIP_KEYS.contains(&k.as_str()) {
                    redact_json_with(scanner, guard, x, found, links);
                }
            }
        }
        _ => {}
    }
}

/// The member that carries per-token data (OpenAI chat and Responses `logprobs`: every token's
/// string, its bytes and the top alternatives). It repeats the model's text one token at a time, so
/// a secret spelled across tokens cannot be redacted there: an answer never carries it (see
/// [`drop_token_data`]).
pub(crate) const TOKEN_DATA: &str = "logprobs";

/// Sets a `logprobs` value that carries token data (an object or an array) to `null`; a flag
/// (`true`, a count) is left alone. Returns whether it changed. Fail closed: the gateway cannot
/// inspect text split into tokens, so it does not deliver it.
pub(crate) fn drop_token_data(x: &mut Value) -> bool {
    let carries = carries_token_data(x);
    if carries {
        *x = Value::Null;
    }
    carries
}

/// Whether a `logprobs` value carries token data: a non-empty array, or an object with a member
/// that is neither `null` nor an empty array (`{"content": null}` and the Responses `[]` carry none).
pub(crate) fn carries_token_data(x: &Value) -> bool {
    match x {
        Value::Array(a) => !a.is_empty(),
        Value::Object(m) => m.values().any(|v| !v.is_null() && v.as_array().is_none_or(|a| !a.is_empty())),
        _ => false,
    }
}

/// Whether a raw JSON body may carry token data: a `"logprobs"` member whose value opens an object
/// or a non-empty array (a `null`, a flag or `[]` does not). A byte test for the fast paths that skip decoding; a
/// `true` sends the body to the path that decodes it and drops the data.
pub(crate) fn may_carry_token_data(bytes: &[u8]) -> bool {
    memchr::memmem::find_iter(bytes, b"\"logprobs\"").any(|at| {
        let mut rest = bytes[at + 10..].iter().copied().skip_while(u8::is_ascii_whitespace);
        if rest.next() != Some(b':') {
            return false;
        }
        let mut value = rest.skip_while(u8::is_ascii_whitespace);
        match value.next() {
            Some(b'{') => true,
            Some(b'[') => value.find(|b| !b.is_ascii_whitespace()) != Some(b']'),
            _ => false,
        }
    })
}

/// [`drop_token_data`] for every `logprobs` member anywhere under `v` (outside identifier keys).
pub(crate) fn drop_all_token_data(v: &mut Value) -> bool {
    match v {
        Value::Array(a) => a.iter_mut().fold(false, |ch, x| drop_all_token_data(x) | ch),
        Value::Object(m) => m.iter_mut().fold(false, |ch, (k, x)| {
            (if k == TOKEN_DATA {
                drop_token_data(x)
            } else if SKIP_KEYS.contains(&k.as_str()) {
                false
            } else {
                drop_all_token_data(x)
            }) | ch
        }),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn token_data_is_found_in_bytes_and_values() {
        for (doc, carries) in [
            (&br#"{"logprobs":null}"#[..], false),
            (br#"{"logprobs" : true}"#, false),
            (br#"{"logprobs":[]}"#, false),
            (br#"{"logprobs": [ ]}"#, false),
            (br#"{"logprobs":[{"token":"a"}]}"#, true),
            (br#"{"choices":[{"logprobs": {"content":[]}}]}"#, true),
            (br#"{"text":"say \"logprobs\": [1]"}"#, false),
        ] {
            assert_eq!(may_carry_token_data(doc), carries, "{}", String::from_utf8_lossy(doc));
        }
        assert!(!carries_token_data(&json!({"content": null, "refusal": []})));
        assert!(carries_token_data(&json!({"content": [{"bytes": [65]}]})));
        let mut v = json!({"choices": [{"logprobs": {"content": [{"token": "AKIA"}]}, "id": {"logprobs": [1]}}]});
        assert!(drop_all_token_data(&mut v));
        assert_eq!(v, json!({"choices": [{"logprobs": null, "id": {"logprobs": [1]}}]}));
    }
}
