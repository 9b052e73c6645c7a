//! System-prompt fragments in model output: each managed prompt is cut into shingles of
//! [`SHINGLE`] consecutive normalised words (lowercase letters and digits), hashed once per policy;
//! output is scanned word by word with a rolling window, across stream deltas, and every shingle of a
//! prompt found in it is counted. The count per response feeds the audit trail and metrics (and the
//! prompt-exposure triggers); the text itself is never recorded.

use std::collections::{HashMap, HashSet, VecDeque};
use std::hash::{BuildHasherDefault, Hasher};

/// Words per shingle: long enough that ordinary phrases do not collide with a prompt.
pub const SHINGLE: usize = 8;

/// The shingles of every managed prompt.
#[derive(Debug, Default)]
pub struct PromptShingles {
    by_hash: HashMap<u64, u16, BuildHasherDefault<Prehashed>>,
    ids: Vec<String>,
}

/// The table's keys are shingle hashes already mixed by [`finish`]: they are their own hash (no
/// SipHash per word of output). Output text only looks keys up; it cannot add any, so it cannot
/// crowd one bucket either.
#[derive(Debug, Default)]
struct Prehashed(u64);

impl Hasher for Prehashed {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // Only `u64` keys are hashed here; this keeps any other key correct all the same.
        for &b in bytes {
            self.0 = mix(self.0, u64::from(b));
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

// Hashing is on the response path (every word of every response), so it is a cheap multiplicative
// mix, not SipHash: a collision can only over-count a detection, and the prompts are the operator's.
const SEED: u64 = 0x9e37_79b9_7f4a_7c15;

fn mix(h: u64, x: u64) -> u64 {
    (h ^ x).wrapping_mul(0x0100_0000_01b3).rotate_left(29).wrapping_mul(0xff51_afd7_ed55_8ccd)
}

fn finish(h: u64) -> u64 {
    let h = (h ^ (h >> 33)).wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^ (h >> 33)
}

fn shingle_hash(window: &VecDeque<u64>) -> u64 {
    finish(window.iter().fold(SEED, |h, &w| mix(h, w)))
}

/// The hash of each normalised word of `text` (letters and digits, lowercased), without allocating.
fn word_hashes(text: &str, mut f: impl FnMut(u64)) {
    let mut h = SEED;
    let mut in_word = false;
    for c in text.chars() {
        if c.is_ascii() {
            if c.is_ascii_alphanumeric() {
                h = mix(h, u64::from(c.to_ascii_lowercase()));
                in_word = true;
                continue;
            }
        } else if c.is_alphanumeric() {
            for l in c.to_lowercase() {
                h = mix(h, u64::from(l));
            }
            in_word = true;
            continue;
        }
        if in_word {
            f(finish(h));
            h = SEED;
            in_word = false;
        }
    }
    if in_word {
        f(finish(h));
    }
}

impl PromptShingles {
    /// Adds a prompt; prompts shorter than one shingle add nothing.
    pub fn add(&mut self, id: &str, text: &str) {
        let idx = self.ids.len() as u16;
        self.ids.push(id.to_owned());
        let mut window = VecDeque::with_capacity(SHINGLE);
        word_hashes(text, |w| {
            window.push_back(w);
            if window.len() > SHINGLE {
                window.pop_front();
            }
            if window.len() == SHINGLE {
                self.by_hash.insert(shingle_hash(&window), idx);
            }
        });
    }

    /// Whether no prompt is registered.
    pub fn is_empty(&self) -> bool {
        self.by_hash.is_empty()
    }

    /// The id of a prompt.
    pub fn id(&self, idx: u16) -> &str {
        &self.ids[idx as usize]
    }

    /// Distinct prompt shingles found in a whole text, by prompt index.
    pub fn count(&self, text: &str) -> HashMap<u16, usize> {
        // What `push(text)` then `finish()` on a counter computes, without copying the text into the
        // counter's partial-word buffer first: the text is whole, so no word is cut.
        let mut c = FragmentCounter::default();
        if !self.is_empty() {
            word_hashes(text, |w| c.word(self, w));
        }
        c.hits
    }
}

/// Rolling state over a stream of text deltas.
#[derive(Debug, Default)]
pub struct FragmentCounter {
    window: VecDeque<u64>,
    partial: String,
    seen: HashSet<u64>,
    hits: HashMap<u16, usize>,
}

impl FragmentCounter {
    /// Feeds a delta (a word cut between deltas is joined).
    pub fn push(&mut self, shingles: &PromptShingles, delta: &str) {
        if shingles.is_empty() {
            return;
        }
        self.partial.push_str(delta);
        // Everything up to the last separator is whole words.
        let Some(last_sep) = self.partial.rfind(|c: char| !c.is_alphanumeric()) else { return };
        let split = last_sep + self.partial[last_sep..].chars().next().map_or(1, char::len_utf8);
        let partial = std::mem::take(&mut self.partial);
        word_hashes(&partial[..split], |w| self.word(shingles, w));
        self.partial = partial;
        self.partial.drain(..split);
    }

    /// End of the text.
    pub fn finish(&mut self, shingles: &PromptShingles) {
        let rest = std::mem::take(&mut self.partial);
        word_hashes(&rest, |w| self.word(shingles, w));
    }

    fn word(&mut self, shingles: &PromptShingles, w: u64) {
        self.window.push_back(w);
        if self.window.len() > SHINGLE {
            self.window.pop_front();
        }
        if self.window.len() == SHINGLE {
            let h = shingle_hash(&self.window);
            if let Some(&p) = shingles.by_hash.get(&h) {
                if self.seen.insert(h) {
                    *self.hits.entry(p).or_default() += 1;
                }
            }
        }
    }

    /// Shingles found so far, by prompt index.
    pub fn counts(&self) -> HashMap<u16, usize> {
        self.hits.clone()
    }

    /// Total shingles found.
    pub fn total(&self) -> usize {
        self.hits.values().sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PROMPT: &str = "You are Acme's support assistant. Never reveal internal pricing tiers, never discuss \
        unreleased products, and always escalate refund requests above 500 euros to a human agent.";

    #[test]
    fn counts_fragments_across_any_chunking() {
        let mut s = PromptShingles::default();
        s.add("support", PROMPT);
        let leak = "Sure! My instructions say: never reveal internal pricing tiers, never discuss unreleased products, and always escalate refund requests. Anything else?";
        let whole = s.count(leak);
        assert!(whole.get(&0).copied().unwrap_or(0) >= 3, "{whole:?}");
        for n in [1, 3, 7] {
            let mut c = FragmentCounter::default();
            let chars: Vec<char> = leak.chars().collect();
            for piece in chars.chunks(n) {
                c.push(&s, &piece.iter().collect::<String>());
            }
            c.finish(&s);
            assert_eq!(c.counts(), whole, "chunks of {n}");
        }
        assert!(s.count("I can help with your order; what is the problem with the delivery today?").is_empty());
    }
}
