//! Borrowing reads of JSON text already validated by serde_json: the spans of an object's members
//! and of an array's elements, and string values, without building a `Value`. The request body
//! ([`super::request::Payload`]) keeps the members the gateway never looks at (tool schemas,
//! sampling settings, metadata) as spans of the original bytes and reads tool names through these.
//!
//! Every function here assumes valid JSON (checked first by [`validate`]); on anything else they
//! return `None` or stop early, never panic.

use std::borrow::Cow;
use std::ops::Range;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};

/// Checks that `bytes` is one JSON value exactly as `serde_json::from_slice::<Value>` would (same
/// parser, same errors: syntax, UTF-8, escapes, numbers out of range, nesting depth), without
/// building it: strings are decoded into the parser's scratch buffer and dropped.
pub fn validate(bytes: &[u8]) -> Result<(), serde_json::Error> {
    serde_json::from_slice::<Valid>(bytes).map(|_| ())
}

/// Accepts any JSON value, like `Value`, and keeps nothing.
struct Valid;

impl<'de> Deserialize<'de> for Valid {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Valid, D::Error> {
        d.deserialize_any(ValidVisitor)
    }
}

struct ValidVisitor;

impl<'de> Visitor<'de> for ValidVisitor {
    type Value = Valid;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("any valid JSON value")
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Valid, E> {
        Ok(Valid)
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Valid, E> {
        Ok(Valid)
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Valid, E> {
        Ok(Valid)
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Valid, E> {
        Ok(Valid)
    }
    fn visit_str<E: de::Error>(self, _: &str) -> Result<Valid, E> {
        Ok(Valid)
    }
    fn visit_unit<E: de::Error>(self) -> Result<Valid, E> {
        Ok(Valid)
    }
    fn visit_none<E: de::Error>(self) -> Result<Valid, E> {
        Ok(Valid)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Valid, D::Error> {
        Valid::deserialize(d)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Valid, A::Error> {
        while seq.next_element::<Valid>()?.is_some() {}
        Ok(Valid)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Valid, A::Error> {
        while map.next_key::<Valid>()?.is_some() {
            map.next_value::<Valid>()?;
        }
        Ok(Valid)
    }
}

fn skip_ws(b: &[u8], mut i: usize) -> usize {
    while i < b.len() && matches!(b[i], b' ' | b'\t' | b'\n' | b'\r') {
        i += 1;
    }
    i
}

/// The end (exclusive) of the string starting at `b[i] == '"'` (long texts, such as tool
/// descriptions, are skipped with `memchr`).
fn string_end(b: &[u8], i: usize) -> Option<usize> {
    if b.get(i) != Some(&b'"') {
        return None;
    }
    let mut j = i + 1;
    while j < b.len() {
        j += memchr::memchr2(b'"', b'\\', &b[j..])?;
        match b[j] {
            b'\\' => j += 2,
            _ => return Some(j + 1),
        }
    }
    None
}

/// The end (exclusive) of the value starting at `b[i]`.
fn value_end(b: &[u8], i: usize) -> Option<usize> {
    match *b.get(i)? {
        b'"' => string_end(b, i),
        b'{' | b'[' => {
            let mut depth = 0usize;
            let mut j = i;
            while j < b.len() {
                match b[j] {
                    b'"' => {
                        j = string_end(b, j)?;
                        continue;
                    }
                    b'{' | b'[' => depth += 1,
                    b'}' | b']' => {
                        depth = depth.checked_sub(1)?;
                        if depth == 0 {
                            return Some(j + 1);
                        }
                    }
                    _ => {}
                }
                j += 1;
            }
            None
        }
        _ => {
            let mut j = i;
            while j < b.len() && !matches!(b[j], b',' | b'}' | b']' | b' ' | b'\t' | b'\n' | b'\r') {
                j += 1;
            }
            Some(j)
        }
    }
}

/// One member of an object: the key's span (quotes included) and the value's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Span {
    /// The key, a JSON string with its quotes.
    pub key: Range<usize>,
    /// The value.
    pub value: Range<usize>,
}

/// The members of the object spanning `r` in `b`, in order (duplicates included); `None` when it is
/// not an object.
pub fn members(b: &[u8], r: Range<usize>) -> Option<Vec<Span>> {
    let mut out = Vec::new();
    each_member(b, r, |s| {
        out.push(s);
        true
    })?;
    Some(out)
}

/// Calls `f` on each member of the object spanning `r` until it returns `false`; `None` when it is
/// not an object.
fn each_member(b: &[u8], r: Range<usize>, mut f: impl FnMut(Span) -> bool) -> Option<()> {
    let end = r.end.min(b.len());
    let b = &b[..end];
    let mut i = skip_ws(b, r.start);
    if b.get(i) != Some(&b'{') {
        return None;
    }
    i = skip_ws(b, i + 1);
    if b.get(i) == Some(&b'}') {
        return Some(());
    }
    loop {
        let k_end = string_end(b, i)?;
        let key = i..k_end;
        i = skip_ws(b, k_end);
        if b.get(i) != Some(&b':') {
            return None;
        }
        i = skip_ws(b, i + 1);
        let v_end = value_end(b, i)?;
        if !f(Span { key, value: i..v_end }) {
            return Some(());
        }
        i = skip_ws(b, v_end);
        match b.get(i) {
            Some(b',') => i = skip_ws(b, i + 1),
            Some(b'}') => return Some(()),
            _ => return None,
        }
    }
}

/// The elements of the array spanning `r` in `b`; `None` when it is not an array.
pub fn elements(b: &[u8], r: Range<usize>) -> Option<Vec<Range<usize>>> {
    let end = r.end.min(b.len());
    let b = &b[..end];
    let mut i = skip_ws(b, r.start);
    if b.get(i) != Some(&b'[') {
        return None;
    }
    let mut out = Vec::new();
    i = skip_ws(b, i + 1);
    if b.get(i) == Some(&b']') {
        return Some(out);
    }
    loop {
        let v_end = value_end(b, i)?;
        out.push(i..v_end);
        i = skip_ws(b, v_end);
        match b.get(i) {
            Some(b',') => i = skip_ws(b, i + 1),
            Some(b']') => return Some(out),
            _ => return None,
        }
    }
}

/// The text of the JSON string `s` (quotes included), borrowed when it has no escapes.
pub fn string(s: &[u8]) -> Option<Cow<'_, str>> {
    if s.len() < 2 || s[0] != b'"' || s[s.len() - 1] != b'"' {
        return None;
    }
    let inner = &s[1..s.len() - 1];
    if !inner.contains(&b'\\') {
        return std::str::from_utf8(inner).ok().map(Cow::Borrowed);
    }
    serde_json::from_slice::<String>(s).ok().map(Cow::Owned)
}

/// Whether the JSON string `s` (quotes included) is `name`.
pub fn key_is(s: &[u8], name: &str) -> bool {
    if s.len() == name.len() + 2 && &s[1..s.len() - 1] == name.as_bytes() {
        return true;
    }
    s.contains(&b'\\') && string(s).is_some_and(|k| k == name)
}

/// The value of member `name` of the object spanning `r` (the last one, as `Value` keeps it);
/// `None` when absent or when `r` is not an object.
pub fn get(b: &[u8], r: Range<usize>, name: &str) -> Option<Range<usize>> {
    let mut found = None;
    each_member(b, r, |s| {
        if key_is(&b[s.key.clone()], name) {
            found = Some(s.value);
        }
        true
    })?;
    found
}

/// The string at `r`, if it is one.
pub fn as_str(b: &[u8], r: Range<usize>) -> Option<Cow<'_, str>> {
    string(b.get(r)?)
}

/// The first byte of the value at `r` (its type: `{`, `[`, `"`, `t`, `f`, `n`, or a number).
pub fn first(b: &[u8], r: &Range<usize>) -> Option<u8> {
    b.get(r.start).copied()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validate_matches_value() {
        for ok in [&br#"{"a":[1,2.5,-3e2,"x\u00e9",true,null,{}]}"#[..], b" [] ", b"\"s\"", b"1"] {
            assert!(validate(ok).is_ok(), "{}", String::from_utf8_lossy(ok));
        }
        for bad in [&b"{"[..], b"{\"a\":1,}", b"[1e400]", b"\"\\ud800\"", b"\"\xff\"", b"{} x", b"", br#"{"a":01}"#] {
            let want = serde_json::from_slice::<serde_json::Value>(bad).unwrap_err().to_string();
            assert_eq!(validate(bad).unwrap_err().to_string(), want, "{}", String::from_utf8_lossy(bad));
        }
        let deep = "[".repeat(200) + &"]".repeat(200);
        assert!(validate(deep.as_bytes()).is_err());
    }

    #[test]
    fn spans_of_members_and_elements() {
        let b = br#" { "a" : [1, {"x":"]}"}, "s\"q"] ,"b\u0063":{"n":"v\n"},"a":2 } "#;
        let m = members(b, 0..b.len()).unwrap();
        let keys: Vec<_> = m.iter().map(|s| string(&b[s.key.clone()]).unwrap().into_owned()).collect();
        assert_eq!(keys, ["a", "bc", "a"]);
        assert_eq!(&b[m[0].value.clone()], br#"[1, {"x":"]}"}, "s\"q"]"#);
        let e = elements(b, m[0].value.clone()).unwrap();
        assert_eq!(e.len(), 3);
        assert_eq!(&b[e[1].clone()], br#"{"x":"]}"}"#);
        assert_eq!(as_str(b, e[2].clone()).unwrap(), "s\"q");
        assert_eq!(&b[get(b, 0..b.len(), "a").unwrap()], b"2", "the last duplicate, as Value keeps");
        let bc = get(b, 0..b.len(), "bc").unwrap();
        assert_eq!(as_str(b, get(b, bc, "n").unwrap()).unwrap(), "v\n");
        assert!(members(b, e[0].clone()).is_none());
        assert!(elements(b, bc_range(b)).is_none());
        assert_eq!(members(b"{}", 0..2).unwrap(), vec![]);
        assert_eq!(elements(b"[ ]", 0..3).unwrap(), Vec::<Range<usize>>::new());
    }

    fn bc_range(b: &[u8]) -> Range<usize> {
        get(b, 0..b.len(), "bc").unwrap()
    }
}
