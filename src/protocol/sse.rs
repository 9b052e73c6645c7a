//! Incremental Server-Sent Events framing.
//!
//! The framer never interprets payloads: it only finds where each event ends (an empty line, with
//! `\n`, `\r\n` or `\r` line endings) so the gateway can forward, inspect or replace whole events and
//! end a stream on an event boundary. Events are handed out as zero-copy `Bytes` slices of the
//! upstream's chunks. Memory is bounded by `max_event`.

use std::borrow::Cow;

use bytes::{Bytes, BytesMut};

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

/// Splits a byte stream into raw SSE events (each including its terminating blank line).
#[derive(Debug)]
pub struct SseFramer {
    buf: BytesMut,
    /// Start of the line not yet known to be complete; scanning resumes here.
    line_start: usize,
    max_event: usize,
}

impl SseFramer {
    /// A framer that refuses events larger than `max_event` bytes.
    pub fn new(max_event: usize) -> Self {
        SseFramer { buf: BytesMut::new(), line_start: 0, max_event }
    }

    /// Appends bytes from the upstream.
    pub fn push(&mut self, chunk: &[u8]) {
        self.buf.extend_from_slice(chunk);
    }

    /// The next complete event, if one is buffered.
    pub fn next_event(&mut self) -> Result<Option<Bytes>, SseError> {
        let mut i = self.line_start;
        loop {
            let b = &self.buf[..];
            let Some(off) = memchr::memchr2(b'\n', b'\r', &b[i..]) else { break };
            let p = i + off;
            let eol = if b[p] == b'\r' {
                match b.get(p + 1) {
                    Some(b'\n') => 2,
                    Some(_) => 1,
                    // A lone `\r` at the end may be the first half of `\r\n`: wait for more.
                    None => break,
                }
            } else {
                1
            };
            let empty_line = p == i;
            i = p + eol;
            if empty_line {
                self.line_start = 0;
                return Ok(Some(self.buf.split_to(i).freeze()));
            }
        }
        self.line_start = i;
        if self.buf.len() > self.max_event {
            return Err(SseError::EventTooLarge(self.max_event));
        }
        Ok(None)
    }

    /// Call at end of stream: returns a last event completed by the end itself (a final lone `\r`
    /// line ending); an unfinished event is an error (whitespace-only leftovers are not).
    pub fn finish(&mut self) -> Result<Option<Bytes>, SseError> {
        if self.buf.last() == Some(&b'\r') {
            // At the end of the stream a lone `\r` can no longer become `\r\n`: it ends its line.
            self.buf.extend_from_slice(b"\n");
            if let Some(e) = self.next_event()? {
                return if self.buf.iter().all(|b| b.is_ascii_whitespace()) {
                    Ok(Some(e))
                } else {
                    Err(SseError::Truncated)
                };
            }
        }
        if self.buf.iter().all(|b| b.is_ascii_whitespace()) {
            Ok(None)
        } else {
            Err(SseError::Truncated)
        }
    }
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

/// Reads the `event:`, `data:`, `id:` and `retry:` fields of a raw event. Comments and other fields
/// are ignored; invalid UTF-8 lines are skipped.
pub fn parse_event(raw: &[u8]) -> Event<'_> {
    let (mut name, mut id, mut retry) = (None, None, None);
    let mut data: Option<Cow<'_, str>> = None;
    for line in raw.split(|&b| b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
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
mod tests {
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
        assert_eq!(frame_all(&[b"data: a\r\rdata: b\r", b"\r"]).len(), 2);
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
}
