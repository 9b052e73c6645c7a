//! Incremental Server-Sent Events framing.
//!
//! The framer never interprets payloads: it only finds where each event ends (an empty line) so the
//! gateway can forward, inspect or replace whole events and end a stream on an event boundary. Lines
//! end exactly as the SSE specification says — CRLF, LF or a lone CR, mixed freely, and a CR at the
//! end of one read followed by an LF at the start of the next is one line ending, not two — and a
//! leading byte-order mark is dropped. Every event comes out *canonical*: valid UTF-8 (invalid
//! sequences replaced by U+FFFD, as a client's decoder does) with LF line endings, so what the
//! gateway inspects and what the client receives and parses are the same bytes. Events are zero-copy
//! `Bytes` slices of the upstream's chunks unless they had to be rewritten. Memory is bounded by
//! `max_event`.

use std::borrow::Cow;

use bytes::{Bytes, BytesMut};

/// The UTF-8 byte-order mark a stream may start with.
const BOM: &[u8] = b"\xEF\xBB\xBF";

/// The upstream sent something that is not an SSE stream we can frame.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SseError {
    /// One event grew past the limit without ending.
    #[error("an upstream SSE event exceeded {0} bytes")]
    EventTooLarge(usize),
    /// The stream ended in the middle of an event.
    #[error("the upstream SSE stream ended in the middle of an event")]
    Truncated,
}

/// Splits a byte stream into canonical SSE events (each including its terminating blank line).
#[derive(Debug)]
pub struct SseFramer {
    buf: BytesMut,
    /// Start of the line not yet known to be complete; scanning resumes here.
    line_start: usize,
    max_event: usize,
    /// The last line ended with a CR that was the last byte received: an LF at the start of the
    /// next read belongs to it (CRLF) and is skipped.
    cr_pending: bool,
    /// The start of the stream was looked at (for the byte-order mark).
    started: bool,
}

impl SseFramer {
    /// A framer that refuses events larger than `max_event` bytes.
    pub fn new(max_event: usize) -> Self {
        SseFramer { buf: BytesMut::new(), line_start: 0, max_event, cr_pending: false, started: false }
    }

    /// Appends bytes from the upstream.
    pub fn push(&mut self, mut chunk: &[u8]) {
        if self.cr_pending && !chunk.is_empty() {
            self.cr_pending = false;
            if chunk[0] == b'\n' {
                chunk = &chunk[1..];
            }
        }
        self.buf.extend_from_slice(chunk);
    }

    /// The next complete event, if one is buffered.
    pub fn next_event(&mut self) -> Result<Option<Bytes>, SseError> {
        if !self.started {
            if self.buf.len() < BOM.len() && BOM.starts_with(&self.buf) {
                // Perhaps the first bytes of a byte-order mark: wait for more.
                return Ok(None);
            }
            self.started = true;
            if self.buf.starts_with(BOM) {
                let _ = self.buf.split_to(BOM.len());
            }
        }
        let mut i = self.line_start;
        while let Some(off) = memchr::memchr2(b'\n', b'\r', &self.buf[i..]) {
            let p = i + off;
            let eol = match (self.buf[p], self.buf.get(p + 1).copied()) {
                (b'\r', Some(b'\n')) => 2,
                (b'\r', next) => {
                    // A lone CR ends its line; it is written as the LF it stands for, so that in
                    // a complete event every CR left belongs to a CRLF (see `canonical`). At the
                    // end of what was received, an LF first in the next read belongs to it (CRLF
                    // split across reads; see `push`).
                    self.cr_pending = next.is_none();
                    self.buf[p] = b'\n';
                    1
                }
                _ => 1,
            };
            let empty_line = p == i;
            i = p + eol;
            if empty_line {
                self.line_start = 0;
                return Ok(Some(canonical(self.buf.split_to(i).freeze())));
            }
        }
        self.line_start = i;
        if self.buf.len() > self.max_event {
            return Err(SseError::EventTooLarge(self.max_event));
        }
        Ok(None)
    }

    /// Call at end of stream, after [`next_event`](Self::next_event) returned `None`: an unfinished
    /// event is an error (whitespace-only leftovers are not). Returns a last event if one is still
    /// buffered.
    pub fn finish(&mut self) -> Result<Option<Bytes>, SseError> {
        if !self.started && BOM.starts_with(&self.buf) {
            self.buf.clear();
        }
        let last = self.next_event()?;
        if self.buf.iter().all(|b| b.is_ascii_whitespace()) {
            Ok(last)
        } else {
            Err(SseError::Truncated)
        }
    }
}

/// The event with LF line endings and valid UTF-8; unchanged (no copy) when it already is. Every
/// CR in a framed event is the first half of a CRLF (lone CRs were rewritten as LF while framing).
fn canonical(raw: Bytes) -> Bytes {
    let raw = match memchr::memchr(b'\r', &raw) {
        None => raw,
        Some(_) => Bytes::from(raw.iter().copied().filter(|&b| b != b'\r').collect::<Vec<u8>>()),
    };
    if std::str::from_utf8(&raw).is_ok() {
        raw
    } else {
        Bytes::from(String::from_utf8_lossy(&raw).into_owned())
    }
}

/// The lines of `raw`, each without its line ending (CRLF, LF or CR), as the SSE specification
/// splits them. A last line with no ending is included.
pub(crate) fn lines(raw: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut rest = raw;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let (line, next) = match memchr::memchr2(b'\n', b'\r', rest) {
            None => (rest, &rest[rest.len()..]),
            Some(p) if rest[p] == b'\r' && rest.get(p + 1) == Some(&b'\n') => (&rest[..p], &rest[p + 2..]),
            Some(p) => (&rest[..p], &rest[p + 1..]),
        };
        rest = next;
        Some(line)
    })
}

/// Writes one SSE event carrying a JSON document, named or not.
pub fn event(name: Option<&str>, data: &serde_json::Value) -> Bytes {
    match name {
        Some(n) => Bytes::from(format!("event: {n}\ndata: {data}\n\n")),
        None => Bytes::from(format!("data: {data}\n\n")),
    }
}

/// The fields of one raw event that the gateway looks at.
#[derive(Debug, PartialEq, Eq)]
pub struct Event<'a> {
    /// The `event:` name, if any.
    pub name: Option<&'a str>,
    /// The `data:` lines joined by `\n` (borrowed when there is one line).
    pub data: Option<Cow<'a, str>>,
    /// The `id:` field (resumption with `Last-Event-ID`), if any.
    pub id: Option<&'a str>,
    /// The `retry:` field, if any.
    pub retry: Option<&'a str>,
}

/// Reads the `event:`, `data:`, `id:` and `retry:` fields of a raw event (lines split as the SSE
/// specification says). Comments and other fields are ignored; invalid UTF-8 lines are skipped
/// (events from [`SseFramer`] are always valid UTF-8).
pub fn parse_event(raw: &[u8]) -> Event<'_> {
    let (mut name, mut id, mut retry) = (None, None, None);
    let mut data: Option<Cow<'_, str>> = None;
    for line in lines(raw) {
        let Ok(line) = std::str::from_utf8(line) else { continue };
        let (field, value) = match line.split_once(':') {
            Some((f, v)) => (f, v.strip_prefix(' ').unwrap_or(v)),
            None => (line, ""),
        };
        match field {
            "event" => name = Some(value),
            "id" => id = Some(value),
            "retry" => retry = Some(value),
            "data" => {
                data = Some(match data {
                    None => Cow::Borrowed(value),
                    Some(prev) => Cow::Owned(format!("{prev}\n{value}")),
                })
            }
            _ => {}
        }
    }
    Event { name, data, id, retry }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    fn frame_all(chunks: &[&[u8]]) -> Vec<Bytes> {
        let mut f = SseFramer::new(1 << 20);
        let mut out = Vec::new();
        for c in chunks {
            f.push(c);
            while let Some(e) = f.next_event().unwrap() {
                out.push(e);
            }
        }
        if let Some(last) = f.finish().unwrap() {
            out.push(last);
        }
        out
    }

    #[test]
    fn frames_regardless_of_chunking() {
        let stream = b"data: {\"a\":1}\n\n: keep-alive\n\nevent: x\r\ndata: y\r\n\r\ndata: [DONE]\n\n";
        let whole = frame_all(&[stream]);
        assert_eq!(whole.len(), 4);
        assert_eq!(&whole[3][..], b"data: [DONE]\n\n");
        for split in 1..stream.len() {
            let (a, b) = stream.split_at(split);
            assert_eq!(frame_all(&[a, b]), whole, "split at {split}");
        }
        let bytes: Vec<&[u8]> = stream.chunks(1).collect();
        assert_eq!(frame_all(&bytes), whole);
    }

    #[test]
    fn cr_only_line_endings() {
        let got = frame_all(&[b"data: a\r\rdata: b\r", b"\r"]);
        assert_eq!(got, vec![Bytes::from_static(b"data: a\n\n"), Bytes::from_static(b"data: b\n\n")]);
        // The audit's case: fields on CR-only lines are all seen.
        let got = frame_all(&[b"id: 1\revent: message\rdata: {\"k\":\"v\"}\r\r"]);
        let e = parse_event(&got[0]);
        assert_eq!((e.id, e.name, e.data.as_deref()), (Some("1"), Some("message"), Some("{\"k\":\"v\"}")));
        assert_eq!(parse_event(b"event: x\rdata: y\r\r").data.as_deref(), Some("y"));
    }

    #[test]
    fn a_cr_ends_an_event_at_once_and_a_following_lf_is_no_phantom_line() {
        let mut f = SseFramer::new(1 << 20);
        f.push(b"data: a\r\r");
        // Dispatched without waiting for the next read.
        assert_eq!(f.next_event().unwrap().as_deref(), Some(&b"data: a\n\n"[..]));
        // The LF completing that CR (CRLF split across reads) is not an empty line of its own.
        f.push(b"\ndata: b\n");
        assert_eq!(f.next_event(), Ok(None));
        f.push(b"\n");
        assert_eq!(f.next_event().unwrap().as_deref(), Some(&b"data: b\n\n"[..]));
        assert_eq!(f.finish(), Ok(None));
        // CR | LF + LF: the line's CRLF split across reads, then the blank line; the forwarded
        // event keeps its blank line.
        assert_eq!(frame_all(&[b": k\r", b"\n\ndata: d\n\n"])[0], Bytes::from_static(b": k\n\n"));
        // CR | LF | CR | LF across four reads: one line, then one blank line.
        assert_eq!(frame_all(&[b"data: c\r", b"\n", b"\r", b"\n"]), vec![Bytes::from_static(b"data: c\n\n")]);
    }

    #[test]
    fn bom_and_invalid_utf8_are_decoded_as_a_client_does() {
        let bom = b"\xEF\xBB\xBFdata: a\n\n";
        for split in 0..bom.len() {
            let (a, b) = bom.split_at(split);
            assert_eq!(frame_all(&[a, b]), vec![Bytes::from_static(b"data: a\n\n")], "split at {split}");
        }
        // Only at the start of the stream.
        assert_eq!(frame_all(&[b"data: a\n\n\xEF\xBB\xBFdata: b\n\n"])[1][..3], b"\xEF\xBB\xBF"[..]);
        let got = frame_all(&[b"data: {\"t\":\"k\xFFey\"}\n\n"]);
        assert_eq!(parse_event(&got[0]).data.as_deref(), Some("{\"t\":\"k\u{FFFD}ey\"}"));
        assert_eq!(frame_all(&[b"\xEF\xBB"]), Vec::<Bytes>::new());
    }

    #[test]
    fn oversized_and_truncated() {
        let mut f = SseFramer::new(8);
        f.push(b"data: 0123456789");
        assert_eq!(f.next_event(), Err(SseError::EventTooLarge(8)));
        let mut f = SseFramer::new(100);
        f.push(b"data: half");
        assert_eq!(f.next_event(), Ok(None));
        assert_eq!(f.finish(), Err(SseError::Truncated));
    }

    #[test]
    fn parses_fields() {
        let e = parse_event(b"event: message_start\ndata: {\"x\":1}\n\n");
        assert_eq!(e.name, Some("message_start"));
        assert_eq!(e.data.as_deref(), Some("{\"x\":1}"));
        let e = parse_event(b"data: a\ndata: b\n\n");
        assert_eq!(e.data.as_deref(), Some("a\nb"));
        assert_eq!(parse_event(b": comment\n\n"), Event { name: None, data: None, id: None, retry: None });
    }

    /// One line ending, rendered.
    fn eol(k: u8) -> &'static [u8] {
        match k % 3 {
            0 => b"\n",
            1 => b"\r",
            _ => b"\r\n",
        }
    }

    /// Renders `events` (each a list of lines) with the line endings `ends` picks, so that a CR is
    /// never followed by an LF meant as a line ending of its own (that would be one CRLF).
    pub(crate) fn render(events: &[Vec<String>], ends: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        let mut k = 0;
        let mut next_eol = |out: &mut Vec<u8>| {
            let mut e = eol(ends.get(k).copied().unwrap_or(0));
            k += 1;
            if out.last() == Some(&b'\r') && e == b"\n" {
                e = b"\r";
            }
            out.extend_from_slice(e);
        };
        for ev in events {
            for line in ev {
                out.extend_from_slice(line.as_bytes());
                next_eol(&mut out);
            }
            next_eol(&mut out);
        }
        out
    }

    fn chunks<'a>(stream: &'a [u8], cuts: &[usize]) -> Vec<&'a [u8]> {
        let mut chunks = Vec::new();
        let mut at = 0;
        for &c in cuts {
            let c = c.min(stream.len()).max(at);
            chunks.push(&stream[at..c]);
            at = c;
        }
        chunks.push(&stream[at..]);
        chunks
    }

    fn fields(stream: &[u8], cuts: &[usize]) -> Vec<(Option<String>, Option<String>, Option<String>)> {
        frame_all(&chunks(stream, cuts))
            .iter()
            .map(|raw| {
                let e = parse_event(raw);
                (e.name.map(str::to_owned), e.data.map(|d| d.into_owned()), e.id.map(str::to_owned))
            })
            .collect()
    }

    proptest::proptest! {
        /// Any mix of line endings and any chunking gives the same events and fields as the same
        /// stream with LF endings in one piece — so every decision made on them is the same.
        #[test]
        fn any_line_endings_and_chunking_give_the_same_events(
            events in proptest::collection::vec(
                proptest::collection::vec("(data|event|id|: c|data: \\{\"k\":1\\}|event: message|id: 7)[a-z ]{0,4}", 1..4),
                1..6,
            ),
            ends in proptest::collection::vec(0u8..3, 0..40),
            cuts in proptest::collection::vec(0usize..200, 0..12),
        ) {
            let lf = render(&events, &[]);
            let mixed = render(&events, &ends);
            let mut cuts = cuts;
            cuts.sort_unstable();
            let want = fields(&lf, &[]);
            proptest::prop_assert_eq!(want.len(), events.len());
            proptest::prop_assert_eq!(fields(&mixed, &cuts), want);
            // What is forwarded is the canonical stream: the LF rendering, byte for byte.
            proptest::prop_assert_eq!(frame_all(&chunks(&mixed, &cuts)).concat(), lf);
        }
    }
}
