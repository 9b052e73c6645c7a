//! A prefilter in front of the keyword automaton: on clean text it skips almost every byte, and the
//! automaton runs only over the keyword occurrences it confirms.
//!
//! Each keyword (already ASCII-lower-cased) gets a *fingerprint*: one of its substrings of up to 3
//! bytes, chosen rare in ordinary text (a keyword that contains a fingerprint chosen already reuses
//! it). Fingerprints of 2–3 bytes are found by aho-corasick's packed (Teddy, SIMD) searcher over a
//! lower-cased copy of the text, a chunk at a time; one-byte keywords by `memchr` (both cases).
//!
//! Exactness. Every occurrence of a keyword contains its fingerprint at a known offset. The packed
//! searcher reports non-overlapping matches, but a fingerprint occurrence it skips overlaps a
//! reported match and so starts inside it: checking every start position inside each reported match
//! (at most 3) visits every fingerprint occurrence. At each such position, the keywords whose
//! fingerprint starts with that byte are compared with the text (ASCII case-insensitively, as the
//! automaton compares), which yields every keyword occurrence and nothing else. The automaton then
//! walks each merged span of occurrences from its unanchored start state: the spans are disjoint and
//! every occurrence lies whole inside one, so the walk reports exactly the hits of a walk over the
//! whole text, in the same order (by end; the hits ending at one byte come from the same match list,
//! no longer keyword starting before the span).
//!
//! Keyword-dense text (more than [`DENSE`] candidates in a chunk) is cheaper to walk than to confirm
//! candidate by candidate: such a chunk, and the [`DENSE_SKIP`] chunks after it, become one span
//! covering every occurrence whose fingerprint starts in them, which keeps the argument above.
//!
//! The prefilter is an optimisation only: when the keyword set does not fit it (an empty keyword,
//! more than three distinct one-byte needles, more than [`MAX_GROUPS`] packed searchers' worth of
//! fingerprints), the scanner walks the whole text with the automaton as before.

use aho_corasick::packed::{Config, MatchKind, Searcher};
use aho_corasick::{AhoCorasick, Span};

/// Texts shorter than this go straight through the automaton (the prefilter's setup would cost more).
const MIN_TEXT: usize = 256;
/// Bytes lower-cased and searched at a time (source and copy stay in the L1 cache).
const CHUNK: usize = 8192;
/// Fingerprints per packed searcher. Teddy's false candidates grow quickly with the patterns per
/// searcher (on the clean bench text, one pass: 12.5 GB/s with 16 fingerprints, 7 with 24, 3 with
/// 32, 0.3 with 92), so several small searchers beat one big one (about 2.2 GB/s for 92 in groups
/// of 16–24).
const PER_GROUP: usize = 20;
/// Candidates in one chunk above which the automaton walks the whole chunk instead.
const DENSE: usize = 48;
/// Chunks walked whole, without a search, after a keyword-dense one.
const DENSE_SKIP: usize = 7;
/// Packed searchers at most (each is one more pass over the lower-cased chunk; twelve still cost
/// well under the automaton's walk over every byte).
pub(crate) const MAX_GROUPS: usize = 12;

/// Bigrams common in English prose and markdown/code: a fingerprint containing one costs more.
const COMMON: &[&[u8; 2]] = &[
    b"th", b"he", b"in", b"er", b"an", b"re", b"nd", b"on", b"en", b"at", b"ou", b"ed", b"ha", b"to", b"or", b"it",
    b"is", b"hi", b"es", b"ng", b"st", b"ar", b"te", b"se", b"me", b"ve", b"al", b"le", b"ea", b"nt", b"ti", b"ri",
    b"ro", b"ne", b"ra", b"de", b"co", b"ic", b"li", b"ch", b"ll", b"be", b"ma", b"si", b"om", b"ur", b"ke", b"ey",
    b"--", b"  ", b"//", b"**", b"##", b"==", b"e ", b"s ", b" t", b" a", b"d ", b"t ",
];

/// Candidate finder for one keyword set.
#[derive(Debug, Clone)]
pub(crate) struct Prefilter {
    /// Packed searchers over lower-cased text, each for fingerprints of one length.
    groups: Vec<Searcher>,
    /// One-byte keywords, in both cases (at most three bytes: one `memchr3` pass).
    bytes: Vec<u8>,
    /// Longest fingerprint (chunks overlap by one byte less).
    fp_max: usize,
    /// Largest offset of a fingerprint in its keyword.
    before: usize,
    /// Largest `keyword length - fingerprint offset`.
    after: usize,
    /// By the first byte of their fingerprint: the keywords and their fingerprint's offset.
    by_first: Vec<Vec<(Box<[u8]>, usize)>>,
    /// The fingerprints (for tests).
    #[cfg(test)]
    fingerprints: Vec<Vec<u8>>,
}

/// A rough frequency rank of a (lower-cased) byte in prose, markdown and code: higher is more common.
fn rank(b: u8) -> u32 {
    const LETTERS: &[u8] = b"etaoinsrhldcumfpgwybvkxjqz";
    match b {
        b' ' => 255,
        b'\n' => 200,
        b'a'..=b'z' => 240 - 4 * LETTERS.iter().position(|&c| c == b).unwrap_or(0) as u32,
        b'0'..=b'9' => 150,
        b'.' | b',' | b'(' | b')' | b'"' | b'\'' | b'-' | b'_' | b'=' | b':' | b'/' | b'*' | b'#' | b'\t' => 160,
        b';' | b'{' | b'}' | b'[' | b']' | b'<' | b'>' | b'`' | b'|' | b'!' | b'?' | b'&' | b'+' => 120,
        0x80.. => 60,
        _ => 90,
    }
}

/// How common a candidate fingerprint is likely to be in ordinary text (lower is rarer).
fn score(w: &[u8]) -> u32 {
    let bytes: u32 = w.iter().map(|&b| rank(b)).sum();
    let common = w.windows(2).filter(|p| COMMON.iter().any(|c| &c[..] == *p)).count() as u32;
    bytes + 60 * common
}

impl Prefilter {
    /// A prefilter for these (lower-cased) keywords, or `None` when they do not fit one.
    pub(crate) fn new(keywords: &[String]) -> Option<Prefilter> {
        if keywords.is_empty() || keywords.iter().any(String::is_empty) {
            return None;
        }
        let mut order: Vec<&[u8]> = keywords.iter().map(|k| k.as_bytes()).collect();
        // Short keywords first: they have the fewest choices, and longer ones may reuse theirs.
        order.sort_by_key(|k| k.len());
        let mut fps: Vec<Vec<u8>> = Vec::new();
        let mut bytes: Vec<u8> = Vec::new();
        let mut by_first: Vec<Vec<(Box<[u8]>, usize)>> = vec![Vec::new(); 256];
        let (mut before, mut after) = (0, 0);
        for k in order {
            let off = if k.len() == 1 {
                for b in [k[0], k[0].to_ascii_uppercase()] {
                    if !bytes.contains(&b) {
                        bytes.push(b);
                    }
                }
                0
            } else {
                let w = k.len().min(3);
                match fps.iter().filter_map(|f| find(k, f)).min() {
                    Some(off) => off,
                    None => {
                        let off = (0..=k.len() - w).min_by_key(|&i| score(&k[i..i + w])).unwrap_or(0);
                        fps.push(k[off..off + w].to_vec());
                        off
                    }
                }
            };
            before = before.max(off);
            after = after.max(k.len() - off);
            by_first[k[off] as usize].push((k.into(), off));
        }
        if bytes.len() > 3 {
            return None;
        }
        let fp_max = fps.iter().map(Vec::len).max().unwrap_or(1);
        let mut groups = Vec::new();
        for len in 2..=3 {
            // Sorted, so that similar fingerprints share a searcher (measured a little faster).
            let mut these: Vec<&Vec<u8>> = fps.iter().filter(|f| f.len() == len).collect();
            these.sort();
            for part in these.chunks(PER_GROUP) {
                groups.push(
                    Config::new()
                        .match_kind(MatchKind::LeftmostFirst)
                        .builder()
                        .extend(part.iter().copied())
                        .build()?,
                );
            }
        }
        if groups.len() > MAX_GROUPS {
            return None;
        }
        Some(Prefilter {
            groups,
            bytes,
            fp_max,
            before,
            after,
            by_first,
            #[cfg(test)]
            fingerprints: fps,
        })
    }

    /// The fingerprints searched for (2–3 bytes each), and the one-byte needles.
    #[cfg(test)]
    pub(crate) fn fingerprints(&self) -> (&[Vec<u8>], &[u8]) {
        (&self.fingerprints, &self.bytes)
    }

    /// Every keyword occurrence in `b`, as `ac.find_overlapping_iter(b)` reports them (same hits,
    /// same order), passed to `emit` as `(start, end, pattern)`.
    pub(crate) fn walk(&self, ac: &AhoCorasick, b: &[u8], mut emit: impl FnMut(usize, usize, u32)) {
        let mut run = |ws: usize, we: usize| {
            for h in ac.find_overlapping_iter(&b[ws..we]) {
                emit(ws + h.start(), ws + h.end(), h.pattern().as_u32());
            }
        };
        if b.len() < MIN_TEXT {
            run(0, b.len());
            return;
        }
        let n = b.len();
        let mut low = vec![0u8; CHUNK.min(n)];
        // Confirmed keyword occurrences (start, end).
        let mut spans: Vec<(usize, usize)> = Vec::new();
        let confirm = |p: usize, spans: &mut Vec<(usize, usize)>| {
            for (k, off) in &self.by_first[b[p].to_ascii_lowercase() as usize] {
                if p >= *off && p - off + k.len() <= n && b[p - off..p - off + k.len()].eq_ignore_ascii_case(k) {
                    spans.push((p - off, p - off + k.len()));
                }
            }
        };
        let mut c = 0;
        let mut skip = 0;
        while c < n {
            let end = (c + CHUNK).min(n);
            // Fingerprints starting before `next` are this chunk's; the next chunk starts there,
            // `fp_max - 1` bytes early, so that a fingerprint across the boundary is whole in it.
            let next = if end == n { n } else { end - (self.fp_max - 1) };
            let len = end - c;
            if skip > 0 {
                // After a keyword-dense chunk, the next few are walked whole without a search.
                skip -= 1;
                spans.push((c.saturating_sub(self.before), (next - 1 + self.after).min(n)));
                c = next;
                continue;
            }
            for (d, s) in low[..len].iter_mut().zip(&b[c..end]) {
                *d = s.to_ascii_lowercase();
            }
            let mark = spans.len();
            let mut found = 0;
            'groups: for g in &self.groups {
                let mut at = 0;
                while at < len {
                    let Some(m) = g.find_in(&low[..len], Span::from(at..len)) else { break };
                    if c + m.start() >= next {
                        break;
                    }
                    found += 1;
                    if found > DENSE {
                        break 'groups;
                    }
                    // Fingerprints the searcher skipped start inside this match.
                    for p in c + m.start()..c + m.end() {
                        confirm(p, &mut spans);
                    }
                    at = m.end();
                }
            }
            #[cfg(test)]
            tests::PATHS[usize::from(found > DENSE)].fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            if found > DENSE {
                // Keyword-dense text: one span over every occurrence whose fingerprint starts in
                // this chunk, for the automaton to walk (cheaper than confirming each candidate).
                spans.truncate(mark);
                spans.push((c.saturating_sub(self.before), (next - 1 + self.after).min(n)));
                skip = DENSE_SKIP;
                c = next;
                continue;
            }
            match self.bytes[..] {
                [x] => memchr::memchr_iter(x, &b[c..next]).for_each(|i| confirm(c + i, &mut spans)),
                [x, y] => memchr::memchr2_iter(x, y, &b[c..next]).for_each(|i| confirm(c + i, &mut spans)),
                [x, y, z] => memchr::memchr3_iter(x, y, z, &b[c..next]).for_each(|i| confirm(c + i, &mut spans)),
                _ => {}
            }
            c = next;
        }
        spans.sort_unstable();
        let mut open: Option<(usize, usize)> = None;
        for (s, e) in spans {
            match &mut open {
                Some((_, we)) if s <= *we => *we = (*we).max(e),
                _ => {
                    if let Some((ws, we)) = open {
                        run(ws, we);
                    }
                    open = Some((s, e));
                }
            }
        }
        if let Some((ws, we)) = open {
            run(ws, we);
        }
    }
}

/// Where `needle` first occurs in `hay`.
fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
pub(crate) mod tests {
    use aho_corasick::{AhoCorasickBuilder, AhoCorasickKind, MatchKind as AcKind};

    use super::*;
    use crate::inspect::rule::{Anchor, Category, Rule, Severity};
    use crate::inspect::{canary, catalog};

    /// Chunks searched with candidates confirmed one by one (`[0]`) and walked whole (`[1]`).
    pub(crate) static PATHS: [std::sync::atomic::AtomicUsize; 2] =
        [std::sync::atomic::AtomicUsize::new(0), std::sync::atomic::AtomicUsize::new(0)];

    /// A small deterministic PRNG (xorshift64*), so that failures reproduce.
    pub(crate) struct Rng(pub(crate) u64);

    impl Rng {
        pub(crate) fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
        }

        /// Uniform in `0..n` (`n > 0`).
        pub(crate) fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }
    }

    /// Every rule the scanner may see: the whole catalog (off-by-default rules too), two canaries,
    /// and custom rules with keywords of one, two and many bytes.
    pub(crate) fn all_rules() -> Vec<Rule> {
        let mut rules: Vec<Rule> = catalog::builtin().unwrap().into_iter().map(|(r, _)| r).collect();
        rules.extend(canary::rules("p1", "Kavorine4821Telumasi").unwrap());
        rules.extend(canary::rules("p2", "Bodimuza0042Serakoti").unwrap());
        let custom = |id: &str, kws: &[&str], pat: &str| {
            Rule::new(
                id,
                Category::Credential,
                Severity::High,
                Anchor::Keywords(kws.iter().map(|k| (*k).to_owned()).collect()),
                pat,
                64,
            )
            .unwrap()
        };
        rules.push(custom("custom_internal", &["INT-", "acme_internal_", "Zz"], r"(?i)\bint-[0-9]{6}\b"));
        rules.push(custom("custom_percent", &["%"], r"%[0-9]{3}"));
        rules
    }

    /// The keywords as the scanner collects them (lower-cased, first occurrence kept).
    pub(crate) fn keywords(rules: &[Rule]) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for r in rules {
            if let Anchor::Keywords(ks) = &r.anchor {
                for k in ks {
                    let k = k.to_ascii_lowercase();
                    if !out.contains(&k) {
                        out.push(k);
                    }
                }
            }
        }
        out
    }

    fn automaton(keywords: &[String]) -> AhoCorasick {
        AhoCorasickBuilder::new()
            .ascii_case_insensitive(true)
            .match_kind(AcKind::Standard)
            .kind(Some(AhoCorasickKind::DFA))
            .build(keywords)
            .unwrap()
    }

    /// Words without keywords.
    const WORDS: &[&str] = &[
        "the",
        "quarterly",
        "report",
        "shows",
        "that",
        "revenue",
        "grew",
        "in",
        "every",
        "region",
        "fn",
        "let",
        "mut",
        "out",
        "=",
        "{",
        "}",
        "->",
        "ünïcode",
        "naïve",
        "日本語",
        "emoji😀",
        "-",
        "_",
        "/",
        "\n",
        "\n\n",
        "## Heading",
        "```",
        "|",
        "the team",
        "merge(a, b)",
    ];
    /// Words with keywords or fingerprints in them.
    const TRICKY: &[&str] = &[
        "task", "desk", "risk", "ask", "key", "token", "secret", "password", "::", "https", "a@b", "100%", "sk",
        "github", "hvs", "ya29", "nrak", "akia", "monkey-", "---", "|---|", "okay", "bottle",
    ];

    fn random_case(rng: &mut Rng, k: &str) -> String {
        k.chars()
            .map(|c| match rng.below(3) {
                0 => c.to_ascii_uppercase(),
                1 => c.to_ascii_lowercase(),
                _ => c,
            })
            .collect()
    }

    /// A random keyword in random case.
    fn pick(rng: &mut Rng, kws: &[String]) -> String {
        let k = &kws[rng.below(kws.len())];
        random_case(rng, k)
    }

    /// Random prose with keywords inserted in random case: at the start and the end, next to and
    /// overlapping one another, and across the prefilter's chunk boundaries.
    pub(crate) fn text(rng: &mut Rng, kws: &[String], len: usize) -> String {
        let mut s = String::new();
        // Keyword-dense, ordinary and nearly clean texts.
        let density = [8, 60, 2000][rng.below(3)];
        if rng.below(3) == 0 {
            s.push_str(&pick(rng, kws));
        }
        while s.len() < len {
            match rng.below(density) {
                0 => s.push_str(&pick(rng, kws)),
                1 => {
                    // Two keywords glued, or the second overlapping the end of the first.
                    let a = &kws[rng.below(kws.len())];
                    let b = pick(rng, kws);
                    s.push_str(&random_case(rng, a));
                    let back = rng.below(a.len().min(b.len()) + 1);
                    let cut = crate::inspect::scanner::floor(&s, s.len() - back);
                    s.truncate(cut);
                    s.push_str(&b);
                }
                2 => s.push_str(TRICKY[rng.below(TRICKY.len())]),
                _ => s.push_str(WORDS[rng.below(WORDS.len())]),
            }
            if rng.below(4) != 0 {
                s.push(' ');
            }
        }
        // Keywords straddling the chunk boundaries (chunks advance by `CHUNK - (fp_max - 1)`).
        for step in [CHUNK - 2, CHUNK - 1, CHUNK] {
            let mut at = step;
            while at + 40 < s.len() {
                let k = pick(rng, kws);
                let p = crate::inspect::scanner::floor(&s, at - rng.below(k.len() + 2));
                s.insert_str(p, &k);
                at += step;
            }
        }
        if rng.below(3) == 0 {
            s.push_str(&pick(rng, kws));
        }
        s
    }

    fn hits(pre: &Prefilter, ac: &AhoCorasick, b: &[u8]) -> Vec<(usize, usize, u32)> {
        let mut out = Vec::new();
        pre.walk(ac, b, |s, e, p| out.push((s, e, p)));
        out
    }

    fn full(ac: &AhoCorasick, b: &[u8]) -> Vec<(usize, usize, u32)> {
        ac.find_overlapping_iter(b).map(|h| (h.start(), h.end(), h.pattern().as_u32())).collect()
    }

    #[test]
    fn catalog_keywords_fit_the_prefilter() {
        let kws = keywords(&all_rules());
        let pre = Prefilter::new(&kws).expect("the catalog with canaries and custom rules fits");
        let (fps, bytes) = pre.fingerprints();
        // Every keyword contains a fingerprint (or is a one-byte needle).
        for k in &kws {
            let k = k.as_bytes();
            assert!(
                (k.len() == 1 && bytes.contains(&k[0])) || fps.iter().any(|f| find(k, f).is_some()),
                "{k:?} has no fingerprint"
            );
        }
        let builtin = keywords(&catalog::builtin().unwrap().into_iter().map(|(r, _)| r).collect::<Vec<_>>());
        let pre = Prefilter::new(&builtin).expect("the catalog fits");
        let (fps, _) = pre.fingerprints();
        assert!(fps.len() <= PER_GROUP * MAX_GROUPS);
    }

    #[test]
    fn prefiltered_walk_equals_full_walk_on_generated_texts() {
        let kws = keywords(&all_rules());
        let ac = automaton(&kws);
        let pre = Prefilter::new(&kws).unwrap();
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        let mut total = 0;
        for round in 0..300 {
            let len = match round % 4 {
                0 => rng.below(300),
                1 => rng.below(3000),
                _ => rng.below(30_000),
            };
            let t = text(&mut rng, &kws, len);
            let want = full(&ac, t.as_bytes());
            total += want.len();
            assert_eq!(hits(&pre, &ac, t.as_bytes()), want, "round {round}, text {t:?}");
            // Every suffix start too (the scanner walks `text[lo..]`).
            let lo = crate::inspect::scanner::floor(&t, rng.below(t.len() + 1));
            assert_eq!(hits(&pre, &ac, &t.as_bytes()[lo..]), full(&ac, &t.as_bytes()[lo..]), "round {round} from {lo}");
        }
        assert!(total > 10_000, "the generated texts have keyword hits ({total})");
        let paths = PATHS.each_ref().map(|p| p.load(std::sync::atomic::Ordering::Relaxed));
        assert!(paths[0] > 100 && paths[1] > 100, "both ways through a chunk are tested: {paths:?}");
    }

    #[test]
    fn keywords_everywhere_and_nowhere() {
        let kws = keywords(&all_rules());
        let ac = automaton(&kws);
        let pre = Prefilter::new(&kws).unwrap();
        // Back-to-back keywords only, upper-cased.
        let dense: String = kws.iter().cycle().take(3000).map(|k| k.to_ascii_uppercase()).collect();
        assert_eq!(hits(&pre, &ac, dense.as_bytes()), full(&ac, dense.as_bytes()));
        // No keyword at all, then one at the very start and one at the very end.
        let clean = "abc def ghi ".repeat(3000);
        assert!(hits(&pre, &ac, clean.as_bytes()).is_empty());
        let edged = format!("GHP_{clean}Xoxb-");
        let want = full(&ac, edged.as_bytes());
        assert_eq!(want.len(), 2);
        assert_eq!(hits(&pre, &ac, edged.as_bytes()), want);
    }

    #[test]
    fn keyword_sets_that_do_not_fit_are_refused() {
        // Four one-byte needles (more than one memchr3 pass).
        let kws: Vec<String> = ["@", "%", "#", "~", "token"].iter().map(|s| (*s).to_owned()).collect();
        assert!(Prefilter::new(&kws).is_none());
        assert!(Prefilter::new(&["".to_owned(), "abc".to_owned()]).is_none());
        // Many random keywords: more fingerprints than the packed searchers take.
        let mut rng = Rng(7);
        let many: Vec<String> =
            (0..3000).map(|_| (0..12).map(|_| (b'a' + rng.below(26) as u8) as char).collect()).collect();
        assert!(Prefilter::new(&many).is_none());
    }

    #[test]
    fn small_keyword_sets_with_short_fingerprints() {
        let mut rng = Rng(42);
        for kws in [
            vec!["ab"],
            vec!["x"],
            vec!["a", "%", "abc"],
            vec!["sk", "sk-", "::", "ssn", "social security", "q"],
            vec!["aaa", "aa", "aaaa", "a"],
        ] {
            let kws: Vec<String> = kws.iter().map(|s| (*s).to_owned()).collect();
            let ac = automaton(&kws);
            let pre = Prefilter::new(&kws).unwrap();
            for _ in 0..40 {
                let len = rng.below(20_000);
                let t = text(&mut rng, &kws, len);
                assert_eq!(hits(&pre, &ac, t.as_bytes()), full(&ac, t.as_bytes()), "{kws:?}");
            }
        }
    }
}
