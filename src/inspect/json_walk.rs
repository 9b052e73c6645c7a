//! A borrowing walk over a whole JSON body, for the response phase's common case: nothing in the
//! body needs rewriting, but every text string must still be checked (redaction, links) and every
//! string counted for system-prompt fragments. Parsing into a `serde_json::Value` allocates a
//! `String` per string and a `BTreeMap` node per key only to throw them away; this walk borrows the
//! strings from the input (escaped strings alone are copied) and stops at the first string that
//! needs rewriting, so that the caller can take the general path through a `Value` for that body.
//!
//! It is built on serde_json's own parser (a `DeserializeSeed`), so it accepts and refuses exactly
//! what `serde_json::from_slice::<Value>` does (syntax, UTF-8, recursion limit, trailing bytes). The
//! strings come out in the order the response phase's `collect_strings` reads them from a `Value`:
//! object entries sorted by key, a repeated key counting once with its last value (serde_json's map
//! is a `BTreeMap` here), array elements in order.

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};

use super::redact::SKIP_KEYS;

/// Every string of the JSON document `bytes`, in `Value` order (see the module docs), when the
/// document parses and `needs_rewrite` says `false` for every string outside the identifier keys
/// ([`SKIP_KEYS`], which the redaction leaves alone). `None` when the body is not JSON or a string
/// needs rewriting: the caller then takes the general path.
pub fn clean_strings<'de>(bytes: &'de [u8], needs_rewrite: &mut dyn FnMut(&str) -> bool) -> Option<Vec<Cow<'de, str>>> {
    let mut out = Vec::new();
    let mut de = serde_json::Deserializer::from_slice(bytes);
    Walk { out: &mut out, check: needs_rewrite, skip: false }.deserialize(&mut de).ok()?;
    de.end().ok()?;
    Some(out)
}

/// One value's walk: strings go to `out`; `skip` is set under an identifier key.
struct Walk<'a, 'de> {
    out: &'a mut Vec<Cow<'de, str>>,
    check: &'a mut dyn FnMut(&str) -> bool,
    skip: bool,
}

impl<'de> Walk<'_, 'de> {
    fn string<E: de::Error>(self, s: Cow<'de, str>) -> Result<(), E> {
        if !self.skip && (self.check)(&s) {
            // Not an error in the body: the signal to take the general path.
            return Err(E::custom("a string needs rewriting"));
        }
        self.out.push(s);
        Ok(())
    }
}

impl<'de> DeserializeSeed<'de> for Walk<'_, 'de> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Walk<'_, 'de> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E>(self, _: bool) -> Result<(), E> {
        Ok(())
    }

    fn visit_i64<E>(self, _: i64) -> Result<(), E> {
        Ok(())
    }

    fn visit_u64<E>(self, _: u64) -> Result<(), E> {
        Ok(())
    }

    fn visit_i128<E>(self, _: i128) -> Result<(), E> {
        Ok(())
    }

    fn visit_u128<E>(self, _: u128) -> Result<(), E> {
        Ok(())
    }

    fn visit_f64<E>(self, _: f64) -> Result<(), E> {
        Ok(())
    }

    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }

    fn visit_none<E>(self) -> Result<(), E> {
        Ok(())
    }

    fn visit_borrowed_str<E: de::Error>(self, s: &'de str) -> Result<(), E> {
        self.string(Cow::Borrowed(s))
    }

    fn visit_str<E: de::Error>(self, s: &str) -> Result<(), E> {
        self.string(Cow::Owned(s.to_owned()))
    }

    fn visit_string<E: de::Error>(self, s: String) -> Result<(), E> {
        self.string(Cow::Owned(s))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let Walk { out, check, skip } = self;
        while seq.next_element_seed(Walk { out: &mut *out, check: &mut *check, skip })?.is_some() {}
        Ok(())
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let Walk { out, check, skip } = self;
        let base = out.len();
        // (key, the range of `out` its value's strings take).
        let mut entries: Vec<(Cow<'de, str>, usize, usize)> = Vec::new();
        let mut sorted = true;
        while let Some(key) = map.next_key_seed(Key)? {
            let start = out.len();
            if !skip && key == super::redact::TOKEN_DATA {
                // Token data is dropped from every answer (`redact::drop_token_data`): a body that
                // carries it takes the general path; a flag or null is passed as it is.
                let v: serde_json::Value = map.next_value()?;
                if super::redact::carries_token_data(&v) {
                    return Err(de::Error::custom("token data to drop"));
                }
                sorted &= entries.last().is_none_or(|(prev, _, _)| *prev < key);
                entries.push((key, start, out.len()));
                continue;
            }
            let skip = skip || SKIP_KEYS.contains(&&*key);
            map.next_value_seed(Walk { out: &mut *out, check: &mut *check, skip })?;
            sorted &= entries.last().is_none_or(|(prev, _, _)| *prev < key);
            entries.push((key, start, out.len()));
        }
        if !sorted {
            reorder(out, base, &mut entries);
        }
        Ok(())
    }
}

/// Puts the strings of one object's entries (`out[base..]`) in key order, a repeated key keeping
/// only its last value: the order a `BTreeMap` iterates them in.
fn reorder<'de>(out: &mut Vec<Cow<'de, str>>, base: usize, entries: &mut [(Cow<'de, str>, usize, usize)]) {
    // Stable: equal keys stay in document order, so the last of a run is the value a map keeps.
    entries.sort_by(|a, b| a.0.cmp(&b.0));
    let mut tail: Vec<Option<Cow<'de, str>>> = out.drain(base..).map(Some).collect();
    for (i, (key, start, end)) in entries.iter().enumerate() {
        if entries.get(i + 1).is_some_and(|next| next.0 == *key) {
            continue;
        }
        out.extend(tail[start - base..end - base].iter_mut().filter_map(Option::take));
    }
}

/// A map key, borrowed when it has no escapes.
struct Key;

impl<'de> DeserializeSeed<'de> for Key {
    type Value = Cow<'de, str>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for Key {
    type Value = Cow<'de, str>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a string key")
    }

    fn visit_borrowed_str<E>(self, s: &'de str) -> Result<Self::Value, E> {
        Ok(Cow::Borrowed(s))
    }

    fn visit_str<E>(self, s: &str) -> Result<Self::Value, E> {
        Ok(Cow::Owned(s.to_owned()))
    }

    fn visit_string<E>(self, s: String) -> Result<Self::Value, E> {
        Ok(Cow::Owned(s))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    /// The strings of a `Value`, as the response phase collects them.
    fn value_strings(v: &Value, out: &mut Vec<String>) {
        match v {
            Value::String(s) => out.push(s.clone()),
            Value::Array(a) => a.iter().for_each(|x| value_strings(x, out)),
            Value::Object(m) => m.values().for_each(|x| value_strings(x, out)),
            _ => {}
        }
    }

    fn walk(text: &str) -> Option<Vec<String>> {
        clean_strings(text.as_bytes(), &mut |_| false).map(|v| v.into_iter().map(Cow::into_owned).collect())
    }

    fn via_value(text: &str) -> Option<Vec<String>> {
        let v: Value = serde_json::from_str(text).ok()?;
        let mut out = Vec::new();
        value_strings(&v, &mut out);
        Some(out)
    }

    #[test]
    fn same_strings_in_the_same_order_as_a_value() {
        for doc in [
            r#"{"id":"x","object":"chat.completion","choices":[{"index":0,"message":{"role":"assistant","content":"hello world"},"finish_reason":"stop"}],"usage":{"total_tokens":3}}"#,
            r#"{"b":"1","a":"2","a":"3","c":["4",{"z":"5","y":"6"}],"b":{"k":"7"}}"#,
            r#"{"k\u0061":"esc\"aped\n","ka":"plain","a":[1,2.5,-3,true,null,"x"]}"#,
            r#"["a",["b",["c"]],{"":"empty key"}]"#,
            r#""just a string""#,
            r#"  {"a": "spaced" }  "#,
            "123",
            r#"{"n":18446744073709551616,"m":-1e400}"#,
        ] {
            assert_eq!(walk(doc), via_value(doc), "{doc}");
        }
    }

    #[test]
    fn refuses_what_serde_json_refuses() {
        let deep = "[".repeat(200) + &"]".repeat(200);
        for doc in [r#"{"a":1,}"#, r#"{"a":1} x"#, r#"{"a":"#, "", r#"{"a":"\ud800"}"#, deep.as_str(), "nul"] {
            assert_eq!(walk(doc), via_value(doc), "{doc}");
            assert!(walk(doc).is_none(), "{doc}");
        }
    }

    #[test]
    fn stops_at_a_string_that_needs_rewriting_outside_identifier_keys() {
        let doc = br#"{"id":"SECRET","choices":[{"message":{"content":"no secret here"}}]}"#;
        assert!(clean_strings(doc, &mut |s| s.contains("SECRET")).is_some());
        assert!(clean_strings(doc, &mut |s| s.contains("secret")).is_none());
        // Under an identifier key the whole subtree is left alone, as the redaction does.
        let doc = br#"{"id":"x","usage":{"name":"SECRET"}}"#;
        assert!(clean_strings(doc, &mut |s| s.contains("SECRET")).is_some());
        // Token data is never clean: the general path drops it.
        let doc = br#"{"choices":[{"logprobs":{"content":[{"token":"hi"}]}}]}"#;
        assert!(clean_strings(doc, &mut |_| false).is_none());
        for doc in [&br#"{"logprobs":null}"#[..], br#"{"logprobs":true}"#, br#"{"logprobs":3}"#] {
            assert!(clean_strings(doc, &mut |_| false).is_some());
        }
    }
}
