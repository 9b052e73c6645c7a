//! Context that turns a hit into a flag: an attack phrase *quoted* in a question about testing,
//! regexes, detection or writing ("How would I write a regex that detects \"ignore all previous
//! instructions\"?"). Only reached when something hit, so its cost does not matter on clean text.

use super::Tactic;

/// Categories whose phrases people quote when they talk about them.
pub(super) fn quotable(c: Tactic) -> bool {
    matches!(c, Tactic::Override | Tactic::Jailbreak | Tactic::Extraction)
}

const OPEN: &[char] = &['"', '“', '„', '«', '\'', '‘', '`', '/', '「', '『'];

fn closing(open: char) -> &'static [char] {
    match open {
        '"' => &['"', '”'],
        '“' | '„' => &['”', '“', '"'],
        '«' => &['»'],
        '\'' | '‘' => &['\'', '’'],
        '`' => &['`'],
        '/' => &['/'],
        '「' => &['」'],
        '『' => &['』'],
        _ => &[],
    }
}

/// What is computed once per scanned text, and only when a quotable phrase hit.
pub(super) struct Context {
    /// Whether the text talks about testing, detection or writing.
    pub meta: bool,
    /// Offsets of the code-fence markers (```).
    fences: Vec<usize>,
}

impl Context {
    pub(super) fn new(text: &str) -> Context {
        let meta = meta_question(text);
        let fences = if meta { text.match_indices("```").map(|(i, _)| i).collect() } else { Vec::new() };
        Context { meta, fences }
    }

    /// Whether a hit at `start..end` is a quoted phrase in a text about it.
    pub(super) fn downgrades(&self, text: &str, start: usize, end: usize) -> bool {
        self.meta && (self.fences.partition_point(|&f| f < start) % 2 == 1 || quoted(text, start, end))
    }
}

/// Whether `start..end` sits between an opening quote (on the same line, at most 160 bytes before)
/// and its closing quote (at most 240 bytes after).
fn quoted(text: &str, start: usize, end: usize) -> bool {
    let start = super::floor(text, start);
    let end = super::ceil(text, end.min(text.len()));
    let lo = super::floor(text, start.saturating_sub(160));
    let before = &text[lo..start];
    let before = before.rsplit('\n').next().unwrap_or_default();
    // The nearest opening quote before the hit (an apostrophe only after a non-letter).
    let mut open = None;
    let mut prev_alnum = false;
    for (i, c) in before.char_indices() {
        if OPEN.contains(&c) {
            let word_internal = matches!(c, '\'' | '/') && prev_alnum;
            if !word_internal {
                open = Some((i, c));
            }
        }
        prev_alnum = c.is_alphanumeric();
    }
    let Some((at, q)) = open else { return false };
    // No closing quote between the opening one and the hit.
    let between = &before[at + q.len_utf8()..];
    if between.contains(closing(q)) && !matches!(q, '\'' | '‘') {
        return false;
    }
    let hi = super::ceil(text, (end + 240).min(text.len()));
    let after = &text[end..hi];
    let after = after.split('\n').next().unwrap_or_default();
    after.contains(closing(q))
}

/// Words that make a text *about* an attack phrase rather than one using it.
const META: &[&str] = &[
    "regex",
    "regular expression",
    "pattern",
    "test",
    "detect",
    "filter",
    "flag",
    "classifier",
    "blog",
    "article",
    "essay",
    "novel",
    "story",
    "security",
    "awareness",
    "training",
    "phrase",
    "string",
    "sentence",
    "translate",
    "grammatical",
    "red team",
    "red-team",
    "prompt injection",
    "injection",
    "attack",
    "hacker",
    "log every",
    "matching",
    "assert",
    "example",
    "defen",
    "difference",
    "realistic",
    "multilingual",
    "dataset",
    "why does",
    "explain why",
    "what rule",
];

/// Whether the text talks about testing, detection or writing.
fn meta_question(text: &str) -> bool {
    let t = &text[..super::floor(text, text.len().min(8192))];
    let lower = t.to_lowercase();
    META.iter().any(|m| lower.contains(m))
}
