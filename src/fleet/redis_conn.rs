//! The shared Redis connection: lazy, reconnecting, with a short per-call timeout and a backoff
//! while Redis is down (callers then count locally at once, without waiting).
//!
//! Nothing connects when the handle is built. The first call starts a connection in a task of its
//! own (bounded by `connect_timeout`) and waits for it at most the per-call timeout; a call that
//! errors or times out marks Redis down for a backoff (250 ms, doubling to 5 s), during which every
//! call returns `None` at once and the caller counts locally. One log line per transition.

use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwapOption;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};

use super::FleetError;
use crate::config::fleet::FleetSettings;

/// The first backoff after a failure, milliseconds.
const BACKOFF_MIN_MS: u64 = 250;
/// The longest backoff, milliseconds.
const BACKOFF_MAX_MS: u64 = 5_000;

/// The rate-limit script (design §7.3): `KEYS[1]` bucket, `ARGV` rpm, cost → `{allowed, retry_ms}`.
pub const RATELIMIT_LUA: &str = include_str!("lua/ratelimit.lua");
/// The trigger-window script (design §7.4): several windows in one call → `{sum, fired}` each.
pub const WINDOW_LUA: &str = include_str!("lua/window.lua");

/// Link state, for the transition log lines.
const UNKNOWN: u8 = 0;
const UP: u8 = 1;
const DOWN: u8 = 2;

/// What the connect task and the callers share.
struct Link {
    conn: ArcSwapOption<ConnectionManager>,
    /// Unix ms; while in the future, calls return `None` at once.
    down_until: AtomicU64,
    /// The next backoff, ms.
    backoff_ms: AtomicU64,
    /// A connect task is running.
    connecting: AtomicBool,
    /// UNKNOWN, UP or DOWN (the last transition logged).
    state: AtomicU8,
    /// Tells callers waiting for the first connection that an attempt ended.
    attempt: tokio::sync::watch::Sender<u64>,
}

impl Link {
    fn mark_up(&self, up: Option<&AtomicBool>) {
        // The common case (up and known up) only reads: no shared write per call.
        if self.state.load(Relaxed) == UP && up.is_none_or(|u| u.load(Relaxed)) {
            return;
        }
        if let Some(up) = up {
            up.store(true, Relaxed);
        }
        self.backoff_ms.store(BACKOFF_MIN_MS, Relaxed);
        match self.state.swap(UP, Relaxed) {
            DOWN => tracing::info!("redis reachable again: fleet-wide counting resumes"),
            UNKNOWN => tracing::info!("redis connected: rate limits and trigger windows count fleet-wide"),
            _ => {}
        }
    }

    fn mark_down(&self, up: Option<&AtomicBool>, why: &str) {
        if let Some(up) = up {
            up.store(false, Relaxed);
        }
        let backoff = self.backoff_ms.load(Relaxed).clamp(BACKOFF_MIN_MS, BACKOFF_MAX_MS);
        self.backoff_ms.store((backoff * 2).min(BACKOFF_MAX_MS), Relaxed);
        self.down_until.store(unix_ms().saturating_add(backoff), Relaxed);
        if self.state.swap(DOWN, Relaxed) != DOWN {
            tracing::warn!(error = why, "redis unreachable: rate limits and trigger windows count per replica");
        }
    }
}

/// The Redis side of the fleet (counters only).
pub struct RedisShared {
    /// The client (does not connect until used).
    pub client: redis::Client,
    /// Every key starts with `<prefix>:`.
    pub prefix: String,
    /// One call's bound.
    pub timeout: Duration,
    /// A connection attempt's bound.
    connect_timeout: Duration,
    link: Arc<Link>,
    /// The rate-limit script ([`RATELIMIT_LUA`]).
    pub ratelimit: redis::Script,
    /// The trigger-window script ([`WINDOW_LUA`]).
    pub window: redis::Script,
}

impl std::fmt::Debug for RedisShared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisShared").field("prefix", &self.prefix).finish_non_exhaustive()
    }
}

impl RedisShared {
    /// Builds the client; nothing connects yet.
    pub fn new(settings: &FleetSettings) -> Result<RedisShared, FleetError> {
        let url = settings.redis.read().map_err(FleetError::Unavailable)?;
        let client = redis::Client::open(url.expose())
            .map_err(|_| FleetError::Db("[fleet] redis_url is not a Redis URL".into()))?;
        Ok(RedisShared::with_client(client, &settings.redis_prefix, settings.redis_timeout, settings.connect_timeout))
    }

    /// Builds the handle around `client` (tests point it anywhere); nothing connects yet.
    pub fn with_client(
        client: redis::Client,
        prefix: &str,
        timeout: Duration,
        connect_timeout: Duration,
    ) -> RedisShared {
        let link = Link {
            conn: ArcSwapOption::empty(),
            down_until: AtomicU64::new(0),
            backoff_ms: AtomicU64::new(BACKOFF_MIN_MS),
            connecting: AtomicBool::new(false),
            state: AtomicU8::new(UNKNOWN),
            attempt: tokio::sync::watch::Sender::new(0),
        };
        RedisShared {
            client,
            prefix: prefix.to_owned(),
            timeout,
            connect_timeout,
            link: Arc::new(link),
            ratelimit: redis::Script::new(RATELIMIT_LUA),
            window: redis::Script::new(WINDOW_LUA),
        }
    }

    /// Whether calls go local now without trying (Redis marked down, backoff not over).
    pub fn backing_off(&self) -> bool {
        self.link.down_until.load(Relaxed) > unix_ms()
    }

    /// Runs `f` with the connection under the per-call timeout. `None` (the caller falls back)
    /// when Redis is down, the call timed out or errored; a failure marks it down for a backoff
    /// and the next call after it tries again. `up` (`FleetStatus.redis_up`) follows the outcome.
    pub async fn call<T, F, Fut>(&self, up: &AtomicBool, f: F) -> Option<T>
    where
        F: FnOnce(ConnectionManager) -> Fut,
        Fut: Future<Output = redis::RedisResult<T>>,
    {
        self.call_within(up, self.timeout, f).await
    }

    /// [`RedisShared::call`] with a bound of its own (for the admin listings, off the hot path).
    pub async fn call_within<T, F, Fut>(&self, up: &AtomicBool, timeout: Duration, f: F) -> Option<T>
    where
        F: FnOnce(ConnectionManager) -> Fut,
        Fut: Future<Output = redis::RedisResult<T>>,
    {
        if self.backing_off() {
            return None;
        }
        let deadline = tokio::time::Instant::now() + timeout;
        let cm = match self.link.conn.load_full() {
            Some(cm) => cm,
            None => self.first_connection(up, deadline).await?,
        };
        match tokio::time::timeout_at(deadline, f((*cm).clone())).await {
            Ok(Ok(v)) => {
                self.link.mark_up(Some(up));
                Some(v)
            }
            Ok(Err(e)) => {
                let why = error_kind(&e);
                self.link.mark_down(Some(up), &why);
                None
            }
            Err(_) => {
                self.link.mark_down(Some(up), "timed out");
                None
            }
        }
    }

    /// Pings Redis (bypassing the backoff): for a background probe while it is down. Connects
    /// first if needed (bounded by the connect timeout).
    pub async fn ping(&self, up: &AtomicBool) -> bool {
        if self.link.conn.load().is_none() {
            let mut rx = self.link.attempt.subscribe();
            self.spawn_connect();
            let _ = tokio::time::timeout(self.connect_timeout + self.timeout, rx.changed()).await;
        }
        let Some(cm) = self.link.conn.load_full() else {
            up.store(false, Relaxed);
            return false;
        };
        let mut cm = (*cm).clone();
        let cmd = redis::cmd("PING");
        let ping = cmd.query_async::<String>(&mut cm);
        match tokio::time::timeout(self.timeout.max(Duration::from_millis(500)), ping).await {
            Ok(Ok(_)) => {
                self.link.down_until.store(0, Relaxed);
                self.link.mark_up(Some(up));
                true
            }
            Ok(Err(e)) => {
                self.link.mark_down(Some(up), &error_kind(&e));
                false
            }
            Err(_) => {
                self.link.mark_down(Some(up), "timed out");
                false
            }
        }
    }

    /// No connection yet: starts one (in its own task, so that a caller's timeout does not cancel
    /// it) and waits for it until `deadline`.
    async fn first_connection(
        &self,
        up: &AtomicBool,
        deadline: tokio::time::Instant,
    ) -> Option<Arc<ConnectionManager>> {
        let mut rx = self.link.attempt.subscribe();
        self.spawn_connect();
        loop {
            if let Some(cm) = self.link.conn.load_full() {
                return Some(cm);
            }
            if self.backing_off() {
                up.store(false, Relaxed);
                return None;
            }
            if tokio::time::timeout_at(deadline, rx.changed()).await.is_err() {
                return None;
            }
        }
    }

    fn spawn_connect(&self) {
        if self.link.connecting.swap(true, Relaxed) {
            return;
        }
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            self.link.connecting.store(false, Relaxed);
            return;
        };
        let (client, link) = (self.client.clone(), self.link.clone());
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(self.connect_timeout)
            .set_response_timeout(self.timeout.max(Duration::from_millis(1)))
            .set_number_of_retries(1)
            .set_max_delay(BACKOFF_MAX_MS);
        let bound = self.connect_timeout.saturating_mul(2);
        rt.spawn(async move {
            match tokio::time::timeout(bound, ConnectionManager::new_with_config(client, config)).await {
                Ok(Ok(cm)) => {
                    link.conn.store(Some(Arc::new(cm)));
                    link.mark_up(None);
                }
                Ok(Err(e)) => link.mark_down(None, &error_kind(&e)),
                Err(_) => link.mark_down(None, "connect timed out"),
            }
            link.connecting.store(false, Relaxed);
            link.attempt.send_modify(|n| *n += 1);
        });
    }

    /// `<prefix>:<rest>`.
    pub fn key(&self, rest: &str) -> String {
        let mut k = String::with_capacity(self.prefix.len() + 1 + rest.len());
        k.push_str(&self.prefix);
        k.push(':');
        k.push_str(rest);
        k
    }
}

/// A Redis error for the log: its kind and category only (never a URL: the client's errors do not
/// carry one, but a detail string could carry a key).
fn error_kind(e: &redis::RedisError) -> String {
    format!("{:?}: {}", e.kind(), e.category())
}

/// Milliseconds since the epoch.
pub(crate) fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// A principal (user id, session digest, `user\0server`) as a bounded key segment: printable
/// ASCII kept but for `%#:` and the SCAN pattern characters `*?[]\`, every other byte `%XX`; longer than 120 bytes after escaping,
/// `#` and the SHA-256 hex of the raw value (an escaped value never starts with `#`).
pub fn key_segment(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len());
    for b in raw.bytes() {
        if (0x21..0x7f).contains(&b) && !matches!(b, b'%' | b'#' | b':' | b'*' | b'?' | b'[' | b']' | b'\\') {
            out.push(char::from(b));
        } else {
            use std::fmt::Write;
            let _ = write!(out, "%{b:02X}");
        }
        if out.len() > 120 {
            use sha2::Digest;
            return format!("#{}", hex::encode(sha2::Sha256::digest(raw.as_bytes())));
        }
    }
    out
}

/// The inverse of [`key_segment`] for an escaped segment (`None` for a hashed one).
pub fn unescape_segment(seg: &str) -> Option<String> {
    if seg.starts_with('#') {
        return None;
    }
    let b = seg.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let v = seg.get(i + 1..i + 3).and_then(|h| u8::from_str_radix(h, 16).ok())?;
            out.push(v);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_segments_are_bounded_and_reversible() {
        for raw in ["alice", "a b", "u\u{0}srv", "100%", "#x", "ünï", "a:b*"] {
            let s = key_segment(raw);
            assert!(!s.contains([' ', '\u{0}', ':', '*']), "{s}");
            assert_eq!(unescape_segment(&s).as_deref(), Some(raw), "{raw} → {s}");
        }
        let long = "x".repeat(500);
        let s = key_segment(&long);
        assert_eq!(s.len(), 65);
        assert!(s.starts_with('#'));
        assert_eq!(unescape_segment(&s), None);
        assert_ne!(key_segment(&"x".repeat(501)), s);
    }
}
