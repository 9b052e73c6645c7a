//! Hidden text: invisible and control characters, Unicode TAG smuggling, and base64 runs.
//!
//! Only reached when the prefilter saw one of the byte sequences in [`TRIGGERS`] (or, for base64,
//! a long run of base64 characters). [`normalize`] then walks the text once and produces
//! - the hidden-character marks to report, and
//! - a *view* of the text for the phrase signatures: invisible characters and escape sequences
//!   removed, TAG characters decoded to the ASCII they carry. The view keeps a map back to the
//!   original, so a phrase split by zero-width characters, or spelled in TAG characters, is found
//!   and reported at its position in the original text.

use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
use base64::engine::DecodePaddingMode;
use base64::{alphabet, Engine};

/// A kind of hidden text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum HiddenKind {
    /// Zero-width characters.
    ZeroWidth = 0,
    /// Unicode TAG characters.
    TagChars = 1,
    /// Bidi controls.
    Bidi = 2,
    /// ANSI escape sequences.
    Ansi = 3,
}

/// UTF-8 sequences that send a text down the hidden-text path: every zero-width and bidi
/// character, the two 3-byte prefixes of the TAG block, ESC and the 8-bit CSI.
pub(super) const TRIGGERS: &[&[u8]] = &[
    "\u{200B}".as_bytes(),
    "\u{200C}".as_bytes(),
    "\u{200D}".as_bytes(),
    "\u{200E}".as_bytes(),
    "\u{200F}".as_bytes(),
    "\u{2060}".as_bytes(),
    "\u{2061}".as_bytes(),
    "\u{2062}".as_bytes(),
    "\u{2063}".as_bytes(),
    "\u{2064}".as_bytes(),
    "\u{FEFF}".as_bytes(),
    "\u{202A}".as_bytes(),
    "\u{202B}".as_bytes(),
    "\u{202C}".as_bytes(),
    "\u{202D}".as_bytes(),
    "\u{202E}".as_bytes(),
    "\u{2066}".as_bytes(),
    "\u{2067}".as_bytes(),
    "\u{2068}".as_bytes(),
    "\u{2069}".as_bytes(),
    &[0xF3, 0xA0, 0x80], // U+E0000..=U+E003F
    &[0xF3, 0xA0, 0x81], // U+E0040..=U+E007F
    b"\x1b",
    "\u{9B}".as_bytes(),
];

/// A hidden-text finding in the original text.
#[derive(Debug, Clone, Copy)]
pub(super) struct Mark {
    pub kind: HiddenKind,
    pub start: usize,
    pub end: usize,
}

/// The normalised view of a text (see the module docs).
#[derive(Debug, Default)]
pub(super) struct View {
    pub text: String,
    pub marks: Vec<Mark>,
    /// View bytes `[view, next.view)` map to `orig + (v - view) * width` (width 0: a separator the
    /// view inserted around decoded TAG text).
    segs: Vec<Seg>,
}

#[derive(Debug, Clone, Copy)]
struct Seg {
    view: usize,
    orig: usize,
    width: usize,
}

impl View {
    /// The original byte range of view bytes `start..end`.
    pub fn map(&self, start: usize, end: usize) -> (usize, usize) {
        let at = |v: usize| -> Option<Seg> {
            let k = self.segs.partition_point(|s| s.view <= v).checked_sub(1)?;
            self.segs.get(k).copied()
        };
        let s = at(start).map_or(0, |g| g.orig + (start - g.view) * g.width);
        let e = match end.checked_sub(1).and_then(|last| at(last).map(|g| (last, g))) {
            // An inserted or re-spelled piece ends where the next piece starts.
            Some((_, g)) if g.width == 0 => {
                let k = self.segs.partition_point(|s| s.view <= end.saturating_sub(1));
                self.segs.get(k).map_or(g.orig, |n| n.orig.max(g.orig))
            }
            Some((last, g)) => g.orig + (last - g.view) * g.width + g.width,
            None => s,
        };
        (s, e.max(s))
    }

    pub(super) fn push_seg(&mut self, orig: usize, width: usize, bytes: &str) {
        let view = self.text.len();
        match self.segs.last() {
            Some(l) if l.width == width && width > 0 && l.orig + (view - l.view) * width == orig => {}
            _ => self.segs.push(Seg { view, orig, width }),
        }
        self.text.push_str(bytes);
    }

    fn mark(&mut self, kind: HiddenKind, start: usize, end: usize) {
        match self.marks.last_mut() {
            Some(m) if m.kind == kind && m.end == start => m.end = end,
            _ => self.marks.push(Mark { kind, start, end }),
        }
    }
}

fn is_tag(c: char) -> bool {
    ('\u{E0000}'..='\u{E007F}').contains(&c)
}

/// Zero-width or bidi control.
fn invisible(c: char) -> Option<HiddenKind> {
    match c {
        '\u{200B}'..='\u{200F}' | '\u{2060}'..='\u{2064}' | '\u{FEFF}' => Some(HiddenKind::ZeroWidth),
        '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}' => Some(HiddenKind::Bidi),
        _ => None,
    }
}

fn is_rtl(c: char) -> bool {
    matches!(c, '\u{0590}'..='\u{08FF}' | '\u{FB1D}'..='\u{FDFF}' | '\u{FE70}'..='\u{FEFC}')
}

/// Whether an invisible character at `i` has a legitimate typographic use here (and is therefore
/// not reported; the view drops it either way).
fn legit(text: &str, i: usize, c: char, prev: Option<char>, next: Option<char>) -> bool {
    let is_visible_non_ascii = |x: Option<char>| {
        x.is_some_and(|x| !x.is_ascii() && !x.is_whitespace() && invisible(x).is_none() && !is_tag(x))
    };
    // A run of invisible characters is never typography: it is a word split or encoded data.
    if prev.and_then(invisible).is_some() || next.and_then(invisible).is_some() {
        return false;
    }
    match c {
        // ZWSP, ZWNJ, ZWJ, WJ between two visible non-ASCII characters: emoji ZWJ sequences,
        // Persian/Indic joining control, Thai/Khmer word breaks.
        '\u{200B}' | '\u{200C}' | '\u{200D}' | '\u{2060}' => is_visible_non_ascii(prev) && is_visible_non_ascii(next),
        // LRM/RLM near right-to-left script.
        '\u{200E}' | '\u{200F}' => {
            let lo = super::floor(text, i.saturating_sub(64));
            let hi = super::ceil(text, i.saturating_add(64));
            text.get(lo..hi).is_some_and(|w| w.chars().any(is_rtl))
        }
        // Byte-order mark at the very start.
        '\u{FEFF}' => i == 0,
        _ => false,
    }
}

/// End of the escape sequence starting at `i` (ESC or U+009B).
pub(super) fn ansi_end(b: &[u8], i: usize) -> usize {
    let intro_len = match (b.get(i), b.get(i + 1)) {
        (Some(0x1b), Some(b'[')) | (Some(0xC2), Some(0x9B)) => 2,
        (Some(0x1b), Some(b']')) => {
            // OSC: up to BEL or ESC \, bounded.
            let lim = b.len().min(i + 512);
            let mut j = i + 2;
            while j < lim {
                match b[j] {
                    0x07 => return j + 1,
                    0x1b if b.get(j + 1) == Some(&b'\\') => return j + 2,
                    _ => j += 1,
                }
            }
            return i + 2;
        }
        (Some(0x1b), Some(&c)) if (0x20..0x7f).contains(&c) => return i + 2,
        _ => return i + 1,
    };
    let lim = b.len().min(i + 64);
    let mut j = i + intro_len;
    while j < lim && (0x30..=0x3f).contains(&b[j]) {
        j += 1;
    }
    while j < lim && (0x20..=0x2f).contains(&b[j]) {
        j += 1;
    }
    if j < lim && (0x40..=0x7e).contains(&b[j]) {
        j += 1;
    }
    j
}

/// Emoji subdivision flag: 🏴 followed by 2–6 tag letters/digits and CANCEL TAG.
fn flag_tags(prev: Option<char>, run: &str) -> bool {
    let n = run.chars().count();
    prev == Some('\u{1F3F4}')
        && (3..=7).contains(&n)
        && run.ends_with('\u{E007F}')
        && run.chars().take(n - 1).all(|c| matches!(c, '\u{E0030}'..='\u{E0039}' | '\u{E0061}'..='\u{E007A}'))
}

/// Walks `text` once: hidden-text marks plus the normalised view.
pub(super) fn normalize(text: &str) -> View {
    let b = text.as_bytes();
    let mut v = View { text: String::with_capacity(text.len()), ..View::default() };
    let mut copy_from = 0;
    let mut prev: Option<char> = None;
    let mut i = 0;
    while i < b.len() {
        if b[i] < 0x80 && b[i] != 0x1b {
            prev = Some(b[i] as char);
            i += 1;
            continue;
        }
        let Some(c) = text.get(i..).and_then(|s| s.chars().next()) else { break };
        let n = c.len_utf8();
        let flush = |v: &mut View, to: usize| {
            if to > copy_from {
                v.push_seg(copy_from, 1, &text[copy_from..to]);
            }
        };
        if c == '\u{1b}' || c == '\u{9B}' {
            flush(&mut v, i);
            let end = super::ceil(text, ansi_end(b, i).max(i + n));
            v.mark(HiddenKind::Ansi, i, end);
            i = end;
            copy_from = end;
            prev = None;
        } else if is_tag(c) {
            flush(&mut v, i);
            let run_len = text[i..].chars().take_while(|&c| is_tag(c)).map(char::len_utf8).sum::<usize>();
            let end = i + run_len;
            if !flag_tags(prev, &text[i..end]) {
                v.mark(HiddenKind::TagChars, i, end);
                v.push_seg(i, 0, " ");
                let mut buf = [0u8; 4];
                for (j, t) in text[i..end].char_indices() {
                    let a = (t as u32).wrapping_sub(0xE0000);
                    let ch = if (0x20..0x7f).contains(&a) { a as u8 as char } else { ' ' };
                    v.push_seg(i + j, 4, ch.encode_utf8(&mut buf));
                }
                v.push_seg(end, 0, " ");
            }
            prev = text[i..end].chars().last();
            i = end;
            copy_from = end;
        } else if let Some(kind) = invisible(c) {
            flush(&mut v, i);
            let next = text[i + n..].chars().next();
            if !legit(text, i, c, prev, next) {
                v.mark(kind, i, i + n);
            }
            prev = Some(c);
            i += n;
            copy_from = i;
        } else {
            prev = Some(c);
            i += n;
        }
    }
    if copy_from < text.len() {
        v.push_seg(copy_from, 1, &text[copy_from..]);
    }
    v
}

// === base64 ===

/// Shortest base64 run worth decoding.
pub(super) const B64_MIN_RUN: usize = 24;
/// Most base64 characters decoded from one run.
pub(super) const B64_MAX_PER_RUN: usize = 64 << 10;
/// Most base64 characters decoded per scan.
pub(super) const B64_BUDGET: usize = 256 << 10;
/// Most candidate runs examined per scan.
pub(super) const B64_MAX_RUNS: usize = 256;

fn is_b64(c: u8) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, b'+' | b'/' | b'-' | b'_')
}

/// Candidate base64 runs (≥ [`B64_MIN_RUN`] characters, trailing `=` included), found by probing
/// every `B64_MIN_RUN`-th byte: a run that long must cover a probe, so prose costs well under one
/// pass.
pub(super) fn base64_runs(text: &str) -> impl Iterator<Item = (usize, usize)> + '_ {
    let b = text.as_bytes();
    let mut p = B64_MIN_RUN - 1;
    let mut runs = 0;
    std::iter::from_fn(move || {
        while p < b.len() && runs < B64_MAX_RUNS {
            if !is_b64(b[p]) {
                p += B64_MIN_RUN;
                continue;
            }
            let mut s = p;
            while s > 0 && is_b64(b[s - 1]) {
                s -= 1;
            }
            let mut e = p + 1;
            while e < b.len() && is_b64(b[e]) {
                e += 1;
            }
            p = e + B64_MIN_RUN;
            if e - s >= B64_MIN_RUN {
                runs += 1;
                let mut pe = e;
                while pe < b.len() && pe < e + 2 && b[pe] == b'=' {
                    pe += 1;
                }
                return Some((s, pe));
            }
        }
        None
    })
}

const LENIENT: GeneralPurposeConfig = GeneralPurposeConfig::new()
    .with_decode_padding_mode(DecodePaddingMode::Indifferent)
    .with_decode_allow_trailing_bits(true);
const STANDARD: GeneralPurpose = GeneralPurpose::new(&alphabet::STANDARD, LENIENT);
const URL_SAFE: GeneralPurpose = GeneralPurpose::new(&alphabet::URL_SAFE, LENIENT);

/// Decodes a base64 run into text, if it is text (valid UTF-8 without control characters other
/// than whitespace).
/// Charges the characters decoded to `budget`.
pub(super) fn decode_text(run: &str, budget: &mut usize) -> Option<String> {
    let run = run.trim_end_matches('=');
    let url = run.bytes().any(|c| c == b'-' || c == b'_');
    if url && run.bytes().any(|c| c == b'+' || c == b'/') {
        return None;
    }
    let engine = if url { &URL_SAFE } else { &STANDARD };
    // Offsets 0..=32: a run glued to a short path or word ("path/aWdub3Jl…") still decodes.
    for offset in 0..=32usize.min(run.len().saturating_sub(B64_MIN_RUN)) {
        let Some(chunk) = run.get(offset..) else { break };
        let probe = decodable(chunk.len().min(64));
        if !engine.decode(&chunk[..probe]).is_ok_and(|d| is_text(&d)) {
            continue;
        }
        let len = decodable(chunk.len().min(B64_MAX_PER_RUN).min(*budget));
        *budget = budget.saturating_sub(len);
        let bytes = engine.decode(&chunk[..len]).ok()?;
        if !is_text(&bytes) {
            return None;
        }
        return match String::from_utf8(bytes) {
            Ok(s) => Some(s),
            Err(e) => {
                let valid = e.utf8_error().valid_up_to();
                let mut bytes = e.into_bytes();
                bytes.truncate(valid);
                String::from_utf8(bytes).ok()
            }
        };
    }
    None
}

/// The longest prefix of `len` base64 characters that decodes (a lone trailing character cannot);
/// a cut prefix keeps whole 4-character groups.
fn decodable(len: usize) -> usize {
    if len % 4 == 1 {
        len - 1
    } else {
        len
    }
}

/// UTF-8 (a cut multi-byte character at the end allowed) with no control characters except
/// whitespace.
fn is_text(d: &[u8]) -> bool {
    let s = match std::str::from_utf8(d) {
        Ok(s) => s,
        Err(e) if e.error_len().is_none() && d.len() - e.valid_up_to() < 4 => {
            std::str::from_utf8(&d[..e.valid_up_to()]).unwrap_or_default()
        }
        Err(_) => return false,
    };
    !s.is_empty() && s.chars().all(|c| !c.is_control() || matches!(c, '\t' | '\n' | '\r'))
}
