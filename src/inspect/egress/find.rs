//! Finding URLs in free text: `scheme://…` for any scheme, `javascript:`, `vbscript:` and `data:`
//! URLs, `www.` links, and bare `a.b.c.d:port` addresses.
//!
//! Where a URL ends follows the GFM autolink rules: it runs to whitespace, `<`, `>`, `"` or a
//! backtick; trailing punctuation (`.,:;!?'*_~`) and unbalanced closing brackets are not part of it.

use std::ops::Range;
use std::sync::LazyLock;

use regex::Regex;

/// Where a URL may start. `\b` keeps `metadata:` or `xwww.` from matching.
static START: LazyLock<Option<Regex>> = LazyLock::new(|| {
    Regex::new(
        r"(?i)\b(?:[a-z][a-z0-9+.\-]*://|(?:javascript|vbscript|data):|www\.)|\b(?:\d{1,3}\.){3}\d{1,3}:\d{1,5}\b",
    )
    .ok()
});

/// Byte ranges of the URLs in `text`, in order, not overlapping (a URL inside another one's query
/// is part of the outer one).
pub fn find_urls(text: &str) -> Vec<Range<usize>> {
    let mut out: Vec<Range<usize>> = Vec::new();
    let Some(re) = START.as_ref() else {
        return out;
    };
    for m in re.find_iter(text) {
        if out.last().is_some_and(|r| m.start() < r.end) {
            continue;
        }
        let prefix = m.as_str();
        // `data: the numbers`, `javascript: a language`, `www.` alone: not URLs.
        let next = text[m.end()..].chars().next();
        let needs_more = prefix.ends_with(':') || prefix.ends_with('.');
        if needs_more && !next.is_some_and(|c| c.is_alphanumeric() || c == '/' || c == '%') {
            continue;
        }
        let end = url_end(text, m.start(), m.end());
        if end > m.start() {
            out.push(m.start()..end);
        }
    }
    out
}

/// The end of a URL that starts at `start` and whose prefix ends at `from`.
fn url_end(text: &str, start: usize, from: usize) -> usize {
    let rest = &text[from..];
    let stop = rest
        .char_indices()
        .find(|&(_, c)| c.is_whitespace() || c.is_control() || matches!(c, '<' | '>' | '"' | '`'))
        .map_or(rest.len(), |(i, _)| i);
    let mut end = from + stop;
    loop {
        let url = &text[start..end];
        let Some(last) = url.chars().next_back() else {
            return end;
        };
        let trim = match last {
            '.' | ',' | ':' | ';' | '!' | '?' | '\'' | '*' | '_' | '~' => true,
            ')' => url.matches('(').count() < url.matches(')').count(),
            ']' => url.matches('[').count() < url.matches(']').count(),
            '}' => url.matches('{').count() < url.matches('}').count(),
            _ => false,
        };
        if !trim || end - last.len_utf8() < from {
            return end;
        }
        end -= last.len_utf8();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn urls(text: &str) -> Vec<&str> {
        find_urls(text).into_iter().map(|r| &text[r]).collect()
    }

    #[test]
    fn finds_urls_in_prose() {
        assert_eq!(urls("see https://a.com/x?y=1. Then"), ["https://a.com/x?y=1"]);
        assert_eq!(urls("(see http://a.com/wiki/Foo_(bar))"), ["http://a.com/wiki/Foo_(bar)"]);
        assert_eq!(urls("[x](http://a.com/p)"), ["http://a.com/p"]);
        assert_eq!(urls("<http://a.com>"), ["http://a.com"]);
        assert_eq!(
            urls("go to www.example.com, or FTP://files.example.org/x!"),
            ["www.example.com", "FTP://files.example.org/x"]
        );
        assert_eq!(urls("a javascript:alert(1) b"), ["javascript:alert(1)"]);
        assert_eq!(urls("img data:image/png;base64,AAAA end"), ["data:image/png;base64,AAAA"]);
        assert_eq!(urls("gopher://h:70/_x and file:///etc/passwd"), ["gopher://h:70/_x", "file:///etc/passwd"]);
        assert_eq!(urls("connect to 10.0.0.5:6379 now"), ["10.0.0.5:6379"]);
        assert_eq!(urls("https://a.com/?next=http://b.com/"), ["https://a.com/?next=http://b.com/"]);
        assert_eq!(urls("\"http://a.com\""), ["http://a.com"]);
        assert_eq!(urls("http://a.com'@b.com/"), ["http://a.com'@b.com/"]);
    }

    #[test]
    fn leaves_look_alikes() {
        assert!(urls("metadata: none, data: the numbers, javascript: a language").is_empty());
        assert!(urls("version 1.2.3.4 and 10.0.0.1 and www. and xwww.a.com").is_empty());
        assert!(urls("a :// b").is_empty());
        assert!(urls("").is_empty());
    }
}
