//! Streaming redaction with a hold-back window.
//!
//! Text arrives in deltas. The redactor keeps the text it has not released (plus some released text
//! as left context) and, after each delta, releases only the prefix that can no longer become part of
//! a match: everything up to `hold` bytes before the end, pulled back to the start of any finding
//! that crosses that point or may still grow (an unterminated PEM block). What is released is already
//! redacted. Invariant (tested for every chunking): the concatenation of everything released equals
//! `Scanner::redact` of the whole text. Memory is bounded by the hold (and a block rule's cap), never
//! by the stream's length. Nothing is released on a timer.
//!
//! Cost: the keyword automaton sees each byte once (its hits are kept across pushes, see
//! [`Hits`]); a push costs the delta plus the rules' regexes around the hits still in the window.

use super::scanner::{floor, Finding, Hits, Scanner};

/// Per-text-stream state (one per choice / content block).
#[derive(Debug, Default)]
pub struct HoldBack {
    /// Released context followed by unreleased text.
    buf: String,
    /// Bytes of `buf` already released (left context for the scanner).
    released: usize,
    /// Findings so far (for audit and triggers).
    pub findings: Vec<u16>,
    /// Keyword hits in `buf`.
    hits: Hits,
}

impl HoldBack {
    /// A fresh stream.
    pub fn new() -> Self {
        HoldBack::default()
    }

    /// Whether text is being held.
    pub fn holding(&self) -> bool {
        self.buf.len() > self.released
    }

    /// Adds a delta; appends the text now safe to release (redacted) to `out`.
    pub fn push(&mut self, scanner: &Scanner, delta: &str, out: &mut String) {
        self.buf.push_str(delta);
        scanner.update_hits(&self.buf, &mut self.hits);
        let findings = scanner.scan_from_with(&self.buf, self.released, Some(&self.hits));
        let mut cut = scanner.stable_prefix_with(&self.buf, self.released, Some(&self.hits)).max(self.released);
        for f in &findings {
            if f.start >= cut {
                break;
            }
            if f.end > cut {
                cut = f.start.max(self.released);
                break;
            }
        }
        self.release(scanner, cut, &findings, out);
    }

    /// End of the text: releases everything held (redacted).
    pub fn finish(&mut self, scanner: &Scanner, out: &mut String) {
        scanner.update_hits(&self.buf, &mut self.hits);
        let findings = scanner.scan_from_with(&self.buf, self.released, Some(&self.hits));
        let len = self.buf.len();
        self.release(scanner, len, &findings, out);
        self.buf.clear();
        self.hits.clear();
        self.released = 0;
    }

    fn release(&mut self, scanner: &Scanner, cut: usize, findings: &[Finding], out: &mut String) {
        if cut > self.released {
            for f in findings.iter().filter(|f| f.start < cut && f.end > self.released) {
                self.findings.push(f.rule);
            }
            scanner.write_redacted(&self.buf, self.released, cut, findings, out);
            self.released = cut;
        }
        // Keep only `context` bytes of released text.
        let keep_from = floor(&self.buf, self.released.saturating_sub(scanner.context()));
        if keep_from > 0 {
            self.buf.drain(..keep_from);
            self.hits.shift(keep_from);
            self.released -= keep_from;
        }
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::inspect::rule::{Anchor, Category, Rule, Severity};

    fn scanner() -> Scanner {
        let rules = vec![
            Rule::new(
                "aws_access_key_id",
                Category::Credential,
                Severity::Critical,
                Anchor::Keywords(vec!["AKIA".into()]),
                r"\bAKIA[0-9A-Z]{16}\b",
                20,
            )
            .unwrap(),
            Rule::new(
                "password_assignment",
                Category::Credential,
                Severity::High,
                Anchor::Keywords(vec!["password".into()]),
                r#"(?i)password\s*[:=]\s*"?([^\s"]{8,64})"#,
                80,
            )
            .unwrap()
            .with_group(1)
            .unwrap(),
            Rule::new("card", Category::Pii, Severity::High, Anchor::Digits(13), r"\b(?:\d[ -]?){12,18}\d\b", 23)
                .unwrap()
                .with_validator(crate::inspect::validate::luhn),
            Rule::new(
                "pem",
                Category::Credential,
                Severity::Critical,
                Anchor::Keywords(vec!["-----BEGIN".into()]),
                r"-----BEGIN [A-Z ]*PRIVATE KEY-----(?s:.*?-----END [A-Z ]*PRIVATE KEY-----|.*)",
                4100,
            )
            .unwrap()
            .with_terminator("PRIVATE KEY-----"),
        ];
        Scanner::new(rules, "[REDACTED:<rule-id>]").unwrap()
    }

    fn stream(s: &Scanner, text: &str, cuts: &[usize]) -> String {
        let mut hb = HoldBack::new();
        let mut out = String::new();
        let mut at = 0;
        for &c in cuts {
            let c = floor(text, c.min(text.len())).max(at);
            hb.push(s, &text[at..c], &mut out);
            at = c;
        }
        hb.push(s, &text[at..], &mut out);
        hb.finish(s, &mut out);
        out
    }

    const SAMPLE: &str =
        "Here is the key AKIAIOSFODNN7EXAMPLE and password: \"hunter2-Xy91\", card 4111 1111 1111 1111.\n\
        -----BEGIN RSA PRIVATE KEY-----\nMIIEow IBAAKCAQEA\n-----END RSA PRIVATE KEY-----\nThat is all, ünïcode ok.";

    #[test]
    fn whole_text_redaction() {
        let s = scanner();
        let (red, f) = s.redact(SAMPLE);
        assert_eq!(f.len(), 4, "{red}");
        assert!(
            !red.contains("AKIAIOSFODNN7EXAMPLE")
                && !red.contains("hunter2")
                && !red.contains("4111")
                && !red.contains("MIIEow")
        );
        assert!(
            red.contains("[REDACTED:aws_access_key_id]")
                && red.contains("password: \"[REDACTED:password_assignment]\"")
        );
    }

    #[test]
    fn one_byte_chunks_equal_whole() {
        let s = scanner();
        let cuts: Vec<usize> = (1..SAMPLE.len()).collect();
        assert_eq!(stream(&s, SAMPLE, &cuts), s.redact(SAMPLE).0);
    }

    #[test]
    fn clean_text_is_released_once_past_the_hold() {
        let s = scanner();
        let mut hb = HoldBack::new();
        let mut out = String::new();
        let text = "a".repeat(1000);
        hb.push(&s, &text, &mut out);
        assert!(out.len() >= 1000 - s.hold(), "released {} of 1000 with hold {}", out.len(), s.hold());
    }

    #[test]
    fn text_after_a_complete_pem_block_flows() {
        let s = scanner();
        let mut hb = HoldBack::new();
        let mut out = String::new();
        let tail = "and then a long ordinary sentence follows the key block. ".repeat(4);
        hb.push(
            &s,
            &format!("-----BEGIN RSA PRIVATE KEY-----\nMIIEow\n-----END RSA PRIVATE KEY-----\n{tail}"),
            &mut out,
        );
        assert!(out.starts_with("[REDACTED:pem]\nand then"), "{out}");
        assert!(out.len() > tail.len() / 2, "text after a closed block is not held for the block's cap: {out}");
    }

    #[test]
    fn open_pem_block_is_held() {
        let s = scanner();
        let mut hb = HoldBack::new();
        let mut out = String::new();
        hb.push(&s, &format!("ok -----BEGIN RSA PRIVATE KEY-----\n{}", "A".repeat(2000)), &mut out);
        assert_eq!(out, "ok ", "nothing after the opening marker may be released");
    }

    proptest! {
        #[test]
        fn any_chunking_equals_whole_text(cuts in proptest::collection::vec(0usize..SAMPLE.len(), 0..40)) {
            let s = scanner();
            let mut cuts = cuts;
            cuts.sort_unstable();
            prop_assert_eq!(stream(&s, SAMPLE, &cuts), s.redact(SAMPLE).0.into_owned());
        }
    }
}
