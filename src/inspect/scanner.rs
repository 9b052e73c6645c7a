//! The scanner: one aho-corasick automaton over every rule's keywords (built once per policy), run
//! behind a SIMD prefilter that skips most of clean text ([`super::prefilter`]), plus a digit-run
//! detector decide where to look; each rule's regex runs only in a small window around an
//! anchor; validators confirm. Never one big regex set over the whole text.

use std::borrow::Cow;

use aho_corasick::{AhoCorasick, AhoCorasickBuilder, MatchKind};

use super::prefilter::Prefilter;
use super::rule::{Anchor, Rule, RuleError};

/// A confirmed match: byte range of the secret in the scanned text, and the rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Finding {
    /// Start (inclusive).
    pub start: usize,
    /// End (exclusive).
    pub end: usize,
    /// Index of the rule in the scanner.
    pub rule: u16,
}

/// Keyword hits in a growing text (a stream's hold-back buffer), kept between pushes so that each
/// byte goes through the automaton once, not once per push.
#[derive(Debug, Default)]
pub struct Hits {
    /// `(start, end, pattern)` in text coordinates, in the automaton's order (by end).
    list: Vec<(usize, usize, u32)>,
    /// Every hit that ends at or before this and starts at or after `from` is in `list`.
    scanned: usize,
    from: usize,
}

impl Hits {
    /// The text lost its first `n` bytes.
    pub fn shift(&mut self, n: usize) {
        self.list.retain(|h| h.0 >= n);
        self.list.iter_mut().for_each(|h| {
            h.0 -= n;
            h.1 -= n;
        });
        self.scanned = self.scanned.saturating_sub(n);
        self.from = self.from.saturating_sub(n);
    }

    /// The text was emptied.
    pub fn clear(&mut self) {
        self.list.clear();
        self.scanned = 0;
        self.from = 0;
    }
}

/// A compiled set of rules.
#[derive(Debug)]
pub struct Scanner {
    rules: Vec<Rule>,
    automaton: Option<AhoCorasick>,
    /// Finds candidate positions for the automaton (skips most of clean text); `None` when the
    /// keyword set does not fit one (the automaton then walks every byte).
    prefilter: Option<Prefilter>,
    /// Keyword pattern index → rules anchored on it.
    by_keyword: Vec<Vec<u16>>,
    /// Rules anchored on digit runs, with their minimum digit count.
    digit_rules: Vec<(u16, usize)>,
    min_digits: usize,
    /// Bytes a stream must hold back (longest bounded match, or keyword, plus one).
    hold: usize,
    /// Bytes of released text a stream keeps as left context.
    context: usize,
    /// How far before the end of a stream a match whose anchor has not arrived yet may start.
    future_hold: usize,
    /// The widest anchor window (before + keyword + max_len), bounding the tail a stream re-checks.
    widest: usize,
    /// The longest keyword (bytes).
    max_keyword: usize,
    replacements: Vec<String>,
    /// The replacement template (`<rule-id>` not yet substituted), for [`Scanner::extended`].
    template: String,
}

impl Scanner {
    /// Compiles the rules into one scanner. Several rules may share an id (one concept, several
    /// encodings, as canaries do).
    pub fn new(rules: Vec<Rule>, replacement: &str) -> Result<Scanner, RuleError> {
        if rules.len() > u16::MAX as usize {
            return Err(RuleError { id: String::new(), message: "too many rules".into() });
        }
        let mut keywords: Vec<String> = Vec::new();
        let mut by_keyword: Vec<Vec<u16>> = Vec::new();
        let mut digit_rules = Vec::new();
        let mut hold = 1;
        let mut context = 1;
        let mut future_hold = 1;
        let mut widest = 1;
        for (i, r) in rules.iter().enumerate() {
            match &r.anchor {
                Anchor::Keywords(ks) => {
                    for k in ks {
                        let k = k.to_ascii_lowercase();
                        hold = hold.max(k.len() + 1);
                        match keywords.iter().position(|x| *x == k) {
                            Some(p) => by_keyword[p].push(i as u16),
                            None => {
                                keywords.push(k);
                                by_keyword.push(vec![i as u16]);
                            }
                        }
                    }
                }
                Anchor::Digits(n) => digit_rules.push((i as u16, *n)),
            }
            let longest_kw = match &r.anchor {
                Anchor::Keywords(ks) => ks.iter().map(String::len).max().unwrap_or(0),
                Anchor::Digits(_) => 1,
            };
            // A future anchor starts at most `longest_kw - 1` bytes before the end; its match may
            // start `before` bytes ahead of it; one more byte for a `\b` before the match.
            future_hold = future_hold.max(longest_kw + r.before + 1);
            widest = widest.max(r.before + longest_kw + r.max_len + 8);
            if r.terminator.is_none() {
                hold = hold.max(r.max_len + 1);
            }
            // A block rule (terminator) never needs its cap as left context: a stream never releases
            // past the start of a block that may still match, so only its `before` counts.
            let span = if r.terminator.is_some() { 0 } else { r.max_len };
            context = context.max(r.before + span + 1);
        }
        let automaton = if keywords.is_empty() {
            None
        } else {
            Some(
                // A DFA: with ASCII case folding aho-corasick has no SIMD prefilter for a catalog this
                // size (ours, `Prefilter`, picks the bytes it walks), and the DFA walks about twice
                // as fast as the default (NFA) choice.
                AhoCorasickBuilder::new()
                    .ascii_case_insensitive(true)
                    .match_kind(MatchKind::Standard)
                    .kind(Some(aho_corasick::AhoCorasickKind::DFA))
                    .build(&keywords)
                    .map_err(|e| RuleError { id: String::new(), message: e.to_string() })?,
            )
        };
        let prefilter = if automaton.is_some() { Prefilter::new(&keywords) } else { None };
        let min_digits = digit_rules.iter().map(|(_, n)| *n).min().unwrap_or(usize::MAX);
        let max_keyword = keywords.iter().map(String::len).max().unwrap_or(0);
        let replacements = rules.iter().map(|r| replacement.replace("<rule-id>", &r.id)).collect();
        Ok(Scanner {
            rules,
            automaton,
            prefilter,
            by_keyword,
            digit_rules,
            min_digits,
            hold,
            context,
            future_hold,
            widest,
            max_keyword,
            replacements,
            template: replacement.to_owned(),
        })
    }

    /// A scanner with this one's rules and `extra` (e.g. the canaries of managed prompts).
    pub fn extended(&self, extra: Vec<Rule>) -> Result<Scanner, RuleError> {
        let mut rules = self.rules.clone();
        rules.extend(extra);
        Scanner::new(rules, &self.template)
    }

    /// The rule of a finding.
    pub fn rule(&self, i: u16) -> &Rule {
        &self.rules[i as usize]
    }

    /// All rules.
    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    /// Bytes a stream holds back so that no part of a future match is released early.
    pub fn hold(&self) -> usize {
        self.hold
    }

    /// The longest prefix of a growing `text` (of which `released` bytes are out already) that no
    /// future match can reach into: before any anchor whose window is not complete yet, before a
    /// digit run that may still grow, and far enough from the end that an anchor still to come
    /// cannot start a match in it. Clean text therefore flows with a hold of only a few bytes.
    pub fn stable_prefix(&self, text: &str, released: usize) -> usize {
        self.stable_prefix_with(text, released, None)
    }

    /// [`Scanner::stable_prefix`] with the keyword hits of `text` known already.
    pub fn stable_prefix_with(&self, text: &str, released: usize, hits: Option<&Hits>) -> usize {
        let b = text.as_bytes();
        let len = b.len();
        let mut cut = len.saturating_sub(self.future_hold);
        // Hits further back either have complete windows or lie in released text.
        let lo = floor(text, len.saturating_sub(self.widest).max(released.saturating_sub(self.context)));
        if self.automaton.is_some() {
            let fresh;
            let list = match hits {
                Some(h) if h.from <= lo && h.scanned == len => &h.list[..],
                _ => {
                    fresh = self.keyword_hits(b, lo);
                    &fresh[..]
                }
            };
            for &(hs, he, pat) in list.iter().filter(|h| h.0 >= lo) {
                for &ri in &self.by_keyword[pat as usize] {
                    let r = &self.rules[ri as usize];
                    if he + r.max_len < len {
                        continue; // the window is complete: its findings are final
                    }
                    // A block (PEM) that already reached its terminator cannot grow any more.
                    if let Some(t) = &r.terminator {
                        if self.try_rule(text, ri, hs, he).is_some_and(|f| text[f.start..f.end].ends_with(t.as_str())) {
                            continue;
                        }
                    }
                    cut = cut.min(hs.saturating_sub(r.before));
                }
            }
        }
        if !self.digit_rules.is_empty() {
            // A digit run ending within the digit window (8 bytes) of the end may still grow or
            // change its match: hold from its start (minus the rules' `before`).
            if let Some(last) = b[len.saturating_sub(9)..].iter().rposition(u8::is_ascii_digit) {
                let mut s0 = len.saturating_sub(9) + last;
                while s0 > 0 && (b[s0 - 1].is_ascii_digit() || matches!(b[s0 - 1], b' ' | b'-' | b'.')) {
                    s0 -= 1;
                }
                let max_before =
                    self.digit_rules.iter().map(|(ri, _)| self.rules[*ri as usize].before).max().unwrap_or(0);
                cut = cut.min(s0.saturating_sub(max_before));
            }
        }
        floor(text, cut)
    }

    /// Bytes of already-released text kept as left context for the next scan.
    pub fn context(&self) -> usize {
        self.context
    }

    /// The replacement text of a rule.
    pub fn replacement(&self, rule: u16) -> &str {
        &self.replacements[rule as usize]
    }

    /// Findings in `text`, sorted and merged (overlaps become one finding, first rule wins).
    pub fn scan(&self, text: &str) -> Vec<Finding> {
        self.scan_from(text, 0)
    }

    /// Findings that end after `from`; text before `from` is context only.
    pub fn scan_from(&self, text: &str, from: usize) -> Vec<Finding> {
        self.scan_from_with(text, from, None)
    }

    /// Brings `hits` up to date with `text`, which grew (or was shifted) since the last call: only the
    /// new bytes (and a keyword's length before them) go through the automaton.
    pub fn update_hits(&self, text: &str, hits: &mut Hits) {
        let Some(ac) = &self.automaton else { return };
        let b = text.as_bytes();
        if hits.scanned > b.len() {
            hits.clear();
        }
        let start = hits.scanned.saturating_sub(self.max_keyword.saturating_sub(1)).max(hits.from);
        walk(ac, self.prefilter.as_ref(), b, start, hits.scanned, &mut hits.list);
        hits.scanned = b.len();
    }

    /// Keyword hits that start at or after `lo`, in the automaton's order (by end).
    fn keyword_hits(&self, b: &[u8], lo: usize) -> Vec<(usize, usize, u32)> {
        let mut out = Vec::new();
        if let Some(ac) = &self.automaton {
            walk(ac, self.prefilter.as_ref(), b, lo, 0, &mut out);
        }
        out
    }

    /// [`Scanner::scan_from`] with the keyword hits of `text` known already.
    pub fn scan_from_with(&self, text: &str, from: usize, hits: Option<&Hits>) -> Vec<Finding> {
        let mut out = Vec::new();
        let bytes = text.as_bytes();
        let lo = floor(text, from.saturating_sub(self.hold));
        if self.automaton.is_some() {
            let fresh;
            let list = match hits {
                Some(h) if h.from <= lo && h.scanned == bytes.len() => &h.list[..],
                _ => {
                    fresh = self.keyword_hits(bytes, lo);
                    &fresh[..]
                }
            };
            // Allocated at the first hit only: clean text never needs it.
            let mut last_end: Vec<usize> = Vec::new();
            for &(hs, he, pat) in list.iter().filter(|h| h.0 >= lo) {
                for &ri in &self.by_keyword[pat as usize] {
                    if last_end.is_empty() {
                        last_end.resize(self.rules.len(), 0);
                    }
                    if hs < last_end[ri as usize] {
                        continue; // inside a finding of this rule already
                    }
                    if let Some(f) = self.try_rule(text, ri, hs, he) {
                        last_end[ri as usize] = f.end;
                        out.push(f);
                    }
                }
            }
        }
        if !self.digit_rules.is_empty() {
            self.scan_digits(text, lo, &mut out);
        }
        out.retain(|f| f.end > from);
        merge(&mut out);
        out
    }

    /// Runs rule `ri` in the window around the anchor `hs..he`; the first validated match that
    /// covers the anchor's start.
    fn try_rule(&self, text: &str, ri: u16, hs: usize, he: usize) -> Option<Finding> {
        let r = &self.rules[ri as usize];
        let ws = floor(text, hs.saturating_sub(r.before));
        let we = ceil(text, (he + r.max_len).min(text.len()));
        let hay = &text[..we];
        let mut at = ws;
        while at <= hs {
            let caps = r.pattern.captures_at(hay, at)?;
            let whole = caps.get(0)?;
            if whole.start() > hs {
                return None;
            }
            if whole.end() > hs {
                if let Some(g) = caps.get(r.group) {
                    let s = g.as_str();
                    if !s.is_empty() && r.validator.is_none_or(|v| v(s)) {
                        return Some(Finding { start: g.start(), end: g.end(), rule: ri });
                    }
                }
            }
            at = next_char(text, whole.start().max(at));
        }
        None
    }

    fn scan_digits(&self, text: &str, lo: usize, out: &mut Vec<Finding>) {
        let b = text.as_bytes();
        let mut i = lo;
        while i < b.len() {
            let Some(off) = find_digit(&b[i..]) else { break };
            let start = i + off;
            // Extend the run over digits and single separators.
            let mut end = start;
            let mut digits = 0;
            while end < b.len() {
                if b[end].is_ascii_digit() {
                    digits += 1;
                    end += 1;
                } else if matches!(b[end], b' ' | b'-' | b'.') && b.get(end + 1).is_some_and(u8::is_ascii_digit) {
                    end += 1;
                } else {
                    break;
                }
            }
            if digits >= self.min_digits {
                for &(ri, n) in &self.digit_rules {
                    if digits < n {
                        continue;
                    }
                    let r = &self.rules[ri as usize];
                    let ws = floor(text, start.saturating_sub(r.before));
                    let we = ceil(text, (end + 8).min(text.len()));
                    let hay = &text[..we];
                    let mut at = ws;
                    while let Some(caps) = r.pattern.captures_at(hay, at) {
                        let Some(whole) = caps.get(0) else { break };
                        if whole.start() >= end {
                            break;
                        }
                        if let Some(g) = caps.get(r.group) {
                            if !g.as_str().is_empty() && r.validator.is_none_or(|v| v(g.as_str())) && g.end() > start {
                                out.push(Finding { start: g.start(), end: g.end(), rule: ri });
                            }
                        }
                        at = next_char(text, whole.end().max(whole.start() + 1).min(text.len()));
                        if at >= we {
                            break;
                        }
                    }
                }
            }
            i = end.max(start + 1);
        }
    }

    /// `text` with every finding replaced.
    pub fn redact<'a>(&self, text: &'a str) -> (Cow<'a, str>, Vec<Finding>) {
        let findings = self.scan(text);
        if findings.is_empty() {
            return (Cow::Borrowed(text), findings);
        }
        let mut out = String::with_capacity(text.len());
        self.write_redacted(text, 0, text.len(), &findings, &mut out);
        (Cow::Owned(out), findings)
    }

    /// Appends `text[from..to]` to `out` with the findings inside it replaced.
    pub fn write_redacted(&self, text: &str, from: usize, to: usize, findings: &[Finding], out: &mut String) {
        let mut at = from;
        for f in findings {
            if f.end <= from || f.start >= to {
                continue;
            }
            let s = f.start.max(at);
            out.push_str(&text[at..s]);
            out.push_str(self.replacement(f.rule));
            at = f.end.min(to);
        }
        out.push_str(&text[at..to]);
    }
}

/// Sorts and merges overlapping findings (the earliest-starting keeps its rule; among findings that
/// start at the same byte, the rule listed first, so a catalog puts specific formats before generic).
fn merge(v: &mut Vec<Finding>) {
    if v.len() < 2 {
        return;
    }
    v.sort_by_key(|f| (f.start, f.rule));
    let mut w = 0;
    for i in 1..v.len() {
        if v[i].start < v[w].end {
            v[w].end = v[w].end.max(v[i].end);
        } else {
            w += 1;
            v[w] = v[i];
        }
    }
    v.truncate(w + 1);
}

/// The hits in `b[lo..]` that end after `report_after`, in the automaton's order (the prefilter,
/// when there is one, gives exactly the hits of a walk over every byte).
fn walk(
    ac: &AhoCorasick,
    pre: Option<&Prefilter>,
    b: &[u8],
    lo: usize,
    report_after: usize,
    out: &mut Vec<(usize, usize, u32)>,
) {
    let mut emit = |s: usize, e: usize, p: u32| {
        if lo + e > report_after {
            out.push((lo + s, lo + e, p));
        }
    };
    match pre {
        Some(pre) => pre.walk(ac, &b[lo..], emit),
        None => {
            for h in ac.find_overlapping_iter(&b[lo..]) {
                emit(h.start(), h.end(), h.pattern().as_u32());
            }
        }
    }
}

/// The first ASCII digit in `b`: eight bytes at a time (most text has few digits).
fn find_digit(b: &[u8]) -> Option<usize> {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGHS: u64 = 0x8080_8080_8080_8080;
    let mut chunks = b.chunks_exact(8);
    let mut at = 0;
    for c in &mut chunks {
        let w = u64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]);
        // A byte is a digit when `byte ^ 0x30 < 10`. The classic "has a byte below n" test flags every
        // such byte exactly, plus possibly false ones above a true one (borrows only run upwards), so
        // the lowest flagged byte is the first digit.
        let x = w ^ (ONES * 0x30);
        let flagged = x.wrapping_sub(ONES * 10) & !x & HIGHS;
        if flagged != 0 {
            return Some(at + (flagged.trailing_zeros() / 8) as usize);
        }
        at += 8;
    }
    chunks.remainder().iter().position(u8::is_ascii_digit).map(|p| at + p)
}

/// Largest char boundary ≤ i.
pub fn floor(s: &str, mut i: usize) -> usize {
    i = i.min(s.len());
    while !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

/// Smallest char boundary ≥ i.
pub fn ceil(s: &str, mut i: usize) -> usize {
    i = i.min(s.len());
    while !s.is_char_boundary(i) {
        i += 1;
    }
    i
}

fn next_char(s: &str, i: usize) -> usize {
    ceil(s, i + 1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inspect::holdback::HoldBack;
    use crate::inspect::prefilter::tests::{all_rules, keywords, text, Rng};

    /// The same rules with the prefilter (as built) and without it (the automaton walks every byte).
    fn pair() -> (Scanner, Scanner) {
        let with = Scanner::new(all_rules(), "[R:<rule-id>]").unwrap();
        let mut without = Scanner::new(all_rules(), "[R:<rule-id>]").unwrap();
        assert!(with.prefilter.is_some(), "the catalog fits the prefilter");
        without.prefilter = None;
        (with, without)
    }

    fn alnum(rng: &mut Rng, n: usize) -> String {
        const A: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
        (0..n).map(|_| A[rng.below(A.len())] as char).collect()
    }

    /// Generated text with real secrets (so that there are findings, not only keyword hits).
    fn text_with_secrets(rng: &mut Rng, kws: &[String], len: usize) -> String {
        let mut t = text(rng, kws, len);
        for _ in 0..rng.below(8) {
            let secret = match rng.below(5) {
                0 => format!("ghp_{}", alnum(rng, 36)),
                1 => format!("password = \"{}9x\"", alnum(rng, 16)),
                2 => "Kavorine4821Telumasi".to_owned(),
                3 => format!("xoxb-{}-{}-{}", 1234567890 + rng.below(1000), 2345678901usize, alnum(rng, 24)),
                _ => "card 4111 1111 1111 1111 ok".to_owned(),
            };
            let at = floor(&t, rng.below(t.len() + 1));
            t.insert_str(at, &format!(" {secret} "));
        }
        t
    }

    #[test]
    fn prefiltered_scan_equals_full_scan() {
        let (with, without) = pair();
        let kws = keywords(with.rules());
        let mut rng = Rng(0x1234_5678_9abc_def1);
        let mut findings = 0;
        for round in 0..200 {
            let len = if round % 3 == 0 { rng.below(400) } else { rng.below(25_000) };
            let t = text_with_secrets(&mut rng, &kws, len);
            let lo = floor(&t, rng.below(t.len() + 1));
            assert_eq!(with.keyword_hits(t.as_bytes(), lo), without.keyword_hits(t.as_bytes(), lo), "round {round}");
            let want = without.scan(&t);
            findings += want.len();
            assert_eq!(with.scan(&t), want, "round {round}");
            assert_eq!(with.scan_from(&t, lo), without.scan_from(&t, lo), "round {round} from {lo}");
            assert_eq!(with.stable_prefix(&t, lo), without.stable_prefix(&t, lo), "round {round}");
        }
        assert!(findings > 100, "the generated texts have findings ({findings})");
    }

    #[test]
    fn prefiltered_hits_equal_full_hits_across_pushes() {
        let (with, without) = pair();
        let kws = keywords(with.rules());
        let mut rng = Rng(99);
        for round in 0..60 {
            let len = rng.below(40_000);
            let t = text_with_secrets(&mut rng, &kws, len);
            let (mut ha, mut hb) = (Hits::default(), Hits::default());
            let mut buf = String::new();
            let mut at = 0;
            while at < t.len() {
                // Pushes of every size: one byte, a few, and more than the prefilter's minimum.
                let n = match rng.below(3) {
                    0 => 1 + rng.below(8),
                    1 => 1 + rng.below(200),
                    _ => 1 + rng.below(5000),
                };
                let end = crate::inspect::scanner::ceil(&t, at + n);
                buf.push_str(&t[at..end]);
                at = end;
                with.update_hits(&buf, &mut ha);
                without.update_hits(&buf, &mut hb);
                assert_eq!(ha.list, hb.list, "round {round} at {at}");
                let released = floor(&buf, rng.below(buf.len() + 1));
                assert_eq!(
                    with.scan_from_with(&buf, released, Some(&ha)),
                    without.scan_from_with(&buf, released, Some(&hb))
                );
                // Sometimes drop released text, as the hold-back does.
                if rng.below(4) == 0 {
                    let cut = floor(&buf, rng.below(buf.len() + 1));
                    buf.drain(..cut);
                    ha.shift(cut);
                    hb.shift(cut);
                }
            }
        }
    }

    #[test]
    fn prefiltered_streaming_equals_full_streaming() {
        let (with, without) = pair();
        let kws = keywords(with.rules());
        let mut rng = Rng(2024);
        for round in 0..60 {
            let len = rng.below(30_000);
            let t = text_with_secrets(&mut rng, &kws, len);
            let mut outs = Vec::new();
            let seed = rng.next();
            for s in [&with, &without] {
                let mut r = Rng(seed | 1);
                let mut hb = HoldBack::new();
                let mut out = String::new();
                let mut at = 0;
                while at < t.len() {
                    let n = if r.below(2) == 0 { 1 + r.below(40) } else { 1 + r.below(4000) };
                    let end = crate::inspect::scanner::ceil(&t, at + n);
                    hb.push(s, &t[at..end], &mut out);
                    at = end;
                }
                hb.finish(s, &mut out);
                outs.push((out, hb.findings));
            }
            assert_eq!(outs[0], outs[1], "round {round}");
            assert_eq!(outs[0].0, without.redact(&t).0, "round {round}");
        }
    }
}
