//! Substring tests for fixed needles, prepared once. `memchr::memmem::find` builds a searcher on
//! every call; on the per-event path (a 100-300 byte SSE event, several needles each) building it
//! cost more than the search (perf: `Searcher::new` ~1% of the proxy's samples on the SSE load).

use std::sync::OnceLock;

use memchr::memmem::{FindIter, Finder};

/// A fixed needle with its searcher, built on first use: `static N: Needle = Needle::new(b"://");`
#[derive(Debug)]
pub struct Needle {
    bytes: &'static [u8],
    finder: OnceLock<Finder<'static>>,
}

impl Needle {
    /// A needle (nothing is built until the first search).
    pub const fn new(bytes: &'static [u8]) -> Needle {
        Needle { bytes, finder: OnceLock::new() }
    }

    fn finder(&self) -> &Finder<'static> {
        self.finder.get_or_init(|| Finder::new(self.bytes))
    }

    /// Where the needle first occurs in `haystack`.
    pub fn find(&self, haystack: &[u8]) -> Option<usize> {
        self.finder().find(haystack)
    }

    /// Whether the needle occurs in `haystack`.
    pub fn is_in(&self, haystack: &[u8]) -> bool {
        self.find(haystack).is_some()
    }

    /// Every non-overlapping occurrence, left to right.
    pub fn find_iter<'h>(&'static self, haystack: &'h [u8]) -> FindIter<'h, 'static> {
        self.finder().find_iter(haystack)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    static SCHEME: Needle = Needle::new(b"://");

    #[test]
    fn finds_like_memmem() {
        for h in [&b""[..], b"://", b"a://b://c", b"no scheme", b":/ /"] {
            assert_eq!(SCHEME.find(h), memchr::memmem::find(h, b"://"), "{h:?}");
            assert_eq!(
                SCHEME.find_iter(h).collect::<Vec<_>>(),
                memchr::memmem::find_iter(h, b"://").collect::<Vec<_>>()
            );
        }
    }
}
