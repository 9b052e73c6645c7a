//! The link stage after redaction: outside links and images in model text are neutralised, and a
//! stream holds back an open markdown construct until it is complete.

/// Neutralises links and images in model output that point outside the egress rules.
#[derive(Clone)]
pub struct LinkGuard {
    /// The policy's egress rules.
    pub rules: std::sync::Arc<crate::inspect::egress::EgressRules>,
    /// Extra blocked hosts (the switches in force).
    pub blocked: std::sync::Arc<dyn Fn(&str) -> bool + Send + Sync>,
}

impl std::fmt::Debug for LinkGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LinkGuard")
    }
}

impl LinkGuard {
    /// `text` with outside links neutralised; the number neutralised.
    pub fn apply(&self, text: &str) -> Option<(String, usize)> {
        self.rules.neutralize_markdown(text, &*self.blocked).map(|(s, n)| (s, n.len()))
    }
}

/// Longest markdown link or image the stream holds back for (text + URL + title).
pub const MARKDOWN_HOLD: usize = 2600;

/// Where released stream text must stop so no markdown link, image, autolink or HTML tag is cut
/// in half: the start of the earliest construct in the last [`MARKDOWN_HOLD`] bytes that is still
/// open (no closing `)` / `>` yet). Everything before it can be neutralised and released.
pub fn markdown_cut(text: &str) -> usize {
    let b = text.as_bytes();
    let from = crate::inspect::scanner::floor(text, b.len().saturating_sub(MARKDOWN_HOLD));
    let mut i = from;
    while let Some(off) = memchr::memchr2(b'[', b'<', &b[i..]) {
        let c = i + off;
        let rest = &b[c..];
        let open = if rest[0] == b'<' {
            memchr::memchr(b'>', rest).is_none()
        } else {
            match memchr::memchr(b']', rest) {
                None => true,
                // `[text]` at the very end: a `(` or `:` may still follow.
                Some(close) if c + close + 1 == b.len() => true,
                Some(close) => match rest.get(close + 1) {
                    Some(b'(') => memchr::memchr(b')', &rest[close..]).is_none(),
                    Some(b':') => memchr::memchr(b'\n', &rest[close..]).is_none(),
                    _ => false,
                },
            }
        };
        if open {
            // Include a `!` that makes it an image.
            return if c > 0 && b[c - 1] == b'!' { c - 1 } else { c };
        }
        i = c + 1;
    }
    // A trailing `!` may become an image once its `[` arrives.
    if b.last() == Some(&b'!') {
        return b.len() - 1;
    }
    b.len()
}
