//! Borrowing reads of JSON text already validated by serde_json: the spans of an object's members
//! and of an array's elements, and string values, without building a `Value`. The request body
//! ([`super::request::Payload`]) keeps the members the gateway never looks at (tool schemas,
//! sampling settings, metadata) as spans of the original bytes and reads tool names through these.
//!
//! Every function here assumes valid JSON (checked first by [`validate`]); on anything else they
//! return `None` or stop early, never panic.
//!
//! **Duplicate keys are refused.** JSON leaves an object with a key twice undefined: serde_json and
//! most parsers keep the last, some keep the first. A gateway that inspects one copy while the
//! upstream acts on the other is bypassed (a `model`, a tool `name`, a message's `content`), so
//! [`validate`] and [`parse_unique`] refuse such a body at any depth, comparing keys after their
//! escapes are decoded (`"m\u006fdel"` is `model`). The error names no key: a key is client text.

use std::borrow::Cow;
use std::collections::HashSet;
use std::ops::Range;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};

/// The error for an object with a key twice (serde_json adds the line and column).
const DUPLICATE_KEY: &str = "an object has the same key twice (refused: parsers disagree on which copy counts)";

/// Checks that `bytes` is one JSON value exactly as `serde_json::from_slice::<Value>` would (same
/// parser, same errors: syntax, UTF-8, escapes, numbers out of range, nesting depth), and that no
/// object has a key twice, without building it: strings are decoded into the parser's scratch
/// buffer and dropped.
pub fn validate(bytes: &[u8]) -> Result<(), serde_json::Error> {
    serde_json::from_slice::<Valid>(bytes).map(|_| ())
}

/// `serde_json::from_slice::<Value>`, refusing an object with a key twice.
pub fn parse_unique(bytes: &[u8]) -> Result<Value, serde_json::Error> {
    serde_json::from_slice::<Unique>(bytes).map(|u| u.0)
}

/// An object key, borrowed from the input unless it had escapes.
struct Key<'de>(Cow<'de, str>);

impl<'de> Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Key<'de>, D::Error> {
        struct KeyVisitor;
        impl<'de> Visitor<'de> for KeyVisitor {
            type Value = Key<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("an object key")
            }
            fn visit_borrowed_str<E: de::Error>(self, s: &'de str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Borrowed(s)))
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Owned(s.to_owned())))
            }
            fn visit_string<E: de::Error>(self, s: String) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Owned(s)))
            }
        }
        d.deserialize_str(KeyVisitor)
    }
}

/// The keys of one object so far: the first few without escapes as slices of the input (nothing
/// allocated, nothing to drop: the objects of an ordinary request), a hash set once there are more
/// or one had escapes (a schema with hundreds of properties stays linear).
struct Keys<'de> {
    few: [&'de str; FEW],
    n: usize,
    set: Option<HashSet<Cow<'de, str>>>,
}

const FEW: usize = 8;

impl<'de> Keys<'de> {
    fn new() -> Keys<'de> {
        Keys { few: [""; FEW], n: 0, set: None }
    }

    /// Adds `k`; false when it was there already.
    fn insert(&mut self, k: Cow<'de, str>) -> bool {
        if let Some(set) = &mut self.set {
            return set.insert(k);
        }
        match k {
            Cow::Borrowed(b) if self.n < FEW => {
                if self.few[..self.n].contains(&b) {
                    return false;
                }
                self.few[self.n] = b;
                self.n += 1;
                true
            }
            k => {
                let mut set: HashSet<Cow<'de, str>> = self.few[..self.n].iter().map(|s| Cow::Borrowed(*s)).collect();
                let fresh = set.insert(k);
                self.set = Some(set);
                fresh
            }
        }
    }
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
        let mut keys = Keys::new();
        while let Some(Key(k)) = map.next_key::<Key<'de>>()? {
            if !keys.insert(k) {
                return Err(de::Error::custom(DUPLICATE_KEY));
            }
            map.next_value::<Valid>()?;
        }
        Ok(Valid)
    }
}

/// A `Value` whose objects have no key twice.
struct Unique(Value);

impl<'de> Deserialize<'de> for Unique {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Unique, D::Error> {
        d.deserialize_any(UniqueVisitor)
    }
}

struct UniqueVisitor;

impl<'de> Visitor<'de> for UniqueVisitor {
    type Value = Unique;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("any valid JSON value")
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Unique, E> {
        Ok(Unique(Value::Bool(v)))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Unique, E> {
        Ok(Unique(Value::from(v)))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Unique, E> {
        Ok(Unique(Value::from(v)))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Unique, E> {
        Ok(Unique(serde_json::Number::from_f64(v).map_or(Value::Null, Value::Number)))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Unique, E> {
        Ok(Unique(Value::String(v.to_owned())))
    }
    fn visit_string<E: de::Error>(self, v: String) -> Result<Unique, E> {
        Ok(Unique(Value::String(v)))
    }
    fn visit_unit<E: de::Error>(self) -> Result<Unique, E> {
        Ok(Unique(Value::Null))
    }
    fn visit_none<E: de::Error>(self) -> Result<Unique, E> {
        Ok(Unique(Value::Null))
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Unique, D::Error> {
        Unique::deserialize(d)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Unique, A::Error> {
        let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(4096));
        while let Some(Unique(v)) = seq.next_element::<Unique>()? {
            out.push(v);
        }
        Ok(Unique(Value::Array(out)))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Unique, A::Error> {
        let mut out = Map::new();
        while let Some(Key(k)) = map.next_key::<Key<'de>>()? {
            let Unique(v) = map.next_value::<Unique>()?;
            if out.insert(k.into_owned(), v).is_some() {
                return Err(de::Error::custom(DUPLICATE_KEY));
            }
        }
        Ok(Unique(Value::Object(out)))
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
        assert!(parse_unique(deep.as_bytes()).is_err());
    }

    #[test]
    fn a_key_twice_is_refused_at_any_depth_and_however_it_is_escaped() {
        let twice = [
            &br#"{"model":"a","model":"b"}"#[..],
            br#"{"model":"a","m\u006fdel":"b"}"#,
            br#"{"messages":[{"role":"user","content":"x","content":"y"}]}"#,
            br#"[1,{"a":{"b":1,"c":2,"b":3}}]"#,
            br#"{"\ud83d\ude00":1,"\uD83D\uDE00":2}"#,
        ];
        for b in twice {
            let e = validate(b).expect_err(&String::from_utf8_lossy(b)).to_string();
            assert!(e.starts_with(DUPLICATE_KEY) && e.contains("column"), "{e}");
            let e = parse_unique(b).expect_err(&String::from_utf8_lossy(b)).to_string();
            assert!(e.starts_with(DUPLICATE_KEY), "{e}");
        }
        // Past the few kept in place, the set takes over; near-misses are distinct keys.
        let many: Vec<String> = (0..40).map(|i| format!("\"k{i}\":{i}")).collect();
        let ok = format!("{{{},\"K0\":0,\"k0 \":0}}", many.join(","));
        assert!(validate(ok.as_bytes()).is_ok());
        assert_eq!(parse_unique(ok.as_bytes()).unwrap(), serde_json::from_str::<Value>(&ok).unwrap());
        let bad = format!("{{{},\"k39\":1}}", many.join(","));
        assert!(validate(bad.as_bytes()).is_err() && parse_unique(bad.as_bytes()).is_err());
        let bad = format!("{{{},\"k3\":1}}", many[..FEW].join(","));
        assert!(validate(bad.as_bytes()).is_err() && parse_unique(bad.as_bytes()).is_err());
        // The same key in sibling objects is fine; values are what serde_json builds.
        let b = br#"{"a":[{"x":1.5,"y":null},{"x":-2,"y":[true,"s\n"]}],"b":18446744073709551615}"#;
        assert_eq!(parse_unique(b).unwrap(), serde_json::from_slice::<Value>(b).unwrap());
        assert!(validate(b).is_ok());
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
