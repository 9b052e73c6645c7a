//! What the strict borrowing decodes of the common stream events share (the decodes themselves are
//! per format, in `crate::inspect::format::*::redact`). They are strict: every member
//! is named (`deny_unknown_fields`), members that may hold text must be absent or null (or, for
//! `obfuscation`, are scanned whole), so an event with any other string — a `refusal`, a
//! `reasoning_content`, an unknown field — takes the general path. A duplicate key, an unexpected
//! type or an escaped text fails the decode too.

use std::borrow::Cow;

use serde::de::IgnoredAny;
use serde::Deserialize;

/// A string borrowed from the input when it has no escapes (serde's own `Option<Cow<str>>` always
/// copies). Escaped strings come back owned, and the fast path then steps aside.
pub(in crate::inspect) fn opt_text<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Cow<'de, str>>, D::Error> {
    struct V;
    impl<'de> serde::de::Visitor<'de> for V {
        type Value = Option<Cow<'de, str>>;
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("a string or null")
        }
        fn visit_borrowed_str<E: serde::de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
            Ok(Some(Cow::Borrowed(v)))
        }
        fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Self::Value, E> {
            Ok(Some(Cow::Owned(v.to_owned())))
        }
        fn visit_unit<E: serde::de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_none<E: serde::de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_some<D: serde::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
            d.deserialize_str(V)
        }
    }
    d.deserialize_option(V)
}

/// Any JSON value without a string in it (numbers, booleans, nulls, arrays and objects of them;
/// object keys are names, not text).
pub(in crate::inspect) struct NoText;

impl<'de> Deserialize<'de> for NoText {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(NoTextVisitor)
    }
}

struct NoTextVisitor;

impl<'de> serde::de::Visitor<'de> for NoTextVisitor {
    type Value = NoText;
    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a value without strings")
    }
    fn visit_bool<E>(self, _: bool) -> Result<NoText, E> {
        Ok(NoText)
    }
    fn visit_i64<E>(self, _: i64) -> Result<NoText, E> {
        Ok(NoText)
    }
    fn visit_u64<E>(self, _: u64) -> Result<NoText, E> {
        Ok(NoText)
    }
    fn visit_f64<E>(self, _: f64) -> Result<NoText, E> {
        Ok(NoText)
    }
    fn visit_unit<E>(self) -> Result<NoText, E> {
        Ok(NoText)
    }
    fn visit_none<E>(self) -> Result<NoText, E> {
        Ok(NoText)
    }
    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut a: A) -> Result<NoText, A::Error> {
        while a.next_element::<NoText>()?.is_some() {}
        Ok(NoText)
    }
    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut a: A) -> Result<NoText, A::Error> {
        while a.next_entry::<IgnoredAny, NoText>()?.is_some() {}
        Ok(NoText)
    }
}

/// A `logprobs` value that carries no token data (`null`, a flag, `[]`): see
/// [`super::carries_token_data`]. Anything else sends the event to the general path, which drops it.
pub(in crate::inspect) struct NoTokenData;

impl<'de> Deserialize<'de> for NoTokenData {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = serde_json::Value::deserialize(d)?;
        if super::carries_token_data(&v) {
            return Err(serde::de::Error::custom("token data"));
        }
        Ok(NoTokenData)
    }
}
