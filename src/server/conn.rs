//! Connection limits: how long a connection may stay open doing nothing, and how many a listener
//! keeps open at once.
//!
//! hyper times out a request head that is slow to arrive (`header_read_timeout`), but nothing
//! closes a connection that never sends a byte (hyper-util's auto builder waits for the first
//! bytes to tell HTTP/1.1 from HTTP/2) or an HTTP/2 connection with no stream open: thousands of
//! them used to exhaust the process's descriptors. [`Watched`] wraps a connection's socket and
//! fails its reads once the connection has been quiet too long: before the first byte
//! (`first_byte_timeout`), or with no request in flight since the last byte or response
//! (`idle_timeout`). A request in flight (a long stream included) is never cut by it; its own
//! timeouts apply. [`ConnLimit`] caps the connections a listener holds: at the cap the acceptor
//! waits for one to close (the kernel's backlog holds newcomers) instead of accepting and failing.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body as HttpBody, Frame, SizeHint};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::Notify;
use tokio::time::{Instant, Sleep};

use crate::config::Limits;

/// The per-connection limits a listener applies.
#[derive(Debug, Clone, Copy)]
pub struct ConnLimits {
    /// Time to send a request head once started (hyper's `header_read_timeout`).
    pub header_read_timeout: Duration,
    /// Time to send the first byte after the connection is accepted.
    pub first_byte_timeout: Duration,
    /// Time with no request in flight and nothing read before the connection is closed.
    pub idle_timeout: Duration,
    /// HTTP/2 keep-alive ping interval.
    pub h2_keep_alive_interval: Duration,
    /// HTTP/2 keep-alive ping timeout.
    pub h2_keep_alive_timeout: Duration,
    /// HTTP/2 streams open at once per connection.
    pub h2_max_concurrent_streams: u32,
}

impl ConnLimits {
    /// The limits a policy sets.
    pub fn from_policy(l: &Limits) -> ConnLimits {
        ConnLimits {
            header_read_timeout: l.header_read_timeout,
            first_byte_timeout: l.first_byte_timeout,
            idle_timeout: l.idle_timeout,
            h2_keep_alive_interval: l.h2_keep_alive_interval,
            h2_keep_alive_timeout: l.h2_keep_alive_timeout,
            h2_max_concurrent_streams: l.h2_max_concurrent_streams,
        }
    }
}

impl From<Duration> for ConnLimits {
    /// The default limits with this header read timeout.
    fn from(header_read_timeout: Duration) -> ConnLimits {
        ConnLimits { header_read_timeout, ..ConnLimits::from_policy(&Limits::default()) }
    }
}

/// What a connection's reads and its requests share: when it last did something, and how many
/// requests are in flight on it.
#[derive(Debug)]
pub(crate) struct Activity {
    base: Instant,
    /// Milliseconds from `base` to the last byte read or the last response finished; `u64::MAX`
    /// before the first byte.
    last_ms: AtomicU64,
    in_flight: AtomicU32,
}

impl Activity {
    /// Records activity now, rounded *up* to the next millisecond: the idle deadline computed from
    /// it is never earlier than a full idle period after the activity (rounding down cut a
    /// connection up to a millisecond early).
    fn touch(&self) {
        let ms = self.base.elapsed().as_nanos().div_ceil(1_000_000);
        self.last_ms.store(u64::try_from(ms).unwrap_or(u64::MAX - 1), Ordering::Relaxed);
    }

    /// Marks a request in flight until the returned guard is dropped.
    pub(crate) fn request(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        InFlight(self.clone())
    }
}

/// A request in flight on a connection (see [`Activity::request`]).
#[derive(Debug)]
pub(crate) struct InFlight(Arc<Activity>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.touch();
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A connection's socket, closed (its reads fail with `TimedOut`) once it has been quiet too long.
pub(crate) struct Watched<T> {
    io: T,
    activity: Arc<Activity>,
    limits: ConnLimits,
    /// Armed lazily: when it fires, the real deadline is computed from `activity`.
    timer: Pin<Box<Sleep>>,
}

impl<T> Watched<T> {
    /// Wraps `io`, accepted just now.
    pub(crate) fn new(io: T, limits: ConnLimits) -> (Watched<T>, Arc<Activity>) {
        let base = Instant::now();
        let activity = Arc::new(Activity { base, last_ms: AtomicU64::new(u64::MAX), in_flight: AtomicU32::new(0) });
        let timer = Box::pin(tokio::time::sleep_until(base + limits.first_byte_timeout));
        (Watched { io, activity: activity.clone(), limits, timer }, activity)
    }

    /// Whether the connection has been quiet past its limit (registers a wake-up otherwise).
    fn expired(&mut self, cx: &mut Context<'_>) -> bool {
        loop {
            if self.timer.as_mut().poll(cx).is_pending() {
                return false;
            }
            let a = &self.activity;
            let deadline = if a.in_flight.load(Ordering::Relaxed) > 0 {
                // Busy: look again one idle period from now.
                Instant::now() + self.limits.idle_timeout
            } else {
                match a.last_ms.load(Ordering::Relaxed) {
                    u64::MAX => a.base + self.limits.first_byte_timeout,
                    ms => a.base + Duration::from_millis(ms) + self.limits.idle_timeout,
                }
            };
            if deadline <= Instant::now() {
                return true;
            }
            self.timer.as_mut().reset(deadline);
        }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Watched<T> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        match Pin::new(&mut self.io).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                if buf.filled().len() > before {
                    self.activity.touch();
                }
                Poll::Ready(Ok(()))
            }
            Poll::Pending if self.expired(cx) => {
                Poll::Ready(Err(io::Error::new(io::ErrorKind::TimedOut, "connection idle past its limit")))
            }
            other => other,
        }
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Watched<T> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

/// A response body that keeps its request counted as in flight on the connection until it is
/// complete (or dropped): a connection streaming a long response is busy, not idle.
pub(crate) struct Counted<B> {
    inner: B,
    _in_flight: InFlight,
}

impl<B> Counted<B> {
    pub(crate) fn new(inner: B, in_flight: InFlight) -> Counted<B> {
        Counted { inner, _in_flight: in_flight }
    }
}

impl<B: HttpBody<Data = Bytes> + Unpin> HttpBody for Counted<B> {
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// The cap on a listener's open connections.
#[derive(Debug)]
pub struct ConnLimit {
    open: AtomicUsize,
    max: usize,
    freed: Notify,
    listener: &'static str,
}

impl ConnLimit {
    /// At most `max` connections open on `listener` (a name for the log line).
    pub fn new(max: usize, listener: &'static str) -> Arc<ConnLimit> {
        Arc::new(ConnLimit { open: AtomicUsize::new(0), max: max.max(1), freed: Notify::new(), listener })
    }

    /// Waits until the listener may hold one more connection, and counts it. At the cap, logs once
    /// and waits for a close (never a busy loop).
    pub async fn room(&self) {
        let mut logged = false;
        loop {
            let freed = self.freed.notified();
            tokio::pin!(freed);
            freed.as_mut().enable();
            let open = self.open.load(Ordering::Acquire);
            if open < self.max {
                self.open.fetch_add(1, Ordering::AcqRel);
                if logged {
                    tracing::info!(listener = self.listener, "below the connection limit again; accepting");
                }
                return;
            }
            if !logged {
                tracing::warn!(
                    listener = self.listener,
                    max = self.max,
                    "connection limit reached; accepting paused until a connection closes"
                );
                logged = true;
            }
            freed.await;
        }
    }

    /// One connection closed.
    pub fn closed(&self) {
        self.open.fetch_sub(1, Ordering::AcqRel);
        self.freed.notify_one();
    }

    /// Connections open now.
    pub fn open(&self) -> usize {
        self.open.load(Ordering::Relaxed)
    }
}

/// The soft limit on open file descriptors of this process, where the platform says (Linux).
pub fn descriptor_limit() -> Option<usize> {
    let text = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = text.lines().find(|l| l.starts_with("Max open files"))?;
    line.split_whitespace().nth(3)?.parse().ok()
}

/// The proxy listener's connection cap: the configured one, lowered when the descriptor limit
/// could not hold it. Each client connection may hold one upstream connection too, and the admin
/// listener, the state and audit files and the upstream pools keep `reserve` descriptors.
pub fn proxy_connection_cap(configured: usize, descriptors: Option<usize>, reserve: usize) -> usize {
    match descriptors {
        Some(fds) => configured.min(fds.saturating_sub(reserve) / 2).max(1),
        None => configured,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cap_leaves_descriptors_for_upstreams_and_the_admin_listener() {
        assert_eq!(proxy_connection_cap(10_000, Some(1024), 192), 416);
        assert_eq!(proxy_connection_cap(100, Some(1_048_576), 192), 100);
        assert_eq!(proxy_connection_cap(100, None, 192), 100);
        assert_eq!(proxy_connection_cap(100, Some(10), 192), 1);
    }

    #[tokio::test]
    async fn at_the_cap_room_waits_for_a_close() {
        let limit = ConnLimit::new(2, "test");
        limit.room().await;
        limit.room().await;
        let waiting = tokio::time::timeout(Duration::from_millis(50), limit.room()).await;
        assert!(waiting.is_err(), "a third connection waits");
        limit.closed();
        tokio::time::timeout(Duration::from_secs(5), limit.room()).await.expect("room after a close");
        assert_eq!(limit.open(), 2);
    }

    #[tokio::test]
    async fn a_quiet_connection_is_closed_and_a_busy_one_is_not() {
        let ms = Duration::from_millis;
        let limits = ConnLimits { first_byte_timeout: ms(200), idle_timeout: ms(300), ..ConnLimits::from(ms(10_000)) };
        let mut buf = [0u8; 8];
        // Never sends a byte: cut after the first-byte timeout.
        let (_client, server) = tokio::io::duplex(64);
        let start = Instant::now();
        let (mut w, _) = Watched::new(server, limits);
        let err = tokio::io::AsyncReadExt::read(&mut w, &mut buf).await.expect_err("timed out");
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        assert!(start.elapsed() >= ms(200) && start.elapsed() < ms(2_000), "{:?}", start.elapsed());

        // Sends, then a request stays in flight past the idle timeout: not cut until it ends.
        let (mut client, server) = tokio::io::duplex(64);
        let (mut w, activity) = Watched::new(server, limits);
        tokio::io::AsyncWriteExt::write_all(&mut client, b"x").await.expect("write");
        assert_eq!(tokio::io::AsyncReadExt::read(&mut w, &mut buf).await.expect("a byte"), 1);
        let busy = activity.request();
        let read = tokio::time::timeout(ms(800), tokio::io::AsyncReadExt::read(&mut w, &mut buf));
        assert!(read.await.is_err(), "no cut while a request is in flight");
        let ended = Instant::now();
        drop(busy);
        let err = tokio::io::AsyncReadExt::read(&mut w, &mut buf).await.expect_err("idle after the response");
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        assert!(ended.elapsed() >= ms(300) && ended.elapsed() < ms(2_000), "{:?}", ended.elapsed());
    }
}
