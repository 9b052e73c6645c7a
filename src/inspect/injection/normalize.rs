//! Normalisation before matching: a *folded view* of a text in which obfuscated phrases read as
//! plain ones, with a map back to the original bytes (so hits and `strip` stay at the right place).
//!
//! What the view folds, in one linear pass (plus one linear pre-pass to find letter-spaced runs):
//! - compatibility forms (the NFKC cases attackers use): fullwidth ASCII, mathematical alphanumeric
//!   letters and digits, circled/parenthesised/squared letters, Latin ligatures;
//! - confusables: common Cyrillic and Greek look-alikes of Latin letters, only inside a word that
//!   also has ASCII letters (so Russian or Greek text is left alone);
//! - invisible characters (zero-width, bidi controls, TAG characters) and ANSI escapes: dropped;
//! - letter spacing and punctuation between letters: a run of at least four single letters joined
//!   by one separator ("i g n o r e", "i.g.n.o.r.e", "i-g-n-o-r-e") becomes the word; a wider gap
//!   (or a different separator) is a word break; a run with no word break is split with a small
//!   vocabulary of the words the signatures use ("s a y t h a t" → "say that");
//! - leetspeak: in an ASCII word with at least two letters whose every digit is a leet digit,
//!   `0 1 3 4 5 7 8` read as `o i e a s t b`, and `@ $ !` between letters as `a s i`.
//!
//! [`needs_fold`] decides cheaply whether any of this can apply: for ASCII text one pass over the
//! bytes, no allocation; the view is built only then.

use super::hidden::View;

/// Longest letter-spaced run (in letters) that is split into words.
const SEGMENT_MAX: usize = 512;

/// Longest text that is folded (longer texts are matched as they are, beyond this prefix).
pub(super) const FOLD_MAX: usize = 256 << 10;

/// Whether [`fold`] could change `text`.
pub(super) fn needs_fold(text: &str) -> bool {
    let b = text.as_bytes();
    let b = &b[..b.len().min(FOLD_MAX)];
    if !b.is_ascii() {
        let t = super::floor(text, b.len());
        // Only the non-ASCII chars can fold: skip ASCII eight bytes at a time, decode the rest.
        let mut i = 0;
        while let Some(at) = non_ascii_from(&b[..t], i) {
            let Some(c) = text.get(at..t).and_then(|r| r.chars().next()) else { break };
            if folds(c) {
                return true;
            }
            i = at + c.len_utf8();
        }
    }
    let (mut singles, mut last_single_end) = (0usize, usize::MAX);
    let (mut leet, mut other_digits) = (0usize, 0usize);
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        if c.is_ascii_alphanumeric() {
            // Word start: measure the ASCII word.
            let start = i;
            // Letters first (the common case: a word with no digit cannot fold), then the
            // counting loop from the first digit on.
            while i < b.len() && b[i].is_ascii_alphabetic() {
                i += 1;
            }
            let mut letters = i - start;
            while i < b.len() && b[i].is_ascii_alphanumeric() {
                match b[i] {
                    b'0' | b'1' | b'3' | b'4' | b'5' | b'7' | b'8' => leet += 1,
                    b'0'..=b'9' => other_digits += 1,
                    _ => letters += 1,
                }
                i += 1;
            }
            if leet >= 2 && letters >= 2 && other_digits == 0 {
                return true;
            }
            if i - start == 1 && c.is_ascii_alphabetic() && !(start > 0 && b[start - 1] >= 0x80) {
                singles = if last_single_end != usize::MAX && start == last_single_end + 1 { singles + 1 } else { 1 };
                last_single_end = i;
                if singles >= 4 {
                    return true;
                }
            }
            (leet, other_digits) = (0, 0);
            continue;
        }
        if c == b'<' && b.get(i + 1..i + 4) == Some(b"!--") {
            return false; // comments are a signature of their own; nothing to fold for them
        }
        i += 1;
    }
    false
}

/// Whether the folded view changes the (non-ASCII) char `c`: a compatibility form, a confusable,
/// or a dropped character.
pub(super) fn folds(c: char) -> bool {
    fold_char(c).is_some() || confusable(c).is_some() || dropped(c)
}

/// The position of the first non-ASCII byte of `b` at or after `i`.
#[inline]
fn non_ascii_from(b: &[u8], mut i: usize) -> Option<usize> {
    while let Some(chunk) = b.get(i..i + 8) {
        let mut x = [0u8; 8];
        x.copy_from_slice(chunk);
        if u64::from_le_bytes(x) & 0x8080_8080_8080_8080 != 0 {
            break;
        }
        i += 8;
    }
    b.get(i..)?.iter().position(|&x| x >= 0x80).map(|p| i + p)
}

/// Invisible characters and controls the view drops.
fn dropped(c: char) -> bool {
    matches!(c, '\u{200B}'..='\u{200F}' | '\u{2060}'..='\u{2064}' | '\u{FEFF}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}' | '\u{00AD}' | '\u{E0000}'..='\u{E007F}' | '\u{9B}')
}

/// Compatibility forms → ASCII (a subset of NFKC: the forms that spell Latin text).
fn fold_char(c: char) -> Option<&'static str> {
    const UPPER: [&str; 26] = [
        "A", "B", "C", "D", "E", "F", "G", "H", "I", "J", "K", "L", "M", "N", "O", "P", "Q", "R", "S", "T", "U", "V",
        "W", "X", "Y", "Z",
    ];
    const LOWER: [&str; 26] = [
        "a", "b", "c", "d", "e", "f", "g", "h", "i", "j", "k", "l", "m", "n", "o", "p", "q", "r", "s", "t", "u", "v",
        "w", "x", "y", "z",
    ];
    const DIGITS: [&str; 10] = ["0", "1", "2", "3", "4", "5", "6", "7", "8", "9"];
    const PUNCT: [&str; 15] = ["!", "\"", "#", "$", "%", "&", "'", "(", ")", "*", "+", ",", "-", ".", "/"];
    let u = c as u32;
    let letter = |k: u32| -> Option<&'static str> {
        if k < 26 {
            UPPER.get(k as usize).copied()
        } else {
            LOWER.get((k - 26) as usize).copied()
        }
    };
    match u {
        0xFF21..=0xFF3A => UPPER.get((u - 0xFF21) as usize).copied(),
        0xFF41..=0xFF5A => LOWER.get((u - 0xFF41) as usize).copied(),
        0xFF10..=0xFF19 => DIGITS.get((u - 0xFF10) as usize).copied(),
        0xFF01..=0xFF0F => PUNCT.get((u - 0xFF01) as usize).copied(),
        0xFF1A => Some(":"),
        0xFF1F => Some("?"),
        0x3000 | 0x00A0 | 0x2000..=0x200A | 0x202F | 0x205F => Some(" "),
        0x1D400..=0x1D6A3 => letter((u - 0x1D400) % 52),
        0x1D7CE..=0x1D7FF => DIGITS.get(((u - 0x1D7CE) % 10) as usize).copied(),
        0x24B6..=0x24CF => UPPER.get((u - 0x24B6) as usize).copied(),
        0x24D0..=0x24E9 => LOWER.get((u - 0x24D0) as usize).copied(),
        0x249C..=0x24B5 => LOWER.get((u - 0x249C) as usize).copied(),
        0x1F130..=0x1F149 => UPPER.get((u - 0x1F130) as usize).copied(),
        0x1F150..=0x1F169 => UPPER.get((u - 0x1F150) as usize).copied(),
        0x1F170..=0x1F189 => UPPER.get((u - 0x1F170) as usize).copied(),
        0x1F1E6..=0x1F1FF => UPPER.get((u - 0x1F1E6) as usize).copied(),
        0xFB00 => Some("ff"),
        0xFB01 => Some("fi"),
        0xFB02 => Some("fl"),
        0xFB03 => Some("ffi"),
        0xFB04 => Some("ffl"),
        0xFB05 | 0xFB06 => Some("st"),
        0x2018 | 0x2019 | 0x201B | 0x2032 => Some("'"),
        0x201C | 0x201D | 0x201F | 0x2033 => Some("\""),
        _ => None,
    }
}

/// Cyrillic and Greek look-alikes of Latin letters.
fn confusable(c: char) -> Option<&'static str> {
    Some(match c {
        'а' | 'α' => "a",
        'е' | 'ε' => "e",
        'о' | 'ο' | 'σ' => "o",
        'р' | 'ρ' => "p",
        'с' | 'ϲ' => "c",
        'у' | 'γ' | 'ү' => "y",
        'х' | 'χ' => "x",
        'і' | 'ι' | 'ӏ' => "i",
        'ј' => "j",
        'ѕ' => "s",
        'ԁ' => "d",
        'ɡ' => "g",
        'һ' => "h",
        'ԛ' => "q",
        'ԝ' => "w",
        'ν' => "v",
        'κ' | 'к' => "k",
        'τ' | 'т' => "t",
        'υ' => "u",
        'п' => "n",
        'А' | 'Α' => "A",
        'В' | 'Β' => "B",
        'Е' | 'Ε' => "E",
        'К' | 'Κ' => "K",
        'М' | 'Μ' => "M",
        'Н' | 'Η' => "H",
        'О' | 'Ο' => "O",
        'Р' | 'Ρ' => "P",
        'С' => "C",
        'Т' | 'Τ' => "T",
        'Х' | 'Χ' => "X",
        'І' | 'Ι' => "I",
        'Ј' => "J",
        'Ѕ' => "S",
        'Ζ' => "Z",
        'Ν' => "N",
        'Υ' | 'У' => "Y",
        _ => return None,
    })
}

fn leet(c: u8) -> Option<&'static str> {
    Some(match c {
        b'0' => "o",
        b'1' => "i",
        b'3' => "e",
        b'4' => "a",
        b'5' => "s",
        b'7' => "t",
        b'8' => "b",
        _ => return None,
    })
}

fn leet_symbol(c: u8) -> Option<&'static str> {
    Some(match c {
        b'@' => "a",
        b'$' => "s",
        b'!' => "i",
        b'|' => "l",
        _ => return None,
    })
}

/// Words the segmenter knows (the vocabulary of the signatures), longest first at each step.
const VOCAB: &[&str] = &[
    "instructions",
    "instruction",
    "previous",
    "everything",
    "disregard",
    "guidelines",
    "restrictions",
    "developer",
    "unfiltered",
    "uncensored",
    "jailbreak",
    "reveal",
    "system",
    "prompt",
    "ignore",
    "forget",
    "before",
    "above",
    "prior",
    "rules",
    "print",
    "output",
    "repeat",
    "secret",
    "password",
    "hidden",
    "initial",
    "original",
    "earlier",
    "tell",
    "show",
    "give",
    "what",
    "your",
    "you",
    "are",
    "now",
    "the",
    "all",
    "and",
    "say",
    "that",
    "this",
    "with",
    "text",
    "words",
    "said",
    "told",
    "hacked",
    "pwned",
    "mode",
    "no",
    "say",
    "me",
    "is",
    "of",
    "to",
    "an",
    "a",
    "i",
    "do",
    "not",
    "follow",
    "any",
    "new",
    "task",
    "tasks",
    "only",
    "just",
    "write",
    "answer",
    "reply",
    "respond",
    "act",
    "as",
    "dan",
    "evil",
    "bot",
    "ai",
    "it",
    "in",
    "on",
    "be",
    "my",
    "hi",
    "last",
    "line",
    "first",
    "sentence",
    "message",
    "rule",
    "tell",
    "secret",
    "code",
    "translate",
    "encode",
    "base",
    "french",
    "english",
    "spanish",
    "into",
    "for",
    "from",
    "at",
    "by",
    "let",
    "us",
    "we",
    "here",
    "there",
    "then",
    "than",
    "now",
    "okay",
    "ok",
    "yes",
];

/// Splits a run of letters into vocabulary words (greedy, longest match); letters that start no
/// word stay glued to the previous piece. Returns the split points (indices into `letters`).
fn segment(letters: &[u8]) -> Vec<usize> {
    let mut cuts = Vec::new();
    let mut i = 0;
    let mut glued = false;
    while i < letters.len() {
        let best = VOCAB
            .iter()
            .filter(|w| {
                letters.get(i..i + w.len()).is_some_and(|s| s.eq_ignore_ascii_case(w.as_bytes()))
                    && (w.len() > 1 || i + 1 == letters.len())
            })
            .map(|w| w.len())
            .max();
        match best {
            Some(n) => {
                if i > 0 {
                    cuts.push(i);
                }
                i += n;
                glued = false;
            }
            None => {
                if !glued && i > 0 {
                    cuts.push(i);
                }
                glued = true;
                i += 1;
            }
        }
    }
    cuts
}

/// Runs of single letters joined by one separator: (start, end) byte ranges in `text`.
fn spaced_runs(text: &str) -> Vec<(usize, usize)> {
    let b = text.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    let sep = |c: u8| matches!(c, b' ' | b'.' | b'-' | b'_' | b'*' | b',' | b'/' | b'|' | b'+' | b'~' | b'\t');
    let single = |i: usize| -> bool {
        b[i].is_ascii_alphabetic()
            && (i == 0 || !b[i - 1].is_ascii_alphanumeric() && b[i - 1] < 0x80)
            && (i + 1 >= b.len() || !b[i + 1].is_ascii_alphanumeric() && b[i + 1] < 0x80)
    };
    while i < b.len() {
        if !single(i) {
            i += 1;
            continue;
        }
        let start = i;
        let mut end = i + 1;
        let mut count = 1;
        let mut j = i + 1;
        // Next single letter after one separator, or after a word gap (2–3 separators, or a
        // different separator) within the run.
        loop {
            let mut k = j;
            while k < b.len() && k - j < 3 && sep(b[k]) {
                k += 1;
            }
            if k == j || k >= b.len() || !single(k) {
                break;
            }
            end = k + 1;
            count += 1;
            j = k + 1;
        }
        if count >= 4 {
            out.push((start, end));
        }
        i = end.max(i + 1);
    }
    out
}

/// The folded view, or `None` when nothing folds.
pub(super) fn fold(text: &str) -> Option<View> {
    let limit = super::floor(text, text.len().min(FOLD_MAX));
    let text = &text[..limit];
    let b = text.as_bytes();
    let runs = spaced_runs(text);
    let mut v = View::default();
    v.text.reserve(text.len() + 16);
    let mut changed = false;
    let mut copy_from = 0;
    let mut run_i = 0;
    let mut i = 0;
    let flush = |v: &mut View, from: usize, to: usize| {
        if to > from {
            v.push_seg(from, 1, &text[from..to]);
        }
    };
    while i < b.len() {
        if let Some(&(rs, re)) = runs.get(run_i) {
            if i == rs {
                flush(&mut v, copy_from, i);
                emit_run(text, rs, re, &mut v);
                changed = true;
                run_i += 1;
                i = re;
                copy_from = re;
                continue;
            }
        }
        let c = b[i];
        if c.is_ascii_alphanumeric() {
            // An ASCII word: leet folding applies to the whole word or not at all.
            let mut end = i;
            let (mut letters, mut leets, mut other) = (0, 0, 0);
            while end < b.len() && (b[end].is_ascii_alphanumeric() || (leet_symbol(b[end]).is_some() && end > i)) {
                if leet_symbol(b[end]).is_some()
                    && !(b.get(end + 1).is_some_and(u8::is_ascii_alphanumeric) && b[end - 1].is_ascii_alphanumeric())
                {
                    break;
                }
                match b[end] {
                    x if leet(x).is_some() => leets += 1,
                    b'0'..=b'9' => other += 1,
                    x if x.is_ascii_alphabetic() => letters += 1,
                    _ => leets += 1,
                }
                end += 1;
            }
            let end = end.max(i + 1);
            let mixed = end < b.len() && b[end] >= 0x80;
            if leets >= 1 && letters >= 1 && end - i >= 3 && other == 0 && !mixed {
                flush(&mut v, copy_from, i);
                for k in i..end {
                    match leet(b[k]).or_else(|| leet_symbol(b[k])) {
                        Some(r) => v.push_seg(k, 1, r),
                        None => v.push_seg(k, 1, &text[k..k + 1]),
                    }
                }
                changed = true;
                copy_from = end;
            }
            i = end;
            continue;
        }
        if c < 0x80 && c != 0x1b {
            i += 1;
            continue;
        }
        let Some(ch) = text[i..].chars().next() else { break };
        let n = ch.len_utf8();
        if ch == '\u{1b}' || ch == '\u{9B}' {
            flush(&mut v, copy_from, i);
            let end = super::ceil(text, super::hidden::ansi_end(b, i).max(i + n));
            v.push_seg(i, 0, "");
            changed = true;
            i = end;
            copy_from = end;
            continue;
        }
        let repl = if dropped(ch) {
            Some("")
        } else if let Some(r) = fold_char(ch) {
            Some(r)
        } else if let Some(r) = confusable(ch) {
            mixed_word(text, i, n).then_some(r)
        } else {
            None
        };
        if let Some(r) = repl {
            flush(&mut v, copy_from, i);
            if r.is_empty() {
                v.push_seg(i + n, 0, "");
            } else if r.len() == n {
                v.push_seg(i, 1, r);
            } else {
                // One original character, a different number of bytes: the whole replacement
                // maps to its first byte (and the view's map still ends at the character's end).
                v.push_seg(i, 0, r);
                v.push_seg(i + n, 0, "");
            }
            changed = true;
            copy_from = i + n;
        }
        i += n;
    }
    flush(&mut v, copy_from, b.len());
    changed.then_some(v)
}

/// Whether the word around the confusable at `i..i+n` also has an ASCII letter.
fn mixed_word(text: &str, i: usize, n: usize) -> bool {
    let lo = super::floor(text, i.saturating_sub(64));
    let hi = super::ceil(text, (i + n + 64).min(text.len()));
    let before = text[lo..i].chars().rev().take_while(|c| c.is_alphanumeric() || dropped(*c));
    let after = text[i + n..hi].chars().take_while(|c| c.is_alphanumeric() || dropped(*c));
    before.chain(after).any(|c| c.is_ascii_alphabetic())
}

/// Emits a letter-spaced run: its letters, a space at each word gap, vocabulary splits when the
/// run has no gap at all.
fn emit_run(text: &str, rs: usize, re: usize, v: &mut View) {
    let b = text.as_bytes();
    // (letter index, original position, gap before it)
    let mut letters: Vec<(u8, usize, bool)> = Vec::new();
    let mut first_sep: Option<u8> = None;
    let mut k = rs;
    while k < re {
        let c = b[k];
        if c.is_ascii_alphabetic() {
            let gap = match letters.last() {
                None => false,
                Some(&(_, p, _)) => {
                    let seps = &b[p + 1..k];
                    let s0 = seps.first().copied();
                    if first_sep.is_none() {
                        first_sep = s0;
                    }
                    seps.len() > 1 || s0 != first_sep
                }
            };
            letters.push((c, k, gap));
        }
        k += 1;
    }
    let any_gap = letters.iter().any(|l| l.2);
    // Segmentation is for phrases, not for pages of spaced letters: long runs stay glued.
    let cuts = if any_gap || letters.len() < 6 || letters.len() > SEGMENT_MAX {
        Vec::new()
    } else {
        segment(&letters.iter().map(|l| l.0).collect::<Vec<_>>())
    };
    let mut next_cut = cuts.iter().peekable();
    for (idx, &(c, p, gap)) in letters.iter().enumerate() {
        let cut = next_cut.next_if(|&&k| k == idx).is_some();
        if gap || cut {
            v.push_seg(p, 0, " ");
        }
        let buf = [c];
        v.push_seg(p, 1, std::str::from_utf8(&buf).unwrap_or(" "));
    }
}

/// ROT13 of the ASCII letters; every other byte (and so the UTF-8 structure and the offsets) kept.
pub(super) fn rot13(text: &str) -> String {
    text.chars()
        .map(|c| match c {
            'a'..='m' | 'A'..='M' => (c as u8 + 13) as char,
            'n'..='z' | 'N'..='Z' => (c as u8 - 13) as char,
            _ => c,
        })
        .collect()
}

/// ROT13 spellings of words that open or carry an attack phrase: the prefilter finds them, and
/// only then is the text read in ROT13.
pub(super) const ROT13_TRIGGERS: &[&str] = &[
    "vtaber",       // ignore
    "qvfertneq",    // disregard
    "sbetrg",       // forget
    "cerivbhf",     // previous
    "vafgehpgvbaf", // instructions
    "flfgrz",       // system
    "cebzcg",       // prompt
    "erirny",       // reveal
    "wnvyoernx",    // jailbreak
    "hasvygrerq",   // unfiltered
    "lbhe",         // your
    "rirelguvat",   // everything
    "rot13",
    "rot-13",
];

/// Percent-encoded runs (at least three `%XX` escapes, other URL characters between them).
pub(super) fn url_runs(text: &str) -> Vec<(usize, usize)> {
    let b = text.as_bytes();
    let mut out = Vec::new();
    let esc = |i: usize| b[i] == b'%' && b.get(i + 1..i + 3).is_some_and(|h| h.iter().all(u8::is_ascii_hexdigit));
    let url = |c: u8| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.' | b'~' | b'+' | b'%');
    let mut i = 0;
    while let Some(p) = b.get(i..).and_then(|s| s.iter().position(|&c| c == b'%')) {
        let start = i + p;
        let mut j = start;
        let mut escapes = 0;
        while j < b.len() && url(b[j]) {
            if esc(j) {
                escapes += 1;
                j += 3;
            } else {
                j += 1;
            }
        }
        if escapes >= 3 {
            out.push((start, j));
            if out.len() >= 64 {
                break;
            }
        }
        i = j.max(start + 1);
    }
    out
}

/// Percent-decodes (and `+` as space); `None` unless the result is text.
pub(super) fn url_decode(run: &str) -> Option<String> {
    let b = run.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' if i + 2 < b.len() + 1 && b.get(i + 1..i + 3).is_some_and(|h| h.iter().all(u8::is_ascii_hexdigit)) => {
                let h = std::str::from_utf8(&b[i + 1..i + 3]).ok()?;
                out.push(u8::from_str_radix(h, 16).ok()?);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    let s = String::from_utf8(out).ok()?;
    s.chars().all(|c| !c.is_control() || matches!(c, '\t' | '\n' | '\r')).then_some(s)
}

/// Hex-decodes an even run of hex digits into text.
pub(super) fn hex_decode(run: &str) -> Option<String> {
    let b = run.as_bytes();
    if b.len() % 2 != 0 || !b.iter().all(u8::is_ascii_hexdigit) {
        return None;
    }
    let bytes: Option<Vec<u8>> =
        b.chunks(2).map(|p| std::str::from_utf8(p).ok().and_then(|h| u8::from_str_radix(h, 16).ok())).collect();
    let s = String::from_utf8(bytes?).ok()?;
    (!s.is_empty() && s.chars().all(|c| !c.is_control() || matches!(c, '\t' | '\n' | '\r'))).then_some(s)
}

/// Base32 (RFC 4648, upper case, optional padding) into text.
pub(super) fn base32_decode(run: &str) -> Option<String> {
    let run = run.trim_end_matches('=');
    let mut out = Vec::with_capacity(run.len() * 5 / 8);
    let (mut acc, mut bits) = (0u32, 0u32);
    for c in run.bytes() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'2'..=b'7' => c - b'2' + 26,
            _ => return None,
        };
        acc = (acc << 5) | u32::from(v);
        bits += 5;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    let s = String::from_utf8(out).ok()?;
    (!s.is_empty() && s.chars().all(|c| !c.is_control() || matches!(c, '\t' | '\n' | '\r'))).then_some(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_non_ascii_scan_of_needs_fold_matches_every_char() {
        // The definition: some non-ASCII char of the text folds.
        let folds = |t: &str| {
            t.chars().any(|c| !c.is_ascii() && (fold_char(c).is_some() || confusable(c).is_some() || dropped(c)))
        };
        let mut texts: Vec<String> = vec!["plain".into(), "é".into(), "ｈｉ".into(), "über straße".into()];
        for c in (0x80u32..0x600).chain(0x2000..0x2100).chain(0xFF00..0xFF60).chain(0xE0000..0xE0080) {
            if let Some(ch) = char::from_u32(c) {
                for pad in ["", "a", "abcdefg", "abcdefgh", "é", "über ", "0123456789abcdef"] {
                    texts.push(format!("{pad}{ch}"));
                    texts.push(format!("{pad}ü{ch}{pad}"));
                }
            }
        }
        for t in &texts {
            // Texts with no ASCII trigger: needs_fold is exactly the non-ASCII definition.
            assert_eq!(needs_fold(t), folds(t), "{t:?}");
        }
    }
}
