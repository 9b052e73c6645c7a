//! One policy file's text → [`RawPolicy`], every unknown key reported.

use std::borrow::Cow;
use std::ops::Range;

use crate::config::raw::RawPolicy;
use crate::config::validate::Problems;

/// Parses one file. An unknown key is reported, blanked out (newlines kept, so every line number
/// stays the same) and parsing goes on, so one misspelt key does not hide the file's other problems.
/// Any other parse error stops at that error.
pub(super) fn parse(file: usize, text: &str, problems: &mut Problems) -> Option<RawPolicy> {
    const MAX_UNKNOWN_KEYS: usize = 64;
    let mut current = Cow::Borrowed(text);
    let mut unknown = 0;
    loop {
        let e = match toml::from_str::<RawPolicy>(&current) {
            Ok(raw) => return Some(raw),
            Err(e) => e,
        };
        let line = e.span().map_or(0, |s| current[..s.start.min(current.len())].matches('\n').count() + 1);
        let msg = e.message().trim().to_owned();
        if msg.starts_with("unknown field") {
            problems.add_at_line(
                file,
                line,
                msg,
                Some("remove the key or fix its spelling; policies/example.toml documents every key".into()),
            );
            unknown += 1;
            match e.span().and_then(|s| without_key_at(&current, s.start)) {
                Some(next) if unknown < MAX_UNKNOWN_KEYS => {
                    current = Cow::Owned(next);
                    continue;
                }
                _ => return None,
            }
        }
        problems.add_at_line(file, line, msg, Some("fix the TOML syntax or the value's type".into()));
        return None;
    }
}

/// `text` with the key whose name starts at byte `at` (and its value, or its whole table) replaced
/// by spaces, newlines kept; `None` when that cannot be done cleanly (the caller then stops).
fn without_key_at(text: &str, at: usize) -> Option<String> {
    let doc = toml_edit::ImDocument::parse(text).ok()?;
    let ranges = find(text.as_bytes(), doc.as_table(), at)?;
    let mut bytes = text.as_bytes().to_vec();
    for r in ranges {
        for b in bytes.get_mut(r)? {
            if *b != b'\n' {
                *b = b' ';
            }
        }
    }
    // Only ASCII bytes inside whole items were replaced, but check: the result must still be TOML.
    let out = String::from_utf8(bytes).ok()?;
    toml_edit::ImDocument::parse(out.as_str()).ok()?;
    Some(out)
}

/// The byte ranges of the key starting at `at` in `t` (searched at every depth) and its value.
fn find(text: &[u8], t: &dyn toml_edit::TableLike, at: usize) -> Option<Vec<Range<usize>>> {
    use toml_edit::{Item, Value};
    for (k, item) in t.iter() {
        let key = t.key(k)?;
        if key.span().is_some_and(|s| s.start == at) {
            let mut out = Vec::new();
            match item {
                Item::Value(v) => out.push(with_comma(text, at..v.span()?.end)),
                other => leaf_ranges(other, &mut out)?,
            }
            return Some(out);
        }
        let found = match item {
            Item::Table(t) => find(text, t, at),
            Item::ArrayOfTables(a) => a.iter().find_map(|t| find(text, t, at)),
            Item::Value(Value::InlineTable(t)) => find(text, t, at),
            Item::Value(Value::Array(a)) => a.iter().find_map(|v| match v {
                Value::InlineTable(t) => find(text, t, at),
                _ => None,
            }),
            _ => None,
        };
        if found.is_some() {
            return found;
        }
    }
    None
}

/// The ranges of a whole table (or array of tables): its header and every key-value in it.
fn leaf_ranges(item: &toml_edit::Item, out: &mut Vec<Range<usize>>) -> Option<()> {
    use toml_edit::Item;
    match item {
        Item::Table(t) => {
            if t.is_dotted() {
                return None;
            }
            // A header of its own, or an implicit parent of sub-tables only.
            if let Some(s) = t.span() {
                out.push(s);
            }
            for (k, child) in t.iter() {
                match child {
                    Item::Value(v) => out.push(t.key(k)?.span()?.start..v.span()?.end),
                    other => leaf_ranges(other, out)?,
                }
            }
        }
        Item::ArrayOfTables(a) => {
            for t in a.iter() {
                leaf_ranges(&Item::Table(t.clone()), out)?;
            }
        }
        _ => return None,
    }
    Some(())
}

/// A key-value inside an inline table takes one of its separating commas with it.
fn with_comma(text: &[u8], r: Range<usize>) -> Range<usize> {
    let blank = |b: &u8| *b == b' ' || *b == b'\t';
    let after = r.end + text.get(r.end..).map_or(0, |t| t.iter().take_while(|b| blank(b)).count());
    if text.get(after) == Some(&b',') {
        return r.start..after + 1;
    }
    let before = r.start - text[..r.start].iter().rev().take_while(|b| blank(b)).count();
    if before > 0 && text[before - 1] == b',' {
        return before - 1..r.end;
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    fn messages(text: &str) -> (bool, Vec<(usize, String)>) {
        let mut p = Problems::default();
        let ok = parse(0, text, &mut p).is_some();
        (ok, super::super::tests::located(p, text).into_iter().map(|l| (l.line, l.message)).collect())
    }

    #[test]
    fn good_text_parses_with_no_problem() {
        let (ok, found) = messages("[listen]\nproxy = \"127.0.0.1:1\"\n");
        assert!(ok && found.is_empty(), "{found:?}");
    }

    #[test]
    fn every_unknown_key_is_reported_at_its_line() {
        let text = "[listen]\nproxi = \"x\"\n\n[limits]\nmax_body = 1\nmax_request_body_bytes = 5\n";
        let (ok, found) = messages(text);
        assert!(ok, "the rest of the file is still read");
        assert_eq!(found.len(), 2, "{found:?}");
        assert_eq!(found[0].0, 2);
        assert!(found[0].1.starts_with("unknown field `proxi`"), "{found:?}");
        assert_eq!(found[1].0, 5);
        assert!(found[1].1.starts_with("unknown field `max_body`"), "{found:?}");
    }

    #[test]
    fn unknown_keys_in_inline_tables_and_whole_tables_are_blanked() {
        let text =
            "[listen]\nproxy_tls = { cert_file = \"c\", colour = 1, key_file = \"k\" }\n\n[nonsense.deep]\nx = 1\n";
        let (_, found) = messages(text);
        assert_eq!(found.len(), 2, "{found:?}");
        assert!(found[0].1.contains("`colour`"), "{found:?}");
        assert!(found[1].1.contains("`nonsense`"), "{found:?}");
        assert_eq!(
            without_key_at("a = { b = 1, c = 2 }\n", 13).as_deref(),
            Some(format!("a = {{ b = 1{}}}\n", " ".repeat(8)).as_str()),
            "the key and one comma go"
        );
    }

    #[test]
    fn a_syntax_error_stops_with_its_hint() {
        let mut p = Problems::default();
        assert!(parse(0, "[listen\n", &mut p).is_none());
        let found = super::super::tests::located(p, "[listen\n");
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].hint.as_deref(), Some("fix the TOML syntax or the value's type"));
    }
}
