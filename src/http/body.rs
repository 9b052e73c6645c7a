//! Bodies: the one reader of request bodies (size, time, rate and memory limits), whole response
//! buffers, and channel-fed response streams written by a pump task.

use std::pin::Pin;
use std::task::{Context, Poll};

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http::{header, HeaderMap};
use http_body::{Body as HttpBody, Frame};
use http_body_util::{combinators::BoxBody, BodyExt, Full};
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::admission::{Admission, Buffered};
use super::error::GatewayError;
use crate::config::Limits;

/// Boxed error for bodies.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The body type of every response the gateway sends.
pub type Body = BoxBody<Bytes, BoxError>;

/// A whole body.
pub fn full(b: impl Into<Bytes>) -> Body {
    Full::new(b.into()).map_err(|never| match never {}).boxed()
}

/// A body fed by a channel: the sender is a pump task; a full channel makes the pump wait, so a
/// slow client slows the upstream read (backpressure), and a closed client stops the pump.
#[derive(Debug)]
pub struct ChannelBody {
    rx: mpsc::Receiver<Bytes>,
}

impl ChannelBody {
    /// A body and the sender that feeds it (`depth` chunks in flight at most).
    pub fn new(depth: usize) -> (mpsc::Sender<Bytes>, ChannelBody) {
        let (tx, rx) = mpsc::channel(depth);
        (tx, ChannelBody { rx })
    }

    /// Boxed.
    pub fn boxed(self) -> Body {
        BodyExt::boxed(self)
    }
}

impl HttpBody for ChannelBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        self.rx.poll_recv(cx).map(|o| o.map(|b| Ok(Frame::data(b))))
    }
}

/// How long a body may take before the minimum upload rate applies (a client's first round trips).
const RATE_GRACE: Duration = Duration::from_secs(1);

/// Reads a whole request body, the one place request bodies are read (AI and MCP):
/// - more than `max_request_body` bytes: 413, before reading when `content-length` says so;
/// - the bytes are counted against the gateway's buffered-bytes budget (up front for a declared
///   length, as they arrive otherwise) and the reservation is returned with them, to be held as long
///   as the bytes are: over budget, 503 with `Retry-After`, never an unbounded heap;
/// - the whole body within `request_body_timeout`, and after the first second at least
///   `min_request_body_rate` bytes/s on average: otherwise 408. A slow upload cannot hold a
///   concurrency slot (the caller's permit is dropped with the error) for longer than that.
pub(crate) async fn read_request<B>(
    body: B,
    headers: &HeaderMap,
    limits: &Limits,
    admission: &Admission,
) -> Result<(Bytes, Buffered), GatewayError>
where
    B: HttpBody<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    let limit = limits.max_request_body;
    let declared =
        headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.trim().parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(GatewayError::TooLarge(limit));
    }
    let mut held = Buffered::none();
    let declared = declared.map_or(0, |n| n as usize);
    admission.reserve(&mut held, declared)?;
    if body.is_end_stream() {
        return Ok((Bytes::new(), held));
    }
    let start = Instant::now();
    let overall = start + limits.request_body_timeout;
    // Bytes needed by time t: rate × (t − grace); the next deadline is when what was read so far
    // stops being enough.
    let rate = limits.min_request_body_rate.max(1) as f64;
    let due = |read: usize| (start + RATE_GRACE + Duration::from_secs_f64(read as f64 / rate)).min(overall);
    let mut buf = BytesMut::with_capacity(declared);
    let sleep = tokio::time::sleep_until(due(0));
    tokio::pin!(body, sleep);
    loop {
        let frame = tokio::select! {
            biased;
            f = body.frame() => f,
            () = &mut sleep => return Err(GatewayError::BodyTimeout),
        };
        let Some(frame) = frame else { break };
        let frame =
            frame.map_err(|e| GatewayError::BadRequest(format!("could not read the request body: {}", e.into())))?;
        let Ok(data) = frame.into_data() else { continue };
        let len = buf.len() + data.len();
        if len > limit {
            return Err(GatewayError::TooLarge(limit));
        }
        admission.reserve(&mut held, len)?;
        buf.extend_from_slice(&data);
        sleep.as_mut().reset(due(len));
    }
    Ok((buf.freeze(), held))
}

/// A request body that records whether it was read to its end (see `server::handler`: a response
/// to a request whose body was left unread says `connection: close`).
#[derive(Debug)]
pub struct ReadToEnd<B> {
    inner: B,
    read: Option<std::sync::Arc<std::sync::atomic::AtomicBool>>,
}

impl<B> ReadToEnd<B> {
    /// A body already known complete (or on a connection where it does not matter).
    pub fn done(inner: B) -> ReadToEnd<B> {
        ReadToEnd { inner, read: None }
    }

    /// Wraps the body of `req`; the flag turns true once its end is read.
    pub fn watch(
        req: http::Request<B>,
    ) -> (http::Request<ReadToEnd<B>>, std::sync::Arc<std::sync::atomic::AtomicBool>) {
        let read = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = read.clone();
        (req.map(|inner| ReadToEnd { inner, read: Some(flag) }), read)
    }
}

impl<B: HttpBody<Data = Bytes> + Unpin> HttpBody for ReadToEnd<B> {
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        if let Some(read) = &self.read {
            if matches!(polled, Poll::Ready(None)) || self.inner.is_end_stream() {
                read.store(true, std::sync::atomic::Ordering::Relaxed);
            }
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

/// Reads a whole upstream body, refusing more than `limit` bytes.
pub(crate) async fn collect_limited(mut body: Body, limit: usize) -> Result<Bytes, String> {
    let mut buf = bytes::BytesMut::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| format!("body read failed: {e}"))?;
        if let Ok(data) = frame.into_data() {
            if buf.len() + data.len() > limit {
                return Err(format!("response body exceeds {limit} bytes"));
            }
            buf.extend_from_slice(&data);
        }
    }
    Ok(buf.freeze())
}
